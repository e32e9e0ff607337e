/* calibrate.c -- a stage's transformer layers (GPT-2's or Llama's, as the run trains) timed on
 * this CPU, for the simulated cpu device's per-op overhead (see calibrate.h and sim/sim_clock.c). */
#include "calibrate.h"

#include <math.h>
#include <stdlib.h>

#include "stage.h"
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

/* Builds `layers` layers of the run's own family (GPT-2's, or Llama's RMSNorm, rotary,
 * grouped-query attention and SwiGLU) as a stage for the timing; tp > 1: this rank's part, with
 * its TP group. 0 (sm->model set), or -1 (sm->model set when the model itself was made). */
static int stage_build(stage_model_t *sm, const layout_model_t *lm, int layers, int tp, int sp,
                       coll_comm_t *tp_comm) {
  char err[256];
  const int tp_rank = tp > 1 ? coll_rank(tp_comm) : 0;
  if (lm->arch == LAYOUT_ARCH_LLAMA) {
    llama_config_t cfg = {.vocab = lm->vocab, .ctx = lm->ctx, .layers = layers, .heads = lm->heads,
                          .kv_heads = layout_model_kv_heads(lm), .dim = lm->dim,
                          .ffn = layout_model_ffn(lm), .rms_norm_eps = 1e-5, .rope_theta = 1e4};
    llama_range_t range = {0, layers, 0, 0, .tp_rank = tp_rank, .tp_size = tp};
    llama_model_t *l = NULL;
    if (llama_create_range(&cfg, range, &l, err, sizeof err)) return -1;
    *sm = stage_of_llama(l);
    if (tp > 1 && llama_set_tp(l, tp_comm, err, sizeof err)) return -1;
    llama_init_params(l, 7);
  } else {
    gpt2_config_t cfg = {lm->vocab, lm->ctx, layers, lm->heads, lm->dim};
    gpt2_range_t range = {0, layers, 0, 0, .tp_rank = tp_rank, .tp_size = tp};
    gpt2_model_t *g = NULL;
    if (gpt2_create(&cfg, range, &g, err, sizeof err)) return -1;
    *sm = stage_of_gpt2(g);
    if (tp > 1 && gpt2_set_tp(g, tp_comm, sp, err, sizeof err)) return -1;
    gpt2_init_params(g, 7);
  }
  sm->ops->set_precision(sm->model, cal_dtype, 0);
  return 0;
}

static void stage_free(stage_model_t *sm) {
  if (!sm->model) return;
  if (sm->ops == &stage_llama_ops)
    llama_free(sm->model);
  else
    gpt2_free(sm->model);
}

double calibrate_layer_time(const layout_model_t *lm, int b, int T, int layers, int tp, int sp,
                            coll_comm_t *tp_comm, int cpu_time) {
  const int C = lm->dim;
  if (tp < 1) tp = 1;
  if (layers < 1) layers = 1;
  stage_model_t sm = {0};
  void *acts = NULL;
  float *x = NULL, *dy = NULL, *dx = NULL;
  double t[CAL_LAYER_REPS], result = -1;
  char err[256];
  int ok = !stage_build(&sm, lm, layers, tp, sp, tp_comm) &&
           !sm.ops->acts_create(sm.model, b, T, &acts, err, sizeof err);
  const size_t nact = ok ? (size_t)sm.ops->stream_rows(sm.model, b, T) * C : 0;
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
    sm.ops->forward(sm.model, acts, NULL, x, NULL);
    sm.ops->backward(sm.model, acts, dy, 1.0f, dx);
    if (r > 0) t[r - 1] = clock_s() - t0;
  }
  strata_sort_doubles(t, CAL_LAYER_REPS);
  result = t[CAL_LAYER_REPS / 2] / layers;
out:
  if (acts) sm.ops->acts_free(acts);
  stage_free(&sm);
  free(x);
  free(dy);
  free(dx);
  return result;
}
