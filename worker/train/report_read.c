/* report_read.c -- a training run directory, read and summarised for `strata report` (see
 * report_read.h). */
#include "report_read.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

double report_json_num(json_object *o, const char *key, double dflt) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, key, &v)) return dflt;
  if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)) return dflt;
  return json_object_get_double(v);
}

static double median(const double *v, int n) {
  if (n <= 0) return NAN;
  double *t = malloc((size_t)n * sizeof *t);
  if (!t) return NAN;
  memcpy(t, v, (size_t)n * sizeof *t);
  strata_sort_doubles(t, (size_t)n);
  double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  free(t);
  return m;
}

/* One parsed line of steps.jsonl (loss_key "loss") or val.jsonl ("val_loss") into r. */
static void step_from_json(json_object *o, const char *loss_key, report_step_t *r) {
  r->step = report_json_num(o, "step", NAN);
  r->loss = report_json_num(o, loss_key, NAN);
  r->tokens_per_s = report_json_num(o, "tokens_per_s", NAN);
  r->step_s = report_json_num(o, "step_s", NAN);
  r->comm_share = report_json_num(o, "comm_share", NAN);
  r->idle_share = report_json_num(o, "idle_share", NAN);
  r->has_shares = !isnan(r->comm_share) && !isnan(r->idle_share);
}

/* Loads steps.jsonl (or val.jsonl, whose loss is under loss_key "val_loss"). 0, or -1 with a
 * message naming the file and line. */
static int load_steps(const char *path, const char *loss_key, report_steps_t *s, char *err,
                      size_t errlen) {
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
    if (!o || !json_object_is_type(o, json_type_object) || isnan(report_json_num(o, "step", NAN)) ||
        isnan(report_json_num(o, loss_key, NAN))) {
      snprintf(err, errlen, "%s line %d is not a JSON step record with \"step\" and \"%s\" (corrupt file? re-run `strata train`)",
               path, lineno, loss_key);
      json_object_put(o);
      rc = -1;
      break;
    }
    if (s->n == cap) {
      cap *= 2;
      report_step_t *nr = realloc(s->rows, (size_t)cap * sizeof *nr);
      if (!nr) { json_object_put(o); rc = -1; snprintf(err, errlen, "out of memory"); break; }
      s->rows = nr;
    }
    step_from_json(o, loss_key, &s->rows[s->n++]);
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

static void summarise(const report_steps_t *s, json_object *rep, report_summary_t *m) {
  m->first = s->rows[0].loss;
  m->final = s->rows[s->n - 1].loss;
  m->min = INFINITY;
  m->min_step = 0;
  m->val = report_json_num(rep, "val_loss", NAN);
  double *tps = malloc((size_t)s->n * sizeof *tps), *st = malloc((size_t)s->n * sizeof *st);
  int ntps = 0, nst = 0, nsh = 0;
  double stps = 0, sst = 0, scomm = 0, sidle = 0;
  m->step_s_min = INFINITY;
  m->step_s_max = -INFINITY;
  for (int i = 0; i < s->n; i++) {
    const report_step_t *r = &s->rows[i];
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
static int list_ckpts(const char *dir, char names[][REPORT_CKPT_NAME], int max) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max) {
    if (strncmp(e->d_name, "ckpt-", 5) != 0 || strlen(e->d_name) >= REPORT_CKPT_NAME) continue;
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(names[n++], REPORT_CKPT_NAME, "%s", e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, REPORT_CKPT_NAME, (int (*)(const void *, const void *))strcmp);
  return n;
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

void report_stage_shares(json_object *st, double *c, double *m, double *i) {
  double cs = report_json_num(st, "compute_s", NAN), ms = report_json_num(st, "comm_s", NAN),
         is = report_json_num(st, "idle_s", NAN);
  double tot = cs + ms + is;
  if (isnan(tot) || tot <= 0) { *c = *m = *i = NAN; return; }
  *c = cs / tot;
  *m = ms / tot;
  *i = is / tot;
}

/* The layout, model and configuration of report.json into run (defaults where missing). */
static void read_layout(report_run_t *run) {
  json_object *rep = run->rep, *layout = NULL, *tmp;
  run->world = (int)report_json_num(rep, "world_size", 1);
  run->tp = (int)report_json_num(rep, "tp", 1);
  run->pp = (int)report_json_num(rep, "pp", 1);
  run->dp = (int)report_json_num(rep, "dp", 1);
  json_object_object_get_ex(rep, "model", &run->model);
  json_object_object_get_ex(rep, "config", &run->config);
  if (json_object_object_get_ex(rep, "layout", &layout))
    json_object_object_get_ex(layout, "ranks", &run->ranks);
  if (json_object_object_get_ex(rep, "stages", &tmp) && json_object_is_type(tmp, json_type_array))
    run->stages = tmp;
  if (run->ranks && !json_object_is_type(run->ranks, json_type_array)) run->ranks = NULL;
  run->transport =
      json_object_object_get_ex(rep, "transport", &tmp) ? json_object_get_string(tmp) : "local";
  run->schedule =
      json_object_object_get_ex(rep, "schedule", &tmp) ? json_object_get_string(tmp) : "-";
  run->micro = (int)report_json_num(rep, "microbatches",
                                    report_json_num(run->config, "microbatches", 1));
  run->nstages = run->stages ? json_object_array_length(run->stages) : 0;
}

report_load_t report_run_load(const char *dir, report_run_t *run, char *err, size_t errlen) {
  memset(run, 0, sizeof *run);
  run->dir = dir;
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "run directory %s does not exist or is not a directory (pass the --out DIR of `strata train`)", dir);
    return REPORT_RUN_BAD;
  }
  run->recs = calloc(REPORT_MAX_RANKS, sizeof *run->recs);
  run->ckpts = calloc(REPORT_MAX_CKPTS, sizeof *run->ckpts);
  if (!run->recs || !run->ckpts) {
    snprintf(err, errlen, "out of memory");
    return REPORT_RUN_BAD;
  }
  run->nrecs = load_rank_status(dir, run->recs, REPORT_MAX_RANKS);
  char path[4200];
  snprintf(path, sizeof path, "%s/report.json", dir);
  if (access(path, R_OK) != 0 && run->nrecs > 0) {
    /* A run that did not finish: what every rank was doing when it stopped. */
    snprintf(err, errlen, "%s is missing: the run did not finish; the last state of each rank is above", path);
    return REPORT_RUN_UNFINISHED;
  }
  if (access(path, R_OK) != 0) {
    snprintf(err, errlen, "%s is missing (the run did not finish, or %s is not a `strata train --out` directory)", path, dir);
    return REPORT_RUN_BAD;
  }
  run->rep = json_object_from_file(path);
  if (!run->rep || !json_object_is_type(run->rep, json_type_object) ||
      isnan(report_json_num(run->rep, "world_size", NAN))) {
    snprintf(err, errlen, "%s is not valid JSON with a \"world_size\" member (corrupt? re-run `strata train`)", path);
    return REPORT_RUN_BAD;
  }
  snprintf(path, sizeof path, "%s/steps.jsonl", dir);
  if (load_steps(path, "loss", &run->steps, err, errlen) != 0) return REPORT_RUN_BAD;
  snprintf(path, sizeof path, "%s/val.jsonl", dir); /* absent in runs of older builds */
  if (access(path, R_OK) == 0 && load_steps(path, "val_loss", &run->val, err, errlen) != 0)
    return REPORT_RUN_BAD;
  summarise(&run->steps, run->rep, &run->sum);
  read_layout(run);
  run->nckpts = list_ckpts(dir, run->ckpts, REPORT_MAX_CKPTS);
  return REPORT_RUN_OK;
}

void report_run_free(report_run_t *run) {
  free(run->steps.rows);
  free(run->val.rows);
  json_object_put(run->rep);
  free(run->ckpts);
  free(run->recs);
  memset(run, 0, sizeof *run);
}
