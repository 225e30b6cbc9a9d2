/*
 * actor.c: actor cells: spawn, the slot table, stop, supervision.
 *
 * A cell and its state are one allocation. Cells are found by uid through
 * the system's slot table (slot << 32 | generation), so a ref never
 * dangles: a stale generation simply finds nothing. Rarely used parts
 * (watchers, timers, stash, supervision counters) live in a lazily
 * allocated extension, which keeps an idle actor small.
 *
 * Stopping is asynchronous, as in Akka: a stop request marks the cell,
 * stops its children, and the cell is finalised (post_stop, Terminated to
 * watchers, slot released) when its last child has reported back. A restart
 * waits for the children the same way.
 */
#include "core/internal.h"

#include <stdio.h>

/* ------------------------------------------------------------------ */
/* Slots */

static int slot_alloc(troupe_system *sys, troupe__cell *c, uint64_t *uid) {
  uint32_t i = sys->free_slot;
  if (i != UINT32_MAX) {
    sys->free_slot = sys->slots[i].next_free;
  } else {
    if (sys->nslots == sys->slots_cap) {
      uint32_t ncap = sys->slots_cap ? sys->slots_cap * 2 : 256;
      if (ncap >= TROUPE__PROMISE_BIT)
        return troupe__err(TROUPE_ENOMEM, "too many actors");
      troupe__slot *ns = realloc(sys->slots, ncap * sizeof *ns);
      if (!ns) return troupe__err(TROUPE_ENOMEM, "slot table");
      sys->slots = ns;
      sys->slots_cap = ncap;
    }
    i = sys->nslots++;
    sys->slots[i].gen = 0;
  }
  troupe__slot *s = &sys->slots[i];
  s->gen++;
  if (s->gen == 0) s->gen = 1;
  s->cell = c;
  s->next_free = UINT32_MAX;
  /* slot numbers start at 1 so that uid 0 is never used */
  *uid = TROUPE__UID(i + 1, s->gen);
  sys->live_cells++;
  return 0;
}

static void slot_free(troupe_system *sys, uint64_t uid) {
  uint32_t i = TROUPE__UID_SLOT(uid) - 1;
  troupe__slot *s = &sys->slots[i];
  s->cell = NULL;
  s->next_free = sys->free_slot;
  sys->free_slot = i;
  sys->live_cells--;
}

troupe__cell *troupe__cell_get(troupe_system *sys, uint64_t uid) {
  uint32_t slot = TROUPE__UID_SLOT(uid);
  if (TROUPE_UNLIKELY(slot == 0 || slot > sys->nslots)) return NULL;
  troupe__slot *s = &sys->slots[slot - 1];
  if (TROUPE_UNLIKELY(s->gen != TROUPE__UID_GEN(uid))) return NULL;
  return s->cell;
}

troupe__cell_ext *troupe__ext(troupe__cell *c) {
  if (!c->ext) c->ext = calloc(1, sizeof *c->ext);
  return c->ext;
}

/* ------------------------------------------------------------------ */
/* uid sets */

int troupe__uidset_add(troupe__uidset *s, troupe_ref r) {
  if (troupe__uidset_has(s, r)) return 0;
  if (s->len == s->cap) {
    uint32_t ncap = s->cap ? s->cap * 2 : 4;
    troupe_ref *n = realloc(s->items, ncap * sizeof *n);
    if (!n) return TROUPE_ENOMEM;
    s->items = n;
    s->cap = ncap;
  }
  s->items[s->len++] = r;
  return 1;
}

bool troupe__uidset_has(const troupe__uidset *s, troupe_ref r) {
  for (uint32_t i = 0; i < s->len; i++)
    if (troupe_ref_eq(s->items[i], r)) return true;
  return false;
}

bool troupe__uidset_del(troupe__uidset *s, troupe_ref r) {
  for (uint32_t i = 0; i < s->len; i++)
    if (troupe_ref_eq(s->items[i], r)) {
      s->items[i] = s->items[--s->len];
      return true;
    }
  return false;
}

void troupe__uidset_free(troupe__uidset *s) {
  free(s->items);
  s->items = NULL;
  s->len = s->cap = 0;
}

/* ------------------------------------------------------------------ */
/* Names */

bool troupe__valid_actor_name(const char *n, size_t len) {
  if (len == 0 || len > 255 || n[0] == '$') return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)n[i];
    if (ch <= ' ' || ch == '/' || ch == '#' || ch == '?' || ch == '*' ||
        ch == '@' || ch == ':' || ch >= 0x7f)
      return false;
  }
  return true;
}

int troupe__cell_name(const troupe__cell *c, char *buf, size_t size) {
  int n;
  if (c->name) n = snprintf(buf, size, "%s", c->name);
  else n = snprintf(buf, size, "$%llx", (unsigned long long)c->uid);
  return n;
}

/* ------------------------------------------------------------------ */
/* Spawn */

static void cell_init(troupe__cell *c);

int troupe__spawn(troupe_system *sys, troupe__cell *parent,
                  const troupe_behavior *b, const troupe_spawn_opts *opts,
                  uint32_t extra_flags, troupe__cell **out) {
  if (!b || !b->receive)
    return troupe__err(TROUPE_EINVAL, "spawn: behaviour without receive");
  if (b->state_size > (size_t)1 << 30)
    return troupe__err(TROUPE_EINVAL, "spawn: state_size too large");
  if (b->mailbox.overflow > TROUPE_OVERFLOW_FAIL)
    return troupe__err(TROUPE_EINVAL, "spawn: bad overflow policy");
  if (parent && (parent->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD)))
    return troupe__err(TROUPE_ECLOSED, "spawn: parent is stopping");
  if (!parent && !(extra_flags & TROUPE__CF_GUARDIAN))
    return troupe__err(TROUPE_ECLOSED, "spawn: system is stopping");
  const char *name = opts ? opts->name : NULL;
  size_t nlen = name ? strlen(name) : 0;
  if (name && !(extra_flags & TROUPE__CF_GUARDIAN) &&
      !troupe__valid_actor_name(name, nlen))
    return troupe__err(TROUPE_EINVAL, "spawn: invalid actor name \"%s\"",
                       name);
  if (name && parent && troupe__names_get(&sys->names, parent, name, nlen))
    return troupe__err(TROUPE_EEXIST, "spawn: name \"%s\" is taken", name);

  size_t head = (sizeof(troupe__cell) + 15) & ~(size_t)15;
  size_t total = head + ((b->state_size + 15) & ~(size_t)15);
  troupe__cell *c = malloc(total + (name ? nlen + 1 : 0));
  if (!c) return troupe__err(TROUPE_ENOMEM, "spawn");
  memset(c, 0, sizeof *c);
  c->state = (char *)c + head;
  if (b->state_size) memset(c->state, 0, b->state_size);
  c->sys = sys;
  c->beh = b;
  c->receive = b->receive;
  c->parent = parent;
  c->flags = extra_flags;
  if (name) {
    c->name = (char *)c + total;
    memcpy(c->name, name, nlen + 1);
    c->name_len = (uint32_t)nlen;
  }
  int rc = slot_alloc(sys, c, &c->uid);
  if (rc < 0) {
    free(c);
    return rc;
  }
  if (opts && opts->arg) {
    troupe__cell_ext *x = troupe__ext(c);
    if (!x) goto nomem;
    if (opts->arg_size) {
      x->arg_copy = malloc(opts->arg_size);
      if (!x->arg_copy) goto nomem;
      memcpy(x->arg_copy, opts->arg, opts->arg_size);
      x->arg = x->arg_copy;
    } else {
      x->arg = opts->arg;
    }
  }
  if (name && parent && troupe__names_put(&sys->names, c) < 0) goto nomem;
  if (parent) {
    c->next_sib = parent->first_child;
    if (parent->first_child) parent->first_child->prev_sib = c;
    parent->first_child = c;
    parent->nchildren++;
  }
  *out = c;
  cell_init(c);
  return 0;
nomem:
  slot_free(sys, c->uid);
  if (c->ext) {
    free(c->ext->arg_copy);
    free(c->ext);
  }
  free(c);
  return troupe__err(TROUPE_ENOMEM, "spawn");
}

/* Run init; a failure suspends the cell and goes to the supervisor. */
static void cell_init(troupe__cell *c) {
  troupe_system *sys = c->sys;
  if (!c->beh->init) {
    c->flags |= TROUPE__CF_INITED;
    return;
  }
  troupe__cell *saved_cell = sys->cur_cell;
  troupe__env *saved_env = sys->cur_env;
  bool saved_stashed = sys->cur_stashed;
  sys->cur_cell = c;
  sys->cur_env = NULL;
  const void *arg = c->ext ? c->ext->arg : NULL;
  int rc = c->beh->init((troupe_ctx *)c, c->state, arg);
  sys->cur_cell = saved_cell;
  sys->cur_env = saved_env;
  sys->cur_stashed = saved_stashed;
  if (rc < 0) {
    c->flags |= TROUPE__CF_INIT_FAILED;
    troupe__fail(c, rc);
  } else {
    c->flags |= TROUPE__CF_INITED;
    c->flags &= ~TROUPE__CF_INIT_FAILED;
  }
}

int troupe_spawn(troupe_ctx *ctx, const troupe_behavior *b,
                 const troupe_spawn_opts *opts, troupe_ref *out) {
  troupe__cell *p = (troupe__cell *)ctx;
  if (!p || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_spawn: NULL argument");
  *out = TROUPE_REF_NONE;
  troupe__cell *c = NULL;
  int rc = troupe__spawn(p->sys, p, b, opts, 0, &c);
  if (rc == 0) *out = troupe__ref_of(c);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Stop and finalisation */

static void finalize(troupe__cell *c);

static void drain_to_dead_letters(troupe__cell *c, troupe__env **head,
                                  troupe__env **tail) {
  troupe__env *e = *head;
  *head = NULL;
  if (tail) *tail = NULL;
  while (e) {
    troupe__env *n = e->next;
    e->next = NULL;
    if (e->kind == TROUPE__ENV_USER)
      troupe__dead_letter(c->sys, troupe__ref_of(c), e, TROUPE_ESTOPPED);
    else
      troupe__env_release(c->sys, e);
    e = n;
  }
}

static void stop_children(troupe__cell *c) {
  for (troupe__cell *ch = c->first_child; ch; ch = ch->next_sib)
    troupe__cell_stop(ch);
}

/* Begin stopping c (on the loop). */
static void begin_stop(troupe__cell *c) {
  if (c->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD)) return;
  c->flags |= TROUPE__CF_STOPPING;
  c->flags &= ~TROUPE__CF_RESTARTING;
  if (c->ext && c->ext->backoff) {
    uv_close((uv_handle_t *)c->ext->backoff, (uv_close_cb)free);
    c->ext->backoff = NULL;
  }
  troupe__timers_cancel_all(c);
  if (c->nchildren == 0) finalize(c);
  else stop_children(c);
}

void troupe__cell_stop(troupe__cell *c) {
  if (c->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD)) return;
  troupe__sys_send(c->sys, c->uid, TROUPE__SYS_STOP, 0, 0);
}

int troupe_stop(troupe_ctx *ctx, troupe_ref target) {
  troupe__cell *me = (troupe__cell *)ctx;
  if (!me) return troupe__err(TROUPE_EINVAL, "troupe_stop: NULL ctx");
  troupe_system *sys = me->sys;
  if (target.node != sys->node) {
    /* another system: a poison pill is the portable way */
    return troupe_tell(target, &TROUPE_T_POISON_PILL, NULL, troupe__ref_of(me));
  }
  troupe__cell *c = troupe__cell_get(sys, target.uid);
  if (!c) return 0;
  if (c->flags & TROUPE__CF_GUARDIAN)
    return troupe__err(TROUPE_EINVAL, "troupe_stop: cannot stop a guardian");
  troupe__cell_stop(c);
  return 0;
}

void troupe__system_terminated(troupe_system *sys);

static void finalize(troupe__cell *c) {
  troupe_system *sys = c->sys;
  c->flags |= TROUPE__CF_DEAD;
  if ((c->flags & TROUPE__CF_INITED) && c->beh->post_stop) {
    troupe__cell *sc = sys->cur_cell;
    troupe__env *se = sys->cur_env;
    sys->cur_cell = c;
    sys->cur_env = NULL;
    c->beh->post_stop((troupe_ctx *)c, c->state);
    sys->cur_cell = sc;
    sys->cur_env = se;
  }
  troupe__timers_cancel_all(c);
  drain_to_dead_letters(c, &c->mb_head, &c->mb_tail);
  c->mb_len = 0;
  if (c->ext) {
    drain_to_dead_letters(c, &c->ext->stash_head, &c->ext->stash_tail);
    c->ext->stash_len = 0;
  }
  troupe__watch_notify(c);
  troupe__subs_drop_cell(c);
  if (c->flags & TROUPE__CF_ROUTER) troupe__router_free(c);
  troupe__cell *p = c->parent;
  if (c->name && p) troupe__names_del(&sys->names, c);
  if (p) {
    if (c->prev_sib) c->prev_sib->next_sib = c->next_sib;
    else p->first_child = c->next_sib;
    if (c->next_sib) c->next_sib->prev_sib = c->prev_sib;
    p->nchildren--;
    troupe__sys_send(sys, p->uid, TROUPE__SYS_CHILD_DONE, c->uid, 0);
  }
  uint64_t uid = c->uid;
  bool was_root = (c == sys->root);
  if (c == sys->user) sys->user = NULL;
  if (c == sys->sysg) sys->sysg = NULL;
  if (was_root) sys->root = NULL;
  if (c->ext) {
    troupe__uidset_free(&c->ext->watchers);
    troupe__uidset_free(&c->ext->watching);
    free(c->ext->arg_copy);
    free(c->ext->subs);
    free(c->ext);
  }
  slot_free(sys, uid);
  /* a cell still on the run queue is freed by the dispatcher */
  if (!(c->flags & TROUPE__CF_SCHEDULED)) free(c);
  if (was_root) troupe__system_terminated(sys);
}

/* Free a cell tree of a system that never ran. */
void troupe__cell_free_now(troupe__cell *c);
void troupe__cell_free_now(troupe__cell *c) {
  while (c->first_child) troupe__cell_free_now(c->first_child);
  c->flags |= TROUPE__CF_STOPPING;
  finalize(c);
}

/* ------------------------------------------------------------------ */
/* Supervision */

static void restart_now(troupe__cell *c, int error);

void troupe__fail(troupe__cell *c, int error) {
  troupe_system *sys = c->sys;
  if (c->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD)) return;
  c->flags |= TROUPE__CF_SUSPENDED;
  if (c->parent) {
    troupe__sys_send(sys, c->parent->uid, TROUPE__SYS_FAILED, c->uid, error);
  } else {
    troupe__log(sys, TROUPE_LOG_ERROR, "/", "root guardian failed: %s",
                troupe_strerror(error));
    sys->exit_code = error;
    troupe__cell_stop(c);
  }
}

static const troupe_supervisor restart_always = {
  .default_directive = TROUPE_RESTART,
};

static const troupe_supervisor *strategy_of(troupe__cell *p) {
  troupe_system *sys = p->sys;
  if (p == sys->user) return &sys->user_sup;
  if (p->beh->supervisor) return p->beh->supervisor;
  return &restart_always;
}

static void backoff_fire(uv_timer_t *t) {
  troupe__cell *c = t->data;
  c->ext->backoff = NULL;
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
  c->flags &= ~TROUPE__CF_BACKOFF;
  restart_now(c, c->ext->pending_error);
}

static void apply_restart(troupe__cell *child, const troupe_supervisor *s,
                          int error) {
  troupe_system *sys = child->sys;
  troupe__cell_ext *x = troupe__ext(child);
  if (!x) {
    troupe__cell_stop(child);
    return;
  }
  uint64_t now = troupe__now_ms(sys);
  if (s->window_ms && now - x->window_start_ms > s->window_ms) {
    x->window_start_ms = now;
    x->restarts_in_window = 0;
    x->consecutive = 0;
  } else if (!x->window_start_ms) {
    x->window_start_ms = now;
  }
  if (s->max_restarts && x->restarts_in_window >= s->max_restarts) {
    char nb[96];
    troupe__path_of(child, nb, sizeof nb);
    troupe__log(sys, TROUPE_LOG_WARN, nb,
                "restart budget exhausted (%u in %llu ms): stopping; last "
                "error: %s", s->max_restarts,
                (unsigned long long)s->window_ms, troupe_strerror(error));
    troupe__cell_stop(child);
    return;
  }
  x->restarts_in_window++;
  uint64_t delay = 0;
  if (s->backoff_min_ms) {
    uint32_t k = x->consecutive < 30 ? x->consecutive : 30;
    delay = s->backoff_min_ms << k;
    if (s->backoff_max_ms && delay > s->backoff_max_ms)
      delay = s->backoff_max_ms;
    if (s->backoff_jitter > 0) {
      double r = (double)(troupe__rand(sys) >> 11) / (double)(1ull << 53);
      delay += (uint64_t)((double)delay * s->backoff_jitter * r);
    }
  }
  x->consecutive++;
  x->pending_error = error;
  if (delay == 0) {
    restart_now(child, error);
    return;
  }
  uv_timer_t *t = malloc(sizeof *t);
  if (!t) {
    restart_now(child, error);
    return;
  }
  uv_timer_init(&sys->loop, t);
  t->data = child;
  x->backoff = t;
  child->flags |= TROUPE__CF_BACKOFF;
  uv_timer_start(t, backoff_fire, delay, 0);
}

static void apply_directive(troupe__cell *child, const troupe_supervisor *s,
                            troupe_directive d, int error) {
  switch (d) {
    case TROUPE_RESUME:
      child->flags &= ~TROUPE__CF_SUSPENDED;
      if (child->flags & TROUPE__CF_INIT_FAILED) {
        /* nothing to resume into: an uninitialised actor is restarted */
        apply_restart(child, s, error);
        return;
      }
      if (child->mb_head) troupe__schedule(child);
      break;
    case TROUPE_RESTART:
      apply_restart(child, s, error);
      break;
    case TROUPE_STOP:
    default:
      troupe__cell_stop(child);
      break;
  }
}

static void root_policy(troupe__cell *child, int error) {
  troupe_system *sys = child->sys;
  char nb[96];
  troupe__path_of(child, nb, sizeof nb);
  switch (sys->root_policy) {
    case TROUPE_ROOT_STOP_ACTOR:
      troupe__log(sys, TROUPE_LOG_ERROR, nb,
                  "failure escalated to the root: stopping the actor (%s)",
                  troupe_strerror(error));
      troupe__cell_stop(child);
      break;
    case TROUPE_ROOT_RESTART_ACTOR:
      troupe__log(sys, TROUPE_LOG_ERROR, nb,
                  "failure escalated to the root: restarting the actor (%s)",
                  troupe_strerror(error));
      apply_restart(child, &restart_always, error);
      break;
    case TROUPE_ROOT_STOP_SYSTEM:
    default:
      troupe__log(sys, TROUPE_LOG_ERROR, nb,
                  "failure escalated to the root guardian: stopping system "
                  "%s (%s: %s)", sys->name, troupe_err_name(error),
                  troupe_strerror(error));
      sys->exit_code = error;
      troupe_system_stop(sys);
      break;
  }
}

static void handle_failed(troupe__cell *p, uint64_t child_uid, int error) {
  troupe_system *sys = p->sys;
  troupe__cell *child = troupe__cell_get(sys, child_uid);
  if (!child || child->parent != p ||
      (child->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD)))
    return;
  if (p->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD)) return;
  if (p == sys->root) {
    /* a guardian failed: nothing above it */
    sys->exit_code = error;
    troupe_system_stop(sys);
    return;
  }
  const troupe_supervisor *s = strategy_of(p);
  troupe_directive d;
  if (s->decide) {
    d = s->decide(s->data, troupe__ref_of(child), error);
  } else if (child->flags & TROUPE__CF_INIT_FAILED) {
    d = TROUPE_STOP;   /* a failing init would loop: stop, as Akka does */
  } else {
    d = s->default_directive ? s->default_directive : TROUPE_RESTART;
  }
  if (d < TROUPE_RESUME || d > TROUPE_ESCALATE) d = TROUPE_STOP;
  {
    char nb[96];
    troupe__path_of(child, nb, sizeof nb);
    troupe__log(sys, TROUPE_LOG_DEBUG, nb, "failed (%s): %s",
                troupe_strerror(error),
                d == TROUPE_RESUME ? "resume" : d == TROUPE_RESTART ?
                "restart" : d == TROUPE_STOP ? "stop" : "escalate");
  }
  if (d == TROUPE_ESCALATE) {
    if (p == sys->user) {
      root_policy(child, error);
      return;
    }
    troupe__fail(p, error);
    return;
  }
  if (s->all_for_one && d != TROUPE_RESUME) {
    for (troupe__cell *sib = p->first_child; sib; sib = sib->next_sib) {
      if (sib == child) continue;
      if (sib->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD)) continue;
      sib->flags |= TROUPE__CF_SUSPENDED;
      apply_directive(sib, s, d, error);
    }
  }
  apply_directive(child, s, d, error);
}

/* Complete a restart once the children are gone. */
static void finish_restart(troupe__cell *c, int error) {
  troupe_system *sys = c->sys;
  c->flags &= ~(TROUPE__CF_RESTARTING | TROUPE__CF_SUSPENDED);
  if (c->beh->state_size) memset(c->state, 0, c->beh->state_size);
  c->receive = c->beh->receive;
  c->flags &= ~TROUPE__CF_INITED;
  cell_init(c);
  if ((c->flags & TROUPE__CF_INITED) && c->beh->post_restart) {
    troupe__cell *sc = sys->cur_cell;
    troupe__env *se = sys->cur_env;
    sys->cur_cell = c;
    sys->cur_env = NULL;
    c->beh->post_restart((troupe_ctx *)c, c->state, error);
    sys->cur_cell = sc;
    sys->cur_env = se;
  }
  if (c->mb_head && !(c->flags & TROUPE__CF_SUSPENDED)) troupe__schedule(c);
}

static void restart_now(troupe__cell *c, int error) {
  troupe_system *sys = c->sys;
  if (c->flags & (TROUPE__CF_STOPPING | TROUPE__CF_DEAD)) return;
  if ((c->flags & TROUPE__CF_INITED) && c->beh->pre_restart) {
    troupe__cell *sc = sys->cur_cell;
    troupe__env *se = sys->cur_env;
    sys->cur_cell = c;
    sys->cur_env = NULL;
    c->beh->pre_restart((troupe_ctx *)c, c->state, error);
    sys->cur_cell = sc;
    sys->cur_env = se;
  }
  troupe__timers_cancel_all(c);
  /* stashed messages go back to the mailbox, ahead of the rest */
  if (c->ext && c->ext->stash_head) {
    c->ext->stash_tail->next = c->mb_head;
    if (!c->mb_head) c->mb_tail = c->ext->stash_tail;
    c->mb_head = c->ext->stash_head;
    c->mb_len += c->ext->stash_len;
    c->ext->stash_head = c->ext->stash_tail = NULL;
    c->ext->stash_len = 0;
  }
  c->flags |= TROUPE__CF_RESTARTING;
  if (c->nchildren) {
    troupe__ext(c)->pending_error = error;
    stop_children(c);
    return;
  }
  finish_restart(c, error);
}

static void handle_child_done(troupe__cell *p, uint64_t child_uid) {
  if (p->flags & TROUPE__CF_ROUTER) troupe__router_child_done(p, child_uid);
  if (p->flags & TROUPE__CF_DEAD) return;
  if (p->nchildren == 0) {
    if (p->flags & TROUPE__CF_STOPPING) {
      finalize(p);
      return;
    }
    if (p->flags & TROUPE__CF_RESTARTING)
      finish_restart(p, p->ext ? p->ext->pending_error : 0);
  }
  /* stopping /user and /system in order: when /user is gone, stop /system */
}

void troupe__handle_sys(troupe_system *sys, troupe__env *e) {
  troupe__cell *c = troupe__cell_get(sys, e->target);
  uint32_t kind = e->kind;
  uint64_t aux64 = e->aux64;
  int32_t aux = e->aux;
  troupe__env_release(sys, e);
  if (!c || (c->flags & TROUPE__CF_DEAD)) return;
  switch (kind) {
    case TROUPE__SYS_STOP:
      if (c == sys->root) {
        /* stop user actors first, then system actors, then the root */
        atomic_store(&sys->stop_requested, true);
        c->flags |= TROUPE__CF_STOPPING;
        if (sys->user) troupe__cell_stop(sys->user);
        else if (sys->sysg) troupe__cell_stop(sys->sysg);
        else finalize(c);
        return;
      }
      begin_stop(c);
      break;
    case TROUPE__SYS_FAILED:
      handle_failed(c, aux64, aux);
      break;
    case TROUPE__SYS_CHILD_DONE:
      if (c == sys->root) {
        if (sys->user) break;
        if (sys->sysg) troupe__cell_stop(sys->sysg);
        else finalize(c);
        break;
      }
      handle_child_done(c, aux64);
      break;
    case TROUPE__SYS_RESTART:
      restart_now(c, aux);
      break;
    default:
      break;
  }
}

/* ------------------------------------------------------------------ */
/* Context accessors */

troupe_ref troupe_self(const troupe_ctx *ctx) {
  if (!ctx) return TROUPE_REF_NONE;
  return troupe__ref_of((const troupe__cell *)ctx);
}

troupe_ref troupe_parent(const troupe_ctx *ctx) {
  const troupe__cell *c = (const troupe__cell *)ctx;
  if (!c || !c->parent) return TROUPE_REF_NONE;
  return troupe__ref_of(c->parent);
}

troupe_ref troupe_sender(const troupe_ctx *ctx) {
  const troupe__cell *c = (const troupe__cell *)ctx;
  if (!c || c->sys->cur_cell != c || !c->sys->cur_env) return TROUPE_REF_NONE;
  return c->sys->cur_env->sender;
}

troupe_system *troupe_ctx_system(const troupe_ctx *ctx) {
  return ctx ? ((const troupe__cell *)ctx)->sys : NULL;
}

const char *troupe_ctx_name(const troupe_ctx *ctx) {
  const troupe__cell *c = (const troupe__cell *)ctx;
  if (!c) return "";
  if (c->name) return c->name;
  static _Thread_local char buf[24];
  troupe__cell_name(c, buf, sizeof buf);
  return buf;
}

int troupe_child(troupe_ctx *ctx, const char *name, troupe_ref *out) {
  troupe__cell *p = (troupe__cell *)ctx;
  if (!p || !name || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_child: NULL argument");
  *out = TROUPE_REF_NONE;
  troupe__cell *c = NULL;
  if (name[0] == '$') {
    unsigned long long uid = strtoull(name + 1, NULL, 16);
    c = troupe__cell_get(p->sys, uid);
    if (c && c->parent != p) c = NULL;
  } else {
    c = troupe__names_get(&p->sys->names, p, name, strlen(name));
  }
  if (!c || (c->flags & (TROUPE__CF_DEAD | TROUPE__CF_STOPPING)))
    return troupe__err(TROUPE_ENOENT, "no child \"%s\"", name);
  *out = troupe__ref_of(c);
  return 0;
}

void troupe_children(troupe_ctx *ctx, int (*fn)(void *, troupe_ref),
                     void *data) {
  troupe__cell *p = (troupe__cell *)ctx;
  if (!p || !fn) return;
  for (troupe__cell *c = p->first_child; c;) {
    troupe__cell *next = c->next_sib;
    if (!(c->flags & (TROUPE__CF_DEAD | TROUPE__CF_STOPPING)) &&
        fn(data, troupe__ref_of(c)))
      return;
    c = next;
  }
}

void troupe_become(troupe_ctx *ctx, troupe_receive_fn receive) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c) return;
  c->receive = receive ? receive : c->beh->receive;
}

int troupe_send(troupe_ctx *ctx, troupe_ref to, const troupe_type *type,
                const void *value) {
  if (!ctx) return troupe__err(TROUPE_EINVAL, "troupe_send: NULL ctx");
  return troupe_tell(to, type, value, troupe__ref_of((troupe__cell *)ctx));
}

int troupe_reply(troupe_ctx *ctx, const troupe_type *type, const void *value) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c) return troupe__err(TROUPE_EINVAL, "troupe_reply: NULL ctx");
  troupe_system *sys = c->sys;
  troupe__env *cur = sys->cur_cell == c ? sys->cur_env : NULL;
  if (!cur) return troupe__err(TROUPE_ESTATE, "troupe_reply outside receive");
  return troupe_tell(cur->sender, type, value, troupe__ref_of(c));
}

int troupe_forward(troupe_ctx *ctx, troupe_ref to) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c) return troupe__err(TROUPE_EINVAL, "troupe_forward: NULL ctx");
  troupe_system *sys = c->sys;
  troupe__env *cur = sys->cur_cell == c ? sys->cur_env : NULL;
  if (!cur || sys->cur_stashed)
    return troupe__err(TROUPE_ESTATE, "troupe_forward outside receive");
  return troupe_tell(to, cur->type, cur->data, cur->sender);
}

/* ------------------------------------------------------------------ */
/* Stash */

int troupe_stash(troupe_ctx *ctx) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c) return troupe__err(TROUPE_EINVAL, "troupe_stash: NULL ctx");
  troupe_system *sys = c->sys;
  if (sys->cur_cell != c || !sys->cur_env || sys->cur_stashed)
    return troupe__err(TROUPE_ESTATE, "troupe_stash outside receive");
  troupe__cell_ext *x = troupe__ext(c);
  if (!x) return troupe__err(TROUPE_ENOMEM, "stash");
  uint32_t cap = c->beh->stash_capacity ? c->beh->stash_capacity
                                        : TROUPE_DEFAULT_STASH;
  if (x->stash_len >= cap)
    return troupe__err(TROUPE_ESTASHFULL, "stash holds %u messages", cap);
  troupe__env *e = sys->cur_env;
  e->next = NULL;
  if (x->stash_tail) x->stash_tail->next = e;
  else x->stash_head = e;
  x->stash_tail = e;
  x->stash_len++;
  sys->cur_stashed = true;
  return 0;
}

size_t troupe_unstash_all(troupe_ctx *ctx) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c || !c->ext || !c->ext->stash_head) return 0;
  troupe__cell_ext *x = c->ext;
  size_t n = x->stash_len;
  x->stash_tail->next = c->mb_head;
  if (!c->mb_head) c->mb_tail = x->stash_tail;
  c->mb_head = x->stash_head;
  c->mb_len += x->stash_len;
  x->stash_head = x->stash_tail = NULL;
  x->stash_len = 0;
  if (!(c->flags & TROUPE__CF_SCHEDULED)) troupe__schedule(c);
  return n;
}

size_t troupe_unstash(troupe_ctx *ctx, size_t max) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c || !c->ext || !c->ext->stash_head || max == 0) return 0;
  troupe__cell_ext *x = c->ext;
  if (max >= x->stash_len) return troupe_unstash_all(ctx);
  /* detach the first max messages */
  troupe__env *first = x->stash_head, *last = first;
  for (size_t i = 1; i < max; i++) last = last->next;
  x->stash_head = last->next;
  x->stash_len -= (uint32_t)max;
  last->next = c->mb_head;
  if (!c->mb_head) c->mb_tail = last;
  c->mb_head = first;
  c->mb_len += (uint32_t)max;
  if (!(c->flags & TROUPE__CF_SCHEDULED)) troupe__schedule(c);
  return max;
}

size_t troupe_stash_size(const troupe_ctx *ctx) {
  const troupe__cell *c = (const troupe__cell *)ctx;
  return (c && c->ext) ? c->ext->stash_len : 0;
}
