/*
 * membership.c: the cluster daemon (/system/cluster) — join through seeds,
 * gossip of a versioned member set, convergence and leader actions,
 * heartbeats with a phi-accrual failure detector per monitored peer, the
 * split-brain resolver, graceful leave, cluster events, and the any-thread
 * snapshot read by the troupe_cluster_* queries.
 *
 * State. Everything in troupe__cluster below `loop thread` is touched only
 * by the daemon's loop (the system's thread). The snapshot (members,
 * leader, oldest, converged) is a copy updated by the daemon after every
 * change and read under `lock` from any thread. troupe__cluster records
 * are kept in a process-wide list keyed by (system, node index) and never
 * freed while their system may be used (a record is freed when a new
 * cluster starts on a reused system pointer), so a pointer from
 * troupe__cluster_get stays valid memory even after the daemon stopped.
 *
 * Gossip. The member set is a list of (address, uid, status, up_number)
 * sorted by address, with removed members kept as tombstones so that a
 * concurrent merge never brings them back; a vector clock (one counter
 * per node address) versions it; `seen` lists the addresses that have
 * seen this version; reachability rows (observer, subject, subject uid,
 * version, unreachable) are owned by their observer, which bumps the
 * row's version on each change. Merging two concurrent versions is
 * deterministic: per member the status of higher precedence (removed >
 * down > exiting > leaving > up > joining) and the higher up-number, per
 * row the higher version, the pointwise maximum of the clocks.
 */
#include "cluster/membership.h"
#include "cluster/phi.h"
#include "cluster/sbr.h"
#include "core/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#define ADDR TROUPE_ADDRESS_MAX
#define PREPARE_TIMEOUT_MS 30000
#define ROUND_KEY 0x636c7573746572ull /* "cluster" */
/* Limits of a gossip accepted from the wire. */
#define MAX_MEMBERS 1024
#define MAX_VC 4096
#define MAX_REACH 16384

/* ------------------------------------------------------------------ */
/* Wire messages (registered types, so they cross mem/TCP links)      */

typedef struct wmember {
  char *address;
  uint64_t uid;
  uint32_t status;
  uint32_t up_number;
} wmember;
static const troupe_field wmember_fields[] = {
  TROUPE_FIELD(wmember, address, STRING), TROUPE_FIELD(wmember, uid, U64),
  TROUPE_FIELD(wmember, status, U32), TROUPE_FIELD(wmember, up_number, U32)};
static troupe_type T_WMEMBER =
    TROUPE_TYPE("troupe.cluster.Member", 1, wmember, wmember_fields);

typedef struct wvc {
  char *node;
  uint64_t n;
} wvc;
static const troupe_field wvc_fields[] = {TROUPE_FIELD(wvc, node, STRING),
                                          TROUPE_FIELD(wvc, n, U64)};
static troupe_type T_WVC = TROUPE_TYPE("troupe.cluster.Clock", 1, wvc,
                                       wvc_fields);

typedef struct wreach {
  char *observer;
  char *subject;
  uint64_t uid;
  uint64_t version;
  bool unreachable;
} wreach;
static const troupe_field wreach_fields[] = {
  TROUPE_FIELD(wreach, observer, STRING), TROUPE_FIELD(wreach, subject, STRING),
  TROUPE_FIELD(wreach, uid, U64), TROUPE_FIELD(wreach, version, U64),
  TROUPE_FIELD(wreach, unreachable, BOOL)};
static troupe_type T_WREACH = TROUPE_TYPE("troupe.cluster.Reachability", 1,
                                          wreach, wreach_fields);

static const troupe_field wgossip_fields[] = {
  TROUPE_FIELD(troupe__cluster_gossip, from, STRING),
  TROUPE_FIELD(troupe__cluster_gossip, from_uid, U64),
  TROUPE_FIELD_NESTED_VEC(troupe__cluster_gossip, members, wmember,
                          &T_WMEMBER),
  TROUPE_FIELD_NESTED_VEC(troupe__cluster_gossip, vc, wvc, &T_WVC),
  TROUPE_FIELD_VEC(troupe__cluster_gossip, seen, STRING),
  TROUPE_FIELD_NESTED_VEC(troupe__cluster_gossip, reach, wreach, &T_WREACH)};
troupe_type TROUPE__T_CLUSTER_GOSSIP =
    TROUPE_TYPE("troupe.cluster.Gossip", 1, troupe__cluster_gossip,
                wgossip_fields);

/* Join {address, uid}; Heartbeat and its response {from, uid, seq}. */
typedef struct wjoin {
  char *address;
  uint64_t uid;
} wjoin;
static const troupe_field wjoin_fields[] = {TROUPE_FIELD(wjoin, address, STRING),
                                            TROUPE_FIELD(wjoin, uid, U64)};
static troupe_type T_JOIN = TROUPE_TYPE("troupe.cluster.Join", 1, wjoin,
                                        wjoin_fields);

typedef struct whb {
  char *from;
  uint64_t uid;
  uint64_t seq;
} whb;
static const troupe_field whb_fields[] = {TROUPE_FIELD(whb, from, STRING),
                                          TROUPE_FIELD(whb, uid, U64),
                                          TROUPE_FIELD(whb, seq, U64)};
static troupe_type T_HB = TROUPE_TYPE("troupe.cluster.Heartbeat", 1, whb,
                                      whb_fields);
static troupe_type T_HBRSP = TROUPE_TYPE("troupe.cluster.HeartbeatRsp", 1, whb,
                                         whb_fields);

/* Commands: from the API (any thread, no sender), the round timer, and
 * Leave from another node's daemon (troupe_cluster_leave(addr) there). */
enum { CMD_JOIN = 1, CMD_LEAVE, CMD_DOWN, CMD_TICK, CMD_ROUND };
typedef struct wcmd {
  uint32_t kind;
  char *address;
} wcmd;
static const troupe_field wcmd_fields[] = {TROUPE_FIELD(wcmd, kind, U32),
                                           TROUPE_FIELD(wcmd, address, STRING)};
static troupe_type T_CMD = TROUPE_TYPE("troupe.cluster.Command", 1, wcmd,
                                       wcmd_fields);

/* Empty local messages (never on the wire): no fields, size 0, so a tell
 * may pass NULL as the value. Prepared here like the core's built-ins. */
#define EMPTY_TYPE(m) \
  {.manifest = (m), .version = 1, .size = 0, \
   ._flags = TROUPE__TF_PREPARED | TROUPE__TF_FLAT}
troupe_type TROUPE__T_CLUSTER_TICK = EMPTY_TYPE("troupe.cluster.Tick");
troupe_type TROUPE__T_CLUSTER_PREPARE_LEAVE =
    EMPTY_TYPE("troupe.cluster.PrepareLeave");
troupe_type TROUPE__T_CLUSTER_LEAVE_READY =
    EMPTY_TYPE("troupe.cluster.LeaveReady");

/* The public event (local only: the event stream never crosses nodes). */
static const troupe_field member_fields[] = {
  TROUPE_FIELD_RAW("address", TROUPE_K_U8, TROUPE_FS_ARRAY, 0,
                   offsetof(troupe_member, address), ADDR, 1, 0, NULL),
  TROUPE_FIELD(troupe_member, uid, U64),
  TROUPE_FIELD_RAW("status", TROUPE_K_U32, TROUPE_FS_SCALAR, 0,
                   offsetof(troupe_member, status), 0,
                   sizeof(troupe_member_status), 0, NULL),
  TROUPE_FIELD(troupe_member, up_number, U32),
  TROUPE_FIELD(troupe_member, reachable, BOOL)};
static troupe_type T_MEMBER = TROUPE_TYPE("troupe.ClusterMember", 1,
                                          troupe_member, member_fields);
static const troupe_field event_fields[] = {
  TROUPE_FIELD_RAW("kind", TROUPE_K_U32, TROUPE_FS_SCALAR, 0,
                   offsetof(troupe_cluster_event, kind), 0,
                   sizeof(troupe_cluster_event_kind), 0, NULL),
  TROUPE_FIELD_NESTED(troupe_cluster_event, member, &T_MEMBER)};
troupe_type TROUPE_T_CLUSTER_EVENT = TROUPE_TYPE(
    "troupe.ClusterEvent", 1, troupe_cluster_event, event_fields);

static pthread_once_t types_once = PTHREAD_ONCE_INIT;
static int types_rc;
static void register_types(void) {
  const troupe_type *all[] = {
    &T_WMEMBER, &T_WVC, &T_WREACH, &TROUPE__T_CLUSTER_GOSSIP, &T_JOIN,
    &T_HB, &T_HBRSP, &T_CMD, &T_MEMBER, &TROUPE_T_CLUSTER_EVENT,
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    int rc = troupe_type_register(all[i]);
    if (rc < 0 && !types_rc) types_rc = rc;
  }
}

/* ------------------------------------------------------------------ */
/* State                                                               */

typedef struct mem {
  char addr[ADDR];
  uint64_t uid;
  uint32_t status;
  uint32_t up_number;
} mem;

typedef struct vce {
  char addr[ADDR];
  uint64_t n;
} vce;

typedef struct rrow {
  char observer[ADDR];
  char subject[ADDR];
  uint64_t uid;
  uint64_t version;
  bool unreachable;
} rrow;

typedef struct gstate {
  mem *m;
  size_t nm, cm;
  vce *vc;
  size_t nvc, cvc;
  char (*seen)[ADDR];
  size_t nseen, cseen;
  rrow *r;
  size_t nr, cr;
} gstate;

/* What this node knows of a peer (loop thread). */
typedef struct peer {
  char addr[ADDR];
  troupe_ref ref;           /* its daemon; NONE until resolved */
  uint64_t ident_ms;        /* last Identify sent */
  bool ident_sent;
  bool monitoring;
  uint64_t mon_uid;         /* incarnation the detector is about */
  uint64_t seq;
  uint64_t down_since;      /* first seen down here (0: not down) */
  uint64_t down_uid;
  bool leave_req;           /* tell it to leave once its ref is known */
  troupe__phi phi;
} peer;

typedef struct waiter {
  troupe_ref ref;
  bool pending;
} waiter;

enum { PH_JOINING = 0, PH_MEMBER, PH_STOPPING, PH_DONE };

struct troupe__cluster {
  troupe__cluster *next;            /* registry */
  troupe_system *sys;
  uint64_t node;
  /* immutable after start */
  troupe_cluster_opts o;
  char self[ADDR];
  uint64_t uid;
  troupe_ref daemon;
  bool bootstrap;                   /* self is the first seed */
  atomic_bool running;              /* daemon alive */

  /* snapshot, any thread under lock */
  pthread_mutex_t lock;
  troupe_member *snap;
  size_t nsnap, csnap;
  char snap_leader[ADDR], snap_oldest[ADDR];
  bool snap_converged;
  bool snap_done;                   /* left or downed: no more joins */
  troupe_member_status snap_self;

  /* loop thread */
  troupe_ctx *ctx;                  /* during a daemon callback only */
  int phase;
  gstate g;
  char (*targets)[ADDR];            /* seeds and troupe_cluster_join */
  size_t ntargets, ctargets;
  peer **peers;
  size_t npeers, cpeers;
  troupe_ref *ticks;
  size_t nticks, cticks;
  waiter *blockers;
  size_t nblockers, cblockers;
  bool preparing, leave_wanted;
  uint64_t prepare_deadline;
  uint64_t started_ms, last_join_ms, last_gossip_ms, last_hb_ms;
  uint64_t sbr_sig, sbr_since;
  bool first_round_done;
  /* last published view */
  troupe_member *pub;
  size_t npub, cpub;
  char pub_leader[ADDR];
  bool self_removed_published;
  uint64_t stop_at;                 /* PH_STOPPING: stop at this round */
  bool stop_system;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static troupe__cluster *reg_head;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static int grow(void *pp, size_t *cap, size_t need, size_t elem) {
  void **p = pp;
  if (need <= *cap) return 0;
  size_t nc = *cap ? *cap * 2 : 8;
  while (nc < need) nc *= 2;
  void *n = realloc(*p, nc * elem);
  if (!n) return troupe__err(TROUPE_ENOMEM, "cluster state");
  *p = n;
  *cap = nc;
  return 0;
}

static void copy_addr(char *dst, const char *src) {
  size_t n = strlen(src);
  if (n >= ADDR) n = ADDR - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* "troupe://name" or "troupe://name@host:port": no path, fits. */
static bool valid_address(const char *a) {
  if (!a) return false;
  size_t n = strnlen(a, ADDR);
  if (n == 0 || n >= ADDR) return false;
  if (strncmp(a, "troupe://", 9) != 0 || n == 9) return false;
  for (size_t i = 9; i < n; i++) {
    unsigned char ch = (unsigned char)a[i];
    if (ch == '/' || ch == '#' || ch <= ' ' || ch >= 0x7f) return false;
  }
  return a[9] != '@';
}

static bool valid_status(uint32_t s) {
  return s >= TROUPE_MEMBER_JOINING && s <= TROUPE_MEMBER_DOWN;
}

static int rank(uint32_t s) {
  switch (s) {
  case TROUPE_MEMBER_JOINING: return 0;
  case TROUPE_MEMBER_UP: return 1;
  case TROUPE_MEMBER_LEAVING: return 2;
  case TROUPE_MEMBER_EXITING: return 3;
  case TROUPE_MEMBER_DOWN: return 4;
  case TROUPE_MEMBER_REMOVED: return 5;
  }
  return -1;
}

static bool is_live(const mem *m) {
  return m->status != TROUPE_MEMBER_REMOVED;
}
/* Takes part (not down, not removed). */
static bool is_active(const mem *m) {
  return m->status != TROUPE_MEMBER_REMOVED &&
         m->status != TROUPE_MEMBER_DOWN;
}

const char *troupe_member_status_name(troupe_member_status s) {
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

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t troupe__cluster_now(troupe__cluster *c) {
  if (c && c->o.clock) return c->o.clock(c->o.clock_data);
  return mono_ms();
}

bool troupe__cluster_clock_mode(troupe__cluster *c) {
  return c && c->o.clock != NULL;
}

#define LOG(c, lvl, ...) troupe__log((c)->sys, lvl, "cluster", __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Gossip state                                                        */

static void g_free(gstate *g) {
  free(g->m);
  free(g->vc);
  free(g->seen);
  free(g->r);
  memset(g, 0, sizeof *g);
}

static mem *g_find(const gstate *g, const char *addr, uint64_t uid) {
  for (size_t i = 0; i < g->nm; i++)
    if (g->m[i].uid == uid && strcmp(g->m[i].addr, addr) == 0) return &g->m[i];
  return NULL;
}

/* The entry of address that is not removed (the newest one if two). */
static mem *g_live(const gstate *g, const char *addr) {
  mem *found = NULL;
  for (size_t i = 0; i < g->nm; i++)
    if (is_live(&g->m[i]) && strcmp(g->m[i].addr, addr) == 0) {
      if (!found || rank(g->m[i].status) < rank(found->status))
        found = &g->m[i];
    }
  return found;
}

/* Insert keeping the list sorted by (address, uid). */
static mem *g_add(gstate *g, const char *addr, uint64_t uid, uint32_t status,
                  uint32_t up) {
  if (grow(&g->m, &g->cm, g->nm + 1, sizeof *g->m) < 0) return NULL;
  size_t i = 0;
  while (i < g->nm) {
    int c = strcmp(g->m[i].addr, addr);
    if (c > 0 || (c == 0 && g->m[i].uid > uid)) break;
    i++;
  }
  memmove(&g->m[i + 1], &g->m[i], (g->nm - i) * sizeof *g->m);
  g->nm++;
  mem *m = &g->m[i];
  memset(m, 0, sizeof *m);
  copy_addr(m->addr, addr);
  m->uid = uid;
  m->status = status;
  m->up_number = up;
  return m;
}

static uint64_t vc_get(const gstate *g, const char *addr) {
  for (size_t i = 0; i < g->nvc; i++)
    if (strcmp(g->vc[i].addr, addr) == 0) return g->vc[i].n;
  return 0;
}

static int vc_set(gstate *g, const char *addr, uint64_t n) {
  for (size_t i = 0; i < g->nvc; i++)
    if (strcmp(g->vc[i].addr, addr) == 0) {
      g->vc[i].n = n;
      return 0;
    }
  if (grow(&g->vc, &g->cvc, g->nvc + 1, sizeof *g->vc) < 0) return TROUPE_ENOMEM;
  copy_addr(g->vc[g->nvc].addr, addr);
  g->vc[g->nvc++].n = n;
  return 0;
}

enum { VC_SAME = 0, VC_BEFORE, VC_AFTER, VC_CONCURRENT };
static int vc_cmp(const gstate *a, const gstate *b) {
  bool less = false, greater = false;
  for (size_t i = 0; i < a->nvc; i++) {
    uint64_t nb = vc_get(b, a->vc[i].addr);
    if (a->vc[i].n < nb) less = true;
    if (a->vc[i].n > nb) greater = true;
  }
  for (size_t i = 0; i < b->nvc; i++)
    if (b->vc[i].n > vc_get(a, b->vc[i].addr)) less = true;
  if (less && greater) return VC_CONCURRENT;
  if (less) return VC_BEFORE;
  if (greater) return VC_AFTER;
  return VC_SAME;
}

static bool seen_has(const gstate *g, const char *addr) {
  for (size_t i = 0; i < g->nseen; i++)
    if (strcmp(g->seen[i], addr) == 0) return true;
  return false;
}

static int seen_add(gstate *g, const char *addr) {
  if (seen_has(g, addr)) return 0;
  if (grow(&g->seen, &g->cseen, g->nseen + 1, sizeof *g->seen) < 0)
    return TROUPE_ENOMEM;
  copy_addr(g->seen[g->nseen++], addr);
  return 0;
}

static rrow *row_find(const gstate *g, const char *obs, const char *subj,
                      uint64_t uid) {
  for (size_t i = 0; i < g->nr; i++)
    if (g->r[i].uid == uid && strcmp(g->r[i].observer, obs) == 0 &&
        strcmp(g->r[i].subject, subj) == 0)
      return &g->r[i];
  return NULL;
}

/* Is the observer of a row still someone whose word counts? */
static bool observer_counts(const gstate *g, const char *obs) {
  mem *m = g_live(g, obs);
  return m && is_active(m);
}

static bool g_unreachable(const gstate *g, const mem *m) {
  for (size_t i = 0; i < g->nr; i++) {
    const rrow *r = &g->r[i];
    if (r->unreachable && r->uid == m->uid && strcmp(r->subject, m->addr) == 0 &&
        observer_counts(g, r->observer))
      return true;
  }
  return false;
}

/* Merge t into g (concurrent versions): deterministic. */
static int g_merge(gstate *g, const gstate *t) {
  for (size_t i = 0; i < t->nm; i++) {
    const mem *tm = &t->m[i];
    mem *m = g_find(g, tm->addr, tm->uid);
    if (!m) {
      if (!g_add(g, tm->addr, tm->uid, tm->status, tm->up_number))
        return TROUPE_ENOMEM;
      continue;
    }
    if (rank(tm->status) > rank(m->status)) m->status = tm->status;
    if (tm->up_number > m->up_number) m->up_number = tm->up_number;
  }
  for (size_t i = 0; i < t->nr; i++) {
    const rrow *tr = &t->r[i];
    rrow *r = row_find(g, tr->observer, tr->subject, tr->uid);
    if (r) {
      if (tr->version > r->version) *r = *tr;
      continue;
    }
    if (grow(&g->r, &g->cr, g->nr + 1, sizeof *g->r) < 0) return TROUPE_ENOMEM;
    g->r[g->nr++] = *tr;
  }
  for (size_t i = 0; i < t->nvc; i++)
    if (t->vc[i].n > vc_get(g, t->vc[i].addr) &&
        vc_set(g, t->vc[i].addr, t->vc[i].n) < 0)
      return TROUPE_ENOMEM;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Wire conversion                                                     */

/* A gossip value pointing into g (strings borrowed; free the vectors
 * with wire_release). */
static int wire_build(troupe__cluster *c, troupe__cluster_gossip *w) {
  const gstate *g = &c->g;
  memset(w, 0, sizeof *w);
  w->from = c->self;
  w->from_uid = c->uid;
  wmember *ms = calloc(g->nm ? g->nm : 1, sizeof *ms);
  wvc *vs = calloc(g->nvc ? g->nvc : 1, sizeof *vs);
  char **ss = calloc(g->nseen ? g->nseen : 1, sizeof *ss);
  wreach *rs = calloc(g->nr ? g->nr : 1, sizeof *rs);
  if (!ms || !vs || !ss || !rs) {
    free(ms); free(vs); free(ss); free(rs);
    return troupe__err(TROUPE_ENOMEM, "gossip");
  }
  for (size_t i = 0; i < g->nm; i++)
    ms[i] = (wmember){g->m[i].addr, g->m[i].uid, g->m[i].status,
                      g->m[i].up_number};
  for (size_t i = 0; i < g->nvc; i++) vs[i] = (wvc){g->vc[i].addr, g->vc[i].n};
  for (size_t i = 0; i < g->nseen; i++) ss[i] = g->seen[i];
  for (size_t i = 0; i < g->nr; i++)
    rs[i] = (wreach){g->r[i].observer, g->r[i].subject, g->r[i].uid,
                     g->r[i].version, g->r[i].unreachable};
  w->members = (troupe_vec){ms, g->nm};
  w->vc = (troupe_vec){vs, g->nvc};
  w->seen = (troupe_vec){ss, g->nseen};
  w->reach = (troupe_vec){rs, g->nr};
  return 0;
}

static void wire_release(troupe__cluster_gossip *w) {
  free(w->members.items);
  free(w->vc.items);
  free(w->seen.items);
  free(w->reach.items);
}

/* Validate a received gossip and turn it into a gstate. Returns a
 * negative code with a reason for anything malformed. */
static int wire_parse(const troupe__cluster_gossip *w, gstate *out) {
  memset(out, 0, sizeof *out);
  if (!valid_address(w->from))
    return troupe__err(TROUPE_EDECODE, "gossip: bad sender address");
  if (w->members.len > MAX_MEMBERS || w->vc.len > MAX_VC ||
      w->seen.len > MAX_MEMBERS || w->reach.len > MAX_REACH)
    return troupe__err(TROUPE_ETOOBIG, "gossip: too many entries");
  if ((w->members.len && !w->members.items) || (w->vc.len && !w->vc.items) ||
      (w->seen.len && !w->seen.items) || (w->reach.len && !w->reach.items))
    return troupe__err(TROUPE_EDECODE, "gossip: missing items");
  gstate g = {0};
  int rc = TROUPE_EDECODE;
  const wmember *ms = w->members.items;
  for (size_t i = 0; i < w->members.len; i++) {
    if (!valid_address(ms[i].address) || !valid_status(ms[i].status) ||
        ms[i].uid == 0) {
      troupe__err(TROUPE_EDECODE, "gossip: bad member %zu", i);
      goto fail;
    }
    if (g_find(&g, ms[i].address, ms[i].uid)) {
      troupe__err(TROUPE_EDECODE, "gossip: member %s listed twice",
                  ms[i].address);
      goto fail;
    }
    if (!g_add(&g, ms[i].address, ms[i].uid, ms[i].status, ms[i].up_number)) {
      rc = TROUPE_ENOMEM;
      goto fail;
    }
  }
  const wvc *vs = w->vc.items;
  for (size_t i = 0; i < w->vc.len; i++) {
    if (!valid_address(vs[i].node) || vc_get(&g, vs[i].node)) {
      troupe__err(TROUPE_EDECODE, "gossip: bad clock entry %zu", i);
      goto fail;
    }
    if (vc_set(&g, vs[i].node, vs[i].n) < 0) {
      rc = TROUPE_ENOMEM;
      goto fail;
    }
  }
  char *const *ss = w->seen.items;
  for (size_t i = 0; i < w->seen.len; i++) {
    if (!valid_address(ss[i])) {
      troupe__err(TROUPE_EDECODE, "gossip: bad seen entry %zu", i);
      goto fail;
    }
    if (seen_add(&g, ss[i]) < 0) {
      rc = TROUPE_ENOMEM;
      goto fail;
    }
  }
  const wreach *rs = w->reach.items;
  for (size_t i = 0; i < w->reach.len; i++) {
    if (!valid_address(rs[i].observer) || !valid_address(rs[i].subject) ||
        row_find(&g, rs[i].observer, rs[i].subject, rs[i].uid)) {
      troupe__err(TROUPE_EDECODE, "gossip: bad reachability row %zu", i);
      goto fail;
    }
    if (grow(&g.r, &g.cr, g.nr + 1, sizeof *g.r) < 0) {
      rc = TROUPE_ENOMEM;
      goto fail;
    }
    rrow *r = &g.r[g.nr++];
    memset(r, 0, sizeof *r);
    copy_addr(r->observer, rs[i].observer);
    copy_addr(r->subject, rs[i].subject);
    r->uid = rs[i].uid;
    r->version = rs[i].version;
    r->unreachable = rs[i].unreachable;
  }
  if (g.nm == 0 || g.nvc == 0) {
    troupe__err(TROUPE_EDECODE, "gossip without members or clock");
    goto fail;
  }
  *out = g;
  return 0;
fail:
  g_free(&g);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Peers                                                               */

static peer *peer_find(troupe__cluster *c, const char *addr) {
  for (size_t i = 0; i < c->npeers; i++)
    if (strcmp(c->peers[i]->addr, addr) == 0) return c->peers[i];
  return NULL;
}

static peer *peer_get(troupe__cluster *c, const char *addr) {
  peer *p = peer_find(c, addr);
  if (p) return p;
  if (grow(&c->peers, &c->cpeers, c->npeers + 1, sizeof *c->peers) < 0)
    return NULL;
  p = calloc(1, sizeof *p);
  if (!p) return NULL;
  copy_addr(p->addr, addr);
  p->ref = TROUPE_REF_NONE;
  c->peers[c->npeers++] = p;
  return p;
}

/* The node index of an address "troupe://name[@host:port]". */
static int address_node(troupe__cluster *c, const char *addr, uint64_t *node) {
  const char *p = addr + 9;
  const char *at = strchr(p, '@');
  size_t nl = at ? (size_t)(at - p) : strlen(p);
  troupe_system *sys = c->sys;
  if (at) {
    const char *mine = atomic_load(&sys->address);
    if (mine && strcmp(mine, at + 1) == 0 && strlen(sys->name) == nl &&
        memcmp(sys->name, p, nl) == 0) {
      *node = sys->node;
      return 0;
    }
    return troupe__remote_node(sys, p, nl, at + 1, strlen(at + 1), node);
  }
  *node = troupe__node_find_local(p, nl);
  return *node ? 0 : troupe__err(TROUPE_ENOENT, "no system %s", addr);
}

/* Ask the node at addr who its daemon is (a plain Identify told to its
 * root guardian; the answer names the daemon's URI, which carries the
 * address, so no ask and no timer is needed). */
static void identify(troupe__cluster *c, peer *p, uint64_t now) {
  if (p->ident_sent && now - p->ident_ms < c->o.retry_join_ms) return;
  uint64_t node;
  if (address_node(c, p->addr, &node) < 0) return;
  p->ident_sent = true;
  p->ident_ms = now;
  troupe_identify id = {(char *)"/system/cluster"};
  troupe_ref root = {node, TROUPE__ROOT_UID};
  (void)troupe_send(c->ctx, root, &TROUPE__T_IDENTIFY, &id);
}

/* The address part of a ref's URI. */
static int ref_address(troupe__cluster *c, troupe_ref ref, char *out) {
  char uri[512];
  int n = troupe__ref_to_uri(c->sys, ref, uri, sizeof uri);
  if (n < 0 || (size_t)n >= sizeof uri) return TROUPE_EINVAL;
  if (strncmp(uri, "troupe://", 9) != 0) return TROUPE_EINVAL;
  char *slash = strchr(uri + 9, '/');
  if (slash) *slash = '\0';
  if (!valid_address(uri)) return TROUPE_EINVAL;
  copy_addr(out, uri);
  return 0;
}

static void send_to(troupe__cluster *c, const char *addr,
                    const troupe_type *t, const void *v) {
  peer *p = peer_get(c, addr);
  if (!p) return;
  if (troupe_ref_is_none(p->ref)) {
    identify(c, p, troupe__cluster_now(c));
    return;
  }
  (void)troupe_send(c->ctx, p->ref, t, v);
}

static void send_gossip(troupe__cluster *c, const char *addr) {
  troupe__cluster_gossip w;
  if (wire_build(c, &w) < 0) return;
  send_to(c, addr, &TROUPE__T_CLUSTER_GOSSIP, &w);
  wire_release(&w);
}

/* To every member not removed — down ones included, so that a node
 * downed while it is still reachable (troupe_cluster_down) learns it and
 * stops. */
static void gossip_all(troupe__cluster *c) {
  for (size_t i = 0; i < c->g.nm; i++) {
    const mem *m = &c->g.m[i];
    if (is_live(m) && strcmp(m->addr, c->self) != 0)
      send_gossip(c, m->addr);
  }
}

/* ------------------------------------------------------------------ */
/* Derived state                                                       */

static mem *self_mem(troupe__cluster *c) {
  return g_find(&c->g, c->self, c->uid);
}

/* A local change: a new version that only we have seen. */
static void bump(troupe__cluster *c) {
  (void)vc_set(&c->g, c->self, vc_get(&c->g, c->self) + 1);
  c->g.nseen = 0;
  (void)seen_add(&c->g, c->self);
}

static bool converged(troupe__cluster *c) {
  if (c->phase != PH_MEMBER) return false;
  for (size_t i = 0; i < c->g.nm; i++) {
    const mem *m = &c->g.m[i];
    if (!is_active(m)) continue;
    bool unr = g_unreachable(&c->g, m);
    if (m->status == TROUPE_MEMBER_EXITING && unr) continue;
    if (unr || !seen_has(&c->g, m->addr)) return false;
  }
  return true;
}

/* The leader: the reachable up/leaving member with the lowest address; if
 * there is none (a cluster forming), the lowest reachable joining one. */
static const mem *leader_of(const gstate *g) {
  const mem *best = NULL, *joining = NULL;
  for (size_t i = 0; i < g->nm; i++) {
    const mem *m = &g->m[i];
    if (g_unreachable(g, m)) continue;
    if (m->status == TROUPE_MEMBER_UP || m->status == TROUPE_MEMBER_LEAVING) {
      if (!best) best = m;   /* sorted by address */
    } else if (m->status == TROUPE_MEMBER_JOINING && !joining) {
      joining = m;
    }
  }
  return best ? best : joining;
}

static const mem *oldest_of(const gstate *g) {
  const mem *best = NULL;
  for (size_t i = 0; i < g->nm; i++) {
    const mem *m = &g->m[i];
    if (m->status != TROUPE_MEMBER_UP && m->status != TROUPE_MEMBER_LEAVING)
      continue;
    if (!best || m->up_number < best->up_number) best = m;
  }
  return best;
}

static void to_member(const troupe__cluster *c, const mem *m,
                      troupe_member *out) {
  memset(out, 0, sizeof *out);
  copy_addr(out->address, m->addr);
  out->uid = m->uid;
  out->status = (troupe_member_status)m->status;
  out->up_number = m->up_number;
  out->reachable = !g_unreachable(&c->g, m);
}

size_t troupe__cluster_view(troupe__cluster *c, troupe_member *out,
                            size_t max) {
  if (!c) return 0;
  size_t n = 0;
  for (size_t i = 0; i < c->g.nm; i++) {
    if (!is_live(&c->g.m[i])) continue;
    if (out && n < max) to_member(c, &c->g.m[i], &out[n]);
    n++;
  }
  return n;
}

const char *troupe__cluster_self(troupe__cluster *c) {
  return c ? c->self : NULL;
}

/* ------------------------------------------------------------------ */
/* Events and the snapshot                                             */

static void emit(troupe__cluster *c, troupe_cluster_event_kind k,
                 const troupe_member *m) {
  troupe_cluster_event ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = k;
  if (m) ev.member = *m;
  if (c->ctx) (void)troupe_publish(c->ctx, &TROUPE_T_CLUSTER_EVENT, &ev);
}

static troupe_cluster_event_kind status_event(troupe_member_status s) {
  switch (s) {
  case TROUPE_MEMBER_JOINING: return TROUPE_CLUSTER_MEMBER_JOINED;
  case TROUPE_MEMBER_UP: return TROUPE_CLUSTER_MEMBER_UP;
  case TROUPE_MEMBER_LEAVING: return TROUPE_CLUSTER_MEMBER_LEFT;
  case TROUPE_MEMBER_EXITING: return TROUPE_CLUSTER_MEMBER_EXITED;
  case TROUPE_MEMBER_DOWN: return TROUPE_CLUSTER_MEMBER_DOWNED;
  case TROUPE_MEMBER_REMOVED: return TROUPE_CLUSTER_MEMBER_REMOVED;
  }
  return TROUPE_CLUSTER_MEMBER_JOINED;
}

/* Diff the state against what was published last: events, snapshot. */
static void publish(troupe__cluster *c) {
  size_t n = troupe__cluster_view(c, NULL, 0);
  troupe_member *cur = calloc(n ? n : 1, sizeof *cur);
  if (!cur) return;
  troupe__cluster_view(c, cur, n);
  for (size_t i = 0; i < n; i++) {
    const troupe_member *p = NULL;
    for (size_t j = 0; j < c->npub; j++)
      if (c->pub[j].uid == cur[i].uid &&
          strcmp(c->pub[j].address, cur[i].address) == 0)
        p = &c->pub[j];
    if (!p || p->status != cur[i].status)
      emit(c, status_event(cur[i].status), &cur[i]);
    if ((p && p->reachable != cur[i].reachable) || (!p && !cur[i].reachable))
      emit(c, cur[i].reachable ? TROUPE_CLUSTER_REACHABLE
                               : TROUPE_CLUSTER_UNREACHABLE, &cur[i]);
  }
  for (size_t j = 0; j < c->npub; j++) {
    bool still = false;
    for (size_t i = 0; i < n && !still; i++)
      still = cur[i].uid == c->pub[j].uid &&
              strcmp(c->pub[j].address, cur[i].address) == 0;
    if (!still) {
      troupe_member m = c->pub[j];
      m.status = TROUPE_MEMBER_REMOVED;
      emit(c, TROUPE_CLUSTER_MEMBER_REMOVED, &m);
    }
  }
  const mem *l = c->phase == PH_MEMBER ? leader_of(&c->g) : NULL;
  const char *la = l ? l->addr : "";
  if (strcmp(la, c->pub_leader) != 0) {
    troupe_member lm;
    memset(&lm, 0, sizeof lm);
    if (l) to_member(c, l, &lm);
    emit(c, TROUPE_CLUSTER_LEADER_CHANGED, &lm);
    copy_addr(c->pub_leader, la);
  }
  free(c->pub);
  c->pub = cur;
  c->npub = c->cpub = n;

  const mem *o = oldest_of(&c->g);
  const mem *me = self_mem(c);
  bool conv = converged(c);
  pthread_mutex_lock(&c->lock);
  if (grow(&c->snap, &c->csnap, n, sizeof *c->snap) == 0) {
    if (n) memcpy(c->snap, cur, n * sizeof *cur);
    c->nsnap = n;
  }
  copy_addr(c->snap_leader, la);
  copy_addr(c->snap_oldest, o ? o->addr : "");
  c->snap_converged = conv;
  c->snap_self = me ? (troupe_member_status)me->status : 0;
  if (c->phase >= PH_STOPPING) c->snap_done = true;
  pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------ */
/* Self status                                                         */

static void finish(troupe__cluster *c, bool stop_system, const char *why) {
  if (c->phase >= PH_STOPPING) return;
  LOG(c, TROUPE_LOG_INFO, "%s %s: %s", c->self,
      stop_system ? "downed" : "left the cluster", why);
  c->phase = PH_STOPPING;
  c->stop_system = stop_system;
  /* let the others learn what we have seen before we go */
  gossip_all(c);
  if (!c->self_removed_published) {
    c->self_removed_published = true;
    troupe_member m;
    memset(&m, 0, sizeof m);
    const mem *me = self_mem(c);
    if (me) to_member(c, me, &m);
    else copy_addr(m.address, c->self);
    emit(c, TROUPE_CLUSTER_SELF_REMOVED, &m);
  }
  /* stop at the next round: the gossip above is on its way */
  c->stop_at = 1;
}

static void check_self(troupe__cluster *c) {
  if (c->phase != PH_MEMBER) return;
  const mem *me = self_mem(c);
  if (!me) return;
  if (me->status == TROUPE_MEMBER_DOWN)
    finish(c, true, "marked down");
  else if (me->status == TROUPE_MEMBER_REMOVED)
    finish(c, !c->leave_wanted, "removed");
  else if (me->status == TROUPE_MEMBER_EXITING)
    finish(c, false, "exiting");
}

/* ------------------------------------------------------------------ */
/* Leader actions                                                      */

static void leader_actions(troupe__cluster *c, uint64_t now) {
  if (c->phase != PH_MEMBER || !converged(c)) return;
  const mem *l = leader_of(&c->g);
  if (!l || strcmp(l->addr, c->self) != 0) return;
  bool changed = false;
  uint32_t maxup = 0;
  for (size_t i = 0; i < c->g.nm; i++)
    if (c->g.m[i].up_number > maxup) maxup = c->g.m[i].up_number;
  char notify[16][ADDR];
  size_t nnotify = 0;
  for (size_t i = 0; i < c->g.nm; i++) {
    mem *m = &c->g.m[i];
    switch (m->status) {
    case TROUPE_MEMBER_JOINING:
      m->status = TROUPE_MEMBER_UP;
      m->up_number = ++maxup;
      changed = true;
      break;
    case TROUPE_MEMBER_LEAVING:
      m->status = TROUPE_MEMBER_EXITING;
      changed = true;
      if (nnotify < 16) copy_addr(notify[nnotify++], m->addr);
      break;
    case TROUPE_MEMBER_EXITING:
      m->status = TROUPE_MEMBER_REMOVED;
      changed = true;
      if (nnotify < 16) copy_addr(notify[nnotify++], m->addr);
      break;
    case TROUPE_MEMBER_DOWN: {
      peer *p = peer_get(c, m->addr);
      if (!p) break;
      if (p->down_uid != m->uid || !p->down_since) {
        p->down_uid = m->uid;
        p->down_since = now ? now : 1;
      }
      if (now - p->down_since >= c->o.down_removal_margin_ms &&
          strcmp(m->addr, c->self) != 0) {
        m->status = TROUPE_MEMBER_REMOVED;
        changed = true;
      }
      break;
    }
    default:
      break;
    }
  }
  if (!changed) return;
  bump(c);
  gossip_all(c);
  for (size_t i = 0; i < nnotify; i++) send_gossip(c, notify[i]);
}

/* ------------------------------------------------------------------ */
/* Failure detection                                                   */

static int addr_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void set_row(troupe__cluster *c, const mem *m, bool unreachable) {
  rrow *r = row_find(&c->g, c->self, m->addr, m->uid);
  if (r && r->unreachable == unreachable) return;
  if (!r && !unreachable) return;
  if (!r) {
    if (grow(&c->g.r, &c->g.cr, c->g.nr + 1, sizeof *c->g.r) < 0) return;
    r = &c->g.r[c->g.nr++];
    memset(r, 0, sizeof *r);
    copy_addr(r->observer, c->self);
    copy_addr(r->subject, m->addr);
    r->uid = m->uid;
  }
  r->unreachable = unreachable;
  r->version++;
  LOG(c, TROUPE_LOG_INFO, "%s observes %s %s", c->self, m->addr,
      unreachable ? "unreachable" : "reachable again");
  bump(c);
}

/* Heartbeat the ring neighbours, feed the detectors, update our rows. */
static void failure_detection(troupe__cluster *c, uint64_t now, bool send) {
  const char *ring[MAX_MEMBERS];
  size_t n = 0;
  for (size_t i = 0; i < c->g.nm && n < MAX_MEMBERS; i++)
    if (is_active(&c->g.m[i])) ring[n++] = c->g.m[i].addr;
  qsort(ring, n, sizeof ring[0], addr_cmp);
  size_t me = 0;
  while (me < n && strcmp(ring[me], c->self) != 0) me++;
  bool want[MAX_MEMBERS] = {false};
  if (me < n)
    for (size_t k = 1; k < n && k <= c->o.monitored; k++)
      want[(me + k) % n] = true;
  /* stop monitoring who left the ring */
  for (size_t i = 0; i < c->npeers; i++) {
    peer *p = c->peers[i];
    if (!p->monitoring) continue;
    bool still = false;
    for (size_t j = 0; j < n && !still; j++)
      still = want[j] && strcmp(ring[j], p->addr) == 0;
    const mem *m = g_live(&c->g, p->addr);
    if (still && m && m->uid == p->mon_uid) continue;
    p->monitoring = false;
    if (m && is_active(m)) set_row(c, m, false);
  }
  for (size_t j = 0; j < n; j++) {
    if (!want[j]) continue;
    const mem *m = g_live(&c->g, ring[j]);
    peer *p = m ? peer_get(c, m->addr) : NULL;
    if (!p) continue;
    if (!p->monitoring) {
      p->monitoring = true;
      p->mon_uid = m->uid;
      uint64_t minstd = c->o.heartbeat_ms / 5 ? c->o.heartbeat_ms / 5 : 1;
      troupe__phi_init(&p->phi, c->o.heartbeat_ms, c->o.acceptable_pause_ms,
                       minstd);
      /* as if a heartbeat had just arrived: a peer that never answers
       * becomes unreachable after the acceptable pause */
      troupe__phi_heartbeat(&p->phi, now);
    }
    double phi = troupe__phi_value(&p->phi, now);
    bool unr = phi > c->o.phi_threshold;
    set_row(c, m, unr);
    if (phi > c->o.phi_threshold / 2 && now - p->ident_ms >= c->o.retry_join_ms) {
      /* maybe its daemon moved (a restarted worker): ask again */
      p->ref = TROUPE_REF_NONE;
      identify(c, p, now);
    }
    if (send) {
      whb hb = {c->self, c->uid, ++p->seq};
      send_to(c, p->addr, &T_HB, &hb);
    }
  }
}

/* ------------------------------------------------------------------ */
/* Split-brain resolver                                                */

static void resolver(troupe__cluster *c, uint64_t now) {
  const mem *me = self_mem(c);
  if (!me || !is_active(me)) return;
  uint64_t sig = 1469598103934665603ull;
  size_t nunr = 0;
  const char *side_leader = NULL;
  for (size_t i = 0; i < c->g.nm; i++) {
    const mem *m = &c->g.m[i];
    if (!is_live(m)) continue;
    bool unr = is_active(m) && m != me && g_unreachable(&c->g, m);
    for (const char *s = m->addr; *s; s++) sig = (sig ^ (uint8_t)*s) * 1099511628211ull;
    sig = (sig ^ m->uid ^ ((uint64_t)m->status << 1) ^ (uint64_t)unr) *
          1099511628211ull;
    if (unr) nunr++;
    else if (is_active(m) && !side_leader) side_leader = m->addr;
  }
  if (sig != c->sbr_sig) {
    c->sbr_sig = sig;
    c->sbr_since = now;
  }
  if (!nunr || c->o.sbr == TROUPE_SBR_OFF) return;
  if (now - c->sbr_since < c->o.stable_after_ms) return;
  if (!side_leader || strcmp(side_leader, c->self) != 0) return;
  troupe__sbr_node *nodes = calloc(c->g.nm, sizeof *nodes);
  if (!nodes) return;
  size_t nn = 0;
  for (size_t i = 0; i < c->g.nm; i++) {
    const mem *m = &c->g.m[i];
    if (!is_live(m)) continue;
    nodes[nn++] = (troupe__sbr_node){
      m->addr, m->up_number, (troupe_member_status)m->status,
      m == me || !g_unreachable(&c->g, m)};
  }
  troupe__sbr_decision d = troupe__sbr_decide(
      c->o.sbr, c->o.quorum_size, c->o.down_if_alone, nodes, nn);
  free(nodes);
  if (d == TROUPE__SBR_WAIT) return;
  LOG(c, TROUPE_LOG_WARN, "%s: split-brain resolver decides %s", c->self,
      troupe__sbr_decision_name(d));
  c->sbr_since = now;
  bool changed = false;
  for (size_t i = 0; i < c->g.nm; i++) {
    mem *m = &c->g.m[i];
    if (!is_active(m)) continue;
    bool unr = m != me && g_unreachable(&c->g, m);
    bool down = d == TROUPE__SBR_DOWN_ALL ||
                (d == TROUPE__SBR_DOWN_UNREACHABLE && unr) ||
                (d == TROUPE__SBR_DOWN_REACHABLE && !unr);
    if (!down) continue;
    if (d == TROUPE__SBR_DOWN_UNREACHABLE &&
        m->status == TROUPE_MEMBER_EXITING)
      continue;
    m->status = TROUPE_MEMBER_DOWN;
    changed = true;
  }
  if (changed) {
    bump(c);
    gossip_all(c);
  }
}

/* ------------------------------------------------------------------ */
/* Join, leave                                                         */

static void bootstrap(troupe__cluster *c) {
  g_free(&c->g);
  if (!g_add(&c->g, c->self, c->uid, TROUPE_MEMBER_JOINING, 0)) return;
  bump(c);
  c->phase = PH_MEMBER;
  LOG(c, TROUPE_LOG_INFO, "%s forms a new cluster", c->self);
}

static void join_round(troupe__cluster *c, uint64_t now) {
  if (c->ntargets == 0) return;
  bool others = false;
  if (!c->last_join_ms || now - c->last_join_ms >= c->o.retry_join_ms) {
    c->last_join_ms = now ? now : 1;
    for (size_t i = 0; i < c->ntargets; i++) {
      if (strcmp(c->targets[i], c->self) == 0) continue;
      others = true;
      peer *p = peer_get(c, c->targets[i]);
      if (!p) continue;
      if (troupe_ref_is_none(p->ref)) {
        identify(c, p, now);
      } else {
        wjoin j = {c->self, c->uid};
        (void)troupe_send(c->ctx, p->ref, &T_JOIN, &j);
      }
    }
  } else {
    for (size_t i = 0; i < c->ntargets; i++)
      if (strcmp(c->targets[i], c->self) != 0) others = true;
  }
  if (c->bootstrap &&
      (!others || now - c->started_ms >= 3 * c->o.retry_join_ms))
    bootstrap(c);
}

static void start_leaving(troupe__cluster *c) {
  mem *me = self_mem(c);
  c->preparing = false;
  if (!me) return;
  if (me->status == TROUPE_MEMBER_JOINING || me->status == TROUPE_MEMBER_UP) {
    me->status = TROUPE_MEMBER_LEAVING;
    bump(c);
    gossip_all(c);
  }
}

static void prepare_check(troupe__cluster *c, uint64_t now) {
  if (!c->preparing) return;
  bool waiting = false;
  for (size_t i = 0; i < c->nblockers; i++) {
    waiter *w = &c->blockers[i];
    if (w->pending && !troupe_ref_alive(c->sys, w->ref)) w->pending = false;
    if (w->pending) waiting = true;
  }
  if (waiting && now < c->prepare_deadline) return;
  if (waiting)
    LOG(c, TROUPE_LOG_WARN, "%s: leave preparation timed out", c->self);
  start_leaving(c);
}

static void leave_self(troupe__cluster *c, uint64_t now) {
  c->leave_wanted = true;
  if (c->phase == PH_JOINING) {
    finish(c, false, "left before joining");
    return;
  }
  if (c->phase != PH_MEMBER || c->preparing) return;
  const mem *me = self_mem(c);
  if (!me || (me->status != TROUPE_MEMBER_JOINING &&
              me->status != TROUPE_MEMBER_UP))
    return;
  c->preparing = true;
  c->prepare_deadline = now + PREPARE_TIMEOUT_MS;
    for (size_t i = 0; i < c->nblockers; i++) {
    waiter *w = &c->blockers[i];
    w->pending = troupe_ref_alive(c->sys, w->ref);
    if (w->pending)
      (void)troupe_send(c->ctx, w->ref, &TROUPE__T_CLUSTER_PREPARE_LEAVE, NULL);
  }
  prepare_check(c, now);
}

/* ------------------------------------------------------------------ */
/* The round                                                           */

static void pick_gossip_target(troupe__cluster *c) {
  const char *cand[MAX_MEMBERS], *fresh[MAX_MEMBERS];
  size_t nc = 0, nf = 0;
  for (size_t i = 0; i < c->g.nm && nc < MAX_MEMBERS; i++) {
    const mem *m = &c->g.m[i];
    if (!is_active(m) || strcmp(m->addr, c->self) == 0) continue;
    if (g_unreachable(&c->g, m)) continue;
    cand[nc++] = m->addr;
    if (!seen_has(&c->g, m->addr)) fresh[nf++] = m->addr;
  }
  if (!nc) return;
  uint64_t r = troupe__rand(c->sys);
  if (nf && (r & 7) != 0) send_gossip(c, fresh[(r >> 3) % nf]);
  else send_gossip(c, cand[(r >> 3) % nc]);
}

static void round_work(troupe__cluster *c) {
  uint64_t now = troupe__cluster_now(c);
  if (c->phase == PH_STOPPING) {
    if (c->stop_at) {
      c->phase = PH_DONE;
      if (c->stop_system) troupe_system_stop(c->sys);
      troupe_stop(c->ctx, troupe_self(c->ctx));
    }
    return;
  }
  if (c->phase == PH_DONE) return;
  if (!c->first_round_done) {
    c->first_round_done = true;
    c->started_ms = now;
  }
  if (c->phase == PH_JOINING) join_round(c, now);
  bool gossip_due = !c->last_gossip_ms || now - c->last_gossip_ms +
                    c->o.gossip_ms / 4 >= c->o.gossip_ms;
  if (c->phase == PH_MEMBER) {
    bool hb_due = !c->last_hb_ms || now - c->last_hb_ms +
                  c->o.heartbeat_ms / 4 >= c->o.heartbeat_ms;
    if (hb_due) c->last_hb_ms = now ? now : 1;
    failure_detection(c, now, hb_due);
    resolver(c, now);
    prepare_check(c, now);
    leader_actions(c, now);
    if (gossip_due) pick_gossip_target(c);
    for (size_t i = 0; i < c->npeers; i++) {
      peer *p = c->peers[i];
      if (!p->leave_req || troupe_ref_is_none(p->ref)) {
        if (p->leave_req) identify(c, p, now);
        continue;
      }
      wcmd cmd = {CMD_LEAVE, p->addr};
      (void)troupe_send(c->ctx, p->ref, &T_CMD, &cmd);
      p->leave_req = false;
    }
    check_self(c);
  }
  if (gossip_due) {
    c->last_gossip_ms = now ? now : 1;
        size_t k = 0;
    for (size_t i = 0; i < c->nticks; i++) {
      if (!troupe_ref_alive(c->sys, c->ticks[i])) continue;
      c->ticks[k++] = c->ticks[i];
      (void)troupe_send(c->ctx, c->ticks[i], &TROUPE__T_CLUSTER_TICK, NULL);
    }
    c->nticks = k;
  }
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */

static void on_gossip(troupe__cluster *c, const troupe_msg *msg) {
  gstate t;
  if (wire_parse(msg->data, &t) < 0) {
    LOG(c, TROUPE_LOG_WARN, "%s: malformed gossip dropped: %s", c->self,
        troupe_errmsg());
    return;
  }
  const troupe__cluster_gossip *w = msg->data;
  if (c->phase >= PH_STOPPING) goto out;
  const mem *tm_self = g_find(&t, c->self, c->uid);
  if (c->phase == PH_JOINING) {
    if (!tm_self) goto out;     /* not (yet) welcomed */
    g_free(&c->g);
    c->g = t;
    memset(&t, 0, sizeof t);
    (void)seen_add(&c->g, c->self);
    c->phase = PH_MEMBER;
    LOG(c, TROUPE_LOG_INFO, "%s joined through %s", c->self, w->from);
  } else {
    const mem *sm = g_find(&c->g, w->from, w->from_uid);
    if (sm && !is_active(sm)) goto out; /* a downed or removed node */
    const mem *ts = g_find(&t, w->from, w->from_uid);
    if (!ts) goto out;  /* the sender does not know itself: nonsense */
    switch (vc_cmp(&c->g, &t)) {
    case VC_SAME:
      for (size_t i = 0; i < t.nseen; i++) (void)seen_add(&c->g, t.seen[i]);
      break;
    case VC_BEFORE:
      g_free(&c->g);
      c->g = t;
      memset(&t, 0, sizeof t);
      (void)seen_add(&c->g, c->self);
      break;
    case VC_AFTER:
      break;
    default:
      if (g_merge(&c->g, &t) < 0) goto out;
      c->g.nseen = 0;
      (void)seen_add(&c->g, c->self);
      break;
    }
  }
  if (!troupe_ref_is_none(msg->sender)) {
    peer *p = peer_get(c, w->from);
    if (p) p->ref = msg->sender;
  }
  /* push back when the sender is behind or has not seen what we saw */
  {
    gstate again;
    if (wire_parse(w, &again) == 0) {
      bool same = vc_cmp(&c->g, &again) == VC_SAME;
      bool covers = true;
      for (size_t i = 0; i < c->g.nseen && covers; i++)
        covers = seen_has(&again, c->g.seen[i]);
      g_free(&again);
      if ((!same || !covers) && strcmp(w->from, c->self) != 0)
        send_gossip(c, w->from);
    }
  }
out:
  g_free(&t);
}

static void on_join(troupe__cluster *c, const troupe_msg *msg) {
  const wjoin *j = msg->data;
  if (!valid_address(j->address) || j->uid == 0) {
    LOG(c, TROUPE_LOG_WARN, "%s: malformed join dropped", c->self);
    return;
  }
  if (c->phase != PH_MEMBER || strcmp(j->address, c->self) == 0) return;
  const mem *me = self_mem(c);
  if (!me || !is_active(me)) return;
  peer *p = peer_get(c, j->address);
  if (p && !troupe_ref_is_none(msg->sender)) p->ref = msg->sender;
  mem *live = g_live(&c->g, j->address);
  if (live && live->uid == j->uid) {
    send_gossip(c, j->address);   /* welcome (again) */
    return;
  }
  if (live) {
    /* a new incarnation: the old one goes first */
    if (live->status != TROUPE_MEMBER_DOWN) {
      LOG(c, TROUPE_LOG_INFO, "%s: %s restarted; downing its old incarnation",
          c->self, j->address);
      live->status = TROUPE_MEMBER_DOWN;
      bump(c);
      gossip_all(c);
    }
    return;
  }
  if (g_find(&c->g, j->address, j->uid)) return;  /* removed incarnation */
  if (!g_add(&c->g, j->address, j->uid, TROUPE_MEMBER_JOINING, 0)) return;
  bump(c);
  LOG(c, TROUPE_LOG_INFO, "%s: %s is joining", c->self, j->address);
  send_gossip(c, j->address);
}

static void on_identity(troupe__cluster *c, const troupe_msg *msg) {
  const troupe_actor_identity *id = msg->data;
  if (troupe_ref_is_none(id->actor)) return;
  char addr[ADDR];
  if (ref_address(c, id->actor, addr) < 0) return;
  peer *p = peer_get(c, addr);
  if (!p) return;
  p->ref = id->actor;
  if (c->phase == PH_JOINING) {
    for (size_t i = 0; i < c->ntargets; i++)
      if (strcmp(c->targets[i], addr) == 0) {
        wjoin j = {c->self, c->uid};
        (void)troupe_send(c->ctx, p->ref, &T_JOIN, &j);
      }
  }
}

static void on_cmd(troupe__cluster *c, const troupe_msg *msg) {
  const wcmd *cmd = msg->data;
  bool remote = !troupe_ref_is_none(msg->sender) &&
                msg->sender.node != c->sys->node;
  uint64_t now = troupe__cluster_now(c);
  switch (cmd->kind) {
  case CMD_ROUND:
  case CMD_TICK:
    if (!remote) round_work(c);
    return;
  case CMD_JOIN:
    if (remote || !valid_address(cmd->address)) return;
    for (size_t i = 0; i < c->ntargets; i++)
      if (strcmp(c->targets[i], cmd->address) == 0) goto joined;
    if (grow(&c->targets, &c->ctargets, c->ntargets + 1,
             sizeof *c->targets) < 0)
      return;
    copy_addr(c->targets[c->ntargets++], cmd->address);
  joined:
    if (c->phase == PH_JOINING) {
      c->last_join_ms = 0;
      join_round(c, now);
    }
    return;
  case CMD_LEAVE:
    if (!cmd->address || strcmp(cmd->address, c->self) == 0) {
      leave_self(c, now);
    } else if (!remote) {
      peer *p = peer_get(c, cmd->address);
      if (p) p->leave_req = true;
      round_work(c);
    }
    return;
  case CMD_DOWN: {
    if (remote || !valid_address(cmd->address) || c->phase != PH_MEMBER)
      return;
    mem *m = g_live(&c->g, cmd->address);
    if (!m || m->status == TROUPE_MEMBER_DOWN) return;
    m->status = TROUPE_MEMBER_DOWN;
    bump(c);
    gossip_all(c);
    return;
  }
  default:
    LOG(c, TROUPE_LOG_WARN, "%s: unknown command %u dropped", c->self,
        cmd->kind);
  }
}

static int daemon_receive(troupe_ctx *ctx, void *state, const troupe_msg *msg) {
  troupe__cluster *c = *(troupe__cluster **)state;
  c->ctx = ctx;
  uint64_t now = troupe__cluster_now(c);
  int rc = 0;
  if (msg->type == &TROUPE__T_CLUSTER_GOSSIP) {
    on_gossip(c, msg);
  } else if (msg->type == &T_HB) {
    const whb *h = msg->data;
    if (c->phase <= PH_MEMBER && valid_address(h->from)) {
      whb r = {c->self, c->uid, h->seq};
      (void)troupe_reply(ctx, &T_HBRSP, &r);
    }
  } else if (msg->type == &T_HBRSP) {
    const whb *h = msg->data;
    peer *p = valid_address(h->from) ? peer_find(c, h->from) : NULL;
    if (p && p->monitoring && p->mon_uid == h->uid) {
      troupe__phi_heartbeat(&p->phi, now);
      if (!troupe_ref_is_none(msg->sender)) p->ref = msg->sender;
    }
  } else if (msg->type == &T_JOIN) {
    on_join(c, msg);
  } else if (msg->type == &TROUPE_T_ACTOR_IDENTITY) {
    on_identity(c, msg);
  } else if (msg->type == &T_CMD) {
    on_cmd(c, msg);
  } else if (msg->type == &TROUPE__T_CLUSTER_LEAVE_READY) {
    for (size_t i = 0; i < c->nblockers; i++)
      if (troupe_ref_eq(c->blockers[i].ref, msg->sender))
        c->blockers[i].pending = false;
    prepare_check(c, now);
  } else {
    rc = TROUPE_UNHANDLED;
  }
  if (c->phase == PH_MEMBER) {
    leader_actions(c, now);
    check_self(c);
  }
  publish(c);
  c->ctx = NULL;
  return rc;
}

static int daemon_init(troupe_ctx *ctx, void *state, const void *arg) {
  troupe__cluster *c = (troupe__cluster *)arg;
  *(troupe__cluster **)state = c;
  c->daemon = troupe_self(ctx);
  if (!c->o.clock) {
    uint64_t period = c->o.gossip_ms < c->o.heartbeat_ms ? c->o.gossip_ms
                                                          : c->o.heartbeat_ms;
    wcmd round = {CMD_ROUND, NULL};
    int rc = troupe_timer_periodic(ctx, ROUND_KEY, period, &T_CMD, &round);
    if (rc < 0) return rc;
    /* a first round at once: a lone first seed forms its cluster now */
    rc = troupe_send(ctx, troupe_self(ctx), &T_CMD, &round);
    if (rc < 0) return rc;
  }
  return 0;
}

static void daemon_post_stop(troupe_ctx *ctx, void *state) {
  (void)ctx;
  troupe__cluster *c = *(troupe__cluster **)state;
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  c->snap_done = true;
  pthread_mutex_unlock(&c->lock);
  atomic_store(&c->running, false);
}

static const troupe_behavior daemon_b = {
  .name = "cluster",
  .state_size = sizeof(troupe__cluster *),
  .init = daemon_init,
  .receive = daemon_receive,
  .post_stop = daemon_post_stop,
};

/* ------------------------------------------------------------------ */
/* Registry and the internal contract                                  */

static void cluster_free(troupe__cluster *c) {
  if (!c) return;
  g_free(&c->g);
  for (size_t i = 0; i < c->npeers; i++) free(c->peers[i]);
  free(c->peers);
  free(c->targets);
  free(c->ticks);
  free(c->blockers);
  free(c->pub);
  free(c->snap);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* The record of sys (running or not); reg_lock held. */
static troupe__cluster *reg_find(troupe_system *sys) {
  for (troupe__cluster *c = reg_head; c; c = c->next)
    if (c->sys == sys && c->node == sys->node) return c;
  return NULL;
}

static troupe__cluster *find_record(troupe_system *sys) {
  if (!sys) return NULL;
  pthread_mutex_lock(&reg_lock);
  troupe__cluster *c = reg_find(sys);
  pthread_mutex_unlock(&reg_lock);
  return c;
}

troupe__cluster *troupe__cluster_get(troupe_system *sys) {
  troupe__cluster *c = find_record(sys);
  return c && atomic_load(&c->running) ? c : NULL;
}

int troupe__cluster_tick_subscribe(troupe_system *sys, troupe_ref who) {
  troupe__cluster *c = troupe__cluster_get(sys);
  if (!c) return troupe__err(TROUPE_ESTATE, "no cluster running");
  if (troupe_ref_is_none(who))
    return troupe__err(TROUPE_EINVAL, "tick_subscribe: no actor");
  for (size_t i = 0; i < c->nticks; i++)
    if (troupe_ref_eq(c->ticks[i], who)) return 0;
  if (grow(&c->ticks, &c->cticks, c->nticks + 1, sizeof *c->ticks) < 0)
    return TROUPE_ENOMEM;
  c->ticks[c->nticks++] = who;
  return 0;
}

int troupe__cluster_leave_blocker_add(troupe_system *sys, troupe_ref who) {
  troupe__cluster *c = troupe__cluster_get(sys);
  if (!c) return troupe__err(TROUPE_ESTATE, "no cluster running");
  if (troupe_ref_is_none(who))
    return troupe__err(TROUPE_EINVAL, "leave_blocker_add: no actor");
  for (size_t i = 0; i < c->nblockers; i++)
    if (troupe_ref_eq(c->blockers[i].ref, who)) return 0;
  if (grow(&c->blockers, &c->cblockers, c->nblockers + 1,
           sizeof *c->blockers) < 0)
    return TROUPE_ENOMEM;
  c->blockers[c->nblockers++] = (waiter){who, false};
  if (c->preparing) {
    /* joined the leave already under way: tell it too */
    c->blockers[c->nblockers - 1].pending = true;
    (void)troupe_tell(who, &TROUPE__T_CLUSTER_PREPARE_LEAVE, NULL, c->daemon);
  }
  return 0;
}

troupe_ref troupe__cluster_daemon(troupe_system *sys) {
  troupe__cluster *c = troupe__cluster_get(sys);
  return c ? c->daemon : TROUPE_REF_NONE;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

static int check_opts(const troupe_cluster_opts *o) {
  if (o->nseeds && !o->seeds)
    return troupe__err(TROUPE_EINVAL, "nseeds %zu without seeds", o->nseeds);
  if (o->nseeds > MAX_MEMBERS)
    return troupe__err(TROUPE_EINVAL, "too many seeds (%zu)", o->nseeds);
  for (size_t i = 0; i < o->nseeds; i++)
    if (!valid_address(o->seeds[i]))
      return troupe__err(TROUPE_EINVAL, "bad seed address \"%s\"",
                         o->seeds[i] ? o->seeds[i] : "(null)");
  if (o->phi_threshold < 0 || o->phi_threshold != o->phi_threshold)
    return troupe__err(TROUPE_EINVAL, "bad phi_threshold");
  if ((unsigned)o->sbr > TROUPE_SBR_OFF)
    return troupe__err(TROUPE_EINVAL, "unknown split-brain strategy %d",
                       (int)o->sbr);
  if (o->sbr == TROUPE_SBR_STATIC_QUORUM && o->quorum_size == 0)
    return troupe__err(TROUPE_EINVAL, "static-quorum needs quorum_size");
  if (!o->clock && o->clock_data)
    return troupe__err(TROUPE_EINVAL, "clock_data without clock");
  return 0;
}

int troupe_cluster_start(troupe_system *sys, const troupe_cluster_opts *opts) {
  if (!sys)
    return troupe__err(TROUPE_EINVAL, "troupe_cluster_start: NULL system");
  troupe_cluster_opts o;
  if (opts) o = *opts;
  else memset(&o, 0, sizeof o);
  int rc = check_opts(&o);
  if (rc < 0) return rc;
  int st = atomic_load(&sys->state);
  if (st != TROUPE__SYS_CREATED && troupe__current != sys)
    return troupe__err(TROUPE_EWRONGTHREAD, "troupe_cluster_start: from the "
                       "system's thread or before it runs");
  if (st == TROUPE__SYS_CREATED && troupe__current && troupe__current != sys)
    return troupe__err(TROUPE_EWRONGTHREAD, "troupe_cluster_start: from the "
                       "thread of system %s", troupe__current->name);
  if (!sys->sysg || atomic_load(&sys->stop_requested))
    return troupe__err(TROUPE_ESTATE, "system %s is stopping", sys->name);
  pthread_once(&types_once, register_types);
  if (types_rc < 0)
    return troupe__err(types_rc, "registering the cluster messages");
  if (!o.gossip_ms) o.gossip_ms = 200;
  if (!o.heartbeat_ms) o.heartbeat_ms = 500;
  if (o.phi_threshold == 0) o.phi_threshold = 8.0;
  if (!o.acceptable_pause_ms) o.acceptable_pause_ms = 2000;
  if (!o.monitored) o.monitored = 5;
  if (!o.stable_after_ms) o.stable_after_ms = 2000;
  if (!o.down_removal_margin_ms) o.down_removal_margin_ms = o.stable_after_ms;
  if (!o.retry_join_ms) o.retry_join_ms = 500;

  troupe__cluster *c = calloc(1, sizeof *c);
  if (!c) return troupe__err(TROUPE_ENOMEM, "cluster");
  pthread_mutex_init(&c->lock, NULL);
  c->sys = sys;
  c->node = sys->node;
  c->daemon = TROUPE_REF_NONE;
  const char *addr = atomic_load(&sys->address);
  int n = addr ? snprintf(c->self, ADDR, "troupe://%s@%s", sys->name, addr)
               : snprintf(c->self, ADDR, "troupe://%s", sys->name);
  if (n < 0 || n >= ADDR || !valid_address(c->self)) {
    cluster_free(c);
    return troupe__err(TROUPE_EINVAL, "node address too long");
  }
  uint64_t u = troupe__rand(sys) ^ ((uint64_t)uv_hrtime() * 0x9E3779B97F4A7C15ull)
               ^ (uint64_t)(uintptr_t)c;
  c->uid = u ? u : 1;
  for (size_t i = 0; i < o.nseeds; i++) {
    if (grow(&c->targets, &c->ctargets, c->ntargets + 1,
             sizeof *c->targets) < 0) {
      cluster_free(c);
      return TROUPE_ENOMEM;
    }
    copy_addr(c->targets[c->ntargets++], o.seeds[i]);
  }
  c->bootstrap = o.nseeds && strcmp(o.seeds[0], c->self) == 0;
  o.seeds = NULL;   /* copied into targets */
  o.nseeds = 0;
  c->o = o;

  pthread_mutex_lock(&reg_lock);
  troupe__cluster **pp = &reg_head;
  while (*pp) {
    troupe__cluster *x = *pp;
    if (x->sys == sys && x->node == sys->node) {
      pthread_mutex_unlock(&reg_lock);
      cluster_free(c);
      return troupe__err(TROUPE_ESTATE, "a cluster was already started on "
                         "%s", sys->name);
    }
    if (x->sys == sys) {   /* a destroyed system's record: pointer reused */
      *pp = x->next;
      cluster_free(x);
      continue;
    }
    pp = &x->next;
  }
  pthread_mutex_unlock(&reg_lock);

  /* the daemon before the record is visible: other threads read
   * c->daemon once they find the record */
  atomic_store(&c->running, true);
  troupe_system *prev = troupe__current;
  troupe__current = sys;
  troupe_spawn_opts so = {.name = "cluster", .arg = c};
  troupe__cell *cell = NULL;
  rc = troupe__spawn(sys, sys->sysg, &daemon_b, &so, 0, &cell);
  troupe__current = prev;
  if (rc < 0) {
    cluster_free(c);
    return rc;
  }
  pthread_mutex_lock(&reg_lock);
  c->next = reg_head;
  reg_head = c;
  pthread_mutex_unlock(&reg_lock);
  return 0;
}

static int tell_cmd(troupe__cluster *c, uint32_t kind, const char *address) {
  wcmd cmd = {kind, (char *)address};
  return troupe_tell(c->daemon, &T_CMD, &cmd, TROUPE_REF_NONE);
}

static int need(troupe_system *sys, troupe__cluster **out) {
  if (!sys) return troupe__err(TROUPE_EINVAL, "NULL system");
  troupe__cluster *c = find_record(sys);
  if (!c) return troupe__err(TROUPE_ESTATE, "no cluster on %s", sys->name);
  *out = c;
  return 0;
}

static bool snap_has(troupe__cluster *c, const char *address) {
  pthread_mutex_lock(&c->lock);
  bool has = false;
  for (size_t i = 0; i < c->nsnap && !has; i++)
    has = strcmp(c->snap[i].address, address) == 0;
  pthread_mutex_unlock(&c->lock);
  return has;
}

static bool is_done(troupe__cluster *c) {
  pthread_mutex_lock(&c->lock);
  bool d = c->snap_done;
  pthread_mutex_unlock(&c->lock);
  return d || !atomic_load(&c->running);
}

int troupe_cluster_join(troupe_system *sys, const char *address) {
  troupe__cluster *c;
  int rc = need(sys, &c);
  if (rc < 0) return rc;
  if (!valid_address(address))
    return troupe__err(TROUPE_EINVAL, "bad address \"%s\"",
                       address ? address : "(null)");
  if (is_done(c))
    return troupe__err(TROUPE_ESTATE, "%s has left the cluster", c->self);
  return tell_cmd(c, CMD_JOIN, address);
}

int troupe_cluster_leave(troupe_system *sys, const char *address) {
  troupe__cluster *c;
  int rc = need(sys, &c);
  if (rc < 0) return rc;
  if (address && !valid_address(address))
    return troupe__err(TROUPE_EINVAL, "bad address \"%s\"", address);
  if (is_done(c))
    return troupe__err(TROUPE_ESTATE, "%s has left the cluster", c->self);
  if (address && strcmp(address, c->self) == 0) address = NULL;
  if (address && !snap_has(c, address))
    return troupe__err(TROUPE_ENOENT, "no member %s", address);
  return tell_cmd(c, CMD_LEAVE, address);
}

int troupe_cluster_down(troupe_system *sys, const char *address) {
  troupe__cluster *c;
  int rc = need(sys, &c);
  if (rc < 0) return rc;
  if (!valid_address(address))
    return troupe__err(TROUPE_EINVAL, "bad address \"%s\"",
                       address ? address : "(null)");
  if (is_done(c))
    return troupe__err(TROUPE_ESTATE, "%s has left the cluster", c->self);
  if (!snap_has(c, address))
    return troupe__err(TROUPE_ENOENT, "no member %s", address);
  return tell_cmd(c, CMD_DOWN, address);
}

static int put(char *buf, size_t size, const char *s) {
  if (!buf || !size) return troupe__err(TROUPE_EINVAL, "NULL buffer");
  size_t n = strlen(s);
  if (n >= size) return troupe__err(TROUPE_ERANGE, "buffer too small");
  memcpy(buf, s, n + 1);
  return (int)n;
}

int troupe_cluster_self(troupe_system *sys, char *buf, size_t size) {
  troupe__cluster *c;
  int rc = need(sys, &c);
  if (rc < 0) return rc;
  return put(buf, size, c->self);
}

int troupe_cluster_members(troupe_system *sys, troupe_member *out,
                           size_t max) {
  troupe__cluster *c;
  int rc = need(sys, &c);
  if (rc < 0) return rc;
  if (max && !out) return troupe__err(TROUPE_EINVAL, "NULL output");
  pthread_mutex_lock(&c->lock);
  size_t n = c->nsnap;
  if (out && max && n) memcpy(out, c->snap, (n < max ? n : max) * sizeof *out);
  pthread_mutex_unlock(&c->lock);
  return (int)n;
}

int troupe_cluster_member_status(troupe_system *sys, const char *address,
                                 troupe_member_status *out) {
  troupe__cluster *c;
  int rc = need(sys, &c);
  if (rc < 0) return rc;
  if (!address || !out)
    return troupe__err(TROUPE_EINVAL, "NULL argument");
  *out = 0;
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < c->nsnap; i++)
    if (strcmp(c->snap[i].address, address) == 0) *out = c->snap[i].status;
  if (!*out && strcmp(address, c->self) == 0 && c->snap_self)
    *out = c->snap_self;
  pthread_mutex_unlock(&c->lock);
  if (!*out) return troupe__err(TROUPE_ENOENT, "no member %s", address);
  return 0;
}

static int snap_addr(troupe_system *sys, char *buf, size_t size, bool oldest) {
  troupe__cluster *c;
  int rc = need(sys, &c);
  if (rc < 0) return rc;
  char a[ADDR];
  pthread_mutex_lock(&c->lock);
  copy_addr(a, oldest ? c->snap_oldest : c->snap_leader);
  pthread_mutex_unlock(&c->lock);
  if (!a[0])
    return troupe__err(TROUPE_ENOENT, "no %s yet", oldest ? "oldest" : "leader");
  return put(buf, size, a);
}

int troupe_cluster_leader(troupe_system *sys, char *buf, size_t size) {
  return snap_addr(sys, buf, size, false);
}

int troupe_cluster_oldest(troupe_system *sys, char *buf, size_t size) {
  return snap_addr(sys, buf, size, true);
}

bool troupe_cluster_converged(troupe_system *sys) {
  troupe__cluster *c = find_record(sys);
  if (!c) return false;
  pthread_mutex_lock(&c->lock);
  bool v = c->snap_converged;
  pthread_mutex_unlock(&c->lock);
  return v;
}

int troupe_cluster_tick(troupe_system *sys) {
  troupe__cluster *c;
  int rc = need(sys, &c);
  if (rc < 0) return rc;
  if (!c->o.clock)
    return troupe__err(TROUPE_ESTATE, "the cluster of %s is not on a clock",
                       sys->name);
  if (!atomic_load(&c->running))
    return troupe__err(TROUPE_ESTATE, "the cluster daemon has stopped");
  return tell_cmd(c, CMD_TICK, NULL);
}

int troupe_cluster_subscribe(troupe_ctx *ctx) {
  if (!ctx) return troupe__err(TROUPE_EINVAL, "troupe_cluster_subscribe: NULL");
  troupe_system *sys = troupe_ctx_system(ctx);
  troupe__cluster *c = troupe__cluster_get(sys);
  if (!c) return troupe__err(TROUPE_ESTATE, "no cluster on %s", sys->name);
  int rc = troupe_subscribe(ctx, &TROUPE_T_CLUSTER_EVENT);
  if (rc < 0) return rc;
  /* the current state first, as events, in the subscriber's mailbox ahead
   * of anything published later (both on this loop) */
  troupe_ref self = troupe_self(ctx);
  for (size_t i = 0; i < c->npub; i++) {
    troupe_cluster_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = status_event(c->pub[i].status);
    ev.member = c->pub[i];
    (void)troupe_tell(self, &TROUPE_T_CLUSTER_EVENT, &ev, c->daemon);
    if (!c->pub[i].reachable) {
      ev.kind = TROUPE_CLUSTER_UNREACHABLE;
      (void)troupe_tell(self, &TROUPE_T_CLUSTER_EVENT, &ev, c->daemon);
    }
  }
  if (c->pub_leader[0]) {
    troupe_cluster_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = TROUPE_CLUSTER_LEADER_CHANGED;
    for (size_t i = 0; i < c->npub; i++)
      if (strcmp(c->pub[i].address, c->pub_leader) == 0)
        ev.member = c->pub[i];
    copy_addr(ev.member.address, c->pub_leader);
    (void)troupe_tell(self, &TROUPE_T_CLUSTER_EVENT, &ev, c->daemon);
  }
  return 0;
}
