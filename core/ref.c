/* ref.c: refs as text (placeholder until the node table lands). */
#include "core/internal.h"

int troupe__ref_to_uri(troupe_system *sys, troupe_ref ref, char *buf,
                       size_t size) {
  (void)sys; (void)ref; (void)buf; (void)size;
  return troupe__err(TROUPE_EUNSUPPORTED, "ref encoding not built yet");
}

int troupe__ref_from_uri(troupe_system *sys, const char *uri, size_t len,
                         troupe_ref *out) {
  (void)sys; (void)uri; (void)len; (void)out;
  return troupe__err(TROUPE_EUNSUPPORTED, "ref decoding not built yet");
}
