/* test_gpt2_microbatch.c -- gradient accumulation over micro-batches: two backward calls with
 * loss_scale 0.5 on the two halves of the fixture batch (B/2 sequences each, separate
 * activation objects, both forwards before both backwards as GPipe does) accumulate to the
 * full-batch gradient, which the fixture gives from PyTorch. Against the unsharded full-batch
 * C run the difference is float re-association only (bound 1e-6 on gradients of ~0.1). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_fixture.h"
#include "test_util.h"

int main(void) {
  fx_t fx;
  if (fx_load(&fx) != 0) return 1;
  const int B = fx.B, T = fx.T, Bh = B / 2;
  CHECK_TRUE(B % 2 == 0);
  char err[256];
  gpt2_model_t *full = fx_model(&fx, 0, fx.cfg.layers, 1, 1);
  gpt2_model_t *mb = fx_model(&fx, 0, fx.cfg.layers, 1, 1);
  gpt2_acts_t *af = NULL, *a0 = NULL, *a1 = NULL;
  CHECK_EQ_INT(gpt2_acts_create(full, B, T, &af, err, sizeof err), 0);
  CHECK_EQ_INT(gpt2_acts_create(mb, Bh, T, &a0, err, sizeof err), 0);
  CHECK_EQ_INT(gpt2_acts_create(mb, Bh, T, &a1, err, sizeof err), 0);

  float lf = gpt2_forward(full, af, fx.tokens, NULL, fx.targets);
  gpt2_zero_grad(full);
  gpt2_backward(full, af, NULL, 1.0f, NULL);

  float l0 = gpt2_forward(mb, a0, fx.tokens, NULL, fx.targets);
  float l1 = gpt2_forward(mb, a1, fx.tokens + Bh * T, NULL, fx.targets + Bh * T);
  gpt2_zero_grad(mb);
  gpt2_backward(mb, a0, NULL, 0.5f, NULL);
  gpt2_backward(mb, a1, NULL, 0.5f, NULL);
  printf("full-batch loss %.7f, mean of halves %.7f\n", lf, 0.5 * (l0 + l1));
  CHECK_NEAR(0.5 * (l0 + l1), lf, 1e-6);

  double worst_c = 0, worst_t = 0;
  for (int i = 0; i < mb->num_tensors; i++) {
    const gpt2_tensor_t *t = &mb->tensors[i];
    char nm[128];
    snprintf(nm, sizeof nm, "grad/%s", t->name);
    double dc = fx_max_abs_diff(mb->grads + t->offset, full->grads + t->offset, t->numel);
    double dt = fx_max_abs_diff(mb->grads + t->offset, fx_floats(&fx, nm, NULL), t->numel);
    if (!(dc <= 1e-6)) test_fail(__FILE__, __LINE__, "%s: accumulated vs full-batch max |diff| %.3g", t->name, dc);
    if (!(dt <= 1e-4)) test_fail(__FILE__, __LINE__, "%s: accumulated vs torch max |diff| %.3g", t->name, dt);
    test_checks += 2;
    worst_c = dc > worst_c ? dc : worst_c;
    worst_t = dt > worst_t ? dt : worst_t;
  }
  printf("accumulated gradient: max |diff| %.2e vs full batch, %.2e vs torch\n", worst_c, worst_t);
  /* a half alone is not the full gradient (the test can fail) */
  gpt2_zero_grad(mb);
  gpt2_forward(mb, a0, fx.tokens, NULL, fx.targets);
  gpt2_backward(mb, a0, NULL, 0.5f, NULL);
  CHECK_TRUE(fx_max_abs_diff(mb->grads, full->grads, mb->num_params) > 1e-3);

  gpt2_acts_free(af);
  gpt2_acts_free(a0);
  gpt2_acts_free(a1);
  gpt2_free(full);
  gpt2_free(mb);
  fx_free(&fx);
  return test_finish("model_gpt2_microbatch");
}
