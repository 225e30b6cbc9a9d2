/*
 * cluster/sbr.c: the split-brain resolver's decision (see sbr.h).
 */
#include "cluster/sbr.h"

#include <string.h>

static bool counted(troupe_member_status st) {
  return st == TROUPE_MEMBER_UP || st == TROUPE_MEMBER_LEAVING;
}

/* Joining, up or leaving: members whose unreachability needs a decision. */
static bool relevant(troupe_member_status st) {
  return st == TROUPE_MEMBER_JOINING || counted(st);
}

static bool known_status(troupe_member_status st) {
  return st >= TROUPE_MEMBER_JOINING && st <= TROUPE_MEMBER_DOWN;
}

/* Whether a is older than b: lower up-number, ties lower address. */
static bool older(const troupe__sbr_node *a, const troupe__sbr_node *b) {
  if (a->up_number != b->up_number) return a->up_number < b->up_number;
  return strcmp(a->address, b->address) < 0;
}

static troupe__sbr_decision side(bool ours_wins) {
  return ours_wins ? TROUPE__SBR_DOWN_UNREACHABLE : TROUPE__SBR_DOWN_REACHABLE;
}

troupe__sbr_decision troupe__sbr_decide(troupe_sbr_strategy s,
                                        uint32_t quorum_size,
                                        bool down_if_alone,
                                        const troupe__sbr_node *nodes,
                                        size_t n) {
  if (n > 0 && !nodes) return TROUPE__SBR_WAIT;
  switch (s) {
  case TROUPE_SBR_KEEP_MAJORITY:
  case TROUPE_SBR_KEEP_OLDEST:
  case TROUPE_SBR_DOWN_ALL:
  case TROUPE_SBR_OFF:
    break;
  case TROUPE_SBR_STATIC_QUORUM:
    if (quorum_size == 0) return TROUPE__SBR_WAIT;
    break;
  default:
    return TROUPE__SBR_WAIT;
  }

  size_t r = 0, u = 0;                  /* counted members per side */
  bool any_unreachable = false;
  const troupe__sbr_node *lowest = NULL, *oldest = NULL;
  for (size_t i = 0; i < n; i++) {
    const troupe__sbr_node *m = &nodes[i];
    if (!known_status(m->status)) return TROUPE__SBR_WAIT;
    if (!relevant(m->status)) continue;
    if (!m->address) return TROUPE__SBR_WAIT;
    if (!m->reachable) any_unreachable = true;
    if (!counted(m->status)) continue;
    if (m->reachable) r++;
    else u++;
    if (!lowest || strcmp(m->address, lowest->address) < 0) lowest = m;
    if (!oldest || older(m, oldest)) oldest = m;
  }
  if (!any_unreachable || s == TROUPE_SBR_OFF) return TROUPE__SBR_WAIT;
  size_t t = r + u;
  if (t == 0) return TROUPE__SBR_WAIT;

  switch (s) {
  case TROUPE_SBR_KEEP_MAJORITY:
    if (2 * r > t) return TROUPE__SBR_DOWN_UNREACHABLE;
    if (2 * r < t) return TROUPE__SBR_DOWN_REACHABLE;
    return side(lowest->reachable);
  case TROUPE_SBR_KEEP_OLDEST: {
    size_t with_oldest = oldest->reachable ? r : u;
    size_t others = oldest->reachable ? u : r;
    bool oldest_wins = !(down_if_alone && with_oldest == 1 && others > 1);
    return side(oldest->reachable == oldest_wins);
  }
  case TROUPE_SBR_STATIC_QUORUM:
    if ((uint64_t)t > 2 * (uint64_t)quorum_size - 1)
      return TROUPE__SBR_DOWN_ALL;
    return side(r >= quorum_size);
  case TROUPE_SBR_DOWN_ALL:
    return TROUPE__SBR_DOWN_ALL;
  default:
    return TROUPE__SBR_WAIT;
  }
}

const char *troupe__sbr_decision_name(troupe__sbr_decision d) {
  switch (d) {
  case TROUPE__SBR_WAIT: return "wait";
  case TROUPE__SBR_DOWN_UNREACHABLE: return "down-unreachable";
  case TROUPE__SBR_DOWN_REACHABLE: return "down-reachable";
  case TROUPE__SBR_DOWN_ALL: return "down-all";
  }
  return "?";
}
