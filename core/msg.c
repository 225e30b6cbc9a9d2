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

troupe__env *troupe__env_new(void) {
  troupe__env *e = malloc(sizeof *e);
  if (!e) return NULL;
  e->next = NULL;
  e->data = e->inl;
  e->heap = 0;
  e->refs = 1;
  e->orig = NULL;
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
  } else {
    free(e);
  }
}
