/*
 * events.c: built-in message types, the event stream and dead letters.
 *
 * Subscribers are per system and per type. Dead letters are counted, the
 * first few are logged, and each is published as a TROUPE_T_DEAD_LETTER
 * whose `message` points into the undelivered envelope, which the
 * published envelopes keep alive (reference count) until handled.
 */
#include "core/internal.h"

#include <stdio.h>

#define FLAT_PREPARED (TROUPE__TF_PREPARED | TROUPE__TF_FLAT)

static const troupe_field terminated_fields[] = {
  {.name = "actor", .kind = TROUPE_K_REF,
   .offset = offsetof(troupe_terminated, actor),
   .elem_size = sizeof(troupe_ref)},
  {.name = "existence_confirmed", .kind = TROUPE_K_BOOL,
   .offset = offsetof(troupe_terminated, existence_confirmed),
   .elem_size = sizeof(bool)},
  {.name = "node_lost", .kind = TROUPE_K_BOOL,
   .offset = offsetof(troupe_terminated, node_lost),
   .elem_size = sizeof(bool)},
};

troupe_type TROUPE_T_TERMINATED = {
  .manifest = "troupe.Terminated", .version = 1,
  .size = sizeof(troupe_terminated),
  .fields = terminated_fields, .nfields = 3, ._flags = FLAT_PREPARED,
};

static const troupe_field ask_timeout_fields[] = {
  {.name = "ask_id", .kind = TROUPE_K_U64,
   .offset = offsetof(troupe_ask_timeout, ask_id),
   .elem_size = sizeof(uint64_t)},
  {.name = "target", .kind = TROUPE_K_REF,
   .offset = offsetof(troupe_ask_timeout, target),
   .elem_size = sizeof(troupe_ref)},
};

troupe_type TROUPE_T_ASK_TIMEOUT = {
  .manifest = "troupe.AskTimeout", .version = 1,
  .size = sizeof(troupe_ask_timeout),
  .fields = ask_timeout_fields, .nfields = 2, ._flags = FLAT_PREPARED,
};

troupe_type TROUPE_T_POISON_PILL = {
  .manifest = "troupe.PoisonPill", .version = 1, .size = 0,
  ._flags = FLAT_PREPARED,
};

/* Dead letters and unhandled messages are local only: `type` and
 * `message` are pointers valid during the receive. Only the refs and the
 * reason are described. */
static const troupe_field dead_letter_fields[] = {
  {.name = "recipient", .kind = TROUPE_K_REF,
   .offset = offsetof(troupe_dead_letter, recipient),
   .elem_size = sizeof(troupe_ref)},
  {.name = "sender", .kind = TROUPE_K_REF,
   .offset = offsetof(troupe_dead_letter, sender),
   .elem_size = sizeof(troupe_ref)},
  {.name = "reason", .kind = TROUPE_K_I32,
   .offset = offsetof(troupe_dead_letter, reason),
   .elem_size = sizeof(int)},
};

troupe_type TROUPE_T_DEAD_LETTER = {
  .manifest = "troupe.DeadLetter", .version = 1,
  .size = sizeof(troupe_dead_letter),
  .fields = dead_letter_fields, .nfields = 3, ._flags = FLAT_PREPARED,
};

troupe_type TROUPE_T_UNHANDLED = {
  .manifest = "troupe.Unhandled", .version = 1,
  .size = sizeof(troupe_dead_letter),
  .fields = dead_letter_fields, .nfields = 3, ._flags = FLAT_PREPARED,
};

/* ------------------------------------------------------------------ */
/* Subscriptions */

struct troupe__sub {
  const troupe_type *type;
  troupe__uidset subscribers;
};

static troupe__sub *sub_find(troupe_system *sys, const troupe_type *t) {
  for (uint32_t i = 0; i < sys->nsubs; i++)
    if (sys->subs[i].type == t) return &sys->subs[i];
  return NULL;
}

int troupe_subscribe(troupe_ctx *ctx, const troupe_type *type) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c || !type)
    return troupe__err(TROUPE_EINVAL, "troupe_subscribe: NULL argument");
  troupe_system *sys = c->sys;
  troupe__sub *s = sub_find(sys, type);
  if (!s) {
    if (sys->nsubs == sys->subs_cap) {
      uint32_t ncap = sys->subs_cap ? sys->subs_cap * 2 : 8;
      troupe__sub *n = realloc(sys->subs, ncap * sizeof *n);
      if (!n) return troupe__err(TROUPE_ENOMEM, "subscribe");
      sys->subs = n;
      sys->subs_cap = ncap;
    }
    s = &sys->subs[sys->nsubs++];
    s->type = type;
    memset(&s->subscribers, 0, sizeof s->subscribers);
  }
  troupe__cell_ext *x = troupe__ext(c);
  if (!x) return troupe__err(TROUPE_ENOMEM, "subscribe");
  int added = troupe__uidset_add(&s->subscribers, troupe__ref_of(c));
  if (added < 0) return troupe__err(TROUPE_ENOMEM, "subscribe");
  if (added == 0) return 0;
  if (x->nsubs == x->subs_cap) {
    uint32_t ncap = x->subs_cap ? x->subs_cap * 2 : 2;
    const troupe_type **n = realloc(x->subs, ncap * sizeof *n);
    if (!n) {
      troupe__uidset_del(&s->subscribers, troupe__ref_of(c));
      return troupe__err(TROUPE_ENOMEM, "subscribe");
    }
    x->subs = n;
    x->subs_cap = ncap;
  }
  x->subs[x->nsubs++] = type;
  return 0;
}

int troupe_unsubscribe(troupe_ctx *ctx, const troupe_type *type) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c || !type)
    return troupe__err(TROUPE_EINVAL, "troupe_unsubscribe: NULL argument");
  troupe__sub *s = sub_find(c->sys, type);
  if (s) troupe__uidset_del(&s->subscribers, troupe__ref_of(c));
  if (c->ext)
    for (uint32_t i = 0; i < c->ext->nsubs; i++)
      if (c->ext->subs[i] == type) {
        c->ext->subs[i] = c->ext->subs[--c->ext->nsubs];
        break;
      }
  return 0;
}

void troupe__subs_drop_cell(troupe__cell *c) {
  if (!c->ext) return;
  troupe_ref self = troupe__ref_of(c);
  for (uint32_t i = 0; i < c->ext->nsubs; i++) {
    troupe__sub *s = sub_find(c->sys, c->ext->subs[i]);
    if (s) troupe__uidset_del(&s->subscribers, self);
  }
  c->ext->nsubs = 0;
}

void troupe__subs_free(troupe_system *sys) {
  for (uint32_t i = 0; i < sys->nsubs; i++)
    troupe__uidset_free(&sys->subs[i].subscribers);
  free(sys->subs);
  sys->subs = NULL;
  sys->nsubs = sys->subs_cap = 0;
}

int troupe_publish(troupe_ctx *ctx, const troupe_type *type,
                   const void *value) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c || !type)
    return troupe__err(TROUPE_EINVAL, "troupe_publish: NULL argument");
  troupe__sub *s = sub_find(c->sys, type);
  if (!s) return 0;
  troupe_ref self = troupe__ref_of(c);
  for (uint32_t i = 0; i < s->subscribers.len; i++) {
    int rc = troupe_tell(s->subscribers.items[i], type, value, self);
    if (rc < 0) return rc;
  }
  return 0;
}

/* Publish a dead-letter-shaped value that points into orig. */
static void publish_dl(troupe_system *sys, const troupe_type *type,
                       const troupe_dead_letter *dl, troupe__env *orig) {
  troupe__sub *s = sub_find(sys, type);
  if (!s || s->subscribers.len == 0) return;
  /* copy the list: delivery may change subscriptions */
  uint32_t n = s->subscribers.len;
  troupe_ref stack[16];
  troupe_ref *to = n <= 16 ? stack : malloc(n * sizeof *to);
  if (!to) return;
  memcpy(to, s->subscribers.items, n * sizeof *to);
  for (uint32_t i = 0; i < n; i++) {
    troupe__cell *c = troupe__cell_get(sys, to[i].uid);
    if (!c || (c->flags & TROUPE__CF_DEAD)) continue;
    troupe__env *e = troupe__env_alloc(sys);
    if (!e) break;
    if (troupe__env_set(e, type, dl) < 0) {
      e->type = NULL;
      troupe__env_release(sys, e);
      break;
    }
    e->kind = TROUPE__ENV_USER;
    e->sender = TROUPE_REF_NONE;
    e->ask_id = 0;
    e->orig = orig;
    orig->refs++;
    troupe__enqueue(c, e);
  }
  if (to != stack) free(to);
}

void troupe__publish_env(troupe_system *sys, const troupe_type *type,
                         const void *value, troupe__env *orig) {
  publish_dl(sys, type, value, orig);
}

void troupe__dead_letter(troupe_system *sys, troupe_ref recipient,
                         troupe__env *e, int reason) {
  uint64_t n = atomic_fetch_add(&sys->dead_letters, 1) + 1;
  if (n <= sys->dl_log_limit && sys->log_level <= TROUPE_LOG_INFO) {
    troupe__log(sys, TROUPE_LOG_INFO, "deadLetters",
                "message %s to actor %llx/%llx was not delivered (%s)%s",
                e->type && e->type->manifest ? e->type->manifest : "?",
                (unsigned long long)recipient.node,
                (unsigned long long)recipient.uid, troupe_strerror(reason),
                n == sys->dl_log_limit ? "; further dead letters are not "
                                          "logged" : "");
  }
  /* never publish a dead letter about a dead letter (no loops) */
  if (e->type && e->type != &TROUPE_T_DEAD_LETTER && sys->root) {
    troupe_dead_letter dl = {recipient, e->sender, e->type, e->data, reason};
    publish_dl(sys, &TROUPE_T_DEAD_LETTER, &dl, e);
  }
  troupe__env_release(sys, e);
}

void troupe__unhandled(troupe__cell *c, troupe__env *e);
void troupe__unhandled(troupe__cell *c, troupe__env *e) {
  troupe_system *sys = c->sys;
  if (sys->log_level <= TROUPE_LOG_DEBUG) {
    char path[128];
    troupe__path_of(c, path, sizeof path);
    troupe__log(sys, TROUPE_LOG_DEBUG, path, "unhandled message %s",
                e->type && e->type->manifest ? e->type->manifest : "?");
  }
  if (e->type != &TROUPE_T_UNHANDLED) {
    troupe_dead_letter dl = {troupe__ref_of(c), e->sender, e->type, e->data,
                             0};
    publish_dl(sys, &TROUPE_T_UNHANDLED, &dl, e);
  }
}
