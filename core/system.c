/*
 * system.c: actor systems, the dispatcher and the cross-thread inbox.
 *
 * A system is one libuv loop on one thread. Runnable actors sit on a run
 * queue; an idle handle is active while there is work, and its callback
 * (the dispatcher) handles up to DISPATCH_BUDGET messages before giving the
 * loop back to I/O and timers. System messages (stop, failure, child
 * terminated) sit on their own queue and always go before user messages.
 *
 * Other threads reach a system only through its inbox: a Vyukov MPSC queue
 * of envelopes plus a uv_async wake-up that is sent once per batch (the
 * wake_pending flag), drained on the loop.
 */
#include "core/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#define DISPATCH_BUDGET 16384
/* Pause rounds one dispatcher turn may spend waiting on its links when it
 * has run out of work (a reply from another worker usually arrives within
 * a few hundred nanoseconds; returning to the loop costs a poll). */
#define LINK_SPIN_ROUNDS 2048

#if defined(__x86_64__) || defined(__i386__)
# include <immintrin.h>
# define CPU_RELAX() _mm_pause()
#else
# define CPU_RELAX() ((void)0)
#endif

_Thread_local troupe_system *troupe__current;

/* ------------------------------------------------------------------ */
/* Guardians */

static int guardian_receive(troupe_ctx *ctx, void *state,
                            const troupe_msg *msg) {
  (void)state;
  if (msg->type == &TROUPE__T_IDENTIFY) {
    /* from another system or node: who lives at this path? */
    const troupe_identify *id = msg->data;
    troupe_actor_identity ai = {TROUPE_REF_NONE};
    if (id->path) (void)troupe_select(troupe_ctx_system(ctx), id->path,
                                      &ai.actor);
    return troupe_reply(ctx, &TROUPE_T_ACTOR_IDENTITY, &ai);
  }
  return TROUPE_UNHANDLED;
}

static const troupe_behavior guardian_behavior = {
  .name = "guardian",
  .receive = guardian_receive,
};

/* ------------------------------------------------------------------ */
/* Queues */

static void on_idle(uv_idle_t *h);

void troupe__wake_dispatch(troupe_system *sys) {
  if (!sys->idle_active && sys->loop_inited) {
    sys->idle_active = true;
    uv_idle_start(&sys->idle, on_idle);
  }
}

void troupe__schedule(troupe__cell *c) {
  if (c->flags & TROUPE__CF_SCHEDULED) return;
  troupe_system *sys = c->sys;
  c->flags |= TROUPE__CF_SCHEDULED;
  c->rq_next = NULL;
  if (sys->rq_tail) sys->rq_tail->rq_next = c;
  else sys->rq_head = c;
  sys->rq_tail = c;
  if (TROUPE_UNLIKELY(!sys->idle_active)) troupe__wake_dispatch(sys);
}

void troupe__sysq_push(troupe_system *sys, troupe__env *e) {
  e->next = NULL;
  if (sys->sq_tail) sys->sq_tail->next = e;
  else sys->sq_head = e;
  sys->sq_tail = e;
  troupe__wake_dispatch(sys);
}

int troupe__sys_send(troupe_system *sys, uint64_t target, uint32_t kind,
                     uint64_t aux64, int32_t aux) {
  troupe__env *e = troupe__env_alloc(sys);
  if (!e) return troupe__err(TROUPE_ENOMEM, "system message");
  e->type = NULL;
  e->kind = kind;
  e->target = target;
  e->aux64 = aux64;
  e->aux = aux;
  e->sender = TROUPE_REF_NONE;
  e->ask_id = 0;
  troupe__sysq_push(sys, e);
  return 0;
}

static inline bool cell_can_run(const troupe__cell *c) {
  return !(c->flags & (TROUPE__CF_SUSPENDED | TROUPE__CF_STOPPING |
                       TROUPE__CF_RESTARTING | TROUPE__CF_DEAD));
}

/* Append to a mailbox, applying the bounded-mailbox policy. Returns 0, or
 * TROUPE_EFULL when the FAIL policy refused the message (e is then still
 * the caller's). */
static int mailbox_put(troupe__cell *c, troupe__env *e, bool may_fail) {
  const troupe_mailbox_opts *mo = &c->beh->mailbox;
  if (TROUPE_UNLIKELY(mo->capacity && c->mb_len >= mo->capacity &&
                      e->kind == TROUPE__ENV_USER)) {
    switch (mo->overflow) {
      case TROUPE_OVERFLOW_FAIL:
        if (may_fail) return TROUPE_EFULL;
        /* from another thread: drop the new one */
        __attribute__((fallthrough));
      default:
      case TROUPE_OVERFLOW_DROP_NEW:
        troupe__dead_letter(c->sys, troupe__ref_of(c), e, TROUPE_EFULL);
        return 0;
      case TROUPE_OVERFLOW_DROP_HEAD: {
        troupe__env *old = c->mb_head;
        c->mb_head = old->next;
        if (!c->mb_head) c->mb_tail = NULL;
        c->mb_len--;
        old->next = NULL;
        troupe__dead_letter(c->sys, troupe__ref_of(c), old, TROUPE_EFULL);
        break;
      }
    }
  }
  e->next = NULL;
  if (c->mb_tail) c->mb_tail->next = e;
  else c->mb_head = e;
  c->mb_tail = e;
  c->mb_len++;
  if (!(c->flags & TROUPE__CF_SCHEDULED) && cell_can_run(c))
    troupe__schedule(c);
  return 0;
}

void troupe__enqueue(troupe__cell *c, troupe__env *e) {
  (void)mailbox_put(c, e, false);
}

/* ------------------------------------------------------------------ */
/* Delivery */

int troupe__deliver_local(troupe_system *sys, uint64_t uid, troupe__env *e,
                          bool may_fail) {
  if (TROUPE_UNLIKELY(TROUPE__UID_SLOT(uid) & TROUPE__PROMISE_BIT))
    return troupe__ask_deliver(sys, uid, e);
  troupe__cell *c = troupe__cell_get(sys, uid);
  troupe_ref to = {sys->node, uid};
  if (TROUPE_UNLIKELY(!c || (c->flags & TROUPE__CF_DEAD))) {
    troupe__dead_letter(sys, to, e, c ? TROUPE_ESTOPPED : TROUPE_ENOENT);
    return 0;
  }
  if (TROUPE_UNLIKELY(c->flags & TROUPE__CF_ROUTER) && troupe__route(c, e))
    return 0;
  int rc = mailbox_put(c, e, may_fail);
  if (TROUPE_UNLIKELY(rc < 0)) {
    troupe__env_release(sys, e);
    return troupe__err(rc, "mailbox of %s is full",
                       c->beh->name ? c->beh->name : "actor");
  }
  return 0;
}

/* Push into another system's inbox (any thread). */
static void inbox_push(troupe_system *sys, troupe__env *e) {
  e->next = NULL;
  troupe__env *prev = atomic_exchange_explicit(&sys->in_tail, e,
                                               memory_order_acq_rel);
  __atomic_store_n(&prev->next, e, __ATOMIC_RELEASE);
  if (!atomic_exchange(&sys->wake_pending, 1)) uv_async_send(&sys->async);
}

/* Pop from our own inbox (loop thread). NULL when empty or when a producer
 * is half-way through a push (it will wake us again). */
static troupe__env *inbox_pop(troupe_system *sys) {
  troupe__env *head = sys->in_head;
  troupe__env *next = __atomic_load_n(&head->next, __ATOMIC_ACQUIRE);
  if (head == &sys->in_stub) {
    if (!next) return NULL;
    sys->in_head = next;
    head = next;
    next = __atomic_load_n(&next->next, __ATOMIC_ACQUIRE);
  }
  if (next) {
    sys->in_head = next;
    return head;
  }
  troupe__env *tail = atomic_load_explicit(&sys->in_tail,
                                           memory_order_acquire);
  if (head != tail) return NULL;
  /* one element left: put the stub back behind it */
  sys->in_stub.next = NULL;
  troupe__env *prev = atomic_exchange_explicit(&sys->in_tail, &sys->in_stub,
                                               memory_order_acq_rel);
  __atomic_store_n(&prev->next, &sys->in_stub, __ATOMIC_RELEASE);
  next = __atomic_load_n(&head->next, __ATOMIC_ACQUIRE);
  if (next) {
    sys->in_head = next;
    return head;
  }
  return NULL;
}

void troupe__inbound(troupe_system *sys, troupe__env *e) {
  e->next = NULL;
  if (e->kind == TROUPE__ENV_CALL) {
    void (*fn)(troupe_system *, void *) = e->call;
    void *arg = e->data;
    e->data = e->inl;
    e->type = NULL;
    troupe__env_release(sys, e);
    fn(sys, arg);
    return;
  }
  if (TROUPE_UNLIKELY(e->tnode && e->tnode != sys->node)) {
    troupe__node *n = troupe__node_get(e->tnode);
    if (n && atomic_load(&n->remote)) {
      troupe__remote_inbound(sys, e);   /* we own the link to that node */
      return;
    }
    /* meant for an earlier system on this link (restarted since) */
    troupe_ref to = {e->tnode, e->target};
    troupe__dead_letter(sys, to, e, TROUPE_ECLOSED);
    return;
  }
  if (TROUPE_UNLIKELY(e->kind != TROUPE__ENV_USER)) {
    troupe__control(sys, e);
    return;
  }
  troupe__deliver_local(sys, e->target, e, false);
}

static void inbox_drain(troupe_system *sys) {
  troupe__env *e;
  while ((e = inbox_pop(sys)) != NULL) troupe__inbound(sys, e);
}

static void on_async(uv_async_t *h) {
  troupe_system *sys = h->data;
  atomic_store(&sys->wake_pending, 0);
  inbox_drain(sys);
}

int troupe__post(troupe_system *sys, void (*fn)(troupe_system *, void *),
                 void *arg) {
  troupe__node *n = troupe__node_get(sys->node);
  troupe__env *e = troupe__env_new();
  if (!e) return troupe__err(TROUPE_ENOMEM, "posting to %s", sys->name);
  e->kind = TROUPE__ENV_CALL;
  e->call = fn;
  e->data = arg;
  e->type = NULL;
  atomic_fetch_add(&n->users, 1);
  if (!atomic_load(&n->sys)) {
    atomic_fetch_sub(&n->users, 1);
    free(e);
    return troupe__err(TROUPE_ECLOSED, "system %s is closed", sys->name);
  }
  inbox_push(sys, e);
  atomic_fetch_sub(&n->users, 1);
  return 0;
}

int troupe_tell(troupe_ref to, const troupe_type *type, const void *value,
                troupe_ref sender) {
  if (TROUPE_UNLIKELY(!type))
    return troupe__err(TROUPE_EINVAL, "troupe_tell: NULL type");
  troupe_system *cur = troupe__current;
  if (TROUPE_LIKELY(cur != NULL && to.node == cur->node)) {
    troupe__env *e = troupe__env_alloc(cur);
    if (TROUPE_UNLIKELY(!e)) return troupe__err(TROUPE_ENOMEM, "tell");
    int rc = troupe__env_set(e, type, value);
    if (TROUPE_UNLIKELY(rc < 0)) {
      e->type = NULL;
      troupe__env_release(cur, e);
      return rc;
    }
    e->kind = TROUPE__ENV_USER;
    e->sender = sender;
    e->ask_id = 0;
    return troupe__deliver_local(cur, to.uid, e, true);
  }
  /* Another system, or a thread outside any system. */
  troupe__node *n = troupe__node_get(to.node);
  if (TROUPE_UNLIKELY(!n || to.uid == 0)) {
    if (to.uid == 0 && cur) {
      /* tell to "no actor": a dead letter in the current system */
      troupe__env *e = troupe__env_alloc(cur);
      if (!e) return troupe__err(TROUPE_ENOMEM, "tell");
      int rc = troupe__env_set(e, type, value);
      if (rc < 0) { e->type = NULL; troupe__env_release(cur, e); return rc; }
      e->kind = TROUPE__ENV_USER;
      e->sender = sender;
      e->ask_id = 0;
      troupe__dead_letter(cur, to, e, TROUPE_ENOENT);
      return 0;
    }
    if (!n && to.uid != 0)
      return troupe__err(TROUPE_EINVAL, "troupe_tell: ref names no node");
    return 0;
  }
  troupe__env *e = cur ? troupe__env_alloc(cur) : troupe__env_new();
  if (!e) return troupe__err(TROUPE_ENOMEM, "tell");
  int rc = troupe__env_set(e, type, value);
  if (rc < 0) {
    e->type = NULL;
    troupe__env_release(cur, e);
    return rc;
  }
  e->kind = TROUPE__ENV_USER;
  e->sender = sender;
  e->ask_id = 0;
  e->target = to.uid;
  e->tnode = to.node;
  return troupe__send_node(cur, n, to.node, e);
}

/* Move e (kind, target, tnode set) to the system or node n from any
 * thread: over a link of ours (mesh ring), the target's inbox, or
 * remoting. Never blocks; an unreachable target makes a dead letter. */
int troupe__send_node(troupe_system *cur, troupe__node *n, uint64_t node,
                      troupe__env *e) {
  /* A link of ours (mesh ring) to an open system: its rings belong to the
   * link, not to the system, so no users count is needed. A system that
   * closes between the check and the put has its ring drained (or, once
   * restarted, finds the envelope meant for an earlier node: a dead
   * letter). */
  if (cur && cur->xsend &&
      TROUPE_LIKELY(atomic_load_explicit(&n->sys, memory_order_acquire)) &&
      cur->xsend(cur, node, e) == 0)
    return 0;
  atomic_fetch_add_explicit(&n->users, 1, memory_order_seq_cst);
  troupe_system *sys = atomic_load(&n->sys);
  if (TROUPE_UNLIKELY(!sys)) {
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    if (atomic_load_explicit(&n->remote, memory_order_acquire))
      return troupe__remote_send(n, node, e);
    troupe_ref to = {node, e->target};
    if (cur) {
      troupe__dead_letter(cur, to, e, TROUPE_ECLOSED);
    } else {
      troupe__env_release(NULL, e);  /* frees value and envelope */
    }
    return 0;                         /* a dead letter of a closed system */
  }
  if (cur && cur->xroute && cur->xroute(cur, sys, e) == 0) {
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    return 0;
  }
  inbox_push(sys, e);
  atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
  return 0;
}

/* ------------------------------------------------------------------ */
/* The dispatcher */

static void invoke(troupe_system *sys, troupe__cell *c, troupe__env *e);
void troupe__unhandled(troupe__cell *c, troupe__env *e);

/* Backpressure (see xcongested). A muted cell stays flagged SCHEDULED so
 * that nothing queues it again; the dispatcher moves it from the run queue
 * to the muted list while the system is congested. */
static void mute_park(troupe_system *sys, troupe__cell *c) {
  c->rq_next = NULL;
  if (sys->muted_tail) sys->muted_tail->rq_next = c;
  else sys->muted_head = c;
  sys->muted_tail = c;
}

/* Every overflow went into its ring: the muted run again (their MUTED
 * flag is dropped when the dispatcher takes them). */
static void unmute_all(troupe_system *sys) {
  sys->xcongested = false;
  sys->xmute = false;
  troupe__cell *c = sys->muted_head;
  if (!c) return;
  if (sys->rq_tail) sys->rq_tail->rq_next = c;
  else sys->rq_head = c;
  sys->rq_tail = sys->muted_tail;
  sys->muted_head = sys->muted_tail = NULL;
  troupe__wake_dispatch(sys);
}

/* Publish what the links buffered; the muted run again once every
 * overflow has gone out. */
static void flush_links(troupe_system *sys) {
  if (sys->xdirty) {
    sys->xdirty = false;
    sys->xflush(sys);   /* may leave xdirty set: a ring was full */
  }
  if (TROUPE_UNLIKELY(sys->xcongested) && !sys->xdirty) unmute_all(sys);
}

/* Out of work on a system with links: publish, then spin on the links a
 * while. True when something arrived (it is queued for the dispatcher). */
static bool spin_links(troupe_system *sys, int *rounds) {
  flush_links(sys);
  if (sys->rq_head) return true;      /* unmuted */
  while (*rounds > 0) {
    for (int i = 0; i < 16 && *rounds > 0; i++, (*rounds)--) CPU_RELAX();
    if (sys->xpoll(sys) > 0) return true;
    if (TROUPE_UNLIKELY(sys->xdirty)) {   /* a ring was full: retry */
      flush_links(sys);
      if (sys->rq_head) return true;
    }
  }
  return false;
}

static void dispatch(troupe_system *sys) {
  int budget = DISPATCH_BUDGET;
  int spin = LINK_SPIN_ROUNDS;
  /* Read the links once per turn even when local work never runs out (an
   * actor telling itself forever): otherwise nothing from other workers —
   * cluster heartbeats included — would arrive until it stopped. */
  if (sys->xpoll) sys->xpoll(sys);
  while (budget > 0) {
    if (sys->sq_head) {
      troupe__env *s = sys->sq_head;
      sys->sq_head = s->next;
      if (!sys->sq_head) sys->sq_tail = NULL;
      s->next = NULL;
      troupe__handle_sys(sys, s);
      budget--;
      continue;
    }
    troupe__cell *c = sys->rq_head;
    if (!c) {
      if (!sys->xpoll) break;
      if (sys->xpoll(sys) > 0) continue;
      if (spin > 0 && spin_links(sys, &spin)) continue;
      break;
    }
    sys->rq_head = c->rq_next;
    if (!sys->rq_head) sys->rq_tail = NULL;
    c->rq_next = NULL;
    if (TROUPE_UNLIKELY(c->flags & (TROUPE__CF_DEAD | TROUPE__CF_MUTED))) {
      if (c->flags & TROUPE__CF_DEAD) {
        free(c);
        continue;
      }
      if (sys->xcongested) {
        mute_park(sys, c);
        continue;
      }
      c->flags &= ~TROUPE__CF_MUTED;
    }
    c->flags &= ~TROUPE__CF_SCHEDULED;
    uint32_t n = c->beh->mailbox.throughput ? c->beh->mailbox.throughput
                                            : sys->throughput;
    bool mute = false;
    while (n-- && c->mb_head && cell_can_run(c)) {
      troupe__env *e = c->mb_head;
      c->mb_head = e->next;
      if (!c->mb_head) c->mb_tail = NULL;
      c->mb_len--;
      e->next = NULL;
      invoke(sys, c, e);
      budget--;
      if (TROUPE_UNLIKELY(sys->xmute)) {   /* this receive filled a link */
        sys->xmute = false;
        mute = true;
        break;
      }
      if (sys->sq_head) break;
    }
    if (TROUPE_UNLIKELY(mute)) {
      /* it filled a link: off the run queue until the links have room */
      c->flags |= TROUPE__CF_MUTED;
      if (c->mb_head) troupe__schedule(c);
    } else if (c->mb_head && cell_can_run(c)) {
      troupe__schedule(c);
    }
  }
  if (sys->xpoll) flush_links(sys);
  if (!sys->rq_head && !sys->sq_head && !sys->xdirty && sys->idle_active) {
    sys->idle_active = false;
    uv_idle_stop(&sys->idle);
  }
}

static void on_idle(uv_idle_t *h) { dispatch(h->data); }

/* Handle one user message. */
static void invoke(troupe_system *sys, troupe__cell *c, troupe__env *e) {
  const troupe_type *t = e->type;
  if (TROUPE_UNLIKELY(e->kind == TROUPE__ENV_TIMER)) {
    if (!troupe__timer_filter(c, e)) {
      troupe__env_release(sys, e);
      return;
    }
  } else if (TROUPE_UNLIKELY(t == &TROUPE_T_POISON_PILL)) {
    troupe__env_release(sys, e);
    troupe__cell_stop(c);
    return;
  } else if (TROUPE_UNLIKELY(t == &TROUPE_T_TERMINATED)) {
    if (!troupe__watch_filter(c, e)) {
      troupe__env_release(sys, e);
      return;
    }
  }
  troupe_msg m;
  m.type = t;
  m.data = e->data;
  m.sender = e->sender;
  m.ask_id = e->ask_id;
  sys->cur_cell = c;
  sys->cur_env = e;
  sys->cur_stashed = false;
  int rc = c->receive((troupe_ctx *)c, c->state, &m);
  sys->cur_cell = NULL;
  sys->cur_env = NULL;
  if (TROUPE_UNLIKELY(rc != 0)) {
    if (rc == TROUPE_UNHANDLED) {
      if (!sys->cur_stashed) {
        troupe__unhandled(c, e);
        troupe__env_release(sys, e);
      }
      return;
    }
    if (rc < 0) troupe__fail(c, rc);
  }
  if (TROUPE_LIKELY(!sys->cur_stashed)) troupe__env_release(sys, e);
}

/* ------------------------------------------------------------------ */
/* Lifecycle */

static const troupe_supervisor default_user_sup = {
  .default_directive = TROUPE_RESTART,
};

static bool valid_name(const char *s) {
  if (!s || !*s) return false;
  size_t n = 0;
  for (; *s; s++, n++) {
    char ch = *s;
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
      return false;
  }
  return n < 64;
}

int troupe_system_create(troupe_system **out, const troupe_system_opts *opts) {
  if (!out) return troupe__err(TROUPE_EINVAL, "troupe_system_create: NULL out");
  *out = NULL;
  troupe_system_opts def = {0};
  if (!opts) opts = &def;
  const char *name = opts->name ? opts->name : "troupe";
  if (!valid_name(name))
    return troupe__err(TROUPE_EINVAL,
                       "system name must be 1-63 of [A-Za-z0-9_-]: \"%s\"",
                       name);
  troupe_system *sys = calloc(1, sizeof *sys);
  if (!sys) return troupe__err(TROUPE_ENOMEM, "system");
  snprintf(sys->name, sizeof sys->name, "%s", name);
  sys->log = opts->log ? opts->log : troupe_log_stderr;
  sys->log_data = opts->log_data;
  sys->log_level = (opts->log_level_set || opts->log_level)
                       ? opts->log_level : TROUPE_LOG_INFO;
  sys->root_policy = opts->root_policy;
  sys->user_sup = opts->user_supervisor ? *opts->user_supervisor
                                        : default_user_sup;
  sys->throughput = opts->throughput ? opts->throughput : 64;
  sys->dl_log_limit = opts->dead_letter_log_limit
                          ? opts->dead_letter_log_limit : 10;
  sys->rng = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)sys ^
             0x9E3779B97F4A7C15ull;
  sys->free_slot = UINT32_MAX;
  sys->free_ask = UINT32_MAX;
  pthread_mutex_init(&sys->lock, NULL);
  pthread_cond_init(&sys->cond, NULL);
  sys->in_stub.next = NULL;
  sys->in_head = &sys->in_stub;
  atomic_store(&sys->in_tail, &sys->in_stub);

  int rc = uv_loop_init(&sys->loop);
  if (rc < 0) {
    free(sys);
    return troupe__err(TROUPE_EIO, "uv_loop_init: %s", uv_strerror(rc));
  }
  sys->loop.data = sys;
  uv_idle_init(&sys->loop, &sys->idle);
  sys->idle.data = sys;
  uv_async_init(&sys->loop, &sys->async, on_async);
  sys->async.data = sys;
  uv_unref((uv_handle_t *)&sys->async);
  troupe__asks_init(sys);
  sys->loop_inited = true;

  rc = troupe__node_add(sys, &sys->node);
  if (rc < 0) goto fail;

  /* Guardians: root "/", "/user" and "/system". */
  static const troupe_spawn_opts root_o = {.name = ""};
  static const troupe_spawn_opts user_o = {.name = "user"};
  static const troupe_spawn_opts sys_o = {.name = "system"};
  rc = troupe__spawn(sys, NULL, &guardian_behavior, &root_o,
                     TROUPE__CF_GUARDIAN, &sys->root);
  if (rc < 0) goto fail;
  rc = troupe__spawn(sys, sys->root, &guardian_behavior, &user_o,
                     TROUPE__CF_GUARDIAN, &sys->user);
  if (rc < 0) goto fail;
  rc = troupe__spawn(sys, sys->root, &guardian_behavior, &sys_o,
                     TROUPE__CF_GUARDIAN, &sys->sysg);
  if (rc < 0) goto fail;
  *out = sys;
  return 0;
fail:
  troupe_system_destroy(sys);
  return rc;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Called when the root guardian has terminated: close our handles so the
 * loop ends. */
void troupe__system_terminated(troupe_system *sys);
void troupe__system_terminated(troupe_system *sys) {
  atomic_store(&sys->state, TROUPE__SYS_TERMINATED);
  troupe__node_close(sys->node);
  inbox_drain(sys);   /* late tells become dead letters */
  if (sys->remoting) troupe__remote_closing(sys);
  troupe__asks_close(sys);
  sys->idle_active = false;
  uv_idle_stop(&sys->idle);
  uv_walk(&sys->loop, walk_close, NULL);
}

static void run_begin(troupe_system *sys) {
  troupe__current = sys;
  atomic_store(&sys->loop_thread, (uintptr_t)pthread_self());
  /* the inbox wake-up must keep the loop alive while running */
  uv_ref((uv_handle_t *)&sys->async);
  if (atomic_load(&sys->stop_requested)) troupe__cell_stop(sys->root);
  troupe__wake_dispatch(sys);
  /* anything posted before we ran */
  if (atomic_load(&sys->wake_pending)) on_async(&sys->async);
}

static int run_end(troupe_system *sys) {
  /* drain what is left (close callbacks) */
  while (uv_run(&sys->loop, UV_RUN_NOWAIT)) {}
  int rc = uv_loop_close(&sys->loop);
  if (rc != 0)
    troupe__log(sys, TROUPE_LOG_ERROR, "system",
                "loop did not close cleanly: %s", uv_strerror(rc));
  sys->loop_inited = false;
  atomic_store(&sys->loop_thread, 0);
  troupe__current = NULL;
  pthread_mutex_lock(&sys->lock);
  atomic_store(&sys->state, TROUPE__SYS_TERMINATED);
  pthread_cond_broadcast(&sys->cond);
  pthread_mutex_unlock(&sys->lock);
  return sys->exit_code;
}

static int run_loop(troupe_system *sys) {
  run_begin(sys);
  uv_run(&sys->loop, UV_RUN_DEFAULT);
  return run_end(sys);
}

int troupe__system_step_begin(troupe_system *sys) {
  if (!sys) return troupe__err(TROUPE_EINVAL, "system_step_begin: NULL");
  int expect = TROUPE__SYS_CREATED;
  if (!atomic_compare_exchange_strong(&sys->state, &expect,
                                      TROUPE__SYS_RUNNING))
    return troupe__err(TROUPE_ESTATE, "system %s already ran", sys->name);
  troupe_system *prev = troupe__current;
  run_begin(sys);
  troupe__current = prev;
  return 0;
}

bool troupe__system_step(troupe_system *sys) {
  if (!sys || !sys->loop_inited) return false;
  troupe_system *prev = troupe__current;
  troupe__current = sys;
  int alive = uv_run(&sys->loop, UV_RUN_NOWAIT);
  troupe__current = prev;
  return alive != 0 &&
         atomic_load(&sys->state) != TROUPE__SYS_TERMINATED;
}

int troupe__system_step_end(troupe_system *sys) {
  if (!sys || !sys->loop_inited)
    return troupe__err(TROUPE_ESTATE, "system_step_end: not stepping");
  troupe_system *prev = troupe__current;
  troupe__current = sys;
  int rc = run_end(sys);
  troupe__current = prev;
  return rc;
}

int troupe_system_run(troupe_system *sys) {
  if (!sys) return troupe__err(TROUPE_EINVAL, "troupe_system_run: NULL");
  int expect = TROUPE__SYS_CREATED;
  if (!atomic_compare_exchange_strong(&sys->state, &expect,
                                      TROUPE__SYS_RUNNING))
    return troupe__err(TROUPE_ESTATE, "system %s already ran", sys->name);
  if (troupe__current)
    return troupe__err(TROUPE_EWRONGTHREAD,
                       "this thread already runs system %s",
                       troupe__current->name);
  return run_loop(sys);
}

static void *thread_main(void *arg) {
  troupe_system *sys = arg;
  run_loop(sys);
  return NULL;
}

int troupe_system_start(troupe_system *sys) {
  if (!sys) return troupe__err(TROUPE_EINVAL, "troupe_system_start: NULL");
  int expect = TROUPE__SYS_CREATED;
  if (!atomic_compare_exchange_strong(&sys->state, &expect,
                                      TROUPE__SYS_RUNNING))
    return troupe__err(TROUPE_ESTATE, "system %s already ran", sys->name);
  int rc = pthread_create(&sys->thread, NULL, thread_main, sys);
  if (rc != 0) {
    atomic_store(&sys->state, TROUPE__SYS_CREATED);
    return troupe__err(TROUPE_ENOMEM, "pthread_create: %s", strerror(rc));
  }
  sys->thread_started = true;
  return 0;
}

static void stop_on_loop(troupe_system *sys, void *arg) {
  (void)arg;
  troupe__cell_stop(sys->root);
}

int troupe_system_stop(troupe_system *sys) {
  if (!sys) return troupe__err(TROUPE_EINVAL, "troupe_system_stop: NULL");
  if (atomic_exchange(&sys->stop_requested, true)) return 0;
  int st = atomic_load(&sys->state);
  if (st == TROUPE__SYS_CREATED || st == TROUPE__SYS_TERMINATED) return 0;
  if (troupe__current == sys) {
    troupe__cell_stop(sys->root);
    return 0;
  }
  int rc = troupe__post(sys, stop_on_loop, NULL);
  return rc == TROUPE_ECLOSED ? 0 : rc;
}

int troupe_system_wait(troupe_system *sys, uint64_t timeout_ms) {
  if (!sys) return troupe__err(TROUPE_EINVAL, "troupe_system_wait: NULL");
  if (troupe__current == sys)
    return troupe__err(TROUPE_EWRONGTHREAD, "waiting on own thread");
  if (!sys->thread_started) {
    if (atomic_load(&sys->state) == TROUPE__SYS_TERMINATED)
      return sys->exit_code;
    return troupe__err(TROUPE_ESTATE, "system %s was not started",
                       sys->name);
  }
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)(timeout_ms / 1000);
  dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) { dl.tv_sec++; dl.tv_nsec -= 1000000000L; }
  pthread_mutex_lock(&sys->lock);
  while (atomic_load(&sys->state) != TROUPE__SYS_TERMINATED) {
    if (timeout_ms == 0) {
      pthread_cond_wait(&sys->cond, &sys->lock);
    } else if (pthread_cond_timedwait(&sys->cond, &sys->lock, &dl) ==
               ETIMEDOUT) {
      pthread_mutex_unlock(&sys->lock);
      return troupe__err(TROUPE_ETIMEDOUT, "system %s still running",
                         sys->name);
    }
  }
  pthread_mutex_unlock(&sys->lock);
  pthread_join(sys->thread, NULL);
  sys->thread_started = false;
  return sys->exit_code;
}

static void free_cells_unstarted(troupe_system *sys);

void troupe_system_destroy(troupe_system *sys) {
  if (!sys) return;
  int st = atomic_load(&sys->state);
  if (st == TROUPE__SYS_RUNNING || st == TROUPE__SYS_STOPPING ||
      sys->thread_started) {
    if (troupe__current == sys) return;  /* cannot destroy from inside */
    troupe_system_stop(sys);
    if (sys->thread_started) troupe_system_wait(sys, 0);
  }
  if (sys->loop_inited) {
    /* never ran: tear down without running actors' loops */
    free_cells_unstarted(sys);   /* ends in troupe__system_terminated */
    if (sys->node) troupe__node_close(sys->node);
    uv_walk(&sys->loop, walk_close, NULL);
    while (uv_run(&sys->loop, UV_RUN_NOWAIT)) {}
    uv_loop_close(&sys->loop);
    sys->loop_inited = false;
  }
  /* free what is left */
  troupe__env *e;
  troupe__cell *c;
  while ((c = sys->rq_head)) {   /* dead cells left on the run queue */
    sys->rq_head = c->rq_next;
    if (c->flags & TROUPE__CF_DEAD) free(c);
  }
  while ((c = sys->muted_head)) {
    sys->muted_head = c->rq_next;
    if (c->flags & TROUPE__CF_DEAD) free(c);
  }
  while ((e = sys->sq_head)) {
    sys->sq_head = e->next;
    troupe__env_release(NULL, e);
  }
  while ((e = sys->free_envs)) {
    sys->free_envs = e->next;
    free(e);
  }
  troupe__remote_free(sys);
  troupe__names_free(&sys->names);
  troupe__subs_free(sys);
  free(sys->slots);
  free(sys->asks);
  pthread_mutex_destroy(&sys->lock);
  pthread_cond_destroy(&sys->cond);
  free(sys);
}

/* A system destroyed without ever running still owns its guardians (and
 * any actors spawned before run); free them without running hooks other
 * than post_stop of initialised actors. */
void troupe__cell_free_now(troupe__cell *c);
static void free_cells_unstarted(troupe_system *sys) {
  troupe_system *prev = troupe__current;
  troupe__current = sys;
  if (sys->root) troupe__cell_free_now(sys->root);
  sys->root = sys->user = sys->sysg = NULL;
  troupe__current = prev;
}

/* ------------------------------------------------------------------ */
/* Queries */

const char *troupe_system_name(const troupe_system *sys) {
  return sys ? sys->name : "";
}

troupe_ref troupe_system_user(const troupe_system *sys) {
  if (!sys || !sys->user) return TROUPE_REF_NONE;
  return troupe__ref_of(sys->user);
}

uint64_t troupe_system_dead_letters(const troupe_system *sys) {
  return sys ? atomic_load(&((troupe_system *)sys)->dead_letters) : 0;
}

uint64_t troupe__rand(troupe_system *sys) {
  /* xorshift64* */
  uint64_t x = sys->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  sys->rng = x;
  return x * 0x2545F4914F6CDD1Dull;
}

uint64_t troupe__now_ms(troupe_system *sys) {
  return uv_now(&sys->loop);
}

/* ------------------------------------------------------------------ */
/* Spawning from any thread */

typedef struct spawn_call {
  const troupe_behavior *b;
  const troupe_spawn_opts *opts;
  troupe_ref ref;
  int rc;
  bool done;
} spawn_call;

static void spawn_on_loop(troupe_system *sys, void *arg) {
  spawn_call *sc = arg;
  troupe__cell *c = NULL;
  sc->rc = troupe__spawn(sys, sys->user, sc->b, sc->opts, 0, &c);
  if (sc->rc == 0) sc->ref = troupe__ref_of(c);
  pthread_mutex_lock(&sys->lock);
  sc->done = true;
  pthread_cond_broadcast(&sys->cond);
  pthread_mutex_unlock(&sys->lock);
}

int troupe_system_spawn(troupe_system *sys, const troupe_behavior *b,
                        const troupe_spawn_opts *opts, troupe_ref *out) {
  if (!sys || !b || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_system_spawn: NULL argument");
  *out = TROUPE_REF_NONE;
  int st = atomic_load(&sys->state);
  if (st == TROUPE__SYS_TERMINATED || atomic_load(&sys->stop_requested))
    return troupe__err(TROUPE_ECLOSED, "system %s is stopping", sys->name);
  if (troupe__current == sys || st == TROUPE__SYS_CREATED) {
    /* Before the system runs, the calling thread stands in for the loop
     * thread (init may tell, spawn, start timers). */
    troupe_system *prev = troupe__current;
    if (st == TROUPE__SYS_CREATED && prev && prev != sys)
      return troupe__err(TROUPE_EWRONGTHREAD,
                         "spawning into an unstarted system from the thread "
                         "of system %s", prev->name);
    troupe__current = sys;
    troupe__cell *c = NULL;
    int rc = troupe__spawn(sys, sys->user, b, opts, 0, &c);
    if (rc == 0) *out = troupe__ref_of(c);
    troupe__current = prev;
    return rc;
  }
  spawn_call sc = {.b = b, .opts = opts, .rc = 0, .done = false};
  int rc = troupe__post(sys, spawn_on_loop, &sc);
  if (rc < 0) return rc;
  pthread_mutex_lock(&sys->lock);
  while (!sc.done) pthread_cond_wait(&sys->cond, &sys->lock);
  pthread_mutex_unlock(&sys->lock);
  if (sc.rc == 0) *out = sc.ref;
  return sc.rc;
}
