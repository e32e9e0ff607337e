/* adamw.c -- AdamW as torch.optim.AdamW, warm-up + cosine learning rate, global-norm clipping
 * (contract in adamw.h). The arithmetic follows torch 1.13's _single_tensor_adamw in order and
 * precision: bias corrections in double, the per-element update in float. */
#include "adamw.h"
#include "bf16.h"
#include "rng.h"

#include "env.h"
#include "log.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define ADAMW_DEFAULT_LR 1e-3
#define ADAMW_DEFAULT_BETA1 0.9
#define ADAMW_DEFAULT_BETA2 0.95
#define ADAMW_DEFAULT_EPS 1e-8
#define ADAMW_DEFAULT_WD 0.1
#define ADAMW_DEFAULT_CLIP 1.0
#define ADAMW_DEFAULT_WARMUP 10
#define ADAMW_DEFAULT_MIN_LR_RATIO 0.1
#define ADAMW_CLIP_EPS 1e-6 /* torch.nn.utils.clip_grad_norm_'s denominator epsilon */

/* Ranges: worker/base/env.c; `strata` refuses a bad value before it starts, library users get a warning. */
static void env_double(const char *name, double *dst) {
  char err[256];
  if (env_read_double(name, *dst, dst, err, sizeof err)) strata_warn("%s; using the default %g", err, *dst);
}

static void env_int(const char *name, int *dst) {
  char err[256];
  int64_t v;
  if (env_read_int(name, *dst, &v, err, sizeof err)) strata_warn("%s; using the default %d", err, *dst);
  *dst = (int)v;
}

void adamw_hparams_default(adamw_hparams_t *hp) {
  hp->lr = ADAMW_DEFAULT_LR;
  hp->beta1 = ADAMW_DEFAULT_BETA1;
  hp->beta2 = ADAMW_DEFAULT_BETA2;
  hp->eps = ADAMW_DEFAULT_EPS;
  hp->weight_decay = ADAMW_DEFAULT_WD;
  hp->grad_clip = ADAMW_DEFAULT_CLIP;
  hp->warmup_steps = ADAMW_DEFAULT_WARMUP;
  hp->decay_steps = 0;
  hp->min_lr_ratio = ADAMW_DEFAULT_MIN_LR_RATIO;
  env_double("STRATA_LR", &hp->lr);
  env_int("STRATA_WARMUP_STEPS", &hp->warmup_steps);
  env_double("STRATA_WEIGHT_DECAY", &hp->weight_decay);
  env_double("STRATA_GRAD_CLIP", &hp->grad_clip);
}

int adamw_hparams_check(const adamw_hparams_t *hp, char *err, size_t errlen) {
  if (!(hp->lr > 0.0) || !isfinite(hp->lr))
    return strata_fail(err, errlen, "lr = %g: the learning rate must be a positive number", hp->lr);
  if (!(hp->beta1 >= 0.0 && hp->beta1 < 1.0))
    return strata_fail(err, errlen, "beta1 = %g: must be in [0, 1)", hp->beta1);
  if (!(hp->beta2 >= 0.0 && hp->beta2 < 1.0))
    return strata_fail(err, errlen, "beta2 = %g: must be in [0, 1)", hp->beta2);
  if (!(hp->eps > 0.0))
    return strata_fail(err, errlen, "eps = %g: must be positive", hp->eps);
  if (!(hp->weight_decay >= 0.0))
    return strata_fail(err, errlen, "weight_decay = %g: must be >= 0", hp->weight_decay);
  if (hp->warmup_steps < 0)
    return strata_fail(err, errlen, "warmup_steps = %d: must be >= 0", hp->warmup_steps);
  if (hp->decay_steps < 0)
    return strata_fail(err, errlen, "decay_steps = %d: must be >= 0 (0 disables the cosine decay)",
                       hp->decay_steps);
  if (!(hp->min_lr_ratio >= 0.0 && hp->min_lr_ratio <= 1.0))
    return strata_fail(err, errlen, "min_lr_ratio = %g: must be in [0, 1]", hp->min_lr_ratio);
  return 0;
}

int adamw_create(size_t begin, size_t count, adamw_t **out, char *err, size_t errlen) {
  *out = NULL;
  adamw_t *o = calloc(1, sizeof *o);
  if (!o) goto oom;
  o->begin = begin;
  o->count = count;
  o->m = calloc(count ? count : 1, sizeof(float));
  o->v = calloc(count ? count : 1, sizeof(float));
  if (!o->m || !o->v) goto oom;
  *out = o;
  return 0;
oom:
  strata_fail(err, errlen, "out of memory for AdamW moments of %zu parameters", count);
  adamw_free(o);
  return -1;
}

void adamw_free(adamw_t *o) {
  if (!o) return;
  free(o->m);
  free(o->v);
  free(o);
}

double adamw_lr_at(const adamw_hparams_t *hp, int64_t step) {
  if (step < hp->warmup_steps) return hp->lr * (double)(step + 1) / (double)hp->warmup_steps;
  if (hp->decay_steps <= hp->warmup_steps) return hp->lr;
  if (step >= hp->decay_steps) return hp->lr * hp->min_lr_ratio;
  double progress = (double)(step - hp->warmup_steps) / (double)(hp->decay_steps - hp->warmup_steps);
  double min_lr = hp->lr * hp->min_lr_ratio;
  return min_lr + 0.5 * (1.0 + cos(M_PI * progress)) * (hp->lr - min_lr);
}

double adamw_sum_squares(const float *g, size_t n) {
  /* four partial sums: vectorisable, and still deterministic for a given n */
  double s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++) s[k] += (double)g[i + k] * g[i + k];
  for (; i < n; i++) s[0] += (double)g[i] * g[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

float adamw_clip_scale(double global_sum_squares, double max_norm) {
  if (!(max_norm > 0.0)) return 1.0f;
  double norm = sqrt(global_sum_squares);
  double coef = max_norm / (norm + ADAMW_CLIP_EPS);
  return coef < 1.0 ? (float)coef : 1.0f;
}

/* Scalars of one update, rounded to float where torch rounds them. */
typedef struct {
  float step_size, bc2_sqrt, decay, b1, b2, eps, one_m_b1, one_m_b2, grad_scale;
} adamw_k_t;

#if defined(__AVX2__)
/* 8 elements. Every element, in the body or the tail, goes through this one function so the
 * arithmetic (including any FMA contraction the compiler chooses) is the same wherever a
 * ZeRO slice boundary falls: slicing the state never changes the result. */
__attribute__((noinline)) static void adamw8(float *p, const float *g, float *m, float *v, const adamw_k_t *k) {
  const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g), _mm256_set1_ps(k->grad_scale));
  const __m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p), _mm256_set1_ps(k->decay));
  const __m256 mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m), _mm256_set1_ps(k->b1)),
                                  _mm256_mul_ps(gi, _mm256_set1_ps(k->one_m_b1)));
  const __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v), _mm256_set1_ps(k->b2)),
                                  _mm256_mul_ps(_mm256_mul_ps(gi, gi), _mm256_set1_ps(k->one_m_b2)));
  _mm256_storeu_ps(m, mi);
  _mm256_storeu_ps(v, vi);
  const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), _mm256_set1_ps(k->bc2_sqrt)),
                                     _mm256_set1_ps(k->eps));
  _mm256_storeu_ps(p, _mm256_sub_ps(pi, _mm256_mul_ps(_mm256_set1_ps(k->step_size), _mm256_div_ps(mi, denom))));
}
#else
static void adamw1(float *p, const float *g, float *m, float *v, const adamw_k_t *k) {
  float gi = *g * k->grad_scale;
  float pi = *p * k->decay;
  float mi = *m * k->b1 + gi * k->one_m_b1;
  float vi = *v * k->b2 + gi * gi * k->one_m_b2;
  *m = mi;
  *v = vi;
  float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;
  *p = pi - k->step_size * (mi / denom);
}
#endif

void adamw_update(float *p, const float *g, float *m, float *v, size_t n, double lr, double beta1,
                  double beta2, double eps, double wd, float grad_scale, int64_t t) {
  const double bc1 = 1.0 - pow(beta1, (double)t);
  const double bc2 = 1.0 - pow(beta2, (double)t);
  adamw_k_t k = {
      .step_size = (float)(lr / bc1),
      .bc2_sqrt = (float)sqrt(bc2),
      .decay = wd != 0.0 ? (float)(1.0 - lr * wd) : 1.0f, /* x * 1.0f == x exactly */
      .b1 = (float)beta1,
      .b2 = (float)beta2,
      .eps = (float)eps,
      .one_m_b1 = (float)(1.0 - beta1),
      .one_m_b2 = (float)(1.0 - beta2),
      .grad_scale = grad_scale,
  };
  size_t i = 0;
#if defined(__AVX2__)
  for (; i + 8 <= n; i += 8) adamw8(p + i, g + i, m + i, v + i, &k);
  if (i < n) { /* tail through the same kernel on padded copies */
    float tp[8] = {0}, tg[8] = {0}, tm[8] = {0}, tv[8] = {0};
    size_t r = n - i;
    memcpy(tp, p + i, r * sizeof(float));
    memcpy(tg, g + i, r * sizeof(float));
    memcpy(tm, m + i, r * sizeof(float));
    memcpy(tv, v + i, r * sizeof(float));
    adamw8(tp, tg, tm, tv, &k);
    memcpy(p + i, tp, r * sizeof(float));
    memcpy(m + i, tm, r * sizeof(float));
    memcpy(v + i, tv, r * sizeof(float));
  }
#else
  for (; i < n; i++) adamw1(p + i, g + i, m + i, v + i, &k);
#endif
}

void adamw_set_stochastic_rounding(adamw_t *o, uint64_t seed, int tp_rank) {
  o->sr = 1;
  o->sr_seed = seed;
  o->sr_tp_rank = tp_rank;
}

void bf16_round_params(float *params, size_t n) {
  for (size_t i = 0; i < n; i++) params[i] = bf16_round_rne(params[i]);
}

/* Stochastic rounding of local elements [a, b) of tensor t (a, b relative to the tensor). */
static void round_sr(const adamw_t *o, const gpt2_tensor_t *t, float *p, size_t a, size_t b) {
  const uint64_t base = rng_mix64(o->sr_seed ^ rng_mix64((uint64_t)o->t ^ rng_hash_str(t->name)));
  for (size_t i = a; i < b; i++) {
    int64_t f = t->tp_size > 1 ? gpt2_tensor_full_index(t, o->sr_tp_rank, i) : (int64_t)i;
    if (f < 0) continue; /* vocabulary padding: stays zero */
    uint64_t r = rng_mix64(base + (uint64_t)f * 0x9e3779b97f4a7c15ull);
    p[i] = bf16_round_sr(p[i], (uint32_t)(r >> 48));
  }
}

void adamw_step(adamw_t *o, const adamw_hparams_t *hp, float *params, const float *grads,
                const gpt2_tensor_t *tensors, int num_tensors, double lr, float grad_scale) {
  o->t++;
  const size_t lo = o->begin, hi = o->begin + o->count;
  for (int i = 0; i < num_tensors; i++) {
    size_t a = tensors[i].offset, b = tensors[i].offset + tensors[i].numel;
    if (a < lo) a = lo;
    if (b > hi) b = hi;
    if (a >= b) continue;
    double wd = tensors[i].decay ? hp->weight_decay : 0.0;
    adamw_update(params + a, grads + a, o->m + (a - lo), o->v + (a - lo), b - a, lr, hp->beta1, hp->beta2,
                 hp->eps, wd, grad_scale, o->t);
    if (o->sr) round_sr(o, &tensors[i], params + tensors[i].offset, a - tensors[i].offset, b - tensors[i].offset);
  }
}
