/*
 * test_projection_util.h: fixtures shared by the projection tests: an
 * event writer (accounts "acct-K" with amounts), the fold of the journal,
 * and the two exactly-once read models (RocksDB keys "bal/acct-K",
 * PostgreSQL table <schema>.bal), each keeping (sum, count) per account so
 * a double-applied or missing event shows.
 */
#ifndef TEST_PROJECTION_UTIL_H
#define TEST_PROJECTION_UTIL_H

#include "tt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <libpq-fe.h>
#include <rocksdb/c.h>

#include "troupe/troupe.h"
#include "troupe/journal.h"
#include "troupe/projection.h"
#include "projection/internal.h"

#define NACC 8

#if defined(__SANITIZE_THREAD__)
/* librocksdb is not instrumented: its memtable is a lock-free skiplist
 * whose nodes are published with atomics TSan cannot see, so a journal
 * reader reading a value (through RocksDB or straight from the iterator's
 * slice, as the journal's by_tag/by_slice do) next to the writer thread's
 * MemTable::Add looks like a race. Only those frames are suppressed. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) {
  return "race:librocksdb.so\nrace:r_by_tag\nrace:r_by_slice\n";
}
#endif

typedef struct fold { int64_t sum[NACC]; int64_t cnt[NACC]; } fold;

static int acct_of(const char *pid) {
  const char *d = strrchr(pid, '-');
  int k = d ? atoi(d + 1) : -1;
  return k >= 0 && k < NACC ? k : -1;
}

static int64_t amount_of(const troupe_event *e) {
  int64_t v = 0;
  if (e->payload_len == sizeof v) memcpy(&v, e->payload, sizeof v);
  return v;
}

/* Append one event of `amount` to acct-K (expected head kept by caller). */
static int put_event(troupe_journal *j, int k, uint64_t *head, int64_t amount,
                     const char *tag) {
  char pid[32];
  snprintf(pid, sizeof pid, "acct-%d", k);
  const char *tags[1] = {tag};
  troupe_event e;
  memset(&e, 0, sizeof e);
  e.manifest = "test.Amount";
  e.payload = &amount;
  e.payload_len = sizeof amount;
  e.tags = tags;
  e.ntags = tag ? 1 : 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  e.timestamp_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  uint64_t h = 0;
  int rc = troupe_journal_append_sync(j, pid, *head, &e, 1, &h);
  if (rc == 0) *head = h;
  return rc;
}

/* Write n events round robin over the accounts; amounts 1..n. */
static int write_events(troupe_journal *j, uint64_t heads[NACC], int n,
                        int64_t base, const char *tag) {
  for (int i = 0; i < n; i++) {
    int k = i % NACC;
    int rc = put_event(j, k, &heads[k], base + i + 1, tag);
    if (rc < 0) return rc;
  }
  return 0;
}

static int fold_cb(int status, const troupe_event *ev, size_t n, int done,
                   void *data) {
  (void)done;
  fold *f = data;
  if (status < 0) return 1;
  for (size_t i = 0; i < n; i++) {
    int k = acct_of(ev[i].persistence_id);
    if (k < 0) continue;
    f->sum[k] += amount_of(&ev[i]);
    f->cnt[k]++;
  }
  return 0;
}

static int journal_fold(troupe_journal *j, const char *tag, fold *f) {
  memset(f, 0, sizeof *f);
  return troupe_journal_by_tag_sync(j, tag, 0, 0, fold_cb, f);
}

/* --- fault injection, shared by the exactly-once handlers ---------------- */

typedef struct faults {
  atomic_uint seed;
  unsigned handler_fail_pct;      /* the handler fails */
  unsigned commit_fail_pct;       /* the commit path fails (test hook) */
  atomic_int injected;
} faults;

static faults *g_faults;

static unsigned fault_rand(faults *f) {
  unsigned s = atomic_fetch_add(&f->seed, 0x9E3779B9u);
  s ^= s >> 15; s *= 0x2c1b3c6dU; s ^= s >> 12; s *= 0x297a2d39U; s ^= s >> 15;
  return s % 100;
}

static int fault_hook(const char *where, uint64_t offset) {
  (void)where; (void)offset;
  faults *f = g_faults;
  if (!f || !f->commit_fail_pct) return 0;
  if (fault_rand(f) < f->commit_fail_pct) {
    atomic_fetch_add(&f->injected, 1);
    return 1;
  }
  return 0;
}

/* Group the events of one call by account. */
static void group_fold(const troupe_event *ev, size_t n, fold *g) {
  memset(g, 0, sizeof *g);
  for (size_t i = 0; i < n; i++) {
    int k = acct_of(ev[i].persistence_id);
    if (k < 0) continue;
    g->sum[k] += amount_of(&ev[i]);
    g->cnt[k]++;
  }
}

/* RocksDB read model: "bal/acct-K" -> (sum, count). */
static int rdb_balances_handler(troupe_projection_ctx *ctx,
                                const troupe_event *ev, size_t n, void *data) {
  faults *f = data;
  if (f && f->handler_fail_pct && fault_rand(f) < f->handler_fail_pct) {
    atomic_fetch_add(&f->injected, 1);
    return TROUPE_EIO;
  }
  rocksdb_t *db = (rocksdb_t *)troupe_projection_ctx_rocksdb(ctx);
  rocksdb_writebatch_t *wb =
      (rocksdb_writebatch_t *)troupe_projection_ctx_writebatch(ctx);
  if (!db || !wb) return TROUPE_ESTATE;
  fold g;
  group_fold(ev, n, &g);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  int rc = 0;
  for (int k = 0; k < NACC && rc == 0; k++) {
    if (!g.cnt[k]) continue;
    char key[32];
    int kl = snprintf(key, sizeof key, "bal/acct-%d", k);
    int64_t v[2] = {0, 0};
    size_t vl;
    char *err = NULL;
    char *cur = rocksdb_get(db, ro, key, (size_t)kl, &vl, &err);
    if (err) { rocksdb_free(err); rc = TROUPE_EIO; break; }
    if (cur && vl == sizeof v) memcpy(v, cur, sizeof v);
    rocksdb_free(cur);
    v[0] += g.sum[k];
    v[1] += g.cnt[k];
    rocksdb_writebatch_put(wb, key, (size_t)kl, (const char *)v, sizeof v);
  }
  rocksdb_readoptions_destroy(ro);
  return rc;
}

static inline int rdb_balances_reset(troupe_projection_ctx *ctx, void *data) {
  (void)data;
  rocksdb_writebatch_t *wb =
      (rocksdb_writebatch_t *)troupe_projection_ctx_writebatch(ctx);
  if (!wb) return TROUPE_ESTATE;
  for (int k = 0; k < NACC; k++) {
    char key[32];
    int kl = snprintf(key, sizeof key, "bal/acct-%d", k);
    rocksdb_writebatch_delete(wb, key, (size_t)kl);
  }
  return 0;
}

static int rdb_read_model(rocksdb_t *db, fold *out) {
  memset(out, 0, sizeof *out);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  for (int k = 0; k < NACC; k++) {
    char key[32];
    int kl = snprintf(key, sizeof key, "bal/acct-%d", k);
    size_t vl;
    char *err = NULL;
    char *cur = rocksdb_get(db, ro, key, (size_t)kl, &vl, &err);
    if (err) { rocksdb_free(err); rocksdb_readoptions_destroy(ro); return -1; }
    int64_t v[2] = {0, 0};
    if (cur && vl == sizeof v) memcpy(v, cur, sizeof v);
    rocksdb_free(cur);
    out->sum[k] = v[0];
    out->cnt[k] = v[1];
  }
  rocksdb_readoptions_destroy(ro);
  return 0;
}

/* PostgreSQL read model: table "<schema>".bal(acct int, sum, cnt). */
static char pg_bal_table[96];

static int pg_exec(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
           PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
  return ok ? 0 : TROUPE_EIO;
}

static int pg_balances_handler(troupe_projection_ctx *ctx,
                               const troupe_event *ev, size_t n, void *data) {
  faults *f = data;
  PGconn *c = (PGconn *)troupe_projection_ctx_pgconn(ctx);
  if (!c) return TROUPE_ESTATE;
  fold g;
  group_fold(ev, n, &g);
  char sql[4096];
  int len = snprintf(sql, sizeof sql,
                     "INSERT INTO %s AS b (acct, sum, cnt) VALUES ",
                     pg_bal_table);
  int first = 1;
  for (int k = 0; k < NACC; k++) {
    if (!g.cnt[k]) continue;
    len += snprintf(sql + len, sizeof sql - (size_t)len, "%s(%d,%lld,%lld)",
                    first ? "" : ",", k, (long long)g.sum[k],
                    (long long)g.cnt[k]);
    first = 0;
  }
  snprintf(sql + len, sizeof sql - (size_t)len,
           " ON CONFLICT (acct) DO UPDATE SET sum = b.sum + EXCLUDED.sum, "
           "cnt = b.cnt + EXCLUDED.cnt");
  if (!first && pg_exec(c, sql) < 0) return TROUPE_EIO;
  /* fail after the read model write: the transaction must roll back */
  if (f && f->handler_fail_pct && fault_rand(f) < f->handler_fail_pct) {
    atomic_fetch_add(&f->injected, 1);
    return TROUPE_EIO;
  }
  return 0;
}

static inline int pg_balances_reset(troupe_projection_ctx *ctx, void *data) {
  (void)data;
  PGconn *c = (PGconn *)troupe_projection_ctx_pgconn(ctx);
  char sql[160];
  snprintf(sql, sizeof sql, "DELETE FROM %s", pg_bal_table);
  return c ? pg_exec(c, sql) : TROUPE_ESTATE;
}

static int pg_read_model(PGconn *c, fold *out) {
  memset(out, 0, sizeof *out);
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT acct, sum, cnt FROM %s", pg_bal_table);
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) { PQclear(r); return -1; }
  for (int i = 0; i < PQntuples(r); i++) {
    int k = atoi(PQgetvalue(r, i, 0));
    if (k < 0 || k >= NACC) continue;
    out->sum[k] = atoll(PQgetvalue(r, i, 1));
    out->cnt[k] = atoll(PQgetvalue(r, i, 2));
  }
  PQclear(r);
  return 0;
}

static int pg_setup_schema(const char *url, const char *schema) {
  PGconn *c = PQconnectdb(url);
  if (PQstatus(c) != CONNECTION_OK) { PQfinish(c); return -1; }
  char sql[400];
  /* the read model in a schema of its own ("<schema>_rm"): the journal's
   * schema must hold only the journal */
  snprintf(pg_bal_table, sizeof pg_bal_table, "\"%s_rm\".bal", schema);
  snprintf(sql, sizeof sql,
           "SET client_min_messages = warning; "
           "DROP SCHEMA IF EXISTS \"%s_rm\" CASCADE; CREATE SCHEMA \"%s_rm\"; "
           "CREATE TABLE %s (acct int PRIMARY KEY, sum bigint, cnt bigint)",
           schema, schema, pg_bal_table);
  int rc = pg_exec(c, sql);
  PQfinish(c);
  return rc;
}

static void pg_drop_schema(const char *url, const char *schema) {
  PGconn *c = PQconnectdb(url);
  if (PQstatus(c) == CONNECTION_OK) {
    char sql[400];
    snprintf(sql, sizeof sql,
             "SET client_min_messages = warning; "
             "DROP SCHEMA IF EXISTS \"%s\" CASCADE; "
             "DROP SCHEMA IF EXISTS \"%s_rm\" CASCADE", schema, schema);
    pg_exec(c, sql);
  }
  PQfinish(c);
}

static int fold_eq(const fold *a, const fold *b) {
  return memcmp(a, b, sizeof *a) == 0;
}

static void fold_print(const char *what, const fold *f) {
  fprintf(stderr, "%s:", what);
  for (int k = 0; k < NACC; k++)
    fprintf(stderr, " %lld/%lld", (long long)f->sum[k], (long long)f->cnt[k]);
  fprintf(stderr, "\n");
}

static troupe_system *new_system(const char *name) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = name, .log_level = TROUPE_LOG_ERROR,
                          .log_level_set = true};
  if (troupe_system_create(&sys, &o) < 0) return NULL;
  if (troupe_system_start(sys) < 0) { troupe_system_destroy(sys); return NULL; }
  return sys;
}

static troupe_store_options store_opts(void) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = 1;
  o.sync = 0;
  return o;
}

#endif
