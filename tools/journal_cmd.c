/*
 * journal_cmd.c: `troupe journal`: the dispatcher and the status, migrate
 * and inspect subcommands (verify and copy have files of their own).
 */
#include "tools/cmd.h"
#include "tools/journal.h"
#include "tools/cbor_diag.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char journal_help[] =
    "usage: troupe journal COMMAND [OPTIONS] URL ...\n"
    "\n"
    "Commands:\n"
    "  status URL            schema version, events, ids, highest offset\n"
    "  migrate URL           bring the storage schema to this version\n"
    "  verify URL            check contiguity, the tag index; print hashes\n"
    "  copy SRC DST          copy every stream (resumable, verified)\n"
    "  inspect URL --id ID   print the events of one persistence id\n"
    "\n"
    "URLs: rocksdb:DIR, postgresql://USER@HOST/DB?schema=NAME,\n"
    "      pg:KEY=VALUE ... (libpq key=value, plus schema=NAME).\n"
    "Run `troupe journal COMMAND --help` for a command's options.\n"
    "Exit status: 0 ok, 1 problems found in the data, 2 bad command line,\n"
    "3 a store could not be opened, read or written, 4 copy incomplete.\n";

void tool_print_id(FILE *f, const char *id) {
  tool_json_str(f, id, strlen(id));
}

int troupe_cmd_journal(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {
      {"status", tool_journal_status},   {"migrate", tool_journal_migrate},
      {"verify", tool_journal_verify},   {"copy", tool_journal_copy},
      {"inspect", tool_journal_inspect},
  };
  tool_prog = "troupe journal";
  if (argc < 2) {
    fputs(journal_help, stderr);
    return TOOL_EXIT_USAGE;
  }
  const char *sub = argv[1];
  if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 ||
      strcmp(sub, "help") == 0) {
    fputs(journal_help, stdout);
    return TOOL_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    if (strcmp(sub, cmds[i].name) == 0) {
      static char prog[64];
      snprintf(prog, sizeof prog, "troupe journal %s", cmds[i].name);
      tool_prog = prog;
      return cmds[i].fn(argc - 1, argv + 1);
    }
  }
  return tool_usage("unknown command \"%s\"", sub);
}

/* --- status ----------------------------------------------------------------- */

static const char status_help[] =
    "usage: troupe journal status URL\n"
    "\n"
    "Print the store's schema version (found, supported by this troupe,\n"
    "migration steps pending), the number of persistence ids, of stored\n"
    "events and the highest global offset. Reads everything once (by slice,\n"
    "or id by id when the backend cannot read by slice).\n";

typedef struct count_ctx {
  uint64_t events;
  uint64_t max_offset;
} count_ctx;

static int count_cb(int status, const troupe_event *ev, size_t n, int done,
                    void *data) {
  count_ctx *c = data;
  (void)done;
  if (status < 0) return 1;
  for (size_t i = 0; i < n; i++) {
    c->events++;
    if (ev[i].offset > c->max_offset) c->max_offset = ev[i].offset;
  }
  return 0;
}

/* Print the store and schema lines; sets *usable when this troupe can
 * read the store. */
static int print_schema(const char *spec, int *usable) {
  troupe_schema_status st;
  int rc = troupe_store_schema(spec, &st);
  if (rc < 0)
    return tool_err(rc, "cannot read the schema version of %s",
                    tool_spec_shown(spec));
  printf("store:           %s\n", tool_spec_shown(spec));
  printf("schema version:  %d found, %d supported", st.found, st.supported);
  if (st.found > st.supported)
    printf(" (written by a newer troupe: upgrade troupe)\n");
  else if (st.pending > 0)
    printf(", %d migration step%s pending (run `troupe journal migrate`)\n",
           st.pending, st.pending == 1 ? "" : "s");
  else
    printf(" (current)\n");
  *usable = st.found <= st.supported && st.pending == 0;
  return 0;
}

int tool_journal_status(int argc, char **argv) {
  const char *pos[1];
  int ex = tool_parse_cmd(argc, argv, NULL, 0, pos, 1, status_help,
                          "expected one URL");
  if (ex >= 0) return ex;
  const char *spec = pos[0];

  int usable, rc;
  if ((rc = print_schema(spec, &usable)) != 0) return rc;
  if (!usable) return TOOL_EXIT_OK;

  troupe_journal *j;
  if ((rc = tool_open_journal("", spec, 0, &j)) != 0) return rc;
  uint64_t nids = 0;
  tool_ids ids = {NULL, 0};
  char *after = NULL;
  count_ctx c = {0, 0};
  const char *how = "by slice";
  int err = troupe_journal_by_slice_sync(j, 0, TROUPE_JOURNAL_SLICES - 1, 0,
                                         0, count_cb, &c);
  int per_id = err == TROUPE_EUNSUPPORTED;
  if (per_id) {
    how = "id by id (the backend cannot read by slice)";
    c.events = c.max_offset = 0;
    err = 0;
  } else if (err < 0) {
    rc = tool_err(err, "reading %s by slice", tool_spec_shown(spec));
    goto out;
  }
  for (;;) {
    if ((err = tool_ids_next(j, after, &ids)) < 0) {
      rc = tool_err(err, "listing the ids of %s", tool_spec_shown(spec));
      goto out;
    }
    for (size_t i = 0; per_id && i < ids.n; i++) {
      err = troupe_journal_replay_sync(j, ids.ids[i], 1, UINT64_MAX, 0,
                                       count_cb, &c);
      if (err < 0) {
        rc = tool_err(err, "replaying \"%s\"", ids.ids[i]);
        goto out;
      }
    }
    nids += ids.n;
    int next = tool_ids_advance(&after, &ids);
    if (next == 0) break;
    if (next < 0) {
      rc = tool_err(TROUPE_ENOMEM, "listing ids");
      goto out;
    }
  }
  printf("persistence ids: %" PRIu64 "\n", nids);
  printf("events:          %" PRIu64 " stored\n", c.events);
  printf("highest offset:  %" PRIu64 "\n", c.max_offset);
  printf("counted:         %s\n", how);
  rc = TOOL_EXIT_OK;
out:
  free(after);
  tool_ids_free(&ids);
  troupe_journal_close(j);
  return rc;
}

/* --- migrate ---------------------------------------------------------------- */

static const char migrate_help[] =
    "usage: troupe journal migrate URL [--dry-run]\n"
    "\n"
    "Apply every pending storage schema migration step, in order, each one\n"
    "atomically, printing each (FROM -> TO: description). Idempotent: a\n"
    "current store prints \"already at version N\". With --dry-run, print\n"
    "the steps without changing anything. No process may have the store\n"
    "open while it runs.\n";

static void migrate_cb(int from, int to, const char *description,
                       int dry_run, void *data) {
  (void)data;
  printf("%s%d -> %d: %s\n", dry_run ? "would apply " : "applied ", from, to,
         description ? description : "");
  fflush(stdout);
}

int tool_journal_migrate(int argc, char **argv) {
  int dry = 0;
  const tool_opt opts[] = {{"--dry-run", 0, NULL, &dry}};
  const char *pos[1];
  int ex = tool_parse_cmd(argc, argv, opts, 1, pos, 1, migrate_help,
                          "expected one URL");
  if (ex >= 0) return ex;
  const char *spec = pos[0];

  troupe_schema_status st;
  int rc = troupe_store_schema(spec, &st);
  if (rc < 0)
    return tool_err(rc, "cannot read the schema version of %s",
                    tool_spec_shown(spec));
  if (st.found > st.supported) {
    tool_say("%s has schema version %d, newer than this troupe's %d: "
             "upgrade troupe", tool_spec_shown(spec), st.found, st.supported);
    return TOOL_EXIT_STORE;
  }
  int steps = 0;
  if (st.pending > 0) {
    steps = troupe_store_migrate(spec, dry, migrate_cb, NULL);
    if (steps < 0)
      return tool_err(steps, "migrating %s", tool_spec_shown(spec));
  }
  if (steps == 0) {
    /* The schema calls need no store to exist for backends without a
     * stored schema: make sure there is one before saying it is fine. */
    troupe_journal *j;
    if ((rc = tool_open_journal("", spec, 0, &j)) != 0) return rc;
    troupe_journal_close(j);
    printf("already at version %d\n", st.supported);
  } else if (dry) {
    printf("dry run: %d step%s would run, from version %d to %d\n", steps,
           steps == 1 ? "" : "s", st.found, st.supported);
  } else {
    printf("migrated from version %d to %d (%d step%s)\n", st.found,
           st.supported, steps, steps == 1 ? "" : "s");
  }
  return TOOL_EXIT_OK;
}

/* --- inspect ---------------------------------------------------------------- */

static const char inspect_help[] =
    "usage: troupe journal inspect URL --id ID [--from N] [--to M] [--json]\n"
    "                              [--plugin SO]\n"
    "\n"
    "Print the events of one persistence id with FROM <= seq <= TO, one per\n"
    "event. Payloads are decoded through the type registry when a plugin\n"
    "registered their type (--plugin, see troupe(1)), else shown as CBOR\n"
    "diagnostic notation (text) or generic JSON (--json). --json prints one\n"
    "JSON object per line. A malformed payload is reported on its line and\n"
    "makes the exit status 1.\n";

#define INSPECT_MAX_TEXT ((size_t)1 << 20)   /* characters of one payload */

typedef struct inspect_ctx {
  int json;
  int plugin;
  uint64_t printed;
  uint64_t bad;
  troupe_buf buf;
} inspect_ctx;

static void print_time(int64_t ms) {
  time_t s = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  int frac = (int)(ms - (int64_t)s * 1000);
  struct tm tm;
  if (!gmtime_r(&s, &tm)) {
    printf("%" PRId64 "ms", ms);
    return;
  }
  char t[40];
  strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
  printf("%s.%03dZ", t, frac);
}

/* Render the payload as JSON through the registry; 1 when done, 0 when
 * the type is not known (or fails to decode: then *why says so). */
static int payload_typed(inspect_ctx *c, const troupe_event *ev,
                         const troupe_type **type, const char **why) {
  const troupe_type *t = NULL;
  *why = NULL;
  if (!c->plugin || troupe_type_resolve(ev->manifest, ev->version, &t) < 0)
    return 0;
  void *v = calloc(1, t->size ? t->size : 1);
  if (!v) return 0;
  int rc = troupe_decode_as(ev->manifest, ev->version, ev->payload,
                            ev->payload_len, t, v, NULL);
  if (rc == 0) {
    troupe_buf_clear(&c->buf);
    rc = troupe_value_to_json(t, v, &c->buf, NULL);
    troupe_value_free(t, v);
  }
  free(v);
  if (rc < 0) {
    *why = troupe_errmsg();
    return 0;
  }
  *type = t;
  return 1;
}

static void inspect_one(inspect_ctx *c, const troupe_event *ev) {
  const troupe_type *t = NULL;
  const char *typed_why = NULL, *why = NULL;
  size_t at = 0;
  int typed = ev->payload_len ? payload_typed(c, ev, &t, &typed_why) : 0;
  int ok = 1;
  if (!typed && ev->payload_len) {
    troupe_buf_clear(&c->buf);
    if (c->json) {
      troupe_limits lim = {TOOL_DIAG_MAX_DEPTH, 0, 0, 0};
      if (troupe_cbor_to_json(ev->payload, ev->payload_len, &c->buf, &lim) <
          0) {
        ok = 0;
        why = troupe_errmsg();
      }
    } else if (tool_cbor_diag(ev->payload, ev->payload_len, &c->buf,
                              INSPECT_MAX_TEXT, &why, &at) < 0) {
      ok = 0;
    }
  }
  if (!ok) c->bad++;
  c->printed++;
  if (c->json) {
    printf("{\"persistence_id\":");
    tool_print_id(stdout, ev->persistence_id);
    printf(",\"seq\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"timestamp_ms\":%"
           PRId64 ",\"writer_id\":%" PRIu64 ",\"manifest\":",
           ev->seq, ev->offset, ev->timestamp_ms, ev->writer_id);
    tool_json_str(stdout, ev->manifest, strlen(ev->manifest));
    printf(",\"version\":%" PRIu32 ",\"tags\":[", ev->version);
    for (size_t i = 0; i < ev->ntags; i++) {
      if (i) putchar(',');
      tool_json_str(stdout, ev->tags[i], strlen(ev->tags[i]));
    }
    printf("],\"payload_len\":%zu", ev->payload_len);
    if (typed) {
      printf(",\"type\":");
      tool_json_str(stdout, t->manifest, strlen(t->manifest));
      printf(",\"type_version\":%" PRIu32, t->version);
    }
    if (typed_why) {
      printf(",\"decode_error\":");
      tool_json_str(stdout, typed_why, strlen(typed_why));
    }
    if (!ev->payload_len) {
      printf(",\"payload\":null");
    } else if (ok) {
      printf(",\"payload\":%s", (const char *)c->buf.data);
    } else {
      printf(",\"payload\":null,\"payload_error\":");
      tool_json_str(stdout, why, strlen(why));
      printf(",\"payload_hex\":\"");
      tool_hex(stdout, ev->payload, ev->payload_len);
      putchar('"');
    }
    printf("}\n");
    return;
  }
  printf("seq %" PRIu64 "  offset %" PRIu64 "  ", ev->seq, ev->offset);
  print_time(ev->timestamp_ms);
  printf("  writer %" PRIu64 "  %s v%" PRIu32, ev->writer_id,
         ev->manifest[0] ? ev->manifest : "(no manifest)", ev->version);
  if (ev->ntags) {
    printf("  tags ");
    for (size_t i = 0; i < ev->ntags; i++) {
      if (i) putchar(',');
      fputs(ev->tags[i], stdout);
    }
  }
  putchar('\n');
  if (!ev->payload_len) {
    printf("  (empty payload)\n");
  } else if (!ok) {
    printf("  malformed payload (%zu bytes): %s at byte %zu\n",
           ev->payload_len, why, at);
  } else {
    if (typed && (t->version != ev->version ||
                  strcmp(t->manifest, ev->manifest) != 0))
      printf("  as %s v%" PRIu32 ": ", t->manifest, t->version);
    else if (typed_why)
      printf("  (not decoded as its type: %s)\n  ", typed_why);
    else
      printf("  ");
    printf("%s\n", (const char *)c->buf.data);
  }
}

static int inspect_cb(int status, const troupe_event *ev, size_t n, int done,
                      void *data) {
  (void)done;
  if (status < 0) return 1;
  for (size_t i = 0; i < n; i++) inspect_one(data, &ev[i]);
  return 0;
}

int tool_journal_inspect(int argc, char **argv) {
  const char *id = NULL, *from_s = NULL, *to_s = NULL, *plugin = NULL;
  int json = 0;
  const tool_opt opts[] = {
      {"--id", 1, &id, NULL},         {"--from", 1, &from_s, NULL},
      {"--to", 1, &to_s, NULL},       {"--json", 0, NULL, &json},
      {"--plugin", 1, &plugin, NULL},
  };
  const char *pos[1];
  int ex = tool_parse_cmd(argc, argv, opts, sizeof opts / sizeof opts[0], pos,
                          1, inspect_help, "expected one URL");
  if (ex >= 0) return ex;
  if (!id || !*id) return tool_usage("--id ID is required");
  uint64_t from = 1, to = UINT64_MAX;
  if (from_s && (tool_parse_u64(from_s, &from) < 0 || from == 0))
    return tool_usage("--from: expected a sequence number >= 1");
  if (to_s && tool_parse_u64(to_s, &to) < 0)
    return tool_usage("--to: expected a sequence number");
  if (from > to) return tool_usage("--from is after --to");
  int rc;
  if (plugin && (rc = tool_load_plugin(plugin)) != 0) return rc;

  troupe_journal *j;
  if ((rc = tool_open_journal("", pos[0], 0, &j)) != 0) return rc;
  uint64_t highest = 0;
  int err = troupe_journal_highest_sync(j, id, &highest);
  inspect_ctx c = {json, plugin != NULL, 0, 0, {0}};
  if (err == 0)
    err = troupe_journal_replay_sync(j, id, from, to, 0, inspect_cb, &c);
  if (err < 0) {
    rc = tool_err(err, "reading \"%s\"", id);
  } else if (highest == 0) {
    tool_say("no persistence id \"%s\" in %s", id, tool_spec_shown(pos[0]));
    rc = TOOL_EXIT_PROBLEMS;
  } else {
    if (c.printed == 0 && to == UINT64_MAX)
      tool_say("no stored events of \"%s\" from seq %" PRIu64
               " (highest %" PRIu64 ")", id, from, highest);
    else if (c.printed == 0)
      tool_say("no stored events of \"%s\" in %" PRIu64 "..%" PRIu64
               " (highest %" PRIu64 ")", id, from, to, highest);
    if (c.bad)
      tool_say("%" PRIu64 " malformed payload%s", c.bad,
               c.bad == 1 ? "" : "s");
    rc = c.bad ? TOOL_EXIT_PROBLEMS : TOOL_EXIT_OK;
  }
  troupe_buf_free(&c.buf);
  troupe_journal_close(j);
  return rc;
}
