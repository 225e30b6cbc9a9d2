/*
 * testkit.h: the multi-node test kit — N troupe nodes in one test
 * program, driven by the same test code in two variants:
 *
 *   TK_MEM   every node is a system with remoting on the in-memory
 *            transport ("mem://<net>/n<i>:1", address
 *            "troupe://n<i>@n<i>:1"), all on the calling thread. The kit
 *            steps the systems' loops round-robin, pumps the network by
 *            hand (manual delivery) and keeps a virtual clock (given to
 *            the cluster daemons as troupe_cluster_opts.clock): time moves
 *            only when a wait lets it, one tick at a time, and every tick
 *            runs troupe_cluster_tick on each live node. A run is
 *            deterministic: the same test gives the same trace.
 *   TK_MESH  every node is a worker thread of one troupe_mesh (address
 *            "troupe://n<i>"), in real time and truly parallel.
 *
 * A test starts the nodes with tk_start, acts on them (tk_run, tk_partition,
 * tk_crash, tk_leave, ...) and waits for conditions (tk_wait_*). Every
 * directive returns 0 or a negative troupe error code; waits are bounded
 * and fail with TROUPE_ETIMEDOUT and a message naming the condition
 * (tk_errmsg, also printed on stderr with a "tk:" prefix).
 *
 * Threads. The tk_* functions are called from the test's thread (the one
 * that called tk_start), except tk_arrive and tk_trace, which any thread
 * (node-side code included) may call. Node-side code — the init callback,
 * actors, functions given to tk_run — runs on the node's loop thread: in
 * TK_MEM that is the test's thread itself, between steps, so node-side
 * code must never block waiting for another node.
 *
 * Time. In TK_MEM, timeouts are virtual milliseconds (a 10 s wait costs a
 * thousand rounds, not ten seconds); libuv timers (actor timers, ask
 * timeouts) still run on the real clock and fire only when their real
 * time has come. In TK_MESH they are real milliseconds.
 *
 * Messages between nodes. In TK_MEM they go through remoting, so their
 * types must be registered (troupe_type_register) with fields; a ref made
 * on node a is made usable on node b by tk_ref (in TK_MEM a ref of
 * another node's system would otherwise bypass the network).
 *
 * One kit at a time per process: nodes are systems named "n0", "n1", ...
 * A guide: docs/testing.md.
 */
#ifndef TROUPE_TESTKIT_H
#define TROUPE_TESTKIT_H

#include "troupe/troupe.h"
#include "troupe/cluster.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tk_variant { TK_MEM = 1, TK_MESH = 2 } tk_variant;

/* The most nodes a kit runs. */
#define TK_MAX_NODES 64

typedef struct tk tk;

typedef struct tk_opts {
  /* Network name (TK_MEM) and mesh name; default "tk<k>", unique per
   * process. */
  const char *name;
  /* Nodes started by tk_start (the rest wait for tk_start_node); 0: all. */
  uint32_t initial;
  /* Make every node a cluster node (troupe_cluster_start before init),
   * with cluster_opts as template: zero fields take the kit's test
   * defaults (short intervals), seeds are node 0, and in TK_MEM the clock
   * is the kit's virtual clock. */
  bool cluster;
  troupe_cluster_opts cluster_opts;
  /* Node-side set-up, on node i's thread before its system runs (spawn
   * actors, start sharding). A negative return fails the node's start. */
  int (*init)(tk *t, uint32_t node, troupe_system *sys, void *data);
  void *data;
  /* Template for every node's system (its name is replaced); NULL: the
   * kit's (errors logged only). */
  const troupe_system_opts *system;
  uint64_t tick_ms;           /* TK_MEM: virtual time per round; 10 */
  uint64_t timeout_ms;        /* tk_barrier, tk_run, start; 10000 */
  uint64_t seed;              /* TK_MEM: node i's random seed is seed+i */
} tk_opts;

/*
 * Start a kit of n nodes (1..TK_MAX_NODES) in the given variant; the
 * first opts->initial of them run at once. opts may be NULL (no cluster,
 * no init). The strings and templates in opts must outlive the kit.
 * Errors: TROUPE_EINVAL, TROUPE_ENOMEM, a failed init's code.
 */
int tk_start(tk **out, tk_variant variant, uint32_t n, const tk_opts *opts);

/* Start node i, which tk_start left waiting (i >= opts->initial). Errors:
 * TROUPE_EINVAL, TROUPE_ESTATE (already started), a failed init's code. */
int tk_start_node(tk *t, uint32_t i);

/* Stop every node (clean shutdown) and free the kit. NULL is fine. */
void tk_stop(tk *t);

tk_variant tk_variant_of(const tk *t);
uint32_t tk_size(const tk *t);
const char *tk_variant_name(tk_variant v);   /* "mem" / "mesh" */

/* Node i's system while it runs, else NULL. In TK_MESH the pointer is
 * valid only while the node runs: from the test thread prefer tk_with. */
troupe_system *tk_system(tk *t, uint32_t i);
/* Node i's cluster address ("troupe://n1@n1:1" / "troupe://n1"). */
const char *tk_address(const tk *t, uint32_t i);
/* Whether node i was started and its system has not stopped. */
bool tk_alive(tk *t, uint32_t i);
/* The kit's clock in ms: virtual (TK_MEM) or monotonic (TK_MESH). */
uint64_t tk_now(tk *t);
/* The last failure's message. */
const char *tk_errmsg(const tk *t);

/* ------------------------------------------------------------------ */
/* Waiting */

typedef bool (*tk_cond_fn)(tk *t, void *data);

/*
 * Wait until cond(t, data) holds, at most timeout_ms; `what` names the
 * condition in the failure message. TK_MEM: rounds of stepping every
 * loop until quiet and pumping the network, then a clock tick (and
 * troupe_cluster_tick on every live cluster node); cond is checked
 * between rounds. TK_MESH: cond is polled every millisecond. cond runs on
 * the test thread. Errors: TROUPE_ETIMEDOUT.
 */
int tk_wait_named(tk *t, const char *what, tk_cond_fn cond, void *data,
                  uint64_t timeout_ms);
#define tk_wait(t, cond, data, timeout_ms) \
  tk_wait_named((t), #cond, (cond), (data), (timeout_ms))

/* Let ms pass (virtual in TK_MEM, with the nodes running). Not for
 * synchronization: to show that something does NOT happen meanwhile. */
int tk_advance(tk *t, uint64_t ms);

/* Node `node` sees exactly n_up members up. */
int tk_wait_members(tk *t, uint32_t node, uint32_t n_up,
                    uint64_t timeout_ms);
/* Node observer sees node subject with this status (0: unknown or
 * removed). */
int tk_wait_status(tk *t, uint32_t observer, uint32_t subject,
                   troupe_member_status status, uint64_t timeout_ms);
/* Node observer sees node subject as reachable / unreachable. */
int tk_wait_reachable(tk *t, uint32_t observer, uint32_t subject,
                      bool reachable, uint64_t timeout_ms);
/* Every live node that is still a member in its own eyes (its daemon
 * runs and it is not exiting or down) is converged and sees exactly
 * those nodes, all up and reachable. */
int tk_wait_converged(tk *t, uint64_t timeout_ms);
/* No live node other than subject lists subject any more. */
int tk_wait_removed(tk *t, uint32_t subject, uint64_t timeout_ms);
/* Node i's system has stopped (by itself: downed, left, or crashed). */
int tk_wait_stopped(tk *t, uint32_t i, uint64_t timeout_ms);

/*
 * Barriers. Node-side code calls tk_arrive(t, node, name) when node has
 * reached the point `name` (any thread); tk_barrier waits until every
 * live node has arrived (opts.timeout_ms, or tk_barrier_wait's). Names
 * are at most 63 bytes; at most 64 distinct names per kit.
 */
int tk_arrive(tk *t, uint32_t node, const char *name);
int tk_barrier_wait(tk *t, const char *name, uint64_t timeout_ms);
int tk_barrier(tk *t, const char *name);
/* Whether node has arrived at name. */
bool tk_arrived(tk *t, uint32_t node, const char *name);

/* ------------------------------------------------------------------ */
/* Acting on nodes */

typedef int (*tk_node_fn)(troupe_system *sys, void *data);

/* Run fn(sys, data) on node's loop thread and return its result (TK_MEM:
 * between steps; TK_MESH: posted, and waited for at most
 * opts.timeout_ms). Errors: TROUPE_EINVAL, TROUPE_ECLOSED (node not
 * running), TROUPE_ETIMEDOUT. */
int tk_run(tk *t, uint32_t node, tk_node_fn fn, void *data);

/* Call fn(sys, data) on the test thread with node's system pinned (it
 * cannot be freed meanwhile): for the "any thread" queries. Errors:
 * TROUPE_ECLOSED (node not running), else fn's result. */
int tk_with(tk *t, uint32_t node, tk_node_fn fn, void *data);

/* The ref of the actor at path ("/user/echo") on node `to`, usable by
 * node `from`'s actors (TK_MEM: a remote ref through the network).
 * Errors: TROUPE_ENOENT (nothing there), TROUPE_ECLOSED. */
int tk_ref(tk *t, uint32_t from, uint32_t to, const char *path,
           troupe_ref *out);

/* Cut the links between a and b both ways (messages between them are
 * lost), and restore them. */
int tk_partition(tk *t, uint32_t a, uint32_t b);
int tk_heal(tk *t, uint32_t a, uint32_t b);

/* Crash node a: cut it from everyone at once, then stop its system with
 * no graceful leave; the others find out through their failure
 * detectors. The node is not restarted. */
int tk_crash(tk *t, uint32_t a);

/* troupe_cluster_leave on node a (graceful leave). */
int tk_leave(tk *t, uint32_t a);

/* ------------------------------------------------------------------ */
/* Trace: lines appended by node-side or test code ("%llu node: text"
 * with the kit's clock in TK_MEM); two TK_MEM runs of the same test give
 * the same trace. */
void tk_trace(tk *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The trace so far (owned by the kit; valid until the next tk_trace). */
const char *tk_trace_text(tk *t);

#ifdef __cplusplus
}
#endif
#endif
