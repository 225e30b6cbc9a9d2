/*
 * projection/offsets.c: the offset store interface, record encoding,
 * management requests, and the in-memory backend.
 */
#include "projection/internal.h"
#include "journal/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <time.h>

int (*pj_test_fault)(const char *where, uint64_t offset);

int64_t pj_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pj_valid_name(const char *name, size_t max) {
  if (!name || !*name) return 0;
  size_t n = 0;
  for (const char *c = name; *c; c++, n++) {
    if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '-')) return 0;
  }
  return n <= max;
}

/* An instance name: NAME or NAME@LO-HI. */
static int valid_instance(const char *name) {
  if (!name) return 0;
  const char *at = strchr(name, '@');
  if (!at) return pj_valid_name(name, TROUPE_PROJECTION_MAX_NAME);
  size_t n = (size_t)(at - name);
  if (n == 0 || n > TROUPE_PROJECTION_MAX_NAME) return 0;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum((unsigned char)name[i]) || name[i] == '_' || name[i] == '-'))
      return 0;
  unsigned lo, hi;
  char tail;
  return sscanf(at + 1, "%u-%u%c", &lo, &hi, &tail) == 2 && lo <= hi &&
         hi < TROUPE_JOURNAL_SLICES;
}

/* --- records ------------------------------------------------------------ */

static uint8_t *put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
  return p + 8;
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

#define PJ_ROW_FORMAT 1
#define PJ_ROW_FIXED (1 + 8 * 7)

size_t pj_row_encode(const pj_row *r, uint8_t *buf, size_t cap) {
  size_t ls = strnlen(r->source, sizeof r->source - 1);
  size_t le = strnlen(r->last_error, sizeof r->last_error - 1);
  size_t need = PJ_ROW_FIXED + 2 + ls + 2 + le;
  if (cap < need) return need;
  uint8_t *p = buf;
  *p++ = PJ_ROW_FORMAT;
  p = put64(p, r->offset);
  p = put64(p, r->ack_seq);
  p = put64(p, (uint64_t)r->state);
  p = put64(p, r->skipped);
  p = put64(p, r->lag_events);
  p = put64(p, (uint64_t)r->lag_ms);
  p = put64(p, (uint64_t)r->updated_ms);
  *p++ = (uint8_t)(ls >> 8); *p++ = (uint8_t)ls;
  memcpy(p, r->source, ls); p += ls;
  *p++ = (uint8_t)(le >> 8); *p++ = (uint8_t)le;
  memcpy(p, r->last_error, le); p += le;
  return (size_t)(p - buf);
}

int pj_row_decode(const uint8_t *p, size_t n, pj_row *r) {
  memset(r, 0, sizeof *r);
  if (n < PJ_ROW_FIXED + 4 || p[0] != PJ_ROW_FORMAT)
    return troupe__err(TROUPE_ECORRUPT, "projection offset record");
  const uint8_t *q = p + 1;
  r->offset = get64(q); q += 8;
  r->ack_seq = get64(q); q += 8;
  r->state = (int)get64(q); q += 8;
  r->skipped = get64(q); q += 8;
  r->lag_events = get64(q); q += 8;
  r->lag_ms = (int64_t)get64(q); q += 8;
  r->updated_ms = (int64_t)get64(q); q += 8;
  size_t ls = (size_t)q[0] << 8 | q[1]; q += 2;
  if (ls >= sizeof r->source || (size_t)(q - p) + ls + 2 > n)
    return troupe__err(TROUPE_ECORRUPT, "projection offset record");
  memcpy(r->source, q, ls); q += ls;
  size_t le = (size_t)q[0] << 8 | q[1]; q += 2;
  if (le >= sizeof r->last_error || (size_t)(q - p) + le > n)
    return troupe__err(TROUPE_ECORRUPT, "projection offset record");
  memcpy(r->last_error, q, le);
  return 0;
}

#define PJ_CTL_SIZE (1 + 1 + 8 + 1 + 8)
size_t pj_ctl_encode(const pj_ctl *c, uint8_t *buf) {
  uint8_t *p = buf;
  *p++ = PJ_ROW_FORMAT;
  *p++ = (uint8_t)(c->paused != 0);
  p = put64(p, c->req_seq);
  *p++ = (uint8_t)c->req_kind;
  put64(p, c->req_offset);
  return PJ_CTL_SIZE;
}

int pj_ctl_decode(const uint8_t *p, size_t n, pj_ctl *c) {
  memset(c, 0, sizeof *c);
  if (n != PJ_CTL_SIZE || p[0] != PJ_ROW_FORMAT)
    return troupe__err(TROUPE_ECORRUPT, "projection control record");
  c->paused = p[1];
  c->req_seq = get64(p + 2);
  c->req_kind = p[10];
  c->req_offset = get64(p + 11);
  return 0;
}

void pj_ctl_apply(pj_ctl *c, int op, uint64_t offset) {
  switch (op) {
    case TROUPE_PROJECTION_PAUSE: c->paused = 1; break;
    case TROUPE_PROJECTION_RESUME: c->paused = 0; break;
    case TROUPE_PROJECTION_REWIND:
    case TROUPE_PROJECTION_RESET:
      c->req_seq++;
      c->req_kind = op;
      c->req_offset = op == TROUPE_PROJECTION_RESET ? 0 : offset;
      break;
  }
}

/* --- PostgreSQL spec ----------------------------------------------------- */

int pj_pg_split_spec(const char *spec, char **conninfo, char schema[64]) {
  return jnl_pg_split_spec(strncmp(spec, "pg:", 3) == 0 ? spec + 3 : spec,
                           conninfo, schema);
}

/* --- public: stores ------------------------------------------------------ */

int troupe_offset_store_open(const char *spec, troupe_offset_store **out) {
  if (!out) return troupe__err(TROUPE_EINVAL, "troupe_offset_store_open: NULL out");
  *out = NULL;
  if (!spec) return troupe__err(TROUPE_EINVAL, "troupe_offset_store_open: NULL spec");
  const pj_store_vt *vt = NULL;
  const char *path = NULL;
  if (strncmp(spec, "memory:", 7) == 0) {
    vt = &pj_memory_vt; path = spec + 7;
  } else if (strncmp(spec, "rocksdb:", 8) == 0) {
    vt = &pj_rocksdb_vt; path = spec + 8;
    if (!*path) return troupe__err(TROUPE_EINVAL, "offset store: rocksdb: needs a directory");
  } else if (strncmp(spec, "postgresql://", 13) == 0 ||
             strncmp(spec, "postgres://", 11) == 0 ||
             strncmp(spec, "pg:", 3) == 0) {
    vt = &pj_pg_vt; path = spec;
  } else {
    return troupe__err(TROUPE_EINVAL,
                       "offset store spec \"%s\": expected memory:[NAME], "
                       "rocksdb:DIR, postgresql://URI or pg:CONNINFO", spec);
  }
  troupe_offset_store *os = calloc(1, sizeof *os);
  if (!os) return troupe__err(TROUPE_ENOMEM, "offset store");
  int rc = vt->open(path, &os->s);
  if (rc < 0) { free(os); return rc; }
  os->s->vt = vt;
  if (!(os->s->spec = strdup(spec))) {
    vt->close(os->s);
    free(os);
    return troupe__err(TROUPE_ENOMEM, "offset store");
  }
  *out = os;
  return 0;
}

void troupe_offset_store_close(troupe_offset_store *os) {
  if (!os) return;
  char *spec = os->s->spec;
  os->s->vt->close(os->s);
  free(spec);
  free(os);
}

static void to_info(const char *name, const pj_row *r, const pj_ctl *c,
                    troupe_projection_info *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->name, sizeof out->name, "%s", name);
  snprintf(out->source, sizeof out->source, "%s", r->source);
  out->offset = r->offset;
  out->paused = c->paused;
  out->state = (troupe_projection_state)r->state;
  out->skipped = r->skipped;
  out->lag_events = r->lag_events;
  out->lag_ms = r->lag_ms;
  out->updated_ms = r->updated_ms;
  out->pending = c->req_seq > r->ack_seq ? c->req_seq - r->ack_seq : 0;
  snprintf(out->last_error, sizeof out->last_error, "%s", r->last_error);
}

int troupe_projection_info_get(troupe_offset_store *os, const char *name,
                               troupe_projection_info *out) {
  if (!os || !out) return troupe__err(TROUPE_EINVAL, "projection info: NULL argument");
  if (!valid_instance(name))
    return troupe__err(TROUPE_EINVAL, "projection info: bad name");
  pj_row r;
  pj_ctl c;
  int rc = os->s->vt->get(os->s, name, &r, &c);
  if (rc < 0) {
    if (rc == TROUPE_ENOENT)
      return troupe__err(TROUPE_ENOENT, "no projection \"%s\" in %s", name,
                         os->s->spec);
    return rc;
  }
  to_info(name, &r, &c, out);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

int troupe_projection_list(troupe_offset_store *os,
                           troupe_projection_info **out, size_t *n) {
  if (!os || !out || !n) return troupe__err(TROUPE_EINVAL, "projection list: NULL argument");
  *out = NULL;
  *n = 0;
  char **names = NULL;
  size_t nn = 0;
  int rc = os->s->vt->list(os->s, &names, &nn);
  if (rc < 0) return rc;
  qsort(names, nn, sizeof *names, cmp_str);
  troupe_projection_info *v = calloc(nn ? nn : 1, sizeof *v);
  if (!v) {
    free_names(names, nn);
    return troupe__err(TROUPE_ENOMEM, "projection list");
  }
  size_t k = 0;
  for (size_t i = 0; i < nn; i++) {
    pj_row r;
    pj_ctl c;
    rc = os->s->vt->get(os->s, names[i], &r, &c);
    if (rc == TROUPE_ENOENT) continue;
    if (rc < 0) {
      free(v);
      free_names(names, nn);
      return rc;
    }
    to_info(names[i], &r, &c, &v[k++]);
  }
  free_names(names, nn);
  *out = v;
  *n = k;
  return 0;
}

int troupe_projection_request(troupe_offset_store *os, const char *name,
                              troupe_projection_op op, uint64_t offset) {
  if (!os) return troupe__err(TROUPE_EINVAL, "projection request: NULL store");
  if (!valid_instance(name))
    return troupe__err(TROUPE_EINVAL, "projection request: bad name");
  if (op < TROUPE_PROJECTION_PAUSE || op > TROUPE_PROJECTION_RESET)
    return troupe__err(TROUPE_EINVAL, "projection request: bad op %d", (int)op);
  if (strchr(name, '@')) return os->s->vt->request(os->s, name, op, offset);
  /* a plain name: that instance and every sliced one of it */
  char **names = NULL;
  size_t nn = 0;
  int rc = os->s->vt->list(os->s, &names, &nn);
  if (rc < 0) return rc;
  size_t len = strlen(name);
  int any = 0;
  for (size_t i = 0; rc == 0 && i < nn; i++) {
    if (strncmp(names[i], name, len) == 0 && names[i][len] == '@') {
      rc = os->s->vt->request(os->s, names[i], op, offset);
      any = 1;
    }
  }
  free_names(names, nn);
  if (rc < 0) return rc;
  /* the plain instance itself (created when missing: a projection that has
   * not run yet finds the request when it starts) unless only sliced ones
   * exist */
  if (!any) return os->s->vt->request(os->s, name, op, offset);
  pj_row r;
  pj_ctl c;
  if (os->s->vt->get(os->s, name, &r, &c) == 0)
    return os->s->vt->request(os->s, name, op, offset);
  return 0;
}

/* --- the memory backend --------------------------------------------------
 * "memory:" is private to the handle; "memory:NAME" is shared by every
 * handle opened on NAME while one is open (like the memory journal). */

typedef struct mem_entry {
  char *name;
  int has_row, has_ctl;
  pj_row row;
  pj_ctl ctl;
  struct mem_entry *next;
} mem_entry;

typedef struct mem_data {
  char *key;               /* NULL: private */
  int refs;
  pthread_mutex_t mu;
  mem_entry *entries;
  struct mem_data *reg_next;
} mem_data;

typedef struct mem_store {
  pj_store base;
  mem_data *d;
} mem_store;

typedef struct mem_session {
  pj_session base;
  pj_row pending;          /* nothing to stage: commits are immediate */
} mem_session;

static pthread_mutex_t mem_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static mem_data *mem_reg;

static int mem_open(const char *path, pj_store **out) {
  mem_store *m = calloc(1, sizeof *m);
  if (!m) return troupe__err(TROUPE_ENOMEM, "offset store");
  m->base.kind = PJ_MEMORY;
  pthread_mutex_lock(&mem_reg_mu);
  mem_data *d = NULL;
  if (*path)
    for (d = mem_reg; d && strcmp(d->key, path) != 0; d = d->reg_next) {}
  if (!d) {
    d = calloc(1, sizeof *d);
    if (!d || (*path && !(d->key = strdup(path)))) {
      pthread_mutex_unlock(&mem_reg_mu);
      free(d);
      free(m);
      return troupe__err(TROUPE_ENOMEM, "offset store");
    }
    pthread_mutex_init(&d->mu, NULL);
    if (d->key) { d->reg_next = mem_reg; mem_reg = d; }
  }
  d->refs++;
  pthread_mutex_unlock(&mem_reg_mu);
  m->d = d;
  *out = &m->base;
  return 0;
}

static void mem_close(pj_store *s) {
  mem_store *m = (mem_store *)s;
  mem_data *d = m->d;
  pthread_mutex_lock(&mem_reg_mu);
  int last = --d->refs == 0;
  if (last && d->key) {
    for (mem_data **pp = &mem_reg; *pp; pp = &(*pp)->reg_next)
      if (*pp == d) { *pp = d->reg_next; break; }
  }
  pthread_mutex_unlock(&mem_reg_mu);
  if (last) {
    for (mem_entry *e = d->entries, *nx; e; e = nx) {
      nx = e->next;
      free(e->name);
      free(e);
    }
    pthread_mutex_destroy(&d->mu);
    free(d->key);
    free(d);
  }
  free(m);
}

/* d->mu held */
static mem_entry *mem_find(mem_data *d, const char *name, int create) {
  for (mem_entry *e = d->entries; e; e = e->next)
    if (strcmp(e->name, name) == 0) return e;
  if (!create) return NULL;
  mem_entry *e = calloc(1, sizeof *e);
  if (!e || !(e->name = strdup(name))) { free(e); return NULL; }
  e->next = d->entries;
  d->entries = e;
  return e;
}

static int mem_get(pj_store *s, const char *name, pj_row *row, pj_ctl *ctl) {
  mem_data *d = ((mem_store *)s)->d;
  memset(row, 0, sizeof *row);
  memset(ctl, 0, sizeof *ctl);
  pthread_mutex_lock(&d->mu);
  mem_entry *e = mem_find(d, name, 0);
  if (e) { *row = e->row; *ctl = e->ctl; }
  pthread_mutex_unlock(&d->mu);
  return e ? 0 : TROUPE_ENOENT;
}

static int mem_list(pj_store *s, char ***names, size_t *n) {
  mem_data *d = ((mem_store *)s)->d;
  pthread_mutex_lock(&d->mu);
  size_t k = 0;
  for (mem_entry *e = d->entries; e; e = e->next) k++;
  char **v = calloc(k ? k : 1, sizeof *v);
  size_t i = 0;
  for (mem_entry *e = d->entries; v && e; e = e->next) {
    if (!(v[i] = strdup(e->name))) break;
    i++;
  }
  pthread_mutex_unlock(&d->mu);
  if (!v || i != k) {
    if (v) free_names(v, i);
    return troupe__err(TROUPE_ENOMEM, "projection list");
  }
  *names = v;
  *n = k;
  return 0;
}

static int mem_request(pj_store *s, const char *name, int op, uint64_t off) {
  mem_data *d = ((mem_store *)s)->d;
  pthread_mutex_lock(&d->mu);
  mem_entry *e = mem_find(d, name, 1);
  if (e) { pj_ctl_apply(&e->ctl, op, off); e->has_ctl = 1; }
  pthread_mutex_unlock(&d->mu);
  return e ? 0 : troupe__err(TROUPE_ENOMEM, "projection request");
}

static int mem_session_open(pj_store *s, pj_session **out) {
  mem_session *ms = calloc(1, sizeof *ms);
  if (!ms) return troupe__err(TROUPE_ENOMEM, "offset store session");
  ms->base.store = s;
  *out = &ms->base;
  return 0;
}

static void mem_session_close(pj_session *ss) { free(ss); }

static int mem_load(pj_session *ss, const char *name, pj_row *row,
                    pj_ctl *ctl) {
  return mem_get(ss->store, name, row, ctl);
}

static int mem_begin(pj_session *ss, const char *name, int check,
                     uint64_t expect) {
  if (!check) return 0;
  pj_row r;
  pj_ctl c;
  int rc = mem_get(ss->store, name, &r, &c);
  if (rc == TROUPE_ENOENT) r.offset = 0;
  else if (rc < 0) return rc;
  if (r.offset != expect)
    return troupe__err(TROUPE_ECONFLICT,
                       "projection %s: stored offset %llu, expected %llu",
                       name, (unsigned long long)r.offset,
                       (unsigned long long)expect);
  return 0;
}

static int mem_commit(pj_session *ss, const char *name, const pj_row *row) {
  mem_data *d = ((mem_store *)ss->store)->d;
  pthread_mutex_lock(&d->mu);
  mem_entry *e = mem_find(d, name, 1);
  if (e) { e->row = *row; e->has_row = 1; }
  pthread_mutex_unlock(&d->mu);
  return e ? 0 : troupe__err(TROUPE_ENOMEM, "projection commit");
}

static void mem_abort(pj_session *ss) { (void)ss; }

static int mem_publish(pj_session *ss, const char *name, const pj_row *row) {
  mem_data *d = ((mem_store *)ss->store)->d;
  pthread_mutex_lock(&d->mu);
  mem_entry *e = mem_find(d, name, 1);
  if (e) {
    uint64_t off = e->row.offset, ack = e->row.ack_seq;
    e->row = *row;
    e->row.offset = off;
    e->row.ack_seq = ack;
    e->has_row = 1;
  }
  pthread_mutex_unlock(&d->mu);
  return e ? 0 : troupe__err(TROUPE_ENOMEM, "projection publish");
}

const pj_store_vt pj_memory_vt = {
  .name = "memory",
  .open = mem_open,
  .close = mem_close,
  .get = mem_get,
  .list = mem_list,
  .request = mem_request,
  .session_open = mem_session_open,
  .session_close = mem_session_close,
  .load = mem_load,
  .begin = mem_begin,
  .commit = mem_commit,
  .abort = mem_abort,
  .publish = mem_publish,
};
