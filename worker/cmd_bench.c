/* strata bench -- placeholder until the nccl-tests-style benchmark lands. */
#include <stdio.h>

#include "commands.h"

int cmd_bench(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "[strata] error: bench: not implemented yet\n");
  return 1;
}
