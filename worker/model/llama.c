/* llama.c -- the Llama-family decoder of llama.h on CBLAS: construction and the tensor
 * catalogue in Hugging Face names, initialisation, activation storage, and the training
 * forward and backward as llm.c-style layer kernels (RMSNorm, rotate-half RoPE, grouped-query
 * attention, SwiGLU) over flat row-major float buffers. Causal attention itself, and the
 * exp / max / scale helpers of the cross-entropy, are nn.c's kernels shared with GPT-2: the
 * grouped keys and values are broadcast to every query head (HF repeat_kv) into the packed
 * [q | k | v] rows nn_attention_forward takes, and the backward sums each group's key and
 * value gradients back to its kv head. With tensor parallelism (llama.h) the same kernels run on
 * the rank's heads, SwiGLU columns and vocabulary rows, with the TP all-reduces of Megatron's
 * f and g around them (tp_allreduce).
 */
#include "llama.h"
#include "llama_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "env.h"
#include "gemm.h"
#include "log.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

/* Query rows per causal attention block: the STRATA_ATTN_BLOCK_ROWS tunable with GPT-2's
 * default (gpt2.c); see nn_attention_forward. */
#define LLAMA_ATTN_BLOCK_ROWS_DEFAULT 64
#define LLAMA_LAYER_TENSORS 9 /* parameter tensors per decoder layer */
#define LLAMA_INIT_STD 0.02f  /* HF initializer_range */

/* One layer's activations of a batch of N = B*T positions. */
typedef struct {
  float *n1, *rstd1;  /* (N, C), (N) input_layernorm output and 1/rms per row */
  float *qkv;         /* (N, 3Cq) [q | k | v] of the local heads: q and k after RoPE, k and v
                         broadcast to every local query head */
  float *att;         /* (B, Hl, T, T) softmax probabilities */
  float *atty;        /* (N, Cq) attention output before o_proj */
  float *res2;        /* (N, C) residual after attention */
  float *n2, *rstd2;  /* (N, C), (N) post_attention_layernorm output and 1/rms */
  float *gate, *up;   /* (N, Fl) gate_proj and up_proj outputs */
  float *hact;        /* (N, Fl) silu(gate) * up */
  float *res3;        /* (N, C) residual leaving the layer */
} llama_layer_acts_t;

struct llama_acts {
  int B, T;               /* batch shape */
  float *mem;             /* the one allocation the float buffers view into */
  int32_t *tokens;        /* (N) copy of the input tokens */
  int32_t *targets;       /* (N) copy of the targets */
  size_t bytes;           /* the allocation and token copies (llama_acts_bytes) */
  int forward_done;       /* a forward to differentiate ran since the last backward */
  float *x0;              /* (N, C) embeddings */
  llama_layer_acts_t *layer; /* [layers held] */
  float *out;             /* (N, C) the residual stream leaving the last layer held (or x0) */
  float *nf, *rstdf;      /* (N, C), (N) final norm output and 1/rms */
  float *logits;          /* (N, Vl); overwritten by d(loss)/d(logits) in backward */
  float *lse;             /* (N) log-sum-exp of each logits row */
  float *losses;          /* (N) per-position cross-entropy */
};

typedef struct {
  int hs;               /* head size C/H */
  int tp, t;            /* tensor-parallel ranks and this rank (1, 0 without TP) */
  coll_comm_t *comm;    /* the TP group (llama_set_tp); NULL at tp = 1 */
  int Hl, KVl;          /* local query and kv heads: heads/tp, kv_heads/tp */
  int Cq, Ckv;          /* local query width Hl * hs, local key / value width KVl * hs */
  int Fl;               /* local SwiGLU width ffn/tp */
  int Vl, voff, vvalid; /* local vocabulary rows (Vp/tp), id of row 0, rows below V */
  gemm_dtype_t mm;       /* precision of every matrix product (llama_set_matmul_dtype) */
  int attn_block;       /* query rows per attention block */
  float *rope_cos, *rope_sin; /* (ctx, hs/2) cos and sin of t * inv_freq[i] */
  /* scratch for the largest batch created so far (one allocation) */
  float *mem;
  size_t cap_N;
  int cap_T;
  float *kv;            /* (N, 2Ckv) [k | v] of the kv heads (forward), their gradients (backward) */
  float *dres;          /* (N, C) gradient of the residual stream */
  float *dn;            /* (N, C) gradient of an RMSNorm output */
  float *datty;         /* (N, Cq) gradient of the attention output */
  float *dqkv;          /* (N, 3Cq) gradient of the broadcast [q | k | v] */
  float *dgate, *dup;   /* (N, Fl) gradients of gate_proj and up_proj outputs */
  float *datt;          /* (T, T) one head's attention-probability gradient */
  float *part;          /* (N, C) a row-parallel product's partial sum (tp > 1 only) */
  float *ce;            /* (2N) exp-sums and target logits of the cross-entropy */
  float *row;           /* (Vl) one row of exponentials */
} llama_impl_t;

static llama_impl_t *impl_of(const llama_model_t *m) { return (llama_impl_t *)m->impl; }

/* ---------------------------------------------------------------------------------------- */
/* construction and catalogue */

int llama_config_check(const llama_config_t *c, char *err, size_t errlen) {
  const struct {
    const char *name;
    int v;
  } pos[] = {{"vocab", c->vocab}, {"ctx", c->ctx},   {"layers", c->layers}, {"heads", c->heads},
             {"kv_heads", c->kv_heads}, {"dim", c->dim}, {"ffn", c->ffn}};
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
    if (pos[i].v <= 0) return strata_fail(err, errlen, "%s = %d: must be positive", pos[i].name, pos[i].v);
  if (c->dim % c->heads != 0)
    return strata_fail(err, errlen, "dim = %d is not divisible by heads = %d: choose dim a multiple of heads",
                       c->dim, c->heads);
  if ((c->dim / c->heads) % 2 != 0)
    return strata_fail(err, errlen, "head size dim / heads = %d is odd: rotary embeddings rotate pairs of "
                       "dimensions, choose dim / heads even", c->dim / c->heads);
  if (c->heads % c->kv_heads != 0)
    return strata_fail(err, errlen, "heads = %d is not divisible by kv_heads = %d: each key / value head must "
                       "serve the same number of query heads", c->heads, c->kv_heads);
  if (!(c->rms_norm_eps > 0.0))
    return strata_fail(err, errlen, "rms_norm_eps = %g: must be positive (Llama uses 1e-5 or 1e-6)", c->rms_norm_eps);
  if (!(c->rope_theta > 0.0))
    return strata_fail(err, errlen, "rope_theta = %g: must be positive (Llama uses 10000 or 500000)", c->rope_theta);
  const int64_t C = c->dim, wide = c->ffn > c->vocab ? c->ffn : c->vocab;
  if (wide * C > INT32_MAX || 3 * C * C > INT32_MAX)
    return strata_fail(err, errlen, "dim = %d with ffn = %d and vocab = %d is too large for 32-bit BLAS indices",
                       c->dim, c->ffn, c->vocab);
  return 0;
}

/* Appends tensor `name` of logical shape (d0[, d1]) (d1 = 0: 1-D) split as `split` over the
 * model's TP group at *off, advancing it by its local size. */
static void add_tensor(llama_model_t *m, size_t *off, const char *name, int64_t d0, int64_t d1, gpt2_split_t split) {
  gpt2_tensor_t *t = &m->tensors[m->num_tensors++];
  gpt2_tensor_describe(t, name, d1 ? 2 : 1, d0, d1, d1 != 0, split, m->range.tp_size, *off);
  *off += t->numel;
}

/* The layer tensors in flat order: name after "model.layers.<l>.", view in llama_layer_t,
 * logical shape as (rows, cols) in units: 'C' dim, 'K' kv_heads * hs, 'F' ffn, 0 none (1-D),
 * and the tensor-parallel split. Linear weights are [out, in], so Megatron's column-parallel
 * products (q, k, v by heads, gate and up) split the rows and the row-parallel ones (o_proj,
 * down_proj) split the columns; the RMSNorm weights are replicated. */
static const struct {
  const char *suffix;
  size_t view;
  char d0, d1;
  gpt2_split_t split;
} layer_tensors[LLAMA_LAYER_TENSORS] = {
    {"input_layernorm.weight", offsetof(llama_layer_t, attn_norm), 'C', 0, GPT2_SPLIT_NONE},
    {"self_attn.q_proj.weight", offsetof(llama_layer_t, wq), 'C', 'C', GPT2_SPLIT_ROWS},
    {"self_attn.k_proj.weight", offsetof(llama_layer_t, wk), 'K', 'C', GPT2_SPLIT_ROWS},
    {"self_attn.v_proj.weight", offsetof(llama_layer_t, wv), 'K', 'C', GPT2_SPLIT_ROWS},
    {"self_attn.o_proj.weight", offsetof(llama_layer_t, wo), 'C', 'C', GPT2_SPLIT_COLS},
    {"post_attention_layernorm.weight", offsetof(llama_layer_t, mlp_norm), 'C', 0, GPT2_SPLIT_NONE},
    {"mlp.gate_proj.weight", offsetof(llama_layer_t, w_gate), 'F', 'C', GPT2_SPLIT_ROWS},
    {"mlp.up_proj.weight", offsetof(llama_layer_t, w_up), 'F', 'C', GPT2_SPLIT_ROWS},
    {"mlp.down_proj.weight", offsetof(llama_layer_t, w_down), 'C', 'F', GPT2_SPLIT_COLS},
};

static int64_t unit(const llama_model_t *m, char u) {
  const int64_t kv = (int64_t)m->cfg.kv_heads * (m->cfg.dim / m->cfg.heads);
  return u == 'C' ? m->cfg.dim : u == 'K' ? kv : u == 'F' ? m->cfg.ffn : 0;
}

/* Fills the catalogue in flat order; returns the number of (local) parameters. */
static size_t catalogue(llama_model_t *m) {
  const int64_t V = m->cfg.vocab, C = m->cfg.dim;
  size_t off = 0;
  char nm[64];
  if (m->range.has_embed) add_tensor(m, &off, "model.embed_tokens.weight", V, C, GPT2_SPLIT_VOCAB_ROWS);
  for (int l = m->range.layer_begin; l < m->range.layer_end; l++)
    for (int i = 0; i < LLAMA_LAYER_TENSORS; i++) {
      snprintf(nm, sizeof nm, "model.layers.%d.%s", l, layer_tensors[i].suffix);
      add_tensor(m, &off, nm, unit(m, layer_tensors[i].d0), unit(m, layer_tensors[i].d1), layer_tensors[i].split);
    }
  if (m->range.has_head) {
    add_tensor(m, &off, "model.norm.weight", C, 0, GPT2_SPLIT_NONE);
    add_tensor(m, &off, "lm_head.weight", V, C, GPT2_SPLIT_VOCAB_ROWS);
  }
  return off;
}

/* Layers the model holds. */
static int local_layers(const llama_model_t *m) { return m->range.layer_end - m->range.layer_begin; }

/* Points the typed views at their tensors inside base (params or grads), in catalogue order;
 * the ends the model does not hold stay NULL. */
static void bind_views(const llama_model_t *m, float *base, float **embed, llama_layer_t *layer, float **norm,
                       float **lm_head) {
  const gpt2_tensor_t *t = m->tensors;
  *embed = m->range.has_embed ? base + (t++)->offset : NULL;
  for (int l = 0; l < local_layers(m); l++)
    for (int i = 0; i < LLAMA_LAYER_TENSORS; i++)
      *(float **)((char *)&layer[l] + layer_tensors[i].view) = base + (t++)->offset;
  *norm = m->range.has_head ? base + (t++)->offset : NULL;
  *lm_head = m->range.has_head ? base + t->offset : NULL;
}

/* cos / sin of t * theta^(-2i/hs) for t < ctx, i < hs/2 (computed in double, stored float). */
static int rope_tables(llama_model_t *m) {
  llama_impl_t *s = impl_of(m);
  const int half = s->hs / 2;
  s->rope_cos = buffer_alloc(sizeof(float) * (size_t)m->cfg.ctx * half, 0);
  s->rope_sin = buffer_alloc(sizeof(float) * (size_t)m->cfg.ctx * half, 0);
  if (!s->rope_cos || !s->rope_sin) return -1;
  for (int i = 0; i < half; i++) {
    double inv_freq = 1.0 / pow(m->cfg.rope_theta, (double)(2 * i) / s->hs);
    for (int t = 0; t < m->cfg.ctx; t++) {
      s->rope_cos[(size_t)t * half + i] = (float)cos(t * inv_freq);
      s->rope_sin[(size_t)t * half + i] = (float)sin(t * inv_freq);
    }
  }
  return 0;
}

int llama_create(const llama_config_t *cfg, llama_model_t **out, char *err, size_t errlen) {
  return llama_create_range(cfg, (llama_range_t){0, cfg->layers, 1, 1, 0, 1}, out, err, errlen);
}

/* The tensor-parallel sizes of a range: tp divides heads, kv_heads and ffn. 0, or -1. */
static int tp_check(const llama_config_t *c, const llama_range_t *r, char *err, size_t errlen) {
  const int tp = r->tp_size;
  if (r->tp_rank < 0 || r->tp_rank >= tp)
    return strata_fail(err, errlen, "tensor-parallel rank %d is outside [0, %d): give 0 <= tp_rank < tp_size",
                       r->tp_rank, tp);
  const struct {
    const char *name;
    int v;
  } div[] = {{"heads", c->heads}, {"kv_heads", c->kv_heads}, {"ffn", c->ffn}};
  for (size_t i = 0; i < sizeof div / sizeof div[0]; i++)
    if (div[i].v % tp != 0)
      return strata_fail(err, errlen, "tensor-parallel size %d does not divide %s = %d: each rank holds "
                         "%s / tp of them; choose a tp that divides %d", tp, div[i].name, div[i].v, div[i].name,
                         div[i].v);
  return 0;
}

/* The local sizes of rank t of tp (llama_impl_t's fields). */
static void local_sizes(llama_impl_t *s, const llama_config_t *c, int tp, int t) {
  s->tp = tp;
  s->t = t;
  s->hs = c->dim / c->heads;
  s->Hl = c->heads / tp;
  s->KVl = c->kv_heads / tp;
  s->Cq = s->Hl * s->hs;
  s->Ckv = s->KVl * s->hs;
  s->Fl = c->ffn / tp;
  s->Vl = gpt2_padded_vocab(c->vocab, tp) / tp;
  s->voff = t * s->Vl;
  int valid = c->vocab - s->voff;
  s->vvalid = valid < 0 ? 0 : valid > s->Vl ? s->Vl : valid;
}

int llama_create_range(const llama_config_t *cfg, llama_range_t range, llama_model_t **out, char *err,
                       size_t errlen) {
  *out = NULL;
  if (llama_config_check(cfg, err, errlen)) return -1;
  if (range.layer_begin < 0 || range.layer_end < range.layer_begin || range.layer_end > cfg->layers)
    return strata_fail(err, errlen, "layer range [%d, %d) is not within the model's %d layers: choose "
                       "0 <= begin <= end <= layers", range.layer_begin, range.layer_end, cfg->layers);
  if (range.tp_size <= 0) range.tp_size = 1;
  if (tp_check(cfg, &range, err, errlen)) return -1;
  llama_model_t *m = calloc(1, sizeof *m);
  llama_impl_t *s = calloc(1, sizeof *s);
  if (!m || !s) {
    free(m);
    free(s);
    return strata_fail(err, errlen, "out of memory for the Llama model's state");
  }
  m->cfg = *cfg;
  m->range = range;
  m->impl = s;
  local_sizes(s, cfg, range.tp_size, range.tp_rank);
  int64_t blk;
  if (env_read_int("STRATA_ATTN_BLOCK_ROWS", LLAMA_ATTN_BLOCK_ROWS_DEFAULT, &blk, err, errlen)) goto free_model;
  s->attn_block = (int)blk;
  const size_t nl = (size_t)local_layers(m);
  m->tensors = calloc(3 + LLAMA_LAYER_TENSORS * nl, sizeof *m->tensors);
  m->layer = calloc(nl + 1, sizeof *m->layer);
  m->g_layer = calloc(nl + 1, sizeof *m->g_layer);
  s->row = buffer_alloc(sizeof(float) * (size_t)s->Vl, 0);
  if (!m->tensors || !m->layer || !m->g_layer || !s->row || rope_tables(m)) goto oom;
  m->num_params = catalogue(m);
  m->params = buffer_alloc(sizeof(float) * m->num_params, 1);
  m->grads = buffer_alloc(sizeof(float) * m->num_params, 1);
  if (!m->params || !m->grads) goto oom;
  bind_views(m, m->params, &m->embed, m->layer, &m->norm, &m->lm_head);
  bind_views(m, m->grads, &m->g_embed, m->g_layer, &m->g_norm, &m->g_lm_head);
  *out = m;
  return 0;
oom:
  strata_fail(err, errlen, "out of memory building the Llama model (%d layers, dim %d)", cfg->layers, cfg->dim);
free_model:
  llama_free(m);
  return -1;
}

void llama_free(llama_model_t *m) {
  if (!m) return;
  llama_impl_t *s = impl_of(m);
  if (s) {
    free(s->mem);
    free(s->row);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s);
  }
  free(m->params);
  free(m->grads);
  free(m->tensors);
  free(m->layer);
  free(m->g_layer);
  free(m);
}

int llama_set_tp(llama_model_t *m, coll_comm_t *tp, char *err, size_t errlen) {
  llama_impl_t *s = impl_of(m);
  if (!tp && s->tp > 1)
    return strata_fail(err, errlen, "llama_set_tp: a model of tensor-parallel size %d needs the communicator "
                       "of its %d tensor-parallel ranks, got NULL", s->tp, s->tp);
  if (tp && (coll_size(tp) != s->tp || coll_rank(tp) != s->t))
    return strata_fail(err, errlen, "llama_set_tp: the communicator has rank %d of %d but the model was created "
                       "as tensor-parallel rank %d of %d: build it over the model's TP group, ordered by tp_rank",
                       coll_rank(tp), coll_size(tp), s->t, s->tp);
  s->comm = tp;
  return 0;
}

/* In-place all-reduce of n floats over the TP group (nothing at tp = 1). 0, or -1 (logged). */
static int tp_allreduce(const llama_model_t *m, float *buf, size_t n, coll_op_t op) {
  llama_impl_t *s = impl_of(m);
  if (s->tp == 1) return 0;
  if (!s->comm) {
    strata_error("llama: tensor-parallel rank %d of %d has no communicator (call llama_set_tp first)", s->t, s->tp);
    return -1;
  }
  coll_result_t rc = coll_allreduce(buf, buf, n, COLL_F32, op, s->comm);
  if (rc == COLL_OK) return 0;
  strata_error("llama: tensor-parallel all-reduce failed (%s): %s", coll_result_string(rc), coll_last_error(s->comm));
  return -1;
}

void llama_init_params(llama_model_t *m, uint64_t seed) {
  for (int i = 0; i < m->num_tensors; i++) {
    const gpt2_tensor_t *t = &m->tensors[i];
    float *p = m->params + t->offset;
    rng_t r;
    rng_seed(&r, seed, rng_hash_str(t->name));
    if (t->ndim == 1) {
      for (size_t j = 0; j < t->numel; j++) p[j] = 1.0f;
      continue;
    }
    /* the logical tensor's values are drawn in order and this rank keeps its part (local
     * element order is increasing in logical index; padding rows zero), so every
     * tensor-parallel layout starts from the weights of tp = 1 */
    int64_t drawn = 0;
    float v = 0.0f;
    for (size_t j = 0; j < t->numel; j++) {
      int64_t f = t->split == GPT2_SPLIT_NONE ? (int64_t)j : gpt2_tensor_full_index(t, m->range.tp_rank, j);
      if (f < 0) {
        p[j] = 0.0f;
        continue;
      }
      while (drawn <= f) {
        v = LLAMA_INIT_STD * rng_normal(&r);
        drawn++;
      }
      p[j] = v;
    }
  }
}

const gpt2_tensor_t *llama_find_tensor(const llama_model_t *m, const char *name) {
  for (int i = 0; i < m->num_tensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

void llama_zero_grad(llama_model_t *m) { memset(m->grads, 0, sizeof(float) * m->num_params); }

void llama_set_matmul_dtype(llama_model_t *m, gemm_dtype_t dt) { impl_of(m)->mm = dt; }

gemm_dtype_t llama_get_matmul_dtype(const llama_model_t *m) { return impl_of(m)->mm; }

double llama_train_flops(const llama_model_t *m, int B, int T) {
  const llama_impl_t *s = impl_of(m);
  const double C = m->cfg.dim, Cq = s->Cq, Ckv = s->Ckv, Fh = s->Fl, L = local_layers(m);
  const double V = m->range.has_head ? s->vvalid : 0;
  const double tokens = (double)B * T;
  double matmul_params = L * (2.0 * Cq * C + 2.0 * Ckv * C + 3.0 * Fh * C) + V * C;
  double attn = L * 12.0 * Cq * (double)T * tokens; /* Q K^T and P V: 4 T C per token forward, x3 */
  return 6.0 * matmul_params * tokens + attn;
}

/* ---------------------------------------------------------------------------------------- */
/* activation storage and scratch */

#define TAKE(p, n)                                         \
  do {                                                     \
    if (base) (p) = base + *off;                           \
    *off += ((size_t)(n) + 15) / 16 * 16; /* 64-byte aligned */ \
  } while (0)

/* Carves a's float buffers out of base (NULL: only counts); returns the floats needed. */
static size_t acts_layout(const llama_model_t *m, llama_acts_t *a, float *base) {
  const llama_impl_t *s = impl_of(m);
  const size_t N = (size_t)a->B * a->T, C = m->cfg.dim, Fh = s->Fl, Cq = s->Cq;
  const size_t H = s->Hl, T = a->T, Nh = m->range.has_head ? N : 0, V = s->Vl;
  size_t o = 0, *off = &o;
  TAKE(a->x0, N * C); /* the embeddings, or the received residual stream */
  for (int l = 0; l < local_layers(m); l++) {
    llama_layer_acts_t *L = &a->layer[l];
    TAKE(L->n1, N * C);
    TAKE(L->rstd1, N);
    TAKE(L->qkv, N * 3 * Cq);
    TAKE(L->att, (size_t)a->B * H * T * T);
    TAKE(L->atty, N * Cq);
    TAKE(L->res2, N * C);
    TAKE(L->n2, N * C);
    TAKE(L->rstd2, N);
    TAKE(L->gate, N * Fh);
    TAKE(L->up, N * Fh);
    TAKE(L->hact, N * Fh);
    TAKE(L->res3, N * C);
  }
  TAKE(a->nf, Nh * C);
  TAKE(a->rstdf, Nh);
  TAKE(a->logits, Nh * V);
  TAKE(a->lse, Nh);
  TAKE(a->losses, Nh);
  return o;
}

/* Carves the model's scratch for N positions of sequences of T out of base (NULL: counts). */
static size_t scratch_layout(const llama_model_t *m, llama_impl_t *s, float *base, size_t N, int T) {
  const size_t C = m->cfg.dim, Fh = s->Fl, Cq = s->Cq;
  size_t o = 0, *off = &o;
  TAKE(s->kv, N * 2 * s->Ckv);
  TAKE(s->dres, N * C);
  TAKE(s->dn, N * C);
  TAKE(s->datty, N * Cq);
  TAKE(s->dqkv, N * 3 * Cq);
  TAKE(s->dgate, N * Fh);
  TAKE(s->dup, N * Fh);
  TAKE(s->datt, (size_t)T * T);
  TAKE(s->part, s->tp > 1 ? N * C : 0);
  TAKE(s->ce, 2 * N);
  return o;
}
#undef TAKE

/* Grows the scratch to N positions and sequences of T. */
static int scratch_reserve(llama_model_t *m, size_t N, int T) {
  llama_impl_t *s = impl_of(m);
  if (s->mem && N <= s->cap_N && T <= s->cap_T) return 0;
  if (s->mem) {
    N = N > s->cap_N ? N : s->cap_N;
    T = T > s->cap_T ? T : s->cap_T;
  }
  float *mem = buffer_alloc(sizeof(float) * scratch_layout(m, s, NULL, N, T), 0);
  if (!mem) return -1;
  free(s->mem);
  s->mem = mem;
  scratch_layout(m, s, mem, N, T);
  s->cap_N = N;
  s->cap_T = T;
  return 0;
}

int llama_acts_create(llama_model_t *m, int B, int T, llama_acts_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (B <= 0) return strata_fail(err, errlen, "batch B = %d: must hold at least one sequence", B);
  if (T <= 0 || T > m->cfg.ctx)
    return strata_fail(err, errlen, "sequence length T = %d: must be in [1, ctx = %d]", T, m->cfg.ctx);
  const int64_t wide = m->cfg.ffn > m->cfg.vocab ? m->cfg.ffn : m->cfg.vocab;
  if ((int64_t)B * T > INT32_MAX / (wide > 3 * m->cfg.dim ? wide : 3 * m->cfg.dim))
    return strata_fail(err, errlen, "batch B*T = %lld tokens is too large for 32-bit BLAS indices",
                       (long long)B * T);
  llama_acts_t *a = calloc(1, sizeof *a);
  if (!a) goto oom;
  a->B = B;
  a->T = T;
  a->layer = calloc((size_t)local_layers(m) + 1, sizeof *a->layer);
  a->tokens = calloc((size_t)B * T, sizeof(int32_t));
  a->targets = calloc((size_t)B * T, sizeof(int32_t));
  if (!a->layer || !a->tokens || !a->targets) goto oom;
  a->bytes = sizeof(float) * acts_layout(m, a, NULL);
  a->mem = buffer_alloc(a->bytes, 1);
  if (!a->mem) goto oom;
  a->bytes += 2 * sizeof(int32_t) * (size_t)B * T;
  acts_layout(m, a, a->mem);
  a->out = local_layers(m) > 0 ? a->layer[local_layers(m) - 1].res3 : a->x0;
  if (scratch_reserve(m, (size_t)B * T, T)) goto oom;
  *out = a;
  return 0;
oom:
  llama_acts_free(a);
  return strata_fail(err, errlen, "out of memory for Llama activations of B = %d, T = %d", B, T);
}

void llama_acts_free(llama_acts_t *a) {
  if (!a) return;
  free(a->mem);
  free(a->layer);
  free(a->tokens);
  free(a->targets);
  free(a);
}

size_t llama_acts_bytes(const llama_acts_t *a) { return a->bytes; }

size_t llama_scratch_bytes(const llama_model_t *m) {
  llama_impl_t *s = impl_of(m), probe = *s;
  return s->mem ? sizeof(float) * scratch_layout(m, &probe, NULL, s->cap_N, s->cap_T) : 0;
}

int llama_local_vocab(const llama_model_t *m) { return impl_of(m)->Vl; }

void llama_logits_assemble(const llama_model_t *m, const float *gathered, size_t rows, float *full) {
  gpt2_vocab_logits_assemble(m->cfg.vocab, impl_of(m)->tp, gathered, rows, full);
}

int llama_stream_rows(const llama_model_t *m, int B, int T) {
  (void)m;
  return B * T;
}

const float *llama_logits(const llama_acts_t *a) { return a->logits; }
const float *llama_losses(const llama_acts_t *a) { return a->losses; }

/* ---------------------------------------------------------------------------------------- */
/* kernels */

/* out (N, nout) (row stride ldo) = inp (N, nin) @ w^T for w (nout, nin) [out, in]; beta 1 adds to out.
 * In the model's matmul precision, as every product below. */
static void linear_forward(const llama_model_t *m, float *out, int ldo, const float *inp, const float *w,
                           size_t N, int nin, int nout, float beta) {
  gemm_mm(impl_of(m)->mm, 0, 1, (int)N, nout, nin, 1.0f, inp, nin, w, nin, beta, out, ldo);
}

/* Given dout (N, nout) (row stride ldd): dw (nout, nin) += dout^T inp, and dinp (N, nin) = dout w
 * (beta 0) or += (beta 1). */
static void linear_backward(const llama_model_t *m, float *dinp, float beta, float *dw, const float *dout, int ldd,
                            const float *inp, const float *w, size_t N, int nin, int nout) {
  const gemm_dtype_t dt = impl_of(m)->mm;
  gemm_mm(dt, 0, 0, (int)N, nin, nout, 1.0f, dout, ldd, w, nin, beta, dinp, nin);
  gemm_mm(dt, 1, 0, nout, nin, (int)N, 1.0f, dout, ldd, inp, nin, 1.0f, dw, nin);
}

/* out (N, C) = w * x * rsqrt(mean(x^2) + eps) per row; saves the reciprocal rms in rstd (N). */
static void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, size_t N, int C,
                            float eps) {
  for (size_t r = 0; r < N; r++) {
    const float *x = inp + r * C;
    float *o = out + r * C, ss = 0.0f;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    float rs = 1.0f / sqrtf(ss / C + eps);
    for (int i = 0; i < C; i++) o[i] = w[i] * (x[i] * rs);
    rstd[r] = rs;
  }
}

/* dinp (N, C) += d(RMSNorm)/d(inp) . dout, dw (C) += sum over rows of dout * x * rstd. With
 * n = x * rstd: dx = rstd * (w dy - n * mean(w dy * n)). */
static void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                             const float *rstd, size_t N, int C) {
  for (size_t r = 0; r < N; r++) {
    const float *x = inp + r * C, *dy = dout + r * C;
    float *dx = dinp + r * C, rs = rstd[r], dot = 0.0f;
    for (int i = 0; i < C; i++) dot += w[i] * dy[i] * x[i] * rs;
    dot /= C;
    for (int i = 0; i < C; i++) {
      float n = x[i] * rs;
      dw[i] += n * dy[i];
      dx[i] += rs * (w[i] * dy[i] - n * dot);
    }
  }
}

/* Rotates `heads` heads of size hs of one row v by position pos, rotate-half convention; sign
 * -1 applies the inverse rotation (the backward: the transpose). */
static void rope_row(const llama_impl_t *s, float *v, int heads, size_t pos, float sign) {
  const int hs = s->hs, half = hs / 2;
  const float *c = s->rope_cos + pos * half, *sn = s->rope_sin + pos * half;
  for (int h = 0; h < heads; h++, v += hs)
    for (int i = 0; i < half; i++) {
      float a = v[i], b = v[i + half], si = sign * sn[i];
      v[i] = a * c[i] - b * si;
      v[i + half] = b * c[i] + a * si;
    }
}

/* rope_row on each of N rows (row stride ld) at position r % T. */
static void rope_apply(const llama_impl_t *s, float *x, int ld, size_t N, int T, int heads, float sign) {
  for (size_t r = 0; r < N; r++) rope_row(s, x + r * ld, heads, r % (size_t)T, sign);
}

/* out (n) = silu(gate) * up, silu(g) = g / (1 + exp(-g)). */
static void swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* From dout (n) = d/d(silu(gate) * up): dgate and dup (n), overwritten (dout may be dup). */
static void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                            size_t n) {
  for (size_t i = 0; i < n; i++) {
    float g = gate[i], sig = 1.0f / (1.0f + expf(-g)), d = dout[i];
    dup[i] = d * g * sig;
    dgate[i] = d * up[i] * sig * (1.0f + g * (1.0f - sig));
  }
}

/* The kernels llama_kv.c shares (llama_impl.h). */
void llama_rmsnorm(float *out, float *rstd, const float *inp, const float *w, size_t N, int C, float eps) {
  rmsnorm_forward(out, rstd, inp, w, N, C, eps);
}
void llama_swiglu(float *out, const float *gate, const float *up, size_t n) { swiglu_forward(out, gate, up, n); }
void llama_rope_at(const llama_model_t *m, float *v, int heads, int pos) { rope_row(impl_of(m), v, heads, (size_t)pos, 1.0f); }
void llama_tp_part(const llama_model_t *m, llama_tp_part_t *p) {
  const llama_impl_t *s = impl_of(m);
  *p = (llama_tp_part_t){s->tp, s->comm != NULL, s->hs, s->Hl, s->KVl, s->Cq, s->Ckv, s->Fl, s->Vl, s->vvalid};
}

/* ---------------------------------------------------------------------------------------- */
/* forward */

/* Attention projections of n (N, C) into L->qkv for the local heads: q straight into its
 * columns, k and v of the local kv heads into s->kv, RoPE on q and k, then k and v broadcast to
 * every local query head (local query head h reads local kv head h / (heads / kv_heads): tp
 * divides both, so a rank's query heads read only its own kv heads). */
static void qkv_forward(llama_model_t *m, const llama_layer_t *P, llama_layer_acts_t *L, int B, int T) {
  llama_impl_t *s = impl_of(m);
  const int C = m->cfg.dim, H = s->Hl, KVH = s->KVl, hs = s->hs, Ckv = s->Ckv, Cq = s->Cq;
  const size_t N = (size_t)B * T;
  const int rep = H / KVH;
  linear_forward(m, L->qkv, 3 * Cq, L->n1, P->wq, N, C, Cq, 0.0f);
  linear_forward(m, s->kv, 2 * Ckv, L->n1, P->wk, N, C, Ckv, 0.0f);
  linear_forward(m, s->kv + Ckv, 2 * Ckv, L->n1, P->wv, N, C, Ckv, 0.0f);
  rope_apply(s, L->qkv, 3 * Cq, N, T, H, 1.0f);
  rope_apply(s, s->kv, 2 * Ckv, N, T, KVH, 1.0f);
  for (size_t r = 0; r < N; r++)
    for (int h = 0; h < H; h++) {
      const float *kv = s->kv + r * 2 * Ckv + (size_t)(h / rep) * hs;
      float *row = L->qkv + r * 3 * Cq + (size_t)h * hs;
      memcpy(row + Cq, kv, sizeof(float) * hs);
      memcpy(row + 2 * Cq, kv + Ckv, sizeof(float) * hs);
    }
}

/* out (N, C) = res (N, C) + inp (N, nin) @ w^T for a row-parallel w (C, nin): at tp > 1 each
 * rank's product is a partial sum in part (N, C), all-reduced (Megatron's g) before the
 * residual add. out may be res. 0 or -1. */
int llama_row_parallel(llama_model_t *m, float *out, const float *res, const float *inp, const float *w, size_t N,
                       int nin, float *part) {
  llama_impl_t *s = impl_of(m);
  const int C = m->cfg.dim;
  if (s->tp == 1) {
    if (out != res) memcpy(out, res, sizeof(float) * N * C);
    linear_forward(m, out, C, inp, w, N, nin, C, 1.0f);
    return 0;
  }
  linear_forward(m, part, C, inp, w, N, nin, C, 0.0f);
  if (tp_allreduce(m, part, N * C, COLL_SUM)) return -1;
  for (size_t i = 0; i < N * C; i++) out[i] = res[i] + part[i];
  return 0;
}

static int layer_forward(llama_model_t *m, int l, llama_layer_acts_t *L, const float *x, int B, int T) {
  llama_impl_t *s = impl_of(m);
  const llama_layer_t *P = &m->layer[l];
  const int C = m->cfg.dim, Fh = s->Fl;
  const size_t N = (size_t)B * T;
  const float eps = (float)m->cfg.rms_norm_eps;
  rmsnorm_forward(L->n1, L->rstd1, x, P->attn_norm, N, C, eps);
  qkv_forward(m, P, L, B, T);
  nn_attention_forward(L->atty, L->att, NULL, L->qkv, B, T, s->Cq, s->Hl, s->attn_block, s->mm);
  if (llama_row_parallel(m, L->res2, x, L->atty, P->wo, N, s->Cq, s->part)) return -1;
  rmsnorm_forward(L->n2, L->rstd2, L->res2, P->mlp_norm, N, C, eps);
  linear_forward(m, L->gate, Fh, L->n2, P->w_gate, N, C, Fh, 0.0f);
  linear_forward(m, L->up, Fh, L->n2, P->w_up, N, C, Fh, 0.0f);
  swiglu_forward(L->hact, L->gate, L->up, N * Fh);
  return llama_row_parallel(m, L->res3, L->res2, L->hact, P->w_down, N, Fh, s->part);
}

/* x (N, C) = the embeddings of the tokens. Vocabulary-parallel at tp > 1: a rank looks up the
 * tokens in its rows and zeros for the others, then the TP group all-reduces. 0 or -1. */
int llama_embed(llama_model_t *m, const int32_t *tokens, size_t N, float *x) {
  llama_impl_t *s = impl_of(m);
  const int C = m->cfg.dim;
  for (size_t r = 0; r < N; r++) {
    int v = tokens[r] - s->voff;
    if (v >= 0 && v < s->vvalid)
      memcpy(x + r * C, m->embed + (size_t)v * C, sizeof(float) * C);
    else
      memset(x + r * C, 0, sizeof(float) * C);
  }
  return tp_allreduce(m, x, N * C, COLL_SUM);
}

/* logits (N, Vl) of this rank's vocabulary columns from nf (N, C); padding columns -INFINITY. */
void llama_head_logits(const llama_model_t *m, float *logits, const float *nf, size_t N) {
  const llama_impl_t *s = impl_of(m);
  const int Vl = s->Vl, nv = s->vvalid;
  if (nv > 0) linear_forward(m, logits, Vl, nf, m->lm_head, N, m->cfg.dim, nv, 0.0f);
  for (size_t i = 0; i < N; i++)
    for (int j = nv; j < Vl; j++) logits[i * Vl + j] = -INFINITY;
}

/* Per-position cross-entropy lse - logit[target], keeping each row's log-sum-exp; the mean into
 * *loss. Vocabulary-parallel at tp > 1: the row maxima are all-reduced (MAX), then the exp-sums
 * and the target logits (SUM, zero where a rank does not own the target); at tp = 1 the same
 * arithmetic without the collectives. 0 or -1. */
static int cross_entropy(llama_model_t *m, llama_acts_t *a, float *loss) {
  llama_impl_t *s = impl_of(m);
  const int Vl = s->Vl, nv = s->vvalid;
  const size_t N = (size_t)a->B * a->T;
  for (size_t i = 0; i < N; i++) a->lse[i] = nv > 0 ? nn_max_of(a->logits + i * Vl, nv) : -INFINITY;
  if (tp_allreduce(m, a->lse, N, COLL_MAX)) return -1;
  for (size_t i = 0; i < N; i++) {
    const float *lg = a->logits + i * Vl;
    memcpy(s->row, lg, sizeof(float) * nv);
    s->ce[i] = nn_exp_shift_sum(s->row, nv, a->lse[i]);
    int tl = a->targets[i] - s->voff;
    s->ce[N + i] = tl >= 0 && tl < nv ? lg[tl] : 0.0f;
  }
  if (tp_allreduce(m, s->ce, 2 * N, COLL_SUM)) return -1;
  double total = 0.0;
  for (size_t i = 0; i < N; i++) {
    a->lse[i] += logf(s->ce[i]);
    a->losses[i] = a->lse[i] - s->ce[N + i];
    total += a->losses[i];
  }
  *loss = (float)(total / (double)N);
  return 0;
}

float llama_stage_forward(llama_model_t *m, llama_acts_t *a, const int32_t *tokens, const float *x_in,
                          const int32_t *targets) {
  const int B = a->B, T = a->T, C = m->cfg.dim, V = m->cfg.vocab, nl = local_layers(m);
  const size_t N = (size_t)B * T;
  a->forward_done = 0;
  if (m->range.has_embed ? !tokens : !x_in) {
    strata_error("llama_forward: %s is NULL (give the batch's %s)", m->range.has_embed ? "tokens" : "x_in",
                 m->range.has_embed ? "B x T token ids" : "residual stream from the previous stage");
    return NAN;
  }
  if (m->range.has_embed && !nn_ids_in_vocab("llama_forward", "token", tokens, N, V)) return NAN;
  if (m->range.has_head && targets && !nn_ids_in_vocab("llama_forward", "target", targets, N, V)) return NAN;
  if (m->range.has_embed) {
    memcpy(a->tokens, tokens, sizeof(int32_t) * N);
    if (llama_embed(m, tokens, N, a->x0)) return NAN;
  } else {
    memcpy(a->x0, x_in, sizeof(float) * N * C);
  }
  const float *x = a->x0;
  for (int l = 0; l < nl; l++) {
    if (layer_forward(m, l, &a->layer[l], x, B, T)) return NAN;
    x = a->layer[l].res3;
  }
  if (!m->range.has_head) {
    a->forward_done = 1;
    return 0.0f;
  }
  rmsnorm_forward(a->nf, a->rstdf, x, m->norm, N, C, (float)m->cfg.rms_norm_eps);
  llama_head_logits(m, a->logits, a->nf, N);
  if (!targets) return 0.0f;
  memcpy(a->targets, targets, sizeof(int32_t) * N);
  float loss;
  if (cross_entropy(m, a, &loss)) return NAN;
  a->forward_done = 1;
  return loss;
}

float llama_forward(llama_model_t *m, llama_acts_t *a, const int32_t *tokens, const int32_t *targets) {
  return llama_stage_forward(m, a, tokens, NULL, targets);
}

const float *llama_output(const llama_acts_t *a) { return a->out; }

/* ---------------------------------------------------------------------------------------- */
/* backward */

/* From s->dqkv (N, 3Cq): sums each kv group's key and value gradients into s->kv (N, 2Ckv),
 * undoes RoPE on the q and k gradients, and gives d(n1) (N, C) in s->dn (this rank's partial
 * sum at tp > 1) plus the projection weight gradients. */
static void qkv_backward(llama_model_t *m, int l, const llama_layer_acts_t *L, int B, int T) {
  llama_impl_t *s = impl_of(m);
  const llama_layer_t *P = &m->layer[l];
  llama_layer_t *G = &m->g_layer[l];
  const int C = m->cfg.dim, H = s->Hl, KVH = s->KVl, hs = s->hs, Ckv = s->Ckv, Cq = s->Cq;
  const size_t N = (size_t)B * T;
  const int rep = H / KVH;
  memset(s->kv, 0, sizeof(float) * N * 2 * Ckv);
  for (size_t r = 0; r < N; r++)
    for (int h = 0; h < H; h++) {
      const float *d = s->dqkv + r * 3 * Cq + (size_t)h * hs;
      float *dkv = s->kv + r * 2 * Ckv + (size_t)(h / rep) * hs;
      nn_add_to(dkv, d + Cq, hs);
      nn_add_to(dkv + Ckv, d + 2 * Cq, hs);
    }
  rope_apply(s, s->dqkv, 3 * Cq, N, T, H, -1.0f);
  rope_apply(s, s->kv, 2 * Ckv, N, T, KVH, -1.0f);
  linear_backward(m, s->dn, 0.0f, G->wq, s->dqkv, 3 * Cq, L->n1, P->wq, N, C, Cq);
  linear_backward(m, s->dn, 1.0f, G->wk, s->kv, 2 * Ckv, L->n1, P->wk, N, C, Ckv);
  linear_backward(m, s->dn, 1.0f, G->wv, s->kv + Ckv, 2 * Ckv, L->n1, P->wv, N, C, Ckv);
}

/* s->dres (N, C) holds d(loss)/d(layer output) and becomes d(loss)/d(x); x is the layer's input.
 * The row-parallel products (down_proj, o_proj) take the whole dres (Megatron's g is the
 * identity in backward); the gradients of the RMSNorm outputs feeding the column-parallel
 * products are partial sums, all-reduced at tp > 1 (f). 0 or -1. */
static int layer_backward(llama_model_t *m, int l, const llama_layer_acts_t *L, const float *x, int B, int T) {
  llama_impl_t *s = impl_of(m);
  const llama_layer_t *P = &m->layer[l];
  llama_layer_t *G = &m->g_layer[l];
  const int C = m->cfg.dim, Fh = s->Fl;
  const size_t N = (size_t)B * T;
  /* MLP: d(hact) into dup, then split in place into dgate and dup */
  linear_backward(m, s->dup, 0.0f, G->w_down, s->dres, C, L->hact, P->w_down, N, Fh, C);
  swiglu_backward(s->dgate, s->dup, s->dup, L->gate, L->up, N * Fh);
  linear_backward(m, s->dn, 0.0f, G->w_gate, s->dgate, Fh, L->n2, P->w_gate, N, C, Fh);
  linear_backward(m, s->dn, 1.0f, G->w_up, s->dup, Fh, L->n2, P->w_up, N, C, Fh);
  if (tp_allreduce(m, s->dn, N * C, COLL_SUM)) return -1;
  rmsnorm_backward(s->dres, G->mlp_norm, s->dn, L->res2, P->mlp_norm, L->rstd2, N, C);
  /* attention */
  linear_backward(m, s->datty, 0.0f, G->wo, s->dres, C, L->atty, P->wo, N, s->Cq, C);
  nn_attention_backward(s->dqkv, s->datt, NULL, s->datty, L->qkv, L->att, B, T, s->Cq, s->Hl, s->attn_block,
                        s->mm);
  qkv_backward(m, l, L, B, T);
  if (tp_allreduce(m, s->dn, N * C, COLL_SUM)) return -1;
  rmsnorm_backward(s->dres, G->attn_norm, s->dn, x, P->attn_norm, L->rstd1, N, C);
  return 0;
}

/* The head's backward into s->dres: dlogits = (softmax - onehot) * loss_scale / N on this
 * rank's vocabulary columns, in place (padding columns give exp(-inf) = 0), then lm_head and
 * the final norm; d(nf) is all-reduced at tp > 1 (lm_head is column-parallel). 0 or -1. */
static int head_backward(llama_model_t *m, llama_acts_t *a, float loss_scale) {
  llama_impl_t *s = impl_of(m);
  const int C = m->cfg.dim, Vl = s->Vl;
  const size_t N = (size_t)a->B * a->T;
  const float dscale = loss_scale / (float)N;
  for (size_t i = 0; i < N; i++) {
    float *lg = a->logits + i * Vl;
    nn_exp_shift_sum(lg, Vl, a->lse[i]);
    nn_scale_by(lg, Vl, dscale);
    int tl = a->targets[i] - s->voff;
    if (tl >= 0 && tl < s->vvalid) lg[tl] -= dscale;
  }
  linear_backward(m, s->dn, 0.0f, m->g_lm_head, a->logits, Vl, a->nf, m->lm_head, N, C, Vl);
  if (tp_allreduce(m, s->dn, N * C, COLL_SUM)) return -1;
  memset(s->dres, 0, sizeof(float) * N * C);
  rmsnorm_backward(s->dres, m->g_norm, s->dn, a->out, m->norm, a->rstdf, N, C);
  return 0;
}

/* Reports the gradients of catalogue entries [first, first + n) as final (grad_ready). */
static void report_ready(const llama_model_t *m, int first, int n) {
  if (!m->grad_ready || n <= 0) return;
  const gpt2_tensor_t *a = &m->tensors[first], *b = &m->tensors[first + n - 1];
  m->grad_ready(m->grad_ready_ctx, a->offset, b->offset + b->numel - a->offset);
}

int llama_stage_backward(llama_model_t *m, llama_acts_t *a, const float *dx_out, float loss_scale,
                         float *dx_in) {
  llama_impl_t *s = impl_of(m);
  const int B = a->B, T = a->T, C = m->cfg.dim;
  const size_t N = (size_t)B * T;
  if (!a->forward_done) {
    strata_error("llama_backward: no forward pass with targets to differentiate (call llama_forward with "
                 "targets first; each forward allows one backward)");
    return -1;
  }
  if (!m->range.has_head && !dx_out) {
    strata_error("llama_backward: a stage without the head needs dx_out, the gradient of its output from "
                 "the next stage");
    return -1;
  }
  a->forward_done = 0;
  if (m->range.has_head) {
    if (head_backward(m, a, loss_scale)) return -1;
    report_ready(m, m->num_tensors - 2, 2);
  } else {
    memcpy(s->dres, dx_out, sizeof(float) * N * C);
  }
  const int first_layer = m->range.has_embed; /* catalogue index of the first layer's first tensor */
  for (int l = local_layers(m) - 1; l >= 0; l--) {
    if (layer_backward(m, l, &a->layer[l], l > 0 ? a->layer[l - 1].res3 : a->x0, B, T)) return -1;
    report_ready(m, first_layer + l * LLAMA_LAYER_TENSORS, LLAMA_LAYER_TENSORS);
  }
  if (m->range.has_embed) { /* this rank's vocabulary rows only */
    for (size_t r = 0; r < N; r++) {
      int v = a->tokens[r] - s->voff;
      if (v >= 0 && v < s->vvalid) nn_add_to(m->g_embed + (size_t)v * C, s->dres + r * C, C);
    }
    report_ready(m, 0, 1);
  } else if (dx_in)
    memcpy(dx_in, s->dres, sizeof(float) * N * C);
  return 0;
}

int llama_backward(llama_model_t *m, llama_acts_t *a, float loss_scale) {
  return llama_stage_backward(m, a, NULL, loss_scale, NULL);
}
