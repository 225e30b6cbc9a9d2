/*
 * bench_mesh.c: mesh-tell and mesh ping-pong between two worker systems,
 * with the raw baselines measured in the same run: an SPSC ring between
 * two threads (publishing every item and every 64), blocking wake-up
 * ping-pong (eventfd, uv_async) and a spinning ping-pong.
 *
 * Sizes: MESH_N (messages, default 10M), MESH_RT (round trips, 200k),
 * RAW_N (ring items, 20M), WAKE_RT (blocking round trips, 20k).
 */
#define _GNU_SOURCE 1
#include "core/internal.h"
#include "troupe/mesh.h"
#include "bench_util.h"

#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#if defined(__x86_64__)
# include <immintrin.h>
# define RELAX() _mm_pause()
#else
# define RELAX() ((void)0)
#endif

static void result(const char *w, double v, const char *unit,
                   const char *extra) {
  printf("workload=%s system=%s value=%.0f unit=%s%s%s\n", w,
         strncmp(w, "raw-", 4) == 0 ? "raw" : "troupe", v, unit,
         extra ? " " : "", extra ? extra : "");
}

/* ------------------------------------------------------------------ */
/* Raw SPSC ring */

#define RSIZE 8192
static struct {
  _Alignas(64) atomic_size_t tail;
  _Alignas(64) atomic_size_t head;
  _Alignas(64) uint64_t slot[RSIZE];
} rr;
static long raw_n;
static int raw_batch;

static void *raw_consumer(void *arg) {
  (void)arg;
  size_t h = 0, t = 0;
  uint64_t sum = 0;
  while (h < (size_t)raw_n) {
    if (h == t) {
      while ((t = atomic_load_explicit(&rr.tail, memory_order_acquire)) == h)
        RELAX();
    }
    while (h != t) sum += rr.slot[h++ & (RSIZE - 1)];
    atomic_store_explicit(&rr.head, h, memory_order_release);
  }
  if (sum != (uint64_t)raw_n * (uint64_t)(raw_n - 1) / 2) {
    fprintf(stderr, "raw ring: wrong sum\n");
    exit(1);
  }
  return NULL;
}

static double raw_ring(long n, int batch) {
  raw_n = n;
  raw_batch = batch;
  atomic_store(&rr.tail, 0);
  atomic_store(&rr.head, 0);
  pthread_t th;
  double t0 = bench_now();
  pthread_create(&th, NULL, raw_consumer, NULL);
  size_t t = 0, hc = 0;
  for (long i = 0; i < n; i++) {
    while (t - hc >= RSIZE) {
      hc = atomic_load_explicit(&rr.head, memory_order_acquire);
      if (t - hc >= RSIZE) RELAX();
    }
    rr.slot[t & (RSIZE - 1)] = (uint64_t)i;
    t++;
    if ((t % (size_t)batch) == 0 || i == n - 1)
      atomic_store_explicit(&rr.tail, t, memory_order_release);
  }
  pthread_join(th, NULL);
  return (double)n / (bench_now() - t0);
}

/* ------------------------------------------------------------------ */
/* Ping-pong baselines */

static int efd[2];
static long wake_rt;

static void *efd_pong(void *arg) {
  (void)arg;
  uint64_t v;
  for (long i = 0; i < wake_rt; i++) {
    if (read(efd[0], &v, 8) != 8) exit(1);
    v = 1;
    if (write(efd[1], &v, 8) != 8) exit(1);
  }
  return NULL;
}

static double efd_pingpong(long n) {
  wake_rt = n;
  efd[0] = eventfd(0, 0);
  efd[1] = eventfd(0, 0);
  pthread_t th;
  pthread_create(&th, NULL, efd_pong, NULL);
  double t0 = bench_now();
  uint64_t v = 1;
  for (long i = 0; i < n; i++) {
    if (write(efd[0], &v, 8) != 8) exit(1);
    if (read(efd[1], &v, 8) != 8) exit(1);
  }
  double dt = bench_now() - t0;
  pthread_join(th, NULL);
  close(efd[0]);
  close(efd[1]);
  return (double)n / dt;
}

/* uv_async ping-pong: two loops, each async wakes the other. */
typedef struct uvside {
  uv_loop_t loop;
  uv_async_t async;
  struct uvside *peer;
  long left;
} uvside;

static void uv_on_async(uv_async_t *h) {
  uvside *s = h->data;
  if (s->left-- <= 0) {
    uv_close((uv_handle_t *)&s->async, NULL);
    uv_async_send(&s->peer->async);
    return;
  }
  uv_async_send(&s->peer->async);
}

static void *uv_thread(void *arg) {
  uvside *s = arg;
  uv_run(&s->loop, UV_RUN_DEFAULT);
  return NULL;
}

static double uv_pingpong(long n) {
  static uvside a, b;
  uv_loop_init(&a.loop);
  uv_loop_init(&b.loop);
  uv_async_init(&a.loop, &a.async, uv_on_async);
  uv_async_init(&b.loop, &b.async, uv_on_async);
  a.async.data = &a;
  b.async.data = &b;
  a.peer = &b;
  b.peer = &a;
  a.left = n;
  b.left = n;
  pthread_t th;
  pthread_create(&th, NULL, uv_thread, &b);
  double t0 = bench_now();
  uv_async_send(&b.async);
  uv_run(&a.loop, UV_RUN_DEFAULT);
  double dt = bench_now() - t0;
  pthread_join(th, NULL);
  uv_loop_close(&a.loop);
  uv_loop_close(&b.loop);
  return (double)n / dt;
}

static _Alignas(64) atomic_long spin_ball;

static void *spin_pong(void *arg) {
  long n = (long)(intptr_t)arg;
  for (long i = 0; i < n; i++) {
    while (atomic_load_explicit(&spin_ball, memory_order_acquire) !=
           2 * i + 1)
      RELAX();
    atomic_store_explicit(&spin_ball, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

static double spin_pingpong(long n) {
  atomic_store(&spin_ball, 0);
  pthread_t th;
  pthread_create(&th, NULL, spin_pong, (void *)(intptr_t)n);
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    atomic_store_explicit(&spin_ball, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&spin_ball, memory_order_acquire) != 2 * i + 2)
      RELAX();
  }
  double dt = bench_now() - t0;
  pthread_join(th, NULL);
  return (double)n / dt;
}

/* ------------------------------------------------------------------ */
/* The mesh */

typedef struct go_msg {
  troupe_ref to;
  int64_t n;
} go_msg;
static troupe_type T_GO = {.manifest = "bench.Go", .version = 1,
                           .size = sizeof(go_msg)};
static troupe_type T_N = {.manifest = "bench.N", .version = 1,
                          .size = sizeof(int64_t)};

static troupe_ref refs_v[2];
static atomic_int refs_ready[2];
static void ref_set(int i, troupe_ref r) {
  refs_v[i] = r;
  atomic_store(&refs_ready[i], !troupe_ref_is_none(r));
}
static troupe_ref ref_get(int i) {
  return atomic_load(&refs_ready[i]) ? refs_v[i] : TROUPE_REF_NONE;
}
static atomic_long received;
static atomic_int done_flag;
static long total_msgs;

typedef struct sender { int64_t sent; } sender;

#define CHUNK 4096

static int sender_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  sender *s = st;
  if (msg->type != &T_GO) return TROUPE_UNHANDLED;
  const go_msg *g = msg->data;
  int64_t n = g->n - s->sent < CHUNK ? g->n - s->sent : CHUNK;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = s->sent + i;
    troupe_tell(g->to, &T_N, &v, TROUPE_REF_NONE);
  }
  s->sent += n;
  if (s->sent < g->n) troupe_send(ctx, troupe_self(ctx), &T_GO, g);
  return 0;
}

typedef struct counter { int64_t n, expect_next; } counter;

static int counter_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)ctx;
  counter *c = st;
  if (msg->type == &T_N) {
    if (*(const int64_t *)msg->data != c->expect_next) {
      fprintf(stderr, "mesh-tell: out of order\n");
      exit(1);
    }
    c->expect_next++;
    if (++c->n == total_msgs) {
      atomic_store(&received, (long)c->n);
      atomic_store(&done_flag, 1);
    }
    return 0;
  }
  if (msg->type == &T_GO) {   /* ping-pong: bounce */
    const go_msg *g = msg->data;
    go_msg r = {troupe_self(ctx), g->n};
    if (g->n <= 0) {
      atomic_store(&done_flag, 1);
      return 0;
    }
    r.n = g->n - 1;
    troupe_tell(g->to, &T_GO, &r, TROUPE_REF_NONE);
    return 0;
  }
  return TROUPE_UNHANDLED;
}

static const troupe_behavior sender_b = {
  .name = "sender", .state_size = sizeof(sender), .receive = sender_recv};
static const troupe_behavior counter_b = {
  .name = "counter", .state_size = sizeof(counter), .receive = counter_recv};

static int init_worker(troupe_system *sys, uint32_t i, void *data) {
  (void)data;
  troupe_ref r;
  troupe_spawn_opts o = {.name = i == 0 ? "sender" : "counter"};
  int rc = troupe_system_spawn(sys, i == 0 ? &sender_b : &counter_b, &o, &r);
  if (rc == 0) ref_set((int)i, r);
  return rc;
}

static void wait_flag(void) {
  while (!atomic_load(&done_flag)) {
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
}

static troupe_mesh *mesh_up(void) {
  troupe_mesh *m;
  troupe_mesh_opts o = {.workers = 2, .init = init_worker};
  if (troupe_mesh_create(&m, &o) < 0 || troupe_mesh_start(m) < 0) {
    fprintf(stderr, "mesh: %s\n", troupe_errmsg());
    exit(1);
  }
  while (troupe_ref_is_none(ref_get(0)) ||
         troupe_ref_is_none(ref_get(1))) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return m;
}

static double mesh_tell(long n) {
  total_msgs = n;
  atomic_store(&done_flag, 0);
  troupe_mesh *m = mesh_up();
  go_msg g = {ref_get(1), n};
  double t0 = bench_now();
  troupe_tell(ref_get(0), &T_GO, &g, TROUPE_REF_NONE);
  wait_flag();
  double dt = bench_now() - t0;
  if (atomic_load(&received) != n) {
    fprintf(stderr, "mesh-tell: received %ld of %ld\n",
            atomic_load(&received), n);
    exit(1);
  }
  troupe_mesh_destroy(m);
  ref_set(0, TROUPE_REF_NONE);
  ref_set(1, TROUPE_REF_NONE);
  return (double)n / dt;
}

/* Ping-pong: both workers run counters; a ball with a countdown bounces. */
static int init_pp(troupe_system *sys, uint32_t i, void *data) {
  (void)data;
  troupe_ref r;
  troupe_spawn_opts o = {.name = "pp"};
  int rc = troupe_system_spawn(sys, &counter_b, &o, &r);
  if (rc == 0) ref_set((int)i, r);
  return rc;
}

static double mesh_pingpong(long n) {
  atomic_store(&done_flag, 0);
  troupe_mesh *m;
  troupe_mesh_opts o = {.workers = 2, .init = init_pp};
  if (troupe_mesh_create(&m, &o) < 0 || troupe_mesh_start(m) < 0) exit(1);
  while (troupe_ref_is_none(ref_get(0)) ||
         troupe_ref_is_none(ref_get(1))) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  /* 2n hops = n round trips; the ball starts at worker 0 "from" 1 */
  go_msg g = {ref_get(1), 2 * n};
  double t0 = bench_now();
  troupe_tell(ref_get(0), &T_GO, &g, TROUPE_REF_NONE);
  wait_flag();
  double dt = bench_now() - t0;
  troupe_mesh_destroy(m);
  return (double)n / dt;
}

int main(void) {
  long mesh_n = bench_env_long("MESH_N", 10000000);
  long mesh_rt = bench_env_long("MESH_RT", 200000);
  long rn = bench_env_long("RAW_N", 20000000);
  long wrt = bench_env_long("WAKE_RT", 20000);
  char ex[64];
  result("raw-spsc", raw_ring(rn, 1), "msgs/s", "publish=1");
  result("raw-spsc", raw_ring(rn, 64), "msgs/s", "publish=64");
  result("raw-wake-pingpong", efd_pingpong(wrt), "rt/s", "wake=eventfd");
  result("raw-wake-pingpong", uv_pingpong(wrt), "rt/s", "wake=uv_async");
  result("raw-spin-pingpong", spin_pingpong(mesh_rt * 5), "rt/s", NULL);
  snprintf(ex, sizeof ex, "mode=oneway n=%ld", mesh_n);
  result("mesh-tell", mesh_tell(mesh_n), "msgs/s", ex);
  snprintf(ex, sizeof ex, "mode=pingpong n=%ld", mesh_rt);
  result("mesh-tell", mesh_pingpong(mesh_rt), "rt/s", ex);
  return 0;
}
