/* train_config.c -- what both training loops (train.c on one rank, train_dist.c under mpirun)
 * share about a run's configuration: the defaults, the round trip through a checkpoint's training
 * state, and the preparation steps that must give every rank the same verdict (see train.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "data.h"
#include "grad_sync.h"
#include "schedule.h"
#include "train.h"
#include "util.h"

void train_config_default(train_config_t *c) {
  memset(c, 0, sizeof *c);
  c->model = (gpt2_config_t){.vocab = 0, .ctx = 128, .layers = 4, .heads = 4, .dim = 128};
  c->batch = 16;
  c->seq_len = 0;
  c->microbatches = 1;
  c->steps = 300;
  c->seed = 1337;
  adamw_hparams_default(&c->opt);
  c->opt.lr = 3e-3f;
  c->opt.warmup_steps = 20;
  c->out_dir = "runs/train";
  c->ckpt_every = 0;
  c->keep = 0;
  c->log_every = 10;
  c->eval_every = 0;
  c->eval_batches = 8;
  c->threads = 1;
  c->pp = 1;
  c->dp = 1;
  c->schedule = 0;  /* SCHED_GPIPE */
  c->transport = 0; /* COLL_TRANSPORT_MPI */
  c->bucket_mb = GRAD_SYNC_BUCKET_MB_DEFAULT;
  const char *bmb = getenv("STRATA_BUCKET_MB");
  if (bmb && *bmb) c->bucket_mb = atof(bmb);
  c->zero = 0;
}

void train_config_to_state(strata_train_cfg_t *t, const train_config_t *c, const char *data_path) {
  memset(t, 0, sizeof *t);
  t->batch = c->batch;
  t->seq_len = c->seq_len;
  t->microbatches = c->microbatches;
  t->lr = c->opt.lr;
  t->min_lr = c->opt.lr * c->opt.min_lr_ratio;
  t->weight_decay = c->opt.weight_decay;
  t->beta1 = c->opt.beta1;
  t->beta2 = c->opt.beta2;
  t->eps = c->opt.eps;
  t->grad_clip = c->opt.grad_clip;
  t->warmup_steps = c->opt.warmup_steps;
  t->total_steps = c->steps;
  t->seed = c->seed;
  t->zero = c->zero;
  snprintf(t->schedule, sizeof t->schedule, "%s", schedule_kind_name((sched_kind_t)c->schedule));
  snprintf(t->data_path, sizeof t->data_path, "%s", data_path);
}

void train_config_from_state(train_config_t *c, const strata_train_state_t *state) {
  c->model = (gpt2_config_t){state->model.vocab, state->model.ctx, state->model.layers,
                             state->model.heads, state->model.dim};
  c->batch = state->train.batch;
  c->seq_len = state->train.seq_len;
  if (!c->microbatches_given) c->microbatches = state->train.microbatches;
  c->seed = state->train.seed;
  /* Doubles, unrounded: a cast to float once turned beta1 0.9 into 0.89999998 and changed every
   * update after a resume (seen only in the sanitizer build, where the cast was not folded
   * away). min_lr / lr may differ from the original ratio in the last bit, but lr * ratio, the
   * floor adamw_lr_at uses, does not. */
  c->opt.lr = state->train.lr;
  c->opt.weight_decay = state->train.weight_decay;
  c->opt.beta1 = state->train.beta1;
  c->opt.beta2 = state->train.beta2;
  c->opt.eps = state->train.eps;
  c->opt.grad_clip = state->train.grad_clip;
  c->opt.warmup_steps = (int)state->train.warmup_steps;
  if (state->train.lr > 0 && state->train.min_lr >= 0)
    c->opt.min_lr_ratio = state->train.min_lr / state->train.lr;
  if (!c->data_path && state->train.data_path[0]) c->data_path = state->train.data_path;
  if (c->steps == -1) c->steps = state->train.total_steps;
}

int train_prepare(train_config_t *c, strata_train_state_t *state, char *resume_dir,
                  size_t resume_len, data_set_t **ds, const char **data_path, char *err,
                  size_t errlen) {
  *ds = NULL;
  resume_dir[0] = '\0';
  if (strata_mkdirs(c->out_dir, err, errlen)) return -1;
  /* Resume: the checkpoint's model and data order win; the flags may extend --steps. */
  if (c->resume) {
    if (!strcmp(c->resume, "auto")) {
      if (ckpt_find_latest(c->out_dir, resume_dir, resume_len, err, errlen)) return -1;
    } else {
      snprintf(resume_dir, resume_len, "%s", c->resume);
    }
    if (ckpt_read_state(resume_dir, state, 1, err, errlen)) return -1;
    train_config_from_state(c, state);
  }
  *data_path = c->data_path ? c->data_path : data_default_path();
  if (data_open(*data_path, DATA_KIND_AUTO, ds, err, errlen)) return -1;
  if (c->model.vocab == 0) c->model.vocab = data_vocab(*ds);
  if (data_vocab(*ds) > c->model.vocab) {
    snprintf(err, errlen, "data '%s' has vocabulary %d but the model's is %d", *data_path,
             data_vocab(*ds), c->model.vocab);
    return -1;
  }
  if (c->seq_len == 0) c->seq_len = c->model.ctx;
  if (c->seq_len < 1 || c->seq_len > c->model.ctx) {
    snprintf(err, errlen, "--seq-len %d must be between 1 and --ctx %d", c->seq_len, c->model.ctx);
    return -1;
  }
  if (c->steps < 1) {
    snprintf(err, errlen, "--steps must be at least 1 (got %lld)", (long long)c->steps);
    return -1;
  }
  if (c->resume && (int64_t)state->step >= c->steps) {
    snprintf(err, errlen, "checkpoint %s is at step %lld, already at --steps %lld; pass a larger "
             "--steps to continue", resume_dir, (long long)state->step, (long long)c->steps);
    return -1;
  }
  if (c->opt.decay_steps == 0) c->opt.decay_steps = (int)c->steps;
  return adamw_hparams_check(&c->opt, err, errlen);
}
