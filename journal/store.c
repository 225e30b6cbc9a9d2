/* store.c: what every backend shares: options, the registry of open
 * stores by spec, handles, operations and their completion, live
 * subscriptions, and the waiter behind the *_sync wrappers. */
#include "journal/internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

_Thread_local int jnl_in_store_thread;

void troupe_store_options_init(troupe_store_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->sync = 1;
  o->create_if_missing = 0;
  o->page_size = 256;
  o->reader_threads = 2;
  o->max_payload = 16u << 20;
}

static int check_options(const troupe_store_options *o) {
  if (o->sync != 0 && o->sync != 1)
    return troupe__err(TROUPE_EINVAL, "options: sync must be 0 or 1");
  if (o->page_size == 0 || o->page_size > 1000000)
    return troupe__err(TROUPE_EINVAL, "options: page_size 1..1000000");
  if (o->reader_threads == 0 || o->reader_threads > 64)
    return troupe__err(TROUPE_EINVAL, "options: reader_threads 1..64");
  if (o->max_payload == 0 || o->max_payload > (1u << 30))
    return troupe__err(TROUPE_EINVAL, "options: max_payload 1..1 GiB");
  return 0;
}

void jnl_store_init(jnl_store *s, const jnl_backend_vt *vt,
                        const troupe_store_options *o) {
  memset(s, 0, sizeof *s);
  s->vt = vt;
  s->opts = *o;
  pthread_mutex_init(&s->sub_mu, NULL);
  pthread_mutex_init(&s->idle_mu, NULL);
  pthread_cond_init(&s->idle_cv, NULL);
  atomic_init(&s->nsubs, 0);
}

void jnl_store_destroy(jnl_store *s) {
  pthread_mutex_destroy(&s->sub_mu);
  pthread_mutex_destroy(&s->idle_mu);
  pthread_cond_destroy(&s->idle_cv);
  free(s->key);
}

/* --- registry ------------------------------------------------------------ */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static jnl_store *reg_head;

/* Split a spec into backend and path, and the registry key (NULL for a
 * private store). */
static int parse_spec(const char *spec, const jnl_backend_vt **vt,
                      const char **path, char **key) {
  *key = NULL;
  if (strncmp(spec, "memory:", 7) == 0) {
    *vt = &jnl_memory_backend;
    *path = spec + 7;
    if (**path) {
      *key = strdup(spec);
      if (!*key) return TROUPE_ENOMEM;
    }
    return 0;
  }
  if (strncmp(spec, "rocksdb:", 8) == 0) {
    *vt = &jnl_rocksdb_backend;
    *path = spec + 8;
    if (!**path)
      return troupe__err(TROUPE_EINVAL, "spec \"%s\": no directory", spec);
    char buf[PATH_MAX];
    const char *canon = realpath(*path, buf) ? buf : *path;
    size_t n = strlen(canon);
    while (n > 1 && canon[n - 1] == '/') n--;
    *key = malloc(8 + n + 1);
    if (!*key) return TROUPE_ENOMEM;
    memcpy(*key, "rocksdb:", 8);
    memcpy(*key + 8, canon, n);
    (*key)[8 + n] = 0;
    return 0;
  }
  /* PostgreSQL: a libpq URI as is, or "pg:" + a key=value string */
  if (strncmp(spec, "postgresql://", 13) == 0 ||
      strncmp(spec, "postgres://", 11) == 0 || strncmp(spec, "pg:", 3) == 0) {
    *vt = &jnl_pg_backend;
    *path = spec[0] == 'p' && spec[1] == 'g' && spec[2] == ':' ? spec + 3 : spec;
    if (!(*key = strdup(spec))) return TROUPE_ENOMEM;
    return 0;
  }
  return troupe__err(TROUPE_EINVAL,
                     "spec \"%s\": expected memory:[NAME], rocksdb:DIR, "
                     "postgresql://URI or pg:CONNINFO", spec);
}

int jnl_handle_open(jnl_handle *h, const char *spec,
                        const troupe_store_options *opts) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  if (opts) o = *opts;
  if (!spec) return troupe__err(TROUPE_EINVAL, "spec is NULL");
  int rc = check_options(&o);
  if (rc < 0) return rc;
  const jnl_backend_vt *vt;
  const char *path;
  char *key;
  if ((rc = parse_spec(spec, &vt, &path, &key)) < 0) return rc;

  memset(h, 0, sizeof *h);
  h->spec = strdup(spec);
  if (!h->spec) {
    free(key);
    return troupe__err(TROUPE_ENOMEM, "spec");
  }
  atomic_init(&h->inflight, 0);
  atomic_init(&h->closing, 0);

  pthread_mutex_lock(&reg_mu);
  jnl_store *s = NULL;
  if (key)
    for (s = reg_head; s; s = s->reg_next)
      if (strcmp(s->key, key) == 0) break;
  if (s) {
    s->refs++;
    free(key);
  } else {
    rc = vt->open(path, &o, &s);
    if (rc == 0) {
      s->key = key;
      s->refs = 1;
      if (key) {
        s->reg_next = reg_head;
        reg_head = s;
      }
    } else {
      free(key);
    }
  }
  pthread_mutex_unlock(&reg_mu);
  if (rc < 0) {
    free(h->spec);
    return rc;
  }
  h->store = s;
  return 0;
}

/* --- schema versions ------------------------------------------------------ */

/* Resolve `spec` for a schema call: its backend and path, refusing a store
 * this process has open (a migration under a live store is unsafe). The
 * caller frees *key. */
static int schema_target(const char *spec, const jnl_backend_vt **vt,
                         const char **path, char **key) {
  if (!spec) return troupe__err(TROUPE_EINVAL, "spec is NULL");
  int rc = parse_spec(spec, vt, path, key);
  if (rc < 0) return rc;
  int busy = 0;
  pthread_mutex_lock(&reg_mu);
  for (jnl_store *s = reg_head; s && *key; s = s->reg_next)
    if (strcmp(s->key, *key) == 0) busy = 1;
  pthread_mutex_unlock(&reg_mu);
  if (busy) {
    free(*key);
    *key = NULL;
    return troupe__err(TROUPE_EBUSY,
                       "spec \"%s\": the store is open in this process", spec);
  }
  return 0;
}

int troupe_store_schema(const char *spec, troupe_schema_status *out) {
  if (!out) return troupe__err(TROUPE_EINVAL, "schema: out is NULL");
  memset(out, 0, sizeof *out);
  const jnl_backend_vt *vt;
  const char *path;
  char *key = NULL;
  int rc = schema_target(spec, &vt, &path, &key);
  free(key);
  if (rc < 0) return rc;
  if (!vt->schema) {              /* nothing stored: always current */
    out->found = out->supported = 1;
    return 0;
  }
  return vt->schema(path, out);
}

int troupe_store_migrate(const char *spec, int dry_run, troupe_migrate_cb cb,
                         void *data) {
  const jnl_backend_vt *vt;
  const char *path;
  char *key = NULL;
  int rc = schema_target(spec, &vt, &path, &key);
  free(key);
  if (rc < 0) return rc;
  return vt->migrate ? vt->migrate(path, dry_run != 0, cb, data) : 0;
}

int jnl_handle_new(const char *spec, const troupe_store_options *opts,
                   const char *what, jnl_handle **out) {
  if (!out) return troupe__err(TROUPE_EINVAL, "%s open: out is NULL", what);
  *out = NULL;
  jnl_handle *h = malloc(sizeof *h);
  if (!h) return troupe__err(TROUPE_ENOMEM, "%s", what);
  int rc = jnl_handle_open(h, spec, opts);
  if (rc < 0) {
    free(h);
    return rc;
  }
  *out = h;
  return 0;
}

int jnl_handle_free(jnl_handle *h) {
  if (!h) return 0;
  int rc = jnl_handle_close(h);
  if (rc == 0) free(h);
  return rc;
}

static void drop_subs(jnl_store *s, jnl_handle *h);

int jnl_handle_close(jnl_handle *h) {
  if (jnl_in_store_thread)
    return troupe__err(TROUPE_EWRONGTHREAD,
                       "close called on a store thread (from a callback)");
  jnl_store *s = h->store;
  atomic_store(&h->closing, 1);
  pthread_mutex_lock(&s->idle_mu);
  while (atomic_load(&h->inflight) != 0)
    pthread_cond_wait(&s->idle_cv, &s->idle_mu);
  pthread_mutex_unlock(&s->idle_mu);
  drop_subs(s, h);
  pthread_mutex_lock(&reg_mu);
  int last = --s->refs == 0;
  if (last && s->key) {
    jnl_store **pp = &reg_head;
    while (*pp != s) pp = &(*pp)->reg_next;
    *pp = s->reg_next;
  }
  /* closing under the lock keeps a reopen of the same spec from racing
   * the RocksDB lock file */
  if (last) s->vt->close(s);
  pthread_mutex_unlock(&reg_mu);
  free(h->spec);
  return 0;
}

int jnl_check_id(const char *what, const char *id, size_t *len) {
  if (!id) return troupe__err(TROUPE_EINVAL, "%s is NULL", what);
  size_t n = strnlen(id, TROUPE_JOURNAL_MAX_ID_LEN + 1);
  if (n == 0) return troupe__err(TROUPE_EINVAL, "%s is empty", what);
  if (n > TROUPE_JOURNAL_MAX_ID_LEN)
    return troupe__err(TROUPE_EINVAL, "%s longer than %u bytes", what,
                       TROUPE_JOURNAL_MAX_ID_LEN);
  *len = n;
  return 0;
}

/* --- operations ---------------------------------------------------------- */

jnl_op *jnl_op_new(jnl_handle *h, int kind, const char *pid,
                           size_t pid_len, size_t extra) {
  jnl_op *op = malloc(sizeof *op + pid_len + 1 + extra);
  if (!op) return NULL;
  memset(op, 0, sizeof *op);
  op->h = h;
  op->kind = kind;
  char *p = (char *)(op + 1);
  if (pid_len) memcpy(p, pid, pid_len);
  p[pid_len] = 0;
  op->pid = p;
  op->pid_len = pid_len;
  op->buf = (uint8_t *)p + pid_len + 1;
  op->buf_len = extra;
  return op;
}

/* Drop one in-flight op of h; h may be freed as soon as the count is 0,
 * so only the store is touched after the decrement. */
static void idle_release(jnl_handle *h) {
  jnl_store *s = h->store;
  if (atomic_fetch_sub(&h->inflight, 1) == 1) {
    pthread_mutex_lock(&s->idle_mu);
    pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->idle_mu);
  }
}

int jnl_op_submit(jnl_op *op) {
  jnl_handle *h = op->h;
  atomic_fetch_add(&h->inflight, 1);
  if (atomic_load(&h->closing)) {
    idle_release(h);
    free(op);
    return troupe__err(TROUPE_ECLOSED, "store handle is closing");
  }
  h->store->vt->submit(h->store, op);
  return 0;
}

void jnl_op_fail(jnl_op *op, int status, const char *fmt, ...) {
  op->status = status;
  free(op->detail);
  op->detail = NULL;
  if (fmt) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    op->detail = strdup(buf);
  }
}

static void set_detail(jnl_op *op) {
  if (op->status < 0)
    troupe__err(op->status, "%s",
                op->detail ? op->detail : troupe_strerror(op->status));
}

int jnl_op_emit_events(jnl_op *op, const troupe_event *ev, size_t n,
                           int done) {
  if (op->finished) return 1;
  int stop = ((troupe_journal_events_cb)op->cb)(0, ev, n, done, op->data);
  if (done || stop) op->finished = 1;
  return stop || done;
}

void jnl_op_emit_ids(jnl_op *op, const char *const *ids, size_t n) {
  op->finished = 1;
  ((troupe_journal_ids_cb)op->cb)(0, ids, n, op->data);
}

void jnl_op_emit_snapshot(jnl_op *op, const troupe_snapshot *snap) {
  op->finished = 1;
  ((troupe_snapshot_load_cb)op->cb)(0, snap, op->data);
}

void jnl_op_emit_state(jnl_op *op, const troupe_state_record *rec) {
  op->finished = 1;
  ((troupe_state_get_cb)op->cb)(0, rec, op->data);
}

void jnl_op_complete(jnl_op *op) {
  jnl_handle *h = op->h;
  int st = op->status;
  set_detail(op);
  if (st < 0 || !op->finished) {
    switch (op->kind) {
    case JNL_OP_APPEND:
      ((troupe_journal_append_cb)op->cb)(st, op->r0, op->data);
      break;
    case JNL_OP_DELETE:
    case JNL_OP_HIGHEST:
      ((troupe_journal_seq_cb)op->cb)(st, op->r0, op->data);
      break;
    case JNL_OP_REPLAY:
    case JNL_OP_BY_TAG:
    case JNL_OP_BY_SLICE:
      if (st < 0 || !op->finished)
        ((troupe_journal_events_cb)op->cb)(st, NULL, 0, 1, op->data);
      break;
    case JNL_OP_LIST_IDS:
      ((troupe_journal_ids_cb)op->cb)(st, NULL, 0, op->data);
      break;
    case JNL_OP_SNAP_SAVE:
    case JNL_OP_SNAP_DELETE:
    case JNL_OP_SNAP_RETAIN:
      ((troupe_snapshot_done_cb)op->cb)(st, op->r0, op->data);
      break;
    case JNL_OP_SNAP_LOAD:
      ((troupe_snapshot_load_cb)op->cb)(st, NULL, op->data);
      break;
    case JNL_OP_STATE_PUT:
    case JNL_OP_STATE_DELETE:
      ((troupe_state_rev_cb)op->cb)(st, op->r0, op->data);
      break;
    case JNL_OP_STATE_GET:
      ((troupe_state_get_cb)op->cb)(st, NULL, op->data);
      break;
    }
  }
  free(op->detail);
  free(op);
  idle_release(h);
}

/* --- subscriptions ------------------------------------------------------- */

/* The store whose subscribers this thread is calling, if any. */
static _Thread_local jnl_store *notifying_store;

struct troupe_journal_sub {
  jnl_sub *next;
  jnl_store *store;
  jnl_handle *h;
  troupe_journal_notify_cb cb;
  void *data;
  int dead;
  char tag[];
};

int troupe_journal_subscribe(troupe_journal *j, const char *tag,
                             troupe_journal_notify_cb cb, void *data,
                             troupe_journal_sub **out) {
  if (!j || !cb || !out)
    return troupe__err(TROUPE_EINVAL, "subscribe: NULL argument");
  size_t tl = 0;
  if (tag) {
    tl = strnlen(tag, TROUPE_JOURNAL_MAX_TAG_LEN + 1);
    if (tl == 0 || tl > TROUPE_JOURNAL_MAX_TAG_LEN)
      return troupe__err(TROUPE_EINVAL, "subscribe: bad tag");
  }
  if (atomic_load(&j->h.closing))
    return troupe__err(TROUPE_ECLOSED, "journal is closing");
  jnl_sub *s = calloc(1, sizeof *s + tl + 1);
  if (!s) return troupe__err(TROUPE_ENOMEM, "subscription");
  s->store = j->h.store;
  s->h = &j->h;
  s->cb = cb;
  s->data = data;
  if (tag) memcpy(s->tag, tag, tl + 1);
  jnl_store *st = j->h.store;
  /* from inside a notification this thread already holds sub_mu; adding
   * at the head does not disturb the walk in progress */
  int held = notifying_store == st;
  if (!held) pthread_mutex_lock(&st->sub_mu);
  s->next = st->subs;
  st->subs = s;
  atomic_fetch_add(&st->nsubs, 1);
  if (!held) pthread_mutex_unlock(&st->sub_mu);
  *out = s;
  return 0;
}

/* sub_mu held */
static void reap(jnl_store *st) {
  for (jnl_sub **pp = &st->subs; *pp;) {
    jnl_sub *s = *pp;
    if (s->dead) {
      *pp = s->next;
      atomic_fetch_sub(&st->nsubs, 1);
      free(s);
    } else {
      pp = &s->next;
    }
  }
}

void troupe_journal_unsubscribe(troupe_journal_sub *sub) {
  if (!sub) return;
  jnl_store *st = sub->store;
  if (notifying_store == st) {
    sub->dead = 1;        /* from inside a callback: reaped after the call */
    return;
  }
  pthread_mutex_lock(&st->sub_mu);
  sub->dead = 1;
  reap(st);
  pthread_mutex_unlock(&st->sub_mu);
}

static void drop_subs(jnl_store *st, jnl_handle *h) {
  pthread_mutex_lock(&st->sub_mu);
  for (jnl_sub *s = st->subs; s; s = s->next)
    if (s->h == h) s->dead = 1;
  reap(st);
  pthread_mutex_unlock(&st->sub_mu);
}

void jnl_notify(jnl_store *st, const troupe_event *ev, size_t n) {
  if (atomic_load(&st->nsubs) == 0 || n == 0) return;
  pthread_mutex_lock(&st->sub_mu);
  notifying_store = st;
  troupe_event *tmp = NULL;
  for (jnl_sub *s = st->subs; s; s = s->next) {
    if (s->dead) continue;
    if (!s->tag[0]) {
      s->cb(ev, n, s->data);
      continue;
    }
    if (!tmp && !(tmp = malloc(n * sizeof *tmp))) continue;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (jnl_rec_has_tag(&ev[i], s->tag)) tmp[k++] = ev[i];
    if (k) s->cb(tmp, k, s->data);
  }
  free(tmp);
  notifying_store = NULL;
  reap(st);
  pthread_mutex_unlock(&st->sub_mu);
}

/* --- waiter -------------------------------------------------------------- */

int jnl_sync_allowed(void) {
  if (jnl_in_store_thread)
    return troupe__err(TROUPE_EWRONGTHREAD,
                       "a *_sync call on a store thread would wait forever");
  return 0;
}

void jnl_waiter_init(jnl_waiter *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
}

void jnl_waiter_signal(jnl_waiter *w, int status, uint64_t r0) {
  pthread_mutex_lock(&w->mu);
  w->status = status;
  w->r0 = r0;
  if (status < 0) snprintf(w->detail, sizeof w->detail, "%s", troupe_errmsg());
  w->done = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

int jnl_waiter_wait(jnl_waiter *w) {
  pthread_mutex_lock(&w->mu);
  while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  if (w->status < 0) troupe__err(w->status, "%s", w->detail);
  return w->status;
}
