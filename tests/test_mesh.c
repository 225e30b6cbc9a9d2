/*
 * test_mesh.c: worker-thread meshes — round trips across threads, refs in
 * messages, resolve, death watch across workers (stop and worker lost),
 * isolation and restart, clean shutdown.
 */
#include "tt.h"
#include "core/internal.h"
#include "troupe/mesh.h"

typedef struct start_msg { troupe_ref target; int32_t n; } start_msg;
static troupe_type T_START = {.manifest = "tm.Start", .version = 1,
                              .size = sizeof(start_msg)};
static troupe_type T_PING = {.manifest = "tm.Ping", .version = 1,
                             .size = sizeof(int32_t)};
static troupe_type T_CRASH = {.manifest = "tm.Crash", .version = 1,
                              .size = 0};

static atomic_int pongs, terminated, lost_node, lost_reports;

/* echo: replies to Ping with Ping+1; fails on Crash */
static int echo_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)st;
  if (msg->type == &T_PING) {
    int32_t v = *(const int32_t *)msg->data + 1;
    return troupe_reply(ctx, &T_PING, &v);
  }
  if (msg->type == &T_CRASH) return TROUPE_EIO;
  return TROUPE_UNHANDLED;
}
static const troupe_behavior echo_b = {.name = "echo", .receive = echo_recv};

/* client: on Start{target,n} pings target n times and watches it */
typedef struct client { troupe_ref target; } client;
static int client_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  client *c = st;
  if (msg->type == &T_START) {
    const start_msg *s = msg->data;
    c->target = s->target;
    if (troupe_watch(ctx, s->target) < 0) return TROUPE_EIO;
    for (int32_t i = 0; i < s->n; i++)
      troupe_send(ctx, s->target, &T_PING, &i);
    return 0;
  }
  if (msg->type == &T_PING) {
    atomic_fetch_add(&pongs, 1);
    return 0;
  }
  if (msg->type == &TROUPE_T_TERMINATED) {
    const troupe_terminated *t = msg->data;
    if (troupe_ref_eq(t->actor, c->target)) {
      if (t->node_lost) atomic_fetch_add(&lost_node, 1);
      atomic_fetch_add(&terminated, 1);
    }
    return 0;
  }
  return TROUPE_UNHANDLED;
}
static const troupe_behavior client_b = {
  .name = "client", .state_size = sizeof(client), .receive = client_recv};

static const troupe_supervisor escalate = {
  .default_directive = TROUPE_ESCALATE};
static const troupe_system_opts sys_tmpl = {
  .user_supervisor = &escalate, .log_level = TROUPE_LOG_ERROR,
  .log_level_set = true};

static int init(troupe_system *sys, uint32_t i, void *data) {
  (void)data;
  troupe_ref r;
  troupe_spawn_opts eo = {.name = "echo"}, co = {.name = "client"};
  int rc = troupe_system_spawn(sys, &echo_b, &eo, &r);
  if (rc == 0 && i == 0) rc = troupe_system_spawn(sys, &client_b, &co, &r);
  return rc;
}

static void on_lost(void *data, uint32_t index, int rc, bool restarting) {
  (void)data; (void)index; (void)rc; (void)restarting;
  atomic_fetch_add(&lost_reports, 1);
}

static troupe_mesh *up(uint32_t n) {
  troupe_mesh *m = NULL;
  troupe_mesh_opts o = {.workers = n, .init = init, .on_lost = on_lost,
                        .system = &sys_tmpl, .backoff_min_ms = 10};
  if (troupe_mesh_create(&m, &o) < 0 || troupe_mesh_start(m) < 0) return NULL;
  return m;
}

static troupe_ref resolve(troupe_mesh *m, uint32_t i, const char *path) {
  troupe_ref r = TROUPE_REF_NONE;
  /* the actor may not be spawned yet: retry until found, bounded */
  TT_WAIT_UNTIL(!troupe_ref_is_none(r) ||
                    (troupe_mesh_resolve(m, i, path, 1000, &r) == 0 &&
                     !troupe_ref_is_none(r)), 5000);
  return r;
}

static void test_bad_args(void) {
  troupe_mesh *m;
  troupe_mesh_opts o = {.workers = 0};
  TT_EQ_INT(troupe_mesh_create(&m, &o), TROUPE_EINVAL);
  TT_EQ_INT(troupe_mesh_create(NULL, &o), TROUPE_EINVAL);
  TT_EQ_INT(troupe_mesh_start(NULL), TROUPE_EINVAL);
  troupe_mesh_destroy(NULL);
}

static void test_round_trip_and_watch(void) {
  atomic_store(&pongs, 0);
  atomic_store(&terminated, 0);
  atomic_store(&lost_node, 0);
  troupe_mesh *m = up(3);
  TT_ASSERT(m);
  troupe_ref cl = resolve(m, 0, "/user/client");
  troupe_ref echo1 = resolve(m, 1, "/user/echo");
  TT_ASSERT(!troupe_ref_is_none(cl) && !troupe_ref_is_none(echo1));
  TT_ASSERT(cl.node != echo1.node);
  start_msg s = {echo1, 1000};   /* a ref inside a message */
  TT_EQ_INT(troupe_tell(cl, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 1000, 10000));
  /* death watch across workers: a confirmed stop */
  TT_EQ_INT(troupe_tell(echo1, &TROUPE_T_POISON_PILL, NULL, TROUPE_REF_NONE),
            0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&terminated) == 1, 10000));
  TT_EQ_INT(atomic_load(&lost_node), 0);
  troupe_ref gone;
  TT_EQ_INT(troupe_mesh_resolve(m, 1, "/user/echo", 1000, &gone),
            TROUPE_ENOENT);
  troupe_mesh_destroy(m);
}

static void test_worker_lost_and_restart(void) {
  atomic_store(&pongs, 0);
  atomic_store(&terminated, 0);
  atomic_store(&lost_node, 0);
  atomic_store(&lost_reports, 0);
  troupe_mesh *m = up(3);
  TT_ASSERT(m);
  troupe_ref cl = resolve(m, 0, "/user/client");
  troupe_ref echo2 = resolve(m, 2, "/user/echo");
  start_msg s = {echo2, 10};
  TT_EQ_INT(troupe_tell(cl, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 10, 10000));
  /* the failure escalates to worker 2's root guardian: the worker is lost */
  TT_EQ_INT(troupe_tell(echo2, &T_CRASH, NULL, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&terminated) == 1, 10000));
  TT_ASSERT(TT_WAIT_UNTIL(troupe_mesh_restarts(m, 2) == 1, 10000));
  TT_ASSERT(atomic_load(&lost_reports) >= 1);
  /* restarted with a new node; the old ref is dead, the new one works */
  troupe_ref again = resolve(m, 2, "/user/echo");
  TT_ASSERT(!troupe_ref_is_none(again));
  TT_ASSERT(again.node != echo2.node);
  /* the others kept running */
  troupe_ref echo1 = resolve(m, 1, "/user/echo");
  start_msg s2 = {echo1, 5};
  TT_EQ_INT(troupe_tell(cl, &T_START, &s2, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 15, 10000));
  s2.target = again;
  TT_EQ_INT(troupe_tell(cl, &T_START, &s2, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 20, 10000));
  troupe_mesh_destroy(m);
}

/* A long one-way stream keeps order and loses nothing (ring overflow). */
static atomic_int stream_seen, stream_bad;
static int sink_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)ctx;
  int32_t *next = st;
  if (msg->type != &T_PING) return TROUPE_UNHANDLED;
  if (*(const int32_t *)msg->data != *next) atomic_store(&stream_bad, 1);
  (*next)++;
  atomic_fetch_add(&stream_seen, 1);
  return 0;
}
static const troupe_behavior sink_b = {.name = "sink",
                                       .state_size = sizeof(int32_t),
                                       .receive = sink_recv};
static int burst_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)st;
  if (msg->type != &T_START) return TROUPE_UNHANDLED;
  const start_msg *s = msg->data;
  for (int32_t i = 0; i < s->n; i++) troupe_send(ctx, s->target, &T_PING, &i);
  return 0;
}
static const troupe_behavior burst_b = {.name = "burst",
                                        .receive = burst_recv};
static int init_stream(troupe_system *sys, uint32_t i, void *data) {
  (void)data;
  troupe_ref r;
  troupe_spawn_opts o = {.name = i ? "sink" : "burst"};
  return troupe_system_spawn(sys, i ? &sink_b : &burst_b, &o, &r);
}

static void test_stream_order(void) {
  troupe_mesh *m;
  troupe_mesh_opts o = {.workers = 2, .init = init_stream};
  TT_EQ_INT(troupe_mesh_create(&m, &o), 0);
  TT_EQ_INT(troupe_mesh_start(m), 0);
  troupe_ref burst = resolve(m, 0, "/user/burst");
  troupe_ref sink = resolve(m, 1, "/user/sink");
  start_msg s = {sink, 100000};   /* > ring size in one turn: overflow */
  TT_EQ_INT(troupe_tell(burst, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&stream_seen) == 100000, 20000));
  TT_EQ_INT(atomic_load(&stream_bad), 0);
  troupe_mesh_destroy(m);
}

/* A worker whose local work never runs out (an actor telling itself
 * forever) still reads its links: messages from other workers get in. */
static troupe_type T_SPIN = {.manifest = "tm.Spin", .version = 1, .size = 0};
static int spin_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)st;
  if (msg->type != &T_SPIN) return TROUPE_UNHANDLED;
  return troupe_send(ctx, troupe_self(ctx), &T_SPIN, NULL);
}
static int spin_init(troupe_ctx *ctx, void *st, const void *arg) {
  (void)st;
  (void)arg;
  return troupe_send(ctx, troupe_self(ctx), &T_SPIN, NULL);
}
static const troupe_behavior spin_b = {.name = "spin", .init = spin_init,
                                       .receive = spin_recv};
static int init_busy(troupe_system *sys, uint32_t i, void *data) {
  int rc = init(sys, i, data);
  troupe_ref r;
  troupe_spawn_opts o = {.name = "spin"};
  if (rc == 0 && i == 1) rc = troupe_system_spawn(sys, &spin_b, &o, &r);
  return rc;
}

static void test_busy_worker_reads_links(void) {
  atomic_store(&pongs, 0);
  troupe_mesh *m = NULL;
  troupe_mesh_opts o = {.workers = 2, .init = init_busy,
                        .system = &sys_tmpl};
  TT_EQ_INT(troupe_mesh_create(&m, &o), 0);
  TT_EQ_INT(troupe_mesh_start(m), 0);
  troupe_ref cl = resolve(m, 0, "/user/client");
  troupe_ref echo1 = resolve(m, 1, "/user/echo");
  TT_ASSERT(!troupe_ref_is_none(cl) && !troupe_ref_is_none(echo1));
  start_msg s = {echo1, 100};
  TT_EQ_INT(troupe_tell(cl, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 100, 10000));
  troupe_mesh_destroy(m);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  TT_RUN(test_bad_args);
  TT_RUN(test_round_trip_and_watch);
  TT_RUN(test_worker_lost_and_restart);
  TT_RUN(test_stream_order);
  TT_RUN(test_busy_worker_reads_links);
  return tt_done();
}
