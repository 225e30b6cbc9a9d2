/* buf.c: troupe_buf, the growable byte buffer the codec writes into. */
#include "core/types_internal.h"

void troupe_buf_init(troupe_buf *b) {
  if (!b) return;
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void troupe_buf_free(troupe_buf *b) {
  if (!b) return;
  free(b->data);
  troupe_buf_init(b);
}

void troupe_buf_clear(troupe_buf *b) {
  if (b) b->len = 0;
}

int troupe_buf_reserve(troupe_buf *b, size_t extra) {
  if (!b) return troupe__err(TROUPE_EINVAL, "troupe_buf_reserve: NULL buffer");
  if (b->cap - b->len >= extra) return 0;
  if (extra > SIZE_MAX / 2 - b->len)
    return troupe__err(TROUPE_ENOMEM, "buffer of %zu + %zu bytes", b->len,
                       extra);
  size_t want = b->len + extra;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < want) cap *= 2;
  /* Allocation failure injection applies here too (see types_internal.h). */
  uint8_t *p = troupe__trealloc(b->data, cap);
  if (!p)
    return troupe__err(TROUPE_ENOMEM, "buffer of %zu bytes", cap);
  b->data = p;
  b->cap = cap;
  return 0;
}

int troupe_buf_append(troupe_buf *b, const void *p, size_t n) {
  int rc = troupe_buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}
