/* llama.c -- the Llama-family decoder of llama.h on CBLAS: construction and the tensor
 * catalogue in Hugging Face names, initialisation, activation storage, and the training
 * forward and backward as llm.c-style layer kernels (RMSNorm, rotate-half RoPE, grouped-query
 * attention, SwiGLU) over flat row-major float buffers. Causal attention itself, and the
 * exp / max / scale helpers of the cross-entropy, are nn.c's kernels shared with GPT-2: the
 * grouped keys and values are broadcast to every query head (HF repeat_kv) into the packed
 * [q | k | v] rows nn_attention_forward takes, and the backward sums each group's key and
 * value gradients back to its kv head.
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
  float *qkv;         /* (N, 3C) [q | k | v]: q and k after RoPE, k and v broadcast to all H heads */
  float *att;         /* (B, H, T, T) softmax probabilities */
  float *atty;        /* (N, C) attention output before o_proj */
  float *res2;        /* (N, C) residual after attention */
  float *n2, *rstd2;  /* (N, C), (N) post_attention_layernorm output and 1/rms */
  float *gate, *up;   /* (N, F) gate_proj and up_proj outputs */
  float *hact;        /* (N, F) silu(gate) * up */
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
  float *logits;          /* (N, V); overwritten by d(loss)/d(logits) in backward */
  float *lse;             /* (N) log-sum-exp of each logits row */
  float *losses;          /* (N) per-position cross-entropy */
};

typedef struct {
  int hs, Ckv;          /* head size C/H, key / value width kv_heads * hs */
  gemm_dtype_t mm;      /* precision of every matrix product (llama_set_matmul_dtype) */
  int attn_block;       /* query rows per attention block */
  float *rope_cos, *rope_sin; /* (ctx, hs/2) cos and sin of t * inv_freq[i] */
  /* scratch for the largest batch created so far (one allocation) */
  float *mem;
  size_t cap_N;
  int cap_T;
  float *kv;            /* (N, 2Ckv) [k | v] of the kv heads (forward), their gradients (backward) */
  float *dres;          /* (N, C) gradient of the residual stream */
  float *dn;            /* (N, C) gradient of an RMSNorm output */
  float *datty;         /* (N, C) gradient of the attention output */
  float *dqkv;          /* (N, 3C) gradient of the broadcast [q | k | v] */
  float *dgate, *dup;   /* (N, F) gradients of gate_proj and up_proj outputs */
  float *datt;          /* (T, T) one head's attention-probability gradient */
  float *row;           /* (V) one row of exponentials */
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

/* Appends tensor `name` of shape (d0[, d1]) (d1 = 0: 1-D) at *off, advancing it. */
static void add_tensor(llama_model_t *m, size_t *off, const char *name, int64_t d0, int64_t d1) {
  gpt2_tensor_t *t = &m->tensors[m->num_tensors++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = d1 ? 2 : 1;
  t->shape[0] = t->full_shape[0] = d0;
  t->shape[1] = t->full_shape[1] = d1;
  t->numel = t->full_numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
  t->offset = *off;
  t->decay = t->ndim == 2;
  t->split = GPT2_SPLIT_NONE;
  t->replicated = 1;
  t->tp_size = 1;
  *off += t->numel;
}

/* The layer tensors in flat order: name after "model.layers.<l>.", view in llama_layer_t, and
 * shape as (rows, cols) in units: 'C' dim, 'K' Ckv, 'F' ffn, 0 none (1-D). */
static const struct {
  const char *suffix;
  size_t view;
  char d0, d1;
} layer_tensors[LLAMA_LAYER_TENSORS] = {
    {"input_layernorm.weight", offsetof(llama_layer_t, attn_norm), 'C', 0},
    {"self_attn.q_proj.weight", offsetof(llama_layer_t, wq), 'C', 'C'},
    {"self_attn.k_proj.weight", offsetof(llama_layer_t, wk), 'K', 'C'},
    {"self_attn.v_proj.weight", offsetof(llama_layer_t, wv), 'K', 'C'},
    {"self_attn.o_proj.weight", offsetof(llama_layer_t, wo), 'C', 'C'},
    {"post_attention_layernorm.weight", offsetof(llama_layer_t, mlp_norm), 'C', 0},
    {"mlp.gate_proj.weight", offsetof(llama_layer_t, w_gate), 'F', 'C'},
    {"mlp.up_proj.weight", offsetof(llama_layer_t, w_up), 'F', 'C'},
    {"mlp.down_proj.weight", offsetof(llama_layer_t, w_down), 'C', 'F'},
};

static int64_t unit(const llama_model_t *m, char u) {
  return u == 'C' ? m->cfg.dim : u == 'K' ? impl_of(m)->Ckv : u == 'F' ? m->cfg.ffn : 0;
}

/* Fills the catalogue in flat order; returns the number of parameters. */
static size_t catalogue(llama_model_t *m) {
  const int64_t V = m->cfg.vocab, C = m->cfg.dim;
  size_t off = 0;
  char nm[64];
  if (m->range.has_embed) add_tensor(m, &off, "model.embed_tokens.weight", V, C);
  for (int l = m->range.layer_begin; l < m->range.layer_end; l++)
    for (int i = 0; i < LLAMA_LAYER_TENSORS; i++) {
      snprintf(nm, sizeof nm, "model.layers.%d.%s", l, layer_tensors[i].suffix);
      add_tensor(m, &off, nm, unit(m, layer_tensors[i].d0), unit(m, layer_tensors[i].d1));
    }
  if (m->range.has_head) {
    add_tensor(m, &off, "model.norm.weight", C, 0);
    add_tensor(m, &off, "lm_head.weight", V, C);
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
  return llama_create_range(cfg, (llama_range_t){0, cfg->layers, 1, 1}, out, err, errlen);
}

int llama_create_range(const llama_config_t *cfg, llama_range_t range, llama_model_t **out, char *err,
                       size_t errlen) {
  *out = NULL;
  if (llama_config_check(cfg, err, errlen)) return -1;
  if (range.layer_begin < 0 || range.layer_end < range.layer_begin || range.layer_end > cfg->layers)
    return strata_fail(err, errlen, "layer range [%d, %d) is not within the model's %d layers: choose "
                       "0 <= begin <= end <= layers", range.layer_begin, range.layer_end, cfg->layers);
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
  s->hs = cfg->dim / cfg->heads;
  s->Ckv = cfg->kv_heads * s->hs;
  int64_t blk;
  if (env_read_int("STRATA_ATTN_BLOCK_ROWS", LLAMA_ATTN_BLOCK_ROWS_DEFAULT, &blk, err, errlen)) goto free_model;
  s->attn_block = (int)blk;
  const size_t nl = (size_t)local_layers(m);
  m->tensors = calloc(3 + LLAMA_LAYER_TENSORS * nl, sizeof *m->tensors);
  m->layer = calloc(nl + 1, sizeof *m->layer);
  m->g_layer = calloc(nl + 1, sizeof *m->g_layer);
  s->row = buffer_alloc(sizeof(float) * (size_t)cfg->vocab, 0);
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

void llama_init_params(llama_model_t *m, uint64_t seed) {
  for (int i = 0; i < m->num_tensors; i++) {
    const gpt2_tensor_t *t = &m->tensors[i];
    float *p = m->params + t->offset;
    rng_t r;
    rng_seed(&r, seed, rng_hash_str(t->name));
    for (size_t j = 0; j < t->numel; j++) p[j] = t->ndim == 2 ? LLAMA_INIT_STD * rng_normal(&r) : 1.0f;
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
  const double C = m->cfg.dim, Ckv = impl_of(m)->Ckv, Fh = m->cfg.ffn, L = local_layers(m);
  const double V = m->range.has_head ? m->cfg.vocab : 0;
  const double tokens = (double)B * T;
  double matmul_params = L * (2.0 * C * C + 2.0 * Ckv * C + 3.0 * Fh * C) + V * C;
  double attn = L * 12.0 * C * (double)T * tokens; /* Q K^T and P V: 4 T C per token forward, x3 */
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
  const size_t N = (size_t)a->B * a->T, C = m->cfg.dim, Fh = m->cfg.ffn;
  const size_t H = m->cfg.heads, T = a->T, Nh = m->range.has_head ? N : 0, V = m->cfg.vocab;
  size_t o = 0, *off = &o;
  TAKE(a->x0, N * C); /* the embeddings, or the received residual stream */
  for (int l = 0; l < local_layers(m); l++) {
    llama_layer_acts_t *L = &a->layer[l];
    TAKE(L->n1, N * C);
    TAKE(L->rstd1, N);
    TAKE(L->qkv, N * 3 * C);
    TAKE(L->att, (size_t)a->B * H * T * T);
    TAKE(L->atty, N * C);
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
  const size_t C = m->cfg.dim, Fh = m->cfg.ffn;
  size_t o = 0, *off = &o;
  TAKE(s->kv, N * 2 * s->Ckv);
  TAKE(s->dres, N * C);
  TAKE(s->dn, N * C);
  TAKE(s->datty, N * C);
  TAKE(s->dqkv, N * 3 * C);
  TAKE(s->dgate, N * Fh);
  TAKE(s->dup, N * Fh);
  TAKE(s->datt, (size_t)T * T);
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

/* ---------------------------------------------------------------------------------------- */
/* forward */

/* Attention projections of n (N, C) into L->qkv: q straight into its columns, k and v of the
 * kv heads into s->kv, RoPE on q and k, then k and v broadcast to every query head. */
static void qkv_forward(llama_model_t *m, const llama_layer_t *P, llama_layer_acts_t *L, int B, int T) {
  llama_impl_t *s = impl_of(m);
  const int C = m->cfg.dim, H = m->cfg.heads, KVH = m->cfg.kv_heads, hs = s->hs, Ckv = s->Ckv;
  const size_t N = (size_t)B * T;
  const int rep = H / KVH;
  linear_forward(m, L->qkv, 3 * C, L->n1, P->wq, N, C, C, 0.0f);
  linear_forward(m, s->kv, 2 * Ckv, L->n1, P->wk, N, C, Ckv, 0.0f);
  linear_forward(m, s->kv + Ckv, 2 * Ckv, L->n1, P->wv, N, C, Ckv, 0.0f);
  rope_apply(s, L->qkv, 3 * C, N, T, H, 1.0f);
  rope_apply(s, s->kv, 2 * Ckv, N, T, KVH, 1.0f);
  for (size_t r = 0; r < N; r++)
    for (int h = 0; h < H; h++) {
      const float *kv = s->kv + r * 2 * Ckv + (size_t)(h / rep) * hs;
      float *row = L->qkv + r * 3 * C + (size_t)h * hs;
      memcpy(row + C, kv, sizeof(float) * hs);
      memcpy(row + 2 * C, kv + Ckv, sizeof(float) * hs);
    }
}

static void layer_forward(llama_model_t *m, int l, llama_layer_acts_t *L, const float *x, int B, int T) {
  llama_impl_t *s = impl_of(m);
  const llama_layer_t *P = &m->layer[l];
  const int C = m->cfg.dim, Fh = m->cfg.ffn;
  const size_t N = (size_t)B * T;
  const float eps = (float)m->cfg.rms_norm_eps;
  rmsnorm_forward(L->n1, L->rstd1, x, P->attn_norm, N, C, eps);
  qkv_forward(m, P, L, B, T);
  nn_attention_forward(L->atty, L->att, NULL, L->qkv, B, T, C, m->cfg.heads, s->attn_block, s->mm);
  memcpy(L->res2, x, sizeof(float) * N * C);
  linear_forward(m, L->res2, C, L->atty, P->wo, N, C, C, 1.0f);
  rmsnorm_forward(L->n2, L->rstd2, L->res2, P->mlp_norm, N, C, eps);
  linear_forward(m, L->gate, Fh, L->n2, P->w_gate, N, C, Fh, 0.0f);
  linear_forward(m, L->up, Fh, L->n2, P->w_up, N, C, Fh, 0.0f);
  swiglu_forward(L->hact, L->gate, L->up, N * Fh);
  memcpy(L->res3, L->res2, sizeof(float) * N * C);
  linear_forward(m, L->res3, C, L->hact, P->w_down, N, Fh, C, 1.0f);
}

/* Per-position cross-entropy lse - logit[target], keeping each row's log-sum-exp; mean into *loss. */
static float cross_entropy(llama_model_t *m, llama_acts_t *a) {
  llama_impl_t *s = impl_of(m);
  const int V = m->cfg.vocab;
  const size_t N = (size_t)a->B * a->T;
  double total = 0.0;
  for (size_t i = 0; i < N; i++) {
    const float *lg = a->logits + i * V;
    float mx = nn_max_of(lg, V);
    memcpy(s->row, lg, sizeof(float) * V);
    a->lse[i] = mx + logf(nn_exp_shift_sum(s->row, V, mx));
    a->losses[i] = a->lse[i] - lg[a->targets[i]];
    total += a->losses[i];
  }
  return (float)(total / (double)N);
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
    for (size_t r = 0; r < N; r++) memcpy(a->x0 + r * C, m->embed + (size_t)tokens[r] * C, sizeof(float) * C);
  } else {
    memcpy(a->x0, x_in, sizeof(float) * N * C);
  }
  const float *x = a->x0;
  for (int l = 0; l < nl; l++) {
    layer_forward(m, l, &a->layer[l], x, B, T);
    x = a->layer[l].res3;
  }
  if (!m->range.has_head) {
    a->forward_done = 1;
    return 0.0f;
  }
  rmsnorm_forward(a->nf, a->rstdf, x, m->norm, N, C, (float)m->cfg.rms_norm_eps);
  linear_forward(m, a->logits, V, a->nf, m->lm_head, N, C, V, 0.0f);
  if (!targets) return 0.0f;
  memcpy(a->targets, targets, sizeof(int32_t) * N);
  a->forward_done = 1;
  return cross_entropy(m, a);
}

float llama_forward(llama_model_t *m, llama_acts_t *a, const int32_t *tokens, const int32_t *targets) {
  return llama_stage_forward(m, a, tokens, NULL, targets);
}

const float *llama_output(const llama_acts_t *a) { return a->out; }

/* ---------------------------------------------------------------------------------------- */
/* backward */

/* From s->dqkv (N, 3C): sums each kv group's key and value gradients into s->kv (N, 2Ckv),
 * undoes RoPE on the q and k gradients, and gives d(n1) (N, C) in s->dn plus the projection
 * weight gradients. */
static void qkv_backward(llama_model_t *m, int l, const llama_layer_acts_t *L, int B, int T) {
  llama_impl_t *s = impl_of(m);
  const llama_layer_t *P = &m->layer[l];
  llama_layer_t *G = &m->g_layer[l];
  const int C = m->cfg.dim, H = m->cfg.heads, KVH = m->cfg.kv_heads, hs = s->hs, Ckv = s->Ckv;
  const size_t N = (size_t)B * T;
  const int rep = H / KVH;
  memset(s->kv, 0, sizeof(float) * N * 2 * Ckv);
  for (size_t r = 0; r < N; r++)
    for (int h = 0; h < H; h++) {
      const float *d = s->dqkv + r * 3 * C + (size_t)h * hs;
      float *dkv = s->kv + r * 2 * Ckv + (size_t)(h / rep) * hs;
      nn_add_to(dkv, d + C, hs);
      nn_add_to(dkv + Ckv, d + 2 * C, hs);
    }
  rope_apply(s, s->dqkv, 3 * C, N, T, H, -1.0f);
  rope_apply(s, s->kv, 2 * Ckv, N, T, KVH, -1.0f);
  linear_backward(m, s->dn, 0.0f, G->wq, s->dqkv, 3 * C, L->n1, P->wq, N, C, C);
  linear_backward(m, s->dn, 1.0f, G->wk, s->kv, 2 * Ckv, L->n1, P->wk, N, C, Ckv);
  linear_backward(m, s->dn, 1.0f, G->wv, s->kv + Ckv, 2 * Ckv, L->n1, P->wv, N, C, Ckv);
}

/* s->dres (N, C) holds d(loss)/d(layer output) and becomes d(loss)/d(x); x is the layer's input. */
static void layer_backward(llama_model_t *m, int l, const llama_layer_acts_t *L, const float *x, int B, int T) {
  llama_impl_t *s = impl_of(m);
  const llama_layer_t *P = &m->layer[l];
  llama_layer_t *G = &m->g_layer[l];
  const int C = m->cfg.dim, Fh = m->cfg.ffn;
  const size_t N = (size_t)B * T;
  /* MLP: d(hact) into dup, then split in place into dgate and dup */
  linear_backward(m, s->dup, 0.0f, G->w_down, s->dres, C, L->hact, P->w_down, N, Fh, C);
  swiglu_backward(s->dgate, s->dup, s->dup, L->gate, L->up, N * Fh);
  linear_backward(m, s->dn, 0.0f, G->w_gate, s->dgate, Fh, L->n2, P->w_gate, N, C, Fh);
  linear_backward(m, s->dn, 1.0f, G->w_up, s->dup, Fh, L->n2, P->w_up, N, C, Fh);
  rmsnorm_backward(s->dres, G->mlp_norm, s->dn, L->res2, P->mlp_norm, L->rstd2, N, C);
  /* attention */
  linear_backward(m, s->datty, 0.0f, G->wo, s->dres, C, L->atty, P->wo, N, C, C);
  nn_attention_backward(s->dqkv, s->datt, NULL, s->datty, L->qkv, L->att, B, T, C, m->cfg.heads, s->attn_block, s->mm);
  qkv_backward(m, l, L, B, T);
  rmsnorm_backward(s->dres, G->attn_norm, s->dn, x, P->attn_norm, L->rstd1, N, C);
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
  const int B = a->B, T = a->T, C = m->cfg.dim, V = m->cfg.vocab;
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
    /* head: dlogits = (softmax - onehot) * loss_scale / N, in place */
    const float dscale = loss_scale / (float)N;
    for (size_t i = 0; i < N; i++) {
      float *lg = a->logits + i * V;
      nn_exp_shift_sum(lg, V, a->lse[i]);
      nn_scale_by(lg, V, dscale);
      lg[a->targets[i]] -= dscale;
    }
    linear_backward(m, s->dn, 0.0f, m->g_lm_head, a->logits, V, a->nf, m->lm_head, N, C, V);
    memset(s->dres, 0, sizeof(float) * N * C);
    rmsnorm_backward(s->dres, m->g_norm, s->dn, a->out, m->norm, a->rstdf, N, C);
    report_ready(m, m->num_tensors - 2, 2);
  } else {
    memcpy(s->dres, dx_out, sizeof(float) * N * C);
  }
  const int first_layer = m->range.has_embed; /* catalogue index of the first layer's first tensor */
  for (int l = local_layers(m) - 1; l >= 0; l--) {
    layer_backward(m, l, &a->layer[l], l > 0 ? a->layer[l - 1].res3 : a->x0, B, T);
    report_ready(m, first_layer + l * LLAMA_LAYER_TENSORS, LLAMA_LAYER_TENSORS);
  }
  if (m->range.has_embed) {
    for (size_t r = 0; r < N; r++) nn_add_to(m->g_embed + (size_t)a->tokens[r] * C, s->dres + r * C, C);
    report_ready(m, 0, 1);
  } else if (dx_in)
    memcpy(dx_in, s->dres, sizeof(float) * N * C);
  return 0;
}

int llama_backward(llama_model_t *m, llama_acts_t *a, float loss_scale) {
  return llama_stage_backward(m, a, NULL, loss_scale, NULL);
}
