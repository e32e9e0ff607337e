/* The simulated clock carried on a tensor-parallel run (T x P x 1 ranks; mpirun -np 4 and 6:
 * T = 2 and 3, P = 2): every rank drives its stage's 1F1B schedule through the clock's hooks
 * as the trainer does (forward, backward, the clock messages of the pipeline sends, the tied
 * wte exchange, the T x P norm all-reduce the clock derives from the world, AdamW), and the
 * carried step, max over ranks, equals the event simulation's to 1e-9 relative; every
 * forward / backward the clock advances carries the stage's TP collectives. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "strata/coll.h"
#include "sim_clock.h"
#include "test_util.h"

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, world_n;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_n);
  test_set_rank(rank);
  enum { M = 4 };
  const int P = 2, T = world_n / P;
  layout_model_t m = {512, 48, 4, 6, 48}; /* V, ctx, L, H, C: ctx and H divisible by 2 and 3 */
  layout_t lay;
  char err[512];
  CHECK_EQ_INT(world_n % P, 0);
  CHECK_EQ_INT(layout_init(&lay, &m, world_n, T, P, 1, M, 2 * M, NULL, err, sizeof err), 0);
  device_t dev;
  CHECK_EQ_INT(device_builtin("trn1", &dev), 0);
  coll_config_t cfg = coll_config_default();
  coll_comm_t *world = NULL, *pipe = NULL, *dp = NULL, *tied = NULL;
  CHECK_EQ_INT(coll_comm_create(MPI_COMM_WORLD, &cfg, &world), COLL_OK);
  const int t = layout_tp_of(&lay, rank), s = layout_stage_of(&lay, rank);
  /* pipe and tied (P = 2: both stages): same replica and t, ranked by stage; dp: just us */
  CHECK_EQ_INT(coll_comm_split(world, t, s, &pipe), COLL_OK);
  CHECK_EQ_INT(coll_comm_split(world, t, s, &tied), COLL_OK);
  CHECK_EQ_INT(coll_comm_split(world, rank, 0, &dp), COLL_OK);
  for (int sp = 0; sp < 2; sp++)
    for (int rc = 0; rc < MEM_RECOMPUTE_COUNT; rc++) {
      sim_options_t o = sim_options_default();
      o.dtype = DEV_FP32;
      o.sequence_parallel = sp;
      o.recompute = (mem_recompute_t)rc;
      sim_clock_t sc;
      CHECK_EQ_INT(sim_clock_init_opt(&sc, &lay, &dev, &o, rank, err, sizeof err), 0);
      CHECK_EQ_INT(sim_clock_attach(&sc, world, pipe, dp, tied, err, sizeof err), 0);
      CHECK_TRUE(sc.carry && sc.costs[s].fwd_tp_s > 0 && sc.costs[s].bwd_tp_s > 0);
      sched_action_t acts[SCHED_MAX_ACTIONS(M)];
      int n = 0, last = -1;
      CHECK_EQ_INT(schedule_build(SCHED_1F1B, P, M, s, acts, &n), 0);
      for (int i = 0; i < n; i++)
        if (acts[i].op == SCHED_BWD) last = i;
      for (int i = 0; i < n; i++) {
        const sched_action_t *a = &acts[i];
        switch (a->op) {
        case SCHED_FWD: sim_clock_fwd(&sc); break;
        case SCHED_BWD:
          sim_clock_bwd_begin(&sc, i == last);
          sim_clock_bwd_end(&sc, i == last);
          break;
        case SCHED_SEND_ACT: sim_clock_send(&sc, 1, a->micro, 2 * a->micro + 1); break;
        case SCHED_SEND_GRAD: sim_clock_send(&sc, 0, a->micro, 2 * a->micro); break;
        case SCHED_RECV_ACT: sim_clock_recv(&sc, 1, 2 * a->micro + 1); break;
        case SCHED_RECV_GRAD: sim_clock_recv(&sc, 0, 2 * a->micro); break;
        }
      }
      sim_clock_sync_done(&sc);
      sim_clock_update_done(&sc);
      double mine = sim_clock_step(&sc), step = 0;
      MPI_Allreduce(&mine, &step, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      CHECK_NEAR(step, sc.res.step_s, 1e-9 * sc.res.step_s);
      CHECK_TRUE(sc.res.tp_comm_share > 0);
      sim_clock_free(&sc);
    }
  coll_comm_destroy(dp);
  coll_comm_destroy(tied);
  coll_comm_destroy(pipe);
  coll_comm_destroy(world);
  int rc = test_finish("sim_clock_tp_mpi");
  MPI_Finalize();
  return rc;
}
