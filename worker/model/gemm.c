/* gemm.c -- gemm.h's dispatcher: the backend table, STRATA_GEMM and the per-shape rule. */
#include "gemm.h"

#include <pthread.h>
#include <stdio.h>

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
 * machine, and OpenBLAS keeps those. */
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

gemm_backend_t gemm_rule(gemm_dtype_t dt, int transA, int transB, int M, int N, int K) {
  (void)dt, (void)transA, (void)transB;
  return (double)M * N * K >= GEMM_AUTO_MIN_MNK_ONEDNN ? GEMM_ONEDNN : GEMM_OPENBLAS;
}

gemm_backend_t gemm_choose(gemm_dtype_t dt, int transA, int transB, int M, int N, int K) {
  pthread_once(&gemm_once, gemm_read_env);
  return gemm_selected != GEMM_AUTO ? gemm_selected : gemm_rule(dt, transA, transB, M, N, K);
}

void gemm_f32_on(gemm_backend_t b, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { /* no products: C = beta C, the same on every backend (oneDNN would leave C) */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
    return;
  }
  backends[b]->f32(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
  gemm_f32_on(gemm_choose(GEMM_F32, transA, transB, M, N, K), transA, transB, M, N, K, alpha, A, lda, B, ldb,
              beta, C, ldc);
}

void gemm_set_threads(int n) {
  gemm_threads = n > 0 ? n : 1;
  for (int b = 1; b < GEMM_NBACKENDS; b++) backends[b]->set_threads(gemm_threads);
}

void gemm_backend_describe(char *buf, size_t len) {
  pthread_once(&gemm_once, gemm_read_env);
  char ob[128], dn[128];
  backends[GEMM_OPENBLAS]->version(ob, sizeof ob);
  backends[GEMM_ONEDNN]->version(dn, sizeof dn);
  const char *plural = gemm_threads == 1 ? "" : "s";
  if (gemm_selected == GEMM_AUTO)
    snprintf(buf, len, "gemm: STRATA_GEMM=auto: %s for fp32 products of M*N*K >= %.0f, %s below; %d thread%s",
             dn, GEMM_AUTO_MIN_MNK_ONEDNN, ob, gemm_threads, plural);
  else
    snprintf(buf, len, "gemm: STRATA_GEMM=%s: %s for every product; %d thread%s", gemm_backend_name(gemm_selected),
             gemm_selected == GEMM_ONEDNN ? dn : ob, gemm_threads, plural);
}
