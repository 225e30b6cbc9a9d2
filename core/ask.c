/*
 * ask.c: ask with timeout, from an actor and from other threads.
 *
 * An ask registers a promise: an entry in the system's ask table whose ref
 * (a uid with TROUPE__PROMISE_BIT in its slot) is used as the sender of the
 * request. The first message told to that ref completes the ask: for an
 * actor ask it is handed to the asker as an ordinary message carrying the
 * ask id; for a blocking ask it is moved to the waiting thread. Deadlines
 * sit on one list in deadline order (asks with equal timeouts append at the
 * tail in O(1)) served by one uv_timer, so an ask costs no timer syscall.
 */
#include "core/internal.h"

#include <errno.h>
#include <time.h>

#define NIL UINT32_MAX

typedef struct blocking {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int refs;
  bool done;
  int rc;
  troupe_reply_msg reply;
  troupe__env *req;       /* the request, until registered */
  troupe_ref target;
  uint64_t timeout_ms;
} blocking;

struct troupe__ask {
  uint32_t gen;
  uint32_t next_free;
  bool live;
  uint64_t id;
  uint64_t asker;          /* asker uid (actor ask), 0 for blocking */
  troupe_ref target;
  uint64_t deadline;
  uint32_t dl_prev, dl_next;
  blocking *blk;
};

static void blk_unref(blocking *b) {
  pthread_mutex_lock(&b->lock);
  int left = --b->refs;
  pthread_mutex_unlock(&b->lock);
  if (left == 0) {
    troupe_reply_free(&b->reply);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b);
  }
}

static void blk_complete(blocking *b, int rc, troupe__env *e) {
  pthread_mutex_lock(&b->lock);
  if (!b->done) {
    b->done = true;
    b->rc = rc;
    if (e && rc == 0) {
      size_t size = e->type->size;
      void *d = malloc(size ? size : 1);
      if (!d) {
        b->rc = TROUPE_ENOMEM;
      } else {
        if (size) memcpy(d, e->data, size);   /* moves owned buffers too */
        if (e->heap) { free(e->data); e->heap = 0; }
        e->data = e->inl;
        b->reply.type = e->type;
        b->reply.data = d;
        b->reply.sender = e->sender;
        e->type = NULL;
      }
    }
    pthread_cond_broadcast(&b->cond);
  }
  pthread_mutex_unlock(&b->lock);
}

/* ------------------------------------------------------------------ */
/* The table and the deadline list */

static void on_ask_timer(uv_timer_t *h);

void troupe__asks_init(troupe_system *sys) {
  uv_timer_init(&sys->loop, &sys->ask_timer);
  sys->ask_timer.data = sys;
  uv_unref((uv_handle_t *)&sys->ask_timer);
  sys->ask_dl_head = sys->ask_dl_tail = NIL;
  sys->free_ask = NIL;
}

static uint32_t dl_head(troupe_system *sys) { return sys->ask_dl_head; }
static uint32_t dl_tail(troupe_system *sys) { return sys->ask_dl_tail; }
static void set_head(troupe_system *sys, uint32_t i) { sys->ask_dl_head = i; }
static void set_tail(troupe_system *sys, uint32_t i) { sys->ask_dl_tail = i; }

static void dl_unlink(troupe_system *sys, uint32_t i) {
  troupe__ask *a = &sys->asks[i];
  if (a->dl_prev != NIL) sys->asks[a->dl_prev].dl_next = a->dl_next;
  else set_head(sys, a->dl_next);
  if (a->dl_next != NIL) sys->asks[a->dl_next].dl_prev = a->dl_prev;
  else set_tail(sys, a->dl_prev);
  a->dl_prev = a->dl_next = NIL;
}

static void dl_insert(troupe_system *sys, uint32_t i) {
  troupe__ask *a = &sys->asks[i];
  uint32_t at = dl_tail(sys);
  while (at != NIL && sys->asks[at].deadline > a->deadline)
    at = sys->asks[at].dl_prev;
  a->dl_prev = at;
  if (at == NIL) {
    a->dl_next = dl_head(sys);
    set_head(sys, i);
  } else {
    a->dl_next = sys->asks[at].dl_next;
    sys->asks[at].dl_next = i;
  }
  if (a->dl_next != NIL) sys->asks[a->dl_next].dl_prev = i;
  else set_tail(sys, i);
}

static void arm(troupe_system *sys) {
  uint32_t h = dl_head(sys);
  if (h == NIL) return;
  uint64_t now = troupe__now_ms(sys);
  uint64_t d = sys->asks[h].deadline;
  if (!sys->ask_timer_armed) {
    uv_timer_start(&sys->ask_timer, on_ask_timer, d > now ? d - now : 0, 0);
    sys->ask_timer_armed = true;
  }
}

static int ask_alloc(troupe_system *sys, uint32_t *out) {
  uint32_t i = sys->free_ask;
  if (i != NIL) {
    sys->free_ask = sys->asks[i].next_free;
  } else {
    if (sys->nasks == sys->asks_cap) {
      uint32_t ncap = sys->asks_cap ? sys->asks_cap * 2 : 64;
      if (ncap >= TROUPE__PROMISE_BIT)
        return troupe__err(TROUPE_ENOMEM, "too many pending asks");
      troupe__ask *n = realloc(sys->asks, ncap * sizeof *n);
      if (!n) return troupe__err(TROUPE_ENOMEM, "ask table");
      sys->asks = n;
      sys->asks_cap = ncap;
    }
    i = sys->nasks++;
    sys->asks[i].gen = 0;
  }
  troupe__ask *a = &sys->asks[i];
  if (++a->gen == 0) a->gen = 1;
  a->live = true;
  a->next_free = NIL;
  a->dl_prev = a->dl_next = NIL;
  a->blk = NULL;
  a->asker = 0;
  *out = i;
  return 0;
}

static void ask_release(troupe_system *sys, uint32_t i) {
  troupe__ask *a = &sys->asks[i];
  dl_unlink(sys, i);
  a->live = false;
  if (a->blk) {
    blk_unref(a->blk);
    a->blk = NULL;
  }
  a->next_free = sys->free_ask;
  sys->free_ask = i;
}

static troupe_ref promise_ref(troupe_system *sys, uint32_t i) {
  troupe_ref r = {sys->node,
                  TROUPE__UID((i + 1) | TROUPE__PROMISE_BIT, sys->asks[i].gen)};
  return r;
}

static int ask_register(troupe_system *sys, uint64_t asker, troupe_ref target,
                        uint64_t timeout_ms, blocking *blk, uint32_t *idx) {
  uint32_t i = NIL;
  int rc = ask_alloc(sys, &i);
  if (rc < 0) return rc;
  troupe__ask *a = &sys->asks[i];
  a->id = ++sys->next_ask_id;
  a->asker = asker;
  a->target = target;
  a->blk = blk;
  a->deadline = troupe__now_ms(sys) + timeout_ms;
  dl_insert(sys, i);
  arm(sys);
  *idx = i;
  return 0;
}

static void expire(troupe_system *sys, uint32_t i) {
  troupe__ask *a = &sys->asks[i];
  if (a->blk) {
    blk_complete(a->blk, TROUPE_ETIMEDOUT, NULL);
  } else {
    troupe__cell *c = troupe__cell_get(sys, a->asker);
    if (c && !(c->flags & TROUPE__CF_DEAD)) {
      troupe__env *e = troupe__env_alloc(sys);
      troupe_ask_timeout to = {a->id, a->target};
      if (e && troupe__env_set(e, &TROUPE_T_ASK_TIMEOUT, &to) == 0) {
        e->kind = TROUPE__ENV_USER;
        e->sender = TROUPE_REF_NONE;
        e->ask_id = a->id;
        troupe__enqueue(c, e);
      } else if (e) {
        e->type = NULL;
        troupe__env_release(sys, e);
      }
    }
  }
  ask_release(sys, i);
}

static void on_ask_timer(uv_timer_t *h) {
  troupe_system *sys = h->data;
  sys->ask_timer_armed = false;
  uint64_t now = troupe__now_ms(sys);
  uint32_t i;
  while ((i = dl_head(sys)) != NIL && sys->asks[i].deadline <= now)
    expire(sys, i);
  arm(sys);
}

/* A message told to a promise ref. */
int troupe__ask_deliver(troupe_system *sys, uint64_t uid, troupe__env *e) {
  uint32_t slot = TROUPE__UID_SLOT(uid) & ~TROUPE__PROMISE_BIT;
  uint32_t i = slot - 1;
  troupe_ref to = {sys->node, uid};
  if (slot == 0 || i >= sys->nasks || !sys->asks[i].live ||
      sys->asks[i].gen != TROUPE__UID_GEN(uid)) {
    troupe__dead_letter(sys, to, e, TROUPE_ETIMEDOUT);
    return 0;
  }
  troupe__ask *a = &sys->asks[i];
  if (a->blk) {
    blk_complete(a->blk, 0, e);
    troupe__env_release(sys, e);
    ask_release(sys, i);
    return 0;
  }
  uint64_t asker = a->asker;
  e->ask_id = a->id;
  ask_release(sys, i);
  return troupe__deliver_local(sys, asker, e, false);
}

void troupe__asks_close(troupe_system *sys) {
  for (uint32_t i = 0; i < sys->nasks; i++) {
    troupe__ask *a = &sys->asks[i];
    if (!a->live) continue;
    if (a->blk) blk_complete(a->blk, TROUPE_ECLOSED, NULL);
    ask_release(sys, i);
  }
  if (!uv_is_closing((uv_handle_t *)&sys->ask_timer))
    uv_close((uv_handle_t *)&sys->ask_timer, NULL);
}

/* ------------------------------------------------------------------ */
/* Public */

int troupe_ask(troupe_ctx *ctx, troupe_ref target, const troupe_type *type,
               const void *value, uint64_t timeout_ms, uint64_t *ask_id) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c || !type)
    return troupe__err(TROUPE_EINVAL, "troupe_ask: NULL ctx or type");
  troupe_system *sys = c->sys;
  uint32_t i;
  int rc = ask_register(sys, c->uid, target, timeout_ms, NULL, &i);
  if (rc < 0) return rc;
  uint64_t id = sys->asks[i].id;
  rc = troupe_tell(target, type, value, promise_ref(sys, i));
  if (rc < 0) {
    ask_release(sys, i);
    return rc;
  }
  if (ask_id) *ask_id = id;
  return 0;
}

static void blocking_on_loop(troupe_system *sys, void *arg) {
  blocking *b = arg;
  troupe__env *e = b->req;
  b->req = NULL;
  if (atomic_load(&sys->state) == TROUPE__SYS_TERMINATED || !sys->root) {
    blk_complete(b, TROUPE_ECLOSED, NULL);
    troupe__env_release(sys, e);
    blk_unref(b);
    return;
  }
  uint32_t i;
  int rc = ask_register(sys, 0, b->target, b->timeout_ms, b, &i);
  if (rc < 0) {
    blk_complete(b, rc, NULL);
    troupe__env_release(sys, e);
    blk_unref(b);
    return;
  }
  /* the table's reference is the one the caller gave us */
  e->sender = promise_ref(sys, i);
  if (b->target.node == sys->node) {
    troupe__deliver_local(sys, b->target.uid, e, false);
  } else {
    troupe_tell(b->target, e->type, e->data, e->sender);
    troupe__env_release(sys, e);
  }
}

int troupe_ask_blocking(troupe_system *sys, troupe_ref target,
                        const troupe_type *type, const void *value,
                        uint64_t timeout_ms, troupe_reply_msg *reply) {
  if (!sys || !type || !reply)
    return troupe__err(TROUPE_EINVAL, "troupe_ask_blocking: NULL argument");
  memset(reply, 0, sizeof *reply);
  if (troupe__current == sys)
    return troupe__err(TROUPE_EWRONGTHREAD,
                       "troupe_ask_blocking on the system's own thread");
  if (atomic_load(&sys->state) != TROUPE__SYS_RUNNING)
    return troupe__err(TROUPE_ECLOSED, "system %s is not running", sys->name);
  blocking *b = calloc(1, sizeof *b);
  if (!b) return troupe__err(TROUPE_ENOMEM, "ask");
  pthread_mutex_init(&b->lock, NULL);
  pthread_cond_init(&b->cond, NULL);
  b->refs = 2;
  b->target = target;
  b->timeout_ms = timeout_ms;
  troupe__env *e = troupe__env_new();
  int rc = e ? troupe__env_set(e, type, value) : TROUPE_ENOMEM;
  if (rc < 0) {
    free(e);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b);
    return rc == TROUPE_ENOMEM ? troupe__err(rc, "ask") : rc;
  }
  e->kind = TROUPE__ENV_USER;
  e->ask_id = 0;
  b->req = e;
  rc = troupe__post(sys, blocking_on_loop, b);
  if (rc < 0) {
    troupe__env_release(NULL, e);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b);
    return rc;
  }
  /* wait a little longer than the loop's own deadline, which answers */
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  uint64_t wait_ms = timeout_ms + 1000;
  dl.tv_sec += (time_t)(wait_ms / 1000);
  dl.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) { dl.tv_sec++; dl.tv_nsec -= 1000000000L; }
  pthread_mutex_lock(&b->lock);
  while (!b->done) {
    if (pthread_cond_timedwait(&b->cond, &b->lock, &dl) == ETIMEDOUT) {
      b->done = true;
      b->rc = TROUPE_ETIMEDOUT;
    }
  }
  rc = b->rc;
  if (rc == 0) {
    *reply = b->reply;
    memset(&b->reply, 0, sizeof b->reply);
  }
  pthread_mutex_unlock(&b->lock);
  blk_unref(b);
  if (rc == TROUPE_ETIMEDOUT)
    return troupe__err(rc, "no reply within %llu ms",
                       (unsigned long long)timeout_ms);
  if (rc < 0) return troupe__err(rc, "ask failed: %s", troupe_strerror(rc));
  return 0;
}

void troupe_reply_free(troupe_reply_msg *r) {
  if (!r || !r->data) return;
  if (r->type && r->type->size &&
      !(__atomic_load_n(&r->type->_flags, __ATOMIC_RELAXED) &
        TROUPE__TF_FLAT))
    troupe_value_free(r->type, r->data);
  free(r->data);
  r->data = NULL;
  r->type = NULL;
}
