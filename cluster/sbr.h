/*
 * cluster/sbr.h: the split-brain resolver's decision, as a pure function
 * of the member set seen by the deciding node (the leader of its side).
 * Internal, not installed. The cluster daemon (cluster/membership.c)
 * calls it once the unreachable set has been stable for stable_after_ms
 * and carries the decision out; this module keeps no state.
 *
 * Which members count. Only members whose status is up or leaving are
 * counted by the strategies. Joining members are not counted, but an
 * unreachable joining member still triggers a decision (so that a node
 * that died while joining can be downed and stops blocking convergence).
 * Exiting, down and removed members are ignored entirely.
 *
 * Sides. "Our side" is the members with reachable == true (the deciding
 * node and those it can reach); the other side is those with reachable ==
 * false. R and U below are the counted members of each side, T = R + U.
 *
 * Decision (the first rule that applies):
 *   1. bad input (nodes NULL with n > 0, a member whose status is not a
 *      troupe_member_status, a joining/up/leaving member with a NULL
 *      address, unknown strategy, static-quorum with quorum_size 0)
 *      -> WAIT;
 *   2. no joining/up/leaving member unreachable -> WAIT;
 *   3. TROUPE_SBR_OFF -> WAIT;
 *   4. T == 0 (nobody is up or leaving, e.g. everyone still joining): no
 *      side can be judged -> WAIT;
 *   5. the strategy:
 *   keep-majority  2R > T -> DOWN_UNREACHABLE; 2R < T -> DOWN_REACHABLE;
 *                  2R == T: the side holding the counted member with the
 *                  lowest address (strcmp) wins. Our side empty of counted
 *                  members (R == 0, e.g. only joining nodes here) is the
 *                  conservative case: it is a minority and loses
 *                  (DOWN_REACHABLE); a side without a single up member
 *                  never survives a partition.
 *   keep-oldest    the oldest counted member (lowest up_number, ties:
 *                  lowest address); its side wins, except with
 *                  down_if_alone when it is the only counted member of its
 *                  side and the other side has more than one counted
 *                  member: then the oldest's side loses.
 *   static-quorum  T > 2 * quorum_size - 1 -> DOWN_ALL: the quorum is
 *                  misconfigured (both sides of some partition could reach
 *                  it, as in Akka, checked before the sides);
 *                  R >= quorum_size -> DOWN_UNREACHABLE; else
 *                  DOWN_REACHABLE (R == 0 included).
 *   down-all       DOWN_ALL.
 *
 * Carrying it out: DOWN_UNREACHABLE marks every unreachable member that is
 * not already down/exiting/removed as down (joining ones included);
 * DOWN_REACHABLE means our side loses: this node (and the reachable
 * members) go down and stop; DOWN_ALL downs everyone, this node included.
 *
 * Both sides decide with the same rules from mirrored views, so for a
 * clean partition exactly one side survives under keep-majority and
 * keep-oldest, at most one under static-quorum, none under down-all.
 */
#ifndef TROUPE_CLUSTER_SBR_H
#define TROUPE_CLUSTER_SBR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/cluster.h"

typedef struct troupe__sbr_node {
  const char *address;            /* borrowed for the call */
  uint32_t up_number;
  troupe_member_status status;
  bool reachable;                 /* true: on the deciding node's side
                                     (reachable from it); false:
                                     unreachable */
} troupe__sbr_node;

typedef enum troupe__sbr_decision {
  TROUPE__SBR_WAIT = 0,
  TROUPE__SBR_DOWN_UNREACHABLE = 1,
  TROUPE__SBR_DOWN_REACHABLE = 2, /* our own side loses: down ourselves */
  TROUPE__SBR_DOWN_ALL = 3
} troupe__sbr_decision;

/* The decision for the member set nodes[0..n) (in any order, the deciding
 * node included) under strategy s; see above. quorum_size is used by
 * static-quorum only, down_if_alone by keep-oldest only. Pure; any
 * thread. */
troupe__sbr_decision troupe__sbr_decide(troupe_sbr_strategy s,
                                        uint32_t quorum_size,
                                        bool down_if_alone,
                                        const troupe__sbr_node *nodes,
                                        size_t n);

/* "wait", "down-unreachable", "down-reachable", "down-all" ("?" for
 * other values), for logs. */
const char *troupe__sbr_decision_name(troupe__sbr_decision d);

#endif
