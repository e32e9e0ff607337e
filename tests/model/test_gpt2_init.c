/* test_gpt2_init.c -- gpt2_init_params: GPT-2's initialisation (weights N(0, 0.02), residual
 * projections N(0, 0.02/sqrt(2L)), biases 0, LayerNorm weights 1), and every tensor identical
 * whichever way the model is sharded (each tensor's stream depends only on seed and name).
 * Statistics: the sample std of n normals has relative standard error 1/sqrt(2n), the sample
 * mean standard error std/sqrt(n); both are checked within 5 standard errors (the streams are
 * fixed by the seed, so the test is deterministic; 5 sigma leaves it robust to the seed). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gpt2.h"
#include "test_util.h"

int main(void) {
  const gpt2_config_t cfg = {.vocab = 256, .ctx = 64, .layers = 3, .heads = 4, .dim = 64};
  char err[256];
  gpt2_model_t *one = NULL, *sh[3] = {0};
  CHECK_EQ_INT(gpt2_create(&cfg, (gpt2_range_t){0, 3, 1, 1}, &one, err, sizeof err), 0);
  CHECK_EQ_INT(gpt2_create(&cfg, (gpt2_range_t){0, 1, 1, 0}, &sh[0], err, sizeof err), 0);
  CHECK_EQ_INT(gpt2_create(&cfg, (gpt2_range_t){1, 2, 0, 0}, &sh[1], err, sizeof err), 0);
  CHECK_EQ_INT(gpt2_create(&cfg, (gpt2_range_t){2, 3, 0, 1}, &sh[2], err, sizeof err), 0);
  gpt2_init_params(one, 7);
  for (int s = 0; s < 3; s++) gpt2_init_params(sh[s], 7);
  int matched = 0;
  for (int s = 0; s < 3; s++)
    for (int i = 0; i < sh[s]->num_tensors; i++) {
      const gpt2_tensor_t *t = &sh[s]->tensors[i];
      const gpt2_tensor_t *r = gpt2_find_tensor(one, t->name);
      CHECK_TRUE(r != NULL);
      if (!r) continue;
      CHECK_TRUE(memcmp(one->params + r->offset, sh[s]->params + t->offset, sizeof(float) * t->numel) == 0);
      matched++;
    }
  CHECK_EQ_INT(matched, one->num_tensors + 1); /* + the head stage's copy of wte */

  const double resid = 0.02 / sqrt(2.0 * cfg.layers);
  for (int i = 0; i < one->num_tensors; i++) {
    const gpt2_tensor_t *t = &one->tensors[i];
    const float *p = one->params + t->offset;
    double s = 0, s2 = 0;
    for (size_t j = 0; j < t->numel; j++) {
      s += p[j];
      s2 += (double)p[j] * p[j];
    }
    double mean = s / t->numel, std = sqrt(s2 / t->numel - mean * mean);
    if (t->ndim == 2) {
      int is_resid = strstr(t->name, "c_proj.weight") != NULL;
      double want = is_resid ? resid : 0.02;
      if (fabs(std - want) > 5.0 * want / sqrt(2.0 * t->numel) || fabs(mean) > 5.0 * want / sqrt((double)t->numel))
        test_fail(__FILE__, __LINE__, "%s: mean %.3g std %.4g, expected N(0, %.4g)", t->name, mean, std, want);
      test_checks++;
    } else {
      int is_ln_w = strstr(t->name, "ln_") && strstr(t->name, ".weight");
      CHECK_NEAR(mean, is_ln_w ? 1.0 : 0.0, 0.0);
      CHECK_NEAR(std, 0.0, 0.0);
    }
  }
  /* tensors get distinct streams, and seeds matter */
  CHECK_TRUE(memcmp(one->layer[0].attn_proj_w, one->layer[1].attn_proj_w, sizeof(float) * 64) != 0);
  float first = one->wte[0];
  gpt2_init_params(one, 8);
  CHECK_TRUE(one->wte[0] != first);
  gpt2_free(one);
  for (int s = 0; s < 3; s++) gpt2_free(sh[s]);
  return test_finish("model_gpt2_init");
}
