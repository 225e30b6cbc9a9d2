/*
 * bench_projection.c: the `projection` workload.
 *
 *  1. Throughput: N events (tag "bench", over A accounts) are stored
 *     first; an exactly-once projection with grouped handlers (group G)
 *     then folds them into a balances read model: PostgreSQL (one
 *     multi-row upsert per group, in the transaction that moves the
 *     offset) and RocksDB (the group's writes and the offset in one
 *     WriteBatch). events/s = N / time until the stored offset is the
 *     last event's (checked, and the read model's count checked too).
 *  2. Live lag: a writer appends at a steady RATE events/s for D seconds
 *     while a live exactly-once projection follows; the lag of each event
 *     is the time its handler ran minus (a) its timestamp, set when the
 *     append was submitted (includes the journal's commit latency), and
 *     (b) the time its append was acknowledged (the projection's own
 *     lag); p99 in ms, one line each (from=append, from=commit).
 *     RocksDB (in-process notification) and PostgreSQL (LISTEN/NOTIFY and
 *     in-process notification).
 *
 * Environment: PROJ_EVENTS (N, default 100000), PROJ_GROUP (G, 1000),
 * PROJ_PAGE (events per journal read, 4096),
 * PROJ_ACCOUNTS (A, 1000), PROJ_RATE (10000), PROJ_SECONDS (3),
 * PROJ_SLICES=1 (source: every slice instead of the tag; every event
 * carries the tag, so both read the same events), TROUPE_PG_URL
 * (PostgreSQL workloads skip with the reason when unset).
 * Result lines on stdout, progress on stderr.
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <rocksdb/c.h>

#include "troupe/troupe.h"
#include "troupe/journal.h"
#include "troupe/projection.h"
#include "bench_util.h"

static long n_events, group, accounts, rate, seconds, page;
static int by_slices;      /* source: every slice instead of the tag */
static const char *pg_url;
static char tmpdir[256];
static char pg_table[128];

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- writing -------------------------------------------------------------- */

static troupe_event mk(int64_t *amount, const char **tag) {
  troupe_event e;
  memset(&e, 0, sizeof e);
  e.manifest = "bench.Amount";
  e.payload = amount;
  e.payload_len = sizeof *amount;
  e.tags = tag;
  e.ntags = 1;
  e.timestamp_ms = now_ms();
  return e;
}

/* N events, 100 per append, round robin over the accounts. */
static int preload(troupe_journal *j, long n) {
  static const char *tag[1] = {"bench"};
  uint64_t *heads = calloc((size_t)accounts, sizeof *heads);
  int64_t amounts[100];
  troupe_event ev[100];
  for (long i = 0, a = 0; i < n; a = (a + 1) % accounts) {
    long k = n - i < 100 ? n - i : 100;
    char pid[32];
    snprintf(pid, sizeof pid, "acct-%ld", a);
    for (long x = 0; x < k; x++) {
      amounts[x] = 1;
      ev[x] = mk(&amounts[x], tag);
    }
    uint64_t h;
    int rc = troupe_journal_append_sync(j, pid, heads[a], ev, (size_t)k, &h);
    if (rc < 0) {
      fprintf(stderr, "append: %s (%s)\n", troupe_strerror(rc), troupe_errmsg());
      free(heads);
      return rc;
    }
    heads[a] = h;
    i += k;
  }
  free(heads);
  return 0;
}

/* ---- handlers -------------------------------------------------------------- */

typedef struct lagrec {
  atomic_long n;
  long cap;
  int32_t *ms;       /* lag of each handled event */
  int record;
} lagrec;

static lagrec lag;

/* When each append was acknowledged (committed), per account and seq:
 * the lag "from commit" is what the projection itself adds. */
static _Atomic int64_t *ack_ms;
static long ack_per_acct;
static int32_t *lag_commit;

static void record_lag(const troupe_event *ev, size_t n) {
  if (!lag.record) return;
  int64_t t = now_ms();
  for (size_t i = 0; i < n; i++) {
    long k = atomic_fetch_add(&lag.n, 1);
    if (k >= lag.cap) continue;
    lag.ms[k] = (int32_t)(t - ev[i].timestamp_ms);
    long a = atoi(ev[i].persistence_id + 5);
    int64_t acked = ev[i].seq < (uint64_t)ack_per_acct
                        ? atomic_load(&ack_ms[a * ack_per_acct + (long)ev[i].seq])
                        : 0;
    /* seen before its append's callback ran: no lag of ours */
    lag_commit[k] = acked ? (int32_t)(t > acked ? t - acked : 0) : 0;
  }
}

static int acct_index(const char *pid) { return atoi(pid + 5); }

/* One multi-row upsert per group: (account, +sum, +count). */
static int pg_handler(troupe_projection_ctx *ctx, const troupe_event *ev,
                      size_t n, void *data) {
  (void)data;
  record_lag(ev, n);
  PGconn *c = (PGconn *)troupe_projection_ctx_pgconn(ctx);
  if (!c) return TROUPE_ESTATE;
  static _Thread_local int64_t *sum, *cnt;
  if (!sum) {
    sum = calloc((size_t)accounts, sizeof *sum);
    cnt = calloc((size_t)accounts, sizeof *cnt);
  }
  for (size_t i = 0; i < n; i++) {
    int a = acct_index(ev[i].persistence_id);
    int64_t v;
    memcpy(&v, ev[i].payload, sizeof v);
    sum[a] += v;
    cnt[a]++;
  }
  size_t cap = 256 + (size_t)accounts * 64;
  char *sql = malloc(cap);
  size_t len = (size_t)snprintf(sql, cap,
                                "INSERT INTO %s AS b (acct, sum, cnt) VALUES ",
                                pg_table);
  int first = 1;
  for (long a = 0; a < accounts; a++) {
    if (!cnt[a]) continue;
    len += (size_t)snprintf(sql + len, cap - len, "%s(%ld,%lld,%lld)",
                            first ? "" : ",", a, (long long)sum[a],
                            (long long)cnt[a]);
    first = 0;
    sum[a] = cnt[a] = 0;
  }
  snprintf(sql + len, cap - len,
           " ON CONFLICT (acct) DO UPDATE SET sum = b.sum + EXCLUDED.sum, "
           "cnt = b.cnt + EXCLUDED.cnt");
  PGresult *r = PQexec(c, sql);
  int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : TROUPE_EIO;
  if (rc) fprintf(stderr, "upsert: %s", PQresultErrorMessage(r));
  PQclear(r);
  free(sql);
  return rc;
}

/* The group's per-account totals added to "bal/<acct>" in the batch. */
static int rdb_handler(troupe_projection_ctx *ctx, const troupe_event *ev,
                       size_t n, void *data) {
  (void)data;
  record_lag(ev, n);
  rocksdb_t *db = (rocksdb_t *)troupe_projection_ctx_rocksdb(ctx);
  rocksdb_writebatch_t *wb =
      (rocksdb_writebatch_t *)troupe_projection_ctx_writebatch(ctx);
  static _Thread_local int64_t *sum, *cnt;
  static _Thread_local rocksdb_readoptions_t *ro;
  if (!sum) {
    sum = calloc((size_t)accounts, sizeof *sum);
    cnt = calloc((size_t)accounts, sizeof *cnt);
    ro = rocksdb_readoptions_create();
  }
  for (size_t i = 0; i < n; i++) {
    int a = acct_index(ev[i].persistence_id);
    int64_t v;
    memcpy(&v, ev[i].payload, sizeof v);
    sum[a] += v;
    cnt[a]++;
  }
  for (long a = 0; a < accounts; a++) {
    if (!cnt[a]) continue;
    char key[32];
    int kl = snprintf(key, sizeof key, "bal/%ld", a);
    int64_t cur[2] = {0, 0};
    size_t vl;
    char *err = NULL;
    char *v = rocksdb_get(db, ro, key, (size_t)kl, &vl, &err);
    if (err) { rocksdb_free(err); return TROUPE_EIO; }
    if (v && vl == sizeof cur) memcpy(cur, v, sizeof cur);
    rocksdb_free(v);
    cur[0] += sum[a];
    cur[1] += cnt[a];
    rocksdb_writebatch_put(wb, key, (size_t)kl, (const char *)cur, sizeof cur);
    sum[a] = cnt[a] = 0;
  }
  return 0;
}

/* ---- setup ---------------------------------------------------------------- */

static int pg_sql(const char *sql) {
  PGconn *c = PQconnectdb(pg_url);
  int ok = PQstatus(c) == CONNECTION_OK;
  if (ok) {
    PGresult *r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
         PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
  }
  PQfinish(c);
  return ok ? 0 : -1;
}

static long long pg_count(void) {
  PGconn *c = PQconnectdb(pg_url);
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT coalesce(sum(cnt), 0) FROM %s", pg_table);
  PGresult *r = PQexec(c, sql);
  long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(c);
  return n;
}

typedef struct backend {
  const char *name;      /* rocksdb | postgres */
  char jspec[800];
  char ospec[800];
  char schema[64];
} backend;

static int setup(backend *b, const char *name, int run) {
  memset(b, 0, sizeof *b);
  b->name = name;
  if (strcmp(name, "postgres") == 0) {
    snprintf(b->schema, sizeof b->schema, "bench_proj_%d_%d", (int)getpid(), run);
    snprintf(b->jspec, sizeof b->jspec, "pg:%s schema=%s", pg_url, b->schema);
    snprintf(b->ospec, sizeof b->ospec, "%s", b->jspec);
    snprintf(pg_table, sizeof pg_table, "\"%s_rm\".bal", b->schema);
    char sql[600];
    snprintf(sql, sizeof sql,
             "SET client_min_messages = warning; "
             "DROP SCHEMA IF EXISTS \"%s_rm\" CASCADE; CREATE SCHEMA \"%s_rm\"; "
             "CREATE TABLE %s (acct int PRIMARY KEY, sum bigint, cnt bigint)",
             b->schema, b->schema, pg_table);
    return pg_sql(sql);
  }
  snprintf(b->jspec, sizeof b->jspec, "rocksdb:%s/journal-%d", tmpdir, run);
  snprintf(b->ospec, sizeof b->ospec, "rocksdb:%s/proj-%d", tmpdir, run);
  return 0;
}

static void teardown(backend *b) {
  if (getenv("PROJ_KEEP")) return;
  if (strcmp(b->name, "postgres") == 0) {
    char sql[300];
    snprintf(sql, sizeof sql,
             "SET client_min_messages = warning; "
             "DROP SCHEMA IF EXISTS \"%s\" CASCADE; "
             "DROP SCHEMA IF EXISTS \"%s_rm\" CASCADE", b->schema, b->schema);
    pg_sql(sql);
  }
}

static troupe_system *new_system(void) {
  troupe_system *sys;
  troupe_system_opts o = {.name = "bench", .log_level = TROUPE_LOG_WARN};
  if (troupe_system_create(&sys, &o) < 0) return NULL;
  troupe_system_start(sys);
  return sys;
}

/* read model count (RocksDB) */
static long long rdb_count(troupe_offset_store *os) {
  rocksdb_t *db = (rocksdb_t *)troupe_offset_store_rocksdb(os);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  long long n = 0;
  for (long a = 0; a < accounts; a++) {
    char key[32];
    int kl = snprintf(key, sizeof key, "bal/%ld", a);
    size_t vl;
    char *err = NULL;
    char *v = rocksdb_get(db, ro, key, (size_t)kl, &vl, &err);
    int64_t cur[2] = {0, 0};
    if (v && vl == sizeof cur) memcpy(cur, v, sizeof cur);
    rocksdb_free(v);
    if (err) rocksdb_free(err);
    n += cur[1];
  }
  rocksdb_readoptions_destroy(ro);
  return n;
}

/* ---- 1. throughput ---------------------------------------------------------- */

static int throughput(const char *name, int run) {
  backend b;
  if (setup(&b, name, run) < 0) return 1;
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  so.sync = 0;
  so.page_size = (uint32_t)page;   /* events per journal query */
  troupe_journal *j;
  int rc = troupe_journal_open(b.jspec, &so, &j);
  if (rc < 0) { fprintf(stderr, "journal: %s\n", troupe_errmsg()); return 1; }
  fprintf(stderr, "projection %s: storing %ld events...\n", name, n_events);
  if (preload(j, n_events) < 0) return 1;
  troupe_offset_store *os;
  if ((rc = troupe_offset_store_open(b.ospec, &os)) < 0) {
    fprintf(stderr, "offsets: %s\n", troupe_errmsg());
    return 1;
  }
  troupe_system *sys = new_system();
  int pg = strcmp(name, "postgres") == 0;
  troupe_projection_def d = {
    .name = "bench", .journal = j, .tag = by_slices ? NULL : "bench",
    .offsets = os,
    .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
    .handler = pg ? pg_handler : rdb_handler,
    .group_size = (uint32_t)group, .page_size = (uint32_t)(group > page ? group : page),
    .current_only = 1,
  };
  lag.record = 0;
  troupe_projection *p;
  double t0 = bench_now();
  if ((rc = troupe_projection_start(sys, &d, &p)) < 0) return 1;
  troupe_projection_status st;
  for (;;) {
    troupe_projection_get_progress(p, &st);
    if (st.state == TROUPE_PROJECTION_DONE || st.state == TROUPE_PROJECTION_FAILED)
      break;
    usleep(2000);
  }
  double t = bench_now() - t0;
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  troupe_projection_info info;
  troupe_projection_info_get(os, by_slices ? "bench@0-1023" : "bench", &info);
  long long counted = pg ? pg_count() : rdb_count(os);
  int ok = info.offset == (uint64_t)n_events && counted == n_events;
  if (!ok)
    fprintf(stderr, "projection %s: FAILED: stored offset %llu, read model "
            "count %lld, expected %ld\n", name, (unsigned long long)info.offset,
            counted, n_events);
  else
    printf("workload=projection system=troupe value=%.0f unit=events/s "
           "backend=%s mode=exactly-once source=%s group=%ld events=%ld "
           "accounts=%ld\n", (double)n_events / t, name,
           by_slices ? "slices" : "tag", group, n_events, accounts);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  teardown(&b);
  return ok ? 0 : 1;
}

/* ---- 2. live lag ------------------------------------------------------------ */

typedef struct pacer {
  troupe_journal *j;
  long total;
  atomic_long acked;
  atomic_int failed;
} pacer;

typedef struct append_ctx { pacer *pc; long acct; } append_ctx;

static void append_done(int status, uint64_t head, void *data) {
  append_ctx *ac = data;
  pacer *pc = ac->pc;
  if (status < 0) {
    atomic_store(&pc->failed, 1);
  } else {
    int64_t t = now_ms();
    for (uint64_t s = head - 9; s <= head && s < (uint64_t)ack_per_acct; s++)
      atomic_store(&ack_ms[ac->acct * ack_per_acct + (long)s], t);
    atomic_fetch_add(&pc->acked, 10);
  }
  free(ac);
}

/* Appends of 10 events every 1 ms (10k events/s at the default rate), to
 * rotating accounts, asynchronously so that storage latency does not slow
 * the pace. */
static void *pace(void *arg) {
  pacer *pc = arg;
  static const char *tag[1] = {"bench"};
  uint64_t *heads = calloc((size_t)accounts, sizeof *heads);
  long per_tick = 10;
  double tick = (double)per_tick / (double)rate;
  double t0 = bench_now();
  int64_t amounts[10];
  for (long i = 0, a = 0; i < pc->total; i += per_tick, a = (a + 1) % accounts) {
    double due = t0 + (double)(i / per_tick) * tick;
    double now = bench_now();
    if (due > now) usleep((useconds_t)((due - now) * 1e6));
    troupe_event ev[10];
    for (int x = 0; x < per_tick; x++) {
      amounts[x] = 1;
      ev[x] = mk(&amounts[x], tag);
    }
    char pid[32];
    snprintf(pid, sizeof pid, "acct-%ld", a);
    append_ctx *ac = malloc(sizeof *ac);
    ac->pc = pc;
    ac->acct = a;
    if (troupe_journal_append(pc->j, pid, heads[a], ev, (size_t)per_tick,
                              append_done, ac) < 0) {
      free(ac);
      atomic_store(&pc->failed, 1);
      break;
    }
    heads[a] += (uint64_t)per_tick;
  }
  free(heads);
  return NULL;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int live_lag(const char *name, int run) {
  backend b;
  if (setup(&b, name, run) < 0) return 1;
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  so.sync = 0;
  so.page_size = (uint32_t)page;   /* events per journal query */
  troupe_journal *j;
  if (troupe_journal_open(b.jspec, &so, &j) < 0) {
    fprintf(stderr, "journal: %s\n", troupe_errmsg());
    return 1;
  }
  troupe_offset_store *os;
  if (troupe_offset_store_open(b.ospec, &os) < 0) {
    fprintf(stderr, "offsets: %s\n", troupe_errmsg());
    return 1;
  }
  /* PostgreSQL: the projection reads through a connection of its own (a
   * second store: another spec), not queued behind the writer's group
   * commits; it is woken by LISTEN/NOTIFY */
  troupe_journal *rj = j;
  if (strcmp(name, "postgres") == 0) {
    char rspec[900];
    snprintf(rspec, sizeof rspec, "pg:%s application_name=projection schema=%s",
             pg_url, b.schema);
    if (troupe_journal_open(rspec, &so, &rj) < 0) {
      fprintf(stderr, "journal: %s\n", troupe_errmsg());
      return 1;
    }
  }
  long total = rate * seconds;
  lag.cap = total;
  lag.ms = calloc((size_t)total, sizeof *lag.ms);
  lag_commit = calloc((size_t)total, sizeof *lag_commit);
  ack_per_acct = total / accounts + 32;
  ack_ms = calloc((size_t)(accounts * ack_per_acct), sizeof *ack_ms);
  atomic_store(&lag.n, 0);
  lag.record = 1;
  troupe_system *sys = new_system();
  int pg = strcmp(name, "postgres") == 0;
  troupe_projection_def d = {
    .name = "lag", .journal = rj, .tag = by_slices ? NULL : "bench",
    .offsets = os,
    .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
    .handler = pg ? pg_handler : rdb_handler, .group_size = 500,
  };
  troupe_projection *p;
  if (troupe_projection_start(sys, &d, &p) < 0) return 1;
  /* the writer starts once the worker runs (not counting start-up) */
  troupe_projection_status st;
  double w0 = bench_now();
  while (bench_now() - w0 < 10 &&
         (troupe_projection_get_progress(p, &st) < 0 ||
          st.state != TROUPE_PROJECTION_RUNNING))
    usleep(2000);
  usleep(50000);
  fprintf(stderr, "projection %s: live, %ld events/s for %ld s...\n", name,
          rate, seconds);
  pacer pc = {.j = j, .total = total};
  pthread_t th;
  pthread_create(&th, NULL, pace, &pc);
  pthread_join(th, NULL);
  double t0 = bench_now();
  while (atomic_load(&pc.acked) < total && !atomic_load(&pc.failed) &&
         bench_now() - t0 < 30)
    usleep(1000);
  fprintf(stderr, "projection %s: the writer's last append acknowledged "
          "%.0f ms after its submission ended\n", name,
          (bench_now() - t0) * 1e3);
  while (bench_now() - t0 < 30) {
    troupe_projection_get_progress(p, &st);
    if (st.committed >= (uint64_t)total) break;
    usleep(5000);
  }
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  long n = atomic_load(&lag.n);
  int ok = !atomic_load(&pc.failed) && st.committed == (uint64_t)total && n >= total;
  if (ok) {
    qsort(lag.ms, (size_t)total, sizeof *lag.ms, cmp_i32);
    qsort(lag_commit, (size_t)total, sizeof *lag_commit, cmp_i32);
    long i99 = (long)((double)total * 0.99);
    int32_t p50 = lag.ms[total / 2], p99 = lag.ms[i99];
    int32_t c50 = lag_commit[total / 2], c99 = lag_commit[i99];
    fprintf(stderr, "projection %s: lag from append: p50 %d ms, p99 %d ms, "
            "max %d ms; from commit: p50 %d ms, p99 %d ms, max %d ms\n",
            name, p50, p99, lag.ms[total - 1], c50, c99,
            lag_commit[total - 1]);
    printf("workload=projection system=troupe value=%d unit=ms stat=lag-p99 "
           "backend=%s mode=exactly-once source=%s rate=%ld seconds=%ld "
           "from=append p50=%d\n", p99, name, by_slices ? "slices" : "tag",
           rate, seconds, p50);
    printf("workload=projection system=troupe value=%d unit=ms stat=lag-p99 "
           "backend=%s mode=exactly-once source=%s rate=%ld seconds=%ld "
           "from=commit p50=%d\n", c99, name, by_slices ? "slices" : "tag",
           rate, seconds, c50);
  } else {
    fprintf(stderr, "projection %s: FAILED: committed %llu, handled %ld, "
            "expected %ld\n", name, (unsigned long long)st.committed, n, total);
  }
  free(lag.ms);
  free(lag_commit);
  free((void *)ack_ms);
  lag.ms = NULL;
  lag.record = 0;
  troupe_offset_store_close(os);
  if (rj != j) troupe_journal_close(rj);
  troupe_journal_close(j);
  teardown(&b);
  return ok ? 0 : 1;
}

int main(void) {
  n_events = bench_env_long("PROJ_EVENTS", 100000);
  group = bench_env_long("PROJ_GROUP", 1000);
  accounts = bench_env_long("PROJ_ACCOUNTS", 1000);
  rate = bench_env_long("PROJ_RATE", 10000);
  seconds = bench_env_long("PROJ_SECONDS", 3);
  page = bench_env_long("PROJ_PAGE", 4096);
  if (n_events < 1 || group < 1 || accounts < 1 || rate < 10 || seconds < 1 ||
      page < 1) {
    fprintf(stderr, "bench_projection: bad sizes\n");
    return 2;
  }
  pg_url = getenv("TROUPE_PG_URL");
  if (pg_url && !*pg_url) pg_url = NULL;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/troupe-bench-projection-%d", (int)getpid());
  mkdir(tmpdir, 0755);
  int fail = 0;
  by_slices = bench_env_long("PROJ_SLICES", 0) != 0;
  if (pg_url) {
    fail |= throughput("postgres", 0);
  } else {
    fprintf(stderr, "projection postgres: skipped: TROUPE_PG_URL is not set "
            "(eval \"$(scripts/pg-test-server.sh start)\")\n");
  }
  fail |= throughput("rocksdb", 1);
  fail |= live_lag("rocksdb", 2);
  if (pg_url) fail |= live_lag("postgres", 3);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return fail;
}
