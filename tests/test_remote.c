/*
 * test_remote.c: remoting between two systems of this process over a byte
 * transport — the in-memory one (mem://) and TCP on 127.0.0.1 — each
 * system on its own thread: tells to remote refs (from actors and from a
 * plain thread), request/reply, a ref inside a message, troupe_ref_parse
 * and troupe_resolve of remote paths (found, not found, timeout), remote
 * death watch (stop, node lost after a partition or a dead peer), dead
 * letters for unreachable nodes and the bounded pending queue.
 */
#include "tt.h"
#include "cluster/internal.h"

#include <inttypes.h>

typedef struct ping { int32_t v; } ping;
static const troupe_field ping_fields[] = {TROUPE_FIELD(ping, v, I32)};
static troupe_type T_PING = TROUPE_TYPE("tr.Ping", 1, ping, ping_fields);

/* a request carrying the ref to answer */
typedef struct req { troupe_ref reply_to; int32_t v; } req;
static const troupe_field req_fields[] = {TROUPE_FIELD(req, reply_to, REF),
                                          TROUPE_FIELD(req, v, I32)};
static troupe_type T_REQ = TROUPE_TYPE("tr.Req", 1, req, req_fields);

typedef struct start { troupe_ref target; int32_t n; } start;
static const troupe_field start_fields[] = {
  TROUPE_FIELD(start, target, REF), TROUPE_FIELD(start, n, I32)};
static troupe_type T_START = TROUPE_TYPE("tr.Start", 1, start,
                                         start_fields);

static atomic_int pongs, answers, terminated, lost_node, resolved,
    resolve_none, resolve_timeout;

/* echo: Ping -> reply Ping+1 to the (remote) sender; Req -> tell reply_to */
static int echo_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  (void)st;
  if (msg->type == &T_PING) {
    ping p = {((const ping *)msg->data)->v + 1};
    return troupe_reply(ctx, &T_PING, &p);
  }
  if (msg->type == &T_REQ) {
    const req *r = msg->data;
    ping p = {r->v * 2};
    return troupe_tell(r->reply_to, &T_PING, &p, troupe_self(ctx));
  }
  return TROUPE_UNHANDLED;
}
static const troupe_behavior echo_b = {.name = "echo", .receive = echo_recv};

/* client: Start{target, n}: watch target, n pings; counts the answers;
 * Req{_, ms}: resolve resolve_path with a timeout of ms */
static char resolve_path[192];
typedef struct client { troupe_ref target; uint64_t ask; } client;
static int client_recv(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  client *c = st;
  if (msg->type == &T_START) {
    const start *s = msg->data;
    c->target = s->target;
    if (troupe_watch(ctx, s->target) < 0) return TROUPE_EIO;
    for (int32_t i = 0; i < s->n; i++) {
      ping p = {i};
      troupe_send(ctx, s->target, &T_PING, &p);
    }
    return 0;
  }
  if (msg->type == &T_PING) {
    atomic_fetch_add(&pongs, 1);
    return 0;
  }
  if (msg->type == &T_REQ) {
    int rc = troupe_resolve(ctx, resolve_path,
                            (uint64_t)((const req *)msg->data)->v, &c->ask);
    return rc < 0 ? rc : 0;
  }
  if (msg->type == &TROUPE_T_ACTOR_IDENTITY) {
    if (msg->ask_id == c->ask) {
      const troupe_actor_identity *id = msg->data;
      atomic_fetch_add(troupe_ref_is_none(id->actor) ? &resolve_none
                                                     : &resolved, 1);
    }
    return 0;
  }
  if (msg->type == &TROUPE_T_ASK_TIMEOUT) {
    if (msg->ask_id == c->ask) atomic_fetch_add(&resolve_timeout, 1);
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

static void reset_counters(void) {
  atomic_store(&pongs, 0);
  atomic_store(&answers, 0);
  atomic_store(&terminated, 0);
  atomic_store(&lost_node, 0);
  atomic_store(&resolved, 0);
  atomic_store(&resolve_none, 0);
  atomic_store(&resolve_timeout, 0);
}

static const troupe_system_opts quiet = {.log_level = TROUPE_LOG_ERROR + 1,
                                         .log_level_set = true};

static troupe_system *node(const char *name, const char *listen,
                           uint64_t node_lost_ms, uint32_t max_pending) {
  troupe_system *sys;
  troupe_system_opts o = quiet;
  o.name = name;
  if (troupe_system_create(&sys, &o) < 0) return NULL;
  troupe_remote_opts ro = {.listen = listen, .node_lost_ms = node_lost_ms,
                           .max_pending = max_pending,
                           .secret = "s3cret", .secret_len = 6};
  if (troupe_remote_start(sys, &ro) < 0) {
    fprintf(stderr, "remote_start %s: %s\n", listen, troupe_errmsg());
    troupe_system_destroy(sys);
    return NULL;
  }
  return sys;
}

static void uri(char *buf, size_t n, troupe_system *sys, const char *path) {
  char addr[128];
  troupe_remote_address(sys, addr, sizeof addr);
  snprintf(buf, n, "troupe://%s@%s%s", troupe_system_name(sys), addr, path);
}

/* ------------------------------------------------------------------ */
/* The scenarios, over any transport: A (client) and B (echo). */

typedef struct pair {
  troupe_system *a, *b;
  troupe_ref client, echo;        /* client: local to A; echo: B's, remote */
  char echo_uri[192];
} pair;

static int pair_up(pair *p, const char *la, const char *lb,
                   uint64_t node_lost_ms) {
  memset(p, 0, sizeof *p);
  p->a = node("A", la, node_lost_ms, 0);
  p->b = node("B", lb, node_lost_ms, 0);
  if (!p->a || !p->b) return -1;
  troupe_ref r;
  troupe_spawn_opts eo = {.name = "echo"}, co = {.name = "client"};
  if (troupe_system_spawn(p->b, &echo_b, &eo, &r) < 0) return -1;
  if (troupe_system_spawn(p->a, &client_b, &co, &p->client) < 0) return -1;
  uri(p->echo_uri, sizeof p->echo_uri, p->b, "/user/echo");
  if (troupe_system_start(p->a) < 0 || troupe_system_start(p->b) < 0)
    return -1;
  return 0;
}

static void pair_down(pair *p) {
  troupe_system_destroy(p->a);
  troupe_system_destroy(p->b);
}

static void scenario_tell_reply(pair *p) {
  reset_counters();
  /* resolve across nodes from a plain thread */
  TT_EQ_INT(troupe_resolve_blocking(p->a, p->echo_uri, 5000, &p->echo), 0);
  TT_ASSERT(p->echo.node != troupe_system_user(p->a).node);
  TT_ASSERT(p->echo.node != troupe_system_user(p->b).node);
  char nope[192];
  uri(nope, sizeof nope, p->b, "/user/nope");
  troupe_ref none;
  TT_EQ_INT(troupe_resolve_blocking(p->a, nope, 5000, &none), TROUPE_ENOENT);
  TT_ASSERT(troupe_ref_is_none(none));
  /* troupe_ref_parse of the full URI names the same actor */
  char full[224];
  snprintf(full, sizeof full, "%s#%" PRIx64, p->echo_uri, p->echo.uid);
  troupe_ref parsed;
  TT_EQ_INT(troupe_ref_parse(p->a, full, &parsed), 0);
  TT_ASSERT(troupe_ref_eq(parsed, p->echo));
  TT_EQ_INT(troupe_ref_parse(p->a, p->echo_uri, &parsed), TROUPE_EINVAL);
  /* request/reply between actors: the client pings, echo replies to the
   * remote sender */
  start s = {p->echo, 100};
  TT_EQ_INT(troupe_tell(p->client, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 100, 10000));
  /* a tell from a plain thread to the remote ref, carrying a ref to the
   * client inside the message */
  req r = {p->client, 21};
  TT_EQ_INT(troupe_tell(p->echo, &T_REQ, &r, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 101, 10000));
}

static void scenario_watch_stop(pair *p) {
  /* the client watches echo (from scenario_tell_reply); stopping echo
   * ends the watch with a confirmed Terminated */
  TT_EQ_INT(troupe_tell(p->echo, &TROUPE_T_POISON_PILL, NULL,
                        TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&terminated) == 1, 10000));
  TT_EQ_INT(atomic_load(&lost_node), 0);
  troupe_ref gone;
  TT_EQ_INT(troupe_resolve_blocking(p->a, p->echo_uri, 5000, &gone),
            TROUPE_ENOENT);
  /* watching a dead remote actor: Terminated at once (from its node) */
  reset_counters();
  start s = {p->echo, 0};
  TT_EQ_INT(troupe_tell(p->client, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&terminated) == 1, 10000));
  TT_EQ_INT(atomic_load(&lost_node), 0);
}

/* ------------------------------------------------------------------ */
/* mem:// */

static void test_mem_tell_reply_watch(void) {
  pair p;
  TT_EQ_INT(pair_up(&p, "mem://r1/a:1", "mem://r1/b:1", 5000), 0);
  scenario_tell_reply(&p);
  scenario_watch_stop(&p);
  pair_down(&p);
}

static void test_mem_node_lost(void) {
  reset_counters();
  troupe__memnet *net = troupe__memnet_get("r2");
  pair p;
  TT_EQ_INT(pair_up(&p, "mem://r2/a:1", "mem://r2/b:1", 200), 0);
  TT_EQ_INT(troupe_resolve_blocking(p.a, p.echo_uri, 5000, &p.echo), 0);
  start s = {p.echo, 3};
  TT_EQ_INT(troupe_tell(p.client, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 3, 10000));
  /* a partition healed in time is not a loss */
  TT_EQ_INT(troupe__memnet_partition(net, "a:1", "b:1"), 0);
  TT_EQ_INT(troupe__memnet_heal(net, "a:1", "b:1"), 0);
  TT_EQ_INT(troupe_tell(p.client, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 6, 10000));
  TT_EQ_INT(atomic_load(&terminated), 0);
  /* one that lasts longer than node_lost_ms is */
  uint64_t dl0 = troupe_system_dead_letters(p.a);
  TT_EQ_INT(troupe__memnet_partition(net, "a:1", "b:1"), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&terminated) == 1, 10000));
  TT_EQ_INT(atomic_load(&lost_node), 1);
  /* the node is lost: tells are dead letters at once, never blocking */
  for (int32_t i = 0; i < 100; i++)
    TT_EQ_INT(troupe_tell(p.echo, &T_PING, &(ping){i}, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_system_dead_letters(p.a) >= dl0 + 100,
                          10000));
  /* healed: the link comes back and messages flow again */
  TT_EQ_INT(troupe__memnet_heal(net, "a:1", "b:1"), 0);
  int before = atomic_load(&pongs);
  TT_ASSERT(TT_WAIT_UNTIL(
      (troupe_tell(p.echo, &T_REQ, &(req){p.client, 1}, TROUPE_REF_NONE),
       atomic_load(&pongs) > before), 10000));
  pair_down(&p);
  troupe__memnet_put(net);
}

static void test_mem_unreachable_bounded(void) {
  /* a node nobody listens at: max_pending wait, the rest are dead
   * letters; after node_lost_ms the waiting ones are too */
  troupe_system *a = node("A", "mem://r3/a:1", 1000, 10);
  TT_ASSERT(a);
  TT_EQ_INT(troupe_system_start(a), 0);
  troupe_ref ghost;
  TT_EQ_INT(troupe_ref_parse(a, "troupe://G@g:1/user/x#100000001", &ghost),
            0);
  for (int32_t i = 0; i < 100; i++)
    TT_EQ_INT(troupe_tell(ghost, &T_PING, &(ping){i}, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_system_dead_letters(a) == 90, 10000));
  TT_ASSERT(TT_WAIT_UNTIL(troupe_system_dead_letters(a) == 100, 10000));
  /* a resolve there times out */
  troupe_ref r;
  TT_EQ_INT(troupe_resolve_blocking(a, "troupe://G@g:1/user/x", 200, &r),
            TROUPE_ETIMEDOUT);
  troupe_system_destroy(a);
}

static void test_mem_resolve_from_actor(void) {
  reset_counters();
  pair p;
  TT_EQ_INT(pair_up(&p, "mem://r4/a:1", "mem://r4/b:1", 5000), 0);
  snprintf(resolve_path, sizeof resolve_path, "%s", p.echo_uri);
  req r = {TROUPE_REF_NONE, 5000};
  TT_EQ_INT(troupe_tell(p.client, &T_REQ, &r, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&resolved) == 1, 10000));
  uri(resolve_path, sizeof resolve_path, p.b, "/user/nope");
  TT_EQ_INT(troupe_tell(p.client, &T_REQ, &r, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&resolve_none) == 1, 10000));
  /* nobody at that address: the ask times out */
  snprintf(resolve_path, sizeof resolve_path, "troupe://G@g:9/user/x");
  r.v = 100;
  TT_EQ_INT(troupe_tell(p.client, &T_REQ, &r, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&resolve_timeout) == 1, 10000));
  TT_EQ_INT(atomic_load(&resolved), 1);
  pair_down(&p);
}

/* ------------------------------------------------------------------ */
/* tcp:// */

static void test_tcp_tell_reply_watch(void) {
  if (!troupe__transport_find("tcp", 3)) TT_SKIP("no TCP transport");
  pair p;
  TT_EQ_INT(pair_up(&p, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", 5000), 0);
  scenario_tell_reply(&p);
  scenario_watch_stop(&p);
  pair_down(&p);
}

static void test_tcp_node_lost(void) {
  if (!troupe__transport_find("tcp", 3)) TT_SKIP("no TCP transport");
  reset_counters();
  pair p;
  TT_EQ_INT(pair_up(&p, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", 300), 0);
  TT_EQ_INT(troupe_resolve_blocking(p.a, p.echo_uri, 5000, &p.echo), 0);
  start s = {p.echo, 3};
  TT_EQ_INT(troupe_tell(p.client, &T_START, &s, TROUPE_REF_NONE), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&pongs) == 3, 10000));
  /* the peer goes away for good */
  troupe_system_destroy(p.b);
  p.b = NULL;
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&terminated) == 1, 10000));
  TT_EQ_INT(atomic_load(&lost_node), 1);
  pair_down(&p);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  if (troupe_type_register(&T_PING) < 0 || troupe_type_register(&T_REQ) < 0 ||
      troupe_type_register(&T_START) < 0)
    return 1;
  TT_RUN(test_mem_tell_reply_watch);
  TT_RUN(test_mem_node_lost);
  TT_RUN(test_mem_unreachable_bounded);
  TT_RUN(test_mem_resolve_from_actor);
  TT_RUN(test_tcp_tell_reply_watch);
  TT_RUN(test_tcp_node_lost);
  return tt_done();
}
