/*
 * mesh/internal.h: the mesh's internals. Not installed.
 */
#ifndef TROUPE_MESH_INTERNAL_H
#define TROUPE_MESH_INTERNAL_H

#include "cluster/internal.h"
#include "troupe/mesh.h"

typedef struct troupe__worker {
  struct troupe_mesh *m;
  uint32_t index;
  pthread_t thread;
  bool has_thread;
  troupe_system *sys;        /* current incarnation (under m->lock) */
  atomic_uint restarts;
  atomic_bool crashed;       /* troupe__mesh_crash: never restarted */
  uint32_t in_window;
  uint64_t window_start_ms;
  int last_rc;
} troupe__worker;

struct troupe_mesh {
  troupe_mesh_opts o;
  troupe__inproc *ip;
  troupe__envpool *pool;
  troupe__worker *w;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  atomic_bool stopping;
  bool started;
  uint32_t running;          /* worker loops not yet ended (under lock) */
};

/*
 * Test hooks for the multi-node test kit (tests/testkit.c). The public
 * mesh API is unchanged. Any thread that is not a worker.
 *
 * troupe__mesh_block   cut (blocked) or restore the links between workers
 *                      a and b, both ways (troupe__inproc_block).
 * troupe__mesh_crash   cut worker i from every other worker, then stop
 *                      its system (no restart): a crashed node as its
 *                      peers see it. Errors: TROUPE_EINVAL.
 * troupe__mesh_with    call fn(sys, arg) with worker i's current system
 *                      held (it is not freed meanwhile); fn must not
 *                      block on the worker. Errors: TROUPE_EINVAL,
 *                      TROUPE_ECLOSED (no system now); else fn's result.
 */
void troupe__mesh_block(troupe_mesh *m, uint32_t a, uint32_t b,
                        bool blocked);
int troupe__mesh_crash(troupe_mesh *m, uint32_t i);
int troupe__mesh_with(troupe_mesh *m, uint32_t i,
                      int (*fn)(troupe_system *sys, void *arg), void *arg);

#endif
