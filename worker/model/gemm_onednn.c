/* gemm_onednn.c -- the oneDNN backend of gemm.h: dnnl_sgemm, which is row-major with
 * cblas_sgemm's argument order ('N'/'T' for the transposes). Debian's libdnnl runs its CPU
 * kernels on OpenMP (libgomp), whose thread count is a per-thread setting (the nthreads-var
 * ICV): every calling thread applies the count gemm_set_threads chose before its first product,
 * so no thread runs on OpenMP's default of one thread per core and ranks sharing a machine do
 * not oversubscribe it. */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm_backend.h"
#include "log.h"

static atomic_int onednn_threads_wanted = 1;
static _Thread_local int onednn_threads_applied; /* 0: not yet on this thread */

static void onednn_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
  int want = atomic_load_explicit(&onednn_threads_wanted, memory_order_relaxed);
  if (onednn_threads_applied != want) {
    omp_set_num_threads(want);
    onednn_threads_applied = want;
  }
  dnnl_status_t st = dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (st != dnnl_success) {
    /* Only a malformed call (a bug in the caller: a leading dimension below the row length, a
     * negative size) fails; there is no result to return, so stop here rather than go on with
     * C unwritten. */
    strata_error("dnnl_sgemm failed (status %d) for %c%c M=%d N=%d K=%d lda=%d ldb=%d ldc=%d: a malformed "
                 "matrix product in the model; report it with this line",
                 (int)st, transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, lda, ldb, ldc);
    abort();
  }
}

static void onednn_threads(int n) { atomic_store_explicit(&onednn_threads_wanted, n, memory_order_relaxed); }

static void onednn_version(char *buf, size_t len) {
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, len, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
}

const gemm_backend_ops_t gemm_onednn_ops = {"onednn", onednn_f32, onednn_threads, onednn_version};
