/* simulate.h -- discrete-event simulation of one training step of a T x P x D layout on simulated
 * devices: no numerics, no data, one process. Used by `strata simulate` (what-if for models
 * and layouts far beyond this machine) and by `strata train` (the simulated clock beside the
 * measured one).
 *
 * Model (details and assumptions in worker/sim/SIMULATION.md):
 *  - Every rank runs its stage's schedule (schedule.h). FWD / BWD take the stage's roofline
 *    compute time per micro-batch on one tensor-parallel rank (1/T of the split ops) plus the
 *    tensor-parallel communication of its layers (the all-reduces, or with sequence parallelism
 *    reduce-scatters and all-gathers, inside every layer: exposed, the math waits for them),
 *    plus recomputation in backward. SEND_* go to the same tensor-parallel rank of the next /
 *    previous stage and are non-blocking: the message leaves when the rank's link in that
 *    direction is free, arrives latency + bytes / bandwidth later (the slowest link between
 *    the two TP groups, sim_pipe_link; device.h); RECV_* wait for the arrival. The T ranks of
 *    a stage have equal costs and equal links, so they run in lockstep (as their per-layer
 *    all-reduces force).
 *  - Gradients of a stage form regions in backward order (ln_f and the head, layers last to
 *    first, embeddings), grouped into buckets of >= bucket_bytes. With overlap, a bucket's
 *    all-reduce (ZeRO-1: reduce-scatter) in the stage's DP group starts when every replica has
 *    finished that bucket's part of its last backward, on a per-group communication timeline
 *    that runs beside compute; without overlap all buckets wait for the end of backward.
 *    ZeRO-1: no buckets; one reduce-scatter of the padded shard after backward (and after the
 *    tied exchange), as grad_sync.c does; with zero_overlap the buckets' reduce-scatters.
 *    ZeRO-2 and ZeRO-3 reduce-scatter every micro-batch's gradients inside its backward: their
 *    exposed and overlapped seconds are part of the pass's cost, and nothing is left for here.
 *  - P > 1: the two copies of the tied wte (first and last stage) exchange their gradients
 *    point-to-point after the buckets; without ZeRO and D > 1 the sum is then all-reduced in
 *    the DP group.
 *  - The global gradient norm: an 8-byte all-reduce over the replica's T x P ranks (its
 *    model-parallel group; ZeRO-1: all ranks) synchronises the group before the optimizer.
 *  - Then AdamW on the stage's parameters (ZeRO-1: a 1/D slice, followed by an all-gather of
 *    the parameters; with zero_overlap the all-gather runs beside the next step's forward, and
 *    the step grows by the most it delays any rank's forward: waiting, and sharing the
 *    device). The step ends when the last rank is done.
 * This (zero_overlap aside: Strata's own ZeRO-1 overlaps nothing) is exactly what the carried
 * clock of a real run (sim_clock.h) does, action by action, so both give the same step time.
 * Data-parallel groups are (stage, t): the D ranks holding the same shard.
 * Per-rank time splits into compute + tensor-parallel communication + pipeline idle + exposed
 * (data-parallel) communication + optimizer; the shares reported are means over ranks of each
 * part divided by the step time.
 */
#ifndef STRATA_SIMULATE_H
#define STRATA_SIMULATE_H

#include <stdio.h>

#include "device.h"
#include "layout.h"
#include "memory_model.h"
#include "schedule.h"

#define SIM_DEFAULT_BUCKET_MB 25.0 /* PyTorch DDP's bucket size; STRATA_BUCKET_MB / --bucket-mb */

#define SIM_NORM_BYTES 8.0 /* the gradient-norm all-reduce: one double (grad_sync.c) */

typedef struct {
  sched_kind_t kind;    /* GPipe or 1F1B */
  int vstages;          /* > 1: Megatron-LM's interleaved 1F1B, that many model chunks per stage
                           (needs kind 1F1B, P > 1, M a multiple of P and at least vstages
                           layers per stage); 1: none */
  int zero;             /* 0: all-reduce + full AdamW; 1: reduce-scatter, 1/D AdamW, all-gather;
                           MEM_ZERO_SHARD_GRADS (2): ZeRO-2 as DeepSpeed runs it, every
                           micro-batch's gradients reduce-scattered in buckets of bucket_bytes
                           during its backward (grad_shard_comm), then 1/D AdamW and the
                           all-gather; MEM_ZERO_FULL_SHARD (3): ZeRO-3 as PyTorch FSDP's FULL_SHARD runs it,
                           parameters, gradients and optimizer state split D ways, each layer's
                           parameters gathered for its forward and again for its backward and
                           its gradients reduce-scattered, every micro-batch (full_shard_comm) */
  int zero_overlap;     /* with zero 1: the reduce-scatter in buckets overlapping backward, as the
                           all-reduce's, and the all-gather overlapping the next step's forward
                           (Megatron-LM's distributed optimizer with --overlap-grad-reduce
                           --overlap-param-gather); 0: Strata's ZeRO-1, one reduce-scatter after
                           backward and the all-gather after AdamW */
  int overlap;          /* 1: bucket reduction overlaps the remaining backward */
  double bucket_bytes;  /* gradient bucket size, bytes */
  int bucket_given;     /* 1: bucket_bytes was asked for (STRATA_BUCKET_MB, --bucket-mb); 0 with
                           zero_overlap: Megatron-Core's buckets instead (sim_megatron_bucket) */
  device_dtype_t dtype; /* compute dtype: peak FLOP/s and op / activation element size */
  mem_accounting_t memory; /* memory_model.h: Strata's fp32 buffers (default) or mixed precision
                              in dtype */
  int record_events;    /* 1: fill sim_result_t.events (the simulated timeline) */
  int sequence_parallel; /* 1: Megatron's sequence parallelism (needs T > 1, ctx % T == 0) */
  mem_recompute_t recompute; /* activation recomputation: none, selective, full */
  mem_precision_t precision; /* training precision (optimizer time, gradient bytes, memory);
                                NONE: Strata's fp32 optimizer and gradients */
  int grad_bf16;             /* 1: the DP gradient reductions (buckets, ZeRO-1's reduce-scatter)
                                carry bf16, 2 bytes per gradient (--grad-dtype bf16, as strata
                                train's), and under the mixed accounting the gradient buffer is
                                bf16; 0 (default): the precision's gradient bytes */
  int fused_attention;       /* 1: flash-style attention (device attn_fused_eff, no T^2
                                traffic or scores kept); 0: unfused */
  int tp_overlap;            /* SIM_TP_OVERLAP_BACKWARD: the column-parallel backward as
                                Megatron-LM and NeuronX Distributed run it (simulate.c
                                col_backward_tp): SP re-gathers the input beside the
                                input-gradient GEMM and the input gradient's reduce-scatter
                                (all-reduce) runs beside the weight-gradient GEMM;
                                SIM_TP_OVERLAP_UB: that and, with SP, Transformer Engine's
                                userbuffers pipelining the other collectives with their GEMMs
                                (Megatron-LM --tp-comm-overlap); NONE (default): Strata's,
                                every TP collective exposed */
  int shard_group;           /* with zero MEM_ZERO_FULL_SHARD: the replicas a shard spans, S
                                dividing D (FSDP's HYBRID_SHARD: gathered and reduce-scattered
                                among S, each shard then all-reduced over the D / S groups, every
                                micro-batch); 0 (default): all D, FULL_SHARD */
  int interference;          /* 1 (default, and the carried clock of strata train): overlapped
                                DP buckets slow the backward they overlap by the device's
                                overlap_slowdown; 0: they do not */
} sim_options_t;

/* Optimizer bytes moved and FLOPs per parameter, and the gradient bytes per parameter the DP
 * collectives carry, under a precision (SIMULATION.md "Precision"). */
void sim_precision_costs(mem_precision_t p, double *opt_bytes, double *opt_flops,
                         double *grad_bytes);
/* Bytes of one model weight as the forward reads it, which ZeRO-1's parameter all-gather
 * carries: 2 under bf16, bf16-sr and fp8 (the bf16 copy that Megatron-LM's distributed
 * optimizer and DeepSpeed's ZeRO gather after the fp32 update; fp8 casts after the gather),
 * 4 under fp32 and Strata's own run. */
double sim_precision_weight_bytes(mem_precision_t p);

/* Defaults: 1F1B, ZeRO 0, overlap on, 25 MiB buckets (env STRATA_BUCKET_MB overrides, in MiB),
 * bf16 compute, Strata's memory accounting, no sequence parallelism, no recomputation. */
enum { SIM_TP_OVERLAP_NONE = 0, SIM_TP_OVERLAP_BACKWARD = 1, SIM_TP_OVERLAP_UB = 2 };
sim_options_t sim_options_default(void);

/* 1 when the DP buckets are Megatron-Core's (sim_megatron_bucket): ZeRO-1 with zero_overlap and
 * no bucket size asked for. */
int sim_megatron_buckets(const sim_options_t *o);
/* Megatron-Core's DDP buckets (distributed_data_parallel.py; training.py), in parameters, for
 * model chunk `chunk` (interleaved schedule; else 0) of pipeline stage `stage` with D replicas:
 * max(40M, 1M x D) for the first chunk of the first stage ("large enough to remain
 * bandwidth-bound"), unbounded (one bucket) on later stages and later chunks, whose reduction
 * overlaps compute anyway. */
double sim_megatron_bucket(int stage, int chunk, int D);
/* The memory model's options for a simulation's (schedule, ZeRO, bucket, SP, recompute, dtype). */
mem_options_t sim_mem_options(const sim_options_t *opt);
/* Checks tensor parallelism against the model: T divides the heads; sequence parallelism
 * needs T > 1 and a sequence length divisible by T. 0, or -1 with one sentence naming the
 * numbers and the fix. */
int sim_check_tp(const layout_model_t *m, int tp, int sequence_parallel, char *err, size_t errlen);
/* sim_check_tp on the layout's T and a valid recomputation. 0, or -1 with one sentence. */
int sim_check_options(const layout_t *lay, const sim_options_t *opt, char *err, size_t errlen);
/* The link a pipeline message from `rank` to `peer` (the same TP rank of a neighbouring stage)
 * is charged: the slowest (highest latency, lowest bandwidth) of the T pairs of the two
 * tensor-parallel groups, which move their messages together (device_link when T = 1). */
void sim_pipe_link(const layout_t *lay, const device_t *dev, int rank, int peer, double *lat_s,
                   double *Bps);
/* 1 and a sentence in msg when some tensor-parallel group of the layout leaves the fast
 * intra-instance link (T larger than, or not dividing, the device's chips per instance), naming
 * the slower link and its figures; 0 otherwise. A warning, not an error. */
int sim_tp_link_note(const layout_t *lay, const device_t *dev, char *msg, size_t len);
/* Megatron's FLOPs of one step (Narayanan et al. SC21) for the global batch B, s = ctx,
 * l = layers, h = dim, V = vocab: 72 B s l h^2 (1 + s/(6h) + V/(12 l h)); with full
 * recomputation 96 B s l h^2 (1 + s/(6h) + V/(16 l h)); selective adds one forward of the
 * attention matmuls, 4 B s^2 l h. Reported beside the simulator's own counts for comparison
 * (the dense formula counts the full, not the causal, attention and no elementwise ops). */
double sim_narayanan_flops(const layout_t *lay, mem_recompute_t rc);
/* The simulator's FLOPs of one step at T = 1 (the model's work, whatever the layout):
 * sum over stages of layout_stage_train_flops x M x D, plus with recomputation, per layer
 * and micro-batch, the attention op's forward (selective) or the whole layer forward (full).
 * rc = NONE: the model FLOPs MFU counts; else the hardware FLOPs HFU counts. */
double sim_step_flops(const layout_t *lay, mem_recompute_t rc);

/* A gradient region: `bytes` of gradients final `ready_s` after the stage's last backward
 * starts. Regions are listed in the order gpt2.c reports them (its grad_ready callback: ln_f,
 * layers last to first, wpe, wte), so that the simulated buckets are the real ones. */
typedef struct {
  double bytes;
  double ready_s;
  int skip; /* 1: not bucketed (the tied wte when P > 1: summed first <-> last, then reduced) */
  int brk;  /* 1: not contiguous with the next region in memory: the open bucket is started
               when the next region is reported (grad_sync.c's rule) */
} sim_region_t;

/* What the simulation needs to know of a stage (per rank of that stage). */
typedef struct {
  double fwd_s, bwd_s;         /* time of one micro-batch: compute, TP communication and (bwd)
                                  recomputation */
  double fwd_tp_s, bwd_tp_s;   /* the tensor-parallel communication inside fwd_s / bwd_s */
  double fwd_dp_s, bwd_dp_s;   /* ZeRO-3: the exposed part of the layers' parameter gathers and
                                  gradient reduce-scatters inside fwd_s / bwd_s (0 otherwise) */
  double fwd_flops, bwd_flops; /* FLOPs one rank executes per micro-batch (the op counts;
                                  bwd includes recomputation) */
  double act_bytes;            /* activation (and its gradient) message size */
  double opt_s;                /* optimizer step time (already divided for ZeRO-1) */
  double param_bytes;          /* ZeRO-1: the padded shard's gradients, E ceil(params/D) D bytes
                                  (the reduce-scatter; E the gradient bytes); else E params */
  double gather_bytes;         /* ZeRO-1: the padded shard's parameters all-gathered after the
                                  update (the precision's bytes per element, also with
                                  grad_bf16) */
  double tied_bytes;           /* wte gradient bytes exchanged first <-> last stage (0: none);
                                  with D > 1 and no ZeRO then all-reduced in the DP group */
  int nregions;
  sim_region_t *regions; /* backward order; bytes sum to the stage's gradients */
} sim_stage_cost_t;

/* One op as sim_build_costs times it, on one rank for one micro-batch (--explain's table). */
typedef struct {
  const char *name;  /* the op list's name: "qkv", "attention", "gelu", "logits", ... */
  const char *part;  /* "layer" (each transformer layer), "embedding" or "head" */
  double fwd_s;      /* forward seconds */
  double bwd_s;      /* backward seconds (twice the forward's work; 2.5x a fused attention's) */
  double flops;      /* forward FLOPs */
  double bytes;      /* forward bytes read and written */
  int recomputed;    /* 1: backward runs the forward again first (the options' recompute) */
} sim_op_time_t;

/* The ops of a layer, the embedding and the head in that order (at most max); returns the count.
 * Their times are the ones sim_build_costs adds up (before TP communication and overlaps). */
int sim_op_times(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                 sim_op_time_t *out, int max);

/* Builds costs[0..P) for the layout on the device (free with sim_costs_free). 0 ok, -1 OOM. */
int sim_build_costs(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                    sim_stage_cost_t **costs);
void sim_costs_free(sim_stage_cost_t *costs, int pp);

typedef struct {
  double fwd_s, bwd_s;   /* one micro-batch (TP communication included) */
  double fwd_tp_s, bwd_tp_s; /* the TP communication of one micro-batch */
  double compute_s;      /* mean over the stage's ranks (the math; TP communication apart) */
  double tp_comm_s;      /* tensor-parallel communication per rank and step (exposed) */
  double idle_s;         /* pipeline idle (waiting for neighbours or the slowest rank) */
  double exposed_comm_s; /* waiting for DP reduction / tied exchange / all-gather */
  double comm_busy_s;    /* time the DP group's collectives ran (overlapped or not) */
  double optimizer_s;
  mem_stage_t mem; /* memory per rank of the stage */
} sim_stage_result_t;

/* One interval of the simulated timeline (recorded with opt.record_events). */
typedef enum {
  SIM_EV_FWD = 0,   /* forward of a micro-batch */
  SIM_EV_BWD,       /* backward of a micro-batch */
  SIM_EV_SEND_ACT,  /* activation on the wire to stage + 1 (start .. arrival) */
  SIM_EV_SEND_GRAD, /* gradient on the wire to stage - 1 */
  SIM_EV_DP_REDUCE, /* one bucket's all-reduce (ZeRO-1: reduce-scatter) in the DP group */
  SIM_EV_TIED,      /* wte gradient exchange between the first and last stage */
  SIM_EV_OPTIMIZER, /* AdamW */
  SIM_EV_ALLGATHER, /* ZeRO-1 parameter all-gather */
} sim_event_kind_t;

typedef struct {
  int rank;
  sim_event_kind_t kind;
  int micro;      /* micro-batch (FWD, BWD, SEND_*), bucket index (DP_REDUCE), else -1 */
  double start_s; /* from the start of the step */
  double end_s;
  int chunk;      /* the interleaved schedule's model chunk (FWD, BWD, SEND_*), else -1 */
} sim_event_t;

const char *sim_event_name(sim_event_kind_t k); /* "fwd", "bwd", "send_act", ... */

typedef struct {
  double step_s;
  double tokens_per_s;
  double model_flops; /* the model's FLOPs of one step (sim_step_flops, no recomputation) */
  double hw_flops;    /* the same counting recomputation (sim_step_flops with opt.recompute) */
  double narayanan_flops; /* Megatron's formula for comparison (sim_narayanan_flops, none) */
  double op_flops;    /* the simulator's op counts summed over all ranks (causal attention,
                         elementwise ops, TP-replicated work, recomputation) */
  double mfu;         /* model_flops / (step_s * N * peak[dtype]) */
  double hfu;         /* hw_flops / (step_s * N * peak[dtype]) */
  double compute_share, tp_comm_share, pipeline_idle_share, exposed_comm_share, optimizer_share;
  double peak_mem_bytes; /* largest stage total */
  int worst_stage;       /* stage with peak_mem_bytes */
  int fits;              /* peak_mem_bytes <= capacity used */
  int pp, tp;
  sim_stage_result_t *stages; /* [pp]; free with sim_result_free */
  sim_event_t *events;        /* [nevents] when opt.record_events, else NULL */
  int nevents;
} sim_result_t;

/* Runs the event simulation with given costs (tests build costs by hand). Memory fields are
 * left zero. 0 ok, -1 on error (deadlocked schedule, OOM) with a message in err. */
int sim_run(const layout_t *lay, const device_t *dev, const sim_stage_cost_t *costs,
            const sim_options_t *opt, sim_result_t *res, char *err, size_t errlen);

/* sim_check_options + costs from the model + sim_run + memory per stage (sim_mem_options) and
 * the fit against capacity_bytes (pass dev->hbm_bytes, or the --device-mem override). */
int sim_simulate(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                 double capacity_bytes, sim_result_t *res, char *err, size_t errlen);

/* The step's five shares in sim_print_explain's order (compute, tensor-parallel communication,
 * pipeline bubble, exposed data-parallel communication, optimizer); shares are differences of
 * times, so a rounding residue below zero reads as 0. */
enum {
  SIM_SHARE_COMPUTE,
  SIM_SHARE_TP,
  SIM_SHARE_BUBBLE,
  SIM_SHARE_DP,
  SIM_SHARE_OPTIMIZER,
  SIM_NSHARES
};
void sim_result_shares(const sim_result_t *r, double shares[SIM_NSHARES]);

void sim_result_free(sim_result_t *res);

/* Writes res->events as Chrome trace events (the JSON array form, opens in Perfetto /
 * chrome://tracing): one process `pid` named `label`, per rank one track for compute and one
 * for communication ("r3 compute", "r3 comm"; with T > 1 "r3 (t1 p1 d0) compute"); a FWD/BWD
 * slice includes its tensor-parallel communication; times in microseconds. 0 ok, -1 on write
 * error. */
int sim_write_chrome_trace(const sim_result_t *res, FILE *f, int pid, const char *label);

#endif /* STRATA_SIMULATE_H */
