/* layout.h -- the T x P x D layout of a Strata job: which rank is which (tensor-parallel rank,
 * stage, replica), which layers each pipeline stage holds, and the model's shape and per-op
 * cost figures the layout is balanced by. Shared by distributed training (`strata train`),
 * inference and the simulator (`strata simulate`), so all split the model the same way.
 *
 * Rank mapping, Megatron-LM's order (tensor-parallel fastest, then pipeline, then data):
 *     rank = (replica * P + stage) * T + t,
 *     t = rank % T, stage = (rank / T) % P, replica = rank / (T * P).
 * A tensor-parallel group (the T ranks that split every matrix of one stage, and all-reduce
 * inside every layer) is T consecutive ranks: one instance's fast link. A replica's P stages
 * follow, so a pipeline packs into as few instances as possible; the data-parallel group of
 * (t, stage) is the D ranks that hold the same shard in every replica. With T = 1 the map is
 * the pipeline-first rank = replica * P + stage.
 *
 * Stage contents: stage s holds layers [layer_begin[s], layer_begin[s+1]); every stage holds at
 * least one layer (so P <= L). Stage 0 also holds the embeddings (wte, wpe); stage P-1 holds
 * ln_f, the logits matmul and the loss, and -- when P > 1 -- its own copy of the tied wte (the
 * two copies' gradients are summed each step, see gpt2.h).
 *
 * Balancing: by default layers are assigned so that the largest per-stage compute (training
 * FLOPs of one micro-batch, forward + backward, including the embedding on the first stage and
 * ln_f + logits + loss on the last, which for GPT-2's 50257-token vocabulary costs about five
 * 768-wide layers) is as small as possible (exact, by dynamic programming over contiguous
 * splits). `--stage-layers 3,3,2` assigns explicitly (P numbers, each >= 1, summing to L).
 *
 * Usage
 *    layout_model_t m = layout_model_preset("gpt2");           // or fill the five fields
 *    layout_t lay; char err[256];
 *    if (layout_init(&lay, &m, world, P, D, M, batch, "3,3,2" or NULL, err, sizeof err))
 *      { strata_error("%s", err); return 2; }
 *    int s = layout_stage_of(&lay, rank), d = layout_replica_of(&lay, rank);
 *    layout_print(&lay, stdout);
 */
#ifndef STRATA_LAYOUT_H
#define STRATA_LAYOUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LAYOUT_MAX_STAGES 512 /* upper bound on P (P <= L as well) */

/* Model families. GPT (GPT-2 / GPT-3): learned positions (wpe), LayerNorm with bias, biased
 * linears, GELU MLP of width F, the output head tied to wte. LLAMA (Llama 2 / 3): rotary
 * positions (no wpe), RMSNorm (weight only), bias-free linears, SwiGLU MLP (gate and up C -> F,
 * down F -> C), grouped-query attention with kv_heads key/value heads, an untied lm_head. */
typedef enum { LAYOUT_ARCH_GPT = 0, LAYOUT_ARCH_LLAMA = 1 } layout_arch_t;
const char *layout_arch_name(layout_arch_t a); /* "gpt", "llama" */
int layout_parse_arch(const char *s, layout_arch_t *out); /* 0, or -1 if unknown */
/* Whether the output head shares the token embedding: the family's own (GPT tied, LLAMA untied),
 * or either one as chosen (Megatron-LM's --untie-embeddings-and-output-weights, Hugging Face's
 * tie_word_embeddings). An untied head is its own V x C matrix on the last stage. */
typedef enum { LAYOUT_TIE_ARCH = 0, LAYOUT_TIE_TIED = 1, LAYOUT_TIE_UNTIED = 2 } layout_tie_t;
int layout_parse_tie(const char *s, layout_tie_t *out); /* "yes" tied, "no" untied; -1 otherwise */

/* The model's shape. The first five fields mean what they mean in gpt2_config_t; the last
 * four are zero for Strata's own GPT-2 (gpt, kv_heads = heads, ffn = 4 dim, tied head). */
typedef struct {
  int vocab;  /* V: vocabulary size */
  int ctx;    /* T: sequence length used for training (= n_positions, wpe rows) */
  int layers; /* L: transformer blocks */
  int heads;  /* H: attention (query) heads; dim % heads == 0 */
  int dim;    /* C: embedding width */
  int arch;   /* layout_arch_t (0: GPT) */
  int kv_heads; /* key/value heads (grouped-query attention), dividing heads; 0: = heads */
  int ffn;      /* MLP intermediate width F; 0: 4 C */
  int tie;      /* layout_tie_t (0: the family's) */
} layout_model_t;
int layout_model_kv_heads(const layout_model_t *m); /* kv_heads, or heads when 0 */
int layout_model_ffn(const layout_model_t *m);      /* ffn, or 4 dim when 0 */
int layout_model_tied(const layout_model_t *m);    /* 1: the head shares wte (GPT's default) */

/* Presets (shapes and published parameter counts in worker/sim/SIMULATION.md): GPT-2 "gpt2"
 * (124M), "gpt2-medium", "gpt2-large", "gpt2-xl" (ctx 1024, vocab 50257); GPT-3 "gpt3-1.3b",
 * "gpt3-6.7b", "gpt3-13b", "gpt3-175b" (ctx 2048, vocab 50257); "llama2-7b", "llama2-13b",
 * "llama2-70b" (ctx 4096, vocab 32000), "llama3-8b", "llama3-70b" (ctx 8192, vocab 128256);
 * "7b" (32L 32H 4096 GPT, ctx 2048, vocab 50257). Returns 0 and fills *out, or -1 if unknown. */
int layout_model_preset(const char *name, layout_model_t *out);
/* The preset names, NULL-terminated (for messages and tests). */
extern const char *const layout_model_preset_names[];
/* Checks positive sizes, dim % heads == 0 and heads % kv_heads == 0; message names the field.
 * 0 ok, -1 error. */
int layout_model_validate(const layout_model_t *m, char *err, size_t errlen);

/* ---- Parameter counts (elements) ----
 * GPT: per layer 4C^2 + 2CF + 9C + F (12C^2 + 13C at F = 4C); embedding wte VC + wpe TC; head
 * ln_f 2C.
 * LLAMA (kv = kv_heads x C / H): per layer 2C^2 + 2C kv + 3CF + 2C; embedding VC; head the
 * final RMSNorm C.
 * Either family's head adds an untied lm_head VC (a tied one is wte, not counted again). */
int64_t layout_params_per_layer(const layout_model_t *m);
int64_t layout_params_embed(const layout_model_t *m);
int64_t layout_params_head(const layout_model_t *m); /* the final norm, + lm_head when untied */
int64_t layout_params_total(const layout_model_t *m); /* the model, a tied wte counted once */

/* ---- Per-op cost of one micro-batch of `tokens` = B*T tokens, FORWARD pass ----
 * flops: floating-point operations (multiply-add = 2). bytes_elems: tensor elements read +
 * written (multiply by the element size of the compute dtype for roofline bytes). Backward is
 * modelled as 2x forward (both flops and bytes): dX and dW matmuls each cost one forward.
 *
 * One transformer layer: matmuls 2*N*12C^2 (qkv C->3C, attn proj C->C, fc C->4C, fc proj
 * 4C->C); causal attention QK^T and att@V over the lower triangle: 2*B*T*(T+1)*C; softmax,
 * LayerNorms, GELU, residual adds as a few flops per element. */
typedef struct {
  const char *name; /* "ln1", "qkv", "attention", ... */
  double flops;     /* forward flops */
  double elems;     /* forward elements read + written (activations and weights) */
  /* For the simulator's efficiency model (0 for elementwise ops): a matmul's forward GEMM
   * C(m x n) = A(m x k) B(k x n) on one rank; for "attention" the per-(sequence, head) score
   * GEMM (m = n = T, k = head dim) and count = sequences x heads on the rank; scores_elems is
   * the part of elems that is traffic of the (B, H, T, T) score matrices (4 passes: absent
   * from a fused kernel). */
  double mm_m, mm_n, mm_k, mm_count;
  double scores_elems;
} layout_op_t;
/* Fills ops[] with one layer's forward ops for B sequences of T tokens; returns the count
 * (<= LAYOUT_MAX_OPS). */
#define LAYOUT_MAX_OPS 14
int layout_layer_ops(const layout_model_t *m, int B, int T, layout_op_t *ops);
/* LLAMA layers: ln1 and ln2 are RMSNorms (4 flops per element), "rope" rotates q and k,
 * qkv is C -> C + 2 kv, the MLP is "gate_up" C -> 2F (column-parallel), "swiglu" and "down"
 * F -> C (row-parallel); no biases. GPT's MLP is fc C -> F, gelu, fcproj F -> C. */
/* Embedding forward (wte + wpe lookup and add; LLAMA: wte only). */
int layout_embed_ops(const layout_model_t *m, int B, int T, layout_op_t *ops);
/* Head forward: ln_f, logits matmul C->V, softmax + cross-entropy. */
int layout_head_ops(const layout_model_t *m, int B, int T, layout_op_t *ops);
/* The same ops on ONE of tp tensor-parallel ranks (Megatron-LM's split; tp = 1, sp = 0 gives
 * exactly the functions above). qkv and fc are column-parallel (each rank reads all of x, holds
 * and writes 1/tp of W, b, y), attproj and fcproj row-parallel (reads 1/tp of x and W, writes a
 * full partial y; the bias is added after the all-reduce), attention and GELU act on the rank's
 * H/tp heads and 4C/tp columns. LayerNorms and residual adds: every rank does all N rows,
 * with sequence parallelism (sp = 1) N/tp of them. Embedding: vocabulary-parallel lookup, the
 * same work on every rank. Head: ln_f (N or N/tp rows), logits and softmax + cross-entropy on
 * 1/tp of the padded vocabulary (layout_padded_vocab). No communication is included: the
 * simulator adds the all-reduces (worker/sim/SIMULATION.md). */
int layout_layer_ops_tp(const layout_model_t *m, int B, int T, int tp, int sp, layout_op_t *ops);
int layout_embed_ops_tp(const layout_model_t *m, int B, int T, int tp, int sp, layout_op_t *ops);
int layout_head_ops_tp(const layout_model_t *m, int B, int T, int tp, int sp, layout_op_t *ops);
/* Sum of forward flops of an op list. */
double layout_ops_flops(const layout_op_t *ops, int n);

/* ---- The layout ---- */
typedef struct {
  layout_model_t model;
  int world;                              /* N = T * P * D ranks */
  int tp;                                 /* T: tensor-parallel ranks per stage; heads % T == 0 */
  int pp;                                 /* P: pipeline stages */
  int dp;                                 /* D: data-parallel replicas */
  int micro;                              /* M: micro-batches per step */
  int batch;                              /* global batch, sequences per step; divisible by D * M */
  int micro_batch;                        /* sequences per micro-batch = batch / (D * M) */
  int explicit_layers;                    /* 1 if --stage-layers was given */
  int layer_begin[LAYOUT_MAX_STAGES + 1]; /* stage s: [layer_begin[s], layer_begin[s+1]) */
} layout_t;

/* Validates and builds a layout. world must equal tp * pp * dp; heads divisible by tp;
 * 1 <= pp <= L; batch divisible by dp * micro; stage_layers (e.g. "3,3,2", NULL or "" =
 * balanced) must list pp counts >= 1 summing to L. On error writes one sentence naming the
 * problem, the numbers and the fix to err and returns -1. */
int layout_init(layout_t *lay, const layout_model_t *m, int world, int tp, int pp, int dp, int micro,
                int batch, const char *stage_layers, char *err, size_t errlen);

/* Calls fn(lay, ctx) for every balanced layout of `world` ranks and global batch `batch`:
 * T in [tp_lo, tp_hi] dividing world and the heads, P dividing world / T (P <= L), D = world /
 * (T P) dividing batch, every M dividing batch / D (lay is the caller's scratch, rebuilt for
 * each). Stops at fn's first non-zero return and returns it; else 0. */
int layout_for_each(const layout_model_t *m, int world, int batch, int tp_lo, int tp_hi, layout_t *lay,
                    int (*fn)(const layout_t *lay, void *ctx), void *ctx);

/* Parses "3,3,2" into counts[0..pp) and validates against L and pp. 0 ok, -1 error (err). */
int layout_parse_stage_layers(const char *s, int layers, int pp, int *counts, char *err,
                              size_t errlen);
/* Balanced assignment: counts[0..pp) minimising the largest stage's training FLOPs for one
 * sequence of ctx tokens (embedding on stage 0, head on stage pp-1). Requires 1 <= pp <= L.
 * Among assignments with the same largest stage, the one with the smallest sum of squared
 * stage costs is taken (stages below the maximum even out); then earlier stages take more.
 * Returns 0, or -1 when out of memory for its tables. */
int layout_balance(const layout_model_t *m, int pp, int *counts);
/* Training FLOPs (forward + backward = 3x forward) of stage s's shard for B sequences. */
double layout_stage_train_flops(const layout_t *lay, int s, int B);

static inline int layout_tp_of(const layout_t *lay, int rank) { return rank % lay->tp; }
static inline int layout_stage_of(const layout_t *lay, int rank) { return (rank / lay->tp) % lay->pp; }
static inline int layout_replica_of(const layout_t *lay, int rank) { return rank / (lay->tp * lay->pp); }
/* The rank of tensor-parallel rank t of stage `stage` in replica `replica`. */
static inline int layout_rank(const layout_t *lay, int t, int stage, int replica) {
  return (replica * lay->pp + stage) * lay->tp + t;
}
static inline int layout_stage_layers(const layout_t *lay, int s) {
  return lay->layer_begin[s + 1] - lay->layer_begin[s];
}
/* Parameter elements stage s holds over all its T ranks (layers; + wte, wpe on stage 0; + ln_f
 * and, when P > 1, the tied wte copy on the last stage; the vocabulary unpadded). */
int64_t layout_stage_params(const layout_t *lay, int s);
/* Parameter elements ONE rank of stage s holds: 1/T of every split matrix (the c_attn, c_fc
 * and projection weights, the column-parallel biases, and wte's rows of the padded vocabulary,
 * layout_padded_vocab), all of the replicated LayerNorms, row-parallel biases and wpe. */
int64_t layout_rank_params(const layout_t *lay, int s);
/* LLAMA: (2C^2 + 2C kv + 3CF) / tp split + 2C replicated (the RMSNorms); the lm_head is split
 * like wte (vocabulary-parallel) and is never tied.
 * Parameter elements of one transformer layer on one of tp ranks: (12C^2 + 7C) / tp split +
 * 6C replicated (= layout_params_per_layer when tp = 1). */
int64_t layout_rank_layer_params(const layout_model_t *m, int tp);
/* The vocabulary a T-way split stores: V itself when T = 1, else V rounded up to a multiple
 * of 128 * T (Megatron-LM's --make-vocab-size-divisible-by 128), so every rank holds the same
 * number of rows. The padding rows never reach the loss or a checkpoint. */
int layout_padded_vocab(int vocab, int tp);

/* Prints the rank -> (t, stage, replica) map and, per stage, its layers and parameter count. */
void layout_print(const layout_t *lay, FILE *f);

#endif /* STRATA_LAYOUT_H */
