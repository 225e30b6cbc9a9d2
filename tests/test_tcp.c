/*
 * test_tcp.c: the TCP transport (cluster/tcp.c) at the frame level, over
 * 127.0.0.1 with ephemeral ports: round trips between two loops on two
 * threads and with a child process, wrong secrets, malformed frames, a
 * peer that stops reading, reconnection after a restart, simultaneous
 * connects and handshake timeouts.
 *
 *   test_tcp [TEST...]
 *   test_tcp --child echo ADDR SECRET   (spawned by test_process)
 */
#include "tt.h"

#include "cluster/tcp.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------ */
/* A node: a loop on its own thread with one TCP transport.            */
/*
 * Nodes are static, never on a test's stack, and every started node is
 * registered: a failed assertion returns from the test with its nodes
 * still running, and RUN() then stops them. (On the stack, their loop
 * threads went on using the returned frame and crashed inside libuv.)
 */

typedef struct node node;
typedef void (*node_fn)(node *n, void *arg);

struct node {
  const char *name;
  uv_loop_t loop;
  uv_async_t async;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  node_fn fn;
  void *arg;
  bool busy, stop;
  troupe__transport *t;
  troupe__transport_opts opts;
  char secret[32];
  char bound[64];
  bool running;            /* started and not stopped (test thread) */
  /* loop-thread state, read by the test through node_call or atomics */
  troupe__conn *up[8];     /* the conns up now, oldest first */
  int nup;
  char peer_name[64];
  uint64_t peer_inc;
  atomic_int ups, downs, live, last_err, refusal_logs, warn_logs;
  atomic_ullong frames, bytes;
  troupe__conn *mark;      /* frames received through it are counted */
  atomic_ullong marked;
  uint64_t next_seq;       /* expected sequence number of echoes */
  atomic_int out_of_order;
  atomic_bool echo;
  bool destroyed;
};

static node *g_nodes[8];   /* the running nodes (test thread) */

static void on_up(void *data, troupe__conn *c, const troupe__peer_info *p) {
  node *n = data;
  if (n->nup < (int)(sizeof n->up / sizeof n->up[0])) n->up[n->nup++] = c;
  snprintf(n->peer_name, sizeof n->peer_name, "%s", p->system);
  n->peer_inc = p->incarnation;
  atomic_fetch_add(&n->ups, 1);
  atomic_fetch_add(&n->live, 1);
}

static void on_down(void *data, troupe__conn *c, int err) {
  node *n = data;
  for (int i = 0; i < n->nup; i++)
    if (n->up[i] == c) {
      memmove(&n->up[i], &n->up[i + 1], (size_t)(n->nup - i - 1) * sizeof c);
      n->nup--;
      break;
    }
  atomic_store(&n->last_err, err);
  atomic_fetch_add(&n->downs, 1);
  atomic_fetch_sub(&n->live, 1);
}

static void on_frame(void *data, troupe__conn *c, uint8_t flags,
                     const uint8_t *body, size_t len) {
  node *n = data;
  atomic_fetch_add(&n->frames, 1);
  atomic_fetch_add(&n->bytes, len);
  if (c == n->mark) atomic_fetch_add(&n->marked, 1);
  if (atomic_load(&n->echo)) {
    troupe__tcp_send_frame(c, flags, body, len);
    return;
  }
  if (len >= 8) {
    uint64_t seq;
    memcpy(&seq, body, 8);
    if (seq != n->next_seq) atomic_fetch_add(&n->out_of_order, 1);
    n->next_seq = seq + 1;
  }
}

static void on_log(void *data, troupe_log_level lvl, const char *msg) {
  node *n = data;
  if (lvl >= TROUPE_LOG_WARN) atomic_fetch_add(&n->warn_logs, 1);
  if (strstr(msg, "refused")) atomic_fetch_add(&n->refusal_logs, 1);
  if (getenv("TEST_TCP_VERBOSE"))
    fprintf(stderr, "[%s] %s %s\n", n->name, troupe_log_level_name(lvl), msg);
}

static void async_cb(uv_async_t *a) {
  node *n = a->data;
  pthread_mutex_lock(&n->mu);
  if (n->busy && n->fn) {
    node_fn fn = n->fn;
    n->fn = NULL;
    pthread_mutex_unlock(&n->mu);
    fn(n, n->arg);
    pthread_mutex_lock(&n->mu);
    n->busy = false;
    pthread_cond_broadcast(&n->cv);
  }
  if (n->stop) uv_close((uv_handle_t *)&n->async, NULL);
  pthread_mutex_unlock(&n->mu);
}

static void *node_main(void *arg) {
  node *n = arg;
  uv_run(&n->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* Run fn(n, arg) on n's loop thread and wait for it. */
static void node_call(node *n, node_fn fn, void *arg) {
  pthread_mutex_lock(&n->mu);
  while (n->busy) pthread_cond_wait(&n->cv, &n->mu);
  n->fn = fn;
  n->arg = arg;
  n->busy = true;
  uv_async_send(&n->async);
  while (n->busy) pthread_cond_wait(&n->cv, &n->mu);
  pthread_mutex_unlock(&n->mu);
}

static void do_create(node *n, void *arg) {
  troupe__transport_cbs cbs = {n, on_up, on_down, NULL};
  troupe__tcp_hooks hooks = {n, on_frame, on_log};
  int rc = troupe__tcp_create_on(&n->loop, NULL, &n->opts, &cbs, &hooks,
                                 &n->t);
  *(int *)arg = rc;
}

static int node_start(node *n, const char *name, const char *secret,
                      size_t max_outbound) {
  memset(n, 0, sizeof *n);
  n->name = name;
  snprintf(n->secret, sizeof n->secret, "%s", secret ? secret : "");
  n->opts.system = name;
  n->opts.secret = (const uint8_t *)n->secret;
  n->opts.secret_len = strlen(n->secret);
  n->opts.max_outbound = max_outbound;
  n->opts.reconnect_min_ms = 20;
  n->opts.reconnect_max_ms = 200;
  n->opts.handshake_timeout_ms = 1000;
  n->opts.max_frame = 1 << 20;
  n->opts.heartbeat_ms = 200;
  n->opts.idle_timeout_ms = 5000;
  pthread_mutex_init(&n->mu, NULL);
  pthread_cond_init(&n->cv, NULL);
  uv_loop_init(&n->loop);
  uv_async_init(&n->loop, &n->async, async_cb);
  n->async.data = n;
  pthread_create(&n->th, NULL, node_main, n);
  n->running = true;
  for (size_t i = 0; i < sizeof g_nodes / sizeof g_nodes[0]; i++)
    if (!g_nodes[i]) {
      g_nodes[i] = n;
      break;
    }
  int rc = -1;
  node_call(n, do_create, &rc);
  return rc;
}

typedef struct listen_arg { const char *addr; int rc; } listen_arg;
static void do_listen(node *n, void *arg) {
  listen_arg *a = arg;
  a->rc = n->t->cls->listen(n->t, a->addr, n->bound, sizeof n->bound);
}

static int node_listen(node *n, const char *addr) {
  listen_arg a = {addr ? addr : "127.0.0.1:0", -1};
  node_call(n, do_listen, &a);
  return a.rc;
}

typedef struct connect_arg { const char *addr; troupe__conn *c; int rc; } connect_arg;
static void do_connect(node *n, void *arg) {
  connect_arg *a = arg;
  a->rc = n->t->cls->connect(n->t, a->addr, &a->c);
}

static troupe__conn *node_connect(node *n, const char *addr) {
  connect_arg a = {addr, NULL, -1};
  node_call(n, do_connect, &a);
  return a.rc ? NULL : a.c;
}

static void destroyed_cb(void *data) { ((node *)data)->destroyed = true; }
static void do_destroy(node *n, void *arg) {
  if (n->t) n->t->cls->destroy(n->t, destroyed_cb, n);
  n->t = NULL;
}

/* Destroy the transport, keep the thread (a restart creates another). */
static void node_destroy_transport(node *n) {
  node_call(n, do_destroy, NULL);
}

static int node_stop(node *n) {
  if (!n->running) return -1;
  n->running = false;
  for (size_t i = 0; i < sizeof g_nodes / sizeof g_nodes[0]; i++)
    if (g_nodes[i] == n) g_nodes[i] = NULL;
  node_call(n, do_destroy, NULL);
  pthread_mutex_lock(&n->mu);
  n->stop = true;
  uv_async_send(&n->async);
  pthread_mutex_unlock(&n->mu);
  pthread_join(n->th, NULL);
  int rc = uv_loop_close(&n->loop);
  pthread_mutex_destroy(&n->mu);
  pthread_cond_destroy(&n->cv);
  return rc == 0 && n->destroyed ? 0 : -1;
}

typedef struct stats_arg { troupe__tcp_stats st; } stats_arg;
static void do_stats(node *n, void *arg) {
  if (n->t) troupe__tcp_get_stats(n->t, &((stats_arg *)arg)->st);
}
static troupe__tcp_stats node_stats(node *n) {
  stats_arg a;
  memset(&a, 0, sizeof a);
  node_call(n, do_stats, &a);
  return a.st;
}

/* Send count frames of size bytes (>= 8: a sequence number first). */
typedef struct send_arg {
  troupe__conn *c;
  uint64_t first, count;
  size_t size;
  uint64_t sent, full;
  int rc;
} send_arg;
static void do_send(node *n, void *arg) {
  send_arg *a = arg;
  uint8_t body[4096];
  memset(body, 0x5a, sizeof body);
  a->sent = a->full = 0;
  a->rc = 0;
  for (uint64_t i = 0; i < a->count; i++) {
    uint64_t seq = a->first + i;
    memcpy(body, &seq, 8);
    int rc = troupe__tcp_send_frame(a->c, 0, body, a->size);
    if (rc == TROUPE_EFULL) { a->full++; continue; }
    if (rc) { a->rc = rc; return; }
    a->sent++;
  }
}

typedef struct raw_arg { troupe__conn *c; const void *p; size_t n; int rc; } raw_arg;
static void do_raw(node *n, void *arg) {
  raw_arg *a = arg;
  a->rc = troupe__tcp_send_raw(a->c, a->p, a->n);
}

typedef struct pause_arg { troupe__conn *c; bool paused; int rc; } pause_arg;
static void do_pause(node *n, void *arg) {
  pause_arg *a = arg;
  a->rc = troupe__tcp_pause(a->c, a->paused);
}

/* Stop the nodes a failed test left running. */
static void nodes_reap(void) {
  for (size_t i = 0; i < sizeof g_nodes / sizeof g_nodes[0]; i++)
    if (g_nodes[i]) node_stop(g_nodes[i]);
}

#define RUN(fn)    \
  do {             \
    TT_RUN(fn);    \
    nodes_reap();  \
  } while (0)

/* The conn that came up last and is still up, or NULL. */
static void do_get_last(node *n, void *arg) {
  *(troupe__conn **)arg = n->nup ? n->up[n->nup - 1] : NULL;
}
static troupe__conn *node_last_up(node *n) {
  troupe__conn *c = NULL;
  node_call(n, do_get_last, &c);
  return c;
}

/* What the last handshake told about the peer. */
typedef struct peer_arg { char name[64]; uint64_t inc; } peer_arg;
static void do_get_peer(node *n, void *arg) {
  peer_arg *a = arg;
  snprintf(a->name, sizeof a->name, "%s", n->peer_name);
  a->inc = n->peer_inc;
}
static peer_arg node_peer(node *n) {
  peer_arg a;
  node_call(n, do_get_peer, &a);
  return a;
}

static void do_mark(node *n, void *arg) { n->mark = arg; }
static void do_close(node *n, void *arg) { n->t->cls->close(arg); }

/* Is exactly one conn up, inbound or outbound as asked? */
typedef struct only_arg { bool inbound, yes; } only_arg;
static void do_only_up(node *n, void *arg) {
  only_arg *a = arg;
  a->yes = n->nup == 1 && n->up[0]->inbound == a->inbound;
}
static bool node_only_up(node *n, bool inbound) {
  only_arg a = {inbound, false};
  node_call(n, do_only_up, &a);
  return a.yes;
}

typedef struct up_arg { troupe__conn *c; bool up; } up_arg;
static void do_conn_up(node *n, void *arg) {
  up_arg *a = arg;
  a->up = troupe__tcp_conn_up(a->c);
}
static bool node_conn_up(node *n, troupe__conn *c) {
  up_arg a = {c, false};
  node_call(n, do_conn_up, &a);
  return a.up;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_roundtrip_threads(void) {
  static node a, b;
  TT_EQ_INT(node_start(&a, "alpha", "s3cret", 0), 0);
  TT_EQ_INT(node_start(&b, "beta", "s3cret", 0), 0);
  atomic_store(&b.echo, true);
  TT_EQ_INT(node_listen(&b, NULL), 0);
  TT_ASSERT(strncmp(b.bound, "127.0.0.1:", 10) == 0);
  TT_ASSERT(strcmp(b.bound, "127.0.0.1:0") != 0);
  troupe__conn *c = node_connect(&a, b.bound);
  TT_ASSERT(c != NULL);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.ups) == 1 && atomic_load(&b.ups) == 1,
                          5000));
  TT_EQ_STR(node_peer(&a).name, "beta");
  TT_EQ_STR(node_peer(&b).name, "alpha");
  TT_ASSERT(!c->inbound);
  /* 200k frames of 8..200 bytes in bursts, echoed back in order. */
  const uint64_t N = 200000;
  uint64_t sent = 0;
  for (int burst = 0; sent < N; burst++) {
    send_arg s = {c, sent, 20000, (size_t)(8 + burst * 17 % 193), 0, 0, 0};
    node_call(&a, do_send, &s);
    TT_EQ_INT(s.rc, 0);
    TT_EQ_INT(s.full, 0);
    sent += s.sent;
  }
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.frames) == N, 20000));
  TT_EQ_INT(atomic_load(&b.frames), N);
  TT_EQ_INT(atomic_load(&a.out_of_order), 0);
  troupe__tcp_stats st = node_stats(&a);
  printf("# %llu frames in %llu writes\n", (unsigned long long)st.frames_out,
         (unsigned long long)st.writes);
  TT_EQ_INT(st.frames_out, N);
  TT_ASSERT(st.writes < N / 10);        /* batched */
  /* Drained (a heartbeat may be queued for a moment). */
  TT_ASSERT(TT_WAIT_UNTIL(node_stats(&a).queued == 0, 5000));
  TT_EQ_INT(st.dropped, 0);
  TT_EQ_INT(node_stop(&a), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.downs) == 1, 5000));
  TT_EQ_INT(node_stop(&b), 0);
}

static void test_wrong_secret(void) {
  static node a, b, c;
  TT_EQ_INT(node_start(&a, "alpha", "right", 0), 0);
  TT_EQ_INT(node_start(&b, "beta", "wrong", 0), 0);
  TT_EQ_INT(node_start(&c, "gamma", "", 0), 0);   /* no secret at all */
  TT_EQ_INT(node_listen(&a, NULL), 0);
  TT_ASSERT(node_connect(&b, a.bound) != NULL);
  TT_ASSERT(node_connect(&c, a.bound) != NULL);
  /* Each side refuses and logs; the clients keep retrying (backoff). */
  TT_ASSERT(TT_WAIT_UNTIL(node_stats(&b).refused >= 2 &&
                          node_stats(&c).refused >= 2, 5000));
  TT_ASSERT(atomic_load(&b.refusal_logs) >= 1);
  /* The server saw the wrong proofs too, and logged them. */
  TT_ASSERT(TT_WAIT_UNTIL(node_stats(&a).refused >= 2, 5000));
  TT_ASSERT(atomic_load(&a.refusal_logs) >= 2);
  TT_ASSERT(atomic_load(&b.warn_logs) >= 1);
  TT_EQ_INT(atomic_load(&a.ups), 0);
  TT_EQ_INT(atomic_load(&b.ups), 0);
  TT_EQ_INT(atomic_load(&c.ups), 0);
  TT_EQ_INT(node_stop(&b), 0);
  TT_EQ_INT(node_stop(&c), 0);
  TT_EQ_INT(node_stop(&a), 0);
}

static void test_malformed_closes_one(void) {
  static node a, b, c;
  TT_EQ_INT(node_start(&a, "alpha", "k", 0), 0);
  TT_EQ_INT(node_start(&b, "beta", "k", 0), 0);
  TT_EQ_INT(node_start(&c, "gamma", "k", 0), 0);
  TT_EQ_INT(node_listen(&b, NULL), 0);
  troupe__conn *ca = node_connect(&a, b.bound);
  troupe__conn *cc = node_connect(&c, b.bound);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.ups) == 2 && atomic_load(&a.ups) == 1 &&
                          atomic_load(&c.ups) == 1, 5000));
  /* Garbage: an unknown kind. */
  raw_arg r = {ca, "\x00\x00\x00\x01\x63\x00x", 7, -1};
  node_call(&a, do_raw, &r);
  TT_EQ_INT(r.rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.downs) == 1, 5000));
  TT_EQ_INT(atomic_load(&b.last_err), TROUPE_EDECODE);
  /* The other link is untouched. */
  send_arg s = {cc, 0, 10, 16, 0, 0, 0};
  node_call(&c, do_send, &s);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.frames) == 10, 5000));
  TT_EQ_INT(atomic_load(&c.downs), 0);
  /* a's outbound conn reconnects; then an oversized length. */
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.ups) == 2 && atomic_load(&b.ups) == 3,
                          5000));
  uint8_t h[6];
  troupe__frame_head(h, TROUPE__FRAME_ENVELOPE, 0, (2u << 20));
  raw_arg r2 = {ca, h, 6, -1};
  node_call(&a, do_raw, &r2);
  TT_EQ_INT(r2.rc, 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.downs) == 2, 5000));
  TT_EQ_INT(atomic_load(&b.last_err), TROUPE_EDECODE);
  TT_ASSERT(node_stats(&b).malformed >= 2);
  send_arg s2 = {cc, 10, 10, 16, 0, 0, 0};
  node_call(&c, do_send, &s2);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.frames) == 20, 5000));
  TT_EQ_INT(atomic_load(&c.downs), 0);
  TT_EQ_INT(atomic_load(&b.out_of_order), 0);
  TT_EQ_INT(node_stop(&a), 0);
  TT_EQ_INT(node_stop(&c), 0);
  TT_EQ_INT(node_stop(&b), 0);
}

static void test_slow_reader_bounded(void) {
  static node a, b;
  const size_t bound = 1 << 20;
  TT_EQ_INT(node_start(&a, "alpha", "k", bound), 0);
  TT_EQ_INT(node_start(&b, "beta", "k", 0), 0);
  TT_EQ_INT(node_listen(&b, NULL), 0);
  troupe__conn *c = node_connect(&a, b.bound);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.ups) == 1 && atomic_load(&a.ups) == 1,
                          5000));
  troupe__conn *in = node_last_up(&b);
  pause_arg p = {in, true, -1};
  node_call(&b, do_pause, &p);
  TT_EQ_INT(p.rc, 0);
  /* Push 64 MiB at a reader that reads nothing: the socket buffers fill,
   * then the queue hits its bound and sends are refused (counted). */
  uint64_t accepted = 0, full = 0;
  size_t peak = 0;
  for (int i = 0; i < 64; i++) {
    send_arg s = {c, accepted, 1024, 1024, 0, 0, 0};
    node_call(&a, do_send, &s);
    TT_EQ_INT(s.rc, 0);
    accepted += s.sent;
    full += s.full;
    troupe__tcp_stats st = node_stats(&a);
    if (st.queued > peak) peak = st.queued;
  }
  troupe__tcp_stats st = node_stats(&a);
  printf("# accepted %llu frames, refused %llu, peak queue %zu bytes\n",
         (unsigned long long)accepted, (unsigned long long)full, peak);
  TT_ASSERT(full > 0);
  TT_EQ_INT(st.full, full);
  TT_ASSERT(peak <= bound + 2048);
  TT_ASSERT(accepted < 64 * 1024);
  /* The reader resumes: everything accepted arrives, in order. */
  p.paused = false;
  node_call(&b, do_pause, &p);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.frames) == accepted, 10000));
  TT_EQ_INT(atomic_load(&b.out_of_order), 0);
  TT_ASSERT(TT_WAIT_UNTIL(node_stats(&a).queued == 0, 5000));
  TT_EQ_INT(node_stop(&a), 0);
  TT_EQ_INT(node_stop(&b), 0);
}

static void test_reconnect_after_restart(void) {
  static node a, b;
  TT_EQ_INT(node_start(&a, "alpha", "k", 0), 0);
  TT_EQ_INT(node_start(&b, "beta", "k", 0), 0);
  TT_EQ_INT(node_listen(&b, NULL), 0);
  char addr[64];
  snprintf(addr, sizeof addr, "%s", b.bound);
  troupe__conn *c = node_connect(&a, addr);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.ups) == 1, 5000));
  uint64_t inc1 = node_peer(&a).inc;
  /* b goes away: a sees the link down and retries with backoff. */
  node_destroy_transport(&b);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.downs) == 1, 5000));
  TT_EQ_INT(atomic_load(&a.last_err), TROUPE_ECONNLOST);
  TT_ASSERT(TT_WAIT_UNTIL(node_stats(&a).connects >= 3, 5000));
  TT_ASSERT(!node_conn_up(&a, c) || atomic_load(&a.ups) == 1);
  /* b restarts on the same port (a new incarnation). */
  int rc = -1;
  node_call(&b, do_create, &rc);
  TT_EQ_INT(rc, 0);
  TT_EQ_INT(node_listen(&b, addr), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.ups) == 2, 5000));
  TT_ASSERT(node_peer(&a).inc != inc1);
  send_arg s = {c, 0, 100, 32, 0, 0, 0};
  node_call(&a, do_send, &s);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.frames) == 100, 5000));
  TT_EQ_INT(node_stop(&a), 0);
  TT_EQ_INT(node_stop(&b), 0);
}

static void test_simultaneous_connect(void) {
  static node a, b;
  TT_EQ_INT(node_start(&a, "alpha", "k", 0), 0);
  TT_EQ_INT(node_start(&b, "beta", "k", 0), 0);
  TT_EQ_INT(node_listen(&a, NULL), 0);
  TT_EQ_INT(node_listen(&b, NULL), 0);
  troupe__conn *ca = node_connect(&a, b.bound);
  troupe__conn *cb = node_connect(&b, a.bound);
  TT_ASSERT(ca && cb);
  /* The link opened by the lower address wins (docs/remoting.md): it
   * settles as the lower node's outbound conn = the higher node's inbound
   * one. On the way either side may see two links up for a moment (each
   * accepted the other's hello before sending its own); the higher node
   * then closes its outbound one. */
  bool a_low = strcmp(a.bound, b.bound) < 0;
  node *lo = a_low ? &a : &b, *hi = a_low ? &b : &a;
  TT_ASSERT(TT_WAIT_UNTIL(node_only_up(lo, false) && node_only_up(hi, true),
                          5000));
  /* And it stays settled: the higher node's standby conn retries (every
   * reconnect_max_ms) and is refused as a duplicate, twice more. */
  int lo_ups = atomic_load(&lo->ups), hi_ups = atomic_load(&hi->ups);
  uint64_t refused = node_stats(lo).refused;
  TT_ASSERT(TT_WAIT_UNTIL(node_stats(lo).refused >= refused + 2, 5000));
  TT_ASSERT(node_only_up(lo, false) && node_only_up(hi, true));
  TT_EQ_INT(atomic_load(&lo->ups), lo_ups);
  TT_EQ_INT(atomic_load(&hi->ups), hi_ups);
  TT_EQ_INT(atomic_load(&a.live), 1);
  TT_EQ_INT(atomic_load(&b.live), 1);
  troupe__conn *la = node_last_up(&a), *lb = node_last_up(&b);
  TT_ASSERT(la && lb);
  send_arg s = {la, 0, 50, 16, 0, 0, 0};
  node_call(&a, do_send, &s);
  send_arg s2 = {lb, 0, 50, 16, 0, 0, 0};
  node_call(&b, do_send, &s2);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.frames) == 50 &&
                          atomic_load(&b.frames) == 50, 5000));
  TT_EQ_INT(node_stop(&a), 0);
  TT_EQ_INT(node_stop(&b), 0);
}

/* Frames that reach a socket after its conn was closed (the peer sent them
 * before it saw the shutdown) are delivered through another up conn to the
 * same peer, not lost. */
static void test_closed_link_frames_delivered(void) {
  static node a, b;
  TT_EQ_INT(node_start(&a, "alpha", "k", 0), 0);
  TT_EQ_INT(node_start(&b, "beta", "k", 0), 0);
  TT_EQ_INT(node_listen(&b, NULL), 0);
  troupe__conn *c1 = node_connect(&a, b.bound);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.ups) == 1 && atomic_load(&b.ups) == 1,
                          5000));
  troupe__conn *in1 = node_last_up(&b);
  troupe__conn *c2 = node_connect(&a, b.bound);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.ups) == 2 && atomic_load(&b.ups) == 2,
                          5000));
  TT_ASSERT(c1 && c2 && in1);
  /* a stops reading link 1; b's frames on it wait in the socket buffers. */
  pause_arg p = {c1, true, -1};
  node_call(&a, do_pause, &p);
  TT_EQ_INT(p.rc, 0);
  send_arg s = {in1, 0, 1000, 64, 0, 0, 0};
  node_call(&b, do_send, &s);
  TT_EQ_INT(s.sent, 1000);
  TT_ASSERT(TT_WAIT_UNTIL(node_stats(&b).queued == 0, 5000));   /* written */
  /* a closes link 1: its socket reads on to EOF, and the frames come up
   * through link 2. */
  node_call(&a, do_mark, c2);
  node_call(&a, do_close, c1);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.frames) == 1000 &&
                          atomic_load(&b.downs) == 1, 5000));
  TT_EQ_INT(atomic_load(&a.marked), 1000);
  TT_EQ_INT(atomic_load(&a.out_of_order), 0);
  TT_EQ_INT(node_stats(&a).dropped, 0);
  TT_EQ_INT(node_stats(&b).dropped, 0);
  TT_EQ_INT(atomic_load(&a.downs), 0);      /* close: no on_down */
  TT_EQ_INT(node_stop(&a), 0);
  TT_EQ_INT(node_stop(&b), 0);
}

/* Heartbeat timing comes from the options; an idle timeout that is not
 * over the heartbeat interval is refused. */
static void test_timing_options(void) {
  uv_loop_t loop;
  TT_EQ_INT(uv_loop_init(&loop), 0);
  troupe__transport_opts o = {.system = "alpha", .heartbeat_ms = 500,
                              .idle_timeout_ms = 500};
  troupe__transport *t = NULL;
  TT_EQ_INT(troupe__tcp_create_on(&loop, NULL, &o, NULL, NULL, &t),
            TROUPE_EINVAL);
  TT_ASSERT(t == NULL);
  o.heartbeat_ms = 20000;           /* over the default idle timeout */
  o.idle_timeout_ms = 0;
  TT_EQ_INT(troupe__tcp_create_on(&loop, NULL, &o, NULL, NULL, &t),
            TROUPE_EINVAL);
  o.idle_timeout_ms = 60000;
  TT_EQ_INT(troupe__tcp_create_on(&loop, NULL, &o, NULL, NULL, &t), 0);
  t->cls->destroy(t, NULL, NULL);
  TT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  TT_EQ_INT(uv_loop_close(&loop), 0);
}

/* A stranger that connects and says nothing, or garbage, is dropped. */
static void test_handshake_timeout_and_garbage(void) {
  static node b;
  TT_EQ_INT(node_start(&b, "beta", "k", 0), 0);
  TT_EQ_INT(node_listen(&b, NULL), 0);
  char host[64];
  int port;
  TT_EQ_INT(troupe__addr_parse(b.bound, host, sizeof host, &port), 0);
  struct sockaddr_in sa;
  uv_ip4_addr(host, port, &sa);
  int s1 = socket(AF_INET, SOCK_STREAM, 0), s2 = socket(AF_INET, SOCK_STREAM, 0);
  TT_EQ_INT(connect(s1, (struct sockaddr *)&sa, sizeof sa), 0);
  TT_EQ_INT(connect(s2, (struct sockaddr *)&sa, sizeof sa), 0);
  /* s2: a "hello" frame with a huge length: closed at once. */
  uint8_t h[6];
  troupe__frame_head(h, TROUPE__FRAME_HANDSHAKE, 0, 100000);
  TT_EQ_INT(write(s2, h, 6), 6);
  char buf[64];
  TT_EQ_INT(read(s2, buf, sizeof buf), 0);          /* EOF */
  /* s1: silent: closed after the handshake timeout (1 s). */
  uint64_t t0 = tt_now_ms();
  TT_EQ_INT(read(s1, buf, sizeof buf), 0);
  TT_ASSERT(tt_now_ms() - t0 < 3000);
  close(s1);
  close(s2);
  TT_EQ_INT(atomic_load(&b.ups), 0);
  TT_EQ_INT(node_stop(&b), 0);
}

/* ------------------------------------------------------------------ */
/* Across processes                                                    */

static int child_echo(const char *addr, const char *secret) {
  node n;
  if (node_start(&n, "child", secret, 0)) return 2;
  atomic_store(&n.echo, true);
  if (!node_connect(&n, addr)) return 3;
  /* Echo until the parent goes away for good. */
  while (atomic_load(&n.downs) == 0 || atomic_load(&n.live) > 0) {
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
  }
  node_stop(&n);
  return 0;
}

static pid_t spawn_child(const char *addr, const char *secret) {
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return -1;
  self[len] = '\0';
  pid_t pid = fork();
  if (pid == 0) {
    execl(self, self, "--child", "echo", addr, secret, (char *)NULL);
    _exit(127);
  }
  return pid;
}

static void test_process_roundtrip(void) {
  static node a;
  TT_EQ_INT(node_start(&a, "parent", "proc-secret", 0), 0);
  TT_EQ_INT(node_listen(&a, NULL), 0);
  pid_t pid = spawn_child(a.bound, "proc-secret");
  TT_ASSERT(pid > 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.ups) == 1, 10000));
  TT_EQ_STR(node_peer(&a).name, "child");
  troupe__conn *c = node_last_up(&a);
  TT_ASSERT(c && c->inbound);
  const uint64_t N = 100000;
  for (uint64_t sent = 0; sent < N; sent += 10000) {
    send_arg s = {c, sent, 10000, 24, 0, 0, 0};
    node_call(&a, do_send, &s);
    TT_EQ_INT(s.sent, 10000);
  }
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.frames) == N, 20000));
  TT_EQ_INT(atomic_load(&a.out_of_order), 0);
  /* The child is killed: its link goes down here. */
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.downs) == 1, 5000));
  /* A child with a wrong secret is refused. */
  pid = spawn_child(a.bound, "not-the-secret");
  TT_ASSERT(pid > 0);
  TT_ASSERT(TT_WAIT_UNTIL(node_stats(&a).refused >= 1, 10000));
  TT_EQ_INT(atomic_load(&a.ups), 1);
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  TT_EQ_INT(node_stop(&a), 0);
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "--child") == 0)
    return child_echo(argv[3], argv[4]);
  signal(SIGPIPE, SIG_IGN);
  tt_init(argc, argv);
  RUN(test_roundtrip_threads);
  RUN(test_wrong_secret);
  RUN(test_malformed_closes_one);
  RUN(test_slow_reader_bounded);
  RUN(test_reconnect_after_restart);
  RUN(test_simultaneous_connect);
  RUN(test_closed_link_frames_delivered);
  RUN(test_timing_options);
  RUN(test_handshake_timeout_and_garbage);
  RUN(test_process_roundtrip);
  return tt_done();
}
