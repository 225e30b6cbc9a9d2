/*
 * bench_pg_raw.c: the physical limit under troupe's PostgreSQL journal: raw
 * libpq loops against $TROUPE_PG_URL, with synchronous_commit on, writing
 * 100-byte payloads under the journal's key shape (a text id and a bigint
 * seq, the primary key). Workloads (one result line each, all
 * workload=persist except the scan):
 *
 *   mode=single      one INSERT of one row per transaction (autocommit);
 *                    events/s = transactions/s            batch=1
 *   mode=multi-row   one INSERT ... VALUES (..),(..) of 100 rows per
 *                    transaction                          batch=100
 *   mode=pipeline    pipeline mode: 100 single-row INSERTs (prepared) then
 *                    a sync (one implicit transaction per sync), up to
 *                    `depth` syncs in flight              batch=100
 *   recovery         single-row mode SELECT of everything mode=multi-row
 *                    wrote, in key order                  mode=single-row
 *
 * Sizes: PGRAW_SINGLE (default 500 transactions), PGRAW_MULTI (50000
 * events), PGRAW_PIPE (50000 events), PGRAW_DEPTH (4 syncs in flight);
 * PGRAW_ENTITIES ids (default 1000) are written round-robin by the batched
 * modes. Each workload uses its own table in a private schema, dropped at
 * the end; every figure is verified by counting the rows back. Without
 * TROUPE_PG_URL it prints why on stderr and exits 0 with no result line.
 *
 * Every commit waits for its WAL flush and one connection commits one
 * transaction at a time, so the batched modes are bound by rows per commit
 * times flushes per second; pipelining saves the round trips, not the
 * flushes. Many connections committing at once share flushes (group
 * commit in the server); that is not measured here.
 */
#define _GNU_SOURCE 1
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define PAYLOAD 100
#define BATCH 100
#define OID_TEXT 25
#define OID_INT8 20
#define OID_BYTEA 17

static PGconn *conn;
static char schema[64];

static void die(const char *what, const char *detail) {
  fprintf(stderr, "bench_pg_raw: %s: %s\n", what,
          detail ? detail : PQerrorMessage(conn));
  exit(1);
}

static void exec_ok(const char *sql) {
  PGresult *r = PQexec(conn, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) die(sql, NULL);
  PQclear(r);
}

static void be64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)v; v >>= 8; }
}

static void make_table(const char *t) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "CREATE TABLE %s.%s (pid text COLLATE \"C\" NOT NULL, seq bigint "
           "NOT NULL, payload bytea NOT NULL, PRIMARY KEY (pid, seq))",
           schema, t);
  exec_ok(sql);
}

static long count_rows(const char *t) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT count(*), coalesce(sum(length(payload)), 0) FROM %s.%s",
           schema, t);
  PGresult *r = PQexec(conn, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) die("count", NULL);
  long n = atol(PQgetvalue(r, 0, 0));
  long bytes = atol(PQgetvalue(r, 0, 1));
  PQclear(r);
  if (bytes != n * PAYLOAD) die("count", "payload bytes do not add up");
  return n;
}

static void verify(const char *t, long expect) {
  long n = count_rows(t);
  if (n != expect) {
    fprintf(stderr, "bench_pg_raw: %s holds %ld rows, expected %ld\n", t, n,
            expect);
    exit(1);
  }
}

/* Row i of a batched workload: id "e<i % entities>", its next seq. */
typedef struct row {
  char pid[24];
  unsigned char seq[8];
  unsigned char payload[PAYLOAD];
} row;

static void fill_row(row *r, long i, long entities, uint64_t *seqs) {
  long id = i % entities;
  snprintf(r->pid, sizeof r->pid, "e%05ld", id);
  be64(r->seq, ++seqs[id]);
  memset(r->payload, 'v', PAYLOAD);
  be64(r->payload, (uint64_t)i);
}

static void bind_row(row *r, const char **v, int *l, int *f) {
  v[0] = r->pid;
  l[0] = (int)strlen(r->pid);
  f[0] = 1;
  v[1] = (const char *)r->seq;
  l[1] = 8;
  f[1] = 1;
  v[2] = (const char *)r->payload;
  l[2] = PAYLOAD;
  f[2] = 1;
}

static void prepare(const char *name, const char *sql, int nparams) {
  Oid *types = malloc((size_t)nparams * sizeof *types);
  for (int i = 0; i < nparams; i++)
    types[i] = i % 3 == 0 ? OID_TEXT : i % 3 == 1 ? OID_INT8 : OID_BYTEA;
  PGresult *r = PQprepare(conn, name, sql, nparams, types);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die("prepare", NULL);
  PQclear(r);
  free(types);
}

/* One row per autocommit INSERT. */
static double single(long n) {
  make_table("raw_single");
  char sql[256];
  snprintf(sql, sizeof sql, "INSERT INTO %s.raw_single VALUES ($1, $2, $3)",
           schema);
  prepare("ins1", sql, 3);
  uint64_t seq = 0;
  row r;
  const char *v[3];
  int l[3], f[3];
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    fill_row(&r, i, 1, &seq);
    bind_row(&r, v, l, f);
    PGresult *res = PQexecPrepared(conn, "ins1", 3, v, l, f, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) die("insert", NULL);
    PQclear(res);
  }
  double dt = bench_now() - t0;
  verify("raw_single", n);
  return (double)n / dt;
}

/* BATCH rows per autocommit multi-row INSERT. */
static double multi(long n, long entities) {
  make_table("raw_multi");
  size_t cap = 64 + BATCH * 32;
  char *sql = malloc(cap);
  size_t len = (size_t)snprintf(sql, cap, "INSERT INTO %s.raw_multi VALUES ",
                                schema);
  for (int i = 0; i < BATCH; i++)
    len += (size_t)snprintf(sql + len, cap - len, "%s($%d, $%d, $%d)",
                            i ? ", " : "", 3 * i + 1, 3 * i + 2, 3 * i + 3);
  prepare("insm", sql, 3 * BATCH);
  free(sql);
  uint64_t *seqs = calloc((size_t)entities, sizeof *seqs);
  row *rows = malloc(BATCH * sizeof *rows);
  const char *v[3 * BATCH];
  int l[3 * BATCH], f[3 * BATCH];
  double t0 = bench_now();
  for (long i = 0; i < n; i += BATCH) {
    for (int k = 0; k < BATCH; k++) {
      fill_row(&rows[k], i + k, entities, seqs);
      bind_row(&rows[k], v + 3 * k, l + 3 * k, f + 3 * k);
    }
    PGresult *res = PQexecPrepared(conn, "insm", 3 * BATCH, v, l, f, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) die("insert", NULL);
    PQclear(res);
  }
  double dt = bench_now() - t0;
  free(rows);
  free(seqs);
  verify("raw_multi", n);
  return (double)n / dt;
}

/* Read the results of one pipelined batch: BATCH inserts and the sync. */
static void pipe_collect(void) {
  for (int k = 0; k < BATCH; k++) {
    PGresult *res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) die("pipelined insert", NULL);
    PQclear(res);
    if ((res = PQgetResult(conn)) != NULL) die("pipeline", "extra result");
  }
  PGresult *res = PQgetResult(conn);
  if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) die("pipeline sync", NULL);
  PQclear(res);
}

/* BATCH prepared single-row INSERTs per sync, `depth` syncs in flight. */
static double pipeline(long n, long entities, int depth) {
  make_table("raw_pipe");
  char sql[256];
  snprintf(sql, sizeof sql, "INSERT INTO %s.raw_pipe VALUES ($1, $2, $3)",
           schema);
  prepare("insp", sql, 3);
  uint64_t *seqs = calloc((size_t)entities, sizeof *seqs);
  long batches = n / BATCH, sent = 0, done = 0;
  row r;
  const char *v[3];
  int l[3], f[3];
  if (!PQenterPipelineMode(conn)) die("pipeline mode", NULL);
  double t0 = bench_now();
  while (done < batches) {
    while (sent < batches && sent - done < depth) {
      for (int k = 0; k < BATCH; k++) {
        fill_row(&r, sent * BATCH + k, entities, seqs);
        bind_row(&r, v, l, f);
        if (!PQsendQueryPrepared(conn, "insp", 3, v, l, f, 0))
          die("send", NULL);
      }
      if (!PQpipelineSync(conn)) die("sync", NULL);
      sent++;
    }
    pipe_collect();
    done++;
  }
  double dt = bench_now() - t0;
  if (!PQexitPipelineMode(conn)) die("exit pipeline mode", NULL);
  free(seqs);
  verify("raw_pipe", batches * BATCH);
  return (double)(batches * BATCH) / dt;
}

/* Every row of raw_multi in key order, one PGresult per row. */
static double scan(long expect) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT pid, seq, payload FROM %s.raw_multi ORDER BY pid, seq",
           schema);
  double t0 = bench_now();
  if (!PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1))
    die("scan", NULL);
  if (!PQsetSingleRowMode(conn)) die("single-row mode", NULL);
  long n = 0, bytes = 0;
  PGresult *res;
  while ((res = PQgetResult(conn)) != NULL) {
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_SINGLE_TUPLE) {
      n++;
      bytes += PQgetlength(res, 0, 2);
    } else if (st != PGRES_TUPLES_OK) {
      die("scan", NULL);
    }
    PQclear(res);
  }
  double dt = bench_now() - t0;
  if (n != expect || bytes != expect * PAYLOAD) {
    fprintf(stderr, "bench_pg_raw: scanned %ld rows, expected %ld\n", n,
            expect);
    exit(1);
  }
  return (double)n / dt;
}

int main(int argc, char **argv) {
  (void)argc; (void)argv;
  const char *url = getenv("TROUPE_PG_URL");
  if (!url || !*url) {
    fprintf(stderr, "bench_pg_raw: skipped: TROUPE_PG_URL is not set (start "
            "a server with `eval \"$(scripts/pg-test-server.sh start)\"`)\n");
    return 0;
  }
  long n1 = bench_env_long("PGRAW_SINGLE", 500);
  long nm = bench_env_long("PGRAW_MULTI", 50000) / BATCH * BATCH;
  long np = bench_env_long("PGRAW_PIPE", 50000) / BATCH * BATCH;
  long ents = bench_env_long("PGRAW_ENTITIES", 1000);
  int depth = (int)bench_env_long("PGRAW_DEPTH", 4);
  if (n1 < 1 || nm < BATCH || np < BATCH || ents < 1 || depth < 1) {
    fprintf(stderr, "bench_pg_raw: bad sizes\n");
    return 1;
  }
  conn = PQconnectdb(url);
  if (PQstatus(conn) != CONNECTION_OK) die("connect", NULL);
  snprintf(schema, sizeof schema, "bench_pg_raw_%d", (int)getpid());
  char sql[128];
  snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema);
  exec_ok("SET synchronous_commit = on");
  exec_ok("SET client_min_messages = warning");
  exec_ok(sql);

  fprintf(stderr, "pg raw: %ld single-row transactions...\n", n1);
  double r1 = single(n1);
  printf("workload=persist system=libpq-raw value=%.0f unit=events/s "
         "backend=postgres entities=1 sync=1 size=100 batch=1 mode=single\n",
         r1);
  fprintf(stderr, "pg raw: %ld events in %d-row INSERTs...\n", nm, BATCH);
  double rm = multi(nm, ents);
  printf("workload=persist system=libpq-raw value=%.0f unit=events/s "
         "backend=postgres entities=%ld sync=1 size=100 batch=%d "
         "mode=multi-row\n", rm, ents, BATCH);
  fprintf(stderr, "pg raw: %ld events pipelined, %d per sync, depth %d...\n",
          np, BATCH, depth);
  double rp = pipeline(np, ents, depth);
  printf("workload=persist system=libpq-raw value=%.0f unit=events/s "
         "backend=postgres entities=%ld sync=1 size=100 batch=%d depth=%d "
         "mode=pipeline\n", rp, ents, BATCH, depth);
  fprintf(stderr, "pg raw: single-row-mode scan of %ld rows...\n", nm);
  double rs = scan(nm);
  printf("workload=recovery system=libpq-raw value=%.0f unit=events/s "
         "backend=postgres entities=%ld events=%ld mode=single-row\n", rs,
         ents, nm / ents);

  snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
  exec_ok(sql);
  PQfinish(conn);
  return 0;
}
