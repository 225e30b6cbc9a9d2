/*
 * codec.c: CBOR encoding and decoding of described values through libcbor.
 *
 * Encoding writes heads with libcbor's encoding functions into a
 * troupe_buf. Decoding is a pull parser over libcbor's streaming decoder
 * (cbor_stream_decode reads one head per call and reports it through a
 * callback; we turn that into a token), driven by the field table, with
 * the most common heads read inline (see fast_head). Neither direction
 * builds libcbor item trees: no allocation besides the value's own
 * buffers.
 *
 * Wire shape of a described value: a map from field name (text) to value.
 * Names rather than field indices because a name is what a schema change
 * keeps stable: fields can be reordered, added and removed in the table
 * without breaking old data; tools can read a journal without the C
 * descriptors; the JSON rendering uses the same keys. The cost is a few
 * bytes per field (keys are pre-encoded, so not time). Keys are emitted in
 * RFC 8949 deterministic order, so equal values give equal bytes whatever
 * the declaration order.
 */
#include "core/types_internal.h"

#include <cbor.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

const troupe_codec_opts troupe__codec_default_opts = {
    NULL, NULL, troupe__ref_to_uri, troupe__ref_from_uri};

/* ================================================================== */
/* Encoding                                                            */

typedef struct enc {
  troupe_buf *out;
  const troupe_codec_opts *opts;
  troupe_ref_to_uri_fn to_uri;
  uint32_t max_depth;
} enc;

static inline int need(troupe_buf *b, size_t n) {
  if (TROUPE_LIKELY(b->cap - b->len >= n)) return 0;
  return troupe_buf_reserve(b, n);
}

#define ROOM(b) ((b)->data + (b)->len), ((b)->cap - (b)->len)

static inline int put_uint(troupe_buf *b, uint64_t v) {
  int rc = need(b, 9);
  if (rc) return rc;
  b->len += cbor_encode_uint(v, ROOM(b));
  return 0;
}

static inline int put_int(troupe_buf *b, int64_t v) {
  int rc = need(b, 9);
  if (rc) return rc;
  if (v >= 0)
    b->len += cbor_encode_uint((uint64_t)v, ROOM(b));
  else
    b->len += cbor_encode_negint((uint64_t)(-1 - v), ROOM(b));
  return 0;
}

static inline int put_simple(troupe_buf *b, uint8_t byte) {
  int rc = need(b, 1);
  if (rc) return rc;
  b->data[b->len++] = byte;
  return 0;
}

static int put_text(troupe_buf *b, const char *s, size_t n) {
  int rc = need(b, 9 + n);
  if (rc) return rc;
  b->len += cbor_encode_string_start(n, ROOM(b));
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

static int put_bytes(troupe_buf *b, const uint8_t *p, size_t n) {
  int rc = need(b, 9 + n);
  if (rc) return rc;
  b->len += cbor_encode_bytestring_start(n, ROOM(b));
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

/* A float as an IEEE half, when that is exact. */
static bool half_of(float f, uint16_t *h) {
  uint32_t bits;
  memcpy(&bits, &f, 4);
  uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
  uint32_t exp = (bits >> 23) & 0xFFu, mant = bits & 0x7FFFFFu;
  if (exp == 0xFF) {          /* infinities (NaN is handled by callers) */
    if (mant) return false;
    *h = sign | 0x7C00u;
    return true;
  }
  if (exp == 0) {             /* zero; float subnormals are below half's */
    if (mant) return false;
    *h = sign;
    return true;
  }
  int e = (int)exp - 127;
  if (e > 15 || e < -24) return false;
  if (e >= -14) {
    if (mant & 0x1FFFu) return false;
    *h = (uint16_t)(sign | (uint32_t)(e + 15) << 10 | mant >> 13);
    return true;
  }
  /* A half subnormal: m * 2^-24 with m < 1024. */
  uint32_t full = 0x800000u | mant;
  unsigned shift = (unsigned)(-(e + 1));
  if (full & ((1u << shift) - 1)) return false;
  *h = (uint16_t)(sign | (full >> shift));
  return true;
}

static int put_half(troupe_buf *b, uint16_t h) {
  int rc = need(b, 3);
  if (rc) return rc;
  b->data[b->len] = 0xF9;
  b->data[b->len + 1] = (uint8_t)(h >> 8);
  b->data[b->len + 2] = (uint8_t)h;
  b->len += 3;
  return 0;
}

/* Shortest exact form: half, single or double; every NaN as f97e00. */
static int put_double(troupe_buf *b, double d) {
  if (isnan(d)) return put_half(b, 0x7E00);
  float f = (float)d;
  double back = (double)f;
  if (memcmp(&back, &d, sizeof d) == 0) {
    uint16_t h;
    if (half_of(f, &h)) return put_half(b, h);
    int rc = need(b, 5);
    if (rc) return rc;
    b->len += cbor_encode_single(f, ROOM(b));
    return 0;
  }
  int rc = need(b, 9);
  if (rc) return rc;
  b->len += cbor_encode_double(d, ROOM(b));
  return 0;
}

static int enc_value(enc *e, const troupe_type *t, const uint8_t *v,
                     uint32_t depth);

/* Copy a pre-encoded key: keys are short, and both sides have
 * TROUPE__KEY_SLACK bytes to spare, so most take two word moves. */
static inline void copy_key(uint8_t *o, const uint8_t *k, size_t n) {
  if (TROUPE_LIKELY(n <= 16)) {
    uint64_t a, b;
    memcpy(&a, k, 8);
    memcpy(&b, k + 8, 8);
    memcpy(o, &a, 8);
    memcpy(o + 8, &b, 8);
  } else {
    memcpy(o, k, n);
  }
}

static int enc_ref(enc *e, const troupe_type *t, const troupe_field *f,
                   const uint8_t *p) {
  troupe_ref ref;
  memcpy(&ref, p, sizeof ref);
  if (troupe_ref_is_none(ref)) return put_simple(e->out, 0xF6);
  char small[256];
  int n = e->to_uri(e->opts->system, ref, small, sizeof small);
  if (n < 0) return n;
  if ((size_t)n < sizeof small) return put_text(e->out, small, (size_t)n);
  char *big = troupe__tmalloc((size_t)n + 1);
  if (!big) return troupe__err(TROUPE_ENOMEM, "ref URI: no memory");
  int m = e->to_uri(e->opts->system, ref, big, (size_t)n + 1);
  int rc;
  if (m < 0) rc = m;
  else if (m > n)
    rc = troupe__err(TROUPE_EINVAL, "type '%s' field '%s': ref URI grew",
                     t->manifest, f->name);
  else rc = put_text(e->out, big, (size_t)m);
  free(big);
  return rc;
}

static int enc_elem(enc *e, const troupe_type *t, const troupe_field *f,
                    const uint8_t *p, uint32_t depth) {
  troupe_buf *b = e->out;
  switch (f->kind) {
    case TROUPE_K_I8: return put_int(b, *(const int8_t *)p);
    case TROUPE_K_I16: { int16_t x; memcpy(&x, p, 2); return put_int(b, x); }
    case TROUPE_K_I32: { int32_t x; memcpy(&x, p, 4); return put_int(b, x); }
    case TROUPE_K_I64: { int64_t x; memcpy(&x, p, 8); return put_int(b, x); }
    case TROUPE_K_U8: return put_uint(b, *p);
    case TROUPE_K_U16: { uint16_t x; memcpy(&x, p, 2); return put_uint(b, x); }
    case TROUPE_K_U32: { uint32_t x; memcpy(&x, p, 4); return put_uint(b, x); }
    case TROUPE_K_U64: { uint64_t x; memcpy(&x, p, 8); return put_uint(b, x); }
    case TROUPE_K_F32: { float x; memcpy(&x, p, 4); return put_double(b, x); }
    case TROUPE_K_F64: { double x; memcpy(&x, p, 8); return put_double(b, x); }
    case TROUPE_K_BOOL: return put_simple(b, *p ? 0xF5 : 0xF4);
    case TROUPE_K_STRING: {
      const char *s;
      memcpy(&s, p, sizeof s);
      if (!s) return put_simple(b, 0xF6);
      size_t n = strlen(s);
      if (!troupe__utf8_valid((const uint8_t *)s, n))
        return troupe__err(TROUPE_EINVAL,
                           "type '%s' field '%s': string is not UTF-8",
                           t->manifest, f->name);
      return put_text(b, s, n);
    }
    case TROUPE_K_BYTES: {
      const troupe_bytes *x = (const troupe_bytes *)p;
      return put_bytes(b, x->data, x->data ? x->len : 0);
    }
    case TROUPE_K_REF:
      return enc_ref(e, t, f, p);
    case TROUPE_K_NESTED:
      return enc_value(e, f->type, p, depth + 1);
    default:
      return troupe__err(TROUPE_EINVAL, "type '%s' field '%s': bad kind",
                         t->manifest, f->name);
  }
}

static int enc_value(enc *e, const troupe_type *t, const uint8_t *v,
                     uint32_t depth) {
  if (TROUPE_UNLIKELY(depth > e->max_depth))
    return troupe__err(TROUPE_ETOOBIG, "type '%s': nested deeper than %u",
                       t->manifest, e->max_depth);
  int rc;
  const troupe__tinfo *ti = troupe__tinfo_get(t, &rc);
  if (TROUPE_UNLIKELY(!ti)) return rc;
  if (t->ops && t->ops->encode) return t->ops->encode(t, v, e->out);
  troupe_buf *b = e->out;
  uint32_t n = ti->nfields;
  if (ti->nopt)
    for (uint32_t i = 0; i < ti->nfields; i++) {
      const troupe_field *f = &t->fields[i];
      if ((f->flags & TROUPE_FF_OPTIONAL) && !v[f->present_offset]) n--;
    }
  if ((rc = need(b, 9))) return rc;
  b->len += cbor_encode_map_start(n, ROOM(b));
  for (uint32_t k = 0; k < ti->nfields; k++) {
    uint32_t i = ti->order[k];
    const troupe_field *f = &t->fields[i];
    if ((f->flags & TROUPE_FF_OPTIONAL) && !v[f->present_offset]) continue;
    const troupe__finfo *fi = &ti->f[i];
    if ((rc = need(b, (size_t)fi->keylen + TROUPE__KEY_SLACK))) return rc;
    copy_key(b->data + b->len, fi->key, fi->keylen);
    b->len += fi->keylen;
    const uint8_t *p = v + f->offset;
    switch (f->shape) {
      case TROUPE_FS_SCALAR:
        rc = enc_elem(e, t, f, p, depth);
        break;
      case TROUPE_FS_ARRAY:
        if ((rc = need(b, 9))) return rc;
        b->len += cbor_encode_array_start(f->count, ROOM(b));
        for (uint32_t j = 0; j < f->count && !rc; j++)
          rc = enc_elem(e, t, f, p + (size_t)j * f->elem_size, depth);
        break;
      default: {
        const troupe_vec *vec = (const troupe_vec *)p;
        size_t len = vec->items ? vec->len : 0;
        if ((rc = need(b, 9))) return rc;
        b->len += cbor_encode_array_start(len, ROOM(b));
        for (size_t j = 0; j < len && !rc; j++)
          rc = enc_elem(e, t, f, (const uint8_t *)vec->items + j * f->elem_size,
                        depth);
        break;
      }
    }
    if (rc) return rc;
  }
  return 0;
}

int troupe__encode_value(const troupe_type *t, const void *value,
                         troupe_buf *out, const troupe_codec_opts *opts,
                         uint32_t depth, uint32_t max_depth) {
  enc e = {out, opts ? opts : &troupe__codec_default_opts,
           opts && opts->ref_to_uri ? opts->ref_to_uri : troupe__ref_to_uri,
           max_depth};
  return enc_value(&e, t, value, depth);
}

int troupe_encode(const troupe_type *t, const void *value, troupe_buf *out,
                  const troupe_codec_opts *opts) {
  if (!t || !value || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_encode: NULL argument");
  /* a value with bytes but no field table or codec is local-only: encoding
   * it as an empty map would silently lose it */
  if (t->size && !t->nfields && !(t->ops && t->ops->encode))
    return troupe__err(TROUPE_EUNSUPPORTED,
                       "type '%s' has no field table or codec: it cannot be "
                       "encoded (local messages only)",
                       t->manifest ? t->manifest : "?");
  uint32_t max_depth = opts && opts->limits && opts->limits->max_depth
                           ? opts->limits->max_depth
                           : troupe__default_max_depth();
  size_t saved = out->len;
  int rc = troupe__encode_value(t, value, out, opts, 1, max_depth);
  if (rc) out->len = saved;
  return rc;
}

/* ================================================================== */
/* Decoding                                                            */

enum {
  T_UINT, T_NEG, T_BYTES, T_TEXT, T_BYTES_INDEF, T_TEXT_INDEF, T_ARRAY,
  T_ARRAY_INDEF, T_MAP, T_MAP_INDEF, T_TAG, T_F16, T_F32, T_F64, T_BOOL,
  T_NULL, T_UNDEF, T_BREAK
};

static const char *const tok_names[] = {
    "unsigned integer", "negative integer", "byte string", "text string",
    "indefinite byte string", "indefinite text string", "array",
    "indefinite array", "map", "indefinite map", "tag", "half float",
    "float", "double", "bool", "null", "undefined", "break"};

typedef struct tok {
  int k;
  bool b;
  uint64_t u;     /* integer value (negative: -1 - u), length, tag */
  double f;
  const uint8_t *s;
} tok;

/* libcbor callbacks: each records the head it saw into the token. */
static void cb_u8(void *c, uint8_t v) { tok *t = c; t->k = T_UINT; t->u = v; }
static void cb_u16(void *c, uint16_t v) { tok *t = c; t->k = T_UINT; t->u = v; }
static void cb_u32(void *c, uint32_t v) { tok *t = c; t->k = T_UINT; t->u = v; }
static void cb_u64(void *c, uint64_t v) { tok *t = c; t->k = T_UINT; t->u = v; }
static void cb_n8(void *c, uint8_t v) { tok *t = c; t->k = T_NEG; t->u = v; }
static void cb_n16(void *c, uint16_t v) { tok *t = c; t->k = T_NEG; t->u = v; }
static void cb_n32(void *c, uint32_t v) { tok *t = c; t->k = T_NEG; t->u = v; }
static void cb_n64(void *c, uint64_t v) { tok *t = c; t->k = T_NEG; t->u = v; }
static void cb_bytes(void *c, cbor_data d, size_t n) {
  tok *t = c; t->k = T_BYTES; t->s = d; t->u = n;
}
static void cb_bytes_indef(void *c) { ((tok *)c)->k = T_BYTES_INDEF; }
static void cb_text(void *c, cbor_data d, size_t n) {
  tok *t = c; t->k = T_TEXT; t->s = d; t->u = n;
}
static void cb_text_indef(void *c) { ((tok *)c)->k = T_TEXT_INDEF; }
static void cb_array(void *c, size_t n) { tok *t = c; t->k = T_ARRAY; t->u = n; }
static void cb_array_indef(void *c) { ((tok *)c)->k = T_ARRAY_INDEF; }
static void cb_map(void *c, size_t n) { tok *t = c; t->k = T_MAP; t->u = n; }
static void cb_map_indef(void *c) { ((tok *)c)->k = T_MAP_INDEF; }
static void cb_tag(void *c, uint64_t v) { tok *t = c; t->k = T_TAG; t->u = v; }
static void cb_f2(void *c, float v) { tok *t = c; t->k = T_F16; t->f = v; }
static void cb_f4(void *c, float v) { tok *t = c; t->k = T_F32; t->f = v; }
static void cb_f8(void *c, double v) { tok *t = c; t->k = T_F64; t->f = v; }
static void cb_undef(void *c) { ((tok *)c)->k = T_UNDEF; }
static void cb_null(void *c) { ((tok *)c)->k = T_NULL; }
static void cb_bool(void *c, bool v) { tok *t = c; t->k = T_BOOL; t->b = v; }
static void cb_break(void *c) { ((tok *)c)->k = T_BREAK; }

/* libcbor 0.8's member names are swapped for strings and collections
 * (byte_string_start is the indefinite start, array_start the definite
 * one), so the table is written by name. */
static const struct cbor_callbacks cbs = {
    .uint8 = cb_u8, .uint16 = cb_u16, .uint32 = cb_u32, .uint64 = cb_u64,
    .negint8 = cb_n8, .negint16 = cb_n16, .negint32 = cb_n32,
    .negint64 = cb_n64,
    .byte_string_start = cb_bytes_indef, .byte_string = cb_bytes,
    .string = cb_text, .string_start = cb_text_indef,
    .indef_array_start = cb_array_indef, .array_start = cb_array,
    .indef_map_start = cb_map_indef, .map_start = cb_map,
    .tag = cb_tag, .float2 = cb_f2, .float4 = cb_f4, .float8 = cb_f8,
    .undefined = cb_undef, .null = cb_null, .boolean = cb_bool,
    .indef_break = cb_break};

typedef struct dec {
  const uint8_t *start, *p, *end;
  troupe_limits lim;
  size_t alloc;                   /* bytes allocated so far */
  const troupe_codec_opts *opts;
  troupe_ref_from_uri_fn from_uri;
  const troupe_type *ct;          /* where we are, for error messages */
  const troupe_field *cf;
} dec;

static int where(dec *d, char *buf, size_t size) {
  if (d->ct && d->cf)
    return snprintf(buf, size, "type '%s' v%u field '%s'", d->ct->manifest,
                    d->ct->version, d->cf->name);
  if (d->ct)
    return snprintf(buf, size, "type '%s' v%u", d->ct->manifest,
                    d->ct->version);
  return snprintf(buf, size, "CBOR item");
}

static int dfail(dec *d, int code, const char *fmt, ...) TROUPE_PRINTF(3, 4);
static int dfail(dec *d, int code, const char *fmt, ...) {
  char w[320], m[256];
  where(d, w, sizeof w);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  return troupe__err(code, "%s: %s", w, m);
}
#define DFAIL(d, code, ...) dfail((d), (code), __VA_ARGS__)

/*
 * The common heads are read inline: integers, definite-length strings,
 * arrays and maps (major types 0-5 with an argument in the head). A call
 * into libcbor per head costs more than the rest of decoding a field, and
 * these are most heads. Everything else (floats, simple values, tags,
 * indefinite lengths, reserved values, truncation) goes to libcbor's
 * streaming decoder. The two must agree exactly: troupe__cbor_head_check
 * compares them and test_codec runs it over random input.
 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline uint32_t be32(uint32_t x) { return __builtin_bswap32(x); }
static inline uint64_t be64(uint64_t x) { return __builtin_bswap64(x); }
#else
static inline uint32_t be32(uint32_t x) { return x; }
static inline uint64_t be64(uint64_t x) { return x; }
#endif

static inline bool fast_head(const uint8_t *p, size_t avail, tok *t,
                             size_t *used) {
  uint8_t ib = *p;
  unsigned major = ib >> 5, ai = ib & 31u;
  if (major > 5 || ai > 27) return false;
  uint64_t v;
  size_t hl;
  if (ai < 24) {
    v = ai;
    hl = 1;
  } else {
    hl = 1 + ((size_t)1 << (ai - 24));
    if (avail < hl) return false;
    switch (ai) {
      case 24: v = p[1]; break;
      case 25: v = (uint64_t)p[1] << 8 | p[2]; break;
      case 26: {
        uint32_t w;
        memcpy(&w, p + 1, 4);
        v = be32(w);
        break;
      }
      default:
        memcpy(&v, p + 1, 8);
        v = be64(v);
        break;
    }
  }
  static const int kinds[6] = {T_UINT, T_NEG, T_BYTES, T_TEXT, T_ARRAY, T_MAP};
  t->k = kinds[major];
  t->u = v;
  if (major == 2 || major == 3) {
    if (v > avail - hl) return false;
    t->s = p + hl;
    *used = hl + (size_t)v;
  } else {
    *used = hl;
  }
  return true;
}

int troupe__cbor_head_check(const uint8_t *p, size_t n) {
  tok a, b;
  size_t used;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if (!n || !fast_head(p, n, &a, &used)) return 0;
  struct cbor_decoder_result r = cbor_stream_decode(p, n, &cbs, &b);
  if (r.status != CBOR_DECODER_FINISHED || r.read != used || a.k != b.k ||
      a.u != b.u || ((a.k == T_TEXT || a.k == T_BYTES) && a.s != b.s))
    return -1;
  return 0;
}

static int next(dec *d, tok *t) {
  if (TROUPE_UNLIKELY(d->p >= d->end))
    return DFAIL(d, TROUPE_EDECODE, "input truncated at offset %zu",
                 (size_t)(d->p - d->start));
  size_t used;
  if (TROUPE_LIKELY(fast_head(d->p, (size_t)(d->end - d->p), t, &used))) {
    d->p += used;
    return 0;
  }
  struct cbor_decoder_result r =
      cbor_stream_decode(d->p, (size_t)(d->end - d->p), &cbs, t);
  if (TROUPE_UNLIKELY(r.status != CBOR_DECODER_FINISHED)) {
    if (r.status == CBOR_DECODER_NEDATA)
      return DFAIL(d, TROUPE_EDECODE, "input truncated at offset %zu",
                   (size_t)(d->p - d->start));
    return DFAIL(d, TROUPE_EDECODE,
                 "malformed or unsupported CBOR head 0x%02x at offset %zu",
                 *d->p, (size_t)(d->p - d->start));
  }
  d->p += r.read;
  return 0;
}

static int account(dec *d, size_t n) {
  if (TROUPE_UNLIKELY(n > d->lim.max_alloc - d->alloc))
    return DFAIL(d, TROUPE_ETOOBIG, "decoding would allocate more than %zu "
                 "bytes", d->lim.max_alloc);
  d->alloc += n;
  return 0;
}

static int skip_rest(dec *d, const tok *t, uint32_t depth);

static int skip_item(dec *d, uint32_t depth) {
  tok t;
  int rc = next(d, &t);
  if (rc) return rc;
  if (t.k == T_BREAK)
    return DFAIL(d, TROUPE_EDECODE, "unexpected break at offset %zu",
                 (size_t)(d->p - d->start - 1));
  return skip_rest(d, &t, depth);
}

/* Skip whatever follows the head t (its elements, chunks or tagged item).
 * Every element costs at least one input byte, so the loops are bounded by
 * the input even when a count is huge. */
static int skip_rest(dec *d, const tok *t, uint32_t depth) {
  int rc = 0;
  switch (t->k) {
    case T_ARRAY: case T_MAP: case T_ARRAY_INDEF: case T_MAP_INDEF:
    case T_TAG:
      if (depth >= d->lim.max_depth)
        return DFAIL(d, TROUPE_ETOOBIG, "nested deeper than %u",
                     d->lim.max_depth);
      break;
    default:
      break;
  }
  switch (t->k) {
    case T_ARRAY:
      for (uint64_t i = 0; i < t->u && !rc; i++) rc = skip_item(d, depth + 1);
      return rc;
    case T_MAP:
      for (uint64_t i = 0; i < t->u && !rc; i++) {
        rc = skip_item(d, depth + 1);
        if (!rc) rc = skip_item(d, depth + 1);
      }
      return rc;
    case T_ARRAY_INDEF:
    case T_MAP_INDEF:
      for (uint64_t i = 0;; i++) {
        tok e;
        if ((rc = next(d, &e))) return rc;
        if (e.k == T_BREAK) {
          if (t->k == T_MAP_INDEF && (i & 1))
            return DFAIL(d, TROUPE_EDECODE, "%s", "map with a key but no value");
          return 0;
        }
        if ((rc = skip_rest(d, &e, depth + 1))) return rc;
      }
    case T_BYTES_INDEF:
    case T_TEXT_INDEF:
      for (;;) {
        tok e;
        if ((rc = next(d, &e))) return rc;
        if (e.k == T_BREAK) return 0;
        if (e.k != (t->k == T_BYTES_INDEF ? T_BYTES : T_TEXT))
          return DFAIL(d, TROUPE_EDECODE, "bad chunk (%s) in an indefinite "
                       "string", tok_names[e.k]);
      }
    case T_TAG:
      return skip_item(d, depth + 1);
    case T_BREAK:
      return DFAIL(d, TROUPE_EDECODE, "unexpected break at offset %zu",
                   (size_t)(d->p - d->start - 1));
    default:
      return 0;
  }
}

static void dec_init(dec *d, const uint8_t *data, size_t len,
                     const troupe_codec_opts *opts) {
  d->start = d->p = data;
  d->end = data + len;
  troupe__limits_resolve(opts ? opts->limits : NULL, &d->lim);
  d->alloc = 0;
  d->opts = opts ? opts : &troupe__codec_default_opts;
  d->from_uri = opts && opts->ref_from_uri ? opts->ref_from_uri
                                           : troupe__ref_from_uri;
  d->ct = NULL;
  d->cf = NULL;
}

int troupe__cbor_skip(const uint8_t *data, size_t len,
                      const troupe_limits *lim, size_t *used) {
  dec d;
  troupe_codec_opts o = {lim, NULL, NULL, NULL};
  dec_init(&d, data, len, &o);
  int rc = skip_item(&d, 0);
  if (!rc) *used = (size_t)(d.p - d.start);
  return rc;
}

static int wrong(dec *d, const char *want, const tok *t) {
  return DFAIL(d, TROUPE_EDECODE, "expected %s, got %s", want,
               tok_names[t->k]);
}

static int dec_struct(dec *d, const troupe_type *t, uint8_t *v, const tok *tk,
                      uint32_t depth);

/* A value of a custom-codec type: hand its exact bytes to ops->decode. */
static int dec_custom(dec *d, const troupe_type *t, uint8_t *v,
                      uint32_t depth) {
  const uint8_t *s = d->p;
  const troupe_type *ct = d->ct;
  const troupe_field *cf = d->cf;
  int rc = skip_item(d, depth);
  if (rc) return rc;
  size_t n = (size_t)(d->p - s);
  if (n > d->lim.max_string)
    return DFAIL(d, TROUPE_ETOOBIG, "custom item of %zu bytes (limit %zu)", n,
                 d->lim.max_string);
  rc = t->ops->decode(t, s, n, v);
  d->ct = ct;
  d->cf = cf;
  return rc;
}

static int dec_int(dec *d, const tok *t, int64_t min, uint64_t max,
                   int64_t *out) {
  if (t->k == T_UINT) {
    if (t->u > max)
      return DFAIL(d, TROUPE_EDECODE, "%llu out of range",
                   (unsigned long long)t->u);
    *out = (int64_t)t->u;
    return 0;
  }
  if (t->k == T_NEG) {
    /* value = -1 - u >= min  <=>  u <= -1 - min */
    if (min == 0 || t->u > (uint64_t)(-1 - min))
      return DFAIL(d, TROUPE_EDECODE, "-1-%llu out of range",
                   (unsigned long long)t->u);
    *out = -1 - (int64_t)t->u;
    return 0;
  }
  return wrong(d, "integer", t);
}

static int dec_elem(dec *d, const troupe_type *ot, const troupe_field *f,
                    uint8_t *p, uint32_t depth) {
  if (f->kind == TROUPE_K_NESTED && f->type->ops && f->type->ops->decode)
    return dec_custom(d, f->type, p, depth + 1);
  tok t;
  int rc = next(d, &t);
  if (rc) return rc;
  int64_t i;
  switch (f->kind) {
    case TROUPE_K_I8:
      if ((rc = dec_int(d, &t, INT8_MIN, INT8_MAX, &i))) return rc;
      *(int8_t *)p = (int8_t)i;
      return 0;
    case TROUPE_K_I16: {
      if ((rc = dec_int(d, &t, INT16_MIN, INT16_MAX, &i))) return rc;
      int16_t x = (int16_t)i;
      memcpy(p, &x, 2);
      return 0;
    }
    case TROUPE_K_I32: {
      if ((rc = dec_int(d, &t, INT32_MIN, INT32_MAX, &i))) return rc;
      int32_t x = (int32_t)i;
      memcpy(p, &x, 4);
      return 0;
    }
    case TROUPE_K_I64:
      if ((rc = dec_int(d, &t, INT64_MIN, INT64_MAX, &i))) return rc;
      memcpy(p, &i, 8);
      return 0;
    case TROUPE_K_U8:
    case TROUPE_K_U16:
    case TROUPE_K_U32:
    case TROUPE_K_U64: {
      if (t.k != T_UINT) {
        if (t.k == T_NEG)
          return DFAIL(d, TROUPE_EDECODE, "%s", "negative value for an "
                       "unsigned field");
        return wrong(d, "unsigned integer", &t);
      }
      uint64_t max = f->elem_size == 8 ? UINT64_MAX
                                       : (1ull << (8 * f->elem_size)) - 1;
      if (t.u > max)
        return DFAIL(d, TROUPE_EDECODE, "%llu out of range",
                     (unsigned long long)t.u);
      switch (f->elem_size) {
        case 1: *p = (uint8_t)t.u; break;
        case 2: { uint16_t x = (uint16_t)t.u; memcpy(p, &x, 2); break; }
        case 4: { uint32_t x = (uint32_t)t.u; memcpy(p, &x, 4); break; }
        default: memcpy(p, &t.u, 8); break;
      }
      return 0;
    }
    case TROUPE_K_F32: {
      if (t.k != T_F16 && t.k != T_F32 && t.k != T_F64)
        return wrong(d, "float", &t);
      float x = (float)t.f;
      if (t.k == T_F64 && !isnan(t.f) && (double)x != t.f)
        return DFAIL(d, TROUPE_EDECODE, "%g does not fit a float", t.f);
      memcpy(p, &x, 4);
      return 0;
    }
    case TROUPE_K_F64:
      if (t.k != T_F16 && t.k != T_F32 && t.k != T_F64)
        return wrong(d, "float", &t);
      memcpy(p, &t.f, 8);
      return 0;
    case TROUPE_K_BOOL:
      if (t.k != T_BOOL) return wrong(d, "bool", &t);
      *(bool *)p = t.b;
      return 0;
    case TROUPE_K_STRING: {
      if (t.k == T_NULL) return 0;
      if (t.k != T_TEXT) return wrong(d, "text string", &t);
      size_t n = (size_t)t.u;
      if (n > d->lim.max_string)
        return DFAIL(d, TROUPE_ETOOBIG, "string of %zu bytes (limit %zu)", n,
                     d->lim.max_string);
      if (TROUPE_UNLIKELY(!troupe__text_valid(t.s, n))) {
        if (memchr(t.s, 0, n))
          return DFAIL(d, TROUPE_EDECODE, "%s", "text contains a NUL byte");
        return DFAIL(d, TROUPE_EDECODE, "%s", "text is not valid UTF-8");
      }
      if ((rc = account(d, n + 1))) return rc;
      char *s = troupe__tmalloc(n + 1);
      if (!s) return troupe__err(TROUPE_ENOMEM, "decode: no memory");
      memcpy(s, t.s, n);
      s[n] = '\0';
      memcpy(p, &s, sizeof s);
      return 0;
    }
    case TROUPE_K_BYTES: {
      if (t.k == T_NULL) return 0;
      if (t.k != T_BYTES) return wrong(d, "byte string", &t);
      size_t n = (size_t)t.u;
      if (n > d->lim.max_string)
        return DFAIL(d, TROUPE_ETOOBIG, "%zu bytes (limit %zu)", n,
                     d->lim.max_string);
      if (n == 0) return 0;
      if ((rc = account(d, n))) return rc;
      uint8_t *c = troupe__tmalloc(n);
      if (!c) return troupe__err(TROUPE_ENOMEM, "decode: no memory");
      memcpy(c, t.s, n);
      troupe_bytes *b = (troupe_bytes *)p;
      b->data = c;
      b->len = n;
      return 0;
    }
    case TROUPE_K_REF: {
      if (t.k == T_NULL) return 0;
      if (t.k != T_TEXT) return wrong(d, "text string (ref URI)", &t);
      size_t n = (size_t)t.u;
      if (n > d->lim.max_string)
        return DFAIL(d, TROUPE_ETOOBIG, "ref URI of %zu bytes", n);
      troupe_ref ref = TROUPE_REF_NONE;
      rc = d->from_uri(d->opts->system, (const char *)t.s, n, &ref);
      if (rc < 0) return rc;
      memcpy(p, &ref, sizeof ref);
      return 0;
    }
    case TROUPE_K_NESTED: {
      const troupe_type *ct = d->ct;
      const troupe_field *cf = d->cf;
      rc = dec_struct(d, f->type, p, &t, depth + 1);
      d->ct = ct;
      d->cf = cf;
      return rc;
    }
    default:
      (void)ot;
      return DFAIL(d, TROUPE_EINVAL, "%s", "bad kind");
  }
}

static int dec_field(dec *d, const troupe_type *t, const troupe_field *f,
                     uint8_t *v, uint32_t depth) {
  uint8_t *p = v + f->offset;
  int rc;
  switch (f->shape) {
    case TROUPE_FS_SCALAR:
      rc = dec_elem(d, t, f, p, depth);
      break;
    case TROUPE_FS_ARRAY: {
      tok a;
      if ((rc = next(d, &a))) return rc;
      if (a.k == T_NULL) break;
      if (a.k != T_ARRAY) return wrong(d, "array", &a);
      if (a.u > f->count)
        return DFAIL(d, TROUPE_EDECODE, "%llu elements, the array holds %u",
                     (unsigned long long)a.u, f->count);
      if (depth >= d->lim.max_depth)
        return DFAIL(d, TROUPE_ETOOBIG, "nested deeper than %u",
                     d->lim.max_depth);
      for (uint64_t k = 0; k < a.u && !rc; k++)
        rc = dec_elem(d, t, f, p + (size_t)k * f->elem_size, depth + 1);
      break;
    }
    default: {
      tok a;
      if ((rc = next(d, &a))) return rc;
      if (a.k == T_NULL) break;
      if (a.k != T_ARRAY) return wrong(d, "array", &a);
      if (a.u > d->lim.max_items)
        return DFAIL(d, TROUPE_ETOOBIG, "%llu elements (limit %zu)",
                     (unsigned long long)a.u, d->lim.max_items);
      if (a.u > (uint64_t)(d->end - d->p))
        return DFAIL(d, TROUPE_EDECODE, "%llu elements but %zu bytes left",
                     (unsigned long long)a.u, (size_t)(d->end - d->p));
      if (depth >= d->lim.max_depth)
        return DFAIL(d, TROUPE_ETOOBIG, "nested deeper than %u",
                     d->lim.max_depth);
      if (a.u == 0) break;
      size_t n = (size_t)a.u, bytes = n * f->elem_size;
      if ((rc = account(d, bytes))) return rc;
      void *items = troupe__tcalloc(n, f->elem_size);
      if (!items) return troupe__err(TROUPE_ENOMEM, "decode: no memory");
      troupe_vec *vec = (troupe_vec *)p;
      vec->items = items;
      vec->len = n;
      for (size_t k = 0; k < n && !rc; k++)
        rc = dec_elem(d, t, f, (uint8_t *)items + k * f->elem_size, depth + 1);
      break;
    }
  }
  if (!rc && (f->flags & TROUPE_FF_OPTIONAL)) v[f->present_offset] = 1;
  return rc;
}

/* Whether the input at a (avail bytes left) starts with the key k of n
 * bytes; k has TROUPE__KEY_SLACK readable bytes after it. */
static inline bool keyeq(const uint8_t *a, size_t avail, const uint8_t *k,
                         size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n <= 16 && avail >= 16) {
    uint64_t x0, y0, x1, y1;
    memcpy(&x0, a, 8);
    memcpy(&y0, k, 8);
    memcpy(&x1, a + 8, 8);
    memcpy(&y1, k + 8, 8);
    uint64_t m0 = n >= 8 ? ~0ull : (1ull << (8 * n)) - 1;
    uint64_t m1 = n <= 8 ? 0 : n == 16 ? ~0ull : (1ull << (8 * (n - 8))) - 1;
    return (((x0 ^ y0) & m0) | ((x1 ^ y1) & m1)) == 0;
  }
#endif
  if (avail < n) return false;
  return memcmp(a, k, n) == 0;
}

/* The field whose name is key, or -1. Input in canonical order hits
 * `*cursor` at once; anything else costs a binary search. */
static int find_field(const troupe__tinfo *ti, const troupe_type *t,
                      const uint8_t *key, size_t n, uint32_t *cursor) {
  uint32_t c = *cursor;
  if (c < ti->nfields) {
    uint32_t i = ti->order[c];
    if (ti->f[i].namelen == n && memcmp(t->fields[i].name, key, n) == 0) {
      *cursor = c + 1;
      return (int)i;
    }
  }
  uint32_t lo = 0, hi = ti->nfields;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2, i = ti->order[mid];
    int cmp = troupe__keycmp(t->fields[i].name, ti->f[i].namelen,
                             (const char *)key, n);
    if (cmp == 0) {
      *cursor = mid + 1;
      return (int)i;
    }
    if (cmp < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

static int dec_struct(dec *d, const troupe_type *t, uint8_t *v, const tok *tk,
                      uint32_t depth) {
  d->ct = t;
  d->cf = NULL;
  if (depth > d->lim.max_depth)
    return DFAIL(d, TROUPE_ETOOBIG, "nested deeper than %u", d->lim.max_depth);
  int rc;
  const troupe__tinfo *ti = troupe__tinfo_get(t, &rc);
  if (!ti) return rc;
  if (tk->k == T_NULL) return 0;
  if (tk->k != T_MAP && tk->k != T_MAP_INDEF) return wrong(d, "map", tk);
  bool indef = tk->k == T_MAP_INDEF;
  if (!indef && tk->u > d->lim.max_items)
    return DFAIL(d, TROUPE_ETOOBIG, "map of %llu entries (limit %zu)",
                 (unsigned long long)tk->u, d->lim.max_items);
  uint64_t seen[(TROUPE_FIELDS_MAX + 63) / 64];
  seen[0] = 0;
  if (TROUPE_UNLIKELY(ti->nfields > 64))
    memset(seen, 0, (ti->nfields + 63) / 64 * sizeof seen[0]);
  uint32_t cursor = 0;
  for (uint64_t e = 0; indef || e < tk->u; e++) {
    if (indef && e >= d->lim.max_items)
      return DFAIL(d, TROUPE_ETOOBIG, "map of more than %zu entries",
                   d->lim.max_items);
    int idx = -1;
    /* Canonical input: the next key is the next field's pre-encoded key,
     * compared in place without decoding a head. */
    if (cursor < ti->nfields) {
      uint32_t i = ti->order[cursor];
      const troupe__finfo *fi = &ti->f[i];
      if (keyeq(d->p, (size_t)(d->end - d->p), fi->key, fi->keylen)) {
        d->p += fi->keylen;
        cursor++;
        idx = (int)i;
        goto have_field;
      }
    }
    tok key;
    if ((rc = next(d, &key))) return rc;
    if (key.k == T_BREAK && indef) break;
    if (key.k == T_TEXT) {
      idx = find_field(ti, t, key.s, (size_t)key.u, &cursor);
    } else if ((rc = skip_rest(d, &key, depth))) {
      return rc;
    }
    if (idx < 0) {              /* unknown field: skip its value */
      if ((rc = skip_item(d, depth))) return rc;
      continue;
    }
  have_field:;
    const troupe_field *f = &t->fields[idx];
    d->cf = f;
    if (seen[idx / 64] & (1ull << (idx % 64)))
      return DFAIL(d, TROUPE_EDECODE, "%s", "duplicate field");
    seen[idx / 64] |= 1ull << (idx % 64);
    if ((rc = dec_field(d, t, f, v, depth))) return rc;
    d->ct = t;
    d->cf = NULL;
  }
  return 0;
}

int troupe_decode(const troupe_type *t, const uint8_t *data, size_t len,
                  void *value, const troupe_codec_opts *opts) {
  if (!t || !value || (!data && len))
    return troupe__err(TROUPE_EINVAL, "troupe_decode: NULL argument");
  int rc;
  const troupe__tinfo *ti = troupe__tinfo_get(t, &rc);
  if (!ti) return rc;
  memset(value, 0, t->size);
  dec d;
  dec_init(&d, data, len, opts);
  d.ct = t;
  if (t->ops && t->ops->decode) {
    rc = dec_custom(&d, t, value, 1);
  } else {
    tok tk;
    rc = next(&d, &tk);
    if (!rc) rc = dec_struct(&d, t, value, &tk, 1);
  }
  if (!rc && d.p != d.end) {
    d.ct = t;
    d.cf = NULL;
    rc = DFAIL(&d, TROUPE_EDECODE, "%zu trailing bytes",
               (size_t)(d.end - d.p));
  }
  if (rc) {
    troupe_value_free(t, value);
    memset(value, 0, t->size);
  }
  return rc;
}
