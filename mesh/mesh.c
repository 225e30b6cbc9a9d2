/*
 * mesh.c: worker threads, each running one actor system, joined by the
 * in-process transport (cluster/inproc.c); isolation and restarts.
 *
 * A worker thread loops: create its system, attach it to its endpoint,
 * run the init callback, run the loop; when the loop ends, detach and free
 * the system, and unless the mesh is stopping, report the worker's node
 * lost to the other workers (troupe__node_lost on their loops) and restart
 * it after a backoff if it failed and the budget allows.
 */
#include "mesh/internal.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void worker_name(const troupe_mesh *m, uint32_t i, char *buf,
                        size_t size) {
  snprintf(buf, size, "%s%u", m->o.name_prefix ? m->o.name_prefix : "w", i);
}

int troupe_mesh_create(troupe_mesh **out, const troupe_mesh_opts *opts) {
  if (!out || !opts)
    return troupe__err(TROUPE_EINVAL, "troupe_mesh_create: NULL argument");
  *out = NULL;
  if (opts->workers == 0 || opts->workers > 1024)
    return troupe__err(TROUPE_EINVAL, "mesh of %u workers (1..1024)",
                       opts->workers);
  if (opts->name_prefix && (strlen(opts->name_prefix) == 0 ||
                            strlen(opts->name_prefix) > 40))
    return troupe__err(TROUPE_EINVAL, "name_prefix must be 1..40 chars");
  troupe_mesh *m = calloc(1, sizeof *m);
  if (!m) return troupe__err(TROUPE_ENOMEM, "mesh");
  m->o = *opts;
  if (!m->o.max_restarts) m->o.max_restarts = 3;
  if (!m->o.restart_window_ms) m->o.restart_window_ms = 60000;
  if (!m->o.backoff_min_ms) m->o.backoff_min_ms = 50;
  if (!m->o.backoff_max_ms) m->o.backoff_max_ms = 2000;
  m->ip = troupe__inproc_new(opts->workers);
  m->pool = troupe__envpool_new();
  m->w = calloc(opts->workers, sizeof *m->w);
  if (!m->ip || !m->pool || !m->w) {
    troupe__inproc_free(m->ip);
    troupe__envpool_free(m->pool);
    free(m->w);
    free(m);
    return troupe__err(TROUPE_ENOMEM, "mesh");
  }
  for (uint32_t i = 0; i < opts->workers; i++) {
    m->w[i].m = m;
    m->w[i].index = i;
  }
  pthread_mutex_init(&m->lock, NULL);
  pthread_cond_init(&m->cond, NULL);
  *out = m;
  return 0;
}

typedef struct lost_msg {
  uint64_t node;
} lost_msg;

static void lost_on_loop(troupe_system *sys, void *arg) {
  lost_msg *l = arg;
  troupe__node_lost(sys, l->node);
  free(l);
}

static void report_lost(troupe_mesh *m, uint32_t index, uint64_t node) {
  pthread_mutex_lock(&m->lock);
  for (uint32_t j = 0; j < m->o.workers; j++) {
    troupe_system *s = m->w[j].sys;
    if (j == index || !s) continue;
    lost_msg *l = malloc(sizeof *l);
    if (!l) continue;
    l->node = node;
    if (troupe__post(s, lost_on_loop, l) < 0) free(l);
  }
  pthread_mutex_unlock(&m->lock);
}

/* Sleep ms unless the mesh stops first. */
static void backoff(troupe_mesh *m, uint64_t ms) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)(ms / 1000);
  dl.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) { dl.tv_sec++; dl.tv_nsec -= 1000000000L; }
  pthread_mutex_lock(&m->lock);
  while (!atomic_load(&m->stopping))
    if (pthread_cond_timedwait(&m->cond, &m->lock, &dl) == ETIMEDOUT) break;
  pthread_mutex_unlock(&m->lock);
}

static int worker_loop(troupe__worker *w) {
  troupe_mesh *m = w->m;
  int rc = 0;
  while (!atomic_load(&m->stopping) && !atomic_load(&w->crashed)) {
    troupe_system_opts so = m->o.system ? *m->o.system
                                        : (troupe_system_opts){0};
    char name[64];
    worker_name(m, w->index, name, sizeof name);
    so.name = name;
    troupe_system *sys;
    rc = troupe_system_create(&sys, &so);
    if (rc < 0) break;
    sys->env_pool = m->pool;
    troupe__inproc_attach(m->ip, w->index, sys);
    pthread_mutex_lock(&m->lock);
    w->sys = sys;
    pthread_mutex_unlock(&m->lock);
    if (atomic_load(&m->stopping)) troupe_system_stop(sys);
    rc = m->o.init ? m->o.init(sys, w->index, m->o.data) : 0;
    if (rc == 0) rc = troupe_system_run(sys);
    uint64_t node = sys->node;
    pthread_mutex_lock(&m->lock);
    w->sys = NULL;
    pthread_mutex_unlock(&m->lock);
    troupe__inproc_detach(m->ip, w->index);
    troupe_system_destroy(sys);
    w->last_rc = rc;
    if (atomic_load(&m->stopping)) break;
    /* lost: tell the others, then maybe restart */
    report_lost(m, w->index, node);
    uint64_t now = mono_ms();
    if (now - w->window_start_ms > m->o.restart_window_ms) {
      w->window_start_ms = now;
      w->in_window = 0;
    }
    bool restart = rc != 0 && w->in_window < m->o.max_restarts &&
                   !atomic_load(&w->crashed);
    if (m->o.on_lost) m->o.on_lost(m->o.data, w->index, rc, restart);
    if (!restart) break;
    uint64_t delay = m->o.backoff_min_ms << (w->in_window < 20 ? w->in_window
                                                                : 20);
    if (delay > m->o.backoff_max_ms) delay = m->o.backoff_max_ms;
    w->in_window++;
    atomic_fetch_add(&w->restarts, 1);
    backoff(m, delay);
  }
  pthread_mutex_lock(&m->lock);
  m->running--;
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  return rc;
}

static void *worker_main(void *arg) {
  worker_loop(arg);
  return NULL;
}

static int start_threads(troupe_mesh *m, uint32_t first) {
  pthread_mutex_lock(&m->lock);
  if (m->started) {
    pthread_mutex_unlock(&m->lock);
    return troupe__err(TROUPE_ESTATE, "mesh already started");
  }
  m->started = true;
  m->running = m->o.workers;
  pthread_mutex_unlock(&m->lock);
  for (uint32_t i = first; i < m->o.workers; i++) {
    int rc = pthread_create(&m->w[i].thread, NULL, worker_main, &m->w[i]);
    if (rc != 0) {
      troupe_mesh_stop(m);
      pthread_mutex_lock(&m->lock);
      m->running -= m->o.workers - i;
      pthread_mutex_unlock(&m->lock);
      return troupe__err(TROUPE_ENOMEM, "pthread_create: %s", strerror(rc));
    }
    m->w[i].has_thread = true;
  }
  return 0;
}

int troupe_mesh_start(troupe_mesh *m) {
  if (!m) return troupe__err(TROUPE_EINVAL, "troupe_mesh_start: NULL");
  return start_threads(m, 0);
}

int troupe_mesh_run(troupe_mesh *m) {
  if (!m) return troupe__err(TROUPE_EINVAL, "troupe_mesh_run: NULL");
  if (troupe__current)
    return troupe__err(TROUPE_EWRONGTHREAD, "troupe_mesh_run on the thread "
                       "of system %s", troupe__current->name);
  int rc = start_threads(m, 1);
  if (rc < 0) return rc;
  rc = worker_loop(&m->w[0]);
  troupe_mesh_wait(m, 0);
  return rc;
}

int troupe_mesh_stop(troupe_mesh *m) {
  if (!m) return troupe__err(TROUPE_EINVAL, "troupe_mesh_stop: NULL");
  pthread_mutex_lock(&m->lock);
  atomic_store(&m->stopping, true);
  for (uint32_t i = 0; i < m->o.workers; i++)
    if (m->w[i].sys) troupe_system_stop(m->w[i].sys);
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  return 0;
}

int troupe_mesh_wait(troupe_mesh *m, uint64_t timeout_ms) {
  if (!m) return troupe__err(TROUPE_EINVAL, "troupe_mesh_wait: NULL");
  if (troupe__current)
    return troupe__err(TROUPE_EWRONGTHREAD, "troupe_mesh_wait on a worker");
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)(timeout_ms / 1000);
  dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) { dl.tv_sec++; dl.tv_nsec -= 1000000000L; }
  pthread_mutex_lock(&m->lock);
  while (m->started && m->running > 0) {
    if (timeout_ms == 0) {
      pthread_cond_wait(&m->cond, &m->lock);
    } else if (pthread_cond_timedwait(&m->cond, &m->lock, &dl) ==
               ETIMEDOUT) {
      pthread_mutex_unlock(&m->lock);
      return troupe__err(TROUPE_ETIMEDOUT, "mesh still running");
    }
  }
  pthread_mutex_unlock(&m->lock);
  for (uint32_t i = 0; i < m->o.workers; i++)
    if (m->w[i].has_thread) {
      pthread_join(m->w[i].thread, NULL);
      m->w[i].has_thread = false;
    }
  return 0;
}

void troupe_mesh_destroy(troupe_mesh *m) {
  if (!m || troupe__current) return;
  troupe_mesh_stop(m);
  troupe_mesh_wait(m, 0);
  troupe__inproc_free(m->ip);
  troupe__envpool_free(m->pool);
  pthread_mutex_destroy(&m->lock);
  pthread_cond_destroy(&m->cond);
  free(m->w);
  free(m);
}

uint32_t troupe_mesh_size(const troupe_mesh *m) {
  return m ? m->o.workers : 0;
}

int troupe_mesh_name(const troupe_mesh *m, uint32_t index, char *buf,
                     size_t size) {
  if (!m || !buf || !size || index >= m->o.workers)
    return troupe__err(TROUPE_EINVAL, "troupe_mesh_name: bad argument");
  char name[64];
  worker_name(m, index, name, sizeof name);
  size_t n = strlen(name);
  if (n >= size) return troupe__err(TROUPE_ERANGE, "buffer too small");
  memcpy(buf, name, n + 1);
  return (int)n;
}

uint32_t troupe_mesh_restarts(troupe_mesh *m, uint32_t index) {
  if (!m || index >= m->o.workers) return 0;
  return atomic_load(&m->w[index].restarts);
}

int troupe_mesh_resolve(troupe_mesh *m, uint32_t index, const char *path,
                        uint64_t timeout_ms, troupe_ref *out) {
  if (!m || !path || !out || index >= m->o.workers)
    return troupe__err(TROUPE_EINVAL, "troupe_mesh_resolve: bad argument");
  *out = TROUPE_REF_NONE;
  if (troupe__current)
    return troupe__err(TROUPE_EWRONGTHREAD, "troupe_mesh_resolve on a "
                       "worker (use troupe_resolve)");
  /* the lock keeps the worker's system alive during the ask; a system
   * that terminates meanwhile fails the ask with TROUPE_ECLOSED */
  pthread_mutex_lock(&m->lock);
  troupe_system *sys = m->w[index].sys;
  int rc;
  if (!sys || atomic_load(&sys->state) != TROUPE__SYS_RUNNING) {
    rc = troupe__err(TROUPE_ENOENT, "worker %u is not running", index);
  } else {
    char uri[512];
    snprintf(uri, sizeof uri, "troupe://%s%s", sys->name, path);
    rc = troupe_resolve_blocking(sys, uri, timeout_ms, out);
  }
  pthread_mutex_unlock(&m->lock);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Test hooks (mesh/internal.h) */

void troupe__mesh_block(troupe_mesh *m, uint32_t a, uint32_t b,
                        bool blocked) {
  if (!m || a >= m->o.workers || b >= m->o.workers || a == b) return;
  troupe__inproc_block(m->ip, a, b, blocked);
}

int troupe__mesh_crash(troupe_mesh *m, uint32_t i) {
  if (!m || i >= m->o.workers)
    return troupe__err(TROUPE_EINVAL, "troupe__mesh_crash: bad argument");
  /* cut first, so that nothing the stopping system sends gets out */
  for (uint32_t j = 0; j < m->o.workers; j++)
    if (j != i) troupe__inproc_block(m->ip, i, j, true);
  pthread_mutex_lock(&m->lock);
  atomic_store(&m->w[i].crashed, true);
  if (m->w[i].sys) troupe_system_stop(m->w[i].sys);
  pthread_cond_broadcast(&m->cond);   /* ends a restart backoff */
  pthread_mutex_unlock(&m->lock);
  return 0;
}

int troupe__mesh_with(troupe_mesh *m, uint32_t i,
                      int (*fn)(troupe_system *sys, void *arg), void *arg) {
  if (!m || !fn || i >= m->o.workers)
    return troupe__err(TROUPE_EINVAL, "troupe__mesh_with: bad argument");
  pthread_mutex_lock(&m->lock);
  troupe_system *sys = m->w[i].sys;
  int rc = sys ? fn(sys, arg)
               : troupe__err(TROUPE_ECLOSED, "worker %u is not running", i);
  pthread_mutex_unlock(&m->lock);
  return rc;
}
