/* infer_llama_kv_tp: Llama generation with tensor parallelism (llama_forward_kv on a model of
 * range.tp_size = tp = np, run at np 2): the logits of a tensor-parallel model, all-gathered
 * over the TP group and ordered by llama_logits_assemble, equal those of the whole (tp = 1)
 * model's llama_forward_kv on every rank, through a prefill of three sequences together (every
 * row's logits) and decode steps of one or three tokens (each sequence's last row), within
 * 1e-5 of the largest logit (the row-parallel products sum tp partial products: another float
 * summation order). Grouped-query attention, 4 heads and 2 kv heads: each rank holds 2 query
 * heads, 1 kv head, and caches only that head (llama_kv_dim is the local width); vocabulary 300
 * padded to 256 * tp rows, so the last rank's padding columns must be -INFINITY. The model is
 * one stage, then two pipeline stages chained on each rank (the residual stream between them
 * whole, and identical on every TP rank). A model without its communicator is refused. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_cache.h"
#include "llama.h"
#include "model/llama_tp_util.h"
#include "rng.h"
#include "strata/coll.h"
#include "test_util.h"

#define TOL_REL 1e-5
#define NSEQ 3
#define SEED 11

static coll_comm_t *comm;
static int tp, rank;
static const llama_config_t cfg = {.vocab = 300, .ctx = 24, .layers = 2, .heads = 4, .kv_heads = 2, .dim = 32,
                                   .ffn = 64, .rms_norm_eps = 1e-5, .rope_theta = 1e4};

/* Layers [lb, le) of TP rank t of n, with init's weights scaled up (as test_llama_kv_forward:
 * logits that vary by several units, so a wrong head or position shows). */
static llama_model_t *make(int lb, int le, int t, int n, coll_comm_t *c) {
  llama_model_t *m = llama_tp_test_model(&cfg, lb, le, t, n, c, SEED, 4.0f);
  if (!m) MPI_Abort(MPI_COMM_WORLD, 1);
  return m;
}

/* A chain of stages with a cache per stage per sequence. */
typedef struct {
  int n;
  llama_model_t *st[2];
  kv_cache_t *c[2][NSEQ];
} chain_t;

static void chain_make(chain_t *ch, int nstage, int t, int n, coll_comm_t *c) {
  char err[256];
  const int split[3] = {0, nstage == 1 ? cfg.layers : 1, cfg.layers};
  ch->n = nstage;
  for (int s = 0; s < nstage; s++) {
    ch->st[s] = make(split[s], split[s + 1], t, n, c);
    for (int q = 0; q < NSEQ; q++)
      if (kv_cache_create(split[s + 1] - split[s], llama_kv_dim(ch->st[s]), cfg.ctx, &ch->c[s][q], err, sizeof err))
        test_fail(__FILE__, __LINE__, "%s", err);
  }
}

static void chain_free(chain_t *ch) {
  for (int s = 0; s < ch->n; s++) {
    for (int q = 0; q < NSEQ; q++) kv_cache_free(ch->c[s][q]);
    llama_free(ch->st[s]);
  }
}

/* One call through the chain: sequences idx[0..nseq) take n_new[i] tokens each (in, rows in
 * order); logits (rows, local vocabulary) into out. The stream between stages is checked to be
 * identical on every TP rank. */
static void chain_forward(chain_t *ch, const int *idx, const int *n_new, int nseq, const int32_t *in, float *out,
                          int last_only) {
  char err[256];
  int N = 0;
  for (int i = 0; i < nseq; i++) N += n_new[i];
  float *x = malloc(sizeof(float) * N * cfg.dim);
  for (int s = 0; s < ch->n; s++) {
    gpt2_kv_seq_t seqs[NSEQ];
    for (int i = 0; i < nseq; i++) seqs[i] = kv_cache_seq(ch->c[s][idx[i]], n_new[i]);
    const int head = s == ch->n - 1;
    int rc = llama_forward_kv(ch->st[s], seqs, nseq, s == 0 ? in : NULL, s == 0 ? NULL : x, head ? out : x,
                              last_only, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) printf("llama_forward_kv: %s\n", err);
    for (int i = 0; i < nseq; i++) kv_cache_advance(ch->c[s][idx[i]], n_new[i]);
    if (!head && tp > 1) { /* whole on every TP rank: rank 0's copy equals this one's */
      float *x0 = malloc(sizeof(float) * N * cfg.dim);
      memcpy(x0, x, sizeof(float) * N * cfg.dim);
      CHECK_EQ_INT(coll_broadcast(x0, (size_t)N * cfg.dim, COLL_F32, 0, comm), COLL_OK);
      CHECK_TRUE(memcmp(x0, x, sizeof(float) * N * cfg.dim) == 0);
      free(x0);
    }
  }
  free(x);
}

/* max |a - b| over n, relative to max |ref|; a NaN anywhere counts as infinite */
static double rel_diff(const float *a, const float *ref, size_t n) {
  double worst = 0, big = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - ref[i]);
    if (isnan(d)) return INFINITY;
    if (d > worst) worst = d;
    if (fabs(ref[i]) > big) big = fabs(ref[i]);
  }
  return worst / (big > 0 ? big : 1);
}

/* Gathers every rank's (rows, Vl) logits and compares the assembled (rows, V) with ref; the
 * padding columns of this rank must be -INFINITY. Returns the relative difference. */
static double compare(const llama_model_t *m, const float *local, const float *ref, int rows) {
  const int V = cfg.vocab, Vl = llama_local_vocab(m), valid = V - rank * Vl;
  for (int r = 0; r < rows; r++)
    for (int j = valid < 0 ? 0 : valid; j < Vl; j++)
      if (local[(size_t)r * Vl + j] != -INFINITY) {
        test_fail(__FILE__, __LINE__, "rank %d: padding column %d of row %d is %g, not -inf", rank, j, r,
                  local[(size_t)r * Vl + j]);
        return INFINITY;
      }
  float *all = malloc(sizeof(float) * rows * Vl * tp), *full = malloc(sizeof(float) * rows * V);
  CHECK_EQ_INT(coll_allgather(local, all, (size_t)rows * Vl, COLL_F32, comm), COLL_OK);
  llama_logits_assemble(m, all, (size_t)rows, full);
  double d = rel_diff(full, ref, (size_t)rows * V);
  free(all);
  free(full);
  return d;
}

static void check_layout(int nstage) {
  const int V = cfg.vocab, len[NSEQ] = {9, 17, cfg.ctx}, prompt[NSEQ] = {3, 8, 1};
  chain_t ref, par;
  chain_make(&ref, 1, 0, 1, NULL);
  chain_make(&par, nstage, rank, tp, comm);
  const int hs = cfg.dim / cfg.heads;
  CHECK_EQ_INT(llama_kv_dim(par.st[0]), cfg.kv_heads / tp * hs);
  CHECK_EQ_INT(llama_local_vocab(par.st[nstage - 1]), gpt2_padded_vocab(cfg.vocab, tp) / tp);
  int32_t tok[NSEQ][64], in[NSEQ * 64];
  rng_t r;
  rng_seed(&r, 5, 7); /* the same tokens on every rank, over the whole vocabulary */
  for (int q = 0; q < NSEQ; q++)
    for (int i = 0; i < len[q]; i++) tok[q][i] = (int32_t)rng_below(&r, V);
  const int Vl = llama_local_vocab(par.st[nstage - 1]);
  float *out_ref = malloc(sizeof(float) * NSEQ * 64 * V), *out = malloc(sizeof(float) * NSEQ * 64 * Vl);
  int idx[NSEQ], n_new[NSEQ], done[NSEQ] = {0}, n = 0;
  for (int q = 0; q < NSEQ; q++) {
    idx[q] = q;
    n_new[q] = prompt[q];
    memcpy(in + n, tok[q], sizeof(int32_t) * prompt[q]);
    n += prompt[q];
    done[q] = prompt[q];
  }
  chain_forward(&ref, idx, n_new, NSEQ, in, out_ref, 0);
  chain_forward(&par, idx, n_new, NSEQ, in, out, 0);
  double worst = compare(par.st[nstage - 1], out, out_ref, n);
  int calls = 1;
  /* decode: every unfinished sequence advances each call, sequence 1 three tokens at a time */
  for (;;) {
    int nseq = 0;
    n = 0;
    for (int q = 0; q < NSEQ; q++) {
      int left = len[q] - done[q];
      if (left <= 0) continue;
      idx[nseq] = q;
      n_new[nseq] = q == 1 && left >= 3 ? 3 : 1;
      memcpy(in + n, tok[q] + done[q], sizeof(int32_t) * n_new[nseq]);
      n += n_new[nseq];
      done[q] += n_new[nseq++];
    }
    if (nseq == 0) break;
    chain_forward(&ref, idx, n_new, nseq, in, out_ref, 1);
    chain_forward(&par, idx, n_new, nseq, in, out, 1);
    worst = fmax(worst, compare(par.st[nstage - 1], out, out_ref, nseq));
    calls++;
  }
  if (rank == 0)
    printf("tp %d, %d stage(s): max |logit diff| / max |logit| over %d calls = %.3g\n", tp, nstage, calls, worst);
  CHECK_NEAR(worst, 0.0, TOL_REL);
  for (int q = 0; q < NSEQ; q++) CHECK_EQ_INT(par.c[nstage - 1][q]->n_pos, len[q]);
  free(out_ref);
  free(out);
  chain_free(&ref);
  chain_free(&par);
}

/* A tensor-parallel model without its communicator is refused before anything runs. */
static void check_no_comm(void) {
  char err[256] = "";
  llama_model_t *m = NULL;
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){0, cfg.layers, 1, 1, rank, tp}, &m, err, sizeof err), 0);
  kv_cache_t *c = NULL;
  CHECK_EQ_INT(kv_cache_create(cfg.layers, llama_kv_dim(m), cfg.ctx, &c, err, sizeof err), 0);
  gpt2_kv_seq_t s = kv_cache_seq(c, 1);
  int32_t t = 1;
  float *out = malloc(sizeof(float) * llama_local_vocab(m));
  CHECK_EQ_INT(llama_forward_kv(m, &s, 1, &t, NULL, out, 1, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "llama_set_tp") != NULL);
  free(out);
  kv_cache_free(c);
  llama_free(m);
}

int main(int argc, char **argv) {
  comm = llama_tp_test_begin(&argc, &argv);
  tp = coll_size(comm);
  rank = coll_rank(comm);
  check_layout(1);
  check_layout(2);
  if (tp > 1) check_no_comm();
  return llama_tp_test_end(comm, "infer_llama_kv_tp");
}
