/* sampler.h -- picks the next token from a row of logits: greedy, temperature, top-k, top-p,
 * presence and frequency penalties; and reports log-probabilities of the model's distribution.
 *
 * Penalties (as OpenAI defines them): before anything else, the logit of token j becomes
 * logit[j] - c[j] * frequency_penalty - (c[j] > 0) * presence_penalty, where c[j] counts how often
 * this sampler has returned j since sampler_init (the tokens generated so far in the request).
 *
 * temperature == 0 is greedy (argmax; ties go to the lowest token id) and uses no randomness.
 * Otherwise: logits / temperature; keep the top_k largest (top_k <= 0 or >= V: all); softmax
 * over those; keep the smallest set of most probable tokens whose probability sums to at least
 * top_p (top_p >= 1: all); renormalise and draw with the sampler's own rng_t stream, seeded
 * from (seed, "sample"), so a seed gives the same tokens on every run and every layout.
 *
 * Usage
 *    sampler_t s; sampler_init(&s, &params);   // params: temperature, top_k, top_p, seed
 *    int tok = sampler_next(&s, logits, V);     // scratch is allocated on first use
 *    sampler_free(&s);
 */
#ifndef STRATA_SAMPLER_H
#define STRATA_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef struct {
  double temperature; /* 0 = greedy; > 0 divides the logits */
  int top_k;          /* keep the k most likely tokens; <= 0 = all */
  double top_p;       /* nucleus mass in (0, 1]; >= 1 = all */
  uint64_t seed;      /* seed of the sampling stream */
  double presence_penalty;  /* [-2, 2]; 0 = off */
  double frequency_penalty; /* [-2, 2]; 0 = off */
  int want_logprobs;  /* 1: the caller reports log-probabilities (sampler_logprobs) */
  int top_logprobs;   /* with want_logprobs: how many most likely alternatives, [0, SAMPLER_TOP_LOGPROBS_MAX] */
} sampler_params_t;

#define SAMPLER_TOP_LOGPROBS_MAX 20 /* most alternatives reported per token (OpenAI's limit) */

typedef struct {
  sampler_params_t p;
  rng_t rng;
  int cap;        /* capacity of the scratch arrays */
  float *prob;    /* (cap) */
  int32_t *idx;   /* (cap) */
  float *adj;     /* (cap) penalised logits */
  int32_t *count; /* (count_cap) times each token was returned; allocated when a penalty is set */
  int count_cap;
} sampler_t;

/* Checks ranges: temperature >= 0 and finite, 0 < top_p <= 1 (values > 1 are refused),
 * top_k >= 0, penalties in [-2, 2], top_logprobs in [0, SAMPLER_TOP_LOGPROBS_MAX]. 0 ok, or -1
 * with a message naming the parameter. */
int sampler_validate(const sampler_params_t *p, char *err, size_t errlen);
void sampler_init(sampler_t *s, const sampler_params_t *p);
/* The next token for logits (V); -1 only if out of memory. */
int sampler_next(sampler_t *s, const float *logits, int V);
void sampler_free(sampler_t *s);

/* Log-probabilities under the model's own distribution (log-softmax of the raw logits, before
 * penalties and temperature, as vLLM reports them): *lp_tok of token `tok`, and the k most likely
 * tokens (ties to the lower id) in top_ids / top_lps, most likely first (k <= SAMPLER_TOP_LOGPROBS_MAX). */
void sampler_logprobs(const float *logits, int V, int tok, int k, float *lp_tok, int32_t *top_ids, float *top_lps);

#endif /* STRATA_SAMPLER_H */
