/* gpt2.h -- GPT-2 on CBLAS, for a contiguous range of layers (one pipeline stage's shard) and,
 * with tensor parallelism, 1/tp of every matrix of those layers (one tensor-parallel rank).
 *
 * The model is GPT-2 as Hugging Face GPT2LMHeadModel and llm.c define it:
 * pre-LayerNorm blocks (eps 1e-5), causal multi-head attention scaled by 1/sqrt(C/H), MLP
 * C -> 4C -> C with tanh GELU, final ln_f, logits = ln_f(x) @ wte^T (tied), mean cross-entropy.
 *
 * A shard owns layers [layer_begin, layer_end). The first shard (has_embed) also owns wte and
 * wpe and turns tokens into the residual stream; the last (has_head) owns ln_f and computes
 * logits and the loss with wte (tied: a last stage that is not also the first holds its own
 * copy of wte; the pipeline sums the two copies' gradients). Between shards the residual
 * stream travels as a plain float buffer of gpt2_stream_rows() rows of C, and its gradient
 * likewise.
 *
 * Memory, as llm.c: all parameters of a shard live in one flat float allocation, all gradients
 * in another with the same layout, and typed pointers view into them. The flat layout is
 * layer-major so that a finished layer's gradients form one contiguous region (bucketed
 * all-reduce can start on it while backward goes on):
 *     [wte (V,C)] [wpe (T,C)] | layer l: ln_1.w, ln_1.b, c_attn.w (C,3C), c_attn.b (3C),
 *     c_proj.w (C,C), c_proj.b (C), ln_2.w, ln_2.b, c_fc.w (C,4C), c_fc.b (4C),
 *     mlp.c_proj.w (4C,C), mlp.c_proj.b (C) | ... | [ln_f.w (C), ln_f.b (C)]
 * Matrices are stored in Hugging Face Conv1D layout [in, out] (row-major), so checkpoint I/O is
 * a straight copy at tp = 1 (and gpt2_tensor_slice / gpt2_tensor_unslice otherwise). wte is
 * placed first when has_embed, or just before ln_f when only has_head.
 *
 * Tensor parallelism (Megatron-LM: Shoeybi et al. 2019; Korthikanti et al. 2022). A shard made
 * with range.tp_size = tp > 1 and range.tp_rank = t holds, in the same flat order:
 *     c_attn.w (C, 3C/tp), c_attn.b (3C/tp)   column-parallel by heads: the q, k and v columns
 *                                             of heads [t*H/tp, (t+1)*H/tp), laid out [q|k|v]
 *     attn.c_proj.w (C/tp, C)                 row-parallel (rows of this rank's heads)
 *     mlp.c_fc.w (C, 4C/tp), c_fc.b (4C/tp)   column-parallel: columns [t*4C/tp, (t+1)*4C/tp)
 *     mlp.c_proj.w (4C/tp, C)                 row-parallel: rows [t*4C/tp, (t+1)*4C/tp)
 *     wte (Vp/tp, C)                          vocabulary-parallel: rows [t*Vp/tp, (t+1)*Vp/tp)
 *                                             of the padded vocabulary Vp = gpt2_padded_vocab
 *                                             (rows >= V are padding: zero, never in the loss)
 *     every LayerNorm, wpe and the two row-parallel biases (attn.c_proj.b, mlp.c_proj.b):
 *                                             replicated, identical on every TP rank
 * The TP group's communicator is given with gpt2_set_tp after creation. Forward and backward
 * then use Megatron's f and g: the row-parallel outputs are all-reduced in forward (g) and
 * their replicated bias added once after it; the inputs of the column-parallel products
 * (ln_1, ln_2 and ln_f outputs) have their gradients all-reduced in backward (f). The
 * embedding looks up zeros for tokens outside the rank's rows, all-reduces, then adds wpe.
 * The loss is vocabulary-parallel: logits (B, T, Vp/tp) stay local; the row maxima are
 * all-reduced (MAX), then the exp-sums and target logits (SUM); the gradient softmax - onehot
 * is formed on the local slice; the full logits are never gathered. Every TP rank returns the
 * same loss. Per layer: 2 all-reduces of (B*T, C) forward, 2 backward.
 *
 * Sequence parallelism (gpt2_set_tp's flag; needs T % tp == 0): the LayerNorm / residual
 * regions hold 1/tp of the rows. Rows are the B*T positions flattened in (b, t) order, split
 * into tp contiguous blocks: TP rank t holds rows [t*B*T/tp, (t+1)*B*T/tp). Each g all-reduce
 * becomes a reduce-scatter into that block and each f identity an all-gather out of it (the
 * reverse in backward); the embedding output is reduce-scattered, ln_f's output all-gathered
 * before the logits. The gradients of the replicated parameters computed from a rank's own rows
 * (LayerNorm weights and biases, ln_f) are all-reduced over TP in backward, so they stay
 * identical on every TP rank; the row-parallel biases and wpe take their gradients from the
 * all-gathered full rows and need none. So the residual stream a stage receives (x_in) and
 * sends (gpt2_output), and its gradients (dx_out, dx_in), are this rank's block of rows:
 * gpt2_stream_rows(m, B, T) = B*T/tp rows of C. Without sequence parallelism they are all
 * B*T rows, identical on every TP rank.
 *
 * Activation recomputation (gpt2_set_recompute, before gpt2_acts_create): NONE keeps every
 * activation; SELECTIVE does not keep the attention probabilities (B, H/tp, T, T) and
 * recomputes them from q and k in backward; FULL keeps only each layer's input (and the
 * shard's output, and on the head shard each position's log-sum-exp and loss) and re-runs the
 * layer's forward inside the backward, into one layer of scratch owned by the model
 * (gpt2_scratch_bytes); the head shard's ln_f output and logits then also live in that scratch
 * and are recomputed in the backward from the shard's output. Recomputation repeats the same
 * operations on the same inputs (TP collectives included), so losses and gradients are
 * bit-identical to NONE on the same layout (OpenBLAS is deterministic for equal shapes and
 * thread counts).
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
 * Tensor-parallel rank t of tp (tp_comm: the T ranks of the stage, ordered by t):
 *    gpt2_range_t r = {0, L, 1, 1, .tp_rank = t, .tp_size = tp};
 *    gpt2_create(&cfg, r, &m, ...); gpt2_init_params(m, seed);    // same weights as tp = 1
 *    gpt2_set_tp(m, tp_comm, sequence_parallel, err, sizeof err);
 *    gpt2_set_recompute(m, GPT2_RECOMPUTE_SELECTIVE);
 *    gpt2_acts_create(m, B, T, &a, ...); ... as above, on every rank of the TP group
 */
#ifndef STRATA_GPT2_H
#define STRATA_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h"
#include "strata/coll.h"

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
  int tp_rank;     /* t: this shard's tensor-parallel rank, 0 <= t < tp_size */
  int tp_size;     /* tp: tensor-parallel ranks splitting the shard; 0 means 1; heads % tp == 0.
                      gpt2_create stores it normalised (>= 1) in m->range */
} gpt2_range_t;

/* How a parameter tensor is divided over the tp ranks of a tensor-parallel group (rank t):
 *  NONE        replicated: every rank holds the whole tensor (LayerNorms, wpe, row-parallel
 *              biases), identical on every rank.
 *  COLS        the last dimension in tp contiguous blocks: rank t holds columns
 *              [t*n/tp, (t+1)*n/tp) of n (mlp.c_fc weight and bias).
 *  QKV_COLS    the last dimension is [q | k | v], each C wide: rank t holds columns
 *              [t*C/tp, (t+1)*C/tp) of each of q, k and v, stored [q_t | k_t | v_t]
 *              (attn.c_attn weight and bias: heads [t*H/tp, (t+1)*H/tp)).
 *  ROWS        the first dimension in tp contiguous blocks (attn.c_proj and mlp.c_proj weights).
 *  VOCAB_ROWS  wte: rank t holds rows [t*Vp/tp, (t+1)*Vp/tp) of the vocabulary padded to
 *              Vp = gpt2_padded_vocab(V, tp); local rows at or past V are padding (zero).
 * At tp = 1 every tensor is whole whatever its kind. Llama's catalogue (llama.h) uses the same
 * kinds on its [out, in] weights: ROWS for the column-parallel products, COLS for the
 * row-parallel ones, VOCAB_ROWS for embed_tokens and lm_head. */
typedef enum {
  GPT2_SPLIT_NONE = 0,
  GPT2_SPLIT_COLS,
  GPT2_SPLIT_QKV_COLS,
  GPT2_SPLIT_ROWS,
  GPT2_SPLIT_VOCAB_ROWS,
} gpt2_split_t;

/* One named parameter tensor of a shard, in Hugging Face GPT-2 naming ("wte.weight",
 * "h.3.attn.c_attn.weight", "ln_f.bias", ...). The flat buffers hold this rank's local part
 * (shape, numel); full_shape is the logical tensor a checkpoint stores (the tp = 1 shape,
 * vocabulary unpadded). Every rank of a TP group has the same catalogue (names, local shapes,
 * offsets), so one rank's entry describes every rank's part. */
typedef struct {
  char name[64];
  int ndim;
  int64_t shape[2];      /* local shape (shape[1] = 0 for 1-D) */
  size_t offset;         /* element offset in the flat parameter / gradient buffers */
  size_t numel;          /* local elements: shape[0] (* shape[1]) */
  int decay;             /* 1 if AdamW weight decay applies (2-D tensors: matmul weights, embeddings) */
  gpt2_split_t split;    /* how the tensor is divided over the TP group */
  int64_t full_shape[2]; /* logical (whole-model) shape; equals shape when tp_size == 1 */
  size_t full_numel;     /* elements of the logical tensor */
  int replicated;        /* 1 when every TP rank holds the whole tensor (split NONE): count it
                            once over the TP group in a gradient norm (e.g. on tp_rank 0) */
  int tp_size;           /* tp the local shape was made for */
} gpt2_tensor_t;

typedef struct {
  float *ln1_w, *ln1_b;     /* (C) */
  float *attn_w;            /* (C, 3C/tp) c_attn.weight */
  float *attn_b;            /* (3C/tp) */
  float *attn_proj_w;       /* (C/tp, C) attn.c_proj.weight */
  float *attn_proj_b;       /* (C) */
  float *ln2_w, *ln2_b;     /* (C) */
  float *fc_w;              /* (C, 4C/tp) mlp.c_fc.weight */
  float *fc_b;              /* (4C/tp) */
  float *fc_proj_w;         /* (4C/tp, C) mlp.c_proj.weight */
  float *fc_proj_b;         /* (C) */
} gpt2_layer_t;

typedef struct gpt2_model {
  gpt2_config_t cfg;
  gpt2_range_t range;      /* as given, tp_size normalised to >= 1 */
  size_t num_params;       /* elements in params / grads (this rank's local parts) */
  float *params;           /* flat, layout above */
  float *grads;            /* flat, same layout */
  gpt2_tensor_t *tensors;  /* catalogue, in flat-buffer order */
  int num_tensors;
  /* typed views into params (NULL where the shard does not own the tensor) */
  float *wte;              /* (Vp/tp, C): this rank's rows of the padded vocabulary */
  float *wpe;              /* (T_max, C) */
  gpt2_layer_t *layer;     /* [layer_end - layer_begin], local index */
  float *lnf_w, *lnf_b;    /* (C) */
  /* the same views into grads */
  float *g_wte, *g_wpe;
  gpt2_layer_t *g_layer;
  float *g_lnf_w, *g_lnf_b;
  /* Called during backward each time a contiguous region of grads is final for this
   * backward call (a layer finished, ln_f, the embeddings): offset and count in elements.
   * Regions are reported in decreasing offset order, except wte which is reported last.
   * With sequence parallelism a region is reported after its TP all-reduce. */
  void (*grad_ready)(void *ctx, size_t offset, size_t count);
  void *grad_ready_ctx;
  int bf16_params;         /* 1: every parameter holds exactly a bf16 value (bf16-sr training
                              keeps them so): checkpoints store them as BF16 (0 by default) */
  void *impl;              /* private state and scratch (gpt2.c) */
} gpt2_model_t;

typedef struct gpt2_acts gpt2_acts_t; /* activations of one micro-batch (opaque) */

/* Builds a shard with uninitialised parameters and zeroed gradients. Validates the
 * configuration (dim % heads, range within layers, positive sizes, 0 <= tp_rank < tp_size,
 * heads % tp_size); on failure writes a message naming the field to err and returns -1. */
int gpt2_create(const gpt2_config_t *cfg, gpt2_range_t range, gpt2_model_t **out, char *err,
                size_t errlen);
void gpt2_free(gpt2_model_t *m);

/* GPT-2 initialisation: weights N(0, 0.02), residual projections (attn.c_proj, mlp.c_proj)
 * N(0, 0.02/sqrt(2L)), biases 0, LayerNorm weight 1 bias 0. Each logical tensor's values
 * depend only on (seed, tensor name), and a tensor-parallel rank takes its slice of them
 * (padding rows zero), so every pipeline and tensor-parallel layout gets the weights of tp = 1. */
void gpt2_init_params(gpt2_model_t *m, uint64_t seed);

/* Finds a tensor by Hugging Face name; NULL if this shard does not own it. */
const gpt2_tensor_t *gpt2_find_tensor(const gpt2_model_t *m, const char *name);

/* ---- Tensor parallelism ---- */

/* The vocabulary a tp-way split stores: V itself when tp <= 1, else V rounded up to a multiple
 * of 128 * tp (Megatron-LM's --make-vocab-size-divisible-by 128), so every rank holds the same
 * number of rows. The same rule as layout_padded_vocab (worker/parallel/layout.h), restated
 * here because the model may not include the parallel layer. */
int gpt2_padded_vocab(int vocab, int tp);
int gpt2_local_dim(const gpt2_model_t *m);    /* C/tp: q, k, v width of the local heads (KV cache) */
int gpt2_local_heads(const gpt2_model_t *m);  /* H/tp */
int gpt2_local_vocab(const gpt2_model_t *m);  /* Vp/tp: rows of the local wte, columns of the logits */
int gpt2_vocab_offset(const gpt2_model_t *m); /* t*Vp/tp: vocabulary id of local row / column 0 */

/* Sets the tensor-parallel group: tp's ranks are the model's TP ranks in tp_rank order
 * (coll_size(tp) == range.tp_size, coll_rank(tp) == range.tp_rank, checked), and
 * sequence_parallel (0/1) turns on sequence parallelism (no effect at tp = 1). The model keeps
 * the pointer (the caller owns the communicator and keeps it alive). Required before any
 * forward when tp > 1; tp may be NULL when tp = 1. Call it before gpt2_acts_create:
 * activations are laid out for the sequence-parallel setting in force when they are created.
 * Returns 0, or -1 with a message in err. */
int gpt2_set_tp(gpt2_model_t *m, coll_comm_t *tp, int sequence_parallel, char *err, size_t errlen);
int gpt2_sequence_parallel(const gpt2_model_t *m); /* 1 when on (and tp > 1) */
/* Rows of C in the residual stream a shard receives (x_in), sends (gpt2_output) and whose
 * gradients it takes (dx_out) and returns (dx_in), for a micro-batch of B x T: B*T, or B*T/tp
 * with sequence parallelism (this rank's contiguous block t of the B*T flattened positions). */
int gpt2_stream_rows(const gpt2_model_t *m, int B, int T);

/* Fills catalogue entry t (zeroed first) for the logical tensor `name` of shape (d0[, d1])
 * (ndim 1 or 2) split as `split` over tp ranks (NONE when tp <= 1): full and local shapes and
 * sizes, replicated, decay, at element `offset` of the flat buffers. Both families build their
 * catalogues with it, so the split rules below hold for GPT-2 and Llama tensors alike. */
void gpt2_tensor_describe(gpt2_tensor_t *t, const char *name, int ndim, int64_t d0, int64_t d1, int decay,
                          gpt2_split_t split, int tp, size_t offset);
/* Copies this rank's part of a logical tensor: full (t->full_numel, row-major full_shape) ->
 * local (t->numel, row-major shape) for TP rank tp_rank of t->tp_size; local padding rows of
 * the vocabulary are zeroed. Returns 0, or -1 when tp_rank is out of range. */
int gpt2_tensor_slice(const gpt2_tensor_t *t, int tp_rank, const float *full, float *local);
/* The inverse: writes TP rank tp_rank's local part into its place in full (padding rows are
 * dropped; a replicated tensor is copied whole). Calling it for every rank 0..tp_size-1 with
 * that rank's part (same numel on every rank) assembles the whole logical tensor, so a
 * checkpoint writer gathers parts and never needs the split rules. Returns 0, or -1. */
int gpt2_tensor_unslice(const gpt2_tensor_t *t, int tp_rank, const float *local, float *full);
/* The index in the logical tensor (row-major full_shape) of element i of TP rank tp_rank's
 * local part, or -1 for a padding element of the vocabulary (the inverse map of
 * gpt2_tensor_slice, one element at a time). */
int64_t gpt2_tensor_full_index(const gpt2_tensor_t *t, int tp_rank, size_t i);
/* Logits of `rows` positions from every TP rank, as coll_allgather of each rank's local
 * (rows, Vp/tp) block leaves them (tp blocks in rank order), into full (rows, V): the
 * vocabulary order of tp = 1, padding columns dropped. At tp = 1 a plain copy. */
void gpt2_logits_assemble(const gpt2_model_t *m, const float *gathered, size_t rows, float *full);
/* The same for any model family's vocabulary-parallel logits: V = vocab split tp ways
 * (gpt2_padded_vocab(vocab, tp) / tp columns per rank); llama_logits_assemble uses it. */
void gpt2_vocab_logits_assemble(int vocab, int tp, const float *gathered, size_t rows, float *full);

/* ---- Activation recomputation ---- */
typedef enum {
  GPT2_RECOMPUTE_NONE = 0,  /* keep every activation */
  GPT2_RECOMPUTE_SELECTIVE, /* drop the attention probabilities; recompute them from q, k */
  GPT2_RECOMPUTE_FULL,      /* keep each layer's input; re-run the layer's forward in backward */
} gpt2_recompute_t;
/* Chooses the mode for activations created from now on (existing ones keep theirs).
 * Returns 0, or -1 for a value outside the enum. */
int gpt2_set_recompute(gpt2_model_t *m, gpt2_recompute_t mode);
gpt2_recompute_t gpt2_get_recompute(const gpt2_model_t *m);
const char *gpt2_recompute_name(gpt2_recompute_t mode); /* "none", "selective", "full" */
/* Parses "none" | "selective" | "full"; 0, or -1 if unknown. */
int gpt2_parse_recompute(const char *s, gpt2_recompute_t *out);

/* ---- Precision of the matrix products ----
 * GEMM_F32 (the default) or GEMM_BF16: every matrix product of the shard (the linear layers,
 * the attention products, the logits, forward and backward, and the KV-cache forward) rounds
 * its inputs to bf16 and accumulates in fp32, as PyTorch's bf16 autocast does; parameters,
 * gradients, LayerNorm, softmax, GELU and the loss stay fp32. Takes effect at the next call. */
void gpt2_set_matmul_dtype(gpt2_model_t *m, gemm_dtype_t dt);
gemm_dtype_t gpt2_get_matmul_dtype(const gpt2_model_t *m);

/* ---- Activations ---- */

/* Activation storage for micro-batches of B sequences of length T (T <= ctx; with sequence
 * parallelism T % tp == 0), laid out for the model's recompute mode and sequence-parallel
 * setting at this moment. Also grows the model's backward scratch to (B, T). */
int gpt2_acts_create(const gpt2_model_t *m, int B, int T, gpt2_acts_t **out, char *err, size_t errlen);
void gpt2_acts_free(gpt2_acts_t *a);
/* Reuses activation storage for a smaller micro-batch: B <= the B and T <= the T it was created
 * with (e.g. evaluation of a short tail, or generation with a growing prefix; with sequence
 * parallelism T % tp == 0). Results are identical to those of storage created at (B, T).
 * Returns -1 (message in err) if too large or not divisible. */
int gpt2_acts_reshape(gpt2_acts_t *a, int B, int T, char *err, size_t errlen);
/* Bytes of activation storage the micro-batch holds (its one allocation plus token copies):
 * what stays allocated for each micro-batch in flight, in its recompute mode. */
size_t gpt2_acts_bytes(const gpt2_acts_t *a);
/* The bytes gpt2_acts_create(m, B, T) would hold now, without allocating (memory planning). */
size_t gpt2_acts_bytes_for(const gpt2_model_t *m, int B, int T);
/* Bytes of the model's scratch shared by all micro-batches (gradients of activations during one
 * backward, TP partial sums and gathers, and the one layer FULL recomputation re-runs), as
 * sized by the largest gpt2_acts_create so far. Peak activation memory of a stage is this plus
 * gpt2_acts_bytes of each micro-batch in flight. */
size_t gpt2_scratch_bytes(const gpt2_model_t *m);

/* Forward over the shard's layers.
 *  tokens  (B, T): used when has_embed (all B*T tokens on every TP rank, also with sequence
 *          parallelism); x_in (gpt2_stream_rows, C) otherwise.
 *  targets (B, T): used when has_head (all of them, on every TP rank); may be NULL (then no
 *          loss is computed).
 * Returns the mean cross-entropy when has_head and targets (the same on every TP rank), else 0;
 * NaN on an error (bad token, failed TP collective; message logged). Every rank of a TP group
 * must make the same calls in the same order. */
float gpt2_forward(gpt2_model_t *m, gpt2_acts_t *a, const int32_t *tokens, const float *x_in,
                   const int32_t *targets);
/* Residual stream leaving the shard, (gpt2_stream_rows, C): valid after forward when !has_head. */
const float *gpt2_output(const gpt2_acts_t *a);
/* Logits (B, T, Vp/tp): this rank's vocabulary columns [vocab_offset, vocab_offset + Vp/tp)
 * (all V at tp = 1), padding columns (ids >= V) set to -INFINITY. Valid after forward when
 * has_head, until the backward of the same micro-batch, which reuses the buffer for
 * d(loss)/d(logits) (saves B*T*Vp/tp floats). With FULL recomputation the buffer is the
 * model's scratch, shared by the micro-batches: valid until the next forward or backward on
 * the model. */
const float *gpt2_logits(const gpt2_acts_t *a);
/* Per-position loss (B, T), every position on every TP rank: valid after forward when
 * has_head and targets were given. */
const float *gpt2_losses(const gpt2_acts_t *a);

/* Backward for the micro-batch whose forward filled `a`, accumulating into m->grads.
 *  has_head: the loss gradient is loss_scale / (B*T) per position (loss_scale = 1/M for M
 *            micro-batches of one step); dx_out is ignored.
 *  otherwise dx_out (gpt2_stream_rows, C) is the gradient of the residual stream leaving the shard.
 *  dx_in (gpt2_stream_rows, C), when !has_embed, receives the gradient of x_in (may be NULL).
 * Returns 0, or -1 on an error (no forward to differentiate, failed TP collective; logged). */
int gpt2_backward(gpt2_model_t *m, gpt2_acts_t *a, const float *dx_out, float loss_scale, float *dx_in);
void gpt2_zero_grad(gpt2_model_t *m);

/* Model FLOPs of one forward+backward of this rank's part of the shard for B x T tokens
 * (6 * params-in-matmuls * tokens plus attention, divided over the TP ranks; the logits count
 * this rank's unpadded vocabulary columns), for throughput and MFU reporting. */
double gpt2_train_flops(const gpt2_model_t *m, int B, int T);
/* FLOPs recomputation adds to that in the model's current mode (selective: Q K^T per layer;
 * full: every layer's forward again), so hardware FLOPs = train + recompute (HFU). */
double gpt2_recompute_flops(const gpt2_model_t *m, int B, int T);

/* ---- Generation with a KV cache (inference; see worker/infer/infer.h) ----
 * One sequence's slice of a forward call: n_new new positions starting at position pos0. The
 * cache holds, for each layer of the shard, the keys and values of positions [0, pos0) of this
 * rank's heads: k and v are (nl, cap, Cl) with nl = layer_end - layer_begin and
 * Cl = gpt2_local_dim(m) (C at tp = 1), row t of layer l at k + ((size_t)l * cap + t) * Cl. The
 * call appends the keys and values of the new positions (pos0 + n_new <= cap and <= cfg.ctx).
 * A bf16 cache sets k16 / v16 (same layout, uint16 bf16 bit patterns) instead of k / v: the new
 * keys and values are rounded to bf16 (round-to-nearest-even, bf16.h) when appended, and
 * attention reads the cached rows widened back to fp32 -- the new positions' own keys and
 * values included, so a prefill and a decode see the same rounded cache. */
typedef struct {
  int n_new;  /* new positions in this call (>= 1) */
  int pos0;   /* positions already cached (the first new token sits at position pos0) */
  float *k;   /* (nl, cap, Cl) cached keys (fp32 cache; NULL for a bf16 one) */
  float *v;   /* (nl, cap, Cl) cached values */
  int cap;    /* positions the cache has room for */
  uint16_t *k16; /* (nl, cap, Cl) bf16 cached keys (bf16 cache; NULL for an fp32 one) */
  uint16_t *v16; /* (nl, cap, Cl) bf16 cached values */
} gpt2_kv_seq_t;

/* The KV step both families' cached forwards share: appends the n_new rows of new keys and
 * values (row r at k_new + r * ld_new, W floats) to layer l of sq's cache (width W), and points
 * *kc / *vc at the layer's fp32 rows [0, pos0 + n_new) -- the cache itself when it is fp32,
 * else `wide` (2 * (pos0 + n_new) * W floats of scratch) holding them widened from bf16. */
void gpt2_kv_append(const gpt2_kv_seq_t *sq, int l, int W, const float *k_new, const float *v_new, size_t ld_new,
                    float *wide, const float **kc, const float **vc);
/* The check both families' cached forwards make of their sequences (`who` names the caller in
 * the message): each appends 1 or more positions that fit its cache (cap) and the model's
 * context ctx, and has a cache when the shard holds layers (nl > 0). 0 with *N the rows of the
 * call and *max_scores the largest per-sequence score block (n_new x (pos0 + n_new)), or -1
 * with a message naming the sequence. */
int gpt2_kv_check_seqs(const char *who, const gpt2_kv_seq_t *seqs, int nseq, int nl, int ctx, size_t *N,
                       size_t *max_scores, char *err, size_t errlen);
/* Floats of `wide` scratch gpt2_kv_append needs for the largest of these sequences (0 when
 * every cache is fp32). */
size_t gpt2_kv_wide_floats(const gpt2_kv_seq_t *seqs, int nseq, int W);

/* Incremental forward of nseq sequences at once over the shard: the rows of all sequences
 * (N = sum of n_new) go through the matrix products together; attention runs per sequence
 * over its cached keys plus the new ones (causal). Inputs, rows in sequence order:
 *   has_embed: tokens (N); otherwise x_in (N, C) (the residual stream from the previous stage).
 * Output:
 *   !has_head: out (N, C), the residual stream leaving the shard.
 *   has_head:  logits into out: all N rows (N, Vl) when last_only == 0, else only the last new
 *              position of each sequence (nseq, Vl), Vl = gpt2_local_vocab(m) (V at tp = 1).
 * With tp > 1 every rank of the TP group makes the same call (same tokens / x_in, which with
 * the output stream are whole and identical on every rank: sequence parallelism does not
 * apply here); the logits are this rank's vocabulary slice, padding columns -INFINITY: the
 * caller all-gathers them and assembles with gpt2_logits_assemble.
 * The result for a position equals gpt2_forward on the whole prefix (up to float rounding:
 * within 1e-5 on logits in the tests). Returns 0, or -1 with a message in err (bad token,
 * position past the context or the cache, out of memory, failed TP collective). Not
 * thread-safe per model. */
int gpt2_forward_kv(gpt2_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens,
                    const float *x_in, float *out, int last_only, char *err, size_t errlen);
/* FLOPs of this rank's forward of n_new positions after pos0 cached ones (matmuls + attention). */
double gpt2_forward_kv_flops(const gpt2_model_t *m, int n_new, int pos0);

#endif /* STRATA_GPT2_H */
