/* pipeline.h -- executes one pipeline stage's share of a training step: the schedule's actions
 * (schedule.h) over the stage's model shard, with activations and their gradients travelling
 * to the neighbour stages through the collectives library. The shard is a stage_model_t
 * (stage.h): a GPT-2 shard or a Llama stage, driven through its family's table of calls.
 *
 * Buffers. A stage keeps K = schedule_max_in_flight(...) micro-batches of activations
 * (the family's activations), micro-batch j in slot j % K (forwards and backwards both run in micro-batch
 * order, so the live micro-batches are always K consecutive ones). Received activations and
 * received output gradients go to one buffer each (the model copies them in at once); the input
 * gradient sent back to stage - 1 has a buffer per slot. A message is the residual stream of
 * one micro-batch, stream_rows(model, mb, T) rows of C floats: all mb x T rows, or with
 * tensor-parallel sequence parallelism this TP rank's 1/T of them. With tensor parallelism the
 * pipeline communicator joins the same TP rank t of every stage, so t talks to t.
 *
 * Execution rule (schedule.h): receives block (coll_recv, bounded by the library's timeout);
 * sends are coll_isend and are completed before their buffer is reused and at the end of the
 * step. Time blocked in a receive, or completing a send (the neighbour has not taken the
 * message yet because it is busy with other micro-batches), is the stage's idle time: the
 * pipeline bubble. Forward and backward are compute.
 *
 * Loss scale: every micro-batch's loss gradient is scaled by 1/M, so the accumulated gradient
 * is that of the mean loss over the replica's M micro-batches. Before the backward of the last
 * micro-batch (M-1, the last BWD of every stage under both schedules) grad_sync_arm starts the
 * bucketed data-parallel all-reduce.
 */
#ifndef STRATA_PIPELINE_H
#define STRATA_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "strata/coll.h"
#include "stage.h"
#include "grad_sync.h"
#include "schedule.h"
#include "step_hooks.h"

typedef struct pipeline pipeline_t;

typedef struct {
  double compute_s; /* forward + backward seconds */
  double idle_s;    /* seconds blocked receiving from / completing sends to a neighbour */
  double comm_s;    /* other communication seconds (0 here; kept for the report's sum) */
  double loss_sum;  /* sum of the micro-batch losses (last stage) */
  int n_loss;       /* micro-batches whose loss is in loss_sum */
} pipeline_stats_t;

/* sm: the stage's model (copied; the model must outlive the pipeline). pipe: the replica's
 * pipeline group, ordered by stage (rank = stage). M micro-batches of mb sequences of T tokens.
 * 0, or -1 with a message. */
int pipeline_create(const stage_model_t *sm, coll_comm_t *pipe, sched_kind_t kind, int M, int mb, int T,
                    pipeline_t **out, char *err, size_t errlen);
void pipeline_free(pipeline_t *pl);

/* Runs one step's schedule. tokens (M*mb, T) is used on stage 0, targets (M*mb, T) on the last
 * stage (micro-batch j = rows [j*mb, j*mb + mb)). gs may be NULL (no data parallelism).
 * Gradients accumulate into the model's grads (zero them before). Fills *st. */
int pipeline_step(pipeline_t *pl, const int32_t *tokens, const int32_t *targets, grad_sync_t *gs,
                  pipeline_stats_t *st, char *err, size_t errlen);

/* The trace and the simulated clock this pipeline reports to (NULL: none); h must outlive pl. */
void pipeline_set_hooks(pipeline_t *pl, const step_hooks_t *h);

/* Forward only (evaluation) of one micro-batch of mb sequences through the pipeline: stage 0
 * embeds tokens (mb, T), each stage forwards and sends on (blocking: a chain cannot deadlock),
 * the last stage sums the per-position losses against targets (mb, T) of the first `rows`
 * sequences (0 <= rows <= mb; the rest are padding) into *loss_sum, in double (0 elsewhere).
 * Uses activation slot 0; call between training steps. 0, or -1 with a message. */
int pipeline_eval(pipeline_t *pl, const int32_t *tokens, const int32_t *targets, int rows,
                  double *loss_sum, char *err, size_t errlen);

/* Bytes of activation storage this stage holds (all slots and message buffers). */
size_t pipeline_act_bytes(const pipeline_t *pl);
/* The activations of the K micro-batches in flight alone (acts_bytes of every slot, in the
 * model's recompute mode); add the model's scratch_bytes for the stage's activation peak. */
size_t pipeline_acts_in_flight_bytes(const pipeline_t *pl);

#endif /* STRATA_PIPELINE_H */
