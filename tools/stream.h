/*
 * tools/stream.h: reading whole streams for the journal subcommands:
 * listing ids, owned copies of events read in bounded chunks, and the
 * stream hash that verify prints and copy compares.
 */
#ifndef TROUPE_TOOLS_STREAM_H
#define TROUPE_TOOLS_STREAM_H

#include "tools/util.h"

/* --- ids ------------------------------------------------------------------ */

/* One page of persistence ids (owned copies). */
typedef struct tool_ids {
  char **ids;
  size_t n;
} tool_ids;

#define TOOL_IDS_PAGE 1000

/* The ids after `after` (NULL: from the start), at most TOOL_IDS_PAGE.
 * Frees what *out held before. 0 or a troupe error. */
int tool_ids_next(troupe_journal *j, const char *after, tool_ids *out);
void tool_ids_free(tool_ids *ids);
/* After a page of ids: *after (freed) becomes a copy of the page's last
 * id, NULL for an empty page. Returns 0 when the page was the last (fewer
 * than TOOL_IDS_PAGE ids), 1 when more may follow, -1 when more may follow
 * but the copy failed (out of memory). */
int tool_ids_advance(char **after, const tool_ids *ids);

/* --- owned events ---------------------------------------------------------- */

/* A run of events copied out of a store (each event one allocation). */
typedef struct tool_chunk {
  troupe_event *ev;
  size_t n, cap;
  size_t bytes;       /* payload and strings held */
} tool_chunk;

/* Bounds of one chunk: at most this many events and (past the first
 * event) this many bytes. */
#define TOOL_CHUNK_EVENTS 1000u
#define TOOL_CHUNK_BYTES  ((size_t)8 << 20)

/* Read the events of `id` with seq >= from into *c (emptied first), up to
 * the bounds above. c->n == 0 means there are none left. */
int tool_chunk_read(troupe_journal *j, const char *id, uint64_t from,
                    tool_chunk *c);
void tool_chunk_clear(tool_chunk *c);
void tool_chunk_free(tool_chunk *c);

/* Copy one event into an allocation owned by *dst (free with
 * tool_event_free). 0 or TROUPE_ENOMEM. */
int tool_event_copy(troupe_event *dst, const troupe_event *src);
void tool_event_free(troupe_event *ev);

/* Two events are the same as far as a copy is concerned: seq, manifest,
 * version, payload, tags (in order), timestamp and writer id. */
int tool_event_same(const troupe_event *a, const troupe_event *b);

/* --- hashing -------------------------------------------------------------- */

/*
 * The stream hash: FNV-1a 64 over, per event in seq order, the seq, the
 * manifest, the version, the payload, the tags (in order), the timestamp
 * and the writer id, each length-prefixed (integers as 8 little-endian
 * bytes). Offsets are not hashed: they differ between stores. The overall
 * hash folds, per id in byte order, the id, the count, the highest seq and
 * the stream hash. A consistency check between copies, not a defence
 * against someone forging events.
 */
#define TOOL_FNV_INIT 0xcbf29ce484222325ull

uint64_t tool_fnv(uint64_t h, const void *p, size_t n);
uint64_t tool_fnv_u64(uint64_t h, uint64_t v);
uint64_t tool_hash_event(uint64_t h, const troupe_event *ev);
uint64_t tool_hash_stream(uint64_t overall, const char *id, uint64_t count,
                          uint64_t highest, uint64_t stream_hash);

/* A transformation applied to each event before it is hashed (copy's
 * upcasting): fill *out (which may point into `scratch` or into `in`).
 * NULL means the identity. */
typedef int (*tool_xform_fn)(const troupe_event *in, troupe_event *out,
                             troupe_buf *scratch, void *data);

/* What one pass over a stream found. */
typedef struct tool_stream_sum {
  uint64_t highest;       /* troupe_journal_highest */
  uint64_t first;         /* first stored seq; 0 when none is stored */
  uint64_t last;          /* last stored seq */
  uint64_t count;         /* stored events */
  uint64_t hash;          /* stream hash of the (transformed) events */
  uint64_t gaps;          /* places where seq did not follow the previous */
  uint64_t last_offset;   /* offset of the last stored event */
  int xform_rc;           /* first failure of the transformation */
  uint64_t xform_seq;     /* ... at this seq */
} tool_stream_sum;

/* Per-event hook run during tool_stream_summary (on a store thread: it
 * must not call *_sync functions). Nonzero stops the scan. */
typedef int (*tool_event_hook)(const troupe_event *ev, void *data);

/* Read the whole stream `id` once: highest, contiguity, count and hash
 * (of xform(event) when xform is not NULL), calling hook per event. */
int tool_stream_summary(troupe_journal *j, const char *id,
                        tool_xform_fn xform, void *xdata,
                        tool_event_hook hook, void *hdata,
                        tool_stream_sum *out);

#endif
