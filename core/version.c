/* version.c: runtime version query. */
#include "core/internal.h"

const char *troupe_version_string(void) { return TROUPE_VERSION_STRING; }
unsigned troupe_version_hex(void) { return TROUPE_VERSION_HEX; }
