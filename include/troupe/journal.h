/*
 * troupe/journal.h: the event journal.
 *
 * A journal stores, per persistence id, a contiguous sequence of events
 * numbered from 1. Events are opaque to it: a manifest and schema version
 * naming the type, payload bytes (the codec's CBOR), tags, a timestamp and
 * a writer id. Every stored event also gets a global ordering position
 * (its "offset"), assigned by the store in commit order: offsets are
 * strictly increasing, gap-free over all events, and a reader never sees
 * offset N+1 before offset N is visible.
 *
 * Backends are chosen by a spec string and are otherwise invisible:
 *
 *   "memory:"             a private in-memory store (gone when closed)
 *   "memory:NAME"         a named in-memory store, shared by every handle
 *                         opened on the same name while one is open
 *   "rocksdb:/path/dir"   an embedded RocksDB database in that directory
 *   "postgresql://..."    a PostgreSQL database (a libpq URI; also
 *   "pg:KEY=VALUE ..."    a libpq key=value string); `schema=NAME` picks
 *                         the schema (default "troupe"); see docs/journal.md
 *
 * Opening the journal, the snapshot store (troupe/snapshot.h) and the
 * durable-state store (troupe/state.h) on the same spec in one process
 * shares one underlying store (one RocksDB database, one writer thread).
 *
 * Asynchronous calls. Every operation takes a completion callback and a
 * `void *data` passed back to it. When a call returns an error, its
 * callback never runs. When it returns 0 the callback runs exactly once
 * (for the paged reads: one or more times, see below), on a thread owned
 * by the store: for RocksDB the writer thread (appends, deletes) or a
 * reader thread (reads); for memory the store's worker thread. The
 * callback may run before the call returns. Callbacks must be short and
 * must not block: hand the result to your own thread (an actor system's
 * thread-safe tell) and return. A callback may issue further asynchronous
 * calls; it must not call the *_sync wrappers nor close the store (those
 * return TROUPE_EWRONGTHREAD there). Inside a callback with a failure
 * status, troupe_errmsg() gives the backend's detail text.
 *
 * The *_sync wrappers submit the same operation and wait for it, for
 * tools and tests. They may be called from any thread except a store
 * thread.
 *
 * Thread safety: every function here may be called from any thread,
 * concurrently, except troupe_journal_close() which must not race with
 * other calls on the same handle.
 */
#ifndef TROUPE_JOURNAL_H
#define TROUPE_JOURNAL_H

#include "troupe/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct troupe_journal troupe_journal;
typedef struct troupe_journal_sub troupe_journal_sub;

/* Limits checked by every backend (bad input → TROUPE_EINVAL). */
#define TROUPE_JOURNAL_MAX_ID_LEN       1024u   /* persistence id bytes */
#define TROUPE_JOURNAL_MAX_MANIFEST_LEN 1024u
#define TROUPE_JOURNAL_MAX_TAGS         64u     /* tags per event */
#define TROUPE_JOURNAL_MAX_TAG_LEN      255u
#define TROUPE_JOURNAL_MAX_BATCH        10000u  /* events per append */

/*
 * Options for opening a store (journal, snapshot store or durable-state
 * store). Initialise with troupe_store_options_init() and change fields;
 * a NULL options pointer means the defaults. When several handles share
 * one store, the options of the first open apply.
 */
typedef struct troupe_store_options {
  /* 1 (default): an append/save/upsert is acknowledged only after the
   * write-ahead log is synced to disk (one sync per group commit).
   * 0: acknowledged once written to the OS; a machine crash may lose the
   * last acknowledged writes, a process crash does not. */
  int sync;
  /* 1: create an empty store when none exists at the spec. Default 0:
   * opening a missing store fails with TROUPE_ENOENT. */
  int create_if_missing;
  /* Events per replay / by-tag page delivered to a callback; default 256. */
  uint32_t page_size;
  /* Reader threads (RocksDB; PostgreSQL: each with its own connection,
   * 1..8); default 2. */
  uint32_t reader_threads;
  /* Largest payload (or snapshot / state value) accepted, in bytes;
   * default 16 MiB, at most 1 GiB. */
  size_t max_payload;
} troupe_store_options;

/* Fill `o` with the defaults. Any thread. */
TROUPE_EXTERN void troupe_store_options_init(troupe_store_options *o);

/*
 * An event. On append the caller fills manifest, version, payload,
 * tags, timestamp_ms and writer_id; persistence_id must be NULL or equal
 * to the append's id, seq must be 0 or the number the event will get,
 * offset is ignored. On reads every field is set and every pointer points
 * into memory owned by the store that is valid only during the callback.
 */
typedef struct troupe_event {
  const char *persistence_id;
  uint64_t seq;                /* 1-based, contiguous per persistence id */
  uint64_t offset;             /* global ordering position (reads only) */
  const char *manifest;        /* type name, may be "" */
  uint32_t version;            /* schema version of the payload */
  const void *payload;         /* may be NULL when payload_len is 0 */
  size_t payload_len;
  const char *const *tags;     /* ntags non-empty strings */
  size_t ntags;
  int64_t timestamp_ms;        /* milliseconds since the epoch */
  uint64_t writer_id;
} troupe_event;

/*
 * Open a journal on `spec` (see above). On success *out is a handle that
 * the caller closes with troupe_journal_close().
 * Errors: TROUPE_EINVAL (NULL/unknown spec, bad options),
 * TROUPE_ENOENT (no store and create_if_missing is 0), TROUPE_ESCHEMA (the
 * store has another format version: the message names `troupe journal
 * migrate`), TROUPE_EBUSY (the database is locked by another process),
 * TROUPE_EUNSUPPORTED (a backend not built in), TROUPE_EIO,
 * TROUPE_ECORRUPT, TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_journal_open(const char *spec,
                                      const troupe_store_options *opts,
                                      troupe_journal **out);

/*
 * Close the handle: waits until every operation submitted through it has
 * completed (their callbacks have run), drops its subscriptions, and
 * releases the store (the last handle of a store closes it). NULL is
 * accepted. Returns 0, or TROUPE_EWRONGTHREAD when called on a store
 * thread (from a callback), in which case nothing is closed.
 */
TROUPE_EXTERN int troupe_journal_close(troupe_journal *j);

/* The spec the journal was opened with (owned by the handle). */
TROUPE_EXTERN const char *troupe_journal_spec(const troupe_journal *j);

/*
 * Append: status 0 and head = the new highest sequence number; or
 * TROUPE_ECONFLICT and head = the actual highest sequence number (the
 * store is unchanged); or another error (TROUPE_EIO, TROUPE_ECLOSED...)
 * with head 0 — after a storage error nothing of the batch is stored.
 */
typedef void (*troupe_journal_append_cb)(int status, uint64_t head,
                                         void *data);

/*
 * Append `n` events to `persistence_id` atomically (all or none), if and
 * only if its highest sequence number is `expected_seq` (0 for a new id);
 * the events get expected_seq+1 ... expected_seq+n and consecutive
 * offsets. Appends to one id are applied in submission order; submitting
 * the next append before the previous completed is allowed (pass the
 * expected head after the previous one).
 * Ownership: everything is copied before the call returns.
 * Errors (callback not run): TROUPE_EINVAL (NULL arguments, empty or too
 * long id, n == 0 or > TROUPE_JOURNAL_MAX_BATCH, an event's seq or id
 * not matching, too long manifest, bad tags, payload larger than
 * max_payload, sequence overflow), TROUPE_ECLOSED, TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_journal_append(troupe_journal *j,
                                        const char *persistence_id,
                                        uint64_t expected_seq,
                                        const troupe_event *events, size_t n,
                                        troupe_journal_append_cb cb,
                                        void *data);

/*
 * Paged reads. `events` holds `n` events (valid during the call only).
 * `done` is 1 on the last call of the read. Return 0 to continue; any
 * other value stops the read (no further call is made). On failure the
 * callback is called once with status < 0, n == 0 and done == 1.
 */
typedef int (*troupe_journal_events_cb)(int status, const troupe_event *events,
                                        size_t n, int done, void *data);

/*
 * Replay the events of `persistence_id` with from <= seq <= to (to =
 * UINT64_MAX for all), at most `max` of them (0 = no limit), in sequence
 * order, in pages of up to page_size events. Events deleted with
 * troupe_journal_delete_to() are not returned. An unknown id replays
 * nothing (one call with n == 0, done == 1). The read sees one consistent
 * state of the store. Memory is bounded by one page; for flow control
 * read with `max` set and continue from the last seq + 1.
 * Errors: TROUPE_EINVAL (NULL, bad id, from > to, from == 0),
 * TROUPE_ECLOSED, TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_journal_replay(troupe_journal *j,
                                        const char *persistence_id,
                                        uint64_t from, uint64_t to,
                                        uint64_t max,
                                        troupe_journal_events_cb cb,
                                        void *data);

/* Completion with one number (highest sequence number). */
typedef void (*troupe_journal_seq_cb)(int status, uint64_t seq, void *data);

/*
 * The highest sequence number ever appended to `persistence_id` (0 when
 * none), unchanged by deletes. Errors: TROUPE_EINVAL, TROUPE_ECLOSED.
 */
TROUPE_EXTERN int troupe_journal_highest(troupe_journal *j,
                                         const char *persistence_id,
                                         troupe_journal_seq_cb cb, void *data);

/*
 * Delete the events of `persistence_id` with seq <= to_seq (clamped to
 * the highest; their tag index entries go too). The highest sequence
 * number stays; the next append still expects it. The callback gets the
 * sequence number deleted up to. Ordered with appends to the same id.
 * Errors: TROUPE_EINVAL, TROUPE_ECLOSED.
 */
TROUPE_EXTERN int troupe_journal_delete_to(troupe_journal *j,
                                           const char *persistence_id,
                                           uint64_t to_seq,
                                           troupe_journal_seq_cb cb,
                                           void *data);

/*
 * Events carrying `tag` with offset > after_offset, in offset order, at
 * most `max` (0 = all currently stored), in pages. Offsets of one tag are
 * strictly increasing (gaps are events without the tag, or deleted ones);
 * a reader that continues from the last offset it saw never misses an
 * event committed later. Errors: TROUPE_EINVAL (NULL/empty/too long tag),
 * TROUPE_ECLOSED.
 */
TROUPE_EXTERN int troupe_journal_by_tag(troupe_journal *j, const char *tag,
                                        uint64_t after_offset, uint64_t max,
                                        troupe_journal_events_cb cb,
                                        void *data);

/*
 * Slices split the persistence ids into TROUPE_JOURNAL_SLICES fixed
 * buckets by a stable hash of the id (FNV-1a; never changes, it is
 * stored). Projections run N instances, each owning a slice range.
 */
#define TROUPE_JOURNAL_SLICES 1024u

/* The slice (0..TROUPE_JOURNAL_SLICES-1) of a persistence id; any thread.
 * Returns -1 (TROUPE_EINVAL) for NULL or an empty id. */
TROUPE_EXTERN int troupe_journal_slice_of(const char *persistence_id);

/*
 * Events of every persistence id whose slice is in [slice_lo, slice_hi],
 * with offset > after_offset, in offset order, at most `max` (0 = all
 * currently stored), in pages. The same ordering guarantee as by_tag: a
 * reader continuing from the last offset it saw never misses an event
 * committed later. by_slice(0, TROUPE_JOURNAL_SLICES - 1, ...) reads the
 * whole journal in offset order. Deleted events are not returned.
 * Errors: TROUPE_EINVAL (NULL callback, slice_lo > slice_hi, slice_hi >=
 * TROUPE_JOURNAL_SLICES), TROUPE_ECLOSED.
 */
TROUPE_EXTERN int troupe_journal_by_slice(troupe_journal *j, unsigned slice_lo,
                                          unsigned slice_hi,
                                          uint64_t after_offset, uint64_t max,
                                          troupe_journal_events_cb cb,
                                          void *data);

/* A page of persistence ids (byte order), valid during the call only. */
typedef void (*troupe_journal_ids_cb)(int status, const char *const *ids,
                                      size_t n, void *data);

/*
 * List up to `max` (1..100000) persistence ids that sort after `after`
 * (NULL or "" = from the start), in byte order. Every id ever appended to
 * is listed, also after its events were deleted. Page through by passing
 * the last id returned; fewer than `max` means the end.
 * Errors: TROUPE_EINVAL, TROUPE_ECLOSED.
 */
TROUPE_EXTERN int troupe_journal_list_ids(troupe_journal *j, const char *after,
                                          size_t max, troupe_journal_ids_cb cb,
                                          void *data);

/*
 * Live notification: after each successful append, `cb` is called with
 * the appended events (all of one append, in order), before that
 * append's completion callback. Calls come in offset order, on the
 * store's writer thread (memory: its worker thread), one at a time. When
 * `tag` is not NULL only events carrying it are passed (calls with none
 * are skipped). Events are valid during the call only; the callback
 * must not block (it delays every writer of the store). It may
 * subscribe and unsubscribe (its own subscription too) and submit
 * asynchronous calls. Subscribers see the appends of this store only.
 * Other processes: on PostgreSQL every transaction that appended events
 * also runs NOTIFY on the channel "troupe_events_<schema>" with the
 * transaction's last offset (decimal text) as payload, delivered at
 * commit in commit order; LISTEN on it from your own connection and read
 * by_tag / by_slice from the last offset you saw. A notification is only
 * a wake-up (one is lost when the listener's connection is): the journal
 * is the truth.
 * On success *out is the subscription, ended with
 * troupe_journal_unsubscribe() or by closing the journal handle.
 * Errors: TROUPE_EINVAL, TROUPE_ECLOSED, TROUPE_ENOMEM.
 */
typedef void (*troupe_journal_notify_cb)(const troupe_event *events, size_t n,
                                         void *data);
TROUPE_EXTERN int troupe_journal_subscribe(troupe_journal *j, const char *tag,
                                           troupe_journal_notify_cb cb,
                                           void *data,
                                           troupe_journal_sub **out);

/*
 * End a subscription. When this returns, `cb` is not running (unless this
 * is called from within it) and will not be called again. NULL accepted.
 */
TROUPE_EXTERN void troupe_journal_unsubscribe(troupe_journal_sub *sub);

/* --- Synchronous wrappers (not on a store thread) ------------------------
 * Each submits the operation above and waits for it; the return value is
 * the operation's status (or the submission error). Callbacks of the
 * paged reads still run on the store's thread. */
TROUPE_EXTERN int troupe_journal_append_sync(troupe_journal *j,
                                             const char *persistence_id,
                                             uint64_t expected_seq,
                                             const troupe_event *events,
                                             size_t n, uint64_t *head);
TROUPE_EXTERN int troupe_journal_replay_sync(troupe_journal *j,
                                             const char *persistence_id,
                                             uint64_t from, uint64_t to,
                                             uint64_t max,
                                             troupe_journal_events_cb cb,
                                             void *data);
TROUPE_EXTERN int troupe_journal_highest_sync(troupe_journal *j,
                                              const char *persistence_id,
                                              uint64_t *highest);
TROUPE_EXTERN int troupe_journal_delete_to_sync(troupe_journal *j,
                                                const char *persistence_id,
                                                uint64_t to_seq);
TROUPE_EXTERN int troupe_journal_by_tag_sync(troupe_journal *j,
                                             const char *tag,
                                             uint64_t after_offset,
                                             uint64_t max,
                                             troupe_journal_events_cb cb,
                                             void *data);
TROUPE_EXTERN int troupe_journal_list_ids_sync(troupe_journal *j,
                                               const char *after, size_t max,
                                               troupe_journal_ids_cb cb,
                                               void *data);

TROUPE_EXTERN int troupe_journal_by_slice_sync(troupe_journal *j,
                                               unsigned slice_lo,
                                               unsigned slice_hi,
                                               uint64_t after_offset,
                                               uint64_t max,
                                               troupe_journal_events_cb cb,
                                               void *data);

/* --- Storage schema versions and migrations -------------------------------
 *
 * Every persistent store records the version of its storage schema
 * (PostgreSQL: the troupe_schema_version table; RocksDB: the "format" key).
 * Opening a store whose version differs from the library's fails with
 * TROUPE_ESCHEMA; migrations are explicit (the `troupe journal migrate`
 * command calls troupe_store_migrate). These calls open their own
 * connection / database and must not run while a store at the same spec
 * is open in this process (TROUPE_EBUSY). Blocking; not on a loop thread.
 */
typedef struct troupe_schema_status {
  int found;       /* version recorded in the store; 0 = empty store */
  int supported;   /* the version this library reads and writes */
  int pending;     /* migration steps that would run (0 when current) */
} troupe_schema_status;

/* Read the schema version of the store at `spec` without changing it.
 * Errors: TROUPE_EINVAL (bad spec), TROUPE_ENOENT (no store there),
 * TROUPE_ECONNREFUSED / TROUPE_EAUTH (PostgreSQL), TROUPE_EIO. */
TROUPE_EXTERN int troupe_store_schema(const char *spec,
                                      troupe_schema_status *out);

/* Called once per migration step, after it is applied (or, with dry_run,
 * instead of applying it): from -> to and a one-line description. */
typedef void (*troupe_migrate_cb)(int from_version, int to_version,
                                  const char *description, int dry_run,
                                  void *data);

/*
 * Apply every pending step of the store at `spec`, in order, each one
 * atomically (PostgreSQL: one transaction; RocksDB: one recorded step), so
 * a crash mid-way resumes at the next step. Idempotent: a current store
 * returns 0 with no calls. With dry_run nothing is changed. Returns the
 * number of steps applied (or that would be), or an error:
 * TROUPE_ESCHEMA (the store is newer than the library, or not a troupe
 * store), TROUPE_ENOENT, TROUPE_EBUSY, TROUPE_EINVAL, connection errors.
 */
TROUPE_EXTERN int troupe_store_migrate(const char *spec, int dry_run,
                                       troupe_migrate_cb cb, void *data);

#ifdef __cplusplus
}
#endif
#endif
