/*
 * watch.c: death watch.
 *
 * The watched cell keeps the set of its watchers; the watcher keeps the set
 * of what it watches. When a cell stops, each watcher is told a
 * TROUPE_T_TERMINATED message (as an ordinary message, so it arrives after
 * everything the dead actor sent before it died). The watcher's "watching"
 * set is the filter that makes delivery exactly-once: a Terminated for a ref
 * no longer in the set (unwatched, or already delivered) is dropped.
 */
#include "core/internal.h"

static int send_terminated(troupe_system *sys, troupe_ref watcher,
                           troupe_ref actor, bool confirmed, bool node_lost) {
  troupe_terminated t = {actor, confirmed, node_lost};
  return troupe_tell(watcher, &TROUPE_T_TERMINATED, &t, actor);
  (void)sys;
}

/* The empty value of control envelopes (a type so that byte transports
 * can frame them like any other envelope). */
troupe_type TROUPE__T_CONTROL = {
  .manifest = "troupe.Control", .version = 1, .size = 0,
};

/* Send a watch/unwatch for `target` on behalf of `watcher` to target's
 * node. TROUPE_ECLOSED when the node is closed or unknown. */
static int send_control(troupe_system *sys, uint32_t kind, troupe_ref target,
                        troupe_ref watcher) {
  troupe__node *n = troupe__node_get(target.node);
  if (!n || (!atomic_load(&n->sys) && !atomic_load(&n->remote)))
    return TROUPE_ECLOSED;
  troupe__env *e = troupe__env_alloc(sys);
  if (!e) return troupe__err(TROUPE_ENOMEM, "watch");
  int rc = troupe__env_set(e, &TROUPE__T_CONTROL, NULL);
  if (rc < 0) {
    e->type = NULL;
    troupe__env_release(sys, e);
    return rc;
  }
  e->kind = kind;
  e->target = target.uid;
  e->tnode = target.node;
  e->sender = watcher;
  e->ask_id = 0;
  e->aux64 = 0;
  return troupe__send_node(sys, n, target.node, e);
}

void troupe__control(troupe_system *sys, troupe__env *e) {
  troupe_ref watcher = e->sender;
  troupe_ref target = {sys->node, e->target};
  uint32_t kind = e->kind;
  troupe__env_release(sys, e);
  troupe__cell *t = troupe__cell_get(sys, target.uid);
  bool alive = t && !(t->flags & TROUPE__CF_DEAD);
  switch (kind) {
    case TROUPE__ENV_RWATCH:
      if (!alive) {
        send_terminated(sys, watcher, target, false, false);
        return;
      }
      {
        troupe__cell_ext *tx = troupe__ext(t);
        if (!tx || troupe__uidset_add(&tx->watchers, watcher) < 0) {
          troupe__log(sys, TROUPE_LOG_ERROR, "watch",
                      "no memory for a remote watcher");
          send_terminated(sys, watcher, target, false, false);
        }
      }
      return;
    case TROUPE__ENV_RUNWATCH:
      if (alive && t->ext) troupe__uidset_del(&t->ext->watchers, watcher);
      return;
    default:
      troupe__log(sys, TROUPE_LOG_WARN, "remote",
                  "unknown control message kind %u", kind);
      return;
  }
}

void troupe__node_lost(troupe_system *sys, uint64_t node) {
  for (uint32_t i = 0; i < sys->nslots; i++) {
    troupe__cell *c = sys->slots[i].cell;
    if (!c || !c->ext || (c->flags & TROUPE__CF_DEAD)) continue;
    troupe_ref self = troupe__ref_of(c);
    troupe__uidset *g = &c->ext->watching;
    for (uint32_t k = 0; k < g->len; k++)
      if (g->items[k].node == node)
        send_terminated(sys, self, g->items[k], false, true);
    /* watchers on the lost node will never hear from us again */
    troupe__uidset *w = &c->ext->watchers;
    for (uint32_t k = 0; k < w->len;)
      if (w->items[k].node == node) troupe__uidset_del(w, w->items[k]);
      else k++;
  }
}

int troupe_watch(troupe_ctx *ctx, troupe_ref target) {
  troupe__cell *me = (troupe__cell *)ctx;
  if (!me || troupe_ref_is_none(target))
    return troupe__err(TROUPE_EINVAL, "troupe_watch: NULL ctx or no target");
  if (troupe_ref_eq(target, troupe__ref_of(me)))
    return troupe__err(TROUPE_EINVAL, "troupe_watch: an actor cannot watch "
                                      "itself");
  troupe_system *sys = me->sys;
  troupe__cell_ext *x = troupe__ext(me);
  if (!x) return troupe__err(TROUPE_ENOMEM, "watch");
  int added = troupe__uidset_add(&x->watching, target);
  if (added < 0) return troupe__err(TROUPE_ENOMEM, "watch");
  if (added == 0) return 0;  /* already watching */
  if (target.node != sys->node) {
    /* Another system of this process or another node: ask its system to
     * add us to the target's watchers. A ref to a closed or unknown node is
     * dead now. */
    int rc = send_control(sys, TROUPE__ENV_RWATCH, target, troupe__ref_of(me));
    if (rc == TROUPE_ECLOSED)
      return send_terminated(sys, troupe__ref_of(me), target, false, false);
    if (rc < 0) troupe__uidset_del(&x->watching, target);
    return rc;
  }
  troupe__cell *t = troupe__cell_get(sys, target.uid);
  if (!t || (t->flags & TROUPE__CF_DEAD))
    return send_terminated(sys, troupe__ref_of(me), target, false, false);
  troupe__cell_ext *tx = troupe__ext(t);
  if (!tx || troupe__uidset_add(&tx->watchers, troupe__ref_of(me)) < 0) {
    troupe__uidset_del(&x->watching, target);
    return troupe__err(TROUPE_ENOMEM, "watch");
  }
  return 0;
}

int troupe_unwatch(troupe_ctx *ctx, troupe_ref target) {
  troupe__cell *me = (troupe__cell *)ctx;
  if (!me) return troupe__err(TROUPE_EINVAL, "troupe_unwatch: NULL ctx");
  if (!me->ext || !troupe__uidset_del(&me->ext->watching, target)) return 0;
  if (target.node == me->sys->node) {
    troupe__cell *t = troupe__cell_get(me->sys, target.uid);
    if (t && t->ext) troupe__uidset_del(&t->ext->watchers, troupe__ref_of(me));
  } else {
    (void)send_control(me->sys, TROUPE__ENV_RUNWATCH, target,
                       troupe__ref_of(me));
  }
  return 0;
}

/* c is dying: tell its watchers, and leave the watcher sets of whatever it
 * watched. */
void troupe__watch_notify(troupe__cell *c) {
  if (!c->ext) return;
  troupe_system *sys = c->sys;
  troupe_ref self = troupe__ref_of(c);
  troupe__uidset *w = &c->ext->watchers;
  for (uint32_t i = 0; i < w->len; i++)
    send_terminated(sys, w->items[i], self, true, false);
  w->len = 0;
  troupe__uidset *g = &c->ext->watching;
  for (uint32_t i = 0; i < g->len; i++) {
    troupe_ref r = g->items[i];
    if (r.node != sys->node) {
      (void)send_control(sys, TROUPE__ENV_RUNWATCH, r, self);
      continue;
    }
    troupe__cell *t = troupe__cell_get(sys, r.uid);
    if (t && t->ext) troupe__uidset_del(&t->ext->watchers, self);
  }
  g->len = 0;
}

/* Deliver a Terminated only while still watching (exactly once). */
bool troupe__watch_filter(troupe__cell *c, const troupe__env *e) {
  const troupe_terminated *t = e->data;
  if (!c->ext) return false;
  return troupe__uidset_del(&c->ext->watching, t->actor);
}
