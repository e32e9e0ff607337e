/* The event simulation against closed forms: GPipe and 1F1B bubble (p-1)/(m+p-1) and step
 * (m+p-1)(f+b) for uniform stages with free links; a simulated DP all-reduce equals the ring
 * formula; ZeRO-1 is reduce-scatter + all-gather, overlapped as Megatron-LM's distributed
 * optimizer with zero_overlap; bucketed overlap hides all but the last
 * bucket; activation transfers add alpha-beta time on the critical path; whole-model runs are
 * self-consistent (tokens/s, shares sum to 1, model FLOPs); ranks time-sharing cores follow a
 * hand-worked processor-sharing schedule. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simulate.h"
#include "test_util.h"

static device_t free_links(void) {
  device_t d;
  memset(&d, 0, sizeof d);
  snprintf(d.name, sizeof d.name, "ideal");
  for (int i = 0; i < DEV_DTYPE_COUNT; i++) d.peak_flops[i] = 1e12;
  d.hbm_bytes = 1e12;
  d.hbm_Bps = 1e12;
  d.chips_per_instance = 1 << 20;
  d.intra_Bps = d.inter_Bps = 1e300;
  d.intra_lat_s = d.inter_lat_s = 0;
  return d;
}

/* Uniform hand-built stage costs: fwd f, bwd b, no gradients, no optimizer. */
static sim_stage_cost_t *uniform_costs(int P, double f, double b, double act_bytes) {
  sim_stage_cost_t *c = calloc((size_t)P, sizeof *c);
  for (int s = 0; s < P; s++) {
    c[s].fwd_s = f;
    c[s].bwd_s = b;
    c[s].fwd_flops = 1;
    c[s].bwd_flops = 2;
    c[s].act_bytes = act_bytes;
  }
  return c;
}

static void test_bubble_closed_form(sched_kind_t kind) {
  layout_model_t m = {64, 8, 16, 2, 16};
  device_t d = free_links();
  sim_options_t o = sim_options_default();
  o.kind = kind;
  const int Ps[] = {1, 2, 3, 4, 8}, Ms[] = {1, 2, 3, 4, 8, 16};
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 6; j++) {
      int P = Ps[i], M = Ms[j];
      layout_t lay;
      char err[256];
      CHECK_EQ_INT(layout_init(&lay, &m, P, 1, P, 1, M, M, NULL, err, sizeof err), 0);
      sim_stage_cost_t *c = uniform_costs(P, 1.0, 2.0, 100);
      sim_result_t r;
      CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
      double bubble = (double)(P - 1) / (M + P - 1);
      CHECK_NEAR(r.step_s, (M + P - 1) * 3.0, 1e-9);
      CHECK_NEAR(r.pipeline_idle_share, bubble, 1e-12);
      CHECK_NEAR(r.compute_share, 1 - bubble, 1e-12);
      CHECK_NEAR(r.exposed_comm_share, 0, 1e-12);
      sim_result_free(&r);
      free(c);
    }
}

static void test_activation_transfer_on_critical_path(void) {
  /* P=2, M=1: F on stage 0, transfer, F+B on stage 1, transfer, B on stage 0. */
  layout_model_t m = {64, 8, 4, 2, 16};
  device_t d = free_links();
  d.intra_lat_s = 0.25;
  d.intra_Bps = 1000;
  sim_options_t o = sim_options_default();
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 2, 1, 2, 1, 1, 1, NULL, err, sizeof err), 0);
  sim_stage_cost_t *c = uniform_costs(2, 1.0, 2.0, 500); /* 0.25 + 500/1000 = 0.75 s per hop */
  sim_result_t r;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
  /* then the gradient-norm all-reduce of 8 bytes over the 2-stage pipeline: 2a + 8/B */
  CHECK_NEAR(r.step_s, 1 + 0.75 + 1 + 2 + 0.75 + 2 + (2 * 0.25 + 8.0 / 1000), 1e-12);
  sim_result_free(&r);
  free(c);
}

static device_t ring_device(double a, double B) {
  device_t d = free_links();
  d.intra_lat_s = a;
  d.intra_Bps = B;
  return d;
}

static void test_simulated_allreduce_equals_ring_formula(void) {
  layout_model_t m = {64, 8, 4, 2, 16};
  const int ps[] = {2, 3, 4, 8};
  const double ns[] = {1e3, 4e6, 1e9};
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++) {
      int p = ps[i];
      double n = ns[j], a = 7e-6, B = 2.5e10;
      device_t d = ring_device(a, B);
      layout_t lay;
      char err[256];
      CHECK_EQ_INT(layout_init(&lay, &m, p, 1, 1, p, 1, p, NULL, err, sizeof err), 0);
      sim_stage_cost_t *c = uniform_costs(1, 0, 0, 0);
      sim_region_t reg = {n, 0, 0, 0};
      c[0].regions = &reg;
      c[0].nregions = 1;
      c[0].param_bytes = n;
      c[0].gather_bytes = n;
      sim_options_t o = sim_options_default();
      o.bucket_bytes = 1e18;
      sim_result_t r;
      CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
      double ring = 2 * (p - 1) * a + 2.0 * (p - 1) / p * n / B;
      CHECK_NEAR(r.step_s, ring, 1e-12 * ring);
      CHECK_NEAR(r.exposed_comm_share, 1, 1e-12);
      CHECK_NEAR(r.stages[0].comm_busy_s, ring, 1e-12 * ring);
      sim_result_free(&r);
      /* ZeRO-1: reduce-scatter of the gradients, the gradient-norm all-reduce (8 bytes) over
       * all ranks, then all-gather of the parameters */
      o.zero = 1;
      CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
      double rs = (p - 1) * a + (double)(p - 1) / p * n / B;
      double norm = 2 * (p - 1) * a + 2.0 * (p - 1) / p * 8 / B;
      CHECK_NEAR(r.step_s, 2 * rs + norm, 1e-12 * rs);
      sim_result_free(&r);
      free(c);
    }
}

static void test_overlap_hides_all_but_last_bucket(void) {
  /* P=1, D=2, one micro-batch, backward 4 s producing 4 equal regions at 1, 2, 3, 4 s; each
   * bucket's all-reduce takes 0.5 s (n / B = 0.5, no latency). Overlapped: buckets finish at
   * 1.5, 2.5, 3.5, 4.5 -> step 4.5. Not overlapped: 4 + 4 x 0.5 = 6. */
  layout_model_t m = {64, 8, 4, 2, 16};
  device_t d = ring_device(0, 1e6);
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 2, 1, 1, 2, 1, 2, NULL, err, sizeof err), 0);
  sim_stage_cost_t *c = uniform_costs(1, 0, 4.0, 0);
  sim_region_t reg[4] = {{5e5, 1, 0, 0}, {5e5, 2, 0, 0}, {5e5, 3, 0, 0}, {5e5, 4, 0, 0}};
  c[0].regions = reg;
  c[0].nregions = 4;
  sim_options_t o = sim_options_default();
  o.bucket_bytes = 5e5;
  sim_result_t r;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
  CHECK_NEAR(r.step_s, 4.5, 1e-12);
  CHECK_NEAR(r.stages[0].exposed_comm_s, 0.5, 1e-12);
  CHECK_NEAR(r.stages[0].comm_busy_s, 2.0, 1e-12);
  sim_result_free(&r);
  /* interference: the first three buckets run 0.5 s each beside backward (the last starts at
   * its end), so backward ends at 4 + 1.5 x overlap_slowdown; the step is the later of that and
   * the last bucket (4.5); without the interference term, 4.5 (rows: slowdown, term, step) */
  const double slow[][3] = {{1, 1, 5.5}, {0.5, 1, 4.75}, {0.2, 1, 4.5}, {1, 0, 4.5}};
  for (int i = 0; i < 4; i++) {
    d.overlap_slowdown = slow[i][0];
    o.interference = (int)slow[i][1];
    CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
    CHECK_NEAR(r.step_s, slow[i][2], 1e-12);
    sim_result_free(&r);
  }
  o.interference = 1;
  d.overlap_slowdown = 0;
  o.overlap = 0;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
  CHECK_NEAR(r.step_s, 6.0, 1e-12);
  sim_result_free(&r);
  /* buckets of 1 MB: two all-reduces of 1 s, ready at 2 and 4 -> done at 3 and 5 */
  o.overlap = 1;
  o.bucket_bytes = 1e6;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
  CHECK_NEAR(r.step_s, 5.0, 1e-12);
  sim_result_free(&r);
  /* grad_sync.c's rules: a region not contiguous with the next (brk) is started when the next
   * one is reported; a skipped region (the tied wte) is not bucketed. Huge buckets: bucket 1 =
   * region 0, ready when region 1 arrives at 2 s, done 2.5; bucket 2 = region 1 at the end of
   * backward (4 s), done 4.5; region 2 (skip) and region 3 never reduced here. */
  reg[0].brk = 1;
  reg[2].skip = 1;
  reg[3].skip = 1;
  o.bucket_bytes = 1e18;
  o.record_events = 1;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
  CHECK_NEAR(r.step_s, 4.5, 1e-12);
  CHECK_NEAR(r.stages[0].comm_busy_s, 1.0, 1e-12);
  int nred = 0;
  for (int i = 0; i < r.nevents; i++)
    if (r.events[i].kind == SIM_EV_DP_REDUCE && r.events[i].rank == 0) {
      CHECK_NEAR(r.events[i].start_s, nred == 0 ? 2.0 : 4.0, 1e-12);
      nred++;
    }
  CHECK_EQ_INT(nred, 2);
  sim_result_free(&r);
  free(c);
}

/* ZeRO-1 overlapped (zero_overlap, Megatron-LM's --overlap-grad-reduce --overlap-param-gather):
 * D=2, M=1, backward 4 s with 4 regions of 0.5 MB final at 1, 2, 3, 4 s, buckets of 0.5 MB, no
 * latency, 1 MB/s: a bucket's reduce-scatter takes 0.25 s, the 2 MB all-gather 1 s, its first
 * bucket 0.25 s; the norm all-reduce (8 bytes over all N ranks) 2 (N-1)/N 8e-6 s.
 *  - P=1, forward f: buckets done at 1.25 .. 4.25 after the forward; the gather brings the
 *    first bucket by the forward's start (0.25 s late) and the whole stage by its end (1 - f
 *    late): step f + 4.25 + norm + max(0.25, 1 - f): f = 2 -> 6.5, f = 0.5 -> 5.25.
 *  - Strata's ZeRO-1 (no overlap), f = 2: 2 + 4, reduce-scatter of 2 MB 1 s, norm, all-gather
 *    1 s: 8.
 *  - P=2, f = 0.5 a stage: stage 0 forward 0-0.5, stage 1 0.5-1 and backward 1-5, stage 0
 *    backward 5-9, its last bucket done at 9.25; stage 0's gather is 0.5 s late (1 - 0.5),
 *    stage 1's not at all (its forward starts at 0.5 and ends at 1): step 9.75 + norm.
 *  - P=1, f = 2, overlap_slowdown 1: the three buckets reduced beside backward (0.25 s each)
 *    move its end from 6 to 6.75, after the last bucket (6.25); the gather runs 0.75 s beside
 *    the forward after its 0.25 s wait, which then ends 0.25 + 0.75 later: 6.75 + norm + 1. */
static void test_zero_overlap(void) {
  layout_model_t m = {64, 8, 4, 2, 16};
  device_t d = ring_device(0, 1e6);
  layout_t lay;
  char err[256];
  sim_region_t reg[4] = {{5e5, 1, 0, 0}, {5e5, 2, 0, 0}, {5e5, 3, 0, 0}, {5e5, 4, 0, 0}};
  const struct {
    int P, overlap;
    double f, slowdown, step;
  } cases[] = {{1, 1, 2.0, 0, 6.5}, {1, 1, 0.5, 0, 5.25}, {1, 0, 2.0, 0, 8.0}, {2, 1, 0.5, 0, 9.75},
               {1, 1, 2.0, 1, 7.75}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int P = cases[k].P, N = 2 * P;
    CHECK_EQ_INT(layout_init(&lay, &m, N, 1, P, 2, 1, 2, NULL, err, sizeof err), 0);
    sim_stage_cost_t *c = uniform_costs(P, cases[k].f, 4.0, 0);
    for (int st = 0; st < P; st++) {
      c[st].regions = reg;
      c[st].nregions = 4;
      c[st].param_bytes = c[st].gather_bytes = 2e6;
    }
    sim_options_t o = sim_options_default();
    o.zero = 1;
    o.zero_overlap = cases[k].overlap;
    o.bucket_bytes = 5e5;
    o.bucket_given = 1;
    d.overlap_slowdown = cases[k].slowdown;
    sim_result_t r;
    CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
    double norm = 2.0 * (N - 1) / N * 8 / 1e6;
    CHECK_NEAR(r.step_s, cases[k].step + norm, 1e-9);
    CHECK_NEAR(r.stages[0].comm_busy_s, 1.0, 1e-9); /* reduce-scatters: 4 x 0.25 s, or one of 1 s */
    sim_result_free(&r);
    free(c);
  }
}

/* Interleaved buckets: P=2, D=2, M=2, V=2, no forward time, backward 4 s per micro-batch (2 s a
 * chunk pass), regions of 0.5 s all-reduces at 1, 2, 3, 4 s into the stage's backward. M = P:
 * all forwards first, then backward passes (chunk 1 m0, chunk 1 m1, chunk 0 m0, chunk 0 m1):
 * rank 1 runs 0-2, 2-4, 4-6, 6-8, rank 0 2-4, 4-6, 6-8, 8-10. The regions at 1 and 2 s belong to
 * chunk 1 (the stage's later layers), final in its last pass: rank 0 at 5 and 6, rank 1 at 3 and
 * 4; those at 3 and 4 s to chunk 0: rank 0 at 9 and 10, rank 1 at 7 and 8. Stage 0's last bucket
 * ends at 10.5 (counted from the end of backward only: 9, 10, 10.5, 11 -> 11.5). */
static void test_interleaved_buckets(void) {
  layout_model_t m = {64, 8, 4, 2, 16};
  device_t d = ring_device(0, 1e6);
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 4, 1, 2, 2, 2, 4, NULL, err, sizeof err), 0);
  sim_stage_cost_t *c = uniform_costs(2, 0, 4.0, 0);
  sim_region_t reg[4] = {{5e5, 1, 0, 0}, {5e5, 2, 0, 0}, {5e5, 3, 0, 0}, {5e5, 4, 0, 0}};
  for (int st = 0; st < 2; st++) c[st].regions = reg, c[st].nregions = 4;
  sim_options_t o = sim_options_default();
  o.vstages = 2;
  o.bucket_bytes = 5e5;
  o.record_events = 1;
  sim_result_t r;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
  const double want[2][4] = {{5, 6, 9, 10}, {3, 4, 7, 8}};
  int n[2] = {0, 0};
  for (int i = 0; i < r.nevents; i++) {
    const sim_event_t *e = &r.events[i];
    if (e->kind != SIM_EV_DP_REDUCE || e->rank > 1) continue;
    if (n[e->rank] < 4) CHECK_NEAR(e->start_s, want[e->rank][n[e->rank]], 1e-9);
    n[e->rank]++;
  }
  CHECK_EQ_INT(n[0], 4);
  CHECK_EQ_INT(n[1], 4);
  CHECK_NEAR(r.stages[0].comm_busy_s, 2.0, 1e-9);
  CHECK_TRUE(r.step_s >= 10.5 && r.step_s < 10.5 + 1e-3); /* + the 8-byte norm all-reduce */
  sim_result_free(&r);
  free(c);
}

static void test_whole_model_is_consistent(void) {
  layout_model_t m;
  layout_model_preset("gpt2", &m);
  device_t d;
  device_builtin("trn2", &d);
  const int cfg[][3] = {{1, 1, 1}, {2, 2, 4}, {4, 2, 8}, {3, 1, 6}};
  for (int i = 0; i < 4; i++) {
    int P = cfg[i][0], D = cfg[i][1], M = cfg[i][2];
    layout_t lay;
    char err[256];
    CHECK_EQ_INT(layout_init(&lay, &m, P * D, 1, P, D, M, 2 * D * M, NULL, err, sizeof err), 0);
    for (int k = 0; k < 2; k++)
      for (int z = 0; z < 2; z++) {
        sim_options_t o = sim_options_default();
        o.kind = (sched_kind_t)k;
        o.zero = z;
        sim_result_t r;
        CHECK_EQ_INT(sim_simulate(&lay, &d, &o, d.hbm_bytes, &r, err, sizeof err), 0);
        CHECK_TRUE(r.step_s > 0);
        CHECK_NEAR(r.tokens_per_s, (double)lay.batch * m.ctx / r.step_s, 1e-9 * r.tokens_per_s);
        CHECK_NEAR(r.compute_share + r.pipeline_idle_share + r.exposed_comm_share +
                       r.optimizer_share,
                   1, 1e-9);
        CHECK_TRUE(r.pipeline_idle_share >= -1e-12 && r.exposed_comm_share >= -1e-12);
        CHECK_TRUE(r.mfu > 0 && r.mfu < 1);
        double flops = 0;
        for (int s = 0; s < P; s++) flops += layout_stage_train_flops(&lay, s, lay.micro_batch);
        CHECK_NEAR(r.model_flops, flops * M * D, 1e-9 * r.model_flops);
        CHECK_TRUE(r.fits);
        sim_result_free(&r);
      }
  }
}

/* Megatron's dropout in the mixed accounting of a GPT model: on a memory-bound roofline device
 * each layer's forward moves 2.5 more passes over the (b, H, T, T) probabilities (read, write,
 * a 1-byte mask) and a half-element mask in each of the two residual kernels (sequence-split
 * with SP); backward twice that; Llama models and Strata's own accounting have none. The mixed
 * accounting's fp32 loss, every model. And the unfused attention's own score traffic: four
 * passes (the QK^T kernel's write, the softmax's read and write, att@V's read). */
static void test_dropout_loss_and_score_traffic(void) {
  device_t d = free_links();
  for (int i = 0; i < DEV_DTYPE_COUNT; i++) d.peak_flops[i] = 1e30;
  d.hbm_Bps = 1e9;
  const char *presets[] = {"gpt2", "llama2-7b"};
  for (int a = 0; a < 2; a++)
    for (int sp = 0; sp < 2; sp++) {
      layout_model_t m;
      layout_model_preset(presets[a], &m);
      m.layers = 2, m.ctx = 64;
      const int tp = 2, b = 3;
      layout_op_t ops[LAYOUT_MAX_OPS];
      int n = layout_layer_ops_tp(&m, b, m.ctx, tp, sp, ops);
      double H = m.heads, T = m.ctx, C = m.dim, kv = C / H * layout_model_kv_heads(&m);
      for (int i = 0; i < n; i++)
        if (!strcmp(ops[i].name, "attention")) {
          CHECK_NEAR(ops[i].scores_elems, 4 * b * H * T * T / tp, 0);
          CHECK_NEAR(ops[i].elems, (2 * b * T * C + 2 * b * T * kv) / tp + 4 * b * H * T * T / tp, 1e-6);
        }
      layout_t lay;
      char err[256];
      CHECK_EQ_INT(layout_init(&lay, &m, tp, tp, 1, 1, 1, b, NULL, err, sizeof err), 0);
      sim_options_t o = sim_options_default();
      o.dtype = DEV_BF16;
      o.sequence_parallel = sp;
      sim_stage_cost_t *own = NULL, *mixed = NULL;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &own), 0);
      o.memory = MEM_ACCOUNT_MIXED;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &mixed), 0);
      if (!own || !mixed) return;
      double extra = a ? 0 : m.layers * 2 * (2.5 * b * H * T * T / tp + 2 * 0.5 * b * T * C / (sp ? tp : 1)) / d.hbm_Bps;
      /* the loss in Megatron-LM's fp32 kernels: 52 bytes a logit (forward the cast 6, max 4,
       * subtract 8, exp 8, sum 4, divide 8; backward the gradient product 8 and the cast back
       * 6) against Strata's own 12 (2 bf16 elements forward, twice that backward), charged a
       * third forward, two thirds backward */
      extra += (52 - 12) / 3.0 * b * T * layout_padded_vocab(m.vocab, tp) / tp / d.hbm_Bps;
      CHECK_NEAR(mixed[0].fwd_s - own[0].fwd_s, extra, 1e-9 * own[0].fwd_s);
      CHECK_NEAR(mixed[0].bwd_s - own[0].bwd_s, 2 * extra, 1e-9 * own[0].bwd_s);
      sim_costs_free(own, 1);
      sim_costs_free(mixed, 1);
    }
}

/* A preset on device `dev` laid out T x P x D with `micro` micro-batches of a global `batch`. */
static void preset_on(const char *preset, const char *dev, int T, int P, int D, int micro, int batch,
                      device_t *d, layout_t *lay) {
  layout_model_t m;
  layout_model_preset(preset, &m);
  device_builtin(dev, d);
  char err[256];
  CHECK_EQ_INT(layout_init(lay, &m, T * P * D, T, P, D, micro, batch, NULL, err, sizeof err), 0);
}

/* A GPT-2 preset on device `dev` over 2 stages x D replicas, 2 micro-batches of 2 sequences. */
static void gpt2_two_stages(const char *preset, const char *dev, int D, device_t *d, layout_t *lay) {
  preset_on(preset, dev, 1, 2, D, 2, 4 * D, d, lay);
}

/* --grad-dtype bf16 (grad_bf16): the DP gradient reductions carry 2 bytes per gradient instead
 * of fp32's 4 -- every bucket region and ZeRO's reduce-scatter halve, the ZeRO all-gather of the
 * parameters and the optimizer keep fp32's -- and the simulated step gets no longer. bf16-sr
 * already reduces 2-byte gradients: there grad_bf16 changes nothing. */
static void test_grad_bf16_halves_gradient_bytes(void) {
  device_t d;
  layout_t lay;
  char err[256];
  gpt2_two_stages("gpt2", "trn2", 2, &d, &lay);
  for (int z = 0; z < 2; z++)
    for (int p = MEM_PREC_FP32; p <= MEM_PREC_BF16_SR; p++) {
      sim_options_t o = sim_options_default();
      o.zero = z;
      o.precision = (mem_precision_t)p;
      sim_stage_cost_t *c32 = NULL, *c16 = NULL;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c32), 0);
      o.grad_bf16 = 1;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c16), 0);
      if (!c32 || !c16) return;
      const double f = p == MEM_PREC_BF16_SR ? 1 : 0.5;
      for (int s = 0; s < 2; s++) {
        CHECK_NEAR(c16[s].param_bytes, f * c32[s].param_bytes, 1e-9 * c32[s].param_bytes);
        CHECK_NEAR(c16[s].gather_bytes, c32[s].gather_bytes, 0);
        CHECK_NEAR(c16[s].opt_s, c32[s].opt_s, 0);
        CHECK_EQ_INT(c16[s].nregions, c32[s].nregions);
        for (int i = 0; i < c32[s].nregions; i++)
          CHECK_NEAR(c16[s].regions[i].bytes, f * c32[s].regions[i].bytes, 1e-9 * c32[s].regions[i].bytes);
      }
      sim_result_t r32, r16;
      CHECK_EQ_INT(sim_run(&lay, &d, c32, &o, &r32, err, sizeof err), 0);
      CHECK_EQ_INT(sim_run(&lay, &d, c16, &o, &r16, err, sizeof err), 0);
      CHECK_TRUE(r16.step_s <= r32.step_s);
      sim_result_free(&r32);
      sim_result_free(&r16);
      sim_costs_free(c32, 2);
      sim_costs_free(c16, 2);
    }
}

/* ZeRO-1's parameter all-gather carries the weights the forward reads: fp32's 4 bytes each, the
 * bf16 copy's 2 under bf16, bf16-sr and fp8 (Megatron-LM's distributed optimizer and DeepSpeed
 * gather the bf16 parameters after the fp32 update), while bf16's and fp8's reduce-scatter keeps
 * fp32 gradients; a D x ceil(params / D) padded shard each. */
static void test_zero_gathers_the_weights_bytes(void) {
  device_t d;
  layout_t lay;
  gpt2_two_stages("gpt2", "h100", 3, &d, &lay);
  const struct {
    mem_precision_t p;
    double weight, grad;
  } t[] = {{MEM_PREC_NONE, 4, 4}, {MEM_PREC_FP32, 4, 4}, {MEM_PREC_BF16, 2, 4},
           {MEM_PREC_BF16_SR, 2, 2}, {MEM_PREC_FP8, 2, 4}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    CHECK_NEAR(sim_precision_weight_bytes(t[i].p), t[i].weight, 0);
    sim_options_t o = sim_options_default();
    o.zero = 1;
    o.precision = t[i].p;
    sim_stage_cost_t *c = NULL;
    CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c), 0);
    if (!c) return;
    for (int s = 0; s < 2; s++) {
      const double shard = 3 * ceil((double)layout_rank_params(&lay, s) / 3);
      CHECK_NEAR(c[s].gather_bytes, t[i].weight * shard, 0);
      CHECK_NEAR(c[s].param_bytes, t[i].grad * shard, 0);
    }
    sim_costs_free(c, 2);
  }
}

/* The DP bucket reductions of `rank` in a run (bucket index >= 0; the tied sum's is -1). */
static int count_buckets(const sim_result_t *r, int rank) {
  int n = 0;
  for (int i = 0; i < r->nevents; i++)
    n += r->events[i].kind == SIM_EV_DP_REDUCE && r->events[i].rank == rank && r->events[i].micro >= 0;
  return n;
}

/* ZeRO-1 overlapped without a bucket size asked for takes Megatron-Core's DDP buckets:
 * max(40M, 1M x D) parameters on the first stage's first model chunk, one bucket on later stages
 * and later chunks; an asked-for size (bucket_given) is kept. gpt2 on P 2 x D 2 in bf16 (fp32 gradients: 4 bytes a parameter). */
static void test_zero_overlap_takes_megatron_buckets(void) {
  CHECK_NEAR(sim_megatron_bucket(0, 0, 2), 4e7, 0);
  CHECK_NEAR(sim_megatron_bucket(0, 0, 40), 4e7, 0);
  CHECK_NEAR(sim_megatron_bucket(0, 0, 48), 4.8e7, 0);
  CHECK_TRUE(isinf(sim_megatron_bucket(1, 0, 48)));
  CHECK_TRUE(isinf(sim_megatron_bucket(0, 1, 48)));
  device_t d;
  layout_t lay;
  char err[256];
  gpt2_two_stages("gpt2", "h100", 2, &d, &lay);
  sim_options_t o = sim_options_default();
  o.zero = 1;
  o.zero_overlap = 1;
  o.precision = MEM_PREC_BF16;
  o.record_events = 1;
  sim_stage_cost_t *c = NULL;
  CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c), 0);
  if (!c) return;
  sim_result_t mega, given, small;
  o.bucket_given = 0;
  CHECK_TRUE(sim_megatron_buckets(&o));
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &mega, err, sizeof err), 0);
  o.bucket_given = 1;
  CHECK_TRUE(!sim_megatron_buckets(&o));
  o.bucket_bytes = 4e7 * 4;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &given, err, sizeof err), 0);
  o.bucket_bytes = 25 * 1048576.0;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &small, err, sizeof err), 0);
  /* rank (d P + p) T + t: rank 0 is stage 0, rank 1 stage 1 */
  CHECK_EQ_INT(count_buckets(&mega, 0), count_buckets(&given, 0));
  CHECK_TRUE(count_buckets(&mega, 0) >= 2);
  CHECK_EQ_INT(count_buckets(&mega, 1), 1);
  CHECK_TRUE(count_buckets(&given, 1) > 1);
  CHECK_TRUE(count_buckets(&small, 0) > count_buckets(&mega, 0));
  sim_result_free(&mega);
  sim_result_free(&given);
  sim_result_free(&small);
  sim_costs_free(c, 2);
  /* interleaved gpt2-medium (2 chunks of 6 layers of 12.6M parameters a stage): each chunk has
   * buckets of its own; stage 1's chunks one each, stage 0's chunk 1 one, its chunk 0 one of 4
   * layers and one of the rest with wpe (one buffer cut at 40M: 4 buckets) */
  gpt2_two_stages("gpt2-medium", "h100", 2, &d, &lay);
  o.bucket_given = 0;
  o.vstages = 2;
  CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c), 0);
  if (!c) return;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &mega, err, sizeof err), 0);
  CHECK_EQ_INT(count_buckets(&mega, 1), 2);
  CHECK_EQ_INT(count_buckets(&mega, 0), 3);
  /* stage 1's chunk-1 bucket starts when that chunk's final backward pass has ended, before the
   * stage's last pass (chunk 0's) begins, not when chunk 0's first gradients are ready */
  double first_bucket = -1, last_bwd = -1;
  for (int i = 0; i < mega.nevents; i++) {
    const sim_event_t *e = &mega.events[i];
    if (e->rank == 1 && e->kind == SIM_EV_DP_REDUCE && e->micro == 0) first_bucket = e->start_s;
    if (e->rank == 1 && e->kind == SIM_EV_BWD && e->start_s > last_bwd) last_bwd = e->start_s;
  }
  CHECK_TRUE(first_bucket >= 0 && first_bucket <= last_bwd + 1e-12);
  sim_result_free(&mega);
  sim_costs_free(c, 2);
}

/* sim_op_times lists the ops the costs add up: on one stage without tensor parallelism, the
 * stage's forward is layers x the layer's ops + the embedding's + the head's, and so is its
 * backward (no recomputation); selective recomputation marks only the attention; a fused
 * attention's backward is 2.5 of its forwards. */
static void test_op_times_add_up_to_the_stage(void) {
  device_t d;
  layout_t lay;
  preset_on("gpt3-1.3b", "h100", 1, 1, 2, 2, 8, &d, &lay);
  sim_options_t o = sim_options_default();
  o.precision = MEM_PREC_BF16;
  o.memory = MEM_ACCOUNT_MIXED;
  o.fused_attention = 1;
  sim_op_time_t ops[3 * LAYOUT_MAX_OPS];
  int n = sim_op_times(&lay, &d, &o, ops, (int)(sizeof ops / sizeof ops[0]));
  CHECK_TRUE(n > 3);
  double f = 0, b = 0;
  int heads = 0;
  for (int i = 0; i < n; i++) {
    double k = strcmp(ops[i].part, "layer") ? 1 : lay.model.layers;
    f += k * ops[i].fwd_s, b += k * ops[i].bwd_s;
    heads += !strcmp(ops[i].part, "head") && !strcmp(ops[i].name, "logits");
    CHECK_TRUE(ops[i].bwd_s > ops[i].fwd_s && !ops[i].recomputed);
  }
  CHECK_EQ_INT(heads, 1);
  sim_stage_cost_t *c = NULL;
  CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c), 0);
  if (!c) return;
  CHECK_NEAR(c[0].fwd_s, f, 1e-12 * f);
  CHECK_NEAR(c[0].bwd_s, b, 1e-12 * b);
  sim_costs_free(c, 1);
  o.recompute = MEM_RECOMPUTE_SELECTIVE;
  n = sim_op_times(&lay, &d, &o, ops, (int)(sizeof ops / sizeof ops[0]));
  for (int i = 0; i < n; i++) CHECK_EQ_INT(ops[i].recomputed, !strcmp(ops[i].name, "attention"));
  CHECK_EQ_INT(sim_op_times(&lay, &d, &o, ops, 2), 2);
  /* a fused attention's backward computes the scores again (FlashAttention-2's five score-sized
   * GEMMs against the forward's two): 2.5x the forward's math, an unfused one's score GEMMs 2x;
   * at 2048 tokens the attention is compute-bound, so its times less the per-kernel overhead
   * are in those ratios */
  for (int fused = 1; fused >= 0; fused--) {
    o.fused_attention = fused;
    n = sim_op_times(&lay, &d, &o, ops, (int)(sizeof ops / sizeof ops[0]));
    int seen = 0;
    for (int i = 0; i < n; i++) {
      if (strcmp(ops[i].name, "attention")) continue;
      double r = (ops[i].bwd_s - d.op_overhead_s) / (ops[i].fwd_s - d.op_overhead_s);
      seen++;
      if (fused) CHECK_NEAR(r, 2.5, 1e-9);
      else CHECK_TRUE(r > 1.9 && r < 2.1);
    }
    CHECK_EQ_INT(seen, 1);
  }
}

/* The forward and backward of one layer of lay as sim_op_times lists them (T = 1: no TP). */
static void layer_times(const layout_t *lay, const device_t *d, const sim_options_t *o, double *f,
                        double *b) {
  sim_op_time_t ops[3 * LAYOUT_MAX_OPS];
  int n = sim_op_times(lay, d, o, ops, (int)(sizeof ops / sizeof ops[0]));
  *f = *b = 0;
  for (int i = 0; i < n; i++)
    if (!strcmp(ops[i].part, "layer")) *f += ops[i].fwd_s, *b += ops[i].bwd_s;
}

/* Stage 0's memory under the simulation options o. */
static void stage0_mem(const layout_t *lay, const sim_options_t *o, mem_stage_t *m) {
  mem_options_t mo = sim_mem_options(o);
  memory_stage_opt(lay, 0, &mo, m);
}

/* The sharded-data-parallel tests' job: gpt3-1.3b on 8 h100 replicas, 2 micro-batches of 32
 * sequences' batch, bf16 mixed precision with fused attention; ranks: the DP group. */
static void sharded_job(device_t *d, layout_t *lay, sim_options_t *o, int ranks[8]) {
  preset_on("gpt3-1.3b", "h100", 1, 1, 8, 2, 32, d, lay);
  *o = sim_options_default();
  o->precision = MEM_PREC_BF16;
  o->memory = MEM_ACCOUNT_MIXED;
  o->fused_attention = 1;
  for (int i = 0; i < 8; i++) ranks[i] = layout_rank(lay, 0, 0, i);
}

/* ZeRO-3 (FSDP FULL_SHARD), gpt3-1.3b over 8 replicas, 2 micro-batches: every micro-batch each
 * layer's bf16 parameters are gathered before its forward and its backward and its fp32
 * gradients reduce-scattered after its backward, the root unit's (embedding, head) with the first
 * layer's. Inside an h100 instance a layer's gather hides behind the previous layer's compute, so
 * the exposed time is exactly the first gather of each pass and the last reduce-scatter; over a
 * 1 GB/s link the rest shows too. No reduction or gather at the end of the step; the exposed
 * time counts as data-parallel communication; weights and gradients are split 8 ways but for
 * two layers' weights and one layer's gradients. */
static void test_full_shard(void) {
  device_t d;
  layout_t lay;
  char err[256];
  sim_options_t o;
  int ranks[8];
  sharded_job(&d, &lay, &o, ranks);
  const int L = lay.model.layers;
  const double lp = (double)layout_rank_layer_params(&lay.model, 1),
               params = (double)layout_rank_params(&lay, 0), x = params - L * lp;
  for (int slow_link = 0; slow_link < 2; slow_link++) {
    if (slow_link) d.chips_per_instance = 1, d.inter_Bps = 1e9;
    double f, b;
    layer_times(&lay, &d, &o, &f, &b);
    double ag = device_allgather_time(&d, ranks, 8, 2 * lp),
           ag1 = device_allgather_time(&d, ranks, 8, 2 * (lp + x)),
           rs = device_reduce_scatter_time(&d, ranks, 8, 4 * lp),
           rs1 = device_reduce_scatter_time(&d, ranks, 8, 4 * (lp + x));
    CHECK_TRUE(slow_link ? ag > f : ag < f);
    sim_stage_cost_t *c1 = NULL, *c3 = NULL;
    o.zero = 1;
    CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c1), 0);
    o.zero = MEM_ZERO_FULL_SHARD;
    CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c3), 0);
    if (!c1 || !c3) return;
    CHECK_NEAR(c1[0].fwd_dp_s + c1[0].bwd_dp_s, 0, 0);
    CHECK_NEAR(c3[0].fwd_dp_s, ag1 + (L - 1) * fmax(0, ag - f), 1e-9 * c3[0].fwd_dp_s);
    CHECK_NEAR(c3[0].bwd_dp_s, ag + (L - 1) * fmax(0, ag + rs - b) + rs1, 1e-9 * c3[0].bwd_dp_s);
    /* the hidden gathers slow the compute they run beside */
    CHECK_NEAR(c3[0].fwd_s - c1[0].fwd_s,
               c3[0].fwd_dp_s + d.overlap_slowdown * (L - 1) * fmin(ag, f), 1e-9 * c3[0].fwd_s);
    o.record_events = 1;
    sim_result_t r;
    CHECK_EQ_INT(sim_run(&lay, &d, c3, &o, &r, err, sizeof err), 0);
    int step_end = 0;
    for (int i = 0; i < r.nevents; i++)
      step_end += r.events[i].kind == SIM_EV_DP_REDUCE || r.events[i].kind == SIM_EV_ALLGATHER;
    CHECK_EQ_INT(step_end, 0);
    /* two micro-batches' exposed gathers, and the gradient norm's tiny all-reduce */
    double dp = 2 * (c3[0].fwd_dp_s + c3[0].bwd_dp_s), shown = r.exposed_comm_share * r.step_s;
    CHECK_TRUE(shown >= dp * (1 - 1e-9) && shown < dp + 1e-3);
    sim_result_free(&r);
    o.record_events = 0;
    sim_costs_free(c1, 1);
    sim_costs_free(c3, 1);
  }
  mem_stage_t m1, m3;
  o.zero = 1;
  stage0_mem(&lay, &o, &m1);
  o.zero = MEM_ZERO_FULL_SHARD;
  stage0_mem(&lay, &o, &m3);
  CHECK_NEAR(m1.params_bytes, 2 * params, 0);
  /* bf16 with an fp32 master copy: the shard is the master copy (in the optimizer's 12 bytes),
   * the bf16 weights exist only gathered */
  CHECK_NEAR(m3.params_bytes, 2 * (2 * lp + x), 0);
  o.precision = MEM_PREC_BF16_SR; /* no master copy: the shard is the bf16 weights themselves */
  stage0_mem(&lay, &o, &m3);
  CHECK_NEAR(m3.params_bytes, 2 * (ceil(params / 8) + 2 * lp + x), 0);
  o.precision = MEM_PREC_BF16;
  stage0_mem(&lay, &o, &m3);
  CHECK_NEAR(m3.grads_bytes, 4 * (ceil(params / 8) + lp + x), 0);
  CHECK_NEAR(m3.optimizer_bytes, m1.optimizer_bytes, 0);
  CHECK_TRUE(m3.total_bytes < m1.total_bytes);
}

/* ZeRO-2 (DeepSpeed stage 2), gpt3-1.3b over 8 replicas, 2 micro-batches: every micro-batch's
 * fp32 gradients are reduce-scattered in buckets of whole layers during its backward, each beside
 * the backward of the layers filling the next bucket, the last bucket (with the root's gradients)
 * exposed; with 25 MiB buckets a layer a bucket, with 3 layers' worth three. No reduction at the
 * end of the step, the parameters' all-gather after AdamW; the weights stay whole, the gradients
 * and optimizer state are split 8 ways, plus one bucket whole. */
static void test_shard_grads(void) {
  device_t d;
  layout_t lay;
  char err[256];
  sim_options_t o;
  int ranks[8];
  sharded_job(&d, &lay, &o, ranks);
  const int L = lay.model.layers;
  const double lp = (double)layout_rank_layer_params(&lay.model, 1),
               params = (double)layout_rank_params(&lay, 0), x = params - L * lp;
  for (int slow_link = 0; slow_link < 2; slow_link++) {
    if (slow_link) d.chips_per_instance = 1, d.inter_Bps = 1e9;
    for (int j = 1; j <= 3; j += 2) {
      o.bucket_bytes = j == 1 ? SIM_DEFAULT_BUCKET_MB * 1048576 : 3 * 4 * lp + 1;
      double f, b;
      layer_times(&lay, &d, &o, &f, &b);
      const int n = (L + j - 1) / j, tail = L - (n - 1) * j;
      double rs = device_reduce_scatter_time(&d, ranks, 8, 4 * j * lp),
             rs1 = device_reduce_scatter_time(&d, ranks, 8, 4 * (tail * lp + x));
      CHECK_TRUE(slow_link ? rs > j * b : rs < j * b);
      sim_stage_cost_t *c1 = NULL, *c2 = NULL;
      o.zero = 1;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c1), 0);
      o.zero = MEM_ZERO_SHARD_GRADS;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c2), 0);
      if (!c1 || !c2) return;
      CHECK_NEAR(c2[0].fwd_dp_s, 0, 0);
      CHECK_NEAR(c2[0].fwd_s, c1[0].fwd_s, 0);
      double exposed = (n - 1) * fmax(0, rs - j * b) + rs1;
      CHECK_NEAR(c2[0].bwd_dp_s, exposed, 1e-9 * exposed);
      /* the hidden reductions slow the backward they run beside */
      CHECK_NEAR(c2[0].bwd_s - c1[0].bwd_s, exposed + d.overlap_slowdown * (n - 1) * fmin(rs, j * b),
                 1e-9 * c2[0].bwd_s);
      CHECK_NEAR(c2[0].opt_s, c1[0].opt_s, 0);
      /* without overlap (DeepSpeed's overlap_comm off) every bucket holds up the backward */
      sim_stage_cost_t *c0 = NULL;
      o.overlap = 0;
      CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &c0), 0);
      o.overlap = 1;
      if (!c0) return;
      CHECK_NEAR(c0[0].bwd_dp_s, (n - 1) * rs + rs1, 1e-9 * c0[0].bwd_dp_s);
      CHECK_NEAR(c0[0].bwd_s - c1[0].bwd_s, c0[0].bwd_dp_s, 1e-9 * c0[0].bwd_s);
      sim_costs_free(c0, 1);
      o.record_events = 1;
      sim_result_t r;
      CHECK_EQ_INT(sim_run(&lay, &d, c2, &o, &r, err, sizeof err), 0);
      int reduce = 0, gather = 0;
      for (int i = 0; i < r.nevents; i++)
        reduce += r.events[i].kind == SIM_EV_DP_REDUCE, gather += r.events[i].kind == SIM_EV_ALLGATHER;
      CHECK_EQ_INT(reduce, 0);
      CHECK_EQ_INT(gather, 8);
      /* two micro-batches' exposed reductions, the gather, and the norm's tiny all-reduce */
      double ag = device_allgather_time(&d, ranks, 8, c2[0].gather_bytes);
      double dp = 2 * c2[0].bwd_dp_s + ag, shown = r.exposed_comm_share * r.step_s;
      CHECK_TRUE(shown >= dp * (1 - 1e-9) && shown < dp + 1e-3);
      sim_result_free(&r);
      o.record_events = 0;
      sim_costs_free(c1, 1);
      sim_costs_free(c2, 1);
    }
  }
  mem_stage_t m1, m2;
  o.bucket_bytes = SIM_DEFAULT_BUCKET_MB * 1048576;
  o.zero = 1;
  stage0_mem(&lay, &o, &m1);
  o.zero = MEM_ZERO_SHARD_GRADS;
  stage0_mem(&lay, &o, &m2);
  CHECK_NEAR(m2.params_bytes, 2 * params, 0);
  CHECK_NEAR(m2.grads_bytes, (2 + 4) * ceil(params / 8), 0); /* the bf16 partition and its fp32 copy */
  CHECK_NEAR(m2.optimizer_bytes, m1.optimizer_bytes, 0);
  CHECK_NEAR(m2.comm_bytes, o.bucket_bytes, 0);
  CHECK_TRUE(m2.total_bytes < m1.total_bytes);
}

/* ZeRO-3 with a shard group (FSDP HYBRID_SHARD), gpt3-1.3b over 16 h100 replicas (two
 * instances) sharded over 8: the gathers and reduce-scatters stay in an instance, and each
 * layer's gradient shard (1/8 of its fp32 gradients) is then all-reduced between the two copies,
 * on the reduce-scatter's chain (over a 2 GB/s network: longer than a layer's backward, which the
 * gathers and reduce-scatters alone are not); the states split 8 ways, not 16. A group of all 16 is
 * FULL_SHARD exactly; a group not dividing D is refused. */
static void test_hybrid_shard(void) {
  device_t d;
  layout_t lay;
  char err[256];
  preset_on("gpt3-1.3b", "h100", 1, 1, 16, 2, 64, &d, &lay);
  sim_options_t o = sim_options_default();
  o.precision = MEM_PREC_BF16;
  o.memory = MEM_ACCOUNT_MIXED;
  o.fused_attention = 1;
  o.zero = MEM_ZERO_FULL_SHARD;
  const int L = lay.model.layers;
  const double lp = (double)layout_rank_layer_params(&lay.model, 1),
               params = (double)layout_rank_params(&lay, 0), x = params - L * lp;
  int grp[8], reps[2] = {layout_rank(&lay, 0, 0, 0), layout_rank(&lay, 0, 0, 8)};
  for (int i = 0; i < 8; i++) grp[i] = layout_rank(&lay, 0, 0, i);
  d.inter_Bps = 2e9; /* a slow network between the instances: the copies' all-reduce shows */
  double f, b;
  layer_times(&lay, &d, &o, &f, &b);
  double ag = device_allgather_time(&d, grp, 8, 2 * lp), rs = device_reduce_scatter_time(&d, grp, 8, 4 * lp),
         rs1 = device_reduce_scatter_time(&d, grp, 8, 4 * (lp + x)),
         ar = device_allreduce_time(&d, reps, 2, 4 * lp / 8),
         ar1 = device_allreduce_time(&d, reps, 2, 4 * (lp + x) / 8);
  sim_stage_cost_t *full = NULL, *hyb = NULL, *all = NULL;
  CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &full), 0);
  o.shard_group = 8;
  CHECK_EQ_INT(sim_check_options(&lay, &o, err, sizeof err), 0);
  CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &hyb), 0);
  o.shard_group = 16;
  CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &all), 0);
  if (!full || !hyb || !all) return;
  double want = ag + (L - 1) * fmax(0, ag + rs + ar - b) + rs1 + ar1;
  CHECK_TRUE(ag + rs < b && ag + rs + ar > b);
  CHECK_NEAR(hyb[0].bwd_dp_s, want, 1e-9 * want);
  CHECK_NEAR(all[0].bwd_dp_s, full[0].bwd_dp_s, 0);
  CHECK_NEAR(all[0].fwd_s, full[0].fwd_s, 0);
  /* AdamW on twice the shard (less the per-kernel overhead) */
  CHECK_NEAR((hyb[0].opt_s - d.op_overhead_s) / (full[0].opt_s - d.op_overhead_s), 2, 1e-6);
  sim_costs_free(full, 1);
  sim_costs_free(hyb, 1);
  sim_costs_free(all, 1);
  mem_stage_t m8, m16;
  o.shard_group = 8;
  stage0_mem(&lay, &o, &m8);
  o.shard_group = 0;
  stage0_mem(&lay, &o, &m16);
  CHECK_NEAR(m8.optimizer_bytes, 12 * ceil(params / 8), 0);
  CHECK_NEAR(m16.optimizer_bytes, 12 * ceil(params / 16), 0);
  CHECK_NEAR(m8.grads_bytes, 4 * (ceil(params / 8) + lp + x), 0);
  /* a group of one: nothing sharded, every layer's gradients all-reduced over all 16 copies */
  o.shard_group = 1;
  CHECK_EQ_INT(sim_check_options(&lay, &o, err, sizeof err), 0);
  sim_stage_cost_t *one = NULL;
  CHECK_EQ_INT(sim_build_costs(&lay, &d, &o, &one), 0);
  int every[16];
  for (int i = 0; i < 16; i++) every[i] = layout_rank(&lay, 0, 0, i);
  if (one) {
    double ar16 = device_allreduce_time(&d, every, 16, 4 * lp), ar16x = device_allreduce_time(&d, every, 16, 4 * (lp + x));
    CHECK_NEAR(one[0].bwd_dp_s, (L - 1) * fmax(0, ar16 - b) + ar16x, 1e-9 * one[0].bwd_dp_s);
  }
  sim_costs_free(one, 1);
  stage0_mem(&lay, &o, &m8);
  CHECK_NEAR(m8.optimizer_bytes, 12 * params, 0);
  o.shard_group = 3;
  CHECK_EQ_INT(sim_check_options(&lay, &o, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "--shard-group 3 needs --zero 3 and must divide --dp 16") != NULL);
  o.shard_group = 8;
  o.zero = 1;
  CHECK_EQ_INT(sim_check_options(&lay, &o, err, sizeof err), -1);
}

/* The model states per device against independent formulas, gpt3-6.7b over Nd = 64 replicas,
 * bf16 with bf16 gradients: the ZeRO paper's (Rajbhandari et al. 2020, section 5 and Figure 1:
 * mixed-precision Adam with K = 12 bytes of optimizer state a parameter and 2-byte gradients),
 * (2 + 2 + K) Psi without ZeRO and 2 Psi + 2 Psi + K Psi / Nd with the optimizer state
 * partitioned (ZeRO-1); for ZeRO-2 DeepSpeed's own estimator of its stage 2
 * (runtime/zero/stage_1_and_2.py estimate_zero2_model_states_mem_needs, no offload):
 * 2 Psi + 18 Psi / Nd, its 16-bit gradient partition's fp32 copy included. */
static void test_zero_states_match_the_paper(void) {
  device_t d;
  layout_t lay;
  preset_on("gpt3-6.7b", "a100", 1, 1, 64, 1, 64, &d, &lay);
  sim_options_t o = sim_options_default();
  o.precision = MEM_PREC_BF16;
  o.memory = MEM_ACCOUNT_MIXED;
  o.grad_bf16 = 1;
  const double psi = (double)layout_rank_params(&lay, 0), nd = 64;
  const double want[3] = {16 * psi, 4 * psi + 12 * psi / nd, 2 * psi + 18 * psi / nd};
  for (int z = 0; z < 3; z++) {
    o.zero = z;
    mem_stage_t m;
    stage0_mem(&lay, &o, &m);
    CHECK_NEAR(m.params_bytes + m.grads_bytes + m.optimizer_bytes, want[z], 1e-6 * want[z]);
  }
}

static void test_1f1b_keeps_fewer_in_flight_than_gpipe(void) {
  layout_model_t m;
  layout_model_preset("gpt2", &m);
  device_t d;
  device_builtin("trn1", &d);
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 4, 1, 4, 1, 16, 32, NULL, err, sizeof err), 0);
  sim_options_t o = sim_options_default();
  sim_result_t g, f;
  o.kind = SCHED_GPIPE;
  CHECK_EQ_INT(sim_simulate(&lay, &d, &o, d.hbm_bytes, &g, err, sizeof err), 0);
  o.kind = SCHED_1F1B;
  CHECK_EQ_INT(sim_simulate(&lay, &d, &o, d.hbm_bytes, &f, err, sizeof err), 0);
  CHECK_EQ_INT(g.stages[0].mem.in_flight, 16);
  CHECK_EQ_INT(f.stages[0].mem.in_flight, 4);
  CHECK_TRUE(f.peak_mem_bytes < g.peak_mem_bytes);
  sim_result_free(&g);
  sim_result_free(&f);
}

static void test_recorded_timeline(void) {
  /* P=3, M=4 GPipe, uniform f=1, b=2, free links: every compute interval is recorded, compute
   * intervals of a rank never overlap, and the last one ends at the step time. */
  layout_model_t m = {64, 8, 6, 2, 16};
  device_t d = free_links();
  layout_t lay;
  char err[256];
  CHECK_EQ_INT(layout_init(&lay, &m, 3, 1, 3, 1, 4, 4, NULL, err, sizeof err), 0);
  sim_stage_cost_t *c = uniform_costs(3, 1.0, 2.0, 100);
  sim_options_t o = sim_options_default();
  o.kind = SCHED_GPIPE;
  o.record_events = 1;
  sim_result_t r;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
  int nf = 0, nb = 0, ns = 0;
  double last_end = 0, prev_end[3] = {0, 0, 0};
  for (int i = 0; i < r.nevents; i++) {
    const sim_event_t *e = &r.events[i];
    if (e->kind == SIM_EV_FWD || e->kind == SIM_EV_BWD) {
      nf += e->kind == SIM_EV_FWD;
      nb += e->kind == SIM_EV_BWD;
      CHECK_NEAR(e->end_s - e->start_s, e->kind == SIM_EV_FWD ? 1.0 : 2.0, 1e-12);
      CHECK_TRUE(e->start_s >= prev_end[e->rank] - 1e-12); /* in order, no overlap per rank */
      prev_end[e->rank] = e->end_s;
      if (e->end_s > last_end) last_end = e->end_s;
    }
    if (e->kind == SIM_EV_SEND_ACT || e->kind == SIM_EV_SEND_GRAD) ns++;
  }
  CHECK_EQ_INT(nf, 12);
  CHECK_EQ_INT(nb, 12);
  CHECK_EQ_INT(ns, 2 * 2 * 4);
  CHECK_NEAR(last_end, r.step_s, 1e-12);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CHECK_EQ_INT(sim_write_chrome_trace(&r, f, 1, "sim"), 0);
  fclose(f);
  CHECK_TRUE(strstr(buf, "\"name\": \"bwd m3\"") && strstr(buf, "r2 comm"));
  free(buf);
  sim_result_free(&r);
  free(c);
}

/* Ranks time-sharing a host's cores (share_ranks): with share_rate[k] = 1 / f for every k the
 * shared schedule is the private clocks' (each compute takes its scaled cost); with a core
 * each alone and half a core each when both compute, the 2-stage GPipe of 2 micro-batches
 * (f = 2, stage costs F = 1, B = 2, i.e. 0.5 and 1 s of a core's work) follows the hand
 * schedule: F0 alone 0.5; F1 on stage 0 beside F0 on stage 1 at half speed to 1.5; F1 on
 * stage 1 alone to 2; its first B alone to 3; the two stages' B at half speed to 5; the last B
 * alone to 6 (against (M + P - 1)(F + B) = 9 without sharing). */
static void test_time_shared_pipeline(void) {
  layout_model_t m = {64, 8, 16, 2, 16};
  char err[256];
  const struct { int P, M; sched_kind_t kind; } cases[] = {{2, 4, SCHED_GPIPE}, {4, 8, SCHED_1F1B}, {3, 5, SCHED_1F1B}};
  for (int i = 0; i < 3; i++) {
    layout_t lay;
    CHECK_EQ_INT(layout_init(&lay, &m, cases[i].P, 1, cases[i].P, 1, cases[i].M, cases[i].M, NULL, err, sizeof err), 0);
    device_t d = free_links();
    d.intra_lat_s = 0.1;
    d.intra_Bps = 1000;
    sim_options_t o = sim_options_default();
    o.kind = cases[i].kind;
    sim_stage_cost_t *c = uniform_costs(cases[i].P, 1.0, 2.0, 50);
    sim_result_t priv, shared;
    CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &priv, err, sizeof err), 0);
    d.timeshare = 2;
    d.share_ranks = cases[i].P;
    for (int k = 1; k <= d.share_ranks; k++) d.share_rate[k] = 0.5;
    CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &shared, err, sizeof err), 0);
    CHECK_NEAR(shared.step_s, priv.step_s, 1e-9 * priv.step_s);
    CHECK_NEAR(shared.pipeline_idle_share, priv.pipeline_idle_share, 1e-9);
    sim_result_free(&priv);
    sim_result_free(&shared);
    free(c);
  }
  layout_t lay;
  CHECK_EQ_INT(layout_init(&lay, &m, 2, 1, 2, 1, 2, 2, NULL, err, sizeof err), 0);
  device_t d = free_links();
  d.timeshare = 2;
  d.share_ranks = 2;
  d.share_rate[1] = 1;
  d.share_rate[2] = 0.5;
  sim_options_t o = sim_options_default();
  o.kind = SCHED_GPIPE;
  o.record_events = 1;
  sim_stage_cost_t *c = uniform_costs(2, 1.0, 2.0, 0);
  sim_result_t r;
  CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
  CHECK_NEAR(r.step_s, 6.0, 1e-12);
  double busy[2] = {0, 0};
  for (int e = 0; e < r.nevents; e++)
    if (r.events[e].kind == SIM_EV_FWD || r.events[e].kind == SIM_EV_BWD)
      busy[r.events[e].rank] += r.events[e].end_s - r.events[e].start_s;
  CHECK_NEAR(busy[0], 0.5 + 1 + 2 + 1, 1e-12); /* F0, F1 shared, B shared, B alone */
  CHECK_NEAR(busy[1], 1 + 0.5 + 1 + 2, 1e-12); /* F0 shared, F1 alone, B alone, B shared */
  sim_result_free(&r);
  free(c);
}

/* Interleaved 1F1B with free links and uniform chunk passes: the step is M (f + b) + (P - 1)
 * (f + b) / V (Narayanan et al. SC21, section 2.2.2: the bubble shrinks V-fold), the same with
 * time-shared clocks at rates 1 / f; rank 0 keeps 1 + (P - 1) / (P V) times 1F1B's activations
 * (Korthikanti et al. 2022, section 4.2.3); and the conditions are refused in one sentence. */
static void test_interleaved_schedule(void) {
  layout_model_t m = {64, 8, 16, 2, 16};
  char err[256];
  device_t d = free_links();
  const int Ps[] = {2, 3, 4, 8}, Vs[] = {1, 2, 3, 4};
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++)
      for (int k = 1; k <= 4; k *= 2) {
        int P = Ps[i], V = Vs[j], M = k * P;
        layout_t lay;
        CHECK_EQ_INT(layout_init(&lay, &m, P, 1, P, 1, M, M, NULL, err, sizeof err), 0);
        sim_options_t o = sim_options_default();
        o.vstages = V;
        sim_stage_cost_t *c = uniform_costs(P, 1.0, 2.0, 100);
        sim_result_t r;
        CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
        double want = M * 3.0 + (P - 1) * 3.0 / V;
        if (fabs(r.step_s - want) > 1e-9)
          test_fail(__FILE__, __LINE__, "P=%d V=%d M=%d: step %.6f, expected %.6f", P, V, M, r.step_s, want);
        CHECK_NEAR(r.pipeline_idle_share, (P - 1) * 3.0 / V / want, 1e-9);
        sim_result_free(&r);
        if (P == 4 && V == 2) { /* the same on one time-shared host at rates 1 / 2 */
          device_t h = free_links();
          h.timeshare = 2;
          h.share_ranks = P;
          for (int q = 1; q <= P; q++) h.share_rate[q] = 0.5;
          CHECK_EQ_INT(sim_run(&lay, &h, c, &o, &r, err, sizeof err), 0);
          CHECK_NEAR(r.step_s, want, 1e-9 * want);
          sim_result_free(&r);
        }
        free(c);
      }
  { /* the timeline names each pass's chunk: 2 ranks x 2 chunks x 2 micro-batches x (F, B) */
    layout_t lay;
    CHECK_EQ_INT(layout_init(&lay, &m, 2, 1, 2, 1, 2, 2, NULL, err, sizeof err), 0);
    sim_options_t o = sim_options_default();
    o.vstages = 2;
    o.record_events = 1;
    sim_stage_cost_t *c = uniform_costs(2, 1.0, 2.0, 0);
    sim_result_t r;
    CHECK_EQ_INT(sim_run(&lay, &d, c, &o, &r, err, sizeof err), 0);
    int passes[2][2] = {{0, 0}, {0, 0}};
    for (int e = 0; e < r.nevents; e++)
      if (r.events[e].kind == SIM_EV_FWD || r.events[e].kind == SIM_EV_BWD) {
        CHECK_TRUE(r.events[e].chunk == 0 || r.events[e].chunk == 1);
        CHECK_NEAR(r.events[e].end_s - r.events[e].start_s, r.events[e].kind == SIM_EV_FWD ? 0.5 : 1.0, 1e-12);
        if (r.events[e].chunk == 0 || r.events[e].chunk == 1) passes[r.events[e].rank][r.events[e].chunk]++;
      }
    for (int q = 0; q < 4; q++) CHECK_EQ_INT(passes[q / 2][q % 2], 4);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_EQ_INT(sim_write_chrome_trace(&r, f, 1, "x"), 0);
    fclose(f);
    CHECK_TRUE(buf && strstr(buf, "\"fwd m1 c1\"") && strstr(buf, "\"bwd m0 c0\""));
    free(buf);
    sim_result_free(&r);
    free(c);
  }
  layout_model_t g;
  layout_model_preset("gpt2", &g);
  device_t t;
  device_builtin("trn1", &t);
  layout_t lay;
  CHECK_EQ_INT(layout_init(&lay, &g, 4, 1, 4, 1, 16, 32, "3,3,3,3", err, sizeof err), 0);
  sim_options_t o = sim_options_default();
  sim_result_t a, b;
  CHECK_EQ_INT(sim_simulate(&lay, &t, &o, t.hbm_bytes, &a, err, sizeof err), 0);
  o.vstages = 2;
  if (sim_simulate(&lay, &t, &o, t.hbm_bytes, &b, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
  CHECK_EQ_INT(b.stages[0].mem.in_flight, 11);
  CHECK_NEAR(b.stages[0].mem.activations_bytes / a.stages[0].mem.activations_bytes, 1 + 3.0 / 8, 1e-12);
  CHECK_TRUE(b.step_s < a.step_s);
  sim_result_free(&a);
  sim_result_free(&b);
  /* refused: GPipe, no pipeline, M not a multiple of P, fewer layers than chunks */
  struct { int pp, micro, V; sched_kind_t kind; const char *says; } bad[] = {
      {4, 16, 2, SCHED_GPIPE, "--schedule 1f1b"}, {1, 4, 2, SCHED_1F1B, "--pp 2 or more"},
      {4, 6, 2, SCHED_1F1B, "multiple of --pp 4"}, {4, 16, 4, SCHED_1F1B, "has 3 layer(s)"},
      {4, 16, 0, SCHED_1F1B, "at least 1"}};
  for (int i = 0; i < 5; i++) {
    CHECK_EQ_INT(layout_init(&lay, &g, bad[i].pp, 1, bad[i].pp, 1, bad[i].micro, 2 * bad[i].micro,
                             bad[i].pp == 4 ? "3,3,3,3" : NULL, err, sizeof err), 0);
    o = sim_options_default();
    o.kind = bad[i].kind;
    o.vstages = bad[i].V;
    err[0] = 0;
    CHECK_EQ_INT(sim_simulate(&lay, &t, &o, t.hbm_bytes, &a, err, sizeof err), -1);
    if (!strstr(err, bad[i].says)) test_fail(__FILE__, __LINE__, "case %d: %s", i, err);
  }
}

int main(void) {
  test_time_shared_pipeline();
  test_interleaved_schedule();
  test_interleaved_buckets();
  test_recorded_timeline();
  test_bubble_closed_form(SCHED_GPIPE);
  test_bubble_closed_form(SCHED_1F1B);
  test_activation_transfer_on_critical_path();
  test_simulated_allreduce_equals_ring_formula();
  test_overlap_hides_all_but_last_bucket();
  test_zero_overlap();
  test_whole_model_is_consistent();
  test_1f1b_keeps_fewer_in_flight_than_gpipe();
  test_grad_bf16_halves_gradient_bytes();
  test_zero_gathers_the_weights_bytes();
  test_zero_overlap_takes_megatron_buckets();
  test_op_times_add_up_to_the_stage();
  test_full_shard();
  test_shard_grads();
  test_zero_states_match_the_paper();
  test_hybrid_shard();
  test_dropout_loss_and_score_traffic();
  return test_finish("sim_simulate");
}
