/* test_pg_connloss.c: the PostgreSQL backend across lost connections.
 *
 * - A proxy between the store and the server cuts the connection exactly
 *   at COMMIT: once after the server committed (the reply is dropped) and
 *   once before (the COMMIT is dropped). Both outcomes are unknown to the
 *   store; it must resolve them (by its group token) and report each
 *   append exactly once, with exactly one copy of its events.
 * - Writers append while another connection terminates the store's
 *   backend again and again.
 * - The server restarts (fast, then immediate) under writers; the store
 *   recovers without being reopened. This one starts a private server
 *   with scripts/pg-test-server.sh (restarting the shared one would break
 *   the tests running beside it); skipped with the reason when it cannot.
 * Afterwards every acknowledged event is present exactly once, in order,
 * and the offsets of the whole journal are 1..N with no gap.
 *
 * The server comes from TROUPE_PG_URL, as for test_journal_pg; skipped
 * (exit 77) without it. */
#include "tt.h"
#include "pg_util.h"
#include "troupe/troupe.h"
#include "troupe/journal.h"

#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int nschema;
static char schemas[16][64];
static int nschemas;

/* A new schema name (dropped at the end) and a spec for it; `conn`
 * overrides keywords of the URL (later keywords win in libpq). */
static void make_spec(char *spec, size_t n, char *schema, const char *conn) {
  snprintf(schema, 64, "troupe_cl_%d_%d", (int)getpid(), ++nschema);
  snprintf(schemas[nschemas++], 64, "%s", schema);
  snprintf(spec, n, "pg:%s schema=%s%s%s", url, schema, conn ? " " : "",
           conn ? conn : "");
}

static troupe_store_options opts(int sync) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = 1;
  o.sync = sync;
  return o;
}

/* --- verifying a journal ------------------------------------------------- */

typedef struct check {
  uint64_t last, n;
  int gaps;
  char pid[32];
  int bad_payload;
} check;

static int offsets_cb(int status, const troupe_event *ev, size_t n, int done,
                      void *data) {
  check *c = data;
  (void)done;
  if (status < 0) {
    c->gaps++;
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (ev[i].offset != c->last + 1) c->gaps++;
    c->last = ev[i].offset;
    c->n++;
  }
  return 0;
}

/* Replay of one id: seq 1..n in order, each payload "<pid>:<seq>". */
static int replay_cb(int status, const troupe_event *ev, size_t n, int done,
                     void *data) {
  check *c = data;
  (void)done;
  if (status < 0) {
    c->gaps++;
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    char want[64];
    snprintf(want, sizeof want, "%s:%llu", c->pid,
             (unsigned long long)ev[i].seq);
    if (ev[i].seq != c->n + 1) c->gaps++;
    if (ev[i].payload_len != strlen(want) ||
        memcmp(ev[i].payload, want, ev[i].payload_len) != 0)
      c->bad_payload++;
    c->n++;
  }
  return 0;
}

/* Every id has exactly its acknowledged events, and the journal's
 * offsets are 1..total. */
static void verify(troupe_journal *j, int nids, const uint64_t *nacked) {
  uint64_t total = 0;
  for (int i = 0; i < nids; i++) {
    check c;
    memset(&c, 0, sizeof c);
    snprintf(c.pid, sizeof c.pid, "w%d", i);
    TT_EQ_INT(troupe_journal_replay_sync(j, c.pid, 1, UINT64_MAX, 0,
                                         replay_cb, &c), 0);
    TT_EQ_INT(c.gaps, 0);
    TT_EQ_INT(c.bad_payload, 0);
    TT_EQ_INT(c.n, nacked[i]);
    total += nacked[i];
  }
  check all;
  memset(&all, 0, sizeof all);
  TT_EQ_INT(troupe_journal_by_slice_sync(j, 0, TROUPE_JOURNAL_SLICES - 1, 0, 0,
                                         offsets_cb, &all), 0);
  TT_EQ_INT(all.gaps, 0);
  TT_EQ_INT(all.n, total);
  TT_EQ_INT(all.last, total);
}

/* --- writers --------------------------------------------------------------- */

typedef struct writers {
  troupe_journal *j;
  int n;
  pthread_t t[8];
  uint64_t acked[8];         /* per id, written by its thread only */
  atomic_uint_fast64_t total;
  atomic_int stop, failed;
  int last_rc;
} writers;

typedef struct warg {
  writers *w;
  int idx;
} warg;

static warg wargs[8];

static void *writer_main(void *arg) {
  warg *a = arg;
  writers *w = a->w;
  char pid[16], payload[64];
  snprintf(pid, sizeof pid, "w%d", a->idx);
  while (!atomic_load(&w->stop)) {
    uint64_t seq = w->acked[a->idx] + 1, head = 0;
    snprintf(payload, sizeof payload, "%s:%llu", pid,
             (unsigned long long)seq);
    troupe_event e;
    memset(&e, 0, sizeof e);
    e.manifest = "m";
    e.payload = payload;
    e.payload_len = strlen(payload);
    int rc = troupe_journal_append_sync(w->j, pid, seq - 1, &e, 1, &head);
    if (rc == 0) {
      if (head != seq) {
        w->last_rc = -1000;
        atomic_fetch_add(&w->failed, 1);
        return NULL;
      }
      w->acked[a->idx] = seq;
      atomic_fetch_add(&w->total, 1);
    } else {
      /* not acknowledged: must not be counted; stop this writer (its
       * next expected seq would be unknown) */
      w->last_rc = rc;
      fprintf(stderr, "writer %s: %s\n", pid, troupe_errmsg());
      atomic_fetch_add(&w->failed, 1);
      return NULL;
    }
  }
  return NULL;
}

static void writers_start(writers *w, troupe_journal *j, int n) {
  memset(w, 0, sizeof *w);
  w->j = j;
  w->n = n;
  for (int i = 0; i < n; i++) {
    wargs[i] = (warg){w, i};
    pthread_create(&w->t[i], NULL, writer_main, &wargs[i]);
  }
}

static void writers_stop(writers *w) {
  atomic_store(&w->stop, 1);
  for (int i = 0; i < w->n; i++) pthread_join(w->t[i], NULL);
}

/* Progress: at least `k` more acknowledgements within `ms`. */
static int progress(writers *w, uint64_t k, uint64_t ms) {
  uint64_t from = atomic_load(&w->total);
  return TT_WAIT_UNTIL(atomic_load(&w->total) >= from + k ||
                           atomic_load(&w->failed), ms) &&
         !atomic_load(&w->failed);
}

/* --- a proxy that cuts the connection at COMMIT ---------------------------- */

enum { PASS = 0, CUT_AFTER_COMMIT = 1, DROP_COMMIT = 2 };

typedef struct proxy {
  char dir[64], target[160];
  int port, lfd;
  int cfd[8], sfd[8], cut_pending[8];
  atomic_int mode, cuts, stop;
  pthread_t t;
} proxy;

static const char commit_tag[] = "COMMIT";   /* + its NUL: 7 bytes */

static int has_commit(const char *b, size_t n) {
  return memmem(b, n, commit_tag, sizeof commit_tag) != NULL;
}

static void pair_close(proxy *p, int i) {
  close(p->cfd[i]);
  close(p->sfd[i]);
  p->cfd[i] = p->sfd[i] = -1;
  p->cut_pending[i] = 0;
}

/* A unix socket address; -1 when the path does not fit. */
static int unix_addr(struct sockaddr_un *a, const char *path) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n >= sizeof a->sun_path) return -1;
  memcpy(a->sun_path, path, n + 1);
  return 0;
}

static int unix_connect(const char *path) {
  struct sockaddr_un a;
  if (unix_addr(&a, path) < 0) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

static void *proxy_main(void *arg) {
  proxy *p = arg;
  char buf[65536];
  while (!atomic_load(&p->stop)) {
    struct pollfd fds[17];
    int map[17], nf = 0;
    fds[nf].fd = p->lfd;
    fds[nf].events = POLLIN;
    map[nf++] = -1;
    for (int i = 0; i < 8; i++) {
      if (p->cfd[i] < 0) continue;
      fds[nf] = (struct pollfd){p->cfd[i], POLLIN, 0};
      map[nf++] = i;
      fds[nf] = (struct pollfd){p->sfd[i], POLLIN, 0};
      map[nf++] = i + 100;
    }
    if (poll(fds, (nfds_t)nf, 50) <= 0) continue;
    for (int k = 0; k < nf; k++) {
      if (!fds[k].revents) continue;
      if (map[k] == -1) {
        int c = accept(p->lfd, NULL, NULL);
        if (c < 0) continue;
        int s = unix_connect(p->target), slot = -1;
        for (int i = 0; i < 8 && slot < 0; i++)
          if (p->cfd[i] < 0) slot = i;
        if (s < 0 || slot < 0) {
          close(c);
          if (s >= 0) close(s);
          continue;
        }
        p->cfd[slot] = c;
        p->sfd[slot] = s;
        continue;
      }
      int i = map[k] % 100, from_server = map[k] >= 100;
      if (p->cfd[i] < 0) continue;
      int in = from_server ? p->sfd[i] : p->cfd[i];
      int out = from_server ? p->cfd[i] : p->sfd[i];
      ssize_t n = read(in, buf, sizeof buf);
      if (n <= 0) {
        pair_close(p, i);
        continue;
      }
      int mode = atomic_load(&p->mode);
      if (!from_server && has_commit(buf, (size_t)n)) {
        if (mode == DROP_COMMIT) {          /* the server never sees it */
          atomic_store(&p->mode, PASS);
          atomic_fetch_add(&p->cuts, 1);
          pair_close(p, i);
          continue;
        }
        if (mode == CUT_AFTER_COMMIT) p->cut_pending[i] = 1;
      }
      if (from_server && p->cut_pending[i] && has_commit(buf, (size_t)n)) {
        /* the server committed and said so; the client never hears it */
        atomic_store(&p->mode, PASS);
        atomic_fetch_add(&p->cuts, 1);
        pair_close(p, i);
        continue;
      }
      for (ssize_t at = 0; at < n;) {
        ssize_t m = write(out, buf + at, (size_t)(n - at));
        if (m <= 0) break;
        at += m;
      }
    }
  }
  for (int i = 0; i < 8; i++)
    if (p->cfd[i] >= 0) pair_close(p, i);
  return NULL;
}

/* Start a proxy in a fresh directory for the server of TROUPE_PG_URL (a
 * unix socket one); 0, or -1 when the URL is not a socket setup. */
static int proxy_start(proxy *p) {
  memset(p, 0, sizeof *p);
  for (int i = 0; i < 8; i++) p->cfd[i] = p->sfd[i] = -1;
  char *err = NULL;
  PQconninfoOption *o = PQconninfoParse(url, &err), *it;
  if (!o) {
    PQfreemem(err);
    return -1;
  }
  const char *host = NULL, *port = "5432";
  for (it = o; it->keyword; it++) {
    if (strcmp(it->keyword, "host") == 0 && it->val) host = it->val;
    if (strcmp(it->keyword, "port") == 0 && it->val) port = it->val;
  }
  int ok = host && host[0] == '/';
  if (ok)
    snprintf(p->target, sizeof p->target, "%s/.s.PGSQL.%s", host, port);
  PQconninfoFree(o);
  if (!ok) return -1;
  snprintf(p->dir, sizeof p->dir, "/tmp/troupe-proxy.XXXXXX");
  if (!mkdtemp(p->dir)) return -1;
  p->port = 5999;
  char path[128];
  snprintf(path, sizeof path, "%s/.s.PGSQL.%d", p->dir, p->port);
  struct sockaddr_un a;
  if (unix_addr(&a, path) < 0) return -1;
  p->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(p->lfd, 8) != 0)
    return -1;
  pthread_create(&p->t, NULL, proxy_main, p);
  return 0;
}

static void proxy_stop(proxy *p) {
  atomic_store(&p->stop, 1);
  pthread_join(p->t, NULL);
  close(p->lfd);
  char path[128];
  snprintf(path, sizeof path, "%s/.s.PGSQL.%d", p->dir, p->port);
  unlink(path);
  rmdir(p->dir);
}

/* The COMMIT's reply is lost after the server committed, then a COMMIT is
 * lost before the server saw it: both appends are reported once,
 * successfully, each with one copy of its events. */
static void test_commit_cut(void) {
  proxy p;
  if (proxy_start(&p) < 0) TT_SKIP("TROUPE_PG_URL is not a unix socket setup");
  char spec[700], schema[64], conn[200];
  snprintf(conn, sizeof conn, "host=%s port=%d", p.dir, p.port);
  make_spec(spec, sizeof spec, schema, conn);
  troupe_store_options o = opts(1);
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  uint64_t acked_n[8] = {0};
  char payload[32];
  troupe_event e;
  memset(&e, 0, sizeof e);
  e.manifest = "m";
  e.payload = payload;

  /* 1: committed, reply lost */
  atomic_store(&p.mode, CUT_AFTER_COMMIT);
  snprintf(payload, sizeof payload, "w0:1");
  e.payload_len = strlen(payload);
  uint64_t h = 0;
  TT_EQ_INT(troupe_journal_append_sync(j, "w0", 0, &e, 1, &h), 0);
  TT_EQ_INT(h, 1);
  TT_EQ_INT(atomic_load(&p.cuts), 1);
  acked_n[0] = 1;

  /* 2: COMMIT never arrives */
  atomic_store(&p.mode, DROP_COMMIT);
  snprintf(payload, sizeof payload, "w0:2");
  e.payload_len = strlen(payload);
  TT_EQ_INT(troupe_journal_append_sync(j, "w0", 1, &e, 1, &h), 0);
  TT_EQ_INT(h, 2);
  TT_EQ_INT(atomic_load(&p.cuts), 2);
  acked_n[0] = 2;

  /* 3: a group of many appends (asynchronous, several ids) cut after
   * its commit */
  atomic_store(&p.mode, CUT_AFTER_COMMIT);
  static acked a[7];
  static char pl[7][32];
  for (int i = 1; i < 8; i++) {
    troupe_event x;
    memset(&x, 0, sizeof x);
    x.manifest = "m";
    snprintf(pl[i - 1], sizeof pl[0], "w%d:1", i);
    x.payload = pl[i - 1];
    x.payload_len = strlen(pl[i - 1]);
    char pid[8];
    snprintf(pid, sizeof pid, "w%d", i);
    atomic_init(&a[i - 1].done, 0);
    TT_EQ_INT(troupe_journal_append(j, pid, 0, &x, 1, acked_cb, &a[i - 1]), 0);
  }
  for (int i = 0; i < 7; i++) {
    TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a[i].done), 30000));
    TT_EQ_INT(a[i].status, 0);
    TT_EQ_INT(a[i].head, 1);
    acked_n[i + 1] = 1;
  }
  TT_EQ_INT(atomic_load(&p.cuts), 3);
  verify(j, 8, acked_n);
  TT_EQ_INT(troupe_journal_close(j), 0);
  proxy_stop(&p);
}

/* Writers while the store's backend is terminated again and again. */
static void test_terminate_loop(void) {
  char spec[700], schema[64], conn[100], q[300];
  snprintf(conn, sizeof conn, "application_name=troupe_cl_kill_%d",
           (int)getpid());
  make_spec(spec, sizeof spec, schema, conn);
  troupe_store_options o = opts(0);
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  writers w;
  writers_start(&w, j, 4);
  snprintf(q, sizeof q,
           "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
           " WHERE application_name = 'troupe_cl_kill_%d'", (int)getpid());
  int kills = 0;
  for (int i = 0; i < 40 && !atomic_load(&w.failed); i++) {
    TT_ASSERT(progress(&w, 1 + (uint64_t)(i % 7), 20000));
    TT_EQ_INT(sql(q), 0);
    kills++;
  }
  TT_ASSERT(progress(&w, 20, 20000));
  writers_stop(&w);
  TT_EQ_INT(atomic_load(&w.failed), 0);
  printf("# %d terminations, %llu appends acknowledged\n", kills,
         (unsigned long long)atomic_load(&w.total));
  verify(j, 4, w.acked);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* Start a private server (restarting the shared one would break the
 * tests running next to this one): its URL and directory, or -1. */
static int private_server(const char *src, char *purl, size_t un, char *dir,
                          size_t dn) {
  char cmd[700], line[700];
  snprintf(cmd, sizeof cmd, "'%s/scripts/pg-test-server.sh' start 2>/dev/null",
           src);
  FILE *f = popen(cmd, "r");
  if (!f) return -1;
  purl[0] = dir[0] = 0;
  while (fgets(line, sizeof line, f)) {
    char *v = strchr(line, '\''), *e = v ? strrchr(v + 1, '\'') : NULL;
    if (!v || !e) continue;
    *e = 0;
    if (strstr(line, "TROUPE_PG_URL=")) snprintf(purl, un, "%s", v + 1);
    if (strstr(line, "TROUPE_PG_DIR=")) snprintf(dir, dn, "%s", v + 1);
  }
  int st = pclose(f);
  return st == 0 && purl[0] && dir[0] ? 0 : -1;
}

/* The server restarts (fast, then immediate) under writers with
 * synchronous commits: nothing acknowledged is lost, the store goes on
 * without being reopened. Runs on a private server of its own. */
static void test_server_restart(void) {
  const char *src = getenv("top_srcdir");
  if (!src) src = "..";
  char purl[600], dir[300], cmd[1200];
  if (private_server(src, purl, sizeof purl, dir, sizeof dir) < 0)
    TT_SKIP("cannot start a private server with %s/scripts/pg-test-server.sh"
            " (PostgreSQL server binaries missing?)", src);
  const char *shared = url;
  url = purl;
  char spec[1000], schema[64];
  make_spec(spec, sizeof spec, schema, NULL);
  nschemas--;                  /* dropped with its server */
  troupe_store_options o = opts(1);
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  writers w;
  writers_start(&w, j, 4);
  TT_ASSERT(progress(&w, 20, 20000));
  snprintf(cmd, sizeof cmd, "'%s/scripts/pg-test-server.sh' restart '%s'"
           " >/dev/null 2>&1", src, dir);
  TT_EQ_INT(system(cmd), 0);
  TT_ASSERT(progress(&w, 20, 30000));
  /* immediate: the server crashes and recovers from its WAL */
  snprintf(cmd, sizeof cmd,
           "d='%s'; b=${PG_BIN:-/usr/lib/postgresql/15/bin};"
           " [ -x \"$b/pg_ctl\" ] || b=$(dirname \"$(ls -d"
           " /usr/lib/postgresql/*/bin/pg_ctl | tail -n 1)\");"
           " u=$(stat -c %%U \"$d\");"
           " if [ \"$(id -u)\" = 0 ] && [ \"$u\" != root ]; then"
           " r=\"runuser -u $u --\"; else r=; fi;"
           " (cd \"$d\" && $r \"$b/pg_ctl\" -D \"$d/data\" -l \"$d/server.log\""
           " -m immediate -w -t 60 restart) >/dev/null 2>&1", dir);
  TT_EQ_INT(system(cmd), 0);
  TT_ASSERT(progress(&w, 20, 30000));
  writers_stop(&w);
  TT_EQ_INT(atomic_load(&w.failed), 0);
  printf("# 2 restarts, %llu appends acknowledged\n",
         (unsigned long long)atomic_load(&w.total));
  verify(j, 4, w.acked);
  TT_EQ_INT(troupe_journal_close(j), 0);
  url = shared;
  snprintf(cmd, sizeof cmd, "'%s/scripts/pg-test-server.sh' stop '%s'"
           " >/dev/null 2>&1", src, dir);
  TT_EQ_INT(system(cmd), 0);
}

int main(int argc, char **argv) {
  url = getenv("TROUPE_PG_URL");
  if (!url || !*url) {
    printf("# SKIP test_pg_connloss: TROUPE_PG_URL is not set (start a "
           "server with: eval \"$(scripts/pg-test-server.sh start)\")\n");
    fprintf(stderr, "test_pg_connloss: skipped: TROUPE_PG_URL is not set\n");
    return 77;
  }
  PGconn *c = admin();
  if (!c) {
    fprintf(stderr, "test_pg_connloss: TROUPE_PG_URL is set but the server "
                    "is not reachable\n");
    return 1;
  }
  PQfinish(c);
  tt_init(argc, argv);
  TT_RUN(test_commit_cut);
  TT_RUN(test_terminate_loop);
  TT_RUN(test_server_restart);
  int rc = tt_done();
  for (int i = 0; i < nschemas; i++) {
    char q[1100];
    snprintf(q, sizeof q, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", schemas[i]);
    sql(q);
  }
  return rc;
}
