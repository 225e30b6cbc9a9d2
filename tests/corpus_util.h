/* corpus_util.h: replaying and writing a fuzz corpus, shared by the tests
 * that compile a fuzz target in (test_fuzz_corpus with fuzz_decode.c,
 * test_frame with fuzz_frame.c).
 *
 * Include after tt.h and after the fuzz target's source, which defines
 * LLVMFuzzerTestOneInput. */
#ifndef TROUPE_TESTS_CORPUS_UTIL_H
#define TROUPE_TESTS_CORPUS_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One file through the fuzz target; 1 when it cannot be read. */
static int corpus_replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: %s\n", path, strerror(errno));
    return 1;
  }
  troupe_buf b = {0};
  uint8_t chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    troupe_buf_append(&b, chunk, n);
  fclose(f);
  LLVMFuzzerTestOneInput(b.data ? b.data : (const uint8_t *)"", b.len);
  troupe_buf_free(&b);
  return 0;
}

/* Every file of $top_srcdir/tests/fuzz/<sub> (dot files left out) through
 * the fuzz target; fails the running test when the folder cannot be
 * opened, a file cannot be read, or there is no file. `what` names the
 * corpus in the count printed. */
static void corpus_replay_dir(const char *sub, const char *what) {
  const char *top = getenv("top_srcdir");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/tests/fuzz/%s", top ? top : "..", sub);
  DIR *d = opendir(dir);
  if (!d) fprintf(stderr, "%s: %s\n", dir, strerror(errno));
  TT_ASSERT(d != NULL);
  int files = 0, bad = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    bad += corpus_replay_file(path);
    files++;
  }
  closedir(d);
  printf("# %d %s files replayed\n", files, what);
  TT_EQ_INT(bad, 0);
  TT_ASSERT(files > 0);
}

/* Writing seeds: the folder (set by --generate) and how many so far. */
static const char *gen_dir;
static int gen_count;

/* A seed file: the mode byte, then n bytes of p. */
static void seed(uint8_t mode, const uint8_t *p, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "%s/seed-%03d-mode%d", gen_dir, gen_count++, mode);
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); exit(1); }
  fputc(mode, f);
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

/* --generate DIR: writes the seed corpus into DIR (made when missing) with
 * `generate`, which calls seed(); says how many it wrote. Exit status 0. */
static int corpus_generate(const char *dir, void (*generate)(void)) {
  gen_dir = dir;
  mkdir(gen_dir, 0755);
  generate();
  printf("wrote %d seeds to %s\n", gen_count, gen_dir);
  return 0;
}

#endif
