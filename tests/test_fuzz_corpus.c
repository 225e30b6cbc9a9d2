/*
 * test_fuzz_corpus.c: replays every file of tests/fuzz/corpus/ through the
 * fuzz target (tests/fuzz/fuzz_decode.c, compiled in), so `make check`
 * keeps the decoders honest on every seed and past finding without
 * needing clang's libFuzzer.
 *
 *   test_fuzz_corpus                 replay $top_srcdir/tests/fuzz/corpus
 *   test_fuzz_corpus FILE...         replay these files
 *   test_fuzz_corpus --generate DIR  write the seed corpus into DIR
 */
#include "tt.h"

#include "fuzz/fuzz_decode.c"
#include "corpus_util.h"

/* ------------------------------------------------------------------ */
/* Seeds                                                               */

static void seed_hex(uint8_t mode, const char *hex) {
  uint8_t buf[512];
  size_t n = 0;
  for (const char *h = hex; h[0] && h[1];) {
    if (*h == ' ') { h++; continue; }
    unsigned v;
    sscanf(h, "%2x", &v);
    buf[n++] = (uint8_t)v;
    h += 2;
  }
  seed(mode, buf, n);
}

static void generate(void) {
  uint64_t s = 2026;
  troupe_buf b = {0};
  fz_init();
  for (int i = 0; i < 12; i++) {            /* sinks, plain and enveloped */
    fx_sink v;
    fx_gen_sink(&s, &v);
    b.len = 0;
    troupe_encode(&fx_sink_type, &v, &b, &fx_opts);
    seed(0, b.data, b.len);
    if (i < 4) {
      troupe_meta m[2] = {troupe_meta_text("trace", "t-1"), troupe_meta_int("n", -i)};
      b.len = 0;
      troupe_envelope_encode_value(&fx_sink_type, &v, m, (size_t)i % 3, &b, &fx_opts);
      seed(4, b.data, b.len);
    }
    troupe_value_free(&fx_sink_type, &v);
  }
  for (int i = 0; i < 4; i++) {             /* trees */
    fx_node v;
    fx_gen_node(&s, &v, 4);
    b.len = 0;
    troupe_encode(&fx_node_type, &v, &b, &fx_opts);
    seed(1, b.data, b.len);
    troupe_value_free(&fx_node_type, &v);
  }
  fx_point pt = {-7, 300000};
  b.len = 0;
  troupe_encode(&fx_point_type, &pt, &b, NULL);
  seed(2, b.data, b.len);
  b.len = 0;
  troupe_envelope_encode_value(&fx_point_type, &pt, NULL, 0, &b, NULL);
  seed(4, b.data, b.len);
  fx_tag tg = {"name\xc3\xa9", {(uint8_t *)"\x00\x01", 2}};
  b.len = 0;
  troupe_encode(&fx_tag_type, &tg, &b, NULL);
  seed(3, b.data, b.len);
  fz_ev1 ev = {21};                         /* upcast chain */
  b.len = 0;
  troupe_encode(&fz_ev1_type, &ev, &b, NULL);
  uint8_t tmp[64];
  tmp[0] = 0;                               /* version selector: v1 */
  memcpy(tmp + 1, b.data, b.len);
  seed(5, tmp, b.len + 1);
  b.len = 0;
  troupe_envelope_encode_value(&fz_ev1_type, &ev, NULL, 0, &b, NULL);
  seed(4, b.data, b.len);
  fz_ev2 ev2 = {5, "x"};
  b.len = 0;
  troupe_encode(&fz_ev2_type, &ev2, &b, NULL);
  tmp[0] = 1;
  memcpy(tmp + 1, b.data, b.len);
  seed(5, tmp, b.len + 1);
  /* tolerant and hostile shapes */
  seed_hex(2, "a5 6178 01 637a7a7a 82 01 a2 6161 4100 02 9f01ff 07 616b 6179 02"
              " 6177 d837 82 6174 7f61616162ff");
  seed_hex(2, "bf 6179 20 6178 3903e7 ff");
  seed_hex(2, "a2 6178 01 6178 02");
  seed_hex(2, "a1 617a 9bffffffffffffffff 01");
  seed_hex(2, "a1 617a 81818181818181818181818181818100");
  seed_hex(0, "a1 6576 5f753332 9b0000000100000000 01");
  seed_hex(0, "a1 6576 5f746167 85 a0 a0 a0 a0 a0");
  seed_hex(0, "a3 6173 f6 6172 71 74726f7570653a2f2f746573742f312f32 626f73 f6");
  seed_hex(0, "a2 6366 3332 fb3fb999999999999a 6366 3634 f97e00");
  seed_hex(0, "a1 656d6f6e6579 82 3903e7 63455552");
  seed_hex(0, "a1 64626c6f62 43 010203");
  seed_hex(4, "860163612e420141a0a0 83010203");
  seed_hex(4, "850163612e420141a0 a2 6161 01 6162 02");
  seed_hex(4, "840263612e420141a0");
  seed_hex(6, "a3 01 f5 6161 83 f6 f7 f93e00 43 010203 9f 5f4161ff c1 20 ff");
  seed_hex(6, "fb7ff8000000000000");
  seed_hex(6, "7f 6161 6162 ff");
  troupe_buf_free(&b);
}

static void test_corpus(void) { corpus_replay_dir("corpus", "corpus"); }

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--generate") == 0)
    return corpus_generate(argv[2], generate);
  tt_init(1, argv);
  if (argc > 1) {
    for (int i = 1; i < argc; i++)
      if (corpus_replay_file(argv[i])) return 1;
    printf("%d files replayed\n", argc - 1);
    return 0;
  }
  TT_RUN(test_corpus);
  return tt_done();
}

