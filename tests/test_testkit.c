/*
 * test_testkit.c: self-tests of the multi-node test kit (tests/testkit.h),
 * every directive on both variants (TK_MEM: one thread, in-memory
 * transport, virtual time; TK_MESH: worker threads): start and stop,
 * nodes started later, run on a node's thread, refs across nodes,
 * partition and heal, crash, barriers, bounded waits that time out, and
 * (TK_MEM) two runs giving the same trace. The cluster directives (waits
 * on membership, leave) are tested once the membership daemon is in the
 * library.
 */
#include "tt.h"
#include "testkit.h"
#include "core/internal.h"

#include <pthread.h>

typedef struct ping {
  int32_t v;
  int32_t from;
} ping;
static const troupe_field ping_fields[] = {TROUPE_FIELD(ping, v, I32),
                                           TROUPE_FIELD(ping, from, I32)};
static troupe_type T_PING = TROUPE_TYPE("tk.Ping", 1, ping, ping_fields);

typedef struct go {
  troupe_ref target;
  int32_t n;
} go;
static const troupe_field go_fields[] = {TROUPE_FIELD(go, target, REF),
                                         TROUPE_FIELD(go, n, I32)};
static troupe_type T_GO = TROUPE_TYPE("tk.Go", 1, go, go_fields);

typedef struct arrive {
  int32_t n;
} arrive;
static const troupe_field arrive_fields[] = {TROUPE_FIELD(arrive, n, I32)};
static troupe_type T_ARRIVE = TROUPE_TYPE("tk.Arrive", 1, arrive,
                                          arrive_fields);

static tk *g_kit;
static atomic_int got[TK_MAX_NODES];    /* pings received by node i's echo */
static atomic_int pongs[TK_MAX_NODES];  /* answers from node i's echo */

static void reset(void) {
  for (int i = 0; i < TK_MAX_NODES; i++) {
    atomic_store(&got[i], 0);
    atomic_store(&pongs[i], 0);
  }
}

typedef struct node_st {
  int32_t node;
} node_st;

static int node_init(troupe_ctx *ctx, void *st, const void *arg) {
  (void)ctx;
  ((node_st *)st)->node = *(const int32_t *)arg;
  return 0;
}

/* echo: answers Ping{v, from} with Ping{v + 1, self}; Arrive: tk_arrive */
static int echo_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  node_st *s = st;
  if (msg->type == &T_PING) {
    const ping *p = msg->data;
    atomic_fetch_add(&got[s->node], 1);
    tk_trace(g_kit, "n%d echo <- %d from n%d", s->node, p->v, p->from);
    ping r = {p->v + 1, s->node};
    return troupe_reply(ctx, &T_PING, &r);
  }
  if (msg->type == &T_ARRIVE) {
    char name[16];
    snprintf(name, sizeof name, "b%d", ((const arrive *)msg->data)->n);
    return tk_arrive(g_kit, (uint32_t)s->node, name);
  }
  return TROUPE_UNHANDLED;
}
static const troupe_behavior echo_b = {
  .name = "echo", .state_size = sizeof(node_st), .init = node_init,
  .receive = echo_recv};

/* client: Go{target, n} pings target n times; counts the answers */
static int client_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  node_st *s = st;
  if (msg->type == &T_GO) {
    const go *g = msg->data;
    for (int32_t i = 0; i < g->n; i++) {
      ping p = {i * 10, s->node};
      troupe_send(ctx, g->target, &T_PING, &p);
    }
    return 0;
  }
  if (msg->type == &T_PING) {
    const ping *p = msg->data;
    atomic_fetch_add(&pongs[p->from], 1);
    tk_trace(g_kit, "n%d client <- %d from n%d", s->node, p->v, p->from);
    return 0;
  }
  return TROUPE_UNHANDLED;
}
static const troupe_behavior client_b = {
  .name = "client", .state_size = sizeof(node_st), .init = node_init,
  .receive = client_recv};

static int fail_on = -1;

static int init(tk *t, uint32_t i, troupe_system *sys, void *data) {
  (void)t; (void)data;
  if ((int)i == fail_on) return TROUPE_EIO;
  int32_t idx = (int32_t)i;
  troupe_spawn_opts eo = {.name = "echo", .arg = &idx,
                          .arg_size = sizeof idx};
  troupe_spawn_opts co = {.name = "client", .arg = &idx,
                          .arg_size = sizeof idx};
  troupe_ref r;
  int rc = troupe_system_spawn(sys, &echo_b, &eo, &r);
  if (rc == 0) rc = troupe_system_spawn(sys, &client_b, &co, &r);
  return rc;
}

static int start(tk **t, tk_variant v, uint32_t n, uint32_t initial) {
  reset();
  fail_on = -1;
  tk_opts o = {.init = init, .initial = initial};
  int rc = tk_start(t, v, n, &o);
  g_kit = *t;
  return rc;
}

/* Have node `from`'s client ping node `to`'s echo n times. */
typedef struct go_arg {
  troupe_ref client;
  go g;
} go_arg;

static int go_fn(troupe_system *sys, void *data) {
  (void)sys;
  go_arg *a = data;
  return troupe_tell(a->client, &T_GO, &a->g, TROUPE_REF_NONE);
}

static int send_go(tk *t, uint32_t from, uint32_t to, int32_t n) {
  go_arg a = {.g.n = n};
  int rc = tk_ref(t, from, from, "/user/client", &a.client);
  if (rc == 0) rc = tk_ref(t, from, to, "/user/echo", &a.g.target);
  if (rc == 0) rc = tk_run(t, from, go_fn, &a);
  return rc;
}

typedef struct count_at_least {
  atomic_int *c;
  int n;
} count_at_least;

static bool cond_count(tk *t, void *data) {
  (void)t;
  count_at_least *c = data;
  return atomic_load(c->c) >= c->n;
}

static int wait_count(tk *t, atomic_int *c, int n, uint64_t ms) {
  count_at_least a = {c, n};
  return tk_wait(t, cond_count, &a, ms);
}

/* ------------------------------------------------------------------ */

static void check_start_stop(tk_variant v) {
  tk *t;
  TT_EQ_INT(tk_start(&t, v, 0, NULL), TROUPE_EINVAL);
  TT_EQ_INT(tk_start(&t, (tk_variant)7, 2, NULL), TROUPE_EINVAL);
  TT_EQ_INT(start(&t, v, 3, 0), 0);
  TT_EQ_INT(tk_size(t), 3);
  TT_ASSERT(tk_variant_of(t) == v);
  for (uint32_t i = 0; i < 3; i++) {
    TT_ASSERT(tk_alive(t, i));
    troupe_system *s = tk_system(t, i);
    TT_ASSERT(s != NULL);
    char name[8];
    snprintf(name, sizeof name, "n%u", i);
    TT_EQ_STR(troupe_system_name(s), name);
  }
  TT_EQ_STR(tk_address(t, 1), v == TK_MEM ? "troupe://n1@n1:1"
                                          : "troupe://n1");
  TT_ASSERT(tk_system(t, 3) == NULL);
  tk_stop(t);
  /* a failing init fails the start (and the kit is gone) */
  reset();
  fail_on = 1;
  tk_opts o = {.init = init};
  t = (tk *)1;
  TT_EQ_INT(tk_start(&t, v, 2, &o), TROUPE_EIO);
  TT_ASSERT(t == NULL);
  fail_on = -1;
}

typedef struct run_arg {
  pthread_t test_thread;
  uint32_t node;
  bool on_test_thread;
} run_arg;

static int run_fn(troupe_system *sys, void *data) {
  run_arg *a = data;
  if (troupe__current != sys) return TROUPE_EINVAL;
  char name[8];
  snprintf(name, sizeof name, "n%u", a->node);
  if (strcmp(troupe_system_name(sys), name) != 0) return TROUPE_EINVAL;
  a->on_test_thread = pthread_equal(pthread_self(), a->test_thread);
  return 40 + (int)a->node;
}

static void check_run(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 3, 0), 0);
  for (uint32_t i = 0; i < 3; i++) {
    run_arg a = {.test_thread = pthread_self(), .node = i};
    TT_EQ_INT(tk_run(t, i, run_fn, &a), 40 + (int)i);
    /* TK_MEM runs everything on the test thread; TK_MESH on workers */
    TT_ASSERT(a.on_test_thread == (v == TK_MEM));
  }
  run_arg a = {.node = 9};
  TT_EQ_INT(tk_run(t, 9, run_fn, &a), TROUPE_EINVAL);
  TT_EQ_INT(tk_run(t, 0, NULL, &a), TROUPE_EINVAL);
  tk_stop(t);
}

static void check_tell(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 3, 0), 0);
  TT_EQ_INT(send_go(t, 0, 1, 5), 0);
  TT_EQ_INT(send_go(t, 0, 2, 5), 0);
  TT_EQ_INT(send_go(t, 2, 0, 3), 0);
  TT_EQ_INT(wait_count(t, &pongs[1], 5, 5000), 0);
  TT_EQ_INT(wait_count(t, &pongs[2], 5, 5000), 0);
  TT_EQ_INT(wait_count(t, &pongs[0], 3, 5000), 0);
  troupe_ref r;
  TT_EQ_INT(tk_ref(t, 0, 1, "/user/nothing", &r), TROUPE_ENOENT);
  TT_EQ_INT(tk_ref(t, 0, 1, "user/echo", &r), TROUPE_EINVAL);
  tk_stop(t);
}

static void check_partition(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 3, 0), 0);
  TT_EQ_INT(send_go(t, 0, 1, 5), 0);
  TT_EQ_INT(wait_count(t, &pongs[1], 5, 5000), 0);
  TT_EQ_INT(tk_partition(t, 0, 1), 0);
  TT_EQ_INT(tk_partition(t, 0, 0), TROUPE_EINVAL);
  TT_EQ_INT(send_go(t, 0, 1, 5), 0);
  TT_EQ_INT(send_go(t, 0, 2, 5), 0);
  TT_EQ_INT(send_go(t, 2, 1, 5), 0);
  /* the other links work */
  TT_EQ_INT(wait_count(t, &pongs[2], 5, 5000), 0);
  TT_EQ_INT(wait_count(t, &got[1], 10, 5000), 0);
  /* and nothing crosses the cut */
  TT_EQ_INT(tk_advance(t, 300), 0);
  TT_EQ_INT(atomic_load(&got[1]), 10);
  TT_EQ_INT(wait_count(t, &got[1], 11, 100), TROUPE_ETIMEDOUT);
  TT_EQ_INT(tk_heal(t, 0, 1), 0);
  TT_EQ_INT(send_go(t, 0, 1, 5), 0);
  /* TK_MEM's remoting holds what it could not send and delivers it after
   * the heal (a bounded queue); the mesh lost it */
  TT_EQ_INT(wait_count(t, &pongs[1], v == TK_MEM ? 15 : 10, 5000), 0);
  tk_stop(t);
}

static void check_crash(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 3, 0), 0);
  TT_EQ_INT(send_go(t, 0, 2, 2), 0);
  TT_EQ_INT(wait_count(t, &pongs[2], 2, 5000), 0);
  go_arg a = {.g.n = 3};
  TT_EQ_INT(tk_ref(t, 0, 0, "/user/client", &a.client), 0);
  TT_EQ_INT(tk_ref(t, 0, 2, "/user/echo", &a.g.target), 0);
  TT_EQ_INT(tk_crash(t, 2), 0);
  TT_ASSERT(!tk_alive(t, 2));
  TT_ASSERT(tk_system(t, 2) == NULL);
  TT_EQ_INT(tk_wait_stopped(t, 2, 10), 0);
  TT_EQ_INT(tk_crash(t, 2), TROUPE_ECLOSED);
  run_arg ra = {.node = 2};
  TT_EQ_INT(tk_run(t, 2, run_fn, &ra), TROUPE_ECLOSED);
  TT_EQ_INT(tk_barrier_wait(t, "none", 10), TROUPE_ETIMEDOUT);
  /* the crashed node answers nothing; the others go on */
  TT_EQ_INT(tk_run(t, 0, go_fn, &a), 0);
  TT_EQ_INT(send_go(t, 0, 1, 4), 0);
  TT_EQ_INT(wait_count(t, &pongs[1], 4, 5000), 0);
  TT_EQ_INT(tk_advance(t, 200), 0);
  TT_EQ_INT(atomic_load(&pongs[2]), 2);
  TT_EQ_INT(tk_wait_stopped(t, 1, 50), TROUPE_ETIMEDOUT);
  tk_stop(t);
}

static int arrive_fn(troupe_system *sys, void *data) {
  (void)sys;
  go_arg *a = data;
  arrive ar = {a->g.n};
  return troupe_tell(a->client, &T_ARRIVE, &ar, TROUPE_REF_NONE);
}

static int send_arrive(tk *t, uint32_t node, int32_t n) {
  go_arg a = {.g.n = n};
  int rc = tk_ref(t, node, node, "/user/echo", &a.client);
  return rc ? rc : tk_run(t, node, arrive_fn, &a);
}

static void check_barrier(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 3, 0), 0);
  /* nobody there yet: a bounded wait that names who is missing */
  TT_EQ_INT(tk_barrier_wait(t, "b1", 100), TROUPE_ETIMEDOUT);
  TT_ASSERT(strstr(tk_errmsg(t), "not arrived: 0 1 2") != NULL);
  TT_EQ_INT(send_arrive(t, 0, 1), 0);
  TT_EQ_INT(send_arrive(t, 2, 1), 0);
  TT_EQ_INT(tk_barrier_wait(t, "b1", 100), TROUPE_ETIMEDOUT);
  TT_ASSERT(strstr(tk_errmsg(t), "not arrived: 1") != NULL);
  TT_EQ_INT(send_arrive(t, 1, 1), 0);
  TT_EQ_INT(tk_barrier(t, "b1"), 0);
  TT_ASSERT(tk_arrived(t, 1, "b1"));
  TT_ASSERT(!tk_arrived(t, 1, "b2"));
  /* only live nodes count */
  TT_EQ_INT(send_arrive(t, 0, 2), 0);
  TT_EQ_INT(send_arrive(t, 1, 2), 0);
  TT_EQ_INT(tk_crash(t, 2), 0);
  TT_EQ_INT(tk_barrier(t, "b2"), 0);
  TT_EQ_INT(tk_arrive(t, 99, "b3"), TROUPE_EINVAL);
  tk_stop(t);
}

static bool never_true(tk *t, void *data) {
  (void)t; (void)data;
  return false;
}

static void check_wait_timeout(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 2, 0), 0);
  uint64_t real0 = tt_now_ms(), kit0 = tk_now(t);
  TT_EQ_INT(tk_wait(t, never_true, NULL, 500), TROUPE_ETIMEDOUT);
  uint64_t real = tt_now_ms() - real0, kit = tk_now(t) - kit0;
  TT_ASSERT(strstr(tk_errmsg(t), "never_true") != NULL);
  TT_ASSERT(kit >= 500);
  if (v == TK_MEM) TT_ASSERT(kit < 500 + 20);
  else TT_ASSERT(real >= 500);
  tk_stop(t);
}

static void check_start_node(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 3, 2), 0);
  TT_ASSERT(tk_alive(t, 1));
  TT_ASSERT(!tk_alive(t, 2));
  run_arg ra = {.node = 2};
  TT_EQ_INT(tk_run(t, 2, run_fn, &ra), TROUPE_ECLOSED);
  TT_EQ_INT(tk_start_node(t, 1), TROUPE_ESTATE);
  TT_EQ_INT(tk_start_node(t, 2), 0);
  TT_ASSERT(tk_alive(t, 2));
  TT_EQ_INT(tk_start_node(t, 2), TROUPE_ESTATE);
  TT_EQ_INT(tk_start_node(t, 3), TROUPE_EINVAL);
  TT_EQ_INT(send_go(t, 0, 2, 3), 0);
  TT_EQ_INT(wait_count(t, &pongs[2], 3, 5000), 0);
  tk_stop(t);
}

/* TK_MEM: the same test twice gives the same trace */
static char *traced_run(void) {
  tk *t;
  if (start(&t, TK_MEM, 3, 0) < 0) return NULL;
  int rc = 0;
  for (uint32_t i = 0; i < 3 && rc == 0; i++)
    for (uint32_t j = 0; j < 3 && rc == 0; j++)
      if (i != j) rc = send_go(t, i, j, 3);
  if (rc == 0) rc = tk_advance(t, 50);
  if (rc == 0) rc = tk_partition(t, 1, 2);
  if (rc == 0) rc = send_go(t, 0, 2, 2);
  if (rc == 0) rc = send_go(t, 1, 2, 2);
  if (rc == 0) rc = tk_advance(t, 50);
  if (rc == 0) rc = tk_heal(t, 1, 2);
  for (uint32_t i = 0; i < 3 && rc == 0; i++)
    rc = wait_count(t, &pongs[i], i == 2 ? 10 : 6, 5000);
  char *s = rc == 0 ? strdup(tk_trace_text(t)) : NULL;
  tk_stop(t);
  return s;
}

static void test_mem_deterministic(void) {
  char *a = traced_run(), *b = traced_run();
  TT_ASSERT(a && b);
  int same = strcmp(a, b) == 0;
  if (!same) fprintf(stderr, "run 1:\n%s\nrun 2:\n%s\n", a, b);
  size_t lines = 0;
  for (const char *p = a; *p; p++) lines += *p == '\n';
  free(a);
  free(b);
  TT_ASSERT(same);
  TT_EQ_INT(lines, 2 * (6 * 3 + 4));
}

/* ------------------------------------------------------------------ */
/* Cluster directives */

static int cstart(tk **t, tk_variant v, uint32_t n, uint32_t initial,
                  troupe_sbr_strategy sbr) {
  reset();
  fail_on = -1;
  tk_opts o = {.init = init, .initial = initial, .cluster = true};
  o.cluster_opts.sbr = sbr;
  int rc = tk_start(t, v, n, &o);
  g_kit = *t;
  return rc;
}

static uint64_t wait_ms(tk_variant v) { return v == TK_MEM ? 20000 : 10000; }

static void check_cluster(tk_variant v) {
  tk *t;
  uint64_t W = wait_ms(v);
  TT_EQ_INT(cstart(&t, v, 3, 2, TROUPE_SBR_OFF), 0);
  TT_EQ_INT(tk_wait_converged(t, W), 0);
  TT_EQ_INT(tk_wait_members(t, 0, 2, W), 0);
  /* a wait that cannot succeed times out and says what it saw */
  TT_EQ_INT(tk_wait_members(t, 1, 3, 200), TROUPE_ETIMEDOUT);
  TT_ASSERT(strstr(tk_errmsg(t), "node 1 sees") != NULL);
  TT_EQ_INT(tk_wait_status(t, 0, 2, TROUPE_MEMBER_UP, 100), TROUPE_ETIMEDOUT);
  /* a node that joins later */
  TT_EQ_INT(tk_start_node(t, 2), 0);
  TT_EQ_INT(tk_wait_status(t, 0, 2, TROUPE_MEMBER_UP, W), 0);
  TT_EQ_INT(tk_wait_converged(t, W), 0);
  for (uint32_t i = 0; i < 3; i++) TT_EQ_INT(tk_wait_members(t, i, 3, W), 0);
  /* cut node 2 off: unreachable (and, with no resolver, still a member);
   * healed: reachable again */
  TT_EQ_INT(tk_partition(t, 2, 0), 0);
  TT_EQ_INT(tk_partition(t, 2, 1), 0);
  TT_EQ_INT(tk_wait_reachable(t, 0, 2, false, W), 0);
  TT_EQ_INT(tk_wait_reachable(t, 2, 1, false, W), 0);
  TT_EQ_INT(tk_wait_converged(t, 100), TROUPE_ETIMEDOUT);
  TT_EQ_INT(tk_wait_status(t, 0, 2, TROUPE_MEMBER_UP, 10), 0);
  TT_EQ_INT(tk_heal(t, 2, 0), 0);
  TT_EQ_INT(tk_heal(t, 2, 1), 0);
  TT_EQ_INT(tk_wait_reachable(t, 0, 2, true, W), 0);
  TT_EQ_INT(tk_wait_converged(t, W), 0);
  /* graceful leave: removed everywhere, the node itself keeps running */
  TT_EQ_INT(tk_leave(t, 2), 0);
  TT_EQ_INT(tk_wait_removed(t, 2, W), 0);
  TT_EQ_INT(tk_wait_converged(t, W), 0);
  TT_EQ_INT(tk_wait_members(t, 0, 2, W), 0);
  TT_ASSERT(tk_alive(t, 2));
  tk_stop(t);
}

static void check_cluster_crash(tk_variant v) {
  tk *t;
  uint64_t W = wait_ms(v);
  TT_EQ_INT(cstart(&t, v, 3, 0, TROUPE_SBR_KEEP_MAJORITY), 0);
  TT_EQ_INT(tk_wait_converged(t, W), 0);
  TT_EQ_INT(tk_wait_removed(t, 2, 100), TROUPE_ETIMEDOUT);
  TT_EQ_INT(tk_crash(t, 2), 0);
  /* the failure detector notices, the resolver downs it, the leader
   * removes it */
  TT_EQ_INT(tk_wait_reachable(t, 0, 2, false, W), 0);
  TT_EQ_INT(tk_wait_removed(t, 2, W), 0);
  TT_EQ_INT(tk_wait_converged(t, W), 0);
  TT_EQ_INT(tk_wait_members(t, 1, 2, W), 0);
  tk_stop(t);
}

#define BOTH(check)                                                        \
  static void test_##check##_mem(void) { check_##check(TK_MEM); }          \
  static void test_##check##_mesh(void) { check_##check(TK_MESH); }

BOTH(start_stop)
BOTH(run)
BOTH(tell)
BOTH(partition)
BOTH(crash)
BOTH(barrier)
BOTH(wait_timeout)
BOTH(start_node)
BOTH(cluster)
BOTH(cluster_crash)

int main(int argc, char **argv) {
  tt_init(argc, argv);
  troupe_type_register(&T_PING);
  troupe_type_register(&T_GO);
  troupe_type_register(&T_ARRIVE);
  TT_RUN(test_start_stop_mem);
  TT_RUN(test_start_stop_mesh);
  TT_RUN(test_run_mem);
  TT_RUN(test_run_mesh);
  TT_RUN(test_tell_mem);
  TT_RUN(test_tell_mesh);
  TT_RUN(test_partition_mem);
  TT_RUN(test_partition_mesh);
  TT_RUN(test_crash_mem);
  TT_RUN(test_crash_mesh);
  TT_RUN(test_barrier_mem);
  TT_RUN(test_barrier_mesh);
  TT_RUN(test_wait_timeout_mem);
  TT_RUN(test_wait_timeout_mesh);
  TT_RUN(test_start_node_mem);
  TT_RUN(test_start_node_mesh);
  TT_RUN(test_mem_deterministic);
  TT_RUN(test_cluster_mem);
  TT_RUN(test_cluster_mesh);
  TT_RUN(test_cluster_crash_mem);
  TT_RUN(test_cluster_crash_mesh);
  return tt_done();
}
