/* gemm_onednn.c -- the oneDNN backend of gemm.h: dnnl_sgemm, which is row-major with
 * cblas_sgemm's argument order ('N'/'T' for the transposes). Debian's libdnnl runs its CPU
 * kernels on OpenMP (libgomp), whose thread count is a per-thread setting (the nthreads-var
 * ICV): every calling thread applies the count gemm_set_threads chose before its first product,
 * so no thread runs on OpenMP's default of one thread per core and ranks sharing a machine do
 * not oversubscribe it. */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm_backend.h"
#include "log.h"

/* oneDNN's bf16 GEMM: exported by libdnnl (2.x) with dnnl_sgemm's row-major semantics, but not
 * declared in its public headers; declared weak here so a libdnnl without it leaves it NULL and
 * the rounded-input path takes over. bf16 values travel as their 16 bits. */
extern dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K,
                                           float alpha, const uint16_t *A, dnnl_dim_t lda, const uint16_t *B,
                                           dnnl_dim_t ldb, float beta, float *C, dnnl_dim_t ldc)
    __attribute__((weak));

static atomic_int onednn_threads_wanted = 1;
static _Thread_local int onednn_threads_applied; /* 0: not yet on this thread */

static void apply_threads(void) {
  int want = atomic_load_explicit(&onednn_threads_wanted, memory_order_relaxed);
  if (onednn_threads_applied != want) {
    omp_set_num_threads(want);
    onednn_threads_applied = want;
  }
}

/* Only a malformed call (a bug in the caller: a leading dimension below the row length, a
 * negative size) fails; there is no result to return, so stop here rather than go on with C
 * unwritten. */
static void check(dnnl_status_t st, const char *fn, int transA, int transB, int M, int N, int K, int lda, int ldb,
                  int ldc) {
  if (st == dnnl_success) return;
  strata_error("%s failed (status %d) for %c%c M=%d N=%d K=%d lda=%d ldb=%d ldc=%d: a malformed "
               "matrix product in the model; report it with this line",
               fn, (int)st, transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, lda, ldb, ldc);
  abort();
}

static void onednn_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
  apply_threads();
  check(dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
        "dnnl_sgemm", transA, transB, M, N, K, lda, ldb, ldc);
}

/* 1 when dnnl_gemm_bf16bf16f32 exists and runs on this CPU (oneDNN refuses machines without
 * AVX-512 with dnnl_unimplemented): probed once with a 1 x 1 x 1 product. */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int bf16_kernel;

static void probe(void) {
  if (!dnnl_gemm_bf16bf16f32) return;
  apply_threads();
  const uint16_t one = 0x3f80; /* 1.0 */
  float c = 0.0f;
  bf16_kernel = dnnl_gemm_bf16bf16f32('N', 'N', 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &c, 1) == dnnl_success &&
                c == 1.0f;
}

static int onednn_bf16_native(void) {
  pthread_once(&probe_once, probe);
  return bf16_kernel;
}

static void onednn_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc) {
  int ar = transA ? K : M, ac = transA ? M : K, br = transB ? N : K, bc = transB ? K : N;
  if (!onednn_bf16_native()) {
    onednn_f32(transA, transB, M, N, K, alpha, gemm_round_f32(0, A, ar, ac, lda), ac, gemm_round_f32(1, B, br, bc, ldb),
               bc, beta, C, ldc);
    return;
  }
  apply_threads();
  const uint16_t *a = gemm_round_bf16(0, A, ar, ac, lda), *b = gemm_round_bf16(1, B, br, bc, ldb);
  check(dnnl_gemm_bf16bf16f32(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, a, ac, b, bc, beta, C, ldc),
        "dnnl_gemm_bf16bf16f32", transA, transB, M, N, K, lda, ldb, ldc);
}

static void onednn_threads(int n) { atomic_store_explicit(&onednn_threads_wanted, n, memory_order_relaxed); }

static void onednn_version(char *buf, size_t len) {
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, len, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
}

const gemm_backend_ops_t gemm_onednn_ops = {"onednn",        onednn_f32,     onednn_bf16,
                                          onednn_bf16_native, onednn_threads, onednn_version};
