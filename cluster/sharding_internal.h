/*
 * cluster/sharding_internal.h: the coordinator's pure planning functions
 * (allocation and rebalance), exposed for unit tests. Not installed.
 */
#ifndef TROUPE_SHARDING_INTERNAL_H
#define TROUPE_SHARDING_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A region as the planner sees it. */
typedef struct troupe__shregion {
  const char *address;   /* the node's address; ties go to the lowest */
  uint32_t shards;       /* shards it hosts now (pick_region only) */
  bool proxy;            /* hosts nothing */
  bool leaving;          /* gives its shards away, takes none */
} troupe__shregion;

/* The region that gets an unallocated shard: the one with the fewest
 * shards among those that are neither proxy nor leaving (ties: lowest
 * address). -1 when there is none. */
int troupe__shard_pick_region(const troupe__shregion *regs, size_t n);

/*
 * Which shards to move now. owner[s] is the index of the region hosting
 * shard s (-1: unallocated); moving[s] != 0 for shards already being
 * handed off (they count against max_moves and are not counted as their
 * owner's). Every shard of a leaving region moves; otherwise one shard
 * moves from the most loaded eligible region (ties: lowest index; its
 * lowest shard) to the least loaded one while they differ by more than
 * threshold. At most max_moves shards are in flight, counting those
 * already moving. Writes the shards to move into out (room for max_moves)
 * and returns how many.
 */
size_t troupe__shard_plan_rebalance(const int32_t *owner,
                                    const uint8_t *moving, uint32_t nshards,
                                    const troupe__shregion *regs, size_t n,
                                    uint32_t threshold, uint32_t max_moves,
                                    uint32_t *out);

/* FNV-1a 64 of bytes (troupe_shard_of is this modulo shards). */
static inline uint64_t troupe__fnv1a64(const void *p, size_t len) {
  const unsigned char *s = p;
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; i++) {
    h ^= s[i];
    h *= 1099511628211ull;
  }
  return h;
}

#endif
