/* coordinator.c -- StepReport gathering, the progress line and the run directory files of a
 * distributed training run (see coordinator.h). */
#include "coordinator.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "env.h"
#include "log.h"
#include "run_report.h"
#include "runlog.h"
#include "trace_json.h"
#include "validation.h"
#include "train_loop.h"
#include "util.h"

/* A StepReport travels as int32 words: [0] = encoded length in bytes, then the bytes. */
#define COORD_REPORT_WORDS 128
#define COORD_TAG_TRACE_COUNT 7001
#define COORD_TAG_TRACE_DATA 7002
#define COORD_EVENT_DOUBLES 5 /* kind, micro, step, t0_s, t1_s */

static const char *const trace_names[TRACE_KINDS] = {"fwd",       "bwd",   "send", "recv",
                                                     "allreduce", "optim", "checkpoint"};

typedef struct {
  double compute_s, comm_s, idle_s; /* summed over steps, replicas and TP ranks */
  double tp_comm_s;                 /* the part of comm_s in TP collectives, likewise */
  uint64_t peak_mem_bytes;          /* max over replicas */
} stage_acc_t;

struct coord {
  coll_comm_t *world;
  coord_info_t info;
  int rank, size;
  double origin_s;         /* monotonic origin */
  double *ev;              /* events, COORD_EVENT_DOUBLES each */
  size_t n_ev, cap_ev;
  int64_t cur_step;        /* step being run (1-based as reported) */
  int32_t *words;          /* size * COORD_REPORT_WORDS gather buffer */
  /* rank 0 */
  runlog_lines_t steps_log; /* RUN/steps.jsonl (fd -1 on other ranks) */
  runlog_lines_t val_log;   /* RUN/val.jsonl (fd -1 on other ranks) */
  int steps_log_complete;  /* every step of this invocation reached steps.jsonl (coord_finish) */
  int trace_written;       /* trace.json holds this invocation's trace (coord_finish) */
  stage_acc_t *stages;     /* [pp] */
  double train_s;          /* summed slowest-rank step seconds */
  double wall_sum_s, comm_sum_s, tp_comm_sum_s; /* over ranks and steps: step, comm, TP comm */
  double tokens;           /* tokens processed in this invocation */
  uint64_t bytes_sent, bytes_recv; /* transport bytes of all ranks over this invocation's steps */
  double last_loss;
  double val_loss;         /* NaN until an evaluation ran */
  int64_t val_tokens;      /* held-out tokens it scored (0 until then) */
  int64_t steps_done;      /* steps of this invocation */
  double wall_start_s;
  coord_sim_t sim;         /* sim.res == NULL: no simulated device */
  double sim_train_s;      /* summed simulated step seconds */
  double sim_last_step_s;
};

double coord_now(const coord_t *c) { return strata_now_s() - c->origin_s; }
double coord_from_mono(const coord_t *c, double t) { return t - c->origin_s; }

static double hk_now(void *c) { return coord_now(c); }
static void hk_trace(void *c, trace_kind_t kind, int micro, double t0_s, double t1_s) {
  coord_trace(c, kind, micro, t0_s, t1_s);
}
void coord_step_hooks(coord_t *c, step_hooks_t *h) {
  h->trace_ctx = c;
  h->trace_now = hk_now;
  h->trace = hk_trace;
}
void coord_set_val_loss(coord_t *c, int64_t step, double v, int64_t tokens) {
  c->val_loss = v;
  c->val_tokens = tokens;
  if (c->rank == 0) train_val_log_append(&c->val_log, step, v, tokens);
}
void coord_set_sim(coord_t *c, const coord_sim_t *sim) { c->sim = *sim; }

int coord_create(coll_comm_t *world, const coord_info_t *info, coord_t **out, char *err,
                 size_t errlen) {
  *out = NULL;
  coord_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory for the coordinator");
    return -1;
  }
  c->steps_log.fd = -1;
  c->val_log.fd = -1;
  c->world = world;
  c->info = *info;
  c->rank = coll_rank(world);
  c->size = coll_size(world);
  c->cur_step = info->start_step + 1;
  c->val_loss = NAN;
  int64_t cap; /* a bad value is refused by strata at start-up (worker/base/env.c) */
  env_read_int("STRATA_TRACE_MAX_EVENTS", COORD_TRACE_MAX_EVENTS, &cap, NULL, 0);
  c->cap_ev = cap > 0 ? (size_t)cap : 0;
  c->words = calloc((size_t)c->size * COORD_REPORT_WORDS, sizeof(int32_t));
  int32_t ok = c->words != NULL;
  if (ok && c->rank == 0) {
    c->stages = calloc((size_t)info->layout->pp, sizeof *c->stages);
    char path[4200];
    snprintf(path, sizeof path, "%s/steps.jsonl", info->out_dir);
    if (!c->stages) {
      snprintf(err, errlen, "out of memory for the coordinator");
      ok = 0;
    } else if (runlog_lines_open(&c->steps_log, path, info->append, err, errlen) ||
               train_val_log_open(&c->val_log, info->out_dir, info->append, err, errlen)) {
      ok = 0;
    }
  }
  if (coll_broadcast(&ok, 1, COLL_I32, 0, world) != COLL_OK) {
    snprintf(err, errlen, "coordinator start-up broadcast failed: %s", coll_last_error(world));
    ok = 0;
  } else if (!ok && c->rank != 0) {
    snprintf(err, errlen, "the coordinator (rank 0) could not open the run directory %s",
             info->out_dir);
  }
  if (ok && coll_barrier(world) != COLL_OK) {
    snprintf(err, errlen, "barrier failed: %s", coll_last_error(world));
    ok = 0;
  }
  c->origin_s = strata_now_s();
  c->wall_start_s = c->origin_s;
  if (!ok) {
    coord_free(c);
    return -1;
  }
  *out = c;
  return 0;
}

void coord_free(coord_t *c) {
  if (!c) return;
  char err[64]; /* a failed run's log: closed without a word, the run has already failed */
  runlog_lines_close(&c->steps_log, err, sizeof err);
  runlog_lines_close(&c->val_log, err, sizeof err);
  free(c->ev);
  free(c->words);
  free(c->stages);
  free(c);
}

void coord_trace(coord_t *c, trace_kind_t kind, int micro, double t0_s, double t1_s) {
  if (c->n_ev >= c->cap_ev) return;
  if (!c->ev || c->n_ev % 4096 == 0) {
    size_t want = c->n_ev + 4096;
    if (want > c->cap_ev) want = c->cap_ev;
    double *nv = realloc(c->ev, want * COORD_EVENT_DOUBLES * sizeof(double));
    if (!nv) return;
    c->ev = nv;
  }
  double *e = c->ev + c->n_ev * COORD_EVENT_DOUBLES;
  e[0] = kind;
  e[1] = micro;
  e[2] = (double)c->cur_step;
  e[3] = t0_s;
  e[4] = t1_s;
  c->n_ev++;
}

static uint64_t peak_rss_bytes(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (uint64_t)ru.ru_maxrss * 1024u;
}

int coord_step(coord_t *c, const strata_step_report_t *mine_in, double step_s, double lr,
               double grad_norm, double *loss_out, char *err, size_t errlen) {
  strata_step_report_t mine = *mine_in;
  if (!mine.peak_mem_bytes) mine.peak_mem_bytes = peak_rss_bytes();
  int32_t buf[COORD_REPORT_WORDS];
  memset(buf, 0, sizeof buf);
  size_t len = 0;
  if (strata_step_report_encode(&mine, (uint8_t *)(buf + 1), sizeof buf - sizeof(int32_t), &len,
                                err, errlen))
    return -1;
  buf[0] = (int32_t)len;
  if (coll_allgather(buf, c->words, COORD_REPORT_WORDS, COLL_I32, c->world) != COLL_OK) {
    snprintf(err, errlen, "step report gather failed: %s", coll_last_error(c->world));
    return -1;
  }
  c->cur_step++;
  if (c->rank != 0) return 0;

  const layout_t *lay = c->info.layout;
  double loss_sum = 0, comm = 0, tp_comm = 0, idle = 0, wall = 0, slowest = 0;
  int n_loss = 0;
  uint64_t sent = 0, recvd = 0, tokens = 0;
  double sim_s = 0;
  for (int r = 0; r < c->size; r++) {
    const int32_t *w = c->words + (size_t)r * COORD_REPORT_WORDS;
    strata_step_report_t rep;
    if (w[0] < 0 || (size_t)w[0] > (COORD_REPORT_WORDS - 1) * sizeof(int32_t) ||
        strata_step_report_decode((const uint8_t *)(w + 1), (size_t)w[0], &rep, err, errlen)) {
      snprintf(err + strlen(err), errlen - strlen(err), " (step report of rank %d)", r);
      return -1;
    }
    if (rep.has_loss) {
      loss_sum += rep.loss;
      n_loss++;
    }
    double rs = rep.compute_s + rep.comm_s + rep.idle_s;
    comm += rep.comm_s;
    tp_comm += rep.tp_comm_s;
    idle += rep.idle_s;
    wall += rs;
    if (rs > slowest) slowest = rs;
    if (rep.simulated_s > sim_s) sim_s = rep.simulated_s;
    sent += rep.bytes_sent;
    recvd += rep.bytes_recv;
    if (rep.stage == 0 && rep.tp_rank == 0) tokens += rep.tokens; /* TP ranks share them */
    if (rep.stage >= 0 && rep.stage < lay->pp) {
      stage_acc_t *s = &c->stages[rep.stage];
      s->compute_s += rep.compute_s;
      s->comm_s += rep.comm_s;
      s->tp_comm_s += rep.tp_comm_s;
      s->idle_s += rep.idle_s;
      if (rep.peak_mem_bytes > s->peak_mem_bytes) s->peak_mem_bytes = rep.peak_mem_bytes;
    }
  }
  double loss = n_loss ? loss_sum / n_loss : NAN;
  if (loss_out) *loss_out = loss;
  c->last_loss = loss;
  c->train_s += slowest;
  c->wall_sum_s += wall;
  c->comm_sum_s += comm;
  c->tp_comm_sum_s += tp_comm;
  c->tokens += (double)tokens;
  c->bytes_sent += sent;
  c->bytes_recv += recvd;
  c->steps_done++;
  c->sim_train_s += sim_s;
  c->sim_last_step_s = sim_s;
  double tps = slowest > 0 ? (double)tokens / slowest : 0;
  double comm_share = wall > 0 ? comm / wall : 0, idle_share = wall > 0 ? idle / wall : 0;
  int64_t step = (int64_t)mine.step;
  json_object *rec = train_step_record(step, loss, lr, grad_norm, tps, slowest);
  run_step_add_comm(rec, &(run_step_comm_t){comm_share, wall > 0 ? tp_comm / wall : 0, idle_share,
                                             sent, recvd, sim_s});
  runlog_steps_append(&c->steps_log, step, rec); /* a failure warns once; the run goes on */
  if (!c->info.quiet &&
      train_progress_due(step, c->info.start_step, c->info.total_steps, c->info.log_every)) {
    char eta_s[32];
    train_format_eta(eta_s, sizeof eta_s, strata_now_s() - c->wall_start_s, c->steps_done,
                     c->info.total_steps - step);
    char sim_txt[64] = "";
    if (c->sim.res) snprintf(sim_txt, sizeof sim_txt, " | sim %.4g ms/step", sim_s * 1e3);
    strata_info("step %lld/%lld | loss %.4f | %.0f tok/s | comm %.0f%% | idle %.0f%% | ETA %s%s",
                (long long)step, (long long)c->info.total_steps, loss, tps, 100 * comm_share,
                100 * idle_share, eta_s, sim_txt);
  }
  (void)step_s;
  return 0;
}

/* Rank events (COORD_EVENT_DOUBLES each: kind, micro, step, t0_s, t1_s) as trace slices: fwd,
 * bwd, optim and checkpoint on the compute track, send, recv and allreduce on the
 * communication track. NULL when out of memory (or n == 0). */
static trace_slice_t *event_slices(const double *ev, size_t n, size_t *out_n) {
  *out_n = 0;
  trace_slice_t *s = n ? malloc(n * sizeof *s) : NULL;
  for (size_t i = 0; s && i < n; i++) {
    const double *e = ev + i * COORD_EVENT_DOUBLES;
    int kind = (int)e[0];
    if (kind < 0 || kind >= TRACE_KINDS) continue;
    const int comm = kind == TRACE_SEND || kind == TRACE_RECV || kind == TRACE_ALLREDUCE;
    s[(*out_n)++] = (trace_slice_t){trace_names[kind], comm, (int)e[1], (int64_t)e[2],
                                    trace_ns(e[3]), trace_ns(e[4]), 0};
  }
  return s;
}

/* One rank's timeline into the trace (rank 0: t != NULL). */
static void trace_rank(coord_t *c, trace_json_t *t, int r, const double *ev, size_t n) {
  if (!t) return;
  const layout_t *lay = c->info.layout;
  char name[128];
  snprintf(name, sizeof name, "rank %d (t %d, stage %d, replica %d)", r, layout_tp_of(lay, r),
           layout_stage_of(lay, r), layout_replica_of(lay, r));
  size_t ns = 0;
  trace_slice_t *s = event_slices(ev, n, &ns);
  if (n && !s && !t->f.err_no) t->f.err_no = ENOMEM;
  trace_json_process(t, r, name, NULL, s, ns);
  free(s);
}

/* The simulated timeline: per rank pid 1000 + rank, "sim rN (DEVICE; steps A-B on the simulated
 * clock)": the simulated step repeated back to back for the steps of this invocation (as many
 * as STRATA_TRACE_MAX_EVENTS allows per rank), numbered as the real ones. */
static void write_sim_events(coord_t *c, trace_json_t *t) {
  const sim_result_t *res = c->sim.res;
  size_t per_step = 0; /* events of the busiest rank in one step */
  for (int r = 0; r < c->size; r++) {
    size_t k = 0;
    for (int i = 0; i < res->nevents; i++) k += res->events[i].rank == r;
    if (k > per_step) per_step = k;
  }
  int64_t nsteps = c->steps_done;
  if (per_step > 0 && (size_t)nsteps > c->cap_ev / per_step) nsteps = (int64_t)(c->cap_ev / per_step);
  const int64_t step_ns = trace_ns(res->step_s), first = c->info.start_step + 1;
  trace_slice_t *s = per_step ? malloc(((size_t)nsteps * per_step + 1) * sizeof *s) : NULL;
  if (per_step && nsteps && !s && !t->f.err_no) t->f.err_no = ENOMEM;
  for (int r = 0; r < c->size; r++) {
    size_t n = 0;
    for (int64_t k = 0; s && k < nsteps; k++)
      for (int i = 0; i < res->nevents; i++) {
        const sim_event_t *e = &res->events[i];
        if (e->rank != r) continue;
        const int comm = !(e->kind == SIM_EV_FWD || e->kind == SIM_EV_BWD || e->kind == SIM_EV_OPTIMIZER);
        s[n++] = (trace_slice_t){sim_event_name(e->kind), comm, e->micro, first + k,
                                 k * step_ns + trace_ns(e->start_s), k * step_ns + trace_ns(e->end_s), 0};
      }
    char name[256];
    if (nsteps > 0)
      snprintf(name, sizeof name, "sim r%d (%s; steps %lld-%lld on the simulated clock)", r,
               c->sim.device, (long long)first, (long long)(first + nsteps - 1));
    else
      snprintf(name, sizeof name, "sim r%d (%s; no steps)", r, c->sim.device);
    trace_json_process(t, 1000 + r, name, "sim", s, n);
  }
  free(s);
}

/* Gathers every rank's events and, on rank 0, writes trace.json atomically (trace_json.h). -1
 * only when the gather fails (the job is broken); a file that cannot be written warns and leaves
 * c->trace_written 0 (RELIABILITY.md, "Full disk": the trace is a diagnostic view). */
static int write_trace(coord_t *c, char *err, size_t errlen) {
  /* Every rank but 0 sends [count] then its events; rank 0 receives them in rank order. */
  if (c->rank != 0) {
    int64_t n = (int64_t)c->n_ev;
    if (coll_send(&n, 1, COLL_I64, 0, COORD_TAG_TRACE_COUNT, c->world) != COLL_OK ||
        (n > 0 && coll_send(c->ev, (size_t)n * COORD_EVENT_DOUBLES, COLL_F64, 0,
                            COORD_TAG_TRACE_DATA, c->world) != COLL_OK)) {
      snprintf(err, errlen, "sending the trace to rank 0 failed: %s", coll_last_error(c->world));
      return -1;
    }
    return 0;
  }
  char path[4200], ferr[RUNLOG_PATH_MAX + 256];
  snprintf(path, sizeof path, "%s/trace.json", c->info.out_dir);
  trace_json_t tj;
  trace_json_t *t = trace_json_open(&tj, path, ferr, sizeof ferr) == 0 ? &tj : NULL; /* else: still drain the ranks */
  trace_rank(c, t, 0, c->ev, c->n_ev);
  for (int r = 1; r < c->size; r++) {
    int64_t n = 0;
    if (coll_recv(&n, 1, COLL_I64, r, COORD_TAG_TRACE_COUNT, c->world) != COLL_OK || n < 0) {
      snprintf(err, errlen, "receiving the trace of rank %d failed: %s", r, coll_last_error(c->world));
      if (t) trace_json_abort(t);
      return -1;
    }
    double *ev = n ? malloc((size_t)n * COORD_EVENT_DOUBLES * sizeof(double)) : NULL;
    if (n && (!ev || coll_recv(ev, (size_t)n * COORD_EVENT_DOUBLES, COLL_F64, r,
                               COORD_TAG_TRACE_DATA, c->world) != COLL_OK)) {
      snprintf(err, errlen, "receiving the trace of rank %d failed: %s", r,
               ev ? coll_last_error(c->world) : "out of memory");
      free(ev);
      if (t) trace_json_abort(t);
      return -1;
    }
    trace_rank(c, t, r, ev, (size_t)n);
    free(ev);
  }
  if (t && c->sim.res) write_sim_events(c, t);
  if (t && trace_json_commit(t, ferr, sizeof ferr) == 0) c->trace_written = 1;
  else strata_warn("%s; the trace of this run is not saved (report.json records \"trace_written\": "
                   "false)", ferr);
  return 0;
}

/* report.json: the configuration, layout, per-stage breakdown and results (README lists the
 * keys). Non-finite numbers are null (runlog_json_num). NULL when out of memory. */
static json_object *report_json(const coord_t *c, double tps, double wall, int64_t steps_end) {
  const layout_t *lay = c->info.layout;
  const strata_train_cfg_t *t = &c->info.train;
  const strata_model_cfg_t *m = &c->info.model;
  json_object *o = json_object_new_object();
  runlog_json_add(o, "world_size", json_object_new_int(lay->world));
  runlog_json_add(o, "tp", json_object_new_int(lay->tp));
  runlog_json_add(o, "sequence_parallel", json_object_new_boolean(c->info.sequence_parallel));
  runlog_json_add(o, "recompute", runlog_json_str(c->info.recompute));
  runlog_json_add(o, "pp", json_object_new_int(lay->pp));
  runlog_json_add(o, "dp", json_object_new_int(lay->dp));
  runlog_json_add(o, "microbatches", json_object_new_int(lay->micro));
  runlog_json_add(o, "schedule", runlog_json_str(t->schedule));
  runlog_json_add(o, "zero", json_object_new_int(t->zero));
  runlog_json_add(o, "precision", runlog_json_str(t->precision));
  runlog_json_add(o, "grad_dtype", runlog_json_str(c->info.grad_dtype ? c->info.grad_dtype : "fp32"));
  runlog_json_add(o, "transport", runlog_json_str(c->info.transport));
  runlog_json_add(o, "bucket_mb", runlog_json_num(c->info.bucket_mb, "%g"));
  runlog_json_add(o, "model", train_model_json(m, layout_params_total(&lay->model)));
  if (c->info.arch) runlog_json_add(o, "arch", runlog_json_str(c->info.arch));
  runlog_json_add(o, "config", train_config_json(t, "micro_batch", lay->micro_batch));
  json_object *layout = json_object_new_object(), *ranks = json_object_new_array();
  for (int r = 0; ranks && r < lay->world; r++) {
    json_object *e = json_object_new_object();
    runlog_json_add(e, "rank", json_object_new_int(r));
    runlog_json_add(e, "t", json_object_new_int(layout_tp_of(lay, r)));
    runlog_json_add(e, "stage", json_object_new_int(layout_stage_of(lay, r)));
    runlog_json_add(e, "replica", json_object_new_int(layout_replica_of(lay, r)));
    json_object_array_add(ranks, e);
  }
  runlog_json_add(layout, "ranks", ranks);
  runlog_json_add(o, "layout", layout);
  json_object *stages = json_object_new_array();
  for (int s = 0; stages && s < lay->pp; s++) {
    const stage_acc_t *a = &c->stages[s];
    json_object *e = json_object_new_object();
    runlog_json_add(e, "stage", json_object_new_int(s));
    runlog_json_add(e, "layer_begin", json_object_new_int(lay->layer_begin[s]));
    runlog_json_add(e, "layer_end", json_object_new_int(lay->layer_begin[s + 1]));
    const double nr = (double)lay->dp * lay->tp; /* the stage's ranks */
    runlog_json_add(e, "params", json_object_new_int64(layout_stage_params(lay, s)));
    runlog_json_add(e, "rank_params", json_object_new_int64(layout_rank_params(lay, s)));
    runlog_json_add(e, "compute_s", runlog_json_num(a->compute_s / nr, "%.6g"));
    runlog_json_add(e, "comm_s", runlog_json_num(a->comm_s / nr, "%.6g"));
    runlog_json_add(e, "tp_comm_s", runlog_json_num(a->tp_comm_s / nr, "%.6g"));
    runlog_json_add(e, "idle_s", runlog_json_num(a->idle_s / nr, "%.6g"));
    runlog_json_add(e, "peak_mem_bytes", json_object_new_uint64(a->peak_mem_bytes));
    if (c->sim.mem_act_bytes)
      runlog_json_add(e, "mem_activations_bytes", runlog_json_num(c->sim.mem_act_bytes[s], "%.0f"));
    if (c->sim.res && s < c->sim.res->pp) {
      /* per step: compute, comm (exposed DP/tied/all-gather waits), idle (pipeline bubble),
       * optimizer; sums match the simulated step for the slowest rank */
      const sim_stage_result_t *st = &c->sim.res->stages[s];
      runlog_json_add(e, "sim_compute_s", runlog_json_num(st->compute_s, "%.6g"));
      runlog_json_add(e, "sim_comm_s", runlog_json_num(st->exposed_comm_s, "%.6g"));
      runlog_json_add(e, "sim_idle_s", runlog_json_num(st->idle_s, "%.6g"));
      runlog_json_add(e, "sim_optimizer_s", runlog_json_num(st->optimizer_s, "%.6g"));
      runlog_json_add(e, "sim_comm_busy_s", runlog_json_num(st->comm_busy_s, "%.6g"));
      runlog_json_add(e, "mem_model_bytes", runlog_json_num(c->sim.mem_model_bytes[s], "%.0f"));
      runlog_json_add(e, "mem_alloc_bytes", runlog_json_num(c->sim.mem_alloc_bytes[s], "%.0f"));
    }
    json_object_array_add(stages, e);
  }
  runlog_json_add(o, "stages", stages);
  if (c->sim.res) {
    double sim_step = c->steps_done > 0 ? c->sim_train_s / (double)c->steps_done : 0;
    double sim_tps = c->sim_train_s > 0 ? c->tokens / c->sim_train_s : 0;
    double sim_mfu = sim_step > 0 && c->sim.res->step_s > 0
                         ? c->sim.res->mfu * c->sim.res->step_s / sim_step : 0;
    runlog_json_add(o, "device", runlog_json_str(c->sim.device));
    runlog_json_add(o, "device_mem_bytes", runlog_json_num(c->sim.capacity_bytes, "%.0f"));
    runlog_json_add(o, "sim_step_s", runlog_json_num(sim_step, "%.6g"));
    runlog_json_add(o, "sim_tokens_per_s", runlog_json_num(sim_tps, "%.6g"));
    runlog_json_add(o, "sim_mfu", runlog_json_num(sim_mfu, "%.6g"));
    runlog_json_add(o, "sim_train_s", runlog_json_num(c->sim_train_s, "%.6g"));
    runlog_json_add(o, "sim_compute_share", runlog_json_num(c->sim.res->compute_share, "%.4f"));
    runlog_json_add(o, "sim_pipeline_idle_share",
                    runlog_json_num(c->sim.res->pipeline_idle_share, "%.4f"));
    runlog_json_add(o, "sim_exposed_comm_share",
                    runlog_json_num(c->sim.res->exposed_comm_share, "%.4f"));
  }
  runlog_json_add(o, "steps_done", json_object_new_int64(steps_end));
  runlog_json_add(o, "final_loss", runlog_json_num(c->last_loss, "%.9g"));
  runlog_json_add(o, "val_loss", runlog_json_num(c->val_loss, "%.9g"));
  runlog_json_add(o, "val_tokens", json_object_new_int64(c->val_tokens));
  runlog_json_add(o, "tokens_per_s", runlog_json_num(tps, "%.6g"));
  /* shares of all ranks' step time: communication in all, in the TP groups, and the rest (DP
   * reductions, tied wte, norm, ZeRO gathers) */
  const double ws = c->wall_sum_s;
  runlog_json_add(o, "comm_share", runlog_json_num(ws > 0 ? c->comm_sum_s / ws : 0, "%.4f"));
  runlog_json_add(o, "tp_comm_share", runlog_json_num(ws > 0 ? c->tp_comm_sum_s / ws : 0, "%.4f"));
  runlog_json_add(o, "dp_comm_share",
                  runlog_json_num(ws > 0 ? (c->comm_sum_s - c->tp_comm_sum_s) / ws : 0, "%.4f"));
  /* every rank's transport bytes over the steps (steps.jsonl has each step's): what the layout,
   * ZeRO and --grad-dtype cost on the wire */
  runlog_json_add(o, "bytes_sent", json_object_new_uint64(c->bytes_sent));
  runlog_json_add(o, "bytes_recv", json_object_new_uint64(c->bytes_recv));
  runlog_json_add(o, "train_s", runlog_json_num(c->train_s, "%.6g"));
  runlog_json_add(o, "wall_s", runlog_json_num(wall, "%.6g"));
  runlog_json_add(o, "steps_log_complete", json_object_new_boolean(c->steps_log_complete));
  runlog_json_add(o, "trace_written", json_object_new_boolean(c->trace_written));
  return o;
}

/* report.pb: the same summary as a RunReport protobuf, written atomically. 0 or -1. */
static int write_report_pb(const coord_t *c, double tps, double wall, int64_t steps_end, char *err,
                           size_t errlen) {
  const layout_t *lay = c->info.layout;
  strata_run_report_t *rr = calloc(1, sizeof *rr);
  if (!rr) return strata_fail(err, errlen, "cannot write report.pb: out of memory");
  strata_run_report_init(rr);
  rr->world_size = lay->world;
  rr->model = c->info.model;
  rr->train = c->info.train;
  rr->layout.tp = lay->tp;
  rr->layout.pp = lay->pp;
  rr->layout.dp = lay->dp;
  rr->layout.n_stage_layers = lay->pp;
  for (int s = 0; s < lay->pp; s++) rr->layout.stage_layers[s] = layout_stage_layers(lay, s);
  rr->steps = (uint64_t)steps_end;
  rr->final_loss = c->last_loss;
  rr->tokens_per_s = tps;
  rr->wall_s = wall;
  rr->n_stages = lay->pp;
  for (int s = 0; s < lay->pp; s++) {
    strata_stage_summary_t *ss = &rr->stages[s];
    ss->stage = s;
    ss->layer_begin = lay->layer_begin[s];
    ss->layer_end = lay->layer_begin[s + 1];
    ss->params = (uint64_t)layout_stage_params(lay, s);
    ss->compute_s = c->stages[s].compute_s / ((double)lay->dp * lay->tp);
    ss->comm_s = c->stages[s].comm_s / ((double)lay->dp * lay->tp);
    ss->idle_s = c->stages[s].idle_s / ((double)lay->dp * lay->tp);
    ss->peak_mem_bytes = c->stages[s].peak_mem_bytes;
  }
  snprintf(rr->transport, sizeof rr->transport, "%s", c->info.transport);
  int rc = run_report_pb_write(c->info.out_dir, rr, err, errlen);
  free(rr);
  return rc;
}

/* report.json and report.pb (rank 0), both attempted. -1 when either could not be written, err
 * naming each (RELIABILITY.md, "Full disk": the job then exits 1, its checkpoints complete). */
static int write_reports(coord_t *c, char *err, size_t errlen) {
  double tps = c->train_s > 0 ? c->tokens / c->train_s : 0;
  double wall = strata_now_s() - c->wall_start_s;
  int64_t steps_end = c->info.start_step + c->steps_done;
  char path[4200], e1[RUNLOG_PATH_MAX + 256] = "", e2[RUNLOG_PATH_MAX + 256] = "";
  snprintf(path, sizeof path, "%s/report.json", c->info.out_dir);
  json_object *doc = report_json(c, tps, wall, steps_end);
  int bad_json = runlog_json_write(path, doc, e1, sizeof e1) != 0;
  json_object_put(doc);
  int bad_pb = write_report_pb(c, tps, wall, steps_end, e2, sizeof e2) != 0;
  if (bad_json || bad_pb) {
    snprintf(err, errlen, "%s%s%s (the training itself finished: its checkpoints are complete)",
             e1, bad_json && bad_pb ? "; " : "", e2);
    return -1;
  }
  char vl[96];
  valset_format_loss(vl, sizeof vl, c->val_loss, (int)c->info.model.vocab);
  if (!c->info.quiet)
    strata_info("done: %lld steps, final loss %.4f, validation loss %s over %lld held-out tokens, "
                "%.0f tokens/s; wrote %s/report.json, report.pb%s%s", (long long)steps_end,
                c->last_loss, vl, (long long)c->val_tokens, tps, c->info.out_dir,
                c->steps_log_complete ? ", steps.jsonl" : "", c->trace_written ? ", trace.json" : "");
  return 0;
}

int coord_finish(coord_t *c, char *err, size_t errlen) {
  c->steps_log_complete = runlog_steps_close(&c->steps_log) & /* 1 on ranks without the logs */
                          runlog_steps_close(&c->val_log);
  int rc = write_trace(c, err, errlen);
  if (c->rank == 0 && rc == 0) rc = write_reports(c, err, errlen);
  int32_t ok = rc == 0;
  if (coll_broadcast(&ok, 1, COLL_I32, 0, c->world) != COLL_OK) {
    if (rc == 0)
      snprintf(err, errlen, "run report broadcast failed: %s", coll_last_error(c->world));
    return -1;
  }
  if (!ok && rc == 0) {
    snprintf(err, errlen, "the coordinator (rank 0) failed to write the run reports");
    return -1;
  }
  return rc;
}
