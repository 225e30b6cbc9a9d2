/*
 * fuzz_frame.c: libFuzzer target for the TCP transport's frame decoder and
 * handshake messages (cluster/frame.c).
 *
 * The first input byte picks what is fuzzed; the rest is its input:
 *   0  the frame decoder, fed the input in one piece and again in pieces
 *      whose sizes come from the second byte; both runs must see the same
 *      frames (kind, flags, length, a checksum of the bodies) and the same
 *      outcome, and a decoded frame re-encodes to the bytes it came from
 *   1  a hello without a MAC, 2 with one: decodes, then re-encodes to the
 *      same bytes
 *   3  a refusal; 4 an address (NUL-terminated copy)
 *
 * Built by tests/fuzz/build_frame.sh (clang -fsanitize=fuzzer); the same
 * file is compiled into tests/test_frame, which replays
 * tests/fuzz/corpus-frame/ in `make check`.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cluster/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FF_CHECK(cond)                                                      \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "fuzz_frame: check failed: %s (%s:%d): %s\n", #cond,  \
              __FILE__, __LINE__, troupe_errmsg());                         \
      abort();                                                              \
    }                                                                       \
  } while (0)

typedef struct ff_seen {
  uint64_t frames, bytes, sum;
  const uint8_t *src;     /* the whole input, for the re-encode check */
  size_t src_len, pos;    /* where the next frame starts in src */
} ff_seen;

static int ff_frame(void *data, uint8_t kind, uint8_t flags,
                    const uint8_t *body, size_t len) {
  ff_seen *s = data;
  s->frames++;
  s->bytes += len;
  uint64_t h = s->sum ^ ((uint64_t)kind << 8 | flags);
  for (size_t i = 0; i < len; i++) h = (h ^ body[i]) * 0x100000001b3ull;
  s->sum = h;
  troupe_buf b = {0};
  FF_CHECK(troupe__frame_append(&b, kind, flags, body, len) == 0);
  FF_CHECK(s->pos + b.len <= s->src_len);
  FF_CHECK(memcmp(s->src + s->pos, b.data, b.len) == 0);
  s->pos += b.len;
  troupe_buf_free(&b);
  return 0;
}

static void ff_decoder(const uint8_t *p, size_t n) {
  size_t step = n ? (size_t)(p[0] % 17) + 1 : 1;
  size_t max = n ? (size_t)p[0] * 4 + 1 : 64;
  if (n) { p++; n--; }
  troupe__frame_dec d1, d2;
  ff_seen s1 = {0, 0, 0, p, n, 0}, s2 = {0, 0, 0, p, n, 0};
  troupe__frame_dec_init(&d1, max);
  troupe__frame_dec_init(&d2, max);
  int rc1 = troupe__frame_dec_feed(&d1, p, n, ff_frame, &s1);
  int rc2 = 0;
  for (size_t off = 0; off < n && !rc2;) {
    size_t k = step;
    if (k > n - off) k = n - off;
    rc2 = troupe__frame_dec_feed(&d2, p + off, k, ff_frame, &s2);
    off += k;
    step = step * 5 % 23 + 1;
  }
  FF_CHECK(rc1 == rc2);
  FF_CHECK(rc1 == 0 || rc1 == TROUPE_EPROTO || rc1 == TROUPE_ETOOBIG);
  FF_CHECK(s1.frames == s2.frames && s1.bytes == s2.bytes &&
           s1.sum == s2.sum);
  if (rc1 == 0)
    FF_CHECK(s1.pos + troupe__frame_dec_pending(&d1) == n);
  else  /* sticky */
    FF_CHECK(troupe__frame_dec_feed(&d1, p, n, ff_frame, &s1) == rc1);
  troupe__frame_dec_free(&d1);
  troupe__frame_dec_free(&d2);
}

static void ff_hello(const uint8_t *p, size_t n, bool mac) {
  troupe__hello h;
  if (troupe__hello_decode(p, n, mac, &h)) return;
  troupe_buf b = {0};
  FF_CHECK(troupe__hello_encode(&h, mac, &b) == 0);
  FF_CHECK(b.len == n && memcmp(b.data, p, n) == 0);
  troupe_buf_free(&b);
  uint8_t m1[TROUPE__SHA256_LEN], m2[TROUPE__SHA256_LEN];
  troupe__hello_mac((const uint8_t *)"k", 1, 'C', &h, &h, m1);
  troupe__hello_mac((const uint8_t *)"k", 1, 'S', &h, &h, m2);
  FF_CHECK(!troupe__ct_equal(m1, m2, sizeof m1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t mode = data[0];
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  switch (mode % 5) {
    case 0: ff_decoder(p, n); break;
    case 1: ff_hello(p, n, false); break;
    case 2: ff_hello(p, n, true); break;
    case 3: {
      int code;
      char reason[64];
      if (troupe__refusal_decode(p, n, &code, reason, sizeof reason) == 0)
        FF_CHECK(code <= 0 && strlen(reason) < sizeof reason);
      break;
    }
    default: {
      char *s = malloc(n + 1);
      FF_CHECK(s != NULL);
      if (n) memcpy(s, p, n);
      s[n] = '\0';
      char host[TROUPE__ADDR_MAX + 1];
      int port;
      if (troupe__addr_parse(s, host, sizeof host, &port) == 0)
        FF_CHECK(port >= 0 && port <= 65535 && strlen(host) < strlen(s));
      free(s);
      break;
    }
  }
  return 0;
}
