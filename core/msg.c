/*
 * msg.c: envelopes.
 *
 * An envelope carries one message. Each system recycles envelopes through
 * a LIFO free list, so a tell on the hot path costs no allocation: values
 * up to TROUPE_INLINE_MSG bytes are copied into the envelope itself. The
 * free list is capped so a burst does not pin memory forever.
 */
#include "core/internal.h"

#define FREE_ENV_CAP 16384
#define POOL_BATCH 1024        /* envelopes per batch moved to/from a pool */
#define POOL_MAX_BATCHES 64

/* A batch is a list of envelopes linked by next; batches are linked by
 * their first envelope's orig field (unused on the free list). */
struct troupe__envpool {
  pthread_mutex_t lock;
  troupe__env *batches;
  uint32_t nbatches;
};

troupe__envpool *troupe__envpool_new(void) {
  troupe__envpool *p = calloc(1, sizeof *p);
  if (p) pthread_mutex_init(&p->lock, NULL);
  return p;
}

void troupe__envpool_free(troupe__envpool *p) {
  if (!p) return;
  troupe__env *b = p->batches;
  while (b) {
    troupe__env *nb = b->orig;
    while (b) {
      troupe__env *n = b->next;
      free(b);
      b = n;
    }
    b = nb;
  }
  pthread_mutex_destroy(&p->lock);
  free(p);
}

static troupe__env *pool_take(troupe_system *sys) {
  troupe__envpool *p = sys->env_pool;
  pthread_mutex_lock(&p->lock);
  troupe__env *b = p->batches;
  if (b) {
    p->batches = b->orig;
    p->nbatches--;
  }
  pthread_mutex_unlock(&p->lock);
  if (!b) return NULL;
  b->orig = NULL;
  /* the batch's length rides in its head (walking the list to count it
   * would miss the cache once per envelope: they come from another
   * thread) */
  uint32_t n = (uint32_t)b->aux - 1;
  b->aux = 0;
  sys->free_envs = b->next;
  sys->nfree_envs = n;
  b->next = NULL;
  return b;
}

/* The free list is full: hand POOL_BATCH of it to the pool. */
static void pool_give(troupe_system *sys) {
  troupe__env *head = sys->free_envs, *last = head;
  uint32_t i = 1;
  for (; i < POOL_BATCH && last->next; i++) last = last->next;
  troupe__env *rest = last->next;
  last->next = NULL;
  head->aux = (int32_t)i;             /* the batch's length */
  troupe__envpool *p = sys->env_pool;
  pthread_mutex_lock(&p->lock);
  bool taken = p->nbatches < POOL_MAX_BATCHES;
  if (taken) {
    head->orig = p->batches;
    p->batches = head;
    p->nbatches++;
  }
  pthread_mutex_unlock(&p->lock);
  sys->free_envs = rest;
  sys->nfree_envs -= i;
  if (!taken) {
    while (head) {
      troupe__env *n = head->next;
      free(head);
      head = n;
    }
  }
}

troupe__env *troupe__env_new(void) {
  troupe__env *e = malloc(sizeof *e);
  if (!e) return NULL;
  e->next = NULL;
  e->data = e->inl;
  e->heap = 0;
  e->refs = 1;
  e->orig = NULL;
  e->tnode = 0;
  return e;
}

troupe__env *troupe__env_alloc(troupe_system *sys) {
  troupe__env *e = sys->free_envs;
  if (TROUPE_LIKELY(e != NULL)) {
    sys->free_envs = e->next;
    sys->nfree_envs--;
    e->next = NULL;
    return e;
  }
  if (sys->env_pool && (e = pool_take(sys)) != NULL) return e;
  return troupe__env_new();
}

/* Copy value into the envelope: inline when small, deep copy for types
 * that own buffers. */
int troupe__env_set(troupe__env *e, const troupe_type *type,
                    const void *value) {
  uint32_t f = __atomic_load_n(&type->_flags, __ATOMIC_ACQUIRE);
  if (TROUPE_UNLIKELY(!(f & TROUPE__TF_PREPARED))) {
    int rc = troupe_type_prepare(type);
    if (rc < 0) return rc;
    f = __atomic_load_n(&type->_flags, __ATOMIC_ACQUIRE);
  }
  e->type = type;
  size_t size = type->size;
  void *dst = e->inl;
  e->heap = 0;
  if (TROUPE_UNLIKELY(size > TROUPE_INLINE_MSG)) {
    dst = malloc(size);
    if (!dst) return troupe__err(TROUPE_ENOMEM, "message of %zu bytes", size);
    e->heap = 1;
  }
  e->data = dst;
  if (size == 0) return 0;
  if (TROUPE_UNLIKELY(!value)) {
    if (e->heap) free(dst);
    e->heap = 0;
    e->data = e->inl;
    return troupe__err(TROUPE_EINVAL, "NULL value for type %s",
                       type->manifest ? type->manifest : "?");
  }
  if (TROUPE_LIKELY(f & TROUPE__TF_FLAT)) {
    memcpy(dst, value, size);
    return 0;
  }
  int rc = troupe_value_copy(type, dst, value);
  if (rc < 0) {
    if (e->heap) free(dst);
    e->heap = 0;
    e->data = e->inl;
  }
  return rc;
}

static void env_free_value(troupe__env *e) {
  const troupe_type *t = e->type;
  if (t && t->size && !(__atomic_load_n(&t->_flags, __ATOMIC_RELAXED) &
                        TROUPE__TF_FLAT))
    troupe_value_free(t, e->data);
  if (e->heap) {
    free(e->data);
    e->heap = 0;
  }
  e->data = e->inl;
  e->type = NULL;
}

void troupe__env_release(troupe_system *sys, troupe__env *e) {
  if (TROUPE_UNLIKELY(e->refs > 1)) {
    e->refs--;
    return;
  }
  if (TROUPE_UNLIKELY(e->orig != NULL)) {
    troupe__env_release(sys, e->orig);
    e->orig = NULL;
  }
  if (e->type) env_free_value(e);
  e->refs = 1;
  if (sys && TROUPE_LIKELY(sys->nfree_envs < FREE_ENV_CAP)) {
    e->next = sys->free_envs;
    sys->free_envs = e;
    sys->nfree_envs++;
  } else if (sys && sys->env_pool) {
    pool_give(sys);
    e->next = sys->free_envs;
    sys->free_envs = e;
    sys->nfree_envs++;
  } else {
    free(e);
  }
}
