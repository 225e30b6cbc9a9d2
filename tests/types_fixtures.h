/*
 * types_fixtures.h: described types used by the type/codec tests and the
 * fuzz target: one of every field kind and shape, a recursive type, custom
 * codecs, test ref hooks and a generator of random values.
 */
#ifndef TYPES_FIXTURES_H
#define TYPES_FIXTURES_H

#include <cbor.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "troupe/troupe.h"

/* ------------------------------------------------------------------ */
/* Ref hooks: "troupe://test/<node>/<uid>"                             */

static inline int fx_to_uri(struct troupe_system *sys, troupe_ref r, char *buf,
                     size_t size) {
  (void)sys;
  return snprintf(buf, size, "troupe://test/%" PRIu64 "/%" PRIu64, r.node,
                  r.uid);
}

static inline int fx_from_uri(struct troupe_system *sys, const char *uri, size_t len,
                       troupe_ref *out) {
  (void)sys;
  char tmp[96];
  if (len >= sizeof tmp || len < 14 || memcmp(uri, "troupe://test/", 14))
    return TROUPE_EINVAL;
  memcpy(tmp, uri, len);
  tmp[len] = '\0';
  char *p = tmp + 14, *e;
  if (*p < '0' || *p > '9') return TROUPE_EINVAL;
  unsigned long long node = strtoull(p, &e, 10);
  if (*e != '/' || e[1] < '0' || e[1] > '9') return TROUPE_EINVAL;
  unsigned long long uid = strtoull(e + 1, &p, 10);
  if (*p) return TROUPE_EINVAL;
  out->node = node;
  out->uid = uid;
  return 0;
}

static const troupe_codec_opts fx_opts = {NULL, NULL, fx_to_uri, fx_from_uri};

/* ------------------------------------------------------------------ */
/* Types                                                               */

typedef struct fx_point {
  int32_t x, y;
} fx_point;
static const troupe_field fx_point_fields[] = {
    TROUPE_FIELD(fx_point, x, I32),
    TROUPE_FIELD(fx_point, y, I32),
};
static troupe_type fx_point_type =
    TROUPE_TYPE("test.Point", 1, fx_point, fx_point_fields);

typedef struct fx_tag {
  char *name;
  troupe_bytes blob;
} fx_tag;
static const troupe_field fx_tag_fields[] = {
    TROUPE_FIELD(fx_tag, name, STRING),
    TROUPE_FIELD(fx_tag, blob, BYTES),
};
static troupe_type fx_tag_type = TROUPE_TYPE("test.Tag", 1, fx_tag, fx_tag_fields);

/* A custom flat codec: encoded as [cents, "EUR"]. */
typedef struct fx_money {
  int64_t cents;
  char cur[4];
} fx_money;

static inline int fx_money_encode(const troupe_type *t, const void *v, troupe_buf *out) {
  (void)t;
  const fx_money *m = v;
  unsigned char tmp[32];
  size_t n = cbor_encode_array_start(2, tmp, sizeof tmp);
  if (m->cents >= 0) n += cbor_encode_uint((uint64_t)m->cents, tmp + n, sizeof tmp - n);
  else n += cbor_encode_negint((uint64_t)(-1 - m->cents), tmp + n, sizeof tmp - n);
  size_t cl = strnlen(m->cur, 3);
  n += cbor_encode_string_start(cl, tmp + n, sizeof tmp - n);
  memcpy(tmp + n, m->cur, cl);
  n += cl;
  return troupe_buf_append(out, tmp, n);
}

static inline int fx_money_decode(const troupe_type *t, const uint8_t *data,
                           size_t len, void *v) {
  (void)t;
  fx_money *m = v;
  struct cbor_load_result res;
  cbor_item_t *it = cbor_load(data, len, &res);
  if (!it) return TROUPE_EDECODE;
  int rc = TROUPE_EDECODE;
  if (cbor_isa_array(it) && cbor_array_is_definite(it) &&
      cbor_array_size(it) == 2) {
    cbor_item_t *a = cbor_array_get(it, 0), *c = cbor_array_get(it, 1);
    if (cbor_is_int(a) && cbor_isa_string(c) && cbor_string_is_definite(c) &&
        cbor_string_length(c) <= 3 && cbor_int_get_width(a) != CBOR_INT_64) {
      int64_t x = (int64_t)cbor_get_int(a);
      m->cents = cbor_isa_negint(a) ? -1 - x : x;
      memcpy(m->cur, cbor_string_handle(c), cbor_string_length(c));
      rc = 0;
    }
    cbor_decref(&a);
    cbor_decref(&c);
  }
  cbor_decref(&it);
  return rc;
}

static inline bool fx_money_equal(const troupe_type *t, const void *a, const void *b) {
  (void)t;
  const fx_money *x = a, *y = b;
  return x->cents == y->cents && strncmp(x->cur, y->cur, 4) == 0;
}

static const troupe_type_ops fx_money_ops = {
    NULL, NULL, fx_money_equal, fx_money_encode, fx_money_decode};
static troupe_type fx_money_type =
    TROUPE_TYPE_OPS("test.Money", 1, fx_money, &fx_money_ops);

/* A custom owning codec: a malloc'd buffer encoded as a byte string. */
typedef struct fx_blob {
  uint8_t *p;
  size_t n;
} fx_blob;

static inline int fx_blob_copy(const troupe_type *t, void *dst, const void *src) {
  (void)t;
  const fx_blob *s = src;
  fx_blob *d = dst;
  if (!s->n) return 0;
  d->p = malloc(s->n);
  if (!d->p) return TROUPE_ENOMEM;
  memcpy(d->p, s->p, s->n);
  d->n = s->n;
  return 0;
}
static inline void fx_blob_free(const troupe_type *t, void *v) {
  (void)t;
  fx_blob *b = v;
  free(b->p);
  b->p = NULL;
  b->n = 0;
}
static inline int fx_blob_encode(const troupe_type *t, const void *v, troupe_buf *out) {
  (void)t;
  const fx_blob *b = v;
  unsigned char h[9];
  size_t n = cbor_encode_bytestring_start(b->n, h, sizeof h);
  int rc = troupe_buf_append(out, h, n);
  if (!rc) rc = troupe_buf_append(out, b->p, b->n);
  return rc;
}
static inline int fx_blob_decode(const troupe_type *t, const uint8_t *data,
                          size_t len, void *v) {
  (void)t;
  fx_blob *b = v;
  if (len < 1 || (data[0] >> 5) != 2 || (data[0] & 31) > 25) return TROUPE_EDECODE;
  size_t h = (data[0] & 31) < 24 ? 1 : (data[0] & 31) == 24 ? 2 : 3;
  if (len < h) return TROUPE_EDECODE;
  size_t n = len - h;
  if (!n) return 0;
  b->p = malloc(n);
  if (!b->p) return TROUPE_ENOMEM;
  memcpy(b->p, data + h, n);
  b->n = n;
  return 0;
}
static const troupe_type_ops fx_blob_ops = {
    fx_blob_copy, fx_blob_free, NULL, fx_blob_encode, fx_blob_decode};
static troupe_type fx_blob_type =
    TROUPE_TYPE_OPS("test.Blob", 1, fx_blob, &fx_blob_ops);

/* A recursive type: a tree of nodes. */
typedef struct fx_node {
  int32_t val;
  troupe_vec kids;  /* fx_node */
} fx_node;
static troupe_type fx_node_type;
static const troupe_field fx_node_fields[] = {
    TROUPE_FIELD(fx_node, val, I32),
    TROUPE_FIELD_NESTED_VEC(fx_node, kids, fx_node, &fx_node_type),
};
static troupe_type fx_node_type =
    TROUPE_TYPE("test.Node", 1, fx_node, fx_node_fields);

/* Every kind and shape. */
typedef struct fx_sink {
  int8_t i8; int16_t i16; int32_t i32; int64_t i64;
  uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
  float f32; double f64; bool b;
  char *s; troupe_bytes by; troupe_ref r;
  fx_point pt; fx_tag tg; fx_money money; fx_blob blob;
  bool has_oi; int32_t oi;
  bool has_os; char *os;
  bool has_opt; fx_point opt;
  bool has_ov; troupe_vec ov;      /* int64_t */
  int16_t a_i16[3]; char *a_s[2]; fx_point a_pt[2]; troupe_ref a_r[2];
  double a_f[2]; bool a_b[2]; troupe_bytes a_by[2]; fx_tag a_tg[2];
  troupe_vec v_u32, v_s, v_tag, v_f32, v_by, v_r, v_i8, v_money, v_blob;
} fx_sink;

static const troupe_field fx_sink_fields[] = {
    TROUPE_FIELD(fx_sink, i8, I8),
    TROUPE_FIELD(fx_sink, i16, I16),
    TROUPE_FIELD(fx_sink, i32, I32),
    TROUPE_FIELD(fx_sink, i64, I64),
    TROUPE_FIELD(fx_sink, u8, U8),
    TROUPE_FIELD(fx_sink, u16, U16),
    TROUPE_FIELD(fx_sink, u32, U32),
    TROUPE_FIELD(fx_sink, u64, U64),
    TROUPE_FIELD(fx_sink, f32, F32),
    TROUPE_FIELD(fx_sink, f64, F64),
    TROUPE_FIELD(fx_sink, b, BOOL),
    TROUPE_FIELD(fx_sink, s, STRING),
    TROUPE_FIELD(fx_sink, by, BYTES),
    TROUPE_FIELD(fx_sink, r, REF),
    TROUPE_FIELD_NESTED(fx_sink, pt, &fx_point_type),
    TROUPE_FIELD_NESTED(fx_sink, tg, &fx_tag_type),
    TROUPE_FIELD_NESTED(fx_sink, money, &fx_money_type),
    TROUPE_FIELD_NESTED(fx_sink, blob, &fx_blob_type),
    TROUPE_FIELD_OPT(fx_sink, oi, I32, has_oi),
    TROUPE_FIELD_OPT(fx_sink, os, STRING, has_os),
    TROUPE_FIELD_NESTED_OPT(fx_sink, opt, &fx_point_type, has_opt),
    TROUPE_FIELD_VEC_OPT(fx_sink, ov, I64, has_ov),
    TROUPE_FIELD_ARRAY(fx_sink, a_i16, I16),
    TROUPE_FIELD_ARRAY(fx_sink, a_s, STRING),
    TROUPE_FIELD_NESTED_ARRAY(fx_sink, a_pt, &fx_point_type),
    TROUPE_FIELD_ARRAY(fx_sink, a_r, REF),
    TROUPE_FIELD_ARRAY(fx_sink, a_f, F64),
    TROUPE_FIELD_ARRAY(fx_sink, a_b, BOOL),
    TROUPE_FIELD_ARRAY(fx_sink, a_by, BYTES),
    TROUPE_FIELD_NESTED_ARRAY(fx_sink, a_tg, &fx_tag_type),
    TROUPE_FIELD_VEC(fx_sink, v_u32, U32),
    TROUPE_FIELD_VEC(fx_sink, v_s, STRING),
    TROUPE_FIELD_NESTED_VEC(fx_sink, v_tag, fx_tag, &fx_tag_type),
    TROUPE_FIELD_VEC(fx_sink, v_f32, F32),
    TROUPE_FIELD_VEC(fx_sink, v_by, BYTES),
    TROUPE_FIELD_VEC(fx_sink, v_r, REF),
    TROUPE_FIELD_VEC(fx_sink, v_i8, I8),
    TROUPE_FIELD_NESTED_VEC(fx_sink, v_money, fx_money, &fx_money_type),
    TROUPE_FIELD_NESTED_VEC(fx_sink, v_blob, fx_blob, &fx_blob_type),
};
static troupe_type fx_sink_type =
    TROUPE_TYPE("test.Sink", 1, fx_sink, fx_sink_fields);

/* ------------------------------------------------------------------ */
/* Random values                                                       */

static inline uint64_t fx_rng(uint64_t *s) {     /* splitmix64 */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static inline uint64_t fx_int(uint64_t *s) {
  /* Favour the edges of each CBOR width. */
  static const uint64_t edges[] = {0, 1, 23, 24, 255, 256, 65535, 65536,
                                   0xFFFFFFFFull, 0x100000000ull,
                                   UINT64_MAX, 0x7FFFFFFFFFFFFFFFull,
                                   0x8000000000000000ull};
  uint64_t r = fx_rng(s);
  if (r % 3 == 0) return edges[(r >> 8) % (sizeof edges / sizeof edges[0])] -
                         ((r >> 20) & 1);
  return fx_rng(s) >> (r % 64);
}

static inline double fx_double(uint64_t *s) {
  static const double special[] = {0.0, -0.0, 1.0, -1.5, 65504.0, 65520.0,
                                   5.960464477539063e-08, 6.103515625e-05,
                                   1e-300, 1e300, 0.1, 3.4028234663852886e38,
                                   1.401298464324817e-45};
  uint64_t r = fx_rng(s);
  switch (r % 6) {
    case 0: return special[(r >> 8) % (sizeof special / sizeof special[0])];
    case 1: return (r >> 8) & 1 ? INFINITY : -INFINITY;
    case 2: return NAN;
    case 3: { uint64_t b = fx_rng(s); double d; memcpy(&d, &b, 8); return d; }
    case 4: return (double)(float)((double)(int64_t)fx_rng(s) / 1e6);
    default: return ldexp((double)((r >> 8) & 2047), (int)((r >> 20) % 60) - 40);
  }
}

/* A valid UTF-8 string (ASCII, 2-, 3- and 4-byte sequences). */
static char *fx_str(uint64_t *s) {
  size_t n = fx_rng(s) % 40;
  char *p = malloc(4 * n + 1), *o = p;
  for (size_t i = 0; i < n; i++) {
    uint64_t r = fx_rng(s);
    switch (r % 5) {
      case 0: *o++ = (char)(0xC3); *o++ = (char)(0xA9); break;        /* é */
      case 1: *o++ = (char)0xE2; *o++ = (char)0x82; *o++ = (char)0xAC; break;
      case 2: memcpy(o, "\xF0\x9F\x8E\xAD", 4); o += 4; break;       /* 🎭 */
      case 3: *o++ = (char)(1 + (r >> 8) % 127); break;              /* ctrl ok */
      default: *o++ = (char)('a' + (r >> 8) % 26); break;
    }
  }
  *o = '\0';
  return p;
}

static inline troupe_bytes fx_bytes(uint64_t *s) {
  troupe_bytes b = {NULL, fx_rng(s) % 20};
  if (b.len) {
    b.data = malloc(b.len);
    for (size_t i = 0; i < b.len; i++) b.data[i] = (uint8_t)fx_rng(s);
  }
  return b;
}

static inline troupe_ref fx_ref(uint64_t *s) {
  if (fx_rng(s) % 4 == 0) return TROUPE_REF_NONE;
  troupe_ref r = {fx_rng(s) % 1000, fx_int(s) | 1};
  return r;
}

static inline void fx_gen_tag(uint64_t *s, fx_tag *t) {
  t->name = fx_rng(s) % 5 ? fx_str(s) : NULL;
  t->blob = fx_bytes(s);
}

static inline void fx_gen_money(uint64_t *s, fx_money *m) {
  memset(m, 0, sizeof *m);
  m->cents = (int64_t)(fx_rng(s) % 2000000) - 1000000;
  memcpy(m->cur, fx_rng(s) % 2 ? "EUR" : "CH", 3);
}

static inline void fx_gen_blob(uint64_t *s, fx_blob *b) {
  troupe_bytes x = fx_bytes(s);
  b->p = x.data;
  b->n = x.len;
}

static void *fx_vec_alloc(troupe_vec *v, size_t n, size_t es) {
  v->len = n;
  v->items = n ? calloc(n, es) : NULL;
  return v->items;
}

static inline void fx_gen_sink(uint64_t *s, fx_sink *v) {
  memset(v, 0, sizeof *v);
  v->i8 = (int8_t)fx_int(s); v->i16 = (int16_t)fx_int(s);
  v->i32 = (int32_t)fx_int(s); v->i64 = (int64_t)fx_int(s);
  v->u8 = (uint8_t)fx_int(s); v->u16 = (uint16_t)fx_int(s);
  v->u32 = (uint32_t)fx_int(s); v->u64 = fx_int(s);
  v->f32 = (float)fx_double(s); v->f64 = fx_double(s);
  v->b = fx_rng(s) & 1;
  v->s = fx_rng(s) % 4 ? fx_str(s) : NULL;
  v->by = fx_bytes(s);
  v->r = fx_ref(s);
  v->pt.x = (int32_t)fx_int(s); v->pt.y = (int32_t)fx_int(s);
  fx_gen_tag(s, &v->tg);
  fx_gen_money(s, &v->money);
  fx_gen_blob(s, &v->blob);
  if ((v->has_oi = fx_rng(s) & 1)) v->oi = (int32_t)fx_int(s);
  if ((v->has_os = fx_rng(s) & 1)) v->os = fx_rng(s) % 3 ? fx_str(s) : NULL;
  if ((v->has_opt = fx_rng(s) & 1)) v->opt.x = (int32_t)fx_int(s);
  if ((v->has_ov = fx_rng(s) & 1)) {
    int64_t *p = fx_vec_alloc(&v->ov, fx_rng(s) % 4, sizeof(int64_t));
    for (size_t i = 0; i < v->ov.len; i++) p[i] = (int64_t)fx_int(s);
  }
  for (int i = 0; i < 3; i++) v->a_i16[i] = (int16_t)fx_int(s);
  for (int i = 0; i < 2; i++) {
    v->a_s[i] = fx_rng(s) % 3 ? fx_str(s) : NULL;
    v->a_pt[i].x = (int32_t)fx_int(s);
    v->a_pt[i].y = (int32_t)fx_int(s);
    v->a_r[i] = fx_ref(s);
    v->a_f[i] = fx_double(s);
    v->a_b[i] = fx_rng(s) & 1;
    v->a_by[i] = fx_bytes(s);
    fx_gen_tag(s, &v->a_tg[i]);
  }
  uint32_t *u = fx_vec_alloc(&v->v_u32, fx_rng(s) % 6, sizeof(uint32_t));
  for (size_t i = 0; i < v->v_u32.len; i++) u[i] = (uint32_t)fx_int(s);
  char **ss = fx_vec_alloc(&v->v_s, fx_rng(s) % 4, sizeof(char *));
  for (size_t i = 0; i < v->v_s.len; i++) ss[i] = fx_rng(s) % 4 ? fx_str(s) : NULL;
  fx_tag *tg = fx_vec_alloc(&v->v_tag, fx_rng(s) % 3, sizeof(fx_tag));
  for (size_t i = 0; i < v->v_tag.len; i++) fx_gen_tag(s, &tg[i]);
  float *f = fx_vec_alloc(&v->v_f32, fx_rng(s) % 4, sizeof(float));
  for (size_t i = 0; i < v->v_f32.len; i++) f[i] = (float)fx_double(s);
  troupe_bytes *by = fx_vec_alloc(&v->v_by, fx_rng(s) % 3, sizeof(troupe_bytes));
  for (size_t i = 0; i < v->v_by.len; i++) by[i] = fx_bytes(s);
  troupe_ref *r = fx_vec_alloc(&v->v_r, fx_rng(s) % 3, sizeof(troupe_ref));
  for (size_t i = 0; i < v->v_r.len; i++) r[i] = fx_ref(s);
  int8_t *i8 = fx_vec_alloc(&v->v_i8, fx_rng(s) % 5, 1);
  for (size_t i = 0; i < v->v_i8.len; i++) i8[i] = (int8_t)fx_int(s);
  fx_money *m = fx_vec_alloc(&v->v_money, fx_rng(s) % 3, sizeof(fx_money));
  for (size_t i = 0; i < v->v_money.len; i++) fx_gen_money(s, &m[i]);
  fx_blob *bl = fx_vec_alloc(&v->v_blob, fx_rng(s) % 3, sizeof(fx_blob));
  for (size_t i = 0; i < v->v_blob.len; i++) fx_gen_blob(s, &bl[i]);
}

static inline void fx_gen_node(uint64_t *s, fx_node *n, int depth) {
  memset(n, 0, sizeof *n);
  n->val = (int32_t)fx_int(s);
  if (depth <= 0) return;
  fx_node *k = fx_vec_alloc(&n->kids, fx_rng(s) % 3, sizeof(fx_node));
  for (size_t i = 0; i < n->kids.len; i++) fx_gen_node(s, &k[i], depth - 1);
}

#endif
