/* rocksdb.c: the embedded RocksDB backend ("rocksdb:/path/dir").
 *
 * Layout (format version 2), one column family per purpose, every integer
 * in a key big-endian so keys sort numerically:
 *
 *   meta       "format" -> u32 (2); "last-id" -> u64; "offset" -> u64;
 *              "migrate-2-offsets" -> u64 id | u64 seq while the 1 -> 2
 *              step runs (the last event indexed)
 *   ids        persistence id bytes -> u64 id | u8 journal (1 once it has
 *              had an event; list_ids shows only those)
 *   streams    u64 id -> u64 deleted_to | u64 highest at last delete | id
 *              bytes
 *   events     u64 id | u64 seq -> event record (record.c)
 *   tags       tag bytes | 0x00 | u64 offset -> u64 id | u64 seq
 *   offsets    u64 offset -> u32 slice | u64 id | u64 seq (format 2)
 *   snapshots  u64 id | u64 seq -> snapshot value
 *   state      u64 id -> state value
 *
 * Format 1 is the same without "offsets". Opening accepts only format 2
 * with exactly these column families; anything else is refused with
 * TROUPE_ESCHEMA after reading its format key read-only (older: run
 * `troupe journal migrate`; newer: upgrade troupe). A store is created
 * only where there is nothing, or an empty bare RocksDB database, and only
 * with create_if_missing. rdb_migrate runs the ordered steps (mig_steps),
 * each writing the new format key last.
 *
 * by_slice walks "offsets" from after+1 and filters by the slice in each
 * entry (20 bytes, no event read for other slices). A (slice, offset)
 * index would let a narrow range skip the others' entries, but costs a
 * second index entry per event on the write path and a merge of up to
 * 1024 iterators for wide ranges; projections usually split the slices
 * into a few wide ranges, for which the filter reads little more than it
 * returns. docs/journal.md has the measured cost.
 *
 * Threads. One writer thread owns every write: it drains the queue of
 * submitted writes, checks each against its cache of stream heads, puts
 * all of them into one WriteBatch (events, tag and offset entries, the new
 * global offset), writes it with one WAL sync (when sync is on), then
 * notifies subscribers and runs the completions in order. Offsets are
 * assigned by that one thread in commit order, and each batch becomes
 * visible atomically, so readers never see a later offset before an
 * earlier one. Reads run on a pool of reader threads with their own
 * iterators (each an implicit consistent snapshot), so a long replay never
 * stalls the writer; by_tag and by_slice read the index and the events it
 * names at one explicit snapshot.
 */
#include "journal/internal.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <sched.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FORMAT_VERSION 2u
#define GROUP_MAX_OPS 8192
#define GROUP_MAX_BYTES (32u << 20)
#define OFFSET_VAL_LEN 20          /* u32 slice | u64 id | u64 seq */
#define REPLAY_READAHEAD (256u << 10)
/* How long the writer looks for more work after a group before it parks.
 * An entity persisting alone submits its next append some tens of
 * microseconds after its completion; parking at once made every append
 * also pay the writer's wake-up (futex wake and reschedule). The spin
 * yields the CPU, so on a busy machine it costs the threads it waits
 * for little. Measured: one entity, sync off, 20-24k -> 34k events/s;
 * with sync on the fsync dominates and the disk's noise hides it. */
#define WRITER_SPIN_NS 100000L

enum { CF_DEFAULT, CF_META, CF_IDS, CF_STREAMS, CF_EVENTS, CF_TAGS,
       CF_SNAPSHOTS, CF_STATE, CF_OFFSETS, NCF };
static const char *const cf_names[NCF] = {
    "default", "meta", "ids", "streams", "events", "tags", "snapshots",
    "state", "offsets"};
/* Column families of format 1 (all but "offsets"). */
#define NCF_V1 CF_OFFSETS

typedef struct rdb_stream {
  uint64_t id;
  uint64_t head;
  uint64_t deleted_to;
  int journal;
  int state_loaded;
  uint64_t rev;
  uint32_t slice;
  size_t len;
  char name[];
} rdb_stream;

typedef struct rdb_store rdb_store;

/* Persistence id names by interned id, per reader thread. An id is never
 * reused for another name once committed (and readers only see committed
 * ones), so entries stay valid for the life of the store. */
#define NC_SLOTS 1024
typedef struct name_cache {
  uint64_t id[NC_SLOTS];
  char *name[NC_SLOTS];
} name_cache;

typedef struct rdb_reader {
  rdb_store *r;
  pthread_t thread;
  jnl_page page;
  name_cache *nc;
} rdb_reader;

struct rdb_store {
  jnl_store base;
  char *path;
  rocksdb_t *db;
  rocksdb_options_t *dbopts;
  rocksdb_options_t *evopts;     /* the events column family's, or NULL */
  rocksdb_block_based_table_options_t *topts;
  rocksdb_cache_t *cache;
  rocksdb_column_family_handle_t *cf[NCF];
  rocksdb_writeoptions_t *wo;
  rocksdb_readoptions_t *ro;
  /* writer queue */
  pthread_t writer;
  int writer_started;
  pthread_mutex_t wmu;
  pthread_cond_t wcv;
  jnl_op *whead, **wtail;
  int wstop;
  atomic_int wqueued;    /* whead is not empty (read without wmu) */
  /* reader queue */
  rdb_reader *readers;
  uint32_t nreaders;
  pthread_mutex_t rmu;
  pthread_cond_t rcv;
  jnl_op *rhead, **rtail;
  int rstop;
  /* writer thread only */
  jnl_hmap cache_map;
  rdb_stream **streams;
  size_t nstreams, streams_cap;
  uint64_t last_id, offset;
  rocksdb_writebatch_t *wb;
};

/* --- errors ------------------------------------------------------------- */

static int rdb_code(const char *msg) {
  if (strncmp(msg, "Corruption", 10) == 0) return TROUPE_ECORRUPT;
  if (strstr(msg, "does not exist")) return TROUPE_ENOENT;
  if (strstr(msg, "lock") || strstr(msg, "LOCK")) {
    if (strstr(msg, "temporarily unavailable") || strstr(msg, "No locks") ||
        strstr(msg, "already held"))
      return TROUPE_EBUSY;
  }
  if (strncmp(msg, "Resource busy", 13) == 0) return TROUPE_EBUSY;
  if (strncmp(msg, "Not implemented", 15) == 0) return TROUPE_EUNSUPPORTED;
  if (strncmp(msg, "Invalid argument", 16) == 0) return TROUPE_EINVAL;
  return TROUPE_EIO;
}

/* Convert and free a RocksDB errptr; the detail goes to this thread. */
static int rdb_err(char *err, const char *what) {
  int code = rdb_code(err);
  troupe__err(code, "rocksdb %s: %s", what, err);
  rocksdb_free(err);
  return code;
}

static void op_rdb_fail(jnl_op *op, char *err, const char *what) {
  jnl_op_fail(op, rdb_code(err), "rocksdb %s: %s", what, err);
  rocksdb_free(err);
}

/* --- keys ---------------------------------------------------------------- */

static inline void key2(uint8_t k[16], uint64_t id, uint64_t seq) {
  jnl_be64(k, id);
  jnl_be64(k + 8, seq);
}

/* [key(id,from), key(id,to)+1): to == UINT64_MAX means to the next id */
static void bounds(uint8_t lo[16], uint8_t hi[16], uint64_t id, uint64_t from,
                   uint64_t to) {
  key2(lo, id, from);
  if (to == UINT64_MAX) key2(hi, id + 1, 0);
  else key2(hi, id, to + 1);
}

static rocksdb_iterator_t *range_iter(rdb_store *r, rocksdb_readoptions_t *ro,
                                      int cf, const uint8_t *lo, size_t lolen,
                                      const uint8_t *hi, size_t hilen) {
  rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo, lolen);
  rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, hilen);
  return rocksdb_create_iterator_cf(r->db, ro, r->cf[cf]);
}

/* Look up the interned id of a persistence id: 1 found, 0 not, < 0 error
 * (detail on this thread). */
static int lookup_id(rdb_store *r, const rocksdb_readoptions_t *ro,
                     const char *pid, size_t len, uint64_t *id,
                     int *journal) {
  char *err = NULL;
  size_t vl;
  char *v = rocksdb_get_cf(r->db, ro, r->cf[CF_IDS], pid, len, &vl, &err);
  if (err) return rdb_err(err, "get id");
  if (!v) return 0;
  int ok = vl == 9;
  if (ok) {
    *id = jnl_rd64((const uint8_t *)v);
    if (journal) *journal = v[8];
  }
  rocksdb_free(v);
  if (!ok) return troupe__err(TROUPE_ECORRUPT, "id entry of \"%s\"", pid);
  return 1;
}

/* Highest seq stored in the events CF for id (0 when none). */
static int last_seq(rdb_store *r, const rocksdb_snapshot_t *snap,
                    uint64_t id, uint64_t *seq) {
  uint8_t lo[16], hi[16];
  bounds(lo, hi, id, 0, UINT64_MAX);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  if (snap) rocksdb_readoptions_set_snapshot(ro, snap);
  rocksdb_iterator_t *it = range_iter(r, ro, CF_EVENTS, lo, 16, hi, 16);
  rocksdb_iter_seek_to_last(it);
  *seq = 0;
  if (rocksdb_iter_valid(it)) {
    size_t kl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    if (kl == 16) *seq = jnl_rd64(k + 8);
  }
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  return err ? rdb_err(err, "seek last event") : 0;
}

/* The stream record: deleted_to and the highest at the last delete. */
static int stream_rec(rdb_store *r, const rocksdb_readoptions_t *ro,
                      uint64_t id, uint64_t *deleted_to, uint64_t *mark) {
  uint8_t k[8];
  jnl_be64(k, id);
  char *err = NULL;
  size_t vl;
  char *v = rocksdb_get_cf(r->db, ro, r->cf[CF_STREAMS], (const char *)k, 8,
                           &vl, &err);
  if (err) return rdb_err(err, "get stream");
  *deleted_to = *mark = 0;
  if (!v) return troupe__err(TROUPE_ECORRUPT, "stream %llu has no record",
                             (unsigned long long)id);
  if (vl >= 16) {
    *deleted_to = jnl_rd64((const uint8_t *)v);
    *mark = jnl_rd64((const uint8_t *)v + 8);
  }
  rocksdb_free(v);
  return vl >= 16 ? 0 : troupe__err(TROUPE_ECORRUPT, "stream record");
}

static void put_stream_rec(rdb_store *r, rdb_stream *s, uint64_t deleted_to,
                           uint64_t mark) {
  uint8_t k[8];
  jnl_be64(k, s->id);
  uint8_t *v = malloc(16 + s->len);
  if (!v) return;
  jnl_be64(v, deleted_to);
  jnl_be64(v + 8, mark);
  memcpy(v + 16, s->name, s->len);
  rocksdb_writebatch_put_cf(r->wb, r->cf[CF_STREAMS], (const char *)k, 8,
                            (const char *)v, 16 + s->len);
  free(v);
}

static void put_id(rdb_store *r, rdb_stream *s) {
  uint8_t v[9];
  jnl_be64(v, s->id);
  v[8] = (uint8_t)s->journal;
  rocksdb_writebatch_put_cf(r->wb, r->cf[CF_IDS], s->name, s->len,
                            (const char *)v, 9);
}

/* --- writer -------------------------------------------------------------- */

static void cache_clear(rdb_store *r) {
  for (size_t i = 0; i < r->nstreams; i++) free(r->streams[i]);
  r->nstreams = 0;
  jnl_hmap_free(&r->cache_map);
}

static int get_meta_u64(rdb_store *r, const char *key, uint64_t *out) {
  char *err = NULL;
  size_t vl;
  char *v = rocksdb_get_cf(r->db, r->ro, r->cf[CF_META], key, strlen(key),
                           &vl, &err);
  if (err) return rdb_err(err, "get meta");
  *out = 0;
  if (v && vl == 8) *out = jnl_rd64((const uint8_t *)v);
  int bad = v && vl != 8;
  rocksdb_free(v);
  return bad ? troupe__err(TROUPE_ECORRUPT, "meta key %s", key) : 0;
}

static int load_counters(rdb_store *r) {
  int rc = get_meta_u64(r, "last-id", &r->last_id);
  if (rc == 0) rc = get_meta_u64(r, "offset", &r->offset);
  return rc;
}

static void put_meta_u64(rdb_store *r, const char *key, uint64_t v) {
  uint8_t b[8];
  jnl_be64(b, v);
  rocksdb_writebatch_put_cf(r->wb, r->cf[CF_META], key, strlen(key),
                            (const char *)b, 8);
}

/* The writer's cached stream for op->pid; created (in the batch) when
 * `create`. NULL with *rc == 0: no such stream. */
static rdb_stream *w_stream(rdb_store *r, jnl_op *op, int create,
                            int *rc) {
  *rc = 0;
  uint64_t h = jnl_hash(op->pid, op->pid_len);
  rdb_stream *s = jnl_hmap_get(&r->cache_map, op->pid, op->pid_len, h);
  if (s) return s;
  uint64_t id = 0, deleted_to = 0, mark = 0, last = 0;
  int journal = 0;
  int found = lookup_id(r, r->ro, op->pid, op->pid_len, &id, &journal);
  if (found < 0) {
    *rc = found;
    return NULL;
  }
  if (found) {
    if ((*rc = stream_rec(r, r->ro, id, &deleted_to, &mark)) < 0 ||
        (*rc = last_seq(r, NULL, id, &last)) < 0)
      return NULL;
  } else if (!create) {
    return NULL;
  }
  if (r->nstreams == r->streams_cap) {
    size_t cap = r->streams_cap ? r->streams_cap * 2 : 256;
    rdb_stream **a = realloc(r->streams, cap * sizeof *a);
    if (!a) {
      *rc = troupe__err(TROUPE_ENOMEM, "stream cache");
      return NULL;
    }
    r->streams = a;
    r->streams_cap = cap;
  }
  s = calloc(1, sizeof *s + op->pid_len + 1);
  if (!s) {
    *rc = troupe__err(TROUPE_ENOMEM, "stream cache");
    return NULL;
  }
  memcpy(s->name, op->pid, op->pid_len + 1);
  s->len = op->pid_len;
  s->slice = jnl_slice(s->name, s->len);
  if (jnl_hmap_put(&r->cache_map, s->name, s->len, h, s) < 0) {
    free(s);
    *rc = TROUPE_ENOMEM;
    return NULL;
  }
  r->streams[r->nstreams++] = s;
  if (found) {
    s->id = id;
    s->journal = journal;
    s->deleted_to = deleted_to;
    s->head = last > mark ? last : mark;
  } else {
    s->id = ++r->last_id;
    put_id(r, s);
    put_stream_rec(r, s, 0, 0);
    put_meta_u64(r, "last-id", r->last_id);
  }
  return s;
}

static void w_append(rdb_store *r, jnl_op *op) {
  int rc;
  rdb_stream *s = w_stream(r, op, 1, &rc);
  if (!s) return jnl_op_fail(op, rc, "%s", troupe_errmsg());
  if (s->head != op->a) {
    op->r0 = s->head;
    return jnl_op_fail(op, TROUPE_ECONFLICT,
                           "append to \"%s\" expected seq %llu, head is %llu",
                           op->pid, (unsigned long long)op->a,
                           (unsigned long long)s->head);
  }
  if (!s->journal) {
    s->journal = 1;
    put_id(r, s);
  }
  uint8_t *p = op->buf;
  uint8_t k[16], tk[TROUPE_JOURNAL_MAX_TAG_LEN + 9], tv[16];
  uint8_t ok[8], ov[OFFSET_VAL_LEN];
  const char *tagv[TROUPE_JOURNAL_MAX_TAGS];
  jnl_be32(ov, s->slice);
  jnl_be64(ov + 4, s->id);
  for (size_t i = 0; i < op->n; i++) {
    uint32_t len = jnl_rd32(p);
    uint8_t *rec = p + 4;
    uint64_t seq = s->head + 1 + i, off = ++r->offset;
    jnl_be64(rec + JNL_REC_OFFSET_AT, off);
    key2(k, s->id, seq);
    rocksdb_writebatch_put_cf(r->wb, r->cf[CF_EVENTS], (const char *)k, 16,
                              (const char *)rec, len);
    jnl_be64(ok, off);
    jnl_be64(ov + 12, seq);
    rocksdb_writebatch_put_cf(r->wb, r->cf[CF_OFFSETS], (const char *)ok, 8,
                              (const char *)ov, OFFSET_VAL_LEN);
    troupe_event ev;
    if (jnl_rec_read(rec, len, &ev, tagv) == 0 && ev.ntags) {
      key2(tv, s->id, seq);
      for (size_t t = 0; t < ev.ntags; t++) {
        size_t tl = strlen(ev.tags[t]);
        memcpy(tk, ev.tags[t], tl + 1);
        jnl_be64(tk + tl + 1, off);
        rocksdb_writebatch_put_cf(r->wb, r->cf[CF_TAGS], (const char *)tk,
                                  tl + 9, (const char *)tv, 16);
      }
    }
    p += 4 + len;
  }
  s->head += op->n;
  op->r0 = s->head;
}

static int w_write(rdb_store *r, const char *what, jnl_op *op) {
  char *err = NULL;
  rocksdb_write(r->db, r->wo, r->wb, &err);
  rocksdb_writebatch_clear(r->wb);
  if (!err) return 0;
  int code = rdb_code(err);
  if (op) jnl_op_fail(op, code, "rocksdb %s: %s", what, err);
  else troupe__err(code, "rocksdb %s: %s", what, err);
  rocksdb_free(err);
  /* the cache may hold heads of writes that never happened */
  cache_clear(r);
  load_counters(r);
  return code;
}

/* Delete events up to op->a: their tag entries, then the events; the
 * stream record keeps the highest. Runs alone in its batch. */
static void w_delete(rdb_store *r, jnl_op *op) {
  int rc;
  rdb_stream *s = w_stream(r, op, 0, &rc);
  if (!s) {
    if (rc < 0) jnl_op_fail(op, rc, "%s", troupe_errmsg());
    return;
  }
  uint64_t to = op->a < s->head ? op->a : s->head;
  op->r0 = s->deleted_to;
  if (to <= s->deleted_to) return;
  uint8_t lo[16], hi[16], tk[TROUPE_JOURNAL_MAX_TAG_LEN + 9];
  bounds(lo, hi, s->id, s->deleted_to + 1, to);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_iterator_t *it = range_iter(r, ro, CF_EVENTS, lo, 16, hi, 16);
  const char *tagv[TROUPE_JOURNAL_MAX_TAGS];
  for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(it, &kl);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    troupe_event ev;
    if (jnl_rec_read(v, vl, &ev, tagv) == 0) {
      for (size_t t = 0; t < ev.ntags; t++) {
        size_t tl = strlen(ev.tags[t]);
        memcpy(tk, ev.tags[t], tl + 1);
        jnl_be64(tk + tl + 1, ev.offset);
        rocksdb_writebatch_delete_cf(r->wb, r->cf[CF_TAGS], (const char *)tk,
                                     tl + 9);
      }
      uint8_t ok[8];
      jnl_be64(ok, ev.offset);
      rocksdb_writebatch_delete_cf(r->wb, r->cf[CF_OFFSETS], (const char *)ok,
                                   8);
    }
    rocksdb_writebatch_delete_cf(r->wb, r->cf[CF_EVENTS], k, kl);
  }
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (err) {
    rocksdb_writebatch_clear(r->wb);
    return op_rdb_fail(op, err, "delete: scan");
  }
  put_stream_rec(r, s, to, s->head);
  if (w_write(r, "delete", op) == 0) {
    /* s is still cached (w_write only clears the cache on failure) */
    s->deleted_to = to;
    op->r0 = to;
  }
}

static void w_snap_save(rdb_store *r, jnl_op *op) {
  int rc;
  rdb_stream *s = w_stream(r, op, 1, &rc);
  if (!s) return jnl_op_fail(op, rc, "%s", troupe_errmsg());
  uint8_t k[16];
  key2(k, s->id, op->a);
  rocksdb_writebatch_put_cf(r->wb, r->cf[CF_SNAPSHOTS], (const char *)k, 16,
                            (const char *)op->buf, op->buf_len);
}

/* Snapshot delete by criteria, or retention; runs alone in its batch. */
static void w_snap_delete(rdb_store *r, jnl_op *op) {
  int rc;
  rdb_stream *s = w_stream(r, op, 0, &rc);
  if (!s) {
    if (rc < 0) jnl_op_fail(op, rc, "%s", troupe_errmsg());
    return;
  }
  int retain = op->kind == JNL_OP_SNAP_RETAIN;
  uint8_t lo[16], hi[16];
  if (retain) bounds(lo, hi, s->id, 0, UINT64_MAX);
  else bounds(lo, hi, s->id, op->a, op->b);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_iterator_t *it = range_iter(r, ro, CF_SNAPSHOTS, lo, 16, hi, 16);
  uint64_t seen = 0;
  for (rocksdb_iter_seek_to_last(it); rocksdb_iter_valid(it);
       rocksdb_iter_prev(it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(it, &kl);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    int del;
    if (retain) {
      del = ++seen > op->c;
    } else {
      troupe_snapshot sn;
      del = jnl_snap_read(v, vl, &sn) == 0 && sn.timestamp_ms >= op->t0 &&
            sn.timestamp_ms <= op->t1;
    }
    if (del) {
      rocksdb_writebatch_delete_cf(r->wb, r->cf[CF_SNAPSHOTS], k, kl);
      op->r0++;
    }
  }
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (err) {
    rocksdb_writebatch_clear(r->wb);
    op->r0 = 0;
    return op_rdb_fail(op, err, "snapshot delete: scan");
  }
  if (op->r0 && w_write(r, "snapshot delete", op) < 0) op->r0 = 0;
}

static int w_state_rev(rdb_store *r, rdb_stream *s) {
  if (s->state_loaded) return 0;
  uint8_t k[8];
  jnl_be64(k, s->id);
  char *err = NULL;
  size_t vl;
  char *v = rocksdb_get_cf(r->db, r->ro, r->cf[CF_STATE], (const char *)k, 8,
                           &vl, &err);
  if (err) return rdb_err(err, "get state");
  s->rev = 0;
  if (v) {
    troupe_state_record rec;
    int rc = jnl_state_read((const uint8_t *)v, vl, &rec);
    rocksdb_free(v);
    if (rc < 0) return rc;
    s->rev = rec.revision;
  }
  s->state_loaded = 1;
  return 0;
}

static void w_state(rdb_store *r, jnl_op *op) {
  int rc, put = op->kind == JNL_OP_STATE_PUT;
  rdb_stream *s = w_stream(r, op, put, &rc);
  if (!s && rc < 0) return jnl_op_fail(op, rc, "%s", troupe_errmsg());
  if (s && (rc = w_state_rev(r, s)) < 0)
    return jnl_op_fail(op, rc, "%s", troupe_errmsg());
  uint64_t rev = s ? s->rev : 0;
  if (put ? rev != op->a : (op->a != 0 && rev != op->a)) {
    op->r0 = rev;
    return jnl_op_fail(op, TROUPE_ECONFLICT,
                           "state of \"%s\": expected revision %llu, is %llu",
                           op->pid, (unsigned long long)op->a,
                           (unsigned long long)rev);
  }
  uint8_t k[8];
  if (put) {
    jnl_be64(k, s->id);
    rocksdb_writebatch_put_cf(r->wb, r->cf[CF_STATE], (const char *)k, 8,
                              (const char *)op->buf, op->buf_len);
    s->rev = op->r0 = op->a + 1;
  } else {
    op->r0 = rev;
    if (rev) {
      jnl_be64(k, s->id);
      rocksdb_writebatch_delete_cf(r->wb, r->cf[CF_STATE], (const char *)k, 8);
      s->rev = 0;
    }
  }
}

static int runs_alone(int kind) {
  return kind == JNL_OP_DELETE || kind == JNL_OP_SNAP_DELETE ||
         kind == JNL_OP_SNAP_RETAIN;
}

static void finish_group(rdb_store *r, jnl_op *first, jnl_op *stop,
                         int wrote) {
  (void)wrote;
  for (jnl_op *op = first; op != stop;) {
    jnl_op *next = op->next;
    if (op->kind == JNL_OP_APPEND && op->status == 0 &&
        atomic_load(&r->base.nsubs)) {
      troupe_event *ev;
      const char **tv;
      if (jnl_batch_decode(op, &ev, &tv) == 0)
        jnl_notify(&r->base, ev, op->n);
      free(ev);
      free(tv);
    }
    jnl_op_complete(op);
    op = next;
  }
}

/* Process ops from *list: one group committed with one write, or one
 * op that runs alone. Advances *list past what was done. */
static void run_group(rdb_store *r, jnl_op **list) {
  jnl_op *first = *list, *op = first;
  if (runs_alone(op->kind)) {
    *list = op->next;
    if (op->kind == JNL_OP_DELETE) w_delete(r, op);
    else w_snap_delete(r, op);
    op->next = NULL;
    finish_group(r, op, NULL, 1);
    return;
  }
  uint64_t off0 = r->offset;
  size_t nops = 0, bytes = 0;
  for (; op && !runs_alone(op->kind) && nops < GROUP_MAX_OPS &&
         bytes < GROUP_MAX_BYTES;
       op = op->next, nops++) {
    bytes += op->buf_len;
    switch (op->kind) {
    case JNL_OP_APPEND: w_append(r, op); break;
    case JNL_OP_SNAP_SAVE: w_snap_save(r, op); break;
    default: w_state(r, op); break;
    }
  }
  *list = op;
  if (r->offset != off0) put_meta_u64(r, "offset", r->offset);
  if (rocksdb_writebatch_count(r->wb) > 0) {
    char *err = NULL;
    rocksdb_write(r->db, r->wo, r->wb, &err);
    rocksdb_writebatch_clear(r->wb);
    if (err) {
      int code = rdb_code(err);
      for (jnl_op *o = first; o != op; o = o->next)
        if (o->status == 0) {
          jnl_op_fail(o, code, "rocksdb write: %s", err);
          o->r0 = 0;
        }
      rocksdb_free(err);
      cache_clear(r);
      load_counters(r);
    }
  }
  finish_group(r, first, op, 1);
}

/* Wait up to WRITER_SPIN_NS for a write to be queued, yielding the CPU
 * meanwhile; true when one was. */
static int writer_spin(rdb_store *r) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    for (int i = 0; i < 8; i++) {
      if (atomic_load_explicit(&r->wqueued, memory_order_acquire)) return 1;
      sched_yield();
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) >
        WRITER_SPIN_NS)
      return 0;
  }
}

static void *writer_main(void *arg) {
  rdb_store *r = arg;
  jnl_in_store_thread = 1;
  jnl_op *list = NULL;
  int ran = 0;
  for (;;) {
    /* after a group, look for the next write a while before parking */
    if (ran && !list) writer_spin(r);
    pthread_mutex_lock(&r->wmu);
    while (!r->whead && !r->wstop && !list) pthread_cond_wait(&r->wcv, &r->wmu);
    if (!r->whead && !list) {
      pthread_mutex_unlock(&r->wmu);
      break;
    }
    if (r->whead) {
      /* append the newly queued ops behind what is left over */
      jnl_op **tail = &list;
      while (*tail) tail = &(*tail)->next;
      *tail = r->whead;
      r->whead = NULL;
      r->wtail = &r->whead;
      atomic_store_explicit(&r->wqueued, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(&r->wmu);
    run_group(r, &list);
    ran = 1;
  }
  return NULL;
}

/* --- readers ------------------------------------------------------------- */

static void r_highest(rdb_store *r, jnl_op *op) {
  const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(r->db);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_snapshot(ro, snap);
  uint64_t id, deleted_to, mark, last;
  int rc = lookup_id(r, ro, op->pid, op->pid_len, &id, NULL);
  if (rc == 1 && (rc = stream_rec(r, ro, id, &deleted_to, &mark)) == 0) {
    rc = last_seq(r, snap, id, &last);
    if (rc == 0) op->r0 = last > mark ? last : mark;
  }
  if (rc < 0) jnl_op_fail(op, rc, "%s", troupe_errmsg());
  rocksdb_readoptions_destroy(ro);
  rocksdb_release_snapshot(r->db, snap);
}

static void r_replay(rdb_store *r, rdb_reader *rd, jnl_op *op) {
  uint64_t id;
  int rc = lookup_id(r, r->ro, op->pid, op->pid_len, &id, NULL);
  jnl_page *pg = &rd->page;
  jnl_page_reset(pg);
  if (rc < 0) return jnl_op_fail(op, rc, "%s", troupe_errmsg());
  if (rc == 0) {
    jnl_op_emit_events(op, NULL, 0, 1);
    return;
  }
  uint8_t lo[16], hi[16];
  bounds(lo, hi, id, op->a, op->b);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  /* A replay reads each block once (an entity recovers once): keeping
   * its blocks out of the block cache spares the cache insertions and
   * evictions, which cost more than the scan itself (measured: one id's
   * 1M events replay about twice as fast). The readahead is small enough
   * that the many short replays of a mass recovery do not each copy
   * megabytes they never use. */
  rocksdb_readoptions_set_readahead_size(ro, REPLAY_READAHEAD);
  rocksdb_readoptions_set_fill_cache(ro, 0);
  rocksdb_iterator_t *it = range_iter(r, ro, CF_EVENTS, lo, 16, hi, 16);
  uint64_t count = 0;
  int stopped = 0;
  for (rocksdb_iter_seek_to_first(it);
       rocksdb_iter_valid(it) && (!op->c || count < op->c);
       rocksdb_iter_next(it), count++) {
    size_t kl, vl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    if (!jnl_page_fits(pg, vl, 1)) {
      if (jnl_op_emit_events(op, pg->ev, pg->n, 0)) {
        stopped = 1;
        break;
      }
      jnl_page_reset(pg);
    }
    uint64_t seq = jnl_rd64(k + 8);
    if ((rc = jnl_page_add(pg, op->pid, seq, v, vl, 1)) < 0) {
      jnl_op_fail(op, rc, "replay of \"%s\" at seq %llu: %s", op->pid,
                      (unsigned long long)seq, troupe_errmsg());
      stopped = 1;
      break;
    }
  }
  char *err = NULL;
  if (!stopped) rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (err) return op_rdb_fail(op, err, "replay");
  if (!stopped) jnl_op_emit_events(op, pg->ev, pg->n, 1);
}

static const char *cached_name(rdb_store *r, const rocksdb_readoptions_t *ro,
                               name_cache *nc, uint64_t id) {
  unsigned slot = (unsigned)(id % NC_SLOTS);
  if (nc->name[slot] && nc->id[slot] == id) return nc->name[slot];
  uint8_t k[8];
  jnl_be64(k, id);
  char *err = NULL;
  size_t vl;
  char *v = rocksdb_get_cf(r->db, ro, r->cf[CF_STREAMS], (const char *)k, 8,
                           &vl, &err);
  if (err) {
    rdb_err(err, "get stream name");
    return NULL;
  }
  if (!v || vl < 16) {
    rocksdb_free(v);
    troupe__err(TROUPE_ECORRUPT, "stream %llu has no record",
                (unsigned long long)id);
    return NULL;
  }
  char *n = malloc(vl - 16 + 1);
  if (n) {
    memcpy(n, v + 16, vl - 16);
    n[vl - 16] = 0;
    free(nc->name[slot]);
    nc->name[slot] = n;
    nc->id[slot] = id;
  }
  rocksdb_free(v);
  return n;
}

/* An index walk (by tag, by slice): index entries name events by (id, seq);
 * each is fetched at the walk's snapshot and added to the page. */
typedef struct index_walk {
  rdb_store *r;
  jnl_op *op;
  jnl_page *pg;
  const rocksdb_snapshot_t *snap;
  rocksdb_readoptions_t *ro, *get_ro;
  name_cache *nc;
  uint64_t count;
  int stopped;
  char *err;
} index_walk;

static void walk_begin(index_walk *w, rdb_store *r, rdb_reader *rd,
                       jnl_op *op) {
  memset(w, 0, sizeof *w);
  w->r = r;
  w->op = op;
  w->pg = &rd->page;
  w->nc = rd->nc;
  jnl_page_reset(w->pg);
  w->snap = rocksdb_create_snapshot(r->db);
  w->ro = rocksdb_readoptions_create();
  w->get_ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_snapshot(w->ro, w->snap);
  rocksdb_readoptions_set_snapshot(w->get_ro, w->snap);
}

/* Add event (id, seq) to the page; nonzero: stop the walk (the reader
 * stopped, or the op failed, or w->err is set). An event gone since its
 * index entry was read (deleted) is skipped. */
static int walk_add(index_walk *w, uint64_t id, uint64_t seq,
                    const char *what) {
  uint8_t k[16];
  size_t evl;
  key2(k, id, seq);
  char *ev = rocksdb_get_cf(w->r->db, w->get_ro, w->r->cf[CF_EVENTS],
                            (const char *)k, 16, &evl, &w->err);
  if (w->err) return 1;
  if (!ev) return 0;
  jnl_page *pg = w->pg;
  const char *name = cached_name(w->r, w->get_ro, w->nc, id);
  size_t nl = name ? strlen(name) + 1 : 0;
  int rc = name ? 0 : TROUPE_EIO;
  if (rc == 0 && !jnl_page_fits(pg, evl + nl, 1)) {
    if (jnl_op_emit_events(w->op, pg->ev, pg->n, 0)) {
      rocksdb_free(ev);
      return w->stopped = 1;
    }
    jnl_page_reset(pg);
  }
  if (rc == 0) rc = jnl_page_reserve(pg, evl + nl);
  const char *pn = rc == 0 ? jnl_page_keep(pg, name, nl) : NULL;
  if (rc == 0) rc = jnl_page_add(pg, pn, seq, (const uint8_t *)ev, evl, 1);
  rocksdb_free(ev);
  if (rc < 0) {
    jnl_op_fail(w->op, rc, "%s: %s", what, troupe_errmsg());
    return w->stopped = 1;
  }
  w->count++;
  return 0;
}

static void walk_end(index_walk *w, rocksdb_iterator_t *it,
                     const char *what) {
  if (!w->err && !w->stopped) rocksdb_iter_get_error(it, &w->err);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(w->ro);
  rocksdb_readoptions_destroy(w->get_ro);
  rocksdb_release_snapshot(w->r->db, w->snap);
  if (w->err) return op_rdb_fail(w->op, w->err, what);
  if (!w->stopped) jnl_op_emit_events(w->op, w->pg->ev, w->pg->n, 1);
}

static void r_by_tag(rdb_store *r, rdb_reader *rd, jnl_op *op) {
  if (op->a == UINT64_MAX) {
    jnl_op_emit_events(op, NULL, 0, 1);
    return;
  }
  uint8_t lo[TROUPE_JOURNAL_MAX_TAG_LEN + 9], hi[TROUPE_JOURNAL_MAX_TAG_LEN + 1];
  memcpy(lo, op->str, op->str_len);
  lo[op->str_len] = 0;
  jnl_be64(lo + op->str_len + 1, op->a + 1);
  memcpy(hi, op->str, op->str_len);
  hi[op->str_len] = 1;
  index_walk w;
  walk_begin(&w, r, rd, op);
  rocksdb_iterator_t *it = range_iter(r, w.ro, CF_TAGS, lo, op->str_len + 9,
                                      hi, op->str_len + 1);
  for (rocksdb_iter_seek_to_first(it);
       rocksdb_iter_valid(it) && (!op->b || w.count < op->b);
       rocksdb_iter_next(it)) {
    size_t vl;
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    if (vl != 16) continue;
    if (walk_add(&w, jnl_rd64(v), jnl_rd64(v + 8), "by_tag")) break;
  }
  walk_end(&w, it, "by_tag");
}

/* The offsets column family in offset order from after+1, filtered by the
 * slice carried in each entry (see the top of the file for why there is no
 * (slice, offset) index). */
static void r_by_slice(rdb_store *r, rdb_reader *rd, jnl_op *op) {
  uint32_t slo = (uint32_t)(op->c >> 32), shi = (uint32_t)op->c;
  if (op->a == UINT64_MAX) {
    jnl_op_emit_events(op, NULL, 0, 1);
    return;
  }
  uint8_t lo[8];
  jnl_be64(lo, op->a + 1);
  index_walk w;
  walk_begin(&w, r, rd, op);
  rocksdb_readoptions_set_readahead_size(w.ro, 1u << 20);
  rocksdb_iterator_t *it = range_iter(r, w.ro, CF_OFFSETS, lo, 8, NULL, 0);
  for (rocksdb_iter_seek_to_first(it);
       rocksdb_iter_valid(it) && (!op->b || w.count < op->b);
       rocksdb_iter_next(it)) {
    size_t vl;
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    if (vl != OFFSET_VAL_LEN) continue;
    uint32_t sl = jnl_rd32(v);
    if (sl < slo || sl > shi) continue;
    if (walk_add(&w, jnl_rd64(v + 4), jnl_rd64(v + 12), "by_slice")) break;
  }
  walk_end(&w, it, "by_slice");
}

static void r_list_ids(rdb_store *r, jnl_op *op) {
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, ro, r->cf[CF_IDS]);
  size_t max = (size_t)op->a, n = 0, used = 0, cap = 4096;
  size_t *offs = malloc(max * sizeof *offs);
  char *buf = malloc(cap);
  const char **names = NULL;
  int rc = offs && buf ? 0 : TROUPE_ENOMEM;
  if (op->str_len) rocksdb_iter_seek(it, op->str, op->str_len);
  else rocksdb_iter_seek_to_first(it);
  for (; rc == 0 && rocksdb_iter_valid(it) && n < max; rocksdb_iter_next(it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(it, &kl);
    const char *v = rocksdb_iter_value(it, &vl);
    if (vl != 9 || !v[8]) continue;          /* snapshot/state-only ids */
    if (kl == op->str_len && memcmp(k, op->str, kl) == 0) continue;
    if (used + kl + 1 > cap) {
      while (used + kl + 1 > cap) cap *= 2;
      char *b = realloc(buf, cap);
      if (!b) {
        rc = TROUPE_ENOMEM;
        break;
      }
      buf = b;
    }
    memcpy(buf + used, k, kl);
    buf[used + kl] = 0;
    offs[n++] = used;
    used += kl + 1;
  }
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (err) {
    op_rdb_fail(op, err, "list ids");
  } else if (rc < 0 || !(names = malloc((n + 1) * sizeof *names))) {
    jnl_op_fail(op, TROUPE_ENOMEM, "list ids");
  } else {
    for (size_t i = 0; i < n; i++) names[i] = buf + offs[i];
    jnl_op_emit_ids(op, names, n);
  }
  free(names);
  free(offs);
  free(buf);
}

static void r_snap_load(rdb_store *r, jnl_op *op) {
  uint64_t id;
  int rc = lookup_id(r, r->ro, op->pid, op->pid_len, &id, NULL);
  if (rc < 0) return jnl_op_fail(op, rc, "%s", troupe_errmsg());
  if (rc == 0) return;
  uint8_t lo[16], hi[16];
  bounds(lo, hi, id, op->a, op->b);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_iterator_t *it = range_iter(r, ro, CF_SNAPSHOTS, lo, 16, hi, 16);
  for (rocksdb_iter_seek_to_last(it); rocksdb_iter_valid(it);
       rocksdb_iter_prev(it)) {
    size_t kl, vl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    troupe_snapshot sn;
    if (jnl_snap_read(v, vl, &sn) < 0) {
      jnl_op_fail(op, TROUPE_ECORRUPT, "snapshot of \"%s\" at %llu",
                      op->pid, (unsigned long long)jnl_rd64(k + 8));
      break;
    }
    if (sn.timestamp_ms < op->t0 || sn.timestamp_ms > op->t1) continue;
    sn.persistence_id = op->pid;
    sn.seq = jnl_rd64(k + 8);
    jnl_op_emit_snapshot(op, &sn);
    break;
  }
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (err && !op->finished) op_rdb_fail(op, err, "snapshot load");
  else if (err) rocksdb_free(err);
}

static void r_state_get(rdb_store *r, jnl_op *op) {
  uint64_t id;
  int rc = lookup_id(r, r->ro, op->pid, op->pid_len, &id, NULL);
  if (rc < 0) return jnl_op_fail(op, rc, "%s", troupe_errmsg());
  if (rc == 0) return;
  uint8_t k[8];
  jnl_be64(k, id);
  char *err = NULL;
  size_t vl;
  char *v = rocksdb_get_cf(r->db, r->ro, r->cf[CF_STATE], (const char *)k, 8,
                           &vl, &err);
  if (err) return op_rdb_fail(op, err, "get state");
  if (!v) return;
  troupe_state_record rec;
  if (jnl_state_read((const uint8_t *)v, vl, &rec) < 0) {
    jnl_op_fail(op, TROUPE_ECORRUPT, "state of \"%s\"", op->pid);
  } else {
    rec.persistence_id = op->pid;
    jnl_op_emit_state(op, &rec);
  }
  rocksdb_free(v);
}

static void *reader_main(void *arg) {
  rdb_reader *rd = arg;
  rdb_store *r = rd->r;
  jnl_in_store_thread = 1;
  for (;;) {
    pthread_mutex_lock(&r->rmu);
    while (!r->rhead && !r->rstop) pthread_cond_wait(&r->rcv, &r->rmu);
    jnl_op *op = r->rhead;
    if (!op) {
      pthread_mutex_unlock(&r->rmu);
      break;
    }
    r->rhead = op->next;
    if (!r->rhead) r->rtail = &r->rhead;
    pthread_mutex_unlock(&r->rmu);
    switch (op->kind) {
    case JNL_OP_HIGHEST: r_highest(r, op); break;
    case JNL_OP_REPLAY: r_replay(r, rd, op); break;
    case JNL_OP_BY_TAG: r_by_tag(r, rd, op); break;
    case JNL_OP_BY_SLICE: r_by_slice(r, rd, op); break;
    case JNL_OP_LIST_IDS: r_list_ids(r, op); break;
    case JNL_OP_SNAP_LOAD: r_snap_load(r, op); break;
    case JNL_OP_STATE_GET: r_state_get(r, op); break;
    }
    jnl_op_complete(op);
  }
  return NULL;
}

static void rdb_submit(jnl_store *s, jnl_op *op) {
  rdb_store *r = (rdb_store *)s;
  op->next = NULL;
  if (jnl_op_is_write(op->kind)) {
    pthread_mutex_lock(&r->wmu);
    int wake = r->whead == NULL;
    *r->wtail = op;
    r->wtail = &op->next;
    if (wake) {
      atomic_store_explicit(&r->wqueued, 1, memory_order_release);
      pthread_cond_signal(&r->wcv);
    }
    pthread_mutex_unlock(&r->wmu);
  } else {
    pthread_mutex_lock(&r->rmu);
    *r->rtail = op;
    r->rtail = &op->next;
    pthread_cond_signal(&r->rcv);
    pthread_mutex_unlock(&r->rmu);
  }
}

/* --- open / close -------------------------------------------------------- */

static void rdb_free(rdb_store *r) {
  for (int i = 0; i < NCF; i++)
    if (r->cf[i]) rocksdb_column_family_handle_destroy(r->cf[i]);
  if (r->db) rocksdb_close(r->db);
  if (r->wb) rocksdb_writebatch_destroy(r->wb);
  if (r->wo) rocksdb_writeoptions_destroy(r->wo);
  if (r->ro) rocksdb_readoptions_destroy(r->ro);
  if (r->dbopts) rocksdb_options_destroy(r->dbopts);
  if (r->evopts) rocksdb_options_destroy(r->evopts);
  if (r->topts) rocksdb_block_based_options_destroy(r->topts);
  if (r->cache) rocksdb_cache_destroy(r->cache);
  cache_clear(r);
  free(r->streams);
  for (uint32_t i = 0; r->readers && i < r->nreaders; i++) {
    jnl_page_free(&r->readers[i].page);
    if (r->readers[i].nc)
      for (int k = 0; k < NC_SLOTS; k++) free(r->readers[i].nc->name[k]);
    free(r->readers[i].nc);
  }
  free(r->readers);
  pthread_mutex_destroy(&r->wmu);
  pthread_cond_destroy(&r->wcv);
  pthread_mutex_destroy(&r->rmu);
  pthread_cond_destroy(&r->rcv);
  free(r->path);
  jnl_store_destroy(&r->base);
  free(r);
}

/* --- layout and format versions -------------------------------------------
 *
 * What is at a path is found without changing it: the column families
 * (rocksdb_list_column_families reads the MANIFEST) and, when needed, the
 * "format" key through a read-only open (no lock taken, nothing written).
 * Only a layout with exactly the column families of this format is opened
 * for writing. */

typedef struct rdb_layout {
  int exists;                 /* a RocksDB database is there */
  char **names;               /* its column families */
  size_t n;
  int has[NCF];               /* which of ours it has */
  const char *unknown;        /* the first one not of this format */
} rdb_layout;

static void layout_free(rdb_layout *l) {
  if (l->names) rocksdb_list_column_families_destroy(l->names, l->n);
  memset(l, 0, sizeof *l);
}

static int layout_read(const char *path, rdb_layout *l) {
  memset(l, 0, sizeof *l);
  rocksdb_options_t *o = rocksdb_options_create();
  char *err = NULL;
  size_t n = 0;
  char **names = rocksdb_list_column_families(o, path, &n, &err);
  rocksdb_options_destroy(o);
  if (err) {
    rocksdb_free(err);
    if (names) rocksdb_list_column_families_destroy(names, n);
    struct stat st;
    char cur[4096];
    snprintf(cur, sizeof cur, "%s/CURRENT", path);
    if (stat(cur, &st) == 0)
      return troupe__err(TROUPE_EIO, "rocksdb: cannot read the column "
                         "families of %s", path);
    return 0;
  }
  l->exists = 1;
  l->names = names;
  l->n = n;
  for (size_t i = 0; i < n; i++) {
    int known = 0;
    for (int c = 0; c < NCF; c++)
      if (strcmp(names[i], cf_names[c]) == 0) known = l->has[c] = 1;
    if (!known && !l->unknown) l->unknown = names[i];
  }
  return 0;
}

static int layout_complete(const rdb_layout *l) {
  for (int c = 0; c < NCF; c++)
    if (!l->has[c]) return 0;
  return !l->unknown;
}

/* A bare RocksDB database: only the default column family. */
static int layout_bare(const rdb_layout *l) {
  return l->exists && l->n == 1 && l->has[CF_DEFAULT];
}

/* Open every column family of `l` read-only; *meta and *deflt are the
 * handles of "meta" (NULL when absent) and "default" within hs[]. */
static rocksdb_t *open_ro(const char *path, const rdb_layout *l,
                          rocksdb_options_t *o,
                          rocksdb_column_family_handle_t **hs, char **err) {
  const rocksdb_options_t **cfo = malloc(l->n * sizeof *cfo);
  if (!cfo) {
    troupe__err(TROUPE_ENOMEM, "rocksdb probe");
    return NULL;
  }
  for (size_t i = 0; i < l->n; i++) cfo[i] = o;
  rocksdb_t *db = rocksdb_open_for_read_only_column_families(
      o, path, (int)l->n, (const char *const *)l->names, cfo, hs, 0, err);
  free(cfo);
  return db;
}

static int cf_index(const rdb_layout *l, const char *name) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->names[i], name) == 0) return (int)i;
  return -1;
}

/* Read the format of the database at `path` without changing it:
 * *ver = the "format" key (0 when there is none), *troupe = it has a meta
 * column family, *empty = its default column family is empty. */
static int format_read(const char *path, const rdb_layout *l, uint32_t *ver,
                       int *troupe, int *empty) {
  *ver = 0;
  *troupe = *empty = 0;
  rocksdb_column_family_handle_t **hs = calloc(l->n, sizeof *hs);
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  char *err = NULL;
  int rc = 0;
  rocksdb_t *db = hs ? open_ro(path, l, o, hs, &err) : NULL;
  if (!hs) {
    rc = troupe__err(TROUPE_ENOMEM, "rocksdb probe");
  } else if (err) {
    rc = rdb_err(err, "open read-only");
  } else if (!db) {
    rc = TROUPE_ENOMEM;
  } else {
    int mi = cf_index(l, "meta"), di = cf_index(l, "default");
    if (di >= 0) {
      rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, hs[di]);
      rocksdb_iter_seek_to_first(it);
      *empty = !rocksdb_iter_valid(it);
      rocksdb_iter_destroy(it);
    }
    if (mi >= 0) {
      *troupe = 1;
      size_t vl;
      char *v = rocksdb_get_cf(db, ro, hs[mi], "format", 6, &vl, &err);
      if (err) {
        rc = rdb_err(err, "get format");
      } else if (v && vl != 4) {
        rc = troupe__err(TROUPE_ECORRUPT, "%s: malformed format key", path);
      } else if (v) {
        *ver = jnl_rd32((const uint8_t *)v);
      }
      rocksdb_free(v);
    }
    for (size_t i = 0; i < l->n; i++) rocksdb_column_family_handle_destroy(hs[i]);
    rocksdb_close(db);
  }
  free(hs);
  rocksdb_readoptions_destroy(ro);
  rocksdb_options_destroy(o);
  return rc;
}

/* The error for a store of format `ver` this troupe cannot open. */
static int format_refused(const char *path, uint32_t ver) {
  if (ver > FORMAT_VERSION)
    return troupe__err(TROUPE_ESCHEMA,
                       "%s has storage format version %u, this troupe uses "
                       "%u: it was written by a newer troupe; upgrade troupe "
                       "(never `troupe journal migrate` down)",
                       path, ver, FORMAT_VERSION);
  if (ver == 0)
    return troupe__err(TROUPE_ESCHEMA,
                       "%s has no storage format version: not a troupe store "
                       "this version can open or `troupe journal migrate`",
                       path);
  return troupe__err(TROUPE_ESCHEMA,
                     "%s has storage format version %u, this troupe uses %u: "
                     "run `troupe journal migrate` to upgrade it",
                     path, ver, FORMAT_VERSION);
}

/* Decide how to open: fresh (1: create everything; 2: adopt an existing
 * empty RocksDB database without our column families) or plain (0). A
 * layout that is not exactly this format's is refused with the reason
 * read from its format key. */
static int check_layout(rdb_store *r, int create, int *fresh) {
  rdb_layout l;
  int rc = layout_read(r->path, &l);
  *fresh = 0;
  if (rc < 0) return rc;
  if (!l.exists) {
    if (!create)
      return troupe__err(TROUPE_ENOENT,
                         "no store at %s (create_if_missing is off)", r->path);
    *fresh = 1;
  } else if (layout_bare(&l)) {
    if (create) *fresh = 2;
    else rc = troupe__err(TROUPE_ESCHEMA,
                          "%s is a RocksDB database but not a troupe store "
                          "(create_if_missing is off)", r->path);
  } else if (!layout_complete(&l)) {
    uint32_t ver;
    int troupe, empty;
    rc = format_read(r->path, &l, &ver, &troupe, &empty);
    if (rc == 0 && ver != FORMAT_VERSION) rc = format_refused(r->path, ver);
    else if (rc == 0 && l.unknown)
      rc = troupe__err(TROUPE_ESCHEMA,
                       "%s has column family \"%s\" unknown to this version "
                       "of troupe (format %u): not a store it can open",
                       r->path, l.unknown, FORMAT_VERSION);
    else if (rc == 0)
      rc = troupe__err(TROUPE_ESCHEMA,
                       "%s lacks column families of format %u: not a store "
                       "this troupe can open", r->path, FORMAT_VERSION);
  }
  layout_free(&l);
  return rc;
}

static int check_format(rdb_store *r, int fresh) {
  char *err = NULL;
  size_t vl;
  char *v = rocksdb_get_cf(r->db, r->ro, r->cf[CF_META], "format", 6, &vl,
                           &err);
  if (err) return rdb_err(err, "get format");
  if (!v) {
    if (fresh == 2) {              /* only an empty database is adopted */
      rocksdb_iterator_t *it =
          rocksdb_create_iterator_cf(r->db, r->ro, r->cf[CF_DEFAULT]);
      rocksdb_iter_seek_to_first(it);
      int empty = !rocksdb_iter_valid(it);
      rocksdb_iter_destroy(it);
      if (!empty)
        return troupe__err(TROUPE_ESCHEMA,
                           "%s is a non-empty RocksDB database, not a troupe "
                           "store", r->path);
    } else if (!fresh) {
      return format_refused(r->path, 0);
    }
    uint8_t b[4];
    jnl_be32(b, FORMAT_VERSION);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    rocksdb_put_cf(r->db, wo, r->cf[CF_META], "format", 6, (const char *)b, 4,
                   &err);
    rocksdb_writeoptions_destroy(wo);
    return err ? rdb_err(err, "put format") : 0;
  }
  uint32_t ver = vl == 4 ? jnl_rd32((const uint8_t *)v) : 0;
  rocksdb_free(v);
  return ver == FORMAT_VERSION ? 0 : format_refused(r->path, ver);
}

/* The events column family's options: the store's, plus a memtable insert
 * hint per stream. Each stream's events arrive in sequence order, so with
 * the stream id (the key's first 8 bytes) as the hint's prefix an insert
 * starts where the stream's previous one ended instead of searching the
 * skiplist from its top; that search was about half of the writer
 * thread's time with 1000 streams in a group (bench_journal persist 1000
 * streams about 1.5-2x). The cost is a hint of about 250 bytes of memtable
 * per stream written since the last flush. The C API has no setter for
 * it, hence the options string; a RocksDB without the option keeps the
 * store's options (it is only a speed-up). */
#define EVENTS_CF_OPTIONS \
  "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.8"

static void events_options(rdb_store *r) {
  char *err = NULL;
  r->evopts = rocksdb_options_create();
  rocksdb_get_options_from_string(r->dbopts, EVENTS_CF_OPTIONS, r->evopts,
                                  &err);
  if (err) {
    rocksdb_free(err);
    rocksdb_options_destroy(r->evopts);
    r->evopts = NULL;
  }
}

static int rdb_open(const char *path, const troupe_store_options *o,
                    jnl_store **out) {
  rdb_store *r = calloc(1, sizeof *r);
  if (!r) return troupe__err(TROUPE_ENOMEM, "rocksdb store");
  jnl_store_init(&r->base, &jnl_rocksdb_backend, o);
  pthread_mutex_init(&r->wmu, NULL);
  pthread_cond_init(&r->wcv, NULL);
  pthread_mutex_init(&r->rmu, NULL);
  pthread_cond_init(&r->rcv, NULL);
  r->wtail = &r->whead;
  r->rtail = &r->rhead;
  r->path = strdup(path);
  r->dbopts = rocksdb_options_create();
  r->topts = rocksdb_block_based_options_create();
  r->cache = rocksdb_cache_create_lru(64u << 20);
  r->wo = rocksdb_writeoptions_create();
  r->ro = rocksdb_readoptions_create();
  r->wb = rocksdb_writebatch_create();
  if (!r->path) {
    rdb_free(r);
    return troupe__err(TROUPE_ENOMEM, "rocksdb store");
  }
  rocksdb_block_based_options_set_block_cache(r->topts, r->cache);
  rocksdb_options_set_block_based_table_factory(r->dbopts, r->topts);
  rocksdb_options_increase_parallelism(r->dbopts, 2);
  rocksdb_options_set_max_background_jobs(r->dbopts, 2);
  rocksdb_writeoptions_set_sync(r->wo, o->sync);

  int fresh, rc = check_layout(r, o->create_if_missing, &fresh);
  if (rc < 0) {
    rdb_free(r);
    return rc;
  }
  if (fresh == 1 && mkdir(path, 0777) < 0 && errno != EEXIST) {
    rc = troupe__err(TROUPE_EIO, "cannot create %s: %s", path,
                     strerror(errno));
    rdb_free(r);
    return rc;
  }
  rocksdb_options_set_create_if_missing(r->dbopts, fresh == 1);
  rocksdb_options_set_create_missing_column_families(r->dbopts, fresh != 0);
  events_options(r);
  const rocksdb_options_t *cfo[NCF];
  for (int i = 0; i < NCF; i++) cfo[i] = r->dbopts;
  char *err = NULL;
  if (r->evopts) cfo[CF_EVENTS] = r->evopts;
  r->db = rocksdb_open_column_families(r->dbopts, path, NCF, cf_names, cfo,
                                       r->cf, &err);
  if (err) {
    memset(r->cf, 0, sizeof r->cf);
    rc = rdb_err(err, "open");
    rdb_free(r);
    return rc;
  }
  if ((rc = check_format(r, fresh)) < 0 || (rc = load_counters(r)) < 0) {
    rdb_free(r);
    return rc;
  }
  r->nreaders = o->reader_threads;
  r->readers = calloc(r->nreaders, sizeof *r->readers);
  if (!r->readers) {
    rdb_free(r);
    return troupe__err(TROUPE_ENOMEM, "rocksdb readers");
  }
  for (uint32_t i = 0; i < r->nreaders; i++) {
    r->readers[i].r = r;
    if (!(r->readers[i].nc = calloc(1, sizeof *r->readers[i].nc)) ||
        jnl_page_init(&r->readers[i].page, o->page_size) < 0 ||
        pthread_create(&r->readers[i].thread, NULL, reader_main,
                       &r->readers[i]) != 0) {
      /* stop the readers already running */
      pthread_mutex_lock(&r->rmu);
      r->rstop = 1;
      pthread_cond_broadcast(&r->rcv);
      pthread_mutex_unlock(&r->rmu);
      for (uint32_t k = 0; k < i; k++) pthread_join(r->readers[k].thread, NULL);
      rdb_free(r);
      return troupe__err(TROUPE_ENOMEM, "rocksdb: no reader thread");
    }
  }
  if (pthread_create(&r->writer, NULL, writer_main, r) != 0) {
    pthread_mutex_lock(&r->rmu);
    r->rstop = 1;
    pthread_cond_broadcast(&r->rcv);
    pthread_mutex_unlock(&r->rmu);
    for (uint32_t k = 0; k < r->nreaders; k++)
      pthread_join(r->readers[k].thread, NULL);
    rdb_free(r);
    return troupe__err(TROUPE_ENOMEM, "rocksdb: no writer thread");
  }
  *out = &r->base;
  return 0;
}

static void rdb_close(jnl_store *s) {
  rdb_store *r = (rdb_store *)s;
  pthread_mutex_lock(&r->wmu);
  r->wstop = 1;
  pthread_cond_signal(&r->wcv);
  pthread_mutex_unlock(&r->wmu);
  pthread_join(r->writer, NULL);
  pthread_mutex_lock(&r->rmu);
  r->rstop = 1;
  pthread_cond_broadcast(&r->rcv);
  pthread_mutex_unlock(&r->rmu);
  for (uint32_t i = 0; i < r->nreaders; i++)
    pthread_join(r->readers[i].thread, NULL);
  rdb_free(r);
}

/* --- schema status and migrations ------------------------------------------
 *
 * A migration step takes an open database (read-write, every column family
 * of this format open, missing ones created) from format `from` to
 * from + 1. Each step writes the new format key last, in the same batch
 * as its last changes, so a crash before that leaves the old format and
 * the step runs again (resuming from its own progress key when it has
 * one). */

size_t jnl_rdb_migrate_batch = 10000;
int jnl_rdb_migrate_exit_after;
uint64_t jnl_rdb_migrate_indexed;

typedef struct rdb_mig {
  rocksdb_t *db;
  rocksdb_column_family_handle_t *cf[NCF];
  rocksdb_writeoptions_t *wo;          /* sync */
  rocksdb_readoptions_t *ro;
  const char *path;
} rdb_mig;

static int mig_put_format(rdb_mig *m, rocksdb_writebatch_t *wb,
                          uint32_t ver) {
  uint8_t b[4];
  jnl_be32(b, ver);
  rocksdb_writebatch_put_cf(wb, m->cf[CF_META], "format", 6, (const char *)b,
                            4);
  char *err = NULL;
  rocksdb_write(m->db, m->wo, wb, &err);
  rocksdb_writebatch_clear(wb);
  return err ? rdb_err(err, "migrate: write") : 0;
}

#define MIG_OFFSETS_KEY "migrate-2-offsets"

/* 1 -> 2: an "offsets" entry for every stored event, read from the events
 * in key order, in batches of jnl_rdb_migrate_batch with the last event
 * key done kept in meta MIG_OFFSETS_KEY so a crash resumes after it. */
static int mig_1_to_2(rdb_mig *m) {
  char *err = NULL;
  size_t pl = 0;
  char *prog = rocksdb_get_cf(m->db, m->ro, m->cf[CF_META], MIG_OFFSETS_KEY,
                              sizeof MIG_OFFSETS_KEY - 1, &pl, &err);
  if (err) return rdb_err(err, "migrate: get progress");
  uint8_t after[16];
  int resume = prog && pl == 16;
  if (resume) memcpy(after, prog, 16);
  rocksdb_free(prog);
  rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_readahead_size(ro, 2u << 20);
  rocksdb_readoptions_set_fill_cache(ro, 0);
  rocksdb_iterator_t *it =
      rocksdb_create_iterator_cf(m->db, ro, m->cf[CF_EVENTS]);
  if (resume) {
    rocksdb_iter_seek(it, (const char *)after, 16);
    size_t kl;
    const char *k = rocksdb_iter_valid(it) ? rocksdb_iter_key(it, &kl) : NULL;
    if (k && kl == 16 && memcmp(k, after, 16) == 0) rocksdb_iter_next(it);
  } else {
    rocksdb_iter_seek_to_first(it);
  }
  uint64_t cur = UINT64_MAX, batches = 0;
  uint32_t slice = 0;
  size_t inbatch = 0;
  size_t per = jnl_rdb_migrate_batch ? jnl_rdb_migrate_batch : 1;
  int rc = 0;
  jnl_rdb_migrate_indexed = 0;
  for (; rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    if (kl != 16 || vl < 1 + 8 || v[0] != JNL_REC_FORMAT) {
      rc = troupe__err(TROUPE_ECORRUPT, "%s: malformed event entry", m->path);
      break;
    }
    uint64_t id = jnl_rd64(k);
    if (id != cur) {                     /* the slice of the id's name */
      uint8_t sk[8];
      size_t sl;
      jnl_be64(sk, id);
      char *sv = rocksdb_get_cf(m->db, m->ro, m->cf[CF_STREAMS],
                                (const char *)sk, 8, &sl, &err);
      if (err) {
        rc = rdb_err(err, "migrate: get stream");
        break;
      }
      if (!sv || sl <= 16) {
        rocksdb_free(sv);
        rc = troupe__err(TROUPE_ECORRUPT, "%s: stream %llu has no record",
                         m->path, (unsigned long long)id);
        break;
      }
      slice = jnl_slice(sv + 16, sl - 16);
      rocksdb_free(sv);
      cur = id;
    }
    uint8_t ok[8], ov[OFFSET_VAL_LEN];
    memcpy(ok, v + JNL_REC_OFFSET_AT, 8);
    jnl_be32(ov, slice);
    memcpy(ov + 4, k, 16);
    rocksdb_writebatch_put_cf(wb, m->cf[CF_OFFSETS], (const char *)ok, 8,
                              (const char *)ov, OFFSET_VAL_LEN);
    jnl_rdb_migrate_indexed++;
    if (++inbatch < per) continue;
    rocksdb_writebatch_put_cf(wb, m->cf[CF_META], MIG_OFFSETS_KEY,
                              sizeof MIG_OFFSETS_KEY - 1, (const char *)k, 16);
    rocksdb_write(m->db, m->wo, wb, &err);
    rocksdb_writebatch_clear(wb);
    if (err) {
      rc = rdb_err(err, "migrate: write");
      break;
    }
    inbatch = 0;
    if (++batches == (uint64_t)jnl_rdb_migrate_exit_after) _exit(75);
  }
  if (rc == 0) {
    rocksdb_iter_get_error(it, &err);
    if (err) rc = rdb_err(err, "migrate: scan events");
  }
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (rc == 0) {
    rocksdb_writebatch_delete_cf(wb, m->cf[CF_META], MIG_OFFSETS_KEY,
                                 sizeof MIG_OFFSETS_KEY - 1);
    rc = mig_put_format(m, wb, 2);
  }
  rocksdb_writebatch_destroy(wb);
  return rc;
}

static const struct {
  int (*run)(rdb_mig *m);
  const char *what;
} mig_steps[FORMAT_VERSION] = {
    {NULL, NULL},
    {mig_1_to_2, "offsets column family: an offset -> (slice, id, seq) "
                 "entry per event, for by_slice"},
};

static int rdb_schema(const char *path, troupe_schema_status *out) {
  memset(out, 0, sizeof *out);
  out->supported = FORMAT_VERSION;
  rdb_layout l;
  int rc = layout_read(path, &l);
  if (rc < 0) return rc;
  if (!l.exists) return troupe__err(TROUPE_ENOENT, "no store at %s", path);
  uint32_t ver = 0;
  int troupe = 0, empty = 0;
  rc = format_read(path, &l, &ver, &troupe, &empty);
  int bare = layout_bare(&l);
  layout_free(&l);
  if (rc < 0) return rc;
  if (bare && empty) return 0;          /* found 0: an empty database */
  if (!troupe || ver == 0)
    return troupe__err(TROUPE_ESCHEMA, "%s is not a troupe store (no format "
                       "version)", path);
  out->found = (int)ver;
  out->pending = ver < FORMAT_VERSION ? (int)(FORMAT_VERSION - ver) : 0;
  return 0;
}

/* Open `path` read-write with every column family of this format (those
 * missing are created) plus none other. */
static int mig_open(rdb_mig *m, const char *path, rocksdb_options_t *o) {
  const rocksdb_options_t *cfo[NCF];
  for (int i = 0; i < NCF; i++) cfo[i] = o;
  char *err = NULL;
  rocksdb_options_set_create_missing_column_families(o, 1);
  m->db = rocksdb_open_column_families(o, path, NCF, cf_names, cfo, m->cf,
                                       &err);
  if (err) {
    memset(m->cf, 0, sizeof m->cf);
    m->db = NULL;
    return rdb_err(err, "migrate: open");
  }
  return 0;
}

static void mig_close(rdb_mig *m) {
  for (int i = 0; i < NCF; i++)
    if (m->cf[i]) rocksdb_column_family_handle_destroy(m->cf[i]);
  if (m->db) rocksdb_close(m->db);
}

static int rdb_migrate(const char *path, int dry_run, troupe_migrate_cb cb,
                       void *data) {
  troupe_schema_status st;
  int rc = rdb_schema(path, &st);
  if (rc < 0) return rc;
  if (st.found > st.supported)
    return format_refused(path, (uint32_t)st.found);
  if (st.found == 0 || st.pending == 0) return 0;
  if (dry_run) {
    for (int v = st.found; v < st.supported; v++)
      if (cb) cb(v, v + 1, mig_steps[v].what, 1, data);
    return st.pending;
  }
  rdb_layout l;
  if ((rc = layout_read(path, &l)) < 0) return rc;
  if (l.unknown) {
    rc = troupe__err(TROUPE_ESCHEMA,
                     "%s has column family \"%s\" unknown to this version of "
                     "troupe: not migrating it", path, l.unknown);
    layout_free(&l);
    return rc;
  }
  layout_free(&l);
  rdb_mig m;
  memset(&m, 0, sizeof m);
  m.path = path;
  rocksdb_options_t *o = rocksdb_options_create();
  m.wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(m.wo, 1);
  m.ro = rocksdb_readoptions_create();
  int applied = 0;
  if ((rc = mig_open(&m, path, o)) == 0) {
    /* read again under the lock: another process may have migrated */
    char *err = NULL;
    size_t vl;
    char *v = rocksdb_get_cf(m.db, m.ro, m.cf[CF_META], "format", 6, &vl,
                             &err);
    uint32_t ver = v && vl == 4 ? jnl_rd32((const uint8_t *)v) : 0;
    rocksdb_free(v);
    if (err) rc = rdb_err(err, "migrate: get format");
    else if (ver == 0 || ver > FORMAT_VERSION) rc = format_refused(path, ver);
    for (; rc == 0 && ver < FORMAT_VERSION; ver++) {
      if ((rc = mig_steps[ver].run(&m)) < 0) break;
      applied++;
      if (cb) cb((int)ver, (int)ver + 1, mig_steps[ver].what, 0, data);
    }
  }
  mig_close(&m);
  rocksdb_readoptions_destroy(m.ro);
  rocksdb_writeoptions_destroy(m.wo);
  rocksdb_options_destroy(o);
  return rc < 0 ? rc : applied;
}

/* Test hook: make the (closed) store at `dir` one of format `version`, as
 * that version of troupe wrote it; created empty when missing. */
int jnl_rdb_create_version(const char *dir, int version) {
  if (!dir || version < 1 || version > (int)FORMAT_VERSION)
    return troupe__err(TROUPE_EINVAL, "create_version: bad arguments");
  if (mkdir(dir, 0777) < 0 && errno != EEXIST)
    return troupe__err(TROUPE_EIO, "cannot create %s: %s", dir,
                       strerror(errno));
  rdb_mig m;
  memset(&m, 0, sizeof m);
  m.path = dir;
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(o, 1);
  m.wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(m.wo, 1);
  int rc = mig_open(&m, dir, o);
  char *err = NULL;
  if (rc == 0 && version < 2) {             /* format 1 had no offsets */
    rocksdb_drop_column_family(m.db, m.cf[CF_OFFSETS], &err);
    if (err) rc = rdb_err(err, "drop column family");
  }
  if (rc == 0) {
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_cf(wb, m.cf[CF_META], MIG_OFFSETS_KEY,
                                 sizeof MIG_OFFSETS_KEY - 1);
    rc = mig_put_format(&m, wb, (uint32_t)version);
    rocksdb_writebatch_destroy(wb);
  }
  mig_close(&m);
  rocksdb_writeoptions_destroy(m.wo);
  rocksdb_options_destroy(o);
  return rc;
}

const jnl_backend_vt jnl_rocksdb_backend = {
    "rocksdb", rdb_open, rdb_submit, rdb_close, rdb_schema, rdb_migrate};
