/*
 * bench_actor.c: core runtime workloads of BENCHMARKS.md.
 *
 *   tell-throughput  one sender, one receiver, same system; msgs/s
 *   ping-pong        two actors bounce one message; rt/s
 *   spawn            actors that take one message and stop; actors/s
 *   idle-actor-memory RSS growth per idle actor; bytes/actor
 *   ask              sequential asks from an actor and from a thread; rt/s
 *
 * Usage: bench_actor [workload ...]; sizes from the environment:
 * TELL_N (10M), PINGPONG_N (1M), SPAWN_N (1M), IDLE_N (1M), ASK_N (1M),
 * ASK_THREAD_N (20k). Result lines on stdout, nothing else.
 */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include <troupe/troupe.h>

static troupe_type T_INT = {.manifest = "bench.Int", .version = 1,
                            .size = sizeof(int)};
static troupe_type T_GO = {.manifest = "bench.Go", .version = 1, .size = 0};

/* The same int, described by a field table (issue 3: a described type
 * must tell as fast as a raw struct, within 10%). */
typedef struct int_msg { int32_t v; } int_msg;
static const troupe_field int_fields[] = {TROUPE_FIELD(int_msg, v, I32)};
static troupe_type T_DESCRIBED = TROUPE_TYPE("bench.DescribedInt", 1, int_msg,
                                             int_fields);
static troupe_type *tell_type = &T_INT;

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static troupe_system *new_system(const char *name) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = name, .log_level = TROUPE_LOG_WARN};
  if (troupe_system_create(&sys, &o) < 0) {
    fprintf(stderr, "system: %s\n", troupe_errmsg());
    exit(1);
  }
  return sys;
}

static void fail(const char *what, long got, long want) {
  fprintf(stderr, "FAILED %s: did %ld of %ld\n", what, got, want);
  exit(1);
}

/* ------------------------------------------------------------------ */
/* tell-throughput */

static long tell_n;
static long tell_received;
static double tell_t0, tell_t1;
static troupe_ref tell_receiver;

typedef struct { long sent; } sender_st;

#define BURST 1024

static int sender_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  sender_st *s = st;
  int v = 1;
  long n = tell_n - s->sent < BURST ? tell_n - s->sent : BURST;
  for (long i = 0; i < n; i++) troupe_tell(tell_receiver, tell_type, &v,
                                           TROUPE_REF_NONE);
  s->sent += n;
  if (s->sent < tell_n) troupe_send(ctx, troupe_self(ctx), &T_GO, NULL);
  return 0;
}

static int receiver_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  tell_received += *(const int *)m->data;
  if (tell_received == tell_n) {
    tell_t1 = bench_now();
    troupe_system_stop(troupe_ctx_system(ctx));
  }
  return 0;
}

/* One burst per turn: the sender yields after each burst. */
static const troupe_behavior sender_b = {.name = "sender",
                                         .state_size = sizeof(sender_st),
                                         .receive = sender_receive,
                                         .mailbox = {.throughput = 1}};
/* The receiver drains more per turn than the sender adds per turn, so the
 * mailbox stays bounded by one burst. */
static const troupe_behavior receiver_b = {.name = "receiver",
                                           .receive = receiver_receive,
                                           .mailbox = {.throughput = 4096}};

static void bench_tell_one(const char *kind);
static void bench_tell(void) {
  tell_type = &T_INT;
  bench_tell_one("raw");
  tell_type = &T_DESCRIBED;
  bench_tell_one("described");
}

static void bench_tell_one(const char *kind) {
  tell_received = 0;
  tell_n = bench_env_long("TELL_N", 10000000);
  troupe_system *sys = new_system("tell");
  troupe_ref s;
  troupe_system_spawn(sys, &receiver_b, NULL, &tell_receiver);
  troupe_system_spawn(sys, &sender_b, NULL, &s);
  troupe_tell(s, &T_GO, NULL, TROUPE_REF_NONE);
  tell_t0 = bench_now();
  troupe_system_run(sys);
  troupe_system_destroy(sys);
  if (tell_received != tell_n) fail("tell-throughput", tell_received, tell_n);
  printf("workload=tell-throughput system=troupe value=%.0f unit=msgs/s "
         "n=%ld burst=%d type=%s peak_rss_kb=%ld\n",
         (double)tell_n / (tell_t1 - tell_t0), tell_n, BURST, kind,
         peak_rss_kb());
}

/* ------------------------------------------------------------------ */
/* ping-pong */

static long pp_n, pp_done;
static double pp_t1;

static int pong_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  int v = *(const int *)m->data;
  if (v == 0) {  /* the ping side counts */
    if (++pp_done == pp_n) {
      pp_t1 = bench_now();
      troupe_system_stop(troupe_ctx_system(ctx));
      return 0;
    }
  }
  int back = !v;
  return troupe_tell(m->sender, &T_INT, &back, troupe_self(ctx));
}

static const troupe_behavior pong_b = {.name = "pong",
                                       .receive = pong_receive};

static void bench_pingpong(void) {
  pp_n = bench_env_long("PINGPONG_N", 1000000);
  troupe_system *sys = new_system("pingpong");
  troupe_ref a, b;
  troupe_system_spawn(sys, &pong_b, NULL, &a);
  troupe_system_spawn(sys, &pong_b, NULL, &b);
  int one = 1;
  troupe_tell(b, &T_INT, &one, a);  /* b answers 0 to a, a counts */
  double t0 = bench_now();
  troupe_system_run(sys);
  troupe_system_destroy(sys);
  if (pp_done != pp_n) fail("ping-pong", pp_done, pp_n);
  printf("workload=ping-pong system=troupe value=%.0f unit=rt/s n=%ld\n",
         (double)pp_n / (pp_t1 - t0), pp_n);
}

/* ------------------------------------------------------------------ */
/* spawn */

static long spawn_n, spawn_started, spawn_stopped;
static double spawn_t1;

static int oneshot_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  return troupe_stop(ctx, troupe_self(ctx));
}

static void oneshot_stop(troupe_ctx *ctx, void *st) {
  if (++spawn_stopped == spawn_n) {
    spawn_t1 = bench_now();
    troupe_system_stop(troupe_ctx_system(ctx));
  }
}

static const troupe_behavior oneshot_b = {.name = "oneshot",
                                          .receive = oneshot_receive,
                                          .post_stop = oneshot_stop};

static int spawner_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  int v = 1;
  for (int i = 0; i < 1000 && spawn_started < spawn_n; i++) {
    troupe_ref r;
    if (troupe_spawn(ctx, &oneshot_b, NULL, &r) < 0) {
      fprintf(stderr, "spawn: %s\n", troupe_errmsg());
      exit(1);
    }
    spawn_started++;
    troupe_tell(r, &T_INT, &v, TROUPE_REF_NONE);
  }
  if (spawn_started < spawn_n) troupe_send(ctx, troupe_self(ctx), &T_GO, NULL);
  return 0;
}

static const troupe_behavior spawner_b = {.name = "spawner",
                                          .receive = spawner_receive};

static void bench_spawn(void) {
  spawn_n = bench_env_long("SPAWN_N", 1000000);
  troupe_system *sys = new_system("spawn");
  troupe_ref s;
  troupe_system_spawn(sys, &spawner_b, NULL, &s);
  troupe_tell(s, &T_GO, NULL, TROUPE_REF_NONE);
  double t0 = bench_now();
  troupe_system_run(sys);
  troupe_system_destroy(sys);
  if (spawn_stopped != spawn_n) fail("spawn", spawn_stopped, spawn_n);
  printf("workload=spawn system=troupe value=%.0f unit=actors/s n=%ld\n",
         (double)spawn_n / (spawn_t1 - t0), spawn_n);
}

/* ------------------------------------------------------------------ */
/* idle-actor-memory */

static int idle_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  return 0;
}
static const troupe_behavior idle_b = {.name = "idle",
                                       .state_size = sizeof(int),
                                       .receive = idle_receive};

/* Measured in a child process: the other workloads' freed memory would
 * otherwise be reused and hide the growth. */
static void bench_idle_child(void);
static void bench_idle(void) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    bench_idle_child();
    fflush(stdout);
    _exit(0);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
      WEXITSTATUS(st) != 0) {
    fprintf(stderr, "FAILED idle-actor-memory\n");
    exit(1);
  }
}

static void bench_idle_child(void) {
  long n = bench_env_long("IDLE_N", 1000000);
  troupe_system *sys = new_system("idle");
  long before = rss_kb();
  for (long i = 0; i < n; i++) {
    troupe_ref r;
    if (troupe_system_spawn(sys, &idle_b, NULL, &r) < 0) {
      fprintf(stderr, "spawn: %s\n", troupe_errmsg());
      exit(1);
    }
  }
  long after = rss_kb();
  troupe_system_destroy(sys);
  printf("workload=idle-actor-memory system=troupe value=%.0f "
         "unit=bytes/actor n=%ld state=%zu\n",
         (double)(after - before) * 1024.0 / (double)n, n, sizeof(int));
}

/* ------------------------------------------------------------------ */
/* ask */

static long ask_n, ask_done;
static double ask_t1;
static troupe_ref echo_ref;

static int echo_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  return troupe_reply(ctx, m->type, m->data);
}
static const troupe_behavior echo_b = {.name = "echo",
                                       .receive = echo_receive};

static int asker_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  if (m->type == &T_INT && m->ask_id) {
    if (++ask_done == ask_n) {
      ask_t1 = bench_now();
      troupe_system_stop(troupe_ctx_system(ctx));
      return 0;
    }
  } else if (m->type != &T_GO) {
    return 0;
  }
  int v = 1;
  uint64_t id;
  return troupe_ask(ctx, echo_ref, &T_INT, &v, 5000, &id);
}
static const troupe_behavior asker_b = {.name = "asker",
                                        .receive = asker_receive};

static void bench_ask(void) {
  ask_n = bench_env_long("ASK_N", 1000000);
  troupe_system *sys = new_system("ask");
  troupe_ref a;
  troupe_system_spawn(sys, &echo_b, NULL, &echo_ref);
  troupe_system_spawn(sys, &asker_b, NULL, &a);
  troupe_tell(a, &T_GO, NULL, TROUPE_REF_NONE);
  double t0 = bench_now();
  troupe_system_run(sys);
  troupe_system_destroy(sys);
  if (ask_done != ask_n) fail("ask", ask_done, ask_n);
  printf("workload=ask system=troupe value=%.0f unit=rt/s from=actor n=%ld\n",
         (double)ask_n / (ask_t1 - t0), ask_n);

  long tn = bench_env_long("ASK_THREAD_N", 20000);
  sys = new_system("askthread");
  troupe_system_spawn(sys, &echo_b, NULL, &echo_ref);
  troupe_system_start(sys);
  t0 = bench_now();
  long ok = 0;
  for (long i = 0; i < tn; i++) {
    troupe_reply_msg r;
    int v = (int)i;
    if (troupe_ask_blocking(sys, echo_ref, &T_INT, &v, 5000, &r) == 0) {
      ok += *(int *)r.data == v;
      troupe_reply_free(&r);
    }
  }
  double dt = bench_now() - t0;
  troupe_system_destroy(sys);
  if (ok != tn) fail("ask from=thread", ok, tn);
  printf("workload=ask system=troupe value=%.0f unit=rt/s from=thread n=%ld\n",
         (double)tn / dt, tn);
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    void (*fn)(void);
  } all[] = {/* first, while the heap is fresh: RSS growth is the measure */
             {"idle-actor-memory", bench_idle},
             {"tell-throughput", bench_tell}, {"ping-pong", bench_pingpong},
             {"spawn", bench_spawn}, {"ask", bench_ask}};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
    bool run = argc < 2;
    for (int a = 1; a < argc; a++) run |= strcmp(argv[a], all[i].name) == 0;
    if (!run) continue;
    fprintf(stderr, "running %s\n", all[i].name);
    all[i].fn();
  }
  return 0;
}
