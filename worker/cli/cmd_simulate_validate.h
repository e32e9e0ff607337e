/* cmd_simulate_validate.h -- `strata simulate --validate FILE.csv`, the `--explain` time
 * breakdown and op table, and the JSON printer the simulate command shares
 * (cmd_simulate_validate.c; the CSV format in worker/sim/SIMULATION.md). */
#ifndef STRATA_CMD_SIMULATE_VALIDATE_H
#define STRATA_CMD_SIMULATE_VALIDATE_H

#include <stdio.h>

#include <json-c/json.h>

#include "device.h"
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
/* Each op of a layer, the embedding and the head as the simulation times it (sim_op_times):
 * forward and backward time, forward FLOPs, achieved TFLOP/s, share of the dtype's peak and
 * GB/s, recomputed ops marked. */
void sim_print_op_table(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                        FILE *out);
/* Prints a JSON document as every simulate output does (pretty, slashes unescaped). */
void sim_print_json(json_object *o);

#endif /* STRATA_CMD_SIMULATE_VALIDATE_H */
