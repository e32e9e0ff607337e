/* Two ranks: device_calibrate_link over the collectives library (device_pingpong_coll) fits a
 * positive latency and bandwidth and every rank gets the same figures. */
#include <mpi.h>
#include <stdio.h>

#include "strata/coll.h"
#include "device.h"
#include "test_util.h"

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
    coll_comm_destroy(world);
  }
  int rc = test_finish("sim_calibrate_link_mpi");
  MPI_Finalize();
  return rc;
}
