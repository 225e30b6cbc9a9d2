/* memory.c: the in-memory backend ("memory:" and "memory:NAME").
 *
 * One worker thread executes every operation in submission order, so the
 * backend has the same threading contract as RocksDB (callbacks on a store
 * thread, never inside the submitting call's stack) with none of its
 * durability. Events are kept as the shared record bytes (record.c) so
 * reads decode exactly what a persistent backend would return.
 *
 * Offsets are gap-free from 1, so the global append-order index used by
 * by_slice is an array indexed by offset - 1 ({stream, seq}); deleted
 * events stay in it and are skipped by their stream's deleted_to. */
#include "journal/internal.h"

typedef struct mem_blob {
  uint8_t *p;
  size_t len;
} mem_blob;

typedef struct mem_snap {
  uint64_t seq;
  mem_blob v;
} mem_snap;

typedef struct mem_stream {
  uint64_t head, deleted_to;
  mem_blob *ev;            /* index seq-1; deleted ones freed */
  size_t evcap;
  mem_snap *snaps;         /* sorted by seq */
  size_t nsnap, snapcap;
  mem_blob state;
  uint64_t rev;
  uint32_t slice;
  size_t len;
  char name[];
} mem_stream;

typedef struct mem_tagent {
  uint64_t offset;
  mem_stream *s;
  uint64_t seq;
} mem_tagent;

/* One entry of the global append-order index (by_slice). */
typedef struct mem_offent {
  mem_stream *s;
  uint64_t seq;
} mem_offent;

typedef struct mem_tag {
  mem_tagent *e;
  size_t n, cap;
  char name[];
} mem_tag;

typedef struct mem_store {
  jnl_store base;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  jnl_op *head, **tail;
  int stop;
  /* worker thread only */
  jnl_hmap streams, tags;
  mem_stream **all;
  size_t nall, allcap;
  uint64_t offset;
  mem_offent *offs;        /* index offset - 1; m->offset entries */
  size_t offcap;
  jnl_page page;
} mem_store;

static mem_stream *find(mem_store *m, const char *pid, size_t len) {
  return jnl_hmap_get(&m->streams, pid, len, jnl_hash(pid, len));
}

static mem_stream *find_or_add(mem_store *m, jnl_op *op) {
  uint64_t h = jnl_hash(op->pid, op->pid_len);
  mem_stream *s = jnl_hmap_get(&m->streams, op->pid, op->pid_len, h);
  if (s) return s;
  if (m->nall == m->allcap) {
    size_t cap = m->allcap ? m->allcap * 2 : 64;
    mem_stream **a = realloc(m->all, cap * sizeof *a);
    if (!a) return NULL;
    m->all = a;
    m->allcap = cap;
  }
  s = calloc(1, sizeof *s + op->pid_len + 1);
  if (!s) return NULL;
  memcpy(s->name, op->pid, op->pid_len + 1);
  s->len = op->pid_len;
  s->slice = jnl_slice(s->name, s->len);
  if (jnl_hmap_put(&m->streams, s->name, s->len, h, s) < 0) {
    free(s);
    return NULL;
  }
  m->all[m->nall++] = s;
  return s;
}

static int blob_set(mem_blob *b, const uint8_t *p, size_t len) {
  uint8_t *c = malloc(len ? len : 1);
  if (!c) return TROUPE_ENOMEM;
  if (len) memcpy(c, p, len);
  free(b->p);
  b->p = c;
  b->len = len;
  return 0;
}

static int tag_add(mem_store *m, const char *tag, uint64_t off, mem_stream *s,
                   uint64_t seq) {
  size_t tl = strlen(tag);
  uint64_t h = jnl_hash(tag, tl);
  mem_tag *t = jnl_hmap_get(&m->tags, tag, tl, h);
  if (!t) {
    if (!(t = calloc(1, sizeof *t + tl + 1))) return TROUPE_ENOMEM;
    memcpy(t->name, tag, tl + 1);
    if (jnl_hmap_put(&m->tags, t->name, tl, h, t) < 0) {
      free(t);
      return TROUPE_ENOMEM;
    }
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    mem_tagent *e = realloc(t->e, cap * sizeof *e);
    if (!e) return TROUPE_ENOMEM;
    t->e = e;
    t->cap = cap;
  }
  t->e[t->n++] = (mem_tagent){off, s, seq};
  return 0;
}

static void do_append(mem_store *m, jnl_op *op) {
  mem_stream *s = find_or_add(m, op);
  if (!s) return jnl_op_fail(op, TROUPE_ENOMEM, "memory journal");
  if (s->head != op->a) {
    op->r0 = s->head;
    return jnl_op_fail(op, TROUPE_ECONFLICT,
                           "append to \"%s\" expected seq %llu, head is %llu",
                           op->pid, (unsigned long long)op->a,
                           (unsigned long long)s->head);
  }
  uint64_t head = s->head + op->n;
  if (head > s->evcap) {
    size_t cap = s->evcap ? s->evcap : 16;
    while (cap < head) cap *= 2;
    mem_blob *e = realloc(s->ev, cap * sizeof *e);
    if (!e) return jnl_op_fail(op, TROUPE_ENOMEM, "memory journal");
    memset(e + s->evcap, 0, (cap - s->evcap) * sizeof *e);
    s->ev = e;
    s->evcap = cap;
  }
  if (m->offset + op->n > m->offcap) {
    size_t cap = m->offcap ? m->offcap : 256;
    while (cap < m->offset + op->n) cap *= 2;
    mem_offent *o = realloc(m->offs, cap * sizeof *o);
    if (!o) return jnl_op_fail(op, TROUPE_ENOMEM, "memory journal");
    m->offs = o;
    m->offcap = cap;
  }
  /* copy everything first so a failure leaves the stream unchanged */
  uint8_t *p = op->buf;
  size_t i;
  for (i = 0; i < op->n; i++) {
    uint32_t len = jnl_rd32(p);
    jnl_be64(p + 4 + JNL_REC_OFFSET_AT, m->offset + 1 + i);
    if (blob_set(&s->ev[s->head + i], p + 4, len) < 0) break;
    p += 4 + len;
  }
  if (i < op->n) {
    while (i--) {
      free(s->ev[s->head + i].p);
      s->ev[s->head + i] = (mem_blob){0};
    }
    return jnl_op_fail(op, TROUPE_ENOMEM, "memory journal");
  }
  const char *tagv[TROUPE_JOURNAL_MAX_TAGS];
  for (i = 0; i < op->n; i++) {
    troupe_event ev;
    mem_blob *b = &s->ev[s->head + i];
    if (jnl_rec_read(b->p, b->len, &ev, tagv) == 0)
      for (size_t k = 0; k < ev.ntags; k++)
        if (tag_add(m, ev.tags[k], ev.offset, s, s->head + 1 + i) < 0)
          return jnl_op_fail(op, TROUPE_ENOMEM, "memory tag index");
  }
  for (i = 0; i < op->n; i++)
    m->offs[m->offset + i] = (mem_offent){s, s->head + 1 + i};
  m->offset += op->n;
  s->head = head;
  op->r0 = head;
  if (atomic_load(&m->base.nsubs)) {
    troupe_event *ev;
    const char **tv;
    if (jnl_batch_decode(op, &ev, &tv) == 0)
      jnl_notify(&m->base, ev, op->n);
    free(ev);
    free(tv);
  }
}

static void do_replay(mem_store *m, jnl_op *op) {
  mem_stream *s = find(m, op->pid, op->pid_len);
  jnl_page *pg = &m->page;
  jnl_page_reset(pg);
  if (s) {
    uint64_t from = op->a > s->deleted_to ? op->a : s->deleted_to + 1;
    uint64_t to = op->b < s->head ? op->b : s->head;
    uint64_t count = 0;
    for (uint64_t seq = from; seq <= to && (!op->c || count < op->c);
         seq++, count++) {
      mem_blob *b = &s->ev[seq - 1];
      if (!jnl_page_fits(pg, b->len, 0)) {
        if (jnl_op_emit_events(op, pg->ev, pg->n, 0)) return;
        jnl_page_reset(pg);
      }
      int rc = jnl_page_add(pg, s->name, seq, b->p, b->len, 0);
      if (rc < 0)
        return jnl_op_fail(op, rc, "replay of \"%s\" at seq %llu: %s",
                               s->name, (unsigned long long)seq,
                               troupe_errmsg());
    }
  }
  jnl_op_emit_events(op, pg->ev, pg->n, 1);
}

static void do_by_tag(mem_store *m, jnl_op *op) {
  mem_tag *t = jnl_hmap_get(&m->tags, op->str, op->str_len,
                                jnl_hash(op->str, op->str_len));
  jnl_page *pg = &m->page;
  jnl_page_reset(pg);
  if (t) {
    size_t lo = 0, hi = t->n;            /* first entry with offset > a */
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (t->e[mid].offset <= op->a) lo = mid + 1;
      else hi = mid;
    }
    uint64_t count = 0;
    for (size_t i = lo; i < t->n && (!op->b || count < op->b); i++) {
      mem_tagent *e = &t->e[i];
      if (e->seq <= e->s->deleted_to) continue;
      mem_blob *b = &e->s->ev[e->seq - 1];
      if (!jnl_page_fits(pg, b->len, 0)) {
        if (jnl_op_emit_events(op, pg->ev, pg->n, 0)) return;
        jnl_page_reset(pg);
      }
      int rc = jnl_page_add(pg, e->s->name, e->seq, b->p, b->len, 0);
      if (rc < 0) return jnl_op_fail(op, rc, "by_tag: %s", troupe_errmsg());
      count++;
    }
  }
  jnl_op_emit_events(op, pg->ev, pg->n, 1);
}

static void do_by_slice(mem_store *m, jnl_op *op) {
  uint32_t lo = (uint32_t)(op->c >> 32), hi = (uint32_t)op->c;
  jnl_page *pg = &m->page;
  jnl_page_reset(pg);
  uint64_t count = 0;
  for (uint64_t off = op->a; off < m->offset && (!op->b || count < op->b);
       off++) {
    mem_offent *e = &m->offs[off];             /* offset off + 1 */
    if (e->s->slice < lo || e->s->slice > hi || e->seq <= e->s->deleted_to)
      continue;
    mem_blob *b = &e->s->ev[e->seq - 1];
    if (!jnl_page_fits(pg, b->len, 0)) {
      if (jnl_op_emit_events(op, pg->ev, pg->n, 0)) return;
      jnl_page_reset(pg);
    }
    int rc = jnl_page_add(pg, e->s->name, e->seq, b->p, b->len, 0);
    if (rc < 0) return jnl_op_fail(op, rc, "by_slice: %s", troupe_errmsg());
    count++;
  }
  jnl_op_emit_events(op, pg->ev, pg->n, 1);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void do_list_ids(mem_store *m, jnl_op *op) {
  const char **names = malloc((m->nall + 1) * sizeof *names);
  if (!names) return jnl_op_fail(op, TROUPE_ENOMEM, "list_ids");
  size_t n = 0;
  for (size_t i = 0; i < m->nall; i++)
    if (m->all[i]->head > 0 && strcmp(m->all[i]->name, op->str) > 0)
      names[n++] = m->all[i]->name;
  qsort(names, n, sizeof *names, cmp_name);
  jnl_op_emit_ids(op, names, n < op->a ? n : op->a);
  free(names);
}

static void do_delete(mem_store *m, jnl_op *op) {
  mem_stream *s = find(m, op->pid, op->pid_len);
  if (!s) return;
  uint64_t to = op->a < s->head ? op->a : s->head;
  for (uint64_t seq = s->deleted_to + 1; seq <= to; seq++) {
    free(s->ev[seq - 1].p);
    s->ev[seq - 1] = (mem_blob){0};
  }
  if (to > s->deleted_to) s->deleted_to = to;
  op->r0 = s->deleted_to;
}

static int snap_match(mem_snap *sn, jnl_op *op, troupe_snapshot *out) {
  if (sn->seq < op->a || sn->seq > op->b) return 0;
  if (jnl_snap_read(sn->v.p, sn->v.len, out) < 0) return 0;
  return out->timestamp_ms >= op->t0 && out->timestamp_ms <= op->t1;
}

static void do_snap(mem_store *m, jnl_op *op) {
  mem_stream *s;
  if (op->kind == JNL_OP_SNAP_SAVE) {
    if (!(s = find_or_add(m, op)))
      return jnl_op_fail(op, TROUPE_ENOMEM, "snapshot");
    size_t i = s->nsnap;
    while (i > 0 && s->snaps[i - 1].seq > op->a) i--;
    if (i > 0 && s->snaps[i - 1].seq == op->a) {
      if (blob_set(&s->snaps[i - 1].v, op->buf, op->buf_len) < 0)
        return jnl_op_fail(op, TROUPE_ENOMEM, "snapshot");
      return;
    }
    if (s->nsnap == s->snapcap) {
      size_t cap = s->snapcap ? s->snapcap * 2 : 4;
      mem_snap *a = realloc(s->snaps, cap * sizeof *a);
      if (!a) return jnl_op_fail(op, TROUPE_ENOMEM, "snapshot");
      s->snaps = a;
      s->snapcap = cap;
    }
    mem_snap sn = {op->a, {0}};
    if (blob_set(&sn.v, op->buf, op->buf_len) < 0)
      return jnl_op_fail(op, TROUPE_ENOMEM, "snapshot");
    memmove(&s->snaps[i + 1], &s->snaps[i], (s->nsnap - i) * sizeof sn);
    s->snaps[i] = sn;
    s->nsnap++;
    return;
  }
  if (!(s = find(m, op->pid, op->pid_len))) return;
  troupe_snapshot out;
  if (op->kind == JNL_OP_SNAP_LOAD) {
    for (size_t i = s->nsnap; i-- > 0;)
      if (snap_match(&s->snaps[i], op, &out)) {
        out.persistence_id = s->name;
        out.seq = s->snaps[i].seq;
        return jnl_op_emit_snapshot(op, &out);
      }
    return;
  }
  size_t keep_from = op->kind == JNL_OP_SNAP_RETAIN && s->nsnap > op->c
                         ? s->nsnap - op->c : 0;
  size_t k = 0;
  for (size_t i = 0; i < s->nsnap; i++) {
    int del = op->kind == JNL_OP_SNAP_RETAIN
                  ? i < keep_from : snap_match(&s->snaps[i], op, &out);
    if (del) {
      free(s->snaps[i].v.p);
      op->r0++;
    } else {
      s->snaps[k++] = s->snaps[i];
    }
  }
  s->nsnap = k;
}

static void do_state(mem_store *m, jnl_op *op) {
  mem_stream *s = find(m, op->pid, op->pid_len);
  uint64_t rev = s && s->state.p ? s->rev : 0;
  switch (op->kind) {
  case JNL_OP_STATE_PUT:
    if (rev != op->a) {
      op->r0 = rev;
      return jnl_op_fail(op, TROUPE_ECONFLICT,
                             "state of \"%s\": expected revision %llu, is %llu",
                             op->pid, (unsigned long long)op->a,
                             (unsigned long long)rev);
    }
    if (!s && !(s = find_or_add(m, op)))
      return jnl_op_fail(op, TROUPE_ENOMEM, "state");
    if (blob_set(&s->state, op->buf, op->buf_len) < 0)
      return jnl_op_fail(op, TROUPE_ENOMEM, "state");
    s->rev = op->r0 = op->a + 1;
    return;
  case JNL_OP_STATE_DELETE:
    if (op->a != 0 && rev != op->a) {
      op->r0 = rev;
      return jnl_op_fail(op, TROUPE_ECONFLICT,
                             "state of \"%s\": expected revision %llu, is %llu",
                             op->pid, (unsigned long long)op->a,
                             (unsigned long long)rev);
    }
    op->r0 = rev;
    if (s && s->state.p) {
      free(s->state.p);
      s->state = (mem_blob){0};
      s->rev = 0;
    }
    return;
  case JNL_OP_STATE_GET:
    if (rev) {
      troupe_state_record r;
      if (jnl_state_read(s->state.p, s->state.len, &r) < 0)
        return jnl_op_fail(op, TROUPE_ECORRUPT, "state of \"%s\"",
                               op->pid);
      r.persistence_id = s->name;
      jnl_op_emit_state(op, &r);
    }
    return;
  }
}

static void execute(mem_store *m, jnl_op *op) {
  switch (op->kind) {
  case JNL_OP_APPEND: do_append(m, op); break;
  case JNL_OP_REPLAY: do_replay(m, op); break;
  case JNL_OP_BY_TAG: do_by_tag(m, op); break;
  case JNL_OP_BY_SLICE: do_by_slice(m, op); break;
  case JNL_OP_LIST_IDS: do_list_ids(m, op); break;
  case JNL_OP_DELETE: do_delete(m, op); break;
  case JNL_OP_HIGHEST: {
    mem_stream *s = find(m, op->pid, op->pid_len);
    op->r0 = s ? s->head : 0;
    break;
  }
  case JNL_OP_SNAP_SAVE:
  case JNL_OP_SNAP_LOAD:
  case JNL_OP_SNAP_DELETE:
  case JNL_OP_SNAP_RETAIN: do_snap(m, op); break;
  default: do_state(m, op); break;
  }
  jnl_op_complete(op);
}

static void *worker(void *arg) {
  mem_store *m = arg;
  jnl_in_store_thread = 1;
  pthread_mutex_lock(&m->mu);
  for (;;) {
    while (!m->head && !m->stop) pthread_cond_wait(&m->cv, &m->mu);
    if (!m->head) break;
    jnl_op *list = m->head;
    m->head = NULL;
    m->tail = &m->head;
    pthread_mutex_unlock(&m->mu);
    while (list) {
      jnl_op *op = list;
      list = op->next;
      execute(m, op);
    }
    pthread_mutex_lock(&m->mu);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

static void mem_submit(jnl_store *s, jnl_op *op) {
  mem_store *m = (mem_store *)s;
  op->next = NULL;
  pthread_mutex_lock(&m->mu);
  int wake = m->head == NULL;
  *m->tail = op;
  m->tail = &op->next;
  if (wake) pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
}

static void mem_free(mem_store *m) {
  for (size_t i = 0; i < m->nall; i++) {
    mem_stream *s = m->all[i];
    for (uint64_t k = s->deleted_to; k < s->head; k++) free(s->ev[k].p);
    free(s->ev);
    for (size_t k = 0; k < s->nsnap; k++) free(s->snaps[k].v.p);
    free(s->snaps);
    free(s->state.p);
    free(s);
  }
  for (size_t i = 0; i < m->tags.cap; i++) {
    mem_tag *t = m->tags.t[i].v;
    if (t) {
      free(t->e);
      free(t);
    }
  }
  free(m->all);
  free(m->offs);
  jnl_hmap_free(&m->streams);
  jnl_hmap_free(&m->tags);
  jnl_page_free(&m->page);
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->cv);
  jnl_store_destroy(&m->base);
  free(m);
}

static int mem_open(const char *path, const troupe_store_options *o,
                    jnl_store **out) {
  (void)path;
  mem_store *m = calloc(1, sizeof *m);
  if (!m) return troupe__err(TROUPE_ENOMEM, "memory store");
  jnl_store_init(&m->base, &jnl_memory_backend, o);
  pthread_mutex_init(&m->mu, NULL);
  pthread_cond_init(&m->cv, NULL);
  m->tail = &m->head;
  if (jnl_page_init(&m->page, o->page_size) < 0) {
    mem_free(m);
    return troupe__err(TROUPE_ENOMEM, "memory store");
  }
  if (pthread_create(&m->thread, NULL, worker, m) != 0) {
    mem_free(m);
    return troupe__err(TROUPE_ENOMEM, "memory store: no thread");
  }
  *out = &m->base;
  return 0;
}

static void mem_close(jnl_store *s) {
  mem_store *m = (mem_store *)s;
  pthread_mutex_lock(&m->mu);
  m->stop = 1;
  pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
  pthread_join(m->thread, NULL);
  mem_free(m);
}

const jnl_backend_vt jnl_memory_backend = {
    "memory", mem_open, mem_submit, mem_close, NULL, NULL};
