/*
 * router.c: pool routers.
 *
 * A router is a cell flagged TROUPE__CF_ROUTER whose routees are its
 * children. A user message told to a router never enters the router's
 * mailbox: delivery picks a routee at tell time (round robin, random,
 * consistent hash, or all for broadcast) and enqueues there, keeping the
 * original sender. Routees that stop leave the pool; an empty pool stops
 * the router.
 */
#include "core/internal.h"

typedef struct ring_point {
  uint64_t hash;
  uint64_t uid;
} ring_point;

struct troupe__router {
  troupe_router_opts opts;
  uint64_t *routees;
  uint32_t n, cap;
  uint32_t next;          /* round robin */
  ring_point *ring;
  uint32_t nring;
};

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

static int cmp_point(const void *a, const void *b) {
  const ring_point *x = a, *y = b;
  return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int ring_build(troupe__router *r) {
  uint32_t vn = r->opts.virtual_nodes ? r->opts.virtual_nodes : 64;
  free(r->ring);
  r->ring = NULL;
  r->nring = 0;
  if (!r->n) return 0;
  r->ring = malloc((size_t)r->n * vn * sizeof *r->ring);
  if (!r->ring) return TROUPE_ENOMEM;
  for (uint32_t i = 0; i < r->n; i++)
    for (uint32_t v = 0; v < vn; v++) {
      /* hash by position in the pool, not uid, so the ring is stable for a
       * given pool shape */
      r->ring[r->nring].hash = mix64(((uint64_t)i << 32) | v);
      r->ring[r->nring].uid = r->routees[i];
      r->nring++;
    }
  qsort(r->ring, r->nring, sizeof *r->ring, cmp_point);
  return 0;
}

static uint64_t ring_pick(const troupe__router *r, uint64_t key) {
  uint64_t h = mix64(key);
  uint32_t lo = 0, hi = r->nring;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (r->ring[mid].hash < h) lo = mid + 1;
    else hi = mid;
  }
  if (lo == r->nring) lo = 0;
  return r->ring[lo].uid;
}

static uint64_t hash_bytes(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

bool troupe__route(troupe__cell *rc, troupe__env *e) {
  if (e->kind != TROUPE__ENV_USER || !rc->ext || !rc->ext->router) return false;
  if (e->type == &TROUPE_T_POISON_PILL || e->type == &TROUPE_T_TERMINATED)
    return false;
  troupe__router *r = rc->ext->router;
  troupe_system *sys = rc->sys;
  if (r->n == 0) {
    troupe__dead_letter(sys, troupe__ref_of(rc), e, TROUPE_ENOENT);
    return true;
  }
  uint64_t uid;
  switch (r->opts.routing) {
    case TROUPE_ROUTE_BROADCAST:
      for (uint32_t i = 1; i < r->n; i++) {
        troupe__env *c = troupe__env_alloc(sys);
        if (!c) break;
        if (troupe__env_set(c, e->type, e->data) < 0) {
          c->type = NULL;
          troupe__env_release(sys, c);
          break;
        }
        c->kind = TROUPE__ENV_USER;
        c->sender = e->sender;
        c->ask_id = e->ask_id;
        troupe__deliver_local(sys, r->routees[i], c, false);
      }
      uid = r->routees[0];
      break;
    case TROUPE_ROUTE_RANDOM:
      uid = r->routees[troupe__rand(sys) % r->n];
      break;
    case TROUPE_ROUTE_CONSISTENT_HASH: {
      uint64_t key;
      if (r->opts.hash_key) {
        troupe_msg m = {e->type, e->data, e->sender, e->ask_id};
        key = r->opts.hash_key(&m);
      } else {
        key = hash_bytes(e->data, e->type->size);
      }
      uid = ring_pick(r, key);
      break;
    }
    case TROUPE_ROUTE_ROUND_ROBIN:
    default:
      if (r->next >= r->n) r->next = 0;
      uid = r->routees[r->next++];
      break;
  }
  troupe__deliver_local(sys, uid, e, false);
  return true;
}

void troupe__router_child_done(troupe__cell *rc, uint64_t child_uid) {
  if (!rc->ext || !rc->ext->router) return;
  troupe__router *r = rc->ext->router;
  for (uint32_t i = 0; i < r->n; i++)
    if (r->routees[i] == child_uid) {
      memmove(&r->routees[i], &r->routees[i + 1],
              (r->n - i - 1) * sizeof *r->routees);
      r->n--;
      if (r->opts.routing == TROUPE_ROUTE_CONSISTENT_HASH) ring_build(r);
      break;
    }
  if (r->n == 0 && !(rc->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD |
                                  TROUPE__CF_RESTARTING)))
    troupe__cell_stop(rc);
}

void troupe__router_free(troupe__cell *c) {
  if (!c->ext || !c->ext->router) return;
  troupe__router *r = c->ext->router;
  free(r->routees);
  free(r->ring);
  free(r);
  c->ext->router = NULL;
}

static int router_receive(troupe_ctx *ctx, void *state, const troupe_msg *m) {
  (void)ctx; (void)state; (void)m;
  return TROUPE_UNHANDLED;
}

static const troupe_behavior router_behavior = {
  .name = "router",
  .receive = router_receive,
};

static int router_spawn(troupe_system *sys, troupe__cell *parent,
                        const troupe_router_opts *ro,
                        const troupe_spawn_opts *opts, troupe_ref *out);

int troupe_router_spawn(troupe_system *sys, troupe_ctx *ctx,
                        const troupe_router_opts *ro,
                        const troupe_spawn_opts *opts, troupe_ref *out) {
  if (!ro || !out || (!sys && !ctx))
    return troupe__err(TROUPE_EINVAL, "troupe_router_spawn: NULL argument");
  *out = TROUPE_REF_NONE;
  if (!ro->routee || ro->size == 0 || ro->size > 65536 ||
      ro->routing > TROUPE_ROUTE_CONSISTENT_HASH)
    return troupe__err(TROUPE_EINVAL, "troupe_router_spawn: bad options");
  troupe__cell *parent = ctx ? (troupe__cell *)ctx : NULL;
  if (!sys) sys = parent->sys;
  if (!parent) {
    if (troupe__current != sys && atomic_load(&sys->state) !=
                                      TROUPE__SYS_CREATED)
      return troupe__err(TROUPE_EWRONGTHREAD,
                         "spawn routers from the system's thread");
    parent = sys->user;
    if (!parent) return troupe__err(TROUPE_ECLOSED, "system is stopping");
  }
  troupe_system *prev = troupe__current;
  troupe__current = sys;
  int rcode = router_spawn(sys, parent, ro, opts, out);
  troupe__current = prev;
  return rcode;
}

static int router_spawn(troupe_system *sys, troupe__cell *parent,
                        const troupe_router_opts *ro,
                        const troupe_spawn_opts *opts, troupe_ref *out) {
  troupe__cell *rc = NULL;
  int rcode = troupe__spawn(sys, parent, &router_behavior, opts,
                            TROUPE__CF_ROUTER, &rc);
  if (rcode < 0) return rcode;
  troupe__cell_ext *x = troupe__ext(rc);
  troupe__router *r = calloc(1, sizeof *r);
  if (!x || !r) goto nomem;
  x->router = r;
  r->opts = *ro;
  r->routees = calloc(ro->size, sizeof *r->routees);
  if (!r->routees) goto nomem;
  troupe_spawn_opts so = {.arg = ro->routee_arg, .arg_size = ro->routee_arg_size};
  for (uint32_t i = 0; i < ro->size; i++) {
    troupe__cell *ch = NULL;
    rcode = troupe__spawn(sys, rc, ro->routee, &so, 0, &ch);
    if (rcode < 0) {
      troupe__cell_stop(rc);
      return rcode;
    }
    r->routees[r->n++] = ch->uid;
  }
  if (ro->routing == TROUPE_ROUTE_CONSISTENT_HASH && ring_build(r) < 0)
    goto nomem;
  *out = troupe__ref_of(rc);
  return 0;
nomem:
  troupe__cell_stop(rc);
  return troupe__err(TROUPE_ENOMEM, "router");
}
