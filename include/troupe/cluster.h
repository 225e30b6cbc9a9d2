/*
 * troupe/cluster.h: cluster membership, split-brain resolution, cluster
 * events.
 *
 * A cluster is a set of actor systems (nodes) that agree on who is a
 * member. A node is any system: a mesh worker ("troupe://w3", reached over
 * the in-process transport) or a system running remoting
 * ("troupe://bank@10.0.0.5:2552", reached over TCP). A node's *address* is
 * that URI without a path; with the address a peer finds the node's
 * cluster daemon ("<address>/system/cluster").
 *
 * Membership. A node joins through seed nodes. Members move through
 * joining -> up -> leaving -> exiting -> removed, or to down (decided by a
 * split-brain resolver or troupe_cluster_down) and then removed. The
 * member set is versioned (vector clock) and gossiped until every member
 * has seen the same version (convergence). The leader — the up or leaving
 * member with the lowest address among the reachable ones; while nobody
 * is up yet, the lowest reachable joining member — moves members
 * forward (joining -> up, leaving -> exiting -> removed, down -> removed)
 * only at convergence. Convergence ignores members that are down (and
 * exiting members that are unreachable: they are on their way out); an
 * unreachable member blocks it (so nothing moves while the cluster cannot
 * agree, until the resolver downs someone).
 *
 * Age. Members get an up-number when they become up; the member with the
 * lowest up-number (ties: lowest address) is the *oldest*. The sharding
 * coordinator runs on the oldest member; keep-oldest keeps its side.
 *
 * Failure detection. Every member heartbeats a few others (all of them in
 * clusters of up to `monitored` members) and each observer keeps a
 * phi-accrual failure detector per monitored node. Phi over the threshold
 * makes the node *unreachable from that observer*; the observation is
 * gossiped and the node is unreachable while any observer says so.
 * Unreachable is an observation, never a removal.
 *
 * Split-brain resolver. When the set of unreachable members has not
 * changed for `stable_after_ms`, the leader of each side (the member with
 * the lowest address among those it can reach) applies the strategy:
 *   keep-majority  the side with more than half of the up/leaving members
 *                  stays (a tie: the side holding the lowest address);
 *   keep-oldest    the side with the oldest member stays (if the oldest is
 *                  alone, it is downed instead when down_if_alone);
 *   static-quorum  a side with at least quorum_size members stays; a side
 *                  below it downs itself;
 *   down-all       every member is downed.
 * The losing side's members are marked down by the winner, and a node
 * that finds itself on the losing side downs itself: it leaves the member
 * set and stops its own system, so that two sides never both keep running
 * the same entities. Removal of downed members takes effect after
 * `down_removal_margin_ms` more, so that the downed side has stopped its
 * shards before the survivors start them.
 *
 * Threads. Functions taking a troupe_system * may be called from any
 * thread unless stated; they read a copy of the member state kept by the
 * daemon (updated on the daemon's loop thread, read under a lock).
 */
#ifndef TROUPE_CLUSTER_H
#define TROUPE_CLUSTER_H

#include "troupe/actor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest node address "troupe://sys@host:port" (NUL included). */
#define TROUPE_ADDRESS_MAX 256

typedef enum troupe_member_status {
  TROUPE_MEMBER_JOINING = 1,
  TROUPE_MEMBER_UP = 2,
  TROUPE_MEMBER_LEAVING = 3,
  TROUPE_MEMBER_EXITING = 4,
  TROUPE_MEMBER_REMOVED = 5,
  TROUPE_MEMBER_DOWN = 6
} troupe_member_status;

/* "joining", "up", ... ("?" for other values). */
TROUPE_EXTERN const char *troupe_member_status_name(troupe_member_status s);

typedef struct troupe_member {
  char address[TROUPE_ADDRESS_MAX]; /* "troupe://sys@host:port" / "troupe://w3" */
  uint64_t uid;                     /* the node's incarnation (random per
                                       start: a restarted node is a new
                                       member) */
  troupe_member_status status;
  uint32_t up_number;               /* 0 until up; lower is older */
  bool reachable;                   /* no observer says it is unreachable */
} troupe_member;

typedef enum troupe_sbr_strategy {
  TROUPE_SBR_KEEP_MAJORITY = 0,
  TROUPE_SBR_KEEP_OLDEST = 1,
  TROUPE_SBR_STATIC_QUORUM = 2,
  TROUPE_SBR_DOWN_ALL = 3,
  TROUPE_SBR_OFF = 4          /* never down anyone automatically */
} troupe_sbr_strategy;

/* Options of troupe_cluster_start. Zero fields take the default. */
typedef struct troupe_cluster_opts {
  /* Seed node addresses. A node whose own address is the first seed
   * forms the cluster by itself when no other seed answers; every other
   * node joins through whichever seed answers first. NULL/0: wait for
   * troupe_cluster_join. */
  const char *const *seeds;
  size_t nseeds;
  uint64_t gossip_ms;               /* gossip round; default 200 */
  uint64_t heartbeat_ms;            /* default 500 */
  double phi_threshold;             /* default 8.0 */
  uint64_t acceptable_pause_ms;     /* heartbeat pause tolerated before phi
                                       rises; default 2000 */
  uint32_t monitored;               /* peers each node heartbeats; 5 */
  troupe_sbr_strategy sbr;          /* default keep-majority */
  uint64_t stable_after_ms;         /* default 2000 */
  uint64_t down_removal_margin_ms;  /* default: stable_after_ms */
  uint32_t quorum_size;             /* static-quorum: required */
  bool down_if_alone;               /* keep-oldest; default false */
  uint64_t retry_join_ms;           /* re-send join to seeds; default 500 */
  /* Testing: time from clock(clock_data) in milliseconds instead of the
   * monotonic clock, and no timers: the owner drives the daemon with
   * troupe_cluster_tick() after moving the clock. */
  uint64_t (*clock)(void *clock_data);
  void *clock_data;
} troupe_cluster_opts;

/*
 * Make sys a cluster node: spawn its cluster daemon (/system/cluster) and
 * start joining the seeds. Remoting (troupe_remote_start) must be started
 * first for a TCP node; a mesh worker needs nothing. Call from sys's
 * thread or before it runs. Errors: TROUPE_EINVAL (bad options or seed
 * address), TROUPE_ESTATE (already started), TROUPE_EWRONGTHREAD,
 * TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_cluster_start(troupe_system *sys,
                                       const troupe_cluster_opts *opts);

/* Join the cluster that the node at `address` belongs to (a no-op when
 * already a member). Any thread. Errors: TROUPE_EINVAL, TROUPE_ESTATE (no
 * cluster started, or already left/down). */
TROUPE_EXTERN int troupe_cluster_join(troupe_system *sys,
                                      const char *address);

/* Leave gracefully: sharded regions hand their shards off first, then the
 * member goes leaving -> exiting -> removed and the daemon stops (the
 * system keeps running). address NULL: this node; otherwise ask the
 * cluster to make that member leave. Any thread. Errors: TROUPE_EINVAL,
 * TROUPE_ENOENT (no such member), TROUPE_ESTATE. */
TROUPE_EXTERN int troupe_cluster_leave(troupe_system *sys,
                                       const char *address);

/* Mark a member down (an operator decision; the resolver does the same).
 * Any thread. Errors: TROUPE_EINVAL, TROUPE_ENOENT, TROUPE_ESTATE. */
TROUPE_EXTERN int troupe_cluster_down(troupe_system *sys,
                                      const char *address);

/* This node's address into buf (NUL-terminated); returns its length.
 * Errors: TROUPE_ESTATE (no cluster), TROUPE_ERANGE. Any thread. */
TROUPE_EXTERN int troupe_cluster_self(troupe_system *sys, char *buf,
                                      size_t size);

/* Copy at most max members (sorted by address, removed ones omitted) as
 * this node sees them; returns how many there are (may exceed max).
 * Errors: TROUPE_ESTATE (no cluster). Any thread. */
TROUPE_EXTERN int troupe_cluster_members(troupe_system *sys,
                                         troupe_member *out, size_t max);

/* The status of the member at address as this node sees it (0 and no
 * error when unknown or removed: TROUPE_ENOENT). Any thread. */
TROUPE_EXTERN int troupe_cluster_member_status(troupe_system *sys,
                                               const char *address,
                                               troupe_member_status *out);

/* The current leader / oldest up member's address into buf. Errors:
 * TROUPE_ENOENT (none yet), TROUPE_ESTATE, TROUPE_ERANGE. Any thread. */
TROUPE_EXTERN int troupe_cluster_leader(troupe_system *sys, char *buf,
                                        size_t size);
TROUPE_EXTERN int troupe_cluster_oldest(troupe_system *sys, char *buf,
                                        size_t size);

/* Whether every member has seen the current member set. Any thread. */
TROUPE_EXTERN bool troupe_cluster_converged(troupe_system *sys);

/* Testing with a clock (troupe_cluster_opts.clock): run one round of the
 * daemon's periodic work (heartbeats, gossip, failure detection,
 * resolver, leader actions, and the sharding regions' timers) at the
 * clock's current time. Any thread; it is queued to the daemon. Errors:
 * TROUPE_ESTATE (no cluster or not in clock mode). */
TROUPE_EXTERN int troupe_cluster_tick(troupe_system *sys);

/* ------------------------------------------------------------------ */
/* Cluster events                                                      */

typedef enum troupe_cluster_event_kind {
  TROUPE_CLUSTER_MEMBER_JOINED = 1,
  TROUPE_CLUSTER_MEMBER_UP = 2,
  TROUPE_CLUSTER_MEMBER_LEFT = 3,       /* became leaving */
  TROUPE_CLUSTER_MEMBER_EXITED = 4,
  TROUPE_CLUSTER_MEMBER_DOWNED = 5,
  TROUPE_CLUSTER_MEMBER_REMOVED = 6,
  TROUPE_CLUSTER_UNREACHABLE = 7,
  TROUPE_CLUSTER_REACHABLE = 8,
  TROUPE_CLUSTER_LEADER_CHANGED = 9,    /* member: the new leader (address
                                           empty: none) */
  TROUPE_CLUSTER_SELF_REMOVED = 10      /* this node left or was downed */
} troupe_cluster_event_kind;

/* Published on the system's event stream (troupe_subscribe with
 * &TROUPE_T_CLUSTER_EVENT). */
typedef struct troupe_cluster_event {
  troupe_cluster_event_kind kind;
  troupe_member member;
} troupe_cluster_event;
TROUPE_EXTERN extern troupe_type TROUPE_T_CLUSTER_EVENT;

/* Subscribe self to cluster events, first receiving the current state as
 * events (a JOINED/UP/... per member, UNREACHABLE for unreachable ones,
 * LEADER_CHANGED). From an actor. Errors: TROUPE_ESTATE (no cluster). */
TROUPE_EXTERN int troupe_cluster_subscribe(troupe_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
