/* test_report.c -- checks `strata report` against the run directory's own files.
 *
 *   test_report STRATA RUN_DIR WORLD PP DP   a run made by `strata train` in the test setup:
 *       the figures of `report --json` equal those computed here independently from
 *       steps.jsonl / report.json (first, min, final, validation loss, mean and median tokens/s,
 *       per-stage shares from compute_s / comm_s / idle_s); the terminal text carries the
 *       layout line, the rank map, the same loss figures (4 decimals) and one breakdown line
 *       per stage; --plot writes three non-empty PNG files (PNG magic bytes).
 *   test_report STRATA --bad SCRATCH_DIR     bad inputs exit 2 with a message naming the problem;
 *       a missing gnuplot (STRATA_GNUPLOT=/nonexistent) is a clear error naming the package.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test_util.h"

static const char *strata;

/* Runs `strata ARGS` with stdout to out_path and stderr to err_path; returns the exit status. */
static int run(const char *env, const char *args, const char *out_path, const char *err_path) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "%s '%s' %s >'%s' 2>'%s'", env ? env : "", strata, args, out_path, err_path);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path) {
  size_t n;
  char *s = test_read_file(path, &n);
  return s ? s : calloc(1, 1);
}

static double num(json_object *o, const char *k) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, k, &v)) return NAN;
  return json_object_get_double(v);
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int contains(const char *hay, const char *needle, const char *what) {
  if (strstr(hay, needle)) return 1;
  fprintf(stderr, "%s: missing \"%s\"\n", what, needle);
  return 0;
}

static void check_png(const char *path) {
  size_t n = 0;
  unsigned char *b = test_read_file(path, &n);
  static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  CHECK_TRUE(b != NULL);
  CHECK_TRUE(n > 1000);
  if (b && n >= 8) CHECK_TRUE(memcmp(b, magic, 8) == 0);
  free(b);
}

static void check_run(const char *dir, int world, int pp, int dp) {
  char p[4096], out[4096], err[4096], args[4096];
  /* Independent figures from the files. */
  snprintf(p, sizeof p, "%s/steps.jsonl", dir);
  FILE *f = fopen(p, "r");
  CHECK_TRUE(f != NULL);
  if (!f) return;
  double first = NAN, minv = INFINITY, fin = NAN, tps[1024], sum_tps = 0;
  int n = 0, min_step = 0;
  char line[4096];
  while (fgets(line, sizeof line, f) && n < 1024) {
    json_object *o = json_tokener_parse(line);
    CHECK_TRUE(o != NULL);
    if (!o) continue;
    double l = num(o, "loss");
    if (n == 0) first = l;
    if (l < minv) { minv = l; min_step = (int)num(o, "step"); }
    fin = l;
    tps[n] = num(o, "tokens_per_s");
    sum_tps += tps[n];
    n++;
    json_object_put(o);
  }
  fclose(f);
  CHECK_TRUE(n >= 3);
  qsort(tps, (size_t)n, sizeof *tps, cmpd);
  double med = n % 2 ? tps[n / 2] : 0.5 * (tps[n / 2 - 1] + tps[n / 2]);
  snprintf(p, sizeof p, "%s/report.json", dir);
  json_object *rep = json_object_from_file(p);
  CHECK_TRUE(rep != NULL);
  double val = num(rep, "val_loss");
  CHECK_TRUE(!isnan(val));

  json_object *rstages = NULL, *rlayout = NULL, *rranks = NULL;
  json_object_object_get_ex(rep, "stages", &rstages);
  if (json_object_object_get_ex(rep, "layout", &rlayout)) json_object_object_get_ex(rlayout, "ranks", &rranks);

  /* --json */
  snprintf(out, sizeof out, "%s/report_out.json", dir);
  snprintf(err, sizeof err, "%s/report_err.txt", dir);
  snprintf(args, sizeof args, "report '%s' --json", dir);
  CHECK_EQ_INT(run(NULL, args, out, err), 0);
  json_object *j = json_object_from_file(out);
  CHECK_TRUE(j != NULL);
  if (j) {
    CHECK_EQ_INT((int)num(j, "world_size"), world);
    CHECK_EQ_INT((int)num(j, "pp"), pp);
    CHECK_EQ_INT((int)num(j, "dp"), dp);
    json_object *lo = NULL, *th = NULL, *ranks = NULL, *stages = NULL;
    json_object_object_get_ex(j, "loss", &lo);
    json_object_object_get_ex(j, "throughput", &th);
    CHECK_EQ_INT((int)num(lo, "steps"), n);
    CHECK_NEAR(num(lo, "first"), first, 1e-9 * fabs(first));
    CHECK_NEAR(num(lo, "min"), minv, 1e-9 * fabs(minv));
    CHECK_EQ_INT((int)num(lo, "min_step"), min_step);
    CHECK_NEAR(num(lo, "final"), fin, 1e-9 * fabs(fin));
    CHECK_NEAR(num(lo, "final"), num(rep, "final_loss"), 1e-6);
    CHECK_NEAR(num(lo, "val"), val, 1e-9 * fabs(val));
    CHECK_NEAR(num(th, "tokens_per_s_mean"), sum_tps / n, 1e-6 * sum_tps / n);
    CHECK_NEAR(num(th, "tokens_per_s_median"), med, 1e-6 * med);
    CHECK_TRUE(json_object_object_get_ex(j, "ranks", &ranks));
    CHECK_TRUE(json_object_object_get_ex(j, "stages", &stages));
    if (world > 1) {
      CHECK_EQ_INT(json_object_array_length(ranks), world);
      CHECK_EQ_INT(json_object_array_length(stages), pp);
      for (int s = 0; s < pp && rstages; s++) {
        json_object *a = json_object_array_get_idx(stages, (size_t)s), *b = json_object_array_get_idx(rstages, (size_t)s);
        double tot = num(b, "compute_s") + num(b, "comm_s") + num(b, "idle_s");
        CHECK_NEAR(num(a, "compute_share"), num(b, "compute_s") / tot, 1e-9);
        CHECK_NEAR(num(a, "comm_share"), num(b, "comm_s") / tot, 1e-9);
        CHECK_NEAR(num(a, "idle_share"), num(b, "idle_s") / tot, 1e-9);
        CHECK_NEAR(num(a, "peak_mem_bytes"), num(b, "peak_mem_bytes"), 0.5);
      }
      for (int r = 0; r < world && rranks; r++) {
        json_object *a = json_object_array_get_idx(ranks, (size_t)r), *b = json_object_array_get_idx(rranks, (size_t)r);
        CHECK_EQ_INT((int)num(a, "stage"), (int)num(b, "stage"));
        CHECK_EQ_INT((int)num(a, "replica"), (int)num(b, "replica"));
      }
    }
    json_object *ck = NULL;
    CHECK_TRUE(json_object_object_get_ex(j, "checkpoints", &ck) && json_object_array_length(ck) >= 1);
    json_object_put(j);
  }

  /* Terminal text. */
  snprintf(out, sizeof out, "%s/report_out.txt", dir);
  snprintf(args, sizeof args, "report '%s'", dir);
  CHECK_EQ_INT(run(NULL, args, out, err), 0);
  char *txt = slurp(out), want[512];
  snprintf(want, sizeof want, "layout: world %d = pp %d x dp %d", world, pp, dp);
  CHECK_TRUE(contains(txt, want, "text"));
  snprintf(want, sizeof want, "first %.4f | min %.4f (step %d) | final %.4f | validation %.4f", first, minv, min_step,
           fin, val);
  CHECK_TRUE(contains(txt, want, "text"));
  CHECK_TRUE(contains(txt, "tokens/s: mean", "text"));
  CHECK_TRUE(contains(txt, "checkpoints: ckpt-", "text"));
  if (world > 1) {
    snprintf(want, sizeof want, "rank %d: stage %d, replica %d", world - 1, pp - 1, dp - 1);
    CHECK_TRUE(contains(txt, want, "text"));
    for (int s = 0; s < pp; s++) {
      json_object *b = rstages ? json_object_array_get_idx(rstages, (size_t)s) : NULL;
      double tot = num(b, "compute_s") + num(b, "comm_s") + num(b, "idle_s");
      snprintf(want, sizeof want, "stage %d: layers %d-%d", s, (int)num(b, "layer_begin"), (int)num(b, "layer_end") - 1);
      CHECK_TRUE(contains(txt, want, "text"));
      snprintf(want, sizeof want, "compute %.1f%% | communication %.1f%% | pipeline idle %.1f%%",
               100 * num(b, "compute_s") / tot, 100 * num(b, "comm_s") / tot, 100 * num(b, "idle_s") / tot);
      CHECK_TRUE(contains(txt, want, "text"));
    }
  } else {
    CHECK_TRUE(contains(txt, "single stage: compute", "text"));
  }
  free(txt);

  /* --plot */
  snprintf(args, sizeof args, "report '%s' --plot --plot-dir '%s/plots_test'", dir, dir);
  CHECK_EQ_INT(run(NULL, args, out, err), 0);
  txt = slurp(out);
  CHECK_TRUE(contains(txt, "loss.png", "plot listing"));
  free(txt);
  const char *pngs[3] = {"loss.png", "tokens_per_s.png", "breakdown.png"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/plots_test/%s", dir, pngs[i]);
    check_png(p);
  }
  /* validation drawn as points where it was measured (val.jsonl: the run's one evaluation, at
   * its last step), the loss with its EMA line; the EMA of the first step is that step's loss
   * (bias-corrected), and every EMA lies within the losses' range */
  snprintf(p, sizeof p, "%s/plots_test/val.dat", dir);
  txt = slurp(p);
  char want_val[128];
  snprintf(want_val, sizeof want_val, "\n%d %.9g\n", (int)num(rep, "steps_done"), val);
  CHECK_TRUE(contains(txt, want_val, "val.dat: the validation point at the last step"));
  free(txt);
  snprintf(p, sizeof p, "%s/plots_test/report.gp", dir);
  txt = slurp(p);
  CHECK_TRUE(contains(txt, "'val.dat' using 1:2 with points", "report.gp: validation as points"));
  CHECK_TRUE(contains(txt, "using 1:5 with lines lw 2 title 'loss (EMA)'", "report.gp: the EMA line"));
  free(txt);
  snprintf(p, sizeof p, "%s/plots_test/steps.dat", dir);
  FILE *sf = fopen(p, "r");
  CHECK_TRUE(sf != NULL);
  char row[512];
  int rows = 0;
  double lo = INFINITY, hi = -INFINITY;
  while (sf && fgets(row, sizeof row, sf)) {
    double st, loss, rate, ss, ema;
    if (row[0] == '#') continue;
    CHECK_EQ_INT(sscanf(row, "%lf %lf %lf %lf %lf", &st, &loss, &rate, &ss, &ema), 5);
    if (loss < lo) lo = loss;
    if (loss > hi) hi = loss;
    if (rows++ == 0) CHECK_NEAR(ema, loss, 1e-6 * loss);
    CHECK_TRUE(ema >= lo - 1e-6 && ema <= hi + 1e-6);
  }
  if (sf) fclose(sf);
  CHECK_TRUE(rows == (int)num(rep, "steps_done"));
  json_object_put(rep);
}

/* Expects exit status 2 (or `status`) and `msg` in stderr. */
static void expect_fail(const char *env, const char *args, int status, const char *msg, const char *scratch) {
  char out[4096], err[4096];
  snprintf(out, sizeof out, "%s/bad_out.txt", scratch);
  snprintf(err, sizeof err, "%s/bad_err.txt", scratch);
  int st = run(env, args, out, err);
  if (st != status) fprintf(stderr, "`strata %s`: exit %d, expected %d\n", args, st, status);
  CHECK_EQ_INT(st, status);
  char *e = slurp(err);
  CHECK_TRUE(contains(e, msg, args));
  free(e);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK_TRUE(f != NULL);
  if (f) { fputs(text, f); fclose(f); }
}

static void check_bad(const char *scratch, const char *good_run) {
  char d[4096], p[4200], args[8400];
  mkdir(scratch, 0755);
  snprintf(args, sizeof args, "report '%s/does-not-exist'", scratch);
  expect_fail(NULL, args, 2, "does not exist", scratch);
  expect_fail(NULL, "report", 2, "name one run directory", scratch);
  expect_fail(NULL, "report a b", 2, "name one run directory", scratch);
  /* A directory without report.json. */
  snprintf(d, sizeof d, "%s/empty", scratch);
  mkdir(d, 0755);
  snprintf(args, sizeof args, "report '%s'", d);
  expect_fail(NULL, args, 2, "report.json is missing", scratch);
  /* Corrupt report.json. */
  snprintf(d, sizeof d, "%s/corrupt_report", scratch);
  mkdir(d, 0755);
  snprintf(p, sizeof p, "%s/report.json", d);
  write_file(p, "{\"world_size\": 4, \"pp\": ");
  snprintf(p, sizeof p, "%s/steps.jsonl", d);
  write_file(p, "{\"step\": 1, \"loss\": 5.0}\n");
  snprintf(args, sizeof args, "report '%s'", d);
  expect_fail(NULL, args, 2, "report.json is not valid JSON", scratch);
  /* Good report.json, missing / corrupt / empty steps.jsonl. */
  snprintf(d, sizeof d, "%s/bad_steps", scratch);
  mkdir(d, 0755);
  snprintf(p, sizeof p, "%s/report.json", d);
  write_file(p, "{\"world_size\": 1, \"pp\": 1, \"dp\": 1, \"val_loss\": 4.5}\n");
  snprintf(args, sizeof args, "report '%s'", d);
  expect_fail(NULL, args, 2, "steps.jsonl", scratch);
  snprintf(p, sizeof p, "%s/steps.jsonl", d);
  write_file(p, "{\"step\": 1, \"loss\": 5.0}\n{\"step\": 2, \"lo\n");
  expect_fail(NULL, args, 2, "steps.jsonl line 2 is not a JSON step record", scratch);
  write_file(p, "");
  expect_fail(NULL, args, 2, "has no steps", scratch);
  /* A small valid hand-written run: works, and its figures are the file's. */
  write_file(p, "{\"step\": 1, \"loss\": 5.0, \"tokens_per_s\": 100, \"step_s\": 0.5}\n"
                "{\"step\": 2, \"loss\": 3.0, \"tokens_per_s\": 300, \"step_s\": 0.25}\n"
                "{\"step\": 3, \"loss\": 4.0, \"tokens_per_s\": 800, \"step_s\": 0.125}\n");
  char out[4400], err[4400];
  snprintf(out, sizeof out, "%s/hand.json", scratch);
  snprintf(err, sizeof err, "%s/hand.err", scratch);
  snprintf(args, sizeof args, "report '%s' --json", d);
  CHECK_EQ_INT(run(NULL, args, out, err), 0);
  json_object *j = json_object_from_file(out), *lo = NULL, *th = NULL;
  CHECK_TRUE(j != NULL);
  json_object_object_get_ex(j, "loss", &lo);
  json_object_object_get_ex(j, "throughput", &th);
  CHECK_NEAR(num(lo, "first"), 5.0, 0);
  CHECK_NEAR(num(lo, "min"), 3.0, 0);
  CHECK_EQ_INT((int)num(lo, "min_step"), 2);
  CHECK_NEAR(num(lo, "final"), 4.0, 0);
  CHECK_NEAR(num(lo, "val"), 4.5, 0);
  CHECK_NEAR(num(th, "tokens_per_s_mean"), 400.0, 1e-9);
  CHECK_NEAR(num(th, "tokens_per_s_median"), 300.0, 1e-9);
  CHECK_NEAR(num(th, "step_s_median"), 0.25, 1e-12);
  json_object_put(j);
  /* sim_* keys are shown when present. */
  snprintf(p, sizeof p, "%s/report.json", d);
  write_file(p, "{\"world_size\": 1, \"pp\": 1, \"dp\": 1, \"val_loss\": 4.5, \"sim_step_s\": 0.0125, \"sim_mfu\": 0.42}\n");
  snprintf(args, sizeof args, "report '%s'", d);
  snprintf(out, sizeof out, "%s/hand.txt", scratch);
  CHECK_EQ_INT(run(NULL, args, out, err), 0);
  char *t = slurp(out);
  CHECK_TRUE(contains(t, "sim_step_s", "sim text") && contains(t, "0.0125", "sim text") && contains(t, "sim_mfu", "sim text"));
  free(t);
  /* Flags. */
  snprintf(args, sizeof args, "report '%s' --plot-dir /tmp", good_run);
  expect_fail(NULL, args, 2, "--plot-dir needs --plot", scratch);
  snprintf(args, sizeof args, "report '%s' --bogus", good_run);
  expect_fail(NULL, args, 2, "--bogus", scratch);
  /* gnuplot missing. */
  snprintf(args, sizeof args, "report '%s' --plot --plot-dir '%s/noplot'", good_run, scratch);
  expect_fail("STRATA_GNUPLOT=/nonexistent/gnuplot", args, 1, "gnuplot-nox", scratch);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: test_report STRATA RUN_DIR WORLD PP DP | STRATA --bad SCRATCH GOOD_RUN\n");
    return 2;
  }
  strata = argv[1];
  if (!strcmp(argv[2], "--bad")) {
    check_bad(argv[3], argc > 4 ? argv[4] : argv[3]);
    return test_finish("report_bad_inputs");
  }
  if (argc < 6) return 2;
  check_run(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  return test_finish("report_run");
}
