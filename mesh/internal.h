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

#endif
