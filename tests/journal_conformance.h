/*
 * journal_conformance.h: the storage conformance suite. One scenario set
 * (journal, snapshot store, durable state) that every backend must pass,
 * run by a small per-backend program:
 *
 *   static int spec(char *buf, size_t n, void *d) { ...unique spec... }
 *   int main(int argc, char **argv) {
 *     jc_backend b = {"memory", spec, NULL, 0, NULL};
 *     return jc_run(argc, argv, &b);
 *   }
 *
 * Scenarios that need a store that survives close (reopen) run only when
 * `persistent` is set. Every store the suite opens uses create_if_missing
 * and a spec from `fresh_spec`, so scenarios never see each other's data.
 */
#ifndef JOURNAL_CONFORMANCE_H
#define JOURNAL_CONFORMANCE_H

#include <stddef.h>

typedef struct jc_backend {
  const char *name;
  /* Write a spec naming a new, empty store into buf; 0 or -1. */
  int (*fresh_spec)(char *buf, size_t size, void *data);
  /* Called at the end with every spec handed out (may be NULL). */
  void (*cleanup)(const char *spec, void *data);
  int persistent;
  void *data;
} jc_backend;

/* Run the scenarios (those named in argv, or all). Returns the exit
 * status: 0 passed, 1 failed, 77 all skipped. */
int jc_run(int argc, char **argv, const jc_backend *b);

#endif
