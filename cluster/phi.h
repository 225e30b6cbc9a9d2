/*
 * cluster/phi.h: the phi-accrual failure detector (Hayashibara et al., as
 * in Akka's PhiAccrualFailureDetector) that the cluster daemon keeps per
 * monitored node. Internal, not installed. Pure: no clock, no heap, no
 * locks; the caller passes the time and owns the (fixed-size) state.
 *
 * Phi is the suspicion that the node has failed, given how long ago its
 * last heartbeat arrived and the history of intervals between heartbeats:
 *
 *   phi = -log10(1 - CDF(now - last))
 *
 * where CDF is a normal distribution with
 *   mean = mean interval + acceptable_pause_ms
 *   std  = max(std of the intervals, min_std_ms)   (and at least 0.001 ms)
 * using the logistic approximation of the normal CDF that Akka uses,
 * 1 / (1 + e^-(y (1.5976 + 0.070566 y^2))), y = (t - mean) / std, which is
 * evaluated here in a form that never overflows: phi = log10(1 + e^z).
 * Phi 1 means a 10% chance that the node is still alive and the heartbeat
 * is merely late, phi 8 about 1e-8.
 *
 * History. The last TROUPE__PHI_HISTORY intervals are kept in a ring
 * with exact integer running sums. The first heartbeat only starts the
 * clock; the history is seeded (like Akka's first-heartbeat-estimate)
 * with two intervals, expected - expected/4 and expected + expected/4, so
 * that it begins with mean = expected and std = expected/4 and the seed
 * fades out as real intervals arrive. An interval is capped at
 * TROUPE__PHI_MAX_INTERVAL_MS (~18.6 hours) so that the sums cannot
 * overflow; such a gap has long made phi huge anyway.
 *
 * Time. Milliseconds from any clock that does not go backwards. A
 * heartbeat at or before the last one records no interval (a duplicate,
 * or a clock step back: the later time becomes the last one only if it is
 * later). troupe__phi_value at or before the last heartbeat is 0.
 *
 * Values are always finite and >= 0, at most TROUPE__PHI_MAX.
 */
#ifndef TROUPE_CLUSTER_PHI_H
#define TROUPE_CLUSTER_PHI_H

#include <stdbool.h>
#include <stdint.h>

#define TROUPE__PHI_HISTORY 1000
#define TROUPE__PHI_MAX_INTERVAL_MS ((uint64_t)1 << 26)
/* Phi is clamped here: beyond ~300 it is no longer a probability a double
 * can hold, only "certainly gone". */
#define TROUPE__PHI_MAX 1e6

typedef struct troupe__phi {
  uint64_t expected_interval_ms;
  uint64_t acceptable_pause_ms;
  uint64_t min_std_ms;
  uint64_t last_ms;              /* time of the last heartbeat */
  uint64_t sum;                  /* of the intervals in the ring */
  uint64_t sum_sq;               /* of their squares (< 1000 * 2^52) */
  uint32_t count;                /* intervals in the ring */
  uint32_t next;                 /* ring slot written next */
  bool started;                  /* a heartbeat has arrived */
  uint32_t intervals[TROUPE__PHI_HISTORY];
} troupe__phi;

/* Reset p. expected_interval_ms: the heartbeat interval the sender uses
 * (0 is taken as 1, more than TROUPE__PHI_MAX_INTERVAL_MS / 2 as that);
 * acceptable_pause_ms: how much later than usual a
 * heartbeat may be before phi rises; min_std_ms: the least standard
 * deviation assumed, so that a very regular sender is not suspected on
 * the first slightly late heartbeat. */
void troupe__phi_init(troupe__phi *p, uint64_t expected_interval_ms,
                      uint64_t acceptable_pause_ms, uint64_t min_std_ms);

/* A heartbeat arrived at now_ms. The first call starts the history. */
void troupe__phi_heartbeat(troupe__phi *p, uint64_t now_ms);

/* The suspicion at now_ms: 0 before any heartbeat; finite, >= 0,
 * non-decreasing in now_ms between heartbeats. */
double troupe__phi_value(const troupe__phi *p, uint64_t now_ms);

#endif
