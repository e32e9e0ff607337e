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
  if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
    return strata_fail(err, errlen, "presence_penalty %g must be in [-2, 2] (0 = off)", p->presence_penalty);
  if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
    return strata_fail(err, errlen, "frequency_penalty %g must be in [-2, 2] (0 = off)", p->frequency_penalty);
  if (p->want_logprobs && (p->top_logprobs < 0 || p->top_logprobs > SAMPLER_TOP_LOGPROBS_MAX))
    return strata_fail(err, errlen, "top_logprobs %d must be in [0, %d]", p->top_logprobs, SAMPLER_TOP_LOGPROBS_MAX);
  return 0;
}

void sampler_init(sampler_t *s, const sampler_params_t *p) {
  s->p = *p;
  rng_seed(&s->rng, p->seed, rng_hash_str("sample"));
  s->cap = 0;
  s->prob = NULL;
  s->idx = NULL;
  s->adj = NULL;
  s->count = NULL;
  s->count_cap = 0;
}

void sampler_free(sampler_t *s) {
  free(s->prob);
  free(s->idx);
  free(s->adj);
  free(s->count);
  s->prob = NULL;
  s->idx = NULL;
  s->adj = NULL;
  s->count = NULL;
  s->cap = s->count_cap = 0;
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

/* The logits with the presence and frequency penalties applied (s->adj), or `logits` itself
 * when both are 0; NULL when out of memory. */
static const float *penalised(sampler_t *s, const float *logits, int V) {
  if (s->p.presence_penalty == 0 && s->p.frequency_penalty == 0) return logits;
  if (s->count_cap < V) {
    int32_t *c = realloc(s->count, sizeof(int32_t) * V);
    if (!c) return NULL;
    for (int i = s->count_cap; i < V; i++) c[i] = 0;
    s->count = c;
    s->count_cap = V;
  }
  for (int i = 0; i < V; i++)
    s->adj[i] = logits[i] - (float)(s->count[i] * s->p.frequency_penalty + (s->count[i] > 0) * s->p.presence_penalty);
  return s->adj;
}

static int pick(sampler_t *s, const float *logits, int V);

int sampler_next(sampler_t *s, const float *raw, int V) {
  if (s->cap < V) {
    float *p = realloc(s->prob, sizeof(float) * V);
    if (!p) return -1;
    s->prob = p;
    int32_t *ix = realloc(s->idx, sizeof(int32_t) * V);
    if (!ix) return -1;
    s->idx = ix;
    float *a = realloc(s->adj, sizeof(float) * V);
    if (!a) return -1;
    s->adj = a;
    s->cap = V;
  }
  const float *logits = penalised(s, raw, V);
  if (!logits) return -1;
  int tok = pick(s, logits, V);
  if (tok >= 0 && s->count && tok < s->count_cap) s->count[tok]++;
  return tok;
}

void sampler_logprobs(const float *logits, int V, int tok, int k, float *lp_tok, int32_t *top_ids, float *top_lps) {
  float mx = logits[argmax(logits, V)];
  double z = 0;
  for (int i = 0; i < V; i++) z += exp((double)logits[i] - mx);
  double lz = mx + log(z);
  *lp_tok = (float)(logits[tok] - lz);
  if (k > SAMPLER_TOP_LOGPROBS_MAX) k = SAMPLER_TOP_LOGPROBS_MAX;
  if (k > V) k = V;
  int n = 0; /* insertion into a sorted list of at most k (k <= 20) */
  for (int i = 0; i < V; i++) {
    int pos = n;
    while (pos > 0 && logits[top_ids[pos - 1]] < logits[i]) pos--;
    if (pos >= k) continue;
    int last = n < k ? n : k - 1;
    for (int m = last; m > pos; m--) top_ids[m] = top_ids[m - 1];
    top_ids[pos] = i;
    if (n < k) n++;
  }
  for (int m = 0; m < n; m++) top_lps[m] = (float)(logits[top_ids[m]] - lz);
}

/* The next token from (already penalised) logits. */
static int pick(sampler_t *s, const float *logits, int V) {
  if (s->p.temperature == 0) return argmax(logits, V);
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
