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

/* The runtime info of t, preparing it first when needed; NULL on error
 * (troupe_errmsg says why; *err gets the code). */
const troupe__tinfo *troupe__tinfo_get(const troupe_type *t, int *err);

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

/* The CBOR item at data[0..len): its extent (skipping it), bounded by
 * limits. Returns 0 and *used, or TROUPE_EDECODE/ETOOBIG. */
int troupe__cbor_skip(const uint8_t *data, size_t len,
                      const troupe_limits *lim, size_t *used);

#endif
