/*
 * troupe/sharding.h: cluster sharding — every entity of a type lives on
 * exactly one node of the cluster and is reached by its id from anywhere.
 *
 * Routing. Each node that starts an entity type runs a *region* for it
 * (an actor). A message told to the region carries its entity id (the
 * type's extract_id finds it); the region maps the id to a shard
 * (troupe_shard_of: a stable hash modulo `shards`) and the shard to the
 * region that owns it, asking the coordinator the first time. Messages
 * keep their sender and ask id all the way, so troupe_ask to a region is
 * answered by the entity. On the owning node the shard starts the entity
 * on demand (a persistent one recovers from the journal first) and
 * delivers the messages in the order the region received them.
 *
 * Coordinator. One coordinator per entity type runs on the oldest member.
 * It allocates unallocated shards to the region with the fewest shards
 * (ties: lowest address) and rebalances when membership changes: at most
 * `rebalance_concurrency` shards move at a time, from regions holding more
 * than the least-loaded by `rebalance_threshold` or more. A move is a
 * hand-off: every region stops buffering-and-forwarding to the old home,
 * the old home stops the shard's entities (their in-flight persists
 * complete first) and confirms, and only then is the shard allocated
 * anew. Messages for a shard whose home is unknown or moving are buffered
 * (at most `buffer_size` per region) and delivered after; over the bound
 * they are dead letters (counted, logged), never dropped silently.
 *
 * Coordinator failover. The coordinator's state is not stored: a new
 * coordinator (on the new oldest member) rebuilds it from the regions,
 * which report the shards they host when they register; it allocates
 * nothing until the region of every up member has registered (at most
 * handoff_timeout_ms). The shards of a region that is gone (its node
 * removed, or the region stopped) are allocated again at once; shards
 * nobody reports are allocated on first use.
 *
 * Single writer. A shard is allocated to a new home only after its old
 * home confirmed the hand-off or the old node was removed from the
 * cluster (a downed node stops its regions before its removal takes
 * effect; see troupe/cluster.h). At no time do two nodes run the same
 * entity.
 *
 * Passivation. An entity that received nothing for passivate_idle_ms is
 * stopped (and started again on its next message); an entity may also ask
 * for it (troupe_sharding_passivate). Messages that arrive while it stops
 * are buffered and start it again.
 *
 * Remember entities. With remember_entities, each shard records the ids of
 * its started entities in the journal (persistence id
 * "sharding|<type>|<shard>") and starts them all again whenever the shard
 * starts (after a move or a restart); a passivated entity is forgotten.
 *
 * Paths. The region is "/system/sharding-<type>"; the coordinator
 * "/system/sharding-<type>-coord" on the oldest member. Entities are the
 * region's children (named by their id when it is a valid actor name).
 *
 * Threads. troupe_sharding_start and troupe_sharding_passivate run on the
 * system's thread (or before it runs); troupe_sharding_region and
 * troupe_sharding_stats from any thread. Tell and ask the region ref from
 * anywhere.
 */
#ifndef TROUPE_SHARDING_H
#define TROUPE_SHARDING_H

#include "troupe/cluster.h"
#include "troupe/persistence.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest entity id (bytes, NUL excluded). */
#define TROUPE_ENTITY_ID_MAX 255

typedef struct troupe_sharding_def {
  const char *type_name;       /* names the region: [A-Za-z0-9_-]{1,64} */
  uint32_t shards;             /* default 128; the same on every node */
  /* The entity id of a message: write it (NUL-terminated) into buf and
   * return its length; a negative return makes the message a dead letter
   * (reason TROUPE_EINVAL). Called on the loop thread of the region that
   * receives the message. Required. */
  int (*extract_id)(const troupe_msg *msg, char *buf, size_t size);
  /* What an entity is: exactly one of these. */
  const troupe_entity_def *entity;    /* event sourced, with persistence */
  const troupe_durable_def *durable;  /* durable state, with persistence */
  const troupe_behavior *behavior;    /* a plain actor; init's arg is the
                                         entity id (a NUL-terminated
                                         string) */
  troupe_persistence *persistence;    /* for entity/durable and for
                                         remember_entities */
  /* Behaviour. */
  uint64_t passivate_idle_ms;  /* 0: never */
  bool remember_entities;
  bool proxy_only;             /* route only; host no shards here */
  uint32_t buffer_size;        /* messages held per region; default
                                  100000 */
  uint32_t rebalance_concurrency; /* default 3 */
  uint32_t rebalance_threshold;   /* default 1 */
  uint64_t handoff_timeout_ms;    /* a hand-off not confirmed in time is
                                     retried; default 10000 */
} troupe_sharding_def;

/*
 * Start the region of def->type_name on sys (a cluster node: call
 * troupe_cluster_start first). def and everything it points to must
 * outlive the system. The region ref is written to *region. System
 * thread, or before it runs. Errors: TROUPE_EINVAL (bad definition),
 * TROUPE_ESTATE (no cluster), TROUPE_EEXIST (type already started here),
 * TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_sharding_start(troupe_system *sys,
                                        const troupe_sharding_def *def,
                                        troupe_ref *region);

/* The region of type_name on sys. Any thread. Errors: TROUPE_ENOENT. */
TROUPE_EXTERN int troupe_sharding_region(troupe_system *sys,
                                         const char *type_name,
                                         troupe_ref *region);

/* The shard of an entity id: a stable hash (FNV-1a 64 of the id bytes)
 * modulo shards. The same on every node and every build. */
TROUPE_EXTERN uint32_t troupe_shard_of(const char *entity_id, size_t len,
                                       uint32_t shards);

/* From inside a sharded entity (plain actor: its ctx; persistent: via
 * troupe_entity_ctx): ask its shard to stop it when idle. Messages that
 * arrive meanwhile start it again. Errors: TROUPE_ESTATE (not a sharded
 * entity). */
TROUPE_EXTERN int troupe_sharding_passivate(troupe_ctx *ctx);

typedef struct troupe_sharding_stats {
  uint32_t shards;             /* shards hosted here now */
  uint32_t entities;           /* entities running here now */
  uint64_t buffered;           /* messages waiting for a shard home now */
  uint64_t delivered;          /* messages handed to local entities */
  uint64_t forwarded;          /* messages sent to another region */
  uint64_t dropped;            /* dead letters (buffer full, bad id) */
  uint64_t started;            /* entities started (incl. recoveries) */
  uint64_t passivated;
  uint64_t handoffs;           /* shards handed off from here */
  uint64_t failures;           /* entity failures seen by the region */
  uint64_t conflicts;          /* of which single-writer violations: a
                                  journal sequence conflict
                                  (TROUPE_ECONFLICT) or an id already live
                                  (TROUPE_EBUSY); 0 unless something is
                                  wrong */
} troupe_sharding_stats;

/* Counters of the region of type_name on sys (any thread; a consistent
 * copy updated by the region). Errors: TROUPE_ENOENT. */
TROUPE_EXTERN int troupe_sharding_stats_get(troupe_system *sys,
                                            const char *type_name,
                                            troupe_sharding_stats *out);

/* Which shards the coordinator (as known by this node's region) has
 * allocated to the node at address; writes at most max shard numbers
 * (ascending) and returns how many there are (may exceed max). For tests
 * and tools. Any thread. Errors: TROUPE_EINVAL, TROUPE_ENOENT (no
 * region). */
TROUPE_EXTERN int troupe_sharding_shards_of(troupe_system *sys,
                                            const char *type_name,
                                            const char *address,
                                            uint32_t *out, size_t max);

#ifdef __cplusplus
}
#endif
#endif
