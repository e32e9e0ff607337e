/* sampler.c -- next-token selection from logits (see sampler.h). */
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

int sampler_validate(const sampler_params_t *p, char *err, size_t errlen) {
  if (!(p->temperature >= 0) || !isfinite(p->temperature))
    return strata_fail(err, errlen, "temperature %g must be >= 0 (0 = greedy)", p->temperature);
  if (!(p->top_p > 0 && p->top_p <= 1))
    return strata_fail(err, errlen, "top_p %g must be in (0, 1] (1 = no nucleus filtering)", p->top_p);
  if (p->top_k < 0)
    return strata_fail(err, errlen, "top_k %d must be >= 0 (0 = no top-k filtering)", p->top_k);
  return 0;
}

void sampler_init(sampler_t *s, const sampler_params_t *p) {
  s->p = *p;
  rng_seed(&s->rng, p->seed, rng_hash_str("sample"));
  s->cap = 0;
  s->prob = NULL;
  s->idx = NULL;
}

void sampler_free(sampler_t *s) {
  free(s->prob);
  free(s->idx);
  s->prob = NULL;
  s->idx = NULL;
  s->cap = 0;
}

static int argmax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

/* sort indices by prob descending, ties by index ascending (deterministic) */
static int cmp_desc(const void *a, const void *b, void *ctx) {
  const float *prob = ctx;
  int i = *(const int32_t *)a, j = *(const int32_t *)b;
  float pi = prob[i], pj = prob[j];
  if (pi != pj) return pi > pj ? -1 : 1;
  return i - j;
}

int sampler_next(sampler_t *s, const float *logits, int V) {
  if (s->p.temperature == 0) return argmax(logits, V);
  if (s->cap < V) {
    float *p = realloc(s->prob, sizeof(float) * V);
    if (!p) return -1;
    s->prob = p;
    int32_t *ix = realloc(s->idx, sizeof(int32_t) * V);
    if (!ix) return -1;
    s->idx = ix;
    s->cap = V;
  }
  const double inv_t = 1.0 / s->p.temperature;
  float mx = logits[argmax(logits, V)];
  for (int i = 0; i < V; i++) {
    s->prob[i] = (float)exp((logits[i] - mx) * inv_t);
    s->idx[i] = i;
  }
  qsort_r(s->idx, (size_t)V, sizeof(int32_t), cmp_desc, s->prob);
  int n = V;
  if (s->p.top_k > 0 && s->p.top_k < n) n = s->p.top_k;
  double total = 0;
  for (int i = 0; i < n; i++) total += s->prob[s->idx[i]];
  if (s->p.top_p < 1.0) {
    double acc = 0;
    int keep = n;
    for (int i = 0; i < n; i++) {
      acc += s->prob[s->idx[i]] / total;
      if (acc >= s->p.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    total = 0;
    for (int i = 0; i < n; i++) total += s->prob[s->idx[i]];
  }
  double u = rng_uniform_double(&s->rng) * total, acc = 0;
  for (int i = 0; i < n; i++) {
    acc += s->prob[s->idx[i]];
    if (u < acc) return s->idx[i];
  }
  return s->idx[n - 1];
}
