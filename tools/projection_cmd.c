/* projection_cmd.c: `troupe projection` (a placeholder until projections
 * land; their owner replaces this file). */
#include "tools/cmd.h"

#include <stdio.h>

int troupe_cmd_projection(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "troupe projection: not available in this build\n");
  return 2;
}
