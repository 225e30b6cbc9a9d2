/*
 * bank.c: bank accounts as persistent entities on the embedded RocksDB
 * journal.
 *
 *   bank [DATA_DIR]          (default: ./data/bank, created if missing)
 *
 * 1. Opens the journal and snapshot store in DATA_DIR and starts the
 *    accounts; each recovers its balance from its snapshot and events.
 * 2. Deposits and withdraws (a withdrawal beyond the balance is refused
 *    by the command handler, and nothing is stored).
 * 3. Crash and restart: a child process keeps depositing and is killed
 *    with SIGKILL in the middle; the accounts are started again and the
 *    balances they recover include every deposit the child had confirmed.
 *
 * Build against an installed troupe:
 *   cc bank.c $(pkg-config --cflags --libs troupe)
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <troupe/troupe.h>
#include <troupe/persistence.h>

/* ---- types ------------------------------------------------------------- */

typedef struct account { int64_t balance; } account;     /* the state */
typedef struct money { int64_t cents; } money;           /* events, commands */
typedef struct balance { int64_t cents; int32_t refused; } balance;

static const troupe_field account_fields[] = {
  TROUPE_FIELD(account, balance, I64)};
static const troupe_field money_fields[] = {TROUPE_FIELD(money, cents, I64)};
static const troupe_field balance_fields[] = {
  TROUPE_FIELD(balance, cents, I64), TROUPE_FIELD(balance, refused, I32)};

static troupe_type Account = TROUPE_TYPE("bank.Account", 1, account,
                                         account_fields);
static troupe_type Deposited = TROUPE_TYPE("bank.Deposited", 1, money,
                                           money_fields);
static troupe_type Withdrawn = TROUPE_TYPE("bank.Withdrawn", 1, money,
                                           money_fields);
static troupe_type Deposit = TROUPE_TYPE("bank.Deposit", 1, money,
                                         money_fields);
static troupe_type Withdraw = TROUPE_TYPE("bank.Withdraw", 1, money,
                                          money_fields);
static troupe_type GetBalance = TROUPE_TYPE("bank.GetBalance", 1, money,
                                            money_fields);
static troupe_type Balance = TROUPE_TYPE("bank.Balance", 1, balance,
                                         balance_fields);

/* ---- the entity -------------------------------------------------------- */

static void reply_balance(troupe_entity *e, const void *state, void *data) {
  (void)data;
  balance b = {((const account *)state)->balance, 0};
  troupe_entity_reply(e, &Balance, &b);
}

/* Decide. The state is read-only here; events change it once stored. */
static int on_command(troupe_entity *e, const void *state,
                      const troupe_msg *cmd) {
  const account *a = state;
  const money *m = cmd->data;
  if (cmd->type == &Deposit) {
    if (m->cents <= 0) return TROUPE_EINVAL;
    troupe_entity_persist(e, &Deposited, m, 0);
    return troupe_entity_after(e, reply_balance, NULL);  /* once durable */
  }
  if (cmd->type == &Withdraw) {
    if (m->cents > a->balance) {
      balance b = {a->balance, 1};
      return troupe_entity_reply(e, &Balance, &b);       /* nothing stored */
    }
    troupe_entity_persist(e, &Withdrawn, m, 0);
    return troupe_entity_after(e, reply_balance, NULL);
  }
  if (cmd->type == &GetBalance) return troupe_entity_after(e, reply_balance, NULL);
  return TROUPE_UNHANDLED;
}

/* Fold one event into the state: pure, never fails for its own events. */
static int on_event(void *state, const troupe_type *type, const void *event) {
  account *a = state;
  const money *m = event;
  if (type == &Deposited) a->balance += m->cents;
  else if (type == &Withdrawn) a->balance -= m->cents;
  else return TROUPE_ETYPE;
  return 0;
}

static size_t tag_events(const troupe_type *type, const void *event,
                         const char **tags, size_t max) {
  (void)type; (void)event;
  if (max) tags[0] = "bank";   /* for projections */
  return max ? 1 : 0;
}

static const troupe_entity_def account_entity = {
  .type_name = "account",
  .state_type = &Account,
  .command = on_command,
  .apply = on_event,
  .tagger = tag_events,
  .snapshot_every = 100,       /* recovery starts from a snapshot */
  .snapshot_keep = 2,
};

/* ---- plumbing ---------------------------------------------------------- */

static const char *names[] = {"alice", "bob", "carol"};
#define NACCT 3

typedef struct bank {
  troupe_journal *journal;
  troupe_snapshot_store *snapshots;
  troupe_persistence *persistence;
  troupe_system *sys;
  troupe_ref acct[NACCT];
} bank;

static int open_bank(bank *b, const char *dir) {
  char spec[1100];
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;    /* sync stays on: acknowledged = durable */
  int rc = troupe_journal_open(spec, &so, &b->journal);
  if (rc == 0) rc = troupe_snapshot_store_open(spec, &so, &b->snapshots);
  if (rc == 0)
    rc = troupe_persistence_create(&b->persistence, b->journal, b->snapshots);
  troupe_system_opts o = {.name = "bank", .log_level = TROUPE_LOG_WARN};
  if (rc == 0) rc = troupe_system_create(&b->sys, &o);
  for (int i = 0; rc == 0 && i < NACCT; i++)
    rc = troupe_entity_spawn(b->sys, NULL, b->persistence, &account_entity,
                             names[i], &b->acct[i]);
  if (rc == 0) rc = troupe_system_start(b->sys);
  if (rc < 0)
    fprintf(stderr, "bank: cannot open %s: %s (%s)\n", dir,
            troupe_strerror(rc), troupe_errmsg());
  return rc;
}

static void close_bank(bank *b) {
  troupe_system_destroy(b->sys);
  troupe_persistence_destroy(b->persistence);
  troupe_snapshot_store_close(b->snapshots);
  troupe_journal_close(b->journal);
}

/* Send a command and wait for the account's answer. */
static int ask(bank *b, int who, troupe_type *cmd, int64_t cents,
               balance *out) {
  money m = {cents};
  troupe_reply_msg r;
  int rc = troupe_ask_blocking(b->sys, b->acct[who], cmd, &m, 5000, &r);
  if (rc < 0) return rc;
  *out = *(balance *)r.data;
  troupe_reply_free(&r);
  return 0;
}

static int print_balances(bank *b, const char *when, int64_t *out) {
  printf("%s:\n", when);
  for (int i = 0; i < NACCT; i++) {
    balance bal;
    int rc = ask(b, i, &GetBalance, 0, &bal);
    if (rc < 0) return rc;
    printf("  %-6s %8.2f\n", names[i], (double)bal.cents / 100.0);
    if (out) out[i] = bal.cents;
  }
  return 0;
}

/* The child of the crash step: deposit 1.00 into each account in turn and
 * report every confirmed deposit on fd, until killed. */
static void crash_child(const char *dir, int fd) {
  bank b;
  if (open_bank(&b, dir) < 0) _exit(2);
  for (int n = 0;; n++) {
    balance bal;
    int who = n % NACCT;
    if (ask(&b, who, &Deposit, 100, &bal) == 0) {
      char c = (char)who;
      if (write(fd, &c, 1) != 1) _exit(3);
    }
  }
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "data/bank";
  if (strcmp(dir, "--help") == 0) {
    printf("usage: bank [DATA_DIR]   (default data/bank)\n");
    return 0;
  }
  /* create the data directory (and its parent) */
  char parent[1024];
  snprintf(parent, sizeof parent, "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    mkdir(parent, 0755);
  }
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
    fprintf(stderr, "bank: cannot create %s: %s\n", dir, strerror(errno));
    return 1;
  }
  troupe_type *types[] = {&Account, &Deposited, &Withdrawn, &Deposit,
                          &Withdraw, &GetBalance, &Balance};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++)
    troupe_type_register(types[i]);

  printf("troupe %s bank demo, data in %s (embedded RocksDB)\n",
         troupe_version_string(), dir);
  bank b;
  if (open_bank(&b, dir) < 0) return 1;
  if (print_balances(&b, "recovered from earlier runs", NULL) < 0) return 1;

  balance bal;
  ask(&b, 0, &Deposit, 10000, &bal);
  printf("alice deposits 100.00      -> %8.2f\n", (double)bal.cents / 100);
  ask(&b, 1, &Deposit, 2500, &bal);
  printf("bob deposits 25.00         -> %8.2f\n", (double)bal.cents / 100);
  ask(&b, 0, &Withdraw, 3000, &bal);
  printf("alice withdraws 30.00      -> %8.2f\n", (double)bal.cents / 100);
  ask(&b, 2, &Withdraw, 1000000000, &bal);
  printf("carol withdraws 10M.00     -> refused (%s), balance %.2f\n",
         bal.refused ? "insufficient funds" : "?", (double)bal.cents / 100);
  int64_t before[NACCT];
  if (print_balances(&b, "balances", before) < 0) return 1;
  close_bank(&b);

  /* Crash and restart. */
  printf("crash test: a child deposits 1.00 after 1.00 and is killed -9...\n");
  fflush(stdout);
  int fds[2];
  if (pipe(fds) < 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    crash_child(dir, fds[1]);
  }
  close(fds[1]);
  int64_t confirmed[NACCT] = {0};
  int total = 0;
  char c;
  while (total < 300 && read(fds[0], &c, 1) == 1) {   /* then kill it */
    confirmed[(int)c] += 100;
    total++;
  }
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  while (read(fds[0], &c, 1) == 1) {     /* confirmed before it died */
    confirmed[(int)c] += 100;
    total++;
  }
  close(fds[0]);
  printf("child killed (%s) after %d confirmed deposits\n",
         WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exited", total);

  if (open_bank(&b, dir) < 0) return 1;
  int64_t after[NACCT];
  if (print_balances(&b, "recovered after the crash", after) < 0) return 1;
  int ok = 1;
  for (int i = 0; i < NACCT; i++) {
    /* every confirmed deposit is there; one unconfirmed may be too */
    if (after[i] < before[i] + confirmed[i] ||
        after[i] > before[i] + confirmed[i] + 100) {
      printf("  %s: expected %.2f, got %.2f\n", names[i],
             (double)(before[i] + confirmed[i]) / 100, (double)after[i] / 100);
      ok = 0;
    }
  }
  close_bank(&b);
  printf(ok ? "every confirmed deposit survived the crash\n"
            : "MISMATCH: confirmed deposits lost\n");
  return ok ? 0 : 1;
}
