/* gemm_backend.h -- what one GEMM library provides to gemm.c (private to worker/model). A
 * backend is one file defining one gemm_backend_ops_t; gemm.c's table lists them by
 * gemm_backend_t. Every entry follows gemm.h's contract for gemm_f32 (row-major, cblas_sgemm
 * semantics, beta == 0 overwrites) and computes the same product the same way for the same
 * inputs, shape and thread count, wherever the buffers sit. */
#ifndef STRATA_GEMM_BACKEND_H
#define STRATA_GEMM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* How a backend computes bf16 products on this machine. */
typedef enum {
  GEMM_BF16_NO_KERNEL = 0,       /* rounded fp32 inputs: the library has no bf16 kernel here */
  GEMM_BF16_KERNEL = 1,          /* the library's bf16 kernel */
  GEMM_BF16_ROUNDED_FASTER = 2,  /* rounded fp32 inputs from 16 rows up, where the kernel is
                                    slower on this CPU; the kernel below */
  GEMM_BF16_ROUNDED_SET = 3,     /* rounded fp32 inputs: STRATA_GEMM_BF16=rounded */
} gemm_bf16_path_t;

typedef struct {
  const char *name; /* as STRATA_GEMM spells it */
  void (*f32)(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);
  /* gemm.h's gemm_bf16 contract (inputs rounded to bf16, fp32 accumulation and C) */
  void (*bf16)(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc);
  int (*bf16_path)(void);                     /* a gemm_bf16_path_t */
  void (*set_threads)(int n);                 /* n >= 1 */
  void (*version)(char *buf, size_t len);     /* "OpenBLAS 0.3.21 (Haswell)" */
} gemm_backend_ops_t;

/* gemm.c: op(X)'s storage (rows x cols of X as stored, leading dimension ld) rounded to bf16,
 * packed contiguous (leading dimension cols) into this thread's scratch slot 0 or 1, as fp32
 * values (gemm_round_f32) or as bf16 bits (gemm_round_bf16). The scratch stays valid until the
 * thread's next call with the same slot. Out of memory aborts with one line (a product has no
 * error return). */
const float *gemm_round_f32(int slot, const float *X, int rows, int cols, int ld);
const uint16_t *gemm_round_bf16(int slot, const float *X, int rows, int cols, int ld);

extern const gemm_backend_ops_t gemm_openblas_ops;
extern const gemm_backend_ops_t gemm_onednn_ops;

#endif /* STRATA_GEMM_BACKEND_H */
