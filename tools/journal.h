/*
 * tools/journal.h: the `troupe journal` subcommands, one function each
 * (argv[0] is the subcommand's name), and what they share.
 */
#ifndef TROUPE_TOOLS_JOURNAL_H
#define TROUPE_TOOLS_JOURNAL_H

#include "tools/stream.h"

int tool_journal_status(int argc, char **argv);   /* journal_cmd.c */
int tool_journal_migrate(int argc, char **argv);  /* journal_cmd.c */
int tool_journal_inspect(int argc, char **argv);  /* journal_cmd.c */
int tool_journal_verify(int argc, char **argv);   /* journal_verify.c */
int tool_journal_copy(int argc, char **argv);     /* journal_copy.c */

/* Print an id as a JSON string (ids are bytes: quotes keep odd ones
 * readable and unambiguous). */
void tool_print_id(FILE *f, const char *id);

#endif
