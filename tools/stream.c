/* stream.c: listing ids, reading streams in bounded owned chunks, and the
 * stream hash shared by `journal verify` and `journal copy`. */
#include "tools/stream.h"

#include <stdlib.h>
#include <string.h>

/* --- ids ------------------------------------------------------------------ */

typedef struct ids_ctx {
  tool_ids *out;
  int rc;
} ids_ctx;

/* Runs on a store thread: copy the page. */
static void ids_cb(int status, const char *const *ids, size_t n, void *data) {
  ids_ctx *c = data;
  if (status < 0) return;
  c->out->ids = calloc(n ? n : 1, sizeof *c->out->ids);
  if (!c->out->ids) {
    c->rc = TROUPE_ENOMEM;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    c->out->ids[i] = strdup(ids[i]);
    if (!c->out->ids[i]) {
      c->rc = TROUPE_ENOMEM;
      return;
    }
    c->out->n = i + 1;
  }
}

void tool_ids_free(tool_ids *ids) {
  if (!ids) return;
  for (size_t i = 0; i < ids->n; i++) free(ids->ids[i]);
  free(ids->ids);
  ids->ids = NULL;
  ids->n = 0;
}

int tool_ids_next(troupe_journal *j, const char *after, tool_ids *out) {
  tool_ids fresh = {NULL, 0};
  ids_ctx c = {&fresh, 0};
  int rc = troupe_journal_list_ids_sync(j, after, TOOL_IDS_PAGE, ids_cb, &c);
  if (rc == 0) rc = c.rc;
  tool_ids_free(out);
  if (rc < 0) {
    tool_ids_free(&fresh);
    return rc;
  }
  *out = fresh;
  return 0;
}

int tool_ids_advance(char **after, const tool_ids *ids) {
  free(*after);
  *after = ids->n ? strdup(ids->ids[ids->n - 1]) : NULL;
  if (ids->n < TOOL_IDS_PAGE) return 0;
  return *after ? 1 : -1;
}

/* --- owned events ---------------------------------------------------------- */

int tool_event_copy(troupe_event *dst, const troupe_event *src) {
  const char *pid = src->persistence_id ? src->persistence_id : "";
  size_t pl = strlen(pid) + 1, ml = strlen(src->manifest) + 1;
  size_t size = src->ntags * sizeof(char *) + pl + ml + src->payload_len;
  for (size_t i = 0; i < src->ntags; i++) size += strlen(src->tags[i]) + 1;
  char *mem = malloc(size ? size : 1);
  if (!mem) return TROUPE_ENOMEM;
  *dst = *src;
  const char **tags = (const char **)(void *)mem;
  char *p = mem + src->ntags * sizeof(char *);
  dst->persistence_id = memcpy(p, pid, pl);
  p += pl;
  dst->manifest = memcpy(p, src->manifest, ml);
  p += ml;
  dst->payload = src->payload_len ? memcpy(p, src->payload, src->payload_len)
                                  : NULL;
  p += src->payload_len;
  for (size_t i = 0; i < src->ntags; i++) {
    size_t tl = strlen(src->tags[i]) + 1;
    tags[i] = memcpy(p, src->tags[i], tl);
    p += tl;
  }
  dst->tags = src->ntags ? tags : NULL;
  return 0;
}

/* The allocation starts at the tag array, or at the id when no tags. */
void tool_event_free(troupe_event *ev) {
  if (!ev) return;
  free(ev->ntags ? (void *)ev->tags : (void *)ev->persistence_id);
  memset(ev, 0, sizeof *ev);
}

int tool_event_same(const troupe_event *a, const troupe_event *b) {
  if (a->seq != b->seq || a->version != b->version ||
      a->timestamp_ms != b->timestamp_ms || a->writer_id != b->writer_id ||
      a->payload_len != b->payload_len || a->ntags != b->ntags ||
      strcmp(a->manifest, b->manifest) != 0)
    return 0;
  if (a->payload_len && memcmp(a->payload, b->payload, a->payload_len) != 0)
    return 0;
  for (size_t i = 0; i < a->ntags; i++)
    if (strcmp(a->tags[i], b->tags[i]) != 0) return 0;
  return 1;
}

typedef struct chunk_ctx {
  tool_chunk *c;
  int rc;
} chunk_ctx;

static int chunk_cb(int status, const troupe_event *ev, size_t n, int done,
                    void *data) {
  chunk_ctx *x = data;
  tool_chunk *c = x->c;
  if (status < 0) return 1;
  for (size_t i = 0; i < n; i++) {
    if (c->n && (c->n >= TOOL_CHUNK_EVENTS || c->bytes >= TOOL_CHUNK_BYTES))
      return 1;
    if (c->n == c->cap) {
      size_t cap = c->cap ? c->cap * 2 : 64;
      troupe_event *e = realloc(c->ev, cap * sizeof *e);
      if (!e) {
        x->rc = TROUPE_ENOMEM;
        return 1;
      }
      c->ev = e;
      c->cap = cap;
    }
    int rc = tool_event_copy(&c->ev[c->n], &ev[i]);
    if (rc < 0) {
      x->rc = rc;
      return 1;
    }
    c->n++;
    c->bytes += ev[i].payload_len + 64;
  }
  (void)done;
  return 0;
}

void tool_chunk_clear(tool_chunk *c) {
  for (size_t i = 0; i < c->n; i++) tool_event_free(&c->ev[i]);
  c->n = 0;
  c->bytes = 0;
}

void tool_chunk_free(tool_chunk *c) {
  tool_chunk_clear(c);
  free(c->ev);
  memset(c, 0, sizeof *c);
}

int tool_chunk_read(troupe_journal *j, const char *id, uint64_t from,
                    tool_chunk *c) {
  tool_chunk_clear(c);
  chunk_ctx x = {c, 0};
  int rc = troupe_journal_replay_sync(j, id, from, UINT64_MAX,
                                      TOOL_CHUNK_EVENTS, chunk_cb, &x);
  return rc < 0 ? rc : x.rc;
}

/* --- hashing -------------------------------------------------------------- */

uint64_t tool_fnv(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t tool_fnv_u64(uint64_t h, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
  return tool_fnv(h, b, 8);
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
  return tool_fnv(tool_fnv_u64(h, n), p, n);
}

uint64_t tool_hash_event(uint64_t h, const troupe_event *ev) {
  h = tool_fnv_u64(h, ev->seq);
  h = fnv_bytes(h, ev->manifest, strlen(ev->manifest));
  h = tool_fnv_u64(h, ev->version);
  h = fnv_bytes(h, ev->payload, ev->payload_len);
  h = tool_fnv_u64(h, ev->ntags);
  for (size_t i = 0; i < ev->ntags; i++)
    h = fnv_bytes(h, ev->tags[i], strlen(ev->tags[i]));
  h = tool_fnv_u64(h, (uint64_t)ev->timestamp_ms);
  return tool_fnv_u64(h, ev->writer_id);
}

uint64_t tool_hash_stream(uint64_t overall, const char *id, uint64_t count,
                          uint64_t highest, uint64_t stream_hash) {
  overall = fnv_bytes(overall, id, strlen(id));
  overall = tool_fnv_u64(overall, count);
  overall = tool_fnv_u64(overall, highest);
  return tool_fnv_u64(overall, stream_hash);
}

typedef struct sum_ctx {
  tool_stream_sum *s;
  tool_xform_fn xform;
  void *xdata;
  tool_event_hook hook;
  void *hdata;
  troupe_buf scratch;
} sum_ctx;

static int sum_cb(int status, const troupe_event *ev, size_t n, int done,
                  void *data) {
  sum_ctx *x = data;
  tool_stream_sum *s = x->s;
  if (status < 0) return 1;
  for (size_t i = 0; i < n; i++) {
    const troupe_event *e = &ev[i];
    if (s->count == 0) s->first = e->seq;
    else if (e->seq != s->last + 1) s->gaps++;
    s->last = e->seq;
    s->last_offset = e->offset;
    s->count++;
    if (x->xform) {
      troupe_event t;
      troupe_buf_clear(&x->scratch);
      int rc = x->xform(e, &t, &x->scratch, x->xdata);
      if (rc < 0) {
        if (!s->xform_rc) s->xform_rc = rc, s->xform_seq = e->seq;
      } else {
        s->hash = tool_hash_event(s->hash, &t);
      }
    } else {
      s->hash = tool_hash_event(s->hash, e);
    }
    if (x->hook && x->hook(e, x->hdata)) return 1;
  }
  (void)done;
  return 0;
}

int tool_stream_summary(troupe_journal *j, const char *id,
                        tool_xform_fn xform, void *xdata,
                        tool_event_hook hook, void *hdata,
                        tool_stream_sum *out) {
  memset(out, 0, sizeof *out);
  out->hash = TOOL_FNV_INIT;
  int rc = troupe_journal_highest_sync(j, id, &out->highest);
  if (rc < 0) return rc;
  sum_ctx x = {out, xform, xdata, hook, hdata, {0}};
  rc = troupe_journal_replay_sync(j, id, 1, UINT64_MAX, 0, sum_cb, &x);
  troupe_buf_free(&x.scratch);
  return rc;
}
