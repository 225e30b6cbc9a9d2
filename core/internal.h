/*
 * core/internal.h: internals shared by troupe's modules. Not installed.
 */
#ifndef TROUPE_CORE_INTERNAL_H
#define TROUPE_CORE_INTERNAL_H

#include "config.h"
#include "troupe/troupe.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
# define TROUPE_LIKELY(x)   __builtin_expect(!!(x), 1)
# define TROUPE_UNLIKELY(x) __builtin_expect(!!(x), 0)
# define TROUPE_HIDDEN __attribute__((visibility("hidden")))
#else
# define TROUPE_LIKELY(x)   (x)
# define TROUPE_UNLIKELY(x) (x)
# define TROUPE_HIDDEN
/*
 * Refs as text, for the codec. troupe__ref_to_uri writes
 * "troupe://system/user/a#<uid>" (or "troupe://system@host:port/..." once
 * the system has a network address) and returns the length or a negative
 * code; troupe__ref_from_uri parses that text back into a ref usable for
 * tell (a local actor when the address is ours). `sys` may be NULL when no
 * system is at hand (then refs resolve against the process's node table).
 */
int troupe__ref_to_uri(troupe_system *sys, troupe_ref ref, char *buf,
                       size_t size);
int troupe__ref_from_uri(troupe_system *sys, const char *uri, size_t len,
                         troupe_ref *out);

#endif

#define TROUPE_CONTAINER_OF(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

/* Record detail text for the calling thread and return code, so a failing
 * call can say `return troupe__err(TROUPE_EINVAL, "name too long (%zu)", n)`. */
int troupe__err(int code, const char *fmt, ...) TROUPE_PRINTF(2, 3);
void troupe__err_clear(void);

/*
 * Refs as text, for the codec. troupe__ref_to_uri writes
 * "troupe://system/user/a#<uid>" (or "troupe://system@host:port/..." once
 * the system has a network address) and returns the length or a negative
 * code; troupe__ref_from_uri parses that text back into a ref usable for
 * tell (a local actor when the address is ours). `sys` may be NULL when no
 * system is at hand (then refs resolve against the process's node table).
 */
int troupe__ref_to_uri(troupe_system *sys, troupe_ref ref, char *buf,
                       size_t size);
int troupe__ref_from_uri(troupe_system *sys, const char *uri, size_t len,
                         troupe_ref *out);

#endif
