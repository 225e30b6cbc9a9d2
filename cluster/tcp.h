/*
 * cluster/tcp.h: the TCP transport (class troupe__transport_tcp, scheme
 * "tcp"), and the few extra calls its tests and benchmark use. Internal.
 * The wire format, handshake and connection rules are described in
 * docs/remoting.md ("The TCP transport").
 */
#ifndef TROUPE_CLUSTER_TCP_H
#define TROUPE_CLUSTER_TCP_H

#include "cluster/transport.h"
#include "cluster/frame.h"

extern const troupe__transport_class troupe__transport_tcp;

/* Counters of one TCP transport instance (loop thread). */
typedef struct troupe__tcp_stats {
  uint64_t frames_out, frames_in;   /* envelope frames sent / received */
  uint64_t bytes_out, bytes_in;     /* all bytes written / read */
  uint64_t writes;                  /* uv_write calls (batching ratio) */
  uint64_t full;                    /* sends refused: queue over its bound */
  uint64_t dropped;                 /* accepted, then lost with a conn */
  uint64_t refused;                 /* handshakes refused (either side) */
  uint64_t malformed;               /* conns closed for a bad frame */
  uint64_t connects, ups, downs;    /* attempts, handshakes done, losses */
  size_t queued;                    /* bytes queued now, all conns */
} troupe__tcp_stats;

/*
 * Frame-level use without remoting (tests, benchmark): an instance on any
 * loop, with sys NULL (logs then go to log_fn, or stderr from WARN up).
 * When on_frame is set, ENVELOPE frames are handed to it as bytes instead
 * of being decoded into envelopes, and troupe__tcp_send_frame sends bytes.
 */
typedef struct troupe__tcp_hooks {
  void *data;
  void (*on_frame)(void *data, troupe__conn *conn, uint8_t flags,
                   const uint8_t *body, size_t len);
  void (*log_fn)(void *data, troupe_log_level lvl, const char *msg);
} troupe__tcp_hooks;

int troupe__tcp_create_on(uv_loop_t *loop, troupe_system *sys,
                          const troupe__transport_opts *opts,
                          const troupe__transport_cbs *cbs,
                          const troupe__tcp_hooks *hooks,
                          troupe__transport **out);
/* Queue one ENVELOPE frame carrying body (copied). Same rules and errors
 * as send: TROUPE_ECLOSED, TROUPE_EFULL, TROUPE_ETOOBIG. */
int troupe__tcp_send_frame(troupe__conn *conn, uint8_t flags,
                           const void *body, size_t len);
/* Write raw bytes on a conn's socket, bypassing framing (tests: garbage). */
int troupe__tcp_send_raw(troupe__conn *conn, const void *p, size_t n);
/* Stop or resume reading a conn's socket (tests: a peer that stops
 * reading). */
int troupe__tcp_pause(troupe__conn *conn, bool paused);
void troupe__tcp_get_stats(troupe__transport *t, troupe__tcp_stats *out);
/* Is the conn up now? */
bool troupe__tcp_conn_up(const troupe__conn *conn);

#endif
