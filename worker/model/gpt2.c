/* gpt2.c -- GPT-2 forward and backward on CBLAS for one contiguous range of layers and one
 * tensor-parallel rank's share of them (see gpt2.h): construction, activations, the training
 * forward and backward with Megatron's f / g collectives, sequence parallelism and activation
 * recomputation.
 *
 * The structure follows llm.c's train_gpt2.c: every operation is a plain function pair
 * *_forward / *_backward over flat (rows, width) float arrays (nn.h); all matrix products go
 * through cblas_sgemm on Hugging Face Conv1D [in, out] weights; attention runs one sgemm per
 * (batch, head) block for Q K^T and P V. Time goes ~87% to sgemm at tp = 1.
 *
 * Tensor parallelism touches a layer in four places, each one helper below: the row-parallel
 * products end in g (row_parallel_forward: all-reduce, or reduce-scatter to this rank's rows
 * with sequence parallelism, then the replicated bias and the residual); the column-parallel
 * inputs' gradients end in f (f_backward: the same reductions); with sequence parallelism the
 * LayerNorm outputs are all-gathered before the column-parallel products (gather_rows) and the
 * stream's gradient before the row-parallel backward. At tp = 1 each helper is the tp = 1 code
 * itself, so tp = 1 computes exactly what it computed before tensor parallelism existed.
 *
 * Activations of one micro-batch live in one allocation owned by a gpt2_acts_t; the
 * gradients of activations, TP partial sums and the one layer FULL recomputation re-runs
 * (needed only during one call) live in scratch owned by the model (gpt2_impl.h), sized by the
 * largest gpt2_acts_create so far.
 */
#include "gpt2.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "env.h"
#include "gpt2_impl.h"
#include "log.h"
#include "nn.h"
#include "util.h"

/* Query rows per causal attention block: each block of a head is one sgemm over keys
 * [0, block end), so smaller blocks skip more of the masked upper triangle but make smaller
 * sgemm calls. Override with STRATA_ATTN_BLOCK_ROWS. */
#define GPT2_ATTN_BLOCK_ROWS_DEFAULT 64
#define GPT2_LAYER_TENSORS 12 /* parameter tensors per transformer layer */

struct gpt2_acts {
  int B, T;               /* micro-batch shape */
  int cap_B, cap_T;       /* shape the storage was created for */
  int nl;                 /* layers of the shard */
  int has_head;
  int tp, sp;             /* TP size and sequence parallelism the storage is laid out for */
  gpt2_recompute_t recompute; /* what the storage keeps */
  float *mem;             /* the one allocation all float buffers view into */
  size_t mem_floats;
  int32_t *tokens;        /* (N) copy of the input tokens (has_embed) */
  int32_t *targets;       /* (N) copy of the targets (has_head) */
  int have_targets;       /* forward was given targets */
  int forward_done;       /* forward ran since creation / last backward */
  float *x0;              /* (rows, C) residual entering the first layer of the shard */
  gpt2_layer_acts_t *layer; /* [nl]; FULL keeps only res3 (each next layer's input) */
  float *lnf;             /* (N, C) ln_f output, every row (all-gathered with SP) */
  float *lnf_mean, *lnf_rstd; /* (rows) */
  float *logits;          /* (N, Vl); overwritten by d(loss)/d(logits) during backward */
                          /* FULL: these four point into the model's scratch (bind_head) */
  float *lse;             /* (N) log-sum-exp of each logits row (all vocabulary columns) */
  float *losses;          /* (N) per-position cross-entropy */
};

/* Every float buffer the model computes on is 64-byte aligned (a cache line, an AVX-512
 * vector): faster, and it keeps vector loops on the same path whatever the allocator did. */
static void *alloc_floats(size_t n, int zero) { return buffer_alloc(n * sizeof(float), zero); }

static gpt2_impl_t *impl_of(const gpt2_model_t *m) { return (gpt2_impl_t *)m->impl; }

/* Rows of the LayerNorm / residual region for N positions. */
static size_t region_rows(size_t N, int tp, int sp) { return sp ? N / (size_t)tp : N; }

/* ---------------------------------------------------------------------------------------- */
/* model construction */

/* The configuration and the shard's range make a model: every size positive, heads dividing
 * dim, the range inside the model, the embedding and head on the shards at its ends, and a
 * tensor-parallel split that divides the heads. */
static int check_config(const gpt2_config_t *cfg, gpt2_range_t range, char *err, size_t errlen) {
  if (cfg->vocab <= 0)
    return strata_fail(err, errlen, "vocab = %d: the vocabulary size must be positive", cfg->vocab);
  if (cfg->ctx <= 0) return strata_fail(err, errlen, "ctx = %d: the context length must be positive", cfg->ctx);
  if (cfg->layers <= 0)
    return strata_fail(err, errlen, "layers = %d: the model needs at least one layer", cfg->layers);
  if (cfg->heads <= 0)
    return strata_fail(err, errlen, "heads = %d: the number of attention heads must be positive", cfg->heads);
  if (cfg->dim <= 0) return strata_fail(err, errlen, "dim = %d: the embedding width must be positive", cfg->dim);
  if (cfg->dim % cfg->heads != 0)
    return strata_fail(err, errlen, "dim = %d is not divisible by heads = %d: choose dim a multiple of heads",
                       cfg->dim, cfg->heads);
  if (range.layer_begin < 0 || range.layer_end > cfg->layers || range.layer_begin > range.layer_end)
    return strata_fail(err, errlen,
                       "layer range [%d, %d) is not within the model's %d layers: need 0 <= layer_begin <= "
                       "layer_end <= layers",
                       range.layer_begin, range.layer_end, cfg->layers);
  if (range.has_embed && range.layer_begin != 0)
    return strata_fail(err, errlen, "has_embed with layer_begin = %d: the embedding belongs to the shard "
                       "that starts at layer 0", range.layer_begin);
  if (range.has_head && range.layer_end != cfg->layers)
    return strata_fail(err, errlen, "has_head with layer_end = %d: the head belongs to the shard that ends "
                       "at layer %d", range.layer_end, cfg->layers);
  if (range.layer_begin == range.layer_end && !range.has_embed && !range.has_head)
    return strata_fail(err, errlen, "layer range [%d, %d) is empty and owns neither embedding nor head",
                       range.layer_begin, range.layer_end);
  if (range.tp_size < 1)
    return strata_fail(err, errlen, "tp_size = %d: the tensor-parallel size must be at least 1", range.tp_size);
  if (range.tp_rank < 0 || range.tp_rank >= range.tp_size)
    return strata_fail(err, errlen, "tp_rank = %d is outside [0, tp_size = %d): give this shard's rank in its "
                       "tensor-parallel group", range.tp_rank, range.tp_size);
  if (cfg->heads % range.tp_size != 0)
    return strata_fail(err, errlen, "heads = %d is not divisible by the tensor-parallel size %d: choose a "
                       "tensor-parallel size that divides the heads", cfg->heads, range.tp_size);
  const int64_t C = cfg->dim;
  if ((int64_t)gpt2_padded_vocab(cfg->vocab, range.tp_size) * C > INT32_MAX || 4 * C * C > INT32_MAX)
    return strata_fail(err, errlen, "dim = %d with vocab = %d is too large for 32-bit BLAS indices", cfg->dim,
                       cfg->vocab);
  return 0;
}

/* The shape of this rank's part, in the private state. */
static void impl_shape(gpt2_impl_t *s, const gpt2_model_t *m) {
  s->tp = m->range.tp_size;
  s->t = m->range.tp_rank;
  s->Cl = gpt2_local_dim(m);
  s->Hl = gpt2_local_heads(m);
  s->Vl = gpt2_local_vocab(m);
  s->voff = gpt2_vocab_offset(m);
  int valid = m->cfg.vocab - s->voff;
  s->vvalid = valid < 0 ? 0 : valid > s->Vl ? s->Vl : valid;
}

int gpt2_create(const gpt2_config_t *cfg, gpt2_range_t range, gpt2_model_t **out, char *err,
                size_t errlen) {
  *out = NULL;
  if (range.tp_size == 0) range.tp_size = 1;
  if (check_config(cfg, range, err, errlen)) return -1;
  int nl = range.layer_end - range.layer_begin;
  gpt2_model_t *m = calloc(1, sizeof *m);
  gpt2_impl_t *impl = calloc(1, sizeof *impl);
  if (!m || !impl) {
    free(m);
    free(impl);
    return strata_fail(err, errlen, "out of memory for a model shard's state");
  }
  m->cfg = *cfg;
  m->range = range;
  m->impl = impl;
  impl_shape(impl, m);
  int64_t blk;
  if (env_read_int("STRATA_ATTN_BLOCK_ROWS", GPT2_ATTN_BLOCK_ROWS_DEFAULT, &blk, err, errlen)) goto free_model;
  impl->attn_block = (int)blk;
  size_t row = (size_t)(impl->Vl > 4 * cfg->dim ? impl->Vl : 4 * cfg->dim);
  impl->row = alloc_floats(row, 0);
  m->tensors = calloc(6 + (size_t)GPT2_LAYER_TENSORS * nl, sizeof *m->tensors);
  m->layer = calloc(nl > 0 ? nl : 1, sizeof *m->layer);
  m->g_layer = calloc(nl > 0 ? nl : 1, sizeof *m->g_layer);
  if (!impl->row || !m->tensors || !m->layer || !m->g_layer) goto oom;
  m->num_params = gpt2_catalogue(m);
  m->params = alloc_floats(m->num_params, 1);
  m->grads = alloc_floats(m->num_params, 1);
  if (!m->params || !m->grads) goto oom;
  gpt2_bind_views(m, m->params, &m->wte, &m->wpe, m->layer, &m->lnf_w, &m->lnf_b);
  gpt2_bind_views(m, m->grads, &m->g_wte, &m->g_wpe, m->g_layer, &m->g_lnf_w, &m->g_lnf_b);
  /* a layer's 12 tensors are contiguous; the first layer's follow wte and wpe when has_embed */
  for (int i = 0; nl > 0 && i < GPT2_LAYER_TENSORS; i++) impl->layer_numel += m->tensors[(range.has_embed ? 2 : 0) + i].numel;
  *out = m;
  return 0;
oom:
  strata_fail(err, errlen, "out of memory building the model shard (%d layers, dim %d)", nl, cfg->dim);
free_model:
  gpt2_free(m);
  return -1;
}

void gpt2_free(gpt2_model_t *m) {
  if (!m) return;
  if (m->impl) {
    free(impl_of(m)->mem);
    free(impl_of(m)->row);
    free(m->impl);
  }
  free(m->params);
  free(m->grads);
  free(m->tensors);
  free(m->layer);
  free(m->g_layer);
  free(m);
}

void gpt2_zero_grad(gpt2_model_t *m) { memset(m->grads, 0, sizeof(float) * m->num_params); }

/* ---------------------------------------------------------------------------------------- */
/* settings: tensor-parallel group, recomputation */

int gpt2_set_tp(gpt2_model_t *m, coll_comm_t *tp, int sequence_parallel, char *err, size_t errlen) {
  gpt2_impl_t *s = impl_of(m);
  if (!tp && s->tp > 1)
    return strata_fail(err, errlen, "gpt2_set_tp: a shard of tensor-parallel size %d needs the communicator of "
                       "its %d tensor-parallel ranks, got NULL", s->tp, s->tp);
  if (tp && (coll_size(tp) != s->tp || coll_rank(tp) != s->t))
    return strata_fail(err, errlen, "gpt2_set_tp: the communicator has rank %d of %d but the shard was created "
                       "as tensor-parallel rank %d of %d: build the TP communicator over the shard's TP group, "
                       "ordered by tp_rank", coll_rank(tp), coll_size(tp), s->t, s->tp);
  s->comm = tp;
  s->sp = sequence_parallel && s->tp > 1;
  return 0;
}

int gpt2_sequence_parallel(const gpt2_model_t *m) { return impl_of(m)->sp; }

int gpt2_stream_rows(const gpt2_model_t *m, int B, int T) {
  return (int)region_rows((size_t)B * T, impl_of(m)->tp, impl_of(m)->sp);
}

int gpt2_set_recompute(gpt2_model_t *m, gpt2_recompute_t mode) {
  if (mode != GPT2_RECOMPUTE_NONE && mode != GPT2_RECOMPUTE_SELECTIVE && mode != GPT2_RECOMPUTE_FULL) return -1;
  impl_of(m)->recompute = mode;
  return 0;
}

gpt2_recompute_t gpt2_get_recompute(const gpt2_model_t *m) { return impl_of(m)->recompute; }

static const char *const recompute_names[] = {"none", "selective", "full"};

const char *gpt2_recompute_name(gpt2_recompute_t mode) {
  return (int)mode >= 0 && (int)mode < 3 ? recompute_names[mode] : "?";
}

int gpt2_parse_recompute(const char *s, gpt2_recompute_t *out) {
  for (int i = 0; i < 3; i++)
    if (s && strcmp(s, recompute_names[i]) == 0) {
      *out = (gpt2_recompute_t)i;
      return 0;
    }
  return -1;
}

int gpt2_coll_check(gpt2_model_t *m, coll_result_t rc, const char *what) {
  if (rc == COLL_OK) return 0;
  strata_error("gpt2: tensor-parallel %s failed (%s): %s", what, coll_result_string(rc),
               coll_last_error(impl_of(m)->comm));
  return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* activations and scratch */

#define TAKE(ptr, count)                                                                                     \
  do {                                                                                                       \
    if (base) (ptr) = base + *off;                                                                           \
    *off += gpt2_round_up(count);                                                                            \
  } while (0)

/* Carves one layer's activations for N positions, `rows` region rows, local width Cl and
 * att_floats of attention probabilities (0: none kept) from base at *off (base NULL: counts). */
static void carve_layer(gpt2_layer_acts_t *L, float *base, size_t *off, size_t N, size_t rows, size_t C,
                        size_t Cl, size_t att_floats) {
  TAKE(L->ln1, rows * C);
  TAKE(L->ln1_mean, rows);
  TAKE(L->ln1_rstd, rows);
  TAKE(L->qkv, N * 3 * Cl);
  if (att_floats) TAKE(L->att, att_floats);
  TAKE(L->atty, N * Cl);
  TAKE(L->res2, rows * C);
  TAKE(L->ln2, rows * C);
  TAKE(L->ln2_mean, rows);
  TAKE(L->ln2_rstd, rows);
  TAKE(L->fch, N * 4 * Cl);
  TAKE(L->fch_gelu, N * 4 * Cl);
  TAKE(L->res3, rows * C);
}

/* Carves the activation allocation; with base == NULL only counts floats. */
static size_t acts_layout(const gpt2_model_t *m, gpt2_acts_t *a, float *base) {
  const gpt2_impl_t *s = impl_of(m);
  size_t N = (size_t)a->B * a->T, rows = region_rows(N, a->tp, a->sp), C = m->cfg.dim, Cl = s->Cl;
  size_t att = a->recompute == GPT2_RECOMPUTE_NONE ? (size_t)a->B * s->Hl * a->T * a->T : 0;
  size_t o = 0, *off = &o;
  TAKE(a->x0, rows * C);
  for (int l = 0; l < a->nl; l++) {
    gpt2_layer_acts_t tmp, *L = base ? &a->layer[l] : &tmp;
    memset(L, 0, sizeof *L);
    if (a->recompute == GPT2_RECOMPUTE_FULL)
      TAKE(L->res3, rows * C);
    else
      carve_layer(L, base, off, N, rows, C, Cl, att);
  }
  if (a->has_head) {
    if (a->recompute != GPT2_RECOMPUTE_FULL) { /* FULL: in the model's scratch (bind_head) */
      TAKE(a->lnf, N * C);
      TAKE(a->lnf_mean, rows);
      TAKE(a->lnf_rstd, rows);
      TAKE(a->logits, N * s->Vl);
    }
    TAKE(a->lse, N);
    TAKE(a->losses, N);
  }
  return o;
}

/* What the model's scratch must hold (gpt2_impl_t): N positions, `rows` region rows, sequence
 * length T, and which optional parts (patt: one head's probabilities; layer: one layer's
 * activations; head: ln_f and the logits; sp: the sequence-parallel gathers). */
typedef struct {
  size_t N, rows;
  int T, patt, layer, head, sp;
} scratch_need_t;

/* Carves the scratch allocation into s's pointers; with base == NULL only counts floats. */
static size_t scratch_layout(const gpt2_model_t *m, gpt2_impl_t *s, float *base, const scratch_need_t *n) {
  size_t C = m->cfg.dim, Cl = s->Cl, o = 0, *off = &o, TT = (size_t)n->T * n->T;
  gpt2_impl_t tmp, *p = base ? s : &tmp;
  TAKE(p->dres, n->rows * C);
  TAKE(p->dln, n->N * C);
  TAKE(p->datty, n->N * Cl);
  TAKE(p->dbig, n->N * 4 * Cl);
  TAKE(p->datt, TT);
  if (n->patt) TAKE(p->patt, TT);
  TAKE(p->ce, 2 * n->N);
  if (s->tp > 1) TAKE(p->part, n->N * C);
  if (n->sp) {
    TAKE(p->lnfull, n->N * C);
    TAKE(p->lngrad, 4 * C);
  }
  if (n->layer) carve_layer(&p->rl, base, off, n->N, n->rows, C, Cl, 0);
  if (n->head) {
    TAKE(p->lnf, n->N * C);
    TAKE(p->lnf_mean, n->rows);
    TAKE(p->lnf_rstd, n->rows);
    TAKE(p->logits, n->N * s->Vl);
  }
  return o;
}
#undef TAKE

/* Grows the model's scratch to cover `want` as well as what it covers now. */
static int impl_reserve(gpt2_model_t *m, scratch_need_t want) {
  gpt2_impl_t *s = impl_of(m);
  if (s->mem && want.N <= s->cap_N && want.rows <= s->cap_rows && want.T <= s->cap_T &&
      want.patt <= s->have_patt && want.layer <= s->have_layer && want.head <= s->have_head &&
      want.sp <= s->have_sp)
    return 0;
  scratch_need_t n = want;
  if (s->mem) {
    n.N = s->cap_N > n.N ? s->cap_N : n.N;
    n.rows = s->cap_rows > n.rows ? s->cap_rows : n.rows;
    n.T = s->cap_T > n.T ? s->cap_T : n.T;
    n.patt |= s->have_patt;
    n.layer |= s->have_layer;
    n.head |= s->have_head;
    n.sp |= s->have_sp;
  }
  size_t floats = scratch_layout(m, s, NULL, &n);
  float *mem = alloc_floats(floats, 0);
  if (!mem) return -1;
  free(s->mem);
  s->mem = mem;
  s->mem_floats = floats;
  memset(&s->rl, 0, sizeof s->rl);
  scratch_layout(m, s, mem, &n);
  s->cap_N = n.N;
  s->cap_rows = n.rows;
  s->cap_T = n.T;
  s->have_patt = n.patt;
  s->have_layer = n.layer;
  s->have_head = n.head;
  s->have_sp = n.sp;
  return 0;
}

/* A fresh activation set's header (no storage) for the model's current settings. */
static void acts_header(const gpt2_model_t *m, gpt2_acts_t *a, int B, int T) {
  const gpt2_impl_t *s = impl_of(m);
  memset(a, 0, sizeof *a);
  a->B = a->cap_B = B;
  a->T = a->cap_T = T;
  a->nl = m->range.layer_end - m->range.layer_begin;
  a->has_head = m->range.has_head;
  a->tp = s->tp;
  a->sp = s->sp;
  a->recompute = s->recompute;
}

int gpt2_acts_create(const gpt2_model_t *m, int B, int T, gpt2_acts_t **out, char *err, size_t errlen) {
  const gpt2_impl_t *s = impl_of(m);
  *out = NULL;
  if (B <= 0)
    return strata_fail(err, errlen, "batch B = %d: the micro-batch must hold at least one sequence", B);
  if (T <= 0 || T > m->cfg.ctx)
    return strata_fail(err, errlen, "sequence length T = %d: must be in [1, ctx = %d]", T, m->cfg.ctx);
  if ((int64_t)B * T > INT32_MAX / (4 * (int64_t)m->cfg.dim))
    return strata_fail(err, errlen, "micro-batch B*T = %lld tokens is too large for 32-bit BLAS indices",
                       (long long)B * T);
  if (s->sp && T % s->tp != 0)
    return strata_fail(err, errlen, "sequence length T = %d is not divisible by the tensor-parallel size %d: "
                       "sequence parallelism splits every sequence's positions evenly; choose T a multiple "
                       "of %d or turn sequence parallelism off", T, s->tp, s->tp);
  gpt2_acts_t *a = calloc(1, sizeof *a);
  if (!a) goto oom;
  acts_header(m, a, B, T);
  a->layer = calloc(a->nl > 0 ? a->nl : 1, sizeof *a->layer);
  a->tokens = calloc((size_t)B * T, sizeof(int32_t));
  a->targets = calloc((size_t)B * T, sizeof(int32_t));
  if (!a->layer || !a->tokens || !a->targets) goto oom;
  a->mem_floats = acts_layout(m, a, NULL);
  a->mem = aligned_alloc(64, sizeof(float) * a->mem_floats);
  if (!a->mem) goto oom;
  memset(a->mem, 0, sizeof(float) * a->mem_floats);
  acts_layout(m, a, a->mem);
  size_t N = (size_t)B * T;
  int full = a->recompute == GPT2_RECOMPUTE_FULL;
  scratch_need_t need = {N, region_rows(N, a->tp, a->sp), T, a->recompute != GPT2_RECOMPUTE_NONE, full,
                         full && a->has_head, a->sp};
  /* the model's scratch is not part of its logical state: growing it through a const model is
   * the documented side effect of this call */
  if (impl_reserve((gpt2_model_t *)m, need) != 0) goto oom;
  *out = a;
  return 0;
oom:
  strata_fail(err, errlen, "out of memory for activations of B = %d, T = %d", B, T);
  gpt2_acts_free(a);
  return -1;
}

void gpt2_acts_free(gpt2_acts_t *a) {
  if (!a) return;
  free(a->mem);
  free(a->layer);
  free(a->tokens);
  free(a->targets);
  free(a);
}

int gpt2_acts_reshape(gpt2_acts_t *a, int B, int T, char *err, size_t errlen) {
  if (B <= 0 || T <= 0 || B > a->cap_B || T > a->cap_T)
    return strata_fail(err, errlen, "micro-batch B = %d, T = %d does not fit activations created for B = %d, T = %d",
                       B, T, a->cap_B, a->cap_T);
  if (a->sp && T % a->tp != 0)
    return strata_fail(err, errlen, "sequence length T = %d is not divisible by the tensor-parallel size %d "
                       "(sequence parallelism)", T, a->tp);
  /* every buffer was sized for (cap_B, cap_T) and is indexed with the current (B, T) */
  a->B = B;
  a->T = T;
  a->forward_done = 0;
  return 0;
}

size_t gpt2_acts_bytes(const gpt2_acts_t *a) {
  return sizeof(float) * a->mem_floats + 2 * sizeof(int32_t) * (size_t)a->cap_B * a->cap_T;
}

size_t gpt2_acts_bytes_for(const gpt2_model_t *m, int B, int T) {
  gpt2_acts_t a;
  acts_header(m, &a, B, T);
  return sizeof(float) * acts_layout(m, &a, NULL) + 2 * sizeof(int32_t) * (size_t)B * T;
}

size_t gpt2_scratch_bytes(const gpt2_model_t *m) {
  const gpt2_impl_t *s = impl_of(m);
  size_t row = (size_t)(s->Vl > 4 * m->cfg.dim ? s->Vl : 4 * m->cfg.dim);
  return sizeof(float) * (s->mem_floats + row);
}

const float *gpt2_output(const gpt2_acts_t *a) { return a->nl > 0 ? a->layer[a->nl - 1].res3 : a->x0; }
const float *gpt2_logits(const gpt2_acts_t *a) { return a->logits; }

/* FULL recomputation keeps ln_f's output and the logits in the model's scratch, not in the
 * micro-batch: points a at them (the scratch may have moved since a's last call). */
static void bind_head(const gpt2_model_t *m, gpt2_acts_t *a) {
  const gpt2_impl_t *s = impl_of(m);
  if (!a->has_head || a->recompute != GPT2_RECOMPUTE_FULL) return;
  a->lnf = s->lnf;
  a->lnf_mean = s->lnf_mean;
  a->lnf_rstd = s->lnf_rstd;
  a->logits = s->logits;
}
const float *gpt2_losses(const gpt2_acts_t *a) { return a->losses; }

/* Can `a` run on m now? A TP shard needs its communicator, and the activations' layout must
 * match the model's sequence-parallel setting. Logs and returns -1 if not. */
static int acts_usable(const gpt2_model_t *m, const gpt2_acts_t *a, const char *fn) {
  const gpt2_impl_t *s = impl_of(m);
  if (s->tp > 1 && !s->comm) {
    strata_error("%s: a shard of tensor-parallel size %d has no communicator: call gpt2_set_tp first", fn, s->tp);
    return -1;
  }
  if (a->sp != s->sp || a->tp != s->tp) {
    strata_error("%s: the activations were laid out with sequence parallelism %s but the model now has it %s: "
                 "create activations after gpt2_set_tp", fn, a->sp ? "on" : "off", s->sp ? "on" : "off");
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* tensor-parallel steps (each is the plain tp = 1 operation when tp = 1) */

/* f forward with sequence parallelism: full (N, C) = this TP group's `rows`-row blocks of
 * local, in rank order. */
static int gather_rows(gpt2_model_t *m, const float *local, float *full, size_t rows, int C) {
  gpt2_impl_t *s = impl_of(m);
  return gpt2_coll_check(m, coll_allgather(local, full, rows * C, COLL_F32, s->comm), "all-gather");
}

/* out (rows, C) = res + bias + sum over the TP group of inp (N, K) @ w (K, C): a row-parallel
 * product followed by g (all-reduce; reduce-scatter to this rank's rows with sequence
 * parallelism), the replicated bias added once after it. At tp = 1: out = res + bias + inp @ w
 * as one accumulating product. out and res are distinct. */
static int row_parallel_forward(gpt2_model_t *m, float *out, const float *res, const float *inp, const float *w,
                                const float *bias, size_t N, int K, int sp) {
  gpt2_impl_t *s = impl_of(m);
  const int C = m->cfg.dim;
  if (s->tp == 1) {
    memcpy(out, res, sizeof(float) * N * C);
    nn_matmul_forward(out, inp, w, bias, N, K, C, 1);
    return 0;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, C, K, 1.0f, inp, K, w, C, 0.0f, s->part, C);
  size_t rows = region_rows(N, s->tp, sp);
  float *sum = s->part + (sp ? (size_t)s->t * rows * C : 0);
  coll_result_t rc = sp ? coll_reduce_scatter(s->part, sum, rows * C, COLL_F32, COLL_SUM, s->comm)
                        : coll_allreduce(s->part, s->part, N * C, COLL_F32, COLL_SUM, s->comm);
  if (gpt2_coll_check(m, rc, sp ? "reduce-scatter" : "all-reduce")) return -1;
  for (size_t r = 0; r < rows; r++) {
    const float *x = res + r * C, *p = sum + r * C;
    float *o = out + r * C;
    for (int i = 0; i < C; i++) o[i] = x[i] + bias[i] + p[i];
  }
  return 0;
}

/* f backward: buf (N, C) holds this rank's partial gradient of a column-parallel product's
 * input; sums it over the TP group in place (all-reduce; reduce-scatter with sequence
 * parallelism). Returns the reduced rows (buf, or this rank's block of it), NULL on error. */
static float *f_backward(gpt2_model_t *m, float *buf, size_t N, int sp) {
  gpt2_impl_t *s = impl_of(m);
  const int C = m->cfg.dim;
  if (s->tp == 1) return buf;
  size_t rows = region_rows(N, s->tp, sp);
  float *mine = buf + (sp ? (size_t)s->t * rows * C : 0);
  coll_result_t rc = sp ? coll_reduce_scatter(buf, mine, rows * C, COLL_F32, COLL_SUM, s->comm)
                        : coll_allreduce(buf, buf, N * C, COLL_F32, COLL_SUM, s->comm);
  return gpt2_coll_check(m, rc, sp ? "reduce-scatter" : "all-reduce") ? NULL : mine;
}

/* With sequence parallelism: sums this backward's LayerNorm gradients g (n floats, computed from
 * this rank's rows) over the TP group and adds them to dst[k] (count[k] floats each, in g's
 * order). */
static int sp_ln_grads(gpt2_model_t *m, float *g, float **dst, int k, int C) {
  gpt2_impl_t *s = impl_of(m);
  if (gpt2_coll_check(m, coll_allreduce(g, g, (size_t)k * C, COLL_F32, COLL_SUM, s->comm), "all-reduce"))
    return -1;
  for (int i = 0; i < k; i++) nn_add_to(dst[i], g + (size_t)i * C, C);
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* forward */

/* Are the n ids (tokens or targets, named by `what`) all in [0, V)? Says which is not. */
static int in_vocab(const char *what, const int32_t *ids, size_t n, int V) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= V) {
      strata_error("gpt2_forward: %s %d at position %zu is outside the vocabulary [0, %d)", what, ids[i], i, V);
      return 0;
    }
  return 1;
}

/* x0 = wte[token] + wpe[position]. Vocabulary-parallel: rows of other ranks look up zeros, the
 * lookups are summed over the TP group (reduce-scattered with SP), then wpe is added. */
static int embed_forward(gpt2_model_t *m, gpt2_acts_t *a, const int32_t *tokens) {
  gpt2_impl_t *s = impl_of(m);
  const int B = a->B, T = a->T, C = m->cfg.dim;
  const size_t N = (size_t)B * T;
  if (s->tp == 1) {
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) {
        float *x = a->x0 + ((size_t)b * T + t) * C;
        const float *we = m->wte + (size_t)tokens[b * T + t] * C, *pe = m->wpe + (size_t)t * C;
        for (int i = 0; i < C; i++) x[i] = we[i] + pe[i];
      }
    return 0;
  }
  float *look = a->sp ? s->part : a->x0;
  for (size_t r = 0; r < N; r++) {
    int local = tokens[r] - s->voff;
    if (local >= 0 && local < s->vvalid)
      memcpy(look + r * C, m->wte + (size_t)local * C, sizeof(float) * C);
    else
      memset(look + r * C, 0, sizeof(float) * C);
  }
  size_t rows = region_rows(N, s->tp, a->sp), first = a->sp ? (size_t)s->t * rows : 0;
  coll_result_t rc = a->sp ? coll_reduce_scatter(look, a->x0, rows * C, COLL_F32, COLL_SUM, s->comm)
                           : coll_allreduce(look, look, N * C, COLL_F32, COLL_SUM, s->comm);
  if (gpt2_coll_check(m, rc, a->sp ? "reduce-scatter" : "all-reduce")) return -1;
  for (size_t r = 0; r < rows; r++) nn_add_to(a->x0 + r * C, m->wpe + ((first + r) % (size_t)T) * C, C);
  return 0;
}

/* One transformer layer forward: x (rows, C) -> L's activations, L->res3 (rows, C) the output.
 * Used by the forward and by FULL recomputation in the backward (same code, same bits). */
static int layer_forward(gpt2_model_t *m, int l, gpt2_layer_acts_t *L, const float *x, int B, int T, int sp) {
  gpt2_impl_t *s = impl_of(m);
  const gpt2_layer_t *P = &m->layer[l];
  const int C = m->cfg.dim, Cl = s->Cl;
  const size_t N = (size_t)B * T, rows = region_rows(N, s->tp, sp);
  nn_layernorm_forward(L->ln1, L->ln1_mean, L->ln1_rstd, x, P->ln1_w, P->ln1_b, rows, C);
  const float *ln = L->ln1;
  if (sp) {
    if (gather_rows(m, L->ln1, s->lnfull, rows, C)) return -1;
    ln = s->lnfull;
  }
  nn_matmul_forward(L->qkv, ln, P->attn_w, P->attn_b, N, C, 3 * Cl, 0);
  nn_attention_forward(L->atty, L->att, s->patt, L->qkv, B, T, Cl, s->Hl, s->attn_block);
  if (row_parallel_forward(m, L->res2, x, L->atty, P->attn_proj_w, P->attn_proj_b, N, Cl, sp)) return -1;
  nn_layernorm_forward(L->ln2, L->ln2_mean, L->ln2_rstd, L->res2, P->ln2_w, P->ln2_b, rows, C);
  ln = L->ln2;
  if (sp) {
    if (gather_rows(m, L->ln2, s->lnfull, rows, C)) return -1;
    ln = s->lnfull;
  }
  nn_matmul_forward(L->fch, ln, P->fc_w, P->fc_b, N, C, 4 * Cl, 0);
  nn_gelu_forward(L->fch_gelu, L->fch, N * 4 * Cl);
  return row_parallel_forward(m, L->res3, L->res2, L->fch_gelu, P->fc_proj_w, P->fc_proj_b, N, 4 * Cl, sp);
}

/* ln_f of the shard's output x (rows, C) into a->lnf (N, C: every row, all-gathered with
 * sequence parallelism; mean and 1/std of this rank's rows) and this rank's logits (N, Vl): the
 * columns of its vocabulary slice (all V at tp = 1), padding columns -INFINITY. Used by the
 * forward and by FULL recomputation in the backward (same code, same bits). */
static int head_logits(gpt2_model_t *m, gpt2_acts_t *a, const float *x) {
  gpt2_impl_t *s = impl_of(m);
  const int C = m->cfg.dim, Vl = s->Vl, nv = s->vvalid;
  const size_t N = (size_t)a->B * a->T, rows = region_rows(N, s->tp, a->sp);
  if (a->sp) {
    float *mine = a->lnf + (size_t)s->t * rows * C;
    nn_layernorm_forward(mine, a->lnf_mean, a->lnf_rstd, x, m->lnf_w, m->lnf_b, rows, C);
    if (gather_rows(m, mine, a->lnf, rows, C)) return -1; /* in place: own block at offset t */
  } else {
    nn_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, x, m->lnf_w, m->lnf_b, N, C);
  }
  if (nv > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, nv, C, 1.0f, a->lnf, C, m->wte, C, 0.0f,
                a->logits, Vl);
  for (size_t i = 0; i < N; i++)
    for (int j = nv; j < Vl; j++) a->logits[i * Vl + j] = -INFINITY;
  return 0;
}

/* With targets: the per-position cross-entropy and its mean into *loss, keeping each row's
 * log-sum-exp for the backward. Vocabulary-parallel at tp > 1: the row maxima are all-reduced
 * (MAX), then the exp-sums and target logits (SUM, one call); at tp = 1 the same arithmetic
 * without the collectives. */
static int head_loss(gpt2_model_t *m, gpt2_acts_t *a, const int32_t *targets, float *loss) {
  gpt2_impl_t *s = impl_of(m);
  const int Vl = s->Vl, nv = s->vvalid;
  const size_t N = (size_t)a->B * a->T;
  a->have_targets = targets != NULL;
  if (!targets) return 0;
  if (!in_vocab("target", targets, N, m->cfg.vocab)) return -1;
  memcpy(a->targets, targets, sizeof(int32_t) * N);
  for (size_t i = 0; i < N; i++) a->lse[i] = nn_max_of(a->logits + i * Vl, nv);
  if (s->tp > 1 &&
      gpt2_coll_check(m, coll_allreduce(a->lse, a->lse, N, COLL_F32, COLL_MAX, s->comm), "all-reduce (max)"))
    return -1;
  for (size_t i = 0; i < N; i++) {
    const float *lg = a->logits + i * Vl;
    memcpy(s->row, lg, sizeof(float) * nv);
    s->ce[i] = nn_exp_shift_sum(s->row, nv, a->lse[i]);
    int tl = targets[i] - s->voff;
    s->ce[N + i] = tl >= 0 && tl < nv ? lg[tl] : 0.0f;
  }
  if (s->tp > 1 &&
      gpt2_coll_check(m, coll_allreduce(s->ce, s->ce, 2 * N, COLL_F32, COLL_SUM, s->comm), "all-reduce"))
    return -1;
  double total = 0.0;
  for (size_t i = 0; i < N; i++) {
    a->lse[i] += logf(s->ce[i]);
    a->losses[i] = a->lse[i] - s->ce[N + i];
    total += a->losses[i];
  }
  *loss = (float)(total / (double)N);
  return 0;
}

float gpt2_forward(gpt2_model_t *m, gpt2_acts_t *a, const int32_t *tokens, const float *x_in,
                   const int32_t *targets) {
  gpt2_impl_t *s = impl_of(m);
  const int B = a->B, T = a->T, C = m->cfg.dim;
  const size_t N = (size_t)B * T, rows = region_rows(N, a->tp, a->sp);
  a->forward_done = 0;
  if (m->range.has_embed ? tokens == NULL : x_in == NULL) {
    strata_error("gpt2_forward: %s is NULL (a shard %s the embedding takes %s)",
                 m->range.has_embed ? "tokens" : "x_in", m->range.has_embed ? "with" : "without",
                 m->range.has_embed ? "tokens (B, T)" : "the residual stream x_in (gpt2_stream_rows, C)");
    return NAN;
  }
  if (acts_usable(m, a, "gpt2_forward")) return NAN;
  bind_head(m, a);
  if (m->range.has_embed) {
    if (!in_vocab("token", tokens, N, m->cfg.vocab)) return NAN;
    memcpy(a->tokens, tokens, sizeof(int32_t) * N);
    if (embed_forward(m, a, tokens)) return NAN;
  } else {
    memcpy(a->x0, x_in, sizeof(float) * rows * C);
  }

  const float *x = a->x0;
  for (int l = 0; l < a->nl; l++) {
    gpt2_layer_acts_t *L = &a->layer[l], work;
    if (a->recompute == GPT2_RECOMPUTE_FULL) { /* compute in the scratch layer, keep the output */
      work = s->rl;
      work.res3 = L->res3;
      L = &work;
    }
    if (layer_forward(m, l, L, x, B, T, a->sp)) return NAN;
    x = L->res3;
  }

  float loss = 0.0f;
  if (m->range.has_head && (head_logits(m, a, x) || head_loss(m, a, targets, &loss))) return NAN;
  a->forward_done = 1;
  return loss;
}

/* ---------------------------------------------------------------------------------------- */
/* backward */

static void report(gpt2_model_t *m, size_t offset, size_t count) {
  if (m->grad_ready && count) m->grad_ready(m->grad_ready_ctx, offset, count);
}

static size_t layer_offset(const gpt2_model_t *m, int local) {
  char nm[64];
  snprintf(nm, sizeof nm, "h.%d.ln_1.weight", m->range.layer_begin + local);
  return gpt2_find_tensor(m, nm)->offset;
}

/* Backward of the head: dres (rows, C) = d(loss)/d(x_last); ln_f's and wte's gradients
 * accumulate. tp = 1 forms softmax - onehot over the whole vocabulary; tp > 1 over the local
 * slice, and f_backward sums the partial d(ln_f out) of the TP ranks. */
static int head_backward(gpt2_model_t *m, gpt2_acts_t *a, const float *x_last, float loss_scale) {
  gpt2_impl_t *s = impl_of(m);
  const int C = m->cfg.dim, Vl = s->Vl, nv = s->vvalid;
  const size_t N = (size_t)a->B * a->T, rows = region_rows(N, a->tp, a->sp);
  const float dscale = loss_scale / (float)N;
  for (size_t i = 0; i < N; i++) { /* dlogits = (softmax - onehot) * loss_scale / N, in place */
    float *lg = a->logits + i * Vl;
    nn_exp_shift_sum(lg, nv, a->lse[i]);
    nn_scale_by(lg, nv, dscale);
    int tl = a->targets[i] - s->voff;
    if (tl >= 0 && tl < nv) lg[tl] -= dscale;
  }
  if (nv > 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, C, nv, 1.0f, a->logits, Vl, m->wte, C, 0.0f,
                s->dln, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nv, C, (int)N, 1.0f, a->logits, Vl, a->lnf, C, 1.0f,
                m->g_wte, C);
  } else {
    memset(s->dln, 0, sizeof(float) * N * C);
  }
  float *dln = f_backward(m, s->dln, N, a->sp);
  if (!dln) return -1;
  memset(s->dres, 0, sizeof(float) * rows * C);
  if (!a->sp) {
    nn_layernorm_backward(s->dres, m->g_lnf_w, m->g_lnf_b, dln, x_last, m->lnf_w, a->lnf_mean, a->lnf_rstd, N, C);
    return 0;
  }
  float *g = s->lngrad, *dst[2] = {m->g_lnf_w, m->g_lnf_b};
  memset(g, 0, sizeof(float) * 2 * C);
  nn_layernorm_backward(s->dres, g, g + C, dln, x_last, m->lnf_w, a->lnf_mean, a->lnf_rstd, rows, C);
  return sp_ln_grads(m, g, dst, 2, C);
}

/* Backward of one layer: s->dres (rows, C) holds d(loss)/d(output) and becomes d(loss)/d(x);
 * the layer's parameter gradients accumulate. x is the layer's input, L its activations. */
static int layer_backward(gpt2_model_t *m, int l, const gpt2_layer_acts_t *L, const float *x, int B, int T,
                          int sp) {
  gpt2_impl_t *s = impl_of(m);
  const gpt2_layer_t *P = &m->layer[l];
  gpt2_layer_t *G = &m->g_layer[l];
  const int C = m->cfg.dim, Cl = s->Cl;
  const size_t N = (size_t)B * T, rows = region_rows(N, s->tp, sp);
  float *dres = s->dres, *g = s->lngrad;
  float *g_ln1_w = G->ln1_w, *g_ln1_b = G->ln1_b, *g_ln2_w = G->ln2_w, *g_ln2_b = G->ln2_b;
  if (sp) { /* LayerNorm gradients of this rank's rows, summed over TP at the end */
    memset(g, 0, sizeof(float) * 4 * C);
    g_ln1_w = g, g_ln1_b = g + C, g_ln2_w = g + 2 * C, g_ln2_b = g + 3 * C;
  }
  const float *dfull = dres, *ln;
  /* MLP */
  if (sp) {
    if (gather_rows(m, dres, s->part, rows, C)) return -1;
    dfull = s->part;
  }
  nn_matmul_backward(s->dbig, G->fc_proj_w, G->fc_proj_b, dfull, L->fch_gelu, P->fc_proj_w, N, 4 * Cl, C);
  nn_gelu_backward(s->dbig, L->fch, N * 4 * Cl);
  ln = L->ln2;
  if (sp) {
    if (gather_rows(m, L->ln2, s->lnfull, rows, C)) return -1;
    ln = s->lnfull;
  }
  nn_matmul_backward(s->dln, G->fc_w, G->fc_b, s->dbig, ln, P->fc_w, N, C, 4 * Cl);
  float *dln = f_backward(m, s->dln, N, sp);
  if (!dln) return -1;
  nn_layernorm_backward(dres, g_ln2_w, g_ln2_b, dln, L->res2, P->ln2_w, L->ln2_mean, L->ln2_rstd, rows, C);
  /* attention */
  if (sp) {
    if (gather_rows(m, dres, s->part, rows, C)) return -1;
    dfull = s->part;
  }
  nn_matmul_backward(s->datty, G->attn_proj_w, G->attn_proj_b, dfull, L->atty, P->attn_proj_w, N, Cl, C);
  nn_attention_backward(s->dbig, s->datt, s->patt, s->datty, L->qkv, L->att, B, T, Cl, s->Hl, s->attn_block);
  ln = L->ln1;
  if (sp) {
    if (gather_rows(m, L->ln1, s->lnfull, rows, C)) return -1;
    ln = s->lnfull;
  }
  nn_matmul_backward(s->dln, G->attn_w, G->attn_b, s->dbig, ln, P->attn_w, N, C, 3 * Cl);
  if (!(dln = f_backward(m, s->dln, N, sp))) return -1;
  nn_layernorm_backward(dres, g_ln1_w, g_ln1_b, dln, x, P->ln1_w, L->ln1_mean, L->ln1_rstd, rows, C);
  if (!sp) return 0;
  float *dst[4] = {G->ln1_w, G->ln1_b, G->ln2_w, G->ln2_b};
  return sp_ln_grads(m, g, dst, 4, C);
}

/* Backward of the embedding: wpe and this rank's wte rows take d(loss)/d(x0) (all-gathered to
 * every row first with sequence parallelism). */
static int embed_backward(gpt2_model_t *m, gpt2_acts_t *a) {
  gpt2_impl_t *s = impl_of(m);
  const int T = a->T, C = m->cfg.dim;
  const size_t N = (size_t)a->B * T;
  const float *d = s->dres;
  if (a->sp) {
    if (gather_rows(m, s->dres, s->part, region_rows(N, s->tp, 1), C)) return -1;
    d = s->part;
  }
  for (size_t r = 0; r < N; r++) {
    nn_add_to(m->g_wpe + (r % (size_t)T) * C, d + r * C, C);
    int local = a->tokens[r] - s->voff;
    if (local >= 0 && local < s->vvalid) nn_add_to(m->g_wte + (size_t)local * C, d + r * C, C);
  }
  return 0;
}

int gpt2_backward(gpt2_model_t *m, gpt2_acts_t *a, const float *dx_out, float loss_scale, float *dx_in) {
  gpt2_impl_t *s = impl_of(m);
  const int B = a->B, T = a->T, C = m->cfg.dim;
  const size_t N = (size_t)B * T, rows = region_rows(N, a->tp, a->sp);
  if (!a->forward_done) {
    strata_error("gpt2_backward: no forward pass to differentiate (call gpt2_forward first; "
                 "each forward allows one backward)");
    return -1;
  }
  if (m->range.has_head && !a->have_targets) {
    strata_error("gpt2_backward: the forward pass of the head shard had no targets");
    return -1;
  }
  if (!m->range.has_head && !dx_out) {
    strata_error("gpt2_backward: dx_out is NULL (a shard without the head needs the gradient of "
                 "its output, (gpt2_stream_rows, C))");
    return -1;
  }
  if (acts_usable(m, a, "gpt2_backward")) return -1;
  a->forward_done = 0;
  const float *x_last = gpt2_output(a);

  if (m->range.has_head) {
    bind_head(m, a);
    if (a->recompute == GPT2_RECOMPUTE_FULL && head_logits(m, a, x_last)) return -1; /* lse is kept */
    if (head_backward(m, a, x_last, loss_scale)) return -1;
    report(m, gpt2_find_tensor(m, "ln_f.weight")->offset, 2 * (size_t)C);
  } else {
    memcpy(s->dres, dx_out, sizeof(float) * rows * C);
  }

  for (int l = a->nl - 1; l >= 0; l--) {
    const float *x = l > 0 ? a->layer[l - 1].res3 : a->x0;
    const gpt2_layer_acts_t *L = &a->layer[l];
    if (a->recompute == GPT2_RECOMPUTE_FULL) { /* re-run the layer from its kept input */
      if (layer_forward(m, l, &s->rl, x, B, T, a->sp)) return -1;
      L = &s->rl;
    }
    if (layer_backward(m, l, L, x, B, T, a->sp)) return -1;
    report(m, layer_offset(m, l), s->layer_numel);
  }

  if (m->range.has_embed) {
    if (embed_backward(m, a)) return -1;
    const gpt2_tensor_t *wpe = gpt2_find_tensor(m, "wpe.weight");
    report(m, wpe->offset, wpe->numel);
  } else if (dx_in) {
    memcpy(dx_in, s->dres, sizeof(float) * rows * C);
  }
  const gpt2_tensor_t *wte = gpt2_find_tensor(m, "wte.weight");
  if (wte) report(m, wte->offset, wte->numel);
  return 0;
}

/* ---------------------------------------------------------------------------------------- */

double gpt2_train_flops(const gpt2_model_t *m, int B, int T) {
  const gpt2_impl_t *s = impl_of(m);
  double C = m->cfg.dim, tokens = (double)B * T, tp = s->tp;
  int nl = m->range.layer_end - m->range.layer_begin;
  double matmul_params = nl * 12.0 * C * C / tp + (m->range.has_head ? (double)s->vvalid * C : 0.0);
  /* attention: Q K^T and P V, 2 * 2 * T * C FLOPs per token per layer forward, x3 with backward */
  double attn = nl * 12.0 * C * (double)T * tokens / tp;
  return 6.0 * matmul_params * tokens + attn;
}

double gpt2_recompute_flops(const gpt2_model_t *m, int B, int T) {
  const gpt2_impl_t *s = impl_of(m);
  double C = m->cfg.dim, tokens = (double)B * T, tp = s->tp;
  int nl = m->range.layer_end - m->range.layer_begin;
  double qk = nl * 2.0 * C * (double)T * tokens / tp; /* Q K^T of every layer, once */
  switch (s->recompute) {
  case GPT2_RECOMPUTE_SELECTIVE: return qk;
  case GPT2_RECOMPUTE_FULL: /* the layers' forward (matmuls + attention) and the logits, plus Q K^T */
    return nl * (24.0 * C * C + 4.0 * C * (double)T) * tokens / tp + qk +
           (m->range.has_head ? 2.0 * C * s->vvalid * tokens : 0.0);
  case GPT2_RECOMPUTE_NONE: break;
  }
  return 0.0;
}
