/*
 * bank.c: bank accounts as persistent entities on the embedded RocksDB
 * journal.
 *
 *   bank [DATA_DIR]          (default: ./data/bank, created if missing)
 *   bank --pg URL            (journal, snapshots and the projection in
 *                             PostgreSQL: a libpq URI or key=value string)
 *
 * 1. Opens the journal and snapshot store in DATA_DIR and starts the
 *    accounts; each recovers its balance from its snapshot and events.
 * 2. Deposits and withdraws (a withdrawal beyond the balance is refused
 *    by the command handler, and nothing is stored).
 * 3. Crash and restart: a child process keeps depositing and is killed
 *    with SIGKILL in the middle; the accounts are started again and the
 *    balances they recover include every deposit the child had confirmed.
 * 4. All along, a "balances" projection folds the tagged events into a
 *    read model, exactly once: in the projection's own RocksDB database
 *    (DATA_DIR-balances; the offset goes into the same WriteBatch) or in
 *    the PostgreSQL table bank_rm.balances (the offset in the same
 *    transaction). The output prints the read model next to the
 *    entities' own state; after the crash both agree again.
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
#include <troupe/projection.h>
#include <libpq-fe.h>
#include <rocksdb/c.h>

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

/* ---- the balances projection ------------------------------------------- */

static int use_pg;

/* Fold one handler group into per-account deltas. */
typedef struct delta { const char *pid; int64_t cents; } delta;

static int fold_group(const troupe_event *ev, size_t n, delta *d, size_t *nd) {
  *nd = 0;
  for (size_t i = 0; i < n; i++) {
    int dep = strcmp(ev[i].manifest, "bank.Deposited") == 0;
    if (!dep && strcmp(ev[i].manifest, "bank.Withdrawn") != 0) continue;
    money m;
    int rc = troupe_decode(dep ? &Deposited : &Withdrawn, ev[i].payload,
                           ev[i].payload_len, &m, NULL);
    if (rc < 0) return rc;
    size_t k = 0;
    while (k < *nd && strcmp(d[k].pid, ev[i].persistence_id) != 0) k++;
    if (k == *nd) d[(*nd)++] = (delta){ev[i].persistence_id, 0};
    d[k].cents += dep ? m.cents : -m.cents;
  }
  return 0;
}

/* RocksDB: "balance/<pid>" in the projection's database; the group's
 * writes go into the batch that also stores the offset. */
static int rocksdb_balances(troupe_projection_ctx *ctx, const troupe_event *ev,
                            size_t n, void *data) {
  (void)data;
  rocksdb_t *db = (rocksdb_t *)troupe_projection_ctx_rocksdb(ctx);
  rocksdb_writebatch_t *wb =
      (rocksdb_writebatch_t *)troupe_projection_ctx_writebatch(ctx);
  delta d[64];
  size_t nd;
  int rc = fold_group(ev, n, d, &nd);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  for (size_t k = 0; rc == 0 && k < nd; k++) {
    char key[300];
    int kl = snprintf(key, sizeof key, "balance/%s", d[k].pid);
    int64_t cur = 0;
    size_t vl;
    char *err = NULL;
    char *v = rocksdb_get(db, ro, key, (size_t)kl, &vl, &err);
    if (err) { rocksdb_free(err); rc = TROUPE_EIO; break; }
    if (v && vl == sizeof cur) memcpy(&cur, v, sizeof cur);
    rocksdb_free(v);
    cur += d[k].cents;
    rocksdb_writebatch_put(wb, key, (size_t)kl, (const char *)&cur, sizeof cur);
  }
  rocksdb_readoptions_destroy(ro);
  return rc;
}

/* PostgreSQL: one upsert per account in the projection's transaction. */
static int pg_balances(troupe_projection_ctx *ctx, const troupe_event *ev,
                       size_t n, void *data) {
  (void)data;
  PGconn *c = (PGconn *)troupe_projection_ctx_pgconn(ctx);
  delta d[64];
  size_t nd;
  int rc = fold_group(ev, n, d, &nd);
  for (size_t k = 0; rc == 0 && k < nd; k++) {
    char cents[32];
    snprintf(cents, sizeof cents, "%lld", (long long)d[k].cents);
    const char *v[2] = {d[k].pid, cents};
    PGresult *r = PQexecParams(c,
        "INSERT INTO bank_rm.balances AS b (account, cents) VALUES ($1, $2)"
        " ON CONFLICT (account) DO UPDATE SET cents = b.cents + EXCLUDED.cents",
        2, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = TROUPE_EIO;
    PQclear(r);
  }
  return rc;
}

/* The read model's balance of one account (after the projection ran). */
static int64_t read_model(troupe_offset_store *os, const char *pg_conninfo,
                          const char *name) {
  char pid[64];
  snprintf(pid, sizeof pid, "account|%s", name);
  int64_t cur = 0;
  if (use_pg) {
    PGconn *c = PQconnectdb(pg_conninfo);
    const char *v[1] = {pid};
    PGresult *r = PQexecParams(c, "SELECT cents FROM bank_rm.balances "
                               "WHERE account = $1", 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
      cur = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return cur;
  }
  rocksdb_t *db = (rocksdb_t *)troupe_offset_store_rocksdb(os);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  char key[300];
  int kl = snprintf(key, sizeof key, "balance/%s", pid);
  size_t vl;
  char *err = NULL;
  char *v = rocksdb_get(db, ro, key, (size_t)kl, &vl, &err);
  if (v && vl == sizeof cur) memcpy(&cur, v, sizeof cur);
  rocksdb_free(v);
  rocksdb_free(err);
  rocksdb_readoptions_destroy(ro);
  return cur;
}

/* ---- plumbing ---------------------------------------------------------- */

static const char *names[] = {"alice", "bob", "carol"};
#define NACCT 3

typedef struct bank {
  troupe_journal *journal;
  troupe_snapshot_store *snapshots;
  troupe_persistence *persistence;
  troupe_system *sys;
  troupe_ref acct[NACCT];
  troupe_offset_store *offsets;
  troupe_projection *balances;
} bank;

static const char *pg_url;      /* --pg URL */

static int open_bank(bank *b, const char *dir) {
  char spec[1100], ospec[1100];
  if (use_pg) {
    /* a URI as is, a key=value string behind "pg:" */
    int uri = strncmp(pg_url, "postgres", 8) == 0;
    snprintf(spec, sizeof spec, "%s%s", uri ? "" : "pg:", pg_url);
    snprintf(ospec, sizeof ospec, "%s", spec);
  } else {
    snprintf(spec, sizeof spec, "rocksdb:%s", dir);
    snprintf(ospec, sizeof ospec, "rocksdb:%s-balances", dir);
  }
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
  if (rc == 0) rc = troupe_offset_store_open(ospec, &b->offsets);
  if (rc == 0) {
    /* exactly once, in groups of up to 64 events */
    troupe_projection_def d = {
      .name = "balances", .journal = b->journal, .tag = "bank",
      .offsets = b->offsets, .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
      .handler = use_pg ? pg_balances : rocksdb_balances, .group_size = 64,
      .on_error = TROUPE_PROJECTION_RETRY_FAIL,
    };
    rc = troupe_projection_start(b->sys, &d, &b->balances);
  }
  if (rc == 0) rc = troupe_system_start(b->sys);
  if (rc < 0)
    fprintf(stderr, "bank: cannot open %s: %s (%s)\n", dir,
            troupe_strerror(rc), troupe_errmsg());
  return rc;
}

static void close_bank(bank *b) {
  troupe_projection_stop(b->balances);
  troupe_system_destroy(b->sys);
  troupe_offset_store_close(b->offsets);
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

/* The entities' own state next to the projection's read model (once the
 * projection has caught up with the journal, at most a few seconds). */
static int print_balances(bank *b, const char *when, int64_t *out) {
  troupe_projection_status st;
  for (int tries = 0; tries < 500; tries++) {
    if (troupe_projection_get_status(b->balances, &st) == 0 &&
        st.lag_events == 0)
      break;
    usleep(10000);
  }
  printf("%s:\n    account     entity  read model\n", when);
  int ok = 1;
  for (int i = 0; i < NACCT; i++) {
    balance bal;
    int rc = ask(b, i, &GetBalance, 0, &bal);
    if (rc < 0) return rc;
    int64_t rm = read_model(b->offsets, pg_url, names[i]);
    printf("    %-8s %9.2f %11.2f%s\n", names[i], (double)bal.cents / 100.0,
           (double)rm / 100.0, rm == bal.cents ? "" : "   (differs)");
    if (rm != bal.cents) ok = 0;
    if (out) out[i] = bal.cents;
  }
  return ok ? 0 : TROUPE_ESTATE;
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
    printf("usage: bank [DATA_DIR]   (default data/bank)\n"
           "       bank --pg URL     (PostgreSQL: libpq URI or key=value)\n");
    return 0;
  }
  if (strcmp(dir, "--pg") == 0) {
    if (argc < 3) {
      fprintf(stderr, "bank: --pg needs a URL\n");
      return 2;
    }
    pg_url = argv[2];
    use_pg = 1;
    dir = "data/bank-pg";       /* unused by the stores; kept for messages */
    PGconn *c = PQconnectdb(pg_url);
    PGresult *r = PQexec(c, "SET client_min_messages = warning;"
                         "CREATE SCHEMA IF NOT EXISTS bank_rm;"
                         "CREATE TABLE IF NOT EXISTS bank_rm.balances ("
                         " account text PRIMARY KEY, cents bigint NOT NULL)");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) fprintf(stderr, "bank: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    if (!ok) return 1;
  }
  /* create the data directory (and its parent) */
  if (!use_pg) {
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
  }
  troupe_type *types[] = {&Account, &Deposited, &Withdrawn, &Deposit,
                          &Withdraw, &GetBalance, &Balance};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++)
    troupe_type_register(types[i]);

  if (use_pg)
    printf("troupe %s bank demo, data in PostgreSQL (read model: table "
           "bank_rm.balances)\n", troupe_version_string());
  else
    printf("troupe %s bank demo, data in %s (embedded RocksDB; read model in "
           "%s-balances)\n", troupe_version_string(), dir, dir);
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
  printf("carol withdraws 10000000.00 -> refused (%s), balance %.2f\n",
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
