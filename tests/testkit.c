/*
 * testkit.c: the multi-node test kit (see testkit.h).
 *
 * TK_MEM. Every node is a system with remoting on the in-memory transport
 * in manual delivery mode, driven from the test thread with
 * troupe__system_step_begin/step/end. A *settle* steps every live loop
 * and pumps the network until two passes in a row found nothing to do
 * (no frame delivered or in flight, no system with work queued); a
 * *round* moves the virtual clock one tick, queues troupe_cluster_tick on
 * every live cluster node and settles. Waits check their condition after
 * every settle, so the clock moves only when the system is quiet.
 *
 * TK_MESH. Node i is worker i of a troupe_mesh. A worker's init callback
 * holds the worker until the kit starts that node (tk_start_node), so a
 * node that joins later has the same set-up path as the first ones. The
 * mesh's on_lost callback tells the kit when a node is gone for good.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "testkit.h"

#include "cluster/internal.h"
#include "core/internal.h"
#include "mesh/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

enum { NODE_PENDING = 0, NODE_RUNNING, NODE_GONE };

typedef struct tk_node {
  atomic_int state;
  troupe_system *sys;              /* TK_MEM */
  char name[16];                   /* system name "n<i>" */
  char netaddr[24];                /* TK_MEM: "n<i>:1" */
  char listen[96];                 /* TK_MEM: "mem://<net>/n<i>:1" */
  char address[TROUPE_ADDRESS_MAX];
  /* TK_MESH start hand-shake (under t->lock) */
  bool release, init_done;
  int init_rc;
} tk_node;

typedef struct tk_bar {
  char name[64];
  uint64_t arrived;                /* bit per node */
} tk_bar;

struct tk {
  tk_variant v;
  uint32_t n;
  tk_opts o;
  char name[48];
  troupe_cluster_opts copts;
  const char *seeds[1];
  troupe_system_opts sys_tmpl;
  tk_node node[TK_MAX_NODES];
  /* TK_MEM */
  troupe__memnet *net;
  _Atomic uint64_t vnow;
  /* TK_MESH */
  troupe_mesh *mesh;
  /* shared with node threads */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool stopping;
  tk_bar bar[64];
  uint32_t nbar;
  char *trace;
  size_t tlen, tcap;
  char err[768];
};

/* ------------------------------------------------------------------ */
/* Small things */

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

const char *tk_variant_name(tk_variant v) {
  return v == TK_MEM ? "mem" : v == TK_MESH ? "mesh" : "?";
}

static int tk_fail(tk *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tk_fail(tk *t, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->err, sizeof t->err, fmt, ap);
  va_end(ap);
  fprintf(stderr, "tk(%s): %s (%s)\n", tk_variant_name(t->v), t->err,
          troupe_err_name(code));
  return troupe__err(code, "%s", t->err);
}

const char *tk_errmsg(const tk *t) { return t ? t->err : ""; }
tk_variant tk_variant_of(const tk *t) { return t->v; }
uint32_t tk_size(const tk *t) { return t->n; }

uint64_t tk_now(tk *t) {
  return t->v == TK_MEM ? atomic_load(&t->vnow) : mono_ms();
}

static uint64_t tk_clock(void *data) {
  tk *t = data;
  return atomic_load(&t->vnow);
}

const char *tk_address(const tk *t, uint32_t i) {
  return t && i < t->n ? t->node[i].address : "";
}

bool tk_alive(tk *t, uint32_t i) {
  return t && i < t->n && atomic_load(&t->node[i].state) == NODE_RUNNING;
}

troupe_system *tk_system(tk *t, uint32_t i) {
  if (!tk_alive(t, i)) return NULL;
  if (t->v == TK_MEM) return t->node[i].sys;
  troupe_system *sys = NULL;
  pthread_mutex_lock(&t->mesh->lock);
  sys = t->mesh->w[i].sys;
  pthread_mutex_unlock(&t->mesh->lock);
  return sys;
}

/* ------------------------------------------------------------------ */
/* Node set-up, common to both variants: cluster, then the test's init. */

static int node_setup(tk *t, uint32_t i, troupe_system *sys) {
  int rc;
  if (t->o.cluster) {
    rc = troupe_cluster_start(sys, &t->copts);
    if (rc < 0) return rc;
  }
  return t->o.init ? t->o.init(t, i, sys, t->o.data) : 0;
}

/* ------------------------------------------------------------------ */
/* TK_MEM: stepping */

static void mem_node_end(tk *t, uint32_t i) {
  tk_node *nd = &t->node[i];
  troupe__system_step_end(nd->sys);
  troupe_system_destroy(nd->sys);
  nd->sys = NULL;
  atomic_store(&nd->state, NODE_GONE);
}

static bool mem_step_node(tk *t, uint32_t i) {
  tk_node *nd = &t->node[i];
  if (atomic_load(&nd->state) != NODE_RUNNING) return false;
  if (!troupe__system_step(nd->sys)) {
    mem_node_end(t, i);
    return true;
  }
  return false;
}

static bool mem_pending(troupe_system *s) {
  return s->idle_active || atomic_load(&s->wake_pending) || s->rq_head ||
         s->sq_head;
}

/* Step and pump until two passes in a row found nothing to do. */
static void mem_settle(tk *t) {
  int quiet = 0;
  for (int k = 0; k < 100000 && quiet < 2; k++) {
    bool busy = false;
    for (uint32_t i = 0; i < t->n; i++) busy |= mem_step_node(t, i);
    if (troupe__memnet_pump(t->net) > 0) busy = true;
    troupe__memnet_stats st;
    troupe__memnet_get_stats(t->net, &st);
    if (st.in_flight) busy = true;
    for (uint32_t i = 0; i < t->n && !busy; i++)
      if (atomic_load(&t->node[i].state) == NODE_RUNNING &&
          mem_pending(t->node[i].sys))
        busy = true;
    quiet = busy ? 0 : quiet + 1;
  }
}

static void mem_round(tk *t) {
  uint64_t tick = t->o.tick_ms;
  atomic_fetch_add(&t->vnow, tick);
  if (t->o.cluster)
    for (uint32_t i = 0; i < t->n; i++)
      if (atomic_load(&t->node[i].state) == NODE_RUNNING)
        troupe_cluster_tick(t->node[i].sys);
  mem_settle(t);
}

static int mem_node_start(tk *t, uint32_t i) {
  tk_node *nd = &t->node[i];
  troupe_system_opts so = t->sys_tmpl;
  so.name = nd->name;
  troupe_system *sys;
  int rc = troupe_system_create(&sys, &so);
  if (rc < 0)
    return tk_fail(t, rc, "node %u: troupe_system_create: %s", i,
                   troupe_errmsg());
  sys->rng = (t->o.seed ? t->o.seed : 0x7e57c0deull) + i;
  /* membership notices a lost node through its failure detector, not
   * through remoting's (real-time) node-lost timer */
  troupe_remote_opts ro = {.listen = nd->listen, .node_lost_ms = 600000};
  rc = troupe_remote_start(sys, &ro);
  if (rc < 0) {
    tk_fail(t, rc, "node %u: troupe_remote_start(%s): %s", i, nd->listen,
            troupe_errmsg());
    troupe_system_destroy(sys);
    return rc;
  }
  rc = node_setup(t, i, sys);
  if (rc < 0) {
    tk_fail(t, rc, "node %u: set-up failed: %s", i, troupe_errmsg());
    troupe_system_destroy(sys);
    return rc;
  }
  rc = troupe__system_step_begin(sys);
  if (rc < 0) {
    troupe_system_destroy(sys);
    return tk_fail(t, rc, "node %u: step_begin: %s", i, troupe_errmsg());
  }
  nd->sys = sys;
  atomic_store(&nd->state, NODE_RUNNING);
  return 0;
}

/* Stop node i's system and step it alone until it has terminated. */
static int mem_node_stop(tk *t, uint32_t i, bool others_too) {
  tk_node *nd = &t->node[i];
  if (atomic_load(&nd->state) != NODE_RUNNING) return 0;
  troupe_system_stop(nd->sys);
  uint64_t dl = mono_ms() + 10000;
  while (atomic_load(&nd->state) == NODE_RUNNING) {
    if (mono_ms() > dl)
      return tk_fail(t, TROUPE_ETIMEDOUT, "node %u did not stop", i);
    if (others_too) {
      for (uint32_t j = 0; j < t->n; j++) mem_step_node(t, j);
      troupe__memnet_pump(t->net);
    } else {
      mem_step_node(t, i);
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* TK_MESH: the workers' side */

static void mesh_set_started(tk *t, uint32_t i, int rc) {
  pthread_mutex_lock(&t->lock);
  t->node[i].init_rc = rc;
  t->node[i].init_done = true;
  if (rc == 0) atomic_store(&t->node[i].state, NODE_RUNNING);
  pthread_cond_broadcast(&t->cond);
  pthread_mutex_unlock(&t->lock);
}

typedef struct mesh_up_arg {
  tk *t;
  uint32_t i;
} mesh_up_arg;

static void mesh_up_on_loop(troupe_system *sys, void *arg) {
  mesh_up_arg *a = arg;
  /* a system stopped before it ran drains its inbox while terminating */
  mesh_set_started(a->t, a->i, atomic_load(&sys->state) ==
                                       TROUPE__SYS_RUNNING ? 0
                                                           : TROUPE_ECLOSED);
  free(a);
}

static int mesh_init(troupe_system *sys, uint32_t i, void *data) {
  tk *t = data;
  tk_node *nd = &t->node[i];
  pthread_mutex_lock(&t->lock);
  while (!nd->release && !t->stopping) pthread_cond_wait(&t->cond, &t->lock);
  bool go = !t->stopping;
  pthread_mutex_unlock(&t->lock);
  if (!go) return 0;
  int rc = node_setup(t, i, sys);
  /* the node counts as started once its loop runs */
  if (rc == 0) {
    mesh_up_arg *a = malloc(sizeof *a);
    if (!a) rc = TROUPE_ENOMEM;
    else {
      a->t = t;
      a->i = i;
      rc = troupe__post(sys, mesh_up_on_loop, a);
      if (rc < 0) free(a);
    }
  }
  if (rc < 0) mesh_set_started(t, i, rc);
  return rc;
}

static void mesh_on_lost(void *data, uint32_t i, int rc, bool restarting) {
  tk *t = data;
  (void)rc;
  if (restarting) return;
  pthread_mutex_lock(&t->lock);
  atomic_store(&t->node[i].state, NODE_GONE);
  pthread_cond_broadcast(&t->cond);
  pthread_mutex_unlock(&t->lock);
}

static int mesh_release(tk *t, uint32_t i) {
  pthread_mutex_lock(&t->lock);
  t->node[i].release = true;
  pthread_cond_broadcast(&t->cond);
  pthread_mutex_unlock(&t->lock);
  return 0;
}

static int mesh_wait_started(tk *t, uint32_t i) {
  uint64_t dl = mono_ms() + t->o.timeout_ms;
  struct timespec ts;
  pthread_mutex_lock(&t->lock);
  while (!t->node[i].init_done && mono_ms() < dl) {
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 10 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&t->cond, &t->lock, &ts);
  }
  bool done = t->node[i].init_done;
  int rc = t->node[i].init_rc;
  pthread_mutex_unlock(&t->lock);
  if (!done)
    return tk_fail(t, TROUPE_ETIMEDOUT, "node %u did not start within "
                   "%" PRIu64 " ms", i, t->o.timeout_ms);
  if (rc < 0) return tk_fail(t, rc, "node %u: set-up failed", i);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Start and stop */

static atomic_uint kit_seq;
static int start_nodes(tk *t);

static void fill_cluster_defaults(tk *t) {
  troupe_cluster_opts *c = &t->copts;
  *c = t->o.cluster_opts;
  t->seeds[0] = t->node[0].address;
  c->seeds = t->seeds;
  c->nseeds = 1;
  bool mem = t->v == TK_MEM;
  if (!c->gossip_ms) c->gossip_ms = 50;
  if (!c->heartbeat_ms) c->heartbeat_ms = 50;
  if (!c->acceptable_pause_ms) c->acceptable_pause_ms = mem ? 200 : 600;
  if (!c->stable_after_ms) c->stable_after_ms = mem ? 300 : 600;
  if (!c->retry_join_ms) c->retry_join_ms = 100;
  if (mem) {
    c->clock = tk_clock;
    c->clock_data = t;
  } else {
    c->clock = NULL;
    c->clock_data = NULL;
  }
}

int tk_start(tk **out, tk_variant variant, uint32_t n, const tk_opts *opts) {
  if (!out) return troupe__err(TROUPE_EINVAL, "tk_start: NULL");
  *out = NULL;
  if ((variant != TK_MEM && variant != TK_MESH) || n == 0 ||
      n > TK_MAX_NODES)
    return troupe__err(TROUPE_EINVAL, "tk_start: variant %d, %u nodes",
                       (int)variant, n);
  tk *t = calloc(1, sizeof *t);
  if (!t) return troupe__err(TROUPE_ENOMEM, "tk_start");
  t->v = variant;
  t->n = n;
  if (opts) t->o = *opts;
  if (!t->o.tick_ms) t->o.tick_ms = 10;
  if (!t->o.timeout_ms) t->o.timeout_ms = 10000;
  if (!t->o.initial || t->o.initial > n) t->o.initial = n;
  unsigned seq = atomic_fetch_add(&kit_seq, 1);
  if (t->o.name) snprintf(t->name, sizeof t->name, "%s", t->o.name);
  else snprintf(t->name, sizeof t->name, "tk%u", seq);
  static const troupe_system_opts quiet = {.log_level = TROUPE_LOG_ERROR,
                                           .log_level_set = true};
  t->sys_tmpl = t->o.system ? *t->o.system : quiet;
  pthread_mutex_init(&t->lock, NULL);
  pthread_cond_init(&t->cond, NULL);
  atomic_store(&t->vnow, 1000000);
  for (uint32_t i = 0; i < n; i++) {
    tk_node *nd = &t->node[i];
    snprintf(nd->name, sizeof nd->name, "n%u", i);
    if (variant == TK_MEM) {
      snprintf(nd->netaddr, sizeof nd->netaddr, "n%u:1", i);
      snprintf(nd->listen, sizeof nd->listen, "mem://%s/%s", t->name,
               nd->netaddr);
      snprintf(nd->address, sizeof nd->address, "troupe://%s@%s", nd->name,
               nd->netaddr);
    } else {
      snprintf(nd->address, sizeof nd->address, "troupe://%s", nd->name);
    }
  }
  fill_cluster_defaults(t);
  int rc = start_nodes(t);
  if (rc < 0) {
    tk_stop(t);
    return rc;
  }
  *out = t;
  return 0;
}

static int start_nodes(tk *t) {
  int rc = 0;
  uint32_t n = t->n;
  if (t->v == TK_MEM) {
    t->net = troupe__memnet_get(t->name);
    if (!t->net) return tk_fail(t, TROUPE_ENOMEM, "memnet %s", t->name);
    troupe__memnet_set_manual(t->net, true);
    for (uint32_t i = 0; i < t->o.initial && rc == 0; i++)
      rc = mem_node_start(t, i);
    if (rc == 0) mem_settle(t);
    return rc;
  }
  troupe_mesh_opts mo = {.workers = n, .name_prefix = "n",
                         .init = mesh_init, .data = t,
                         .on_lost = mesh_on_lost, .system = &t->sys_tmpl};
  rc = troupe_mesh_create(&t->mesh, &mo);
  if (rc < 0) return tk_fail(t, rc, "troupe_mesh_create: %s", troupe_errmsg());
  rc = troupe_mesh_start(t->mesh);
  if (rc < 0) return tk_fail(t, rc, "troupe_mesh_start: %s", troupe_errmsg());
  for (uint32_t i = 0; i < t->o.initial; i++) mesh_release(t, i);
  for (uint32_t i = 0; i < t->o.initial && rc == 0; i++)
    rc = mesh_wait_started(t, i);
  return rc;
}

int tk_start_node(tk *t, uint32_t i) {
  if (!t || i >= t->n)
    return troupe__err(TROUPE_EINVAL, "tk_start_node: bad node");
  if (t->v == TK_MEM) {
    if (t->node[i].sys || atomic_load(&t->node[i].state) != NODE_PENDING)
      return tk_fail(t, TROUPE_ESTATE, "node %u was already started", i);
    return mem_node_start(t, i);
  }
  pthread_mutex_lock(&t->lock);
  bool was = t->node[i].release;
  pthread_mutex_unlock(&t->lock);
  if (was) return tk_fail(t, TROUPE_ESTATE, "node %u was already started", i);
  mesh_release(t, i);
  return mesh_wait_started(t, i);
}

void tk_stop(tk *t) {
  if (!t) return;
  if (t->v == TK_MEM) {
    for (uint32_t i = 0; i < t->n; i++)
      if (atomic_load(&t->node[i].state) == NODE_RUNNING)
        troupe_system_stop(t->node[i].sys);
    uint64_t dl = mono_ms() + 10000;
    for (;;) {
      bool any = false;
      for (uint32_t i = 0; i < t->n; i++) {
        mem_step_node(t, i);
        any |= atomic_load(&t->node[i].state) == NODE_RUNNING;
      }
      if (!any) break;
      if (t->net) troupe__memnet_pump(t->net);
      if (mono_ms() > dl) {
        /* a system that cannot stop cannot be freed either: leak it */
        for (uint32_t i = 0; i < t->n; i++)
          if (atomic_load(&t->node[i].state) == NODE_RUNNING)
            tk_fail(t, TROUPE_ETIMEDOUT, "node %u did not stop", i);
        break;
      }
    }
    if (t->net) troupe__memnet_put(t->net);
  } else {
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (t->mesh) troupe_mesh_destroy(t->mesh);
  }
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cond);
  free(t->trace);
  free(t);
}

/* ------------------------------------------------------------------ */
/* Waiting */

/* true when cond held within timeout_ms. */
static bool wait_for(tk *t, tk_cond_fn cond, void *data,
                     uint64_t timeout_ms) {
  if (t->v == TK_MEM) {
    uint64_t dl = atomic_load(&t->vnow) + timeout_ms;
    mem_settle(t);
    while (!cond(t, data)) {
      if (atomic_load(&t->vnow) >= dl) return false;
      mem_round(t);
    }
    return true;
  }
  uint64_t dl = mono_ms() + timeout_ms;
  while (!cond(t, data)) {
    if (mono_ms() >= dl) return false;
    sleep_ms(1);
  }
  return true;
}

int tk_wait_named(tk *t, const char *what, tk_cond_fn cond, void *data,
                  uint64_t timeout_ms) {
  if (!t || !cond) return troupe__err(TROUPE_EINVAL, "tk_wait: NULL");
  if (wait_for(t, cond, data, timeout_ms)) return 0;
  return tk_fail(t, TROUPE_ETIMEDOUT, "timed out after %" PRIu64 " ms (%s) "
                 "waiting for %s", timeout_ms,
                 t->v == TK_MEM ? "virtual" : "real", what ? what : "?");
}

static bool never(tk *t, void *data) {
  (void)t; (void)data;
  return false;
}

int tk_advance(tk *t, uint64_t ms) {
  if (!t) return troupe__err(TROUPE_EINVAL, "tk_advance: NULL");
  wait_for(t, never, NULL, ms);
  return 0;
}

/* The member list of node i as it sees it (pinned in TK_MESH). */
typedef struct members_q {
  troupe_member m[TK_MAX_NODES + 8];
  int count;
  bool converged;
} members_q;

static const char *status_name(troupe_member_status s) {
  switch (s) {
  case TROUPE_MEMBER_JOINING: return "joining";
  case TROUPE_MEMBER_UP: return "up";
  case TROUPE_MEMBER_LEAVING: return "leaving";
  case TROUPE_MEMBER_EXITING: return "exiting";
  case TROUPE_MEMBER_REMOVED: return "removed";
  case TROUPE_MEMBER_DOWN: return "down";
  }
  return "?";
}

static int members_fn(troupe_system *sys, void *data) {
  members_q *q = data;
  q->count = troupe_cluster_members(sys, q->m, TK_MAX_NODES + 8);
  q->converged = troupe_cluster_converged(sys);
  return q->count < 0 ? q->count : 0;
}

static bool members_of(tk *t, uint32_t i, members_q *q) {
  memset(q, 0, sizeof *q);
  if (tk_with(t, i, members_fn, q) < 0) return false;
  if (q->count > TK_MAX_NODES + 8) q->count = TK_MAX_NODES + 8;
  return true;
}

static const troupe_member *find_member(const members_q *q,
                                        const char *address) {
  for (int k = 0; k < q->count; k++)
    if (strcmp(q->m[k].address, address) == 0) return &q->m[k];
  return NULL;
}

static void describe_members(tk *t, uint32_t i, char *buf, size_t size) {
  members_q q;
  size_t used = 0;
  buf[0] = '\0';
  if (!members_of(t, i, &q)) {
    snprintf(buf, size, "node %u not running", i);
    return;
  }
  used += (size_t)snprintf(buf + used, size - used, "node %u sees%s:", i,
                           q.converged ? " (converged)" : "");
  for (int k = 0; k < q.count && used < size; k++)
    used += (size_t)snprintf(buf + used, size - used, " %s=%s%s",
                             q.m[k].address,
                             status_name(q.m[k].status),
                             q.m[k].reachable ? "" : "(unreachable)");
}

typedef struct mem_cond {
  uint32_t node, subject, n_up;
  troupe_member_status status;
  bool reachable;
} mem_cond;

static bool cond_members(tk *t, void *data) {
  mem_cond *c = data;
  members_q q;
  if (!members_of(t, c->node, &q)) return false;
  uint32_t up = 0;
  for (int k = 0; k < q.count; k++)
    if (q.m[k].status == TROUPE_MEMBER_UP) up++;
  return up == c->n_up;
}

static int fail_with_view(tk *t, uint32_t node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_with_view(tk *t, uint32_t node, const char *fmt, ...) {
  char what[256], view[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  describe_members(t, node, view, sizeof view);
  return tk_fail(t, TROUPE_ETIMEDOUT, "%s; %s", what, view);
}

int tk_wait_members(tk *t, uint32_t node, uint32_t n_up,
                    uint64_t timeout_ms) {
  if (!t || node >= t->n)
    return troupe__err(TROUPE_EINVAL, "tk_wait_members: bad node");
  mem_cond c = {.node = node, .n_up = n_up};
  if (wait_for(t, cond_members, &c, timeout_ms)) return 0;
  return fail_with_view(t, node, "timed out after %" PRIu64 " ms waiting "
                        "for node %u to see %u members up", timeout_ms, node,
                        n_up);
}

static bool cond_status(tk *t, void *data) {
  mem_cond *c = data;
  members_q q;
  if (!members_of(t, c->node, &q)) return false;
  const troupe_member *m = find_member(&q, t->node[c->subject].address);
  troupe_member_status s = m ? m->status : (troupe_member_status)0;
  return s == c->status;
}

int tk_wait_status(tk *t, uint32_t observer, uint32_t subject,
                   troupe_member_status status, uint64_t timeout_ms) {
  if (!t || observer >= t->n || subject >= t->n)
    return troupe__err(TROUPE_EINVAL, "tk_wait_status: bad node");
  mem_cond c = {.node = observer, .subject = subject, .status = status};
  if (wait_for(t, cond_status, &c, timeout_ms)) return 0;
  return fail_with_view(t, observer, "timed out after %" PRIu64 " ms "
                        "waiting for node %u to see node %u %s", timeout_ms,
                        observer, subject,
                        status ? status_name(status)
                               : "absent");
}

static bool cond_reachable(tk *t, void *data) {
  mem_cond *c = data;
  members_q q;
  if (!members_of(t, c->node, &q)) return false;
  const troupe_member *m = find_member(&q, t->node[c->subject].address);
  return m && m->reachable == c->reachable;
}

int tk_wait_reachable(tk *t, uint32_t observer, uint32_t subject,
                      bool reachable, uint64_t timeout_ms) {
  if (!t || observer >= t->n || subject >= t->n)
    return troupe__err(TROUPE_EINVAL, "tk_wait_reachable: bad node");
  mem_cond c = {.node = observer, .subject = subject, .reachable = reachable};
  if (wait_for(t, cond_reachable, &c, timeout_ms)) return 0;
  return fail_with_view(t, observer, "timed out after %" PRIu64 " ms "
                        "waiting for node %u to see node %u %s", timeout_ms,
                        observer, subject,
                        reachable ? "reachable" : "unreachable");
}

static bool cond_converged(tk *t, void *data) {
  (void)data;
  /* the nodes whose daemon runs and that hold themselves members */
  static members_q q[TK_MAX_NODES];
  bool in[TK_MAX_NODES];
  uint32_t count = 0;
  for (uint32_t i = 0; i < t->n; i++) {
    in[i] = tk_alive(t, i) && members_of(t, i, &q[i]);
    if (in[i]) {
      /* a node on its way out (exiting, down) is no longer counted */
      const troupe_member *self = find_member(&q[i], t->node[i].address);
      in[i] = !self || (self->status != TROUPE_MEMBER_EXITING &&
                        self->status != TROUPE_MEMBER_DOWN &&
                        self->status != TROUPE_MEMBER_REMOVED);
    }
    count += in[i];
  }
  for (uint32_t i = 0; i < t->n; i++) {
    if (!in[i]) continue;
    if (!q[i].converged || (uint32_t)q[i].count != count) return false;
    for (uint32_t j = 0; j < t->n; j++) {
      if (!in[j]) continue;
      const troupe_member *m = find_member(&q[i], t->node[j].address);
      if (!m || m->status != TROUPE_MEMBER_UP || !m->reachable) return false;
    }
  }
  return count > 0;
}

int tk_wait_converged(tk *t, uint64_t timeout_ms) {
  if (!t) return troupe__err(TROUPE_EINVAL, "tk_wait_converged: NULL");
  if (wait_for(t, cond_converged, NULL, timeout_ms)) return 0;
  /* name the first node that disagrees */
  uint32_t first = 0;
  for (uint32_t i = 0; i < t->n; i++)
    if (tk_alive(t, i)) {
      first = i;
      members_q q;
      if (members_of(t, i, &q) && !q.converged) break;
    }
  return fail_with_view(t, first, "timed out after %" PRIu64 " ms waiting "
                        "for every live node to be converged with all live "
                        "nodes up", timeout_ms);
}

static bool cond_removed(tk *t, void *data) {
  mem_cond *c = data;
  for (uint32_t i = 0; i < t->n; i++) {
    if (i == c->subject || !tk_alive(t, i)) continue;
    members_q q;
    if (!members_of(t, i, &q)) continue;   /* stopped meanwhile */
    if (find_member(&q, t->node[c->subject].address)) {
      c->node = i;
      return false;
    }
  }
  return true;
}

int tk_wait_removed(tk *t, uint32_t subject, uint64_t timeout_ms) {
  if (!t || subject >= t->n)
    return troupe__err(TROUPE_EINVAL, "tk_wait_removed: bad node");
  mem_cond c = {.subject = subject};
  if (wait_for(t, cond_removed, &c, timeout_ms)) return 0;
  return fail_with_view(t, c.node, "timed out after %" PRIu64 " ms waiting "
                        "for node %u to be removed everywhere", timeout_ms,
                        subject);
}

static bool cond_stopped(tk *t, void *data) {
  return atomic_load(&t->node[*(uint32_t *)data].state) == NODE_GONE;
}

int tk_wait_stopped(tk *t, uint32_t i, uint64_t timeout_ms) {
  if (!t || i >= t->n)
    return troupe__err(TROUPE_EINVAL, "tk_wait_stopped: bad node");
  if (wait_for(t, cond_stopped, &i, timeout_ms)) return 0;
  return tk_fail(t, TROUPE_ETIMEDOUT, "timed out after %" PRIu64 " ms "
                 "waiting for node %u to stop", timeout_ms, i);
}

/* ------------------------------------------------------------------ */
/* Barriers */

static tk_bar *bar_find(tk *t, const char *name, bool add) {
  for (uint32_t k = 0; k < t->nbar; k++)
    if (strcmp(t->bar[k].name, name) == 0) return &t->bar[k];
  if (!add || t->nbar == sizeof t->bar / sizeof t->bar[0]) return NULL;
  tk_bar *b = &t->bar[t->nbar++];
  snprintf(b->name, sizeof b->name, "%s", name);
  b->arrived = 0;
  return b;
}

int tk_arrive(tk *t, uint32_t node, const char *name) {
  if (!t || !name || node >= t->n || strlen(name) >= 64)
    return troupe__err(TROUPE_EINVAL, "tk_arrive: bad argument");
  pthread_mutex_lock(&t->lock);
  tk_bar *b = bar_find(t, name, true);
  if (b) b->arrived |= 1ull << node;
  pthread_mutex_unlock(&t->lock);
  return b ? 0 : troupe__err(TROUPE_ENOMEM, "tk_arrive: too many barriers");
}

bool tk_arrived(tk *t, uint32_t node, const char *name) {
  if (!t || !name || node >= t->n) return false;
  pthread_mutex_lock(&t->lock);
  tk_bar *b = bar_find(t, name, false);
  bool r = b && (b->arrived >> node & 1);
  pthread_mutex_unlock(&t->lock);
  return r;
}

static bool cond_barrier(tk *t, void *data) {
  const char *name = data;
  for (uint32_t i = 0; i < t->n; i++)
    if (tk_alive(t, i) && !tk_arrived(t, i, name)) return false;
  return true;
}

int tk_barrier_wait(tk *t, const char *name, uint64_t timeout_ms) {
  if (!t || !name || strlen(name) >= 64)
    return troupe__err(TROUPE_EINVAL, "tk_barrier: bad argument");
  if (wait_for(t, cond_barrier, (void *)name, timeout_ms)) return 0;
  char missing[256] = "";
  size_t used = 0;
  for (uint32_t i = 0; i < t->n && used < sizeof missing; i++)
    if (tk_alive(t, i) && !tk_arrived(t, i, name))
      used += (size_t)snprintf(missing + used, sizeof missing - used, " %u",
                               i);
  return tk_fail(t, TROUPE_ETIMEDOUT, "timed out after %" PRIu64 " ms at "
                 "barrier \"%s\"; not arrived:%s", timeout_ms, name,
                 missing);
}

int tk_barrier(tk *t, const char *name) {
  return tk_barrier_wait(t, name, t ? t->o.timeout_ms : 0);
}

/* ------------------------------------------------------------------ */
/* Acting on nodes */

int tk_with(tk *t, uint32_t node, tk_node_fn fn, void *data) {
  if (!t || !fn || node >= t->n)
    return troupe__err(TROUPE_EINVAL, "tk_with: bad argument");
  if (t->v == TK_MEM) {
    if (!tk_alive(t, node))
      return troupe__err(TROUPE_ECLOSED, "node %u is not running", node);
    return fn(t->node[node].sys, data);
  }
  if (!tk_alive(t, node))
    return troupe__err(TROUPE_ECLOSED, "node %u is not running", node);
  return troupe__mesh_with(t->mesh, node, fn, data);
}

typedef struct run_call {
  atomic_int refs;
  tk *t;
  tk_node_fn fn;
  void *data;
  int rc;
  bool done;                       /* under t->lock */
} run_call;

static void run_call_put(run_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) == 1) free(c);
}

static void run_on_loop(troupe_system *sys, void *arg) {
  run_call *c = arg;
  int rc = c->fn(sys, c->data);
  pthread_mutex_lock(&c->t->lock);
  c->rc = rc;
  c->done = true;
  pthread_cond_broadcast(&c->t->cond);
  pthread_mutex_unlock(&c->t->lock);
  run_call_put(c);
}

static int post_fn(troupe_system *sys, void *arg) {
  return troupe__post(sys, run_on_loop, arg);
}

int tk_run(tk *t, uint32_t node, tk_node_fn fn, void *data) {
  if (!t || !fn || node >= t->n)
    return troupe__err(TROUPE_EINVAL, "tk_run: bad argument");
  if (!tk_alive(t, node))
    return tk_fail(t, TROUPE_ECLOSED, "tk_run: node %u is not running",
                   node);
  if (t->v == TK_MEM) {
    troupe_system *prev = troupe__current;
    troupe__current = t->node[node].sys;
    int rc = fn(t->node[node].sys, data);
    troupe__current = prev;
    return rc;
  }
  run_call *c = calloc(1, sizeof *c);
  if (!c) return troupe__err(TROUPE_ENOMEM, "tk_run");
  atomic_store(&c->refs, 2);
  c->t = t;
  c->fn = fn;
  c->data = data;
  int rc = troupe__mesh_with(t->mesh, node, post_fn, c);
  if (rc < 0) {
    free(c);
    return tk_fail(t, rc, "tk_run: node %u is not running", node);
  }
  uint64_t dl = mono_ms() + t->o.timeout_ms;
  struct timespec ts;
  pthread_mutex_lock(&t->lock);
  while (!c->done && mono_ms() < dl) {
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 10 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&t->cond, &t->lock, &ts);
  }
  bool done = c->done;
  rc = c->rc;
  pthread_mutex_unlock(&t->lock);
  run_call_put(c);
  if (!done)
    return tk_fail(t, TROUPE_ETIMEDOUT, "tk_run on node %u: no result "
                   "within %" PRIu64 " ms", node, t->o.timeout_ms);
  return rc;
}

int tk_ref(tk *t, uint32_t from, uint32_t to, const char *path,
           troupe_ref *out) {
  if (!t || !path || !out || from >= t->n || to >= t->n || path[0] != '/')
    return troupe__err(TROUPE_EINVAL, "tk_ref: bad argument");
  *out = TROUPE_REF_NONE;
  if (!tk_alive(t, from) || !tk_alive(t, to))
    return tk_fail(t, TROUPE_ECLOSED, "tk_ref: node %u or %u is not "
                   "running", from, to);
  if (t->v == TK_MESH) {
    /* mesh refs mean the same on every worker */
    int rc = troupe_mesh_resolve(t->mesh, to, path, t->o.timeout_ms, out);
    if (rc < 0)
      return tk_fail(t, rc, "tk_ref: nothing at %s on node %u: %s", path,
                     to, troupe_errmsg());
    return 0;
  }
  troupe_system *st = t->node[to].sys, *sf = t->node[from].sys;
  troupe_system *prev = troupe__current;
  char uri[512];
  int n = snprintf(uri, sizeof uri, "troupe://%s%s", st->name, path);
  troupe_ref local = TROUPE_REF_NONE;
  troupe__current = st;
  int rc = troupe__ref_from_uri(st, uri, (size_t)n, &local);
  if (rc == 0 && local.uid == 0) rc = TROUPE_ENOENT;
  if (rc == 0 && from != to) {
    n = troupe__ref_to_uri(st, local, uri, sizeof uri);
    if (n < 0) rc = n;
  }
  if (rc == 0 && from != to) {
    troupe__current = sf;
    rc = troupe__ref_from_uri(sf, uri, (size_t)n, &local);
  }
  troupe__current = prev;
  if (rc < 0)
    return tk_fail(t, rc, "tk_ref: nothing at %s on node %u: %s", path, to,
                   rc == TROUPE_ENOENT ? "no such actor" : troupe_errmsg());
  *out = local;
  return 0;
}

int tk_partition(tk *t, uint32_t a, uint32_t b) {
  if (!t || a >= t->n || b >= t->n || a == b)
    return troupe__err(TROUPE_EINVAL, "tk_partition: bad nodes");
  if (t->v == TK_MESH) {
    troupe__mesh_block(t->mesh, a, b, true);
    return 0;
  }
  int rc = troupe__memnet_partition(t->net, t->node[a].netaddr,
                                    t->node[b].netaddr);
  return rc < 0 ? tk_fail(t, rc, "partition(%u, %u): %s", a, b,
                          troupe_errmsg()) : 0;
}

int tk_heal(tk *t, uint32_t a, uint32_t b) {
  if (!t || a >= t->n || b >= t->n || a == b)
    return troupe__err(TROUPE_EINVAL, "tk_heal: bad nodes");
  if (t->v == TK_MESH) {
    troupe__mesh_block(t->mesh, a, b, false);
    return 0;
  }
  int rc = troupe__memnet_heal(t->net, t->node[a].netaddr,
                               t->node[b].netaddr);
  return rc < 0 ? tk_fail(t, rc, "heal(%u, %u): %s", a, b, troupe_errmsg())
                : 0;
}

int tk_crash(tk *t, uint32_t a) {
  if (!t || a >= t->n) return troupe__err(TROUPE_EINVAL, "tk_crash: bad node");
  if (!tk_alive(t, a))
    return tk_fail(t, TROUPE_ECLOSED, "tk_crash: node %u is not running", a);
  if (t->v == TK_MEM) {
    int rc = troupe__memnet_partition(t->net, t->node[a].netaddr, NULL);
    if (rc < 0) return tk_fail(t, rc, "crash(%u): %s", a, troupe_errmsg());
    return mem_node_stop(t, a, false);
  }
  int rc = troupe__mesh_crash(t->mesh, a);
  if (rc < 0) return tk_fail(t, rc, "crash(%u): %s", a, troupe_errmsg());
  /* real time: wait for the worker to be gone */
  uint64_t dl = mono_ms() + t->o.timeout_ms;
  while (atomic_load(&t->node[a].state) != NODE_GONE) {
    if (mono_ms() > dl)
      return tk_fail(t, TROUPE_ETIMEDOUT, "crash(%u): worker did not stop",
                     a);
    sleep_ms(1);
  }
  return 0;
}

static int leave_fn(troupe_system *sys, void *data) {
  (void)data;
  return troupe_cluster_leave(sys, NULL);
}

int tk_leave(tk *t, uint32_t a) {
  if (!t || a >= t->n) return troupe__err(TROUPE_EINVAL, "tk_leave: bad node");
  int rc = tk_with(t, a, leave_fn, NULL);
  return rc < 0 ? tk_fail(t, rc, "leave(%u): %s", a, troupe_errmsg()) : 0;
}

/* ------------------------------------------------------------------ */
/* Trace */

void tk_trace(tk *t, const char *fmt, ...) {
  if (!t || !fmt) return;
  char line[512];
  int off = 0;
  if (t->v == TK_MEM)
    off = snprintf(line, sizeof line, "%" PRIu64 " ",
                   atomic_load(&t->vnow) - 1000000);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
  va_end(ap);
  size_t n = strlen(line);
  pthread_mutex_lock(&t->lock);
  if (t->tlen + n + 2 > t->tcap) {
    size_t cap = t->tcap ? t->tcap * 2 : 4096;
    while (cap < t->tlen + n + 2) cap *= 2;
    char *p = realloc(t->trace, cap);
    if (!p) {
      pthread_mutex_unlock(&t->lock);
      return;
    }
    t->trace = p;
    t->tcap = cap;
  }
  memcpy(t->trace + t->tlen, line, n);
  t->tlen += n;
  t->trace[t->tlen++] = '\n';
  t->trace[t->tlen] = '\0';
  pthread_mutex_unlock(&t->lock);
}

const char *tk_trace_text(tk *t) {
  return t && t->trace ? t->trace : "";
}
