/*
 * cluster/membership.h: what the cluster daemon (cluster/membership.c)
 * offers the other cluster modules (sharding, the test kit). Not
 * installed. Everything here runs on the system's loop thread unless it
 * says otherwise.
 */
#ifndef TROUPE_CLUSTER_MEMBERSHIP_H
#define TROUPE_CLUSTER_MEMBERSHIP_H

#include "cluster/internal.h"
#include "troupe/cluster.h"

/* The cluster state of a system; NULL when troupe_cluster_start was not
 * called (or the daemon has stopped). */
typedef struct troupe__cluster troupe__cluster;
troupe__cluster *troupe__cluster_get(troupe_system *sys);

/* Cluster time in milliseconds: the test clock when one was given,
 * else the monotonic clock. Any thread. */
uint64_t troupe__cluster_now(troupe__cluster *c);

/* Whether the daemon runs on a test clock (no timers; driven by
 * troupe_cluster_tick). */
bool troupe__cluster_clock_mode(troupe__cluster *c);

/*
 * Periodic work for other cluster actors. `who` receives an empty
 * TROUPE__T_CLUSTER_TICK message every gossip_ms (or on each
 * troupe_cluster_tick in clock mode); it is dropped when it stops. Use
 * troupe__cluster_now for the time, never the loop clock, so that tests
 * on a clock are deterministic.
 */
extern troupe_type TROUPE__T_CLUSTER_TICK;
int troupe__cluster_tick_subscribe(troupe_system *sys, troupe_ref who);

/*
 * Graceful leave. `who` (a sharding region) is told
 * TROUPE__T_CLUSTER_PREPARE_LEAVE when this node starts to leave, before
 * its member goes to leaving; the daemon waits until every such actor
 * has answered with TROUPE__T_CLUSTER_LEAVE_READY (told to the daemon,
 * sender = who), or stopped, or prepare_timeout (default 30 s) passed.
 */
/* TICK, PREPARE_LEAVE and LEAVE_READY are empty (size 0, local only):
 * tell them with a NULL value. */
extern troupe_type TROUPE__T_CLUSTER_PREPARE_LEAVE;
extern troupe_type TROUPE__T_CLUSTER_LEAVE_READY;
int troupe__cluster_leave_blocker_add(troupe_system *sys, troupe_ref who);
/* The daemon's ref on this node (for LEAVE_READY). */
troupe_ref troupe__cluster_daemon(troupe_system *sys);

/*
 * The member set as this node sees it, sorted by address, removed
 * members left out. Returns the count (may exceed max). Loop thread.
 */
size_t troupe__cluster_view(troupe__cluster *c, troupe_member *out,
                            size_t max);
/* This node's address (valid while the cluster runs). */
const char *troupe__cluster_self(troupe__cluster *c);

/*
 * The gossip message between daemons (registered as
 * "troupe.cluster.Gossip" v1), declared here for tests that feed a daemon
 * malformed gossip. members: troupe__cluster_wmember items; vc:
 * {char *node; uint64_t n} items; seen: char * items; reach: {char
 * *observer; char *subject; uint64_t uid; uint64_t version; bool
 * unreachable} items. A daemon validates every field and drops (and logs)
 * a malformed gossip.
 */
typedef struct troupe__cluster_gossip {
  char *from;
  uint64_t from_uid;
  troupe_vec members;
  troupe_vec vc;
  troupe_vec seen;
  troupe_vec reach;
} troupe__cluster_gossip;
extern troupe_type TROUPE__T_CLUSTER_GOSSIP;

#endif
