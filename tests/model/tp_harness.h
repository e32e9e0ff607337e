/* tp_harness.h -- a small randomly initialised GPT-2 and one training step on it, for the tensor
 * parallelism and recomputation tests (test_gpt2_tp.c under mpirun, test_gpt2_tp_units.c in
 * one process): the same tokens, targets and weights (gpt2_init_params from one seed) on every
 * layout, so any two layouts can be compared. */
#ifndef STRATA_TEST_TP_HARNESS_H
#define STRATA_TEST_TP_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"

#define TPX_SEED 1234

typedef struct {
  gpt2_config_t cfg;
  int B, T;
  int32_t *tokens, *targets; /* (B, T), ids spread over the whole vocabulary */
} tpx_case_t;

/* V = 300 (padding at every tp > 1), ctx 32, L = 2, the given heads and width; B x T tokens. */
void tpx_case(tpx_case_t *c, int heads, int dim, int B, int T);
void tpx_case_free(tpx_case_t *c);

/* A shard of c's model for layers [lb, le) on TP rank t of tp (communicator comm, may be NULL
 * at tp = 1), sequence parallelism sp, recompute mode, weights from TPX_SEED. NULL on failure
 * (reported as a test failure). */
gpt2_model_t *tpx_model(const tpx_case_t *c, int lb, int le, int has_embed, int has_head, int t, int tp,
                        coll_comm_t *comm, int sp, gpt2_recompute_t mode);

/* One forward + backward (gradients zeroed first) through a chain of nshard shards of one rank
 * (shard 0 has the embedding, the last the head). Returns the loss (NaN on failure); when
 * logits is not NULL it receives the head's local logits (B*T rows of gpt2_local_vocab). */
float tpx_step(gpt2_model_t **sh, int nshard, const tpx_case_t *c, float *logits);

/* |a - b| <= tol * (1 + |b|) for all n; reports the worst element of `what` if not. */
void tpx_check_close(const char *what, const float *a, const float *b, size_t n, double tol);

/* Runs the same step with recompute none, selective and full on this layout (one shard, or two
 * split at L/2) and checks that losses and every gradient are bit-identical to none's. */
void tpx_check_recompute(const tpx_case_t *c, int t, int tp, coll_comm_t *comm, int sp, int nshard);

#endif
