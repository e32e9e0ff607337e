/* gemm_backend.h -- what one GEMM library provides to gemm.c (private to worker/model). A
 * backend is one file defining one gemm_backend_ops_t; gemm.c's table lists them by
 * gemm_backend_t. Every entry follows gemm.h's contract for gemm_f32 (row-major, cblas_sgemm
 * semantics, beta == 0 overwrites) and computes the same product the same way for the same
 * inputs, shape and thread count, wherever the buffers sit. */
#ifndef STRATA_GEMM_BACKEND_H
#define STRATA_GEMM_BACKEND_H

#include <stddef.h>

typedef struct {
  const char *name; /* as STRATA_GEMM spells it */
  void (*f32)(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);
  void (*set_threads)(int n);                 /* n >= 1 */
  void (*version)(char *buf, size_t len);     /* "OpenBLAS 0.3.21 (Haswell)" */
} gemm_backend_ops_t;

extern const gemm_backend_ops_t gemm_openblas_ops;
extern const gemm_backend_ops_t gemm_onednn_ops;

#endif /* STRATA_GEMM_BACKEND_H */
