/* grad_sync.h -- gradient synchronisation of one pipeline stage's shard between its data-parallel
 * replicas, the tied-embedding sum between a replica's first and last stage, the global
 * gradient norm, and the optimizer update (plain or ZeRO-1).
 *
 * Buckets (ZeRO off). The shard's flat gradient buffer is cut into buckets while the backward
 * pass of the step's LAST micro-batch runs: the model's grad_ready callback (either family;
 * stage.h) reports each region of gradients as it becomes final (layer by layer, in decreasing offset order); consecutive
 * regions are merged into the open bucket, and as soon as the bucket holds at least
 * bucket_bytes (--bucket-mb, default GRAD_SYNC_BUCKET_MB_DEFAULT, env STRATA_BUCKET_MB) a
 * non-blocking all-reduce (COLL_AVG) of it starts in the stage's data-parallel group, so
 * reduction overlaps the rest of backward. Every later callback drives the in-flight
 * all-reduces forward (coll_test). Every replica of a stage has the same shard, hence the same
 * callbacks and the same bucket boundaries: the collectives are started in the same order.
 *
 * Tied embeddings (P > 1). Stage 0 and stage P-1 each hold wte. Its gradient is not bucketed:
 * after backward the two copies' gradients are summed over a 2-rank communicator per replica
 * (both ends then hold the same sum, as a single-stage model's wte gradient), then averaged
 * over the data-parallel group. Both copies then take identical AdamW steps.
 *
 * ZeRO-1. The gradients (padded to a multiple of D) are reduce-scattered over the
 * data-parallel group; each rank updates the 1/D slice [r*S, r*S + S) of the parameters with
 * AdamW moments for that slice only; the parameters are all-gathered afterwards.
 *
 * Gradient dtype. COLL_F32 reduces the fp32 gradients as they are. COLL_BF16 (--grad-dtype
 * bf16) rounds each bucket (or the ZeRO-padded shard) to bf16 (nearest even), reduces bf16
 * values over the DP group with 16-bit values on the wire (coll_comm_set_wire16 on dp: half the
 * bytes; each partial sum computed in fp32 and rounded to bf16, as NCCL does) and widens the
 * result back into the fp32 gradients, so the norm, clipping and AdamW stay fp32. The tied-wte
 * sum between the pipeline's ends stays fp32 (it is not data-parallel traffic). D == 1 moves
 * nothing and rounds nothing.
 *
 * Global norm. Each rank sums the squares of the gradients it owns -- the whole shard
 * (ZeRO off; the wte copy of the last stage excluded, so wte counts once) or its slice (ZeRO) --
 * and the sums are all-reduced over the `norm` communicator passed at creation (the replica's
 * ranks without ZeRO -- its pipeline, times its T tensor-parallel ranks -- since replicas are
 * identical after averaging; the world with ZeRO). With tensor parallelism (m->range.tp_size >
 * 1) each rank holds its own part of every split tensor, counted on that rank, and the whole of
 * every replicated tensor (gpt2_tensor_t.replicated), counted only on TP rank 0, so each
 * element of the model is counted once. Every rank derives the same clipping factor.
 *
 * Tensor parallelism changes nothing else here: dp is the DP group of (t, stage) and tied the
 * pair of stage 0 and stage P-1 with the same t (both hold the same vocabulary rows of wte).
 *
 * Usage per step:
 *    gpt2_zero_grad(m); ...pipeline: before the last micro-batch's backward grad_sync_arm(gs)...
 *    grad_sync_finish(gs, &ss, err, n);            // all gradients reduced; ss = global sum sq
 *    grad_sync_update(gs, &hp, lr, adamw_clip_scale(ss, hp.grad_clip), err, n);
 */
#ifndef STRATA_GRAD_SYNC_H
#define STRATA_GRAD_SYNC_H

#include <stddef.h>

#include "adamw.h"
#include "strata/coll.h"
#include "stage.h"
#include "step_hooks.h"

#define GRAD_SYNC_BUCKET_MB_DEFAULT 4.0 /* MiB per bucket; PyTorch DDP uses 25 (1 for the first) */

typedef struct grad_sync grad_sync_t;

/* Timing and traffic of the last step's synchronisation. */
typedef struct {
  double comm_s;       /* seconds blocked in grad_sync_finish / grad_sync_update collectives,
                          except wait_s */
  double wait_s;       /* seconds of grad_sync_finish spent waiting for the other stages to
                          end their backward (tied-wte handshake, the one-double norm
                          all-reduce): pipeline bubble, reported as idle */
  double first_start_s; /* monotonic time the first bucket's all-reduce started (0: none) */
  int buckets;         /* buckets all-reduced during backward */
} grad_sync_stats_t;

/* m: the stage's model (stage.h; copied, the model must outlive gs). dp: the data-parallel group of this shard (size D, may be 1); tied: the 2-rank {stage 0,
 * stage P-1} communicator of this replica (and TP rank), or NULL (P == 1, or a middle stage);
 * norm: the communicator the squared norms are summed over (see above). bucket_mb > 0. zero: 0 or 1.
 * grad_dtype: COLL_F32 or COLL_BF16 ("Gradient dtype" above; with COLL_BF16 and D > 1 this
 * sets dp's wire16). Installs the model's grad_ready callback. Returns 0, or -1 with a message. */
int grad_sync_create(const stage_model_t *m, coll_comm_t *dp, coll_comm_t *tied, coll_comm_t *norm,
                     double bucket_mb, int zero, coll_dtype_t grad_dtype, grad_sync_t **out, char *err,
                     size_t errlen);
void grad_sync_free(grad_sync_t *gs);

/* The simulated clock this gradient sync reports to (NULL: none); h must outlive gs. */
void grad_sync_set_hooks(grad_sync_t *gs, const step_hooks_t *h);

/* The optimizer state (moments of the slice this rank updates; the whole shard without ZeRO). */
adamw_t *grad_sync_optimizer(grad_sync_t *gs);

/* Call before the backward of the step's last micro-batch: from then on finished buckets are
 * all-reduced at once (no effect with ZeRO or D == 1). */
void grad_sync_arm(grad_sync_t *gs);

/* After the step's backward: completes the buckets, sums the tied wte copies, averages what is
 * left over the DP group (or reduce-scatters, ZeRO), and returns the GLOBAL sum of squares of
 * the gradient in *sumsq (the same on every rank). 0, or -1 with a message. */
int grad_sync_finish(grad_sync_t *gs, double *sumsq, char *err, size_t errlen);

/* AdamW on the covered range with learning rate lr and clip factor scale; with ZeRO then
 * all-gathers the parameters. 0, or -1 with a message. */
int grad_sync_update(grad_sync_t *gs, const adamw_hparams_t *hp, double lr, float scale, char *err,
                     size_t errlen);

/* ZeRO: gathers the full moments (num_params each) of the shard into exp_avg / exp_avg_sq on
 * every rank of the DP group (collective over dp). Without ZeRO copies them. 0 or -1. */
int grad_sync_gather_moments(grad_sync_t *gs, float *exp_avg, float *exp_avg_sq, char *err,
                             size_t errlen);
/* Sets the moments this rank covers from full-shard arrays (resume). */
void grad_sync_set_moments(grad_sync_t *gs, const float *exp_avg, const float *exp_avg_sq);

const grad_sync_stats_t *grad_sync_stats(const grad_sync_t *gs);

/* Start and completion times (CLOCK_MONOTONIC seconds) of the last finished step's bucket
 * all-reduces, in start order; returns their number. Completion is when a coll_test (during
 * backward) or the final wait saw it done. For the trace. */
int grad_sync_bucket_times(const grad_sync_t *gs, const double **t0_s, const double **t1_s);

/* Bytes this object allocates for the optimizer and communication: the AdamW moments of the
 * covered range (8 per element) plus, with ZeRO, the padded gradient and parameter buffers. */
size_t grad_sync_alloc_bytes(const grad_sync_t *gs);
#endif /* STRATA_GRAD_SYNC_H */
