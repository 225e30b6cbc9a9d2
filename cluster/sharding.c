/*
 * cluster/sharding.c: cluster sharding — the region (routing, shards and
 * their entities, hand-off, passivation, remember-entities) and the
 * coordinator (allocation, rebalance). docs/sharding.md is the guide.
 *
 * The region is an actor under /system ("sharding-<type>"); the entities
 * are its children; shards are bookkeeping inside it. A user message told
 * to the region is not copied on its way: the region takes the envelope
 * it is handling (as a stash would) and moves it to the entity's mailbox,
 * to another region, or into a shard's buffer, so sender and ask id stay
 * what they were.
 *
 * The coordinator is an actor under /system ("sharding-<type>-coord") on
 * the oldest member, spawned there by the region. Its state is rebuilt
 * from the regions when it moves (they register with the shards they
 * host).
 */
#include "core/internal.h"
#include "cluster/membership.h"
#include "cluster/sharding_internal.h"
#include "troupe/remote.h"
#include "troupe/sharding.h"

#include <inttypes.h>
#include <stdio.h>

/* ------------------------------------------------------------------ */
/* Messages                                                            */

/* Between regions and the coordinator (over the wire). */
enum {
  SH_REGISTER = 1,      /* region -> coord: region, address, proxy, shards */
  SH_REGISTER_ACK,      /* coord -> region */
  SH_GET_HOME,          /* region -> coord: shard */
  SH_HOME,              /* coord -> region: shard, region, address */
  SH_BEGIN_HANDOFF,     /* coord -> every region: shard */
  SH_BEGIN_ACK,         /* region -> coord: shard */
  SH_HANDOFF,           /* coord -> owner: shard */
  SH_SHARD_STOPPED,     /* owner -> coord: shard */
  SH_GRACEFUL,          /* region -> coord: hand off all mine */
  SH_SHUTDOWN_DONE,     /* coord -> region: you host nothing now */
  SH__MAX
};

typedef struct shmsg {
  uint32_t kind;
  uint32_t shard;
  troupe_ref region;
  char *address;
  bool proxy;
  troupe_vec shards;      /* of uint32_t */
} shmsg;
static const troupe_field shmsg_fields[] = {
  TROUPE_FIELD(shmsg, kind, U32),     TROUPE_FIELD(shmsg, shard, U32),
  TROUPE_FIELD(shmsg, region, REF),   TROUPE_FIELD(shmsg, address, STRING),
  TROUPE_FIELD(shmsg, proxy, BOOL),   TROUPE_FIELD_VEC(shmsg, shards, U32),
};
static troupe_type T_SHMSG =
    TROUPE_TYPE("troupe.sharding.Control", 1, shmsg, shmsg_fields);

/* Inside a node: region <-> its entities. */
enum { SL_START = 1, SL_STOP, SL_PASSIVATE };
typedef struct shlocal {
  uint32_t kind;
  uint32_t shard;
} shlocal;
static const troupe_field shlocal_fields[] = {
  TROUPE_FIELD(shlocal, kind, U32), TROUPE_FIELD(shlocal, shard, U32)};
static troupe_type T_SHLOCAL =
    TROUPE_TYPE("troupe.sharding.Local", 1, shlocal, shlocal_fields);

/* Remember-entities: the store's events and state, and what it tells the
 * region after recovery. */
typedef struct shid {
  char *id;
} shid;
static const troupe_field shid_fields[] = {TROUPE_FIELD(shid, id, STRING)};
static troupe_type T_EV_STARTED =
    TROUPE_TYPE("troupe.sharding.EntityStarted", 1, shid, shid_fields);
static troupe_type T_EV_STOPPED =
    TROUPE_TYPE("troupe.sharding.EntityStopped", 1, shid, shid_fields);

typedef struct shids {
  uint32_t shard;
  troupe_vec ids;         /* of char * */
} shids;
static const troupe_field shids_fields[] = {
  TROUPE_FIELD(shids, shard, U32), TROUPE_FIELD_VEC(shids, ids, STRING)};
static troupe_type T_SHIDS =
    TROUPE_TYPE("troupe.sharding.EntityIds", 1, shids, shids_fields);

static int register_types(void) {
  troupe_type *all[] = {&T_SHMSG, &T_SHLOCAL, &T_EV_STARTED, &T_EV_STOPPED,
                        &T_SHIDS};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
    int rc = troupe_type_register(all[i]);
    if (rc < 0 && rc != TROUPE_EEXIST) return rc;
  }
  return 0;
}

uint32_t troupe_shard_of(const char *entity_id, size_t len, uint32_t shards) {
  if (!entity_id || shards == 0) return 0;
  return (uint32_t)(troupe__fnv1a64(entity_id, len) % shards);
}

/* ------------------------------------------------------------------ */
/* The registry: regions by (system, type), for any thread.            */

#define NO_ADDR 0xffffu

typedef struct regentry {
  struct regentry *next;
  troupe_system *sys;
  char type[72];
  troupe_ref ref;
  troupe_sharding_stats stats;
  uint32_t nshards;
  uint16_t *home_addr;     /* per shard: index into addrs, or NO_ADDR */
  char **addrs;
  uint32_t naddrs, caddrs;
} regentry;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static regentry *reg_head;

static regentry *reg_find_locked(troupe_system *sys, const char *type) {
  for (regentry *e = reg_head; e; e = e->next)
    if (e->sys == sys && strcmp(e->type, type) == 0) return e;
  return NULL;
}

static void reg_free(regentry *e) {
  if (!e) return;
  for (uint32_t i = 0; i < e->naddrs; i++) free(e->addrs[i]);
  free(e->addrs);
  free(e->home_addr);
  free(e);
}

static void reg_unlink(regentry *x) {
  pthread_mutex_lock(&reg_lock);
  for (regentry **p = &reg_head; *p; p = &(*p)->next)
    if (*p == x) {
      *p = x->next;
      break;
    }
  pthread_mutex_unlock(&reg_lock);
  reg_free(x);
}

/* The index of address in e's table (added when new); NO_ADDR on OOM. */
static uint16_t reg_addr(regentry *e, const char *address) {
  pthread_mutex_lock(&reg_lock);
  uint16_t r = NO_ADDR;
  for (uint32_t i = 0; i < e->naddrs; i++)
    if (strcmp(e->addrs[i], address) == 0) {
      r = (uint16_t)i;
      goto out;
    }
  if (e->naddrs >= NO_ADDR) goto out;
  if (e->naddrs == e->caddrs) {
    uint32_t nc = e->caddrs ? e->caddrs * 2 : 8;
    char **n = realloc(e->addrs, nc * sizeof *n);
    if (!n) goto out;
    e->addrs = n;
    e->caddrs = nc;
  }
  char *copy = strdup(address);
  if (!copy) goto out;
  e->addrs[e->naddrs] = copy;
  r = (uint16_t)e->naddrs++;
out:
  pthread_mutex_unlock(&reg_lock);
  return r;
}

/* ------------------------------------------------------------------ */
/* Region state                                                        */

enum { H_UNKNOWN = 0, H_LOCAL, H_REMOTE, H_MOVING, H_STOPPING };
enum { E_RUN = 0, E_STOPPING };

typedef struct ent {
  char *id;
  uint64_t hash;
  troupe_ref ref;
  uint32_t shard;
  uint8_t state;
  bool passivating;
  bool active;            /* got a message since the last tick */
  uint64_t last_ms;
  troupe__env *qh, *qt;   /* held while it stops */
  uint32_t qlen;
} ent;

typedef struct shome {
  uint8_t st;
  bool requested;
  troupe_ref region;      /* H_REMOTE */
  uint32_t nent;          /* local entities */
  troupe__env *bh, *bt;   /* buffer while the home is unknown / moving */
  uint32_t blen;
  troupe_ref store;       /* remember-entities store entity */
  troupe_ref handoff_to;  /* the coordinator waiting for ShardStopped */
} shome;

/* Open addressing, linear probing, backward-shift deletion. */
typedef struct emap {
  ent **slots;
  size_t cap, len;
} emap;

typedef struct region {
  const troupe_sharding_def *def;
  troupe_entity_def edef;       /* def->entity with our command wrapper */
  troupe_durable_def ddef;
  troupe_entity_def store_def;  /* remember-entities store */
  troupe_system *sys;
  troupe_ref self;
  regentry *reg;
  char type[72];
  uint32_t nshards;
  char self_addr[TROUPE_ADDRESS_MAX];
  char oldest[TROUPE_ADDRESS_MAX];
  shome *homes;
  emap by_id, by_uid;
  uint64_t buffered;
  uint32_t nlocal;              /* shards hosted */
  /* coordinator */
  troupe_ref coord;
  bool coord_known, registered, resolving, coord_local;
  uint64_t resolve_ask;
  uint64_t register_sent_ms;
  troupe_ref coord_child;
  /* lifecycle */
  bool started, leaving, graceful_sent, leave_ready_sent, removed;
  troupe_sharding_stats st;
  uint32_t since_pub;
  uint64_t dropped_logged;
} region;

static const troupe_behavior region_beh;
static const troupe_behavior coord_beh;

static inline uint64_t uid_hash(uint64_t u) {
  u ^= u >> 33;
  u *= 0xff51afd7ed558ccdull;
  u ^= u >> 33;
  return u;
}

static ent **emap_find_id(emap *m, const char *id, size_t len, uint64_t h) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    ent *e = m->slots[i];
    if (!e) return NULL;
    if (e->hash == h && strncmp(e->id, id, len) == 0 && e->id[len] == 0)
      return &m->slots[i];
  }
}

static ent **emap_find_uid(emap *m, uint64_t uid) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = uid_hash(uid) & mask;; i = (i + 1) & mask) {
    ent *e = m->slots[i];
    if (!e) return NULL;
    if (e->ref.uid == uid) return &m->slots[i];
  }
}

static int emap_put(emap *m, ent *e, bool by_uid);

static int emap_grow(emap *m, bool by_uid) {
  size_t nc = m->cap ? m->cap * 2 : 64;
  ent **old = m->slots;
  size_t oc = m->cap;
  m->slots = calloc(nc, sizeof *m->slots);
  if (!m->slots) {
    m->slots = old;
    return TROUPE_ENOMEM;
  }
  m->cap = nc;
  m->len = 0;
  for (size_t i = 0; i < oc; i++)
    if (old[i]) emap_put(m, old[i], by_uid);
  free(old);
  return 0;
}

static int emap_put(emap *m, ent *e, bool by_uid) {
  if ((m->len + 1) * 4 > m->cap * 3) {
    int rc = emap_grow(m, by_uid);
    if (rc < 0) return rc;
  }
  size_t mask = m->cap - 1;
  size_t i = (by_uid ? uid_hash(e->ref.uid) : e->hash) & mask;
  while (m->slots[i]) i = (i + 1) & mask;
  m->slots[i] = e;
  m->len++;
  return 0;
}

static void emap_del(emap *m, ent **slot, bool by_uid) {
  size_t mask = m->cap - 1;
  size_t i = (size_t)(slot - m->slots);
  m->slots[i] = NULL;
  m->len--;
  for (size_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
    ent *e = m->slots[j];
    size_t k = (by_uid ? uid_hash(e->ref.uid) : e->hash) & mask;
    /* move e back to i when its home k is not in (i, j] */
    bool stay = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
    if (stay) continue;
    m->slots[i] = e;
    m->slots[j] = NULL;
    i = j;
  }
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static region *region_of(troupe__cell *c) {
  return (c && c->beh == &region_beh) ? c->state : NULL;
}

static void publish(region *r) {
  regentry *e = r->reg;
  if (!e) return;
  r->st.shards = r->nlocal;
  r->st.entities = (uint32_t)r->by_id.len;
  r->st.buffered = r->buffered;
  pthread_mutex_lock(&reg_lock);
  e->stats = r->st;
  pthread_mutex_unlock(&reg_lock);
  r->since_pub = 0;
}

static void set_home_addr(region *r, uint32_t shard, const char *addr) {
  uint16_t a = addr ? reg_addr(r->reg, addr) : NO_ADDR;
  pthread_mutex_lock(&reg_lock);
  r->reg->home_addr[shard] = a;
  pthread_mutex_unlock(&reg_lock);
}

static void drop(region *r, troupe__env *e, int reason, const char *why) {
  r->st.dropped++;
  if (r->st.dropped <= 10 || (r->st.dropped & 1023) == 0)
    troupe__log(r->sys, TROUPE_LOG_WARN, r->type,
                "sharding %s: message %s dropped (%s; %" PRIu64 " so far)",
                r->type, e->type && e->type->manifest ? e->type->manifest : "?",
                why, r->st.dropped);
  troupe__dead_letter(r->sys, r->self, e, reason);
  publish(r);
}

/* Move e (taken, kind USER) to `to`, a local or remote actor. */
static void send_env(region *r, troupe_ref to, troupe__env *e) {
  e->next = NULL;
  if (to.node == r->sys->node) {
    troupe__deliver_local(r->sys, to.uid, e, false);
    return;
  }
  troupe__node *n = troupe__node_get(to.node);
  if (!n) {
    drop(r, e, TROUPE_ENOENT, "unknown node");
    return;
  }
  e->target = to.uid;
  e->tnode = to.node;
  troupe__send_node(r->sys, n, to.node, e);
}

static troupe__env *take_current(troupe_system *sys) {
  troupe__env *e = sys->cur_env;
  sys->cur_stashed = true;
  e->next = NULL;
  return e;
}

static int ctl(region *r, troupe_ref to, uint32_t kind, uint32_t shard) {
  shmsg m;
  memset(&m, 0, sizeof m);
  m.kind = kind;
  m.shard = shard;
  m.region = r->self;
  m.address = r->self_addr;
  m.proxy = r->def->proxy_only;
  return troupe_tell(to, &T_SHMSG, &m, r->self);
}

/* Append e to a held queue (a shard's or an entity's) within the region's
 * buffer bound; over it, e is a dead letter. Returns whether it was held. */
static bool held_push(region *r, troupe__env **head, troupe__env **tail,
                      uint32_t *len, troupe__env *e) {
  if (r->buffered >= r->def->buffer_size) {
    drop(r, e, TROUPE_EFULL, "buffer full");
    return false;
  }
  e->next = NULL;
  if (*tail) (*tail)->next = e;
  else *head = e;
  *tail = e;
  (*len)++;
  r->buffered++;
  return true;
}

static void buffer_push(region *r, shome *h, troupe__env *e) {
  if (held_push(r, &h->bh, &h->bt, &h->blen, e) &&
      (r->buffered < 16 || (r->buffered & 1023) == 0))
    publish(r);
}

static void ent_push(region *r, ent *x, troupe__env *e) {
  held_push(r, &x->qh, &x->qt, &x->qlen, e);
}

static void dead_list(region *r, troupe__env *e, int reason) {
  while (e) {
    troupe__env *n = e->next;
    e->next = NULL;
    drop(r, e, reason, "shard stopped");
    e = n;
  }
}

/* ------------------------------------------------------------------ */
/* Entities                                                            */

static int wrap_entity_command(troupe_entity *e, const void *st,
                               const troupe_msg *m);
static int wrap_durable_command(troupe_durable *d, const void *st,
                                const troupe_msg *m);

static void store_remember(region *r, troupe_ctx *ctx, uint32_t shard,
                           const char *id, bool started) {
  shome *h = &r->homes[shard];
  if (!r->def->remember_entities || troupe_ref_is_none(h->store)) return;
  shid m = {(char *)id};
  troupe_send(ctx, h->store, started ? &T_EV_STARTED : &T_EV_STOPPED, &m);
}

static ent *ent_start(region *r, troupe_ctx *ctx, const char *id, size_t len,
                      uint64_t hash, uint32_t shard, bool remember) {
  ent *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  x->id = malloc(len + 1);
  if (!x->id) {
    free(x);
    return NULL;
  }
  memcpy(x->id, id, len);
  x->id[len] = 0;
  x->hash = hash;
  x->shard = shard;
  int rc;
  const troupe_sharding_def *d = r->def;
  if (d->entity) {
    rc = troupe_entity_spawn(r->sys, ctx, d->persistence, &r->edef, x->id,
                             &x->ref);
  } else if (d->durable) {
    rc = troupe_durable_spawn(r->sys, ctx, d->persistence, &r->ddef, x->id,
                              &x->ref);
  } else {
    troupe_spawn_opts so = {
      .name = troupe__valid_actor_name(x->id, len) ? x->id : NULL,
      .arg = x->id, .arg_size = len + 1};
    rc = troupe_spawn(ctx, d->behavior, &so, &x->ref);
  }
  if (rc < 0) {
    troupe__log(r->sys, TROUPE_LOG_ERROR, r->type,
                "sharding %s: cannot start entity %s: %s", r->type, x->id,
                troupe_strerror(rc));
    if (rc == TROUPE_EBUSY) r->st.conflicts++;
    free(x->id);
    free(x);
    return NULL;
  }
  if (emap_put(&r->by_id, x, false) < 0 || emap_put(&r->by_uid, x, true) < 0) {
    ent **s = emap_find_id(&r->by_id, x->id, len, hash);
    if (s) emap_del(&r->by_id, s, false);
    troupe_stop(ctx, x->ref);
    free(x->id);
    free(x);
    return NULL;
  }
  troupe_watch(ctx, x->ref);
  x->last_ms = 0;
  x->active = true;
  r->homes[shard].nent++;
  r->st.started++;
  if (remember) store_remember(r, ctx, shard, x->id, true);
  publish(r);
  return x;
}

/* Ask an entity to stop after what it is doing. */
static void ent_stop(region *r, troupe_ctx *ctx, ent *x, bool passivate) {
  if (x->state == E_STOPPING) {
    if (!passivate) x->passivating = false;
    return;
  }
  x->state = E_STOPPING;
  x->passivating = passivate;
  if (r->def->behavior) {
    troupe_send(ctx, x->ref, &TROUPE_T_POISON_PILL, NULL);
  } else {
    shlocal m = {SL_STOP, x->shard};
    troupe_send(ctx, x->ref, &T_SHLOCAL, &m);
  }
}

static void ent_free(ent *x) {
  free(x->id);
  free(x);
}

/* The region of the entity whose callback is running. */
static region *region_of_entity(troupe_ctx *ctx) {
  troupe__cell *c = (troupe__cell *)ctx;
  return c ? region_of(c->parent) : NULL;
}

/* The region's own messages to a persistent entity (stop when idle), or
 * the entity's region for a user command. Returns true when m was the
 * region's, with its result in *rc. */
static bool region_command(troupe_ctx *ctx, const troupe_msg *m, region **r,
                           int *rc) {
  if (m->type == &T_SHLOCAL) {
    const shlocal *l = m->data;
    *rc = l->kind == SL_STOP ? troupe_stop(ctx, troupe_self(ctx)) : 0;
    return true;
  }
  *r = region_of_entity(ctx);
  *rc = *r ? 0 : TROUPE_ESTATE;
  return !*r;
}

static int wrap_entity_command(troupe_entity *e, const void *st,
                               const troupe_msg *m) {
  region *r = NULL;
  int rc;
  if (region_command(troupe_entity_ctx(e), m, &r, &rc)) return rc;
  return r->def->entity->command(e, st, m);
}

static int wrap_durable_command(troupe_durable *d, const void *st,
                                const troupe_msg *m) {
  region *r = NULL;
  int rc;
  if (region_command(troupe_durable_ctx(d), m, &r, &rc)) return rc;
  return r->def->durable->command(d, st, m);
}

/* Entities fail to their region: a persistent one stops (its next
 * message starts it again, recovering), a plain actor restarts. Conflicts
 * (another writer) are counted. */
static troupe_directive entity_decide(void *data, troupe_ref child,
                                      int error) {
  (void)data;
  troupe_system *sys = troupe__current;
  troupe__cell *c = sys ? troupe__cell_get(sys, child.uid) : NULL;
  region *r = c ? region_of(c->parent) : NULL;
  if (!r) return TROUPE_STOP;
  if (error == TROUPE_ECONFLICT || error == TROUPE_EBUSY) r->st.conflicts++;
  r->st.failures++;
  if (r->def->behavior && c->beh == r->def->behavior) return TROUPE_RESTART;
  return TROUPE_STOP;
}

static const troupe_supervisor entity_sup = {
  .decide = entity_decide,
  .max_restarts = 10,
  .window_ms = 10000,
};

/* ------------------------------------------------------------------ */
/* Remember-entities store: an entity "sharding|<type>|<shard>" whose
 * state is the set of started ids. */

typedef struct store_state {
  troupe_vec ids;   /* char * */
} store_state;
static const troupe_field store_state_fields[] = {
  TROUPE_FIELD_VEC(store_state, ids, STRING)};
static troupe_type T_STORE_STATE = TROUPE_TYPE(
    "troupe.sharding.RememberedEntities", 1, store_state, store_state_fields);

static ssize_t store_find(const store_state *s, const char *id) {
  char **v = s->ids.items;
  for (size_t i = 0; i < s->ids.len; i++)
    if (v[i] && strcmp(v[i], id) == 0) return (ssize_t)i;
  return -1;
}

static int store_apply(void *st, const troupe_type *t, const void *ev) {
  store_state *s = st;
  const shid *x = ev;
  if (!x->id) return 0;
  ssize_t at = store_find(s, x->id);
  char **v = s->ids.items;
  if (t == &T_EV_STARTED) {
    if (at >= 0) return 0;
    char **n = realloc(v, (s->ids.len + 1) * sizeof *n);
    if (!n) return TROUPE_ENOMEM;
    n[s->ids.len] = strdup(x->id);
    if (!n[s->ids.len]) {
      s->ids.items = n;
      return TROUPE_ENOMEM;
    }
    s->ids.items = n;
    s->ids.len++;
    return 0;
  }
  if (t == &T_EV_STOPPED) {
    if (at < 0) return 0;
    free(v[at]);
    v[at] = v[s->ids.len - 1];
    s->ids.len--;
    return 0;
  }
  return TROUPE_ETYPE;
}

static int store_command(troupe_entity *e, const void *st,
                         const troupe_msg *m) {
  const store_state *s = st;
  troupe_ctx *ctx = troupe_entity_ctx(e);
  if (m->type == &T_SHLOCAL) {
    const shlocal *l = m->data;
    if (l->kind == SL_STOP) return troupe_stop(ctx, troupe_self(ctx));
    return 0;
  }
  if (m->type == &T_EV_STARTED || m->type == &T_EV_STOPPED) {
    const shid *x = m->data;
    if (!x->id) return 0;
    bool have = store_find(s, x->id) >= 0;
    if ((m->type == &T_EV_STARTED) == have) return 0;
    return troupe_entity_persist(e, m->type, x, 0);
  }
  return TROUPE_UNHANDLED;
}

static void store_recovered(troupe_entity *e, const void *st, uint64_t seq) {
  (void)seq;
  const store_state *s = st;
  troupe_ctx *ctx = troupe_entity_ctx(e);
  const char *id = troupe_entity_id(e);
  const char *bar = strrchr(id, '|');
  shids m = {(uint32_t)strtoul(bar ? bar + 1 : "0", NULL, 10), s->ids};
  troupe_send(ctx, troupe_parent(ctx), &T_SHIDS, &m);
}

/* The state's destructor is the entity's (troupe_value_free of state_type),
 * so the vector of strings is freed with it. */

static void store_start(region *r, troupe_ctx *ctx, uint32_t shard) {
  shome *h = &r->homes[shard];
  if (!r->def->remember_entities || !troupe_ref_is_none(h->store)) return;
  char id[160];
  snprintf(id, sizeof id, "%s|%" PRIu32, r->type, shard);
  int rc = troupe_entity_spawn(r->sys, ctx, r->def->persistence,
                               &r->store_def, id, &h->store);
  if (rc < 0) {
    troupe__log(r->sys, TROUPE_LOG_ERROR, r->type,
                "sharding %s: cannot start the store of shard %" PRIu32
                ": %s", r->type, shard, troupe_strerror(rc));
    if (rc == TROUPE_EBUSY) r->st.conflicts++;
    h->store = TROUPE_REF_NONE;
    return;
  }
  troupe_watch(ctx, h->store);
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */

static void deliver_to_entity(region *r, troupe_ctx *ctx, troupe__env *e,
                              const char *id, size_t len, uint64_t h,
                              uint32_t shard) {
  ent **slot = emap_find_id(&r->by_id, id, len, h);
  ent *x = slot ? *slot : NULL;
  if (x && x->state == E_STOPPING) {
    ent_push(r, x, e);
    return;
  }
  if (!x) {
    x = ent_start(r, ctx, id, len, h, shard, true);
    if (!x) {
      drop(r, e, TROUPE_ESTOPPED, "entity start failed");
      return;
    }
  }
  x->active = true;
  r->st.delivered++;
  e->next = NULL;
  troupe__deliver_local(r->sys, x->ref.uid, e, false);
}

static void request_home(region *r, uint32_t shard) {
  shome *h = &r->homes[shard];
  if (h->requested || !r->coord_known) return;
  h->requested = true;
  ctl(r, r->coord, SH_GET_HOME, shard);
}

/* Route one envelope whose id is known. Takes e. */
static void route_id(region *r, troupe_ctx *ctx, troupe__env *e,
                     const char *id, size_t len) {
  uint64_t h = troupe__fnv1a64(id, len);
  uint32_t shard = (uint32_t)(h % r->nshards);
  shome *sh = &r->homes[shard];
  switch (sh->st) {
    case H_LOCAL:
      deliver_to_entity(r, ctx, e, id, len, h, shard);
      return;
    case H_REMOTE:
      r->st.forwarded++;
      send_env(r, sh->region, e);
      return;
    default:
      buffer_push(r, sh, e);
      if (sh->st == H_UNKNOWN) request_home(r, shard);
      return;
  }
}

/* Route an envelope (taken); the id is extracted again. */
static void route_env(region *r, troupe_ctx *ctx, troupe__env *e) {
  char id[TROUPE_ENTITY_ID_MAX + 1];
  troupe_msg m = {e->type, e->data, e->sender, e->ask_id};
  int n = r->def->extract_id(&m, id, sizeof id);
  if (n <= 0 || n > TROUPE_ENTITY_ID_MAX) {
    drop(r, e, TROUPE_EINVAL, "no entity id");
    return;
  }
  id[n] = 0;
  route_id(r, ctx, e, id, (size_t)n);
}

/* Re-route what a shard's buffer holds (in order). */
static void flush_buffer(region *r, troupe_ctx *ctx, uint32_t shard) {
  shome *h = &r->homes[shard];
  troupe__env *e = h->bh;
  r->buffered -= h->blen;
  h->bh = h->bt = NULL;
  h->blen = 0;
  while (e) {
    troupe__env *n = e->next;
    e->next = NULL;
    route_env(r, ctx, e);
    e = n;
  }
}

/* ------------------------------------------------------------------ */
/* Shards                                                              */

static void shard_become_local(region *r, troupe_ctx *ctx, uint32_t shard) {
  shome *h = &r->homes[shard];
  if (h->st == H_LOCAL) return;
  h->st = H_LOCAL;
  h->requested = false;
  r->nlocal++;
  store_start(r, ctx, shard);
  flush_buffer(r, ctx, shard);
}

static void shard_check_stopped(region *r, troupe_ctx *ctx, uint32_t shard) {
  shome *h = &r->homes[shard];
  if (h->st != H_STOPPING || h->nent > 0 || !troupe_ref_is_none(h->store))
    return;
  h->st = H_MOVING;
  h->requested = false;
  r->nlocal--;
  r->st.handoffs++;
  set_home_addr(r, shard, NULL);
  if (!troupe_ref_is_none(h->handoff_to)) {
    ctl(r, h->handoff_to, SH_SHARD_STOPPED, shard);
    h->handoff_to = TROUPE_REF_NONE;
  }
  (void)ctx;
  publish(r);
}

static void shard_handoff(region *r, troupe_ctx *ctx, uint32_t shard,
                          troupe_ref coord) {
  shome *h = &r->homes[shard];
  if (h->st != H_LOCAL && h->st != H_STOPPING) {
    ctl(r, coord, SH_SHARD_STOPPED, shard);
    return;
  }
  h->handoff_to = coord;
  if (h->st == H_STOPPING) return;
  h->st = H_STOPPING;
  for (size_t i = 0; i < r->by_id.cap; i++) {
    ent *x = r->by_id.slots[i];
    if (x && x->shard == shard) ent_stop(r, ctx, x, false);
  }
  if (!troupe_ref_is_none(h->store)) {
    shlocal m = {SL_STOP, shard};
    troupe_send(ctx, h->store, &T_SHLOCAL, &m);
  }
  shard_check_stopped(r, ctx, shard);
}

/* An entity child has terminated. */
static void ent_terminated(region *r, troupe_ctx *ctx, ent **slot) {
  ent *x = *slot;
  emap_del(&r->by_uid, slot, true);
  ent **s2 = emap_find_id(&r->by_id, x->id, strlen(x->id), x->hash);
  if (s2) emap_del(&r->by_id, s2, false);
  shome *h = &r->homes[x->shard];
  h->nent--;
  if (x->passivating) {
    r->st.passivated++;
    if (!x->qh) store_remember(r, ctx, x->shard, x->id, false);
  }
  troupe__env *q = x->qh;
  uint32_t qlen = x->qlen;
  x->qh = x->qt = NULL;
  r->buffered -= qlen;
  if (q) {
    if (h->st == H_LOCAL && !r->removed) {
      /* messages arrived while it stopped: start it again */
      size_t len = strlen(x->id);
      ent *y = ent_start(r, ctx, x->id, len, x->hash, x->shard, false);
      while (q) {
        troupe__env *n = q->next;
        q->next = NULL;
        if (y) {
          r->st.delivered++;
          troupe__deliver_local(r->sys, y->ref.uid, q, false);
        } else {
          drop(r, q, TROUPE_ESTOPPED, "entity restart failed");
        }
        q = n;
      }
    } else if (r->removed) {
      dead_list(r, q, TROUPE_ESTOPPED);
    } else {
      /* the shard is moving: these go first in its buffer */
      troupe__env *last = q;
      while (last->next) last = last->next;
      last->next = h->bh;
      if (!h->bh) h->bt = last;
      h->bh = q;
      h->blen += qlen;
      r->buffered += qlen;
    }
  }
  ent_free(x);
  shard_check_stopped(r, ctx, h - r->homes);
}

/* ------------------------------------------------------------------ */
/* Coordinator discovery                                               */

static void coord_lost(region *r) {
  r->coord_known = false;
  r->registered = false;
  r->resolving = false;
  r->graceful_sent = false;
  for (uint32_t s = 0; s < r->nshards; s++) r->homes[s].requested = false;
}

static void send_register(region *r, troupe_ctx *ctx) {
  shmsg m;
  memset(&m, 0, sizeof m);
  m.kind = SH_REGISTER;
  m.region = r->self;
  m.address = r->self_addr;
  m.proxy = r->def->proxy_only;
  uint32_t *v = r->nlocal ? malloc(r->nlocal * sizeof *v) : NULL;
  size_t k = 0;
  if (v)
    for (uint32_t s = 0; s < r->nshards; s++)
      if (r->homes[s].st == H_LOCAL || r->homes[s].st == H_STOPPING)
        v[k++] = s;
  m.shards.items = v;
  m.shards.len = k;
  troupe_send(ctx, r->coord, &T_SHMSG, &m);
  free(v);
  r->register_sent_ms = troupe__cluster_now(troupe__cluster_get(r->sys));
}

static void coord_found(region *r, troupe_ctx *ctx, troupe_ref coord) {
  r->coord = coord;
  r->coord_known = true;
  r->resolving = false;
  r->registered = false;
  troupe_watch(ctx, coord);
  send_register(r, ctx);
}

static int spawn_coordinator(region *r, troupe_ref *out);

/* Keep up with the oldest member: the coordinator lives there. */
static void check_oldest(region *r, troupe_ctx *ctx) {
  char old[TROUPE_ADDRESS_MAX];
  if (troupe_cluster_oldest(r->sys, old, sizeof old) < 0) return;
  if (strcmp(old, r->oldest) != 0) {
    snprintf(r->oldest, sizeof r->oldest, "%s", old);
    if (r->coord_known) troupe_unwatch(ctx, r->coord);
    coord_lost(r);
  }
  bool here = strcmp(old, r->self_addr) == 0;
  if (here && troupe_ref_is_none(r->coord_child)) {
    if (spawn_coordinator(r, &r->coord_child) == 0) {
      coord_found(r, ctx, r->coord_child);
    }
    return;
  }
  if (!here && !troupe_ref_is_none(r->coord_child)) {
    troupe_stop(ctx, r->coord_child);
    r->coord_child = TROUPE_REF_NONE;
  }
  if (!r->coord_known && !r->resolving && !here) {
    char path[TROUPE_ADDRESS_MAX + 128];
    snprintf(path, sizeof path, "%s/system/sharding-%s-coord", old, r->type);
    uint64_t t = r->def->handoff_timeout_ms / 4;
    if (troupe_resolve(ctx, path, t < 200 ? 200 : t, &r->resolve_ask) == 0)
      r->resolving = true;
  }
}

static void maybe_leave_ready(region *r, troupe_ctx *ctx) {
  if (!r->leaving || r->leave_ready_sent) return;
  r->leave_ready_sent = true;
  /* the message is empty; its type may still have a size */
  static const uint64_t zero[8];
  if (TROUPE__T_CLUSTER_LEAVE_READY.size > sizeof zero) return;
  troupe_tell(troupe__cluster_daemon(r->sys), &TROUPE__T_CLUSTER_LEAVE_READY,
              zero, troupe_self(ctx));
}

/* ------------------------------------------------------------------ */
/* The region's receive                                                */

static void region_tick(region *r, troupe_ctx *ctx) {
  troupe__cluster *c = troupe__cluster_get(r->sys);
  if (!c || r->removed) return;
  uint64_t now = troupe__cluster_now(c);
  check_oldest(r, ctx);
  if (r->coord_known && !r->registered &&
      now - r->register_sent_ms >= 1000)
    send_register(r, ctx);
  if (r->leaving && r->coord_known && !r->graceful_sent) {
    r->graceful_sent = true;
    ctl(r, r->coord, SH_GRACEFUL, 0);
  }
  /* ask again for every shard that holds messages and has no home */
  for (uint32_t s = 0; s < r->nshards; s++) {
    shome *h = &r->homes[s];
    if ((h->st == H_UNKNOWN || h->st == H_MOVING) && h->blen) {
      h->requested = false;
      request_home(r, s);
    }
  }
  if (r->def->passivate_idle_ms) {
    for (size_t i = 0; i < r->by_id.cap; i++) {
      ent *x = r->by_id.slots[i];
      if (!x || x->state != E_RUN) continue;
      if (x->active || !x->last_ms) {
        x->active = false;
        x->last_ms = now;
      } else if (now - x->last_ms >= r->def->passivate_idle_ms) {
        ent_stop(r, ctx, x, true);
      }
    }
  }
  publish(r);
}

static void region_removed(region *r, troupe_ctx *ctx) {
  if (r->removed) return;
  r->removed = true;
  troupe__log(r->sys, TROUPE_LOG_INFO, r->type,
              "sharding %s: this node left the cluster; stopping %zu "
              "entities", r->type, r->by_id.len);
  for (size_t i = 0; i < r->by_id.cap; i++) {
    ent *x = r->by_id.slots[i];
    if (x) {
      x->state = E_STOPPING;
      troupe_stop(ctx, x->ref);
    }
  }
  for (uint32_t s = 0; s < r->nshards; s++) {
    shome *h = &r->homes[s];
    if (!troupe_ref_is_none(h->store)) troupe_stop(ctx, h->store);
    if (h->st == H_LOCAL || h->st == H_STOPPING) r->nlocal--;
    h->st = H_UNKNOWN;
    r->buffered -= h->blen;
    dead_list(r, h->bh, TROUPE_ESTOPPED);
    h->bh = h->bt = NULL;
    h->blen = 0;
  }
  if (!troupe_ref_is_none(r->coord_child)) {
    troupe_stop(ctx, r->coord_child);
    r->coord_child = TROUPE_REF_NONE;
  }
  publish(r);
}

static void on_cluster_event(region *r, troupe_ctx *ctx,
                             const troupe_cluster_event *ev) {
  if (ev->kind == TROUPE_CLUSTER_SELF_REMOVED) {
    region_removed(r, ctx);
    return;
  }
  if (ev->kind == TROUPE_CLUSTER_MEMBER_REMOVED ||
      ev->kind == TROUPE_CLUSTER_MEMBER_EXITED) {
    if (strcmp(ev->member.address, r->self_addr) == 0) return;
    if (ev->kind == TROUPE_CLUSTER_MEMBER_EXITED) return;
    /* homes on the removed node are unknown now */
    for (uint32_t s = 0; s < r->nshards; s++) {
      shome *h = &r->homes[s];
      if (h->st != H_REMOTE) continue;
      pthread_mutex_lock(&reg_lock);
      uint16_t a = r->reg->home_addr[s];
      bool match = a != NO_ADDR &&
                   strcmp(r->reg->addrs[a], ev->member.address) == 0;
      pthread_mutex_unlock(&reg_lock);
      if (!match) continue;
      h->st = H_UNKNOWN;
      h->requested = false;
      set_home_addr(r, s, NULL);
    }
    if (strcmp(ev->member.address, r->oldest) == 0) {
      if (r->coord_known) troupe_unwatch(ctx, r->coord);
      coord_lost(r);
      r->oldest[0] = 0;
    }
  }
}

static void on_control(region *r, troupe_ctx *ctx, const troupe_msg *msg) {
  const shmsg *m = msg->data;
  if (m->kind != SH_REGISTER_ACK && m->kind != SH_SHUTDOWN_DONE &&
      m->shard >= r->nshards) {
    troupe__log(r->sys, TROUPE_LOG_WARN, r->type,
                "sharding %s: control message %" PRIu32 " for shard %" PRIu32
                " of %" PRIu32 " ignored", r->type, m->kind, m->shard,
                r->nshards);
    return;
  }
  if (r->removed) return;
  shome *h = &r->homes[m->shard < r->nshards ? m->shard : 0];
  switch (m->kind) {
    case SH_REGISTER_ACK:
      if (r->coord_known && troupe_ref_eq(msg->sender, r->coord))
        r->registered = true;
      break;
    case SH_HOME: {
      if (!m->address) break;
      bool mine = troupe_ref_eq(m->region, r->self);
      if (h->st == H_STOPPING) break;   /* finishing a hand-off first */
      set_home_addr(r, m->shard, m->address);
      if (mine) {
        if (r->def->proxy_only) {
          troupe__log(r->sys, TROUPE_LOG_ERROR, r->type,
                      "sharding %s: shard %" PRIu32 " allocated to a proxy",
                      r->type, m->shard);
          break;
        }
        shard_become_local(r, ctx, m->shard);
      } else {
        if (h->st == H_LOCAL) {
          troupe__log(r->sys, TROUPE_LOG_ERROR, r->type,
                      "sharding %s: shard %" PRIu32 " is hosted here but the "
                      "coordinator says %s; keeping it", r->type, m->shard,
                      m->address);
          break;
        }
        h->st = H_REMOTE;
        h->region = m->region;
        h->requested = false;
        flush_buffer(r, ctx, m->shard);
      }
      break;
    }
    case SH_BEGIN_HANDOFF:
      if (h->st == H_REMOTE || h->st == H_UNKNOWN) {
        h->st = H_MOVING;
        h->requested = false;
        set_home_addr(r, m->shard, NULL);
      }
      ctl(r, msg->sender, SH_BEGIN_ACK, m->shard);
      break;
    case SH_HANDOFF:
      shard_handoff(r, ctx, m->shard, msg->sender);
      break;
    case SH_SHUTDOWN_DONE:
      maybe_leave_ready(r, ctx);
      break;
    default:
      troupe__log(r->sys, TROUPE_LOG_WARN, r->type,
                  "sharding %s: unexpected control message %" PRIu32, r->type,
                  m->kind);
  }
  publish(r);
}

static int region_receive(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  region *r = st;
  const troupe_type *t = msg->type;
  if (TROUPE_LIKELY(t != &T_SHMSG && t != &T_SHLOCAL &&
                    t != &TROUPE__T_CLUSTER_TICK &&
                    t != &TROUPE_T_TERMINATED && t != &TROUPE_T_CLUSTER_EVENT &&
                    t != &TROUPE_T_ACTOR_IDENTITY && t != &T_SHIDS &&
                    t != &TROUPE_T_ASK_TIMEOUT &&
                    t != &TROUPE__T_CLUSTER_PREPARE_LEAVE)) {
    if (TROUPE_UNLIKELY(r->removed)) {
      drop(r, take_current(r->sys), TROUPE_ESTOPPED, "node left");
      return 0;
    }
    char id[TROUPE_ENTITY_ID_MAX + 1];
    int n = r->def->extract_id(msg, id, sizeof id);
    troupe__env *e = take_current(r->sys);
    if (TROUPE_UNLIKELY(n <= 0 || n > TROUPE_ENTITY_ID_MAX)) {
      drop(r, e, TROUPE_EINVAL, "no entity id");
      return 0;
    }
    id[n] = 0;
    route_id(r, ctx, e, id, (size_t)n);
    if (TROUPE_UNLIKELY(++r->since_pub >= 4096)) publish(r);
    return 0;
  }
  if (t == &T_SHMSG) {
    on_control(r, ctx, msg);
    return 0;
  }
  if (t == &TROUPE__T_CLUSTER_TICK) {
    region_tick(r, ctx);
    return 0;
  }
  if (t == &TROUPE_T_TERMINATED) {
    const troupe_terminated *tm = msg->data;
    if (tm->actor.node == r->sys->node) {
      ent **slot = emap_find_uid(&r->by_uid, tm->actor.uid);
      if (slot) {
        ent_terminated(r, ctx, slot);
        publish(r);
        return 0;
      }
      for (uint32_t s = 0; s < r->nshards; s++) {
        shome *h = &r->homes[s];
        if (troupe_ref_eq(h->store, tm->actor)) {
          h->store = TROUPE_REF_NONE;
          shard_check_stopped(r, ctx, s);
          return 0;
        }
      }
      if (troupe_ref_eq(tm->actor, r->coord_child))
        r->coord_child = TROUPE_REF_NONE;
    }
    if (r->coord_known && troupe_ref_eq(tm->actor, r->coord)) coord_lost(r);
    return 0;
  }
  if (t == &TROUPE_T_CLUSTER_EVENT) {
    on_cluster_event(r, ctx, msg->data);
    return 0;
  }
  if (t == &TROUPE_T_ACTOR_IDENTITY) {
    const troupe_actor_identity *ai = msg->data;
    if (!r->resolving || msg->ask_id != r->resolve_ask) return 0;
    r->resolving = false;
    if (!troupe_ref_is_none(ai->actor)) coord_found(r, ctx, ai->actor);
    return 0;
  }
  if (t == &TROUPE_T_ASK_TIMEOUT) {
    if (msg->ask_id == r->resolve_ask) r->resolving = false;
    return 0;
  }
  if (t == &T_SHLOCAL) {
    const shlocal *l = msg->data;
    if (l->kind == SL_START && !r->started) {
      r->started = true;
      troupe__cluster *c = troupe__cluster_get(r->sys);
      if (!c) {
        troupe__log(r->sys, TROUPE_LOG_ERROR, r->type,
                    "sharding %s: no cluster", r->type);
        return 0;
      }
      snprintf(r->self_addr, sizeof r->self_addr, "%s",
               troupe__cluster_self(c));
      troupe_cluster_subscribe(ctx);
      troupe__cluster_tick_subscribe(r->sys, r->self);
      troupe__cluster_leave_blocker_add(r->sys, r->self);
      region_tick(r, ctx);
    } else if (l->kind == SL_PASSIVATE) {
      ent **slot = emap_find_uid(&r->by_uid, msg->sender.uid);
      if (slot && msg->sender.node == r->sys->node)
        ent_stop(r, ctx, *slot, true);
    }
    return 0;
  }
  if (t == &T_SHIDS) {
    const shids *m = msg->data;
    if (m->shard >= r->nshards || r->homes[m->shard].st != H_LOCAL) return 0;
    char **ids = m->ids.items;
    for (size_t i = 0; i < m->ids.len; i++) {
      if (!ids[i]) continue;
      size_t len = strlen(ids[i]);
      if (len == 0 || len > TROUPE_ENTITY_ID_MAX) continue;
      uint64_t h = troupe__fnv1a64(ids[i], len);
      if (h % r->nshards != m->shard) continue;
      if (emap_find_id(&r->by_id, ids[i], len, h)) continue;
      ent_start(r, ctx, ids[i], len, h, m->shard, false);
    }
    publish(r);
    return 0;
  }
  if (t == &TROUPE__T_CLUSTER_PREPARE_LEAVE) {
    r->leaving = true;
    if (r->def->proxy_only || r->removed) {
      maybe_leave_ready(r, ctx);
      return 0;
    }
    if (r->coord_known && !r->graceful_sent) {
      r->graceful_sent = true;
      ctl(r, r->coord, SH_GRACEFUL, 0);
    }
    return 0;
  }
  return TROUPE_UNHANDLED;
}

static int region_init(troupe_ctx *ctx, void *st, const void *arg) {
  region *r = st;
  const region *tmpl = arg;
  *r = *tmpl;
  r->self = troupe_self(ctx);
  r->coord_child = TROUPE_REF_NONE;
  r->homes = calloc(r->nshards, sizeof *r->homes);
  if (!r->homes) return TROUPE_ENOMEM;
  for (uint32_t s = 0; s < r->nshards; s++) {
    r->homes[s].store = TROUPE_REF_NONE;
    r->homes[s].handoff_to = TROUPE_REF_NONE;
  }
  shlocal m = {SL_START, 0};
  return troupe_send(ctx, r->self, &T_SHLOCAL, &m);
}

static void region_post_stop(troupe_ctx *ctx, void *st) {
  region *r = st;
  if (!troupe_ref_is_none(r->coord_child)) troupe_stop(ctx, r->coord_child);
  for (uint32_t s = 0; s < r->nshards && r->homes; s++) {
    shome *h = &r->homes[s];
    troupe__env *e = h->bh;
    while (e) {
      troupe__env *n = e->next;
      e->next = NULL;
      troupe__dead_letter(r->sys, r->self, e, TROUPE_ESTOPPED);
      e = n;
    }
  }
  for (size_t i = 0; i < r->by_id.cap; i++) {
    ent *x = r->by_id.slots[i];
    if (!x) continue;
    troupe__env *e = x->qh;
    while (e) {
      troupe__env *n = e->next;
      e->next = NULL;
      troupe__dead_letter(r->sys, r->self, e, TROUPE_ESTOPPED);
      e = n;
    }
    ent_free(x);
  }
  free(r->by_id.slots);
  free(r->by_uid.slots);
  free(r->homes);
  r->homes = NULL;
  if (r->reg) reg_unlink(r->reg);
  r->reg = NULL;
  free((void *)r->def);
  r->def = NULL;
}

static const troupe_behavior region_beh = {
  .name = "sharding-region",
  .state_size = sizeof(region),
  .init = region_init,
  .receive = region_receive,
  .post_stop = region_post_stop,
  .supervisor = &entity_sup,
  .stash_capacity = 1,
};

/* ------------------------------------------------------------------ */
/* The coordinator                                                     */

typedef struct creg {
  uint32_t id;
  troupe_ref ref;
  char *addr;
  bool proxy, leaving, done_sent;
} creg;

enum { MV_BEGIN = 1, MV_HANDOFF };

typedef struct cmove {
  uint32_t shard;
  uint32_t from;          /* region id */
  int phase;
  uint64_t deadline;
  uint32_t *pending;      /* region ids yet to ack BeginHandOff */
  uint32_t npending;
} cmove;

typedef struct coord_arg {
  char type[72];
  uint32_t nshards;
  uint32_t concurrency, threshold;
  uint64_t handoff_timeout_ms;
} coord_arg;

typedef struct coord {
  coord_arg a;
  troupe_ref self;
  creg *regs;
  uint32_t nregs, cregs, next_id;
  uint32_t *owner;        /* region id per shard; 0: none */
  uint8_t *moving;
  cmove *moves;
  uint32_t nmoves;
  uint64_t t0;
  bool ready;
  troupe_system *sys;
} coord;

static creg *creg_by_id(coord *c, uint32_t id) {
  for (uint32_t i = 0; i < c->nregs; i++)
    if (c->regs[i].id == id) return &c->regs[i];
  return NULL;
}

static creg *creg_by_ref(coord *c, troupe_ref ref) {
  for (uint32_t i = 0; i < c->nregs; i++)
    if (troupe_ref_eq(c->regs[i].ref, ref)) return &c->regs[i];
  return NULL;
}

static uint64_t c_now(coord *c) {
  troupe__cluster *cl = troupe__cluster_get(c->sys);
  return cl ? troupe__cluster_now(cl) : 0;
}

static void c_send(coord *c, troupe_ref to, uint32_t kind, uint32_t shard,
                   const creg *home) {
  shmsg m;
  memset(&m, 0, sizeof m);
  m.kind = kind;
  m.shard = shard;
  if (home) {
    m.region = home->ref;
    m.address = home->addr;
  }
  troupe_tell(to, &T_SHMSG, &m, c->self);
}

static void c_broadcast_home(coord *c, uint32_t shard) {
  creg *home = creg_by_id(c, c->owner[shard]);
  if (!home) return;
  for (uint32_t i = 0; i < c->nregs; i++)
    c_send(c, c->regs[i].ref, SH_HOME, shard, home);
}

/* Planner view of the regions (index = position in c->regs). */
static troupe__shregion *c_view(coord *c) {
  troupe__shregion *v = calloc(c->nregs ? c->nregs : 1, sizeof *v);
  if (!v) return NULL;
  for (uint32_t i = 0; i < c->nregs; i++) {
    v[i].address = c->regs[i].addr;
    v[i].proxy = c->regs[i].proxy;
    v[i].leaving = c->regs[i].leaving;
  }
  for (uint32_t s = 0; s < c->a.nshards; s++)
    for (uint32_t i = 0; i < c->nregs; i++)
      if (c->owner[s] == c->regs[i].id) v[i].shards++;
  return v;
}

static bool c_allocate(coord *c, uint32_t shard) {
  if (!c->ready || c->owner[shard] || c->moving[shard]) return false;
  troupe__shregion *v = c_view(c);
  if (!v) return false;
  int i = troupe__shard_pick_region(v, c->nregs);
  free(v);
  if (i < 0) return false;
  c->owner[shard] = c->regs[i].id;
  c_broadcast_home(c, shard);
  return true;
}

static void c_check_done(coord *c) {
  for (uint32_t i = 0; i < c->nregs; i++) {
    creg *g = &c->regs[i];
    if (!g->leaving || g->done_sent) continue;
    bool any = false;
    for (uint32_t s = 0; s < c->a.nshards && !any; s++)
      any = c->owner[s] == g->id;
    if (any) continue;
    g->done_sent = true;
    troupe__log(c->sys, TROUPE_LOG_INFO, c->a.type,
                "sharding %s: the region at %s hosts no shards now",
                c->a.type, g->addr);
    c_send(c, g->ref, SH_SHUTDOWN_DONE, 0, NULL);
  }
}

static void c_move_free(coord *c, uint32_t k) {
  free(c->moves[k].pending);
  c->moves[k] = c->moves[--c->nmoves];
}

/* The shard's old home stopped it (or is gone): allocate it anew. */
static void c_move_done(coord *c, uint32_t k) {
  uint32_t shard = c->moves[k].shard;
  c_move_free(c, k);
  c->moving[shard] = 0;
  c->owner[shard] = 0;
  c_allocate(c, shard);
  c_check_done(c);
}

static void c_handoff(coord *c, cmove *m) {
  m->phase = MV_HANDOFF;
  m->deadline = c_now(c) + c->a.handoff_timeout_ms;
  creg *from = creg_by_id(c, m->from);
  if (from) c_send(c, from->ref, SH_HANDOFF, m->shard, NULL);
}

static void c_rebalance(coord *c) {
  if (!c->ready || c->nregs == 0) return;
  int32_t *own = malloc(c->a.nshards * sizeof *own);
  uint32_t *out = malloc((c->a.concurrency + 1) * sizeof *out);
  troupe__shregion *v = c_view(c);
  if (!own || !out || !v) goto done;
  for (uint32_t s = 0; s < c->a.nshards; s++) {
    own[s] = -1;
    for (uint32_t i = 0; i < c->nregs; i++)
      if (c->owner[s] && c->owner[s] == c->regs[i].id) own[s] = (int32_t)i;
  }
  size_t n = troupe__shard_plan_rebalance(own, c->moving, c->a.nshards, v,
                                          c->nregs, c->a.threshold,
                                          c->a.concurrency, out);
  for (size_t j = 0; j < n; j++) {
    uint32_t s = out[j];
    cmove *nm = realloc(c->moves, (c->nmoves + 1) * sizeof *nm);
    if (!nm) break;
    c->moves = nm;
    cmove *m = &c->moves[c->nmoves];
    memset(m, 0, sizeof *m);
    m->shard = s;
    m->from = c->owner[s];
    m->phase = MV_BEGIN;
    m->deadline = c_now(c) + c->a.handoff_timeout_ms;
    m->pending = malloc((c->nregs ? c->nregs : 1) * sizeof *m->pending);
    if (!m->pending) break;
    c->nmoves++;
    c->moving[s] = 1;
    for (uint32_t i = 0; i < c->nregs; i++) {
      m->pending[m->npending++] = c->regs[i].id;
      c_send(c, c->regs[i].ref, SH_BEGIN_HANDOFF, s, NULL);
    }
  }
done:
  free(own);
  free(out);
  free(v);
}

static void c_remove_region(coord *c, uint32_t idx) {
  creg *g = &c->regs[idx];
  uint32_t id = g->id;
  troupe__log(c->sys, TROUPE_LOG_INFO, c->a.type,
              "sharding %s: coordinator drops the region at %s", c->a.type,
              g->addr);
  free(g->addr);
  c->regs[idx] = c->regs[--c->nregs];
  /* moves out of it are over (it stopped or is gone); acks not awaited */
  for (uint32_t k = 0; k < c->nmoves;) {
    cmove *m = &c->moves[k];
    for (uint32_t j = 0; j < m->npending; j++)
      if (m->pending[j] == id) {
        m->pending[j] = m->pending[--m->npending];
        break;
      }
    if (m->from == id) {
      c_move_done(c, k);
      continue;
    }
    if (m->phase == MV_BEGIN && m->npending == 0) c_handoff(c, m);
    k++;
  }
  for (uint32_t s = 0; s < c->a.nshards; s++)
    if (c->owner[s] == id && !c->moving[s]) {
      c->owner[s] = 0;
      c_allocate(c, s);
    }
}

static void c_check_ready(coord *c) {
  if (c->ready) return;
  bool all = true;
  troupe_member mem[64];
  int n = troupe_cluster_members(c->sys, mem, 64);
  if (n < 0 || n > 64) all = false;
  for (int i = 0; all && i < n; i++) {
    if (mem[i].status != TROUPE_MEMBER_UP &&
        mem[i].status != TROUPE_MEMBER_LEAVING)
      continue;
    bool found = false;
    for (uint32_t j = 0; j < c->nregs && !found; j++)
      found = strcmp(c->regs[j].addr, mem[i].address) == 0;
    if (!found) all = false;
  }
  if (all || c_now(c) - c->t0 >= c->a.handoff_timeout_ms) {
    c->ready = true;
    for (uint32_t s = 0; s < c->a.nshards; s++)
      if (!c->owner[s]) {
        /* allocate eagerly only what someone already asked for; the rest
         * waits for its first message */
      }
  }
}

static void c_register(coord *c, troupe_ctx *ctx, const troupe_msg *msg) {
  const shmsg *m = msg->data;
  if (!m->address || troupe_ref_is_none(m->region)) {
    troupe__log(c->sys, TROUPE_LOG_WARN, c->a.type,
                "sharding %s: malformed Register ignored", c->a.type);
    return;
  }
  creg *g = creg_by_ref(c, m->region);
  if (!g) {
    /* a new incarnation at the same address replaces the old one */
    for (uint32_t i = 0; i < c->nregs; i++)
      if (strcmp(c->regs[i].addr, m->address) == 0) {
        c_remove_region(c, i);
        break;
      }
    if (c->nregs == c->cregs) {
      uint32_t nc = c->cregs ? c->cregs * 2 : 8;
      creg *n = realloc(c->regs, nc * sizeof *n);
      if (!n) return;
      c->regs = n;
      c->cregs = nc;
    }
    char *addr = strdup(m->address);
    if (!addr) return;
    g = &c->regs[c->nregs++];
    memset(g, 0, sizeof *g);
    g->id = ++c->next_id;
    g->ref = m->region;
    g->addr = addr;
    g->proxy = m->proxy;
    troupe_watch(ctx, g->ref);
  }
  const uint32_t *sh = m->shards.items;
  for (size_t i = 0; i < m->shards.len; i++) {
    uint32_t s = sh[i];
    if (s >= c->a.nshards) continue;
    if (!c->owner[s]) {
      c->owner[s] = g->id;
    } else if (c->owner[s] != g->id) {
      troupe__log(c->sys, TROUPE_LOG_ERROR, c->a.type,
                  "sharding %s: shard %" PRIu32 " claimed by %s but held by "
                  "another region", c->a.type, s, g->addr);
    }
  }
  c_send(c, g->ref, SH_REGISTER_ACK, 0, NULL);
  /* tell it every known home */
  for (uint32_t s = 0; s < c->a.nshards; s++) {
    creg *home = c->owner[s] && !c->moving[s] ? creg_by_id(c, c->owner[s])
                                              : NULL;
    if (home) c_send(c, g->ref, SH_HOME, s, home);
  }
  c_check_ready(c);
  c_rebalance(c);
  c_check_done(c);
}

static void c_tick(coord *c) {
  c_check_ready(c);
  uint64_t now = c_now(c);
  for (uint32_t k = 0; k < c->nmoves; k++) {
    cmove *m = &c->moves[k];
    if (now < m->deadline) continue;
    if (m->phase == MV_BEGIN) {
      c_handoff(c, m);   /* not every region answered: go on */
    } else {
      troupe__log(c->sys, TROUPE_LOG_WARN, c->a.type,
                  "sharding %s: hand-off of shard %" PRIu32
                  " not confirmed; retrying", c->a.type, m->shard);
      c_handoff(c, m);
    }
  }
  c_rebalance(c);
  c_check_done(c);
}

static int coord_receive(troupe_ctx *ctx, void *st, const troupe_msg *msg) {
  coord *c = st;
  if (msg->type == &T_SHMSG) {
    const shmsg *m = msg->data;
    if (m->kind != SH_REGISTER && m->kind != SH_GRACEFUL &&
        m->shard >= c->a.nshards) {
      troupe__log(c->sys, TROUPE_LOG_WARN, c->a.type,
                  "sharding %s: control message for shard %" PRIu32
                  " ignored", c->a.type, m->shard);
      return 0;
    }
    switch (m->kind) {
      case SH_REGISTER:
        c_register(c, ctx, msg);
        break;
      case SH_GET_HOME:
        if (c->owner[m->shard] && !c->moving[m->shard]) {
          creg *home = creg_by_id(c, c->owner[m->shard]);
          if (home) c_send(c, msg->sender, SH_HOME, m->shard, home);
        } else {
          c_check_ready(c);
          /* the broadcast reaches registered regions; answer the asker
           * too when it is not one of them (yet) */
          if (c_allocate(c, m->shard) && !creg_by_ref(c, msg->sender)) {
            creg *home = creg_by_id(c, c->owner[m->shard]);
            if (home) c_send(c, msg->sender, SH_HOME, m->shard, home);
          }
        }
        break;
      case SH_BEGIN_ACK: {
        creg *g = creg_by_ref(c, msg->sender);
        for (uint32_t k = 0; g && k < c->nmoves; k++) {
          cmove *mv = &c->moves[k];
          if (mv->shard != m->shard || mv->phase != MV_BEGIN) continue;
          for (uint32_t j = 0; j < mv->npending; j++)
            if (mv->pending[j] == g->id) {
              mv->pending[j] = mv->pending[--mv->npending];
              break;
            }
          if (mv->npending == 0) c_handoff(c, mv);
        }
        break;
      }
      case SH_SHARD_STOPPED:
        for (uint32_t k = 0; k < c->nmoves; k++)
          if (c->moves[k].shard == m->shard) {
            c_move_done(c, k);
            break;
          }
        break;
      case SH_GRACEFUL: {
        creg *g = creg_by_ref(c, msg->sender);
        troupe__log(c->sys, TROUPE_LOG_INFO, c->a.type,
                    "sharding %s: the region at %s leaves: handing off its "
                    "shards", c->a.type, g ? g->addr : "(unknown)");
        if (!g) break;
        g->leaving = true;
        c_rebalance(c);
        c_check_done(c);
        break;
      }
      default:
        troupe__log(c->sys, TROUPE_LOG_WARN, c->a.type,
                    "sharding %s: unexpected control message %" PRIu32,
                    c->a.type, m->kind);
    }
    return 0;
  }
  if (msg->type == &TROUPE__T_CLUSTER_TICK) {
    c_tick(c);
    return 0;
  }
  if (msg->type == &TROUPE_T_TERMINATED) {
    const troupe_terminated *tm = msg->data;
    if (tm->node_lost) return 0;   /* wait for membership to remove it */
    for (uint32_t i = 0; i < c->nregs; i++)
      if (troupe_ref_eq(c->regs[i].ref, tm->actor)) {
        c_remove_region(c, i);
        c_check_done(c);
        break;
      }
    return 0;
  }
  if (msg->type == &TROUPE_T_CLUSTER_EVENT) {
    const troupe_cluster_event *ev = msg->data;
    if (ev->kind != TROUPE_CLUSTER_MEMBER_REMOVED) return 0;
    for (uint32_t i = 0; i < c->nregs;) {
      if (strcmp(c->regs[i].addr, ev->member.address) == 0)
        c_remove_region(c, i);
      else
        i++;
    }
    c_rebalance(c);
    c_check_done(c);
    return 0;
  }
  return TROUPE_UNHANDLED;
}

static int coord_init(troupe_ctx *ctx, void *st, const void *arg) {
  coord *c = st;
  memset(c, 0, sizeof *c);
  c->a = *(const coord_arg *)arg;
  c->self = troupe_self(ctx);
  c->sys = troupe_ctx_system(ctx);
  c->owner = calloc(c->a.nshards, sizeof *c->owner);
  c->moving = calloc(c->a.nshards, 1);
  if (!c->owner || !c->moving) return TROUPE_ENOMEM;
  c->t0 = c_now(c);
  int rc = troupe_cluster_subscribe(ctx);
  if (rc == 0) rc = troupe__cluster_tick_subscribe(c->sys, c->self);
  troupe__log(c->sys, TROUPE_LOG_INFO, c->a.type,
              "sharding %s: coordinator started", c->a.type);
  return rc;
}

static void coord_post_stop(troupe_ctx *ctx, void *st) {
  (void)ctx;
  coord *c = st;
  for (uint32_t i = 0; i < c->nregs; i++) free(c->regs[i].addr);
  for (uint32_t k = 0; k < c->nmoves; k++) free(c->moves[k].pending);
  free(c->regs);
  free(c->moves);
  free(c->owner);
  free(c->moving);
  memset(c, 0, sizeof *c);
}

static const troupe_behavior coord_beh = {
  .name = "sharding-coordinator",
  .state_size = sizeof(coord),
  .init = coord_init,
  .receive = coord_receive,
  .post_stop = coord_post_stop,
};

static int spawn_coordinator(region *r, troupe_ref *out) {
  troupe_system *sys = r->sys;
  if (!sys->sysg) return TROUPE_ECLOSED;
  coord_arg a;
  memset(&a, 0, sizeof a);
  snprintf(a.type, sizeof a.type, "%s", r->type);
  a.nshards = r->nshards;
  a.concurrency = r->def->rebalance_concurrency;
  a.threshold = r->def->rebalance_threshold;
  a.handoff_timeout_ms = r->def->handoff_timeout_ms;
  char name[96];
  snprintf(name, sizeof name, "sharding-%s-coord", r->type);
  troupe_spawn_opts so = {.name = name, .arg = &a, .arg_size = sizeof a};
  troupe__cell *cell = NULL;
  int rc = troupe__spawn(sys, sys->sysg, &coord_beh, &so, 0, &cell);
  if (rc < 0) {
    troupe__log(sys, TROUPE_LOG_ERROR, r->type,
                "sharding %s: cannot start the coordinator: %s", r->type,
                troupe_strerror(rc));
    return rc;
  }
  *out = troupe__ref_of(cell);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

static bool valid_type_name(const char *s) {
  if (!s) return false;
  size_t n = 0;
  for (; s[n]; n++) {
    char ch = s[n];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
      return false;
  }
  return n >= 1 && n <= 64;
}

int troupe_sharding_start(troupe_system *sys, const troupe_sharding_def *def,
                          troupe_ref *region_out) {
  if (!sys || !def || !region_out)
    return troupe__err(TROUPE_EINVAL, "troupe_sharding_start: NULL argument");
  *region_out = TROUPE_REF_NONE;
  if (!valid_type_name(def->type_name))
    return troupe__err(TROUPE_EINVAL, "sharding: type_name must match "
                       "[A-Za-z0-9_-]{1,64}");
  if (!def->extract_id)
    return troupe__err(TROUPE_EINVAL, "sharding %s: extract_id is required",
                       def->type_name);
  int kinds = !!def->entity + !!def->durable + !!def->behavior;
  if (kinds != 1 && !(kinds == 0 && def->proxy_only))
    return troupe__err(TROUPE_EINVAL, "sharding %s: exactly one of entity, "
                       "durable and behavior", def->type_name);
  if ((def->entity || def->durable || def->remember_entities) &&
      !def->persistence && !def->proxy_only)
    return troupe__err(TROUPE_EINVAL, "sharding %s: persistence is required",
                       def->type_name);
  if (def->entity && (!def->entity->command || !def->entity->type_name))
    return troupe__err(TROUPE_EINVAL, "sharding %s: entity definition "
                       "without command or type_name", def->type_name);
  if (def->durable && (!def->durable->command || !def->durable->type_name))
    return troupe__err(TROUPE_EINVAL, "sharding %s: durable definition "
                       "without command or type_name", def->type_name);
  if (def->behavior && !def->behavior->receive)
    return troupe__err(TROUPE_EINVAL, "sharding %s: behavior without "
                       "receive", def->type_name);
  if (!troupe__cluster_get(sys))
    return troupe__err(TROUPE_ESTATE, "sharding %s: no cluster on system %s "
                       "(troupe_cluster_start first)", def->type_name,
                       troupe_system_name(sys));
  int st = atomic_load(&sys->state);
  if (st != TROUPE__SYS_CREATED && troupe__current != sys)
    return troupe__err(TROUPE_EWRONGTHREAD, "troupe_sharding_start: from the "
                       "system's thread or before it runs");
  int rc = register_types();
  if (rc < 0) return rc;
  rc = troupe_type_register(&T_STORE_STATE);
  if (rc < 0 && rc != TROUPE_EEXIST) return rc;

  /* defaults live in a copy of the definition the region keeps */
  troupe_sharding_def *d = NULL;
  region *tmpl = calloc(1, sizeof *tmpl);
  regentry *e = calloc(1, sizeof *e);
  if (!tmpl || !e) goto nomem;
  uint32_t nshards = def->shards ? def->shards : 128;
  e->home_addr = malloc(nshards * sizeof *e->home_addr);
  d = malloc(sizeof *d);
  if (!e->home_addr || !d) goto nomem;
  *d = *def;
  d->shards = nshards;
  if (!d->buffer_size) d->buffer_size = 100000;
  if (!d->rebalance_concurrency) d->rebalance_concurrency = 3;
  if (!d->rebalance_threshold) d->rebalance_threshold = 1;
  if (!d->handoff_timeout_ms) d->handoff_timeout_ms = 10000;
  for (uint32_t s = 0; s < nshards; s++) e->home_addr[s] = NO_ADDR;
  e->sys = sys;
  snprintf(e->type, sizeof e->type, "%s", def->type_name);
  e->nshards = nshards;

  tmpl->def = d;
  tmpl->sys = sys;
  tmpl->reg = e;
  tmpl->nshards = nshards;
  snprintf(tmpl->type, sizeof tmpl->type, "%s", def->type_name);
  if (def->entity) {
    tmpl->edef = *def->entity;
    tmpl->edef.command = wrap_entity_command;
  }
  if (def->durable) {
    tmpl->ddef = *def->durable;
    tmpl->ddef.command = wrap_durable_command;
  }
  tmpl->store_def.type_name = "sharding";
  tmpl->store_def.state_type = &T_STORE_STATE;
  tmpl->store_def.command = store_command;
  tmpl->store_def.apply = store_apply;
  tmpl->store_def.on_recovered = store_recovered;

  pthread_mutex_lock(&reg_lock);
  if (reg_find_locked(sys, def->type_name)) {
    pthread_mutex_unlock(&reg_lock);
    free(tmpl);
    reg_free(e);
    free(d);
    return troupe__err(TROUPE_EEXIST, "sharding %s already started on %s",
                       def->type_name, troupe_system_name(sys));
  }
  e->next = reg_head;
  reg_head = e;
  pthread_mutex_unlock(&reg_lock);

  char name[80];
  snprintf(name, sizeof name, "sharding-%s", def->type_name);
  troupe_spawn_opts so = {.name = name, .arg = tmpl, .arg_size = sizeof *tmpl};
  troupe__cell *cell = NULL;
  troupe_system *prev = troupe__current;
  troupe__current = sys;
  rc = sys->sysg ? troupe__spawn(sys, sys->sysg, &region_beh, &so, 0, &cell)
                 : TROUPE_ECLOSED;
  troupe__current = prev;
  free(tmpl);
  if (rc < 0) {
    reg_unlink(e);
    free(d);
    return rc;
  }
  pthread_mutex_lock(&reg_lock);
  e->ref = troupe__ref_of(cell);
  pthread_mutex_unlock(&reg_lock);
  *region_out = troupe__ref_of(cell);
  return 0;
nomem:
  free(tmpl);
  if (e) reg_free(e);
  free(d);
  return troupe__err(TROUPE_ENOMEM, "troupe_sharding_start");
}

int troupe_sharding_region(troupe_system *sys, const char *type_name,
                           troupe_ref *out) {
  if (!sys || !type_name || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_sharding_region: NULL argument");
  *out = TROUPE_REF_NONE;
  pthread_mutex_lock(&reg_lock);
  regentry *e = reg_find_locked(sys, type_name);
  if (e) *out = e->ref;
  pthread_mutex_unlock(&reg_lock);
  if (!e || troupe_ref_is_none(*out))
    return troupe__err(TROUPE_ENOENT, "no sharding region %s", type_name);
  return 0;
}

int troupe_sharding_stats_get(troupe_system *sys, const char *type_name,
                              troupe_sharding_stats *out) {
  if (!sys || !type_name || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_sharding_stats_get: NULL "
                       "argument");
  pthread_mutex_lock(&reg_lock);
  regentry *e = reg_find_locked(sys, type_name);
  if (e) *out = e->stats;
  pthread_mutex_unlock(&reg_lock);
  if (!e) return troupe__err(TROUPE_ENOENT, "no sharding region %s",
                             type_name);
  return 0;
}

int troupe_sharding_shards_of(troupe_system *sys, const char *type_name,
                              const char *address, uint32_t *out, size_t max) {
  if (!sys || !type_name || !address || (!out && max))
    return troupe__err(TROUPE_EINVAL, "troupe_sharding_shards_of: NULL "
                       "argument");
  pthread_mutex_lock(&reg_lock);
  regentry *e = reg_find_locked(sys, type_name);
  int n = 0;
  if (e) {
    uint16_t want = NO_ADDR;
    for (uint32_t i = 0; i < e->naddrs; i++)
      if (strcmp(e->addrs[i], address) == 0) want = (uint16_t)i;
    for (uint32_t s = 0; want != NO_ADDR && s < e->nshards; s++)
      if (e->home_addr[s] == want) {
        if ((size_t)n < max) out[n] = s;
        n++;
      }
  }
  pthread_mutex_unlock(&reg_lock);
  if (!e) return troupe__err(TROUPE_ENOENT, "no sharding region %s",
                             type_name);
  return n;
}

int troupe_sharding_passivate(troupe_ctx *ctx) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c) return troupe__err(TROUPE_EINVAL, "troupe_sharding_passivate: NULL");
  region *r = region_of(c->parent);
  if (!r)
    return troupe__err(TROUPE_ESTATE, "troupe_sharding_passivate: not a "
                       "sharded entity");
  shlocal m = {SL_PASSIVATE, 0};
  return troupe_tell(r->self, &T_SHLOCAL, &m, troupe__ref_of(c));
}
