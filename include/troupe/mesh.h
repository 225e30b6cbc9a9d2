/*
 * troupe/mesh.h: N actor systems on N worker threads of one process.
 *
 * Each worker runs its own system (named "<prefix><index>", its own node)
 * on its own thread; the workers are fully connected by the in-process
 * transport (SPSC rings, envelopes moved by pointer), so a troupe_tell from
 * an actor of one worker to an actor of another costs no copy and, under
 * load, no wake-up. Refs, watch, ask and troupe_resolve
 * ("troupe://w1/user/a") work across workers as within one system.
 *
 * Isolation. A worker whose system fails (a failure escalated past its
 * root guardian, or its init callback failed) is stopped; the other
 * workers see its node lost (watchers get Terminated with node_lost) and
 * keep running. The mesh restarts it — a new system with the same name,
 * a new node — at most max_restarts times within restart_window_ms, after
 * an exponential backoff. A worker that stops cleanly by itself is not
 * restarted.
 *
 * Threads: troupe_mesh_* functions may be called from any thread that is
 * not a worker, except where stated.
 */
#ifndef TROUPE_MESH_H
#define TROUPE_MESH_H

#include "troupe/actor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct troupe_mesh troupe_mesh;

typedef struct troupe_mesh_opts {
  uint32_t workers;                 /* N >= 1 */
  const char *name_prefix;          /* system names; default "w" */
  /* Called on worker `index`'s thread before its system runs, and again
   * after each restart: spawn the worker's actors here
   * (troupe_system_spawn). A negative return fails the worker. */
  int (*init)(troupe_system *sys, uint32_t index, void *data);
  void *data;
  /* Called (on the lost worker's thread) when a worker was lost; rc is
   * its system's exit code, `restarting` whether it will be restarted. */
  void (*on_lost)(void *data, uint32_t index, int rc, bool restarting);
  const troupe_system_opts *system; /* template for every worker (its name
                                       is replaced); NULL: defaults */
  uint32_t max_restarts;            /* default 3; within the window */
  uint64_t restart_window_ms;       /* default 60000 */
  uint64_t backoff_min_ms;          /* default 50, doubling per restart */
  uint64_t backoff_max_ms;          /* default 2000 */
} troupe_mesh_opts;

/* Create a mesh (nothing runs yet). opts is copied (not the strings or the
 * system template, which must outlive the mesh). Errors: TROUPE_EINVAL,
 * TROUPE_ENOMEM. */
TROUPE_EXTERN int troupe_mesh_create(troupe_mesh **out,
                                     const troupe_mesh_opts *opts);

/* Start every worker on a thread of its own. Errors: TROUPE_ESTATE
 * (already started), TROUPE_ENOMEM. */
TROUPE_EXTERN int troupe_mesh_start(troupe_mesh *m);

/* Run worker 0 on the calling thread and the others on threads of their
 * own; returns when every worker has stopped (after troupe_mesh_stop from
 * another thread or an actor). Returns 0, or worker 0's last failure. */
TROUPE_EXTERN int troupe_mesh_run(troupe_mesh *m);

/* Stop every worker (clean shutdown: actors stop, post_stop hooks run).
 * Idempotent. Any thread, workers included. */
TROUPE_EXTERN int troupe_mesh_stop(troupe_mesh *m);

/* Wait until every worker thread has ended, at most timeout_ms (0:
 * forever). Errors: TROUPE_ETIMEDOUT, TROUPE_EWRONGTHREAD (from a
 * worker). */
TROUPE_EXTERN int troupe_mesh_wait(troupe_mesh *m, uint64_t timeout_ms);

/* Stop, wait and free. NULL is fine. Not from a worker. */
TROUPE_EXTERN void troupe_mesh_destroy(troupe_mesh *m);

/* Number of workers. */
TROUPE_EXTERN uint32_t troupe_mesh_size(const troupe_mesh *m);

/* Worker `index`'s system name into buf ("w3"). Returns its length, or
 * TROUPE_EINVAL / TROUPE_ERANGE. */
TROUPE_EXTERN int troupe_mesh_name(const troupe_mesh *m, uint32_t index,
                                   char *buf, size_t size);

/* How many times worker `index` was restarted. */
TROUPE_EXTERN uint32_t troupe_mesh_restarts(troupe_mesh *m, uint32_t index);

/* Resolve `path` ("/user/a") on worker `index` from a non-worker thread,
 * waiting at most timeout_ms. Errors: TROUPE_ENOENT (nothing there, or the
 * worker is down), TROUPE_ETIMEDOUT, TROUPE_EINVAL. */
TROUPE_EXTERN int troupe_mesh_resolve(troupe_mesh *m, uint32_t index,
                                      const char *path, uint64_t timeout_ms,
                                      troupe_ref *out);

#ifdef __cplusplus
}
#endif
#endif
