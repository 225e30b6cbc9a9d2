/*
 * bench_journal.c: troupe's journal on RocksDB, measured like the raw
 * loop (bench_rocksdb_raw.c): 100-byte events, same database options.
 *
 * persist: K streams (persistence ids), each with one append of one event
 *   in flight, as K persistent entities would have; the next append of a
 *   stream is issued from the completion of the previous one. Group commit
 *   turns the K in-flight appends into one WriteBatch and one WAL sync.
 *   K from BENCH_ENTITIES (default "1,100,1000"), sync 0 and 1.
 *   Events per run: BENCH_EVENTS_S0_K<k> / BENCH_EVENTS_S1_K<k>, or the
 *   defaults below (about a second each on an idle 2-core machine).
 * recovery: replay of BENCH_REPLAY_ONE (1000000) events of one id, and of
 *   BENCH_REPLAY_IDS (10000) ids x 100 events, all replays submitted at
 *   once to the reader pool.
 *
 * Every figure is verified: each stream's highest sequence number after
 * the run, each replay's event count and last seq. The directory is
 * BENCH_DIR or TMPDIR or /tmp.
 */
#define _GNU_SOURCE 1
#include "troupe/troupe.h"
#include "troupe/journal.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

static char base[512];
static int dirs;

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_journal: %s: %s (%s)\n", what, troupe_err_name(rc),
          troupe_errmsg());
  exit(1);
}

/* BENCH_BACKEND=postgres runs on TROUPE_PG_URL (a fresh schema per run)
 * instead of RocksDB. */
static const char *backend(void) {
  const char *b = getenv("BENCH_BACKEND");
  return b && strcmp(b, "postgres") == 0 ? "postgres" : "rocksdb";
}

static troupe_journal *open_fresh(int sync, uint32_t readers) {
  char spec[1200];
  if (strcmp(backend(), "postgres") == 0) {
    const char *url = getenv("TROUPE_PG_URL");
    if (!url) {
      fprintf(stderr, "bench_journal: BENCH_BACKEND=postgres needs "
                      "TROUPE_PG_URL\n");
      exit(1);
    }
    int uri = strncmp(url, "postgres", 8) == 0;
    snprintf(spec, sizeof spec, "%s%s%sschema=bj_%ld_%d", uri ? "" : "pg:",
             url, uri ? (strchr(url, '?') ? "&" : "?") : " ",
             (long)getpid(), ++dirs);
  } else {
    snprintf(spec, sizeof spec, "rocksdb:%s/j%d", base, ++dirs);
  }
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = 1;
  o.sync = sync;
  o.page_size = 1024;
  if (readers) o.reader_threads = readers;
  troupe_journal *j = NULL;
  int rc = troupe_journal_open(spec, &o, &j);
  if (rc < 0) die("open", rc);
  return j;
}

/* PostgreSQL: drop the schemas this run created (bj_<pid>_<n>). */
static void drop_schemas(void) {
  if (strcmp(backend(), "postgres") != 0) return;
  PGconn *c = PQconnectdb(getenv("TROUPE_PG_URL"));
  for (int i = 1; i <= dirs && PQstatus(c) == CONNECTION_OK; i++) {
    char q[100];
    snprintf(q, sizeof q, "DROP SCHEMA IF EXISTS bj_%ld_%d CASCADE",
             (long)getpid(), i);
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      fprintf(stderr, "bench_journal: %s: %s", q, PQresultErrorMessage(r));
    PQclear(r);
  }
  PQfinish(c);
}

/* --- persist ------------------------------------------------------------- */

typedef struct stream {
  struct run *run;
  char id[24];
  uint64_t seq, quota;
} stream;

typedef struct run {
  troupe_journal *j;
  stream *s;
  atomic_long left;      /* streams not finished */
  atomic_int failed;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned char payload[100];
} run;

static void append_next(stream *s);

static void on_appended(int status, uint64_t head, void *data) {
  stream *s = data;
  run *r = s->run;
  if (status < 0 || head != s->seq + 1) {
    fprintf(stderr, "append %s: %s (%s)\n", s->id, troupe_err_name(status),
            troupe_errmsg());
    atomic_store(&r->failed, 1);
  } else {
    s->seq = head;
    if (s->seq < s->quota) {
      append_next(s);
      return;
    }
  }
  if (atomic_fetch_sub(&r->left, 1) == 1) {
    pthread_mutex_lock(&r->mu);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
  }
}

static void append_next(stream *s) {
  troupe_event e;
  memset(&e, 0, sizeof e);
  e.manifest = "bench.Event";
  e.version = 1;
  e.payload = s->run->payload;
  e.payload_len = sizeof s->run->payload;
  e.timestamp_ms = 1;
  int rc = troupe_journal_append(s->run->j, s->id, s->seq, &e, 1, on_appended,
                                 s);
  if (rc < 0) die("append", rc);
}

static void persist(int k, int sync, long n) {
  run r;
  memset(&r, 0, sizeof r);
  memset(r.payload, 'p', sizeof r.payload);
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  r.j = open_fresh(sync, 0);
  r.s = calloc((size_t)k, sizeof *r.s);
  long per = n / k;
  if (per < 1) per = 1;
  n = per * k;
  atomic_store(&r.left, k);
  for (int i = 0; i < k; i++) {
    r.s[i].run = &r;
    snprintf(r.s[i].id, sizeof r.s[i].id, "entity-%d", i);
    r.s[i].quota = (uint64_t)per;
  }
  fprintf(stderr, "persist: %d streams, sync %d, %ld events...\n", k, sync, n);
  double t0 = bench_now();
  for (int i = 0; i < k; i++) append_next(&r.s[i]);
  pthread_mutex_lock(&r.mu);
  while (atomic_load(&r.left) > 0) pthread_cond_wait(&r.cv, &r.mu);
  pthread_mutex_unlock(&r.mu);
  double dt = bench_now() - t0;
  if (atomic_load(&r.failed)) {
    fprintf(stderr, "bench_journal: persist failed\n");
    exit(1);
  }
  for (int i = 0; i < k; i++) {          /* verify */
    uint64_t h = 0;
    int rc = troupe_journal_highest_sync(r.j, r.s[i].id, &h);
    if (rc < 0) die("highest", rc);
    if (h != (uint64_t)per) {
      fprintf(stderr, "bench_journal: %s has %llu events, expected %ld\n",
              r.s[i].id, (unsigned long long)h, per);
      exit(1);
    }
  }
  printf("workload=persist system=troupe value=%.0f unit=events/s "
         "backend=%s entities=%d sync=%d size=100 layer=journal\n",
         (double)n / dt, backend(), k, sync);
  troupe_journal_close(r.j);
  free(r.s);
  pthread_mutex_destroy(&r.mu);
  pthread_cond_destroy(&r.cv);
}

/* --- recovery ------------------------------------------------------------ */

static void fill(troupe_journal *j, const char *id, long events) {
  enum { B = 1000 };
  static troupe_event ev[B];
  static unsigned char payload[100];
  memset(payload, 'r', sizeof payload);
  for (int i = 0; i < B; i++) {
    memset(&ev[i], 0, sizeof ev[i]);
    ev[i].manifest = "bench.Event";
    ev[i].payload = payload;
    ev[i].payload_len = sizeof payload;
  }
  for (long seq = 0; seq < events;) {
    size_t n = events - seq < B ? (size_t)(events - seq) : B;
    int rc = troupe_journal_append_sync(j, id, (uint64_t)seq, ev, n, NULL);
    if (rc < 0) die("fill", rc);
    seq += (long)n;
  }
}

typedef struct counter {
  atomic_long events, bytes, done, bad;
  uint64_t expect_last;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long want_done;
} counter;

static int count_cb(int status, const troupe_event *ev, size_t n, int done,
                    void *data) {
  counter *c = data;
  if (status < 0) {
    atomic_fetch_add(&c->bad, 1);
  } else {
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += ev[i].payload_len;
    atomic_fetch_add(&c->events, (long)n);
    atomic_fetch_add(&c->bytes, (long)bytes);
    if (done && n && ev[n - 1].seq != c->expect_last)
      atomic_fetch_add(&c->bad, 1);
  }
  if (status < 0 || done) {
    if (atomic_fetch_add(&c->done, 1) + 1 == c->want_done) {
      pthread_mutex_lock(&c->mu);
      pthread_cond_signal(&c->cv);
      pthread_mutex_unlock(&c->mu);
    }
  }
  return 0;
}

static void recovery(long ids, long per) {
  troupe_journal *j = open_fresh(0, ids > 1 ? 2 : 1);
  fprintf(stderr, "recovery: writing %ld ids x %ld events...\n", ids, per);
  char id[32];
  for (long i = 0; i < ids; i++) {
    snprintf(id, sizeof id, "entity-%ld", i);
    fill(j, id, per);
  }
  counter c;
  memset(&c, 0, sizeof c);
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  c.expect_last = (uint64_t)per;
  c.want_done = ids;
  fprintf(stderr, "recovery: replaying...\n");
  double t0 = bench_now();
  for (long i = 0; i < ids; i++) {
    snprintf(id, sizeof id, "entity-%ld", i);
    int rc = troupe_journal_replay(j, id, 1, UINT64_MAX, 0, count_cb, &c);
    if (rc < 0) die("replay", rc);
  }
  pthread_mutex_lock(&c.mu);
  while (atomic_load(&c.done) < ids) pthread_cond_wait(&c.cv, &c.mu);
  pthread_mutex_unlock(&c.mu);
  double dt = bench_now() - t0;
  long total = ids * per;
  if (atomic_load(&c.bad) || atomic_load(&c.events) != total ||
      atomic_load(&c.bytes) != total * 100) {
    fprintf(stderr, "bench_journal: replayed %ld events (%ld bad), "
            "expected %ld\n", atomic_load(&c.events), atomic_load(&c.bad),
            total);
    exit(1);
  }
  printf("workload=recovery system=troupe value=%.0f unit=events/s "
         "backend=%s entities=%ld events=%ld layer=journal\n",
         (double)total / dt, backend(), ids, per);
  troupe_journal_close(j);
  pthread_mutex_destroy(&c.mu);
  pthread_cond_destroy(&c.cv);
}

static long default_events(int k, int sync) {
  if (sync) return k >= 1000 ? 500000 : k >= 100 ? 200000 : 2000;
  return k >= 1000 ? 1000000 : k >= 100 ? 300000 : 100000;
}

int main(int argc, char **argv) {
  const char *dir = getenv("BENCH_DIR");
  if (!dir) dir = getenv("TMPDIR");
  snprintf(base, sizeof base, "%s/troupe-bj-XXXXXX", dir ? dir : "/tmp");
  if (!mkdtemp(base)) {
    perror("mkdtemp");
    return 1;
  }
  const char *which = argc > 1 ? argv[1] : "persist,recovery";
  char ents[256];
  snprintf(ents, sizeof ents, "%s",
           getenv("BENCH_ENTITIES") ? getenv("BENCH_ENTITIES") : "1,100,1000");
  if (strstr(which, "persist")) {
    for (int sync = 0; sync <= 1; sync++) {
      char buf[256];
      snprintf(buf, sizeof buf, "%s", ents);
      for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
           t = strtok_r(NULL, ",", &save)) {
        int k = atoi(t);
        if (k < 1) continue;
        char name[64];
        snprintf(name, sizeof name, "BENCH_EVENTS_S%d_K%d", sync, k);
        persist(k, sync, bench_env_long(name, default_events(k, sync)));
      }
    }
  }
  if (strstr(which, "recovery")) {
    recovery(1, bench_env_long("BENCH_REPLAY_ONE", 1000000));
    recovery(bench_env_long("BENCH_REPLAY_IDS", 10000), 100);
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", base);
  drop_schemas();
  return 0;
}
