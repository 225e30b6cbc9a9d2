/* state.c: the public durable-state calls (argument checks, encoding,
 * synchronous wrappers). Backends execute them next to the journal. */
#include "journal/internal.h"

int troupe_state_store_open(const char *spec, const troupe_store_options *opts,
                            troupe_state_store **out) {
  jnl_handle *h = NULL;         /* the handle is the struct's first member */
  int rc = jnl_handle_new(spec, opts, "state store", out ? &h : NULL);
  if (out) *out = (troupe_state_store *)h;
  return rc;
}

int troupe_state_store_close(troupe_state_store *s) {
  return jnl_handle_free((jnl_handle *)s);
}

int troupe_state_upsert(troupe_state_store *s, const troupe_state_record *rec,
                        uint64_t expected_revision, troupe_state_rev_cb cb,
                        void *data) {
  size_t pl;
  if (!s || !rec || !cb)
    return troupe__err(TROUPE_EINVAL, "state_upsert: NULL argument");
  int rc = jnl_check_id("persistence id", rec->persistence_id, &pl);
  if (rc < 0) return rc;
  if (!rec->manifest ||
      strnlen(rec->manifest, TROUPE_JOURNAL_MAX_MANIFEST_LEN + 1) >
          TROUPE_JOURNAL_MAX_MANIFEST_LEN)
    return troupe__err(TROUPE_EINVAL, "state_upsert: bad manifest");
  if (!rec->value && rec->value_len)
    return troupe__err(TROUPE_EINVAL, "state_upsert: value is NULL");
  if (rec->value_len > s->h.store->opts.max_payload)
    return troupe__err(TROUPE_EINVAL,
                       "state_upsert: %zu bytes exceed max_payload %zu",
                       rec->value_len, s->h.store->opts.max_payload);
  if (expected_revision == UINT64_MAX)
    return troupe__err(TROUPE_EINVAL, "state_upsert: revision overflow");
  jnl_op *op = jnl_op_new(&s->h, JNL_OP_STATE_PUT,
                                  rec->persistence_id, pl,
                                  jnl_state_size(rec));
  if (!op) return troupe__err(TROUPE_ENOMEM, "state_upsert");
  jnl_state_write(op->buf, rec, expected_revision + 1);
  op->a = expected_revision;
  op->cb = (void *)cb;
  op->data = data;
  return jnl_op_submit(op);
}

static int pid_op(troupe_state_store *s, int kind, const char *pid,
                  uint64_t a, void *cb, void *data) {
  size_t pl;
  if (!s || !cb) return troupe__err(TROUPE_EINVAL, "state: NULL argument");
  int rc = jnl_check_id("persistence id", pid, &pl);
  if (rc < 0) return rc;
  jnl_op *op = jnl_op_new(&s->h, kind, pid, pl, 0);
  if (!op) return troupe__err(TROUPE_ENOMEM, "state");
  op->a = a;
  op->cb = cb;
  op->data = data;
  return jnl_op_submit(op);
}

int troupe_state_get(troupe_state_store *s, const char *persistence_id,
                     troupe_state_get_cb cb, void *data) {
  return pid_op(s, JNL_OP_STATE_GET, persistence_id, 0, (void *)cb, data);
}

int troupe_state_delete(troupe_state_store *s, const char *persistence_id,
                        uint64_t expected_revision, troupe_state_rev_cb cb,
                        void *data) {
  return pid_op(s, JNL_OP_STATE_DELETE, persistence_id, expected_revision,
                (void *)cb, data);
}

/* --- synchronous wrappers ------------------------------------------------ */

static void sync_rev_cb(int status, uint64_t rev, void *data) {
  jnl_waiter_signal(data, status, rev);
}

static int wait_or_drop(jnl_waiter *w, int rc) {
  if (rc < 0) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return rc;
  }
  return jnl_waiter_wait(w);
}

int troupe_state_upsert_sync(troupe_state_store *s,
                             const troupe_state_record *rec,
                             uint64_t expected_revision, uint64_t *revision) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  jnl_waiter w;
  jnl_waiter_init(&w);
  rc = wait_or_drop(&w, troupe_state_upsert(s, rec, expected_revision,
                                            sync_rev_cb, &w));
  if (revision) *revision = w.r0;
  return rc;
}

int troupe_state_delete_sync(troupe_state_store *s, const char *persistence_id,
                             uint64_t expected_revision) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  jnl_waiter w;
  jnl_waiter_init(&w);
  return wait_or_drop(&w, troupe_state_delete(s, persistence_id,
                                              expected_revision, sync_rev_cb,
                                              &w));
}

static troupe_state_record *rec_copy(const troupe_state_record *in) {
  size_t pl = strlen(in->persistence_id), ml = strlen(in->manifest);
  troupe_state_record *r = malloc(sizeof *r + pl + 1 + ml + 1 + in->value_len);
  if (!r) return NULL;
  char *p = (char *)(r + 1);
  *r = *in;
  memcpy(p, in->persistence_id, pl + 1);
  r->persistence_id = p;
  p += pl + 1;
  memcpy(p, in->manifest, ml + 1);
  r->manifest = p;
  p += ml + 1;
  if (in->value_len) memcpy(p, in->value, in->value_len);
  r->value = p;
  return r;
}

static void sync_get_cb(int status, const troupe_state_record *rec,
                        void *data) {
  jnl_waiter *w = data;
  if (status == 0 && rec && !(w->out = rec_copy(rec)))
    status = troupe__err(TROUPE_ENOMEM, "state copy");
  jnl_waiter_signal(w, status, 0);
}

int troupe_state_get_sync(troupe_state_store *s, const char *persistence_id,
                          troupe_state_record **out) {
  int rc = jnl_sync_allowed();
  if (rc < 0) return rc;
  if (!out) return troupe__err(TROUPE_EINVAL, "state_get: out is NULL");
  *out = NULL;
  jnl_waiter w;
  jnl_waiter_init(&w);
  rc = wait_or_drop(&w, troupe_state_get(s, persistence_id, sync_get_cb, &w));
  if (rc == 0) *out = w.out;
  else free(w.out);
  return rc;
}

void troupe_state_record_free(troupe_state_record *rec) { free(rec); }
