/*
 * projection/projection.c: projection workers.
 *
 * A running projection is
 *   - a top-level supervisor actor "projection-NAME" whose strategy is the
 *     projection's restart backoff, and its child "worker";
 *   - one worker thread per incarnation of that child: it reads the source
 *     from the offset, calls the handler, commits offsets, applies
 *     management requests, and reports failures and skips to the child
 *     actor as messages (a failure makes the child fail, so supervision
 *     restarts it with backoff, and the new incarnation's thread starts
 *     again from the stored offset).
 * The loop never waits for the worker: a new thread first joins its
 * predecessor, so two incarnations never overlap, and only
 * troupe_projection_stop() (not on the loop) joins the last one.
 */
#define _GNU_SOURCE 1
#include "projection/internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

/* ------------------------------------------------------------------ */
/* Types and state                                                     */

typedef struct pj_failed_msg { uint64_t gen; int code; } pj_failed_msg;
static troupe_type PJ_FAILED = {.manifest = "troupe.projection.Failed",
                                .version = 1, .size = sizeof(pj_failed_msg)};
troupe_type TROUPE_T_PROJECTION_SKIPPED = {
  .manifest = "troupe.projection.Skipped", .version = 1,
  .size = sizeof(troupe_projection_skipped)};

typedef struct pj_run pj_run;

struct troupe_projection {
  troupe_system *sys;
  troupe_projection_def def;   /* copy; tag points to `tag` */
  char *tag;
  int sliced;
  unsigned lo, hi;
  char name[TROUPE_PROJECTION_MAX_NAME + 24];   /* instance */
  char actor[TROUPE_PROJECTION_MAX_NAME + 32];
  char source[300];
  troupe_behavior sup_beh, wrk_beh;
  troupe_supervisor strategy;
  troupe_ref sup, worker;
  /* PostgreSQL journal: LISTEN on its channel */
  char *listen_conninfo;
  char channel[80];

  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t wake_seq;
  int stopping;
  pj_run *cur;
  pthread_t last_th;
  int has_last;
  uint64_t gen;
  atomic_int refs;

  /* status */
  atomic_int state;
  atomic_uint_fast64_t offset, committed, handled, skipped, restarts;
  atomic_int last_error;
  atomic_uint_fast64_t ctl_req;   /* bumped by in-process requests */
  int actors;                     /* live actor incarnations (mu) */
};

struct pj_run {
  troupe_projection *p;
  pthread_t th;
  pthread_t prev;
  int has_prev;
  atomic_int stop;
  uint64_t gen;
};

struct troupe_projection_ctx {
  pj_session *ss;
  troupe_projection *p;
  uint32_t attempt;
};

/* TROUPE_PJ_PROFILE=1: time spent per phase, printed when a worker ends
 * (for tuning; off by default). */
static int prof_on = -1;
static _Thread_local double prof_t[4];
static const char *prof_name[4] = {"read", "begin", "handler", "commit"};
static double prof_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
#define PROF_START() double prof_t0_ = prof_on ? prof_now() : 0; (void)prof_t0_
#define PROF_END(i) do { if (prof_on) prof_t[i] += prof_now() - prof_t0_; } while (0)

static void pj_unref(troupe_projection *p) {
  if (atomic_fetch_sub(&p->refs, 1) != 1) return;
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->tag);
  free(p->listen_conninfo);
  free(p);
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void wake(troupe_projection *p) {
  pthread_mutex_lock(&p->mu);
  p->wake_seq++;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static uint64_t wake_seq(troupe_projection *p) {
  pthread_mutex_lock(&p->mu);
  uint64_t s = p->wake_seq;
  pthread_mutex_unlock(&p->mu);
  return s;
}

static void timed_wait(troupe_projection *p, uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

/* Wait until a wake-up after `seen`, a stop, or ms. */
static void wait_wake(pj_run *run, uint64_t seen, uint64_t ms) {
  troupe_projection *p = run->p;
  uint64_t end = mono_ms() + ms;
  pthread_mutex_lock(&p->mu);
  while (p->wake_seq == seen && !atomic_load(&run->stop)) {
    uint64_t now = mono_ms();
    if (now >= end) break;
    timed_wait(p, end - now);
  }
  pthread_mutex_unlock(&p->mu);
}

/* Sleep ms unless stopped. */
static void pause_ms(pj_run *run, uint64_t ms) {
  troupe_projection *p = run->p;
  uint64_t end = mono_ms() + ms;
  pthread_mutex_lock(&p->mu);
  while (!atomic_load(&run->stop)) {
    uint64_t now = mono_ms();
    if (now >= end) break;
    timed_wait(p, end - now);
  }
  pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------ */
/* Reading the source into owned copies                                */

typedef struct evbuf {
  troupe_event *ev;
  void **blk;
  size_t n, cap, head;
  uint64_t last;           /* offset of the last event read */
  int status;
} evbuf;

static void evbuf_clear(evbuf *b) {
  for (size_t i = 0; i < b->n; i++) free(b->blk[i]);
  b->n = b->head = 0;
}

static void evbuf_free(evbuf *b) {
  evbuf_clear(b);
  free(b->ev);
  free(b->blk);
  memset(b, 0, sizeof *b);
}

/* Drop the handled events at the front. */
static void evbuf_compact(evbuf *b) {
  if (b->head == 0) return;
  for (size_t i = 0; i < b->head; i++) free(b->blk[i]);
  memmove(b->ev, b->ev + b->head, (b->n - b->head) * sizeof *b->ev);
  memmove(b->blk, b->blk + b->head, (b->n - b->head) * sizeof *b->blk);
  b->n -= b->head;
  b->head = 0;
}

static int evbuf_add(evbuf *b, const troupe_event *e) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    troupe_event *ev = realloc(b->ev, cap * sizeof *ev);
    if (!ev) return TROUPE_ENOMEM;
    b->ev = ev;
    void **blk = realloc(b->blk, cap * sizeof *blk);
    if (!blk) return TROUPE_ENOMEM;
    b->blk = blk;
    b->cap = cap;
  }
  size_t lp = strlen(e->persistence_id) + 1, lm = strlen(e->manifest) + 1;
  size_t sz = e->ntags * sizeof(char *) + lp + lm + e->payload_len;
  for (size_t i = 0; i < e->ntags; i++) sz += strlen(e->tags[i]) + 1;
  char *m = malloc(sz ? sz : 1);
  if (!m) return TROUPE_ENOMEM;
  troupe_event *d = &b->ev[b->n];
  *d = *e;
  const char **tv = (const char **)m;
  char *q = m + e->ntags * sizeof(char *);
  for (size_t i = 0; i < e->ntags; i++) {
    size_t l = strlen(e->tags[i]) + 1;
    memcpy(q, e->tags[i], l);
    tv[i] = q;
    q += l;
  }
  d->tags = e->ntags ? tv : NULL;
  memcpy(q, e->persistence_id, lp);
  d->persistence_id = q;
  q += lp;
  memcpy(q, e->manifest, lm);
  d->manifest = q;
  q += lm;
  if (e->payload_len) memcpy(q, e->payload, e->payload_len);
  d->payload = e->payload_len ? q : NULL;
  b->blk[b->n++] = m;
  b->last = e->offset;
  return 0;
}

static int read_cb(int status, const troupe_event *events, size_t n, int done,
                   void *data) {
  evbuf *b = data;
  (void)done;
  if (status < 0) { b->status = status; return 1; }
  for (size_t i = 0; i < n; i++) {
    int rc = evbuf_add(b, &events[i]);
    if (rc < 0) { b->status = rc; return 1; }
  }
  return 0;
}

static int read_source(troupe_projection *p, uint64_t after, uint64_t max,
                       troupe_journal_events_cb cb, void *data) {
  if (!p->sliced)
    return troupe_journal_by_tag_sync(p->def.journal, p->tag, after, max, cb,
                                      data);
  return troupe_journal_by_slice_sync(p->def.journal, p->lo, p->hi, after, max,
                                      cb, data);
}

/* Read up to max more events after `after` into b. */
static int read_more(troupe_projection *p, evbuf *b, uint64_t after,
                     uint64_t max) {
  evbuf_compact(b);
  b->status = 0;
  PROF_START();
  int rc = read_source(p, after, max, read_cb, b);
  PROF_END(0);
  if (rc == 0) rc = b->status;
  return rc;
}

static void on_notify(const troupe_event *events, size_t n, void *data) {
  (void)events;
  (void)n;
  wake(data);
}

/* LISTEN on the PostgreSQL journal's channel (its own connection). */
typedef struct pj_listener {
  troupe_projection *p;
  pthread_t th;
  int pipe[2];
} pj_listener;

static void *listen_main(void *arg) {
  pj_listener *l = arg;
  PGconn *c = NULL;
  for (;;) {
    if (!c || PQstatus(c) != CONNECTION_OK) {
      if (c) PQfinish(c);
      c = PQconnectdb(l->p->listen_conninfo);
      char sql[120];
      snprintf(sql, sizeof sql, "LISTEN \"%s\"", l->p->channel);
      PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
      int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
      if (!ok) {
        PQfinish(c);
        c = NULL;
        struct pollfd f = {l->pipe[0], POLLIN, 0};
        if (poll(&f, 1, 1000) > 0) break;
        continue;
      }
      wake(l->p);   /* events may have come while we were not listening */
    }
    struct pollfd f[2] = {{PQsocket(c), POLLIN, 0}, {l->pipe[0], POLLIN, 0}};
    int n = poll(f, 2, 1000);
    if (n < 0 && errno != EINTR) break;
    if (f[1].revents) break;
    if (!PQconsumeInput(c)) { PQfinish(c); c = NULL; continue; }
    int any = 0;
    PGnotify *nt;
    while ((nt = PQnotifies(c))) { any = 1; PQfreemem(nt); }
    if (any) wake(l->p);
  }
  if (c) PQfinish(c);
  return NULL;
}

static pj_listener *listener_start(troupe_projection *p) {
  pj_listener *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->p = p;
  if (pipe(l->pipe) < 0) { free(l); return NULL; }
  if (pthread_create(&l->th, NULL, listen_main, l) != 0) {
    close(l->pipe[0]);
    close(l->pipe[1]);
    free(l);
    return NULL;
  }
  return l;
}

static void listener_stop(pj_listener *l) {
  if (!l) return;
  char c = 1;
  if (write(l->pipe[1], &c, 1) < 0) { /* the thread polls every second */ }
  pthread_join(l->th, NULL);
  close(l->pipe[0]);
  close(l->pipe[1]);
  free(l);
}

/* ------------------------------------------------------------------ */
/* The worker                                                          */

typedef struct wk {
  pj_run *run;
  troupe_projection *p;
  const pj_store_vt *vt;
  pj_session *ss;
  evbuf buf;
  uint64_t offset;         /* last handled */
  uint64_t committed;      /* last committed */
  uint64_t read_pos;       /* last read */
  uint64_t ack;
  uint64_t skipped;
  uint64_t since_commit;
  uint64_t last_commit;    /* mono ms */
  uint64_t last_publish;
  int published_state;
  uint64_t published_skipped;
  int paused;
  int eo;
  int idle;                /* the last read found nothing */
  uint64_t idle_seq;       /* wake-ups seen before that read */
  uint64_t idle_since;     /* mono ms of that read */
  uint64_t ctl_seen;
  char last_error[200];
} wk;

static void fill_row(wk *w, pj_row *r, uint64_t offset) {
  memset(r, 0, sizeof *r);
  r->offset = offset;
  r->ack_seq = w->ack;
  r->state = atomic_load(&w->p->state);
  r->skipped = w->skipped;
  size_t pending = w->buf.n - w->buf.head;
  r->lag_events = pending;
  r->lag_ms = pending ? pj_now_ms() - w->buf.ev[w->buf.head].timestamp_ms : 0;
  if (r->lag_ms < 0) r->lag_ms = 0;
  r->updated_ms = pj_now_ms();
  snprintf(r->source, sizeof r->source, "%s", w->p->source);
  snprintf(r->last_error, sizeof r->last_error, "%s", w->last_error);
}

static void set_state(wk *w, troupe_projection_state s) {
  atomic_store(&w->p->state, (int)s);
}

/* At-least-once: commit the handled offset. */
static int alo_commit(wk *w) {
  if (w->eo || w->since_commit == 0) return 0;
  pj_row r;
  fill_row(w, &r, w->offset);
  int rc = w->vt->commit(w->ss, w->p->name, &r);
  if (rc < 0) return rc;
  w->committed = w->offset;
  atomic_store(&w->p->committed, w->committed);
  w->since_commit = 0;
  w->last_commit = mono_ms();
  w->last_publish = w->last_commit;
  w->published_state = r.state;
  w->published_skipped = r.skipped;
  return 0;
}

static int publish(wk *w, int force) {
  uint64_t now = mono_ms();
  int st = atomic_load(&w->p->state);
  if (!force && st == w->published_state && w->skipped == w->published_skipped &&
      now - w->last_publish < 1000)
    return 0;
  pj_row r;
  fill_row(w, &r, w->committed);
  int rc = w->vt->publish(w->ss, w->p->name, &r);
  if (rc < 0) return rc;
  w->last_publish = now;
  w->published_state = st;
  w->published_skipped = w->skipped;
  return 0;
}

static void tell_skipped(wk *w, const troupe_event *e, int err) {
  troupe_projection_skipped s;
  memset(&s, 0, sizeof s);
  snprintf(s.projection, sizeof s.projection, "%s", w->p->name);
  snprintf(s.persistence_id, sizeof s.persistence_id, "%s", e->persistence_id);
  s.seq = e->seq;
  s.offset = e->offset;
  s.error = err;
  troupe_tell(w->p->worker, &TROUPE_T_PROJECTION_SKIPPED, &s, TROUPE_REF_NONE);
  troupe_system_log(w->p->sys, TROUPE_LOG_WARN,
                    "projection %s: skipped %s#%llu (offset %llu): %s",
                    w->p->name, e->persistence_id, (unsigned long long)e->seq,
                    (unsigned long long)e->offset, troupe_strerror(err));
}

/* One attempt at a group. *handler_failed tells a handler error (subject
 * to the strategy) from a storage error (fails the projection). */
static int try_group(wk *w, const troupe_event *ev, size_t k, uint32_t attempt,
                     int *handler_failed) {
  troupe_projection *p = w->p;
  troupe_projection_ctx ctx = {w->eo ? w->ss : NULL, p, attempt};
  uint64_t last = ev[k - 1].offset;
  *handler_failed = 0;
  if (!w->eo) {
    int rc = p->def.handler(&ctx, ev, k, p->def.data);
    if (rc < 0) { *handler_failed = 1; return rc; }
    return 0;
  }
  int rc;
  {
    PROF_START();
    rc = w->vt->begin(w->ss, p->name, 1, w->committed);
    PROF_END(1);
  }
  if (rc < 0) return rc;
  {
    PROF_START();
    rc = p->def.handler(&ctx, ev, k, p->def.data);
    PROF_END(2);
  }
  if (rc < 0) {
    w->vt->abort(w->ss);
    *handler_failed = 1;
    return rc;
  }
  pj_row r;
  fill_row(w, &r, last);
  r.lag_events = w->buf.n - w->buf.head - k;
  {
    PROF_START();
    rc = w->vt->commit(w->ss, p->name, &r);
    PROF_END(3);
  }
  if (rc < 0) return rc;
  w->committed = last;
  atomic_store(&p->committed, last);
  if (pj_test_fault && pj_test_fault("after-commit", last))
    return troupe__err(TROUPE_EIO, "injected fault after commit");
  return 0;
}

/* Record one skipped event (exactly-once: durably, with the offset). */
static int skip_one(wk *w, const troupe_event *e, int err) {
  w->skipped++;
  atomic_store(&w->p->skipped, w->skipped);
  tell_skipped(w, e, err);
  if (!w->eo) return 0;
  int rc = w->vt->begin(w->ss, w->p->name, 1, w->committed);
  if (rc < 0) return rc;
  pj_row r;
  fill_row(w, &r, e->offset);
  rc = w->vt->commit(w->ss, w->p->name, &r);
  if (rc == 0) {
    w->committed = e->offset;
    atomic_store(&w->p->committed, e->offset);
  }
  return rc;
}

static int process(wk *w, const troupe_event *ev, size_t k) {
  troupe_projection *p = w->p;
  const troupe_projection_def *d = &p->def;
  for (uint32_t attempt = 0;; attempt++) {
    if (atomic_load(&w->run->stop)) return TROUPE_ECANCELED;
    int hf;
    int rc = try_group(w, ev, k, attempt, &hf);
    if (rc >= 0) return 0;
    snprintf(w->last_error, sizeof w->last_error, "%s: %s",
             troupe_err_name(rc), troupe_errmsg());
    atomic_store(&p->last_error, rc);
    if (!hf) return rc;
    int retry = d->on_error == TROUPE_PROJECTION_RETRY_FAIL ||
                d->on_error == TROUPE_PROJECTION_RETRY_SKIP;
    if (retry && attempt < d->retries) {
      uint64_t b = (uint64_t)d->retry_backoff_ms << (attempt < 16 ? attempt : 16);
      pause_ms(w->run, b);
      continue;
    }
    int skip = d->on_error == TROUPE_PROJECTION_SKIP ||
               d->on_error == TROUPE_PROJECTION_RETRY_SKIP;
    if (!skip) return rc;
    if (k > 1) {
      /* find the failing events one by one; skip only those */
      for (size_t i = 0; i < k; i++) {
        int r2 = process(w, &ev[i], 1);
        if (r2 < 0) return r2;
      }
      return 0;
    }
    return skip_one(w, &ev[0], rc);
  }
}

/* Apply management state from the store. */
static int control(wk *w) {
  troupe_projection *p = w->p;
  pj_row row;
  pj_ctl ctl;
  int rc = w->vt->load(w->ss, p->name, &row, &ctl);
  if (rc == TROUPE_ENOENT) rc = 0;
  if (rc < 0) return rc;
  w->paused = ctl.paused;
  if (ctl.req_seq > w->ack) {
    uint64_t to = ctl.req_kind == TROUPE_PROJECTION_RESET ? 0 : ctl.req_offset;
    rc = w->vt->begin(w->ss, p->name, 0, 0);
    if (rc < 0) return rc;
    if (ctl.req_kind == TROUPE_PROJECTION_RESET && p->def.reset) {
      troupe_projection_ctx ctx = {w->eo ? w->ss : NULL, p, 0};
      rc = p->def.reset(&ctx, p->def.data);
      if (rc < 0) {
        w->vt->abort(w->ss);
        troupe_system_log(p->sys, TROUPE_LOG_WARN,
                          "projection %s: reset hook failed (%s), retrying",
                          p->name, troupe_strerror(rc));
        return 0;
      }
    }
    evbuf_clear(&w->buf);
    w->idle = 0;
    w->ack = ctl.req_seq;
    pj_row r;
    fill_row(w, &r, to);
    rc = w->vt->commit(w->ss, p->name, &r);
    if (rc < 0) return rc;
    w->offset = w->committed = w->read_pos = to;
    w->since_commit = 0;
    atomic_store(&p->offset, to);
    atomic_store(&p->committed, to);
    troupe_system_log(p->sys, TROUPE_LOG_INFO, "projection %s: %s to offset %llu",
                      p->name,
                      ctl.req_kind == TROUPE_PROJECTION_RESET ? "reset"
                                                              : "rewound",
                      (unsigned long long)to);
  }
  return 0;
}

static int run_body(pj_run *run, wk *w) {
  troupe_projection *p = run->p;
  const troupe_projection_def *d = &p->def;
  int rc = w->vt->session_open(p->def.offsets->s, &w->ss);
  if (rc < 0) return rc;
  pj_row row;
  pj_ctl ctl;
  rc = w->vt->load(w->ss, p->name, &row, &ctl);
  int fresh = rc == TROUPE_ENOENT;
  if (fresh) rc = 0;
  if (rc < 0) return rc;
  w->offset = w->committed = w->read_pos = row.offset;
  w->ack = row.ack_seq;
  w->skipped = row.skipped;
  atomic_store(&p->offset, w->offset);
  atomic_store(&p->committed, w->offset);
  atomic_store(&p->skipped, w->skipped);
  set_state(w, TROUPE_PROJECTION_RUNNING);
  if (fresh || strcmp(row.source, p->source) != 0) {
    /* first run: create the row (offset as stored: 0, or a rewind target) */
    pj_row r;
    fill_row(w, &r, w->committed);
    rc = w->vt->commit(w->ss, p->name, &r);
    if (rc < 0) return rc;
  }
  w->last_commit = mono_ms();
  uint64_t next_ctl = 0;
  uint64_t group_deadline = 0;
  while (!atomic_load(&run->stop)) {
    uint64_t now = mono_ms();
    uint64_t cr = atomic_load(&p->ctl_req);
    if (cr != w->ctl_seen) { w->ctl_seen = cr; next_ctl = 0; }
    if (now >= next_ctl) {
      rc = control(w);
      if (rc < 0) return rc;
      next_ctl = now + d->control_ms;
      rc = publish(w, 0);
      if (rc < 0) return rc;
    }
    if (w->paused) {
      if ((rc = alo_commit(w)) < 0) return rc;
      set_state(w, TROUPE_PROJECTION_PAUSED);
      evbuf_clear(&w->buf);
      w->idle = 0;
      w->read_pos = w->offset;
      if ((rc = publish(w, 0)) < 0) return rc;
      wait_wake(run, wake_seq(p), d->control_ms);
      next_ctl = 0;
      continue;
    }
    set_state(w, TROUPE_PROJECTION_RUNNING);
    size_t avail = w->buf.n - w->buf.head;
    if (avail == 0 && w->idle && wake_seq(p) == w->idle_seq &&
        now - w->idle_since < d->poll_ms) {
      /* caught up and nothing new announced: wait for a wake-up, the
       * fallback poll or the next control poll, without reading */
      uint64_t t = d->poll_ms - (now - w->idle_since);
      if (next_ctl > now && next_ctl - now < t) t = next_ctl - now;
      if (next_ctl <= now) t = 0;
      if (t) wait_wake(run, w->idle_seq, t);
      continue;
    }
    if (avail < d->group_size) {
      uint64_t seen = wake_seq(p);
      size_t before = avail;
      rc = read_more(p, &w->buf, w->read_pos, d->page_size);
      if (rc < 0) return rc;
      avail = w->buf.n - w->buf.head;
      if (avail > before) w->read_pos = w->buf.last;
      w->idle = avail == 0;
      if (avail == 0) {
        w->idle_seq = seen;
        w->idle_since = mono_ms();
        if ((rc = alo_commit(w)) < 0) return rc;
        if (d->current_only) {
          set_state(w, TROUPE_PROJECTION_DONE);
          return publish(w, 1);
        }
        uint64_t t = d->poll_ms;
        now = mono_ms();
        if (next_ctl > now && next_ctl - now < t) t = next_ctl - now;
        if (next_ctl <= now) t = 0;
        if (t) wait_wake(run, seen, t);
        continue;
      }
      if (avail < d->group_size && d->group_ms && !d->current_only) {
        now = mono_ms();
        if (!group_deadline) group_deadline = now + d->group_ms;
        if (now < group_deadline) {
          uint64_t t = group_deadline - now;
          if (t > 5) t = 5;   /* read again soon: more may be committed */
          wait_wake(run, seen, t);
          continue;
        }
      }
    }
    group_deadline = 0;
    size_t k = avail < d->group_size ? avail : d->group_size;
    const troupe_event *ev = &w->buf.ev[w->buf.head];
    rc = process(w, ev, k);
    if (rc == TROUPE_ECANCELED) break;
    if (rc < 0) return rc;
    w->offset = ev[k - 1].offset;
    w->buf.head += k;
    w->since_commit += k;
    atomic_store(&p->offset, w->offset);
    atomic_fetch_add(&p->handled, k);
    if (!w->eo && (w->since_commit >= d->commit_every ||
                   mono_ms() - w->last_commit >= d->commit_ms))
      if ((rc = alo_commit(w)) < 0) return rc;
  }
  /* stopped: keep what was handled */
  if ((rc = alo_commit(w)) < 0) return rc;
  set_state(w, TROUPE_PROJECTION_STOPPED);
  return publish(w, 1);
}

static void *run_main(void *arg) {
  pj_run *run = arg;
  troupe_projection *p = run->p;
  if (run->has_prev) pthread_join(run->prev, NULL);
  if (prof_on < 0) prof_on = getenv("TROUPE_PJ_PROFILE") != NULL;
  wk w;
  memset(&w, 0, sizeof w);
  w.run = run;
  w.p = p;
  w.vt = p->def.offsets->s->vt;
  w.eo = p->def.delivery == TROUPE_PROJECTION_EXACTLY_ONCE;
  w.published_state = -1;
  int rc = 0;
  troupe_journal_sub *sub = NULL;
  pj_listener *lis = NULL;
  if (!atomic_load(&run->stop)) {
    rc = troupe_journal_subscribe(p->def.journal, p->tag, on_notify, p, &sub);
    if (rc == 0 && p->listen_conninfo) lis = listener_start(p);
    if (rc == 0) rc = run_body(run, &w);
  }
  if (rc < 0 && !atomic_load(&run->stop)) {
    troupe_system_log(p->sys, TROUPE_LOG_ERROR, "projection %s failed: %s (%s)",
                      p->name, troupe_err_name(rc), troupe_errmsg());
    set_state(&w, TROUPE_PROJECTION_FAILED);
    atomic_store(&p->last_error, rc);
    if (w.ss) {
      snprintf(w.last_error, sizeof w.last_error, "%s: %s",
               troupe_err_name(rc), troupe_errmsg());
      w.vt->abort(w.ss);
      publish(&w, 1);
    }
    pj_failed_msg m = {run->gen, rc};
    troupe_tell(p->worker, &PJ_FAILED, &m, TROUPE_REF_NONE);
  } else if (rc < 0 && w.ss) {
    w.vt->abort(w.ss);
  }
  if (prof_on)
    for (int i = 0; i < 4; i++)
      fprintf(stderr, "projection %s: %s %.3f s\n", p->name, prof_name[i],
              prof_t[i]);
  listener_stop(lis);
  troupe_journal_unsubscribe(sub);
  if (w.ss) w.vt->session_close(w.ss);
  evbuf_free(&w.buf);
  pthread_mutex_lock(&p->mu);
  if (p->cur == run) p->cur = NULL;
  pthread_mutex_unlock(&p->mu);
  free(run);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* The actors                                                          */

typedef struct pj_actor_state { troupe_projection *p; } pj_actor_state;

static void actor_hold(troupe_projection *p) {
  atomic_fetch_add(&p->refs, 1);
  pthread_mutex_lock(&p->mu);
  p->actors++;
  pthread_mutex_unlock(&p->mu);
}

static void actor_release(troupe_projection *p) {
  pthread_mutex_lock(&p->mu);
  p->actors--;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pj_unref(p);
}


static void start_run(troupe_projection *p) {
  pthread_mutex_lock(&p->mu);
  if (p->stopping) { pthread_mutex_unlock(&p->mu); return; }
  if (p->cur) atomic_store(&p->cur->stop, 1);   /* exiting after a failure */
  pj_run *run = calloc(1, sizeof *run);
  if (run) {
    run->p = p;
    run->gen = ++p->gen;
    run->has_prev = p->has_last;
    run->prev = p->last_th;
    if (pthread_create(&run->th, NULL, run_main, run) == 0) {
      p->cur = run;
      p->last_th = run->th;
      p->has_last = 1;
    } else {
      free(run);
      run = NULL;
    }
  }
  pthread_mutex_unlock(&p->mu);
  if (!run)
    troupe_system_log(p->sys, TROUPE_LOG_ERROR,
                      "projection %s: cannot start its thread", p->name);
}

static void stop_run(troupe_projection *p) {
  pthread_mutex_lock(&p->mu);
  if (p->cur) atomic_store(&p->cur->stop, 1);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static int wrk_init(troupe_ctx *ctx, void *state, const void *arg) {
  pj_actor_state *s = state;
  s->p = *(troupe_projection *const *)arg;
  actor_hold(s->p);
  s->p->worker = troupe_self(ctx);
  start_run(s->p);
  return 0;
}

static int wrk_receive(troupe_ctx *ctx, void *state, const troupe_msg *msg) {
  pj_actor_state *s = state;
  if (msg->type == &PJ_FAILED) {
    const pj_failed_msg *m = msg->data;
    pthread_mutex_lock(&s->p->mu);
    int current = m->gen == s->p->gen;
    pthread_mutex_unlock(&s->p->mu);
    if (!current) return 0;
    atomic_fetch_add(&s->p->restarts, 1);
    return m->code < 0 ? m->code : TROUPE_EFAILED;   /* supervision restarts */
  }
  if (msg->type == &TROUPE_T_PROJECTION_SKIPPED)
    return troupe_publish(ctx, &TROUPE_T_PROJECTION_SKIPPED, msg->data);
  return TROUPE_UNHANDLED;
}

static void wrk_pre_restart(troupe_ctx *ctx, void *state, int error) {
  (void)ctx;
  (void)error;
  pj_actor_state *s = state;
  stop_run(s->p);
  actor_release(s->p);
}

static void wrk_post_stop(troupe_ctx *ctx, void *state) {
  (void)ctx;
  pj_actor_state *s = state;
  stop_run(s->p);
  if (atomic_load(&s->p->state) == TROUPE_PROJECTION_FAILED)
    troupe_system_log(s->p->sys, TROUPE_LOG_ERROR,
                      "projection %s stopped after failing", s->p->name);
  actor_release(s->p);
}

static int sup_init(troupe_ctx *ctx, void *state, const void *arg) {
  pj_actor_state *s = state;
  s->p = *(troupe_projection *const *)arg;
  actor_hold(s->p);
  troupe_spawn_opts o = {.name = "worker", .arg = &s->p, .arg_size = sizeof s->p};
  troupe_ref r;
  return troupe_spawn(ctx, &s->p->wrk_beh, &o, &r);
}

static int sup_receive(troupe_ctx *ctx, void *state, const troupe_msg *msg) {
  (void)ctx; (void)state; (void)msg;
  return TROUPE_UNHANDLED;
}

static void sup_pre_restart(troupe_ctx *ctx, void *state, int error) {
  (void)ctx; (void)error;
  actor_release(((pj_actor_state *)state)->p);
}

static void sup_post_stop(troupe_ctx *ctx, void *state) {
  (void)ctx;
  actor_release(((pj_actor_state *)state)->p);
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

int troupe_projection_start(troupe_system *sys,
                            const troupe_projection_def *def,
                            troupe_projection **out) {
  if (!out) return troupe__err(TROUPE_EINVAL, "troupe_projection_start: NULL out");
  *out = NULL;
  if (!sys || !def)
    return troupe__err(TROUPE_EINVAL, "troupe_projection_start: NULL argument");
  if (!pj_valid_name(def->name, TROUPE_PROJECTION_MAX_NAME))
    return troupe__err(TROUPE_EINVAL,
                       "projection name must be 1..%u of [A-Za-z0-9_-]",
                       TROUPE_PROJECTION_MAX_NAME);
  if (!def->journal || !def->offsets || !def->handler)
    return troupe__err(TROUPE_EINVAL,
                       "projection %s: journal, offsets and handler are "
                       "required", def->name);
  if (def->tag && (!*def->tag || strlen(def->tag) > TROUPE_JOURNAL_MAX_TAG_LEN))
    return troupe__err(TROUPE_EINVAL, "projection %s: bad tag", def->name);
  if (!def->tag && (def->slice_lo > def->slice_hi ||
                    def->slice_hi >= TROUPE_JOURNAL_SLICES))
    return troupe__err(TROUPE_EINVAL, "projection %s: bad slice range %u-%u",
                       def->name, def->slice_lo, def->slice_hi);
  if (def->delivery != TROUPE_PROJECTION_AT_LEAST_ONCE &&
      def->delivery != TROUPE_PROJECTION_EXACTLY_ONCE)
    return troupe__err(TROUPE_EINVAL, "projection %s: bad delivery", def->name);
  if (def->on_error > TROUPE_PROJECTION_RETRY_SKIP)
    return troupe__err(TROUPE_EINVAL, "projection %s: bad on_error", def->name);
  troupe_projection *p = calloc(1, sizeof *p);
  if (!p) return troupe__err(TROUPE_ENOMEM, "projection");
  p->sys = sys;
  p->def = *def;
  troupe_projection_def *d = &p->def;
  if (!d->group_size) d->group_size = 1;
  if (!d->commit_every) d->commit_every = 100;
  if (!d->commit_ms) d->commit_ms = 500;
  if (!d->retries) d->retries = 3;
  if (!d->retry_backoff_ms) d->retry_backoff_ms = 10;
  if (!d->restart_min_ms) d->restart_min_ms = 100;
  if (!d->restart_max_ms) d->restart_max_ms = 10000;
  if (!d->page_size) d->page_size = 1024;
  if (d->page_size < d->group_size) d->page_size = d->group_size;
  if (!d->poll_ms) d->poll_ms = 1000;
  if (!d->control_ms) d->control_ms = 200;
  if (def->tag) {
    p->tag = strdup(def->tag);
    if (!p->tag) { free(p); return troupe__err(TROUPE_ENOMEM, "projection"); }
    d->tag = p->tag;
    snprintf(p->name, sizeof p->name, "%s", def->name);
    snprintf(p->actor, sizeof p->actor, "projection-%s", def->name);
    snprintf(p->source, sizeof p->source, "tag:%s", def->tag);
  } else {
    p->sliced = 1;
    p->lo = def->slice_lo;
    p->hi = def->slice_hi;
    if (p->lo == 0 && p->hi == 0) p->hi = TROUPE_JOURNAL_SLICES - 1;
    snprintf(p->name, sizeof p->name, "%s@%u-%u", def->name, p->lo, p->hi);
    snprintf(p->actor, sizeof p->actor, "projection-%s-%u-%u", def->name,
             p->lo, p->hi);
    snprintf(p->source, sizeof p->source, "slices:%u-%u", p->lo, p->hi);
  }
  d->name = p->name;
  /* a PostgreSQL journal: follow its NOTIFY channel too */
  const char *js = troupe_journal_spec(def->journal);
  if (js && (strncmp(js, "postgresql://", 13) == 0 ||
             strncmp(js, "postgres://", 11) == 0 || strncmp(js, "pg:", 3) == 0)) {
    char schema[64];
    if (pj_pg_split_spec(js, &p->listen_conninfo, schema) == 0)
      snprintf(p->channel, sizeof p->channel, "troupe_events_%s", schema);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  atomic_init(&p->refs, 1);
  p->strategy = (troupe_supervisor){
    .default_directive = TROUPE_RESTART,
    .max_restarts = def->max_restarts,
    .window_ms = def->max_restarts ? 60000 : 0,
    .backoff_min_ms = d->restart_min_ms,
    .backoff_max_ms = d->restart_max_ms,
    .backoff_jitter = 0.2,
  };
  p->wrk_beh = (troupe_behavior){
    .name = "projection-worker",
    .state_size = sizeof(pj_actor_state),
    .init = wrk_init,
    .receive = wrk_receive,
    .post_stop = wrk_post_stop,
    .pre_restart = wrk_pre_restart,
  };
  p->sup_beh = (troupe_behavior){
    .name = "projection",
    .state_size = sizeof(pj_actor_state),
    .init = sup_init,
    .receive = sup_receive,
    .post_stop = sup_post_stop,
    .pre_restart = sup_pre_restart,
    .supervisor = &p->strategy,
  };
  troupe_spawn_opts o = {.name = p->actor, .arg = &p, .arg_size = sizeof p};
  int rc = troupe_system_spawn(sys, &p->sup_beh, &o, &p->sup);
  if (rc < 0) {
    pj_unref(p);
    return rc;
  }
  *out = p;
  return 0;
}

void troupe_projection_stop(troupe_projection *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  if (p->cur) atomic_store(&p->cur->stop, 1);
  pthread_cond_broadcast(&p->cv);
  int has = p->has_last;
  pthread_t th = p->last_th;
  p->has_last = 0;
  pthread_mutex_unlock(&p->mu);
  if (has) pthread_join(th, NULL);
  troupe_tell(p->sup, &TROUPE_T_POISON_PILL, NULL, TROUPE_REF_NONE);
  /* wait (bounded: a system that does not run never stops them) for the
   * actors, so the name can be started again at once */
  uint64_t end = mono_ms() + 5000;
  pthread_mutex_lock(&p->mu);
  while (p->actors > 0 && mono_ms() < end) timed_wait(p, 20);
  pthread_mutex_unlock(&p->mu);
  pj_unref(p);
}

const char *troupe_projection_name(const troupe_projection *p) {
  return p ? p->name : NULL;
}

struct pg_conn *troupe_projection_ctx_pgconn(troupe_projection_ctx *ctx) {
  return ctx && ctx->ss && ctx->ss->store->kind == PJ_PG ? ctx->ss->conn : NULL;
}
struct rocksdb_writebatch_t *troupe_projection_ctx_writebatch(
    troupe_projection_ctx *ctx) {
  return ctx && ctx->ss && ctx->ss->store->kind == PJ_ROCKSDB ? ctx->ss->wb
                                                              : NULL;
}
struct rocksdb_t *troupe_projection_ctx_rocksdb(troupe_projection_ctx *ctx) {
  return ctx && ctx->ss && ctx->ss->store->kind == PJ_ROCKSDB ? ctx->ss->db
                                                              : NULL;
}
const char *troupe_projection_ctx_name(troupe_projection_ctx *ctx) {
  return ctx ? ctx->p->name : NULL;
}
uint32_t troupe_projection_ctx_attempt(troupe_projection_ctx *ctx) {
  return ctx ? ctx->attempt : 0;
}

typedef struct lag_count {
  uint64_t n;
  int64_t first_ts;
} lag_count;

static int lag_cb(int status, const troupe_event *events, size_t n, int done,
                  void *data) {
  (void)done;
  lag_count *c = data;
  if (status < 0) return 1;
  if (n && c->n == 0) c->first_ts = events[0].timestamp_ms;
  c->n += n;
  return 0;
}

int troupe_projection_get_progress(troupe_projection *p,
                                   troupe_projection_status *st) {
  if (!p || !st) return troupe__err(TROUPE_EINVAL, "projection status: NULL argument");
  memset(st, 0, sizeof *st);
  st->state = (troupe_projection_state)atomic_load(&p->state);
  st->offset = atomic_load(&p->offset);
  st->committed = atomic_load(&p->committed);
  st->handled = atomic_load(&p->handled);
  st->skipped = atomic_load(&p->skipped);
  st->restarts = atomic_load(&p->restarts);
  st->last_error = atomic_load(&p->last_error);
  return 0;
}

int troupe_projection_get_status(troupe_projection *p,
                                 troupe_projection_status *st) {
  if (!p || !st) return troupe__err(TROUPE_EINVAL, "projection status: NULL argument");
  memset(st, 0, sizeof *st);
  st->state = (troupe_projection_state)atomic_load(&p->state);
  st->offset = atomic_load(&p->offset);
  st->committed = atomic_load(&p->committed);
  st->handled = atomic_load(&p->handled);
  st->skipped = atomic_load(&p->skipped);
  st->restarts = atomic_load(&p->restarts);
  st->last_error = atomic_load(&p->last_error);
  lag_count c = {0, 0};
  int rc = read_source(p, st->offset, 1000000, lag_cb, &c);
  if (rc < 0) return rc;
  st->lag_events = c.n;
  if (c.n) {
    st->lag_ms = pj_now_ms() - c.first_ts;
    if (st->lag_ms < 0) st->lag_ms = 0;
  }
  return 0;
}

static int request(troupe_projection *p, troupe_projection_op op,
                   uint64_t off) {
  if (!p) return troupe__err(TROUPE_EINVAL, "projection: NULL handle");
  int rc = troupe_projection_request(p->def.offsets, p->name, op, off);
  if (rc == 0) {
    atomic_fetch_add(&p->ctl_req, 1);
    pthread_mutex_lock(&p->mu);
    p->wake_seq++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  return rc;
}

int troupe_projection_pause(troupe_projection *p) {
  return request(p, TROUPE_PROJECTION_PAUSE, 0);
}
int troupe_projection_resume(troupe_projection *p) {
  return request(p, TROUPE_PROJECTION_RESUME, 0);
}
int troupe_projection_rewind(troupe_projection *p, uint64_t offset) {
  return request(p, TROUPE_PROJECTION_REWIND, offset);
}
int troupe_projection_reset(troupe_projection *p) {
  return request(p, TROUPE_PROJECTION_RESET, 0);
}
