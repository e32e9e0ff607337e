/* gpt2_pass.c -- the training forward and backward of one GPT-2 shard on one tensor-parallel
 * rank (see gpt2.h): Megatron's f / g collectives, sequence parallelism, vocabulary-parallel
 * cross-entropy and activation recomputation.
 *
 * The structure follows llm.c's train_gpt2.c: every operation is a plain function pair
 * *_forward / *_backward over flat (rows, width) float arrays (nn.h); all matrix products go
 * through gemm_f32 (gemm.h) on Hugging Face Conv1D [in, out] weights; attention runs one sgemm per
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
 * Activations of one micro-batch live in a gpt2_acts_t; the gradients of activations, TP
 * partial sums and what FULL recomputation re-runs (needed only during one call) live in scratch
 * owned by the model (both laid out by gpt2_acts.c).
 */
#include "gpt2.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "gpt2_impl.h"
#include "log.h"
#include "nn.h"
#include "util.h"

/* ---------------------------------------------------------------------------------------- */
/* tensor-parallel steps (each is the plain tp = 1 operation when tp = 1) */

/* f forward with sequence parallelism: full (N, C) = this TP group's `rows`-row blocks of
 * local, in rank order. */
static int gather_rows(gpt2_model_t *m, const float *local, float *full, size_t rows, int C) {
  gpt2_impl_t *s = gpt2_impl_of(m);
  return gpt2_coll_check(m, coll_allgather(local, full, rows * C, COLL_F32, s->comm), "all-gather");
}

/* out (rows, C) = res + bias + sum over the TP group of inp (N, K) @ w (K, C): a row-parallel
 * product followed by g (all-reduce; reduce-scatter to this rank's rows with sequence
 * parallelism), the replicated bias added once after it. At tp = 1: out = res + bias + inp @ w
 * as one accumulating product. out and res are distinct. */
static int row_parallel_forward(gpt2_model_t *m, float *out, const float *res, const float *inp, const float *w,
                                const float *bias, size_t N, int K, int sp) {
  gpt2_impl_t *s = gpt2_impl_of(m);
  const int C = m->cfg.dim;
  if (s->tp == 1) {
    memcpy(out, res, sizeof(float) * N * C);
    nn_matmul_forward(out, inp, w, bias, N, K, C, 1, s->mm);
    return 0;
  }
  gemm_mm(s->mm, 0, 0, (int)N, C, K, 1.0f, inp, K, w, C, 0.0f, s->part, C);
  size_t rows = gpt2_region_rows(N, s->tp, sp);
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
  gpt2_impl_t *s = gpt2_impl_of(m);
  const int C = m->cfg.dim;
  if (s->tp == 1) return buf;
  size_t rows = gpt2_region_rows(N, s->tp, sp);
  float *mine = buf + (sp ? (size_t)s->t * rows * C : 0);
  coll_result_t rc = sp ? coll_reduce_scatter(buf, mine, rows * C, COLL_F32, COLL_SUM, s->comm)
                        : coll_allreduce(buf, buf, N * C, COLL_F32, COLL_SUM, s->comm);
  return gpt2_coll_check(m, rc, sp ? "reduce-scatter" : "all-reduce") ? NULL : mine;
}

/* With sequence parallelism: sums this backward's LayerNorm gradients g (n floats, computed from
 * this rank's rows) over the TP group and adds them to dst[k] (count[k] floats each, in g's
 * order). */
static int sp_ln_grads(gpt2_model_t *m, float *g, float **dst, int k, int C) {
  gpt2_impl_t *s = gpt2_impl_of(m);
  if (gpt2_coll_check(m, coll_allreduce(g, g, (size_t)k * C, COLL_F32, COLL_SUM, s->comm), "all-reduce"))
    return -1;
  for (int i = 0; i < k; i++) nn_add_to(dst[i], g + (size_t)i * C, C);
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* forward */

void gpt2_vocab_lookup(const gpt2_model_t *m, const int32_t *tokens, size_t N, float *out) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  const int C = m->cfg.dim;
  for (size_t r = 0; r < N; r++) {
    int local = tokens[r] - s->voff;
    if (local >= 0 && local < s->vvalid)
      memcpy(out + r * C, m->wte + (size_t)local * C, sizeof(float) * C);
    else
      memset(out + r * C, 0, sizeof(float) * C);
  }
}

/* x0 = wte[token] + wpe[position]. Vocabulary-parallel: rows of other ranks look up zeros, the
 * lookups are summed over the TP group (reduce-scattered with SP), then wpe is added. */
static int embed_forward(gpt2_model_t *m, gpt2_acts_t *a, const int32_t *tokens) {
  gpt2_impl_t *s = gpt2_impl_of(m);
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
  gpt2_vocab_lookup(m, tokens, N, look);
  size_t rows = gpt2_region_rows(N, s->tp, a->sp), first = a->sp ? (size_t)s->t * rows : 0;
  coll_result_t rc = a->sp ? coll_reduce_scatter(look, a->x0, rows * C, COLL_F32, COLL_SUM, s->comm)
                           : coll_allreduce(look, look, N * C, COLL_F32, COLL_SUM, s->comm);
  if (gpt2_coll_check(m, rc, a->sp ? "reduce-scatter" : "all-reduce")) return -1;
  for (size_t r = 0; r < rows; r++) nn_add_to(a->x0 + r * C, m->wpe + ((first + r) % (size_t)T) * C, C);
  return 0;
}

/* One transformer layer forward: x (rows, C) -> L's activations, L->res3 (rows, C) the output.
 * Used by the forward and by FULL recomputation in the backward (same code, same bits). */
static int layer_forward(gpt2_model_t *m, int l, gpt2_layer_acts_t *L, const float *x, int B, int T, int sp) {
  gpt2_impl_t *s = gpt2_impl_of(m);
  const gpt2_layer_t *P = &m->layer[l];
  const int C = m->cfg.dim, Cl = s->Cl;
  const size_t N = (size_t)B * T, rows = gpt2_region_rows(N, s->tp, sp);
  nn_layernorm_forward(L->ln1, L->ln1_mean, L->ln1_rstd, x, P->ln1_w, P->ln1_b, rows, C);
  const float *ln = L->ln1;
  if (sp) {
    if (gather_rows(m, L->ln1, s->lnfull, rows, C)) return -1;
    ln = s->lnfull;
  }
  nn_matmul_forward(L->qkv, ln, P->attn_w, P->attn_b, N, C, 3 * Cl, 0, s->mm);
  nn_attention_forward(L->atty, L->att, s->patt, L->qkv, B, T, Cl, s->Hl, s->attn_block, s->mm);
  if (row_parallel_forward(m, L->res2, x, L->atty, P->attn_proj_w, P->attn_proj_b, N, Cl, sp)) return -1;
  nn_layernorm_forward(L->ln2, L->ln2_mean, L->ln2_rstd, L->res2, P->ln2_w, P->ln2_b, rows, C);
  ln = L->ln2;
  if (sp) {
    if (gather_rows(m, L->ln2, s->lnfull, rows, C)) return -1;
    ln = s->lnfull;
  }
  nn_matmul_forward(L->fch, ln, P->fc_w, P->fc_b, N, C, 4 * Cl, 0, s->mm);
  nn_gelu_forward(L->fch_gelu, L->fch, N * 4 * Cl);
  return row_parallel_forward(m, L->res3, L->res2, L->fch_gelu, P->fc_proj_w, P->fc_proj_b, N, 4 * Cl, sp);
}

/* ln_f of the shard's output x (rows, C) into a->lnf (N, C: every row, all-gathered with
 * sequence parallelism; mean and 1/std of this rank's rows) and this rank's logits (N, Vl): the
 * columns of its vocabulary slice (all V at tp = 1), padding columns -INFINITY. Used by the
 * forward and by FULL recomputation in the backward (same code, same bits). */
static int head_logits(gpt2_model_t *m, gpt2_acts_t *a, const float *x) {
  gpt2_impl_t *s = gpt2_impl_of(m);
  const int C = m->cfg.dim, Vl = s->Vl, nv = s->vvalid;
  const size_t N = (size_t)a->B * a->T, rows = gpt2_region_rows(N, s->tp, a->sp);
  if (a->sp) {
    float *mine = a->lnf + (size_t)s->t * rows * C;
    nn_layernorm_forward(mine, a->lnf_mean, a->lnf_rstd, x, m->lnf_w, m->lnf_b, rows, C);
    if (gather_rows(m, mine, a->lnf, rows, C)) return -1; /* in place: own block at offset t */
  } else {
    nn_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, x, m->lnf_w, m->lnf_b, N, C);
  }
  if (nv > 0)
    gemm_mm(s->mm, 0, 1, (int)N, nv, C, 1.0f, a->lnf, C, m->wte, C, 0.0f,
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
  gpt2_impl_t *s = gpt2_impl_of(m);
  const int Vl = s->Vl, nv = s->vvalid;
  const size_t N = (size_t)a->B * a->T;
  a->have_targets = targets != NULL;
  if (!targets) return 0;
  if (!nn_ids_in_vocab("gpt2_forward", "target", targets, N, m->cfg.vocab)) return -1;
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
  gpt2_impl_t *s = gpt2_impl_of(m);
  const int B = a->B, T = a->T, C = m->cfg.dim;
  const size_t N = (size_t)B * T, rows = gpt2_region_rows(N, a->tp, a->sp);
  a->forward_done = 0;
  if (m->range.has_embed ? tokens == NULL : x_in == NULL) {
    strata_error("gpt2_forward: %s is NULL (a shard %s the embedding takes %s)",
                 m->range.has_embed ? "tokens" : "x_in", m->range.has_embed ? "with" : "without",
                 m->range.has_embed ? "tokens (B, T)" : "the residual stream x_in (gpt2_stream_rows, C)");
    return NAN;
  }
  if (gpt2_acts_usable(m, a, "gpt2_forward")) return NAN;
  gpt2_acts_bind_head(m, a);
  if (m->range.has_embed) {
    if (!nn_ids_in_vocab("gpt2_forward", "token", tokens, N, m->cfg.vocab)) return NAN;
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
  gpt2_impl_t *s = gpt2_impl_of(m);
  const int C = m->cfg.dim, Vl = s->Vl, nv = s->vvalid;
  const size_t N = (size_t)a->B * a->T, rows = gpt2_region_rows(N, a->tp, a->sp);
  const float dscale = loss_scale / (float)N;
  for (size_t i = 0; i < N; i++) { /* dlogits = (softmax - onehot) * loss_scale / N, in place */
    float *lg = a->logits + i * Vl;
    nn_exp_shift_sum(lg, nv, a->lse[i]);
    nn_scale_by(lg, nv, dscale);
    int tl = a->targets[i] - s->voff;
    if (tl >= 0 && tl < nv) lg[tl] -= dscale;
  }
  if (nv > 0) {
    gemm_mm(s->mm, 0, 0, (int)N, C, nv, 1.0f, a->logits, Vl, m->wte, C, 0.0f,
                s->dln, C);
    gemm_mm(s->mm, 1, 0, nv, C, (int)N, 1.0f, a->logits, Vl, a->lnf, C, 1.0f,
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
  gpt2_impl_t *s = gpt2_impl_of(m);
  const gpt2_layer_t *P = &m->layer[l];
  gpt2_layer_t *G = &m->g_layer[l];
  const int C = m->cfg.dim, Cl = s->Cl;
  const size_t N = (size_t)B * T, rows = gpt2_region_rows(N, s->tp, sp);
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
  nn_matmul_backward(s->dbig, G->fc_proj_w, G->fc_proj_b, dfull, L->fch_gelu, P->fc_proj_w, N, 4 * Cl, C, s->mm);
  nn_gelu_backward(s->dbig, L->fch, N * 4 * Cl);
  ln = L->ln2;
  if (sp) {
    if (gather_rows(m, L->ln2, s->lnfull, rows, C)) return -1;
    ln = s->lnfull;
  }
  nn_matmul_backward(s->dln, G->fc_w, G->fc_b, s->dbig, ln, P->fc_w, N, C, 4 * Cl, s->mm);
  float *dln = f_backward(m, s->dln, N, sp);
  if (!dln) return -1;
  nn_layernorm_backward(dres, g_ln2_w, g_ln2_b, dln, L->res2, P->ln2_w, L->ln2_mean, L->ln2_rstd, rows, C);
  /* attention */
  if (sp) {
    if (gather_rows(m, dres, s->part, rows, C)) return -1;
    dfull = s->part;
  }
  nn_matmul_backward(s->datty, G->attn_proj_w, G->attn_proj_b, dfull, L->atty, P->attn_proj_w, N, Cl, C, s->mm);
  nn_attention_backward(s->dbig, s->datt, s->patt, s->datty, L->qkv, L->att, B, T, Cl, s->Hl, s->attn_block, s->mm);
  ln = L->ln1;
  if (sp) {
    if (gather_rows(m, L->ln1, s->lnfull, rows, C)) return -1;
    ln = s->lnfull;
  }
  nn_matmul_backward(s->dln, G->attn_w, G->attn_b, s->dbig, ln, P->attn_w, N, C, 3 * Cl, s->mm);
  if (!(dln = f_backward(m, s->dln, N, sp))) return -1;
  nn_layernorm_backward(dres, g_ln1_w, g_ln1_b, dln, x, P->ln1_w, L->ln1_mean, L->ln1_rstd, rows, C);
  if (!sp) return 0;
  float *dst[4] = {G->ln1_w, G->ln1_b, G->ln2_w, G->ln2_b};
  return sp_ln_grads(m, g, dst, 4, C);
}

/* Backward of the embedding: wpe and this rank's wte rows take d(loss)/d(x0) (all-gathered to
 * every row first with sequence parallelism). */
static int embed_backward(gpt2_model_t *m, gpt2_acts_t *a) {
  gpt2_impl_t *s = gpt2_impl_of(m);
  const int T = a->T, C = m->cfg.dim;
  const size_t N = (size_t)a->B * T;
  const float *d = s->dres;
  if (a->sp) {
    if (gather_rows(m, s->dres, s->part, gpt2_region_rows(N, s->tp, 1), C)) return -1;
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
  gpt2_impl_t *s = gpt2_impl_of(m);
  const int B = a->B, T = a->T, C = m->cfg.dim;
  const size_t N = (size_t)B * T, rows = gpt2_region_rows(N, a->tp, a->sp);
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
  if (gpt2_acts_usable(m, a, "gpt2_backward")) return -1;
  a->forward_done = 0;
  const float *x_last = gpt2_output(a);

  if (m->range.has_head) {
    gpt2_acts_bind_head(m, a);
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

