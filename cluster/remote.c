/*
 * remote.c: remoting — remote nodes, the wire form of envelopes, links to
 * peers over a transport, remote tells, remote death watch, resolve.
 *
 * A remote node is an entry of the process-wide node table whose `remote`
 * field points at a troupe__rnode (system name + address). Refs to its
 * actors are ordinary refs. A tell to one, from any thread, is handed to
 * the loop of the node's owner (the local system whose remoting reaches
 * it) and sent there over the transport; the transport and the rlink state
 * live on that loop only (cluster/transport.h).
 */
#include "cluster/internal.h"

#include <inttypes.h>
#include <stdio.h>

/* ------------------------------------------------------------------ */
/* Remote nodes */

static pthread_mutex_t rnode_lock = PTHREAD_MUTEX_INITIALIZER;
static troupe__rnode *rnodes;

/* Is the owner node index still an open local system? An owner that was
 * destroyed (a test's earlier system, a restarted worker) hands the node
 * over to the next system with remoting that names it. */
static bool owner_alive(uint64_t owner) {
  troupe__node *n = owner ? troupe__node_get(owner) : NULL;
  return n && atomic_load(&n->sys) != NULL;
}

int troupe__rnode_get(const char *name, size_t nlen, const char *addr,
                      size_t alen, uint64_t owner, troupe__rnode **out) {
  if (nlen == 0 || nlen >= sizeof rnodes->name || alen == 0 ||
      alen >= sizeof rnodes->address)
    return troupe__err(TROUPE_EINVAL, "bad node name \"%.*s@%.*s\"",
                       (int)(nlen > 64 ? 64 : nlen), name,
                       (int)(alen > 64 ? 64 : alen), addr);
  pthread_mutex_lock(&rnode_lock);
  /* Several local systems with remoting (the test kit's nodes on one
   * thread) each reach a peer over their own links: an entry per owner.
   * An entry whose owner is gone is taken over; a caller without
   * remoting (owner 0) takes any. */
  troupe__rnode *any = NULL, *orphan = NULL;
  for (troupe__rnode *r = rnodes; r; r = r->next) {
    if (strlen(r->name) == nlen && memcmp(r->name, name, nlen) == 0 &&
        strlen(r->address) == alen && memcmp(r->address, addr, alen) == 0) {
      if (!owner || r->owner == owner) {
        any = r;
        break;
      }
      if (!any) any = r;
      if (!orphan && !owner_alive(r->owner)) orphan = r;
    }
  }
  if (any && owner && any->owner != owner) {
    any = orphan;
    if (any) any->owner = owner;
  }
  if (any) {
    pthread_mutex_unlock(&rnode_lock);
    *out = any;
    return 0;
  }
  troupe__rnode *r = calloc(1, sizeof *r);
  if (!r) {
    pthread_mutex_unlock(&rnode_lock);
    return troupe__err(TROUPE_ENOMEM, "remote node");
  }
  memcpy(r->name, name, nlen);
  memcpy(r->address, addr, alen);
  r->owner = owner;
  int rc = troupe__node_add_remote(r, &r->index);
  if (rc < 0) {
    pthread_mutex_unlock(&rnode_lock);
    free(r);
    return rc;
  }
  r->next = rnodes;
  rnodes = r;
  pthread_mutex_unlock(&rnode_lock);
  *out = r;
  return 0;
}

static uint64_t rnode_owner(troupe__rnode *r) {
  pthread_mutex_lock(&rnode_lock);
  uint64_t o = r->owner;
  pthread_mutex_unlock(&rnode_lock);
  return o;
}

const char *troupe__remote_name(void *remote, const char **address) {
  troupe__rnode *r = remote;
  if (address) *address = r->address;
  return r->name;
}

int troupe__remote_node(troupe_system *sys, const char *name, size_t nlen,
                        const char *addr, size_t alen, uint64_t *node) {
  troupe__rnode *r;
  uint64_t owner = sys && sys->remoting ? sys->node : 0;
  int rc = troupe__rnode_get(name, nlen, addr, alen, owner, &r);
  if (rc < 0) return rc;
  *node = r->index;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Transports */

/* Strong references: a weak one would not pull tcp.o out of a static
 * library, and remoting over TCP would find no transport. */
extern const troupe__transport_class troupe__transport_tcp;

const troupe__transport_class *troupe__transport_find(const char *scheme,
                                                      size_t len) {
  const troupe__transport_class *all[] = {
    &troupe__transport_tcp, &troupe__transport_mem,
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    const troupe__transport_class *c = all[i];
    if (strlen(c->scheme) == len && memcmp(c->scheme, scheme, len) == 0)
      return c;
  }
  return NULL;
}

void troupe__transport_dropped(troupe__transport *t, uint64_t n, int reason) {
  if (!t || !n) return;
  atomic_fetch_add(&t->sys->dead_letters, n);
  troupe__log(t->sys, TROUPE_LOG_WARN, "remote",
              "%" PRIu64 " message(s) lost with a connection (%s)", n,
              troupe_strerror(reason));
}

/* ------------------------------------------------------------------ */
/* Wire form */

static const char K_TO[] = "troupe.to", K_FROM[] = "troupe.from",
                  K_ASK[] = "troupe.ask", K_KIND[] = "troupe.k",
                  K_AUX[] = "troupe.a";

int troupe__wire_encode(troupe__transport *t, const troupe__env *e,
                        troupe_buf *out) {
  if (!t || !e || !out || !e->type)
    return troupe__err(TROUPE_EINVAL, "wire_encode: NULL argument");
  troupe_system *sys = t->sys;
  troupe_meta meta[5];
  size_t nm = 0;
  char from[512];
  /* in canonical key order (shorter first, then bytewise) */
  if (e->aux64) meta[nm++] = troupe_meta_int(K_AUX, (int64_t)e->aux64);
  if (e->kind != TROUPE__ENV_USER)
    meta[nm++] = troupe_meta_int(K_KIND, (int64_t)e->kind);
  if (e->target) meta[nm++] = troupe_meta_int(K_TO, (int64_t)e->target);
  if (e->ask_id) meta[nm++] = troupe_meta_int(K_ASK, (int64_t)e->ask_id);
  if (!troupe_ref_is_none(e->sender)) {
    int n = troupe__ref_to_uri(sys, e->sender, from, sizeof from);
    if (n < 0) return n;
    if ((size_t)n >= sizeof from)
      return troupe__err(TROUPE_ETOOBIG, "sender URI of %d bytes", n);
    meta[nm++] = troupe_meta_text(K_FROM, from);
  }
  troupe_codec_opts co = {.system = sys};
  return troupe__envelope_encode_sorted(e->type, e->data, meta, nm, out, &co);
}

static bool meta_is(const troupe_meta *m, const char *key, size_t n) {
  return m->key_len == n && memcmp(m->key, key, n) == 0;
}

static int meta_u64(const troupe_meta *m, const char *key, uint64_t *v) {
  if (m->kind != TROUPE_META_INT)
    return troupe__err(TROUPE_EDECODE, "metadata %s is not an integer", key);
  *v = (uint64_t)m->i;
  return 0;
}

int troupe__wire_decode(troupe__transport *t, const uint8_t *data,
                        size_t len, troupe__env **out) {
  if (!t || !data || !out)
    return troupe__err(TROUPE_EINVAL, "wire_decode: NULL argument");
  *out = NULL;
  troupe_system *sys = t->sys;
  troupe_envelope env;
  int rc = troupe_envelope_decode(data, len, &env);
  if (rc < 0) return rc;
  /* One pass over the metadata (keys are unique; others are ignored). */
  uint64_t to = 0, ask = 0, kind = 0, aux = 0;
  const troupe_meta *fm = NULL;
  for (size_t i = 0; i < env.nmeta; i++) {
    const troupe_meta *m = &env.meta[i];
    if (meta_is(m, K_TO, sizeof K_TO - 1)) rc = meta_u64(m, K_TO, &to);
    else if (meta_is(m, K_FROM, sizeof K_FROM - 1)) fm = m;
    else if (meta_is(m, K_ASK, sizeof K_ASK - 1)) rc = meta_u64(m, K_ASK, &ask);
    else if (meta_is(m, K_KIND, sizeof K_KIND - 1))
      rc = meta_u64(m, K_KIND, &kind);
    else if (meta_is(m, K_AUX, sizeof K_AUX - 1)) rc = meta_u64(m, K_AUX, &aux);
    if (rc < 0) return rc;
  }
  if (kind != TROUPE__ENV_USER && kind != TROUPE__ENV_RWATCH &&
      kind != TROUPE__ENV_RUNWATCH)
    return troupe__err(TROUPE_EDECODE, "unknown message kind %" PRIu64, kind);
  troupe_ref sender = TROUPE_REF_NONE;
  troupe_codec_opts co = {.system = sys};
  if (fm) {
    if (fm->kind != TROUPE_META_TEXT)
      return troupe__err(TROUPE_EDECODE, "troupe.from is not text");
    rc = troupe__ref_from_uri(sys, (const char *)fm->data, fm->len, &sender);
    if (rc < 0) return rc;
  }
  const troupe_type *type;
  rc = troupe_type_resolve(env.manifest, env.version, &type);
  if (rc < 0) return rc;
  troupe__env *e = troupe__env_alloc(sys);
  if (!e) return troupe__err(TROUPE_ENOMEM, "envelope");
  void *dst = e->inl;
  e->heap = 0;
  if (type->size > TROUPE_INLINE_MSG) {
    dst = malloc(type->size);
    if (!dst) {
      e->type = NULL;
      troupe__env_release(sys, e);
      return troupe__err(TROUPE_ENOMEM, "message of %zu bytes", (size_t)type->size);
    }
    e->heap = 1;
  }
  e->data = dst;
  e->type = NULL;
  /* A type registered under the envelope's own manifest and version has
   * no upcaster chain: decode with it directly (one registry lookup per
   * message instead of three). Otherwise let the chain run. */
  if (type->version == env.version && strcmp(type->manifest, env.manifest) == 0)
    rc = troupe_decode(type, env.payload, env.payload_len, dst, &co);
  else
    rc = troupe_decode_as(env.manifest, env.version, env.payload,
                          env.payload_len, type, dst, &co);
  if (rc < 0) {
    if (e->heap) free(e->data);
    e->heap = 0;
    e->data = e->inl;
    troupe__env_release(sys, e);
    return rc;
  }
  e->type = type;
  e->kind = (uint32_t)kind;
  e->target = to;
  e->tnode = 0;
  e->sender = sender;
  e->ask_id = ask;
  e->aux64 = aux;
  e->aux = 0;
  *out = e;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Remoting state of one system (its loop thread only) */

#define MAX_UP 4

typedef struct rlink {
  troupe__rnode *rn;
  struct remoting *r;
  troupe__conn *out;              /* our outbound conn, if we dialled */
  troupe__conn *up[MAX_UP];       /* conns that are up (in or out) */
  uint32_t nup;
  troupe__env *pend_head, *pend_tail;
  uint32_t npend;
  uv_timer_t lost_timer;
  bool timer_inited, lost;
  uint64_t incarnation;
} rlink;

typedef struct remoting {
  troupe_system *sys;
  const troupe__transport_class *cls;
  troupe__transport *t;
  char address[192];
  uint64_t incarnation;
  uint64_t node_lost_ms;
  uint32_t max_pending;
  rlink **links;
  uint32_t nlinks, cap;
  bool closing;
  uint32_t open_timers;
} remoting;

static rlink *rlink_find(remoting *r, uint64_t node) {
  for (uint32_t i = 0; i < r->nlinks; i++)
    if (r->links[i]->rn->index == node) return r->links[i];
  return NULL;
}

static rlink *rlink_get(remoting *r, troupe__rnode *rn) {
  rlink *l = rlink_find(r, rn->index);
  if (l) return l;
  if (r->nlinks == r->cap) {
    uint32_t nc = r->cap ? r->cap * 2 : 8;
    rlink **nl = realloc(r->links, nc * sizeof *nl);
    if (!nl) return NULL;
    r->links = nl;
    r->cap = nc;
  }
  l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->rn = rn;
  l->r = r;
  r->links[r->nlinks++] = l;
  return l;
}

static void dead(remoting *r, troupe__env *e, uint64_t node, int reason) {
  troupe_ref to = {node, e->target};
  troupe__dead_letter(r->sys, to, e, reason);
}

static void pend_fail(rlink *l, int reason) {
  troupe__env *e;
  while ((e = l->pend_head)) {
    l->pend_head = e->next;
    e->next = NULL;
    dead(l->r, e, l->rn->index, reason);
  }
  l->pend_tail = NULL;
  l->npend = 0;
}

static int rlink_send(rlink *l, troupe__env *e) {
  while (l->nup) {
    troupe__conn *c = l->up[l->nup - 1];
    int rc = c->t->cls->send(c, e);
    if (rc == 0) return 0;
    if (rc != TROUPE_ECLOSED) return rc;
    l->nup--;   /* went down under us; on_down will follow */
  }
  return TROUPE_ECLOSED;
}

static void on_lost_timer(uv_timer_t *h);

/* Start (or restart) the node-lost timer of a link that is not up. */
static void lost_timer_start(rlink *l) {
  remoting *r = l->r;
  if (!l->timer_inited) {
    uv_timer_init(&r->sys->loop, &l->lost_timer);
    l->lost_timer.data = l;
    l->timer_inited = true;
    r->open_timers++;
  }
  uv_timer_start(&l->lost_timer, on_lost_timer, r->node_lost_ms, 0);
}

/* Send e to remote node `node` (loop thread of the owner). Takes e. */
static void remote_out(remoting *r, uint64_t node, troupe__env *e) {
  troupe__node *n = troupe__node_get(node);
  troupe__rnode *rn = n ? atomic_load(&n->remote) : NULL;
  if (!rn || r->closing) {
    dead(r, e, node, TROUPE_ECLOSED);
    return;
  }
  rlink *l = rlink_get(r, rn);
  if (!l) {
    dead(r, e, node, TROUPE_ENOMEM);
    return;
  }
  if (l->nup) {
    int rc = rlink_send(l, e);
    if (rc == 0) return;
    if (rc != TROUPE_ECLOSED) {
      dead(r, e, node, rc);
      return;
    }
  }
  if (l->lost) {
    dead(r, e, node, TROUPE_ECLOSED);
    return;
  }
  if (!l->out) {
    int rc = r->cls->connect(r->t, rn->address, &l->out);
    if (rc < 0) {
      troupe__log(r->sys, TROUPE_LOG_WARN, "remote", "connect to %s@%s: %s",
                  rn->name, rn->address, troupe_errmsg());
      dead(r, e, node, rc);
      return;
    }
    l->out->user = l;
    /* a node never reached within node_lost_ms is lost too: what waits
     * for it becomes dead letters instead of waiting forever */
    lost_timer_start(l);
  }
  if (l->npend >= r->max_pending) {
    dead(r, e, node, TROUPE_EFULL);
    return;
  }
  e->next = NULL;
  if (l->pend_tail) l->pend_tail->next = e;
  else l->pend_head = e;
  l->pend_tail = e;
  l->npend++;
}

int troupe__remote_send(troupe__node *n, uint64_t node, troupe__env *e) {
  troupe__rnode *rn = atomic_load(&n->remote);
  troupe_system *cur = troupe__current;
  uint64_t owner = rnode_owner(rn);
  if (cur && cur->remoting && cur->node != owner && !owner_alive(owner)) {
    pthread_mutex_lock(&rnode_lock);
    if (!owner_alive(rn->owner)) rn->owner = cur->node;
    owner = rn->owner;
    pthread_mutex_unlock(&rnode_lock);
  }
  if (cur && cur->node == owner && cur->remoting) {
    remote_out(cur->remoting, node, e);
    return 0;
  }
  troupe__node *on = owner ? troupe__node_get(owner) : NULL;
  if (!on) {
    troupe_ref to = {node, e->target};
    if (cur) troupe__dead_letter(cur, to, e, TROUPE_ECLOSED);
    else troupe__env_release(NULL, e);
    return 0;
  }
  /* e->tnode names the remote node: the owner's troupe__inbound hands it
   * back to us (troupe__remote_inbound) on its loop */
  return troupe__send_node(cur, on, owner, e);
}

void troupe__remote_inbound(troupe_system *sys, troupe__env *e) {
  if (!sys->remoting) {
    troupe_ref to = {e->tnode, e->target};
    troupe__dead_letter(sys, to, e, TROUPE_ECLOSED);
    return;
  }
  remote_out(sys->remoting, e->tnode, e);
}

/* ------------------------------------------------------------------ */
/* Transport events */

static void on_lost_timer(uv_timer_t *h) {
  rlink *l = h->data;
  if (l->nup) return;
  l->lost = true;
  troupe__log(l->r->sys, TROUPE_LOG_WARN, "remote", "node %s@%s lost",
              l->rn->name, l->rn->address);
  pend_fail(l, TROUPE_ECLOSED);
  troupe__node_lost(l->r->sys, l->rn->index);
}

static void on_up(void *data, troupe__conn *c, const troupe__peer_info *p) {
  remoting *r = data;
  troupe__rnode *rn;
  if (troupe__rnode_get(p->system, strlen(p->system), p->address,
                        strlen(p->address), r->sys->node, &rn) < 0) {
    troupe__log(r->sys, TROUPE_LOG_ERROR, "remote", "peer %s@%s: %s",
                p->system, p->address, troupe_errmsg());
    return;
  }
  rlink *l = c->user ? c->user : rlink_get(r, rn);
  if (!l) return;
  c->user = l;
  if (l->incarnation && l->incarnation != p->incarnation && !l->lost) {
    /* the peer restarted: what we watched there is gone */
    troupe__node_lost(r->sys, rn->index);
  }
  l->incarnation = p->incarnation;
  l->lost = false;
  if (l->timer_inited) uv_timer_stop(&l->lost_timer);
  if (l->nup < MAX_UP) l->up[l->nup++] = c;
  troupe__env *e;
  while ((e = l->pend_head)) {
    l->pend_head = e->next;
    e->next = NULL;
    l->npend--;
    int rc = rlink_send(l, e);
    if (rc < 0) dead(r, e, rn->index, rc);
  }
  l->pend_tail = NULL;
}

static void on_down(void *data, troupe__conn *c, int err) {
  remoting *r = data;
  rlink *l = c->user;
  if (!l) return;
  for (uint32_t i = 0; i < l->nup; i++)
    if (l->up[i] == c) {
      l->up[i] = l->up[--l->nup];
      break;
    }
  if (c->inbound) c->user = NULL;
  if (l->nup || r->closing) return;
  troupe__log(r->sys, TROUPE_LOG_INFO, "remote", "rlink to %s@%s down: %s",
              l->rn->name, l->rn->address, troupe_strerror(err));
  lost_timer_start(l);
}

static void on_recv(void *data, troupe__conn *c, troupe__env *e) {
  remoting *r = data;
  (void)c;
  e->tnode = 0;
  troupe__inbound(r->sys, e);
}

/* ------------------------------------------------------------------ */
/* Start and stop */

/* The built-in messages that cross nodes must be known to the decoder
 * (troupe_type_resolve finds registered types only). */
static pthread_once_t builtins_once = PTHREAD_ONCE_INIT;
static int builtins_rc;
static void register_builtins(void) {
  const troupe_type *all[] = {
    &TROUPE__T_CONTROL, &TROUPE__T_IDENTIFY, &TROUPE_T_ACTOR_IDENTITY,
    &TROUPE_T_TERMINATED, &TROUPE_T_POISON_PILL,
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    int rc = troupe_type_register(all[i]);
    if (rc < 0 && !builtins_rc) builtins_rc = rc;
  }
}

int troupe_remote_start(troupe_system *sys, const troupe_remote_opts *o) {
  if (!sys || !o)
    return troupe__err(TROUPE_EINVAL, "troupe_remote_start: NULL argument");
  if (sys->remoting)
    return troupe__err(TROUPE_ESTATE, "remoting of %s already started",
                       sys->name);
  int st = atomic_load(&sys->state);
  if (st != TROUPE__SYS_CREATED && troupe__current != sys)
    return troupe__err(TROUPE_EWRONGTHREAD, "troupe_remote_start: from the "
                       "system's thread or before it runs");
  pthread_once(&builtins_once, register_builtins);
  if (builtins_rc < 0)
    return troupe__err(builtins_rc, "registering the built-in messages");
  const char *spec = o->listen ? o->listen : o->scheme;
  if (!spec) return troupe__err(TROUPE_EINVAL, "neither listen nor scheme");
  const char *sep = strstr(spec, "://");
  size_t sl = sep ? (size_t)(sep - spec) : strlen(spec);
  const troupe__transport_class *cls = troupe__transport_find(spec, sl);
  if (!cls)
    return troupe__err(TROUPE_EINVAL, "no transport for \"%.*s\"", (int)sl,
                       spec);
  remoting *r = calloc(1, sizeof *r);
  if (!r) return troupe__err(TROUPE_ENOMEM, "remoting");
  r->sys = sys;
  r->cls = cls;
  r->node_lost_ms = o->node_lost_ms ? o->node_lost_ms : 5000;
  r->max_pending = o->max_pending ? o->max_pending : 65536;
  r->incarnation = troupe__rand(sys) | 1;
  troupe__transport_opts to = {
    .system = sys->name, .advertise = o->advertise,
    .incarnation = r->incarnation, .secret = o->secret,
    .secret_len = o->secret_len,
  };
  troupe__transport_cbs cbs = {.data = r, .on_up = on_up,
                               .on_down = on_down, .on_recv = on_recv};
  troupe_system *prev = troupe__current;
  troupe__current = sys;
  int rc = cls->create(sys, &to, &cbs, &r->t);
  if (rc == 0 && o->listen) {
    char bound[192];
    rc = cls->listen(r->t, sep ? sep + 3 : "", bound, sizeof bound);
    if (rc == 0)
      snprintf(r->address, sizeof r->address, "%s",
               o->advertise ? o->advertise : bound);
  } else if (rc == 0 && o->advertise) {
    snprintf(r->address, sizeof r->address, "%s", o->advertise);
  }
  troupe__current = prev;
  if (rc < 0) {
    if (r->t) cls->destroy(r->t, NULL, NULL);
    free(r);
    return rc;
  }
  sys->remoting = r;
  if (r->address[0]) atomic_store(&sys->address, r->address);
  return 0;
}

int troupe_remote_address(troupe_system *sys, char *buf, size_t size) {
  if (!sys || !buf || !size)
    return troupe__err(TROUPE_EINVAL, "troupe_remote_address: NULL");
  const char *a = atomic_load(&sys->address);
  if (!a) return troupe__err(TROUPE_ENOENT, "%s has no address", sys->name);
  size_t n = strlen(a);
  if (n >= size) return troupe__err(TROUPE_ERANGE, "buffer too small");
  memcpy(buf, a, n + 1);
  return (int)n;
}

static void timer_closed(uv_handle_t *h) {
  rlink *l = h->data;
  l->r->open_timers--;
}

/* The system is terminating (loop thread): drop queued messages, stop
 * timers and close the transport. */
void troupe__remote_closing(troupe_system *sys) {
  remoting *r = sys->remoting;
  if (!r || r->closing) return;
  r->closing = true;
  for (uint32_t i = 0; i < r->nlinks; i++) {
    rlink *l = r->links[i];
    pend_fail(l, TROUPE_ECLOSED);
    if (l->timer_inited) uv_close((uv_handle_t *)&l->lost_timer, timer_closed);
  }
  if (r->t) r->cls->destroy(r->t, NULL, NULL);
  r->t = NULL;
}

void troupe__remote_free(troupe_system *sys) {
  remoting *r = sys->remoting;
  if (!r) return;
  atomic_store(&sys->address, NULL);
  for (uint32_t i = 0; i < r->nlinks; i++) free(r->links[i]);
  free(r->links);
  free(r);
  sys->remoting = NULL;
}

/* ------------------------------------------------------------------ */
/* Refs, resolve */

int troupe_ref_parse(troupe_system *sys, const char *uri, troupe_ref *out) {
  if (!sys || !uri || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_ref_parse: NULL argument");
  *out = TROUPE_REF_NONE;
  if (!strchr(uri, '#'))
    return troupe__err(TROUPE_EINVAL, "ref URI without a uid: \"%s\"", uri);
  return troupe__ref_from_uri(sys, uri, strlen(uri), out);
}

/* The node of "troupe://sys[@addr]/path" and where its path starts. */
static int uri_node(troupe_system *sys, const char *uri, uint64_t *node,
                    const char **path) {
  static const char scheme[] = "troupe://";
  if (strncmp(uri, scheme, sizeof scheme - 1) != 0)
    return troupe__err(TROUPE_EINVAL, "not a troupe URI: \"%s\"", uri);
  const char *p = uri + sizeof scheme - 1;
  const char *slash = strchr(p, '/');
  if (!slash) slash = p + strlen(p);
  const char *at = memchr(p, '@', (size_t)(slash - p));
  size_t nl = (size_t)((at ? at : slash) - p);
  *path = *slash ? slash : "/";
  if (at) {
    const char *mine = atomic_load(&sys->address);
    size_t al = (size_t)(slash - at - 1);
    if (mine && strlen(mine) == al && memcmp(mine, at + 1, al) == 0 &&
        strlen(sys->name) == nl && memcmp(sys->name, p, nl) == 0) {
      *node = sys->node;
      return 0;
    }
    return troupe__remote_node(sys, p, nl, at + 1, al, node);
  }
  if (strlen(sys->name) == nl && memcmp(sys->name, p, nl) == 0) {
    *node = sys->node;
    return 0;
  }
  *node = troupe__node_find_local(p, nl);
  if (!*node)
    return troupe__err(TROUPE_ENOENT, "no system \"%.*s\" in this process",
                       (int)nl, p);
  return 0;
}

int troupe_resolve(troupe_ctx *ctx, const char *uri, uint64_t timeout_ms,
                   uint64_t *ask_id) {
  if (!ctx || !uri)
    return troupe__err(TROUPE_EINVAL, "troupe_resolve: NULL argument");
  troupe_system *sys = troupe_ctx_system(ctx);
  uint64_t node;
  const char *path;
  int rc = uri_node(sys, uri, &node, &path);
  if (rc < 0) return rc;
  troupe_identify id = {(char *)path};
  troupe_ref root = {node, TROUPE__ROOT_UID};
  return troupe_ask(ctx, root, &TROUPE__T_IDENTIFY, &id, timeout_ms, ask_id);
}

int troupe_resolve_blocking(troupe_system *sys, const char *uri,
                            uint64_t timeout_ms, troupe_ref *out) {
  if (!sys || !uri || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_resolve_blocking: NULL");
  *out = TROUPE_REF_NONE;
  uint64_t node;
  const char *path;
  int rc = uri_node(sys, uri, &node, &path);
  if (rc < 0) return rc;
  troupe_identify id = {(char *)path};
  troupe_ref root = {node, TROUPE__ROOT_UID};
  troupe_reply_msg reply;
  rc = troupe_ask_blocking(sys, root, &TROUPE__T_IDENTIFY, &id, timeout_ms,
                           &reply);
  if (rc < 0) return rc;
  if (reply.type != &TROUPE_T_ACTOR_IDENTITY) {
    troupe_reply_free(&reply);
    return troupe__err(TROUPE_EDECODE, "unexpected answer to Identify");
  }
  *out = ((troupe_actor_identity *)reply.data)->actor;
  troupe_reply_free(&reply);
  if (troupe_ref_is_none(*out))
    return troupe__err(TROUPE_ENOENT, "nothing at \"%s\"", uri);
  return 0;
}
