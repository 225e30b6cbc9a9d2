/*
 * journal_conformance.c: the scenarios every storage backend must pass.
 * See journal_conformance.h. Data sizes are small on purpose: the suite
 * runs under the sanitizers in well under a minute.
 */
#include "tt.h"
#include "journal_conformance.h"
#include "troupe/troupe.h"
#include "troupe/journal.h"
#include "troupe/snapshot.h"
#include "troupe/state.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>

static const jc_backend *B;
static char *specs[256];
static int nspecs;

/* A new empty store's spec (kept for cleanup). */
static const char *fresh(void) {
  char buf[512];
  if (B->fresh_spec(buf, sizeof buf, B->data) < 0 || nspecs == 256) abort();
  specs[nspecs] = strdup(buf);
  return specs[nspecs++];
}

static troupe_store_options opts(void) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = 1;
  o.sync = 0;                   /* durability is the crash test's job */
  return o;
}

static troupe_journal *open_j(const char *spec) {
  troupe_store_options o = opts();
  troupe_journal *j = NULL;
  int rc = troupe_journal_open(spec, &o, &j);
  if (rc < 0) fprintf(stderr, "open %s: %s (%s)\n", spec, troupe_err_name(rc),
                      troupe_errmsg());
  return j;
}

static troupe_event ev_make(const char *manifest, const void *payload,
                            size_t len, const char *const *tags, size_t ntags) {
  troupe_event e;
  memset(&e, 0, sizeof e);
  e.manifest = manifest;
  e.version = 3;
  e.payload = payload;
  e.payload_len = len;
  e.tags = tags;
  e.ntags = ntags;
  e.timestamp_ms = 1700000000000;
  e.writer_id = 42;
  return e;
}

/* Append `n` events "pid:<seq>" one batch; returns status. */
static int append_n(troupe_journal *j, const char *pid, uint64_t expected,
                    size_t n, const char *const *tags, size_t ntags) {
  troupe_event ev[64];
  char pl[64][48];
  if (n > 64) return -100;
  for (size_t i = 0; i < n; i++) {
    snprintf(pl[i], sizeof pl[i], "%s:%" PRIu64, pid, expected + 1 + i);
    ev[i] = ev_make("test.Event", pl[i], strlen(pl[i]), tags, ntags);
  }
  uint64_t head = 0;
  int rc = troupe_journal_append_sync(j, pid, expected, ev, n, &head);
  if (rc == 0 && head != expected + n) return -101;
  return rc;
}

/* Collects what a paged read delivers. */
typedef struct coll {
  size_t n, cap, calls, max_page;
  int done_calls, bad, stop_after_calls;
  uint64_t *seq, *off;
  char **pid;
  char **payload;
  uint32_t *version;
  size_t *ntags;
} coll;

static void coll_free(coll *c) {
  for (size_t i = 0; i < c->n; i++) {
    free(c->pid[i]);
    free(c->payload[i]);
  }
  free(c->seq); free(c->off); free(c->pid); free(c->payload);
  free(c->version); free(c->ntags);
  memset(c, 0, sizeof *c);
}

static int coll_cb(int status, const troupe_event *ev, size_t n, int done,
                   void *data) {
  coll *c = data;
  if (status < 0) {
    c->bad++;
    return 1;
  }
  if (c->done_calls) c->bad++;            /* a call after done */
  c->calls++;
  if (n > c->max_page) c->max_page = n;
  if (done) c->done_calls++;
  for (size_t i = 0; i < n; i++) {
    if (c->n == c->cap) {
      c->cap = c->cap ? c->cap * 2 : 64;
      c->seq = realloc(c->seq, c->cap * sizeof *c->seq);
      c->off = realloc(c->off, c->cap * sizeof *c->off);
      c->pid = realloc(c->pid, c->cap * sizeof *c->pid);
      c->payload = realloc(c->payload, c->cap * sizeof *c->payload);
      c->version = realloc(c->version, c->cap * sizeof *c->version);
      c->ntags = realloc(c->ntags, c->cap * sizeof *c->ntags);
    }
    c->seq[c->n] = ev[i].seq;
    c->off[c->n] = ev[i].offset;
    c->pid[c->n] = strdup(ev[i].persistence_id);
    c->payload[c->n] = strndup(ev[i].payload, ev[i].payload_len);
    c->version[c->n] = ev[i].version;
    c->ntags[c->n] = ev[i].ntags;
    if (strcmp(ev[i].manifest, "test.Event") != 0 ||
        ev[i].timestamp_ms != 1700000000000 || ev[i].writer_id != 42)
      c->bad++;
    c->n++;
  }
  if (c->stop_after_calls && (int)c->calls >= c->stop_after_calls) return 1;
  return 0;
}

static int replay(troupe_journal *j, const char *pid, uint64_t from,
                  uint64_t to, uint64_t max, coll *c) {
  memset(c, 0, sizeof *c);
  return troupe_journal_replay_sync(j, pid, from, to, max, coll_cb, c);
}

static int by_tag(troupe_journal *j, const char *tag, uint64_t after,
                  uint64_t max, coll *c) {
  memset(c, 0, sizeof *c);
  return troupe_journal_by_tag_sync(j, tag, after, max, coll_cb, c);
}

static uint64_t highest(troupe_journal *j, const char *pid) {
  uint64_t h = UINT64_MAX;
  if (troupe_journal_highest_sync(j, pid, &h) < 0) return UINT64_MAX;
  return h;
}

/* ------------------------------------------------------------------------ */

static void jc_append_replay_order(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  const char *tags[] = {"t1", "t2"};
  TT_EQ_INT(append_n(j, "a", 0, 1, tags, 2), 0);
  TT_EQ_INT(append_n(j, "a", 1, 3, NULL, 0), 0);
  TT_EQ_INT(append_n(j, "b", 0, 2, NULL, 0), 0);
  TT_EQ_INT(append_n(j, "a", 4, 2, tags, 1), 0);
  TT_EQ_INT(highest(j, "a"), 6);
  TT_EQ_INT(highest(j, "b"), 2);
  TT_EQ_INT(highest(j, "nobody"), 0);
  coll c;
  TT_EQ_INT(replay(j, "a", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 6);
  TT_EQ_INT(c.bad, 0);
  TT_EQ_INT(c.done_calls, 1);
  for (size_t i = 0; i < c.n; i++) {
    char want[32];
    snprintf(want, sizeof want, "a:%zu", i + 1);
    TT_EQ_INT(c.seq[i], i + 1);
    TT_EQ_STR(c.payload[i], want);
    TT_EQ_STR(c.pid[i], "a");
    TT_EQ_INT(c.version[i], 3);
    if (i > 0) TT_ASSERT(c.off[i] > c.off[i - 1]);
  }
  TT_EQ_INT(c.ntags[0], 2);
  TT_EQ_INT(c.ntags[1], 0);
  TT_EQ_INT(c.ntags[4], 1);
  /* offsets of one batch are consecutive */
  TT_EQ_INT(c.off[3], c.off[1] + 2);
  coll_free(&c);
  /* unknown id: one empty, done call */
  TT_EQ_INT(replay(j, "nobody", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  TT_EQ_INT(c.done_calls, 1);
  coll_free(&c);
  /* empty payload and manifest are fine */
  troupe_event e = ev_make("", NULL, 0, NULL, 0);
  TT_EQ_INT(troupe_journal_append_sync(j, "empty", 0, &e, 1, NULL), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static void jc_batch_atomicity(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  troupe_event ev[5];
  for (int i = 0; i < 5; i++) ev[i] = ev_make("test.Event", "x", 1, NULL, 0);
  ev[3].manifest = NULL;                      /* one bad event */
  TT_EQ_INT(troupe_journal_append_sync(j, "p", 0, ev, 5, NULL), TROUPE_EINVAL);
  TT_EQ_INT(highest(j, "p"), 0);
  ev[3].manifest = "test.Event";
  TT_EQ_INT(append_n(j, "p", 0, 2, NULL, 0), 0);
  /* a conflicting batch stores nothing */
  uint64_t head = 0;
  TT_EQ_INT(troupe_journal_append_sync(j, "p", 1, ev, 5, &head),
            TROUPE_ECONFLICT);
  TT_EQ_INT(head, 2);
  TT_EQ_INT(highest(j, "p"), 2);
  /* a whole batch lands contiguously, also across pages */
  TT_EQ_INT(append_n(j, "p", 2, 50, NULL, 0), 0);
  coll c;
  TT_EQ_INT(replay(j, "p", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 52);
  for (size_t i = 3; i < c.n; i++) TT_EQ_INT(c.off[i], c.off[i - 1] + 1);
  coll_free(&c);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static void jc_conflict(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  TT_EQ_INT(append_n(j, "c", 0, 3, NULL, 0), 0);
  uint64_t head = 0;
  troupe_event e = ev_make("test.Event", "z", 1, NULL, 0);
  TT_EQ_INT(troupe_journal_append_sync(j, "c", 0, &e, 1, &head),
            TROUPE_ECONFLICT);
  TT_EQ_INT(head, 3);
  TT_ASSERT(strlen(troupe_errmsg()) > 0);
  TT_EQ_INT(troupe_journal_append_sync(j, "c", 7, &e, 1, &head),
            TROUPE_ECONFLICT);
  TT_EQ_INT(head, 3);
  /* explicit seq numbers are checked too */
  e.seq = 5;
  TT_EQ_INT(troupe_journal_append_sync(j, "c", 3, &e, 1, &head),
            TROUPE_EINVAL);
  e.seq = 4;
  TT_EQ_INT(troupe_journal_append_sync(j, "c", 3, &e, 1, &head), 0);
  TT_EQ_INT(head, 4);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* N threads race the same expected seq: exactly one wins each round, and
 * its payload is what is stored. */
#define RACERS 8
#define ROUNDS 20
typedef struct racer {
  troupe_journal *j;
  int idx;
  pthread_barrier_t *bar;
  int wins;
  int conflicts_ok;
  uint64_t won_round[ROUNDS];
} racer;

static void *race_main(void *arg) {
  racer *r = arg;
  for (int round = 0; round < ROUNDS; round++) {
    pthread_barrier_wait(r->bar);
    char pl[32];
    snprintf(pl, sizeof pl, "w%d-r%d", r->idx, round);
    troupe_event e = ev_make("test.Event", pl, strlen(pl), NULL, 0);
    uint64_t head = 0;
    int rc = troupe_journal_append_sync(r->j, "race", (uint64_t)round, &e, 1,
                                        &head);
    if (rc == 0 && head == (uint64_t)round + 1) r->won_round[r->wins++] = round;
    else if (rc == TROUPE_ECONFLICT && head == (uint64_t)round + 1)
      r->conflicts_ok++;
    pthread_barrier_wait(r->bar);
  }
  return NULL;
}

static void jc_concurrent_conflict(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, RACERS);
  racer r[RACERS];
  pthread_t t[RACERS];
  for (int i = 0; i < RACERS; i++) {
    memset(&r[i], 0, sizeof r[i]);
    r[i].j = j;
    r[i].idx = i;
    r[i].bar = &bar;
    pthread_create(&t[i], NULL, race_main, &r[i]);
  }
  for (int i = 0; i < RACERS; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&bar);
  int wins = 0, conflicts = 0;
  char winner[ROUNDS][32];
  memset(winner, 0, sizeof winner);
  for (int i = 0; i < RACERS; i++) {
    wins += r[i].wins;
    conflicts += r[i].conflicts_ok;
    for (int k = 0; k < r[i].wins; k++)
      snprintf(winner[r[i].won_round[k]], 32, "w%d-r%d", i,
               (int)r[i].won_round[k]);
  }
  TT_EQ_INT(wins, ROUNDS);
  TT_EQ_INT(conflicts, ROUNDS * (RACERS - 1));
  coll c;
  TT_EQ_INT(replay(j, "race", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, ROUNDS);
  for (int k = 0; k < ROUNDS; k++) TT_EQ_STR(c.payload[k], winner[k]);
  coll_free(&c);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static void jc_paging(void) {
  troupe_store_options o = opts();
  o.page_size = 16;
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(fresh(), &o, &j), 0);
  for (uint64_t k = 0; k < 300; k += 50)
    TT_EQ_INT(append_n(j, "pg", k, 50, NULL, 0), 0);
  coll c;
  TT_EQ_INT(replay(j, "pg", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 300);
  TT_ASSERT(c.max_page <= 16);
  TT_ASSERT(c.calls >= 300 / 16);
  TT_EQ_INT(c.done_calls, 1);
  TT_EQ_INT(c.bad, 0);
  for (size_t i = 0; i < c.n; i++) TT_EQ_INT(c.seq[i], i + 1);
  coll_free(&c);
  /* a range with a max */
  TT_EQ_INT(replay(j, "pg", 100, 250, 50, &c), 0);
  TT_EQ_INT(c.n, 50);
  TT_EQ_INT(c.seq[0], 100);
  TT_EQ_INT(c.seq[49], 149);
  TT_EQ_INT(c.done_calls, 1);
  coll_free(&c);
  TT_EQ_INT(replay(j, "pg", 290, 1000, 0, &c), 0);
  TT_EQ_INT(c.n, 11);
  coll_free(&c);
  TT_EQ_INT(replay(j, "pg", 301, 1000, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  TT_EQ_INT(c.done_calls, 1);
  coll_free(&c);
  /* the reader stops after two pages: no more calls */
  memset(&c, 0, sizeof c);
  c.stop_after_calls = 2;
  TT_EQ_INT(troupe_journal_replay_sync(j, "pg", 1, UINT64_MAX, 0, coll_cb, &c),
            0);
  TT_EQ_INT(c.calls, 2);
  TT_EQ_INT(c.n, 32);
  coll_free(&c);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static void jc_delete(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  const char *tags[] = {"d"};
  TT_EQ_INT(append_n(j, "del", 0, 10, tags, 1), 0);
  TT_EQ_INT(troupe_journal_delete_to_sync(j, "del", 4), 0);
  coll c;
  TT_EQ_INT(replay(j, "del", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 6);
  TT_EQ_INT(c.seq[0], 5);
  coll_free(&c);
  TT_EQ_INT(by_tag(j, "d", 0, 0, &c), 0);
  TT_EQ_INT(c.n, 6);
  TT_EQ_INT(c.seq[0], 5);
  coll_free(&c);
  TT_EQ_INT(highest(j, "del"), 10);
  /* deleting below the mark is a no-op; beyond the head clamps */
  TT_EQ_INT(troupe_journal_delete_to_sync(j, "del", 2), 0);
  TT_EQ_INT(troupe_journal_delete_to_sync(j, "del", 1000), 0);
  TT_EQ_INT(replay(j, "del", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  coll_free(&c);
  TT_EQ_INT(highest(j, "del"), 10);
  /* the next append still continues from the highest */
  TT_EQ_INT(append_n(j, "del", 0, 1, NULL, 0), TROUPE_ECONFLICT);
  TT_EQ_INT(append_n(j, "del", 10, 2, NULL, 0), 0);
  TT_EQ_INT(replay(j, "del", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 2);
  TT_EQ_INT(c.seq[0], 11);
  coll_free(&c);
  TT_EQ_INT(highest(j, "del"), 12);
  TT_EQ_INT(troupe_journal_delete_to_sync(j, "unknown", 5), 0);
  TT_EQ_INT(highest(j, "unknown"), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static void jc_tags(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  const char *red[] = {"red"}, *both[] = {"red", "blue"}, *blue[] = {"blue"};
  TT_EQ_INT(append_n(j, "x", 0, 2, red, 1), 0);
  TT_EQ_INT(append_n(j, "y", 0, 3, both, 2), 0);
  TT_EQ_INT(append_n(j, "x", 2, 1, blue, 1), 0);
  TT_EQ_INT(append_n(j, "z", 0, 1, NULL, 0), 0);
  coll c;
  TT_EQ_INT(by_tag(j, "red", 0, 0, &c), 0);
  TT_EQ_INT(c.n, 5);
  TT_EQ_STR(c.pid[0], "x");
  TT_EQ_STR(c.pid[2], "y");
  TT_EQ_STR(c.payload[4], "y:3");
  for (size_t i = 1; i < c.n; i++) TT_ASSERT(c.off[i] > c.off[i - 1]);
  uint64_t third = c.off[2];
  coll_free(&c);
  TT_EQ_INT(by_tag(j, "red", third, 0, &c), 0);
  TT_EQ_INT(c.n, 2);
  coll_free(&c);
  TT_EQ_INT(by_tag(j, "red", 0, 2, &c), 0);
  TT_EQ_INT(c.n, 2);
  coll_free(&c);
  TT_EQ_INT(by_tag(j, "blue", 0, 0, &c), 0);
  TT_EQ_INT(c.n, 4);
  TT_EQ_STR(c.payload[3], "x:3");
  coll_free(&c);
  TT_EQ_INT(by_tag(j, "green", 0, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  TT_EQ_INT(c.done_calls, 1);
  coll_free(&c);
  /* a tag that prefixes another is not confused with it */
  const char *re[] = {"re"};
  TT_EQ_INT(append_n(j, "w", 0, 1, re, 1), 0);
  TT_EQ_INT(by_tag(j, "re", 0, 0, &c), 0);
  TT_EQ_INT(c.n, 1);
  coll_free(&c);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* --- events by tag under concurrent writers ------------------------------ */

#define TW_WRITERS 4
#define TW_EVENTS 300
typedef struct tag_writer {
  troupe_journal *j;
  int idx;
  int rc;
} tag_writer;

static void *tag_writer_main(void *arg) {
  tag_writer *w = arg;
  char pid[16];
  snprintf(pid, sizeof pid, "tw%d", w->idx);
  const char *tags[] = {"all"};
  uint64_t seq = 0;
  while (seq < TW_EVENTS) {
    size_t n = 1 + (seq * 7 + (uint64_t)w->idx) % 5;
    if (seq + n > TW_EVENTS) n = TW_EVENTS - seq;
    int rc = append_n(w->j, pid, seq, n, tags, 1);
    if (rc < 0) {
      w->rc = rc;
      return NULL;
    }
    seq += n;
  }
  return NULL;
}

typedef struct live {
  atomic_uint_fast64_t last, count;
  atomic_int bad;
} live;

static void live_cb(const troupe_event *ev, size_t n, void *data) {
  live *l = data;
  for (size_t i = 0; i < n; i++) {
    if (ev[i].offset != atomic_load(&l->last) + 1) atomic_fetch_add(&l->bad, 1);
    atomic_store(&l->last, ev[i].offset);
    atomic_fetch_add(&l->count, 1);
  }
}

typedef struct follower {
  coll c;
  uint64_t last;
  int gaps;
} follower;

static int follow_cb(int status, const troupe_event *ev, size_t n, int done,
                     void *data) {
  follower *f = data;
  if (status < 0) {
    f->gaps++;
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (ev[i].offset != f->last + 1) f->gaps++;
    f->last = ev[i].offset;
  }
  (void)done;
  return 0;
}

static void jc_by_tag_concurrent(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  live l;
  atomic_init(&l.last, 0);
  atomic_init(&l.count, 0);
  atomic_init(&l.bad, 0);
  troupe_journal_sub *sub = NULL;
  TT_EQ_INT(troupe_journal_subscribe(j, "all", live_cb, &l, &sub), 0);
  tag_writer w[TW_WRITERS];
  pthread_t t[TW_WRITERS];
  for (int i = 0; i < TW_WRITERS; i++) {
    w[i] = (tag_writer){j, i, 0};
    pthread_create(&t[i], NULL, tag_writer_main, &w[i]);
  }
  /* a polling reader following the tag while writers run must never see
   * a gap: every event carries the tag, so offsets go 1, 2, 3, ... */
  follower f;
  memset(&f, 0, sizeof f);
  uint64_t total = TW_WRITERS * TW_EVENTS, dl = tt_now_ms() + 20000;
  while (f.last < total && tt_now_ms() < dl)
    TT_EQ_INT(troupe_journal_by_tag_sync(j, "all", f.last, 0, follow_cb, &f),
              0);
  for (int i = 0; i < TW_WRITERS; i++) {
    pthread_join(t[i], NULL);
    TT_EQ_INT(w[i].rc, 0);
  }
  TT_EQ_INT(f.gaps, 0);
  TT_EQ_INT(f.last, total);
  coll c;
  TT_EQ_INT(by_tag(j, "all", 0, 0, &c), 0);
  TT_EQ_INT(c.n, total);
  uint64_t next_seq[TW_WRITERS] = {0};
  for (size_t i = 0; i < c.n; i++) {
    TT_EQ_INT(c.off[i], i + 1);
    int wi = c.pid[i][2] - '0';
    TT_EQ_INT(c.seq[i], ++next_seq[wi]);
  }
  coll_free(&c);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&l.count) == total, 5000));
  TT_EQ_INT(atomic_load(&l.bad), 0);
  troupe_journal_unsubscribe(sub);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* --- events by slice ------------------------------------------------------ */

static atomic_int cb_runs;
static int never_events(int s, const troupe_event *e, size_t n, int done,
                        void *d);

static int by_slice(troupe_journal *j, unsigned lo, unsigned hi,
                    uint64_t after, uint64_t max, coll *c) {
  memset(c, 0, sizeof *c);
  return troupe_journal_by_slice_sync(j, lo, hi, after, max, coll_cb, c);
}

/* Fill ids[0..n) with distinct ids "<prefix><k>" whose slices are pairwise
 * different (slices[] gets them). */
static void ids_in_slices(const char *prefix, int n, char ids[][24],
                          int *slices) {
  int k = 0;
  for (int found = 0; found < n; k++) {
    char id[24];
    snprintf(id, sizeof id, "%s%d", prefix, k);
    int sl = troupe_journal_slice_of(id), dup = 0;
    for (int i = 0; i < found; i++) dup |= slices[i] == sl;
    if (dup) continue;
    snprintf(ids[found], 24, "%s", id);
    slices[found++] = sl;
  }
}

/* The slice of an id is stored by every backend: it must never change. */
static void jc_slice_of(void) {
  const char *ids[] = {"a", "account-17", "x/y/z", "\xc3\xa9t\xc3\xa9"};
  for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
    uint64_t h = 1469598103934665603ull;        /* FNV-1a, then h ^ h>>29 */
    for (const char *p = ids[i]; *p; p++) {
      h ^= (unsigned char)*p;
      h *= 1099511628211ull;
    }
    h ^= h >> 29;
    TT_EQ_INT(troupe_journal_slice_of(ids[i]),
              (int)(h & (TROUPE_JOURNAL_SLICES - 1)));
  }
  TT_EQ_INT(troupe_journal_slice_of(NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_slice_of(""), TROUPE_EINVAL);
}

static void jc_by_slice(void) {
  troupe_store_options o = opts();
  o.page_size = 4;
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(fresh(), &o, &j), 0);
  coll c;
  /* an empty store: one empty, done call */
  TT_EQ_INT(by_slice(j, 0, TROUPE_JOURNAL_SLICES - 1, 0, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  TT_EQ_INT(c.done_calls, 1);
  coll_free(&c);
  char ids[4][24];
  int sl[4];
  ids_in_slices("sl-", 4, ids, sl);
  /* interleaved appends over four ids in four slices */
  uint64_t head[4] = {0};
  const int plan[][2] = {{0, 2}, {1, 1}, {0, 1}, {2, 3}, {1, 2}, {3, 1},
                         {2, 1}, {0, 4}, {3, 2}, {1, 1}};
  size_t total = 0;
  for (size_t i = 0; i < sizeof plan / sizeof *plan; i++) {
    int w = plan[i][0], n = plan[i][1];
    TT_EQ_INT(append_n(j, ids[w], head[w], (size_t)n, NULL, 0), 0);
    head[w] += (uint64_t)n;
    total += (size_t)n;
  }
  /* the whole journal, in offset order across ids */
  coll all;
  TT_EQ_INT(by_slice(j, 0, TROUPE_JOURNAL_SLICES - 1, 0, 0, &all), 0);
  TT_EQ_INT(all.n, total);
  TT_EQ_INT(all.bad, 0);
  TT_EQ_INT(all.done_calls, 1);
  TT_ASSERT(all.max_page <= 4);
  TT_ASSERT(all.calls >= total / 4);
  uint64_t next[4] = {0};
  for (size_t i = 0; i < all.n; i++) {
    TT_EQ_INT(all.off[i], i + 1);                 /* gap-free, from 1 */
    int w = -1;
    for (int k = 0; k < 4; k++)
      if (strcmp(all.pid[i], ids[k]) == 0) w = k;
    TT_ASSERT(w >= 0);
    TT_EQ_INT(all.seq[i], ++next[w]);
    char want[48];
    snprintf(want, sizeof want, "%s:%" PRIu64, ids[w], all.seq[i]);
    TT_EQ_STR(all.payload[i], want);
  }
  /* the first events follow the plan: id0 x2, id1, id0 */
  TT_EQ_STR(all.pid[0], ids[0]);
  TT_EQ_STR(all.pid[2], ids[1]);
  TT_EQ_STR(all.pid[3], ids[0]);
  /* one slice, and ranges: exactly the events of ids in range, in order */
  for (int k = 0; k < 4; k++) {
    TT_EQ_INT(by_slice(j, (unsigned)sl[k], (unsigned)sl[k], 0, 0, &c), 0);
    TT_EQ_INT(c.n, head[k]);
    for (size_t i = 0; i < c.n; i++) {
      TT_EQ_STR(c.pid[i], ids[k]);
      TT_EQ_INT(c.seq[i], i + 1);
    }
    coll_free(&c);
    unsigned lo = (unsigned)sl[k], hi = TROUPE_JOURNAL_SLICES - 1;
    if (k & 1) {
      hi = lo;
      lo = 0;
    }
    TT_EQ_INT(by_slice(j, lo, hi, 0, 0, &c), 0);
    size_t want = 0;
    for (size_t i = 0; i < all.n; i++) {
      unsigned s = (unsigned)troupe_journal_slice_of(all.pid[i]);
      if (s < lo || s > hi) continue;
      TT_ASSERT(want < c.n);
      TT_EQ_INT(c.off[want], all.off[i]);
      want++;
    }
    TT_EQ_INT(c.n, want);
    coll_free(&c);
  }
  /* a slice with no ids */
  unsigned empty = 0;
  for (int k = 0; k < 4; k++)
    if ((unsigned)sl[k] == empty) {
      empty++;
      k = -1;
    }
  TT_EQ_INT(by_slice(j, empty, empty, 0, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  TT_EQ_INT(c.done_calls, 1);
  coll_free(&c);
  /* after_offset and max */
  TT_EQ_INT(by_slice(j, 0, TROUPE_JOURNAL_SLICES - 1, 5, 0, &c), 0);
  TT_EQ_INT(c.n, total - 5);
  TT_EQ_INT(c.off[0], 6);
  coll_free(&c);
  TT_EQ_INT(by_slice(j, 0, TROUPE_JOURNAL_SLICES - 1, 5, 3, &c), 0);
  TT_EQ_INT(c.n, 3);
  TT_EQ_INT(c.off[2], 8);
  TT_EQ_INT(c.done_calls, 1);
  coll_free(&c);
  TT_EQ_INT(by_slice(j, 0, TROUPE_JOURNAL_SLICES - 1, total, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  coll_free(&c);
  TT_EQ_INT(by_slice(j, 0, TROUPE_JOURNAL_SLICES - 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  TT_EQ_INT(c.done_calls, 1);
  coll_free(&c);
  /* max counts matching events only: one slice, continued page by page */
  uint64_t last = 0;
  size_t got = 0;
  for (int round = 0; round < 20; round++) {
    TT_EQ_INT(by_slice(j, (unsigned)sl[0], (unsigned)sl[0], last, 3, &c), 0);
    if (c.n == 0) {
      coll_free(&c);
      break;
    }
    TT_ASSERT(c.n <= 3);
    for (size_t i = 0; i < c.n; i++) {
      TT_EQ_STR(c.pid[i], ids[0]);
      TT_EQ_INT(c.seq[i], got + i + 1);
      TT_ASSERT(c.off[i] > last);
    }
    got += c.n;
    last = c.off[c.n - 1];
    coll_free(&c);
  }
  TT_EQ_INT(got, head[0]);
  /* the reader stops after two pages: no more calls */
  memset(&c, 0, sizeof c);
  c.stop_after_calls = 2;
  TT_EQ_INT(troupe_journal_by_slice_sync(j, 0, TROUPE_JOURNAL_SLICES - 1, 0,
                                         0, coll_cb, &c), 0);
  TT_EQ_INT(c.calls, 2);
  TT_EQ_INT(c.n, 8);
  coll_free(&c);
  /* deleted events are skipped; later ones stay in order */
  TT_EQ_INT(troupe_journal_delete_to_sync(j, ids[0], 3), 0);
  TT_EQ_INT(troupe_journal_delete_to_sync(j, ids[2], head[2]), 0);
  TT_EQ_INT(by_slice(j, 0, TROUPE_JOURNAL_SLICES - 1, 0, 0, &c), 0);
  TT_EQ_INT(c.n, total - 3 - head[2]);
  for (size_t i = 0; i < c.n; i++) {
    if (i) TT_ASSERT(c.off[i] > c.off[i - 1]);
    TT_ASSERT(strcmp(c.pid[i], ids[2]) != 0);
    if (strcmp(c.pid[i], ids[0]) == 0) TT_ASSERT(c.seq[i] > 3);
  }
  coll_free(&c);
  TT_EQ_INT(by_slice(j, (unsigned)sl[0], (unsigned)sl[0], 0, 1, &c), 0);
  TT_EQ_INT(c.n, 1);
  TT_EQ_INT(c.seq[0], 4);
  coll_free(&c);
  TT_EQ_INT(by_slice(j, (unsigned)sl[2], (unsigned)sl[2], 0, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  coll_free(&c);
  /* appends after a delete come after everything else */
  TT_EQ_INT(append_n(j, ids[2], head[2], 1, NULL, 0), 0);
  TT_EQ_INT(by_slice(j, (unsigned)sl[2], (unsigned)sl[2], 0, 0, &c), 0);
  TT_EQ_INT(c.n, 1);
  TT_EQ_INT(c.off[0], total + 1);
  TT_EQ_INT(c.seq[0], head[2] + 1);
  coll_free(&c);
  coll_free(&all);
  /* bad ranges: refused, the callback never runs */
  atomic_store(&cb_runs, 0);
  TT_EQ_INT(troupe_journal_by_slice(j, 5, 4, 0, 0, never_events, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_by_slice(j, 0, TROUPE_JOURNAL_SLICES, 0, 0,
                                    never_events, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_by_slice(j, TROUPE_JOURNAL_SLICES,
                                    TROUPE_JOURNAL_SLICES, 0, 0, never_events,
                                    NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_by_slice(j, 0, 1, 0, 0, NULL, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_by_slice(NULL, 0, 1, 0, 0, never_events, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_by_slice_sync(j, 3, 2, 0, 0, never_events, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(atomic_load(&cb_runs), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* Readers continuing from their last offset while writers append: the
 * whole-journal reader sees 1, 2, 3, ... without a gap; a reader of half
 * the slices sees strictly increasing offsets and, at the end, exactly the
 * events of its ids. */
typedef struct slice_writer {
  troupe_journal *j;
  char id[24];
  int rc;
} slice_writer;

static void *slice_writer_main(void *arg) {
  slice_writer *w = arg;
  uint64_t seq = 0;
  while (seq < TW_EVENTS) {
    size_t n = 1 + (seq * 5 + (uint64_t)w->id[3]) % 4;
    if (seq + n > TW_EVENTS) n = TW_EVENTS - seq;
    int rc = append_n(w->j, w->id, seq, n, NULL, 0);
    if (rc < 0) {
      w->rc = rc;
      return NULL;
    }
    seq += n;
  }
  return NULL;
}

typedef struct slice_follower {
  uint64_t last, count;
  int gaps, not_increasing, out_of_range;
  unsigned lo, hi;
} slice_follower;

static int slice_follow_cb(int status, const troupe_event *ev, size_t n,
                           int done, void *data) {
  slice_follower *f = data;
  (void)done;
  if (status < 0) {
    f->gaps++;
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (f->lo == 0 && f->hi == TROUPE_JOURNAL_SLICES - 1 &&
        ev[i].offset != f->last + 1)
      f->gaps++;
    if (ev[i].offset <= f->last) f->not_increasing++;
    unsigned s = (unsigned)troupe_journal_slice_of(ev[i].persistence_id);
    if (s < f->lo || s > f->hi) f->out_of_range++;
    f->last = ev[i].offset;
    f->count++;
  }
  return 0;
}

static void jc_by_slice_concurrent(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  char ids[TW_WRITERS][24];
  int sl[TW_WRITERS];
  ids_in_slices("cw-", TW_WRITERS, ids, sl);
  /* the half of the slices holding the two smallest of the writers' */
  int sorted[TW_WRITERS];
  memcpy(sorted, sl, sizeof sorted);
  for (int a = 0; a < TW_WRITERS; a++)
    for (int b = a + 1; b < TW_WRITERS; b++)
      if (sorted[b] < sorted[a]) {
        int t = sorted[a];
        sorted[a] = sorted[b];
        sorted[b] = t;
      }
  unsigned half_hi = (unsigned)sorted[1];
  slice_writer w[TW_WRITERS];
  pthread_t t[TW_WRITERS];
  for (int i = 0; i < TW_WRITERS; i++) {
    w[i].j = j;
    w[i].rc = 0;
    memcpy(w[i].id, ids[i], sizeof w[i].id);
    pthread_create(&t[i], NULL, slice_writer_main, &w[i]);
  }
  slice_follower all, half;
  memset(&all, 0, sizeof all);
  memset(&half, 0, sizeof half);
  all.hi = TROUPE_JOURNAL_SLICES - 1;
  half.hi = half_hi;
  uint64_t total = TW_WRITERS * TW_EVENTS, dl = tt_now_ms() + 20000;
  while ((all.last < total || half.count < 2 * TW_EVENTS) &&
         tt_now_ms() < dl) {
    TT_EQ_INT(troupe_journal_by_slice_sync(j, 0, TROUPE_JOURNAL_SLICES - 1,
                                           all.last, 0, slice_follow_cb,
                                           &all), 0);
    TT_EQ_INT(troupe_journal_by_slice_sync(j, 0, half_hi, half.last, 7,
                                           slice_follow_cb, &half), 0);
  }
  for (int i = 0; i < TW_WRITERS; i++) {
    pthread_join(t[i], NULL);
    TT_EQ_INT(w[i].rc, 0);
  }
  TT_EQ_INT(all.gaps, 0);
  TT_EQ_INT(all.not_increasing, 0);
  TT_EQ_INT(all.last, total);
  TT_EQ_INT(all.count, total);
  TT_EQ_INT(half.not_increasing, 0);
  TT_EQ_INT(half.out_of_range, 0);
  TT_EQ_INT(half.count, 2 * TW_EVENTS);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* --- persistence ids ------------------------------------------------------ */

typedef struct idlist {
  char *ids[128];
  size_t n;
  int calls;
} idlist;

static void ids_cb(int status, const char *const *ids, size_t n, void *data) {
  idlist *l = data;
  l->calls++;
  if (status < 0) return;
  for (size_t i = 0; i < n && l->n < 128; i++) l->ids[l->n++] = strdup(ids[i]);
}

static void idlist_free(idlist *l) {
  for (size_t i = 0; i < l->n; i++) free(l->ids[i]);
  memset(l, 0, sizeof *l);
}

static void jc_list_ids(void) {
  const char *spec = fresh();
  troupe_journal *j = open_j(spec);
  TT_ASSERT(j);
  for (int i = 24; i >= 0; i--) {
    char pid[16];
    snprintf(pid, sizeof pid, "id-%02d", i);
    TT_EQ_INT(append_n(j, pid, 0, 1, NULL, 0), 0);
  }
  TT_EQ_INT(troupe_journal_delete_to_sync(j, "id-03", 1), 0);
  /* an id with only a snapshot is not a journal id */
  troupe_store_options o = opts();
  troupe_snapshot_store *ss = NULL;
  TT_EQ_INT(troupe_snapshot_store_open(spec, &o, &ss), 0);
  troupe_snapshot sn = {"id-snaponly", 1, 5, "s", 1, "x", 1};
  TT_EQ_INT(troupe_snapshot_save_sync(ss, &sn), 0);
  idlist l;
  memset(&l, 0, sizeof l);
  TT_EQ_INT(troupe_journal_list_ids_sync(j, NULL, 10, ids_cb, &l), 0);
  TT_EQ_INT(l.n, 10);
  TT_EQ_STR(l.ids[0], "id-00");
  TT_EQ_STR(l.ids[3], "id-03");
  TT_EQ_STR(l.ids[9], "id-09");
  char after[32];
  snprintf(after, sizeof after, "%s", l.ids[9]);
  TT_EQ_INT(troupe_journal_list_ids_sync(j, after, 10, ids_cb, &l), 0);
  TT_EQ_INT(l.n, 20);
  TT_EQ_STR(l.ids[10], "id-10");
  snprintf(after, sizeof after, "%s", l.ids[19]);
  TT_EQ_INT(troupe_journal_list_ids_sync(j, after, 10, ids_cb, &l), 0);
  TT_EQ_INT(l.n, 25);
  TT_EQ_STR(l.ids[24], "id-24");
  TT_EQ_INT(troupe_journal_list_ids_sync(j, "id-24", 10, ids_cb, &l), 0);
  TT_EQ_INT(l.n, 25);
  idlist_free(&l);
  TT_EQ_INT(troupe_journal_list_ids_sync(j, "id-1", 3, ids_cb, &l), 0);
  TT_EQ_INT(l.n, 3);
  TT_EQ_STR(l.ids[0], "id-10");
  idlist_free(&l);
  TT_EQ_INT(troupe_snapshot_store_close(ss), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* --- snapshots ------------------------------------------------------------ */

static void jc_snapshots(void) {
  troupe_store_options o = opts();
  troupe_snapshot_store *s = NULL;
  TT_EQ_INT(troupe_snapshot_store_open(fresh(), &o, &s), 0);
  troupe_snapshot *got = (troupe_snapshot *)1;
  TT_EQ_INT(troupe_snapshot_load_sync(s, "e", NULL, &got), 0);
  TT_ASSERT(got == NULL);
  for (int i = 1; i <= 3; i++) {
    char st[16];
    snprintf(st, sizeof st, "state%d", i * 5);
    troupe_snapshot sn = {"e", (uint64_t)i * 5, i * 100, "acct.State", 2, st,
                          strlen(st)};
    TT_EQ_INT(troupe_snapshot_save_sync(s, &sn), 0);
  }
  TT_EQ_INT(troupe_snapshot_load_sync(s, "e", NULL, &got), 0);
  TT_ASSERT(got);
  TT_EQ_INT(got->seq, 15);
  TT_EQ_INT(got->timestamp_ms, 300);
  TT_EQ_INT(got->version, 2);
  TT_EQ_STR(got->manifest, "acct.State");
  TT_EQ_STR(got->persistence_id, "e");
  TT_ASSERT(got->state_len == 7 && memcmp(got->state, "state15", 7) == 0);
  troupe_snapshot_free(got);
  troupe_snapshot_criteria c = troupe_snapshot_criteria_all();
  c.max_seq = 12;
  TT_EQ_INT(troupe_snapshot_load_sync(s, "e", &c, &got), 0);
  TT_ASSERT(got && got->seq == 10);
  troupe_snapshot_free(got);
  c = troupe_snapshot_criteria_all();
  c.max_timestamp = 150;
  TT_EQ_INT(troupe_snapshot_load_sync(s, "e", &c, &got), 0);
  TT_ASSERT(got && got->seq == 5);
  troupe_snapshot_free(got);
  c.max_seq = 4;
  TT_EQ_INT(troupe_snapshot_load_sync(s, "e", &c, &got), 0);
  TT_ASSERT(got == NULL);
  /* saving at the same seq replaces */
  troupe_snapshot sn = {"e", 10, 210, "acct.State", 2, "again", 5};
  TT_EQ_INT(troupe_snapshot_save_sync(s, &sn), 0);
  c = troupe_snapshot_criteria_all();
  c.max_seq = 10;
  TT_EQ_INT(troupe_snapshot_load_sync(s, "e", &c, &got), 0);
  TT_ASSERT(got && got->state_len == 5 && got->timestamp_ms == 210);
  troupe_snapshot_free(got);
  /* delete by criteria */
  uint64_t n = 0;
  c = troupe_snapshot_criteria_all();
  c.max_seq = 5;
  TT_EQ_INT(troupe_snapshot_delete_sync(s, "e", &c, &n), 0);
  TT_EQ_INT(n, 1);
  c = troupe_snapshot_criteria_all();
  c.min_timestamp = 1000;
  TT_EQ_INT(troupe_snapshot_delete_sync(s, "e", &c, &n), 0);
  TT_EQ_INT(n, 0);
  /* retention */
  for (int i = 4; i <= 6; i++) {
    troupe_snapshot x = {"e", (uint64_t)i * 5, i * 100, "acct.State", 2, "s",
                         1};
    TT_EQ_INT(troupe_snapshot_save_sync(s, &x), 0);
  }
  TT_EQ_INT(troupe_snapshot_retain_sync(s, "e", 2, &n), 0);
  TT_EQ_INT(n, 3);                  /* 10, 15, 20 go; 25, 30 stay */
  c = troupe_snapshot_criteria_all();
  c.max_seq = 24;
  TT_EQ_INT(troupe_snapshot_load_sync(s, "e", &c, &got), 0);
  TT_ASSERT(got == NULL);
  TT_EQ_INT(troupe_snapshot_load_sync(s, "e", NULL, &got), 0);
  TT_ASSERT(got && got->seq == 30);
  troupe_snapshot_free(got);
  TT_EQ_INT(troupe_snapshot_delete_sync(s, "e", NULL, &n), 0);
  TT_EQ_INT(n, 2);
  TT_EQ_INT(troupe_snapshot_delete_sync(s, "nobody", NULL, &n), 0);
  TT_EQ_INT(n, 0);
  TT_EQ_INT(troupe_snapshot_store_close(s), 0);
}

/* --- durable state -------------------------------------------------------- */

typedef struct state_racer {
  troupe_state_store *s;
  int idx, won;
  pthread_barrier_t *bar;
} state_racer;

static void *state_race_main(void *arg) {
  state_racer *r = arg;
  char v[16];
  snprintf(v, sizeof v, "v%d", r->idx);
  troupe_state_record rec = {"racy", 0, 1, "m", 1, v, strlen(v)};
  pthread_barrier_wait(r->bar);
  uint64_t rev;
  r->won = troupe_state_upsert_sync(r->s, &rec, 0, &rev) == 0 && rev == 1;
  return NULL;
}

static void jc_durable_state(void) {
  troupe_store_options o = opts();
  troupe_state_store *s = NULL;
  TT_EQ_INT(troupe_state_store_open(fresh(), &o, &s), 0);
  troupe_state_record *got = (troupe_state_record *)1;
  TT_EQ_INT(troupe_state_get_sync(s, "acc", &got), 0);
  TT_ASSERT(got == NULL);
  troupe_state_record rec = {"acc", 0, 111, "bank.Account", 4, "100", 3};
  uint64_t rev = 0;
  TT_EQ_INT(troupe_state_upsert_sync(s, &rec, 0, &rev), 0);
  TT_EQ_INT(rev, 1);
  TT_EQ_INT(troupe_state_upsert_sync(s, &rec, 0, &rev), TROUPE_ECONFLICT);
  TT_EQ_INT(rev, 1);
  rec.value = "250";
  TT_EQ_INT(troupe_state_upsert_sync(s, &rec, 1, &rev), 0);
  TT_EQ_INT(rev, 2);
  TT_EQ_INT(troupe_state_upsert_sync(s, &rec, 5, &rev), TROUPE_ECONFLICT);
  TT_EQ_INT(rev, 2);
  TT_EQ_INT(troupe_state_get_sync(s, "acc", &got), 0);
  TT_ASSERT(got);
  TT_EQ_INT(got->revision, 2);
  TT_EQ_INT(got->version, 4);
  TT_EQ_INT(got->timestamp_ms, 111);
  TT_EQ_STR(got->manifest, "bank.Account");
  TT_EQ_STR(got->persistence_id, "acc");
  TT_ASSERT(got->value_len == 3 && memcmp(got->value, "250", 3) == 0);
  troupe_state_record_free(got);
  TT_EQ_INT(troupe_state_delete_sync(s, "acc", 1), TROUPE_ECONFLICT);
  TT_EQ_INT(troupe_state_delete_sync(s, "acc", 2), 0);
  TT_EQ_INT(troupe_state_get_sync(s, "acc", &got), 0);
  TT_ASSERT(got == NULL);
  TT_EQ_INT(troupe_state_delete_sync(s, "acc", 0), 0);
  TT_EQ_INT(troupe_state_upsert_sync(s, &rec, 0, &rev), 0);
  TT_EQ_INT(rev, 1);
  /* racing upserts on the same expected revision: one wins */
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, RACERS);
  state_racer r[RACERS];
  pthread_t t[RACERS];
  for (int i = 0; i < RACERS; i++) {
    r[i] = (state_racer){s, i, 0, &bar};
    pthread_create(&t[i], NULL, state_race_main, &r[i]);
  }
  int wins = 0, winner = -1;
  for (int i = 0; i < RACERS; i++) {
    pthread_join(t[i], NULL);
    if (r[i].won) {
      wins++;
      winner = i;
    }
  }
  pthread_barrier_destroy(&bar);
  TT_EQ_INT(wins, 1);
  TT_EQ_INT(troupe_state_get_sync(s, "racy", &got), 0);
  char want[16];
  snprintf(want, sizeof want, "v%d", winner);
  TT_ASSERT(got && got->value_len == strlen(want) &&
            memcmp(got->value, want, strlen(want)) == 0);
  troupe_state_record_free(got);
  TT_EQ_INT(troupe_state_store_close(s), 0);
}

/* --- sharing, subscriptions, close ---------------------------------------- */

static void jc_shared_spec(void) {
  const char *spec = fresh();
  troupe_journal *a = open_j(spec), *b = open_j(spec);
  TT_ASSERT(a && b);
  TT_EQ_INT(append_n(a, "s", 0, 2, NULL, 0), 0);
  TT_EQ_INT(highest(b, "s"), 2);
  TT_EQ_INT(troupe_journal_close(a), 0);
  TT_EQ_INT(append_n(b, "s", 2, 1, NULL, 0), 0);
  troupe_store_options o = opts();
  troupe_snapshot_store *ss = NULL;
  troupe_state_store *st = NULL;
  TT_EQ_INT(troupe_snapshot_store_open(spec, &o, &ss), 0);
  TT_EQ_INT(troupe_state_store_open(spec, &o, &st), 0);
  troupe_snapshot sn = {"s", 3, 1, "m", 1, "snap", 4};
  TT_EQ_INT(troupe_snapshot_save_sync(ss, &sn), 0);
  troupe_state_record rec = {"s", 0, 1, "m", 1, "st", 2};
  TT_EQ_INT(troupe_state_upsert_sync(st, &rec, 0, NULL), 0);
  TT_EQ_INT(troupe_journal_close(b), 0);
  TT_EQ_INT(troupe_snapshot_store_close(ss), 0);
  TT_EQ_INT(troupe_state_store_close(st), 0);
}

/* Writes of every kind submitted at once, so that they share groups
 * where a backend groups writes: each gets its own result, in order. */
typedef struct mixed {
  atomic_int done;
  int rc[8];
  uint64_t v[8];
} mixed;

static mixed *mixed_slot;
static void mixed_seq_cb(int status, uint64_t v, void *data) {
  int i = (int)(intptr_t)data;
  mixed_slot->rc[i] = status;
  mixed_slot->v[i] = v;
  atomic_fetch_add(&mixed_slot->done, 1);
}

static void jc_mixed_writes(void) {
  const char *spec = fresh();
  troupe_journal *j = open_j(spec);
  TT_ASSERT(j);
  troupe_store_options o = opts();
  troupe_snapshot_store *ss = NULL;
  troupe_state_store *st = NULL;
  TT_EQ_INT(troupe_snapshot_store_open(spec, &o, &ss), 0);
  TT_EQ_INT(troupe_state_store_open(spec, &o, &st), 0);
  troupe_event e = ev_make("test.Event", "x", 1, NULL, 0);
  troupe_snapshot sn = {"m", 1, 1, "m", 1, "snap", 4};
  troupe_state_record rec = {"m", 0, 1, "m", 1, "st", 2};
  for (int round = 0; round < 2; round++) {
    mixed m;
    memset(&m, 0, sizeof m);
    mixed_slot = &m;
    uint64_t h = (uint64_t)round * 2;
    /* round 1 also deletes: groups with a delete take another path */
    TT_EQ_INT(troupe_journal_append(j, "m", h, &e, 1, mixed_seq_cb,
                                    (void *)0), 0);
    sn.seq = h + 1;
    TT_EQ_INT(troupe_snapshot_save(ss, &sn, mixed_seq_cb, (void *)1), 0);
    TT_EQ_INT(troupe_state_upsert(st, &rec, (uint64_t)round, mixed_seq_cb,
                                  (void *)2), 0);
    TT_EQ_INT(troupe_journal_append(j, "m", h + 1, &e, 1, mixed_seq_cb,
                                    (void *)3), 0);
    TT_EQ_INT(troupe_journal_append(j, "m", h, &e, 1, mixed_seq_cb,
                                    (void *)4), 0);      /* stale */
    TT_EQ_INT(troupe_journal_append(j, "o", h, &e, 1, mixed_seq_cb,
                                    (void *)5), 0);
    int n = 6;
    if (round == 1)
      TT_EQ_INT(troupe_journal_delete_to(j, "o", 1, mixed_seq_cb,
                                         (void *)(intptr_t)n++), 0);
    TT_WAIT_UNTIL(atomic_load(&m.done) == n, 10000);
    TT_EQ_INT(m.rc[0], 0);
    TT_EQ_INT(m.v[0], h + 1);
    TT_EQ_INT(m.rc[1], 0);
    TT_EQ_INT(m.rc[2], 0);
    TT_EQ_INT(m.v[2], (uint64_t)round + 1);
    TT_EQ_INT(m.rc[3], 0);
    TT_EQ_INT(m.v[3], h + 2);
    TT_EQ_INT(m.rc[4], TROUPE_ECONFLICT);
    TT_EQ_INT(m.v[4], h + 2);
    TT_EQ_INT(m.rc[5], 0);
    TT_EQ_INT(m.v[5], h + 1);
    if (round == 1) {
      TT_EQ_INT(m.rc[6], 0);
      TT_EQ_INT(m.v[6], 1);
    }
    /* "o" has one event per round: its next append expects round + 1 */
    if (round == 0) {
      TT_EQ_INT(append_n(j, "o", 1, 1, NULL, 0), 0);
    }
  }
  TT_EQ_INT(highest(j, "m"), 4);
  TT_EQ_INT(highest(j, "o"), 3);
  troupe_snapshot_criteria all = troupe_snapshot_criteria_all();
  troupe_snapshot *got = NULL;
  TT_EQ_INT(troupe_snapshot_load_sync(ss, "m", &all, &got), 0);
  TT_ASSERT(got && got->seq == 3);
  troupe_snapshot_free(got);
  TT_EQ_INT(troupe_journal_close(j), 0);
  TT_EQ_INT(troupe_snapshot_store_close(ss), 0);
  TT_EQ_INT(troupe_state_store_close(st), 0);
}

typedef struct notes {
  atomic_int calls, events;
  atomic_int wrong_thread_rc;
} notes;

static void note_cb(const troupe_event *ev, size_t n, void *data) {
  notes *x = data;
  atomic_fetch_add(&x->calls, 1);
  atomic_fetch_add(&x->events, (int)n);
  (void)ev;
}

static void jc_subscribe(void) {
  troupe_journal *j = open_j(fresh());
  TT_ASSERT(j);
  notes all, red;
  memset(&all, 0, sizeof all);
  memset(&red, 0, sizeof red);
  troupe_journal_sub *s1 = NULL, *s2 = NULL;
  TT_EQ_INT(troupe_journal_subscribe(j, NULL, note_cb, &all, &s1), 0);
  TT_EQ_INT(troupe_journal_subscribe(j, "red", note_cb, &red, &s2), 0);
  const char *tags[] = {"red"};
  TT_EQ_INT(append_n(j, "n", 0, 3, NULL, 0), 0);
  TT_EQ_INT(append_n(j, "n", 3, 2, tags, 1), 0);
  /* notification comes before the append's completion */
  TT_EQ_INT(atomic_load(&all.calls), 2);
  TT_EQ_INT(atomic_load(&all.events), 5);
  TT_EQ_INT(atomic_load(&red.calls), 1);
  TT_EQ_INT(atomic_load(&red.events), 2);
  TT_EQ_INT(append_n(j, "n", 0, 1, NULL, 0), TROUPE_ECONFLICT);
  TT_EQ_INT(atomic_load(&all.calls), 2);
  troupe_journal_unsubscribe(s1);
  TT_EQ_INT(append_n(j, "n", 5, 1, tags, 1), 0);
  TT_EQ_INT(atomic_load(&all.calls), 2);
  TT_EQ_INT(atomic_load(&red.calls), 2);
  /* s2 is dropped by close */
  TT_EQ_INT(troupe_journal_close(j), 0);
}

typedef struct drain {
  atomic_int done, ok;
} drain;

static void drain_cb(int status, uint64_t head, void *data) {
  drain *d = data;
  if (status == 0) atomic_fetch_add(&d->ok, 1);
  atomic_fetch_add(&d->done, 1);
  (void)head;
}

static void jc_close_drains(void) {
  const char *spec = fresh();
  troupe_journal *j = open_j(spec);
  TT_ASSERT(j);
  drain d;
  atomic_init(&d.done, 0);
  atomic_init(&d.ok, 0);
  troupe_event e = ev_make("test.Event", "q", 1, NULL, 0);
  for (int i = 0; i < 200; i++)
    TT_EQ_INT(troupe_journal_append(j, "q", (uint64_t)i, &e, 1, drain_cb, &d),
              0);
  TT_EQ_INT(troupe_journal_close(j), 0);
  TT_EQ_INT(atomic_load(&d.done), 200);
  TT_EQ_INT(atomic_load(&d.ok), 200);
}

/* --- bad input ------------------------------------------------------------ */

static atomic_int cb_runs;
static void never_append(int s, uint64_t h, void *d) {
  (void)s; (void)h; (void)d;
  atomic_fetch_add(&cb_runs, 1);
}
static int never_events(int s, const troupe_event *e, size_t n, int done,
                        void *d) {
  (void)s; (void)e; (void)n; (void)done; (void)d;
  atomic_fetch_add(&cb_runs, 1);
  return 0;
}
static void never_seq(int s, uint64_t v, void *d) {
  (void)s; (void)v; (void)d;
  atomic_fetch_add(&cb_runs, 1);
}
static void never_ids(int s, const char *const *i, size_t n, void *d) {
  (void)s; (void)i; (void)n; (void)d;
  atomic_fetch_add(&cb_runs, 1);
}
static void never_done(int s, uint64_t c, void *d) {
  (void)s; (void)c; (void)d;
  atomic_fetch_add(&cb_runs, 1);
}
static void never_rev(int s, uint64_t c, void *d) {
  (void)s; (void)c; (void)d;
  atomic_fetch_add(&cb_runs, 1);
}

typedef struct in_cb {
  troupe_journal *j;
  atomic_int rc_sync, rc_close, done;
} in_cb;

static void sync_inside_cb(int status, uint64_t head, void *data) {
  in_cb *x = data;
  uint64_t h;
  atomic_store(&x->rc_sync, troupe_journal_highest_sync(x->j, "b", &h));
  atomic_store(&x->rc_close, troupe_journal_close(x->j));
  atomic_store(&x->done, 1);
  (void)status; (void)head;
}

static void jc_bad_input(void) {
  troupe_store_options o = opts();
  o.max_payload = 1024;
  troupe_journal *j = NULL;
  const char *spec = fresh();
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  atomic_store(&cb_runs, 0);
  troupe_event e = ev_make("test.Event", "p", 1, NULL, 0);
  char longid[TROUPE_JOURNAL_MAX_ID_LEN + 2];
  memset(longid, 'x', sizeof longid - 1);
  longid[sizeof longid - 1] = 0;

  TT_EQ_INT(troupe_journal_append(NULL, "b", 0, &e, 1, never_append, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_append(j, NULL, 0, &e, 1, never_append, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_append(j, "", 0, &e, 1, never_append, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_append(j, longid, 0, &e, 1, never_append, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &e, 0, never_append, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, NULL, 1, never_append, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &e, 1, NULL, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_append(j, "b", UINT64_MAX, &e, 1, never_append,
                                  NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &e, TROUPE_JOURNAL_MAX_BATCH + 1,
                                  never_append, NULL), TROUPE_EINVAL);
  troupe_event bad = e;
  bad.persistence_id = "other";
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &bad, 1, never_append, NULL),
            TROUPE_EINVAL);
  bad = e;
  bad.payload = NULL;
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &bad, 1, never_append, NULL),
            TROUPE_EINVAL);
  char big[2048];
  memset(big, 'B', sizeof big);
  bad = ev_make("test.Event", big, sizeof big, NULL, 0);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &bad, 1, never_append, NULL),
            TROUPE_EINVAL);
  TT_ASSERT(strstr(troupe_errmsg(), "max_payload") != NULL);
  const char *empty_tag[] = {""}, *null_tag[] = {NULL};
  bad = ev_make("test.Event", "p", 1, empty_tag, 1);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &bad, 1, never_append, NULL),
            TROUPE_EINVAL);
  bad = ev_make("test.Event", "p", 1, null_tag, 1);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &bad, 1, never_append, NULL),
            TROUPE_EINVAL);
  bad = ev_make("test.Event", "p", 1, NULL, 3);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &bad, 1, never_append, NULL),
            TROUPE_EINVAL);
  bad = ev_make("test.Event", "p", 1, empty_tag, TROUPE_JOURNAL_MAX_TAGS + 1);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &bad, 1, never_append, NULL),
            TROUPE_EINVAL);

  TT_EQ_INT(troupe_journal_replay(j, "b", 0, 5, 0, never_events, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_replay(j, "b", 6, 5, 0, never_events, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_replay(j, NULL, 1, 5, 0, never_events, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_replay(j, "b", 1, 5, 0, NULL, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_highest(j, "", never_seq, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_highest(NULL, "b", never_seq, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_delete_to(j, NULL, 1, never_seq, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_by_tag(j, NULL, 0, 0, never_events, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_by_tag(j, "", 0, 0, never_events, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_list_ids(j, NULL, 0, never_ids, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_list_ids(j, NULL, 5, NULL, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_subscribe(j, "", note_cb, NULL, NULL),
            TROUPE_EINVAL);

  troupe_snapshot_store *ss = NULL;
  troupe_state_store *st = NULL;
  TT_EQ_INT(troupe_snapshot_store_open(spec, &o, &ss), 0);
  TT_EQ_INT(troupe_state_store_open(spec, &o, &st), 0);
  troupe_snapshot sn = {"b", 0, 1, "m", 1, "x", 1};
  TT_EQ_INT(troupe_snapshot_save(ss, &sn, never_done, NULL), TROUPE_EINVAL);
  sn.seq = 1;
  sn.manifest = NULL;
  TT_EQ_INT(troupe_snapshot_save(ss, &sn, never_done, NULL), TROUPE_EINVAL);
  sn.manifest = "m";
  sn.state_len = sizeof big;
  sn.state = big;
  TT_EQ_INT(troupe_snapshot_save(ss, &sn, never_done, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_snapshot_save(NULL, &sn, never_done, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_snapshot_retain(ss, "b", 0, never_done, NULL),
            TROUPE_EINVAL);
  troupe_snapshot_criteria c = troupe_snapshot_criteria_all();
  c.min_seq = 5;
  c.max_seq = 4;
  TT_EQ_INT(troupe_snapshot_delete(ss, "b", &c, never_done, NULL),
            TROUPE_EINVAL);
  troupe_state_record rec = {"b", 0, 1, NULL, 1, "x", 1};
  TT_EQ_INT(troupe_state_upsert(st, &rec, 0, never_rev, NULL), TROUPE_EINVAL);
  rec.manifest = "m";
  rec.persistence_id = "";
  TT_EQ_INT(troupe_state_upsert(st, &rec, 0, never_rev, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_state_get(st, NULL, NULL, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_snapshot_store_close(ss), 0);
  TT_EQ_INT(troupe_state_store_close(st), 0);

  troupe_journal *x = (troupe_journal *)1;
  TT_EQ_INT(troupe_journal_open(NULL, &o, &x), TROUPE_EINVAL);
  TT_ASSERT(x == NULL);
  TT_EQ_INT(troupe_journal_open("nope:", &o, &x), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_open(spec, &o, NULL), TROUPE_EINVAL);
  troupe_store_options bo = o;
  bo.page_size = 0;
  TT_EQ_INT(troupe_journal_open(spec, &bo, &x), TROUPE_EINVAL);
  bo = o;
  bo.sync = 7;
  TT_EQ_INT(troupe_journal_open(spec, &bo, &x), TROUPE_EINVAL);
  TT_EQ_INT(troupe_journal_close(NULL), 0);
  troupe_journal_unsubscribe(NULL);
  TT_EQ_INT(atomic_load(&cb_runs), 0);

  /* sync wrappers and close refuse to run on a store thread */
  in_cb ic;
  ic.j = j;
  atomic_init(&ic.rc_sync, 0);
  atomic_init(&ic.rc_close, 0);
  atomic_init(&ic.done, 0);
  TT_EQ_INT(troupe_journal_append(j, "b", 0, &e, 1, sync_inside_cb, &ic), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&ic.done), 5000));
  TT_EQ_INT(atomic_load(&ic.rc_sync), TROUPE_EWRONGTHREAD);
  TT_EQ_INT(atomic_load(&ic.rc_close), TROUPE_EWRONGTHREAD);
  TT_EQ_INT(highest(j, "b"), 1);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* --- close and reopen ------------------------------------------------------ */

static void jc_reopen(void) {
  if (!B->persistent) TT_SKIP("%s is not persistent", B->name);
  const char *spec = fresh();
  troupe_journal *j = open_j(spec);
  TT_ASSERT(j);
  const char *tags[] = {"k"};
  TT_EQ_INT(append_n(j, "r1", 0, 5, tags, 1), 0);
  TT_EQ_INT(append_n(j, "r2", 0, 3, NULL, 0), 0);
  TT_EQ_INT(troupe_journal_delete_to_sync(j, "r1", 2), 0);
  TT_EQ_INT(troupe_journal_delete_to_sync(j, "r2", 3), 0);
  troupe_store_options o = opts();
  troupe_snapshot_store *ss = NULL;
  troupe_state_store *st = NULL;
  TT_EQ_INT(troupe_snapshot_store_open(spec, &o, &ss), 0);
  TT_EQ_INT(troupe_state_store_open(spec, &o, &st), 0);
  troupe_snapshot sn = {"r1", 4, 9, "m", 1, "snap4", 5};
  TT_EQ_INT(troupe_snapshot_save_sync(ss, &sn), 0);
  troupe_state_record rec = {"d1", 0, 1, "m", 1, "st", 2};
  TT_EQ_INT(troupe_state_upsert_sync(st, &rec, 0, NULL), 0);
  TT_EQ_INT(troupe_state_upsert_sync(st, &rec, 1, NULL), 0);
  coll c;
  TT_EQ_INT(by_tag(j, "k", 0, 0, &c), 0);
  uint64_t last_off = c.off[c.n - 1];
  coll_free(&c);
  TT_EQ_INT(troupe_journal_close(j), 0);
  TT_EQ_INT(troupe_snapshot_store_close(ss), 0);
  TT_EQ_INT(troupe_state_store_close(st), 0);

  j = open_j(spec);
  TT_ASSERT(j);
  TT_EQ_INT(highest(j, "r1"), 5);
  TT_EQ_INT(highest(j, "r2"), 3);
  TT_EQ_INT(replay(j, "r1", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 3);
  TT_EQ_INT(c.seq[0], 3);
  TT_EQ_STR(c.payload[2], "r1:5");
  coll_free(&c);
  TT_EQ_INT(replay(j, "r2", 1, UINT64_MAX, 0, &c), 0);
  TT_EQ_INT(c.n, 0);
  coll_free(&c);
  TT_EQ_INT(by_tag(j, "k", 0, 0, &c), 0);
  TT_EQ_INT(c.n, 3);
  coll_free(&c);
  idlist l;
  memset(&l, 0, sizeof l);
  TT_EQ_INT(troupe_journal_list_ids_sync(j, NULL, 10, ids_cb, &l), 0);
  TT_EQ_INT(l.n, 2);
  idlist_free(&l);
  TT_EQ_INT(append_n(j, "r2", 0, 1, NULL, 0), TROUPE_ECONFLICT);
  TT_EQ_INT(append_n(j, "r2", 3, 1, NULL, 0), 0);
  TT_EQ_INT(append_n(j, "r1", 5, 1, tags, 1), 0);
  TT_EQ_INT(by_tag(j, "k", last_off, 0, &c), 0);
  TT_EQ_INT(c.n, 1);
  /* offsets continue after the 8 events appended before, never reused */
  TT_ASSERT(last_off == 5);
  TT_EQ_INT(c.off[0], 10);
  coll_free(&c);
  /* the offset order survives the reopen too */
  TT_EQ_INT(by_slice(j, 0, TROUPE_JOURNAL_SLICES - 1, 0, 0, &c), 0);
  TT_EQ_INT(c.n, 5);
  TT_EQ_INT(c.off[0], 3);
  TT_EQ_STR(c.pid[2], "r1");
  TT_EQ_INT(c.seq[2], 5);
  TT_EQ_INT(c.off[3], 9);
  TT_EQ_STR(c.pid[3], "r2");
  TT_EQ_INT(c.off[4], 10);
  coll_free(&c);
  TT_EQ_INT(troupe_snapshot_store_open(spec, &o, &ss), 0);
  TT_EQ_INT(troupe_state_store_open(spec, &o, &st), 0);
  troupe_snapshot *got = NULL;
  TT_EQ_INT(troupe_snapshot_load_sync(ss, "r1", NULL, &got), 0);
  TT_ASSERT(got && got->seq == 4 && got->state_len == 5);
  troupe_snapshot_free(got);
  troupe_state_record *sr = NULL;
  TT_EQ_INT(troupe_state_get_sync(st, "d1", &sr), 0);
  TT_ASSERT(sr && sr->revision == 2);
  troupe_state_record_free(sr);
  TT_EQ_INT(troupe_state_upsert_sync(st, &rec, 1, NULL), TROUPE_ECONFLICT);
  TT_EQ_INT(troupe_state_upsert_sync(st, &rec, 2, NULL), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
  TT_EQ_INT(troupe_snapshot_store_close(ss), 0);
  TT_EQ_INT(troupe_state_store_close(st), 0);
}

int jc_run(int argc, char **argv, const jc_backend *b) {
  B = b;
  tt_init(argc, argv);
  printf("# storage conformance: backend %s\n", b->name);
  TT_RUN(jc_append_replay_order);
  TT_RUN(jc_batch_atomicity);
  TT_RUN(jc_conflict);
  TT_RUN(jc_concurrent_conflict);
  TT_RUN(jc_paging);
  TT_RUN(jc_delete);
  TT_RUN(jc_tags);
  TT_RUN(jc_by_tag_concurrent);
  TT_RUN(jc_slice_of);
  TT_RUN(jc_by_slice);
  TT_RUN(jc_by_slice_concurrent);
  TT_RUN(jc_list_ids);
  TT_RUN(jc_mixed_writes);
  TT_RUN(jc_snapshots);
  TT_RUN(jc_durable_state);
  TT_RUN(jc_shared_spec);
  TT_RUN(jc_subscribe);
  TT_RUN(jc_close_drains);
  TT_RUN(jc_bad_input);
  TT_RUN(jc_reopen);
  for (int i = 0; i < nspecs; i++) {
    if (b->cleanup) b->cleanup(specs[i], b->data);
    free(specs[i]);
  }
  nspecs = 0;
  return tt_done();
}
