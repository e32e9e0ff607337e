/* strata eval -- placeholder until the command lands. */
#include <stdio.h>

#include "commands.h"

int cmd_eval(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "[strata] error: eval: not implemented yet\n");
  return 1;
}
