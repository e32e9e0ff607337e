/* bf16.h -- bfloat16 (1 sign, 8 exponent, 7 mantissa bits: the top half of an fp32) rounding,
 * as static inline helpers for the GEMM backends and the optimizer.
 *
 * Round-to-nearest-even (bf16_bits_rne / bf16_round_rne) is what PyTorch's .to(torch.bfloat16),
 * oneDNN's and the avx512_bf16 instructions do: NaN stays a quiet NaN, infinities stay, a
 * finite value rounds to the nearer bf16 (ties to the even mantissa; overflow gives infinity).
 * Stochastic rounding (bf16_round_sr) rounds up with probability equal to the distance to the
 * lower neighbour in units of the last bf16 place, from 16 random bits: adding them to the low
 * half and truncating. Every result is an fp32 whose low 16 bits are zero (exactly a bf16). */
#ifndef STRATA_BF16_H
#define STRATA_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t bf16_f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

static inline float bf16_bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* Branch-free (a select), so that loops over arrays vectorise. */
static inline uint16_t bf16_bits_rne(float x) {
  uint32_t u = bf16_f32_bits(x);
  uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  uint32_t r = (u & 0x7fffffffu) > 0x7f800000u ? u | 0x00400000u : rounded; /* NaN: quiet it */
  return (uint16_t)(r >> 16);
}

static inline float bf16_to_f32(uint16_t b) { return bf16_bits_f32((uint32_t)b << 16); }

static inline float bf16_round_rne(float x) { return bf16_to_f32(bf16_bits_rne(x)); }

/* rand16: 16 uniformly random bits (the low 16 of the argument are used). */
static inline float bf16_round_sr(float x, uint32_t rand16) {
  uint32_t u = bf16_f32_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return bf16_round_rne(x); /* NaN, infinity */
  u += rand16 & 0xffffu;
  return bf16_bits_f32(u & 0xffff0000u);
}

#endif /* STRATA_BF16_H */
