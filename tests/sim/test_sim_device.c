/* Device model: ring collective costs against the alpha-beta closed forms, bottleneck link
 * when a ring spans instances, roofline, point-to-point link choice, built-in and JSON
 * profiles (errors name the field), cpu calibration, the alpha-beta fit of a ping-pong, and
 * the calibration's GEMM shapes of one tensor-parallel rank. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "test_util.h"

static device_t flat_device(void) {
  device_t d;
  memset(&d, 0, sizeof d);
  snprintf(d.name, sizeof d.name, "flat");
  d.peak_flops[DEV_FP32] = 1e12;
  d.peak_flops[DEV_BF16] = 4e12;
  d.peak_flops[DEV_FP8] = 8e12;
  d.hbm_bytes = 1e10;
  d.hbm_Bps = 1e11;
  d.chips_per_instance = 1000; /* every ring below stays inside one instance */
  d.intra_Bps = 1e10;
  d.intra_lat_s = 5e-6;
  d.inter_Bps = 4e10;
  d.inter_lat_s = 20e-6;
  return d;
}

static void test_ring_allreduce_closed_form(void) {
  device_t d = flat_device();
  int ranks[16];
  for (int i = 0; i < 16; i++) ranks[i] = i;
  const int ps[] = {2, 3, 4, 8, 16};
  const double ns[] = {8, 1e6, 3.3e8};
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 3; j++) {
      int p = ps[i];
      double n = ns[j], a = 5e-6, B = 1e10;
      double expect = 2 * (p - 1) * a + 2.0 * (p - 1) / p * n / B;
      CHECK_NEAR(device_allreduce_time(&d, ranks, p, n), expect, 1e-12 * expect);
      double rs = (p - 1) * a + (double)(p - 1) / p * n / B;
      CHECK_NEAR(device_reduce_scatter_time(&d, ranks, p, n), rs, 1e-12 * rs);
      CHECK_NEAR(device_allgather_time(&d, ranks, p, n), rs, 1e-12 * rs);
    }
  CHECK_EQ_INT(device_allreduce_time(&d, ranks, 1, 1e9) == 0, 1);
  /* gamma term: + (p-1)/p n / reduce_Bps */
  d.reduce_Bps = 5e9;
  double expect = 2 * 3 * 5e-6 + 2.0 * 3 / 4 * 1e6 / 1e10 + 3.0 / 4 * 1e6 / 5e9;
  CHECK_NEAR(device_allreduce_time(&d, ranks, 4, 1e6), expect, 1e-12 * expect);
}

static void test_ring_spanning_instances_uses_slowest_link(void) {
  device_t d = flat_device();
  d.chips_per_instance = 4; /* ranks 0-3 and 4-7: two instances */
  int ranks[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  double a = 20e-6, B = 4e10 / 4; /* EFA shared by the instance's 4 chips */
  double expect = 2 * 7 * a + 2.0 * 7 / 8 * 1e8 / B;
  CHECK_NEAR(device_allreduce_time(&d, ranks, 8, 1e8), expect, 1e-12 * expect);
  double within = 2 * 3 * 5e-6 + 2.0 * 3 / 4 * 1e8 / 1e10;
  CHECK_NEAR(device_allreduce_time(&d, ranks, 4, 1e8), within, 1e-12 * within);
}

static void test_p2p_link_choice(void) {
  device_t d = flat_device();
  d.chips_per_instance = 4;
  CHECK_NEAR(device_p2p_time(&d, 1, 2, 1e6), 5e-6 + 1e6 / 1e10, 1e-15);
  CHECK_NEAR(device_p2p_time(&d, 3, 4, 1e6), 20e-6 + 1e6 / 1e10, 1e-15);
  CHECK_NEAR(device_p2p_time(&d, 2, 2, 1e6), 0, 0);
}

static void test_roofline(void) {
  device_t d = flat_device();
  /* compute bound: 4e12 flops at 4e12 FLOP/s bf16 = 1 s; 1e9 bytes at 1e11 B/s = 0.01 s */
  CHECK_NEAR(device_op_time(&d, DEV_BF16, 4e12, 1e9), 1.0, 1e-12);
  /* memory bound */
  CHECK_NEAR(device_op_time(&d, DEV_FP32, 1e9, 1e11), 1.0, 1e-12);
  CHECK_NEAR(device_op_time(&d, DEV_FP8, 8e12, 0), 1.0, 1e-12);
  /* a fixed cost per op (the calibrated cpu's) adds to the roofline */
  d.op_overhead_s = 3e-6;
  CHECK_NEAR(device_op_time(&d, DEV_FP32, 1e9, 1e11), 1.0 + 3e-6, 1e-12);
  CHECK_NEAR(device_op_time(&d, DEV_FP32, 0, 0), 3e-6, 1e-18);
}

static void test_collective_step_latency(void) {
  /* coll_lat_s replaces the link latency in ring collectives when larger, not in p2p */
  device_t d = flat_device();
  int ranks[4] = {0, 1, 2, 3};
  double n = 1e6, B = 1e10;
  d.coll_lat_s = 40e-6;
  CHECK_NEAR(device_allreduce_time(&d, ranks, 4, n), 2 * 3 * 40e-6 + 2.0 * 3 / 4 * n / B, 1e-15);
  CHECK_NEAR(device_allgather_time(&d, ranks, 4, n), 3 * 40e-6 + 3.0 / 4 * n / B, 1e-15);
  CHECK_NEAR(device_p2p_time(&d, 0, 1, n), 5e-6 + n / B, 1e-15);
  d.coll_lat_s = 1e-6; /* smaller than the link's 5 us: the link latency stays */
  CHECK_NEAR(device_allreduce_time(&d, ranks, 4, n), 2 * 3 * 5e-6 + 2.0 * 3 / 4 * n / B, 1e-15);
  CHECK_NEAR(device_allreduce_time(&d, ranks, 1, n), 0, 0);
}

static void test_builtin_profiles(void) {
  const char *names[] = {"trn1", "trn2", "trn3", "h100"};
  char err[256];
  for (int i = 0; i < 4; i++) {
    device_t d;
    CHECK_EQ_INT(device_builtin(names[i], &d), 0);
    CHECK_EQ_INT(device_validate(&d, err, sizeof err), 0);
    CHECK_TRUE(d.peak_flops[DEV_FP32] < d.peak_flops[DEV_BF16]);
  }
  device_t d;
  device_builtin("trn2", &d); /* AWS Neuron documentation: 667 TFLOP/s bf16, 96 GiB, 2.9 TB/s, 3200 Gbps EFA */
  CHECK_NEAR(d.peak_flops[DEV_BF16], 667e12, 1);
  CHECK_NEAR(d.hbm_bytes, 96.0 * 1073741824.0, 1);
  CHECK_NEAR(d.hbm_Bps, 2.9e12, 1);
  CHECK_NEAR(d.inter_Bps, 3200e9 / 8, 1);
  CHECK_EQ_INT(d.chips_per_instance, 16);
  device_builtin("trn1", &d);
  CHECK_NEAR(d.inter_Bps, 800e9 / 8, 1);
  CHECK_EQ_INT(device_builtin("tpu", &d), -1);
  CHECK_EQ_INT(device_resolve("tpu", &d, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "unknown profile") != NULL);
}

static const char *write_tmp(const char *text) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/strata_sim_dev_%d.json", (int)getpid());
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

#define GOOD_FIELDS                                                                                \
  "\"peak_tflops_fp32\": 40, \"peak_tflops_bf16\": 160, \"peak_tflops_fp8\": 320, \"hbm_gib\": "   \
  "32, "                                                                                           \
  "\"hbm_gbps\": 820, \"chips_per_instance\": 16, \"intra_gbps\": 384, \"intra_latency_us\": "     \
  "1.5, "                                                                                          \
  "\"inter_gbps\": 100, \"inter_latency_us\": 15, \"reduce_gbps\": 0"

static void test_json_profile(void) {
  device_t d;
  char err[512];
  const char *p = write_tmp("{\"name\": \"mychip\", " GOOD_FIELDS "}");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), 0);
  CHECK_TRUE(!strcmp(d.name, "mychip"));
  CHECK_NEAR(d.peak_flops[DEV_BF16], 160e12, 1);
  CHECK_NEAR(d.hbm_bytes, 32 * 1073741824.0, 1);
  CHECK_NEAR(d.intra_lat_s, 1.5e-6, 1e-15);
  CHECK_NEAR(d.inter_Bps, 100e9, 1);
  CHECK_EQ_INT(d.chips_per_instance, 16);
  CHECK_NEAR(d.op_overhead_s, 0, 0); /* optional fields default to 0 */
  CHECK_NEAR(d.coll_lat_s, 0, 0);
  device_t r;
  CHECK_EQ_INT(device_resolve(p, &r, err, sizeof err), 0);

  p = write_tmp("{\"name\": \"x\", " GOOD_FIELDS ", \"op_overhead_us\": 2.5, \"coll_latency_us\": 30}");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), 0);
  CHECK_NEAR(d.op_overhead_s, 2.5e-6, 1e-18);
  CHECK_NEAR(d.coll_lat_s, 30e-6, 1e-18);
  p = write_tmp("{\"name\": \"x\", " GOOD_FIELDS ", \"op_overhead_us\": -1}");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "op_overhead_us must be >= 0") != NULL);

  p = write_tmp("{\"name\": \"x\", \"peak_tflops_fp32\": 40, \"peak_tflops_bf16\": 160}");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "missing field \"peak_tflops_fp8\"") != NULL);

  p = write_tmp("{\"name\": \"x\", " GOOD_FIELDS ", \"hbm_gbps\": \"fast\"}");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "\"hbm_gbps\" must be a number") != NULL);

  p = write_tmp("{\"name\": \"x\", " GOOD_FIELDS ", \"intra_gbps\": -3}");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "intra_gbps must be a positive number") != NULL);

  /* every efficiency fraction outside [0, 1] is refused, the FP8 GEMMs' among them */
  const char *fractions[] = {"mm_efficiency", "mm_fp8_efficiency", "attention_fused_efficiency",
                             "hbm_efficiency", "overlap_slowdown"};
  for (size_t i = 0; i < sizeof fractions / sizeof fractions[0]; i++) {
    char text[1024];
    snprintf(text, sizeof text, "{\"name\": \"x\", " GOOD_FIELDS ", \"%s\": 1.2}", fractions[i]);
    p = write_tmp(text);
    CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), -1);
    CHECK_TRUE(strstr(err, "must lie in [0, 1]") != NULL);
  }
  p = write_tmp("{\"name\": \"x\", " GOOD_FIELDS ", \"mm_fp8_efficiency\": 0.6}");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), 0);
  CHECK_NEAR(d.mm_fp8_eff, 0.6, 0);

  p = write_tmp("{\"name\": \"x\", " GOOD_FIELDS ", \"chips_per_instance\": 2.5}");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "chips_per_instance") != NULL);

  p = write_tmp("{ not json");
  CHECK_EQ_INT(device_load_json(p, &d, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "cannot read or parse") != NULL);
  unlink(p);
  CHECK_EQ_INT(device_load_json("/nonexistent/dev.json", &d, err, sizeof err), -1);
}

static void test_cpu_calibration(void) {
  device_t d;
  char err[256];
  CHECK_EQ_INT(device_calibrate_cpu(&d), 0);
  CHECK_EQ_INT(device_validate(&d, err, sizeof err), 0);
  /* any machine that builds Strata does more than 0.1 GFLOP/s and 100 MB/s */
  CHECK_TRUE(d.peak_flops[DEV_FP32] > 1e8);
  CHECK_TRUE(d.hbm_Bps > 1e8);
}

/* A fake link: round trip = 2 (alpha + bytes * beta), alpha 3 us, 2 GB/s. */
static int fake_pingpong(void *ctx, size_t bytes, int iters, double *rt) {
  (void)ctx;
  (void)iters;
  *rt = 2 * (3e-6 + (double)bytes / 2e9);
  return 0;
}

static void test_link_calibration_fits_alpha_beta(void) {
  device_t d;
  device_calibrate_cpu(&d);
  CHECK_EQ_INT(device_calibrate_link(&d, fake_pingpong, NULL), 0);
  CHECK_NEAR(d.intra_lat_s, 3e-6, 1e-12);
  CHECK_NEAR(d.intra_Bps, 2e9, 1e-3 * 2e9);
  CHECK_NEAR(device_p2p_time(&d, 0, 1, 1e6), 3e-6 + 1e6 / 2e9, 1e-9);
}

/* The calibration's GEMM shapes are one tensor-parallel rank's: at T = 2 c_attn's forward is
 * (bT x 3C/2, K = C), attn.c_proj's (bT x C, K = C/2), the logits' (bT x Vp/2, K = C), and the
 * attention matmuls run for half the heads; the same FLOPs in total as T = 1 over two ranks. */
static void test_gpt2_shapes_per_tp_rank(void) {
  int s1[3 * DEVICE_GPT2_SHAPES], s2[3 * DEVICE_GPT2_SHAPES];
  double w1[DEVICE_GPT2_SHAPES], w2[DEVICE_GPT2_SHAPES];
  const int L = 4, H = 4, C = 64, b = 3, T = 16, Vp = 256;
  int n1 = device_gpt2_shapes(Vp, L, H, C, b, T, 1, s1, w1);
  int n2 = device_gpt2_shapes(Vp, L, H, C, b, T, 2, s2, w2);
  CHECK_EQ_INT(n1, n2);
  CHECK_EQ_INT(s2[0], b * T);
  CHECK_EQ_INT(s2[1], 3 * C / 2);
  CHECK_EQ_INT(s2[2], C);
  CHECK_EQ_INT(s2[9], b * T);
  CHECK_EQ_INT(s2[10], C);
  CHECK_EQ_INT(s2[11], C / 2);
  CHECK_EQ_INT(s2[36], b * T);
  CHECK_EQ_INT(s2[37], Vp / 2);
  CHECK_EQ_INT(s2[38], C);
  double f1 = 0, f2 = 0;
  for (int i = 0; i < n1; i++) {
    f1 += w1[i] * 2.0 * s1[3 * i] * s1[3 * i + 1] * s1[3 * i + 2];
    f2 += w2[i] * 2.0 * s2[3 * i] * s2[3 * i + 1] * s2[3 * i + 2];
  }
  CHECK_NEAR(2 * f2, f1, 1e-9 * f1);
}

int main(void) {
  test_ring_allreduce_closed_form();
  test_ring_spanning_instances_uses_slowest_link();
  test_p2p_link_choice();
  test_roofline();
  test_collective_step_latency();
  test_builtin_profiles();
  test_json_profile();
  test_cpu_calibration();
  test_link_calibration_fits_alpha_beta();
  test_gpt2_shapes_per_tp_rank();
  return test_finish("sim_device");
}
