/* strata report -- a readable summary of a training run directory written by `strata train`
 * (single rank or mpirun -np N): layout and rank map, the loss curve (ASCII chart plus first /
 * min / final / validation loss), throughput (tokens/s mean and median, step time), the time
 * breakdown per stage (compute / communication / pipeline-idle shares), peak memory per stage and
 * rank, simulated figures (any sim_* keys in report.json, when present) and the checkpoints
 * present. --json prints the same figures as one JSON object; --plot writes PNGs through gnuplot
 * (loss.png, tokens_per_s.png, breakdown.png) into --plot-dir (default RUN_DIR/plots).
 *
 * Reads RUN_DIR/report.json and RUN_DIR/steps.jsonl (worker/train/report_read.h), prints the
 * summary (report_print.h) and plots (report_plot.h); this file is the flags. Runs on rank 0
 * only (other ranks, if any, return 0 at once). Also lists each rank's last state from
 * RUN_DIR/status/rank-R (rank_status.h: step, operation, and how it ended); for a run that did
 * not finish (no report.json, e.g. a rank was killed) only those states are printed, with exit
 * status 1.
 * Exit status: 0 ok, 2 bad usage or unreadable run directory, 1 plotting failed or the run did
 * not finish. */
#include <stdio.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "log.h"
#include "report_plot.h"
#include "report_print.h"
#include "report_read.h"

/* --plot: the PNGs into plot_dir (default RUN_DIR/plots). With --json, stdout stays pure JSON:
 * the list of plots goes to stderr. 0, or 1 after saying why plotting failed. */
static int plot(const report_run_t *run, const char *plot_dir, int json) {
  char pd[4200], err[1024];
  snprintf(pd, sizeof pd, "%s", plot_dir ? plot_dir : "");
  if (!plot_dir) snprintf(pd, sizeof pd, "%s/plots", run->dir);
  fflush(stdout);
  int rc = 0;
  if (json) {
    int fd = dup(1);
    if (fd >= 0 && dup2(2, 1) >= 0) {
      if (report_plot(pd, run, err, sizeof err) != 0) { strata_error("report: %s", err); rc = 1; }
      fflush(stdout);
      dup2(fd, 1);
    }
    if (fd >= 0) close(fd);
  } else if (report_plot(pd, run, err, sizeof err) != 0) {
    strata_error("report: %s", err);
    rc = 1;
  }
  return rc;
}

int cmd_report(int argc, char **argv) {
  int json = 0, want_plot = 0;
  const char *plot_dir = NULL;
  arg_spec_t specs[] = {
      {"--json", NULL, ARG_FLAG, &json, NULL, "print the summary as one JSON object"},
      {"--plot", NULL, ARG_FLAG, &want_plot, NULL, "also write PNG plots with gnuplot"},
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
  if (plot_dir && !want_plot) {
    strata_error("report: --plot-dir needs --plot");
    return 2;
  }
  report_run_t run;
  char err[1024];
  switch (report_run_load(pos[0], &run, err, sizeof err)) {
  case REPORT_RUN_OK:
    if (json) report_print_json(&run);
    else report_print_text(&run);
    rc = want_plot ? plot(&run, plot_dir, json) : 0;
    break;
  case REPORT_RUN_UNFINISHED:
    report_print_unfinished(&run, json);
    strata_error("report: %s", err);
    rc = 1;
    break;
  default:
    strata_error("report: %s", err);
    rc = 2;
    break;
  }
  report_run_free(&run);
  return rc;
}
