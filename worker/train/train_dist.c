/* train_dist.c -- the distributed training job: T tensor-parallel ranks x P pipeline stages x D
 * data-parallel replicas over MPI_COMM_WORLD (see train.h, layout.h for the rank map,
 * pipeline.h, grad_sync.h, coordinator.h). A stage's model is a GPT-2 shard (gpt2.h) or, with
 * --arch llama, a Llama stage (llama_create_range with its TP rank; synchronous
 * checkpoints), both driven through stage.h.
 *
 * Communicators of rank (t, stage s, replica d): the TP group of (s, d) (the T ranks that split
 * the stage's matrices, ordered by t; only when T > 1), the pipeline of (t, d) (stage s talks to
 * the same t on the adjacent stages), the DP group of (t, s), the tied-wte pair {stage 0, stage
 * P-1} of (t, d), and for the gradient norm the replica's T x P ranks (the world with ZeRO).
 *
 * One step on rank (t, s, d):
 *   1. zero gradients; fetch the replica's slice of the step's global batch: sequences
 *      [d * batch/D, (d+1) * batch/D), micro-batch j = the j-th block of mb = batch/(D*M)
 *      (stage 0 uses the inputs, the last stage the targets; every TP rank the same ones);
 *   2. run the stage's schedule (pipeline_step); the last micro-batch's backward starts the
 *      bucketed DP all-reduce;
 *   3. grad_sync_finish: tied wte sum, remaining reductions, global squared norm (each TP
 *      shard once, each replicated tensor once);
 *   4. AdamW with the clip factor (ZeRO-1: slice update and parameter all-gather);
 *   5. StepReport to the coordinator (the loss from t = 0 of the last stage; the time inside
 *      the TP group's collectives as tp_comm_s); validation and checkpoint when due
 *      (train_loop.h; replica 0 of every stage gathers its whole tensors over TP and t = 0 writes
 *      them, rank 0 commits).
 * The job runs phase by phase over a dist_job_t (dist_configure, dist_connect, dist_device,
 * dist_runtime, dist_coordinator, then per step dist_step, dist_report, dist_step_end, and
 * dist_finish). Configuration is validated on every rank from the same inputs (flags, checkpoint, data), so
 * every rank reaches the same verdict without communication; only rank 0 prints it.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "checkpoint.h"
#include "ckpt_async.h"
#include "strata/coll.h"
#include "coordinator.h"
#include "data.h"
#include "fault.h"
#include "gemm.h"
#include "grad_sync.h"
#include "layout.h"
#include "log.h"
#include "pipeline.h"
#include "rank_status.h"
#include "memory_model.h"
#include "schedule.h"
#include "sim_clock.h"
#include "strata_proto.h"
#include "train.h"
#include "train_loop.h"
#include "train_model.h"
#include "util.h"
#include "validation.h"

#define TRAIN_PATH_WORDS 1024 /* checkpoint temp path broadcast as int32 words (4 KiB) */

/* The communicators of one rank. */
typedef struct {
  coll_comm_t *world; /* all ranks */
  coll_comm_t *tp;    /* the stage's T tensor-parallel ranks of the replica, rank = t (T > 1) */
  coll_comm_t *pipe;  /* the replica's P stages of the same t, rank = stage */
  coll_comm_t *dp;    /* the D replicas of (t, stage), rank = replica */
  coll_comm_t *tied;  /* {stage 0, stage P-1} of (t, replica) when P > 1, else NULL */
  coll_comm_t *rep;   /* the replica's T x P ranks (T > 1 without ZeRO: the norm), else NULL */
} comms_t;

/* The distributed job on one rank, phase to phase: configuration, communicators, the simulated
 * device, the runtime (model shard, gradient sync, pipeline), the coordinator, the steps, the
 * end. Each phase returns TRAIN_OK, TRAIN_FAILED or TRAIN_BAD_CONFIG (train_loop.h) with the
 * message in err. */
typedef struct {
  train_config_t c;         /* the configuration, completed by train_prepare */
  char err[1024];           /* the message of the failing phase */
  int wrank, wsize;         /* rank and size of MPI_COMM_WORLD */
  layout_t *lay;            /* the T x P x D rank map and the stages' layers */
  int tp_rank, stage, replica; /* this rank's place in it */
  int rows;                 /* the replica's sequences per step, batch / D */
  int64_t val_seqs;         /* sequences of the validation set (validation.h) */
  comms_t cm;
  data_set_t *ds;
  const char *data_path;    /* c.data_path or the default corpus */
  strata_train_state_t *state; /* the resumed checkpoint's training state */
  char resume_dir[4096];
  gpt2_model_t *m;          /* the stage's shard of the model (GPT-2), or NULL */
  llama_model_t *lm;        /* the stage's layers of a Llama model (--arch llama), or NULL */
  stage_model_t sm;         /* whichever it is, behind its family's calls (stage.h) */
  grad_sync_t *gs;
  pipeline_t *pl;
  coord_t *co;
  device_t dev;             /* the simulated device */
  sim_clock_t simc;
  step_hooks_t hooks;       /* the trace and the simulated clock, as the runtime sees them */
  int32_t *inputs, *targets; /* the replica's rows of a step, rows x T tokens */
  int32_t *eval_in, *eval_tg; /* one validation micro-batch, micro_batch x T */
  float *full_m, *full_v;   /* the shard's AdamW moments, whole (checkpoints and resume) */
  double *mem_model, *mem_alloc; /* [pp] bytes per stage: the memory model's, what was allocated */
  double *mem_acts;         /* [pp] activation bytes per stage (micro-batches in flight + scratch) */
  int64_t start_step;       /* the resumed checkpoint's step, or 0 */
  uint64_t tokens_seen;     /* all steps so far, resumed ones included */
  double last_loss;         /* rank 0: the coordinator's loss; others: their own, if any */
  double sync_wait_s;       /* the previous step's wait in the report gather */
  uint64_t sent0, recv0;    /* traffic counters at the previous step's end */
  double tp_busy0;          /* seconds inside TP collectives at the step's start */
  /* asynchronous checkpoints (--ckpt-async): this rank's background writer and the checkpoint in
   * flight, the same on every rank: CK_IDLE, CK_SHARDS (stages writing into ck_tmp), CK_COMMIT
   * (rank 0 committing ck_tmp as ck_dir); ck_state is rank 0's record of it */
  ckpt_async_t *ckw;
  int ck_phase;
  char ck_tmp[4 * TRAIN_PATH_WORDS], ck_dir[4200];
  strata_train_state_t *ck_state;
} dist_job_t;

enum { CK_IDLE, CK_SHARDS, CK_COMMIT };

static void comms_traffic(const comms_t *cm, uint64_t *sent, uint64_t *recvd) {
  coll_comm_t *all[6] = {cm->world, cm->tp, cm->pipe, cm->dp, cm->tied, cm->rep};
  *sent = *recvd = 0;
  for (int i = 0; i < 6; i++) {
    if (!all[i]) continue;
    uint64_t s = 0, r = 0;
    coll_traffic(all[i], &s, &r);
    *sent += s;
    *recvd += r;
  }
}

/* Agreement of all ranks on ok (1) / failed (0): MIN over the world. Returns the verdict. */
static int all_ok(coll_comm_t *world, int ok) {
  int32_t v = ok ? 1 : 0;
  if (coll_allreduce(&v, &v, 1, COLL_I32, COLL_MIN, world) != COLL_OK) return 0;
  return v == 1;
}

/* Collective validation of the held-out set (validation.h): its sequences in chunks of one
 * micro-batch (mb rows, the last chunk padded), chunk k forwarded by replica k % D through its
 * pipeline; the last stage's t = 0 rank sums the real rows' per-position losses and an all-reduce
 * over the world gives every rank the mean over the set's S x T positions in *val. */
static int run_eval(dist_job_t *j, double *val) {
  const int P = j->lay->pp, D = j->lay->dp, mb = j->lay->micro_batch, T = j->c.seq_len;
  coll_comm_t *world = j->cm.world;
  const int64_t chunks = (j->val_seqs + mb - 1) / mb;
  double sum = 0;
  int ok = 1;
  for (int64_t k = j->replica; k < chunks && ok; k += D) {
    int rows = 0;
    if ((j->stage == 0 || j->stage == P - 1) &&
        valset_fetch(j->ds, DATA_VAL, j->val_seqs, T, k * mb, mb, j->eval_in, j->eval_tg, &rows,
                     j->err, sizeof j->err)) {
      ok = 0; /* identical on every rank that fetches: the others fail in the exchange below */
      break;
    }
    double l = 0;
    if (pipeline_eval(j->pl, j->eval_in, j->eval_tg, rows, &l, j->err, sizeof j->err)) return -1;
    sum += l;
  }
  /* every TP rank of the last stage has the same losses: t = 0 counts them */
  double v = j->stage == P - 1 && j->tp_rank == 0 && ok ? sum : 0;
  if (!all_ok(world, ok)) {
    if (ok) snprintf(j->err, sizeof j->err, "evaluation failed on another rank (see its message)");
    return -1;
  }
  if (coll_allreduce(&v, &v, 1, COLL_F64, COLL_SUM, world) != COLL_OK) {
    snprintf(j->err, sizeof j->err, "validation loss all-reduce failed: %s", coll_last_error(world));
    return -1;
  }
  *val = v / ((double)j->val_seqs * T);
  return 0;
}

/* The training state a checkpoint of `step` records on this layout. */
static void fill_state(const dist_job_t *j, strata_train_state_t *st, uint64_t step, double loss) {
  const layout_t *lay = j->lay;
  int stage_layers[LAYOUT_MAX_STAGES];
  for (int i = 0; i < lay->pp; i++) stage_layers[i] = layout_stage_layers(lay, i);
  train_state_fill(st, &j->c, j->data_path, step, j->tokens_seen, loss, lay->pp, lay->dp,
                   stage_layers); /* and lay->tp, from the configuration */
}

/* Rank 0 commits the checkpoint in `tmp` as `dir` with the training state, and prunes. 0 or -1. */
static int commit_checkpoint(dist_job_t *j, const char *tmp, const char *dir, uint64_t step,
                             double loss) {
  strata_train_state_t *st = calloc(1, sizeof *st);
  if (!st) return strata_fail(j->err, sizeof j->err, "out of memory");
  fill_state(j, st, step, loss);
  int rc = 0;
  if (j->lm ? ckpt_commit_llama(tmp, dir, &j->c.llama, st, j->lay->pp, j->err, sizeof j->err)
            : ckpt_commit(tmp, dir, &j->c.model, st, j->lay->pp, j->err, sizeof j->err)) {
    ckpt_abort(tmp);
    rc = -1;
  } else if (j->c.keep > 0 && ckpt_prune(j->c.out_dir, j->c.keep, j->err, sizeof j->err) < 0) {
    rc = -1;
  }
  free(st);
  return rc;
}

/* Replica 0's part of a checkpoint: the stage's whole tensors into tmp. With T > 1 the T ranks
 * all-gather their parts of the parameters and of both moments (collective over the TP group)
 * and t = 0 assembles and writes them; a failure on any TP rank fails every one. With --ckpt-async
 * the tensors go into the background writer's snapshot and its thread writes them (t = 0; the
 * caller joins it). 0 or -1. */
static int write_shard(dist_job_t *j, const char *tmp, uint64_t step) {
  char *err = j->err;
  const size_t errlen = sizeof j->err;
  gpt2_model_t *m = j->m;
  const int T = j->lay->tp, P = j->lay->pp;
  ckpt_async_t *w = j->c.ckpt_async ? j->ckw : NULL;
  if (j->lm && T == 1) /* whole tensors, written synchronously */
    return ckpt_write_shard_llama(tmp, j->lm, j->full_m, j->full_v, j->stage, P, err, errlen);
  if (T == 1 && !w)
    return ckpt_write_shard(tmp, m, j->full_m, j->full_v, j->stage, P, err, errlen);
  if (T == 1)
    return ckpt_async_snapshot(w, m->params, j->full_m, j->full_v, m->num_params, err, errlen) ||
                   ckpt_async_shard(w, tmp, m, 0, j->stage, P, (int64_t)step, err, errlen)
               ? -1 : 0;
  const size_t n = j->sm.num_params, nf = ckpt_tensors_full_numel(j->sm.tensors, j->sm.num_tensors);
  float *parts = malloc(sizeof(float) * n * (size_t)T + 1);
  float *full = j->tp_rank == 0 && !w ? malloc(sizeof(float) * 3 * nf + 1) : NULL;
  float *dst[3] = {full, full ? full + nf : NULL, full ? full + 2 * nf : NULL};
  int ok = parts && (j->tp_rank != 0 || w || full);
  if (!ok)
    snprintf(err, errlen, "checkpoint: out of memory for the %d tensor-parallel parts of %zu "
             "parameters", T, n);
  else if (j->tp_rank == 0 && w && ckpt_async_buffers(w, nf, &dst[0], &dst[1], &dst[2], err, errlen))
    ok = 0;
  const float *src[3] = {j->sm.params, j->full_m, j->full_v};
  for (int a = 0; a < 3; a++) {
    int32_t v = ok;
    if (coll_allreduce(&v, &v, 1, COLL_I32, COLL_MIN, j->cm.tp) != COLL_OK) {
      snprintf(err, errlen, "checkpoint: tensor-parallel agreement failed: %s", coll_last_error(j->cm.tp));
      ok = 0;
      break;
    }
    if (!v) {
      if (ok) snprintf(err, errlen, "checkpoint: another tensor-parallel rank failed (see its message)");
      ok = 0;
      break;
    }
    if (coll_allgather(src[a], parts, n, COLL_F32, j->cm.tp) != COLL_OK) {
      snprintf(err, errlen, "checkpoint: tensor-parallel gather failed: %s", coll_last_error(j->cm.tp));
      ok = 0;
      break;
    }
    if (dst[a] && ckpt_assemble_tensors(j->sm.tensors, j->sm.num_tensors, n, parts, dst[a], err, errlen)) ok = 0;
  }
  if (ok && full &&
      (j->lm ? ckpt_write_shard_full_llama(tmp, j->lm, dst[0], dst[1], dst[2], j->stage, P, err, errlen)
             : ckpt_write_shard_full(tmp, m, dst[0], dst[1], dst[2], j->stage, P, err, errlen)))
    ok = 0;
  if (ok && w && j->tp_rank == 0 &&
      ckpt_async_shard(w, tmp, m, 1, j->stage, P, (int64_t)step, err, errlen))
    ok = 0;
  free(parts);
  free(full);
  return ok ? 0 : -1;
}

/* The first half of a collective checkpoint of `step` into RUN/ckpt-<step> (dir): the moments
 * gathered, rank 0 creates the temporary directory and tells everyone its name (tmp, 4 *
 * TRAIN_PATH_WORDS bytes), replica 0 of every stage writes its shard (whole tensors,
 * write_shard) or, with --ckpt-async, starts its background write; every rank learns of any
 * failure (rank 0 then removes tmp). 0 or -1. */
static int begin_checkpoint(dist_job_t *j, uint64_t step, const char *dir, char *tmp) {
  coll_comm_t *world = j->cm.world;
  char *err = j->err;
  const size_t errlen = sizeof j->err;
  int ok = grad_sync_gather_moments(j->gs, j->full_m, j->full_v, err, errlen) == 0;
  int32_t words[TRAIN_PATH_WORDS];
  memset(words, 0, sizeof words);
  char *path = (char *)words;
  if (j->wrank == 0 && ok && ckpt_begin(dir, path, sizeof words, err, errlen)) ok = 0;
  if (!all_ok(world, ok)) {
    if (ok) snprintf(err, errlen, "checkpoint %s: another rank failed (see its message)", dir);
    return -1;
  }
  if (coll_broadcast(words, TRAIN_PATH_WORDS, COLL_I32, 0, world) != COLL_OK) {
    snprintf(err, errlen, "checkpoint path broadcast failed: %s", coll_last_error(world));
    return -1;
  }
  path[sizeof words - 1] = '\0';
  memcpy(tmp, path, sizeof words);
  if (j->replica == 0 && write_shard(j, tmp, step)) ok = 0;
  if (!all_ok(world, ok)) {
    char ignored[1024]; /* the failure that counts is the one all_ok reported */
    ckpt_async_join(j->ckw, NULL, ignored, sizeof ignored); /* a background write just started */
    all_ok(world, 1); /* ... has ended on every rank before tmp is removed */
    if (j->wrank == 0) ckpt_abort(tmp);
    if (ok) snprintf(err, errlen, "checkpoint %s: a stage failed to write its shard (see its message)", dir);
    return -1;
  }
  return 0;
}

/* Collective checkpoint of step `step` into RUN/ckpt-<step>, before the next step: begin, then
 * rank 0 commits; every rank learns of any failure. */
static int save_checkpoint(dist_job_t *j, uint64_t step, double loss) {
  char dir[4200], tmp[4 * TRAIN_PATH_WORDS];
  ckpt_step_dir(dir, sizeof dir, j->c.out_dir, step);
  if (begin_checkpoint(j, step, dir, tmp)) return -1;
  int ok = 1;
  if (j->wrank == 0 && commit_checkpoint(j, tmp, dir, step, loss)) ok = 0;
  if (!all_ok(j->cm.world, ok)) {
    if (ok) snprintf(j->err, sizeof j->err, "checkpoint %s: the coordinator failed to commit it", dir);
    return -1;
  }
  if (j->wrank == 0 && !j->c.quiet) strata_info("checkpoint %s", dir);
  return 0;
}

/* The asynchronous checkpoint in flight (--ckpt-async), advanced at a step boundary. Collective:
 * every rank calls it at the same boundaries (ck_phase is the same everywhere). Each rank says
 * whether its background write is running (0), failed (1) or done / not a writer (2); the MIN
 * over the world decides, so nothing is decided while any write still runs: all shards written
 * -> rank 0 starts the commit in its background writer (the checkpoint appears only after every
 * rank's write succeeded); the commit done -> the checkpoint is complete; a failure anywhere ->
 * rank 0 removes the temporary directory and every rank fails. With `wait` it blocks until the
 * checkpoint is complete or failed (1: the end of the run; 2: the end of the step after the
 * checkpoint's, or the next checkpoint is due -- one write in flight -- and rank 0 logs a wait
 * of 1 ms or more). Without, it returns at once while a write runs. `step` is the boundary's
 * step. 0 or -1. */
static int poll_checkpoint(dist_job_t *j, int64_t step, int wait) {
  const double t0 = strata_now_s();
  while (j->ck_phase != CK_IDLE) {
    char msg[1024] = "";
    int32_t v = 2;
    if (ckpt_async_pending(j->ckw)) {
      if (!wait && ckpt_async_busy(j->ckw)) v = 0;
      else v = ckpt_async_join(j->ckw, NULL, msg, sizeof msg) ? 1 : 2;
    }
    if (coll_allreduce(&v, &v, 1, COLL_I32, COLL_MIN, j->cm.world) != COLL_OK) {
      snprintf(j->err, sizeof j->err, "checkpoint %s: agreement on its background writes failed: %s",
               j->ck_dir, coll_last_error(j->cm.world));
      return -1;
    }
    if (v == 0) return 0; /* still running somewhere: the next boundary looks again */
    if (v == 1) {
      if (j->wrank == 0 && j->ck_phase == CK_SHARDS) ckpt_abort(j->ck_tmp);
      if (*msg)
        snprintf(j->err, sizeof j->err, "the background write of checkpoint %s failed: %s",
                 j->ck_dir, msg);
      else
        snprintf(j->err, sizeof j->err, "the background write of checkpoint %s failed on another "
                 "rank (see its message)", j->ck_dir);
      j->ck_phase = CK_IDLE;
      return -1;
    }
    if (j->ck_phase == CK_SHARDS) {
      int ok = j->wrank != 0 ||
               ckpt_async_commit(j->ckw, j->ck_tmp, j->ck_dir, &j->c.model, j->ck_state, j->lay->pp,
                                 j->c.out_dir, j->c.keep, (int64_t)j->ck_state->step, j->err,
                                 sizeof j->err) == 0;
      if (!ok) ckpt_abort(j->ck_tmp); /* rank 0 only */
      if (!all_ok(j->cm.world, ok)) {
        if (ok) snprintf(j->err, sizeof j->err, "checkpoint %s: the coordinator failed to start "
                         "its commit (see its message)", j->ck_dir);
        j->ck_phase = CK_IDLE;
        return -1;
      }
      j->ck_phase = CK_COMMIT;
      if (!wait) return 0;
    } else {
      j->ck_phase = CK_IDLE;
      if (j->wrank == 0 && !j->c.quiet) {
        const double waited_s = strata_now_s() - t0;
        if (wait == 2 && waited_s >= 0.001)
          strata_info("step %lld: waited %.3f s for the background write of %s to complete",
                      (long long)step, waited_s, j->ck_dir);
        strata_info("checkpoint %s", j->ck_dir);
      }
    }
  }
  return 0;
}

/* --ckpt-async: the checkpoint of step `step` once the previous one is complete: the host
 * snapshot and the background writes started (begin_checkpoint), rank 0's training state kept
 * for the commit; poll_checkpoint finishes it at later step boundaries. 0 or -1. */
static int save_checkpoint_async(dist_job_t *j, uint64_t step, double loss) {
  if (poll_checkpoint(j, (int64_t)step, 2)) return -1;
  int ok = j->ckw || ckpt_async_create(&j->ckw, j->err, sizeof j->err) == 0;
  if (ok && !j->ck_state && !(j->ck_state = calloc(1, sizeof *j->ck_state))) {
    snprintf(j->err, sizeof j->err, "out of memory for a checkpoint's training state");
    ok = 0;
  }
  if (!all_ok(j->cm.world, ok)) {
    if (ok) snprintf(j->err, sizeof j->err, "checkpoint of step %llu: another rank failed (see its "
                     "message)", (unsigned long long)step);
    return -1;
  }
  ckpt_step_dir(j->ck_dir, sizeof j->ck_dir, j->c.out_dir, step);
  fill_state(j, j->ck_state, step, loss);
  if (begin_checkpoint(j, step, j->ck_dir, j->ck_tmp)) return -1;
  j->ck_phase = CK_SHARDS;
  return 0;
}

/* ---- set-up ---- */

/* What a Llama model (llama.h: no sequence parallelism or recomputation) cannot run
 * here, and a --tp that does not divide its heads, kv heads and ffn; Llama checkpoints are
 * written synchronously. 0, or -1 with the message. */
static int dist_llama_check(train_config_t *c, char *err, size_t errlen) {
  const char *flag = c->sequence_parallel ? "--sequence-parallel"
                     : c->recompute ? "--recompute" : NULL;
  if (flag)
    return strata_fail(err, errlen, "%s is not supported for a Llama model, which trains "
                       "with --tp, --pp and --dp only: drop %s", flag, flag);
  const struct {
    const char *flag;
    int v;
  } div[] = {{"--heads", c->model.heads}, {"--kv-heads", c->llama.kv_heads}, {"--ffn", c->llama.ffn}};
  for (size_t i = 0; c->tp > 1 && i < sizeof div / sizeof div[0]; i++)
    if (div[i].v % c->tp != 0)
      return strata_fail(err, errlen, "--tp %d does not divide %s %d: each tensor-parallel rank holds an "
                         "equal share of them; choose a --tp that divides %d (or change %s)", c->tp, div[i].flag,
                         div[i].v, div[i].v, div[i].flag);
  c->ckpt_async = 0; /* the background writer (ckpt_async.h) saves GPT-2 models only */
  return 0;
}

/* The same checks on every rank, from the same inputs (flags, checkpoint, data), so every rank
 * reaches the same verdict without communication; then the stage's model shard. */
static int dist_configure(dist_job_t *j) {
  train_config_t *c = &j->c;
  char *err = j->err;
  const size_t errlen = sizeof j->err;
  if (train_prepare(c, j->state, j->resume_dir, sizeof j->resume_dir, &j->ds, &j->data_path, err,
                    errlen))
    return TRAIN_BAD_CONFIG;
  if (c->tp < 1 || c->pp < 1 || c->dp < 1) {
    snprintf(err, errlen, "--tp, --pp and --dp must be at least 1 (got --tp %d --pp %d --dp %d)",
             c->tp, c->pp, c->dp);
    return TRAIN_BAD_CONFIG;
  }
  if (c->microbatches < 1 || c->batch < 1) {
    snprintf(err, errlen, "--batch (%d) and --microbatches (%d) must be at least 1", c->batch,
             c->microbatches);
    return TRAIN_BAD_CONFIG;
  }
  if (!(c->bucket_mb > 0)) {
    snprintf(err, errlen, "--bucket-mb must be positive (got %g)", c->bucket_mb);
    return TRAIN_BAD_CONFIG;
  }
  if (c->zero != 0 && c->zero != 1) {
    snprintf(err, errlen, "--zero must be 0 or 1 (got %d)", c->zero);
    return TRAIN_BAD_CONFIG;
  }
  layout_model_t lm = {c->model.vocab, c->model.ctx, c->model.layers, c->model.heads, c->model.dim};
  if (c->arch == CKPT_ARCH_LLAMA) { /* the stage balance, memory and simulated device of Llama's shapes */
    c->llama = train_llama_config(&c->model, &c->llama);
    if (dist_llama_check(c, err, errlen)) return TRAIN_BAD_CONFIG;
    lm.arch = LAYOUT_ARCH_LLAMA;
    lm.kv_heads = c->llama.kv_heads;
    lm.ffn = c->llama.ffn;
  }
  if (layout_init(j->lay, &lm, j->wsize, c->tp, c->pp, c->dp, c->microbatches, c->batch,
                  c->stage_layers, err, errlen))
    return TRAIN_BAD_CONFIG;
  if (c->sequence_parallel && c->tp < 2) {
    snprintf(err, errlen, "--sequence-parallel splits the sequence over the tensor-parallel ranks "
             "but --tp is %d; add --tp 2 or more (and launch T x P x D ranks) or drop "
             "--sequence-parallel", c->tp);
    return TRAIN_BAD_CONFIG;
  }
  if (c->sequence_parallel && c->seq_len % c->tp) {
    snprintf(err, errlen, "--sequence-parallel splits each sequence of %d tokens over --tp %d "
             "ranks, but %d is not divisible by %d; choose a --seq-len (or --ctx) that is a "
             "multiple of %d", c->seq_len, c->tp, c->seq_len, c->tp, c->tp);
    return TRAIN_BAD_CONFIG;
  }
  if (data_check_batch(j->ds, DATA_TRAIN, c->batch, c->seq_len, err, errlen))
    return TRAIN_BAD_CONFIG;
  if (valset_size(j->ds, DATA_VAL, c->eval_tokens, c->seq_len, &j->val_seqs, err, errlen))
    return TRAIN_BAD_CONFIG;
  const int P = j->lay->pp;
  j->tp_rank = layout_tp_of(j->lay, j->wrank);
  j->stage = layout_stage_of(j->lay, j->wrank);
  j->replica = layout_replica_of(j->lay, j->wrank);
  j->rows = c->batch / j->lay->dp;
  if (rank_status_open(c->out_dir, j->wrank, j->wsize, j->stage, j->replica, err, errlen))
    strata_warn("%s; no status record", err);
  const int lb = j->lay->layer_begin[j->stage], le = j->lay->layer_begin[j->stage + 1];
  if (c->arch == CKPT_ARCH_LLAMA) {
    llama_range_t range = {lb, le, j->stage == 0, j->stage == P - 1, j->tp_rank, j->lay->tp};
    if (llama_create_range(&c->llama, range, &j->lm, err, errlen))
      return TRAIN_BAD_CONFIG;
    j->sm = stage_of_llama(j->lm);
  } else {
    gpt2_range_t range = {lb, le, j->stage == 0, j->stage == P - 1, .tp_rank = j->tp_rank,
                          .tp_size = j->lay->tp};
    if (gpt2_create(&c->model, range, &j->m, err, errlen)) return TRAIN_BAD_CONFIG;
    j->sm = stage_of_gpt2(j->m);
  }
  if (j->m && gpt2_set_recompute(j->m, (gpt2_recompute_t)c->recompute)) {
    snprintf(err, errlen, "--recompute: unknown mode %d (none, selective or full)", c->recompute);
    return TRAIN_BAD_CONFIG;
  }
  if (c->resume) {
    j->start_step = (int64_t)j->state->step;
    j->tokens_seen = j->state->tokens_seen;
  }
  return TRAIN_OK;
}

/* The world communicator on the chosen transport and its splits: the stage's TP group, the
 * pipeline, the DP group, the tied-embedding pair, the replica (see the top of the file); the
 * model gets its TP group. Rank 0 prints the job and the layout. */
static int dist_connect(dist_job_t *j) {
  const train_config_t *c = &j->c;
  comms_t *cm = &j->cm;
  const int T = j->lay->tp, P = j->lay->pp, t = j->tp_rank, stage = j->stage, replica = j->replica;
  coll_config_t cc = coll_config_default();
  cc.transport = (coll_transport_kind_t)c->transport;
  if (c->ofi_provider) cc.ofi_provider = c->ofi_provider;
  if (coll_comm_create(MPI_COMM_WORLD, &cc, &cm->world) != COLL_OK) {
    snprintf(j->err, sizeof j->err, "cannot create the %s communicator (see the message above; "
             "--transport mpi|ofi, --ofi-provider shm|tcp)", c->transport ? "ofi" : "mpi");
    return TRAIN_FAILED;
  }
  /* colours: a group's fixed coordinates; keys: the coordinate that orders it */
  if ((T > 1 && coll_comm_split(cm->world, replica * P + stage, t, &cm->tp) != COLL_OK) ||
      coll_comm_split(cm->world, replica * T + t, stage, &cm->pipe) != COLL_OK ||
      coll_comm_split(cm->world, stage * T + t, replica, &cm->dp) != COLL_OK ||
      coll_comm_split(cm->world, (P > 1 && (stage == 0 || stage == P - 1)) ? replica * T + t : -1,
                      stage, &cm->tied) != COLL_OK ||
      (T > 1 && !c->zero && coll_comm_split(cm->world, replica, j->wrank, &cm->rep) != COLL_OK)) {
    snprintf(j->err, sizeof j->err, "cannot split the world communicator: %s",
             coll_last_error(cm->world));
    return TRAIN_FAILED;
  }
  if (j->m && gpt2_set_tp(j->m, cm->tp, c->sequence_parallel, j->err, sizeof j->err)) return TRAIN_FAILED;
  if (j->lm && llama_set_tp(j->lm, cm->tp, j->err, sizeof j->err)) return TRAIN_FAILED;
  if (j->wrank == 0 && !c->quiet) {
    if (j->lm)
      strata_info("Llama: %d kv heads, ffn %d, rms_norm_eps %g, rope_theta %g", c->llama.kv_heads,
                  c->llama.ffn, c->llama.rms_norm_eps, c->llama.rope_theta);
    strata_info("model: %d layers, %d heads, width %d, context %d, vocab %d: %lld parameters; "
                "batch %d x %d tokens, %lld steps, %s schedule, ZeRO-%d, sequence parallelism "
                "%s, recompute %s, precision %s, transport %s, data %s",
                c->model.layers, c->model.heads, c->model.dim, c->model.ctx, c->model.vocab,
                (long long)layout_params_total(&j->lay->model), c->batch, c->seq_len,
                (long long)c->steps, schedule_kind_name((sched_kind_t)c->schedule), c->zero,
                j->m && gpt2_sequence_parallel(j->m) ? "on" : "off",
                gpt2_recompute_name((gpt2_recompute_t)c->recompute),
                memory_precision_name((mem_precision_t)c->precision),
                coll_transport_name(cm->world), j->data_path);
    layout_print(j->lay, stderr);
    fflush(stderr);
  }
  return TRAIN_OK;
}

/* The simulation's options of this run: its schedule, ZeRO, buckets, sequence parallelism and
 * recomputation, the precision trained and Strata's memory accounting. */
static sim_options_t run_sim_options(const train_config_t *c) {
  sim_options_t o = sim_options_default();
  o.kind = (sched_kind_t)c->schedule;
  o.zero = c->zero;
  o.bucket_bytes = c->bucket_mb * 1048576.0;
  /* the device's clock and optimizer / gradient costs in the precision trained, as simulate
   * --precision counts them; the memory stays Strata's accounting of its own buffers */
  o.dtype = c->precision == MEM_PREC_FP32 ? DEV_FP32 : DEV_BF16;
  o.precision = (mem_precision_t)c->precision;
  o.grad_bf16 = c->grad_bf16;
  o.sequence_parallel = c->sequence_parallel && c->tp > 1;
  /* the model's three modes; the memory model's selective-mlp has no counterpart in gpt2.c */
  o.recompute = c->recompute == GPT2_RECOMPUTE_FULL        ? MEM_RECOMPUTE_FULL
                : c->recompute == GPT2_RECOMPUTE_SELECTIVE ? MEM_RECOMPUTE_SELECTIVE
                                                           : MEM_RECOMPUTE_NONE;
  return o;
}

/* The cpu profile's calibration in bf16: the GEMM rate of the bf16 products the run multiplies. */
static void bf16_matmul(int M, int N, int K, const float *a, const float *b, float *c) {
  gemm_bf16(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
}

/* The simulated device: resolution (all ranks agree), the memory fit (a job that does not fit
 * is bad input), the simulated clock. The cpu profile is measured in the run's precision. */
static int dist_device(dist_job_t *j) {
  const train_config_t *c = &j->c;
  const sim_options_t so = run_sim_options(c);
  const mem_options_t mo = sim_mem_options(&so);
  calibrate_set_matmul_dtype(train_matmul_dtype(c->precision));
  if (c->precision != MEM_PREC_FP32) device_set_matmul(bf16_matmul);
  if (sim_clock_resolve_device(c->device, (double)c->device_mem, j->cm.world, j->lay, c->seq_len,
                               so.sequence_parallel && j->lay->tp > 1, calibrate_layer_time, &j->dev,
                               j->err, sizeof j->err))
    return !c->device || !strcmp(c->device, "cpu") ? TRAIN_FAILED : TRAIN_BAD_CONFIG;
  char fit[2048];
  if (memory_fit_check_opt(j->lay, &mo, NULL, j->dev.hbm_bytes, fit, sizeof fit)) {
    snprintf(j->err, sizeof j->err, "the job does not fit on device %s (%s), so it stops before "
             "training: %s", j->dev.name, c->device_mem ? "--device-mem" : "its HBM", fit);
    return TRAIN_BAD_CONFIG;
  }
  if (sim_clock_init_opt(&j->simc, j->lay, &j->dev, &so, j->wrank, j->err, sizeof j->err))
    return TRAIN_FAILED;
  if (j->wrank == 0 && !c->quiet) {
    char dd[512];
    device_summary(&j->dev, dd, sizeof dd);
    strata_info("simulated device: %s; predicted %.4g ms/step", dd, j->simc.res.step_s * 1e3);
    if (c->verbose) {
      device_describe(&j->dev, dd, sizeof dd);
      strata_info("simulated device, every figure: %s", dd);
    }
  }
  return TRAIN_OK;
}

/* The runtime: gradient sync and pipeline over the communicators, reporting to the simulated
 * clock; the step and evaluation buffers; the weights, initialised or resumed. */
static int dist_runtime(dist_job_t *j) {
  const train_config_t *c = &j->c;
  char *err = j->err;
  const size_t errlen = sizeof j->err;
  const int T = c->seq_len;
  comms_t *cm = &j->cm;
  coll_comm_t *norm = c->zero ? cm->world : cm->rep ? cm->rep : cm->pipe;
  if (grad_sync_create(&j->sm, cm->dp, cm->tied, norm, c->bucket_mb, c->zero, c->grad_bf16 ? COLL_BF16 : COLL_F32,
                       &j->gs, err, errlen))
    return TRAIN_FAILED;
  if (pipeline_create(&j->sm, cm->pipe, (sched_kind_t)c->schedule, j->lay->micro,
                      j->lay->micro_batch, T, &j->pl, err, errlen))
    return TRAIN_FAILED;
  if (sim_clock_attach(&j->simc, cm->world, cm->pipe, cm->dp, cm->tied, err, errlen))
    return TRAIN_FAILED;
  sim_clock_step_hooks(&j->simc, &j->hooks); /* and the trace once the coordinator exists */
  pipeline_set_hooks(j->pl, &j->hooks);
  grad_sync_set_hooks(j->gs, &j->hooks);
  const size_t np = j->sm.num_params ? j->sm.num_params : 1;
  j->inputs = malloc(sizeof(int32_t) * (size_t)j->rows * T);
  j->targets = malloc(sizeof(int32_t) * (size_t)j->rows * T);
  j->eval_in = malloc(sizeof(int32_t) * (size_t)j->lay->micro_batch * T);
  j->eval_tg = malloc(sizeof(int32_t) * (size_t)j->lay->micro_batch * T);
  j->full_m = malloc(sizeof(float) * np);
  j->full_v = malloc(sizeof(float) * np);
  if (!j->inputs || !j->targets || !j->full_m || !j->full_v || !j->eval_in || !j->eval_tg) {
    snprintf(err, errlen, "out of memory for a batch of %d x %d tokens", j->rows, T);
    return TRAIN_FAILED;
  }
  if (c->resume) {
    if (j->lm ? ckpt_load_llama(j->resume_dir, j->lm, j->full_m, j->full_v, NULL, err, errlen)
              : ckpt_load(j->resume_dir, j->m, j->full_m, j->full_v, NULL, err, errlen))
      return TRAIN_FAILED;
    grad_sync_set_moments(j->gs, j->full_m, j->full_v);
    grad_sync_optimizer(j->gs)->t = j->start_step;
    if (j->wrank == 0 && !c->quiet)
      strata_info("resumed from %s at step %lld (layout %d x %d x %d)", j->resume_dir,
                  (long long)j->start_step, j->lay->tp, j->lay->pp, j->lay->dp);
  } else if (j->lm) {
    llama_init_params(j->lm, c->seed);
  } else {
    gpt2_init_params(j->m, c->seed);
  }
  train_apply_precision(&j->sm, grad_sync_optimizer(j->gs), c->precision, c->seed, !c->resume);
  return TRAIN_OK;
}

/* The memory of each stage for the coordinator: the model's figure against what this run
 * allocated (max over replicas and TP ranks): parameters + gradients (the shard), optimizer
 * moments and ZeRO buffers (grad_sync), the activations and message buffers (pipeline), and the
 * model's scratch (gpt2_scratch_bytes); and the activations alone (the micro-batches in flight
 * plus the scratch). Collective. */
static int dist_memory_report(dist_job_t *j) {
  const train_config_t *c = &j->c;
  const int P = j->lay->pp;
  j->mem_model = calloc((size_t)P, sizeof(double));
  j->mem_alloc = calloc(2 * (size_t)P, sizeof(double));
  if (!j->mem_model || !j->mem_alloc) {
    snprintf(j->err, sizeof j->err, "out of memory");
    return TRAIN_FAILED;
  }
  j->mem_acts = j->mem_alloc + P;
  const double scratch = (double)j->sm.ops->scratch_bytes(j->sm.model);
  j->mem_alloc[j->stage] = 2.0 * sizeof(float) * (double)j->sm.num_params +
                           (double)grad_sync_alloc_bytes(j->gs) + (double)pipeline_act_bytes(j->pl) +
                           scratch;
  j->mem_acts[j->stage] = (double)pipeline_acts_in_flight_bytes(j->pl) + scratch;
  if (coll_allreduce(j->mem_alloc, j->mem_alloc, 2 * (size_t)P, COLL_F64, COLL_MAX, j->cm.world) !=
      COLL_OK) {
    snprintf(j->err, sizeof j->err, "memory report all-reduce failed: %s",
             coll_last_error(j->cm.world));
    return TRAIN_FAILED;
  }
  const sim_options_t so = run_sim_options(c);
  const mem_options_t mo = sim_mem_options(&so);
  for (int s = 0; s < P; s++) {
    mem_stage_t ms;
    memory_stage_opt(j->lay, s, &mo, &ms);
    j->mem_model[s] = ms.total_bytes;
  }
  coord_sim_t csim = {.device = j->dev.name, .capacity_bytes = j->dev.hbm_bytes,
                      .res = &j->simc.res, .mem_model_bytes = j->mem_model,
                      .mem_alloc_bytes = j->mem_alloc, .mem_act_bytes = j->mem_acts};
  coord_set_sim(j->co, &csim);
  return TRAIN_OK;
}

/* The coordinator (rank 0 writes the run directory's reports), the trace hooks, the memory. */
static int dist_coordinator(dist_job_t *j) {
  const train_config_t *c = &j->c;
  coord_info_t info = {.layout = j->lay,
                       .model = train_model_cfg(&c->model),
                       .out_dir = c->out_dir,
                       .transport = coll_transport_name(j->cm.world),
                       .start_step = j->start_step,
                       .total_steps = c->steps,
                       .log_every = c->log_every,
                       .quiet = c->quiet,
                       .append = c->resume != NULL,
                       .bucket_mb = c->bucket_mb,
                       .grad_dtype = c->grad_bf16 ? "bf16" : "fp32",
                       .sequence_parallel = j->m && gpt2_sequence_parallel(j->m),
                       .recompute = gpt2_recompute_name((gpt2_recompute_t)c->recompute),
                       .arch = ckpt_arch_name((ckpt_arch_t)c->arch)};
  train_config_to_state(&info.train, c, j->data_path);
  if (coord_create(j->cm.world, &info, &j->co, j->err, sizeof j->err)) return TRAIN_FAILED;
  coord_step_hooks(j->co, &j->hooks);
  return dist_memory_report(j);
}

/* ---- the step ---- */

/* What one step measured, for its StepReport. */
typedef struct {
  double t0_s;          /* the step's start (strata_now_s) */
  pipeline_stats_t ps;  /* the schedule's loss, communication and idle seconds */
  double ss;            /* global squared gradient norm */
  float lr;             /* as used in the update */
  double sync_comm_s;   /* grad_sync's communication seconds up to the update */
  double sync_wait_s;   /* grad_sync's wait seconds */
  double update_comm_s; /* the update's communication seconds (ZeRO-1 all-gather) */
} dist_step_t;

/* Step `step` (0-based) up to the update: the replica's rows, the stage's schedule, the gradient
 * reductions, the global norm, AdamW. 0, or -1 with a message. */
static int dist_step(dist_job_t *j, int64_t step, dist_step_t *st) {
  const train_config_t *c = &j->c;
  const int P = j->lay->pp, T = c->seq_len;
  rank_status_step(step + 1);
  fault_point(FAULT_AT_STEP, step + 1);
  st->t0_s = strata_now_s();
  coll_busy(j->cm.tp, &j->tp_busy0, NULL); /* evaluation and checkpoints are not the step's */
  j->sm.ops->zero_grad(j->sm.model);
  if ((j->stage == 0 || j->stage == P - 1) &&
      data_fetch(j->ds, DATA_TRAIN, c->seed, (uint64_t)step, c->batch, T, j->replica * j->rows,
                 j->rows, j->inputs, j->targets, j->err, sizeof j->err))
    return -1;
  if (pipeline_step(j->pl, j->inputs, j->targets, j->gs, &st->ps, j->err, sizeof j->err))
    return -1;
  double ta = coord_now(j->co);
  st->ss = 0;
  if (grad_sync_finish(j->gs, &st->ss, j->err, sizeof j->err)) return -1;
  sim_clock_sync_done(&j->simc);
  const double tz = coord_now(j->co);
  const double *b0, *b1;
  int nb = grad_sync_bucket_times(j->gs, &b0, &b1);
  for (int b = 0; b < nb; b++) { /* the rest starts once the buckets are complete */
    coord_trace(j->co, TRACE_ALLREDUCE, b, coord_from_mono(j->co, b0[b]),
                coord_from_mono(j->co, b1[b]));
    if (coord_from_mono(j->co, b1[b]) > ta) ta = coord_from_mono(j->co, b1[b]);
  }
  coord_trace(j->co, TRACE_ALLREDUCE, -1, ta < tz ? ta : tz, tz);
  if (!isfinite(st->ss)) {
    snprintf(j->err, sizeof j->err, "the gradient norm became %g at step %lld; lower --lr (now %g)",
             sqrt(st->ss), (long long)step + 1, c->opt.lr);
    return -1;
  }
  st->sync_comm_s = grad_sync_stats(j->gs)->comm_s;
  st->sync_wait_s = grad_sync_stats(j->gs)->wait_s;
  float scale = adamw_clip_scale(st->ss, c->opt.grad_clip);
  /* rounded to float as the single-rank loop does (train.c), so P=1 x D=1 is bit-identical */
  st->lr = (float)adamw_lr_at(&c->opt, step);
  double to = coord_now(j->co);
  rank_status_op(RS_OPTIMIZER, -1);
  if (grad_sync_update(j->gs, &c->opt, st->lr, scale, j->err, sizeof j->err)) return -1;
  sim_clock_update_done(&j->simc);
  coord_trace(j->co, TRACE_OPTIM, -1, to, coord_now(j->co));
  st->update_comm_s = grad_sync_stats(j->gs)->comm_s - st->sync_comm_s;
  if (st->update_comm_s < 0) st->update_comm_s = 0;
  return 0;
}

/* The step's StepReport to the coordinator (collective), and the loss the checkpoint records.
 * 0 or -1. */
static int dist_report(dist_job_t *j, int64_t step, const dist_step_t *st) {
  const int T = j->c.seq_len;
  /* The wait in the previous step's report gather is this rank waiting for the slowest one
   * (the pipeline's tail bubble, replica imbalance): counted as idle time of this step. */
  double step_s = strata_now_s() - st->t0_s + j->sync_wait_s;
  uint64_t sent = 0, recvd = 0;
  comms_traffic(&j->cm, &sent, &recvd);
  strata_step_report_t rep;
  strata_step_report_init(&rep);
  rep.step = (uint64_t)step + 1;
  rep.rank = j->wrank;
  rep.stage = j->stage;
  rep.replica = j->replica;
  rep.tp_rank = j->tp_rank;
  /* every TP rank of the last stage computes the same loss: t = 0 reports it */
  rep.has_loss = j->stage == j->lay->pp - 1 && j->tp_rank == 0 && st->ps.n_loss > 0;
  rep.loss = rep.has_loss ? st->ps.loss_sum / st->ps.n_loss : 0;
  rep.tokens = (uint64_t)j->rows * (uint64_t)T;
  /* the TP collectives run inside forward and backward (pipeline compute): moved to comm */
  double tp_busy = 0;
  coll_busy(j->cm.tp, &tp_busy, NULL);
  rep.tp_comm_s = tp_busy - j->tp_busy0;
  if (rep.tp_comm_s < 0) rep.tp_comm_s = 0;
  j->tp_busy0 = tp_busy;
  rep.comm_s = st->ps.comm_s + st->sync_comm_s + st->update_comm_s + rep.tp_comm_s;
  rep.idle_s = st->ps.idle_s + st->sync_wait_s + j->sync_wait_s;
  rep.compute_s = step_s - rep.comm_s - rep.idle_s;
  if (rep.compute_s < 0) rep.compute_s = 0;
  rep.simulated_s = sim_clock_step(&j->simc);
  rep.bytes_sent = sent - j->sent0;
  rep.bytes_recv = recvd - j->recv0;
  j->sent0 = sent;
  j->recv0 = recvd;
  double loss = NAN, tg = strata_now_s();
  rank_status_op(RS_REPORT, -1);
  if (coord_step(j->co, &rep, step_s, st->lr, sqrt(st->ss), &loss, j->err, sizeof j->err))
    return -1;
  j->sync_wait_s = strata_now_s() - tg;
  j->tokens_seen += (uint64_t)j->c.batch * (uint64_t)T;
  /* the checkpoint records rank 0's view of the loss; other ranks keep their own */
  j->last_loss = j->wrank == 0 ? loss : (rep.has_loss ? rep.loss : j->last_loss);
  return 0;
}

/* After step `step` (1-based): what is due, an evaluation, then a checkpoint. 0 or -1. */
static int dist_step_end(dist_job_t *j, int64_t step) {
  const train_config_t *c = &j->c;
  train_due_t due = train_step_due(c, step);
  /* a checkpoint in flight is from an earlier step: it completes by the end of the step after
   * it, so a crash loses at most one step more than with synchronous checkpoints */
  if (poll_checkpoint(j, step, 2)) return -1;
  if (due.eval) {
    double val = NAN;
    rank_status_op(RS_EVAL, -1);
    if (run_eval(j, &val)) return -1;
    coord_set_val_loss(j->co, step, val, j->val_seqs * c->seq_len);
    char vl[96];
    valset_format_loss(vl, sizeof vl, val, c->model.vocab);
    if (j->wrank == 0 && !c->quiet && c->eval_every > 0)
      strata_info("step %lld: validation loss %s", (long long)step, vl);
  }
  if (due.ckpt) {
    double tc = coord_now(j->co);
    rank_status_op(RS_CHECKPOINT, -1);
    const double loss = isfinite(j->last_loss) ? j->last_loss : 0;
    if (c->ckpt_async ? save_checkpoint_async(j, (uint64_t)step, loss)
                      : save_checkpoint(j, (uint64_t)step, loss))
      return -1;
    coord_trace(j->co, TRACE_CKPT, -1, tc, coord_now(j->co));
  }
  return 0;
}

/* ---- the end ---- */

static int dist_finish(dist_job_t *j) {
  rank_status_op(RS_FINISH, -1);
  if (poll_checkpoint(j, j->c.steps, 1)) return TRAIN_FAILED; /* complete before the exit */
  sim_clock_report(&j->simc, j->cm.world, j->c.quiet);
  return coord_finish(j->co, j->err, sizeof j->err) ? TRAIN_FAILED : TRAIN_OK;
}

static void dist_free(dist_job_t *j) {
  ckpt_async_free(j->ckw); /* joined before the model it reads is freed */
  free(j->ck_state);
  coord_free(j->co);
  sim_clock_free(&j->simc);
  free(j->mem_model);
  free(j->mem_alloc);
  pipeline_free(j->pl);
  grad_sync_free(j->gs);
  free(j->inputs);
  free(j->targets);
  free(j->eval_in);
  free(j->eval_tg);
  free(j->full_m);
  free(j->full_v);
  gpt2_free(j->m);
  llama_free(j->lm);
  data_close(j->ds);
  coll_comm_destroy(j->cm.rep);
  coll_comm_destroy(j->cm.tied);
  coll_comm_destroy(j->cm.dp);
  coll_comm_destroy(j->cm.pipe);
  coll_comm_destroy(j->cm.tp);
  coll_comm_destroy(j->cm.world);
  free(j->state);
  free(j->lay);
  free(j);
}

/* --eval-only: the resumed checkpoint's validation loss on this layout, printed by rank 0 to
 * nine decimals (tests/dist compares layouts to 1e-6). TRAIN_OK or TRAIN_FAILED. */
static int dist_eval_only(dist_job_t *j) {
  double val = NAN;
  rank_status_op(RS_EVAL, -1);
  if (run_eval(j, &val)) return TRAIN_FAILED;
  if (j->wrank == 0) {
    char vl[96];
    valset_format_loss(vl, sizeof vl, val, j->c.model.vocab);
    strata_info("checkpoint %s: validation loss %.9f over %lld held-out tokens (%s; layout T=%d x "
                "P=%d x D=%d, %d micro-batches)", j->resume_dir, val,
                (long long)(j->val_seqs * j->c.seq_len), vl, j->lay->tp, j->lay->pp, j->lay->dp,
                j->c.microbatches);
  }
  return TRAIN_OK;
}

int train_run_dist(const train_config_t *cin) {
  dist_job_t *j = calloc(1, sizeof *j);
  if (j) {
    j->state = calloc(1, sizeof *j->state);
    j->lay = calloc(1, sizeof *j->lay);
  }
  if (!j || !j->state || !j->lay) {
    strata_error("train: out of memory");
    if (j) dist_free(j);
    return TRAIN_FAILED;
  }
  j->c = *cin;
  j->last_loss = NAN;
  MPI_Comm_rank(MPI_COMM_WORLD, &j->wrank);
  MPI_Comm_size(MPI_COMM_WORLD, &j->wsize);
  gemm_set_threads(j->c.threads > 0 ? j->c.threads : 1);
  if (j->wrank == 0 && !j->c.quiet) {
    char gemm[480];
    gemm_backend_describe(gemm, sizeof gemm);
    strata_info("%s", gemm);
  }

  int rc = dist_configure(j);
  if (rc == TRAIN_OK) rc = dist_connect(j);
  if (rc == TRAIN_OK) rc = dist_device(j);
  if (rc == TRAIN_OK) rc = dist_runtime(j);
  if (rc == TRAIN_OK && j->c.eval_only) rc = dist_eval_only(j);
  else if (rc == TRAIN_OK) rc = dist_coordinator(j);
  if (rc == TRAIN_OK) comms_traffic(&j->cm, &j->sent0, &j->recv0);
  for (int64_t step = j->start_step; rc == TRAIN_OK && !j->c.eval_only && step < j->c.steps; step++) {
    dist_step_t st;
    if (dist_step(j, step, &st) || dist_report(j, step, &st) || dist_step_end(j, step + 1))
      rc = TRAIN_FAILED;
  }
  if (rc == TRAIN_OK && !j->c.eval_only) rc = dist_finish(j);
  if (rc == TRAIN_BAD_CONFIG && j->wrank == 0) strata_error("train: %s", j->err);
  if (rc == TRAIN_FAILED) fault_report_failure("train", j->err);
  dist_free(j);
  return rc;
}
