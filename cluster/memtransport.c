/*
 * memtransport.c: the deterministic in-memory transport (scheme "mem"),
 * for tests of remoting.
 *
 * Every instance joins a named in-process network when it listens on
 * "NET/NAME" (NAME is its node address, e.g. "a:1"; "x:0" picks a free
 * "x:<n>"). A network is a registry of endpoints, links between them and
 * the frames in flight, all under one mutex, so the systems of a test may
 * run on their own threads while the test thread steers the network:
 *
 *   automatic delivery (default): a frame is handed to the receiving
 *     endpoint when it is sent, unless a delay rule holds it;
 *   manual delivery: every frame waits in the network until the test
 *     calls troupe__memnet_pump(), one step at a time;
 *   drop(from, to, n): the next n frames from -> to are lost (counted as
 *     dead letters of the sender, like frames lost with a connection);
 *   delay(from, to, steps): frames from -> to wait `steps` extra pump
 *     steps; frames of one link direction never overtake each other;
 *   partition(a, b) / heal(a, b): links between a and b go down (frames in
 *     flight on them are dropped and counted) and stay down until healed;
 *     outbound conns then reconnect at once;
 *   disconnect(a, b): a connection reset (down, then up again).
 *
 * Delivery is deterministic: frames are handed over in send order per link
 * direction, and each endpoint processes its events (up, down, frames) in
 * the order the network produced them, on its own loop (an uv_async).
 * Frames carry the stable wire form (troupe__wire_encode/decode), so this
 * transport exercises the same encoding as TCP. The "handshake" is the
 * network's: a conn is up when both endpoints are registered, not
 * partitioned, and hold the same cluster secret (a different secret is
 * refused and logged by the listener).
 */
#include "cluster/internal.h"

#include <inttypes.h>
#include <stdio.h>

#define NAME_MAX_LEN 192

typedef struct memep memep;
typedef struct mlink mlink;

enum { EV_UP = 1, EV_DOWN, EV_RECV, EV_DROPPED, EV_REFUSED };

typedef struct mevent {
  struct mevent *next;
  int kind;
  int err;
  uint64_t conn, link;
  uint64_t n;                       /* EV_DROPPED */
  bool inbound;                     /* EV_UP: create the inbound conn */
  char system[64];                  /* EV_UP: the peer */
  char address[NAME_MAX_LEN];
  uint64_t incarnation;
  size_t len;                       /* EV_RECV */
  uint8_t data[];
} mevent;

typedef struct memconn {
  troupe__conn base;
  struct memconn *next;
  uint64_t id;
  uint64_t link;                    /* current link, 0 while down */
} memconn;

/* One outbound conn as the network sees it. */
typedef struct mdial {
  struct mdial *next;
  memep *ep;
  uint64_t conn;
  char target[NAME_MAX_LEN];
  mlink *link;
} mdial;

struct mlink {
  mlink *next;
  uint64_t id;
  memep *ep[2];                     /* 0: dialer, 1: acceptor */
  uint64_t conn[2];
  mdial *dial;
  uint32_t queued[2];               /* frames in the network per direction */
  size_t qbytes[2];
  uint64_t blocked[2];              /* pump step that held a frame */
};

typedef struct mframe {
  struct mframe *next;
  mlink *link;
  int dir;                          /* sent by link->ep[dir] */
  uint32_t hold;
  size_t len;
  uint8_t data[];
} mframe;

typedef struct mrule {
  struct mrule *next;
  char from[NAME_MAX_LEN], to[NAME_MAX_LEN];
  uint32_t drop, delay;
} mrule;

typedef struct mpart {
  struct mpart *next;
  char a[NAME_MAX_LEN], b[NAME_MAX_LEN];   /* b "": every other endpoint */
} mpart;

struct memep {
  troupe__transport base;
  memep *next;                      /* net->eps (under net->mu) */
  troupe__memnet *net;              /* set by listen */
  char name[NAME_MAX_LEN];          /* registered name in the network */
  char advertise[NAME_MAX_LEN];     /* what peers are told */
  char system[64];
  uint64_t incarnation;
  uint8_t *secret;
  size_t secret_len;
  size_t max_frame, max_outbound;
  uv_async_t async;
  mevent *ev_head, *ev_tail;        /* under net->mu */
  memconn *conns;                   /* loop thread */
  bool destroying;
  void (*done)(void *);
  void *done_data;
  troupe_buf buf;                   /* encode scratch */
};

struct troupe__memnet {
  troupe__memnet *next;
  char name[64];
  unsigned refs;                    /* under nets_mu */
  pthread_mutex_t mu;
  bool manual;
  memep *eps;
  mlink *links;
  mdial *dials;
  mframe *fhead, *ftail;
  mrule *rules;
  mpart *parts;
  uint64_t step;
  uint32_t next_port;
  troupe__memnet_stats st;
};

static pthread_mutex_t nets_mu = PTHREAD_MUTEX_INITIALIZER;
static troupe__memnet *nets;
static atomic_uint_fast64_t next_id = 1;

/* ------------------------------------------------------------------ */
/* Networks */

static bool valid_net_name(const char *s, size_t n) {
  if (n == 0 || n >= 64) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return false;
  }
  return true;
}

/* A node address: no '/', '@', '#', spaces or controls. */
static bool valid_addr(const char *s, size_t n) {
  if (n == 0 || n >= NAME_MAX_LEN) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= ' ' || c == '/' || c == '@' || c == '#' || c == '?' || c >= 127)
      return false;
  }
  return true;
}

static troupe__memnet *net_get(const char *name, size_t n) {
  pthread_mutex_lock(&nets_mu);
  troupe__memnet *net;
  for (net = nets; net; net = net->next)
    if (strlen(net->name) == n && memcmp(net->name, name, n) == 0) break;
  if (!net && (net = calloc(1, sizeof *net))) {
    memcpy(net->name, name, n);
    pthread_mutex_init(&net->mu, NULL);
    net->next = nets;
    nets = net;
  }
  if (net) net->refs++;
  pthread_mutex_unlock(&nets_mu);
  return net;
}

troupe__memnet *troupe__memnet_get(const char *name) {
  if (!name || !valid_net_name(name, strlen(name))) {
    troupe__err(TROUPE_EINVAL, "bad network name");
    return NULL;
  }
  troupe__memnet *net = net_get(name, strlen(name));
  if (!net) troupe__err(TROUPE_ENOMEM, "network");
  return net;
}

void troupe__memnet_put(troupe__memnet *net) {
  if (!net) return;
  pthread_mutex_lock(&nets_mu);
  if (--net->refs > 0) {
    pthread_mutex_unlock(&nets_mu);
    return;
  }
  for (troupe__memnet **p = &nets; *p; p = &(*p)->next)
    if (*p == net) {
      *p = net->next;
      break;
    }
  pthread_mutex_unlock(&nets_mu);
  /* no endpoint is left (each holds a reference), so no link, dial or
   * frame either */
  while (net->rules) {
    mrule *r = net->rules;
    net->rules = r->next;
    free(r);
  }
  while (net->parts) {
    mpart *p = net->parts;
    net->parts = p->next;
    free(p);
  }
  pthread_mutex_destroy(&net->mu);
  free(net);
}

/* ------------------------------------------------------------------ */
/* Under net->mu */

static void post(memep *ep, mevent *ev) {
  ev->next = NULL;
  if (ep->ev_tail) ep->ev_tail->next = ev;
  else ep->ev_head = ev;
  ep->ev_tail = ev;
  uv_async_send(&ep->async);
}

static mevent *ev_new(int kind, size_t len) {
  mevent *ev = calloc(1, sizeof *ev + len);
  if (ev) ev->kind = kind;
  return ev;
}

static memep *ep_by_name(troupe__memnet *net, const char *name) {
  for (memep *e = net->eps; e; e = e->next)
    if (strcmp(e->name, name) == 0) return e;
  return NULL;
}

static bool name_is(const char *pat, const char *name) {
  return !pat[0] || strcmp(pat, name) == 0;
}

static bool partitioned(troupe__memnet *net, const char *a, const char *b) {
  for (mpart *p = net->parts; p; p = p->next) {
    if (strcmp(p->a, a) == 0 && name_is(p->b, b)) return true;
    if (strcmp(p->a, b) == 0 && name_is(p->b, a)) return true;
  }
  return false;
}

static mrule *rule_of(troupe__memnet *net, const char *from, const char *to,
                      bool create) {
  for (mrule *r = net->rules; r; r = r->next)
    if (strcmp(r->from, from) == 0 && strcmp(r->to, to) == 0) return r;
  if (!create) return NULL;
  mrule *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  snprintf(r->from, sizeof r->from, "%s", from);
  snprintf(r->to, sizeof r->to, "%s", to);
  r->next = net->rules;
  net->rules = r;
  return r;
}

static void post_dropped(memep *ep, uint64_t n, int reason) {
  if (!ep || !n) return;
  mevent *ev = ev_new(EV_DROPPED, 0);
  if (!ev) return;
  ev->n = n;
  ev->err = reason;
  post(ep, ev);
}

static void post_up(memep *to, uint64_t conn, mlink *l, bool inbound,
                    const memep *peer) {
  mevent *ev = ev_new(EV_UP, 0);
  if (!ev) return;
  ev->conn = conn;
  ev->link = l->id;
  ev->inbound = inbound;
  snprintf(ev->system, sizeof ev->system, "%s", peer->system);
  snprintf(ev->address, sizeof ev->address, "%s",
           peer->advertise[0] ? peer->advertise : peer->name);
  ev->incarnation = peer->incarnation;
  post(to, ev);
}

/* Take a link down: its frames are dropped (counted by their senders) and
 * both ends are told, except `gone` (an endpoint leaving). The dial goes
 * back to waiting. */
static void link_down(troupe__memnet *net, mlink *l, int err, memep *gone) {
  for (mlink **p = &net->links; *p; p = &(*p)->next)
    if (*p == l) {
      *p = l->next;
      break;
    }
  uint64_t lost[2] = {0, 0};
  mframe **fp = &net->fhead;
  net->ftail = NULL;
  while (*fp) {
    mframe *f = *fp;
    if (f->link == l) {
      *fp = f->next;
      lost[f->dir]++;
      free(f);
    } else {
      net->ftail = f;
      fp = &f->next;
    }
  }
  for (int d = 0; d < 2; d++) {
    net->st.dropped += lost[d];
    if (l->ep[d] != gone) post_dropped(l->ep[d], lost[d], TROUPE_ECONNLOST);
  }
  for (int d = 0; d < 2; d++) {
    if (l->ep[d] == gone) continue;
    mevent *ev = ev_new(EV_DOWN, 0);
    if (!ev) continue;
    ev->conn = l->conn[d];
    ev->link = l->id;
    ev->err = err;
    post(l->ep[d], ev);
  }
  if (l->dial) l->dial->link = NULL;
  net->st.links--;
  free(l);
}

static bool same_secret(const memep *a, const memep *b) {
  return a->secret_len == b->secret_len &&
         (a->secret_len == 0 ||
          memcmp(a->secret, b->secret, a->secret_len) == 0);
}

/* Connect every waiting dial whose target is registered and reachable. */
static void try_dials(troupe__memnet *net) {
  for (mdial *d = net->dials; d; d = d->next) {
    if (d->link) continue;
    memep *to = ep_by_name(net, d->target);
    if (!to || partitioned(net, d->ep->name, to->name)) continue;
    if (!same_secret(d->ep, to)) {
      mevent *ev = ev_new(EV_REFUSED, 0);
      if (ev) {
        snprintf(ev->system, sizeof ev->system, "%s", d->ep->system);
        snprintf(ev->address, sizeof ev->address, "%s", d->ep->name);
        post(to, ev);
      }
      net->st.refused++;
      continue;
    }
    mlink *l = calloc(1, sizeof *l);
    if (!l) continue;
    l->id = atomic_fetch_add(&next_id, 1);
    l->ep[0] = d->ep;
    l->conn[0] = d->conn;
    l->ep[1] = to;
    l->conn[1] = atomic_fetch_add(&next_id, 1);
    l->dial = d;
    d->link = l;
    l->next = net->links;
    net->links = l;
    net->st.links++;
    net->st.connects++;
    post_up(d->ep, l->conn[0], l, false, to);
    post_up(to, l->conn[1], l, true, d->ep);
  }
}

static void deliver(troupe__memnet *net, mframe *f) {
  mlink *l = f->link;
  memep *to = l->ep[1 - f->dir];
  mevent *ev = ev_new(EV_RECV, f->len);
  if (!ev) {
    net->st.dropped++;
    post_dropped(l->ep[f->dir], 1, TROUPE_ENOMEM);
    return;
  }
  ev->conn = l->conn[1 - f->dir];
  ev->link = l->id;
  ev->len = f->len;
  memcpy(ev->data, f->data, f->len);
  net->st.delivered++;
  post(to, ev);
}

/* ------------------------------------------------------------------ */
/* Test controls (any thread) */

void troupe__memnet_set_manual(troupe__memnet *net, bool manual) {
  if (!net) return;
  pthread_mutex_lock(&net->mu);
  net->manual = manual;
  pthread_mutex_unlock(&net->mu);
}

size_t troupe__memnet_pump(troupe__memnet *net) {
  if (!net) return 0;
  size_t n = 0;
  pthread_mutex_lock(&net->mu);
  uint64_t step = ++net->step;
  mframe **fp = &net->fhead;
  net->ftail = NULL;
  while (*fp) {
    mframe *f = *fp;
    mlink *l = f->link;
    if (f->hold > 0 || l->blocked[f->dir] == step) {
      if (f->hold > 0) f->hold--;
      l->blocked[f->dir] = step;    /* later frames wait behind it */
      net->ftail = f;
      fp = &f->next;
      continue;
    }
    *fp = f->next;
    l->queued[f->dir]--;
    l->qbytes[f->dir] -= f->len;
    deliver(net, f);
    free(f);
    n++;
  }
  pthread_mutex_unlock(&net->mu);
  return n;
}

size_t troupe__memnet_pump_all(troupe__memnet *net, size_t max_steps) {
  size_t total = 0;
  for (size_t i = 0; i < max_steps; i++) {
    total += troupe__memnet_pump(net);
    pthread_mutex_lock(&net->mu);
    bool empty = net->fhead == NULL;
    pthread_mutex_unlock(&net->mu);
    if (empty) break;
  }
  return total;
}

int troupe__memnet_drop(troupe__memnet *net, const char *from, const char *to,
                        uint32_t n) {
  if (!net || !from || !to)
    return troupe__err(TROUPE_EINVAL, "memnet_drop: NULL argument");
  pthread_mutex_lock(&net->mu);
  mrule *r = rule_of(net, from, to, true);
  if (r) r->drop = n;
  pthread_mutex_unlock(&net->mu);
  return r ? 0 : troupe__err(TROUPE_ENOMEM, "memnet rule");
}

int troupe__memnet_delay(troupe__memnet *net, const char *from,
                         const char *to, uint32_t steps) {
  if (!net || !from || !to)
    return troupe__err(TROUPE_EINVAL, "memnet_delay: NULL argument");
  pthread_mutex_lock(&net->mu);
  mrule *r = rule_of(net, from, to, true);
  if (r) r->delay = steps;
  pthread_mutex_unlock(&net->mu);
  return r ? 0 : troupe__err(TROUPE_ENOMEM, "memnet rule");
}

int troupe__memnet_partition(troupe__memnet *net, const char *a,
                             const char *b) {
  if (!net || !a || !a[0])
    return troupe__err(TROUPE_EINVAL, "memnet_partition: NULL argument");
  if (!b) b = "";
  mpart *p = calloc(1, sizeof *p);
  if (!p) return troupe__err(TROUPE_ENOMEM, "memnet partition");
  snprintf(p->a, sizeof p->a, "%s", a);
  snprintf(p->b, sizeof p->b, "%s", b);
  pthread_mutex_lock(&net->mu);
  p->next = net->parts;
  net->parts = p;
  for (mlink *l = net->links, *nx; l; l = nx) {
    nx = l->next;
    if (partitioned(net, l->ep[0]->name, l->ep[1]->name))
      link_down(net, l, TROUPE_ECONNLOST, NULL);
  }
  pthread_mutex_unlock(&net->mu);
  return 0;
}

int troupe__memnet_heal(troupe__memnet *net, const char *a, const char *b) {
  if (!net || !a)
    return troupe__err(TROUPE_EINVAL, "memnet_heal: NULL argument");
  if (!b) b = "";
  pthread_mutex_lock(&net->mu);
  for (mpart **pp = &net->parts; *pp;) {
    mpart *p = *pp;
    bool hit = (strcmp(p->a, a) == 0 && strcmp(p->b, b) == 0) ||
               (strcmp(p->a, b) == 0 && strcmp(p->b, a) == 0) ||
               (strcmp(a, "*") == 0);
    if (hit) {
      *pp = p->next;
      free(p);
    } else {
      pp = &p->next;
    }
  }
  try_dials(net);
  pthread_mutex_unlock(&net->mu);
  return 0;
}

int troupe__memnet_disconnect(troupe__memnet *net, const char *a,
                              const char *b) {
  if (!net || !a || !b)
    return troupe__err(TROUPE_EINVAL, "memnet_disconnect: NULL argument");
  pthread_mutex_lock(&net->mu);
  for (mlink *l = net->links, *nx; l; l = nx) {
    nx = l->next;
    const char *x = l->ep[0]->name, *y = l->ep[1]->name;
    if ((strcmp(x, a) == 0 && strcmp(y, b) == 0) ||
        (strcmp(x, b) == 0 && strcmp(y, a) == 0))
      link_down(net, l, TROUPE_ECONNLOST, NULL);
  }
  try_dials(net);
  pthread_mutex_unlock(&net->mu);
  return 0;
}

void troupe__memnet_get_stats(troupe__memnet *net, troupe__memnet_stats *out) {
  if (!net || !out) return;
  pthread_mutex_lock(&net->mu);
  *out = net->st;
  out->in_flight = 0;
  for (mframe *f = net->fhead; f; f = f->next) out->in_flight++;
  pthread_mutex_unlock(&net->mu);
}

/* ------------------------------------------------------------------ */
/* The endpoint's loop */

static memconn *conn_find(memep *ep, uint64_t id, memconn ***prev) {
  for (memconn **p = &ep->conns; *p; p = &(*p)->next)
    if ((*p)->id == id) {
      if (prev) *prev = p;
      return *p;
    }
  return NULL;
}

static void conn_free(memep *ep, memconn *c) {
  memconn **p;
  if (conn_find(ep, c->id, &p)) *p = c->next;
  free(c);
}

static void handle(memep *ep, mevent *ev) {
  troupe__transport_cbs *cb = &ep->base.cbs;
  memconn *c = ev->kind == EV_DROPPED || ev->kind == EV_REFUSED
                   ? NULL : conn_find(ep, ev->conn, NULL);
  switch (ev->kind) {
    case EV_UP: {
      if (!c && ev->inbound) {
        c = calloc(1, sizeof *c);
        if (!c) return;
        c->base.t = &ep->base;
        c->base.inbound = true;
        c->id = ev->conn;
        c->next = ep->conns;
        ep->conns = c;
      }
      if (!c) return;               /* closed since */
      c->link = ev->link;
      troupe__peer_info p = {.system = ev->system, .address = ev->address,
                             .incarnation = ev->incarnation,
                             .protocol = TROUPE__REMOTE_PROTOCOL};
      if (cb->on_up) cb->on_up(cb->data, &c->base, &p);
      return;
    }
    case EV_DOWN:
      if (!c || c->link != ev->link) return;
      c->link = 0;
      if (c->base.inbound) {
        /* unlink first: the callback may destroy the transport */
        memconn **p;
        if (conn_find(ep, c->id, &p)) *p = c->next;
      }
      if (cb->on_down) cb->on_down(cb->data, &c->base, ev->err);
      if (c->base.inbound) free(c);
      return;
    case EV_RECV: {
      if (!c || c->link != ev->link) {
        troupe__transport_dropped(&ep->base, 1, TROUPE_ECONNLOST);
        return;
      }
      troupe__env *e = NULL;
      int rc = troupe__wire_decode(&ep->base, ev->data, ev->len, &e);
      if (rc < 0) {
        troupe__log(ep->base.sys, TROUPE_LOG_WARN, "mem",
                    "undecodable frame of %zu bytes: %s", ev->len,
                    troupe_errmsg());
        atomic_fetch_add(&ep->base.sys->dead_letters, 1);
        return;
      }
      if (cb->on_recv) cb->on_recv(cb->data, &c->base, e);
      else troupe__env_release(ep->base.sys, e);
      return;
    }
    case EV_DROPPED:
      troupe__transport_dropped(&ep->base, ev->n, ev->err);
      return;
    case EV_REFUSED:
      troupe__log(ep->base.sys, TROUPE_LOG_WARN, "mem",
                  "refused %s@%s: the cluster secret differs", ev->system,
                  ev->address);
      return;
  }
}

static void on_async(uv_async_t *h) {
  memep *ep = h->data;
  if (ep->destroying || !ep->net) return;
  pthread_mutex_lock(&ep->net->mu);
  mevent *ev = ep->ev_head;
  ep->ev_head = ep->ev_tail = NULL;
  pthread_mutex_unlock(&ep->net->mu);
  while (ev) {
    mevent *nx = ev->next;
    if (!ep->destroying) handle(ep, ev);
    free(ev);
    ev = nx;
  }
}

/* ------------------------------------------------------------------ */
/* The class */

static int mem_create(troupe_system *sys, const troupe__transport_opts *o,
                      const troupe__transport_cbs *cbs,
                      troupe__transport **out) {
  if (!sys || !o || !cbs || !out)
    return troupe__err(TROUPE_EINVAL, "mem: NULL argument");
  *out = NULL;
  memep *ep = calloc(1, sizeof *ep);
  if (!ep) return troupe__err(TROUPE_ENOMEM, "mem transport");
  ep->base.cls = &troupe__transport_mem;
  ep->base.sys = sys;
  ep->base.cbs = *cbs;
  snprintf(ep->system, sizeof ep->system, "%s", o->system ? o->system
                                                          : sys->name);
  if (o->advertise) {
    if (!valid_addr(o->advertise, strlen(o->advertise))) {
      free(ep);
      return troupe__err(TROUPE_EINVAL, "mem: bad advertised address \"%s\"",
                         o->advertise);
    }
    snprintf(ep->advertise, sizeof ep->advertise, "%s", o->advertise);
  }
  ep->incarnation = o->incarnation;
  if (o->secret && o->secret_len) {
    ep->secret = malloc(o->secret_len);
    if (!ep->secret) {
      free(ep);
      return troupe__err(TROUPE_ENOMEM, "mem: secret");
    }
    memcpy(ep->secret, o->secret, o->secret_len);
    ep->secret_len = o->secret_len;
  }
  ep->max_frame = o->max_frame ? o->max_frame : 4u << 20;
  ep->max_outbound = o->max_outbound ? o->max_outbound : 64u << 20;
  int rc = uv_async_init(&sys->loop, &ep->async, on_async);
  if (rc < 0) {
    free(ep->secret);
    free(ep);
    return troupe__err(TROUPE_EIO, "mem: uv_async_init: %s", uv_strerror(rc));
  }
  ep->async.data = ep;
  uv_unref((uv_handle_t *)&ep->async);
  *out = &ep->base;
  return 0;
}

static int mem_listen(troupe__transport *t, const char *addr, char *bound,
                      size_t bound_size) {
  memep *ep = (memep *)t;
  if (!t || !addr || !bound || !bound_size)
    return troupe__err(TROUPE_EINVAL, "mem_listen: NULL argument");
  if (ep->net)
    return troupe__err(TROUPE_ESTATE, "mem: already listening as %s",
                       ep->name);
  const char *slash = strchr(addr, '/');
  if (!slash || !valid_net_name(addr, (size_t)(slash - addr)) ||
      !valid_addr(slash + 1, strlen(slash + 1)))
    return troupe__err(TROUPE_EINVAL, "mem: listen address must be "
                       "\"NET/NAME\" (NAME without '/', '@', '#'): \"%s\"",
                       addr);
  troupe__memnet *net = net_get(addr, (size_t)(slash - addr));
  if (!net) return troupe__err(TROUPE_ENOMEM, "mem: network");
  char name[NAME_MAX_LEN];
  snprintf(name, sizeof name, "%s", slash + 1);
  size_t nl = strlen(name);
  pthread_mutex_lock(&net->mu);
  if (nl >= 2 && strcmp(name + nl - 2, ":0") == 0) {
    do {
      snprintf(name + nl - 1, sizeof name - (nl - 1), "%" PRIu32,
               ++net->next_port);
    } while (ep_by_name(net, name));
  } else if (ep_by_name(net, name)) {
    pthread_mutex_unlock(&net->mu);
    troupe__memnet_put(net);
    return troupe__err(TROUPE_EIO, "mem: address %s in use in network %s",
                       name, net->name);
  }
  if (strlen(name) >= bound_size) {
    pthread_mutex_unlock(&net->mu);
    troupe__memnet_put(net);
    return troupe__err(TROUPE_ERANGE, "mem: bound address buffer");
  }
  snprintf(ep->name, sizeof ep->name, "%s", name);
  ep->net = net;
  ep->next = net->eps;
  net->eps = ep;
  try_dials(net);
  pthread_mutex_unlock(&net->mu);
  /* events may be posted from now on: keep the loop alive for them only
   * while the system runs (the async stays unreferenced) */
  memcpy(bound, name, strlen(name) + 1);
  return 0;
}

static int mem_connect(troupe__transport *t, const char *addr,
                       troupe__conn **out) {
  memep *ep = (memep *)t;
  if (!t || !addr || !out)
    return troupe__err(TROUPE_EINVAL, "mem_connect: NULL argument");
  *out = NULL;
  if (!ep->net)
    return troupe__err(TROUPE_ESTATE, "mem: listen first (the network is "
                       "named by the listen address)");
  if (ep->destroying) return troupe__err(TROUPE_ECLOSED, "mem: destroyed");
  if (!valid_addr(addr, strlen(addr)))
    return troupe__err(TROUPE_EINVAL, "mem: bad address \"%s\"", addr);
  memconn *c = calloc(1, sizeof *c);
  mdial *d = calloc(1, sizeof *d);
  if (!c || !d) {
    free(c);
    free(d);
    return troupe__err(TROUPE_ENOMEM, "mem: conn");
  }
  c->base.t = t;
  c->id = atomic_fetch_add(&next_id, 1);
  c->next = ep->conns;
  ep->conns = c;
  d->ep = ep;
  d->conn = c->id;
  snprintf(d->target, sizeof d->target, "%s", addr);
  pthread_mutex_lock(&ep->net->mu);
  d->next = ep->net->dials;
  ep->net->dials = d;
  try_dials(ep->net);
  pthread_mutex_unlock(&ep->net->mu);
  *out = &c->base;
  return 0;
}

static int mem_send(troupe__conn *conn, troupe__env *e) {
  if (!conn || !e) return troupe__err(TROUPE_EINVAL, "mem_send: NULL");
  memconn *c = (memconn *)conn;
  memep *ep = (memep *)conn->t;
  if (!c->link || ep->destroying)
    return troupe__err(TROUPE_ECLOSED, "mem: conn is not up");
  ep->buf.len = 0;
  int rc = troupe__wire_encode(&ep->base, e, &ep->buf);
  if (rc < 0) return rc;
  size_t len = ep->buf.len;
  if (len > ep->max_frame)
    return troupe__err(TROUPE_ETOOBIG, "mem: frame of %zu bytes over %zu",
                       len, ep->max_frame);
  troupe__memnet *net = ep->net;
  pthread_mutex_lock(&net->mu);
  mlink *l;
  for (l = net->links; l; l = l->next)
    if (l->id == c->link) break;
  if (!l) {   /* went down; the event is on its way */
    pthread_mutex_unlock(&net->mu);
    return troupe__err(TROUPE_ECLOSED, "mem: conn went down");
  }
  int dir = l->ep[0] == ep && l->conn[0] == c->id ? 0 : 1;
  memep *to = l->ep[1 - dir];
  if (l->qbytes[dir] + len > ep->max_outbound) {
    pthread_mutex_unlock(&net->mu);
    return troupe__err(TROUPE_EFULL, "mem: %zu bytes queued to %s",
                       l->qbytes[dir], to->name);
  }
  net->st.sent++;
  mrule *r = rule_of(net, ep->name, to->name, false);
  if (r && r->drop) {
    r->drop--;
    net->st.dropped++;
    pthread_mutex_unlock(&net->mu);
    troupe__env_release(ep->base.sys, e);
    troupe__transport_dropped(&ep->base, 1, TROUPE_ECONNLOST);
    return 0;
  }
  uint32_t hold = r ? r->delay : 0;
  mframe *f = malloc(sizeof *f + len);
  if (!f) {
    pthread_mutex_unlock(&net->mu);
    return troupe__err(TROUPE_ENOMEM, "mem: frame");
  }
  f->next = NULL;
  f->link = l;
  f->dir = dir;
  f->hold = hold;
  f->len = len;
  memcpy(f->data, ep->buf.data, len);
  if (!net->manual && hold == 0 && l->queued[dir] == 0) {
    deliver(net, f);
    free(f);
  } else {
    if (net->ftail) net->ftail->next = f;
    else net->fhead = f;
    net->ftail = f;
    l->queued[dir]++;
    l->qbytes[dir] += len;
  }
  pthread_mutex_unlock(&net->mu);
  troupe__env_release(ep->base.sys, e);
  return 0;
}

static void mem_close(troupe__conn *conn) {
  if (!conn) return;
  memconn *c = (memconn *)conn;
  memep *ep = (memep *)conn->t;
  troupe__memnet *net = ep->net;
  if (net) {
    pthread_mutex_lock(&net->mu);
    if (!conn->inbound) {
      for (mdial **p = &net->dials; *p; p = &(*p)->next)
        if ((*p)->conn == c->id) {
          mdial *d = *p;
          *p = d->next;
          if (d->link) {
            d->link->dial = NULL;
            link_down(net, d->link, TROUPE_ECLOSED, NULL);
          }
          free(d);
          break;
        }
    } else {
      for (mlink *l = net->links; l; l = l->next)
        if (l->ep[1] == ep && l->conn[1] == c->id) {
          link_down(net, l, TROUPE_ECLOSED, NULL);
          break;
        }
      try_dials(net);   /* the dialer reconnects, as over TCP */
    }
    pthread_mutex_unlock(&net->mu);
  }
  conn_free(ep, c);
}

static void ep_closed(uv_handle_t *h) {
  memep *ep = h->data;
  void (*done)(void *) = ep->done;
  void *data = ep->done_data;
  troupe_buf_free(&ep->buf);
  free(ep->secret);
  free(ep);
  if (done) done(data);
}

static void mem_destroy(troupe__transport *t, void (*done)(void *),
                        void *data) {
  if (!t) return;
  memep *ep = (memep *)t;
  if (ep->destroying) return;
  ep->destroying = true;
  ep->done = done;
  ep->done_data = data;
  troupe__memnet *net = ep->net;
  if (net) {
    pthread_mutex_lock(&net->mu);
    for (memep **p = &net->eps; *p; p = &(*p)->next)
      if (*p == ep) {
        *p = ep->next;
        break;
      }
    for (mlink *l = net->links, *nx; l; l = nx) {
      nx = l->next;
      if (l->ep[0] == ep || l->ep[1] == ep)
        link_down(net, l, TROUPE_ECONNLOST, ep);
    }
    for (mdial **p = &net->dials; *p;) {
      mdial *d = *p;
      if (d->ep == ep) {
        *p = d->next;
        free(d);
      } else {
        p = &d->next;
      }
    }
    mevent *ev = ep->ev_head;
    ep->ev_head = ep->ev_tail = NULL;
    pthread_mutex_unlock(&net->mu);
    while (ev) {
      mevent *nx = ev->next;
      free(ev);
      ev = nx;
    }
    troupe__memnet_put(net);
    ep->net = NULL;
  }
  while (ep->conns) {
    memconn *c = ep->conns;
    ep->conns = c->next;
    free(c);
  }
  if (!uv_is_closing((uv_handle_t *)&ep->async))
    uv_close((uv_handle_t *)&ep->async, ep_closed);
}

const troupe__transport_class troupe__transport_mem = {
  .scheme = "mem",
  .create = mem_create,
  .listen = mem_listen,
  .connect = mem_connect,
  .send = mem_send,
  .close = mem_close,
  .destroy = mem_destroy,
};
