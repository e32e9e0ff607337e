/* rng.h -- deterministic random numbers for the worker (initialisation, data order, sampling).
 * A stream is xoshiro256** seeded through splitmix64, so any (seed, purpose) pair gives an
 * independent, reproducible stream on every platform; the state is 4 x u64 and can be saved in
 * a checkpoint and restored bit for bit. */
#ifndef STRATA_RNG_H
#define STRATA_RNG_H

#include <stdint.h>

typedef struct {
  uint64_t s[4];
} rng_t;

/* splitmix64 step: a good 64-bit mix of x (also a hash for combining seeds). */
uint64_t rng_mix64(uint64_t x);
/* 64-bit FNV-1a of a string, mixed: a stable id for a tensor name or a purpose. */
uint64_t rng_hash_str(const char *s);
/* Seeds a stream from a seed and a stream id (e.g. rng_hash_str("h.3.attn.c_attn.weight")). */
void rng_seed(rng_t *r, uint64_t seed, uint64_t stream);
uint64_t rng_next(rng_t *r);
/* Uniform in [0, 1) with 24 random bits (float) / 53 bits (double). */
float rng_uniform(rng_t *r);
double rng_uniform_double(rng_t *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(rng_t *r, uint64_t n);
/* Standard normal (Box-Muller, both values used in turn is NOT done: one draw per call keeps
 * the sequence independent of how calls interleave). */
float rng_normal(rng_t *r);

#endif
