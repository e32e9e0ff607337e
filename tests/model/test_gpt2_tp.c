/* test_gpt2_tp.c -- tensor parallelism over every rank of the job (tp = np; run at np 2, 3, 4):
 * the same weights split tp ways compute what tp = 1 computes.
 *  - loss within 1e-5 relative, assembled logits within 1e-5, and every parameter gradient,
 *    gathered with gpt2_tensor_unslice, within 1e-4 abs/rel of tp = 1's (each rank also runs the
 *    tp = 1 model); replicated gradients bit-identical on every TP rank; with one shard and
 *    with a pipeline split into two shards (the first without the head: wte's two copies summed);
 *  - the same with sequence parallelism;
 *  - recompute selective and full: losses and gradients bit-identical to none on this layout;
 *  - gpt2_forward_kv: assembled logits within 1e-5 of tp = 1's over two calls of two sequences;
 *  - bad input: sequence parallelism with T % tp != 0, a missing communicator.
 * np 3 uses 6 heads of width 8 (C = 48) and T = 18; np 2 and 4 use 4 heads (C = 32) and T = 16. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "strata/coll.h"
#include "test_util.h"
#include "tp_harness.h"

#define TOL_LOSS_REL 1e-5
#define TOL_LOGITS 1e-5
#define TOL_GRAD 1e-4

static coll_comm_t *comm;
static int tp, rank;

/* The logical gradient (or parameter) of tensor t of m, assembled from every TP rank's part into
 * a new array. A replicated tensor must be bit-identical on every rank. */
static float *assemble(const gpt2_tensor_t *t, const float *base) {
  float *parts = malloc(sizeof(float) * t->numel * tp), *full = calloc(t->full_numel, sizeof(float));
  CHECK_EQ_INT(coll_allgather(base + t->offset, parts, t->numel, COLL_F32, comm), COLL_OK);
  for (int q = 0; q < tp; q++) {
    CHECK_EQ_INT(gpt2_tensor_unslice(t, q, parts + (size_t)q * t->numel, full), 0);
    test_checks++;
    if (t->replicated && memcmp(parts, parts + (size_t)q * t->numel, sizeof(float) * t->numel) != 0)
      test_fail(__FILE__, __LINE__, "replicated %s differs between TP ranks 0 and %d", t->name, q);
  }
  free(parts);
  return full;
}

/* Local logits (rows, Vl) of every TP rank -> (rows, V) in tp = 1's vocabulary order. */
static float *assemble_logits(const gpt2_model_t *m, const float *local, size_t rows) {
  size_t nl = rows * (size_t)gpt2_local_vocab(m);
  float *gathered = malloc(sizeof(float) * nl * tp), *full = malloc(sizeof(float) * rows * m->cfg.vocab);
  CHECK_EQ_INT(coll_allgather(local, gathered, nl, COLL_F32, comm), COLL_OK);
  gpt2_logits_assemble(m, gathered, rows, full);
  free(gathered);
  return full;
}

/* One step on this layout (one shard, or two split at layer 1) against the tp = 1 model ref. */
static void check_layout(const tpx_case_t *c, gpt2_model_t *ref, float ref_loss, const float *ref_logits, int sp,
                         int nshard) {
  const int L = c->cfg.layers;
  const size_t N = (size_t)c->B * c->T;
  char what[128];
  gpt2_model_t *sh[2] = {0};
  for (int s = 0; s < nshard; s++) {
    int lb = nshard == 1 ? 0 : s == 0 ? 0 : 1, le = nshard == 1 ? L : s == 0 ? 1 : L;
    sh[s] = tpx_model(c, lb, le, s == 0, s == nshard - 1, rank, tp, comm, sp, GPT2_RECOMPUTE_NONE);
    if (!sh[s]) return;
  }
  const gpt2_model_t *head = sh[nshard - 1];
  const int Vl = gpt2_local_vocab(head);
  CHECK_EQ_INT(gpt2_sequence_parallel(head), sp);
  CHECK_EQ_INT(gpt2_stream_rows(head, c->B, c->T), sp ? (int)N / tp : (int)N);
  CHECK_EQ_INT(Vl * tp, gpt2_padded_vocab(c->cfg.vocab, tp));
  CHECK_EQ_INT(gpt2_vocab_offset(head), rank * Vl);
  float *logits = malloc(sizeof(float) * N * Vl);
  float loss = tpx_step(sh, nshard, c, logits);
  if (rank == 0) printf("tp %d sp %d shards %d: loss %.7f (tp 1: %.7f)\n", tp, sp, nshard, loss, ref_loss);
  CHECK_NEAR(loss, ref_loss, TOL_LOSS_REL * fabs(ref_loss));
  int pad_ok = 1; /* the local columns past the vocabulary are -INFINITY */
  for (size_t i = 0; i < N; i++)
    for (int j = 0; j < Vl; j++)
      if (gpt2_vocab_offset(head) + j >= c->cfg.vocab && logits[i * Vl + j] != -INFINITY) pad_ok = 0;
  CHECK_TRUE(pad_ok);
  float *full_logits = assemble_logits(head, logits, N);
  snprintf(what, sizeof what, "logits (tp %d, sp %d, %d shards)", tp, sp, nshard);
  tpx_check_close(what, full_logits, ref_logits, N * c->cfg.vocab, TOL_LOGITS);
  free(full_logits);
  free(logits);

  const gpt2_tensor_t *rwte = gpt2_find_tensor(ref, "wte.weight");
  float *wte_sum = calloc(rwte->full_numel, sizeof(float));
  int compared = 0;
  for (int s = 0; s < nshard; s++)
    for (int i = 0; i < sh[s]->num_tensors; i++) {
      const gpt2_tensor_t *t = &sh[s]->tensors[i], *rt = gpt2_find_tensor(ref, t->name);
      CHECK_TRUE(rt != NULL && rt->numel == t->full_numel && t->tp_size == tp);
      if (!rt) continue;
      float *p = assemble(t, sh[s]->params), *g = assemble(t, sh[s]->grads);
      test_checks++;
      if (memcmp(p, ref->params + rt->offset, sizeof(float) * rt->numel) != 0)
        test_fail(__FILE__, __LINE__, "parameter %s assembled from the TP ranks is not tp = 1's", t->name);
      if (strcmp(t->name, "wte.weight") == 0) {
        for (size_t j = 0; j < rt->numel; j++) wte_sum[j] += g[j];
      } else {
        snprintf(what, sizeof what, "gradient %s (tp %d, sp %d, %d shards)", t->name, tp, sp, nshard);
        tpx_check_close(what, g, ref->grads + rt->offset, rt->numel, TOL_GRAD);
        compared++;
      }
      free(p);
      free(g);
    }
  CHECK_EQ_INT(compared, ref->num_tensors - 1);
  snprintf(what, sizeof what, "gradient wte.weight (tp %d, sp %d, %d shards)", tp, sp, nshard);
  tpx_check_close(what, wte_sum, ref->grads + rwte->offset, rwte->numel, TOL_GRAD);
  free(wte_sum);
  for (int s = 0; s < nshard; s++) gpt2_free(sh[s]);
}

/* Two sequences, two calls each ([10 new, 7 new] then [6 new, 1 new]); the second call asks for
 * the last position only. m's assembled logits against those of the tp = 1 model ref. */
static void check_kv(const tpx_case_t *c, gpt2_model_t *ref, gpt2_model_t *m) {
  const int nl = c->cfg.layers, cap = c->cfg.ctx, V = c->cfg.vocab;
  gpt2_model_t *models[2] = {ref, m};
  float *cache[2][4];
  for (int k = 0; k < 2; k++)
    for (int j = 0; j < 4; j++)
      cache[k][j] = calloc((size_t)nl * cap * gpt2_local_dim(models[k]), sizeof(float));
  const int n_new[2][2] = {{10, 7}, {6, 1}};
  int pos0[2] = {0, 0};
  char err[256];
  for (int call = 0; call < 2; call++) {
    int32_t tokens[32];
    int N = 0;
    for (int q = 0; q < 2; q++)
      for (int i = 0; i < n_new[call][q]; i++) tokens[N++] = c->tokens[q * c->T + pos0[q] + i];
    int last_only = call == 1, rows = last_only ? 2 : N;
    float *out[2];
    for (int k = 0; k < 2; k++) {
      gpt2_kv_seq_t seqs[2];
      for (int q = 0; q < 2; q++)
        seqs[q] = (gpt2_kv_seq_t){n_new[call][q], pos0[q], cache[k][2 * q], cache[k][2 * q + 1], cap};
      out[k] = malloc(sizeof(float) * rows * gpt2_local_vocab(models[k]));
      int rc = gpt2_forward_kv(models[k], seqs, 2, tokens, NULL, out[k], last_only, err, sizeof err);
      CHECK_EQ_INT(rc, 0);
      if (rc) printf("gpt2_forward_kv: %s\n", err);
    }
    float *full = assemble_logits(m, out[1], rows);
    char what[64];
    snprintf(what, sizeof what, "forward_kv logits, call %d (tp %d)", call, tp);
    tpx_check_close(what, full, out[0], (size_t)rows * V, TOL_LOGITS);
    free(full);
    free(out[0]);
    free(out[1]);
    for (int q = 0; q < 2; q++) pos0[q] += n_new[call][q];
  }
  for (int k = 0; k < 2; k++)
    for (int j = 0; j < 4; j++) free(cache[k][j]);
}

/* Sequence parallelism needs T % tp == 0 (creation and reshape); a TP shard needs its
 * communicator. Each refusal names the numbers. */
static void check_bad_input(const tpx_case_t *c) {
  char err[256], want[64];
  gpt2_model_t *m = tpx_model(c, 0, c->cfg.layers, 1, 1, rank, tp, comm, 1, GPT2_RECOMPUTE_NONE);
  if (!m) return;
  gpt2_acts_t *a = NULL;
  int T = tp + 1;
  CHECK_EQ_INT(gpt2_acts_create(m, 2, T, &a, err, sizeof err), -1);
  CHECK_TRUE(a == NULL);
  snprintf(want, sizeof want, "T = %d is not divisible by the tensor-parallel size %d", T, tp);
  CHECK_TRUE(strstr(err, want) != NULL);
  if (rank == 0) printf("refused: %s\n", err);
  CHECK_EQ_INT(gpt2_acts_create(m, 2, 2 * tp, &a, err, sizeof err), 0);
  CHECK_EQ_INT(gpt2_acts_reshape(a, 1, T, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, want) != NULL);
  CHECK_EQ_INT(gpt2_acts_reshape(a, 1, tp, err, sizeof err), 0);
  gpt2_acts_free(a);
  CHECK_EQ_INT(gpt2_set_tp(m, NULL, 0, err, sizeof err), -1);
  snprintf(want, sizeof want, "tensor-parallel size %d", tp);
  CHECK_TRUE(strstr(err, want) != NULL);
  gpt2_free(m);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  coll_config_t cfg = coll_config_default();
  if (coll_comm_create(MPI_COMM_WORLD, &cfg, &comm) != COLL_OK) {
    fprintf(stderr, "coll_comm_create failed\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  tp = coll_size(comm);
  rank = coll_rank(comm);
  test_set_rank(rank);
  tpx_case_t c;
  tpx_case(&c, tp == 3 ? 6 : 4, tp == 3 ? 48 : 32, 2, tp == 3 ? 18 : 16);

  gpt2_model_t *ref = tpx_model(&c, 0, c.cfg.layers, 1, 1, 0, 1, NULL, 0, GPT2_RECOMPUTE_NONE);
  if (!ref) MPI_Abort(MPI_COMM_WORLD, 1);
  float *ref_logits = malloc(sizeof(float) * c.B * c.T * c.cfg.vocab);
  float ref_loss = tpx_step(&ref, 1, &c, ref_logits);
  CHECK_TRUE(isfinite(ref_loss));

  for (int sp = 0; sp <= 1; sp++)
    for (int nshard = 1; nshard <= 2; nshard++) check_layout(&c, ref, ref_loss, ref_logits, sp, nshard);
  for (int sp = 0; sp <= 1; sp++)
    for (int nshard = 1; nshard <= 2; nshard++) tpx_check_recompute(&c, rank, tp, comm, sp, nshard);

  gpt2_model_t *m = tpx_model(&c, 0, c.cfg.layers, 1, 1, rank, tp, comm, 0, GPT2_RECOMPUTE_NONE);
  if (m) check_kv(&c, ref, m);
  gpt2_free(m);
  check_bad_input(&c);

  free(ref_logits);
  gpt2_free(ref);
  tpx_case_free(&c);
  int failed = test_failures, any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  coll_comm_destroy(comm);
  int rc = test_finish("test_gpt2_tp");
  MPI_Finalize();
  return any ? 1 : rc;
}
