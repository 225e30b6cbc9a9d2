/* hmap.c: a small open-addressing hash map from byte strings to pointers,
 * for persistence ids and tags. Keys are owned by the values; there is no
 * removal (stores drop whole maps). */
#include "journal/internal.h"

uint64_t jnl_hash(const char *k, size_t len) {
  uint64_t h = 1469598103934665603ull;           /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)k[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

void *jnl_hmap_get(const jnl_hmap *m, const char *k, size_t len,
                       uint64_t h) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const jnl_hent *e = &m->t[i];
    if (!e->v) return NULL;
    if (e->hash == h && e->len == len && memcmp(e->k, k, len) == 0)
      return e->v;
  }
}

static int grow(jnl_hmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 64;
  jnl_hent *t = calloc(cap, sizeof *t);
  if (!t) return TROUPE_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    jnl_hent *e = &m->t[i];
    if (!e->v) continue;
    size_t j = e->hash & (cap - 1);
    while (t[j].v) j = (j + 1) & (cap - 1);
    t[j] = *e;
  }
  free(m->t);
  m->t = t;
  m->cap = cap;
  return 0;
}

int jnl_hmap_put(jnl_hmap *m, const char *k, size_t len, uint64_t h,
                     void *v) {
  if ((m->n + 1) * 4 > m->cap * 3 && grow(m) < 0)
    return troupe__err(TROUPE_ENOMEM, "hash map");
  size_t mask = m->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    jnl_hent *e = &m->t[i];
    if (!e->v) {
      e->k = k; e->len = len; e->hash = h; e->v = v;
      m->n++;
      return 0;
    }
    if (e->hash == h && e->len == len && memcmp(e->k, k, len) == 0) {
      e->k = k; e->v = v;
      return 0;
    }
  }
}

void jnl_hmap_free(jnl_hmap *m) {
  free(m->t);
  memset(m, 0, sizeof *m);
}
