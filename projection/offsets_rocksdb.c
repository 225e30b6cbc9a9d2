/*
 * projection/offsets_rocksdb.c: the RocksDB offset store.
 *
 * Its own database directory (not the journal's): the projection's
 * records live under keys starting with "\0troupe/p/", everything else is
 * the user's read model. Exactly-once handlers write into the session's
 * WriteBatch and the offset row goes into the same batch: one atomic
 * write. Writes are not WAL-synced per batch (a process crash loses
 * nothing the OS has; a machine crash may lose the newest batches, never
 * half of one).
 *
 * A directory locked by another process is opened read-only: reads see
 * the state at open time, and management requests are queued as files in
 * DIR/requests/ that the owner ingests at its next control poll.
 */
#define _GNU_SOURCE 1
#include "projection/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/c.h>

#define KEY_ROW "\0troupe/p/o/"
#define KEY_CTL "\0troupe/p/c/"
#define KEY_PFX_LEN 12

typedef struct rdb_store {
  pj_store base;
  rocksdb_t *db;
  rocksdb_options_t *opts;
  rocksdb_writeoptions_t *wopts;
  rocksdb_readoptions_t *ropts;
  char *dir;
  int ro;
  pthread_mutex_t mu;      /* ctl read-modify-write, request ingestion */
} rdb_store;

static int rdb_fail(char *err, const char *what) {
  int code = TROUPE_EIO;
  if (strstr(err, "Corruption")) code = TROUPE_ECORRUPT;
  else if (strstr(err, "lock") || strstr(err, "LOCK") ||
           strstr(err, "Resource busy"))
    code = TROUPE_EBUSY;
  troupe__err(code, "rocksdb %s: %s", what, err);
  rocksdb_free(err);
  return code;
}

static size_t mkkey(char *buf, size_t cap, const char *pfx, const char *name) {
  size_t n = strlen(name);
  if (KEY_PFX_LEN + n > cap) n = cap - KEY_PFX_LEN;
  memcpy(buf, pfx, KEY_PFX_LEN);
  memcpy(buf + KEY_PFX_LEN, name, n);
  return KEY_PFX_LEN + n;
}

static int mkdirs(const char *dir) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -1;
      *p = '/';
    }
  }
  if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -1;
  return 0;
}

static int rdb_open(const char *path, pj_store **out) {
  if (mkdirs(path) < 0)
    return troupe__err(TROUPE_EIO, "offset store: cannot create %s: %s", path,
                       strerror(errno));
  rdb_store *r = calloc(1, sizeof *r);
  if (!r || !(r->dir = strdup(path))) {
    free(r);
    return troupe__err(TROUPE_ENOMEM, "offset store");
  }
  r->base.kind = PJ_ROCKSDB;
  pthread_mutex_init(&r->mu, NULL);
  r->opts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(r->opts, 1);
  r->wopts = rocksdb_writeoptions_create();
  r->ropts = rocksdb_readoptions_create();
  char *err = NULL;
  r->db = rocksdb_open(r->opts, path, &err);
  if (!r->db) {
    int code = rdb_fail(err, "open");
    if (code == TROUPE_EBUSY) {
      err = NULL;
      r->db = rocksdb_open_for_read_only(r->opts, path, 0, &err);
      if (r->db) r->ro = 1;
      else code = rdb_fail(err, "open (read-only)");
    }
    if (!r->db) {
      rocksdb_options_destroy(r->opts);
      rocksdb_writeoptions_destroy(r->wopts);
      rocksdb_readoptions_destroy(r->ropts);
      pthread_mutex_destroy(&r->mu);
      free(r->dir);
      free(r);
      return code;
    }
  }
  *out = &r->base;
  return 0;
}

static void rdb_close(pj_store *s) {
  rdb_store *r = (rdb_store *)s;
  rocksdb_close(r->db);
  rocksdb_options_destroy(r->opts);
  rocksdb_writeoptions_destroy(r->wopts);
  rocksdb_readoptions_destroy(r->ropts);
  pthread_mutex_destroy(&r->mu);
  free(r->dir);
  free(r);
}

static int get_rec(rdb_store *r, const char *pfx, const char *name,
                   char **val, size_t *len) {
  char key[512];
  size_t kl = mkkey(key, sizeof key, pfx, name);
  char *err = NULL;
  *val = rocksdb_get(r->db, r->ropts, key, kl, len, &err);
  if (err) return rdb_fail(err, "get");
  return 0;
}

static int rdb_get_locked(rdb_store *r, const char *name, pj_row *row,
                          pj_ctl *ctl);

/* Store-level reads hold mu: a read-only handle's database may be swapped
 * for a read-write one (upgrade) */
static int rdb_get(pj_store *s, const char *name, pj_row *row, pj_ctl *ctl) {
  rdb_store *r = (rdb_store *)s;
  pthread_mutex_lock(&r->mu);
  int rc = rdb_get_locked(r, name, row, ctl);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

static int rdb_get_locked(rdb_store *r, const char *name, pj_row *row,
                          pj_ctl *ctl) {
  memset(row, 0, sizeof *row);
  memset(ctl, 0, sizeof *ctl);
  char *v;
  size_t n;
  int found = 0;
  int rc = get_rec(r, KEY_ROW, name, &v, &n);
  if (rc < 0) return rc;
  if (v) {
    found = 1;
    rc = pj_row_decode((uint8_t *)v, n, row);
    rocksdb_free(v);
    if (rc < 0) return rc;
  }
  rc = get_rec(r, KEY_CTL, name, &v, &n);
  if (rc < 0) return rc;
  if (v) {
    found = 1;
    rc = pj_ctl_decode((uint8_t *)v, n, ctl);
    rocksdb_free(v);
    if (rc < 0) return rc;
  }
  return found ? 0 : TROUPE_ENOENT;
}

static int has_name(char **v, size_t n, const char *s, size_t len) {
  for (size_t i = 0; i < n; i++)
    if (strlen(v[i]) == len && memcmp(v[i], s, len) == 0) return 1;
  return 0;
}

static int rdb_list(pj_store *s, char ***names, size_t *count) {
  rdb_store *r = (rdb_store *)s;
  pthread_mutex_lock(&r->mu);
  char **v = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  const char *pfx[2] = {KEY_ROW, KEY_CTL};
  for (int k = 0; k < 2 && rc == 0; k++) {
    rocksdb_iterator_t *it = rocksdb_create_iterator(r->db, r->ropts);
    for (rocksdb_iter_seek(it, pfx[k], KEY_PFX_LEN); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
      size_t kl;
      const char *key = rocksdb_iter_key(it, &kl);
      if (kl < KEY_PFX_LEN || memcmp(key, pfx[k], KEY_PFX_LEN) != 0) break;
      const char *nm = key + KEY_PFX_LEN;
      size_t nl = kl - KEY_PFX_LEN;
      if (has_name(v, n, nm, nl)) continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 16;
        char **nv = realloc(v, cap * sizeof *v);
        if (!nv) { rc = TROUPE_ENOMEM; break; }
        v = nv;
      }
      if (!(v[n] = strndup(nm, nl))) { rc = TROUPE_ENOMEM; break; }
      n++;
    }
    rocksdb_iter_destroy(it);
  }
  pthread_mutex_unlock(&r->mu);
  if (rc < 0) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
    return troupe__err(rc, "projection list");
  }
  *names = v;
  *count = n;
  return 0;
}

/* r->mu held */
static int apply_request(rdb_store *r, const char *name, int op,
                         uint64_t off) {
  char *v;
  size_t n;
  pj_ctl c;
  memset(&c, 0, sizeof c);
  int rc = get_rec(r, KEY_CTL, name, &v, &n);
  if (rc < 0) return rc;
  if (v) {
    rc = pj_ctl_decode((uint8_t *)v, n, &c);
    rocksdb_free(v);
    if (rc < 0) return rc;
  }
  pj_ctl_apply(&c, op, off);
  uint8_t buf[64];
  size_t bl = pj_ctl_encode(&c, buf);
  char key[512];
  size_t kl = mkkey(key, sizeof key, KEY_CTL, name);
  char *err = NULL;
  rocksdb_put(r->db, r->wopts, key, kl, (const char *)buf, bl, &err);
  return err ? rdb_fail(err, "put") : 0;
}

/* A request from a process that could only open the directory read-only:
 * a file "requests/<ns>-<pid>-<n>.req" holding "OP OFFSET NAME". */
static int queue_request_file(rdb_store *r, const char *name, int op,
                              uint64_t off) {
  static atomic_uint counter;
  char dir[4200], tmp[4400], fin[4400];
  snprintf(dir, sizeof dir, "%s/requests", r->dir);
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return troupe__err(TROUPE_EIO, "cannot create %s: %s", dir, strerror(errno));
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned k = atomic_fetch_add(&counter, 1);
  snprintf(fin, sizeof fin, "%s/%020llu-%d-%u.req", dir,
           (unsigned long long)ts.tv_sec * 1000000000ull +
               (unsigned long long)ts.tv_nsec,
           (int)getpid(), k);
  snprintf(tmp, sizeof tmp, "%s/.tmp-%d-%u", dir, (int)getpid(), k);
  FILE *f = fopen(tmp, "w");
  if (!f) return troupe__err(TROUPE_EIO, "cannot write %s: %s", tmp, strerror(errno));
  fprintf(f, "%d %llu %s\n", op, (unsigned long long)off, name);
  int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, fin) < 0) {
    unlink(tmp);
    return troupe__err(TROUPE_EIO, "cannot queue request in %s", dir);
  }
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Apply queued request files, oldest first (r->mu held). */
static void ingest_requests(rdb_store *r) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/requests", r->dir);
  DIR *d = opendir(dir);
  if (!d) return;
  char *files[256];
  size_t n = 0;
  struct dirent *e;
  while (n < 256 && (e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 4 && strcmp(e->d_name + l - 4, ".req") == 0 && e->d_name[0] != '.')
      if ((files[n] = strdup(e->d_name))) n++;
  }
  closedir(d);
  qsort(files, n, sizeof *files, cmp_str);
  for (size_t i = 0; i < n; i++) {
    char path[4500];
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    FILE *f = fopen(path, "r");
    int op;
    unsigned long long off;
    char name[TROUPE_PROJECTION_MAX_NAME + 32];
    int ok = f && fscanf(f, "%d %llu %70s", &op, &off, name) == 3;
    if (f) fclose(f);
    if (ok && apply_request(r, name, op, off) < 0) { free(files[i]); continue; }
    unlink(path);
    free(files[i]);
  }
}

static int rdb_request(pj_store *s, const char *name, int op, uint64_t off) {
  rdb_store *r = (rdb_store *)s;
  pthread_mutex_lock(&r->mu);
  int rc = r->ro ? queue_request_file(r, name, op, off)
                 : apply_request(r, name, op, off);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

/* A handle opened read-only because another process held the database
 * (say, the tool for a moment) becomes read-write once the lock is free:
 * a projection that failed on it succeeds at its next restart. */
static int upgrade(rdb_store *r) {
  pthread_mutex_lock(&r->mu);
  if (r->ro) {
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(r->opts, r->dir, &err);
    if (db) {
      rocksdb_close(r->db);
      r->db = db;
      r->ro = 0;
    } else {
      rocksdb_free(err);
    }
  }
  int ro = r->ro;
  pthread_mutex_unlock(&r->mu);
  return ro ? troupe__err(TROUPE_EBUSY,
                          "offset store %s is opened read-only (another "
                          "process holds the database)", r->dir)
            : 0;
}

static int rdb_session_open(pj_store *s, pj_session **out) {
  rdb_store *r = (rdb_store *)s;
  int rc = upgrade(r);
  if (rc < 0) return rc;
  pj_session *ss = calloc(1, sizeof *ss);
  if (!ss) return troupe__err(TROUPE_ENOMEM, "offset store session");
  ss->store = s;
  ss->db = (struct rocksdb_t *)r->db;
  *out = ss;
  return 0;
}

static void rdb_session_close(pj_session *ss) {
  if (ss->wb) rocksdb_writebatch_destroy((rocksdb_writebatch_t *)ss->wb);
  free(ss);
}

static int rdb_load(pj_session *ss, const char *name, pj_row *row,
                    pj_ctl *ctl) {
  rdb_store *r = (rdb_store *)ss->store;
  pthread_mutex_lock(&r->mu);
  ingest_requests(r);
  int rc = rdb_get_locked(r, name, row, ctl);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

static int rdb_begin(pj_session *ss, const char *name, int check,
                     uint64_t expect) {
  rdb_store *r = (rdb_store *)ss->store;
  if (check) {
    char *v;
    size_t n;
    pj_row row;
    memset(&row, 0, sizeof row);
    int rc = get_rec(r, KEY_ROW, name, &v, &n);
    if (rc < 0) return rc;
    if (v) {
      rc = pj_row_decode((uint8_t *)v, n, &row);
      rocksdb_free(v);
      if (rc < 0) return rc;
    }
    if (row.offset != expect)
      return troupe__err(TROUPE_ECONFLICT,
                         "projection %s: stored offset %llu, expected %llu",
                         name, (unsigned long long)row.offset,
                         (unsigned long long)expect);
  }
  if (ss->wb) rocksdb_writebatch_clear((rocksdb_writebatch_t *)ss->wb);
  else ss->wb = (struct rocksdb_writebatch_t *)rocksdb_writebatch_create();
  return 0;
}

static int put_row(rdb_store *r, rocksdb_writebatch_t *wb, const char *name,
                   const pj_row *row) {
  uint8_t buf[700];
  size_t bl = pj_row_encode(row, buf, sizeof buf);
  if (bl > sizeof buf) return troupe__err(TROUPE_ETOOBIG, "projection row");
  char key[512];
  size_t kl = mkkey(key, sizeof key, KEY_ROW, name);
  if (wb) {
    rocksdb_writebatch_put(wb, key, kl, (const char *)buf, bl);
    return 0;
  }
  char *err = NULL;
  rocksdb_put(r->db, r->wopts, key, kl, (const char *)buf, bl, &err);
  return err ? rdb_fail(err, "put") : 0;
}

static int rdb_commit(pj_session *ss, const char *name, const pj_row *row) {
  rdb_store *r = (rdb_store *)ss->store;
  rocksdb_writebatch_t *wb = (rocksdb_writebatch_t *)ss->wb;
  if (!wb) return put_row(r, NULL, name, row);
  int rc = put_row(r, wb, name, row);
  if (rc == 0 && pj_test_fault && pj_test_fault("before-commit", row->offset))
    rc = troupe__err(TROUPE_EIO, "injected fault before commit");
  if (rc == 0) {
    char *err = NULL;
    rocksdb_write(r->db, r->wopts, wb, &err);
    if (err) rc = rdb_fail(err, "write");
  }
  rocksdb_writebatch_clear(wb);
  return rc;
}

static void rdb_abort(pj_session *ss) {
  if (ss->wb) rocksdb_writebatch_clear((rocksdb_writebatch_t *)ss->wb);
}

static int rdb_publish(pj_session *ss, const char *name, const pj_row *row) {
  /* the worker is the row's only writer: read the committed offset and
   * ack back and write the new status around them */
  rdb_store *r = (rdb_store *)ss->store;
  char *v;
  size_t n;
  pj_row cur;
  memset(&cur, 0, sizeof cur);
  int rc = get_rec(r, KEY_ROW, name, &v, &n);
  if (rc < 0) return rc;
  if (v) {
    rc = pj_row_decode((uint8_t *)v, n, &cur);
    rocksdb_free(v);
    if (rc < 0) return rc;
  }
  pj_row w = *row;
  w.offset = cur.offset;
  w.ack_seq = cur.ack_seq;
  return put_row(r, NULL, name, &w);
}

struct rocksdb_t *troupe_offset_store_rocksdb(troupe_offset_store *os) {
  if (!os || os->s->kind != PJ_ROCKSDB) return NULL;
  return (struct rocksdb_t *)((rdb_store *)os->s)->db;
}

const pj_store_vt pj_rocksdb_vt = {
  .name = "rocksdb",
  .open = rdb_open,
  .close = rdb_close,
  .get = rdb_get,
  .list = rdb_list,
  .request = rdb_request,
  .session_open = rdb_session_open,
  .session_close = rdb_session_close,
  .load = rdb_load,
  .begin = rdb_begin,
  .commit = rdb_commit,
  .abort = rdb_abort,
  .publish = rdb_publish,
};
