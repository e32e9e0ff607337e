/* test_gpt2_parity.c -- the single-shard GPT-2 matches PyTorch (tests/fixtures/gpt2_small.bin,
 * written by make_gpt2_fixture.py): logits, mean loss, every parameter gradient, and the
 * losses of 10 AdamW steps with warm-up + cosine lr and global-norm clipping.
 *
 * Tolerances: loss 1e-5, logits and gradients 1e-4 max abs, AdamW losses 1e-4. Both
 * sides compute in float32 with different summation orders, so the expected gap is a few
 * float32 ulps of the values involved (reached here: loss 5e-7, logits 8e-7, gradients
 * 1.5e-7, AdamW losses 5e-7); the bounds leave room for BLAS kernels that block the sums
 * differently on other CPUs. The reached errors are printed. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adamw.h"
#include "gpt2.h"
#include "gpt2_fixture.h"
#include "test_util.h"

#define TOL_LOSS 1e-5
#define TOL_LOGITS 1e-4
#define TOL_GRAD 1e-4
#define TOL_STEP_LOSS 1e-4

static void test_forward_backward_match_pytorch(const fx_t *fx) {
  gpt2_model_t *m = fx_model(fx, 0, fx->cfg.layers, 1, 1);
  CHECK_TRUE(m != NULL);
  if (!m) return;
  gpt2_acts_t *a = NULL;
  char err[256];
  CHECK_EQ_INT(gpt2_acts_create(m, fx->B, fx->T, &a, err, sizeof err), 0);
  float loss = gpt2_forward(m, a, fx->tokens, NULL, fx->targets);
  const float *ref_loss = fx_floats(fx, "loss", NULL);
  size_t nlog;
  const float *ref_logits = fx_floats(fx, "logits", &nlog);
  CHECK_EQ_INT(nlog, (size_t)fx->B * fx->T * fx->cfg.vocab);
  double dlog = fx_max_abs_diff(gpt2_logits(a), ref_logits, nlog);
  printf("loss %.7f (torch %.7f, |diff| %.2e); logits max |diff| %.2e (max |logit| %.3f)\n", loss,
         ref_loss[0], fabs(loss - ref_loss[0]), dlog, fx_max_abs(ref_logits, nlog));
  CHECK_NEAR(loss, ref_loss[0], TOL_LOSS);
  CHECK_TRUE(dlog <= TOL_LOGITS);

  /* per-position losses average to the loss */
  double s = 0;
  for (int i = 0; i < fx->B * fx->T; i++) s += gpt2_losses(a)[i];
  CHECK_NEAR(s / (fx->B * fx->T), loss, 1e-6);

  gpt2_zero_grad(m);
  gpt2_backward(m, a, NULL, 1.0f, NULL);
  const char *worst_name;
  double worst = fx_check_grads(fx, "", m->tensors, m->num_tensors, m->grads, TOL_GRAD, 0, &worst_name);
  printf("gradients: %d tensors, worst max |diff| %.2e (%s)\n", m->num_tensors, worst, worst_name);
  gpt2_acts_free(a);
  gpt2_free(m);
}

static void test_adamw_steps_match_pytorch(const fx_t *fx) {
  gpt2_model_t *m = fx_model(fx, 0, fx->cfg.layers, 1, 1);
  CHECK_TRUE(m != NULL);
  if (!m) return;
  gpt2_acts_t *a = NULL;
  adamw_t *opt = NULL;
  char err[256];
  CHECK_EQ_INT(gpt2_acts_create(m, fx->B, fx->T, &a, err, sizeof err), 0);
  CHECK_EQ_INT(adamw_create(0, m->num_params, &opt, err, sizeof err), 0);
  size_t ns;
  double ref_lrs[64];
  adamw_hparams_t hp;
  CHECK_EQ_INT(fx_adamw_hparams(fx, "adamw/hparams", &hp), 0);
  const float *ref_losses = fx_floats(fx, "adamw/losses", &ns);
  memcpy(ref_lrs, fx_doubles(fx, "adamw/lrs", NULL), sizeof(double) * ns);
  const float *ref_norms = fx_floats(fx, "adamw/norms", NULL);
  double worst = 0;
  for (size_t s = 0; s < ns; s++) {
    float loss = gpt2_forward(m, a, fx->tokens, NULL, fx->targets);
    gpt2_zero_grad(m);
    gpt2_backward(m, a, NULL, 1.0f, NULL);
    double ss = adamw_sum_squares(m->grads, m->num_params);
    double lr = adamw_lr_at(&hp, (int64_t)s);
    CHECK_NEAR(lr, ref_lrs[s], 1e-15);
    CHECK_NEAR(sqrt(ss), ref_norms[s], 1e-4);
    adamw_step(opt, &hp, m->params, m->grads, m->tensors, m->num_tensors, lr, adamw_clip_scale(ss, hp.grad_clip));
    printf("step %zu: loss %.6f torch %.6f |diff| %.2e  norm %.4f torch %.4f\n", s, loss, ref_losses[s],
           fabs(loss - ref_losses[s]), sqrt(ss), ref_norms[s]);
    CHECK_NEAR(loss, ref_losses[s], TOL_STEP_LOSS);
    if (fabs(loss - ref_losses[s]) > worst) worst = fabs(loss - ref_losses[s]);
  }
  printf("adamw: %zu steps, worst loss |diff| %.2e\n", ns, worst);
  /* the run must actually learn: the reference loss falls by more than 1.0 over the steps */
  CHECK_TRUE(ref_losses[0] - ref_losses[ns - 1] > 1.0f);
  adamw_free(opt);
  gpt2_acts_free(a);
  gpt2_free(m);
}

int main(void) {
  fx_t fx;
  if (fx_load(&fx) != 0) return 1;
  test_forward_backward_match_pytorch(&fx);
  test_adamw_steps_match_pytorch(&fx);
  fx_free(&fx);
  return test_finish("model_gpt2_parity");
}
