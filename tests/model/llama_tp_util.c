/* llama_tp_util.c -- see llama_tp_util.h. */
#include "llama_tp_util.h"

#include <mpi.h>
#include <stdio.h>

#include "test_util.h"

coll_comm_t *llama_tp_test_begin(int *argc, char ***argv) {
  MPI_Init(argc, argv);
  coll_config_t cc = coll_config_default();
  coll_comm_t *comm = NULL;
  if (coll_comm_create(MPI_COMM_WORLD, &cc, &comm) != COLL_OK) {
    fprintf(stderr, "coll_comm_create failed\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  test_set_rank(coll_rank(comm));
  return comm;
}

int llama_tp_test_end(coll_comm_t *comm, const char *name) {
  int failed = test_failures, any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  coll_comm_destroy(comm);
  int rc = test_finish(name);
  MPI_Finalize();
  return any ? 1 : rc;
}

llama_model_t *llama_tp_test_model(const llama_config_t *cfg, int lb, int le, int t, int n, coll_comm_t *c,
                                   uint64_t seed, float scale) {
  char err[256];
  llama_model_t *m = NULL;
  llama_range_t r = {lb, le, lb == 0, le == cfg->layers, t, n};
  if (llama_create_range(cfg, r, &m, err, sizeof err) || llama_set_tp(m, c, err, sizeof err)) {
    test_fail(__FILE__, __LINE__, "model [%d, %d) rank %d of %d: %s", lb, le, t, n, err);
    llama_free(m);
    return NULL;
  }
  llama_init_params(m, seed);
  if (scale != 1.0f)
    for (size_t i = 0; i < m->num_params; i++) m->params[i] *= scale;
  return m;
}
