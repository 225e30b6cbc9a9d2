/*
 * troupe/error.h: error codes.
 *
 * Every troupe call that can fail returns 0 on success or a negative
 * TROUPE_E* code. When a call that takes a callback returns an error, the
 * callback never runs. Calls that fail because of a backend (RocksDB,
 * libpq, the OS) keep the backend's own words: troupe_errmsg() returns the
 * detail of the last failure on the calling thread.
 */
#ifndef TROUPE_ERROR_H
#define TROUPE_ERROR_H

#include "troupe/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) */
#define TROUPE_ERRNO_MAP(X)                                                  \
  X(EINVAL,      -1,  "invalid argument")                                    \
  X(ENOMEM,      -2,  "out of memory")                                       \
  X(ENOENT,      -3,  "no such actor, type or record")                       \
  X(EEXIST,      -4,  "already exists")                                      \
  X(ETIMEDOUT,   -5,  "timed out")                                           \
  X(ECLOSED,     -6,  "system, store or connection is closed")               \
  X(EFULL,       -7,  "mailbox or queue is full")                            \
  X(ESTASHFULL,  -8,  "stash capacity exceeded")                             \
  X(EWRONGTHREAD,-9,  "call made from a thread that does not own the object")\
  X(ESTATE,      -10, "operation not allowed in the current state")          \
  X(ECONFLICT,   -11, "sequence number or revision conflict")                \
  X(EDECODE,     -12, "malformed or undecodable data")                       \
  X(ECORRUPT,    -13, "stored data is corrupt")                              \
  X(ETYPE,       -14, "unknown type or wrong type")                          \
  X(ETOOBIG,     -15, "value exceeds a size limit")                          \
  X(EIO,         -16, "input/output or storage error")                       \
  X(ESCHEMA,     -17, "storage schema version mismatch")                     \
  X(EPROTO,      -18, "protocol error")                                      \
  X(EAUTH,       -19, "authentication failed")                               \
  X(ECONNREFUSED,-20, "connection refused")                                  \
  X(ECONNLOST,   -21, "connection lost")                                     \
  X(EUNSUPPORTED,-22, "operation not supported")                             \
  X(ERANGE,      -23, "value out of range")                                  \
  X(EBUSY,       -24, "resource busy")                                       \
  X(EFAILED,     -25, "actor failed")                                        \
  X(ESTOPPED,    -26, "actor stopped")                                       \
  X(ECANCELED,   -27, "operation canceled")                                  \
  X(EUNKNOWN,    -28, "outcome unknown")

typedef enum troupe_errno {
#define TROUPE__ERR_ENUM(name, val, msg) TROUPE_##name = (val),
  TROUPE_ERRNO_MAP(TROUPE__ERR_ENUM)
#undef TROUPE__ERR_ENUM
  TROUPE__ERR_MIN = -29
} troupe_errno;

/* A readable message for an error code ("unknown error" for others).
 * Never NULL; the string is static. Any thread. */
TROUPE_EXTERN const char *troupe_strerror(int err);
/* The code's name ("TROUPE_EINVAL"), or "UNKNOWN". Any thread. */
TROUPE_EXTERN const char *troupe_err_name(int err);
/* Detail text of the last failure reported on the calling thread (for
 * example RocksDB's or libpq's own message, or which argument was invalid).
 * Empty string when there is none. Valid until the next troupe call on
 * this thread. */
TROUPE_EXTERN const char *troupe_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif
