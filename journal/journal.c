/* journal.c: the public journal calls: argument checks, encoding of the
 * batch into one operation, and the synchronous wrappers. */
#include "journal/internal.h"

int troupe_journal_open(const char *spec, const troupe_store_options *opts,
                        troupe_journal **out) {
  jnl_handle *h = NULL;         /* the handle is the struct's first member */
  int rc = jnl_handle_new(spec, opts, "journal", out ? &h : NULL);
  if (out) *out = (troupe_journal *)h;
  return rc;
}

int troupe_journal_close(troupe_journal *j) {
  return jnl_handle_free((jnl_handle *)j);
}

const char *troupe_journal_spec(const troupe_journal *j) {
  return j ? j->h.spec : NULL;
}

static int check_event(const troupe_journal *j, const char *pid,
                       uint64_t seq, const troupe_event *ev, size_t *size) {
  if (ev->persistence_id && strcmp(ev->persistence_id, pid) != 0)
    return troupe__err(TROUPE_EINVAL, "event %llu: persistence id differs",
                       (unsigned long long)seq);
  if (ev->seq != 0 && ev->seq != seq)
    return troupe__err(TROUPE_EINVAL, "event seq %llu, expected %llu",
                       (unsigned long long)ev->seq, (unsigned long long)seq);
  if (!ev->manifest)
    return troupe__err(TROUPE_EINVAL, "event %llu: manifest is NULL",
                       (unsigned long long)seq);
  if (strnlen(ev->manifest, TROUPE_JOURNAL_MAX_MANIFEST_LEN + 1) >
      TROUPE_JOURNAL_MAX_MANIFEST_LEN)
    return troupe__err(TROUPE_EINVAL, "event %llu: manifest too long",
                       (unsigned long long)seq);
  if (!ev->payload && ev->payload_len)
    return troupe__err(TROUPE_EINVAL, "event %llu: payload is NULL",
                       (unsigned long long)seq);
  if (ev->payload_len > j->h.store->opts.max_payload)
    return troupe__err(TROUPE_EINVAL,
                       "event %llu: payload of %zu bytes exceeds max_payload"
                       " %zu", (unsigned long long)seq, ev->payload_len,
                       j->h.store->opts.max_payload);
  if (ev->ntags > TROUPE_JOURNAL_MAX_TAGS || (ev->ntags && !ev->tags))
    return troupe__err(TROUPE_EINVAL, "event %llu: bad tag list",
                       (unsigned long long)seq);
  for (size_t i = 0; i < ev->ntags; i++) {
    const char *t = ev->tags[i];
    size_t tl = t ? strnlen(t, TROUPE_JOURNAL_MAX_TAG_LEN + 1) : 0;
    if (tl == 0 || tl > TROUPE_JOURNAL_MAX_TAG_LEN)
      return troupe__err(TROUPE_EINVAL,
                         "event %llu: tag %zu is NULL, empty or too long",
                         (unsigned long long)seq, i);
  }
  *size = jnl_rec_size(ev);
  return 0;
}

int troupe_journal_append(troupe_journal *j, const char *persistence_id,
                          uint64_t expected_seq, const troupe_event *events,
                          size_t n, troupe_journal_append_cb cb, void *data) {
  size_t pl;
  if (!j || !cb) return troupe__err(TROUPE_EINVAL, "append: NULL argument");
  int rc = jnl_check_id("persistence id", persistence_id, &pl);
  if (rc < 0) return rc;
  if (!events || n == 0 || n > TROUPE_JOURNAL_MAX_BATCH)
    return troupe__err(TROUPE_EINVAL, "append: batch of %zu events (1..%u)",
                       events ? n : 0, TROUPE_JOURNAL_MAX_BATCH);
  if (expected_seq > UINT64_MAX - n)
    return troupe__err(TROUPE_EINVAL, "append: sequence number overflow");
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    size_t sz = 0;
    if ((rc = check_event(j, persistence_id, expected_seq + 1 + i, &events[i],
                          &sz)) < 0)
      return rc;
    total += 4 + sz;
  }
  jnl_op *op =
      jnl_op_new(&j->h, JNL_OP_APPEND, persistence_id, pl, total);
  if (!op) return troupe__err(TROUPE_ENOMEM, "append");
  uint8_t *p = op->buf;
  for (size_t i = 0; i < n; i++) {
    uint8_t *end = jnl_rec_write(p + 4, &events[i]);
    jnl_be32(p, (uint32_t)(end - p - 4));
    p = end;
  }
  op->a = expected_seq;
  op->n = n;
  op->cb = (void *)cb;
  op->data = data;
  return jnl_op_submit(op);
}

static int simple_op(troupe_journal *j, int kind, const char *pid,
                     uint64_t a, uint64_t b, uint64_t c, void *cb,
                     void *data) {
  size_t pl;
  if (!j || !cb) return troupe__err(TROUPE_EINVAL, "NULL journal or callback");
  int rc = jnl_check_id("persistence id", pid, &pl);
  if (rc < 0) return rc;
  jnl_op *op = jnl_op_new(&j->h, kind, pid, pl, 0);
  if (!op) return troupe__err(TROUPE_ENOMEM, "operation");
  op->a = a;
  op->b = b;
  op->c = c;
  op->cb = cb;
  op->data = data;
  return jnl_op_submit(op);
}

int troupe_journal_replay(troupe_journal *j, const char *persistence_id,
                          uint64_t from, uint64_t to, uint64_t max,
                          troupe_journal_events_cb cb, void *data) {
  if (from == 0 || from > to)
    return troupe__err(TROUPE_EINVAL, "replay: range [%llu, %llu]",
                       (unsigned long long)from, (unsigned long long)to);
  return simple_op(j, JNL_OP_REPLAY, persistence_id, from, to, max,
                   (void *)cb, data);
}

int troupe_journal_highest(troupe_journal *j, const char *persistence_id,
                           troupe_journal_seq_cb cb, void *data) {
  return simple_op(j, JNL_OP_HIGHEST, persistence_id, 0, 0, 0,
                   (void *)cb, data);
}

int troupe_journal_delete_to(troupe_journal *j, const char *persistence_id,
                             uint64_t to_seq, troupe_journal_seq_cb cb,
                             void *data) {
  return simple_op(j, JNL_OP_DELETE, persistence_id, to_seq, 0, 0,
                   (void *)cb, data);
}

static int str_op(troupe_journal *j, int kind, const char *s, size_t sl,
                  uint64_t a, uint64_t b, void *cb, void *data) {
  jnl_op *op = jnl_op_new(&j->h, kind, "", 0, sl + 1);
  if (!op) return troupe__err(TROUPE_ENOMEM, "operation");
  if (sl) memcpy(op->buf, s, sl);
  op->buf[sl] = 0;
  op->str = (const char *)op->buf;
  op->str_len = sl;
  op->a = a;
  op->b = b;
  op->cb = cb;
  op->data = data;
  return jnl_op_submit(op);
}

int troupe_journal_by_tag(troupe_journal *j, const char *tag,
                          uint64_t after_offset, uint64_t max,
                          troupe_journal_events_cb cb, void *data) {
  if (!j || !cb || !tag)
    return troupe__err(TROUPE_EINVAL, "by_tag: NULL argument");
  size_t tl = strnlen(tag, TROUPE_JOURNAL_MAX_TAG_LEN + 1);
  if (tl == 0 || tl > TROUPE_JOURNAL_MAX_TAG_LEN)
    return troupe__err(TROUPE_EINVAL, "by_tag: empty or too long tag");
  return str_op(j, JNL_OP_BY_TAG, tag, tl, after_offset, max, (void *)cb,
                data);
}

int troupe_journal_slice_of(const char *persistence_id) {
  if (!persistence_id || !*persistence_id)
    return troupe__err(TROUPE_EINVAL, "slice_of: NULL or empty id");
  return (int)jnl_slice(persistence_id, strlen(persistence_id));
}

int troupe_journal_by_slice(troupe_journal *j, unsigned slice_lo,
                            unsigned slice_hi, uint64_t after_offset,
                            uint64_t max, troupe_journal_events_cb cb,
                            void *data) {
  if (!j || !cb) return troupe__err(TROUPE_EINVAL, "by_slice: NULL argument");
  if (slice_lo > slice_hi || slice_hi >= TROUPE_JOURNAL_SLICES)
    return troupe__err(TROUPE_EINVAL,
                       "by_slice: slice range %u..%u not within 0..%u",
                       slice_lo, slice_hi, TROUPE_JOURNAL_SLICES - 1);
  jnl_op *op = jnl_op_new(&j->h, JNL_OP_BY_SLICE, "", 0, 0);
  if (!op) return troupe__err(TROUPE_ENOMEM, "operation");
  op->a = after_offset;
  op->b = max;
  op->c = (uint64_t)slice_lo << 32 | slice_hi;
  op->cb = (void *)cb;
  op->data = data;
  return jnl_op_submit(op);
}

int troupe_journal_list_ids(troupe_journal *j, const char *after, size_t max,
                            troupe_journal_ids_cb cb, void *data) {
  if (!j || !cb) return troupe__err(TROUPE_EINVAL, "list_ids: NULL argument");
  if (max == 0 || max > 100000)
    return troupe__err(TROUPE_EINVAL, "list_ids: max %zu (1..100000)", max);
  size_t al = after ? strnlen(after, TROUPE_JOURNAL_MAX_ID_LEN + 1) : 0;
  if (al > TROUPE_JOURNAL_MAX_ID_LEN)
    return troupe__err(TROUPE_EINVAL, "list_ids: after too long");
  return str_op(j, JNL_OP_LIST_IDS, after, al, max, 0, (void *)cb, data);
}

/* --- synchronous wrappers ------------------------------------------------ */

static void sync_seq_cb(int status, uint64_t v, void *data) {
  jnl_waiter_signal(data, status, v);
}

int troupe_journal_append_sync(troupe_journal *j, const char *persistence_id,
                               uint64_t expected_seq,
                               const troupe_event *events, size_t n,
                               uint64_t *head) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  jnl_waiter w;
  jnl_waiter_init(&w);
  rc = troupe_journal_append(j, persistence_id, expected_seq, events, n,
                             sync_seq_cb, &w);
  if (rc < 0) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
  }
  rc = jnl_waiter_wait(&w);
  if (head) *head = w.r0;
  return rc;
}

int troupe_journal_highest_sync(troupe_journal *j, const char *persistence_id,
                                uint64_t *highest) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  jnl_waiter w;
  jnl_waiter_init(&w);
  rc = troupe_journal_highest(j, persistence_id, sync_seq_cb, &w);
  if (rc < 0) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
  }
  rc = jnl_waiter_wait(&w);
  if (highest) *highest = rc == 0 ? w.r0 : 0;
  return rc;
}

int troupe_journal_delete_to_sync(troupe_journal *j,
                                  const char *persistence_id,
                                  uint64_t to_seq) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  jnl_waiter w;
  jnl_waiter_init(&w);
  rc = troupe_journal_delete_to(j, persistence_id, to_seq, sync_seq_cb, &w);
  if (rc < 0) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
  }
  return jnl_waiter_wait(&w);
}

static int sync_events_cb(int status, const troupe_event *ev, size_t n,
                          int done, void *data) {
  jnl_waiter *w = data;
  int stop = ((troupe_journal_events_cb)w->ucb)(status, ev, n, done, w->udata);
  if (status < 0 || done || stop) jnl_waiter_signal(w, status, 0);
  return stop;
}

int troupe_journal_replay_sync(troupe_journal *j, const char *persistence_id,
                               uint64_t from, uint64_t to, uint64_t max,
                               troupe_journal_events_cb cb, void *data) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  if (!cb) return troupe__err(TROUPE_EINVAL, "replay: callback is NULL");
  jnl_waiter w;
  jnl_waiter_init(&w);
  w.ucb = (void *)cb;
  w.udata = data;
  rc = troupe_journal_replay(j, persistence_id, from, to, max, sync_events_cb,
                             &w);
  if (rc < 0) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
  }
  return jnl_waiter_wait(&w);
}

int troupe_journal_by_tag_sync(troupe_journal *j, const char *tag,
                               uint64_t after_offset, uint64_t max,
                               troupe_journal_events_cb cb, void *data) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  if (!cb) return troupe__err(TROUPE_EINVAL, "by_tag: callback is NULL");
  jnl_waiter w;
  jnl_waiter_init(&w);
  w.ucb = (void *)cb;
  w.udata = data;
  rc = troupe_journal_by_tag(j, tag, after_offset, max, sync_events_cb, &w);
  if (rc < 0) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
  }
  return jnl_waiter_wait(&w);
}

int troupe_journal_by_slice_sync(troupe_journal *j, unsigned slice_lo,
                                 unsigned slice_hi, uint64_t after_offset,
                                 uint64_t max, troupe_journal_events_cb cb,
                                 void *data) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  if (!cb) return troupe__err(TROUPE_EINVAL, "by_slice: callback is NULL");
  jnl_waiter w;
  jnl_waiter_init(&w);
  w.ucb = (void *)cb;
  w.udata = data;
  rc = troupe_journal_by_slice(j, slice_lo, slice_hi, after_offset, max,
                               sync_events_cb, &w);
  if (rc < 0) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
  }
  return jnl_waiter_wait(&w);
}

static void sync_ids_cb(int status, const char *const *ids, size_t n,
                        void *data) {
  jnl_waiter *w = data;
  ((troupe_journal_ids_cb)w->ucb)(status, ids, n, w->udata);
  jnl_waiter_signal(w, status, n);
}

int troupe_journal_list_ids_sync(troupe_journal *j, const char *after,
                                 size_t max, troupe_journal_ids_cb cb,
                                 void *data) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  if (!cb) return troupe__err(TROUPE_EINVAL, "list_ids: callback is NULL");
  jnl_waiter w;
  jnl_waiter_init(&w);
  w.ucb = (void *)cb;
  w.udata = data;
  rc = troupe_journal_list_ids(j, after, max, sync_ids_cb, &w);
  if (rc < 0) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
  }
  return jnl_waiter_wait(&w);
}
