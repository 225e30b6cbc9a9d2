/*
 * core/types_internal.h: what the type/codec files share. Not installed.
 */
#ifndef TROUPE_CORE_TYPES_INTERNAL_H
#define TROUPE_CORE_TYPES_INTERNAL_H

#include "core/internal.h"

/*
 * Per-type runtime information, built once by troupe_type_prepare. The
 * descriptor is const and its layout fixed, so the information lives in a
 * process-wide table and the descriptor's _flags carries its index above
 * the public bits: _flags = index << TROUPE__TF_INFO_SHIFT | bits. Entries
 * are never freed (descriptors are static), so a pointer obtained once
 * stays valid.
 */
#define TROUPE__TF_INFO_SHIFT 8

/* Readable bytes after every pre-encoded key (see codec.c). */
#define TROUPE__KEY_SLACK 16

typedef struct troupe__finfo {
  const uint8_t *key;   /* the name's CBOR encoding (header + bytes) */
  uint16_t keylen;
  uint16_t namelen;
} troupe__finfo;

typedef struct troupe__tinfo {
  const troupe_type *t;
  uint32_t nfields;
  uint32_t nopt;            /* optional fields */
  const uint16_t *order;    /* field indices in canonical key order */
  const troupe__finfo *f;   /* per field, declaration order */
} troupe__tinfo;

/* The info table (types.c): chunks of CHUNK_SIZE entries, published with
 * release stores before the descriptor's flags. */
#define TROUPE__TINFO_CHUNK_BITS 10
extern troupe__tinfo **troupe__tinfo_chunks[];

/* Slow path of troupe__tinfo_get: prepare, then look up. */
const troupe__tinfo *troupe__tinfo_slow(const troupe_type *t, int *err);

/* The runtime info of t, preparing it first when needed; NULL on error
 * (troupe_errmsg says why; *err gets the code). The fast path is three
 * loads. A descriptor copied from a prepared one carries the original's
 * index; ti->t tells them apart and sends the copy to the slow path. */
static inline const troupe__tinfo *troupe__tinfo_get(const troupe_type *t,
                                                     int *err) {
  if (TROUPE_LIKELY(t != NULL)) {
    uint32_t fl = __atomic_load_n(&t->_flags, __ATOMIC_ACQUIRE);
    if (TROUPE_LIKELY(fl & TROUPE__TF_PREPARED)) {
      uint32_t idx = fl >> TROUPE__TF_INFO_SHIFT;
      troupe__tinfo **c = __atomic_load_n(
          &troupe__tinfo_chunks[idx >> TROUPE__TINFO_CHUNK_BITS],
          __ATOMIC_RELAXED);
      if (TROUPE_LIKELY(c != NULL)) {
        const troupe__tinfo *ti = __atomic_load_n(
            &c[idx & ((1u << TROUPE__TINFO_CHUNK_BITS) - 1)], __ATOMIC_RELAXED);
        if (TROUPE_LIKELY(ti && ti->t == t)) return ti;
      }
    }
  }
  return troupe__tinfo_slow(t, err);
}

/* The process default of limits.max_depth (one relaxed load). */
uint32_t troupe__default_max_depth(void);

/* Limits in effect for a call: opts->limits over the process defaults. */
void troupe__limits_resolve(const troupe_limits *in, troupe_limits *out);

/* Default codec options (core ref functions). */
extern const troupe_codec_opts troupe__codec_default_opts;

/*
 * Allocation with failure injection for tests: while
 * troupe__types_fail_countdown > 0 each allocation decrements it and the
 * one that brings it to 0 fails. Tests only; single-threaded use.
 */
extern int troupe__types_fail_countdown;
void *troupe__tmalloc(size_t n);
void *troupe__tcalloc(size_t n, size_t size);
void *troupe__trealloc(void *p, size_t n);

/* UTF-8 well-formedness (RFC 3629: no overlongs, no surrogates). */
bool troupe__utf8_valid(const uint8_t *s, size_t n);
/* The same, refusing NUL bytes too (text that becomes a C string). */
bool troupe__text_valid(const uint8_t *s, size_t n);

/* Encode the value at `value` of type t (depth for the nesting limit). */
int troupe__encode_value(const troupe_type *t, const void *value,
                         troupe_buf *out, const troupe_codec_opts *opts,
                         uint32_t depth, uint32_t max_depth);

/* Canonical CBOR map-key order of two text keys: by length, then bytes. */
static inline int troupe__keycmp(const char *a, size_t alen, const char *b,
                                 size_t blen) {
  if (alen != blen) return alen < blen ? -1 : 1;
  return memcmp(a, b, alen);
}

/* Tests: 0 when the decoder's inline head reader and libcbor agree on the
 * head at p (or the inline reader leaves it to libcbor), -1 otherwise. */
int troupe__cbor_head_check(const uint8_t *p, size_t n);

/* The CBOR item at data[0..len): its extent (skipping it), bounded by
 * limits. Returns 0 and *used, or TROUPE_EDECODE/ETOOBIG. */
int troupe__cbor_skip(const uint8_t *data, size_t len,
                      const troupe_limits *lim, size_t *used);

#endif
