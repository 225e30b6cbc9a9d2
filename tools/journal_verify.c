/*
 * journal_verify.c: `troupe journal verify`: every stream contiguous from
 * its first stored seq to its highest, the tag index agreeing with the
 * events' tags, offsets in order, and a hash per stream and overall.
 *
 * Memory is bounded by one page of events plus one entry per distinct tag
 * (at most --max-tags; past that the tag index is not checked). The tag
 * check needs no lookup per event: per tag it sums a mix of the offsets of
 * the events carrying it and compares count and sum with a walk of
 * by_tag, which must return distinct (strictly increasing offsets) events
 * that carry the tag. A subset of the tagged events of the same size is
 * all of them. Only for a tag that disagrees is every tagged event looked
 * up (by_tag from its offset) to name the missing ones.
 */
#include "tools/journal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char verify_help[] =
    "usage: troupe journal verify URL [--max-tags N] [--quiet]\n"
    "\n"
    "Check every stream: stored sequence numbers contiguous up to the\n"
    "highest, every event's tags found through the tag index and every tag\n"
    "index entry pointing at an event that carries the tag, global offsets\n"
    "strictly increasing. Print one line per stream with its event count and\n"
    "hash (FNV-1a 64 over seq, manifest, version, payload, tags, timestamp\n"
    "and writer id), then the overall hash. --quiet prints only problems and\n"
    "the summary. Exit status 1 when a problem was found.\n"
    "--max-tags N: distinct tags to track (default 1000000); past it the\n"
    "tag index is not checked (a note says so).\n";

#define MAX_SHOWN_PROBLEMS 100
#define MAX_DIAGNOSED_TAGS 10
#define MAX_MISSING_SHOWN 20

/* --- distinct tags ---------------------------------------------------------- */

typedef struct tag_ent {
  char *tag;
  uint64_t n_ev, sum_ev;     /* events carrying the tag */
  uint64_t n_ix, sum_ix;     /* what by_tag returned */
} tag_ent;

typedef struct tag_set {
  tag_ent *e;
  size_t n, cap;             /* cap a power of two */
  size_t max;
  int overflow;
  int nomem;
} tag_set;

static uint64_t mix(uint64_t x) {       /* splitmix64's finalizer */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static tag_ent *tag_find(tag_set *s, const char *tag, int add) {
  if (s->cap == 0) {
    if (!add) return NULL;
    s->e = calloc(1024, sizeof *s->e);
    if (!s->e) {
      s->nomem = 1;
      return NULL;
    }
    s->cap = 1024;
  }
  size_t m = s->cap - 1;
  size_t i = (size_t)tool_fnv(TOOL_FNV_INIT, tag, strlen(tag)) & m;
  for (; s->e[i].tag; i = (i + 1) & m)
    if (strcmp(s->e[i].tag, tag) == 0) return &s->e[i];
  if (!add) return NULL;
  if (s->n >= s->max) {
    s->overflow = 1;
    return NULL;
  }
  if ((s->n + 1) * 2 > s->cap) {        /* grow, then insert */
    tag_set bigger = {calloc(s->cap * 2, sizeof *s->e), 0, s->cap * 2,
                      s->max, 0, 0};
    if (!bigger.e) {
      s->nomem = 1;
      return NULL;
    }
    for (size_t k = 0; k < s->cap; k++) {
      if (!s->e[k].tag) continue;
      size_t j = (size_t)tool_fnv(TOOL_FNV_INIT, s->e[k].tag,
                                  strlen(s->e[k].tag)) & (bigger.cap - 1);
      while (bigger.e[j].tag) j = (j + 1) & (bigger.cap - 1);
      bigger.e[j] = s->e[k];
    }
    free(s->e);
    s->e = bigger.e;
    s->cap = bigger.cap;
    return tag_find(s, tag, add);
  }
  s->e[i].tag = strdup(tag);
  if (!s->e[i].tag) {
    s->nomem = 1;
    return NULL;
  }
  s->n++;
  return &s->e[i];
}

static void tag_set_free(tag_set *s) {
  for (size_t i = 0; i < s->cap; i++) free(s->e[i].tag);
  free(s->e);
}

/* --- the check -------------------------------------------------------------- */

typedef struct verify_ctx {
  troupe_journal *j;
  int quiet;
  uint64_t problems;
  tag_set tags;
  /* current stream (the hook runs on a store thread while the main
   * thread waits, so no locking) */
  const char *id;
  uint64_t prev_seq, prev_offset, n;
} verify_ctx;

static void problem(verify_ctx *v, const char *id, const char *fmt, ...)
    TROUPE_PRINTF(3, 4);
static void problem(verify_ctx *v, const char *id, const char *fmt, ...) {
  if (++v->problems > MAX_SHOWN_PROBLEMS) {
    if (v->problems == MAX_SHOWN_PROBLEMS + 1)
      printf("problem: (more problems are counted but not shown)\n");
    return;
  }
  printf("problem: ");
  if (id) {
    tool_print_id(stdout, id);
    printf(": ");
  }
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
}

static int stream_hook(const troupe_event *ev, void *data) {
  verify_ctx *v = data;
  if (!ev->persistence_id || strcmp(ev->persistence_id, v->id) != 0)
    problem(v, v->id, "seq %" PRIu64 " is labelled with another id", ev->seq);
  if (v->n && ev->seq != v->prev_seq + 1)
    problem(v, v->id, "seq %" PRIu64 " follows seq %" PRIu64 " (%s)",
            ev->seq, v->prev_seq, ev->seq > v->prev_seq ? "gap"
                                                        : "out of order");
  if (v->n && ev->offset <= v->prev_offset)
    problem(v, v->id, "seq %" PRIu64 " has offset %" PRIu64
            ", not after the previous event's %" PRIu64,
            ev->seq, ev->offset, v->prev_offset);
  if (ev->offset == 0)
    problem(v, v->id, "seq %" PRIu64 " has offset 0", ev->seq);
  v->prev_seq = ev->seq;
  v->prev_offset = ev->offset;
  v->n++;
  for (size_t i = 0; i < ev->ntags && !v->tags.overflow; i++) {
    tag_ent *t = tag_find(&v->tags, ev->tags[i], 1);
    if (!t) break;
    t->n_ev++;
    t->sum_ev += mix(ev->offset);
  }
  return v->tags.nomem;
}

typedef struct order_ctx {
  verify_ctx *v;
  const char *tag;          /* NULL: by slice */
  tag_ent *t;
  uint64_t n, last;
} order_ctx;

static int order_cb(int status, const troupe_event *ev, size_t n, int done,
                    void *data) {
  order_ctx *o = data;
  (void)done;
  if (status < 0) return 1;
  for (size_t i = 0; i < n; i++) {
    const troupe_event *e = &ev[i];
    if (o->n && e->offset <= o->last) {
      if (o->tag)
        problem(o->v, NULL, "tag \"%s\": offset %" PRIu64 " after %" PRIu64
                " in the tag index", o->tag, e->offset, o->last);
      else
        problem(o->v, NULL, "by slice: offset %" PRIu64 " after %" PRIu64,
                e->offset, o->last);
    }
    o->n++;
    o->last = e->offset;
    if (!o->tag) continue;
    int carries = 0;
    for (size_t k = 0; k < e->ntags && !carries; k++)
      carries = strcmp(e->tags[k], o->tag) == 0;
    if (!carries)
      problem(o->v, e->persistence_id, "seq %" PRIu64 " (offset %" PRIu64
              ") is in the index of tag \"%s\" but does not carry it",
              e->seq, e->offset, o->tag);
    o->t->n_ix++;
    o->t->sum_ix += mix(e->offset);
  }
  return 0;
}

typedef struct first_ctx {
  uint64_t offset;
  int found;
} first_ctx;

static int first_cb(int status, const troupe_event *ev, size_t n, int done,
                    void *data) {
  first_ctx *f = data;
  (void)done;
  if (status == 0 && n && !f->found) {
    f->found = 1;
    f->offset = ev[0].offset;
  }
  return 1;
}

/* For a tag whose index disagrees: look every tagged event up. */
static int diagnose_tag(verify_ctx *v, const char *tag) {
  tool_ids ids = {NULL, 0};
  tool_chunk c = {0};
  char *after = NULL;
  int rc = 0;
  uint64_t missing = 0;
  for (;;) {
    if ((rc = tool_ids_next(v->j, after, &ids)) < 0) goto out;
    for (size_t i = 0; i < ids.n; i++) {
      for (uint64_t from = 1;;) {
        if ((rc = tool_chunk_read(v->j, ids.ids[i], from, &c)) < 0) goto out;
        if (c.n == 0) break;
        for (size_t k = 0; k < c.n; k++) {
          const troupe_event *e = &c.ev[k];
          int carries = 0;
          for (size_t t = 0; t < e->ntags && !carries; t++)
            carries = strcmp(e->tags[t], tag) == 0;
          if (!carries) continue;
          first_ctx f = {0, 0};
          rc = troupe_journal_by_tag_sync(v->j, tag, e->offset - 1, 1,
                                          first_cb, &f);
          if (rc < 0) goto out;
          if (!f.found || f.offset != e->offset) {
            if (++missing <= MAX_MISSING_SHOWN)
              problem(v, ids.ids[i], "seq %" PRIu64 " (offset %" PRIu64
                      ") carries tag \"%s\" but the tag index does not "
                      "list it", e->seq, e->offset, tag);
          }
        }
        from = c.ev[c.n - 1].seq + 1;
      }
    }
    if (tool_ids_advance(&after, &ids) <= 0) break;
  }
out:
  free(after);
  tool_ids_free(&ids);
  tool_chunk_free(&c);
  return rc;
}

int tool_journal_verify(int argc, char **argv) {
  const char *max_tags_s = NULL;
  int quiet = 0;
  const tool_opt opts[] = {{"--max-tags", 1, &max_tags_s, NULL},
                           {"--quiet", 0, NULL, &quiet}};
  const char *pos[1];
  int ex = tool_parse_cmd(argc, argv, opts, 2, pos, 1, verify_help,
                          "expected one URL");
  if (ex >= 0) return ex;
  uint64_t max_tags = 1000000;
  if (max_tags_s && tool_parse_u64(max_tags_s, &max_tags) < 0)
    return tool_usage("--max-tags: expected a number");

  verify_ctx v;
  memset(&v, 0, sizeof v);
  v.quiet = quiet;
  v.tags.max = (size_t)max_tags;
  int rc;
  if ((rc = tool_open_journal("", pos[0], 0, &v.j)) != 0) return rc;

  tool_ids ids = {NULL, 0};
  char *after = NULL;
  uint64_t streams = 0, events = 0, overall = TOOL_FNV_INIT;
  int err = 0;
  for (;;) {
    if ((err = tool_ids_next(v.j, after, &ids)) < 0) {
      rc = tool_err(err, "listing ids");
      goto out;
    }
    for (size_t i = 0; i < ids.n; i++) {
      const char *id = ids.ids[i];
      tool_stream_sum s;
      v.id = id;
      v.n = v.prev_seq = v.prev_offset = 0;
      err = tool_stream_summary(v.j, id, NULL, NULL, stream_hook, &v, &s);
      if (v.tags.nomem) err = TROUPE_ENOMEM;
      if (err < 0) {
        rc = tool_err(err, "reading \"%s\"", id);
        goto out;
      }
      if (s.count && s.last != s.highest)
        problem(&v, id, "last stored seq %" PRIu64 " but highest %" PRIu64,
                s.last, s.highest);
      if (s.count && s.last - s.first + 1 != s.count && !s.gaps)
        problem(&v, id, "%" PRIu64 " events in seq %" PRIu64 "..%" PRIu64,
                s.count, s.first, s.last);
      streams++;
      events += s.count;
      overall = tool_hash_stream(overall, id, s.count, s.highest, s.hash);
      if (!quiet) {
        printf("stream ");
        tool_print_id(stdout, id);
        if (s.count)
          printf(" events=%" PRIu64 " seq=%" PRIu64 "..%" PRIu64, s.count,
                 s.first, s.last);
        else
          printf(" events=0");
        printf(" highest=%" PRIu64 " hash=%016" PRIx64 "\n", s.highest,
               s.hash);
      }
    }
    int next = tool_ids_advance(&after, &ids);
    if (next == 0) break;
    if (next < 0) {
      rc = tool_err(TROUPE_ENOMEM, "listing ids");
      goto out;
    }
  }

  /* Global order: by slice over everything. */
  order_ctx o = {&v, NULL, NULL, 0, 0};
  err = troupe_journal_by_slice_sync(v.j, 0, TROUPE_JOURNAL_SLICES - 1, 0, 0,
                                     order_cb, &o);
  if (err == TROUPE_EUNSUPPORTED) {
    printf("note: the backend cannot read by slice: global offset order "
           "not checked\n");
  } else if (err < 0) {
    rc = tool_err(err, "reading by slice");
    goto out;
  } else if (o.n != events) {
    problem(&v, NULL, "by slice returns %" PRIu64 " events, the streams hold "
            "%" PRIu64, o.n, events);
  }

  /* Tag index. */
  uint64_t ntags = v.tags.n, diagnosed = 0;
  if (v.tags.overflow) {
    printf("note: more than %" PRIu64 " distinct tags: the tag index was not "
           "checked (raise --max-tags)\n", max_tags);
  } else {
    for (size_t i = 0; i < v.tags.cap; i++) {
      tag_ent *t = &v.tags.e[i];
      if (!t->tag) continue;
      order_ctx to = {&v, t->tag, t, 0, 0};
      err = troupe_journal_by_tag_sync(v.j, t->tag, 0, 0, order_cb, &to);
      if (err < 0) {
        rc = tool_err(err, "reading tag \"%s\"", t->tag);
        goto out;
      }
      if (t->n_ix == t->n_ev && t->sum_ix == t->sum_ev) continue;
      problem(&v, NULL, "tag \"%s\": %" PRIu64 " events carry it, the tag "
              "index lists %" PRIu64 "%s", t->tag, t->n_ev, t->n_ix,
              t->n_ix == t->n_ev ? " (other ones)" : "");
      if (diagnosed++ < MAX_DIAGNOSED_TAGS &&
          (err = diagnose_tag(&v, t->tag)) < 0) {
        rc = tool_err(err, "looking up tag \"%s\"", t->tag);
        goto out;
      }
    }
  }

  printf("total: %" PRIu64 " stream%s, %" PRIu64 " event%s, %" PRIu64
         " tag%s, overall hash %016" PRIx64 "\n", streams,
         streams == 1 ? "" : "s", events, events == 1 ? "" : "s", ntags,
         ntags == 1 ? "" : "s", overall);
  if (v.problems) {
    printf("result: %" PRIu64 " problem%s\n", v.problems,
           v.problems == 1 ? "" : "s");
    rc = TOOL_EXIT_PROBLEMS;
  } else {
    printf("result: ok\n");
    rc = TOOL_EXIT_OK;
  }
out:
  free(after);
  tool_ids_free(&ids);
  tag_set_free(&v.tags);
  troupe_journal_close(v.j);
  return rc;
}
