/*
 * troupe/snapshot.h: the snapshot store.
 *
 * Snapshots are opaque state bytes saved for a persistence id at a
 * sequence number, so recovery can start from the latest snapshot and
 * replay only the events after it. A snapshot store is opened on the same
 * kind of spec as a journal (troupe/journal.h); opened on the same spec as
 * a journal in the same process it shares that store (one RocksDB
 * database, one writer thread).
 *
 * Callbacks, threads and errors follow troupe/journal.h: when a call
 * returns an error its callback never runs; otherwise it runs once on a
 * store thread, possibly before the call returns; it must not block nor
 * call the *_sync wrappers.
 */
#ifndef TROUPE_SNAPSHOT_H
#define TROUPE_SNAPSHOT_H

#include "troupe/journal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct troupe_snapshot_store troupe_snapshot_store;

/* A snapshot. On save the caller fills every field (persistence_id is
 * the key, seq >= 1); on load every pointer points into store memory
 * valid during the callback only (or owned by the caller when returned by
 * troupe_snapshot_load_sync, freed with troupe_snapshot_free). */
typedef struct troupe_snapshot {
  const char *persistence_id;
  uint64_t seq;
  int64_t timestamp_ms;
  const char *manifest;
  uint32_t version;
  const void *state;
  size_t state_len;
} troupe_snapshot;

/* Selection of snapshots of one persistence id: min_seq <= seq <= max_seq
 * and min_timestamp <= timestamp_ms <= max_timestamp.
 * troupe_snapshot_criteria_all() selects everything. */
typedef struct troupe_snapshot_criteria {
  uint64_t min_seq, max_seq;
  int64_t min_timestamp, max_timestamp;
} troupe_snapshot_criteria;

static inline troupe_snapshot_criteria troupe_snapshot_criteria_all(void) {
  troupe_snapshot_criteria c = {0, UINT64_MAX, INT64_MIN, INT64_MAX};
  return c;
}

/* Open / close, as troupe_journal_open / troupe_journal_close. */
TROUPE_EXTERN int troupe_snapshot_store_open(const char *spec,
                                             const troupe_store_options *opts,
                                             troupe_snapshot_store **out);
TROUPE_EXTERN int troupe_snapshot_store_close(troupe_snapshot_store *s);

/* status 0 or a failure; `count` = snapshots deleted (delete/retain). */
typedef void (*troupe_snapshot_done_cb)(int status, uint64_t count,
                                        void *data);
/* status 0 and snap, or status 0 and snap NULL when none matches. */
typedef void (*troupe_snapshot_load_cb)(int status,
                                        const troupe_snapshot *snap,
                                        void *data);

/*
 * Save a snapshot (replacing one saved at the same seq). Copied before
 * the call returns. Errors: TROUPE_EINVAL (NULL, bad id, seq 0, NULL
 * manifest, NULL state with state_len > 0, state larger than
 * max_payload), TROUPE_ECLOSED.
 */
TROUPE_EXTERN int troupe_snapshot_save(troupe_snapshot_store *s,
                                       const troupe_snapshot *snap,
                                       troupe_snapshot_done_cb cb, void *data);

/*
 * Load the snapshot with the highest seq matching `crit` (NULL = all).
 * Typical: {0, max_seq, INT64_MIN, INT64_MAX} for "latest at or below".
 */
TROUPE_EXTERN int troupe_snapshot_load(troupe_snapshot_store *s,
                                       const char *persistence_id,
                                       const troupe_snapshot_criteria *crit,
                                       troupe_snapshot_load_cb cb, void *data);

/* Delete every snapshot of the id matching `crit` (NULL = all). */
TROUPE_EXTERN int troupe_snapshot_delete(troupe_snapshot_store *s,
                                         const char *persistence_id,
                                         const troupe_snapshot_criteria *crit,
                                         troupe_snapshot_done_cb cb,
                                         void *data);

/* Retention: keep the `keep` (>= 1) latest snapshots, delete the others. */
TROUPE_EXTERN int troupe_snapshot_retain(troupe_snapshot_store *s,
                                         const char *persistence_id,
                                         uint64_t keep,
                                         troupe_snapshot_done_cb cb,
                                         void *data);

/* Synchronous wrappers (not on a store thread). load_sync sets *out to a
 * caller-owned copy (free with troupe_snapshot_free) or NULL when none. */
TROUPE_EXTERN int troupe_snapshot_save_sync(troupe_snapshot_store *s,
                                            const troupe_snapshot *snap);
TROUPE_EXTERN int troupe_snapshot_load_sync(troupe_snapshot_store *s,
                                            const char *persistence_id,
                                            const troupe_snapshot_criteria *crit,
                                            troupe_snapshot **out);
TROUPE_EXTERN int troupe_snapshot_delete_sync(troupe_snapshot_store *s,
                                              const char *persistence_id,
                                              const troupe_snapshot_criteria *crit,
                                              uint64_t *count);
TROUPE_EXTERN int troupe_snapshot_retain_sync(troupe_snapshot_store *s,
                                              const char *persistence_id,
                                              uint64_t keep, uint64_t *count);
/* Free a snapshot returned by troupe_snapshot_load_sync. NULL accepted. */
TROUPE_EXTERN void troupe_snapshot_free(troupe_snapshot *snap);

#ifdef __cplusplus
}
#endif
#endif
