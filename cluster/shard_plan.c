/*
 * cluster/shard_plan.c: the sharding coordinator's allocation and
 * rebalance decisions, as pure functions (unit-tested on their own).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cluster/sharding_internal.h"

static bool eligible(const troupe__shregion *r) {
  return !r->proxy && !r->leaving;
}

static bool fewer(const troupe__shregion *regs, const uint32_t *cnt, size_t i,
                  int best) {
  if (best < 0) return true;
  if (cnt[i] != cnt[best]) return cnt[i] < cnt[best];
  const char *a = regs[i].address ? regs[i].address : "";
  const char *b = regs[best].address ? regs[best].address : "";
  return strcmp(a, b) < 0;
}

static int pick(const troupe__shregion *regs, const uint32_t *cnt, size_t n) {
  int best = -1;
  for (size_t i = 0; i < n; i++)
    if (eligible(&regs[i]) && fewer(regs, cnt, i, best)) best = (int)i;
  return best;
}

int troupe__shard_pick_region(const troupe__shregion *regs, size_t n) {
  if (!regs || n == 0) return -1;
  int best = -1;
  for (size_t i = 0; i < n; i++) {
    if (!eligible(&regs[i])) continue;
    if (best < 0 || regs[i].shards < regs[best].shards ||
        (regs[i].shards == regs[best].shards &&
         strcmp(regs[i].address ? regs[i].address : "",
                regs[best].address ? regs[best].address : "") < 0))
      best = (int)i;
  }
  return best;
}

size_t troupe__shard_plan_rebalance(const int32_t *owner,
                                    const uint8_t *moving, uint32_t nshards,
                                    const troupe__shregion *regs, size_t n,
                                    uint32_t threshold, uint32_t max_moves,
                                    uint32_t *out) {
  if (!owner || !moving || !regs || !out || n == 0 || nshards == 0) return 0;
  uint32_t inflight = 0;
  for (uint32_t s = 0; s < nshards; s++)
    if (moving[s]) inflight++;
  if (inflight >= max_moves) return 0;
  uint32_t budget = max_moves - inflight;
  uint32_t *cnt = calloc(n, sizeof *cnt);
  uint8_t *taken = calloc(nshards, 1);
  if (!cnt || !taken) {
    free(cnt);
    free(taken);
    return 0;
  }
  for (uint32_t s = 0; s < nshards; s++)
    if (!moving[s] && owner[s] >= 0 && (size_t)owner[s] < n)
      cnt[owner[s]]++;
  size_t k = 0;
  /* Leaving (or proxy) regions give everything away first. */
  for (size_t i = 0; i < n && budget > 0; i++) {
    if (eligible(&regs[i])) continue;
    for (uint32_t s = 0; s < nshards && budget > 0; s++) {
      if (owner[s] != (int32_t)i || moving[s] || taken[s]) continue;
      out[k++] = s;
      taken[s] = 1;
      budget--;
      cnt[i]--;
      int to = pick(regs, cnt, n);
      if (to >= 0) cnt[to]++;
    }
  }
  /* Then even out the eligible ones. */
  while (budget > 0) {
    int hi = -1;
    for (size_t i = 0; i < n; i++)
      if (eligible(&regs[i]) && (hi < 0 || cnt[i] > cnt[hi])) hi = (int)i;
    int lo = pick(regs, cnt, n);
    if (hi < 0 || lo < 0 || cnt[hi] - cnt[lo] <= threshold) break;
    uint32_t s = 0;
    for (; s < nshards; s++)
      if (owner[s] == hi && !moving[s] && !taken[s]) break;
    if (s == nshards) break;
    out[k++] = s;
    taken[s] = 1;
    budget--;
    cnt[hi]--;
    cnt[lo]++;
  }
  free(cnt);
  free(taken);
  return k;
}
