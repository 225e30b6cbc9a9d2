/*
 * test_upcast.c: upcasters (every path: typed step, step without an old
 * descriptor, by-name step, renames, chains, errors, failures) and the
 * envelope wire format.
 */
#include "tt.h"
#include "types_fixtures.h"

#include "core/types_internal.h"

/* bank.Deposited v1: {amount: i32}                          (old struct)
 * bank.Deposited v2: {cents: i64, currency: string}          (typed step)
 * bank.Deposited v3: {cents: i64, currency, note}            (by-name step)
 * bank.MoneyIn   v1: {cents, currency, note, source}         (rename + fixup) */
typedef struct dep1 { int32_t amount; } dep1;
static const troupe_field dep1_fields[] = {TROUPE_FIELD(dep1, amount, I32)};
static troupe_type dep1_type = TROUPE_TYPE("bank.Deposited", 1, dep1, dep1_fields);

typedef struct dep2 { int64_t cents; char *currency; } dep2;
static const troupe_field dep2_fields[] = {
    TROUPE_FIELD(dep2, cents, I64), TROUPE_FIELD(dep2, currency, STRING)};
static troupe_type dep2_type = TROUPE_TYPE("bank.Deposited", 2, dep2, dep2_fields);

typedef struct dep3 { int64_t cents; char *currency; char *note; } dep3;
static const troupe_field dep3_fields[] = {
    TROUPE_FIELD(dep3, cents, I64), TROUPE_FIELD(dep3, currency, STRING),
    TROUPE_FIELD(dep3, note, STRING)};
static troupe_type dep3_type = TROUPE_TYPE("bank.Deposited", 3, dep3, dep3_fields);

typedef struct money_in {
  int64_t cents; char *currency; char *note; char *source;
} money_in;
static const troupe_field money_in_fields[] = {
    TROUPE_FIELD(money_in, cents, I64), TROUPE_FIELD(money_in, currency, STRING),
    TROUPE_FIELD(money_in, note, STRING), TROUPE_FIELD(money_in, source, STRING)};
static troupe_type money_in_type =
    TROUPE_TYPE("bank.MoneyIn", 1, money_in, money_in_fields);

static int calls_1to2, calls_rename;

static int up_1to2(void *data, const troupe_type *from, const void *old,
                   const troupe_type *to, void *nv) {
  TT_CHECK(data == &calls_1to2);
  TT_CHECK(from == &dep1_type && to == &dep2_type);
  const dep1 *o = old;
  dep2 *n = nv;
  TT_CHECK(n->cents == 0 && n->currency == NULL);   /* arrives zeroed */
  n->cents = (int64_t)o->amount * 100;
  n->currency = strdup("EUR");
  calls_1to2++;
  return n->currency ? 0 : TROUPE_ENOMEM;
}

static int up_rename(void *data, const troupe_type *from, const void *old,
                     const troupe_type *to, void *nv) {
  (void)data;
  TT_CHECK(from == &dep3_type && to == &money_in_type);
  const dep3 *o = old;
  money_in *n = nv;
  n->cents = o->cents;
  n->currency = o->currency ? strdup(o->currency) : NULL;
  n->note = o->note ? strdup(o->note) : NULL;
  n->source = strdup("upcast");
  calls_rename++;
  return 0;
}

static int register_chain(void) {
  int rc = troupe_type_register(&dep1_type);
  if (!rc) rc = troupe_upcaster_register("bank.Deposited", 1, &dep2_type,
                                         up_1to2, &calls_1to2);
  if (!rc) rc = troupe_upcaster_register("bank.Deposited", 2, &dep3_type, NULL,
                                         NULL);
  if (!rc) rc = troupe_upcaster_register("bank.Deposited", 3, &money_in_type,
                                         up_rename, NULL);
  return rc;
}

static void encode_v1(int32_t amount, troupe_buf *b) {
  dep1 v = {amount};
  b->len = 0;
  TT_CHECK(troupe_encode(&dep1_type, &v, b, NULL) == 0);
}

static void test_chain(void) {
  TT_EQ_INT(register_chain(), 0);
  TT_EQ_INT(register_chain(), 0);     /* the same registrations again: ok */
  const troupe_type *t;
  TT_EQ_INT(troupe_type_resolve("bank.Deposited", 1, &t), 0);
  TT_ASSERT(t == &money_in_type);
  TT_EQ_INT(troupe_type_resolve("bank.Deposited", 3, &t), 0);
  TT_ASSERT(t == &money_in_type);
  TT_EQ_INT(troupe_type_resolve("bank.MoneyIn", 1, &t), 0);
  TT_ASSERT(t == &money_in_type);

  troupe_buf b = {0};
  encode_v1(12, &b);
  money_in m;
  calls_1to2 = calls_rename = 0;
  TT_EQ_INT(troupe_decode_as("bank.Deposited", 1, b.data, b.len,
                             &money_in_type, &m, NULL), 0);
  TT_EQ_INT(calls_1to2, 1);
  TT_EQ_INT(calls_rename, 1);
  TT_EQ_INT(m.cents, 1200);
  TT_EQ_STR(m.currency, "EUR");
  TT_ASSERT(m.note == NULL);
  TT_EQ_STR(m.source, "upcast");
  troupe_value_free(&money_in_type, &m);

  /* from v2 bytes: the by-name step carries cents and currency over */
  dep2 d2 = {250, "CHF"};
  b.len = 0;
  TT_EQ_INT(troupe_encode(&dep2_type, &d2, &b, NULL), 0);
  TT_EQ_INT(troupe_decode_as("bank.Deposited", 2, b.data, b.len, NULL, &m,
                             NULL), 0);
  TT_EQ_INT(m.cents, 250);
  TT_EQ_STR(m.currency, "CHF");
  troupe_value_free(&money_in_type, &m);

  /* current data needs no step */
  money_in cur = {5, "USD", "n", "s"};
  b.len = 0;
  TT_EQ_INT(troupe_encode(&money_in_type, &cur, &b, NULL), 0);
  calls_rename = 0;
  TT_EQ_INT(troupe_decode_as("bank.MoneyIn", 1, b.data, b.len, &money_in_type,
                             &m, NULL), 0);
  TT_EQ_INT(calls_rename, 0);
  TT_ASSERT(troupe_value_equal(&money_in_type, &cur, &m));
  troupe_value_free(&money_in_type, &m);
  troupe_buf_free(&b);
}

/* An upcaster whose old descriptor is gone from the code: the old payload
 * is decoded with the new type and fixed up. */
typedef struct acct2 { char *owner; int32_t limit; } acct2;
static const troupe_field acct2_fields[] = {
    TROUPE_FIELD(acct2, owner, STRING), TROUPE_FIELD(acct2, limit, I32)};
static troupe_type acct2_type = TROUPE_TYPE("bank.Opened", 2, acct2, acct2_fields);

static int up_default_limit(void *data, const troupe_type *from,
                            const void *old, const troupe_type *to, void *nv) {
  (void)data; (void)to;
  TT_CHECK(from == NULL && old == NULL);
  acct2 *n = nv;
  if (n->limit == 0) n->limit = 500;      /* the v1 default */
  return 0;
}

static void test_without_old_descriptor(void) {
  TT_EQ_INT(troupe_upcaster_register("bank.Opened", 1, &acct2_type,
                                     up_default_limit, NULL), 0);
  uint8_t in[32];
  /* v1 bytes: {"owner": "ann", "legacy": true} */
  size_t n = 0;
  const uint8_t v1[] = {0xa2, 0x65, 'o', 'w', 'n', 'e', 'r', 0x63, 'a', 'n',
                        'n', 0x66, 'l', 'e', 'g', 'a', 'c', 'y', 0xf5};
  memcpy(in, v1, sizeof v1);
  n = sizeof v1;
  acct2 a;
  TT_EQ_INT(troupe_decode_as("bank.Opened", 1, in, n, &acct2_type, &a, NULL), 0);
  TT_EQ_STR(a.owner, "ann");
  TT_EQ_INT(a.limit, 500);
  troupe_value_free(&acct2_type, &a);
  /* fn NULL and no old descriptor: a pure rename by field name */
  static troupe_type renamed = TROUPE_TYPE("bank.AccountOpened", 1, acct2,
                                           acct2_fields);
  TT_EQ_INT(troupe_upcaster_register("bank.Opened", 2, &renamed, NULL, NULL), 0);
  const troupe_type *t;
  TT_EQ_INT(troupe_type_resolve("bank.Opened", 1, &t), 0);
  TT_ASSERT(t == &renamed);
  TT_EQ_INT(troupe_decode_as("bank.Opened", 1, in, n, &renamed, &a, NULL), 0);
  TT_EQ_STR(a.owner, "ann");
  TT_EQ_INT(a.limit, 500);
  troupe_value_free(&renamed, &a);
}

static int up_fail(void *data, const troupe_type *from, const void *old,
                   const troupe_type *to, void *nv) {
  (void)data; (void)from; (void)old; (void)to;
  dep2 *n = nv;
  n->currency = strdup("half-built");       /* must be freed by the caller */
  return TROUPE_ECORRUPT;
}

static void test_errors(void) {
  TT_EQ_INT(register_chain(), 0);
  const troupe_type *t;
  TT_EQ_INT(troupe_type_resolve("bank.Nope", 1, &t), TROUPE_ETYPE);
  TT_ASSERT(strstr(troupe_errmsg(), "'bank.Nope' v1"));
  TT_EQ_INT(troupe_type_resolve("bank.Deposited", 9, &t), TROUPE_ETYPE);
  TT_EQ_INT(troupe_type_resolve(NULL, 1, &t), TROUPE_EINVAL);
  TT_EQ_INT(troupe_type_resolve("", 1, &t), TROUPE_EINVAL);
  /* one upcaster per start */
  TT_EQ_INT(troupe_upcaster_register("bank.Deposited", 1, &dep2_type, NULL,
                                     NULL), TROUPE_EEXIST);
  /* same manifest must go to the next version */
  static troupe_type dep5 = TROUPE_TYPE("bank.Deposited", 5, dep3, dep3_fields);
  TT_EQ_INT(troupe_upcaster_register("bank.Deposited", 3, &dep5, NULL, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_upcaster_register("x.Y", 0, &dep5, NULL, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_upcaster_register("x.Y", 1, NULL, NULL, NULL), TROUPE_EINVAL);
  /* a cycle through renames is refused */
  static troupe_type ca = TROUPE_TYPE("cyc.A", 1, fx_point, fx_point_fields);
  static troupe_type cb = TROUPE_TYPE("cyc.B", 1, fx_point, fx_point_fields);
  TT_EQ_INT(troupe_upcaster_register("cyc.A", 1, &cb, NULL, NULL), 0);
  TT_EQ_INT(troupe_upcaster_register("cyc.B", 1, &ca, NULL, NULL), TROUPE_EINVAL);
  TT_ASSERT(strstr(troupe_errmsg(), "cycle"));
  /* a target that is not the end of the chain */
  troupe_buf b = {0};
  encode_v1(1, &b);
  dep3 d3;
  memset(&d3, 0x11, sizeof d3);
  TT_EQ_INT(troupe_decode_as("bank.Deposited", 1, b.data, b.len, &dep3_type,
                             &d3, NULL), TROUPE_ETYPE);
  TT_ASSERT(d3.cents == 0 && d3.note == NULL);
  /* a bad payload fails in the first step, nothing leaks */
  money_in m;
  TT_EQ_INT(troupe_decode_as("bank.Deposited", 1, (const uint8_t *)"\xa1\x66"
                             "amount\x61x", 10, NULL, &m, NULL), TROUPE_EDECODE);
  TT_ASSERT(strstr(troupe_errmsg(), "'bank.Deposited' v1 field 'amount'"));
  /* an upcaster's failure comes back; its half-built value is freed */
  static troupe_type f1 = TROUPE_TYPE("fail.E", 1, dep1, dep1_fields);
  static troupe_type f2 = TROUPE_TYPE("fail.E", 2, dep2, dep2_fields);
  TT_EQ_INT(troupe_type_register(&f1), 0);
  TT_EQ_INT(troupe_upcaster_register("fail.E", 1, &f2, up_fail, NULL), 0);
  dep2 d2;
  TT_EQ_INT(troupe_decode_as("fail.E", 1, b.data, b.len, &f2, &d2, NULL),
            TROUPE_ECORRUPT);
  TT_ASSERT(d2.currency == NULL && d2.cents == 0);
  troupe_buf_free(&b);
}

static void test_alloc_failures(void) {
  TT_EQ_INT(register_chain(), 0);
  troupe_buf b = {0};
  encode_v1(3, &b);
  int fails = 0;
  for (int k = 1; k < 100; k++) {
    money_in m;
    troupe__types_fail_countdown = k;
    int rc = troupe_decode_as("bank.Deposited", 1, b.data, b.len, NULL, &m, NULL);
    troupe__types_fail_countdown = 0;
    if (!rc) {
      TT_EQ_INT(m.cents, 300);
      troupe_value_free(&money_in_type, &m);
      break;
    }
    TT_EQ_INT(rc, TROUPE_ENOMEM);
    fails++;
  }
  TT_ASSERT(fails >= 3);
  troupe_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* Envelope                                                            */

static char *hexs(const uint8_t *p, size_t n) {
  static char buf[2048];
  size_t o = 0;
  for (size_t i = 0; i < n && o + 3 < sizeof buf; i++)
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%02x", p[i]);
  buf[o] = '\0';
  return buf;
}

static void test_envelope_bytes(void) {
  troupe_envelope e;
  memset(&e, 0, sizeof e);
  e.manifest = "a.B";
  e.version = 1;
  e.payload = (const uint8_t *)"\xa0";
  e.payload_len = 1;
  troupe_buf b = {0};
  TT_EQ_INT(troupe_envelope_encode(&e, &b), 0);
  TT_EQ_STR(hexs(b.data, b.len), "840163612e420141a0");
  /* metadata goes out sorted: "t" < "id" < "raw" (shorter keys first) */
  e.meta[0] = troupe_meta_bytes("raw", "\x01\x02", 2);
  e.meta[1] = troupe_meta_int("t", -3);
  e.meta[2] = troupe_meta_text("id", "x");
  e.nmeta = 3;
  b.len = 0;
  TT_EQ_INT(troupe_envelope_encode(&e, &b), 0);
  TT_EQ_STR(hexs(b.data, b.len),
            "850163612e420141a0a3617422626964617863726177420102");
  troupe_envelope d;
  TT_EQ_INT(troupe_envelope_decode(b.data, b.len, &d), 0);
  TT_EQ_INT(d.format, 1);
  TT_EQ_STR(d.manifest, "a.B");
  TT_EQ_INT(d.version, 1);
  TT_EQ_INT(d.payload_len, 1);
  TT_EQ_INT(d.nmeta, 3);
  const troupe_meta *m = troupe_envelope_meta(&d, "t");
  TT_ASSERT(m && m->kind == TROUPE_META_INT && m->i == -3);
  m = troupe_envelope_meta(&d, "id");
  TT_ASSERT(m && m->kind == TROUPE_META_TEXT && m->len == 1 && m->data[0] == 'x');
  m = troupe_envelope_meta(&d, "raw");
  TT_ASSERT(m && m->kind == TROUPE_META_BYTES && m->len == 2);
  TT_ASSERT(troupe_envelope_meta(&d, "nope") == NULL);
  /* re-encoding the decoded envelope gives the same bytes */
  troupe_buf c = {0};
  TT_EQ_INT(troupe_envelope_encode(&d, &c), 0);
  TT_ASSERT(c.len == b.len && memcmp(c.data, b.data, b.len) == 0);
  /* bad envelopes to encode */
  e.meta[1] = troupe_meta_int("id", 1);
  TT_EQ_INT(troupe_envelope_encode(&e, &c), TROUPE_EINVAL);
  e.nmeta = 17;
  TT_EQ_INT(troupe_envelope_encode(&e, &c), TROUPE_EINVAL);
  e.nmeta = 0;
  e.version = 0;
  TT_EQ_INT(troupe_envelope_encode(&e, &c), TROUPE_EINVAL);
  e.version = 1;
  e.manifest = "";
  TT_EQ_INT(troupe_envelope_encode(&e, &c), TROUPE_EINVAL);
  troupe_buf_free(&b);
  troupe_buf_free(&c);
}

static void expect_env(const char *hex, int code) {
  uint8_t in[256];
  size_t n = 0;
  for (const char *h = hex; *h; h += 2) {
    if (*h == ' ') { h--; continue; }
    unsigned v;
    sscanf(h, "%2x", &v);
    in[n++] = (uint8_t)v;
  }
  troupe_envelope e;
  int rc = troupe_envelope_decode(in, n, &e);
  if (rc != code)
    fprintf(stderr, "  %s: %s (%s), want %s\n", hex, troupe_err_name(rc),
            troupe_errmsg(), troupe_err_name(code));
  TT_CHECK(rc == code);
}

static void test_envelope_decode_cases(void) {
  int before = tt__failed_asserts;
  expect_env("840163612e420141a0", 0);
  expect_env("860163612e420141a0a0 83010203", 0);   /* later additions skipped */
  expect_env("850163612e420141a0 f6", TROUPE_EDECODE);  /* metadata not a map */
  expect_env("840263612e420141a0", TROUPE_EUNSUPPORTED);
  expect_env("840063612e420141a0", TROUPE_EDECODE);
  expect_env("830163612e4201", TROUPE_EDECODE);
  expect_env("840160 0141a0", TROUPE_EDECODE);        /* empty manifest */
  expect_env("840163612e420041a0", TROUPE_EDECODE);   /* version 0 */
  expect_env("840163612e421b000000010000000041a0", TROUPE_EDECODE);
  expect_env("840163612e420161a0", TROUPE_EDECODE);   /* payload as text */
  expect_env("840163612e42015fff", TROUPE_EDECODE);   /* indefinite payload */
  expect_env("840163612e420141", TROUPE_EDECODE);     /* truncated */
  expect_env("840163612e420141a000", TROUPE_EDECODE); /* trailing */
  expect_env("9f0163612e420141a0ff", TROUPE_EDECODE);
  expect_env("850163612e420141a0a2 6161 01 6161 02", TROUPE_EDECODE);  /* dup */
  expect_env("850163612e420141a0a1 6161 f5", TROUPE_EDECODE);
  expect_env("850163612e420141a0a1 6161 1bffffffffffffffff", TROUPE_EDECODE);
  expect_env("850163612e420141a0b1", TROUPE_ETOOBIG);
  expect_env("840163ff2e420141a0", TROUPE_EDECODE);   /* manifest not UTF-8 */
  expect_env("840163610042 0141a0", TROUPE_EDECODE);  /* NUL in manifest */
  expect_env("9bffffffffffffffff0163612e420141a0", TROUPE_EDECODE);
  expect_env("", TROUPE_EDECODE);
  TT_EQ_INT(tt__failed_asserts, before);
  /* a manifest of 300 bytes */
  uint8_t big[400];
  size_t n = 0;
  big[n++] = 0x84; big[n++] = 0x01; big[n++] = 0x79; big[n++] = 0x01; big[n++] = 0x2c;
  memset(big + n, 'm', 300);
  n += 300;
  big[n++] = 0x01; big[n++] = 0x41; big[n++] = 0xa0;
  troupe_envelope e;
  TT_EQ_INT(troupe_envelope_decode(big, n, &e), TROUPE_ETOOBIG);
  TT_EQ_INT(troupe_envelope_decode(NULL, 1, &e), TROUPE_EINVAL);
}

static void test_envelope_values(void) {
  TT_EQ_INT(register_chain(), 0);
  TT_EQ_INT(troupe_type_register(&fx_sink_type), 0);
  uint64_t seed = 3;
  troupe_buf b = {0};
  for (int i = 0; i < 200; i++) {
    fx_sink v, w;
    fx_gen_sink(&seed, &v);
    troupe_meta meta[2] = {troupe_meta_text("trace", "abc"),
                           troupe_meta_int("seq", i)};
    b.len = 0;
    TT_EQ_INT(troupe_envelope_encode_value(&fx_sink_type, &v, meta, (size_t)(i % 3),
                                           &b, &fx_opts), 0);
    troupe_envelope e;
    TT_EQ_INT(troupe_envelope_decode(b.data, b.len, &e), 0);
    TT_EQ_STR(e.manifest, "test.Sink");
    TT_EQ_INT(e.nmeta, i % 3);
    const troupe_type *t = NULL;
    TT_EQ_INT(troupe_envelope_decode_value(&e, &t, &w, sizeof w, &fx_opts), 0);
    TT_ASSERT(t == &fx_sink_type);
    TT_ASSERT(troupe_value_equal(&fx_sink_type, &v, &w));
    /* the payload is the canonical encoding of the value */
    troupe_buf p = {0};
    TT_EQ_INT(troupe_encode(&fx_sink_type, &v, &p, &fx_opts), 0);
    TT_ASSERT(p.len == e.payload_len && !memcmp(p.data, e.payload, p.len));
    troupe_buf_free(&p);
    /* every strict prefix fails to parse */
    for (size_t k = 0; k < b.len; k += 7)
      TT_ASSERT(troupe_envelope_decode(b.data, k, &e) < 0);
    troupe_value_free(&fx_sink_type, &v);
    troupe_value_free(&fx_sink_type, &w);
  }
  /* an old event in an envelope comes out upcast */
  dep1 old = {7};
  b.len = 0;
  TT_EQ_INT(troupe_envelope_encode_value(&dep1_type, &old, NULL, 0, &b, NULL), 0);
  troupe_envelope e;
  TT_EQ_INT(troupe_envelope_decode(b.data, b.len, &e), 0);
  money_in m;
  const troupe_type *t;
  TT_EQ_INT(troupe_envelope_decode_value(&e, &t, &m, 4, NULL), TROUPE_ETOOBIG);
  TT_EQ_INT(troupe_envelope_decode_value(&e, &t, &m, sizeof m, NULL), 0);
  TT_ASSERT(t == &money_in_type);
  TT_EQ_INT(m.cents, 700);
  troupe_value_free(&money_in_type, &m);
  /* an unknown type */
  static troupe_type unknown = TROUPE_TYPE("test.Unregistered", 1, fx_point,
                                           fx_point_fields);
  fx_point pt = {1, 2};
  b.len = 0;
  TT_EQ_INT(troupe_envelope_encode_value(&unknown, &pt, NULL, 0, &b, NULL), 0);
  TT_EQ_INT(troupe_envelope_decode(b.data, b.len, &e), 0);
  TT_EQ_INT(troupe_envelope_decode_value(&e, &t, &pt, sizeof pt, NULL),
            TROUPE_ETYPE);
  troupe_buf_free(&b);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  TT_RUN(test_chain);
  TT_RUN(test_without_old_descriptor);
  TT_RUN(test_errors);
  TT_RUN(test_alloc_failures);
  TT_RUN(test_envelope_bytes);
  TT_RUN(test_envelope_decode_cases);
  TT_RUN(test_envelope_values);
  return tt_done();
}
