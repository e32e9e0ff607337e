/* train_dist.c -- the distributed training job: P pipeline stages x D data-parallel replicas
 * over MPI_COMM_WORLD (see train.h, layout.h for the rank map, pipeline.h, grad_sync.h,
 * coordinator.h).
 *
 * One step on rank (stage s, replica d):
 *   1. zero gradients; fetch the replica's slice of the step's global batch: sequences
 *      [d * batch/D, (d+1) * batch/D), micro-batch j = the j-th block of mb = batch/(D*M)
 *      (stage 0 uses the inputs, the last stage the targets);
 *   2. run the stage's schedule (pipeline_step); the last micro-batch's backward starts the
 *      bucketed DP all-reduce;
 *   3. grad_sync_finish: tied wte sum, remaining reductions, global squared norm;
 *   4. AdamW with the clip factor (ZeRO-1: slice update and parameter all-gather);
 *   5. StepReport to the coordinator; checkpoint when due (replica 0 of every stage writes its
 *      shard, rank 0 commits).
 * Configuration is validated on every rank from the same inputs (flags, checkpoint, data), so
 * every rank reaches the same verdict without communication; only rank 0 prints it.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "calibrate.h"
#include "checkpoint.h"
#include "strata/coll.h"
#include "coordinator.h"
#include "data.h"
#include "fault.h"
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
#include "util.h"

#define TRAIN_PATH_WORDS 1024 /* checkpoint temp path broadcast as int32 words (4 KiB) */

static void fill_state(strata_train_state_t *s, const train_config_t *c, const layout_t *lay,
                       const char *data_path, uint64_t step, uint64_t tokens, double last_loss) {
  strata_train_state_init(s);
  s->step = step;
  s->data_seed = c->seed;
  s->data_step = step;
  s->tokens_seen = tokens;
  s->rng_state[0] = c->seed;
  s->last_loss = last_loss;
  s->model = (strata_model_cfg_t){c->model.vocab, c->model.ctx, c->model.layers, c->model.heads,
                                  c->model.dim};
  train_config_to_state(&s->train, c, data_path);
  s->layout.pp = lay->pp;
  s->layout.dp = lay->dp;
  s->layout.n_stage_layers = lay->pp;
  for (int i = 0; i < lay->pp; i++) s->layout.stage_layers[i] = layout_stage_layers(lay, i);
}

/* The communicators of one rank. */
typedef struct {
  coll_comm_t *world; /* all ranks */
  coll_comm_t *pipe;  /* the replica's P stages, rank = stage */
  coll_comm_t *dp;    /* the stage's D replicas, rank = replica */
  coll_comm_t *tied;  /* {stage 0, stage P-1} of the replica when P > 1, else NULL */
} comms_t;

static void comms_traffic(const comms_t *cm, uint64_t *sent, uint64_t *recvd) {
  coll_comm_t *all[4] = {cm->world, cm->pipe, cm->dp, cm->tied};
  *sent = *recvd = 0;
  for (int i = 0; i < 4; i++) {
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

/* Collective validation: batches j = 0 .. nb-1 of eval_B = batch / M sequences of the
 * validation split in file order (as the single-rank loop with the same M evaluates them);
 * replica d forwards rows [d*mb, d*mb + mb) of each through its pipeline. Returns the mean loss
 * on every rank in *val (an all-reduce over the world). */
static int run_eval(const comms_t *cm, const layout_t *lay, pipeline_t *pl, const data_set_t *ds,
                    int nb, int eval_B, int T, int32_t *ein, int32_t *etg, double *val, char *err,
                    size_t errlen) {
  const int rank = coll_rank(cm->world), P = lay->pp, D = lay->dp, mb = lay->micro_batch;
  const int stage = layout_stage_of(lay, rank), replica = layout_replica_of(lay, rank);
  double sum = 0;
  int ok = 1;
  for (int j = 0; j < nb && ok; j++) {
    if ((stage == 0 || stage == P - 1) &&
        data_fetch_sequential(ds, DATA_VAL, (uint64_t)j, eval_B, T, ein, etg, err, errlen)) {
      ok = 0; /* identical on every rank that fetches: the others fail in the exchange below */
      break;
    }
    double l = 0;
    const size_t off = (size_t)replica * mb * T;
    if (pipeline_eval(pl, ein + off, etg + off, &l, err, errlen)) return -1;
    sum += l;
  }
  double v = stage == P - 1 && ok ? sum / ((double)nb * D) : 0;
  if (!all_ok(cm->world, ok)) {
    if (ok) snprintf(err, errlen, "evaluation failed on another rank (see its message)");
    return -1;
  }
  if (coll_allreduce(&v, &v, 1, COLL_F64, COLL_SUM, cm->world) != COLL_OK) {
    snprintf(err, errlen, "validation loss all-reduce failed: %s", coll_last_error(cm->world));
    return -1;
  }
  *val = v;
  return 0;
}

/* Collective checkpoint of step `step` into RUN/ckpt-<step>. */
static int save_checkpoint(const comms_t *cm, const layout_t *lay, const train_config_t *c,
                           gpt2_model_t *m, grad_sync_t *gs, float *full_m, float *full_v,
                           const char *data_path, uint64_t step, uint64_t tokens, double loss,
                           char *err, size_t errlen) {
  const int rank = coll_rank(cm->world);
  const int stage = layout_stage_of(lay, rank), replica = layout_replica_of(lay, rank);
  char dir[4200];
  ckpt_step_dir(dir, sizeof dir, c->out_dir, step);
  int ok = grad_sync_gather_moments(gs, full_m, full_v, err, errlen) == 0;
  /* rank 0 creates the temporary directory and tells everyone its name */
  int32_t words[TRAIN_PATH_WORDS];
  memset(words, 0, sizeof words);
  char *tmp = (char *)words;
  if (rank == 0 && ok && ckpt_begin(dir, tmp, sizeof words, err, errlen)) ok = 0;
  if (!all_ok(cm->world, ok)) {
    if (ok) snprintf(err, errlen, "checkpoint %s: another rank failed (see its message)", dir);
    return -1;
  }
  if (coll_broadcast(words, TRAIN_PATH_WORDS, COLL_I32, 0, cm->world) != COLL_OK) {
    snprintf(err, errlen, "checkpoint path broadcast failed: %s", coll_last_error(cm->world));
    return -1;
  }
  tmp[sizeof words - 1] = '\0';
  if (replica == 0 && ckpt_write_shard(tmp, m, full_m, full_v, stage, lay->pp, err, errlen)) ok = 0;
  if (!all_ok(cm->world, ok)) {
    if (rank == 0) ckpt_abort(tmp);
    if (ok) snprintf(err, errlen, "checkpoint %s: a stage failed to write its shard (see its message)", dir);
    return -1;
  }
  if (rank == 0) {
    strata_train_state_t *st = calloc(1, sizeof *st);
    if (!st) {
      snprintf(err, errlen, "out of memory");
      ok = 0;
    } else {
      fill_state(st, c, lay, data_path, step, tokens, loss);
      if (ckpt_commit(tmp, dir, &c->model, st, lay->pp, err, errlen)) {
        ckpt_abort(tmp);
        ok = 0;
      } else if (c->keep > 0 && ckpt_prune(c->out_dir, c->keep, err, errlen) < 0) {
        ok = 0;
      }
      free(st);
    }
  }
  if (!all_ok(cm->world, ok)) {
    if (ok) snprintf(err, errlen, "checkpoint %s: the coordinator failed to commit it", dir);
    return -1;
  }
  if (rank == 0 && !c->quiet) strata_info("checkpoint %s", dir);
  return 0;
}

int train_run_dist(const train_config_t *cin) {
  train_config_t c = *cin;
  char err[1024] = "";
  int rc = 1, wrank = 0, wsize = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
  MPI_Comm_size(MPI_COMM_WORLD, &wsize);
  comms_t cm = {0};
  data_set_t *ds = NULL;
  gpt2_model_t *m = NULL;
  grad_sync_t *gs = NULL;
  pipeline_t *pl = NULL;
  coord_t *co = NULL;
  int32_t *inputs = NULL, *targets = NULL, *eval_in = NULL, *eval_tg = NULL;
  float *full_m = NULL, *full_v = NULL;
  sim_clock_t simc;
  step_hooks_t hooks = {0}; /* the trace and the simulated clock, as the runtime sees them */
  memset(&simc, 0, sizeof simc);
  double *mem_model = NULL, *mem_alloc = NULL;
  device_t dev;
  strata_train_state_t *state = calloc(1, sizeof *state);
  layout_t *lay = calloc(1, sizeof *lay);
  char resume_dir[4096] = "";
  if (!state || !lay) {
    strata_error("train: out of memory");
    free(state);
    free(lay);
    return 1;
  }
  openblas_set_num_threads(c.threads > 0 ? c.threads : 1);

  /* ---- configuration: the same checks on every rank ---- */
  const char *data_path = NULL;
  if (train_prepare(&c, state, resume_dir, sizeof resume_dir, &ds, &data_path, err, sizeof err))
    goto config_fail;
  if (c.pp < 1 || c.dp < 1) {
    snprintf(err, sizeof err, "--pp and --dp must be at least 1 (got --pp %d --dp %d)", c.pp, c.dp);
    goto config_fail;
  }
  if (c.microbatches < 1 || c.batch < 1) {
    snprintf(err, sizeof err, "--batch (%d) and --microbatches (%d) must be at least 1", c.batch,
             c.microbatches);
    goto config_fail;
  }
  if (!(c.bucket_mb > 0)) {
    snprintf(err, sizeof err, "--bucket-mb must be positive (got %g)", c.bucket_mb);
    goto config_fail;
  }
  if (c.zero != 0 && c.zero != 1) {
    snprintf(err, sizeof err, "--zero must be 0 or 1 (got %d)", c.zero);
    goto config_fail;
  }
  {
    layout_model_t lm = {c.model.vocab, c.model.ctx, c.model.layers, c.model.heads, c.model.dim};
    if (layout_init(lay, &lm, wsize, c.pp, c.dp, c.microbatches, c.batch, c.stage_layers, err,
                    sizeof err))
      goto config_fail;
  }
  if (data_check_batch(ds, DATA_TRAIN, c.batch, c.seq_len, err, sizeof err)) goto config_fail;
  /* validation batches of batch / M sequences (those of the single-rank loop with this M) */
  const int eval_B = c.batch / c.microbatches;
  uint64_t eval_avail = data_num_sequential_batches(ds, DATA_VAL, eval_B, c.seq_len);
  if (eval_avail == 0) {
    snprintf(err, sizeof err, "the validation split has %zu tokens, fewer than one batch of %d x %d "
             "+ 1 (--batch / --microbatches sequences); use a larger data file or a smaller batch",
             data_num_tokens(ds, DATA_VAL), eval_B, c.seq_len);
    goto config_fail;
  }
  const int eval_nb = (uint64_t)c.eval_batches < eval_avail ? c.eval_batches : (int)eval_avail;
  const int P = lay->pp, D = lay->dp, M = lay->micro, mb = lay->micro_batch, T = c.seq_len;
  const int stage = layout_stage_of(lay, wrank), replica = layout_replica_of(lay, wrank);
  if (rank_status_open(c.out_dir, wrank, wsize, stage, replica, err, sizeof err)) strata_warn("%s; no status record", err);
  gpt2_range_t range = {lay->layer_begin[stage], lay->layer_begin[stage + 1], stage == 0,
                        stage == P - 1};
  if (gpt2_create(&c.model, range, &m, err, sizeof err)) goto config_fail;
  int64_t start_step = 0;
  uint64_t tokens_seen = 0;
  if (c.resume) {
    start_step = (int64_t)state->step;
    tokens_seen = state->tokens_seen;
  }

  /* ---- communicators ---- */
  coll_config_t cc = coll_config_default();
  cc.transport = (coll_transport_kind_t)c.transport;
  if (c.ofi_provider) cc.ofi_provider = c.ofi_provider;
  if (coll_comm_create(MPI_COMM_WORLD, &cc, &cm.world) != COLL_OK) {
    snprintf(err, sizeof err, "cannot create the %s communicator (see the message above; "
             "--transport mpi|ofi, --ofi-provider shm|tcp)", c.transport ? "ofi" : "mpi");
    goto fail;
  }
  if (coll_comm_split(cm.world, replica, stage, &cm.pipe) != COLL_OK ||
      coll_comm_split(cm.world, stage, replica, &cm.dp) != COLL_OK ||
      coll_comm_split(cm.world, (P > 1 && (stage == 0 || stage == P - 1)) ? replica : -1, stage,
                      &cm.tied) != COLL_OK) {
    snprintf(err, sizeof err, "cannot split the world communicator: %s", coll_last_error(cm.world));
    goto fail;
  }
  if (wrank == 0 && !c.quiet) {
    strata_info("model: %d layers, %d heads, width %d, context %d, vocab %d: %lld parameters; "
                "batch %d x %d tokens, %lld steps, %s schedule, ZeRO-%d, transport %s, data %s",
                c.model.layers, c.model.heads, c.model.dim, c.model.ctx, c.model.vocab,
                (long long)layout_params_total(&lay->model), c.batch, T, (long long)c.steps,
                schedule_kind_name((sched_kind_t)c.schedule), c.zero,
                coll_transport_name(cm.world), data_path);
    layout_print(lay, stderr);
    fflush(stderr);
  }

  /* ---- the simulated device: resolution (all ranks agree), memory fit, the clock ---- */
  if (sim_clock_resolve_device(c.device, (double)c.device_mem, cm.world, lay, T, calibrate_layer_time, &dev, err,
                               sizeof err)) {
    if (!c.device || !strcmp(c.device, "cpu")) goto fail;
    goto config_fail;
  }
  {
    char fit[2048];
    if (memory_fit_check(lay, (sched_kind_t)c.schedule, c.zero, c.bucket_mb * 1048576.0,
                         dev.hbm_bytes, fit, sizeof fit)) {
      snprintf(err, sizeof err, "the job does not fit on device %s (%s), so it stops before "
               "training: %s", dev.name, c.device_mem ? "--device-mem" : "its HBM", fit);
      goto config_fail;
    }
  }
  if (sim_clock_init(&simc, lay, &dev, (sched_kind_t)c.schedule, c.zero, c.bucket_mb * 1048576.0,
                     wrank, err, sizeof err))
    goto fail;
  if (wrank == 0 && !c.quiet) {
    char dd[512];
    device_describe(&dev, dd, sizeof dd);
    strata_info("simulated device: %s; predicted %.4g ms/step", dd, simc.res.step_s * 1e3);
  }

  /* ---- model, optimizer, pipeline ---- */
  if (grad_sync_create(m, cm.dp, cm.tied, c.zero ? cm.world : cm.pipe, c.bucket_mb, c.zero, &gs,
                       err, sizeof err))
    goto fail;
  if (pipeline_create(m, cm.pipe, (sched_kind_t)c.schedule, M, mb, T, &pl, err, sizeof err)) goto fail;
  if (sim_clock_attach(&simc, cm.world, cm.pipe, cm.dp, cm.tied, err, sizeof err)) goto fail;
  sim_clock_step_hooks(&simc, &hooks); /* and the trace once the coordinator exists */
  pipeline_set_hooks(pl, &hooks);
  grad_sync_set_hooks(gs, &hooks);
  const int rows = c.batch / D; /* the replica's sequences per step */
  inputs = malloc(sizeof(int32_t) * (size_t)rows * T);
  targets = malloc(sizeof(int32_t) * (size_t)rows * T);
  eval_in = malloc(sizeof(int32_t) * (size_t)eval_B * T);
  eval_tg = malloc(sizeof(int32_t) * (size_t)eval_B * T);
  full_m = malloc(sizeof(float) * (m->num_params ? m->num_params : 1));
  full_v = malloc(sizeof(float) * (m->num_params ? m->num_params : 1));
  if (!inputs || !targets || !full_m || !full_v || !eval_in || !eval_tg) {
    snprintf(err, sizeof err, "out of memory for a batch of %d x %d tokens", rows, T);
    goto fail;
  }
  if (c.resume) {
    if (ckpt_load(resume_dir, m, full_m, full_v, NULL, err, sizeof err)) goto fail;
    grad_sync_set_moments(gs, full_m, full_v);
    grad_sync_optimizer(gs)->t = start_step;
    if (wrank == 0 && !c.quiet)
      strata_info("resumed from %s at step %lld (layout %d x %d)", resume_dir,
                  (long long)start_step, P, D);
  } else {
    gpt2_init_params(m, c.seed);
  }

  coord_info_t info = {.layout = lay,
                       .model = {c.model.vocab, c.model.ctx, c.model.layers, c.model.heads, c.model.dim},
                       .out_dir = c.out_dir,
                       .transport = coll_transport_name(cm.world),
                       .start_step = start_step,
                       .total_steps = c.steps,
                       .log_every = c.log_every,
                       .quiet = c.quiet,
                       .append = c.resume != NULL,
                       .bucket_mb = c.bucket_mb};
  train_config_to_state(&info.train, &c, data_path);
  if (coord_create(cm.world, &info, &co, err, sizeof err)) goto fail;
  coord_step_hooks(co, &hooks);
  /* memory: the model's per-stage figure against what this run allocated (max over replicas):
   * parameters + gradients (the shard), optimizer moments and ZeRO buffers (grad_sync), the
   * activations and message buffers (pipeline), and gpt2.c's backward scratch, which is private
   * to gpt2.c and counted by its formula 4 (7 b T C + T^2) (memory_model.h) */
  mem_model = calloc((size_t)P, sizeof(double));
  mem_alloc = calloc((size_t)P, sizeof(double));
  if (!mem_model || !mem_alloc) {
    snprintf(err, sizeof err, "out of memory");
    goto fail;
  }
  {
    const double C = c.model.dim;
    mem_alloc[stage] = 2.0 * sizeof(float) * (double)m->num_params +
                       (double)grad_sync_alloc_bytes(gs) + (double)pipeline_act_bytes(pl) +
                       4.0 * (7.0 * mb * T * C + (double)T * T);
    if (coll_allreduce(mem_alloc, mem_alloc, (size_t)P, COLL_F64, COLL_MAX, cm.world) != COLL_OK) {
      snprintf(err, sizeof err, "memory report all-reduce failed: %s", coll_last_error(cm.world));
      goto fail;
    }
    for (int s = 0; s < P; s++) {
      mem_stage_t ms;
      memory_stage(lay, s, (sched_kind_t)c.schedule, c.zero, c.bucket_mb * 1048576.0, &ms);
      mem_model[s] = ms.total_bytes;
    }
    coord_sim_t csim = {.device = dev.name, .capacity_bytes = dev.hbm_bytes, .res = &simc.res,
                        .mem_model_bytes = mem_model, .mem_alloc_bytes = mem_alloc};
    coord_set_sim(co, &csim);
  }

  /* ---- the step loop ---- */
  const uint64_t tokens_per_step = (uint64_t)c.batch * (uint64_t)T;
  double last_loss = NAN, sync_wait_s = 0;
  uint64_t sent0 = 0, recv0 = 0;
  comms_traffic(&cm, &sent0, &recv0);
  for (int64_t step = start_step; step < c.steps; step++) {
    rank_status_step(step + 1);
    fault_point(FAULT_AT_STEP, step + 1);
    double t0 = strata_now_s();
    gpt2_zero_grad(m);
    if (stage == 0 || stage == P - 1) {
      if (data_fetch(ds, DATA_TRAIN, c.seed, (uint64_t)step, c.batch, T, replica * rows, rows,
                     inputs, targets, err, sizeof err))
        goto fail;
    }
    pipeline_stats_t ps;
    if (pipeline_step(pl, inputs, targets, gs, &ps, err, sizeof err)) goto fail;
    double ta = coord_now(co), ss = 0;
    if (grad_sync_finish(gs, &ss, err, sizeof err)) goto fail;
    sim_clock_sync_done(&simc);
    coord_trace(co, TRACE_ALLREDUCE, -1, ta, coord_now(co));
    {
      const double *b0, *b1;
      int nb = grad_sync_bucket_times(gs, &b0, &b1);
      for (int b = 0; b < nb; b++)
        coord_trace(co, TRACE_ALLREDUCE, b, coord_from_mono(co, b0[b]), coord_from_mono(co, b1[b]));
    }
    if (!isfinite(ss)) {
      snprintf(err, sizeof err, "the gradient norm became %g at step %lld; lower --lr (now %g)",
               sqrt(ss), (long long)step + 1, c.opt.lr);
      goto fail;
    }
    double sync_comm_s = grad_sync_stats(gs)->comm_s, sync_wait_stage_s = grad_sync_stats(gs)->wait_s;
    float scale = adamw_clip_scale(ss, c.opt.grad_clip);
    /* rounded to float as the single-rank loop does (train.c), so P=1 x D=1 is bit-identical */
    float lr = (float)adamw_lr_at(&c.opt, step);
    double to = coord_now(co);
    rank_status_op(RS_OPTIMIZER, -1);
    if (grad_sync_update(gs, &c.opt, lr, scale, err, sizeof err)) goto fail;
    sim_clock_update_done(&simc);
    coord_trace(co, TRACE_OPTIM, -1, to, coord_now(co));
    double update_comm_s = grad_sync_stats(gs)->comm_s - sync_comm_s;
    if (update_comm_s < 0) update_comm_s = 0;
    /* The wait in the previous step's report gather is this rank waiting for the slowest one
     * (the pipeline's tail bubble, replica imbalance): counted as idle time of this step. */
    double step_s = strata_now_s() - t0 + sync_wait_s;
    uint64_t sent = 0, recvd = 0;
    comms_traffic(&cm, &sent, &recvd);

    strata_step_report_t rep;
    strata_step_report_init(&rep);
    rep.step = (uint64_t)step + 1;
    rep.rank = wrank;
    rep.stage = stage;
    rep.replica = replica;
    rep.has_loss = stage == P - 1 && ps.n_loss > 0;
    rep.loss = rep.has_loss ? ps.loss_sum / ps.n_loss : 0;
    rep.tokens = (uint64_t)rows * (uint64_t)T;
    rep.comm_s = ps.comm_s + sync_comm_s + update_comm_s;
    rep.idle_s = ps.idle_s + sync_wait_stage_s + sync_wait_s;
    rep.compute_s = step_s - rep.comm_s - rep.idle_s;
    if (rep.compute_s < 0) rep.compute_s = 0;
    rep.simulated_s = sim_clock_step(&simc);
    rep.bytes_sent = sent - sent0;
    rep.bytes_recv = recvd - recv0;
    sent0 = sent;
    recv0 = recvd;
    double loss = NAN, tg = strata_now_s();
    rank_status_op(RS_REPORT, -1);
    if (coord_step(co, &rep, step_s, lr, sqrt(ss), &loss, err, sizeof err)) goto fail;
    sync_wait_s = strata_now_s() - tg;
    tokens_seen += tokens_per_step;
    /* the checkpoint records rank 0's view of the loss; other ranks keep their own */
    last_loss = wrank == 0 ? loss : (rep.has_loss ? rep.loss : last_loss);

    int is_last = step + 1 == c.steps;
    if ((c.eval_every > 0 && (step + 1) % c.eval_every == 0) || (c.eval_every == 0 && is_last)) {
      double val = NAN;
      rank_status_op(RS_EVAL, -1);
      if (run_eval(&cm, lay, pl, ds, eval_nb, eval_B, T, eval_in, eval_tg, &val, err, sizeof err))
        goto fail;
      coord_set_val_loss(co, val);
      if (wrank == 0 && !c.quiet && c.eval_every > 0)
        strata_info("step %lld: validation loss %.4f", (long long)step + 1, val);
    }
    if ((c.ckpt_every > 0 && (step + 1) % c.ckpt_every == 0) || is_last) {
      double tc = coord_now(co);
      rank_status_op(RS_CHECKPOINT, -1);
      if (save_checkpoint(&cm, lay, &c, m, gs, full_m, full_v, data_path, (uint64_t)step + 1,
                          tokens_seen, isfinite(last_loss) ? last_loss : 0, err, sizeof err))
        goto fail;
      coord_trace(co, TRACE_CKPT, -1, tc, coord_now(co));
    }
  }
  rank_status_op(RS_FINISH, -1);
  sim_clock_report(&simc, cm.world, c.quiet);
  if (coord_finish(co, err, sizeof err)) goto fail;
  rc = 0;
  goto out;

config_fail:
  if (wrank == 0) strata_error("train: %s", err);
  rc = 2;
  goto out;
fail:
  fault_report_failure("train", err);
  rc = 1;
out:
  coord_free(co);
  sim_clock_free(&simc);
  free(mem_model);
  free(mem_alloc);
  pipeline_free(pl);
  grad_sync_free(gs);
  free(inputs);
  free(targets);
  free(eval_in);
  free(eval_tg);
  free(full_m);
  free(full_v);
  gpt2_free(m);
  data_close(ds);
  coll_comm_destroy(cm.tied);
  coll_comm_destroy(cm.dp);
  coll_comm_destroy(cm.pipe);
  coll_comm_destroy(cm.world);
  free(state);
  free(lay);
  return rc;
}
