/* layout.c -- the T x P x D layout: model presets and cost figures, validation, balanced or
 * explicit stage -> layers assignment, the rank map (see layout.h for the contract). */
#include "layout.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *layout_arch_name(layout_arch_t a) {
  return a == LAYOUT_ARCH_GPT ? "gpt" : a == LAYOUT_ARCH_LLAMA ? "llama" : "?";
}

int layout_parse_arch(const char *s, layout_arch_t *out) {
  if (s && !strcmp(s, "gpt")) return *out = LAYOUT_ARCH_GPT, 0;
  if (s && !strcmp(s, "llama")) return *out = LAYOUT_ARCH_LLAMA, 0;
  return -1;
}

int layout_parse_tie(const char *s, layout_tie_t *out) {
  if (s && !strcmp(s, "yes")) return *out = LAYOUT_TIE_TIED, 0;
  if (s && !strcmp(s, "no")) return *out = LAYOUT_TIE_UNTIED, 0;
  return -1;
}

int layout_model_kv_heads(const layout_model_t *m) { return m->kv_heads > 0 ? m->kv_heads : m->heads; }
int layout_model_ffn(const layout_model_t *m) { return m->ffn > 0 ? m->ffn : 4 * m->dim; }
int layout_model_tied(const layout_model_t *m) {
  return m->tie == LAYOUT_TIE_ARCH ? m->arch == LAYOUT_ARCH_GPT : m->tie == LAYOUT_TIE_TIED;
}

/* Shapes as published: GPT-2 (Radford et al. 2019 and its released checkpoints), GPT-3 (Brown
 * et al. 2020, Table 2.1; heads chosen so that the head dimension is 128 where the paper's
 * d_model / n_heads is not whole, as Megatron-LM's GPT-3 configurations do), Llama 2 (Touvron
 * et al. 2023 and the released config.json files), Llama 3 (Meta's released config.json). */
static const struct {
  const char *name;
  layout_model_t m;
} presets[] = {
    {"gpt2", {50257, 1024, 12, 12, 768, 0, 0, 0, 0}},
    {"gpt2-medium", {50257, 1024, 24, 16, 1024, 0, 0, 0, 0}},
    {"gpt2-large", {50257, 1024, 36, 20, 1280, 0, 0, 0, 0}},
    {"gpt2-xl", {50257, 1024, 48, 25, 1600, 0, 0, 0, 0}},
    {"gpt3-1.3b", {50257, 2048, 24, 16, 2048, 0, 0, 0, 0}},
    {"gpt3-6.7b", {50257, 2048, 32, 32, 4096, 0, 0, 0, 0}},
    {"gpt3-13b", {50257, 2048, 40, 40, 5120, 0, 0, 0, 0}},
    {"gpt3-175b", {50257, 2048, 96, 96, 12288, 0, 0, 0, 0}},
    {"llama2-7b", {32000, 4096, 32, 32, 4096, LAYOUT_ARCH_LLAMA, 32, 11008, 0}},
    {"llama2-13b", {32000, 4096, 40, 40, 5120, LAYOUT_ARCH_LLAMA, 40, 13824, 0}},
    {"llama2-70b", {32000, 4096, 80, 64, 8192, LAYOUT_ARCH_LLAMA, 8, 28672, 0}},
    {"llama3-8b", {128256, 8192, 32, 32, 4096, LAYOUT_ARCH_LLAMA, 8, 14336, 0}},
    {"llama3-70b", {128256, 8192, 80, 64, 8192, LAYOUT_ARCH_LLAMA, 8, 28672, 0}},
    {"7b", {50257, 2048, 32, 32, 4096, 0, 0, 0, 0}},
};
const char *const layout_model_preset_names[] = {
    "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-1.3b", "gpt3-6.7b", "gpt3-13b",
    "gpt3-175b", "llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "llama3-70b", "7b", NULL};

int layout_model_preset(const char *name, layout_model_t *out) {
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
    if (name && !strcmp(name, presets[i].name)) {
      *out = presets[i].m;
      return 0;
    }
  return -1;
}

int layout_model_validate(const layout_model_t *m, char *err, size_t errlen) {
  if (m->vocab < 1) return strata_fail(err, errlen, "model: vocab must be >= 1 (got %d)", m->vocab);
  if (m->ctx < 1) return strata_fail(err, errlen, "model: ctx must be >= 1 (got %d)", m->ctx);
  if (m->layers < 1) return strata_fail(err, errlen, "model: layers must be >= 1 (got %d)", m->layers);
  if (m->heads < 1) return strata_fail(err, errlen, "model: heads must be >= 1 (got %d)", m->heads);
  if (m->dim < 1) return strata_fail(err, errlen, "model: dim must be >= 1 (got %d)", m->dim);
  if (m->dim % m->heads)
    return strata_fail(err, errlen, "model: dim %d is not divisible by heads %d (choose dim = k * heads)",
                       m->dim, m->heads);
  if (m->arch != LAYOUT_ARCH_GPT && m->arch != LAYOUT_ARCH_LLAMA)
    return strata_fail(err, errlen, "model: arch must be gpt or llama");
  if (m->tie < LAYOUT_TIE_ARCH || m->tie > LAYOUT_TIE_UNTIED)
    return strata_fail(err, errlen, "model: tie must be the family's, tied or untied");
  if (m->kv_heads < 0 || m->ffn < 0 || m->heads % layout_model_kv_heads(m))
    return strata_fail(err, errlen,
                       "model: kv_heads %d does not divide heads %d (each key/value head serves "
                       "a whole group of query heads); choose a divisor of %d",
                       m->kv_heads, m->heads, m->heads);
  return 0;
}

int64_t layout_params_per_layer(const layout_model_t *m) {
  int64_t C = m->dim, F = layout_model_ffn(m), kv = C / m->heads * layout_model_kv_heads(m);
  if (m->arch == LAYOUT_ARCH_LLAMA) return 2 * C * C + 2 * C * kv + 3 * C * F + 2 * C;
  return 4 * C * C + 2 * C * F + 9 * C + F;
}
int64_t layout_params_embed(const layout_model_t *m) {
  return (int64_t)m->vocab * m->dim + (m->arch == LAYOUT_ARCH_GPT ? (int64_t)m->ctx * m->dim : 0);
}
/* the final norm's weights: LayerNorm 2C (weight and bias), RMSNorm C */
static int64_t head_norm_params(const layout_model_t *m) {
  return (m->arch == LAYOUT_ARCH_LLAMA ? 1 : 2) * (int64_t)m->dim;
}
int64_t layout_params_head(const layout_model_t *m) {
  return head_norm_params(m) + (layout_model_tied(m) ? 0 : (int64_t)m->vocab * m->dim);
}
int64_t layout_params_total(const layout_model_t *m) {
  return layout_params_embed(m) + m->layers * layout_params_per_layer(m) + layout_params_head(m);
}

/* ---- cost model ---- */

static int add_op(layout_op_t *ops, int n, const char *name, double flops, double elems) {
  memset(&ops[n], 0, sizeof ops[n]);
  ops[n].name = name;
  ops[n].flops = flops;
  ops[n].elems = elems;
  return n + 1;
}

/* LayerNorm over N rows of C: mean, variance, normalise, scale and shift ~ 8 flops/element;
 * reads x and the weights, writes y plus mean and rstd. RMSNorm (LLAMA): sum of squares,
 * scale ~ 4 flops/element, one statistic per row, weights only. */
static int add_layernorm(layout_op_t *ops, int n, const char *name, double N, double C) {
  return add_op(ops, n, name, 8 * N * C, 2 * N * C + 2 * N + 2 * C);
}
static int add_rmsnorm(layout_op_t *ops, int n, const char *name, double N, double C) {
  return add_op(ops, n, name, 4 * N * C, 2 * N * C + N + C);
}
static int add_norm(const layout_model_t *m, layout_op_t *ops, int n, const char *name, double N,
                    double C) {
  return m->arch == LAYOUT_ARCH_LLAMA ? add_rmsnorm(ops, n, name, N, C)
                                      : add_layernorm(ops, n, name, N, C);
}
/* The GEMM shape of the matmul just added: (N x out/tp) = (N x in) (in x out/tp) for a
 * column-parallel one, (N x out) = (N x in/tp) (in/tp x out) for a row-parallel one. */
static int gemm(layout_op_t *ops, int n, double m, double nn, double k) {
  ops[n - 1].mm_m = m, ops[n - 1].mm_n = nn, ops[n - 1].mm_k = k, ops[n - 1].mm_count = 1;
  return n;
}
/* Matmul (N, in) x (in, out) + bias split over tp ranks. Column-parallel (W's columns, the bias
 * and the output split): each rank reads all of x and writes 1/tp of y. Row-parallel (W's rows
 * and x's columns split): each rank reads 1/tp of x and writes a full-size partial y (summed by
 * the all-reduce that follows); the bias is added once, after it, on every rank. tp = 1: the
 * plain matmul (reads x, W, b, writes y). bias 0: no bias (LLAMA). */
static int add_matmul_col(layout_op_t *ops, int n, const char *name, double N, double in, double out,
                          double tp, int bias) {
  n = add_op(ops, n, name, 2 * N * in * out / tp,
             N * in + in * out / tp + (bias ? out / tp : 0) + N * out / tp);
  return gemm(ops, n, N, out / tp, in);
}
static int add_matmul_row(layout_op_t *ops, int n, const char *name, double N, double in, double out,
                          double tp, int bias) {
  n = add_op(ops, n, name, 2 * N * in * out / tp, N * in / tp + in * out / tp + (bias ? out : 0) + N * out);
  return gemm(ops, n, N, out, in / tp);
}

int layout_layer_ops_tp(const layout_model_t *m, int B, int T, int tp, int sp, layout_op_t *ops) {
  const int gpt = m->arch != LAYOUT_ARCH_LLAMA;
  double N = (double)B * T, C = m->dim, H = m->heads, Bd = B, Td = T, t = tp;
  /* key/value width; with more ranks than key/value heads each rank holds one head's copy
   * (replicated, as NeuronX Distributed's kv replication does): tp heads in total */
  int kvh = layout_model_kv_heads(m);
  double F = layout_model_ffn(m), kv = C / H * (kvh < tp ? tp : kvh);
  double Nr = sp ? N / t : N; /* rows of the LayerNorm / residual region on one rank */
  double tri = Td * (Td + 1) / 2; /* causal (query, key) pairs per head and sequence */
  int n = 0;
  n = add_norm(m, ops, n, "ln1", Nr, C);
  n = add_matmul_col(ops, n, "qkv", N, C, C + 2 * kv, t, gpt);
  /* rotary positions on q and k: a rotation of each pair, ~3 flops per element, read + write */
  if (!gpt) n = add_op(ops, n, "rope", 3 * N * (C + kv) / t, 2 * N * (C + kv) / t);
  /* QK^T and att@V over the lower triangle: 2 matmuls x 2 flops x (pairs x head dim) x heads,
   * plus scale/max/exp/sum/normalise ~5 flops per score. Unfused, the (B, H, T, T) scores pass
   * through memory four times: written by the QK^T kernel, read and written by the softmax
   * (llm.c's preatt and att), read by att@V. Each tensor-parallel rank holds H / tp whole
   * heads (and kv_heads / tp key/value heads). */
  double scores = 4 * Bd * H * Td * Td / t;
  n = add_op(ops, n, "attention", (4 * Bd * tri * C + 5 * Bd * H * tri) / t,
             (N * C + 2 * N * kv + N * C) / t + scores); /* reads q, k, v; writes y */
  ops[n - 1].mm_m = Td, ops[n - 1].mm_n = Td, ops[n - 1].mm_k = C / H;
  ops[n - 1].mm_count = Bd * H / t, ops[n - 1].scores_elems = scores;
  n = add_matmul_row(ops, n, "attproj", N, C, C, t, gpt);
  n = add_op(ops, n, "residual1", Nr * C, 3 * Nr * C);
  n = add_norm(m, ops, n, "ln2", Nr, C);
  if (gpt) {
    n = add_matmul_col(ops, n, "fc", N, C, F, t, 1);
    /* tanh GELU ~10 flops/element, on the column-parallel fc output (1/tp of it per rank) */
    n = add_op(ops, n, "gelu", 10 * N * F / t, 2 * N * F / t);
    n = add_matmul_row(ops, n, "fcproj", N, F, C, t, 1);
  } else {
    n = add_matmul_col(ops, n, "gate_up", N, C, 2 * F, t, 0);
    /* silu(gate) * up: ~6 flops per output element; reads 2F, writes F per row */
    n = add_op(ops, n, "swiglu", 6 * N * F / t, 3 * N * F / t);
    n = add_matmul_row(ops, n, "down", N, F, C, t, 0);
  }
  n = add_op(ops, n, "residual2", Nr * C, 3 * Nr * C);
  return n;
}

int layout_layer_ops(const layout_model_t *m, int B, int T, layout_op_t *ops) {
  return layout_layer_ops_tp(m, B, T, 1, 0, ops);
}

int layout_embed_ops_tp(const layout_model_t *m, int B, int T, int tp, int sp, layout_op_t *ops) {
  double N = (double)B * T, C = m->dim;
  (void)tp, (void)sp;
  /* out = wte[token] + wpe[t]: reads two rows and the token, writes one row. Vocabulary-parallel
   * (tp > 1): every rank looks all tokens up in its slice of the rows (zeros outside it), the
   * same work on every rank; the all-reduce (sequence parallel: reduce-scatter) follows.
   * LLAMA: wte[token] alone (rotary positions are applied in each layer). */
  if (m->arch == LAYOUT_ARCH_LLAMA) return add_op(ops, 0, "embed", 0, 2 * N * C + N);
  return add_op(ops, 0, "embed", N * C, 3 * N * C + N);
}

int layout_embed_ops(const layout_model_t *m, int B, int T, layout_op_t *ops) {
  return layout_embed_ops_tp(m, B, T, 1, 0, ops);
}

int layout_head_ops_tp(const layout_model_t *m, int B, int T, int tp, int sp, layout_op_t *ops) {
  double N = (double)B * T, C = m->dim, t = tp, V = layout_padded_vocab(m->vocab, tp);
  double Nr = sp ? N / t : N;
  int n = 0;
  n = add_norm(m, ops, n, "lnf", Nr, C);
  /* logits over the rank's 1/tp of the (padded) vocabulary: reads all of ln_f's output */
  n = add_op(ops, n, "logits", 2 * N * C * V / t, N * C + V * C / t + N * V / t);
  n = gemm(ops, n, N, V / t, C);
  /* softmax + cross-entropy: max, exp, sum, normalise, pick ~5 flops per logit; reads logits,
   * writes probs, reads targets and writes losses. Vocabulary-parallel: on the rank's slice. */
  n = add_op(ops, n, "softmax_ce", 5 * N * V / t, 2 * N * V / t + 2 * N);
  return n;
}

int layout_head_ops(const layout_model_t *m, int B, int T, layout_op_t *ops) {
  return layout_head_ops_tp(m, B, T, 1, 0, ops);
}

double layout_ops_flops(const layout_op_t *ops, int n) {
  double f = 0;
  for (int i = 0; i < n; i++) f += ops[i].flops;
  return f;
}

static double layer_flops(const layout_model_t *m, int B) {
  layout_op_t ops[LAYOUT_MAX_OPS];
  int n = layout_layer_ops(m, B, m->ctx, ops);
  return layout_ops_flops(ops, n);
}
static double embed_flops(const layout_model_t *m, int B) {
  layout_op_t ops[LAYOUT_MAX_OPS];
  int n = layout_embed_ops(m, B, m->ctx, ops);
  return layout_ops_flops(ops, n);
}
static double head_flops(const layout_model_t *m, int B) {
  layout_op_t ops[LAYOUT_MAX_OPS];
  int n = layout_head_ops(m, B, m->ctx, ops);
  return layout_ops_flops(ops, n);
}

int layout_for_each(const layout_model_t *m, int world, int batch, int tp_lo, int tp_hi, layout_t *lay,
                    int (*fn)(const layout_t *lay, void *ctx), void *ctx) {
  for (int T = tp_lo < 1 ? 1 : tp_lo; T <= tp_hi && T <= world && T <= m->heads; T++) {
    if (world % T || m->heads % T) continue;
    const int NP = world / T;
    for (int P = 1; P <= NP && P <= m->layers && P <= LAYOUT_MAX_STAGES; P++) {
      if (NP % P || batch % (NP / P)) continue;
      const int D = NP / P, per_replica = batch / D;
      for (int M = 1; M <= per_replica; M++) {
        char err[256];
        if (per_replica % M || layout_init(lay, m, world, T, P, D, M, batch, NULL, err, sizeof err))
          continue;
        int rc = fn(lay, ctx);
        if (rc) return rc;
      }
    }
  }
  return 0;
}

/* ---- stage assignment ---- */

int layout_parse_stage_layers(const char *s, int layers, int pp, int *counts, char *err,
                              size_t errlen) {
  int n = 0, sum = 0;
  const char *p = s;
  if (!s || !*s)
    return strata_fail(err, errlen, "--stage-layers: empty list (give %d counts like 3,3,2)", pp);
  while (*p) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || (*end && *end != ','))
      return strata_fail(err, errlen, "--stage-layers '%s': expected comma-separated integers like 3,3,2",
                         s);
    if (v < 1)
      return strata_fail(err, errlen,
                  "--stage-layers '%s': stage %d has %ld layers; every stage needs at least 1 "
                  "(use fewer stages)",
                  s, n, v);
    if (n >= pp || n >= LAYOUT_MAX_STAGES)
      return strata_fail(err, errlen, "--stage-layers '%s': more than --pp %d counts", s, pp);
    if (v > layers)
      return strata_fail(err, errlen, "--stage-layers '%s': %ld exceeds the model's %d layers", s, v,
                         layers);
    counts[n++] = (int)v;
    sum += (int)v;
    p = *end ? end + 1 : end;
    if (*end == ',' && !*p) return strata_fail(err, errlen, "--stage-layers '%s': trailing comma", s);
  }
  if (n != pp)
    return strata_fail(err, errlen,
                "--stage-layers '%s': %d counts given but --pp is %d (give one count per stage)", s,
                n, pp);
  if (sum != layers)
    return strata_fail(err, errlen, "--stage-layers '%s': counts sum to %d but the model has %d layers", s,
                       sum, layers);
  return 0;
}

int layout_balance(const layout_model_t *m, int pp, int *counts) {
  int L = m->layers;
  double lc = layer_flops(m, 1), ec = embed_flops(m, 1), hc = head_flops(m, 1);
  /* Stage cost is linear in its layer count. best[s][l]: smallest possible max stage cost
   * placing the first l layers on stages 0..s, and among those (approximately) the smallest sum
   * of squared stage costs, so that stages below the maximum are evened out too; take[s][l]:
   * layers on stage s in that optimum. */
  double *best = malloc(sizeof(double) * (size_t)pp * (size_t)(L + 1));
  double *sq = malloc(sizeof(double) * (size_t)pp * (size_t)(L + 1));
  int *take = malloc(sizeof(int) * (size_t)pp * (size_t)(L + 1));
  int rc = -1;
  if (!best || !sq || !take) goto free_tables;
#define BEST(s, l) best[(size_t)(s) * (size_t)(L + 1) + (size_t)(l)]
#define SQ(s, l) sq[(size_t)(s) * (size_t)(L + 1) + (size_t)(l)]
#define TAKE(s, l) take[(size_t)(s) * (size_t)(L + 1) + (size_t)(l)]
  for (int s = 0; s < pp; s++)
    for (int l = 0; l <= L; l++) {
      BEST(s, l) = 1e308;
      SQ(s, l) = 1e308;
      TAKE(s, l) = 0;
      double extra = (s == 0 ? ec : 0) + (s == pp - 1 ? hc : 0);
      if (s == 0) {
        if (l >= 1) BEST(s, l) = l * lc + extra, SQ(s, l) = BEST(s, l) * BEST(s, l), TAKE(s, l) = l;
        continue;
      }
      for (int k = 1; k <= l - s; k++) { /* stages 0..s-1 need >= s layers */
        double prev = BEST(s - 1, l - k), here = k * lc + extra;
        double v = prev > here ? prev : here, q = SQ(s - 1, l - k) + here * here;
        double tol = 1e-12 * v;
        if (v < BEST(s, l) - tol || (v <= BEST(s, l) + tol && q < SQ(s, l) * (1 - 1e-12)))
          BEST(s, l) = v, SQ(s, l) = q, TAKE(s, l) = k;
      }
    }
  int l = L;
  for (int s = pp - 1; s >= 0; s--) {
    counts[s] = TAKE(s, l);
    l -= counts[s];
  }
#undef BEST
#undef TAKE
#undef SQ
  rc = 0;
free_tables:
  free(best);
  free(sq);
  free(take);
  return rc;
}

int layout_init(layout_t *lay, const layout_model_t *m, int world, int tp, int pp, int dp, int micro,
                int batch, const char *stage_layers, char *err, size_t errlen) {
  memset(lay, 0, sizeof *lay);
  if (layout_model_validate(m, err, errlen)) return -1;
  if (tp < 1) return strata_fail(err, errlen, "--tp must be >= 1 (got %d)", tp);
  if (m->heads % tp)
    return strata_fail(err, errlen,
                       "--tp %d does not divide the model's %d attention heads (each tensor-parallel rank holds "
                       "whole heads); use a --tp that divides %d",
                       tp, m->heads, m->heads);
  if (pp < 1) return strata_fail(err, errlen, "--pp must be >= 1 (got %d)", pp);
  if (dp < 1) return strata_fail(err, errlen, "--dp must be >= 1 (got %d)", dp);
  if (micro < 1) return strata_fail(err, errlen, "--microbatches must be >= 1 (got %d)", micro);
  if (batch < 1) return strata_fail(err, errlen, "--batch must be >= 1 (got %d)", batch);
  if ((int64_t)tp * pp * dp != world)
    return strata_fail(err, errlen,
                       "the job has %d ranks but --tp %d x --pp %d x --dp %d = %lld; launch T x P x D ranks or "
                       "change --tp/--pp/--dp",
                       world, tp, pp, dp, (long long)tp * pp * dp);
  if (pp > m->layers)
    return strata_fail(
        err, errlen,
        "--pp %d asks for more stages than the model's %d layers (every stage holds at least "
        "one layer); use --pp <= %d",
        pp, m->layers, m->layers);
  if (pp > LAYOUT_MAX_STAGES)
    return strata_fail(err, errlen, "--pp %d exceeds the supported maximum of %d stages", pp,
                       LAYOUT_MAX_STAGES);
  if (batch % ((int64_t)dp * micro))
    return strata_fail(
        err, errlen,
        "--batch %d is not divisible by --dp %d x --microbatches %d = %lld; choose a batch that "
        "is a multiple of %lld",
        batch, dp, micro, (long long)dp * micro, (long long)dp * micro);
  lay->model = *m;
  lay->world = world;
  lay->tp = tp;
  lay->pp = pp;
  lay->dp = dp;
  lay->micro = micro;
  lay->batch = batch;
  lay->micro_batch = batch / (dp * micro);
  int counts[LAYOUT_MAX_STAGES];
  if (stage_layers && *stage_layers) {
    if (layout_parse_stage_layers(stage_layers, m->layers, pp, counts, err, errlen)) return -1;
    lay->explicit_layers = 1;
  } else if (layout_balance(m, pp, counts)) {
    return strata_fail(err, errlen, "out of memory for balancing %d layers over %d stages", m->layers, pp);
  }
  lay->layer_begin[0] = 0;
  for (int s = 0; s < pp; s++) lay->layer_begin[s + 1] = lay->layer_begin[s] + counts[s];
  return 0;
}

int64_t layout_stage_params(const layout_t *lay, int s) {
  const layout_model_t *m = &lay->model;
  int64_t p = layout_stage_layers(lay, s) * layout_params_per_layer(m);
  if (s == 0) p += layout_params_embed(m);
  if (s == lay->pp - 1) {
    p += layout_params_head(m);
    if (lay->pp > 1 && layout_model_tied(m)) p += (int64_t)m->vocab * m->dim; /* tied wte copy */
  }
  return p;
}

int layout_padded_vocab(int vocab, int tp) {
  if (tp <= 1) return vocab;
  int64_t q = 128 * (int64_t)tp;
  return (int)((vocab + q - 1) / q * q);
}

int64_t layout_rank_layer_params(const layout_model_t *m, int tp) {
  const int64_t C = m->dim, T = tp;
  if (m->arch == LAYOUT_ARCH_LLAMA) { /* q, k, v, o, gate, up, down split; the RMSNorms whole;
                                        more ranks than key/value heads: one replicated each */
    const int64_t kvh = layout_model_kv_heads(m), hd = C / m->heads;
    const int64_t rep = kvh < T ? 2 * C * hd * (T - kvh) : 0;
    return (layout_params_per_layer(m) - 2 * C + rep) / T + 2 * C;
  }
  /* split 12C^2 + 7C (c_attn w+b, attn.c_proj w, c_fc w+b, mlp.c_proj w), replicated 6C (two
   * LayerNorms, the two row-parallel biases) */
  return (12 * C * C + 7 * C) / T + 6 * C;
}

int64_t layout_rank_params(const layout_t *lay, int s) {
  const layout_model_t *m = &lay->model;
  const int64_t C = m->dim, T = lay->tp, Vp = layout_padded_vocab(m->vocab, lay->tp);
  int64_t p = layout_stage_layers(lay, s) * layout_rank_layer_params(m, lay->tp);
  if (s == 0) p += Vp * C / T + (m->arch == LAYOUT_ARCH_GPT ? (int64_t)m->ctx * C : 0);
  if (s == lay->pp - 1) /* the final norm, and the rank's lm_head rows or the tied wte's copy */
    p += head_norm_params(m) + (!layout_model_tied(m) || lay->pp > 1 ? Vp * C / T : 0);
  return p;
}

double layout_stage_train_flops(const layout_t *lay, int s, int B) {
  const layout_model_t *m = &lay->model;
  double f = layout_stage_layers(lay, s) * layer_flops(m, B);
  if (s == 0) f += embed_flops(m, B);
  if (s == lay->pp - 1) f += head_flops(m, B);
  return 3 * f;
}

static void print_count(FILE *f, int64_t n) {
  if (n >= 1000000000)
    fprintf(f, "%.2fB", n / 1e9);
  else if (n >= 1000000)
    fprintf(f, "%.2fM", n / 1e6);
  else if (n >= 1000)
    fprintf(f, "%.1fK", n / 1e3);
  else
    fprintf(f, "%lld", (long long)n);
}

void layout_print(const layout_t *lay, FILE *f) {
  fprintf(f,
          "layout: %d ranks = %d tensor-parallel x %d stages x %d replicas; %d micro-batches of %d sequences "
          "(global batch %d)\n",
          lay->world, lay->tp, lay->pp, lay->dp, lay->micro, lay->micro_batch, lay->batch);
  fprintf(f, "rank -> (t, stage, replica):");
  int shown = lay->world < 64 ? lay->world : 64;
  for (int r = 0; r < shown; r++)
    fprintf(f, "%s r%d=(%d,%d,%d)", r % 8 == 0 ? "\n " : "", r, layout_tp_of(lay, r), layout_stage_of(lay, r),
            layout_replica_of(lay, r));
  if (shown < lay->world) fprintf(f, "\n  ... rank r = (replica * %d + stage) * %d + t", lay->pp, lay->tp);
  fprintf(f, "\n");
  for (int s = 0; s < lay->pp; s++) {
    fprintf(f, "stage %d: layers %d-%d (%d)%s%s, ", s, lay->layer_begin[s],
            lay->layer_begin[s + 1] - 1, layout_stage_layers(lay, s), s == 0 ? " + embeddings" : "",
            s == lay->pp - 1
                ? (!layout_model_tied(&lay->model) ? " + final norm/lm_head/loss"
                   : lay->pp > 1 ? " + final norm/logits/loss (+ tied wte copy)"
                                 : " + final norm/logits/loss")
                : "");
    print_count(f, layout_stage_params(lay, s));
    if (lay->tp > 1) {
      fprintf(f, " params, ");
      print_count(f, layout_rank_params(lay, s));
      fprintf(f, " per tensor-parallel rank\n");
    } else {
      fprintf(f, " params\n");
    }
  }
}
