/* test_adamw.c -- worker/model/adamw.c against closed forms and an independent double-precision
 * reference of torch.optim.AdamW's update rule:
 *  - one step from zero moments: m = (1-b1) g, v = (1-b2) g^2, bias-corrected update
 *    lr * g/|g| (minus eps effects), decoupled decay p *= 1 - lr*wd;
 *  - 20 steps on random gradients match a double reference within 1e-6 relative;
 *  - weight decay only on decay=1 tensors;
 *  - a ZeRO-style split of the state into slices gives bit-identical parameters;
 *  - warm-up / cosine / floor learning rates; clip factor as clip_grad_norm_; sum of squares;
 *  - hyper-parameter validation names the field. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "rng.h"
#include "test_util.h"

static void test_one_step_closed_form(void) {
  float p = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
  adamw_update(&p, &g, &m, &v, 1, 0.1, 0.9, 0.95, 1e-8, 0.1, 1.0f, 1);
  /* m = 0.05, v = 0.0125; m_hat = 0.5, v_hat = 0.25; p = 1*(1 - 0.01) - 0.1 * 0.5/(0.5 + 1e-8) */
  CHECK_NEAR(m, 0.05, 1e-8);
  CHECK_NEAR(v, 0.0125, 1e-9);
  CHECK_NEAR(p, 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-7);
  /* grad_scale multiplies the gradient before the moments */
  p = 1.0f, m = 0.0f, v = 0.0f;
  adamw_update(&p, &g, &m, &v, 1, 0.1, 0.9, 0.95, 1e-8, 0.0, 0.5f, 1);
  CHECK_NEAR(m, 0.025, 1e-8);
  CHECK_NEAR(p, 0.9, 1e-7);
}

static void test_many_steps_match_double_reference(void) {
  enum { N = 257, STEPS = 20 };
  float p[N], g[N], m[N] = {0}, v[N] = {0};
  double pd[N], md[N] = {0}, vd[N] = {0};
  rng_t r;
  rng_seed(&r, 1, 2);
  for (int i = 0; i < N; i++) pd[i] = p[i] = rng_normal(&r);
  const double lr = 3e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  for (int t = 1; t <= STEPS; t++) {
    for (int i = 0; i < N; i++) g[i] = 0.1f * rng_normal(&r);
    adamw_update(p, g, m, v, N, lr, b1, b2, eps, wd, 1.0f, t);
    for (int i = 0; i < N; i++) {
      pd[i] *= 1.0 - lr * wd;
      md[i] = b1 * md[i] + (1 - b1) * g[i];
      vd[i] = b2 * vd[i] + (1 - b2) * (double)g[i] * g[i];
      double mh = md[i] / (1 - pow(b1, t)), vh = vd[i] / (1 - pow(b2, t));
      pd[i] -= lr * mh / (sqrt(vh) + eps);
    }
  }
  double worst = 0;
  for (int i = 0; i < N; i++) worst = fmax(worst, fabs(p[i] - pd[i]) / fmax(1.0, fabs(pd[i])));
  printf("20 AdamW steps vs double reference: max rel error %.2e\n", worst);
  CHECK_TRUE(worst < 1e-6);
}

static void test_decay_only_on_2d_and_slices_identical(void) {
  /* fake catalogue: a 2-D tensor (decay) then a bias (no decay) */
  gpt2_tensor_t ts[2];
  memset(ts, 0, sizeof ts);
  strcpy(ts[0].name, "w");
  ts[0].ndim = 2, ts[0].offset = 0, ts[0].numel = 60, ts[0].decay = 1;
  strcpy(ts[1].name, "b");
  ts[1].ndim = 1, ts[1].offset = 60, ts[1].numel = 40, ts[1].decay = 0;
  float p[100], p2[100], g[100];
  for (int i = 0; i < 100; i++) p[i] = p2[i] = 1.0f, g[i] = 0.0f;
  adamw_hparams_t hp;
  adamw_hparams_default(&hp);
  hp.weight_decay = 0.5;
  adamw_t *full = NULL, *s0 = NULL, *s1 = NULL;
  char err[128];
  CHECK_EQ_INT(adamw_create(0, 100, &full, err, sizeof err), 0);
  /* zero gradient: only the decay moves parameters */
  adamw_step(full, &hp, p, g, ts, 2, 0.1f, 1.0f);
  CHECK_NEAR(p[0], 1.0 - 0.1 * 0.5, 1e-7);
  CHECK_NEAR(p[59], 1.0 - 0.1 * 0.5, 1e-7);
  CHECK_NEAR(p[60], 1.0, 0.0);
  CHECK_NEAR(p[99], 1.0, 0.0);
  /* slices [0, 37) and [37, 100) (cutting the 2-D tensor) == whole */
  CHECK_EQ_INT(adamw_create(0, 37, &s0, err, sizeof err), 0);
  CHECK_EQ_INT(adamw_create(37, 63, &s1, err, sizeof err), 0);
  adamw_step(s0, &hp, p2, g, ts, 2, 0.1f, 1.0f);
  adamw_step(s1, &hp, p2, g, ts, 2, 0.1f, 1.0f);
  rng_t r;
  rng_seed(&r, 3, 4);
  for (int s = 0; s < 5; s++) {
    for (int i = 0; i < 100; i++) g[i] = rng_normal(&r);
    adamw_step(full, &hp, p, g, ts, 2, 0.01f, 0.7f);
    adamw_step(s0, &hp, p2, g, ts, 2, 0.01f, 0.7f);
    adamw_step(s1, &hp, p2, g, ts, 2, 0.01f, 0.7f);
  }
  CHECK_TRUE(memcmp(p, p2, sizeof p) == 0);
  CHECK_EQ_INT(full->t, 6);
  CHECK_EQ_INT(s1->t, 6);
  adamw_free(full);
  adamw_free(s0);
  adamw_free(s1);
}

static void test_schedule(void) {
  adamw_hparams_t hp;
  adamw_hparams_default(&hp);
  hp.lr = 1.0, hp.warmup_steps = 4, hp.decay_steps = 14, hp.min_lr_ratio = 0.1;
  CHECK_NEAR(adamw_lr_at(&hp, 0), 0.25, 1e-7);
  CHECK_NEAR(adamw_lr_at(&hp, 3), 1.0, 1e-7);
  CHECK_NEAR(adamw_lr_at(&hp, 4), 1.0, 1e-7);          /* cosine starts at the peak */
  CHECK_NEAR(adamw_lr_at(&hp, 9), 0.55, 1e-12);         /* halfway: (1 + 0.1) / 2 */
  CHECK_NEAR(adamw_lr_at(&hp, 14), 0.1, 1e-7);         /* floor */
  CHECK_NEAR(adamw_lr_at(&hp, 1000), 0.1, 1e-7);
  hp.decay_steps = 0;                                  /* no decay: constant after warm-up */
  CHECK_NEAR(adamw_lr_at(&hp, 1000), 1.0, 0.0);
  hp.warmup_steps = 0;
  CHECK_NEAR(adamw_lr_at(&hp, 0), 1.0, 0.0);
}

static void test_clip_and_norm(void) {
  float g[1000];
  for (int i = 0; i < 1000; i++) g[i] = (i % 2) ? 0.5f : -0.5f;
  CHECK_NEAR(adamw_sum_squares(g, 1000), 250.0, 1e-9);
  CHECK_NEAR(adamw_sum_squares(g, 3), 0.75, 1e-12);
  CHECK_NEAR(adamw_clip_scale(4.0, 1.0), 1.0 / (2.0 + 1e-6), 1e-7);
  CHECK_NEAR(adamw_clip_scale(0.25, 1.0), 1.0, 0.0);   /* norm 0.5 < 1: untouched */
  CHECK_NEAR(adamw_clip_scale(100.0, 0.0), 1.0, 0.0);  /* disabled */
  /* distributed: sum of the parts' sums of squares = the whole's */
  CHECK_NEAR(adamw_sum_squares(g, 400) + adamw_sum_squares(g + 400, 600), adamw_sum_squares(g, 1000), 1e-9);
}

static void test_hparams_validation(void) {
  adamw_hparams_t hp;
  char err[256];
  adamw_hparams_default(&hp);
  CHECK_EQ_INT(adamw_hparams_check(&hp, err, sizeof err), 0);
  hp.lr = -1;
  CHECK_EQ_INT(adamw_hparams_check(&hp, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "lr") != NULL);
  adamw_hparams_default(&hp);
  hp.beta2 = 1.0;
  CHECK_EQ_INT(adamw_hparams_check(&hp, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "beta2") != NULL);
  adamw_hparams_default(&hp);
  hp.warmup_steps = -3;
  CHECK_EQ_INT(adamw_hparams_check(&hp, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "warmup_steps") != NULL);
}

int main(void) {
  test_one_step_closed_form();
  test_many_steps_match_double_reference();
  test_decay_only_on_2d_and_slices_identical();
  test_schedule();
  test_clip_and_norm();
  test_hparams_validation();
  return test_finish("model_adamw");
}
