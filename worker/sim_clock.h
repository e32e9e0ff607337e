/* sim_clock.h -- the simulated accelerator inside a real `strata train` run: resolving the
 * --device profile so that every rank holds bit-identical figures (the calibrated `cpu` profile
 * is measured once and broadcast), the memory fit check before step 1, and each rank's
 * simulated clock.
 *
 * The clock. Every rank's clock advances, step by step, by the simulated time of the step on
 * the device, taken from the discrete-event model of simulate.h run on the job's own layout,
 * schedule, ZeRO setting, bucket size and compute dtype (fp32: Strata computes in fp32). That
 * model already honours the real dependencies of the step (pipeline sends and receives with
 * alpha-beta time on the link the two chips share, DP reductions at max(start) + ring cost on a
 * separate link timeline overlapping the remaining backward, ZeRO-1 reduce-scatter and
 * all-gather, the tied-wte exchange, AdamW). A step's simulated time is the same on every rank
 * (the step ends when the slowest rank is done: every rank waits for it at the report gather)
 * and depends only on the configuration, so `strata simulate` with the same model, layout and
 * device predicts exactly the in-run figure.
 * Limitation (see SIMULATION.md): the clock is not carried on the real messages; compute and
 * communication costs are the model's, not sampled from the run.
 */
#ifndef STRATA_SIM_CLOCK_H
#define STRATA_SIM_CLOCK_H

#include <stddef.h>

#include "coll.h"
#include "device.h"
#include "layout.h"
#include "schedule.h"
#include "simulate.h"

/* Resolves --device on every rank of world (collective). "cpu" (or NULL): rank 0 measures sgemm
 * and memory bandwidth, all ranks measure the link (device_calibrate_link, needs >= 2 ranks;
 * with 1 rank the link keeps the memcpy figures), then rank 0's profile is broadcast so all
 * ranks agree. The cpu peak is measured on the job's own sgemm shapes (lay's model, micro-batches
 * of lay->micro_batch sequences of T tokens; device_calibrate_cpu_shapes), unless the env
 * STRATA_SIM_SQUARE_PEAK=1 keeps the square-384 figure. Other specs (trn1/trn2/trn3/h100/FILE.json) are resolved on every rank alike.
 * device_mem > 0 overrides the HBM capacity. 0, or -1 with a message (identical on every rank
 * for a bad spec). */
int sim_clock_resolve_device(const char *spec, double device_mem, coll_comm_t *world,
                             const layout_t *lay, int T, device_t *out, char *err, size_t errlen);

typedef struct {
  device_t dev;
  sim_options_t opt;
  sim_result_t res; /* one step of the job (with events) */
  double clock_s;   /* this rank's simulated clock: seconds since the run's start */
  int rank;
  int steps;        /* steps advanced */
} sim_clock_t;

/* Simulates one step of the job on dev. kind/zero/bucket_bytes as in the run. 0 or -1. */
int sim_clock_init(sim_clock_t *sc, const layout_t *lay, const device_t *dev, sched_kind_t kind,
                   int zero, double bucket_bytes, int rank, char *err, size_t errlen);
/* Advances the clock by one step; returns the step's simulated seconds. */
double sim_clock_step(sim_clock_t *sc);
void sim_clock_free(sim_clock_t *sc);

#endif /* STRATA_SIM_CLOCK_H */
