/*
 * cluster/frame.h: the TCP transport's wire framing and handshake
 * messages (docs/remoting.md, "TCP transport"). Internal.
 *
 * A frame is
 *
 *   u32 body length (big endian) | u8 kind | u8 flags | body
 *
 * The body of an ENVELOPE frame is one stable envelope
 * (docs/envelope-format.md), opaque to this layer. A frame longer than the
 * receiver's limit, an unknown kind or an unknown flag is a protocol error
 * that closes the connection it arrived on (and only that one).
 */
#ifndef TROUPE_CLUSTER_FRAME_H
#define TROUPE_CLUSTER_FRAME_H

#include "core/internal.h"
#include "cluster/sha256.h"

#define TROUPE__FRAME_HEAD 6u
/* Default and hard limits on a frame's body. */
#define TROUPE__FRAME_MAX_DEFAULT (4u << 20)
#define TROUPE__FRAME_MAX_LIMIT   (1u << 30)
/* Before a connection is authenticated only handshake frames this small
 * are accepted, so a stranger cannot make us allocate. */
#define TROUPE__FRAME_MAX_HANDSHAKE 1024u

enum {
  TROUPE__FRAME_HANDSHAKE = 1,      /* hello (client), or proof (F_PROOF) */
  TROUPE__FRAME_HANDSHAKE_ACK = 2,  /* hello + server MAC, or F_REFUSED */
  TROUPE__FRAME_ENVELOPE = 3,       /* one stable envelope */
  TROUPE__FRAME_CONTROL = 4,        /* remoting's own messages */
  TROUPE__FRAME_HEARTBEAT = 5,      /* keep-alive; F_REPLY answers one */
  TROUPE__FRAME_KIND_MAX = 5
};

enum {
  TROUPE__FRAME_F_PROOF = 1u << 0,    /* HANDSHAKE: the client's MAC */
  TROUPE__FRAME_F_REFUSED = 1u << 0,  /* HANDSHAKE_ACK: u16 code + text */
  TROUPE__FRAME_F_REPLY = 1u << 0,    /* HEARTBEAT: answer to a ping */
  TROUPE__FRAME_F_USER = 0xf0u        /* ENVELOPE/CONTROL: caller's bits */
};

/* The flags a frame of this kind may carry (0 for an unknown kind). */
uint8_t troupe__frame_flags_allowed(uint8_t kind);

/* Write a frame head for a body of len bytes at p. */
static inline void troupe__frame_head(uint8_t *p, uint8_t kind, uint8_t flags,
                                      uint32_t len) {
  p[0] = (uint8_t)(len >> 24);
  p[1] = (uint8_t)(len >> 16);
  p[2] = (uint8_t)(len >> 8);
  p[3] = (uint8_t)len;
  p[4] = kind;
  p[5] = flags;
}

/* Append one frame (head + a copy of the body) to out. Errors:
 * TROUPE_EINVAL (bad kind or flags), TROUPE_ETOOBIG, TROUPE_ENOMEM. */
int troupe__frame_append(troupe_buf *out, uint8_t kind, uint8_t flags,
                         const void *body, size_t len);

/* Called once per complete frame. body points into the decoder's input or
 * its own buffer and is valid until the callback returns. A nonzero return
 * stops decoding and is returned by troupe__frame_dec_feed. */
typedef int (*troupe__frame_fn)(void *data, uint8_t kind, uint8_t flags,
                                const uint8_t *body, size_t len);

/* An incremental decoder over a byte stream: feed it reads of any size
 * (partial frames, many frames per read). Frames that lie whole inside
 * one read are handed out without a copy. */
typedef struct troupe__frame_dec {
  size_t max_body;      /* larger frames are an error */
  uint8_t head[TROUPE__FRAME_HEAD];
  uint32_t head_len;    /* bytes of a partial head */
  troupe_buf body;      /* a partial body being collected */
  size_t body_need;     /* its total length, when in_body */
  bool in_body;
  int error;            /* sticky: a failed decoder refuses more input */
  uint64_t frames;      /* frames decoded */
} troupe__frame_dec;

void troupe__frame_dec_init(troupe__frame_dec *d, size_t max_body);
/* Change the limit (e.g. raise it after the handshake). */
void troupe__frame_dec_set_max(troupe__frame_dec *d, size_t max_body);
/* Decode n bytes. Returns 0, the callback's nonzero return, or
 * TROUPE_EPROTO (unknown kind or flags), TROUPE_ETOOBIG (over the limit),
 * TROUPE_ENOMEM. After an error every later call returns it again. */
int troupe__frame_dec_feed(troupe__frame_dec *d, const uint8_t *p, size_t n,
                           troupe__frame_fn fn, void *data);
/* Bytes of a partial frame held. */
size_t troupe__frame_dec_pending(const troupe__frame_dec *d);
void troupe__frame_dec_free(troupe__frame_dec *d);

/* ------------------------------------------------------------------ */
/* Handshake (docs/remoting.md):
 *
 *   client -> server  HANDSHAKE      hello(version, name, addr, nonce_c)
 *   server -> client  HANDSHAKE_ACK  hello(version, name, addr, nonce_s)
 *                                    + MAC('S')
 *   client -> server  HANDSHAKE|F_PROOF  MAC('C')
 *
 * hello = "TRPE" | u16 version | u16 protocol | u64 incarnation | nonce[32]
 *         | u8 len, system name | u8 len, node address (| mac[32])
 *
 * MAC(role) = HMAC-SHA-256(secret, "troupe-tcp" | role | both hellos
 * without MACs, client's first), so it covers versions, incarnations,
 * nonces, names and addresses. Each side proves the secret over both
 * nonces, so neither a replayed nor a reflected proof passes. */

#define TROUPE__TCP_PROTO 1
#define TROUPE__NONCE_LEN 32
#define TROUPE__NAME_MAX 63     /* system names (core keeps 64 bytes) */
#define TROUPE__ADDR_MAX 255    /* "host:port" */

typedef struct troupe__hello {
  uint16_t version;         /* framing and handshake: TROUPE__TCP_PROTO */
  uint16_t protocol;        /* the remoting protocol spoken over it */
  uint64_t incarnation;     /* random per system start */
  uint8_t nonce[TROUPE__NONCE_LEN];
  char name[TROUPE__NAME_MAX + 1];
  char addr[TROUPE__ADDR_MAX + 1];
  uint8_t mac[TROUPE__SHA256_LEN];   /* HANDSHAKE_ACK only */
} troupe__hello;

/* Encode a hello (with the MAC when with_mac). Errors: TROUPE_EINVAL
 * (bad name or address), TROUPE_ENOMEM. */
int troupe__hello_encode(const troupe__hello *h, bool with_mac,
                         troupe_buf *out);
/* Decode a hello body. Errors: TROUPE_EPROTO (malformed). A newer
 * protocol version decodes (the caller refuses it with a reason). */
int troupe__hello_decode(const uint8_t *p, size_t n, bool with_mac,
                         troupe__hello *h);
/* The proof of role 'C' or 'S' over a client and a server hello. */
void troupe__hello_mac(const uint8_t *secret, size_t secret_len, char role,
                       const troupe__hello *client,
                       const troupe__hello *server,
                       uint8_t out[TROUPE__SHA256_LEN]);

/* A refusal: u16 code (a TROUPE_E* value, negated) + reason text. */
int troupe__refusal_encode(int code, const char *reason, troupe_buf *out);
int troupe__refusal_decode(const uint8_t *p, size_t n, int *code,
                           char *reason, size_t size);

/* "host:port", "[v6]:port" (port 0..65535; 0 only means something to
 * listen). host gets the host without brackets. Errors: TROUPE_EINVAL,
 * TROUPE_ETOOBIG (host_size too small). */
int troupe__addr_parse(const char *addr, char *host, size_t host_size,
                       int *port);
/* Is this a system name the handshake carries (1..63 printable bytes, no
 * '@', '/', ':' or space)? */
bool troupe__hs_name_valid(const char *name, size_t len);

#endif
