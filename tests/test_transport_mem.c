/*
 * test_transport_mem.c: the in-memory transport (cluster/memtransport.c)
 * at the envelope level: delivery and order, manual pumping, drop, delay,
 * partition and heal, connection resets, refused secrets, the outbound
 * bound, destroy, bad addresses. Each node is a troupe system on its own
 * thread; transport calls run on its loop through troupe__post.
 */
#include "tt.h"
#include "cluster/internal.h"

typedef struct num { int32_t v; } num;
static const troupe_field num_fields[] = {TROUPE_FIELD(num, v, I32)};
static troupe_type T_NUM = TROUPE_TYPE("tm.Num", 1, num, num_fields);

typedef struct node {
  troupe_system *sys;
  troupe__transport *t;
  char bound[64];
  const char *secret;
  size_t max_outbound;
  /* loop-thread state, read through call() or atomics */
  troupe__conn *last_up;
  char peer[64], peer_addr[64];
  atomic_int ups, downs, recvs, destroyed, bad_order;
  int32_t next;                  /* expected value */
  int32_t last;
} node;

typedef struct call_ctx {
  node *n;
  void (*fn)(node *, void *);
  void *arg;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
} call_ctx;

static void call_tramp(troupe_system *sys, void *arg) {
  (void)sys;
  call_ctx *c = arg;
  c->fn(c->n, c->arg);
  pthread_mutex_lock(&c->mu);
  c->done = true;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

/* Run fn(n, arg) on n's loop and wait for it. */
static void call(node *n, void (*fn)(node *, void *), void *arg) {
  call_ctx c = {.n = n, .fn = fn, .arg = arg, .done = false};
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  if (troupe__post(n->sys, call_tramp, &c) == 0) {
    pthread_mutex_lock(&c.mu);
    while (!c.done) pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
  }
  pthread_mutex_destroy(&c.mu);
  pthread_cond_destroy(&c.cv);
}

static void on_up(void *data, troupe__conn *c, const troupe__peer_info *p) {
  node *n = data;
  n->last_up = c;
  snprintf(n->peer, sizeof n->peer, "%s", p->system);
  snprintf(n->peer_addr, sizeof n->peer_addr, "%s", p->address);
  atomic_fetch_add(&n->ups, 1);
}
static void on_down(void *data, troupe__conn *c, int err) {
  node *n = data;
  (void)err;
  if (n->last_up == c) n->last_up = NULL;
  atomic_fetch_add(&n->downs, 1);
}
static void on_recv(void *data, troupe__conn *c, troupe__env *e) {
  node *n = data;
  (void)c;
  int32_t v = *(const int32_t *)e->data;
  if (v != n->next) atomic_store(&n->bad_order, 1);
  n->next = v + 1;
  n->last = v;
  troupe__env_release(n->sys, e);
  atomic_fetch_add(&n->recvs, 1);
}

static const troupe_system_opts quiet = {.log_level = TROUPE_LOG_ERROR,
                                         .log_level_set = true};

static void do_create(node *n, void *arg) {
  (void)arg;
  troupe__transport_opts o = {.system = n->sys->name, .incarnation = 7,
                              .secret = (const uint8_t *)n->secret,
                              .secret_len = n->secret ? strlen(n->secret) : 0,
                              .max_outbound = n->max_outbound};
  troupe__transport_cbs cbs = {.data = n, .on_up = on_up,
                               .on_down = on_down, .on_recv = on_recv};
  int rc = troupe__transport_mem.create(n->sys, &o, &cbs, &n->t);
  TT_CHECK(rc == 0);
}

static int node_up(node *n, const char *name) {
  memset(n, 0, sizeof *n - 0);
  troupe_system_opts o = quiet;
  o.name = name;
  if (troupe_system_create(&n->sys, &o) < 0) return -1;
  if (troupe_system_start(n->sys) < 0) return -1;
  call(n, do_create, NULL);
  return n->t ? 0 : -1;
}

typedef struct str_rc { const char *s; int rc; troupe__conn *c; } str_rc;
static void do_listen(node *n, void *arg) {
  str_rc *a = arg;
  a->rc = n->t->cls->listen(n->t, a->s, n->bound, sizeof n->bound);
}
static int node_listen(node *n, const char *addr) {
  str_rc a = {addr, 0, NULL};
  call(n, do_listen, &a);
  return a.rc;
}
static void do_connect(node *n, void *arg) {
  str_rc *a = arg;
  a->rc = n->t->cls->connect(n->t, a->s, &a->c);
}
static troupe__conn *node_connect(node *n, const char *addr, int *rc) {
  str_rc a = {addr, 0, NULL};
  call(n, do_connect, &a);
  if (rc) *rc = a.rc;
  return a.c;
}

typedef struct send_args { troupe__conn *c; int32_t from, n; int rc; } send_args;
static void do_send(node *n, void *arg) {
  send_args *s = arg;
  troupe__conn *c = s->c ? s->c : n->last_up;
  s->rc = 0;
  for (int32_t i = 0; i < s->n; i++) {
    troupe__env *e = troupe__env_alloc(n->sys);
    int32_t v = s->from + i;
    troupe__env_set(e, &T_NUM, &v);
    e->kind = TROUPE__ENV_USER;
    e->target = 0;
    e->sender = TROUPE_REF_NONE;
    e->ask_id = 0;
    e->aux64 = 0;
    int rc = c ? c->t->cls->send(c, e) : TROUPE_ECLOSED;
    if (rc < 0) {
      troupe__env_release(n->sys, e);
      s->rc = rc;
      return;
    }
  }
}
static int node_send(node *n, troupe__conn *c, int32_t from, int32_t cnt) {
  send_args s = {c, from, cnt, 0};
  call(n, do_send, &s);
  return s.rc;
}

static void destroyed_cb(void *data) {
  atomic_store(&((node *)data)->destroyed, 1);
}
static void do_destroy(node *n, void *arg) {
  (void)arg;
  if (n->t) n->t->cls->destroy(n->t, destroyed_cb, n);
  n->t = NULL;
}
static void node_down(node *n) {
  if (!n->sys) return;
  call(n, do_destroy, NULL);
  troupe_system_destroy(n->sys);
  n->sys = NULL;
}

/* Two nodes on network `net`: b dials a. */
static int pair(node *a, node *b, const char *net) {
  char addr[96];
  if (node_up(a, "A") < 0 || node_up(b, "B") < 0) return -1;
  snprintf(addr, sizeof addr, "%s/a:1", net);
  if (node_listen(a, addr) != 0) return -1;
  snprintf(addr, sizeof addr, "%s/b:0", net);
  if (node_listen(b, addr) != 0) return -1;
  if (!node_connect(b, "a:1", NULL)) return -1;
  if (!TT_WAIT_UNTIL(atomic_load(&a->ups) == 1 && atomic_load(&b->ups) == 1,
                     5000))
    return -1;
  return 0;
}

static void test_deliver_in_order(void) {
  node a, b;
  troupe__memnet *net = troupe__memnet_get("t1");
  TT_ASSERT(net);
  TT_EQ_INT(pair(&a, &b, "t1"), 0);
  TT_EQ_STR(b.bound, "b:1");
  TT_EQ_STR(a.peer, "B");
  TT_EQ_STR(a.peer_addr, "b:1");
  TT_EQ_STR(b.peer, "A");
  TT_EQ_STR(b.peer_addr, "a:1");
  TT_ASSERT(a.last_up && a.last_up->inbound);
  TT_ASSERT(b.last_up && !b.last_up->inbound);
  TT_EQ_INT(node_send(&b, NULL, 0, 1000), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.recvs) == 1000, 5000));
  TT_EQ_INT(atomic_load(&a.bad_order), 0);
  /* replies over the inbound conn */
  TT_EQ_INT(node_send(&a, NULL, 0, 10), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.recvs) == 10, 5000));
  troupe__memnet_stats st;
  troupe__memnet_get_stats(net, &st);
  TT_EQ_INT(st.sent, 1010);
  TT_EQ_INT(st.delivered, 1010);
  TT_EQ_INT(st.links, 1);
  node_down(&b);
  TT_ASSERT(atomic_load(&b.destroyed) == 1);
  /* the other side sees the link go down */
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.downs) == 1, 5000));
  node_down(&a);
  troupe__memnet_get_stats(net, &st);
  TT_EQ_INT(st.links, 0);
  troupe__memnet_put(net);
}

static void test_manual_pump_and_delay(void) {
  node a, b;
  troupe__memnet *net = troupe__memnet_get("t2");
  troupe__memnet_set_manual(net, true);
  TT_EQ_INT(pair(&a, &b, "t2"), 0);
  TT_EQ_INT(node_send(&b, NULL, 0, 3), 0);
  troupe__memnet_stats st;
  troupe__memnet_get_stats(net, &st);
  TT_EQ_INT(st.in_flight, 3);
  TT_EQ_INT(atomic_load(&a.recvs), 0);
  TT_EQ_INT(troupe__memnet_pump(net), 3);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.recvs) == 3, 5000));
  /* delay: held two extra steps; later frames stay behind it */
  TT_EQ_INT(troupe__memnet_delay(net, "b:1", "a:1", 2), 0);
  TT_EQ_INT(node_send(&b, NULL, 3, 1), 0);
  TT_EQ_INT(troupe__memnet_delay(net, "b:1", "a:1", 0), 0);
  TT_EQ_INT(node_send(&b, NULL, 4, 1), 0);
  TT_EQ_INT(node_send(&a, NULL, 0, 1), 0);   /* other direction not held */
  TT_EQ_INT(troupe__memnet_pump(net), 1);
  TT_EQ_INT(troupe__memnet_pump(net), 0);
  TT_EQ_INT(troupe__memnet_pump(net), 2);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.recvs) == 5, 5000));
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.recvs) == 1, 5000));
  TT_EQ_INT(atomic_load(&a.bad_order), 0);
  TT_EQ_INT(a.last, 4);
  /* automatic delivery again: a held frame still blocks its direction */
  troupe__memnet_set_manual(net, false);
  TT_EQ_INT(troupe__memnet_delay(net, "b:1", "a:1", 1), 0);
  TT_EQ_INT(node_send(&b, NULL, 5, 1), 0);
  TT_EQ_INT(troupe__memnet_delay(net, "b:1", "a:1", 0), 0);
  TT_EQ_INT(node_send(&b, NULL, 6, 1), 0);
  troupe__memnet_get_stats(net, &st);
  TT_EQ_INT(st.in_flight, 2);
  TT_EQ_INT(troupe__memnet_pump_all(net, 10), 2);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.recvs) == 7, 5000));
  TT_EQ_INT(atomic_load(&a.bad_order), 0);
  node_down(&b);
  node_down(&a);
  troupe__memnet_put(net);
}

static void test_drop(void) {
  node a, b;
  troupe__memnet *net = troupe__memnet_get("t3");
  TT_EQ_INT(pair(&a, &b, "t3"), 0);
  TT_EQ_INT(troupe__memnet_drop(net, "b:1", "a:1", 2), 0);
  a.next = 2;   /* 0 and 1 are lost */
  TT_EQ_INT(node_send(&b, NULL, 0, 5), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.recvs) == 3, 5000));
  TT_EQ_INT(atomic_load(&a.bad_order), 0);
  TT_EQ_INT(troupe_system_dead_letters(b.sys), 2);
  troupe__memnet_stats st;
  troupe__memnet_get_stats(net, &st);
  TT_EQ_INT(st.dropped, 2);
  node_down(&b);
  node_down(&a);
  troupe__memnet_put(net);
}

static void test_partition_heal_reset(void) {
  node a, b;
  troupe__memnet *net = troupe__memnet_get("t4");
  troupe__memnet_set_manual(net, true);
  TT_EQ_INT(pair(&a, &b, "t4"), 0);
  troupe__conn *out = b.last_up;
  TT_EQ_INT(node_send(&b, NULL, 0, 4), 0);     /* in flight */
  TT_EQ_INT(troupe__memnet_partition(net, "a:1", "b:1"), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.downs) == 1 &&
                          atomic_load(&b.downs) == 1, 5000));
  /* the frames in flight were lost and counted by the sender */
  TT_ASSERT(TT_WAIT_UNTIL(troupe_system_dead_letters(b.sys) == 4, 5000));
  TT_EQ_INT(node_send(&b, out, 0, 1), TROUPE_ECLOSED);
  TT_EQ_INT(troupe__memnet_pump(net), 0);
  troupe__memnet_stats st;
  troupe__memnet_get_stats(net, &st);
  TT_EQ_INT(st.links, 0);
  /* heal: the same outbound conn comes up again */
  TT_EQ_INT(troupe__memnet_heal(net, "b:1", "a:1"), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.ups) == 2 &&
                          atomic_load(&b.ups) == 2, 5000));
  TT_ASSERT(b.last_up == out);
  a.next = 10;
  TT_EQ_INT(node_send(&b, out, 10, 2), 0);
  troupe__memnet_pump(net);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.recvs) == 2, 5000));
  /* a partition from everyone */
  TT_EQ_INT(troupe__memnet_partition(net, "b:1", NULL), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.downs) == 2, 5000));
  TT_EQ_INT(troupe__memnet_heal(net, "*", NULL), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.ups) == 3, 5000));
  /* a reset: down and up at once */
  TT_EQ_INT(troupe__memnet_disconnect(net, "a:1", "b:1"), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.downs) == 3 &&
                          atomic_load(&b.ups) == 4, 5000));
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.downs) == 3 &&
                          atomic_load(&a.ups) == 4, 5000));
  TT_EQ_INT(node_send(&b, out, 12, 1), 0);
  troupe__memnet_pump(net);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a.recvs) == 3, 5000));
  TT_EQ_INT(atomic_load(&a.bad_order), 0);
  node_down(&b);
  node_down(&a);
  troupe__memnet_put(net);
}

static void test_restart_reconnects(void) {
  /* a dial to an address nobody holds waits; a listener appearing there
   * (a restarted peer) is connected at once */
  node a, b, a2;
  TT_EQ_INT(pair(&a, &b, "t5"), 0);
  node_down(&a);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.downs) == 1, 5000));
  TT_EQ_INT(node_up(&a2, "A"), 0);
  TT_EQ_INT(node_listen(&a2, "t5/a:1"), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.ups) == 2, 5000));
  TT_EQ_INT(node_send(&b, NULL, 0, 3), 0);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&a2.recvs) == 3, 5000));
  node_down(&b);
  node_down(&a2);
}

static void test_secret_refused(void) {
  node a, b;
  TT_EQ_INT(node_up(&a, "A"), 0);
  memset(&b, 0, sizeof b);
  troupe_system_opts o = quiet;
  o.name = "B";
  TT_EQ_INT(troupe_system_create(&b.sys, &o), 0);
  TT_EQ_INT(troupe_system_start(b.sys), 0);
  b.secret = "other";
  call(&b, do_create, NULL);
  TT_EQ_INT(node_listen(&a, "t6/a:1"), 0);
  TT_EQ_INT(node_listen(&b, "t6/b:1"), 0);
  TT_ASSERT(node_connect(&b, "a:1", NULL));
  troupe__memnet *net = troupe__memnet_get("t6");
  troupe__memnet_stats st;
  troupe__memnet_get_stats(net, &st);
  TT_EQ_INT(st.refused, 1);
  TT_EQ_INT(st.links, 0);
  TT_EQ_INT(atomic_load(&a.ups) + atomic_load(&b.ups), 0);
  troupe__memnet_put(net);
  node_down(&b);
  node_down(&a);
}

static void test_outbound_bound(void) {
  node a, b;
  troupe__memnet *net = troupe__memnet_get("t7");
  troupe__memnet_set_manual(net, true);
  TT_EQ_INT(node_up(&a, "A"), 0);
  memset(&b, 0, sizeof b);
  troupe_system_opts o = quiet;
  o.name = "B";
  TT_EQ_INT(troupe_system_create(&b.sys, &o), 0);
  TT_EQ_INT(troupe_system_start(b.sys), 0);
  b.max_outbound = 1000;
  call(&b, do_create, NULL);
  TT_EQ_INT(node_listen(&a, "t7/a:1"), 0);
  TT_EQ_INT(node_listen(&b, "t7/b:1"), 0);
  TT_ASSERT(node_connect(&b, "a:1", NULL));
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&b.ups) == 1, 5000));
  TT_EQ_INT(node_send(&b, NULL, 0, 1000), TROUPE_EFULL);
  troupe__memnet_stats st;
  troupe__memnet_get_stats(net, &st);
  TT_ASSERT(st.in_flight > 0 && st.in_flight < 1000);
  size_t queued = st.in_flight;
  TT_EQ_INT(troupe__memnet_pump(net), queued);
  TT_ASSERT(TT_WAIT_UNTIL((size_t)atomic_load(&a.recvs) == queued, 5000));
  TT_EQ_INT(node_send(&b, NULL, (int32_t)queued, 1), 0);   /* room again */
  node_down(&b);
  node_down(&a);
  troupe__memnet_put(net);
}

static void do_bad(node *n, void *arg) {
  (void)arg;
  char bound[64];
  troupe__conn *c;
  const troupe__transport_class *k = n->t->cls;
  TT_CHECK(k->connect(n->t, "a:1", &c) == TROUPE_ESTATE);
  TT_CHECK(k->listen(n->t, "nonet", bound, sizeof bound) == TROUPE_EINVAL);
  TT_CHECK(k->listen(n->t, "n/a/b", bound, sizeof bound) == TROUPE_EINVAL);
  TT_CHECK(k->listen(n->t, "n/a@b", bound, sizeof bound) == TROUPE_EINVAL);
  TT_CHECK(k->listen(n->t, "/a", bound, sizeof bound) == TROUPE_EINVAL);
  TT_CHECK(k->listen(n->t, "t8/x:1", bound, sizeof bound) == 0);
  TT_CHECK(k->listen(n->t, "t8/x:2", bound, sizeof bound) == TROUPE_ESTATE);
  TT_CHECK(k->connect(n->t, "bad/addr", &c) == TROUPE_EINVAL);
  TT_CHECK(k->connect(n->t, "", &c) == TROUPE_EINVAL);
}

static void test_bad_args(void) {
  node a, b;
  TT_EQ_INT(node_up(&a, "A"), 0);
  call(&a, do_bad, NULL);
  TT_EQ_INT(node_up(&b, "B"), 0);
  TT_EQ_INT(node_listen(&b, "t8/x:1"), TROUPE_EIO);   /* in use */
  TT_ASSERT(troupe__transport_find("mem", 3) == &troupe__transport_mem);
  TT_ASSERT(troupe__memnet_get("bad name") == NULL);
  node_down(&b);
  node_down(&a);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  if (troupe_type_register(&T_NUM) < 0) return 1;
  TT_RUN(test_deliver_in_order);
  TT_RUN(test_manual_pump_and_delay);
  TT_RUN(test_drop);
  TT_RUN(test_partition_heal_reset);
  TT_RUN(test_restart_reconnects);
  TT_RUN(test_secret_refused);
  TT_RUN(test_outbound_bound);
  TT_RUN(test_bad_args);
  return tt_done();
}
