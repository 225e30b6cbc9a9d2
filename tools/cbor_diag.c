/* cbor_diag.c: a bounded, recursion-limited CBOR diagnostic printer. It
 * never trusts a length: every count is checked against the bytes left
 * before anything is read, so the work is linear in the input. */
#include "tools/cbor_diag.h"
#include "tools/utf8.h"

#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dr {
  const uint8_t *p, *start, *end;
  troupe_buf *out;
  size_t max_out;
  int full;           /* output limit reached */
  int nomem;
  const char *why;
  size_t at;
} dr;

#define D_FAIL (-1)
#define D_DEEP (-2)
#define D_STOP (-3)   /* output limit: stop quietly */

static int fail(dr *r, const uint8_t *where, const char *why) {
  r->why = why;
  r->at = (size_t)(where - r->start);
  return D_FAIL;
}

static int put(dr *r, const void *s, size_t n) {
  if (r->full) return D_STOP;
  if (r->out->len + n > r->max_out) {
    r->full = 1;
    return D_STOP;
  }
  if (troupe_buf_append(r->out, s, n) < 0) {
    r->nomem = 1;
    return D_STOP;
  }
  return 0;
}
#define PUTS(r, lit) put((r), (lit), sizeof(lit) - 1)

static int putf(dr *r, const char *fmt, ...) TROUPE_PRINTF(2, 3);
static int putf(dr *r, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  return put(r, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n
                                                         : sizeof tmp - 1);
}

/* Read the head at r->p: major type, additional info and argument. */
static int head(dr *r, int *mt, int *ai, uint64_t *arg) {
  if (r->p >= r->end) return fail(r, r->p, "truncated item");
  uint8_t b = *r->p++;
  *mt = b >> 5;
  *ai = b & 31;
  *arg = (uint64_t)*ai;
  if (*ai < 24 || *ai == 31) return 0;
  if (*ai > 27) return fail(r, r->p - 1, "reserved additional information");
  size_t n = (size_t)1 << (*ai - 24);
  if ((size_t)(r->end - r->p) < n) return fail(r, r->p - 1, "truncated head");
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = v << 8 | r->p[i];
  r->p += n;
  *arg = v;
  return 0;
}

/* A definite string of n bytes at r->p (n already checked). */
static int str_body(dr *r, int mt, uint64_t n) {
  const uint8_t *s = r->p;
  int rc = 0;
  r->p += n;
  if (mt == 2) {
    static const char hx[] = "0123456789abcdef";
    if ((rc = PUTS(r, "h'"))) return rc;
    for (uint64_t i = 0; i < n; i++) {
      char two[2] = {hx[s[i] >> 4], hx[s[i] & 15]};
      if ((rc = put(r, two, 2))) return rc;
    }
    return PUTS(r, "'");
  }
  for (uint64_t i = 0; i < n;) {
    if (!tool_utf8_len(s + i, (size_t)(n - i)))
      return fail(r, s + i, "invalid UTF-8 in a text string");
    i += tool_utf8_len(s + i, (size_t)(n - i));
  }
  if ((rc = PUTS(r, "\""))) return rc;
  for (uint64_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    if (c == '"' || c == '\\') rc = putf(r, "\\%c", c);
    else if (c < 0x20 || c == 0x7f) rc = putf(r, "\\u%04x", c);
    else rc = put(r, &s[i], 1);
    if (rc) return rc;
  }
  return PUTS(r, "\"");
}

static int put_double(dr *r, double d) {
  if (isnan(d)) return PUTS(r, "NaN");
  if (isinf(d)) return d < 0 ? PUTS(r, "-Infinity") : PUTS(r, "Infinity");
  /* the fewest significant digits that read back the same value */
  char tmp[48];
  int prec = 1;
  for (; prec < 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
    if (strtod(tmp, NULL) == d) break;
  }
  snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
  const char *e = strchr(tmp, 'e');
  int exp10 = e ? atoi(e + 1) : 0;
  if (d == 0) exp10 = 0;
  if (exp10 >= -5 && exp10 < 21) {     /* plain notation, ".0" at least */
    int decimals = prec - 1 - exp10;
    snprintf(tmp, sizeof tmp, "%.*f", decimals < 1 ? 1 : decimals, d);
  }
  return put(r, tmp, strlen(tmp));
}

static double half_to_double(uint16_t h) {
  int e = (h >> 10) & 0x1f;
  int m = h & 0x3ff;
  double v;
  if (e == 0) v = ldexp(m, -24);
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = ldexp(m + 1024, e - 25);
  return (h & 0x8000) ? -v : v;
}

static int item(dr *r, uint32_t depth);

/* Elements of an array or map: n items (n_pairs * 2 for maps) or, when
 * indefinite, until a break. */
static int container(dr *r, int mt, int indef, uint64_t n, uint32_t depth) {
  int rc;
  const uint8_t *start = r->p - 1;
  if ((rc = put(r, mt == 4 ? "[" : "{", 1))) return rc;
  if (indef && (rc = PUTS(r, "_ "))) return rc;
  for (uint64_t i = 0;; i++) {
    if (indef) {
      if (r->p >= r->end) return fail(r, start, "missing break");
      if (*r->p == 0xff) {
        r->p++;
        break;
      }
    } else if (i == n) {
      break;
    }
    if (i && (rc = PUTS(r, ", "))) return rc;
    if ((rc = item(r, depth + 1))) return rc;
    if (mt == 5) {
      if ((rc = PUTS(r, ": "))) return rc;
      if (indef && r->p < r->end && *r->p == 0xff)
        return fail(r, r->p, "map key without a value");
      if ((rc = item(r, depth + 1))) return rc;
    }
  }
  return put(r, mt == 4 ? "]" : "}", 1);
}

static int item(dr *r, uint32_t depth) {
  if (depth >= TOOL_DIAG_MAX_DEPTH) {
    r->why = "nested too deeply";
    r->at = (size_t)(r->p - r->start);
    return D_DEEP;
  }
  const uint8_t *at = r->p;
  int mt, ai, rc;
  uint64_t arg;
  if ((rc = head(r, &mt, &ai, &arg))) return rc;
  uint64_t left = (uint64_t)(r->end - r->p);
  switch (mt) {
  case 0:
    if (ai == 31) return fail(r, at, "indefinite integer");
    return putf(r, "%" PRIu64, arg);
  case 1:
    if (ai == 31) return fail(r, at, "indefinite integer");
    if (arg == UINT64_MAX) return PUTS(r, "-18446744073709551616");
    return putf(r, "-%" PRIu64, arg + 1);
  case 2:
  case 3:
    if (ai != 31) {
      if (arg > left) return fail(r, at, "string longer than the input");
      return str_body(r, mt, arg);
    }
    if ((rc = PUTS(r, "(_ "))) return rc;
    for (int first = 1;; first = 0) {
      if (r->p >= r->end) return fail(r, at, "missing break");
      if (*r->p == 0xff) {
        r->p++;
        break;
      }
      const uint8_t *cat = r->p;
      int cmt, cai;
      uint64_t clen;
      if ((rc = head(r, &cmt, &cai, &clen))) return rc;
      if (cmt != mt || cai == 31)
        return fail(r, cat, "bad chunk in an indefinite string");
      if (clen > (uint64_t)(r->end - r->p))
        return fail(r, cat, "string longer than the input");
      if (!first && (rc = PUTS(r, ", "))) return rc;
      if ((rc = str_body(r, mt, clen))) return rc;
    }
    return PUTS(r, ")");
  case 4:
  case 5:
    if (ai != 31 && arg > (mt == 5 ? left / 2 : left))
      return fail(r, at, "more elements than the input holds");
    return container(r, mt, ai == 31, arg, depth);
  case 6:
    if (ai == 31) return fail(r, at, "indefinite tag");
    if ((rc = putf(r, "%" PRIu64 "(", arg))) return rc;
    if ((rc = item(r, depth + 1))) return rc;
    return PUTS(r, ")");
  default:
    break;
  }
  switch (ai) {
  case 20: return PUTS(r, "false");
  case 21: return PUTS(r, "true");
  case 22: return PUTS(r, "null");
  case 23: return PUTS(r, "undefined");
  case 24:
    if (arg < 32) return fail(r, at, "simple value in two bytes below 32");
    return putf(r, "simple(%" PRIu64 ")", arg);
  case 25: return put_double(r, half_to_double((uint16_t)arg));
  case 26: {
    uint32_t b = (uint32_t)arg;
    float f;
    memcpy(&f, &b, sizeof f);
    return put_double(r, f);
  }
  case 27: {
    double d;
    memcpy(&d, &arg, sizeof d);
    return put_double(r, d);
  }
  case 31: return fail(r, at, "break outside an indefinite item");
  default:
    if (ai < 20) return putf(r, "simple(%d)", ai);
    return fail(r, at, "reserved simple value");
  }
}

int tool_cbor_diag(const uint8_t *data, size_t len, troupe_buf *out,
                   size_t max_out, const char **why, size_t *at) {
  static const uint8_t none[1];
  dr r = {data ? data : none, data ? data : none, (data ? data : none) + len,
          out, out->len + max_out, 0, 0, NULL, 0};
  size_t saved = out->len;
  int rc = len ? item(&r, 0) : fail(&r, r.p, "empty payload");
  if (rc == D_STOP && r.nomem) {
    out->len = saved;
    *why = "out of memory";
    *at = 0;
    return TROUPE_ENOMEM;
  }
  if (rc == D_STOP) {
    r.full = 0;
    r.max_out = SIZE_MAX;
    rc = PUTS(&r, "...");
  } else if (rc == 0 && r.p != r.end) {
    rc = fail(&r, r.p, "trailing bytes after the item");
  }
  if (rc == 0 && troupe_buf_reserve(out, 1) < 0) rc = D_STOP;
  if (rc != 0) {
    out->len = saved;
    *why = r.why ? r.why : "out of memory";
    *at = r.at;
    return rc == D_DEEP ? TROUPE_ETOOBIG : rc == D_FAIL ? TROUPE_EDECODE
                                                        : TROUPE_ENOMEM;
  }
  out->data[out->len] = '\0';
  return 0;
}
