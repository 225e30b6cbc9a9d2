/* snapshot.c: the public snapshot-store calls (argument checks, encoding,
 * synchronous wrappers). Backends execute them next to the journal. */
#include "journal/internal.h"

int troupe_snapshot_store_open(const char *spec,
                               const troupe_store_options *opts,
                               troupe_snapshot_store **out) {
  jnl_handle *h = NULL;         /* the handle is the struct's first member */
  int rc = jnl_handle_new(spec, opts, "snapshot store", out ? &h : NULL);
  if (out) *out = (troupe_snapshot_store *)h;
  return rc;
}

int troupe_snapshot_store_close(troupe_snapshot_store *s) {
  return jnl_handle_free((jnl_handle *)s);
}

int troupe_snapshot_save(troupe_snapshot_store *s, const troupe_snapshot *snap,
                         troupe_snapshot_done_cb cb, void *data) {
  size_t pl;
  if (!s || !snap || !cb)
    return troupe__err(TROUPE_EINVAL, "snapshot_save: NULL argument");
  int rc = jnl_check_id("persistence id", snap->persistence_id, &pl);
  if (rc < 0) return rc;
  if (snap->seq == 0)
    return troupe__err(TROUPE_EINVAL, "snapshot_save: seq 0");
  if (!snap->manifest ||
      strnlen(snap->manifest, TROUPE_JOURNAL_MAX_MANIFEST_LEN + 1) >
          TROUPE_JOURNAL_MAX_MANIFEST_LEN)
    return troupe__err(TROUPE_EINVAL, "snapshot_save: bad manifest");
  if (!snap->state && snap->state_len)
    return troupe__err(TROUPE_EINVAL, "snapshot_save: state is NULL");
  if (snap->state_len > s->h.store->opts.max_payload)
    return troupe__err(TROUPE_EINVAL,
                       "snapshot_save: %zu bytes exceed max_payload %zu",
                       snap->state_len, s->h.store->opts.max_payload);
  jnl_op *op = jnl_op_new(&s->h, JNL_OP_SNAP_SAVE,
                                  snap->persistence_id, pl,
                                  jnl_snap_size(snap));
  if (!op) return troupe__err(TROUPE_ENOMEM, "snapshot_save");
  jnl_snap_write(op->buf, snap);
  op->a = snap->seq;
  op->t0 = snap->timestamp_ms;
  op->cb = (void *)cb;
  op->data = data;
  return jnl_op_submit(op);
}

static int crit_op(troupe_snapshot_store *s, int kind, const char *pid,
                   const troupe_snapshot_criteria *crit, uint64_t keep,
                   void *cb, void *data) {
  size_t pl;
  if (!s || !cb) return troupe__err(TROUPE_EINVAL, "snapshot: NULL argument");
  int rc = jnl_check_id("persistence id", pid, &pl);
  if (rc < 0) return rc;
  troupe_snapshot_criteria c =
      crit ? *crit : troupe_snapshot_criteria_all();
  if (c.min_seq > c.max_seq || c.min_timestamp > c.max_timestamp)
    return troupe__err(TROUPE_EINVAL, "snapshot: empty criteria range");
  jnl_op *op = jnl_op_new(&s->h, kind, pid, pl, 0);
  if (!op) return troupe__err(TROUPE_ENOMEM, "snapshot");
  op->a = c.min_seq;
  op->b = c.max_seq;
  op->t0 = c.min_timestamp;
  op->t1 = c.max_timestamp;
  op->c = keep;
  op->cb = cb;
  op->data = data;
  return jnl_op_submit(op);
}

int troupe_snapshot_load(troupe_snapshot_store *s, const char *persistence_id,
                         const troupe_snapshot_criteria *crit,
                         troupe_snapshot_load_cb cb, void *data) {
  return crit_op(s, JNL_OP_SNAP_LOAD, persistence_id, crit, 0,
                 (void *)cb, data);
}

int troupe_snapshot_delete(troupe_snapshot_store *s,
                           const char *persistence_id,
                           const troupe_snapshot_criteria *crit,
                           troupe_snapshot_done_cb cb, void *data) {
  return crit_op(s, JNL_OP_SNAP_DELETE, persistence_id, crit, 0,
                 (void *)cb, data);
}

int troupe_snapshot_retain(troupe_snapshot_store *s,
                           const char *persistence_id, uint64_t keep,
                           troupe_snapshot_done_cb cb, void *data) {
  if (keep == 0)
    return troupe__err(TROUPE_EINVAL, "snapshot_retain: keep must be >= 1");
  return crit_op(s, JNL_OP_SNAP_RETAIN, persistence_id, NULL, keep,
                 (void *)cb, data);
}

/* --- synchronous wrappers ------------------------------------------------ */

static void sync_done_cb(int status, uint64_t count, void *data) {
  jnl_waiter_signal(data, status, count);
}

static int wait_or_drop(jnl_waiter *w, int rc) {
  if (rc < 0) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return rc;
  }
  return jnl_waiter_wait(w);
}

int troupe_snapshot_save_sync(troupe_snapshot_store *s,
                              const troupe_snapshot *snap) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  jnl_waiter w;
  jnl_waiter_init(&w);
  return wait_or_drop(&w, troupe_snapshot_save(s, snap, sync_done_cb, &w));
}

int troupe_snapshot_delete_sync(troupe_snapshot_store *s,
                                const char *persistence_id,
                                const troupe_snapshot_criteria *crit,
                                uint64_t *count) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  jnl_waiter w;
  jnl_waiter_init(&w);
  rc = wait_or_drop(&w, troupe_snapshot_delete(s, persistence_id, crit,
                                               sync_done_cb, &w));
  if (count) *count = rc == 0 ? w.r0 : 0;
  return rc;
}

int troupe_snapshot_retain_sync(troupe_snapshot_store *s,
                                const char *persistence_id, uint64_t keep,
                                uint64_t *count) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  jnl_waiter w;
  jnl_waiter_init(&w);
  rc = wait_or_drop(&w, troupe_snapshot_retain(s, persistence_id, keep,
                                               sync_done_cb, &w));
  if (count) *count = rc == 0 ? w.r0 : 0;
  return rc;
}

static troupe_snapshot *snap_copy(const troupe_snapshot *in) {
  size_t pl = strlen(in->persistence_id), ml = strlen(in->manifest);
  troupe_snapshot *s = malloc(sizeof *s + pl + 1 + ml + 1 + in->state_len);
  if (!s) return NULL;
  char *p = (char *)(s + 1);
  *s = *in;
  memcpy(p, in->persistence_id, pl + 1);
  s->persistence_id = p;
  p += pl + 1;
  memcpy(p, in->manifest, ml + 1);
  s->manifest = p;
  p += ml + 1;
  if (in->state_len) memcpy(p, in->state, in->state_len);
  s->state = p;
  return s;
}

static void sync_load_cb(int status, const troupe_snapshot *snap, void *data) {
  jnl_waiter *w = data;
  if (status == 0 && snap && !(w->out = snap_copy(snap)))
    status = troupe__err(TROUPE_ENOMEM, "snapshot copy");
  jnl_waiter_signal(w, status, 0);
}

int troupe_snapshot_load_sync(troupe_snapshot_store *s,
                              const char *persistence_id,
                              const troupe_snapshot_criteria *crit,
                              troupe_snapshot **out) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  if (!out) return troupe__err(TROUPE_EINVAL, "snapshot_load: out is NULL");
  *out = NULL;
  jnl_waiter w;
  jnl_waiter_init(&w);
  rc = wait_or_drop(&w, troupe_snapshot_load(s, persistence_id, crit,
                                             sync_load_cb, &w));
  if (rc == 0) *out = w.out;
  else free(w.out);
  return rc;
}

void troupe_snapshot_free(troupe_snapshot *snap) { free(snap); }
