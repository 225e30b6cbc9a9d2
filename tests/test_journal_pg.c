/* test_journal_pg.c: the storage conformance suite on PostgreSQL, plus
 * what only this backend has: schema versions, refusing foreign schemas,
 * spec forms, two stores (two connections, as two nodes would have) on
 * one schema, a terminated connection.
 *
 * The server comes from TROUPE_PG_URL (a libpq connection string, e.g.
 * from `eval "$(scripts/pg-test-server.sh start)"`). Without it the test
 * is skipped (exit 77) and says why; with it set but the server not
 * reachable it fails. Every store gets its own schema troupe_test_<pid>_<n>,
 * dropped at the end. */
#include "tt.h"
#include "journal_conformance.h"
#include "troupe/troupe.h"
#include "troupe/journal.h"
#include "troupe/snapshot.h"
#include "troupe/state.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static const char *url;
static int nschema;

/* A spec for a new schema; `extra` is appended to the conninfo. */
static void make_spec(char *buf, size_t size, char *schema, size_t ssize,
                      const char *extra) {
  snprintf(schema, ssize, "troupe_test_%d_%d", (int)getpid(), ++nschema);
  snprintf(buf, size, "pg:%s schema=%s%s%s", url, schema, extra ? " " : "",
           extra ? extra : "");
}

static int pg_spec(char *buf, size_t size, void *data) {
  char schema[64];
  (void)data;
  make_spec(buf, size, schema, sizeof schema, NULL);
  return 0;
}

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

static void drop_schema(const char *spec, void *data) {
  (void)data;
  const char *p = strstr(spec, "schema=");
  if (!p) return;
  char name[64], q[160];
  size_t n = strcspn(p + 7, " &");
  if (n >= sizeof name) return;
  memcpy(name, p + 7, n);
  name[n] = 0;
  snprintf(q, sizeof q, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", name);
  sql(q);
}

static troupe_store_options create_opts(void) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = 1;
  o.sync = 0;
  return o;
}

static troupe_event one_event(const char *payload) {
  troupe_event e;
  memset(&e, 0, sizeof e);
  e.manifest = "m";
  e.payload = payload;
  e.payload_len = strlen(payload);
  return e;
}

/* Specs used by these tests, dropped at the end. */
static char owned[32][600];
static int nowned;
static const char *own(const char *spec) {
  snprintf(owned[nowned], sizeof owned[0], "%s", spec);
  return owned[nowned++];
}

static void test_missing_and_bad_specs(void) {
  char spec[600], schema[64];
  make_spec(spec, sizeof spec, schema, sizeof schema, NULL);
  own(spec);
  troupe_store_options o;
  troupe_store_options_init(&o);
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ENOENT);
  TT_ASSERT(j == NULL);
  TT_ASSERT(strstr(troupe_errmsg(), schema) != NULL);
  o.create_if_missing = 1;
  char bad[700];
  snprintf(bad, sizeof bad, "pg:%s schema=Bad-Name", url);
  TT_EQ_INT(troupe_journal_open(bad, &o, &j), TROUPE_EINVAL);
  snprintf(bad, sizeof bad, "pg:%s schema=", url);
  TT_EQ_INT(troupe_journal_open(bad, &o, &j), TROUPE_EINVAL);
  /* an unreachable server: one clear error, no hang */
  TT_EQ_INT(troupe_journal_open(
                "pg:host=/nonexistent/dir port=1 connect_timeout=2", &o, &j),
            TROUPE_ECONNREFUSED);
  TT_ASSERT(strstr(troupe_errmsg(), "postgresql") != NULL);
}

/* The URI form: postgresql:///DB?host=…&port=…&user=…&schema=… */
static void test_uri_spec(void) {
  char *err = NULL;
  PQconninfoOption *opts = PQconninfoParse(url, &err);
  if (!opts) {
    PQfreemem(err);
    TT_SKIP("TROUPE_PG_URL is not a key=value string");
  }
  char spec[1000], schema[64];
  snprintf(schema, sizeof schema, "troupe_test_%d_%d", (int)getpid(),
           ++nschema);
  char db[128] = "postgres";
  char q[800] = "";
  size_t at = 0;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val) continue;
    if (strcmp(o->keyword, "dbname") == 0) {
      snprintf(db, sizeof db, "%s", o->val);
      continue;
    }
    if (strchr(o->val, '&') || strchr(o->val, ' ') || strchr(o->val, '%')) {
      PQconninfoFree(opts);
      TT_SKIP("TROUPE_PG_URL has values a URI would need to escape");
    }
    at += (size_t)snprintf(q + at, sizeof q - at, "%s=%s&", o->keyword,
                           o->val);
  }
  snprintf(spec, sizeof spec, "postgresql:///%s?%sschema=%s", db, q, schema);
  PQconninfoFree(opts);
  own(spec);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  troupe_event e = one_event("u");
  uint64_t h = 0;
  TT_EQ_INT(troupe_journal_append_sync(j, "u", 0, &e, 1, &h), 0);
  TT_EQ_INT(h, 1);
  TT_EQ_INT(troupe_journal_close(j), 0);
  /* the schema parameter in the middle of the query */
  char spec2[1100];
  snprintf(spec2, sizeof spec2, "postgresql:///%s?schema=%s&%s", db, schema,
           q);
  spec2[strlen(spec2) - 1] = 0;               /* the trailing & */
  j = NULL;
  if (troupe_journal_open(spec2, &o, &j) != 0)
    fprintf(stderr, "%s: %s\n", spec2, troupe_errmsg());
  TT_ASSERT(j != NULL);
  TT_EQ_INT(troupe_journal_highest_sync(j, "u", &h), 0);
  TT_EQ_INT(h, 1);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static void test_schema_version(void) {
  char spec[600], schema[64], q[300];
  make_spec(spec, sizeof spec, schema, sizeof schema, NULL);
  own(spec);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  troupe_event e = one_event("v");
  TT_EQ_INT(troupe_journal_append_sync(j, "p", 0, &e, 1, NULL), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
  /* a newer store: every version row one up (1, 2 -> 2, 3) */
  snprintf(q, sizeof q, "UPDATE \"%s\".troupe_schema_version"
           " SET version = version + 1", schema);
  TT_EQ_INT(sql(q), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(strstr(troupe_errmsg(), "version 3") != NULL);
  TT_ASSERT(strstr(troupe_errmsg(), "newer") != NULL);
  troupe_schema_status st;
  TT_EQ_INT(troupe_store_schema(spec, &st), 0);
  TT_EQ_INT(st.found, 3);
  TT_EQ_INT(st.pending, 0);
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), TROUPE_ESCHEMA);
  TT_EQ_INT(troupe_store_migrate(spec, 1, NULL, NULL), TROUPE_ESCHEMA);
  /* an older one: only version 1 recorded */
  snprintf(q, sizeof q, "DELETE FROM \"%s\".troupe_schema_version"
           " WHERE version > 1", schema);
  TT_EQ_INT(sql(q), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_ASSERT(strstr(troupe_errmsg(), "troupe journal migrate") != NULL);
  /* rows that are no version at all */
  snprintf(q, sizeof q, "UPDATE \"%s\".troupe_schema_version SET version = 0",
           schema);
  TT_EQ_INT(sql(q), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), TROUPE_ESCHEMA);
  snprintf(q, sizeof q, "UPDATE \"%s\".troupe_schema_version SET version = 1;"
           " INSERT INTO \"%s\".troupe_schema_version (version) VALUES (2)",
           schema, schema);
  TT_EQ_INT(sql(q), 0);
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  uint64_t h = 0;
  TT_EQ_INT(troupe_journal_highest_sync(j, "p", &h), 0);
  TT_EQ_INT(h, 1);
  /* not while this process has the store open */
  TT_EQ_INT(troupe_store_migrate(spec, 0, NULL, NULL), TROUPE_EBUSY);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

static void test_foreign_schema(void) {
  char spec[600], schema[64], q[300];
  make_spec(spec, sizeof spec, schema, sizeof schema, NULL);
  own(spec);
  snprintf(q, sizeof q,
           "CREATE SCHEMA \"%s\"; CREATE TABLE \"%s\".other (x int)", schema,
           schema);
  TT_EQ_INT(sql(q), 0);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ESCHEMA);
  /* an existing but empty schema is adopted when asked */
  snprintf(q, sizeof q, "DROP TABLE \"%s\".other", schema);
  TT_EQ_INT(sql(q), 0);
  o.create_if_missing = 0;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), TROUPE_ENOENT);
  o.create_if_missing = 1;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

/* Two stores on one schema (two connections, as two nodes would be):
 * writers on both, a polling by-tag reader never sees a gap, and the
 * offsets end up 1..N; heads are checked across connections. */
typedef struct node_writer {
  troupe_journal *j;
  int idx, rc;
} node_writer;

static void *node_writer_main(void *arg) {
  node_writer *w = arg;
  char pid[16];
  snprintf(pid, sizeof pid, "n%d", w->idx);
  const char *tags[] = {"t"};
  for (uint64_t seq = 0; seq < 200; seq++) {
    troupe_event e = one_event("x");
    e.tags = tags;
    e.ntags = 1;
    int rc = troupe_journal_append_sync(w->j, pid, seq, &e, 1, NULL);
    if (rc < 0) {
      w->rc = rc;
      return NULL;
    }
  }
  return NULL;
}

typedef struct follow {
  uint64_t last;
  int gaps;
} follow;

static int follow_cb(int status, const troupe_event *ev, size_t n, int done,
                     void *data) {
  follow *f = data;
  (void)done;
  if (status < 0) {
    f->gaps++;
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (ev[i].offset != f->last + 1) f->gaps++;
    f->last = ev[i].offset;
  }
  return 0;
}

static void test_two_nodes(void) {
  char spec[600], schema[64], spec2[700];
  make_spec(spec, sizeof spec, schema, sizeof schema, NULL);
  own(spec);
  /* another spec string for the same schema: a second store, its own
   * connection */
  snprintf(spec2, sizeof spec2, "%s application_name=troupe_node2", spec);
  troupe_store_options o = create_opts();
  troupe_journal *a = NULL, *b = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &a), 0);
  TT_EQ_INT(troupe_journal_open(spec2, &o, &b), 0);
  node_writer w[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (node_writer){i % 2 ? b : a, i, 0};
    pthread_create(&t[i], NULL, node_writer_main, &w[i]);
  }
  follow f = {0, 0};
  uint64_t dl = tt_now_ms() + 30000;
  while (f.last < 800 && tt_now_ms() < dl)
    TT_EQ_INT(troupe_journal_by_tag_sync(b, "t", f.last, 0, follow_cb, &f), 0);
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    TT_EQ_INT(w[i].rc, 0);
  }
  TT_EQ_INT(f.gaps, 0);
  TT_EQ_INT(f.last, 800);
  /* a conflict detected across connections */
  troupe_event e = one_event("y");
  uint64_t h = 0;
  TT_EQ_INT(troupe_journal_append_sync(a, "n1", 199, &e, 1, &h),
            TROUPE_ECONFLICT);
  TT_EQ_INT(h, 200);
  TT_EQ_INT(troupe_journal_close(a), 0);
  TT_EQ_INT(troupe_journal_close(b), 0);
}

/* The server ends the store's idle connection: the next operation finds
 * it gone, reconnects and succeeds (the group never reached COMMIT, so it
 * is simply run again). */
static void test_terminated_connection(void) {
  char spec[600], schema[64], app[80], q[300];
  snprintf(app, sizeof app, "application_name=troupe_kill_%d", (int)getpid());
  make_spec(spec, sizeof spec, schema, sizeof schema, app);
  own(spec);
  troupe_store_options o = create_opts();
  troupe_journal *j = NULL;
  TT_EQ_INT(troupe_journal_open(spec, &o, &j), 0);
  troupe_event e = one_event("k");
  TT_EQ_INT(troupe_journal_append_sync(j, "k", 0, &e, 1, NULL), 0);
  snprintf(q, sizeof q,
           "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
           " WHERE application_name = 'troupe_kill_%d'", (int)getpid());
  /* with a timeout, pg_terminate_backend returns once the backend is gone
   * (or fails after 5 s): a bounded wait, no sleep */
  TT_EQ_INT(sql(q), 0);
  uint64_t h = 0;
  TT_EQ_INT(troupe_journal_append_sync(j, "k", 1, &e, 1, &h), 0);
  TT_EQ_INT(h, 2);
  TT_EQ_INT(sql(q), 0);
  TT_EQ_INT(troupe_journal_highest_sync(j, "k", &h), 0);
  TT_EQ_INT(h, 2);
  TT_EQ_INT(troupe_journal_append_sync(j, "k", 2, &e, 1, &h), 0);
  TT_EQ_INT(h, 3);
  TT_EQ_INT(troupe_journal_close(j), 0);
}

int main(int argc, char **argv) {
  url = getenv("TROUPE_PG_URL");
  if (!url || !*url) {
    printf("# SKIP test_journal_pg: TROUPE_PG_URL is not set (start a server "
           "with: eval \"$(scripts/pg-test-server.sh start)\")\n");
    fprintf(stderr, "test_journal_pg: skipped: TROUPE_PG_URL is not set\n");
    return 77;
  }
  PGconn *c = admin();
  if (!c) {
    fprintf(stderr, "test_journal_pg: TROUPE_PG_URL is set but the server "
                    "is not reachable\n");
    return 1;
  }
  PQfinish(c);
  jc_backend b = {"postgresql", pg_spec, drop_schema, 1, NULL};
  int rc = jc_run(argc, argv, &b);
  tt_init(argc, argv);
  TT_RUN(test_missing_and_bad_specs);
  TT_RUN(test_uri_spec);
  TT_RUN(test_schema_version);
  TT_RUN(test_foreign_schema);
  TT_RUN(test_two_nodes);
  TT_RUN(test_terminated_connection);
  int rc2 = tt_done();
  for (int i = 0; i < nowned; i++) drop_schema(owned[i], NULL);
  if (rc == 1 || rc2 == 1) return 1;
  return rc == 77 && rc2 == 77 ? 77 : 0;
}
