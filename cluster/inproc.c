/*
 * inproc.c: the in-process transport — systems on different threads of one
 * process joined by lock-free SPSC rings (one per ordered pair, a full
 * mesh). Envelopes move by pointer: no serialization, no copy.
 *
 * Batching. The producer writes slots and publishes its tail (one release
 * store) every PUBLISH_EVERY items and at the end of each dispatch turn
 * (xflush), so the consumer's cache line is touched once per batch. The
 * consumer publishes its head once per drained batch.
 *
 * Wake-ups. A consumer with nothing to do spins on its inbound rings for a
 * short while before its loop blocks (uv_prepare); only then does it set
 * `parked` and re-check the rings (Dekker: store parked, full fence, load
 * tails; the producer stores its tail, full fence, loads parked). A producer
 * that sees parked = 1 clears it and sends one uv_async. Under load the
 * consumer never parks, so wake-ups are rare.
 *
 * Full rings. A tell never blocks: when the ring is full the envelope goes
 * to a producer-side overflow list that is moved into the ring at the next
 * flush; order per pair is kept (while the list is non-empty everything
 * goes behind it). The overflow is bounded by backpressure: the system is
 * marked congested and the dispatcher mutes the actor that overflowed (it
 * stays off the run queue) until every overflow list has gone into its
 * ring, so a fast sender waits for a slow receiver without blocking.
 */
#include "cluster/internal.h"

#if defined(__x86_64__) || defined(__i386__)
# include <immintrin.h>
# define CPU_RELAX() _mm_pause()
#else
# define CPU_RELAX() ((void)0)
#endif

#define RING_SIZE 8192u
#define PUBLISH_EVERY 64u
#define POLL_BATCH 512u
#define SPIN_ROUNDS 4000

typedef struct ring {
  /* producer side */
  _Alignas(64) size_t ptail;          /* next slot to write */
  size_t phead;                       /* cached consumer head */
  size_t published;
  troupe__env *ovf_head, *ovf_tail;
  bool dirty;
  /* shared */
  _Alignas(64) atomic_size_t tail;
  _Alignas(64) atomic_size_t head;
  /* consumer side */
  _Alignas(64) size_t chead;
  size_t ctail;                       /* cached producer tail */
  _Alignas(64) troupe__env *slots[RING_SIZE];
} ring;

typedef struct endpoint {
  troupe__inproc *ip;
  uint32_t index;
  troupe_system *sys;                 /* attached system (own thread) */
  _Atomic(uint64_t) node;             /* its node index, 0 when none */
  _Alignas(64) atomic_int parked;
  _Alignas(64) uv_async_t wake;
  uv_prepare_t prep;
  uv_check_t check;
  uint32_t *dirty;                    /* outbound rings owing a publish */
  uint32_t ndirty;
  uint32_t last_to;                   /* ep_send's guess: the last target */
} endpoint;

struct troupe__inproc {
  uint32_t n;
  ring **rings;                       /* rings[from * n + to] */
  endpoint *eps;
  atomic_bool any_blocked;            /* some pair is cut (tests) */
  atomic_uchar *blocked;              /* blocked[from * n + to] */
};

static inline ring *ring_of(troupe__inproc *ip, uint32_t from, uint32_t to) {
  return ip->rings[from * ip->n + to];
}

troupe__inproc *troupe__inproc_new(uint32_t n) {
  troupe__inproc *ip = calloc(1, sizeof *ip);
  if (!ip) return NULL;
  ip->n = n;
  ip->rings = calloc((size_t)n * n, sizeof *ip->rings);
  ip->eps = calloc(n, sizeof *ip->eps);
  ip->blocked = calloc((size_t)n * n, sizeof *ip->blocked);
  if (!ip->rings || !ip->eps || !ip->blocked) goto fail;
  for (uint32_t i = 0; i < n; i++) {
    ip->eps[i].ip = ip;
    ip->eps[i].index = i;
    ip->eps[i].last_to = n > 1 ? (i + 1) % n : i;
    ip->eps[i].dirty = calloc(n, sizeof(uint32_t));
    if (!ip->eps[i].dirty) goto fail;
    for (uint32_t j = 0; j < n; j++) {
      if (i == j) continue;
      ring *r = aligned_alloc(64, sizeof(ring));
      if (!r) goto fail;
      memset(r, 0, offsetof(ring, slots));
      ip->rings[i * n + j] = r;
    }
  }
  return ip;
fail:
  troupe__inproc_free(ip);
  return NULL;
}

static void ring_drop_all(ring *r) {
  /* everything written, published or not */
  for (size_t k = r->chead; k != r->ptail; k++)
    troupe__env_release(NULL, r->slots[k & (RING_SIZE - 1)]);
  r->chead = r->ctail = r->ptail;
  atomic_store(&r->head, r->ptail);
  r->phead = r->ptail;
  troupe__env *e = r->ovf_head;
  while (e) {
    troupe__env *n = e->next;
    troupe__env_release(NULL, e);
    e = n;
  }
  r->ovf_head = r->ovf_tail = NULL;
}

void troupe__inproc_free(troupe__inproc *ip) {
  if (!ip) return;
  if (ip->rings)
    for (size_t k = 0; k < (size_t)ip->n * ip->n; k++)
      if (ip->rings[k]) {
        ring_drop_all(ip->rings[k]);
        free(ip->rings[k]);
      }
  if (ip->eps)
    for (uint32_t i = 0; i < ip->n; i++) free(ip->eps[i].dirty);
  free(ip->rings);
  free(ip->eps);
  free((void *)ip->blocked);
  free(ip);
}

void troupe__inproc_block(troupe__inproc *ip, uint32_t a, uint32_t b,
                          bool blocked) {
  if (!ip || a >= ip->n || b >= ip->n || a == b) return;
  atomic_store(&ip->blocked[(size_t)a * ip->n + b], blocked);
  atomic_store(&ip->blocked[(size_t)b * ip->n + a], blocked);
  bool any = false;
  for (size_t k = 0; k < (size_t)ip->n * ip->n && !any; k++)
    any = atomic_load(&ip->blocked[k]) != 0;
  atomic_store(&ip->any_blocked, any);
}

/* ------------------------------------------------------------------ */
/* Producer */

static void wake(endpoint *to) {
  /* the target system may be terminating: register as a user of its node
   * so its handles stay open while we touch them */
  troupe__node *n = troupe__node_get(atomic_load(&to->node));
  if (!n) return;
  atomic_fetch_add(&n->users, 1);
  if (atomic_load(&n->sys) && atomic_exchange(&to->parked, 0))
    uv_async_send(&to->wake);
  atomic_fetch_sub(&n->users, 1);
}

static void publish(ring *r, endpoint *to) {
  if (r->published == r->ptail) return;
  r->published = r->ptail;
  atomic_store_explicit(&r->tail, r->ptail, memory_order_release);
  atomic_thread_fence(memory_order_seq_cst);
  if (TROUPE_UNLIKELY(atomic_load_explicit(&to->parked,
                                           memory_order_relaxed)))
    wake(to);
}

static inline bool ring_put(ring *r, troupe__env *e) {
  if (TROUPE_UNLIKELY(r->ptail - r->phead >= RING_SIZE)) {
    r->phead = atomic_load_explicit(&r->head, memory_order_acquire);
    if (r->ptail - r->phead >= RING_SIZE) return false;
  }
  r->slots[r->ptail & (RING_SIZE - 1)] = e;
  r->ptail++;
  return true;
}

static void ring_move_overflow(ring *r) {
  troupe__env *e;
  while ((e = r->ovf_head) && ring_put(r, e)) {
    r->ovf_head = e->next;
    e->next = NULL;
  }
  if (!r->ovf_head) r->ovf_tail = NULL;
}

static int ep_put(troupe_system *from, endpoint *fe, endpoint *te,
                  troupe__env *e) {
  if (TROUPE_UNLIKELY(atomic_load_explicit(&fe->ip->any_blocked,
                                           memory_order_relaxed)) &&
      atomic_load(&fe->ip->blocked[(size_t)fe->index * fe->ip->n +
                                   te->index])) {
    /* a cut link (tests): the message is lost in the network */
    atomic_fetch_add(&from->dead_letters, 1);
    troupe__env_release(from, e);
    return 0;
  }
  ring *r = ring_of(fe->ip, fe->index, te->index);
  if (TROUPE_UNLIKELY(r->ovf_head != NULL) || !ring_put(r, e)) {
    e->next = NULL;
    if (r->ovf_tail) r->ovf_tail->next = e;
    else r->ovf_head = e;
    r->ovf_tail = e;
    from->xcongested = from->xmute = true;   /* mute the sender */
  }
  if (!r->dirty) {
    r->dirty = true;
    fe->dirty[fe->ndirty++] = te->index;
  }
  if (TROUPE_UNLIKELY(r->ptail - r->published >= PUBLISH_EVERY))
    publish(r, te);
  if (TROUPE_UNLIKELY(!from->xdirty)) {
    from->xdirty = true;
    troupe__wake_dispatch(from);
  }
  return 0;
}

static int ep_route(troupe_system *from, troupe_system *to, troupe__env *e) {
  endpoint *fe = atomic_load_explicit(&from->xdata, memory_order_relaxed);
  endpoint *te = atomic_load_explicit(&to->xdata, memory_order_acquire);
  if (TROUPE_UNLIKELY(!te || te->ip != fe->ip)) return 1;
  return ep_put(from, fe, te, e);
}

/* By node index, without touching the target system (see xsend): the
 * endpoint attached to that node, found from the last target or by a scan
 * of the mesh's endpoints (their rings live as long as the mesh). */
static int ep_send(troupe_system *from, uint64_t node, troupe__env *e) {
  endpoint *fe = atomic_load_explicit(&from->xdata, memory_order_relaxed);
  troupe__inproc *ip = fe->ip;
  uint32_t j = fe->last_to;
  if (TROUPE_UNLIKELY(j == fe->index ||
                      atomic_load_explicit(&ip->eps[j].node,
                                           memory_order_acquire) != node)) {
    for (j = 0; j < ip->n; j++)
      if (j != fe->index &&
          atomic_load_explicit(&ip->eps[j].node, memory_order_acquire) ==
              node)
        break;
    if (j == ip->n) return 1;
    fe->last_to = j;
  }
  return ep_put(from, fe, &ip->eps[j], e);
}

static void ep_flush(troupe_system *sys) {
  endpoint *fe = atomic_load_explicit(&sys->xdata, memory_order_relaxed);
  troupe__inproc *ip = fe->ip;
  uint32_t keep = 0;
  for (uint32_t k = 0; k < fe->ndirty; k++) {
    uint32_t j = fe->dirty[k];
    ring *r = ring_of(ip, fe->index, j);
    if (r->ovf_head) ring_move_overflow(r);
    publish(r, &ip->eps[j]);
    if (r->ovf_head) fe->dirty[keep++] = j;   /* retry next turn */
    else r->dirty = false;
  }
  fe->ndirty = keep;
  if (keep) {
    sys->xdirty = true;
    troupe__wake_dispatch(sys);
  }
}

/* ------------------------------------------------------------------ */
/* Consumer */

static size_t ep_poll(troupe_system *sys) {
  endpoint *me = atomic_load_explicit(&sys->xdata, memory_order_relaxed);
  troupe__inproc *ip = me->ip;
  size_t total = 0;
  for (uint32_t i = 0; i < ip->n; i++) {
    if (i == me->index) continue;
    ring *r = ring_of(ip, i, me->index);
    if (r->chead == r->ctail) {
      r->ctail = atomic_load_explicit(&r->tail, memory_order_acquire);
      if (r->chead == r->ctail) continue;
    }
    size_t end = r->ctail;
    if (end - r->chead > POLL_BATCH) end = r->chead + POLL_BATCH;
    size_t n = end - r->chead;
    while (r->chead != end) {
      troupe__env *e = r->slots[r->chead & (RING_SIZE - 1)];
      r->chead++;
      troupe__inbound(sys, e);
    }
    atomic_store_explicit(&r->head, r->chead, memory_order_release);
    total += n;
  }
  return total;
}

static bool ep_pending(endpoint *me) {
  troupe__inproc *ip = me->ip;
  for (uint32_t i = 0; i < ip->n; i++) {
    if (i == me->index) continue;
    ring *r = ring_of(ip, i, me->index);
    if (atomic_load(&r->tail) != r->chead) return true;
  }
  return false;
}

static void on_wake(uv_async_t *h) {
  endpoint *me = h->data;
  atomic_store(&me->parked, 0);
  troupe__wake_dispatch(me->sys);
}

/* The loop is about to block: spin a little, then park. */
static void on_prepare(uv_prepare_t *h) {
  endpoint *me = h->data;
  troupe_system *sys = me->sys;
  if (sys->idle_active) return;
  for (int i = 0; i < SPIN_ROUNDS; i++) {
    if (ep_pending(me)) {
      troupe__wake_dispatch(sys);
      return;
    }
    CPU_RELAX();
  }
  atomic_store(&me->parked, 1);
  if (ep_pending(me)) {
    atomic_store(&me->parked, 0);
    troupe__wake_dispatch(sys);
  }
}

static void on_check(uv_check_t *h) {
  endpoint *me = h->data;
  if (atomic_load_explicit(&me->parked, memory_order_relaxed))
    atomic_store(&me->parked, 0);
  if (ep_pending(me)) troupe__wake_dispatch(me->sys);
}

int troupe__inproc_attach(troupe__inproc *ip, uint32_t i, troupe_system *sys) {
  if (!ip || i >= ip->n || !sys)
    return troupe__err(TROUPE_EINVAL, "inproc_attach: bad argument");
  endpoint *me = &ip->eps[i];
  me->sys = sys;
  atomic_store(&me->parked, 0);
  uv_async_init(&sys->loop, &me->wake, on_wake);
  me->wake.data = me;
  uv_unref((uv_handle_t *)&me->wake);
  uv_prepare_init(&sys->loop, &me->prep);
  me->prep.data = me;
  uv_prepare_start(&me->prep, on_prepare);
  uv_unref((uv_handle_t *)&me->prep);
  uv_check_init(&sys->loop, &me->check);
  me->check.data = me;
  uv_check_start(&me->check, on_check);
  uv_unref((uv_handle_t *)&me->check);
  sys->xroute = ep_route;
  sys->xsend = ep_send;
  sys->xpoll = ep_poll;
  sys->xflush = ep_flush;
  atomic_store(&sys->xdata, me);
  atomic_store(&me->node, sys->node);
  return 0;
}

void troupe__inproc_detach(troupe__inproc *ip, uint32_t i) {
  endpoint *me = &ip->eps[i];
  atomic_store(&me->node, 0);
  /* envelopes for the terminated system: free them (its node is closed,
   * so they are dead letters nobody can count any more) */
  for (uint32_t k = 0; k < ip->n; k++) {
    if (k == i) continue;
    ring *r = ring_of(ip, k, i);
    size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    while (r->chead != t) {
      troupe__env_release(NULL, r->slots[r->chead & (RING_SIZE - 1)]);
      r->chead++;
    }
    r->ctail = t;
    atomic_store_explicit(&r->head, r->chead, memory_order_release);
  }
  me->sys = NULL;
}
