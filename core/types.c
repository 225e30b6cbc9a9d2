/*
 * types.c: type descriptors. Validation (troupe_type_prepare), the per-type
 * runtime information the codec needs (canonical key order, pre-encoded
 * keys), the codec limits and the small helpers the type files share.
 */
#include "core/types_internal.h"

#include <pthread.h>
#include <stdalign.h>

/* ------------------------------------------------------------------ */
/* Allocation (with failure injection for tests)                       */

int troupe__types_fail_countdown;

static bool alloc_should_fail(void) {
  int c = __atomic_load_n(&troupe__types_fail_countdown, __ATOMIC_RELAXED);
  if (TROUPE_LIKELY(c <= 0)) return false;
  return __atomic_sub_fetch(&troupe__types_fail_countdown, 1,
                            __ATOMIC_RELAXED) == 0;
}

void *troupe__tmalloc(size_t n) {
  if (alloc_should_fail()) return NULL;
  return malloc(n ? n : 1);
}

void *troupe__tcalloc(size_t n, size_t size) {
  if (alloc_should_fail()) return NULL;
  return calloc(n ? n : 1, size ? size : 1);
}

void *troupe__trealloc(void *p, size_t n) {
  if (alloc_should_fail()) return NULL;
  return realloc(p, n ? n : 1);
}

/* ------------------------------------------------------------------ */
/* UTF-8                                                               */

static inline bool ascii_word_ok(uint64_t w, bool nul_ok) {
  if (w & 0x8080808080808080ull) return false;
  return nul_ok || !((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull);
}

static inline bool utf8_check(const uint8_t *s, size_t n, bool nul_ok) {
  size_t i = 0;
  if (n >= 8) {
    /* Whole words, then the last eight bytes (overlapping): most strings
     * are ASCII and end here. */
    uint64_t w;
    for (; i + 8 <= n; i += 8) {
      memcpy(&w, s + i, 8);
      if (!ascii_word_ok(w, nul_ok)) break;
    }
    if (i + 8 > n) {
      memcpy(&w, s + n - 8, 8);
      if (ascii_word_ok(w, nul_ok)) return true;
    }
  }
  while (i < n) {
    /* ASCII runs, eight bytes at a time (and no zero byte among them when
     * NUL is refused: the classic has-zero-byte test). */
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      if (!nul_ok &&
          ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull))
        return false;
      i += 8;
    }
    if (i >= n) break;
    uint8_t c = s[i];
    if (c < 0x80) {
      if (!c && !nul_ok) return false;
      i++;
      continue;
    }
    size_t need;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
    else return false;
    if (n - i <= need) return false;
    for (size_t k = 1; k <= need; k++) {
      uint8_t cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += need + 1;
  }
  return true;
}

bool troupe__utf8_valid(const uint8_t *s, size_t n) {
  return utf8_check(s, n, true);
}

bool troupe__text_valid(const uint8_t *s, size_t n) {
  return utf8_check(s, n, false);
}

/* ------------------------------------------------------------------ */
/* Limits                                                              */

/* Process-wide defaults; each member read and written atomically so a
 * concurrent troupe_limits_set_default is not a data race. */
static uint32_t def_depth = TROUPE_LIMITS_DEFAULT_DEPTH;
static size_t def_string = TROUPE_LIMITS_DEFAULT_STRING;
static size_t def_items = TROUPE_LIMITS_DEFAULT_ITEMS;
static size_t def_alloc = TROUPE_LIMITS_DEFAULT_ALLOC;

/* Deeper nesting than this is refused whatever the limits say: the
 * decoder recurses once per level. */
#define HARD_MAX_DEPTH 512u

void troupe_limits_set_default(const troupe_limits *l) {
  if (!l) return;
  __atomic_store_n(&def_depth,
                   l->max_depth ? l->max_depth : TROUPE_LIMITS_DEFAULT_DEPTH,
                   __ATOMIC_RELAXED);
  __atomic_store_n(&def_string,
                   l->max_string ? l->max_string : TROUPE_LIMITS_DEFAULT_STRING,
                   __ATOMIC_RELAXED);
  __atomic_store_n(&def_items,
                   l->max_items ? l->max_items : TROUPE_LIMITS_DEFAULT_ITEMS,
                   __ATOMIC_RELAXED);
  __atomic_store_n(&def_alloc,
                   l->max_alloc ? l->max_alloc : TROUPE_LIMITS_DEFAULT_ALLOC,
                   __ATOMIC_RELAXED);
}

void troupe_limits_get_default(troupe_limits *out) {
  if (!out) return;
  out->max_depth = __atomic_load_n(&def_depth, __ATOMIC_RELAXED);
  out->max_string = __atomic_load_n(&def_string, __ATOMIC_RELAXED);
  out->max_items = __atomic_load_n(&def_items, __ATOMIC_RELAXED);
  out->max_alloc = __atomic_load_n(&def_alloc, __ATOMIC_RELAXED);
}

void troupe__limits_resolve(const troupe_limits *in, troupe_limits *out) {
  troupe_limits_get_default(out);
  if (in) {
    if (in->max_depth) out->max_depth = in->max_depth;
    if (in->max_string) out->max_string = in->max_string;
    if (in->max_items) out->max_items = in->max_items;
    if (in->max_alloc) out->max_alloc = in->max_alloc;
  }
  if (out->max_depth > HARD_MAX_DEPTH) out->max_depth = HARD_MAX_DEPTH;
}

/* ------------------------------------------------------------------ */
/* Runtime information table                                           */

/*
 * Two levels so that readers need no lock: a chunk, once published, never
 * moves. A reader finds an index in t->_flags (acquire load); everything
 * written before the release store of those flags is visible to it.
 */
#define CHUNK_BITS TROUPE__TINFO_CHUNK_BITS
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define NCHUNKS 4096u

static pthread_mutex_t prep_lock = PTHREAD_MUTEX_INITIALIZER;
troupe__tinfo **troupe__tinfo_chunks[NCHUNKS];
#define chunks troupe__tinfo_chunks
static uint32_t next_index = 1; /* 0 means "no info" */

static const troupe__tinfo *info_at(const troupe_type *t, uint32_t fl) {
  uint32_t idx = fl >> TROUPE__TF_INFO_SHIFT;
  if (idx == 0 || idx >= __atomic_load_n(&next_index, __ATOMIC_ACQUIRE))
    return NULL;
  troupe__tinfo **c =
      __atomic_load_n(&chunks[idx >> CHUNK_BITS], __ATOMIC_RELAXED);
  const troupe__tinfo *ti =
      c ? __atomic_load_n(&c[idx & (CHUNK_SIZE - 1)], __ATOMIC_RELAXED) : NULL;
  /* A descriptor copied from a prepared one carries the original's flags:
   * it must be prepared on its own. */
  return ti && ti->t == t ? ti : NULL;
}

static size_t kind_size(int kind) {
  switch (kind) {
    case TROUPE_K_I8: case TROUPE_K_U8: return 1;
    case TROUPE_K_I16: case TROUPE_K_U16: return 2;
    case TROUPE_K_I32: case TROUPE_K_U32: case TROUPE_K_F32: return 4;
    case TROUPE_K_I64: case TROUPE_K_U64: case TROUPE_K_F64: return 8;
    case TROUPE_K_BOOL: return sizeof(bool);
    case TROUPE_K_STRING: return sizeof(char *);
    case TROUPE_K_BYTES: return sizeof(troupe_bytes);
    case TROUPE_K_REF: return sizeof(troupe_ref);
    default: return 0;
  }
}

static size_t kind_align(int kind) {
  switch (kind) {
    case TROUPE_K_I8: case TROUPE_K_U8: return 1;
    case TROUPE_K_I16: case TROUPE_K_U16: return alignof(int16_t);
    case TROUPE_K_I32: case TROUPE_K_U32: return alignof(int32_t);
    case TROUPE_K_F32: return alignof(float);
    case TROUPE_K_I64: case TROUPE_K_U64: return alignof(int64_t);
    case TROUPE_K_F64: return alignof(double);
    case TROUPE_K_BOOL: return alignof(bool);
    case TROUPE_K_STRING: return alignof(char *);
    case TROUPE_K_BYTES: return alignof(troupe_bytes);
    case TROUPE_K_REF: return alignof(troupe_ref);
    default: return 1;
  }
}

static bool owns_memory(const troupe_field *f) {
  if (f->shape == TROUPE_FS_VEC) return true;
  if (f->kind == TROUPE_K_STRING || f->kind == TROUPE_K_BYTES) return true;
  if (f->kind == TROUPE_K_NESTED)
    return !(__atomic_load_n(&f->type->_flags, __ATOMIC_RELAXED) &
             TROUPE__TF_FLAT);
  return false;
}

#define MAX_PREP_DEPTH 64

typedef struct prep_stack {
  const troupe_type *t[MAX_PREP_DEPTH];
  int n;
} prep_stack;

static bool on_stack(const prep_stack *st, const troupe_type *t) {
  for (int i = 0; i < st->n; i++)
    if (st->t[i] == t) return true;
  return false;
}

static int prepare_locked(const troupe_type *t, prep_stack *st);

static int check_field(const troupe_type *t, const troupe_field *f,
                       prep_stack *st) {
  const char *m = t->manifest;
  if (!f->name || !f->name[0])
    return troupe__err(TROUPE_EINVAL, "type '%s': a field has no name", m);
  size_t nl = strlen(f->name);
  if (nl > TROUPE_FIELD_NAME_MAX ||
      !troupe__utf8_valid((const uint8_t *)f->name, nl))
    return troupe__err(TROUPE_EINVAL,
                       "type '%s': field name too long or not UTF-8", m);
  const char *fn = f->name;
  if (f->kind == TROUPE_K_NONE || f->kind >= TROUPE_K__COUNT)
    return troupe__err(TROUPE_EINVAL, "type '%s' field '%s': bad kind %u", m,
                       fn, f->kind);
  if (f->shape > TROUPE_FS_VEC)
    return troupe__err(TROUPE_EINVAL, "type '%s' field '%s': bad shape %u", m,
                       fn, f->shape);
  if (f->flags & ~TROUPE_FF_OPTIONAL)
    return troupe__err(TROUPE_EINVAL, "type '%s' field '%s': bad flags 0x%x",
                       m, fn, f->flags);
  size_t esize;
  if (f->kind == TROUPE_K_NESTED) {
    if (!f->type)
      return troupe__err(TROUPE_EINVAL,
                         "type '%s' field '%s': nested kind without a type",
                         m, fn);
    if (f->shape == TROUPE_FS_VEC && (f->type == t || on_stack(st, f->type))) {
      /* A vec of a type being prepared (a recursive type such as a tree):
       * it is finished before anyone can use it. */
    } else {
      if (f->shape != TROUPE_FS_VEC && (f->type == t || on_stack(st, f->type)))
        return troupe__err(TROUPE_EINVAL,
                           "type '%s' field '%s': type nests itself by value",
                           m, fn);
      int rc = prepare_locked(f->type, st);
      if (rc) return rc;
    }
    esize = f->type->size;
  } else {
    if (f->type)
      return troupe__err(TROUPE_EINVAL,
                         "type '%s' field '%s': type set on a non-nested kind",
                         m, fn);
    esize = kind_size(f->kind);
    if (f->offset % kind_align(f->kind) &&
        f->shape != TROUPE_FS_VEC)
      return troupe__err(TROUPE_EINVAL,
                         "type '%s' field '%s': misaligned offset %u", m, fn,
                         f->offset);
  }
  if (f->elem_size != esize)
    return troupe__err(TROUPE_EINVAL,
                       "type '%s' field '%s': element size %u, kind needs %zu",
                       m, fn, f->elem_size, esize);
  uint64_t extent;
  switch (f->shape) {
    case TROUPE_FS_SCALAR:
      if (f->count > 1)
        return troupe__err(TROUPE_EINVAL,
                           "type '%s' field '%s': count on a scalar", m, fn);
      extent = esize;
      break;
    case TROUPE_FS_ARRAY:
      if (f->count == 0)
        return troupe__err(TROUPE_EINVAL,
                           "type '%s' field '%s': array of 0 elements", m, fn);
      extent = (uint64_t)f->count * esize;
      break;
    default:
      extent = sizeof(troupe_vec);
      if (f->offset % alignof(troupe_vec))
        return troupe__err(TROUPE_EINVAL,
                           "type '%s' field '%s': misaligned vec", m, fn);
      break;
  }
  if ((uint64_t)f->offset + extent > t->size)
    return troupe__err(TROUPE_EINVAL,
                       "type '%s' field '%s': ends at %llu, past size %u", m,
                       fn, (unsigned long long)(f->offset + extent), t->size);
  if ((f->flags & TROUPE_FF_OPTIONAL) &&
      (uint64_t)f->present_offset + sizeof(bool) > t->size)
    return troupe__err(TROUPE_EINVAL,
                       "type '%s' field '%s': presence flag past the struct",
                       m, fn);
  return 0;
}

static int build_info(const troupe_type *t, troupe__tinfo **out) {
  uint32_t n = t->nfields;
  size_t keybytes = 0;
  for (uint32_t i = 0; i < n; i++)
    keybytes += 2 + strlen(t->fields[i].name);
  /* KEY_SLACK zero bytes after the keys let the codec move and compare a
   * short key as whole 8-byte words. */
  size_t sz = sizeof(troupe__tinfo) + n * sizeof(troupe__finfo) +
              n * sizeof(uint16_t) + keybytes + TROUPE__KEY_SLACK;
  /* Not subject to failure injection: descriptors are prepared once and
   * the tests exercise failures elsewhere. */
  troupe__tinfo *ti = calloc(1, sz);
  if (!ti) return troupe__err(TROUPE_ENOMEM, "type '%s': no memory",
                              t->manifest);
  troupe__finfo *fi = (troupe__finfo *)(ti + 1);
  uint16_t *order = (uint16_t *)(fi + n);
  uint8_t *kp = (uint8_t *)(order + n);
  for (uint32_t i = 0; i < n; i++) {
    size_t nl = strlen(t->fields[i].name);
    fi[i].key = kp;
    fi[i].namelen = (uint16_t)nl;
    if (nl < 24) {
      *kp++ = (uint8_t)(0x60 + nl);
      fi[i].keylen = (uint16_t)(1 + nl);
    } else {
      *kp++ = 0x78;
      *kp++ = (uint8_t)nl;
      fi[i].keylen = (uint16_t)(2 + nl);
    }
    memcpy(kp, t->fields[i].name, nl);
    kp += nl;
    if (t->fields[i].flags & TROUPE_FF_OPTIONAL) ti->nopt++;
    /* Insertion sort into canonical key order (prepared once). */
    uint32_t j = i;
    while (j > 0) {
      const troupe_field *g = &t->fields[order[j - 1]];
      int c = troupe__keycmp(g->name, strlen(g->name), t->fields[i].name, nl);
      if (c == 0) {
        free(ti);
        return troupe__err(TROUPE_EINVAL, "type '%s': duplicate field '%s'",
                           t->manifest, t->fields[i].name);
      }
      if (c < 0) break;
      order[j] = order[j - 1];
      j--;
    }
    order[j] = (uint16_t)i;
  }
  ti->t = t;
  ti->nfields = n;
  ti->order = order;
  ti->f = fi;
  *out = ti;
  return 0;
}

static int prepare_locked(const troupe_type *t, prep_stack *st) {
  uint32_t fl = __atomic_load_n(&t->_flags, __ATOMIC_ACQUIRE);
  if ((fl & TROUPE__TF_PREPARED) && info_at(t, fl)) return 0;
  if (!t->manifest || !t->manifest[0])
    return troupe__err(TROUPE_EINVAL, "type without a manifest name");
  size_t ml = strlen(t->manifest);
  if (ml > TROUPE_MANIFEST_MAX ||
      !troupe__utf8_valid((const uint8_t *)t->manifest, ml))
    return troupe__err(TROUPE_EINVAL,
                       "manifest '%.40s...' longer than %d bytes or not UTF-8",
                       t->manifest, TROUPE_MANIFEST_MAX);
  const char *m = t->manifest;
  if (t->version == 0)
    return troupe__err(TROUPE_EINVAL, "type '%s': version 0 (must be >= 1)",
                       m);
  /* size 0 is a signal message (no value); it cannot have fields */
  if (t->size == 0 && (t->nfields || t->ops))
    return troupe__err(TROUPE_EINVAL, "type '%s': size 0 with fields", m);
  if (t->nfields > TROUPE_FIELDS_MAX)
    return troupe__err(TROUPE_EINVAL, "type '%s': %u fields (max %d)", m,
                       t->nfields, TROUPE_FIELDS_MAX);
  if (t->nfields && !t->fields)
    return troupe__err(TROUPE_EINVAL, "type '%s': nfields without fields", m);
  const troupe_type_ops *ops = t->ops;
  if (ops) {
    if (!ops->copy != !ops->free)
      return troupe__err(TROUPE_EINVAL,
                         "type '%s': ops copy and free come together", m);
  }
  if (!t->nfields && ops && (!ops->encode != !ops->decode))
    return troupe__err(TROUPE_EINVAL,
                       "type '%s': custom encode and decode come together", m);
  if (st->n >= MAX_PREP_DEPTH)
    return troupe__err(TROUPE_EINVAL, "type '%s': nested too deeply", m);
  st->t[st->n++] = t;
  bool flat = true;
  int rc = 0;
  for (uint32_t i = 0; i < t->nfields && !rc; i++) {
    rc = check_field(t, &t->fields[i], st);
    if (!rc && owns_memory(&t->fields[i])) flat = false;
  }
  st->n--;
  if (rc) return rc;
  if (ops && ops->copy) flat = false;

  troupe__tinfo *ti = NULL;
  rc = build_info(t, &ti);
  if (rc) return rc;
  uint32_t idx = __atomic_load_n(&next_index, __ATOMIC_RELAXED);
  if (idx >= NCHUNKS * CHUNK_SIZE) {
    free(ti);
    return troupe__err(TROUPE_ENOMEM, "too many type descriptors");
  }
  troupe__tinfo **chunk = chunks[idx >> CHUNK_BITS];
  if (!chunk) {
    chunk = calloc(CHUNK_SIZE, sizeof *chunk);
    if (!chunk) {
      free(ti);
      return troupe__err(TROUPE_ENOMEM, "type table: no memory");
    }
    __atomic_store_n(&chunks[idx >> CHUNK_BITS], chunk, __ATOMIC_RELEASE);
  }
  __atomic_store_n(&chunk[idx & (CHUNK_SIZE - 1)], ti, __ATOMIC_RELEASE);
  __atomic_store_n(&next_index, idx + 1, __ATOMIC_RELEASE);
  uint32_t nfl = TROUPE__TF_PREPARED | (flat ? TROUPE__TF_FLAT : 0) |
                 (idx << TROUPE__TF_INFO_SHIFT);
  /* The descriptor is documented as writable (not const); this is the one
   * store the runtime makes into it. */
  __atomic_store_n((uint32_t *)&t->_flags, nfl, __ATOMIC_RELEASE);
  return 0;
}

int troupe_type_prepare(const troupe_type *t) {
  if (!t) return troupe__err(TROUPE_EINVAL, "NULL type");
  uint32_t fl = __atomic_load_n(&t->_flags, __ATOMIC_ACQUIRE);
  if (TROUPE_LIKELY(fl & TROUPE__TF_PREPARED) && info_at(t, fl)) return 0;
  prep_stack st;
  st.n = 0;
  pthread_mutex_lock(&prep_lock);
  int rc = prepare_locked(t, &st);
  pthread_mutex_unlock(&prep_lock);
  return rc;
}

uint32_t troupe__default_max_depth(void) {
  uint32_t d = __atomic_load_n(&def_depth, __ATOMIC_RELAXED);
  return d > HARD_MAX_DEPTH ? HARD_MAX_DEPTH : d;
}

const troupe__tinfo *troupe__tinfo_slow(const troupe_type *t, int *err) {
  if (!t) {
    *err = troupe__err(TROUPE_EINVAL, "NULL type");
    return NULL;
  }
  int rc = troupe_type_prepare(t);
  if (rc) {
    *err = rc;
    return NULL;
  }
  return info_at(t, __atomic_load_n(&t->_flags, __ATOMIC_ACQUIRE));
}
