/* record.c: the byte layout of stored events, snapshots and state, and the
 * page of decoded events handed to read callbacks. */
#include "journal/internal.h"

size_t jnl_rec_size(const troupe_event *ev) {
  size_t n = 1 + 8 + 8 + 8 + 4 + 2 + strlen(ev->manifest) + 1 + 1;
  for (size_t i = 0; i < ev->ntags; i++) n += 1 + strlen(ev->tags[i]) + 1;
  return n + ev->payload_len;
}

uint8_t *jnl_rec_write(uint8_t *p, const troupe_event *ev) {
  size_t ml = strlen(ev->manifest);
  *p++ = JNL_REC_FORMAT;
  jnl_be64(p, 0); p += 8;                 /* offset: set at commit */
  jnl_be64(p, (uint64_t)ev->timestamp_ms); p += 8;
  jnl_be64(p, ev->writer_id); p += 8;
  jnl_be32(p, ev->version); p += 4;
  jnl_be16(p, (uint16_t)ml); p += 2;
  memcpy(p, ev->manifest, ml + 1); p += ml + 1;
  *p++ = (uint8_t)ev->ntags;
  for (size_t i = 0; i < ev->ntags; i++) {
    size_t tl = strlen(ev->tags[i]);
    *p++ = (uint8_t)tl;
    memcpy(p, ev->tags[i], tl + 1);
    p += tl + 1;
  }
  if (ev->payload_len) memcpy(p, ev->payload, ev->payload_len);
  return p + ev->payload_len;
}

int jnl_rec_read(const uint8_t *p, size_t len, troupe_event *ev,
                     const char **tagv) {
  const uint8_t *end = p + len;
  if (len < 32 || p[0] != JNL_REC_FORMAT)
    return troupe__err(TROUPE_ECORRUPT, "event record: bad header");
  ev->offset = jnl_rd64(p + 1);
  ev->timestamp_ms = (int64_t)jnl_rd64(p + 9);
  ev->writer_id = jnl_rd64(p + 17);
  ev->version = jnl_rd32(p + 25);
  size_t ml = jnl_rd16(p + 29);
  p += 31;
  if ((size_t)(end - p) < ml + 2 || p[ml] != 0)
    return troupe__err(TROUPE_ECORRUPT, "event record: bad manifest");
  ev->manifest = (const char *)p;
  p += ml + 1;
  size_t nt = *p++;
  if (nt > TROUPE_JOURNAL_MAX_TAGS)
    return troupe__err(TROUPE_ECORRUPT, "event record: too many tags");
  for (size_t i = 0; i < nt; i++) {
    if (p >= end) return troupe__err(TROUPE_ECORRUPT, "event record: tags");
    size_t tl = *p++;
    if ((size_t)(end - p) < tl + 1 || p[tl] != 0)
      return troupe__err(TROUPE_ECORRUPT, "event record: bad tag");
    tagv[i] = (const char *)p;
    p += tl + 1;
  }
  ev->tags = tagv;
  ev->ntags = nt;
  ev->payload = p;
  ev->payload_len = (size_t)(end - p);
  return 0;
}

int jnl_rec_has_tag(const troupe_event *ev, const char *tag) {
  for (size_t i = 0; i < ev->ntags; i++)
    if (strcmp(ev->tags[i], tag) == 0) return 1;
  return 0;
}

size_t jnl_snap_size(const troupe_snapshot *s) {
  return 1 + 8 + 4 + 2 + strlen(s->manifest) + 1 + s->state_len;
}

void jnl_snap_write(uint8_t *p, const troupe_snapshot *s) {
  size_t ml = strlen(s->manifest);
  *p++ = JNL_REC_FORMAT;
  jnl_be64(p, (uint64_t)s->timestamp_ms); p += 8;
  jnl_be32(p, s->version); p += 4;
  jnl_be16(p, (uint16_t)ml); p += 2;
  memcpy(p, s->manifest, ml + 1); p += ml + 1;
  if (s->state_len) memcpy(p, s->state, s->state_len);
}

int jnl_snap_read(const uint8_t *p, size_t len, troupe_snapshot *s) {
  if (len < 16 || p[0] != JNL_REC_FORMAT)
    return troupe__err(TROUPE_ECORRUPT, "snapshot record: bad header");
  s->timestamp_ms = (int64_t)jnl_rd64(p + 1);
  s->version = jnl_rd32(p + 9);
  size_t ml = jnl_rd16(p + 13);
  if (len < 15 + ml + 1 || p[15 + ml] != 0)
    return troupe__err(TROUPE_ECORRUPT, "snapshot record: bad manifest");
  s->manifest = (const char *)p + 15;
  s->state = p + 16 + ml;
  s->state_len = len - 16 - ml;
  return 0;
}

size_t jnl_state_size(const troupe_state_record *r) {
  return 1 + 8 + 8 + 4 + 2 + strlen(r->manifest) + 1 + r->value_len;
}

void jnl_state_write(uint8_t *p, const troupe_state_record *r,
                         uint64_t revision) {
  size_t ml = strlen(r->manifest);
  *p++ = JNL_REC_FORMAT;
  jnl_be64(p, revision); p += 8;
  jnl_be64(p, (uint64_t)r->timestamp_ms); p += 8;
  jnl_be32(p, r->version); p += 4;
  jnl_be16(p, (uint16_t)ml); p += 2;
  memcpy(p, r->manifest, ml + 1); p += ml + 1;
  if (r->value_len) memcpy(p, r->value, r->value_len);
}

int jnl_state_read(const uint8_t *p, size_t len, troupe_state_record *r) {
  if (len < 24 || p[0] != JNL_REC_FORMAT)
    return troupe__err(TROUPE_ECORRUPT, "state record: bad header");
  r->revision = jnl_rd64(p + 1);
  r->timestamp_ms = (int64_t)jnl_rd64(p + 9);
  r->version = jnl_rd32(p + 17);
  size_t ml = jnl_rd16(p + 21);
  if (len < 23 + ml + 1 || p[23 + ml] != 0)
    return troupe__err(TROUPE_ECORRUPT, "state record: bad manifest");
  r->manifest = (const char *)p + 23;
  r->value = p + 24 + ml;
  r->value_len = len - 24 - ml;
  return 0;
}

/* --- pages ---------------------------------------------------------------
 * A page never moves what its events already point at: when a record
 * does not fit the arena or the tag pool, the page is delivered first
 * (jnl_page_fits says so); only an empty page grows. */

#define PAGE_ARENA_MIN (256u * 1024u)

int jnl_page_init(jnl_page *pg, size_t cap) {
  memset(pg, 0, sizeof *pg);
  if (cap == 0) cap = 1;
  pg->cap = cap;
  pg->tagcap = cap * 4 < TROUPE_JOURNAL_MAX_TAGS ? TROUPE_JOURNAL_MAX_TAGS
                                                 : cap * 4;
  pg->ev = malloc(cap * sizeof *pg->ev);
  pg->tagv = malloc(pg->tagcap * sizeof *pg->tagv);
  if (!pg->ev || !pg->tagv) {
    jnl_page_free(pg);
    return TROUPE_ENOMEM;
  }
  return 0;
}

void jnl_page_free(jnl_page *pg) {
  free(pg->ev);
  free(pg->tagv);
  free(pg->arena);
  memset(pg, 0, sizeof *pg);
}

int jnl_page_fits(jnl_page *pg, size_t len, int copy) {
  if (pg->n == 0) return 1;
  if (pg->n >= pg->cap) return 0;
  if (pg->tagcap - pg->ntag < TROUPE_JOURNAL_MAX_TAGS) return 0;
  if (copy && pg->arena_cap - pg->used < len) return 0;
  return 1;
}

int jnl_page_reserve(jnl_page *pg, size_t len) {
  if (pg->arena_cap - pg->used >= len) return 0;
  if (pg->n != 0 || pg->used != 0)
    return troupe__err(TROUPE_ENOMEM, "page arena full (internal)");
  /* empty page: nothing points into the arena, it may move */
  size_t want = len > PAGE_ARENA_MIN ? len : PAGE_ARENA_MIN;
  uint8_t *a = realloc(pg->arena, want);
  if (!a) return troupe__err(TROUPE_ENOMEM, "page arena");
  pg->arena = a;
  pg->arena_cap = want;
  return 0;
}

const char *jnl_page_keep(jnl_page *pg, const void *p, size_t len) {
  if (jnl_page_reserve(pg, len) < 0) return NULL;
  char *d = (char *)pg->arena + pg->used;
  memcpy(d, p, len);
  pg->used += len;
  return d;
}

int jnl_page_add(jnl_page *pg, const char *pid, uint64_t seq,
                     const uint8_t *rec, size_t len, int copy) {
  if (copy) {
    int rc = jnl_page_reserve(pg, len);
    if (rc < 0) return rc;
    memcpy(pg->arena + pg->used, rec, len);
    rec = pg->arena + pg->used;
    pg->used += len;
  }
  troupe_event *ev = &pg->ev[pg->n];
  int rc = jnl_rec_read(rec, len, ev, pg->tagv + pg->ntag);
  if (rc < 0) return rc;
  ev->persistence_id = pid;
  ev->seq = seq;
  pg->ntag += ev->ntags;
  pg->n++;
  return 0;
}

int jnl_batch_decode(const jnl_op *op, troupe_event **evp,
                         const char ***tagvp) {
  troupe_event *ev = malloc(op->n * sizeof *ev);
  const char **tagv = malloc(op->n * TROUPE_JOURNAL_MAX_TAGS * sizeof *tagv);
  *evp = ev;
  *tagvp = tagv;
  if (!ev || !tagv) return TROUPE_ENOMEM;
  const uint8_t *p = op->buf;
  size_t nt = 0;
  for (size_t i = 0; i < op->n; i++) {
    uint32_t len = jnl_rd32(p);
    int rc = jnl_rec_read(p + 4, len, &ev[i], tagv + nt);
    if (rc < 0) return rc;
    ev[i].persistence_id = op->pid;
    ev[i].seq = op->a + 1 + i;
    nt += ev[i].ntags;
    p += 4 + len;
  }
  return 0;
}
