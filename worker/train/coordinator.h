/* coordinator.h -- rank 0's view of a distributed training run: per-step StepReports gathered
 * from every rank, the progress line, and the run directory files steps.jsonl, report.json,
 * report.pb (RunReport) and trace.json (Chrome trace events of every rank).
 *
 * Every rank records trace events (forward, backward, send, recv, all-reduce, optimizer,
 * checkpoint) into its own buffer with coord_trace; every rank calls coord_step once per step
 * (collective over the world: the StepReports travel as protobuf bytes packed into int32 words
 * through the collectives library) and coord_finish once at the end (collective: the trace
 * buffers are sent to rank 0). Only rank 0 prints and writes files; other ranks print only
 * errors. The files go through runlog.h: steps.jsonl a whole line per step (a failed write warns
 * once and the run goes on without the log), the others replaced atomically; json-c escapes
 * the strings and writes non-finite numbers as null (RELIABILITY.md, "Full disk").
 *
 * Progress line (rank 0, every log_every steps, the first and the last):
 *   step 12/20 | loss 3.2101 | 5400 tok/s | comm 8% | idle 21% | ETA 4s
 * comm = summed communication seconds / summed step seconds over ranks (DP reduction, tied
 * embedding sum, norm, ZeRO gathers, and the tensor-parallel collectives inside forward and
 * backward, which steps.jsonl also gives alone as tp_comm_share); idle = the same for time blocked receiving from or
 * completing sends to a neighbour stage, plus the time waiting for the slowest rank at the previous
 * step's report gather (together: the pipeline bubble, (P-1)/(M+P-1) of the step for uniform
 * stages, and any imbalance).
 *
 * trace.json (trace_json.h): per rank a process "rank r (t t, stage s, replica d)" (pid r) with a
 * "compute" track (fwd, bwd, optim, checkpoint) and a "communication" track (send, recv,
 * allreduce), slices {"name": "fwd", "ph": "X", "pid": r, "tid": 0, "ts": us, "dur": us,
 * "args": {"step": k, "micro": j}} that strictly nest per track. Bucket all-reduces are "allreduce"
 * events with args.micro = the bucket index (in start order), from start to completion; the
 * remaining reductions after backward (tied wte, norm, ZeRO reduce-scatter) form one "allreduce"
 * event with micro = -1 that starts when the last bucket has completed. Opens in Perfetto /
 * chrome://tracing. At most COORD_TRACE_MAX_EVENTS per rank (env STRATA_TRACE_MAX_EVENTS); later
 * events are dropped.
 */
#ifndef STRATA_COORDINATOR_H
#define STRATA_COORDINATOR_H

#include <stddef.h>
#include <stdint.h>

#include "strata/coll.h"
#include "layout.h"
#include "simulate.h"
#include "step_hooks.h"
#include "strata_proto.h"

#define COORD_TRACE_MAX_EVENTS 200000


/* What the run reports need to know about the job. */
typedef struct {
  const layout_t *layout;
  strata_model_cfg_t model;
  strata_train_cfg_t train;   /* configuration (batch, seq_len, lr, schedule, zero, ...) */
  const char *out_dir;        /* run directory */
  const char *transport;      /* "mpi", "ofi:shm", ... */
  int64_t start_step;         /* first step of this invocation (0, or the resumed step) */
  int64_t total_steps;
  int log_every;              /* progress line period */
  int quiet;                  /* no progress lines */
  int append;                 /* append to steps.jsonl (resume) */
  double bucket_mb;
  const char *grad_dtype;     /* report.json: grad_dtype ("fp32", "bf16": --grad-dtype) */
  int sequence_parallel;      /* report.json: sequence_parallel */
  const char *recompute;      /* report.json: recompute ("none", "selective", "full") */
  const char *arch;           /* report.json: arch, the model family ("gpt", "llama"); NULL: none */
} coord_info_t;

typedef struct coord coord_t;

/* Collective over world. Rank 0 opens RUN/steps.jsonl. 0, or -1 with a message (every rank
 * learns of rank 0's failure: the verdict is broadcast). */
int coord_create(coll_comm_t *world, const coord_info_t *info, coord_t **out, char *err,
                 size_t errlen);
void coord_free(coord_t *c);

/* Seconds since the run's common origin (taken after a barrier in coord_create). */
double coord_now(const coord_t *c);

/* Converts a CLOCK_MONOTONIC time in seconds to coord_now's time base. */
double coord_from_mono(const coord_t *c, double mono_s);

/* Records an event [t0_s, t1_s) (coord_now times) of `kind` for micro-batch `micro` (-1: none). */
void coord_trace(coord_t *c, trace_kind_t kind, int micro, double t0_s, double t1_s);

/* Fills the trace entries of the runtime's hook table (step_hooks.h): the pipeline's slices go
 * to this coordinator's trace. */
void coord_step_hooks(coord_t *c, step_hooks_t *h);

/* Collective over world, once per step: gathers every rank's report to rank 0, which prints the
 * progress line and appends to steps.jsonl. step_s: this rank's step seconds; lr and grad_norm
 * as used in the update. On rank 0, *loss_out (may be NULL) receives the step's loss: the mean
 * over replicas of the last stages' losses. 0 or -1. */
int coord_step(coord_t *c, const strata_step_report_t *mine, double step_s, double lr,
               double grad_norm, double *loss_out, char *err, size_t errlen);

/* Records the validation loss over `tokens` held-out tokens after `step` (rank 0: a line of
 * RUN/val.jsonl; the latest is printed and written to report.json as val_loss and val_tokens;
 * NaN and 0 until set). */
void coord_set_val_loss(coord_t *c, int64_t step, double val_loss, int64_t tokens);

/* The simulated device of the run (sim_clock.h), rank 0. res (one simulated step, with events)
 * and the per-stage arrays must stay valid until coord_finish. With it set, the progress line
 * ends in "| sim 12.3 ms/step", steps.jsonl carries sim_step_s (max over ranks of the
 * StepReports' simulated_s), report.json sim_step_s, sim_tokens_per_s, sim_mfu, device and per
 * stage sim_compute_s / sim_comm_s / sim_idle_s / sim_optimizer_s, mem_model_bytes (the memory
 * model) and mem_alloc_bytes (what the run allocated, max over replicas), and trace.json a
 * second timeline per rank (pid 1000 + rank, "sim rN (DEVICE; steps A-B on the simulated clock)"):
 * the simulated step repeated back to back for the same steps as the real timeline (within
 * STRATA_TRACE_MAX_EVENTS per rank). */
typedef struct {
  const char *device;             /* profile name */
  double capacity_bytes;          /* device memory used for the fit check */
  const sim_result_t *res;        /* one step */
  const double *mem_model_bytes;  /* [pp] */
  const double *mem_alloc_bytes;  /* [pp] */
  const double *mem_act_bytes;    /* [pp] activations (micro-batches in flight + the model's
                                     scratch), measured; NULL: not reported */
} coord_sim_t;
void coord_set_sim(coord_t *c, const coord_sim_t *sim);
/* Collective over world, at the end: closes steps.jsonl, gathers the trace events and writes
 * trace.json, report.json and report.pb (rank 0). A trace.json that cannot be written warns
 * (report.json: "trace_written": false); report.json "steps_log_complete" says whether every
 * step reached steps.jsonl. -1 when the gather fails or report.json or report.pb cannot be
 * written (err names each file; the previous ones stay as they were), else 0. */
int coord_finish(coord_t *c, char *err, size_t errlen);

#endif /* STRATA_COORDINATOR_H */
