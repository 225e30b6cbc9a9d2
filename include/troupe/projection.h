/*
 * troupe/projection.h: projections — read-side views kept from the event
 * log.
 *
 * A projection is a named worker made of three parts:
 *
 *   source   events by tag (troupe_journal_by_tag) or by a slice range of
 *            persistence ids (troupe_journal_by_slice), read from a stored
 *            offset; "current" (stop at the end) or "live" (follow new
 *            events: in-process notification, plus LISTEN/NOTIFY when the
 *            journal is PostgreSQL, plus a slow fallback poll);
 *   handler  your function, called with one event at a time or with
 *            groups (up to N events, or what arrived within T ms);
 *   offsets  an offset store (memory, RocksDB or PostgreSQL) holding, per
 *            projection, the offset of the last handled event and the
 *            management state (paused, rewind/reset requests, status).
 *
 * Delivery. At-least-once: the handler runs, then the offset is committed
 * every `commit_every` events or `commit_ms` ms; after a crash the events
 * since the last commit are handled again, none is ever skipped.
 * Exactly-once: the handler's writes and the new offset commit together —
 * on PostgreSQL in one transaction on the projection's own connection
 * (the handler gets the PGconn* inside that transaction), on RocksDB in one
 * WriteBatch of the projection's database (the handler gets the batch).
 *
 * Threads. Each running projection is a supervised actor in a troupe
 * system plus one worker thread of its own; the handler, the reads and
 * the offset writes run on that worker thread, never on the loop. A
 * failed projection (see troupe_projection_on_error) restarts with
 * backoff from its stored offset.
 *
 * The offset store spec strings are those of troupe/journal.h:
 *   "memory:" / "memory:NAME", "rocksdb:/dir" (its own database directory,
 *   also usable for a RocksDB read model), "postgresql://..." or
 *   "pg:KEY=VALUE ..." with an optional schema=NAME (default "troupe";
 *   the table is <schema>.troupe_projections).
 *
 * Errors are negative TROUPE_E* codes with detail in troupe_errmsg().
 * See docs/projections.md for the guide.
 */
#ifndef TROUPE_PROJECTION_H
#define TROUPE_PROJECTION_H

#include "troupe/common.h"
#include "troupe/actor.h"
#include "troupe/journal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backends' own handle types (rocksdb/c.h, libpq-fe.h); declared here
 * so this header needs neither. */
struct rocksdb_t;
struct rocksdb_writebatch_t;
struct pg_conn;

typedef struct troupe_offset_store troupe_offset_store;
typedef struct troupe_projection troupe_projection;
typedef struct troupe_projection_ctx troupe_projection_ctx;

/* Projection names: 1..TROUPE_PROJECTION_MAX_NAME bytes of [A-Za-z0-9_-]. */
#define TROUPE_PROJECTION_MAX_NAME 40u

/* ------------------------------------------------------------------ */
/* Offset stores                                                       */

/*
 * Open an offset store on `spec` (see above). Creates what is missing
 * (the RocksDB directory, the PostgreSQL schema and table). A RocksDB
 * directory already opened by another process is opened read-only: then
 * list/info work and requests are queued as files in DIR/requests/ which
 * the running projection applies at its next control poll — that is how
 * the `troupe projection` tool reaches a running embedded projection.
 * Any thread (blocking). Errors: TROUPE_EINVAL (bad spec),
 * TROUPE_ECONNREFUSED / TROUPE_EAUTH (PostgreSQL), TROUPE_EIO,
 * TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_offset_store_open(const char *spec,
                                           troupe_offset_store **out);

/* Close; projections using it must be stopped first. NULL accepted. */
TROUPE_EXTERN void troupe_offset_store_close(troupe_offset_store *s);

/* The RocksDB database of a "rocksdb:" offset store (for reading the read
 * model it holds), else NULL. Owned by the store. A handle opened
 * read-only (see above) switches to read-write when a projection starts
 * on it after the other process let go: fetch the pointer again then. */
TROUPE_EXTERN struct rocksdb_t *troupe_offset_store_rocksdb(
    troupe_offset_store *s);

/* ------------------------------------------------------------------ */
/* Handlers                                                            */

/*
 * The handler: `events` holds n >= 1 events of the source in offset
 * order (n is 1 unless grouping is on). The events and everything they
 * point to are valid during the call only. Return 0 on success or a
 * negative code: the projection's on_error strategy decides. In
 * exactly-once mode a failure discards the handler's writes (rollback /
 * the batch is dropped). Runs on the projection's worker thread.
 */
typedef int (*troupe_projection_handler_fn)(troupe_projection_ctx *ctx,
                                            const troupe_event *events,
                                            size_t n, void *data);

/* Called on reset (rebuild from the beginning) to clear the read model,
 * in exactly-once mode inside the same transaction / batch that sets the
 * offset back to 0. Return 0 or a negative code (the reset is retried at
 * the next control poll). */
typedef int (*troupe_projection_reset_fn)(troupe_projection_ctx *ctx,
                                          void *data);

/* Inside an exactly-once handler on PostgreSQL: the connection, in an open
 * transaction that will also upsert the offset. Do not COMMIT or ROLLBACK;
 * a failed statement fails the handler (return its error). NULL otherwise. */
TROUPE_EXTERN struct pg_conn *troupe_projection_ctx_pgconn(
    troupe_projection_ctx *ctx);
/* Inside an exactly-once handler on RocksDB: the WriteBatch that will be
 * written with the offset, and the projection's database (for reads;
 * reads do not see the batch's own pending writes). NULL otherwise. */
TROUPE_EXTERN struct rocksdb_writebatch_t *troupe_projection_ctx_writebatch(
    troupe_projection_ctx *ctx);
TROUPE_EXTERN struct rocksdb_t *troupe_projection_ctx_rocksdb(
    troupe_projection_ctx *ctx);
/* The running projection's instance name ("NAME" or "NAME@LO-HI"). */
TROUPE_EXTERN const char *troupe_projection_ctx_name(
    troupe_projection_ctx *ctx);
/* How many times this group was tried before (0 on the first attempt). */
TROUPE_EXTERN uint32_t troupe_projection_ctx_attempt(
    troupe_projection_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Definition                                                          */

typedef enum troupe_projection_delivery {
  TROUPE_PROJECTION_AT_LEAST_ONCE = 0,
  TROUPE_PROJECTION_EXACTLY_ONCE = 1
} troupe_projection_delivery;

typedef enum troupe_projection_on_error {
  TROUPE_PROJECTION_FAIL = 0,        /* fail the projection (it restarts) */
  TROUPE_PROJECTION_SKIP = 1,        /* skip the failing event(s) */
  TROUPE_PROJECTION_RETRY_FAIL = 2,  /* retry `retries` times, then fail */
  TROUPE_PROJECTION_RETRY_SKIP = 3   /* retry `retries` times, then skip */
} troupe_projection_on_error;

/*
 * What a projection is. Only name, journal, offsets and handler are
 * required; zero means the default for every other field. The struct is
 * copied by troupe_projection_start() (strings too); the journal, the
 * offset store and `data` must stay valid until troupe_projection_stop().
 */
typedef struct troupe_projection_def {
  const char *name;              /* see TROUPE_PROJECTION_MAX_NAME */
  troupe_journal *journal;
  /* Source: by `tag` when not NULL; else by slice range
   * [slice_lo, slice_hi] (both 0 and tag NULL: every slice). A sliced
   * instance is stored as "NAME@LO-HI". */
  const char *tag;
  unsigned slice_lo, slice_hi;
  int current_only;              /* 1: stop at the end ("current" source);
                                    0: follow new events ("live") */
  troupe_offset_store *offsets;
  troupe_projection_delivery delivery;
  troupe_projection_handler_fn handler;
  troupe_projection_reset_fn reset;   /* optional */
  void *data;
  /* Grouping: up to group_size events per handler call (default 1), and
   * a live projection waits at most group_ms for a group to fill
   * (default 0: hand over what is there). */
  uint32_t group_size;
  uint32_t group_ms;
  /* At-least-once: commit the offset after this many events (default
   * 100) or this many ms (default 500), whichever comes first. */
  uint32_t commit_every;
  uint32_t commit_ms;
  /* Handler failures. */
  troupe_projection_on_error on_error;
  uint32_t retries;              /* default 3 */
  uint32_t retry_backoff_ms;     /* first retry delay, doubling; default 10 */
  /* Restarts after a failure: exponential backoff between these bounds
   * (defaults 100 ms .. 10 s); max_restarts within 60 s (0: unlimited). */
  uint64_t restart_min_ms, restart_max_ms;
  uint32_t max_restarts;
  /* Events per read (default 1024); fallback poll of a live source when
   * no notification came (default 1000 ms); management poll (default
   * 200 ms: the bound on how fast a request from another process is
   * seen). */
  uint32_t page_size;
  uint32_t poll_ms;
  uint32_t control_ms;
} troupe_projection_def;

/*
 * Start a projection in `sys`: a top-level supervisor actor named
 * "projection-NAME" (sliced: "projection-NAME-LO-HI") with the worker as
 * its child, and the worker's thread. The worker resumes from the stored
 * offset. Any thread (uses troupe_system_spawn). On success *out is the
 * handle, ended with troupe_projection_stop().
 * Errors: TROUPE_EINVAL (missing or bad fields, exactly-once on a store
 * that cannot hold the handler's writes), TROUPE_EEXIST (the name is
 * running in this system), TROUPE_ECLOSED, TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_projection_start(troupe_system *sys,
                                          const troupe_projection_def *def,
                                          troupe_projection **out);

/*
 * Stop the projection and free the handle: the worker finishes the group
 * it is handling (commits at-least-once offsets), its thread is joined
 * and its actors stop. Blocking; not from the system's thread nor from a
 * handler. NULL accepted.
 */
TROUPE_EXTERN void troupe_projection_stop(troupe_projection *p);

/* The instance name ("NAME" or "NAME@LO-HI"), owned by the handle. */
TROUPE_EXTERN const char *troupe_projection_name(const troupe_projection *p);

/* ------------------------------------------------------------------ */
/* Status and management                                               */

typedef enum troupe_projection_state {
  TROUPE_PROJECTION_STARTING = 0,
  TROUPE_PROJECTION_RUNNING = 1,
  TROUPE_PROJECTION_PAUSED = 2,
  TROUPE_PROJECTION_FAILED = 3,      /* restarting with backoff */
  TROUPE_PROJECTION_DONE = 4,        /* a current source reached its end */
  TROUPE_PROJECTION_STOPPED = 5
} troupe_projection_state;

/* One projection instance as its offset store knows it. */
typedef struct troupe_projection_info {
  char name[TROUPE_PROJECTION_MAX_NAME + 24];
  char source[300];       /* "tag:T" or "slices:LO-HI" */
  uint64_t offset;        /* last committed offset */
  int paused;
  troupe_projection_state state;  /* as last published by the worker */
  uint64_t skipped;       /* events skipped by the error strategy */
  uint64_t lag_events;    /* as last published by the worker */
  int64_t lag_ms;
  int64_t updated_ms;     /* when the worker last wrote (epoch ms) */
  uint64_t pending;       /* rewind/reset requests not yet applied */
  char last_error[200];
} troupe_projection_info;

/* The stored info of one instance. Any thread (blocking).
 * Errors: TROUPE_ENOENT (never ran), TROUPE_EINVAL, storage errors. */
TROUPE_EXTERN int troupe_projection_info_get(troupe_offset_store *s,
                                             const char *name,
                                             troupe_projection_info *out);

/* Every instance in the store, sorted by name: *out is a heap array of *n
 * entries (free with free()). Any thread (blocking). */
TROUPE_EXTERN int troupe_projection_list(troupe_offset_store *s,
                                         troupe_projection_info **out,
                                         size_t *n);

typedef enum troupe_projection_op {
  TROUPE_PROJECTION_PAUSE = 1,   /* stop handling (the offset stays) */
  TROUPE_PROJECTION_RESUME = 2,
  TROUPE_PROJECTION_REWIND = 3,  /* continue after `offset` (events after it
                                    are handled again: the handler must
                                    tolerate that, or use reset) */
  TROUPE_PROJECTION_RESET = 4    /* reset hook + offset 0: rebuild */
} troupe_projection_op;

/*
 * Ask the instance `name` (or, when `name` has no "@", also every
 * "name@…" sliced instance) to pause, resume, rewind or reset. Stored in
 * the offset store, so it works for a projection run by another process;
 * the worker applies it within its control_ms (rewind/reset: in one
 * transaction with the offset). An instance that never ran gets the
 * request when it starts. Any thread (blocking).
 * Errors: TROUPE_EINVAL, TROUPE_ENOENT (no such instance and name is not
 * plain), storage errors.
 */
TROUPE_EXTERN int troupe_projection_request(troupe_offset_store *s,
                                           const char *name,
                                           troupe_projection_op op,
                                           uint64_t offset);

/* Live status of a running projection. */
typedef struct troupe_projection_status {
  troupe_projection_state state;
  uint64_t offset;          /* last handled offset (may be ahead of the
                               committed one in at-least-once mode) */
  uint64_t committed;       /* last committed offset */
  uint64_t handled;         /* events handled since start */
  uint64_t skipped;
  uint64_t restarts;
  uint64_t lag_events;      /* source events after `offset` (counted by a
                               read, at most 1,000,000) */
  int64_t lag_ms;           /* now - timestamp of the oldest unhandled
                               event, 0 when caught up */
  int last_error;
} troupe_projection_status;

/* Fill `st`; counts the lag with a read of the journal. Any thread except
 * a store thread (blocking). Errors: TROUPE_EINVAL, journal errors. */
TROUPE_EXTERN int troupe_projection_get_status(troupe_projection *p,
                                               troupe_projection_status *st);

/* As troupe_projection_get_status without the lag (lag_events and lag_ms
 * are 0): no I/O, for polling. Any thread. Errors: TROUPE_EINVAL. */
TROUPE_EXTERN int troupe_projection_get_progress(troupe_projection *p,
                                                 troupe_projection_status *st);

/* troupe_projection_request() on this projection's store and name, and
 * an immediate wake-up of its worker. Any thread (blocking). */
TROUPE_EXTERN int troupe_projection_pause(troupe_projection *p);
TROUPE_EXTERN int troupe_projection_resume(troupe_projection *p);
TROUPE_EXTERN int troupe_projection_rewind(troupe_projection *p,
                                           uint64_t offset);
TROUPE_EXTERN int troupe_projection_reset(troupe_projection *p);

/* Published on the system's event stream for every skipped event
 * (subscribe with troupe_subscribe); the count is in the status. */
typedef struct troupe_projection_skipped {
  char projection[TROUPE_PROJECTION_MAX_NAME + 24];
  char persistence_id[128];   /* truncated when longer */
  uint64_t seq;
  uint64_t offset;
  int error;
} troupe_projection_skipped;
TROUPE_EXTERN extern troupe_type TROUPE_T_PROJECTION_SKIPPED;

#ifdef __cplusplus
}
#endif
#endif
