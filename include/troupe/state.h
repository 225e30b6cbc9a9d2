/*
 * troupe/state.h: the durable-state store.
 *
 * One record per persistence id holding the whole state (opaque bytes)
 * with a revision that counts updates from 1. An upsert names the
 * revision it expects (0 = the record must not exist) and stores revision
 * expected+1; another current revision → TROUPE_ECONFLICT and nothing is
 * written. Opened on the same kind of spec as a journal
 * (troupe/journal.h), sharing the store when the spec is the same.
 * Callbacks, threads and errors follow troupe/journal.h.
 */
#ifndef TROUPE_STATE_H
#define TROUPE_STATE_H

#include "troupe/journal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct troupe_state_store troupe_state_store;

/* A record. On upsert the caller fills persistence_id, manifest, version,
 * value, timestamp_ms (revision is ignored: pass the expected one as an
 * argument). On get every pointer points into store memory valid during
 * the callback only (or caller-owned after troupe_state_get_sync). */
typedef struct troupe_state_record {
  const char *persistence_id;
  uint64_t revision;
  int64_t timestamp_ms;
  const char *manifest;
  uint32_t version;
  const void *value;
  size_t value_len;
} troupe_state_record;

TROUPE_EXTERN int troupe_state_store_open(const char *spec,
                                          const troupe_store_options *opts,
                                          troupe_state_store **out);
TROUPE_EXTERN int troupe_state_store_close(troupe_state_store *s);

/* status 0 and the new (upsert) or deleted (delete) revision;
 * TROUPE_ECONFLICT and the actual revision (0 = no record). */
typedef void (*troupe_state_rev_cb)(int status, uint64_t revision, void *data);
/* status 0 and rec, or status 0 and rec NULL when there is no record. */
typedef void (*troupe_state_get_cb)(int status,
                                    const troupe_state_record *rec,
                                    void *data);

/*
 * Store `rec` as revision expected_revision+1 if the current revision is
 * expected_revision (0 = no record). Copied before the call returns.
 * Errors: TROUPE_EINVAL (NULL, bad id, NULL manifest, NULL value with
 * value_len > 0, value larger than max_payload), TROUPE_ECLOSED.
 */
TROUPE_EXTERN int troupe_state_upsert(troupe_state_store *s,
                                      const troupe_state_record *rec,
                                      uint64_t expected_revision,
                                      troupe_state_rev_cb cb, void *data);
TROUPE_EXTERN int troupe_state_get(troupe_state_store *s,
                                   const char *persistence_id,
                                   troupe_state_get_cb cb, void *data);
/*
 * Delete the record if its revision is expected_revision (0 = whatever it
 * is). Deleting a missing record succeeds with revision 0 when
 * expected_revision is 0. After a delete the next upsert expects 0.
 */
TROUPE_EXTERN int troupe_state_delete(troupe_state_store *s,
                                      const char *persistence_id,
                                      uint64_t expected_revision,
                                      troupe_state_rev_cb cb, void *data);

/* Synchronous wrappers (not on a store thread). get_sync sets *out to a
 * caller-owned copy (free with troupe_state_record_free) or NULL. */
TROUPE_EXTERN int troupe_state_upsert_sync(troupe_state_store *s,
                                           const troupe_state_record *rec,
                                           uint64_t expected_revision,
                                           uint64_t *revision);
TROUPE_EXTERN int troupe_state_get_sync(troupe_state_store *s,
                                        const char *persistence_id,
                                        troupe_state_record **out);
TROUPE_EXTERN int troupe_state_delete_sync(troupe_state_store *s,
                                           const char *persistence_id,
                                           uint64_t expected_revision);
TROUPE_EXTERN void troupe_state_record_free(troupe_state_record *rec);

#ifdef __cplusplus
}
#endif
#endif
