/* schedule.h -- the pipeline schedule of one training step: for each stage, the ordered list of
 * actions (forward / backward of a micro-batch, and the sends and receives to its neighbour
 * stages) for GPipe and 1F1B. The same arrays drive the real pipeline (`strata train`) and the
 * simulator (`strata simulate`).
 *
 * Schedules (GPipe; 1F1B as Megatron-LM), P stages, M micro-batches, stage s:
 *   GPipe: F0 .. F(M-1), then B0 .. B(M-1). Stage s keeps M micro-batches of activations.
 *   1F1B : w = min(P - s - 1, M) warm-up forwards F0..F(w-1); then M - w steady rounds
 *          "F(w+j), B(j)"; then the cool-down backwards B(M-w) .. B(M-1). At most
 *          min(M, P - s) micro-batches of activations in flight.
 *   Interleaved 1F1B (Megatron-LM's virtual pipeline, simulator only): each of the P ranks
 *          holds V model chunks; chunk v of rank s is virtual stage v P + s, so a forward
 *          goes rank 0 .. P-1, then back to rank 0 for the next chunk. The M V chunk passes
 *          run as 1F1B with w = min(2 (P - s - 1) + (V - 1) P, M V) warm-up forwards (all
 *          of them when M = P); the k-th forward is chunk (k mod P V) / P of micro-batch
 *          (k / P V) P + k mod P, the k-th backward the same micro-batch of chunk V - 1 minus
 *          that. Needs M a multiple of P. The bubble shrinks V-fold ((P - 1) chunk passes,
 *          each 1/V of a stage's), for w + 1 chunk micro-batches of activations in flight
 *          (rank 0: P + (P - 1) / V stages' worth, Korthikanti et al. 2022).
 * Every FWD of a stage s > 0 is preceded by RECV_ACT of the same micro-batch from stage s-1,
 * every FWD of a stage s < P-1 is followed by SEND_ACT to stage s+1; every BWD of a stage
 * s < P-1 is preceded by RECV_GRAD from stage s+1 and every BWD of a stage s > 0 is followed
 * by SEND_GRAD to stage s-1. The last stage's BWD starts from the loss.
 *
 * Execution rule (deadlock freedom): RECV_* block until the message has arrived; SEND_* are
 * posted non-blocking (coll_isend) and must not wait for the receiver -- complete them when the
 * buffer is reused or at the end of the step. Under that rule both schedules are deadlock-free
 * (checked by schedule_check_deadlock_free, and by tests). With rendezvous (blocking) sends
 * 1F1B deadlocks: in the steady phase stage s sends an activation to s+1 while s+1 sends a
 * gradient to s. Messages are matched by (peer, kind, micro-batch): use the tag
 * schedule_tag(kind, micro).
 *
 * Usage
 *    sched_action_t acts[SCHED_MAX_ACTIONS(M)]; int n;
 *    schedule_build(SCHED_1F1B, P, M, stage, acts, &n);
 *    for (int i = 0; i < n; i++) switch (acts[i].op) { case SCHED_FWD: ...; }
 */
#ifndef STRATA_SCHEDULE_H
#define STRATA_SCHEDULE_H

#include <stddef.h>

typedef enum { SCHED_GPIPE = 0, SCHED_1F1B = 1 } sched_kind_t;

typedef enum {
  SCHED_RECV_ACT = 0, /* receive micro-batch's input activation (B, T, C) from stage - 1 */
  SCHED_FWD,          /* forward of the micro-batch over this stage's layers */
  SCHED_SEND_ACT,     /* send its output activation to stage + 1 */
  SCHED_RECV_GRAD,    /* receive the gradient of that output from stage + 1 */
  SCHED_BWD,          /* backward of the micro-batch (accumulates parameter gradients) */
  SCHED_SEND_GRAD,    /* send the gradient of its input to stage - 1 */
} sched_op_t;

typedef struct {
  sched_op_t op;
  int micro; /* micro-batch index, 0 .. M-1 */
  int peer;  /* neighbour stage for sends / receives, -1 for FWD / BWD */
  int chunk; /* model chunk of this stage (interleaved schedule), else 0 */
} sched_action_t;

/* Upper bound on the actions of one stage: 6 per micro-batch. */
#define SCHED_MAX_ACTIONS(M) (6 * (M))

const char *schedule_kind_name(sched_kind_t k); /* "gpipe", "1f1b" */
const char *schedule_op_name(sched_op_t op);    /* "recv_act", "fwd", ... */
/* Parses "gpipe" / "1f1b"; 0 ok, -1 unknown. */
int schedule_parse_kind(const char *s, sched_kind_t *out);

/* Fills acts[0..*n) for `stage` of a P-stage pipeline running M micro-batches (capacity
 * SCHED_MAX_ACTIONS(M)). Returns 0, or -1 on bad arguments (P < 1, M < 1, stage out of range). */
int schedule_build(sched_kind_t kind, int P, int M, int stage, sched_action_t *acts, int *n);

/* The interleaved 1F1B schedule of `stage` with V model chunks per stage (capacity
 * SCHED_MAX_ACTIONS(M * V)). V = 1 is 1F1B. Returns 0, or -1 on bad arguments (also
 * P < 2 with V > 1, or M not a multiple of P with V > 1). */
int schedule_build_interleaved(int P, int M, int V, int stage, sched_action_t *acts, int *n);

/* The list for a simulated job's schedule: V > 1 the interleaved one (kind must be 1F1B),
 * else schedule_build(kind). Same capacity and returns as those. */
int schedule_build_v(sched_kind_t kind, int P, int M, int V, int stage, sched_action_t *acts, int *n);

/* Largest number of micro-batches whose forward has run but whose backward has not, over the
 * action list (the activations a stage must keep). */
int schedule_max_in_flight(const sched_action_t *acts, int n);
/* The closed form for the same: GPipe M, 1F1B min(M, P - stage). */
int schedule_in_flight(sched_kind_t kind, int P, int M, int stage);
/* The same for the interleaved schedule, in chunk micro-batches (each 1/V of a stage's
 * activations): M V when M = P, else min(2 (P - stage - 1) + (V - 1) P + 1, M V). */
int schedule_in_flight_interleaved(int P, int M, int V, int stage);

/* Message tag for a send/receive: distinct per (kind, micro-batch), < 2^24 for M < 2^22. */
int schedule_tag(sched_op_t op, int micro);

/* Executes all P stages' schedules symbolically: receives block until the matching send has
 * been posted; sends are buffered (rendezvous = 0) or wait for the matching receive
 * (rendezvous = 1). Returns 0 if every stage completes, -1 on deadlock or a mismatched
 * send/receive (description in err). */
int schedule_check_deadlock_free(sched_kind_t kind, int P, int M, int rendezvous, char *err,
                                 size_t errlen);
/* The same for the interleaved schedule with V chunks per stage. */
int schedule_check_interleaved(int P, int M, int V, int rendezvous, char *err, size_t errlen);
/* Same check for caller-supplied lists: acts[s][0..n[s]) per stage. */
int schedule_check_lists(int P, int M, sched_action_t *const *acts, const int *n, int rendezvous,
                         char *err, size_t errlen);
/* The same with V chunks per stage: messages go between virtual stages v P + s, rank P - 1's
 * chunk v sending on to rank 0's chunk v + 1. */
int schedule_check_lists_v(int P, int M, int V, sched_action_t *const *acts, const int *n,
                           int rendezvous, char *err, size_t errlen);

#endif /* STRATA_SCHEDULE_H */
