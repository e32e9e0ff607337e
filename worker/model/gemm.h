/* gemm.h -- the model's one matrix-product interface: C = alpha op(A) op(B) + beta C on
 * row-major float arrays, with the semantics of cblas_sgemm(CblasRowMajor, ...). Every matrix
 * product of the models (nn.c, gpt2_pass.c, gpt2_kv.c, llama.c) goes through here; which library computes
 * it is a backend, one file each (gemm_openblas.c, gemm_onednn.c, described in gemm_backend.h),
 * so a third library is a file and a row of gemm.c's table, not a change to the model.
 *
 * Which backend: STRATA_GEMM=openblas|onednn|auto (unset or empty: auto). auto picks per shape
 * by a fixed rule taken from measurements (gemm_choose; the figures are in BENCHMARKS.md,
 * "GEMM backends"): it depends only on the precision, the transposes and M, N, K, never on
 * timing at run time, so every process and every run computes a given product the same way and
 * exact-resume and rank-comparison results stay bit-identical. Each backend's result depends
 * only on the inputs and the shape (never on buffer addresses) at a fixed thread count.
 *
 * Threads: gemm_set_threads(n) sets every backend's thread count (OpenBLAS's and oneDNN's OpenMP
 * one); a process starts at 1 (each rank is one process on its own core). Call it before the
 * first product; it is not for use while another thread multiplies.
 *
 * The first product (or gemm_backend_describe) reads STRATA_GEMM once; `strata` validates the
 * variable before any command (a bad value: exit 2). A library user with a bad value gets auto
 * and one error line.
 *
 * Usage
 *   gemm_set_threads(1);
 *   gemm_f32(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);   // C (M, N) = A (M, K) B (N, K)^T
 */
#ifndef STRATA_GEMM_H
#define STRATA_GEMM_H

#include <stddef.h>

/* Element precision of a product's inputs. GEMM_BF16: A and B are rounded to bfloat16
 * (round-to-nearest-even, bf16.h) and multiplied with fp32 accumulation into an fp32 C, as
 * PyTorch's bf16 autocast does. A product of two bf16 values is exact in fp32, so the result is
 * the fp32 sum of exact products: backends differ only in summation order. */
typedef enum { GEMM_F32 = 0, GEMM_BF16 = 1 } gemm_dtype_t;

typedef enum {
  GEMM_AUTO = 0,     /* per shape, gemm_choose */
  GEMM_OPENBLAS = 1, /* cblas_sgemm */
  GEMM_ONEDNN = 2,   /* dnnl_sgemm */
  GEMM_NBACKENDS = 3
} gemm_backend_t;

/* C (M, N) = alpha op(A) op(B) + beta C, row-major; op(A) is (M, K): A is (M, K) with lda >= K,
 * or (K, M) with lda >= M when transA; op(B) is (K, N) likewise. beta == 0 overwrites C (NaN in
 * C does not survive); K == 0 leaves beta C. M, N, K >= 0; nothing happens when M or N is 0.
 * Leading dimensions are at least 1 and at least the row length (as BLAS requires). */
void gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* The same product on one given backend (not GEMM_AUTO), for tests and benchmarks. */
void gemm_f32_on(gemm_backend_t b, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* The same contract with GEMM_BF16 inputs: A and B stay fp32 arrays in memory and are rounded
 * to bf16 on the way in (the caller's arrays are not changed); C is fp32. On oneDNN this is
 * dnnl_gemm_bf16bf16f32 (the avx512_bf16 instructions where the CPU has them; except on an Intel
 * CPU without AMX, where the rounded path below is faster, or as STRATA_GEMM_BF16=kernel|rounded
 * says: gemm_onednn.c); on OpenBLAS,
 * or when that oneDNN entry is missing or refuses the machine, the portable path: the inputs
 * are rounded into fp32 copies and multiplied by the fp32 product (gemm_bf16_path says which). */
void gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
void gemm_bf16_on(gemm_backend_t b, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* gemm_f32 or gemm_bf16 by dt: what the models call, with the precision they were set to. */
void gemm_mm(gemm_dtype_t dt, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

/* How backend b computes bf16 products on this machine: 1 with oneDNN's bf16 kernel, 0 through
 * rounded fp32 inputs; desc (may be NULL) gets one phrase, e.g. "oneDNN dnnl_gemm_bf16bf16f32". */
int gemm_bf16_path(gemm_backend_t b, char *desc, size_t len);

/* "fp32", "bf16". */
const char *gemm_dtype_name(gemm_dtype_t dt);

/* The backend gemm_f32 uses for this product under the current STRATA_GEMM. */
gemm_backend_t gemm_choose(gemm_dtype_t dt, int transA, int transB, int M, int N, int K);
/* The built-in per-shape rule alone (what auto means). */
gemm_backend_t gemm_rule(gemm_dtype_t dt, int transA, int transB, int M, int N, int K);

/* Every backend's thread count (n >= 1). */
void gemm_set_threads(int n);

/* "openblas", "onednn", "auto". */
const char *gemm_backend_name(gemm_backend_t b);
/* One line saying what STRATA_GEMM selects and the libraries' versions, e.g.
 * "gemm: auto (oneDNN 2.6.3 where M*N*K >= ..., else OpenBLAS 0.3.21), 1 thread", and how its
 * bf16 products are computed. */
void gemm_backend_describe(char *buf, size_t len);

#endif /* STRATA_GEMM_H */
