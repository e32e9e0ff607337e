/* Tensor parallelism, sequence parallelism and activation recomputation in the simulator and
 * the memory model, against hand-computed values: per-layer activation bytes of every mode
 * equal Korthikanti et al. 2022's formulas (mixed accounting) and the tensor-by-tensor count
 * of Strata's fp32 buffers split over t ranks; the per-layer TP collectives cost the ring
 * formula on the TP group's link (bytes / bandwidth + latency); recomputation adds exactly one
 * attention forward (selective), one attention and MLP forward with the MLP's collectives
 * (selective-mlp) or one layer forward (full) per layer to backward; parameters
 * and optimizer state per rank follow layout_rank_params (ZeRO-1 still / D); the simulated
 * step carries the TP time; the fit suggestion turns to TP only when no TP-free layout fits. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "memory_model.h"
#include "simulate.h"
#include "test_util.h"

/* Korthikanti et al. 2022, Table 2, one layer, 2-byte activations: s = 2048, b = 1, h = 4096,
 * a = 32, t = 8 (a 7B-like layer; 5as/h = 80). */
static void test_korthikanti_bytes_per_mode(void) {
  const layout_model_t m = {50257, 2048, 32, 32, 4096};
  const double sbh = 2048.0 * 1 * 4096, t = 8;
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 1, 0, MEM_RECOMPUTE_NONE), sbh * (34 + 80), 0);
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 8, 0, MEM_RECOMPUTE_NONE),
             sbh * (10 + 24 / t + 80 / t), 0); /* 23 sbh */
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 8, 1, MEM_RECOMPUTE_NONE),
             sbh / t * (34 + 80), 0); /* 14.25 sbh */
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 8, 1, MEM_RECOMPUTE_SELECTIVE), sbh * 34 / t, 0);
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 8, 0, MEM_RECOMPUTE_SELECTIVE),
             sbh * (10 + 24 / t), 0);
  /* selective-mlp: the MLP's fc and GELU outputs (8 + 8 sbh/t) go too */
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 8, 1, MEM_RECOMPUTE_SELECTIVE_MLP), sbh * 18 / t, 0);
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 8, 0, MEM_RECOMPUTE_SELECTIVE_MLP),
             sbh * (10 + 8 / t), 0);
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 1, 0, MEM_RECOMPUTE_FULL), 2 * sbh, 0);
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 8, 0, MEM_RECOMPUTE_FULL), 2 * sbh, 0);
  /* with SP the kept layer input is the sequence-split one */
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 2048, 8, 1, MEM_RECOMPUTE_FULL), 2 * sbh / t, 0);
  /* b scales linearly */
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 4, 2048, 8, 1, MEM_RECOMPUTE_SELECTIVE),
             4 * sbh * 34 / t, 0);

  /* A middle stage (no embedding, no head) in the mixed accounting: its layers x the formula x
   * the micro-batches in flight (bf16: the paper's 2 bytes). T x P x D = 8 x 4 x 1. */
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 32, 8, 4, 1, 8, 8, NULL, err, sizeof err), 0); /* b = 1 */
  mem_options_t o = memory_options(SCHED_1F1B, 0, 25 << 20);
  o.accounting = MEM_ACCOUNT_MIXED;
  o.dtype = DEV_BF16;
  o.sequence_parallel = 1;
  o.recompute = MEM_RECOMPUTE_SELECTIVE;
  mem_stage_t ms;
  memory_stage_opt(&lay, 1, &o, &ms);
  CHECK_EQ_INT(ms.in_flight, 3); /* 1F1B: min(M, P - s) */
  CHECK_NEAR(ms.activations_bytes, 3 * layout_stage_layers(&lay, 1) * sbh * 34 / t, 0);
  /* mixed: 2 + 2 bytes of weights and gradients, 12 of optimizer state per rank parameter */
  double p = (double)layout_rank_params(&lay, 1);
  CHECK_NEAR(ms.params_bytes, 2 * p, 0);
  CHECK_NEAR(ms.optimizer_bytes, 12 * p, 0);
}

/* A Llama 3 8B layer (h = 4096, 8 of 32 heads for keys and values, F = 14336; s = 8192, b = 1,
 * t = 32, SP): replicated norm and block inputs 8 sbh/t; split q 2, k and v 4 x 1/4, the output
 * projection's input 2, gate, up and product 6 x 3.5 = 21 sbh/t; selective-mlp keeps the
 * first 13 of those 34 sbh/t. Every mode keeps no more than the one before it, both families. */
static void test_llama_bytes_and_mode_order(void) {
  layout_model_t m;
  CHECK_EQ_INT(layout_model_preset("llama3-8b", &m), 0);
  const double sbh = 8192.0 * 4096, t = 32;
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 8192, 32, 1, MEM_RECOMPUTE_SELECTIVE), sbh * 34 / t, 1e-3);
  CHECK_NEAR(memory_layer_act_bytes_mixed(&m, 1, 8192, 32, 1, MEM_RECOMPUTE_SELECTIVE_MLP), sbh * 13 / t,
             1e-3);
  const char *presets[] = {"llama3-8b", "gpt2"};
  for (int p = 0; p < 2; p++)
    for (int sp = 0; sp < 2; sp++) {
      CHECK_EQ_INT(layout_model_preset(presets[p], &m), 0);
      for (int rc = 1; rc < MEM_RECOMPUTE_COUNT; rc++) {
        CHECK_TRUE(memory_layer_act_bytes_mixed(&m, 1, 1024, 4, sp, (mem_recompute_t)rc) <
                   memory_layer_act_bytes_mixed(&m, 1, 1024, 4, sp, (mem_recompute_t)(rc - 1)));
        CHECK_TRUE(memory_layer_act_elems_tp(&m, 1, 1024, 4, sp, (mem_recompute_t)rc) <
                   memory_layer_act_elems_tp(&m, 1, 1024, 4, sp, (mem_recompute_t)(rc - 1)));
      }
    }
  /* the workspace holds one layer's recomputed MLP activations on top of selective's: bf16
   * mixed GPT with SP 16 sbh/t bytes (gpt2, b = 1, T = 1024, t = 4, one stage) */
  CHECK_EQ_INT(layout_model_preset("gpt2", &m), 0);
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 4, 4, 1, 1, 1, 1, NULL, err, sizeof err), 0);
  mem_options_t o = memory_options(SCHED_1F1B, 0, 25 << 20);
  o.accounting = MEM_ACCOUNT_MIXED;
  o.dtype = DEV_BF16;
  o.sequence_parallel = 1;
  mem_stage_t sel, mlp;
  o.recompute = MEM_RECOMPUTE_SELECTIVE;
  memory_stage_opt(&lay, 0, &o, &sel);
  o.recompute = MEM_RECOMPUTE_SELECTIVE_MLP;
  memory_stage_opt(&lay, 0, &o, &mlp);
  CHECK_NEAR(mlp.workspace_bytes - sel.workspace_bytes, 1024.0 * 768 * 16 / 4, 1e-6);
  /* the error messages' phrases name every value the parsers take */
  for (int i = 0; i < MEM_RECOMPUTE_COUNT; i++)
    CHECK_TRUE(strstr(MEM_RECOMPUTE_CHOICES, memory_recompute_name((mem_recompute_t)i)) != NULL);
  for (int i = MEM_PREC_FP32; i <= MEM_PREC_BF16_SR; i++)
    CHECK_TRUE(strstr(MEM_PRECISION_CHOICES, memory_precision_name((mem_precision_t)i)) != NULL);
  for (int i = MEM_PREC_FP32; i <= MEM_PREC_FP8; i++)
    CHECK_TRUE(strstr(MEM_SIM_PRECISION_CHOICES, memory_precision_name((mem_precision_t)i)) != NULL);
  /* fp8 is the simulator's: strata train's parser refuses it */
  mem_precision_t pr;
  CHECK_EQ_INT(memory_parse_precision("fp8", &pr), -1);
  CHECK_EQ_INT(memory_parse_sim_precision("fp8", &pr), 0);
  CHECK_EQ_INT(pr, MEM_PREC_FP8);
  mem_recompute_t r;
  CHECK_EQ_INT(memory_parse_recompute("selective-mlp", &r), 0);
  CHECK_EQ_INT(r, MEM_RECOMPUTE_SELECTIVE_MLP);
}

/* Strata's fp32 buffers split over t = 2 ranks (tiny model V=64, T=8, L=2, H=2, C=16; b = 2):
 * replicated ln1, res2, ln2, res3 (b,T,C) and four (b,T) LayerNorm statistics; split qkv
 * (b,T,3C), att (b,H,T,T), atty (b,T,C), fch and fch_gelu (b,T,4C). */
static void test_strata_fp32_split(void) {
  const layout_model_t m = {64, 8, 2, 2, 16};
  const double bTC = 2 * 8 * 16, bT = 2 * 8, bHTT = 2 * 2 * 8 * 8, t = 2;
  double repl = 4 * bTC + 4 * bT, split = (3 + 1 + 4 + 4) * bTC / t, att = bHTT / t;
  CHECK_NEAR(memory_layer_act_elems_tp(&m, 2, 8, 2, 0, MEM_RECOMPUTE_NONE), repl + split + att, 0);
  CHECK_NEAR(memory_layer_act_elems_tp(&m, 2, 8, 2, 0, MEM_RECOMPUTE_NONE), 2752, 0);
  CHECK_NEAR(memory_layer_act_elems_tp(&m, 2, 8, 2, 1, MEM_RECOMPUTE_NONE), repl / t + split + att, 0);
  CHECK_NEAR(memory_layer_act_elems_tp(&m, 2, 8, 2, 0, MEM_RECOMPUTE_SELECTIVE), repl + split, 0);
  CHECK_NEAR(memory_layer_act_elems_tp(&m, 2, 8, 2, 0, MEM_RECOMPUTE_SELECTIVE_MLP),
             repl + (3 + 1) * bTC / t, 0); /* fch and fch_gelu recomputed */
  CHECK_NEAR(memory_layer_act_elems_tp(&m, 2, 8, 2, 0, MEM_RECOMPUTE_FULL), bTC, 0);
  CHECK_NEAR(memory_layer_act_elems_tp(&m, 2, 8, 2, 1, MEM_RECOMPUTE_FULL), bTC / t, 0);
  /* The head stage under full recomputation keeps each layer's input, the stage input, the
   * token copies and the per-position log-sum-exp and loss: no ln_f, no logits (re-run in
   * backward one micro-batch at a time, so they sit in the workspace instead).
   * T x P x D = 2 x 1 x 1, one micro-batch of b = 2. */
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 2, 2, 1, 1, 1, 2, NULL, err, sizeof err), 0);
  mem_options_t o = memory_options(SCHED_1F1B, 0, 25 << 20);
  mem_stage_t none, full;
  memory_stage_opt(&lay, 0, &o, &none);
  o.recompute = MEM_RECOMPUTE_FULL;
  memory_stage_opt(&lay, 0, &o, &full);
  CHECK_NEAR(full.activations_bytes, 4 * (2 * bTC + bTC + 2 * bT + 2 * bT), 0);
  /* the workspace gains ln_f (b,T,C), its statistics (2 b T) and the logits slice (b,T,Vp/t) */
  const double Vp = layout_padded_vocab(64, 2);
  CHECK_NEAR(full.workspace_bytes - none.workspace_bytes,
             4 * memory_layer_act_elems_tp(&m, 2, 8, 2, 0, MEM_RECOMPUTE_NONE) +
                 4 * (bTC + 2 * bT + bT * Vp / t), 1e-9);
  /* t = 1 is the unsplit count */
  CHECK_NEAR(memory_layer_act_elems_tp(&m, 2, 8, 1, 0, MEM_RECOMPUTE_NONE),
             memory_layer_act_elems(&m, 2, 8), 0);
}

/* Parameters, gradients and optimizer state per rank: layout_rank_params; ZeRO-1 / D. */
static void test_rank_state_divided_by_t(void) {
  const layout_model_t m = {64, 8, 4, 4, 16};
  layout_t lay;
  char err[256];
  /* T x P x D = 2 x 2 x 3 */
  CHECK_EQ_INT(layout_init(&lay, &m, 12, 2, 2, 3, 1, 6, NULL, err, sizeof err), 0);
  const double C = 16, Vp = 256; /* 64 padded to a multiple of 128 x 2 */
  CHECK_EQ_INT(layout_padded_vocab(64, 2), 256);
  /* stage 1 (the last): its layers of (12C^2 + 7C)/2 + 6C each, ln_f 2C, half the wte copy */
  double p1 = layout_stage_layers(&lay, 1) * ((12 * C * C + 7 * C) / 2 + 6 * C) + 2 * C + Vp * C / 2;
  CHECK_NEAR((double)layout_rank_params(&lay, 1), p1, 0);
  for (int z = 0; z < 2; z++) {
    mem_stage_t ms;
    memory_stage(&lay, 1, SCHED_1F1B, z, 25 << 20, &ms);
    CHECK_NEAR(ms.params_bytes, 4 * p1, 0);
    CHECK_NEAR(ms.grads_bytes, 4 * p1, 0);
    CHECK_NEAR(ms.optimizer_bytes, z ? 8 * ceil(p1 / 3) : 8 * p1, 0);
  }
}

/* A device with one link everywhere (a = 1 us, B = 1 GB/s), no reduce cost, 1 TFLOP/s. */
static device_t one_link(void) {
  device_t d;
  memset(&d, 0, sizeof d);
  snprintf(d.name, sizeof d.name, "flat");
  for (int i = 0; i < DEV_DTYPE_COUNT; i++) d.peak_flops[i] = 1e12;
  d.hbm_bytes = 1e12;
  d.hbm_Bps = 1e12;
  d.chips_per_instance = 1 << 20;
  d.intra_Bps = d.inter_Bps = 1e9;
  d.intra_lat_s = d.inter_lat_s = 1e-6;
  return d;
}

/* V=256, ctx 16, L=6, H=4, C=32 on T x P x D = 4 x 3 x 1, M = 2 micro-batches of b = 2. */
static const layout_model_t small = {256, 16, 6, 4, 32};

/* Per layer: 2 all-reduces forward, 2 backward, of the b s h activation (bf16: 2048 bytes);
 * ring over p = 4: 2(p-1) a + 2 (p-1)/p n / B = 6 us + 3.072 us. Sequence parallelism: a
 * reduce-scatter and an all-gather in place of each, the same total on a ring. Embedding: one
 * more forward; head: 3 cross-entropy all-reduces of b s fp32 forward, 1 backward. */
static void test_tp_comm_per_layer(void) {
  device_t d = one_link();
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &small, 12, 4, 3, 1, 2, 4, NULL, err, sizeof err), 0);
  const double n = 2.0 * 16 * 32 * 2, ar = 2 * 3 * 1e-6 + 2 * 0.75 * n / 1e9;
  const double nce = 4.0 * 2 * 16, ce = 2 * 3 * 1e-6 + 2 * 0.75 * nce / 1e9;
  CHECK_NEAR(ar, 9.072e-6, 1e-18);
  for (int sp = 0; sp < 2; sp++)
    for (int rc = 0; rc < MEM_RECOMPUTE_COUNT; rc++) {
      sim_options_t o = sim_options_default();
      o.sequence_parallel = sp;
      o.recompute = (mem_recompute_t)rc;
      sim_stage_cost_t *c = NULL;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c), 0);
      if (!c) return;
      /* full: the forward's collectives again; selective-mlp: the MLP's (half of them) */
      const double rcf = rc == MEM_RECOMPUTE_FULL ? 2 * ar : rc == MEM_RECOMPUTE_SELECTIVE_MLP ? ar : 0;
      const int k0 = layout_stage_layers(&lay, 0), k1 = layout_stage_layers(&lay, 1),
                k2 = layout_stage_layers(&lay, 2);
      CHECK_NEAR(c[1].fwd_tp_s, k1 * 2 * ar, 1e-15);
      CHECK_NEAR(c[1].bwd_tp_s, k1 * (2 * ar + rcf), 1e-15);
      /* embedding: all-reduce (SP: reduce-scatter) forward, SP: all-gather backward -- each
       * half a ring all-reduce here */
      CHECK_NEAR(c[0].fwd_tp_s, k0 * 2 * ar + (sp ? ar / 2 : ar), 1e-15);
      CHECK_NEAR(c[0].bwd_tp_s, k0 * (2 * ar + rcf) + (sp ? ar / 2 : 0), 1e-15);
      CHECK_NEAR(c[2].fwd_tp_s, k2 * 2 * ar + (sp ? ar / 2 : 0) + 3 * ce, 1e-15);
      CHECK_NEAR(c[2].bwd_tp_s, k2 * (2 * ar + rcf) + (sp ? ar / 2 : ar), 1e-15);
      /* the activation sent between stages is sequence-split with SP */
      CHECK_NEAR(c[1].act_bytes, sp ? n / 4 : n, 0);
      /* the simulated step carries it: per rank M x (fwd + bwd) TP seconds, and the shares
       * still add up to one */
      sim_result_t r;
      CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
      CHECK_NEAR(r.stages[1].tp_comm_s, 2 * (c[1].fwd_tp_s + c[1].bwd_tp_s), 1e-15);
      CHECK_NEAR(r.compute_share + r.tp_comm_share + r.pipeline_idle_share + r.exposed_comm_share +
                     r.optimizer_share,
                 1, 1e-9);
      CHECK_TRUE(r.tp_comm_share > 0);
      sim_result_free(&r);
      sim_costs_free(c, lay.pp);
    }
  /* T = 1: no TP time at all */
  CHECK_EQ_INT(layout_init(&lay, &small, 3, 1, 3, 1, 2, 4, NULL, err, sizeof err), 0);
  sim_options_t o = sim_options_default();
  sim_stage_cost_t *c = NULL;
  CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c), 0);
  for (int s = 0; c && s < 3; s++) CHECK_TRUE(c[s].fwd_tp_s == 0 && c[s].bwd_tp_s == 0);
  sim_costs_free(c, lay.pp);
}

/* --tp-overlap (Megatron-LM's and NeuronX Distributed's column-parallel backward), in the two
 * limits where the answer is closed-form. Compute so slow that every GEMM outlasts every
 * collective: each column-parallel product's collectives hide (SP: a layer's backward exposes
 * only the row-parallel products' two all-gathers, ar/2 each on this ring; without SP nothing;
 * the head nothing), and the compute grows by overlap_slowdown x the hidden seconds (SP: per
 * column-parallel product the input gathered again and its gradient reduce-scattered, ar;
 * without SP its all-reduce, ar). Compute so fast that nothing hides: SP exposes the re-gathers
 * as well (3 ar a layer, the head ar), without SP the same 2 ar as Strata's. And userbuffers
 * (--tp-comm-overlap, SP only): slow, every other collective pipelined in 4 chunks (T = 4 for
 * the ring exchanges, 4 for the reduce-scatter pipeline) exposes a chunk, ar/8: a layer's
 * forward 4 of them, ar/2, its backward the row-parallel products' two re-gathers, ar/4, and the
 * compute grows by 0.25 x the 3/4 of each pipelined collective that hides (forward 1.5 ar,
 * backward 0.75 ar + the column-parallel 2 ar); fast, nothing hides: 2 ar forward, 3 ar
 * backward. Without SP it is --tp-overlap. */
static void test_tp_overlap_limits(void) {
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &small, 12, 4, 3, 1, 2, 4, NULL, err, sizeof err), 0);
  const double n = 2.0 * 16 * 32 * 2, ar = 2 * 3 * 1e-6 + 2 * 0.75 * n / 1e9;
  for (int slow = 0; slow < 2; slow++)
    for (int sp = 0; sp < 2; sp++) {
      device_t d = one_link();
      const double peak = slow ? 1e6 : 1e20;
      for (int i = 0; i < DEV_DTYPE_COUNT; i++) d.peak_flops[i] = peak;
      d.hbm_Bps = slow ? 1e12 : 1e20;
      d.overlap_slowdown = 0.25;
      sim_options_t o = sim_options_default();
      o.sequence_parallel = sp;
      sim_stage_cost_t *c0 = NULL, *c1 = NULL;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c0), 0);
      o.tp_overlap = 1;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c1), 0);
      if (!c0 || !c1) return;
      const int k1 = layout_stage_layers(&lay, 1), k2 = layout_stage_layers(&lay, 2);
      const double layer = slow ? (sp ? ar : 0) : (sp ? 3 * ar : 2 * ar);
      const double head = slow ? 0 : (sp ? ar : ar);
      /* (the fast limit's GEMMs take 1e-16 s, not 0: the tolerance is 1e-12 s) */
      CHECK_NEAR(c1[1].bwd_tp_s, k1 * layer, 1e-12);
      CHECK_NEAR(c1[2].bwd_tp_s - c1[1].bwd_tp_s / k1 * k2, head, 1e-12);
      CHECK_NEAR(c1[1].fwd_tp_s, c0[1].fwd_tp_s, 0); /* the forward is unchanged */
      /* the compute of a middle stage: unchanged, plus 0.25 x the hidden seconds */
      const double hidden = slow ? 2 * ar : 0;
      CHECK_NEAR((c1[1].bwd_s - c1[1].bwd_tp_s) - (c0[1].bwd_s - c0[1].bwd_tp_s), k1 * 0.25 * hidden,
                 1e-12);
      sim_stage_cost_t *c2 = NULL;
      o.tp_overlap = SIM_TP_OVERLAP_UB;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c2), 0);
      if (!c2) return;
      const double uf = !sp ? c1[1].fwd_tp_s / k1 : slow ? ar / 2 : 2 * ar,
                   ub = !sp ? c1[1].bwd_tp_s / k1 : slow ? ar / 4 : 3 * ar;
      CHECK_NEAR(c2[1].fwd_tp_s, k1 * uf, 1e-12);
      CHECK_NEAR(c2[1].bwd_tp_s, k1 * ub, 1e-12);
      const double hf = sp && slow ? 1.5 * ar : 0, hb = sp ? (slow ? 2.75 * ar : 0) : hidden;
      CHECK_NEAR((c2[1].fwd_s - c2[1].fwd_tp_s) - (c0[1].fwd_s - c0[1].fwd_tp_s), k1 * 0.25 * hf, 1e-12);
      CHECK_NEAR((c2[1].bwd_s - c2[1].bwd_tp_s) - (c0[1].bwd_s - c0[1].bwd_tp_s), k1 * 0.25 * hb, 1e-12);
      sim_costs_free(c0, lay.pp);
      sim_costs_free(c1, lay.pp);
      sim_costs_free(c2, lay.pp);
    }
}

/* The stage costs of lay on d under --precision bf16 (c0) and fp8 (c1); 0 when both built. */
static int bf16_fp8_costs(const layout_t *lay, const device_t *d, sim_stage_cost_t **c0,
                          sim_stage_cost_t **c1) {
  sim_options_t o = sim_options_default();
  o.precision = MEM_PREC_BF16;
  CHECK_EQ_INT(sim_build_costs(lay, d, &o, c0), 0);
  o.precision = MEM_PREC_FP8;
  CHECK_EQ_INT(sim_build_costs(lay, d, &o, c1), 0);
  return *c0 && *c1 ? 0 : -1;
}

/* --precision fp8 against bf16 on one rank per stage (GPT layer, N = b s = 32 tokens, C = 32):
 * the four GEMMs (24 N C^2 flops forward, twice that backward) run at the fp8 peak, here twice
 * the bf16 one; each adds a cast-transpose kernel of 4 bytes per element -- forward of its
 * input (qkv C, attproj C, fc C, fcproj 4C columns: 7 N C elements), backward of its output
 * gradient (3C, C, 4C, C: 9 N C). With memory free only the math differs, with math free only
 * the casts; the attention, the embedding and the head are the same in both. */
static void test_fp8_gemms(void) {
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &small, 3, 1, 3, 1, 2, 4, NULL, err, sizeof err), 0);
  const double N = 32, C = 32, gemm = 24 * N * C * C;
  for (int math_free = 0; math_free < 2; math_free++) {
    device_t d = one_link();
    d.peak_flops[DEV_BF16] = math_free ? 1e30 : 1e12;
    d.peak_flops[DEV_FP8] = math_free ? 1e30 : 2e12;
    d.hbm_Bps = math_free ? 1e9 : 1e30;
    sim_stage_cost_t *c0 = NULL, *c1 = NULL;
    if (bf16_fp8_costs(&lay, &d, &c0, &c1)) return;
    const int k1 = layout_stage_layers(&lay, 1), k2 = layout_stage_layers(&lay, 2);
    const double df = math_free ? -4 * 7 * N * C / 1e9 : gemm / 2 / 1e12,
                 db = math_free ? -4 * 9 * N * C / 1e9 : gemm / 1e12; /* bf16 - fp8, a layer */
    CHECK_NEAR(c0[1].fwd_s - c1[1].fwd_s, k1 * df, 1e-9 * fabs(k1 * df));
    CHECK_NEAR(c0[1].bwd_s - c1[1].bwd_s, k1 * db, 1e-9 * fabs(k1 * db));
    CHECK_NEAR(c0[2].fwd_s - c1[2].fwd_s, k2 * df, 1e-9 * fabs(k2 * df)); /* the head: no change */
    sim_costs_free(c0, lay.pp);
    sim_costs_free(c1, lay.pp);
  }
  /* with an efficiency model (no tile or wave quantisation, memory free) the FP8 GEMMs run at
   * mm_fp8_eff of the fp8 peak: at half mm_eff and twice the peak they cost what bf16's do;
   * without the figure (0) they take mm_eff, the bf16 time halved */
  for (int own = 0; own < 2; own++) {
    device_t d = one_link();
    d.peak_flops[DEV_FP8] = 2e12;
    d.hbm_Bps = 1e30;
    d.mm_eff = 0.5;
    d.mm_fp8_eff = own ? 0.25 : 0;
    sim_stage_cost_t *c0 = NULL, *c1 = NULL;
    if (bf16_fp8_costs(&lay, &d, &c0, &c1)) return;
    const int k1 = layout_stage_layers(&lay, 1);
    const double df = own ? 0 : gemm / 2 / 0.5e12; /* bf16 - fp8, a layer's forward */
    CHECK_NEAR(c0[1].fwd_s - c1[1].fwd_s, k1 * df, 1e-9 * c0[1].fwd_s);
    CHECK_NEAR(c0[1].bwd_s - c1[1].bwd_s, 2 * k1 * df, 1e-9 * c0[1].bwd_s);
    sim_costs_free(c0, lay.pp);
    sim_costs_free(c1, lay.pp);
  }
  double w, g, opt;
  memory_precision_bytes(MEM_PREC_FP8, &w, &g, &opt);
  CHECK_TRUE(w == 2 && g == 4 && opt == 12);
}

/* One layer's forward FLOPs on one of t ranks (b = 2, s = 16, C = 32, H = 4): LayerNorms
 * 8NC and residuals NC on every rank, the four matmuls 24 N C^2 / t, the causal attention
 * (4 b tri C + 5 b H tri) / t with tri = s(s+1)/2 = 136, GELU 40 N C / t. */
static double layer_flops(double t) {
  const double N = 32, C = 32, tri = 136, b = 2, H = 4;
  return 2 * 8 * N * C + 2 * N * C + 24 * N * C * C / t + (4 * b * tri * C + 5 * b * H * tri) / t +
         40 * N * C / t;
}
static double attention_flops(double t) { return (4 * 2 * 136 * 32.0 + 5 * 2 * 4 * 136.0) / t; }
/* The MLP's: fc and fcproj 16 N C^2 / t, GELU 40 N C / t. */
static double mlp_flops(double t) { return (16 * 32 * 32 * 32.0 + 40 * 32 * 32.0) / t; }

static void test_recompute_flops(void) {
  device_t d = one_link();
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &small, 12, 4, 3, 1, 2, 4, NULL, err, sizeof err), 0);
  CHECK_NEAR(attention_flops(4), 10064, 0);
  double fwd_none = 0;
  for (int rc = 0; rc < MEM_RECOMPUTE_COUNT; rc++) {
    sim_options_t o = sim_options_default();
    o.recompute = (mem_recompute_t)rc;
    sim_stage_cost_t *c = NULL;
    CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c), 0);
    if (!c) return;
    const int k = layout_stage_layers(&lay, 1);
    CHECK_NEAR(c[1].fwd_flops, k * layer_flops(4), 1e-6);
    if (rc == 0) fwd_none = c[1].fwd_flops;
    double extra = rc == MEM_RECOMPUTE_SELECTIVE       ? attention_flops(4)
                   : rc == MEM_RECOMPUTE_SELECTIVE_MLP ? attention_flops(4) + mlp_flops(4)
                   : rc == MEM_RECOMPUTE_FULL          ? layer_flops(4)
                                                       : 0;
    CHECK_NEAR(c[1].fwd_flops, fwd_none, 0); /* forward unchanged */
    CHECK_NEAR(c[1].bwd_flops - 2 * c[1].fwd_flops, k * extra, 1e-6);
    /* HFU's FLOPs: the model's (T = 1 count) plus L x M x D recomputations */
    double t1 = rc == MEM_RECOMPUTE_SELECTIVE       ? attention_flops(1)
                : rc == MEM_RECOMPUTE_SELECTIVE_MLP ? attention_flops(1) + mlp_flops(1)
                : rc == MEM_RECOMPUTE_FULL          ? layer_flops(1)
                                                    : 0;
    CHECK_NEAR(sim_step_flops(&lay, (mem_recompute_t)rc) - sim_step_flops(&lay, MEM_RECOMPUTE_NONE),
               6 * 2 * 1 * t1, 1e-6);
    sim_result_t r;
    CHECK_EQ_INT(sim_simulate(&lay, &d, &o, d.hbm_bytes, &r, err, sizeof err), 0);
    CHECK_NEAR(r.hw_flops - r.model_flops, 6 * 2 * t1, 1e-6);
    CHECK_TRUE(rc == 0 ? r.hfu == r.mfu : r.hfu > r.mfu);
    sim_result_free(&r);
    sim_costs_free(c, lay.pp);
  }
  /* the model FLOPs do not depend on T */
  layout_t one;
  CHECK_EQ_INT(layout_init(&one, &small, 3, 1, 3, 1, 2, 4, NULL, err, sizeof err), 0);
  CHECK_NEAR(sim_step_flops(&lay, MEM_RECOMPUTE_NONE), sim_step_flops(&one, MEM_RECOMPUTE_NONE), 0);
}

/* Bad combinations name the numbers and the fix. */
static void test_check_tp(void) {
  char err[512];
  layout_model_t m = small;
  CHECK_EQ_INT(sim_check_tp(&m, 3, 0, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "--tp 3 does not divide the model's 4 attention heads") != NULL);
  CHECK_EQ_INT(sim_check_tp(&m, 1, 1, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "--sequence-parallel needs --tp 2 or more") != NULL);
  m.ctx = 18;
  CHECK_EQ_INT(sim_check_tp(&m, 4, 1, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "sequence of 18 tokens over --tp 4") != NULL);
  CHECK_EQ_INT(sim_check_tp(&m, 4, 0, err, sizeof err), 0);
  CHECK_EQ_INT(sim_check_tp(&m, 2, 1, err, sizeof err), 0);
}

/* T beyond an instance is a warning naming the slower link; inside one, none. */
static void test_tp_link_note(void) {
  device_t d;
  CHECK_EQ_INT(device_builtin("trn1", &d), 0); /* 16 chips per instance */
  layout_model_t m = {50257, 2048, 32, 32, 4096};
  layout_t lay;
  char err[256], note[1024];
  CHECK_EQ_INT(layout_init(&lay, &m, 64, 16, 2, 2, 1, 2, NULL, err, sizeof err), 0);
  CHECK_EQ_INT(sim_tp_link_note(&lay, &d, note, sizeof note), 0);
  CHECK_EQ_INT(layout_init(&lay, &m, 64, 32, 2, 1, 1, 1, NULL, err, sizeof err), 0);
  CHECK_EQ_INT(sim_tp_link_note(&lay, &d, note, sizeof note), 1);
  CHECK_TRUE(strstr(note, "--tp 32 is larger than a trn1 instance (16 chips)") &&
             strstr(note, "inter-instance network"));
}

/* The fit suggestion keeps T = 1 when a TP-free layout fits and turns to TP when none does
 * (gpt2 on 8 trn1 chips, global batch 8; figures of the Strata accounting). */
static void test_suggestion_turns_to_tp(void) {
  layout_model_t m;
  CHECK_EQ_INT(layout_model_preset("gpt2", &m), 0);
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 8, 1, 1, 8, 1, 8, NULL, err, sizeof err), 0);
  mem_options_t o = memory_options(SCHED_1F1B, 0, 25 << 20);
  mem_search_t search = {16, 1};
  mem_suggestion_t sg;
  const double GiB = 1073741824.0;
  CHECK_EQ_INT(memory_suggest_opt(&lay, &o, &search, 2 * GiB, &sg), 0);
  CHECK_EQ_INT(sg.tp, 1);
  CHECK_TRUE(sg.peak_bytes <= 2 * GiB);
  /* at 1 GiB no T = 1 layout fits, whatever the recomputation */
  CHECK_EQ_INT(memory_suggest_opt(&lay, &o, &search, 1 * GiB, &sg), 0);
  CHECK_TRUE(sg.tp > 1 && sg.peak_bytes <= 1 * GiB);
  layout_t fit;
  CHECK_EQ_INT(layout_init(&fit, &m, 8, sg.tp, sg.pp, sg.dp, sg.micro, 8, NULL, err, sizeof err), 0);
  mem_options_t fo = o;
  fo.kind = sg.kind;
  fo.zero = sg.zero;
  fo.sequence_parallel = sg.sequence_parallel;
  fo.recompute = sg.recompute;
  CHECK_NEAR(memory_peak_opt(&fit, &fo, NULL), sg.peak_bytes, 0);
  char msg[2048];
  CHECK_EQ_INT(memory_fit_check_opt(&lay, &o, &search, 1 * GiB, msg, sizeof msg), -1);
  CHECK_TRUE(strstr(msg, "--tp ") != NULL);
}

int main(void) {
  test_llama_bytes_and_mode_order();
  test_korthikanti_bytes_per_mode();
  test_strata_fp32_split();
  test_rank_state_divided_by_t();
  test_tp_comm_per_layer();
  test_tp_overlap_limits();
  test_fp8_gemms();
  test_recompute_flops();
  test_check_tp();
  test_tp_link_note();
  test_suggestion_turns_to_tp();
  return test_finish("sim_tp");
}
