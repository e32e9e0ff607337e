/* infer_llama_kv_forward: Llama logits computed with the KV cache (llama_forward_kv: a prefill
 * of each prompt, then decode steps of one or a few tokens) equal the full forward
 * (llama_forward on the whole sequence) at every position. Three sequences of different
 * lengths go through every call together; grouped-query attention (kv_heads < heads, a cache
 * narrower than C) and multi-head (kv_heads == heads). Also: a position past the context and a
 * token outside the vocabulary are refused.
 * Tolerance 1e-4 absolute: both paths are fp32 with the same weights and kernels; they differ
 * in the order of the dot-product sums (sgemm blocking over other row counts) and in the
 * softmax over cached keys, a few ulps on logits of magnitude about 1-3 here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_cache.h"
#include "llama.h"
#include "rng.h"
#include "test_util.h"

#define TOL 1e-4
#define NSEQ 3

/* Weights of a trained model are far from init's N(0, 0.02): scale them up so the logits vary
 * by several units and a wrong position or a wrong cached key shows. */
static llama_model_t *make_model(const llama_config_t *cfg) {
  llama_model_t *m;
  char err[256];
  if (llama_create(cfg, &m, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
  llama_init_params(m, 11);
  for (size_t i = 0; i < m->num_params; i++) m->params[i] *= 4.0f;
  return m;
}

/* reference logits (T, V) of one whole sequence */
static float *full_logits(llama_model_t *m, const int32_t *tok, int T) {
  llama_acts_t *a;
  char err[256];
  if (llama_acts_create(m, 1, T, &a, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
  llama_forward(m, a, tok, NULL);
  float *out = malloc(sizeof(float) * T * m->cfg.vocab);
  memcpy(out, llama_logits(a), sizeof(float) * T * m->cfg.vocab);
  llama_acts_free(a);
  return out;
}

static double max_diff(const float *a, const float *b, int n) {
  double worst = 0;
  for (int i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
  }
  return worst;
}

static void check_config(const llama_config_t *cfg) {
  const int V = cfg->vocab, len[NSEQ] = {9, 17, cfg->ctx}, prompt[NSEQ] = {3, 8, 1};
  llama_model_t *m = make_model(cfg);
  char err[256];
  int32_t tok[NSEQ][64];
  float *ref[NSEQ];
  kv_cache_t *c[NSEQ];
  rng_t r;
  rng_seed(&r, 5, (uint64_t)cfg->kv_heads);
  CHECK_EQ_INT(llama_kv_dim(m), cfg->kv_heads * (cfg->dim / cfg->heads));
  for (int q = 0; q < NSEQ; q++) {
    for (int i = 0; i < len[q]; i++) tok[q][i] = (int32_t)rng_below(&r, V);
    ref[q] = full_logits(m, tok[q], len[q]);
    if (kv_cache_create(cfg->layers, llama_kv_dim(m), cfg->ctx, &c[q], err, sizeof err))
      test_fail(__FILE__, __LINE__, "%s", err);
  }
  float *out = malloc(sizeof(float) * NSEQ * 64 * V);
  int32_t in[NSEQ * 64];
  double worst = 0;
  /* prefill all three in one call, logits of every row */
  gpt2_kv_seq_t s[NSEQ];
  int n = 0;
  for (int q = 0; q < NSEQ; q++) {
    s[q] = kv_cache_seq(c[q], prompt[q]);
    memcpy(in + n, tok[q], sizeof(int32_t) * prompt[q]);
    n += prompt[q];
  }
  CHECK_EQ_INT(llama_forward_kv(m, s, NSEQ, in, NULL, out, 0, err, sizeof err), 0);
  n = 0;
  for (int q = 0; q < NSEQ; q++) {
    worst = fmax(worst, max_diff(out + (size_t)n * V, ref[q], prompt[q] * V));
    n += prompt[q];
    kv_cache_advance(c[q], prompt[q]);
  }
  /* decode: every unfinished sequence advances in each call; sequence 1 takes 3 tokens at a
   * time (a chunked prefill beside single-token decodes), last_only logits */
  for (int step = 0;; step++) {
    int nseq = 0, idx[NSEQ];
    n = 0;
    for (int q = 0; q < NSEQ; q++) {
      int done = c[q]->n_pos, left = len[q] - done;
      if (left <= 0) continue;
      int n_new = q == 1 && left >= 3 ? 3 : 1;
      idx[nseq] = q;
      s[nseq++] = kv_cache_seq(c[q], n_new);
      memcpy(in + n, tok[q] + done, sizeof(int32_t) * n_new);
      n += n_new;
    }
    if (nseq == 0) break;
    CHECK_EQ_INT(llama_forward_kv(m, s, nseq, in, NULL, out, 1, err, sizeof err), 0);
    for (int i = 0; i < nseq; i++) {
      int q = idx[i], last = c[q]->n_pos + s[i].n_new - 1;
      worst = fmax(worst, max_diff(out + (size_t)i * V, ref[q] + (size_t)last * V, V));
      kv_cache_advance(c[q], s[i].n_new);
    }
  }
  printf("heads %d kv_heads %d: max |logit diff| over %d+%d+%d positions = %.3g\n", cfg->heads, cfg->kv_heads,
         len[0], len[1], len[2], worst);
  CHECK_NEAR(worst, 0.0, TOL);
  for (int q = 0; q < NSEQ; q++) CHECK_EQ_INT(c[q]->n_pos, len[q]);
  /* the longest sequence fills the context: one more position is refused, nothing written */
  gpt2_kv_seq_t over = kv_cache_seq(c[2], 1);
  over.cap = cfg->ctx + 1;
  CHECK_EQ_INT(llama_forward_kv(m, &over, 1, in, NULL, out, 1, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "context") != NULL);
  kv_cache_reset(c[0]);
  gpt2_kv_seq_t one = kv_cache_seq(c[0], 1);
  int32_t bad = V;
  CHECK_EQ_INT(llama_forward_kv(m, &one, 1, &bad, NULL, out, 1, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "vocabulary") != NULL);
  for (int q = 0; q < NSEQ; q++) {
    kv_cache_free(c[q]);
    free(ref[q]);
  }
  free(out);
  llama_free(m);
}

int main(void) {
  const llama_config_t gqa = {.vocab = 53, .ctx = 24, .layers = 3, .heads = 4, .kv_heads = 2, .dim = 32,
                              .ffn = 72, .rms_norm_eps = 1e-5, .rope_theta = 1e4};
  llama_config_t mha = gqa;
  mha.heads = mha.kv_heads = 4;
  llama_config_t mqa = gqa;
  mqa.kv_heads = 1;
  check_config(&gqa);
  check_config(&mha);
  check_config(&mqa);
  return test_finish("infer_llama_kv_forward");
}
