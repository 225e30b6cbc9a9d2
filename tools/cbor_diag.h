/*
 * tools/cbor_diag.h: CBOR diagnostic notation (RFC 8949 section 8) for
 * payloads whose type is not known, e.g. {"amount": 5, "tags": [1, h'00ff']}.
 */
#ifndef TROUPE_TOOLS_CBOR_DIAG_H
#define TROUPE_TOOLS_CBOR_DIAG_H

#include "troupe/types.h"

#define TOOL_DIAG_MAX_DEPTH 32u

/*
 * Append the diagnostic notation of the one CBOR item in data[0..len) to
 * out, NUL-terminated (the NUL not counted). Hostile input is safe: nesting
 * deeper than TOOL_DIAG_MAX_DEPTH, lengths beyond the input, reserved
 * values, invalid UTF-8, a misplaced break or trailing bytes fail with
 * TROUPE_EDECODE (TROUPE_ETOOBIG for the depth), *why naming the problem
 * and *at its byte offset, and out unchanged. When the text would exceed
 * max_out bytes, rendering stops there and "..." ends it (still 0).
 */
int tool_cbor_diag(const uint8_t *data, size_t len, troupe_buf *out,
                   size_t max_out, const char **why, size_t *at);

#endif
