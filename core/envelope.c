/*
 * envelope.c: the stable envelope wire format (docs/envelope-format.md).
 *
 *   [ format, manifest, version, payload (, metadata) ]
 *
 * The payload is a byte string rather than an inline item so that a reader
 * can route, store or forward an envelope without knowing its type, and
 * decode it later (or never) with the codec options of its choice.
 */
#include "core/types_internal.h"

#include <cbor.h>

/* CBOR heads in their shortest form (what libcbor writes), inline: the
 * envelope of every remote message goes through here. */
enum { M_UINT = 0, M_NEGINT = 1, M_BYTES = 2, M_TEXT = 3, M_ARRAY = 4,
       M_MAP = 5 };

static inline size_t head_write(uint8_t *p, int major, uint64_t v) {
  uint8_t mt = (uint8_t)(major << 5);
  if (v < 24) {
    p[0] = mt | (uint8_t)v;
    return 1;
  }
  if (v <= UINT8_MAX) {
    p[0] = mt | 24;
    p[1] = (uint8_t)v;
    return 2;
  }
  if (v <= UINT16_MAX) {
    p[0] = mt | 25;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)v;
    return 3;
  }
  if (v <= UINT32_MAX) {
    p[0] = mt | 26;
    for (int i = 0; i < 4; i++) p[1 + i] = (uint8_t)(v >> (24 - 8 * i));
    return 5;
  }
  p[0] = mt | 27;
  for (int i = 0; i < 8; i++) p[1 + i] = (uint8_t)(v >> (56 - 8 * i));
  return 9;
}

static inline int put_head(troupe_buf *b, int major, uint64_t v) {
  if (TROUPE_UNLIKELY(b->cap - b->len < 9)) {
    int rc = troupe_buf_reserve(b, 9);
    if (rc) return rc;
  }
  b->len += head_write(b->data + b->len, major, v);
  return 0;
}

static inline int put_str(troupe_buf *b, bool text, const void *p, size_t n) {
  if (TROUPE_UNLIKELY(b->cap - b->len < 9 + n)) {
    int rc = troupe_buf_reserve(b, 9 + n);
    if (rc) return rc;
  }
  b->len += head_write(b->data + b->len, text ? M_TEXT : M_BYTES, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static int check_meta(const troupe_meta *meta, size_t nmeta, size_t *order) {
  if (nmeta > TROUPE_ENVELOPE_MAX_META)
    return troupe__err(TROUPE_EINVAL, "%zu metadata entries (max %d)", nmeta,
                       TROUPE_ENVELOPE_MAX_META);
  if (nmeta && !meta) return troupe__err(TROUPE_EINVAL, "NULL metadata");
  for (size_t i = 0; i < nmeta; i++) {
    const troupe_meta *m = &meta[i];
    if (!m->key || !troupe__utf8_valid((const uint8_t *)m->key, m->key_len))
      return troupe__err(TROUPE_EINVAL, "metadata key %zu missing or not "
                         "UTF-8", i);
    switch (m->kind) {
      case TROUPE_META_INT: break;
      case TROUPE_META_TEXT:
        if (m->len && (!m->data || !troupe__utf8_valid(m->data, m->len)))
          return troupe__err(TROUPE_EINVAL, "metadata '%.*s': text not UTF-8",
                             (int)m->key_len, m->key);
        break;
      case TROUPE_META_BYTES:
        if (m->len && !m->data)
          return troupe__err(TROUPE_EINVAL, "metadata '%.*s': NULL bytes",
                             (int)m->key_len, m->key);
        break;
      default:
        return troupe__err(TROUPE_EINVAL, "metadata '%.*s': bad kind %d",
                           (int)m->key_len, m->key, (int)m->kind);
    }
    /* Insertion sort of indices into canonical key order. */
    size_t j = i;
    while (j > 0) {
      const troupe_meta *p = &meta[order[j - 1]];
      int c = troupe__keycmp(p->key, p->key_len, m->key, m->key_len);
      if (c == 0)
        return troupe__err(TROUPE_EINVAL, "duplicate metadata key '%.*s'",
                           (int)m->key_len, m->key);
      if (c < 0) break;
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
  return 0;
}

static int put_meta(troupe_buf *b, const troupe_meta *meta, size_t nmeta,
                    const size_t *order) {
  int rc = put_head(b, M_MAP, nmeta);
  for (size_t k = 0; k < nmeta && !rc; k++) {
    const troupe_meta *m = &meta[order ? order[k] : k];
    rc = put_str(b, true, m->key, m->key_len);
    if (rc) break;
    switch (m->kind) {
      case TROUPE_META_INT:
        if (m->i >= 0) rc = put_head(b, M_UINT, (uint64_t)m->i);
        else rc = put_head(b, M_NEGINT, (uint64_t)(-1 - m->i));
        break;
      case TROUPE_META_TEXT:
        rc = put_str(b, true, m->data, m->len);
        break;
      default:
        rc = put_str(b, false, m->data, m->len);
        break;
    }
  }
  return rc;
}

/* Array head, format, manifest (already checked), version. */
static int put_prefix_checked(troupe_buf *b, const char *manifest, size_t ml,
                              uint32_t version, bool with_meta) {
  int rc = put_head(b, M_ARRAY, with_meta ? 5 : 4);
  if (!rc) rc = put_head(b, M_UINT, TROUPE_ENVELOPE_FORMAT);
  if (!rc) rc = put_str(b, true, manifest, ml);
  if (!rc) rc = put_head(b, M_UINT, version);
  return rc;
}

static int put_prefix(troupe_buf *b, const char *manifest, uint32_t version,
                      bool with_meta) {
  if (!manifest || !manifest[0])
    return troupe__err(TROUPE_EINVAL, "envelope without a manifest");
  size_t ml = strlen(manifest);
  if (ml > TROUPE_MANIFEST_MAX ||
      !troupe__utf8_valid((const uint8_t *)manifest, ml))
    return troupe__err(TROUPE_EINVAL, "manifest longer than %d bytes or not "
                       "UTF-8", TROUPE_MANIFEST_MAX);
  if (version == 0)
    return troupe__err(TROUPE_EINVAL, "envelope '%s': version 0", manifest);
  return put_prefix_checked(b, manifest, ml, version, with_meta);
}

/* The payload of t as a byte string: encoded in place behind a one-byte
 * head, slid forward only when it is 24 bytes or longer. */
static int put_payload(troupe_buf *out, const troupe_type *t,
                       const void *value, const troupe_codec_opts *opts) {
  int rc = troupe_buf_reserve(out, 1);
  if (rc) return rc;
  size_t pos = out->len + 1;
  out->len = pos;
  rc = troupe_encode(t, value, out, opts);
  if (rc) return rc;
  size_t plen = out->len - pos;
  if (TROUPE_LIKELY(plen < 24)) {
    out->data[pos - 1] = (uint8_t)(M_BYTES << 5 | plen);
    return 0;
  }
  uint8_t head[9];
  size_t hl = head_write(head, M_BYTES, plen);
  rc = troupe_buf_reserve(out, hl - 1);
  if (rc) return rc;
  memmove(out->data + pos - 1 + hl, out->data + pos, plen);
  memcpy(out->data + pos - 1, head, hl);
  out->len += hl - 1;
  return 0;
}

int troupe_envelope_encode(const troupe_envelope *env, troupe_buf *out) {
  if (!env || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_envelope_encode: NULL argument");
  if (env->payload_len && !env->payload)
    return troupe__err(TROUPE_EINVAL, "envelope: NULL payload");
  size_t order[TROUPE_ENVELOPE_MAX_META];
  int rc = check_meta(env->meta, env->nmeta, order);
  if (rc) return rc;
  size_t saved = out->len;
  rc = put_prefix(out, env->manifest, env->version, env->nmeta > 0);
  if (!rc) rc = put_str(out, false, env->payload, env->payload_len);
  if (!rc && env->nmeta) rc = put_meta(out, env->meta, env->nmeta, order);
  if (rc) out->len = saved;
  return rc;
}

int troupe_envelope_encode_value(const troupe_type *t, const void *value,
                                 const troupe_meta *meta, size_t nmeta,
                                 troupe_buf *out,
                                 const troupe_codec_opts *opts) {
  if (!t || !value || !out)
    return troupe__err(TROUPE_EINVAL,
                       "troupe_envelope_encode_value: NULL argument");
  int rc = troupe_type_prepare(t);
  if (rc) return rc;
  size_t order[TROUPE_ENVELOPE_MAX_META];
  if ((rc = check_meta(meta, nmeta, order))) return rc;
  size_t saved = out->len;
  /* prepare checked the manifest and version */
  rc = put_prefix_checked(out, t->manifest, strlen(t->manifest), t->version,
                          nmeta > 0);
  if (!rc) rc = put_payload(out, t, value, opts);
  if (!rc && nmeta) rc = put_meta(out, meta, nmeta, order);
  if (rc) out->len = saved;
  return rc;
}

int troupe__envelope_encode_sorted(const troupe_type *t, const void *value,
                                   const troupe_meta *meta, size_t nmeta,
                                   troupe_buf *out,
                                   const troupe_codec_opts *opts) {
  int rc = troupe_type_prepare(t);
  if (rc) return rc;
  for (size_t i = 0; i < nmeta; i++)
    if (meta[i].kind == TROUPE_META_TEXT && meta[i].len &&
        !troupe__utf8_valid(meta[i].data, meta[i].len))
      return troupe__err(TROUPE_EINVAL, "metadata '%.*s': text not UTF-8",
                         (int)meta[i].key_len, meta[i].key);
  size_t saved = out->len;
  rc = put_prefix_checked(out, t->manifest, strlen(t->manifest), t->version,
                          nmeta > 0);
  if (!rc) rc = put_payload(out, t, value, opts);
  if (!rc && nmeta) rc = put_meta(out, meta, nmeta, NULL);
  if (rc) out->len = saved;
  return rc;
}

/* ------------------------------------------------------------------ */
/* Decoding: a small reader of heads, with the canonical widths checked
 * loosely (a reader accepts any well-formed head). */

typedef struct rd {
  const uint8_t *p, *end, *start;
} rd;

static int rd_fail(const rd *r, const char *what) {
  return troupe__err(TROUPE_EDECODE, "envelope: %s at offset %zu", what,
                     (size_t)(r->p - r->start));
}

/* A head: major type and argument. Indefinite lengths are refused: an
 * envelope is always written with definite ones. */
static int rd_head(rd *r, int *major, uint64_t *arg) {
  if (r->p >= r->end) return rd_fail(r, "truncated");
  uint8_t ib = *r->p;
  int ai = ib & 31;
  *major = ib >> 5;
  size_t extra;
  if (ai < 24) extra = 0;
  else if (ai <= 27) extra = (size_t)1 << (ai - 24);
  else return rd_fail(r, "indefinite or reserved length");
  if ((size_t)(r->end - r->p) < 1 + extra) return rd_fail(r, "truncated");
  uint64_t v = ai < 24 ? (uint64_t)ai : 0;
  for (size_t i = 0; i < extra; i++) v = v << 8 | r->p[1 + i];
  r->p += 1 + extra;
  *arg = v;
  return 0;
}

static int rd_str(rd *r, int want_major, const uint8_t **s, size_t *n) {
  int major;
  uint64_t len;
  int rc = rd_head(r, &major, &len);
  if (rc) return rc;
  if (major != want_major)
    return rd_fail(r, want_major == 3 ? "expected text" : "expected bytes");
  if (len > (uint64_t)(r->end - r->p)) return rd_fail(r, "truncated string");
  *s = r->p;
  *n = (size_t)len;
  r->p += len;
  if (want_major == 3 && !troupe__utf8_valid(*s, *n))
    return rd_fail(r, "text not UTF-8");
  return 0;
}

int troupe_envelope_decode(const uint8_t *data, size_t len,
                           troupe_envelope *env) {
  if (!env || (!data && len))
    return troupe__err(TROUPE_EINVAL, "troupe_envelope_decode: NULL argument");
  memset(env, 0, offsetof(troupe_envelope, meta));
  env->nmeta = 0;
  env->_manifest[0] = '\0';
  rd r = {data, data + len, data};
  int major, rc;
  uint64_t n, v;
  if ((rc = rd_head(&r, &major, &n))) return rc;
  if (major != 4) return rd_fail(&r, "not an array");
  if (n < 4) return rd_fail(&r, "fewer than 4 elements");
  if ((rc = rd_head(&r, &major, &v))) return rc;
  if (major != 0 || v == 0) return rd_fail(&r, "bad format number");
  if (v > TROUPE_ENVELOPE_FORMAT)
    return troupe__err(TROUPE_EUNSUPPORTED,
                       "envelope format %llu is newer than %d",
                       (unsigned long long)v, TROUPE_ENVELOPE_FORMAT);
  env->format = (uint32_t)v;
  const uint8_t *s;
  size_t sl;
  if ((rc = rd_str(&r, 3, &s, &sl))) return rc;
  if (sl == 0) return rd_fail(&r, "empty manifest");
  if (sl > TROUPE_MANIFEST_MAX)
    return troupe__err(TROUPE_ETOOBIG, "envelope: manifest of %zu bytes", sl);
  if (memchr(s, 0, sl)) return rd_fail(&r, "NUL in manifest");
  memcpy(env->_manifest, s, sl);
  env->_manifest[sl] = '\0';
  env->manifest = env->_manifest;
  if ((rc = rd_head(&r, &major, &v))) return rc;
  if (major != 0 || v == 0 || v > UINT32_MAX)
    return rd_fail(&r, "bad schema version");
  env->version = (uint32_t)v;
  if ((rc = rd_str(&r, 2, &env->payload, &env->payload_len))) return rc;
  if (n >= 5) {
    uint64_t nm;
    if ((rc = rd_head(&r, &major, &nm))) return rc;
    if (major != 5) return rd_fail(&r, "metadata is not a map");
    if (nm > TROUPE_ENVELOPE_MAX_META)
      return troupe__err(TROUPE_ETOOBIG, "envelope: %llu metadata entries",
                         (unsigned long long)nm);
    for (uint64_t i = 0; i < nm; i++) {
      troupe_meta *m = &env->meta[i];
      memset(m, 0, sizeof *m);
      const uint8_t *k;
      if ((rc = rd_str(&r, 3, &k, &m->key_len))) return rc;
      m->key = (const char *)k;
      for (uint64_t j = 0; j < i; j++)
        if (env->meta[j].key_len == m->key_len &&
            memcmp(env->meta[j].key, m->key, m->key_len) == 0)
          return rd_fail(&r, "duplicate metadata key");
      if (r.p >= r.end) return rd_fail(&r, "truncated");
      int vm = *r.p >> 5;
      if (vm == 0 || vm == 1) {
        if ((rc = rd_head(&r, &major, &v))) return rc;
        if (v > INT64_MAX) return rd_fail(&r, "metadata integer out of range");
        m->kind = TROUPE_META_INT;
        m->i = major == 0 ? (int64_t)v : -1 - (int64_t)v;
      } else if (vm == 2 || vm == 3) {
        m->kind = vm == 3 ? TROUPE_META_TEXT : TROUPE_META_BYTES;
        if ((rc = rd_str(&r, vm, &m->data, &m->len))) return rc;
      } else {
        return rd_fail(&r, "metadata value is not an integer or string");
      }
      env->nmeta = (size_t)i + 1;
    }
  }
  /* Elements a later format-1 writer may add: skip them. */
  for (uint64_t i = 5; i < n; i++) {
    size_t used;
    rc = troupe__cbor_skip(r.p, (size_t)(r.end - r.p), NULL, &used);
    if (rc) return rc;
    r.p += used;
  }
  if (r.p != r.end) return rd_fail(&r, "trailing bytes");
  return 0;
}

int troupe_envelope_decode_value(const troupe_envelope *env,
                                 const troupe_type **type, void *value,
                                 size_t value_size,
                                 const troupe_codec_opts *opts) {
  if (!env || !value || !env->manifest)
    return troupe__err(TROUPE_EINVAL,
                       "troupe_envelope_decode_value: NULL argument");
  const troupe_type *t;
  int rc = troupe_type_resolve(env->manifest, env->version, &t);
  if (rc) return rc;
  if (value_size && value_size < t->size)
    return troupe__err(TROUPE_ETOOBIG, "'%s' needs %u bytes, have %zu",
                       t->manifest, t->size, value_size);
  rc = troupe_decode_as(env->manifest, env->version, env->payload,
                        env->payload_len, t, value, opts);
  if (!rc && type) *type = t;
  return rc;
}

const troupe_meta *troupe_envelope_meta(const troupe_envelope *env,
                                        const char *key) {
  if (!env || !key) return NULL;
  size_t n = strlen(key);
  for (size_t i = 0; i < env->nmeta && i < TROUPE_ENVELOPE_MAX_META; i++)
    if (env->meta[i].key_len == n && memcmp(env->meta[i].key, key, n) == 0)
      return &env->meta[i];
  return NULL;
}
