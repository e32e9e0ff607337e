/* calibrate.c -- a stage's transformer layers timed on this CPU, for the simulated cpu device's
 * per-op overhead (see calibrate.h and sim/sim_clock.c). */
#include "calibrate.h"

#include <math.h>
#include <stdlib.h>

#include "gpt2.h"
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

double calibrate_layer_time(const layout_model_t *lm, int b, int T, int layers, int tp, int sp,
                            coll_comm_t *tp_comm, int cpu_time) {
  char err[256];
  const int C = lm->dim;
  if (tp < 1) tp = 1;
  if (layers < 1) layers = 1;
  gpt2_config_t cfg = {lm->vocab, lm->ctx, layers, lm->heads, C};
  gpt2_range_t range = {0, layers, 0, 0, .tp_rank = tp > 1 ? coll_rank(tp_comm) : 0, .tp_size = tp};
  gpt2_model_t *m = NULL;
  gpt2_acts_t *a = NULL;
  float *x = NULL, *dy = NULL, *dx = NULL;
  double t[CAL_LAYER_REPS], result = -1;
  int ok = !gpt2_create(&cfg, range, &m, err, sizeof err) &&
           (tp == 1 || !gpt2_set_tp(m, tp_comm, sp, err, sizeof err)) &&
           !gpt2_acts_create(m, b, T, &a, err, sizeof err);
  const size_t nact = ok ? (size_t)gpt2_stream_rows(m, b, T) * C : 0;
  if (ok) {
    x = malloc(nact * sizeof(float)), dy = malloc(nact * sizeof(float)), dx = malloc(nact * sizeof(float));
    ok = x && dy && dx;
  }
  if (!all_ok(ok, tp > 1 ? tp_comm : NULL)) goto out;
  gpt2_init_params(m, 7);
  gpt2_set_matmul_dtype(m, cal_dtype);
  for (size_t i = 0; i < nact; i++) {
    x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    dy[i] = 1e-3f * x[(i * 7) % nact];
  }
  double (*clock_s)(void) = cpu_time ? strata_thread_cpu_s : strata_now_s;
  for (int r = 0; r <= CAL_LAYER_REPS; r++) {
    double t0 = clock_s();
    gpt2_forward(m, a, NULL, x, NULL);
    gpt2_backward(m, a, dy, 1.0f, dx);
    if (r > 0) t[r - 1] = clock_s() - t0;
  }
  strata_sort_doubles(t, CAL_LAYER_REPS);
  result = t[CAL_LAYER_REPS / 2] / layers;
out:
  gpt2_acts_free(a);
  gpt2_free(m);
  free(x);
  free(dy);
  free(dx);
  return result;
}
