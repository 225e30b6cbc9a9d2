/*
 * projection/offsets_pg.c: the PostgreSQL offset store.
 *
 * One table, <schema>.troupe_projections, one row per instance. The
 * worker's columns (offset, ack_seq, status) and the management columns
 * (paused, req_*) are written by different UPDATEs, so neither overwrites
 * the other. Each worker has a session: its own connection, on which
 * exactly-once groups run as
 *
 *   BEGIN; SELECT offset ... FOR UPDATE (fencing: still ours?);
 *   <the handler's statements>; UPDATE offset; COMMIT
 *
 * A COMMIT whose outcome is unknown (connection lost) fails the session;
 * the restarted worker reads the offset back, which tells which way it
 * went: the read model and the offset always agree.
 */
#include "projection/internal.h"

#include <stdio.h>
#include <libpq-fe.h>

typedef struct pg_store {
  pj_store base;
  char *conninfo;
  char schema[64];
  char table[100];
  pthread_mutex_t mu;
  PGconn *conn;            /* for management calls (mu) */
} pg_store;

static int pg_fail(PGconn *c, PGresult *r, const char *what) {
  const char *m = r ? PQresultErrorMessage(r) : NULL;
  if (!m || !*m) m = c ? PQerrorMessage(c) : "no connection";
  int code = TROUPE_EIO;
  if (!c || PQstatus(c) != CONNECTION_OK) code = TROUPE_ECONNLOST;
  const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if (st && strncmp(st, "40", 2) == 0) code = TROUPE_ECONFLICT;
  char buf[300];
  snprintf(buf, sizeof buf, "%s", m);
  size_t l = strlen(buf);
  while (l && (buf[l - 1] == '\n' || buf[l - 1] == ' ')) buf[--l] = 0;
  return troupe__err(code, "postgresql %s: %s", what, buf);
}

static int pg_connect(const char *conninfo, PGconn **out) {
  PGconn *c = PQconnectdb(conninfo);
  if (!c) return troupe__err(TROUPE_ENOMEM, "postgresql connect");
  if (PQstatus(c) != CONNECTION_OK) {
    const char *m = PQerrorMessage(c);
    int code = strstr(m, "password") || strstr(m, "authentication")
                   ? TROUPE_EAUTH : TROUPE_ECONNREFUSED;
    troupe__err(code, "postgresql connect: %s", m);
    PQfinish(c);
    return code;
  }
  PGresult *r = PQexec(c, "SET client_min_messages = warning");
  PQclear(r);
  *out = c;
  return 0;
}

static int exec_cmd(PGconn *c, const char *sql, const char *what) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  int rc = 0;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) rc = pg_fail(c, r, what);
  PQclear(r);
  return rc;
}

static PGresult *exec_params(PGconn *c, const char *sql, int n,
                             const char *const *vals, const char *what,
                             int *rc) {
  PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    *rc = pg_fail(c, r, what);
    PQclear(r);
    return NULL;
  }
  *rc = 0;
  return r;
}

static int create_table(pg_store *p) {
  char sql[1600];
  snprintf(sql, sizeof sql,
           "BEGIN; SELECT pg_advisory_xact_lock(hashtext('troupe_projections.%s'));"
           "CREATE SCHEMA IF NOT EXISTS \"%s\";"
           "CREATE TABLE IF NOT EXISTS %s ("
           " name text PRIMARY KEY,"
           " \"offset\" bigint NOT NULL DEFAULT 0,"
           " ack_seq bigint NOT NULL DEFAULT 0,"
           " state int NOT NULL DEFAULT 0,"
           " skipped bigint NOT NULL DEFAULT 0,"
           " lag_events bigint NOT NULL DEFAULT 0,"
           " lag_ms bigint NOT NULL DEFAULT 0,"
           " updated_ms bigint NOT NULL DEFAULT 0,"
           " source text NOT NULL DEFAULT '',"
           " last_error text NOT NULL DEFAULT '',"
           " has_row bool NOT NULL DEFAULT false,"
           " paused bool NOT NULL DEFAULT false,"
           " req_seq bigint NOT NULL DEFAULT 0,"
           " req_kind int NOT NULL DEFAULT 0,"
           " req_offset bigint NOT NULL DEFAULT 0); COMMIT",
           p->schema, p->schema, p->table);
  int rc = exec_cmd(p->conn, sql, "create table");
  if (rc < 0) exec_cmd(p->conn, "ROLLBACK", "rollback");
  return rc;
}

static int pgs_open(const char *spec, pj_store **out) {
  pg_store *p = calloc(1, sizeof *p);
  if (!p) return troupe__err(TROUPE_ENOMEM, "offset store");
  p->base.kind = PJ_PG;
  int rc = pj_pg_split_spec(spec, &p->conninfo, p->schema);
  if (rc < 0) { free(p); return rc; }
  snprintf(p->table, sizeof p->table, "\"%s\".troupe_projections", p->schema);
  pthread_mutex_init(&p->mu, NULL);
  rc = pg_connect(p->conninfo, &p->conn);
  if (rc == 0) rc = create_table(p);
  if (rc < 0) {
    if (p->conn) PQfinish(p->conn);
    pthread_mutex_destroy(&p->mu);
    free(p->conninfo);
    free(p);
    return rc;
  }
  *out = &p->base;
  return 0;
}

static void pgs_close(pj_store *s) {
  pg_store *p = (pg_store *)s;
  if (p->conn) PQfinish(p->conn);
  pthread_mutex_destroy(&p->mu);
  free(p->conninfo);
  free(p);
}

/* Reconnect a management connection that was lost (p->mu held). */
static int ensure_conn(pg_store *p) {
  if (p->conn && PQstatus(p->conn) == CONNECTION_OK) return 0;
  if (p->conn) PQreset(p->conn);
  if (p->conn && PQstatus(p->conn) == CONNECTION_OK) return 0;
  if (p->conn) PQfinish(p->conn);
  p->conn = NULL;
  return pg_connect(p->conninfo, &p->conn);
}

#define ROW_COLS \
  "\"offset\", ack_seq, state, skipped, lag_events, lag_ms, updated_ms, " \
  "source, last_error, paused, req_seq, req_kind, req_offset"

static int fetch(PGconn *c, const char *table, const char *name, int lock,
                 pj_row *row, pj_ctl *ctl) {
  memset(row, 0, sizeof *row);
  memset(ctl, 0, sizeof *ctl);
  char sql[400];
  snprintf(sql, sizeof sql, "SELECT " ROW_COLS " FROM %s WHERE name = $1%s",
           table, lock ? " FOR UPDATE" : "");
  const char *v[1] = {name};
  int rc;
  PGresult *r = exec_params(c, sql, 1, v, "select", &rc);
  if (!r) return rc;
  if (PQntuples(r) == 0) { PQclear(r); return TROUPE_ENOENT; }
  row->offset = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  row->ack_seq = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
  row->state = atoi(PQgetvalue(r, 0, 2));
  row->skipped = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
  row->lag_events = strtoull(PQgetvalue(r, 0, 4), NULL, 10);
  row->lag_ms = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
  row->updated_ms = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
  snprintf(row->source, sizeof row->source, "%s", PQgetvalue(r, 0, 7));
  snprintf(row->last_error, sizeof row->last_error, "%s", PQgetvalue(r, 0, 8));
  ctl->paused = PQgetvalue(r, 0, 9)[0] == 't';
  ctl->req_seq = strtoull(PQgetvalue(r, 0, 10), NULL, 10);
  ctl->req_kind = atoi(PQgetvalue(r, 0, 11));
  ctl->req_offset = strtoull(PQgetvalue(r, 0, 12), NULL, 10);
  PQclear(r);
  return 0;
}

static int pgs_get(pj_store *s, const char *name, pj_row *row, pj_ctl *ctl) {
  pg_store *p = (pg_store *)s;
  pthread_mutex_lock(&p->mu);
  int rc = ensure_conn(p);
  if (rc == 0) rc = fetch(p->conn, p->table, name, 0, row, ctl);
  pthread_mutex_unlock(&p->mu);
  return rc;
}

static int pgs_list(pj_store *s, char ***names, size_t *count) {
  pg_store *p = (pg_store *)s;
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT name FROM %s ORDER BY name", p->table);
  pthread_mutex_lock(&p->mu);
  int rc = ensure_conn(p);
  PGresult *r = rc == 0 ? exec_params(p->conn, sql, 0, NULL, "list", &rc) : NULL;
  pthread_mutex_unlock(&p->mu);
  if (!r) return rc;
  size_t n = (size_t)PQntuples(r);
  char **v = calloc(n ? n : 1, sizeof *v);
  size_t i = 0;
  for (; v && i < n; i++)
    if (!(v[i] = strdup(PQgetvalue(r, (int)i, 0)))) break;
  PQclear(r);
  if (!v || i != n) {
    for (size_t k = 0; v && k < i; k++) free(v[k]);
    free(v);
    return troupe__err(TROUPE_ENOMEM, "projection list");
  }
  *names = v;
  *count = n;
  return 0;
}

static int pgs_request(pj_store *s, const char *name, int op, uint64_t off) {
  pg_store *p = (pg_store *)s;
  char sql[600];
  const char *set;
  switch (op) {
    case TROUPE_PROJECTION_PAUSE: set = "paused = true"; break;
    case TROUPE_PROJECTION_RESUME: set = "paused = false"; break;
    default:
      set = "req_seq = t.req_seq + 1, req_kind = $2::int, "
            "req_offset = $3::bigint";
  }
  int pause = op == TROUPE_PROJECTION_PAUSE || op == TROUPE_PROJECTION_RESUME;
  snprintf(sql, sizeof sql,
           "INSERT INTO %s AS t (name, paused, req_seq, req_kind, req_offset) "
           "VALUES ($1, %s, %s, $2::int, $3::bigint) "
           "ON CONFLICT (name) DO UPDATE SET %s",
           p->table, op == TROUPE_PROJECTION_PAUSE ? "true" : "false",
           pause ? "0" : "1", set);
  char kind[16], offs[32];
  snprintf(kind, sizeof kind, "%d", pause ? 0 : op);
  snprintf(offs, sizeof offs, "%llu",
           (unsigned long long)(op == TROUPE_PROJECTION_REWIND ? off : 0));
  const char *v[3] = {name, kind, offs};
  pthread_mutex_lock(&p->mu);
  int rc = ensure_conn(p);
  PGresult *r = rc == 0 ? exec_params(p->conn, sql, 3, v, "request", &rc) : NULL;
  pthread_mutex_unlock(&p->mu);
  PQclear(r);
  return rc;
}

typedef struct pg_session {
  pj_session base;
  int in_tx;
} pg_session;

static int pgs_session_open(pj_store *s, pj_session **out) {
  pg_store *p = (pg_store *)s;
  pg_session *ss = calloc(1, sizeof *ss);
  if (!ss) return troupe__err(TROUPE_ENOMEM, "offset store session");
  PGconn *c;
  int rc = pg_connect(p->conninfo, &c);
  if (rc < 0) { free(ss); return rc; }
  ss->base.store = s;
  ss->base.conn = (struct pg_conn *)c;
  *out = &ss->base;
  return 0;
}

static void pgs_session_close(pj_session *ss) {
  if (ss->conn) PQfinish((PGconn *)ss->conn);
  free(ss);
}

static int sess_conn(pj_session *ss, PGconn **c) {
  *c = (PGconn *)ss->conn;
  if (PQstatus(*c) == CONNECTION_OK) return 0;
  PQreset(*c);
  if (PQstatus(*c) == CONNECTION_OK) return 0;
  return troupe__err(TROUPE_ECONNLOST, "postgresql: %s", PQerrorMessage(*c));
}

static int pgs_load(pj_session *ss, const char *name, pj_row *row,
                    pj_ctl *ctl) {
  PGconn *c;
  int rc = sess_conn(ss, &c);
  if (rc < 0) return rc;
  return fetch(c, ((pg_store *)ss->store)->table, name, 0, row, ctl);
}

static int pgs_begin(pj_session *ss, const char *name, int check,
                     uint64_t expect) {
  pg_session *ps = (pg_session *)ss;
  pg_store *p = (pg_store *)ss->store;
  PGconn *c;
  int rc = sess_conn(ss, &c);
  if (rc < 0) return rc;
  rc = exec_cmd(c, "BEGIN", "begin");
  if (rc < 0) return rc;
  ps->in_tx = 1;
  pj_row row;
  pj_ctl ctl;
  rc = fetch(c, p->table, name, 1, &row, &ctl);
  if (rc == TROUPE_ENOENT) {
    char sql[300];
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (name) VALUES ($1) ON CONFLICT DO NOTHING",
             p->table);
    const char *v[1] = {name};
    PGresult *r = exec_params(c, sql, 1, v, "insert", &rc);
    PQclear(r);
    if (rc == 0) rc = fetch(c, p->table, name, 1, &row, &ctl);
  }
  if (rc == 0 && check && row.offset != expect)
    rc = troupe__err(TROUPE_ECONFLICT,
                     "projection %s: stored offset %llu, expected %llu", name,
                     (unsigned long long)row.offset,
                     (unsigned long long)expect);
  if (rc < 0) {
    exec_cmd(c, "ROLLBACK", "rollback");
    ps->in_tx = 0;
  }
  return rc;
}

static int write_row(PGconn *c, pg_store *p, const char *name,
                     const pj_row *row, int status_only) {
  char sql[1200];
  if (status_only)
    snprintf(sql, sizeof sql,
             "UPDATE %s SET state = $4::int, skipped = $5::bigint, "
             "lag_events = $6::bigint, lag_ms = $7::bigint, "
             "updated_ms = $8::bigint, source = $9, last_error = $10, "
             "has_row = true WHERE name = $1 AND $2::bigint >= 0 AND "
             "$3::bigint >= 0",
             p->table);
  else
    snprintf(sql, sizeof sql,
             "INSERT INTO %s AS t (name, \"offset\", ack_seq, state, skipped, "
             "lag_events, lag_ms, updated_ms, source, last_error, has_row) "
             "VALUES ($1, $2::bigint, $3::bigint, $4::int, $5::bigint, "
             "$6::bigint, $7::bigint, $8::bigint, $9, $10, true) "
             "ON CONFLICT (name) DO UPDATE SET \"offset\" = EXCLUDED.\"offset\", "
             "ack_seq = EXCLUDED.ack_seq, state = EXCLUDED.state, "
             "skipped = EXCLUDED.skipped, lag_events = EXCLUDED.lag_events, "
             "lag_ms = EXCLUDED.lag_ms, updated_ms = EXCLUDED.updated_ms, "
             "source = EXCLUDED.source, last_error = EXCLUDED.last_error, "
             "has_row = true",
             p->table);
  char a[8][32];
  snprintf(a[0], 32, "%llu", (unsigned long long)row->offset);
  snprintf(a[1], 32, "%llu", (unsigned long long)row->ack_seq);
  snprintf(a[2], 32, "%d", row->state);
  snprintf(a[3], 32, "%llu", (unsigned long long)row->skipped);
  snprintf(a[4], 32, "%llu", (unsigned long long)row->lag_events);
  snprintf(a[5], 32, "%lld", (long long)row->lag_ms);
  snprintf(a[6], 32, "%lld", (long long)row->updated_ms);
  const char *v[10] = {name, a[0], a[1], a[2], a[3], a[4], a[5], a[6],
                       row->source, row->last_error};
  int rc;
  PGresult *r = exec_params(c, sql, 10, v, "write offset", &rc);
  PQclear(r);
  return rc;
}

static int pgs_commit(pj_session *ss, const char *name, const pj_row *row) {
  pg_session *ps = (pg_session *)ss;
  pg_store *p = (pg_store *)ss->store;
  PGconn *c;
  int rc;
  if (!ps->in_tx) {
    rc = sess_conn(ss, &c);
    return rc < 0 ? rc : write_row(c, p, name, row, 0);
  }
  c = (PGconn *)ss->conn;
  rc = write_row(c, p, name, row, 0);
  if (rc == 0 && pj_test_fault && pj_test_fault("before-commit", row->offset))
    rc = troupe__err(TROUPE_EIO, "injected fault before commit");
  if (rc < 0) {
    exec_cmd(c, "ROLLBACK", "rollback");
    ps->in_tx = 0;
    return rc;
  }
  PGresult *r = PQexec(c, "COMMIT");
  ps->in_tx = 0;
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    /* lost while committing: the outcome is unknown until the offset is
     * read back (the worker restarts and does that) */
    rc = pg_fail(c, r, "commit");
    if (PQstatus(c) != CONNECTION_OK) rc = TROUPE_EUNKNOWN;
  }
  PQclear(r);
  return rc;
}

static void pgs_abort(pj_session *ss) {
  pg_session *ps = (pg_session *)ss;
  if (!ps->in_tx) return;
  exec_cmd((PGconn *)ss->conn, "ROLLBACK", "rollback");
  ps->in_tx = 0;
}

static int pgs_publish(pj_session *ss, const char *name, const pj_row *row) {
  PGconn *c;
  int rc = sess_conn(ss, &c);
  return rc < 0 ? rc : write_row(c, (pg_store *)ss->store, name, row, 1);
}

const pj_store_vt pj_pg_vt = {
  .name = "postgresql",
  .open = pgs_open,
  .close = pgs_close,
  .get = pgs_get,
  .list = pgs_list,
  .request = pgs_request,
  .session_open = pgs_session_open,
  .session_close = pgs_session_close,
  .load = pgs_load,
  .begin = pgs_begin,
  .commit = pgs_commit,
  .abort = pgs_abort,
  .publish = pgs_publish,
};
