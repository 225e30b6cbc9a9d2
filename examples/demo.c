/*
 * demo.c: a first look at troupe's actor runtime.
 *
 *  1. A counter actor adds the numbers it is told and answers a query.
 *  2. A worker under a supervisor fails on a bad job; the supervisor
 *     restarts it (with backoff) and the next jobs go on.
 *  3. An ask from the main thread, and an ask from one actor to another.
 *
 * Build against an installed troupe with:
 *   cc demo.c $(pkg-config --cflags --libs troupe)
 */
#include <stdio.h>
#include <string.h>
#include <troupe/troupe.h>

/* Message types. These carry plain C structs; a field table (see
 * docs/types.md) would also let them cross processes and into journals. */
typedef struct add { int amount; } add;
typedef struct job { int id; bool bad; } job;
typedef struct total { int value; } total;

static troupe_type T_ADD = {.manifest = "demo.Add", .version = 1,
                            .size = sizeof(add)};
static troupe_type T_GET = {.manifest = "demo.Get", .version = 1, .size = 0};
static troupe_type T_TOTAL = {.manifest = "demo.Total", .version = 1,
                              .size = sizeof(total)};
static troupe_type T_JOB = {.manifest = "demo.Job", .version = 1,
                            .size = sizeof(job)};

/* ---- 1. the counter ---------------------------------------------------- */

typedef struct counter_state { int total; } counter_state;

static int counter_receive(troupe_ctx *ctx, void *state, const troupe_msg *m) {
  counter_state *s = state;
  if (m->type == &T_ADD) {
    s->total += ((const add *)m->data)->amount;
    return 0;
  }
  if (m->type == &T_GET) {
    total t = {s->total};
    return troupe_reply(ctx, &T_TOTAL, &t);
  }
  return TROUPE_UNHANDLED;
}

static const troupe_behavior counter = {
  .name = "counter",
  .state_size = sizeof(counter_state),
  .receive = counter_receive,
};

/* ---- 2. a worker that fails, and its supervisor ------------------------ */

#define E_BAD_JOB (-1000)   /* an application failure code */

typedef struct worker_state { int done; } worker_state;

static int worker_init(troupe_ctx *ctx, void *state, const void *arg) {
  troupe_log(ctx, TROUPE_LOG_INFO, "worker started");
  return 0;
}

static int worker_receive(troupe_ctx *ctx, void *state, const troupe_msg *m) {
  worker_state *s = state;
  if (m->type == &T_GET) {
    total t = {s->done};
    return troupe_reply(ctx, &T_TOTAL, &t);
  }
  if (m->type != &T_JOB) return TROUPE_UNHANDLED;
  const job *j = m->data;
  if (j->bad) {
    printf("worker: job %d is bad, failing\n", j->id);
    return E_BAD_JOB;                  /* the supervisor decides */
  }
  s->done++;
  printf("worker: job %d done (%d since last start)\n", j->id, s->done);
  return 0;
}

static void worker_post_restart(troupe_ctx *ctx, void *state, int error) {
  printf("worker: restarted after \"%s\"\n",
         error == E_BAD_JOB ? "bad job" : troupe_strerror(error));
}

static const troupe_behavior worker = {
  .name = "worker",
  .state_size = sizeof(worker_state),
  .init = worker_init,
  .receive = worker_receive,
  .post_restart = worker_post_restart,
};

/* Restart the worker on failure, at most 3 times a minute, after a 50 ms
 * backoff that doubles on each consecutive failure. */
static const troupe_supervisor restart_with_backoff = {
  .default_directive = TROUPE_RESTART,
  .max_restarts = 3,
  .window_ms = 60000,
  .backoff_min_ms = 50,
  .backoff_max_ms = 1000,
  .backoff_jitter = 0.1,
};

typedef struct boss_state { troupe_ref worker; } boss_state;

static int boss_init(troupe_ctx *ctx, void *state, const void *arg) {
  boss_state *s = state;
  troupe_spawn_opts o = {.name = "worker"};
  return troupe_spawn(ctx, &worker, &o, &s->worker);
}

static int boss_receive(troupe_ctx *ctx, void *state, const troupe_msg *m) {
  boss_state *s = state;
  if (m->type == &T_JOB || m->type == &T_GET)
    return troupe_forward(ctx, s->worker);   /* keeps the original sender */
  return TROUPE_UNHANDLED;
}

static const troupe_behavior boss = {
  .name = "boss",
  .state_size = sizeof(boss_state),
  .init = boss_init,
  .receive = boss_receive,
  .supervisor = &restart_with_backoff,
};

/* ---- 3. an actor that asks another ---------------------------------------- */

typedef struct auditor_state { troupe_ref counter; uint64_t ask; } auditor_state;

static int auditor_init(troupe_ctx *ctx, void *state, const void *arg) {
  auditor_state *s = state;
  s->counter = *(const troupe_ref *)arg;
  return troupe_ask(ctx, s->counter, &T_GET, NULL, 1000, &s->ask);
}

static int auditor_receive(troupe_ctx *ctx, void *state, const troupe_msg *m) {
  auditor_state *s = state;
  if (m->type == &T_TOTAL && m->ask_id == s->ask) {
    printf("auditor: the counter says %d\n", ((const total *)m->data)->value);
    return troupe_stop(ctx, troupe_self(ctx));
  }
  if (m->type == &TROUPE_T_ASK_TIMEOUT) {
    printf("auditor: no answer in time\n");
    return troupe_stop(ctx, troupe_self(ctx));
  }
  return TROUPE_UNHANDLED;
}

static const troupe_behavior auditor = {
  .name = "auditor",
  .state_size = sizeof(auditor_state),
  .init = auditor_init,
  .receive = auditor_receive,
};

int main(void) {
  troupe_system *sys;
  troupe_system_opts opts = {.name = "demo", .log_level = TROUPE_LOG_WARN};
  int rc = troupe_system_create(&sys, &opts);
  if (rc < 0) {
    fprintf(stderr, "troupe_system_create: %s (%s)\n", troupe_strerror(rc),
            troupe_errmsg());
    return 1;
  }
  printf("troupe %s: actor runtime demo\n", troupe_version_string());
  if ((rc = troupe_system_start(sys)) < 0) goto fail;

  /* 1. counter */
  troupe_ref c;
  troupe_spawn_opts co = {.name = "counter"};
  if ((rc = troupe_system_spawn(sys, &counter, &co, &c)) < 0) goto fail;
  for (int i = 1; i <= 10; i++) {
    add a = {i};
    troupe_tell(c, &T_ADD, &a, TROUPE_REF_NONE);
  }
  troupe_reply_msg reply;
  if ((rc = troupe_ask_blocking(sys, c, &T_GET, NULL, 1000, &reply)) < 0)
    goto fail;
  printf("main: counter total after 1..10 is %d\n",
         ((total *)reply.data)->value);
  troupe_reply_free(&reply);

  /* 2. supervision */
  troupe_ref b;
  troupe_spawn_opts bo = {.name = "boss"};
  if ((rc = troupe_system_spawn(sys, &boss, &bo, &b)) < 0) goto fail;
  for (int i = 1; i <= 5; i++) {
    job j = {i, i == 3};
    troupe_tell(b, &T_JOB, &j, TROUPE_REF_NONE);
  }

  /* 3. an actor asking an actor */
  troupe_spawn_opts ao = {.name = "auditor", .arg = &c, .arg_size = sizeof c};
  troupe_ref au;
  if ((rc = troupe_system_spawn(sys, &auditor, &ao, &au)) < 0) goto fail;

  /* The query queues behind the jobs, so its answer arrives once the
   * worker got through them, restart and backoff included. */
  if ((rc = troupe_ask_blocking(sys, b, &T_GET, NULL, 5000, &reply)) < 0)
    goto fail;
  printf("main: the worker finished %d jobs since its restart\n",
         ((total *)reply.data)->value);
  troupe_reply_free(&reply);

  troupe_system_stop(sys);
  rc = troupe_system_wait(sys, 10000);
  troupe_system_destroy(sys);
  printf("demo: system stopped cleanly (%s)\n", rc == 0 ? "ok" :
         troupe_strerror(rc));
  return rc == 0 ? 0 : 1;
fail:
  fprintf(stderr, "demo failed: %s (%s)\n", troupe_strerror(rc),
          troupe_errmsg());
  troupe_system_destroy(sys);
  return 1;
}
