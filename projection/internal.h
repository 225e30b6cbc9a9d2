/*
 * projection/internal.h: internals of the projections module (prefix
 * pj_). Not installed.
 *
 * Shape: an offset store (troupe_offset_store) is a backend behind a
 * vtable (memory.c / offsets_rocksdb.c / offsets_pg.c). Per projection
 * instance it keeps two records:
 *
 *   row  written only by the running worker: committed offset, applied
 *        request number, published status (state, lag, skipped, error)
 *   ctl  written only by management requests: paused flag, request
 *        number, request kind and offset
 *
 * so a worker's commit never overwrites a pause from another process.
 * A worker talks to its store through a session (PostgreSQL: its own
 * connection) that also runs the exactly-once transactions.
 */
#ifndef TROUPE_PROJECTION_INTERNAL_H
#define TROUPE_PROJECTION_INTERNAL_H

#include "core/internal.h"
#include "troupe/projection.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct pj_store pj_store;
typedef struct pj_session pj_session;

typedef struct pj_row {
  uint64_t offset;
  uint64_t ack_seq;        /* last request applied */
  int state;               /* troupe_projection_state */
  uint64_t skipped;
  uint64_t lag_events;
  int64_t lag_ms;
  int64_t updated_ms;
  char source[300];
  char last_error[200];
} pj_row;

typedef struct pj_ctl {
  int paused;
  uint64_t req_seq;
  int req_kind;            /* TROUPE_PROJECTION_REWIND / _RESET */
  uint64_t req_offset;
} pj_ctl;

typedef struct pj_store_vt {
  const char *name;
  int (*open)(const char *path, pj_store **out);
  void (*close)(pj_store *s);
  /* Read both records; TROUPE_ENOENT when neither exists (then both are
   * zeroed). */
  int (*get)(pj_store *s, const char *name, pj_row *row, pj_ctl *ctl);
  /* Every instance name: heap array of heap strings. */
  int (*list)(pj_store *s, char ***names, size_t *n);
  /* Management: pause/resume set ctl.paused; rewind/reset bump req_seq. */
  int (*request)(pj_store *s, const char *name, int op, uint64_t offset);

  int (*session_open)(pj_store *s, pj_session **out);
  void (*session_close)(pj_session *ss);
  /* As get, through the session (the worker's view). */
  int (*load)(pj_session *ss, const char *name, pj_row *row, pj_ctl *ctl);
  /* Start a transaction. check: fail with TROUPE_ECONFLICT unless the
   * stored offset is `expect` (someone else moved it: reload). */
  int (*begin)(pj_session *ss, const char *name, int check, uint64_t expect);
  /* Write the row in the transaction and commit it. */
  int (*commit)(pj_session *ss, const char *name, const pj_row *row);
  void (*abort)(pj_session *ss);
  /* Write the status part of the row only (not offset, not ack). */
  int (*publish)(pj_session *ss, const char *name, const pj_row *row);
} pj_store_vt;

struct pj_store {
  const pj_store_vt *vt;
  char *spec;
  int kind;                /* PJ_MEMORY, PJ_ROCKSDB, PJ_PG */
};

enum { PJ_MEMORY = 1, PJ_ROCKSDB = 2, PJ_PG = 3 };

struct troupe_offset_store { pj_store *s; };

/* What a session lends to a handler. */
struct pj_session {
  pj_store *store;
  struct pg_conn *conn;                 /* PG */
  struct rocksdb_writebatch_t *wb;      /* RocksDB, during a transaction */
  struct rocksdb_t *db;                 /* RocksDB */
};

extern const pj_store_vt pj_memory_vt, pj_rocksdb_vt, pj_pg_vt;

int pj_valid_name(const char *name, size_t max);
int64_t pj_now_ms(void);

/* Split a PostgreSQL spec ("postgresql://…?schema=x", "pg:k=v schema=x")
 * into a libpq conninfo (heap) and a schema name. */
int pj_pg_split_spec(const char *spec, char **conninfo, char schema[64]);

/* Row/ctl records as bytes (RocksDB values, memory copies). */
size_t pj_row_encode(const pj_row *r, uint8_t *buf, size_t cap);
int pj_row_decode(const uint8_t *p, size_t n, pj_row *r);
size_t pj_ctl_encode(const pj_ctl *c, uint8_t *buf);
int pj_ctl_decode(const uint8_t *p, size_t n, pj_ctl *c);

/* Apply a management op to a ctl record. */
void pj_ctl_apply(pj_ctl *c, int op, uint64_t offset);

/* Test hook: called by the worker at named points of the commit path
 * ("before-commit": the handler's writes are done, the transaction is
 * not committed; "after-commit"). A non-zero return fails the commit at
 * that point (as a storage error). Tests set it; NULL otherwise. */
extern int (*pj_test_fault)(const char *where, uint64_t offset);

#endif
