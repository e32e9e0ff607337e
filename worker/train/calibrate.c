/* calibrate.c -- a stage's transformer layers (GPT-2's or Llama's, as the run trains) timed on
 * this CPU, for the simulated cpu device's per-op overhead (see calibrate.h and sim/sim_clock.c). */
#include "calibrate.h"

#include <math.h>
#include <stdlib.h>

#include "gpt2.h"
#include "llama.h"
#include "util.h"

#define CAL_LAYER_REPS 15 /* timed runs; the first, untimed, warms the caches */

/* 1 when every rank of c (NULL: this rank alone) says ok, else 0 (also on a failed exchange). */
static int all_ok(int ok, coll_comm_t *c) {
  int32_t v = ok;
  if (c && coll_allreduce(&v, &v, 1, COLL_I32, COLL_MIN, c) != COLL_OK) return 0;
  return v != 0;
}

static gemm_dtype_t cal_dtype = GEMM_F32;

void calibrate_set_matmul_dtype(gemm_dtype_t dt) { cal_dtype = dt; }

/* A stage of `layers` layers of either family, built for the timing (the run's own family:
 * GPT-2's layers, or Llama's RMSNorm, rotary, grouped-query attention and SwiGLU). */
typedef struct {
  gpt2_model_t *g;
  gpt2_acts_t *ga;
  llama_model_t *l;
  llama_acts_t *la;
} cal_stage_t;

/* Builds the stage (tp > 1: this rank's part, with its TP group); *rows: residual-stream rows of
 * a micro-batch. 0, or -1. */
static int stage_build(cal_stage_t *st, const layout_model_t *lm, int b, int T, int layers, int tp,
                       int sp, coll_comm_t *tp_comm, size_t *rows) {
  char err[256];
  const int tp_rank = tp > 1 ? coll_rank(tp_comm) : 0;
  if (lm->arch == LAYOUT_ARCH_LLAMA) {
    llama_config_t cfg = {.vocab = lm->vocab, .ctx = lm->ctx, .layers = layers, .heads = lm->heads,
                          .kv_heads = layout_model_kv_heads(lm), .dim = lm->dim,
                          .ffn = layout_model_ffn(lm), .rms_norm_eps = 1e-5, .rope_theta = 1e4};
    llama_range_t range = {0, layers, 0, 0, .tp_rank = tp_rank, .tp_size = tp};
    if (llama_create_range(&cfg, range, &st->l, err, sizeof err) ||
        (tp > 1 && llama_set_tp(st->l, tp_comm, err, sizeof err)) ||
        llama_acts_create(st->l, b, T, &st->la, err, sizeof err))
      return -1;
    llama_init_params(st->l, 7);
    llama_set_matmul_dtype(st->l, cal_dtype);
    *rows = (size_t)llama_stream_rows(st->l, b, T);
    return 0;
  }
  gpt2_config_t cfg = {lm->vocab, lm->ctx, layers, lm->heads, lm->dim};
  gpt2_range_t range = {0, layers, 0, 0, .tp_rank = tp_rank, .tp_size = tp};
  if (gpt2_create(&cfg, range, &st->g, err, sizeof err) ||
      (tp > 1 && gpt2_set_tp(st->g, tp_comm, sp, err, sizeof err)) ||
      gpt2_acts_create(st->g, b, T, &st->ga, err, sizeof err))
    return -1;
  gpt2_init_params(st->g, 7);
  gpt2_set_matmul_dtype(st->g, cal_dtype);
  *rows = (size_t)gpt2_stream_rows(st->g, b, T);
  return 0;
}

/* One micro-batch through the stage: forward of x, backward of dy into dx. */
static void stage_run(cal_stage_t *st, const float *x, const float *dy, float *dx) {
  if (st->l) {
    llama_stage_forward(st->l, st->la, NULL, x, NULL);
    llama_stage_backward(st->l, st->la, dy, 1.0f, dx);
  } else {
    gpt2_forward(st->g, st->ga, NULL, x, NULL);
    gpt2_backward(st->g, st->ga, dy, 1.0f, dx);
  }
}

static void stage_free(cal_stage_t *st) {
  llama_acts_free(st->la);
  llama_free(st->l);
  gpt2_acts_free(st->ga);
  gpt2_free(st->g);
}

double calibrate_layer_time(const layout_model_t *lm, int b, int T, int layers, int tp, int sp,
                            coll_comm_t *tp_comm, int cpu_time) {
  const int C = lm->dim;
  if (tp < 1) tp = 1;
  if (layers < 1) layers = 1;
  cal_stage_t st = {0};
  float *x = NULL, *dy = NULL, *dx = NULL;
  double t[CAL_LAYER_REPS], result = -1;
  size_t rows = 0;
  int ok = !stage_build(&st, lm, b, T, layers, tp, sp, tp_comm, &rows);
  const size_t nact = ok ? rows * C : 0;
  if (ok) {
    x = malloc(nact * sizeof(float)), dy = malloc(nact * sizeof(float)), dx = malloc(nact * sizeof(float));
    ok = x && dy && dx;
  }
  if (!all_ok(ok, tp > 1 ? tp_comm : NULL)) goto out;
  for (size_t i = 0; i < nact; i++) {
    x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    dy[i] = 1e-3f * x[(i * 7) % nact];
  }
  double (*clock_s)(void) = cpu_time ? strata_thread_cpu_s : strata_now_s;
  for (int r = 0; r <= CAL_LAYER_REPS; r++) {
    double t0 = clock_s();
    stage_run(&st, x, dy, dx);
    if (r > 0) t[r - 1] = clock_s() - t0;
  }
  strata_sort_doubles(t, CAL_LAYER_REPS);
  result = t[CAL_LAYER_REPS / 2] / layers;
out:
  stage_free(&st);
  free(x);
  free(dy);
  free(dx);
  return result;
}
