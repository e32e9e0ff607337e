/* cmd_simulate_validate.h -- `strata simulate --validate FILE.csv` and the `--explain` time
 * breakdown (cmd_simulate_validate.c; the CSV format in worker/sim/SIMULATION.md). */
#ifndef STRATA_CMD_SIMULATE_VALIDATE_H
#define STRATA_CMD_SIMULATE_VALIDATE_H

#include <stdio.h>

#include "layout.h"
#include "simulate.h"

/* Predicts every job of the CSV and prints predicted against measured tokens/s, the error per
 * job and the geometric-mean error (held-out rows apart); with explain each job's breakdown.
 * as_json: one JSON document instead (every job with its layout, tokens/s, error, fit, step and
 * breakdown in seconds; the held-out, informing and whole summaries). 0, or 2 after naming the
 * file, line and problem. */
int sim_validate_csv(const char *path, int explain, int as_json);
/* Where the step's time goes: compute, TP communication, pipeline bubble, DP communication,
 * optimizer (seconds and shares, means over ranks). */
void sim_print_explain(const layout_t *lay, const sim_result_t *r, FILE *out);

#endif /* STRATA_CMD_SIMULATE_VALIDATE_H */
