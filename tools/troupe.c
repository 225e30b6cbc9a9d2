/*
 * troupe.c: the `troupe` command-line tool: global options and dispatch to
 * the command groups (tools/cmd.h). docs/tool.md is its guide.
 */
#include "tools/cmd.h"
#include "tools/util.h"

#include <string.h>

static const char main_help[] =
    "usage: troupe [--help] [--version] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  journal     status, migrate, verify, copy and inspect event journals\n"
    "  projection  manage projections\n"
    "\n"
    "Run `troupe COMMAND --help` for a command's usage; see troupe(1) and\n"
    "docs/tool.md.\n";

int main(int argc, char **argv) {
  /* A tool's output goes to pipes and files: keep stdout and stderr in
   * order when both are redirected together. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) {
    fputs(main_help, stderr);
    return TOOL_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    fputs(main_help, stdout);
    return TOOL_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf("troupe %s (libtroupe %s)\n", TROUPE_VERSION_STRING,
           troupe_version_string());
    return TOOL_EXIT_OK;
  }
  if (strcmp(cmd, "journal") == 0) return troupe_cmd_journal(argc - 1, argv + 1);
  if (strcmp(cmd, "projection") == 0)
    return troupe_cmd_projection(argc - 1, argv + 1);
  return tool_usage("unknown command \"%s\"", cmd);
}
