/*
 * test_sbr.c: the split-brain resolver's decision table (cluster/sbr.c)
 * and the phi-accrual failure detector (cluster/phi.c), both pure.
 */
#include "tt.h"

#include <math.h>

#include "cluster/phi.h"
#include "cluster/sbr.h"

/* ------------------------------------------------------------------ */
/* Split-brain resolver                                                */

#define J TROUPE_MEMBER_JOINING
#define UP TROUPE_MEMBER_UP
#define LV TROUPE_MEMBER_LEAVING
#define EX TROUPE_MEMBER_EXITING
#define RM TROUPE_MEMBER_REMOVED
#define DN TROUPE_MEMBER_DOWN

#define KM TROUPE_SBR_KEEP_MAJORITY
#define KO TROUPE_SBR_KEEP_OLDEST
#define SQ TROUPE_SBR_STATIC_QUORUM
#define DA TROUPE_SBR_DOWN_ALL
#define OFF TROUPE_SBR_OFF

#define WAIT TROUPE__SBR_WAIT
#define D_UNR TROUPE__SBR_DOWN_UNREACHABLE
#define D_REA TROUPE__SBR_DOWN_REACHABLE
#define D_ALL TROUPE__SBR_DOWN_ALL

/* A node: address, up-number, status, reachable (1: our side). */
#define N(a, up, st, r) {"troupe://" a, up, st, r}
#define MAXN 8

typedef struct sbr_case {
  const char *name;
  troupe_sbr_strategy s;
  uint32_t quorum;
  bool alone;
  troupe__sbr_decision want;
  /* Whether the mirrored view (reachable flipped) must give the other
   * side's verdict: exactly one side survives. */
  bool mirror;
  troupe__sbr_node nodes[MAXN];
} sbr_case;

static size_t count_nodes(const sbr_case *c) {
  size_t n = 0;
  while (n < MAXN && c->nodes[n].address) n++;
  return n;
}

static const sbr_case cases[] = {
  /* keep-majority */
  {"km 3:2 majority here", KM, 0, false, D_UNR, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 1),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
  {"km 2:3 minority here", KM, 0, false, D_REA, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 0),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
  {"km 2:2 lowest address here", KM, 0, false, D_UNR, true,
   {N("a", 4, UP, 1), N("d", 1, UP, 1), N("b", 2, UP, 0),
    N("c", 3, UP, 0)}},
  {"km 2:2 lowest address there", KM, 0, false, D_REA, true,
   {N("b", 1, UP, 1), N("c", 2, UP, 1), N("a", 3, UP, 0),
    N("d", 4, UP, 0)}},
  {"km 1:1 lowest here", KM, 0, false, D_UNR, true,
   {N("a", 2, UP, 1), N("b", 1, UP, 0)}},
  {"km 1:1 lowest there", KM, 0, false, D_REA, true,
   {N("b", 1, UP, 1), N("a", 2, UP, 0)}},
  /* Joining members do not count: 2 up here vs 2 up + 3 joining there is a
   * tie, not a minority; the lowest address ("a") decides. */
  {"km joining not counted (tie)", KM, 0, false, D_UNR, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 0),
    N("d", 4, UP, 0), N("e", 0, J, 0), N("f", 0, J, 0), N("g", 0, J, 0)}},
  /* ... and the lowest address among joining members is not the tie
   * breaker. */
  {"km joining lowest address ignored", KM, 0, false, D_REA, true,
   {N("0", 0, J, 1), N("c", 3, UP, 1), N("d", 4, UP, 1),
    N("a", 1, UP, 0), N("b", 2, UP, 0)}},
  {"km 2 up here, 1 up + 2 joining there", KM, 0, false, D_UNR, false,
   {N("x", 1, UP, 1), N("y", 2, UP, 1), N("a", 3, UP, 0),
    N("b", 0, J, 0), N("c", 0, J, 0)}},
  /* Leaving members count: 1 up + 2 leaving here vs 2 up there. */
  {"km leaving counted", KM, 0, false, D_UNR, true,
   {N("d", 1, UP, 1), N("e", 2, LV, 1), N("f", 3, LV, 1),
    N("a", 4, UP, 0), N("b", 5, UP, 0)}},
  /* Exiting/down/removed are ignored: 2 up here, 2 up + 3 ignored there
   * is a tie broken by "a" (here), not a minority. */
  {"km exiting/down/removed ignored", KM, 0, false, D_UNR, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 0),
    N("d", 4, UP, 0), N("e", 5, EX, 0), N("f", 6, DN, 0),
    N("g", 7, RM, 0)}},
  /* Only an exiting member unreachable: nothing to decide. */
  {"km only exiting unreachable", KM, 0, false, WAIT, false,
   {N("a", 1, UP, 1), N("b", 2, EX, 0)}},
  /* An unreachable joining member triggers a decision, and the side with
   * every up member wins (it gets downed). */
  {"km unreachable joining downed", KM, 0, false, D_UNR, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("j", 0, J, 0)}},
  /* Our side holds no counted member (we are joining): we lose. */
  {"km our side only joining", KM, 0, false, D_REA, false,
   {N("j", 0, J, 1), N("a", 1, UP, 0), N("b", 2, UP, 0)}},
  /* Nobody up or leaving at all: nothing can be judged. */
  {"km nobody counted", KM, 0, false, WAIT, false,
   {N("a", 0, J, 1), N("b", 0, J, 0)}},
  {"km no unreachable", KM, 0, false, WAIT, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 1)}},

  /* keep-oldest */
  {"ko oldest here (minority)", KO, 0, false, D_UNR, true,
   {N("e", 1, UP, 1), N("d", 2, UP, 1), N("a", 3, UP, 0),
    N("b", 4, UP, 0), N("c", 5, UP, 0)}},
  {"ko oldest there (majority here)", KO, 0, false, D_REA, true,
   {N("a", 2, UP, 1), N("b", 3, UP, 1), N("c", 4, UP, 1),
    N("e", 1, UP, 0), N("d", 5, UP, 0)}},
  {"ko up-number tie: lowest address", KO, 0, false, D_REA, true,
   {N("b", 1, UP, 1), N("c", 2, UP, 1), N("a", 1, UP, 0)}},
  {"ko joining is never the oldest", KO, 0, false, D_REA, true,
   {N("j", 0, J, 1), N("b", 2, UP, 1), N("a", 1, UP, 0)}},
  {"ko leaving oldest counts", KO, 0, false, D_UNR, true,
   {N("z", 1, LV, 1), N("a", 2, UP, 0), N("b", 3, UP, 0)}},
  {"ko alone here, keep (no down_if_alone)", KO, 0, false, D_UNR, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 0), N("c", 3, UP, 0)}},
  {"ko alone here, down_if_alone", KO, 0, true, D_REA, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 0), N("c", 3, UP, 0)}},
  {"ko alone there, down_if_alone", KO, 0, true, D_UNR, true,
   {N("b", 2, UP, 1), N("c", 3, UP, 1), N("a", 1, UP, 0)}},
  {"ko alone there, no down_if_alone", KO, 0, false, D_REA, true,
   {N("b", 2, UP, 1), N("c", 3, UP, 1), N("a", 1, UP, 0)}},
  /* down_if_alone but the other side has just one member: 1:1 keeps the
   * oldest. */
  {"ko 1:1 down_if_alone keeps oldest", KO, 0, true, D_UNR, true,
   {N("b", 1, UP, 1), N("a", 2, UP, 0)}},
  /* Not alone: down_if_alone changes nothing. */
  {"ko 2:3 down_if_alone not alone", KO, 0, true, D_UNR, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 0),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
  /* Alone among counted members, joining ones beside it do not help. */
  {"ko alone with joining, down_if_alone", KO, 0, true, D_REA, true,
   {N("a", 1, UP, 1), N("j", 0, J, 1), N("b", 2, UP, 0),
    N("c", 3, UP, 0)}},
  {"ko no unreachable", KO, 0, true, WAIT, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1)}},

  /* static-quorum */
  {"sq 3 of 5 here, quorum 3", SQ, 3, false, D_UNR, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 1),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
  {"sq 2 of 5 here, quorum 3", SQ, 3, false, D_REA, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 0),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
  /* Below the maximum: 4 members with quorum 3; 2:2 -> both sides lose. */
  {"sq 2:2 quorum 3: both sides below", SQ, 3, false, D_REA, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 0),
    N("d", 4, UP, 0)}},
  {"sq exactly 2q-1 members", SQ, 2, false, D_UNR, true,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 0)}},
  /* 6 counted > 2*3-1: misconfigured, down all. */
  {"sq misconfig 6 members quorum 3", SQ, 3, false, D_ALL, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 1),
    N("d", 4, UP, 0), N("e", 5, UP, 0), N("f", 6, LV, 0)}},
  /* ... joining ones do not make it misconfigured. */
  {"sq joining not counted for misconfig", SQ, 3, false, D_UNR, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 1),
    N("d", 4, UP, 0), N("e", 5, UP, 0), N("f", 0, J, 0)}},
  {"sq our side only joining", SQ, 1, false, D_REA, false,
   {N("j", 0, J, 1), N("a", 1, UP, 0)}},
  {"sq huge quorum below", SQ, UINT32_MAX, false, D_REA, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 0)}},
  {"sq quorum 0 is invalid", SQ, 0, false, WAIT, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 0)}},
  {"sq no unreachable", SQ, 2, false, WAIT, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1)}},

  /* down-all */
  {"da 3:2", DA, 0, false, D_ALL, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 1),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
  {"da 1:4", DA, 0, false, D_ALL, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 0), N("c", 3, UP, 0),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
  {"da no unreachable", DA, 0, false, WAIT, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1)}},

  /* off */
  {"off 3:2", OFF, 0, false, WAIT, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 1),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
  {"off 2:3", OFF, 0, true, WAIT, false,
   {N("a", 1, UP, 1), N("b", 2, UP, 1), N("c", 3, UP, 0),
    N("d", 4, UP, 0), N("e", 5, UP, 0)}},
};

static troupe__sbr_decision decide(const sbr_case *c,
                                   const troupe__sbr_node *nodes) {
  return troupe__sbr_decide(c->s, c->quorum, c->alone, nodes,
                            count_nodes(c));
}

static void test_sbr_table(void) {
  int bad = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const sbr_case *c = &cases[i];
    troupe__sbr_decision got = decide(c, c->nodes);
    if (got != c->want) {
      TT_FAIL_AT(__FILE__, __LINE__, "case \"%s\": %s, want %s", c->name,
                 troupe__sbr_decision_name(got),
                 troupe__sbr_decision_name(c->want));
      bad++;
      continue;
    }
    /* The order of the members does not matter. */
    troupe__sbr_node rev[MAXN];
    size_t n = count_nodes(c);
    for (size_t k = 0; k < n; k++) rev[k] = c->nodes[n - 1 - k];
    got = decide(c, rev);
    if (got != c->want) {
      TT_FAIL_AT(__FILE__, __LINE__, "case \"%s\" reversed: %s, want %s",
                 c->name, troupe__sbr_decision_name(got),
                 troupe__sbr_decision_name(c->want));
      bad++;
    }
    if (!c->mirror) continue;
    /* The other side's view of the same partition: the opposite verdict,
     * so that exactly one side survives. */
    troupe__sbr_node other[MAXN];
    for (size_t k = 0; k < n; k++) {
      other[k] = c->nodes[k];
      other[k].reachable = !other[k].reachable;
    }
    troupe__sbr_decision want =
        c->want == D_UNR ? D_REA : c->want == D_REA ? D_UNR : c->want;
    got = decide(c, other);
    if (got != want) {
      TT_FAIL_AT(__FILE__, __LINE__, "case \"%s\" mirrored: %s, want %s",
                 c->name, troupe__sbr_decision_name(got),
                 troupe__sbr_decision_name(want));
      bad++;
    }
  }
  TT_EQ_INT(bad, 0);
}

/* Every partition of 1..7 up members into two sides: keep-majority and
 * keep-oldest (with and without down_if_alone) keep exactly one side;
 * static-quorum with a valid quorum keeps at most one. */
static void test_sbr_one_side_survives(void) {
  static const char *addr[] = {"troupe://n0", "troupe://n1", "troupe://n2",
                               "troupe://n3", "troupe://n4", "troupe://n5",
                               "troupe://n6"};
  int checked = 0;
  for (unsigned n = 2; n <= 7; n++) {
    for (unsigned mask = 1; mask < (1u << n) - 1; mask++) {
      troupe__sbr_node a[7], b[7];
      for (unsigned i = 0; i < n; i++) {
        /* up-numbers not in address order, so oldest != lowest */
        a[i] = (troupe__sbr_node){addr[i], (i * 5u + 3u) % 7u + 1u,
                                  TROUPE_MEMBER_UP, (mask >> i) & 1u};
        b[i] = a[i];
        b[i].reachable = !a[i].reachable;
      }
      for (int v = 0; v < 3; v++) {
        troupe_sbr_strategy s = v == 0 ? KM : KO;
        bool alone = v == 2;
        troupe__sbr_decision x = troupe__sbr_decide(s, 0, alone, a, n);
        troupe__sbr_decision y = troupe__sbr_decide(s, 0, alone, b, n);
        TT_ASSERT((x == D_UNR && y == D_REA) || (x == D_REA && y == D_UNR));
        checked++;
      }
      uint32_t q = n / 2 + 1;           /* the smallest valid quorum */
      troupe__sbr_decision x = troupe__sbr_decide(SQ, q, false, a, n);
      troupe__sbr_decision y = troupe__sbr_decide(SQ, q, false, b, n);
      TT_ASSERT(x == D_UNR || x == D_REA);
      TT_ASSERT(!(x == D_UNR && y == D_UNR));
      checked++;
    }
  }
  TT_EQ_INT(checked, 4 * (2 + 6 + 14 + 30 + 62 + 126));
}

static void test_sbr_bad_input(void) {
  troupe__sbr_node ok[2] = {N("a", 1, UP, 1), N("b", 2, UP, 0)};
  /* sanity: this input decides */
  TT_EQ_INT(troupe__sbr_decide(KM, 0, false, ok, 2), D_UNR);

  TT_EQ_INT(troupe__sbr_decide(KM, 0, false, NULL, 3), WAIT);
  TT_EQ_INT(troupe__sbr_decide(DA, 0, false, NULL, 1), WAIT);
  TT_EQ_INT(troupe__sbr_decide(KM, 0, false, NULL, 0), WAIT);
  TT_EQ_INT(troupe__sbr_decide(DA, 0, false, ok, 0), WAIT);
  TT_EQ_INT(troupe__sbr_decide((troupe_sbr_strategy)99, 3, false, ok, 2),
            WAIT);
  TT_EQ_INT(troupe__sbr_decide((troupe_sbr_strategy)-1, 3, false, ok, 2),
            WAIT);

  troupe__sbr_node noaddr[2] = {{NULL, 1, UP, true}, N("b", 2, UP, 0)};
  TT_EQ_INT(troupe__sbr_decide(KM, 0, false, noaddr, 2), WAIT);
  TT_EQ_INT(troupe__sbr_decide(DA, 0, false, noaddr, 2), WAIT);
  /* A NULL address on an ignored (removed) member is harmless. */
  troupe__sbr_node ign[3] = {N("a", 1, UP, 1), N("b", 2, UP, 0),
                             {NULL, 3, RM, false}};
  TT_EQ_INT(troupe__sbr_decide(KM, 0, false, ign, 3), D_UNR);

  troupe__sbr_node badst[2] = {N("a", 1, UP, 1),
                               N("b", 2, (troupe_member_status)42, 0)};
  TT_EQ_INT(troupe__sbr_decide(KM, 0, false, badst, 2), WAIT);
  badst[1].status = (troupe_member_status)0;
  TT_EQ_INT(troupe__sbr_decide(DA, 0, false, badst, 2), WAIT);
}

static void test_sbr_decision_name(void) {
  TT_EQ_STR(troupe__sbr_decision_name(WAIT), "wait");
  TT_EQ_STR(troupe__sbr_decision_name(D_UNR), "down-unreachable");
  TT_EQ_STR(troupe__sbr_decision_name(D_REA), "down-reachable");
  TT_EQ_STR(troupe__sbr_decision_name(D_ALL), "down-all");
  TT_EQ_STR(troupe__sbr_decision_name((troupe__sbr_decision)7), "?");
}

/* ------------------------------------------------------------------ */
/* Phi accrual                                                         */

static bool sane(double phi) {
  return !isnan(phi) && !isinf(phi) && phi >= 0 && phi <= TROUPE__PHI_MAX;
}

static void test_phi_before_first_heartbeat(void) {
  troupe__phi p;
  troupe__phi_init(&p, 100, 2000, 100);
  TT_ASSERT(troupe__phi_value(&p, 0) == 0.0);
  TT_ASSERT(troupe__phi_value(&p, 1000000) == 0.0);
  TT_ASSERT(troupe__phi_value(&p, UINT64_MAX) == 0.0);
}

/* Steady heartbeats every 100 ms, pause 2000, min std 100: the mean
 * becomes 2100 and std 100, so phi = 8 at about 2100 + 5.2 * 100 ms. */
static void test_phi_steady(void) {
  troupe__phi p;
  troupe__phi_init(&p, 100, 2000, 100);
  uint64_t t = 5000;
  for (int i = 0; i < 1500; i++, t += 100) troupe__phi_heartbeat(&p, t);
  uint64_t last = t - 100;
  TT_ASSERT(troupe__phi_value(&p, last) == 0.0);
  TT_ASSERT(troupe__phi_value(&p, last + 100) < 0.01);
  TT_ASSERT(troupe__phi_value(&p, last + 1000) < 0.01);
  TT_ASSERT(troupe__phi_value(&p, last + 2100) > 0.2);
  TT_ASSERT(troupe__phi_value(&p, last + 2100) < 0.4); /* log10(2) */

  double prev = -1;
  uint64_t crossed = 0;
  for (uint64_t dt = 1; dt <= 10000; dt++) {
    double phi = troupe__phi_value(&p, last + dt);
    TT_ASSERT(sane(phi));
    TT_ASSERT(phi >= prev);
    if (!crossed && phi > 8.0) crossed = dt;
    prev = phi;
  }
  TT_ASSERT(crossed > 2100 + 400);
  TT_ASSERT(crossed < 2100 + 600);
  TT_ASSERT(prev > 100); /* at +10 s the node is very much suspect */
}

/* The seed before real intervals: mean = expected, std = expected / 4. */
static void test_phi_seed(void) {
  troupe__phi p;
  troupe__phi_init(&p, 1000, 0, 0);
  troupe__phi_heartbeat(&p, 777);
  TT_EQ_INT(p.count, 2);
  TT_EQ_INT(p.sum, 2000);
  TT_EQ_INT(p.sum_sq, 750 * 750 + 1250 * 1250);
  /* At t = mean, the CDF is 1/2: phi = log10(2). */
  TT_ASSERT(fabs(troupe__phi_value(&p, 777 + 1000) - log10(2.0)) < 1e-9);
  /* One std later (y = 1): log10(1 + e^1.668166). */
  TT_ASSERT(fabs(troupe__phi_value(&p, 777 + 1250) -
                 log10(1 + exp(1.5976 + 0.070566))) < 1e-9);
  TT_ASSERT(troupe__phi_value(&p, 777 + 500) < 0.05);
}

/* Jittered intervals (80..120 ms): the std from the history applies when
 * it exceeds min_std, so phi rises later than for a steady sender. */
static void test_phi_jitter(void) {
  troupe__phi steady, jit;
  troupe__phi_init(&steady, 100, 500, 1);
  troupe__phi_init(&jit, 100, 500, 1);
  uint64_t t = 0, u = 0;
  uint32_t rng = 12345;
  for (int i = 0; i < 2000; i++) {
    troupe__phi_heartbeat(&steady, t);
    troupe__phi_heartbeat(&jit, u);
    t += 100;
    rng = rng * 1103515245u + 12345u;
    u += 80 + (rng >> 16) % 41;
  }
  uint64_t ls = t - 100;
  uint64_t lj = jit.last_ms;
  /* Standard deviation of U(80..120) ~ 11.8 ms; mean ~ 100. */
  double n = jit.count, mean = (double)jit.sum / n;
  double sd = sqrt((double)jit.sum_sq / n - mean * mean);
  TT_ASSERT(mean > 97 && mean < 103);
  TT_ASSERT(sd > 10 && sd < 14);
  TT_EQ_INT(jit.count, TROUPE__PHI_HISTORY);

  /* Slightly late (+650 = 600 mean + 50): a steady sender (std 1) is
   * certainly suspected, a jittery one (std ~12) much less. */
  double ps = troupe__phi_value(&steady, ls + 650);
  double pj = troupe__phi_value(&jit, lj + 650);
  TT_ASSERT(sane(ps) && sane(pj));
  TT_ASSERT(ps > 100);
  TT_ASSERT(pj > 1 && pj < 20);
  /* On time they are both unsuspected. */
  TT_ASSERT(troupe__phi_value(&jit, lj + 120) < 0.01);
  TT_ASSERT(troupe__phi_value(&steady, ls + 100) < 0.01);
}

/* min_std dominates a history with no variance. */
static void test_phi_min_std(void) {
  troupe__phi a, b;
  troupe__phi_init(&a, 100, 0, 10);
  troupe__phi_init(&b, 100, 0, 200);
  uint64_t t = 1;
  for (int i = 0; i < 1200; i++, t += 100) {
    troupe__phi_heartbeat(&a, t);
    troupe__phi_heartbeat(&b, t);
  }
  uint64_t last = t - 100;
  TT_EQ_INT(a.sum, 100 * TROUPE__PHI_HISTORY); /* seeds gone */
  /* y = 1 at mean + min_std for both. */
  double y1 = log10(1 + exp(1.5976 + 0.070566));
  TT_ASSERT(fabs(troupe__phi_value(&a, last + 110) - y1) < 1e-9);
  TT_ASSERT(fabs(troupe__phi_value(&b, last + 300) - y1) < 1e-9);
  /* At mean + 100 ms: y = 10 for a (huge), 0.5 for b (small). */
  TT_ASSERT(troupe__phi_value(&a, last + 200) > 30);
  TT_ASSERT(troupe__phi_value(&b, last + 200) < 1);
  /* min_std 0 and no variance: finite, still monotonic and sane. */
  troupe__phi c;
  troupe__phi_init(&c, 100, 0, 0);
  for (int i = 0; i < 1200; i++) troupe__phi_heartbeat(&c, 100u * i);
  uint64_t lc = 100u * 1199;
  TT_ASSERT(troupe__phi_value(&c, lc + 99) == 0.0 ||
            troupe__phi_value(&c, lc + 99) < 1e-6);
  TT_ASSERT(sane(troupe__phi_value(&c, lc + 100)));
  TT_ASSERT(troupe__phi_value(&c, lc + 101) == TROUPE__PHI_MAX);
}

/* Huge gaps, huge settings, tiny settings: never NaN or inf. */
static void test_phi_extremes(void) {
  troupe__phi p;
  troupe__phi_init(&p, 1000, 2000, 100);
  troupe__phi_heartbeat(&p, 10);
  TT_ASSERT(troupe__phi_value(&p, UINT64_MAX) == TROUPE__PHI_MAX);
  TT_ASSERT(sane(troupe__phi_value(&p, 1000000000ull)));
  /* A huge gap recorded as an interval is capped; the sums stay exact. */
  troupe__phi_heartbeat(&p, UINT64_MAX - 5);
  TT_EQ_INT(p.count, 3);
  TT_ASSERT(p.sum == 2000 + TROUPE__PHI_MAX_INTERVAL_MS);
  TT_ASSERT(sane(troupe__phi_value(&p, UINT64_MAX)));
  TT_ASSERT(troupe__phi_value(&p, UINT64_MAX - 5) == 0.0);
  /* A clock step back records nothing. */
  troupe__phi_heartbeat(&p, 5);
  TT_EQ_INT(p.count, 3);
  TT_ASSERT(p.last_ms == UINT64_MAX - 5);

  /* Fill the ring with capped intervals: no overflow of sum_sq. */
  troupe__phi q;
  troupe__phi_init(&q, UINT64_MAX, UINT64_MAX, UINT64_MAX);
  uint64_t t = 0;
  for (int i = 0; i < 1100; i++, t += TROUPE__PHI_MAX_INTERVAL_MS * 2)
    troupe__phi_heartbeat(&q, t);
  TT_EQ_INT(q.count, TROUPE__PHI_HISTORY);
  TT_ASSERT(q.sum == TROUPE__PHI_MAX_INTERVAL_MS * TROUPE__PHI_HISTORY);
  TT_ASSERT(q.sum_sq == TROUPE__PHI_MAX_INTERVAL_MS *
                            TROUPE__PHI_MAX_INTERVAL_MS * TROUPE__PHI_HISTORY);
  TT_ASSERT(sane(troupe__phi_value(&q, t)));
  TT_ASSERT(sane(troupe__phi_value(&q, UINT64_MAX)));

  /* expected 0, everything 0. */
  troupe__phi z;
  troupe__phi_init(&z, 0, 0, 0);
  troupe__phi_heartbeat(&z, 0);
  for (uint64_t dt = 1; dt < 5; dt++)
    TT_ASSERT(sane(troupe__phi_value(&z, dt)));
  troupe__phi_heartbeat(&z, 0); /* duplicate: nothing recorded */
  TT_EQ_INT(z.count, 2);
  TT_ASSERT(troupe__phi_value(&z, 1000) == TROUPE__PHI_MAX);
}

/* A heartbeat resets the suspicion. */
static void test_phi_recovers(void) {
  troupe__phi p;
  troupe__phi_init(&p, 100, 1000, 100);
  uint64_t t = 0;
  for (int i = 0; i < 50; i++, t += 100) troupe__phi_heartbeat(&p, t);
  uint64_t last = t - 100;
  double before = troupe__phi_value(&p, last + 1500);
  TT_ASSERT(before > 3);
  TT_ASSERT(troupe__phi_value(&p, last + 5000) > 8);
  troupe__phi_heartbeat(&p, last + 5000);
  TT_EQ_INT(p.count, 52);
  TT_ASSERT(troupe__phi_value(&p, last + 5100) < 1);
  /* The long gap widened the distribution: the same lateness is now
   * judged more leniently than before it. */
  TT_ASSERT(troupe__phi_value(&p, last + 5000 + 1500) < before / 2);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  TT_RUN(test_sbr_table);
  TT_RUN(test_sbr_one_side_survives);
  TT_RUN(test_sbr_bad_input);
  TT_RUN(test_sbr_decision_name);
  TT_RUN(test_phi_before_first_heartbeat);
  TT_RUN(test_phi_steady);
  TT_RUN(test_phi_seed);
  TT_RUN(test_phi_jitter);
  TT_RUN(test_phi_min_std);
  TT_RUN(test_phi_extremes);
  TT_RUN(test_phi_recovers);
  return tt_done();
}
