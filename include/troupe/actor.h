/*
 * troupe/actor.h: actor systems, actors, supervision, death watch, timers,
 * ask, stash, routers, the event stream and dead letters.
 *
 * Threads. An actor system is one libuv loop on one thread; every actor of
 * a system runs on that thread, one message at a time. Functions taking a
 * troupe_ctx may be called only from inside that actor's callbacks. Other
 * functions say which thread may call them. The thread-safe entry points
 * are: troupe_tell(), troupe_ask_blocking(), troupe_system_spawn(),
 * troupe_system_stop(), troupe_system_wait() and the troupe_system_*
 * queries marked "any thread".
 *
 * Messages. A message is a C struct described by a troupe_type (see
 * troupe/types.h). A tell copies the value (deep copy for types with owned
 * buffers; memcpy for flat types; no heap allocation for values up to
 * TROUPE_INLINE_MSG bytes); the caller keeps ownership of what it passed.
 * A receive callback sees the message as const; it is freed after the
 * callback returns.
 */
#ifndef TROUPE_ACTOR_H
#define TROUPE_ACTOR_H

#include "troupe/common.h"
#include "troupe/error.h"
#include "troupe/log.h"
#include "troupe/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Values up to this size travel inside the envelope (no allocation). */
#define TROUPE_INLINE_MSG 64

typedef struct troupe_system troupe_system;
/* The context of the actor whose callback is running. Valid only during
 * that callback; never store it. */
typedef struct troupe_ctx troupe_ctx;

/* A received message. Everything it points to is valid during the receive
 * callback only. */
typedef struct troupe_msg {
  const troupe_type *type;  /* compare by pointer: msg->type == &my_type */
  const void *data;         /* the value, of type->size bytes */
  troupe_ref sender;        /* TROUPE_REF_NONE when told without sender */
  uint64_t ask_id;          /* for a reply to troupe_ask(): its id; else 0 */
} troupe_msg;

/* ------------------------------------------------------------------ */
/* Supervision                                                         */

typedef enum troupe_directive {
  TROUPE_RESUME = 1,    /* keep the state, drop the failed message, go on */
  TROUPE_RESTART = 2,   /* pre_restart, fresh state (init), post_restart */
  TROUPE_STOP = 3,      /* stop the child */
  TROUPE_ESCALATE = 4   /* fail the supervisor itself with the same error */
} troupe_directive;

/*
 * How a parent treats its children's failures. `decide` chooses a
 * directive per failure (NULL: always `default_directive`, which is
 * TROUPE_RESTART when 0). `all_for_one` applies the directive to every
 * sibling. At most `max_restarts` restarts within `window_ms` (0 and 0:
 * unlimited); one more failure in the window stops the child. Restarts are
 * delayed by min(backoff_max_ms, backoff_min_ms * 2^n) * (1 + jitter*rand),
 * where n counts consecutive restarts within the window (backoff_min_ms 0:
 * restart at once).
 */
typedef struct troupe_supervisor {
  troupe_directive (*decide)(void *data, troupe_ref child, int error);
  void *data;
  troupe_directive default_directive;
  bool all_for_one;
  uint32_t max_restarts;
  uint64_t window_ms;
  uint64_t backoff_min_ms;
  uint64_t backoff_max_ms;
  double backoff_jitter;    /* 0..1 */
} troupe_supervisor;

/* ------------------------------------------------------------------ */
/* Mailboxes                                                           */

typedef enum troupe_overflow {
  TROUPE_OVERFLOW_DROP_NEW = 0,  /* the new message goes to dead letters */
  TROUPE_OVERFLOW_DROP_HEAD = 1, /* the oldest message goes to dead letters */
  TROUPE_OVERFLOW_FAIL = 2       /* troupe_tell returns TROUPE_EFULL; for
                                    tells from other threads: as DROP_NEW */
} troupe_overflow;

typedef struct troupe_mailbox_opts {
  uint32_t capacity;         /* 0: unbounded */
  troupe_overflow overflow;
  uint32_t throughput;       /* messages per turn; 0: the system default */
} troupe_mailbox_opts;

/* ------------------------------------------------------------------ */
/* Behaviours                                                          */

/* Receive returns 0 when it handled the message, TROUPE_UNHANDLED when it
 * did not (published on the event stream as an unhandled message), or a
 * negative code for a failure, which goes to the parent's supervisor. */
#define TROUPE_UNHANDLED 1

typedef int (*troupe_receive_fn)(troupe_ctx *ctx, void *state,
                                 const troupe_msg *msg);

/*
 * A behaviour: the callbacks and sizes of a kind of actor. Keep it static;
 * the runtime keeps a pointer to it while the actor lives.
 *  - state_size bytes of zeroed state are allocated per actor.
 *  - init(ctx, state, arg) runs at start and after each restart; a negative
 *    return fails the start (spawn still succeeds; the failure goes to the
 *    supervisor like any other).
 *  - post_stop runs once when the actor stops, after its children stopped.
 *  - pre_restart runs on the old state before a restart (default: nothing;
 *    children are stopped by the runtime), post_restart on the new one
 *    after init.
 *  - supervisor: the strategy for this actor's children (NULL: restart,
 *    unlimited, no backoff).
 */
typedef struct troupe_behavior {
  const char *name;
  size_t state_size;
  int (*init)(troupe_ctx *ctx, void *state, const void *arg);
  troupe_receive_fn receive;
  void (*post_stop)(troupe_ctx *ctx, void *state);
  void (*pre_restart)(troupe_ctx *ctx, void *state, int error);
  void (*post_restart)(troupe_ctx *ctx, void *state, int error);
  const troupe_supervisor *supervisor;
  troupe_mailbox_opts mailbox;
  uint32_t stash_capacity;    /* 0: TROUPE_DEFAULT_STASH */
} troupe_behavior;

#define TROUPE_DEFAULT_STASH 1024

/* Options for a spawn. All fields optional (zero). */
typedef struct troupe_spawn_opts {
  const char *name;     /* unique among siblings; NULL: generated "$<n>" */
  const void *arg;      /* passed to init */
  size_t arg_size;      /* >0: arg is copied and kept for restarts;
                           0: arg is passed as is, the caller keeps it
                           valid for the actor's life */
} troupe_spawn_opts;

/* ------------------------------------------------------------------ */
/* Systems                                                             */

/* What the root guardian does when a failure escalates to it. */
typedef enum troupe_root_policy {
  TROUPE_ROOT_STOP_SYSTEM = 0,  /* log the reason, stop the system cleanly */
  TROUPE_ROOT_STOP_ACTOR = 1,   /* stop the failing top-level actor only */
  TROUPE_ROOT_RESTART_ACTOR = 2 /* restart the failing top-level actor */
} troupe_root_policy;

typedef struct troupe_system_opts {
  const char *name;                 /* [A-Za-z0-9_-]+, default "troupe" */
  troupe_log_fn log;                /* default troupe_log_stderr */
  void *log_data;
  troupe_log_level log_level;       /* default TROUPE_LOG_INFO */
  troupe_root_policy root_policy;
  const troupe_supervisor *user_supervisor; /* for top-level actors */
  uint32_t throughput;              /* default messages per turn: 64 */
  uint32_t dead_letter_log_limit;   /* logged dead letters; default 10 */
  bool log_level_set;               /* set when log_level is meant (0=TRACE) */
} troupe_system_opts;

/*
 * Create a system. Nothing runs until troupe_system_run() or
 * troupe_system_start(). Any thread. Errors: TROUPE_EINVAL (bad name),
 * TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_system_create(troupe_system **out,
                                       const troupe_system_opts *opts);

/* Run the system's loop on the calling thread until the system has
 * terminated (all actors stopped, handles closed). Returns 0, or the code
 * that stopped it when a failure reached the root guardian. Errors:
 * TROUPE_ESTATE when already running. */
TROUPE_EXTERN int troupe_system_run(troupe_system *sys);

/* Run the system on a thread of its own. Returns once the thread runs.
 * Errors: TROUPE_ESTATE when already running. Any thread. */
TROUPE_EXTERN int troupe_system_start(troupe_system *sys);

/* Ask the system to stop: top-level actors are stopped (children before
 * parents, post_stop hooks run), then the system guardian, then the loop
 * ends. Idempotent. Any thread. */
TROUPE_EXTERN int troupe_system_stop(troupe_system *sys);

/* Wait for a system started with troupe_system_start() to terminate,
 * at most timeout_ms (0: forever). Returns the same as troupe_system_run,
 * or TROUPE_ETIMEDOUT. Not from the system's own thread. */
TROUPE_EXTERN int troupe_system_wait(troupe_system *sys, uint64_t timeout_ms);

/* Free a system that is not running (never started, or terminated).
 * A running system is stopped and waited for first (not from its own
 * thread). NULL is fine. */
TROUPE_EXTERN void troupe_system_destroy(troupe_system *sys);

/* The system's name. Any thread. */
TROUPE_EXTERN const char *troupe_system_name(const troupe_system *sys);
/* The ref of the /user guardian (the parent of top-level actors). */
TROUPE_EXTERN troupe_ref troupe_system_user(const troupe_system *sys);
/* Dead letters counted since start. Any thread. */
TROUPE_EXTERN uint64_t troupe_system_dead_letters(const troupe_system *sys);

/* Log through the system's sink. Any thread (the sink is then called on
 * that thread). */
TROUPE_EXTERN void troupe_system_log(troupe_system *sys, troupe_log_level lvl,
                                     const char *fmt, ...) TROUPE_PRINTF(3, 4);

/*
 * Spawn a top-level actor under /user. From the system's thread, or
 * before the system runs, it is immediate; from another thread it is done
 * on the system's thread and this call waits for it. Errors: TROUPE_EINVAL
 * (bad behaviour or name), TROUPE_EEXIST (name taken), TROUPE_ECLOSED
 * (system stopping), TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_system_spawn(troupe_system *sys,
                                      const troupe_behavior *behavior,
                                      const troupe_spawn_opts *opts,
                                      troupe_ref *out);

/* ------------------------------------------------------------------ */
/* Messaging                                                           */

/*
 * Send a message. Any thread. The value is copied (see top of file).
 * Returns 0 when the message was enqueued or routed to dead letters (a
 * stopped or unknown recipient is not an error: it is a dead letter).
 * Errors: TROUPE_EINVAL (no type, NULL value for a non-empty type),
 * TROUPE_ETYPE (malformed descriptor), TROUPE_EFULL (bounded mailbox with
 * the FAIL policy), TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_tell(troupe_ref to, const troupe_type *type,
                              const void *value, troupe_ref sender);

/* troupe_tell with self as the sender. */
TROUPE_EXTERN int troupe_send(troupe_ctx *ctx, troupe_ref to,
                              const troupe_type *type, const void *value);

/* Reply to the sender of the message being handled (keeping its ask id, so
 * an asker's reply is correlated). With no sender: a dead letter. */
TROUPE_EXTERN int troupe_reply(troupe_ctx *ctx, const troupe_type *type,
                               const void *value);

/* Forward the current message to `to`, keeping its original sender. */
TROUPE_EXTERN int troupe_forward(troupe_ctx *ctx, troupe_ref to);

/* ------------------------------------------------------------------ */
/* Inside an actor                                                     */

TROUPE_EXTERN troupe_ref troupe_self(const troupe_ctx *ctx);
TROUPE_EXTERN troupe_ref troupe_parent(const troupe_ctx *ctx);
/* The sender of the message being handled (TROUPE_REF_NONE if none). */
TROUPE_EXTERN troupe_ref troupe_sender(const troupe_ctx *ctx);
TROUPE_EXTERN troupe_system *troupe_ctx_system(const troupe_ctx *ctx);
/* The actor's name (the last path element). */
TROUPE_EXTERN const char *troupe_ctx_name(const troupe_ctx *ctx);

/* Spawn a child. Errors as troupe_system_spawn. */
TROUPE_EXTERN int troupe_spawn(troupe_ctx *ctx, const troupe_behavior *b,
                               const troupe_spawn_opts *opts, troupe_ref *out);

/* The live child with this name. TROUPE_ENOENT when there is none. */
TROUPE_EXTERN int troupe_child(troupe_ctx *ctx, const char *name,
                               troupe_ref *out);

/* Call fn for every live child; stops early when fn returns non-zero. */
TROUPE_EXTERN void troupe_children(troupe_ctx *ctx,
                                   int (*fn)(void *data, troupe_ref child),
                                   void *data);

/*
 * Stop an actor: it finishes the message it is handling, its children are
 * stopped, post_stop runs, watchers get Terminated, and messages still in
 * its mailbox go to dead letters. From the system's thread; to stop an
 * actor from elsewhere, tell it TROUPE_T_POISON_PILL (stops after the
 * messages before it). Stopping a stopped actor is a no-op (0).
 */
TROUPE_EXTERN int troupe_stop(troupe_ctx *ctx, troupe_ref target);

/* Log with the actor's path as source. */
TROUPE_EXTERN void troupe_log(troupe_ctx *ctx, troupe_log_level lvl,
                              const char *fmt, ...) TROUPE_PRINTF(3, 4);

/* Replace the receive function until the next become or a restart
 * (restart returns to the behaviour's own receive). */
TROUPE_EXTERN void troupe_become(troupe_ctx *ctx, troupe_receive_fn receive);

/* Stash the message being handled (it keeps its sender and ask id).
 * Errors: TROUPE_ESTASHFULL when the stash is at its capacity. */
TROUPE_EXTERN int troupe_stash(troupe_ctx *ctx);
/* Put every stashed message back at the head of the mailbox, in the order
 * they were stashed. Returns how many. */
TROUPE_EXTERN size_t troupe_unstash_all(troupe_ctx *ctx);
/* Put back at most max of the oldest stashed messages at the head of the
 * mailbox, in order (the rest stay stashed). Returns how many. */
TROUPE_EXTERN size_t troupe_unstash(troupe_ctx *ctx, size_t max);
/* Number of stashed messages. */
TROUPE_EXTERN size_t troupe_stash_size(const troupe_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Death watch                                                         */

/* Delivered to a watcher when the watched actor has stopped. Exactly once
 * per watch; also when the actor was already dead at watch time. */
typedef struct troupe_terminated {
  troupe_ref actor;
  bool existence_confirmed;  /* false: it was unknown or dead at watch */
  bool node_lost;            /* its node was lost, not a confirmed stop */
} troupe_terminated;

TROUPE_EXTERN extern troupe_type TROUPE_T_TERMINATED;

/* Watch target; watching twice is one watch. Errors: TROUPE_EINVAL. */
TROUPE_EXTERN int troupe_watch(troupe_ctx *ctx, troupe_ref target);
/* Stop watching; a Terminated not yet handled is dropped. */
TROUPE_EXTERN int troupe_unwatch(troupe_ctx *ctx, troupe_ref target);

/* ------------------------------------------------------------------ */
/* Timers                                                              */

/*
 * Keyed timers: at most one per key per actor; starting a key again
 * replaces the timer and a message from the replaced timer is never
 * received. Timers are cancelled when the actor stops or restarts.
 * The value is copied now and delivered (with no sender) when the timer
 * fires. Errors: TROUPE_EINVAL, TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_timer_once(troupe_ctx *ctx, uint64_t key,
                                    uint64_t delay_ms, const troupe_type *type,
                                    const void *value);
TROUPE_EXTERN int troupe_timer_periodic(troupe_ctx *ctx, uint64_t key,
                                        uint64_t interval_ms,
                                        const troupe_type *type,
                                        const void *value);
/* Cancel; 0 if it was active, TROUPE_ENOENT if not. */
TROUPE_EXTERN int troupe_timer_cancel(troupe_ctx *ctx, uint64_t key);
TROUPE_EXTERN bool troupe_timer_active(troupe_ctx *ctx, uint64_t key);

/* ------------------------------------------------------------------ */
/* Ask                                                                 */

/* Delivered to an asker instead of a reply when the ask timed out. */
typedef struct troupe_ask_timeout {
  uint64_t ask_id;
  troupe_ref target;
} troupe_ask_timeout;
TROUPE_EXTERN extern troupe_type TROUPE_T_ASK_TIMEOUT;

/*
 * Ask from an actor: send value to target with a temporary sender; the
 * first reply arrives to this actor as an ordinary message with
 * msg->ask_id == *ask_id, or, after timeout_ms, a TROUPE_T_ASK_TIMEOUT
 * message with the same id. Later replies go to dead letters.
 */
TROUPE_EXTERN int troupe_ask(troupe_ctx *ctx, troupe_ref target,
                             const troupe_type *type, const void *value,
                             uint64_t timeout_ms, uint64_t *ask_id);

/* A reply received by a blocking ask. Free with troupe_reply_free. */
typedef struct troupe_reply_msg {
  const troupe_type *type;
  void *data;
  troupe_ref sender;
} troupe_reply_msg;

/*
 * Blocking ask for threads that are not the target system's thread
 * (tests, tools, main). Waits for the first reply at most timeout_ms.
 * Errors: TROUPE_ETIMEDOUT, TROUPE_EWRONGTHREAD (called on the system's
 * own thread, where it would deadlock), TROUPE_ECLOSED, TROUPE_EINVAL.
 * On success *reply owns a copy of the reply.
 */
TROUPE_EXTERN int troupe_ask_blocking(troupe_system *sys, troupe_ref target,
                                      const troupe_type *type,
                                      const void *value, uint64_t timeout_ms,
                                      troupe_reply_msg *reply);
TROUPE_EXTERN void troupe_reply_free(troupe_reply_msg *reply);

/* ------------------------------------------------------------------ */
/* Built-in messages                                                   */

/* Empty message: stops the receiving actor after the messages before it. */
TROUPE_EXTERN extern troupe_type TROUPE_T_POISON_PILL;

/* A message that could not be delivered, published on the event stream.
 * `message` is the value (of `type`), valid during the receive only. */
typedef struct troupe_dead_letter {
  troupe_ref recipient;
  troupe_ref sender;
  const troupe_type *type;
  const void *message;
  int reason;   /* TROUPE_ESTOPPED, TROUPE_ENOENT, TROUPE_EFULL, ... */
} troupe_dead_letter;
TROUPE_EXTERN extern troupe_type TROUPE_T_DEAD_LETTER;

/* A message an actor returned TROUPE_UNHANDLED for, published likewise. */
TROUPE_EXTERN extern troupe_type TROUPE_T_UNHANDLED;

/* ------------------------------------------------------------------ */
/* Event stream                                                        */

/* Subscribe self to published values of `type` (for dead letters:
 * TROUPE_T_DEAD_LETTER). Unsubscribed automatically when it stops. */
TROUPE_EXTERN int troupe_subscribe(troupe_ctx *ctx, const troupe_type *type);
TROUPE_EXTERN int troupe_unsubscribe(troupe_ctx *ctx, const troupe_type *type);
/* Publish to every subscriber of type in ctx's system. */
TROUPE_EXTERN int troupe_publish(troupe_ctx *ctx, const troupe_type *type,
                                 const void *value);

/* ------------------------------------------------------------------ */
/* Paths and selection                                                 */

/* Write the actor's path "troupe://system/user/a/b" into buf (NUL
 * terminated). Returns the length, or TROUPE_ENOENT when the actor is not
 * alive, TROUPE_ERANGE when buf is too small. System thread only. */
TROUPE_EXTERN int troupe_ref_path(troupe_system *sys, troupe_ref ref,
                                  char *buf, size_t size);

/* Resolve "/user/a/b" (or "troupe://system/user/a/b") to the live actor.
 * System thread only. Errors: TROUPE_ENOENT, TROUPE_EINVAL. */
TROUPE_EXTERN int troupe_select(troupe_system *sys, const char *path,
                                troupe_ref *out);

/* Is ref a live actor of sys? System thread only. */
TROUPE_EXTERN bool troupe_ref_alive(troupe_system *sys, troupe_ref ref);

/* ------------------------------------------------------------------ */
/* Routers                                                             */

typedef enum troupe_routing {
  TROUPE_ROUTE_ROUND_ROBIN = 0,
  TROUPE_ROUTE_RANDOM = 1,
  TROUPE_ROUTE_BROADCAST = 2,
  TROUPE_ROUTE_CONSISTENT_HASH = 3
} troupe_routing;

/* A pool router: `size` routees of `routee` are spawned as the router's
 * children; a message told to the router goes to one routee (or all, for
 * broadcast) with its original sender, without passing through the
 * router's mailbox. A routee that stops leaves the pool; when none is left
 * the router stops. For consistent hashing, `hash_key` maps a message to a
 * key (NULL: hash of the encoded value's bytes for flat types). */
typedef struct troupe_router_opts {
  troupe_routing routing;
  uint32_t size;
  const troupe_behavior *routee;
  const void *routee_arg;       /* as troupe_spawn_opts.arg/arg_size */
  size_t routee_arg_size;
  uint64_t (*hash_key)(const troupe_msg *msg);
  uint32_t virtual_nodes;       /* consistent hash ring points; default 64 */
} troupe_router_opts;

/* Spawn a pool router as a child of ctx (ctx NULL: top-level in sys). */
TROUPE_EXTERN int troupe_router_spawn(troupe_system *sys, troupe_ctx *ctx,
                                      const troupe_router_opts *ropts,
                                      const troupe_spawn_opts *opts,
                                      troupe_ref *out);

#ifdef __cplusplus
}
#endif
#endif
