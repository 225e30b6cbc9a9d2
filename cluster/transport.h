/*
 * cluster/transport.h: the transport interface. Not installed.
 *
 * A transport moves core envelopes (troupe__env) between actor systems. The
 * remoting layer (cluster/remote.c) is the only user of this interface and
 * never names an implementation: it finds a transport class by the scheme of
 * an address ("tcp://127.0.0.1:2552", "mem://net/a", "inproc://w3") through
 * troupe__transport_find(). Implementations:
 *
 *   tcp     cluster/tcp.c           libuv TCP, length-prefixed frames
 *   mem     cluster/memtransport.c  deterministic in-memory, for tests
 *   inproc  cluster/inproc.c        SPSC rings between threads (the mesh)
 *
 * ------------------------------------------------------------------------
 * Threads. A transport instance belongs to one actor system and lives on
 * that system's loop thread: every operation below is called on that loop
 * thread, and every callback (on_up, on_down, on_recv) is invoked on it.
 * Implementations use the system's uv_loop_t (troupe__transport.sys->loop)
 * for their handles and must close them all in destroy. A transport that
 * needs other threads (none so far) hands results back to the loop itself.
 *
 * ------------------------------------------------------------------------
 * The unit sent and received is a core envelope, troupe__env (core/
 * internal.h). The fields a transport must carry:
 *
 *   type     the message's descriptor (manifest + version + codec)
 *   data     the value (type->size bytes; owned buffers per the type)
 *   target   the uid of the recipient on the receiving node (0 for none)
 *   sender   a ref (any node), TROUPE_REF_NONE when none
 *   ask_id   non-zero for a reply to an ask
 *   kind     TROUPE__ENV_USER, or a remoting control kind (TROUPE__ENV_R*)
 *   aux64    control argument (a uid), 0 for user messages
 *
 * The in-process transport moves the envelope by pointer. A byte transport
 * (tcp, mem) never looks inside: it calls troupe__wire_encode() to append
 * the envelope's stable wire bytes (docs/envelope-format.md, metadata keys
 * "troupe.*" carry target, sender, ask id, kind) to its outbound buffer, and
 * troupe__wire_decode() on each received frame to rebuild an envelope whose
 * refs (sender, and refs inside the message) already work on this node: a
 * "troupe://sys@host:port/..." URI becomes a ref whose node index names
 * that remote node in the process-wide node table.
 *
 * ------------------------------------------------------------------------
 * Ownership.
 *  - send(conn, e): on 0 the transport owns e (it releases it with
 *    troupe__env_release(sys, e) once encoded, or passes it on by pointer).
 *    On a negative return (TROUPE_EFULL: outbound queue over its bound;
 *    TROUPE_ECLOSED: conn not up; TROUPE_ETOOBIG: frame over the limit;
 *    an encoding error) e is still the caller's; the remoting layer turns
 *    it into a dead letter (counted in troupe_system_dead_letters). send
 *    never blocks.
 *  - Messages a transport accepted but could not deliver afterwards (a
 *    connection that died with frames queued) are reported with
 *    troupe__transport_dropped(t, n, reason): counted as dead letters.
 *  - on_recv(conn, e): e is the callee's (the remoting layer delivers it or
 *    makes it a dead letter). Envelopes are allocated with
 *    troupe__env_alloc(t->sys).
 *
 * ------------------------------------------------------------------------
 * Connections. A troupe__conn is one link to one peer node. connect()
 * returns an outbound conn at once (not yet up); the transport then keeps it
 * connected: it connects, handshakes, and after a loss reconnects with
 * backoff, until close(conn). Inbound connections are created by the
 * transport when a peer connects to a listening address. Events:
 *
 *   on_up(conn, peer)    the handshake completed (protocol version checked,
 *                        cluster secret proven both ways); peer holds the
 *                        peer's system name, advertised address and
 *                        incarnation. Sending is possible from now on. May
 *                        happen again on the same outbound conn after a
 *                        reconnect (the incarnation tells whether the peer
 *                        restarted).
 *   on_down(conn, err)   the link is lost (err: TROUPE_ECLOSED, TROUPE_EIO,
 *                        TROUPE_EDECODE for a malformed frame, TROUPE_EPERM
 *                        for a failed handshake, ...). For an outbound conn
 *                        the transport goes on reconnecting; an inbound conn
 *                        is freed by the transport after on_down returns. A
 *                        conn is only reported down after it was up, except
 *                        a refused handshake, which is logged by the
 *                        transport.
 *
 * A transport may keep one connection per peer pair and close a duplicate
 * (both sides connected at once); remoting sends over any up conn that
 * names the peer node and does not care which one.
 *
 * Closing. close(conn) stops reconnecting and closes an outbound conn (no
 * on_down afterwards; the conn is freed by the transport). destroy(t, cb)
 * closes every conn and handle; cb(data) runs on the loop once all handles
 * are closed (the remoting layer frees its own state then). No callbacks
 * run after destroy returns except cb.
 */
#ifndef TROUPE_CLUSTER_TRANSPORT_H
#define TROUPE_CLUSTER_TRANSPORT_H

#include "core/internal.h"

typedef struct troupe__transport troupe__transport;
typedef struct troupe__conn troupe__conn;
typedef struct troupe__transport_class troupe__transport_class;

/* What the handshake told about the peer. Strings are valid during the
 * on_up call only (copy what you keep). */
typedef struct troupe__peer_info {
  const char *system;       /* the peer's system name */
  const char *address;      /* its advertised node address "host:port" */
  uint64_t incarnation;     /* random per system start; a new value means
                               the peer restarted */
  uint32_t protocol;        /* the protocol version it speaks */
} troupe__peer_info;

/* The callbacks a transport invokes (loop thread, see above). */
typedef struct troupe__transport_cbs {
  void *data;
  void (*on_up)(void *data, troupe__conn *conn,
                const troupe__peer_info *peer);
  void (*on_down)(void *data, troupe__conn *conn, int err);
  void (*on_recv)(void *data, troupe__conn *conn, troupe__env *e);
} troupe__transport_cbs;

/* Settings shared by every transport. Zero means the default. */
typedef struct troupe__transport_opts {
  const char *system;             /* our system name (handshake) */
  const char *advertise;          /* our node address "host:port" as peers
                                     should name it (NULL: the bound one) */
  uint64_t incarnation;           /* ours */
  const uint8_t *secret;          /* cluster secret (HMAC key); NULL: none */
  size_t secret_len;
  size_t max_frame;               /* default 4 MiB */
  size_t max_outbound;            /* bytes queued per conn; default 64 MiB */
  uint64_t reconnect_min_ms;      /* backoff; default 100 */
  uint64_t reconnect_max_ms;      /* default 5000 */
  uint64_t handshake_timeout_ms;  /* default 5000 */
  uint64_t heartbeat_ms;          /* probe a link silent this long;
                                     default 1000 */
  uint64_t idle_timeout_ms;       /* close a link without any traffic
                                     this long (over heartbeat_ms);
                                     default 10000 */
} troupe__transport_opts;

/* The base of every transport instance (embed it first). */
struct troupe__transport {
  const troupe__transport_class *cls;
  troupe_system *sys;
  troupe__transport_cbs cbs;
};

/* The base of every connection (embed it first). `user` belongs to the
 * remoting layer (its per-link state), NULL until it sets it. */
struct troupe__conn {
  troupe__transport *t;
  void *user;
  bool inbound;
};

struct troupe__transport_class {
  const char *scheme;   /* "tcp", "mem", "inproc" */
  /* Create an instance on sys's loop. opts and cbs are copied (strings
   * and secret too). Errors: TROUPE_EINVAL, TROUPE_ENOMEM. */
  int (*create)(troupe_system *sys, const troupe__transport_opts *opts,
                const troupe__transport_cbs *cbs, troupe__transport **out);
  /* Listen on addr (without the scheme: "127.0.0.1:0"). The bound address
   * ("127.0.0.1:40123") is written to bound. Errors: TROUPE_EINVAL (bad
   * address), TROUPE_EIO (bind/listen failed; detail names the reason). */
  int (*listen)(troupe__transport *t, const char *addr, char *bound,
                size_t bound_size);
  /* Start an outbound conn to addr (without the scheme). Returns at once;
   * on_up follows when the handshake completes. */
  int (*connect)(troupe__transport *t, const char *addr, troupe__conn **out);
  /* Send one envelope; see "Ownership" above. Never blocks. */
  int (*send)(troupe__conn *conn, troupe__env *e);
  /* Close one conn (see "Closing"). */
  void (*close)(troupe__conn *conn);
  /* Close everything; done(data) runs when all handles are closed. */
  void (*destroy)(troupe__transport *t, void (*done)(void *data),
                  void *data);
};

/* The class for a scheme ("tcp"), or NULL. Built-in classes only. */
const troupe__transport_class *troupe__transport_find(const char *scheme,
                                                      size_t len);

/* Protocol version spoken by this build's remoting (handshake). */
#define TROUPE__REMOTE_PROTOCOL 1

/*
 * Wire form of one envelope (for byte transports). Appends to out the
 * stable envelope of e's value (troupe_envelope_encode_value) with
 * metadata troupe.to (target uid), troupe.from (sender URI), troupe.ask,
 * troupe.k (kind), troupe.a (aux64) where non-zero. Refs are written as
 * URIs with our node address. Does not take e. Errors: TROUPE_EINVAL,
 * TROUPE_ENOMEM, codec errors; out keeps its length on error.
 */
int troupe__wire_encode(troupe__transport *t, const troupe__env *e,
                        troupe_buf *out);
/*
 * Rebuild an envelope from one frame's bytes (allocated on t->sys; refs
 * decoded against the node table). Errors: TROUPE_EDECODE, TROUPE_ETYPE
 * (unknown manifest), TROUPE_ETOOBIG, TROUPE_ENOMEM. A byte transport
 * treats an error as a malformed frame only for TROUPE_EDECODE/ETOOBIG;
 * TROUPE_ETYPE (a type this node does not know) is a dead letter, logged,
 * and the connection stays up.
 */
int troupe__wire_decode(troupe__transport *t, const uint8_t *data,
                        size_t len, troupe__env **out);

/* Count n accepted-but-undelivered messages as dead letters (see above). */
void troupe__transport_dropped(troupe__transport *t, uint64_t n, int reason);

#endif
