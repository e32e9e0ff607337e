/* coordinator.c -- StepReport gathering, the progress line and the run directory files of a
 * distributed training run (see coordinator.h). */
#include "coordinator.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "env.h"
#include "log.h"

/* A StepReport travels as int32 words: [0] = encoded length in bytes, then the bytes. */
#define COORD_REPORT_WORDS 128
#define COORD_TAG_TRACE_COUNT 7001
#define COORD_TAG_TRACE_DATA 7002
#define COORD_EVENT_DOUBLES 5 /* kind, micro, step, t0_s, t1_s */

static const char *const trace_names[TRACE_KINDS] = {"fwd",       "bwd",   "send", "recv",
                                                     "allreduce", "optim", "checkpoint"};

typedef struct {
  double compute_s, comm_s, idle_s; /* summed over steps and replicas */
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
  FILE *steps_log;
  stage_acc_t *stages;     /* [pp] */
  double train_s;          /* summed slowest-rank step seconds */
  double tokens;           /* tokens processed in this invocation */
  double last_loss;
  double val_loss;         /* NaN until an evaluation ran */
  int64_t steps_done;      /* steps of this invocation */
  double wall_start_s;
  coord_sim_t sim;         /* sim.res == NULL: no simulated device */
  double sim_train_s;      /* summed simulated step seconds */
  double sim_last_step_s;
};

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double coord_now(const coord_t *c) { return mono_s() - c->origin_s; }
double coord_from_mono(const coord_t *c, double t) { return t - c->origin_s; }
void coord_set_val_loss(coord_t *c, double v) { c->val_loss = v; }
void coord_set_sim(coord_t *c, const coord_sim_t *sim) { c->sim = *sim; }

int coord_create(coll_comm_t *world, const coord_info_t *info, coord_t **out, char *err,
                 size_t errlen) {
  *out = NULL;
  coord_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory for the coordinator");
    return -1;
  }
  c->world = world;
  c->info = *info;
  c->rank = coll_rank(world);
  c->size = coll_size(world);
  c->cur_step = info->start_step + 1;
  c->val_loss = NAN;
  int64_t cap; /* a bad value is refused by strata at start-up (worker/env.c) */
  env_read_int("STRATA_TRACE_MAX_EVENTS", COORD_TRACE_MAX_EVENTS, &cap, NULL, 0);
  c->cap_ev = cap > 0 ? (size_t)cap : 0;
  c->words = calloc((size_t)c->size * COORD_REPORT_WORDS, sizeof(int32_t));
  int32_t ok = c->words != NULL;
  if (ok && c->rank == 0) {
    c->stages = calloc((size_t)info->layout->pp, sizeof *c->stages);
    char path[4200];
    snprintf(path, sizeof path, "%s/steps.jsonl", info->out_dir);
    c->steps_log = fopen(path, info->append ? "a" : "w");
    if (!c->stages || !c->steps_log) {
      snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
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
  c->origin_s = mono_s();
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
  if (c->steps_log) fclose(c->steps_log);
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

static void format_duration(char *buf, size_t len, double s) {
  if (!(s >= 0) || s > 1e7) s = 0;
  int sec = (int)(s + 0.5);
  if (sec >= 3600) snprintf(buf, len, "%dh%02dm", sec / 3600, (sec / 60) % 60);
  else if (sec >= 60) snprintf(buf, len, "%dm%02ds", sec / 60, sec % 60);
  else snprintf(buf, len, "%ds", sec);
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
  double loss_sum = 0, comm = 0, idle = 0, wall = 0, slowest = 0;
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
    idle += rep.idle_s;
    wall += rs;
    if (rs > slowest) slowest = rs;
    if (rep.simulated_s > sim_s) sim_s = rep.simulated_s;
    sent += rep.bytes_sent;
    recvd += rep.bytes_recv;
    if (rep.stage == 0) tokens += rep.tokens;
    if (rep.stage >= 0 && rep.stage < lay->pp) {
      stage_acc_t *s = &c->stages[rep.stage];
      s->compute_s += rep.compute_s;
      s->comm_s += rep.comm_s;
      s->idle_s += rep.idle_s;
      if (rep.peak_mem_bytes > s->peak_mem_bytes) s->peak_mem_bytes = rep.peak_mem_bytes;
    }
  }
  double loss = n_loss ? loss_sum / n_loss : NAN;
  if (loss_out) *loss_out = loss;
  c->last_loss = loss;
  c->train_s += slowest;
  c->tokens += (double)tokens;
  c->steps_done++;
  c->sim_train_s += sim_s;
  c->sim_last_step_s = sim_s;
  double tps = slowest > 0 ? (double)tokens / slowest : 0;
  double comm_share = wall > 0 ? comm / wall : 0, idle_share = wall > 0 ? idle / wall : 0;
  int64_t step = (int64_t)mine.step;
  fprintf(c->steps_log,
          "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
          "\"tokens_per_s\": %.6g, \"step_s\": %.6g, \"comm_share\": %.4f, \"idle_share\": %.4f, "
          "\"bytes_sent\": %llu, \"bytes_recv\": %llu, \"sim_step_s\": %.6g}\n",
          (long long)step, loss, lr, grad_norm, tps, slowest, comm_share, idle_share,
          (unsigned long long)sent, (unsigned long long)recvd, sim_s);
  fflush(c->steps_log);
  int is_last = step == c->info.total_steps;
  if (!c->info.quiet && (step % c->info.log_every == 0 || is_last || step == c->info.start_step + 1)) {
    double elapsed = mono_s() - c->wall_start_s;
    double eta = elapsed / (double)c->steps_done * (double)(c->info.total_steps - step);
    char eta_s[32];
    format_duration(eta_s, sizeof eta_s, eta);
    char sim_txt[64] = "";
    if (c->sim.res) snprintf(sim_txt, sizeof sim_txt, " | sim %.4g ms/step", sim_s * 1e3);
    strata_info("step %lld/%lld | loss %.4f | %.0f tok/s | comm %.0f%% | idle %.0f%% | ETA %s%s",
                (long long)step, (long long)c->info.total_steps, loss, tps, 100 * comm_share,
                100 * idle_share, eta_s, sim_txt);
  }
  (void)step_s;
  return 0;
}

/* Writes `n` events of rank `r` to f (comma-separated after the first overall). */
static void write_events(FILE *f, int r, const double *ev, size_t n, int *first) {
  for (size_t i = 0; i < n; i++) {
    const double *e = ev + i * COORD_EVENT_DOUBLES;
    int kind = (int)e[0];
    if (kind < 0 || kind >= TRACE_KINDS) continue;
    fprintf(f, "%s\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": 0, "
            "\"ts\": %.3f, \"dur\": %.3f, \"args\": {\"step\": %lld, \"micro\": %d}}",
            *first ? "" : ",", trace_names[kind], kind == TRACE_FWD || kind == TRACE_BWD || kind == TRACE_OPTIM ? "compute" : "comm",
            r, e[3] * 1e6, (e[4] - e[3]) * 1e6, (long long)e[2], (int)e[1]);
    *first = 0;
  }
}

/* The simulated timeline: per rank pid 1000 + rank ("sim rN"), tid 0 compute, tid 1 comm; the
 * simulated step repeated for the first COORD_SIM_TRACE_STEPS steps. */
static void write_sim_events(coord_t *c, FILE *f, int *first) {
  const sim_result_t *res = c->sim.res;
  for (int r = 0; r < c->size; r++) {
    fprintf(f, "%s\n{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": "
            "\"sim r%d (%s)\"}}", *first ? "" : ",", 1000 + r, r, c->sim.device);
    *first = 0;
  }
  int64_t nsteps = c->steps_done < COORD_SIM_TRACE_STEPS ? c->steps_done : COORD_SIM_TRACE_STEPS;
  for (int64_t k = 0; k < nsteps; k++) {
    double off = (double)k * res->step_s;
    for (int i = 0; i < res->nevents; i++) {
      const sim_event_t *e = &res->events[i];
      int comm = !(e->kind == SIM_EV_FWD || e->kind == SIM_EV_BWD || e->kind == SIM_EV_OPTIMIZER);
      fprintf(f, ",\n{\"name\": \"%s\", \"cat\": \"sim\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, "
              "\"ts\": %.3f, \"dur\": %.3f, \"args\": {\"step\": %lld, \"micro\": %d}}",
              sim_event_name(e->kind), 1000 + e->rank, comm, (off + e->start_s) * 1e6,
              (e->end_s - e->start_s) * 1e6, (long long)(c->info.start_step + k + 1), e->micro);
    }
  }
}

static int write_trace(coord_t *c, char *err, size_t errlen) {
  /* Every rank but 0 sends [count] then its events; rank 0 receives them in rank order. */
  int rc = 0;
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
  char path[4200], tmp[4300];
  snprintf(path, sizeof path, "%s/trace.json", c->info.out_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    rc = -1; /* still drain the other ranks' messages */
  }
  int first = 1;
  const layout_t *lay = c->info.layout;
  if (f) {
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [");
    for (int r = 0; r < c->size; r++) {
      fprintf(f, "%s\n{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": "
              "\"rank %d (stage %d, replica %d)\"}}",
              first ? "" : ",", r, r, layout_stage_of(lay, r), layout_replica_of(lay, r));
      first = 0;
    }
    write_events(f, 0, c->ev, c->n_ev, &first);
  }
  for (int r = 1; r < c->size; r++) {
    int64_t n = 0;
    if (coll_recv(&n, 1, COLL_I64, r, COORD_TAG_TRACE_COUNT, c->world) != COLL_OK || n < 0) {
      snprintf(err, errlen, "receiving the trace of rank %d failed: %s", r, coll_last_error(c->world));
      if (f) fclose(f);
      return -1;
    }
    if (n == 0) continue;
    double *ev = malloc((size_t)n * COORD_EVENT_DOUBLES * sizeof(double));
    if (!ev || coll_recv(ev, (size_t)n * COORD_EVENT_DOUBLES, COLL_F64, r, COORD_TAG_TRACE_DATA,
                         c->world) != COLL_OK) {
      snprintf(err, errlen, "receiving the trace of rank %d failed: %s", r,
               ev ? coll_last_error(c->world) : "out of memory");
      free(ev);
      if (f) fclose(f);
      return -1;
    }
    if (f) write_events(f, r, ev, (size_t)n, &first);
    free(ev);
  }
  if (f && c->sim.res) write_sim_events(c, f, &first);
  if (f) {
    fprintf(f, "\n]}\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
      snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
      rc = -1;
    }
  }
  return rc;
}

static int write_reports(coord_t *c, char *err, size_t errlen) {
  const layout_t *lay = c->info.layout;
  const strata_train_cfg_t *t = &c->info.train;
  const strata_model_cfg_t *m = &c->info.model;
  double tps = c->train_s > 0 ? c->tokens / c->train_s : 0;
  double wall = mono_s() - c->wall_start_s;
  int64_t steps_end = c->info.start_step + c->steps_done;
  char path[4200], tmp[4300];
  snprintf(path, sizeof path, "%s/report.json", c->info.out_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    return -1;
  }
  fprintf(f, "{\n  \"world_size\": %d,\n  \"pp\": %d,\n  \"dp\": %d,\n  \"microbatches\": %d,\n"
          "  \"schedule\": \"%s\",\n  \"zero\": %d,\n  \"transport\": \"%s\",\n  \"bucket_mb\": %g,\n",
          lay->world, lay->pp, lay->dp, lay->micro, t->schedule, t->zero, c->info.transport,
          c->info.bucket_mb);
  fprintf(f, "  \"model\": {\"vocab\": %d, \"ctx\": %d, \"layers\": %d, \"heads\": %d, \"dim\": %d, "
          "\"params\": %lld},\n",
          m->vocab, m->ctx, m->layers, m->heads, m->dim, (long long)layout_params_total(&lay->model));
  fprintf(f, "  \"config\": {\"batch\": %d, \"seq_len\": %d, \"micro_batch\": %d, \"steps\": %lld, "
          "\"seed\": %llu, \"lr\": %.9g, \"warmup_steps\": %lld, \"weight_decay\": %.9g, "
          "\"grad_clip\": %.9g, \"data\": \"%s\"},\n",
          t->batch, t->seq_len, lay->micro_batch, (long long)t->total_steps,
          (unsigned long long)t->seed, t->lr, (long long)t->warmup_steps, t->weight_decay,
          t->grad_clip, t->data_path);
  fprintf(f, "  \"layout\": {\"ranks\": [");
  for (int r = 0; r < lay->world; r++)
    fprintf(f, "%s{\"rank\": %d, \"stage\": %d, \"replica\": %d}", r ? ", " : "", r,
            layout_stage_of(lay, r), layout_replica_of(lay, r));
  fprintf(f, "]},\n  \"stages\": [\n");
  for (int s = 0; s < lay->pp; s++) {
    const stage_acc_t *a = &c->stages[s];
    fprintf(f, "    {\"stage\": %d, \"layer_begin\": %d, \"layer_end\": %d, \"params\": %lld, "
            "\"compute_s\": %.6g, \"comm_s\": %.6g, \"idle_s\": %.6g, \"peak_mem_bytes\": %llu",
            s, lay->layer_begin[s], lay->layer_begin[s + 1], (long long)layout_stage_params(lay, s),
            a->compute_s / lay->dp, a->comm_s / lay->dp, a->idle_s / lay->dp,
            (unsigned long long)a->peak_mem_bytes);
    if (c->sim.res && s < c->sim.res->pp) {
      /* per step: compute, comm (exposed DP/tied/all-gather waits), idle (pipeline bubble),
       * optimizer; sums match the simulated step for the slowest rank */
      const sim_stage_result_t *st = &c->sim.res->stages[s];
      fprintf(f, ", \"sim_compute_s\": %.6g, \"sim_comm_s\": %.6g, \"sim_idle_s\": %.6g, "
              "\"sim_optimizer_s\": %.6g, \"sim_comm_busy_s\": %.6g, \"mem_model_bytes\": %.0f, "
              "\"mem_alloc_bytes\": %.0f",
              st->compute_s, st->exposed_comm_s, st->idle_s, st->optimizer_s, st->comm_busy_s,
              c->sim.mem_model_bytes[s], c->sim.mem_alloc_bytes[s]);
    }
    fprintf(f, "}%s\n", s + 1 < lay->pp ? "," : "");
  }
  char val[64];
  if (isfinite(c->val_loss)) snprintf(val, sizeof val, "%.9g", c->val_loss);
  else snprintf(val, sizeof val, "null");
  fprintf(f, "  ],\n");
  if (c->sim.res) {
    double sim_step = c->steps_done > 0 ? c->sim_train_s / (double)c->steps_done : 0;
    double sim_tps = c->sim_train_s > 0 ? c->tokens / c->sim_train_s : 0;
    double sim_mfu = sim_step > 0 && c->sim.res->step_s > 0
                         ? c->sim.res->mfu * c->sim.res->step_s / sim_step : 0;
    fprintf(f, "  \"device\": \"%s\",\n  \"device_mem_bytes\": %.0f,\n  \"sim_step_s\": %.6g,\n"
            "  \"sim_tokens_per_s\": %.6g,\n  \"sim_mfu\": %.6g,\n  \"sim_train_s\": %.6g,\n"
            "  \"sim_compute_share\": %.4f,\n  \"sim_pipeline_idle_share\": %.4f,\n"
            "  \"sim_exposed_comm_share\": %.4f,\n",
            c->sim.device, c->sim.capacity_bytes, sim_step, sim_tps, sim_mfu, c->sim_train_s,
            c->sim.res->compute_share, c->sim.res->pipeline_idle_share,
            c->sim.res->exposed_comm_share);
  }
  fprintf(f, "  \"steps_done\": %lld,\n  \"final_loss\": %.9g,\n  \"val_loss\": %s,\n"
          "  \"tokens_per_s\": %.6g,\n  \"train_s\": %.6g,\n  \"wall_s\": %.6g\n}\n",
          (long long)steps_end, c->last_loss, val, tps, c->train_s, wall);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return -1;
  }

  strata_run_report_t *rr = calloc(1, sizeof *rr);
  if (!rr) {
    snprintf(err, errlen, "out of memory for the run report");
    return -1;
  }
  strata_run_report_init(rr);
  rr->world_size = lay->world;
  rr->model = *m;
  rr->train = *t;
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
    ss->compute_s = c->stages[s].compute_s / lay->dp;
    ss->comm_s = c->stages[s].comm_s / lay->dp;
    ss->idle_s = c->stages[s].idle_s / lay->dp;
    ss->peak_mem_bytes = c->stages[s].peak_mem_bytes;
  }
  snprintf(rr->transport, sizeof rr->transport, "%s", c->info.transport);
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = strata_run_report_encode(rr, &buf, &len, err, errlen);
  free(rr);
  if (rc) return -1;
  snprintf(path, sizeof path, "%s/report.pb", c->info.out_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  f = fopen(tmp, "wb");
  if (!f || fwrite(buf, 1, len, f) != len) {
    snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    if (f) fclose(f);
    free(buf);
    return -1;
  }
  free(buf);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return -1;
  }
  if (!c->info.quiet)
    strata_info("done: %lld steps, final loss %.4f, validation loss %.4f, %.0f tokens/s; wrote "
                "%s/report.json, report.pb, steps.jsonl, trace.json",
                (long long)steps_end, c->last_loss, c->val_loss, tps, c->info.out_dir);
  return 0;
}

int coord_finish(coord_t *c, char *err, size_t errlen) {
  int rc = write_trace(c, err, errlen);
  if (c->rank == 0 && rc == 0) rc = write_reports(c, err, errlen);
  int32_t ok = rc == 0;
  if (coll_broadcast(&ok, 1, COLL_I32, 0, c->world) != COLL_OK) return -1;
  if (!ok && rc == 0) {
    snprintf(err, errlen, "the coordinator (rank 0) failed to write the run reports");
    return -1;
  }
  return rc;
}
