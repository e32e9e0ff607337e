/* calibrate.h -- what the training run measures of this CPU for the simulated `cpu` device that
 * only running the model can tell (sim/sim_clock.h's sim_layer_time_fn): a stage's transformer
 * layers of the run's family (GPT-2 or Llama) forward and backward, timed; with tensor
 * parallelism one rank's share of them, with its real collectives. */
#ifndef STRATA_CALIBRATE_H
#define STRATA_CALIBRATE_H

#include "gemm.h"
#include "layout.h"
#include "strata/coll.h"

/* The median of CAL_LAYER_REPS timed runs (after a warm-up) of `layers` layers of model m (its
 * arch: GPT-2's layers or Llama's; sp applies to GPT-2 only, as in training),
 * forward through all then backward through all (a pipeline stage's order), for a micro-batch of
 * b sequences of T tokens, divided by `layers`: seconds per layer; -1 if they cannot be built
 * (on any rank of tp_comm). tp > 1: tensor-parallel rank coll_rank(tp_comm) of tp, sequence
 * parallel when sp; collective over tp_comm (NULL when tp = 1). The median, not the best: the
 * run it stands for meets the same interference. Each run is timed by the wall clock, or with
 * cpu_time by this thread's CPU time: where ranks time-share the cores, a run's wall time is
 * bimodal (whether the scheduler took the core away inside it), so its median is either the
 * work or several times it; the CPU time is the work (one BLAS thread per rank, as training
 * runs by default). */
double calibrate_layer_time(const layout_model_t *m, int b, int T, int layers, int tp, int sp,
                            coll_comm_t *tp_comm, int cpu_time);
/* The precision of the timed layer's matrix products (gemm.h; GEMM_F32 until set): the run's. */
void calibrate_set_matmul_dtype(gemm_dtype_t dt);

#endif /* STRATA_CALIBRATE_H */
