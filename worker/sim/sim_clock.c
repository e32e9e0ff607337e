/* sim_clock.c -- device resolution with cross-rank agreement, and the per-rank simulated clock
 * of a training run (see sim_clock.h). */
#include "sim_clock.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "log.h"
#include "memory_model.h"
#include "util.h"

#define SIM_CLOCK_DEV_WORDS ((sizeof(device_t) + 3) / 4)
#define CAL_COLL_REPS 30 /* one-double all-reduces timed for the collective step latency */
#define CAL_SHARE_ROUNDS 3 /* rounds per number of computing ranks for the sharing rates */

/* A 0|1 STRATA_SIM_* switch (worker/base/env.c; strata refuses a bad value at start-up). */
static int env_switch(const char *name, int dflt) {
  int64_t v;
  env_read_int(name, dflt, &v, NULL, 0);
  return (int)v;
}

/* Modelled tensor-parallel communication of one layer, forward + backward, on device d: Megatron's
 * g and f all-reduces of the b x T x C activation (two each way), or with sequence parallelism
 * their reduce-scatter + all-gather pairs (sim/simulate.c's tp_comm for one layer). */
static double layer_tp_comm_s(const device_t *d, const layout_t *lay, int sp, int b, int T) {
  const int tp = lay->tp;
  if (tp <= 1) return 0;
  int *ranks = malloc(sizeof(int) * (size_t)tp);
  if (!ranks) return 0;
  for (int t = 0; t < tp; t++) ranks[t] = t; /* group 0: ranks 0..tp-1 */
  double n = (double)b * T * lay->model.dim * MEM_ELEM_BYTES;
  double one = sp ? device_reduce_scatter_time(d, ranks, tp, n) + device_allgather_time(d, ranks, tp, n)
                  : device_allreduce_time(d, ranks, tp, n);
  free(ranks);
  return 2 * 2 * one;
}

/* The cpu profile's fixed cost per op, measured on the job's own shape: every rank runs its
 * stage's transformer layers (micro-batch b x T; with tensor parallelism its own 1/tp of each
 * layer, with the real collectives over its TP group) forward through all, then backward, at
 * the same time as the others, as in the run (the caller's layer_time runs the model: this
 * folder does not), and takes the time per layer. The whole stage rather than one layer: a
 * layer run alone finds its weights and activations still in the caches when its backward
 * starts, as it does not in the run (measured on the scaling model, 4 layers on 2 replicas: 68-131
 * us per op from one layer, 164-218 us from the four; the step predicted -6..-20% against
 * -1..+7%). At most CAL_STACK_ROOF_S of roofline per timed run (at least one layer).
 * The overhead is what the slowest rank's time exceeds the layer's roofline and its modelled TP
 * communication by, spread over the layer's forward and backward ops (>= 0): the simulated
 * chips are alike, and a step waits for its slowest rank at every DP, TP and pipeline
 * exchange, so the chip they stand for runs at that rank's speed. Where ranks time-share the
 * cores (timeshare > 1) the layer is timed by each rank's CPU time, the work a core of its own
 * would do (resolve scales every figure by timeshare afterwards): timed by the wall clock, a
 * run of a few milliseconds against the scheduler's slices of about as long either keeps its
 * core or waits a slice, so the median lands on either mode (measured on 4 ranks over 2 cores,
 * micro-batch 2: wall medians 2.6-7.0 ms per rank, CPU time 2.3-2.9 ms, alone 2.5 ms). It carries what the roofline does not see: Strata's small ops do not reach it
 * (loop set-up, cache misses, the sgemm of a 32-wide matrix), ranks sharing the caches and
 * memory, and collectives of small arrays costing more than the ring model's steps. Skipped
 * (0) when the layer's roofline is above 20 ms (a large model: the overhead is negligible and
 * measuring it would be slow; *timed = 0). Collective over world; d must be the same on every
 * rank. */
#define CAL_STACK_ROOF_S 0.05 /* the most roofline one timed run of a stage's layers may have */

static int calibrate_op_overhead(device_t *d, const layout_t *lay, int sp, double timeshare,
                                 sim_layer_time_fn layer_time, coll_comm_t *world, int *timed) {
  const layout_model_t *lm = &lay->model;
  const int b = lay->micro_batch, T = lm->ctx, tp = lay->tp > 1 ? lay->tp : 1;
  layout_op_t ops[LAYOUT_MAX_OPS];
  int n = layout_layer_ops_tp(lm, b, T, tp, sp, ops);
  device_t d0 = *d;
  d0.op_overhead_s = 0;
  double roof = 0;
  for (int i = 0; i < n; i++)
    roof += device_op_time(&d0, DEV_FP32, ops[i].flops, ops[i].elems * MEM_ELEM_BYTES) +
            device_op_time(&d0, DEV_FP32, 2 * ops[i].flops, 2 * ops[i].elems * MEM_ELEM_BYTES);
  d->op_overhead_s = 0;
  *timed = 0;
  if (n == 0 || roof > 0.02 || !layer_time) return 0;
  *timed = 1;
  const int stage_layers = layout_stage_layers(lay, layout_stage_of(lay, coll_rank(world)));
  const int cap = env_switch("STRATA_SIM_STAGE_LAYERS", 1) ? (int)(CAL_STACK_ROOF_S / roof) : 1;
  const int k = stage_layers < cap ? stage_layers : cap > 1 ? cap : 1;
  coll_comm_t *group = NULL;
  if (tp > 1 && coll_comm_split(world, coll_rank(world) / tp, coll_rank(world), &group) != COLL_OK)
    return -1;
  double t = layer_time(lm, b, T, k, tp, sp, group, timeshare > 1);
  coll_comm_destroy(group);
  double msg[2] = {t >= 0 ? t : 0, t >= 0 ? 0 : 1};
  if (coll_allreduce(msg, msg, 2, COLL_F64, COLL_MAX, world) != COLL_OK || msg[1] != 0) return -1;
  double ov = (msg[0] - roof - layer_tp_comm_s(d, lay, sp, b, T)) / (2.0 * n);
  d->op_overhead_s = ov > 0 && isfinite(ov) ? ov : 0;
  return 0;
}

/* An all-reduce whose waiting ranks sleep between polls (coll_wait_for) rather than yield: a
 * rank that only yields stays runnable, and the kernel then balances the cores as if it
 * computed (two computing ranks may share one core while the other runs two pollers). Bounded
 * by the communicator's time-out (twice at most: a sleeping wait, then coll_wait's). */
static coll_result_t sleeping_allreduce(void *buf, size_t n, coll_dtype_t dt, coll_op_t op,
                                        coll_comm_t *c) {
  coll_request_t *req = NULL;
  coll_result_t rc = coll_iallreduce(buf, buf, n, dt, op, c, &req);
  int done = 0;
  for (double waited = 0; rc == COLL_OK && !done; waited += 1) {
    if (waited > coll_comm_config(c)->timeout_s) return coll_wait(req); /* times out, named */
    rc = coll_wait_for(req, 1.0, &done);
  }
  return rc;
}

/* Time-shared cores: how fast a computing rank runs while k of the H ranks sharing its host's
 * cores compute, k = 1..H (H <= DEV_SHARE_MAX measured). Host groups are H consecutive world
 * ranks; in round k the first k of every group run layer_time (this rank's whole layer) and
 * the others sleep in the group's all-reduce that collects the result. The rate is the CPU
 * time the k ranks got over k times the round's span on the host's clock (first start to last
 * end): the share of a core each got, less what the waiting ranks' polls, the scheduler's
 * switches and an uneven share took (a rank's own CPU time over its own wall time would
 * overstate it: the first to finish leaves the others a core). Averaged over the groups; the
 * median of CAL_SHARE_ROUNDS rounds per k, taken in turn (k = 1..H, then again) so that a
 * passing load spoils one of each.
 * Left unmeasured (share_ranks 0: the pipeline keeps the R / C slowing) when a call takes
 * under a millisecond (no real layer).
 * Collective over world. */
static int calibrate_share_rates(device_t *d, const layout_t *lay, int host_ranks,
                                 sim_layer_time_fn layer_time, coll_comm_t *world) {
  const int rank = coll_rank(world), size = coll_size(world);
  const int H = host_ranks < size ? host_ranks : size, local = rank % H;
  const int kmax = H < DEV_SHARE_MAX ? H : DEV_SHARE_MAX, groups = (size + H - 1) / H;
  const layout_model_t *lm = &lay->model;
  coll_comm_t *host = NULL;
  if (coll_comm_split(world, rank / H, rank, &host) != COLL_OK) return -1;
  double rate[DEV_SHARE_MAX + 1][CAL_SHARE_ROUNDS] = {{0}};
  int ok = 1, rc = 0;
  for (int i = 0; i < CAL_SHARE_ROUNDS * kmax && rc == 0; i++) {
    const int k = 1 + i % kmax;
    double cpu[2] = {0, 0}, span[2] = {-INFINITY, -INFINITY}; /* {CPU s, short calls}; {-start, end} */
    if (local < k) {
      double c0 = strata_thread_cpu_s(), w0 = strata_now_s();
      double t = layer_time(lm, lay->micro_batch, lm->ctx, 1, 1, 0, NULL, 0);
      double w1 = strata_now_s();
      cpu[0] = strata_thread_cpu_s() - c0;
      cpu[1] = t < 0 || w1 - w0 < 1e-3;
      span[0] = -w0, span[1] = w1;
    }
    double r[2] = {0, 0};
    if (sleeping_allreduce(cpu, 2, COLL_F64, COLL_SUM, host) != COLL_OK ||
        coll_allreduce(span, span, 2, COLL_F64, COLL_MAX, host) != COLL_OK) {
      rc = -1;
      break;
    }
    int n = size - rank / H * H < k ? size - rank / H * H : k; /* this group's computing ranks */
    if (local == 0 && span[0] + span[1] > 0) r[0] = cpu[0] / (n * (span[0] + span[1]));
    r[1] = local == 0 ? cpu[1] : 0;
    if (coll_allreduce(r, r, 2, COLL_F64, COLL_SUM, world) != COLL_OK) {
      rc = -1;
      break;
    }
    if (r[1] > 0) ok = 0;
    rate[k][i / kmax] = r[0] / groups;
  }
  coll_comm_destroy(host);
  if (rc || !ok) return rc;
  d->share_ranks = H;
  for (int k = 1; k <= kmax; k++) {
    strata_sort_doubles(rate[k], CAL_SHARE_ROUNDS);
    double m = rate[k][CAL_SHARE_ROUNDS / 2];
    d->share_rate[k] = m < 1 ? m : 1;
  }
  return 0;
}

int sim_clock_resolve_device(const char *spec, double device_mem, coll_comm_t *world, const layout_t *lay,
                             int T, int sp, sim_layer_time_fn layer_time, device_t *out, char *err,
                             size_t errlen) {
  const int rank = coll_rank(world), size = coll_size(world);
  memset(out, 0, sizeof *out);
  if (!spec || !strcmp(spec, "cpu")) {
    int32_t words[SIM_CLOCK_DEV_WORDS + 1];
    memset(words, 0, sizeof words);
    int32_t ok = 1;
    device_t d;
    memset(&d, 0, sizeof d);
    if (rank == 0 && device_calibrate_cpu(&d)) ok = 0;
    const int square_only = env_switch("STRATA_SIM_SQUARE_PEAK", 0);
    if (rank == 0 && ok && lay && !square_only) {
      int shapes[3 * DEVICE_GPT2_SHAPES];
      double weight[DEVICE_GPT2_SHAPES];
      const layout_model_t *m = &lay->model;
      int tp = lay->tp > 1 ? lay->tp : 1;
      int vocab = tp > 1 ? layout_padded_vocab(m->vocab, tp) : m->vocab;
      int n = device_gpt2_shapes(vocab, m->layers, m->heads, m->dim, lay->micro_batch, T, tp, shapes,
                                 weight);
      if (device_calibrate_cpu_shapes(&d, shapes, weight, n)) ok = 0;
    }
    if (coll_allreduce(&ok, &ok, 1, COLL_I32, COLL_MIN, world) != COLL_OK) {
      snprintf(err, errlen, "calibrating the cpu device profile: sharing rank 0's result failed: %s",
               coll_last_error(world));
      return -1;
    }
    if (!ok) {
      snprintf(err, errlen, "calibrating the cpu device profile failed: rank 0 could not time its matrix "
               "products (out of memory?); use --device trn2 or a JSON profile instead");
      return -1;
    }
    /* the link: three fits, keeping the lowest latency and highest bandwidth (a loaded
     * machine can stall a whole ping-pong series; every rank takes the same decisions, since
     * device_pingpong_coll shares rank 0's timings) */
    for (int k = 0; k < 3 && size >= 2; k++) {
      device_t e = d;
      if (device_calibrate_link(&e, device_pingpong_coll, world)) {
        snprintf(err, errlen, "calibrating the link between ranks failed: %s",
                 coll_last_error(world));
        return -1;
      }
      if (k == 0 || e.intra_lat_s < d.intra_lat_s) d.intra_lat_s = d.inter_lat_s = e.intra_lat_s;
      if (k == 0 || e.intra_Bps > d.intra_Bps) d.intra_Bps = e.intra_Bps, d.inter_Bps = e.inter_Bps;
    }
    /* the collectives library's real cost per collective step: a one-double all-reduce over
     * the world, the fastest of CAL_COLL_REPS, spread over the ring's 2(p-1) steps */
    const int coll_lat = env_switch("STRATA_SIM_COLL_LAT", 1); /* 0: the link latency (ideal ring) */
    if (size >= 2 && lay && coll_lat) {
      double best = INFINITY, x = 1;
      for (int i = 0; i < CAL_COLL_REPS; i++) {
        double t0 = strata_now_s();
        if (coll_allreduce(&x, &x, 1, COLL_F64, COLL_SUM, world) != COLL_OK) {
          snprintf(err, errlen, "calibrating the collective latency failed: %s",
                   coll_last_error(world));
          return -1;
        }
        double t = strata_now_s() - t0;
        if (t < best) best = t;
      }
      d.coll_lat_s = best / (2.0 * (size - 1));
    }
    /* time sharing: R ranks of this job on one host with C cores run like chips R/C times
     * slower (every rank also spins while it waits); scale every figure of the profile so
     * that every simulated time is multiplied by f = max(1, R / C) (STRATA_SIM_TIMESHARE=0:
     * dedicated cores assumed) */
    int local = coll_node_size(world);
    /* STRATA_SIM_HOST_RANKS: the job's ranks that really share these cores when MPI sees
     * separate hosts on one machine (tests/cluster's network namespaces: one hostname each) */
    int64_t host_ranks = 0;
    if (env_read_int("STRATA_SIM_HOST_RANKS", 0, &host_ranks, NULL, 0) == 0 && host_ranks > 0)
      local = (int)host_ranks;
    const int timeshare = env_switch("STRATA_SIM_TIMESHARE", 1);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double f = lay && cores > 0 && local > cores && timeshare ? (double)local / (double)cores : 1;
    /* the per-op overhead: every rank times a layer (rank 0's profile so far is shared first,
     * so that every rank takes the same decisions) */
    const int op_overhead = env_switch("STRATA_SIM_OP_OVERHEAD", 1); /* 0: roofline only */
    int timed = 0; /* a layer was timed (the sharing rates are measured the same way) */
    if (lay && op_overhead) {
      memcpy(words, &d, sizeof d);
      if (coll_broadcast(words, SIM_CLOCK_DEV_WORDS, COLL_I32, 0, world) != COLL_OK) {
        snprintf(err, errlen, "broadcasting the calibrated device failed: %s", coll_last_error(world));
        return -1;
      }
      memcpy(&d, words, sizeof d);
      if (calibrate_op_overhead(&d, lay, sp, f, layer_time, world, &timed)) {
        snprintf(err, errlen, "calibrating the cpu device profile's per-op overhead failed (use "
                 "STRATA_SIM_OP_OVERHEAD=0, --device trn2 or a JSON profile instead)");
        return -1;
      }
    }
    /* time sharing measured: the ranks sharing a host compute at once at the measured rates */
    const int share = env_switch("STRATA_SIM_SHARE", 1);
    if (lay && f > 1 && share && timed &&
        calibrate_share_rates(&d, lay, local, layer_time, world)) {
      snprintf(err, errlen, "measuring how the ranks share the cores failed: %s (use "
               "STRATA_SIM_SHARE=0 to slow every rank by ranks / cores instead)", coll_last_error(world));
      return -1;
    }
    if (rank == 0 && f > 1) {
      for (int i = 0; i < DEV_DTYPE_COUNT; i++) d.peak_flops[i] /= f;
      d.hbm_Bps /= f;
      d.reduce_Bps /= f;
      d.intra_Bps /= f;
      d.inter_Bps /= f;
      d.intra_lat_s *= f;
      d.inter_lat_s *= f;
      d.op_overhead_s *= f;
      d.coll_lat_s *= f;
      d.timeshare = f;
    }
    memcpy(words, &d, sizeof d);
    if (coll_broadcast(words, SIM_CLOCK_DEV_WORDS, COLL_I32, 0, world) != COLL_OK) {
      snprintf(err, errlen, "broadcasting the calibrated device failed: %s", coll_last_error(world));
      return -1;
    }
    memcpy(out, words, sizeof *out);
  } else if (device_resolve(spec, out, err, errlen)) {
    return -1;
  }
  if (device_mem < 0) {
    snprintf(err, errlen, "--device-mem must be positive (got %g)", device_mem);
    return -1;
  }
  if (device_mem > 0) out->hbm_bytes = device_mem;
  return 0;
}

int sim_clock_init_opt(sim_clock_t *sc, const layout_t *lay, const device_t *dev,
                       const sim_options_t *opt, int rank, char *err, size_t errlen) {
  memset(sc, 0, sizeof *sc);
  sc->dev = *dev;
  sc->rank = rank;
  sc->lay = *lay;
  sc->zero = opt->zero;
  sc->opt = *opt;
  sc->opt.overlap = 1;
  sc->opt.record_events = 1;
  return sim_simulate(lay, dev, &sc->opt, dev->hbm_bytes, &sc->res, err, errlen);
}

int sim_clock_init(sim_clock_t *sc, const layout_t *lay, const device_t *dev, sched_kind_t kind,
                   int zero, double bucket_bytes, int rank, char *err, size_t errlen) {
  sim_options_t o = sim_options_default();
  o.kind = kind;
  o.zero = zero;
  o.bucket_bytes = bucket_bytes;
  o.dtype = DEV_FP32; /* Strata computes in fp32 */
  return sim_clock_init_opt(sc, lay, dev, &o, rank, err, errlen);
}

/* A communicator of the same ranks as c, for the clock's messages alone (collective over c). It
 * uses the mpi transport whatever the run's: an 8-byte message goes out eagerly with MPI, while
 * over libfabric it would move only when its endpoint is polled, and the clock polls its own
 * only when it waits -- a sender busy in the real transfers would hold its peer's clock up. */
static int dup_comm(coll_comm_t *c, coll_comm_t **out) {
  *out = NULL;
  if (!c) return 0;
  coll_config_t cfg = *coll_comm_config(c);
  cfg.transport = COLL_TRANSPORT_MPI;
  cfg.chunk_bytes = 0; /* the mpi transport's own default */
  return coll_comm_create(coll_mpi_comm(c), &cfg, out) != COLL_OK ? -1 : 0;
}

static void reset_step(sim_clock_t *sc) {
  sc->t = sc->link_next_free = sc->link_prev_free = 0;
  sc->last_bwd_start = sc->end_bwd = sc->cur_ready = sc->comm_free = 0;
  sc->in_last_bwd = sc->cb = sc->nb = 0;
}

/* The clock's gradient-norm communicator (collective over world): ZeRO-1 the world; else the
 * replica's T x P model-parallel ranks -- its pipeline when T = 1, else split from the world
 * by replica (consecutive ranks, ordered by rank). */
static int norm_comm(sim_clock_t *sc, coll_comm_t *world, coll_comm_t *pipe) {
  if (sc->zero) return dup_comm(world, &sc->norm);
  if (sc->lay.tp == 1) return dup_comm(pipe, &sc->norm);
  coll_comm_t *w = NULL;
  if (dup_comm(world, &w)) return -1;
  int rc = coll_comm_split(w, sc->replica, sc->rank, &sc->norm) != COLL_OK ? -1 : 0;
  coll_comm_destroy(w);
  return rc;
}

int sim_clock_attach(sim_clock_t *sc, coll_comm_t *world, coll_comm_t *pipe, coll_comm_t *dp,
                     coll_comm_t *tied, char *err, size_t errlen) {
  const layout_t *lay = &sc->lay;
  const int T = lay->tp, P = lay->pp, D = lay->dp, M = lay->micro, N = lay->world;
  if (!env_switch("STRATA_SIM_CARRY", 1)) return 0; /* 0: replay only (to measure the overhead) */
  /* time-shared cores (share_ranks): a rank's speed depends on which of its host's ranks compute
   * at the moment, which one clock per rank cannot see; the step is the event simulation's */
  if (device_time_shared(&sc->dev)) return 0;
  sc->stage = layout_stage_of(lay, sc->rank);
  sc->replica = layout_replica_of(lay, sc->rank);
  sc->tp_rank = layout_tp_of(lay, sc->rank);
  if (sim_build_costs(lay, &sc->dev, &sc->opt, &sc->costs)) goto oom;
  sc->cap_b = sc->costs[sc->stage].nregions + 2;
  sc->b_ready = calloc((size_t)sc->cap_b, sizeof(double));
  sc->b_max = calloc((size_t)sc->cap_b, sizeof(double));
  sc->b_bytes = calloc((size_t)sc->cap_b, sizeof(double));
  sc->b_req = calloc((size_t)sc->cap_b, sizeof *sc->b_req);
  sc->send_val = calloc((size_t)2 * M, sizeof(double));
  sc->send_req = calloc((size_t)2 * M, sizeof *sc->send_req);
  sc->dp_ranks = calloc((size_t)D, sizeof(int));
  sc->norm_ranks = calloc((size_t)N, sizeof(int));
  if (!sc->b_ready || !sc->b_max || !sc->b_bytes || !sc->b_req || !sc->send_val || !sc->send_req ||
      !sc->dp_ranks || !sc->norm_ranks)
    goto oom;
  for (int d = 0; d < D; d++) sc->dp_ranks[d] = layout_rank(lay, sc->tp_rank, sc->stage, d);
  /* the gradient-norm group of grad_sync.c: the replica's T x P ranks (its pipeline when
   * T = 1), with ZeRO-1 the world */
  sc->nnorm = sc->zero ? N : T * P;
  for (int i = 0; i < sc->nnorm; i++) sc->norm_ranks[i] = sc->zero ? i : sc->replica * T * P + i;
  /* the same order on every rank: world-wide collective calls cannot cross */
  if (dup_comm(pipe, &sc->pipe) || dup_comm(dp, &sc->dp) || dup_comm(tied, &sc->tied) ||
      norm_comm(sc, world, pipe)) {
    snprintf(err, errlen, "simulated clock: cannot duplicate the communicators");
    return -1;
  }
  sc->step_min_s = INFINITY;
  sc->step_max_s = 0;
  reset_step(sc);
  sc->carry = 1;
  return 0;
oom:
  snprintf(err, errlen, "simulated clock: out of memory");
  return -1;
}

static int on(const sim_clock_t *sc) { return sc && sc->carry; }

/* The clock stops carrying after a failed exchange: every exchange sits next to a real transfer
 * that is itself bounded, and the real collective that follows reports a stuck peer; from then
 * on the step reports the replayed figure. */
static void stop_carrying(sim_clock_t *sc, coll_comm_t *c) {
  strata_warn("simulated clock: a peer's clock did not arrive (%s); reporting the replayed step time from now on",
              coll_last_error(c));
  sc->carry = 0;
}

/* Completes *r (bounded by the collectives' timeout, STRATA_COLL_TIMEOUT_S). 0 when complete. */
static int wait_req(sim_clock_t *sc, coll_request_t **r, coll_comm_t *c) {
  if (!*r) return 0;
  coll_result_t rc = coll_wait(*r);
  *r = NULL;
  if (rc == COLL_OK) return 0;
  stop_carrying(sc, c);
  return -1;
}

void sim_clock_fwd(sim_clock_t *sc) {
  if (on(sc)) sc->t += sc->costs[sc->stage].fwd_s;
}

void sim_clock_bwd_begin(sim_clock_t *sc, int last) {
  if (!on(sc) || !last) return;
  sc->last_bwd_start = sc->t;
  sc->in_last_bwd = 1;
  sc->cb = 0;
}

void sim_clock_bwd_end(sim_clock_t *sc, int last) {
  if (!on(sc)) return;
  sc->t += sc->costs[sc->stage].bwd_s;
  if (last) {
    sc->end_bwd = sc->t;
    sc->cur_ready = sc->t; /* a bucket started after backward (grad_sync_finish) */
    sc->in_last_bwd = 0;
  }
}

void sim_clock_send(sim_clock_t *sc, int fwd, int micro, int tag) {
  if (!on(sc)) return;
  double t0 = strata_now_s();
  /* the same tensor-parallel rank of the neighbour stage, same replica */
  int dst = fwd ? sc->rank + sc->lay.tp : sc->rank - sc->lay.tp;
  double lat, bw;
  sim_pipe_link(&sc->lay, &sc->dev, sc->rank, dst, &lat, &bw);
  double *free_t = fwd ? &sc->link_next_free : &sc->link_prev_free;
  double start = sc->t > *free_t ? sc->t : *free_t;
  double wire = sc->costs[sc->stage].act_bytes / bw;
  *free_t = start + wire;
  int k = (fwd ? 0 : sc->lay.micro) + micro;
  if (wait_req(sc, &sc->send_req[k], sc->pipe)) return;
  sc->send_val[k] = start + lat + wire;
  if (coll_isend(&sc->send_val[k], 1, COLL_F64, sc->stage + (fwd ? 1 : -1), tag, sc->pipe, &sc->send_req[k]) !=
      COLL_OK) {
    sc->send_req[k] = NULL;
    stop_carrying(sc, sc->pipe);
  }
  sc->overhead_s += strata_now_s() - t0;
}

void sim_clock_recv(sim_clock_t *sc, int fwd, int tag) {
  if (!on(sc)) return;
  double t0 = strata_now_s(), at = 0;
  if (coll_recv(&at, 1, COLL_F64, sc->stage + (fwd ? -1 : 1), tag, sc->pipe) != COLL_OK) stop_carrying(sc, sc->pipe);
  else if (at > sc->t) sc->t = at;
  sc->overhead_s += strata_now_s() - t0;
}

void sim_clock_grad_ready(sim_clock_t *sc) {
  if (!on(sc) || !sc->in_last_bwd) return;
  const sim_stage_cost_t *c = &sc->costs[sc->stage];
  if (sc->cb >= c->nregions) return;
  /* as simulate.c: the region's offset into the last backward, no later than its end */
  double end = sc->last_bwd_start + c->bwd_s, t = sc->last_bwd_start + c->regions[sc->cb++].ready_s;
  sc->cur_ready = t > end ? end : t;
}

void sim_clock_bucket(sim_clock_t *sc, double bytes) {
  if (!on(sc) || !sc->dp || sc->nb >= sc->cap_b) return;
  double t0 = strata_now_s();
  int b = sc->nb++;
  sc->b_ready[b] = sc->cur_ready;
  sc->b_bytes[b] = bytes;
  sc->b_max[b] = sc->cur_ready;
  if (coll_iallreduce(&sc->b_ready[b], &sc->b_max[b], 1, COLL_F64, COLL_MAX, sc->dp, &sc->b_req[b]) != COLL_OK) {
    sc->b_req[b] = NULL;
    stop_carrying(sc, sc->dp);
  }
  sc->overhead_s += strata_now_s() - t0;
}

/* clock = max over comm of the clock (the collective's synchronisation) + dur. */
static void sync_max(sim_clock_t *sc, coll_comm_t *comm, double dur) {
  if (!sc->carry) return;
  double v = sc->t;
  if (comm && coll_allreduce(&sc->t, &v, 1, COLL_F64, COLL_MAX, comm) != COLL_OK) {
    stop_carrying(sc, comm);
    return;
  }
  sc->t = v + dur;
}

void sim_clock_sync_done(sim_clock_t *sc) {
  if (!on(sc)) return;
  double t0 = strata_now_s();
  const layout_t *lay = &sc->lay;
  const sim_stage_cost_t *c = &sc->costs[sc->stage];
  const int P = lay->pp, D = lay->dp;
  /* the buckets, in start order on the DP group's link timeline; the part of each that runs
   * beside backward slows it by the device's overlap_slowdown (as simulate.c's sim_bucket; the
   * replicas' clocks are equal, so this rank's end of backward is the group's) */
  double interf = 0;
  for (int b = 0; b < sc->nb; b++) {
    if (wait_req(sc, &sc->b_req[b], sc->dp)) return;
    double start = sc->b_max[b] > sc->comm_free ? sc->b_max[b] : sc->comm_free;
    sc->comm_free = start + device_allreduce_time(&sc->dev, sc->dp_ranks, D, sc->b_bytes[b]);
    double ov = (sc->comm_free < sc->end_bwd ? sc->comm_free : sc->end_bwd) - start;
    if (ov > 0 && sc->opt.interference) interf += sc->dev.overlap_slowdown * ov;
  }
  sc->t += interf;
  if (sc->comm_free > sc->t) sc->t = sc->comm_free;
  if (c->tied_bytes > 0 && P > 1) {
    int r0 = layout_rank(lay, sc->tp_rank, 0, sc->replica),
        rl = layout_rank(lay, sc->tp_rank, P - 1, sc->replica);
    sync_max(sc, sc->tied, device_p2p_time(&sc->dev, r0, rl, c->tied_bytes));
  }
  if (D > 1 && sc->zero)
    sync_max(sc, sc->dp, device_reduce_scatter_time(&sc->dev, sc->dp_ranks, D, c->param_bytes));
  else if (D > 1 && c->tied_bytes > 0)
    sync_max(sc, sc->dp, device_allreduce_time(&sc->dev, sc->dp_ranks, D, c->tied_bytes));
  if (sc->nnorm > 1)
    sync_max(sc, sc->norm,
             device_allreduce_time(&sc->dev, sc->norm_ranks, sc->nnorm, SIM_NORM_BYTES));
  sc->overhead_s += strata_now_s() - t0;
}

void sim_clock_update_done(sim_clock_t *sc) {
  if (!on(sc)) return;
  double t0 = strata_now_s();
  const sim_stage_cost_t *c = &sc->costs[sc->stage];
  sc->t += c->opt_s;
  if (sc->zero && sc->lay.dp > 1)
    sync_max(sc, sc->dp,
             device_allgather_time(&sc->dev, sc->dp_ranks, sc->lay.dp, c->gather_bytes));
  sc->overhead_s += strata_now_s() - t0;
}

double sim_clock_step(sim_clock_t *sc) {
  double s = sc->res.step_s;
  if (sc->carry) {
    s = sc->t;
    double t0 = strata_now_s();
    for (int i = 0; i < 2 * sc->lay.micro && sc->carry; i++) wait_req(sc, &sc->send_req[i], sc->pipe);
    sc->overhead_s += strata_now_s() - t0;
    if (s < sc->step_min_s) sc->step_min_s = s;
    if (s > sc->step_max_s) sc->step_max_s = s;
    reset_step(sc);
  }
  sc->clock_s += s;
  sc->steps++;
  return s;
}

void sim_clock_report(sim_clock_t *sc, coll_comm_t *world, int quiet) {
  if (!sc->carry || sc->steps == 0) return;
  /* max over ranks of: the largest step, a rank's spread between its steps, the overhead */
  double v[3] = {sc->step_max_s, sc->step_max_s - sc->step_min_s, sc->overhead_s / sc->steps};
  if (coll_allreduce(v, v, 3, COLL_F64, COLL_MAX, world) != COLL_OK) return;
  if (coll_rank(world) == 0 && !quiet)
    strata_info("simulated clock carried on the run: step %.17g s (max over ranks; %s%.3g s), "
                "event simulation %.17g s, relative difference %.3g; clock exchanges %.3g ms/step",
                v[0], v[1] == 0 ? "the same every step, spread " : "steps differ on a rank by ",
                v[1], sc->res.step_s, fabs(v[0] - sc->res.step_s) / sc->res.step_s, v[2] * 1e3);
}

void sim_clock_free(sim_clock_t *sc) {
  if (!sc) return;
  sim_result_free(&sc->res);
  if (sc->costs) sim_costs_free(sc->costs, sc->lay.pp);
  sc->costs = NULL;
  if (sc->carry) { /* the communicators exist only once attached */
    /* no waiting here (an error path may have left a peer behind): what is still pending is
     * cancelled with its communicator */
    for (int i = 0; i < 2 * sc->lay.micro; i++)
      if (sc->send_req[i]) coll_cancel(sc->send_req[i]);
    for (int b = 0; b < sc->cap_b; b++)
      if (sc->b_req[b]) coll_cancel(sc->b_req[b]);
    coll_comm_t **cs[4] = {&sc->pipe, &sc->dp, &sc->tied, &sc->norm};
    for (int i = 0; i < 4; i++) {
      coll_comm_destroy(*cs[i]);
      *cs[i] = NULL;
    }
  }
  free(sc->b_ready);
  free(sc->b_max);
  free(sc->b_bytes);
  free(sc->b_req);
  free(sc->send_val);
  free(sc->send_req);
  free(sc->dp_ranks);
  free(sc->norm_ranks);
  sc->b_ready = sc->b_max = sc->b_bytes = sc->send_val = NULL;
  sc->b_req = sc->send_req = NULL;
  sc->dp_ranks = sc->norm_ranks = NULL;
  sc->carry = 0;
}

/* ---- the runtime's hooks (step_hooks.h) ---- */
static void hk_fwd(void *c) { sim_clock_fwd(c); }
static void hk_bwd_begin(void *c, int last) { sim_clock_bwd_begin(c, last); }
static void hk_bwd_end(void *c, int last) { sim_clock_bwd_end(c, last); }
static void hk_send(void *c, int fwd, int micro, int tag) { sim_clock_send(c, fwd, micro, tag); }
static void hk_recv(void *c, int fwd, int tag) { sim_clock_recv(c, fwd, tag); }
static void hk_grad_ready(void *c) { sim_clock_grad_ready(c); }
static void hk_bucket(void *c, double bytes) { sim_clock_bucket(c, bytes); }

void sim_clock_step_hooks(sim_clock_t *sc, step_hooks_t *h) {
  h->clock_ctx = sc;
  h->clock_fwd = hk_fwd;
  h->clock_bwd_begin = hk_bwd_begin;
  h->clock_bwd_end = hk_bwd_end;
  h->clock_send = hk_send;
  h->clock_recv = hk_recv;
  h->clock_grad_ready = hk_grad_ready;
  h->clock_bucket = hk_bucket;
}
