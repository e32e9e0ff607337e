/* test_gpt2_sharded.c -- the model split into 2 and 3 contiguous layer ranges (first owns the
 * embedding, last owns ln_f + the tied head, middle ones neither) computes exactly what the
 * single shard computes: forward chained through gpt2_output -> x_in, backward through
 * dx_in -> dx_out. Every parameter gradient is bit-identical to the unsharded run except wte,
 * which exists twice (first stage: embedding gradient; last stage: head gradient): their SUM
 * equals the unsharded wte gradient up to float re-association (bound 1e-6, the values are
 * ~0.1) and matches PyTorch's within 1e-4 like every other gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_fixture.h"
#include "test_util.h"

#define TOL_GRAD 1e-4
#define TOL_WTE_REASSOC 1e-6

/* Runs forward + backward through shards split at cuts[0..nshard-2]; checks against the
 * unsharded model `ref` (already run forward+backward) and the fixture. */
static void check_split(const fx_t *fx, const gpt2_model_t *ref, float ref_loss, const float *ref_logits,
                        const int *bounds, int nshard) {
  printf("split:");
  for (int s = 0; s < nshard; s++) printf(" [%d,%d)", bounds[s], bounds[s + 1]);
  printf("\n");
  const int B = fx->B, T = fx->T, C = fx->cfg.dim, V = fx->cfg.vocab;
  const size_t NC = (size_t)B * T * C;
  gpt2_model_t *sh[4] = {0};
  gpt2_acts_t *ac[4] = {0};
  char err[256];
  for (int s = 0; s < nshard; s++) {
    sh[s] = fx_model(fx, bounds[s], bounds[s + 1], s == 0, s == nshard - 1);
    CHECK_TRUE(sh[s] != NULL);
    if (!sh[s]) return;
    CHECK_EQ_INT(gpt2_acts_create(sh[s], B, T, &ac[s], err, sizeof err), 0);
    gpt2_zero_grad(sh[s]);
  }
  /* forward chain */
  float loss = 0;
  for (int s = 0; s < nshard; s++) {
    const float *x_in = s > 0 ? gpt2_output(ac[s - 1]) : NULL;
    loss = gpt2_forward(sh[s], ac[s], s == 0 ? fx->tokens : NULL, x_in,
                        s == nshard - 1 ? fx->targets : NULL);
  }
  CHECK_TRUE(memcmp(&loss, &ref_loss, sizeof loss) == 0);
  CHECK_TRUE(memcmp(gpt2_logits(ac[nshard - 1]), ref_logits, sizeof(float) * B * T * V) == 0);
  /* backward chain */
  float *dx = malloc(sizeof(float) * NC), *dx_next = malloc(sizeof(float) * NC);
  for (int s = nshard - 1; s >= 0; s--) {
    gpt2_backward(sh[s], ac[s], s == nshard - 1 ? NULL : dx_next, 1.0f, s == 0 ? NULL : dx);
    memcpy(dx_next, dx, sizeof(float) * NC);
  }
  /* every tensor: identical to the unsharded gradient (wte: summed over its two copies) */
  int seen = 0;
  for (int s = 0; s < nshard; s++) {
    for (int i = 0; i < sh[s]->num_tensors; i++) {
      const gpt2_tensor_t *t = &sh[s]->tensors[i];
      const gpt2_tensor_t *rt = gpt2_find_tensor(ref, t->name);
      CHECK_TRUE(rt != NULL && rt->numel == t->numel);
      CHECK_TRUE(memcmp(ref->params + rt->offset, sh[s]->params + t->offset, sizeof(float) * t->numel) == 0);
      if (strcmp(t->name, "wte.weight") == 0) continue;
      seen++;
      if (memcmp(ref->grads + rt->offset, sh[s]->grads + t->offset, sizeof(float) * t->numel) != 0)
        test_fail(__FILE__, __LINE__, "gradient %s differs from the unsharded run (max |diff| %.3g)", t->name,
                  fx_max_abs_diff(ref->grads + rt->offset, sh[s]->grads + t->offset, t->numel));
      test_checks++;
    }
  }
  CHECK_EQ_INT(seen, ref->num_tensors - 1);
  const gpt2_tensor_t *w0 = gpt2_find_tensor(sh[0], "wte.weight");
  const gpt2_tensor_t *wl = gpt2_find_tensor(sh[nshard - 1], "wte.weight");
  const gpt2_tensor_t *wr = gpt2_find_tensor(ref, "wte.weight");
  size_t n = wr->numel;
  float *sum = malloc(sizeof(float) * n);
  for (size_t i = 0; i < n; i++) sum[i] = sh[0]->grads[w0->offset + i] + sh[nshard - 1]->grads[wl->offset + i];
  double d_ref = fx_max_abs_diff(sum, ref->grads + wr->offset, n);
  double d_torch = fx_max_abs_diff(sum, fx_floats(fx, "grad/wte.weight", NULL), n);
  printf("  wte: first+last vs unsharded max |diff| %.2e, vs torch %.2e\n", d_ref, d_torch);
  CHECK_TRUE(d_ref <= TOL_WTE_REASSOC);
  CHECK_TRUE(d_torch <= TOL_GRAD);
  /* each copy alone is not the full gradient: both halves carry signal */
  CHECK_TRUE(fx_max_abs(sh[0]->grads + w0->offset, n) > 1e-3);
  CHECK_TRUE(fx_max_abs(sh[nshard - 1]->grads + wl->offset, n) > 1e-3);
  free(sum);
  free(dx);
  free(dx_next);
  for (int s = 0; s < nshard; s++) {
    gpt2_acts_free(ac[s]);
    gpt2_free(sh[s]);
  }
}

int main(void) {
  fx_t fx;
  if (fx_load(&fx) != 0) return 1;
  const int L = fx.cfg.layers;
  CHECK_TRUE(L >= 3);
  gpt2_model_t *ref = fx_model(&fx, 0, L, 1, 1);
  gpt2_acts_t *a = NULL;
  char err[256];
  CHECK_EQ_INT(gpt2_acts_create(ref, fx.B, fx.T, &a, err, sizeof err), 0);
  float loss = gpt2_forward(ref, a, fx.tokens, NULL, fx.targets);
  /* keep the logits: backward reuses their buffer for d(loss)/d(logits) */
  size_t nlog = (size_t)fx.B * fx.T * fx.cfg.vocab;
  float *logits = malloc(sizeof(float) * nlog);
  memcpy(logits, gpt2_logits(a), sizeof(float) * nlog);
  gpt2_zero_grad(ref);
  gpt2_backward(ref, a, NULL, 1.0f, NULL);

  int two[] = {0, 1, L};
  check_split(&fx, ref, loss, logits, two, 2);
  int three[] = {0, 1, 2, L};
  check_split(&fx, ref, loss, logits, three, 3);
  /* edge shapes: an embedding-only first stage and a head-only last stage (no layers) */
  int edges[] = {0, 0, L, L};
  check_split(&fx, ref, loss, logits, edges, 3);

  free(logits);
  gpt2_acts_free(a);
  gpt2_free(ref);
  fx_free(&fx);
  return test_finish("model_gpt2_sharded");
}
