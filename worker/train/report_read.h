/* report_read.h -- reading a training run directory (what `strata train --out RUN` wrote) for
 * `strata report`: RUN/report.json, RUN/steps.jsonl, RUN/val.jsonl, each rank's status record
 * (RUN/status/rank-R, rank_status.h) and the checkpoints present (RUN/ckpt-*), and the summary
 * figures computed from them (first / min / final loss, tokens/s and step time mean and median,
 * mean communication and idle shares).
 *
 * Usage
 *    report_run_t run;
 *    char err[1024];
 *    switch (report_run_load(dir, &run, err, sizeof err)) {
 *    case REPORT_RUN_OK: ... run.sum.final, run.stages ...; break;
 *    case REPORT_RUN_UNFINISHED: ... run.recs[0 .. run.nrecs) ...; break;
 *    case REPORT_RUN_BAD: fprintf(stderr, "%s\n", err); break;
 *    }
 *    report_run_free(&run);
 */
#ifndef STRATA_REPORT_READ_H
#define STRATA_REPORT_READ_H

#include <json-c/json.h>
#include <stddef.h>

#include "rank_status.h"

#define REPORT_MAX_CKPTS 256  /* checkpoints listed */
#define REPORT_MAX_RANKS 4096 /* status records read */
#define REPORT_CKPT_NAME 64   /* bytes of a listed checkpoint's name */

/* One line of steps.jsonl (NaN where a key is missing). */
typedef struct {
  double step, loss, tokens_per_s, step_s, comm_share, idle_share;
  int has_shares; /* comm_share and idle_share both present (distributed runs) */
} report_step_t;

typedef struct {
  report_step_t *rows;
  int n;
} report_steps_t;

/* Figures over the steps; NaN where no step has the figure. */
typedef struct {
  double first, min, final, val; /* loss: first and last step, minimum, report.json's val_loss */
  double min_step;               /* the step of the minimum */
  double tps_mean, tps_median, step_s_mean, step_s_median, step_s_min, step_s_max;
  double comm_share_mean, idle_share_mean; /* NaN if steps.jsonl has no shares */
} report_summary_t;

/* A run directory, loaded. The json_object pointers other than rep borrow from rep. */
typedef struct {
  const char *dir;
  json_object *rep;       /* report.json; NULL for a run that did not finish */
  report_steps_t steps;   /* steps.jsonl */
  report_steps_t val;     /* val.jsonl: each validation's step and loss (none: n = 0) */
  report_summary_t sum;
  int world, tp, pp, dp, micro;      /* from report.json (1 when missing) */
  const char *schedule, *transport;  /* "-" and "local" when missing */
  json_object *model, *config;       /* objects, or NULL */
  json_object *ranks, *stages;       /* arrays, or NULL */
  size_t nstages;
  char (*ckpts)[REPORT_CKPT_NAME];   /* sorted names of RUN/ckpt-* directories */
  int nckpts;
  rank_status_record_t *recs;        /* status records in rank order */
  int nrecs;
} report_run_t;

typedef enum {
  REPORT_RUN_OK = 0,     /* report.json, steps.jsonl and the rest are loaded */
  REPORT_RUN_UNFINISHED, /* no report.json but status records: recs holds each rank's state */
  REPORT_RUN_BAD,        /* not a readable run directory: err says why and what to do */
} report_load_t;

/* Loads dir into *run (always to be freed with report_run_free). Unreadable status records are
 * skipped with a warning. */
report_load_t report_run_load(const char *dir, report_run_t *run, char *err, size_t errlen);
void report_run_free(report_run_t *run);

/* Member `key` of object o as a number, or dflt when o is NULL or the member is missing or not
 * a number. */
double report_json_num(json_object *o, const char *key, double dflt);

/* A report.json stage's compute, communication and idle seconds as shares of their sum (NaN
 * each when the sum is not positive). */
void report_stage_shares(json_object *stage, double *compute, double *comm, double *idle);

#endif /* STRATA_REPORT_READ_H */
