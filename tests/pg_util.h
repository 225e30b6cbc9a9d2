/* pg_util.h: what the PostgreSQL tests (test_journal_pg, test_pg_connloss)
 * share: the server's URL, an admin connection with notices silenced, one
 * SQL statement on its own connection, and an append-acknowledgement
 * callback that records its result.
 *
 * Include after tt.h; the including test sets `url` (from TROUPE_PG_URL)
 * in main before anything here is used. */
#ifndef TROUPE_TESTS_PG_UTIL_H
#define TROUPE_TESTS_PG_UTIL_H

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

static const char *url;

static void quiet(void *arg, const char *msg) { (void)arg; (void)msg; }

static PGconn *admin(void) {
  PGconn *c = PQconnectdb(url);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "connect %s: %s", url, PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  PQsetNoticeProcessor(c, quiet, NULL);
  return c;
}

static int sql(const char *q) {
  PGconn *c = admin();
  if (!c) return -1;
  PGresult *r = PQexec(c, q);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
           PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) fprintf(stderr, "%s: %s", q, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
  return ok ? 0 : -1;
}

/* An append's acknowledgement: its status and head, then done = 1. */
typedef struct acked {
  atomic_int done;
  int status;
  uint64_t head;
} acked;

static void acked_cb(int status, uint64_t head, void *data) {
  acked *a = data;
  a->status = status;
  a->head = head;
  atomic_store(&a->done, 1);
}

#endif
