/* test_entity.c: persistent entities on the memory and RocksDB backends. */
#include "tt.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "entity_fixtures.h"

static char tmpdir[256];

static troupe_system *new_system(const char *name) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = name, .log_level = TROUPE_LOG_OFF};
  if (getenv("TEST_LOG")) o.log_level = TROUPE_LOG_DEBUG;
  return troupe_system_create(&sys, &o) == 0 ? sys : NULL;
}

static atomic_int recovered, recovery_failures, rejected;
static atomic_int last_recovery_error;

static void on_recovered(troupe_entity *e, const void *st, uint64_t seq) {
  atomic_fetch_add(&recovered, 1);
}
static void on_failed(troupe_entity *e, int err) {
  atomic_fetch_add(&recovery_failures, 1);
  atomic_store(&last_recovery_error, err);
}
static void on_rejected(troupe_entity *e, const void *st, int err) {
  atomic_fetch_add(&rejected, 1);
}

static troupe_entity_def acct_def = {
  .type_name = "account",
  .state_type = &T_ACCT,
  .command = acct_command,
  .apply = acct_apply,
  .tagger = acct_tagger,
  .on_recovered = on_recovered,
  .on_recovery_failed = on_failed,
  .on_persist_rejected = on_rejected,
};

static int ask_balance(troupe_system *sys, troupe_ref r, const troupe_type *t,
                       int64_t amount, balance_msg *out) {
  amount_msg a = {amount};
  troupe_reply_msg rep;
  int rc = troupe_ask_blocking(sys, r, t, &a, 10000, &rep);
  if (rc < 0) return rc;
  if (rep.type != &R_BALANCE) {
    troupe_reply_free(&rep);
    return -999;
  }
  *out = *(balance_msg *)rep.data;
  troupe_reply_free(&rep);
  return 0;
}

/* Run one life of an account: start, do deposits, check, stop. */
static void account_life(const char *spec, const char *snap_spec,
                         troupe_entity_def *def, int64_t expect_start,
                         int deposits, uint64_t expect_seq_start) {
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  troupe_journal *j = NULL;
  troupe_snapshot_store *ss = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &so, &j), 0);
  if (snap_spec) TT_EQ_INT(troupe_snapshot_store_open(snap_spec, &so, &ss), 0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, j, ss), 0);
  troupe_system *sys = new_system("bank");
  TT_ASSERT(sys);
  troupe_ref a;
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, def, "alice", &a), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  balance_msg b;
  TT_EQ_INT(ask_balance(sys, a, &C_GET, 0, &b), 0);
  TT_EQ_INT(b.balance, expect_start);
  TT_EQ_INT(b.seq, expect_seq_start);
  for (int i = 1; i <= deposits; i++) {
    TT_EQ_INT(ask_balance(sys, a, &C_DEPOSIT, i, &b), 0);
    TT_EQ_INT(b.seq, expect_seq_start + (uint64_t)i);
  }
  TT_EQ_INT(ask_balance(sys, a, &C_GET, 0, &b), 0);
  TT_EQ_INT(b.balance, expect_start + (int64_t)deposits * (deposits + 1) / 2);
  troupe_system_destroy(sys);
  troupe_persistence_destroy(p);
  troupe_snapshot_store_close(ss);
  troupe_journal_close(j);
}

static void test_memory_recovery(void) {
  TT_EQ_INT(acct_register_types(), 0);
  troupe_entity_def def = acct_def;
  /* a named memory store lives while a handle is open: keep one open */
  troupe_journal *keep = NULL;
  troupe_snapshot_store *keep_s = NULL;
  troupe_store_options so;
  troupe_store_options_init(&so);
  TT_EQ_INT(troupe_journal_open("memory:bank1", &so, &keep), 0);
  TT_EQ_INT(troupe_snapshot_store_open("memory:bank1", &so, &keep_s), 0);
  account_life("memory:bank1", "memory:bank1", &def, 0, 10, 0);
  account_life("memory:bank1", "memory:bank1", &def, 55, 5, 10);
  def.snapshot_every = 4;
  def.snapshot_keep = 2;
  def.delete_events = true;
  account_life("memory:bank1", "memory:bank1", &def, 70, 10, 15);
  account_life("memory:bank1", "memory:bank1", &def, 125, 0, 25);
  /* without the snapshot store the deleted events leave a gap */
  atomic_store(&recovery_failures, 0);
  {
    troupe_journal *j = keep;
    troupe_persistence *p;
    TT_EQ_INT(troupe_persistence_create(&p, j, NULL), 0);
    troupe_system *sys = new_system("gap");
    troupe_ref a;
    TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &def, "alice", &a), 0);
    TT_EQ_INT(troupe_system_start(sys), 0);
    TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&recovery_failures) == 1, 5000));
    TT_EQ_INT(atomic_load(&last_recovery_error), TROUPE_ECORRUPT);
    troupe_system_destroy(sys);
    troupe_persistence_destroy(p);
  }
  troupe_snapshot_store_close(keep_s);
  troupe_journal_close(keep);
}

/* Four lives of one account on one store: plain recovery, then with
 * snapshots (journal and snapshots in one database) and event deletion. */
static void four_lives(const char *spec) {
  troupe_entity_def def = acct_def;
  account_life(spec, NULL, &def, 0, 20, 0);
  account_life(spec, NULL, &def, 210, 3, 20);
  def.snapshot_every = 5;
  def.snapshot_keep = 1;
  def.delete_events = true;
  account_life(spec, spec, &def, 216, 12, 23);
  account_life(spec, spec, &def, 294, 1, 35);
}

static void test_rocksdb_recovery(void) {
  TT_EQ_INT(acct_register_types(), 0);
  char spec[400];
  snprintf(spec, sizeof spec, "rocksdb:%s/bank", tmpdir);
  four_lives(spec);
}

/* The same on PostgreSQL, when a server is given. */
static void test_postgres_recovery(void) {
  const char *url = getenv("TROUPE_PG_URL");
  if (!url || !*url) TT_SKIP("TROUPE_PG_URL is not set");
  TT_EQ_INT(acct_register_types(), 0);
  char spec[1200];
  snprintf(spec, sizeof spec, "pg:%s schema=troupe_entity_%d", url,
           (int)getpid());
  four_lives(spec);
  /* leave the server as it was */
  PGconn *c = PQconnectdb(url);
  char q[100];
  snprintf(q, sizeof q, "DROP SCHEMA troupe_entity_%d CASCADE", (int)getpid());
  PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, q) : NULL;
  TT_ASSERT(r && PQresultStatus(r) == PGRES_COMMAND_OK);
  PQclear(r);
  PQfinish(c);
}

/* Many commands without waiting: stashed while persisting, in order. */
static void test_stash_while_persisting(void) {
  TT_EQ_INT(acct_register_types(), 0);
  troupe_store_options so;
  troupe_store_options_init(&so);
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:stash", &so, &j), 0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, j, NULL), 0);
  troupe_system *sys = new_system("stash");
  troupe_ref a;
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &acct_def, "bob", &a), 0);
  /* sent before the system runs: they arrive during recovery */
  for (int i = 1; i <= 200; i++) {
    amount_msg m = {i};
    troupe_tell(a, i % 2 ? &C_DEPOSIT : &C_DEPOSIT_ASYNC, &m, TROUPE_REF_NONE);
  }
  amount_msg w = {20100};   /* exactly the sum: must succeed */
  TT_EQ_INT(troupe_system_start(sys), 0);
  balance_msg b;
  /* async deposits run ahead of durability; a query waits for them */
  TT_EQ_INT(ask_balance(sys, a, &C_GET, 0, &b), 0);
  TT_EQ_INT(b.balance, 20100);
  TT_EQ_INT(ask_balance(sys, a, &C_WITHDRAW, w.amount, &b), 0);
  TT_EQ_INT(b.error, 0);
  TT_EQ_INT(b.balance, 0);
  TT_EQ_INT(ask_balance(sys, a, &C_WITHDRAW, 1, &b), 0);
  TT_EQ_INT(b.error, E_INSUFFICIENT);
  TT_EQ_INT(ask_balance(sys, a, &C_GET, 0, &b), 0);
  TT_EQ_INT(b.seq, 201);
  troupe_system_destroy(sys);
  /* the journal holds them in order */
  uint64_t high = 0;
  TT_EQ_INT(troupe_journal_highest_sync(j, "account|bob", &high), 0);
  TT_EQ_INT(high, 201);
  troupe_persistence_destroy(p);
  troupe_journal_close(j);
}

static void test_single_writer(void) {
  TT_EQ_INT(acct_register_types(), 0);
  troupe_store_options so;
  troupe_store_options_init(&so);
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:single", &so, &j), 0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, j, NULL), 0);
  troupe_system *s1 = new_system("one"), *s2 = new_system("two");
  troupe_ref a, b;
  TT_EQ_INT(troupe_entity_spawn(s1, NULL, p, &acct_def, "carol", &a), 0);
  TT_EQ_INT(troupe_entity_spawn(s2, NULL, p, &acct_def, "carol", &b),
            TROUPE_EBUSY);
  TT_EQ_INT(troupe_entity_spawn(s2, NULL, p, &acct_def, "dave", &b), 0);
  troupe_system_destroy(s1);
  /* once the first is gone, the id can live elsewhere */
  TT_EQ_INT(troupe_entity_spawn(s2, NULL, p, &acct_def, "carol", &b), 0);
  troupe_system_destroy(s2);
  /* bad input */
  TT_EQ_INT(troupe_entity_spawn(NULL, NULL, p, &acct_def, "x", &b),
            TROUPE_EINVAL);
  troupe_system *s3 = new_system("three");
  TT_EQ_INT(troupe_entity_spawn(s3, NULL, p, &acct_def, "", &b), TROUPE_EINVAL);
  troupe_entity_def bad = acct_def;
  bad.apply = NULL;
  TT_EQ_INT(troupe_entity_spawn(s3, NULL, p, &bad, "x", &b), TROUPE_EINVAL);
  troupe_system_destroy(s3);
  troupe_persistence_destroy(p);
  troupe_journal_close(j);
}

/* Corrupt and unknown events fail that entity's recovery only. */
static void test_corrupt_event(void) {
  TT_EQ_INT(acct_register_types(), 0);
  char spec[400];
  snprintf(spec, sizeof spec, "rocksdb:%s/corrupt", tmpdir);
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open(spec, &so, &j), 0);
  /* good events for "ok", a garbage payload at seq 2 for "bad", an unknown
   * manifest at seq 1 for "unknown" */
  uint8_t good[] = {0xa1, 0x66, 'a', 'm', 'o', 'u', 'n', 't', 0x05};
  uint8_t junk[] = {0xff, 0x00, 0x13};
  troupe_event ev = {.manifest = "bank.Deposited", .version = 1,
                     .payload = good, .payload_len = sizeof good};
  ev.persistence_id = "account|ok";
  ev.seq = 1;
  TT_EQ_INT(troupe_journal_append_sync(j, "account|ok", 0, &ev, 1, NULL), 0);
  ev.persistence_id = "account|bad";
  TT_EQ_INT(troupe_journal_append_sync(j, "account|bad", 0, &ev, 1, NULL), 0);
  ev.seq = 2;
  ev.payload = junk;
  ev.payload_len = sizeof junk;
  TT_EQ_INT(troupe_journal_append_sync(j, "account|bad", 1, &ev, 1, NULL), 0);
  ev.persistence_id = "account|unknown";
  ev.seq = 1;
  ev.manifest = "bank.NoSuchEvent";
  TT_EQ_INT(troupe_journal_append_sync(j, "account|unknown", 0, &ev, 1, NULL),
            0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, j, NULL), 0);
  troupe_system *sys = new_system("corrupt");
  atomic_store(&recovery_failures, 0);
  atomic_store(&recovered, 0);
  troupe_ref ok, bad, unk;
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &acct_def, "ok", &ok), 0);
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &acct_def, "bad", &bad), 0);
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &acct_def, "unknown", &unk), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  balance_msg b;
  TT_EQ_INT(ask_balance(sys, ok, &C_GET, 0, &b), 0);
  TT_EQ_INT(b.balance, 5);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&recovery_failures) == 2, 5000));
  TT_EQ_INT(atomic_load(&recovered), 1);
  troupe_reply_msg rep;
  TT_EQ_INT(troupe_ask_blocking(sys, bad, &C_GET, &b, 200, &rep),
            TROUPE_ETIMEDOUT);
  troupe_system_destroy(sys);
  troupe_persistence_destroy(p);
  troupe_journal_close(j);
}

/* Another writer appends behind the entity's back: its next write
 * conflicts, it fails, the supervisor restarts it and it recovers with
 * the foreign event. */
static void test_write_conflict_recovers(void) {
  TT_EQ_INT(acct_register_types(), 0);
  troupe_store_options so;
  troupe_store_options_init(&so);
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:conflict", &so, &j), 0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, j, NULL), 0);
  troupe_system *sys = new_system("conflict");
  troupe_ref a;
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &acct_def, "erin", &a), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  balance_msg b;
  TT_EQ_INT(ask_balance(sys, a, &C_DEPOSIT, 10, &b), 0);
  uint8_t payload[] = {0xa1, 0x66, 'a', 'm', 'o', 'u', 'n', 't', 0x07};
  troupe_event ev = {.persistence_id = "account|erin", .seq = 2,
                     .manifest = "bank.Deposited", .version = 1,
                     .payload = payload, .payload_len = sizeof payload};
  TT_EQ_INT(troupe_journal_append_sync(j, "account|erin", 1, &ev, 1, NULL), 0);
  troupe_reply_msg rep;
  amount_msg m = {100};
  /* this write conflicts: no reply */
  TT_EQ_INT(troupe_ask_blocking(sys, a, &C_DEPOSIT, &m, 300, &rep),
            TROUPE_ETIMEDOUT);
  /* restarted and recovered: 10 + 7 */
  TT_ASSERT(TT_WAIT_UNTIL(ask_balance(sys, a, &C_GET, 0, &b) == 0 &&
                          b.balance == 17, 5000));
  TT_EQ_INT(b.seq, 2);
  TT_EQ_INT(ask_balance(sys, a, &C_DEPOSIT, 1, &b), 0);
  TT_EQ_INT(b.seq, 3);
  troupe_system_destroy(sys);
  troupe_persistence_destroy(p);
  troupe_journal_close(j);
}

/* An event that cannot be encoded is rejected; the entity goes on. */
static troupe_type T_OPAQUE = {.manifest = "test.Opaque", .version = 1,
                               .size = sizeof(int)};
static int rej_command(troupe_entity *e, const void *st, const troupe_msg *m) {
  if (m->type == &C_GET) return acct_command(e, st, m);
  int x = 1;
  troupe_entity_persist(e, &T_OPAQUE, &x, 0);
  return 0;
}

static void test_rejected_persist(void) {
  TT_EQ_INT(acct_register_types(), 0);
  troupe_store_options so;
  troupe_store_options_init(&so);
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:reject", &so, &j), 0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, j, NULL), 0);
  troupe_system *sys = new_system("reject");
  troupe_entity_def def = acct_def;
  def.command = rej_command;
  atomic_store(&rejected, 0);
  troupe_ref a;
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &def, "frank", &a), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  int x = 1;
  troupe_tell(a, &T_OPAQUE, &x, TROUPE_REF_NONE);
  balance_msg b;
  TT_EQ_INT(ask_balance(sys, a, &C_GET, 0, &b), 0);
  TT_EQ_INT(b.seq, 0);
  TT_EQ_INT(atomic_load(&rejected), 1);
  troupe_system_destroy(sys);
  troupe_persistence_destroy(p);
  troupe_journal_close(j);
}

/* Old events are upcast at recovery: "bank.Credited" v1 was renamed to
 * bank.Deposited (same field), and is replayed as such. */
static void test_recovery_upcasts(void) {
  TT_EQ_INT(acct_register_types(), 0);
  int rc = troupe_upcaster_register("bank.Credited", 1, &T_DEPOSITED, NULL,
                                    NULL);
  TT_ASSERT(rc == 0 || rc == TROUPE_EEXIST);
  troupe_store_options so;
  troupe_store_options_init(&so);
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:upcast", &so, &j), 0);
  uint8_t good[] = {0xa1, 0x66, 'a', 'm', 'o', 'u', 'n', 't', 0x05};
  troupe_event ev[2] = {
    {.persistence_id = "account|old", .seq = 1, .manifest = "bank.Credited",
     .version = 1, .payload = good, .payload_len = sizeof good},
    {.persistence_id = "account|old", .seq = 2, .manifest = "bank.Deposited",
     .version = 1, .payload = good, .payload_len = sizeof good}};
  TT_EQ_INT(troupe_journal_append_sync(j, "account|old", 0, ev, 2, NULL), 0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, j, NULL), 0);
  troupe_system *sys = new_system("upcast");
  troupe_ref a;
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &acct_def, "old", &a), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  balance_msg b;
  TT_EQ_INT(ask_balance(sys, a, &C_GET, 0, &b), 0);
  TT_EQ_INT(b.balance, 10);
  TT_EQ_INT(b.seq, 2);
  troupe_system_destroy(sys);
  troupe_persistence_destroy(p);
  troupe_journal_close(j);
}

/* --- durable-state entities --------------------------------------------- */

static int durable_cmd(troupe_durable *d, const void *st, const troupe_msg *m) {
  const acct_state *s = st;
  if (m->type == &C_DEPOSIT) {
    acct_state n = *s;
    n.balance += ((const amount_msg *)m->data)->amount;
    n.events++;
    troupe_durable_persist(d, &n);
    balance_msg b = {n.balance, troupe_durable_revision(d) + 1, 0};
    return troupe_durable_reply(d, &R_BALANCE, &b);
  }
  if (m->type == &C_GET) {
    balance_msg b = {s->balance, troupe_durable_revision(d), 0};
    return troupe_durable_reply(d, &R_BALANCE, &b);
  }
  return TROUPE_UNHANDLED;
}

static const troupe_durable_def durable_def = {
  .type_name = "wallet", .state_type = &T_ACCT, .command = durable_cmd};

static void durable_life(const char *spec, int64_t expect, int deposits,
                         uint64_t rev) {
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  troupe_state_store *st;
  TT_EQ_INT(troupe_state_store_open(spec, &so, &st), 0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, NULL, NULL), 0);
  TT_EQ_INT(troupe_persistence_set_state_store(p, st), 0);
  troupe_system *sys = new_system("wallets");
  troupe_ref w;
  TT_EQ_INT(troupe_durable_spawn(sys, NULL, p, &durable_def, "w1", &w), 0);
  /* event-sourced entities need a journal */
  troupe_ref none;
  TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &acct_def, "w1", &none),
            TROUPE_ESTATE);
  for (int i = 1; i <= deposits; i++) {   /* queued before start */
    amount_msg a = {i};
    troupe_tell(w, &C_DEPOSIT, &a, TROUPE_REF_NONE);
  }
  TT_EQ_INT(troupe_system_start(sys), 0);
  balance_msg b;
  TT_EQ_INT(ask_balance(sys, w, &C_GET, 0, &b), 0);
  TT_EQ_INT(b.balance, expect + (int64_t)deposits * (deposits + 1) / 2);
  TT_EQ_INT(b.seq, rev + (uint64_t)deposits);
  troupe_system_destroy(sys);
  troupe_persistence_destroy(p);
  troupe_state_store_close(st);
}

static void test_durable_state_entity(void) {
  TT_EQ_INT(acct_register_types(), 0);
  char spec[400];
  snprintf(spec, sizeof spec, "rocksdb:%s/wallets", tmpdir);
  durable_life(spec, 0, 10, 0);
  durable_life(spec, 55, 5, 10);
  durable_life(spec, 70, 0, 15);
  /* a write behind its back: the next write conflicts, the entity
   * restarts and reloads the other writer's state */
  troupe_store_options so;
  troupe_store_options_init(&so);
  troupe_state_store *st;
  TT_EQ_INT(troupe_state_store_open("memory:wallets", &so, &st), 0);
  troupe_persistence *p;
  TT_EQ_INT(troupe_persistence_create(&p, NULL, NULL), 0);
  troupe_persistence_set_state_store(p, st);
  troupe_system *sys = new_system("wconflict");
  troupe_ref w;
  TT_EQ_INT(troupe_durable_spawn(sys, NULL, p, &durable_def, "w2", &w), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  balance_msg b;
  TT_EQ_INT(ask_balance(sys, w, &C_DEPOSIT, 5, &b), 0);
  acct_state other = {1000, 9};
  troupe_buf buf;
  troupe_buf_init(&buf);
  TT_EQ_INT(troupe_encode(&T_ACCT, &other, &buf, NULL), 0);
  troupe_state_record rec = {.persistence_id = "wallet|w2",
                             .manifest = "bank.Account", .version = 1,
                             .value = buf.data, .value_len = buf.len};
  TT_EQ_INT(troupe_state_upsert_sync(st, &rec, 1, NULL), 0);
  troupe_buf_free(&buf);
  troupe_reply_msg rep;
  amount_msg a = {1};
  TT_EQ_INT(troupe_ask_blocking(sys, w, &C_DEPOSIT, &a, 300, &rep),
            TROUPE_ETIMEDOUT);
  TT_ASSERT(TT_WAIT_UNTIL(ask_balance(sys, w, &C_GET, 0, &b) == 0 &&
                          b.balance == 1000, 5000));
  TT_EQ_INT(b.seq, 2);
  troupe_system_destroy(sys);
  troupe_persistence_destroy(p);
  troupe_state_store_close(st);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  snprintf(tmpdir, sizeof tmpdir, "/tmp/troupe-test-entity-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  TT_RUN(test_memory_recovery);
  TT_RUN(test_rocksdb_recovery);
  TT_RUN(test_postgres_recovery);
  TT_RUN(test_stash_while_persisting);
  TT_RUN(test_single_writer);
  TT_RUN(test_corrupt_event);
  TT_RUN(test_write_conflict_recovers);
  TT_RUN(test_rejected_persist);
  TT_RUN(test_durable_state_entity);
  TT_RUN(test_recovery_upcasts);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return tt_done();
}
