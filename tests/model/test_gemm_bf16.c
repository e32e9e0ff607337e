/* test_gemm_bf16.c -- gemm.h's bf16 products (gemm_bf16, gemm_bf16_on) and bf16.h's rounding.
 *  - rounding: round-to-nearest-even on exact ties (both directions), NaN stays NaN,
 *    infinities stay, overflow past the largest bf16 gives infinity; stochastic rounding lands on
 *    one of the two neighbours and is unbiased over many draws;
 *  - (every backend against a double-precision reference on bf16-rounded inputs: test_gemm.c)
 *  - the same product is bit-identical at other addresses and on a rerun;
 *  - the backends agree with each other within fp32 summation error, and the bf16 product of
 *    unrounded inputs differs from the fp32 one (the rounding happened);
 *  - gemm_mm dispatches by dtype, and the path each backend takes is named; rows longer than a
 *    vector block round ties to even and keep a NaN on every backend.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "gemm.h"
#include "rng.h"
#include "test_util.h"

static float frand(rng_t *r) { return rng_uniform(r) * 2.0f - 1.0f; }

static void check_rounding(void) {
  /* 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even mantissa (1) wins; 1 + 3 * 2^-8 ties up */
  CHECK_TRUE(bf16_round_rne(1.0f + 0x1p-8f) == 1.0f);
  CHECK_TRUE(bf16_round_rne(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);
  CHECK_TRUE(bf16_round_rne(-(1.0f + 3 * 0x1p-8f)) == -(1.0f + 0x1p-6f));
  CHECK_TRUE(bf16_round_rne(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f); /* above the tie */
  CHECK_TRUE(bf16_round_rne(0.1f) == 0.10009765625f);
  CHECK_TRUE(isnan(bf16_round_rne(NAN)));
  CHECK_TRUE(bf16_round_rne(INFINITY) == INFINITY && bf16_round_rne(-INFINITY) == -INFINITY);
  CHECK_TRUE(bf16_round_rne(3.4e38f) == INFINITY);
  CHECK_EQ_INT(bf16_bits_rne(1.0f), 0x3f80);
  CHECK_TRUE(bf16_to_f32(0x3f80) == 1.0f);
  CHECK_TRUE(isnan(bf16_round_sr(NAN, 0xffff)));
  /* stochastic: x = 1 + 0.25 ulp rounds up with probability 1/4 */
  float x = 1.0f + 0.25f * 0x1p-7f, lo = 1.0f, hi = 1.0f + 0x1p-7f;
  rng_t r;
  rng_seed(&r, 3, 4);
  int up = 0, n = 40000;
  for (int i = 0; i < n; i++) {
    float y = bf16_round_sr(x, (uint32_t)rng_next(&r));
    CHECK_TRUE(y == lo || y == hi);
    up += y == hi;
  }
  CHECK_NEAR((double)up / n, 0.25, 0.015); /* 7 standard deviations */
  CHECK_TRUE(bf16_round_sr(-x, 0xffff) == -hi && bf16_round_sr(-x, 0) == -lo);
  CHECK_TRUE(bf16_round_sr(1.0f, 0xffff) == 1.0f); /* exact values never move */
}

static const char *who(int b) { return gemm_backend_name((gemm_backend_t)b); }

/* Bit-identical at other addresses and on a rerun; backends agree; bf16 differs from fp32. */
static void check_stability(void) {
  enum { M = 96, N = 200, K = 72 };
  rng_t s;
  rng_seed(&s, 7, 5);
  float *a = malloc(sizeof(float) * (M * K + 4)), *bb = malloc(sizeof(float) * (K * N + 4));
  float *c = malloc(sizeof(float) * (M * N + 4)), *first = malloc(sizeof(float) * M * N),
        *other = malloc(sizeof(float) * M * N), *f32 = malloc(sizeof(float) * M * N);
  float *src_a = malloc(sizeof(float) * M * K), *src_b = malloc(sizeof(float) * K * N);
  for (int i = 0; i < M * K; i++) src_a[i] = frand(&s);
  for (int i = 0; i < K * N; i++) src_b[i] = frand(&s);
  for (int b = 1; b < GEMM_NBACKENDS; b++) {
    for (int off = 0; off < 6; off++) {
      memcpy(a + off % 4, src_a, sizeof(float) * M * K);
      memcpy(bb + (off + 1) % 4, src_b, sizeof(float) * K * N);
      gemm_bf16_on((gemm_backend_t)b, 0, 1, M, N, K, 1.0f, a + off % 4, K, bb + (off + 1) % 4, K, 0.0f,
                   c + (off + 2) % 4, N);
      if (off == 0) memcpy(b == 1 ? first : other, c + 2, sizeof(float) * M * N);
      else if (memcmp(b == 1 ? first : other, c + (off + 2) % 4, sizeof(float) * M * N))
        test_fail(__FILE__, __LINE__, "%s bf16: the result changed with the buffers' addresses (offset %d)", who(b), off);
      test_checks++;
    }
  }
  gemm_f32_on(GEMM_OPENBLAS, 0, 1, M, N, K, 1.0f, src_a, K, src_b, K, 0.0f, f32, N);
  double maxd = 0, maxf = 0;
  for (int i = 0; i < M * N; i++) {
    double d = fabs(first[i] - other[i]), f = fabs(first[i] - f32[i]);
    maxd = d > maxd ? d : maxd;
    maxf = f > maxf ? f : maxf;
  }
  printf("max |openblas - onednn| bf16 %.3g, max |bf16 - fp32| %.3g\n", maxd, maxf);
  CHECK_TRUE(maxd < 1e-5);    /* summation order only: sums of 72 terms of at most 1 */
  CHECK_TRUE(maxf > 1e-4);    /* bf16's 8-bit mantissa: errors of order 2^-9 per input */
  /* gemm_mm picks the product by dtype */
  gemm_mm(GEMM_BF16, 0, 1, M, N, K, 1.0f, src_a, K, src_b, K, 0.0f, c, N);
  gemm_bf16(0, 1, M, N, K, 1.0f, src_a, K, src_b, K, 0.0f, other, N);
  CHECK_TRUE(memcmp(c, other, sizeof(float) * M * N) == 0);
  gemm_mm(GEMM_F32, 0, 1, M, N, K, 1.0f, src_a, K, src_b, K, 0.0f, c, N);
  gemm_f32(0, 1, M, N, K, 1.0f, src_a, K, src_b, K, 0.0f, other, N);
  CHECK_TRUE(memcmp(c, other, sizeof(float) * M * N) == 0);
  CHECK_TRUE(strcmp(gemm_dtype_name(GEMM_BF16), "bf16") == 0 && strcmp(gemm_dtype_name(GEMM_F32), "fp32") == 0);
  CHECK_EQ_INT(gemm_bf16_path(GEMM_OPENBLAS, NULL, 0), 0);
  /* rows of 37 values (two 16-wide vector blocks and a scalar tail): ties round to even, a NaN
   * stays NaN, on every backend */
  for (int b = 1; b < GEMM_NBACKENDS; b++) {
    float row[37], ones[37], out = 0;
    for (int i = 0; i < 37; i++) row[i] = 1.0f + 0x1p-8f, ones[i] = 1.0f; /* each rounds to 1 */
    gemm_bf16_on((gemm_backend_t)b, 0, 1, 1, 1, 37, 1.0f, row, 37, ones, 37, 0.0f, &out, 1);
    CHECK_TRUE(out == 37.0f);
    row[20] = NAN;
    gemm_bf16_on((gemm_backend_t)b, 0, 1, 1, 1, 37, 1.0f, row, 37, ones, 37, 0.0f, &out, 1);
    CHECK_TRUE(isnan(out));
  }
  free(a), free(bb), free(c), free(first), free(other), free(f32), free(src_a), free(src_b);
}

int main(void) {
  gemm_set_threads(1);
  char line[480];
  gemm_backend_describe(line, sizeof line);
  printf("%s\n", line);
  CHECK_TRUE(strstr(line, "bf16 products: ") != NULL);
  check_rounding();
  for (int b = 1; b < GEMM_NBACKENDS; b++) {
    char path[256];
    int native = gemm_bf16_path((gemm_backend_t)b, path, sizeof path);
    printf("%s: bf16 through %s (%s)\n", who(b), path, native ? "native" : "fallback");
  }
  check_stability();
  return test_finish("gemm_bf16");
}
