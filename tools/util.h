/*
 * tools/util.h: what the subcommands of the `troupe` tool share: exit
 * statuses, one-line error reporting, option parsing, opening stores and
 * loading type plugins.
 */
#ifndef TROUPE_TOOLS_UTIL_H
#define TROUPE_TOOLS_UTIL_H

#include "config.h"   /* feature macros (strdup, fsync, gmtime_r) */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "troupe/troupe.h"
#include "troupe/journal.h"
#include "troupe/snapshot.h"

/* Exit statuses (docs/tool.md). */
#define TOOL_EXIT_OK         0  /* done, nothing wrong */
#define TOOL_EXIT_PROBLEMS   1  /* the data has problems (verify, conflicts) */
#define TOOL_EXIT_USAGE      2  /* bad command line */
#define TOOL_EXIT_STORE      3  /* a store could not be opened, read or written */
#define TOOL_EXIT_INCOMPLETE 4  /* copy stopped early (--limit); run it again */

/* The command named in messages, e.g. "troupe journal copy". */
extern const char *tool_prog;

/* Print "PROG: MESSAGE: ERROR (DETAIL)" on one line to stderr, where ERROR
 * is troupe_strerror(rc) and DETAIL the thread's troupe_errmsg() (newlines
 * folded, passwords masked). Call it right after the failing troupe call.
 * Returns the exit status for rc (TOOL_EXIT_STORE, or TOOL_EXIT_USAGE for
 * TROUPE_EINVAL raised by the spec parser). */
int tool_err(int rc, const char *fmt, ...) TROUPE_PRINTF(2, 3);
/* Print "PROG: MESSAGE" on one line to stderr. */
void tool_say(const char *fmt, ...) TROUPE_PRINTF(1, 2);
/* Print "PROG: MESSAGE (see PROG --help)" and return TOOL_EXIT_USAGE. */
int tool_usage(const char *fmt, ...) TROUPE_PRINTF(1, 2);

/* A spec safe to print: the password of a postgresql:// URI and of a
 * password=... pair replaced by "***". Static buffer; one at a time. */
const char *tool_spec_shown(const char *spec);

/* Command-line options: "--name VALUE", "--name=VALUE" or a flag. */
typedef struct tool_opt {
  const char *name;      /* with the dashes: "--from" */
  int takes_value;
  const char **value;    /* receives the value (takes_value) */
  int *seen;             /* set to 1 when given (may be NULL) */
} tool_opt;

/* Parse argv[1..argc-1]: options, "--help"/"-h" (sets *help), "--" ends
 * the options, anything else is a positional argument (at most maxpos,
 * stored in pos). Returns the number of positional arguments, or -1 after
 * printing a usage error. */
int tool_parse(int argc, char **argv, const tool_opt *opts, size_t nopts,
               const char **pos, int maxpos, int *help);

/* tool_parse for a subcommand that takes exactly `npos` positional
 * arguments (stored in pos). Returns -1 when the command goes on, else the
 * exit status to return at once: TOOL_EXIT_OK after printing `help` to
 * stdout for --help, TOOL_EXIT_USAGE after a usage error (`wrong_npos`
 * when there are not npos positional arguments). */
int tool_parse_cmd(int argc, char **argv, const tool_opt *opts, size_t nopts,
                   const char **pos, int npos, const char *help,
                   const char *wrong_npos);

/* Parse a decimal unsigned integer (the whole string). 0 or -1. */
int tool_parse_u64(const char *s, uint64_t *out);

/* Open a journal / snapshot store on spec; on failure print one line
 * naming what (e.g. "source") and return the exit status (0 on success).
 * create: create the store when missing. */
int tool_open_journal(const char *what, const char *spec, int create,
                      troupe_journal **out);
int tool_open_snapshots(const char *what, const char *spec, int create,
                        troupe_snapshot_store **out);

/*
 * Load a type plugin: dlopen(path) and call its
 *   int troupe_plugin_init(unsigned troupe_version_hex);
 * which registers types and upcasters with troupe_type_register() and
 * troupe_upcaster_register() and returns 0 or a negative TROUPE_E* code.
 * The library stays loaded until exit. Prints one line on failure and
 * returns the exit status (0 on success).
 */
#define TOOL_PLUGIN_INIT "troupe_plugin_init"
typedef int (*tool_plugin_init_fn)(unsigned troupe_version_hex);
int tool_load_plugin(const char *path);

/* Append `n` bytes as lowercase hex / parse hex into out (capacity cap);
 * returns the byte count or -1. */
void tool_hex(FILE *f, const void *p, size_t n);
long tool_unhex(const char *s, size_t len, char *out, size_t cap);

/* Write a string as a JSON string literal (invalid UTF-8 as U+FFFD). */
void tool_json_str(FILE *f, const char *s, size_t n);

#endif
