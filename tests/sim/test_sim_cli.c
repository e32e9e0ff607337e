/* `strata simulate` end to end: runs the binary (path in argv[1]) and checks its text and JSON
 * output, the sweep's ordering and best row, the fit message with --device-mem, JSON device
 * profiles, and that invalid input exits with status 2 and a message naming the problem. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

static const char *strata;

/* Runs `strata simulate ARGS` (stderr merged); returns the exit status, output in *out. */
static int run(const char *args, char **out) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s simulate %s 2>&1", strata, args);
  FILE *p = popen(cmd, "r");
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  size_t n;
  while (p && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
    len += n;
    if (cap - len < 4096) buf = realloc(buf, cap *= 2);
  }
  buf[len] = '\0';
  int st = p ? pclose(p) : -1;
  *out = buf;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_ok_containing(const char *args, const char *needle) {
  char *out;
  int rc = run(args, &out);
  if (rc != 0 || !strstr(out, needle))
    test_fail(__FILE__, __LINE__, "'%s': exit %d, expected 0 and '%s' in:\n%s", args, rc, needle,
              out);
  test_checks++;
  free(out);
}

static void expect_usage_error(const char *args, const char *needle) {
  char *out;
  int rc = run(args, &out);
  if (rc != 2 || !strstr(out, needle))
    test_fail(__FILE__, __LINE__, "'%s': exit %d, expected 2 and '%s' in:\n%s", args, rc, needle,
              out);
  test_checks++;
  free(out);
}

static json_object *run_json(const char *args) {
  char *out;
  int rc = run(args, &out);
  CHECK_EQ_INT(rc, 0);
  json_object *o = json_tokener_parse(out);
  if (!o) test_fail(__FILE__, __LINE__, "'%s' printed no valid JSON:\n%s", args, out);
  free(out);
  return o;
}

static double num(json_object *o, const char *key) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v)) {
    test_fail(__FILE__, __LINE__, "missing key %s", key);
    return -1;
  }
  return json_object_get_double(v);
}

static void test_xl_on_64_trn2(void) {
  expect_ok_containing("--model gpt2-xl --device trn2 --nodes 64 --pp 4 --batch 512",
                       "tokens/s, MFU");
  json_object *o = run_json("--model gpt2-xl --device trn2 --nodes 64 --pp 4 --batch 512 --json");
  if (!o) return;
  CHECK_EQ_INT(num(o, "pp"), 4);
  CHECK_EQ_INT(num(o, "dp"), 16);
  CHECK_TRUE(num(o, "step_s") > 0);
  CHECK_TRUE(num(o, "mfu") > 0 && num(o, "mfu") < 1);
  CHECK_NEAR(num(o, "tokens_per_s") * num(o, "step_s"), 512.0 * 1024, 1e-6 * 512 * 1024);
  json_object *st, *fits;
  CHECK_TRUE(json_object_object_get_ex(o, "stages", &st) && json_object_array_length(st) == 4);
  CHECK_TRUE(json_object_object_get_ex(o, "fits", &fits) && json_object_get_boolean(fits));
  json_object_put(o);
}

static void test_sweep_sorted_and_best(void) {
  expect_ok_containing("--model gpt2-xl --device trn2 --nodes 64 --sweep", "<- best");
  json_object *o = run_json("--model gpt2-xl --device trn2 --nodes 64 --sweep --json");
  if (!o) return;
  json_object *rows, *best;
  CHECK_TRUE(json_object_object_get_ex(o, "rows", &rows));
  size_t n = json_object_array_length(rows);
  CHECK_TRUE(n > 10);
  double prev = 1e300;
  int first_fit = -1;
  for (size_t i = 0; i < n; i++) {
    json_object *r = json_object_array_get_idx(rows, i), *f;
    double t = num(r, "tokens_per_s");
    CHECK_TRUE(t <= prev);
    prev = t;
    CHECK_EQ_INT(num(r, "pp") * num(r, "dp"), 64);
    json_object_object_get_ex(r, "fits", &f);
    if (first_fit < 0 && json_object_get_boolean(f)) first_fit = (int)i;
  }
  CHECK_TRUE(first_fit >= 0);
  /* interleaving is tried: every V of 1, 2, 4 appears, and only with a pipeline */
  int seen[5] = {0};
  for (size_t i = 0; i < n; i++) {
    json_object *r = json_object_array_get_idx(rows, i);
    int v = (int)num(r, "virtual_stages");
    CHECK_TRUE(v == 1 || v == 2 || v == 4);
    if (v == 1 || v == 2 || v == 4) seen[v]++;
    if (v > 1) CHECK_TRUE(num(r, "pp") > 1 && (int)num(r, "microbatches") % (int)num(r, "pp") == 0);
  }
  CHECK_TRUE(seen[1] && seen[2] && seen[4]);
  CHECK_TRUE(json_object_object_get_ex(o, "best", &best) && best);
  if (first_fit >= 0 && best)
    CHECK_NEAR(num(best, "tokens_per_s"),
               num(json_object_array_get_idx(rows, (size_t)first_fit), "tokens_per_s"), 0);
  json_object_put(o);
}

/* The sweep tries ZeRO 0 to 3 where D > 1 (only 0 where D = 1), --zero-overlap only on ZeRO-1's
 * rows' best line; a given --zero holds it. */
static void test_sweep_zero_stages(void) {
  const char *job = "--model gpt3-1.3b --device h100 --nodes 8 --batch 48 --precision bf16 --sweep --json";
  json_object *o = run_json(job), *rows;
  int seen[4] = {0};
  if (o && json_object_object_get_ex(o, "rows", &rows))
    for (size_t i = 0; i < json_object_array_length(rows); i++) {
      json_object *r = json_object_array_get_idx(rows, i);
      int z = (int)num(r, "zero");
      CHECK_TRUE(z >= 0 && z <= 3);
      if (z >= 0 && z <= 3) seen[z]++;
      if (num(r, "dp") == 1) CHECK_EQ_INT(z, 0);
    }
  CHECK_TRUE(seen[0] && seen[1] && seen[2] && seen[3]);
  json_object_put(o);
  char args[256];
  snprintf(args, sizeof args, "%s --zero 2", job);
  o = run_json(args);
  CHECK_TRUE(o && json_object_object_get_ex(o, "rows", &rows) && json_object_array_length(rows) > 0);
  for (size_t i = 0; o && i < json_object_array_length(rows); i++) {
    json_object *r = json_object_array_get_idx(rows, i);
    CHECK_NEAR(num(r, "zero"), num(r, "dp") > 1 ? 2 : 0, 0);
  }
  json_object_put(o);
}

/* A given --virtual-stages holds the sweep to it (1: no interleaved rows). */
static void test_sweep_holds_virtual_stages(void) {
  json_object *o = run_json("--model gpt2-xl --device trn2 --nodes 64 --sweep --virtual-stages 1 --json"), *rows;
  if (!o) return;
  CHECK_TRUE(json_object_object_get_ex(o, "rows", &rows));
  for (size_t i = 0; i < json_object_array_length(rows); i++)
    CHECK_NEAR(num(json_object_array_get_idx(rows, i), "virtual_stages"), 1, 0);
  json_object_put(o);
}

static void test_device_mem_override_reports_fit(void) {
  char *out;
  int rc = run("--model gpt2 --device trn1 --nodes 8 --dp 8 --microbatches 1 --batch 64 --schedule "
               "gpipe --device-mem 8G",
               &out);
  CHECK_EQ_INT(rc, 0);
  CHECK_TRUE(strstr(out, "DOES NOT FIT") && strstr(out, "stage 0 does not fit") &&
             strstr(out, "A layout that fits on 8 nodes"));
  free(out);
  json_object *o =
      run_json("--model gpt2 --device trn1 --nodes 8 --dp 8 --microbatches 1 --batch 64 "
               "--schedule gpipe --device-mem 8G --json");
  if (!o) return;
  json_object *fits, *msg;
  CHECK_TRUE(json_object_object_get_ex(o, "fits", &fits) && !json_object_get_boolean(fits));
  CHECK_TRUE(json_object_object_get_ex(o, "fit_message", &msg) &&
             strstr(json_object_get_string(msg), "--pp") != NULL);
  CHECK_NEAR(num(o, "capacity_bytes"), 8.0 * 1073741824.0, 0);
  json_object_put(o);
}

static void test_json_and_cpu_devices(void) {
  char args[1024];
  snprintf(args, sizeof args, "--model gpt2 --nodes 2 --pp 2 --batch 8 --device %s",
           test_src_path("worker/sim/devices/trn1-measured.json"));
  expect_ok_containing(args, "trn1-measured");
  expect_ok_containing(
      "--layers 4 --heads 4 --dim 128 --ctx 64 --vocab 256 --device cpu --nodes 2 --dp 2 --batch 8",
      "step time");
}

static void test_trace_file_is_json(void) {
  char args[512], path[128];
  snprintf(path, sizeof path, "/tmp/strata_sim_trace_%d.json", (int)getpid());
  snprintf(args, sizeof args, "--model gpt2 --nodes 4 --pp 2 --batch 8 --zero 1 --trace %s", path);
  expect_ok_containing(args, "step time");
  json_object *t = json_object_from_file(path);
  CHECK_TRUE(t && json_object_is_type(t, json_type_array) && json_object_array_length(t) > 20);
  if (t) json_object_put(t);
  unlink(path);
  char *out;
  int rc = run("--model gpt2 --nodes 2 --pp 2 --batch 8 --trace /nonexistent/dir/t.json", &out);
  CHECK_EQ_INT(rc, 1);
  CHECK_TRUE(strstr(out, "cannot write the trace") != NULL);
  free(out);
}

/* The tensor-parallel run: 7b on 256 trn1 chips as 8 x 4 x 8, with a TP share. */
static void test_tp_7b_trn1(void) {
  const char *args = "--model 7b --device trn1 --nodes 256 --tp 8 --pp 4 --dp 8";
  expect_ok_containing(args, "tensor-parallel communication");
  char ja[256];
  snprintf(ja, sizeof ja, "%s --json", args);
  json_object *o = run_json(ja);
  if (!o) return;
  CHECK_EQ_INT(num(o, "tp"), 8);
  CHECK_EQ_INT(num(o, "pp"), 4);
  CHECK_EQ_INT(num(o, "dp"), 8);
  CHECK_TRUE(num(o, "tp_comm_share") > 0.01 && num(o, "tp_comm_share") < 0.5);
  CHECK_TRUE(num(o, "mfu") > 0 && num(o, "mfu") < 1);
  CHECK_NEAR(num(o, "compute_share") + num(o, "tp_comm_share") + num(o, "pipeline_idle_share") +
                 num(o, "exposed_comm_share") + num(o, "optimizer_share"),
             1, 1e-9);
  json_object *st, *rm, *ranks;
  CHECK_TRUE(json_object_object_get_ex(o, "stages", &st) && json_object_array_length(st) == 4);
  for (size_t s = 0; s < 4; s++) CHECK_TRUE(num(json_object_array_get_idx(st, s), "tp_comm_s") > 0);
  /* rank 13 = (d*P + p)*T + t with t = 5, p = 1, d = 0 */
  CHECK_TRUE(json_object_object_get_ex(o, "rank_map", &rm) &&
             json_object_object_get_ex(rm, "ranks", &ranks));
  json_object *r13 = json_object_array_get_idx(ranks, 13);
  CHECK_TRUE(r13 && json_object_get_int(json_object_array_get_idx(r13, 0)) == 5 &&
             json_object_get_int(json_object_array_get_idx(r13, 1)) == 1 &&
             json_object_get_int(json_object_array_get_idx(r13, 2)) == 0);
  json_object_put(o);
  /* a TP group larger than a trn1 instance (16 chips) runs, with a warning naming the link */
  expect_ok_containing("--model 7b --device trn1 --nodes 32 --tp 32 --batch 32",
                       "--tp 32 is larger than a trn1 instance (16 chips)");
}

/* gpt2 on 8 trn1 chips with 1 GiB each: under ZeRO 0 or 1 no T = 1 layout fits (any
 * recomputation); the sweep held to --zero 1 finds one with T > 1, the single run's fit message
 * suggests one, and the sweep free to shard the weights (ZeRO-3) fits T = 1. */
static void test_sweep_needs_tp(void) {
  const char *args = "--model gpt2 --device trn1 --nodes 8 --batch 8 --device-mem 1G";
  char a[256];
  snprintf(a, sizeof a, "%s --sweep --json", args);
  json_object *o = run_json(a), *rows, *best, *f;
  CHECK_TRUE(o && json_object_object_get_ex(o, "best", &best) && best);
  if (o && best) CHECK_TRUE(num(best, "tp") == 1 && num(best, "zero") == 3);
  json_object_put(o);
  snprintf(a, sizeof a, "%s --sweep --zero 1 --json", args);
  o = run_json(a);
  if (!o) return;
  CHECK_TRUE(json_object_object_get_ex(o, "rows", &rows));
  size_t n = json_object_array_length(rows);
  int t1 = 0, tn = 0;
  for (size_t i = 0; i < n; i++) {
    json_object *r = json_object_array_get_idx(rows, i);
    CHECK_EQ_INT(num(r, "tp") * num(r, "pp") * num(r, "dp"), 8);
    json_object_object_get_ex(r, "fits", &f);
    if (num(r, "tp") == 1) {
      t1++;
      CHECK_TRUE(!json_object_get_boolean(f));
    } else {
      tn++;
    }
  }
  CHECK_TRUE(t1 > 0 && tn > 0);
  CHECK_TRUE(json_object_object_get_ex(o, "best", &best) && best);
  if (best) {
    CHECK_TRUE(num(best, "tp") > 1);
    CHECK_TRUE(num(best, "peak_mem_bytes") <= 1073741824.0);
  }
  json_object_put(o);
  snprintf(a, sizeof a, "%s --sweep", args);
  expect_ok_containing(a, "<- best");
  /* single run: the suggestion needs TP; with 2 GiB a TP-free one fits and is suggested */
  expect_ok_containing(args, " --tp 4 (peak");
  char *out;
  snprintf(a, sizeof a, "--model gpt2 --device trn1 --nodes 8 --batch 8 --device-mem 2G");
  CHECK_EQ_INT(run(a, &out), 0);
  CHECK_TRUE(strstr(out, "A layout that fits on 8 nodes") && !strstr(out, "--tp"));
  free(out);
}

static void test_bad_input_exits_2(void) {
  expect_usage_error("--model gpt2 --nodes 10 --tp 5",
                     "--tp 5 does not divide the model's 12 attention heads");
  expect_usage_error("--nodes 64 --tp 2 --pp 4 --dp 4", "--tp 2 x --pp 4 x --dp 4 = 32");
  expect_usage_error("--nodes 12 --tp 8 --heads 8 --dim 64", "--nodes 12 is not divisible by --tp 8");
  expect_usage_error("--nodes 4 --sequence-parallel", "--sequence-parallel needs --tp 2 or more");
  expect_usage_error("--nodes 4 --tp 1 --sequence-parallel --sweep",
                     "--sequence-parallel needs --tp 2 or more");
  expect_usage_error("--model gpt2 --ctx 1000 --nodes 6 --tp 3 --sequence-parallel",
                     "sequence of 1000 tokens over --tp 3 ranks");
  expect_usage_error("--recompute some", "--recompute 'some' unknown");
  expect_ok_containing("--model llama3-8b --device trn1-core --nodes 64 --tp 32 --batch 64 "
                       "--sequence-parallel --recompute selective-mlp --memory mixed --json",
                       "\"recompute\":\"selective-mlp\"");
  expect_usage_error("--memory fp16", "--memory 'fp16' unknown");
  expect_usage_error("--nodes 64 --pp 5", "not divisible by --pp 5");
  expect_usage_error("--nodes 64 --pp 4 --dp 8", "--pp 4 x --dp 8 = 32");
  expect_usage_error("--model gpt2 --nodes 16 --pp 16", "more stages than the model's 12 layers");
  expect_usage_error("--nodes 8 --pp 2 --batch 90 --microbatches 4",
                     "--batch 90 is not divisible by --dp 4 x --microbatches 4");
  expect_usage_error("--device tpu", "unknown profile");
  expect_usage_error("--device /nonexistent.json", "cannot read");
  expect_usage_error("--schedule zb", "--schedule 'zb'");
  expect_usage_error("--model gpt5", "unknown --model 'gpt5'");
  expect_usage_error("--zero 4", "--zero must be an integer in [0, 3], got '4'");
  expect_usage_error("--nodes 8 --zero 3 --zero-overlap", "--zero 3 reduce-scatters every micro-batch's "
                     "gradients beside its backward; drop --zero-overlap (it applies to ZeRO-1)");
  expect_usage_error("--nodes 8 --zero 2 --zero-overlap", "--zero 2 reduce-scatters every micro-batch's "
                     "gradients beside its backward; drop --zero-overlap");
  expect_usage_error("--zero-overlap", "--zero-overlap overlaps ZeRO-1's reduce-scatter and all-gather; add --zero 1");
  expect_usage_error("--tp-overlap", "--tp-overlap overlaps tensor-parallel collectives, and --tp 1 has none");
  expect_usage_error("--dtype int4", "--dtype 'int4'");
  expect_usage_error("--pp 4 --stage-layers 1,1", "--pp is 4");
  expect_usage_error("--dim 100 --heads 12", "not divisible by heads");
  expect_usage_error("--frob", "unknown flag");
  expect_usage_error("--nodes 8 --pp 4 --virtual-stages 2 --schedule gpipe", "needs --schedule 1f1b");
  expect_usage_error("--nodes 8 --pp 1 --virtual-stages 2", "needs a pipeline");
  expect_usage_error("--nodes 8 --pp 4 --batch 48 --microbatches 6 --virtual-stages 2",
                     "choose --microbatches 4 or 8");
  expect_usage_error("--model gpt2 --nodes 4 --pp 4 --stage-layers 3,3,3,3 --virtual-stages 4",
                     "use --virtual-stages 3 or fewer");
  expect_usage_error("--nodes 8 --pp 4 --virtual-stages 0", "--virtual-stages must be");
  expect_usage_error("--nodes 64 --batch 7 --sweep", "no layout of 64 nodes");
}

/* Presets and families through the command: Llama's exact parameter count, GQA and the untied
 * head in the JSON; --precision's bytes per parameter; trn4 says it is a projection. */
static void test_presets_precision(void) {
  json_object *o = run_json("--model llama2-70b --device h100 --nodes 64 --tp 8 --pp 8 --batch 64 "
                            "--precision bf16 --sequence-parallel --json");
  json_object *m, *v;
  CHECK_TRUE(json_object_object_get_ex(o, "model", &m));
  CHECK_NEAR(num(m, "params"), 68976648192.0, 0);
  CHECK_NEAR(num(m, "kv_heads"), 8, 0);
  CHECK_NEAR(num(m, "ffn"), 28672, 0);
  CHECK_TRUE(json_object_object_get_ex(m, "arch", &v) && !strcmp(json_object_get_string(v), "llama"));
  CHECK_TRUE(json_object_object_get_ex(o, "attention", &v) && !strcmp(json_object_get_string(v), "fused"));
  json_object_put(o);
  /* the override flags: a gpt3-1.3b with llama's family */
  o = run_json("--model gpt3-1.3b --arch llama --ffn 5504 --kv-heads 4 --nodes 1 --batch 1 --json");
  CHECK_TRUE(json_object_object_get_ex(o, "model", &m));
  CHECK_NEAR(num(m, "kv_heads"), 4, 0);
  CHECK_NEAR(num(m, "ffn"), 5504, 0);
  json_object_put(o);
  /* precision: parameters' bytes of a single-device job, stage 0 (fp8: bf16's, and two FP8
   * copies of the 12 layers' weights, 12 C^2 + 13 C each, not of the embeddings) */
  const char *prec[] = {"fp32", "bf16", "bf16-sr", "fp8"};
  const double bytes[] = {16, 18, 8, 18}, fp8_copies[] = {0, 0, 0, 2.0 * 12 * (12.0 * 768 * 768 + 13 * 768)};
  for (int i = 0; i < 4; i++) {
    char args[256];
    snprintf(args, sizeof args, "--model gpt2 --device a100 --nodes 1 --batch 8 --precision %s --json",
             prec[i]);
    o = run_json(args);
    json_object *st, *s0, *mem;
    CHECK_TRUE(json_object_object_get_ex(o, "stages", &st));
    s0 = json_object_array_get_idx(st, 0);
    CHECK_TRUE(json_object_object_get_ex(s0, "memory", &mem));
    double P = num(s0, "rank_params");
    CHECK_NEAR(num(mem, "params_bytes") + num(mem, "grads_bytes") + num(mem, "optimizer_bytes"),
               bytes[i] * P + fp8_copies[i], 0);
    json_object_put(o);
  }
  expect_ok_containing("--model llama3-8b --device trn4 --nodes 16 --tp 8 --batch 16 --precision bf16",
                       "NOTE: trn4 is a projection");
  expect_ok_containing("--model gpt2 --device a100 --nodes 8 --batch 64 --explain",
                       "pipeline bubble");
  /* interleaving: the default M becomes a multiple of P, the bubble shrinks, the header says so */
  o = run_json("--model gpt2 --device a100 --nodes 4 --pp 4 --stage-layers 3,3,3,3 --batch 24 --json");
  json_object *o2 = run_json("--model gpt2 --device a100 --nodes 4 --pp 4 --stage-layers 3,3,3,3 --batch 24 "
                             "--virtual-stages 2 --json");
  CHECK_NEAR(num(o, "microbatches"), 12, 0);
  CHECK_NEAR(num(o2, "microbatches"), 12, 0);
  CHECK_NEAR(num(o2, "virtual_stages"), 2, 0);
  CHECK_TRUE(num(o2, "pipeline_idle_share") < num(o, "pipeline_idle_share"));
  json_object_put(o);
  json_object_put(o2);
  expect_usage_error("--model gpt2 --device a100 --nodes 4 --pp 4 --stage-layers 3,3,3,3 --batch 6 "
                     "--virtual-stages 2", "multiple of --pp 4");
  expect_ok_containing("--model gpt2 --device a100 --nodes 4 --pp 4 --stage-layers 3,3,3,3 --batch 16 "
                       "--virtual-stages 3",
                       "1f1b interleaved, 3 chunks per stage");
  expect_usage_error("--precision fp16", "--precision 'fp16' unknown (use fp32, bf16, bf16-sr or fp8)");
  /* fp8: the layers' GEMMs at H100's FP8 rate make the step faster than bf16's, less than twice */
  o = run_json("--model llama2-7b --device h100 --nodes 8 --batch 64 --precision bf16 --json");
  o2 = run_json("--model llama2-7b --device h100 --nodes 8 --batch 64 --precision fp8 --json");
  CHECK_TRUE(o && o2 && num(o2, "tokens_per_s") > 1.2 * num(o, "tokens_per_s") &&
             num(o2, "tokens_per_s") < 2 * num(o, "tokens_per_s"));
  json_object *pv;
  CHECK_TRUE(o2 && json_object_object_get_ex(o2, "precision", &pv) && !strcmp(json_object_get_string(pv), "fp8"));
  json_object_put(o);
  json_object_put(o2);
  expect_usage_error("--model gpt2 --arch llama --kv-heads 4 --tp 6 --nodes 6", "key/value heads");
  expect_usage_error("--arch mamba", "--arch 'mamba' unknown (use gpt or llama)");
}

/* The predicted tokens/s of the held-out rows named a and b in the output of `strata simulate
 * ARGS` (a --validate run). 1 when the run succeeded and both rows were found. */
static int two_predictions(const char *args, const char *a, const char *b, double *pa, double *pb) {
  char *out, ka[72], kb[72];
  int ok = run(args, &out) == 0;
  snprintf(ka, sizeof ka, "\n%s ", a);
  snprintf(kb, sizeof kb, "\n%s ", b);
  const char *la = ok ? strstr(out, ka) : NULL, *lb = ok ? strstr(out, kb) : NULL;
  ok = la && lb && sscanf(la + strlen(ka), " held-out %*f %lf", pa) == 1 &&
       sscanf(lb + strlen(kb), " held-out %*f %lf", pb) == 1;
  free(out);
  return ok;
}

/* path = header + rows (each row ending in a newline). */
static void write_csv(const char *path, const char *header, const char *rows) {
  FILE *f = fopen(path, "w");
  CHECK_TRUE(f != NULL);
  if (!f) return;
  fputs(header, f);
  fputs(rows, f);
  fclose(f);
}

/* --validate on the shipped CSV: every job predicted, the held-out summary, and the error
 * bounds this model reaches (a regression bound, not a target: see SIMULATION.md). */
static void test_validate(const char *csv) {
  char args[1200], *out;
  snprintf(args, sizeof args, "--validate %s", csv);
  int rc = run(args, &out);
  CHECK_EQ_INT(rc, 0);
  const char *h = strstr(out, "held-out: ");
  int jobs = 0;
  double geo = -1, worst = -1;
  CHECK_TRUE(h && sscanf(h, "held-out: %d jobs, geometric-mean error %lf%%, largest %lf%%", &jobs,
                         &geo, &worst) == 3);
  CHECK_EQ_INT(jobs, 53);
  /* reached when written: 13.5% and 50.8% (MosaicML's MPT-13B on 8 H100); fail if the model
   * drifts */
  CHECK_TRUE(geo > 0 && geo <= 13.7);
  CHECK_TRUE(worst <= 51.5);
  CHECK_TRUE(strstr(out, "megatron21-1008b") != NULL && strstr(out, "nxd-llama3.1-70b") != NULL &&
             strstr(out, "nemo-gpt3-175b") != NULL && strstr(out, "nemo-h100-llama2-70b") != NULL);
  free(out);
  snprintf(args, sizeof args, "--validate %s --explain", csv);
  expect_ok_containing(args, "data-parallel communication (exposed)");
  /* --json: the same jobs and summary as one document; each job's error is its predicted over
   * measured tokens/s, its breakdown adds up to its step; other job flags are refused */
  snprintf(args, sizeof args, "--validate %s --json --explain", csv);
  json_object *vj = run_json(args), *arr = NULL, *ho = NULL;
  CHECK_TRUE(vj && json_object_object_get_ex(vj, "jobs", &arr) &&
             json_object_object_get_ex(vj, "held_out", &ho));
  if (arr && ho) {
    CHECK_EQ_INT((int)json_object_array_length(arr), 53);
    CHECK_NEAR(num(ho, "jobs"), 53, 0);
    CHECK_NEAR(100 * num(ho, "geomean_error"), geo, 0.05);
    CHECK_NEAR(100 * num(ho, "largest_error"), worst, 0.05);
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
      json_object *j = json_object_array_get_idx(arr, i), *b = NULL;
      CHECK_NEAR(num(j, "error"), num(j, "predicted_tokens_per_s") / num(j, "measured_tokens_per_s") - 1, 1e-12);
      CHECK_TRUE(json_object_object_get_ex(j, "breakdown", &b));
      if (b)
        CHECK_NEAR(num(b, "compute_s") + num(b, "tp_comm_s") + num(b, "pipeline_bubble_s") +
                       num(b, "dp_comm_s") + num(b, "optimizer_s"),
                   num(j, "step_s"), 1e-6 * num(j, "step_s"));
      CHECK_NEAR(num(j, "nodes"), num(j, "tp") * num(j, "pp") * num(j, "dp"), 0);
    }
  }
  json_object_put(vj);
  snprintf(args, sizeof args, "--validate %s --device h100", csv);
  expect_usage_error(args, "--device does not apply to it");
  snprintf(args, sizeof args, "--json --validate=%s --tp=2", csv);
  expect_usage_error(args, "--tp does not apply to it");
  /* malformed files name the line and the problem */
  char path[64];
  snprintf(path, sizeof path, "/tmp/strata_val_%d.csv", (int)getpid());
  const char *hdr = "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,dp,"
                    "global_batch,micro_batch,precision,recompute,sequence_parallel,attention,zero,"
                    "measured,unit,flop_convention,role,source\n";
  const struct {
    const char *row, *needle;
  } bad[] = {
      {"x,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,0,1000,furlongs,,held-out,me\n",
       "unit 'furlongs'"},
      {"x,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,0,100,tflops/device,,held-out,me\n",
       "flop_convention ''"},
      {"x,gpt2,,,,,,,,,a100,8,1,1,8,60,1,bf16,none,no,,0,1000,tokens/s,,held-out,me\n",
       "global_batch 60 is not a multiple of dp 8"},
      {"x,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,0,1000,tokens/s,,maybe,me\n",
       "role 'maybe'"},
      {"x,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,most,no,,0,1000,tokens/s,,held-out,me\n",
       "recompute 'most' (use none, selective, selective-mlp or full)"},
      {"x,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,4,1000,tokens/s,,held-out,me\n",
       "zero '4' (use 0, 1, 1-overlap, 2 or 3)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_csv(path, hdr, bad[i].row);
    snprintf(args, sizeof args, "--validate %s", path);
    expect_usage_error(args, bad[i].needle);
  }
  write_csv(path, "name,model\n", "");
  expect_usage_error(args, "column 2 must be 'preset'");
  /* a good file: tokens/s and sequences/s rows, the summary lines */
  write_csv(path, hdr,
            "# a comment\n"
            "a,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,me\n"
            "b,llama2-7b,,,,,,,,,h100,8,8,1,1,8,1,bf16-sr,full,yes,fused,0,10,sequences/s,,informs,me\n");
  snprintf(args, sizeof args, "--validate %s", path);
  expect_ok_containing(args, "informing constants: 1 jobs");
  expect_ok_containing(args, "all: 2 jobs");
  /* zero 1-overlap: the same job with ZeRO-1's collectives overlapped is predicted faster (D =
   * 64 replicas of a small model: the reductions are most of the step) */
  write_csv(path, hdr,
            "z1,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,1,1000000,tokens/s,,held-out,me\n"
            "zo,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,1-overlap,1000000,tokens/s,,held-out,me\n");
  double pz, po;
  CHECK_TRUE(two_predictions(args, "z1", "zo", &pz, &po) && po > 1.2 * pz);
  /* the optional virtual_stages column before source: an interleaved job, and a bad value */
  const char *hdr_v = "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,"
                      "dp,global_batch,micro_batch,precision,recompute,sequence_parallel,attention,"
                      "zero,measured,unit,flop_convention,role,virtual_stages,source\n";
  write_csv(path, hdr_v,
            "v1,gpt2-medium,,,,,,,,,a100,8,1,4,2,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,1,me, a, b\n"
            "v2,gpt2-medium,,,,,,,,,a100,8,1,4,2,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,3,me\n");
  double p1, p2; /* M = 32 over 4 stages: the bubble is small, but 3 chunks make it smaller */
  CHECK_TRUE(two_predictions(args, "v1", "v2", &p1, &p2) && p2 > p1);
  write_csv(path, hdr_v,
            "v,gpt2,,,,,,,,,a100,8,1,4,2,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,x,me\n");
  expect_usage_error(args, "virtual_stages 'x'");
  write_csv(path, hdr_v,
            "v,gpt2-medium,,,,,,,,,a100,8,1,4,2,68,1,bf16,none,no,,0,1000000,tokens/s,,held-out,2,me\n");
  expect_usage_error(args, "multiple of --pp 4");
  /* the optional tp_overlap column, after virtual_stages (either order; each once): a job whose
   * TP collectives are most of its backward (Llama 2 70B at T = 32 on trn1) is predicted faster
   * with it; a value other than 0, 1 or empty and a column named twice are refused */
  const char *hdr_t = "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,"
                      "dp,global_batch,micro_batch,precision,recompute,sequence_parallel,attention,"
                      "zero,measured,unit,flop_convention,role,virtual_stages,tp_overlap,source\n";
  write_csv(path, hdr_t,
            "t0,llama2-70b,,,,,,,,4096,trn1-core,1024,32,4,8,1024,1,bf16,selective,yes,unfused,1,17,sequences/s,,held-out,1,,me\n"
            "t1,llama2-70b,,,,,,,,4096,trn1-core,1024,32,4,8,1024,1,bf16,selective,yes,unfused,1,17,sequences/s,,held-out,1,1,me, a\n");
  double q0, q1;
  CHECK_TRUE(two_predictions(args, "t0", "t1", &q0, &q1) && q1 > 1.02 * q0);
  write_csv(path, hdr_t,
            "t,gpt2,,,,,,,,,a100,8,8,1,1,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,1,yes,me\n");
  expect_usage_error(args, "tp_overlap 'yes' (use 0, 1, ub or leave it empty)");
  /* ub: userbuffers on a sequence-parallel job, faster again than 1 */
  write_csv(path, hdr_t,
            "t1,llama2-70b,,,,,,,,4096,trn1-core,1024,32,4,8,1024,1,bf16,selective,yes,unfused,1,17,sequences/s,,held-out,1,1,me\n"
            "t2,llama2-70b,,,,,,,,4096,trn1-core,1024,32,4,8,1024,1,bf16,selective,yes,unfused,1,17,sequences/s,,held-out,1,ub,me\n");
  double q2;
  CHECK_TRUE(two_predictions(args, "t1", "t2", &q1, &q2) && q2 > 1.02 * q1);
  write_csv(path,
            "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,dp,global_batch,"
            "micro_batch,precision,recompute,sequence_parallel,attention,zero,measured,unit,"
            "flop_convention,role,tp_overlap,tp_overlap,source\n",
            "");
  expect_usage_error(args, "names column 'tp_overlap' twice");
  /* the optional grad_dtype column, here first of the optional ones: bf16 gradients halve the
   * reductions of a job that is mostly reductions (64 replicas of GPT-2 XL, ZeRO-0); a value other
   * than fp32, bf16 or empty is refused */
  const char *hdr_g = "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,"
                      "dp,global_batch,micro_batch,precision,recompute,sequence_parallel,attention,"
                      "zero,measured,unit,flop_convention,role,grad_dtype,tp_overlap,source\n";
  write_csv(path, hdr_g,
            "g0,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,,,me\n"
            "g1,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,bf16,,me\n");
  double g0, g1;
  CHECK_TRUE(two_predictions(args, "g0", "g1", &g0, &g1) && g1 > 1.2 * g0);
  write_csv(path, hdr_g,
            "g,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,fp16,,me\n");
  expect_usage_error(args, "grad_dtype 'fp16' (use fp32, bf16 or leave it empty)");
  /* the optional tie_embeddings column: an untied GPT-2 XL head adds its gradients to the
   * reductions of the same job (slower); a value other than yes, no or empty is refused; a
   * column name outside the set is answered with every name the header may hold there */
  const char *hdr_e = "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,"
                      "dp,global_batch,micro_batch,precision,recompute,sequence_parallel,attention,"
                      "zero,measured,unit,flop_convention,role,tie_embeddings,source\n";
  write_csv(path, hdr_e,
            "e0,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,,me\n"
            "e1,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,no,me\n");
  double e0, e1;
  CHECK_TRUE(two_predictions(args, "e0", "e1", &e0, &e1) && e1 < 0.98 * e0);
  write_csv(path, hdr_e,
            "e,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,untied,me\n");
  expect_usage_error(args, "tie_embeddings 'untied' (use yes, no or leave it empty)");
  write_csv(path,
            "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,dp,global_batch,"
            "micro_batch,precision,recompute,sequence_parallel,attention,zero,measured,unit,"
            "flop_convention,role,tied,source\n",
            "");
  expect_usage_error(args, "column 27 must be 'virtual_stages, tp_overlap, grad_dtype, "
                           "tie_embeddings, dp_overlap, bucket_mb or source' (columns: name, preset, arch,");
  expect_usage_error(args, "role, [virtual_stages,] [tp_overlap,] [grad_dtype,] [tie_embeddings,] "
                           "[dp_overlap,] [bucket_mb,] source)");
  /* the optional dp_overlap column: 0 reduces the gradients after backward (slower where the
   * all-reduce is a large part of the step), a value other than 0, 1 or empty is refused */
  const char *hdr_d = "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,"
                      "dp,global_batch,micro_batch,precision,recompute,sequence_parallel,attention,"
                      "zero,measured,unit,flop_convention,role,dp_overlap,source\n";
  write_csv(path, hdr_d,
            "d0,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,,me\n"
            "d1,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,0,me\n");
  double d0, d1;
  CHECK_TRUE(two_predictions(args, "d0", "d1", &d0, &d1) && d1 < 0.98 * d0);
  write_csv(path, hdr_d,
            "d,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,no,me\n");
  expect_usage_error(args, "dp_overlap 'no' (use 0, 1 or leave it empty)");
  /* the optional bucket_mb column: the job's bucket size, also under 1-overlap (Megatron-Core's
   * buckets otherwise): 1 MiB buckets pay a ring's latency many times more (slower); a size
   * outside (0, 1024] is refused */
  const char *hdr_b = "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,"
                      "dp,global_batch,micro_batch,precision,recompute,sequence_parallel,attention,"
                      "zero,measured,unit,flop_convention,role,bucket_mb,source\n";
  write_csv(path, hdr_b,
            "b0,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,1-overlap,1000000,tokens/s,,held-out,,me\n"
            "b1,gpt2-xl,,,,,,,,,h100,64,1,1,64,64,1,bf16,none,no,,1-overlap,1000000,tokens/s,,held-out,1,me\n");
  double b0, b1;
  CHECK_TRUE(two_predictions(args, "b0", "b1", &b0, &b1) && b1 < 0.98 * b0);
  write_csv(path, hdr_b,
            "b,gpt2,,,,,,,,,a100,8,1,1,8,64,1,bf16,none,no,,0,1000000,tokens/s,,held-out,0,me\n");
  expect_usage_error(args, "bucket_mb '0' (use a size in MiB in (0, 1024] or leave it empty)");
  remove(path);
}

/* Two JSON runs of the same job, `base` without and `with` with one option: the boolean `key`
 * false then true, and the option faster by more than 2%. */
static void check_faster_option(json_object *base, json_object *with, const char *key) {
  json_object *v;
  CHECK_TRUE(base && with);
  if (!base || !with) return;
  CHECK_TRUE(json_object_object_get_ex(with, key, &v) && json_object_get_boolean(v));
  CHECK_TRUE(json_object_object_get_ex(base, key, &v) && !json_object_get_boolean(v));
  CHECK_TRUE(num(with, "tokens_per_s") > 1.02 * num(base, "tokens_per_s"));
}

/* --tp-overlap: named in the text, true in the JSON, carried by --sweep's best line, and a
 * faster step than without it for a TP job whose backward collectives can hide. */
static void test_tp_overlap_flag(void) {
  const char *job = "--model llama2-70b --device trn1-core --nodes 1024 --tp 32 --pp 4 --dp 8 "
                    "--batch 1024 --ctx 4096 --precision bf16 --sequence-parallel";
  char args[512];
  snprintf(args, sizeof args, "%s --tp-overlap", job);
  expect_ok_containing(args, "column-parallel backward overlapped (input re-gathered beside the input-gradient GEMM");
  snprintf(args, sizeof args, "%s --json", job);
  json_object *o0 = run_json(args);
  snprintf(args, sizeof args, "%s --tp-overlap --json", job);
  json_object *o1 = run_json(args);
  check_faster_option(o0, o1, "tp_overlap");
  /* --tp-comm-overlap: the forward's collectives pipelined too, faster again, named in the JSON */
  snprintf(args, sizeof args, "%s --tp-comm-overlap --json", job);
  json_object *o2 = run_json(args);
  check_faster_option(o1, o2, "tp_comm_overlap");
  json_object_put(o0);
  json_object_put(o1);
  json_object_put(o2);
  snprintf(args, sizeof args, "%s --tp-comm-overlap", job);
  expect_ok_containing(args, "every layer collective pipelined with its GEMM (userbuffers)");
  expect_usage_error("--model llama2-70b --device h100 --nodes 8 --tp 8 --tp-comm-overlap",
                     "--tp-comm-overlap pipelines the sequence-parallel all-gathers");
  expect_usage_error("--model llama2-70b --device h100 --nodes 8 --tp-comm-overlap",
                     "--tp-comm-overlap overlaps tensor-parallel collectives, and --tp 1 has none");
  expect_ok_containing("--model llama2-13b --device trn1-core --nodes 64 --tp 8 --sweep --tp-overlap "
                       "--precision bf16 --batch 64",
                       "--tp 8 --tp-overlap --sequence-parallel: ");
  expect_ok_containing("--model llama2-13b --device trn1-core --nodes 64 --tp 8 --sweep --tp-comm-overlap "
                       "--precision bf16 --batch 64",
                       "--tp 8 --tp-comm-overlap --sequence-parallel: ");
}

/* --tie-embeddings: an untied GPT head adds vocab x dim parameters (and its gradients to the
 * data-parallel reduction: slower where that is exposed), a tied Llama loses them; the text
 * names the head; a value other than yes or no is refused. */
/* --zero-overlap takes Megatron-Core's buckets (max(40M, 1M x D) parameters) unless --bucket-mb
 * is given: JSON bucket_params, or bucket_bytes with the size asked for; the text names them. */
static void test_zero_overlap_buckets(void) {
  const char *job = "--model gpt3-1.3b --device h100 --nodes 96 --dp 48 --pp 2 --batch 96 --precision bf16 "
                    "--zero 1 --zero-overlap";
  char args[512];
  snprintf(args, sizeof args, "%s --json", job);
  json_object *mega = run_json(args);
  snprintf(args, sizeof args, "%s --bucket-mb 25 --json", job);
  json_object *given = run_json(args);
  CHECK_TRUE(mega && given);
  if (mega && given) {
    json_object *v;
    CHECK_NEAR(num(mega, "bucket_params"), 48e6, 0);
    CHECK_TRUE(!json_object_object_get_ex(mega, "bucket_bytes", &v));
    CHECK_NEAR(num(given, "bucket_bytes"), 25 * 1048576.0, 0);
    CHECK_TRUE(!json_object_object_get_ex(given, "bucket_params", &v));
  }
  json_object_put(mega);
  json_object_put(given);
  expect_ok_containing(job, "Megatron-Core buckets (48M parameters on stage 0, one on later stages)");
  snprintf(args, sizeof args, "%s --bucket-mb 25", job);
  expect_ok_containing(args, "bucket 25.0 MiB reduce-scatters");
  snprintf(args, sizeof args, "%s --virtual-stages 2", job);
  expect_ok_containing(args, "(48M parameters on stage 0's first chunk, one on every other chunk)");
  /* STRATA_BUCKET_MB asks for a size as --bucket-mb does; empty, it is unset (env.h) */
  setenv("STRATA_BUCKET_MB", "10", 1);
  expect_ok_containing(job, "bucket 10.0 MiB reduce-scatters");
  setenv("STRATA_BUCKET_MB", "", 1);
  expect_ok_containing(job, "Megatron-Core buckets (48M parameters");
  unsetenv("STRATA_BUCKET_MB");
}

/* --zero 3 (FSDP FULL_SHARD) and --zero 2 (DeepSpeed stage 2): the schedule lines say so, the JSON
 * carries the stage, the job needs less memory under ZeRO-2 than ZeRO-1 and less under ZeRO-3
 * still, and the per-micro-batch traffic is data-parallel communication; a validation row may say
 * zero 2 or 3. */
static void test_full_shard_flag(void) {
  const char *job = "--model gpt3-6.7b --device h100 --nodes 8 --dp 8 --batch 48 --microbatches 1 "
                    "--precision bf16";
  char args[512];
  snprintf(args, sizeof args, "%s --zero 3", job);
  expect_ok_containing(args, "ZeRO-3 (FSDP FULL_SHARD): each layer's parameters gathered");
  snprintf(args, sizeof args, "%s --zero 3 --json", job);
  json_object *z3 = run_json(args);
  snprintf(args, sizeof args, "%s --zero 1 --json", job);
  json_object *z1 = run_json(args);
  snprintf(args, sizeof args, "%s --zero 2 --json", job);
  json_object *z2 = run_json(args);
  CHECK_TRUE(z3 && z2 && z1);
  if (z3 && z2 && z1) {
    CHECK_NEAR(num(z3, "zero"), 3, 0);
    CHECK_NEAR(num(z2, "zero"), 2, 0);
    /* ZeRO-2 splits the gradients as well as ZeRO-1's optimizer state, ZeRO-3 the weights too */
    CHECK_TRUE(num(z3, "peak_mem_bytes") < num(z2, "peak_mem_bytes"));
    CHECK_TRUE(num(z2, "peak_mem_bytes") < num(z1, "peak_mem_bytes"));
    CHECK_TRUE(num(z3, "exposed_comm_share") > 0 && num(z2, "exposed_comm_share") > 0);
  }
  json_object_put(z3);
  json_object_put(z2);
  json_object_put(z1);
  /* HYBRID_SHARD: named, in the JSON, more memory than sharding over all 8 */
  snprintf(args, sizeof args, "%s --zero 3 --shard-group 4", job);
  expect_ok_containing(args, "ZeRO-3 hybrid (FSDP HYBRID_SHARD): shards over 4 replicas, 2 copies");
  snprintf(args, sizeof args, "%s --zero 3 --shard-group 4 --json", job);
  json_object *h = run_json(args);
  snprintf(args, sizeof args, "%s --zero 3 --json", job);
  json_object *f8 = run_json(args);
  CHECK_TRUE(h && f8);
  if (h && f8) {
    CHECK_NEAR(num(h, "shard_group"), 4, 0);
    CHECK_TRUE(num(h, "peak_mem_bytes") > num(f8, "peak_mem_bytes"));
  }
  json_object_put(h);
  json_object_put(f8);
  snprintf(args, sizeof args, "%s --zero 3 --shard-group 3", job);
  expect_usage_error(args, "--shard-group 3 needs --zero 3 and must divide --dp 8");
  snprintf(args, sizeof args, "%s --zero 1 --shard-group 4", job);
  expect_usage_error(args, "--shard-group 4 needs --zero 3");
  snprintf(args, sizeof args, "%s --shard-group 4 --sweep", job);
  expect_usage_error(args, "--shard-group fixes a ZeRO-3 layout's shard; drop it with --sweep");
  snprintf(args, sizeof args, "%s --zero 2 --bucket-mb 100", job);
  expect_ok_containing(args, "ZeRO-2 (DeepSpeed stage 2): every micro-batch's gradients "
                             "reduce-scattered in 100.0 MiB buckets");
  char path[64];
  snprintf(path, sizeof path, "/tmp/strata_val_z3_%d.csv", (int)getpid());
  write_csv(path,
            "name,preset,arch,layers,dim,heads,kv_heads,ffn,vocab,ctx,device,nodes,tp,pp,dp,"
            "global_batch,micro_batch,precision,recompute,sequence_parallel,attention,zero,measured,"
            "unit,flop_convention,role,source\n",
            "fsdp,gpt3-6.7b,,,,,,,,,h100,8,1,1,8,48,6,bf16,none,no,fused,3,10000,tokens/s,,held-out,me\n"
            "zero2,gpt3-6.7b,,,,,,,,,h100,8,1,1,8,48,6,bf16,none,no,fused,2,10000,tokens/s,,held-out,me\n");
  snprintf(args, sizeof args, "--validate %s", path);
  expect_ok_containing(args, "fsdp ");
  expect_ok_containing(args, "zero2 ");
  unlink(path);
}

/* --explain lists each op as the simulation times it: a qkv row with its times, FLOPs and a
 * share of peak below 100%, the head's logits, and the recomputed attention marked. */
static void test_explain_op_table(void) {
  char *out;
  CHECK_EQ_INT(run("--model gpt3-1.3b --device h100 --nodes 8 --tp 2 --dp 4 --batch 32 --precision bf16 "
                   "--recompute selective --explain", &out), 0);
  const char *t = strstr(out, "each op on one rank");
  CHECK_TRUE(t != NULL);
  const char *q = t ? strstr(t, "  layer      qkv ") : NULL;
  double fwd = 0, bwd = 0, gflop = 0, tfs = 0, share = 0;
  CHECK_TRUE(q && sscanf(q, "  layer qkv %lf %lf %lf %lf %lf%%", &fwd, &bwd, &gflop, &tfs, &share) == 5);
  CHECK_TRUE(fwd > 0 && bwd > fwd && share > 10 && share < 100);
  /* 2 x tokens x C x 3C / T, a micro-batch of 2 sequences (8 a replica in 4): 2 x 4096 x 2048 x 6144 / 2 */
  CHECK_NEAR(gflop, 2.0 * 4096 * 2048 * 6144 / 2 / 1e9, 0.01);
  CHECK_TRUE(t && strstr(t, "  head       logits ") != NULL);
  const char *a = t ? strstr(t, "  layer      attention ") : NULL;
  const char *eol = a ? strchr(a, '\n') : NULL;
  CHECK_TRUE(eol && eol[-1] == '*' && strstr(t, "* run again in backward") != NULL);
  free(out);
  /* the JSON's ops: the same table, qkv's forward FLOPs as the text's */
  json_object *o = run_json("--model gpt3-1.3b --device h100 --nodes 8 --tp 2 --dp 4 --batch 32 --precision bf16 "
                            "--recompute selective --json");
  json_object *ops = NULL;
  CHECK_TRUE(o && json_object_object_get_ex(o, "ops", &ops) && json_object_array_length(ops) > 3);
  int found = 0;
  for (size_t i = 0; ops && i < json_object_array_length(ops); i++) {
    json_object *x = json_object_array_get_idx(ops, i), *nm;
    if (json_object_object_get_ex(x, "name", &nm) && !strcmp(json_object_get_string(nm), "qkv")) {
      found = 1;
      CHECK_NEAR(num(x, "flops"), gflop * 1e9, 0.01e9);
      CHECK_NEAR(num(x, "fwd_s") * 1e3, fwd, 0.001);
    }
  }
  CHECK_TRUE(found);
  json_object_put(o);
}

static void test_tie_embeddings_flag(void) {
  const char *job = "--model gpt3-1.3b --device a100 --nodes 16 --dp 16 --batch 64 --precision bf16 "
                    "--no-overlap --json";
  char args[512];
  json_object *tied = run_json(job);
  snprintf(args, sizeof args, "%s --tie-embeddings no", job);
  json_object *untied = run_json(args);
  CHECK_TRUE(tied && untied);
  if (tied && untied) {
    json_object *mt = NULL, *mu = NULL, *v;
    CHECK_TRUE(json_object_object_get_ex(tied, "model", &mt) && json_object_object_get_ex(untied, "model", &mu));
    CHECK_TRUE(json_object_object_get_ex(mt, "tie_embeddings", &v) && json_object_get_boolean(v));
    CHECK_TRUE(json_object_object_get_ex(mu, "tie_embeddings", &v) && !json_object_get_boolean(v));
    CHECK_NEAR(num(mu, "params") - num(mt, "params"), 50257.0 * 2048, 0);
    CHECK_TRUE(num(untied, "tokens_per_s") < num(tied, "tokens_per_s"));
  }
  json_object_put(tied);
  json_object_put(untied);
  json_object *l = run_json("--model llama2-7b --device a100 --nodes 8 --tie-embeddings yes --json");
  json_object *m = NULL, *v;
  CHECK_TRUE(l && json_object_object_get_ex(l, "model", &m) &&
             json_object_object_get_ex(m, "params", &v));
  if (l && m) CHECK_NEAR(6738415616.0 - num(m, "params"), 32000.0 * 4096, 0);
  json_object_put(l);
  expect_ok_containing("--model gpt3-1.3b --device a100 --nodes 8 --tie-embeddings no",
                       "V=50257, untied head)");
  expect_ok_containing("--model gpt3-1.3b --device a100 --nodes 8", "V=50257, tied head)");
  expect_usage_error("--model gpt3-1.3b --device a100 --nodes 8 --tie-embeddings untied",
                     "--tie-embeddings 'untied' unknown (use yes or no)");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_sim_cli PATH/TO/strata [worker/sim/validation.csv]\n");
    return 2;
  }
  strata = argv[1];
  /* Open MPI's singleton start-up leaks by design; under a sanitizer build keep LeakSanitizer
   * from failing the child processes for it (our own code is leak-checked by the unit tests). */
  setenv("ASAN_OPTIONS", "detect_leaks=0", 0);
  test_xl_on_64_trn2();
  test_sweep_sorted_and_best();
  test_sweep_holds_virtual_stages();
  test_sweep_zero_stages();
  test_device_mem_override_reports_fit();
  test_json_and_cpu_devices();
  test_trace_file_is_json();
  test_tp_7b_trn1();
  test_sweep_needs_tp();
  test_bad_input_exits_2();
  test_presets_precision();
  test_tp_overlap_flag();
  test_tie_embeddings_flag();
  test_zero_overlap_buckets();
  test_full_shard_flag();
  test_explain_op_table();
  if (argc > 2) test_validate(argv[2]);
  return test_finish("sim_cli");
}
