/*
 * value.c: what the field table derives for values in memory: deep copy,
 * free and equality.
 */
#include "core/types_internal.h"

#include <math.h>

static inline bool type_flat(const troupe_type *t) {
  return __atomic_load_n(&t->_flags, __ATOMIC_ACQUIRE) & TROUPE__TF_FLAT;
}

/* Whether one element of field f owns memory. */
static inline bool elem_owns(const troupe_field *f) {
  return f->kind == TROUPE_K_STRING || f->kind == TROUPE_K_BYTES ||
         (f->kind == TROUPE_K_NESTED && !type_flat(f->type));
}

/* ------------------------------------------------------------------ */
/* Free                                                                */

static void free_fields(const troupe_type *t, uint8_t *v);

static void free_nested(const troupe_type *t, uint8_t *v) {
  if (type_flat(t)) return;
  if (t->ops && t->ops->free) {
    t->ops->free(t, v);
    return;
  }
  free_fields(t, v);
}

static void free_elem(const troupe_field *f, uint8_t *p) {
  switch (f->kind) {
    case TROUPE_K_STRING: {
      char **s = (char **)p;
      free(*s);
      *s = NULL;
      break;
    }
    case TROUPE_K_BYTES: {
      troupe_bytes *b = (troupe_bytes *)p;
      free(b->data);
      b->data = NULL;
      b->len = 0;
      break;
    }
    case TROUPE_K_NESTED:
      free_nested(f->type, p);
      break;
    default:
      break;
  }
}

static void free_fields(const troupe_type *t, uint8_t *v) {
  for (uint32_t i = 0; i < t->nfields; i++) {
    const troupe_field *f = &t->fields[i];
    uint8_t *p = v + f->offset;
    switch (f->shape) {
      case TROUPE_FS_SCALAR:
        if (elem_owns(f)) free_elem(f, p);
        break;
      case TROUPE_FS_ARRAY:
        if (elem_owns(f))
          for (uint32_t k = 0; k < f->count; k++)
            free_elem(f, p + (size_t)k * f->elem_size);
        break;
      default: {
        troupe_vec *vec = (troupe_vec *)p;
        if (vec->items && elem_owns(f))
          for (size_t k = 0; k < vec->len; k++)
            free_elem(f, (uint8_t *)vec->items + k * f->elem_size);
        free(vec->items);
        vec->items = NULL;
        vec->len = 0;
        break;
      }
    }
  }
}

/* Prepared already (the common case: one load), or prepare now. */
static inline int ensure_prepared(const troupe_type *t) {
  if (TROUPE_LIKELY(__atomic_load_n(&t->_flags, __ATOMIC_ACQUIRE) &
                    TROUPE__TF_PREPARED))
    return 0;
  return troupe_type_prepare(t);
}

void troupe_value_free(const troupe_type *t, void *value) {
  if (!t || !value) return;
  if (ensure_prepared(t)) return;  /* no value can exist */
  free_nested(t, value);
}

/* ------------------------------------------------------------------ */
/* Copy                                                                */
/*
 * A non-flat value is copied in two passes over dst after a memcpy:
 * detach (every owned pointer in dst set to NULL, so dst aliases nothing
 * of src) and then duplicate (each owned buffer copied from src). A
 * failure in the second pass leaves dst freeable: what was duplicated is
 * owned, the rest is NULL. Members the table does not describe travel
 * with the memcpy, as they do for flat types.
 */

static void detach_fields(const troupe_type *t, uint8_t *v);

static void detach_elem(const troupe_field *f, uint8_t *p) {
  switch (f->kind) {
    case TROUPE_K_STRING: *(char **)p = NULL; break;
    case TROUPE_K_BYTES: ((troupe_bytes *)p)->data = NULL; break;
    case TROUPE_K_NESTED:
      if (type_flat(f->type)) break;
      if (f->type->ops && f->type->ops->copy)
        memset(p, 0, f->type->size);  /* custom copy wants it zeroed */
      else
        detach_fields(f->type, p);
      break;
    default: break;
  }
}

static void detach_fields(const troupe_type *t, uint8_t *v) {
  for (uint32_t i = 0; i < t->nfields; i++) {
    const troupe_field *f = &t->fields[i];
    uint8_t *p = v + f->offset;
    if (f->shape == TROUPE_FS_VEC) {
      ((troupe_vec *)p)->items = NULL;
      ((troupe_vec *)p)->len = 0;
    } else if (elem_owns(f)) {
      uint32_t n = f->shape == TROUPE_FS_ARRAY ? f->count : 1;
      for (uint32_t k = 0; k < n; k++)
        detach_elem(f, p + (size_t)k * f->elem_size);
    }
  }
}

static int dup_fields(const troupe_type *t, uint8_t *dst, const uint8_t *src);

static int dup_elem(const troupe_field *f, uint8_t *d, const uint8_t *s) {
  switch (f->kind) {
    case TROUPE_K_STRING: {
      const char *str = *(char *const *)s;
      if (!str) return 0;
      size_t n = strlen(str);
      char *c = troupe__tmalloc(n + 1);
      if (!c) return troupe__err(TROUPE_ENOMEM, "copy: no memory");
      memcpy(c, str, n + 1);
      *(char **)d = c;
      return 0;
    }
    case TROUPE_K_BYTES: {
      const troupe_bytes *sb = (const troupe_bytes *)s;
      troupe_bytes *db = (troupe_bytes *)d;
      if (!sb->data || !sb->len) {
        db->data = NULL;
        db->len = 0;
        return 0;
      }
      uint8_t *c = troupe__tmalloc(sb->len);
      if (!c) return troupe__err(TROUPE_ENOMEM, "copy: no memory");
      memcpy(c, sb->data, sb->len);
      db->data = c;
      return 0;
    }
    case TROUPE_K_NESTED:
      if (type_flat(f->type)) return 0;
      if (f->type->ops && f->type->ops->copy)
        return f->type->ops->copy(f->type, d, s);
      return dup_fields(f->type, d, s);
    default:
      return 0;
  }
}

static int dup_fields(const troupe_type *t, uint8_t *dst, const uint8_t *src) {
  for (uint32_t i = 0; i < t->nfields; i++) {
    const troupe_field *f = &t->fields[i];
    uint8_t *d = dst + f->offset;
    const uint8_t *s = src + f->offset;
    int rc = 0;
    if (f->shape == TROUPE_FS_VEC) {
      const troupe_vec *sv = (const troupe_vec *)s;
      troupe_vec *dv = (troupe_vec *)d;
      if (!sv->items || !sv->len) continue;
      if (sv->len > SIZE_MAX / f->elem_size)
        return troupe__err(TROUPE_ENOMEM, "copy: vec too long");
      uint8_t *items = troupe__tmalloc(sv->len * f->elem_size);
      if (!items) return troupe__err(TROUPE_ENOMEM, "copy: no memory");
      memcpy(items, sv->items, sv->len * f->elem_size);
      bool owns = elem_owns(f);
      if (owns)
        for (size_t k = 0; k < sv->len; k++)
          detach_elem(f, items + k * f->elem_size);
      dv->items = items;
      dv->len = sv->len;
      if (owns)
        for (size_t k = 0; k < sv->len && !rc; k++)
          rc = dup_elem(f, items + k * f->elem_size,
                        (const uint8_t *)sv->items + k * f->elem_size);
    } else if (elem_owns(f)) {
      uint32_t n = f->shape == TROUPE_FS_ARRAY ? f->count : 1;
      for (uint32_t k = 0; k < n && !rc; k++)
        rc = dup_elem(f, d + (size_t)k * f->elem_size,
                      s + (size_t)k * f->elem_size);
    }
    if (rc) return rc;
  }
  return 0;
}

int troupe_value_copy(const troupe_type *t, void *dst, const void *src) {
  if (!t || !dst || !src)
    return troupe__err(TROUPE_EINVAL, "troupe_value_copy: NULL argument");
  int rc = ensure_prepared(t);
  if (rc) return rc;
  if (type_flat(t)) {
    memcpy(dst, src, t->size);
    return 0;
  }
  if (t->ops && t->ops->copy) {
    memset(dst, 0, t->size);
    rc = t->ops->copy(t, dst, src);
  } else {
    memcpy(dst, src, t->size);
    detach_fields(t, dst);
    rc = dup_fields(t, dst, src);
  }
  if (rc) {
    free_nested(t, dst);
    memset(dst, 0, t->size);
  }
  return rc;
}

/* ------------------------------------------------------------------ */
/* Equality                                                            */

static bool equal_value(const troupe_type *t, const uint8_t *a,
                        const uint8_t *b);

static bool equal_elem(const troupe_field *f, const uint8_t *a,
                       const uint8_t *b) {
  switch (f->kind) {
    case TROUPE_K_F32: {
      float x, y;
      memcpy(&x, a, 4);
      memcpy(&y, b, 4);
      if (isnan(x) || isnan(y)) return isnan(x) && isnan(y);
      return memcmp(a, b, 4) == 0;
    }
    case TROUPE_K_F64: {
      double x, y;
      memcpy(&x, a, 8);
      memcpy(&y, b, 8);
      if (isnan(x) || isnan(y)) return isnan(x) && isnan(y);
      return memcmp(a, b, 8) == 0;
    }
    case TROUPE_K_BOOL:
      /* Read the byte: a bool holding 2 is true for the codec too. */
      return (*a != 0) == (*b != 0);
    case TROUPE_K_STRING: {
      const char *x = *(char *const *)a, *y = *(char *const *)b;
      if (!x || !y) return x == y;
      return strcmp(x, y) == 0;
    }
    case TROUPE_K_BYTES: {
      const troupe_bytes *x = (const troupe_bytes *)a;
      const troupe_bytes *y = (const troupe_bytes *)b;
      size_t xl = x->data ? x->len : 0, yl = y->data ? y->len : 0;
      return xl == yl && (xl == 0 || memcmp(x->data, y->data, xl) == 0);
    }
    case TROUPE_K_REF: {
      troupe_ref x, y;
      memcpy(&x, a, sizeof x);
      memcpy(&y, b, sizeof y);
      return troupe_ref_eq(x, y) ||
             (troupe_ref_is_none(x) && troupe_ref_is_none(y));
    }
    case TROUPE_K_NESTED:
      return equal_value(f->type, a, b);
    default:
      return memcmp(a, b, f->elem_size) == 0;
  }
}

static bool equal_by_encoding(const troupe_type *t, const uint8_t *a,
                              const uint8_t *b) {
  troupe_buf x = {0}, y = {0};
  bool eq;
  if (troupe_encode(t, a, &x, NULL) == 0 &&
      troupe_encode(t, b, &y, NULL) == 0)
    eq = x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
  else
    eq = memcmp(a, b, t->size) == 0;
  troupe_buf_free(&x);
  troupe_buf_free(&y);
  return eq;
}

static bool equal_value(const troupe_type *t, const uint8_t *a,
                        const uint8_t *b) {
  if (t->ops && t->ops->equal) return t->ops->equal(t, a, b);
  if (t->ops && !t->nfields) return equal_by_encoding(t, a, b);
  for (uint32_t i = 0; i < t->nfields; i++) {
    const troupe_field *f = &t->fields[i];
    if (f->flags & TROUPE_FF_OPTIONAL) {
      bool pa = a[f->present_offset] != 0, pb = b[f->present_offset] != 0;
      if (pa != pb) return false;
      if (!pa) continue;
    }
    const uint8_t *x = a + f->offset, *y = b + f->offset;
    switch (f->shape) {
      case TROUPE_FS_SCALAR:
        if (!equal_elem(f, x, y)) return false;
        break;
      case TROUPE_FS_ARRAY:
        for (uint32_t k = 0; k < f->count; k++)
          if (!equal_elem(f, x + (size_t)k * f->elem_size,
                          y + (size_t)k * f->elem_size))
            return false;
        break;
      default: {
        const troupe_vec *va = (const troupe_vec *)x;
        const troupe_vec *vb = (const troupe_vec *)y;
        size_t la = va->items ? va->len : 0, lb = vb->items ? vb->len : 0;
        if (la != lb) return false;
        for (size_t k = 0; k < la; k++)
          if (!equal_elem(f, (const uint8_t *)va->items + k * f->elem_size,
                          (const uint8_t *)vb->items + k * f->elem_size))
            return false;
        break;
      }
    }
  }
  return true;
}

bool troupe_value_equal(const troupe_type *t, const void *a, const void *b) {
  if (!t || !a || !b) return false;
  if (troupe_type_prepare(t)) return false;
  return equal_value(t, a, b);
}
