/* gemm_openblas.c -- the OpenBLAS backend of gemm.h: cblas_sgemm, row-major. OpenBLAS picks its
 * kernels by OPENBLAS_CORETYPE (Haswell, AVX2, on the machines Strata runs on). */
#include <cblas.h>
#include <stdio.h>

#include "gemm_backend.h"

static void openblas_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc) {
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The portable bf16 path: both inputs rounded to bf16 into packed fp32 copies, then the fp32
 * product (exact bf16 x bf16 products, fp32 sums). */
static void openblas_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, float *C, int ldc) {
  const float *a = gemm_round_f32(0, A, transA ? K : M, transA ? M : K, lda);
  const float *b = gemm_round_f32(1, B, transB ? N : K, transB ? K : N, ldb);
  openblas_f32(transA, transB, M, N, K, alpha, a, transA ? M : K, b, transB ? K : N, beta, C, ldc);
}

static int openblas_bf16_path(void) { return GEMM_BF16_NO_KERNEL; }

static void openblas_threads(int n) { openblas_set_num_threads(n); }

static void openblas_version(char *buf, size_t len) {
  /* openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" */
  const char *cfg = openblas_get_config();
  int vlen = 0;
  for (int spaces = 0; cfg[vlen] && (cfg[vlen] != ' ' || ++spaces < 2); vlen++) {
  }
  snprintf(buf, len, "%.*s (%s)", vlen, cfg, openblas_get_corename());
}

const gemm_backend_ops_t gemm_openblas_ops = {"openblas",      openblas_f32,     openblas_bf16,
                                            openblas_bf16_path, openblas_threads, openblas_version};
