/*
 * bank.c: bank accounts as persistent entities, sharded over a cluster.
 *
 *   bank [DATA_DIR]      4 worker threads (a mesh), one cluster; the
 *                        journal, snapshots and read model in embedded
 *                        RocksDB under DATA_DIR (default ./data/bank)
 *   bank --pg URL        the same on PostgreSQL (libpq URI or key=value)
 *   bank --pg URL --node I --port P [--kill PID]
 *                        one of 3 processes joined over TCP on 127.0.0.1,
 *                        node I listening on port P+I (node 0 is the seed
 *                        and drives the demo; nodes 1 and 2 serve until
 *                        SIGTERM). scripts/bank-cluster.sh runs all three.
 *
 * 1. Every node starts a sharding region for "account"; an account lives
 *    on exactly one node (the coordinator on the oldest node allocates its
 *    shard) and is reached by name from anywhere; it recovers its balance
 *    from its snapshot and events when it starts there.
 * 2. Deposits and withdrawals go through the region (a withdrawal beyond
 *    the balance is refused by the command handler; nothing is stored).
 *    Each answer says which node holds the account.
 * 3. Mesh: crash and restart. A child process runs the same bank, keeps
 *    depositing and is killed with SIGKILL in the middle; the accounts
 *    start again and their balances include every confirmed deposit.
 *    TCP: with --kill PID, node 0 kills node 2 (SIGKILL); the cluster
 *    downs it, and its accounts recover on the survivors with the same
 *    balances.
 * 4. All along, a "balances" projection (on the first node) folds the
 *    tagged events into a read model, exactly once: in its own RocksDB
 *    database (DATA_DIR-balances; the offset in the same WriteBatch) or in
 *    the PostgreSQL table bank_rm.balances (offset in the same
 *    transaction). The output prints it next to the entities' own state.
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
#include <libpq-fe.h>
#include <rocksdb/c.h>

/* ---- types ------------------------------------------------------------- */

typedef struct account { int64_t balance; } account;     /* the state */
typedef struct money { int64_t cents; } money;           /* events */
typedef struct command { char *account; int64_t cents; } command;
typedef struct balance { int64_t cents; int32_t refused; int32_t node; } balance;

static const troupe_field account_fields[] = {
  TROUPE_FIELD(account, balance, I64)};
static const troupe_field money_fields[] = {TROUPE_FIELD(money, cents, I64)};
static const troupe_field command_fields[] = {
  TROUPE_FIELD(command, account, STRING), TROUPE_FIELD(command, cents, I64)};
static const troupe_field balance_fields[] = {
  TROUPE_FIELD(balance, cents, I64), TROUPE_FIELD(balance, refused, I32),
  TROUPE_FIELD(balance, node, I32)};

static troupe_type Account = TROUPE_TYPE("bank.Account", 1, account,
                                         account_fields);
static troupe_type Deposited = TROUPE_TYPE("bank.Deposited", 1, money,
                                           money_fields);
static troupe_type Withdrawn = TROUPE_TYPE("bank.Withdrawn", 1, money,
                                           money_fields);
static troupe_type Deposit = TROUPE_TYPE("bank.Deposit", 2, command,
                                         command_fields);
static troupe_type Withdraw = TROUPE_TYPE("bank.Withdraw", 2, command,
                                          command_fields);
static troupe_type GetBalance = TROUPE_TYPE("bank.GetBalance", 2, command,
                                            command_fields);
static troupe_type Balance = TROUPE_TYPE("bank.Balance", 2, balance,
                                         balance_fields);

/* ---- the entity -------------------------------------------------------- */

/* The node an entity runs on: the digit its system's name ends with. */
static int32_t node_of(troupe_entity *e) {
  const char *n = troupe_system_name(troupe_ctx_system(troupe_entity_ctx(e)));
  return (int32_t)(n[strlen(n) - 1] - '0');
}

static void reply_balance(troupe_entity *e, const void *state, void *data) {
  (void)data;
  balance b = {((const account *)state)->balance, 0, node_of(e)};
  troupe_entity_reply(e, &Balance, &b);
}

/* Decide. The state is read-only here; events change it once stored. */
static int on_command(troupe_entity *e, const void *state,
                      const troupe_msg *cmd) {
  const account *a = state;
  const command *c = cmd->data;
  money m = {c->cents};
  if (cmd->type == &Deposit) {
    if (m.cents <= 0) return TROUPE_EINVAL;
    troupe_entity_persist(e, &Deposited, &m, 0);
    return troupe_entity_after(e, reply_balance, NULL);  /* once durable */
  }
  if (cmd->type == &Withdraw) {
    if (m.cents > a->balance) {
      balance b = {a->balance, 1, node_of(e)};
      return troupe_entity_reply(e, &Balance, &b);       /* nothing stored */
    }
    troupe_entity_persist(e, &Withdrawn, &m, 0);
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

/* Sharding: the account's name is its entity id. */
static int account_id(const troupe_msg *msg, char *buf, size_t size) {
  if (msg->type != &Deposit && msg->type != &Withdraw &&
      msg->type != &GetBalance)
    return TROUPE_EINVAL;
  const char *name = ((const command *)msg->data)->account;
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n >= size) return TROUPE_EINVAL;
  memcpy(buf, name, n + 1);
  return (int)n;
}

static troupe_sharding_def accounts = {
  .type_name = "account",
  .shards = 16,
  .extract_id = account_id,
  .entity = &account_entity,
  /* .persistence is set when the stores are open */
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

static const char *names[] = {"alice", "bob", "carol", "dave", "erin",
                              "frank"};
#define NACCT 6
#define WORKERS 4

typedef struct bank {
  troupe_journal *journal;
  troupe_snapshot_store *snapshots;
  troupe_persistence *persistence;
  troupe_offset_store *offsets;
  troupe_projection *balances;
  /* mesh mode */
  troupe_mesh *mesh;
  troupe_system *workers[WORKERS];
  /* TCP mode */
  troupe_system *sys;
  /* the system the demo asks through */
  troupe_system *front;
} bank;

static const char *pg_url;      /* --pg URL */
static int tcp_node = -1;       /* --node I */
static int tcp_port;            /* --port P */
static bank *the_bank;

static int start_projection(bank *b, troupe_system *sys) {
  /* exactly once, in groups of up to 64 events */
  troupe_projection_def d = {
    .name = "balances", .journal = b->journal, .tag = "bank",
    .offsets = b->offsets, .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
    .handler = use_pg ? pg_balances : rocksdb_balances, .group_size = 64,
    .on_error = TROUPE_PROJECTION_RETRY_FAIL,
  };
  return troupe_projection_start(sys, &d, &b->balances);
}

/* Runs on each mesh worker's thread before its system runs (and after a
 * restart): join the cluster, start the accounts' region. */
static const char *mesh_seeds[] = {"troupe://bank0"};
static int worker_init(troupe_system *sys, uint32_t index, void *data) {
  bank *b = data;
  troupe_cluster_opts co = {.seeds = mesh_seeds, .nseeds = 1};
  int rc = troupe_cluster_start(sys, &co);
  troupe_ref region;
  if (rc == 0) rc = troupe_sharding_start(sys, &accounts, &region);
  if (rc == 0 && index == 0 && !b->balances) rc = start_projection(b, sys);
  if (rc == 0) b->workers[index] = sys;
  return rc;
}

static int all_up(troupe_system *sys, int n) {
  troupe_member m[8];
  int k = troupe_cluster_members(sys, m, 8);
  if (k != n || !troupe_cluster_converged(sys)) return 0;
  for (int i = 0; i < k; i++)
    if (m[i].status != TROUPE_MEMBER_UP || !m[i].reachable) return 0;
  return 1;
}

/* Wait (at most 30 s) until the cluster seen from sys has n members up. */
static int wait_members(troupe_system *sys, int n) {
  for (int i = 0; i < 3000; i++) {
    if (all_up(sys, n)) return 0;
    usleep(10000);
  }
  fprintf(stderr, "bank: the cluster did not reach %d members\n", n);
  return TROUPE_ETIMEDOUT;
}

static int open_bank(bank *b, const char *dir) {
  memset(b, 0, sizeof *b);
  the_bank = b;
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
  if (rc == 0 && (tcp_node <= 0)) rc = troupe_offset_store_open(ospec, &b->offsets);
  accounts.persistence = b->persistence;
  troupe_system_opts o = {.log_level = TROUPE_LOG_WARN, .log_level_set = true};
  if (rc == 0 && tcp_node < 0) {
    /* one process, 4 worker threads: bank0..bank3 */
    troupe_mesh_opts mo = {.workers = WORKERS, .name_prefix = "bank",
                           .init = worker_init, .data = b, .system = &o};
    rc = troupe_mesh_create(&b->mesh, &mo);
    if (rc == 0) rc = troupe_mesh_start(b->mesh);
    for (int i = 0; rc == 0 && i < 3000 && !b->workers[0]; i++) usleep(1000);
    if (rc == 0 && !b->workers[0]) rc = TROUPE_ETIMEDOUT;
    if (rc == 0) rc = wait_members(b->workers[0], WORKERS);
    b->front = b->workers[0];
  } else if (rc == 0) {
    /* one of 3 processes over TCP: node I on port P+I, seed node 0 */
    char name[16], listen[64], seed[96];
    snprintf(name, sizeof name, "bank%d", tcp_node);
    snprintf(listen, sizeof listen, "tcp://127.0.0.1:%d", tcp_port + tcp_node);
    snprintf(seed, sizeof seed, "troupe://bank0@127.0.0.1:%d", tcp_port);
    const char *seeds[] = {seed};
    o.name = name;
    troupe_remote_opts ro = {.listen = listen};
    troupe_cluster_opts co = {.seeds = seeds, .nseeds = 1};
    troupe_ref region;
    rc = troupe_system_create(&b->sys, &o);
    if (rc == 0) rc = troupe_remote_start(b->sys, &ro);
    if (rc == 0) rc = troupe_cluster_start(b->sys, &co);
    if (rc == 0) rc = troupe_sharding_start(b->sys, &accounts, &region);
    if (rc == 0 && tcp_node == 0) rc = start_projection(b, b->sys);
    if (rc == 0) rc = troupe_system_start(b->sys);
    b->front = b->sys;
  }
  if (rc < 0)
    fprintf(stderr, "bank: cannot open %s: %s (%s)\n", use_pg ? "PostgreSQL" : dir,
            troupe_strerror(rc), troupe_errmsg());
  return rc;
}

static void close_bank(bank *b) {
  if (b->balances) troupe_projection_stop(b->balances);
  troupe_mesh_destroy(b->mesh);
  troupe_system_destroy(b->sys);
  troupe_offset_store_close(b->offsets);
  troupe_persistence_destroy(b->persistence);
  troupe_snapshot_store_close(b->snapshots);
  troupe_journal_close(b->journal);
}

/* Send a command through the region and wait for the account's answer. */
static int ask(bank *b, int who, troupe_type *cmd, int64_t cents,
               balance *out) {
  command c = {(char *)names[who], cents};
  troupe_ref region;
  int rc = troupe_sharding_region(b->front, "account", &region);
  if (rc < 0) return rc;
  troupe_reply_msg r;
  rc = troupe_ask_blocking(b->front, region, cmd, &c, 5000, &r);
  if (rc < 0) return rc;
  *out = *(balance *)r.data;
  troupe_reply_free(&r);
  return 0;
}

/* The same, retried while the account's node is being replaced. */
static int ask_retry(bank *b, int who, troupe_type *cmd, int64_t cents,
                     balance *out) {
  int rc = 0;
  for (int i = 0; i < 10; i++)
    if ((rc = ask(b, who, cmd, cents, out)) != TROUPE_ETIMEDOUT) break;
  return rc;
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
  printf("%s:\n    account     entity  read model  node\n", when);
  int ok = 1;
  for (int i = 0; i < NACCT; i++) {
    balance bal;
    int rc = ask_retry(b, i, &GetBalance, 0, &bal);
    if (rc < 0) {
      fprintf(stderr, "bank: %s: %s (%s)\n", names[i], troupe_strerror(rc),
              troupe_errmsg());
      return rc;
    }
    int64_t rm = read_model(b->offsets, pg_url, names[i]);
    printf("    %-8s %9.2f %11.2f  bank%d%s\n", names[i],
           (double)bal.cents / 100.0, (double)rm / 100.0, bal.node,
           rm == bal.cents ? "" : "   (differs)");
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

/* Leave the cluster gracefully (this node's accounts are handed off to
 * the others first) and wait, at most 10 s, until it has left. */
static void leave_cluster(bank *b) {
  if (troupe_cluster_leave(b->sys, NULL) < 0) return;
  troupe_member_status st;
  char self[TROUPE_ADDRESS_MAX];
  if (troupe_cluster_self(b->sys, self, sizeof self) < 0) return;
  for (int i = 0; i < 500; i++) {
    if (troupe_cluster_member_status(b->sys, self, &st) < 0 ||
        st == TROUPE_MEMBER_REMOVED || st == TROUPE_MEMBER_EXITING)
      break;
    usleep(20000);
  }
}

static volatile sig_atomic_t terminate;
static void on_term(int sig) { (void)sig; terminate = 1; }

/* Nodes 1 and 2 of the TCP cluster: serve until SIGTERM/SIGINT, then
 * leave the cluster gracefully (their accounts move to the others). */
static int serve(bank *b) {
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  printf("bank%d: serving on 127.0.0.1:%d until SIGTERM\n", tcp_node,
         tcp_port + tcp_node);
  fflush(stdout);
  while (!terminate) usleep(20000);
  leave_cluster(b);
  close_bank(b);
  return 0;
}

/* The crash step of the mesh demo; 0 when every confirmed deposit is back. */
static int crash_and_recover(const char *dir, const int64_t *before) {
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
  bank b;
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

/* TCP node 0 with --kill: kill node 2, wait for the cluster to down it,
 * and check that its accounts answer from the survivors unchanged. */
static int failover(bank *b, pid_t victim, const int64_t *before) {
  printf("failover: killing node 2 (pid %d) with SIGKILL...\n", (int)victim);
  fflush(stdout);
  if (kill(victim, SIGKILL) < 0) {
    fprintf(stderr, "bank: kill %d: %s\n", (int)victim, strerror(errno));
    return 1;
  }
  if (wait_members(b->front, 2) < 0) return 1;
  printf("node 2 was downed and removed; its accounts moved:\n");
  int64_t after[NACCT];
  if (print_balances(b, "after the failover", after) < 0) return 1;
  for (int i = 0; i < NACCT; i++)
    if (after[i] != before[i]) {
      printf("MISMATCH: %s had %.2f, now %.2f\n", names[i],
             (double)before[i] / 100, (double)after[i] / 100);
      return 1;
    }
  printf("every account answered from a survivor with its balance\n");
  return 0;
}

static int usage(void) {
  printf("usage: bank [DATA_DIR]   (default data/bank; 4 workers, RocksDB)\n"
         "       bank --pg URL     (PostgreSQL: libpq URI or key=value)\n"
         "       bank --pg URL --node I --port P [--kill PID]\n"
         "                         (node I of 3 processes over TCP)\n");
  return 0;
}

int main(int argc, char **argv) {
  const char *dir = "data/bank";
  pid_t victim = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0) return usage();
    if ((strcmp(a, "--pg") == 0 || strcmp(a, "--node") == 0 ||
         strcmp(a, "--port") == 0 || strcmp(a, "--kill") == 0) && !v) {
      fprintf(stderr, "bank: %s needs a value\n", a);
      return 2;
    }
    if (strcmp(a, "--pg") == 0) { pg_url = v; use_pg = 1; i++; }
    else if (strcmp(a, "--node") == 0) { tcp_node = atoi(v); i++; }
    else if (strcmp(a, "--port") == 0) { tcp_port = atoi(v); i++; }
    else if (strcmp(a, "--kill") == 0) { victim = (pid_t)atoi(v); i++; }
    else if (a[0] == '-') { fprintf(stderr, "bank: unknown option %s\n", a); return 2; }
    else dir = a;
  }
  if (tcp_node >= 0 && (!use_pg || tcp_node > 2 || tcp_port <= 0 ||
                        tcp_port > 65533)) {
    fprintf(stderr, "bank: --node needs --pg, a node 0..2 and --port\n");
    return 2;
  }
  if (use_pg && tcp_node <= 0) {
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

  bank b;
  if (tcp_node > 0) {
    if (open_bank(&b, dir) < 0) return 1;
    return serve(&b);
  }
  if (tcp_node == 0)
    printf("troupe %s bank demo: 3 processes over TCP on 127.0.0.1:%d-%d, "
           "data in PostgreSQL (read model: table bank_rm.balances)\n",
           troupe_version_string(), tcp_port, tcp_port + 2);
  else if (use_pg)
    printf("troupe %s bank demo: %d worker threads, data in PostgreSQL "
           "(read model: table bank_rm.balances)\n", troupe_version_string(),
           WORKERS);
  else
    printf("troupe %s bank demo: %d worker threads, data in %s (embedded "
           "RocksDB; read model in %s-balances)\n", troupe_version_string(),
           WORKERS, dir, dir);
  if (open_bank(&b, dir) < 0) return 1;
  if (tcp_node == 0 && wait_members(b.front, 3) < 0) return 1;
  printf("cluster up: %d nodes; accounts sharded over them\n",
         tcp_node == 0 ? 3 : WORKERS);
  if (print_balances(&b, "recovered from earlier runs", NULL) < 0) return 1;

  balance bal;
  ask(&b, 0, &Deposit, 10000, &bal);
  printf("alice deposits 100.00      -> %8.2f  (on bank%d)\n",
         (double)bal.cents / 100, bal.node);
  ask(&b, 1, &Deposit, 2500, &bal);
  printf("bob deposits 25.00         -> %8.2f  (on bank%d)\n",
         (double)bal.cents / 100, bal.node);
  ask(&b, 0, &Withdraw, 3000, &bal);
  printf("alice withdraws 30.00      -> %8.2f  (on bank%d)\n",
         (double)bal.cents / 100, bal.node);
  for (int i = 2; i < NACCT; i++) ask(&b, i, &Deposit, 1000 * i, &bal);
  ask(&b, 2, &Withdraw, 1000000000, &bal);
  printf("carol withdraws 10000000.00 -> refused (%s), balance %.2f\n",
         bal.refused ? "insufficient funds" : "?", (double)bal.cents / 100);
  int64_t before[NACCT];
  if (print_balances(&b, "balances", before) < 0) return 1;
  if (tcp_node == 0) {
    int rc = victim ? failover(&b, victim, before) : 0;
    leave_cluster(&b);
    close_bank(&b);
    return rc;
  }
  close_bank(&b);
  return crash_and_recover(dir, before);
}
