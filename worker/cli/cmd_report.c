/* strata report -- a readable summary of a training run directory written by `strata train`
 * (single rank or mpirun -np N): layout and rank map, the loss curve (ASCII chart plus first /
 * min / final / validation loss), throughput (tokens/s mean and median, step time), the time
 * breakdown per stage (compute / communication / pipeline-idle shares), peak memory per stage and
 * rank, simulated figures (any sim_* keys in report.json, when present) and the checkpoints
 * present. --json prints the same figures as one JSON object; --plot writes PNGs through gnuplot
 * (loss.png, tokens_per_s.png, breakdown.png) into --plot-dir (default RUN_DIR/plots).
 *
 * Reads RUN_DIR/report.json and RUN_DIR/steps.jsonl with json-c. Runs on rank 0 only (other
 * ranks, if any, return 0 at once). Also lists each rank's last state from RUN_DIR/status/rank-R
 * (rank_status.h: step, operation, and how it ended); for a run that did not finish (no
 * report.json, e.g. a rank was killed) only those states are printed, with exit status 1.
 * Exit status: 0 ok, 2 bad usage or unreadable run directory, 1 plotting failed or the run did
 * not finish. */
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "env.h"
#include "log.h"
#include "rank_status.h"

/* Width and height (characters) of the terminal loss chart; env STRATA_REPORT_CHART_COLS. */
#define REPORT_CHART_COLS 60
#define REPORT_CHART_ROWS 8
#define REPORT_MAX_CKPTS 256

typedef struct {
  double step, loss, tokens_per_s, step_s, comm_share, idle_share;
  int has_shares;
} step_row_t;

typedef struct {
  step_row_t *rows;
  int n;
} steps_t;

typedef struct {
  double first, min, final, val;
  double min_step;
  double tps_mean, tps_median, step_s_mean, step_s_median, step_s_min, step_s_max;
  double comm_share_mean, idle_share_mean; /* NaN if steps.jsonl has no shares */
} summary_t;

static double jnum(json_object *o, const char *key, double dflt) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, key, &v)) return dflt;
  if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)) return dflt;
  return json_object_get_double(v);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
  if (n <= 0) return NAN;
  double *t = malloc((size_t)n * sizeof *t);
  if (!t) return NAN;
  memcpy(t, v, (size_t)n * sizeof *t);
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  free(t);
  return m;
}

/* Loads steps.jsonl. 0, or -1 with a message naming the file and line. */
static int load_steps(const char *path, steps_t *s, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open %s: %s (is this a `strata train --out` run directory?)", path,
             strerror(errno));
    return -1;
  }
  int cap = 64, lineno = 0;
  s->rows = malloc((size_t)cap * sizeof *s->rows);
  s->n = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  int rc = 0;
  while (s->rows && (len = getline(&line, &lcap, f)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
    if (len == 0) continue;
    json_object *o = json_tokener_parse(line);
    if (!o || !json_object_is_type(o, json_type_object) || isnan(jnum(o, "step", NAN)) ||
        isnan(jnum(o, "loss", NAN))) {
      snprintf(err, errlen, "%s line %d is not a JSON step record with \"step\" and \"loss\" (corrupt file? re-run `strata train`)",
               path, lineno);
      json_object_put(o);
      rc = -1;
      break;
    }
    if (s->n == cap) {
      cap *= 2;
      step_row_t *nr = realloc(s->rows, (size_t)cap * sizeof *nr);
      if (!nr) { json_object_put(o); rc = -1; snprintf(err, errlen, "out of memory"); break; }
      s->rows = nr;
    }
    step_row_t *r = &s->rows[s->n++];
    r->step = jnum(o, "step", NAN);
    r->loss = jnum(o, "loss", NAN);
    r->tokens_per_s = jnum(o, "tokens_per_s", NAN);
    r->step_s = jnum(o, "step_s", NAN);
    r->comm_share = jnum(o, "comm_share", NAN);
    r->idle_share = jnum(o, "idle_share", NAN);
    r->has_shares = !isnan(r->comm_share) && !isnan(r->idle_share);
    json_object_put(o);
  }
  free(line);
  fclose(f);
  if (!s->rows && rc == 0) { snprintf(err, errlen, "out of memory"); rc = -1; }
  if (rc == 0 && s->n == 0) {
    snprintf(err, errlen, "%s has no steps (the run stopped before its first step; re-run `strata train`)", path);
    rc = -1;
  }
  return rc;
}

static void summarise(const steps_t *s, json_object *rep, summary_t *m) {
  m->first = s->rows[0].loss;
  m->final = s->rows[s->n - 1].loss;
  m->min = INFINITY;
  m->min_step = 0;
  m->val = jnum(rep, "val_loss", NAN);
  double *tps = malloc((size_t)s->n * sizeof *tps), *st = malloc((size_t)s->n * sizeof *st);
  int ntps = 0, nst = 0, nsh = 0;
  double stps = 0, sst = 0, scomm = 0, sidle = 0;
  m->step_s_min = INFINITY;
  m->step_s_max = -INFINITY;
  for (int i = 0; i < s->n; i++) {
    const step_row_t *r = &s->rows[i];
    if (r->loss < m->min) { m->min = r->loss; m->min_step = r->step; }
    if (tps && !isnan(r->tokens_per_s)) { tps[ntps++] = r->tokens_per_s; stps += r->tokens_per_s; }
    if (st && !isnan(r->step_s)) {
      st[nst++] = r->step_s;
      sst += r->step_s;
      if (r->step_s < m->step_s_min) m->step_s_min = r->step_s;
      if (r->step_s > m->step_s_max) m->step_s_max = r->step_s;
    }
    if (r->has_shares) { nsh++; scomm += r->comm_share; sidle += r->idle_share; }
  }
  m->tps_mean = ntps ? stps / ntps : NAN;
  m->tps_median = median(tps, ntps);
  m->step_s_mean = nst ? sst / nst : NAN;
  m->step_s_median = median(st, nst);
  if (!nst) m->step_s_min = m->step_s_max = NAN;
  m->comm_share_mean = nsh ? scomm / nsh : NAN;
  m->idle_share_mean = nsh ? sidle / nsh : NAN;
  free(tps);
  free(st);
}

/* Sorted names of RUN_DIR/ckpt-* directories; returns the count (<= max). */
static int list_ckpts(const char *dir, char names[][64], int max) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max) {
    if (strncmp(e->d_name, "ckpt-", 5) != 0 || strlen(e->d_name) >= 64) continue;
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(names[n++], 64, "%s", e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
  return n;
}

static void print_chart(const steps_t *s, const summary_t *m) {
  int cols = REPORT_CHART_COLS;
  int64_t env_cols; /* checked by strata at start-up (worker/base/env.c) */
  if (env_read_int("STRATA_REPORT_CHART_COLS", cols, &env_cols, NULL, 0) == 0) cols = (int)env_cols;
  if (cols > s->n) cols = s->n;
  double lo = m->min, hi = -INFINITY;
  for (int i = 0; i < s->n; i++) if (s->rows[i].loss > hi) hi = s->rows[i].loss;
  double span = hi - lo > 1e-12 ? hi - lo : 1.0;
  /* Column c shows the mean loss of its steps. */
  double colv[400];
  for (int c = 0; c < cols; c++) {
    int a = (int)((long)c * s->n / cols), b = (int)((long)(c + 1) * s->n / cols);
    double sum = 0;
    for (int i = a; i < b; i++) sum += s->rows[i].loss;
    colv[c] = b > a ? sum / (b - a) : NAN;
  }
  for (int row = REPORT_CHART_ROWS - 1; row >= 0; row--) {
    double level = lo + span * row / REPORT_CHART_ROWS - 1e-12 * span;
    if (row == REPORT_CHART_ROWS - 1) printf("  %8.4f |", hi);
    else if (row == 0) printf("  %8.4f |", lo);
    else printf("           |");
    for (int c = 0; c < cols; c++) {
      int filled = !isnan(colv[c]) && colv[c] >= level;
      int top = filled && (row == REPORT_CHART_ROWS - 1 || colv[c] < lo + span * (row + 1) / REPORT_CHART_ROWS - 1e-12 * span);
      putchar(top ? '*' : filled ? ':' : ' ');
    }
    putchar('\n');
  }
  printf("           +");
  for (int c = 0; c < cols; c++) putchar('-');
  printf("\n            step %.0f%*sstep %.0f\n", s->rows[0].step, cols > 20 ? cols - 16 : 2, "",
         s->rows[s->n - 1].step);
}

static const char *fmt_bytes(double b, char *buf, size_t n) {
  if (isnan(b)) snprintf(buf, n, "n/a");
  else if (b >= 1 << 30) snprintf(buf, n, "%.2f GiB", b / (1 << 30));
  else snprintf(buf, n, "%.1f MiB", b / (1 << 20));
  return buf;
}

/* Prints "key value" for every sim_* member of o, on one indented line each. Returns the count. */
static int print_sim(json_object *o, const char *indent) {
  int n = 0;
  json_object_object_foreach(o, key, val) {
    if (strncmp(key, "sim_", 4) != 0) continue;
    if (json_object_is_type(val, json_type_double) || json_object_is_type(val, json_type_int))
      printf("%s%-22s %.6g\n", indent, key, json_object_get_double(val));
    else
      printf("%s%-22s %s\n", indent, key, json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
    n++;
  }
  return n;
}

static json_object *sim_object(json_object *o) {
  json_object *out = json_object_new_object();
  json_object_object_foreach(o, key, val) {
    if (strncmp(key, "sim_", 4) == 0) json_object_object_add(out, key, json_object_get(val));
  }
  return out;
}

static json_object *jd(double v) { return isnan(v) || isinf(v) ? NULL : json_object_new_double(v); }

/* Stage shares: compute / comm / idle over their sum. */
static void stage_shares(json_object *st, double *c, double *m, double *i) {
  double cs = jnum(st, "compute_s", NAN), ms = jnum(st, "comm_s", NAN), is = jnum(st, "idle_s", NAN);
  double tot = cs + ms + is;
  if (isnan(tot) || tot <= 0) { *c = *m = *i = NAN; return; }
  *c = cs / tot;
  *m = ms / tot;
  *i = is / tot;
}

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

/* Writes the data files and gnuplot script into dir and runs gnuplot. Lists the PNGs written.
 * 0, or -1 with a message. */
static int write_plots(const char *dir, const char *run_dir, const steps_t *s, json_object *stages,
                       const summary_t *m, char *err, size_t errlen) {
  if (!have_gnuplot()) {
    snprintf(err, errlen, "--plot needs gnuplot, but '%s' was not found (install it: apt-get install gnuplot-nox; or set STRATA_GNUPLOT to its path)", gnuplot_name());
    return -1;
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create --plot-dir %s: %s", dir, strerror(errno));
    return -1;
  }
  char p[4200];
  snprintf(p, sizeof p, "%s/steps.dat", dir);
  FILE *f = fopen(p, "w");
  if (!f) { snprintf(err, errlen, "cannot write %s: %s", p, strerror(errno)); return -1; }
  fprintf(f, "# step loss tokens_per_s step_s\n");
  for (int i = 0; i < s->n; i++)
    fprintf(f, "%.0f %.9g %.9g %.9g\n", s->rows[i].step, s->rows[i].loss,
            isnan(s->rows[i].tokens_per_s) ? 0 : s->rows[i].tokens_per_s, isnan(s->rows[i].step_s) ? 0 : s->rows[i].step_s);
  fclose(f);
  snprintf(p, sizeof p, "%s/breakdown.dat", dir);
  f = fopen(p, "w");
  if (!f) { snprintf(err, errlen, "cannot write %s: %s", p, strerror(errno)); return -1; }
  fprintf(f, "# label compute comm idle (shares)\n");
  size_t ns = stages ? json_object_array_length(stages) : 0;
  for (size_t i = 0; i < ns; i++) {
    double c, mm, id;
    stage_shares(json_object_array_get_idx(stages, i), &c, &mm, &id);
    fprintf(f, "stage%zu %.6f %.6f %.6f\n", i, isnan(c) ? 0 : c, isnan(mm) ? 0 : mm, isnan(id) ? 0 : id);
  }
  if (ns == 0) {
    double cm = isnan(m->comm_share_mean) ? 0 : m->comm_share_mean, id = isnan(m->idle_share_mean) ? 0 : m->idle_share_mean;
    fprintf(f, "all %.6f %.6f %.6f\n", 1.0 - cm - id, cm, id);
  }
  fclose(f);
  char valplot[96] = "";
  if (!isnan(m->val)) snprintf(valplot, sizeof valplot, ", %.9g with lines dt 2 lw 2 title 'validation loss'", m->val);
  const char *terms[2] = {"pngcairo size 900,500 noenhanced", "png size 900,500 noenhanced"};
  for (int t = 0; t < 2; t++) {
    snprintf(p, sizeof p, "%s/report.gp", dir);
    f = fopen(p, "w");
    if (!f) { snprintf(err, errlen, "cannot write %s: %s", p, strerror(errno)); return -1; }
    fprintf(f,
            "# written by strata report for %s\n"
            "set terminal %s\nset grid\ncd '%s'\n"
            "set output 'loss.png'\nset title 'training loss'\nset xlabel 'step'\nset ylabel 'loss'\n"
            "plot 'steps.dat' using 1:2 with linespoints pt 7 ps 0.5 title 'loss'%s\n"
            "set output 'tokens_per_s.png'\nset title 'throughput'\nset ylabel 'tokens/s'\n"
            "plot 'steps.dat' using 1:3 with linespoints pt 7 ps 0.5 title 'tokens/s'\n"
            "set output 'breakdown.png'\nset title 'time breakdown per stage (share of stage time)'\n"
            "set xlabel 'stage'\nset ylabel 'share'\nset yrange [0:1.05]\nset style data histograms\n"
            "set style histogram rowstacked\nset style fill solid 0.8 border -1\nset boxwidth 0.6\n"
            "set key outside right\n"
            "plot 'breakdown.dat' using 2:xtic(1) title 'compute', '' using 3 title 'communication', "
            "'' using 4 title 'pipeline idle'\n"
            "unset output\n",
            run_dir, terms[t], dir,
            valplot);
    fclose(f);
    if (run_gnuplot(p, err, errlen) == 0) break;
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

/* The run's status records, in rank order: rank-0, rank-1, ... up to the first missing one.
 * Returns the number read into recs (at most max); unreadable records are skipped with a
 * warning. */
static int load_rank_status(const char *dir, rank_status_record_t *recs, int max) {
  int n = 0;
  for (int r = 0; n < max; r++) {
    char path[4300], err[512];
    snprintf(path, sizeof path, "%s/status/rank-%d", dir, r);
    if (access(path, F_OK) != 0) break;
    if (rank_status_read(path, &recs[n], err, sizeof err)) {
      strata_warn("report: %s", err);
      continue;
    }
    n++;
  }
  return n;
}

static void print_rank_status(const rank_status_record_t *recs, int n) {
  printf("\nlast state per rank (status/rank-R):\n");
  for (int i = 0; i < n; i++) {
    const rank_status_record_t *r = &recs[i];
    char step[48];
    if (r->step > 0) snprintf(step, sizeof step, "step %lld", (long long)r->step);
    else snprintf(step, sizeof step, "before the first step");
    const char *how = r->state;
    if (!strcmp(how, "running")) how = "no final state: died without reporting (killed or exited)";
    printf("  rank %d (stage %d, replica %d, pid %d): %s, %s: %s\n", r->rank, r->stage, r->replica,
           r->pid, step, r->op, how);
  }
}

static json_object *rank_status_json(const rank_status_record_t *recs, int n) {
  json_object *a = json_object_new_array();
  for (int i = 0; i < n; i++) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "rank", json_object_new_int(recs[i].rank));
    json_object_object_add(o, "stage", json_object_new_int(recs[i].stage));
    json_object_object_add(o, "replica", json_object_new_int(recs[i].replica));
    json_object_object_add(o, "pid", json_object_new_int(recs[i].pid));
    json_object_object_add(o, "step", json_object_new_int64(recs[i].step));
    json_object_object_add(o, "operation", json_object_new_string(recs[i].op));
    json_object_object_add(o, "state", json_object_new_string(recs[i].state));
    json_object_array_add(a, o);
  }
  return a;
}

#define REPORT_MAX_RANKS 4096

int cmd_report(int argc, char **argv) {
  int json = 0, plot = 0;
  const char *plot_dir = NULL;
  arg_spec_t specs[] = {
      {"--json", NULL, ARG_FLAG, &json, NULL, "print the summary as one JSON object"},
      {"--plot", NULL, ARG_FLAG, &plot, NULL, "also write PNG plots with gnuplot"},
      {"--plot-dir", NULL, ARG_STRING, &plot_dir, "DIR", "where --plot writes (default RUN_DIR/plots)"},
  };
  const char *pos[2];
  int npos = 2;
  int rc = args_parse("report",
                      "strata report RUN_DIR [--json] [--plot [--plot-dir DIR]]\n\n"
                      "Summarises a `strata train --out RUN_DIR` run: layout, loss curve, throughput, time\n"
                      "breakdown per stage, memory, simulated figures (sim_* keys) and checkpoints.\n"
                      "Reads RUN_DIR/report.json and RUN_DIR/steps.jsonl, and each rank's last state (step,\n"
                      "operation, how it ended) from RUN_DIR/status/rank-R; a run that did not finish shows\n"
                      "only those. Exit status: 0 ok, 2 bad usage or unreadable run directory, 1 plotting\n"
                      "failed or the run did not finish.",
                      argc, argv, specs, 3, pos, &npos);
  if (rc != 0) return rc > 0 ? 0 : 2;
  if (strata_log_rank() > 0) return 0;
  if (npos != 1) {
    strata_error("report: name one run directory (strata report RUN_DIR), got %d", npos);
    return 2;
  }
  if (plot_dir && !plot) {
    strata_error("report: --plot-dir needs --plot");
    return 2;
  }
  const char *dir = pos[0];
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    strata_error("report: run directory %s does not exist or is not a directory (pass the --out DIR of `strata train`)", dir);
    return 2;
  }
  char path[4200], err[1024];
  static rank_status_record_t recs[REPORT_MAX_RANKS];
  int nrec = load_rank_status(dir, recs, REPORT_MAX_RANKS);
  snprintf(path, sizeof path, "%s/report.json", dir);
  if (access(path, R_OK) != 0 && nrec > 0) {
    /* A run that did not finish: what every rank was doing when it stopped. */
    if (json) {
      json_object *o = json_object_new_object();
      json_object_object_add(o, "run_dir", json_object_new_string(dir));
      json_object_object_add(o, "finished", json_object_new_boolean(0));
      json_object_object_add(o, "rank_status", rank_status_json(recs, nrec));
      printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
      json_object_put(o);
    } else {
      printf("run %s did not finish (no report.json)\n", dir);
      print_rank_status(recs, nrec);
    }
    strata_error("report: %s is missing: the run did not finish; the last state of each rank is above", path);
    return 1;
  }
  if (access(path, R_OK) != 0) {
    strata_error("report: %s is missing (the run did not finish, or %s is not a `strata train --out` directory)", path, dir);
    return 2;
  }
  json_object *rep = json_object_from_file(path);
  if (!rep || !json_object_is_type(rep, json_type_object) || isnan(jnum(rep, "world_size", NAN))) {
    strata_error("report: %s is not valid JSON with a \"world_size\" member (corrupt? re-run `strata train`)", path);
    json_object_put(rep);
    return 2;
  }
  steps_t steps = {0};
  snprintf(path, sizeof path, "%s/steps.jsonl", dir);
  if (load_steps(path, &steps, err, sizeof err) != 0) {
    strata_error("report: %s", err);
    free(steps.rows);
    json_object_put(rep);
    return 2;
  }
  summary_t m;
  summarise(&steps, rep, &m);
  int world = (int)jnum(rep, "world_size", 1), pp = (int)jnum(rep, "pp", 1), dp = (int)jnum(rep, "dp", 1);
  json_object *model = NULL, *config = NULL, *layout = NULL, *ranks = NULL, *stages = NULL, *tmp;
  json_object_object_get_ex(rep, "model", &model);
  json_object_object_get_ex(rep, "config", &config);
  if (json_object_object_get_ex(rep, "layout", &layout)) json_object_object_get_ex(layout, "ranks", &ranks);
  if (json_object_object_get_ex(rep, "stages", &tmp) && json_object_is_type(tmp, json_type_array)) stages = tmp;
  if (ranks && !json_object_is_type(ranks, json_type_array)) ranks = NULL;
  const char *transport = json_object_object_get_ex(rep, "transport", &tmp) ? json_object_get_string(tmp) : "local";
  const char *schedule = json_object_object_get_ex(rep, "schedule", &tmp) ? json_object_get_string(tmp) : "-";
  double micro = jnum(rep, "microbatches", jnum(config, "microbatches", 1));
  static char ckpts[REPORT_MAX_CKPTS][64];
  int nck = list_ckpts(dir, ckpts, REPORT_MAX_CKPTS);
  size_t nstages = stages ? json_object_array_length(stages) : 0;

  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "run_dir", json_object_new_string(dir));
    json_object_object_add(o, "world_size", json_object_new_int(world));
    json_object_object_add(o, "pp", json_object_new_int(pp));
    json_object_object_add(o, "dp", json_object_new_int(dp));
    json_object_object_add(o, "microbatches", json_object_new_int((int)micro));
    json_object_object_add(o, "schedule", json_object_new_string(schedule));
    json_object_object_add(o, "transport", json_object_new_string(transport));
    if (model) json_object_object_add(o, "model", json_object_get(model));
    json_object *rk = json_object_new_array();
    for (size_t i = 0; ranks && i < json_object_array_length(ranks); i++) {
      json_object *r = json_object_array_get_idx(ranks, i), *c = json_object_new_object();
      int sidx = (int)jnum(r, "stage", 0);
      json_object_object_add(c, "rank", json_object_new_int((int)jnum(r, "rank", 0)));
      json_object_object_add(c, "stage", json_object_new_int(sidx));
      json_object_object_add(c, "replica", json_object_new_int((int)jnum(r, "replica", 0)));
      if (stages && sidx >= 0 && (size_t)sidx < nstages)
        json_object_object_add(c, "peak_mem_bytes", jd(jnum(json_object_array_get_idx(stages, (size_t)sidx), "peak_mem_bytes", NAN)));
      json_object_array_add(rk, c);
    }
    json_object_object_add(o, "ranks", rk);
    json_object *sa = json_object_new_array();
    for (size_t i = 0; i < nstages; i++) {
      json_object *sj = json_object_array_get_idx(stages, i), *c = json_object_new_object();
      double cs, ms, is;
      stage_shares(sj, &cs, &ms, &is);
      json_object_object_add(c, "stage", json_object_new_int((int)jnum(sj, "stage", (double)i)));
      json_object_object_add(c, "layer_begin", json_object_new_int((int)jnum(sj, "layer_begin", 0)));
      json_object_object_add(c, "layer_end", json_object_new_int((int)jnum(sj, "layer_end", 0)));
      json_object_object_add(c, "params", json_object_new_int64((int64_t)jnum(sj, "params", 0)));
      json_object_object_add(c, "compute_share", jd(cs));
      json_object_object_add(c, "comm_share", jd(ms));
      json_object_object_add(c, "idle_share", jd(is));
      json_object_object_add(c, "peak_mem_bytes", jd(jnum(sj, "peak_mem_bytes", NAN)));
      json_object *sim = sim_object(sj);
      json_object_object_add(c, "sim", sim);
      json_object_array_add(sa, c);
    }
    json_object_object_add(o, "stages", sa);
    json_object *lo = json_object_new_object();
    json_object_object_add(lo, "steps", json_object_new_int(steps.n));
    json_object_object_add(lo, "first", jd(m.first));
    json_object_object_add(lo, "min", jd(m.min));
    json_object_object_add(lo, "min_step", json_object_new_int((int)m.min_step));
    json_object_object_add(lo, "final", jd(m.final));
    json_object_object_add(lo, "val", jd(m.val));
    json_object_object_add(o, "loss", lo);
    json_object *th = json_object_new_object();
    json_object_object_add(th, "tokens_per_s_mean", jd(m.tps_mean));
    json_object_object_add(th, "tokens_per_s_median", jd(m.tps_median));
    json_object_object_add(th, "tokens_per_s_run", jd(jnum(rep, "tokens_per_s", NAN)));
    json_object_object_add(th, "step_s_mean", jd(m.step_s_mean));
    json_object_object_add(th, "step_s_median", jd(m.step_s_median));
    json_object_object_add(th, "step_s_min", jd(m.step_s_min));
    json_object_object_add(th, "step_s_max", jd(m.step_s_max));
    json_object_object_add(th, "comm_share_mean", jd(m.comm_share_mean));
    json_object_object_add(th, "idle_share_mean", jd(m.idle_share_mean));
    json_object_object_add(o, "throughput", th);
    json_object_object_add(o, "sim", sim_object(rep));
    json_object *ca = json_object_new_array();
    for (int i = 0; i < nck; i++) json_object_array_add(ca, json_object_new_string(ckpts[i]));
    json_object_object_add(o, "checkpoints", ca);
    if (nrec > 0) json_object_object_add(o, "rank_status", rank_status_json(recs, nrec));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
    json_object_put(o);
  } else {
    char b1[64];
    printf("run %s\n\n", dir);
    printf("layout: world %d = pp %d x dp %d, %d micro-batch(es), schedule %s, transport %s\n", world, pp, dp,
           (int)micro, schedule, transport);
    if (model)
      printf("model:  %d layers, dim %d, %d heads, ctx %d, vocab %d, %.0f params\n", (int)jnum(model, "layers", 0),
             (int)jnum(model, "dim", 0), (int)jnum(model, "heads", 0), (int)jnum(model, "ctx", 0),
             (int)jnum(model, "vocab", 0), jnum(model, "params", 0));
    if (config)
      printf("config: batch %d, seq_len %d, %d steps, lr %g\n", (int)jnum(config, "batch", 0),
             (int)jnum(config, "seq_len", 0), (int)jnum(config, "steps", 0), jnum(config, "lr", 0));
    if (ranks) {
      printf("\nrank map:\n");
      for (size_t i = 0; i < json_object_array_length(ranks); i++) {
        json_object *r = json_object_array_get_idx(ranks, i);
        int sidx = (int)jnum(r, "stage", 0);
        double mem = stages && sidx >= 0 && (size_t)sidx < nstages
                         ? jnum(json_object_array_get_idx(stages, (size_t)sidx), "peak_mem_bytes", NAN) : NAN;
        printf("  rank %d: stage %d, replica %d, peak memory %s\n", (int)jnum(r, "rank", 0), sidx,
               (int)jnum(r, "replica", 0), fmt_bytes(mem, b1, sizeof b1));
      }
    }
    printf("\nloss (%d steps):\n", steps.n);
    print_chart(&steps, &m);
    printf("  first %.4f | min %.4f (step %.0f) | final %.4f | validation ", m.first, m.min, m.min_step, m.final);
    if (isnan(m.val)) printf("n/a\n");
    else printf("%.4f\n", m.val);
    printf("\nthroughput:\n");
    printf("  tokens/s: mean %.0f, median %.0f (run: %.0f)\n", m.tps_mean, m.tps_median, jnum(rep, "tokens_per_s", NAN));
    printf("  step time: mean %.2f ms, median %.2f ms, min %.2f ms, max %.2f ms\n", 1e3 * m.step_s_mean,
           1e3 * m.step_s_median, 1e3 * m.step_s_min, 1e3 * m.step_s_max);
    if (!isnan(m.comm_share_mean))
      printf("  mean over steps: communication %.1f%%, pipeline idle %.1f%%\n", 100 * m.comm_share_mean,
             100 * m.idle_share_mean);
    printf("\ntime breakdown per stage (share of stage time, summed over its replicas):\n");
    if (nstages == 0) {
      printf("  single stage: compute %.1f%% | communication %.1f%% | pipeline idle %.1f%%\n",
             100 * (1 - (isnan(m.comm_share_mean) ? 0 : m.comm_share_mean) - (isnan(m.idle_share_mean) ? 0 : m.idle_share_mean)),
             isnan(m.comm_share_mean) ? 0.0 : 100 * m.comm_share_mean, isnan(m.idle_share_mean) ? 0.0 : 100 * m.idle_share_mean);
    }
    for (size_t i = 0; i < nstages; i++) {
      json_object *sj = json_object_array_get_idx(stages, i);
      double cs, ms, is;
      stage_shares(sj, &cs, &ms, &is);
      printf("  stage %d: layers %d-%d, %.0f params | compute %.1f%% | communication %.1f%% | pipeline idle %.1f%% | peak memory %s\n",
             (int)jnum(sj, "stage", (double)i), (int)jnum(sj, "layer_begin", 0), (int)jnum(sj, "layer_end", 0) - 1,
             jnum(sj, "params", 0), 100 * cs, 100 * ms, 100 * is, fmt_bytes(jnum(sj, "peak_mem_bytes", NAN), b1, sizeof b1));
      print_sim(sj, "           ");
    }
    printf("\nsimulated:\n");
    if (print_sim(rep, "  ") == 0) printf("  (no sim_* figures in report.json)\n");
    printf("\ncheckpoints:");
    if (nck == 0) printf(" none");
    for (int i = 0; i < nck; i++) printf(" %s", ckpts[i]);
    printf("\n");
    if (nrec > 0) print_rank_status(recs, nrec);
  }
  int out = 0;
  if (plot) {
    char pd[4200];
    snprintf(pd, sizeof pd, "%s", plot_dir ? plot_dir : "");
    if (!plot_dir) snprintf(pd, sizeof pd, "%s/plots", dir);
    fflush(stdout);
    if (json) {
      /* Keep stdout pure JSON: the list of plots goes to stderr. */
      fflush(stdout);
      int fd = dup(1);
      if (fd >= 0 && dup2(2, 1) >= 0) {
        if (write_plots(pd, dir, &steps, stages, &m, err, sizeof err) != 0) { strata_error("report: %s", err); out = 1; }
        fflush(stdout);
        dup2(fd, 1);
      }
      if (fd >= 0) close(fd);
    } else if (write_plots(pd, dir, &steps, stages, &m, err, sizeof err) != 0) {
      strata_error("report: %s", err);
      out = 1;
    }
  }
  free(steps.rows);
  json_object_put(rep);
  return out;
}
