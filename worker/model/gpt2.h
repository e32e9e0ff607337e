/* gpt2.h -- GPT-2 on CBLAS, for a contiguous range of layers (one pipeline stage's shard).
 *
 * The model is GPT-2 as Hugging Face GPT2LMHeadModel and llm.c define it:
 * pre-LayerNorm blocks (eps 1e-5), causal multi-head attention scaled by 1/sqrt(C/H), MLP
 * C -> 4C -> C with tanh GELU, final ln_f, logits = ln_f(x) @ wte^T (tied), mean cross-entropy.
 *
 * A shard owns layers [layer_begin, layer_end). The first shard (has_embed) also owns wte and
 * wpe and turns tokens into the residual stream; the last (has_head) owns ln_f and computes
 * logits and the loss with wte (tied: a last stage that is not also the first holds its own
 * copy of wte; the pipeline sums the two copies' gradients). Between shards the residual
 * stream travels as a plain (B, T, C) float buffer, and its gradient likewise.
 *
 * Memory, as llm.c: all parameters of a shard live in one flat float allocation, all gradients
 * in another with the same layout, and typed pointers view into them. The flat layout is
 * layer-major so that a finished layer's gradients form one contiguous region (bucketed
 * all-reduce can start on it while backward goes on):
 *     [wte (V,C)] [wpe (T,C)] | layer l: ln_1.w, ln_1.b, c_attn.w (C,3C), c_attn.b (3C),
 *     c_proj.w (C,C), c_proj.b (C), ln_2.w, ln_2.b, c_fc.w (C,4C), c_fc.b (4C),
 *     mlp.c_proj.w (4C,C), mlp.c_proj.b (C) | ... | [ln_f.w (C), ln_f.b (C)]
 * Matrices are stored in Hugging Face Conv1D layout [in, out] (row-major), so checkpoint I/O is
 * a straight copy. wte is placed first when has_embed, or just before ln_f when only has_head.
 *
 * Activations of one micro-batch live in a gpt2_acts_t, so a pipeline stage can keep several
 * micro-batches in flight (GPipe keeps M, 1F1B at most P). Gradients accumulate (+=) over
 * backward calls until gpt2_zero_grad. The gradients of activations live in scratch owned by
 * the model, so calls on one model must not run concurrently (one thread per shard).
 * Tunable: STRATA_ATTN_BLOCK_ROWS (query rows per causal attention sgemm block, default 64).
 *
 * Usage (one stage, micro-batch of B sequences of T tokens):
 *    gpt2_model_t *m; gpt2_create(&cfg, range, &m, err, sizeof err);
 *    gpt2_init_params(m, seed);
 *    gpt2_acts_t *a; gpt2_acts_create(m, B, T, &a, err, sizeof err);
 *    float loss = gpt2_forward(m, a, tokens, NULL, targets);      // single-stage model
 *    gpt2_zero_grad(m); gpt2_backward(m, a, NULL, 1.0f, NULL);     // grads in m->grads
 */
#ifndef STRATA_GPT2_H
#define STRATA_GPT2_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int vocab;  /* V: vocabulary size (256 for raw bytes, 50257 for GPT-2 tokens) */
  int ctx;    /* maximum sequence length T_max (wpe rows, HF n_positions) */
  int layers; /* L: total transformer blocks in the whole model */
  int heads;  /* H: attention heads; dim % heads == 0 */
  int dim;    /* C: embedding width */
} gpt2_config_t;

typedef struct {
  int layer_begin; /* first layer owned (global index) */
  int layer_end;   /* one past the last layer owned */
  int has_embed;   /* owns wte + wpe, consumes tokens */
  int has_head;    /* owns ln_f (+ wte), produces logits and loss */
} gpt2_range_t;

/* One named parameter tensor of a shard, in Hugging Face GPT-2 naming ("wte.weight",
 * "h.3.attn.c_attn.weight", "ln_f.bias", ...). data/grad point into the flat buffers. */
typedef struct {
  char name[64];
  int ndim;
  int64_t shape[2];
  size_t offset; /* element offset in the flat parameter / gradient buffers */
  size_t numel;
  int decay;     /* 1 if AdamW weight decay applies (2-D tensors: matmul weights, embeddings) */
} gpt2_tensor_t;

typedef struct {
  float *ln1_w, *ln1_b;     /* (C) */
  float *attn_w;            /* (C, 3C) c_attn.weight */
  float *attn_b;            /* (3C) */
  float *attn_proj_w;       /* (C, C) attn.c_proj.weight */
  float *attn_proj_b;       /* (C) */
  float *ln2_w, *ln2_b;     /* (C) */
  float *fc_w;              /* (C, 4C) mlp.c_fc.weight */
  float *fc_b;              /* (4C) */
  float *fc_proj_w;         /* (4C, C) mlp.c_proj.weight */
  float *fc_proj_b;         /* (C) */
} gpt2_layer_t;

typedef struct gpt2_model {
  gpt2_config_t cfg;
  gpt2_range_t range;
  size_t num_params;       /* elements in params / grads */
  float *params;           /* flat, layout above */
  float *grads;            /* flat, same layout */
  gpt2_tensor_t *tensors;  /* catalogue, in flat-buffer order */
  int num_tensors;
  /* typed views into params (NULL where the shard does not own the tensor) */
  float *wte;              /* (V, C) */
  float *wpe;              /* (T_max, C) */
  gpt2_layer_t *layer;     /* [layer_end - layer_begin], local index */
  float *lnf_w, *lnf_b;    /* (C) */
  /* the same views into grads */
  float *g_wte, *g_wpe;
  gpt2_layer_t *g_layer;
  float *g_lnf_w, *g_lnf_b;
  /* Called during backward each time a contiguous region of grads is final for this
   * backward call (a layer finished, ln_f, the embeddings): offset and count in elements.
   * Regions are reported in decreasing offset order, except wte which is reported last. */
  void (*grad_ready)(void *ctx, size_t offset, size_t count);
  void *grad_ready_ctx;
  void *impl;              /* private scratch (gpt2.c) */
} gpt2_model_t;

typedef struct gpt2_acts gpt2_acts_t; /* activations of one micro-batch (opaque) */

/* Builds a shard with uninitialised parameters and zeroed gradients. Validates the
 * configuration (dim % heads, range within layers, positive sizes); on failure writes a
 * message naming the field to err and returns -1. */
int gpt2_create(const gpt2_config_t *cfg, gpt2_range_t range, gpt2_model_t **out, char *err,
                size_t errlen);
void gpt2_free(gpt2_model_t *m);

/* GPT-2 initialisation: weights N(0, 0.02), residual projections (attn.c_proj, mlp.c_proj)
 * N(0, 0.02/sqrt(2L)), biases 0, LayerNorm weight 1 bias 0. Each tensor's values depend only
 * on (seed, tensor name), so every way of sharding the model gets identical weights. */
void gpt2_init_params(gpt2_model_t *m, uint64_t seed);

/* Finds a tensor by Hugging Face name; NULL if this shard does not own it. */
const gpt2_tensor_t *gpt2_find_tensor(const gpt2_model_t *m, const char *name);

/* Activation storage for micro-batches of B sequences of length T (T <= ctx). */
int gpt2_acts_create(const gpt2_model_t *m, int B, int T, gpt2_acts_t **out, char *err, size_t errlen);
void gpt2_acts_free(gpt2_acts_t *a);
/* Reuses activation storage for a smaller micro-batch: B <= the B and T <= the T it was created
 * with (e.g. evaluation of a short tail, or generation with a growing prefix). Results are
 * identical to those of storage created at (B, T). Returns -1 (message in err) if too large. */
int gpt2_acts_reshape(gpt2_acts_t *a, int B, int T, char *err, size_t errlen);
size_t gpt2_acts_bytes(const gpt2_acts_t *a);

/* Forward over the shard's layers.
 *  tokens  (B, T): used when has_embed; x_in (B, T, C) otherwise.
 *  targets (B, T): used when has_head; may be NULL (then no loss is computed).
 * Returns the mean cross-entropy when has_head and targets, else 0. */
float gpt2_forward(gpt2_model_t *m, gpt2_acts_t *a, const int32_t *tokens, const float *x_in,
                   const int32_t *targets);
/* Residual stream leaving the shard, (B, T, C): valid after forward when !has_head. */
const float *gpt2_output(const gpt2_acts_t *a);
/* Logits (B, T, V): valid after forward when has_head, until the backward of the same
 * micro-batch, which reuses the buffer for d(loss)/d(logits) (saves B*T*V floats). */
const float *gpt2_logits(const gpt2_acts_t *a);
/* Per-position loss (B, T): valid after forward when has_head and targets were given. */
const float *gpt2_losses(const gpt2_acts_t *a);

/* Backward for the micro-batch whose forward filled `a`, accumulating into m->grads.
 *  has_head: the loss gradient is loss_scale / (B*T) per position (loss_scale = 1/M for M
 *            micro-batches of one step); dx_out is ignored.
 *  otherwise dx_out (B, T, C) is the gradient of the residual stream leaving the shard.
 *  dx_in (B, T, C), when !has_embed, receives the gradient of x_in (may alias nothing). */
void gpt2_backward(gpt2_model_t *m, gpt2_acts_t *a, const float *dx_out, float loss_scale,
                   float *dx_in);
void gpt2_zero_grad(gpt2_model_t *m);

/* FLOPs of one forward+backward of this shard for B x T tokens (6 * params-in-matmuls * tokens
 * plus attention), for throughput and MFU reporting. */
double gpt2_train_flops(const gpt2_model_t *m, int B, int T);

/* ---- Generation with a KV cache (inference; see worker/infer/infer.h) ----
 * One sequence's slice of a forward call: n_new new positions starting at position pos0. The
 * cache holds, for each layer of the shard, the keys and values of positions [0, pos0):
 * k and v are (nl, cap, C) with nl = layer_end - layer_begin, row t of layer l at
 * k + ((size_t)l * cap + t) * C. The call appends the keys and values of the new positions
 * (pos0 + n_new <= cap and <= cfg.ctx). */
typedef struct {
  int n_new;  /* new positions in this call (>= 1) */
  int pos0;   /* positions already cached (the first new token sits at position pos0) */
  float *k;   /* (nl, cap, C) cached keys */
  float *v;   /* (nl, cap, C) cached values */
  int cap;    /* positions the cache has room for */
} gpt2_kv_seq_t;

/* Incremental forward of nseq sequences at once over the shard: the rows of all sequences
 * (N = sum of n_new) go through the matrix products together; attention runs per sequence
 * over its cached keys plus the new ones (causal). Inputs, rows in sequence order:
 *   has_embed: tokens (N); otherwise x_in (N, C) (the residual stream from the previous stage).
 * Output:
 *   !has_head: out (N, C), the residual stream leaving the shard.
 *   has_head:  logits into out: all N rows (N, V) when last_only == 0, else only the last new
 *              position of each sequence (nseq, V).
 * The result for a position equals gpt2_forward on the whole prefix (up to float rounding:
 * within 1e-5 on logits in the tests). Returns 0, or -1 with a message in err (bad token,
 * position past the context or the cache, out of memory). Not thread-safe per model. */
int gpt2_forward_kv(gpt2_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens,
                    const float *x_in, float *out, int last_only, char *err, size_t errlen);
/* FLOPs of the forward of n_new positions after pos0 cached ones (matmuls + attention). */
double gpt2_forward_kv_flops(const gpt2_model_t *m, int n_new, int pos0);

#endif /* STRATA_GPT2_H */
