/* strata train -- placeholder until the command lands. */
#include <stdio.h>

#include "commands.h"

int cmd_train(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "[strata] error: train: not implemented yet\n");
  return 1;
}
