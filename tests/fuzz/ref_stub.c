/*
 * ref_stub.c: the core's ref text functions, for the standalone fuzz
 * build (which links the codec files only, not the actor runtime). The
 * fuzz target passes its own ref functions; these are never reached.
 */
#include "core/internal.h"

int troupe__ref_to_uri(troupe_system *sys, troupe_ref ref, char *buf,
                       size_t size) {
  (void)sys; (void)ref; (void)buf; (void)size;
  return troupe__err(TROUPE_EUNSUPPORTED, "no refs in the fuzz build");
}

int troupe__ref_from_uri(troupe_system *sys, const char *uri, size_t len,
                         troupe_ref *out) {
  (void)sys; (void)uri; (void)len; (void)out;
  return troupe__err(TROUPE_EUNSUPPORTED, "no refs in the fuzz build");
}
