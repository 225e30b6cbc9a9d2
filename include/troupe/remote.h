/*
 * troupe/remote.h: remoting — actor systems of other threads and other
 * processes reached with the same troupe_tell.
 *
 * Addresses. A system that runs remoting is a node named
 * "troupe://<system>@<host>:<port>"; an actor there is
 * "troupe://<system>@<host>:<port>/user/a#<uid>". A ref to such an actor is
 * an ordinary troupe_ref (its node index names the remote node in this
 * process's node table): tell, ask, watch and forward work as for local
 * actors. Refs inside messages travel as these URIs and arrive as working
 * refs, so request/reply across nodes needs nothing special.
 *
 * Delivery. A tell to a remote actor never blocks. While the node is not
 * connected, messages wait in a bounded queue (reconnection is the
 * transport's job); over the bound, or once the node is lost, they become
 * dead letters (counted by troupe_system_dead_letters). A node is lost
 * when its connection stays down, or is not made at all, for
 * `node_lost_ms`; it stops being lost when a connection comes up again.
 * Message types must be registered (troupe_type_register) on both nodes;
 * the built-in ones are registered by troupe_remote_start.
 *
 * Death watch. troupe_watch works across systems and nodes. A watcher gets
 * Terminated when the actor stops, and Terminated with node_lost set when
 * the connection to its node is lost and not re-established within
 * `node_lost_ms`.
 */
#ifndef TROUPE_REMOTE_H
#define TROUPE_REMOTE_H

#include "troupe/actor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options of troupe_remote_start. Zero fields take the default. */
typedef struct troupe_remote_opts {
  /* Where to listen, with the transport's scheme: "tcp://127.0.0.1:0",
   * "mem://netname/host:port" (tests; a mem node must listen). NULL:
   * connect out only. */
  const char *listen;
  /* The address peers should use ("host:port"); NULL: the bound one. */
  const char *advertise;
  /* Transport scheme used to reach peers when listen is NULL ("tcp"). */
  const char *scheme;
  const void *secret;          /* cluster secret (HMAC key); NULL: none */
  size_t secret_len;
  uint64_t node_lost_ms;       /* default 5000 */
  uint32_t max_pending;        /* messages queued per unconnected node;
                                  default 65536 */
} troupe_remote_opts;

/*
 * Turn sys into a network node. Call before troupe_system_run/start, or
 * from the system's own thread. Errors: TROUPE_EINVAL (bad options,
 * unknown scheme), TROUPE_ESTATE (remoting already started), TROUPE_EIO
 * (listen failed), TROUPE_EWRONGTHREAD, TROUPE_ENOMEM.
 */
TROUPE_EXTERN int troupe_remote_start(troupe_system *sys,
                                      const troupe_remote_opts *opts);

/* The node's address "host:port" (NUL-terminated) into buf. Returns the
 * length; TROUPE_ENOENT without remoting, TROUPE_ERANGE when buf is too
 * small. Any thread. */
TROUPE_EXTERN int troupe_remote_address(troupe_system *sys, char *buf,
                                        size_t size);

/*
 * A ref from its full URI "troupe://sys@host:port/path#uid" (or
 * "troupe://sys/path#uid" for a system of this process), without any
 * network traffic. The URI must carry the uid (the '#' part): to find an
 * actor by path use troupe_resolve. System thread of sys (or before it
 * runs). Errors: TROUPE_EINVAL, TROUPE_ENOENT (unknown local system).
 */
TROUPE_EXTERN int troupe_ref_parse(troupe_system *sys, const char *uri,
                                   troupe_ref *out);

/* The reply to troupe_resolve: `actor` is TROUPE_REF_NONE when nothing
 * lives at the path. Arrives with msg->ask_id set. */
typedef struct troupe_actor_identity {
  troupe_ref actor;
} troupe_actor_identity;
TROUPE_EXTERN extern troupe_type TROUPE_T_ACTOR_IDENTITY;

/*
 * Resolve a path on another node or system: "troupe://sys@host:port/user/a"
 * or "troupe://sys/user/a" (a system of this process, e.g. a mesh worker).
 * The answer arrives to the calling actor as a TROUPE_T_ACTOR_IDENTITY
 * message with msg->ask_id == *ask_id, or a TROUPE_T_ASK_TIMEOUT after
 * timeout_ms. Errors: TROUPE_EINVAL, TROUPE_ENOENT (unknown system).
 */
TROUPE_EXTERN int troupe_resolve(troupe_ctx *ctx, const char *uri,
                                 uint64_t timeout_ms, uint64_t *ask_id);

/* The same from a thread that is not sys's loop thread; waits for the
 * answer. Errors: as above, TROUPE_ETIMEDOUT, and TROUPE_ENOENT when
 * nothing lives at the path. */
TROUPE_EXTERN int troupe_resolve_blocking(troupe_system *sys, const char *uri,
                                          uint64_t timeout_ms,
                                          troupe_ref *out);

#ifdef __cplusplus
}
#endif
#endif
