/*
 * entity.c: persistent entities on top of actors and the journal.
 *
 * An entity is an actor whose behaviour is this file's: its actor state is
 * a struct troupe_entity, and the user's state lives beside it. Storage
 * completions run on store threads; they come back to the entity as
 * messages of an internal type (T_EMSG) told to its ref, so all entity
 * logic runs on the entity's own loop. Those messages own heap parts
 * (snapshots, replay pages) and free them through the type's ops, so a
 * completion that reaches a dead entity leaks nothing.
 */
#include "core/internal.h"
#include "troupe/persistence.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdarg.h>
#include <time.h>

#define ENTITY_ID_MAX 200
#define DEFAULT_PAGE 4096
#define DEFAULT_STASH 100000

/* ------------------------------------------------------------------ */
/* The persistence object and its single-writer registry */

struct troupe_persistence {
  troupe_journal *journal;
  troupe_snapshot_store *snapshots;
  troupe_state_store *states;
  pthread_mutex_t lock;
  char **live;          /* open-addressing set of live persistence ids */
  size_t cap, len;
};

#define TOMB ((char *)1)

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

static int live_add(troupe_persistence *p, const char *pid) {
  pthread_mutex_lock(&p->lock);
  if ((p->len + 1) * 2 > p->cap) {
    size_t ncap = p->cap ? p->cap * 2 : 64;
    char **n = calloc(ncap, sizeof *n);
    if (!n) {
      pthread_mutex_unlock(&p->lock);
      return TROUPE_ENOMEM;
    }
    for (size_t i = 0; i < p->cap; i++) {
      char *s = p->live[i];
      if (!s || s == TOMB) continue;
      size_t j = hash_str(s) & (ncap - 1);
      while (n[j]) j = (j + 1) & (ncap - 1);
      n[j] = s;
    }
    free(p->live);
    p->live = n;
    p->cap = ncap;
  }
  size_t j = hash_str(pid) & (p->cap - 1);
  size_t tomb = SIZE_MAX;
  while (p->live[j]) {
    if (p->live[j] == TOMB) {
      if (tomb == SIZE_MAX) tomb = j;
    } else if (strcmp(p->live[j], pid) == 0) {
      pthread_mutex_unlock(&p->lock);
      return TROUPE_EBUSY;
    }
    j = (j + 1) & (p->cap - 1);
  }
  char *copy = strdup(pid);
  if (!copy) {
    pthread_mutex_unlock(&p->lock);
    return TROUPE_ENOMEM;
  }
  p->live[tomb != SIZE_MAX ? tomb : j] = copy;
  p->len++;
  pthread_mutex_unlock(&p->lock);
  return 0;
}

static bool live_has(troupe_persistence *p, const char *pid) {
  bool found = false;
  pthread_mutex_lock(&p->lock);
  if (p->cap) {
    size_t j = hash_str(pid) & (p->cap - 1);
    while (p->live[j] && !found) {
      found = p->live[j] != TOMB && strcmp(p->live[j], pid) == 0;
      j = (j + 1) & (p->cap - 1);
    }
  }
  pthread_mutex_unlock(&p->lock);
  return found;
}

/* Build "type|id" and claim it as this process's single writer. */
static int claim_pid(troupe_persistence *p, const char *type_name,
                     const char *id, char **out) {
  size_t n = strlen(type_name) + 1 + strlen(id) + 1;
  char *pid = malloc(n);
  if (!pid) return TROUPE_ENOMEM;
  snprintf(pid, n, "%s|%s", type_name, id);
  int rc = live_add(p, pid);
  if (rc < 0) {
    free(pid);
    return rc;
  }
  *out = pid;
  return 0;
}

static void live_del(troupe_persistence *p, const char *pid) {
  pthread_mutex_lock(&p->lock);
  if (p->cap) {
    size_t j = hash_str(pid) & (p->cap - 1);
    while (p->live[j]) {
      if (p->live[j] != TOMB && strcmp(p->live[j], pid) == 0) {
        free(p->live[j]);
        p->live[j] = TOMB;
        p->len--;
        break;
      }
      j = (j + 1) & (p->cap - 1);
    }
  }
  pthread_mutex_unlock(&p->lock);
}

int troupe_persistence_create(troupe_persistence **out, troupe_journal *j,
                              troupe_snapshot_store *s) {
  if (!out)
    return troupe__err(TROUPE_EINVAL, "troupe_persistence_create: NULL");
  *out = NULL;
  troupe_persistence *p = calloc(1, sizeof *p);
  if (!p) return troupe__err(TROUPE_ENOMEM, "persistence");
  p->journal = j;
  p->snapshots = s;
  pthread_mutex_init(&p->lock, NULL);
  *out = p;
  return 0;
}

void troupe_persistence_destroy(troupe_persistence *p) {
  if (!p) return;
  for (size_t i = 0; i < p->cap; i++)
    if (p->live[i] && p->live[i] != TOMB) free(p->live[i]);
  free(p->live);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* ------------------------------------------------------------------ */
/* Internal messages */

enum { EM_SNAP = 1, EM_HIGH, EM_PAGE, EM_APPENDED, EM_GOT, EM_UPSERTED };

typedef struct rec_event {
  uint64_t seq;
  const char *manifest;
  uint32_t version;
  const uint8_t *payload;
  size_t len;
} rec_event;

/* A chunk of replayed events: one heap block holding the struct, the
 * events, then their manifests and payloads. The reader thread posts each
 * page the journal hands it as a chunk at once (sized to fit, no
 * accumulation), so the entity decodes one chunk while the journal reads
 * the next; a request's chunks are at most replay_page events, which
 * bounds what is in flight. */
typedef struct chunk {
  size_t n;
  rec_event ev[];
} chunk;

typedef struct emsg {
  int kind;
  int status;
  uint64_t a, b;
  void *ptr;       /* EM_SNAP: troupe_snapshot* (owned), EM_PAGE: chunk*
                      (owned, NULL when empty; a = 1 on a request's last),
                      EM_APPENDED: the append's ap_ctx (owned) */
} emsg;

static int emsg_copy(const troupe_type *t, void *dst, const void *src) {
  (void)t;
  memcpy(dst, src, sizeof(emsg));   /* moves ownership of ptr */
  return 0;
}

static void emsg_free(const troupe_type *t, void *v) {
  (void)t;
  emsg *m = v;
  if (!m->ptr) return;
  if (m->kind == EM_SNAP || m->kind == EM_GOT || m->kind == EM_PAGE ||
      m->kind == EM_APPENDED)
    free(m->ptr);
  m->ptr = NULL;
}

static const troupe_type_ops emsg_ops = {.copy = emsg_copy,
                                         .free = emsg_free};
static troupe_type T_EMSG = {.manifest = "troupe.EntityCompletion",
                             .version = 1, .size = sizeof(emsg),
                             .ops = &emsg_ops};

/* Tell an entity a completion; on failure free what it owns. */
static void post(troupe_ref to, emsg *m) {
  if (troupe_tell(to, &T_EMSG, m, TROUPE_REF_NONE) < 0) emsg_free(NULL, m);
}

/* ------------------------------------------------------------------ */
/* The entity */

typedef struct pending_ev {
  const troupe_type *type;
  void *value;
} pending_ev;

typedef struct after_item {
  const troupe_type *type;     /* reply */
  void *value;
  troupe_ref to;
  void (*fn)(troupe_entity *, const void *, void *);
  void *data;
} after_item;

typedef struct batch {
  struct batch *next;
  uint64_t id;
  pending_ev *ev;
  size_t nev, cev;
  after_item *aft;
  size_t naft, caft;
  bool async;
  troupe_ref sender;    /* of the command that made the batch */
  bool submitted;
  bool done;
  int status;
  uint64_t head;
} batch;

enum { PH_RECOVERING = 0, PH_RUNNING, PH_FAILED };

/* The spawn argument of both kinds of entities (copied by the runtime and
 * kept for restarts). */
typedef struct spawn_arg {
  troupe_persistence *p;
  const void *def;        /* troupe_entity_def or troupe_durable_def */
  char id[ENTITY_ID_MAX + 1];
} spawn_arg;

struct troupe_entity {
  troupe_ctx *ctx;
  troupe_persistence *p;
  const troupe_entity_def *def;
  char id[ENTITY_ID_MAX + 1];
  char *pid;
  void *state;
  uint64_t seq;           /* last applied */
  uint64_t written;       /* expected seq for the next append */
  uint64_t high;          /* the journal's highest (see EM_HIGH) */
  uint64_t req_got;       /* events the replay request in flight gave */
  uint64_t replayed;      /* events replayed by this recovery */
  uint64_t since_snap;
  uint64_t *snap_ring;    /* seqs of kept snapshots (delete_events) */
  uint32_t snap_n;
  int phase;
  bool registered;
  bool snap_wanted;
  uint32_t sync_inflight;
  batch *cur;
  batch *q_head, *q_tail; /* batches in submission order */
  uint64_t next_batch;
  troupe_ref self;
  troupe_ref cmd_sender;
  /* Kept between commands so that a command that persists allocates only
   * the copies of its events: a spare batch (arrays kept) and the buffer
   * its events are encoded into. */
  batch *spare;
  troupe_buf scratch;
};

static void batch_free(batch *b) {
  if (!b) return;
  for (size_t i = 0; i < b->nev; i++) {
    troupe_value_free(b->ev[i].type, b->ev[i].value);
    free(b->ev[i].value);
  }
  for (size_t i = 0; i < b->naft; i++) {
    if (b->aft[i].type) {
      troupe_value_free(b->aft[i].type, b->aft[i].value);
      free(b->aft[i].value);
    }
  }
  free(b->ev);
  free(b->aft);
  free(b);
}

static batch *batch_new(troupe_entity *e) {
  batch *b = e->spare;
  if (!b) return calloc(1, sizeof *b);
  e->spare = NULL;
  return b;
}

/* Done with b: free what it holds, keep it (and its arrays) as the spare
 * when there is none. */
static void batch_release(troupe_entity *e, batch *b) {
  if (e->spare || b->cev > 64 || b->caft > 64) {
    batch_free(b);
    return;
  }
  for (size_t i = 0; i < b->nev; i++) {
    troupe_value_free(b->ev[i].type, b->ev[i].value);
    free(b->ev[i].value);
  }
  for (size_t i = 0; i < b->naft; i++) {
    if (b->aft[i].type) {
      troupe_value_free(b->aft[i].type, b->aft[i].value);
      free(b->aft[i].value);
    }
  }
  pending_ev *ev = b->ev;
  after_item *aft = b->aft;
  size_t cev = b->cev, caft = b->caft;
  memset(b, 0, sizeof *b);
  b->ev = ev;
  b->cev = cev;
  b->aft = aft;
  b->caft = caft;
  e->spare = b;
}

static void entity_cleanup(troupe_entity *e) {
  batch_free(e->cur);
  e->cur = NULL;
  batch_free(e->spare);
  e->spare = NULL;
  troupe_buf_free(&e->scratch);
  while (e->q_head) {
    batch *b = e->q_head;
    e->q_head = b->next;
    batch_free(b);
  }
  e->q_tail = NULL;
  if (e->state) {
    troupe_value_free(e->def->state_type, e->state);
    free(e->state);
    e->state = NULL;
  }
  if (e->registered) {
    live_del(e->p, e->pid);
    e->registered = false;
  }
  free(e->pid);
  e->pid = NULL;
  free(e->snap_ring);
  e->snap_ring = NULL;
}

static void log_entity(troupe_entity *e, troupe_log_level lvl,
                       const char *fmt, ...) TROUPE_PRINTF(3, 4);
static void log_entity(troupe_entity *e, troupe_log_level lvl,
                       const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  troupe_log(e->ctx, lvl, "%s: %s", e->pid ? e->pid : e->id, msg);
}

/* ---- recovery ---------------------------------------------------------- */

typedef struct rd_ctx {
  troupe_ref self;
} rd_ctx;

static void on_snapshot(int status, const troupe_snapshot *snap, void *data) {
  rd_ctx *rc = data;
  emsg m = {.kind = EM_SNAP, .status = status};
  if (status == 0 && snap) {
    /* copy: the callback's snapshot lives only during this call */
    size_t ml = strlen(snap->manifest) + 1, pl = strlen(snap->persistence_id) + 1;
    troupe_snapshot *c = malloc(sizeof *c + ml + pl + snap->state_len + 1);
    if (!c) {
      m.status = TROUPE_ENOMEM;
    } else {
      char *p = (char *)(c + 1);
      memcpy(p, snap->manifest, ml);
      c->manifest = p;
      memcpy(p + ml, snap->persistence_id, pl);
      c->persistence_id = p + ml;
      memcpy(p + ml + pl, snap->state, snap->state_len);
      c->state = p + ml + pl;
      c->state_len = snap->state_len;
      c->seq = snap->seq;
      c->version = snap->version;
      c->timestamp_ms = snap->timestamp_ms;
      m.ptr = c;
    }
  } else if (status == TROUPE_ENOENT) {
    m.status = 0;   /* no snapshot */
  }
  post(rc->self, &m);
  free(rc);
}

static void on_highest(int status, uint64_t seq, void *data) {
  rd_ctx *rc = data;
  emsg m = {.kind = EM_HIGH, .status = status, .a = seq};
  post(rc->self, &m);
  free(rc);
}

/* Copy a journal page into one chunk (reader thread). Consecutive events
 * of one type share the copy of its manifest. */
static chunk *chunk_make(const troupe_event *ev, size_t n) {
  size_t bytes = 0;
  const char *prev = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!prev || strcmp(prev, ev[i].manifest) != 0)
      bytes += strlen(ev[i].manifest) + 1;
    prev = ev[i].manifest;
    bytes += ev[i].payload_len;
  }
  chunk *c = malloc(sizeof *c + n * sizeof c->ev[0] + bytes);
  if (!c) return NULL;
  c->n = n;
  char *p = (char *)&c->ev[n];
  const char *man = NULL;
  prev = NULL;
  for (size_t i = 0; i < n; i++) {
    rec_event *r = &c->ev[i];
    if (!prev || strcmp(prev, ev[i].manifest) != 0) {
      size_t ml = strlen(ev[i].manifest) + 1;
      memcpy(p, ev[i].manifest, ml);
      man = p;
      p += ml;
    }
    prev = ev[i].manifest;
    r->seq = ev[i].seq;
    r->manifest = man;
    r->version = ev[i].version;
    r->payload = (const uint8_t *)p;
    r->len = ev[i].payload_len;
    if (r->len) memcpy(p, ev[i].payload, r->len);
    p += r->len;
  }
  return c;
}

static int on_events(int status, const troupe_event *events, size_t n,
                     int done, void *data) {
  rd_ctx *rc = data;
  emsg m = {.kind = EM_PAGE, .status = status, .a = done != 0};
  if (status == 0 && n && !(m.ptr = chunk_make(events, n)))
    m.status = TROUPE_ENOMEM;
  if (m.status < 0) m.a = 1;
  if (m.status < 0 || n || done) post(rc->self, &m);
  if (m.a) free(rc);
  return m.status < 0;
}

static void recovery_failed(troupe_entity *e, int err) {
  e->phase = PH_FAILED;
  if (e->def->on_recovery_failed) e->def->on_recovery_failed(e, err);
  troupe_stop(e->ctx, e->self);
}

static void recovery_done(troupe_entity *e) {
  e->phase = PH_RUNNING;
  e->written = e->seq;
  if (e->def->on_recovered) e->def->on_recovered(e, e->state, e->seq);
  troupe_unstash(e->ctx, 1);
}

static uint32_t replay_page(const troupe_entity *e) {
  return e->def->replay_page ? e->def->replay_page : DEFAULT_PAGE;
}

/* Ask for the events from `from` on (up to replay_page of them). */
static int request_page(troupe_entity *e, uint64_t from) {
  rd_ctx *rc = malloc(sizeof *rc);
  int err = TROUPE_ENOMEM;
  e->req_got = 0;
  if (rc) {
    rc->self = e->self;
    err = troupe_journal_replay(e->p->journal, e->pid, from, UINT64_MAX,
                                replay_page(e), on_events, rc);
    if (err == 0) return 0;
  }
  free(rc);
  log_entity(e, TROUPE_LOG_ERROR, "recovery failed: cannot read events: %s",
             troupe_strerror(err));
  recovery_failed(e, err);
  return err;
}

/* Recovery decodes many events of few types: remember the last one. */
typedef struct resolve_cache {
  char manifest[128];
  uint32_t version;
  const troupe_type *type;
} resolve_cache;

static int decode_apply(troupe_entity *e, resolve_cache *rcache,
                        const char *manifest, uint32_t version,
                        const uint8_t *payload, size_t len, uint64_t seq) {
  const troupe_type *t = NULL;
  int rc = 0;
  if (rcache->type && rcache->version == version &&
      strcmp(rcache->manifest, manifest) == 0) {
    t = rcache->type;
  } else {
    rc = troupe_type_resolve(manifest, version, &t);
    if (rc == 0 && strlen(manifest) < sizeof rcache->manifest) {
      strcpy(rcache->manifest, manifest);
      rcache->version = version;
      rcache->type = t;
    }
  }
  if (rc < 0) {
    log_entity(e, TROUPE_LOG_ERROR,
               "recovery failed at seq %" PRIu64 ": unknown event type %s v%u",
               seq, manifest, version);
    return rc;
  }
  uint8_t stackbuf[256];
  void *v = t->size <= sizeof stackbuf ? stackbuf : malloc(t->size);
  if (!v) return TROUPE_ENOMEM;
  /* resolved to itself: no upcaster starts there, decode directly (no
   * registry lock per event) */
  if (t->version == version && strcmp(t->manifest, manifest) == 0)
    rc = troupe_decode(t, payload, len, v, NULL);
  else
    rc = troupe_decode_as(manifest, version, payload, len, t, v, NULL);
  if (rc < 0) {
    log_entity(e, TROUPE_LOG_ERROR,
               "recovery failed at seq %" PRIu64 ": event %s v%u does not "
               "decode: %s", seq, manifest, version, troupe_errmsg());
    if (v != stackbuf) free(v);
    return rc;
  }
  rc = e->def->apply(e->state, t, v);
  troupe_value_free(t, v);
  if (v != stackbuf) free(v);
  if (rc < 0)
    log_entity(e, TROUPE_LOG_ERROR,
               "recovery failed at seq %" PRIu64 ": apply returned %s", seq,
               troupe_strerror(rc));
  return rc;
}

static void handle_recovery(troupe_entity *e, emsg *m) {
  if (e->phase != PH_RECOVERING) return;
  if (m->status < 0) {
    log_entity(e, TROUPE_LOG_ERROR, "recovery failed: %s (%s)",
               troupe_strerror(m->status),
               m->kind == EM_SNAP ? "loading snapshot" :
               m->kind == EM_HIGH ? "reading highest seq" : "reading events");
    recovery_failed(e, m->status);
    return;
  }
  switch (m->kind) {
    case EM_SNAP: {
      troupe_snapshot *s = m->ptr;
      if (s) {
        const troupe_type *st = e->def->state_type;
        void *tmp = calloc(1, st->size);
        int rc = tmp ? troupe_decode_as(s->manifest, s->version, s->state,
                                        s->state_len, st, tmp, NULL)
                     : TROUPE_ENOMEM;
        if (rc < 0) {
          log_entity(e, TROUPE_LOG_ERROR,
                     "recovery failed: snapshot at seq %" PRIu64
                     " (%s v%u) does not decode: %s", s->seq, s->manifest,
                     s->version, troupe_errmsg());
          free(tmp);
          recovery_failed(e, rc);
          return;
        }
        troupe_value_free(st, e->state);
        memcpy(e->state, tmp, st->size);
        free(tmp);
        e->seq = s->seq;
      }
      /* The events after the snapshot, to the end of the journal. The
       * journal's highest is asked for only when there are none (see
       * EM_HIGH): once an event follows the snapshot without a gap, the
       * last one replayed is the highest (a delete mark above it would
       * have deleted it), so a recovery with events makes one request
       * per replay_page events and nothing else. */
      request_page(e, e->seq + 1);
      return;
    }
    case EM_HIGH:
      /* no event after the snapshot: it must be the journal's highest */
      e->high = m->a;
      if (e->high < e->seq) {
        /* the snapshot is ahead of the journal: trust the journal */
        log_entity(e, TROUPE_LOG_ERROR,
                   "recovery failed: snapshot at seq %" PRIu64
                   " is past the journal's highest %" PRIu64, e->seq, e->high);
        recovery_failed(e, TROUPE_ECORRUPT);
        return;
      }
      if (e->high == e->seq) {
        recovery_done(e);
      } else {
        log_entity(e, TROUPE_LOG_ERROR,
                   "recovery failed: events %" PRIu64 "..%" PRIu64
                   " are missing (deleted without a snapshot?)", e->seq + 1,
                   e->high);
        recovery_failed(e, TROUPE_ECORRUPT);
      }
      return;
    case EM_PAGE: {
      chunk *c = m->ptr;
      size_t n = c ? c->n : 0;
      e->req_got += n;
      bool last = m->a != 0, more = false;
      uint64_t upto = n ? c->ev[n - 1].seq : e->seq;
      if (last && e->req_got >= replay_page(e)) {
        /* ask for the next events before decoding these, so the journal
         * reads them meanwhile (a failure below drops what comes back) */
        more = true;
        if (request_page(e, upto + 1) < 0) return;
      }
      resolve_cache rcache;
      rcache.type = NULL;
      for (size_t i = 0; i < n; i++) {
        rec_event *r = &c->ev[i];
        if (r->seq != e->seq + 1) {
          log_entity(e, TROUPE_LOG_ERROR,
                     "recovery failed: gap in the journal: expected seq %"
                     PRIu64 ", found %" PRIu64, e->seq + 1, r->seq);
          recovery_failed(e, TROUPE_ECORRUPT);
          return;
        }
        int rc = decode_apply(e, &rcache, r->manifest, r->version,
                              r->payload, r->len, r->seq);
        if (rc < 0) {
          recovery_failed(e, rc);
          return;
        }
        e->seq = r->seq;
      }
      e->replayed += n;
      if (!last || more) return;
      if (e->replayed) {
        recovery_done(e);
        return;
      }
      rd_ctx *rc = malloc(sizeof *rc);
      int err = TROUPE_ENOMEM;
      if (rc) {
        rc->self = e->self;
        err = troupe_journal_highest(e->p->journal, e->pid, on_highest, rc);
        if (err == 0) return;
        free(rc);
      }
      recovery_failed(e, err);
      return;
    }
  }
}

/* ---- persisting -------------------------------------------------------- */

typedef struct ap_ctx {
  troupe_ref self;
  uint64_t batch;
} ap_ctx;

/* The context rides back in the message and is freed on the entity's
 * loop, the thread that allocated it: a block freed by the writer thread
 * goes to the writer's cache, and the loop's next malloc then takes the
 * slow path (and the arena lock the two threads share). */
static void on_appended(int status, uint64_t head, void *data) {
  ap_ctx *ac = data;
  emsg m = {.kind = EM_APPENDED, .status = status, .a = head, .b = ac->batch,
            .ptr = ac};
  post(ac->self, &m);
}

typedef struct snap_ctx {
  troupe_persistence *p;
  char *pid;
  uint32_t keep;
  uint64_t delete_to;
  troupe_system *sys;
} snap_ctx;

static void snap_ctx_free(snap_ctx *s) {
  free(s->pid);
  free(s);
}

static void on_deleted(int status, uint64_t seq, void *data) {
  snap_ctx *s = data;
  if (status < 0)
    troupe_system_log(s->sys, TROUPE_LOG_WARN,
                      "%s: deleting events up to %" PRIu64 " failed: %s",
                      s->pid, s->delete_to, troupe_strerror(status));
  snap_ctx_free(s);
}

static void on_retained(int status, uint64_t count, void *data) {
  snap_ctx *s = data;
  if (status < 0)
    troupe_system_log(s->sys, TROUPE_LOG_WARN,
                      "%s: snapshot retention failed: %s", s->pid,
                      troupe_strerror(status));
  if (status == 0 && s->delete_to &&
      troupe_journal_delete_to(s->p->journal, s->pid, s->delete_to,
                               on_deleted, s) == 0)
    return;
  snap_ctx_free(s);
}

static void on_snap_saved(int status, uint64_t count, void *data) {
  snap_ctx *s = data;
  (void)count;
  if (status < 0) {
    troupe_system_log(s->sys, TROUPE_LOG_WARN, "%s: snapshot failed: %s",
                      s->pid, troupe_strerror(status));
    snap_ctx_free(s);
    return;
  }
  if (s->keep &&
      troupe_snapshot_retain(s->p->snapshots, s->pid, s->keep, on_retained,
                             s) == 0)
    return;
  on_retained(0, 0, s);
}

static void take_snapshot(troupe_entity *e) {
  e->snap_wanted = false;
  e->since_snap = 0;
  if (!e->p->snapshots || e->seq == 0) return;
  const troupe_type *st = e->def->state_type;
  troupe_buf buf;
  troupe_buf_init(&buf);
  int rc = troupe_encode(st, e->state, &buf, NULL);
  snap_ctx *s = rc == 0 ? calloc(1, sizeof *s) : NULL;
  if (!s) {
    log_entity(e, TROUPE_LOG_WARN, "snapshot not taken: %s",
               troupe_strerror(rc < 0 ? rc : TROUPE_ENOMEM));
    troupe_buf_free(&buf);
    return;
  }
  s->p = e->p;
  s->pid = strdup(e->pid);
  s->keep = e->def->snapshot_keep;
  s->sys = troupe_ctx_system(e->ctx);
  if (e->def->delete_events) {
    uint32_t keep = e->def->snapshot_keep ? e->def->snapshot_keep : 1;
    if (!e->snap_ring) e->snap_ring = calloc(keep, sizeof *e->snap_ring);
    if (e->snap_ring) {
      e->snap_ring[e->snap_n % keep] = e->seq;
      e->snap_n++;
      /* the oldest kept snapshot bounds what may be deleted */
      uint64_t oldest = e->seq;
      uint32_t have = e->snap_n < keep ? e->snap_n : keep;
      for (uint32_t i = 0; i < have; i++)
        if (e->snap_ring[i] < oldest) oldest = e->snap_ring[i];
      s->delete_to = e->snap_n >= keep ? oldest : 0;
    }
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  troupe_snapshot snap = {
    .persistence_id = e->pid, .seq = e->seq,
    .timestamp_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
    .manifest = st->manifest, .version = st->version,
    .state = buf.data, .state_len = buf.len};
  if (!s->pid ||
      troupe_snapshot_save(e->p->snapshots, &snap, on_snap_saved, s) < 0) {
    log_entity(e, TROUPE_LOG_WARN, "snapshot not taken: %s", troupe_errmsg());
    snap_ctx_free(s);
  }
  troupe_buf_free(&buf);
}

static void run_afters(troupe_entity *e, batch *b) {
  e->cmd_sender = b->sender;   /* replies from callbacks go to its sender */
  for (size_t i = 0; i < b->naft; i++) {
    after_item *a = &b->aft[i];
    if (a->type)
      troupe_tell(a->to, a->type, a->value, e->self);
    else if (a->fn)
      a->fn(e, e->state, a->data);
  }
}

/* Apply completed batches in submission order. Returns <0 to fail. */
static int drain_completed(troupe_entity *e) {
  while (e->q_head && e->q_head->done) {
    batch *b = e->q_head;
    e->q_head = b->next;
    if (!e->q_head) e->q_tail = NULL;
    if (!b->async && b->nev) e->sync_inflight--;
    if (b->status < 0) {
      int st = b->status;
      if (st == TROUPE_ECONFLICT)
        log_entity(e, TROUPE_LOG_ERROR,
                   "write conflict: the journal is at seq %" PRIu64
                   " (another writer?); stopping for recovery", b->head);
      else
        log_entity(e, TROUPE_LOG_ERROR, "journal write failed: %s",
                   troupe_strerror(st));
      batch_free(b);
      e->phase = PH_FAILED;
      return st;
    }
    bool snap = false;
    for (size_t i = 0; i < b->nev; i++) {
      int rc = e->def->apply(e->state, b->ev[i].type, b->ev[i].value);
      e->seq++;
      e->since_snap++;
      if (rc < 0)
        log_entity(e, TROUPE_LOG_ERROR,
                   "apply failed for a persisted event at seq %" PRIu64 ": %s",
                   e->seq, troupe_strerror(rc));
      if (e->def->snapshot_when &&
          e->def->snapshot_when(e->state, b->ev[i].type, b->ev[i].value,
                                e->seq))
        snap = true;
    }
    run_afters(e, b);
    batch_release(e, b);
    if (snap || e->snap_wanted ||
        (e->def->snapshot_every && e->since_snap >= e->def->snapshot_every))
      take_snapshot(e);
  }
  return 0;
}

static void reject(troupe_entity *e, batch *b, int err) {
  log_entity(e, TROUPE_LOG_WARN, "persist rejected: %s (%s)",
             troupe_strerror(err), troupe_errmsg());
  if (e->def->on_persist_rejected)
    e->def->on_persist_rejected(e, e->state, err);
  batch_release(e, b);
}

/* Submit the batch built by the command just handled. */
static void submit(troupe_entity *e, batch *b) {
  b->id = ++e->next_batch;
  if (b->nev == 0) {
    if (!e->q_head) {       /* nothing ahead: effects now */
      run_afters(e, b);
      batch_release(e, b);
      if (e->snap_wanted) take_snapshot(e);
      return;
    }
    b->done = true;         /* after the batches ahead of it */
    b->submitted = true;
  } else {
    troupe_event evs[64];
    troupe_event *ev = b->nev <= 64 ? evs : calloc(b->nev, sizeof *ev);
    const char *tagv[16 * 64];
    const char **tags = b->nev <= 64 ? tagv : calloc(b->nev * 16, sizeof *tags);
    int rc = (ev && tags) ? 0 : TROUPE_ENOMEM;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    /* every payload goes into the entity's scratch buffer; payload holds
     * its offset until the buffer has stopped moving */
    troupe_buf *out = &e->scratch;
    troupe_buf_clear(out);
    for (size_t i = 0; i < b->nev && rc == 0; i++) {
      size_t at = out->len;
      rc = troupe_encode(b->ev[i].type, b->ev[i].value, out, NULL);
      if (rc < 0) break;
      memset(&ev[i], 0, sizeof ev[i]);
      ev[i].persistence_id = e->pid;
      ev[i].seq = e->written + 1 + i;
      ev[i].manifest = b->ev[i].type->manifest;
      ev[i].version = b->ev[i].type->version;
      ev[i].payload = (const void *)(uintptr_t)at;
      ev[i].payload_len = out->len - at;
      ev[i].timestamp_ms = now;
      if (e->def->tagger) {
        ev[i].tags = &tags[i * 16];
        ev[i].ntags = e->def->tagger(b->ev[i].type, b->ev[i].value,
                                     &tags[i * 16], 16);
        if (ev[i].ntags > 16) ev[i].ntags = 16;
      }
    }
    for (size_t i = 0; i < b->nev && rc == 0; i++)
      ev[i].payload = out->data + (uintptr_t)ev[i].payload;
    ap_ctx *ac = rc == 0 ? malloc(sizeof *ac) : NULL;
    if (rc == 0 && !ac) rc = TROUPE_ENOMEM;
    if (rc == 0) {
      ac->self = e->self;
      ac->batch = b->id;
      rc = troupe_journal_append(e->p->journal, e->pid, e->written, ev,
                                 b->nev, on_appended, ac);
      if (rc < 0) free(ac);
    }
    /* a one-off big command does not keep its buffer */
    if (out->cap > (64u << 10)) troupe_buf_free(out);
    if (ev != evs) free(ev);
    if (tags != tagv) free(tags);
    if (rc < 0) {
      reject(e, b, rc);
      return;
    }
    e->written += b->nev;
    b->submitted = true;
    if (!b->async) e->sync_inflight++;
  }
  if (e->q_tail) e->q_tail->next = b;
  else e->q_head = b;
  e->q_tail = b;
}

/* ---- the behaviour ------------------------------------------------------- */

static int entity_init(troupe_ctx *ctx, void *st, const void *arg) {
  troupe_entity *e = st;
  const spawn_arg *sa = arg;
  memset(e, 0, sizeof *e);
  e->ctx = ctx;
  e->p = sa->p;
  e->def = sa->def;
  e->self = troupe_self(ctx);
  snprintf(e->id, sizeof e->id, "%s", sa->id);
  int rc = claim_pid(e->p, e->def->type_name, e->id, &e->pid);
  if (rc < 0) {
    troupe_log(ctx, TROUPE_LOG_ERROR, "%s|%s: %s", e->def->type_name, e->id,
               rc == TROUPE_EBUSY ? "already live in this process (single "
                                    "writer)" : troupe_strerror(rc));
    return rc;
  }
  e->registered = true;
  e->state = calloc(1, e->def->state_type->size ? e->def->state_type->size : 1);
  if (!e->state) {
    entity_cleanup(e);
    return TROUPE_ENOMEM;
  }
  if (e->def->init_state) e->def->init_state(e->state, e->id);
  e->phase = PH_RECOVERING;
  if (e->p->snapshots) {
    rd_ctx *r = calloc(1, sizeof *r);
    if (!r) {
      entity_cleanup(e);
      return TROUPE_ENOMEM;
    }
    r->self = e->self;
    rc = troupe_snapshot_load(e->p->snapshots, e->pid, NULL, on_snapshot, r);
    if (rc < 0) free(r);
  } else {
    emsg m = {.kind = EM_SNAP};
    rc = troupe_tell(e->self, &T_EMSG, &m, TROUPE_REF_NONE);
  }
  if (rc < 0) {
    entity_cleanup(e);
    return rc;
  }
  return 0;
}

static int entity_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  troupe_entity *e = st;
  e->ctx = ctx;
  if (m->type == &T_EMSG) {
    emsg *em = (emsg *)m->data;
    if (em->kind == EM_APPENDED) {
      for (batch *b = e->q_head; b; b = b->next)
        if (b->id == em->b) {
          b->done = true;
          b->status = em->status;
          b->head = em->a;
          break;
        }
      int rc = drain_completed(e);
      if (rc < 0) return rc;
      if (e->sync_inflight == 0 && e->phase == PH_RUNNING)
        troupe_unstash(ctx, 1);
      return 0;
    }
    handle_recovery(e, em);
    return 0;
  }
  if (e->phase == PH_FAILED) return TROUPE_UNHANDLED;
  if (e->phase == PH_RECOVERING || e->sync_inflight > 0) {
    uint32_t cap = e->def->stash_capacity ? e->def->stash_capacity
                                          : DEFAULT_STASH;
    int rc = troupe_stash_size(ctx) >= cap ? TROUPE_ESTASHFULL
                                           : troupe_stash(ctx);
    if (rc < 0)
      log_entity(e, TROUPE_LOG_WARN, "command %s dropped: %s",
                 m->type->manifest, troupe_strerror(rc));
    return 0;
  }
  batch *b = batch_new(e);
  if (!b) return TROUPE_ENOMEM;
  e->cur = b;
  e->cmd_sender = m->sender;
  b->sender = m->sender;
  int rc = e->def->command(e, e->state, m);
  e->cur = NULL;
  if (rc < 0 || rc == TROUPE_UNHANDLED) {
    batch_release(e, b);
    if (rc == TROUPE_UNHANDLED && e->sync_inflight == 0)
      troupe_unstash(ctx, 1);
    return rc;
  }
  submit(e, b);
  /* Commands held while persisting come back one at a time, so each is
   * handled against the state its predecessors produced, and a command
   * that persists again leaves the rest held (no O(n^2) re-stashing). */
  if (e->sync_inflight == 0) troupe_unstash(ctx, 1);
  return 0;
}

static void entity_post_stop(troupe_ctx *ctx, void *st) {
  troupe_entity *e = st;
  e->ctx = ctx;
  entity_cleanup(e);
}

static void entity_pre_restart(troupe_ctx *ctx, void *st, int err) {
  troupe_entity *e = st;
  e->ctx = ctx;
  entity_cleanup(e);
}

/* The failure of a write stops the entity by default; a supervisor may
 * restart it (with backoff), which recovers from the journal. */
static const troupe_behavior entity_behavior = {
  .name = "entity",
  .state_size = sizeof(troupe_entity),
  .init = entity_init,
  .receive = entity_receive,
  .post_stop = entity_post_stop,
  .pre_restart = entity_pre_restart,
  .stash_capacity = UINT32_MAX,   /* the definition's cap applies */
};

/* What both kinds of entities check before spawning: the id, the state
 * type, and that the persistence id is not live already (the init claims
 * it for real; this gives the caller the error at once). */
static int spawn_persistent(troupe_system *sys, troupe_ctx *ctx,
                            troupe_persistence *p, const troupe_behavior *b,
                            const void *def, const char *type_name,
                            const troupe_type *state_type,
                            const char *entity_id, troupe_ref *out) {
  size_t idl = strlen(entity_id);
  if (idl == 0 || idl > ENTITY_ID_MAX)
    return troupe__err(TROUPE_EINVAL, "entity id must be 1-%d bytes",
                       ENTITY_ID_MAX);
  int rc = troupe_type_prepare(state_type);
  if (rc < 0) return rc;
  rc = troupe_type_prepare(&T_EMSG);
  if (rc < 0) return rc;
  char pid[ENTITY_ID_MAX + 260];
  snprintf(pid, sizeof pid, "%s|%s", type_name, entity_id);
  if (live_has(p, pid))
    return troupe__err(TROUPE_EBUSY, "entity %s is already live", pid);
  spawn_arg sa;
  memset(&sa, 0, sizeof sa);
  sa.p = p;
  sa.def = def;
  memcpy(sa.id, entity_id, idl);
  troupe_spawn_opts so = {
    .name = troupe__valid_actor_name(entity_id, idl) ? entity_id : NULL,
    .arg = &sa, .arg_size = sizeof sa};
  if (ctx) return troupe_spawn(ctx, b, &so, out);
  return troupe_system_spawn(sys, b, &so, out);
}

int troupe_entity_spawn(troupe_system *sys, troupe_ctx *ctx,
                        troupe_persistence *p, const troupe_entity_def *def,
                        const char *entity_id, troupe_ref *out) {
  if (!out || !p || !def || !entity_id || (!sys && !ctx))
    return troupe__err(TROUPE_EINVAL, "troupe_entity_spawn: NULL argument");
  *out = TROUPE_REF_NONE;
  if (!def->type_name || !*def->type_name || !def->state_type ||
      !def->command || !def->apply)
    return troupe__err(TROUPE_EINVAL, "troupe_entity_spawn: the definition "
                       "needs type_name, state_type, command and apply");
  if (!p->journal)
    return troupe__err(TROUPE_ESTATE, "troupe_entity_spawn: no journal");
  return spawn_persistent(sys, ctx, p, &entity_behavior, def, def->type_name,
                          def->state_type, entity_id, out);
}

/* ---- the handle ---------------------------------------------------------- */

int troupe_entity_persist(troupe_entity *e, const troupe_type *type,
                          const void *event, unsigned flags) {
  if (!e || !type)
    return troupe__err(TROUPE_EINVAL, "troupe_entity_persist: NULL argument");
  batch *b = e->cur;
  if (!b) return troupe__err(TROUPE_ESTATE, "persist outside a command");
  if (b->nev >= TROUPE_JOURNAL_MAX_BATCH)
    return troupe__err(TROUPE_ETOOBIG, "too many events in one command");
  if (b->nev == b->cev) {
    size_t nc = b->cev ? b->cev * 2 : 4;
    pending_ev *n = realloc(b->ev, nc * sizeof *n);
    if (!n) return troupe__err(TROUPE_ENOMEM, "persist");
    b->ev = n;
    b->cev = nc;
  }
  void *v = malloc(type->size ? type->size : 1);
  if (!v) return troupe__err(TROUPE_ENOMEM, "persist");
  int rc = troupe_value_copy(type, v, event);
  if (rc < 0) {
    free(v);
    return rc;
  }
  b->ev[b->nev].type = type;
  b->ev[b->nev].value = v;
  b->nev++;
  if (flags & TROUPE_PERSIST_ASYNC) b->async = true;
  return 0;
}

static after_item *after_slot(batch *b) {
  if (b->naft == b->caft) {
    size_t nc = b->caft ? b->caft * 2 : 2;
    after_item *n = realloc(b->aft, nc * sizeof *n);
    if (!n) return NULL;
    b->aft = n;
    b->caft = nc;
  }
  after_item *a = &b->aft[b->naft];
  memset(a, 0, sizeof *a);
  return a;
}

int troupe_entity_reply(troupe_entity *e, const troupe_type *type,
                        const void *value) {
  if (!e || !type)
    return troupe__err(TROUPE_EINVAL, "troupe_entity_reply: NULL argument");
  batch *b = e->cur;
  if (!b) return troupe_tell(e->cmd_sender, type, value, e->self);
  after_item *a = after_slot(b);
  if (!a) return troupe__err(TROUPE_ENOMEM, "reply");
  void *v = malloc(type->size ? type->size : 1);
  if (!v) return troupe__err(TROUPE_ENOMEM, "reply");
  int rc = type->size ? troupe_value_copy(type, v, value) : 0;
  if (rc < 0) {
    free(v);
    return rc;
  }
  a->type = type;
  a->value = v;
  a->to = e->cmd_sender;
  b->naft++;
  return 0;
}

int troupe_entity_after(troupe_entity *e,
                        void (*fn)(troupe_entity *, const void *, void *),
                        void *data) {
  if (!e || !fn)
    return troupe__err(TROUPE_EINVAL, "troupe_entity_after: NULL argument");
  batch *b = e->cur;
  if (!b) {
    fn(e, e->state, data);
    return 0;
  }
  after_item *a = after_slot(b);
  if (!a) return troupe__err(TROUPE_ENOMEM, "after");
  a->fn = fn;
  a->data = data;
  b->naft++;
  return 0;
}

int troupe_entity_snapshot(troupe_entity *e) {
  if (!e) return troupe__err(TROUPE_EINVAL, "troupe_entity_snapshot: NULL");
  e->snap_wanted = true;
  return 0;
}

troupe_ctx *troupe_entity_ctx(troupe_entity *e) { return e ? e->ctx : NULL; }
const char *troupe_entity_id(const troupe_entity *e) { return e ? e->id : ""; }
const char *troupe_entity_persistence_id(const troupe_entity *e) {
  return e && e->pid ? e->pid : "";
}
uint64_t troupe_entity_seq(const troupe_entity *e) { return e ? e->seq : 0; }

/* ================================================================== */
/* Durable-state entities                                              */

int troupe_persistence_set_state_store(troupe_persistence *p,
                                       troupe_state_store *store) {
  if (!p) return troupe__err(TROUPE_EINVAL, "set_state_store: NULL");
  p->states = store;
  return 0;
}

typedef struct dreply {
  const troupe_type *type;
  void *value;
} dreply;

struct troupe_durable {
  troupe_ctx *ctx;
  troupe_persistence *p;
  const troupe_durable_def *def;
  char id[ENTITY_ID_MAX + 1];
  char *pid;
  void *state;
  void *pending;          /* the state being written */
  uint64_t revision;
  int phase;
  bool registered;
  bool in_command;
  bool writing;
  troupe_ref self;
  troupe_ref sender;      /* of the command being handled / written */
  dreply *replies;
  size_t nreplies, creplies;
};

static void drop_replies(troupe_durable *d) {
  for (size_t i = 0; i < d->nreplies; i++) {
    troupe_value_free(d->replies[i].type, d->replies[i].value);
    free(d->replies[i].value);
  }
  d->nreplies = 0;
}

static void free_pending(troupe_durable *d) {
  if (!d->pending) return;
  troupe_value_free(d->def->state_type, d->pending);
  free(d->pending);
  d->pending = NULL;
}

static void durable_cleanup(troupe_durable *d) {
  drop_replies(d);
  free(d->replies);
  d->replies = NULL;
  d->creplies = 0;
  free_pending(d);
  if (d->state) {
    troupe_value_free(d->def->state_type, d->state);
    free(d->state);
    d->state = NULL;
  }
  if (d->registered) {
    live_del(d->p, d->pid);
    d->registered = false;
  }
  free(d->pid);
  d->pid = NULL;
}

static void on_state_got(int status, const troupe_state_record *rec,
                         void *data) {
  rd_ctx *rc = data;
  emsg m = {.kind = EM_GOT, .status = status};
  if (status == 0 && rec) {
    size_t ml = strlen(rec->manifest) + 1;
    troupe_state_record *c = malloc(sizeof *c + ml + rec->value_len + 1);
    if (!c) {
      m.status = TROUPE_ENOMEM;
    } else {
      char *p = (char *)(c + 1);
      memcpy(p, rec->manifest, ml);
      c->manifest = p;
      if (rec->value_len) memcpy(p + ml, rec->value, rec->value_len);
      c->value = p + ml;
      c->value_len = rec->value_len;
      c->revision = rec->revision;
      c->version = rec->version;
      c->timestamp_ms = rec->timestamp_ms;
      c->persistence_id = NULL;
      m.ptr = c;
    }
  }
  post(rc->self, &m);
  free(rc);
}

static void on_state_upserted(int status, uint64_t revision, void *data) {
  rd_ctx *rc = data;
  emsg m = {.kind = EM_UPSERTED, .status = status, .a = revision};
  post(rc->self, &m);
  free(rc);
}

static void durable_failed(troupe_durable *d, int err) {
  d->phase = PH_FAILED;
  if (d->def->on_recovery_failed) d->def->on_recovery_failed(d, err);
  troupe_stop(d->ctx, d->self);
}

static void send_replies(troupe_durable *d) {
  for (size_t i = 0; i < d->nreplies; i++)
    troupe_tell(d->sender, d->replies[i].type, d->replies[i].value, d->self);
  drop_replies(d);
}

static int durable_init(troupe_ctx *ctx, void *st, const void *arg) {
  troupe_durable *d = st;
  const spawn_arg *sa = arg;
  memset(d, 0, sizeof *d);
  d->ctx = ctx;
  d->p = sa->p;
  d->def = sa->def;
  d->self = troupe_self(ctx);
  snprintf(d->id, sizeof d->id, "%s", sa->id);
  int rc = claim_pid(d->p, d->def->type_name, d->id, &d->pid);
  if (rc < 0) {
    troupe_log(ctx, TROUPE_LOG_ERROR, "%s|%s: %s", d->def->type_name, d->id,
               rc == TROUPE_EBUSY ? "already live in this process (single "
                                    "writer)" : troupe_strerror(rc));
    return rc;
  }
  d->registered = true;
  d->state = calloc(1, d->def->state_type->size ? d->def->state_type->size
                                                : 1);
  rd_ctx *r = calloc(1, sizeof *r);
  if (!d->state || !r) {
    free(r);
    durable_cleanup(d);
    return TROUPE_ENOMEM;
  }
  if (d->def->init_state) d->def->init_state(d->state, d->id);
  d->phase = PH_RECOVERING;
  r->self = d->self;
  rc = troupe_state_get(d->p->states, d->pid, on_state_got, r);
  if (rc < 0) {
    free(r);
    durable_cleanup(d);
  }
  return rc;
}

static int durable_completion(troupe_durable *d, emsg *m) {
  if (m->kind == EM_GOT) {
    if (d->phase != PH_RECOVERING) return 0;
    troupe_state_record *rec = m->ptr;
    if (m->status < 0) {
      troupe_log(d->ctx, TROUPE_LOG_ERROR, "%s: loading the state failed: %s",
                 d->pid, troupe_strerror(m->status));
      durable_failed(d, m->status);
      return 0;
    }
    if (rec) {
      const troupe_type *st = d->def->state_type;
      void *tmp = calloc(1, st->size ? st->size : 1);
      int rc = tmp ? troupe_decode_as(rec->manifest, rec->version, rec->value,
                                      rec->value_len, st, tmp, NULL)
                   : TROUPE_ENOMEM;
      if (rc < 0) {
        troupe_log(d->ctx, TROUPE_LOG_ERROR,
                   "%s: stored state at revision %" PRIu64 " (%s v%u) does "
                   "not decode: %s", d->pid, rec->revision, rec->manifest,
                   rec->version, troupe_errmsg());
        free(tmp);
        durable_failed(d, rc);
        return 0;
      }
      troupe_value_free(st, d->state);
      free(d->state);
      d->state = tmp;
      d->revision = rec->revision;
    }
    d->phase = PH_RUNNING;
    if (d->def->on_recovered) d->def->on_recovered(d, d->state, d->revision);
    troupe_unstash(d->ctx, 1);
    return 0;
  }
  if (m->kind == EM_UPSERTED) {
    d->writing = false;
    if (m->status < 0) {
      troupe_log(d->ctx, TROUPE_LOG_ERROR, "%s: %s (stored revision %" PRIu64
                 ", expected %" PRIu64 ")", d->pid,
                 m->status == TROUPE_ECONFLICT ? "write conflict"
                                               : troupe_strerror(m->status),
                 m->a, d->revision);
      free_pending(d);
      drop_replies(d);
      d->phase = PH_FAILED;
      return m->status;
    }
    troupe_value_free(d->def->state_type, d->state);
    free(d->state);
    d->state = d->pending;
    d->pending = NULL;
    d->revision = m->a;
    send_replies(d);
    troupe_unstash(d->ctx, 1);
  }
  return 0;
}

static int durable_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  troupe_durable *d = st;
  d->ctx = ctx;
  if (m->type == &T_EMSG) return durable_completion(d, (emsg *)m->data);
  if (d->phase == PH_FAILED) return TROUPE_UNHANDLED;
  if (d->phase == PH_RECOVERING || d->writing) {
    uint32_t cap = d->def->stash_capacity ? d->def->stash_capacity
                                          : DEFAULT_STASH;
    int rc = troupe_stash_size(ctx) >= cap ? TROUPE_ESTASHFULL
                                           : troupe_stash(ctx);
    if (rc < 0)
      troupe_log(ctx, TROUPE_LOG_WARN, "%s: command %s dropped: %s", d->pid,
                 m->type->manifest, troupe_strerror(rc));
    return 0;
  }
  d->sender = m->sender;
  d->in_command = true;
  int rc = d->def->command(d, d->state, m);
  d->in_command = false;
  if (rc < 0 || rc == TROUPE_UNHANDLED) {
    free_pending(d);
    drop_replies(d);
    if (rc == TROUPE_UNHANDLED) troupe_unstash(ctx, 1);
    return rc;
  }
  if (!d->pending) {
    send_replies(d);
    troupe_unstash(ctx, 1);
    return 0;
  }
  /* write the new state */
  troupe_buf buf;
  troupe_buf_init(&buf);
  const troupe_type *stt = d->def->state_type;
  rc = troupe_encode(stt, d->pending, &buf, NULL);
  rd_ctx *r = rc == 0 ? calloc(1, sizeof *r) : NULL;
  if (rc == 0 && !r) rc = TROUPE_ENOMEM;
  if (rc == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    troupe_state_record rec = {
      .persistence_id = d->pid,
      .timestamp_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
      .manifest = stt->manifest, .version = stt->version,
      .value = buf.data, .value_len = buf.len};
    r->self = d->self;
    rc = troupe_state_upsert(d->p->states, &rec, d->revision,
                             on_state_upserted, r);
    if (rc < 0) free(r);
  }
  troupe_buf_free(&buf);
  if (rc < 0) {
    troupe_log(ctx, TROUPE_LOG_WARN, "%s: state not stored: %s (%s)", d->pid,
               troupe_strerror(rc), troupe_errmsg());
    free_pending(d);
    drop_replies(d);
    troupe_unstash(ctx, 1);
    return 0;
  }
  d->writing = true;
  return 0;
}

static void durable_post_stop(troupe_ctx *ctx, void *st) {
  troupe_durable *d = st;
  d->ctx = ctx;
  durable_cleanup(d);
}

static void durable_pre_restart(troupe_ctx *ctx, void *st, int err) {
  troupe_durable *d = st;
  d->ctx = ctx;
  durable_cleanup(d);
}

static const troupe_behavior durable_behavior = {
  .name = "durable",
  .state_size = sizeof(troupe_durable),
  .init = durable_init,
  .receive = durable_receive,
  .post_stop = durable_post_stop,
  .pre_restart = durable_pre_restart,
  .stash_capacity = UINT32_MAX,
};

int troupe_durable_spawn(troupe_system *sys, troupe_ctx *ctx,
                         troupe_persistence *p, const troupe_durable_def *def,
                         const char *entity_id, troupe_ref *out) {
  if (!out || !p || !def || !entity_id || (!sys && !ctx))
    return troupe__err(TROUPE_EINVAL, "troupe_durable_spawn: NULL argument");
  *out = TROUPE_REF_NONE;
  if (!def->type_name || !*def->type_name || !def->state_type ||
      !def->command)
    return troupe__err(TROUPE_EINVAL, "troupe_durable_spawn: the definition "
                       "needs type_name, state_type and command");
  if (!p->states)
    return troupe__err(TROUPE_ESTATE, "troupe_durable_spawn: no state store "
                       "(troupe_persistence_set_state_store)");
  return spawn_persistent(sys, ctx, p, &durable_behavior, def, def->type_name,
                          def->state_type, entity_id, out);
}

int troupe_durable_persist(troupe_durable *d, const void *new_state) {
  if (!d || !new_state)
    return troupe__err(TROUPE_EINVAL, "troupe_durable_persist: NULL");
  if (!d->in_command || d->pending)
    return troupe__err(TROUPE_ESTATE, "persist once, inside a command");
  const troupe_type *st = d->def->state_type;
  void *v = malloc(st->size ? st->size : 1);
  if (!v) return troupe__err(TROUPE_ENOMEM, "durable persist");
  int rc = troupe_value_copy(st, v, new_state);
  if (rc < 0) {
    free(v);
    return rc;
  }
  d->pending = v;
  return 0;
}

int troupe_durable_reply(troupe_durable *d, const troupe_type *type,
                         const void *value) {
  if (!d || !type)
    return troupe__err(TROUPE_EINVAL, "troupe_durable_reply: NULL");
  if (!d->in_command) return troupe_tell(d->sender, type, value, d->self);
  if (d->nreplies == d->creplies) {
    size_t nc = d->creplies ? d->creplies * 2 : 2;
    dreply *n = realloc(d->replies, nc * sizeof *n);
    if (!n) return troupe__err(TROUPE_ENOMEM, "reply");
    d->replies = n;
    d->creplies = nc;
  }
  void *v = malloc(type->size ? type->size : 1);
  if (!v) return troupe__err(TROUPE_ENOMEM, "reply");
  int rc = type->size ? troupe_value_copy(type, v, value) : 0;
  if (rc < 0) {
    free(v);
    return rc;
  }
  d->replies[d->nreplies].type = type;
  d->replies[d->nreplies].value = v;
  d->nreplies++;
  return 0;
}

troupe_ctx *troupe_durable_ctx(troupe_durable *d) { return d ? d->ctx : NULL; }
const char *troupe_durable_id(const troupe_durable *d) {
  return d ? d->id : "";
}
uint64_t troupe_durable_revision(const troupe_durable *d) {
  return d ? d->revision : 0;
}
