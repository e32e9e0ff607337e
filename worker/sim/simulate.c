/* simulate.c -- the discrete-event simulation of one training step (contract in simulate.h,
 * the model in SIMULATION.md). Ranks advance through their schedules on private clocks; a
 * rank blocked on a receive sleeps until the matching send is posted (worklist), so the cost
 * is linear in the number of actions. The data-parallel phase is then computed per stage from
 * the recorded backward times. */
#include "simulate.h"
#include "env.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sim_options_t sim_options_default(void) {
  sim_options_t o;
  o.kind = SCHED_1F1B;
  o.zero = 0;
  o.overlap = 1;
  double mb; /* a bad STRATA_BUCKET_MB is refused by strata at start-up (worker/base/env.c) */
  env_read_double("STRATA_BUCKET_MB", SIM_DEFAULT_BUCKET_MB, &mb, NULL, 0);
  o.bucket_bytes = mb * 1024 * 1024;
  o.dtype = DEV_BF16;
  o.record_events = 0;
  return o;
}

/* Roofline time of an op list; backward = 2x forward flops and bytes. */
static double ops_time(const device_t *dev, device_dtype_t dt, const layout_op_t *ops, int n,
                       double mult) {
  double t = 0;
  for (int i = 0; i < n; i++)
    t += device_op_time(dev, dt, mult * ops[i].flops, mult * ops[i].elems * device_dtype_size(dt));
  return t;
}

/* AdamW per parameter: ~12 flops; reads p, g, m, v and writes p, m, v in fp32 (28 bytes). */
#define SIM_ADAMW_FLOPS 12.0
#define SIM_ADAMW_BYTES 28.0

int sim_build_costs(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                    sim_stage_cost_t **costs_out) {
  const layout_model_t *m = &lay->model;
  int P = lay->pp, b = lay->micro_batch, T = m->ctx;
  device_dtype_t dt = opt->dtype;
  sim_stage_cost_t *costs = calloc((size_t)P, sizeof *costs);
  if (!costs) return -1;
  layout_op_t lops[LAYOUT_MAX_OPS], eops[LAYOUT_MAX_OPS], hops[LAYOUT_MAX_OPS];
  int nl = layout_layer_ops(m, b, T, lops), ne = layout_embed_ops(m, b, T, eops),
      nh = layout_head_ops(m, b, T, hops);
  double lf = ops_time(dev, dt, lops, nl, 1), lb = ops_time(dev, dt, lops, nl, 2);
  double ef = ops_time(dev, dt, eops, ne, 1), eb = ops_time(dev, dt, eops, ne, 2);
  double hf = ops_time(dev, dt, hops, nh, 1), hb = ops_time(dev, dt, hops, nh, 2);
  double lfl = layout_ops_flops(lops, nl), efl = layout_ops_flops(eops, ne),
         hfl = layout_ops_flops(hops, nh);
  double E = MEM_ELEM_BYTES, C = m->dim, V = m->vocab;
  for (int s = 0; s < P; s++) {
    sim_stage_cost_t *c = &costs[s];
    int k = layout_stage_layers(lay, s), first = (s == 0), last = (s == P - 1);
    c->fwd_s = k * lf + (first ? ef : 0) + (last ? hf : 0);
    c->bwd_s = k * lb + (first ? eb : 0) + (last ? hb : 0);
    c->fwd_flops = k * lfl + (first ? efl : 0) + (last ? hfl : 0);
    c->bwd_flops = 2 * c->fwd_flops;
    c->act_bytes = (double)b * T * C * device_dtype_size(dt);
    double params = (double)layout_stage_params(lay, s);
    double opt_params = opt->zero ? ceil(params / lay->dp) : params;
    c->opt_s =
        device_op_time(dev, DEV_FP32, SIM_ADAMW_FLOPS * opt_params, SIM_ADAMW_BYTES * opt_params);
    /* ZeRO-1 reduce-scatters and all-gathers the padded shard: D x ceil(params / D) floats */
    c->param_bytes = opt->zero ? E * opt_params * lay->dp : E * params;
    c->tied_bytes = (P > 1 && (first || last)) ? E * V * C : 0;
    c->regions = calloc((size_t)k + 4, sizeof(sim_region_t));
    if (!c->regions) {
      sim_costs_free(costs, P);
      return -1;
    }
    /* gpt2.c's grad_ready order: ln_f, layers last to first, wpe, wte (the last stage's wte copy
     * at the very end); the copy lies between the layers and ln_f in memory */
    double t = 0;
    int n = 0;
    if (last) {
      t += hb;
      c->regions[n] = (sim_region_t){E * 2 * C, t, 0, P > 1};
      n++;
    }
    for (int l = 0; l < k; l++) {
      t += lb;
      c->regions[n] = (sim_region_t){E * (double)layout_params_per_layer(m), t, 0, 0};
      n++;
    }
    if (first) {
      t += eb;
      c->regions[n] = (sim_region_t){E * (double)m->ctx * C, t, 0, 0};
      n++;
      c->regions[n] = (sim_region_t){E * V * C, t, P > 1, 0};
      n++;
    } else if (last && P > 1) {
      c->regions[n] = (sim_region_t){E * V * C, t, 1, 0};
      n++;
    }
    c->nregions = n;
  }
  *costs_out = costs;
  return 0;
}

void sim_costs_free(sim_stage_cost_t *costs, int pp) {
  if (!costs) return;
  for (int s = 0; s < pp; s++) free(costs[s].regions);
  free(costs);
}

void sim_result_free(sim_result_t *res) {
  if (!res) return;
  free(res->stages);
  res->stages = NULL;
  free(res->events);
  res->events = NULL;
  res->nevents = 0;
}

int sim_write_chrome_trace(const sim_result_t *res, FILE *f, int pid, const char *label) {
  int maxrank = -1;
  for (int i = 0; i < res->nevents; i++)
    if (res->events[i].rank > maxrank) maxrank = res->events[i].rank;
  fprintf(
      f,
      "[\n{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"%s\"}}",
      pid, label ? label : "simulated");
  /* track ids: 2r for the compute of rank r, 2r + 1 for its communication */
  for (int r = 0; r <= maxrank; r++)
    fprintf(
        f,
        ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": "
        "{\"name\": \"r%d compute\"}},\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, "
        "\"tid\": %d, \"args\": {\"name\": \"r%d comm\"}}",
        pid, 2 * r, r, pid, 2 * r + 1, r);
  for (int i = 0; i < res->nevents; i++) {
    const sim_event_t *e = &res->events[i];
    int compute = e->kind == SIM_EV_FWD || e->kind == SIM_EV_BWD || e->kind == SIM_EV_OPTIMIZER;
    char name[64];
    if (e->micro >= 0)
      snprintf(name, sizeof name, "%s %s%d", sim_event_name(e->kind),
               e->kind == SIM_EV_DP_REDUCE ? "bucket " : "m", e->micro);
    else
      snprintf(name, sizeof name, "%s", sim_event_name(e->kind));
    fprintf(f,
            ",\n{\"name\": \"%s\", \"cat\": \"sim\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, "
            "\"ts\": %.3f, \"dur\": %.3f}",
            name, pid, 2 * e->rank + !compute, e->start_s * 1e6, (e->end_s - e->start_s) * 1e6);
  }
  fprintf(f, "\n]\n");
  return ferror(f) ? -1 : 0;
}

const char *sim_event_name(sim_event_kind_t k) {
  static const char *names[] = {"fwd",       "bwd",  "send_act",  "send_grad",
                                "dp_reduce", "tied", "optimizer", "allgather"};
  return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* Appends an event when recording; returns -1 on allocation failure. */
static int record(sim_result_t *res, int on, int *cap, int rank, sim_event_kind_t kind, int micro,
                  double start, double end) {
  if (!on) return 0;
  if (res->nevents == *cap) {
    int ncap = *cap ? 2 * *cap : 1024;
    sim_event_t *e = realloc(res->events, sizeof *e * (size_t)ncap);
    if (!e) return -1;
    res->events = e;
    *cap = ncap;
  }
  res->events[res->nevents++] = (sim_event_t){rank, kind, micro, start, end};
  return 0;
}

/* Per-rank state of the pipeline phase. */
typedef struct {
  int pc;                /* next action */
  int blocked;           /* waiting on a receive */
  double t;              /* clock */
  double link_next_free; /* when its link towards stage + 1 is free */
  double link_prev_free; /* towards stage - 1 */
  double busy;           /* compute seconds */
  double last_bwd_start; /* start of its final backward */
  double end_bwd;        /* end of its final backward */
} rank_state_t;

int sim_run(const layout_t *lay, const device_t *dev, const sim_stage_cost_t *costs,
            const sim_options_t *opt, sim_result_t *res, char *err, size_t errlen) {
  int rc = -1;
  int P = lay->pp, D = lay->dp, M = lay->micro, N = lay->world;
  memset(res, 0, sizeof *res);
  int rec = opt->record_events, ecap = 0, rec_fail = 0;
  sched_action_t **acts = calloc((size_t)P, sizeof *acts);
  int *nacts = calloc((size_t)P, sizeof(int)), *last_bwd = calloc((size_t)P, sizeof(int));
  rank_state_t *st = calloc((size_t)N, sizeof *st);
  double *act_arr = malloc(sizeof(double) * (size_t)N * M),
         *grad_arr = malloc(sizeof(double) * (size_t)N * M);
  int *work = malloc(sizeof(int) * (size_t)N * 2 + sizeof(int));
  double *comm_done = calloc((size_t)P, sizeof(double)),
         *comm_busy = calloc((size_t)P, sizeof(double));
  double *opt_start = calloc((size_t)N, sizeof(double)),
         *final_t = calloc((size_t)N, sizeof(double));
  int *group = malloc(sizeof(int) * (size_t)D), *norm_grp = malloc(sizeof(int) * (size_t)N);
  double *norm_wait = calloc((size_t)N, sizeof(double));
  res->stages = calloc((size_t)P, sizeof *res->stages);
  res->pp = P;
  if (!acts || !nacts || !last_bwd || !st || !act_arr || !grad_arr || !work || !comm_done ||
      !comm_busy || !opt_start || !final_t || !group || !norm_grp || !norm_wait ||
      !res->stages) {
    strata_fail(err, errlen, "simulate: out of memory (%d ranks x %d micro-batches)", N, M);
    goto free_all;
  }
  for (int s = 0; s < P; s++) {
    acts[s] = malloc(sizeof(sched_action_t) * (size_t)SCHED_MAX_ACTIONS(M));
    if (!acts[s] || schedule_build(opt->kind, P, M, s, acts[s], &nacts[s])) {
      strata_fail(err, errlen, "simulate: cannot build the %s schedule for stage %d",
           schedule_kind_name(opt->kind), s);
      goto free_all;
    }
    last_bwd[s] = -1;
    for (int i = 0; i < nacts[s]; i++)
      if (acts[s][i].op == SCHED_BWD) last_bwd[s] = i;
  }
  for (size_t i = 0; i < (size_t)N * M; i++) act_arr[i] = grad_arr[i] = -1;

  /* ---- pipeline phase: worklist of runnable ranks ---- */
  int nwork = 0;
  for (int r = N - 1; r >= 0; r--) work[nwork++] = r;
  while (nwork > 0) {
    int r = work[--nwork];
    rank_state_t *q = &st[r];
    int s = layout_stage_of(lay, r);
    const sim_stage_cost_t *c = &costs[s];
    q->blocked = 0;
    while (q->pc < nacts[s]) {
      const sched_action_t *a = &acts[s][q->pc];
      if (a->op == SCHED_FWD) {
        rec_fail |= record(res, rec, &ecap, r, SIM_EV_FWD, a->micro, q->t, q->t + c->fwd_s);
        q->t += c->fwd_s;
        q->busy += c->fwd_s;
      } else if (a->op == SCHED_BWD) {
        if (q->pc == last_bwd[s]) q->last_bwd_start = q->t;
        rec_fail |= record(res, rec, &ecap, r, SIM_EV_BWD, a->micro, q->t, q->t + c->bwd_s);
        q->t += c->bwd_s;
        q->busy += c->bwd_s;
        if (q->pc == last_bwd[s]) q->end_bwd = q->t;
      } else if (a->op == SCHED_SEND_ACT || a->op == SCHED_SEND_GRAD) {
        int fwd = a->op == SCHED_SEND_ACT;
        int dst = fwd ? r + 1 : r - 1;
        double lat, bw;
        device_link(dev, r, dst, &lat, &bw);
        double *free_t = fwd ? &q->link_next_free : &q->link_prev_free;
        double start = q->t > *free_t ? q->t : *free_t;
        double wire = c->act_bytes / bw;
        *free_t = start + wire;
        double *arr = fwd ? act_arr : grad_arr;
        arr[(size_t)dst * M + a->micro] = start + lat + wire;
        rec_fail |= record(res, rec, &ecap, r, fwd ? SIM_EV_SEND_ACT : SIM_EV_SEND_GRAD, a->micro,
                           start, start + lat + wire);
        if (st[dst].blocked) {
          st[dst].blocked = 0;
          work[nwork++] = dst;
        }
      } else { /* receive */
        double *arr = a->op == SCHED_RECV_ACT ? act_arr : grad_arr;
        double at = arr[(size_t)r * M + a->micro];
        if (at < 0) {
          q->blocked = 1;
          break;
        }
        if (at > q->t) q->t = at;
      }
      q->pc++;
    }
  }
  for (int r = 0; r < N; r++)
    if (st[r].pc < nacts[layout_stage_of(lay, r)]) {
      strata_fail(err, errlen, "simulate: the %s schedule deadlocked at rank %d (stage %d, action %d)",
           schedule_kind_name(opt->kind), r, layout_stage_of(lay, r), st[r].pc);
      goto free_all;
    }

  /* ---- data-parallel reduction per stage (one timeline per DP group) ----
   * The buckets of grad_sync.c: regions in report order, the tied wte skipped; the open bucket
   * starts when it reaches bucket_bytes, or when the next region is not contiguous (brk), and
   * the rest at the end of backward. ZeRO-1 has no buckets (reduce-scatter after backward). */
  for (int s = 0; s < P; s++) {
    const sim_stage_cost_t *c = &costs[s];
    for (int d = 0; d < D; d++) group[d] = layout_rank_of(lay, s, d);
    double free_t = 0, busy = 0, pend = 0;
    int bucket = 0, prev_brk = 0;
    for (int i = 0; D > 1 && !opt->zero && i <= c->nregions; i++) {
      int at_end = i == c->nregions;
      if (!at_end && c->regions[i].skip) continue;
      double off = at_end ? 0 : c->regions[i].ready_s;
      for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) { /* before region i: it is not contiguous with the open bucket, or end */
          if (!(pend > 0 && (prev_brk || at_end))) continue;
        } else {
          if (at_end) break;
          pend += c->regions[i].bytes;
          prev_brk = c->regions[i].brk;
          if (pend < opt->bucket_bytes) continue;
        }
        double ready = 0;
        for (int d = 0; d < D; d++) {
          const rank_state_t *q = &st[group[d]];
          double t = (opt->overlap && !at_end) ? q->last_bwd_start + off : q->end_bwd;
          if (t > q->end_bwd) t = q->end_bwd;
          if (t > ready) ready = t;
        }
        double start = ready > free_t ? ready : free_t;
        double dur = device_allreduce_time(dev, group, D, pend);
        free_t = start + dur;
        busy += dur;
        for (int d = 0; d < D && rec; d++)
          rec_fail |= record(res, rec, &ecap, group[d], SIM_EV_DP_REDUCE, bucket, start, free_t);
        bucket++;
        pend = 0;
      }
    }
    comm_done[s] = free_t;
    comm_busy[s] = busy;
  }
  /* after the buckets, per rank (grad_sync_finish's order): the tied wte sum between the first
   * and last stage, its DP all-reduce (no ZeRO), or the ZeRO-1 reduce-scatter, then the
   * gradient-norm all-reduce that synchronises the norm group */
  for (int r = 0; r < N; r++) {
    int s = layout_stage_of(lay, r);
    opt_start[r] = st[r].end_bwd > comm_done[s] ? st[r].end_bwd : comm_done[s];
  }
  for (int r = 0; r < N; r++) {
    int s = layout_stage_of(lay, r);
    final_t[r] = opt_start[r];
    if (costs[s].tied_bytes > 0 && P > 1) {
      int d = layout_replica_of(lay, r);
      int r0 = layout_rank_of(lay, 0, d), rl = layout_rank_of(lay, P - 1, d);
      double both = opt_start[r0] > opt_start[rl] ? opt_start[r0] : opt_start[rl];
      double tied = both + device_p2p_time(dev, r0, rl, costs[s].tied_bytes);
      rec_fail |= record(res, rec, &ecap, r, SIM_EV_TIED, -1, both, tied);
      final_t[r] = tied;
    }
  }
  for (int s = 0; s < P && D > 1; s++) {
    const sim_stage_cost_t *c = &costs[s];
    if (!opt->zero && !(c->tied_bytes > 0)) continue;
    double all = 0;
    for (int d = 0; d < D; d++) {
      group[d] = layout_rank_of(lay, s, d);
      if (final_t[group[d]] > all) all = final_t[group[d]];
    }
    double dur = opt->zero ? device_reduce_scatter_time(dev, group, D, c->param_bytes)
                           : device_allreduce_time(dev, group, D, c->tied_bytes);
    for (int d = 0; d < D; d++) {
      final_t[group[d]] = all + dur;
      rec_fail |= record(res, rec, &ecap, group[d], SIM_EV_DP_REDUCE, -1, all, all + dur);
    }
    comm_busy[s] += dur;
  }
  {
    int gn = opt->zero ? N : P, ng = opt->zero ? 1 : D;
    for (int gi = 0; gi < ng && gn > 1; gi++) {
      double all = 0;
      for (int i = 0; i < gn; i++) {
        norm_grp[i] = opt->zero ? i : layout_rank_of(lay, i, gi);
        if (final_t[norm_grp[i]] > all) all = final_t[norm_grp[i]];
      }
      double end = all + device_allreduce_time(dev, norm_grp, gn, SIM_NORM_BYTES);
      for (int i = 0; i < gn; i++) {
        /* waiting for the slowest rank of the group here is pipeline idle, not communication */
        norm_wait[norm_grp[i]] = all - final_t[norm_grp[i]];
        final_t[norm_grp[i]] = end;
      }
    }
  }
  for (int r = 0; r < N; r++) {
    int s = layout_stage_of(lay, r);
    opt_start[r] = final_t[r];
    final_t[r] = opt_start[r] + costs[s].opt_s;
    rec_fail |= record(res, rec, &ecap, r, SIM_EV_OPTIMIZER, -1, opt_start[r], final_t[r]);
  }
  if (opt->zero && D > 1)
    for (int s = 0; s < P; s++) {
      double all = 0;
      for (int d = 0; d < D; d++) {
        group[d] = layout_rank_of(lay, s, d);
        if (final_t[group[d]] > all) all = final_t[group[d]];
      }
      double end = all + device_allgather_time(dev, group, D, costs[s].param_bytes);
      for (int d = 0; d < D; d++) {
        final_t[group[d]] = end;
        rec_fail |= record(res, rec, &ecap, group[d], SIM_EV_ALLGATHER, -1, all, end);
      }
    }

  if (rec_fail) {
    strata_fail(err, errlen, "simulate: out of memory recording the timeline");
    goto free_all;
  }

  /* ---- results ---- */
  double step = 0;
  for (int r = 0; r < N; r++)
    if (final_t[r] > step) step = final_t[r];
  res->step_s = step;
  double flops = 0;
  for (int s = 0; s < P; s++) flops += (double)M * (costs[s].fwd_flops + costs[s].bwd_flops);
  res->model_flops = flops * D;
  res->tokens_per_s = step > 0 ? (double)lay->batch * lay->model.ctx / step : 0;
  res->mfu = step > 0 ? res->model_flops / (step * N * dev->peak_flops[opt->dtype]) : 0;
  for (int r = 0; r < N; r++) {
    int s = layout_stage_of(lay, r);
    sim_stage_result_t *sr = &res->stages[s];
    double opt_s = costs[s].opt_s;
    double exposed =
        (opt_start[r] - st[r].end_bwd - norm_wait[r]) + (final_t[r] - opt_start[r] - opt_s);
    double idle = step - st[r].busy - exposed - opt_s;
    sr->compute_s += st[r].busy / D;
    sr->exposed_comm_s += exposed / D;
    sr->idle_s += idle / D;
    sr->optimizer_s = opt_s;
    sr->comm_busy_s = comm_busy[s];
    sr->fwd_s = costs[s].fwd_s;
    sr->bwd_s = costs[s].bwd_s;
  }
  if (step > 0)
    for (int s = 0; s < P; s++) {
      res->compute_share += res->stages[s].compute_s / step / P;
      res->pipeline_idle_share += res->stages[s].idle_s / step / P;
      res->exposed_comm_share += res->stages[s].exposed_comm_s / step / P;
      res->optimizer_share += res->stages[s].optimizer_s / step / P;
    }
  rc = 0;
free_all:
  if (acts)
    for (int s = 0; s < P; s++) free(acts[s]);
  free(acts);
  free(nacts);
  free(last_bwd);
  free(st);
  free(act_arr);
  free(grad_arr);
  free(work);
  free(comm_done);
  free(comm_busy);
  free(opt_start);
  free(final_t);
  free(group);
  free(norm_grp);
  free(norm_wait);
  if (rc) sim_result_free(res);
  return rc;
}

int sim_simulate(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                 double capacity_bytes, sim_result_t *res, char *err, size_t errlen) {
  sim_stage_cost_t *costs = NULL;
  if (sim_build_costs(lay, dev, opt, &costs)) return strata_fail(err, errlen, "simulate: out of memory");
  int rc = sim_run(lay, dev, costs, opt, res, err, errlen);
  sim_costs_free(costs, lay->pp);
  if (rc) return rc;
  res->peak_mem_bytes = 0;
  for (int s = 0; s < lay->pp; s++) {
    memory_stage(lay, s, opt->kind, opt->zero, opt->bucket_bytes, &res->stages[s].mem);
    if (res->stages[s].mem.total_bytes > res->peak_mem_bytes)
      res->peak_mem_bytes = res->stages[s].mem.total_bytes, res->worst_stage = s;
  }
  res->fits = res->peak_mem_bytes <= capacity_bytes;
  return 0;
}
