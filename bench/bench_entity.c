/*
 * bench_entity.c: persistent entities end to end (BENCHMARKS.md `persist`
 * and `recovery`, layer=entity).
 *
 *   persist   K entities each persisting 100-byte events; events/s, per
 *             backend and sync setting. Every command is told up front;
 *             each entity persists one event per command (a sync persist,
 *             so the next command waits), and group commit in the journal
 *             batches across entities. Verified: every entity's highest
 *             sequence number in the journal.
 *   recovery  replay of one entity with many events, and of many entities
 *             with 100 events each; events/s.
 *
 * Usage: bench_entity [persist] [recovery]. Environment: PERSIST_N (events
 * per configuration, default 200000), PERSIST_ENTITIES ("1 100 1000"),
 * RECOVERY_N (1000000), RECOVERY_ENTITIES (10000), BENCH_DIR (/tmp).
 * Backend: rocksdb (and memory with BENCH_MEMORY=1).
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include <troupe/troupe.h>
#include <troupe/persistence.h>

/* A typical event: six fields, about 100 bytes encoded. */
typedef struct ev100 {
  int64_t amount;
  uint64_t account;
  int64_t at_ms;
  uint32_t kind;
  bool flagged;
  char *memo;
} ev100;

typedef struct st100 {
  int64_t total;
  int64_t count;
} st100;

static const troupe_field ev_fields[] = {
  TROUPE_FIELD(ev100, amount, I64),
  TROUPE_FIELD(ev100, account, U64),
  TROUPE_FIELD(ev100, at_ms, I64),
  TROUPE_FIELD(ev100, kind, U32),
  TROUPE_FIELD(ev100, flagged, BOOL),
  TROUPE_FIELD(ev100, memo, STRING),
};
static char memo_text[] = "deposit at the counter, branch 12, teller 7";
static const troupe_field st_fields[] = {
  TROUPE_FIELD(st100, total, I64),
  TROUPE_FIELD(st100, count, I64),
};
static troupe_type T_EV = TROUPE_TYPE("bench.Event", 1, ev100, ev_fields);
static troupe_type T_ST = TROUPE_TYPE("bench.State", 1, st100, st_fields);
static troupe_type T_CMD = TROUPE_TYPE("bench.Command", 1, ev100, ev_fields);

static atomic_long applied;
static atomic_long recovered_entities;
static atomic_long recovered_events;

/* The counter the main thread waits on reaching its target wakes it: a
 * polling main thread took a share of the two cores from the system it
 * measured. */
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static _Atomic(atomic_long *) wait_counter;
static atomic_long wait_target;

static void counted(atomic_long *v, long add) {
  long now = atomic_fetch_add_explicit(v, add, memory_order_relaxed) + add;
  if (v == wait_counter && now >= wait_target) {
    pthread_mutex_lock(&done_mu);
    pthread_cond_signal(&done_cv);
    pthread_mutex_unlock(&done_mu);
  }
}

static int cmd_fn(troupe_entity *e, const void *st, const troupe_msg *m) {
  return troupe_entity_persist(e, &T_EV, m->data, 0);
}

static int apply_fn(void *st, const troupe_type *t, const void *ev) {
  st100 *s = st;
  s->total += ((const ev100 *)ev)->amount;
  s->count++;
  counted(&applied, 1);
  return 0;
}

static void on_recovered(troupe_entity *e, const void *st, uint64_t seq) {
  atomic_fetch_add(&recovered_events, (long)seq);
  counted(&recovered_entities, 1);
}

static troupe_entity_def def = {
  .type_name = "bench",
  .state_type = &T_ST,
  .command = cmd_fn,
  .apply = apply_fn,
  .on_recovered = on_recovered,
  .stash_capacity = 1u << 24,
};

static void die(const char *what, int rc) {
  fprintf(stderr, "FAILED %s: %s (%s)\n", what, troupe_strerror(rc),
          troupe_errmsg());
  exit(1);
}

static char base[256];

static void make_spec(char *spec, size_t n, const char *backend,
                      const char *name) {
  if (strcmp(backend, "memory") == 0) {
    snprintf(spec, n, "memory:");
  } else {
    snprintf(spec, n, "rocksdb:%s/%s", base, name);
  }
}

/* Arm the wait before the system starts (counted() reads the target). */
static void wait_arm(atomic_long *v, long target) {
  wait_target = target;
  wait_counter = v;
}

static void wait_for(atomic_long *v, long target, double timeout_s) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)timeout_s;
  pthread_mutex_lock(&done_mu);
  while (atomic_load(v) < target) {
    if (pthread_cond_timedwait(&done_cv, &done_mu, &dl) != 0 &&
        atomic_load(v) < target) {
      fprintf(stderr, "FAILED: did %ld of %ld in %.0f s\n", atomic_load(v),
              target, timeout_s);
      exit(1);
    }
  }
  pthread_mutex_unlock(&done_mu);
  wait_counter = NULL;
}

static void persist(const char *backend, long entities, int sync, long n) {
  char spec[400], name[64];
  snprintf(name, sizeof name, "persist-%ld-%d", entities, sync);
  make_spec(spec, sizeof spec, backend, name);
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  so.sync = sync;
  troupe_journal *j;
  int rc = troupe_journal_open(spec, &so, &j);
  if (rc < 0) die("journal open", rc);
  troupe_persistence *p;
  troupe_persistence_create(&p, j, NULL);
  troupe_system *sys;
  troupe_system_opts o = {.name = "bench", .log_level = TROUPE_LOG_WARN};
  troupe_system_create(&sys, &o);
  troupe_ref *refs = calloc((size_t)entities, sizeof *refs);
  for (long i = 0; i < entities; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%ld", i);
    if ((rc = troupe_entity_spawn(sys, NULL, p, &def, id, &refs[i])) < 0)
      die("spawn", rc);
  }
  long per = n / entities;
  n = per * entities;
  ev100 cmd = {1, 42, 1700000000000, 3, false, memo_text};
  atomic_store(&applied, 0);
  for (long k = 0; k < per; k++)
    for (long i = 0; i < entities; i++)
      troupe_tell(refs[i], &T_CMD, &cmd, TROUPE_REF_NONE);
  wait_arm(&applied, n);
  double t0 = bench_now();
  troupe_system_start(sys);
  wait_for(&applied, n, 120);
  double dt = bench_now() - t0;
  troupe_system_destroy(sys);
  /* verify in the journal */
  for (long i = 0; i < entities; i++) {
    char pid[48];
    uint64_t h = 0;
    snprintf(pid, sizeof pid, "bench|e%ld", i);
    troupe_journal_highest_sync(j, pid, &h);
    if ((long)h != per) {
      fprintf(stderr, "FAILED persist: %s has %llu events, expected %ld\n",
              pid, (unsigned long long)h, per);
      exit(1);
    }
  }
  troupe_persistence_destroy(p);
  troupe_journal_close(j);
  free(refs);
  printf("workload=persist system=troupe value=%.0f unit=events/s "
         "backend=%s entities=%ld sync=%d size=100 layer=entity n=%ld\n",
         (double)n / dt, backend, entities, sync, n);
}

static void fill(troupe_journal *j, long entities, long per) {
  enum { B = 1000 };
  troupe_event *evs = calloc(B, sizeof *evs);
  troupe_buf buf;
  troupe_buf_init(&buf);
  ev100 e = {1, 42, 1700000000000, 3, false, memo_text};
  troupe_encode(&T_EV, &e, &buf, NULL);
  for (long i = 0; i < entities; i++) {
    char pid[48];
    snprintf(pid, sizeof pid, "bench|r%ld", i);
    for (long s = 0; s < per; s += B) {
      long m = per - s < B ? per - s : B;
      for (long k = 0; k < m; k++) {
        evs[k].persistence_id = pid;
        evs[k].seq = (uint64_t)(s + k + 1);
        evs[k].manifest = T_EV.manifest;
        evs[k].version = 1;
        evs[k].payload = buf.data;
        evs[k].payload_len = buf.len;
      }
      int rc = troupe_journal_append_sync(j, pid, (uint64_t)s, evs, (size_t)m,
                                          NULL);
      if (rc < 0) die("fill", rc);
    }
  }
  troupe_buf_free(&buf);
  free(evs);
}

static void recovery(const char *backend, long entities, long per) {
  char spec[400], name[64];
  snprintf(name, sizeof name, "recovery-%ld-%ld", entities, per);
  make_spec(spec, sizeof spec, backend, name);
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  so.sync = 0;
  troupe_journal *j;
  int rc = troupe_journal_open(spec, &so, &j);
  if (rc < 0) die("journal open", rc);
  fprintf(stderr, "filling %ld x %ld events\n", entities, per);
  fill(j, entities, per);
  troupe_persistence *p;
  troupe_persistence_create(&p, j, NULL);
  troupe_system *sys;
  troupe_system_opts o = {.name = "bench", .log_level = TROUPE_LOG_WARN};
  troupe_system_create(&sys, &o);
  atomic_store(&recovered_entities, 0);
  atomic_store(&recovered_events, 0);
  for (long i = 0; i < entities; i++) {
    char id[32];
    troupe_ref r;
    snprintf(id, sizeof id, "r%ld", i);
    if ((rc = troupe_entity_spawn(sys, NULL, p, &def, id, &r)) < 0)
      die("spawn", rc);
  }
  wait_arm(&recovered_entities, entities);
  double t0 = bench_now();
  troupe_system_start(sys);
  wait_for(&recovered_entities, entities, 300);
  double dt = bench_now() - t0;
  long total = atomic_load(&recovered_events);
  troupe_system_destroy(sys);
  troupe_persistence_destroy(p);
  troupe_journal_close(j);
  if (total != entities * per) {
    fprintf(stderr, "FAILED recovery: %ld of %ld events\n", total,
            entities * per);
    exit(1);
  }
  printf("workload=recovery system=troupe value=%.0f unit=events/s "
         "backend=%s entities=%ld events=%ld layer=entity\n",
         (double)total / dt, backend, entities, per);
}

int main(int argc, char **argv) {
  troupe_type_register(&T_EV);
  troupe_type_register(&T_ST);
  snprintf(base, sizeof base, "%s/troupe-bench-entity-XXXXXX",
           getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp");
  if (!mkdtemp(base)) return 1;
  bool all = argc < 2;
  bool do_persist = all, do_recovery = all;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "persist") == 0) do_persist = true;
    if (strcmp(argv[i], "recovery") == 0) do_recovery = true;
  }
  const char *backends[2] = {"rocksdb", "memory"};
  int nb = getenv("BENCH_MEMORY") ? 2 : 1;
  for (int b = 0; b < nb; b++) {
    if (do_persist) {
      long n = bench_env_long("PERSIST_N", 200000);
      const char *ks = getenv("PERSIST_ENTITIES");
      char buf[128];
      snprintf(buf, sizeof buf, "%s", ks ? ks : "1 100 1000");
      for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
        long k = atol(t);
        if (k <= 0) continue;
        for (int sync = 0; sync <= 1; sync++) {
          /* one entity with sync on is fsync-bound: fewer events */
          long nn = (k == 1 && sync) ? n / 50 : n;
          fprintf(stderr, "persist %s entities=%ld sync=%d\n", backends[b], k,
                  sync);
          persist(backends[b], k, sync, nn);
        }
      }
    }
    if (do_recovery) {
      recovery(backends[b], 1, bench_env_long("RECOVERY_N", 1000000));
      long re = bench_env_long("RECOVERY_ENTITIES", 10000);
      recovery(backends[b], re, 100);
    }
  }
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return 0;
}
