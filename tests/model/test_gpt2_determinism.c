/* test_gpt2_determinism.c -- the same seed and configuration give bit-identical results:
 * two independent runs of 5 training steps (init from seed, forward, backward, AdamW) produce
 * identical losses and identical parameters, bit for bit; a different seed gives different
 * losses (so the comparison can fail). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "gpt2.h"
#include "rng.h"
#include "test_util.h"

#define STEPS 5

static void run(uint64_t seed, float *losses, float **params_out, size_t *n_out) {
  gpt2_config_t cfg = {.vocab = 96, .ctx = 24, .layers = 2, .heads = 2, .dim = 48};
  gpt2_range_t range = {0, cfg.layers, 1, 1};
  enum { B = 3, T = 24 }; /* constants, so tok and tgt below are not VLAs */
  gpt2_model_t *m = NULL;
  gpt2_acts_t *a = NULL;
  adamw_t *opt = NULL;
  char err[256];
  CHECK_EQ_INT(gpt2_create(&cfg, range, &m, err, sizeof err), 0);
  gpt2_init_params(m, seed);
  CHECK_EQ_INT(gpt2_acts_create(m, B, T, &a, err, sizeof err), 0);
  CHECK_EQ_INT(adamw_create(0, m->num_params, &opt, err, sizeof err), 0);
  adamw_hparams_t hp;
  adamw_hparams_default(&hp);
  hp.warmup_steps = 2;
  hp.decay_steps = STEPS;
  int32_t tok[B * T], tgt[B * T];
  rng_t r;
  rng_seed(&r, seed, rng_hash_str("test-data"));
  for (int s = 0; s < STEPS; s++) {
    for (int i = 0; i < B * T; i++) {
      tok[i] = (int32_t)rng_below(&r, cfg.vocab);
      tgt[i] = (int32_t)rng_below(&r, cfg.vocab);
    }
    losses[s] = gpt2_forward(m, a, tok, NULL, tgt);
    gpt2_zero_grad(m);
    gpt2_backward(m, a, NULL, 1.0f, NULL);
    double ss = adamw_sum_squares(m->grads, m->num_params);
    adamw_step(opt, &hp, m->params, m->grads, m->tensors, m->num_tensors, adamw_lr_at(&hp, s),
               adamw_clip_scale(ss, hp.grad_clip));
  }
  *n_out = m->num_params;
  *params_out = malloc(sizeof(float) * m->num_params);
  memcpy(*params_out, m->params, sizeof(float) * m->num_params);
  adamw_free(opt);
  gpt2_acts_free(a);
  gpt2_free(m);
}

int main(void) {
  float l1[STEPS], l2[STEPS], l3[STEPS];
  float *p1, *p2, *p3;
  size_t n1, n2, n3;
  run(42, l1, &p1, &n1);
  run(42, l2, &p2, &n2);
  run(43, l3, &p3, &n3);
  for (int s = 0; s < STEPS; s++) printf("step %d: %.9g %.9g (seed 43: %.9g)\n", s, l1[s], l2[s], l3[s]);
  CHECK_TRUE(memcmp(l1, l2, sizeof l1) == 0);
  CHECK_EQ_INT(n1, n2);
  CHECK_TRUE(memcmp(p1, p2, sizeof(float) * n1) == 0);
  CHECK_TRUE(memcmp(l1, l3, sizeof l1) != 0);
  free(p1);
  free(p2);
  free(p3);
  return test_finish("model_gpt2_determinism");
}
