/* The memory model against the real allocator: for several layouts of a small GPT-2, every
 * stage's parameter count equals gpt2_create's num_params exactly, and its activation bytes per
 * micro-batch equal gpt2_acts_bytes up to gpt2.c's alignment padding (each sub-buffer rounded
 * up to 16 floats: at most 15 floats per buffer, 13 buffers per layer + 7 others). */
#include <stdio.h>

#include "gpt2.h"
#include "memory_model.h"
#include "test_util.h"

static void check_layout(const layout_model_t *m, int P, int M, int batch) {
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, m, P, 1, P, 1, M, batch, NULL, err, sizeof err), 0);
  gpt2_config_t cfg = {m->vocab, m->ctx, m->layers, m->heads, m->dim};
  for (int s = 0; s < P; s++) {
    gpt2_range_t range = {lay.layer_begin[s], lay.layer_begin[s + 1], s == 0, s == P - 1};
    gpt2_model_t *g = NULL;
    if (gpt2_create(&cfg, range, &g, err, sizeof err)) {
      test_fail(__FILE__, __LINE__, "gpt2_create: %s", err);
      continue;
    }
    CHECK_EQ_INT(g->num_params, layout_stage_params(&lay, s));
    gpt2_acts_t *a = NULL;
    if (gpt2_acts_create(g, lay.micro_batch, m->ctx, &a, err, sizeof err)) {
      test_fail(__FILE__, __LINE__, "gpt2_acts_create: %s", err);
    } else {
      double model = MEM_ELEM_BYTES * memory_stage_act_elems(&lay, s);
      double real = (double)gpt2_acts_bytes(a);
      int buffers = 13 * layout_stage_layers(&lay, s) + 7;
      if (!(real >= model && real - model <= 4.0 * 15 * buffers))
        test_fail(__FILE__, __LINE__, "P=%d stage %d: model %.0f bytes, gpt2.c allocates %.0f", P,
                  s, model, real);
      test_checks++;
      gpt2_acts_free(a);
    }
    gpt2_free(g);
  }
}

int main(void) {
  layout_model_t m = {96, 16, 6, 4, 32}; /* V, T, L, H, C */
  check_layout(&m, 1, 1, 2);
  check_layout(&m, 2, 2, 6);
  check_layout(&m, 3, 1, 3);
  layout_model_t odd = {101, 12, 5, 3, 24};
  check_layout(&odd, 5, 2, 2);
  return test_finish("sim_memory_vs_gpt2");
}
