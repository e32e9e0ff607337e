/* gpt2_kv.c -- the GPT-2 shard's forward with a KV cache, for generation (see gpt2_forward_kv in
 * gpt2.h): the new rows of several sequences go through the matrix products together, attention
 * runs per sequence against its cache. Tensor-parallel ranks keep their own heads' keys and
 * values and end with their vocabulary slice of the logits; the row-parallel products are
 * all-reduced as in training (no sequence parallelism: a step has few rows). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "buffer.h"
#include "gemm.h"
#include "gpt2.h"
#include "gpt2_impl.h"
#include "nn.h"
#include "util.h"

/* x (N, C) += bias + sum over the TP group of inp (N, K) @ w (K, C); part (N, C) scratch. At
 * tp = 1 one accumulating product. */
static int kv_row_parallel(gpt2_model_t *m, float *x, const float *inp, const float *w, const float *bias,
                           size_t N, int K, float *part) {
  gpt2_impl_t *s = m->impl;
  const int C = m->cfg.dim;
  if (s->tp == 1) {
    nn_matmul_forward(x, inp, w, bias, N, K, C, 1, s->mm);
    return 0;
  }
  gemm_mm(s->mm, 0, 0, (int)N, C, K, 1.0f, inp, K, w, C, 0.0f, part, C);
  if (gpt2_coll_check(m, coll_allreduce(part, part, N * C, COLL_F32, COLL_SUM, s->comm), "all-reduce")) return -1;
  for (size_t r = 0; r < N; r++)
    for (int i = 0; i < C; i++) x[r * C + i] = x[r * C + i] + bias[i] + part[r * C + i];
  return 0;
}

/* x (N, C) = wte[token] + wpe[position] of the new rows; tp > 1: zeros for other ranks' tokens,
 * summed over the TP group before wpe is added. */
static int kv_embed(gpt2_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens, float *x,
                    size_t N, char *err, size_t errlen) {
  gpt2_impl_t *s = m->impl;
  const int C = m->cfg.dim, V = m->cfg.vocab;
  for (size_t r = 0; r < N; r++)
    if (tokens[r] < 0 || tokens[r] >= V)
      return strata_fail(err, errlen, "gpt2_forward_kv: token %d is outside the vocabulary [0, %d)", tokens[r], V);
  if (s->tp > 1) {
    gpt2_vocab_lookup(m, tokens, N, x);
    if (gpt2_coll_check(m, coll_allreduce(x, x, N * C, COLL_F32, COLL_SUM, s->comm), "all-reduce"))
      return strata_fail(err, errlen, "gpt2_forward_kv: the tensor-parallel all-reduce of the embedding failed");
  }
  size_t r = 0;
  for (int q = 0; q < nseq; q++)
    for (int t = 0; t < seqs[q].n_new; t++, r++) {
      const float *pe = m->wpe + (size_t)(seqs[q].pos0 + t) * C;
      float *xr = x + r * C;
      if (s->tp > 1) {
        nn_add_to(xr, pe, C);
      } else {
        const float *we = m->wte + (size_t)tokens[r] * C;
        for (int i = 0; i < C; i++) xr[i] = we[i] + pe[i];
      }
    }
  return 0;
}

/* Whether sq names a cache (fp32 or bf16, both arrays). */
static int has_cache(const gpt2_kv_seq_t *sq) { return (sq->k && sq->v) || (sq->k16 && sq->v16); }

int gpt2_kv_check_seqs(const char *who, const gpt2_kv_seq_t *seqs, int nseq, int nl, int ctx, size_t *N,
                       size_t *max_scores, char *err, size_t errlen) {
  size_t rows = 0, ms = 0;
  for (int q = 0; q < nseq; q++) {
    const gpt2_kv_seq_t *sq = &seqs[q];
    if (sq->n_new < 1 || sq->pos0 < 0 || sq->pos0 + sq->n_new > sq->cap || sq->pos0 + sq->n_new > ctx ||
        (nl > 0 && !has_cache(sq)))
      return strata_fail(err, errlen,
                         "%s: sequence %d: positions [%d, %d) do not fit the cache (%d positions) "
                         "or the model's context (%d)",
                         who, q, sq->pos0, sq->pos0 + sq->n_new, sq->cap, ctx);
    rows += (size_t)sq->n_new;
    size_t sc = (size_t)sq->n_new * (size_t)(sq->pos0 + sq->n_new);
    if (sc > ms) ms = sc;
  }
  *N = rows;
  *max_scores = ms;
  return 0;
}

void gpt2_kv_append(const gpt2_kv_seq_t *sq, int l, int W, const float *k_new, const float *v_new, size_t ld_new,
                    float *wide, const float **kc, const float **vc) {
  const size_t layer = (size_t)l * sq->cap * W, n = (size_t)(sq->pos0 + sq->n_new) * W;
  if (!sq->k16) {
    float *k = sq->k + layer, *v = sq->v + layer;
    for (int t = 0; t < sq->n_new; t++) {
      memcpy(k + (size_t)(sq->pos0 + t) * W, k_new + t * ld_new, sizeof(float) * W);
      memcpy(v + (size_t)(sq->pos0 + t) * W, v_new + t * ld_new, sizeof(float) * W);
    }
    *kc = k;
    *vc = v;
    return;
  }
  uint16_t *k = sq->k16 + layer, *v = sq->v16 + layer;
  for (int t = 0; t < sq->n_new; t++)
    for (int i = 0; i < W; i++) {
      k[(size_t)(sq->pos0 + t) * W + i] = bf16_bits_rne(k_new[t * ld_new + i]);
      v[(size_t)(sq->pos0 + t) * W + i] = bf16_bits_rne(v_new[t * ld_new + i]);
    }
  for (size_t i = 0; i < n; i++) {
    wide[i] = bf16_to_f32(k[i]);
    wide[n + i] = bf16_to_f32(v[i]);
  }
  *kc = wide;
  *vc = wide + n;
}

size_t gpt2_kv_wide_floats(const gpt2_kv_seq_t *seqs, int nseq, int W) {
  size_t most = 0;
  for (int q = 0; q < nseq; q++) {
    size_t f = seqs[q].k16 ? 2 * (size_t)(seqs[q].pos0 + seqs[q].n_new) * W : 0;
    if (f > most) most = f;
  }
  return most;
}

int gpt2_forward_kv(gpt2_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens,
                    const float *x_in, float *out, int last_only, char *err, size_t errlen) {
  gpt2_impl_t *s = m->impl;
  const int C = m->cfg.dim, Cl = s->Cl, Hl = s->Hl, Vl = s->Vl, nv = s->vvalid;
  const int nl = m->range.layer_end - m->range.layer_begin;
  size_t N = 0, max_scores = 0;
  int rc = -1;
  float *mem = NULL;
  if (nseq < 1 || !out || (m->range.has_embed ? !tokens : !x_in))
    return strata_fail(err, errlen, "gpt2_forward_kv: no sequences, or a NULL %s / out",
                       m->range.has_embed ? "tokens" : "x_in");
  if (s->tp > 1 && !s->comm)
    return strata_fail(err, errlen, "gpt2_forward_kv: a shard of tensor-parallel size %d has no communicator: "
                       "call gpt2_set_tp first", s->tp);
  if (gpt2_kv_check_seqs("gpt2_forward_kv", seqs, nseq, nl, m->cfg.ctx, &N, &max_scores, err, errlen)) return -1;
  /* scratch: x (N,C), ln (N,C), qkv (N,3Cl), atty (N,Cl), fch (N,4Cl), scores, at tp > 1 the
   * partial sums of a row-parallel product (N,C), and a bf16 cache's widened rows */
  const size_t nwide = gpt2_kv_wide_floats(seqs, nseq, Cl);
  size_t floats = N * (2 * (size_t)C + 8 * (size_t)Cl) + max_scores + (s->tp > 1 ? N * C : 0) + nwide;
  mem = buffer_alloc(sizeof(float) * floats, 0);
  if (!mem) return strata_fail(err, errlen, "gpt2_forward_kv: out of memory (%zu rows)", N);
  float *x = mem, *ln = x + N * C, *qkv = ln + N * C, *atty = qkv + N * 3 * Cl, *fch = atty + N * Cl;
  float *sc = fch + N * 4 * Cl, *part = s->tp > 1 ? sc + max_scores : NULL;
  float *wide = sc + max_scores + (s->tp > 1 ? N * C : 0);
  float *mean = qkv, *rstd = qkv + N; /* LayerNorm statistics are not needed: reuse qkv space */
  float *mean2 = fch, *rstd2 = fch + N;

  if (m->range.has_embed) {
    if (kv_embed(m, seqs, nseq, tokens, x, N, err, errlen)) goto out;
  } else {
    memcpy(x, x_in, sizeof(float) * N * C);
  }

  for (int l = 0; l < nl; l++) {
    const gpt2_layer_t *P = &m->layer[l];
    nn_layernorm_forward(ln, mean, rstd, x, P->ln1_w, P->ln1_b, N, C);
    nn_matmul_forward(qkv, ln, P->attn_w, P->attn_b, N, C, 3 * Cl, 0, s->mm);
    size_t r = 0;
    for (int q = 0; q < nseq; q++) {
      const gpt2_kv_seq_t *sq = &seqs[q];
      const float *kc, *vc;
      gpt2_kv_append(sq, l, Cl, qkv + r * 3 * Cl + Cl, qkv + r * 3 * Cl + 2 * Cl, 3 * (size_t)Cl, wide, &kc, &vc);
      nn_attention_kv(atty + r * Cl, sc, qkv + r * 3 * Cl, kc, vc, sq->n_new, sq->pos0, Cl, Hl, s->mm);
      r += (size_t)sq->n_new;
    }
    if (kv_row_parallel(m, x, atty, P->attn_proj_w, P->attn_proj_b, N, Cl, part)) goto coll_fail;
    nn_layernorm_forward(ln, mean2, rstd2, x, P->ln2_w, P->ln2_b, N, C);
    nn_matmul_forward(fch, ln, P->fc_w, P->fc_b, N, C, 4 * Cl, 0, s->mm);
    nn_gelu_forward(fch, fch, N * 4 * Cl);
    if (kv_row_parallel(m, x, fch, P->fc_proj_w, P->fc_proj_b, N, 4 * Cl, part)) goto coll_fail;
  }

  if (m->range.has_head) {
    /* the rows whose logits are wanted, gathered into sel (atty has room for them at tp = 1) */
    float *sel = s->tp > 1 ? part : atty;
    size_t rows = 0, r = 0;
    for (int q = 0; q < nseq; q++) {
      if (last_only) {
        memcpy(sel + rows * C, x + (r + seqs[q].n_new - 1) * C, sizeof(float) * C);
        rows++;
      } else {
        memcpy(sel + rows * C, x + r * C, sizeof(float) * C * seqs[q].n_new);
        rows += (size_t)seqs[q].n_new;
      }
      r += (size_t)seqs[q].n_new;
    }
    nn_layernorm_forward(ln, mean, rstd, sel, m->lnf_w, m->lnf_b, rows, C);
    if (nv > 0)
      gemm_mm(s->mm, 0, 1, (int)rows, nv, C, 1.0f, ln, C, m->wte, C, 0.0f, out,
                  Vl);
    for (size_t i = 0; i < rows; i++)
      for (int j = nv; j < Vl; j++) out[i * Vl + j] = -INFINITY;
  } else {
    memcpy(out, x, sizeof(float) * N * C);
  }
  rc = 0;
  goto out;
coll_fail:
  strata_fail(err, errlen, "gpt2_forward_kv: a tensor-parallel all-reduce failed (logged)");
out:
  free(mem);
  return rc;
}

double gpt2_forward_kv_flops(const gpt2_model_t *m, int n_new, int pos0) {
  const gpt2_impl_t *s = m->impl;
  double C = m->cfg.dim, tp = s->tp;
  int nl = m->range.layer_end - m->range.layer_begin;
  double mm = nl * 12.0 * C * C * 2.0 * n_new / tp;
  double attn = nl * 4.0 * C * (double)n_new * (pos0 + n_new) / tp;
  double head = m->range.has_head ? 2.0 * C * s->vvalid : 0.0;
  return mm + attn + head;
}
