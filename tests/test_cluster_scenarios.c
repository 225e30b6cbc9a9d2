/*
 * test_cluster_scenarios.c: cluster scenarios written with the multi-node
 * test kit (tests/testkit.h), each run on both variants — TK_MEM (one
 * thread, in-memory transport, virtual time) and TK_MESH (worker threads,
 * real time):
 *
 *   rebalance on join   3 nodes, then a 4th joins: shards move to it,
 *                       every entity still answers, nothing is lost;
 *   failover on crash   persistent counters on a journal shared by the
 *                       nodes ("memory:NAME"); the node hosting some
 *                       crashes; they recover on a survivor with their
 *                       full state;
 *   keep-majority       a 2:3 partition: the minority downs itself and
 *                       stops, the majority removes it and serves every
 *                       entity;
 *   graceful leave      the leaving node hands its shards off first;
 *                       nothing is lost.
 *
 * Every scenario checks the single-writer rule: no region saw a journal
 * sequence conflict or an id already live (stats.conflicts == 0).
 */
#include "tt.h"
#include "testkit.h"
#include "troupe/sharding.h"

#include <inttypes.h>
#include <stdatomic.h>

#define ENTITIES 24
#define SHARDS 16

/* ------------------------------------------------------------------ */
/* Messages */

typedef struct cmd {
  char *id;
  int64_t amount;
} cmd;
static const troupe_field cmd_fields[] = {TROUPE_FIELD(cmd, id, STRING),
                                          TROUPE_FIELD(cmd, amount, I64)};
static troupe_type T_ADD = TROUPE_TYPE("tks.Add", 1, cmd, cmd_fields);
static troupe_type T_GET = TROUPE_TYPE("tks.Get", 1, cmd, cmd_fields);

typedef struct val {
  char *id;
  int64_t total;
  int64_t events;
} val;
static const troupe_field val_fields[] = {TROUPE_FIELD(val, id, STRING),
                                          TROUPE_FIELD(val, total, I64),
                                          TROUPE_FIELD(val, events, I64)};
static troupe_type T_ACK = TROUPE_TYPE("tks.Ack", 1, val, val_fields);
static troupe_type T_VAL = TROUPE_TYPE("tks.Val", 1, val, val_fields);

typedef struct added {
  int64_t amount;
} added;
static const troupe_field added_fields[] = {TROUPE_FIELD(added, amount, I64)};
static troupe_type T_ADDED = TROUPE_TYPE("tks.Added", 1, added,
                                         added_fields);

typedef struct cstate {
  int64_t total;
  int64_t events;
} cstate;
static const troupe_field cstate_fields[] = {
  TROUPE_FIELD(cstate, total, I64), TROUPE_FIELD(cstate, events, I64)};
static troupe_type T_CSTATE = TROUPE_TYPE("tks.State", 1, cstate,
                                          cstate_fields);

/* driver commands: drive (amount > 0: one Add per entity) or check
 * (amount 0: one Get per entity) */
typedef struct drive {
  int64_t amount;
} drive;
static const troupe_field drive_fields[] = {TROUPE_FIELD(drive, amount, I64)};
static troupe_type T_DRIVE = TROUPE_TYPE("tks.Drive", 1, drive,
                                         drive_fields);

/* ------------------------------------------------------------------ */
/* The counter entity */

static int extract(const troupe_msg *m, char *buf, size_t size) {
  if (m->type != &T_ADD && m->type != &T_GET) return -1;
  const cmd *c = m->data;
  if (!c->id) return -1;
  size_t n = strlen(c->id);
  if (n + 1 > size) return -1;
  memcpy(buf, c->id, n + 1);
  return (int)n;
}

static void reply_val(troupe_entity *e, const void *st, void *data) {
  (void)data;
  const cstate *s = st;
  val v = {(char *)troupe_entity_id(e), s->total, s->events};
  troupe_entity_reply(e, &T_VAL, &v);
}

static int ctr_command(troupe_entity *e, const void *st,
                       const troupe_msg *msg) {
  const cstate *s = st;
  if (msg->type == &T_ADD) {
    const cmd *c = msg->data;
    added a = {c->amount};
    int rc = troupe_entity_persist(e, &T_ADDED, &a, 0);
    if (rc < 0) return rc;
    val v = {(char *)troupe_entity_id(e), s->total + c->amount,
             s->events + 1};
    return troupe_entity_reply(e, &T_ACK, &v);
  }
  if (msg->type == &T_GET) return troupe_entity_after(e, reply_val, NULL);
  return TROUPE_UNHANDLED;
}

static int ctr_apply(void *st, const troupe_type *t, const void *ev) {
  cstate *s = st;
  if (t != &T_ADDED) return TROUPE_ETYPE;
  s->total += ((const added *)ev)->amount;
  s->events++;
  return 0;
}

static const troupe_entity_def counter_entity = {
  .type_name = "counter", .state_type = &T_CSTATE, .command = ctr_command,
  .apply = ctr_apply};

/* ------------------------------------------------------------------ */
/* Per-scenario state: a journal shared by the nodes, one persistence and
 * one sharding definition per node; what the drivers saw. */

static struct scenario {
  char spec[64];
  troupe_journal *journal[TK_MAX_NODES];
  troupe_persistence *pers[TK_MAX_NODES];
  troupe_sharding_def def[TK_MAX_NODES];
  atomic_int acks;
  atomic_int checked;
  atomic_llong totals[ENTITIES];
  atomic_llong events[ENTITIES];
} sc;

static atomic_uint scenario_seq;

static void sc_reset(void) {
  memset(&sc, 0, sizeof sc);
  snprintf(sc.spec, sizeof sc.spec, "memory:tks%u",
           atomic_fetch_add(&scenario_seq, 1));
}

/* after tk_stop: every system using them has stopped */
static void sc_free(void) {
  for (int i = 0; i < TK_MAX_NODES; i++) {
    troupe_persistence_destroy(sc.pers[i]);
    if (sc.journal[i]) troupe_journal_close(sc.journal[i]);
  }
}

/* driver: Drive{amount}: an Add (or a Get) per entity through the local
 * region; counts the answers */
static int driver_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)st;
  if (msg->type == &T_DRIVE) {
    troupe_ref region;
    int rc = troupe_sharding_region(troupe_ctx_system(ctx), "counter",
                                    &region);
    if (rc < 0) return rc;
    int64_t amount = ((const drive *)msg->data)->amount;
    for (int j = 0; j < ENTITIES; j++) {
      char id[16];
      snprintf(id, sizeof id, "e%d", j);
      cmd c = {id, amount};
      rc = troupe_send(ctx, region, amount ? &T_ADD : &T_GET, &c);
      if (rc < 0) return rc;
    }
    return 0;
  }
  if (msg->type == &T_ACK || msg->type == &T_VAL) {
    const val *v = msg->data;
    int j = v->id && v->id[0] == 'e' ? atoi(v->id + 1) : -1;
    if (j < 0 || j >= ENTITIES) return 0;
    if (msg->type == &T_ACK) {
      atomic_fetch_add(&sc.acks, 1);
    } else {
      atomic_store(&sc.totals[j], v->total);
      atomic_store(&sc.events[j], v->events);
      atomic_fetch_add(&sc.checked, 1);
    }
    return 0;
  }
  return TROUPE_UNHANDLED;
}
static const troupe_behavior driver_b = {.name = "driver",
                                         .receive = driver_recv};

static int node_init(tk *t, uint32_t i, troupe_system *sys, void *data) {
  (void)t; (void)data;
  int rc;
  /* a restarted mesh worker keeps its stores */
  if (!sc.journal[i]) {
    rc = troupe_journal_open(sc.spec, NULL, &sc.journal[i]);
    if (rc < 0) return rc;
    rc = troupe_persistence_create(&sc.pers[i], sc.journal[i], NULL);
    if (rc < 0) return rc;
  }
  troupe_sharding_def *d = &sc.def[i];
  *d = (troupe_sharding_def){.type_name = "counter", .shards = SHARDS,
                             .extract_id = extract,
                             .entity = &counter_entity,
                             .persistence = sc.pers[i]};
  troupe_ref region, driver;
  rc = troupe_sharding_start(sys, d, &region);
  if (rc < 0) return rc;
  troupe_spawn_opts o = {.name = "driver"};
  return troupe_system_spawn(sys, &driver_b, &o, &driver);
}

static int start(tk **t, tk_variant v, uint32_t n, uint32_t initial) {
  sc_reset();
  tk_opts o = {.cluster = true, .init = node_init, .initial = initial};
  return tk_start(t, v, n, &o);
}

static uint64_t W(tk *t) { return tk_variant_of(t) == TK_MEM ? 30000 : 20000; }

typedef struct drive_arg {
  troupe_ref driver;
  int64_t amount;
} drive_arg;

static int drive_fn(troupe_system *sys, void *data) {
  (void)sys;
  drive_arg *a = data;
  drive d = {a->amount};
  return troupe_tell(a->driver, &T_DRIVE, &d, TROUPE_REF_NONE);
}

/* Have node's driver send an Add of `amount` (0: a Get) to every entity. */
static int drive_from(tk *t, uint32_t node, int64_t amount) {
  drive_arg a = {TROUPE_REF_NONE, amount};
  int rc = tk_ref(t, node, node, "/user/driver", &a.driver);
  return rc ? rc : tk_run(t, node, drive_fn, &a);
}

typedef struct want {
  atomic_int *counter;
  int n;
} want;

static bool cond_count(tk *t, void *data) {
  (void)t;
  want *w = data;
  return atomic_load(w->counter) >= w->n;
}

static int wait_acks(tk *t, int n) {
  want w = {&sc.acks, n};
  return tk_wait(t, cond_count, &w, W(t));
}

/* Every entity answers a Get from node with total == expect. */
static int check_totals(tk *t, uint32_t node, int64_t expect) {
  atomic_store(&sc.checked, 0);
  for (int j = 0; j < ENTITIES; j++) atomic_store(&sc.totals[j], -1);
  int rc = drive_from(t, node, 0);
  if (rc < 0) return rc;
  want w = {&sc.checked, ENTITIES};
  rc = tk_wait(t, cond_count, &w, W(t));
  if (rc < 0) return rc;
  for (int j = 0; j < ENTITIES; j++)
    if (atomic_load(&sc.totals[j]) != expect ||
        atomic_load(&sc.events[j]) != expect) {
      fprintf(stderr, "entity e%d: total %lld events %lld, want %lld\n", j,
              (long long)atomic_load(&sc.totals[j]),
              (long long)atomic_load(&sc.events[j]), (long long)expect);
      return TROUPE_EIO;
    }
  return 0;
}

static int stats_fn(troupe_system *sys, void *data) {
  return troupe_sharding_stats_get(sys, "counter", data);
}

static troupe_sharding_stats stats_of(tk *t, uint32_t node) {
  troupe_sharding_stats s;
  memset(&s, 0, sizeof s);
  if (tk_with(t, node, stats_fn, &s) < 0) memset(&s, 0, sizeof s);
  return s;
}

/* Single writer: no region of a live node saw a conflict. */
static uint64_t conflicts(tk *t) {
  uint64_t c = 0;
  for (uint32_t i = 0; i < tk_size(t); i++)
    if (tk_alive(t, i)) c += stats_of(t, i).conflicts;
  return c;
}

/* How many shards the entities use (each must be hosted exactly once). */
static uint32_t used_shards(void) {
  bool used[SHARDS] = {false};
  uint32_t n = 0;
  for (int j = 0; j < ENTITIES; j++) {
    char id[16];
    int len = snprintf(id, sizeof id, "e%d", j);
    uint32_t s = troupe_shard_of(id, (size_t)len, SHARDS);
    if (!used[s]) n++;
    used[s] = true;
  }
  return n;
}

static void print_stats(tk *t, const char *when) {
  for (uint32_t i = 0; i < tk_size(t); i++) {
    if (!tk_alive(t, i)) continue;
    troupe_sharding_stats s = stats_of(t, i);
    fprintf(stderr, "%s: node %u: shards %u entities %u started %" PRIu64
            " delivered %" PRIu64 " forwarded %" PRIu64 " handoffs %" PRIu64
            " dropped %" PRIu64 " conflicts %" PRIu64 "\n", when, i,
            s.shards, s.entities, s.started, s.delivered, s.forwarded,
            s.handoffs, s.dropped, s.conflicts);
  }
}

typedef struct hosts_q {
  uint32_t node;
} hosts_q;

/* The regions' stats are copies updated by the regions: wait for them. */
typedef struct sum_q {
  uint32_t nodes[TK_MAX_NODES];
  uint32_t n;
} sum_q;

static bool cond_shards_hosted_once(tk *t, void *data) {
  sum_q *q = data;
  uint32_t sum = 0;
  for (uint32_t k = 0; k < q->n; k++) sum += stats_of(t, q->nodes[k]).shards;
  return sum == used_shards();
}

static int wait_hosted_once(tk *t, sum_q q) {
  int rc = tk_wait(t, cond_shards_hosted_once, &q, W(t));
  if (rc < 0) print_stats(t, "shards");
  return rc;
}

static bool cond_has_entities(tk *t, void *data) {
  uint32_t *victim = data;
  uint32_t a = stats_of(t, 1).entities, b = stats_of(t, 2).entities;
  *victim = b >= a ? 2 : 1;
  return a + b > 0;
}

static bool cond_hosts_shards(tk *t, void *data) {
  return stats_of(t, ((hosts_q *)data)->node).shards > 0;
}

static bool cond_hosts_none(tk *t, void *data) {
  return stats_of(t, ((hosts_q *)data)->node).shards == 0;
}

/* ------------------------------------------------------------------ */
/* Scenarios */

static void rebalance_on_join(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 4, 3), 0);
  TT_EQ_INT(tk_wait_converged(t, W(t)), 0);
  TT_EQ_INT(drive_from(t, 0, 1), 0);
  TT_EQ_INT(wait_acks(t, ENTITIES), 0);
  TT_EQ_INT(wait_hosted_once(t, (sum_q){{0, 1, 2}, 3}), 0);
  /* a 4th node joins while traffic flows */
  TT_EQ_INT(tk_start_node(t, 3), 0);
  TT_EQ_INT(drive_from(t, 1, 1), 0);
  TT_EQ_INT(tk_wait_converged(t, W(t)), 0);
  hosts_q h = {3};
  TT_EQ_INT(tk_wait(t, cond_hosts_shards, &h, W(t)), 0);
  TT_EQ_INT(drive_from(t, 3, 1), 0);
  TT_EQ_INT(wait_acks(t, 3 * ENTITIES), 0);
  TT_EQ_INT(check_totals(t, 2, 3), 0);
  TT_EQ_INT(atomic_load(&sc.acks), 3 * ENTITIES);
  TT_EQ_INT(wait_hosted_once(t, (sum_q){{0, 1, 2, 3}, 4}), 0);
  TT_ASSERT(stats_of(t, 3).shards > 0);
  TT_EQ_INT(conflicts(t), 0);
  tk_stop(t);
  sc_free();
}

static bool cond_spread(tk *t, void *data) {
  (void)data;
  troupe_sharding_stats a = stats_of(t, 0), b = stats_of(t, 1),
                        c = stats_of(t, 2);
  return b.shards > 0 && c.shards > 0 &&
         a.shards + b.shards + c.shards == used_shards();
}

static void failover_on_crash(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 3, 0), 0);
  TT_EQ_INT(tk_wait_converged(t, W(t)), 0);
  for (int r = 0; r < 3; r++) TT_EQ_INT(drive_from(t, 0, 1), 0);
  TT_EQ_INT(wait_acks(t, 3 * ENTITIES), 0);
  /* shards on every node (a region that registered late gets its share
   * by rebalancing), then their entities running there */
  TT_EQ_INT(tk_wait(t, cond_spread, NULL, W(t)), 0);
  TT_EQ_INT(drive_from(t, 0, 1), 0);
  TT_EQ_INT(wait_acks(t, 4 * ENTITIES), 0);
  /* crash a node that is not the oldest (the coordinator's) and runs
   * entities */
  uint32_t victim = 0;
  TT_EQ_INT(tk_wait(t, cond_has_entities, &victim, W(t)), 0);
  uint32_t survivor = 3 - victim;
  uint64_t started_before = stats_of(t, 0).started +
                            stats_of(t, survivor).started;
  TT_EQ_INT(tk_crash(t, victim), 0);
  TT_EQ_INT(tk_wait_removed(t, victim, W(t)), 0);
  TT_EQ_INT(tk_wait_converged(t, W(t)), 0);
  /* they recover on the survivors, with all their events */
  TT_EQ_INT(drive_from(t, 0, 1), 0);
  TT_EQ_INT(wait_acks(t, 5 * ENTITIES), 0);
  TT_EQ_INT(check_totals(t, survivor, 5), 0);
  TT_ASSERT(stats_of(t, 0).started + stats_of(t, survivor).started >
            started_before);
  TT_EQ_INT(wait_hosted_once(t, (sum_q){{0, survivor}, 2}), 0);
  TT_EQ_INT(conflicts(t), 0);
  tk_stop(t);
  sc_free();
}

static void keep_majority(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 5, 0), 0);
  TT_EQ_INT(tk_wait_converged(t, W(t)), 0);
  TT_EQ_INT(drive_from(t, 0, 1), 0);
  TT_EQ_INT(wait_acks(t, ENTITIES), 0);
  /* {0, 1, 2} | {3, 4} */
  for (uint32_t a = 0; a < 3; a++)
    for (uint32_t b = 3; b < 5; b++) TT_EQ_INT(tk_partition(t, a, b), 0);
  /* the minority downs itself and stops */
  TT_EQ_INT(tk_wait_stopped(t, 3, W(t)), 0);
  TT_EQ_INT(tk_wait_stopped(t, 4, W(t)), 0);
  /* the majority removes it and serves every entity */
  TT_EQ_INT(tk_wait_removed(t, 3, W(t)), 0);
  TT_EQ_INT(tk_wait_removed(t, 4, W(t)), 0);
  TT_EQ_INT(tk_wait_converged(t, W(t)), 0);
  for (uint32_t i = 0; i < 3; i++) TT_ASSERT(tk_alive(t, i));
  TT_EQ_INT(drive_from(t, 1, 1), 0);
  TT_EQ_INT(wait_acks(t, 2 * ENTITIES), 0);
  TT_EQ_INT(check_totals(t, 2, 2), 0);
  TT_EQ_INT(wait_hosted_once(t, (sum_q){{0, 1, 2}, 3}), 0);
  TT_EQ_INT(conflicts(t), 0);
  tk_stop(t);
  sc_free();
}

static void graceful_leave(tk_variant v) {
  tk *t;
  TT_EQ_INT(start(&t, v, 3, 0), 0);
  TT_EQ_INT(tk_wait_converged(t, W(t)), 0);
  TT_EQ_INT(drive_from(t, 0, 1), 0);
  TT_EQ_INT(wait_acks(t, ENTITIES), 0);
  hosts_q h = {2};
  TT_EQ_INT(tk_wait(t, cond_hosts_shards, &h, W(t)), 0);
  /* node 2 leaves while traffic flows: its shards are handed off first */
  TT_EQ_INT(tk_leave(t, 2), 0);
  TT_EQ_INT(drive_from(t, 1, 1), 0);
  TT_EQ_INT(tk_wait_removed(t, 2, W(t)), 0);
  TT_EQ_INT(tk_wait_converged(t, W(t)), 0);
  TT_EQ_INT(tk_wait(t, cond_hosts_none, &h, W(t)), 0);
  TT_ASSERT(stats_of(t, 2).handoffs > 0);
  TT_EQ_INT(drive_from(t, 0, 1), 0);
  TT_EQ_INT(wait_acks(t, 3 * ENTITIES), 0);
  TT_EQ_INT(check_totals(t, 1, 3), 0);
  TT_EQ_INT(wait_hosted_once(t, (sum_q){{0, 1}, 2}), 0);
  TT_EQ_INT(conflicts(t), 0);
  tk_stop(t);
  sc_free();
}

#define BOTH(s)                                                            \
  static void test_##s##_mem(void) { s(TK_MEM); }                          \
  static void test_##s##_mesh(void) { s(TK_MESH); }

BOTH(rebalance_on_join)
BOTH(failover_on_crash)
BOTH(keep_majority)
BOTH(graceful_leave)

int main(int argc, char **argv) {
  tt_init(argc, argv);
  troupe_type *all[] = {&T_ADD, &T_GET, &T_ACK, &T_VAL, &T_ADDED, &T_CSTATE,
                        &T_DRIVE};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    troupe_type_register(all[i]);
  TT_RUN(test_rebalance_on_join_mem);
  TT_RUN(test_rebalance_on_join_mesh);
  TT_RUN(test_failover_on_crash_mem);
  TT_RUN(test_failover_on_crash_mesh);
  TT_RUN(test_keep_majority_mem);
  TT_RUN(test_keep_majority_mesh);
  TT_RUN(test_graceful_leave_mem);
  TT_RUN(test_graceful_leave_mesh);
  return tt_done();
}
