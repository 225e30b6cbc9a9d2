/*
 * tt.h: the tiny test harness every troupe test program uses.
 *
 *   static void test_foo(void) { TT_ASSERT(x == 1); TT_EQ_INT(rc, 0); }
 *   int main(int argc, char **argv) {
 *     TT_RUN(test_foo);
 *     return tt_done();
 *   }
 *
 * Each test program runs under a wall-clock limit (TT_TIMEOUT seconds,
 * default 120, override with the environment variable TT_TIMEOUT), so a
 * hang fails instead of blocking `make check`. A program can be limited to
 * some tests by naming them: ./test_actor test_ask test_watch.
 * Exit status: 0 all passed, 1 a failure, 77 skipped (automake's code).
 */
#ifndef TT_H
#define TT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int tt__failed_asserts;
static int tt__passed, tt__failed, tt__skipped;
static int tt__argc;
static char **tt__argv;
static const char *tt__current;
static int tt__skip_current;

static void tt__on_alarm(int sig) {
  (void)sig;
  static const char m[] = "\nFATAL: test program exceeded its time limit\n";
  if (write(2, m, sizeof m - 1) < 0) { /* nothing to do */ }
  _exit(1);
}

static inline void tt_init(int argc, char **argv) {
  tt__argc = argc;
  tt__argv = argv;
  const char *t = getenv("TT_TIMEOUT");
  unsigned secs = t ? (unsigned)atoi(t) : 120;
  signal(SIGALRM, tt__on_alarm);
  if (secs) alarm(secs);
  setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline int tt__selected(const char *name) {
  if (tt__argc <= 1) return 1;
  for (int i = 1; i < tt__argc; i++)
    if (strcmp(tt__argv[i], name) == 0) return 1;
  return 0;
}

#define TT_FAIL_AT(file, line, ...)                                         \
  do {                                                                      \
    fprintf(stderr, "%s:%d: %s: ", file, line, tt__current);                \
    fprintf(stderr, __VA_ARGS__);                                           \
    fprintf(stderr, "\n");                                                  \
    tt__failed_asserts++;                                                   \
  } while (0)

#define TT_ASSERT(cond)                                                     \
  do {                                                                      \
    if (!(cond)) {                                                          \
      TT_FAIL_AT(__FILE__, __LINE__, "assertion failed: %s", #cond);        \
      return;                                                               \
    }                                                                       \
  } while (0)

/* Like TT_ASSERT but usable in functions that return a value. */
#define TT_CHECK(cond)                                                      \
  do {                                                                      \
    if (!(cond))                                                            \
      TT_FAIL_AT(__FILE__, __LINE__, "check failed: %s", #cond);            \
  } while (0)

#define TT_EQ_INT(a, b)                                                     \
  do {                                                                      \
    long long tt_a_ = (long long)(a), tt_b_ = (long long)(b);               \
    if (tt_a_ != tt_b_) {                                                   \
      TT_FAIL_AT(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b,      \
                 tt_a_, tt_b_);                                             \
      return;                                                               \
    }                                                                       \
  } while (0)

#define TT_EQ_STR(a, b)                                                     \
  do {                                                                      \
    const char *tt_a_ = (a), *tt_b_ = (b);                                  \
    if (!tt_a_ || !tt_b_ || strcmp(tt_a_, tt_b_) != 0) {                    \
      TT_FAIL_AT(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,  \
                 tt_a_ ? tt_a_ : "(null)", tt_b_ ? tt_b_ : "(null)");       \
      return;                                                               \
    }                                                                       \
  } while (0)

/* Skip the current test with a visible reason. */
#define TT_SKIP(...)                                                        \
  do {                                                                      \
    printf("# skip %s: ", tt__current);                                     \
    printf(__VA_ARGS__);                                                    \
    printf("\n");                                                           \
    tt__skip_current = 1;                                                   \
    return;                                                                 \
  } while (0)

#define TT_RUN(fn)                                                          \
  do {                                                                      \
    if (!tt__selected(#fn)) break;                                          \
    int tt_before_ = tt__failed_asserts;                                    \
    tt__current = #fn;                                                      \
    tt__skip_current = 0;                                                   \
    fn();                                                                   \
    if (tt__failed_asserts != tt_before_) {                                 \
      tt__failed++;                                                         \
      printf("not ok - %s\n", #fn);                                         \
    } else if (tt__skip_current) {                                          \
      tt__skipped++;                                                        \
      printf("ok - %s # SKIP\n", #fn);                                      \
    } else {                                                                \
      tt__passed++;                                                         \
      printf("ok - %s\n", #fn);                                             \
    }                                                                       \
  } while (0)

static inline int tt_done(void) {
  printf("%d passed, %d failed, %d skipped\n", tt__passed, tt__failed,
         tt__skipped);
  if (tt__failed) return 1;
  if (tt__passed == 0 && tt__skipped > 0) return 77;
  return 0;
}

/* Monotonic milliseconds, for bounded waits. */
static inline uint64_t tt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wait until cond holds, polling every 1 ms, at most ms milliseconds.
 * Evaluates to the final value of cond. */
#define TT_WAIT_UNTIL(cond, ms)                                             \
  ({                                                                        \
    uint64_t tt_dl_ = tt_now_ms() + (ms);                                   \
    while (!(cond) && tt_now_ms() < tt_dl_) {                               \
      struct timespec tt_ts_ = {0, 1000000};                                \
      nanosleep(&tt_ts_, NULL);                                             \
    }                                                                       \
    (cond);                                                                 \
  })

#endif
