/*
 * test_cluster.c: the membership daemon. Each node is a system on its own
 * thread; nodes talk over the in-memory transport (mem://NET/x:1), as mesh
 * workers, or over TCP on 127.0.0.1. Short intervals keep it fast; every
 * wait is a bounded wait on a condition.
 */
#include "tt.h"
#include "cluster/internal.h"
#include "cluster/membership.h"
#include "troupe/cluster.h"
#include "troupe/mesh.h"

#include <inttypes.h>
#include <stdatomic.h>

#define WAIT_MS 8000

static const troupe_system_opts quiet = {.log_level = TROUPE_LOG_ERROR + 1,
                                         .log_level_set = true};

static troupe_cluster_opts fast_opts(void) {
  troupe_cluster_opts o;
  memset(&o, 0, sizeof o);
  o.gossip_ms = 25;
  o.heartbeat_ms = 25;
  o.acceptable_pause_ms = 600;
  o.stable_after_ms = 300;
  o.down_removal_margin_ms = 150;
  o.retry_join_ms = 80;
  return o;
}

typedef struct tnode {
  troupe_system *sys;
  char addr[TROUPE_ADDRESS_MAX];
  char name[16];
  char hostport[32];
} tnode;

/* A node "troupe://<name>@<name>:1" on network net, seeded with seeds. */
static int node_up(tnode *n, const char *net, const char *name,
                   const troupe_cluster_opts *base, const char *const *seeds,
                   size_t nseeds) {
  memset(n, 0, sizeof *n);
  snprintf(n->name, sizeof n->name, "%s", name);
  snprintf(n->hostport, sizeof n->hostport, "%s:1", name);
  troupe_system_opts so = quiet;
  so.name = name;
  if (troupe_system_create(&n->sys, &so) < 0) return -1;
  char listen[64];
  snprintf(listen, sizeof listen, "mem://%s/%s:1", net, name);
  troupe_remote_opts ro = {.listen = listen, .node_lost_ms = 60000};
  if (troupe_remote_start(n->sys, &ro) < 0) {
    fprintf(stderr, "remote_start: %s\n", troupe_errmsg());
    return -1;
  }
  troupe_cluster_opts o = *base;
  o.seeds = seeds;
  o.nseeds = nseeds;
  if (troupe_cluster_start(n->sys, &o) < 0) {
    fprintf(stderr, "cluster_start: %s\n", troupe_errmsg());
    return -1;
  }
  if (troupe_cluster_self(n->sys, n->addr, sizeof n->addr) < 0) return -1;
  return troupe_system_start(n->sys);
}

static void node_down(tnode *n) {
  if (!n->sys) return;
  troupe_system_stop(n->sys);
  troupe_system_wait(n->sys, 10000);
  troupe_system_destroy(n->sys);
  n->sys = NULL;
}

/* How many members this node sees with status st (0: any). */
static int count_status(troupe_system *sys, troupe_member_status st) {
  troupe_member ms[16];
  int n = troupe_cluster_members(sys, ms, 16);
  if (n < 0) return -1;
  int k = 0;
  for (int i = 0; i < n && i < 16; i++)
    if (!st || ms[i].status == st) k++;
  return k;
}

static int count_reachable_up(troupe_system *sys) {
  troupe_member ms[16];
  int n = troupe_cluster_members(sys, ms, 16);
  int k = 0;
  for (int i = 0; i < n && i < 16; i++)
    if (ms[i].status == TROUPE_MEMBER_UP && ms[i].reachable) k++;
  return k;
}

static bool all_up(tnode *ns, size_t n, int want) {
  for (size_t i = 0; i < n; i++) {
    if (!ns[i].sys) continue;
    if (count_status(ns[i].sys, TROUPE_MEMBER_UP) != want ||
        count_status(ns[i].sys, 0) != want ||
        !troupe_cluster_converged(ns[i].sys))
      return false;
  }
  return true;
}

static bool status_is(troupe_system *sys, const char *addr,
                      troupe_member_status st) {
  troupe_member_status s = 0;
  troupe_cluster_member_status(sys, addr, &s);
  return s == st;
}

/* ------------------------------------------------------------------ */
/* A subscriber counting events; a tick counter                        */

static atomic_int ev_up, ev_joined, ev_leader, ev_removed, ev_unreach,
    ev_self_removed, ticks;

static int sub_init(troupe_ctx *ctx, void *st, const void *arg) {
  (void)st;
  (void)arg;
  return troupe_cluster_subscribe(ctx);
}
static int sub_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)ctx;
  (void)st;
  if (msg->type != &TROUPE_T_CLUSTER_EVENT) return TROUPE_UNHANDLED;
  const troupe_cluster_event *e = msg->data;
  switch (e->kind) {
  case TROUPE_CLUSTER_MEMBER_UP: atomic_fetch_add(&ev_up, 1); break;
  case TROUPE_CLUSTER_MEMBER_JOINED: atomic_fetch_add(&ev_joined, 1); break;
  case TROUPE_CLUSTER_LEADER_CHANGED: atomic_fetch_add(&ev_leader, 1); break;
  case TROUPE_CLUSTER_MEMBER_REMOVED: atomic_fetch_add(&ev_removed, 1); break;
  case TROUPE_CLUSTER_UNREACHABLE: atomic_fetch_add(&ev_unreach, 1); break;
  case TROUPE_CLUSTER_SELF_REMOVED:
    atomic_fetch_add(&ev_self_removed, 1);
    break;
  default: break;
  }
  return 0;
}
static const troupe_behavior sub_b = {.name = "sub", .init = sub_init,
                                      .receive = sub_recv};

static atomic_int view_n;
static int ticker_init(troupe_ctx *ctx, void *st, const void *arg) {
  (void)st;
  (void)arg;
  return troupe__cluster_tick_subscribe(troupe_ctx_system(ctx),
                                        troupe_self(ctx));
}
static int ticker_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)st;
  if (msg->type != &TROUPE__T_CLUSTER_TICK) return TROUPE_UNHANDLED;
  troupe__cluster *c = troupe__cluster_get(troupe_ctx_system(ctx));
  if (c) {
    troupe_member m[4];
    atomic_store(&view_n, (int)troupe__cluster_view(c, m, 4));
    (void)troupe__cluster_now(c);
    (void)troupe__cluster_self(c);
  }
  atomic_fetch_add(&ticks, 1);
  return 0;
}
static const troupe_behavior ticker_b = {.name = "ticker", .init = ticker_init,
                                         .receive = ticker_recv};

/* ------------------------------------------------------------------ */

static void test_api_errors(void) {
  troupe_system *sys;
  troupe_system_opts so = quiet;
  so.name = "solo";
  TT_EQ_INT(troupe_system_create(&sys, &so), 0);
  troupe_member m[2];
  char buf[64];
  TT_EQ_INT(troupe_cluster_members(sys, m, 2), TROUPE_ESTATE);
  TT_EQ_INT(troupe_cluster_self(sys, buf, sizeof buf), TROUPE_ESTATE);
  TT_EQ_INT(troupe_cluster_tick(sys), TROUPE_ESTATE);
  TT_EQ_INT(troupe_cluster_start(NULL, NULL), TROUPE_EINVAL);
  const char *bad[] = {"http://x"};
  troupe_cluster_opts o = fast_opts();
  o.seeds = bad;
  o.nseeds = 1;
  TT_EQ_INT(troupe_cluster_start(sys, &o), TROUPE_EINVAL);
  o.seeds = NULL;
  TT_EQ_INT(troupe_cluster_start(sys, &o), TROUPE_EINVAL);
  o.nseeds = 0;
  o.sbr = TROUPE_SBR_STATIC_QUORUM;
  TT_EQ_INT(troupe_cluster_start(sys, &o), TROUPE_EINVAL);
  o.sbr = TROUPE_SBR_KEEP_MAJORITY;
  TT_EQ_INT(troupe_cluster_start(sys, &o), 0);
  TT_EQ_INT(troupe_cluster_start(sys, &o), TROUPE_ESTATE);
  TT_EQ_INT(troupe_cluster_self(sys, buf, sizeof buf), 13);
  TT_EQ_STR(buf, "troupe://solo");
  TT_EQ_INT(troupe_cluster_self(sys, buf, 4), TROUPE_ERANGE);
  TT_EQ_INT(troupe_cluster_join(sys, "nope"), TROUPE_EINVAL);
  TT_EQ_INT(troupe_cluster_down(sys, "troupe://x"), TROUPE_ENOENT);
  TT_EQ_INT(troupe_cluster_leave(sys, "troupe://x"), TROUPE_ENOENT);
  TT_EQ_INT(troupe_cluster_down(sys, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_cluster_leader(sys, buf, sizeof buf), TROUPE_ENOENT);
  TT_EQ_INT(troupe_cluster_tick(sys), TROUPE_ESTATE);  /* not on a clock */
  troupe_system_destroy(sys);
}

static void test_single_node(void) {
  troupe_cluster_opts o = fast_opts();
  const char *seeds[] = {"troupe://one@one:1"};
  tnode n;
  atomic_store(&ticks, 0);
  TT_EQ_INT(node_up(&n, "single", "one", &o, seeds, 1), 0);
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(n.sys, &ticker_b, NULL, &r), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(&n, 1, 1), WAIT_MS));
  char buf[TROUPE_ADDRESS_MAX];
  TT_ASSERT(troupe_cluster_leader(n.sys, buf, sizeof buf) > 0);
  TT_EQ_STR(buf, "troupe://one@one:1");
  TT_ASSERT(troupe_cluster_oldest(n.sys, buf, sizeof buf) > 0);
  TT_EQ_STR(buf, "troupe://one@one:1");
  troupe_member m;
  TT_EQ_INT(troupe_cluster_members(n.sys, &m, 1), 1);
  TT_EQ_INT(m.up_number, 1);
  TT_ASSERT(m.reachable);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&ticks) >= 3, WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&view_n) == 1, WAIT_MS));
  TT_EQ_INT(troupe_resolve_blocking(n.sys, "troupe://one@one:1/system/cluster",
                                    2000, &r), 0);
  node_down(&n);
}

static void test_single_node_mesh_less(void) {
  /* no remoting: the address is troupe://<name> */
  troupe_system *sys;
  troupe_system_opts so = quiet;
  so.name = "lone";
  TT_EQ_INT(troupe_system_create(&sys, &so), 0);
  troupe_cluster_opts o = fast_opts();
  const char *seeds[] = {"troupe://lone"};
  o.seeds = seeds;
  o.nseeds = 1;
  TT_EQ_INT(troupe_cluster_start(sys, &o), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  TT_ASSERT(TT_WAIT_UNTIL(count_status(sys, TROUPE_MEMBER_UP) == 1, WAIT_MS));
  troupe_system_stop(sys);
  troupe_system_wait(sys, 10000);
  troupe_system_destroy(sys);
}

static void start_n(tnode *ns, size_t n, const char *net,
                    const troupe_cluster_opts *o, int *rc) {
  static char seed[64];
  snprintf(seed, sizeof seed, "troupe://a@a:1");
  static const char *seeds[1];
  seeds[0] = seed;
  *rc = 0;
  for (size_t i = 0; i < n; i++) {
    char name[2] = {(char)('a' + i), 0};
    if (node_up(&ns[i], net, name, o, seeds, 1) < 0) *rc = -1;
  }
}

static void stop_all(tnode *ns, size_t n) {
  for (size_t i = 0; i < n; i++) node_down(&ns[i]);
}

static void test_three_nodes(void) {
  troupe_cluster_opts o = fast_opts();
  tnode ns[3];
  int rc;
  atomic_store(&ev_up, 0);
  atomic_store(&ev_leader, 0);
  start_n(ns, 3, "three", &o, &rc);
  TT_EQ_INT(rc, 0);
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(ns[2].sys, &sub_b, NULL, &r), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  for (int i = 0; i < 3; i++) {
    char buf[TROUPE_ADDRESS_MAX];
    TT_ASSERT(troupe_cluster_leader(ns[i].sys, buf, sizeof buf) > 0);
    TT_EQ_STR(buf, "troupe://a@a:1");
    TT_ASSERT(troupe_cluster_oldest(ns[i].sys, buf, sizeof buf) > 0);
    TT_EQ_STR(buf, "troupe://a@a:1");
  }
  troupe_member ms[3];
  TT_EQ_INT(troupe_cluster_members(ns[1].sys, ms, 3), 3);
  TT_EQ_STR(ms[0].address, "troupe://a@a:1");
  TT_EQ_INT(ms[0].up_number, 1);
  TT_ASSERT(ms[1].up_number >= 2 && ms[2].up_number >= 2 &&
            ms[1].up_number != ms[2].up_number);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&ev_up) >= 3, WAIT_MS));
  TT_ASSERT(atomic_load(&ev_leader) >= 1);
  stop_all(ns, 3);
}

static void test_leave(void) {
  troupe_cluster_opts o = fast_opts();
  tnode ns[3];
  int rc;
  atomic_store(&ev_self_removed, 0);
  start_n(ns, 3, "leave", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(ns[2].sys, &sub_b, NULL, &r), 0);
  TT_EQ_INT(troupe_cluster_leave(ns[2].sys, NULL), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 2, 2), WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(troupe__cluster_get(ns[2].sys) == NULL, WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&ev_self_removed) == 1, WAIT_MS));
  /* the system still runs; its daemon is gone */
  TT_EQ_INT(troupe_system_wait(ns[2].sys, 1), TROUPE_ETIMEDOUT);
  TT_EQ_INT(troupe_resolve_blocking(ns[2].sys,
                                    "troupe://c@c:1/system/cluster", 2000, &r),
            TROUPE_ENOENT);
  TT_EQ_INT(troupe_cluster_leave(ns[2].sys, NULL), TROUPE_ESTATE);
  /* leave of another member: b is asked by a */
  TT_EQ_INT(troupe_cluster_leave(ns[0].sys, "troupe://b@b:1"), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 1, 1), WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(troupe__cluster_get(ns[1].sys) == NULL, WAIT_MS));
  stop_all(ns, 3);
}

static void test_leader_leave(void) {
  troupe_cluster_opts o = fast_opts();
  tnode ns[3];
  int rc;
  start_n(ns, 3, "ll", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  TT_EQ_INT(troupe_cluster_leave(ns[0].sys, NULL), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns + 1, 2, 2), WAIT_MS));
  char buf[TROUPE_ADDRESS_MAX];
  TT_ASSERT(troupe_cluster_leader(ns[2].sys, buf, sizeof buf) > 0);
  TT_EQ_STR(buf, "troupe://b@b:1");
  TT_ASSERT(troupe_cluster_oldest(ns[2].sys, buf, sizeof buf) > 0);
  TT_ASSERT(strcmp(buf, "troupe://a@a:1") != 0);
  stop_all(ns, 3);
}

static void test_crash(void) {
  troupe_cluster_opts o = fast_opts();
  tnode ns[3];
  int rc;
  start_n(ns, 3, "crash", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  troupe__memnet *net = troupe__memnet_get("crash");
  uint64_t t0 = tt_now_ms();
  TT_EQ_INT(troupe__memnet_partition(net, "c:1", NULL), 0);
  node_down(&ns[2]);
  TT_ASSERT(TT_WAIT_UNTIL(count_reachable_up(ns[0].sys) == 2, WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 2, 2), WAIT_MS));
  printf("# crashed node removed after %" PRIu64 " ms\n", tt_now_ms() - t0);
  troupe__memnet_put(net);
  stop_all(ns, 3);
}

static void partition(troupe__memnet *net, const char *side_a,
                      const char *side_b) {
  for (const char *x = side_a; *x; x++)
    for (const char *y = side_b; *y; y++) {
      char a[8], b[8];
      snprintf(a, sizeof a, "%c:1", *x);
      snprintf(b, sizeof b, "%c:1", *y);
      troupe__memnet_partition(net, a, b);
    }
}

static void test_keep_majority(void) {
  troupe_cluster_opts o = fast_opts();
  tnode ns[5];
  int rc;
  start_n(ns, 5, "km", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 5, 5), WAIT_MS));
  troupe__memnet *net = troupe__memnet_get("km");
  partition(net, "ab", "cde");
  /* the minority downs itself: its systems stop */
  TT_EQ_INT(troupe_system_wait(ns[0].sys, WAIT_MS), 0);
  TT_EQ_INT(troupe_system_wait(ns[1].sys, WAIT_MS), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns + 2, 3, 3), WAIT_MS));
  char buf[TROUPE_ADDRESS_MAX];
  TT_ASSERT(troupe_cluster_leader(ns[2].sys, buf, sizeof buf) > 0);
  TT_EQ_STR(buf, "troupe://c@c:1");
  troupe__memnet_put(net);
  stop_all(ns, 5);
}

static void test_static_quorum(void) {
  troupe_cluster_opts o = fast_opts();
  o.sbr = TROUPE_SBR_STATIC_QUORUM;
  o.quorum_size = 2;
  tnode ns[3];
  int rc;
  start_n(ns, 3, "sq", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  troupe__memnet *net = troupe__memnet_get("sq");
  partition(net, "c", "ab");
  /* c alone is under the quorum: it downs itself; a and b stay */
  TT_EQ_INT(troupe_system_wait(ns[2].sys, WAIT_MS), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 2, 2), WAIT_MS));
  troupe__memnet_put(net);
  stop_all(ns, 3);
}

static void test_down_all(void) {
  troupe_cluster_opts o = fast_opts();
  o.sbr = TROUPE_SBR_DOWN_ALL;
  tnode ns[3];
  int rc;
  start_n(ns, 3, "da", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  troupe__memnet *net = troupe__memnet_get("da");
  partition(net, "c", "ab");
  for (int i = 0; i < 3; i++)
    TT_EQ_INT(troupe_system_wait(ns[i].sys, WAIT_MS), 0);
  troupe__memnet_put(net);
  stop_all(ns, 3);
}

static void test_operator_down(void) {
  troupe_cluster_opts o = fast_opts();
  o.sbr = TROUPE_SBR_OFF;
  tnode ns[3];
  int rc;
  start_n(ns, 3, "od", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  TT_EQ_INT(troupe_cluster_down(ns[0].sys, "troupe://b@b:1"), 0);
  /* b learns it is down and stops its system; a and c remove it */
  TT_EQ_INT(troupe_system_wait(ns[1].sys, WAIT_MS), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 1, 2) && all_up(ns + 2, 1, 2), WAIT_MS));
  stop_all(ns, 3);
}

static void test_restart_rejoin(void) {
  troupe_cluster_opts o = fast_opts();
  tnode ns[3];
  int rc;
  start_n(ns, 3, "rs", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  troupe_member ms[3];
  TT_EQ_INT(troupe_cluster_members(ns[0].sys, ms, 3), 3);
  uint64_t old_uid = ms[2].uid;
  troupe__memnet *net = troupe__memnet_get("rs");
  TT_EQ_INT(troupe__memnet_partition(net, "c:1", NULL), 0);
  node_down(&ns[2]);
  TT_EQ_INT(troupe__memnet_heal(net, "c:1", NULL), 0);
  static const char *seeds[] = {"troupe://a@a:1"};
  TT_EQ_INT(node_up(&ns[2], "rs", "c", &o, seeds, 1), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  TT_EQ_INT(troupe_cluster_members(ns[0].sys, ms, 3), 3);
  TT_ASSERT(ms[2].uid != old_uid);
  TT_ASSERT(ms[2].up_number >= 4);
  troupe__memnet_put(net);
  stop_all(ns, 3);
}

static void test_malformed_gossip(void) {
  troupe_cluster_opts o = fast_opts();
  tnode ns[2];
  int rc;
  start_n(ns, 2, "mal", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 2, 2), WAIT_MS));
  troupe_ref d;
  TT_EQ_INT(troupe_resolve_blocking(ns[0].sys, "troupe://a@a:1/system/cluster",
                                    2000, &d), 0);
  troupe__cluster_gossip g;
  memset(&g, 0, sizeof g);
  TT_EQ_INT(troupe_tell(d, &TROUPE__T_CLUSTER_GOSSIP, &g, TROUPE_REF_NONE), 0);
  /* a member with an impossible status, a sender that is not an address */
  typedef struct { char *address; uint64_t uid; uint32_t status, up; } wm;
  wm bad = {(char *)"troupe://z@z:1", 7, 99, 0};
  g.from = (char *)"troupe://z@z:1";
  g.from_uid = 7;
  g.members = (troupe_vec){&bad, 1};
  TT_EQ_INT(troupe_tell(d, &TROUPE__T_CLUSTER_GOSSIP, &g, TROUPE_REF_NONE), 0);
  g.from = (char *)"not an address";
  bad.status = TROUPE_MEMBER_UP;
  TT_EQ_INT(troupe_tell(d, &TROUPE__T_CLUSTER_GOSSIP, &g, TROUPE_REF_NONE), 0);
  char *seen[] = {NULL};
  g.from = (char *)"troupe://z@z:1";
  g.seen = (troupe_vec){seen, 1};
  TT_EQ_INT(troupe_tell(d, &TROUPE__T_CLUSTER_GOSSIP, &g, TROUPE_REF_NONE), 0);
  /* the cluster goes on: a third node still joins */
  static const char *seeds[] = {"troupe://a@a:1"};
  tnode c;
  TT_EQ_INT(node_up(&c, "mal", "c", &o, seeds, 1), 0);
  tnode all[3] = {ns[0], ns[1], c};
  TT_ASSERT(TT_WAIT_UNTIL(all_up(all, 3, 3), WAIT_MS));
  TT_EQ_INT(count_status(ns[0].sys, 0), 3);
  node_down(&c);
  stop_all(ns, 2);
}

/* ------------------------------------------------------------------ */
/* Mesh workers                                                        */

static _Atomic(troupe_system *) mesh_sys[3];
static int mesh_init(troupe_system *sys, uint32_t index, void *data) {
  (void)data;
  troupe_cluster_opts o = fast_opts();
  static const char *seeds[] = {"troupe://w0"};
  o.seeds = seeds;
  o.nseeds = 1;
  int rc = troupe_cluster_start(sys, &o);
  if (rc == 0 && index < 3) atomic_store(&mesh_sys[index], sys);
  return rc;
}

static bool mesh_formed(void) {
  for (int i = 0; i < 3; i++) {
    troupe_system *s = atomic_load(&mesh_sys[i]);
    if (!s || count_status(s, TROUPE_MEMBER_UP) != 3 ||
        !troupe_cluster_converged(s))
      return false;
  }
  return true;
}

static void test_mesh(void) {
  troupe_mesh *m;
  troupe_mesh_opts mo = {.workers = 3, .init = mesh_init, .system = &quiet};
  TT_EQ_INT(troupe_mesh_create(&m, &mo), 0);
  TT_EQ_INT(troupe_mesh_start(m), 0);
  TT_ASSERT(TT_WAIT_UNTIL(mesh_formed(), WAIT_MS));
  char buf[TROUPE_ADDRESS_MAX];
  TT_ASSERT(troupe_cluster_leader(atomic_load(&mesh_sys[2]), buf,
                                  sizeof buf) > 0);
  TT_EQ_STR(buf, "troupe://w0");
  troupe_mesh_destroy(m);
  for (int i = 0; i < 3; i++) atomic_store(&mesh_sys[i], NULL);
}

/* ------------------------------------------------------------------ */
/* TCP                                                                 */

static void test_tcp(void) {
  troupe_system *s[3] = {NULL, NULL, NULL};
  char seed[TROUPE_ADDRESS_MAX];
  const char *seeds[] = {seed};
  uint64_t t0 = tt_now_ms();
  for (int i = 0; i < 3; i++) {
    troupe_system_opts so = quiet;
    char name[8];
    snprintf(name, sizeof name, "t%d", i);
    so.name = name;
    TT_EQ_INT(troupe_system_create(&s[i], &so), 0);
    troupe_remote_opts ro = {.listen = "tcp://127.0.0.1:0"};
    if (troupe_remote_start(s[i], &ro) < 0) {
      for (int j = 0; j <= i; j++) troupe_system_destroy(s[j]);
      TT_SKIP("no TCP listen: %s", troupe_errmsg());
    }
    if (i == 0) {
      char a[128];
      TT_ASSERT(troupe_remote_address(s[0], a, sizeof a) > 0);
      snprintf(seed, sizeof seed, "troupe://t0@%s", a);
    }
    troupe_cluster_opts o = fast_opts();
    o.seeds = seeds;
    o.nseeds = 1;
    TT_EQ_INT(troupe_cluster_start(s[i], &o), 0);
    TT_EQ_INT(troupe_system_start(s[i]), 0);
  }
  bool ok = TT_WAIT_UNTIL(count_status(s[0], TROUPE_MEMBER_UP) == 3 &&
                              count_status(s[1], TROUPE_MEMBER_UP) == 3 &&
                              count_status(s[2], TROUPE_MEMBER_UP) == 3 &&
                              troupe_cluster_converged(s[0]) &&
                              troupe_cluster_converged(s[1]) &&
                              troupe_cluster_converged(s[2]),
                          WAIT_MS);
  uint64_t dt = tt_now_ms() - t0;
  printf("# 3-node TCP cluster formed in %" PRIu64 " ms\n", dt);
  for (int i = 0; i < 3; i++) {
    troupe_system_stop(s[i]);
    troupe_system_wait(s[i], 10000);
    troupe_system_destroy(s[i]);
  }
  TT_ASSERT(ok);
}

/* ------------------------------------------------------------------ */
/* Clock mode: nothing happens without troupe_cluster_tick            */

static atomic_uint_fast64_t clock_ms;
static uint64_t test_clock(void *data) {
  (void)data;
  return atomic_load(&clock_ms);
}

static void test_clock_mode(void) {
  troupe_cluster_opts o = fast_opts();
  o.clock = test_clock;
  atomic_store(&clock_ms, 1000);
  tnode ns[2];
  static const char *seeds[] = {"troupe://a@a:1"};
  TT_EQ_INT(node_up(&ns[0], "clk", "a", &o, seeds, 1), 0);
  TT_EQ_INT(node_up(&ns[1], "clk", "b", &o, seeds, 1), 0);
  atomic_store(&ticks, 0);
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(ns[0].sys, &ticker_b, NULL, &r), 0);
  /* no timers: without ticks nobody forms anything */
  troupe_ref d;
  TT_EQ_INT(troupe_resolve_blocking(ns[0].sys, "troupe://a@a:1/system/cluster",
                                    2000, &d), 0);
  TT_EQ_INT(count_status(ns[0].sys, 0), 0);
  TT_EQ_INT(atomic_load(&ticks), 0);
  TT_EQ_INT(troupe_cluster_tick(NULL), TROUPE_EINVAL);
  bool ok = false;
  for (int i = 0; i < 400 && !ok; i++) {
    atomic_fetch_add(&clock_ms, 25);
    TT_EQ_INT(troupe_cluster_tick(ns[0].sys), 0);
    TT_EQ_INT(troupe_cluster_tick(ns[1].sys), 0);
    ok = TT_WAIT_UNTIL(all_up(ns, 2, 2), 10);
  }
  TT_ASSERT(ok);
  TT_ASSERT(atomic_load(&ticks) >= 1);
  stop_all(ns, 2);
}

/* ------------------------------------------------------------------ */
/* Leave waits for the leave blockers (sharding regions)              */

static atomic_int prepared;
static atomic_bool release_blocker;
static int blocker_init(troupe_ctx *ctx, void *st, const void *arg) {
  (void)st;
  (void)arg;
  return troupe__cluster_leave_blocker_add(troupe_ctx_system(ctx),
                                           troupe_self(ctx));
}
static int blocker_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)st;
  if (msg->type == &TROUPE__T_CLUSTER_PREPARE_LEAVE) {
    atomic_fetch_add(&prepared, 1);
    /* answer later (a hand-off takes a while): poll on the ticks */
    return troupe__cluster_tick_subscribe(troupe_ctx_system(ctx),
                                          troupe_self(ctx));
  }
  if (msg->type == &TROUPE__T_CLUSTER_TICK) {
    if (!atomic_load(&release_blocker)) return 0;
    troupe_ref d = troupe__cluster_daemon(troupe_ctx_system(ctx));
    return troupe_send(ctx, d, &TROUPE__T_CLUSTER_LEAVE_READY, NULL);
  }
  return TROUPE_UNHANDLED;
}
static const troupe_behavior blocker_b = {.name = "blocker",
                                          .init = blocker_init,
                                          .receive = blocker_recv};

static void test_leave_blocker(void) {
  troupe_cluster_opts o = fast_opts();
  tnode ns[2];
  int rc;
  atomic_store(&prepared, 0);
  atomic_store(&release_blocker, false);
  start_n(ns, 2, "lb", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 2, 2), WAIT_MS));
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(ns[1].sys, &blocker_b, NULL, &r), 0);
  TT_EQ_INT(troupe_cluster_leave(ns[1].sys, NULL), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&prepared) == 1, WAIT_MS));
  /* still up while the blocker has not answered */
  TT_ASSERT(!TT_WAIT_UNTIL(!status_is(ns[0].sys, "troupe://b@b:1",
                                      TROUPE_MEMBER_UP), 300));
  atomic_store(&release_blocker, true);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 1, 1), WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(troupe__cluster_get(ns[1].sys) == NULL, WAIT_MS));
  stop_all(ns, 2);
}

/* ------------------------------------------------------------------ */
/* Defaults: a crashed node is downed and removed well within 10 s     */

static void test_crash_defaults(void) {
  troupe_cluster_opts o;
  memset(&o, 0, sizeof o);
  tnode ns[3];
  int rc;
  start_n(ns, 3, "dflt", &o, &rc);
  TT_EQ_INT(rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  troupe__memnet *net = troupe__memnet_get("dflt");
  uint64_t t0 = tt_now_ms();
  TT_EQ_INT(troupe__memnet_partition(net, "c:1", NULL), 0);
  node_down(&ns[2]);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 2, 2), 10000));
  uint64_t dt = tt_now_ms() - t0;
  printf("# defaults: crashed node removed after %" PRIu64 " ms\n", dt);
  TT_ASSERT(dt < 10000);
  troupe__memnet_put(net);
  stop_all(ns, 3);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  TT_RUN(test_api_errors);
  TT_RUN(test_single_node);
  TT_RUN(test_single_node_mesh_less);
  TT_RUN(test_three_nodes);
  TT_RUN(test_leave);
  TT_RUN(test_leader_leave);
  TT_RUN(test_crash);
  TT_RUN(test_keep_majority);
  TT_RUN(test_static_quorum);
  TT_RUN(test_down_all);
  TT_RUN(test_operator_down);
  TT_RUN(test_restart_rejoin);
  TT_RUN(test_malformed_gossip);
  TT_RUN(test_mesh);
  TT_RUN(test_tcp);
  TT_RUN(test_clock_mode);
  TT_RUN(test_leave_blocker);
  TT_RUN(test_crash_defaults);
  return tt_done();
}
