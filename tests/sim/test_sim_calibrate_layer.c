/* The cpu profile's timed layers (train/calibrate.c) are the run's family: a Llama model times
 * Llama layers (its shape rules apply: an odd head size, which GPT-2 accepts, is refused), a
 * stage of several layers returns a time per layer, and a layer that cannot be built is -1.
 * No time is compared: only that each run was built and timed. */
#include <stdio.h>

#include "calibrate.h"
#include "layout.h"
#include "test_util.h"

int main(void) {
  layout_model_t gpt = {.vocab = 64, .ctx = 16, .layers = 3, .heads = 4, .dim = 32};
  layout_model_t llama = gpt;
  llama.arch = LAYOUT_ARCH_LLAMA, llama.kv_heads = 2, llama.ffn = 48;
  CHECK_TRUE(calibrate_layer_time(&gpt, 2, 16, 1, 1, 0, NULL, 0) > 0);
  CHECK_TRUE(calibrate_layer_time(&gpt, 2, 16, 3, 1, 0, NULL, 1) > 0);
  CHECK_TRUE(calibrate_layer_time(&llama, 2, 16, 1, 1, 0, NULL, 0) > 0);
  CHECK_TRUE(calibrate_layer_time(&llama, 2, 16, 3, 1, 0, NULL, 0) > 0);
  /* head size 3: GPT-2 builds it; Llama's rotary positions need an even head size */
  gpt.dim = llama.dim = 12;
  llama.kv_heads = 4;
  CHECK_TRUE(calibrate_layer_time(&gpt, 2, 16, 2, 1, 0, NULL, 0) > 0);
  CHECK_TRUE(calibrate_layer_time(&llama, 2, 16, 2, 1, 0, NULL, 0) == -1);
  return test_finish("sim_calibrate_layer");
}
