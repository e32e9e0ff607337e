/* Memory model: per-rank bytes equal a hand count, tensor by tensor, for a small model
 * (V=64, T=8, L=2, H=2, C=16); ZeRO-1 divides the optimizer state by D; 1F1B keeps fewer
 * micro-batches than GPipe; the fit check names the stage and the bytes and suggests a layout
 * that really fits. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "memory_model.h"
#include "test_util.h"

static const layout_model_t tiny = {64, 8, 2, 2, 16}; /* V, T, L, H, C */

/* Hand count of one layer's parameters: ln_1 w,b; c_attn w (C,3C), b; c_proj w (C,C), b; ln_2
 * w,b; c_fc w (C,4C), b; mlp c_proj w (4C,C), b. */
static double layer_params(void) {
  double C = 16;
  return 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C);
}

/* Hand count of one layer's activations for b=2 sequences of T=8 (gpt2_acts_t's list). */
static double layer_acts(void) {
  double b = 2, T = 8, C = 16, H = 2;
  double BTC = b * T * C, BT = b * T, BHTT = b * H * T * T;
  return BTC /*ln1*/ + BT + BT /*ln1 mean, rstd*/ + 3 * BTC /*qkv*/ + BHTT /*att*/ + BTC /*atty*/ +
         BTC /*res2*/ + BTC /*ln2*/ + BT + BT /*ln2 mean, rstd*/ + 4 * BTC /*fch*/ +
         4 * BTC /*fch_gelu*/ + BTC /*res3*/;
}

static void test_single_rank_matches_hand_count(void) {
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &tiny, 1, 1, 1, 1, 2, 4, NULL, err, sizeof err), 0); /* b = 2 */
  double wte = 64 * 16, wpe = 8 * 16, lnf = 2 * 16;
  double params = wte + wpe + 2 * layer_params() + lnf;
  CHECK_NEAR(params, 7744, 0); /* 1024 + 128 + 2 x 3280 + 32 */
  double b = 2, T = 8, C = 16, V = 64;
  double head = b * T * C /*lnf*/ + 2 * b * T /*lnf mean, rstd*/ + b * T * V /*logits*/ +
                b * T /*lse*/ + b * T /*losses*/;
  double per_micro = 2 * layer_acts() + b * T * C /*x0*/ + 2 * b * T /*tokens, targets*/ + head;
  /* backward scratch: dres, dln, datty (b,T,C), dbig (b,T,4C), datt (T,T) */
  double workspace = 3 * b * T * C + 4 * b * T * C + T * T;
  mem_stage_t ms;
  memory_stage(&lay, 0, SCHED_GPIPE, 0, 25 << 20, &ms);
  CHECK_NEAR(ms.params_bytes, 4 * params, 0);
  CHECK_NEAR(ms.grads_bytes, 4 * params, 0);
  CHECK_NEAR(ms.optimizer_bytes, 8 * params, 0);
  CHECK_EQ_INT(ms.in_flight, 2);
  CHECK_NEAR(ms.activations_bytes, 4 * 2 * per_micro, 0);
  CHECK_NEAR(ms.workspace_bytes, 4 * workspace, 0);
  CHECK_NEAR(ms.comm_bytes, 0, 0); /* one rank: no pipeline or DP buffers */
  /* layer 4416 elements, x0 256, tokens + targets 32, head 256 + 32 + 1024 + 16 + 16 = 1344:
   * 10464 per micro-batch;
   * workspace 1792 + 64 = 1856 elements */
  CHECK_NEAR(layer_acts(), 4416, 0);
  CHECK_NEAR(ms.total_bytes, 30976 + 30976 + 61952 + 4 * 2 * 10464 + 4 * 1856, 0);
  memory_stage(&lay, 0, SCHED_1F1B, 0, 25 << 20, &ms); /* 1F1B, P = 1: one in flight */
  CHECK_EQ_INT(ms.in_flight, 1);
  CHECK_NEAR(ms.activations_bytes, 4 * per_micro, 0);
}

static void test_two_stages_two_replicas_zero1(void) {
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &tiny, 4, 1, 2, 2, 2, 8, NULL, err, sizeof err), 0); /* b = 2 */
  CHECK_EQ_INT(layout_stage_layers(&lay, 0), 1);
  double b = 2, T = 8, C = 16, V = 64;
  double p0 = 64 * 16 + 8 * 16 + layer_params(); /* wte, wpe, layer 0 */
  double p1 = layer_params() + 2 * 16 + 64 * 16; /* layer 1, ln_f, tied wte copy */
  mem_stage_t m0, m1;
  memory_stage(&lay, 0, SCHED_1F1B, 1, 1000, &m0);
  memory_stage(&lay, 1, SCHED_1F1B, 1, 1000, &m1);
  CHECK_NEAR(m0.params_bytes, 4 * p0, 0);
  CHECK_NEAR(m1.params_bytes, 4 * p1, 0);
  CHECK_NEAR(m0.optimizer_bytes, 8 * (p0 / 2), 0); /* ZeRO-1 over D = 2 (p0 even) */
  CHECK_EQ_INT(m0.in_flight, 2);                   /* 1F1B: min(M, P - s) */
  CHECK_EQ_INT(m1.in_flight, 1);
  CHECK_NEAR(m0.activations_bytes, 4 * 2 * (layer_acts() + b * T * C + 2 * b * T), 0);
  /* comm: gradient send + receive buffers, the tied-wte exchange buffer, and with ZeRO-1 the
   * padded gradient and parameter buffers of 2 x ceil(p / 2) floats each (no bucket) */
  CHECK_NEAR(m0.comm_bytes, 4 * (2 * b * T * C + V * C) + 2 * 4 * (p0 / 2) * 2, 0);
  double p1pad = 2 * ceil(p1 / 2); /* padded to a multiple of D */
  CHECK_NEAR(m1.comm_bytes, 4 * (2 * b * T * C + V * C) + 2 * 4 * p1pad, 0);
  memory_stage(&lay, 0, SCHED_1F1B, 0, 1000, &m0);
  CHECK_NEAR(m0.optimizer_bytes, 8 * p0, 0);
  /* without ZeRO: one 1000-byte bucket instead of the padded buffers */
  CHECK_NEAR(m0.comm_bytes, 4 * (2 * b * T * C + V * C) + 1000, 0);
}

static void test_kv_cache(void) {
  CHECK_NEAR(memory_kv_cache_bytes(&tiny, 2, 3, 8), 2.0 * 2 * 3 * 8 * 16 * 4, 0);
}

static void test_fit_check_names_stage_and_suggests_fitting_layout(void) {
  layout_model_t m;
  layout_model_preset("gpt2", &m);
  layout_t lay;
  char err[256], msg[2048];
  /* 8 nodes as 8 replicas, one micro-batch of 8 sequences each, GPipe: ~20 GiB per device */
  CHECK_EQ_INT(layout_init(&lay, &m, 8, 1, 1, 8, 1, 64, NULL, err, sizeof err), 0);
  double cap = 8.0 * 1073741824.0;
  double peak = memory_peak(&lay, SCHED_GPIPE, 0, 25 << 20, NULL);
  CHECK_TRUE(peak > cap);
  CHECK_EQ_INT(memory_fit_check(&lay, SCHED_GPIPE, 0, 25 << 20, cap, msg, sizeof msg), -1);
  char need[64];
  snprintf(need, sizeof need, "(%.0f bytes", peak);
  CHECK_TRUE(strstr(msg, "stage 0 does not fit") && strstr(msg, need) &&
             strstr(msg, "8589934592 bytes"));
  CHECK_TRUE(strstr(msg, "A layout that fits on 8 nodes: --pp") != NULL);
  mem_suggestion_t sg;
  CHECK_EQ_INT(memory_suggest(&lay, SCHED_GPIPE, 0, 25 << 20, cap, &sg), 0);
  layout_t fit;
  CHECK_EQ_INT(layout_init(&fit, &m, 8, 1, sg.pp, sg.dp, sg.micro, 64, NULL, err, sizeof err), 0);
  double fpeak = memory_peak(&fit, sg.kind, sg.zero, 25 << 20, NULL);
  CHECK_TRUE(fpeak <= cap);
  CHECK_NEAR(fpeak, sg.peak_bytes, 0);
  /* the same layout fits a large enough device */
  CHECK_EQ_INT(memory_fit_check(&lay, SCHED_GPIPE, 0, 25 << 20, 2 * peak, msg, sizeof msg), 0);
  /* nothing fits in 1 MiB */
  CHECK_EQ_INT(memory_fit_check(&lay, SCHED_GPIPE, 0, 25 << 20, 1 << 20, msg, sizeof msg), -1);
  CHECK_TRUE(strstr(msg, "No layout of 8 nodes") != NULL);
}

int main(void) {
  test_single_rank_matches_hand_count();
  test_two_stages_two_replicas_zero1();
  test_kv_cache();
  test_fit_check_names_stage_and_suggests_fitting_layout();
  return test_finish("sim_memory");
}
