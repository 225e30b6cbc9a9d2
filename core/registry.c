/*
 * registry.c: the process-wide type registry. One hash table keyed by
 * (manifest, version); an entry holds the descriptor registered there
 * and/or the upcaster that starts there. One mutex guards it: lookups are
 * rare next to encoding (a journal replay or a received frame does one per
 * value), and user callbacks never run under it.
 */
#include "core/types_internal.h"
#include "core/registry.h"

#include <pthread.h>

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static troupe__reg_entry **slots;   /* open addressing, power of two */
static size_t nslots, nentries;

static uint64_t hash_key(const char *m, size_t n, uint32_t version) {
  uint64_t h = 1469598103934665603ull;            /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)m[i];
    h *= 1099511628211ull;
  }
  h ^= version;
  h *= 1099511628211ull;
  return h ^ (h >> 29);
}

void troupe__reg_lock(void) { pthread_mutex_lock(&reg_lock); }
void troupe__reg_unlock(void) { pthread_mutex_unlock(&reg_lock); }

troupe__reg_entry *troupe__reg_find(const char *m, size_t n, uint32_t version) {
  if (!nslots) return NULL;
  uint64_t h = hash_key(m, n, version);
  for (size_t i = (size_t)h & (nslots - 1);; i = (i + 1) & (nslots - 1)) {
    troupe__reg_entry *e = slots[i];
    if (!e) return NULL;
    if (e->hash == h && e->version == version && e->mlen == n &&
        memcmp(e->manifest, m, n) == 0)
      return e;
  }
}

static int grow(void) {
  size_t ncap = nslots ? nslots * 2 : 64;
  troupe__reg_entry **ns = calloc(ncap, sizeof *ns);
  if (!ns) return troupe__err(TROUPE_ENOMEM, "type registry: no memory");
  for (size_t i = 0; i < nslots; i++) {
    troupe__reg_entry *e = slots[i];
    if (!e) continue;
    size_t j = (size_t)e->hash & (ncap - 1);
    while (ns[j]) j = (j + 1) & (ncap - 1);
    ns[j] = e;
  }
  free(slots);
  slots = ns;
  nslots = ncap;
  return 0;
}

int troupe__reg_get(const char *m, size_t n, uint32_t version,
                    troupe__reg_entry **out) {
  troupe__reg_entry *e = troupe__reg_find(m, n, version);
  if (e) {
    *out = e;
    return 0;
  }
  if ((nentries + 1) * 2 > nslots) {
    int rc = grow();
    if (rc) return rc;
  }
  e = calloc(1, sizeof *e + n + 1);
  if (!e) return troupe__err(TROUPE_ENOMEM, "type registry: no memory");
  e->manifest = (char *)(e + 1);
  memcpy(e->manifest, m, n);
  e->manifest[n] = '\0';
  e->mlen = n;
  e->version = version;
  e->hash = hash_key(m, n, version);
  size_t j = (size_t)e->hash & (nslots - 1);
  while (slots[j]) j = (j + 1) & (nslots - 1);
  slots[j] = e;
  nentries++;
  *out = e;
  return 0;
}

/* Two descriptors describe the same thing: equal headers and fields,
 * nested types with equal manifest, version and size. */
static bool same_type(const troupe_type *a, const troupe_type *b) {
  if (a == b) return true;
  if (strcmp(a->manifest, b->manifest) || a->version != b->version ||
      a->size != b->size || a->nfields != b->nfields || a->ops != b->ops)
    return false;
  for (uint32_t i = 0; i < a->nfields; i++) {
    const troupe_field *f = &a->fields[i], *g = &b->fields[i];
    if (strcmp(f->name, g->name) || f->kind != g->kind ||
        f->shape != g->shape || f->flags != g->flags ||
        f->offset != g->offset || f->count != g->count ||
        f->elem_size != g->elem_size ||
        ((f->flags & TROUPE_FF_OPTIONAL) &&
         f->present_offset != g->present_offset))
      return false;
    if (f->kind == TROUPE_K_NESTED &&
        f->type != g->type &&
        (strcmp(f->type->manifest, g->type->manifest) ||
         f->type->version != g->type->version ||
         f->type->size != g->type->size))
      return false;
  }
  return true;
}

int troupe_type_register(const troupe_type *t) {
  int rc = troupe_type_prepare(t);
  if (rc) return rc;
  troupe__reg_lock();
  troupe__reg_entry *e;
  rc = troupe__reg_get(t->manifest, strlen(t->manifest), t->version, &e);
  if (!rc) {
    if (!e->type)
      e->type = t;
    else if (!same_type(e->type, t))
      rc = troupe__err(TROUPE_EEXIST,
                       "a different type is registered as '%s' v%u",
                       t->manifest, t->version);
  }
  troupe__reg_unlock();
  return rc;
}

const troupe_type *troupe_type_lookup(const char *manifest, uint32_t version) {
  if (!manifest) return NULL;
  troupe__reg_lock();
  troupe__reg_entry *e =
      troupe__reg_find(manifest, strlen(manifest), version);
  const troupe_type *t = e ? e->type : NULL;
  troupe__reg_unlock();
  return t;
}

const troupe_type *troupe_type_latest(const char *manifest) {
  if (!manifest) return NULL;
  size_t n = strlen(manifest);
  const troupe_type *best = NULL;
  troupe__reg_lock();
  for (size_t i = 0; i < nslots; i++) {
    troupe__reg_entry *e = slots[i];
    if (e && e->type && e->mlen == n && memcmp(e->manifest, manifest, n) == 0 &&
        (!best || e->version > best->version))
      best = e->type;
  }
  troupe__reg_unlock();
  return best;
}
