/* train_model.h -- the model of a one-rank training or evaluation job, of either family: GPT-2
 * (gpt2.h, one whole-model shard) or Llama (llama.h). The single-rank loop (train.c), the
 * validation set (validation.h) and strata eval drive it through these few calls, so the loop
 * exists once; everything else (data, AdamW, schedule, records) does not depend on the family.
 * Both families keep all parameters in one flat buffer, all gradients in another, and a
 * gpt2_tensor_t catalogue of Hugging Face names, so AdamW, the gradient norm and the checkpoint
 * writer apply unchanged.
 *
 * Usage:
 *    train_model_t tm;
 *    if (train_model_create(&tm, CKPT_ARCH_LLAMA, &shape, &llama, B, T, err, sizeof err)) fail;
 *    train_model_init(&tm, seed);           // or train_model_load(&tm, dir, m, v, &state, ...)
 *    train_model_zero_grad(&tm);
 *    double loss = train_model_forward(&tm, in, tg);
 *    train_model_backward(&tm, 1.0f);       // grads in tm.grads
 *    train_model_free(&tm);
 */
#ifndef STRATA_TRAIN_MODEL_H
#define STRATA_TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "gpt2.h"
#include "llama.h"

typedef struct {
  ckpt_arch_t arch;
  gpt2_model_t *gpt; /* arch GPT2: the whole model, and activations of B x T */
  gpt2_acts_t *gpt_acts;
  llama_model_t *llama; /* arch LLAMA */
  llama_acts_t *llama_acts;
  /* the model's flat buffers and catalogue, whichever the family */
  float *params, *grads;
  size_t num_params;
  const gpt2_tensor_t *tensors;
  int num_tensors;
} train_model_t;

/* The Llama configuration of a shape (vocab, ctx, layers, heads, dim) and the Llama settings of
 * `llama` (kv_heads 0: heads, multi-head attention; ffn 0: the Llama rule, 8/3 x dim rounded up
 * to a multiple of 64; rms_norm_eps and rope_theta as given). */
llama_config_t train_llama_config(const gpt2_config_t *shape, const llama_config_t *llama);

/* Builds the whole model of `arch` (shape for GPT-2; llama, complete, for Llama) with zeroed
 * parameters (-1: a configuration error in err), then activations for B sequences of T (-2 with
 * a message: out of memory). */
int train_model_create(train_model_t *tm, ckpt_arch_t arch, const gpt2_config_t *shape,
                       const llama_config_t *llama, int B, int T, char *err, size_t errlen);
void train_model_free(train_model_t *tm);

void train_model_init(train_model_t *tm, uint64_t seed); /* the family's initialisation */
void train_model_zero_grad(train_model_t *tm);
/* Forward of B x T tokens with targets: the mean loss (NAN on a bad id). */
double train_model_forward(train_model_t *tm, const int32_t *in, const int32_t *tg);
/* Per-position losses (B, T) of the last forward. */
const float *train_model_losses(const train_model_t *tm);
/* Backward of the last forward: grads += d(loss * scale)/d(params). 0 or -1. */
int train_model_backward(train_model_t *tm, float scale);

/* Checkpoints (checkpoint.h): ckpt_save / ckpt_load or their Llama forms. 0 or -1. */
int train_model_save(const train_model_t *tm, const char *dir, const float *exp_avg,
                     const float *exp_avg_sq, strata_train_state_t *state, char *err, size_t errlen);
int train_model_load(train_model_t *tm, const char *dir, float *exp_avg, float *exp_avg_sq,
                     strata_train_state_t *state, char *err, size_t errlen);

#endif /* STRATA_TRAIN_MODEL_H */
