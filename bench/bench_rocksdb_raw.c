/*
 * bench_rocksdb_raw.c: the physical limit under troupe's journal: a raw
 * RocksDB loop writing 100-byte values under 16-byte keys (id | seq, the
 * journal's key shape) in WriteBatches, with the same database options
 * the journal uses. Workloads (one result line each):
 *
 *   persist  batch=256 sync=0   entities=1000
 *   persist  batch=256 sync=1   entities=1000
 *   persist  batch=1   sync=1   entities=1
 *   recovery iterator scan of everything written by the first workload
 *   persist  batch=256 sync=0/1 entities=1000 tuned=hint: the first two
 *            again with the memtable insert hint the journal sets on its
 *            events column family (one hint per 8-byte id prefix; see
 *            events_options in journal/rocksdb.c). The lines without
 *            "tuned" are the baseline of BENCHMARKS.md; these show what the
 *            same tuning gives the raw loop.
 *
 * Sizes: RAW_EVENTS (default 1000000), RAW_SYNC_EVENTS (400000),
 * RAW_SYNC1_EVENTS (3000); argv[1] overrides RAW_EVENTS. The directory is
 * BENCH_DIR or TMPDIR or /tmp. Every figure is verified by counting the
 * keys back.
 */
#define _GNU_SOURCE 1
#include <rocksdb/c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

static void be64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)v; v >>= 8; }
}

static void die(const char *what, char *err) {
  fprintf(stderr, "bench_rocksdb_raw: %s: %s\n", what, err ? err : "failed");
  exit(1);
}

static char base[512];

static rocksdb_t *open_db(const char *name, int hint,
                          rocksdb_options_t **optsp) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", base, name);
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_block_based_table_options_t *t =
      rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(t,
                                              rocksdb_cache_create_lru(64u << 20));
  rocksdb_options_set_block_based_table_factory(o, t);
  rocksdb_options_increase_parallelism(o, 2);
  rocksdb_options_set_max_background_jobs(o, 2);
  rocksdb_options_set_create_if_missing(o, 1);
  char *err = NULL;
  if (hint) {
    rocksdb_options_t *h = rocksdb_options_create();
    rocksdb_get_options_from_string(
        o, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.8",
        h, &err);
    if (err) die("options", err);
    rocksdb_options_destroy(o);
    o = h;
  }
  rocksdb_t *db = rocksdb_open(o, path, &err);
  if (err) die("open", err);
  *optsp = o;
  return db;
}

/* Write n events for `entities` ids round-robin in batches; events/s. */
static double persist(rocksdb_t *db, long n, int batch, int sync,
                      int entities) {
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(wo, sync);
  rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
  unsigned char key[16], val[100];
  memset(val, 'v', sizeof val);
  uint64_t *seq = calloc((size_t)entities, sizeof *seq);
  double t0 = bench_now();
  for (long i = 0; i < n;) {
    for (int b = 0; b < batch && i < n; b++, i++) {
      int id = (int)(i % entities);
      be64(key, (uint64_t)id + 1);
      be64(key + 8, ++seq[id]);
      be64(val, (uint64_t)i);
      rocksdb_writebatch_put(wb, (const char *)key, 16, (const char *)val,
                             sizeof val);
    }
    char *err = NULL;
    rocksdb_write(db, wo, wb, &err);
    if (err) die("write", err);
    rocksdb_writebatch_clear(wb);
  }
  double dt = bench_now() - t0;
  free(seq);
  rocksdb_writebatch_destroy(wb);
  rocksdb_writeoptions_destroy(wo);
  return (double)n / dt;
}

/* Count every key (the verification), timed: events/s. */
static double scan(rocksdb_t *db, long expect) {
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_iterator_t *it = rocksdb_create_iterator(db, ro);
  long n = 0;
  size_t bytes = 0;
  double t0 = bench_now();
  for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t vl;
    rocksdb_iter_value(it, &vl);
    bytes += vl;
    n++;
  }
  double dt = bench_now() - t0;
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (n != expect || bytes != (size_t)expect * 100) {
    fprintf(stderr, "bench_rocksdb_raw: stored %ld events, expected %ld\n", n,
            expect);
    exit(1);
  }
  return (double)n / dt;
}

static void run(const char *name, long n, int batch, int sync, int entities,
                int with_scan, int hint) {
  rocksdb_options_t *o;
  rocksdb_t *db = open_db(name, hint, &o);
  fprintf(stderr, "raw: %ld events, batch %d, sync %d...\n", n, batch, sync);
  double rate = persist(db, n, batch, sync, entities);
  double srate = scan(db, n);
  printf("workload=persist system=rocksdb-raw value=%.0f unit=events/s "
         "backend=rocksdb entities=%d sync=%d size=100 batch=%d%s\n",
         rate, entities, sync, batch, hint ? " tuned=hint" : "");
  if (with_scan)
    printf("workload=recovery system=rocksdb-raw value=%.0f unit=events/s "
           "backend=rocksdb entities=%d events=%ld\n",
           srate, entities, n / entities);
  rocksdb_close(db);
  rocksdb_options_destroy(o);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : bench_env_long("RAW_EVENTS", 1000000);
  long ns = bench_env_long("RAW_SYNC_EVENTS", 400000);
  long n1 = bench_env_long("RAW_SYNC1_EVENTS", 3000);
  const char *dir = getenv("BENCH_DIR");
  if (!dir) dir = getenv("TMPDIR");
  snprintf(base, sizeof base, "%s/troupe-raw-XXXXXX", dir ? dir : "/tmp");
  if (!mkdtemp(base)) {
    perror("mkdtemp");
    return 1;
  }
  run("b256s0", n, 256, 0, 1000, 1, 0);
  run("b256s1", ns, 256, 1, 1000, 0, 0);
  run("b1s1", n1, 1, 1, 1, 0, 0);
  run("b256s0h", n, 256, 0, 1000, 0, 1);
  run("b256s1h", ns, 256, 1, 1000, 0, 1);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", base);
  return 0;
}
