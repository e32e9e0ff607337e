/* memory_model.h -- per-rank device memory of a Strata job, and the fit check that stops a job
 * before training when a stage would not fit in the device's HBM (suggesting a layout that
 * would).
 *
 * Strata stores everything in fp32 (4 bytes per element), whatever compute dtype the
 * simulator's time model assumes. Per rank of stage s (P stages, D replicas, micro-batches of
 * b sequences of T tokens):
 *   parameters   4 * params(s)                         (layout_stage_params)
 *   gradients    4 * params(s)
 *   optimizer    8 * params(s)  (AdamW m and v)        ZeRO-1: 8 * ceil(params(s) / D)
 *   activations  4 * acts(s) * in_flight               in_flight: GPipe M, 1F1B min(M, P - s)
 *   workspace    4 * (7 b T C + T^2)   the backward scratch gpt2.c keeps once per rank: dres,
 *                dln, datty (b,T,C), dbig (b,T,4C), datt (T,T)
 *   comm         pipeline: 2 b T C * 4 (gradient send + receive buffers) when P > 1;
 *                data parallel: one gradient bucket (min(bucket, gradients)) when D > 1
 *                without ZeRO; ZeRO-1 (any D): the padded gradient and parameter buffers
 *                grad_sync.c keeps, 2 * 4 * D * ceil(params(s) / D) (no bucket);
 *                tied wte: V C * 4 exchange buffer on the first and last stage when P > 1
 *   kv cache     inference only: 2 * layers(s) * batch * ctx * C * 4
 * acts(s), in elements per micro-batch, as Strata's gpt2.c allocates them (gpt2_acts_t; llm.c's
 * list without preatt, attproj and fcproj, which gpt2.c does not keep):
 *   per layer: ln1 (b,T,C), ln1_mean, ln1_rstd (b,T), qkv (b,T,3C), att (b,H,T,T), atty (b,T,C),
 *              res2 (b,T,C), ln2 (b,T,C), ln2_mean, ln2_rstd (b,T), fch (b,T,4C),
 *              fch_gelu (b,T,4C), res3 (b,T,C)  =  16 bTC + 4 bT + bHT^2
 *   stage input: x0 (b,T,C) -- the embedding output on stage 0, the received activation elsewhere;
 *              tokens, targets (b,T) int32 copies
 *   head (last stage): lnf (b,T,C), lnf_mean, lnf_rstd (b,T), logits (b,T,V), lse (b,T),
 *              losses (b,T)
 * (gpt2.c rounds each buffer up for alignment; those few bytes are not counted.)
 */
#ifndef STRATA_MEMORY_MODEL_H
#define STRATA_MEMORY_MODEL_H

#include <stddef.h>

#include "device.h"
#include "layout.h"
#include "schedule.h"

#define MEM_ELEM_BYTES 4 /* fp32 storage */

typedef struct {
  double params_bytes;
  double grads_bytes;
  double optimizer_bytes;
  double activations_bytes; /* all micro-batches in flight */
  double workspace_bytes;
  double comm_bytes;
  double kv_cache_bytes; /* 0 in training */
  double total_bytes;
  int in_flight; /* micro-batches of activations kept */
} mem_stage_t;

/* Activation elements of one layer for b sequences of T tokens (16bTC + 4bT + bHT^2). */
double memory_layer_act_elems(const layout_model_t *m, int b, int T);
/* Activation elements of stage s for one micro-batch (layers + input + head). */
double memory_stage_act_elems(const layout_t *lay, int s);
/* KV cache bytes of `layers` layers for `batch` sequences of `ctx` tokens (fp32 K and V). */
double memory_kv_cache_bytes(const layout_model_t *m, int layers, int batch, int ctx);

/* Memory of one rank of stage s in training. bucket_bytes: the DP all-reduce bucket size. */
void memory_stage(const layout_t *lay, int s, sched_kind_t kind, int zero, double bucket_bytes,
                  mem_stage_t *out);
/* Largest stage total; *worst_stage receives its index (may be NULL). */
double memory_peak(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                   int *worst_stage);

/* A candidate layout found by memory_suggest. */
typedef struct {
  int pp, dp, micro, zero;
  sched_kind_t kind;
  double peak_bytes;
} mem_suggestion_t;

/* Searches layouts with the same world size and global batch (P dividing N and <= L, every M
 * dividing batch / D, GPipe and 1F1B, ZeRO 0 and 1; balanced stages) for the one that fits in
 * capacity_bytes with the fewest changes from the given layout (then the smallest peak).
 * Returns 0 and fills *out, or -1 if nothing fits. */
int memory_suggest(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                   double capacity_bytes, mem_suggestion_t *out);

/* The fit check: 0 if every stage fits in capacity_bytes; otherwise -1 and msg holds one
 * paragraph naming the stage, the bytes needed (with the breakdown) and available, and a
 * layout that would fit (or that none does at this node count). */
int memory_fit_check(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                     double capacity_bytes, char *msg, size_t msglen);

/* "12.3 GiB" style formatting into buf. */
const char *memory_format_bytes(double bytes, char *buf, size_t len);

#endif /* STRATA_MEMORY_MODEL_H */
