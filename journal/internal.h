/*
 * journal/internal.h: the storage layer's internals (prefix jnl_; journal, snapshot
 * store, durable-state store, their backends). Not installed.
 *
 * Shape: every public handle (troupe_journal, troupe_snapshot_store,
 * troupe_state_store) is a jnl_handle on a shared jnl_store. A
 * store is one backend instance (one RocksDB database, one in-memory
 * table) found by its spec in a process-wide registry, so all three kinds
 * of handles opened on one spec share it. The public layer validates
 * arguments, copies/encodes them into one heap block (a jnl_op) and
 * submits it to the backend through its vtable; the backend executes it
 * on its own thread(s) and finishes it with jnl_op_complete() and the
 * jnl_op_emit_*() helpers, which call the user's callback. Nothing
 * outside the backend files names a backend.
 */
#ifndef TROUPE_JOURNAL_INTERNAL_H
#define TROUPE_JOURNAL_INTERNAL_H

#include "core/internal.h"
#include "troupe/journal.h"
#include "troupe/snapshot.h"
#include "troupe/state.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct jnl_store jnl_store;
typedef struct jnl_handle jnl_handle;
typedef struct jnl_op jnl_op;

enum jnl_op_kind {
  /* writes (RocksDB: the writer thread) */
  JNL_OP_APPEND,
  JNL_OP_DELETE,
  JNL_OP_SNAP_SAVE,
  JNL_OP_SNAP_DELETE,
  JNL_OP_SNAP_RETAIN,
  JNL_OP_STATE_PUT,
  JNL_OP_STATE_DELETE,
  /* reads (RocksDB: a reader thread) */
  JNL_OP_HIGHEST,
  JNL_OP_REPLAY,
  JNL_OP_BY_TAG,
  JNL_OP_BY_SLICE,       /* a = after offset, b = max, c = lo<<32|hi */
  JNL_OP_LIST_IDS,
  JNL_OP_SNAP_LOAD,
  JNL_OP_STATE_GET,
};

static inline int jnl_op_is_write(int kind) {
  return kind <= JNL_OP_STATE_DELETE;
}

/*
 * One submitted operation, in one heap block: the struct, the
 * persistence id (NUL-terminated), then `buf` (kind-specific bytes).
 * APPEND: n records, each framed as [u32 BE length][record].
 * SNAP_SAVE: one snapshot value; STATE_PUT: one state value.
 * BY_TAG / LIST_IDS: `str` is the tag / the "after" id.
 */
struct jnl_op {
  jnl_op *next;
  jnl_handle *h;
  int kind;
  int status;            /* result, set by the backend */
  int finished;          /* a result was delivered by an emit helper */
  char *detail;          /* heap detail text for a failure, or NULL */
  const char *pid;
  size_t pid_len;
  const char *str;
  size_t str_len;
  uint64_t a, b, c;      /* arguments, see each kind */
  int64_t t0, t1;
  uint64_t r0;           /* result number (head, count, revision) */
  uint64_t scratch;      /* backend use */
  size_t n;              /* APPEND: number of records */
  uint8_t *buf;
  size_t buf_len;
  void *cb;
  void *data;
};

/* Backend vtable. */
typedef struct jnl_backend_vt {
  const char *name;
  /* Open the backend at `path` (the spec without its scheme). On success
   * *out points at a struct whose first member is a jnl_store. */
  int (*open)(const char *path, const troupe_store_options *o,
              jnl_store **out);
  /* Queue `op`; it will be executed on a store thread and finished with
   * jnl_op_complete. Never fails (the store is open). */
  void (*submit)(jnl_store *s, jnl_op *op);
  /* Every handle is closed and every op completed: stop threads, free. */
  void (*close)(jnl_store *s);
  /* Schema version of the store at `path` (no changes); see
   * troupe_store_schema. NULL: the backend has no stored schema. */
  int (*schema)(const char *path, troupe_schema_status *out);
  /* See troupe_store_migrate. NULL: nothing to migrate. */
  int (*migrate)(const char *path, int dry_run, troupe_migrate_cb cb,
                 void *data);
} jnl_backend_vt;

typedef struct troupe_journal_sub jnl_sub;

struct jnl_store {
  const jnl_backend_vt *vt;
  troupe_store_options opts;
  char *key;             /* registry key; NULL for a private store */
  int refs;              /* handles (registry lock) */
  jnl_store *reg_next;
  /* live subscriptions */
  pthread_mutex_t sub_mu;
  jnl_sub *subs;
  atomic_int nsubs;
  /* Handles closing wait here for their ops. It lives in the store, not
   * the handle: a completion touches it after its decrement may have let
   * the handle go, and the store outlives that completion because its
   * threads are joined before it is freed. */
  pthread_mutex_t idle_mu;
  pthread_cond_t idle_cv;
};

struct jnl_handle {
  jnl_store *store;
  char *spec;
  atomic_uint_fast64_t inflight;
  atomic_int closing;
};

struct troupe_journal { jnl_handle h; };
struct troupe_snapshot_store { jnl_handle h; };
struct troupe_state_store { jnl_handle h; };

/* Set on every thread a store owns: sync wrappers and close refuse
 * to run there (they would wait on themselves). */
extern _Thread_local int jnl_in_store_thread;

/* store.c: handles, registry, ops. */
void jnl_store_init(jnl_store *s, const jnl_backend_vt *vt,
                        const troupe_store_options *o);
void jnl_store_destroy(jnl_store *s);
int jnl_handle_open(jnl_handle *h, const char *spec,
                        const troupe_store_options *opts);
int jnl_handle_close(jnl_handle *h);
/* A heap handle for the public open/close calls (troupe_journal,
 * troupe_snapshot_store and troupe_state_store are each one jnl_handle):
 * *out is NULL on error. jnl_handle_free(NULL) is 0; a handle is freed
 * only when its close succeeds. */
int jnl_handle_new(const char *spec, const troupe_store_options *opts,
                   const char *what, jnl_handle **out);
int jnl_handle_free(jnl_handle *h);
int jnl_check_id(const char *what, const char *id, size_t *len);
jnl_op *jnl_op_new(jnl_handle *h, int kind, const char *pid,
                           size_t pid_len, size_t extra);
int jnl_op_submit(jnl_op *op);
void jnl_op_fail(jnl_op *op, int status, const char *fmt, ...)
    TROUPE_PRINTF(3, 4);
void jnl_op_complete(jnl_op *op);
/* Deliver a page of a paged read; returns nonzero when the reader asked to
 * stop (then emit no more). */
int jnl_op_emit_events(jnl_op *op, const troupe_event *ev, size_t n,
                           int done);
void jnl_op_emit_ids(jnl_op *op, const char *const *ids, size_t n);
void jnl_op_emit_snapshot(jnl_op *op, const troupe_snapshot *snap);
void jnl_op_emit_state(jnl_op *op, const troupe_state_record *rec);
/* Pass committed events to live subscribers (store thread only). */
void jnl_notify(jnl_store *s, const troupe_event *ev, size_t n);

/* Sync wrappers' waiter. */
typedef struct jnl_waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int status;
  uint64_t r0;
  void *out;
  void *ucb;
  void *udata;
  char detail[256];
} jnl_waiter;
void jnl_waiter_init(jnl_waiter *w);
/* Record status (and the thread's detail text when failing) and wake. */
void jnl_waiter_signal(jnl_waiter *w, int status, uint64_t r0);
/* Wait for the signal, copy the detail to this thread, return status. */
int jnl_waiter_wait(jnl_waiter *w);
int jnl_sync_allowed(void);

/* --- Big-endian helpers ------------------------------------------------ */
static inline void jnl_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline uint64_t jnl_rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}
static inline void jnl_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t jnl_rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}
static inline void jnl_be16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v;
}
static inline uint16_t jnl_rd16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}

/* --- Stored values (record.c) --------------------------------------------
 * Event record (value of one event, same bytes in every backend that
 * stores blobs):
 *   u8 format(1) | u64 offset | i64 timestamp | u64 writer | u32 version |
 *   u16 mlen | manifest NUL | u8 ntags | (u8 len | tag NUL)* | payload
 * Strings carry their NUL so reads can point into the record.
 * Snapshot value: u8 format(1) | i64 ts | u32 version | u16 mlen |
 *   manifest NUL | state.
 * State value: u8 format(1) | u64 revision | i64 ts | u32 version |
 *   u16 mlen | manifest NUL | value.
 */
#define JNL_REC_FORMAT 1
#define JNL_REC_OFFSET_AT 1
size_t jnl_rec_size(const troupe_event *ev);
uint8_t *jnl_rec_write(uint8_t *p, const troupe_event *ev);
/* Decode a record into ev (all but persistence_id and seq); tag pointers
 * go to tagv (room for TROUPE_JOURNAL_MAX_TAGS). TROUPE_ECORRUPT when
 * malformed. */
int jnl_rec_read(const uint8_t *p, size_t len, troupe_event *ev,
                     const char **tagv);
/* Does the record carry `tag`? (record already validated) */
int jnl_rec_has_tag(const troupe_event *ev, const char *tag);

size_t jnl_snap_size(const troupe_snapshot *s);
void jnl_snap_write(uint8_t *p, const troupe_snapshot *s);
int jnl_snap_read(const uint8_t *p, size_t len, troupe_snapshot *s);
size_t jnl_state_size(const troupe_state_record *r);
void jnl_state_write(uint8_t *p, const troupe_state_record *r,
                         uint64_t revision);
int jnl_state_read(const uint8_t *p, size_t len, troupe_state_record *r);

/* Decode an append op's records (offsets already set) into a heap array
 * of events pointing into op->buf; *tagv holds their tags. Free both. */
int jnl_batch_decode(const jnl_op *op, troupe_event **ev,
                         const char ***tagv);

/* --- A page of events being filled (record.c) --------------------------- */
typedef struct jnl_page {
  troupe_event *ev;
  size_t n, cap;
  const char **tagv;
  size_t ntag, tagcap;
  uint8_t *arena;        /* copies of values when `copy` */
  size_t used, arena_cap;
  uint64_t seen;         /* events delivered so far */
} jnl_page;
int jnl_page_init(jnl_page *pg, size_t cap);
void jnl_page_free(jnl_page *pg);
/* Room for one more record of `len` bytes (with copy) without moving what
 * the page already points at? */
int jnl_page_fits(jnl_page *pg, size_t len, int copy);
/* Append a record; copy=1 copies it into the arena first. Requires
 * jnl_page_fits (or an empty page, which grows). */
int jnl_page_add(jnl_page *pg, const char *pid, uint64_t seq,
                     const uint8_t *rec, size_t len, int copy);
/* Make sure `len` more arena bytes fit without moving the arena (grows an
 * empty page only); then jnl_page_keep copies bytes into the arena. */
int jnl_page_reserve(jnl_page *pg, size_t len);
const char *jnl_page_keep(jnl_page *pg, const void *p, size_t len);
static inline void jnl_page_reset(jnl_page *pg) {
  pg->n = 0; pg->ntag = 0; pg->used = 0;
}

/* --- A string-keyed hash map (hmap.c); keys are owned by the values ---- */
typedef struct jnl_hent {
  const char *k;
  size_t len;
  uint64_t hash;
  void *v;
} jnl_hent;
typedef struct jnl_hmap {
  jnl_hent *t;
  size_t cap, n;
} jnl_hmap;
/* PostgreSQL: take "schema=NAME" (default "troupe") out of a libpq URI or
 * key=value string (`path`, without a "pg:" prefix) into schema[64]; the
 * rest goes to *conninfo (heap). Also used by the projection offset store.
 * Errors: TROUPE_EINVAL (bad schema name), TROUPE_ENOMEM. */
int jnl_pg_split_spec(const char *path, char **conninfo, char *schema);
uint64_t jnl_hash(const char *k, size_t len);
/* The slice of a persistence id (stored by backends: never change). */
static inline uint32_t jnl_slice(const char *k, size_t len) {
  return (uint32_t)(jnl_hash(k, len) & (TROUPE_JOURNAL_SLICES - 1));
}
void *jnl_hmap_get(const jnl_hmap *m, const char *k, size_t len,
                       uint64_t h);
int jnl_hmap_put(jnl_hmap *m, const char *k, size_t len, uint64_t h,
                     void *v);
void jnl_hmap_free(jnl_hmap *m);

/* Backends. */
extern const jnl_backend_vt jnl_memory_backend;
extern const jnl_backend_vt jnl_rocksdb_backend;
extern const jnl_backend_vt jnl_pg_backend;

/* RocksDB test hooks (rocksdb.c). jnl_rdb_create_version makes the closed
 * store at `dir` (created empty when missing) one of an older format
 * `version`, as that troupe wrote it. The migration knobs: events per
 * batch of the 1 -> 2 step (default 10000); when nonzero, the process
 * _exits with status 75 after that many batches (a crash mid-step); the
 * number of events the last 1 -> 2 step indexed (to see a resume). */
int jnl_rdb_create_version(const char *dir, int version);
extern size_t jnl_rdb_migrate_batch;
extern int jnl_rdb_migrate_exit_after;
extern uint64_t jnl_rdb_migrate_indexed;

/* Tests: create the PostgreSQL store at `spec` ("pg:…" or a URI; its
 * schema must be empty) at an older schema `version` (1..current). */
int jnl_pg_create_version(const char *spec, int version);

#endif
