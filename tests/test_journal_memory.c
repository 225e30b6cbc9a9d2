/* test_journal_memory.c: the storage conformance suite on the in-memory
 * backend. */
#include "journal_conformance.h"

#include <stdio.h>
#include <unistd.h>

static int mem_spec(char *buf, size_t size, void *data) {
  static int n;
  (void)data;
  /* named, so journal, snapshot and state handles can share it */
  snprintf(buf, size, "memory:jc-%d-%d", (int)getpid(), ++n);
  return 0;
}

int main(int argc, char **argv) {
  jc_backend b = {"memory", mem_spec, NULL, 0, NULL};
  return jc_run(argc, argv, &b);
}
