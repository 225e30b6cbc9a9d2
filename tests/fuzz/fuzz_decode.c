/*
 * fuzz_decode.c: libFuzzer target for the decoders: troupe_decode of
 * several described types, troupe_envelope_decode (+ its payload),
 * troupe_decode_as through an upcaster chain and troupe_cbor_to_json.
 *
 * The first input byte picks the decoder; the rest is its input. Beyond
 * "no crash, no leak, no undefined behaviour" it checks the codec's
 * promises on everything that decodes: re-encoding succeeds, is canonical
 * (encode(decode(encode(v))) == encode(v)) and decodes to an equal value.
 *
 * Built by tests/fuzz/build.sh (clang -fsanitize=fuzzer); the same file is
 * compiled into tests/test_fuzz_corpus, which replays the corpus in
 * `make check`.
 */
#include <stdio.h>
#include <stdlib.h>

#include "types_fixtures.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond)                                                      \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "fuzz_decode: check failed: %s (%s:%d): %s\n", #cond, \
              __FILE__, __LINE__, troupe_errmsg());                         \
      abort();                                                              \
    }                                                                       \
  } while (0)

/* An upcaster chain: fz.Ev v1 {n: i32} -> v2 {n: i64, tag} (typed step)
 * -> fz.Renamed v1 (by name). */
typedef struct fz_ev1 { int32_t n; } fz_ev1;
static const troupe_field fz_ev1_fields[] = {TROUPE_FIELD(fz_ev1, n, I32)};
static troupe_type fz_ev1_type = TROUPE_TYPE("fz.Ev", 1, fz_ev1, fz_ev1_fields);
typedef struct fz_ev2 { int64_t n; char *tag; } fz_ev2;
static const troupe_field fz_ev2_fields[] = {
    TROUPE_FIELD(fz_ev2, n, I64), TROUPE_FIELD(fz_ev2, tag, STRING)};
static troupe_type fz_ev2_type = TROUPE_TYPE("fz.Ev", 2, fz_ev2, fz_ev2_fields);
static troupe_type fz_renamed_type =
    TROUPE_TYPE("fz.Renamed", 1, fz_ev2, fz_ev2_fields);

static int fz_up(void *data, const troupe_type *from, const void *old,
                 const troupe_type *to, void *nv) {
  (void)data; (void)from; (void)to;
  const fz_ev1 *o = old;
  fz_ev2 *n = nv;
  n->n = (int64_t)o->n * 2;
  n->tag = strdup("up");
  return n->tag ? 0 : TROUPE_ENOMEM;
}

static void fz_init(void) {
  static bool done;
  if (done) return;
  done = true;
  FZ_CHECK(troupe_type_register(&fx_sink_type) == 0);
  FZ_CHECK(troupe_type_register(&fx_point_type) == 0);
  FZ_CHECK(troupe_type_register(&fx_node_type) == 0);
  FZ_CHECK(troupe_type_register(&fz_ev1_type) == 0);
  FZ_CHECK(troupe_upcaster_register("fz.Ev", 1, &fz_ev2_type, fz_up, NULL) == 0);
  FZ_CHECK(troupe_upcaster_register("fz.Ev", 2, &fz_renamed_type, NULL, NULL) == 0);
}

/* Decode succeeded: check the round-trip promises, then free. */
static void fz_roundtrip(const troupe_type *t, void *v,
                         const troupe_codec_opts *o) {
  troupe_buf a = {0}, b = {0};
  void *w = calloc(1, t->size);
  FZ_CHECK(w);
  FZ_CHECK(troupe_encode(t, v, &a, o) == 0);
  FZ_CHECK(troupe_decode(t, a.data, a.len, w, o) == 0);
  FZ_CHECK(troupe_value_equal(t, v, w));
  FZ_CHECK(troupe_encode(t, w, &b, o) == 0);
  FZ_CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  void *c = calloc(1, t->size);
  FZ_CHECK(c);
  FZ_CHECK(troupe_value_copy(t, c, v) == 0);
  FZ_CHECK(troupe_value_equal(t, c, v));
  b.len = 0;
  FZ_CHECK(troupe_value_to_json(t, v, &b, o) == 0);
  b.len = 0;
  FZ_CHECK(troupe_cbor_to_json(a.data, a.len, &b, o->limits) == 0);
  troupe_value_free(t, c);
  troupe_value_free(t, w);
  troupe_value_free(t, v);
  free(c);
  free(w);
  troupe_buf_free(&a);
  troupe_buf_free(&b);
}

static void fz_decode(const troupe_type *t, const uint8_t *d, size_t n,
                      const troupe_codec_opts *o) {
  void *v = calloc(1, t->size);
  FZ_CHECK(v);
  int rc = troupe_decode(t, d, n, v, o);
  if (rc == 0) {
    fz_roundtrip(t, v, o);
  } else {
    FZ_CHECK(rc == TROUPE_EDECODE || rc == TROUPE_ETOOBIG ||
             rc == TROUPE_EINVAL);          /* EINVAL: the ref hook */
    for (size_t i = 0; i < t->size; i++) FZ_CHECK(((uint8_t *)v)[i] == 0);
  }
  free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init();
  if (size < 1) return 0;
  uint8_t mode = data[0];
  data++;
  size--;
  /* Small limits so that the fuzzer reaches them. */
  troupe_limits lim = {12, 4096, 512, 1u << 20};
  troupe_codec_opts o = fx_opts;
  o.limits = &lim;
  switch (mode % 7) {
    case 0: fz_decode(&fx_sink_type, data, size, &o); break;
    case 1: fz_decode(&fx_node_type, data, size, &o); break;
    case 2: fz_decode(&fx_point_type, data, size, &o); break;
    case 3: fz_decode(&fx_tag_type, data, size, &o); break;
    case 4: {
      troupe_envelope e;
      if (troupe_envelope_decode(data, size, &e)) break;
      troupe_buf b = {0};
      FZ_CHECK(troupe_envelope_encode(&e, &b) == 0);
      troupe_envelope e2;
      FZ_CHECK(troupe_envelope_decode(b.data, b.len, &e2) == 0);
      FZ_CHECK(strcmp(e.manifest, e2.manifest) == 0 && e.version == e2.version &&
               e.payload_len == e2.payload_len && e.nmeta == e2.nmeta);
      troupe_buf_free(&b);
      const troupe_type *t;
      if (troupe_type_resolve(e.manifest, e.version, &t)) break;
      void *v = calloc(1, t->size);
      FZ_CHECK(v);
      if (troupe_envelope_decode_value(&e, &t, v, t->size, &o) == 0)
        fz_roundtrip(t, v, &o);
      free(v);
      break;
    }
    case 5: {
      fz_ev2 v;
      uint32_t version = 1 + (size ? data[0] % 3 : 0);
      const char *m = version == 3 ? "fz.Renamed" : "fz.Ev";
      if (version == 3) version = 1;
      if (size) { data++; size--; }
      if (troupe_decode_as(m, version, data, size, &fz_renamed_type, &v, &o) == 0)
        fz_roundtrip(&fz_renamed_type, &v, &o);
      break;
    }
    default: {
      troupe_buf b = {0};
      if (troupe_cbor_to_json(data, size, &b, &lim) == 0)
        FZ_CHECK(strlen((char *)b.data) == b.len);
      troupe_buf_free(&b);
      break;
    }
  }
  return 0;
}
