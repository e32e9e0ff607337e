/* report_plot.c -- gnuplot plots of a training run (see report_plot.h). */
#include "report_plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The gnuplot program: env STRATA_GNUPLOT (a path or a name on PATH), default "gnuplot". */
static const char *gnuplot_name(void) {
  const char *g = getenv("STRATA_GNUPLOT");
  return g && *g ? g : "gnuplot";
}

static int have_gnuplot(void) {
  const char *g = gnuplot_name();
  if (strchr(g, '/')) return access(g, X_OK) == 0;
  const char *path = getenv("PATH");
  if (!path) return 0;
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", *d ? d : ".", g);
    if (access(p, X_OK) == 0) return 1;
  }
  return 0;
}

static int run_gnuplot(const char *script_path, char *err, size_t errlen) {
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "'%s' '%s' 2>&1", gnuplot_name(), script_path);
  FILE *p = popen(cmd, "r");
  if (!p) { snprintf(err, errlen, "cannot run gnuplot: %s", strerror(errno)); return -1; }
  char out[512] = {0};
  size_t got = fread(out, 1, sizeof out - 1, p);
  out[got] = 0;
  int st = pclose(p);
  if (st != 0) {
    snprintf(err, errlen, "gnuplot failed on %s: %.400s", script_path, out);
    return -1;
  }
  return 0;
}

/* dir/name opened for writing into *f. 0, or -1 with a message. */
static int open_out(const char *dir, const char *name, FILE **f, char *err, size_t errlen) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  *f = fopen(p, "w");
  if (!*f) { snprintf(err, errlen, "cannot write %s: %s", p, strerror(errno)); return -1; }
  return 0;
}

/* The EMA's span in steps: a tenth of the run, between 1 and 50 (TensorBoard-like smoothing
 * for long runs, little lag for short ones). */
static double ema_beta(int n) {
  double span = n / 10.0;
  if (span < 1) span = 1;
  if (span > 50) span = 50;
  return 1.0 - 2.0 / (span + 1.0);
}

/* steps.dat (with the loss's bias-corrected EMA: m = beta m + (1 - beta) loss, shown as
 * m / (1 - beta^k) after k steps, as Adam corrects its moments), val.dat (one point per
 * validation) and breakdown.dat. 0 or -1. */
static int write_data(const char *dir, const report_run_t *run, char *err, size_t errlen) {
  const report_steps_t *s = &run->steps;
  const report_summary_t *m = &run->sum;
  FILE *f;
  if (open_out(dir, "steps.dat", &f, err, errlen)) return -1;
  fprintf(f, "# step loss tokens_per_s step_s loss_ema\n");
  const double beta = ema_beta(s->n);
  double ema = 0, corr = 1;
  for (int i = 0; i < s->n; i++) {
    ema = beta * ema + (1 - beta) * s->rows[i].loss;
    corr *= beta;
    fprintf(f, "%.0f %.9g %.9g %.9g %.9g\n", s->rows[i].step, s->rows[i].loss,
            isnan(s->rows[i].tokens_per_s) ? 0 : s->rows[i].tokens_per_s,
            isnan(s->rows[i].step_s) ? 0 : s->rows[i].step_s, ema / (1 - corr));
  }
  fclose(f);
  if (open_out(dir, "val.dat", &f, err, errlen)) return -1;
  fprintf(f, "# step val_loss\n");
  for (int i = 0; i < run->val.n; i++)
    fprintf(f, "%.0f %.9g\n", run->val.rows[i].step, run->val.rows[i].loss);
  /* a run without val.jsonl (older builds): report.json's final validation at the last step */
  if (run->val.n == 0 && !isnan(m->val) && s->n > 0)
    fprintf(f, "%.0f %.9g\n", s->rows[s->n - 1].step, m->val);
  fclose(f);
  if (open_out(dir, "breakdown.dat", &f, err, errlen)) return -1;
  fprintf(f, "# label compute comm idle (shares)\n");
  for (size_t i = 0; i < run->nstages; i++) {
    double c, mm, id;
    report_stage_shares(json_object_array_get_idx(run->stages, i), &c, &mm, &id);
    fprintf(f, "stage%zu %.6f %.6f %.6f\n", i, isnan(c) ? 0 : c, isnan(mm) ? 0 : mm, isnan(id) ? 0 : id);
  }
  if (run->nstages == 0) {
    double cm = isnan(m->comm_share_mean) ? 0 : m->comm_share_mean, id = isnan(m->idle_share_mean) ? 0 : m->idle_share_mean;
    fprintf(f, "all %.6f %.6f %.6f\n", 1.0 - cm - id, cm, id);
  }
  fclose(f);
  return 0;
}

/* report.gp for `terminal`, and gnuplot run on it. 0 or -1. */
static int write_script(const char *dir, const report_run_t *run, const char *terminal, char *err,
                        size_t errlen) {
  char valplot[96] = "", p[4200];
  if (run->val.n > 0 || !isnan(run->sum.val))
    snprintf(valplot, sizeof valplot, ", 'val.dat' using 1:2 with points pt 7 ps 1.5 title 'validation loss'");
  FILE *f;
  if (open_out(dir, "report.gp", &f, err, errlen)) return -1;
  fprintf(f,
          "# written by strata report for %s\n"
          "set terminal %s\nset grid\ncd '%s'\n"
          "set output 'loss.png'\nset title 'training loss'\nset xlabel 'step'\nset ylabel 'loss'\n"
          "plot 'steps.dat' using 1:2 with points pt 7 ps 0.3 lc rgb '#b0b0b0' title 'loss', "
          "'' using 1:5 with lines lw 2 title 'loss (EMA)'%s\n"
          "set output 'tokens_per_s.png'\nset title 'throughput'\nset ylabel 'tokens/s'\n"
          "plot 'steps.dat' using 1:3 with linespoints pt 7 ps 0.5 title 'tokens/s'\n"
          "set output 'breakdown.png'\nset title 'time breakdown per stage (share of stage time)'\n"
          "set xlabel 'stage'\nset ylabel 'share'\nset yrange [0:1.05]\nset style data histograms\n"
          "set style histogram rowstacked\nset style fill solid 0.8 border -1\nset boxwidth 0.6\n"
          "set key outside right\n"
          "plot 'breakdown.dat' using 2:xtic(1) title 'compute', '' using 3 title 'communication', "
          "'' using 4 title 'pipeline idle'\n"
          "unset output\n",
          run->dir, terminal, dir, valplot);
  fclose(f);
  snprintf(p, sizeof p, "%s/report.gp", dir);
  return run_gnuplot(p, err, errlen);
}

int report_plot(const char *dir, const report_run_t *run, char *err, size_t errlen) {
  if (!have_gnuplot()) {
    snprintf(err, errlen, "--plot needs gnuplot, but '%s' was not found (install it: apt-get install gnuplot-nox; or set STRATA_GNUPLOT to its path)", gnuplot_name());
    return -1;
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create --plot-dir %s: %s", dir, strerror(errno));
    return -1;
  }
  if (write_data(dir, run, err, errlen)) return -1;
  const char *terms[2] = {"pngcairo size 900,500 noenhanced", "png size 900,500 noenhanced"};
  for (int t = 0; t < 2; t++) {
    if (write_script(dir, run, terms[t], err, errlen) == 0) break;
    if (t == 1) return -1;
  }
  static const char *pngs[3] = {"loss.png", "tokens_per_s.png", "breakdown.png"};
  printf("plots:\n");
  for (int i = 0; i < 3; i++) {
    char q[4300];
    struct stat st;
    snprintf(q, sizeof q, "%s/%s", dir, pngs[i]);
    if (stat(q, &st) != 0 || st.st_size == 0) {
      snprintf(err, errlen, "gnuplot did not write %s", q);
      return -1;
    }
    printf("  %s (%lld bytes)\n", q, (long long)st.st_size);
  }
  return 0;
}
