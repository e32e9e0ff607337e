/* memory_model.h -- per-rank device memory of a Strata job (T tensor-parallel x P stages x D
 * replicas), and the fit check that stops a job before training when a stage would not fit in
 * the device's HBM (suggesting a layout that would).
 *
 * Two accountings (mem_options_t.accounting):
 *
 * MEM_ACCOUNT_STRATA (the default) -- what Strata itself allocates: gpt2.c stores everything in
 * fp32, whatever the compute dtype (`strata train`; `strata simulate`, `--memory strata`). Per rank of stage s (micro-batches of b sequences of T
 * tokens, t = tensor-parallel ranks, r = t with sequence parallelism else 1):
 *   parameters   4 * params(s)      params(s) = layout_rank_params: 1/t of the split matrices
 *   gradients    4 * params(s)
 *   optimizer    8 * params(s)  (AdamW m and v)        ZeRO-1: 8 * ceil(params(s) / D)
 *   activations  4 * acts(s) * in_flight / V           in_flight: GPipe M, 1F1B min(M, P - s),
 *                interleaved 1F1B with V chunks (vstages) schedule_in_flight_interleaved's chunk
 *                micro-batches, 1/V of the stage's each (V = 1 otherwise)
 *   workspace    4 * ((2/r + 5/t) b T C + T^2)   the backward scratch gpt2.c keeps once per
 *                rank: dres, dln (b,T,C; replicated), datty (b,T,C), dbig (b,T,4C), datt (T,T);
 *                + selective recomputation: one layer's att (b,H/t,T,T) (selective-mlp: and its
 *                fch, fch_gelu); + full recomputation:
 *                one layer's activations (the layer being recomputed), and on the last
 *                stage ln_f and the logits slice, which full recomputation re-runs for one
 *                micro-batch at a time instead of keeping them per micro-batch
 *   comm         pipeline: 2 b T C / r * 4 (gradient send + receive buffers) when P > 1;
 *                data parallel: one gradient bucket (min(bucket, gradients)) when D > 1
 *                without ZeRO; ZeRO-1 (any D): the padded gradient and parameter buffers
 *                grad_sync.c keeps, 2 * 4 * D * ceil(params(s) / D) (no bucket);
 *                tied wte: Vp C / t * 4 exchange buffer on the first and last stage when P > 1
 *   kv cache     inference only: 2 * layers(s) * batch * ctx * C * 4
 * acts(s), in elements per micro-batch, as Strata's gpt2.c allocates them (gpt2_acts_t; llm.c's
 * list without preatt, attproj and fcproj, which gpt2.c does not keep), split the way
 * Megatron-LM splits them over t ranks:
 *   per layer: ln1 (b,T,C), ln1_mean, ln1_rstd (b,T), res2 (b,T,C), ln2 (b,T,C), ln2_mean,
 *              ln2_rstd (b,T), res3 (b,T,C) -- replicated, 1/t with sequence parallelism;
 *              qkv (b,T,3C), att (b,H,T,T), atty (b,T,C), fch (b,T,4C), fch_gelu (b,T,4C) --
 *              1/t (whole heads, column-parallel outputs)
 *              = (4/r + 12/t) bTC + 4bT/r + bHT^2/t  (16 bTC + 4 bT + bHT^2 when t = 1);
 *              selective recomputation drops att, selective-mlp also fch and fch_gelu;
 *              full recomputation keeps the layer input bTC/r only
 *   stage input: x0 (b,T,C)/r -- the embedding output on stage 0, the received activation
 *              elsewhere; tokens, targets (b,T) int32 copies
 *   head (last stage): lnf (b,T,C)/r, lnf_mean, lnf_rstd (b,T)/r, logits (b,T,Vp/t), lse (b,T),
 *              losses (b,T)
 * (gpt2.c rounds each buffer up for alignment; those few bytes are not counted.)
 *
 * MEM_ACCOUNT_MIXED (`strata simulate --memory mixed`) -- Megatron-LM-style mixed precision in
 * the compute dtype (what a production run on the simulated devices keeps): parameters 2 (bf16) + gradients 2 + optimizer 12 (fp32 master copy 4, Adam
 * moments 8; ZeRO-1: 12 ceil(params / D)) bytes per parameter (the ZeRO paper's 16); activations
 * per layer from Korthikanti et al. 2022, Table 2 (bytes for 2-byte activations, scaled by
 * sizeof(dtype) / 2), s = T, h = C, a = H:
 *   none       sbh (10 + 24/t + 5as/(ht))    (t = 1: sbh (34 + 5as/h))
 *   + SP       sbh (34/t + 5as/(ht))
 *   selective  the 5as/(ht) term dropped     (TP + SP + selective: sbh 34/t)
 *   selective-mlp  and the MLP's 16 sbh/t (Llama: gate, up, product 6F/h sbh/t) too
 *   full       2sbh (the layer input; 2sbh/t with SP, whose input is sequence-split)
 * plus on the last stage ln_f and the fp32 logits, 4sbh/r + 4sbVp/t (Korthikanti et al. 4.3;
 * with full recomputation only the fp32 log-sum-exp and loss per position, 8sb, and the rest
 * in the workspace);
 * workspace: the backward scratch above in the dtype, + one layer's scores (selective; and its
 * MLP activations with selective-mlp) or one layer's activations (full); comm: pipeline buffers 2 sbh/r in the dtype, the tied wte
 * exchange 2 Vp C / t, the DP bucket without ZeRO (ZeRO-1 reduce-scatters in place).
 *
 * How the two relate, per layer at t = 1: Korthikanti et al. count sbh (34 + 5as/h) bytes of
 * 16-bit activations (11 sbh for attention without the scores, 19 sbh for the MLP, 4 sbh for
 * the LayerNorms; 1-byte dropout masks, the scores 2as^2b and their softmax and dropout
 * 3as^2b). Strata's gpt2.c keeps 16 bTC + 4 bT + bHT^2 fp32 elements = 64 sbh + 16 sb + 4 as^2b
 * bytes: no dropout (no masks), only the post-softmax scores (not preatt), no copies of the
 * projections' outputs, but every element 4 bytes -- about 1.9x the linear term and 0.8x the
 * scores term. Under tensor parallelism both split the same tensors (the qkv, attention, fc
 * and GELU outputs 1/t; the LayerNorm and residual region replicated, 1/t with sequence
 * parallelism): Strata's fp32 linear term (4/r + 12/t) bTC against Korthikanti's (10 + 24/t)
 * sbh / 2 or 34/t sbh / 2 in elements.
 */
#ifndef STRATA_MEMORY_MODEL_H
#define STRATA_MEMORY_MODEL_H

#include <stddef.h>

#include "device.h"
#include "layout.h"
#include "schedule.h"

#define MEM_ELEM_BYTES 4 /* fp32 storage */

/* Activation recomputation, in increasing amount (Korthikanti et al. 2022): none; selective (the
 * attention scores and softmax are recomputed in backward, not kept); selective-mlp (the same
 * and the MLP, from its input: NeuronX Distributed's recomputation of CoreAttention and the MLP
 * module, whose forward collectives run again); full (only each layer's input is kept, the
 * whole layer forward is run again in backward). */
typedef enum {
  MEM_RECOMPUTE_NONE = 0,
  MEM_RECOMPUTE_SELECTIVE = 1,
  MEM_RECOMPUTE_SELECTIVE_MLP = 2,
  MEM_RECOMPUTE_FULL = 3
} mem_recompute_t;
#define MEM_RECOMPUTE_COUNT 4
/* "none", "selective", "selective-mlp", "full" */
const char *memory_recompute_name(mem_recompute_t r);
int memory_parse_recompute(const char *s, mem_recompute_t *out); /* 0, or -1 if unknown */
/* The names above as one phrase, for error messages (test sim_tp checks it lists each). */
#define MEM_RECOMPUTE_CHOICES "none, selective, selective-mlp or full"

/* Which bytes are counted (the header above). */
typedef enum { MEM_ACCOUNT_STRATA = 0, MEM_ACCOUNT_MIXED = 1 } mem_accounting_t;
const char *memory_accounting_name(mem_accounting_t a); /* "strata", "mixed" */
int memory_parse_accounting(const char *s, mem_accounting_t *out); /* 0, or -1 if unknown */

/* Training precision (`--precision`; SIMULATION.md "Precision"), bytes per parameter in the
 * mixed accounting: FP32 -- fp32 weights 4, gradients 4, Adam m and v 8; BF16 -- bf16 compute
 * with fp32 master weights: bf16 weights 2, fp32 gradients 4 (Megatron-LM accumulates and
 * all-reduces bf16 gradients in fp32), master weights and Adam moments 12 (Megatron-LM's
 * distributed-optimizer table: 18 bytes); BF16_SR -- Neuron's bf16 with stochastic rounding:
 * weights 2, gradients 2, Adam moments in bf16 4, no master copy. NONE: the accounting's own
 * (fp32 buffers, or mixed's 2 + 2 + 12). */
typedef enum { MEM_PREC_NONE = 0, MEM_PREC_FP32, MEM_PREC_BF16, MEM_PREC_BF16_SR, MEM_PREC_FP8 } mem_precision_t;
const char *memory_precision_name(mem_precision_t p); /* "none", "fp32", "bf16", "bf16-sr", "fp8" */
/* What strata train runs: fp32, bf16 or bf16-sr. 0, or -1 if unknown. */
int memory_parse_precision(const char *s, mem_precision_t *out);
#define MEM_PRECISION_CHOICES "fp32, bf16 or bf16-sr" /* what --precision accepts (sim_tp checks) */
/* What strata simulate accounts: those and FP8 -- bf16 mixed precision whose transformer-layer
 * GEMMs run in FP8 (Transformer Engine's recipe: E4M3 forward, E5M2 gradients), fp32 master
 * weights and Adam moments as BF16, plus two FP8 copies of each layer weight the GEMMs read, kept
 * across the step's micro-batches (Transformer Engine's weight workspace in training: the
 * row-wise cast for the forward and its transpose for the input gradient): weights 2 (+ 2 per
 * layer parameter), gradients 4, optimizer 12; the activations each FP8 GEMM keeps for its weight
 * gradient (its input) are its 1-byte FP8 copy. */
#define MEM_FP8_WEIGHT_COPY_BYTES 2.0
int memory_parse_sim_precision(const char *s, mem_precision_t *out);
#define MEM_SIM_PRECISION_CHOICES "fp32, bf16, bf16-sr or fp8"
/* Bytes per parameter of the weights, the gradients and the optimizer state under p. */
void memory_precision_bytes(mem_precision_t p, double *weights, double *grads, double *optimizer);

/* mem_options_t.zero (and sim_options_t.zero) for ZeRO-2 as DeepSpeed runs it (the optimizer
 * state and the gradients split D ways, the parameters whole) and for ZeRO-3 as PyTorch FSDP's
 * FULL_SHARD runs it (the parameters split too). */
#define MEM_ZERO_SHARD_GRADS 2
#define MEM_ZERO_FULL_SHARD 3

/* What the memory of a layout depends on besides the layout itself. */
typedef struct {
  sched_kind_t kind;         /* GPipe or 1F1B (micro-batches in flight) */
  int zero;                  /* 0; 1: ZeRO-1, the optimizer state split D ways;
                                MEM_ZERO_SHARD_GRADS: ZeRO-2, the gradients too, plus one
                                reduction bucket (bucket_bytes) whole;
                                MEM_ZERO_FULL_SHARD: ZeRO-3 (FSDP FULL_SHARD), the parameters and
                                gradients too, with two layers' parameters whole at a time (the
                                one computing and the one prefetched) and one layer's gradients */
  double bucket_bytes;       /* the DP all-reduce bucket size */
  int sequence_parallel;     /* 1: LayerNorm / residual regions split over the t ranks (t > 1) */
  mem_recompute_t recompute;
  mem_accounting_t accounting; /* Strata's fp32 buffers (default) or mixed precision */
  device_dtype_t dtype;      /* mixed precision: the activations' element type */
  mem_precision_t precision; /* mixed accounting: bytes per parameter (NONE: 2 + 2 + 12) */
  int fused_attention;       /* mixed: 1 = flash-style attention keeps no (B, H, T, T) scores */
  int vstages;               /* > 1: interleaved 1F1B with that many chunks per stage (each
                                in-flight chunk micro-batch keeps 1/vstages of the stage's) */
  int grad_bf16;             /* mixed: the gradient buffer in bf16, 2 bytes per parameter
                                (--grad-dtype bf16: Megatron-LM without fp32 gradient
                                accumulation, NeMo's grad_sync_dtype bf16) */
  int shard_group;           /* ZeRO-3: the replicas a shard is split over (FSDP HYBRID_SHARD:
                                S dividing D, the states split S ways and replicated D / S times);
                                0: all D (FULL_SHARD) */
} mem_options_t;
/* The replicas the sharded states of o are split over: o's shard group under ZeRO-3 when one is
 * set and divides D, else D. */
int memory_shard_ranks(const layout_t *lay, const mem_options_t *o);
/* Strata's run: Strata's fp32 accounting, no sequence parallelism, no recomputation. */
mem_options_t memory_options(sched_kind_t kind, int zero, double bucket_bytes);

typedef struct {
  double params_bytes;
  double grads_bytes;
  double optimizer_bytes;
  double activations_bytes; /* all micro-batches in flight */
  double workspace_bytes;
  double comm_bytes;
  double kv_cache_bytes; /* 0 in training */
  double total_bytes;
  int in_flight; /* micro-batches of activations kept (interleaved: chunk micro-batches) */
} mem_stage_t;

/* Activation elements of one layer for b sequences of T tokens (16bTC + 4bT + bHT^2). */
double memory_layer_act_elems(const layout_model_t *m, int b, int T);
/* The same on one of tp tensor-parallel ranks, fp32 accounting (formula above). */
double memory_layer_act_elems_tp(const layout_model_t *m, int b, int T, int tp, int sp,
                                 mem_recompute_t rc);
/* Korthikanti et al.'s activation bytes of one layer on one of tp ranks (2-byte activations;
 * Table 2 of the paper). */
double memory_layer_act_bytes_mixed(const layout_model_t *m, int b, int T, int tp, int sp,
                                    mem_recompute_t rc);
/* Activation elements of stage s for one micro-batch (layers + input + head), fp32 accounting,
 * on one tensor-parallel rank, no sequence parallelism or recomputation. */
double memory_stage_act_elems(const layout_t *lay, int s);
/* Activation bytes of stage s for one micro-batch on one rank, in the accounting of o. */
double memory_stage_act_bytes(const layout_t *lay, int s, const mem_options_t *o);
/* KV cache bytes of `layers` layers for `batch` sequences of `ctx` tokens (fp32 K and V). */
double memory_kv_cache_bytes(const layout_model_t *m, int layers, int batch, int ctx);

/* Memory of one rank of stage s in training. memory_stage is memory_stage_opt with
 * memory_options(kind, zero, bucket_bytes) (Strata's fp32 run). */
void memory_stage_opt(const layout_t *lay, int s, const mem_options_t *o, mem_stage_t *out);
void memory_stage(const layout_t *lay, int s, sched_kind_t kind, int zero, double bucket_bytes,
                  mem_stage_t *out);
/* Largest stage total; *worst_stage receives its index (may be NULL). */
double memory_peak_opt(const layout_t *lay, const mem_options_t *o, int *worst_stage);
double memory_peak(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                   int *worst_stage);

/* A candidate layout found by memory_suggest. */
typedef struct {
  int tp, pp, dp, micro, zero;
  sched_kind_t kind;
  int sequence_parallel;
  mem_recompute_t recompute;
  double peak_bytes;
} mem_suggestion_t;

/* Where memory_suggest looks. */
typedef struct {
  int max_tp;              /* largest T preferred (a device instance's chips); 0: any */
  int vary_sp_recompute;   /* 1: also try sequence parallelism on/off and every recomputation;
                              0: keep the requested ones */
} mem_search_t;

/* Searches layouts with the same world size and global batch (T dividing the heads and N;
 * P dividing N / T and <= L; every M dividing batch / D; GPipe and 1F1B; ZeRO 0 and 1;
 * balanced stages) in tiers, the least disruptive first, and returns the first tier's best:
 *   1. the job's own T, its sequence parallelism and recomputation;
 *   2. (vary_sp_recompute) the job's own T, sequence parallelism on/off, every recomputation;
 *   3. every T <= max_tp (the same variations) -- so a T = 1 job gets a TP-free layout when
 *      one fits and a tensor-parallel one only when none does;
 *   4. (max_tp > 0) any T, tensor-parallel groups spanning instances.
 * Within a tier: the fewest changes from the given layout, then the closest T, P and M and
 * the least recomputation, then the smallest peak. Returns 0 and fills *out, or -1 if nothing
 * fits. memory_suggest: Strata's fp32 run, search NULL (any T, no SP / recomputation). */
int memory_suggest_opt(const layout_t *lay, const mem_options_t *o, const mem_search_t *search,
                       double capacity_bytes, mem_suggestion_t *out);
int memory_suggest(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                   double capacity_bytes, mem_suggestion_t *out);

/* The fit check: 0 if every stage fits in capacity_bytes; otherwise -1 and msg holds one
 * paragraph naming the stage, the bytes needed (with the breakdown) and available, and a
 * layout that would fit (or that none does at this node count). */
int memory_fit_check_opt(const layout_t *lay, const mem_options_t *o, const mem_search_t *search,
                         double capacity_bytes, char *msg, size_t msglen);
int memory_fit_check(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                     double capacity_bytes, char *msg, size_t msglen);

/* "12.3 GiB" style formatting into buf. */
const char *memory_format_bytes(double bytes, char *buf, size_t len);

#endif /* STRATA_MEMORY_MODEL_H */
