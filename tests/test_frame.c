/*
 * test_frame.c: SHA-256 and HMAC-SHA-256 against FIPS 180-4 and RFC 4231
 * vectors, the TCP frame codec and handshake messages, and a replay of the
 * frame fuzz corpus (tests/fuzz/corpus-frame).
 *
 *   test_frame                  run the tests
 *   test_frame --generate DIR   write the seed corpus into DIR
 *   test_frame --replay FILE... replay files through the fuzz target
 */
#include "tt.h"

#include "fuzz/fuzz_frame.c"
#include "corpus_util.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
  size_t n = 0;
  for (const char *h = hex; h[0] && h[1] && n < cap;) {
    if (*h == ' ') { h++; continue; }
    unsigned v;
    if (sscanf(h, "%2x", &v) != 1) break;
    out[n++] = (uint8_t)v;
    h += 2;
  }
  return n;
}

static void tohex(const uint8_t *p, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

/* ------------------------------------------------------------------ */
/* SHA-256 / HMAC                                                      */

static void test_sha256_vectors(void) {
  static const struct { const char *msg, *hex; } v[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc",
       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmn"
       "opjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"}};
  uint8_t d[32];
  char hx[65];
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    troupe__sha256(v[i].msg, strlen(v[i].msg), d);
    tohex(d, 32, hx);
    TT_EQ_STR(hx, v[i].hex);
    /* The same in odd pieces. */
    troupe__sha256_ctx s;
    troupe__sha256_init(&s);
    size_t n = strlen(v[i].msg);
    for (size_t off = 0, k = 1; off < n; off += k, k = k * 3 % 13 + 1)
      troupe__sha256_update(&s, v[i].msg + off, k > n - off ? n - off : k);
    troupe__sha256_final(&s, d);
    tohex(d, 32, hx);
    TT_EQ_STR(hx, v[i].hex);
  }
  /* One million 'a' (FIPS 180-2 appendix B.3). */
  troupe__sha256_ctx s;
  troupe__sha256_init(&s);
  char a[1000];
  memset(a, 'a', sizeof a);
  for (int i = 0; i < 1000; i++) troupe__sha256_update(&s, a, sizeof a);
  troupe__sha256_final(&s, d);
  tohex(d, 32, hx);
  TT_EQ_STR(hx,
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  /* Lengths around the padding boundary: incremental == one shot. */
  uint8_t buf[130];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)i;
  for (size_t n = 50; n <= sizeof buf; n++) {
    uint8_t d1[32], d2[32];
    troupe__sha256(buf, n, d1);
    troupe__sha256_init(&s);
    troupe__sha256_update(&s, buf, n / 2);
    troupe__sha256_update(&s, buf + n / 2, n - n / 2);
    troupe__sha256_final(&s, d2);
    TT_ASSERT(memcmp(d1, d2, 32) == 0);
  }
}

static void test_hmac_rfc4231(void) {
  static const struct { const char *key, *data, *mac; size_t trunc; } v[] = {
      /* 1 */
      {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 32},
      /* 2 */
      {"4a656665",
       "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 32},
      /* 3 */
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
       "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
       "dddddddddddddddddddddddddddddddd",
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", 32},
      /* 4 */
      {"0102030405060708090a0b0c0d0e0f10111213141516171819",
       "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
       "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", 32},
      /* 5: truncated to 128 bits */
      {"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c",
       "546573742057697468205472756e636174696f6e",
       "a3b6167473100ee06e0c796c2955552b", 16},
      /* 6: a key larger than a block */
      {NULL, /* 131 bytes of 0xaa */
       "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65"
       "204b6579202d2048617368204b6579204669727374",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 32},
      /* 7: key and data larger than a block */
      {NULL, /* 131 bytes of 0xaa */
       "5468697320697320612074657374207573696e672061206c6172676572207468616e"
       "20626c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20"
       "626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f20"
       "626520686173686564206265666f7265206265696e6720757365642062792074686520"
       "484d414320616c676f726974686d2e",
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", 32}};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    uint8_t key[200], data[200], mac[32];
    size_t kl;
    if (v[i].key) kl = unhex(v[i].key, key, sizeof key);
    else memset(key, 0xaa, kl = 131);
    size_t dl = unhex(v[i].data, data, sizeof data);
    troupe__hmac_sha256(key, kl, data, dl, mac);
    char hx[65];
    tohex(mac, v[i].trunc, hx);
    TT_EQ_STR(hx, v[i].mac);
    /* Incrementally, byte by byte. */
    troupe__hmac_ctx h;
    troupe__hmac_init(&h, key, kl);
    for (size_t j = 0; j < dl; j++) troupe__hmac_update(&h, data + j, 1);
    uint8_t mac2[32];
    troupe__hmac_final(&h, mac2);
    TT_ASSERT(memcmp(mac, mac2, 32) == 0);
  }
}

static void test_ct_equal_and_random(void) {
  uint8_t a[32] = {0}, b[32] = {0};
  TT_ASSERT(troupe__ct_equal(a, b, 32));
  b[31] = 1;
  TT_ASSERT(!troupe__ct_equal(a, b, 32));
  b[31] = 0;
  b[0] = 0x80;
  TT_ASSERT(!troupe__ct_equal(a, b, 32));
  TT_ASSERT(troupe__ct_equal(a, b, 0));
  TT_EQ_INT(troupe__random_bytes(a, sizeof a), 0);
  TT_EQ_INT(troupe__random_bytes(b, sizeof b), 0);
  TT_ASSERT(!troupe__ct_equal(a, b, 32));
  TT_EQ_INT(troupe__random_bytes(NULL, 4), TROUPE_EINVAL);
}

/* ------------------------------------------------------------------ */
/* Frames                                                              */

typedef struct got {
  int n;
  uint8_t kind[64], flags[64];
  size_t len[64];
  uint8_t first[64];
  int stop_at;            /* return 1 from this frame (1-based), 0 never */
} got;

static int on_frame(void *data, uint8_t kind, uint8_t flags,
                    const uint8_t *body, size_t len) {
  got *g = data;
  if (g->n < 64) {
    g->kind[g->n] = kind;
    g->flags[g->n] = flags;
    g->len[g->n] = len;
    g->first[g->n] = len ? body[0] : 0;
  }
  g->n++;
  return g->stop_at && g->n == g->stop_at ? 1 : 0;
}

static void test_frame_roundtrip(void) {
  troupe_buf b = {0};
  uint8_t big[3000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
  TT_EQ_INT(troupe__frame_append(&b, TROUPE__FRAME_ENVELOPE, 0, "\x84\x01", 2), 0);
  TT_EQ_INT(troupe__frame_append(&b, TROUPE__FRAME_HEARTBEAT, 0, NULL, 0), 0);
  TT_EQ_INT(troupe__frame_append(&b, TROUPE__FRAME_CONTROL, 0x30, big, sizeof big), 0);
  TT_EQ_INT(troupe__frame_append(&b, TROUPE__FRAME_HEARTBEAT,
                                 TROUPE__FRAME_F_REPLY, NULL, 0), 0);
  TT_EQ_INT(b.len, 4 * TROUPE__FRAME_HEAD + 2 + sizeof big);
  /* Head layout: big-endian length, kind, flags. */
  TT_EQ_INT(b.data[0], 0); TT_EQ_INT(b.data[3], 2);
  TT_EQ_INT(b.data[4], TROUPE__FRAME_ENVELOPE); TT_EQ_INT(b.data[5], 0);
  /* Every split: in one piece, byte by byte, in pieces of 1..17. */
  for (size_t step = 0; step <= 17; step++) {
    troupe__frame_dec d;
    troupe__frame_dec_init(&d, 4096);
    got g = {0};
    if (step == 0) {
      TT_EQ_INT(troupe__frame_dec_feed(&d, b.data, b.len, on_frame, &g), 0);
    } else {
      for (size_t off = 0; off < b.len; off += step) {
        size_t k = b.len - off < step ? b.len - off : step;
        TT_EQ_INT(troupe__frame_dec_feed(&d, b.data + off, k, on_frame, &g), 0);
      }
    }
    TT_EQ_INT(g.n, 4);
    TT_EQ_INT(g.kind[0], TROUPE__FRAME_ENVELOPE);
    TT_EQ_INT(g.len[0], 2);
    TT_EQ_INT(g.first[0], 0x84);
    TT_EQ_INT(g.kind[1], TROUPE__FRAME_HEARTBEAT);
    TT_EQ_INT(g.len[1], 0);
    TT_EQ_INT(g.kind[2], TROUPE__FRAME_CONTROL);
    TT_EQ_INT(g.flags[2], 0x30);
    TT_EQ_INT(g.len[2], sizeof big);
    TT_EQ_INT(g.flags[3], TROUPE__FRAME_F_REPLY);
    TT_EQ_INT(d.frames, 4);
    TT_EQ_INT(troupe__frame_dec_pending(&d), 0);
    troupe__frame_dec_free(&d);
  }
  /* A callback can stop decoding; the rest stays unconsumed. */
  troupe__frame_dec d;
  troupe__frame_dec_init(&d, 0);
  got g = {.stop_at = 2};
  TT_EQ_INT(troupe__frame_dec_feed(&d, b.data, b.len, on_frame, &g), 1);
  TT_EQ_INT(g.n, 2);
  troupe__frame_dec_free(&d);
  troupe_buf_free(&b);
}

static void test_frame_bad(void) {
  troupe__frame_dec d;
  got g = {0};
  /* Oversized length: refused from the head, before any body arrives. */
  troupe__frame_dec_init(&d, 100);
  uint8_t h[6];
  troupe__frame_head(h, TROUPE__FRAME_ENVELOPE, 0, 101);
  TT_EQ_INT(troupe__frame_dec_feed(&d, h, 6, on_frame, &g), TROUPE_ETOOBIG);
  TT_EQ_INT(troupe__frame_dec_feed(&d, h, 1, on_frame, &g), TROUPE_ETOOBIG);
  troupe__frame_dec_free(&d);
  troupe__frame_dec_init(&d, 100);
  troupe__frame_head(h, TROUPE__FRAME_ENVELOPE, 0, 0xffffffffu);
  TT_EQ_INT(troupe__frame_dec_feed(&d, h, 3, on_frame, &g), 0);
  TT_EQ_INT(troupe__frame_dec_feed(&d, h + 3, 3, on_frame, &g), TROUPE_ETOOBIG);
  troupe__frame_dec_free(&d);
  /* Exactly at the limit is fine. */
  troupe__frame_dec_init(&d, 100);
  troupe_buf b = {0};
  uint8_t body[100] = {0};
  TT_EQ_INT(troupe__frame_append(&b, TROUPE__FRAME_ENVELOPE, 0, body, 100), 0);
  TT_EQ_INT(troupe__frame_dec_feed(&d, b.data, b.len, on_frame, &g), 0);
  TT_EQ_INT(g.n, 1);
  troupe__frame_dec_free(&d);
  /* Unknown kinds and flags. */
  troupe__frame_dec_init(&d, 100);
  troupe__frame_head(h, 0, 0, 0);
  TT_EQ_INT(troupe__frame_dec_feed(&d, h, 6, on_frame, &g), TROUPE_EPROTO);
  troupe__frame_dec_free(&d);
  troupe__frame_dec_init(&d, 100);
  troupe__frame_head(h, 77, 0, 0);
  TT_EQ_INT(troupe__frame_dec_feed(&d, h, 6, on_frame, &g), TROUPE_EPROTO);
  troupe__frame_dec_free(&d);
  troupe__frame_dec_init(&d, 100);
  troupe__frame_head(h, TROUPE__FRAME_HEARTBEAT, 0x80, 0);
  TT_EQ_INT(troupe__frame_dec_feed(&d, h, 6, on_frame, &g), TROUPE_EPROTO);
  troupe__frame_dec_free(&d);
  /* Garbage after a good frame: the good one is delivered first. */
  troupe__frame_dec_init(&d, 100);
  g.n = 0;
  TT_EQ_INT(troupe_buf_append(&b, "\xde\xad\xbe\xef\x03\x00", 6), 0);
  TT_EQ_INT(troupe__frame_dec_feed(&d, b.data, b.len, on_frame, &g),
            TROUPE_ETOOBIG);
  TT_EQ_INT(g.n, 1);
  troupe__frame_dec_free(&d);
  /* The encoder refuses what the decoder would. */
  TT_EQ_INT(troupe__frame_append(&b, 9, 0, NULL, 0), TROUPE_EINVAL);
  TT_EQ_INT(troupe__frame_append(&b, TROUPE__FRAME_ENVELOPE, 1, NULL, 0),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe__frame_append(NULL, TROUPE__FRAME_ENVELOPE, 0, NULL, 0),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe__frame_dec_feed(NULL, NULL, 0, on_frame, &g), TROUPE_EINVAL);
  troupe_buf_free(&b);
}

static void test_hello(void) {
  troupe__hello c = {.version = TROUPE__TCP_PROTO, .protocol = 1, .incarnation = 0x0102030405060708ull},
                s = {.version = 1, .protocol = 7, .incarnation = 42}, c2, s2;
  strcpy(c.name, "alpha");
  strcpy(c.addr, "127.0.0.1:2552");
  strcpy(s.name, "beta");
  strcpy(s.addr, "[::1]:9");
  TT_EQ_INT(troupe__random_bytes(c.nonce, sizeof c.nonce), 0);
  TT_EQ_INT(troupe__random_bytes(s.nonce, sizeof s.nonce), 0);
  const uint8_t *key = (const uint8_t *)"cluster secret";
  troupe__hello_mac(key, 14, 'S', &c, &s, s.mac);
  troupe_buf b = {0};
  TT_EQ_INT(troupe__hello_encode(&c, false, &b), 0);
  TT_EQ_INT(troupe__hello_decode(b.data, b.len, false, &c2), 0);
  TT_EQ_STR(c2.name, "alpha");
  TT_EQ_STR(c2.addr, "127.0.0.1:2552");
  TT_EQ_INT(c2.protocol, 1);
  TT_ASSERT(c2.incarnation == 0x0102030405060708ull);
  TT_ASSERT(memcmp(c2.nonce, c.nonce, sizeof c.nonce) == 0);
  /* Truncated, or with a byte more: refused. */
  for (size_t n = 0; n < b.len; n++)
    TT_EQ_INT(troupe__hello_decode(b.data, n, false, &c2), TROUPE_EPROTO);
  TT_EQ_INT(troupe_buf_append(&b, "x", 1), 0);
  TT_EQ_INT(troupe__hello_decode(b.data, b.len, false, &c2), TROUPE_EPROTO);
  b.len = 0;
  TT_EQ_INT(troupe__hello_encode(&s, true, &b), 0);
  TT_EQ_INT(troupe__hello_decode(b.data, b.len, true, &s2), 0);
  TT_EQ_STR(s2.addr, "[::1]:9");
  TT_EQ_INT(s2.protocol, 7);
  TT_ASSERT(s2.incarnation == 42);
  uint8_t m[32];
  troupe__hello_mac(key, 14, 'S', &c, &s2, m);
  TT_ASSERT(troupe__ct_equal(m, s2.mac, 32));
  /* Another secret, role, nonce or name: another MAC. */
  troupe__hello_mac((const uint8_t *)"cluster secreT", 14, 'S', &c, &s2, m);
  TT_ASSERT(!troupe__ct_equal(m, s2.mac, 32));
  troupe__hello_mac(key, 14, 'C', &c, &s2, m);
  TT_ASSERT(!troupe__ct_equal(m, s2.mac, 32));
  c.nonce[0] ^= 1;
  troupe__hello_mac(key, 14, 'S', &c, &s2, m);
  TT_ASSERT(!troupe__ct_equal(m, s2.mac, 32));
  c.nonce[0] ^= 1;
  strcpy(s2.name, "betb");
  troupe__hello_mac(key, 14, 'S', &c, &s2, m);
  TT_ASSERT(!troupe__ct_equal(m, s2.mac, 32));
  /* Bad names and addresses are not encoded. */
  strcpy(c.name, "a@b");
  b.len = 0;
  TT_EQ_INT(troupe__hello_encode(&c, false, &b), TROUPE_EINVAL);
  /* Refusals. */
  b.len = 0;
  TT_EQ_INT(troupe__refusal_encode(TROUPE_EAUTH, "wrong\nsecret", &b), 0);
  int code;
  char reason[8];
  TT_EQ_INT(troupe__refusal_decode(b.data, b.len, &code, reason, sizeof reason), 0);
  TT_EQ_INT(code, TROUPE_EAUTH);
  TT_EQ_STR(reason, "wrong?s");
  troupe_buf_free(&b);
}

static void test_addr(void) {
  char host[64];
  int port;
  TT_EQ_INT(troupe__addr_parse("127.0.0.1:2552", host, sizeof host, &port), 0);
  TT_EQ_STR(host, "127.0.0.1");
  TT_EQ_INT(port, 2552);
  TT_EQ_INT(troupe__addr_parse("[::1]:65535", host, sizeof host, &port), 0);
  TT_EQ_STR(host, "::1");
  TT_EQ_INT(port, 65535);
  TT_EQ_INT(troupe__addr_parse("node-1.example:1", host, sizeof host, &port), 0);
  TT_EQ_INT(troupe__addr_parse("127.0.0.1:0", host, sizeof host, &port), 0);
  TT_EQ_INT(port, 0);
  const char *bad[] = {"", ":1", "host", "host:", "host:65536",
                       "host:12x", "::1:5", "[::1:5", "[]:5", "a b:1",
                       "host:99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    TT_EQ_INT(troupe__addr_parse(bad[i], host, sizeof host, &port),
              TROUPE_EINVAL);
  TT_EQ_INT(troupe__addr_parse("averyveryverylonghostname:1", host, 8, &port),
            TROUPE_ETOOBIG);
}

/* ------------------------------------------------------------------ */
/* Fuzz corpus                                                         */

static void test_fuzz_corpus(void) {
  corpus_replay_dir("corpus-frame", "frame corpus");
}

static void generate(void) {
  troupe_buf b = {0};
  uint8_t sel = 200;                       /* decoder: step 200%17+1, max 801 */
  troupe_buf_append(&b, &sel, 1);
  troupe__frame_append(&b, TROUPE__FRAME_ENVELOPE, 0,
                       "\x84\x01\x63\x61\x2e\x42\x01\x41\xa0", 9);
  troupe__frame_append(&b, TROUPE__FRAME_HEARTBEAT, 0, NULL, 0);
  troupe__frame_append(&b, TROUPE__FRAME_CONTROL, 0x10, "ctl", 3);
  troupe__frame_append(&b, TROUPE__FRAME_HEARTBEAT, TROUPE__FRAME_F_REPLY, NULL, 0);
  seed(0, b.data, b.len);
  b.len = 1;                               /* a partial frame at the end */
  troupe__frame_append(&b, TROUPE__FRAME_ENVELOPE, 0xf0, "0123456789", 10);
  troupe__frame_append(&b, TROUPE__FRAME_ENVELOPE, 0, "abc", 3);
  seed(0, b.data, b.len - 2);
  b.len = 1;                               /* oversized */
  uint8_t h[6];
  troupe__frame_head(h, TROUPE__FRAME_ENVELOPE, 0, 5000);
  troupe_buf_append(&b, h, 6);
  seed(0, b.data, b.len);
  b.len = 1;                               /* unknown kind after a good one */
  troupe__frame_append(&b, TROUPE__FRAME_HEARTBEAT, 0, NULL, 0);
  troupe__frame_head(h, 9, 0, 1);
  troupe_buf_append(&b, h, 6);
  seed(0, b.data, b.len);
  seed(0, (const uint8_t *)"\x05garbage that is not a frame", 29);
  troupe__hello c = {.version = 1, .protocol = 1, .incarnation = 77};
  strcpy(c.name, "alpha");
  strcpy(c.addr, "127.0.0.1:2552");
  memset(c.nonce, 0x5a, sizeof c.nonce);
  memset(c.mac, 0xa5, sizeof c.mac);
  b.len = 0;
  troupe__hello_encode(&c, false, &b);
  seed(1, b.data, b.len);
  strcpy(c.addr, "[::1]:9");
  b.len = 0;
  troupe__hello_encode(&c, true, &b);
  seed(2, b.data, b.len);
  b.len = 0;
  troupe__refusal_encode(TROUPE_EAUTH, "wrong cluster secret", &b);
  seed(3, b.data, b.len);
  seed(4, (const uint8_t *)"127.0.0.1:2552", 14);
  seed(4, (const uint8_t *)"[fe80::1]:65535", 15);
  troupe_buf_free(&b);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--generate") == 0)
    return corpus_generate(argv[2], generate);
  if (argc > 2 && strcmp(argv[1], "--replay") == 0) {
    for (int i = 2; i < argc; i++)
      if (corpus_replay_file(argv[i])) return 1;
    printf("%d files replayed\n", argc - 2);
    return 0;
  }
  tt_init(argc, argv);
  TT_RUN(test_sha256_vectors);
  TT_RUN(test_hmac_rfc4231);
  TT_RUN(test_ct_equal_and_random);
  TT_RUN(test_frame_roundtrip);
  TT_RUN(test_frame_bad);
  TT_RUN(test_hello);
  TT_RUN(test_addr);
  TT_RUN(test_fuzz_corpus);
  return tt_done();
}
