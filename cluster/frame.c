/*
 * frame.c: the TCP transport's framing (an incremental decoder over a
 * byte stream) and its handshake messages. See cluster/frame.h.
 */
#include "cluster/frame.h"

#include <stdio.h>
#include <stdlib.h>

uint8_t troupe__frame_flags_allowed(uint8_t kind) {
  switch (kind) {
    case TROUPE__FRAME_HANDSHAKE: return TROUPE__FRAME_F_PROOF;
    case TROUPE__FRAME_HANDSHAKE_ACK: return TROUPE__FRAME_F_REFUSED;
    case TROUPE__FRAME_ENVELOPE:
    case TROUPE__FRAME_CONTROL: return TROUPE__FRAME_F_USER;
    case TROUPE__FRAME_HEARTBEAT: return TROUPE__FRAME_F_REPLY;
    default: return 0;
  }
}

static bool kind_valid(uint8_t kind) {
  return kind >= 1 && kind <= TROUPE__FRAME_KIND_MAX;
}

int troupe__frame_append(troupe_buf *out, uint8_t kind, uint8_t flags,
                         const void *body, size_t len) {
  if (!out || (len && !body))
    return troupe__err(TROUPE_EINVAL, "frame_append: NULL argument");
  if (!kind_valid(kind) || (flags & ~troupe__frame_flags_allowed(kind)))
    return troupe__err(TROUPE_EINVAL, "frame kind %u with flags 0x%x",
                       kind, flags);
  if (len > TROUPE__FRAME_MAX_LIMIT)
    return troupe__err(TROUPE_ETOOBIG, "frame of %zu bytes", len);
  int rc = troupe_buf_reserve(out, TROUPE__FRAME_HEAD + len);
  if (rc) return rc;
  troupe__frame_head(out->data + out->len, kind, flags, (uint32_t)len);
  if (len) memcpy(out->data + out->len + TROUPE__FRAME_HEAD, body, len);
  out->len += TROUPE__FRAME_HEAD + len;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Decoder                                                             */

void troupe__frame_dec_init(troupe__frame_dec *d, size_t max_body) {
  memset(d, 0, sizeof *d);
  troupe__frame_dec_set_max(d, max_body);
}

void troupe__frame_dec_set_max(troupe__frame_dec *d, size_t max_body) {
  if (!d) return;
  if (max_body == 0) max_body = TROUPE__FRAME_MAX_DEFAULT;
  if (max_body > TROUPE__FRAME_MAX_LIMIT) max_body = TROUPE__FRAME_MAX_LIMIT;
  d->max_body = max_body;
}

void troupe__frame_dec_free(troupe__frame_dec *d) {
  if (!d) return;
  troupe_buf_free(&d->body);
  d->in_body = false;
  d->head_len = 0;
}

size_t troupe__frame_dec_pending(const troupe__frame_dec *d) {
  if (!d) return 0;
  return d->in_body ? TROUPE__FRAME_HEAD + d->body.len : d->head_len;
}

static int dec_fail(troupe__frame_dec *d, int code) {
  d->error = code;
  troupe_buf_free(&d->body);
  return code;
}

/* Check a complete head; on success *len is the body length. */
static int check_head(troupe__frame_dec *d, const uint8_t *h, size_t *len) {
  uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
               (uint32_t)h[2] << 8 | h[3];
  uint8_t kind = h[4], flags = h[5];
  if (!kind_valid(kind))
    return dec_fail(d, troupe__err(TROUPE_EPROTO, "frame %llu: unknown kind "
                                   "%u", (unsigned long long)d->frames, kind));
  if (flags & ~troupe__frame_flags_allowed(kind))
    return dec_fail(d, troupe__err(TROUPE_EPROTO, "frame %llu: kind %u with "
                                   "unknown flags 0x%x",
                                   (unsigned long long)d->frames, kind, flags));
  if (n > d->max_body)
    return dec_fail(d, troupe__err(TROUPE_ETOOBIG, "frame %llu: kind %u of "
                                   "%u bytes, over the limit of %zu",
                                   (unsigned long long)d->frames, kind, n,
                                   d->max_body));
  *len = n;
  return 0;
}

int troupe__frame_dec_feed(troupe__frame_dec *d, const uint8_t *p, size_t n,
                           troupe__frame_fn fn, void *data) {
  if (!d || !fn || (n && !p))
    return troupe__err(TROUPE_EINVAL, "frame_dec_feed: NULL argument");
  if (d->error) return d->error;
  int rc;
  while (n) {
    if (d->in_body) {
      /* Finish a body that straddled reads. */
      size_t take = d->body_need - d->body.len;
      if (take > n) take = n;
      if ((rc = troupe_buf_append(&d->body, p, take))) {
        d->error = rc;
        return rc;
      }
      p += take;
      n -= take;
      if (d->body.len < d->body_need) return 0;
      d->in_body = false;
      d->frames++;
      rc = fn(data, d->head[4], d->head[5], d->body.data, d->body.len);
      /* A big body's buffer is not kept for the next one. */
      if (d->body.cap > 65536) troupe_buf_free(&d->body);
      else d->body.len = 0;
      if (rc) return rc;
      continue;
    }
    const uint8_t *h;
    if (d->head_len || n < TROUPE__FRAME_HEAD) {
      size_t take = TROUPE__FRAME_HEAD - d->head_len;
      if (take > n) take = n;
      memcpy(d->head + d->head_len, p, take);
      d->head_len += (uint32_t)take;
      p += take;
      n -= take;
      if (d->head_len < TROUPE__FRAME_HEAD) return 0;
      h = d->head;
      d->head_len = 0;
    } else {
      h = p;
      p += TROUPE__FRAME_HEAD;
      n -= TROUPE__FRAME_HEAD;
    }
    size_t len = 0;
    if ((rc = check_head(d, h, &len))) return rc;
    if (len <= n) {
      /* The whole body is in this read: no copy. */
      d->frames++;
      rc = fn(data, h[4], h[5], p, len);
      p += len;
      n -= len;
      if (rc) return rc;
      continue;
    }
    if (h != d->head) memcpy(d->head, h, TROUPE__FRAME_HEAD);
    d->in_body = true;
    d->body_need = len;
    d->body.len = 0;
    if ((rc = troupe_buf_reserve(&d->body, len))) {
      d->error = rc;
      return rc;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Handshake messages                                                  */

static const uint8_t HS_MAGIC[4] = {'T', 'R', 'P', 'E'};

bool troupe__hs_name_valid(const char *name, size_t len) {
  if (!name || len == 0 || len > TROUPE__NAME_MAX) return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c <= ' ' || c >= 0x7f || c == '@' || c == '/' || c == ':')
      return false;
  }
  return true;
}

int troupe__addr_parse(const char *addr, char *host, size_t host_size,
                       int *port) {
  if (!addr || !host || !port || !host_size)
    return troupe__err(TROUPE_EINVAL, "addr_parse: NULL argument");
  size_t n = strnlen(addr, TROUPE__ADDR_MAX + 1);
  if (n == 0 || n > TROUPE__ADDR_MAX)
    return troupe__err(TROUPE_EINVAL, "address empty or longer than %d",
                       TROUPE__ADDR_MAX);
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr)
    return troupe__err(TROUPE_EINVAL, "address '%s' is not host:port", addr);
  const char *hs = addr, *he = colon;
  if (addr[0] == '[') {
    if (colon[-1] != ']' || colon - addr < 3)
      return troupe__err(TROUPE_EINVAL, "address '%s': bad [v6] host", addr);
    hs = addr + 1;
    he = colon - 1;
  } else if (memchr(addr, ':', (size_t)(colon - addr))) {
    return troupe__err(TROUPE_EINVAL, "address '%s': IPv6 hosts need "
                       "brackets", addr);
  }
  for (const char *c = hs; c < he; c++)
    if ((unsigned char)*c <= ' ' || *c == '/' || *c == '@' || *c == '[' ||
        *c == ']' || (unsigned char)*c >= 0x7f)
      return troupe__err(TROUPE_EINVAL, "address '%s': bad host", addr);
  long pv = 0;
  const char *q = colon + 1;
  if (!*q) return troupe__err(TROUPE_EINVAL, "address '%s': no port", addr);
  for (; *q; q++) {
    if (*q < '0' || *q > '9' || pv > 65535)
      return troupe__err(TROUPE_EINVAL, "address '%s': bad port", addr);
    pv = pv * 10 + (*q - '0');
  }
  if (pv > 65535)
    return troupe__err(TROUPE_EINVAL, "address '%s': port out of range", addr);
  size_t hl = (size_t)(he - hs);
  if (hl + 1 > host_size)
    return troupe__err(TROUPE_ETOOBIG, "address '%s': host too long", addr);
  memcpy(host, hs, hl);
  host[hl] = '\0';
  *port = (int)pv;
  return 0;
}

int troupe__hello_encode(const troupe__hello *h, bool with_mac,
                         troupe_buf *out) {
  if (!h || !out) return troupe__err(TROUPE_EINVAL, "hello_encode: NULL");
  size_t nl = strnlen(h->name, sizeof h->name);
  size_t al = strnlen(h->addr, sizeof h->addr);
  if (!troupe__hs_name_valid(h->name, nl))
    return troupe__err(TROUPE_EINVAL, "handshake: bad system name");
  if (al == 0 || al > TROUPE__ADDR_MAX)
    return troupe__err(TROUPE_EINVAL, "handshake: bad node address");
  uint8_t hdr[16] = {HS_MAGIC[0], HS_MAGIC[1], HS_MAGIC[2], HS_MAGIC[3],
                     (uint8_t)(h->version >> 8), (uint8_t)h->version,
                     (uint8_t)(h->protocol >> 8), (uint8_t)h->protocol};
  for (int i = 0; i < 8; i++)
    hdr[8 + i] = (uint8_t)(h->incarnation >> (56 - 8 * i));
  uint8_t l;
  int rc = troupe_buf_append(out, hdr, sizeof hdr);
  if (!rc) rc = troupe_buf_append(out, h->nonce, sizeof h->nonce);
  l = (uint8_t)nl;
  if (!rc) rc = troupe_buf_append(out, &l, 1);
  if (!rc) rc = troupe_buf_append(out, h->name, nl);
  l = (uint8_t)al;
  if (!rc) rc = troupe_buf_append(out, &l, 1);
  if (!rc) rc = troupe_buf_append(out, h->addr, al);
  if (!rc && with_mac) rc = troupe_buf_append(out, h->mac, sizeof h->mac);
  return rc;
}

static int hs_fail(const char *what) {
  return troupe__err(TROUPE_EPROTO, "handshake: %s", what);
}

int troupe__hello_decode(const uint8_t *p, size_t n, bool with_mac,
                         troupe__hello *h) {
  if (!h || (n && !p)) return troupe__err(TROUPE_EINVAL, "hello_decode: NULL");
  memset(h, 0, sizeof *h);
  const uint8_t *end = p + n;
  if (n < 16 + TROUPE__NONCE_LEN + 2) return hs_fail("truncated hello");
  if (memcmp(p, HS_MAGIC, 4) != 0) return hs_fail("bad magic");
  h->version = (uint16_t)(p[4] << 8 | p[5]);
  h->protocol = (uint16_t)(p[6] << 8 | p[7]);
  if (h->version == 0 || h->protocol == 0) return hs_fail("version 0");
  for (int i = 0; i < 8; i++) h->incarnation = h->incarnation << 8 | p[8 + i];
  p += 16;
  memcpy(h->nonce, p, TROUPE__NONCE_LEN);
  p += TROUPE__NONCE_LEN;
  size_t nl = *p++;
  if (nl > (size_t)(end - p) || !troupe__hs_name_valid((const char *)p, nl))
    return hs_fail("bad system name");
  memcpy(h->name, p, nl);
  p += nl;
  if (p >= end) return hs_fail("truncated hello");
  size_t al = *p++;
  if (al == 0 || al > (size_t)(end - p)) return hs_fail("bad node address");
  memcpy(h->addr, p, al);
  p += al;
  char host[TROUPE__ADDR_MAX + 1];
  int port;
  if (troupe__addr_parse(h->addr, host, sizeof host, &port) || port == 0 ||
      memchr(h->addr, 0, al))
    return hs_fail("bad node address");
  if (with_mac) {
    if ((size_t)(end - p) < TROUPE__SHA256_LEN) return hs_fail("no proof");
    memcpy(h->mac, p, TROUPE__SHA256_LEN);
    p += TROUPE__SHA256_LEN;
  }
  if (p != end) return hs_fail("trailing bytes");
  return 0;
}

/* A hello's bytes without the MAC, into the HMAC (a fixed-size copy: the
 * fields were validated when the hello was decoded or built). */
static void mac_hello(troupe__hmac_ctx *m, const troupe__hello *h) {
  uint8_t b[16 + TROUPE__NONCE_LEN + 2 + TROUPE__NAME_MAX + TROUPE__ADDR_MAX];
  size_t nl = strnlen(h->name, TROUPE__NAME_MAX);
  size_t al = strnlen(h->addr, TROUPE__ADDR_MAX);
  size_t n = 0;
  memcpy(b, HS_MAGIC, 4);
  b[4] = (uint8_t)(h->version >> 8);
  b[5] = (uint8_t)h->version;
  b[6] = (uint8_t)(h->protocol >> 8);
  b[7] = (uint8_t)h->protocol;
  for (int i = 0; i < 8; i++) b[8 + i] = (uint8_t)(h->incarnation >> (56 - 8 * i));
  n = 16;
  memcpy(b + n, h->nonce, TROUPE__NONCE_LEN);
  n += TROUPE__NONCE_LEN;
  b[n++] = (uint8_t)nl;
  memcpy(b + n, h->name, nl);
  n += nl;
  b[n++] = (uint8_t)al;
  memcpy(b + n, h->addr, al);
  n += al;
  troupe__hmac_update(m, b, n);
}

void troupe__hello_mac(const uint8_t *secret, size_t secret_len, char role,
                       const troupe__hello *client,
                       const troupe__hello *server,
                       uint8_t out[TROUPE__SHA256_LEN]) {
  troupe__hmac_ctx m;
  troupe__hmac_init(&m, secret, secret_len);
  troupe__hmac_update(&m, "troupe-tcp", 10);
  uint8_t r = (uint8_t)role;
  troupe__hmac_update(&m, &r, 1);
  mac_hello(&m, client);
  mac_hello(&m, server);
  troupe__hmac_final(&m, out);
}

int troupe__refusal_encode(int code, const char *reason, troupe_buf *out) {
  if (!out) return troupe__err(TROUPE_EINVAL, "refusal_encode: NULL");
  uint16_t c = (uint16_t)(code < 0 ? -code : code);
  uint8_t hdr[2] = {(uint8_t)(c >> 8), (uint8_t)c};
  size_t rl = reason ? strnlen(reason, 200) : 0;
  int rc = troupe_buf_append(out, hdr, 2);
  if (!rc && rl) rc = troupe_buf_append(out, reason, rl);
  return rc;
}

int troupe__refusal_decode(const uint8_t *p, size_t n, int *code,
                           char *reason, size_t size) {
  if (!code || !reason || !size || (n && !p))
    return troupe__err(TROUPE_EINVAL, "refusal_decode: NULL");
  if (n < 2 || n > 2 + 200) return hs_fail("malformed refusal");
  *code = -(int)(p[0] << 8 | p[1]);
  size_t rl = n - 2;
  if (rl >= size) rl = size - 1;
  for (size_t i = 0; i < rl; i++) {
    unsigned char c = p[2 + i];
    reason[i] = (c < ' ' || c >= 0x7f) ? '?' : (char)c;
  }
  reason[rl] = '\0';
  return 0;
}
