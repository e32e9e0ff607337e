/* tp_harness.c -- see tp_harness.h. */
#include "tp_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

void tpx_case(tpx_case_t *c, int heads, int dim, int B, int T) {
  c->cfg = (gpt2_config_t){.vocab = 300, .ctx = 32, .layers = 2, .heads = heads, .dim = dim};
  c->B = B;
  c->T = T;
  size_t n = (size_t)B * T;
  c->tokens = malloc(sizeof(int32_t) * n);
  c->targets = malloc(sizeof(int32_t) * n);
  uint32_t x = 12345u;
  for (size_t i = 0; i < n; i++) { /* an LCG: ids in every rank's vocabulary slice */
    x = x * 1664525u + 1013904223u;
    c->tokens[i] = (int32_t)((x >> 8) % (uint32_t)c->cfg.vocab);
    x = x * 1664525u + 1013904223u;
    c->targets[i] = (int32_t)((x >> 8) % (uint32_t)c->cfg.vocab);
  }
}

void tpx_case_free(tpx_case_t *c) {
  free(c->tokens);
  free(c->targets);
}

gpt2_model_t *tpx_model(const tpx_case_t *c, int lb, int le, int has_embed, int has_head, int t, int tp,
                        coll_comm_t *comm, int sp, gpt2_recompute_t mode) {
  gpt2_range_t r = {lb, le, has_embed, has_head, .tp_rank = t, .tp_size = tp};
  gpt2_model_t *m = NULL;
  char err[256];
  if (gpt2_create(&c->cfg, r, &m, err, sizeof err) != 0) {
    test_fail(__FILE__, __LINE__, "gpt2_create: %s", err);
    return NULL;
  }
  gpt2_init_params(m, TPX_SEED);
  if (gpt2_set_tp(m, comm, sp, err, sizeof err) != 0 || gpt2_set_recompute(m, mode) != 0) {
    test_fail(__FILE__, __LINE__, "gpt2_set_tp / gpt2_set_recompute: %s", err);
    gpt2_free(m);
    return NULL;
  }
  return m;
}

float tpx_step(gpt2_model_t **sh, int nshard, const tpx_case_t *c, float *logits) {
  gpt2_acts_t *a[4] = {0};
  char err[256];
  float loss = NAN;
  const int C = c->cfg.dim, rows = gpt2_stream_rows(sh[0], c->B, c->T);
  float *dx = malloc(sizeof(float) * (size_t)rows * C), *dnext = malloc(sizeof(float) * (size_t)rows * C);
  for (int s = 0; s < nshard; s++) {
    gpt2_zero_grad(sh[s]);
    if (gpt2_acts_create(sh[s], c->B, c->T, &a[s], err, sizeof err) != 0) {
      test_fail(__FILE__, __LINE__, "gpt2_acts_create: %s", err);
      goto out;
    }
  }
  for (int s = 0; s < nshard; s++)
    loss = gpt2_forward(sh[s], a[s], s == 0 ? c->tokens : NULL, s > 0 ? gpt2_output(a[s - 1]) : NULL,
                        s == nshard - 1 ? c->targets : NULL);
  if (logits)
    memcpy(logits, gpt2_logits(a[nshard - 1]),
           sizeof(float) * (size_t)c->B * c->T * gpt2_local_vocab(sh[nshard - 1]));
  for (int s = nshard - 1; s >= 0; s--) {
    if (gpt2_backward(sh[s], a[s], s == nshard - 1 ? NULL : dnext, 1.0f, s > 0 ? dx : NULL) != 0) {
      test_fail(__FILE__, __LINE__, "gpt2_backward of shard %d failed", s);
      loss = NAN;
      goto out;
    }
    memcpy(dnext, dx, sizeof(float) * (size_t)rows * C);
  }
out:
  for (int s = 0; s < nshard; s++) gpt2_acts_free(a[s]);
  free(dx);
  free(dnext);
  return loss;
}

void tpx_check_close(const char *what, const float *a, const float *b, size_t n, double tol) {
  size_t worst = 0;
  double wd = -1;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]) - tol * (1.0 + fabs((double)b[i]));
    if (isnan(d)) d = INFINITY;
    if (d > wd) {
      wd = d;
      worst = i;
    }
  }
  test_checks++;
  if (n && wd > 0)
    test_fail(__FILE__, __LINE__, "%s: element %zu is %.9g, expected %.9g within %.1e abs/rel", what, worst,
              a[worst], b[worst], tol);
}

void tpx_check_recompute(const tpx_case_t *c, int t, int tp, coll_comm_t *comm, int sp, int nshard) {
  const int L = c->cfg.layers;
  float loss[3];
  float *grads[3][2] = {{0}};
  size_t nparams[2] = {0};
  for (int mode = 0; mode < 3; mode++) {
    gpt2_model_t *sh[2] = {0};
    int ok = 1;
    for (int s = 0; s < nshard; s++) {
      int lb = nshard == 1 ? 0 : s == 0 ? 0 : L / 2, le = nshard == 1 ? L : s == 0 ? L / 2 : L;
      sh[s] = tpx_model(c, lb, le, s == 0, s == nshard - 1, t, tp, comm, sp, (gpt2_recompute_t)mode);
      ok &= sh[s] != NULL;
    }
    if (ok) {
      CHECK_EQ_INT(gpt2_get_recompute(sh[0]), mode);
      loss[mode] = tpx_step(sh, nshard, c, NULL);
      for (int s = 0; s < nshard; s++) {
        nparams[s] = sh[s]->num_params;
        grads[mode][s] = malloc(sizeof(float) * nparams[s]);
        memcpy(grads[mode][s], sh[s]->grads, sizeof(float) * nparams[s]);
      }
    }
    for (int s = 0; s < nshard; s++) gpt2_free(sh[s]);
    if (!ok) return;
  }
  for (int mode = 1; mode < 3; mode++) {
    test_checks++;
    if (memcmp(&loss[mode], &loss[0], sizeof loss[0]) != 0)
      test_fail(__FILE__, __LINE__, "tp %d sp %d shards %d: loss with recompute %s is %.9g, none %.9g", tp, sp,
                nshard, gpt2_recompute_name((gpt2_recompute_t)mode), loss[mode], loss[0]);
    for (int s = 0; s < nshard; s++) {
      test_checks++;
      if (memcmp(grads[mode][s], grads[0][s], sizeof(float) * nparams[s]) != 0) {
        size_t i = 0;
        while (grads[mode][s][i] == grads[0][s][i]) i++;
        test_fail(__FILE__, __LINE__, "tp %d sp %d: shard %d's gradient with recompute %s differs from none at "
                  "element %zu (%.9g vs %.9g)", tp, sp, s, gpt2_recompute_name((gpt2_recompute_t)mode), i,
                  grads[mode][s][i], grads[0][s][i]);
      }
    }
  }
  for (int mode = 0; mode < 3; mode++)
    for (int s = 0; s < nshard; s++) free(grads[mode][s]);
}
