/* infer_kv_forward: logits computed with the KV cache (prefill of a prompt, then one position
 * at a time) equal a full recompute (gpt2_forward on the whole prefix) at every position, for
 * several prompt lengths, for the whole model on one shard and split over three shards, and
 * for several sequences batched in one call.
 * Tolerance 1e-5 absolute: both paths are fp32 with the same weights; they differ only in the
 * order of the dot-product sums (sgemm blocking), a few ulps on logits of magnitude ~1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "kv_cache.h"
#include "rng.h"
#include "test_util.h"

#define TOL 1e-5

static const gpt2_config_t cfg = {.vocab = 61, .ctx = 40, .layers = 4, .heads = 3, .dim = 36};

/* reference logits (T, V) of the whole sequence */
static float *full_logits(const int32_t *tok, int T) {
  gpt2_model_t *m;
  gpt2_acts_t *a;
  char err[256];
  gpt2_range_t all = {0, cfg.layers, 1, 1};
  if (gpt2_create(&cfg, all, &m, err, sizeof err)) return NULL;
  gpt2_init_params(m, 7);
  if (gpt2_acts_create(m, 1, T, &a, err, sizeof err)) return NULL;
  gpt2_forward(m, a, tok, NULL, NULL);
  float *out = malloc(sizeof(float) * T * cfg.vocab);
  memcpy(out, gpt2_logits(a), sizeof(float) * T * cfg.vocab);
  gpt2_acts_free(a);
  gpt2_free(m);
  return out;
}

typedef struct {
  int n;
  gpt2_model_t *m[4];
  kv_cache_t *c[4];
} chain_t;

static void chain_init(chain_t *ch, const int *bounds, int n) {
  char err[256];
  ch->n = n;
  for (int s = 0; s < n; s++) {
    gpt2_range_t r = {bounds[s], bounds[s + 1], s == 0, s == n - 1};
    if (gpt2_create(&cfg, r, &ch->m[s], err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
    gpt2_init_params(ch->m[s], 7);
    if (kv_cache_create(bounds[s + 1] - bounds[s], cfg.dim, cfg.ctx, &ch->c[s], err, sizeof err))
      test_fail(__FILE__, __LINE__, "%s", err);
  }
}

static void chain_free(chain_t *ch) {
  for (int s = 0; s < ch->n; s++) {
    gpt2_free(ch->m[s]);
    kv_cache_free(ch->c[s]);
  }
}

/* runs n_new tokens through all shards; logits of every new row into out (n_new, V) */
static int chain_step(chain_t *ch, const int32_t *tok, int n_new, float *out) {
  char err[256];
  float *x = malloc(sizeof(float) * n_new * cfg.dim), *y = malloc(sizeof(float) * n_new * cfg.dim);
  int rc = 0;
  for (int s = 0; s < ch->n && !rc; s++) {
    gpt2_kv_seq_t q = kv_cache_seq(ch->c[s], n_new);
    float *dst = s == ch->n - 1 ? out : y;
    rc = gpt2_forward_kv(ch->m[s], &q, 1, tok, x, dst, 0, err, sizeof err);
    if (rc) test_fail(__FILE__, __LINE__, "%s", err);
    kv_cache_advance(ch->c[s], n_new);
    float *t = x; x = y; y = t;
  }
  free(x);
  free(y);
  return rc;
}

static void check_prompt(const int *bounds, int nstages, int prompt_len) {
  const int T = cfg.ctx, V = cfg.vocab;
  int32_t tok[64];
  rng_t r;
  rng_seed(&r, 99, (uint64_t)prompt_len);
  for (int i = 0; i < T; i++) tok[i] = (int32_t)rng_below(&r, V);
  float *ref = full_logits(tok, T);
  chain_t ch;
  chain_init(&ch, bounds, nstages);
  float *got = malloc(sizeof(float) * T * V);
  chain_step(&ch, tok, prompt_len, got);
  for (int t = prompt_len; t < T; t++) chain_step(&ch, tok + t, 1, got + (size_t)t * V);
  double worst = 0;
  for (size_t i = 0; i < (size_t)T * V; i++) {
    double d = fabs((double)got[i] - ref[i]);
    if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
  }
  printf("stages %d prompt %2d: max |logit diff| over %d positions = %.3g\n", nstages, prompt_len, T, worst);
  CHECK_NEAR(worst, 0.0, TOL);
  CHECK_EQ_INT(ch.c[0]->n_pos, T);
  chain_free(&ch);
  free(got);
  free(ref);
}

/* two sequences of different lengths in one call, last_only logits */
static void check_batched(void) {
  const int V = cfg.vocab;
  int32_t a[40], b[40];
  rng_t r;
  rng_seed(&r, 5, 0);
  for (int i = 0; i < 40; i++) a[i] = (int32_t)rng_below(&r, V), b[i] = (int32_t)rng_below(&r, V);
  float *ra = full_logits(a, 12), *rb = full_logits(b, 20);
  char err[256];
  gpt2_model_t *m;
  gpt2_range_t all = {0, cfg.layers, 1, 1};
  gpt2_create(&cfg, all, &m, err, sizeof err);
  gpt2_init_params(m, 7);
  kv_cache_t *ca, *cb;
  kv_cache_create(cfg.layers, cfg.dim, cfg.ctx, &ca, err, sizeof err);
  kv_cache_create(cfg.layers, cfg.dim, cfg.ctx, &cb, err, sizeof err);
  /* a: prefill 11, b: prefill 4 -- then one call with a's 12th token and b's tokens 5..20 */
  float tmp[40 * 61], out[2 * 61];
  gpt2_kv_seq_t s1 = kv_cache_seq(ca, 11);
  CHECK_EQ_INT(gpt2_forward_kv(m, &s1, 1, a, NULL, tmp, 1, err, sizeof err), 0);
  kv_cache_advance(ca, 11);
  gpt2_kv_seq_t s2 = kv_cache_seq(cb, 4);
  CHECK_EQ_INT(gpt2_forward_kv(m, &s2, 1, b, NULL, tmp, 1, err, sizeof err), 0);
  kv_cache_advance(cb, 4);
  gpt2_kv_seq_t both[2] = {kv_cache_seq(ca, 1), kv_cache_seq(cb, 16)};
  int32_t toks[17];
  toks[0] = a[11];
  memcpy(toks + 1, b + 4, sizeof(int32_t) * 16);
  CHECK_EQ_INT(gpt2_forward_kv(m, both, 2, toks, NULL, out, 1, err, sizeof err), 0);
  double worst = 0;
  for (int i = 0; i < V; i++) {
    worst = fmax(worst, fabs(out[i] - ra[11 * V + i]));
    worst = fmax(worst, fabs(out[V + i] - rb[19 * V + i]));
  }
  printf("batched 2 sequences: max |logit diff| = %.3g\n", worst);
  CHECK_NEAR(worst, 0.0, TOL);
  /* a position past the cache is refused, not written */
  gpt2_kv_seq_t over = kv_cache_seq(ca, 40);
  CHECK_EQ_INT(gpt2_forward_kv(m, &over, 1, a, NULL, tmp, 1, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "context") != NULL);
  kv_cache_free(ca);
  kv_cache_free(cb);
  gpt2_free(m);
  free(ra);
  free(rb);
}

int main(void) {
  const int one[] = {0, 4}, three[] = {0, 1, 3, 4};
  const int lens[] = {1, 5, 17, 40};
  for (int i = 0; i < 4; i++) check_prompt(one, 1, lens[i]);
  for (int i = 0; i < 4; i++) check_prompt(three, 3, lens[i]);
  check_batched();
  return test_finish("infer_kv_forward");
}
