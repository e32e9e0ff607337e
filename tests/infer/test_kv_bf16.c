/* infer_kv_bf16: generation with a bf16 KV cache (--precision bf16).
 * GPT-2 (bf16 matrix products, gpt2_set_matmul_dtype): logits of a prefill then one position at
 * a time through gpt2_forward_kv with bf16 caches, on one shard and on two, equal gpt2_forward
 * of the whole sequence with bf16 products within TOL_SAME (1e-5, as infer_kv_forward: the
 * attention products round their K and V inputs to bf16 anyway, so storing them in bf16 loses
 * nothing; only the order of sums differs), and differ from the fp32 full forward by more than
 * MIN_EFFECT. Layer 0's cached keys and values are exactly the bf16 round-to-nearest-even of an
 * fp32 cache's (layer 0's input does not depend on the cache). A bf16 cache takes half the
 * bytes of an fp32 one.
 * Llama, fp32 products with a bf16 cache: against llama_forward in fp32, within TOL_REL of the
 * largest |logit| (weights scaled up as in infer_llama_kv_forward: logits of several units): a
 * bf16 key or value carries a relative error up to 2^-9, which attention and the later layers
 * carry into the logits; and more than MIN_EFFECT away from the fp32 cache's logits. Llama with
 * bf16 products (llama_set_matmul_dtype, as --precision bf16 sets it) and a bf16 cache: against
 * llama_forward with bf16 products within TOL_SAME of the largest |logit|, as GPT-2 (the
 * attention products round K and V to bf16 anyway). Measured worst: printed.
 * TOL_SAME holds where the GEMM library computes a row of a product the same whether it is
 * multiplied alone (decoding) or with the other rows (the whole sequence). Not every library
 * and CPU does (oneDNN on a Sapphire Rapids core, OpenBLAS's Prescott kernels): a sum that
 * differs in its last fp32 bit can round the next product's input to the neighbouring bf16
 * value, and the logits then differ by about 1e-2. Where a comparison misses TOL_SAME,
 * bf16_rows_invariant probes the model's product shapes: if they are not row-invariant the
 * comparison is held to TOL_REL of the largest |logit| instead, with a note; if they are, it
 * fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "gpt2.h"
#include "kv_cache.h"
#include "llama.h"
#include "rng.h"
#include "test_util.h"

#define TOL_SAME 1e-5
#define TOL_REL (1.0 / 64)
#define MIN_EFFECT 1e-4

static const gpt2_config_t cfg = {.vocab = 61, .ctx = 32, .layers = 4, .heads = 3, .dim = 36};

static double max_diff(const float *a, const float *b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
  }
  return worst;
}

/* 1 when gemm_bf16 gives each row of a T-row product (NN and NT) bit for bit what it gives that
 * row alone, at every (K, N) of `kn` (n pairs). */
static int bf16_rows_invariant(const int (*kn)[2], int n, int T) {
  int same = 1;
  for (int i = 0; i < n && same; i++) {
    const int K = kn[i][0], N = kn[i][1];
    float *A = malloc(sizeof(float) * T * K), *B = malloc(sizeof(float) * K * N), *all = malloc(sizeof(float) * T * N),
          *one = malloc(sizeof(float) * N);
    rng_t r;
    rng_seed(&r, 5, (uint64_t)i);
    for (int j = 0; j < T * K; j++) A[j] = rng_uniform(&r) - 0.5f;
    for (int j = 0; j < K * N; j++) B[j] = rng_uniform(&r) - 0.5f;
    for (int tb = 0; tb < 2 && same; tb++) {
      const int ldb = tb ? K : N;
      gemm_bf16(0, tb, T, N, K, 1.0f, A, K, B, ldb, 0.0f, all, N);
      for (int row = 0; row < T && same; row++) {
        gemm_bf16(0, tb, 1, N, K, 1.0f, A + (size_t)row * K, K, B, ldb, 0.0f, one, N);
        same = memcmp(one, all + (size_t)row * N, sizeof(float) * N) == 0;
      }
    }
    free(A), free(B), free(all), free(one);
  }
  return same;
}

/* Decoding's logits `d` away from the whole sequence's: within TOL_SAME * `scale`, or, where this
 * machine's products at the shapes `kn` are not row-invariant, within TOL_REL of the largest
 * |logit| `big`, saying so. */
static void check_decode(const char *what, double d, const int (*kn)[2], int n, int T, double scale, double big) {
  const double strict = TOL_SAME * scale;
  if (d <= strict || bf16_rows_invariant(kn, n, T)) {
    CHECK_NEAR(d, 0.0, strict); /* row-invariant products give decoding no reason to differ */
    return;
  }
  printf("note: %s: this machine's bf16 products are not row-invariant (a row alone and within %d rows differ), "
         "so decoding is held to %.3g (1/64 of the largest |logit|) instead of %.3g\n", what, T, TOL_REL * big,
         strict);
  CHECK_NEAR(d, 0.0, TOL_REL * big);
}

static gpt2_model_t *gpt2_make(gpt2_range_t r, gemm_dtype_t dt) {
  gpt2_model_t *m;
  char err[256];
  if (gpt2_create(&cfg, r, &m, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
  gpt2_init_params(m, 7);
  for (size_t i = 0; i < m->num_params; i++) m->params[i] *= 3.0f;
  gpt2_set_matmul_dtype(m, dt);
  return m;
}

/* logits (T, V) of the whole sequence by gpt2_forward in dt */
static float *gpt2_full(const int32_t *tok, int T, gemm_dtype_t dt) {
  gpt2_range_t all = {0, cfg.layers, 1, 1};
  gpt2_model_t *m = gpt2_make(all, dt);
  gpt2_acts_t *a;
  char err[256];
  if (gpt2_acts_create(m, 1, T, &a, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
  gpt2_forward(m, a, tok, NULL, NULL);
  float *out = malloc(sizeof(float) * T * cfg.vocab);
  memcpy(out, gpt2_logits(a), sizeof(float) * T * cfg.vocab);
  gpt2_acts_free(a);
  gpt2_free(m);
  return out;
}

/* logits (T, V) by gpt2_forward_kv over nstages shards with caches of bf16 (or not): a prefill
 * of `prompt` positions, then one at a time. The first stage's cache is returned in *first. */
static float *gpt2_kv(const int32_t *tok, int T, int prompt, const int *bounds, int nstages, int bf16,
                      kv_cache_t **first) {
  gpt2_model_t *m[4];
  kv_cache_t *c[4];
  char err[256];
  for (int s = 0; s < nstages; s++) {
    gpt2_range_t r = {bounds[s], bounds[s + 1], s == 0, s == nstages - 1};
    m[s] = gpt2_make(r, GEMM_BF16);
    if (kv_cache_create_dtype(bounds[s + 1] - bounds[s], cfg.dim, cfg.ctx, bf16, &c[s], err, sizeof err))
      test_fail(__FILE__, __LINE__, "%s", err);
  }
  float *out = malloc(sizeof(float) * T * cfg.vocab);
  float *x = malloc(sizeof(float) * T * cfg.dim), *y = malloc(sizeof(float) * T * cfg.dim);
  for (int t0 = 0; t0 < T;) {
    int n = t0 == 0 ? prompt : 1;
    for (int s = 0; s < nstages; s++) {
      gpt2_kv_seq_t q = kv_cache_seq(c[s], n);
      float *dst = s == nstages - 1 ? out + (size_t)t0 * cfg.vocab : y;
      if (gpt2_forward_kv(m[s], &q, 1, tok + t0, x, dst, 0, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
      kv_cache_advance(c[s], n);
      float *tmp = x;
      x = y;
      y = tmp;
    }
    t0 += n;
  }
  for (int s = 0; s < nstages; s++) {
    gpt2_free(m[s]);
    if (s == 0 && first) *first = c[s];
    else kv_cache_free(c[s]);
  }
  free(x);
  free(y);
  return out;
}

static void check_gpt2(void) {
  const int T = cfg.ctx, V = cfg.vocab;
  int32_t tok[64];
  rng_t r;
  rng_seed(&r, 21, 0);
  for (int i = 0; i < T; i++) tok[i] = (int32_t)rng_below(&r, V);
  float *ref = gpt2_full(tok, T, GEMM_BF16), *ref32 = gpt2_full(tok, T, GEMM_F32);
  const int one[] = {0, 4}, two[] = {0, 2, 4};
  kv_cache_t *c16, *c32;
  float *kv32 = gpt2_kv(tok, T, 7, one, 1, 0, &c32);
  float *kv16 = gpt2_kv(tok, T, 7, one, 1, 1, &c16);
  float *kv16b = gpt2_kv(tok, T, 5, two, 2, 1, NULL);
  double d16 = max_diff(kv16, ref, (size_t)T * V), d16b = max_diff(kv16b, ref, (size_t)T * V);
  double d32 = max_diff(kv32, ref, (size_t)T * V), effect = max_diff(kv16, ref32, (size_t)T * V);
  printf("gpt2: max |logit diff| vs the bf16 full forward: bf16 cache %.3g (2 stages %.3g), fp32 cache %.3g; "
         "vs the fp32 full forward %.3g\n", d16, d16b, d32, effect);
  double big = 0;
  for (size_t i = 0; i < (size_t)T * V; i++) big = fmax(big, fabs(ref[i]));
  const int C = cfg.dim, hs = cfg.dim / cfg.heads;
  const int kn[][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}, {C, V}, {hs, T}, {T, hs}};
  check_decode("gpt2, one shard", d16, kn, (int)(sizeof kn / sizeof kn[0]), T, 1.0, big);
  check_decode("gpt2, two shards", d16b, kn, (int)(sizeof kn / sizeof kn[0]), T, 1.0, big);
  CHECK_TRUE(effect > MIN_EFFECT);
  /* layer 0's keys and values: exactly the fp32 cache's rounded to nearest even */
  size_t n = (size_t)T * cfg.dim, bad = 0;
  for (size_t i = 0; i < n; i++)
    bad += c16->k16[i] != bf16_bits_rne(c32->k[i]) || c16->v16[i] != bf16_bits_rne(c32->v[i]);
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(kv_cache_bytes(c16) * 2, kv_cache_bytes(c32));
  CHECK_EQ_INT(kv_cache_used_bytes(c16) * 2, kv_cache_used_bytes(c32));
  CHECK_EQ_INT(kv_cache_elem_bytes(c16), 2);
  kv_cache_free(c16);
  kv_cache_free(c32);
  free(ref);
  free(ref32);
  free(kv32);
  free(kv16);
  free(kv16b);
}

/* Llama: logits (T, V) of a prefill of `prompt` then one position at a time. */
static float *llama_kv(llama_model_t *m, const int32_t *tok, int T, int prompt, int bf16) {
  kv_cache_t *c;
  char err[256];
  if (kv_cache_create_dtype(m->cfg.layers, llama_kv_dim(m), m->cfg.ctx, bf16, &c, err, sizeof err))
    test_fail(__FILE__, __LINE__, "%s", err);
  float *out = malloc(sizeof(float) * T * m->cfg.vocab);
  for (int t0 = 0; t0 < T;) {
    int n = t0 == 0 ? prompt : 1;
    gpt2_kv_seq_t q = kv_cache_seq(c, n);
    if (llama_forward_kv(m, &q, 1, tok + t0, NULL, out + (size_t)t0 * m->cfg.vocab, 0, err, sizeof err))
      test_fail(__FILE__, __LINE__, "%s", err);
    kv_cache_advance(c, n);
    t0 += n;
  }
  kv_cache_free(c);
  return out;
}

static void check_llama(void) {
  const llama_config_t lc = {.vocab = 53, .ctx = 24, .layers = 3, .heads = 4, .kv_heads = 2, .dim = 32,
                             .ffn = 72, .rms_norm_eps = 1e-5, .rope_theta = 1e4};
  llama_model_t *m;
  char err[256];
  if (llama_create(&lc, &m, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
  llama_init_params(m, 11);
  for (size_t i = 0; i < m->num_params; i++) m->params[i] *= 4.0f;
  const int T = lc.ctx, V = lc.vocab;
  int32_t tok[64];
  rng_t r;
  rng_seed(&r, 22, 0);
  for (int i = 0; i < T; i++) tok[i] = (int32_t)rng_below(&r, V);
  llama_acts_t *a;
  if (llama_acts_create(m, 1, T, &a, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
  llama_forward(m, a, tok, NULL);
  float *ref = malloc(sizeof(float) * T * V);
  memcpy(ref, llama_logits(a), sizeof(float) * T * V);
  llama_acts_free(a);
  float *kv16 = llama_kv(m, tok, T, 6, 1), *kv32 = llama_kv(m, tok, T, 6, 0);
  double d16 = max_diff(kv16, ref, (size_t)T * V), effect = max_diff(kv16, kv32, (size_t)T * V), big = 0;
  for (int i = 0; i < T * V; i++) big = fmax(big, fabs(ref[i]));
  printf("llama: max |logit diff| vs the full forward: bf16 cache %.3g (largest |logit| %.3g); bf16 vs fp32 "
         "cache %.3g\n", d16, big, effect);
  CHECK_NEAR(d16, 0.0, TOL_REL * big);
  CHECK_TRUE(effect > MIN_EFFECT);
  /* bf16 products: the bf16 cache equals the bf16 whole-sequence forward */
  llama_set_matmul_dtype(m, GEMM_BF16);
  if (llama_acts_create(m, 1, T, &a, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
  llama_forward(m, a, tok, NULL);
  float *kvb = llama_kv(m, tok, T, 6, 1);
  double db = max_diff(kvb, llama_logits(a), (size_t)T * V), eb = max_diff(kvb, ref, (size_t)T * V);
  printf("llama bf16 products: max |logit diff| bf16 cache vs bf16 full forward %.3g; vs fp32 %.3g\n", db, eb);
  const int C = lc.dim, hs = lc.dim / lc.heads, kvd = hs * lc.kv_heads;
  const int kn[][2] = {{C, C}, {C, kvd}, {C, lc.ffn}, {lc.ffn, C}, {C, V}, {hs, T}, {T, hs}};
  check_decode("llama", db, kn, (int)(sizeof kn / sizeof kn[0]), T, fmax(1.0, big), big);
  CHECK_TRUE(eb > MIN_EFFECT);
  llama_acts_free(a);
  free(kvb);
  free(ref);
  free(kv16);
  free(kv32);
  llama_free(m);
}

int main(void) {
  check_gpt2();
  check_llama();
  return test_finish("infer_kv_bf16");
}
