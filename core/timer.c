/*
 * timer.c: keyed actor timers.
 *
 * Each timer is a uv_timer_t owned by the actor. When it fires, a copy of
 * its message is enqueued tagged with the timer's key and generation; the
 * message is handed to the actor only if the timer with that key still has
 * that generation, so a message from a cancelled or replaced timer is never
 * received (even if it was already in the mailbox).
 */
#include "core/internal.h"

struct troupe__timer {
  troupe__timer *next;
  troupe__cell *cell;
  uint64_t key;
  uint32_t gen;
  bool periodic;
  bool fired;           /* a single timer that fired, awaiting delivery */
  uv_timer_t handle;
  const troupe_type *type;
  troupe__env *proto;   /* the message, copied at start */
};



static void timer_closed(uv_handle_t *h) {
  troupe__timer *t = h->data;
  free(t);
}

static void timer_discard(troupe_system *sys, troupe__timer *t) {
  if (t->proto) troupe__env_release(sys, t->proto);
  t->proto = NULL;
  uv_timer_stop(&t->handle);
  uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static troupe__timer **find(troupe__cell *c, uint64_t key) {
  if (!c->ext) return NULL;
  troupe__timer **pp = &c->ext->timers;
  while (*pp && (*pp)->key != key) pp = &(*pp)->next;
  return *pp ? pp : NULL;
}

static void on_fire(uv_timer_t *h) {
  troupe__timer *t = h->data;
  troupe__cell *c = t->cell;
  troupe_system *sys = c->sys;
  troupe__env *e = troupe__env_alloc(sys);
  if (!e) return;
  if (troupe__env_set(e, t->proto->type, t->proto->data) < 0) {
    e->type = NULL;
    troupe__env_release(sys, e);
    return;
  }
  e->kind = TROUPE__ENV_TIMER;
  e->sender = TROUPE_REF_NONE;
  e->ask_id = 0;
  e->aux64 = t->key;
  e->aux = (int32_t)t->gen;
  if (!t->periodic) t->fired = true;
  troupe__enqueue(c, e);
}

static int start(troupe_ctx *ctx, uint64_t key, uint64_t ms, bool periodic,
                 const troupe_type *type, const void *value) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c || !type)
    return troupe__err(TROUPE_EINVAL, "timer: NULL ctx or type");
  if (periodic && ms == 0)
    return troupe__err(TROUPE_EINVAL, "timer: periodic interval of 0 ms");
  troupe_system *sys = c->sys;
  troupe__cell_ext *x = troupe__ext(c);
  if (!x) return troupe__err(TROUPE_ENOMEM, "timer");
  troupe__env *proto = troupe__env_alloc(sys);
  if (!proto) return troupe__err(TROUPE_ENOMEM, "timer");
  int rc = troupe__env_set(proto, type, value);
  if (rc < 0) {
    proto->type = NULL;
    troupe__env_release(sys, proto);
    return rc;
  }
  troupe__timer *t = calloc(1, sizeof *t);
  if (!t) {
    troupe__env_release(sys, proto);
    return troupe__err(TROUPE_ENOMEM, "timer");
  }
  troupe__timer **old = find(c, key);
  if (old) {
    troupe__timer *o = *old;
    *old = o->next;
    timer_discard(sys, o);
  }
  t->cell = c;
  t->key = key;
  t->gen = ++sys->timer_gen ? sys->timer_gen : ++sys->timer_gen;
  t->periodic = periodic;
  t->type = type;
  t->proto = proto;
  uv_timer_init(&sys->loop, &t->handle);
  t->handle.data = t;
  uv_timer_start(&t->handle, on_fire, ms, periodic ? ms : 0);
  t->next = x->timers;
  x->timers = t;
  return 0;
}

int troupe_timer_once(troupe_ctx *ctx, uint64_t key, uint64_t delay_ms,
                      const troupe_type *type, const void *value) {
  return start(ctx, key, delay_ms, false, type, value);
}

int troupe_timer_periodic(troupe_ctx *ctx, uint64_t key, uint64_t interval_ms,
                          const troupe_type *type, const void *value) {
  return start(ctx, key, interval_ms, true, type, value);
}

int troupe_timer_cancel(troupe_ctx *ctx, uint64_t key) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c) return troupe__err(TROUPE_EINVAL, "timer: NULL ctx");
  troupe__timer **pp = find(c, key);
  if (!pp) return TROUPE_ENOENT;
  troupe__timer *t = *pp;
  *pp = t->next;
  timer_discard(c->sys, t);
  return 0;
}

bool troupe_timer_active(troupe_ctx *ctx, uint64_t key) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c) return false;
  troupe__timer **pp = find(c, key);
  return pp && !(*pp)->fired;
}

void troupe__timers_cancel_all(troupe__cell *c) {
  if (!c->ext) return;
  troupe__timer *t = c->ext->timers;
  c->ext->timers = NULL;
  while (t) {
    troupe__timer *n = t->next;
    timer_discard(c->sys, t);
    t = n;
  }
}

/* Is this timer message still wanted? A single timer is done once its
 * message is delivered. */
bool troupe__timer_filter(troupe__cell *c, const troupe__env *e) {
  troupe__timer **pp = find(c, e->aux64);
  if (!pp || (*pp)->gen != (uint32_t)e->aux) return false;
  troupe__timer *t = *pp;
  if (!t->periodic) {
    *pp = t->next;
    timer_discard(c->sys, t);
  }
  return true;
}
