/* sampler.h -- picks the next token from a row of logits: greedy, temperature, top-k, top-p.
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
} sampler_params_t;

typedef struct {
  sampler_params_t p;
  rng_t rng;
  int cap;        /* capacity of the scratch arrays */
  float *prob;    /* (cap) */
  int32_t *idx;   /* (cap) */
} sampler_t;

/* Checks ranges: temperature >= 0 and finite, 0 < top_p <= 1 (values > 1 are refused),
 * top_k >= 0. 0 ok, or -1 with a message naming the parameter. */
int sampler_validate(const sampler_params_t *p, char *err, size_t errlen);
void sampler_init(sampler_t *s, const sampler_params_t *p);
/* The next token for logits (V); -1 only if out of memory. */
int sampler_next(sampler_t *s, const float *logits, int V);
void sampler_free(sampler_t *s);

#endif /* STRATA_SAMPLER_H */
