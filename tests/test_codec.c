/*
 * test_codec.c: CBOR encoding and decoding of described values: exact
 * canonical bytes, property round trips over generated values of every
 * field kind, tolerant decoding, hostile input and limits, custom codecs,
 * refs, JSON and allocation failures.
 */
#include "tt.h"
#include "types_fixtures.h"

#include "core/types_internal.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static size_t unhex(const char *h, uint8_t *out) {
  size_t n = 0;
  while (*h) {
    if (*h == ' ') { h++; continue; }
    unsigned v;
    sscanf(h, "%2x", &v);
    out[n++] = (uint8_t)v;
    h += 2;
  }
  return n;
}

static char *tohex(const uint8_t *p, size_t n) {
  static char buf[4096];
  size_t o = 0;
  for (size_t i = 0; i < n && o + 3 < sizeof buf; i++)
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%02x", p[i]);
  buf[o] = '\0';
  return buf;
}

/* An independent check that bytes are canonical CBOR (RFC 8949 4.2.1):
 * shortest heads, definite lengths, map keys sorted bytewise by their
 * encodings and unique, floats in their shortest exact form. Returns the
 * number of bytes of the item, or 0 when not canonical. */
static size_t canon(const uint8_t *p, size_t n);

/* Whether a value is exactly an IEEE half (a reference independent of the
 * library's bit twiddling). */
static bool fits_half(double d) {
  if (d == 0 || isinf(d)) return true;
  double a = fabs(d);
  if (a > 65504) return false;
  int e = ilogb(a);
  double m = e < -14 ? ldexp(a, 24) : ldexp(a, 10 - e);
  return m == floor(m) && m < 2048;
}

static size_t canon_head(const uint8_t *p, size_t n, uint64_t *arg) {
  if (!n) return 0;
  int ai = p[0] & 31;
  if (ai < 24) { *arg = (uint64_t)ai; return 1; }
  if (ai > 27) return 0;
  size_t k = (size_t)1 << (ai - 24);
  if (n < 1 + k) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < k; i++) v = v << 8 | p[1 + i];
  uint64_t min = ai == 24 ? 24 : ai == 25 ? 0x100 : ai == 26 ? 0x10000
                                                         : 0x100000000ull;
  if ((p[0] >> 5) != 7 && v < min) return 0;   /* not shortest */
  *arg = v;
  return 1 + k;
}

static size_t canon(const uint8_t *p, size_t n) {
  uint64_t a;
  size_t h = canon_head(p, n, &a);
  if (!h) return 0;
  switch (p[0] >> 5) {
    case 0: case 1: return h;
    case 2: case 3: return a <= n - h ? h + a : 0;
    case 4: {
      size_t o = h;
      for (uint64_t i = 0; i < a; i++) {
        size_t k = canon(p + o, n - o);
        if (!k) return 0;
        o += k;
      }
      return o;
    }
    case 5: {
      size_t o = h;
      const uint8_t *prev = NULL;
      size_t prevlen = 0;
      for (uint64_t i = 0; i < a; i++) {
        size_t k = canon(p + o, n - o);
        if (!k) return 0;
        if (prev) {
          if (prevlen > k) return 0;
          if (prevlen == k && memcmp(prev, p + o, k) >= 0) return 0;
        }
        prev = p + o;
        prevlen = k;
        o += k;
        size_t v = canon(p + o, n - o);
        if (!v) return 0;
        o += v;
      }
      return o;
    }
    case 6: return 0;      /* we never write tags */
    default: {
      int ai = p[0] & 31;
      if (ai == 20 || ai == 21 || ai == 22) return 1;
      if (ai == 25) return n >= 3 ? 3 : 0;
      if (ai == 26) {      /* a single must not fit a half */
        if (n < 5) return 0;
        uint32_t u = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 8 | p[4];
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f) || fits_half(f)) return 0;
        return 5;
      }
      if (ai == 27) {
        if (n < 9) return 0;
        uint64_t u = 0;
        for (int i = 1; i <= 8; i++) u = u << 8 | p[i];
        double d;
        memcpy(&d, &u, 8);
        if (isnan(d) || (double)(float)d == d || fits_half(d)) return 0;
        return 9;
      }
      return 0;
    }
  }
}

static bool is_canonical(const uint8_t *p, size_t n) {
  return canon(p, n) == n;
}

/* Encode with the test ref hooks. */
static int enc(const troupe_type *t, const void *v, troupe_buf *b) {
  b->len = 0;
  return troupe_encode(t, v, b, &fx_opts);
}

static int dec(const troupe_type *t, const uint8_t *p, size_t n, void *v) {
  return troupe_decode(t, p, n, v, &fx_opts);
}

/* ------------------------------------------------------------------ */
/* Exact bytes                                                         */

static void test_point_bytes(void) {
  fx_point p = {1, -2};
  troupe_buf b = {0};
  TT_EQ_INT(enc(&fx_point_type, &p, &b), 0);
  TT_EQ_STR(tohex(b.data, b.len), "a2617801617921");
  fx_point q = {7, 7};
  TT_EQ_INT(dec(&fx_point_type, b.data, b.len, &q), 0);
  TT_EQ_INT(q.x, 1);
  TT_EQ_INT(q.y, -2);
  troupe_buf_free(&b);
}

typedef struct order3 {
  int32_t bb;
  int32_t a;
  int32_t c;
  int32_t aa;
} order3;
static const troupe_field order3_fields[] = {
    TROUPE_FIELD(order3, bb, I32),
    TROUPE_FIELD(order3, a, I32),
    TROUPE_FIELD(order3, c, I32),
    TROUPE_FIELD(order3, aa, I32),
};
static troupe_type order3_type = TROUPE_TYPE("test.Order", 1, order3, order3_fields);

static void test_canonical_key_order(void) {
  order3 v = {1, 2, 3, 4};
  troupe_buf b = {0};
  TT_EQ_INT(enc(&order3_type, &v, &b), 0);
  /* a, c, aa, bb: shorter keys first, then bytewise. */
  TT_EQ_STR(tohex(b.data, b.len), "a46161026163036261610462626201");
  TT_ASSERT(is_canonical(b.data, b.len));
  /* Any key order decodes. */
  uint8_t in[64];
  size_t n = unhex("a4 626262 01 6161 02 6163 03 626161 04", in);
  order3 w;
  TT_EQ_INT(dec(&order3_type, in, n, &w), 0);
  TT_EQ_INT(w.bb, 1);
  TT_EQ_INT(w.a, 2);
  TT_EQ_INT(w.c, 3);
  TT_EQ_INT(w.aa, 4);
  troupe_buf_free(&b);
}

typedef struct nums {
  int64_t i;
  uint64_t u;
  double d;
  float f;
} nums;
static const troupe_field nums_fields[] = {
    TROUPE_FIELD(nums, i, I64),
    TROUPE_FIELD(nums, u, U64),
    TROUPE_FIELD(nums, d, F64),
    TROUPE_FIELD(nums, f, F32),
};
static troupe_type nums_type = TROUPE_TYPE("test.Nums", 1, nums, nums_fields);

/* The encoding of field "d" (or "i", "u", "f") alone, as hex. */
static const char *field_hex(const nums *v, const char *key) {
  static troupe_buf b;
  static char out[64];
  b.len = 0;
  if (troupe_encode(&nums_type, v, &b, NULL)) return "ERR";
  /* a4 6164 <d> 6166 <f> 6169 <i> 6175 <u>: find key, copy until next */
  const char *h = tohex(b.data, b.len);
  char k[8];
  snprintf(k, sizeof k, "61%02x", key[0]);
  const char *p = strstr(h + 2, k);
  if (!p) return "NOKEY";
  p += 4;
  const char *e = NULL;
  static const char *order = "dfiu";
  const char *nx = strchr(order, key[0]) + 1;
  if (*nx) {
    char k2[8];
    snprintf(k2, sizeof k2, "61%02x", *nx);
    e = strstr(p, k2);
  }
  size_t n = e ? (size_t)(e - p) : strlen(p);
  memcpy(out, p, n);
  out[n] = '\0';
  return out;
}

static void test_canonical_numbers(void) {
  nums v = {0};
  struct { int64_t i; const char *hex; } ints[] = {
      {0, "00"}, {23, "17"}, {24, "1818"}, {255, "18ff"}, {256, "190100"},
      {65536, "1a00010000"}, {4294967296ll, "1b0000000100000000"},
      {-1, "20"}, {-24, "37"}, {-25, "3818"}, {-256, "38ff"},
      {-257, "390100"}, {INT64_MIN, "3b7fffffffffffffff"},
      {INT64_MAX, "1b7fffffffffffffff"}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    v.i = ints[i].i;
    TT_EQ_STR(field_hex(&v, "i"), ints[i].hex);
  }
  v.u = UINT64_MAX;
  TT_EQ_STR(field_hex(&v, "u"), "1bffffffffffffffff");
  struct { double d; const char *hex; } fl[] = {
      {0.0, "f90000"}, {-0.0, "f98000"}, {1.0, "f93c00"}, {1.5, "f93e00"},
      {65504.0, "f97bff"}, {65520.0, "fa477ff000"},
      {5.960464477539063e-08, "f90001"},   /* smallest half subnormal */
      {6.097555160522461e-05, "f903ff"},   /* largest half subnormal */
      {1.0e-7, "fb3e7ad7f29abcaf48"}, {0.1, "fb3fb999999999999a"},
      {100000.0, "fa47c35000"}, {1e300, "fb7e37e43c8800759c"},
      {INFINITY, "f97c00"}, {-INFINITY, "f9fc00"}, {NAN, "f97e00"},
      {-NAN, "f97e00"}};
  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
    v.d = fl[i].d;
    TT_EQ_STR(field_hex(&v, "d"), fl[i].hex);
  }
  v.f = 0.1f;
  TT_EQ_STR(field_hex(&v, "f"), "fa3dcccccd");
  v.f = 0.5f;
  TT_EQ_STR(field_hex(&v, "f"), "f93800");
}

/* ------------------------------------------------------------------ */
/* Properties                                                          */

static int check_roundtrip(const troupe_type *t, void *v, void *w, void *c,
                           troupe_buf *b1, troupe_buf *b2) {
  if (enc(t, v, b1)) { fprintf(stderr, "encode: %s\n", troupe_errmsg()); return 1; }
  if (!is_canonical(b1->data, b1->len)) {
    fprintf(stderr, "not canonical: %s\n", tohex(b1->data, b1->len));
    return 2;
  }
  /* An independent decoder agrees it is one well-formed item. */
  struct cbor_load_result lr;
  cbor_item_t *it = cbor_load(b1->data, b1->len, &lr);
  if (!it || lr.read != b1->len) return 3;
  cbor_decref(&it);
  if (dec(t, b1->data, b1->len, w)) {
    fprintf(stderr, "decode: %s\n", troupe_errmsg());
    return 4;
  }
  if (!troupe_value_equal(t, v, w)) return 5;
  if (enc(t, w, b2) || b1->len != b2->len || memcmp(b1->data, b2->data, b1->len))
    return 6;
  if (troupe_value_copy(t, c, w)) return 7;
  if (!troupe_value_equal(t, c, v)) return 8;
  troupe_buf j = {0};
  if (troupe_value_to_json(t, v, &j, &fx_opts)) return 9;
  if (strlen((char *)j.data) != j.len) return 10;
  j.len = 0;
  if (troupe_cbor_to_json(b1->data, b1->len, &j, NULL)) return 11;
  troupe_buf_free(&j);
  return 0;
}

static void test_property_sink(void) {
  uint64_t seed = 42;
  troupe_buf b1 = {0}, b2 = {0};
  for (int i = 0; i < 3000; i++) {
    fx_sink v, w, c;
    memset(&w, 0, sizeof w);
    memset(&c, 0, sizeof c);
    fx_gen_sink(&seed, &v);
    int rc = check_roundtrip(&fx_sink_type, &v, &w, &c, &b1, &b2);
    if (rc) fprintf(stderr, "iteration %d failed with %d\n", i, rc);
    troupe_value_free(&fx_sink_type, &v);
    troupe_value_free(&fx_sink_type, &w);
    troupe_value_free(&fx_sink_type, &c);
    TT_EQ_INT(rc, 0);
  }
  troupe_buf_free(&b1);
  troupe_buf_free(&b2);
}

static void test_property_tree(void) {
  uint64_t seed = 7;
  troupe_buf b1 = {0}, b2 = {0};
  for (int i = 0; i < 300; i++) {
    fx_node v, w, c;
    memset(&w, 0, sizeof w);
    memset(&c, 0, sizeof c);
    fx_gen_node(&seed, &v, (int)(i % 6));
    int rc = check_roundtrip(&fx_node_type, &v, &w, &c, &b1, &b2);
    troupe_value_free(&fx_node_type, &v);
    troupe_value_free(&fx_node_type, &w);
    troupe_value_free(&fx_node_type, &c);
    TT_EQ_INT(rc, 0);
  }
  troupe_buf_free(&b1);
  troupe_buf_free(&b2);
}

/* Equal values give equal bytes even when their memory differs: NaN
 * payloads, padding, absent optionals with garbage, bools holding 2. */
static void test_equal_values_equal_bytes(void) {
  fx_sink a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0xAB, sizeof b);
  /* make b a valid value equal to a */
  memset(&b, 0, sizeof b);
  uint64_t nan1 = 0x7FF8000000000001ull, nan2 = 0xFFF0000000000100ull;
  memcpy(&a.f64, &nan1, 8);
  memcpy(&b.f64, &nan2, 8);
  a.has_oi = false;
  a.oi = 5;
  b.oi = 9;
  *(uint8_t *)&b.b = 2;
  a.b = true;
  TT_ASSERT(troupe_value_equal(&fx_sink_type, &a, &b));
  troupe_buf x = {0}, y = {0};
  TT_EQ_INT(enc(&fx_sink_type, &a, &x), 0);
  TT_EQ_INT(enc(&fx_sink_type, &b, &y), 0);
  TT_EQ_INT(x.len, y.len);
  TT_ASSERT(memcmp(x.data, y.data, x.len) == 0);
  /* -0.0 and 0.0 are different values with different bytes */
  b.f64 = 0.0;
  a.f64 = -0.0;
  TT_ASSERT(!troupe_value_equal(&fx_sink_type, &a, &b));
  troupe_buf_free(&x);
  troupe_buf_free(&y);
}

/* ------------------------------------------------------------------ */
/* Tolerant decoding                                                   */

static void test_unknown_fields_skipped(void) {
  uint8_t in[128];
  /* {"x": 1, "zzz": [1, {"a": h'00', 2: [_ 1]}], 7: "k", "y": 2,
   *  "w": 55(["t", (_ "a", "b")])} */
  size_t n = unhex("a5 6178 01 637a7a7a 82 01 a2 6161 4100 02 9f01ff"
                   " 07 616b 6179 02 6177 d837 82 6174 7f61616162ff", in);
  fx_point p;
  TT_EQ_INT(dec(&fx_point_type, in, n, &p), 0);
  TT_EQ_INT(p.x, 1);
  TT_EQ_INT(p.y, 2);
}

static void test_missing_fields_default(void) {
  uint8_t in[16];
  size_t n = unhex("a0", in);
  fx_sink s;
  memset(&s, 0x55, sizeof s);
  TT_EQ_INT(dec(&fx_sink_type, in, n, &s), 0);
  fx_sink z;
  memset(&z, 0, sizeof z);
  TT_ASSERT(troupe_value_equal(&fx_sink_type, &s, &z));
  TT_ASSERT(s.s == NULL && s.v_s.items == NULL && !s.has_oi);
  n = unhex("a1 6179 05", in);
  fx_point p = {9, 9};
  TT_EQ_INT(dec(&fx_point_type, in, n, &p), 0);
  TT_EQ_INT(p.x, 0);
  TT_EQ_INT(p.y, 5);
  /* indefinite map; null for strings and nested values; an optional
   * field given as null is present (absent means left out) */
  n = unhex("bf 626f73 f6 627074 f6 6173 f6 ff", in);
  TT_EQ_INT(dec(&fx_sink_type, in, n, &s), 0);
  TT_ASSERT(s.has_os && s.os == NULL && s.s == NULL && !s.has_oi);
  troupe_value_free(&fx_sink_type, &s);
}

static void expect_fail(const troupe_type *t, const char *hex, int code,
                        const char *needle) {
  uint8_t in[512];
  size_t n = unhex(hex, in);
  uint8_t v[sizeof(fx_sink)];
  memset(v, 0x77, sizeof v);
  int rc = dec(t, in, n, v);
  TT_CHECK(rc == code);
  if (rc != code)
    fprintf(stderr, "  %s: got %s (%s), want %s\n", hex, troupe_err_name(rc),
            troupe_errmsg(), troupe_err_name(code));
  if (needle && !strstr(troupe_errmsg(), needle)) {
    fprintf(stderr, "  %s: message '%s' lacks '%s'\n", hex, troupe_errmsg(),
            needle);
    TT_CHECK(0);
  }
  /* On failure the value is zeroed. */
  for (size_t i = 0; i < t->size; i++)
    if (v[i]) {
      TT_CHECK(!"value not zeroed");
      break;
    }
}

static void test_wrong_types(void) {
  int before = tt__failed_asserts;
  expect_fail(&fx_point_type, "a1 6178 6161", TROUPE_EDECODE,
              "type 'test.Point' v1 field 'x': expected integer, got text");
  expect_fail(&fx_point_type, "a1 6178 f93c00", TROUPE_EDECODE, "'x'");
  expect_fail(&fx_point_type, "a1 6178 1a80000000", TROUPE_EDECODE,
              "out of range");
  expect_fail(&fx_point_type, "a1 6178 3a80000000", TROUPE_EDECODE,
              "out of range");
  expect_fail(&fx_point_type, "81 01", TROUPE_EDECODE, "expected map");
  expect_fail(&fx_sink_type, "a1 627538 20", TROUPE_EDECODE, "'u8'");
  expect_fail(&fx_sink_type, "a1 627538 190100", TROUPE_EDECODE, "out of range");
  expect_fail(&fx_sink_type, "a1 626938 1880", TROUPE_EDECODE, "'i8'");
  expect_fail(&fx_sink_type, "a1 626938 3880", TROUPE_EDECODE, "'i8'");
  expect_fail(&fx_sink_type, "a1 6162 01", TROUPE_EDECODE, "expected bool");
  expect_fail(&fx_sink_type, "a1 6173 4161", TROUPE_EDECODE, "expected text");
  expect_fail(&fx_sink_type, "a1 6173 62c328", TROUPE_EDECODE, "UTF-8");
  expect_fail(&fx_sink_type, "a1 6173 626100", TROUPE_EDECODE, "NUL");
  expect_fail(&fx_sink_type, "a1 6173 7f6161ff", TROUPE_EDECODE,
              "indefinite text");
  expect_fail(&fx_sink_type, "a1 6262 79 6161", TROUPE_EDECODE, "'by'");
  expect_fail(&fx_sink_type, "a1 6366 3332 fb3fb999999999999a", TROUPE_EDECODE,
              "does not fit a float");
  expect_fail(&fx_sink_type, "a1 627074 a1 6178 6161", TROUPE_EDECODE,
              "type 'test.Point' v1 field 'x'");
  expect_fail(&fx_sink_type, "a1 65615f693136 84 01 02 03 04", TROUPE_EDECODE,
              "4 elements, the array holds 3");
  expect_fail(&fx_sink_type, "a1 6576 5f753332 9f 01 ff", TROUPE_EDECODE,
              "expected array");
  expect_fail(&fx_sink_type, "a1 6576 5f753332 c1 80", TROUPE_EDECODE,
              "expected array, got tag");
  expect_fail(&fx_sink_type, "a2 6162 f5 6162 f4", TROUPE_EDECODE,
              "duplicate field");
  expect_fail(&fx_point_type, "a0 00", TROUPE_EDECODE, "1 trailing bytes");
  expect_fail(&fx_point_type, "", TROUPE_EDECODE, "truncated");
  expect_fail(&fx_point_type, "a2 6178 01", TROUPE_EDECODE, "truncated");
  expect_fail(&fx_point_type, "a1 6178 1c", TROUPE_EDECODE, "malformed");
  expect_fail(&fx_point_type, "a1 6178 ff", TROUPE_EDECODE, "got break");
  expect_fail(&fx_point_type, "a1 617a ff", TROUPE_EDECODE, "unexpected break");
  /* the custom codec's own error comes back */
  expect_fail(&fx_sink_type, "a1 656d6f6e6579 6161", TROUPE_EDECODE, NULL);
  TT_EQ_INT(tt__failed_asserts, before);
}

static void test_floats_widen(void) {
  uint8_t in[32];
  nums v;
  size_t n = unhex("a1 6164 f93e00", in);          /* half into double */
  TT_EQ_INT(troupe_decode(&nums_type, in, n, &v, NULL), 0);
  TT_ASSERT(v.d == 1.5);
  n = unhex("a1 6166 fb3ff8000000000000", in);     /* exact double into float */
  TT_EQ_INT(troupe_decode(&nums_type, in, n, &v, NULL), 0);
  TT_ASSERT(v.f == 1.5f);
  n = unhex("a1 6166 fb7ff8000000000000", in);     /* NaN double into float */
  TT_EQ_INT(troupe_decode(&nums_type, in, n, &v, NULL), 0);
  TT_ASSERT(isnan(v.f));
}

/* ------------------------------------------------------------------ */
/* Hostile input and limits                                            */

static void test_truncations_and_flips(void) {
  uint64_t seed = 99;
  troupe_buf b = {0};
  for (int it = 0; it < 40; it++) {
    fx_sink v;
    fx_gen_sink(&seed, &v);
    TT_EQ_INT(enc(&fx_sink_type, &v, &b), 0);
    troupe_value_free(&fx_sink_type, &v);
    for (size_t n = 0; n < b.len; n++) {       /* every strict prefix fails */
      fx_sink w;
      int rc = dec(&fx_sink_type, b.data, n, &w);
      TT_ASSERT(rc == TROUPE_EDECODE);
    }
    for (size_t i = 0; i < b.len; i++) {       /* a flipped byte never crashes */
      uint8_t *c = malloc(b.len);
      memcpy(c, b.data, b.len);
      c[i] ^= (uint8_t)(1u << (fx_rng(&seed) % 8));
      fx_sink w;
      if (dec(&fx_sink_type, c, b.len, &w) == 0)
        troupe_value_free(&fx_sink_type, &w);
      free(c);
    }
  }
  troupe_buf_free(&b);
}

static void test_depth_limit(void) {
  /* {"zz": [[[[...]]]]} 100000 deep, in an unknown field */
  size_t depth = 100000;
  uint8_t *in = malloc(depth + 8);
  size_t n = 0;
  in[n++] = 0xa1;
  in[n++] = 0x62; in[n++] = 'z'; in[n++] = 'z';
  for (size_t i = 0; i < depth; i++) in[n++] = 0x81;
  in[n++] = 0x00;
  fx_point p;
  TT_EQ_INT(dec(&fx_point_type, in, n, &p), TROUPE_ETOOBIG);
  TT_ASSERT(strstr(troupe_errmsg(), "nested deeper than 32"));
  /* the same under a tag chain and indefinite arrays */
  for (size_t i = 4; i < n - 1; i++) in[i] = (i % 2) ? 0xc1 : 0x9f;
  TT_ASSERT(dec(&fx_point_type, in, n, &p) < 0);
  free(in);
  /* deep recursion through the described tree */
  troupe_buf b = {0};
  fx_node root, *cur = &root;
  memset(&root, 0, sizeof root);
  for (int i = 0; i < 40; i++) {
    fx_node *k = fx_vec_alloc(&cur->kids, 1, sizeof(fx_node));
    cur = k;
  }
  TT_EQ_INT(troupe_encode(&fx_node_type, &root, &b, NULL), TROUPE_ETOOBIG);
  troupe_limits lim = {100, 0, 0, 0};
  troupe_codec_opts o = {&lim, NULL, NULL, NULL};
  TT_EQ_INT(troupe_encode(&fx_node_type, &root, &b, &o), 0);
  fx_node back;
  TT_EQ_INT(troupe_decode(&fx_node_type, b.data, b.len, &back, NULL),
            TROUPE_ETOOBIG);
  TT_EQ_INT(troupe_decode(&fx_node_type, b.data, b.len, &back, &o), 0);
  TT_ASSERT(troupe_value_equal(&fx_node_type, &root, &back));
  troupe_value_free(&fx_node_type, &back);
  troupe_value_free(&fx_node_type, &root);
  troupe_buf_free(&b);
}

static void test_size_limits(void) {
  uint8_t in[64];
  fx_sink s;
  /* a vec claiming 2^32 elements in a few bytes: refused before allocating */
  size_t n = unhex("a1 6576 5f753332 9b0000000100000000 01", in);
  TT_EQ_INT(dec(&fx_sink_type, in, n, &s), TROUPE_ETOOBIG);
  n = unhex("a1 6576 5f753332 9a000fffff 01", in);
  TT_EQ_INT(dec(&fx_sink_type, in, n, &s), TROUPE_EDECODE);
  /* a string length past the input */
  n = unhex("a1 6173 7b7fffffffffffffff 61", in);
  TT_EQ_INT(dec(&fx_sink_type, in, n, &s), TROUPE_EDECODE);
  /* a map claiming 2^63 entries */
  n = unhex("bb7fffffffffffffff 6178 01", in);
  TT_EQ_INT(dec(&fx_point_type, in, n, &s), TROUPE_ETOOBIG);
  /* an unknown array claiming 2^64-1 elements: skipping stops at the end */
  n = unhex("a1 617a 9bffffffffffffffff 01 02", in);
  TT_EQ_INT(dec(&fx_point_type, in, n, &s), TROUPE_EDECODE);

  troupe_limits lim = {0, 8, 4, 0};
  troupe_codec_opts o = fx_opts;
  o.limits = &lim;
  n = unhex("a1 6173 69616161616161616161", in);     /* 9-byte string */
  TT_EQ_INT(troupe_decode(&fx_sink_type, in, n, &s, &o), TROUPE_ETOOBIG);
  n = unhex("a1 6173 68616161616161616161", in);
  TT_EQ_INT(troupe_decode(&fx_sink_type, in, n - 1, &s, &o), 0);
  troupe_value_free(&fx_sink_type, &s);
  n = unhex("a1 6576 5f753332 85 01 02 03 04 05", in);
  TT_EQ_INT(troupe_decode(&fx_sink_type, in, n, &s, &o), TROUPE_ETOOBIG);

  /* allocation amplification: each 1-byte {} element is a 24-byte tag;
   * 1000 of them need 24000 bytes */
  uint8_t big[1100];
  size_t m = 0;
  m += unhex("a1 6576 5f746167 9903e8", big);
  for (int i = 0; i < 1000; i++) big[m++] = 0xa0;
  troupe_limits al = {0, 0, 0, 10000};
  o.limits = &al;
  TT_EQ_INT(troupe_decode(&fx_sink_type, big, m, &s, &o), TROUPE_ETOOBIG);
  TT_ASSERT(strstr(troupe_errmsg(), "allocate more than 10000"));
  al.max_alloc = 30000;
  TT_EQ_INT(troupe_decode(&fx_sink_type, big, m, &s, &o), 0);
  TT_EQ_INT(s.v_tag.len, 1000);
  troupe_value_free(&fx_sink_type, &s);

  /* process-wide defaults */
  troupe_limits d0, small = {0, 3, 0, 0};
  troupe_limits_get_default(&d0);
  TT_EQ_INT(d0.max_depth, TROUPE_LIMITS_DEFAULT_DEPTH);
  troupe_limits_set_default(&small);
  n = unhex("a1 6173 6461616161", in);
  int rc = troupe_decode(&fx_sink_type, in, n, &s, &fx_opts);
  troupe_limits_set_default(&d0);
  TT_EQ_INT(rc, TROUPE_ETOOBIG);
  TT_EQ_INT(troupe_decode(&fx_sink_type, in, n, &s, &fx_opts), 0);
  troupe_value_free(&fx_sink_type, &s);
}

/* ------------------------------------------------------------------ */
/* Refs                                                                */

static int fail_to_uri(struct troupe_system *sys, troupe_ref r, char *buf,
                       size_t size) {
  (void)sys; (void)r; (void)buf; (void)size;
  return TROUPE_EUNSUPPORTED;
}

/* A URI longer than the encoder's stack buffer. */
static int long_to_uri(struct troupe_system *sys, troupe_ref r, char *buf,
                       size_t size) {
  (void)sys;
  char tmp[600];
  int n = snprintf(tmp, sizeof tmp, "troupe://test/%" PRIu64 "/%" PRIu64 "?%0500d",
                   r.node, r.uid, 0);
  if ((size_t)n < size) memcpy(buf, tmp, (size_t)n + 1);
  return n;
}

static troupe_ref seen_ref;
static size_t seen_len;
static int long_from_uri(struct troupe_system *sys, const char *uri, size_t len,
                         troupe_ref *out) {
  (void)sys; (void)uri;
  seen_len = len;
  *out = seen_ref;
  return 0;
}

static void test_refs(void) {
  fx_sink v, w;
  memset(&v, 0, sizeof v);
  v.r.node = 3;
  v.r.uid = 77;
  troupe_buf b = {0};
  TT_EQ_INT(enc(&fx_sink_type, &v, &b), 0);
  TT_ASSERT(memmem(b.data, b.len, "troupe://test/3/77", 18) != NULL);
  TT_EQ_INT(dec(&fx_sink_type, b.data, b.len, &w), 0);
  TT_ASSERT(troupe_ref_eq(w.r, v.r));
  troupe_value_free(&fx_sink_type, &w);

  /* the hook's error comes back and the buffer is untouched */
  troupe_codec_opts o = {NULL, NULL, fail_to_uri, fx_from_uri};
  b.len = 3;
  TT_EQ_INT(troupe_encode(&fx_sink_type, &v, &b, &o), TROUPE_EUNSUPPORTED);
  TT_EQ_INT(b.len, 3);
  /* a none ref needs no hook */
  v.r = TROUPE_REF_NONE;
  TT_EQ_INT(troupe_encode(&fx_sink_type, &v, &b, &o), 0);
  /* a bad URI fails decoding with the hook's code */
  uint8_t in[64];
  size_t n = unhex("a1 6172 6a687474703a2f2f782f79", in);
  TT_EQ_INT(dec(&fx_sink_type, in, n, &w), TROUPE_EINVAL);
  n = unhex("a1 6172 01", in);
  TT_EQ_INT(dec(&fx_sink_type, in, n, &w), TROUPE_EDECODE);

  /* long URIs take the heap path */
  v.r.node = 1;
  v.r.uid = 2;
  troupe_codec_opts lo = {NULL, NULL, long_to_uri, long_from_uri};
  b.len = 0;
  TT_EQ_INT(troupe_encode(&fx_sink_type, &v, &b, &lo), 0);
  seen_ref = v.r;
  TT_EQ_INT(troupe_decode(&fx_sink_type, b.data, b.len, &w, &lo), 0);
  TT_ASSERT(seen_len > 500);
  TT_ASSERT(troupe_ref_eq(w.r, v.r));
  troupe_value_free(&fx_sink_type, &w);
  troupe_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* Custom codecs                                                       */

static void test_custom_codec(void) {
  fx_money m = {-1234, "EUR"}, m2;
  troupe_buf b = {0};
  TT_EQ_INT(enc(&fx_money_type, &m, &b), 0);
  TT_EQ_STR(tohex(b.data, b.len), "823904d163455552");
  TT_EQ_INT(dec(&fx_money_type, b.data, b.len, &m2), 0);
  TT_ASSERT(troupe_value_equal(&fx_money_type, &m, &m2));
  TT_ASSERT(fx_money_type._flags & TROUPE__TF_FLAT);
  /* a custom decoder sees exactly its item, even inside a vec */
  fx_blob bl = {(uint8_t *)"hello", 5}, bl2;
  TT_EQ_INT(enc(&fx_blob_type, &bl, &b), 0);
  TT_EQ_INT(dec(&fx_blob_type, b.data, b.len, &bl2), 0);
  TT_ASSERT(bl2.n == 5 && memcmp(bl2.p, "hello", 5) == 0);
  TT_ASSERT(troupe_value_equal(&fx_blob_type, &bl, &bl2));  /* by encoding */
  TT_ASSERT(!(fx_blob_type._flags & TROUPE__TF_FLAT));
  fx_blob bl3;
  TT_EQ_INT(troupe_value_copy(&fx_blob_type, &bl3, &bl2), 0);
  TT_ASSERT(bl3.p != bl2.p && bl3.n == 5);
  troupe_value_free(&fx_blob_type, &bl2);
  troupe_value_free(&fx_blob_type, &bl3);
  TT_ASSERT(bl3.p == NULL);
  troupe_buf j = {0};
  TT_EQ_INT(troupe_value_to_json(&fx_money_type, &m, &j, NULL), 0);
  TT_EQ_STR((char *)j.data, "[-1234,\"EUR\"]");
  troupe_buf_free(&j);
  troupe_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */

static void test_json(void) {
  fx_sink v;
  memset(&v, 0, sizeof v);
  v.i8 = -5;
  v.u64 = UINT64_MAX;
  v.f32 = 0.1f;
  v.f64 = NAN;
  v.b = true;
  v.s = "a\"b\\c\n\x01\xc3\xa9\xff";
  uint8_t raw[] = {0xfb, 0xff, 0x00, 'x'};
  v.by.data = raw;
  v.by.len = 4;
  v.r.node = 1;
  v.r.uid = 9;
  v.has_oi = true;
  v.oi = 3;
  troupe_buf j = {0};
  TT_EQ_INT(troupe_value_to_json(&fx_sink_type, &v, &j, &fx_opts), 0);
  const char *s = (const char *)j.data;
  TT_ASSERT(strncmp(s, "{\"i8\":-5,\"i16\":0,", 17) == 0);
  TT_ASSERT(strstr(s, "\"u64\":18446744073709551615,"));
  TT_ASSERT(strstr(s, "\"f32\":0.100000001,\"f64\":null,\"b\":true,"));
  TT_ASSERT(strstr(s, "\"s\":\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\\ufffd\","));
  TT_ASSERT(strstr(s, "\"by\":\"+/8AeA==\","));
  TT_ASSERT(strstr(s, "\"r\":\"troupe://test/1/9\","));
  TT_ASSERT(strstr(s, "\"oi\":3,"));
  TT_ASSERT(!strstr(s, "\"os\""));
  TT_ASSERT(strstr(s, "\"a_i16\":[0,0,0],"));
  TT_ASSERT(strstr(s, "\"money\":[0,\"\"]"));
  TT_ASSERT(strstr(s, "\"v_u32\":[],"));
  /* the core's placeholder ref hook fails: rendered, not an error */
  j.len = 0;
  troupe_codec_opts o = {NULL, NULL, fail_to_uri, NULL};
  v.s = NULL;
  TT_EQ_INT(troupe_value_to_json(&fx_sink_type, &v, &j, &o), 0);
  TT_ASSERT(strstr((char *)j.data, "\"r\":\"<ref 1.9>\""));
  /* raw CBOR of unknown type */
  uint8_t in[64];
  size_t n = unhex("a3 01 f5 6161 83 f6 f7 f93e00 43 010203 9f 5f4161ff c1 20 ff", in);
  j.len = 0;
  TT_EQ_INT(troupe_cbor_to_json(in, n, &j, NULL), 0);
  TT_EQ_STR((char *)j.data, "{\"1\":true,\"a\":[null,null,1.5],\"AQID\":[\"YQ==\",-1]}");
  troupe_buf_free(&j);
}

/* ------------------------------------------------------------------ */
/* Allocation failures                                                 */

static void test_alloc_failures(void) {
  uint64_t seed = 5;
  fx_sink v;
  fx_gen_sink(&seed, &v);
  troupe_buf b = {0};
  TT_EQ_INT(enc(&fx_sink_type, &v, &b), 0);
  int fails = 0;
  for (int k = 1; k < 400; k++) {
    fx_sink w;
    troupe__types_fail_countdown = k;
    int rc = dec(&fx_sink_type, b.data, b.len, &w);
    troupe__types_fail_countdown = 0;
    if (rc == 0) {
      TT_ASSERT(troupe_value_equal(&fx_sink_type, &v, &w));
      troupe_value_free(&fx_sink_type, &w);
      break;
    }
    fails++;
    TT_EQ_INT(rc, TROUPE_ENOMEM);
  }
  TT_ASSERT(fails > 10);
  fails = 0;
  for (int k = 1; k < 400; k++) {
    fx_sink w;
    troupe__types_fail_countdown = k;
    int rc = troupe_value_copy(&fx_sink_type, &w, &v);
    troupe__types_fail_countdown = 0;
    if (rc == 0) {
      TT_ASSERT(troupe_value_equal(&fx_sink_type, &v, &w));
      troupe_value_free(&fx_sink_type, &w);
      break;
    }
    fails++;
    TT_EQ_INT(rc, TROUPE_ENOMEM);
    fx_sink z;
    memset(&z, 0, sizeof z);
    TT_ASSERT(memcmp(&w, &z, sizeof z) == 0);
  }
  TT_ASSERT(fails > 10);
  for (int k = 1; k < 20; k++) {
    troupe_buf e = {0};
    troupe__types_fail_countdown = k;
    int rc = troupe_encode(&fx_sink_type, &v, &e, &fx_opts);
    troupe__types_fail_countdown = 0;
    TT_ASSERT(rc == 0 || rc == TROUPE_ENOMEM);
    TT_ASSERT(rc || (e.len == b.len && !memcmp(e.data, b.data, b.len)));
    troupe_buf_free(&e);
    if (!rc) break;
  }
  troupe_value_free(&fx_sink_type, &v);
  troupe_buf_free(&b);
}

static void test_bad_args(void) {
  fx_point p = {0};
  troupe_buf b = {0};
  TT_EQ_INT(troupe_encode(NULL, &p, &b, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_encode(&fx_point_type, NULL, &b, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_encode(&fx_point_type, &p, NULL, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_decode(&fx_point_type, NULL, 3, &p, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_decode(&fx_point_type, NULL, 0, &p, NULL), TROUPE_EDECODE);
  TT_EQ_INT(troupe_value_to_json(NULL, &p, &b, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_cbor_to_json(NULL, 1, &b, NULL), TROUPE_EINVAL);
  fx_sink s;
  memset(&s, 0, sizeof s);
  s.s = "\xff";
  TT_EQ_INT(troupe_encode(&fx_sink_type, &s, &b, NULL), TROUPE_EINVAL);
  TT_ASSERT(strstr(troupe_errmsg(), "field 's': string is not UTF-8"));
  TT_EQ_INT(b.len, 0);
  troupe_buf_free(&b);
}

/* The decoder's inline head reader agrees with libcbor's. */
static void test_head_reader(void) {
  uint64_t seed = 11;
  uint8_t buf[16];
  for (int first = 0; first < 256; first++)
    for (int i = 0; i < 2000; i++) {
      buf[0] = (uint8_t)first;
      for (int k = 1; k < 16; k++) buf[k] = (uint8_t)fx_rng(&seed);
      if (i % 4 == 0) memset(buf + 1, 0, 8);      /* small arguments */
      size_t n = 1 + fx_rng(&seed) % 16;
      TT_EQ_INT(troupe__cbor_head_check(buf, n), 0);
    }
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  TT_RUN(test_point_bytes);
  TT_RUN(test_canonical_key_order);
  TT_RUN(test_canonical_numbers);
  TT_RUN(test_property_sink);
  TT_RUN(test_property_tree);
  TT_RUN(test_equal_values_equal_bytes);
  TT_RUN(test_unknown_fields_skipped);
  TT_RUN(test_missing_fields_default);
  TT_RUN(test_wrong_types);
  TT_RUN(test_floats_widen);
  TT_RUN(test_truncations_and_flips);
  TT_RUN(test_depth_limit);
  TT_RUN(test_size_limits);
  TT_RUN(test_refs);
  TT_RUN(test_custom_codec);
  TT_RUN(test_json);
  TT_RUN(test_alloc_failures);
  TT_RUN(test_bad_args);
  TT_RUN(test_head_reader);
  return tt_done();
}
