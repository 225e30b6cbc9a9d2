/*
 * tools/cmd.h: the subcommands of the `troupe` tool. Each takes the
 * arguments after its own name (argv[0] is the subcommand's name) and
 * returns the process exit status (see docs/tool.md, "Exit status").
 */
#ifndef TROUPE_TOOLS_CMD_H
#define TROUPE_TOOLS_CMD_H

/* `troupe journal ...` (tools/journal_cmd.c) */
int troupe_cmd_journal(int argc, char **argv);
/* `troupe projection ...` (tools/projection_cmd.c) */
int troupe_cmd_projection(int argc, char **argv);

#endif
