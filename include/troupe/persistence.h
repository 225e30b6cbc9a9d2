/*
 * troupe/persistence.h: persistent entities (event sourcing on actors).
 *
 * An entity is an actor whose state is never stored directly. Its command
 * handler decides events; the journal stores them; its event handler
 * (`apply`) folds them into the state. On start the entity loads its
 * latest snapshot and replays the events after it.
 *
 * Semantics:
 *  - Recovery: latest snapshot, then the journal's highest sequence number,
 *    then the events between, in pages; they must be contiguous and end at
 *    the highest, else recovery fails with a message naming the entity and
 *    sequence number (the entity stops; other entities are unaffected).
 *  - Commands that arrive during recovery or while a persist is in flight
 *    are stashed and handled in order afterwards.
 *  - All events persisted while handling one command are appended as one
 *    atomic batch. After the batch is durable the events are applied, then
 *    the replies and callbacks registered by the command run, in order.
 *  - TROUPE_PERSIST_ASYNC: the entity goes on with the next commands while
 *    the batch is written (state and replies still follow durability).
 *  - A failed write (storage error, or a sequence conflict meaning another
 *    writer) fails the entity: its supervisor decides (restart = recover).
 *  - A rejected batch (an event that cannot be encoded, bad tags, too big)
 *    is reported to on_persist_rejected; the entity goes on.
 *  - One live entity per persistence id per troupe_persistence: a second
 *    start of the same id fails with TROUPE_EBUSY.
 */
#ifndef TROUPE_PERSISTENCE_H
#define TROUPE_PERSISTENCE_H

#include "troupe/actor.h"
#include "troupe/journal.h"
#include "troupe/snapshot.h"
#include "troupe/state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The stores entities use, plus the single-writer registry. */
typedef struct troupe_persistence troupe_persistence;

/*
 * Bind a journal (NULL: only durable-state entities will be started) and
 * optionally (NULL for none) a snapshot store. The stores are not owned:
 * close them after troupe_persistence_destroy().
 * Any thread. Errors: TROUPE_EINVAL, TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_persistence_create(troupe_persistence **out,
                                            troupe_journal *journal,
                                            troupe_snapshot_store *snapshots);
/* Free it. Every entity using it must have stopped. NULL is fine. */
TROUPE_EXTERN void troupe_persistence_destroy(troupe_persistence *p);

/* The entity handle passed to command handlers and hooks. Valid during
 * the call only. */
typedef struct troupe_entity troupe_entity;

#define TROUPE_PERSIST_ASYNC 0x1u

typedef struct troupe_entity_def {
  const char *type_name;          /* persistence id = type_name "|" id */
  const troupe_type *state_type;  /* the state (described: snapshots) */
  /* The state before any event (state is zeroed first). Optional. */
  void (*init_state)(void *state, const char *entity_id);
  /* Decide: persist events (troupe_entity_persist), reply, or fail with a
   * negative code (the entity's supervisor decides). TROUPE_UNHANDLED as
   * for actors. The state is read-only here. */
  int (*command)(troupe_entity *e, const void *state, const troupe_msg *cmd);
  /* Fold one event into the state. Must be pure and must not fail for
   * events it persisted; a negative return during recovery fails it. */
  int (*apply)(void *state, const troupe_type *type, const void *event);
  /* Tags for an event: write up to max tag pointers (static strings),
   * return how many. Optional. */
  size_t (*tagger)(const troupe_type *type, const void *event,
                   const char **tags, size_t max);
  /* Snapshot after every N events (0: never), and/or when the predicate
   * says so after an event. Keep the newest snapshot_keep snapshots (0:
   * keep all); with delete_events, events up to the oldest kept snapshot
   * are deleted from the journal. */
  uint32_t snapshot_every;
  bool (*snapshot_when)(const void *state, const troupe_type *type,
                        const void *event, uint64_t seq);
  uint32_t snapshot_keep;
  bool delete_events;
  /* Hooks, all optional. */
  void (*on_recovered)(troupe_entity *e, const void *state, uint64_t seq);
  void (*on_recovery_failed)(troupe_entity *e, int error);
  void (*on_persist_rejected)(troupe_entity *e, const void *state, int error);
  uint32_t replay_page;           /* events per replay request; 0: 4096 */
  uint32_t stash_capacity;        /* commands held; 0: 100000 */
} troupe_entity_def;

/*
 * Start an entity as a child of ctx (ctx NULL: top level in sys; from the
 * system's thread, or before it runs). The actor is named entity_id when
 * that is a valid actor name. Recovery starts at once. Errors:
 * TROUPE_EINVAL (bad definition or id), TROUPE_EBUSY (the id is live),
 * TROUPE_EEXIST (a sibling has that name), TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_entity_spawn(troupe_system *sys, troupe_ctx *ctx,
                                      troupe_persistence *p,
                                      const troupe_entity_def *def,
                                      const char *entity_id, troupe_ref *out);

/* Persist an event of `type` (copied now) as part of the current command's
 * batch. Flags: TROUPE_PERSIST_ASYNC. Errors: TROUPE_ESTATE (not in a
 * command handler), TROUPE_EINVAL, TROUPE_ENOMEM. */
TROUPE_EXTERN int troupe_entity_persist(troupe_entity *e,
                                        const troupe_type *type,
                                        const void *event, unsigned flags);

/* Reply to the command's sender once the current batch is durable (at
 * once when nothing is persisted). */
TROUPE_EXTERN int troupe_entity_reply(troupe_entity *e, const troupe_type *type,
                                      const void *value);

/* Run fn(e, state, data) once the current batch is durable and applied. */
TROUPE_EXTERN int troupe_entity_after(troupe_entity *e,
                                      void (*fn)(troupe_entity *e,
                                                 const void *state,
                                                 void *data),
                                      void *data);

/* Take a snapshot after the current batch (or now, when idle). */
TROUPE_EXTERN int troupe_entity_snapshot(troupe_entity *e);

/* The actor context, for everything actors do (tell, timers, spawn...). */
TROUPE_EXTERN troupe_ctx *troupe_entity_ctx(troupe_entity *e);
TROUPE_EXTERN const char *troupe_entity_id(const troupe_entity *e);
TROUPE_EXTERN const char *troupe_entity_persistence_id(const troupe_entity *e);
/* Sequence number of the last applied event. */
TROUPE_EXTERN uint64_t troupe_entity_seq(const troupe_entity *e);

/* ------------------------------------------------------------------ */
/* Durable-state entities                                              */
/*
 * The simpler alternative to event sourcing: the state is stored whole in
 * a durable-state store, one record per id with a revision. A command
 * handler may replace the state (troupe_durable_persist); the record is
 * upserted with the expected revision, and once stored the new state is
 * the entity's and its replies go out. Commands wait while a write is in
 * flight. A conflict (another writer) or a storage error fails the entity
 * (its supervisor decides; a restart reloads the record).
 */

/* Use `store` for durable-state entities started with p. Not owned. */
TROUPE_EXTERN int troupe_persistence_set_state_store(troupe_persistence *p,
                                                     troupe_state_store *store);

typedef struct troupe_durable troupe_durable;

typedef struct troupe_durable_def {
  const char *type_name;          /* persistence id = type_name "|" id */
  const troupe_type *state_type;  /* described: it is stored */
  void (*init_state)(void *state, const char *entity_id);
  int (*command)(troupe_durable *d, const void *state, const troupe_msg *cmd);
  void (*on_recovered)(troupe_durable *d, const void *state,
                       uint64_t revision);
  void (*on_recovery_failed)(troupe_durable *d, int error);
  uint32_t stash_capacity;        /* commands held; 0: 100000 */
} troupe_durable_def;

/* Start a durable-state entity (as troupe_entity_spawn). Errors also
 * TROUPE_ESTATE when p has no state store. */
TROUPE_EXTERN int troupe_durable_spawn(troupe_system *sys, troupe_ctx *ctx,
                                       troupe_persistence *p,
                                       const troupe_durable_def *def,
                                       const char *entity_id, troupe_ref *out);
/* Replace the state with *new_state (copied) once stored. Once per
 * command. Errors: TROUPE_ESTATE outside a command or twice. */
TROUPE_EXTERN int troupe_durable_persist(troupe_durable *d,
                                         const void *new_state);
/* Reply to the command's sender after the write (at once without one). */
TROUPE_EXTERN int troupe_durable_reply(troupe_durable *d,
                                       const troupe_type *type,
                                       const void *value);
TROUPE_EXTERN troupe_ctx *troupe_durable_ctx(troupe_durable *d);
TROUPE_EXTERN const char *troupe_durable_id(const troupe_durable *d);
/* Revision of the stored state (0: never stored). */
TROUPE_EXTERN uint64_t troupe_durable_revision(const troupe_durable *d);

#ifdef __cplusplus
}
#endif
#endif
