/*
 * test_projection.c: projections.
 *
 *  - the offset-store conformance suite, on memory, RocksDB and PostgreSQL
 *    (PostgreSQL from TROUPE_PG_URL; skipped with the reason when unset);
 *  - at-least-once never skips (also with failing handlers and restarts);
 *  - exactly-once into RocksDB and PostgreSQL under injected faults (the
 *    handler fails, including after its read-model write; the commit path
 *    fails before and after the commit): the read model equals the fold;
 *  - concurrent writers with late commits never cause a skip (RocksDB,
 *    PostgreSQL with several connections);
 *  - failure strategies (skip, retry-then-skip) and the skipped counter;
 *  - management: pause, resume, rewind, reset, from code and through a
 *    second store handle (another process's view: for RocksDB the request
 *    file path);
 *  - slices: instances over slice ranges cover every event once;
 *  - groups by size and by time.
 */
#include "test_projection_util.h"

#include <sys/stat.h>

static const char *pg_url;
static char tmpdir[256];
static int dir_counter;

static void fresh_dir(char *out, size_t n, const char *what) {
  snprintf(out, n, "%s/%s-%d", tmpdir, what, dir_counter++);
}

static char pg_schema_name[64];
static int pg_schema_counter;
static const char *pg_spec(char *buf, size_t n) {
  snprintf(pg_schema_name, sizeof pg_schema_name, "tproj_%d_%d", (int)getpid(),
           pg_schema_counter++);
  snprintf(buf, n, "pg:%s schema=%s", pg_url, pg_schema_name);
  return buf;
}

/* ------------------------------------------------------------------ */
/* Offset store conformance                                            */

static void conformance(const char *spec) {
  troupe_offset_store *s = NULL;
  TT_EQ_INT(troupe_offset_store_open(spec, &s), 0);
  troupe_projection_info info;
  TT_EQ_INT(troupe_projection_info_get(s, "p1", &info), TROUPE_ENOENT);
  TT_EQ_INT(troupe_projection_info_get(s, "bad name", &info), TROUPE_EINVAL);
  TT_EQ_INT(troupe_projection_info_get(NULL, "p1", &info), TROUPE_EINVAL);
  TT_EQ_INT(troupe_projection_request(s, "p1", 99, 0), TROUPE_EINVAL);

  /* a worker session: first commit, fenced begin, status-only publish */
  pj_store *ps = s->s;
  pj_session *ss = NULL;
  TT_EQ_INT(ps->vt->session_open(ps, &ss), 0);
  pj_row row;
  pj_ctl ctl;
  TT_EQ_INT(ps->vt->load(ss, "p1", &row, &ctl), TROUPE_ENOENT);
  TT_EQ_INT(ps->vt->begin(ss, "p1", 1, 0), 0);
  memset(&row, 0, sizeof row);
  row.offset = 5;
  snprintf(row.source, sizeof row.source, "tag:t");
  TT_EQ_INT(ps->vt->commit(ss, "p1", &row), 0);
  TT_EQ_INT(troupe_projection_info_get(s, "p1", &info), 0);
  TT_EQ_INT(info.offset, 5);
  TT_EQ_STR(info.source, "tag:t");
  TT_EQ_INT(info.paused, 0);
  /* fencing: a stale expected offset is a conflict, nothing written */
  TT_EQ_INT(ps->vt->begin(ss, "p1", 1, 4), TROUPE_ECONFLICT);
  ps->vt->abort(ss);
  TT_EQ_INT(ps->vt->begin(ss, "p1", 1, 5), 0);
  row.offset = 9;
  TT_EQ_INT(ps->vt->commit(ss, "p1", &row), 0);
  /* an aborted transaction leaves the offset */
  TT_EQ_INT(ps->vt->begin(ss, "p1", 1, 9), 0);
  ps->vt->abort(ss);
  TT_EQ_INT(troupe_projection_info_get(s, "p1", &info), 0);
  TT_EQ_INT(info.offset, 9);
  /* publish changes status, never the offset */
  pj_row st = row;
  st.offset = 1000;
  st.state = TROUPE_PROJECTION_PAUSED;
  st.skipped = 3;
  st.lag_events = 7;
  TT_EQ_INT(ps->vt->publish(ss, "p1", &st), 0);
  TT_EQ_INT(troupe_projection_info_get(s, "p1", &info), 0);
  TT_EQ_INT(info.offset, 9);
  TT_EQ_INT(info.state, TROUPE_PROJECTION_PAUSED);
  TT_EQ_INT(info.skipped, 3);
  TT_EQ_INT(info.lag_events, 7);

  /* management: pause/resume flags, rewind/reset requests */
  TT_EQ_INT(troupe_projection_request(s, "p1", TROUPE_PROJECTION_PAUSE, 0), 0);
  TT_EQ_INT(troupe_projection_info_get(s, "p1", &info), 0);
  TT_EQ_INT(info.paused, 1);
  TT_EQ_INT(info.offset, 9);   /* a request does not touch the offset */
  /* a worker commit does not clear the pause */
  TT_EQ_INT(ps->vt->begin(ss, "p1", 1, 9), 0);
  row.offset = 10;
  TT_EQ_INT(ps->vt->commit(ss, "p1", &row), 0);
  TT_EQ_INT(ps->vt->load(ss, "p1", &row, &ctl), 0);
  TT_EQ_INT(ctl.paused, 1);
  TT_EQ_INT(row.offset, 10);
  TT_EQ_INT(troupe_projection_request(s, "p1", TROUPE_PROJECTION_RESUME, 0), 0);
  TT_EQ_INT(troupe_projection_request(s, "p1", TROUPE_PROJECTION_REWIND, 3), 0);
  TT_EQ_INT(troupe_projection_info_get(s, "p1", &info), 0);
  TT_EQ_INT(info.paused, 0);
  TT_EQ_INT(info.pending, 1);
  TT_EQ_INT(ps->vt->load(ss, "p1", &row, &ctl), 0);
  TT_EQ_INT(ctl.req_kind, TROUPE_PROJECTION_REWIND);
  TT_EQ_INT(ctl.req_offset, 3);
  TT_EQ_INT(troupe_projection_request(s, "p1", TROUPE_PROJECTION_RESET, 77), 0);
  TT_EQ_INT(ps->vt->load(ss, "p1", &row, &ctl), 0);
  TT_EQ_INT(ctl.req_kind, TROUPE_PROJECTION_RESET);
  TT_EQ_INT(ctl.req_offset, 0);
  TT_EQ_INT(ctl.req_seq, 2);
  /* the worker acknowledges by committing ack_seq */
  TT_EQ_INT(ps->vt->begin(ss, "p1", 0, 0), 0);
  row.offset = 0;
  row.ack_seq = ctl.req_seq;
  TT_EQ_INT(ps->vt->commit(ss, "p1", &row), 0);
  TT_EQ_INT(troupe_projection_info_get(s, "p1", &info), 0);
  TT_EQ_INT(info.pending, 0);
  TT_EQ_INT(info.offset, 0);

  /* a request for a name that never ran creates it; sliced instances */
  TT_EQ_INT(troupe_projection_request(s, "later", TROUPE_PROJECTION_PAUSE, 0), 0);
  TT_EQ_INT(troupe_projection_info_get(s, "later", &info), 0);
  TT_EQ_INT(info.paused, 1);
  memset(&row, 0, sizeof row);
  TT_EQ_INT(ps->vt->commit(ss, "sl@0-511", &row), 0);
  TT_EQ_INT(ps->vt->commit(ss, "sl@512-1023", &row), 0);
  TT_EQ_INT(troupe_projection_request(s, "sl", TROUPE_PROJECTION_PAUSE, 0), 0);
  TT_EQ_INT(troupe_projection_info_get(s, "sl@0-511", &info), 0);
  TT_EQ_INT(info.paused, 1);
  TT_EQ_INT(troupe_projection_info_get(s, "sl@512-1023", &info), 0);
  TT_EQ_INT(info.paused, 1);
  TT_EQ_INT(troupe_projection_info_get(s, "sl", &info), TROUPE_ENOENT);
  TT_EQ_INT(troupe_projection_info_get(s, "sl@5-1", &info), TROUPE_EINVAL);

  troupe_projection_info *v = NULL;
  size_t n = 0;
  TT_EQ_INT(troupe_projection_list(s, &v, &n), 0);
  TT_EQ_INT(n, 4);
  TT_EQ_STR(v[0].name, "later");
  TT_EQ_STR(v[1].name, "p1");
  TT_EQ_STR(v[2].name, "sl@0-511");
  TT_EQ_STR(v[3].name, "sl@512-1023");
  free(v);
  ps->vt->session_close(ss);
  troupe_offset_store_close(s);
}

static void test_offsets_memory(void) { conformance("memory:"); }

static void test_offsets_rocksdb(void) {
  char dir[300], spec[320];
  fresh_dir(dir, sizeof dir, "offsets");
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  conformance(spec);
  /* persisted across a reopen */
  troupe_offset_store *s;
  TT_EQ_INT(troupe_offset_store_open(spec, &s), 0);
  troupe_projection_info info;
  TT_EQ_INT(troupe_projection_info_get(s, "later", &info), 0);
  TT_EQ_INT(info.paused, 1);
  /* a second handle while the first is open: read-only, requests queued
   * as files and applied by the owner at its next load */
  troupe_offset_store *s2;
  TT_EQ_INT(troupe_offset_store_open(spec, &s2), 0);
  TT_EQ_INT(troupe_projection_info_get(s2, "later", &info), 0);
  TT_EQ_INT(troupe_projection_request(s2, "later", TROUPE_PROJECTION_RESUME, 0), 0);
  pj_session *ss;
  TT_EQ_INT(s2->s->vt->session_open(s2->s, &ss), TROUPE_EBUSY);
  troupe_offset_store_close(s2);
  TT_EQ_INT(s->s->vt->session_open(s->s, &ss), 0);
  pj_row row;
  pj_ctl ctl;
  TT_EQ_INT(s->s->vt->load(ss, "later", &row, &ctl), 0);
  TT_EQ_INT(ctl.paused, 0);
  s->s->vt->session_close(ss);
  troupe_offset_store_close(s);
  TT_EQ_INT(troupe_offset_store_open("rocksdb:", &s), TROUPE_EINVAL);
  TT_EQ_INT(troupe_offset_store_open("nosuch:x", &s), TROUPE_EINVAL);
  TT_EQ_INT(troupe_offset_store_open(NULL, &s), TROUPE_EINVAL);
}

static void test_offsets_pg(void) {
  if (!pg_url) TT_SKIP("TROUPE_PG_URL is not set");
  char spec[700];
  pg_spec(spec, sizeof spec);
  conformance(spec);
  pg_drop_schema(pg_url, pg_schema_name);
}

/* ------------------------------------------------------------------ */
/* At-least-once                                                       */

#define MAXOFF 20000

typedef struct seen {
  atomic_int count[MAXOFF];
  atomic_int calls;
  atomic_int fail_pct;
  atomic_uint rnd;
  atomic_int bad_seq;     /* events of acct-0 with this seq always fail */
  atomic_int max_group;
} seen;

static int seen_handler(troupe_projection_ctx *ctx, const troupe_event *ev,
                        size_t n, void *data) {
  (void)ctx;
  seen *s = data;
  atomic_fetch_add(&s->calls, 1);
  int mg = atomic_load(&s->max_group);
  if ((int)n > mg) atomic_store(&s->max_group, (int)n);
  for (size_t i = 0; i < n; i++)
    if (atomic_load(&s->bad_seq) && ev[i].seq == (uint64_t)s->bad_seq &&
        strcmp(ev[i].persistence_id, "acct-0") == 0)
      return TROUPE_EINVAL;
  int pct = atomic_load(&s->fail_pct);
  if (pct) {
    unsigned r = atomic_fetch_add(&s->rnd, 2654435761u) >> 7;
    if ((int)(r % 100) < pct) return TROUPE_EIO;
  }
  for (size_t i = 0; i < n; i++)
    if (ev[i].offset < MAXOFF) atomic_fetch_add(&s->count[ev[i].offset], 1);
  return 0;
}

static int all_seen(seen *s, uint64_t lo, uint64_t hi) {
  for (uint64_t o = lo; o <= hi; o++)
    if (atomic_load(&s->count[o]) < 1) return 0;
  return 1;
}

static void alo_run(const char *jspec, const char *ospec, int fail_pct) {
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open(jspec, &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 600, 0, "t"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open(ospec, &os), 0);
  troupe_system *sys = new_system("alo");
  TT_ASSERT(sys);
  seen *s = calloc(1, sizeof *s);
  atomic_store(&s->fail_pct, fail_pct);
  troupe_projection_def d = {
    .name = "alo", .journal = j, .tag = "t", .offsets = os,
    .handler = seen_handler, .data = s, .commit_every = 50,
    .on_error = TROUPE_PROJECTION_RETRY_FAIL, .retries = 1,
    .retry_backoff_ms = 1, .restart_min_ms = 5, .restart_max_ms = 20,
    .group_size = 7,
  };
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  troupe_projection *p2;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p2), TROUPE_EEXIST);
  /* live: more events while it runs */
  TT_EQ_INT(write_events(j, heads, 400, 1000, "t"), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_seen(s, 1, 1000), 20000));
  atomic_store(&s->fail_pct, 0);
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.committed == 1000, 10000));
  TT_EQ_INT(troupe_projection_get_status(p, &st), 0);
  TT_EQ_INT(st.lag_events, 0);
  TT_EQ_INT(st.lag_ms, 0);
  TT_EQ_INT(st.skipped, 0);
  if (fail_pct) TT_ASSERT(st.restarts > 0);
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  troupe_projection_info info;
  TT_EQ_INT(troupe_projection_info_get(os, "alo", &info), 0);
  TT_EQ_INT(info.offset, 1000);
  TT_EQ_INT(info.state, TROUPE_PROJECTION_STOPPED);
  TT_EQ_STR(info.source, "tag:t");
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  free(s);
}

static void test_at_least_once_memory(void) {
  alo_run("memory:", "memory:", 0);
}

static void test_at_least_once_failing_handler(void) {
  /* handler fails 30% of calls, retry once then fail: restarts from the
   * stored offset, never skips */
  alo_run("memory:", "memory:", 30);
}

static void test_at_least_once_rocksdb(void) {
  char d1[300], d2[300], j[320], o[320];
  fresh_dir(d1, sizeof d1, "journal");
  fresh_dir(d2, sizeof d2, "proj");
  snprintf(j, sizeof j, "rocksdb:%s", d1);
  snprintf(o, sizeof o, "rocksdb:%s", d2);
  alo_run(j, o, 30);
}

/* A restart resumes from the stored offset: a current-only projection run
 * twice handles the old events once and the new ones once. */
static void test_resume_from_offset(void) {
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:", &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 100, 0, "t"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open("memory:", &os), 0);
  troupe_system *sys = new_system("resume");
  seen *s = calloc(1, sizeof *s);
  troupe_projection_def d = {.name = "r", .journal = j, .tag = "t",
                             .offsets = os, .handler = seen_handler, .data = s,
                             .current_only = 1,
                             .delivery = TROUPE_PROJECTION_EXACTLY_ONCE};
  for (int round = 0; round < 2; round++) {
    troupe_projection *p;
    TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
    troupe_projection_status st;
    TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                                st.state == TROUPE_PROJECTION_DONE, 10000));
    troupe_projection_stop(p);
    if (round == 0) TT_EQ_INT(write_events(j, heads, 50, 100, "t"), 0);
  }
  for (int o = 1; o <= 150; o++) TT_EQ_INT(atomic_load(&s->count[o]), 1);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  free(s);
}

/* ------------------------------------------------------------------ */
/* Exactly-once under faults                                           */

static void eo_rocksdb_run(int handler_pct, int commit_pct) {
  char d1[300], d2[300], js[320], os_spec[320];
  fresh_dir(d1, sizeof d1, "journal");
  fresh_dir(d2, sizeof d2, "proj");
  snprintf(js, sizeof js, "rocksdb:%s", d1);
  snprintf(os_spec, sizeof os_spec, "rocksdb:%s", d2);
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open(js, &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 1000, 0, "bank"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open(os_spec, &os), 0);
  troupe_system *sys = new_system("eo");
  faults f = {.handler_fail_pct = (unsigned)handler_pct,
              .commit_fail_pct = (unsigned)commit_pct};
  atomic_init(&f.seed, 12345);
  g_faults = &f;
  pj_test_fault = fault_hook;
  troupe_projection_def d = {
    .name = "balances", .journal = j, .tag = "bank", .offsets = os,
    .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
    .handler = rdb_balances_handler, .reset = rdb_balances_reset, .data = &f,
    .group_size = 16, .on_error = TROUPE_PROJECTION_RETRY_FAIL, .retries = 2,
    .retry_backoff_ms = 1, .restart_min_ms = 2, .restart_max_ms = 10,
  };
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  TT_EQ_INT(write_events(j, heads, 1000, 5000, "bank"), 0);
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.committed == 2000, 30000));
  pj_test_fault = NULL;
  troupe_projection_stop(p);
  fold want, got;
  TT_EQ_INT(journal_fold(j, "bank", &want), 0);
  TT_EQ_INT(rdb_read_model((rocksdb_t *)troupe_offset_store_rocksdb(os), &got), 0);
  if (!fold_eq(&want, &got)) { fold_print("want", &want); fold_print("got", &got); }
  TT_ASSERT(fold_eq(&want, &got));
  if (handler_pct || commit_pct) TT_ASSERT(atomic_load(&f.injected) > 0);
  TT_EQ_INT(st.skipped, 0);
  /* reset: rebuild from the beginning gives the same read model */
  f.handler_fail_pct = f.commit_fail_pct = 0;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  TT_EQ_INT(troupe_projection_reset(p), 0);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.handled >= 2000 && st.committed == 2000, 20000));
  troupe_projection_stop(p);
  TT_EQ_INT(rdb_read_model((rocksdb_t *)troupe_offset_store_rocksdb(os), &got), 0);
  TT_ASSERT(fold_eq(&want, &got));
  g_faults = NULL;
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
}

static void test_exactly_once_rocksdb(void) { eo_rocksdb_run(0, 0); }
static void test_exactly_once_rocksdb_faults(void) { eo_rocksdb_run(10, 10); }

static void test_exactly_once_pg_faults(void) {
  if (!pg_url) TT_SKIP("TROUPE_PG_URL is not set");
  char spec[700];
  pg_spec(spec, sizeof spec);
  TT_EQ_INT(pg_setup_schema(pg_url, pg_schema_name), 0);
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open(spec, &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 500, 0, "bank"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open(spec, &os), 0);
  troupe_system *sys = new_system("eopg");
  faults f = {.handler_fail_pct = 10, .commit_fail_pct = 10};
  atomic_init(&f.seed, 777);
  g_faults = &f;
  pj_test_fault = fault_hook;
  troupe_projection_def d = {
    .name = "balances", .journal = j, .tag = "bank", .offsets = os,
    .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
    .handler = pg_balances_handler, .reset = pg_balances_reset, .data = &f,
    .group_size = 10, .on_error = TROUPE_PROJECTION_RETRY_FAIL, .retries = 2,
    .retry_backoff_ms = 1, .restart_min_ms = 2, .restart_max_ms = 10,
  };
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  TT_EQ_INT(write_events(j, heads, 500, 5000, "bank"), 0);
  troupe_projection_status st;
  int ok = TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                             st.committed == 1000, 60000);
  if (!ok)
    fprintf(stderr, "state %d offset %llu committed %llu restarts %llu err %d\n",
            st.state, (unsigned long long)st.offset,
            (unsigned long long)st.committed,
            (unsigned long long)st.restarts, st.last_error);
  TT_ASSERT(ok);
  pj_test_fault = NULL;
  troupe_projection_stop(p);
  fold want, got;
  TT_EQ_INT(journal_fold(j, "bank", &want), 0);
  PGconn *c = PQconnectdb(pg_url);
  TT_EQ_INT(pg_read_model(c, &got), 0);
  if (!fold_eq(&want, &got)) { fold_print("want", &want); fold_print("got", &got); }
  TT_ASSERT(fold_eq(&want, &got));
  TT_ASSERT(atomic_load(&f.injected) > 0);
  /* reset through the store (as the tool does), while running */
  f.handler_fail_pct = f.commit_fail_pct = 0;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  TT_EQ_INT(troupe_projection_request(os, "balances", TROUPE_PROJECTION_RESET, 0), 0);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.handled >= 1000 && st.committed == 1000, 30000));
  troupe_projection_stop(p);
  TT_EQ_INT(pg_read_model(c, &got), 0);
  TT_ASSERT(fold_eq(&want, &got));
  PQfinish(c);
  g_faults = NULL;
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  pg_drop_schema(pg_url, pg_schema_name);
}

/* ------------------------------------------------------------------ */
/* Concurrent writers, late commits                                    */

typedef struct writer_arg {
  troupe_journal *j;
  int k;                   /* account */
  int n;
} writer_arg;

static void *writer(void *a) {
  writer_arg *w = a;
  uint64_t head = 0;
  for (int i = 0; i < w->n; i++)
    if (put_event(w->j, w->k, &head, 1, "t") < 0) break;
  return NULL;
}

static void concurrent_run(troupe_journal **js, int nj, const char *ospec,
                           int per_writer) {
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open(ospec, &os), 0);
  troupe_system *sys = new_system("late");
  seen *s = calloc(1, sizeof *s);
  troupe_projection_def d = {.name = "late", .journal = js[0], .tag = "t",
                             .offsets = os, .handler = seen_handler,
                             .data = s, .page_size = 64, .poll_ms = 50};
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  pthread_t th[NACC];
  writer_arg wa[NACC];
  for (int k = 0; k < NACC; k++) {
    wa[k] = (writer_arg){js[k % nj], k, per_writer};
    pthread_create(&th[k], NULL, writer, &wa[k]);
  }
  for (int k = 0; k < NACC; k++) pthread_join(th[k], NULL);
  uint64_t total = (uint64_t)NACC * (uint64_t)per_writer;
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.offset == total, 30000));
  troupe_projection_stop(p);
  /* every offset seen exactly once: none skipped (and, stopped cleanly,
   * none repeated) */
  for (uint64_t o = 1; o <= total; o++) TT_EQ_INT(atomic_load(&s->count[o]), 1);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  free(s);
}

static void test_concurrent_writers_rocksdb(void) {
  char d1[300], d2[300], js[320], os[320];
  fresh_dir(d1, sizeof d1, "journal");
  fresh_dir(d2, sizeof d2, "proj");
  snprintf(js, sizeof js, "rocksdb:%s", d1);
  snprintf(os, sizeof os, "rocksdb:%s", d2);
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open(js, &so, &j), 0);
  concurrent_run(&j, 1, os, 400);
  troupe_journal_close(j);
}

static void test_concurrent_writers_pg(void) {
  if (!pg_url) TT_SKIP("TROUPE_PG_URL is not set");
  /* four stores (four connections, each committing its own groups) on
   * one schema: commits land out of offset order */
  char spec[4][700];
  pg_spec(spec[0], sizeof spec[0]);
  troupe_store_options so = store_opts();
  troupe_journal *js[4];
  for (int i = 0; i < 4; i++) {
    snprintf(spec[i], sizeof spec[i], "pg:%s application_name=w%d schema=%s",
             pg_url, i, pg_schema_name);
    TT_EQ_INT(troupe_journal_open(spec[i], &so, &js[i]), 0);
  }
  concurrent_run(js, 4, spec[0], 150);
  for (int i = 0; i < 4; i++) troupe_journal_close(js[i]);
  pg_drop_schema(pg_url, pg_schema_name);
}

/* Idle sessions whose last statement was a LISTEN (the projection's
 * listener connection), or -1. */
static int pg_listening(const char *url) {
  PGconn *c = PQconnectdb(url);
  int n = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult *r = PQexec(c, "SELECT count(*) FROM pg_stat_activity WHERE "
                            "state = 'idle' AND query LIKE 'LISTEN %'");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  PQfinish(c);
  return n;
}

/* A live PostgreSQL source is woken by NOTIFY: the events are appended
 * through another store (another connection, as another process would),
 * so no in-process notification reaches the projection, and its fallback
 * poll is far longer than the bound checked here. */
static void test_pg_listen_wakes(void) {
  if (!pg_url) TT_SKIP("TROUPE_PG_URL is not set");
  char rspec[700], wspec[800];
  pg_spec(rspec, sizeof rspec);
  snprintf(wspec, sizeof wspec, "pg:%s application_name=writer schema=%s",
           pg_url, pg_schema_name);
  troupe_store_options so = store_opts();
  troupe_journal *rj, *wj;
  TT_EQ_INT(troupe_journal_open(rspec, &so, &rj), 0);
  TT_EQ_INT(troupe_journal_open(wspec, &so, &wj), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open("memory:", &os), 0);
  troupe_system *sys = new_system("listen");
  seen *s = calloc(1, sizeof *s);
  troupe_projection_def d = {.name = "l", .journal = rj, .tag = "t",
                             .offsets = os, .handler = seen_handler,
                             .data = s, .poll_ms = 60000};
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.state == TROUPE_PROJECTION_RUNNING, 5000));
  uint64_t heads[NACC] = {0};
  for (int round = 0; round < 3; round++) {
    /* the worker's listener is up and idle (its only statement is the
     * LISTEN), and the worker has handled everything written so far */
    TT_ASSERT(TT_WAIT_UNTIL(pg_listening(pg_url) > 0, 5000));
    TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                                st.committed >= (uint64_t)round * 5, 5000));
    uint64_t t0 = tt_now_ms();
    TT_EQ_INT(write_events(wj, heads, 5, round * 5, "t"), 0);
    TT_ASSERT(TT_WAIT_UNTIL(all_seen(s, 1, (uint64_t)(round + 1) * 5), 5000));
    TT_ASSERT(tt_now_ms() - t0 < 5000);
  }
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(rj);
  troupe_journal_close(wj);
  free(s);
  pg_drop_schema(pg_url, pg_schema_name);
}

/* ------------------------------------------------------------------ */
/* Failure strategies                                                  */

static void strategy_run(troupe_projection_on_error how, int group) {
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:", &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 200, 0, "t"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open("memory:", &os), 0);
  troupe_system *sys = new_system("skip");
  seen *s = calloc(1, sizeof *s);
  atomic_store(&s->bad_seq, 3);   /* acct-0 seq 3: offset 17 */
  troupe_projection_def d = {.name = "skip", .journal = j, .tag = "t",
                             .offsets = os, .handler = seen_handler,
                             .data = s, .on_error = how, .retries = 2,
                             .retry_backoff_ms = 1, .group_size = (uint32_t)group,
                             .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
                             .current_only = 1};
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.state == TROUPE_PROJECTION_DONE, 10000));
  TT_EQ_INT(st.skipped, 1);
  TT_EQ_INT(st.committed, 200);
  for (int o = 1; o <= 200; o++) TT_EQ_INT(atomic_load(&s->count[o]), o == 17 ? 0 : 1);
  troupe_projection_stop(p);
  troupe_projection_info info;
  TT_EQ_INT(troupe_projection_info_get(os, "skip", &info), 0);
  TT_EQ_INT(info.skipped, 1);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  free(s);
}

static void test_skip(void) { strategy_run(TROUPE_PROJECTION_SKIP, 1); }
static void test_retry_then_skip_grouped(void) {
  strategy_run(TROUPE_PROJECTION_RETRY_SKIP, 10);
}

static void test_fail_restarts(void) {
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:", &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 50, 0, "t"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open("memory:", &os), 0);
  troupe_system *sys = new_system("fail");
  seen *s = calloc(1, sizeof *s);
  atomic_store(&s->bad_seq, 3);
  troupe_projection_def d = {.name = "f", .journal = j, .tag = "t",
                             .offsets = os, .handler = seen_handler,
                             .data = s, .on_error = TROUPE_PROJECTION_FAIL,
                             .restart_min_ms = 5, .restart_max_ms = 10};
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.restarts >= 3, 10000));
  /* stuck before the bad event, nothing after it handled */
  TT_EQ_INT(st.offset, 16);
  TT_EQ_INT(atomic_load(&s->count[18]), 0);
  /* the fix: skip it by rewinding past it */
  atomic_store(&s->bad_seq, 0);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.offset == 50, 10000));
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  free(s);
}

/* ------------------------------------------------------------------ */
/* Management                                                          */

static void manage_run(const char *ospec) {
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:", &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 100, 0, "t"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open(ospec, &os), 0);
  troupe_system *sys = new_system("manage");
  seen *s = calloc(1, sizeof *s);
  troupe_projection_def d = {.name = "m", .journal = j, .tag = "t",
                             .offsets = os, .handler = seen_handler,
                             .data = s, .control_ms = 50, .commit_every = 10};
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  TT_EQ_STR(troupe_projection_name(p), "m");
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.committed == 100, 10000));
  /* pause: new events wait */
  TT_EQ_INT(troupe_projection_pause(p), 0);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.state == TROUPE_PROJECTION_PAUSED, 5000));
  TT_EQ_INT(write_events(j, heads, 20, 100, "t"), 0);
  TT_EQ_INT(troupe_projection_get_status(p, &st), 0);
  TT_EQ_INT(st.offset, 100);
  TT_EQ_INT(st.lag_events, 20);
  TT_ASSERT(st.lag_ms >= 0);
  troupe_projection_info info;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_info_get(os, "m", &info) == 0 &&
                              info.paused &&
                              info.state == TROUPE_PROJECTION_PAUSED, 5000));
  /* resume through another handle on the store (another process's view) */
  troupe_offset_store *os2 = os;
  if (strncmp(ospec, "memory:", 7) == 0 || strncmp(ospec, "rocksdb:", 8) == 0)
    TT_EQ_INT(troupe_offset_store_open(ospec, &os2), 0);
  TT_EQ_INT(troupe_projection_request(os2, "m", TROUPE_PROJECTION_RESUME, 0), 0);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.committed == 120, 5000));
  /* rewind to 110: events 111..120 handled a second time */
  TT_EQ_INT(troupe_projection_request(os2, "m", TROUPE_PROJECTION_REWIND, 110), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&s->count[111]) == 2 &&
                              atomic_load(&s->count[120]) == 2, 5000));
  TT_EQ_INT(atomic_load(&s->count[110]), 1);
  /* reset: everything again */
  TT_EQ_INT(troupe_projection_reset(p), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&s->count[1]) == 2 &&
                              atomic_load(&s->count[120]) == 3, 5000));
  if (os2 != os) troupe_offset_store_close(os2);
  troupe_projection_info *v;
  size_t n;
  TT_EQ_INT(troupe_projection_list(os, &v, &n), 0);
  TT_EQ_INT(n, 1);
  TT_EQ_STR(v[0].name, "m");
  TT_EQ_INT(v[0].pending, 0);
  free(v);
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  free(s);
}

static void test_manage_memory(void) { manage_run("memory:shared-m"); }
static void test_manage_rocksdb(void) {
  char d[300], spec[320];
  fresh_dir(d, sizeof d, "manage");
  snprintf(spec, sizeof spec, "rocksdb:%s", d);
  manage_run(spec);
}
static void test_manage_pg(void) {
  if (!pg_url) TT_SKIP("TROUPE_PG_URL is not set");
  char spec[700];
  pg_spec(spec, sizeof spec);
  manage_run(spec);
  pg_drop_schema(pg_url, pg_schema_name);
}

/* The `troupe projection` tool, a separate process, on a RocksDB store
 * held by this one: its requests go through files, status reads a
 * read-only view. Skipped when the tool is not built. */
static int run_tool(const char *args, char *out, size_t n) {
  const char *b = getenv("top_builddir");
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "%s/tools/troupe projection %s 2>&1", b ? b : ".",
           args);
  FILE *f = popen(cmd, "r");
  if (!f) return -1;
  size_t k = fread(out, 1, n - 1, f);
  out[k] = 0;
  return pclose(f);
}

static void test_tool_cross_process(void) {
  const char *b = getenv("top_builddir");
  char tool[600];
  snprintf(tool, sizeof tool, "%s/tools/troupe", b ? b : ".");
  if (access(tool, X_OK) != 0) TT_SKIP("%s is not built", tool);
  char dir[300], spec[320], args[700], out[4096];
  fresh_dir(dir, sizeof dir, "tool");
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:", &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 30, 0, "t"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open(spec, &os), 0);
  troupe_system *sys = new_system("tool");
  seen *s = calloc(1, sizeof *s);
  troupe_projection_def d = {.name = "tp", .journal = j, .tag = "t",
                             .offsets = os, .handler = seen_handler,
                             .data = s, .control_ms = 50,
                             .delivery = TROUPE_PROJECTION_EXACTLY_ONCE};
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.committed == 30, 5000));
  snprintf(args, sizeof args, "pause %s tp", spec);
  TT_EQ_INT(run_tool(args, out, sizeof out), 0);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.state == TROUPE_PROJECTION_PAUSED, 5000));
  TT_EQ_INT(write_events(j, heads, 10, 100, "t"), 0);
  snprintf(args, sizeof args, "rewind %s tp 20", spec);
  TT_EQ_INT(run_tool(args, out, sizeof out), 0);
  snprintf(args, sizeof args, "resume %s tp", spec);
  TT_EQ_INT(run_tool(args, out, sizeof out), 0);
  /* 21..30 again, then 31..40 */
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&s->count[40]) == 1 &&
                              atomic_load(&s->count[25]) == 2, 5000));
  TT_EQ_INT(atomic_load(&s->count[20]), 1);
  snprintf(args, sizeof args, "list %s", spec);
  TT_EQ_INT(run_tool(args, out, sizeof out), 0);
  TT_ASSERT(strstr(out, "tp") != NULL);
  snprintf(args, sizeof args, "status %s nosuch", spec);
  TT_ASSERT(run_tool(args, out, sizeof out) != 0);
  snprintf(args, sizeof args, "rewind %s tp notanumber", spec);
  TT_ASSERT(run_tool(args, out, sizeof out) != 0);
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  /* stopped: the tool opens the store read-write and sees the state */
  snprintf(args, sizeof args, "status %s tp", spec);
  TT_EQ_INT(run_tool(args, out, sizeof out), 0);
  TT_ASSERT(strstr(out, "offset:      40") != NULL);
  TT_ASSERT(strstr(out, "stopped") != NULL);
  troupe_journal_close(j);
  free(s);
}

/* ------------------------------------------------------------------ */
/* Slices and groups                                                   */

static void test_slices(void) {
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:", &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 400, 0, NULL), 0);
  int probe = troupe_journal_by_slice_sync(j, 0, 1, 0, 1, fold_cb, &(fold){0});
  if (probe == TROUPE_EUNSUPPORTED) {
    troupe_journal_close(j);
    TT_SKIP("the journal has no by_slice yet");
  }
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open("memory:", &os), 0);
  troupe_system *sys = new_system("slices");
  seen *s = calloc(1, sizeof *s);
  troupe_projection *p[3];
  unsigned lo[3] = {0, 300, 700}, hi[3] = {299, 699, 1023};
  for (int i = 0; i < 3; i++) {
    troupe_projection_def d = {.name = "sl", .journal = j, .slice_lo = lo[i],
                               .slice_hi = hi[i], .offsets = os,
                               .handler = seen_handler, .data = s,
                               .delivery = TROUPE_PROJECTION_EXACTLY_ONCE};
    TT_EQ_INT(troupe_projection_start(sys, &d, &p[i]), 0);
  }
  TT_EQ_INT(write_events(j, heads, 400, 400, NULL), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_seen(s, 1, 800), 10000));
  for (int i = 0; i < 3; i++) troupe_projection_stop(p[i]);
  for (int o = 1; o <= 800; o++) TT_EQ_INT(atomic_load(&s->count[o]), 1);
  troupe_projection_info info;
  TT_EQ_INT(troupe_projection_info_get(os, "sl@300-699", &info), 0);
  TT_EQ_STR(info.source, "slices:300-699");
  /* a plain-name request reaches every instance */
  TT_EQ_INT(troupe_projection_request(os, "sl", TROUPE_PROJECTION_PAUSE, 0), 0);
  TT_EQ_INT(troupe_projection_info_get(os, "sl@0-299", &info), 0);
  TT_EQ_INT(info.paused, 1);
  TT_EQ_INT(troupe_projection_info_get(os, "sl@700-1023", &info), 0);
  TT_EQ_INT(info.paused, 1);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  free(s);
}

static void test_groups(void) {
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:", &so, &j), 0);
  uint64_t heads[NACC] = {0};
  TT_EQ_INT(write_events(j, heads, 95, 0, "t"), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open("memory:", &os), 0);
  troupe_system *sys = new_system("groups");
  seen *s = calloc(1, sizeof *s);
  troupe_projection_def d = {.name = "g", .journal = j, .tag = "t",
                             .offsets = os, .handler = seen_handler,
                             .data = s, .group_size = 10, .group_ms = 100,
                             .delivery = TROUPE_PROJECTION_EXACTLY_ONCE};
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  /* 9 full groups and, after group_ms, the 5 left */
  TT_ASSERT(TT_WAIT_UNTIL(all_seen(s, 1, 95), 5000));
  TT_EQ_INT(atomic_load(&s->calls), 10);
  TT_EQ_INT(atomic_load(&s->max_group), 10);
  /* one event trickling in is handed over after group_ms */
  uint64_t t0 = tt_now_ms();
  TT_EQ_INT(write_events(j, heads, 1, 200, "t"), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&s->count[96]) == 1, 5000));
  TT_ASSERT(tt_now_ms() - t0 >= 90);
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
  free(s);
}

static void test_bad_definitions(void) {
  troupe_system *sys = new_system("bad");
  troupe_store_options so = store_opts();
  troupe_journal *j;
  TT_EQ_INT(troupe_journal_open("memory:", &so, &j), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open("memory:", &os), 0);
  troupe_projection *p = (troupe_projection *)1;
  troupe_projection_def d = {.name = "x", .journal = j, .tag = "t",
                             .offsets = os, .handler = seen_handler};
  TT_EQ_INT(troupe_projection_start(NULL, &d, &p), TROUPE_EINVAL);
  TT_ASSERT(p == NULL);
  TT_EQ_INT(troupe_projection_start(sys, NULL, &p), TROUPE_EINVAL);
  d.name = "no spaces";
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), TROUPE_EINVAL);
  d.name = "x";
  d.handler = NULL;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), TROUPE_EINVAL);
  d.handler = seen_handler;
  d.tag = NULL;
  d.slice_lo = 5;
  d.slice_hi = 4;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), TROUPE_EINVAL);
  d.slice_hi = 5000;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), TROUPE_EINVAL);
  d.tag = "";
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), TROUPE_EINVAL);
  TT_EQ_INT(troupe_projection_pause(NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_projection_get_status(NULL, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_projection_get_progress(NULL, NULL), TROUPE_EINVAL);
  troupe_projection_stop(NULL);
  troupe_offset_store_close(NULL);
  troupe_system_destroy(sys);
  troupe_offset_store_close(os);
  troupe_journal_close(j);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  pg_url = getenv("TROUPE_PG_URL");
  if (pg_url && !*pg_url) pg_url = NULL;
  if (!pg_url)
    printf("# PostgreSQL tests skip: TROUPE_PG_URL is not set (start a server "
           "with: eval \"$(scripts/pg-test-server.sh start)\")\n");
  snprintf(tmpdir, sizeof tmpdir, "/tmp/troupe-test-projection-%d", (int)getpid());
  mkdir(tmpdir, 0755);
  TT_RUN(test_offsets_memory);
  TT_RUN(test_offsets_rocksdb);
  TT_RUN(test_offsets_pg);
  TT_RUN(test_bad_definitions);
  TT_RUN(test_at_least_once_memory);
  TT_RUN(test_at_least_once_failing_handler);
  TT_RUN(test_at_least_once_rocksdb);
  TT_RUN(test_resume_from_offset);
  TT_RUN(test_exactly_once_rocksdb);
  TT_RUN(test_exactly_once_rocksdb_faults);
  TT_RUN(test_exactly_once_pg_faults);
  TT_RUN(test_concurrent_writers_rocksdb);
  TT_RUN(test_concurrent_writers_pg);
  TT_RUN(test_pg_listen_wakes);
  TT_RUN(test_skip);
  TT_RUN(test_retry_then_skip_grouped);
  TT_RUN(test_fail_restarts);
  TT_RUN(test_manage_memory);
  TT_RUN(test_manage_rocksdb);
  TT_RUN(test_manage_pg);
  TT_RUN(test_tool_cross_process);
  TT_RUN(test_slices);
  TT_RUN(test_groups);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return tt_done();
}
