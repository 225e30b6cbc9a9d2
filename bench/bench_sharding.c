/*
 * bench_sharding.c: cluster sharding and membership.
 *
 *   sharded-tell  transport=mesh nodes=4 entities=10000: one driver per
 *                 worker tells its local region; messages to ids spread
 *                 uniformly over the entities, which live on every worker;
 *                 msgs/s counted by the entities.
 *   sharded-tell  transport=tcp nodes=3 entities=10000: the same with 3
 *                 processes on 127.0.0.1.
 *   sharded-ask   nodes=1: an actor keeps ASK_WINDOW asks in flight to the
 *                 region of a one-node cluster; rt/s of answered asks.
 *   cluster-formation transport=tcp nodes=3: ms from the processes'
 *                 start until every one of them sees 3 members up.
 *   failover      transport=tcp nodes=3: default cluster settings; one
 *                 process is killed (SIGKILL); ms until an entity whose
 *                 shard lived there answers again from a survivor.
 *
 * Sizes: SHARD_N (mesh messages, default 4M), SHARD_TCP_N (1M),
 * SHARD_ASKS (400k), SHARD_ENTITIES (10000), ASK_WINDOW (256). BENCH
 * selects workloads; SHARD_DEBUG=1 prints the regions' counters and the
 * nodes' logs to stderr.
 */
#define _GNU_SOURCE 1
#include "core/internal.h"
#include "troupe/cluster.h"
#include "troupe/mesh.h"
#include "troupe/remote.h"
#include "troupe/sharding.h"
#include "bench_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXN 8
/* Messages in flight per node (sent, not yet received): heartbeats share
 * the links and mailboxes with them, so a deep backlog delays failure
 * detection (see docs/cluster.md). */
#define SHARD_WINDOW 5000

/* Counters shared with child processes (MAP_SHARED before fork). */
typedef struct shared {
  struct {
    _Alignas(64) atomic_uint_fast64_t recv;   /* messages entities got */
    atomic_uint_fast64_t started;             /* entities started here */
  } node[MAXN];
  _Alignas(64) atomic_int up[MAXN];           /* sees all members up */
  atomic_int go;                              /* parent: start sending */
  atomic_int stop;                            /* parent: shut down */
  atomic_int ready;                           /* children: warmed up */
  _Alignas(64) atomic_uint_fast64_t sent;    /* by the drivers */
  atomic_uint_fast64_t base;                  /* received before they ran */
  double formed_at[MAXN];                     /* bench_now() per node */
} shared;
static shared *sh;

/* ---- the entity and its messages ----------------------------------- */

typedef struct cmd { uint32_t entity; uint32_t n; } cmd;
static const troupe_field cmd_fields[] = {TROUPE_FIELD(cmd, entity, U32),
                                          TROUPE_FIELD(cmd, n, U32)};
static troupe_type Cmd = TROUPE_TYPE("bench.shard.Cmd", 1, cmd, cmd_fields);
static troupe_type Ack = TROUPE_TYPE("bench.shard.Ack", 1, cmd, cmd_fields);

typedef struct counter { uint32_t node; uint64_t n; } counter;

static uint32_t node_of(troupe_system *sys) {
  const char *n = troupe_system_name(sys);
  size_t l = strlen(n);
  return (uint32_t)(n[l - 1] - '0') % MAXN;
}

static int counter_init(troupe_ctx *ctx, void *state, const void *arg) {
  (void)arg;
  counter *c = state;
  c->node = node_of(troupe_ctx_system(ctx));
  atomic_fetch_add_explicit(&sh->node[c->node].started, 1,
                            memory_order_relaxed);
  return 0;
}

static int counter_recv(troupe_ctx *ctx, void *state, const troupe_msg *m) {
  counter *c = state;
  if (m->type != &Cmd) return TROUPE_UNHANDLED;
  c->n++;
  atomic_fetch_add_explicit(&sh->node[c->node].recv, 1, memory_order_relaxed);
  if (!troupe_ref_is_none(m->sender)) troupe_reply(ctx, &Ack, m->data);
  return 0;
}

static const troupe_behavior counter_b = {
  .name = "counter", .state_size = sizeof(counter), .init = counter_init,
  .receive = counter_recv};

static int extract(const troupe_msg *m, char *buf, size_t size) {
  if (m->type != &Cmd) return TROUPE_EINVAL;
  uint32_t v = ((const cmd *)m->data)->entity;
  char tmp[12];
  size_t n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  if (n + 1 > size) return TROUPE_ERANGE;
  for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
  buf[n] = 0;
  return (int)n;
}

static troupe_sharding_def shard_def = {
  .type_name = "counter", .shards = 128, .extract_id = extract,
  .behavior = &counter_b};

static uint64_t total_recv(void) {
  uint64_t t = 0;
  for (int i = 0; i < MAXN; i++) t += atomic_load(&sh->node[i].recv);
  return t;
}

/* ---- the driver: tells its local region ---------------------------- */

typedef struct driver_arg {
  uint64_t count;      /* messages to send */
  uint32_t entities;
  uint32_t seed;
  uint64_t window;     /* max sent - received (all nodes / nodes) */
  uint32_t nodes;
} driver_arg;

typedef struct driver {
  driver_arg a;
  troupe_ref region;
  uint64_t sent;
  uint64_t rng;
} driver;

static troupe_type Go = {.manifest = "bench.shard.Go", .version = 1};

static int driver_init(troupe_ctx *ctx, void *state, const void *arg) {
  driver *d = state;
  d->a = *(const driver_arg *)arg;
  d->rng = 0x9e3779b97f4a7c15ull * (d->a.seed + 1);
  return troupe_sharding_region(troupe_ctx_system(ctx), "counter",
                                &d->region);
}

static int driver_recv(troupe_ctx *ctx, void *state, const troupe_msg *m) {
  driver *d = state;
  if (m->type != &Go) return TROUPE_UNHANDLED;
  if (!atomic_load(&sh->go)) {
    if (!atomic_load(&sh->stop)) troupe_send(ctx, troupe_self(ctx), &Go, NULL);
    return 0;
  }
  uint64_t inflight_cap = d->a.window;
  for (int k = 0; k < 512 && d->sent < d->a.count; k++) {
    uint64_t all = atomic_load_explicit(&sh->sent, memory_order_relaxed);
    uint64_t got = total_recv() - atomic_load(&sh->base);
    if (all > got && all - got > inflight_cap * d->a.nodes) break;
    d->rng ^= d->rng << 13; d->rng ^= d->rng >> 7; d->rng ^= d->rng << 17;
    cmd c = {(uint32_t)(d->rng % d->a.entities), (uint32_t)d->sent};
    int rc = troupe_tell(d->region, &Cmd, &c, TROUPE_REF_NONE);
    if (rc < 0) return rc;
    d->sent++;
    atomic_fetch_add_explicit(&sh->sent, 1, memory_order_relaxed);
  }
  if (d->sent < d->a.count) troupe_send(ctx, troupe_self(ctx), &Go, NULL);
  return 0;
}

static const troupe_behavior driver_b = {
  .name = "driver", .state_size = sizeof(driver), .init = driver_init,
  .receive = driver_recv};

/* ---- helpers -------------------------------------------------------- */

static int members_up(troupe_system *sys, uint32_t n) {
  troupe_member m[MAXN];
  int k = troupe_cluster_members(sys, m, MAXN);
  if (k < 0 || (uint32_t)k != n) return 0;
  for (int i = 0; i < k; i++)
    if (m[i].status != TROUPE_MEMBER_UP || !m[i].reachable) return 0;
  return troupe_cluster_converged(sys);
}

static void pause_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static bool wait_for(bool (*cond)(void *), void *arg, double secs) {
  double end = bench_now() + secs;
  while (bench_now() < end) {
    if (cond(arg)) return true;
    pause_ms(1);
  }
  return cond(arg);
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_sharding: %s: %s (%s)\n", what,
          rc < 0 ? troupe_strerror(rc) : "failed",
          rc < 0 ? troupe_errmsg() : "");
  exit(1);
}

/* ---- sharded-tell over the mesh ----------------------------------- */

static const char *mesh_seeds[] = {"troupe://w0"};
static troupe_system *mesh_sys[MAXN];
static uint32_t mesh_n;
static troupe_cluster_opts mesh_copts = {
  .seeds = mesh_seeds, .nseeds = 1};

static int mesh_init(troupe_system *sys, uint32_t index, void *data) {
  (void)data;
  int rc = troupe_cluster_start(sys, &mesh_copts);
  if (rc < 0) return rc;
  troupe_ref region;
  rc = troupe_sharding_start(sys, &shard_def, &region);
  if (rc < 0) return rc;
  mesh_sys[index] = sys;
  return 0;
}

static bool mesh_all_up(void *arg) {
  (void)arg;
  for (uint32_t i = 0; i < mesh_n; i++)
    if (!mesh_sys[i] || !members_up(mesh_sys[i], mesh_n)) return false;
  return true;
}

static uint64_t recv_target;
static bool recv_reached(void *arg) {
  (void)arg;
  return total_recv() >= recv_target;
}

/* One message to every entity from node `from` (starts them all). */
static void warm_up(troupe_system *sys, uint32_t entities, double secs) {
  troupe_ref region;
  int rc = troupe_sharding_region(sys, "counter", &region);
  if (rc < 0) die("region", rc);
  uint64_t base = total_recv();
  for (uint32_t e = 0; e < entities; e++) {
    cmd c = {e, 0};
    if ((rc = troupe_tell(region, &Cmd, &c, TROUPE_REF_NONE)) < 0)
      die("tell", rc);
  }
  recv_target = base + entities;
  if (!wait_for(recv_reached, NULL, secs)) {
    fprintf(stderr, "bench_sharding: warm-up: %llu of %u delivered\n",
            (unsigned long long)(total_recv() - base), entities);
    exit(1);
  }
}

static void run_drivers(troupe_system **systems, uint32_t n, long count,
                        uint32_t entities, const char *what) {
  uint64_t base = total_recv();
  atomic_store(&sh->base, base);
  atomic_store(&sh->sent, 0);
  atomic_store(&sh->go, 0);
  for (uint32_t i = 0; i < n; i++) {
    driver_arg a = {(uint64_t)count / n + (i < (uint64_t)count % n),
                    entities, i, SHARD_WINDOW, n};
    troupe_spawn_opts o = {.arg = &a, .arg_size = sizeof a};
    troupe_ref d;
    int rc = troupe_system_spawn(systems[i], &driver_b, &o, &d);
    if (rc < 0) die("spawn driver", rc);
    troupe_tell(d, &Go, NULL, TROUPE_REF_NONE);
  }
  double t0 = bench_now();
  atomic_store(&sh->go, 1);
  recv_target = base + (uint64_t)count;
  if (getenv("SHARD_DEBUG"))
    for (int t = 0; t < 8; t++) {
      pause_ms(300);
      for (uint32_t i = 0; i < n; i++) {
        troupe_sharding_stats st;
        if (troupe_sharding_stats_get(systems[i], "counter", &st) == 0)
          fprintf(stderr, "  t%d node %u: shards %u entities %u buffered "
                  "%llu delivered %llu forwarded %llu dropped %llu sent %llu\n",
                  t, i, st.shards, st.entities, (unsigned long long)st.buffered,
                  (unsigned long long)st.delivered,
                  (unsigned long long)st.forwarded,
                  (unsigned long long)st.dropped,
                  (unsigned long long)atomic_load(&sh->sent));
      }
    }
  if (!wait_for(recv_reached, NULL, 120)) {
    fprintf(stderr, "bench_sharding: %s: %llu of %ld delivered\n", what,
            (unsigned long long)(total_recv() - base), count);
    for (uint32_t i = 0; i < n; i++) {
      troupe_sharding_stats st;
      if (troupe_sharding_stats_get(systems[i], "counter", &st) == 0)
        fprintf(stderr, "  node %u: shards %u entities %u buffered %llu "
                "delivered %llu forwarded %llu dropped %llu\n", i,
                st.shards, st.entities, (unsigned long long)st.buffered,
                (unsigned long long)st.delivered,
                (unsigned long long)st.forwarded,
                (unsigned long long)st.dropped);
    }
    exit(1);
  }
  double dt = bench_now() - t0;
  printf("workload=sharded-tell system=troupe value=%.0f unit=msgs/s "
         "transport=%s nodes=%u entities=%u\n", (double)count / dt, what, n,
         entities);
}

static void bench_mesh_tell(long count, uint32_t entities) {
  mesh_n = 4;
  troupe_system_opts so = {.log_level = TROUPE_LOG_WARN, .log_level_set = true};
  troupe_mesh_opts mo = {.workers = mesh_n, .init = mesh_init, .system = &so};
  troupe_mesh *m;
  int rc = troupe_mesh_create(&m, &mo);
  if (rc < 0 || (rc = troupe_mesh_start(m)) < 0) die("mesh", rc);
  if (!wait_for(mesh_all_up, NULL, 20)) die("mesh cluster did not form", 0);
  fprintf(stderr, "bench_sharding: mesh cluster of %u up; warming up\n",
          mesh_n);
  warm_up(mesh_sys[0], entities, 30);
  fprintf(stderr, "bench_sharding: %u entities started; sending\n",
          entities);
  run_drivers(mesh_sys, mesh_n, count, entities, "mesh");
  troupe_mesh_destroy(m);
  memset(mesh_sys, 0, sizeof mesh_sys);
}

/* ---- sharded-ask on one node ---------------------------------------- */

typedef struct asker {
  troupe_ref region;
  uint64_t total, sent, done;
  uint32_t entities;
  double t0, dt;
} asker;

static troupe_type Start = {.manifest = "bench.shard.Start", .version = 1};

static int ask_one(troupe_ctx *ctx, asker *a) {
  cmd c = {(uint32_t)((a->sent * 7919u) % a->entities), (uint32_t)a->sent};
  uint64_t id;
  a->sent++;
  return troupe_ask(ctx, a->region, &Cmd, &c, 10000, &id);
}

static int asker_recv(troupe_ctx *ctx, void *state, const troupe_msg *m) {
  asker *a = state;
  if (m->type == &Start) {
    a->t0 = bench_now();
    long w = bench_env_long("ASK_WINDOW", 256);
    for (long i = 0; i < w && a->sent < a->total; i++) {
      int rc = ask_one(ctx, a);
      if (rc < 0) return rc;
    }
    return 0;
  }
  if (m->type == &TROUPE_T_ASK_TIMEOUT) {
    fprintf(stderr, "bench_sharding: an ask timed out\n");
    exit(1);
  }
  if (m->type != &Ack || !m->ask_id) return TROUPE_UNHANDLED;
  a->done++;
  if (a->sent < a->total) return ask_one(ctx, a);
  if (a->done == a->total) {
    a->dt = bench_now() - a->t0;
    printf("workload=sharded-ask system=troupe value=%.0f unit=rt/s "
           "from=actor nodes=1 entities=%u window=%ld\n",
           (double)a->total / a->dt, a->entities,
           bench_env_long("ASK_WINDOW", 256));
    troupe_system_stop(troupe_ctx_system(ctx));
  }
  return 0;
}

static int asker_init(troupe_ctx *ctx, void *state, const void *arg) {
  (void)ctx;
  memcpy(state, arg, sizeof(asker));
  return 0;
}

static const troupe_behavior asker_b = {
  .name = "asker", .state_size = sizeof(asker), .init = asker_init,
  .receive = asker_recv};

static void bench_ask(long count, uint32_t entities) {
  static const char *seeds[] = {"troupe://ask0"};
  troupe_system_opts so = {.name = "ask0", .log_level = TROUPE_LOG_WARN,
                           .log_level_set = true};
  troupe_system *sys;
  int rc = troupe_system_create(&sys, &so);
  if (rc < 0) die("system", rc);
  troupe_cluster_opts co = {.seeds = seeds, .nseeds = 1, .gossip_ms = 50};
  troupe_ref region, ref;
  if ((rc = troupe_cluster_start(sys, &co)) < 0) die("cluster", rc);
  if ((rc = troupe_sharding_start(sys, &shard_def, &region)) < 0)
    die("sharding", rc);
  if ((rc = troupe_system_start(sys)) < 0) die("start", rc);
  mesh_sys[0] = sys;
  mesh_n = 1;
  if (!wait_for(mesh_all_up, NULL, 20)) die("one-node cluster", 0);
  warm_up(sys, entities, 30);
  asker init = {region, (uint64_t)count, 0, 0, entities, 0, 0};
  troupe_spawn_opts o = {.name = "asker", .arg = &init,
                         .arg_size = sizeof init};
  if ((rc = troupe_system_spawn(sys, &asker_b, &o, &ref)) < 0)
    die("asker", rc);
  troupe_tell(ref, &Start, NULL, TROUPE_REF_NONE);
  troupe_system_wait(sys, 0);
  troupe_system_destroy(sys);
  mesh_sys[0] = NULL;
}

/* ---- three processes over TCP --------------------------------------- */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &l) < 0)
    die("free port", 0);
  close(fd);
  return ntohs(a.sin_port);
}

static atomic_uint victim_entity;   /* an id started on the victim + 1 */
static shared *tcp_victim_flag;

static int tcp_counter_init(troupe_ctx *ctx, void *state, const void *arg) {
  int rc = counter_init(ctx, state, arg);
  counter *c = state;
  if (c->node == 2 && arg) {
    unsigned v = (unsigned)atoi((const char *)arg) + 1;
    unsigned zero = 0;
    atomic_compare_exchange_strong(&victim_entity, &zero, v);
  }
  return rc;
}
static const troupe_behavior tcp_counter_b = {
  .name = "counter", .state_size = sizeof(counter), .init = tcp_counter_init,
  .receive = counter_recv};

typedef struct tcp_plan {
  int ports[3];
  bool fast;            /* test intervals instead of the defaults */
  long count;
  uint32_t entities;
  atomic_uint victim;   /* entity id + 1 living on node 2 */
  atomic_int probe;     /* parent: node 2 killed, probe from node 0 */
  double answered_at;
} tcp_plan;
static tcp_plan *plan;

static bool self_up(void *arg) { return members_up(arg, 3); }

static void tcp_child(int i) {
  char name[8], listen[64], seed[96];
  snprintf(name, sizeof name, "n%d", i);
  snprintf(listen, sizeof listen, "tcp://127.0.0.1:%d", plan->ports[i]);
  snprintf(seed, sizeof seed, "troupe://n0@127.0.0.1:%d", plan->ports[0]);
  const char *seeds[] = {seed};
  troupe_system_opts so = {.name = name,
                           .log_level = getenv("SHARD_DEBUG") ? TROUPE_LOG_INFO
                                                              : TROUPE_LOG_ERROR,
                           .log_level_set = true};
  troupe_system *sys;
  int rc = troupe_system_create(&sys, &so);
  if (rc < 0) die("system", rc);
  troupe_remote_opts ro = {.listen = listen};
  if ((rc = troupe_remote_start(sys, &ro)) < 0) die("remote", rc);
  troupe_cluster_opts co = {.seeds = seeds, .nseeds = 1};
  if (plan->fast) { co.gossip_ms = 50; co.heartbeat_ms = 200; }
  if ((rc = troupe_cluster_start(sys, &co)) < 0) die("cluster", rc);
  troupe_sharding_def d = shard_def;
  d.behavior = &tcp_counter_b;
  troupe_ref region;
  if ((rc = troupe_sharding_start(sys, &d, &region)) < 0) die("sharding", rc);
  if ((rc = troupe_system_start(sys)) < 0) die("start", rc);
  if (!wait_for(self_up, sys, 20)) die("tcp cluster did not form", 0);
  sh->formed_at[i] = bench_now();
  atomic_store(&sh->up[i], 1);
  /* node 0 warms up every entity, then everyone drives */
  while (!atomic_load(&sh->go) && !atomic_load(&sh->stop) &&
         !atomic_load(&plan->probe)) {
    if (i == 0 && atomic_load(&sh->ready) == 0) {
      bool all = true;
      for (int k = 0; k < 3; k++) all = all && atomic_load(&sh->up[k]);
      if (all) {
        warm_up(sys, plan->entities, 60);
        atomic_store(&sh->ready, 1);
      }
    }
    if (i == 2 && atomic_load(&victim_entity))
      atomic_store(&plan->victim, atomic_load(&victim_entity));
    pause_ms(1);
  }
  if (atomic_load(&sh->go) && plan->count > 0) {
    troupe_system *one[1] = {sys};
    driver_arg a = {(uint64_t)plan->count / 3, plan->entities, (uint32_t)i,
                    SHARD_WINDOW, 3};
    troupe_spawn_opts o = {.arg = &a, .arg_size = sizeof a};
    troupe_ref dr;
    (void)one;
    if ((rc = troupe_system_spawn(sys, &driver_b, &o, &dr)) < 0)
      die("driver", rc);
    troupe_tell(dr, &Go, NULL, TROUPE_REF_NONE);
  }
  while (!atomic_load(&sh->stop)) {
    if (i == 0 && atomic_load(&plan->probe) == 1) {
      cmd c = {atomic_load(&plan->victim) - 1, 0};
      troupe_reply_msg r;
      if (troupe_ask_blocking(sys, region, &Cmd, &c, 250, &r) == 0) {
        troupe_reply_free(&r);
        plan->answered_at = bench_now();
        atomic_store(&plan->probe, 2);
      }
      continue;
    }
    pause_ms(1);
  }
  troupe_system_stop(sys);
  troupe_system_wait(sys, 10000);
  _exit(0);
}

static bool all_tcp_up(void *arg) {
  (void)arg;
  for (int k = 0; k < 3; k++)
    if (!atomic_load(&sh->up[k])) return false;
  return atomic_load(&sh->ready) != 0;
}

static bool probe_done(void *arg) {
  (void)arg;
  return atomic_load(&plan->probe) == 2;
}

static void bench_tcp3(long count, uint32_t entities, bool failover) {
  memset((void *)sh, 0, sizeof *sh);
  memset((void *)plan, 0, sizeof *plan);
  plan->fast = false;   /* default cluster settings throughout */
  plan->count = failover ? 0 : count;
  plan->entities = entities;
  for (int k = 0; k < 3; k++) plan->ports[k] = free_port();
  pid_t pid[3];
  double t0 = bench_now();
  for (int k = 0; k < 3; k++) {
    pid[k] = fork();
    if (pid[k] < 0) die("fork", 0);
    if (pid[k] == 0) tcp_child(k);
  }
  if (!wait_for(all_tcp_up, NULL, 90)) {
    for (int k = 0; k < 3; k++) kill(pid[k], SIGKILL);
    die("3 processes did not form a cluster and warm up", 0);
  }
  double formed = 0;
  for (int k = 0; k < 3; k++)
    if (sh->formed_at[k] - t0 > formed) formed = sh->formed_at[k] - t0;
  if (!failover) {
    printf("workload=cluster-formation system=troupe value=%.0f unit=ms "
           "transport=tcp nodes=3 settings=default\n", formed * 1000);
    uint64_t base = total_recv();
    atomic_store(&sh->base, base);
    double t1 = bench_now();
    atomic_store(&sh->go, 1);
    recv_target = base + (uint64_t)(count / 3) * 3;
    bool ok = wait_for(recv_reached, NULL, 120);
    double dt = bench_now() - t1;
    if (ok)
      printf("workload=sharded-tell system=troupe value=%.0f unit=msgs/s "
             "transport=tcp nodes=3 entities=%u\n",
             (double)(count / 3 * 3) / dt, entities);
    else
      fprintf(stderr, "bench_sharding: tcp: %llu of %ld delivered\n",
              (unsigned long long)(total_recv() - base), count);
    atomic_store(&sh->stop, 1);
    for (int k = 0; k < 3; k++) waitpid(pid[k], NULL, 0);
    if (!ok) exit(1);
    return;
  }
  for (int k = 0; k < 1000 && !atomic_load(&plan->victim); k++) pause_ms(1);
  if (!atomic_load(&plan->victim)) {
    for (int k = 0; k < 3; k++) kill(pid[k], SIGKILL);
    die("no entity on the victim node", 0);
  }
  kill(pid[2], SIGKILL);
  double tk = bench_now();
  waitpid(pid[2], NULL, 0);
  atomic_store(&plan->probe, 1);
  bool ok = wait_for(probe_done, NULL, 60);
  if (ok)
    printf("workload=failover system=troupe value=%.0f unit=ms "
           "transport=tcp nodes=3 settings=default\n",
           (plan->answered_at - tk) * 1000);
  atomic_store(&sh->stop, 1);
  for (int k = 0; k < 2; k++) waitpid(pid[k], NULL, 0);
  if (!ok) die("the victim's entity never answered again", 0);
}

static bool selected(const char *w) {
  const char *b = getenv("BENCH");
  return !b || !*b || strstr(b, w) != NULL;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  troupe_type_register(&Cmd);
  troupe_type_register(&Ack);
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  plan = mmap(NULL, sizeof *plan, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED || plan == MAP_FAILED) die("mmap", 0);
  (void)tcp_victim_flag;
  uint32_t entities = (uint32_t)bench_env_long("SHARD_ENTITIES", 10000);
  if (selected("sharded-tell")) {
    memset((void *)sh, 0, sizeof *sh);
    bench_mesh_tell(bench_env_long("SHARD_N", 4000000), entities);
  }
  if (selected("sharded-ask")) {
    memset((void *)sh, 0, sizeof *sh);
    bench_ask(bench_env_long("SHARD_ASKS", 400000), entities);
  }
  if (selected("sharded-tell") || selected("cluster-formation"))
    bench_tcp3(bench_env_long("SHARD_TCP_N", 1000000), entities, false);
  if (selected("failover")) bench_tcp3(0, entities, true);
  return 0;
}
