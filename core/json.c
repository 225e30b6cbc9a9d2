/*
 * json.c: JSON renderings of described values and of raw CBOR, for tools
 * and logs. One line, no trailing newline, keys in declaration order.
 */
#include "core/types_internal.h"

#include <cbor.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static int put(troupe_buf *b, const char *s, size_t n) {
  return troupe_buf_append(b, s, n);
}
#define PUTS(b, lit) put((b), (lit), sizeof(lit) - 1)

static int putf(troupe_buf *b, const char *fmt, ...) TROUPE_PRINTF(2, 3);
static int putf(troupe_buf *b, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return troupe__err(TROUPE_EINVAL, "json: format error");
  return put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string. Bytes that are not valid UTF-8 become U+FFFD. */
static int put_jstr(troupe_buf *b, const uint8_t *s, size_t n) {
  int rc = PUTS(b, "\"");
  size_t i = 0;
  while (!rc && i < n) {
    uint8_t c = s[i];
    if (c >= 0x80) {
      size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (k > 1 && i + k <= n && troupe__utf8_valid(s + i, k)) {
        rc = put(b, (const char *)s + i, k);
        i += k;
      } else {
        rc = PUTS(b, "\\ufffd");
        i++;
      }
      continue;
    }
    switch (c) {
      case '"': rc = PUTS(b, "\\\""); break;
      case '\\': rc = PUTS(b, "\\\\"); break;
      case '\n': rc = PUTS(b, "\\n"); break;
      case '\r': rc = PUTS(b, "\\r"); break;
      case '\t': rc = PUTS(b, "\\t"); break;
      default:
        if (c < 0x20) rc = putf(b, "\\u%04x", c);
        else rc = put(b, (const char *)&c, 1);
    }
    i++;
  }
  if (!rc) rc = PUTS(b, "\"");
  return rc;
}

static int put_base64(troupe_buf *b, const uint8_t *s, size_t n) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  int rc = troupe_buf_reserve(b, 2 + (n + 2) / 3 * 4);
  if (rc) return rc;
  char *o = (char *)b->data + b->len;
  *o++ = '"';
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63];
    *o++ = tab[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)s[i] << 16;
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = '=';
    *o++ = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63];
    *o++ = '=';
  }
  *o++ = '"';
  b->len = (size_t)(o - (char *)b->data);
  return 0;
}

static int put_double(troupe_buf *b, double d, bool single) {
  if (!isfinite(d)) return PUTS(b, "null");
  return putf(b, single ? "%.9g" : "%.17g", d);
}

/* ------------------------------------------------------------------ */
/* Raw CBOR                                                            */

typedef struct jr {
  const uint8_t *p, *end;
  troupe_limits lim;
} jr;

static int jr_fail(const char *what) {
  return troupe__err(TROUPE_EDECODE, "CBOR to JSON: %s", what);
}

/* One head: major, additional info, argument (for ai < 28). */
static int jr_head(jr *r, int *major, int *ai, uint64_t *arg) {
  if (r->p >= r->end) return jr_fail("truncated");
  uint8_t ib = *r->p++;
  *major = ib >> 5;
  *ai = ib & 31;
  *arg = 0;
  if (*ai < 24) { *arg = (uint64_t)*ai; return 0; }
  if (*ai == 31) return 0;
  if (*ai > 27) return jr_fail("reserved additional information");
  size_t n = (size_t)1 << (*ai - 24);
  if ((size_t)(r->end - r->p) < n) return jr_fail("truncated");
  for (size_t i = 0; i < n; i++) *arg = *arg << 8 | *r->p++;
  return 0;
}

static double half_to_double(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24)
           : e == 31 ? (m ? NAN : INFINITY)
           : ldexp(m + 1024, e - 25);
  return (h & 0x8000) ? -v : v;
}

static int jr_item(jr *r, troupe_buf *b, uint32_t depth);

/* A string (definite or chunked) gathered into tmp. */
static int jr_gather(jr *r, int major, int ai, uint64_t arg, troupe_buf *tmp) {
  if (ai != 31) {
    if (arg > (uint64_t)(r->end - r->p)) return jr_fail("truncated string");
    if (arg > r->lim.max_string) return troupe__err(TROUPE_ETOOBIG,
                                                    "CBOR to JSON: string");
    int rc = troupe_buf_append(tmp, r->p, (size_t)arg);
    r->p += arg;
    return rc;
  }
  for (;;) {
    int m, a;
    uint64_t n;
    if (r->p < r->end && *r->p == 0xFF) { r->p++; return 0; }
    int rc = jr_head(r, &m, &a, &n);
    if (rc) return rc;
    if (m != major || a == 31) return jr_fail("bad chunk");
    if (n > (uint64_t)(r->end - r->p)) return jr_fail("truncated string");
    if (tmp->len + n > r->lim.max_string)
      return troupe__err(TROUPE_ETOOBIG, "CBOR to JSON: string");
    if ((rc = troupe_buf_append(tmp, r->p, (size_t)n))) return rc;
    r->p += n;
  }
}

static int jr_item(jr *r, troupe_buf *b, uint32_t depth) {
  int major, ai, rc;
  uint64_t arg;
  if (depth > r->lim.max_depth)
    return troupe__err(TROUPE_ETOOBIG, "CBOR to JSON: nested deeper than %u",
                       r->lim.max_depth);
  if ((rc = jr_head(r, &major, &ai, &arg))) return rc;
  switch (major) {
    case 0:
      if (ai == 31) return jr_fail("indefinite integer");
      return putf(b, "%" PRIu64, arg);
    case 1:
      if (ai == 31) return jr_fail("indefinite integer");
      if (arg == UINT64_MAX) return PUTS(b, "-18446744073709551616");
      return putf(b, "-%" PRIu64, arg + 1);
    case 2:
    case 3: {
      troupe_buf tmp = {0};
      rc = jr_gather(r, major, ai, arg, &tmp);
      if (!rc) rc = major == 2 ? put_base64(b, tmp.data, tmp.len)
                               : put_jstr(b, tmp.data, tmp.len);
      troupe_buf_free(&tmp);
      return rc;
    }
    case 4:
    case 5: {
      bool map = major == 5;
      rc = put(b, map ? "{" : "[", 1);
      for (uint64_t i = 0; !rc; i++) {
        if (ai == 31) {
          if (r->p >= r->end) return jr_fail("truncated");
          if (*r->p == 0xFF) { r->p++; break; }
        } else if (i >= arg) {
          break;
        }
        if (i >= r->lim.max_items)
          return troupe__err(TROUPE_ETOOBIG, "CBOR to JSON: too many items");
        if (r->p >= r->end) return jr_fail("truncated");
        if (i && (rc = PUTS(b, ","))) break;
        if (map) {
          if ((*r->p >> 5) == 3) {
            rc = jr_item(r, b, depth + 1);
          } else {      /* a non-text key: render it, then quote that */
            troupe_buf k = {0};
            rc = jr_item(r, &k, depth + 1);
            if (!rc && k.len && k.data[0] == '"') rc = put(b, (char *)k.data, k.len);
            else if (!rc) rc = put_jstr(b, k.data, k.len);
            troupe_buf_free(&k);
          }
          if (!rc) rc = PUTS(b, ":");
        }
        if (!rc) rc = jr_item(r, b, depth + 1);
      }
      if (!rc) rc = put(b, map ? "}" : "]", 1);
      return rc;
    }
    case 6:
      if (ai == 31) return jr_fail("indefinite tag");
      return jr_item(r, b, depth + 1);    /* tags are dropped */
    default:
      switch (ai) {
        case 20: return PUTS(b, "false");
        case 21: return PUTS(b, "true");
        case 22: case 23: return PUTS(b, "null");
        case 25: return put_double(b, half_to_double((uint16_t)arg), true);
        case 26: {
          uint32_t u = (uint32_t)arg;
          float f;
          memcpy(&f, &u, 4);
          return put_double(b, f, true);
        }
        case 27: {
          double d;
          memcpy(&d, &arg, 8);
          return put_double(b, d, false);
        }
        case 31: return jr_fail("unexpected break");
        default: return putf(b, "\"simple(%u)\"", (unsigned)arg);
      }
  }
}

int troupe_cbor_to_json(const uint8_t *data, size_t len, troupe_buf *out,
                        const troupe_limits *limits) {
  if ((!data && len) || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_cbor_to_json: NULL argument");
  jr r = {data, data + len, {0, 0, 0, 0}};
  troupe__limits_resolve(limits, &r.lim);
  size_t saved = out->len;
  int rc = jr_item(&r, out, 0);
  if (!rc && r.p != r.end) rc = jr_fail("trailing bytes");
  if (!rc) rc = troupe_buf_reserve(out, 1);
  if (rc) {
    out->len = saved;
    return rc;
  }
  out->data[out->len] = '\0';
  return 0;
}

/* ------------------------------------------------------------------ */
/* Described values                                                    */

typedef struct jctx {
  const troupe_codec_opts *opts;
  troupe_ref_to_uri_fn to_uri;
  uint32_t max_depth;
} jctx;

static int json_value(jctx *c, const troupe_type *t, const uint8_t *v,
                      troupe_buf *b, uint32_t depth);

static int json_ref(jctx *c, troupe_ref ref, troupe_buf *b) {
  if (troupe_ref_is_none(ref)) return PUTS(b, "null");
  char small[256];
  int n = c->to_uri(c->opts->system, ref, small, sizeof small);
  if (n >= 0 && (size_t)n < sizeof small)
    return put_jstr(b, (const uint8_t *)small, (size_t)n);
  return putf(b, "\"<ref %" PRIu64 ".%" PRIu64 ">\"", ref.node, ref.uid);
}

static int json_elem(jctx *c, const troupe_field *f, const uint8_t *p,
                     troupe_buf *b, uint32_t depth) {
  switch (f->kind) {
    case TROUPE_K_I8: return putf(b, "%d", *(const int8_t *)p);
    case TROUPE_K_I16: { int16_t x; memcpy(&x, p, 2); return putf(b, "%d", x); }
    case TROUPE_K_I32: { int32_t x; memcpy(&x, p, 4); return putf(b, "%" PRId32, x); }
    case TROUPE_K_I64: { int64_t x; memcpy(&x, p, 8); return putf(b, "%" PRId64, x); }
    case TROUPE_K_U8: return putf(b, "%u", *p);
    case TROUPE_K_U16: { uint16_t x; memcpy(&x, p, 2); return putf(b, "%u", x); }
    case TROUPE_K_U32: { uint32_t x; memcpy(&x, p, 4); return putf(b, "%" PRIu32, x); }
    case TROUPE_K_U64: { uint64_t x; memcpy(&x, p, 8); return putf(b, "%" PRIu64, x); }
    case TROUPE_K_F32: { float x; memcpy(&x, p, 4); return put_double(b, x, true); }
    case TROUPE_K_F64: { double x; memcpy(&x, p, 8); return put_double(b, x, false); }
    case TROUPE_K_BOOL: return *p ? PUTS(b, "true") : PUTS(b, "false");
    case TROUPE_K_STRING: {
      const char *s;
      memcpy(&s, p, sizeof s);
      if (!s) return PUTS(b, "null");
      return put_jstr(b, (const uint8_t *)s, strlen(s));
    }
    case TROUPE_K_BYTES: {
      const troupe_bytes *x = (const troupe_bytes *)p;
      return put_base64(b, x->data, x->data ? x->len : 0);
    }
    case TROUPE_K_REF: {
      troupe_ref r;
      memcpy(&r, p, sizeof r);
      return json_ref(c, r, b);
    }
    case TROUPE_K_NESTED:
      return json_value(c, f->type, p, b, depth + 1);
    default:
      return PUTS(b, "null");
  }
}

static int json_value(jctx *c, const troupe_type *t, const uint8_t *v,
                      troupe_buf *b, uint32_t depth) {
  if (depth > c->max_depth)
    return troupe__err(TROUPE_ETOOBIG, "json: '%s' nested deeper than %u",
                       t->manifest, c->max_depth);
  int rc = troupe_type_prepare(t);
  if (rc) return rc;
  if (t->ops && t->ops->encode) {
    troupe_buf tmp = {0};
    rc = t->ops->encode(t, v, &tmp);
    if (!rc) {
      troupe_limits l = {c->max_depth, 0, 0, 0};
      rc = troupe_cbor_to_json(tmp.data, tmp.len, b, &l);
    }
    troupe_buf_free(&tmp);
    return rc;
  }
  if ((rc = PUTS(b, "{"))) return rc;
  bool first = true;
  for (uint32_t i = 0; i < t->nfields; i++) {
    const troupe_field *f = &t->fields[i];
    if ((f->flags & TROUPE_FF_OPTIONAL) && !v[f->present_offset]) continue;
    if (!first && (rc = PUTS(b, ","))) return rc;
    first = false;
    if ((rc = put_jstr(b, (const uint8_t *)f->name, strlen(f->name))) ||
        (rc = PUTS(b, ":")))
      return rc;
    const uint8_t *p = v + f->offset;
    if (f->shape == TROUPE_FS_SCALAR) {
      rc = json_elem(c, f, p, b, depth);
    } else {
      size_t n = f->count;
      const uint8_t *items = p;
      if (f->shape == TROUPE_FS_VEC) {
        const troupe_vec *vec = (const troupe_vec *)p;
        items = vec->items;
        n = vec->items ? vec->len : 0;
      }
      rc = PUTS(b, "[");
      for (size_t k = 0; k < n && !rc; k++) {
        if (k) rc = PUTS(b, ",");
        if (!rc) rc = json_elem(c, f, items + k * f->elem_size, b, depth + 1);
      }
      if (!rc) rc = PUTS(b, "]");
    }
    if (rc) return rc;
  }
  return PUTS(b, "}");
}

int troupe_value_to_json(const troupe_type *t, const void *value,
                         troupe_buf *out, const troupe_codec_opts *opts) {
  if (!t || !value || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_value_to_json: NULL argument");
  troupe_limits l;
  troupe__limits_resolve(opts ? opts->limits : NULL, &l);
  jctx c = {opts ? opts : &troupe__codec_default_opts,
            opts && opts->ref_to_uri ? opts->ref_to_uri : troupe__ref_to_uri,
            l.max_depth};
  size_t saved = out->len;
  int rc = json_value(&c, t, value, out, 1);
  if (!rc) rc = troupe_buf_reserve(out, 1);
  if (rc) {
    out->len = saved;
    return rc;
  }
  out->data[out->len] = '\0';
  return 0;
}
