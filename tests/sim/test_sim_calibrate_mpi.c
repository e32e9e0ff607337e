/* Two ranks: device_calibrate_link over the collectives library (device_pingpong_coll) fits a
 * positive latency and bandwidth and every rank gets the same figures; and the cpu profile's
 * per-op overhead comes from the layer time taken by the wall clock on dedicated cores, by CPU
 * time where the ranks time-share the cores (STRATA_SIM_HOST_RANKS), not divided by the
 * time-sharing factor then, and how fast a computing rank runs while 1 or 2 of them compute
 * (the sharing rates; none on dedicated cores or with STRATA_SIM_SHARE=0). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "strata/coll.h"
#include "device.h"
#include "sim_clock.h"
#include "test_util.h"

#define FAKE_LAYER_S 0.5 /* far above the tiny layer's roofline: the overhead is nearly all of it */
#define FAKE_BUSY_S 0.01

static int seen_cpu_time = -1; /* the cpu_time flag of the first call (the overhead's) */
static int seen_layers = -1;   /* and its layer count */

/* Claims FAKE_LAYER_S, having computed for FAKE_BUSY_S of wall time (the sharing rates are the
 * CPU time of the call over its wall time). */
static double fake_layer_time(const layout_model_t *m, int b, int T, int layers, int tp, int sp,
                              coll_comm_t *tp_comm, int cpu_time) {
  (void)m, (void)b, (void)T, (void)tp, (void)sp, (void)tp_comm;
  if (seen_cpu_time < 0) seen_cpu_time = cpu_time, seen_layers = layers;
  for (double t0 = MPI_Wtime(); MPI_Wtime() - t0 < FAKE_BUSY_S;) continue; /* the clock reads are the work */
  return FAKE_LAYER_S;
}

/* Resolves the cpu profile of an L-layer model on 2 ranks (P stages, 2 / P replicas) with
 * STRATA_SIM_HOST_RANKS = host ranks, and checks the flag layer_time got, that it was asked to
 * time the rank's whole stage, the time-sharing factor and the overhead: f x (FAKE_LAYER_S -
 * roofline) / (2 ops), the roofline under 0.1% of it. */
static void check_overhead(coll_comm_t *world, long host_ranks, int want_cpu_time, double want_f,
                           int L, int P) {
  char v[32], err[256];
  snprintf(v, sizeof v, "%ld", host_ranks);
  setenv("STRATA_SIM_HOST_RANKS", v, 1);
  layout_model_t m = {64, 16, L, 2, 32, 0, 0, 0, 0};
  layout_t lay;
  CHECK_EQ_INT(layout_init(&lay, &m, 2, 1, P, 2 / P, 1, 2, NULL, err, sizeof err), 0);
  device_t d;
  seen_cpu_time = -1;
  CHECK_EQ_INT(sim_clock_resolve_device("cpu", 0, world, &lay, 16, 0, fake_layer_time, &d, err, sizeof err), 0);
  CHECK_EQ_INT(seen_cpu_time, want_cpu_time);
  CHECK_EQ_INT(seen_layers, layout_stage_layers(&lay, layout_stage_of(&lay, coll_rank(world))));
  CHECK_NEAR(d.timeshare > 1 ? d.timeshare : 1, want_f, 1e-12);
  layout_op_t ops[LAYOUT_MAX_OPS];
  int n = layout_layer_ops_tp(&m, 1, 16, 1, 0, ops);
  double want = want_f * FAKE_LAYER_S / (2.0 * n);
  CHECK_NEAR(d.op_overhead_s, want, 1e-3 * want);
  /* time-shared: the sharing rates of 1 and 2 computing ranks (this job's 2 ranks), each the
   * part of a core the computing ranks got, so in (0, 1]; dedicated cores: none */
  if (want_f > 1) {
    CHECK_EQ_INT(d.share_ranks, 2);
    for (int k = 1; k <= 2; k++) CHECK_TRUE(d.share_rate[k] > 0 && d.share_rate[k] <= 1);
    CHECK_TRUE(d.share_rate[3] == 0);
    setenv("STRATA_SIM_SHARE", "0", 1); /* the R / C slowing alone */
    CHECK_EQ_INT(sim_clock_resolve_device("cpu", 0, world, &lay, 16, 0, fake_layer_time, &d, err, sizeof err), 0);
    unsetenv("STRATA_SIM_SHARE");
  }
  CHECK_EQ_INT(d.share_ranks, 0);
  unsetenv("STRATA_SIM_HOST_RANKS");
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  test_set_rank(rank);
  coll_config_t cfg = coll_config_default();
  coll_comm_t *world = NULL;
  CHECK_EQ_INT(coll_comm_create(MPI_COMM_WORLD, &cfg, &world), COLL_OK);
  device_t d;
  CHECK_EQ_INT(device_calibrate_cpu(&d), 0);
  if (world) {
    CHECK_EQ_INT(device_calibrate_link(&d, device_pingpong_coll, world), 0);
    /* loopback on one machine: plausible figures only (best of 50 round trips, so a loaded
     * 2-core machine still stays far below 50 ms), bandwidth above 10 MB/s */
    CHECK_TRUE(d.intra_lat_s >= 0 && d.intra_lat_s < 5e-2);
    CHECK_TRUE(d.intra_Bps > 1e7);
    double mine[2] = {d.intra_lat_s, d.intra_Bps}, r0[2] = {mine[0], mine[1]};
    MPI_Bcast(r0, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    CHECK_NEAR(mine[0], r0[0], 0);
    CHECK_NEAR(mine[1], r0[1], 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    check_overhead(world, 1, 0, 1.0, 1, 1);         /* dedicated cores: the wall clock */
    check_overhead(world, 2 * cores, 1, 2.0, 1, 1); /* twice the cores: CPU time, f = 2 */
    check_overhead(world, 1, 0, 1.0, 3, 1);         /* 3 layers on each replica */
    check_overhead(world, 1, 0, 1.0, 5, 2);         /* 5 layers over 2 stages: each its own */
    coll_comm_destroy(world);
  }
  int rc = test_finish("sim_calibrate_mpi");
  MPI_Finalize();
  return rc;
}
