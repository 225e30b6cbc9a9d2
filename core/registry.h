/*
 * core/registry.h: the type registry's table, shared by registry.c and
 * upcast.c. Not installed. Every function here expects the registry lock.
 */
#ifndef TROUPE_CORE_REGISTRY_H
#define TROUPE_CORE_REGISTRY_H

#include "core/types_internal.h"

typedef struct troupe__reg_entry {
  char *manifest;             /* owned copy, NUL-terminated */
  size_t mlen;
  uint32_t version;
  uint64_t hash;
  const troupe_type *type;    /* registered here, or NULL */
  /* The upcaster starting at (manifest, version), when up_to != NULL. */
  const troupe_type *up_to;
  troupe_upcast_fn up_fn;
  void *up_data;
} troupe__reg_entry;

void troupe__reg_lock(void);
void troupe__reg_unlock(void);
troupe__reg_entry *troupe__reg_find(const char *m, size_t n, uint32_t version);
/* Find or create the entry. */
int troupe__reg_get(const char *m, size_t n, uint32_t version,
                    troupe__reg_entry **out);

#endif
