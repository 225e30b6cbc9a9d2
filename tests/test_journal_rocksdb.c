/* test_journal_rocksdb.c: the storage conformance suite on RocksDB, plus
 * what only a persistent store has: format versions and their migration
 * (also interrupted), adopting or refusing existing databases, the lock,
 * corrupt records. */
#include "tt.h"
#include "journal_conformance.h"
#include "journal/internal.h"
#include "troupe/troupe.h"
#include "troupe/journal.h"

#include <rocksdb/c.h>
#include <sys/wait.h>

static char base[256];

/* librocksdb is not built with TSan: its memtable is a lock-free skiplist
 * published with atomics TSan cannot see, so a reader thread decoding an
 * iterator value (or RocksDB copying one into a std::string for a Get)
 * while the writer inserts looks racy. Suppressed: stacks in librocksdb or
 * libstdc++ (troupe has no C++), and r_by_tag, r_by_slice and walk_add,
 * where the by-tag and by-slice readers decode memtable values while
 * writers run in the tests. Races between troupe's
 * own threads on troupe's own memory are still reported. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) {
  return "race:librocksdb.so\n"
         "race:libstdc++.so\n"
         "race:r_by_tag\n"
         "race:r_by_slice\n"
         "race:walk_add\n";
}

static int rdb_spec(char *buf, size_t size, void *data) {
  static int n;
  (void)data;
  snprintf(buf, size, "rocksdb:%s/s%d", base, ++n);
  return 0;
}

static void rm_rf(const char *path) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static troupe_store_options create_opts(void) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = 1;
  o.sync = 0;
  return o;
}

/* Does the database at dir have column family `cf`? (-1: no database) */
static int has_cf(const char *dir, const char *cf) {
  rocksdb_options_t *o = rocksdb_options_create();
  char *err = NULL;
  size_t n = 0;
  char **names = rocksdb_list_column_families(o, dir, &n, &err);
  rocksdb_options_destroy(o);
  if (err) {
    rocksdb_free(err);
    return -1;
  }
  int found = 0;
  for (size_t i = 0; i < n; i++) found |= strcmp(names[i], cf) == 0;
  rocksdb_list_column_families_destroy(names, n);
  return found;
}

/* Write (v != NULL) or delete one key straight in a column family of a
 * closed store, whatever its column families. */
static int raw_put(const char *dir, const char *cf, const void *k, size_t kl,
                   const void *v, size_t vl) {
  rocksdb_options_t *o = rocksdb_options_create();
  char *err = NULL;
  size_t n = 0;
  char **names = rocksdb_list_column_families(o, dir, &n, &err);
  if (err || n > 16) {
    fprintf(stderr, "raw list: %s\n", err ? err : "too many");
    rocksdb_free(err);
    rocksdb_options_destroy(o);
    return -1;
  }
  const rocksdb_options_t *cfo[16];
  rocksdb_column_family_handle_t *h[16];
  for (size_t i = 0; i < n; i++) cfo[i] = o;
  rocksdb_t *db = rocksdb_open_column_families(
      o, dir, (int)n, (const char *const *)names, cfo, h, &err);
  if (err) {
    fprintf(stderr, "raw open: %s\n", err);
    rocksdb_free(err);
    rocksdb_list_column_families_destroy(names, n);
    rocksdb_options_destroy(o);
    return -1;
  }
  size_t idx = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], cf) == 0) idx = i;
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  if (v) rocksdb_put_cf(db, wo, h[idx], k, kl, v, vl, &err);
  else rocksdb_delete_cf(db, wo, h[idx], k, kl, &err);
  rocksdb_writeoptions_destroy(wo);
  for (size_t i = 0; i < n; i++) rocksdb_column_family_handle_destroy(h[i]);
  rocksdb_close(db);
  rocksdb_list_column_families_destroy(names, n);
  rocksdb_options_destroy(o);
  if (err) {
    rocksdb_free(err);
    return -1;
  }
  return 0;
}

static void make_store(const char *dir) {
  char spec[300];
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  if (troupe_journal_open(spec, &o, &j) == 0) {
    troupe_event e = {0};
    e.manifest = "m";
    e.payload = "hello";
    e.payload_len = 5;
    troupe_journal_append_sync(j, "p", 0, &e, 1, NULL);
    troupe_journal_append_sync(j, "p", 1, &e, 1, NULL);
    troupe_journal_close(j);
  }
}

static void test_missing_store(void) {
  char spec[300];
  snprintf(spec, sizeof spec, "rocksdb:%s/missing", base);
  troupe_store_options o;
  troupe_store_options_init(&o);
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ENOENT);
  TT_ASSERT(j == NULL);
  snprintf(spec, sizeof spec, "rocksdb:");
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_open("nosuch:x", &o, &j), TROUPE_EINVAL);
}

static void test_format_version(void) {
  char dir[300], spec[310];
  snprintf(dir, sizeof dir, "%s/fmt", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  make_store(dir);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  troupe_schema_status st;
  uint8_t v3[4] = {0, 0, 0, 3}, v0[4] = {0, 0, 0, 0}, v1[4] = {0, 0, 0, 1};
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 2);
  TT_EQ_INT(st.supported, 2);
  TT_EQ_INT(st.pending, 0);
  /* a newer format is refused, never migrated down */
  TT_EQ_INT(raw_put(dir, "meta", "format", 6, v3, 4), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(strstr(troupe_errmsg(), "version 3") != NULL);
  TT_ASSERT(strstr(troupe_errmsg(), "newer") != NULL);
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 3);
  TT_EQ_INT(st.pending, 0);
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), TROUPE_ESCHEMA);
  TT_EQ_INT(troupe_store_migrate(spec, 1, NULL, NULL), TROUPE_ESCHEMA);
  /* an older format with every column family (a migration cut short) */
  TT_EQ_INT(raw_put(dir, "meta", "format", 6, v1, 4), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(strstr(troupe_errmsg(), "version 1") != NULL);
  TT_ASSERT(strstr(troupe_errmsg(), "troupe journal migrate") != NULL);
  TT_EQ_INT(raw_put(dir, "meta", "format", 6, v0, 4), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_EQ_INT(troupe_store_schema(spec, &st), TROUPE_ESCHEMA);
  TT_EQ_INT(raw_put(dir, "meta", "format", 6, NULL, 0), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(strstr(troupe_errmsg(), "no storage format") != NULL);
  uint8_t v2[4] = {0, 0, 0, 2};
  TT_EQ_INT(raw_put(dir, "meta", "format", 6, v2, 4), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  uint64_t h = 0;
  TT_EQ_INT(troupe_journal_highest_sync(j, "p", &h), 0);
  TT_EQ_INT(h, 2);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static void test_foreign_database(void) {
  char dir[300], spec[310];
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  char *err = NULL;
  /* a non-empty RocksDB database is refused even with create_if_missing */
  snprintf(dir, sizeof dir, "%s/foreign", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  rocksdb_options_t *ro = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(ro, 1);
  rocksdb_t *db = rocksdb_open(ro, dir, &err);
  TT_ASSERT(db && !err);
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_put(db, wo, "k", 1, "v", 1, &err);
  rocksdb_close(db);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  /* an empty one is adopted when asked */
  snprintf(dir, sizeof dir, "%s/bare", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  db = rocksdb_open(ro, dir, &err);
  TT_ASSERT(db && !err);
  rocksdb_close(db);
  o.create_if_missing = 0;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  o.create_if_missing = 1;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
  rocksdb_writeoptions_destroy(wo);
  rocksdb_options_destroy(ro);
}

static void test_locked_by_other_process(void) {
  char dir[300], spec[310];
  snprintf(dir, sizeof dir, "%s/locked", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  /* a new process (exec: a forked child would share this one's store) */
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", "test_journal_rocksdb", "--open-locked", spec,
          (char *)NULL);
    _exit(99);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  TT_ASSERT(WIFEXITED(st));
  TT_EQ_INT(WEXITSTATUS(st), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static int corrupt_cb(int status, const troupe_event *ev, size_t n, int done,
                      void *data) {
  (void)ev; (void)done;
  int *got = data;
  if (status < 0) *got = status;
  else *got += (int)n * 100;
  return 0;
}

static void test_corrupt_record(void) {
  char dir[300], spec[310];
  snprintf(dir, sizeof dir, "%s/corrupt", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  make_store(dir);
  uint8_t key[16] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2};
  TT_EQ_INT(raw_put(dir, "events", key, 16, "garbage", 7), 0);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  int got = 0;
  TT_EQ_INT(troupe_journal_replay_sync(j, "p", 1, UINT64_MAX, 0, corrupt_cb,
                                       &got), TROUPE_ECORRUPT);
  TT_EQ_INT(got, TROUPE_ECORRUPT);
  TT_ASSERT(strstr(troupe_errmsg(), "\"p\"") != NULL);
  TT_ASSERT(strstr(troupe_errmsg(), "seq 2") != NULL);
  got = 0;
  TT_EQ_INT(troupe_journal_replay_sync(j, "p", 1, 1, 0, corrupt_cb, &got), 0);
  TT_EQ_INT(got, 100);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* --- format 1 -> 2 ------------------------------------------------------- */

typedef struct steps {
  int calls, from, to, dry;
  char what[200];
} steps;

static void step_cb(int from, int to, const char *what, int dry_run,
                    void *data) {
  steps *s = data;
  s->calls++;
  s->from = from;
  s->to = to;
  s->dry = dry_run;
  snprintf(s->what, sizeof s->what, "%s", what ? what : "");
}

typedef struct seen {
  size_t n;
  uint64_t last_off;
  int bad;
  char pid[64][16];
  uint64_t seq[64];
} seen;

static int seen_cb(int status, const troupe_event *ev, size_t n, int done,
                   void *data) {
  seen *x = data;
  (void)done;
  if (status < 0) {
    x->bad++;
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (ev[i].offset <= x->last_off) x->bad++;
    x->last_off = ev[i].offset;
    if (x->n < 64) {
      snprintf(x->pid[x->n], 16, "%s", ev[i].persistence_id);
      x->seq[x->n] = ev[i].seq;
    }
    x->n++;
  }
  return 0;
}

/* A store written through the API: ids m0..m4, 11 events each, in rounds
 * (so offsets interleave the ids), m1 deleted up to 4, a snapshot and a
 * durable state; then made format 1. */
#define MIG_IDS 5
#define MIG_EACH 11
static void make_v1_store(const char *dir) {
  char spec[310];
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  troupe_snapshot_store *ss = NULL;
  troupe_state_store *st = NULL;
  if (troupe_journal_open(spec, &o, &j) < 0 ||
      troupe_snapshot_store_open(spec, &o, &ss) < 0 ||
      troupe_state_store_open(spec, &o, &st) < 0)
    abort();
  const char *tags[] = {"mig"};
  for (int seq = 0; seq < MIG_EACH; seq++)
    for (int i = 0; i < MIG_IDS; i++) {
      char pid[8];
      snprintf(pid, sizeof pid, "m%d", i);
      troupe_event e = {0};
      e.manifest = "m";
      e.payload = "x";
      e.payload_len = 1;
      e.tags = tags;
      e.ntags = (size_t)(seq & 1);
      if (troupe_journal_append_sync(j, pid, (uint64_t)seq, &e, 1, NULL) < 0)
        abort();
    }
  troupe_journal_delete_to_sync(j, "m1", 4);
  troupe_snapshot sn = {"m0", 3, 1, "s", 1, "snap", 4};
  troupe_snapshot_save_sync(ss, &sn);
  troupe_state_record rec = {"d0", 0, 1, "m", 1, "st", 2};
  troupe_state_upsert_sync(st, &rec, 0, NULL);
  troupe_journal_close(j);
  troupe_snapshot_store_close(ss);
  troupe_state_store_close(st);
  if (jnl_rdb_create_version(dir, 1) < 0) abort();
}

/* The migrated store: everything readable, by_slice complete. */
static void check_migrated(const char *spec) {
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  seen x;
  memset(&x, 0, sizeof x);
  TT_EQ_INT(troupe_journal_by_slice_sync(j, 0, TROUPE_JOURNAL_SLICES - 1, 0,
                                         0, seen_cb, &x), 0);
  TT_EQ_INT(x.bad, 0);
  TT_EQ_INT(x.n, MIG_IDS * MIG_EACH - 4);
  TT_EQ_INT(x.last_off, MIG_IDS * MIG_EACH);
  /* offset order: round by round, ids in order, m1's first four gone */
  TT_EQ_STR(x.pid[0], "m0");
  TT_EQ_STR(x.pid[1], "m2");
  TT_EQ_INT(x.seq[4], 2);
  for (int i = 0; i < MIG_IDS; i++) {
    char pid[8];
    snprintf(pid, sizeof pid, "m%d", i);
    int sl = troupe_journal_slice_of(pid);
    memset(&x, 0, sizeof x);
    TT_EQ_INT(troupe_journal_by_slice_sync(j, (unsigned)sl, (unsigned)sl, 0,
                                           0, seen_cb, &x), 0);
    size_t want = 0;     /* ids sharing the slice count too */
    for (int k = 0; k < MIG_IDS; k++) {
      char other[8];
      snprintf(other, sizeof other, "m%d", k);
      if (troupe_journal_slice_of(other) == sl)
        want += k == 1 ? MIG_EACH - 4 : MIG_EACH;
    }
    TT_EQ_INT(x.n, want);
    memset(&x, 0, sizeof x);
    TT_EQ_INT(troupe_journal_replay_sync(j, pid, 1, UINT64_MAX, 0, seen_cb,
                                         &x), 0);
    TT_EQ_INT(x.n, i == 1 ? MIG_EACH - 4 : MIG_EACH);
  }
  memset(&x, 0, sizeof x);
  TT_EQ_INT(troupe_journal_by_tag_sync(j, "mig", 0, 0, seen_cb, &x), 0);
  TT_EQ_INT(x.n, MIG_IDS * 5 - 2);
  /* new events continue the offsets and are indexed by slice */
  troupe_event e = {0};
  e.manifest = "m";
  TT_EQ_INT(troupe_journal_append_sync(j, "m3", MIG_EACH, &e, 1, NULL), 0);
  memset(&x, 0, sizeof x);
  TT_EQ_INT(troupe_journal_by_slice_sync(j, 0, TROUPE_JOURNAL_SLICES - 1,
                                         MIG_IDS * MIG_EACH, 0, seen_cb, &x),
            0);
  TT_EQ_INT(x.n, 1);
  TT_EQ_INT(x.last_off, MIG_IDS * MIG_EACH + 1);
  TT_EQ_INT(troupe_journal_close(j), 0);
  troupe_snapshot_store *ss = NULL;
  TT_EQ_INT(troupe_snapshot_store_open(spec, &o, &ss), 0);
  troupe_snapshot *got = NULL;
  TT_EQ_INT(troupe_snapshot_load_sync(ss, "m0", NULL, &got), 0);
  TT_ASSERT(got && got->seq == 3);
  troupe_snapshot_free(got);
  TT_EQ_INT(troupe_snapshot_store_close(ss), 0);
}

static void test_migrate_v1(void) {
  char dir[300], spec[310];
  snprintf(dir, sizeof dir, "%s/v1", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  make_v1_store(dir);
  TT_EQ_INT(has_cf(dir, "offsets"), 0);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(j == NULL);
  TT_ASSERT(strstr(troupe_errmsg(), "version 1") != NULL);
  TT_ASSERT(strstr(troupe_errmsg(), "troupe journal migrate") != NULL);
  TT_EQ_INT(has_cf(dir, "offsets"), 0);
  troupe_schema_status st;
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 1);
  TT_EQ_INT(st.supported, 2);
  TT_EQ_INT(st.pending, 1);
  /* a dry run reports the step and changes nothing */
  steps s;
  memset(&s, 0, sizeof s);
  TT_EQ_INT(troupe_store_migrate(spec, 1, step_cb, &s), 1);
  TT_EQ_INT(s.calls, 1);
  TT_EQ_INT(s.from, 1);
  TT_EQ_INT(s.to, 2);
  TT_EQ_INT(s.dry, 1);
  TT_ASSERT(strstr(s.what, "offsets") != NULL);
  TT_EQ_INT(has_cf(dir, "offsets"), 0);
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 1);
  /* not while this process has it open */
  troupe_journal *other = NULL;
  char ospec[310];
  snprintf(ospec, sizeof ospec, "rocksdb:%s/s-busy", base);
  TT_EQ_INT(troupe_journal_open(ospec, &o, &other), 0);
  TT_EQ_INT(troupe_store_migrate(ospec, 0, NULL, NULL), TROUPE_EBUSY);
  TT_EQ_INT(troupe_store_schema(ospec, &st), TROUPE_EBUSY);
  TT_EQ_INT(troupe_journal_close(other), 0);
  /* the step, once */
  memset(&s, 0, sizeof s);
  TT_EQ_INT(troupe_store_migrate(spec, 0, step_cb, &s), 1);
  TT_EQ_INT(s.calls, 1);
  TT_EQ_INT(s.dry, 0);
  TT_EQ_INT(jnl_rdb_migrate_indexed, MIG_IDS * MIG_EACH - 4);
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 2);
  TT_EQ_INT(st.pending, 0);
  memset(&s, 0, sizeof s);
  TT_EQ_INT(troupe_store_migrate(spec, 0, step_cb, &s), 0);
  TT_EQ_INT(troupe_store_migrate(spec, 1, step_cb, &s), 0);
  TT_EQ_INT(s.calls, 0);
  check_migrated(spec);
}

/* The 1 -> 2 step dies after two batches of 10 (a child process _exits
 * inside it); the store is still format 1, and the next run resumes after
 * the last batch written. */
static void test_migrate_crash_resume(void) {
  char dir[300], spec[310];
  snprintf(dir, sizeof dir, "%s/v1crash", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  make_v1_store(dir);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", "test_journal_rocksdb", "--migrate-exit", spec,
          (char *)NULL);
    _exit(99);
  }
  int wst = 0;
  waitpid(pid, &wst, 0);
  TT_ASSERT(WIFEXITED(wst));
  TT_EQ_INT(WEXITSTATUS(wst), 75);
  TT_EQ_INT(has_cf(dir, "offsets"), 1);
  troupe_schema_status st;
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 1);
  TT_EQ_INT(st.pending, 1);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(strstr(troupe_errmsg(), "troupe journal migrate") != NULL);
  jnl_rdb_migrate_batch = 10;
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), 1);
  jnl_rdb_migrate_batch = 10000;
  TT_EQ_INT(jnl_rdb_migrate_indexed, MIG_IDS * MIG_EACH - 4 - 20);
  check_migrated(spec);
}

static void test_schema_edges(void) {
  char dir[300], spec[310];
  troupe_schema_status st;
  /* nothing there: ENOENT, and nothing is created */
  snprintf(dir, sizeof dir, "%s/nothing", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  TT_EQ_INT(troupe_store_schema(spec, &st), TROUPE_ENOENT);
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), TROUPE_ENOENT);
  TT_EQ_INT(troupe_store_migrate(spec, 1, NULL, NULL), TROUPE_ENOENT);
  TT_ASSERT(access(dir, F_OK) != 0);
  /* an empty RocksDB database: found 0, nothing to migrate */
  snprintf(dir, sizeof dir, "%s/empty", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  rocksdb_options_t *ro = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(ro, 1);
  char *err = NULL;
  rocksdb_t *db = rocksdb_open(ro, dir, &err);
  TT_ASSERT(db && !err);
  rocksdb_close(db);
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 0);
  TT_EQ_INT(st.supported, 2);
  TT_EQ_INT(st.pending, 0);
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), 0);
  TT_EQ_INT(has_cf(dir, "meta"), 0);
  /* a RocksDB database that is not a store */
  snprintf(dir, sizeof dir, "%s/notours", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  db = rocksdb_open(ro, dir, &err);
  TT_ASSERT(db && !err);
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_put(db, wo, "k", 1, "v", 1, &err);
  rocksdb_writeoptions_destroy(wo);
  rocksdb_close(db);
  rocksdb_options_destroy(ro);
  TT_EQ_INT(troupe_store_schema(spec, &st), TROUPE_ESCHEMA);
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), TROUPE_ESCHEMA);
  /* a current store */
  snprintf(dir, sizeof dir, "%s/current", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  make_store(dir);
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 2);
  TT_EQ_INT(st.pending, 0);
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), 0);
  /* an empty format-1 store migrates too */
  snprintf(dir, sizeof dir, "%s/v1empty", base);
  snprintf(spec, sizeof spec, "rocksdb:%s", dir);
  TT_EQ_INT(jnl_rdb_create_version(dir, 1), 0);
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 1);
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), 1);
  TT_EQ_INT(jnl_rdb_migrate_indexed, 0);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
  TT_EQ_INT(troupe_store_schema("rocksdb:", &st), TROUPE_EINVAL);
  TT_EQ_INT(troupe_store_schema(spec, NULL), TROUPE_EINVAL);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--open-locked") == 0) {
    troupe_store_options o = create_opts();
    troupe_journal *k = NULL;
    int rc = troupe_journal_open(argv[2], &o, &k);
    if (rc != TROUPE_EBUSY)
      fprintf(stderr, "open of a locked store: %s (%s)\n",
              troupe_err_name(rc), troupe_errmsg());
    return rc == TROUPE_EBUSY ? 0 : 10;
  }
  if (argc == 3 && strcmp(argv[1], "--migrate-exit") == 0) {
    jnl_rdb_migrate_batch = 10;
    jnl_rdb_migrate_exit_after = 2;
    int rc = troupe_store_migrate(argv[2], 0, NULL, NULL);
    fprintf(stderr, "migrate did not stop: %d (%s)\n", rc, troupe_errmsg());
    return 10;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(base, sizeof base, "%s/troupe-jc-XXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp(base)) {
    perror("mkdtemp");
    return 1;
  }
  jc_backend b = {"rocksdb", rdb_spec, NULL, 1, NULL};
  int rc = jc_run(argc, argv, &b);
  tt_init(argc, argv);
  TT_RUN(test_missing_store);
  TT_RUN(test_format_version);
  TT_RUN(test_foreign_database);
  TT_RUN(test_locked_by_other_process);
  TT_RUN(test_corrupt_record);
  TT_RUN(test_migrate_v1);
  TT_RUN(test_migrate_crash_resume);
  TT_RUN(test_schema_edges);
  int rc2 = tt_done();
  rm_rf(base);
  if (rc == 1 || rc2 == 1) return 1;
  return rc == 77 && rc2 == 77 ? 77 : 0;
}
