/* report_proto.c -- encode/decode of the coordinator's messages (report.proto): the StepReport
 * every rank sends each step and the RunReport written at the end of a run. Decoding is
 * size-bounded and validated field by field (contract in strata_proto.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"
#include "report.pb-c.h"
#include "strata_proto.h"

#define seterr proto_seterr

/* A time in seconds must be finite and non-negative. */
static int bad_time(double t) { return !isfinite(t) || t < 0; }

void strata_step_report_init(strata_step_report_t *r) {
  memset(r, 0, sizeof *r);
  r->version = STRATA_REPORT_VERSION;
}

void strata_run_report_init(strata_run_report_t *r) {
  memset(r, 0, sizeof *r);
  r->version = STRATA_REPORT_VERSION;
  r->world_size = 1;
  r->layout.pp = 1;
  r->layout.dp = 1;
  r->layout.tp = 1;
}

static int check_step(const strata_step_report_t *r, char *err, size_t errlen) {
  if (r->version != STRATA_REPORT_VERSION) {
    seterr(err, errlen, "step report: version %u, expected %d", r->version, STRATA_REPORT_VERSION);
    return -1;
  }
  if (r->rank < 0 || r->stage < 0 || r->replica < 0 || r->tp_rank < 0 || r->stage >= STRATA_MAX_STAGES) {
    seterr(err, errlen, "step report: rank %d / t %d / stage %d / replica %d out of range", r->rank,
           r->tp_rank, r->stage, r->replica);
    return -1;
  }
  if (bad_time(r->compute_s) || bad_time(r->comm_s) || bad_time(r->idle_s) || bad_time(r->simulated_s) ||
      bad_time(r->tp_comm_s)) {
    seterr(err, errlen, "step report from rank %d: compute_s %g comm_s %g idle_s %g simulated_s %g "
                        "tp_comm_s %g must be finite and >= 0",
           r->rank, r->compute_s, r->comm_s, r->idle_s, r->simulated_s, r->tp_comm_s);
    return -1;
  }
  if (r->has_loss != 0 && r->has_loss != 1) {
    seterr(err, errlen, "step report from rank %d: has_loss must be 0 or 1", r->rank);
    return -1;
  }
  return 0;
}

int strata_step_report_encode(const strata_step_report_t *r, uint8_t *buf, size_t cap, size_t *len,
                              char *err, size_t errlen) {
  if (check_step(r, err, errlen) != 0) return -1;
  Strata__StepReport m = STRATA__STEP_REPORT__INIT;
  m.version = r->version;
  m.step = r->step;
  m.rank = r->rank;
  m.stage = r->stage;
  m.replica = r->replica;
  m.tp_rank = r->tp_rank;
  m.tp_comm_s = r->tp_comm_s;
  m.has_loss = r->has_loss;
  m.loss = r->loss;
  m.tokens = r->tokens;
  m.compute_s = r->compute_s;
  m.comm_s = r->comm_s;
  m.idle_s = r->idle_s;
  m.simulated_s = r->simulated_s;
  m.bytes_sent = r->bytes_sent;
  m.bytes_recv = r->bytes_recv;
  m.peak_mem_bytes = r->peak_mem_bytes;
  size_t n = strata__step_report__get_packed_size(&m);
  if (n > cap) {
    seterr(err, errlen, "step report: %zu bytes do not fit the %zu-byte buffer", n, cap);
    return -1;
  }
  *len = strata__step_report__pack(&m, buf);
  return 0;
}

int strata_step_report_decode(const uint8_t *buf, size_t len, strata_step_report_t *out,
                              char *err, size_t errlen) {
  if (len > STRATA_STEP_REPORT_MAX_BYTES) {
    seterr(err, errlen, "step report: message is %zu bytes, over the %d-byte limit", len,
           STRATA_STEP_REPORT_MAX_BYTES);
    return -1;
  }
  Strata__StepReport *m = strata__step_report__unpack(NULL, len, buf);
  if (!m) {
    seterr(err, errlen, "step report: not a valid StepReport protobuf message (%zu bytes)", len);
    return -1;
  }
  strata_step_report_init(out);
  out->version = m->version;
  out->step = m->step;
  out->rank = m->rank;
  out->stage = m->stage;
  out->replica = m->replica;
  out->tp_rank = m->tp_rank;
  out->tp_comm_s = m->tp_comm_s;
  out->has_loss = m->has_loss ? 1 : 0;
  out->loss = m->loss;
  out->tokens = m->tokens;
  out->compute_s = m->compute_s;
  out->comm_s = m->comm_s;
  out->idle_s = m->idle_s;
  out->simulated_s = m->simulated_s;
  out->bytes_sent = m->bytes_sent;
  out->bytes_recv = m->bytes_recv;
  out->peak_mem_bytes = m->peak_mem_bytes;
  strata__step_report__free_unpacked(m, NULL);
  return check_step(out, err, errlen);
}

static int check_run(const strata_run_report_t *r, char *err, size_t errlen) {
  if (r->version != STRATA_REPORT_VERSION) {
    seterr(err, errlen, "run report: version %u, expected %d", r->version, STRATA_REPORT_VERSION);
    return -1;
  }
  if (proto_check_config(&r->model, &r->train, &r->layout, "run report", err, errlen) != 0) return -1;
  const int64_t tp = r->layout.tp ? r->layout.tp : 1; /* 0: not set (1) */
  if ((int64_t)r->world_size != tp * r->layout.pp * r->layout.dp) {
    seterr(err, errlen, "run report: world_size %d is not tp x pp x dp = %d x %d x %d",
           r->world_size, (int)tp, r->layout.pp, r->layout.dp);
    return -1;
  }
  if (r->n_stages != 0 && r->n_stages != r->layout.pp) {
    seterr(err, errlen, "run report: %d stage summaries, expected pp = %d", r->n_stages, r->layout.pp);
    return -1;
  }
  for (int i = 0; i < r->n_stages; i++) {
    const strata_stage_summary_t *s = &r->stages[i];
    if (s->stage != i || s->layer_begin < 0 || s->layer_end < s->layer_begin ||
        s->layer_end > r->model.layers || bad_time(s->compute_s) || bad_time(s->comm_s) ||
        bad_time(s->idle_s)) {
      seterr(err, errlen, "run report: stages[%d] (stage %d, layers [%d, %d), times) is inconsistent",
             i, s->stage, s->layer_begin, s->layer_end);
      return -1;
    }
  }
  if (bad_time(r->wall_s) || !isfinite(r->tokens_per_s) || r->tokens_per_s < 0) {
    seterr(err, errlen, "run report: wall_s %g / tokens_per_s %g must be finite and >= 0", r->wall_s,
           r->tokens_per_s);
    return -1;
  }
  if (strnlen(r->transport, STRATA_NAME_MAX) >= STRATA_NAME_MAX) {
    seterr(err, errlen, "run report: transport string too long");
    return -1;
  }
  return 0;
}

int strata_run_report_encode(const strata_run_report_t *r, uint8_t **buf, size_t *len, char *err,
                             size_t errlen) {
  *buf = NULL;
  *len = 0;
  if (check_run(r, err, errlen) != 0) return -1;
  Strata__RunReport m = STRATA__RUN_REPORT__INIT;
  Strata__ModelConfig model;
  Strata__TrainConfig train;
  Strata__Layout layout;
  int ns = r->n_stages;
  Strata__StageSummary *st = calloc((size_t)(ns ? ns : 1), sizeof *st);
  Strata__StageSummary **sp = calloc((size_t)(ns ? ns : 1), sizeof *sp);
  int rc = -1;
  if (!st || !sp) {
    seterr(err, errlen, "run report: out of memory");
    goto exit;
  }
  m.version = r->version;
  m.world_size = r->world_size;
  proto_model_to_msg(&r->model, &model);
  proto_train_to_msg(&r->train, &train);
  proto_layout_to_msg(&r->layout, &layout);
  m.model = &model;
  m.train = &train;
  m.layout = &layout;
  m.steps = r->steps;
  m.final_loss = r->final_loss;
  m.tokens_per_s = r->tokens_per_s;
  m.wall_s = r->wall_s;
  m.transport = (char *)r->transport;
  for (int i = 0; i < ns; i++) {
    strata__stage_summary__init(&st[i]);
    st[i].stage = r->stages[i].stage;
    st[i].layer_begin = r->stages[i].layer_begin;
    st[i].layer_end = r->stages[i].layer_end;
    st[i].params = r->stages[i].params;
    st[i].compute_s = r->stages[i].compute_s;
    st[i].comm_s = r->stages[i].comm_s;
    st[i].idle_s = r->stages[i].idle_s;
    st[i].peak_mem_bytes = r->stages[i].peak_mem_bytes;
    sp[i] = &st[i];
  }
  m.n_stages = (size_t)ns;
  m.stages = sp;
  size_t n = strata__run_report__get_packed_size(&m);
  *buf = malloc(n ? n : 1);
  if (!*buf) {
    seterr(err, errlen, "run report: out of memory");
    goto exit;
  }
  *len = strata__run_report__pack(&m, *buf);
  rc = 0;
exit:
  free(st);
  free(sp);
  return rc;
}

int strata_run_report_decode(const uint8_t *buf, size_t len, strata_run_report_t *out, char *err,
                             size_t errlen) {
  if (len > STRATA_RUN_REPORT_MAX_BYTES) {
    seterr(err, errlen, "run report: message is %zu bytes, over the %u-byte limit", len,
           STRATA_RUN_REPORT_MAX_BYTES);
    return -1;
  }
  Strata__RunReport *m = strata__run_report__unpack(NULL, len, buf);
  if (!m) {
    seterr(err, errlen, "run report: not a valid RunReport protobuf message (%zu bytes)", len);
    return -1;
  }
  int rc = -1;
  strata_run_report_init(out);
  if (!m->model) {
    seterr(err, errlen, "run report: missing model config");
    goto exit;
  }
  if (m->n_stages > STRATA_MAX_STAGES) {
    seterr(err, errlen, "run report: %zu stage summaries, at most %d allowed", m->n_stages,
           STRATA_MAX_STAGES);
    goto exit;
  }
  out->version = m->version;
  out->world_size = m->world_size;
  proto_model_from_msg(m->model, &out->model);
  if (proto_train_from_msg(m->train, &out->train, "run report", err, errlen) ||
      proto_layout_from_msg(m->layout, &out->layout, "run report", err, errlen) ||
      proto_copy_str(out->transport, sizeof out->transport, m->transport, "run report", "transport",
                     err, errlen))
    goto exit;
  out->steps = m->steps;
  out->final_loss = m->final_loss;
  out->tokens_per_s = m->tokens_per_s;
  out->wall_s = m->wall_s;
  out->n_stages = (int32_t)m->n_stages;
  for (size_t i = 0; i < m->n_stages; i++) {
    const Strata__StageSummary *s = m->stages[i];
    out->stages[i] = (strata_stage_summary_t){s->stage, s->layer_begin, s->layer_end, s->params,
                                              s->compute_s, s->comm_s, s->idle_s, s->peak_mem_bytes};
  }
  rc = check_run(out, err, errlen);
exit:
  strata__run_report__free_unpacked(m, NULL);
  return rc;
}
