/* train.c -- the training job on one rank: data, model, AdamW, progress, checkpoints, the run
 * directory (see train.h). train_dist.c runs the same step as P stages x D replicas; this loop
 * stays separate on purpose: it is the plain reference the distributed loop's equivalence tests
 * (tests/dist) compare every layout against, with no pipeline, bucketing or coordinator. */
#include "train.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkpoint.h"
#include "data.h"
#include "log.h"
#include "rank_status.h"
#include "runlog.h"
#include "strata_proto.h"
#include "util.h"

static void format_duration(char *buf, size_t len, double s) {
  if (!(s >= 0) || s > 1e7) s = 0;
  int sec = (int)(s + 0.5);
  if (sec >= 3600) snprintf(buf, len, "%dh%02dm", sec / 3600, (sec / 60) % 60);
  else if (sec >= 60) snprintf(buf, len, "%dm%02ds", sec / 60, sec % 60);
  else snprintf(buf, len, "%ds", sec);
}

/* Mean loss over the first `batches` sequential validation batches (B x T). */
static int eval_split(gpt2_model_t *m, gpt2_acts_t *a, const data_set_t *ds, data_split_t split,
                      int batches, int B, int T, int32_t *inputs, int32_t *targets, double *loss_out,
                      char *err, size_t errlen) {
  uint64_t avail = data_num_sequential_batches(ds, split, B, T);
  if (avail == 0) {
    snprintf(err, errlen, "the validation split has %zu tokens, fewer than one batch of %d x %d + 1",
             data_num_tokens(ds, split), B, T);
    return -1;
  }
  if ((uint64_t)batches > avail) batches = (int)avail;
  double sum = 0;
  for (int j = 0; j < batches; j++) {
    if (data_fetch_sequential(ds, split, (uint64_t)j, B, T, inputs, targets, err, errlen)) return -1;
    sum += gpt2_forward(m, a, inputs, NULL, targets);
  }
  *loss_out = sum / batches;
  return 0;
}

static void fill_state(strata_train_state_t *s, const train_config_t *c, const gpt2_config_t *mc,
                       const char *data_path, uint64_t step, uint64_t tokens, double last_loss) {
  strata_train_state_init(s);
  s->step = step;
  s->data_seed = c->seed;
  s->data_step = step;
  s->tokens_seen = tokens;
  /* The run has no stream of its own yet beyond the data order; record the seed's stream so
   * a resumed run can continue any future sampling from the same place. */
  s->rng_state[0] = c->seed;
  s->last_loss = last_loss;
  s->model = (strata_model_cfg_t){mc->vocab, mc->ctx, mc->layers, mc->heads, mc->dim};
  train_config_to_state(&s->train, c, data_path);
  s->train.zero = 0; /* one rank: no sharding, and its micro-batches run one after another */
  snprintf(s->train.schedule, sizeof s->train.schedule, "%s", "gpipe");
  s->layout.pp = 1;
  s->layout.dp = 1;
  s->layout.n_stage_layers = 1;
  s->layout.stage_layers[0] = mc->layers;
}

/* RUN/report.json of the single-rank loop (README lists the keys), written atomically; non-finite
 * numbers are null. 0, or -1 with a message (RELIABILITY.md, "Full disk": the job exits 1). */
static int write_report(const char *out_dir, const train_config_t *c, const gpt2_model_t *m,
                        const char *data_path, int64_t steps_done, double final_loss,
                        double val_loss, double tokens_per_s, double train_s, int steps_log_complete,
                        char *err, size_t errlen) {
  char path[4200];
  snprintf(path, sizeof path, "%s/report.json", out_dir);
  json_object *o = json_object_new_object();
  runlog_json_add(o, "world_size", json_object_new_int(1));
  runlog_json_add(o, "pp", json_object_new_int(1));
  runlog_json_add(o, "dp", json_object_new_int(1));
  json_object *model = json_object_new_object();
  runlog_json_add(model, "vocab", json_object_new_int(m->cfg.vocab));
  runlog_json_add(model, "ctx", json_object_new_int(m->cfg.ctx));
  runlog_json_add(model, "layers", json_object_new_int(m->cfg.layers));
  runlog_json_add(model, "heads", json_object_new_int(m->cfg.heads));
  runlog_json_add(model, "dim", json_object_new_int(m->cfg.dim));
  runlog_json_add(model, "params", json_object_new_uint64(m->num_params));
  runlog_json_add(o, "model", model);
  json_object *cfg = json_object_new_object();
  runlog_json_add(cfg, "batch", json_object_new_int(c->batch));
  runlog_json_add(cfg, "seq_len", json_object_new_int(c->seq_len));
  runlog_json_add(cfg, "microbatches", json_object_new_int(c->microbatches));
  runlog_json_add(cfg, "steps", json_object_new_int64(c->steps));
  runlog_json_add(cfg, "seed", json_object_new_uint64(c->seed));
  runlog_json_add(cfg, "lr", runlog_json_num(c->opt.lr, "%.9g"));
  runlog_json_add(cfg, "warmup_steps", json_object_new_int(c->opt.warmup_steps));
  runlog_json_add(cfg, "weight_decay", runlog_json_num(c->opt.weight_decay, "%.9g"));
  runlog_json_add(cfg, "grad_clip", runlog_json_num(c->opt.grad_clip, "%.9g"));
  runlog_json_add(cfg, "data", runlog_json_str(data_path));
  runlog_json_add(o, "config", cfg);
  runlog_json_add(o, "steps_done", json_object_new_int64(steps_done));
  runlog_json_add(o, "final_loss", runlog_json_num(final_loss, "%.9g"));
  runlog_json_add(o, "val_loss", runlog_json_num(val_loss, "%.9g"));
  runlog_json_add(o, "tokens_per_s", runlog_json_num(tokens_per_s, "%.6g"));
  runlog_json_add(o, "train_s", runlog_json_num(train_s, "%.6g"));
  runlog_json_add(o, "steps_log_complete", json_object_new_boolean(steps_log_complete));
  int rc = runlog_json_write(path, o, err, errlen);
  json_object_put(o);
  return rc;
}

int train_run(const train_config_t *cin) {
  train_config_t c = *cin;
  char err[1024] = "";
  int rc = 1;
  data_set_t *ds = NULL;
  gpt2_model_t *m = NULL;
  gpt2_acts_t *acts = NULL;
  adamw_t *opt = NULL;
  int32_t *inputs = NULL, *targets = NULL;
  strata_train_state_t *state = calloc(1, sizeof *state);
  runlog_lines_t steps_log = {.fd = -1};
  char resume_dir[4096] = "";
  if (!state) {
    strata_error("train: out of memory");
    return 1;
  }
  openblas_set_num_threads(c.threads > 0 ? c.threads : 1);

  const char *data_path = NULL;
  if (train_prepare(&c, state, resume_dir, sizeof resume_dir, &ds, &data_path, err, sizeof err))
    goto config_fail;
  if (c.batch < 1 || c.microbatches < 1 || c.batch % c.microbatches) {
    snprintf(err, sizeof err, "--batch %d must be a positive multiple of --microbatches %d", c.batch,
             c.microbatches);
    goto config_fail;
  }
  if (data_check_batch(ds, DATA_TRAIN, c.batch, c.seq_len, err, sizeof err)) goto config_fail;

  gpt2_range_t all = {0, c.model.layers, 1, 1};
  if (gpt2_create(&c.model, all, &m, err, sizeof err)) goto config_fail;
  const int mb = c.batch / c.microbatches, T = c.seq_len;
  if (gpt2_acts_create(m, mb, T, &acts, err, sizeof err)) goto fail;
  if (adamw_create(0, m->num_params, &opt, err, sizeof err)) goto fail;
  inputs = malloc(sizeof(int32_t) * (size_t)mb * T);
  targets = malloc(sizeof(int32_t) * (size_t)mb * T);
  if (!inputs || !targets) {
    snprintf(err, sizeof err, "out of memory for a batch of %d x %d tokens", mb, T);
    goto fail;
  }

  int64_t start_step = 0;
  uint64_t tokens_seen = 0;
  if (c.resume) {
    if (ckpt_load(resume_dir, m, opt->m, opt->v, state, err, sizeof err)) goto fail;
    start_step = (int64_t)state->step;
    tokens_seen = state->tokens_seen;
    opt->t = start_step;
    strata_info("resumed from %s at step %lld", resume_dir, (long long)start_step);
  } else {
    gpt2_init_params(m, c.seed);
  }

  if (rank_status_open(c.out_dir, 0, 1, 0, 0, err, sizeof err)) /* RUN/status/rank-0 */
    strata_warn("%s; no status record", err);
  char steps_path[4200];
  snprintf(steps_path, sizeof steps_path, "%s/steps.jsonl", c.out_dir);
  /* A fresh run starts a fresh log; a resumed run appends after its checkpoint's step. */
  if (runlog_lines_open(&steps_log, steps_path, c.resume != NULL, err, sizeof err)) goto fail;
  if (!c.quiet)
    strata_info("model: %d layers, %d heads, width %d, context %d, vocab %d: %zu parameters; "
                "batch %d x %d tokens, %lld steps, data %s",
                c.model.layers, c.model.heads, c.model.dim, c.model.ctx, c.model.vocab,
                m->num_params, c.batch, T, (long long)c.steps, data_path);

  const double tokens_per_step = (double)c.batch * T;
  double t_start = strata_now_s(), t_train = 0, last_loss = 0, val_loss = NAN;
  int64_t step = start_step;
  for (; step < c.steps; step++) {
    double t0 = strata_now_s();
    rank_status_step(step + 1);
    gpt2_zero_grad(m);
    double loss = 0;
    for (int mi = 0; mi < c.microbatches; mi++) {
      if (data_fetch(ds, DATA_TRAIN, c.seed, (uint64_t)step, c.batch, T, mi * mb, mb, inputs,
                     targets, err, sizeof err))
        goto fail;
      rank_status_op(RS_PIPE_FWD, mi);
      loss += gpt2_forward(m, acts, inputs, NULL, targets);
      rank_status_op(RS_PIPE_BWD, mi);
      gpt2_backward(m, acts, NULL, 1.0f / (float)c.microbatches, NULL);
    }
    loss /= c.microbatches;
    double ss = adamw_sum_squares(m->grads, m->num_params);
    float scale = adamw_clip_scale(ss, c.opt.grad_clip);
    float lr = adamw_lr_at(&c.opt, step);
    rank_status_op(RS_OPTIMIZER, -1);
    adamw_step(opt, &c.opt, m->params, m->grads, m->tensors, m->num_tensors, lr, scale);
    double dt = strata_now_s() - t0;
    t_train += dt;
    tokens_seen += (uint64_t)tokens_per_step;
    last_loss = loss;
    if (!isfinite(loss)) {
      snprintf(err, sizeof err, "loss became %f at step %lld; lower --lr (now %g)", loss,
               (long long)step + 1, c.opt.lr);
      goto fail;
    }
    double tps = tokens_per_step / dt;
    json_object *rec = json_object_new_object();
    runlog_json_add(rec, "step", json_object_new_int64(step + 1));
    runlog_json_add(rec, "loss", runlog_json_num(loss, "%.9g"));
    runlog_json_add(rec, "lr", runlog_json_num(lr, "%.9g"));
    runlog_json_add(rec, "grad_norm", runlog_json_num(sqrt(ss), "%.9g"));
    runlog_json_add(rec, "tokens_per_s", runlog_json_num(tps, "%.6g"));
    runlog_json_add(rec, "step_s", runlog_json_num(dt, "%.6g"));
    runlog_steps_append(&steps_log, step + 1, rec); /* a failure warns once; the run goes on */

    int is_last = step + 1 == c.steps;
    if (c.eval_every > 0 && ((step + 1) % c.eval_every == 0)) {
      gpt2_acts_t *ea = acts;
      rank_status_op(RS_EVAL, -1);
      if (eval_split(m, ea, ds, DATA_VAL, c.eval_batches, mb, T, inputs, targets, &val_loss, err,
                     sizeof err))
        goto fail;
      if (!c.quiet) strata_info("step %lld: validation loss %.4f", (long long)step + 1, val_loss);
    }
    if (!c.quiet && ((step + 1) % c.log_every == 0 || is_last || step == start_step)) {
      double done = (double)(step + 1 - start_step);
      double eta = (strata_now_s() - t_start) / done * (double)(c.steps - step - 1);
      char eta_s[32];
      format_duration(eta_s, sizeof eta_s, eta);
      strata_info("step %lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | ETA %s",
                  (long long)step + 1, (long long)c.steps, loss, lr, sqrt(ss), tps, eta_s);
    }
    if ((c.ckpt_every > 0 && (step + 1) % c.ckpt_every == 0) || is_last) {
      char dir[4200];
      ckpt_step_dir(dir, sizeof dir, c.out_dir, (uint64_t)step + 1);
      fill_state(state, &c, &c.model, data_path, (uint64_t)step + 1, tokens_seen, loss);
      rank_status_op(RS_CHECKPOINT, -1);
      if (ckpt_save(dir, m, opt->m, opt->v, state, err, sizeof err)) goto fail;
      if (c.keep > 0 && ckpt_prune(c.out_dir, c.keep, err, sizeof err) < 0) goto fail;
      if (!c.quiet) strata_info("checkpoint %s", dir);
    }
  }
  if (c.eval_every == 0) {
    rank_status_op(RS_EVAL, -1);
    if (eval_split(m, acts, ds, DATA_VAL, c.eval_batches, mb, T, inputs, targets, &val_loss, err,
                   sizeof err))
      goto fail;
  }
  double tokens_per_s = t_train > 0 ? tokens_per_step * (double)(step - start_step) / t_train : 0;
  if (!c.quiet)
    strata_info("done: %lld steps, final loss %.4f, validation loss %.4f, %.0f tokens/s",
                (long long)step, last_loss, val_loss, tokens_per_s);
  int steps_log_complete = runlog_steps_close(&steps_log);
  if (write_report(c.out_dir, &c, m, data_path, step, last_loss, val_loss, tokens_per_s, t_train,
                   steps_log_complete, err, sizeof err)) {
    snprintf(err + strlen(err), sizeof err - strlen(err),
             " (the training itself finished: its checkpoints are complete)");
    goto fail;
  }
  rc = 0;
  goto out;

config_fail:
  strata_error("train: %s", err);
  rc = 2;
  goto out;
fail:
  strata_error("train: %s", err);
  {
    char st[1100];
    snprintf(st, sizeof st, "failed: %s", err);
    rank_status_end(st);
  }
  rc = 1;
out:
  runlog_lines_close(&steps_log, err, sizeof err); /* still open only on a failed run */
  free(inputs);
  free(targets);
  adamw_free(opt);
  gpt2_acts_free(acts);
  gpt2_free(m);
  data_close(ds);
  free(state);
  return rc;
}
