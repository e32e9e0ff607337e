/* train.c -- the training job on one rank: data, model, AdamW, progress, checkpoints, the run
 * directory (see train.h). train_dist.c runs the same step as P stages x D replicas; this loop
 * stays separate on purpose: it is the plain reference the distributed loop's equivalence tests
 * (tests/dist) compare every layout against, with no pipeline, bucketing or coordinator. What
 * the two share is the bookkeeping around the step (train_loop.h: what is due after a step, its
 * record in steps.jsonl, the ETA, the training state of a checkpoint).
 *
 * A Llama model (train_model.h) without --pp has its data parallelism here (with --pp it runs
 * in train_dist.c as pipeline stages): with --dp D under mpirun -np D every rank holds the whole model and runs this loop on its
 * replica's rows of the global batch (batch / D, in --microbatches micro-batches), the flat
 * gradient buffer is averaged over the replicas with one coll_allreduce, and every rank then
 * takes the same clip factor and AdamW step, so the replicas stay identical. --zero 1 shards
 * the AdamW moments: rank r updates the slice [r*S, r*S + S) of the parameters (S = ceil(N / D))
 * and an all-gather rebuilds them (AdamW is elementwise: the same update as without ZeRO).
 * Rank 0 writes the run directory (steps, reports, checkpoints: the moments all-gathered
 * first); validation is computed on every rank (the same numbers everywhere). */
#include "train.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "ckpt_async.h"
#include "data.h"
#include "env.h"
#include "gemm.h"
#include "log.h"
#include "memory_model.h"
#include "rank_status.h"
#include "run_report.h"
#include "runlog.h"
#include "schedule.h"
#include "strata/coll.h"
#include "strata_proto.h"
#include "trace_json.h"
#include "train_loop.h"
#include "train_model.h"
#include "util.h"
#include "validation.h"

/* The single-rank job, phase to phase (setup, step, step end, finish). */
typedef struct {
  train_config_t c;          /* the configuration, completed by train_prepare */
  char err[1024];            /* the message of the failing phase */
  data_set_t *ds;
  const char *data_path;     /* c.data_path or the default corpus */
  train_model_t tm;          /* GPT-2 or Llama, activations of one micro-batch (mb x T) */
  adamw_t *opt;
  int32_t *inputs, *targets; /* one micro-batch, mb x T tokens */
  int mb, T;                 /* sequences per micro-batch, tokens per sequence */
  int64_t val_seqs;          /* sequences of the validation set (validation.h) */
  strata_train_state_t *state;
  runlog_lines_t steps_log;  /* RUN/steps.jsonl */
  runlog_lines_t val_log;    /* RUN/val.jsonl */
  char resume_dir[4096];
  int64_t start_step;        /* the resumed checkpoint's step, or 0 */
  int64_t step;              /* steps done */
  uint64_t tokens_seen;      /* all steps so far, resumed ones included */
  double t_start_s, train_s; /* wall clock at the first step; summed step seconds */
  double last_loss, val_loss;
  trace_buf_t trace;         /* RUN/trace.json's slices, times since origin_s */
  double origin_s;
  ckpt_async_t *ckw;         /* the background checkpoint writer (--ckpt-async), or NULL */
  /* Llama data parallelism (--dp D > 1; see the top of the file) */
  coll_comm_t *dp;           /* the D replicas, NULL on one rank */
  int rank, D;               /* this replica, replicas (1 on one rank) */
  size_t zS;                 /* ZeRO-1: parameters per rank's slice, ceil(N / D) */
  float *zsend, *zrecv;      /* ZeRO-1: S and D x S floats for the all-gathers */
  float *full_m, *full_v;    /* ZeRO-1: whole moments for checkpoints and resume */
} solo_job_t;

/* One step's figures, for its record and its progress line. */
typedef struct {
  double loss, lr, grad_norm, step_s, tokens_per_s;
} solo_step_t;

/* RUN/report.json of the single-rank loop (README lists the keys), written atomically; non-finite
 * numbers are null. 0, or -1 with a message (RELIABILITY.md, "Full disk": the job exits 1). */
static int write_report(solo_job_t *j, double tokens_per_s, int steps_log_complete,
                        int trace_written) {
  const train_config_t *c = &j->c;
  char path[4200];
  snprintf(path, sizeof path, "%s/report.json", c->out_dir);
  json_object *o = json_object_new_object();
  /* the one-rank layout, under the keys a distributed run's report uses */
  runlog_json_add(o, "world_size", json_object_new_int(j->D));
  runlog_json_add(o, "tp", json_object_new_int(1));
  runlog_json_add(o, "sequence_parallel", json_object_new_boolean(0));
  runlog_json_add(o, "recompute", runlog_json_str("none"));
  runlog_json_add(o, "pp", json_object_new_int(1));
  runlog_json_add(o, "dp", json_object_new_int(j->D));
  runlog_json_add(o, "microbatches", json_object_new_int(c->microbatches));
  runlog_json_add(o, "zero", json_object_new_int(c->zero));
  runlog_json_add(o, "precision", runlog_json_str(memory_precision_name((mem_precision_t)c->precision)));
  runlog_json_add(o, "grad_dtype", runlog_json_str("fp32")); /* --grad-dtype bf16 is refused here */
  json_object *layout = json_object_new_object(), *ranks = json_object_new_array(),
              *r0 = json_object_new_object();
  runlog_json_add(r0, "rank", json_object_new_int(0));
  runlog_json_add(r0, "t", json_object_new_int(0));
  runlog_json_add(r0, "stage", json_object_new_int(0));
  runlog_json_add(r0, "replica", json_object_new_int(0));
  if (ranks && r0) json_object_array_add(ranks, r0);
  else json_object_put(r0);
  runlog_json_add(layout, "ranks", ranks);
  runlog_json_add(o, "layout", layout);
  strata_model_cfg_t mc = train_model_cfg(&c->model);
  runlog_json_add(o, "model", train_model_json(&mc, (int64_t)j->tm.num_params));
  runlog_json_add(o, "arch", runlog_json_str(ckpt_arch_name((ckpt_arch_t)c->arch)));
  strata_train_cfg_t tc;
  train_config_to_state(&tc, c, j->data_path);
  runlog_json_add(o, "config", train_config_json(&tc, "microbatches", c->microbatches));
  runlog_json_add(o, "steps_done", json_object_new_int64(j->step));
  runlog_json_add(o, "final_loss", runlog_json_num(j->last_loss, "%.9g"));
  runlog_json_add(o, "val_loss", runlog_json_num(j->val_loss, "%.9g"));
  runlog_json_add(o, "val_tokens", json_object_new_int64(j->val_seqs * j->T));
  runlog_json_add(o, "tokens_per_s", runlog_json_num(tokens_per_s, "%.6g"));
  runlog_json_add(o, "train_s", runlog_json_num(j->train_s, "%.6g"));
  runlog_json_add(o, "steps_log_complete", json_object_new_boolean(steps_log_complete));
  runlog_json_add(o, "trace_written", json_object_new_boolean(trace_written));
  int rc = runlog_json_write(path, o, j->err, sizeof j->err);
  json_object_put(o);
  return rc;
}

/* --dp D: the replicas' communicator (MPI_COMM_WORLD, whose size must be D). 0, or -1 with a
 * message. */
static int dp_connect(solo_job_t *j) {
  coll_config_t cc = coll_config_default();
  cc.transport = (coll_transport_kind_t)j->c.transport;
  if (j->c.ofi_provider) cc.ofi_provider = j->c.ofi_provider;
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &j->rank);
  if (world != j->c.dp)
    return strata_fail(j->err, sizeof j->err, "--dp %d needs mpirun -np %d (the job's rank count is %d)",
                       j->c.dp, j->c.dp, world);
  if (coll_comm_create(MPI_COMM_WORLD, &cc, &j->dp) != COLL_OK)
    return strata_fail(j->err, sizeof j->err, "cannot create the data-parallel communicator (see "
                       "the message above; --transport mpi|ofi)");
  j->D = world;
  return 0;
}

/* The optimizer: AdamW over all parameters, or with ZeRO-1 over this rank's slice (and the
 * all-gather buffers). 0 or -1. */
static int dp_setup(solo_job_t *j) {
  const size_t n = j->tm.num_params;
  if (!j->dp || !j->c.zero) return adamw_create(0, n, &j->opt, j->err, sizeof j->err);
  j->zS = (n + (size_t)j->D - 1) / (size_t)j->D;
  const size_t begin = j->zS * (size_t)j->rank < n ? j->zS * (size_t)j->rank : n;
  const size_t count = begin + j->zS < n ? j->zS : n - begin;
  j->zsend = calloc(j->zS, sizeof(float));
  j->zrecv = calloc(j->zS * (size_t)j->D, sizeof(float));
  j->full_m = calloc(n, sizeof(float));
  j->full_v = calloc(n, sizeof(float));
  if (!j->zsend || !j->zrecv || !j->full_m || !j->full_v)
    return strata_fail(j->err, sizeof j->err, "out of memory for the ZeRO-1 buffers of %zu "
                       "parameters", n);
  return adamw_create(begin, count, &j->opt, j->err, sizeof j->err);
}

/* Agreement of the replicas on ok (1) / failed (0). */
static int dp_all_ok(solo_job_t *j, int ok) {
  int32_t v = ok ? 1 : 0;
  if (coll_allreduce(&v, &v, 1, COLL_I32, COLL_MIN, j->dp) != COLL_OK) return 0;
  return v == 1;
}

/* The replicas' mean gradient (in place) and mean loss. 0, or -1 with a message. */
static int dp_average(solo_job_t *j, double *loss) {
  if (coll_allreduce(j->tm.grads, j->tm.grads, j->tm.num_params, COLL_F32, COLL_AVG, j->dp) != COLL_OK ||
      coll_allreduce(loss, loss, 1, COLL_F64, COLL_SUM, j->dp) != COLL_OK)
    return strata_fail(j->err, sizeof j->err, "gradient all-reduce failed: %s", coll_last_error(j->dp));
  *loss /= j->D;
  return 0;
}

/* ZeRO-1: every rank's slice of the flat array x (N floats; this rank's slice current) into
 * every rank's x. 0, or -1 with a message. */
static int dp_gather(solo_job_t *j, float *x) {
  const size_t n = j->tm.num_params;
  memcpy(j->zsend, x + j->opt->begin, sizeof(float) * j->opt->count);
  if (coll_allgather(j->zsend, j->zrecv, j->zS, COLL_F32, j->dp) != COLL_OK)
    return strata_fail(j->err, sizeof j->err, "ZeRO-1 all-gather failed: %s", coll_last_error(j->dp));
  for (int r = 0; r < j->D; r++) { /* slice r at r * S, the last one shorter */
    const size_t b = j->zS * (size_t)r;
    if (b < n) memcpy(x + b, j->zrecv + b, sizeof(float) * (b + j->zS < n ? j->zS : n - b));
  }
  return 0;
}

/* Set-up: configuration (TRAIN_BAD_CONFIG on bad input), the model, its optimizer and buffers,
 * the weights (initialised, or loaded with --resume), the status record and steps.jsonl. */
static int solo_setup(solo_job_t *j) {
  train_config_t *c = &j->c;
  if (train_prepare(c, j->state, j->resume_dir, sizeof j->resume_dir, &j->ds, &j->data_path,
                    j->err, sizeof j->err))
    return TRAIN_BAD_CONFIG;
  if (c->batch < 1 || c->microbatches < 1 || c->batch % (c->microbatches * j->D)) {
    snprintf(j->err, sizeof j->err, "--batch %d must be a positive multiple of --microbatches %d%s",
             c->batch, c->microbatches, j->D > 1 ? " x --dp" : "");
    return TRAIN_BAD_CONFIG;
  }
  if (data_check_batch(j->ds, DATA_TRAIN, c->batch, c->seq_len, j->err, sizeof j->err))
    return TRAIN_BAD_CONFIG;
  if (valset_size(j->ds, DATA_VAL, c->eval_tokens, c->seq_len, &j->val_seqs, j->err, sizeof j->err))
    return TRAIN_BAD_CONFIG;
  j->mb = c->batch / (c->microbatches * j->D);
  j->T = c->seq_len;
  if (c->arch == CKPT_ARCH_LLAMA) {
    c->llama = train_llama_config(&c->model, &c->llama);
    c->ckpt_async = 0; /* the background writer (ckpt_async.h) saves GPT-2 models only */
  }
  int mrc = train_model_create(&j->tm, (ckpt_arch_t)c->arch, &c->model, &c->llama, j->mb, j->T,
                               j->err, sizeof j->err);
  if (mrc) return mrc == -1 ? TRAIN_BAD_CONFIG : TRAIN_FAILED;
  if (dp_setup(j)) return TRAIN_FAILED;
  j->inputs = malloc(sizeof(int32_t) * (size_t)j->mb * j->T);
  j->targets = malloc(sizeof(int32_t) * (size_t)j->mb * j->T);
  if (!j->inputs || !j->targets) {
    snprintf(j->err, sizeof j->err, "out of memory for a batch of %d x %d tokens", j->mb, j->T);
    return TRAIN_FAILED;
  }
  if (c->resume) {
    if (train_model_load(&j->tm, j->resume_dir, j->zS ? j->full_m : j->opt->m,
                         j->zS ? j->full_v : j->opt->v, j->state, j->err, sizeof j->err))
      return TRAIN_FAILED;
    if (j->zS) { /* this rank's slice of the whole moments */
      memcpy(j->opt->m, j->full_m + j->opt->begin, sizeof(float) * j->opt->count);
      memcpy(j->opt->v, j->full_v + j->opt->begin, sizeof(float) * j->opt->count);
    }
    j->start_step = (int64_t)j->state->step;
    j->tokens_seen = j->state->tokens_seen;
    j->opt->t = j->start_step;
    strata_info("resumed from %s at step %lld", j->resume_dir, (long long)j->start_step);
  } else {
    train_model_init(&j->tm, c->seed);
  }
  const stage_model_t sm = j->tm.gpt ? stage_of_gpt2(j->tm.gpt) : stage_of_llama(j->tm.llama);
  train_apply_precision(&sm, j->opt, c->precision, c->seed, !c->resume);
  if (rank_status_open(c->out_dir, j->rank, j->D, 0, j->rank, j->err, sizeof j->err)) /* RUN/status/rank-R */
    strata_warn("%s; no status record", j->err);
  char steps_path[4200];
  snprintf(steps_path, sizeof steps_path, "%s/steps.jsonl", c->out_dir);
  /* A fresh run starts a fresh log; a resumed run appends after its checkpoint's step. */
  if (!c->eval_only && j->rank == 0 && (runlog_lines_open(&j->steps_log, steps_path, c->resume != NULL, j->err, sizeof j->err) ||
                        train_val_log_open(&j->val_log, c->out_dir, c->resume != NULL, j->err, sizeof j->err)))
    return TRAIN_FAILED;
  int64_t cap; /* a bad value is refused by strata at start-up (worker/base/env.c) */
  env_read_int("STRATA_TRACE_MAX_EVENTS", 200000, &cap, NULL, 0);
  j->trace.max = cap > 0 ? (size_t)cap : 0;
  j->origin_s = strata_now_s();
  char llama[160] = "";
  if (c->arch == CKPT_ARCH_LLAMA)
    snprintf(llama, sizeof llama, "Llama (%d kv heads, ffn %d, rms_norm_eps %g, rope_theta %g), ",
             c->llama.kv_heads, c->llama.ffn, c->llama.rms_norm_eps, c->llama.rope_theta);
  if (!c->quiet)
    strata_info("model: %s%d layers, %d heads, width %d, context %d, vocab %d: %zu parameters; "
                "batch %d x %d tokens, %lld steps, precision %s, data %s", llama,
                c->model.layers, c->model.heads, c->model.dim, c->model.ctx, c->model.vocab,
                j->tm.num_params, c->batch, j->T, (long long)c->steps,
                memory_precision_name((mem_precision_t)c->precision), j->data_path);
  return TRAIN_OK;
}

/* Step `step` (0-based): M micro-batches forward and backward with loss scale 1/M, the global
 * norm's clip factor, AdamW. 0, or -1 with a message (a failed fetch, a non-finite loss). */
static int solo_step(solo_job_t *j, int64_t step, solo_step_t *out) {
  const train_config_t *c = &j->c;
  double t0 = strata_now_s();
  rank_status_step(step + 1);
  train_model_zero_grad(&j->tm);
  double loss = 0;
  for (int mi = 0; mi < c->microbatches; mi++) {
    if (data_fetch(j->ds, DATA_TRAIN, c->seed, (uint64_t)step, c->batch, j->T,
                   j->rank * (c->batch / j->D) + mi * j->mb, j->mb, j->inputs, j->targets, j->err,
                   sizeof j->err))
      return -1;
    rank_status_op(RS_PIPE_FWD, mi);
    double tf = strata_now_s();
    loss += train_model_forward(&j->tm, j->inputs, j->targets);
    double tb = strata_now_s();
    trace_buf_add(&j->trace, "fwd", 0, mi, step + 1, tf - j->origin_s, tb - j->origin_s);
    rank_status_op(RS_PIPE_BWD, mi);
    train_model_backward(&j->tm, 1.0f / (float)c->microbatches);
    trace_buf_add(&j->trace, "bwd", 0, mi, step + 1, tb - j->origin_s, strata_now_s() - j->origin_s);
  }
  loss /= c->microbatches;
  if (j->dp && dp_average(j, &loss)) return -1;
  double ss = adamw_sum_squares(j->tm.grads, j->tm.num_params);
  float scale = adamw_clip_scale(ss, c->opt.grad_clip);
  float lr = adamw_lr_at(&c->opt, step); /* rounded to float: train_dist.c does the same */
  rank_status_op(RS_OPTIMIZER, -1);
  double to = strata_now_s();
  adamw_step(j->opt, &c->opt, j->tm.params, j->tm.grads, j->tm.tensors, j->tm.num_tensors, lr,
             scale);
  if (j->zS && dp_gather(j, j->tm.params)) return -1;
  trace_buf_add(&j->trace, "optim", 0, -1, step + 1, to - j->origin_s, strata_now_s() - j->origin_s);
  double dt = strata_now_s() - t0;
  j->train_s += dt;
  j->tokens_seen += (uint64_t)((double)c->batch * j->T);
  j->last_loss = loss;
  if (!isfinite(loss)) {
    snprintf(j->err, sizeof j->err, "loss became %f at step %lld; lower --lr (now %g)", loss,
             (long long)step + 1, c->opt.lr);
    return -1;
  }
  *out = (solo_step_t){loss, lr, sqrt(ss), dt, (double)c->batch * j->T / dt};
  return 0;
}

/* The validation loss into j->val_loss, and its line in val.jsonl (when training). 0 or -1. */
static int solo_eval(solo_job_t *j) {
  rank_status_op(RS_EVAL, -1);
  if (valset_loss(&j->tm, j->mb, j->ds, DATA_VAL, j->val_seqs, j->T, j->inputs,
                  j->targets, &j->val_loss, j->err, sizeof j->err))
    return -1;
  if (!j->c.eval_only && j->rank == 0) train_val_log_append(&j->val_log, j->step, j->val_loss, j->val_seqs * j->T);
  return 0;
}

/* The background checkpoint write, if one is pending: joined when it has ended, or with `wait`
 * (1: the end of the run; 2: the end of the step after the checkpoint's -- a checkpoint completes
 * by then, so a crash loses at most one step more than with synchronous checkpoints -- or the
 * next checkpoint is due; a wait of 1 ms or more is logged with its length). Its failure
 * fails the job here, at a step boundary. 0 or -1. */
static int solo_ckpt_poll(solo_job_t *j, int64_t step, int wait) {
  if (!j->ckw || !ckpt_async_pending(j->ckw) || (!wait && ckpt_async_busy(j->ckw))) return 0;
  const int busy = ckpt_async_busy(j->ckw);
  char dir[4200], msg[1024];
  snprintf(dir, sizeof dir, "%s", ckpt_async_dir(j->ckw));
  double waited_s = 0;
  if (ckpt_async_join(j->ckw, &waited_s, msg, sizeof msg)) {
    snprintf(j->err, sizeof j->err, "the background write of checkpoint %s failed: %s", dir, msg);
    return -1;
  }
  if (!j->c.quiet && busy && wait == 2 && waited_s >= 0.001)
    strata_info("step %lld: waited %.3f s for the background write of %s to complete",
                (long long)step, waited_s, dir);
  if (!j->c.quiet) strata_info("checkpoint %s", dir);
  return 0;
}

/* RUN/ckpt-<step> with the model, the AdamW moments and the training state: written before the
 * next step (--no-ckpt-async), or copied to the host snapshot and written in the background
 * once the previous background write is complete. 0 or -1. */
static int solo_checkpoint(solo_job_t *j, int64_t step, double loss) {
  const train_config_t *c = &j->c;
  char dir[4200];
  ckpt_step_dir(dir, sizeof dir, c->out_dir, (uint64_t)step);
  if (c->ckpt_async && solo_ckpt_poll(j, step, 2)) return -1;
  train_state_fill(j->state, c, j->data_path, (uint64_t)step, j->tokens_seen, loss, 1, j->D,
                   &c->model.layers);
  rank_status_op(RS_CHECKPOINT, -1);
  double tc = strata_now_s();
  if (c->ckpt_async) {
    if ((!j->ckw && ckpt_async_create(&j->ckw, j->err, sizeof j->err)) ||
        ckpt_async_snapshot(j->ckw, j->tm.params, j->opt->m, j->opt->v, j->tm.num_params, j->err,
                            sizeof j->err) ||
        ckpt_async_save(j->ckw, dir, j->tm.gpt, j->state, c->out_dir, c->keep, step, j->err,
                        sizeof j->err))
      return -1;
    trace_buf_add(&j->trace, "checkpoint", 0, -1, step, tc - j->origin_s, strata_now_s() - j->origin_s);
    return 0;
  }
  if (j->zS) { /* every rank: the whole moments, for rank 0 to write */
    memcpy(j->full_m + j->opt->begin, j->opt->m, sizeof(float) * j->opt->count);
    memcpy(j->full_v + j->opt->begin, j->opt->v, sizeof(float) * j->opt->count);
    if (dp_gather(j, j->full_m) || dp_gather(j, j->full_v)) return -1;
  }
  int ok = j->rank != 0 || train_model_save(&j->tm, dir, j->zS ? j->full_m : j->opt->m,
                                            j->zS ? j->full_v : j->opt->v, j->state, j->err,
                                            sizeof j->err) == 0;
  if (j->dp && !dp_all_ok(j, ok)) {
    if (ok) snprintf(j->err, sizeof j->err, "checkpoint %s: rank 0 failed to write it", dir);
    return -1;
  }
  if (!ok) return -1;
  if (j->rank != 0) return 0;
  trace_buf_add(&j->trace, "checkpoint", 0, -1, step, tc - j->origin_s, strata_now_s() - j->origin_s);
  if (c->keep > 0 && ckpt_prune(c->out_dir, c->keep, j->err, sizeof j->err) < 0) return -1;
  if (!c->quiet) strata_info("checkpoint %s", dir);
  return 0;
}

/* After step `step` (1-based): its record, then what is due -- a periodic evaluation, the
 * progress line, a checkpoint (the end-of-run evaluation follows in solo_finish). 0 or -1. */
static int solo_step_end(solo_job_t *j, int64_t step, const solo_step_t *s) {
  const train_config_t *c = &j->c;
  json_object *rec = train_step_record(step, s->loss, s->lr, s->grad_norm, s->tokens_per_s, s->step_s);
  run_step_add_comm(rec, &(run_step_comm_t){0, 0, 0, 0, 0, NAN}); /* one rank: no communication */
  if (j->rank == 0) runlog_steps_append(&j->steps_log, step, rec); /* a failure warns once; the run goes on */
  else json_object_put(rec);
  train_due_t due = train_step_due(c, step);
  if (train_every(step, c->eval_every)) {
    if (solo_eval(j)) return -1;
    char vl[96];
    valset_format_loss(vl, sizeof vl, j->val_loss, c->model.vocab);
    if (!c->quiet) strata_info("step %lld: validation loss %s", (long long)step, vl);
  }
  if (!c->quiet && train_progress_due(step, j->start_step, c->steps, c->log_every)) {
    char eta[32];
    train_format_eta(eta, sizeof eta, strata_now_s() - j->t_start_s, step - j->start_step,
                     c->steps - step);
    strata_info("step %lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | ETA %s",
                (long long)step, (long long)c->steps, s->loss, s->lr, s->grad_norm,
                s->tokens_per_s, eta);
  }
  if (solo_ckpt_poll(j, step, 2)) return -1; /* the checkpoint of an earlier step */
  if (due.ckpt && solo_checkpoint(j, step, s->loss)) return -1;
  return 0;
}

/* RUN/trace.json (trace_json.h): one process, rank 0, with its compute track. A file that cannot
 * be written warns (RELIABILITY.md, "Full disk": the trace is a diagnostic view). 1 if written. */
static int solo_write_trace(solo_job_t *j) {
  char path[4200], err[RUNLOG_PATH_MAX + 256];
  snprintf(path, sizeof path, "%s/trace.json", j->c.out_dir);
  trace_json_t t;
  if (trace_json_open(&t, path, err, sizeof err) == 0) {
    trace_json_process(&t, 0, "rank 0 (t 0, stage 0, replica 0)", NULL, j->trace.s, j->trace.n);
    if (trace_json_commit(&t, err, sizeof err) == 0) return 1;
  }
  strata_warn("%s; the trace of this run is not saved (report.json records \"trace_written\": "
              "false)", err);
  return 0;
}

/* RUN/report.pb: the RunReport of one rank (one stage, all of its time compute). 0, or -1 with
 * a message. */
static int solo_write_report_pb(solo_job_t *j, double tokens_per_s, char *err, size_t errlen) {
  strata_run_report_t *rr = calloc(1, sizeof *rr);
  snprintf(err, errlen, "cannot write report.pb: out of memory");
  int rc = -1;
  if (rr) {
    strata_run_report_init(rr);
    rr->world_size = j->D;
    rr->model = train_model_cfg(&j->c.model);
    train_config_to_state(&rr->train, &j->c, j->data_path);
    rr->layout.tp = rr->layout.pp = 1;
    rr->layout.dp = j->D;
    rr->layout.n_stage_layers = 1;
    rr->layout.stage_layers[0] = j->c.model.layers;
    rr->steps = (uint64_t)j->step;
    rr->final_loss = j->last_loss;
    rr->tokens_per_s = tokens_per_s;
    rr->wall_s = strata_now_s() - j->t_start_s;
    rr->n_stages = 1;
    rr->stages[0] = (strata_stage_summary_t){.stage = 0, .layer_begin = 0,
                                             .layer_end = j->c.model.layers,
                                             .params = j->tm.num_params, .compute_s = j->train_s};
    rc = run_report_pb_write(j->c.out_dir, rr, err, errlen);
    free(rr);
  }
  return rc;
}

/* The end of the run: the validation loss when --eval-every is 0, the summary line,
 * steps.jsonl closed, trace.json, report.pb and report.json. 0 or -1. */
static int solo_finish(solo_job_t *j) {
  const train_config_t *c = &j->c;
  if (c->eval_every == 0 && solo_eval(j)) return -1;
  if (solo_ckpt_poll(j, j->step, 1)) return -1; /* the last checkpoint is complete before exit */
  double tokens_per_s =
      j->train_s > 0 ? (double)c->batch * j->T * (double)(j->step - j->start_step) / j->train_s : 0;
  char vl[96];
  valset_format_loss(vl, sizeof vl, j->val_loss, c->model.vocab);
  if (!c->quiet)
    strata_info("done: %lld steps, final loss %.4f, validation loss %s over %lld held-out tokens, "
                "%.0f tokens/s", (long long)j->step, j->last_loss, vl,
                (long long)(j->val_seqs * j->T), tokens_per_s);
  if (j->rank != 0) return 0; /* rank 0 writes the run directory */
  int steps_log_complete = runlog_steps_close(&j->steps_log) & runlog_steps_close(&j->val_log);
  int trace_written = solo_write_trace(j);
  char pb_err[RUNLOG_PATH_MAX + 256];
  int bad_pb = solo_write_report_pb(j, tokens_per_s, pb_err, sizeof pb_err) != 0;
  int bad_json = write_report(j, tokens_per_s, steps_log_complete, trace_written) != 0;
  if (bad_pb || bad_json) { /* both attempted; err names each */
    size_t n = bad_json ? strlen(j->err) : 0;
    snprintf(j->err + n, sizeof j->err - n, "%s%s (the training itself finished: its checkpoints "
             "are complete)", bad_json && bad_pb ? "; " : "", bad_pb ? pb_err : "");
    return -1;
  }
  return 0;
}

static void solo_free(solo_job_t *j) {
  ckpt_async_free(j->ckw); /* joined before the model it reads is freed */
  runlog_lines_close(&j->steps_log, j->err, sizeof j->err); /* still open only on a failed run */
  trace_buf_free(&j->trace);
  runlog_lines_close(&j->val_log, j->err, sizeof j->err);
  free(j->inputs);
  free(j->targets);
  adamw_free(j->opt);
  train_model_free(&j->tm);
  free(j->zsend);
  free(j->zrecv);
  free(j->full_m);
  free(j->full_v);
  coll_comm_destroy(j->dp);
  data_close(j->ds);
  free(j->state);
}

int train_run(const train_config_t *cin) {
  solo_job_t *j = calloc(1, sizeof *j);
  if (j) j->state = calloc(1, sizeof *j->state);
  if (!j || !j->state) {
    strata_error("train: out of memory");
    free(j);
    return TRAIN_FAILED;
  }
  j->c = *cin;
  /* one rank: no sharding, and its micro-batches run one after another (the checkpoint says so) */
  j->D = 1;
  if (j->c.dp > 1 && dp_connect(j)) {
    strata_error("train: %s", j->err);
    free(j->state);
    free(j);
    return TRAIN_FAILED;
  }
  if (j->D == 1) j->c.zero = 0;
  if (j->rank != 0) j->c.quiet = 1; /* rank 0 speaks for the replicas */
  j->c.schedule = SCHED_GPIPE;
  j->steps_log.fd = -1;
  j->val_log.fd = -1;
  j->val_loss = NAN;
  gemm_set_threads(j->c.threads > 0 ? j->c.threads : 1);
  if (!j->c.quiet) {
    char gemm[480];
    gemm_backend_describe(gemm, sizeof gemm);
    strata_info("%s", gemm);
  }

  int rc = solo_setup(j);
  if (rc == TRAIN_OK && j->c.eval_only) { /* --eval-only: the checkpoint's validation loss */
    if (solo_eval(j)) {
      rc = TRAIN_FAILED;
    } else {
      char vl[96];
      valset_format_loss(vl, sizeof vl, j->val_loss, j->c.model.vocab);
      if (j->rank == 0)
        strata_info("checkpoint %s: validation loss %.9f over %lld held-out tokens (%s; one rank, "
                  "%d micro-batches)", j->resume_dir, j->val_loss, (long long)(j->val_seqs * j->T),
                  vl, j->c.microbatches);
    }
  } else if (rc == TRAIN_OK) {
    j->t_start_s = strata_now_s();
    for (j->step = j->start_step; rc == TRAIN_OK && j->step < j->c.steps;) {
      solo_step_t s;
      if (solo_step(j, j->step, &s)) rc = TRAIN_FAILED;
      else if (solo_step_end(j, ++j->step, &s)) rc = TRAIN_FAILED;
    }
    if (rc == TRAIN_OK && solo_finish(j)) rc = TRAIN_FAILED;
  }
  if (rc != TRAIN_OK) strata_error("train: %s", j->err);
  if (rc == TRAIN_FAILED) {
    char st[1100];
    snprintf(st, sizeof st, "failed: %s", j->err);
    rank_status_end(st);
  }
  solo_free(j);
  free(j);
  return rc;
}
