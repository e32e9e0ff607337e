/* llama.h -- a Llama-family decoder on CBLAS, whole model on one rank: forward (logits and mean
 * cross-entropy), backward (the gradient of every parameter) and, through adamw.h, AdamW.
 *
 * The model is Hugging Face LlamaForCausalLM's math, in float32 (or with bf16 matrix products,
 * llama_set_matmul_dtype):
 *     x = embed_tokens[token]
 *     per layer:  h = x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))),
 *                     n = input_layernorm(x)
 *                 x = h + down_proj(silu(gate_proj(n2)) * up_proj(n2)),  n2 = post_attention_layernorm(h)
 *     logits = lm_head(norm(x))   (untied: lm_head.weight is its own tensor)
 *     loss = mean over the B*T positions of cross-entropy(logits, target)
 * RMSNorm(x) = weight * x * rsqrt(mean(x^2) + rms_norm_eps), no bias, no mean subtraction.
 * RoPE, Hugging Face's rotate-half convention: head size hs (even), inv_freq[i] =
 * rope_theta^(-2i/hs) for i < hs/2, angle(t, i) = t * inv_freq[i] at position t = 0..T-1 of
 * each sequence; for i < hs/2, with c = cos(angle), s = sin(angle):
 *     out[i] = x[i] c - x[i + hs/2] s,   out[i + hs/2] = x[i + hs/2] c + x[i] s
 * applied to every query and key head. Grouped-query attention: kv_heads divides heads and
 * query head h reads key / value head h / (heads / kv_heads) (HF repeat_kv); kv_heads == heads
 * is multi-head, kv_heads == 1 multi-query attention. Causal softmax scaled by 1/sqrt(hs).
 * No biases anywhere.
 *
 * Memory, as llm.c and gpt2.h: all parameters in one flat float allocation, all gradients in
 * another with the same layout, typed views into both. The layout is layer-major, in Hugging
 * Face names, linear weights [out, in] row-major (nn.Linear), so a checkpoint is a 1:1 copy of
 * each tensor by name (m->tensors is the catalogue; hs = dim / heads, Ckv = kv_heads * hs):
 *     model.embed_tokens.weight (V, C)
 *     layer l, "model.layers.<l>.":
 *       input_layernorm.weight (C)
 *       self_attn.q_proj.weight (C, C)      self_attn.k_proj.weight (Ckv, C)
 *       self_attn.v_proj.weight (Ckv, C)    self_attn.o_proj.weight (C, C)
 *       post_attention_layernorm.weight (C)
 *       mlp.gate_proj.weight (F, C)  mlp.up_proj.weight (F, C)  mlp.down_proj.weight (C, F)
 *     model.norm.weight (C)
 *     lm_head.weight (V, C)
 * The catalogue uses gpt2_tensor_t (decay = 1 on the 2-D tensors; split kinds below), so
 * adamw_step, the gradient-norm helpers of adamw.h, gradient sync, ZeRO and the checkpoint's
 * gather-on-save / slice-on-load (gpt2_tensor_slice / gpt2_tensor_unslice) apply unchanged.
 *
 * Pipeline stages (llama_create_range), as gpt2.h's ranges: a stage owns layers [layer_begin,
 * layer_end) and, when has_embed, model.embed_tokens (it turns tokens into the residual stream)
 * and, when has_head, model.norm and lm_head (it computes the logits and the loss). The catalogue
 * holds only the owned tensors, in the same order and with their global names
 * (model.layers.<global l>....), so a stage's weights after llama_init_params equal the whole
 * model's and a checkpoint loads into any split by name. Between stages the residual stream
 * travels as a plain (B*T, C) float buffer (llama_stream_rows rows), and its gradient likewise:
 * llama_stage_forward takes it as x_in without has_embed and llama_output gives it without
 * has_head; llama_stage_backward takes its gradient dx_out without has_head and returns d(x_in)
 * without has_embed. llama_forward / llama_backward are the whole model's calls.
 * Generation with a KV cache is llama_forward_kv (llama_kv.c), over the same ranges and
 * tensor-parallel splits.
 * Recomputation and sequence parallelism do not exist here.
 *
 * Tensor parallelism (Megatron-LM, Shoeybi et al. 2019; as gpt2.h). A model made with
 * range.tp_size = tp > 1 and range.tp_rank = t (tp divides heads, kv_heads and ffn) holds, in the
 * same flat order and with Hugging Face [out, in] weights, so column-parallel means a split of
 * the rows (GPT2_SPLIT_ROWS) and row-parallel a split of the columns (GPT2_SPLIT_COLS):
 *     q_proj (C/tp, C)          query heads [t*H/tp, (t+1)*H/tp)             ROWS
 *     k_proj, v_proj (Ckv/tp, C) kv heads [t*KV/tp, (t+1)*KV/tp): the kv heads
 *                               of this rank's query heads                   ROWS
 *     o_proj (C, C/tp)          the input columns of this rank's heads       COLS
 *     gate_proj, up_proj (F/tp, C) rows [t*F/tp, (t+1)*F/tp)                  ROWS
 *     down_proj (C, F/tp)       the matching input columns                    COLS
 *     embed_tokens, lm_head (Vp/tp, C) rows [t*Vp/tp, (t+1)*Vp/tp) of the vocabulary padded to
 *                               Vp = gpt2_padded_vocab(V, tp); rows >= V zero  VOCAB_ROWS
 *     the RMSNorm weights       replicated, identical on every TP rank        NONE
 * The TP group's communicator is given with llama_set_tp after creation. Megatron's f and g:
 * o_proj and down_proj products are partial sums all-reduced in forward before the residual
 * add (g); the gradients of the RMSNorm outputs feeding q/k/v, gate/up and lm_head are
 * all-reduced in backward (f). The embedding looks up zeros for tokens outside the rank's rows
 * and all-reduces. The loss is vocabulary-parallel: logits (B, T, Vp/tp) stay local; the row
 * maxima are all-reduced (MAX), then the exp-sums and target logits (SUM); every TP rank returns
 * the same loss and holds the same residual stream (B*T rows of C: the stream between pipeline
 * stages is whole on every TP rank). Per layer: 2 all-reduces of (B*T, C) forward, 2 backward.
 * The matrix products run in fp32 or, with llama_set_matmul_dtype, on bf16-rounded inputs
 * (strata train / eval --precision).
 * `strata train --arch llama` trains it (worker/train/train_model.h on one rank or as
 * data-parallel replicas; worker/parallel/pipeline.h through stage.h with --tp and --pp),
 * checkpoint.h saves and loads it by its Hugging Face names (whole tensors whatever the
 * tensor-parallel split); `strata eval` scores it.
 *
 * Activations of one batch live in a llama_acts_t; the gradients of activations live in
 * scratch owned by the model (one thread per model). Gradients accumulate (+=) over backward
 * calls until llama_zero_grad. Tunable: STRATA_ATTN_BLOCK_ROWS, as for GPT-2 (query rows per
 * causal attention sgemm block).
 *
 * Usage (B sequences of T tokens, one AdamW step):
 *    llama_config_t cfg = {.vocab = 96, .ctx = 16, .layers = 2, .heads = 4, .kv_heads = 2,
 *                          .dim = 64, .ffn = 160, .rms_norm_eps = 1e-5, .rope_theta = 1e4};
 *    llama_model_t *m; llama_create(&cfg, &m, err, sizeof err); llama_init_params(m, seed);
 *    llama_acts_t *a; llama_acts_create(m, B, T, &a, err, sizeof err);
 *    float loss = llama_forward(m, a, tokens, targets);
 *    llama_zero_grad(m); llama_backward(m, a, 1.0f);
 *    double ss = adamw_sum_squares(m->grads, m->num_params);
 *    adamw_step(opt, &hp, m->params, m->grads, m->tensors, m->num_tensors, lr,
 *               adamw_clip_scale(ss, hp.grad_clip));
 */
#ifndef STRATA_LLAMA_H
#define STRATA_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h" /* gemm_dtype_t: the precision of the matrix products */
#include "gpt2.h" /* gpt2_tensor_t: the tensor catalogue entry shared by the model families */

typedef struct {
  int vocab;          /* V: vocabulary size (HF vocab_size) */
  int ctx;            /* maximum sequence length (HF max_position_embeddings) */
  int layers;         /* L: decoder layers (HF num_hidden_layers) */
  int heads;          /* H: query heads (HF num_attention_heads); dim % heads == 0 */
  int kv_heads;       /* key / value heads (HF num_key_value_heads); heads % kv_heads == 0 */
  int dim;            /* C: hidden width (HF hidden_size); dim / heads even (RoPE pairs) */
  int ffn;            /* F: SwiGLU hidden width (HF intermediate_size) */
  double rms_norm_eps; /* RMSNorm epsilon (HF rms_norm_eps, e.g. 1e-5 or 1e-6) */
  double rope_theta;   /* RoPE base (HF rope_theta, e.g. 10000 or 500000) */
} llama_config_t;

/* The part of the model one pipeline stage owns (global layer indices). */
typedef struct {
  int layer_begin; /* first layer owned (global index) */
  int layer_end;   /* one past the last layer owned */
  int has_embed;   /* owns model.embed_tokens, consumes tokens */
  int has_head;    /* owns model.norm and lm_head, produces logits and loss */
  int tp_rank;     /* t: this model's tensor-parallel rank, 0 <= t < tp_size */
  int tp_size;     /* tp: tensor-parallel ranks splitting the layers; 0 means 1; divides heads,
                      kv_heads and ffn. llama_create_range stores it normalised (>= 1) */
} llama_range_t;

typedef struct {
  float *attn_norm;  /* (C) input_layernorm.weight */
  float *wq;         /* (C, C) self_attn.q_proj.weight [out, in] */
  float *wk;         /* (Ckv, C) self_attn.k_proj.weight */
  float *wv;         /* (Ckv, C) self_attn.v_proj.weight */
  float *wo;         /* (C, C) self_attn.o_proj.weight */
  float *mlp_norm;   /* (C) post_attention_layernorm.weight */
  float *w_gate;     /* (F, C) mlp.gate_proj.weight */
  float *w_up;       /* (F, C) mlp.up_proj.weight */
  float *w_down;     /* (C, F) mlp.down_proj.weight */
} llama_layer_t;

typedef struct llama_model {
  llama_config_t cfg;
  llama_range_t range; /* the layers and ends this model holds (llama_create: all) */
  size_t num_params;      /* elements in params / grads */
  float *params;          /* flat, layout above */
  float *grads;           /* flat, same layout */
  gpt2_tensor_t *tensors; /* catalogue in flat-buffer order, HF names */
  int num_tensors;
  /* typed views into params */
  float *embed;           /* (Vp/tp, C) model.embed_tokens.weight rows; NULL without range.has_embed */
  llama_layer_t *layer;   /* [layer_end - layer_begin], local index l - range.layer_begin */
  float *norm;            /* (C) model.norm.weight; NULL without range.has_head */
  float *lm_head;         /* (Vp/tp, C) lm_head.weight rows; NULL without range.has_head */
  /* the same views into grads */
  float *g_embed;
  llama_layer_t *g_layer;
  float *g_norm;
  float *g_lm_head;
  /* Called during llama_stage_backward each time a contiguous region of grads is final for
   * this backward call: norm + lm_head, then each layer from the last, then embed_tokens
   * (decreasing offsets); offset and count in elements. NULL: not called. */
  void (*grad_ready)(void *ctx, size_t offset, size_t count);
  void *grad_ready_ctx;
  int bf16_params;        /* 1: every parameter holds exactly a bf16 value (bf16-sr training
                             keeps them so): checkpoints store them as BF16 (0 by default) */
  void *impl;             /* private: RoPE tables, scratch, matmul precision (llama.c) */
} llama_model_t;

typedef struct llama_acts llama_acts_t; /* activations of one batch (opaque) */

/* Checks a configuration: positive sizes, dim % heads == 0, an even head size, kv_heads
 * dividing heads, eps > 0, theta > 0, sizes within 32-bit BLAS indices. 0, or -1 with a
 * message naming the field and the fix in err. */
int llama_config_check(const llama_config_t *cfg, char *err, size_t errlen);

/* Builds the model with zeroed parameters and gradients (llama_config_check first). 0, or -1
 * with a message in err. */
int llama_create(const llama_config_t *cfg, llama_model_t **out, char *err, size_t errlen);
/* The same for one pipeline stage: layers [range.layer_begin, range.layer_end) within
 * [0, cfg->layers] (possibly none) and the ends the range names, and with range.tp_size > 1
 * tensor-parallel rank range.tp_rank's part of them (tp must divide heads, kv_heads and ffn;
 * the message names the one it does not). 0, or -1 with a message. */
int llama_create_range(const llama_config_t *cfg, llama_range_t range, llama_model_t **out, char *err,
                       size_t errlen);
/* Sets the tensor-parallel group: tp's ranks are the model's TP ranks in tp_rank order
 * (coll_size == range.tp_size and coll_rank == range.tp_rank, checked). The model keeps the
 * pointer (the caller keeps the communicator alive). Required before any forward when tp > 1;
 * tp may be NULL at tp = 1. 0, or -1 with a message in err. */
int llama_set_tp(llama_model_t *m, coll_comm_t *tp, char *err, size_t errlen);
void llama_free(llama_model_t *m);

/* HF LlamaPreTrainedModel initialisation: every 2-D tensor N(0, 0.02), RMSNorm weights 1. Each
 * logical tensor's values depend only on (seed, tensor name) and a tensor-parallel rank keeps
 * its part (padding rows zero), so every layout starts from the weights of tp = 1. */
void llama_init_params(llama_model_t *m, uint64_t seed);

/* Tensor by Hugging Face name, NULL if absent. */
const gpt2_tensor_t *llama_find_tensor(const llama_model_t *m, const char *name);

/* Activation storage for batches of up to B sequences of T <= ctx tokens. The model's scratch
 * grows to fit. 0, or -1 with a message in err. */
int llama_acts_create(llama_model_t *m, int B, int T, llama_acts_t **out, char *err, size_t errlen);
void llama_acts_free(llama_acts_t *a);

/* Forward of tokens (B, T) (ids in [0, V)). With targets (B, T) returns the mean cross-entropy
 * and keeps what llama_backward needs; with targets NULL computes the logits only and returns
 * 0. NAN on a bad token or target id (logged with its index). */
float llama_forward(llama_model_t *m, llama_acts_t *a, const int32_t *tokens, const int32_t *targets);
/* Logits (B, T, Vp/tp) of the last forward: this rank's vocabulary columns (all V at tp = 1),
 * padding columns -INFINITY (overwritten by llama_backward). */
const float *llama_logits(const llama_acts_t *a);
/* Vp/tp: rows of the local embed_tokens and lm_head, columns of the logits (V at tp = 1). */
int llama_local_vocab(const llama_model_t *m);
/* gpt2_logits_assemble for a Llama model: every TP rank's (rows, Vp/tp) logits as
 * coll_allgather leaves them (tp blocks in rank order) into full (rows, V) in the vocabulary's
 * order, padding columns dropped. At tp = 1 a plain copy. */
void llama_logits_assemble(const llama_model_t *m, const float *gathered, size_t rows, float *full);
/* Per-position cross-entropy (B, T) of the last forward with targets. */
const float *llama_losses(const llama_acts_t *a);

/* A pipeline stage's forward, as gpt2_forward: tokens (B, T) when has_embed, else x_in
 * (llama_stream_rows, C), the residual stream of the previous stage; targets (B, T) when
 * has_head (may be NULL: logits only). Returns the mean cross-entropy when has_head and
 * targets, else 0; NAN on a bad id or a missing input (logged). */
float llama_stage_forward(llama_model_t *m, llama_acts_t *a, const int32_t *tokens, const float *x_in,
                          const int32_t *targets);
/* Residual stream leaving the stage (llama_stream_rows, C): valid after a forward without has_head. */
const float *llama_output(const llama_acts_t *a);
/* Rows of C the residual stream between stages holds for B x T tokens: B*T. */
int llama_stream_rows(const llama_model_t *m, int B, int T);

void llama_zero_grad(llama_model_t *m);

/* ---- Precision of the matrix products ----
 * GEMM_F32 (the default) or GEMM_BF16, GPT-2's policy (gpt2_set_matmul_dtype): every matrix
 * product of llama_stage_forward / llama_stage_backward -- q/k/v/o, gate/up/down and lm_head,
 * forward and both backward products, and the attention's Q K^T and P V (nn.c's kernels) --
 * rounds its inputs to bf16 and accumulates in fp32, as PyTorch's bf16 autocast does;
 * parameters, gradients, RMSNorm, RoPE, softmax, SwiGLU's silu and the loss stay fp32. The
 * cached forward (llama_forward_kv) follows the same setting. Takes effect at the next call. */
void llama_set_matmul_dtype(llama_model_t *m, gemm_dtype_t dt);
gemm_dtype_t llama_get_matmul_dtype(const llama_model_t *m);
/* Backward of the last forward with targets: grads += d(loss * loss_scale)/d(params). Each
 * forward allows one backward. 0, or -1 (logged) without such a forward. */
int llama_backward(llama_model_t *m, llama_acts_t *a, float loss_scale);
/* A pipeline stage's backward of the last llama_stage_forward, as gpt2_backward: with has_head
 * the loss gradient is loss_scale / (B*T) per position (dx_out ignored; the forward must have
 * had targets), otherwise dx_out (llama_stream_rows, C) is the gradient of llama_output. Without
 * has_embed, dx_in (may be NULL) receives the gradient of x_in. grads +=. 0, or -1 (logged). */
int llama_stage_backward(llama_model_t *m, llama_acts_t *a, const float *dx_out, float loss_scale,
                         float *dx_in);

/* Bytes of one batch's activation storage, and of the model's scratch (activation gradients of
 * one backward, sized by the largest llama_acts_create so far). */
size_t llama_acts_bytes(const llama_acts_t *a);
size_t llama_scratch_bytes(const llama_model_t *m);

/* Training FLOPs of one forward + backward of B x T tokens over the layers (and lm_head) the
 * model holds: 6 per parameter of the matrix products per token plus attention (Q K^T and P V
 * over T positions, x3 with backward); this rank's part at tp > 1 (its unpadded vocabulary). */
double llama_train_flops(const llama_model_t *m, int B, int T);

/* ---- Generation with a KV cache (inference; see worker/infer/infer.h) ----
 * The cache of one sequence is a gpt2_kv_seq_t (gpt2.h) whose rows are Ckv = llama_kv_dim(m)
 * = kv_heads / tp * hs wide, not C: with grouped-query attention only the kv heads are cached,
 * and a tensor-parallel rank caches only its own kv heads (kv_heads * hs at tp = 1). k
 * and v are (nl, cap, Ckv), nl = range.layer_end - range.layer_begin, row t of local layer l at
 * k + ((size_t)l * cap + t) * Ckv. Keys are stored after RoPE at their absolute positions (new
 * row i of a sequence sits at position pos0 + i), so a cached key is never rotated again. */
int llama_kv_dim(const llama_model_t *m);

/* Incremental forward of nseq sequences at once over the model's range, gpt2_forward_kv's
 * contract: the rows of all sequences (N = sum of n_new) go through the matrix products
 * together; attention runs per sequence over its cached keys plus the new ones (causal).
 * Inputs, rows in sequence order: range.has_embed: tokens (N); otherwise x_in (N, C) (the
 * residual stream from the previous stage). Output: !has_head: out (N, C), the residual stream
 * leaving the range; has_head: logits into out, all N rows (N, Vl) when last_only == 0, else the
 * last new position of each sequence only (nseq, Vl), Vl = llama_local_vocab(m) (V at tp = 1).
 * The call appends the new positions' keys and values to each cache (pos0 + n_new <= cap and
 * <= cfg.ctx). The result for a position equals llama_forward on the whole prefix up to float
 * rounding (within 1e-4 on logits in the tests).
 * Tensor parallelism (tp > 1, llama_set_tp first; every TP rank calls with the same sequences
 * and inputs): a rank runs its query and kv heads and its SwiGLU columns, the embedding and the
 * o_proj / down_proj partial sums are all-reduced as in llama_forward, so x_in and the stream
 * out are whole (N, C) on every TP rank; the logits are the rank's vocabulary slice, padding
 * columns -INFINITY: the caller all-gathers them and assembles with llama_logits_assemble.
 * 0, or -1 with a message in err (bad token, position past the context or the cache, out of
 * memory, no TP communicator, a failed all-reduce). Not thread-safe per model. */
int llama_forward_kv(llama_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens,
                     const float *x_in, float *out, int last_only, char *err, size_t errlen);
/* FLOPs of a forward of n_new positions after pos0 cached ones (matmuls + attention + head):
 * this rank's part at tp > 1. */
double llama_forward_kv_flops(const llama_model_t *m, int n_new, int pos0);

#endif /* STRATA_LLAMA_H */
