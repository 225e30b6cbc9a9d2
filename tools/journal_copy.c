/*
 * journal_copy.c: `troupe journal copy SRC DST`: every stream of SRC into
 * DST with the same seqs, manifests, versions, payloads, tags, timestamps
 * and writer ids, plus each id's latest snapshot; optionally upcast to the
 * current versions of a plugin's types; resumable; verified at the end.
 *
 * Resuming needs no state: per id the copy compares what DST already holds
 * (up to its highest) with SRC and appends the rest, so an interrupted copy
 * is finished by running it again. A checkpoint file (the last id done)
 * only saves re-reading the ids already copied. A DST stream ahead of SRC
 * or holding other events is a conflict: nothing more is written.
 *
 * Offsets are the destination's own (they are assigned in commit order by
 * each store), so they follow the copy's order, not the source's.
 * Deleted events cannot be read back, but the sequence numbers must stay:
 * a stream whose events up to D were deleted gets D placeholder events
 * (manifest "troupe.copy.deleted") deleted at once with delete_to(D).
 */
#include "tools/journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char copy_help[] =
    "usage: troupe journal copy SRC DST [--checkpoint FILE]\n"
    "                           [--upcast --plugin SO] [--limit N]\n"
    "\n"
    "Copy every persistence id's events (same seq, manifest, version,\n"
    "payload, tags, timestamp, writer id) and its latest snapshot from SRC\n"
    "to DST (created when missing), then verify that both hold the same\n"
    "streams (counts, highest seqs, stream hashes).\n"
    "Resumable: run it again after an interruption; for each id it checks\n"
    "what DST holds and continues after it. A DST stream ahead of SRC or\n"
    "with different events is a conflict (exit status 1).\n"
    "  --checkpoint FILE  record the last id copied in FILE and skip the ids\n"
    "                     up to it when FILE exists\n"
    "  --upcast           rewrite events and snapshots to the latest version\n"
    "                     of their type (types and upcasters from --plugin);\n"
    "                     types the plugin does not know are copied as is\n"
    "  --plugin SO        a shared object exporting troupe_plugin_init()\n"
    "  --limit N          stop after appending N events (exit status 4; for\n"
    "                     tests and for copying in steps)\n";

#define PLACEHOLDER_MANIFEST "troupe.copy.deleted"
#define CHECKPOINT_MAGIC "troupe-journal-copy 1"

typedef struct copy_ctx {
  troupe_journal *src, *dst;
  troupe_snapshot_store *ssrc, *sdst;
  int upcast;
  uint64_t limit;             /* 0: none */
  uint64_t appended;          /* events appended (placeholders too) */
  uint64_t upcasted, unknown; /* events upcast / of types not known */
  uint64_t snapshots;
  troupe_buf scratch;
} copy_ctx;

/* --- upcasting -------------------------------------------------------------- */

/* *out = ev rewritten to the latest version of its type (payload in
 * scratch), or ev itself when its type is current or not known. */
static int upcast_payload(const char *manifest, uint32_t version,
                          const void *payload, size_t len, troupe_buf *scratch,
                          const troupe_type **to) {
  const troupe_type *t = NULL;
  *to = NULL;
  if (troupe_type_resolve(manifest, version, &t) < 0) return 0;
  if (t->version == version && strcmp(t->manifest, manifest) == 0) return 0;
  void *v = calloc(1, t->size ? t->size : 1);
  if (!v) return TROUPE_ENOMEM;
  int rc = troupe_decode_as(manifest, version, payload, len, t, v, NULL);
  if (rc == 0) {
    troupe_buf_clear(scratch);
    rc = troupe_encode(t, v, scratch, NULL);
    troupe_value_free(t, v);
  }
  free(v);
  if (rc == 0) *to = t;
  return rc;
}

/* A tool_xform_fn; `data` counts into a copy_ctx when not NULL. */
static int upcast_event(const troupe_event *in, troupe_event *out,
                        troupe_buf *scratch, void *data) {
  copy_ctx *c = data;
  const troupe_type *t;
  *out = *in;
  int rc = upcast_payload(in->manifest, in->version, in->payload,
                          in->payload_len, scratch, &t);
  if (rc < 0) return rc;
  if (t) {
    out->manifest = t->manifest;
    out->version = t->version;
    out->payload = scratch->data;
    out->payload_len = scratch->len;
    if (c) c->upcasted++;
  } else if (c && troupe_type_resolve(in->manifest, in->version, &t) < 0) {
    c->unknown++;
  }
  return 0;
}

/* --- checkpoint ------------------------------------------------------------- */

/* The checkpoint names the pair of stores by a hash of their specs (the
 * specs may hold passwords) and the last id done, in hex. */
static uint64_t pair_hash(const char *src, const char *dst) {
  uint64_t h = tool_fnv(TOOL_FNV_INIT, src, strlen(src) + 1);
  return tool_fnv(h, dst, strlen(dst) + 1);
}

/* Read FILE: 0 and *last (malloc'd, NULL when none) or an exit status. */
static int checkpoint_read(const char *path, uint64_t pair, char **last) {
  *last = NULL;
  FILE *f = fopen(path, "r");
  if (!f) {
    if (errno == ENOENT) return 0;
    tool_say("cannot read checkpoint %s: %s", path, strerror(errno));
    return TOOL_EXIT_USAGE;
  }
  char line[3 * TROUPE_JOURNAL_MAX_ID_LEN];
  int ok = 0;
  uint64_t h = 0;
  if (fgets(line, sizeof line, f) && strcmp(line, CHECKPOINT_MAGIC "\n") == 0
      && fgets(line, sizeof line, f) && sscanf(line, "pair %" SCNx64, &h) == 1
      && fgets(line, sizeof line, f) && strncmp(line, "done ", 5) == 0) {
    size_t n = strcspn(line + 5, "\n");
    char *id = malloc(TROUPE_JOURNAL_MAX_ID_LEN + 1);
    long len = id ? tool_unhex(line + 5, n, id, TROUPE_JOURNAL_MAX_ID_LEN) : -1;
    if (len > 0) {
      id[len] = '\0';
      *last = id;
      ok = 1;
    } else {
      free(id);
    }
  }
  fclose(f);
  if (!ok) {
    tool_say("checkpoint %s is not a troupe copy checkpoint", path);
    return TOOL_EXIT_USAGE;
  }
  if (h != pair) {
    free(*last);
    *last = NULL;
    tool_say("checkpoint %s belongs to a copy between other stores", path);
    return TOOL_EXIT_USAGE;
  }
  return 0;
}

static int checkpoint_write(const char *path, uint64_t pair, const char *id) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) goto fail;
  fprintf(f, CHECKPOINT_MAGIC "\npair %016" PRIx64 "\ndone ", pair);
  tool_hex(f, id, strlen(id));
  fputc('\n', f);
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
    fclose(f);
    goto fail;
  }
  if (fclose(f) != 0 || rename(tmp, path) != 0) goto fail;
  return 0;
fail:
  tool_say("cannot write checkpoint %s: %s", path, strerror(errno));
  return TOOL_EXIT_STORE;
}

/* --- one stream ------------------------------------------------------------- */

static void conflict(const char *id, const char *fmt, ...) TROUPE_PRINTF(2, 3);
static void conflict(const char *id, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  tool_say("conflict in \"%s\": %s; nothing more was written", id, msg);
}

/* Give DST the deleted prefix 1..d of the stream (see the top). */
static int copy_deleted_prefix(copy_ctx *c, const char *id, uint64_t d,
                               uint64_t head) {
  troupe_event ph[256];
  int rc;
  while (head < d) {
    size_t n = d - head < 256 ? (size_t)(d - head) : 256;
    for (size_t i = 0; i < n; i++) {
      memset(&ph[i], 0, sizeof ph[i]);
      ph[i].seq = head + 1 + i;
      ph[i].manifest = PLACEHOLDER_MANIFEST;
      ph[i].version = 1;
    }
    uint64_t nh;
    if ((rc = troupe_journal_append_sync(c->dst, id, head, ph, n, &nh)) < 0)
      return tool_err(rc, "writing the deleted prefix of \"%s\"", id);
    head = nh;
    c->appended += n;
  }
  if ((rc = troupe_journal_delete_to_sync(c->dst, id, d)) < 0)
    return tool_err(rc, "deleting the prefix of \"%s\" up to %" PRIu64, id, d);
  return 0;
}

/* Upcast the chunk's events in place (each becomes an owned copy). */
static int upcast_chunk(copy_ctx *c, tool_chunk *ch, const char *id) {
  for (size_t i = 0; i < ch->n; i++) {
    troupe_event t;
    int rc = upcast_event(&ch->ev[i], &t, &c->scratch, c);
    if (rc < 0)
      return tool_err(rc, "upcasting \"%s\" seq %" PRIu64 " (%s v%" PRIu32
                      ")", id, ch->ev[i].seq, ch->ev[i].manifest,
                      ch->ev[i].version);
    if (t.payload == ch->ev[i].payload) continue;
    troupe_event owned;
    if ((rc = tool_event_copy(&owned, &t)) < 0)
      return tool_err(rc, "upcasting \"%s\"", id);
    tool_event_free(&ch->ev[i]);
    ch->ev[i] = owned;
  }
  return 0;
}

/* Copy the stream `id`. 0, TOOL_EXIT_PROBLEMS (conflict), TOOL_EXIT_STORE,
 * or TOOL_EXIT_INCOMPLETE when the limit was reached. */
static int copy_stream(copy_ctx *c, const char *id) {
  uint64_t hs, hd;
  int rc;
  if ((rc = troupe_journal_highest_sync(c->src, id, &hs)) < 0)
    return tool_err(rc, "reading the source's \"%s\"", id);
  if ((rc = troupe_journal_highest_sync(c->dst, id, &hd)) < 0)
    return tool_err(rc, "reading the destination's \"%s\"", id);
  if (hd > hs) {
    conflict(id, "the destination's highest seq %" PRIu64 " is beyond the "
             "source's %" PRIu64, hd, hs);
    return TOOL_EXIT_PROBLEMS;
  }
  tool_chunk s = {0}, d = {0};
  if ((rc = tool_chunk_read(c->src, id, 1, &s)) < 0) {
    rc = tool_err(rc, "reading the source's \"%s\"", id);
    goto out;
  }
  uint64_t first = s.n ? s.ev[0].seq : hs + 1;   /* first stored seq */
  if (first > 1 && (rc = copy_deleted_prefix(c, id, first - 1, hd)) != 0)
    goto out;
  if (hd < first - 1) hd = first - 1;

  /* What DST holds must be what SRC holds (after upcasting). */
  uint64_t from = first;
  while (from <= hd) {
    if (s.n == 0 || s.ev[0].seq != from) {
      if ((rc = tool_chunk_read(c->src, id, from, &s)) < 0) {
        rc = tool_err(rc, "reading the source's \"%s\"", id);
        goto out;
      }
    }
    if ((rc = tool_chunk_read(c->dst, id, from, &d)) < 0) {
      rc = tool_err(rc, "reading the destination's \"%s\"", id);
      goto out;
    }
    if (c->upcast && (rc = upcast_chunk(c, &s, id)) != 0) goto out;
    size_t n = s.n < d.n ? s.n : d.n;
    if (n == 0) {
      conflict(id, "the destination has no event %" PRIu64 " below its "
               "highest %" PRIu64, from, hd);
      rc = TOOL_EXIT_PROBLEMS;
      goto out;
    }
    for (size_t i = 0; i < n && from <= hd; i++, from++) {
      if (s.ev[i].seq != from || d.ev[i].seq != from) {
        conflict(id, "the destination has no event %" PRIu64, from);
        rc = TOOL_EXIT_PROBLEMS;
        goto out;
      }
      if (!tool_event_same(&s.ev[i], &d.ev[i])) {
        conflict(id, "event %" PRIu64 " differs from the source's", from);
        rc = TOOL_EXIT_PROBLEMS;
        goto out;
      }
    }
    tool_chunk_clear(&s);
  }

  /* Append the rest. */
  for (;;) {
    if (s.n == 0 || s.ev[0].seq != from) {
      if ((rc = tool_chunk_read(c->src, id, from, &s)) < 0) {
        rc = tool_err(rc, "reading the source's \"%s\"", id);
        goto out;
      }
      if (s.n == 0) break;
      if (s.ev[0].seq != from) {
        tool_say("the source's \"%s\" has no event %" PRIu64
                 " (run `troupe journal verify` on it)", id, from);
        rc = TOOL_EXIT_PROBLEMS;
        goto out;
      }
    }
    if (c->upcast && (rc = upcast_chunk(c, &s, id)) != 0) goto out;
    size_t n = s.n;
    if (c->limit && c->appended + n > c->limit)
      n = (size_t)(c->limit - c->appended);
    if (n == 0) {
      rc = TOOL_EXIT_INCOMPLETE;
      goto out;
    }
    uint64_t head;
    rc = troupe_journal_append_sync(c->dst, id, from - 1, s.ev, n, &head);
    if (rc == TROUPE_ECONFLICT) {
      conflict(id, "another writer appended to the destination (its highest"
               " is %" PRIu64 ")", head);
      rc = TOOL_EXIT_PROBLEMS;
      goto out;
    }
    if (rc < 0) {
      rc = tool_err(rc, "appending to the destination's \"%s\"", id);
      goto out;
    }
    c->appended += n;
    from += n;
    if (n < s.n) {
      rc = TOOL_EXIT_INCOMPLETE;
      goto out;
    }
    tool_chunk_clear(&s);
  }
  rc = 0;
out:
  tool_chunk_free(&s);
  tool_chunk_free(&d);
  return rc;
}

/* The latest snapshot of `id`, unless DST has the same one. */
static int copy_snapshot(copy_ctx *c, const char *id) {
  troupe_snapshot *ss = NULL, *ds = NULL;
  int rc = troupe_snapshot_load_sync(c->ssrc, id, NULL, &ss);
  if (rc < 0) return tool_err(rc, "loading the source's snapshot of \"%s\"", id);
  if (!ss) return 0;
  troupe_snapshot out = *ss;
  const troupe_type *t = NULL;
  if (c->upcast) {
    rc = upcast_payload(ss->manifest, ss->version, ss->state, ss->state_len,
                        &c->scratch, &t);
    if (rc < 0) {
      rc = tool_err(rc, "upcasting the snapshot of \"%s\" (%s v%" PRIu32 ")",
                    id, ss->manifest, ss->version);
      goto out;
    }
    if (t) {
      out.manifest = t->manifest;
      out.version = t->version;
      out.state = c->scratch.data;
      out.state_len = c->scratch.len;
    }
  }
  troupe_snapshot_criteria at = {ss->seq, ss->seq, INT64_MIN, INT64_MAX};
  if ((rc = troupe_snapshot_load_sync(c->sdst, id, &at, &ds)) < 0) {
    rc = tool_err(rc, "loading the destination's snapshot of \"%s\"", id);
    goto out;
  }
  if (ds && ds->timestamp_ms == out.timestamp_ms &&
      ds->version == out.version && strcmp(ds->manifest, out.manifest) == 0 &&
      ds->state_len == out.state_len &&
      (!out.state_len || memcmp(ds->state, out.state, out.state_len) == 0)) {
    rc = 0;
    goto out;
  }
  if ((rc = troupe_snapshot_save_sync(c->sdst, &out)) < 0) {
    rc = tool_err(rc, "saving the snapshot of \"%s\"", id);
    goto out;
  }
  c->snapshots++;
  rc = 0;
out:
  troupe_snapshot_free(ss);
  troupe_snapshot_free(ds);
  return rc;
}

/* --- verification ----------------------------------------------------------- */

/* Both stores hold the same streams for every id of SRC: same highest,
 * first stored seq, count and hash (of the upcast events). */
static int copy_verify(copy_ctx *c) {
  tool_ids ids = {NULL, 0};
  char *after = NULL;
  uint64_t streams = 0, events = 0, bad = 0;
  uint64_t hsrc = TOOL_FNV_INIT, hdst = TOOL_FNV_INIT;
  int rc = 0, err;
  for (;;) {
    if ((err = tool_ids_next(c->src, after, &ids)) < 0) {
      rc = tool_err(err, "listing the source's ids");
      goto out;
    }
    for (size_t i = 0; i < ids.n; i++) {
      const char *id = ids.ids[i];
      tool_stream_sum a, b;
      err = tool_stream_summary(c->src, id, c->upcast ? upcast_event : NULL,
                                NULL, NULL, NULL, &a);
      if (err < 0) {
        rc = tool_err(err, "verifying: reading the source's \"%s\"", id);
        goto out;
      }
      if (a.xform_rc < 0) {
        rc = tool_err(a.xform_rc, "verifying: upcasting \"%s\" seq %" PRIu64,
                      id, a.xform_seq);
        goto out;
      }
      err = tool_stream_summary(c->dst, id, NULL, NULL, NULL, NULL, &b);
      if (err < 0) {
        rc = tool_err(err, "verifying: reading the destination's \"%s\"", id);
        goto out;
      }
      if (a.highest != b.highest || a.count != b.count ||
          a.first != b.first || a.hash != b.hash) {
        tool_say("verification failed for \"%s\": source %" PRIu64
                 " events, highest %" PRIu64 ", hash %016" PRIx64
                 "; destination %" PRIu64 " events, highest %" PRIu64
                 ", hash %016" PRIx64, id, a.count, a.highest, a.hash,
                 b.count, b.highest, b.hash);
        bad++;
      }
      streams++;
      events += a.count;
      hsrc = tool_hash_stream(hsrc, id, a.count, a.highest, a.hash);
      hdst = tool_hash_stream(hdst, id, b.count, b.highest, b.hash);
    }
    int next = tool_ids_advance(&after, &ids);
    if (next == 0) break;
    if (next < 0) {
      rc = tool_err(TROUPE_ENOMEM, "listing ids");
      goto out;
    }
  }
  printf("verified: %" PRIu64 " stream%s, %" PRIu64 " event%s; overall hash "
         "%016" PRIx64 " (source%s), %016" PRIx64 " (destination)\n",
         streams, streams == 1 ? "" : "s", events, events == 1 ? "" : "s",
         hsrc, c->upcast ? ", upcast" : "", hdst);
  rc = bad ? TOOL_EXIT_PROBLEMS : 0;
out:
  free(after);
  tool_ids_free(&ids);
  return rc;
}

/* --- the command ------------------------------------------------------------ */

/* Before writing anything: no stream of DST may be ahead of the same
 * stream of SRC. */
static int precheck(copy_ctx *c, const char *start_after) {
  tool_ids ids = {NULL, 0};
  char *after = start_after ? strdup(start_after) : NULL;
  int rc = 0, err;
  for (;;) {
    if ((err = tool_ids_next(c->dst, after, &ids)) < 0) {
      rc = tool_err(err, "listing the destination's ids");
      break;
    }
    for (size_t i = 0; i < ids.n && rc == 0; i++) {
      uint64_t hs, hd;
      if ((err = troupe_journal_highest_sync(c->src, ids.ids[i], &hs)) < 0 ||
          (err = troupe_journal_highest_sync(c->dst, ids.ids[i], &hd)) < 0) {
        rc = tool_err(err, "reading \"%s\"", ids.ids[i]);
      } else if (hs > 0 && hd > hs) {   /* ids only DST has are not ours */
        conflict(ids.ids[i], "the destination's highest seq %" PRIu64
                 " is beyond the source's %" PRIu64, hd, hs);
        rc = TOOL_EXIT_PROBLEMS;
      }
    }
    int next = tool_ids_advance(&after, &ids);
    if (rc || next <= 0) break;
  }
  free(after);
  tool_ids_free(&ids);
  return rc;
}

int tool_journal_copy(int argc, char **argv) {
  const char *checkpoint = NULL, *plugin = NULL, *limit_s = NULL;
  int upcast = 0;
  const tool_opt opts[] = {
      {"--checkpoint", 1, &checkpoint, NULL},
      {"--upcast", 0, NULL, &upcast},
      {"--plugin", 1, &plugin, NULL},
      {"--limit", 1, &limit_s, NULL},
  };
  const char *pos[2];
  int ex = tool_parse_cmd(argc, argv, opts, sizeof opts / sizeof opts[0], pos,
                          2, copy_help, "expected SRC and DST");
  if (ex >= 0) return ex;
  if (upcast && !plugin) return tool_usage("--upcast needs --plugin SO");
  if (plugin && !upcast)
    return tool_usage("--plugin is only used with --upcast");
  copy_ctx c;
  memset(&c, 0, sizeof c);
  c.upcast = upcast;
  if (limit_s && (tool_parse_u64(limit_s, &c.limit) < 0 || c.limit == 0))
    return tool_usage("--limit: expected a number >= 1");
  if (strcmp(pos[0], pos[1]) == 0)
    return tool_usage("SRC and DST are the same store");
  int rc;
  if (plugin && (rc = tool_load_plugin(plugin)) != 0) return rc;

  uint64_t pair = pair_hash(pos[0], pos[1]);
  char *after = NULL;
  if (checkpoint && (rc = checkpoint_read(checkpoint, pair, &after)) != 0)
    return rc;
  if ((rc = tool_open_journal("source", pos[0], 0, &c.src)) != 0 ||
      (rc = tool_open_snapshots("source", pos[0], 0, &c.ssrc)) != 0 ||
      (rc = tool_open_journal("destination", pos[1], 1, &c.dst)) != 0 ||
      (rc = tool_open_snapshots("destination", pos[1], 1, &c.sdst)) != 0)
    goto out;
  if (after) {
    printf("resuming after ");
    tool_print_id(stdout, after);
    printf(" (checkpoint %s)\n", checkpoint);
  }
  if ((rc = precheck(&c, after)) != 0) goto out;

  tool_ids ids = {NULL, 0};
  uint64_t streams = 0;
  for (int more = 1; more && rc == 0;) {
    int err = tool_ids_next(c.src, after, &ids);
    if (err < 0) {
      rc = tool_err(err, "listing the source's ids");
      break;
    }
    for (size_t i = 0; i < ids.n && rc == 0; i++) {
      if ((rc = copy_stream(&c, ids.ids[i])) != 0) break;
      if ((rc = copy_snapshot(&c, ids.ids[i])) != 0) break;
      if (checkpoint &&
          (rc = checkpoint_write(checkpoint, pair, ids.ids[i])) != 0)
        break;
      streams++;
    }
    int next = tool_ids_advance(&after, &ids);
    more = next != 0;
    if (next < 0) rc = tool_err(TROUPE_ENOMEM, "listing ids");
  }
  tool_ids_free(&ids);
  printf("copied: %" PRIu64 " stream%s, %" PRIu64 " event%s appended, %"
         PRIu64 " snapshot%s saved", streams, streams == 1 ? "" : "s",
         c.appended, c.appended == 1 ? "" : "s", c.snapshots,
         c.snapshots == 1 ? "" : "s");
  if (upcast)
    printf(", %" PRIu64 " event%s upcast, %" PRIu64 " of types the plugin "
           "does not know", c.upcasted, c.upcasted == 1 ? "" : "s",
           c.unknown);
  printf("\n");
  if (rc == TOOL_EXIT_INCOMPLETE) {
    printf("stopped after %" PRIu64 " events (--limit): run the same command "
           "again to continue\n", c.appended);
    goto out;
  }
  if (rc == 0) rc = copy_verify(&c);
out:
  free(after);
  troupe_buf_free(&c.scratch);
  troupe_snapshot_store_close(c.sdst);
  troupe_journal_close(c.dst);
  troupe_snapshot_store_close(c.ssrc);
  troupe_journal_close(c.src);
  return rc;
}
