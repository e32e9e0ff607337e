/* train_loop.h -- what the two training loops share (train.c on one rank, train_dist.c under
 * mpirun, and the coordinator's progress line): the exit codes of a job's phases, when a step
 * ends in an evaluation, a progress line or a checkpoint, the step's record in steps.jsonl, the
 * ETA of the progress line, the training state a checkpoint records and the "model" object of
 * report.json. Internal to worker/train. The loops themselves stay apart (train.c says why);
 * this is the bookkeeping around them, so both count, schedule and record alike.
 *
 * Steps are counted 1-based here: `step` is the step that has just finished (1 .. total). */
#ifndef STRATA_TRAIN_LOOP_H
#define STRATA_TRAIN_LOOP_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "runlog.h"
#include "strata_proto.h"
#include "train.h"

/* What a phase of a training job returns, and so the job's exit code (train.h). */
#define TRAIN_OK 0
#define TRAIN_FAILED 1     /* a runtime failure: the failing rank said why */
#define TRAIN_BAD_CONFIG 2 /* bad input, found before the first step */

/* 1 when an every-K cadence falls on `step` (K = 0: never). */
int train_every(int64_t step, int every);

/* What is due after `step`: eval every --eval-every steps, or only after the last step when it
 * is 0; a checkpoint every --ckpt-every steps and always after the last step. */
typedef struct {
  int is_last; /* step == c->steps */
  int eval;    /* a validation evaluation */
  int ckpt;    /* a checkpoint RUN/ckpt-<step> */
} train_due_t;
train_due_t train_step_due(const train_config_t *c, int64_t step);

/* The progress line is printed every log_every steps, for the first step of this invocation
 * (start_step + 1) and for the last one (total_steps). */
int train_progress_due(int64_t step, int64_t start_step, int64_t total_steps, int log_every);

/* The ETA of a progress line: elapsed_s / steps_done * steps_left, as "42s", "3m07s" or
 * "2h05m" (a negative, NaN or absurd estimate prints "0s"). */
void train_format_eta(char *buf, size_t len, double elapsed_s, int64_t steps_done,
                      int64_t steps_left);

/* A step's record in steps.jsonl with the keys both loops write (README): step, loss, lr,
 * grad_norm, tokens_per_s, step_s; the coordinator adds its own after these. Non-finite numbers
 * are null. NULL when out of memory (runlog_steps_append then skips the line). */
json_object *train_step_record(int64_t step, double loss, double lr, double grad_norm,
                               double tokens_per_s, double step_s);

/* RUN/val.jsonl, one line per validation: {"step": S, "val_loss": V, "val_tokens": N}, appended
 * with the steps log's policy (a failure warns once; the run goes on). open: append != 0 keeps
 * a resumed run's lines. 0, or -1 with a message (open only). */
int train_val_log_open(runlog_lines_t *log, const char *out_dir, int append, char *err, size_t errlen);
void train_val_log_append(runlog_lines_t *log, int64_t step, double val_loss, int64_t val_tokens);

/* The model shape as checkpoints and reports record it. */
strata_model_cfg_t train_model_cfg(const gpt2_config_t *m);

/* report.json's "model" object: vocab, ctx, layers, heads, dim, params. */
json_object *train_model_json(const strata_model_cfg_t *m, int64_t params);

/* report.json's "config" object from the training configuration t: batch, seq_len, then
 * micro_key (the single-rank loop: "microbatches", the count; the distributed one: "micro_batch",
 * sequences per micro-batch) = micro, steps, seed, lr, warmup_steps, weight_decay, grad_clip,
 * data. */
json_object *train_config_json(const strata_train_cfg_t *t, const char *micro_key, int64_t micro);

/* The training state a checkpoint of `step` records: the step, the data order (seed and step),
 * the tokens seen, the loss, the model, the training configuration (train_config_to_state) and
 * the layout, c->tp tensor-parallel ranks x pp stages of stage_layers[0 .. pp) layers x dp
 * replicas. */
void train_state_fill(strata_train_state_t *s, const train_config_t *c, const char *data_path,
                      uint64_t step, uint64_t tokens, double last_loss, int pp, int dp,
                      const int *stage_layers);

#endif /* STRATA_TRAIN_LOOP_H */
