/* report_print.h -- `strata report`'s summary of a loaded run directory (report_read.h) on
 * stdout: as text (layout and rank map, the loss as an ASCII chart with first / min / final /
 * validation loss, throughput, the time breakdown per stage, simulated sim_* figures, the
 * checkpoints, each rank's last state) or as one JSON object with the same figures (README,
 * "strata report"). The chart is REPORT_CHART_COLS columns wide (env STRATA_REPORT_CHART_COLS;
 * fewer when the run has fewer steps). */
#ifndef STRATA_REPORT_PRINT_H
#define STRATA_REPORT_PRINT_H

#include "report_read.h"

#define REPORT_CHART_COLS 60 /* default width of the loss chart, characters */
#define REPORT_CHART_ROWS 8  /* its height */

/* A loaded run (REPORT_RUN_OK), as text or as one JSON object. */
void report_print_text(const report_run_t *run);
void report_print_json(const report_run_t *run);

/* A run that did not finish (REPORT_RUN_UNFINISHED): what every rank was doing when it
 * stopped, as text or as {"run_dir", "finished": false, "rank_status": [...]}. */
void report_print_unfinished(const report_run_t *run, int json);

#endif /* STRATA_REPORT_PRINT_H */
