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

#include "env.h"
#include "gemm_backend.h"
#include "log.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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

/* 1 on an Intel CPU without AMX-BF16. Such a core (Cooper Lake; Sapphire Rapids where AMX is
 * not exposed, as in many virtual machines) issues vdpbf16ps at the fp32 FMA rate, so the bf16
 * kernel has no more arithmetic throughput than dnnl_sgemm and its packing makes it slower:
 * measured on a 2-core Sapphire Rapids guest, 79-86 GFLOP/s against dnnl_sgemm's 114-160 on the
 * 10.8M model's products (BENCHMARKS.md, "bf16 on an Intel CPU without AMX"). On AMD Zen 4 the
 * kernel ran at 2x dnnl_sgemm. A rule on the CPU's identity rather than a timing at start-up,
 * so that every rank and every run computes a product the same way (gemm.h). Products of fewer
 * than GEMM_BF16_ROUNDED_MIN_M rows (decoding a few tokens) keep the kernel: rounding the weight
 * dominates them, and fp32 copies are twice the bytes of bf16 ones (same machine, N = 1536,
 * K = 384: 1 row 6.9 against 3.8 GFLOP/s, 8 rows even, 16 rows 34.6 against 37.8, 64 rows 49.6
 * against 64.0). */
#define GEMM_BF16_ROUNDED_MIN_M 16
static int intel_without_amx(void) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
  const int intel = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu; /* "GenuineIntel" */
  if (!intel || a < 7) return 0;
  __cpuid_count(7, 0, a, b, c, d);
  return !(d & (1u << 22)); /* CPUID.(7,0):EDX[22] AMX-BF16 */
#else
  return 0;
#endif
}

/* How bf16 products run: GEMM_BF16_KERNEL when dnnl_gemm_bf16bf16f32 exists, runs on this CPU
 * (oneDNN refuses machines without AVX-512 with dnnl_unimplemented; probed once with a 1 x 1 x 1
 * product) and STRATA_GEMM_BF16 (auto: intel_without_amx) wants it. */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int bf16_path = GEMM_BF16_NO_KERNEL;

static void probe(void) {
  if (!dnnl_gemm_bf16bf16f32) return;
  apply_threads();
  const uint16_t one = 0x3f80; /* 1.0 */
  float c = 0.0f;
  if (dnnl_gemm_bf16bf16f32('N', 'N', 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &c, 1) != dnnl_success || c != 1.0f)
    return;
  int w;
  char err[256];
  if (env_read_choice("STRATA_GEMM_BF16", &w, err, sizeof err)) strata_error("%s; using auto", err);
  if (w == 2)
    bf16_path = GEMM_BF16_ROUNDED_SET;
  else
    bf16_path = w == 0 && intel_without_amx() ? GEMM_BF16_ROUNDED_FASTER : GEMM_BF16_KERNEL;
}

static int onednn_bf16_path(void) {
  pthread_once(&probe_once, probe);
  return bf16_path;
}

static void onednn_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc) {
  int ar = transA ? K : M, ac = transA ? M : K, br = transB ? N : K, bc = transB ? K : N;
  const int path = onednn_bf16_path();
  if (path != GEMM_BF16_KERNEL && !(path == GEMM_BF16_ROUNDED_FASTER && M < GEMM_BF16_ROUNDED_MIN_M)) {
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
                                          onednn_bf16_path, onednn_threads, onednn_version};
