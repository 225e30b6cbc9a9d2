/* pg.c: the PostgreSQL backend ("postgresql://…", "postgres://…" URIs and
 * "pg:" + a libpq key=value string), through libpq.
 *
 * Connections: a small pool per store. One connection thread owns the
 * write connection and executes the writes in submission order; reads go
 * to reader_threads reader threads (default 2), each with a connection of
 * its own opened at its first read, so a read sees what was committed
 * when it runs. Consecutive writes taken from the queue form one group
 * committed in ONE transaction, in two pipelined round trips, through
 * statements prepared once per session:
 *   1. BEGIN; create the head rows of streams an append starts (expected
 *      head 0); then either (optimistic: appends, no deletes) the checks
 *      run here against the heads the appends expect and one UPDATE moves
 *      every head from its expected value to its new one, or (otherwise,
 *      and when an expectation was wrong) lock the heads the group
 *      appends to or deletes from (SELECT … FOR UPDATE, id order); lock
 *      the offset counter; lock the durable-state rows the group touches.
 *   2. With locks, the checks run here, op by op (an append whose
 *      expected seq is not the head fails alone with TROUPE_ECONFLICT and
 *      the actual head). The survivors' statements (one INSERT of every
 *      event from column arrays, their event_tags rows, head updates,
 *      snapshot and state statements, the new offset counter), the
 *      group's token in `writers`, pg_notify('troupe_events_<schema>',
 *      last offset) when it appended, and COMMIT are sent as one
 *      pipeline.
 * A storage error fails every op of the group (nothing is committed); a
 * deadlock or serialization failure runs it again with locks.
 *
 * Offsets come from a counter row (meta.last_offset) locked by the
 * writing transaction until it commits: they are gap-free and assigned in
 * commit order across every process writing to the schema, so a reader
 * continuing by tag or by slice from the last offset it saw never skips a
 * late commit. Each event also records its writing transaction (xid8).
 *
 * Reads: paged replay, by-tag and by-slice run in one REPEATABLE READ
 * READ ONLY transaction (one consistent view), one keyset query per page;
 * by_tag walks event_tags (tag, offset); a narrow slice range walks the
 * (slice, ordering) index slice by slice.
 *
 * Schema: an ordered table of migration steps (pg_steps); opening checks
 * the version, migrate applies the missing steps, one transaction each.
 *
 * Connection loss: the thread reconnects with backoff (20 ms doubling to
 * 1 s, 10 s per op). A group cut before its COMMIT is run again; one cut
 * after it is resolved by reading its random token back from this store's
 * row in `writers`: committed → reported once, else run again. Reads are
 * run again unless a page was delivered. Only when the budget runs out do
 * ops fail with TROUPE_ECONNLOST; later ops then try once each. */
#include "journal/internal.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#define PG_MAX_GROUP 4096         /* write ops per transaction */
#define PG_ROWS_PER_INSERT 8192   /* events per INSERT statement */

enum { OID_BYTEA = 17, OID_INT8 = 20, OID_INT4 = 23, OID_TEXT = 25,
       OID_BYTEA_ARR = 1001, OID_INT4_ARR = 1007, OID_TEXT_ARR = 1009,
       OID_INT8_ARR = 1016 };

struct pg_store;

/* One connection and what its thread knows about it. */
typedef struct pg_conn {
  struct pg_store *s;
  PGconn *conn;                   /* NULL until a reader's first op */
  int down;                       /* reconnecting failed: no backoff */
  int broken;                     /* lost though PQstatus may say OK */
  int prepared;                   /* the write statements, this session */
} pg_conn;

#define PG_MAX_READERS 8

typedef struct pg_store {
  jnl_store base;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;               /* the connection thread waits here */
  pthread_cond_t rcv;              /* readers wait here */
  jnl_op *head, **tail;           /* writes */
  jnl_op *rhead, **rtail;         /* reads, taken by any reader */
  int stop;
  char *conninfo;
  /* the connection thread (writes) only */
  pg_conn w;
  uint64_t writer, token;         /* this store's row in writers; last token */
  /* reader threads: a small pool of connections of their own */
  pthread_t readers[PG_MAX_READERS];
  pg_conn rc[PG_MAX_READERS];
  int nreaders;
  char schema[64];
  char channel[80];               /* NOTIFY channel: troupe_events_<schema> */
  char q_events[80], q_heads[80], q_meta[80], q_snaps[80], q_state[80],
      q_writers[80], q_tags[80];
} pg_store;

/* --- errors --------------------------------------------------------------- */

static const char *trim_msg(const char *m, char *buf, size_t n) {
  snprintf(buf, n, "%s", m ? m : "");
  size_t l = strlen(buf);
  while (l && (buf[l - 1] == '\n' || buf[l - 1] == ' ')) buf[--l] = 0;
  return buf;
}

/* The troupe code for a failed result (or a connection failure). */
static int pg_code(PGconn *c, const PGresult *r) {
  if (!c || PQstatus(c) == CONNECTION_BAD) return TROUPE_ECONNLOST;
  const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if (!st) {
    /* libpq's own errors carry no SQLSTATE; a lost socket can show up
     * here before PQstatus says CONNECTION_BAD (pipeline mode) */
    const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
    if (!r || (m && (strstr(m, "server closed") || strstr(m, "connection") ||
                     strstr(m, "could not receive") ||
                     strstr(m, "could not send") || strstr(m, "EOF"))))
      return TROUPE_ECONNLOST;
    return TROUPE_EIO;
  }
  if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0)
    return TROUPE_ECONNLOST;
  if (strncmp(st, "28", 2) == 0 || strcmp(st, "42501") == 0)
    return TROUPE_EAUTH;
  if (strcmp(st, "23505") == 0 || strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 ||
      strcmp(st, "55P03") == 0)
    return TROUPE_EBUSY;
  if (strcmp(st, "42P01") == 0 || strcmp(st, "3F000") == 0 ||
      strcmp(st, "42703") == 0)
    return TROUPE_ESCHEMA;
  if (strncmp(st, "22", 2) == 0) return TROUPE_EINVAL;
  return TROUPE_EIO;
}

static const char *pg_msg(PGconn *c, const PGresult *r, char *buf, size_t n) {
  const char *m = r ? PQresultErrorMessage(r) : NULL;
  if (!m || !*m) m = c ? PQerrorMessage(c) : "no connection";
  return trim_msg(m, buf, n);
}

/* --- parameters (all binary) ---------------------------------------------- */

typedef struct pg_params {
  int n, cap;
  Oid *types;
  size_t *off;                   /* into data; SIZE_MAX = NULL */
  int *len, *fmt;
  const char **val;
  uint8_t *data;
  size_t used, dcap;
} pg_params;

static void pp_reset(pg_params *p) { p->n = 0; p->used = 0; }

static void pp_free(pg_params *p) {
  free(p->types); free(p->off); free(p->len); free(p->fmt); free(p->val);
  free(p->data);
  memset(p, 0, sizeof *p);
}

static int pp_add(pg_params *p, Oid type, const void *v, size_t len) {
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 16;
    Oid *t = realloc(p->types, cap * sizeof *t);
    if (t) p->types = t;
    size_t *o = realloc(p->off, cap * sizeof *o);
    if (o) p->off = o;
    int *l = realloc(p->len, cap * sizeof *l);
    if (l) p->len = l;
    int *f = realloc(p->fmt, cap * sizeof *f);
    if (f) p->fmt = f;
    const char **vv = realloc(p->val, cap * sizeof *vv);
    if (vv) p->val = vv;
    if (!t || !o || !l || !f || !vv) return TROUPE_ENOMEM;
    p->cap = cap;
  }
  if (p->dcap - p->used < len || !p->data) {
    size_t cap = p->dcap ? p->dcap : 4096;
    while (cap - p->used < len) cap *= 2;
    uint8_t *d = realloc(p->data, cap);
    if (!d) return TROUPE_ENOMEM;
    p->data = d;
    p->dcap = cap;
  }
  if (len) memcpy(p->data + p->used, v, len);
  p->types[p->n] = type;
  p->off[p->n] = p->used;
  p->len[p->n] = (int)len;
  p->fmt[p->n] = 1;
  p->used += len;
  p->n++;
  return 0;
}

static int pp_i64(pg_params *p, int64_t v) {
  uint8_t b[8];
  jnl_be64(b, (uint64_t)v);
  return pp_add(p, OID_INT8, b, 8);
}
static int pp_u64(pg_params *p, uint64_t v) {     /* clamped to INT64_MAX */
  return pp_i64(p, v > INT64_MAX ? INT64_MAX : (int64_t)v);
}
static int pp_i32(pg_params *p, int32_t v) {
  uint8_t b[4];
  jnl_be32(b, (uint32_t)v);
  return pp_add(p, OID_INT4, b, 4);
}
static int pp_text(pg_params *p, const char *s, size_t len) {
  return pp_add(p, OID_TEXT, s, len);
}
static int pp_bytea(pg_params *p, const void *v, size_t len) {
  return pp_add(p, OID_BYTEA, v, len);
}

/* A one-dimensional array parameter in the binary format, built element
 * by element: a 20-byte header (dimensions, null flag, element type,
 * length, lower bound) then each element as a length and its bytes. */
typedef struct pg_arr {
  uint8_t *b;
  size_t len, cap;
  uint32_t n;
} pg_arr;

static int arr_put(pg_arr *a, const void *v, size_t len) {
  if (!a->b || a->cap - a->len < 4 + len) {
    size_t used = a->b ? a->len : 20;
    size_t cap = a->cap ? a->cap : 1024;
    while (cap - used < 4 + len) cap *= 2;
    uint8_t *b = realloc(a->b, cap);
    if (!b) return TROUPE_ENOMEM;
    a->b = b;
    a->cap = cap;
    a->len = used;
  }
  jnl_be32(a->b + a->len, (uint32_t)len);
  if (len) memcpy(a->b + a->len + 4, v, len);
  a->len += 4 + len;
  a->n++;
  return 0;
}

static int arr_i64(pg_arr *a, int64_t v) {
  uint8_t b[8];
  jnl_be64(b, (uint64_t)v);
  return arr_put(a, b, 8);
}

static int arr_u64(pg_arr *a, uint64_t v) {      /* clamped to INT64_MAX */
  return arr_i64(a, v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static int arr_i32(pg_arr *a, int32_t v) {
  uint8_t b[4];
  jnl_be32(b, (uint32_t)v);
  return arr_put(a, b, 4);
}

static void arr_reset(pg_arr *a) { a->len = 20; a->n = 0; }

static void arr_free(pg_arr *a) { free(a->b); memset(a, 0, sizeof *a); }

/* Add `a` (elements of type `elem`) as a parameter of type `type`; an
 * empty array has no dimensions. */
static int pp_arr(pg_params *p, pg_arr *a, Oid type, Oid elem) {
  uint8_t h[12];
  if (a->n == 0) {
    jnl_be32(h, 0); jnl_be32(h + 4, 0); jnl_be32(h + 8, elem);
    return pp_add(p, type, h, 12);
  }
  jnl_be32(a->b, 1); jnl_be32(a->b + 4, 0); jnl_be32(a->b + 8, elem);
  jnl_be32(a->b + 12, a->n); jnl_be32(a->b + 16, 1);
  return pp_add(p, type, a->b, a->len);
}

static int pp_send(PGconn *c, const char *sql, pg_params *p) {
  for (int i = 0; i < p->n; i++) p->val[i] = (const char *)p->data + p->off[i];
  return PQsendQueryParams(c, sql, p->n, p->types, p->val, p->len, p->fmt, 1)
             ? 0 : -1;
}

static int pp_send_prepared(PGconn *c, const char *name, pg_params *p) {
  for (int i = 0; i < p->n; i++) p->val[i] = (const char *)p->data + p->off[i];
  return PQsendQueryPrepared(c, name, p->n, p->val, p->len, p->fmt, 1) ? 0
                                                                       : -1;
}

static PGresult *pp_exec(PGconn *c, const char *sql, pg_params *p) {
  for (int i = 0; i < p->n; i++) p->val[i] = (const char *)p->data + p->off[i];
  return PQexecParams(c, sql, p->n, p->types, p->val, p->len, p->fmt, 1);
}

/* --- binary result helpers ------------------------------------------------ */

static int64_t col_i64(const PGresult *r, int row, int col) {
  return PQgetlength(r, row, col) == 8
             ? (int64_t)jnl_rd64((const uint8_t *)PQgetvalue(r, row, col)) : 0;
}
static int32_t col_i32(const PGresult *r, int row, int col) {
  return PQgetlength(r, row, col) == 4
             ? (int32_t)jnl_rd32((const uint8_t *)PQgetvalue(r, row, col)) : 0;
}

/* Decode a binary text[] into NUL-terminated copies at *arena (advanced);
 * tag pointers go to tagv. */
static int parse_tags(const uint8_t *p, size_t len, char **arena,
                      const char **tagv, size_t *ntags) {
  *ntags = 0;
  if (len < 12) return TROUPE_ECORRUPT;
  uint32_t ndim = jnl_rd32(p);
  if (ndim == 0) return 0;
  if (ndim != 1 || len < 20) return TROUPE_ECORRUPT;
  uint32_t n = jnl_rd32(p + 12);
  if (n > TROUPE_JOURNAL_MAX_TAGS) return TROUPE_ECORRUPT;
  size_t at = 20;
  for (uint32_t i = 0; i < n; i++) {
    if (len - at < 4) return TROUPE_ECORRUPT;
    uint32_t l = jnl_rd32(p + at);
    at += 4;
    if (l == UINT32_MAX || l > len - at) return TROUPE_ECORRUPT;
    memcpy(*arena, p + at, l);
    (*arena)[l] = 0;
    tagv[i] = *arena;
    *arena += l + 1;
    at += l;
  }
  *ntags = n;
  return 0;
}

/* --- connection ----------------------------------------------------------- */

#define PG_RETRY_MS 10000         /* reconnecting: budget of one op / group */
#define PG_BACKOFF_MIN_MS 20      /* first pause, doubled up to the max */
#define PG_BACKOFF_MAX_MS 1000

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void quiet(void *arg, const char *msg) { (void)arg; (void)msg; }

static int run_c(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
           PQresultStatus(r) == PGRES_TUPLES_OK;
  int rc = 0;
  if (!ok) {
    char buf[512];
    rc = troupe__err(pg_code(c, r), "postgresql: %s",
                     pg_msg(c, r, buf, sizeof buf));
  }
  PQclear(r);
  return rc;
}

static int run(pg_conn *c, const char *sql) { return run_c(c->conn, sql); }

/* End the current transaction without changing anything (errors are
 * moot: a lost connection has no transaction left). */
static void rollback(PGconn *c) {
  if (PQstatus(c) == CONNECTION_OK) PQclear(PQexec(c, "ROLLBACK"));
}

static int session_setup(pg_conn *c) {
  c->prepared = 0;                /* a new session has none */
  PQsetNoticeProcessor(c->conn, quiet, NULL);
  return run(c, c->s->base.opts.sync ? "SET synchronous_commit = on"
                                     : "SET synchronous_commit = off");
}

/* Open a libpq connection; on failure a troupe code with libpq's text
 * (*out is then NULL). */
static int connect_conninfo(const char *conninfo, PGconn **out) {
  *out = NULL;
  PGconn *c = PQconnectdb(conninfo);
  if (!c) return troupe__err(TROUPE_ENOMEM, "postgresql: connection");
  if (PQstatus(c) != CONNECTION_OK) {
    char buf[512];
    const char *m = trim_msg(PQerrorMessage(c), buf, sizeof buf);
    int code = strstr(m, "password") || strstr(m, "authentication")
                   ? TROUPE_EAUTH : TROUPE_ECONNREFUSED;
    int rc = troupe__err(code, "postgresql: cannot connect: %s", m);
    PQfinish(c);
    return rc;
  }
  PQsetNoticeProcessor(c, quiet, NULL);
  *out = c;
  return 0;
}

static int connect_db(pg_conn *c) {
  int rc = connect_conninfo(c->s->conninfo, &c->conn);
  return rc < 0 ? rc : session_setup(c);
}

/* Make sure the connection is up before an op or a group. A lost
 * connection is re-established with backoff (20 ms doubling to 1 s)
 * until `deadline`. When that fails the store is marked down: until a
 * reconnect succeeds, each later call tries once without pausing, so a
 * queue of ops fails fast with TROUPE_ECONNLOST instead of each one
 * waiting the whole budget, and the first op after the server is back
 * succeeds. */
static int ensure_conn(pg_conn *c, uint64_t deadline) {
  if (PQstatus(c->conn) == CONNECTION_OK && !c->broken) return 0;
  c->broken = 0;
  unsigned delay = PG_BACKOFF_MIN_MS;
  for (;;) {
    if (c->conn) PQreset(c->conn);
    else if (connect_conninfo(c->s->conninfo, &c->conn) < 0)
      c->conn = NULL;             /* a reader's first connection */
    if (PQstatus(c->conn) == CONNECTION_OK && session_setup(c) == 0) {
      c->down = 0;
      return 0;
    }
    if (c->down || now_ms() + delay > deadline) break;
    pause_ms(delay);
    delay = delay * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : delay * 2;
  }
  c->down = 1;
  char buf[512];
  return troupe__err(TROUPE_ECONNLOST, "postgresql: reconnect failed: %s",
                     trim_msg(c->conn ? PQerrorMessage(c->conn)
                                      : "cannot connect", buf, sizeof buf));
}

/* --- schema versions and migrations --------------------------------------
 *
 * The schema is built by an ordered list of steps; step i brings the
 * store from version i-1 to i. Each step runs in its own transaction under
 * the schema's advisory lock and records its row in troupe_schema_version
 * in that same transaction, so a migration interrupted anywhere resumes
 * at the first step not recorded. A new store (empty schema and
 * create_if_missing) runs every step in ONE transaction: two processes
 * creating the same store never see a half-built one. A step is never
 * edited once released; a change is a new step. "{S}" stands for the
 * quoted schema name. */
typedef struct pg_step {
  int version;
  const char *what;
  const char *sql;
} pg_step;

static const pg_step pg_steps[] = {
  {1, "initial schema: events, heads, snapshots, durable_state, the offset "
      "counter",
   "CREATE SCHEMA IF NOT EXISTS {S};"
   "CREATE TABLE IF NOT EXISTS {S}.troupe_schema_version ("
   " version int NOT NULL,"
   " installed_at timestamptz NOT NULL DEFAULT now());"
   "CREATE TABLE {S}.meta ("
   " id int PRIMARY KEY CHECK (id = 1), last_offset bigint NOT NULL);"
   "INSERT INTO {S}.meta VALUES (1, 0);"
   "CREATE TABLE {S}.events ("
   " persistence_id text COLLATE \"C\" NOT NULL,"
   " seq_nr bigint NOT NULL,"
   " ordering bigint NOT NULL,"
   " xid xid8 NOT NULL DEFAULT pg_current_xact_id(),"
   " manifest text NOT NULL,"
   " version int NOT NULL,"
   " payload bytea NOT NULL,"
   " writer_id bigint NOT NULL,"
   " ts bigint NOT NULL,"
   " tags text[] NOT NULL,"
   " slice int NOT NULL,"
   " PRIMARY KEY (persistence_id, seq_nr));"
   "CREATE UNIQUE INDEX events_ordering ON {S}.events (ordering);"
   "CREATE INDEX events_tags ON {S}.events USING gin (tags);"
   "CREATE TABLE {S}.heads ("
   " persistence_id text COLLATE \"C\" PRIMARY KEY,"
   " highest bigint NOT NULL, deleted_to bigint NOT NULL DEFAULT 0);"
   "CREATE TABLE {S}.snapshots ("
   " persistence_id text COLLATE \"C\" NOT NULL, seq_nr bigint NOT NULL,"
   " ts bigint NOT NULL, manifest text NOT NULL, version int NOT NULL,"
   " state bytea NOT NULL, PRIMARY KEY (persistence_id, seq_nr));"
   "CREATE TABLE {S}.durable_state ("
   " persistence_id text COLLATE \"C\" PRIMARY KEY,"
   " revision bigint NOT NULL, ts bigint NOT NULL, manifest text NOT NULL,"
   " version int NOT NULL, value bytea NOT NULL)"},
  /* by_slice walks (slice, ordering) one slice at a time; `writers`
   * holds the token of each store's last committed group, so a group
   * whose COMMIT reply was lost with the connection is resolved by
   * reading it back. The index build blocks writers for its duration
   * (CONCURRENTLY cannot run in a transaction): migrate offline. */
  {2, "index events (slice, ordering) for by_slice; table writers (last "
      "group token per store) to resolve commits cut by a lost connection",
   "CREATE INDEX events_slice ON {S}.events (slice, ordering);"
   "CREATE TABLE {S}.writers ("
   " writer bigint PRIMARY KEY, token bigint NOT NULL,"
   " at timestamptz NOT NULL DEFAULT now())"},
  /* Tags get a table of their own, one row per (tag, offset): by_tag
   * walks its primary key in offset order instead of scanning the GIN
   * index and sorting, and untagged events no longer pay a GIN insert.
   * events.tags stays: it is what reads return. */
  {3, "table event_tags (tag, offset) for by_tag, filled from events;"
      " drop the GIN index on events.tags",
   "CREATE TABLE {S}.event_tags ("
   " tag text COLLATE \"C\" NOT NULL, ordering bigint NOT NULL,"
   " PRIMARY KEY (tag, ordering));"
   "INSERT INTO {S}.event_tags SELECT DISTINCT t, e.ordering"
   " FROM {S}.events e, unnest(e.tags) AS t;"
   "DROP INDEX {S}.events_tags"},
};

#define PG_SCHEMA_VERSION ((int)(sizeof pg_steps / sizeof pg_steps[0]))

/* `sql` with every "{S}" replaced by the quoted schema name; heap. */
static char *expand(const char *sql, const char *schema) {
  size_t n = 0, sl = strlen(schema) + 2;
  for (const char *p = sql; (p = strstr(p, "{S}")); p += 3) n++;
  char *out = malloc(strlen(sql) + n * sl + 1), *o = out;
  if (!out) return NULL;
  for (const char *p = sql;;) {
    const char *q = strstr(p, "{S}");
    size_t k = q ? (size_t)(q - p) : strlen(p);
    memcpy(o, p, k);
    o += k;
    if (!q) break;
    o += sprintf(o, "\"%s\"", schema);
    p = q + 3;
  }
  *o = 0;
  return out;
}

/* Inside a transaction: take the schema's advisory lock (held to the end
 * of the transaction) and read its version: 0 for a missing or empty
 * schema, -1 for a schema holding tables but no troupe_schema_version
 * (not a troupe store). */
static int lock_and_read(PGconn *c, const char *schema, int *version) {
  pg_params p = {0};
  char buf[512], sql[200];
  int rc = 0;
  *version = 0;
  pp_text(&p, schema, strlen(schema));
  /* The lock first, in a statement of its own: under READ COMMITTED a
   * statement's snapshot is taken when it starts, so reading the catalog
   * in the statement that waited for the lock would miss a schema that
   * the previous holder created (two processes opening one new store). */
  PGresult *r = pp_exec(c,
      "SELECT pg_advisory_xact_lock(hashtext('troupe:' || $1::text))", &p);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = troupe__err(pg_code(c, r), "postgresql: %s",
                     pg_msg(c, r, buf, sizeof buf));
    goto out;
  }
  PQclear(r);
  r = pp_exec(c,
      "SELECT to_regclass(quote_ident($1::text) || '.troupe_schema_version')"
      " IS NOT NULL,"
      " (SELECT count(*) FROM pg_class c JOIN pg_namespace n"
      "  ON n.oid = c.relnamespace WHERE n.nspname = $1::text)", &p);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = troupe__err(pg_code(c, r), "postgresql: %s",
                     pg_msg(c, r, buf, sizeof buf));
    goto out;
  }
  int has_version = *PQgetvalue(r, 0, 0) != 0;
  int64_t nrel = col_i64(r, 0, 1);
  PQclear(r);
  r = NULL;
  if (!has_version) {
    *version = nrel > 0 ? -1 : 0;
    goto out;
  }
  snprintf(sql, sizeof sql,
           "SELECT max(version) FROM \"%s\".troupe_schema_version", schema);
  pp_reset(&p);
  r = pp_exec(c, sql, &p);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = troupe__err(pg_code(c, r), "postgresql: %s",
                     pg_msg(c, r, buf, sizeof buf));
    goto out;
  }
  /* a version table without valid rows: a creation that never committed
   * cannot leave one, so someone changed it; not ours to guess */
  *version = PQgetisnull(r, 0, 0) ? -1 : col_i32(r, 0, 0);
  if (*version < 1) *version = -1;
out:
  PQclear(r);
  pp_free(&p);
  return rc;
}

/* Run one step and record its version (inside the caller's
 * transaction). */
static int apply_step(PGconn *c, const char *schema, const pg_step *st) {
  char *sql = expand(st->sql, schema);
  if (!sql) return troupe__err(TROUPE_ENOMEM, "postgresql: migration");
  int rc = run_c(c, sql);
  free(sql);
  if (rc < 0) return rc;
  char rec[200];
  snprintf(rec, sizeof rec,
           "INSERT INTO \"%s\".troupe_schema_version (version) VALUES (%d)",
           schema, st->version);
  return run_c(c, rec);
}

static int err_foreign(const char *schema) {
  return troupe__err(TROUPE_ESCHEMA,
                     "postgresql schema \"%s\" holds tables but no "
                     "troupe_schema_version rows: not a troupe store (see "
                     "`troupe journal migrate`)", schema);
}

static int err_newer(const char *schema, int v) {
  return troupe__err(TROUPE_ESCHEMA,
                     "postgresql schema \"%s\" has version %d, newer than "
                     "this troupe's %d: upgrade troupe (`troupe journal "
                     "migrate` cannot go back)", schema, v,
                     PG_SCHEMA_VERSION);
}

/* At open: check the version (or, for an empty schema and
 * create_if_missing, create the store at the current version), and
 * forget the group tokens of stores gone for a week. */
static int check_schema(pg_store *s) {
  int rc, v = 0;
  if ((rc = run(&s->w, "BEGIN")) < 0) return rc;
  if ((rc = lock_and_read(s->w.conn, s->schema, &v)) < 0) goto out;
  if (v < 0) {
    rc = err_foreign(s->schema);
  } else if (v > PG_SCHEMA_VERSION) {
    rc = err_newer(s->schema, v);
  } else if (v > 0 && v < PG_SCHEMA_VERSION) {
    rc = troupe__err(TROUPE_ESCHEMA,
                     "postgresql schema \"%s\" has version %d, this troupe "
                     "uses %d: run `troupe journal migrate` (%d step%s)",
                     s->schema, v, PG_SCHEMA_VERSION, PG_SCHEMA_VERSION - v,
                     PG_SCHEMA_VERSION - v > 1 ? "s" : "");
  } else if (v == 0 && !s->base.opts.create_if_missing) {
    rc = troupe__err(TROUPE_ENOENT,
                     "postgresql schema \"%s\" has no troupe store "
                     "(create_if_missing is off)", s->schema);
  } else if (v == 0) {
    for (int i = 0; i < PG_SCHEMA_VERSION && rc == 0; i++)
      rc = apply_step(s->w.conn, s->schema, &pg_steps[i]);
  } else {
    char sql[200];
    snprintf(sql, sizeof sql,
             "DELETE FROM %s WHERE at < now() - interval '7 days'",
             s->q_writers);
    rc = run(&s->w, sql);
  }
out:
  if (rc == 0) return run(&s->w, "COMMIT");
  rollback(s->w.conn);
  return rc;
}

/* --- spec ---------------------------------------------------------------- */

/* At most 49 bytes: the NOTIFY channel "troupe_events_<schema>" must stay
 * under PostgreSQL's 64-byte identifier limit. */
#define PG_SCHEMA_MAX 49

static int valid_schema(const char *v, size_t n) {
  if (n == 0 || n > PG_SCHEMA_MAX) return 0;
  if (!(islower((unsigned char)v[0]) || v[0] == '_')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!(islower((unsigned char)v[i]) || isdigit((unsigned char)v[i]) ||
          v[i] == '_'))
      return 0;
  return 1;
}

/* Take "schema=NAME" out of the spec: a query parameter of a URI or a
 * key=value pair of a conninfo string. Writes the conninfo without it. */
int jnl_pg_split_spec(const char *path, char **conninfo, char *schema) {
  snprintf(schema, 64, "troupe");
  char *c = strdup(path);
  if (!c) return troupe__err(TROUPE_ENOMEM, "spec");
  int uri = strncmp(c, "postgresql://", 13) == 0 ||
            strncmp(c, "postgres://", 11) == 0;
  char *q = uri ? strchr(c, '?') : c;
  while (q && *q) {
    /* start of an item: after '?'/'&' (URI) or at start/after space */
    char *item = q;
    if (uri) item = q + 1;
    else while (*item == ' ' || *item == '\t') item++;
    char *end = item + strcspn(item, uri ? "&" : " \t");
    if (strncmp(item, "schema=", 7) == 0) {
      const char *v = item + 7;
      size_t n = (size_t)(end - v);
      if (!valid_schema(v, n)) {
        free(c);
        return troupe__err(TROUPE_EINVAL,
                           "postgresql spec: schema must be 1..49 of "
                           "[a-z0-9_], not starting with a digit");
      }
      memcpy(schema, v, n);
      schema[n] = 0;
      if (uri) {
        /* drop "?schema=…" / "&schema=…", keeping the separator for
         * what follows */
        if (*end == '&') memmove(item, end + 1, strlen(end + 1) + 1);
        else *q = 0;
      } else {
        memmove(item, end, strlen(end) + 1);
      }
      continue;
    }
    if (!*end) break;
    q = end;
    if (!uri) q++;
  }
  *conninfo = c;
  return 0;
}

/* --- schema status and migrate (their own connection) --------------------- */

static int admin_open(const char *path, PGconn **c, char *schema) {
  char *conninfo = NULL;
  *c = NULL;
  int rc = jnl_pg_split_spec(path, &conninfo, schema);
  if (rc == 0) rc = connect_conninfo(conninfo, c);
  free(conninfo);
  return rc;
}

/* Lock the schema and read its version in a transaction left open. */
static int admin_read(PGconn *c, const char *schema, int *v) {
  int rc = run_c(c, "BEGIN");
  if (rc == 0) rc = lock_and_read(c, schema, v);
  return rc;
}

static int pg_schema(const char *path, troupe_schema_status *out) {
  char schema[64];
  PGconn *c;
  int v = 0, rc = admin_open(path, &c, schema);
  if (rc == 0) rc = admin_read(c, schema, &v);
  if (rc == 0) {
    out->found = v > 0 ? v : 0;
    out->supported = PG_SCHEMA_VERSION;
    out->pending = v > 0 && v < PG_SCHEMA_VERSION ? PG_SCHEMA_VERSION - v : 0;
    if (v < 0) rc = err_foreign(schema);
    else if (v == 0)
      rc = troupe__err(TROUPE_ENOENT, "postgresql schema \"%s\" has no "
                       "troupe store", schema);
  }
  if (c) {
    rollback(c);
    PQfinish(c);
  }
  return rc;
}

static int pg_migrate(const char *path, int dry_run, troupe_migrate_cb cb,
                      void *data) {
  char schema[64];
  PGconn *c;
  int v = 0, done = 0, rc = admin_open(path, &c, schema);
  if (rc == 0) rc = admin_read(c, schema, &v);
  if (rc == 0) {
    if (v < 0) rc = err_foreign(schema);
    else if (v == 0)
      rc = troupe__err(TROUPE_ENOENT, "postgresql schema \"%s\" has no "
                       "troupe store (opening it with create_if_missing "
                       "creates a current one)", schema);
    else if (v > PG_SCHEMA_VERSION) rc = err_newer(schema, v);
  }
  if (c) rollback(c);
  for (int i = v; rc == 0 && i < PG_SCHEMA_VERSION; i++) {
    const pg_step *st = &pg_steps[i];
    if (dry_run) {
      if (cb) cb(st->version - 1, st->version, st->what, 1, data);
      done++;
      continue;
    }
    /* its own transaction; another migrator may have got here first */
    int cur = 0;
    if ((rc = admin_read(c, schema, &cur)) < 0) break;
    if (cur >= st->version) {
      rollback(c);
      continue;
    }
    if (cur != st->version - 1) {
      rollback(c);
      rc = troupe__err(TROUPE_ESCHEMA, "postgresql schema \"%s\": version "
                       "%d changed under the migration", schema, cur);
      break;
    }
    if ((rc = apply_step(c, schema, st)) == 0 &&
        (rc = run_c(c, "COMMIT")) == 0) {
      done++;
      if (cb) cb(st->version - 1, st->version, st->what, 0, data);
    } else {
      rollback(c);
    }
  }
  if (c) PQfinish(c);
  return rc < 0 ? rc : done;
}

/* Tests: create a store at an older schema version (see internal.h). */
int jnl_pg_create_version(const char *spec, int version) {
  if (!spec || version < 1 || version > PG_SCHEMA_VERSION)
    return troupe__err(TROUPE_EINVAL, "create_version: bad arguments");
  if (strncmp(spec, "pg:", 3) == 0) spec += 3;
  char schema[64];
  PGconn *c;
  int v = 0, rc = admin_open(spec, &c, schema);
  if (rc == 0) rc = admin_read(c, schema, &v);
  if (rc == 0 && v != 0)
    rc = troupe__err(TROUPE_EEXIST, "postgresql schema \"%s\" is not empty",
                     schema);
  for (int i = 0; rc == 0 && i < version; i++)
    rc = apply_step(c, schema, &pg_steps[i]);
  if (rc == 0) rc = run_c(c, "COMMIT");
  if (c) {
    if (rc < 0) rollback(c);
    PQfinish(c);
  }
  return rc;
}

/* --- reads ---------------------------------------------------------------- */

static void fail_res(pg_conn *c, jnl_op *op, PGresult *r, const char *what) {
  char buf[400];
  jnl_op_fail(op, pg_code(c->conn, r), "postgresql %s: %s", what,
              pg_msg(c->conn, r, buf, sizeof buf));
}

static PGresult *exec_ok(pg_conn *c, jnl_op *op, const char *sql,
                         pg_params *p, const char *what) {
  PGresult *r = pp_exec(c->conn, sql, p);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
  fail_res(c, op, r, what);
  PQclear(r);
  return NULL;
}

/* Reads of pages run in pipeline mode, each query followed by its own
 * sync. page_send sends one; page_result reads the oldest one in flight
 * up to its sync: its rows, or NULL with the op failed. */
static int page_send(pg_conn *c, const char *sql, pg_params *p) {
  return pp_send(c->conn, sql, p) == 0 && PQpipelineSync(c->conn) == 1
             ? 0 : -1;
}

static PGresult *page_result(pg_conn *c, jnl_op *op, const char *what) {
  PGresult *r = PQgetResult(c->conn);
  if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
    if (op) fail_res(c, op, r, what);
    PQclear(r);
    r = NULL;
  }
  /* the statement's end (a NULL), then its sync; a lost connection
   * returns NULLs only */
  for (int nulls = 0; nulls < 2;) {
    PGresult *t = PQgetResult(c->conn);
    if (!t) {
      nulls++;
      continue;
    }
    ExecStatusType st = PQresultStatus(t);
    PQclear(t);
    if (st == PGRES_PIPELINE_SYNC) return r;
  }
  if (r && op) fail_res(c, op, NULL, what);
  PQclear(r);
  return NULL;
}

static void r_highest(pg_conn *c, jnl_op *op, pg_params *p) {
  pg_store *s = c->s;
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT highest FROM %s WHERE persistence_id = $1",
           s->q_heads);
  pp_text(p, op->pid, op->pid_len);
  PGresult *r = exec_ok(c, op, sql, p, "highest");
  if (!r) return;
  op->r0 = PQntuples(r) ? (uint64_t)col_i64(r, 0, 0) : 0;
  PQclear(r);
}

/* A slice range at most this wide is read one slice at a time from the
 * (slice, ordering) index: each page costs at most width * (page + 1)
 * index entries. A wider one walks the ordering index and filters, about
 * page * 1024 / width rows a page; the two meet near 32. */
#define PG_SLICE_NARROW 32

/* Paged event reads (replay, by-tag, by-slice): one keyset query per page
 * inside one REPEATABLE READ transaction (one read view for the whole
 * op). Columns: pid, seq, ordering, manifest, version, payload, writer,
 * ts, tags. op->scratch is set once a page was delivered (the op can no
 * longer be retried after a lost connection). */
/* The parameters of one page query of r_events. */
static void page_params(const jnl_op *op, pg_params *p, uint64_t cursor,
                        uint64_t want, int32_t lo, int32_t hi) {
  if (op->kind == JNL_OP_BY_TAG) {
    pp_text(p, op->str, op->str_len);
    pp_u64(p, cursor);
  } else if (op->kind == JNL_OP_BY_SLICE) {
    pp_i32(p, lo);
    pp_i32(p, hi);
    pp_u64(p, cursor);
  } else {
    pp_text(p, op->pid, op->pid_len);
    pp_u64(p, cursor);
    pp_u64(p, op->b);
  }
  pp_i64(p, (int64_t)want + 1);           /* one row of lookahead */
}

static void r_events(pg_conn *c, jnl_op *op, pg_params *p) {
  pg_store *s = c->s;
  int tag = op->kind == JNL_OP_BY_TAG, slice = op->kind == JNL_OP_BY_SLICE;
  int by_offset = tag || slice;
  uint64_t max = by_offset ? op->b : op->c, got = 0;
  uint64_t page = s->base.opts.page_size;
  uint64_t cursor = op->a;          /* after offset / from seq */
  int32_t lo = (int32_t)(op->c >> 32), hi = (int32_t)(op->c & 0xffffffffu);
  int narrow = slice && hi - lo < PG_SLICE_NARROW;
  const char *what = tag ? "by_tag" : slice ? "by_slice" : "replay";
  char sql[900];
  if (tag)
    snprintf(sql, sizeof sql,
             "SELECT e.persistence_id, e.seq_nr, e.ordering, e.manifest,"
             " e.version, e.payload, e.writer_id, e.ts, e.tags"
             " FROM %s t JOIN %s e ON e.ordering = t.ordering"
             " WHERE t.tag = $1 AND t.ordering > $2"
             " ORDER BY t.ordering LIMIT $3", s->q_tags, s->q_events);
  else if (narrow)
    /* the first $4 offsets of each slice, merged, then their rows */
    snprintf(sql, sizeof sql,
             "SELECT e.persistence_id, e.seq_nr, e.ordering, e.manifest,"
             " e.version, e.payload, e.writer_id, e.ts, e.tags"
             " FROM (SELECT x.ordering FROM generate_series($1::int4,"
             " $2::int4) AS g(sl) CROSS JOIN LATERAL (SELECT ordering"
             " FROM %s WHERE slice = g.sl AND ordering > $3"
             " ORDER BY ordering LIMIT $4) x ORDER BY x.ordering LIMIT $4) o"
             " JOIN %s e ON e.ordering = o.ordering ORDER BY e.ordering",
             s->q_events, s->q_events);
  else if (slice)
    snprintf(sql, sizeof sql,
             "SELECT persistence_id, seq_nr, ordering, manifest, version,"
             " payload, writer_id, ts, tags FROM %s"
             " WHERE slice BETWEEN $1 AND $2 AND ordering > $3"
             " ORDER BY ordering LIMIT $4", s->q_events);
  else
    /* the id is the replay's own: not sent once a row */
    snprintf(sql, sizeof sql,
             "SELECT '', seq_nr, ordering, manifest, version,"
             " payload, writer_id, ts, tags FROM %s"
             " WHERE persistence_id = $1 AND seq_nr >= $2 AND seq_nr <= $3"
             " ORDER BY seq_nr LIMIT $4", s->q_events);
  /* A replay walks the primary key, by_tag the primary key of
   * event_tags, a wide by-slice the ordering index and a narrow one
   * (slice, ordering) with a LIMIT per slice: with
   * statistics that lag a fast growing table the planner would rather
   * bitmap-scan all the rest and sort it for every page. (The narrow
   * shape's final merge of width * (page+1) offsets still sorts: it has
   * no other plan.) */
  int brc = run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
                   "SET LOCAL enable_bitmapscan = off;"
                   "SET LOCAL enable_sort = off");
  if (brc < 0) {
    jnl_op_fail(op, brc, "%s", troupe_errmsg());
    return;
  }
  troupe_event *ev = malloc((page + 1) * sizeof *ev);
  const char **tagv = malloc((page + 1) * TROUPE_JOURNAL_MAX_TAGS *
                             sizeof *tagv);
  char *arena = NULL;
  size_t arena_cap = 0;
  int inflight = 0;
  if (!ev || !tagv) {
    jnl_op_fail(op, TROUPE_ENOMEM, "read page");
    goto out;
  }
  if (!PQenterPipelineMode(c->conn)) {
    fail_res(c, op, NULL, what);
    goto out;
  }
  /* A replay's seqs are contiguous, so its next page starts `want` on:
   * that query is sent before this page is decoded and delivered, and
   * the server reads it meanwhile. A wrong guess (the first page after
   * deleted events) is dropped and the page asked again. */
  uint64_t want = max && max - got < page ? max - got : page;
  uint64_t guess_cursor = 0, guess_want = 0;
  for (;;) {
    if (!inflight) {
      pp_reset(p);
      page_params(op, p, cursor, want, lo, hi);
      if (page_send(c, sql, p) < 0) {
        fail_res(c, op, NULL, what);
        goto out;
      }
      inflight = 1;
    }
    PGresult *r = page_result(c, op, what);
    inflight--;
    if (!r) goto out;
    int rows = PQntuples(r);
    if (!by_offset && rows > (int)want) {
      guess_cursor = cursor + want;
      guess_want = max && max - (got + want) < page ? max - (got + want)
                                                   : page;
      pp_reset(p);
      page_params(op, p, guess_cursor, guess_want, lo, hi);
      if (guess_want && page_send(c, sql, p) == 0) inflight++;
    }
    int n = rows > (int)want ? (int)want : rows;
    size_t need = 0;
    for (int i = 0; i < n; i++) need += (size_t)PQgetlength(r, i, 8);
    if (need > arena_cap) {
      char *a = realloc(arena, need);
      if (!a) {
        PQclear(r);
        jnl_op_fail(op, TROUPE_ENOMEM, "read page");
        goto out;
      }
      arena = a;
      arena_cap = need;
    }
    char *ap = arena;
    size_t nt = 0;
    for (int i = 0; i < n; i++) {
      troupe_event *e = &ev[i];
      e->persistence_id = by_offset ? PQgetvalue(r, i, 0) : op->pid;
      e->seq = (uint64_t)col_i64(r, i, 1);
      e->offset = (uint64_t)col_i64(r, i, 2);
      e->manifest = PQgetvalue(r, i, 3);
      e->version = (uint32_t)col_i32(r, i, 4);
      e->payload = PQgetvalue(r, i, 5);
      e->payload_len = (size_t)PQgetlength(r, i, 5);
      e->writer_id = (uint64_t)col_i64(r, i, 6);
      e->timestamp_ms = col_i64(r, i, 7);
      e->tags = tagv + nt;
      if (parse_tags((const uint8_t *)PQgetvalue(r, i, 8),
                     (size_t)PQgetlength(r, i, 8), &ap, tagv + nt,
                     &e->ntags) < 0) {
        jnl_op_fail(op, TROUPE_ECORRUPT, "postgresql: bad tags of \"%s\" seq %llu",
                    e->persistence_id, (unsigned long long)e->seq);
        PQclear(r);
        goto out;
      }
      nt += e->ntags;
    }
    got += (uint64_t)n;
    int done = rows <= (int)want || (max && got >= max);
    if (n) cursor = by_offset ? ev[n - 1].offset : ev[n - 1].seq + 1;
    op->scratch = 1;
    int stop = jnl_op_emit_events(op, ev, (size_t)n, done);
    PQclear(r);
    if (stop || done) break;
    want = max && max - got < page ? max - got : page;
    if (inflight && (cursor != guess_cursor || want != guess_want)) {
      PQclear(page_result(c, NULL, what));        /* a wrong guess */
      inflight--;
    }
  }
out:
  while (inflight-- > 0) PQclear(page_result(c, NULL, what));
  PQexitPipelineMode(c->conn);
  free(ev);
  free(tagv);
  free(arena);
  PQclear(PQexec(c->conn, "COMMIT"));
}

static void r_list_ids(pg_conn *c, jnl_op *op, pg_params *p) {
  pg_store *s = c->s;
  char sql[300];
  snprintf(sql, sizeof sql,
           "SELECT persistence_id FROM %s WHERE highest > 0 AND "
           "persistence_id > $1 ORDER BY persistence_id LIMIT $2", s->q_heads);
  pp_text(p, op->str, op->str_len);
  pp_u64(p, op->a);
  PGresult *r = exec_ok(c, op, sql, p, "list_ids");
  if (!r) return;
  int n = PQntuples(r);
  const char **ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
  if (!ids) {
    jnl_op_fail(op, TROUPE_ENOMEM, "list_ids");
  } else {
    for (int i = 0; i < n; i++) ids[i] = PQgetvalue(r, i, 0);
    jnl_op_emit_ids(op, ids, (size_t)n);
  }
  free(ids);
  PQclear(r);
}

static void r_snap_load(pg_conn *c, jnl_op *op, pg_params *p) {
  pg_store *s = c->s;
  char sql[400];
  snprintf(sql, sizeof sql,
           "SELECT seq_nr, ts, manifest, version, state FROM %s"
           " WHERE persistence_id = $1 AND seq_nr BETWEEN $2 AND $3"
           " AND ts BETWEEN $4 AND $5 ORDER BY seq_nr DESC LIMIT 1",
           s->q_snaps);
  pp_text(p, op->pid, op->pid_len);
  pp_u64(p, op->a);
  pp_u64(p, op->b);
  pp_i64(p, op->t0);
  pp_i64(p, op->t1);
  PGresult *r = exec_ok(c, op, sql, p, "snapshot load");
  if (!r) return;
  if (PQntuples(r)) {
    troupe_snapshot sn;
    sn.persistence_id = op->pid;
    sn.seq = (uint64_t)col_i64(r, 0, 0);
    sn.timestamp_ms = col_i64(r, 0, 1);
    sn.manifest = PQgetvalue(r, 0, 2);
    sn.version = (uint32_t)col_i32(r, 0, 3);
    sn.state = PQgetvalue(r, 0, 4);
    sn.state_len = (size_t)PQgetlength(r, 0, 4);
    jnl_op_emit_snapshot(op, &sn);
  }
  PQclear(r);
}

static void r_state_get(pg_conn *c, jnl_op *op, pg_params *p) {
  pg_store *s = c->s;
  char sql[300];
  snprintf(sql, sizeof sql,
           "SELECT revision, ts, manifest, version, value FROM %s"
           " WHERE persistence_id = $1", s->q_state);
  pp_text(p, op->pid, op->pid_len);
  PGresult *r = exec_ok(c, op, sql, p, "state get");
  if (!r) return;
  if (PQntuples(r)) {
    troupe_state_record rec;
    rec.persistence_id = op->pid;
    rec.revision = (uint64_t)col_i64(r, 0, 0);
    rec.timestamp_ms = col_i64(r, 0, 1);
    rec.manifest = PQgetvalue(r, 0, 2);
    rec.version = (uint32_t)col_i32(r, 0, 3);
    rec.value = PQgetvalue(r, 0, 4);
    rec.value_len = (size_t)PQgetlength(r, 0, 4);
    jnl_op_emit_state(op, &rec);
  }
  PQclear(r);
}

/* A read that lost its connection before delivering anything is run
 * again on a new one (within the reconnect budget); one that delivered a
 * page fails with TROUPE_ECONNLOST (its reader continues from what it
 * saw). */
static void do_read(pg_conn *c, jnl_op *op) {
  pg_params p = {0};
  uint64_t deadline = now_ms() + PG_RETRY_MS;
  for (;;) {
    int rc = ensure_conn(c, deadline);
    if (rc < 0) {
      jnl_op_fail(op, rc, "%s", troupe_errmsg());
      break;
    }
    jnl_op_fail(op, 0, NULL);
    pp_reset(&p);
    switch (op->kind) {
    case JNL_OP_HIGHEST: r_highest(c, op, &p); break;
    case JNL_OP_REPLAY:
    case JNL_OP_BY_TAG:
    case JNL_OP_BY_SLICE: r_events(c, op, &p); break;
    case JNL_OP_LIST_IDS: r_list_ids(c, op, &p); break;
    case JNL_OP_SNAP_LOAD: r_snap_load(c, op, &p); break;
    case JNL_OP_STATE_GET: r_state_get(c, op, &p); break;
    }
    if (op->status != TROUPE_ECONNLOST) break;
    c->broken = 1;                /* reset even if libpq has not noticed */
    if (op->scratch || op->finished || now_ms() >= deadline) break;
  }
  pp_free(&p);
  jnl_op_complete(op);
}

/* --- writes ---------------------------------------------------------------- */

/* Per-id state of a group: the locked head (journal) or revision (state). */
typedef struct pg_key {
  uint64_t head, deleted_to, rev;
  uint64_t assumed;               /* optimistic: the head the group expects */
  int has_head, has_rev, head_dirty;
  char name[];
} pg_key;

typedef struct pg_group {
  jnl_op **ops;
  size_t n;
  jnl_hmap keys;
  pg_key **all;
  size_t nall, allcap;
} pg_group;

static pg_key *gkey(pg_group *g, const char *pid, size_t len) {
  uint64_t h = jnl_hash(pid, len);
  pg_key *k = jnl_hmap_get(&g->keys, pid, len, h);
  if (k) return k;
  if (g->nall == g->allcap) {
    size_t cap = g->allcap ? g->allcap * 2 : 32;
    pg_key **a = realloc(g->all, cap * sizeof *a);
    if (!a) return NULL;
    g->all = a;
    g->allcap = cap;
  }
  k = calloc(1, sizeof *k + len + 1);
  if (!k) return NULL;
  memcpy(k->name, pid, len);
  if (jnl_hmap_put(&g->keys, k->name, len, h, k) < 0) {
    free(k);
    return NULL;
  }
  g->all[g->nall++] = k;
  return k;
}

static void group_free(pg_group *g) {
  for (size_t i = 0; i < g->nall; i++) free(g->all[i]);
  free(g->all);
  jnl_hmap_free(&g->keys);
  free(g->ops);
}

static void conflict(jnl_op *op, uint64_t actual, const char *what) {
  op->r0 = actual;
  jnl_op_fail(op, TROUPE_ECONFLICT, "%s of \"%s\": expected %llu, is %llu",
              what, op->pid, (unsigned long long)op->a,
              (unsigned long long)actual);
}

/* Collect ids as a text[] parameter: of the state ops (state), of the
 * appends that may start a stream (fresh: expected head 0; a stream with
 * events has its head row already), or of every append and delete. *n is
 * how many (with repeats). */
static int ids_param(pg_group *g, pg_params *p, int state, int fresh,
                     size_t *n) {
  pg_arr a = {0};
  int rc = 0;
  *n = 0;
  for (size_t i = 0; i < g->n && rc == 0; i++) {
    jnl_op *op = g->ops[i];
    int want = state ? (op->kind == JNL_OP_STATE_PUT ||
                        op->kind == JNL_OP_STATE_DELETE)
               : fresh ? op->kind == JNL_OP_APPEND && op->a == 0
                       : (op->kind == JNL_OP_APPEND ||
                          op->kind == JNL_OP_DELETE);
    if (want) rc = arr_put(&a, op->pid, op->pid_len);
  }
  if (rc == 0) rc = pp_arr(p, &a, OID_TEXT_ARR, OID_TEXT);
  *n = a.n;
  arr_free(&a);
  return rc;
}

static int key_cmp(const void *a, const void *b) {
  return strcmp((*(pg_key *const *)a)->name, (*(pg_key *const *)b)->name);
}

/* Optimistic groups: check the appends against the heads they expect,
 * in submission order, before anything is read: the first append of an
 * id fixes the head the group assumes for it. PS_HEADS_CAS then moves
 * each head from the assumed value to the new one in one statement, and
 * the group is run again with locks (pessimistic) unless every
 * assumption held. */
static int assume_heads(pg_group *g) {
  for (size_t i = 0; i < g->n; i++) {
    jnl_op *op = g->ops[i];
    if (op->kind != JNL_OP_APPEND) continue;
    pg_key *k = gkey(g, op->pid, op->pid_len);
    if (!k) return TROUPE_ENOMEM;
    if (!k->has_head) {
      k->head = k->assumed = op->a;
      k->has_head = 1;
    }
    if (k->head != op->a) {
      conflict(op, k->head, "append");
      continue;
    }
    k->head = op->a + op->n;
    k->head_dirty = 1;
    op->r0 = k->head;
  }
  return 0;
}

/* The heads the group moves, sorted by id (the order rows are locked
 * in, as far as the plan follows it), as PS_HEADS_CAS's parameters. */
static int cas_params(pg_group *g, pg_params *p, size_t *n) {
  pg_key **v = malloc((g->nall + 1) * sizeof *v);
  if (!v) return TROUPE_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < g->nall; i++)
    if (g->all[i]->head_dirty) v[k++] = g->all[i];
  qsort(v, k, sizeof *v, key_cmp);
  pg_arr ids = {0}, lo = {0}, hi = {0};
  int rc = 0;
  for (size_t i = 0; i < k && rc == 0; i++)
    if ((rc = arr_put(&ids, v[i]->name, strlen(v[i]->name))) == 0 &&
        (rc = arr_u64(&lo, v[i]->assumed)) == 0)
      rc = arr_u64(&hi, v[i]->head);
  if (rc == 0 && (rc = pp_arr(p, &ids, OID_TEXT_ARR, OID_TEXT)) == 0 &&
      (rc = pp_arr(p, &lo, OID_INT8_ARR, OID_INT8)) == 0)
    rc = pp_arr(p, &hi, OID_INT8_ARR, OID_INT8);
  arr_free(&ids);
  arr_free(&lo);
  arr_free(&hi);
  free(v);
  *n = k;
  return rc;
}

/* Drain the results of a pipeline up to its sync. Each statement's
 * result goes to `res` (NULL to drop); returns the first error code
 * (message in *err) or 0. */
static int drain(pg_store *s, PGresult **res, int nres, char *err,
                 size_t errn) {
  int rc = 0, i = 0, nulls = 0;
  for (;;) {
    PGresult *r = PQgetResult(s->w.conn);
    if (!r) {
      /* one NULL ends each statement's results; two in a row mean the
       * sync will not come (the connection failed) */
      if (PQstatus(s->w.conn) == CONNECTION_BAD || ++nulls > 1) {
        if (!rc) {
          rc = TROUPE_ECONNLOST;
          pg_msg(s->w.conn, NULL, err, errn);
        }
        return rc;
      }
      i++;
      continue;
    }
    nulls = 0;
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      return rc;
    }
    if (st == PGRES_FATAL_ERROR && !rc) {
      rc = pg_code(s->w.conn, r);
      pg_msg(s->w.conn, r, err, errn);
    }
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      if (res && i < nres && !res[i]) {
        res[i] = r;
        continue;
      }
    }
    PQclear(r);
  }
}

/* --- the write statements -------------------------------------------------
 *
 * Prepared once per session (a reconnect prepares them again): a group's
 * statements are then only bound and executed, and their text does not
 * grow with the group. Rows travel as arrays, one per column, expanded by
 * unnest: one statement inserts any number of events, from every append
 * of the group. */
enum {
  PS_EVENTS, PS_TAGS, PS_HEADS_NEW, PS_HEADS_LOCK, PS_HEADS_CAS, PS_META_LOCK,
  PS_HEADS_SET, PS_META_SET, PS_WRITER, PS_NOTIFY, PS_COUNT
};

static const char *const ps_name[PS_COUNT] = {
  "troupe_events", "troupe_tags", "troupe_heads_new", "troupe_heads_lock",
  "troupe_heads_cas", "troupe_meta_lock", "troupe_heads_set", "troupe_meta_set",
  "troupe_writer", "troupe_notify"
};

static void ps_sql(const pg_store *s, int i, char *sql, size_t n) {
  switch (i) {
  case PS_EVENTS:
    /* Tags arrive as array literals, one per row: an array cannot hold
     * arrays of different lengths. The unnests run in the select list,
     * in lockstep (the arrays have one length): unnest in FROM would
     * materialize the rows in a tuplestore first, about 1 us a row. */
    snprintf(sql, n,
             "INSERT INTO %s (persistence_id, seq_nr, ordering, manifest,"
             " version, payload, writer_id, ts, tags, slice)"
             " SELECT unnest($1::text[]), unnest($2::int8[]),"
             " unnest($3::int8[]), unnest($4::text[]), unnest($5::int4[]),"
             " unnest($6::bytea[]), unnest($7::int8[]), unnest($8::int8[]),"
             " unnest($9::text[])::text[], unnest($10::int4[])",
             s->q_events);
    break;
  case PS_TAGS:                     /* an event may repeat a tag */
    snprintf(sql, n,
             "INSERT INTO %s (tag, ordering) SELECT unnest($1::text[]),"
             " unnest($2::int8[]) ON CONFLICT DO NOTHING",
             s->q_tags);
    break;
  case PS_HEADS_NEW:
    snprintf(sql, n,
             "INSERT INTO %s (persistence_id, highest)"
             " SELECT DISTINCT unnest($1::text[]), 0 ORDER BY 1"
             " ON CONFLICT DO NOTHING", s->q_heads);
    break;
  case PS_HEADS_LOCK:
    snprintf(sql, n,
             "SELECT persistence_id, highest, deleted_to FROM %s"
             " WHERE persistence_id = ANY($1::text[])"
             " ORDER BY persistence_id FOR UPDATE", s->q_heads);
    break;
  case PS_HEADS_CAS:
    /* each head moves from the value the group assumed to its new one;
     * the ids it returns are those whose assumption held */
    snprintf(sql, n,
             "UPDATE %s AS h SET highest = v.hi FROM unnest($1::text[],"
             " $2::int8[], $3::int8[]) AS v(id, lo, hi)"
             " WHERE h.persistence_id = v.id AND h.highest = v.lo"
             " RETURNING h.persistence_id", s->q_heads);
    break;
  case PS_META_LOCK:
    snprintf(sql, n, "SELECT last_offset FROM %s WHERE id = 1 FOR UPDATE",
             s->q_meta);
    break;
  case PS_HEADS_SET:
    snprintf(sql, n,
             "UPDATE %s AS h SET highest = v.hi FROM unnest($1::text[],"
             " $2::int8[]) AS v(id, hi) WHERE h.persistence_id = v.id",
             s->q_heads);
    break;
  case PS_META_SET:
    snprintf(sql, n, "UPDATE %s SET last_offset = $1::int8 WHERE id = 1",
             s->q_meta);
    break;
  case PS_WRITER:
    snprintf(sql, n,
             "INSERT INTO %s (writer, token) VALUES ($1::int8, $2::int8)"
             " ON CONFLICT (writer) DO UPDATE SET token = EXCLUDED.token,"
             " at = now()", s->q_writers);
    break;
  case PS_NOTIFY:
    snprintf(sql, n, "SELECT pg_notify($1::text, $2::text)");
    break;
  }
}

/* Prepare the write statements on this session, once. */
static int prepare_writes(pg_store *s, char *err, size_t errn) {
  if (s->w.prepared) return 0;
  char sql[700];
  for (int i = 0; i < PS_COUNT; i++) {
    ps_sql(s, i, sql, sizeof sql);
    PGresult *r = PQprepare(s->w.conn, ps_name[i], sql, 0, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    int rc = ok ? 0 : pg_code(s->w.conn, r);
    if (!ok) pg_msg(s->w.conn, r, err, errn);
    PQclear(r);
    if (!ok) return rc < 0 ? rc : TROUPE_EIO;
  }
  s->w.prepared = 1;
  return 0;
}

/* The events of a group being collected, one array per column, sent as
 * one statement when complete or before a statement that must see the
 * rows (a delete). */
enum { EC_PID, EC_SEQ, EC_OFF, EC_MANIFEST, EC_VERSION, EC_PAYLOAD,
       EC_WRITER, EC_TS, EC_TAGS, EC_SLICE, EC_COUNT };

typedef struct pg_ins {
  pg_arr col[EC_COUNT];
  pg_arr tag, tag_off;            /* event_tags rows */
  pg_params p;                    /* the statement's own parameters */
  char *tags;                     /* one row's tags as an array literal */
  size_t tcap;
} pg_ins;

static const Oid ec_type[EC_COUNT][2] = {
  {OID_TEXT_ARR, OID_TEXT}, {OID_INT8_ARR, OID_INT8}, {OID_INT8_ARR, OID_INT8},
  {OID_TEXT_ARR, OID_TEXT}, {OID_INT4_ARR, OID_INT4},
  {OID_BYTEA_ARR, OID_BYTEA}, {OID_INT8_ARR, OID_INT8},
  {OID_INT8_ARR, OID_INT8}, {OID_TEXT_ARR, OID_TEXT}, {OID_INT4_ARR, OID_INT4}
};

static int ins_flush(pg_store *s, pg_ins *b, int *nstmt) {
  pg_params *p = &b->p;
  if (!b->col[0].n) return 0;
  pp_reset(p);
  for (int c = 0; c < EC_COUNT; c++) {
    int rc = pp_arr(p, &b->col[c], ec_type[c][0], ec_type[c][1]);
    if (rc < 0) return rc;
    arr_reset(&b->col[c]);
  }
  if (pp_send_prepared(s->w.conn, ps_name[PS_EVENTS], p) < 0)
    return TROUPE_ECONNLOST;
  (*nstmt)++;
  if (b->tag.n) {
    pp_reset(p);
    int rc = pp_arr(p, &b->tag, OID_TEXT_ARR, OID_TEXT);
    if (rc == 0) rc = pp_arr(p, &b->tag_off, OID_INT8_ARR, OID_INT8);
    if (rc < 0) return rc;
    arr_reset(&b->tag);
    arr_reset(&b->tag_off);
    if (pp_send_prepared(s->w.conn, ps_name[PS_TAGS], p) < 0)
      return TROUPE_ECONNLOST;
    (*nstmt)++;
  }
  return 0;
}

static void ins_free(pg_ins *b) {
  for (int c = 0; c < EC_COUNT; c++) arr_free(&b->col[c]);
  arr_free(&b->tag);
  arr_free(&b->tag_off);
  pp_free(&b->p);
  free(b->tags);
}

/* Tags as a text[] literal: {"a","b\"c"}; NULL-free, every element
 * quoted so no tag is read as NULL or split. */
static int tags_literal(pg_ins *b, const char *const *tv, size_t n,
                        size_t *len) {
  size_t need = 3;
  for (size_t i = 0; i < n; i++) need += 3 + 2 * strlen(tv[i]);
  if (need > b->tcap) {
    char *t = realloc(b->tags, need);
    if (!t) return TROUPE_ENOMEM;
    b->tags = t;
    b->tcap = need;
  }
  char *q = b->tags;
  *q++ = '{';
  for (size_t i = 0; i < n; i++) {
    if (i) *q++ = ',';
    *q++ = '"';
    for (const char *c = tv[i]; *c; c++) {
      if (*c == '"' || *c == '\\') *q++ = '\\';
      *q++ = *c;
    }
    *q++ = '"';
  }
  *q++ = '}';
  *len = (size_t)(q - b->tags);
  return 0;
}

static int add_event_rows(pg_store *s, pg_ins *b, jnl_op *op,
                          uint64_t first_off, int *nstmt) {
  const uint8_t *q = op->buf;
  int32_t slice = (int32_t)jnl_slice(op->pid, op->pid_len);
  for (size_t i = 0; i < op->n; i++) {
    uint32_t len = jnl_rd32(q);
    troupe_event e;
    const char *tv[TROUPE_JOURNAL_MAX_TAGS];
    int rc = jnl_rec_read(q + 4, len, &e, tv);
    if (rc < 0) return rc;
    /* the op's buffer keeps the offset for notifications */
    jnl_be64((uint8_t *)q + 4 + JNL_REC_OFFSET_AT, first_off + i);
    size_t tlen = 0;
    if ((rc = tags_literal(b, tv, e.ntags, &tlen)) < 0) return rc;
    pg_arr *c = b->col;
    if (arr_put(&c[EC_PID], op->pid, op->pid_len) < 0 ||
        arr_u64(&c[EC_SEQ], op->a + 1 + i) < 0 ||
        arr_u64(&c[EC_OFF], first_off + i) < 0 ||
        arr_put(&c[EC_MANIFEST], e.manifest, strlen(e.manifest)) < 0 ||
        arr_i32(&c[EC_VERSION], (int32_t)e.version) < 0 ||
        arr_put(&c[EC_PAYLOAD], e.payload, e.payload_len) < 0 ||
        arr_i64(&c[EC_WRITER], (int64_t)e.writer_id) < 0 ||
        arr_i64(&c[EC_TS], e.timestamp_ms) < 0 ||
        arr_put(&c[EC_TAGS], b->tags, tlen) < 0 ||
        arr_i32(&c[EC_SLICE], slice) < 0)
      return TROUPE_ENOMEM;
    for (size_t t = 0; t < e.ntags; t++)
      if (arr_put(&b->tag, tv[t], strlen(tv[t])) < 0 ||
          arr_u64(&b->tag_off, first_off + i) < 0)
        return TROUPE_ENOMEM;
    q += 4 + len;
    if (c[EC_PID].n == PG_ROWS_PER_INSERT &&
        (rc = ins_flush(s, b, nstmt)) < 0)
      return rc;
  }
  return 0;
}

/* The new heads of every id the group appended to: one UPDATE. */
static int send_heads(pg_store *s, pg_group *g, pg_params *p, int *nstmt) {
  pg_arr ids = {0}, heads = {0};
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < g->nall; i++)
    if (g->all[i]->head_dirty &&
        ((rc = arr_put(&ids, g->all[i]->name, strlen(g->all[i]->name))) < 0 ||
         (rc = arr_u64(&heads, g->all[i]->head)) < 0))
      break;
  if (rc == 0 && ids.n) {
    pp_reset(p);
    if ((rc = pp_arr(p, &ids, OID_TEXT_ARR, OID_TEXT)) == 0 &&
        (rc = pp_arr(p, &heads, OID_INT8_ARR, OID_INT8)) == 0) {
      if (pp_send_prepared(s->w.conn, ps_name[PS_HEADS_SET], p) < 0)
        rc = TROUPE_ECONNLOST;
      else (*nstmt)++;
    }
  }
  arr_free(&ids);
  arr_free(&heads);
  return rc;
}

/* What an optimistic attempt returns when a head was not the one the
 * group assumed: run it again with locks. */
#define PG_RETRY_LOCKED 1

/* One attempt at a group: 0 when it committed (ops carry their own
 * results: conflicts, heads, counts), PG_RETRY_LOCKED (nothing
 * committed), else the error that failed the whole group with its text
 * in err. *committing is set once the COMMIT was sent: after that a lost
 * connection leaves the outcome unknown.
 *
 * Optimistic (appends but no deletes): the checks run first against the
 * heads the appends expect, and round trip 1 moves those heads with one
 * compare-and-set UPDATE. Pessimistic: round trip 1 locks the heads and
 * reads them, and the checks run against what it read. */
static int write_attempt(pg_store *s, pg_group *g, uint64_t token,
                         int optimistic, char *err, size_t errn,
                         int *committing) {
  pg_params p = {0};
  int rc = 0;
  *committing = 0;
  int has_append = 0, has_jids = 0, has_state = 0;
  char sql[600];
  for (size_t i = 0; i < g->n; i++) {
    int k = g->ops[i]->kind;
    if (k == JNL_OP_APPEND) has_append = has_jids = 1;
    if (k == JNL_OP_DELETE) has_jids = 1, optimistic = 0;
    if (k == JNL_OP_STATE_PUT || k == JNL_OP_STATE_DELETE) has_state = 1;
  }
  if (!has_append) optimistic = 0;
  if (optimistic && (rc = assume_heads(g)) < 0) goto fail;
  /* --- round trip 1: lock what the checks read --- */
  if ((rc = prepare_writes(s, err, errn)) < 0) goto fail;
  if (!PQenterPipelineMode(s->w.conn)) {
    rc = TROUPE_EIO;
    pg_msg(s->w.conn, NULL, err, errn);
    goto fail;
  }
  PGresult *res[4] = {NULL, NULL, NULL, NULL};
  int r_heads = -1, r_meta = -1, r_state = -1, r_cas = -1, nst = 0;
  size_t nfresh = 0, ncas = 0, nstate = 0;
  PQsendQueryParams(s->w.conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 1);
  nst++;
  if (has_append) {                 /* head rows of new streams */
    pp_reset(&p);
    if ((rc = ids_param(g, &p, 0, 1, &nfresh)) < 0) goto pipe_fail;
    if (nfresh) {
      pp_send_prepared(s->w.conn, ps_name[PS_HEADS_NEW], &p);
      nst++;
    }
  }
  if (optimistic) {
    pp_reset(&p);
    if ((rc = cas_params(g, &p, &ncas)) < 0) goto pipe_fail;
    pp_send_prepared(s->w.conn, ps_name[PS_HEADS_CAS], &p);
    r_cas = nst++;
  } else if (has_jids) {
    size_t n;
    pp_reset(&p);
    if ((rc = ids_param(g, &p, 0, 0, &n)) < 0) goto pipe_fail;
    pp_send_prepared(s->w.conn, ps_name[PS_HEADS_LOCK], &p);
    r_heads = nst++;
  }
  if (has_append) {
    pp_reset(&p);
    pp_send_prepared(s->w.conn, ps_name[PS_META_LOCK], &p);
    r_meta = nst++;
  }
  if (has_state) {
    snprintf(sql, sizeof sql,
             "SELECT persistence_id, revision FROM %s"
             " WHERE persistence_id = ANY($1::text[])"
             " ORDER BY persistence_id FOR UPDATE", s->q_state);
    pp_reset(&p);
    if ((rc = ids_param(g, &p, 1, 0, &nstate)) < 0) goto pipe_fail;
    pp_send(s->w.conn, sql, &p);
    r_state = nst++;
  }
  PQpipelineSync(s->w.conn);
  PGresult *all[8] = {0};
  rc = drain(s, all, nst, err, errn);
  if (rc == 0) {
    if (r_heads >= 0) res[0] = all[r_heads];
    if (r_meta >= 0) res[1] = all[r_meta];
    if (r_state >= 0) res[2] = all[r_state];
    if (r_cas >= 0) res[3] = all[r_cas];
  }
  uint64_t offset = 0, first_offset = 0;
  if (rc == 0) {
    if (res[0])
      for (int i = 0; i < PQntuples(res[0]); i++) {
        pg_key *k = gkey(g, PQgetvalue(res[0], i, 0),
                         (size_t)PQgetlength(res[0], i, 0));
        if (!k) { rc = TROUPE_ENOMEM; break; }
        k->head = (uint64_t)col_i64(res[0], i, 1);
        k->deleted_to = (uint64_t)col_i64(res[0], i, 2);
        k->has_head = 1;
      }
    if (res[1] && PQntuples(res[1]) == 1)
      first_offset = offset = (uint64_t)col_i64(res[1], 0, 0);
    else if (has_append && rc == 0) {
      rc = TROUPE_ECORRUPT;
      snprintf(err, errn, "postgresql: %s has no offset row", s->q_meta);
    }
    if (res[2])
      for (int i = 0; i < PQntuples(res[2]); i++) {
        pg_key *k = gkey(g, PQgetvalue(res[2], i, 0),
                         (size_t)PQgetlength(res[2], i, 0));
        if (!k) { rc = TROUPE_ENOMEM; break; }
        k->rev = (uint64_t)col_i64(res[2], i, 1);
        k->has_rev = 1;
      }
    if (optimistic && rc == 0 && (!res[3] || (size_t)PQntuples(res[3]) != ncas))
      rc = PG_RETRY_LOCKED;
  }
  for (int i = 0; i < 8; i++) PQclear(all[i]);
  if (rc != 0) goto pipe_fail;

  /* --- the checks, in submission order; round trip 2 --- */
  nst = 0;
  pg_ins ins;
  memset(&ins, 0, sizeof ins);
  for (size_t i = 0; i < g->n && rc == 0; i++) {
    jnl_op *op = g->ops[i];
    pg_key *k = gkey(g, op->pid, op->pid_len);
    if (!k) { rc = TROUPE_ENOMEM; break; }
    pp_reset(&p);
    switch (op->kind) {
    case JNL_OP_APPEND:
      if (optimistic) {             /* checked by assume_heads */
        if (op->status < 0) break;
      } else if (k->head != op->a) {
        conflict(op, k->head, "append");
        break;
      }
      if ((rc = add_event_rows(s, &ins, op, offset + 1, &nst)) < 0)
        break;
      offset += op->n;
      if (!optimistic) {
        k->head = op->a + op->n;
        k->head_dirty = 1;
        op->r0 = k->head;
      }
      break;
    case JNL_OP_DELETE: {
      if (!k->has_head) break;            /* unknown id: nothing */
      uint64_t to = op->a < k->head ? op->a : k->head;
      if (to > k->deleted_to) {
        if ((rc = ins_flush(s, &ins, &nst)) < 0) break;
        /* the events and their tag rows */
        snprintf(sql, sizeof sql,
                 "WITH d AS (DELETE FROM %s WHERE persistence_id = $1 AND"
                 " seq_nr <= $2 RETURNING ordering, tags)"
                 " DELETE FROM %s t USING (SELECT unnest(d.tags) AS tag,"
                 " d.ordering FROM d) x"
                 " WHERE t.tag = x.tag AND t.ordering = x.ordering",
                 s->q_events, s->q_tags);
        pp_text(&p, op->pid, op->pid_len);
        pp_u64(&p, to);
        pp_send(s->w.conn, sql, &p);
        snprintf(sql, sizeof sql,
                 "UPDATE %s SET deleted_to = $2 WHERE persistence_id = $1",
                 s->q_heads);
        pp_send(s->w.conn, sql, &p);
        nst += 2;
        k->deleted_to = to;
      }
      op->r0 = k->deleted_to;
      break;
    }
    case JNL_OP_SNAP_SAVE: {
      troupe_snapshot sn;
      if (jnl_snap_read(op->buf, op->buf_len, &sn) < 0) {
        jnl_op_fail(op, TROUPE_ECORRUPT, "snapshot record");
        break;
      }
      snprintf(sql, sizeof sql,
               "INSERT INTO %s (persistence_id, seq_nr, ts, manifest, version,"
               " state) VALUES ($1,$2,$3,$4,$5,$6)"
               " ON CONFLICT (persistence_id, seq_nr) DO UPDATE SET"
               " ts = EXCLUDED.ts, manifest = EXCLUDED.manifest,"
               " version = EXCLUDED.version, state = EXCLUDED.state",
               s->q_snaps);
      pp_text(&p, op->pid, op->pid_len);
      pp_u64(&p, op->a);
      pp_i64(&p, sn.timestamp_ms);
      pp_text(&p, sn.manifest, strlen(sn.manifest));
      pp_i32(&p, (int32_t)sn.version);
      pp_bytea(&p, sn.state, sn.state_len);
      pp_send(s->w.conn, sql, &p);
      nst++;
      break;
    }
    case JNL_OP_SNAP_DELETE:
      snprintf(sql, sizeof sql,
               "DELETE FROM %s WHERE persistence_id = $1 AND seq_nr BETWEEN"
               " $2 AND $3 AND ts BETWEEN $4 AND $5", s->q_snaps);
      pp_text(&p, op->pid, op->pid_len);
      pp_u64(&p, op->a);
      pp_u64(&p, op->b);
      pp_i64(&p, op->t0);
      pp_i64(&p, op->t1);
      pp_send(s->w.conn, sql, &p);
      op->scratch = (uint64_t)++nst;       /* its result: count */
      break;
    case JNL_OP_SNAP_RETAIN:
      snprintf(sql, sizeof sql,
               "DELETE FROM %s WHERE persistence_id = $1 AND seq_nr <"
               " COALESCE((SELECT seq_nr FROM %s WHERE persistence_id = $1"
               " ORDER BY seq_nr DESC OFFSET $2 LIMIT 1), 0)",
               s->q_snaps, s->q_snaps);
      pp_text(&p, op->pid, op->pid_len);
      pp_u64(&p, op->c - 1);
      pp_send(s->w.conn, sql, &p);
      op->scratch = (uint64_t)++nst;
      break;
    case JNL_OP_STATE_PUT: {
      uint64_t rev = k->has_rev ? k->rev : 0;
      if (rev != op->a) {
        conflict(op, rev, "state revision");
        break;
      }
      troupe_state_record rec;
      if (jnl_state_read(op->buf, op->buf_len, &rec) < 0) {
        jnl_op_fail(op, TROUPE_ECORRUPT, "state record");
        break;
      }
      snprintf(sql, sizeof sql,
               "INSERT INTO %s (persistence_id, revision, ts, manifest,"
               " version, value) VALUES ($1,$2,$3,$4,$5,$6)"
               " ON CONFLICT (persistence_id) DO UPDATE SET"
               " revision = EXCLUDED.revision, ts = EXCLUDED.ts,"
               " manifest = EXCLUDED.manifest, version = EXCLUDED.version,"
               " value = EXCLUDED.value", s->q_state);
      pp_text(&p, op->pid, op->pid_len);
      pp_u64(&p, op->a + 1);
      pp_i64(&p, rec.timestamp_ms);
      pp_text(&p, rec.manifest, strlen(rec.manifest));
      pp_i32(&p, (int32_t)rec.version);
      pp_bytea(&p, rec.value, rec.value_len);
      pp_send(s->w.conn, sql, &p);
      nst++;
      k->rev = op->r0 = op->a + 1;
      k->has_rev = 1;
      break;
    }
    case JNL_OP_STATE_DELETE: {
      uint64_t rev = k->has_rev ? k->rev : 0;
      if (op->a != 0 && rev != op->a) {
        conflict(op, rev, "state revision");
        break;
      }
      op->r0 = rev;
      if (rev) {
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE persistence_id = $1",
                 s->q_state);
        pp_text(&p, op->pid, op->pid_len);
        pp_send(s->w.conn, sql, &p);
        nst++;
      }
      k->rev = 0;
      k->has_rev = 0;
      break;
    }
    }
  }
  if (rc == 0) rc = ins_flush(s, &ins, &nst);
  if (rc == 0 && !optimistic) rc = send_heads(s, g, &p, &nst);
  ins_free(&ins);
  if (rc < 0) {
    snprintf(err, errn, "postgresql: building the batch: %s",
             troupe_strerror(rc));
    goto pipe_fail;
  }
  if (offset > first_offset) {
    pp_reset(&p);
    pp_u64(&p, offset);
    pp_send_prepared(s->w.conn, ps_name[PS_META_SET], &p);
    nst++;
  }
  /* the group's token, read back when the COMMIT's reply is lost */
  pp_reset(&p);
  pp_i64(&p, (int64_t)s->writer);
  pp_i64(&p, (int64_t)token);
  pp_send_prepared(s->w.conn, ps_name[PS_WRITER], &p);
  nst++;
  if (offset > first_offset) {
    /* LISTEN troupe_events_<schema>: delivered at commit, in commit
     * order, the payload is the group's last offset */
    char last[24];
    snprintf(last, sizeof last, "%llu", (unsigned long long)offset);
    pp_reset(&p);
    pp_text(&p, s->channel, strlen(s->channel));
    pp_text(&p, last, strlen(last));
    pp_send_prepared(s->w.conn, ps_name[PS_NOTIFY], &p);
    nst++;
  }
  PQsendQueryParams(s->w.conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 1);
  nst++;
  *committing = 1;
  PQpipelineSync(s->w.conn);
  {
    PGresult **r2 = calloc((size_t)nst, sizeof *r2);
    if (!r2) {
      rc = drain(s, NULL, 0, err, errn);
      if (rc == 0) {                /* committed; counts unknown */
        for (size_t i = 0; i < g->n; i++) g->ops[i]->scratch = 0;
      }
    } else {
      rc = drain(s, r2, nst, err, errn);
      if (rc == 0)
        for (size_t i = 0; i < g->n; i++) {
          jnl_op *op = g->ops[i];
          if ((op->kind == JNL_OP_SNAP_DELETE ||
               op->kind == JNL_OP_SNAP_RETAIN) && op->scratch &&
              r2[op->scratch - 1])
            op->r0 = strtoull(PQcmdTuples(r2[op->scratch - 1]), NULL, 10);
        }
      for (int i = 0; i < nst; i++) PQclear(r2[i]);
      free(r2);
    }
  }
  /* an error inside the explicit transaction leaves it aborted */
  if (rc < 0) goto pipe_fail;
  PQexitPipelineMode(s->w.conn);
  pp_free(&p);
  return 0;

pipe_fail:
  if (PQpipelineStatus(s->w.conn) != PQ_PIPELINE_OFF) {
    if (!*committing) {
      PQpipelineSync(s->w.conn);
      char e2[8];
      drain(s, NULL, 0, e2, sizeof e2);
    }
    PQexitPipelineMode(s->w.conn);
  }
  if (PQstatus(s->w.conn) == CONNECTION_OK) {
    PGresult *rb = PQexec(s->w.conn, "ROLLBACK");
    PQclear(rb);
  }
fail:
  pp_free(&p);
  return rc;
}

/* Finish a committed group: notify subscribers and complete in order. */
static void group_done(pg_store *s, pg_group *g) {
  for (size_t i = 0; i < g->n; i++) {
    jnl_op *op = g->ops[i];
    if (op->kind == JNL_OP_APPEND && op->status == 0 &&
        atomic_load(&s->base.nsubs)) {
      troupe_event *ev;
      const char **tv;
      if (jnl_batch_decode(op, &ev, &tv) == 0) jnl_notify(&s->base, ev, op->n);
      free(ev);
      free(tv);
    }
    jnl_op_complete(op);
  }
}

static void group_fail(pg_group *g, int rc, const char *err) {
  for (size_t i = 0; i < g->n; i++) {
    jnl_op *op = g->ops[i];
    op->r0 = 0;
    const char *m = err[0] ? err : troupe_strerror(rc);
    jnl_op_fail(op, rc, "%s%s",
                strncmp(m, "postgresql", 10) == 0 ? "" : "postgresql: ", m);
    jnl_op_complete(op);
  }
}

/* Forget what an attempt left in the group and its ops. */
static void group_reset(pg_group *g) {
  for (size_t i = 0; i < g->nall; i++) free(g->all[i]);
  g->nall = 0;
  jnl_hmap_free(&g->keys);
  memset(&g->keys, 0, sizeof g->keys);
  for (size_t i = 0; i < g->n; i++) {
    jnl_op_fail(g->ops[i], 0, NULL);
    g->ops[i]->r0 = g->ops[i]->scratch = 0;
  }
}

/* Did the group with `token` commit? 1 yes, 0 no, or an error. */
static int token_committed(pg_store *s, uint64_t token) {
  char sql[200];
  pg_params p = {0};
  snprintf(sql, sizeof sql, "SELECT token FROM %s WHERE writer = $1",
           s->q_writers);
  pp_i64(&p, (int64_t)s->writer);
  PGresult *r = pp_exec(s->w.conn, sql, &p);
  int rc;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    char buf[400];
    rc = troupe__err(pg_code(s->w.conn, r), "postgresql: %s",
                     pg_msg(s->w.conn, r, buf, sizeof buf));
  } else {
    rc = PQntuples(r) == 1 && (uint64_t)col_i64(r, 0, 0) == token;
  }
  PQclear(r);
  pp_free(&p);
  return rc;
}

/* Run a group to a known outcome. A connection lost before COMMIT was
 * sent rolled the transaction back: reconnect (with backoff) and run the
 * group again. One lost after it leaves the outcome unknown: reconnect
 * and read this store's row in `writers` back: the group's token there
 * means it committed (report it, once), otherwise run it again with a
 * new token. Every attempt starts from the heads then locked, so a retry
 * never duplicates events and a concurrent writer's append turns into a
 * conflict as it would have anyway. Only when the budget runs out do the
 * ops fail with TROUPE_ECONNLOST ("outcome unknown" when it could not be
 * resolved). */
static void write_group(pg_store *s, pg_group *g) {
  uint64_t deadline = now_ms() + PG_RETRY_MS;
  char err[512];
  int rc, optimistic = 1, busy = 0;
  for (;;) {
    int committing = 0;
    uint64_t token = ++s->token;
    err[0] = 0;
    if ((rc = ensure_conn(&s->w, deadline)) < 0) {
      snprintf(err, sizeof err, "%s", troupe_errmsg());
      break;
    }
    rc = write_attempt(s, g, token, optimistic, err, sizeof err,
                       &committing);
    if (rc == 0) {
      group_done(s, g);
      return;
    }
    if (rc == PG_RETRY_LOCKED || (rc == TROUPE_EBUSY && busy++ < 3)) {
      /* a head was not the one assumed, or the server aborted the
       * transaction (a deadlock with another writer, a serialization
       * failure): nothing committed; again, with locks */
      optimistic = 0;
      group_reset(g);
      continue;
    }
    if (rc != TROUPE_ECONNLOST) break;
    s->w.broken = 1;                /* reset even if libpq has not noticed */
    while (committing) {          /* resolve before anything else */
      int rc2 = ensure_conn(&s->w, deadline);
      if (rc2 == 0) rc2 = token_committed(s, token);
      if (rc2 == TROUPE_ECONNLOST) s->w.broken = 1;
      if (rc2 == 1) {
        /* the ops' results were set before the COMMIT; only the counts
         * of snapshot deletes were lost (reported as 0) */
        group_done(s, g);
        return;
      }
      if (rc2 == 0) committing = 0;
      else if (now_ms() >= deadline ||
               (rc2 != TROUPE_ECONNLOST && PQstatus(s->w.conn) == CONNECTION_OK))
        break;
    }
    if (committing) {
      snprintf(err + strlen(err), sizeof err - strlen(err),
               " (connection lost during COMMIT: outcome unknown)");
      break;
    }
    if (now_ms() >= deadline) break;
    group_reset(g);
  }
  group_fail(g, rc, err);
}

/* --- the connection thread ------------------------------------------------ */

static void *conn_main(void *arg) {
  pg_store *s = arg;
  jnl_in_store_thread = 1;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->head && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    if (!s->head) break;
    jnl_op *list = s->head;
    s->head = NULL;
    s->tail = &s->head;
    pthread_mutex_unlock(&s->mu);
    while (list) {
      /* up to PG_MAX_GROUP writes: one transaction */
      pg_group g;
      memset(&g, 0, sizeof g);
      size_t n = 0;
      for (jnl_op *o = list; o && n < PG_MAX_GROUP; o = o->next) n++;
      g.ops = malloc(n * sizeof *g.ops);
      if (!g.ops) n = 1;
      jnl_op *one[1];
      if (!g.ops) g.ops = one;
      for (size_t i = 0; i < n; i++) {
        g.ops[i] = list;
        list = list->next;
      }
      g.n = n;
      write_group(s, &g);
      if (g.ops == one) g.ops = NULL;
      group_free(&g);
    }
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* A reader thread: reads, one at a time, on its own connection (opened at
 * its first read), so recoveries and projections neither wait behind
 * group commits nor hold them up. */
static void *reader_main(void *arg) {
  pg_conn *c = arg;
  pg_store *s = c->s;
  jnl_in_store_thread = 1;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->rhead && !s->stop) pthread_cond_wait(&s->rcv, &s->mu);
    jnl_op *op = s->rhead;
    if (!op) break;
    if (!(s->rhead = op->next)) s->rtail = &s->rhead;
    pthread_mutex_unlock(&s->mu);
    do_read(c, op);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* Writes go to the connection thread, reads to the readers: a read sees
 * what was committed when it runs (like the RocksDB reader threads), so
 * a caller that needs its own write waits for the write's completion. */
static void pg_submit(jnl_store *st, jnl_op *op) {
  pg_store *s = (pg_store *)st;
  op->next = NULL;
  pthread_mutex_lock(&s->mu);
  if (jnl_op_is_write(op->kind)) {
    if (!s->head) pthread_cond_signal(&s->cv);
    *s->tail = op;
    s->tail = &op->next;
  } else {
    *s->rtail = op;
    s->rtail = &op->next;
    pthread_cond_signal(&s->rcv);
  }
  pthread_mutex_unlock(&s->mu);
}

/* Stop the threads once their queues are empty. */
static void stop_threads(pg_store *s) {
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_signal(&s->cv);
  pthread_cond_broadcast(&s->rcv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  for (int i = 0; i < s->nreaders; i++) pthread_join(s->readers[i], NULL);
}

static void pg_free(pg_store *s) {
  if (s->w.conn) PQfinish(s->w.conn);
  for (int i = 0; i < s->nreaders; i++)
    if (s->rc[i].conn) PQfinish(s->rc[i].conn);
  free(s->conninfo);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_cond_destroy(&s->rcv);
  jnl_store_destroy(&s->base);
  free(s);
}

static int pg_open(const char *path, const troupe_store_options *o,
                   jnl_store **out) {
  pg_store *s = calloc(1, sizeof *s);
  if (!s) return troupe__err(TROUPE_ENOMEM, "postgresql store");
  jnl_store_init(&s->base, &jnl_pg_backend, o);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_cond_init(&s->rcv, NULL);
  s->tail = &s->head;
  s->rtail = &s->rhead;
  s->w.s = s;
  int rc = jnl_pg_split_spec(path, &s->conninfo, s->schema);
  if (rc == 0) {
    snprintf(s->q_events, sizeof s->q_events, "\"%s\".events", s->schema);
    snprintf(s->q_heads, sizeof s->q_heads, "\"%s\".heads", s->schema);
    snprintf(s->q_meta, sizeof s->q_meta, "\"%s\".meta", s->schema);
    snprintf(s->q_snaps, sizeof s->q_snaps, "\"%s\".snapshots", s->schema);
    snprintf(s->q_state, sizeof s->q_state, "\"%s\".durable_state", s->schema);
    snprintf(s->q_writers, sizeof s->q_writers, "\"%s\".writers", s->schema);
    snprintf(s->q_tags, sizeof s->q_tags, "\"%s\".event_tags", s->schema);
    snprintf(s->channel, sizeof s->channel, "troupe_events_%s", s->schema);
    /* this store's row in `writers` and its first group token: random,
     * so stores (processes, nodes, reopenings) never share a row */
    if (getrandom(&s->writer, sizeof s->writer, 0) != sizeof s->writer ||
        getrandom(&s->token, sizeof s->token, 0) != sizeof s->token)
      rc = troupe__err(TROUPE_EIO, "postgresql store: no random bytes");
  }
  if (rc == 0) {
    rc = connect_db(&s->w);
  }
  if (rc == 0) rc = check_schema(s);
  int want = (int)o->reader_threads;
  if (want < 1) want = 1;
  if (want > PG_MAX_READERS) want = PG_MAX_READERS;
  int started = 0;                /* the connection thread, then readers */
  if (rc == 0) {
    if (pthread_create(&s->thread, NULL, conn_main, s) == 0) started = 1;
    else rc = troupe__err(TROUPE_ENOMEM, "postgresql store: no thread");
  }
  while (rc == 0 && s->nreaders < want) {
    pg_conn *c = &s->rc[s->nreaders];
    c->s = s;
    if (pthread_create(&s->readers[s->nreaders], NULL, reader_main, c) != 0)
      rc = troupe__err(TROUPE_ENOMEM, "postgresql store: no reader thread");
    else
      s->nreaders++;
  }
  if (rc < 0) {
    if (started) stop_threads(s);
    pg_free(s);
    return rc;
  }
  *out = &s->base;
  return 0;
}

static void pg_close(jnl_store *st) {
  pg_store *s = (pg_store *)st;
  stop_threads(s);
  pg_free(s);
}

const jnl_backend_vt jnl_pg_backend = {"postgresql", pg_open, pg_submit,
                                       pg_close, pg_schema, pg_migrate};
