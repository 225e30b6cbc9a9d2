/*
 * tcp.c: the TCP transport over libuv (docs/remoting.md, "The TCP
 * transport").
 *
 * A conn (troupe__conn) is a logical link to one peer; a sock is one TCP
 * socket. An outbound conn outlives its sockets: when one dies it makes a
 * new one after a backoff. An inbound conn is created when an accepted
 * socket finishes its handshake and dies with it.
 *
 * Writes: frames are appended to the socket's `out` buffer (send encodes
 * the envelope straight into it); a prepare handle flushes every socket
 * with queued bytes once per loop turn by swapping `out` with `fly` and
 * writing `fly` in one uv_write. While a write is in flight new frames
 * gather in `out`, so under load one write carries thousands of frames.
 * out + fly never exceed max_outbound: beyond it send says TROUPE_EFULL.
 *
 * Reads: a read decodes every frame it holds and hands the envelopes to
 * the system. A socket that has delivered TCP_READ_BATCH envelopes while
 * the system's run queue is not empty stops reading until the next loop
 * turn (the prepare handle starts it again after the dispatcher ran), so
 * a fast sender cannot fill the mailboxes faster than they are handled:
 * the backlog waits in the kernel and TCP's window pushes back.
 *
 * Duplicate links: when both nodes connect to each other at once, the
 * socket opened by the node with the lower address (strcmp of the
 * advertised "host:port") wins. The higher node closes its own outbound
 * socket to that peer (its conn waits in standby until the peer's
 * inbound conn goes down); the lower node refuses the higher's hello with
 * TROUPE_EEXIST while its own outbound socket is handshaking or up. A
 * retired socket shuts down its writing side and reads on until EOF:
 * envelopes the peer sent on it before it saw the shutdown are delivered
 * through the winning link's conn (conn_for_orphan), not lost; frames
 * still queued at the peer when it sees EOF are its dead letters.
 */
#include "cluster/tcp.h"

#include <stdarg.h>
#include <stdio.h>

#define TCP_RBUF (256u << 10)
/* Envelopes a socket hands to its system before it lets the dispatcher
 * run: beyond this, while the system has work queued, the socket stops
 * reading for one loop turn (see read_cb). */
#define TCP_READ_BATCH 4096u
#define TCP_DEFAULT_OUTBOUND ((size_t)64 << 20)

enum {
  C_BACKOFF = 0,    /* outbound: waiting on the timer to connect */
  C_CONNECTING,     /* outbound: socket connecting or handshaking */
  C_UP,
  C_STANDBY,        /* outbound: a duplicate; the peer's link is used */
  C_DEAD            /* inbound after down, or closed */
};

typedef struct tcp tcp;
typedef struct tconn tconn;
typedef struct tsock tsock;

struct tsock {
  uv_tcp_t h;
  tcp *t;
  tconn *c;               /* owner; NULL while an inbound one handshakes
                             and once detached */
  tsock *next, *prev;     /* all live sockets of t */
  tsock *dirty_next;
  uv_connect_t creq;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  troupe__frame_dec dec;
  troupe_buf out, fly;    /* queued frames / frames being written */
  uint64_t out_env, fly_env;  /* envelope frames in each */
  uint32_t rx_env;        /* envelopes delivered since the last yield */
  uint64_t started, last_rx, last_tx;
  troupe__hello mine, theirs;
  bool client, authed, writing, dirty, closing, paused, got_hello;
  bool yielding;          /* reading stopped until the next turn */
};

struct tconn {
  troupe__conn base;      /* first: the interface's view */
  tcp *t;
  tsock *s;               /* current socket, NULL when none */
  tconn *next, *prev;
  int state;
  char target[TROUPE__ADDR_MAX + 1];     /* outbound: where to connect */
  char peer_addr[TROUPE__ADDR_MAX + 1];  /* advertised, once known */
  char peer_name[TROUPE__NAME_MAX + 1];
  uint64_t peer_inc;
  uint32_t attempts;
  uv_timer_t timer;       /* outbound: backoff */
  bool timer_inited;
};

struct tcp {
  troupe__transport base;  /* first */
  uv_loop_t *loop;
  troupe__tcp_hooks hooks;
  char system[TROUPE__NAME_MAX + 1];
  char advertise[TROUPE__ADDR_MAX + 1];   /* "" until listening/given */
  uint64_t incarnation;
  uint8_t *secret;
  size_t secret_len;
  size_t max_frame, max_outbound;
  uint64_t rc_min, rc_max, hs_timeout, hb_ms, idle_ms;
  uv_tcp_t listener;
  bool listening;
  uv_prepare_t prepare;
  uv_timer_t tick;
  tsock *socks;
  tsock *dirty;
  uint32_t nyielding;      /* sockets with yielding set */
  tconn *conns;
  uint8_t *rbuf;
  unsigned open_handles;   /* handles not yet closed (destroy) */
  bool destroying;
  void (*done)(void *);
  void *done_data;
  troupe__tcp_stats st;
};

static void tlog(tcp *t, troupe_log_level lvl, const char *fmt, ...)
    TROUPE_PRINTF(3, 4);

static void tlog(tcp *t, troupe_log_level lvl, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (t->base.sys) troupe__log(t->base.sys, lvl, "tcp", "%s", msg);
  else if (t->hooks.log_fn) t->hooks.log_fn(t->hooks.data, lvl, msg);
  else if (lvl >= TROUPE_LOG_WARN)
    fprintf(stderr, "tcp %s: %s\n", troupe_log_level_name(lvl), msg);
}

static void sock_fail(tsock *s, int err, const char *why);
static void conn_schedule(tconn *c, uint64_t delay);
static void handle_done(tcp *t);
static void prepare_cb(uv_prepare_t *p);
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* ------------------------------------------------------------------ */
/* Addresses                                                           */

static int sockaddr_of(const char *addr, struct sockaddr_storage *ss) {
  char host[TROUPE__ADDR_MAX + 1];
  int port, rc = troupe__addr_parse(addr, host, sizeof host, &port);
  if (rc) return rc;
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return troupe__err(TROUPE_EINVAL, "address '%s': the host must be an IP "
                     "address or localhost", addr);
}

static void addr_text(const struct sockaddr *sa, char *out, size_t n) {
  char ip[64] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(out, n, "[%s]:%d", ip, port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(out, n, "%s:%d", ip, port);
  }
}

static void peer_text(tsock *s, char *out, size_t n) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&s->h, (struct sockaddr *)&ss, &len) == 0)
    addr_text((struct sockaddr *)&ss, out, n);
  else
    snprintf(out, n, "?");
}

/* Our advertised address; a node that neither listens nor was told one
 * names itself by the socket's local address. */
static void our_addr(tsock *s, char *out, size_t n) {
  if (s->t->advertise[0]) {
    snprintf(out, n, "%s", s->t->advertise);
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&s->h, (struct sockaddr *)&ss, &len) == 0)
    addr_text((struct sockaddr *)&ss, out, n);
  else
    snprintf(out, n, "0.0.0.0:1");
}

/* ------------------------------------------------------------------ */
/* Sockets                                                             */

static tsock *sock_new(tcp *t) {
  tsock *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (uv_tcp_init(t->loop, &s->h)) {
    free(s);
    return NULL;
  }
  s->h.data = s;
  s->t = t;
  s->started = s->last_rx = s->last_tx = uv_now(t->loop);
  troupe__frame_dec_init(&s->dec, TROUPE__FRAME_MAX_HANDSHAKE);
  s->next = t->socks;
  if (t->socks) t->socks->prev = s;
  t->socks = s;
  t->open_handles++;
  uv_tcp_nodelay(&s->h, 1);
  return s;
}

static void sock_free_cb(uv_handle_t *h) {
  tsock *s = h->data;
  tcp *t = s->t;
  troupe__frame_dec_free(&s->dec);
  troupe_buf_free(&s->out);
  troupe_buf_free(&s->fly);
  free(s);
  handle_done(t);
}

/* Close a socket; it must already be detached from its conn. */
static void sock_close(tsock *s) {
  if (s->closing) return;
  tcp *t = s->t;
  s->closing = true;
  if (s->yielding) {
    s->yielding = false;
    t->nyielding--;
  }
  if (s->dirty) {                 /* off the flush list (rare: linear) */
    for (tsock **pp = &t->dirty; *pp; pp = &(*pp)->dirty_next)
      if (*pp == s) {
        *pp = s->dirty_next;
        break;
      }
    s->dirty = false;
    if (!t->dirty && !t->nyielding) uv_prepare_stop(&t->prepare);
  }
  t->st.queued -= s->out.len + s->fly.len;
  if (s->prev) s->prev->next = s->next;
  else t->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  uv_close((uv_handle_t *)&s->h, sock_free_cb);
}

static void sock_dirty(tsock *s) {
  if (s->dirty || s->closing) return;
  tcp *t = s->t;
  s->dirty = true;
  s->dirty_next = t->dirty;
  if (!t->dirty) uv_prepare_start(&t->prepare, prepare_cb);
  t->dirty = s;
}

static void write_cb(uv_write_t *req, int status);

static void sock_flush(tsock *s) {
  if (s->writing || s->closing || s->out.len == 0) return;
  troupe_buf tmp = s->fly;
  s->fly = s->out;
  s->out = tmp;
  s->out.len = 0;
  s->fly_env = s->out_env;
  s->out_env = 0;
  uv_buf_t b = uv_buf_init((char *)s->fly.data, (unsigned)s->fly.len);
  int rc = uv_write(&s->wreq, (uv_stream_t *)&s->h, &b, 1, write_cb);
  if (rc) {
    sock_fail(s, TROUPE_EIO, uv_strerror(rc));
    return;
  }
  s->writing = true;
  s->last_tx = uv_now(s->t->loop);
  s->t->st.writes++;
}

static void write_cb(uv_write_t *req, int status) {
  tsock *s = TROUPE_CONTAINER_OF(req, tsock, wreq);
  tcp *t = s->t;
  s->writing = false;
  if (!s->closing) t->st.queued -= s->fly.len;
  t->st.bytes_out += status == 0 ? s->fly.len : 0;
  t->st.frames_out += status == 0 ? s->fly_env : 0;
  s->fly.len = 0;
  s->fly_env = 0;
  if (s->fly.cap > ((size_t)4 << 20)) troupe_buf_free(&s->fly);
  if (status < 0) {
    if (!s->closing) sock_fail(s, TROUPE_EIO, uv_strerror(status));
    return;
  }
  sock_flush(s);
}

/* A socket that yielded reads again (prepare: the dispatcher has run). */
static void sock_resume(tsock *s) {
  s->yielding = false;
  s->t->nyielding--;
  s->rx_env = 0;
  if (!s->closing && !s->paused)
    uv_read_start((uv_stream_t *)&s->h, alloc_cb, read_cb);
}

static void prepare_cb(uv_prepare_t *p) {
  tcp *t = p->data;
  tsock *s = t->dirty;
  t->dirty = NULL;
  uv_prepare_stop(&t->prepare);
  while (s) {
    tsock *n = s->dirty_next;
    s->dirty = false;
    s->dirty_next = NULL;
    sock_flush(s);
    s = n;
  }
  if (TROUPE_UNLIKELY(t->nyielding))
    for (s = t->socks; s && t->nyielding; s = s->next)
      if (s->yielding) sock_resume(s);
}

/* Append one frame to the socket's queue (no bound check). */
static int sock_put(tsock *s, uint8_t kind, uint8_t flags, const void *body,
                    size_t len) {
  size_t before = s->out.len;
  int rc = troupe__frame_append(&s->out, kind, flags, body, len);
  if (rc) return rc;
  s->t->st.queued += s->out.len - before;
  sock_dirty(s);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Conns                                                               */

static tconn *conn_new(tcp *t, bool inbound) {
  tconn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->base.t = &t->base;
  c->base.inbound = inbound;
  c->t = t;
  c->next = t->conns;
  if (t->conns) t->conns->prev = c;
  t->conns = c;
  return c;
}

static void conn_timer_closed(uv_handle_t *h) {
  tconn *c = h->data;
  tcp *t = c->t;
  free(c);
  handle_done(t);
}

static void conn_unlink(tconn *c) {
  tcp *t = c->t;
  if (c->prev) c->prev->next = c->next;
  else if (t->conns == c) t->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
}

/* Unlink and free a conn (its socket must be detached already). */
static void conn_free(tconn *c) {
  conn_unlink(c);
  c->state = C_DEAD;
  if (c->timer_inited) {
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
  } else {
    free(c);
  }
}

/* Detach the conn's socket: count what it still held as dropped. */
static tsock *conn_detach(tconn *c) {
  tsock *s = c->s;
  if (!s) return NULL;
  uint64_t lost = s->out_env + s->fly_env;
  c->s = NULL;
  s->c = NULL;
  if (lost) {
    c->t->st.dropped += lost;
    if (c->t->base.sys && !c->t->hooks.on_frame)
      troupe__transport_dropped(&c->t->base, lost, TROUPE_ECONNLOST);
  }
  s->out_env = s->fly_env = 0;
  return s;
}

/* Wake the outbound conns in standby for a peer whose link went down. */
static void wake_standby(tcp *t, const char *peer_addr) {
  for (tconn *o = t->conns; o; o = o->next)
    if (!o->base.inbound && o->state == C_STANDBY &&
        strcmp(o->peer_addr, peer_addr) == 0)
      conn_schedule(o, 0);
}

/* The conn lost its socket (already detached). */
static void conn_lost(tconn *c, int err, bool was_up) {
  tcp *t = c->t;
  if (was_up) t->st.downs++;
  if (c->base.inbound) {
    char peer[TROUPE__ADDR_MAX + 1];
    snprintf(peer, sizeof peer, "%s", c->peer_addr);
    c->state = C_DEAD;
    /* Unlinked first: on_down may destroy the transport. */
    conn_unlink(c);
    if (was_up && t->base.cbs.on_down)
      t->base.cbs.on_down(t->base.cbs.data, &c->base, err);
    conn_free(c);
    if (!t->destroying) wake_standby(t, peer);
    return;
  }
  if (c->state == C_DEAD) return;
  if (err == TROUPE_EEXIST) {
    c->state = C_STANDBY;
    conn_schedule(c, t->rc_max);
  } else {
    c->state = C_BACKOFF;
    uint64_t d = t->rc_min;
    for (uint32_t i = 0; i < c->attempts && d < t->rc_max; i++) d *= 2;
    if (d > t->rc_max) d = t->rc_max;
    /* Jitter: 75%..100% so that restarted peers do not retry in step. */
    uint64_t r = 0;
    troupe__random_bytes(&r, sizeof r);
    d = d - (d / 4) * (r % 1000) / 1000;
    c->attempts++;
    conn_schedule(c, d);
  }
  if (was_up && t->base.cbs.on_down)
    t->base.cbs.on_down(t->base.cbs.data, &c->base, err);
}

/* A socket failed: close it and tell its conn. */
static void sock_fail(tsock *s, int err, const char *why) {
  if (s->closing) return;
  tcp *t = s->t;
  tconn *c = s->c;
  char peer[80];
  peer_text(s, peer, sizeof peer);
  bool up = c && c->state == C_UP && c->s == s;
  tlog(t, up ? TROUPE_LOG_INFO : TROUPE_LOG_DEBUG,
       "connection %s %s (%s): %s", s->client ? "to" : "from",
       c ? (c->peer_addr[0] ? c->peer_addr : c->target) : "?", peer,
       why ? why : troupe_strerror(err));
  if (c) conn_detach(c);
  sock_close(s);
  if (c) conn_lost(c, err, up);
}

/* Close a duplicate socket gently: stop writing, read until EOF. */
static void shutdown_cb(uv_shutdown_t *req, int status) {
  tsock *s = TROUPE_CONTAINER_OF(req, tsock, sreq);
  if (status < 0) sock_close(s);
}

static void sock_retire(tsock *s) {
  if (s->closing) return;
  if (s->c) conn_detach(s->c);
  if (s->paused) {          /* read to EOF even if its conn was paused */
    s->paused = false;
    uv_read_start((uv_stream_t *)&s->h, alloc_cb, read_cb);
  }
  if (uv_shutdown(&s->sreq, (uv_stream_t *)&s->h, shutdown_cb)) sock_close(s);
}

/* ------------------------------------------------------------------ */
/* Handshake                                                           */

static int hs_refuse(tsock *s, int code, const char *fmt, ...)
    TROUPE_PRINTF(3, 4);

/* Refuse a peer: log it (WARN), tell it why, close after the write. */
static int hs_refuse(tsock *s, int code, const char *fmt, ...) {
  tcp *t = s->t;
  char reason[200], peer[80];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  peer_text(s, peer, sizeof peer);
  t->st.refused++;
  tlog(t, code == TROUPE_EEXIST ? TROUPE_LOG_DEBUG : TROUPE_LOG_WARN,
       "refused %s %s (%s): %s", s->client ? "server" : "peer",
       s->got_hello ? s->theirs.addr : "?", peer, reason);
  if (!s->client) {
    troupe_buf b = {0};
    if (troupe__refusal_encode(code, reason, &b) == 0)
      sock_put(s, TROUPE__FRAME_HANDSHAKE_ACK, TROUPE__FRAME_F_REFUSED,
               b.data, b.len);
    troupe_buf_free(&b);
    sock_flush(s);
  }
  return code;
}

static int hs_hello(tsock *s) {
  tcp *t = s->t;
  troupe__hello *h = &s->mine;
  h->version = TROUPE__TCP_PROTO;
  h->protocol = TROUPE__REMOTE_PROTOCOL;
  h->incarnation = t->incarnation;
  snprintf(h->name, sizeof h->name, "%s", t->system);
  our_addr(s, h->addr, sizeof h->addr);
  return troupe__random_bytes(h->nonce, sizeof h->nonce);
}

static bool addr_lower(const char *a, const char *b) {
  return strcmp(a, b) < 0;
}

/* An outbound conn of ours to this peer that is handshaking or up. */
static tconn *outbound_to(tcp *t, const char *peer_addr, bool live_only) {
  for (tconn *o = t->conns; o; o = o->next) {
    if (o->base.inbound) continue;
    const char *pa = o->peer_addr[0] ? o->peer_addr : o->target;
    if (strcmp(pa, peer_addr) != 0) continue;
    if (!live_only) return o;
    /* Up, or TCP connected with our hello sent. */
    if (o->state == C_UP || (o->state == C_CONNECTING && o->s &&
                             !o->s->closing && o->s->mine.addr[0]))
      return o;
  }
  return NULL;
}

static void conn_up(tconn *c, tsock *s) {
  tcp *t = c->t;
  c->state = C_UP;
  c->attempts = 0;
  snprintf(c->peer_addr, sizeof c->peer_addr, "%s", s->theirs.addr);
  snprintf(c->peer_name, sizeof c->peer_name, "%s", s->theirs.name);
  c->peer_inc = s->theirs.incarnation;
  s->authed = true;
  troupe__frame_dec_set_max(&s->dec, t->max_frame);
  t->st.ups++;
  tlog(t, TROUPE_LOG_INFO, "link %s %s (%s) up", s->client ? "to" : "from",
       c->peer_addr, c->peer_name);
  if (t->base.cbs.on_up) {
    troupe__peer_info pi = {c->peer_name, c->peer_addr, c->peer_inc,
                            s->theirs.protocol};
    t->base.cbs.on_up(t->base.cbs.data, &c->base, &pi);
  }
}

/* Server: a client's hello. */
static int hs_on_hello(tsock *s, const uint8_t *p, size_t n) {
  tcp *t = s->t;
  int rc = troupe__hello_decode(p, n, false, &s->theirs);
  if (rc) return hs_refuse(s, TROUPE_EPROTO, "malformed hello");
  s->got_hello = true;
  if (s->theirs.version != TROUPE__TCP_PROTO)
    return hs_refuse(s, TROUPE_EUNSUPPORTED, "wire version %u, we speak %u",
                     s->theirs.version, TROUPE__TCP_PROTO);
  if (s->theirs.protocol != TROUPE__REMOTE_PROTOCOL)
    return hs_refuse(s, TROUPE_EUNSUPPORTED, "remoting protocol %u, we "
                     "speak %u", s->theirs.protocol, TROUPE__REMOTE_PROTOCOL);
  if ((rc = hs_hello(s))) return rc;
  if (s->theirs.incarnation == t->incarnation &&
      strcmp(s->theirs.name, t->system) == 0)
    return hs_refuse(s, TROUPE_EINVAL, "connection to self");
  /* Duplicate rule: our own outbound socket wins when we are lower. */
  if (addr_lower(s->mine.addr, s->theirs.addr) &&
      outbound_to(t, s->theirs.addr, true))
    return hs_refuse(s, TROUPE_EEXIST, "duplicate link (ours wins)");
  troupe__hello_mac(t->secret, t->secret_len, 'S', &s->theirs, &s->mine,
                    s->mine.mac);
  troupe_buf b = {0};
  rc = troupe__hello_encode(&s->mine, true, &b);
  if (!rc)
    rc = sock_put(s, TROUPE__FRAME_HANDSHAKE_ACK, 0, b.data, b.len);
  troupe_buf_free(&b);
  return rc;
}

/* Server: the client's proof. */
static int hs_on_proof(tsock *s, const uint8_t *p, size_t n) {
  tcp *t = s->t;
  if (!s->got_hello || n != TROUPE__SHA256_LEN)
    return hs_refuse(s, TROUPE_EPROTO, "proof out of order");
  uint8_t want[TROUPE__SHA256_LEN];
  troupe__hello_mac(t->secret, t->secret_len, 'C', &s->theirs, &s->mine,
                    want);
  bool ok = troupe__ct_equal(want, p, sizeof want);
  troupe__wipe(want, sizeof want);
  if (!ok)
    return hs_refuse(s, TROUPE_EAUTH, "wrong cluster secret (system '%s')",
                     s->theirs.name);
  /* Accepted. If we are the higher node and have our own link to this
   * peer, theirs wins: ours goes to standby. */
  tconn *o = outbound_to(t, s->theirs.addr, false);
  tconn *c = conn_new(t, true);
  if (!c) return troupe__err(TROUPE_ENOMEM, "inbound conn");
  c->s = s;
  s->c = c;
  conn_up(c, s);
  if (o && !addr_lower(s->mine.addr, s->theirs.addr) &&
      (o->state == C_UP || o->state == C_CONNECTING)) {
    bool was_up = o->state == C_UP;
    if (o->s) sock_retire(o->s);
    o->state = C_STANDBY;
    conn_schedule(o, t->rc_max);
    if (was_up && t->base.cbs.on_down)
      t->base.cbs.on_down(t->base.cbs.data, &o->base, TROUPE_EEXIST);
  }
  return s->closing ? 1 : 0;   /* see the end of on_frame */
}

/* Client: the server's hello + proof, or its refusal. */
static int hs_on_ack(tsock *s, uint8_t flags, const uint8_t *p, size_t n) {
  tcp *t = s->t;
  tconn *c = s->c;
  if (flags & TROUPE__FRAME_F_REFUSED) {
    int code;
    char reason[160];
    if (troupe__refusal_decode(p, n, &code, reason, sizeof reason))
      snprintf(reason, sizeof reason, "(malformed refusal)"), code = TROUPE_EPROTO;
    if (code != TROUPE_EEXIST) {
      t->st.refused++;
      tlog(t, TROUPE_LOG_WARN, "%s refused us: %s", c ? c->target : "?",
           reason);
    }
    sock_fail(s, code == TROUPE_EEXIST ? TROUPE_EEXIST : TROUPE_EAUTH,
              reason);
    return 1;
  }
  if (troupe__hello_decode(p, n, true, &s->theirs))
    return hs_refuse(s, TROUPE_EPROTO, "malformed hello from server");
  s->got_hello = true;
  if (s->theirs.version != TROUPE__TCP_PROTO ||
      s->theirs.protocol != TROUPE__REMOTE_PROTOCOL)
    return hs_refuse(s, TROUPE_EUNSUPPORTED, "server speaks %u/%u",
                     s->theirs.version, s->theirs.protocol);
  uint8_t want[TROUPE__SHA256_LEN];
  troupe__hello_mac(t->secret, t->secret_len, 'S', &s->mine, &s->theirs,
                    want);
  bool ok = troupe__ct_equal(want, s->theirs.mac, sizeof want);
  /* Our proof goes out even when the server's failed, so that the server
   * too sees (and logs) the wrong secret; it proves nothing to a server
   * that does not know our secret. */
  troupe__hello_mac(t->secret, t->secret_len, 'C', &s->mine, &s->theirs,
                    want);
  int rc = sock_put(s, TROUPE__FRAME_HANDSHAKE, TROUPE__FRAME_F_PROOF, want,
                    sizeof want);
  troupe__wipe(want, sizeof want);
  if (!ok)
    return hs_refuse(s, TROUPE_EAUTH, "server '%s' does not know the cluster "
                     "secret", s->theirs.name);
  if (rc) return rc;
  if (!c) return 1;
  conn_up(c, s);
  return s->closing ? 1 : 0;   /* see the end of on_frame */
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

/* The conn to deliver a frame that arrived on a socket its conn has left
 * (a duplicate retired in favour of the peer's link, or a closed conn): the
 * peer sent it before it saw the socket go, and remoting takes a message
 * from any up conn that names the peer. The same incarnation only: a
 * restarted peer's link must not carry the old one's messages. NULL when
 * there is none (the frame is then counted as dropped). */
static tconn *conn_for_orphan(tcp *t, const tsock *s) {
  for (tconn *o = t->conns; o; o = o->next)
    if (o->state == C_UP && o->peer_inc == s->theirs.incarnation &&
        strcmp(o->peer_addr, s->theirs.addr) == 0)
      return o;
  return NULL;
}

static int on_frame(void *data, uint8_t kind, uint8_t flags,
                    const uint8_t *body, size_t len) {
  tsock *s = data;
  tcp *t = s->t;
  if (!s->authed) {
    if (s->client) {
      if (kind == TROUPE__FRAME_HANDSHAKE_ACK && !s->got_hello)
        return hs_on_ack(s, flags, body, len);
    } else if (kind == TROUPE__FRAME_HANDSHAKE) {
      if (!(flags & TROUPE__FRAME_F_PROOF) && !s->got_hello)
        return hs_on_hello(s, body, len);
      if (flags & TROUPE__FRAME_F_PROOF) return hs_on_proof(s, body, len);
    }
    return hs_refuse(s, TROUPE_EPROTO, "frame of kind %u during the "
                     "handshake", kind);
  }
  tconn *c = s->c;
  switch (kind) {
    case TROUPE__FRAME_ENVELOPE: {
      t->st.frames_in++;
      if (!c && !(c = conn_for_orphan(t, s))) {
        t->st.dropped++;
        if (t->base.sys && !t->hooks.on_frame)
          troupe__transport_dropped(&t->base, 1, TROUPE_ECONNLOST);
        break;
      }
      if (t->hooks.on_frame) {
        t->hooks.on_frame(t->hooks.data, &c->base, flags, body, len);
        break;
      }
      troupe__env *e = NULL;
      int rc = troupe__wire_decode(&t->base, body, len, &e);
      if (rc == TROUPE_EDECODE || rc == TROUPE_ETOOBIG) {
        t->st.malformed++;
        return rc;
      }
      if (rc) {
        tlog(t, TROUPE_LOG_WARN, "from %s: undeliverable envelope: %s",
             c->peer_addr, troupe_errmsg());
        t->st.dropped++;
        troupe__transport_dropped(&t->base, 1, rc);
        break;
      }
      if (t->base.cbs.on_recv) t->base.cbs.on_recv(t->base.cbs.data, &c->base, e);
      else troupe__env_release(t->base.sys, e);
      s->rx_env++;
      break;
    }
    case TROUPE__FRAME_HEARTBEAT:
      /* A detached socket has shut down its writing side: no reply. */
      if (!(flags & TROUPE__FRAME_F_REPLY) && !s->out.len && s->c)
        sock_put(s, TROUPE__FRAME_HEARTBEAT, TROUPE__FRAME_F_REPLY, NULL, 0);
      break;
    case TROUPE__FRAME_CONTROL:
      break;                        /* none defined yet: ignored */
    default:
      return troupe__err(TROUPE_EPROTO, "handshake frame after the handshake");
  }
  /* A callback may have closed the transport (stop), or the conn: then
   * the socket is retired but goes on reading to EOF, and what else this
   * read holds is delivered as above, so decoding goes on. */
  return s->closing ? 1 : 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tsock *s = h->data;
  *buf = uv_buf_init((char *)s->t->rbuf, TCP_RBUF);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  tsock *s = st->data;
  tcp *t = s->t;
  if (nread == 0) return;
  if (nread < 0) {
    if (!s->closing) sock_fail(s, TROUPE_ECONNLOST,
                               nread == UV_EOF ? "closed by peer"
                                               : uv_strerror((int)nread));
    else sock_close(s);  /* a retired duplicate read to EOF */
    return;
  }
  if (s->closing) return;
  t->st.bytes_in += (uint64_t)nread;
  s->last_rx = uv_now(t->loop);
  int rc = troupe__frame_dec_feed(&s->dec, (const uint8_t *)buf->base,
                                  (size_t)nread, on_frame, s);
  if (TROUPE_UNLIKELY(s->rx_env >= TCP_READ_BATCH) && rc >= 0 &&
      !s->closing) {
    troupe_system *sys = t->base.sys;
    if (sys && sys->rq_head && !s->yielding) {
      /* the dispatcher is behind: let it run before reading more */
      uv_read_stop((uv_stream_t *)&s->h);
      s->yielding = true;
      t->nyielding++;
      uv_prepare_start(&t->prepare, prepare_cb);
    } else {
      s->rx_env = 0;
    }
  }
  if (rc < 0 && !s->closing) {
    if (s->authed) {
      t->st.malformed++;
      tlog(t, TROUPE_LOG_WARN, "closing link %s: %s",
           s->c ? s->c->peer_addr : "?", troupe_errmsg());
      sock_fail(s, TROUPE_EDECODE, "malformed frame");
    } else {
      if (rc == TROUPE_EPROTO || rc == TROUPE_ETOOBIG) {
        t->st.malformed++;
        tlog(t, TROUPE_LOG_WARN, "handshake failed: %s", troupe_errmsg());
      }
      /* Let a refusal reach the peer, then close. */
      tconn *c = s->c;
      if (c) conn_detach(c);
      if (s->out.len || s->writing) {
        sock_flush(s);
        uv_read_stop((uv_stream_t *)&s->h);
        sock_retire(s);
      } else {
        sock_close(s);
      }
      if (c)
        conn_lost(c, rc == TROUPE_EEXIST ? TROUPE_EEXIST : TROUPE_EAUTH,
                  false);
    }
  }
}

/* ------------------------------------------------------------------ */
/* Connecting and accepting                                            */

static void connect_cb(uv_connect_t *req, int status) {
  tsock *s = TROUPE_CONTAINER_OF(req, tsock, creq);
  tcp *t = s->t;
  if (s->closing) return;
  if (status < 0) {
    sock_fail(s, TROUPE_ECONNREFUSED, uv_strerror(status));
    return;
  }
  int rc = hs_hello(s);
  troupe_buf b = {0};
  if (!rc) rc = troupe__hello_encode(&s->mine, false, &b);
  if (!rc) rc = sock_put(s, TROUPE__FRAME_HANDSHAKE, 0, b.data, b.len);
  troupe_buf_free(&b);
  if (!rc) rc = uv_read_start((uv_stream_t *)&s->h, alloc_cb, read_cb) ? TROUPE_EIO : 0;
  if (rc) sock_fail(s, rc, troupe_errmsg());
  (void)t;
}

static void conn_connect(tconn *c) {
  tcp *t = c->t;
  struct sockaddr_storage ss;
  if (sockaddr_of(c->target, &ss)) {
    tlog(t, TROUPE_LOG_ERROR, "connect: %s", troupe_errmsg());
    c->state = C_BACKOFF;
    conn_schedule(c, t->rc_max);
    return;
  }
  tsock *s = sock_new(t);
  if (!s) {
    conn_schedule(c, t->rc_max);
    return;
  }
  s->client = true;
  s->c = c;
  c->s = s;
  c->state = C_CONNECTING;
  t->st.connects++;
  int rc = uv_tcp_connect(&s->creq, &s->h, (struct sockaddr *)&ss, connect_cb);
  if (rc) sock_fail(s, TROUPE_ECONNREFUSED, uv_strerror(rc));
}

static void conn_timer_cb(uv_timer_t *tm) {
  tconn *c = tm->data;
  if (c->state == C_BACKOFF || c->state == C_STANDBY) conn_connect(c);
}

static void conn_schedule(tconn *c, uint64_t delay) {
  tcp *t = c->t;
  if (t->destroying || c->base.inbound) return;
  if (!c->timer_inited) {
    if (uv_timer_init(t->loop, &c->timer)) return;
    c->timer.data = c;
    c->timer_inited = true;
    t->open_handles++;
  }
  uv_timer_start(&c->timer, conn_timer_cb, delay, 0);
}

static void on_connection(uv_stream_t *server, int status) {
  tcp *t = server->data;
  if (status < 0) {
    tlog(t, TROUPE_LOG_WARN, "accept: %s", uv_strerror(status));
    return;
  }
  tsock *s = sock_new(t);
  if (!s) return;
  if (uv_accept(server, (uv_stream_t *)&s->h) ||
      uv_read_start((uv_stream_t *)&s->h, alloc_cb, read_cb)) {
    sock_close(s);
    return;
  }
}

/* Periodic: handshake deadlines, heartbeats, idle links. */
static void tick_cb(uv_timer_t *tm) {
  tcp *t = tm->data;
  uint64_t now = uv_now(t->loop);
  tsock *n;
  for (tsock *s = t->socks; s; s = n) {
    n = s->next;
    if (s->closing) continue;
    if (!s->authed) {
      if (now - s->started > t->hs_timeout) {
        if (s->c || !s->client) {
          t->st.refused++;
          tlog(t, TROUPE_LOG_WARN, "handshake with %s timed out",
               s->got_hello ? s->theirs.addr : "a peer");
        }
        sock_fail(s, TROUPE_ETIMEDOUT, "handshake timed out");
      }
      continue;
    }
    if (!s->c) {
      /* A retired duplicate whose peer never closed its side. */
      if (now - s->last_rx > t->hs_timeout) sock_close(s);
      continue;
    }
    if (t->idle_ms && now - s->last_rx > t->idle_ms) {
      sock_fail(s, TROUPE_ETIMEDOUT, "no traffic (heartbeat timeout)");
      continue;
    }
    if (t->hb_ms && now - s->last_tx >= t->hb_ms && !s->out.len &&
        !s->writing) {
      sock_put(s, TROUPE__FRAME_HEARTBEAT, 0, NULL, 0);
      s->last_tx = now;
    }
  }
}

/* ------------------------------------------------------------------ */
/* The class                                                           */

static void handle_done(tcp *t) {
  if (--t->open_handles == 0 && t->destroying) {
    void (*done)(void *) = t->done;
    void *data = t->done_data;
    free(t->rbuf);
    if (t->secret) troupe__wipe(t->secret, t->secret_len);
    free(t->secret);
    free(t);
    if (done) done(data);
  }
}

static void own_handle_closed(uv_handle_t *h) { handle_done(h->data); }

int troupe__tcp_create_on(uv_loop_t *loop, troupe_system *sys,
                          const troupe__transport_opts *opts,
                          const troupe__transport_cbs *cbs,
                          const troupe__tcp_hooks *hooks,
                          troupe__transport **out) {
  if (!loop || !opts || !out)
    return troupe__err(TROUPE_EINVAL, "tcp create: NULL argument");
  *out = NULL;
  const char *name = opts->system ? opts->system : (sys ? sys->name : NULL);
  if (!name || !troupe__hs_name_valid(name, strlen(name)))
    return troupe__err(TROUPE_EINVAL, "tcp: bad system name '%s'",
                       name ? name : "(null)");
  if (opts->advertise) {
    char host[TROUPE__ADDR_MAX + 1];
    int port;
    int rc = troupe__addr_parse(opts->advertise, host, sizeof host, &port);
    if (rc) return rc;
  }
  if (opts->max_frame > TROUPE__FRAME_MAX_LIMIT)
    return troupe__err(TROUPE_EINVAL, "tcp: max_frame %zu over %u",
                       opts->max_frame, TROUPE__FRAME_MAX_LIMIT);
  if (opts->secret_len && !opts->secret)
    return troupe__err(TROUPE_EINVAL, "tcp: NULL secret");
  uint64_t hb = opts->heartbeat_ms ? opts->heartbeat_ms : 1000;
  uint64_t idle = opts->idle_timeout_ms ? opts->idle_timeout_ms : 10000;
  if (idle <= hb)
    return troupe__err(TROUPE_EINVAL, "tcp: idle_timeout_ms %llu must be "
                       "over heartbeat_ms %llu", (unsigned long long)idle,
                       (unsigned long long)hb);
  tcp *t = calloc(1, sizeof *t);
  if (!t) return troupe__err(TROUPE_ENOMEM, "tcp transport");
  t->rbuf = malloc(TCP_RBUF);
  if (opts->secret_len) t->secret = malloc(opts->secret_len);
  if (!t->rbuf || (opts->secret_len && !t->secret)) {
    free(t->rbuf);
    free(t->secret);
    free(t);
    return troupe__err(TROUPE_ENOMEM, "tcp transport");
  }
  if (opts->secret_len) memcpy(t->secret, opts->secret, opts->secret_len);
  t->secret_len = opts->secret_len;
  t->base.cls = &troupe__transport_tcp;
  t->base.sys = sys;
  if (cbs) t->base.cbs = *cbs;
  if (hooks) t->hooks = *hooks;
  t->loop = loop;
  snprintf(t->system, sizeof t->system, "%s", name);
  if (opts->advertise)
    snprintf(t->advertise, sizeof t->advertise, "%s", opts->advertise);
  t->incarnation = opts->incarnation;
  if (!t->incarnation) troupe__random_bytes(&t->incarnation, 8);
  t->max_frame = opts->max_frame ? opts->max_frame : TROUPE__FRAME_MAX_DEFAULT;
  t->max_outbound = opts->max_outbound ? opts->max_outbound
                                       : TCP_DEFAULT_OUTBOUND;
  t->rc_min = opts->reconnect_min_ms ? opts->reconnect_min_ms : 100;
  t->rc_max = opts->reconnect_max_ms ? opts->reconnect_max_ms : 5000;
  if (t->rc_max < t->rc_min) t->rc_max = t->rc_min;
  t->hs_timeout = opts->handshake_timeout_ms ? opts->handshake_timeout_ms
                                             : 5000;
  t->hb_ms = hb;
  t->idle_ms = idle;
  uv_prepare_init(loop, &t->prepare);
  t->prepare.data = t;
  uv_timer_init(loop, &t->tick);
  t->tick.data = t;
  /* The tick checks deadlines: a quarter of the shortest, at most 250 ms. */
  uint64_t every = t->hs_timeout < hb ? t->hs_timeout : hb;
  every = every / 4 < 250 ? every / 4 : 250;
  uv_timer_start(&t->tick, tick_cb, every ? every : 1, every ? every : 1);
  uv_unref((uv_handle_t *)&t->tick);
  t->open_handles = 2;
  *out = &t->base;
  return 0;
}

static int tcp_create(troupe_system *sys, const troupe__transport_opts *opts,
                      const troupe__transport_cbs *cbs,
                      troupe__transport **out) {
  if (!sys) return troupe__err(TROUPE_EINVAL, "tcp create: NULL system");
  return troupe__tcp_create_on(&sys->loop, sys, opts, cbs, NULL, out);
}

static int tcp_listen(troupe__transport *tr, const char *addr, char *bound,
                      size_t bound_size) {
  tcp *t = (tcp *)tr;
  if (!t || !addr) return troupe__err(TROUPE_EINVAL, "tcp listen: NULL");
  if (t->listening)
    return troupe__err(TROUPE_ESTATE, "tcp: already listening");
  struct sockaddr_storage ss;
  int rc = sockaddr_of(addr, &ss);
  if (rc) return rc;
  if ((rc = uv_tcp_init(t->loop, &t->listener)))
    return troupe__err(TROUPE_EIO, "tcp listen: %s", uv_strerror(rc));
  t->listener.data = t;
  t->open_handles++;
  t->listening = true;
  if ((rc = uv_tcp_bind(&t->listener, (struct sockaddr *)&ss, 0)) ||
      (rc = uv_listen((uv_stream_t *)&t->listener, 256, on_connection))) {
    t->listening = false;
    uv_close((uv_handle_t *)&t->listener, own_handle_closed);
    return troupe__err(TROUPE_EIO, "tcp listen on %s: %s", addr,
                       uv_strerror(rc));
  }
  int len = sizeof ss;
  char b[TROUPE__ADDR_MAX + 1];
  uv_tcp_getsockname(&t->listener, (struct sockaddr *)&ss, &len);
  addr_text((struct sockaddr *)&ss, b, sizeof b);
  if (!t->advertise[0]) snprintf(t->advertise, sizeof t->advertise, "%s", b);
  if (bound && bound_size) snprintf(bound, bound_size, "%s", b);
  tlog(t, TROUPE_LOG_INFO, "listening on %s", b);
  return 0;
}

static int tcp_connect(troupe__transport *tr, const char *addr,
                       troupe__conn **out) {
  tcp *t = (tcp *)tr;
  if (!t || !addr || !out)
    return troupe__err(TROUPE_EINVAL, "tcp connect: NULL argument");
  if (t->destroying) return troupe__err(TROUPE_ECLOSED, "tcp: destroyed");
  struct sockaddr_storage ss;
  int rc = sockaddr_of(addr, &ss);
  if (rc) return rc;
  tconn *c = conn_new(t, false);
  if (!c) return troupe__err(TROUPE_ENOMEM, "tcp conn");
  snprintf(c->target, sizeof c->target, "%s", addr);
  conn_connect(c);
  *out = &c->base;
  return 0;
}

static inline tsock *up_sock(troupe__conn *conn) {
  tconn *c = (tconn *)conn;
  return c->state == C_UP ? c->s : NULL;
}

static int tcp_send(troupe__conn *conn, troupe__env *e) {
  if (!conn || !e) return troupe__err(TROUPE_EINVAL, "tcp send: NULL");
  tsock *s = up_sock(conn);
  if (!s) return troupe__err(TROUPE_ECLOSED, "tcp: link not up");
  tcp *t = s->t;
  if (s->out.len + s->fly.len >= t->max_outbound) {
    t->st.full++;
    return troupe__err(TROUPE_EFULL, "tcp: %zu bytes queued for %s",
                       s->out.len + s->fly.len, ((tconn *)conn)->peer_addr);
  }
  size_t at = s->out.len;
  int rc = troupe_buf_reserve(&s->out, TROUPE__FRAME_HEAD + 64);
  if (rc) return rc;
  s->out.len += TROUPE__FRAME_HEAD;
  rc = troupe__wire_encode(&t->base, e, &s->out);
  if (rc) {
    s->out.len = at;
    return rc;
  }
  size_t len = s->out.len - at - TROUPE__FRAME_HEAD;
  if (len > t->max_frame) {
    s->out.len = at;
    return troupe__err(TROUPE_ETOOBIG, "tcp: envelope of %zu bytes over "
                       "the frame limit %zu", len, t->max_frame);
  }
  troupe__frame_head(s->out.data + at, TROUPE__FRAME_ENVELOPE, 0,
                     (uint32_t)len);
  t->st.queued += s->out.len - at;
  s->out_env++;
  sock_dirty(s);
  troupe__env_release(t->base.sys, e);
  return 0;
}

static void tcp_close(troupe__conn *conn) {
  if (!conn) return;
  tconn *c = (tconn *)conn;
  tsock *s = conn_detach(c);
  if (s) {
    /* Let queued bytes go out: flush, then shut down. */
    sock_flush(s);
    sock_retire(s);
  }
  conn_free(c);
}

static void tcp_destroy(troupe__transport *tr, void (*done)(void *),
                        void *data) {
  tcp *t = (tcp *)tr;
  if (!t) return;
  t->destroying = true;
  t->done = done;
  t->done_data = data;
  while (t->conns) {
    tconn *c = t->conns;
    if (c->s) {
      tsock *s = conn_detach(c);
      sock_close(s);
    }
    conn_free(c);
  }
  while (t->socks) sock_close(t->socks);
  t->dirty = NULL;
  if (t->listening) {
    t->listening = false;
    uv_close((uv_handle_t *)&t->listener, own_handle_closed);
  }
  uv_close((uv_handle_t *)&t->prepare, own_handle_closed);
  uv_close((uv_handle_t *)&t->tick, own_handle_closed);
}

const troupe__transport_class troupe__transport_tcp = {
    "tcp", tcp_create, tcp_listen, tcp_connect, tcp_send, tcp_close,
    tcp_destroy};

/* ------------------------------------------------------------------ */
/* Extras                                                              */

int troupe__tcp_send_frame(troupe__conn *conn, uint8_t flags,
                           const void *body, size_t len) {
  if (!conn || (len && !body))
    return troupe__err(TROUPE_EINVAL, "tcp send_frame: NULL");
  tsock *s = up_sock(conn);
  if (!s) return troupe__err(TROUPE_ECLOSED, "tcp: link not up");
  tcp *t = s->t;
  if (s->out.len + s->fly.len >= t->max_outbound) {
    t->st.full++;
    return troupe__err(TROUPE_EFULL, "tcp: queue full");
  }
  if (len > t->max_frame)
    return troupe__err(TROUPE_ETOOBIG, "tcp: frame of %zu bytes", len);
  int rc = sock_put(s, TROUPE__FRAME_ENVELOPE, flags, body, len);
  if (!rc) s->out_env++;
  return rc;
}

int troupe__tcp_send_raw(troupe__conn *conn, const void *p, size_t n) {
  if (!conn || (n && !p)) return troupe__err(TROUPE_EINVAL, "send_raw: NULL");
  tsock *s = up_sock(conn);
  if (!s) return troupe__err(TROUPE_ECLOSED, "tcp: link not up");
  int rc = troupe_buf_append(&s->out, p, n);
  if (!rc) {
    s->t->st.queued += n;
    sock_dirty(s);
  }
  return rc;
}

int troupe__tcp_pause(troupe__conn *conn, bool paused) {
  if (!conn) return troupe__err(TROUPE_EINVAL, "tcp pause: NULL");
  tsock *s = up_sock(conn);
  if (!s) return troupe__err(TROUPE_ECLOSED, "tcp: link not up");
  if (paused == s->paused) return 0;
  s->paused = paused;
  if (paused) uv_read_stop((uv_stream_t *)&s->h);
  else uv_read_start((uv_stream_t *)&s->h, alloc_cb, read_cb);
  return 0;
}

void troupe__tcp_get_stats(troupe__transport *tr, troupe__tcp_stats *out) {
  if (!tr || !out) return;
  *out = ((tcp *)tr)->st;
}

bool troupe__tcp_conn_up(const troupe__conn *conn) {
  return conn && ((const tconn *)conn)->state == C_UP;
}
