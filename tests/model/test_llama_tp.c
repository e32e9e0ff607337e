/* test_llama_tp.c -- Llama tensor parallelism over every rank of the job (tp = np; run at np 2):
 * the same weights split tp ways (llama_create_range with tp_rank / tp_size, llama_set_tp)
 * compute what the whole model computes on one rank.
 *  - a tiny Llama (2 layers, dim 32, 4 heads, 2 kv heads: each rank holds whole kv groups,
 *    ffn 64, vocabulary 300: padded to 256 * tp rows, so the last rank holds padding rows): the
 *    loss within 1e-5 relative, each rank's logits columns equal to the whole model's, the
 *    padding columns -INFINITY, and every parameter and gradient, assembled from the ranks' parts
 *    with gpt2_tensor_unslice, within 1e-5 of the whole model's (float summation order differs:
 *    the row-parallel products sum tp partial products); replicated tensors (the RMSNorm
 *    weights) bit-identical on every rank; with one stage and with the layers split into two
 *    pipeline stages chained on one rank (the residual stream and its gradient passed between
 *    them, whole on every TP rank);
 *  - the catalogue's split kinds: q/k/v and gate/up ROWS, o_proj and down_proj COLS,
 *    embed_tokens and lm_head VOCAB_ROWS, the norms NONE (replicated); the parameters a rank
 *    holds equal the layout's count for it (layout_rank_params, what the simulator and the
 *    memory plan use), whole and as two stages;
 *  - bad input: a tp that does not divide kv_heads (the message names kv_heads), a missing
 *    communicator (forward NaN, generation refused naming llama_set_tp), a communicator of another
 *    rank. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "llama.h"
#include "model/llama_tp_util.h"
#include "strata/coll.h"
#include "test_util.h"

#define TOL_LOSS_REL 1e-5
#define TOL_GRAD 1e-5
#define SEED 77
#define B 2
#define T 12

static coll_comm_t *comm;
static int tp, rank;
static const llama_config_t cfg = {.vocab = 300, .ctx = 16, .layers = 2, .heads = 4, .kv_heads = 2, .dim = 32,
                                   .ffn = 64, .rms_norm_eps = 1e-5, .rope_theta = 1e4};
static int32_t tokens[B * T], targets[B * T];

static llama_model_t *make(int lb, int le, int t, int n, coll_comm_t *c) {
  return llama_tp_test_model(&cfg, lb, le, t, n, c, SEED, 1.0f);
}

/* Forward + backward through a chain of stages of one rank (the first has the embedding, the
 * last the head); returns the loss. logits (B*T rows of the head's local vocabulary) if given. */
static float step(llama_model_t **st, int n, float *logits) {
  char err[256];
  llama_acts_t *a[2] = {0};
  float loss = NAN, *dx = malloc(sizeof(float) * B * T * cfg.dim);
  for (int s = 0; s < n; s++) {
    if (llama_acts_create(st[s], B, T, &a[s], err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
    llama_zero_grad(st[s]);
  }
  for (int s = 0; s < n; s++)
    loss = llama_stage_forward(st[s], a[s], tokens, s ? llama_output(a[s - 1]) : NULL, targets);
  if (logits) {
    const int ts = st[n - 1]->range.tp_size, Vl = gpt2_padded_vocab(cfg.vocab, ts) / ts;
    memcpy(logits, llama_logits(a[n - 1]), sizeof(float) * B * T * Vl);
  }
  for (int s = n - 1; s >= 0; s--)
    CHECK_EQ_INT(llama_stage_backward(st[s], a[s], s < n - 1 ? dx : NULL, 1.0f, s ? dx : NULL), 0);
  for (int s = 0; s < n; s++) llama_acts_free(a[s]);
  free(dx);
  return loss;
}

/* Checks tensor t of a stage (params and grads) against the whole model ref. */
static void check_tensor(const gpt2_tensor_t *t, const llama_model_t *m, const llama_model_t *ref) {
  const gpt2_tensor_t *rt = llama_find_tensor(ref, t->name);
  CHECK_TRUE(rt != NULL);
  if (!rt) return;
  CHECK_TRUE(t->full_numel == rt->numel);
  const float *src[2] = {m->params, m->grads}, *rsrc[2] = {ref->params, ref->grads};
  for (int g = 0; g < 2; g++) {
    float *parts = malloc(sizeof(float) * t->numel * tp), *full = calloc(t->full_numel, sizeof(float));
    CHECK_EQ_INT(coll_allgather(src[g] + t->offset, parts, t->numel, COLL_F32, comm), COLL_OK);
    for (int q = 0; q < tp; q++) {
      CHECK_EQ_INT(gpt2_tensor_unslice(t, q, parts + (size_t)q * t->numel, full), 0);
      if (t->replicated && memcmp(parts, parts + (size_t)q * t->numel, sizeof(float) * t->numel) != 0)
        test_fail(__FILE__, __LINE__, "replicated %s differs between TP ranks 0 and %d", t->name, q);
    }
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < t->full_numel; i++) {
      double d = fabs((double)full[i] - rsrc[g][rt->offset + i]);
      if (d > worst) worst = d, at = i;
    }
    test_checks++;
    if (worst > (g ? TOL_GRAD : 0.0))
      test_fail(__FILE__, __LINE__, "%s of %s: element %zu differs by %g from the whole model's", g ? "gradient" : "weight",
                t->name, at, worst);
    free(parts);
    free(full);
  }
}

static void check_layout(llama_model_t *ref, float ref_loss, const float *ref_logits, int nstage) {
  llama_model_t *st[2] = {0};
  for (int s = 0; s < nstage; s++) {
    int lb = nstage == 1 ? 0 : s, le = nstage == 1 ? cfg.layers : s + 1;
    if (!(st[s] = make(lb, le, rank, tp, comm))) return;
  }
  const int Vl = gpt2_padded_vocab(cfg.vocab, tp) / tp, v0 = rank * Vl;
  float *logits = malloc(sizeof(float) * B * T * Vl);
  float loss = step(st, nstage, logits);
  if (rank == 0) printf("tp %d stages %d: loss %.7f (whole model %.7f)\n", tp, nstage, loss, ref_loss);
  CHECK_NEAR(loss, ref_loss, TOL_LOSS_REL * fabs(ref_loss));
  double worst = 0;
  int pad_ok = 1;
  for (int i = 0; i < B * T; i++)
    for (int j = 0; j < Vl; j++) {
      float v = logits[(size_t)i * Vl + j];
      if (v0 + j >= cfg.vocab)
        pad_ok &= v == -INFINITY;
      else if (fabs(v - ref_logits[(size_t)i * cfg.vocab + v0 + j]) > worst)
        worst = fabs(v - ref_logits[(size_t)i * cfg.vocab + v0 + j]);
    }
  CHECK_TRUE(pad_ok);
  CHECK_TRUE(worst <= 1e-5); /* logits of O(1): 1e-5 covers the partial-sum order */
  for (int s = 0; s < nstage; s++)
    for (int i = 0; i < st[s]->num_tensors; i++) check_tensor(&st[s]->tensors[i], st[s], ref);
  free(logits);
  for (int s = 0; s < nstage; s++) llama_free(st[s]);
}

static void check_splits(void) {
  llama_model_t *m = make(0, cfg.layers, rank, tp, comm);
  if (!m) return;
  const struct {
    const char *name;
    gpt2_split_t split;
  } want[] = {{"model.embed_tokens.weight", GPT2_SPLIT_VOCAB_ROWS},
              {"model.layers.1.input_layernorm.weight", GPT2_SPLIT_NONE},
              {"model.layers.1.self_attn.q_proj.weight", GPT2_SPLIT_ROWS},
              {"model.layers.1.self_attn.k_proj.weight", GPT2_SPLIT_ROWS},
              {"model.layers.1.self_attn.v_proj.weight", GPT2_SPLIT_ROWS},
              {"model.layers.1.self_attn.o_proj.weight", GPT2_SPLIT_COLS},
              {"model.layers.1.post_attention_layernorm.weight", GPT2_SPLIT_NONE},
              {"model.layers.1.mlp.gate_proj.weight", GPT2_SPLIT_ROWS},
              {"model.layers.1.mlp.up_proj.weight", GPT2_SPLIT_ROWS},
              {"model.layers.1.mlp.down_proj.weight", GPT2_SPLIT_COLS},
              {"model.norm.weight", GPT2_SPLIT_NONE},
              {"lm_head.weight", GPT2_SPLIT_VOCAB_ROWS}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const gpt2_tensor_t *t = llama_find_tensor(m, want[i].name);
    CHECK_TRUE(t != NULL);
    if (!t) continue;
    CHECK_EQ_INT(t->split, want[i].split);
    CHECK_EQ_INT(t->replicated, want[i].split == GPT2_SPLIT_NONE);
  }
  char err[256];
  for (int pp = 1; pp <= 2; pp++) { /* the layout's per-rank count of each stage */
    layout_t lay;
    layout_model_t lm = {cfg.vocab, cfg.ctx, cfg.layers, cfg.heads, cfg.dim, LAYOUT_ARCH_LLAMA, cfg.kv_heads, cfg.ffn};
    CHECK_EQ_INT(layout_init(&lay, &lm, tp * pp, tp, pp, 1, 1, 2, NULL, err, sizeof err), 0);
    for (int s = 0; s < pp; s++) {
      llama_model_t *st = make(lay.layer_begin[s], lay.layer_begin[s + 1], rank, tp, comm);
      if (!st) continue;
      CHECK_EQ_INT((int)layout_rank_params(&lay, s), (int)st->num_params);
      llama_free(st);
    }
  }
  const gpt2_tensor_t *k = llama_find_tensor(m, "model.layers.0.self_attn.k_proj.weight");
  CHECK_EQ_INT((int)k->shape[0], cfg.kv_heads * (cfg.dim / cfg.heads) / tp);
  CHECK_EQ_INT((int)k->full_shape[0], cfg.kv_heads * (cfg.dim / cfg.heads));
  llama_free(m);
}

static void check_bad_input(void) {
  char err[256] = "";
  llama_model_t *m = NULL;
  llama_config_t c = cfg;
  c.heads = 8; /* tp 4 divides the heads but not the 2 kv heads */
  c.dim = 64;
  CHECK_EQ_INT(llama_create_range(&c, (llama_range_t){0, 2, 1, 1, 0, 4}, &m, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "kv_heads = 2") != NULL);
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){0, 2, 1, 1, 2, 2}, &m, err, sizeof err), -1);
  /* no communicator: the first collective fails, the forward gives NaN */
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){0, 2, 1, 1, rank, tp}, &m, err, sizeof err), 0);
  llama_init_params(m, SEED);
  CHECK_EQ_INT(llama_set_tp(m, NULL, err, sizeof err), -1);
  llama_acts_t *a = NULL;
  CHECK_EQ_INT(llama_acts_create(m, B, T, &a, err, sizeof err), 0);
  CHECK_TRUE(isnan(llama_forward(m, a, tokens, targets)));
  gpt2_kv_seq_t seq = {.n_new = 1, .pos0 = 0, .cap = 4};
  float out[1];
  CHECK_EQ_INT(llama_forward_kv(m, &seq, 1, tokens, NULL, out, 0, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "llama_set_tp") != NULL);
  llama_acts_free(a);
  llama_free(m);
  /* a communicator whose rank is not the model's */
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){0, 2, 1, 1, (rank + 1) % tp, tp}, &m, err, sizeof err), 0);
  CHECK_EQ_INT(llama_set_tp(m, comm, err, sizeof err), -1);
  llama_free(m);
}

int main(int argc, char **argv) {
  comm = llama_tp_test_begin(&argc, &argv);
  tp = coll_size(comm);
  rank = coll_rank(comm);
  for (int i = 0; i < B * T; i++) { /* ids over the whole vocabulary, so every rank owns some */
    tokens[i] = (int32_t)((i * 97 + 13) % cfg.vocab);
    targets[i] = (int32_t)((i * 61 + 29) % cfg.vocab);
  }
  llama_model_t *ref = make(0, cfg.layers, 0, 1, NULL);
  if (!ref) MPI_Abort(MPI_COMM_WORLD, 1);
  float *ref_logits = malloc(sizeof(float) * B * T * cfg.vocab);
  float ref_loss = step(&ref, 1, ref_logits);
  CHECK_TRUE(isfinite(ref_loss));
  for (int nstage = 1; nstage <= 2; nstage++) check_layout(ref, ref_loss, ref_logits, nstage);
  check_splits();
  check_bad_input();
  free(ref_logits);
  llama_free(ref);
  return llama_tp_test_end(comm, "test_llama_tp");
}
