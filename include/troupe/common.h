/*
 * troupe/common.h: the export macro, version query and the few types that
 * every module shares.
 */
#ifndef TROUPE_COMMON_H
#define TROUPE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "troupe/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TROUPE_BUILDING) && defined(__GNUC__)
# define TROUPE_EXTERN __attribute__((visibility("default")))
#else
# define TROUPE_EXTERN
#endif

#if defined(__GNUC__)
# define TROUPE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
# define TROUPE_PRINTF(a, b)
#endif

/* The library's version as "MAJOR.MINOR.PATCH". Any thread. */
TROUPE_EXTERN const char *troupe_version_string(void);
/* The library's version as TROUPE_VERSION_HEX was when it was built. */
TROUPE_EXTERN unsigned troupe_version_hex(void);

/*
 * An actor reference: a small value (16 bytes) with a stable identity.
 * Copy it freely, store it, send it to other threads; it never dangles.
 * A ref names one incarnation of one actor: once that actor has stopped,
 * messages to the ref go to dead letters, even if an actor with the same
 * path is started again. The all-zero ref is "no actor" (TROUPE_REF_NONE).
 * Treat the fields as opaque; compare with troupe_ref_eq().
 */
typedef struct troupe_ref {
  uint64_t node;   /* process-wide node index (local system or remote node) */
  uint64_t uid;    /* slot << 32 | incarnation; 0 for no actor */
} troupe_ref;

#define TROUPE_REF_NONE ((troupe_ref){0, 0})

static inline bool troupe_ref_eq(troupe_ref a, troupe_ref b) {
  return a.node == b.node && a.uid == b.uid;
}
static inline bool troupe_ref_is_none(troupe_ref r) { return r.uid == 0; }

#ifdef __cplusplus
}
#endif
#endif
