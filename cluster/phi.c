/*
 * cluster/phi.c: the phi-accrual failure detector (see phi.h).
 */
#include "cluster/phi.h"

#include <math.h>
#include <string.h>

/* Below this the normal distribution degenerates (y would be infinite). */
#define PHI_STD_FLOOR 0.001
#define PHI_LN10 2.30258509299404568402

static void record(troupe__phi *p, uint64_t interval) {
  if (interval > TROUPE__PHI_MAX_INTERVAL_MS)
    interval = TROUPE__PHI_MAX_INTERVAL_MS;
  if (p->count == TROUPE__PHI_HISTORY) {
    uint64_t old = p->intervals[p->next];
    p->sum -= old;
    p->sum_sq -= old * old;
  } else {
    p->count++;
  }
  p->intervals[p->next] = (uint32_t)interval;
  p->sum += interval;
  p->sum_sq += interval * interval;
  p->next = (p->next + 1) % TROUPE__PHI_HISTORY;
}

void troupe__phi_init(troupe__phi *p, uint64_t expected_interval_ms,
                      uint64_t acceptable_pause_ms, uint64_t min_std_ms) {
  memset(p, 0, sizeof *p);
  if (expected_interval_ms == 0) expected_interval_ms = 1;
  /* so that the seed (expected * 5/4) is not capped */
  if (expected_interval_ms > TROUPE__PHI_MAX_INTERVAL_MS / 2)
    expected_interval_ms = TROUPE__PHI_MAX_INTERVAL_MS / 2;
  p->expected_interval_ms = expected_interval_ms;
  p->acceptable_pause_ms = acceptable_pause_ms;
  p->min_std_ms = min_std_ms;
}

void troupe__phi_heartbeat(troupe__phi *p, uint64_t now_ms) {
  if (!p->started) {
    /* Akka's first-heartbeat-estimate: mean = expected, std = expected/4,
     * as the two intervals mean - std and mean + std. */
    uint64_t e = p->expected_interval_ms, d = e / 4;
    record(p, e - d);
    record(p, e + d);
    p->started = true;
    p->last_ms = now_ms;
    return;
  }
  if (now_ms <= p->last_ms) return;
  record(p, now_ms - p->last_ms);
  p->last_ms = now_ms;
}

double troupe__phi_value(const troupe__phi *p, uint64_t now_ms) {
  if (!p->started || p->count == 0 || now_ms <= p->last_ms) return 0.0;
  double n = (double)p->count;
  double mean = (double)p->sum / n;
  double var = (double)p->sum_sq / n - mean * mean;
  double std = var > 0 ? sqrt(var) : 0.0;
  if (std < (double)p->min_std_ms) std = (double)p->min_std_ms;
  if (std < PHI_STD_FLOOR) std = PHI_STD_FLOOR;
  mean += (double)p->acceptable_pause_ms;

  double y = ((double)(now_ms - p->last_ms) - mean) / std;
  /* 1 - CDF = 1 / (1 + e^z), so phi = log10(1 + e^z); split by the sign
   * of z so that exp never overflows. */
  double z = y * (1.5976 + 0.070566 * y * y);
  double phi;
  if (z > 0)
    phi = (z + log1p(exp(-z))) / PHI_LN10;
  else
    phi = log1p(exp(z)) / PHI_LN10;
  if (!(phi >= 0)) return 0.0; /* NaN cannot arise, but never return it */
  if (phi > TROUPE__PHI_MAX) phi = TROUPE__PHI_MAX;
  return phi;
}
