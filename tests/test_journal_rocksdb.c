/* test_journal_rocksdb.c: the storage conformance suite on RocksDB, plus
 * what only a persistent store has: format versions, adopting or refusing
 * existing databases, the lock, corrupt records. */
#include "tt.h"
#include "journal_conformance.h"
#include "troupe/troupe.h"
#include "troupe/journal.h"

#include <rocksdb/c.h>
#include <sys/wait.h>

static char base[256];

/* librocksdb is not built with TSan: its memtable is a lock-free skiplist
 * published with atomics TSan cannot see, so a reader thread decoding an
 * iterator value (or RocksDB copying one into a std::string for a Get)
 * while the writer inserts looks racy. Suppressed: stacks in librocksdb or
 * libstdc++ (troupe has no C++), and r_by_tag, the reader that decodes
 * memtable values while writers run in the tests. Races between troupe's
 * own threads on troupe's own memory are still reported. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) {
  return "race:librocksdb.so\n"
         "race:libstdc++.so\n"
         "race:r_by_tag\n";
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

/* Write one key straight into a column family of a closed store. */
static int raw_put(const char *dir, const char *cf, const void *k, size_t kl,
                   const void *v, size_t vl) {
  const char *names[] = {"default", "meta", "ids", "streams", "events", "tags",
                         "snapshots", "state"};
  rocksdb_options_t *o = rocksdb_options_create();
  const rocksdb_options_t *cfo[8];
  rocksdb_column_family_handle_t *h[8];
  for (int i = 0; i < 8; i++) cfo[i] = o;
  char *err = NULL;
  rocksdb_t *db = rocksdb_open_column_families(o, dir, 8, names, cfo, h, &err);
  if (err) {
    fprintf(stderr, "raw open: %s\n", err);
    rocksdb_free(err);
    rocksdb_options_destroy(o);
    return -1;
  }
  int idx = 0;
  for (int i = 0; i < 8; i++)
    if (strcmp(names[i], cf) == 0) idx = i;
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_put_cf(db, wo, h[idx], k, kl, v, vl, &err);
  rocksdb_writeoptions_destroy(wo);
  for (int i = 0; i < 8; i++) rocksdb_column_family_handle_destroy(h[i]);
  rocksdb_close(db);
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
  uint8_t v2[4] = {0, 0, 0, 2}, v0[4] = {0, 0, 0, 0};
  TT_EQ_INT(raw_put(dir, "meta", "format", 6, v2, 4), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(strstr(troupe_errmsg(), "version 2") != NULL);
  TT_ASSERT(strstr(troupe_errmsg(), "newer") != NULL);
  TT_EQ_INT(raw_put(dir, "meta", "format", 6, v0, 4), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(strstr(troupe_errmsg(), "troupe journal migrate") != NULL);
  uint8_t v1[4] = {0, 0, 0, 1};
  TT_EQ_INT(raw_put(dir, "meta", "format", 6, v1, 4), 0);
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
  int rc2 = tt_done();
  rm_rf(base);
  if (rc == 1 || rc2 == 1) return 1;
  return rc == 77 && rc2 == 77 ? 77 : 0;
}
