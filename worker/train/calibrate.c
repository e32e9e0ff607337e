/* calibrate.c -- one transformer layer timed on this CPU, for the simulated cpu device's per-op
 * overhead (see calibrate.h and sim/sim_clock.c). */
#include "calibrate.h"

#include <math.h>
#include <stdlib.h>

#include "gpt2.h"
#include "util.h"

#define CAL_LAYER_REPS 15 /* timed runs; the first, untimed, warms the caches */

double calibrate_layer_time(const layout_model_t *lm, int b, int T) {
  char err[256];
  const int C = lm->dim;
  gpt2_config_t cfg = {lm->vocab, lm->ctx, 1, lm->heads, C};
  gpt2_range_t range = {0, 1, 0, 0};
  gpt2_model_t *m = NULL;
  gpt2_acts_t *a = NULL;
  const size_t nact = (size_t)b * T * C;
  float *x = malloc(nact * sizeof(float)), *dy = malloc(nact * sizeof(float)), *dx = malloc(nact * sizeof(float));
  double best = -1;
  if (!x || !dy || !dx || gpt2_create(&cfg, range, &m, err, sizeof err) || gpt2_acts_create(m, b, T, &a, err, sizeof err))
    goto out;
  gpt2_init_params(m, 7);
  for (size_t i = 0; i < nact; i++) {
    x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    dy[i] = 1e-3f * x[(i * 7) % nact];
  }
  best = INFINITY;
  for (int r = 0; r <= CAL_LAYER_REPS; r++) {
    double t0 = strata_now_s();
    gpt2_forward(m, a, NULL, x, NULL);
    gpt2_backward(m, a, dy, 1.0f, dx);
    double t = strata_now_s() - t0;
    if (r > 0 && t < best) best = t;
  }
out:
  gpt2_acts_free(a);
  gpt2_free(m);
  free(x);
  free(dy);
  free(dx);
  return best;
}
