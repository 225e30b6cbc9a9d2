/*
 * test_sharding.c: cluster sharding. Unit tests of troupe_shard_of and the
 * coordinator's planning; then clusters of systems on the in-memory
 * transport (mem://NET/x:1), each on its own thread, with short cluster
 * intervals: routing from every node, ask through regions, persistent
 * state across moves, rebalance on join, graceful leave, crash failover,
 * passivation, remember-entities, buffer overflow, bad ids, proxy-only.
 * Every wait is a bounded wait on a condition. Single writer: every
 * scenario ends with no journal conflict and no EBUSY (stats.conflicts).
 */
#include "tt.h"
#include "cluster/internal.h"
#include "cluster/sharding_internal.h"
#include "troupe/cluster.h"
#include "troupe/sharding.h"

#include <inttypes.h>
#include <stdatomic.h>

#define WAIT_MS 15000

static const troupe_system_opts quiet = {.log_level = TROUPE_LOG_ERROR + 1,
                                         .log_level_set = true};

/* ------------------------------------------------------------------ */
/* Messages and entities                                               */

typedef struct cmd {
  char *id;
  int64_t amount;
} cmd;
static const troupe_field cmd_fields[] = {TROUPE_FIELD(cmd, id, STRING),
                                          TROUPE_FIELD(cmd, amount, I64)};
static troupe_type T_ADD = TROUPE_TYPE("ts.Add", 1, cmd, cmd_fields);
static troupe_type T_GET = TROUPE_TYPE("ts.Get", 1, cmd, cmd_fields);
static troupe_type T_PASS = TROUPE_TYPE("ts.Passivate", 1, cmd, cmd_fields);
static troupe_type T_BAD = TROUPE_TYPE("ts.Bad", 1, cmd, cmd_fields);

typedef struct val {
  int64_t total;
  int64_t starts;   /* plain: always 1; persistent: events */
} val;
static const troupe_field val_fields[] = {TROUPE_FIELD(val, total, I64),
                                          TROUPE_FIELD(val, starts, I64)};
static troupe_type T_VAL = TROUPE_TYPE("ts.Val", 1, val, val_fields);

typedef struct added {
  int64_t amount;
} added;
static const troupe_field added_fields[] = {TROUPE_FIELD(added, amount, I64)};
static troupe_type T_ADDED = TROUPE_TYPE("ts.Added", 1, added, added_fields);
typedef struct cstate {
  int64_t total;
  int64_t events;
} cstate;
static const troupe_field cstate_fields[] = {
  TROUPE_FIELD(cstate, total, I64), TROUPE_FIELD(cstate, events, I64)};
static troupe_type T_CSTATE = TROUPE_TYPE("ts.State", 1, cstate,
                                          cstate_fields);

static int register_types(void) {
  troupe_type *all[] = {&T_ADD, &T_GET, &T_PASS, &T_BAD, &T_VAL, &T_ADDED,
                        &T_CSTATE};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
    int rc = troupe_type_register(all[i]);
    if (rc < 0 && rc != TROUPE_EEXIST) return rc;
  }
  return 0;
}

static int extract(const troupe_msg *m, char *buf, size_t size) {
  if (m->type != &T_ADD && m->type != &T_GET && m->type != &T_PASS)
    return -1;
  const cmd *c = m->data;
  if (!c->id) return -1;
  size_t n = strlen(c->id);
  if (n + 1 > size) return -1;
  memcpy(buf, c->id, n + 1);
  return (int)n;
}

/* plain actor: a counter in memory */
static atomic_int plain_inits;
static int plain_init(troupe_ctx *ctx, void *st, const void *arg) {
  (void)ctx; (void)st;
  TT_CHECK(arg && strlen(arg) > 0);
  atomic_fetch_add(&plain_inits, 1);
  return 0;
}
static int plain_recv(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  int64_t *total = st;
  if (m->type == &T_ADD) {
    *total += ((const cmd *)m->data)->amount;
    if (m->sender.uid) {
      val v = {*total, 1};
      return troupe_reply(ctx, &T_VAL, &v);
    }
    return 0;
  }
  if (m->type == &T_GET) {
    val v = {*total, 1};
    return troupe_reply(ctx, &T_VAL, &v);
  }
  if (m->type == &T_PASS) return troupe_sharding_passivate(ctx);
  return TROUPE_UNHANDLED;
}
static const troupe_behavior plain_b = {.name = "counter",
                                        .state_size = sizeof(int64_t),
                                        .init = plain_init,
                                        .receive = plain_recv};

/* persistent: a counter of events */
static int p_command(troupe_entity *e, const void *st, const troupe_msg *m) {
  const cstate *s = st;
  if (m->type == &T_ADD) {
    added a = {((const cmd *)m->data)->amount};
    int rc = troupe_entity_persist(e, &T_ADDED, &a, 0);
    if (rc < 0) return rc;
    if (m->sender.uid) {
      val v = {s->total + a.amount, s->events + 1};
      return troupe_entity_reply(e, &T_VAL, &v);
    }
    return 0;
  }
  if (m->type == &T_GET) {
    val v = {s->total, s->events};
    return troupe_entity_reply(e, &T_VAL, &v);
  }
  if (m->type == &T_PASS)
    return troupe_sharding_passivate(troupe_entity_ctx(e));
  return TROUPE_UNHANDLED;
}
static int p_apply(void *st, const troupe_type *t, const void *ev) {
  cstate *s = st;
  if (t != &T_ADDED) return TROUPE_ETYPE;
  s->total += ((const added *)ev)->amount;
  s->events++;
  return 0;
}
/* durable state: the same counter stored whole */
static int d_command(troupe_durable *d, const void *st, const troupe_msg *m) {
  const cstate *s = st;
  if (m->type == &T_ADD) {
    cstate n = *s;
    n.total += ((const cmd *)m->data)->amount;
    n.events++;
    int rc = troupe_durable_persist(d, &n);
    if (rc < 0) return rc;
    val v = {n.total, n.events};
    return m->sender.uid ? troupe_durable_reply(d, &T_VAL, &v) : 0;
  }
  if (m->type == &T_GET) {
    val v = {s->total, s->events};
    return troupe_durable_reply(d, &T_VAL, &v);
  }
  return TROUPE_UNHANDLED;
}
static const troupe_durable_def ddef = {
  .type_name = "dcounter", .state_type = &T_CSTATE, .command = d_command};

static const troupe_entity_def pdef = {
  .type_name = "tcounter", .state_type = &T_CSTATE,
  .command = p_command, .apply = p_apply};

/* ------------------------------------------------------------------ */
/* Unit tests                                                          */

static void test_shard_of(void) {
  /* FNV-1a 64 modulo shards: fixed forever */
  TT_EQ_INT(troupe_shard_of("a", 1, 128), 12);
  TT_EQ_INT(troupe_shard_of("acct-1", 6, 128), 124);
  TT_EQ_INT(troupe_shard_of("hello", 5, 128), 11);
  TT_EQ_INT(troupe_shard_of("hello", 5, 10), 1);
  TT_EQ_INT(troupe_shard_of("", 0, 128), 37);
  TT_ASSERT(troupe__fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
  TT_EQ_INT(troupe_shard_of("x", 1, 0), 0);
  TT_EQ_INT(troupe_shard_of(NULL, 0, 5), 0);
}

static void test_pick_region(void) {
  troupe__shregion r[3] = {{"troupe://b", 2, false, false},
                           {"troupe://a", 2, false, false},
                           {"troupe://c", 1, false, true}};
  TT_EQ_INT(troupe__shard_pick_region(r, 3), 1);   /* tie: lowest address */
  r[0].shards = 1;
  TT_EQ_INT(troupe__shard_pick_region(r, 3), 0);
  r[0].proxy = r[1].leaving = true;
  TT_EQ_INT(troupe__shard_pick_region(r, 3), -1);  /* nobody eligible */
  TT_EQ_INT(troupe__shard_pick_region(r, 0), -1);
}

static void test_plan_rebalance(void) {
  enum { N = 12 };
  int32_t owner[N];
  uint8_t moving[N] = {0};
  uint32_t out[N];
  troupe__shregion r[3] = {{"troupe://a", 0, false, false},
                           {"troupe://b", 0, false, false},
                           {"troupe://c", 0, false, false}};
  /* all on a, b and c new: at most 3 move, all from a */
  for (int s = 0; s < N; s++) owner[s] = 0;
  size_t n = troupe__shard_plan_rebalance(owner, moving, N, r, 3, 1, 3, out);
  TT_EQ_INT(n, 3);
  TT_EQ_INT(out[0], 0);
  TT_EQ_INT(out[1], 1);
  TT_EQ_INT(out[2], 2);
  /* two in flight already: one more */
  moving[0] = moving[1] = 1;
  n = troupe__shard_plan_rebalance(owner, moving, N, r, 3, 1, 3, out);
  TT_EQ_INT(n, 1);
  TT_EQ_INT(out[0], 2);
  memset(moving, 0, sizeof moving);
  /* balanced within the threshold: nothing */
  for (int s = 0; s < N; s++) owner[s] = s % 3;
  owner[0] = 1;   /* a 3, b 5, c 4 */
  TT_EQ_INT(troupe__shard_plan_rebalance(owner, moving, N, r, 3, 2, 3, out),
            0);
  n = troupe__shard_plan_rebalance(owner, moving, N, r, 3, 1, 3, out);
  TT_EQ_INT(n, 1);                 /* 5 vs 3: one moves from b */
  TT_EQ_INT(owner[out[0]], 1);
  /* a leaving region gives everything away, bounded */
  for (int s = 0; s < N; s++) owner[s] = s % 3;
  r[2].leaving = true;
  n = troupe__shard_plan_rebalance(owner, moving, N, r, 3, 1, 10, out);
  TT_EQ_INT(n, 4);
  for (size_t i = 0; i < n; i++) TT_EQ_INT(owner[out[i]], 2);
  n = troupe__shard_plan_rebalance(owner, moving, N, r, 3, 1, 2, out);
  TT_EQ_INT(n, 2);
  /* unallocated shards are not moved */
  for (int s = 0; s < N; s++) owner[s] = -1;
  r[2].leaving = false;
  TT_EQ_INT(troupe__shard_plan_rebalance(owner, moving, N, r, 3, 1, 3, out),
            0);
}

static void test_start_errors(void) {
  troupe_system *sys;
  troupe_system_opts so = quiet;
  so.name = "noclu";
  TT_EQ_INT(troupe_system_create(&sys, &so), 0);
  troupe_sharding_def d = {.type_name = "x", .extract_id = extract,
                           .behavior = &plain_b};
  troupe_ref r;
  TT_EQ_INT(troupe_sharding_start(sys, &d, &r), TROUPE_ESTATE);
  TT_EQ_INT(troupe_sharding_start(NULL, &d, &r), TROUPE_EINVAL);
  d.type_name = "bad/name";
  TT_EQ_INT(troupe_sharding_start(sys, &d, &r), TROUPE_EINVAL);
  d.type_name = "x";
  d.extract_id = NULL;
  TT_EQ_INT(troupe_sharding_start(sys, &d, &r), TROUPE_EINVAL);
  d.extract_id = extract;
  d.entity = &pdef;   /* two kinds */
  TT_EQ_INT(troupe_sharding_start(sys, &d, &r), TROUPE_EINVAL);
  d.behavior = NULL;  /* entity without persistence */
  TT_EQ_INT(troupe_sharding_start(sys, &d, &r), TROUPE_EINVAL);
  TT_EQ_INT(troupe_sharding_region(sys, "x", &r), TROUPE_ENOENT);
  troupe_sharding_stats st;
  TT_EQ_INT(troupe_sharding_stats_get(sys, "x", &st), TROUPE_ENOENT);
  troupe_system_destroy(sys);
}

/* ------------------------------------------------------------------ */
/* Clusters                                                            */

typedef struct tnode {
  troupe_system *sys;
  troupe_ref region;
  char addr[TROUPE_ADDRESS_MAX];
  char name[16];
} tnode;

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

static troupe_journal *journal;
static troupe_state_store *states;
static troupe_persistence *persist;

static void open_store(void) {
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  TT_CHECK(troupe_journal_open("memory:", &so, &journal) == 0);
  TT_CHECK(troupe_persistence_create(&persist, journal, NULL) == 0);
  TT_CHECK(troupe_state_store_open("memory:", &so, &states) == 0);
  TT_CHECK(troupe_persistence_set_state_store(persist, states) == 0);
}

static void close_store(void) {
  troupe_persistence_destroy(persist);
  persist = NULL;
  troupe_journal_close(journal);
  journal = NULL;
  troupe_state_store_close(states);
  states = NULL;
}

/* Node `name` on net, seeded by the first node "a"; starts def (a copy
 * with proxy_only set when proxy). */
static int node_up(tnode *n, const char *net, const char *name,
                   const troupe_sharding_def *def, bool proxy) {
  memset(n, 0, sizeof *n);
  snprintf(n->name, sizeof n->name, "%s", name);
  troupe_system_opts so = quiet;
  if (getenv("TS_LOG")) so.log_level = TROUPE_LOG_INFO;
  char sname[32];
  snprintf(sname, sizeof sname, "%s%s", net, name);
  so.name = sname;
  if (troupe_system_create(&n->sys, &so) < 0) return -1;
  char listen[64], seed[64];
  snprintf(listen, sizeof listen, "mem://%s/%s:1", net, sname);
  troupe_remote_opts ro = {.listen = listen, .node_lost_ms = 60000};
  if (troupe_remote_start(n->sys, &ro) < 0) return -1;
  troupe_cluster_opts o = fast_opts();
  snprintf(seed, sizeof seed, "troupe://%sa@%sa:1", net, net);
  const char *seeds[] = {seed};
  o.seeds = seeds;
  o.nseeds = 1;
  if (troupe_cluster_start(n->sys, &o) < 0) {
    fprintf(stderr, "cluster_start: %s\n", troupe_errmsg());
    return -1;
  }
  if (troupe_cluster_self(n->sys, n->addr, sizeof n->addr) < 0) return -1;
  troupe_sharding_def d = *def;
  d.proxy_only = proxy;
  if (troupe_sharding_start(n->sys, &d, &n->region) < 0) {
    fprintf(stderr, "sharding_start: %s\n", troupe_errmsg());
    return -1;
  }
  return troupe_system_start(n->sys);
}

static void node_down(tnode *n) {
  if (!n->sys) return;
  troupe_system_stop(n->sys);
  troupe_system_wait(n->sys, 10000);
  troupe_system_destroy(n->sys);
  n->sys = NULL;
}

static int count_up(troupe_system *sys) {
  troupe_member ms[16];
  int n = troupe_cluster_members(sys, ms, 16);
  int k = 0;
  for (int i = 0; i < n && i < 16; i++)
    if (ms[i].status == TROUPE_MEMBER_UP) k++;
  return n == k ? k : -1;
}

static bool all_up(tnode *ns, size_t n, int want) {
  for (size_t i = 0; i < n; i++)
    if (ns[i].sys && (count_up(ns[i].sys) != want ||
                      !troupe_cluster_converged(ns[i].sys)))
      return false;
  return true;
}

static troupe_sharding_stats stats(tnode *n, const char *type) {
  troupe_sharding_stats s;
  memset(&s, 0, sizeof s);
  if (n->sys) troupe_sharding_stats_get(n->sys, type, &s);
  return s;
}

static uint64_t sum_stat(tnode *ns, size_t n, const char *type,
                         size_t field) {
  uint64_t t = 0;
  for (size_t i = 0; i < n; i++) {
    if (!ns[i].sys) continue;
    troupe_sharding_stats s = stats(&ns[i], type);
    if (field == 0) t += s.entities;
    else if (field == 1) t += s.shards;
    else if (field == 2) t += s.conflicts;
    else if (field == 3) t += s.dropped;
    else if (field == 4) t += s.passivated;
  }
  return t;
}
enum { F_ENTITIES = 0, F_SHARDS, F_CONFLICTS, F_DROPPED, F_PASSIVATED };

/* Ask `id` something through n's region; returns the reply's total or
 * INT64_MIN. */
static int64_t ask(tnode *n, const troupe_type *t, const char *id,
                   int64_t amount, int64_t *events) {
  cmd c = {(char *)id, amount};
  troupe_reply_msg r;
  int rc = troupe_ask_blocking(n->sys, n->region, t, &c, 3000, &r);
  if (rc < 0) return INT64_MIN;
  int64_t v = INT64_MIN;
  if (r.type == &T_VAL) {
    v = ((val *)r.data)->total;
    if (events) *events = ((val *)r.data)->starts;
  }
  troupe_reply_free(&r);
  return v;
}

static int tell(tnode *n, const char *id, int64_t amount) {
  cmd c = {(char *)id, amount};
  return troupe_tell(n->region, &T_ADD, &c, TROUPE_REF_NONE);
}

/* Wait until every id's total is `want` (asked through node n). */
static bool totals_are(tnode *n, int nids, const int64_t *want) {
  for (int i = 0; i < nids; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    if (ask(n, &T_GET, id, 0, NULL) != want[i]) return false;
  }
  return true;
}

static bool shards_all_allocated(tnode *ns, size_t n, const char *type,
                                 uint32_t nshards) {
  return sum_stat(ns, n, type, F_SHARDS) == nshards;
}

/* ------------------------------------------------------------------ */

static troupe_sharding_def plain_def(const char *type) {
  troupe_sharding_def d;
  memset(&d, 0, sizeof d);
  d.type_name = type;
  d.shards = 16;
  d.extract_id = extract;
  d.behavior = &plain_b;
  d.handoff_timeout_ms = 3000;
  return d;
}

static troupe_sharding_def persistent_def(const char *type) {
  troupe_sharding_def d = plain_def(type);
  d.behavior = NULL;
  d.entity = &pdef;
  d.persistence = persist;
  return d;
}

/* a and b host the same number of shards (within one), and the proxy c
 * sees every hosted shard at its home: no move in flight. */
static bool settled(tnode *ns, const char *type) {
  troupe_sharding_stats a = stats(&ns[0], type), b = stats(&ns[1], type);
  uint32_t sh[64];
  int na = troupe_sharding_shards_of(ns[2].sys, type, ns[0].addr, sh, 64);
  int nb = troupe_sharding_shards_of(ns[2].sys, type, ns[1].addr, sh, 64);
  int d = (int)a.shards - (int)b.shards;
  return d >= -1 && d <= 1 && a.shards > 0 &&
         na == (int)a.shards && nb == (int)b.shards;
}

/* Plain entities reached from every node; asks answered; a proxy node
 * hosts nothing; a bad id is a dead letter. */
static void test_routing_proxy(void) {
  tnode ns[3];
  troupe_sharding_def d = plain_def("counter");
  TT_EQ_INT(node_up(&ns[0], "rt", "a", &d, false), 0);
  TT_EQ_INT(node_up(&ns[1], "rt", "b", &d, false), 0);
  TT_EQ_INT(node_up(&ns[2], "rt", "c", &d, true), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  enum { IDS = 30 };
  /* plain entities lose their state when their shard moves: let the
   * first allocations settle (b may register after a got everything) */
  for (int i = 0; i < IDS; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    TT_ASSERT(ask(&ns[2], &T_GET, id, 0, NULL) >= 0);
  }
  TT_ASSERT(TT_WAIT_UNTIL(settled(ns, "counter"), WAIT_MS));
  for (int i = 0; i < IDS; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    TT_ASSERT(ask(&ns[2], &T_ADD, id, -ask(&ns[2], &T_GET, id, 0, NULL),
                  NULL) == 0);
  }
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < IDS; i++) {
      char id[32];
      snprintf(id, sizeof id, "e%d", i);
      TT_EQ_INT(ask(&ns[round], &T_ADD, id, 1, NULL), round + 1);
    }
  for (int i = 0; i < IDS; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    for (int k = 0; k < 3; k++) TT_EQ_INT(ask(&ns[k], &T_GET, id, 0, NULL), 3);
  }
  TT_ASSERT(TT_WAIT_UNTIL(sum_stat(ns, 3, "counter", F_ENTITIES) == IDS,
                          WAIT_MS));
  TT_EQ_INT(stats(&ns[2], "counter").entities, 0);
  TT_EQ_INT(stats(&ns[2], "counter").shards, 0);
  TT_ASSERT(TT_WAIT_UNTIL(stats(&ns[2], "counter").forwarded >= IDS * 2,
                          WAIT_MS));
  /* the shard table as seen from the proxy */
  uint32_t sh[16];
  int na = troupe_sharding_shards_of(ns[2].sys, "counter", ns[0].addr, sh, 16);
  int nb = troupe_sharding_shards_of(ns[2].sys, "counter", ns[1].addr, sh, 16);
  TT_ASSERT(na >= 0 && nb >= 0 && na + nb > 0);
  TT_EQ_INT(troupe_sharding_shards_of(ns[2].sys, "counter", ns[2].addr, sh,
                                      16), 0);
  /* a message without an id */
  cmd bad = {"x", 1};
  uint64_t dropped = stats(&ns[1], "counter").dropped;
  TT_EQ_INT(troupe_tell(ns[1].region, &T_BAD, &bad, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(stats(&ns[1], "counter").dropped == dropped + 1,
                          WAIT_MS));
  troupe_ref r;
  TT_EQ_INT(troupe_sharding_region(ns[0].sys, "counter", &r), 0);
  TT_ASSERT(troupe_ref_eq(r, ns[0].region));
  TT_EQ_INT(sum_stat(ns, 3, "counter", F_CONFLICTS), 0);
  for (int i = 2; i >= 0; i--) node_down(&ns[i]);
}

/* Persistent entities: state kept while shards move to a joining node;
 * messages told during the join all arrive; then a graceful leave. */
static void test_join_and_leave(void) {
  open_store();
  tnode ns[4];
  memset(ns, 0, sizeof ns);
  troupe_sharding_def d = persistent_def("acct");
  TT_EQ_INT(node_up(&ns[0], "jl", "a", &d, false), 0);
  TT_EQ_INT(node_up(&ns[1], "jl", "b", &d, false), 0);
  TT_EQ_INT(node_up(&ns[2], "jl", "c", &d, false), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  enum { IDS = 40 };
  int64_t want[IDS] = {0};
  for (int i = 0; i < IDS; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    TT_EQ_INT(ask(&ns[i % 3], &T_ADD, id, 1, NULL), 1);
    want[i] = 1;
  }
  TT_ASSERT(TT_WAIT_UNTIL(shards_all_allocated(ns, 3, "acct", 16), WAIT_MS));
  /* join d while telling */
  TT_EQ_INT(node_up(&ns[3], "jl", "d", &d, false), 0);
  uint64_t t0 = tt_now_ms();
  int rounds = 0;
  while ((stats(&ns[3], "acct").shards < 3 || rounds < 5) &&
         tt_now_ms() - t0 < WAIT_MS) {
    for (int i = 0; i < IDS; i++) {
      char id[32];
      snprintf(id, sizeof id, "e%d", i);
      TT_EQ_INT(tell(&ns[(i + rounds) % 3], id, 1), 0);
      want[i]++;
    }
    rounds++;
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
  TT_ASSERT(stats(&ns[3], "acct").shards >= 3);
  printf("# join: d hosts %u shards after %" PRIu64 " ms, %d rounds\n",
         stats(&ns[3], "acct").shards, tt_now_ms() - t0, rounds);
  TT_ASSERT(TT_WAIT_UNTIL(totals_are(&ns[3], IDS, want), WAIT_MS));
  uint64_t handoffs = 0;
  for (int i = 0; i < 3; i++) handoffs += stats(&ns[i], "acct").handoffs;
  TT_ASSERT(handoffs >= 3);
  /* graceful leave of c while telling */
  TT_EQ_INT(troupe_cluster_leave(ns[2].sys, NULL), 0);
  t0 = tt_now_ms();
  rounds = 0;
  while ((count_up(ns[0].sys) != 3 || rounds < 5) &&
         tt_now_ms() - t0 < WAIT_MS) {
    for (int i = 0; i < IDS; i++) {
      char id[32];
      snprintf(id, sizeof id, "e%d", i);
      TT_EQ_INT(tell(&ns[i % 2 ? 0 : 3], id, 1), 0);
      want[i]++;
    }
    rounds++;
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
  TT_EQ_INT(count_up(ns[0].sys), 3);
  TT_EQ_INT(stats(&ns[2], "acct").shards, 0);
  TT_EQ_INT(stats(&ns[2], "acct").entities, 0);
  TT_ASSERT(TT_WAIT_UNTIL(totals_are(&ns[0], IDS, want), WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(
      shards_all_allocated(ns, 4, "acct", 16) &&
          stats(&ns[2], "acct").shards == 0, WAIT_MS));
  TT_EQ_INT(sum_stat(ns, 4, "acct", F_CONFLICTS), 0);
  TT_EQ_INT(sum_stat(ns, 4, "acct", F_DROPPED), 0);
  for (int i = 3; i >= 0; i--) node_down(&ns[i]);
  close_store();
}

/* A node crashes (cut off, then stopped): its persistent entities recover
 * on the survivors with their state. */
static void crash(const char *netname, int victim) {
  open_store();
  tnode ns[3];
  troupe_sharding_def d = persistent_def("acct2");
  TT_EQ_INT(node_up(&ns[0], netname, "a", &d, false), 0);
  TT_EQ_INT(node_up(&ns[1], netname, "b", &d, false), 0);
  TT_EQ_INT(node_up(&ns[2], netname, "c", &d, false), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 3, 3), WAIT_MS));
  enum { IDS = 30 };
  int64_t want[IDS];
  for (int i = 0; i < IDS; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    TT_EQ_INT(ask(&ns[0], &T_ADD, id, i + 1, NULL), i + 1);
    want[i] = i + 1;
  }
  /* shards may reach the victim by a rebalance after the first asks; its
   * entities start on their next message */
  TT_ASSERT(TT_WAIT_UNTIL(stats(&ns[victim], "acct2").shards > 0, WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(totals_are(&ns[0], IDS, want) &&
                          stats(&ns[victim], "acct2").entities > 0, WAIT_MS));
  troupe__memnet *net = troupe__memnet_get(netname);
  TT_ASSERT(net);
  tnode *s0 = &ns[(victim + 1) % 3], *s1 = &ns[(victim + 2) % 3];
  char host[32];
  snprintf(host, sizeof host, "%s%s:1", netname, ns[victim].name);
  uint64_t t0 = tt_now_ms();
  TT_EQ_INT(troupe__memnet_partition(net, host, NULL), 0);
  TT_ASSERT(TT_WAIT_UNTIL(count_up(s0->sys) == 2 && count_up(s1->sys) == 2,
                          WAIT_MS));
  node_down(&ns[victim]);
  TT_ASSERT(TT_WAIT_UNTIL(totals_are(s1, IDS, want), WAIT_MS));
  printf("# crash of %s: entities back after %" PRIu64 " ms\n",
         ns[victim].name, tt_now_ms() - t0);
  TT_ASSERT(TT_WAIT_UNTIL(totals_are(s0, IDS, want), WAIT_MS));
  TT_EQ_INT(sum_stat(ns, 3, "acct2", F_CONFLICTS), 0);
  troupe__memnet_put(net);
  for (int i = 2; i >= 0; i--) node_down(&ns[i]);
  close_store();
}

static void test_crash(void) { crash("cr", 2); }
/* the oldest member (the coordinator's home) crashes */
static void test_crash_oldest(void) { crash("co", 0); }

/* Durable-state entities keep their state when their shards move to a
 * joining node. */
static void test_durable(void) {
  open_store();
  tnode ns[3];
  memset(ns, 0, sizeof ns);
  troupe_sharding_def d = plain_def("dur");
  d.behavior = NULL;
  d.durable = &ddef;
  d.persistence = persist;
  TT_EQ_INT(node_up(&ns[0], "du", "a", &d, false), 0);
  TT_EQ_INT(node_up(&ns[1], "du", "b", &d, false), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 2, 2), WAIT_MS));
  enum { IDS = 20 };
  int64_t want[IDS];
  for (int i = 0; i < IDS; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    TT_EQ_INT(ask(&ns[i % 2], &T_ADD, id, 2, NULL), 2);
    TT_EQ_INT(ask(&ns[(i + 1) % 2], &T_ADD, id, 3, NULL), 5);
    want[i] = 5;
  }
  TT_EQ_INT(node_up(&ns[2], "du", "c", &d, false), 0);
  TT_ASSERT(TT_WAIT_UNTIL(stats(&ns[2], "dur").shards >= 4, WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(totals_are(&ns[2], IDS, want), WAIT_MS));
  TT_EQ_INT(sum_stat(ns, 3, "dur", F_CONFLICTS), 0);
  for (int i = 2; i >= 0; i--) node_down(&ns[i]);
  close_store();
}

/* Idle entities are passivated and come back on their next message; an
 * entity may ask for it; persistent ones recover their state. */
static void test_passivation(void) {
  open_store();
  tnode ns[2];
  troupe_sharding_def d = plain_def("idle");
  d.passivate_idle_ms = 150;
  troupe_sharding_def dp = persistent_def("pidle");
  TT_EQ_INT(node_up(&ns[0], "pv", "a", &d, false), 0);
  troupe_ref pr;
  (void)pr;
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 1, 1), WAIT_MS));
  TT_EQ_INT(ask(&ns[0], &T_ADD, "x", 5, NULL), 5);
  TT_EQ_INT(stats(&ns[0], "idle").entities, 1);
  TT_ASSERT(TT_WAIT_UNTIL(stats(&ns[0], "idle").passivated == 1 &&
                          stats(&ns[0], "idle").entities == 0, WAIT_MS));
  TT_EQ_INT(ask(&ns[0], &T_GET, "x", 0, NULL), 0);   /* a fresh actor */
  TT_EQ_INT(stats(&ns[0], "idle").started, 2);
  node_down(&ns[0]);

  /* asked for by the entity; the next messages wait and restart it */
  TT_EQ_INT(node_up(&ns[1], "pv2", "a", &dp, false), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(&ns[1], 1, 1), WAIT_MS));
  TT_EQ_INT(ask(&ns[1], &T_ADD, "y", 7, NULL), 7);
  cmd pass = {"y", 0};
  TT_EQ_INT(troupe_tell(ns[1].region, &T_PASS, &pass, TROUPE_REF_NONE), 0);
  for (int i = 0; i < 5; i++) TT_EQ_INT(tell(&ns[1], "y", 1), 0);
  int64_t ev = 0;
  TT_ASSERT(TT_WAIT_UNTIL(stats(&ns[1], "pidle").passivated >= 1, WAIT_MS));
  TT_ASSERT(TT_WAIT_UNTIL(ask(&ns[1], &T_GET, "y", 0, &ev) == 12, WAIT_MS));
  TT_EQ_INT(ev, 6);
  TT_ASSERT(stats(&ns[1], "pidle").started >= 2);
  TT_EQ_INT(stats(&ns[1], "pidle").conflicts, 0);
  node_down(&ns[1]);
  close_store();
}

/* Remembered entities restart by themselves on the new home after a
 * move. */
static void test_remember(void) {
  open_store();
  tnode ns[3];
  memset(ns, 0, sizeof ns);
  troupe_sharding_def d = persistent_def("rem");
  d.remember_entities = true;
  TT_EQ_INT(node_up(&ns[0], "rm", "a", &d, false), 0);
  TT_EQ_INT(node_up(&ns[1], "rm", "b", &d, false), 0);
  TT_ASSERT(TT_WAIT_UNTIL(all_up(ns, 2, 2), WAIT_MS));
  enum { IDS = 20 };
  for (int i = 0; i < IDS; i++) {
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    TT_EQ_INT(ask(&ns[i % 2], &T_ADD, id, 1, NULL), 1);
  }
  TT_EQ_INT(sum_stat(ns, 2, "rem", F_ENTITIES), IDS);
  TT_EQ_INT(node_up(&ns[2], "rm", "c", &d, false), 0);
  TT_ASSERT(TT_WAIT_UNTIL(stats(&ns[2], "rem").shards >= 4, WAIT_MS));
  /* no message needed: every entity runs again somewhere */
  TT_ASSERT(TT_WAIT_UNTIL(sum_stat(ns, 3, "rem", F_ENTITIES) == IDS &&
                          stats(&ns[2], "rem").entities > 0, WAIT_MS));
  TT_EQ_INT(sum_stat(ns, 3, "rem", F_CONFLICTS), 0);
  for (int i = 2; i >= 0; i--) node_down(&ns[i]);
  close_store();
}

/* Messages whose shard has no home yet wait in a bounded buffer; over the
 * bound they are dead letters, counted. */
static void test_buffer_overflow(void) {
  troupe_system *sys;
  troupe_system_opts so = quiet;
  so.name = "lonely";
  if (getenv("TS_LOG")) so.log_level = TROUPE_LOG_DEBUG;
  TT_EQ_INT(troupe_system_create(&sys, &so), 0);
  troupe_remote_opts ro = {.listen = "mem://bo/lonely:1"};
  TT_EQ_INT(troupe_remote_start(sys, &ro), 0);
  troupe_cluster_opts o = fast_opts();   /* no seeds: no cluster yet */
  TT_EQ_INT(troupe_cluster_start(sys, &o), 0);
  troupe_sharding_def d = plain_def("buf");
  d.buffer_size = 5;
  troupe_ref r;
  TT_EQ_INT(troupe_sharding_start(sys, &d, &r), 0);
  troupe_ref r2;
  TT_EQ_INT(troupe_sharding_start(sys, &d, &r2), TROUPE_EEXIST);
  TT_EQ_INT(troupe_system_start(sys), 0);
  for (int i = 0; i < 12; i++) {
    cmd c = {"k", 1};
    TT_EQ_INT(troupe_tell(r, &T_ADD, &c, TROUPE_REF_NONE), 0);
  }
  troupe_sharding_stats st;
  memset(&st, 0, sizeof st);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_sharding_stats_get(sys, "buf", &st) == 0 &&
                          st.dropped == 7 && st.buffered == 5, WAIT_MS));
  troupe_system_stop(sys);
  troupe_system_wait(sys, 10000);
  TT_ASSERT(troupe_system_dead_letters(sys) >= 12);   /* 7 + 5 at stop */
  troupe_system_wait(sys, 10000);
  troupe_system_destroy(sys);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  if (register_types() < 0) return 1;
  TT_RUN(test_shard_of);
  TT_RUN(test_pick_region);
  TT_RUN(test_plan_rebalance);
  TT_RUN(test_start_errors);
  TT_RUN(test_routing_proxy);
  TT_RUN(test_join_and_leave);
  TT_RUN(test_crash);
  TT_RUN(test_crash_oldest);
  TT_RUN(test_durable);
  TT_RUN(test_passivation);
  TT_RUN(test_remember);
  TT_RUN(test_buffer_overflow);
  return tt_done();
}
