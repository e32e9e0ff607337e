/* llama_kv.c -- the Llama forward with a KV cache, for generation (see llama_forward_kv in
 * llama.h): the new rows of several sequences go through the matrix products together, then
 * each sequence's new queries and keys are rotated at their absolute positions, its new keys
 * and values appended to its cache (kv_heads wide: grouped-query attention caches only the kv
 * heads) and its attention run against the cache. A tensor-parallel rank runs its own query
 * and kv heads (its cache holds its kv heads), its SwiGLU columns and its vocabulary slice;
 * the embedding and the o_proj / down_proj partial sums are all-reduced as in training. The
 * layer kernels, TP collectives included, are llama.c's (llama_impl.h), so this pass computes
 * what llama_forward computes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "gemm.h"
#include "llama.h"
#include "llama_impl.h"
#include "nn.h"
#include "util.h"

int llama_kv_dim(const llama_model_t *m) {
  llama_tp_part_t p;
  llama_tp_part(m, &p);
  return p.Ckv;
}

/* out (N, nout) = inp (N, nin) @ w^T for w (nout, nin) [out, in]; beta 1 adds to out. In the
 * model's matrix-product precision (llama_set_matmul_dtype), as training runs it. */
static void linear(const llama_model_t *m, float *out, const float *inp, const float *w, size_t N, int nin,
                   int nout, float beta) {
  gemm_mm(llama_get_matmul_dtype(m), 0, 1, (int)N, nout, nin, 1.0f, inp, nin, w, nin, beta, out, nout);
}

/* Scratch of one call, carved from one allocation (local widths of a TP rank: Cq, Ckv, Fl). */
typedef struct {
  float *x;     /* (N, C) residual stream */
  float *n;     /* (N, C) RMSNorm output; a row-parallel product's partial sum once it is used */
  float *rstd;  /* (N) its 1/rms (unused) */
  float *q;     /* (N, Cq) queries, rotated */
  float *k, *v; /* (N, Ckv) new keys (rotated) and values */
  float *atty;  /* (N, C) attention output (Cq wide); the head's selected rows (C wide) */
  float *gate;  /* (N, Fl) gate_proj, then silu(gate) * up */
  float *up;    /* (N, Fl) up_proj */
  float *sc;    /* (max_scores) one head's attention scores */
  float *wide;  /* a bf16 cache's rows widened for attention (gpt2_kv_wide_floats) */
  float *mem;
} kv_scratch_t;

static int scratch_alloc(kv_scratch_t *s, size_t N, int C, const llama_tp_part_t *p, size_t max_scores,
                         size_t nwide) {
  const size_t floats =
      N * (3 * (size_t)C + (size_t)p->Cq + 2 * (size_t)p->Ckv + 2 * (size_t)p->Fl + 1) + max_scores + nwide;
  s->mem = buffer_alloc(sizeof(float) * floats, 0);
  if (!s->mem) return -1;
  s->x = s->mem;
  s->n = s->x + N * C;
  s->atty = s->n + N * C;
  s->q = s->atty + N * C;
  s->k = s->q + N * p->Cq;
  s->v = s->k + N * p->Ckv;
  s->gate = s->v + N * p->Ckv;
  s->up = s->gate + N * p->Fl;
  s->rstd = s->up + N * p->Fl;
  s->sc = s->rstd + N;
  s->wide = s->sc + max_scores;
  return 0;
}

/* One decoder layer (local index l) over the N rows in s->x, appending to every cache. The
 * partial sums of o_proj and down_proj use s->n, free once q/k/v and gate/up are computed.
 * 0, or -1 when a TP all-reduce fails (logged). */
static int layer_kv(llama_model_t *m, const llama_tp_part_t *p, int l, const gpt2_kv_seq_t *seqs, int nseq,
                    kv_scratch_t *s, size_t N) {
  const llama_layer_t *P = &m->layer[l];
  const int C = m->cfg.dim, H = p->Hl, KVH = p->KVl, F = p->Fl, hs = p->hs, Cq = p->Cq, Ckv = p->Ckv;
  const float eps = (float)m->cfg.rms_norm_eps;
  llama_rmsnorm(s->n, s->rstd, s->x, P->attn_norm, N, C, eps);
  linear(m, s->q, s->n, P->wq, N, C, Cq, 0.0f);
  linear(m, s->k, s->n, P->wk, N, C, Ckv, 0.0f);
  linear(m, s->v, s->n, P->wv, N, C, Ckv, 0.0f);
  size_t r = 0;
  for (int q = 0; q < nseq; q++) {
    const gpt2_kv_seq_t *sq = &seqs[q];
    for (int t = 0; t < sq->n_new; t++) {
      const int pos = sq->pos0 + t;
      llama_rope_at(m, s->q + (r + t) * Cq, H, pos);
      llama_rope_at(m, s->k + (r + t) * Ckv, KVH, pos);
    }
    const float *kc, *vc;
    gpt2_kv_append(sq, l, Ckv, s->k + r * Ckv, s->v + r * Ckv, (size_t)Ckv, s->wide, &kc, &vc);
    nn_attention_kv_grouped(s->atty + r * Cq, s->sc, s->q + r * Cq, Cq, kc, vc, Ckv, sq->n_new, sq->pos0, H, KVH,
                            hs, llama_get_matmul_dtype(m));
    r += (size_t)sq->n_new;
  }
  if (llama_row_parallel(m, s->x, s->x, s->atty, P->wo, N, Cq, s->n)) return -1;
  llama_rmsnorm(s->n, s->rstd, s->x, P->mlp_norm, N, C, eps);
  linear(m, s->gate, s->n, P->w_gate, N, C, F, 0.0f);
  linear(m, s->up, s->n, P->w_up, N, C, F, 0.0f);
  llama_swiglu(s->gate, s->gate, s->up, N * F);
  return llama_row_parallel(m, s->x, s->x, s->gate, P->w_down, N, F, s->n);
}

/* The head: the wanted rows of s->x (every row, or each sequence's last) through model.norm
 * and lm_head into out (rows, Vl): this rank's vocabulary slice, padding columns -INFINITY. */
static void head_kv(llama_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, kv_scratch_t *s, int last_only,
                    float *out) {
  const int C = m->cfg.dim;
  size_t rows = 0, r = 0;
  for (int q = 0; q < nseq; q++) {
    const size_t take = last_only ? 1 : (size_t)seqs[q].n_new;
    memcpy(s->atty + rows * C, s->x + (r + seqs[q].n_new - take) * C, sizeof(float) * C * take);
    rows += take;
    r += (size_t)seqs[q].n_new;
  }
  llama_rmsnorm(s->n, s->rstd, s->atty, m->norm, rows, C, (float)m->cfg.rms_norm_eps);
  llama_head_logits(m, out, s->n, rows);
}

int llama_forward_kv(llama_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens,
                     const float *x_in, float *out, int last_only, char *err, size_t errlen) {
  const int C = m->cfg.dim, V = m->cfg.vocab;
  const int nl = m->range.layer_end - m->range.layer_begin;
  size_t N = 0, max_scores = 0;
  llama_tp_part_t p;
  llama_tp_part(m, &p);
  if (nseq < 1 || !seqs || !out || (m->range.has_embed ? !tokens : !x_in))
    return strata_fail(err, errlen, "llama_forward_kv: no sequences, or a NULL %s / out",
                       m->range.has_embed ? "tokens" : "x_in");
  if (p.tp > 1 && !p.has_comm)
    return strata_fail(err, errlen, "llama_forward_kv: a model of tensor-parallel size %d has no communicator: "
                       "call llama_set_tp first", p.tp);
  if (gpt2_kv_check_seqs("llama_forward_kv", seqs, nseq, nl, m->cfg.ctx, &N, &max_scores, err, errlen)) return -1;
  if (m->range.has_embed)
    for (size_t r = 0; r < N; r++)
      if (tokens[r] < 0 || tokens[r] >= V)
        return strata_fail(err, errlen, "llama_forward_kv: token %d is outside the vocabulary [0, %d)", tokens[r], V);
  kv_scratch_t s;
  if (scratch_alloc(&s, N, C, &p, max_scores, gpt2_kv_wide_floats(seqs, nseq, p.Ckv)))
    return strata_fail(err, errlen, "llama_forward_kv: out of memory (%zu rows)", N);
  int rc = -1;
  if (m->range.has_embed) {
    if (llama_embed(m, tokens, N, s.x)) goto coll_fail;
  } else {
    memcpy(s.x, x_in, sizeof(float) * N * C);
  }
  for (int l = 0; l < nl; l++)
    if (layer_kv(m, &p, l, seqs, nseq, &s, N)) goto coll_fail;
  if (m->range.has_head) head_kv(m, seqs, nseq, &s, last_only, out);
  else memcpy(out, s.x, sizeof(float) * N * C);
  rc = 0;
  goto out;
coll_fail:
  strata_fail(err, errlen, "llama_forward_kv: a tensor-parallel all-reduce failed (logged)");
out:
  free(s.mem);
  return rc;
}

double llama_forward_kv_flops(const llama_model_t *m, int n_new, int pos0) {
  llama_tp_part_t p;
  llama_tp_part(m, &p);
  const double C = m->cfg.dim, Cq = p.Cq, Ckv = p.Ckv, F = p.Fl;
  const int nl = m->range.layer_end - m->range.layer_begin;
  double mm = nl * 2.0 * n_new * (2.0 * Cq * C + 2.0 * Ckv * C + 3.0 * F * C);
  double attn = nl * 4.0 * Cq * (double)n_new * (pos0 + n_new); /* Q K^T and P V */
  double head = m->range.has_head ? 2.0 * C * p.vvalid : 0.0;  /* the last position's logits */
  return mm + attn + head;
}
