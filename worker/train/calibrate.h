/* calibrate.h -- what the training run measures of this CPU for the simulated `cpu` device that
 * only running the model can tell (sim/sim_clock.h's sim_layer_time_fn): one transformer layer
 * forward and backward, timed. */
#ifndef STRATA_CALIBRATE_H
#define STRATA_CALIBRATE_H

#include "layout.h"

/* The best of CAL_LAYER_REPS timed runs (after a warm-up) of one layer of model m, forward and
 * backward, for a micro-batch of b sequences of T tokens, in seconds; -1 if it cannot be built. */
double calibrate_layer_time(const layout_model_t *m, int b, int T);

#endif /* STRATA_CALIBRATE_H */
