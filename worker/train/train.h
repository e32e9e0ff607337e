/* train.h -- the training job: configuration, the step loop, checkpoints and the run directory.
 *
 * A run is described by train_config_t (filled by `strata train`'s flags, or by a resumed
 * checkpoint's training state). train_run executes it:
 *   1. opens the data (default corpus when none is given) and builds the model shard;
 *   2. initialises the weights from the seed, or loads them, the AdamW moments and the step
 *      from --resume DIR (a checkpoint directory, or `auto`: the newest valid checkpoint under
 *      the run directory);
 *   3. for each step: zero the gradients; for each of M micro-batches fetch its slice of the
 *      step's global batch (data_fetch: a pure function of seed and step), forward, backward
 *      with loss scale 1/M; clip by global norm; AdamW with the warm-up + cosine schedule;
 *   4. appends one object per step to RUN/steps.jsonl, prints one progress line per step
 *      (every --log-every steps), writes RUN/ckpt-<step> every --ckpt-every steps and at the end,
 *      and writes RUN/report.json at the end.
 * Distributed (train_run_dist, train_dist.c): under mpirun with --tp T --pp P --dp D the same
 * loop runs as a P-stage pipeline (pipeline.h) whose every stage is split over T tensor-parallel
 * ranks (gpt2.h), replicated D times, gradients reduced in buckets overlapping backward
 * (grad_sync.h), reports gathered by rank 0 (coordinator.h). A Llama model (arch
 * CKPT_ARCH_LLAMA) runs train_run, also under mpirun as --dp D replicas of the whole model
 * (train.c), or train_run_dist as T x P x D ranks of llama_create_range (tensor-parallel as
 * GPT-2, without sequence parallelism or recomputation; also for --grad-dtype bf16, whose bf16
 * reductions are grad_sync.h's). For the same seed, model
 * and global batch every layout computes the same losses as one rank (up to float summation
 * order).
 * Determinism: the same configuration gives bit-identical losses; a run resumed from the
 * checkpoint of step k continues bit-identically to the uninterrupted run (all state that
 * influences later steps -- weights, moments, step count -- is in the checkpoint, and the
 * data order is a function of (seed, step)).
 */
#ifndef STRATA_TRAIN_H
#define STRATA_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "adamw.h"
#include "data.h"
#include "gpt2.h"
#include "llama.h"
#include "stage.h"
#include "strata_proto.h"

typedef struct {
  gpt2_config_t model;     /* vocab is set from the data when 0; for Llama: vocab, ctx, layers,
                              heads (query heads) and dim (hidden_size) */
  int arch;                /* ckpt_arch_t: CKPT_ARCH_GPT2 (--arch gpt, the default) or
                              CKPT_ARCH_LLAMA (--arch llama: train.c, or train_dist.c
                              with --pp) */
  llama_config_t llama;    /* --arch llama: kv_heads (0: heads), ffn (0: 8/3 x dim rounded up to
                              a multiple of 64), rms_norm_eps, rope_theta; the shape is `model`'s
                              (train_llama_config) */
  int batch;               /* global sequences per step (--batch) */
  int seq_len;             /* T: tokens per sequence (defaults to model.ctx) */
  int microbatches;        /* M: micro-batches per step */
  int64_t steps;           /* total optimizer steps (--steps); with resume and without
                              TRAIN_GIVEN_STEPS: the checkpoint's */
  uint64_t seed;           /* initialisation and data-order seed (--seed) */
  adamw_hparams_t opt;     /* lr, betas, weight decay, clip, warm-up, decay */
  const char *data_path;   /* NULL: the default corpus */
  const char *out_dir;     /* run directory (--out) */
  const char *resume;      /* checkpoint dir, "auto", or NULL */
  int ckpt_every;          /* steps between checkpoints; 0: only at the end */
  int keep;                /* checkpoints kept (0: all) */
  int ckpt_async;          /* 1: a checkpoint is a host snapshot written in the background
                              (ckpt_async.h; --ckpt-async, the default); 0: written before
                              the next step (--no-ckpt-async) */
  int log_every;           /* steps between progress lines */
  int eval_every;          /* steps between validation evaluations (0: only at the end) */
  int64_t eval_tokens;     /* held-out tokens per evaluation (validation.h: the same set on
                              every layout and micro-batch count) */
  int threads;             /* GEMM threads per rank */
  int quiet;               /* no progress lines */
  int eval_only;           /* with resume: the checkpoint's validation loss on this layout, no
                              training and no run files but the status record (--eval-only) */
  int verbose;             /* details in the banner (every figure of the simulated device) */
  /* distributed layout (train_run_dist) */
  int tp;                  /* T: tensor-parallel ranks per stage (--tp, default 1) */
  int sequence_parallel;   /* 1: sequence parallelism in the TP group (--sequence-parallel; T > 1) */
  int recompute;           /* gpt2_recompute_t: activation recomputation (--recompute) */
  int pp;                  /* P: pipeline stages (--pp, default 1) */
  int dp;                  /* D: data-parallel replicas (--dp, default 1) */
  int microbatches_given;  /* 1 if --microbatches was on the command line (else resume keeps
                              the checkpoint's) */
  int schedule;            /* sched_kind_t: SCHED_GPIPE or SCHED_1F1B (--schedule) */
  const char *stage_layers; /* "3,3,2" or NULL: balanced (--stage-layers) */
  int transport;           /* coll_transport_kind_t (--transport mpi|ofi) */
  const char *ofi_provider; /* libfabric provider or NULL (--ofi-provider) */
  double bucket_mb;        /* all-reduce bucket size in MiB (--bucket-mb) */
  int zero;                /* ZeRO stage 0 or 1 (--zero) */
  int grad_bf16;           /* 1: the data-parallel gradient reductions in bf16 (--grad-dtype bf16;
                              grad_sync.h); 0: fp32 (the default) */
  int precision;           /* mem_precision_t (memory_model.h) of --precision: MEM_PREC_FP32 (the
                              default), MEM_PREC_BF16 (bf16 matrix products, fp32 master weights
                              and moments) or MEM_PREC_BF16_SR (bf16 products and bf16 weights
                              updated with stochastic rounding, fp32 moments) */
  /* simulated accelerator (distributed loop; sim_clock.h) */
  const char *device;      /* trn1|trn2|trn3|h100|cpu|FILE.json; NULL: cpu (calibrated) */
  size_t device_mem;       /* bytes of device memory (--device-mem); 0: the profile's HBM */
  unsigned given;          /* TRAIN_GIVEN_* bits: what the command line set (resume compares
                              each with the checkpoint's value; unset ones take the checkpoint's) */
} train_config_t;

/* train_config_t.given */
#define TRAIN_GIVEN_STEPS (1u << 0)
#define TRAIN_GIVEN_LAYERS (1u << 1)
#define TRAIN_GIVEN_HEADS (1u << 2)
#define TRAIN_GIVEN_DIM (1u << 3)
#define TRAIN_GIVEN_CTX (1u << 4)
#define TRAIN_GIVEN_BATCH (1u << 5)
#define TRAIN_GIVEN_SEQ_LEN (1u << 6)
#define TRAIN_GIVEN_SEED (1u << 7)
#define TRAIN_GIVEN_LR (1u << 8)
#define TRAIN_GIVEN_WARMUP (1u << 9)
#define TRAIN_GIVEN_MIN_LR_RATIO (1u << 10)
#define TRAIN_GIVEN_WEIGHT_DECAY (1u << 11)
#define TRAIN_GIVEN_GRAD_CLIP (1u << 12)
#define TRAIN_GIVEN_ARCH (1u << 13)
#define TRAIN_GIVEN_KV_HEADS (1u << 14)
#define TRAIN_GIVEN_FFN (1u << 15)
#define TRAIN_GIVEN_RMS_NORM_EPS (1u << 16)
#define TRAIN_GIVEN_ROPE_THETA (1u << 17)
#define TRAIN_GIVEN_PRECISION (1u << 18)

/* The matrix-product precision of a training precision (mem_precision_t): GEMM_BF16 for bf16
 * and bf16-sr, GEMM_F32 for fp32. */
gemm_dtype_t train_matmul_dtype(int precision);
/* Sets up a model of either family (sm: stage_of_gpt2 / stage_of_llama) and its optimizer state
 * (NULL: none, as in evaluation) for the precision: the product precision; with bf16-sr, o's
 * stochastic rounding and, when round_params, the weights rounded to bf16 (a fresh
 * initialisation; a loaded bf16-sr checkpoint holds bf16 already), and the model marked as
 * holding bf16 weights (its checkpoints store them as BF16). */
void train_apply_precision(const stage_model_t *sm, adamw_t *o, int precision, uint64_t seed, int round_params);

/* The defaults `strata train` documents (tiny model, default corpus). */
void train_config_default(train_config_t *c);

/* Runs the job; returns 0, or 1 after printing an error (2 for a configuration error). */
int train_run(const train_config_t *c);

/* Resume: takes the model shape, batch, sequence length, seed and AdamW hyperparameters (as the
 * doubles the checkpoint stores: never rounded to float, or the resumed updates differ) and,
 * unless given on the command line, the micro-batch count, data path and step count from a
 * checkpoint's training state. A model or training flag given on the command line (c->given)
 * must equal the checkpoint's value: returns 0, or -1 with "--layers 3 differs from checkpoint
 * DIR's 2; ..." in err (c unchanged then). Numbers are compared to 6 significant digits (the
 * checkpoint keeps lr and its ratios as the run computed them). */
int train_config_from_state(train_config_t *c, const strata_train_state_t *state,
                            const char *ckpt_dir, char *err, size_t errlen);
/* The configuration steps both loops take, identical on every rank so all reach the same verdict
 * without communication: creates c->out_dir; with c->resume, finds the checkpoint ("auto": the
 * newest valid one under out_dir) into resume_dir, reads its training state into *state and
 * applies it to c (train_config_from_state, and the checkpoint's family and Llama settings from
 * its config.json: a family or Llama setting given on the command line must equal the
 * checkpoint's); opens the data (*data_path: c->data_path or the
 * default corpus) into *ds; sets the vocabulary from the data and seq_len from the context when
 * 0; checks the vocabulary, seq_len, --steps (at least 1, and beyond a resumed checkpoint's
 * step) and the AdamW hyperparameters (decay_steps defaults to steps). Returns 0, or -1 with a
 * configuration error in err; *ds is set (or NULL) either way and is the caller's to close.
 * --resume auto logs (rank 0, also with --quiet) every newer checkpoint it skips, with the
 * reason, and the one it resumes from. */
int train_prepare(train_config_t *c, strata_train_state_t *state, char *resume_dir,
                  size_t resume_len, data_set_t **ds, const char **data_path, char *err,
                  size_t errlen);
/* The reverse, for the checkpoint: the training configuration of c as the state records it
 * (schedule by name, min_lr = lr x min_lr_ratio, data_path as given). */
void train_config_to_state(strata_train_cfg_t *t, const train_config_t *c, const char *data_path);

/* The distributed job (any world size, including 1 with --tp 1 --pp 1 --dp 1): every rank of
 * MPI_COMM_WORLD calls it with the same configuration. Configuration errors are detected
 * identically on every rank; rank 0 prints the message and every rank returns 2. Runtime
 * failures return 1 (the failing rank prints why). */
int train_run_dist(const train_config_t *c);

#endif /* STRATA_TRAIN_H */
