/*
 * test_tool_diag.c: the `troupe` tool's CBOR diagnostic printer
 * (tools/cbor_diag.c): RFC 8949 appendix A examples, malformed input
 * rejected with a reason and nothing written, the depth and output bounds,
 * and random and mutated inputs (run under the sanitizers in CI).
 */
#include "tt.h"

#include "tools/cbor_diag.h"

static const char *diag(const char *hex, int *rc) {
  static troupe_buf out;
  uint8_t in[256];
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    in[i] = (uint8_t)v;
  }
  const char *why = NULL;
  size_t at = 0;
  troupe_buf_clear(&out);
  *rc = tool_cbor_diag(in, n, &out, 4096, &why, &at);
  if (*rc < 0) {
    TT_CHECK(out.len == 0);
    TT_CHECK(why != NULL);
    return why;
  }
  return (const char *)out.data;
}

#define OK(hex, text)                                                       \
  do {                                                                      \
    int rc_;                                                                \
    const char *s_ = diag(hex, &rc_);                                       \
    TT_EQ_INT(rc_, 0);                                                      \
    TT_EQ_STR(s_, text);                                                    \
  } while (0)
#define BAD(hex, code)                                                      \
  do {                                                                      \
    int rc_;                                                                \
    diag(hex, &rc_);                                                        \
    TT_EQ_INT(rc_, code);                                                   \
  } while (0)

static void test_rfc_examples(void) {
  OK("00", "0");
  OK("17", "23");
  OK("1903e8", "1000");
  OK("1bffffffffffffffff", "18446744073709551615");
  OK("20", "-1");
  OK("3bffffffffffffffff", "-18446744073709551616");
  OK("f90000", "0.0");
  OK("f98000", "-0.0");
  OK("f93c00", "1.0");
  OK("fb3ff199999999999a", "1.1");
  OK("f97c00", "Infinity");
  OK("f97e00", "NaN");
  OK("fa47c35000", "100000.0");
  OK("f4", "false");
  OK("f6", "null");
  OK("f7", "undefined");
  OK("f0", "simple(16)");
  OK("f8ff", "simple(255)");
  OK("c074323031332d30332d32315432303a30343a30305a",
     "0(\"2013-03-21T20:04:00Z\")");
  OK("4401020304", "h'01020304'");
  OK("6449455446", "\"IETF\"");
  OK("62225c", "\"\\\"\\\\\"");
  OK("80", "[]");
  OK("8301820203820405", "[1, [2, 3], [4, 5]]");
  OK("a201020304", "{1: 2, 3: 4}");
  OK("a26161016162820203", "{\"a\": 1, \"b\": [2, 3]}");
  OK("5f42010243030405ff", "(_ h'0102', h'030405')");
  OK("7f657374726561646d696e67ff", "(_ \"strea\", \"ming\")");
  OK("9f018202039f0405ffff", "[_ 1, [2, 3], [_ 4, 5]]");
  OK("bf61610161629f0203ffff", "{_ \"a\": 1, \"b\": [_ 2, 3]}");
}

static void test_malformed(void) {
  BAD("", TROUPE_EDECODE);                  /* empty */
  BAD("18", TROUPE_EDECODE);                /* truncated head */
  BAD("1c", TROUPE_EDECODE);                /* reserved */
  BAD("44010203", TROUPE_EDECODE);          /* string beyond the input */
  BAD("62fffe", TROUPE_EDECODE);            /* invalid UTF-8 */
  BAD("83 01", TROUPE_EDECODE);             /* (hex parse stops) */
  BAD("8301", TROUPE_EDECODE);              /* missing elements */
  BAD("9b7fffffffffffffff", TROUPE_EDECODE);/* huge count */
  BAD("9f01", TROUPE_EDECODE);              /* missing break */
  BAD("ff", TROUPE_EDECODE);                /* stray break */
  BAD("0001", TROUPE_EDECODE);              /* trailing bytes */
  BAD("5f6161ff", TROUPE_EDECODE);          /* text chunk in bytes */
  BAD("bf01ff", TROUPE_EDECODE);            /* key without a value */
  BAD("f818", TROUPE_EDECODE);              /* two-byte simple < 32 */
  BAD("1f", TROUPE_EDECODE);                /* indefinite integer */
  BAD("df00", TROUPE_EDECODE);              /* indefinite tag */
  char deep[2 * 40 + 3];
  for (int i = 0; i < 40; i++) memcpy(deep + 2 * i, "81", 2);
  memcpy(deep + 80, "01", 3);
  BAD(deep, TROUPE_ETOOBIG);
  char tags[2 * 40 + 3];
  for (int i = 0; i < 40; i++) memcpy(tags + 2 * i, "c1", 2);
  memcpy(tags + 80, "01", 3);
  BAD(tags, TROUPE_ETOOBIG);
}

static void test_output_bound(void) {
  uint8_t in[1 + 2 + 1000];
  in[0] = 0x59;           /* bytes, 2-byte length */
  in[1] = 0x03;
  in[2] = 0xe8;
  memset(in + 3, 0xab, 1000);
  troupe_buf out = {0};
  const char *why;
  size_t at;
  TT_EQ_INT(tool_cbor_diag(in, sizeof in, &out, 100, &why, &at), 0);
  TT_ASSERT(out.len <= 103);
  TT_ASSERT(strcmp((char *)out.data + out.len - 3, "...") == 0);
  troupe_buf_free(&out);
}

/* Random and mutated inputs: never a crash, a read out of bounds or a
 * leak; either text or an error with nothing written. */
static void test_random(void) {
  static const uint8_t seed[] = {0xbf, 0x61, 0x61, 0x9f, 0x01, 0x42, 0x00,
                                 0xff, 0xc1, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0,
                                 0x7f, 0x61, 0x62, 0xff, 0xff, 0xf6, 0xff};
  uint64_t x = 88172645463325252ull;
  troupe_buf out = {0};
  for (int iter = 0; iter < 200000; iter++) {
    uint8_t in[64];
    size_t n;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    if (iter & 1) {
      n = sizeof seed;
      memcpy(in, seed, n);
      for (int k = 0; k < 3; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        in[x % n] = (uint8_t)(x >> 32);
      }
      n = (size_t)(x >> 40) % (n + 1);
    } else {
      n = (size_t)(x % sizeof in);
      for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        in[i] = (uint8_t)x;
      }
    }
    /* a heap copy of exactly n bytes, so ASan sees any overread */
    uint8_t *heap = malloc(n ? n : 1);
    memcpy(heap, in, n);
    const char *why = NULL;
    size_t at = 0;
    out.len = 0;
    int rc = tool_cbor_diag(heap, n, &out, 256, &why, &at);
    if (rc < 0) {
      TT_ASSERT(out.len == 0 && why && at <= n);
    } else {
      TT_ASSERT(out.data[out.len] == '\0' && strlen((char *)out.data) == out.len);
    }
    free(heap);
  }
  troupe_buf_free(&out);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  TT_RUN(test_rfc_examples);
  TT_RUN(test_malformed);
  TT_RUN(test_output_bound);
  TT_RUN(test_random);
  return tt_done();
}
