/* sim_clock.h -- the simulated accelerator inside a real `strata train` run: resolving the
 * --device profile so that every rank holds bit-identical figures (the calibrated `cpu` profile
 * is measured once and broadcast), the memory fit check before step 1, and each rank's
 * simulated clock.
 *
 * The clock is carried on the real execution. Every rank advances its own clock by the device
 * model's roofline time of each forward / backward it really runs (the per-micro-batch stage
 * costs of simulate.c, sim_build_costs: with T > 1 one tensor-parallel rank's share of the math
 * plus the layers' tensor-parallel collectives and any recomputation); every pipeline send carries the sender's clock: the
 * message's simulated arrival (sender's link free time + alpha-beta on the link between the
 * two chips) travels in an 8-byte message sent just before the activation (the collectives
 * library, on a communicator of its own), and the receiver sets clock = max(own, arrival). Each gradient bucket that
 * grad_sync.c starts records the simulated time it became ready (the region being reported);
 * a non-blocking all-reduce MAX over the DP group, started with the bucket, gives the
 * group's start, and the bucket completes at max(that, the group's link free) + the ring time
 * on a link timeline separate from compute, so it overlaps the remaining backward. After the
 * real collectives of grad_sync_finish: clock = max(own, last bucket); the tied-wte sum
 * (MAX over the 2 ranks + point-to-point), the wte DP all-reduce or the ZeRO-1 reduce-scatter
 * (MAX over the DP group + ring time), the gradient-norm all-reduce (MAX over its group), then
 * AdamW and the ZeRO-1 all-gather. Every MAX exchange runs after the real collective it
 * stands for has completed, so it never waits for a rank the real run is not waiting for.
 * The step's simulated time on a rank is its clock at the end of the step (every step starts
 * at 0: the report gather synchronises the ranks); the coordinator takes the max over ranks.
 * The event simulation (simulate.h) models exactly these actions, so `strata simulate` with
 * the same model, layout, device, bucket size and --dtype fp32 predicts the same step (test
 * simint_agree, to 1e-9 relative); the replay of that simulation (res) supplies the per-stage
 * breakdown and the trace.json timeline.
 */
#ifndef STRATA_SIM_CLOCK_H
#define STRATA_SIM_CLOCK_H

#include <stddef.h>

#include "strata/coll.h"
#include "device.h"
#include "layout.h"
#include "schedule.h"
#include "simulate.h"
#include "step_hooks.h"

/* Seconds one transformer layer of model m takes forward + backward on this CPU for a micro-batch
 * of b sequences of T tokens (the median of several runs), or -1 on failure: `layers` of them
 * are run as a pipeline stage runs them (forward through all, then backward through all) and
 * the time is divided by `layers`, so that each layer's activations and weights are as far from
 * the caches when its backward comes as in the run. With tp > 1 it is one tensor-parallel
 * rank's share of the layer (sequence parallel when sp), run with its real collectives:
 * collective over tp_comm, the tp ranks of one group ordered by t (NULL when tp = 1), all with
 * the same `layers`. cpu_time: each run timed by the calling thread's CPU time instead of the
 * wall clock (asked for where the job's ranks time-share the cores). The caller runs the model
 * (train/calibrate.c); the simulator only does the arithmetic. */
typedef double (*sim_layer_time_fn)(const layout_model_t *m, int b, int T, int layers, int tp,
                                    int sp, coll_comm_t *tp_comm, int cpu_time);

/* Resolves --device on every rank of world (collective). "cpu" (or NULL): rank 0 measures sgemm
 * and memory bandwidth, all ranks measure the link (device_calibrate_link, needs >= 2 ranks;
 * with 1 rank the link keeps the memcpy figures), then rank 0's profile is broadcast so all
 * ranks agree. The cpu peak is measured on the job's own sgemm shapes (lay's model, micro-batches
 * of lay->micro_batch sequences of T tokens; device_calibrate_cpu_shapes), unless the env
 * STRATA_SIM_SQUARE_PEAK=1 keeps the square-384 figure. Other specs (trn1/trn2/trn3/h100/FILE.json) are resolved on every rank alike.
 * The per-op overhead comes from layer_time (NULL: none), which every rank runs at once, each
 * on its own tensor-parallel share of the layer (lay->tp; sequence parallel when sp), as in the
 * run. Where the job's ranks outnumber the host's cores, every rank also runs layer_time in
 * rounds (the first k of a host's ranks at once, k = 1..R) for the sharing rates the
 * simulation's pipeline phase uses (STRATA_SIM_SHARE=0: not measured). device_mem > 0
 * overrides the HBM capacity. 0, or -1 with a message (identical on every
 * rank for a bad spec). */
int sim_clock_resolve_device(const char *spec, double device_mem, coll_comm_t *world, const layout_t *lay,
                             int T, int sp, sim_layer_time_fn layer_time, device_t *out, char *err,
                             size_t errlen);

typedef struct sim_clock {
  device_t dev;
  sim_options_t opt;
  sim_result_t res; /* one step of the job simulated by simulate.c (with events) */
  double clock_s;   /* this rank's simulated clock: seconds since the run's start */
  int rank;
  int steps;        /* steps advanced */
  /* ---- the carried clock (sim_clock_attach) ---- */
  int carry;                 /* 1: attached to the run's communicators */
  layout_t lay;
  sim_stage_cost_t *costs;   /* [P] */
  int stage, replica, zero, tp_rank;
  double t;                  /* this step's clock */
  double link_next_free, link_prev_free, last_bwd_start, end_bwd, cur_ready, comm_free;
  int in_last_bwd, cb;       /* in the step's last backward; grad_ready callbacks seen */
  int nb, cap_b;             /* buckets started this step */
  double *b_ready, *b_max, *b_bytes;
  coll_request_t **b_req;    /* [cap_b] each bucket's MAX exchange */
  double *send_val;          /* [2M] clock messages in flight (activation, gradient) */
  coll_request_t **send_req; /* [2M] */
  int *dp_ranks, *norm_ranks, nnorm;
  coll_comm_t *pipe, *dp, *tied, *norm; /* copies of the run's communicators for the clock (NULL: none) */
  double step_min_s, step_max_s; /* carried step times seen on this rank */
  double overhead_s;         /* wall seconds spent in the clock's exchanges */
} sim_clock_t;

/* Simulates one step of the job on dev with the run's options (kind, zero, bucket_bytes,
 * sequence_parallel, recompute; the compute dtype the run uses: fp32 for Strata). The costs take
 * T from lay: every forward / backward the clock advances includes the stage's tensor-parallel
 * communication, so a run with T > 1 layouts needs nothing more. 0 or -1. */
int sim_clock_init_opt(sim_clock_t *sc, const layout_t *lay, const device_t *dev,
                       const sim_options_t *opt, int rank, char *err, size_t errlen);
/* sim_clock_init_opt with kind/zero/bucket_bytes, fp32 compute, no SP, no recomputation. */
int sim_clock_init(sim_clock_t *sc, const layout_t *lay, const device_t *dev, sched_kind_t kind,
                   int zero, double bucket_bytes, int rank, char *err, size_t errlen);
/* Carries the clock on the run (collective over world: copies the communicators). pipe: the
 * P ranks of this rank's pipeline (same replica and tensor-parallel rank t), ranked by stage;
 * dp: the D ranks of its DP group (same stage and t); tied: {stage 0, stage P-1} of the same t
 * and replica, or NULL. The gradient norm's group (the replica's T x P model-parallel ranks,
 * ZeRO-1: the world) is derived from world and the layout. Without it the clock advances by
 * the replayed simulation (res.step_s); so it does on time-shared cores (dev.share_ranks > 0:
 * a rank's speed depends on which others compute), where attach is a no-op. 0 or -1. */
int sim_clock_attach(sim_clock_t *sc, coll_comm_t *world, coll_comm_t *pipe, coll_comm_t *dp,
                     coll_comm_t *tied, char *err, size_t errlen);
/* Ends the step: returns this rank's simulated step seconds (carried clock, else the replay)
 * and resets the carried clock for the next step. */
double sim_clock_step(sim_clock_t *sc);
/* Rank 0 prints the carried step time (max over ranks, %.17g) beside the replayed prediction;
 * collective over world; no-op without attach. */
void sim_clock_report(sim_clock_t *sc, coll_comm_t *world, int quiet);
void sim_clock_free(sim_clock_t *sc);

/* ---- hooks (every one a no-op when sc is NULL or not attached) ---- */
void sim_clock_fwd(sim_clock_t *sc);
void sim_clock_bwd_begin(sim_clock_t *sc, int last);
void sim_clock_bwd_end(sim_clock_t *sc, int last);
/* A pipeline send of micro-batch `micro` (fwd: activation to stage + 1, else gradient to
 * stage - 1; the same tensor-parallel rank) with the data's tag: sends the simulated arrival.
 * Call BEFORE the data's send. */
void sim_clock_send(sim_clock_t *sc, int fwd, int micro, int tag);
/* After the data's receive (fwd: activation from stage - 1): clock = max(own, arrival). */
void sim_clock_recv(sim_clock_t *sc, int fwd, int tag);
/* grad_sync.c: a grad_ready callback during the armed (last) backward; a bucket started. */
void sim_clock_grad_ready(sim_clock_t *sc);
void sim_clock_bucket(sim_clock_t *sc, double bytes);
/* After grad_sync_finish succeeded: buckets, tied wte, wte DP all-reduce / ZeRO reduce-scatter,
 * the norm all-reduce. After grad_sync_update: AdamW, ZeRO all-gather. */
void sim_clock_sync_done(sim_clock_t *sc);
void sim_clock_update_done(sim_clock_t *sc);

/* Fills the clock entries of the runtime's hook table (step_hooks.h) so that the pipeline and
 * the gradient sync drive this clock; sc must outlive the table's use. */
void sim_clock_step_hooks(sim_clock_t *sc, step_hooks_t *h);

#endif /* STRATA_SIM_CLOCK_H */
