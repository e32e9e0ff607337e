/* run_report.c -- the steps.jsonl communication keys and report.pb (see run_report.h). */
#include "run_report.h"

#include <stdio.h>
#include <stdlib.h>

#include "runlog.h"

void run_step_add_comm(json_object *rec, const run_step_comm_t *x) {
  runlog_json_add(rec, "comm_share", runlog_json_num(x->comm_share, "%.4f"));
  runlog_json_add(rec, "tp_comm_share", runlog_json_num(x->tp_comm_share, "%.4f"));
  runlog_json_add(rec, "idle_share", runlog_json_num(x->idle_share, "%.4f"));
  runlog_json_add(rec, "bytes_sent", json_object_new_uint64(x->bytes_sent));
  runlog_json_add(rec, "bytes_recv", json_object_new_uint64(x->bytes_recv));
  runlog_json_add(rec, "sim_step_s", runlog_json_num(x->sim_step_s, "%.6g"));
}

int run_report_pb_write(const char *out_dir, const strata_run_report_t *rr, char *err,
                        size_t errlen) {
  uint8_t *buf = NULL;
  size_t len = 0;
  if (strata_run_report_encode(rr, &buf, &len, err, errlen)) return -1;
  char path[RUNLOG_PATH_MAX];
  snprintf(path, sizeof path, "%s/report.pb", out_dir);
  int rc = runlog_write_file(path, buf, len, err, errlen);
  free(buf);
  return rc;
}
