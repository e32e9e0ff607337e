/* run_report.h -- what both training loops (train.c on one rank, the coordinator under mpirun)
 * write to the run directory beyond train_loop.h's step record: the steps.jsonl keys of
 * communication and of the simulated device, and report.pb. The single-rank loop writes the same
 * keys (communication 0, sim_step_s null: it has no simulated device), so every run's
 * steps.jsonl has the keys README lists. Internal to worker/train.
 */
#ifndef STRATA_RUN_REPORT_H
#define STRATA_RUN_REPORT_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "strata_proto.h"

/* A step's communication figures (shares of all ranks' summed step time). */
typedef struct {
  double comm_share, tp_comm_share, idle_share;
  uint64_t bytes_sent, bytes_recv; /* summed over ranks */
  double sim_step_s;               /* the simulated step; NaN (null) without a simulated device */
} run_step_comm_t;

/* Adds comm_share, tp_comm_share, idle_share, bytes_sent, bytes_recv and sim_step_s to a
 * steps.jsonl record (rec may be NULL: out of memory, nothing added). */
void run_step_add_comm(json_object *rec, const run_step_comm_t *x);

/* Encodes rr and writes OUT_DIR/report.pb atomically. 0, or -1 with a message. */
int run_report_pb_write(const char *out_dir, const strata_run_report_t *rr, char *err,
                        size_t errlen);

#endif /* STRATA_RUN_REPORT_H */
