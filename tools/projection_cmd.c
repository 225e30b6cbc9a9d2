/*
 * projection_cmd.c: `troupe projection` — manage projections through their
 * offset store, also while another process runs them.
 *
 *   troupe projection list    URL
 *   troupe projection status  URL NAME
 *   troupe projection pause   URL NAME
 *   troupe projection resume  URL NAME
 *   troupe projection rewind  URL NAME OFFSET
 *   troupe projection reset   URL NAME
 *
 * URL is the offset store's spec (rocksdb:DIR, postgresql://…, pg:…).
 * NAME is an instance ("balances", "balances@0-511") or, for the
 * requests, a projection name that reaches all its sliced instances. A
 * request is stored; the running worker applies it within its control
 * poll (default 200 ms). For a RocksDB directory held by the running
 * process the store is opened read-only and the request is queued as a
 * file it picks up (status then shows what was flushed at open time).
 */
#include "tools/cmd.h"
#include "tools/util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "troupe/projection.h"

static const char *state_name(troupe_projection_state s) {
  switch (s) {
    case TROUPE_PROJECTION_STARTING: return "starting";
    case TROUPE_PROJECTION_RUNNING: return "running";
    case TROUPE_PROJECTION_PAUSED: return "paused";
    case TROUPE_PROJECTION_FAILED: return "failed";
    case TROUPE_PROJECTION_DONE: return "done";
    case TROUPE_PROJECTION_STOPPED: return "stopped";
  }
  return "?";
}

static void print_info(const troupe_projection_info *i, int verbose) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  if (!verbose) {
    printf("%-32s %-8s offset=%llu lag_events=%llu lag_ms=%lld%s%s\n",
           i->name, i->paused ? "paused" : state_name(i->state),
           (unsigned long long)i->offset, (unsigned long long)i->lag_events,
           (long long)i->lag_ms, i->pending ? " request-pending" : "",
           i->skipped ? " (skipped events)" : "");
    return;
  }
  printf("name:        %s\n", i->name);
  printf("source:      %s\n", i->source[0] ? i->source : "(not started)");
  printf("state:       %s%s\n", state_name(i->state),
         i->paused ? " (pause requested)" : "");
  printf("offset:      %llu\n", (unsigned long long)i->offset);
  printf("lag:         %llu events, %lld ms (as published by the worker)\n",
         (unsigned long long)i->lag_events, (long long)i->lag_ms);
  printf("skipped:     %llu\n", (unsigned long long)i->skipped);
  printf("pending:     %llu request(s)\n", (unsigned long long)i->pending);
  if (i->updated_ms)
    printf("updated:     %.1f s ago\n", (double)(now - i->updated_ms) / 1000.0);
  if (i->last_error[0]) printf("last error:  %s\n", i->last_error);
}

static int usage_text(void) {
  printf("usage: troupe projection list    URL\n"
         "       troupe projection status  URL NAME\n"
         "       troupe projection pause   URL NAME\n"
         "       troupe projection resume  URL NAME\n"
         "       troupe projection rewind  URL NAME OFFSET\n"
         "       troupe projection reset   URL NAME\n"
         "URL is the projections' offset store (rocksdb:DIR, postgresql://..., "
         "pg:...).\nA running projection applies a request within its "
         "control poll (default 200 ms).\n");
  return TOOL_EXIT_OK;
}

int troupe_cmd_projection(int argc, char **argv) {
  tool_prog = "troupe projection";
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    if (argc < 2) return tool_usage("missing subcommand");
    return usage_text();
  }
  const char *sub = argv[1];
  const char *pos[3] = {NULL, NULL, NULL};
  int help = 0;
  int npos = tool_parse(argc - 1, argv + 1, NULL, 0, pos, 3, &help);
  if (npos < 0) return TOOL_EXIT_USAGE;
  if (help) return usage_text();
  int need;
  troupe_projection_op op = 0;
  if (strcmp(sub, "list") == 0) need = 1;
  else if (strcmp(sub, "status") == 0) need = 2;
  else if (strcmp(sub, "pause") == 0) { need = 2; op = TROUPE_PROJECTION_PAUSE; }
  else if (strcmp(sub, "resume") == 0) { need = 2; op = TROUPE_PROJECTION_RESUME; }
  else if (strcmp(sub, "rewind") == 0) { need = 3; op = TROUPE_PROJECTION_REWIND; }
  else if (strcmp(sub, "reset") == 0) { need = 2; op = TROUPE_PROJECTION_RESET; }
  else return tool_usage("unknown subcommand \"%s\"", sub);
  if (npos != need)
    return tool_usage("%s takes %d argument(s)", sub, need);
  uint64_t offset = 0;
  if (op == TROUPE_PROJECTION_REWIND && tool_parse_u64(pos[2], &offset) < 0)
    return tool_usage("bad offset \"%s\"", pos[2]);
  troupe_offset_store *s;
  int rc = troupe_offset_store_open(pos[0], &s);
  if (rc < 0)
    return tool_err(rc, "cannot open %s", tool_spec_shown(pos[0]));
  int status = TOOL_EXIT_OK;
  if (strcmp(sub, "list") == 0) {
    troupe_projection_info *v;
    size_t n;
    rc = troupe_projection_list(s, &v, &n);
    if (rc < 0) {
      status = tool_err(rc, "cannot list %s", tool_spec_shown(pos[0]));
    } else {
      if (n == 0) printf("no projections in %s\n", tool_spec_shown(pos[0]));
      for (size_t i = 0; i < n; i++) print_info(&v[i], 0);
      free(v);
    }
  } else if (strcmp(sub, "status") == 0) {
    troupe_projection_info info;
    rc = troupe_projection_info_get(s, pos[1], &info);
    if (rc < 0) status = tool_err(rc, "status of %s", pos[1]);
    else print_info(&info, 1);
  } else {
    rc = troupe_projection_request(s, pos[1], op, offset);
    if (rc < 0) {
      status = tool_err(rc, "%s %s", sub, pos[1]);
    } else {
      printf("%s requested for %s", sub, pos[1]);
      if (op == TROUPE_PROJECTION_REWIND)
        printf(" (continue after offset %llu)", (unsigned long long)offset);
      printf("; a running projection applies it within its control poll\n");
    }
  }
  troupe_offset_store_close(s);
  return status;
}
