/*
 * core/internal.h: internals shared by troupe's modules. Not installed.
 */
#ifndef TROUPE_CORE_INTERNAL_H
#define TROUPE_CORE_INTERNAL_H

#include "config.h"
#include "troupe/troupe.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#if defined(__GNUC__)
# define TROUPE_LIKELY(x)   __builtin_expect(!!(x), 1)
# define TROUPE_UNLIKELY(x) __builtin_expect(!!(x), 0)
# define TROUPE_HIDDEN __attribute__((visibility("hidden")))
#else
# define TROUPE_LIKELY(x)   (x)
# define TROUPE_UNLIKELY(x) (x)
# define TROUPE_HIDDEN
#endif

#define TROUPE_CONTAINER_OF(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

/* Record detail text for the calling thread and return code, so a failing
 * call can say `return troupe__err(TROUPE_EINVAL, "name too long (%zu)", n)`. */
int troupe__err(int code, const char *fmt, ...) TROUPE_PRINTF(2, 3);
void troupe__err_clear(void);

/*
 * Refs as text, for the codec. troupe__ref_to_uri writes
 * "troupe://system/user/a#<uid>" (or "troupe://system@host:port/..." once
 * the system has a network address) and returns the length or a negative
 * code; troupe__ref_from_uri parses that text back into a ref usable for
 * tell (a local actor when the address is ours). `sys` may be NULL when no
 * system is at hand (then refs resolve against the process's node table).
 */
int troupe__ref_to_uri(troupe_system *sys, troupe_ref ref, char *buf,
                       size_t size);
int troupe__ref_from_uri(troupe_system *sys, const char *uri, size_t len,
                         troupe_ref *out);

/* ------------------------------------------------------------------ */
/* uids: slot << 32 | generation. Slots with the top bit set name ask
 * promises rather than actors. Generation is never 0. */
#define TROUPE__UID(slot, gen) (((uint64_t)(slot) << 32) | (uint32_t)(gen))
#define TROUPE__UID_SLOT(uid)  ((uint32_t)((uid) >> 32))
#define TROUPE__UID_GEN(uid)   ((uint32_t)(uid))
#define TROUPE__PROMISE_BIT    0x80000000u

/* ------------------------------------------------------------------ */
/* The process-wide node table: every local system (and later every remote
 * node) known to this process has an index, so a troupe_ref means the same
 * on every thread. Entries are never freed; a destroyed system leaves its
 * entry closed. */
typedef struct troupe__node {
  _Atomic(troupe_system *) sys;   /* NULL once the system is gone */
  atomic_uint users;              /* threads inside a cross-thread tell */
  /* Remote nodes (cluster/remote.c): the remoting's node record, set once
   * when the entry is added; sys is NULL for them. */
  _Atomic(void *) remote;
} troupe__node;

int troupe__node_add(troupe_system *sys, uint64_t *index);
/* Add an entry for a node of another process (sys stays NULL). */
int troupe__node_add_remote(void *remote, uint64_t *index);
/* The newest open local system with this name, or 0. */
uint64_t troupe__node_find_local(const char *name, size_t len);
troupe__node *troupe__node_get(uint64_t index);
/* Close an entry and wait until no other thread is inside it. */
void troupe__node_close(uint64_t index);

/* ------------------------------------------------------------------ */
/* Envelopes */

enum {
  TROUPE__ENV_USER = 0,
  TROUPE__ENV_TIMER,        /* aux64 = key, aux = timer generation */
  TROUPE__ENV_CALL,         /* inbox: run call(sys, data) on the loop */
  /* system messages: the system queue, ahead of user messages */
  TROUPE__SYS_STOP,
  TROUPE__SYS_FAILED,       /* to parent: aux64 = child uid, aux = error */
  TROUPE__SYS_CHILD_DONE,   /* to parent: aux64 = child uid */
  TROUPE__SYS_RESTART,      /* to child after backoff: aux = error */
  TROUPE__SYS_CHILD_INIT,   /* run a freshly spawned child's init */
  /* remoting control, delivered through troupe__inbound on the target's
   * system (from another system of the process or a transport) */
  TROUPE__ENV_RWATCH,       /* target uid: watch it for sender */
  TROUPE__ENV_RUNWATCH      /* target uid: sender no longer watches */
};

/* The uid of every system's root guardian (the first slot, generation 1):
 * the well-known target of Identify messages from other nodes. */
#define TROUPE__ROOT_UID TROUPE__UID(1, 1)

typedef struct troupe__env troupe__env;
struct troupe__env {
  troupe__env *next;
  const troupe_type *type;
  void *data;               /* inline buffer or heap */
  troupe_ref sender;
  uint64_t ask_id;
  uint64_t target;          /* target uid (inbox and system queue) */
  uint64_t aux64;
  void (*call)(troupe_system *sys, void *arg);
  troupe__env *orig;        /* dead letters: the undelivered envelope */
  uint32_t kind;
  int32_t aux;
  uint32_t refs;            /* holders of this envelope (dead letters) */
  uint32_t heap;            /* data was malloc'd */
  uint64_t tnode;           /* target node, for envelopes between systems */
  _Alignas(16) unsigned char inl[TROUPE_INLINE_MSG];
};

/* ------------------------------------------------------------------ */
/* Cells */

enum {
  TROUPE__CF_SCHEDULED   = 1u << 0,  /* on the run queue */
  TROUPE__CF_SUSPENDED   = 1u << 1,  /* failed, waiting for its supervisor */
  TROUPE__CF_STOPPING    = 1u << 2,  /* stop requested, children stopping */
  TROUPE__CF_RESTARTING  = 1u << 3,  /* restart waiting for children */
  TROUPE__CF_DEAD        = 1u << 4,
  TROUPE__CF_ROUTER      = 1u << 5,
  TROUPE__CF_INITED      = 1u << 6,  /* init succeeded: post_stop runs */
  TROUPE__CF_GUARDIAN    = 1u << 7,
  TROUPE__CF_INIT_FAILED = 1u << 8,
  TROUPE__CF_BACKOFF     = 1u << 9,  /* restart scheduled on a timer */
  TROUPE__CF_MUTED       = 1u << 10  /* filled a link: waits for room */
};

typedef struct troupe__cell troupe__cell;
typedef struct troupe__cell_ext troupe__cell_ext;
typedef struct troupe__timer troupe__timer;
typedef struct troupe__router troupe__router;

struct troupe__cell {
  troupe__env *mb_head, *mb_tail;   /* user mailbox */
  troupe__cell *rq_next;            /* run queue link */
  troupe_system *sys;
  troupe_receive_fn receive;        /* current receive (become) */
  void *state;
  uint64_t uid;
  uint32_t mb_len;
  uint32_t flags;
  const troupe_behavior *beh;
  troupe__cell *parent;
  troupe__cell *first_child, *next_sib, *prev_sib;
  uint32_t nchildren;
  uint32_t name_len;
  char *name;                       /* NULL: generated from uid */
  troupe__cell_ext *ext;            /* rarely used parts, lazily */
};

/* A small set of uids (watchers, watched, routees). */
typedef struct troupe__uidset {
  troupe_ref *items;
  uint32_t len, cap;
} troupe__uidset;

int troupe__uidset_add(troupe__uidset *s, troupe_ref r);   /* 1 new, 0 had */
bool troupe__uidset_del(troupe__uidset *s, troupe_ref r);
bool troupe__uidset_has(const troupe__uidset *s, troupe_ref r);
void troupe__uidset_free(troupe__uidset *s);

struct troupe__cell_ext {
  troupe__uidset watchers;     /* who watches me */
  troupe__uidset watching;     /* whom I watch */
  troupe__env *stash_head, *stash_tail;
  uint32_t stash_len;
  troupe__timer *timers;       /* keyed timers, a list */
  void *arg_copy;              /* spawn arg kept for restarts */
  const void *arg;             /* the arg passed to init */
  /* supervision bookkeeping, as seen by the parent */
  uint64_t window_start_ms;
  uint32_t restarts_in_window;
  uint32_t consecutive;
  int32_t pending_error;       /* error of a restart waiting on children */
  uv_timer_t *backoff;         /* pending backoff restart */
  troupe__router *router;
  const troupe_type **subs;    /* event stream subscriptions */
  uint32_t nsubs, subs_cap;
};

troupe__cell_ext *troupe__ext(troupe__cell *c);

/* ------------------------------------------------------------------ */
/* Systems */

typedef struct troupe__namemap {
  troupe__cell **slots;
  size_t cap, len;
} troupe__namemap;

typedef struct troupe__slot {
  troupe__cell *cell;
  uint32_t gen;
  uint32_t next_free;
} troupe__slot;

typedef struct troupe__ask troupe__ask;
typedef struct troupe__sub troupe__sub;

struct troupe_system {
  /* hot: dispatcher */
  troupe__cell *rq_head, *rq_tail;
  troupe__env *sq_head, *sq_tail;        /* system queue */
  troupe__env *free_envs;
  uint32_t nfree_envs;
  uint32_t throughput;
  troupe__cell *cur_cell;                /* actor in a callback */
  troupe__env *cur_env;                  /* message being handled */
  bool cur_stashed;
  bool idle_active;
  uint64_t node;                         /* our node index */
  troupe__slot *slots;
  uint32_t nslots, slots_cap, free_slot;
  uint32_t live_cells;

  uv_loop_t loop;
  uv_idle_t idle;
  uv_async_t async;
  atomic_int wake_pending;
  /* Vyukov MPSC inbox */
  _Atomic(troupe__env *) in_tail;
  troupe__env *in_head;
  troupe__env in_stub;

  char name[64];
  troupe_log_fn log;
  void *log_data;
  troupe_log_level log_level;
  troupe_root_policy root_policy;
  troupe_supervisor user_sup;
  uint32_t dl_log_limit;
  atomic_uint_fast64_t dead_letters;

  troupe__cell *root, *user, *sysg;
  troupe__namemap names;

  /* Links to other systems of the process (the mesh's in-process
   * transport), all called on this system's loop thread:
   *  xroute  take e (target: system `to`), 0 when taken, 1 to let the
   *          inbox carry it;
   *  xpoll   move arrived envelopes in (troupe__inbound); returns how
   *          many; called when the run queue runs dry inside dispatch;
   *  xflush  publish what xroute buffered; called at the end of dispatch.
   *  xsend   as xroute, for the system at node index `node` without
   *          touching it (the cross-thread tell's hot path: no users
   *          count on the node, whose atomic add stalled every tell);
   *          1 when no link of ours reaches it.
   * Set before the system runs, never changed while it runs. */
  int (*xroute)(troupe_system *from, troupe_system *to, troupe__env *e);
  int (*xsend)(troupe_system *from, uint64_t node, troupe__env *e);
  size_t (*xpoll)(troupe_system *sys);
  void (*xflush)(troupe_system *sys);
  _Atomic(void *) xdata;                 /* the link owner (mesh endpoint) */
  bool xdirty;                           /* xflush owed */
  /* Backpressure: xroute sets xcongested when a link is full (the
   * envelope waits in its overflow list). The actor whose receive filled
   * it is muted (CF_MUTED): the dispatcher parks it on the muted list
   * (flagged SCHEDULED, linked by rq_next) until xflush has moved every
   * overflow into its ring, so one sender cannot queue without bound
   * ahead of a slower receiver. */
  bool xcongested;
  bool xmute;                            /* set with xcongested, taken by
                                          * the dispatcher to mute the
                                          * actor that ran */
  troupe__cell *muted_head, *muted_tail;
  struct troupe__envpool *env_pool;      /* shared envelope batches */
  /* Remoting (cluster/remote.c): its state, and this node's network
   * address "host:port" (NULL: none) used when refs become URIs. */
  void *remoting;
  _Atomic(const char *) address;
  uint32_t timer_gen;                    /* timer generations */
  uint64_t rng;

  /* asks */
  troupe__ask *asks;                     /* slot array */
  uint32_t nasks, asks_cap, free_ask;
  uint32_t ask_dl_head, ask_dl_tail;     /* deadline list (indices) */
  uv_timer_t ask_timer;
  bool ask_timer_armed;
  uint64_t next_ask_id;

  /* event stream */
  troupe__sub *subs;
  uint32_t nsubs, subs_cap;

  /* lifecycle */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_t thread;
  bool thread_started;
  atomic_int state;                      /* TROUPE__SYS_* */
  atomic_bool stop_requested;
  int exit_code;
  bool loop_inited;
  atomic_uintptr_t loop_thread;          /* pthread_self of the loop, or 0 */
};

enum {
  TROUPE__SYS_CREATED = 0,
  TROUPE__SYS_RUNNING,
  TROUPE__SYS_STOPPING,
  TROUPE__SYS_TERMINATED
};

/* The system whose loop runs on this thread (NULL elsewhere). */
extern _Thread_local troupe_system *troupe__current;

/* Envelopes */
troupe__env *troupe__env_alloc(troupe_system *sys);
void troupe__env_release(troupe_system *sys, troupe__env *e);
int troupe__env_set(troupe__env *e, const troupe_type *type,
                    const void *value);
/* heap envelope for other threads */
troupe__env *troupe__env_new(void);

/*
 * A pool of spare envelopes shared by systems whose envelopes travel one
 * way (a mesh): a system whose free list is full gives a batch to the pool,
 * one whose free list is empty takes a batch, so a one-way stream between
 * threads allocates nothing. Batches move under a mutex (once per batch).
 */
typedef struct troupe__envpool troupe__envpool;
troupe__envpool *troupe__envpool_new(void);
void troupe__envpool_free(troupe__envpool *p);

/* Dispatcher */
void troupe__schedule(troupe__cell *c);
void troupe__enqueue(troupe__cell *c, troupe__env *e);  /* user mailbox */
void troupe__sysq_push(troupe_system *sys, troupe__env *e);
int troupe__sys_send(troupe_system *sys, uint64_t target, uint32_t kind,
                     uint64_t aux64, int32_t aux);
void troupe__wake_dispatch(troupe_system *sys);
/* Drive a system from the calling thread one non-blocking loop iteration
 * at a time instead of troupe_system_run (the multi-node test kit runs
 * several systems on one thread). begin: CREATED -> RUNNING as run does;
 * step: one uv_run(NOWAIT) as sys's thread, returns false once the system
 * has terminated (its loop has nothing left); end: after step returned
 * false, finish as run does and return the exit code. */
int troupe__system_step_begin(troupe_system *sys);
bool troupe__system_step(troupe_system *sys);
int troupe__system_step_end(troupe_system *sys);
/* Post fn(sys, arg) to the system's loop from any thread. */
int troupe__post(troupe_system *sys, void (*fn)(troupe_system *, void *),
                 void *arg);
/* An envelope that came from another system or node (inbox, ring,
 * transport): a call, a control message or a message for a local uid.
 * Takes e. Loop thread. */
void troupe__inbound(troupe_system *sys, troupe__env *e);
/* Move e to node n from any thread (see system.c). Takes e. */
int troupe__send_node(troupe_system *cur, troupe__node *n, uint64_t node,
                      troupe__env *e);
/* Node `node` is lost: every watch of an actor there ends with a
 * Terminated (node_lost). Loop thread. */
void troupe__node_lost(troupe_system *sys, uint64_t node);
extern troupe_type TROUPE__T_CONTROL;
/* Handle a control envelope (watch/unwatch from another node). Takes e. */
void troupe__control(troupe_system *sys, troupe__env *e);

/* Remoting entry points (cluster/remote.c), any thread: a tell to a ref
 * whose node is remote (takes e, dead-letters it when the node is
 * unreachable), and the node index for "system@address". */
int troupe__remote_send(troupe__node *n, uint64_t node, troupe__env *e);
int troupe__remote_node(troupe_system *sys, const char *name, size_t nlen,
                        const char *addr, size_t alen, uint64_t *node);
/* troupe_envelope_encode_value for remoting's own metadata: `meta` holds
 * unique keys already in canonical order (shorter first, then bytewise)
 * and is not checked again (text values are). Same bytes. */
int troupe__envelope_encode_sorted(const troupe_type *t, const void *value,
                                   const troupe_meta *meta, size_t nmeta,
                                   troupe_buf *out,
                                   const troupe_codec_opts *opts);
/* An envelope for a remote node arrived at its owner's loop. Takes e. */
void troupe__remote_inbound(troupe_system *sys, troupe__env *e);
/* The system is terminating / being freed. */
void troupe__remote_closing(troupe_system *sys);
void troupe__remote_free(troupe_system *sys);

/* Identify: asked of a system's root guardian, answered with a
 * TROUPE_T_ACTOR_IDENTITY for the actor at `path` (none if nothing). */
typedef struct troupe_identify {
  char *path;
} troupe_identify;
extern troupe_type TROUPE__T_IDENTIFY;

/* The remote node's "system@address" text (for ref URIs), or NULL. */
const char *troupe__remote_name(void *remote, const char **address);

/* Deliver an envelope to a local target uid (dead letters if gone). */
int troupe__deliver_local(troupe_system *sys, uint64_t uid, troupe__env *e,
                          bool from_this_thread);

/* Cells */
troupe__cell *troupe__cell_get(troupe_system *sys, uint64_t uid);
int troupe__spawn(troupe_system *sys, troupe__cell *parent,
                  const troupe_behavior *b, const troupe_spawn_opts *opts,
                  uint32_t extra_flags, troupe__cell **out);
void troupe__cell_stop(troupe__cell *c);
void troupe__handle_sys(troupe_system *sys, troupe__env *e);
void troupe__fail(troupe__cell *c, int error);
int troupe__cell_name(const troupe__cell *c, char *buf, size_t size);
/* May this be an actor's name (a path element)? */
bool troupe__valid_actor_name(const char *name, size_t len);
static inline troupe_ref troupe__ref_of(const troupe__cell *c) {
  troupe_ref r = {c->sys->node, c->uid};
  return r;
}
void troupe__log(troupe_system *sys, troupe_log_level lvl, const char *src,
                 const char *fmt, ...) TROUPE_PRINTF(4, 5);
int troupe__path_of(const troupe__cell *c, char *buf, size_t size);

/* Names */
int troupe__names_put(troupe__namemap *m, troupe__cell *c);
troupe__cell *troupe__names_get(const troupe__namemap *m,
                                const troupe__cell *parent, const char *name,
                                size_t len);
void troupe__names_del(troupe__namemap *m, troupe__cell *c);
void troupe__names_free(troupe__namemap *m);

/* Dead letters and the event stream */
void troupe__dead_letter(troupe_system *sys, troupe_ref recipient,
                         troupe__env *e, int reason);
void troupe__publish_env(troupe_system *sys, const troupe_type *type,
                         const void *value, troupe__env *orig);
void troupe__subs_drop_cell(troupe__cell *c);
void troupe__subs_free(troupe_system *sys);

/* Watch */
void troupe__watch_notify(troupe__cell *c);
bool troupe__watch_filter(troupe__cell *c, const troupe__env *e);

/* Timers */
void troupe__timers_cancel_all(troupe__cell *c);
bool troupe__timer_filter(troupe__cell *c, const troupe__env *e);

/* Asks */
int troupe__ask_deliver(troupe_system *sys, uint64_t uid, troupe__env *e);
void troupe__asks_close(troupe_system *sys);
void troupe__asks_init(troupe_system *sys);

/* Routers */
bool troupe__route(troupe__cell *router, troupe__env *e);
void troupe__router_child_done(troupe__cell *router, uint64_t child_uid);
void troupe__router_free(troupe__cell *c);

/* Random */
uint64_t troupe__rand(troupe_system *sys);
uint64_t troupe__now_ms(troupe_system *sys);

#endif
