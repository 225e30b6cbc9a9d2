/*
 * tool_fixture.c: journals for tests/test_tool.sh.
 *
 *   tool_fixture write SPEC IDS EVENTS   IDS streams "acct-NNN" of EVENTS
 *       fixture.Deposited v1 events (tags "all", "even"/"odd", "fifth" on
 *       every fifth), a fixture.Balance snapshot at EVENTS/2; plus "raw"
 *       (three untyped payloads: valid CBOR, invalid UTF-8, too deep) and
 *       "trimmed" (6 events, deleted up to 2).
 *   tool_fixture append SPEC ID          one more event on ID
 *   tool_fixture diverge SPEC ID         a fresh stream ID whose first event
 *       differs from what `write` puts there
 *   tool_fixture corrupt-gap DIR         delete one event of a RocksDB store
 *       behind the journal's back (a hole in a stream)
 *   tool_fixture corrupt-tag DIR         delete one tag index entry
 *
 * Timestamps and writer ids are fixed so that hashes are reproducible.
 */
#include "config.h"

#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <troupe/journal.h>
#include <troupe/snapshot.h>

#include "tests/tool_types.h"


static int die(const char *what, int rc) {
  fprintf(stderr, "tool_fixture: %s: %s (%s)\n", what, troupe_strerror(rc),
          troupe_errmsg());
  return 1;
}

static int append_deposit(troupe_journal *j, const char *id, uint64_t seq,
                          int64_t amount, const char **tags, size_t ntags) {
  fx_deposited_v1 v = {amount, (char *)id};
  troupe_buf b = {0};
  int rc = troupe_encode(&fx_deposited_v1_type, &v, &b, NULL);
  if (rc < 0) return rc;
  troupe_event ev = {NULL, seq, 0, "fixture.Deposited", 1, b.data, b.len,
                     tags, ntags, 1700000000000 + (int64_t)seq * 1000, 7};
  rc = troupe_journal_append_sync(j, id, seq - 1, &ev, 1, NULL);
  troupe_buf_free(&b);
  return rc;
}

static int append_raw(troupe_journal *j, const char *id, uint64_t seq,
                      const void *p, size_t n) {
  const char *tags[] = {"raw"};
  troupe_event ev = {NULL, seq, 0, "", 1, p, n, tags, 1, 1700000000000, 9};
  return troupe_journal_append_sync(j, id, seq - 1, &ev, 1, NULL);
}

static int write_fixture(const char *spec, int nids, int nevents) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = 1;
  o.sync = 0;
  troupe_journal *j;
  troupe_snapshot_store *s;
  int rc = troupe_journal_open(spec, &o, &j);
  if (rc < 0) return die("open journal", rc);
  if ((rc = troupe_snapshot_store_open(spec, &o, &s)) < 0)
    return die("open snapshots", rc);
  for (int i = 0; i < nids; i++) {
    char id[32];
    snprintf(id, sizeof id, "acct-%03d", i);
    for (int e = 1; e <= nevents; e++) {
      const char *tags[3] = {"all", i % 2 ? "odd" : "even", "fifth"};
      rc = append_deposit(j, id, (uint64_t)e, 100 * i + e, tags,
                          e % 5 == 0 ? 3 : 2);
      if (rc < 0) return die("append", rc);
    }
    fx_balance bal = {(int64_t)i * 1000};
    troupe_buf b = {0};
    if ((rc = troupe_encode(&fx_balance_type, &bal, &b, NULL)) < 0)
      return die("encode", rc);
    troupe_snapshot snap = {id, (uint64_t)(nevents / 2 ? nevents / 2 : 1),
                            1700000000500, "fixture.Balance", 1, b.data,
                            b.len};
    rc = troupe_snapshot_save_sync(s, &snap);
    troupe_buf_free(&b);
    if (rc < 0) return die("snapshot", rc);
  }
  /* {"x": [1, h'00ff', -5, 1.5, "é"]}, "b" + invalid UTF-8, 40 nested
   * arrays */
  static const uint8_t good[] = {0xa1, 0x61, 'x', 0x85, 0x01, 0x42, 0x00,
                                 0xff, 0x24, 0xf9, 0x3e, 0x00, 0x62, 0xc3,
                                 0xa9};
  static const uint8_t bad_utf8[] = {0x62, 0xff, 0xfe};
  uint8_t deep[41];
  memset(deep, 0x81, 40);
  deep[40] = 0x01;
  if ((rc = append_raw(j, "raw", 1, good, sizeof good)) < 0 ||
      (rc = append_raw(j, "raw", 2, bad_utf8, sizeof bad_utf8)) < 0 ||
      (rc = append_raw(j, "raw", 3, deep, sizeof deep)) < 0)
    return die("append raw", rc);
  const char *tt[] = {"all"};
  for (int e = 1; e <= 6; e++)
    if ((rc = append_deposit(j, "trimmed", (uint64_t)e, e, tt, 1)) < 0)
      return die("append trimmed", rc);
  if ((rc = troupe_journal_delete_to_sync(j, "trimmed", 2)) < 0)
    return die("delete_to", rc);
  troupe_snapshot_store_close(s);
  troupe_journal_close(j);
  return 0;
}

static int append_one(const char *spec, const char *id, int diverge) {
  troupe_journal *j;
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = 1;
  int rc = troupe_journal_open(spec, &o, &j);
  if (rc < 0) return die("open", rc);
  uint64_t head = 0;
  if ((rc = troupe_journal_highest_sync(j, id, &head)) < 0)
    return die("highest", rc);
  const char *tags[] = {"all"};
  rc = append_deposit(j, id, head + 1, diverge ? -1 : 999, tags, 1);
  troupe_journal_close(j);
  return rc < 0 ? die("append", rc) : 0;
}

/* Open a RocksDB database with every column family; cf[i] named names[i]. */
static rocksdb_t *raw_open(const char *dir, char ***names, size_t *n,
                           rocksdb_column_family_handle_t ***cf) {
  char *err = NULL;
  rocksdb_options_t *opt = rocksdb_options_create();
  *names = rocksdb_list_column_families(opt, dir, n, &err);
  if (err) {
    fprintf(stderr, "tool_fixture: %s\n", err);
    return NULL;
  }
  const rocksdb_options_t **cfo = calloc(*n, sizeof *cfo);
  *cf = calloc(*n, sizeof **cf);
  for (size_t i = 0; i < *n; i++) cfo[i] = opt;
  rocksdb_t *db = rocksdb_open_column_families(
      opt, dir, (int)*n, (const char *const *)*names, cfo, *cf, &err);
  free(cfo);
  rocksdb_options_destroy(opt);
  if (err) {
    fprintf(stderr, "tool_fixture: %s\n", err);
    return NULL;
  }
  return db;
}

/* corrupt-gap: the second event of the first stream; corrupt-tag: the
 * first tag index entry. */
static int corrupt(const char *dir, int gap) {
  char **names;
  size_t n;
  rocksdb_column_family_handle_t **cf;
  rocksdb_t *db = raw_open(dir, &names, &n, &cf);
  if (!db) return 1;
  size_t k = n;
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], gap ? "events" : "tags") == 0) k = i;
  if (k == n) {
    fprintf(stderr, "tool_fixture: no column family to corrupt\n");
    return 1;
  }
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, cf[k]);
  rocksdb_iter_seek_to_first(it);
  if (gap && rocksdb_iter_valid(it)) rocksdb_iter_next(it);
  int rc = 1;
  if (rocksdb_iter_valid(it)) {
    size_t kl;
    const char *key = rocksdb_iter_key(it, &kl);
    char *copy = malloc(kl);
    memcpy(copy, key, kl);
    char *err = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_delete_cf(db, wo, cf[k], copy, kl, &err);
    rocksdb_writeoptions_destroy(wo);
    free(copy);
    if (err) fprintf(stderr, "tool_fixture: %s\n", err);
    rc = err ? 1 : 0;
    free(err);
  }
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  for (size_t i = 0; i < n; i++) rocksdb_column_family_handle_destroy(cf[i]);
  free(cf);
  rocksdb_list_column_families_destroy(names, n);
  rocksdb_close(db);
  return rc;
}

int main(int argc, char **argv) {
  (void)fx_deposited_v2_type;   /* the fixture writes version 1 only */
  if (argc == 5 && strcmp(argv[1], "write") == 0)
    return write_fixture(argv[2], atoi(argv[3]), atoi(argv[4]));
  if (argc == 4 && strcmp(argv[1], "append") == 0)
    return append_one(argv[2], argv[3], 0);
  if (argc == 4 && strcmp(argv[1], "diverge") == 0)
    return append_one(argv[2], argv[3], 1);
  if (argc == 3 && strcmp(argv[1], "corrupt-gap") == 0)
    return corrupt(argv[2], 1);
  if (argc == 3 && strcmp(argv[1], "corrupt-tag") == 0)
    return corrupt(argv[2], 0);
  fprintf(stderr, "usage: tool_fixture write SPEC IDS EVENTS | append SPEC ID"
                  " | diverge SPEC ID | corrupt-gap DIR | corrupt-tag DIR\n");
  return 2;
}
