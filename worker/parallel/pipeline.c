/* pipeline.c -- one stage's execution of a GPipe / 1F1B training step (see pipeline.h). */
#include "pipeline.h"
#include "fault.h"
#include "rank_status.h"
#include "util.h"

/* pipeline_step reports a schedule action as the status operation at the same offset */
_Static_assert(RS_PIPE_FWD - RS_PIPE_RECV_ACT == SCHED_FWD - SCHED_RECV_ACT &&
                   RS_PIPE_SEND_ACT - RS_PIPE_RECV_ACT == SCHED_SEND_ACT - SCHED_RECV_ACT &&
                   RS_PIPE_RECV_GRAD - RS_PIPE_RECV_ACT == SCHED_RECV_GRAD - SCHED_RECV_ACT &&
                   RS_PIPE_BWD - RS_PIPE_RECV_ACT == SCHED_BWD - SCHED_RECV_ACT &&
                   RS_PIPE_SEND_GRAD - RS_PIPE_RECV_ACT == SCHED_SEND_GRAD - SCHED_RECV_ACT,
               "rank_status_op_t's pipeline operations must follow sched_op_t's order");


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Message tag of evaluation activations: above every training tag (schedule_tag < 2M + 2). */
#define PIPELINE_EVAL_TAG ((1 << 23) + 1)

struct pipeline {
  stage_model_t sm;            /* the stage's model and its family's calls */
  const stage_ops_t *ops;      /* sm.ops */
  coll_comm_t *pipe;
  int P, stage, M, mb, T, C;
  size_t nact;                 /* floats of one micro-batch's residual stream message */
  sched_action_t *actions;
  int n_actions;
  int slots;                   /* K: activation slots */
  void **acts;                 /* [K] the family's activations */
  float *x_in;                 /* (rows, C) received activation (stage > 0) */
  float *dx_out;               /* (rows, C) received output gradient (stage < P-1) */
  float **dx_in;               /* [K] (rows, C) input gradients to send (stage > 0) */
  coll_request_t **act_req;    /* [K] pending activation sends */
  coll_request_t **grad_req;   /* [K] pending gradient sends */
  const step_hooks_t *hooks;   /* the trace and the simulated clock, or NULL */
};

int pipeline_create(const stage_model_t *sm, coll_comm_t *pipe, sched_kind_t kind, int M, int mb, int T,
                    pipeline_t **out, char *err, size_t errlen) {
  *out = NULL;
  pipeline_t *pl = calloc(1, sizeof *pl);
  if (!pl) goto oom;
  pl->sm = *sm;
  pl->ops = sm->ops;
  pl->pipe = pipe;
  pl->P = coll_size(pipe);
  pl->stage = coll_rank(pipe);
  pl->M = M;
  pl->mb = mb;
  pl->T = T;
  pl->C = sm->dim;
  pl->actions = calloc((size_t)SCHED_MAX_ACTIONS(M), sizeof *pl->actions);
  if (!pl->actions) goto oom;
  if (schedule_build(kind, pl->P, M, pl->stage, pl->actions, &pl->n_actions)) {
    snprintf(err, errlen, "cannot build the %s schedule for stage %d of %d with %d micro-batches",
             schedule_kind_name(kind), pl->stage, pl->P, M);
    pipeline_free(pl);
    return -1;
  }
  pl->slots = schedule_max_in_flight(pl->actions, pl->n_actions);
  if (pl->slots < 1) pl->slots = 1;
  pl->acts = calloc((size_t)pl->slots, sizeof *pl->acts);
  pl->dx_in = calloc((size_t)pl->slots, sizeof *pl->dx_in);
  pl->act_req = calloc((size_t)pl->slots, sizeof *pl->act_req);
  pl->grad_req = calloc((size_t)pl->slots, sizeof *pl->grad_req);
  if (!pl->acts || !pl->dx_in || !pl->act_req || !pl->grad_req) goto oom;
  const size_t nact = pl->nact = (size_t)pl->ops->stream_rows(sm->model, mb, T) * pl->C;
  for (int k = 0; k < pl->slots; k++) {
    if (pl->ops->acts_create(sm->model, mb, T, &pl->acts[k], err, errlen)) {
      pipeline_free(pl);
      return -1;
    }
    if (pl->stage > 0 && !(pl->dx_in[k] = malloc(nact * sizeof(float)))) goto oom;
  }
  if (pl->stage > 0 && !(pl->x_in = malloc(nact * sizeof(float)))) goto oom;
  if (pl->stage < pl->P - 1 && !(pl->dx_out = malloc(nact * sizeof(float)))) goto oom;
  *out = pl;
  return 0;
oom:
  snprintf(err, errlen, "out of memory for the pipeline buffers of %d micro-batches of %d x %d",
           M, mb, T);
  pipeline_free(pl);
  return -1;
}

void pipeline_free(pipeline_t *pl) {
  if (!pl) return;
  for (int k = 0; k < pl->slots; k++) {
    if (pl->act_req && pl->act_req[k]) coll_wait(pl->act_req[k]);
    if (pl->grad_req && pl->grad_req[k]) coll_wait(pl->grad_req[k]);
    if (pl->acts) pl->ops->acts_free(pl->acts[k]);
    if (pl->dx_in) free(pl->dx_in[k]);
  }
  free(pl->acts);
  free(pl->dx_in);
  free(pl->act_req);
  free(pl->grad_req);
  free(pl->x_in);
  free(pl->dx_out);
  free(pl->actions);
  free(pl);
}

void pipeline_set_hooks(pipeline_t *pl, const step_hooks_t *h) { pl->hooks = h; }

size_t pipeline_acts_in_flight_bytes(const pipeline_t *pl) {
  size_t b = 0;
  for (int k = 0; k < pl->slots; k++) b += pl->ops->acts_bytes(pl->acts[k]);
  return b;
}

size_t pipeline_act_bytes(const pipeline_t *pl) {
  size_t nact = pl->nact * sizeof(float), b = pipeline_acts_in_flight_bytes(pl);
  for (int k = 0; k < pl->slots; k++) b += pl->stage > 0 ? nact : 0;
  if (pl->x_in) b += nact;
  if (pl->dx_out) b += nact;
  return b;
}

/* Completes a pending send (if any). The wait is for the neighbour stage to take the message
 * (it is still busy with earlier work): pipeline idle time, like a blocked receive. */
static int complete(pipeline_t *pl, coll_request_t **req, pipeline_stats_t *st, char *err,
                    size_t errlen) {
  if (!*req) return 0;
  double t0 = strata_now_s();
  coll_result_t rc = coll_wait(*req);
  *req = NULL;
  st->idle_s += strata_now_s() - t0;
  if (rc != COLL_OK)
    return strata_fail(err, errlen, "pipeline send failed: %s", coll_last_error(pl->pipe));
  return 0;
}

int pipeline_step(pipeline_t *pl, const int32_t *tokens, const int32_t *targets, grad_sync_t *gs,
                  pipeline_stats_t *st, char *err, size_t errlen) {
  const step_hooks_t *h = pl->hooks;
  memset(st, 0, sizeof *st);
  const size_t nact = pl->nact, ntok = (size_t)pl->mb * pl->T;
  const int first = pl->stage == 0, last = pl->stage == pl->P - 1;
  const float loss_scale = 1.0f / (float)pl->M;
  for (int i = 0; i < pl->n_actions; i++) {
    const sched_action_t *a = &pl->actions[i];
    const int j = a->micro, k = j % pl->slots, tag = schedule_tag(a->op, j);
    double t0 = strata_now_s(), t0c = hook_now(h);
    coll_result_t rc = COLL_OK;
    rank_status_op((rank_status_op_t)(RS_PIPE_RECV_ACT + a->op), j); /* RUN/status/rank-R */
    switch (a->op) {
    case SCHED_RECV_ACT:
      fault_point(FAULT_AT_RECV, -1);
      rc = coll_recv(pl->x_in, nact, COLL_F32, pl->stage - 1, tag, pl->pipe);
      if (rc == COLL_OK) hook_clock_recv(h, 1, tag);
      st->idle_s += strata_now_s() - t0;
      hook_trace(h, TRACE_RECV, j, t0c);
      break;
    case SCHED_RECV_GRAD:
      rc = coll_recv(pl->dx_out, nact, COLL_F32, pl->stage + 1, tag, pl->pipe);
      if (rc == COLL_OK) hook_clock_recv(h, 0, tag);
      st->idle_s += strata_now_s() - t0;
      hook_trace(h, TRACE_RECV, j, t0c);
      break;
    case SCHED_FWD: {
      if (complete(pl, &pl->act_req[k], st, err, errlen)) return -1;
      t0 = strata_now_s();
      t0c = hook_now(h);
      float loss = pl->ops->forward(pl->sm.model, pl->acts[k], first ? tokens + (size_t)j * ntok : NULL,
                                first ? NULL : pl->x_in, last ? targets + (size_t)j * ntok : NULL);
      hook_clock_fwd(h);
      if (last) {
        st->loss_sum += loss;
        st->n_loss++;
      }
      st->compute_s += strata_now_s() - t0;
      hook_trace(h, TRACE_FWD, j, t0c);
      break;
    }
    case SCHED_SEND_ACT:
      hook_clock_send(h, 1, j, tag); /* the clock goes first: the data implies it */
      rc = coll_isend(pl->ops->output(pl->acts[k]), nact, COLL_F32, pl->stage + 1, tag, pl->pipe,
                      &pl->act_req[k]);
      hook_trace(h, TRACE_SEND, j, t0c);
      break;
    case SCHED_BWD: {
      if (complete(pl, &pl->act_req[k], st, err, errlen)) return -1;
      if (complete(pl, &pl->grad_req[k], st, err, errlen)) return -1;
      if (j == pl->M - 1 && gs) grad_sync_arm(gs);
      hook_clock_bwd_begin(h, j == pl->M - 1);
      t0 = strata_now_s();
      t0c = hook_now(h);
      if (pl->ops->backward(pl->sm.model, pl->acts[k], last ? NULL : pl->dx_out, loss_scale,
                        first ? NULL : pl->dx_in[k]))
        return strata_fail(err, errlen, "backward of micro-batch %d (stage %d) failed (see the "
                           "message above)", j, pl->stage);
      hook_clock_bwd_end(h, j == pl->M - 1);
      st->compute_s += strata_now_s() - t0;
      hook_trace(h, TRACE_BWD, j, t0c);
      break;
    }
    case SCHED_SEND_GRAD:
      hook_clock_send(h, 0, j, tag);
      rc = coll_isend(pl->dx_in[k], nact, COLL_F32, pl->stage - 1, tag, pl->pipe, &pl->grad_req[k]);
      hook_trace(h, TRACE_SEND, j, t0c);
      break;
    }
    if (rc != COLL_OK)
      return strata_fail(err, errlen, "pipeline %s of micro-batch %d (stage %d) failed: %s",
                         schedule_op_name(a->op), j, pl->stage, coll_last_error(pl->pipe));
  }
  for (int k = 0; k < pl->slots; k++) {
    if (complete(pl, &pl->act_req[k], st, err, errlen)) return -1;
    if (complete(pl, &pl->grad_req[k], st, err, errlen)) return -1;
  }
  return 0;
}

int pipeline_eval(pipeline_t *pl, const int32_t *tokens, const int32_t *targets, int rows,
                  double *loss_sum, char *err, size_t errlen) {
  const size_t nact = pl->nact;
  const int first = pl->stage == 0, last = pl->stage == pl->P - 1;
  *loss_sum = 0;
  if (rows < 0 || rows > pl->mb)
    return strata_fail(err, errlen, "evaluation: %d rows asked of a micro-batch of %d", rows, pl->mb);
  if (!first && coll_recv(pl->x_in, nact, COLL_F32, pl->stage - 1, PIPELINE_EVAL_TAG, pl->pipe) != COLL_OK)
    return strata_fail(err, errlen, "evaluation: receiving activations from stage %d failed: %s",
                       pl->stage - 1, coll_last_error(pl->pipe));
  (void)pl->ops->forward(pl->sm.model, pl->acts[0], first ? tokens : NULL, first ? NULL : pl->x_in,
                     last ? targets : NULL);
  if (last) { /* in double, position by position: the same sum however the rows are grouped */
    const float *l = pl->ops->losses(pl->acts[0]);
    double sum = 0;
    for (size_t i = 0; i < (size_t)rows * pl->T; i++) sum += l[i];
    *loss_sum = sum;
  }
  if (!last && coll_send(pl->ops->output(pl->acts[0]), nact, COLL_F32, pl->stage + 1, PIPELINE_EVAL_TAG,
                         pl->pipe) != COLL_OK)
    return strata_fail(err, errlen, "evaluation: sending activations to stage %d failed: %s", pl->stage + 1,
                       coll_last_error(pl->pipe));
  return 0;
}
