/* Model families, presets, precision and the efficiency model: every preset's parameter count
 * against the published figure, Llama's FLOPs and tensor-parallel split, the bytes per
 * parameter of each --precision, the shipped device JSON files equal to the built-in profiles
 * (argv[1] = worker/sim/devices), GEMM tile and wave quantisation, the collective algorithm
 * choice, and that a profile without an efficiency model (the cpu one) keeps the ideal
 * roofline and ring. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "layout.h"
#include "memory_model.h"
#include "simulate.h"
#include "test_util.h"

/* Published parameter counts. GPT-2: the released checkpoints (Hugging Face model cards'
 * exact counts: 124,439,808 / 354,823,168 / 774,030,080 / 1,557,611,200). GPT-3: Brown et al.
 * 2020, Table 2.1 (1.3B, 6.7B, 13.0B, 175.0B, rounded in the paper). Llama 2: the released
 * checkpoints (6,738,415,616 / 13,015,864,320 / 68,976,648,192). Llama 3: the released
 * checkpoints (8,030,261,248 / 70,553,706,496). */
static void test_preset_params(void) {
  const struct {
    const char *name;
    double published, tol;
  } t[] = {{"gpt2", 124439808, 0.005},        {"gpt2-medium", 354823168, 0.005},
           {"gpt2-large", 774030080, 0.005},  {"gpt2-xl", 1557611200, 0.005},
           /* GPT-3's figures are rounded to 2-3 digits: 1.3B means [1.25, 1.35) (our count
            * 1.316B is 1.2% above 1.3); 13.0B: the paper's d_model 5140 is not divisible by its
            * 40 heads, so the preset uses Megatron-LM's 5120, 12.85B, 1.1% below */
           {"gpt3-1.3b", 1.3e9, 0.013},       {"gpt3-6.7b", 6.7e9, 0.0075},
           {"gpt3-13b", 13.0e9, 0.012},       {"gpt3-175b", 175.0e9, 0.005},
           {"llama2-7b", 6738415616, 0.005},  {"llama2-13b", 13015864320, 0.005},
           {"llama2-70b", 68976648192, 0.005}, {"llama3-8b", 8030261248, 0.005},
           {"llama3-70b", 70553706496, 0.005}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    layout_model_t m;
    CHECK_EQ_INT(layout_model_preset(t[i].name, &m), 0);
    char err[256];
    CHECK_EQ_INT(layout_model_validate(&m, err, sizeof err), 0);
    double p = (double)layout_params_total(&m);
    if (fabs(p / t[i].published - 1) > t[i].tol)
      test_fail(__FILE__, __LINE__, "%s: %.0f parameters, published %.0f (%.2f%%)", t[i].name, p,
                t[i].published, 100 * (p / t[i].published - 1));
    test_checks++;
  }
  /* the GPT-2 and Llama counts are exact */
  layout_model_t m;
  layout_model_preset("llama2-7b", &m);
  CHECK_EQ_INT((int)(layout_params_total(&m) - 6738415616LL), 0);
  layout_model_preset("gpt2", &m);
  CHECK_EQ_INT((int)(layout_params_total(&m) - 124439808LL), 0);
  /* every listed name resolves; the old "7b" alias stays */
  for (int i = 0; layout_model_preset_names[i]; i++)
    CHECK_EQ_INT(layout_model_preset(layout_model_preset_names[i], &m), 0);
  CHECK_EQ_INT(layout_model_preset("7b", &m), 0);
  CHECK_EQ_INT(m.dim, 4096);
  CHECK_EQ_INT(layout_model_preset("llama9", &m), -1);
}

/* Llama's per-token training FLOPs are 6 x (non-embedding matmul parameters + lm_head) plus
 * the causal attention, its TP split divides the matmuls, and kv heads must divide heads. */
static void test_llama_ops(void) {
  layout_model_t m;
  layout_model_preset("llama2-7b", &m);
  m.ctx = 1;
  layout_op_t ops[LAYOUT_MAX_OPS];
  int n = layout_layer_ops(&m, 1, 1, ops);
  double mm = 0;
  for (int i = 0; i < n; i++)
    if (ops[i].mm_count > 0 && ops[i].scores_elems == 0) mm += ops[i].flops;
  /* forward matmul FLOPs per token = 2 x the layer's matmul weights (no biases) */
  CHECK_NEAR(mm, 2.0 * (layout_params_per_layer(&m) - 2 * m.dim), 1);
  layout_op_t t2[LAYOUT_MAX_OPS];
  int n2 = layout_layer_ops_tp(&m, 1, 1, 4, 0, t2);
  CHECK_EQ_INT(n2, n);
  for (int i = 0; i < n; i++)
    if (ops[i].mm_count > 0 && ops[i].scores_elems == 0) CHECK_NEAR(t2[i].flops, ops[i].flops / 4, 1);
  /* GQA: llama2-70b's 8 kv heads make k and v 1/8 of q */
  layout_model_preset("llama2-70b", &m);
  n = layout_layer_ops(&m, 1, 16, ops);
  CHECK_NEAR(ops[1].mm_n, 8192 + 2 * 1024, 0);
  char err[256];
  m.kv_heads = 7;
  CHECK_EQ_INT(layout_model_validate(&m, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "kv_heads 7 does not divide heads 64") != NULL);
  /* untied head: no tied copy on the last stage, lm_head counted */
  layout_model_preset("llama3-8b", &m);
  layout_t lay;
  CHECK_EQ_INT(layout_init(&lay, &m, 2, 1, 2, 1, 1, 1, NULL, err, sizeof err), 0);
  CHECK_EQ_INT((int)(layout_stage_params(&lay, 0) + layout_stage_params(&lay, 1) -
                     layout_params_total(&m)),
               0);
}

/* --tie-embeddings. Megatron-LM's H100 weak-scaling table (README, 2024-07, GPT with a
 * 131072-token vocabulary) names its models by the untied count: 7.1B (30 layers, 4096) and
 * 462B (112 layers, 18432), 6.58B and 459.0B tied. Whatever the family and the choice, the
 * stages' parameters sum to the model's once the tied copy is taken off, and every rank's
 * gradient regions add up to its parameters (the buckets the DP reduction sends). */
static void test_tie_embeddings(void) {
  const struct {
    int layers, dim, heads;
    double published;
  } mt[] = {{30, 4096, 32, 7.1e9}, {112, 18432, 144, 462e9}};
  for (int i = 0; i < 2; i++) {
    layout_model_t m = {.vocab = 131072, .ctx = 4096, .layers = mt[i].layers,
                        .heads = mt[i].heads, .dim = mt[i].dim, .tie = LAYOUT_TIE_UNTIED};
    CHECK_TRUE(fabs(layout_params_total(&m) / mt[i].published - 1) < 0.005);
    layout_model_t tied = m;
    tied.tie = LAYOUT_TIE_ARCH;
    CHECK_NEAR((double)(layout_params_total(&m) - layout_params_total(&tied)), 131072.0 * mt[i].dim, 0);
  }
  layout_model_t m;
  layout_model_preset("llama3-8b", &m);
  const int64_t llama_untied = layout_params_total(&m);
  m.tie = LAYOUT_TIE_TIED;
  CHECK_NEAR((double)(llama_untied - layout_params_total(&m)), 128256.0 * 4096, 0);
  layout_tie_t t;
  CHECK_EQ_INT(layout_parse_tie("no", &t), 0);
  CHECK_EQ_INT(t, LAYOUT_TIE_UNTIED);
  CHECK_EQ_INT(layout_parse_tie("yes", &t), 0);
  CHECK_EQ_INT(t, LAYOUT_TIE_TIED);
  CHECK_EQ_INT(layout_parse_tie("untied", &t), -1);
  char err[256];
  m.tie = 3;
  CHECK_EQ_INT(layout_model_validate(&m, err, sizeof err), -1);

  device_t dev;
  CHECK_EQ_INT(device_resolve("h100", &dev, err, sizeof err), 0);
  sim_options_t opt = sim_options_default();
  const layout_arch_t archs[] = {LAYOUT_ARCH_GPT, LAYOUT_ARCH_LLAMA};
  const int ties[] = {LAYOUT_TIE_ARCH, LAYOUT_TIE_TIED, LAYOUT_TIE_UNTIED};
  const int shapes[][2] = {{1, 1}, {2, 1}, {1, 3}, {2, 2}}; /* T, P */
  for (int a = 0; a < 2; a++)
    for (int k = 0; k < 3; k++)
      for (int sh = 0; sh < 4; sh++) {
        layout_model_t mm = {1000, 32, 6, 4, 64, archs[a], 2, 0, ties[k]};
        const int T = shapes[sh][0], P = shapes[sh][1];
        layout_t lay;
        CHECK_EQ_INT(layout_init(&lay, &mm, T * P, T, P, 1, 1, 1, NULL, err, sizeof err), 0);
        int64_t sum = 0;
        for (int s = 0; s < P; s++) sum += layout_stage_params(&lay, s);
        const int copy = layout_model_tied(&mm) && P > 1;
        CHECK_NEAR((double)(sum - layout_params_total(&mm)), copy ? 1000.0 * 64 : 0, 0);
        sim_stage_cost_t *c;
        CHECK_EQ_INT(sim_build_costs(&lay, &dev, &opt, &c), 0);
        for (int s = 0; s < P; s++) {
          double bytes = 0;
          for (int r = 0; r < c[s].nregions; r++) bytes += c[s].regions[r].bytes;
          if (fabs(bytes - 4.0 * (double)layout_rank_params(&lay, s)) > 0.5)
            test_fail(__FILE__, __LINE__, "%s tie %d T %d P %d stage %d: regions %.0f bytes, params %lld",
                      layout_arch_name(archs[a]), ties[k], T, P, s, bytes,
                      (long long)layout_rank_params(&lay, s));
          test_checks++;
        }
        sim_costs_free(c, P);
      }
}

/* Bytes per parameter of each precision in the memory model (mixed accounting, one rank). */
static void test_precision_memory(void) {
  layout_model_t m;
  layout_model_preset("gpt3-1.3b", &m);
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 1, 1, 1, 1, 1, 1, NULL, err, sizeof err), 0);
  double P = (double)layout_rank_params(&lay, 0);
  const struct {
    mem_precision_t p;
    double w, g, o;
  } t[] = {{MEM_PREC_FP32, 4, 4, 8}, {MEM_PREC_BF16, 2, 4, 12}, {MEM_PREC_BF16_SR, 2, 2, 4},
           {MEM_PREC_NONE, 2, 2, 12}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    mem_options_t o = memory_options(SCHED_1F1B, 0, 25 << 20);
    o.accounting = MEM_ACCOUNT_MIXED;
    o.precision = t[i].p;
    o.dtype = t[i].p == MEM_PREC_FP32 ? DEV_FP32 : DEV_BF16;
    mem_stage_t ms;
    memory_stage_opt(&lay, 0, &o, &ms);
    CHECK_NEAR(ms.params_bytes, t[i].w * P, 0);
    CHECK_NEAR(ms.grads_bytes, t[i].g * P, 0);
    CHECK_NEAR(ms.optimizer_bytes, t[i].o * P, 0);
    /* --grad-dtype bf16: a bf16 gradient buffer, 2 bytes whatever the precision's */
    o.grad_bf16 = 1;
    memory_stage_opt(&lay, 0, &o, &ms);
    CHECK_NEAR(ms.grads_bytes, 2 * P, 0);
    CHECK_NEAR(ms.params_bytes, t[i].w * P, 0);
  }
  /* fp8: bf16 weights, and each layer weight twice more as FP8 (row-wise and transposed), not
   * the embedding or the head; per tensor-parallel rank and stage */
  layout_t l2;
  CHECK_EQ_INT(layout_init(&l2, &m, 4, 2, 2, 1, 1, 1, NULL, err, sizeof err), 0);
  for (int s = 0; s < 2; s++) {
    mem_options_t o = memory_options(SCHED_1F1B, 0, 25 << 20);
    o.accounting = MEM_ACCOUNT_MIXED;
    o.precision = MEM_PREC_FP8;
    o.dtype = DEV_BF16;
    mem_stage_t ms;
    memory_stage_opt(&l2, s, &o, &ms);
    const double Ps = (double)layout_rank_params(&l2, s);
    const double Pl = layout_stage_layers(&l2, s) * ((12.0 * 2048 * 2048 + 7 * 2048) / 2 + 6 * 2048);
    CHECK_NEAR(ms.params_bytes, 2 * Ps + 2 * Pl, 0);
    CHECK_NEAR(ms.grads_bytes, 4 * Ps, 0);
  }
  mem_precision_t p;
  CHECK_EQ_INT(memory_parse_precision("bf16-sr", &p), 0);
  CHECK_EQ_INT(p, MEM_PREC_BF16_SR);
  CHECK_EQ_INT(memory_parse_precision("fp16", &p), -1);
  /* optimizer time: bf16-sr moves half the bytes of fp32 */
  double b32, f32, g32, bsr, fsr, gsr;
  sim_precision_costs(MEM_PREC_FP32, &b32, &f32, &g32);
  sim_precision_costs(MEM_PREC_BF16_SR, &bsr, &fsr, &gsr);
  CHECK_NEAR(bsr, b32 / 2, 0);
  CHECK_NEAR(gsr, 2, 0);
  CHECK_NEAR(g32, 4, 0);
}

/* --precision fp8 keeps each FP8 GEMM's input as its 1-byte copy: per layer and s b h, the
 * QKV and first MLP GEMMs' inputs (1 / r each, r = t with sequence parallelism), the output
 * projection's (1 / t) and the second MLP GEMM's (GPT 4 / t, Llama F / h / t) a byte less than
 * bf16; selective-mlp recomputes that last one, full recomputation keeps none of them. */
static void test_fp8_activations(void) {
  const struct {
    const char *preset;
    int tp, sp;
    mem_recompute_t rc;
    double per_sbh; /* bf16 - fp8 bytes of a layer, over s b h */
  } t[] = {{"gpt3-1.3b", 1, 0, MEM_RECOMPUTE_NONE, 7},
           {"gpt3-1.3b", 2, 1, MEM_RECOMPUTE_NONE, 3.5},
           {"gpt3-1.3b", 2, 0, MEM_RECOMPUTE_NONE, 2 + 2.5},
           {"gpt3-1.3b", 1, 0, MEM_RECOMPUTE_SELECTIVE_MLP, 3},
           {"gpt3-1.3b", 2, 0, MEM_RECOMPUTE_FULL, 0},
           {"llama2-7b", 1, 0, MEM_RECOMPUTE_NONE, 3 + 11008.0 / 4096},
           {"llama2-7b", 2, 1, MEM_RECOMPUTE_SELECTIVE, (3 + 11008.0 / 4096) / 2}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    layout_model_t m;
    layout_model_preset(t[i].preset, &m);
    layout_t lay;
    char err[256];
    CHECK_EQ_INT(layout_init(&lay, &m, t[i].tp, t[i].tp, 1, 1, 1, 1, NULL, err, sizeof err), 0);
    mem_options_t o = memory_options(SCHED_1F1B, 0, 25 << 20);
    o.accounting = MEM_ACCOUNT_MIXED;
    o.dtype = DEV_BF16;
    o.fused_attention = 1;
    o.sequence_parallel = t[i].sp;
    o.recompute = t[i].rc;
    o.precision = MEM_PREC_BF16;
    double bf16 = memory_stage_act_bytes(&lay, 0, &o);
    o.precision = MEM_PREC_FP8;
    double fp8 = memory_stage_act_bytes(&lay, 0, &o);
    double sbh = (double)m.ctx * m.dim;
    CHECK_NEAR(bf16 - fp8, m.layers * t[i].per_sbh * sbh, 1e-9 * bf16);
  }
}

/* The shipped JSON profiles hold exactly the built-in figures. */
static void test_json_equals_builtin(const char *dir) {
  const char *names[] = {"a100", "h100", "trn1", "trn1-core", "trn2", "trn3", "trn4"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s.json", dir, names[i]);
    device_t j, b;
    if (device_load_json(path, &j, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
    CHECK_EQ_INT(device_builtin(names[i], &b), 0);
    const double a[] = {j.peak_flops[0], j.peak_flops[1], j.peak_flops[2], j.hbm_bytes, j.hbm_Bps,
                        j.intra_Bps, j.intra_lat_s, j.inter_Bps, j.inter_lat_s, j.op_overhead_s,
                        j.mm_eff, j.mm_fp8_eff, j.attn_fused_eff, j.hbm_eff, j.intra_bus_eff, j.inter_bus_eff,
                        j.coll_base_s, j.overlap_slowdown};
    const double c[] = {b.peak_flops[0], b.peak_flops[1], b.peak_flops[2], b.hbm_bytes, b.hbm_Bps,
                        b.intra_Bps, b.intra_lat_s, b.inter_Bps, b.inter_lat_s, b.op_overhead_s,
                        b.mm_eff, b.mm_fp8_eff, b.attn_fused_eff, b.hbm_eff, b.intra_bus_eff, b.inter_bus_eff,
                        b.coll_base_s, b.overlap_slowdown};
    for (size_t k = 0; k < sizeof a / sizeof a[0]; k++) CHECK_NEAR(a[k], c[k], 1e-9 * fabs(c[k]));
    CHECK_EQ_INT(j.chips_per_instance, b.chips_per_instance);
    CHECK_EQ_INT(j.mm_tile_m, b.mm_tile_m);
    CHECK_EQ_INT(j.mm_tile_n, b.mm_tile_n);
    CHECK_EQ_INT(j.mm_units, b.mm_units);
    CHECK_EQ_INT(j.coll_auto, b.coll_auto);
    CHECK_EQ_INT(j.projection, b.projection);
    CHECK_EQ_INT(b.projection, !strcmp(names[i], "trn4"));
  }
}

/* Tile and wave quantisation of a GEMM, and the ideal factors without a model. */
static void test_matmul_eff(void) {
  device_t d;
  device_builtin("a100", &d);
  /* 108 SMs, 256 x 128 tiles: 2048 x 6912 is 8 x 54 = 432 tiles = 4 full waves */
  CHECK_NEAR(device_matmul_eff(&d, 2048, 6912, 2048, 1), 0.8, 1e-12);
  /* one more row: a ninth, nearly empty tile row (tile) and 486 tiles in 5 waves (wave) */
  double e = device_matmul_eff(&d, 2049, 6912, 2048, 1);
  CHECK_NEAR(e, 0.8 * (2049.0 * 6912) / (9 * 256.0 * 6912) * (486.0 / 540), 1e-12);
  /* a small GEMM: one tile on 108 SMs */
  CHECK_NEAR(device_matmul_eff(&d, 64, 64, 64, 1), 0.8 * (64.0 * 64) / (256 * 128) / 108, 1e-12);
  /* at the fp8 rate a profile's mm_fp8_efficiency replaces mm_efficiency, quantisation kept;
   * without one (a100) the bf16 figure holds, and other dtypes never take it */
  CHECK_NEAR(device_matmul_eff_dt(&d, DEV_FP8, 2049, 6912, 2048, 1), e, 1e-12);
  device_t h;
  device_builtin("h100", &h);
  CHECK_NEAR(device_matmul_eff_dt(&h, DEV_FP8, 2049, 6912, 2048, 1),
             device_matmul_eff(&h, 2049, 6912, 2048, 1) * 0.67 / 0.75, 1e-12);
  CHECK_NEAR(device_matmul_eff_dt(&h, DEV_BF16, 2049, 6912, 2048, 1),
             device_matmul_eff(&h, 2049, 6912, 2048, 1), 0);
  device_t z;
  memset(&z, 0, sizeof z);
  z.mm_fp8_eff = 0.5; /* ignored without an efficiency model */
  CHECK_NEAR(device_matmul_eff(&z, 64, 64, 64, 1), 1, 0);
  CHECK_NEAR(device_matmul_eff_dt(&z, DEV_FP8, 64, 64, 64, 1), 1, 0);
  CHECK_EQ_INT(device_has_eff(&z), 0);
}

/* Collectives: without a model the classic ring; with one the bus bandwidth, the fixed cost,
 * and the cheapest algorithm (hierarchical for a group with several ranks per instance). */
static void test_collectives(void) {
  device_t d;
  device_builtin("h100", &d);
  int ranks[64];
  for (int i = 0; i < 64; i++) ranks[i] = i;
  const double n = 1e9;
  /* inside one node: ring on NVLink at 80% of 450 GB/s, or the tree if cheaper */
  double B = 450e9 * 0.8, a = 2e-6;
  double ring = 14 * a + 2.0 * 7 / 8 * n / B;
  CHECK_NEAR(device_allreduce_time(&d, ranks, 8, n), ring + 8e-6, 1e-12);
  /* 64 ranks over 8 nodes: hierarchical beats the flat ring over the network */
  double flat = 126 * 15e-6 + 2.0 * 63 / 64 * n / (400e9 / 8 * 0.9);
  double h = device_allreduce_time(&d, ranks, 64, n);
  CHECK_TRUE(h < flat);
  double intra = 7 * a + 7.0 / 8 * n / B; /* reduce-scatter, and all-gather, inside a node */
  double cross = 14 * 15e-6 + 2.0 * 7 / 8 * (n / 8) / (400e9 / 8 * 0.9);
  double tree = 2 * 3 * 15e-6 + 2 * (n / 8) / (400e9 / 8 * 0.9);
  CHECK_NEAR(h, 2 * intra + (cross < tree ? cross : tree) + 8e-6, 1e-12);
  /* the same device without the model: the ring of SIMULATION.md */
  device_t z = d;
  z.mm_eff = z.hbm_eff = z.intra_bus_eff = z.inter_bus_eff = z.coll_base_s = 0;
  z.coll_auto = 0;
  CHECK_NEAR(device_allreduce_time(&z, ranks, 8, n), 14 * a + 2.0 * 7 / 8 * n / 450e9, 1e-12);
}

/* The cpu profile carries no efficiency model: the simulation equals the roofline one; its
 * overlapped buckets cost the backward their whole time (the core moves them). */
static void test_cpu_noop(void) {
  device_t d;
  CHECK_EQ_INT(device_calibrate_cpu(&d), 0);
  CHECK_EQ_INT(device_has_eff(&d), 0);
  CHECK_EQ_INT(d.coll_auto, 0);
  CHECK_NEAR(d.coll_base_s + d.attn_fused_eff + d.hbm_eff, 0, 0);
  CHECK_NEAR(d.overlap_slowdown, 1, 0);
  CHECK_NEAR(device_op_time(&d, DEV_FP32, 1e9, 1e6),
             fmax(1e9 / d.peak_flops[DEV_FP32], 1e6 / d.hbm_Bps), 1e-15);
}

int main(int argc, char **argv) {
  test_preset_params();
  test_llama_ops();
  test_tie_embeddings();
  test_precision_memory();
  test_fp8_activations();
  test_json_equals_builtin(argc > 1 ? argv[1] : "worker/sim/devices");
  test_matmul_eff();
  test_collectives();
  test_cpu_noop();
  return test_finish("sim_models");
}
