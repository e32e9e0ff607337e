/* llama_tp_util.h -- what the Llama tensor-parallel tests (model_llama_tp, infer_llama_kv_tp)
 * share: MPI_COMM_WORLD as the tensor-parallel group, and a model of layers [lb, le) on
 * tensor-parallel rank t of n with llama_init_params's weights. */
#ifndef STRATA_TEST_LLAMA_TP_UTIL_H
#define STRATA_TEST_LLAMA_TP_UTIL_H

#include <stdint.h>

#include "llama.h"
#include "strata/coll.h"

/* MPI_Init and a communicator over every rank (the job aborts if it cannot be made); sets the
 * test's rank for test_util's messages. */
coll_comm_t *llama_tp_test_begin(int *argc, char ***argv);

/* Destroys comm and finishes the test: non-zero when a check failed on any rank. */
int llama_tp_test_end(coll_comm_t *comm, const char *name);

/* Layers [lb, le) of tensor-parallel rank t of n (the embedding with lb == 0, the head with
 * le == cfg->layers), its weights from llama_init_params(seed) times scale, its tensor-parallel
 * communicator c (NULL for n == 1). NULL after a test failure naming the error. */
llama_model_t *llama_tp_test_model(const llama_config_t *cfg, int lb, int le, int t, int n, coll_comm_t *c,
                                   uint64_t seed, float scale);

#endif
