/* gemm.c -- gemm.h's dispatcher: the backend table, STRATA_GEMM and the per-shape rule. */
#include "gemm.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bf16.h"
#include "env.h"
#include "gemm_backend.h"
#include "log.h"

/* By gemm_backend_t; GEMM_AUTO has no library of its own. A new backend: its file, a value in
 * gemm_backend_t and a row here. */
static const gemm_backend_ops_t *const backends[GEMM_NBACKENDS] = {
    [GEMM_OPENBLAS] = &gemm_openblas_ops,
    [GEMM_ONEDNN] = &gemm_onednn_ops,
};

/* The auto rule for fp32, from single-thread measurements of `gpt2_bench --gemm-shapes` on this
 * project's machines (BENCHMARKS.md, "GEMM backends"; OPENBLAS_CORETYPE=Haswell holds OpenBLAS
 * to AVX2, oneDNN uses AVX-512): oneDNN is faster on every product of the models measured, from
 * the 10.8M model's (about 2x) down to one decoded token (M = 1) and 16 x 32 x 32 blocks.
 * Below GEMM_AUTO_MIN_MNK_ONEDNN multiply-adds the two were within the noise of a loaded
 * machine, and OpenBLAS keeps those. bf16 products follow the same rule: oneDNN for the large
 * ones (its bf16 kernel, or rounded inputs and dnnl_sgemm where gemm_onednn.c finds the kernel
 * slower), the rounded-input path on OpenBLAS for the small ones (where rounding costs as much
 * as the product). */
#define GEMM_AUTO_MIN_MNK_ONEDNN (16.0 * 32 * 32)

static pthread_once_t gemm_once = PTHREAD_ONCE_INIT;
static gemm_backend_t gemm_selected = GEMM_AUTO;
static int gemm_threads = 1;

const char *gemm_backend_name(gemm_backend_t b) {
  if (b == GEMM_AUTO) return "auto";
  return b > 0 && b < GEMM_NBACKENDS ? backends[b]->name : "?";
}

/* STRATA_GEMM's words in worker/base/env.c are listed in gemm_backend_t's order (auto,
 * openblas, onednn), so the word's index is the backend. */
static void gemm_read_env(void) {
  int w;
  char err[256];
  if (env_read_choice("STRATA_GEMM", &w, err, sizeof err)) strata_error("%s; using auto", err);
  gemm_selected = w > 0 && w < GEMM_NBACKENDS ? (gemm_backend_t)w : GEMM_AUTO;
}

/* Per-thread scratch for rounded inputs: two slots (A and B), grown as needed, freed when the
 * thread exits. */
typedef struct {
  void *p[2];
  size_t bytes[2];
} gemm_scratch_t;

static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;

static void scratch_free(void *v) {
  gemm_scratch_t *s = v;
  free(s->p[0]);
  free(s->p[1]);
  free(s);
}

static void scratch_key_make(void) {
  if (pthread_key_create(&scratch_key, scratch_free)) {
    strata_error("gemm: pthread_key_create failed: no scratch for bf16 products; report it with this line");
    abort();
  }
}

static void *scratch_get(int slot, size_t bytes) {
  pthread_once(&scratch_once, scratch_key_make);
  gemm_scratch_t *s = pthread_getspecific(scratch_key);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s || pthread_setspecific(scratch_key, s)) goto oom;
  }
  if (s->bytes[slot] < bytes) {
    void *p = realloc(s->p[slot], bytes);
    if (!p) goto oom;
    s->p[slot] = p;
    s->bytes[slot] = bytes;
  }
  return s->p[slot];
oom:
  strata_error("gemm: out of memory for %zu bytes of bf16-rounded inputs; use a smaller micro-batch", bytes);
  abort();
}

/* One row of n floats rounded to bf16 (bf16.h's bf16_bits_rne, 16 at a time where AVX-512 is
 * compiled in): as fp32 values into of, or as 16-bit values into ob (the other NULL). */
static void round_row(const float *x, int n, float *of, uint16_t *ob) {
  int c = 0;
#if defined(__AVX512F__)
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff), abs = _mm512_set1_epi32(0x7fffffff),
                inf = _mm512_set1_epi32(0x7f800000), quiet = _mm512_set1_epi32(0x00400000),
                hi = _mm512_set1_epi32((int)0xffff0000u);
  for (; c + 16 <= n; c += 16) {
    __m512i u = _mm512_loadu_si512((const void *)(x + c));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
    r = _mm512_mask_or_epi32(r, nan, u, quiet);
    if (of)
      _mm512_storeu_si512((void *)(of + c), _mm512_and_si512(r, hi));
    else
      _mm256_storeu_si256((__m256i *)(ob + c), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
  }
#endif
  for (; c < n; c++) {
    uint16_t b = bf16_bits_rne(x[c]);
    if (of)
      of[c] = bf16_to_f32(b);
    else
      ob[c] = b;
  }
}

const float *gemm_round_f32(int slot, const float *X, int rows, int cols, int ld) {
  float *d = scratch_get(slot, sizeof(float) * (size_t)rows * cols + 1);
  for (int r = 0; r < rows; r++) round_row(X + (size_t)r * ld, cols, d + (size_t)r * cols, NULL);
  return d;
}

const uint16_t *gemm_round_bf16(int slot, const float *X, int rows, int cols, int ld) {
  uint16_t *d = scratch_get(slot, sizeof(uint16_t) * (size_t)rows * cols + 2);
  for (int r = 0; r < rows; r++) round_row(X + (size_t)r * ld, cols, NULL, d + (size_t)r * cols);
  return d;
}

const char *gemm_dtype_name(gemm_dtype_t dt) { return dt == GEMM_BF16 ? "bf16" : "fp32"; }

int gemm_bf16_path(gemm_backend_t b, char *desc, size_t len) {
  if (b == GEMM_AUTO) b = GEMM_ONEDNN;
  int path = backends[b]->bf16_path();
  const char *why = path == GEMM_BF16_ROUNDED_FASTER
                        ? " from 16 rows up, faster than oneDNN's bf16 kernel on an Intel CPU without AMX, the "
                          "kernel below (STRATA_GEMM_BF16=kernel for every product)"
                    : path == GEMM_BF16_ROUNDED_SET ? " (STRATA_GEMM_BF16=rounded)"
                                                    : " (no oneDNN bf16 kernel here)";
  if (desc) {
    if (path == GEMM_BF16_KERNEL)
      snprintf(desc, len, "oneDNN dnnl_gemm_bf16bf16f32");
    else if (b == GEMM_ONEDNN)
      snprintf(desc, len, "inputs rounded to bf16, dnnl_sgemm%s", why);
    else
      snprintf(desc, len, "inputs rounded to bf16, cblas_sgemm");
  }
  return path == GEMM_BF16_KERNEL;
}

gemm_backend_t gemm_rule(gemm_dtype_t dt, int transA, int transB, int M, int N, int K) {
  (void)dt, (void)transA, (void)transB;
  return (double)M * N * K >= GEMM_AUTO_MIN_MNK_ONEDNN ? GEMM_ONEDNN : GEMM_OPENBLAS;
}

gemm_backend_t gemm_choose(gemm_dtype_t dt, int transA, int transB, int M, int N, int K) {
  pthread_once(&gemm_once, gemm_read_env);
  return gemm_selected != GEMM_AUTO ? gemm_selected : gemm_rule(dt, transA, transB, M, N, K);
}

/* K == 0: no products, C = beta C, the same on every backend (oneDNN would leave C). */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
}

/* Every product, on backend b in precision dt. */
static void product_on(gemm_dtype_t dt, gemm_backend_t b, int transA, int transB, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  /* no products (K == 0, or alpha == 0 in bf16, where oneDNN's kernel keeps a NaN of C at beta 0) */
  if (K <= 0 || (dt == GEMM_BF16 && alpha == 0.0f)) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  (dt == GEMM_BF16 ? backends[b]->bf16 : backends[b]->f32)(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C,
                                                           ldc);
}

void gemm_mm(gemm_dtype_t dt, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc) {
  product_on(dt, gemm_choose(dt, transA, transB, M, N, K), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C,
             ldc);
}

void gemm_f32_on(gemm_backend_t b, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  product_on(GEMM_F32, b, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16_on(gemm_backend_t b, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  product_on(GEMM_BF16, b, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
  gemm_mm(GEMM_F32, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
  gemm_mm(GEMM_BF16, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_set_threads(int n) {
  gemm_threads = n > 0 ? n : 1;
  for (int b = 1; b < GEMM_NBACKENDS; b++) backends[b]->set_threads(gemm_threads);
}

void gemm_backend_describe(char *buf, size_t len) {
  pthread_once(&gemm_once, gemm_read_env);
  char ob[128], dn[128], bf[224];
  backends[GEMM_OPENBLAS]->version(ob, sizeof ob);
  backends[GEMM_ONEDNN]->version(dn, sizeof dn);
  const char *plural = gemm_threads == 1 ? "" : "s";
  gemm_bf16_path(gemm_selected, bf, sizeof bf);
  if (gemm_selected == GEMM_AUTO)
    snprintf(buf, len, "gemm: STRATA_GEMM=auto: %s for products of M*N*K >= %.0f, %s below; %d thread%s; "
             "bf16 products: %s", dn, GEMM_AUTO_MIN_MNK_ONEDNN, ob, gemm_threads, plural, bf);
  else
    snprintf(buf, len, "gemm: STRATA_GEMM=%s: %s for every product; %d thread%s; bf16 products: %s",
             gemm_backend_name(gemm_selected), gemm_selected == GEMM_ONEDNN ? dn : ob, gemm_threads, plural, bf);
}
