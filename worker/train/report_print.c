/* report_print.c -- the summary of a training run as text or JSON (see report_print.h). */
#include "report_print.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

static double jnum(json_object *o, const char *key, double dflt) {
  return report_json_num(o, key, dflt);
}

static json_object *jd(double v) { return isnan(v) || isinf(v) ? NULL : json_object_new_double(v); }

static const char *fmt_bytes(double b, char *buf, size_t n) {
  if (isnan(b)) snprintf(buf, n, "n/a");
  else if (b >= 1 << 30) snprintf(buf, n, "%.2f GiB", b / (1 << 30));
  else snprintf(buf, n, "%.1f MiB", b / (1 << 20));
  return buf;
}

/* The peak memory of rank entry r's stage (NaN when unknown). */
static double rank_peak_mem(const report_run_t *run, json_object *r) {
  int sidx = (int)jnum(r, "stage", 0);
  return run->stages && sidx >= 0 && (size_t)sidx < run->nstages
             ? jnum(json_object_array_get_idx(run->stages, (size_t)sidx), "peak_mem_bytes", NAN)
             : NAN;
}

/* ---- text ---- */

static void print_chart(const report_steps_t *s, const report_summary_t *m) {
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

/* The layout, model, configuration and rank map. */
static void print_layout(const report_run_t *run) {
  json_object *model = run->model, *config = run->config;
  char b1[64];
  printf("run %s\n\n", run->dir);
  char tp_txt[32] = "";
  if (run->tp > 1) snprintf(tp_txt, sizeof tp_txt, "tp %d x ", run->tp);
  printf("layout: world %d = %spp %d x dp %d, %d micro-batch(es), schedule %s, transport %s\n",
         run->world, tp_txt, run->pp, run->dp, run->micro, run->schedule, run->transport);
  if (model)
    printf("model:  %d layers, dim %d, %d heads, ctx %d, vocab %d, %.0f params\n", (int)jnum(model, "layers", 0),
           (int)jnum(model, "dim", 0), (int)jnum(model, "heads", 0), (int)jnum(model, "ctx", 0),
           (int)jnum(model, "vocab", 0), jnum(model, "params", 0));
  if (config)
    printf("config: batch %d, seq_len %d, %d steps, lr %g\n", (int)jnum(config, "batch", 0),
           (int)jnum(config, "seq_len", 0), (int)jnum(config, "steps", 0), jnum(config, "lr", 0));
  if (run->ranks) {
    printf("\nrank map:\n");
    for (size_t i = 0; i < json_object_array_length(run->ranks); i++) {
      json_object *r = json_object_array_get_idx(run->ranks, i);
      char t_txt[32] = "";
      if (run->tp > 1) snprintf(t_txt, sizeof t_txt, "t %d, ", (int)jnum(r, "t", 0));
      printf("  rank %d: %sstage %d, replica %d, peak memory %s\n", (int)jnum(r, "rank", 0), t_txt,
             (int)jnum(r, "stage", 0), (int)jnum(r, "replica", 0),
             fmt_bytes(rank_peak_mem(run, r), b1, sizeof b1));
    }
  }
}

/* The loss chart and figures, throughput. */
static void print_loss_throughput(const report_run_t *run) {
  const report_summary_t *m = &run->sum;
  printf("\nloss (%d steps):\n", run->steps.n);
  print_chart(&run->steps, m);
  printf("  first %.4f | min %.4f (step %.0f) | final %.4f | validation ", m->first, m->min, m->min_step, m->final);
  if (isnan(m->val)) printf("n/a\n");
  else printf("%.4f\n", m->val);
  printf("\nthroughput:\n");
  printf("  tokens/s: mean %.0f, median %.0f (run: %.0f)\n", m->tps_mean, m->tps_median, jnum(run->rep, "tokens_per_s", NAN));
  printf("  step time: mean %.2f ms, median %.2f ms, min %.2f ms, max %.2f ms\n", 1e3 * m->step_s_mean,
         1e3 * m->step_s_median, 1e3 * m->step_s_min, 1e3 * m->step_s_max);
  if (!isnan(m->comm_share_mean))
    printf("  mean over steps: communication %.1f%%, pipeline idle %.1f%%\n", 100 * m->comm_share_mean,
           100 * m->idle_share_mean);
}

/* The time breakdown per stage with its sim_* figures. */
static void print_stages(const report_run_t *run) {
  const report_summary_t *m = &run->sum;
  char b1[64];
  printf("\ntime breakdown per stage (share of stage time, summed over its replicas):\n");
  if (run->nstages == 0) {
    printf("  single stage: compute %.1f%% | communication %.1f%% | pipeline idle %.1f%%\n",
           100 * (1 - (isnan(m->comm_share_mean) ? 0 : m->comm_share_mean) - (isnan(m->idle_share_mean) ? 0 : m->idle_share_mean)),
           isnan(m->comm_share_mean) ? 0.0 : 100 * m->comm_share_mean, isnan(m->idle_share_mean) ? 0.0 : 100 * m->idle_share_mean);
  }
  for (size_t i = 0; i < run->nstages; i++) {
    json_object *sj = json_object_array_get_idx(run->stages, i);
    double cs, ms, is;
    report_stage_shares(sj, &cs, &ms, &is);
    printf("  stage %d: layers %d-%d, %.0f params | compute %.1f%% | communication %.1f%% | pipeline idle %.1f%% | peak memory %s\n",
           (int)jnum(sj, "stage", (double)i), (int)jnum(sj, "layer_begin", 0), (int)jnum(sj, "layer_end", 0) - 1,
           jnum(sj, "params", 0), 100 * cs, 100 * ms, 100 * is, fmt_bytes(jnum(sj, "peak_mem_bytes", NAN), b1, sizeof b1));
    print_sim(sj, "           ");
  }
}

void report_print_text(const report_run_t *run) {
  print_layout(run);
  print_loss_throughput(run);
  print_stages(run);
  printf("\nsimulated:\n");
  if (print_sim(run->rep, "  ") == 0) printf("  (no sim_* figures in report.json)\n");
  printf("\ncheckpoints:");
  if (run->nckpts == 0) printf(" none");
  for (int i = 0; i < run->nckpts; i++) printf(" %s", run->ckpts[i]);
  printf("\n");
  if (run->nrecs > 0) print_rank_status(run->recs, run->nrecs);
}

/* ---- JSON ---- */

static json_object *sim_object(json_object *o) {
  json_object *out = json_object_new_object();
  json_object_object_foreach(o, key, val) {
    if (strncmp(key, "sim_", 4) == 0) json_object_object_add(out, key, json_object_get(val));
  }
  return out;
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

static void print_json_object(json_object *o) {
  printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
}

static json_object *ranks_json(const report_run_t *run) {
  json_object *rk = json_object_new_array();
  for (size_t i = 0; run->ranks && i < json_object_array_length(run->ranks); i++) {
    json_object *r = json_object_array_get_idx(run->ranks, i), *c = json_object_new_object();
    int sidx = (int)jnum(r, "stage", 0);
    json_object_object_add(c, "rank", json_object_new_int((int)jnum(r, "rank", 0)));
    json_object_object_add(c, "t", json_object_new_int((int)jnum(r, "t", 0)));
    json_object_object_add(c, "stage", json_object_new_int(sidx));
    json_object_object_add(c, "replica", json_object_new_int((int)jnum(r, "replica", 0)));
    if (run->stages && sidx >= 0 && (size_t)sidx < run->nstages)
      json_object_object_add(c, "peak_mem_bytes", jd(rank_peak_mem(run, r)));
    json_object_array_add(rk, c);
  }
  return rk;
}

static json_object *stages_json(const report_run_t *run) {
  json_object *sa = json_object_new_array();
  for (size_t i = 0; i < run->nstages; i++) {
    json_object *sj = json_object_array_get_idx(run->stages, i), *c = json_object_new_object();
    double cs, ms, is;
    report_stage_shares(sj, &cs, &ms, &is);
    json_object_object_add(c, "stage", json_object_new_int((int)jnum(sj, "stage", (double)i)));
    json_object_object_add(c, "layer_begin", json_object_new_int((int)jnum(sj, "layer_begin", 0)));
    json_object_object_add(c, "layer_end", json_object_new_int((int)jnum(sj, "layer_end", 0)));
    json_object_object_add(c, "params", json_object_new_int64((int64_t)jnum(sj, "params", 0)));
    json_object_object_add(c, "compute_share", jd(cs));
    json_object_object_add(c, "comm_share", jd(ms));
    json_object_object_add(c, "idle_share", jd(is));
    json_object_object_add(c, "peak_mem_bytes", jd(jnum(sj, "peak_mem_bytes", NAN)));
    json_object_object_add(c, "sim", sim_object(sj));
    json_object_array_add(sa, c);
  }
  return sa;
}

static json_object *loss_json(const report_run_t *run) {
  const report_summary_t *m = &run->sum;
  json_object *lo = json_object_new_object();
  json_object_object_add(lo, "steps", json_object_new_int(run->steps.n));
  json_object_object_add(lo, "first", jd(m->first));
  json_object_object_add(lo, "min", jd(m->min));
  json_object_object_add(lo, "min_step", json_object_new_int((int)m->min_step));
  json_object_object_add(lo, "final", jd(m->final));
  json_object_object_add(lo, "val", jd(m->val));
  return lo;
}

static json_object *throughput_json(const report_run_t *run) {
  const report_summary_t *m = &run->sum;
  json_object *th = json_object_new_object();
  json_object_object_add(th, "tokens_per_s_mean", jd(m->tps_mean));
  json_object_object_add(th, "tokens_per_s_median", jd(m->tps_median));
  json_object_object_add(th, "tokens_per_s_run", jd(jnum(run->rep, "tokens_per_s", NAN)));
  json_object_object_add(th, "step_s_mean", jd(m->step_s_mean));
  json_object_object_add(th, "step_s_median", jd(m->step_s_median));
  json_object_object_add(th, "step_s_min", jd(m->step_s_min));
  json_object_object_add(th, "step_s_max", jd(m->step_s_max));
  json_object_object_add(th, "comm_share_mean", jd(m->comm_share_mean));
  json_object_object_add(th, "idle_share_mean", jd(m->idle_share_mean));
  return th;
}

void report_print_json(const report_run_t *run) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "run_dir", json_object_new_string(run->dir));
  json_object_object_add(o, "world_size", json_object_new_int(run->world));
  json_object_object_add(o, "tp", json_object_new_int(run->tp));
  json_object_object_add(o, "pp", json_object_new_int(run->pp));
  json_object_object_add(o, "dp", json_object_new_int(run->dp));
  json_object_object_add(o, "microbatches", json_object_new_int(run->micro));
  json_object_object_add(o, "schedule", json_object_new_string(run->schedule));
  json_object_object_add(o, "transport", json_object_new_string(run->transport));
  if (run->model) json_object_object_add(o, "model", json_object_get(run->model));
  json_object_object_add(o, "ranks", ranks_json(run));
  json_object_object_add(o, "stages", stages_json(run));
  json_object_object_add(o, "loss", loss_json(run));
  json_object_object_add(o, "throughput", throughput_json(run));
  json_object_object_add(o, "sim", sim_object(run->rep));
  json_object *ca = json_object_new_array();
  for (int i = 0; i < run->nckpts; i++) json_object_array_add(ca, json_object_new_string(run->ckpts[i]));
  json_object_object_add(o, "checkpoints", ca);
  if (run->nrecs > 0) json_object_object_add(o, "rank_status", rank_status_json(run->recs, run->nrecs));
  print_json_object(o);
  json_object_put(o);
}

void report_print_unfinished(const report_run_t *run, int json) {
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "run_dir", json_object_new_string(run->dir));
    json_object_object_add(o, "finished", json_object_new_boolean(0));
    json_object_object_add(o, "rank_status", rank_status_json(run->recs, run->nrecs));
    print_json_object(o);
    json_object_put(o);
  } else {
    printf("run %s did not finish (no report.json)\n", run->dir);
    print_rank_status(run->recs, run->nrecs);
  }
}
