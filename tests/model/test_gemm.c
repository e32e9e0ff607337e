/* test_gemm.c -- gemm.h: every backend, and auto, against a double-precision triple loop, in fp32
 * and in bf16 (gemm_bf16: the reference multiplies the bf16-rounded inputs; the inputs are left
 * unchanged).
 *  - all four transpose combinations at sizes 1, 3, 17, 65 (and one product past the kernels'
 *    block sizes), leading dimensions above the minimum, alpha 1 / -0.5 / 0, beta 0 / 1 / 0.25;
 *    beta 0 overwrites a C full of NaN; the padding columns of C (ldc > N) are never written;
 *  - K = 0 scales C by beta; M = 0 or N = 0 writes nothing;
 *  - a backend's result is bit-identical for the same inputs at other addresses and on a rerun
 *    (exact resume and recomputation rely on it);
 *  - the auto rule is a function of the shape only: small products on OpenBLAS, the 10.8M
 *    model's on oneDNN;
 *  - STRATA_GEMM's words (env_read_choice): each backend's name, empty = auto, a bad word is one
 *    sentence naming the variable and the value.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "env.h"
#include "gemm.h"
#include "rng.h"
#include "test_util.h"

static float frand(rng_t *r) { return rng_uniform(r) * 2.0f - 1.0f; }

/* C = alpha op(A) op(B) + beta C in double; bound[i] = |alpha| sum |a||b| + |beta c| */
static void ref_gemm(int ta, int tb, int M, int N, int K, double alpha, const float *A, int lda, const float *B,
                     int ldb, double beta, const float *C0, int ldc, double *ref, double *bound) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0, sa = 0;
      for (int k = 0; k < K; k++) {
        double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        s += a * b;
        sa += fabs(a * b);
      }
      double c = beta == 0 ? 0 : beta * C0[(size_t)i * ldc + j];
      ref[(size_t)i * N + j] = alpha * s + c;
      bound[(size_t)i * N + j] = fabs(alpha) * sa + fabs(c);
    }
}

static const char *who(int b) { return b == GEMM_AUTO ? "auto" : gemm_backend_name((gemm_backend_t)b); }

/* One product on backend b (GEMM_AUTO: gemm_f32 / gemm_bf16) in precision dt against the
 * double-precision reference; for bf16 the reference multiplies the bf16-rounded inputs, and the
 * caller's inputs must come back unchanged. */
static void run(gemm_dtype_t dt, int b, int ta, int tb, int M, int N, int K, float alpha, float beta, int pad, int *bad,
                rng_t *s) {
  int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  size_t na = (size_t)(ta ? K : M) * lda + 1, nb = (size_t)(tb ? N : K) * ldb + 1, nc = (size_t)M * ldc + 1;
  float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb), *C = malloc(sizeof(float) * nc),
        *C0 = malloc(sizeof(float) * nc);
  double *ref = malloc(sizeof(double) * ((size_t)M * N + 1)), *bound = malloc(sizeof(double) * ((size_t)M * N + 1));
  for (size_t i = 0; i < na; i++) A[i] = frand(s);
  for (size_t i = 0; i < nb; i++) B[i] = frand(s);
  for (size_t i = 0; i < nc; i++) C0[i] = beta == 0 ? NAN : frand(s);
  for (int i = 0; i < M; i++) /* the padding columns: a marker that must survive */
    for (int j = N; j < ldc; j++) C0[(size_t)i * ldc + j] = 7.0f;
  memcpy(C, C0, sizeof(float) * nc);
  float *Ar = malloc(sizeof(float) * na), *Br = malloc(sizeof(float) * nb);
  for (size_t i = 0; i < na; i++) Ar[i] = dt == GEMM_BF16 ? bf16_round_rne(A[i]) : A[i];
  for (size_t i = 0; i < nb; i++) Br[i] = dt == GEMM_BF16 ? bf16_round_rne(B[i]) : B[i];
  ref_gemm(ta, tb, M, N, K, alpha, Ar, lda, Br, ldb, beta, C0, ldc, ref, bound);
  if (b == GEMM_AUTO)
    gemm_mm(dt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    (dt == GEMM_BF16 ? gemm_bf16_on : gemm_f32_on)((gemm_backend_t)b, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C,
                                                   ldc);
  for (size_t i = 0; i < na; i++) /* the rounding works on copies */
    if (dt == GEMM_BF16 && Ar[i] != bf16_round_rne(A[i]) && (*bad)++ < 5)
      test_fail(__FILE__, __LINE__, "%s bf16: input A[%zu] was changed", who(b), i);
  free(Ar), free(Br);
  for (int i = 0; i < M; i++) {
    for (int j = 0; j < N; j++) {
      double c = C[(size_t)i * ldc + j], r = ref[(size_t)i * N + j];
      double tol = 4e-6 * bound[(size_t)i * N + j] * sqrt((double)K + 1) + 1e-30;
      if (!(fabs(c - r) <= tol)) {
        if ((*bad)++ < 5)
          test_fail(__FILE__, __LINE__, "%s %s %c%c M=%d N=%d K=%d alpha=%g beta=%g pad=%d: C[%d][%d] = %.9g, expected %.9g within %.3g",
                    who(b), gemm_dtype_name(dt), ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, pad, i, j, c, r, tol);
      }
    }
    for (int j = N; j < ldc; j++)
      if (C[(size_t)i * ldc + j] != 7.0f && (*bad)++ < 5)
        test_fail(__FILE__, __LINE__, "%s %c%c M=%d N=%d K=%d: padding column %d of row %d written", who(b),
                  ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, j, i);
  }
  test_checks++;
  free(A), free(B), free(C), free(C0), free(ref), free(bound);
}

static void check_against_reference(gemm_dtype_t dt) {
  static const int sizes[] = {1, 3, 17, 65};
  static const float alphas[] = {1.0f, -0.5f, 0.0f}, betas[] = {0.0f, 1.0f, 0.25f};
  rng_t s;
  rng_seed(&s, 42, 1);
  for (int b = 0; b < GEMM_NBACKENDS; b++) {
    int bad = 0;
    for (int t = 0; t < 4; t++)
      for (int mi = 0; mi < 4; mi++)
        for (int ni = 0; ni < 4; ni++)
          for (int ki = 0; ki < 4; ki++) {
            int v = mi + ni + ki + t; /* alpha, beta and padding vary across the grid */
            run(dt, b, t >> 1, t & 1, sizes[mi], sizes[ni], sizes[ki], alphas[v % 3], betas[(v / 3) % 3], v % 2 ? 3 : 0,
                &bad, &s);
          }
    for (int t = 0; t < 4; t++) {
      run(dt, b, t >> 1, t & 1, 130, 67, 259, 1.0f, 0.0f, 5, &bad, &s);
      run(dt, b, t >> 1, t & 1, 5, 7, 0, 1.0f, 0.25f, 1, &bad, &s); /* K = 0: C = beta C */
      run(dt, b, t >> 1, t & 1, 4, 6, 0, 1.0f, 0.0f, 0, &bad, &s);  /* K = 0, beta 0: zeros over NaN */
    }
    /* M = 0 and N = 0: nothing is written, whatever the pointers hold */
    float c[4] = {1, 2, 3, 4}, a[4] = {1, 1, 1, 1};
    gemm_f32_on(b == GEMM_AUTO ? GEMM_OPENBLAS : (gemm_backend_t)b, 0, 0, 0, 2, 2, 1.0f, a, 2, a, 2, 0.0f, c, 2);
    gemm_f32(0, 0, 2, 0, 2, 1.0f, a, 2, a, 2, 0.0f, c, 2);
    CHECK_TRUE(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4);
    printf("%s %s: %d mismatches\n", who(b), gemm_dtype_name(dt), bad);
  }
}

/* Same inputs at four alignments, twice each: bit-identical C. */
static void check_address_independence(void) {
  enum { M = 96, N = 200, K = 72 };
  rng_t s;
  rng_seed(&s, 7, 2);
  float *src_a = malloc(sizeof(float) * M * K), *src_b = malloc(sizeof(float) * K * N);
  for (int i = 0; i < M * K; i++) src_a[i] = frand(&s);
  for (int i = 0; i < K * N; i++) src_b[i] = frand(&s);
  for (int b = 1; b < GEMM_NBACKENDS; b++)
    for (int t = 0; t < 4; t++) {
      float *first = NULL;
      for (int off = 0; off < 8; off++) {
        float *a = malloc(sizeof(float) * (M * K + 8)), *bb = malloc(sizeof(float) * (K * N + 8)),
              *c = malloc(sizeof(float) * (M * N + 8));
        memcpy(a + off % 4, src_a, sizeof(float) * M * K);
        memcpy(bb + (off + 1) % 4, src_b, sizeof(float) * K * N);
        int ta = t >> 1, tb = t & 1;
        gemm_f32_on((gemm_backend_t)b, ta, tb, M, N, K, 0.75f, a + off % 4, ta ? M : K, bb + (off + 1) % 4,
                    tb ? K : N, 0.0f, c + (off + 2) % 4, N);
        if (!first) {
          first = malloc(sizeof(float) * M * N);
          memcpy(first, c + (off + 2) % 4, sizeof(float) * M * N);
        } else if (memcmp(first, c + (off + 2) % 4, sizeof(float) * M * N)) {
          test_fail(__FILE__, __LINE__, "%s %c%c: the result changed with the buffers' addresses (offset %d)",
                    gemm_backend_name((gemm_backend_t)b), ta ? 'T' : 'N', tb ? 'T' : 'N', off);
        }
        test_checks++;
        free(a), free(bb), free(c);
      }
      free(first);
    }
  free(src_a), free(src_b);
}

static void check_rule(void) {
  /* the 10.8M model (C 384, 4C 1536, 3C 1152, B T = 2048 rows): every weight product on oneDNN */
  static const int shapes[][3] = {{2048, 1152, 384}, {2048, 384, 384}, {2048, 1536, 384}, {2048, 384, 1536},
                                  {384, 1152, 2048}, {1536, 384, 2048}, {2048, 384, 1152}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int t = 0; t < 4; t++)
      CHECK_EQ_INT(gemm_rule(GEMM_F32, t >> 1, t & 1, shapes[i][0], shapes[i][1], shapes[i][2]), GEMM_ONEDNN);
  CHECK_EQ_INT(gemm_rule(GEMM_F32, 0, 1, 1, 1, 1), GEMM_OPENBLAS);
  CHECK_EQ_INT(gemm_rule(GEMM_F32, 0, 0, 16, 16, 16), GEMM_OPENBLAS);
  CHECK_EQ_INT(gemm_rule(GEMM_F32, 0, 0, 1, 1536, 384), GEMM_ONEDNN); /* one decoded token */
  /* a function of the shape: the same answer every time */
  for (int i = 0; i < 100; i++) CHECK_EQ_INT(gemm_rule(GEMM_F32, 0, 0, 64, 64, 64 + i % 2), gemm_rule(GEMM_F32, 0, 0, 64, 64, 64 + i % 2));
}

static void check_env_words(void) {
  int w;
  char err[256] = "";
  static const char *const names[] = {"auto", "openblas", "onednn"};
  for (int b = 0; b < GEMM_NBACKENDS; b++) {
    CHECK_TRUE(strcmp(gemm_backend_name((gemm_backend_t)b), names[b]) == 0);
    setenv("STRATA_GEMM", names[b], 1);
    CHECK_TRUE(env_read_choice("STRATA_GEMM", &w, err, sizeof err) == 0);
    CHECK_EQ_INT(w, b);
  }
  setenv("STRATA_GEMM", "", 1);
  CHECK_TRUE(env_read_choice("STRATA_GEMM", &w, err, sizeof err) == 0);
  CHECK_EQ_INT(w, GEMM_AUTO);
  setenv("STRATA_GEMM", "mkl", 1);
  CHECK_TRUE(env_read_choice("STRATA_GEMM", &w, err, sizeof err) == -1);
  CHECK_TRUE(strcmp(err, "STRATA_GEMM must be one of auto, openblas, onednn, got 'mkl' (environment variable; "
                         "unset it for the default)") == 0);
  unsetenv("STRATA_GEMM");
}

int main(void) {
  gemm_set_threads(1);
  char line[480];
  gemm_backend_describe(line, sizeof line);
  printf("%s\n", line);
  CHECK_TRUE(strncmp(line, "gemm: STRATA_GEMM=", 18) == 0);
  check_against_reference(GEMM_F32);
  check_against_reference(GEMM_BF16);
  check_address_independence();
  check_rule();
  check_env_words();
  return test_finish("gemm");
}
