/* test_actor.c: the core actor runtime. */
#include "tt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <troupe/troupe.h>

/* Local-only flat message types (no field table). */
static troupe_type T_INT = {.manifest = "test.Int", .version = 1,
                            .size = sizeof(int)};
static troupe_type T_PING = {.manifest = "test.Ping", .version = 1,
                             .size = sizeof(int)};
static troupe_type T_FAIL = {.manifest = "test.Fail", .version = 1,
                             .size = sizeof(int)};
static troupe_type T_GET = {.manifest = "test.Get", .version = 1, .size = 0};
static troupe_type T_BIG = {.manifest = "test.Big", .version = 1,
                            .size = 200};

/* Quiet logs: tests check behaviour, not text. */
static troupe_system *new_system(const char *name) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = name, .log_level = TROUPE_LOG_OFF};
  int rc = troupe_system_create(&sys, &o);
  return rc == 0 ? sys : NULL;
}

static int int_of(const troupe_msg *m) { return *(const int *)m->data; }

/* ------------------------------------------------------------------ */
/* A counter: adds T_INT values, replies with the total on T_GET, fails
 * with the given code on T_FAIL. */

typedef struct counter {
  int total;
  int inits;
} counter;

static atomic_int counter_inits, counter_stops, counter_pre, counter_post;

static int counter_init(troupe_ctx *ctx, void *st, const void *arg) {
  counter *c = st;
  c->total = arg ? *(const int *)arg : 0;
  atomic_fetch_add(&counter_inits, 1);
  return 0;
}

static int counter_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  counter *c = st;
  if (m->type == &T_INT) {
    c->total += int_of(m);
    return 0;
  }
  if (m->type == &T_GET) return troupe_reply(ctx, &T_INT, &c->total);
  if (m->type == &T_FAIL) return int_of(m);
  return TROUPE_UNHANDLED;
}

static void counter_post_stop(troupe_ctx *ctx, void *st) {
  atomic_fetch_add(&counter_stops, 1);
}
static void counter_pre_restart(troupe_ctx *ctx, void *st, int err) {
  atomic_fetch_add(&counter_pre, 1);
}
static void counter_post_restart(troupe_ctx *ctx, void *st, int err) {
  atomic_fetch_add(&counter_post, 1);
}

static const troupe_behavior counter_b = {
  .name = "counter",
  .state_size = sizeof(counter),
  .init = counter_init,
  .receive = counter_receive,
  .post_stop = counter_post_stop,
  .pre_restart = counter_pre_restart,
  .post_restart = counter_post_restart,
};

static int get_total(troupe_system *sys, troupe_ref r, int *out) {
  troupe_reply_msg rep;
  int rc = troupe_ask_blocking(sys, r, &T_GET, NULL, 5000, &rep);
  if (rc < 0) return rc;
  if (rep.type != &T_INT) {
    troupe_reply_free(&rep);
    return -100;
  }
  *out = *(int *)rep.data;
  troupe_reply_free(&rep);
  return 0;
}

static void test_create_invalid(void) {
  troupe_system *sys = NULL;
  TT_EQ_INT(troupe_system_create(NULL, NULL), TROUPE_EINVAL);
  troupe_system_opts o = {.name = "bad name!"};
  TT_EQ_INT(troupe_system_create(&sys, &o), TROUPE_EINVAL);
  TT_ASSERT(sys == NULL);
  TT_ASSERT(strlen(troupe_errmsg()) > 0);
  troupe_system_destroy(NULL);
  TT_EQ_INT(troupe_tell(TROUPE_REF_NONE, NULL, NULL, TROUPE_REF_NONE),
            TROUPE_EINVAL);
  TT_EQ_STR(troupe_err_name(TROUPE_ECONFLICT), "TROUPE_ECONFLICT");
  TT_EQ_STR(troupe_strerror(TROUPE_ETIMEDOUT), "timed out");
  TT_EQ_STR(troupe_strerror(-9999), "unknown error");
}

static void test_destroy_unstarted(void) {
  troupe_system *sys = new_system("unstarted");
  TT_ASSERT(sys);
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, NULL, &r), 0);
  int one = 1;
  TT_EQ_INT(troupe_tell(r, &T_INT, &one, TROUPE_REF_NONE), 0);
  troupe_system_destroy(sys);
}

static void test_tell_and_blocking_ask(void) {
  troupe_system *sys = new_system("tell");
  TT_ASSERT(sys);
  troupe_ref r;
  int start = 10;
  troupe_spawn_opts so = {.name = "counter", .arg = &start,
                          .arg_size = sizeof start};
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, &so, &r), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  for (int i = 1; i <= 100; i++)
    TT_EQ_INT(troupe_tell(r, &T_INT, &i, TROUPE_REF_NONE), 0);
  int total = 0;
  TT_EQ_INT(get_total(sys, r, &total), 0);
  TT_EQ_INT(total, 10 + 5050);
  /* spawning from another thread while running */
  troupe_ref r2;
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, &so, &r2), TROUPE_EEXIST);
  so.name = "counter2";
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, &so, &r2), 0);
  TT_EQ_INT(get_total(sys, r2, &total), 0);
  TT_EQ_INT(total, 10);
  TT_EQ_INT(troupe_system_stop(sys), 0);
  TT_EQ_INT(troupe_system_wait(sys, 10000), 0);
  /* after termination: asks fail cleanly, tells are dead letters */
  troupe_reply_msg rep;
  TT_EQ_INT(troupe_ask_blocking(sys, r, &T_GET, NULL, 100, &rep),
            TROUPE_ECLOSED);
  int one = 1;
  TT_EQ_INT(troupe_tell(r, &T_INT, &one, TROUPE_REF_NONE), 0);
  troupe_system_destroy(sys);
}

static void test_ask_blocking_timeout(void) {
  troupe_system *sys = new_system("asktimeout");
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, NULL, &r), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  troupe_reply_msg rep;
  int x = 1;
  /* T_INT gets no reply */
  uint64_t t0 = tt_now_ms();
  TT_EQ_INT(troupe_ask_blocking(sys, r, &T_INT, &x, 50, &rep),
            TROUPE_ETIMEDOUT);
  TT_ASSERT(tt_now_ms() - t0 >= 45);
  troupe_system_destroy(sys);
}

/* ------------------------------------------------------------------ */
/* A probe actor for in-loop scenarios: runs a script function on start and
 * records what it receives. */

typedef struct probe {
  int got[64];
  int n;
  troupe_ref other;
  uint64_t ask_id;
  int terminated;
  int timeouts;
  int dead_letters;
} probe;

static probe *g_probe;

static int probe_init(troupe_ctx *ctx, void *st, const void *arg) {
  g_probe = st;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Supervision */

static troupe_directive decide_by_code(void *data, troupe_ref child, int err) {
  switch (err) {
    case -1001: return TROUPE_RESUME;
    case -1002: return TROUPE_RESTART;
    case -1003: return TROUPE_STOP;
    default: return TROUPE_ESCALATE;
  }
}

static const troupe_supervisor by_code = {.decide = decide_by_code};

static void test_supervision_directives(void) {
  troupe_system *sys = new_system("sup");
  troupe_system_opts o = {.name = "sup2", .log_level = TROUPE_LOG_OFF,
                          .user_supervisor = &by_code};
  troupe_system_destroy(sys);
  TT_EQ_INT(troupe_system_create(&sys, &o), 0);
  atomic_store(&counter_pre, 0);
  atomic_store(&counter_post, 0);
  atomic_store(&counter_stops, 0);
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, NULL, &r), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  int five = 5, total = -1;
  troupe_tell(r, &T_INT, &five, TROUPE_REF_NONE);
  int code = -1001;  /* resume: state kept */
  troupe_tell(r, &T_FAIL, &code, TROUPE_REF_NONE);
  TT_EQ_INT(get_total(sys, r, &total), 0);
  TT_EQ_INT(total, 5);
  TT_EQ_INT(atomic_load(&counter_pre), 0);
  code = -1002;      /* restart: state reset, hooks run */
  troupe_tell(r, &T_FAIL, &code, TROUPE_REF_NONE);
  TT_EQ_INT(get_total(sys, r, &total), 0);
  TT_EQ_INT(total, 0);
  TT_EQ_INT(atomic_load(&counter_pre), 1);
  TT_EQ_INT(atomic_load(&counter_post), 1);
  code = -1003;      /* stop */
  troupe_tell(r, &T_FAIL, &code, TROUPE_REF_NONE);
  troupe_reply_msg rep;
  TT_EQ_INT(troupe_ask_blocking(sys, r, &T_GET, NULL, 200, &rep),
            TROUPE_ETIMEDOUT);
  TT_EQ_INT(atomic_load(&counter_stops), 1);
  TT_ASSERT(troupe_system_dead_letters(sys) >= 1);
  troupe_system_destroy(sys);
}

static void test_escalation_stops_system(void) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = "esc", .log_level = TROUPE_LOG_OFF,
                          .user_supervisor = &by_code};
  TT_EQ_INT(troupe_system_create(&sys, &o), 0);
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, NULL, &r), 0);
  atomic_store(&counter_stops, 0);
  int code = -1999;  /* escalate → root guardian → stop the system */
  troupe_tell(r, &T_FAIL, &code, TROUPE_REF_NONE);
  TT_EQ_INT(troupe_system_run(sys), -1999);
  TT_EQ_INT(atomic_load(&counter_stops), 1);
  troupe_system_destroy(sys);
}

static const troupe_supervisor budget2 = {
  .default_directive = TROUPE_RESTART, .max_restarts = 2, .window_ms = 60000};

static void test_restart_budget(void) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = "budget", .log_level = TROUPE_LOG_OFF,
                          .user_supervisor = &budget2};
  TT_EQ_INT(troupe_system_create(&sys, &o), 0);
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, NULL, &r), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  atomic_store(&counter_stops, 0);
  atomic_store(&counter_post, 0);
  int code = -5, total;
  for (int i = 0; i < 2; i++) {
    troupe_tell(r, &T_FAIL, &code, TROUPE_REF_NONE);
    TT_EQ_INT(get_total(sys, r, &total), 0);  /* alive after restart */
  }
  TT_EQ_INT(atomic_load(&counter_post), 2);
  troupe_tell(r, &T_FAIL, &code, TROUPE_REF_NONE);  /* third: budget out */
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&counter_stops) == 1, 5000));
  troupe_reply_msg rep;
  TT_EQ_INT(troupe_ask_blocking(sys, r, &T_GET, NULL, 100, &rep),
            TROUPE_ETIMEDOUT);
  troupe_system_destroy(sys);
}

static const troupe_supervisor backoff_sup = {
  .default_directive = TROUPE_RESTART, .backoff_min_ms = 100,
  .backoff_max_ms = 1000, .backoff_jitter = 0.2};

static void test_restart_backoff(void) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = "backoff", .log_level = TROUPE_LOG_OFF,
                          .user_supervisor = &backoff_sup};
  TT_EQ_INT(troupe_system_create(&sys, &o), 0);
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(sys, &counter_b, NULL, &r), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  atomic_store(&counter_post, 0);
  int code = -5, total;
  uint64_t t0 = tt_now_ms();
  troupe_tell(r, &T_FAIL, &code, TROUPE_REF_NONE);
  TT_EQ_INT(get_total(sys, r, &total), 0);  /* waits out the backoff */
  uint64_t dt = tt_now_ms() - t0;
  TT_ASSERT(dt >= 95);
  TT_EQ_INT(atomic_load(&counter_post), 1);
  /* a second failure backs off longer (200 ms minimum) */
  t0 = tt_now_ms();
  troupe_tell(r, &T_FAIL, &code, TROUPE_REF_NONE);
  TT_EQ_INT(get_total(sys, r, &total), 0);
  TT_ASSERT(tt_now_ms() - t0 >= 195);
  troupe_system_destroy(sys);
}

/* A parent with two children under all-for-one: one child's failure
 * restarts both. Children are spawned in init. */
static const troupe_supervisor all4one = {.default_directive = TROUPE_RESTART,
                                          .all_for_one = true};

static int parent_init(troupe_ctx *ctx, void *st, const void *arg) {
  troupe_ref a, b;
  troupe_spawn_opts oa = {.name = "a"}, ob = {.name = "b"};
  int rc = troupe_spawn(ctx, &counter_b, &oa, &a);
  if (rc == 0) rc = troupe_spawn(ctx, &counter_b, &ob, &b);
  return rc;
}

static int parent_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  /* forward T_INT to child named by value's sign: >0 a, <0 b */
  if (m->type == &T_INT || m->type == &T_FAIL) {
    troupe_ref ch;
    int v = int_of(m);
    const char *n = (m->type == &T_INT ? v > 0 : v == -1) ? "a" : "b";
    if (troupe_child(ctx, n, &ch) < 0) return 0;
    return troupe_forward(ctx, ch);
  }
  return TROUPE_UNHANDLED;
}

static const troupe_behavior parent_b = {
  .name = "parent", .init = parent_init, .receive = parent_receive,
  .supervisor = &all4one,
};

static void test_all_for_one_and_paths(void) {
  troupe_system *sys = new_system("afo");
  troupe_ref p;
  troupe_spawn_opts so = {.name = "p"};
  TT_EQ_INT(troupe_system_spawn(sys, &parent_b, &so, &p), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  atomic_store(&counter_post, 0);
  int plus = 7, minus = -3;
  troupe_tell(p, &T_INT, &plus, TROUPE_REF_NONE);
  troupe_tell(p, &T_INT, &minus, TROUPE_REF_NONE);
  /* fail child b (-2 → "b") */
  int code = -2;
  troupe_tell(p, &T_FAIL, &code, TROUPE_REF_NONE);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&counter_post) == 2, 5000));
  troupe_system_destroy(sys);
}

/* In-loop scenarios run from a driver actor's init and receive. */

typedef struct driver {
  int step;
  troupe_ref a, b;
  int seen[32];
  int nseen;
  uint64_t ask_id;
  int result;        /* 1 pass, <0 failure line */
} driver;

static int g_result;
#define DCHECK(cond)                                                        \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "driver check failed at line %d: %s\n", __LINE__,     \
              #cond);                                                       \
      g_result = -__LINE__;                                                 \
      troupe_system_stop(troupe_ctx_system(ctx));                           \
      return 0;                                                             \
    }                                                                       \
  } while (0)
#define DPASS()                                                             \
  do {                                                                      \
    if (g_result == 0) g_result = 1;                                        \
    troupe_system_stop(troupe_ctx_system(ctx));                             \
    return 0;                                                               \
  } while (0)

static int run_driver(const troupe_behavior *b, const char *name) {
  troupe_system *sys = new_system(name);
  if (!sys) return -1;
  g_result = 0;
  troupe_ref d;
  if (troupe_system_spawn(sys, b, NULL, &d) < 0) return -2;
  int rc = troupe_system_run(sys);
  troupe_system_destroy(sys);
  if (rc != 0) return rc;
  return g_result;
}

/* --- death watch ---------------------------------------------------- */

static int watch_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &TROUPE_T_TERMINATED) {
    const troupe_terminated *t = m->data;
    d->seen[d->nseen++] = t->existence_confirmed ? 1 : 2;
    if (d->nseen == 1) {
      DCHECK(troupe_ref_eq(t->actor, d->a));
      DCHECK(troupe_ref_eq(m->sender, d->a));
      DCHECK(!troupe_ref_alive(troupe_ctx_system(ctx), d->a));
      /* watching it again now: dead → Terminated, not confirmed */
      DCHECK(troupe_watch(ctx, d->a) == 0);
      /* b was unwatched: its Terminated must never come */
      troupe_stop(ctx, d->b);
      troupe_timer_once(ctx, 1, 50, &T_GET, NULL);
    }
    return 0;
  }
  if (m->type == &T_GET) {
    DCHECK(d->nseen == 2);
    DCHECK(d->seen[0] == 1 && d->seen[1] == 2);
    DPASS();
  }
  return 0;
}

static int watch_init(troupe_ctx *ctx, void *st, const void *arg) {
  driver *d = st;
  if (troupe_spawn(ctx, &counter_b, NULL, &d->a) < 0) return -1;
  if (troupe_spawn(ctx, &counter_b, NULL, &d->b) < 0) return -1;
  troupe_watch(ctx, d->a);
  troupe_watch(ctx, d->a);           /* twice: still one Terminated */
  troupe_watch(ctx, d->b);
  troupe_unwatch(ctx, d->b);
  troupe_stop(ctx, d->a);
  return 0;
}

static const troupe_behavior watch_b = {
  .name = "watcher", .state_size = sizeof(driver), .init = watch_init,
  .receive = watch_receive};

static void test_death_watch(void) {
  TT_EQ_INT(run_driver(&watch_b, "watch"), 1);
}

/* --- timers ----------------------------------------------------------- */

static int timer_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &T_INT) {
    int v = int_of(m);
    d->seen[d->nseen++] = v;
    if (v == 100) {                   /* periodic */
      int periodic = 0;
      for (int i = 0; i < d->nseen; i++) periodic += d->seen[i] == 100;
      if (periodic == 3) {
        DCHECK(troupe_timer_cancel(ctx, 7) == 0);
        DCHECK(troupe_timer_cancel(ctx, 7) == TROUPE_ENOENT);
        DCHECK(!troupe_timer_active(ctx, 7));
        troupe_timer_once(ctx, 9, 60, &T_GET, NULL);
      }
    }
    return 0;
  }
  if (m->type == &T_GET) {
    /* expected: 2 (the replacement of key 1), and exactly 3 periodic */
    int twos = 0, ones = 0, periodic = 0;
    for (int i = 0; i < d->nseen; i++) {
      twos += d->seen[i] == 2;
      ones += d->seen[i] == 1;
      periodic += d->seen[i] == 100;
    }
    DCHECK(ones == 0);
    DCHECK(twos == 1);
    DCHECK(periodic == 3);
    DPASS();
  }
  return 0;
}

static int timer_init(troupe_ctx *ctx, void *st, const void *arg) {
  int one = 1, two = 2, hundred = 100;
  troupe_timer_once(ctx, 1, 10, &T_INT, &one);
  troupe_timer_once(ctx, 1, 20, &T_INT, &two);    /* replaces key 1 */
  troupe_timer_periodic(ctx, 7, 15, &T_INT, &hundred);
  if (!troupe_timer_active(ctx, 1)) return -1;
  if (troupe_timer_periodic(ctx, 8, 0, &T_INT, &one) != TROUPE_EINVAL)
    return -1;
  return 0;
}

static const troupe_behavior timer_b = {
  .name = "timers", .state_size = sizeof(driver), .init = timer_init,
  .receive = timer_receive};

static void test_timers(void) { TT_EQ_INT(run_driver(&timer_b, "timers"), 1); }

/* A timer message already in the mailbox when the timer is cancelled is
 * never received: key 3 (T_PING) and key 1 (periodic T_INT) are due in the
 * same loop turn, key 3 first, so when T_PING is handled the T_INT from
 * key 1 is queued behind it; cancelling key 1 must drop it. */
static int tcancel_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &T_PING) {
    DCHECK(troupe_timer_cancel(ctx, 1) == 0);
    troupe_timer_once(ctx, 2, 30, &T_GET, NULL);
    return 0;
  }
  if (m->type == &T_INT) {
    d->nseen++;  /* must not happen */
    return 0;
  }
  if (m->type == &T_GET) {
    DCHECK(d->nseen == 0);
    DPASS();
  }
  return 0;
}

static int tcancel_init(troupe_ctx *ctx, void *st, const void *arg) {
  int two = 2, p = 0;
  troupe_timer_once(ctx, 3, 5, &T_PING, &p);
  troupe_timer_periodic(ctx, 1, 5, &T_INT, &two);
  return 0;
}

static const troupe_behavior tcancel_b = {
  .name = "tcancel", .state_size = sizeof(driver), .init = tcancel_init,
  .receive = tcancel_receive};

static void test_timer_cancel_filters_queued(void) {
  TT_EQ_INT(run_driver(&tcancel_b, "tcancel"), 1);
}

/* --- stash and become -------------------------------------------------- */

static int stash_open(troupe_ctx *ctx, void *st, const troupe_msg *m);

static int stash_closed(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &T_INT) {
    DCHECK(troupe_stash(ctx) == 0);
    DCHECK(troupe_stash(ctx) == TROUPE_ESTATE);  /* twice */
    return 0;
  }
  if (m->type == &T_PING) {
    DCHECK(troupe_stash_size(ctx) == 3);
    troupe_become(ctx, stash_open);
    DCHECK(troupe_unstash_all(ctx) == 3);
    return 0;
  }
  (void)d;
  return 0;
}

static int stash_open(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &T_INT) {
    d->seen[d->nseen++] = int_of(m);
    if (d->nseen == 4) {
      DCHECK(d->seen[0] == 1 && d->seen[1] == 2 && d->seen[2] == 3 &&
             d->seen[3] == 4);
      DPASS();
    }
  }
  return 0;
}

static int stash_init(troupe_ctx *ctx, void *st, const void *arg) {
  troupe_ref self = troupe_self(ctx);
  int v;
  for (v = 1; v <= 3; v++) troupe_tell(self, &T_INT, &v, self);
  int p = 0;
  troupe_tell(self, &T_PING, &p, self);
  v = 4;
  troupe_tell(self, &T_INT, &v, self);
  return 0;
}

static const troupe_behavior stash_b = {
  .name = "stash", .state_size = sizeof(driver), .init = stash_init,
  .receive = stash_closed, .stash_capacity = 3};

static void test_stash_become(void) {
  TT_EQ_INT(run_driver(&stash_b, "stash"), 1);
}

static int stashcap_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &T_INT) {
    int rc = troupe_stash(ctx);
    if (int_of(m) <= 2) DCHECK(rc == 0);
    else {
      DCHECK(rc == TROUPE_ESTASHFULL);
      DPASS();
    }
  }
  (void)d;
  return 0;
}

static int stashcap_init(troupe_ctx *ctx, void *st, const void *arg) {
  troupe_ref self = troupe_self(ctx);
  for (int v = 1; v <= 3; v++) troupe_tell(self, &T_INT, &v, self);
  return 0;
}

static const troupe_behavior stashcap_b = {
  .name = "stashcap", .state_size = sizeof(driver), .init = stashcap_init,
  .receive = stashcap_receive, .stash_capacity = 2};

static void test_stash_capacity(void) {
  TT_EQ_INT(run_driver(&stashcap_b, "stashcap"), 1);
}

/* --- ask from an actor ------------------------------------------------- */

static int silent_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  return 0;
}
static const troupe_behavior silent_b = {.name = "silent",
                                         .receive = silent_receive};

static int asker_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &T_INT) {
    DCHECK(m->ask_id == d->ask_id);
    DCHECK(int_of(m) == 42);
    /* now an ask that times out */
    troupe_ref s;
    DCHECK(troupe_spawn(ctx, &silent_b, NULL, &s) == 0);
    DCHECK(troupe_ask(ctx, s, &T_GET, NULL, 30, &d->ask_id) == 0);
    return 0;
  }
  if (m->type == &TROUPE_T_ASK_TIMEOUT) {
    const troupe_ask_timeout *t = m->data;
    DCHECK(t->ask_id == d->ask_id);
    DCHECK(m->ask_id == d->ask_id);
    DPASS();
  }
  return 0;
}

static int asker_init(troupe_ctx *ctx, void *st, const void *arg) {
  driver *d = st;
  int start = 42;
  troupe_spawn_opts so = {.arg = &start, .arg_size = sizeof start};
  if (troupe_spawn(ctx, &counter_b, &so, &d->a) < 0) return -1;
  return troupe_ask(ctx, d->a, &T_GET, NULL, 1000, &d->ask_id);
}

static const troupe_behavior asker_b = {
  .name = "asker", .state_size = sizeof(driver), .init = asker_init,
  .receive = asker_receive};

static void test_ask_from_actor(void) {
  TT_EQ_INT(run_driver(&asker_b, "ask"), 1);
}

/* --- dead letters, bounded mailboxes, system messages first ----------- */

static int dl_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &TROUPE_T_DEAD_LETTER) {
    const troupe_dead_letter *dl = m->data;
    DCHECK(dl->type == &T_INT);
    d->seen[d->nseen++] = *(const int *)dl->message;
    return 0;
  }
  if (m->type == &T_GET) {
    /* a was stopped with 1 and 2 queued behind the stop (system messages
     * go first), then 3 was told after it died */
    DCHECK(d->nseen == 3);
    DCHECK(d->seen[0] == 1 && d->seen[1] == 2 && d->seen[2] == 3);
    DPASS();
  }
  if (m->type == &T_PING) {
    int three = 3;
    troupe_tell(d->a, &T_INT, &three, TROUPE_REF_NONE);
    troupe_timer_once(ctx, 1, 20, &T_GET, NULL);
  }
  return 0;
}

static int dl_init(troupe_ctx *ctx, void *st, const void *arg) {
  driver *d = st;
  troupe_subscribe(ctx, &TROUPE_T_DEAD_LETTER);
  if (troupe_spawn(ctx, &counter_b, NULL, &d->a) < 0) return -1;
  int one = 1, two = 2;
  troupe_tell(d->a, &T_INT, &one, TROUPE_REF_NONE);
  troupe_tell(d->a, &T_INT, &two, TROUPE_REF_NONE);
  troupe_stop(ctx, d->a);
  troupe_timer_once(ctx, 2, 10, &T_PING, &one);
  return 0;
}

static const troupe_behavior dl_b = {
  .name = "dl", .state_size = sizeof(driver), .init = dl_init,
  .receive = dl_receive};

static void test_dead_letters(void) {
  TT_EQ_INT(run_driver(&dl_b, "deadletters"), 1);
}

static const troupe_behavior bounded_new_b = {
  .name = "bnew", .state_size = sizeof(counter), .receive = counter_receive,
  .mailbox = {.capacity = 2, .overflow = TROUPE_OVERFLOW_DROP_NEW}};
static const troupe_behavior bounded_head_b = {
  .name = "bhead", .state_size = sizeof(counter), .receive = counter_receive,
  .mailbox = {.capacity = 2, .overflow = TROUPE_OVERFLOW_DROP_HEAD}};
static const troupe_behavior bounded_fail_b = {
  .name = "bfail", .state_size = sizeof(counter), .receive = counter_receive,
  .mailbox = {.capacity = 2, .overflow = TROUPE_OVERFLOW_FAIL}};

static int bounded_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  driver *d = st;
  if (m->type == &T_PING) {
    uint64_t id;
    troupe_ask(ctx, d->a, &T_GET, NULL, 1000, &id);
    troupe_ask(ctx, d->b, &T_GET, NULL, 1000, &id);
    return 0;
  }
  if (m->type == &TROUPE_T_DEAD_LETTER) {
    const troupe_dead_letter *dl = m->data;
    DCHECK(dl->reason == TROUPE_EFULL);
    d->seen[d->nseen++] = *(const int *)dl->message;
    return 0;
  }
  if (m->type == &T_INT && m->ask_id) {
    d->seen[16 + d->step++] = int_of(m);
    if (d->step == 2) {
      /* drop-new kept 1+2 = 3 and dropped 4; drop-head dropped 1, kept
       * 2+4 = 6 */
      DCHECK(d->seen[16] + d->seen[17] == 9);
      DCHECK(d->nseen == 2);
      DCHECK((d->seen[0] == 4 && d->seen[1] == 1) ||
             (d->seen[0] == 1 && d->seen[1] == 4));
      DPASS();
    }
  }
  return 0;
}

static int bounded_init(troupe_ctx *ctx, void *st, const void *arg) {
  troupe_subscribe(ctx, &TROUPE_T_DEAD_LETTER);
  troupe_ref a, b, c;
  troupe_spawn(ctx, &bounded_new_b, NULL, &a);
  troupe_spawn(ctx, &bounded_head_b, NULL, &b);
  troupe_spawn(ctx, &bounded_fail_b, NULL, &c);
  int one = 1, two = 2, four = 4;
  troupe_tell(a, &T_INT, &one, TROUPE_REF_NONE);
  troupe_tell(a, &T_INT, &two, TROUPE_REF_NONE);
  if (troupe_tell(a, &T_INT, &four, TROUPE_REF_NONE) != 0) return -1;
  troupe_tell(b, &T_INT, &one, TROUPE_REF_NONE);
  troupe_tell(b, &T_INT, &two, TROUPE_REF_NONE);
  troupe_tell(b, &T_INT, &four, TROUPE_REF_NONE);
  troupe_tell(c, &T_INT, &one, TROUPE_REF_NONE);
  troupe_tell(c, &T_INT, &two, TROUPE_REF_NONE);
  if (troupe_tell(c, &T_INT, &four, TROUPE_REF_NONE) != TROUPE_EFULL)
    return -1;
  driver *d = st;
  d->a = a;
  d->b = b;
  /* ask once the mailboxes have drained (an ask now would overflow too) */
  int p = 0;
  troupe_timer_once(ctx, 5, 10, &T_PING, &p);
  return 0;
}

static const troupe_behavior bounded_b = {
  .name = "bounded", .state_size = sizeof(driver), .init = bounded_init,
  .receive = bounded_receive};

static void test_bounded_mailboxes(void) {
  TT_EQ_INT(run_driver(&bounded_b, "bounded"), 1);
}

/* --- fairness: a flooding actor does not starve another ---------------- */

static atomic_int flood_count, other_count;
static atomic_int other_seen_at;

static int flood_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  int n = atomic_fetch_add(&flood_count, 1) + 1;
  if (n < 100000) troupe_send(ctx, troupe_self(ctx), &T_INT, &n);
  else troupe_system_stop(troupe_ctx_system(ctx));
  return 0;
}
static int other_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  if (atomic_fetch_add(&other_count, 1) == 0)
    atomic_store(&other_seen_at, atomic_load(&flood_count));
  return 0;
}
static const troupe_behavior flood_b = {.name = "flood",
                                        .receive = flood_receive};
static const troupe_behavior other_b = {.name = "other",
                                        .receive = other_receive};

static void test_fairness(void) {
  troupe_system *sys = new_system("fair");
  troupe_ref f, o;
  TT_EQ_INT(troupe_system_spawn(sys, &flood_b, NULL, &f), 0);
  TT_EQ_INT(troupe_system_spawn(sys, &other_b, NULL, &o), 0);
  int x = 0;
  troupe_tell(f, &T_INT, &x, TROUPE_REF_NONE);
  troupe_tell(o, &T_INT, &x, TROUPE_REF_NONE);
  TT_EQ_INT(troupe_system_run(sys), 0);
  troupe_system_destroy(sys);
  TT_EQ_INT(atomic_load(&other_count), 1);
  TT_ASSERT(atomic_load(&other_seen_at) < 1000);
}

/* --- routers ------------------------------------------------------------ */

static atomic_int routee_hits[8];
static atomic_int routee_next;

typedef struct routee { int idx; } routee;

static int routee_init(troupe_ctx *ctx, void *st, const void *arg) {
  ((routee *)st)->idx = atomic_fetch_add(&routee_next, 1) % 8;
  return 0;
}
static int routee_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  routee *r = st;
  if (m->type == &T_INT) {
    atomic_fetch_add(&routee_hits[r->idx], 1);
    if (m->sender.uid) troupe_reply(ctx, &T_INT, &r->idx);
  }
  return 0;
}
static const troupe_behavior routee_b = {
  .name = "routee", .state_size = sizeof(routee), .init = routee_init,
  .receive = routee_receive};

static uint64_t key_of(const troupe_msg *m) {
  return (uint64_t)(*(const int *)m->data % 5);
}

static void run_router(troupe_routing how, int msgs, int expect_total) {
  for (int i = 0; i < 8; i++) atomic_store(&routee_hits[i], 0);
  atomic_store(&routee_next, 0);
  troupe_system *sys = new_system("router");
  TT_ASSERT(sys);
  troupe_router_opts ro = {.routing = how, .size = 4, .routee = &routee_b,
                           .hash_key = key_of};
  troupe_ref r;
  troupe_spawn_opts so = {.name = "pool"};
  TT_EQ_INT(troupe_router_spawn(sys, NULL, &ro, &so, &r), 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  for (int i = 0; i < msgs; i++) troupe_tell(r, &T_INT, &i, TROUPE_REF_NONE);
  int total = 0;
  TT_ASSERT(TT_WAIT_UNTIL(({
    total = 0;
    for (int i = 0; i < 4; i++) total += atomic_load(&routee_hits[i]);
    total >= expect_total;
  }), 5000));
  TT_EQ_INT(total, expect_total);
  if (how == TROUPE_ROUTE_ROUND_ROBIN)
    for (int i = 0; i < 4; i++) TT_EQ_INT(atomic_load(&routee_hits[i]), msgs / 4);
  if (how == TROUPE_ROUTE_CONSISTENT_HASH) {
    /* the same key always lands on the same routee: ask twice per key */
    for (int k = 0; k < 5; k++) {
      troupe_reply_msg a, b;
      TT_EQ_INT(troupe_ask_blocking(sys, r, &T_INT, &k, 2000, &a), 0);
      int k2 = k + 5;
      TT_EQ_INT(troupe_ask_blocking(sys, r, &T_INT, &k2, 2000, &b), 0);
      TT_EQ_INT(*(int *)a.data, *(int *)b.data);
      troupe_reply_free(&a);
      troupe_reply_free(&b);
    }
  }
  troupe_system_destroy(sys);
}

static void test_router_round_robin(void) {
  run_router(TROUPE_ROUTE_ROUND_ROBIN, 400, 400);
}
static void test_router_broadcast(void) {
  run_router(TROUPE_ROUTE_BROADCAST, 100, 400);
}
static void test_router_random(void) {
  run_router(TROUPE_ROUTE_RANDOM, 400, 400);
}
static void test_router_consistent_hash(void) {
  run_router(TROUPE_ROUTE_CONSISTENT_HASH, 100, 100);
}

/* --- cross-thread tells --------------------------------------------------- */

typedef struct xt_state {
  uint32_t next[4];
  int errors;
  int total;
} xt_state;

static atomic_int xt_total, xt_errors;
#define XT_PER_THREAD 50000

static int xt_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  xt_state *s = st;
  if (m->type == &T_INT) {
    int v = int_of(m);
    int t = v >> 24, seq = v & 0xffffff;
    if (t < 0 || t >= 4 || (uint32_t)seq != s->next[t]) s->errors++;
    else s->next[t]++;
    s->total++;
    atomic_store(&xt_total, s->total);
    atomic_store(&xt_errors, s->errors);
  }
  return 0;
}
static const troupe_behavior xt_b = {.name = "xt",
                                     .state_size = sizeof(xt_state),
                                     .receive = xt_receive};

typedef struct xt_arg {
  troupe_ref to;
  int id;
} xt_arg;

static void *xt_thread(void *p) {
  xt_arg *a = p;
  for (int i = 0; i < XT_PER_THREAD; i++) {
    int v = (a->id << 24) | i;
    troupe_tell(a->to, &T_INT, &v, TROUPE_REF_NONE);
  }
  return NULL;
}

static void test_cross_thread_tells(void) {
  troupe_system *sys = new_system("xthread");
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(sys, &xt_b, NULL, &r), 0);
  atomic_store(&xt_total, 0);
  atomic_store(&xt_errors, 0);
  TT_EQ_INT(troupe_system_start(sys), 0);
  pthread_t th[4];
  xt_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i].to = r;
    args[i].id = i;
    pthread_create(&th[i], NULL, xt_thread, &args[i]);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&xt_total) == 4 * XT_PER_THREAD, 20000));
  TT_EQ_INT(atomic_load(&xt_errors), 0);  /* in order per sender, no dups */
  troupe_system_destroy(sys);
  TT_EQ_INT(atomic_load(&xt_total), 4 * XT_PER_THREAD);
}

/* --- stop order: children before parents --------------------------------- */

static char stop_order[64];
static atomic_int stop_pos;

typedef struct node_st { char tag; } node_st;

static int tree_init(troupe_ctx *ctx, void *st, const void *arg) {
  node_st *n = st;
  n->tag = *(const char *)arg;
  if (n->tag == 'A' || n->tag == 'B') {
    static const char cs[2][2] = {{'b', 'c'}, {'d', 'e'}};
    const char *kids = cs[n->tag == 'B'];
    for (int i = 0; i < 2; i++) {
      troupe_ref r;
      troupe_spawn_opts so = {.arg = &kids[i], .arg_size = 1};
      extern const troupe_behavior tree_b;
      troupe_spawn(ctx, &tree_b, &so, &r);
    }
  }
  if (n->tag == 'A') {
    troupe_ref r;
    char b = 'B';
    troupe_spawn_opts so = {.name = "B", .arg = &b, .arg_size = 1};
    extern const troupe_behavior tree_b;
    troupe_spawn(ctx, &tree_b, &so, &r);
  }
  return 0;
}
static void tree_stop(troupe_ctx *ctx, void *st) {
  node_st *n = st;
  int p = atomic_fetch_add(&stop_pos, 1);
  if (p < 63) stop_order[p] = n->tag;
}
const troupe_behavior tree_b = {.name = "tree", .state_size = sizeof(node_st),
                                .init = tree_init, .receive = silent_receive,
                                .post_stop = tree_stop};

static void test_stop_order_and_select(void) {
  memset(stop_order, 0, sizeof stop_order);
  atomic_store(&stop_pos, 0);
  troupe_system *sys = new_system("tree");
  troupe_ref a;
  char ta = 'A';
  troupe_spawn_opts so = {.name = "A", .arg = &ta, .arg_size = 1};
  TT_EQ_INT(troupe_system_spawn(sys, &tree_b, &so, &a), 0);
  troupe_ref b;
  TT_EQ_INT(troupe_select(sys, "/user/A/B", &b), 0);
  char path[128];
  TT_ASSERT(troupe_ref_path(sys, b, path, sizeof path) > 0);
  TT_EQ_STR(path, "troupe://tree/user/A/B");
  troupe_ref b2;
  TT_EQ_INT(troupe_select(sys, "troupe://tree/user/A/B", &b2), 0);
  TT_ASSERT(troupe_ref_eq(b, b2));
  TT_EQ_INT(troupe_select(sys, "/user/A/nope", &b2), TROUPE_ENOENT);
  TT_EQ_INT(troupe_select(sys, "user/A", &b2), TROUPE_EINVAL);
  TT_EQ_INT(troupe_ref_path(sys, b, path, 8), TROUPE_ERANGE);
  TT_EQ_INT(troupe_system_stop(sys), 0);
  TT_EQ_INT(troupe_system_run(sys), 0);
  troupe_system_destroy(sys);
  /* 6 actors (A, b, c, B, d, e); every parent after its children */
  TT_EQ_INT(atomic_load(&stop_pos), 6);
  const char *s = stop_order;
  TT_ASSERT(strchr(s, 'B') > strchr(s, 'd') && strchr(s, 'B') > strchr(s, 'e'));
  TT_ASSERT(strchr(s, 'A') == s + 5);
}

/* --- big (heap) messages ---------------------------------------------- */

static atomic_int big_ok;
static int big_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  if (m->type == &T_BIG) {
    const unsigned char *b = m->data;
    int ok = 1;
    for (int i = 0; i < 200; i++) ok &= b[i] == (unsigned char)i;
    atomic_fetch_add(&big_ok, ok);
  }
  return 0;
}
static const troupe_behavior big_b = {.name = "big", .receive = big_receive};

static void test_big_messages(void) {
  troupe_system *sys = new_system("big");
  troupe_ref r;
  TT_EQ_INT(troupe_system_spawn(sys, &big_b, NULL, &r), 0);
  unsigned char buf[200];
  for (int i = 0; i < 200; i++) buf[i] = (unsigned char)i;
  atomic_store(&big_ok, 0);
  for (int i = 0; i < 10; i++) troupe_tell(r, &T_BIG, buf, TROUPE_REF_NONE);
  TT_EQ_INT(troupe_system_start(sys), 0);
  for (int i = 0; i < 10; i++) troupe_tell(r, &T_BIG, buf, TROUPE_REF_NONE);
  TT_ASSERT(TT_WAIT_UNTIL(atomic_load(&big_ok) == 20, 5000));
  TT_EQ_INT(troupe_tell(r, &T_BIG, NULL, TROUPE_REF_NONE), TROUPE_EINVAL);
  troupe_system_destroy(sys);
}

/* --- logging ---------------------------------------------------------- */

static char sink_last[512];
static atomic_int sink_count, sink_dead_letters;

static void sink(void *data, troupe_log_level lvl, const char *system,
                 const char *source, const char *message) {
  atomic_fetch_add(&sink_count, 1);
  if (strstr(message, "not delivered")) atomic_fetch_add(&sink_dead_letters, 1);
  if (lvl == TROUPE_LOG_WARN)
    snprintf(sink_last, sizeof sink_last, "%s|%s|%s", system, source, message);
  (void)data;
}

static int logger_init(troupe_ctx *ctx, void *st, const void *arg) {
  troupe_log(ctx, TROUPE_LOG_WARN, "hello %d", 42);
  troupe_log(ctx, TROUPE_LOG_TRACE, "below the level: not logged");
  return 0;
}
static const troupe_behavior logger_b = {.name = "logger",
                                         .init = logger_init,
                                         .receive = silent_receive};

static void test_log_sink(void) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = "logs", .log = sink,
                          .log_level = TROUPE_LOG_INFO,
                          .dead_letter_log_limit = 2};
  atomic_store(&sink_count, 0);
  atomic_store(&sink_dead_letters, 0);
  TT_EQ_INT(troupe_system_create(&sys, &o), 0);
  troupe_ref r;
  troupe_spawn_opts so = {.name = "l"};
  TT_EQ_INT(troupe_system_spawn(sys, &logger_b, &so, &r), 0);
  TT_EQ_STR(sink_last, "logs|troupe://logs/user/l|hello 42");
  TT_EQ_INT(atomic_load(&sink_count), 1);
  TT_EQ_INT(troupe_system_start(sys), 0);
  /* five dead letters, two logged */
  troupe_ref dead = r;
  dead.uid ^= 0xffff;  /* a generation that never lived */
  int x = 1;
  for (int i = 0; i < 5; i++) troupe_tell(dead, &T_INT, &x, TROUPE_REF_NONE);
  TT_ASSERT(TT_WAIT_UNTIL(troupe_system_dead_letters(sys) == 5, 5000));
  TT_EQ_INT(atomic_load(&sink_dead_letters), 2);
  troupe_system_log(sys, TROUPE_LOG_DEBUG, "filtered");
  troupe_system_destroy(sys);
  TT_EQ_STR(troupe_log_level_name(TROUPE_LOG_ERROR), "ERROR");
}

/* --- refs through the codec ------------------------------------------- */

typedef struct refmsg {
  troupe_ref who;
  int32_t n;
} refmsg;
static const troupe_field refmsg_fields[] = {
  TROUPE_FIELD(refmsg, who, REF),
  TROUPE_FIELD(refmsg, n, I32),
};
static troupe_type T_REFMSG = TROUPE_TYPE("test.RefMsg", 1, refmsg,
                                          refmsg_fields);

static int refcodec_init(troupe_ctx *ctx, void *st, const void *arg) {
  troupe_buf b;
  troupe_buf_init(&b);
  troupe_ref dead;
  troupe_spawn(ctx, &silent_b, NULL, &dead);
  refmsg in[3] = {{troupe_self(ctx), 7}, {TROUPE_REF_NONE, 8}, {dead, 9}};
  troupe_stop(ctx, dead);
  for (int i = 0; i < 3; i++) {
    troupe_buf_clear(&b);
    DCHECK(troupe_encode(&T_REFMSG, &in[i], &b, NULL) == 0);
    refmsg out;
    DCHECK(troupe_decode(&T_REFMSG, b.data, b.len, &out, NULL) == 0);
    DCHECK(troupe_ref_eq(out.who, in[i].who));
    DCHECK(out.n == in[i].n);
  }
  troupe_buf_free(&b);
  /* a decoded ref works for tell */
  refmsg m = {troupe_self(ctx), 1};
  troupe_tell(m.who, &T_REFMSG, &m, TROUPE_REF_NONE);
  return 0;
}

static int refcodec_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  if (m->type == &T_REFMSG) DPASS();
  return 0;
}

static const troupe_behavior refcodec_b = {
  .name = "refcodec", .state_size = sizeof(driver), .init = refcodec_init,
  .receive = refcodec_receive};

static void test_refs_through_codec(void) {
  TT_EQ_INT(run_driver(&refcodec_b, "refcodec"), 1);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  TT_RUN(test_create_invalid);
  TT_RUN(test_destroy_unstarted);
  TT_RUN(test_tell_and_blocking_ask);
  TT_RUN(test_ask_blocking_timeout);
  TT_RUN(test_supervision_directives);
  TT_RUN(test_escalation_stops_system);
  TT_RUN(test_restart_budget);
  TT_RUN(test_restart_backoff);
  TT_RUN(test_all_for_one_and_paths);
  TT_RUN(test_death_watch);
  TT_RUN(test_timers);
  TT_RUN(test_timer_cancel_filters_queued);
  TT_RUN(test_stash_become);
  TT_RUN(test_stash_capacity);
  TT_RUN(test_ask_from_actor);
  TT_RUN(test_dead_letters);
  TT_RUN(test_bounded_mailboxes);
  TT_RUN(test_fairness);
  TT_RUN(test_router_round_robin);
  TT_RUN(test_router_broadcast);
  TT_RUN(test_router_random);
  TT_RUN(test_router_consistent_hash);
  TT_RUN(test_cross_thread_tells);
  TT_RUN(test_stop_order_and_select);
  TT_RUN(test_big_messages);
  TT_RUN(test_log_sink);
  TT_RUN(test_refs_through_codec);
  (void)g_probe;
  (void)probe_init;
  return tt_done();
}
