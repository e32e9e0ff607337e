/* stage.h -- one pipeline stage's model, of either family, behind one table of calls, so the
 * pipeline (worker/parallel/pipeline.h), the gradient sync and the distributed job drive a GPT-2
 * shard (gpt2.h) and a Llama stage (llama.h) the same way. As NCCL's transports: a table of
 * function pointers, one const instance per family (stage_gpt2_ops, stage_llama_ops), and a
 * stage_model_t pairing a model with its table and the family-neutral view of its flat buffers
 * (both families keep all parameters in one flat buffer, all gradients in another, and a
 * gpt2_tensor_t catalogue of Hugging Face names).
 *
 * The calls are gpt2.h's pipeline contract: forward takes tokens on the first stage (has_embed)
 * or the previous stage's residual stream x_in (stream_rows x dim floats), targets on the last
 * (has_head); output is the residual stream a non-last stage sends; backward takes its gradient
 * dx_out (not on the last stage) and fills d(x_in) (not on the first).
 *
 * Gradient-ready callbacks: both families report each finished region of gradients during
 * backward, in decreasing offset order (gpt2_model_t.grad_ready: a layer, ln_f, the embeddings;
 * llama_model_t.grad_ready: norm + lm_head, a layer, embed_tokens), so the bucketed all-reduce
 * of grad_sync.h overlaps the rest of backward for either.
 *
 * Usage:
 *    stage_model_t sm = stage_of_llama(m);     // or stage_of_gpt2(g)
 *    void *a; sm.ops->acts_create(sm.model, B, T, &a, err, sizeof err);
 *    sm.ops->forward(sm.model, a, tokens, NULL, targets); sm.ops->backward(sm.model, a, NULL, 1, NULL);
 */
#ifndef STRATA_STAGE_H
#define STRATA_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "llama.h"

typedef void (*stage_grad_ready_fn)(void *ctx, size_t offset, size_t count);

typedef struct {
  const char *family; /* "gpt2" or "llama" */
  /* activations of one micro-batch of B x T: 0, or -1 with a message */
  int (*acts_create)(void *model, int B, int T, void **out, char *err, size_t errlen);
  void (*acts_free)(void *acts);
  size_t (*acts_bytes)(const void *acts);
  size_t (*scratch_bytes)(const void *model);
  int (*stream_rows)(const void *model, int B, int T);
  float (*forward)(void *model, void *acts, const int32_t *tokens, const float *x_in,
                   const int32_t *targets);
  const float *(*output)(const void *acts);
  const float *(*losses)(const void *acts);
  int (*backward)(void *model, void *acts, const float *dx_out, float loss_scale, float *dx_in);
  void (*zero_grad)(void *model);
  /* installs (fn NULL: removes) the gradient-ready callback */
  void (*set_grad_ready)(void *model, stage_grad_ready_fn fn, void *ctx);
  /* the precision of the matrix products (gpt2_set_matmul_dtype / llama_set_matmul_dtype) and
   * whether the weights hold bf16 values only (the model's bf16_params: BF16 checkpoints) */
  void (*set_precision)(void *model, gemm_dtype_t dt, int bf16_params);
} stage_ops_t;

typedef struct {
  const stage_ops_t *ops;
  void *model;                  /* gpt2_model_t or llama_model_t */
  float *params, *grads;        /* the model's flat buffers */
  size_t num_params;
  const gpt2_tensor_t *tensors; /* its catalogue, in flat order */
  int num_tensors;
  int dim;                      /* C: width of the residual stream */
  int has_embed, has_head;      /* the stage consumes tokens / produces the loss */
  int tp_rank;                  /* tensor-parallel rank */
} stage_model_t;

extern const stage_ops_t stage_gpt2_ops;
extern const stage_ops_t stage_llama_ops;

stage_model_t stage_of_gpt2(gpt2_model_t *m);
stage_model_t stage_of_llama(llama_model_t *m);

#endif /* STRATA_STAGE_H */
