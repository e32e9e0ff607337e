/* test_gpt2_tp_units.c -- the single-process parts of tensor parallelism and recomputation:
 *  - gpt2_padded_vocab; gpt2_tensor_slice / gpt2_tensor_unslice round-trip every tensor of every
 *    split kind at tp 2, 3, 4 (padding rows zero, element placement of each kind, all five kinds
 *    seen), and a TP rank's gpt2_init_params equals the slice of tp = 1's weights;
 *  - gpt2_logits_assemble puts every rank's columns in tp = 1's order and drops padding;
 *  - bad configurations (heads % tp, tp_rank out of range) are refused naming the numbers;
 *  - recompute selective and full at tp = 1 (one shard and two) are bit-identical to none, also
 *    with two micro-batches in flight (both forwards, then both backwards: FULL keeps the
 *    head's logits in the model's scratch, so the second forward overwrites the first's);
 *  - activation bytes on the 10.8M-parameter shape (L 6, H 6, C 384, ctx 256, V 50257, B 4,
 *    T 256): full <= 0.35 * none, selective < none (counted, not allocated). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "test_util.h"
#include "tp_harness.h"

static gpt2_model_t *make(const gpt2_config_t *cfg, int t, int tp) {
  gpt2_range_t r = {0, cfg->layers, 1, 1, .tp_rank = t, .tp_size = tp};
  gpt2_model_t *m = NULL;
  char err[256];
  if (gpt2_create(cfg, r, &m, err, sizeof err) != 0) test_fail(__FILE__, __LINE__, "gpt2_create: %s", err);
  return m;
}

static void test_padded_vocab(void) {
  CHECK_EQ_INT(gpt2_padded_vocab(300, 1), 300);
  CHECK_EQ_INT(gpt2_padded_vocab(300, 2), 512);
  CHECK_EQ_INT(gpt2_padded_vocab(300, 3), 384);
  CHECK_EQ_INT(gpt2_padded_vocab(50257, 1), 50257);
  CHECK_EQ_INT(gpt2_padded_vocab(50257, 2), 50432);
  CHECK_EQ_INT(gpt2_padded_vocab(256, 2), 256);
}

/* Where logical element (r, j) of tensor t lives for TP rank q: local (row, col), or -1. */
static int expected_local(const gpt2_tensor_t *t, int q, int64_t r, int64_t j, int64_t *lr, int64_t *lc) {
  int64_t LR = t->ndim == 2 ? t->shape[0] : 1, LW = t->ndim == 2 ? t->shape[1] : t->shape[0];
  int64_t FW = t->ndim == 2 ? t->full_shape[1] : t->full_shape[0];
  *lr = r, *lc = j;
  switch (t->split) {
  case GPT2_SPLIT_NONE: return 0;
  case GPT2_SPLIT_COLS: *lc = j - q * LW; return *lc >= 0 && *lc < LW ? 0 : -1;
  case GPT2_SPLIT_QKV_COLS: {
    int64_t part = j / (FW / 3), w = LW / 3, in = j % (FW / 3) - q * w;
    *lc = part * w + in;
    return in >= 0 && in < w ? 0 : -1;
  }
  case GPT2_SPLIT_ROWS:
  case GPT2_SPLIT_VOCAB_ROWS: *lr = r - q * LR; return *lr >= 0 && *lr < LR ? 0 : -1;
  }
  return -1;
}

static void test_slice_roundtrip(int tp) {
  gpt2_config_t cfg = {.vocab = 300, .ctx = 8, .layers = 1, .heads = 12, .dim = 48};
  gpt2_model_t *m[4] = {0}, *ref = make(&cfg, 0, 1);
  for (int q = 0; q < tp; q++) m[q] = make(&cfg, q, tp);
  if (!ref || !m[tp - 1]) return;
  gpt2_init_params(ref, 7);
  int seen[5] = {0};
  for (int i = 0; i < m[0]->num_tensors; i++) {
    const gpt2_tensor_t *t = &m[0]->tensors[i];
    seen[t->split]++;
    int64_t FR = t->ndim == 2 ? t->full_shape[0] : 1, FW = t->ndim == 2 ? t->full_shape[1] : t->full_shape[0];
    int64_t LW = t->ndim == 2 ? t->shape[1] : t->shape[0];
    float *full = malloc(sizeof(float) * t->full_numel), *back = malloc(sizeof(float) * t->full_numel);
    float *local = malloc(sizeof(float) * t->numel);
    for (size_t j = 0; j < t->full_numel; j++) full[j] = (float)(j + 1), back[j] = NAN;
    CHECK_EQ_INT(gpt2_tensor_slice(t, tp, full, local), -1);
    CHECK_EQ_INT(gpt2_tensor_unslice(t, -1, local, back), -1);
    int placed = 1, pad_zero = 1;
    for (int q = 0; q < tp; q++) {
      CHECK_EQ_INT(gpt2_tensor_slice(t, q, full, local), 0);
      for (int64_t r = 0; r < FR; r++)
        for (int64_t j = 0; j < FW; j++) {
          int64_t lr, lc;
          if (expected_local(t, q, r, j, &lr, &lc) == 0 && local[lr * LW + lc] != full[r * FW + j]) placed = 0;
        }
      if (t->split == GPT2_SPLIT_VOCAB_ROWS)
        for (int64_t r = 0; r < t->shape[0]; r++)
          if (q * t->shape[0] + r >= cfg.vocab)
            for (int64_t j = 0; j < LW; j++) pad_zero &= local[r * LW + j] == 0.0f;
      CHECK_EQ_INT(gpt2_tensor_unslice(t, q, local, back), 0);
      /* a TP rank's initial weights are its slice of tp = 1's */
      const gpt2_tensor_t *rt = gpt2_find_tensor(ref, t->name);
      float *mine = malloc(sizeof(float) * t->numel);
      gpt2_tensor_slice(t, q, ref->params + rt->offset, mine);
      gpt2_init_params(m[q], 7);
      test_checks++;
      if (memcmp(mine, m[q]->params + t->offset, sizeof(float) * t->numel) != 0)
        test_fail(__FILE__, __LINE__, "tp %d rank %d: initial %s is not the slice of tp = 1's", tp, q, t->name);
      free(mine);
    }
    if (!placed || !pad_zero || memcmp(full, back, sizeof(float) * t->full_numel) != 0)
      test_fail(__FILE__, __LINE__, "tp %d: %s (split %d) placed %d, padding zero %d, round trip %s", tp, t->name,
                t->split, placed, pad_zero,
                memcmp(full, back, sizeof(float) * t->full_numel) == 0 ? "exact" : "differs");
    test_checks++;
    free(full);
    free(back);
    free(local);
  }
  for (int k = 0; k < 5; k++) CHECK_TRUE(seen[k] > 0);
  const gpt2_tensor_t *wte = gpt2_find_tensor(m[0], "wte.weight");
  CHECK_EQ_INT(wte->shape[0], gpt2_padded_vocab(300, tp) / tp);
  CHECK_EQ_INT(wte->full_shape[0], 300);
  CHECK_EQ_INT(wte->replicated, 0);
  CHECK_EQ_INT(gpt2_find_tensor(m[0], "h.0.attn.c_proj.bias")->replicated, 1);
  for (int q = 0; q < tp; q++) gpt2_free(m[q]);
  gpt2_free(ref);
}

static void test_logits_assemble(void) {
  gpt2_config_t cfg = {.vocab = 300, .ctx = 8, .layers = 1, .heads = 3, .dim = 12};
  const int tp = 3, rows = 2;
  gpt2_model_t *m = make(&cfg, 1, tp);
  if (!m) return;
  int Vl = gpt2_local_vocab(m); /* 128 of 384 */
  CHECK_EQ_INT(Vl, 128);
  float *g = malloc(sizeof(float) * tp * rows * Vl), *full = malloc(sizeof(float) * rows * 300);
  for (int q = 0; q < tp; q++) /* block q, row r, column j = vocabulary id q*Vl + j */
    for (int r = 0; r < rows; r++)
      for (int j = 0; j < Vl; j++) g[((size_t)q * rows + r) * Vl + j] = q * Vl + j >= 300 ? NAN : r * 1000 + q * Vl + j;
  gpt2_logits_assemble(m, g, rows, full);
  int ok = 1;
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < 300; v++) ok &= full[r * 300 + v] == (float)(r * 1000 + v);
  CHECK_TRUE(ok);
  free(g);
  free(full);
  gpt2_free(m);
}

static void test_bad_config(void) {
  gpt2_config_t cfg = {.vocab = 300, .ctx = 8, .layers = 2, .heads = 4, .dim = 32};
  gpt2_model_t *m = NULL;
  char err[256];
  CHECK_EQ_INT(gpt2_create(&cfg, (gpt2_range_t){0, 2, 1, 1, .tp_rank = 0, .tp_size = 3}, &m, err, sizeof err), -1);
  CHECK_TRUE(m == NULL && strstr(err, "heads = 4 is not divisible by the tensor-parallel size 3") != NULL);
  printf("refused: %s\n", err);
  CHECK_EQ_INT(gpt2_create(&cfg, (gpt2_range_t){0, 2, 1, 1, .tp_rank = 2, .tp_size = 2}, &m, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "tp_rank = 2 is outside [0, tp_size = 2)") != NULL);
  printf("refused: %s\n", err);
  CHECK_EQ_INT(gpt2_create(&cfg, (gpt2_range_t){0, 2, 1, 1, .tp_rank = -1, .tp_size = 2}, &m, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "tp_rank = -1") != NULL);
  /* tp_size 0 means 1 */
  CHECK_EQ_INT(gpt2_create(&cfg, (gpt2_range_t){0, 2, 1, 1}, &m, err, sizeof err), 0);
  CHECK_EQ_INT(m->range.tp_size, 1);
  CHECK_EQ_INT(gpt2_set_tp(m, NULL, 1, err, sizeof err), 0);
  CHECK_EQ_INT(gpt2_sequence_parallel(m), 0);
  CHECK_EQ_INT(gpt2_set_recompute(m, (gpt2_recompute_t)7), -1);
  gpt2_free(m);
  gpt2_recompute_t r;
  CHECK_EQ_INT(gpt2_parse_recompute("selective", &r), 0);
  CHECK_EQ_INT(r, GPT2_RECOMPUTE_SELECTIVE);
  CHECK_EQ_INT(gpt2_parse_recompute("full", &r), 0);
  CHECK_EQ_INT(r, GPT2_RECOMPUTE_FULL);
  CHECK_EQ_INT(gpt2_parse_recompute("some", &r), -1);
  CHECK_TRUE(strcmp(gpt2_recompute_name(GPT2_RECOMPUTE_NONE), "none") == 0);
}

/* Two micro-batches (the halves of c's batch) forward, then backward in the same order, with
 * recompute `mode`; returns the summed losses, gradients into grads. */
static float two_in_flight(const tpx_case_t *c, gpt2_recompute_t mode, float *grads, size_t *n) {
  gpt2_model_t *m = tpx_model(c, 0, c->cfg.layers, 1, 1, 0, 1, NULL, 0, mode);
  if (!m) return NAN;
  gpt2_acts_t *a[2];
  char err[256];
  float loss = 0;
  const int T = c->T, half = c->B / 2;
  gpt2_zero_grad(m);
  for (int k = 0; k < 2; k++) {
    CHECK_EQ_INT(gpt2_acts_create(m, half, T, &a[k], err, sizeof err), 0);
    loss += gpt2_forward(m, a[k], c->tokens + k * half * T, NULL, c->targets + k * half * T);
  }
  for (int k = 0; k < 2; k++) {
    CHECK_EQ_INT(gpt2_backward(m, a[k], NULL, 0.5f, NULL), 0);
    gpt2_acts_free(a[k]);
  }
  *n = m->num_params;
  memcpy(grads, m->grads, sizeof(float) * m->num_params);
  gpt2_free(m);
  return loss;
}

static void test_in_flight(void) {
  tpx_case_t c;
  tpx_case(&c, 4, 32, 4, 16);
  size_t n = 0;
  float *g[3];
  float loss[3];
  for (int mode = 0; mode < 3; mode++) {
    g[mode] = malloc(sizeof(float) * 200000);
    loss[mode] = two_in_flight(&c, (gpt2_recompute_t)mode, g[mode], &n);
  }
  CHECK_TRUE(n > 0 && n <= 200000);
  for (int mode = 1; mode < 3; mode++) {
    CHECK_TRUE(memcmp(&loss[mode], &loss[0], sizeof(float)) == 0);
    CHECK_TRUE(memcmp(g[mode], g[0], sizeof(float) * n) == 0);
  }
  for (int mode = 0; mode < 3; mode++) free(g[mode]);
  tpx_case_free(&c);
}

static void test_acts_bytes(void) {
  gpt2_config_t cfg = {.vocab = 50257, .ctx = 256, .layers = 6, .heads = 6, .dim = 384};
  gpt2_model_t *m = make(&cfg, 0, 1);
  if (!m) return;
  size_t b[3];
  for (int mode = 0; mode < 3; mode++) {
    CHECK_EQ_INT(gpt2_set_recompute(m, (gpt2_recompute_t)mode), 0);
    b[mode] = gpt2_acts_bytes_for(m, 4, 256);
    printf("activations of B 4 x T 256, recompute %-9s %8.1f MiB (%.3f of none)\n",
           gpt2_recompute_name((gpt2_recompute_t)mode), b[mode] / 1048576.0, (double)b[mode] / (double)b[0]);
  }
  CHECK_TRUE(b[GPT2_RECOMPUTE_SELECTIVE] < b[GPT2_RECOMPUTE_NONE]);
  CHECK_TRUE((double)b[GPT2_RECOMPUTE_FULL] <= 0.35 * (double)b[GPT2_RECOMPUTE_NONE]);
  gpt2_free(m);
}

int main(void) {
  test_padded_vocab();
  for (int tp = 2; tp <= 4; tp++) test_slice_roundtrip(tp);
  test_logits_assemble();
  test_bad_config();
  tpx_case_t c;
  tpx_case(&c, 4, 32, 2, 16);
  tpx_check_recompute(&c, 0, 1, NULL, 0, 1);
  tpx_check_recompute(&c, 0, 1, NULL, 0, 2);
  tpx_case_free(&c);
  test_in_flight();
  test_acts_bytes();
  return test_finish("test_gpt2_tp_units");
}
