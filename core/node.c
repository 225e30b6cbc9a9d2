/*
 * node.c: the process-wide node table.
 *
 * A troupe_ref carries a node index so it means the same thing on every
 * thread. The table is a two-level array that only grows: readers index it
 * without a lock (a chunk pointer, once published, never changes), writers
 * add under a mutex. Entries outlive their systems so that a ref to a
 * destroyed system still resolves to "closed" instead of freed memory.
 */
#include "core/internal.h"

#include <sched.h>

#define CHUNK_BITS 10
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define MAX_CHUNKS 4096

static _Atomic(troupe__node *) chunks[MAX_CHUNKS];
static pthread_mutex_t node_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t node_count = 1;  /* index 0 is "no node" */

int troupe__node_add(troupe_system *sys, uint64_t *index) {
  pthread_mutex_lock(&node_lock);
  uint64_t i = node_count;
  uint64_t c = i >> CHUNK_BITS;
  if (c >= MAX_CHUNKS) {
    pthread_mutex_unlock(&node_lock);
    return troupe__err(TROUPE_ENOMEM, "node table full");
  }
  troupe__node *chunk = atomic_load(&chunks[c]);
  if (!chunk) {
    chunk = calloc(CHUNK_SIZE, sizeof *chunk);
    if (!chunk) {
      pthread_mutex_unlock(&node_lock);
      return troupe__err(TROUPE_ENOMEM, "node table chunk");
    }
    atomic_store(&chunks[c], chunk);
  }
  troupe__node *n = &chunk[i & (CHUNK_SIZE - 1)];
  atomic_store(&n->users, 0);
  atomic_store(&n->remote, NULL);
  atomic_store(&n->sys, sys);
  node_count++;
  pthread_mutex_unlock(&node_lock);
  *index = i;
  return 0;
}

troupe__node *troupe__node_get(uint64_t index) {
  uint64_t c = index >> CHUNK_BITS;
  if (TROUPE_UNLIKELY(c >= MAX_CHUNKS || index == 0)) return NULL;
  troupe__node *chunk = atomic_load_explicit(&chunks[c], memory_order_acquire);
  if (TROUPE_UNLIKELY(!chunk)) return NULL;
  return &chunk[index & (CHUNK_SIZE - 1)];
}

void troupe__node_close(uint64_t index) {
  troupe__node *n = troupe__node_get(index);
  if (!n) return;
  atomic_store(&n->sys, NULL);
  /* A sender that saw the system before the store is still inside; wait
   * for it to leave (it only pushes to the inbox, a few instructions). */
  while (atomic_load(&n->users) != 0) sched_yield();
}

int troupe__node_add_remote(void *remote, uint64_t *index) {
  int rc = troupe__node_add(NULL, index);
  if (rc < 0) return rc;
  troupe__node *n = troupe__node_get(*index);
  atomic_store(&n->remote, remote);
  return 0;
}

uint64_t troupe__node_find_local(const char *name, size_t len) {
  pthread_mutex_lock(&node_lock);
  uint64_t count = node_count;
  pthread_mutex_unlock(&node_lock);
  /* newest first: a restarted system reuses its name */
  for (uint64_t i = count - 1; i >= 1; i--) {
    troupe__node *n = troupe__node_get(i);
    if (!n) continue;
    atomic_fetch_add(&n->users, 1);
    troupe_system *sys = atomic_load(&n->sys);
    bool hit = sys && strlen(sys->name) == len &&
               memcmp(sys->name, name, len) == 0;
    atomic_fetch_sub(&n->users, 1);
    if (hit) return i;
  }
  return 0;
}
