/* strata simulate -- placeholder until the command lands. */
#include <stdio.h>

#include "commands.h"

int cmd_simulate(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "[strata] error: simulate: not implemented yet\n");
  return 1;
}
