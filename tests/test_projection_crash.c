/*
 * test_projection_crash.c: exactly-once survives kill -9.
 *
 * Each round appends events to the journal, then runs an exactly-once
 * balances projection in a child process (a fresh exec) whose handler and
 * commit path fail at random points, and which is killed with SIGKILL at
 * a random moment — by the parent, or by itself right after the read-model
 * writes and the offset went into the transaction but before it commits.
 * After each kill the parent checks that the read model equals the fold
 * of exactly the events up to the stored offset (so the next run resumes
 * from there); at the end a last run catches up and the read model equals
 * the fold of every event, each applied once. RocksDB (read model in the
 * projection's database, one WriteBatch) and PostgreSQL (read model table,
 * one transaction; from TROUPE_PG_URL, skipped when unset).
 * Rounds: CRASH_ROUNDS (default 6).
 */
#include "test_projection_util.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const char *pg_url;
static char tmpdir[256];
static int rounds = 6;

/* ---- the child ---------------------------------------------------------- */

static unsigned child_seed;
static int self_kill_pct;

static int child_fault(const char *where, uint64_t offset) {
  (void)offset;
  unsigned r = (child_seed = child_seed * 1103515245u + 12345u) >> 8;
  if (strcmp(where, "before-commit") == 0 && (int)(r % 100) < self_kill_pct)
    raise(SIGKILL);                  /* written, not committed */
  return fault_hook(where, offset);  /* or an injected commit failure */
}

static int child_main(const char *kind, const char *jspec, const char *ospec,
                      unsigned seed) {
  child_seed = seed;
  self_kill_pct = 4;
  troupe_store_options so = store_opts();
  troupe_journal *j;
  if (troupe_journal_open(jspec, &so, &j) < 0) return 2;
  troupe_offset_store *os;
  if (troupe_offset_store_open(ospec, &os) < 0) return 3;
  troupe_system *sys = new_system("crash");
  if (!sys) return 4;
  static faults f = {.handler_fail_pct = 5, .commit_fail_pct = 5};
  atomic_init(&f.seed, seed);
  g_faults = &f;
  pj_test_fault = child_fault;
  int pg = strcmp(kind, "pg") == 0;
  troupe_projection_def d = {
    .name = "balances", .journal = j, .tag = "bank", .offsets = os,
    .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
    .handler = pg ? pg_balances_handler : rdb_balances_handler, .data = &f,
    .group_size = 1 + seed % 8, .on_error = TROUPE_PROJECTION_RETRY_FAIL,
    .retries = 1, .retry_backoff_ms = 1, .restart_min_ms = 1,
    .restart_max_ms = 5,
  };
  troupe_projection *p;
  if (troupe_projection_start(sys, &d, &p) < 0) return 5;
  for (;;) pause();   /* until killed */
}

/* ---- the parent --------------------------------------------------------- */

static pid_t spawn_child(const char *kind, const char *jspec,
                         const char *ospec, unsigned seed) {
  char seed_s[32];
  snprintf(seed_s, sizeof seed_s, "%u", seed);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", "test_projection_crash", "--child", kind, jspec,
          ospec, seed_s, (char *)NULL);
    _exit(127);
  }
  return pid;
}

typedef int (*read_model_fn)(void *h, fold *out);

static int rm_rocksdb(void *h, fold *out) {
  return rdb_read_model((rocksdb_t *)troupe_offset_store_rocksdb(h), out);
}
static int rm_pg(void *h, fold *out) { return pg_read_model(h, out); }

/* fold of the events with offset <= upto */
typedef struct upto_fold { fold f; uint64_t upto; } upto_fold;
static int upto_cb(int status, const troupe_event *ev, size_t n, int done,
                   void *data) {
  upto_fold *u = data;
  for (size_t i = 0; i < n; i++)
    if (ev[i].offset > u->upto) return 1;
    else fold_cb(status, &ev[i], 1, done, &u->f);
  return status < 0;
}

/* The read model equals the fold of the events up to the stored offset. */
static void check_consistent(troupe_journal *j, const char *ospec,
                             read_model_fn rm, void *rmh, uint64_t *offset) {
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open(ospec, &os), 0);
  troupe_projection_info info;
  int rc = troupe_projection_info_get(os, "balances", &info);
  uint64_t off = rc == 0 ? info.offset : 0;
  TT_ASSERT(rc == 0 || rc == TROUPE_ENOENT);
  fold got;
  TT_EQ_INT(rm(rmh ? rmh : os, &got), 0);
  upto_fold u;
  memset(&u, 0, sizeof u);
  u.upto = off;
  TT_EQ_INT(troupe_journal_by_tag_sync(j, "bank", 0, 0, upto_cb, &u), 0);
  if (!fold_eq(&u.f, &got)) {
    fprintf(stderr, "offset %llu\n", (unsigned long long)off);
    fold_print("want", &u.f);
    fold_print("got", &got);
  }
  TT_ASSERT(fold_eq(&u.f, &got));
  TT_ASSERT(off >= *offset);   /* never goes back */
  *offset = off;
  troupe_offset_store_close(os);
}

/* The stored offset, without taking the RocksDB lock from the child. */
static uint64_t stored_offset(const char *kind, const char *ospec) {
  uint64_t off = 0;
  if (strcmp(kind, "rocksdb") == 0) {
    rocksdb_options_t *o = rocksdb_options_create();
    char *err = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only(o, ospec + 8, 0, &err);
    if (db) {
      rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
      static const char key[] = "\0troupe/p/o/balances";
      size_t vl;
      char *v = rocksdb_get(db, ro, key, sizeof key - 1, &vl, &err);
      pj_row row;
      if (v && pj_row_decode((const uint8_t *)v, vl, &row) == 0) off = row.offset;
      rocksdb_free(v);
      rocksdb_readoptions_destroy(ro);
      rocksdb_close(db);
    }
    if (err) rocksdb_free(err);
    rocksdb_options_destroy(o);
    return off;
  }
  troupe_offset_store *os;
  troupe_projection_info info;
  if (troupe_offset_store_open(ospec, &os) == 0) {
    if (troupe_projection_info_get(os, "balances", &info) == 0) off = info.offset;
    troupe_offset_store_close(os);
  }
  return off;
}

static void crash_rounds(const char *kind, const char *jspec,
                         const char *ospec, read_model_fn rm, void *rmh,
                         int keep_journal_open) {
  troupe_store_options so = store_opts();
  uint64_t heads[NACC] = {0};
  uint64_t offset = 0;
  int total = 0, self_killed = 0;
  troupe_journal *j = NULL;
  if (keep_journal_open) TT_EQ_INT(troupe_journal_open(jspec, &so, &j), 0);
  for (int r = 0; r < rounds; r++) {
    if (!keep_journal_open) TT_EQ_INT(troupe_journal_open(jspec, &so, &j), 0);
    TT_EQ_INT(write_events(j, heads, 300, total, "bank"), 0);
    total += 300;
    if (!keep_journal_open) { troupe_journal_close(j); j = NULL; }
    unsigned seed = 1000u + (unsigned)r * 7919u;
    pid_t pid = spawn_child(kind, jspec, ospec, seed);
    TT_ASSERT(pid > 0);
    /* once it made progress (its stored offset moved; for RocksDB read
     * through a read-only handle), kill it at a random moment, unless it
     * killed itself first */
    int st, gone = 0;
    uint64_t t0 = tt_now_ms();
    TT_WAIT_UNTIL(gone || (gone = waitpid(pid, &st, WNOHANG) == pid) ||
                      stored_offset(kind, ospec) > offset, 10000);
    if (getenv("CRASH_VERBOSE"))
      fprintf(stderr, "round %d: progress after %llu ms\n", r,
              (unsigned long long)(tt_now_ms() - t0));
    if (!gone) {
      long ms = (long)(seed % 300);
      struct timespec ts = {0, ms * 1000000L};
      nanosleep(&ts, NULL);
      kill(pid, SIGKILL);
      TT_EQ_INT(waitpid(pid, &st, 0), pid);
    } else {
      self_killed++;
    }
    TT_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    if (!keep_journal_open) TT_EQ_INT(troupe_journal_open(jspec, &so, &j), 0);
    check_consistent(j, ospec, rm, rmh, &offset);
    if (!keep_journal_open) { troupe_journal_close(j); j = NULL; }
  }
  /* catch up without faults: every event exactly once */
  if (!keep_journal_open) TT_EQ_INT(troupe_journal_open(jspec, &so, &j), 0);
  troupe_offset_store *os;
  TT_EQ_INT(troupe_offset_store_open(ospec, &os), 0);
  troupe_system *sys = new_system("final");
  int pg = strcmp(kind, "pg") == 0;
  troupe_projection_def d = {
    .name = "balances", .journal = j, .tag = "bank", .offsets = os,
    .delivery = TROUPE_PROJECTION_EXACTLY_ONCE,
    .handler = pg ? pg_balances_handler : rdb_balances_handler,
    .group_size = 8, .current_only = 1,
  };
  troupe_projection *p;
  TT_EQ_INT(troupe_projection_start(sys, &d, &p), 0);
  troupe_projection_status st;
  TT_ASSERT(TT_WAIT_UNTIL(troupe_projection_get_progress(p, &st) == 0 &&
                              st.state == TROUPE_PROJECTION_DONE, 30000));
  troupe_projection_stop(p);
  troupe_system_destroy(sys);
  fprintf(stderr, "%s: %d rounds (%d killed by themselves between the "
          "read-model write and the commit), offset before the last run "
          "%llu of %d\n", kind, rounds, self_killed,
          (unsigned long long)offset, total);
  TT_ASSERT(offset > 0);
  TT_EQ_INT(st.committed, total);
  fold want, got;
  TT_EQ_INT(journal_fold(j, "bank", &want), 0);
  TT_EQ_INT(rm(rmh ? rmh : os, &got), 0);
  if (!fold_eq(&want, &got)) { fold_print("want", &want); fold_print("got", &got); }
  TT_ASSERT(fold_eq(&want, &got));
  troupe_offset_store_close(os);
  troupe_journal_close(j);
}

static void test_crash_rocksdb(void) {
  char js[400], os[400];
  snprintf(js, sizeof js, "rocksdb:%s/journal", tmpdir);
  snprintf(os, sizeof os, "rocksdb:%s/proj", tmpdir);
  crash_rounds("rocksdb", js, os, rm_rocksdb, NULL, 0);
}

static void test_crash_pg(void) {
  if (!pg_url) TT_SKIP("TROUPE_PG_URL is not set");
  char schema[64], spec[700];
  snprintf(schema, sizeof schema, "tprojcrash_%d", (int)getpid());
  snprintf(spec, sizeof spec, "pg:%s schema=%s", pg_url, schema);
  TT_EQ_INT(pg_setup_schema(pg_url, schema), 0);
  PGconn *c = PQconnectdb(pg_url);
  TT_ASSERT(PQstatus(c) == CONNECTION_OK);
  crash_rounds("pg", spec, spec, rm_pg, c, 1);
  PQfinish(c);
  pg_drop_schema(pg_url, schema);
}

int main(int argc, char **argv) {
  pg_url = getenv("TROUPE_PG_URL");
  if (pg_url && !*pg_url) pg_url = NULL;
  if (argc == 6 && strcmp(argv[1], "--child") == 0) {
    if (strcmp(argv[2], "pg") == 0) {
      /* the read model table name follows the journal's schema */
      const char *s = strstr(argv[3], "schema=");
      snprintf(pg_bal_table, sizeof pg_bal_table, "\"%s_rm\".bal", s ? s + 7 : "");
    }
    alarm(60);
    return child_main(argv[2], argv[3], argv[4], (unsigned)atoi(argv[5]));
  }
  tt_init(argc, argv);
  const char *r = getenv("CRASH_ROUNDS");
  if (r && atoi(r) > 0) rounds = atoi(r);
  if (!pg_url)
    printf("# PostgreSQL crash test skips: TROUPE_PG_URL is not set\n");
  snprintf(tmpdir, sizeof tmpdir, "/tmp/troupe-test-projcrash-%d", (int)getpid());
  mkdir(tmpdir, 0755);
  TT_RUN(test_crash_rocksdb);
  TT_RUN(test_crash_pg);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return tt_done();
}
