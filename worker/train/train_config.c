/* train_config.c -- what both training loops (train.c on one rank, train_dist.c under mpirun)
 * share about a run's configuration: the defaults, the round trip through a checkpoint's training
 * state, and the preparation steps that must give every rank the same verdict (see train.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "ckpt_tokenizer.h"
#include "data.h"
#include "env.h"
#include "grad_sync.h"
#include "log.h"
#include "memory_model.h"
#include "schedule.h"
#include "train.h"
#include "util.h"
#include "validation.h"

void train_config_default(train_config_t *c) {
  memset(c, 0, sizeof *c);
  c->model = (gpt2_config_t){.vocab = 0, .ctx = 128, .layers = 4, .heads = 4, .dim = 128};
  c->arch = CKPT_ARCH_GPT2;
  c->llama = (llama_config_t){.kv_heads = 0, .ffn = 0, .rms_norm_eps = 1e-5, .rope_theta = 1e4};
  c->batch = 16;
  c->seq_len = 0;
  c->microbatches = 1;
  c->steps = 2000;
  c->seed = 1337;
  adamw_hparams_default(&c->opt);
  c->opt.lr = 3e-3f;
  c->opt.warmup_steps = 100;
  c->out_dir = "runs/train";
  c->ckpt_every = 0;
  c->ckpt_async = 1;
  c->keep = 0;
  c->log_every = 10;
  c->eval_every = 0;
  c->eval_tokens = VALSET_TOKENS_DEFAULT;
  c->threads = 1;
  c->tp = 1;
  c->sequence_parallel = 0;
  c->recompute = 0; /* GPT2_RECOMPUTE_NONE */
  c->pp = 1;
  c->dp = 1;
  c->schedule = 0;  /* SCHED_GPIPE */
  c->transport = 0; /* COLL_TRANSPORT_MPI */
  /* a bad STRATA_BUCKET_MB is refused by strata at start-up (worker/base/env.c) */
  env_read_double("STRATA_BUCKET_MB", GRAD_SYNC_BUCKET_MB_DEFAULT, &c->bucket_mb, NULL, 0);
  c->zero = 0;
  c->precision = MEM_PREC_FP32;
}

gemm_dtype_t train_matmul_dtype(int precision) { return precision == MEM_PREC_FP32 ? GEMM_F32 : GEMM_BF16; }

void train_apply_precision(const stage_model_t *sm, adamw_t *o, int precision, uint64_t seed, int round_params) {
  const int sr = precision == MEM_PREC_BF16_SR;
  if (sr && o) adamw_set_stochastic_rounding(o, seed, sm->tp_rank);
  if (sr && round_params) bf16_round_params(sm->params, sm->num_params);
  /* bf16 values from here on (or loaded as such) */
  sm->ops->set_precision(sm->model, train_matmul_dtype(precision), sr && (round_params || o));
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
  snprintf(t->precision, sizeof t->precision, "%s", memory_precision_name((mem_precision_t)c->precision));
}

/* One model or training setting a resumed run takes from its checkpoint. */
typedef struct {
  unsigned bit;     /* TRAIN_GIVEN_* */
  const char *flag; /* "--layers" */
  int integer;      /* compare i (exactly), else d (to 6 significant digits) */
  int64_t gi, ci;   /* given, checkpoint's */
  double gd, cd;
} resume_setting_t;

static int setting_equal(const resume_setting_t *s) {
  if (s->integer) return s->gi == s->ci;
  double scale = fabs(s->gd) > fabs(s->cd) ? fabs(s->gd) : fabs(s->cd);
  return fabs(s->gd - s->cd) <= 1e-6 * scale;
}

static double ckpt_min_lr_ratio(const strata_train_state_t *state) {
  return state->train.lr > 0 && state->train.min_lr >= 0 ? state->train.min_lr / state->train.lr : 0;
}

/* The first of n settings given on the command line (given bits) that differs from the
 * checkpoint's: 0, or -1 with "--layers 3 differs from checkpoint DIR's 2; ..." in err. */
static int settings_agree(const resume_setting_t *settings, size_t n, unsigned given,
                          const char *ckpt_dir, char *err, size_t errlen) {
  for (size_t i = 0; i < n; i++) {
    const resume_setting_t *st = &settings[i];
    if (!(given & st->bit) || setting_equal(st)) continue;
    char gv[40], ckpt[40];
    if (st->integer) {
      snprintf(gv, sizeof gv, "%lld", (long long)st->gi);
      snprintf(ckpt, sizeof ckpt, "%lld", (long long)st->ci);
    } else {
      snprintf(gv, sizeof gv, "%.6g", st->gd); /* the digits the comparison looks at */
      snprintf(ckpt, sizeof ckpt, "%.6g", st->cd);
    }
    snprintf(err, errlen, "%s %s differs from checkpoint %s's %s: a resumed run keeps the checkpoint's "
             "model and training settings; drop %s or pass %s", st->flag, gv, ckpt_dir, ckpt,
             st->flag, ckpt);
    return -1;
  }
  return 0;
}

/* Resume: the model family and the Llama settings of the checkpoint's config.json. 0 or -1. */
static int model_from_ckpt(train_config_t *c, const char *ckpt_dir, char *err, size_t errlen) {
  ckpt_model_config_t mc;
  if (ckpt_read_model_config(ckpt_dir, &mc, err, errlen)) return -1;
  if ((c->given & TRAIN_GIVEN_ARCH) && c->arch != (int)mc.arch) {
    snprintf(err, errlen, "--arch %s differs from checkpoint %s's %s (config.json model_type \"%s\"): "
             "a resumed run keeps the checkpoint's model; drop --arch or pass --arch %s",
             ckpt_arch_name((ckpt_arch_t)c->arch), ckpt_dir, ckpt_arch_name(mc.arch),
             mc.arch == CKPT_ARCH_LLAMA ? "llama" : "gpt2", ckpt_arch_name(mc.arch));
    return -1;
  }
  c->arch = (int)mc.arch;
  if (mc.arch != CKPT_ARCH_LLAMA) return 0;
  const llama_config_t *l = &mc.llama, *g = &c->llama;
  const resume_setting_t settings[] = {
      {TRAIN_GIVEN_KV_HEADS, "--kv-heads", 1, g->kv_heads, l->kv_heads, 0, 0},
      {TRAIN_GIVEN_FFN, "--ffn", 1, g->ffn, l->ffn, 0, 0},
      {TRAIN_GIVEN_RMS_NORM_EPS, "--rms-norm-eps", 0, 0, 0, g->rms_norm_eps, l->rms_norm_eps},
      {TRAIN_GIVEN_ROPE_THETA, "--rope-theta", 0, 0, 0, g->rope_theta, l->rope_theta},
  };
  if (settings_agree(settings, sizeof settings / sizeof settings[0], c->given, ckpt_dir, err, errlen))
    return -1;
  c->llama = *l;
  return 0;
}

int train_config_from_state(train_config_t *c, const strata_train_state_t *state,
                            const char *ckpt_dir, char *err, size_t errlen) {
  const strata_train_cfg_t *t = &state->train;
  const resume_setting_t settings[] = {
      {TRAIN_GIVEN_LAYERS, "--layers", 1, c->model.layers, state->model.layers, 0, 0},
      {TRAIN_GIVEN_HEADS, "--heads", 1, c->model.heads, state->model.heads, 0, 0},
      {TRAIN_GIVEN_DIM, "--dim", 1, c->model.dim, state->model.dim, 0, 0},
      {TRAIN_GIVEN_CTX, "--ctx", 1, c->model.ctx, state->model.ctx, 0, 0},
      {TRAIN_GIVEN_BATCH, "--batch", 1, c->batch, t->batch, 0, 0},
      {TRAIN_GIVEN_SEQ_LEN, "--seq-len", 1, c->seq_len, t->seq_len, 0, 0},
      /* seeds are below 2^63: exact as int64 */
      {TRAIN_GIVEN_SEED, "--seed", 1, (int64_t)c->seed, (int64_t)t->seed, 0, 0},
      {TRAIN_GIVEN_WARMUP, "--warmup", 1, c->opt.warmup_steps, t->warmup_steps, 0, 0},
      {TRAIN_GIVEN_LR, "--lr", 0, 0, 0, c->opt.lr, t->lr},
      {TRAIN_GIVEN_MIN_LR_RATIO, "--min-lr-ratio", 0, 0, 0, c->opt.min_lr_ratio, ckpt_min_lr_ratio(state)},
      {TRAIN_GIVEN_WEIGHT_DECAY, "--weight-decay", 0, 0, 0, c->opt.weight_decay, t->weight_decay},
      {TRAIN_GIVEN_GRAD_CLIP, "--grad-clip", 0, 0, 0, c->opt.grad_clip, t->grad_clip},
  };
  /* the precision: "" in checkpoints written before it was recorded, which trained in fp32 */
  mem_precision_t ckpt_prec = MEM_PREC_FP32;
  if (t->precision[0] && memory_parse_precision(t->precision, &ckpt_prec)) {
    snprintf(err, errlen, "checkpoint %s records precision '%s', which this strata does not know (fp32, "
             "bf16, bf16-sr); resume it with the strata that wrote it", ckpt_dir, t->precision);
    return -1;
  }
  if ((c->given & TRAIN_GIVEN_PRECISION) && c->precision != (int)ckpt_prec) {
    const char *given = memory_precision_name((mem_precision_t)c->precision), *had = memory_precision_name(ckpt_prec);
    snprintf(err, errlen, "--precision %s differs from checkpoint %s's %s: a resumed run keeps the checkpoint's "
             "precision; drop --precision or pass %s", given, ckpt_dir, had, had);
    return -1;
  }
  if (settings_agree(settings, sizeof settings / sizeof settings[0], c->given, ckpt_dir, err, errlen))
    return -1;
  c->model = (gpt2_config_t){state->model.vocab, state->model.ctx, state->model.layers,
                             state->model.heads, state->model.dim};
  c->batch = t->batch;
  c->seq_len = t->seq_len;
  if (!c->microbatches_given) c->microbatches = t->microbatches;
  c->seed = t->seed;
  c->precision = (int)ckpt_prec;
  /* Doubles, unrounded: a cast to float turns beta1 0.9 into 0.89999998 and changes every
   * update after a resume (a build that does not fold the cast away shows it, e.g. the sanitizer
   * build). min_lr / lr may differ from the original ratio in the last bit, but lr * ratio, the
   * floor adamw_lr_at uses, does not. */
  c->opt.lr = t->lr;
  c->opt.weight_decay = t->weight_decay;
  c->opt.beta1 = t->beta1;
  c->opt.beta2 = t->beta2;
  c->opt.eps = t->eps;
  c->opt.grad_clip = t->grad_clip;
  c->opt.warmup_steps = (int)t->warmup_steps;
  if (t->lr > 0 && t->min_lr >= 0) c->opt.min_lr_ratio = ckpt_min_lr_ratio(state);
  if (!c->data_path && t->data_path[0]) c->data_path = t->data_path;
  if (!(c->given & TRAIN_GIVEN_STEPS)) c->steps = t->total_steps;
  return 0;
}

/* --resume auto, on rank 0 (or a single rank): one line per checkpoint skipped. */
static void log_skipped(void *ctx, const char *dir, const char *why) {
  (void)ctx;
  if (strata_log_rank() <= 0) strata_warn("train: --resume auto: skipping %s: %s", dir, why);
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
      if (ckpt_find_latest_logged(c->out_dir, resume_dir, resume_len, log_skipped, NULL, err, errlen))
        return -1;
    } else {
      snprintf(resume_dir, resume_len, "%s", c->resume);
    }
    if (ckpt_read_state(resume_dir, state, 1, err, errlen)) return -1;
    if (train_config_from_state(c, state, resume_dir, err, errlen) ||
        model_from_ckpt(c, resume_dir, err, errlen))
      return -1;
    if (!strcmp(c->resume, "auto") && strata_log_rank() <= 0) /* also with --quiet: the choice */
      strata_info("train: --resume auto: resuming from %s (step %llu)", resume_dir,
                  (unsigned long long)state->step);
  }
  *data_path = c->data_path ? c->data_path : data_default_path();
  if (data_open(*data_path, DATA_KIND_AUTO, ds, err, errlen)) return -1;
  if (c->model.vocab == 0) c->model.vocab = data_vocab(*ds);
  if (data_vocab(*ds) > c->model.vocab) {
    snprintf(err, errlen, "data '%s' has vocabulary %d but the model's is %d", *data_path,
             data_vocab(*ds), c->model.vocab);
    return -1;
  }
  const int tok_vocab = ckpt_carried_tokenizer_vocab();
  if (tok_vocab && tok_vocab != c->model.vocab) {
    snprintf(err, errlen, "the tokenizer has %d tokens but the model's vocabulary is %d (data '%s'%s): "
             "name the tokenizer the data was made with", tok_vocab, c->model.vocab, *data_path,
             c->resume ? ", checkpoint" : "");
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
  if (c->resume && !c->eval_only && (int64_t)state->step >= c->steps) {
    snprintf(err, errlen, "checkpoint %s is at step %lld, already at --steps %lld; pass a larger "
             "--steps to continue", resume_dir, (long long)state->step, (long long)c->steps);
    return -1;
  }
  if (c->opt.decay_steps == 0) c->opt.decay_steps = (int)c->steps;
  return adamw_hparams_check(&c->opt, err, errlen);
}
