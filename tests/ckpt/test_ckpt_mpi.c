/* test_ckpt_mpi.c -- the pipeline checkpoint protocol across real processes: rank 0 (the
 * coordinator) creates the temporary directory and broadcasts its name, every rank writes its
 * own stage's shard into it concurrently, and after a barrier rank 0 commits. Then every rank
 * loads the checkpoint into a different layout (one stage fewer, or the whole model) and
 * compares each tensor with the reference model built from the same seed (gpt2_init_params
 * depends only on (seed, tensor name)). Run on 2 or 3 ranks. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "gpt2.h"
#include "test_util.h"

static const gpt2_config_t CFG = {64, 16, 6, 2, 8}; /* vocab, ctx, layers, heads, dim */

/* Stage s of p: layers split as evenly as possible. */
static gpt2_range_t stage_range(int s, int p) {
  int base = CFG.layers / p, extra = CFG.layers % p;
  int begin = s * base + (s < extra ? s : extra);
  int end = begin + base + (s < extra ? 1 : 0);
  return (gpt2_range_t){begin, end, s == 0, s == p - 1};
}

static gpt2_model_t *make(gpt2_range_t r) {
  gpt2_model_t *m;
  char err[512];
  if (gpt2_create(&CFG, r, &m, err, sizeof err) != 0) {
    fprintf(stderr, "gpt2_create: %s\n", err);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return m;
}

/* Moments derived from the parameters by name-independent arithmetic, so any layout agrees. */
static void moments(const gpt2_model_t *m, float *m1, float *m2) {
  for (size_t i = 0; i < m->num_params; i++) {
    m1[i] = m->params[i] * 0.5f;
    m2[i] = m->params[i] * m->params[i];
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, p;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  test_set_rank(rank);
  char err[1024] = "", tmp[1024] = "", dir[1024];
  if (rank == 0) {
    char base[] = "/tmp/strata_ckpt_mpi_XXXXXX";
    if (!mkdtemp(base)) MPI_Abort(MPI_COMM_WORLD, 2);
    snprintf(dir, sizeof dir, "%s/ckpt-00000007", base);
    CHECK_EQ_INT(ckpt_begin(dir, tmp, sizeof tmp, err, sizeof err), 0);
  }
  MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
  MPI_Bcast(tmp, sizeof tmp, MPI_CHAR, 0, MPI_COMM_WORLD);
  /* every rank is one stage: write its shard concurrently */
  gpt2_model_t *mine = make(stage_range(rank, p));
  gpt2_init_params(mine, 11);
  float *m1 = calloc(mine->num_params, sizeof(float)), *m2 = calloc(mine->num_params, sizeof(float));
  moments(mine, m1, m2);
  CHECK_EQ_INT(ckpt_write_shard(tmp, mine, m1, m2, rank, p, err, sizeof err), 0);
  MPI_Barrier(MPI_COMM_WORLD);
  int ok = 1;
  if (rank == 0) {
    strata_train_state_t *s = malloc(sizeof *s);
    strata_train_state_init(s);
    s->step = 7;
    s->layout.pp = p;
    s->layout.n_stage_layers = p;
    for (int k = 0; k < p; k++) {
      gpt2_range_t r = stage_range(k, p);
      s->layout.stage_layers[k] = r.layer_end - r.layer_begin;
    }
    ok = ckpt_commit(tmp, dir, &CFG, s, p, err, sizeof err) == 0;
    if (!ok) test_fail(__FILE__, __LINE__, "commit: %s", err);
    free(s);
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (ok) {
    /* load into another layout: p-1 stages (rank r < p-1 takes stage r), or the whole model */
    gpt2_range_t r = rank < p - 1 ? stage_range(rank, p - 1) : (gpt2_range_t){0, CFG.layers, 1, 1};
    gpt2_model_t *other = make(r), *ref = make((gpt2_range_t){0, CFG.layers, 1, 1});
    gpt2_init_params(ref, 11);
    float *l1 = calloc(other->num_params, sizeof(float)), *l2 = calloc(other->num_params, sizeof(float));
    strata_train_state_t *st = malloc(sizeof *st);
    CHECK_EQ_INT(ckpt_load(dir, other, l1, l2, st, err, sizeof err), 0);
    CHECK_TRUE(st->step == 7 && st->layout.pp == p);
    for (int i = 0; i < other->num_tensors; i++) {
      const gpt2_tensor_t *t = &other->tensors[i], *u = gpt2_find_tensor(ref, t->name);
      CHECK_TRUE(u != NULL);
      if (!u) continue;
      for (size_t j = 0; j < t->numel; j++) {
        float w = ref->params[u->offset + j];
        if (other->params[t->offset + j] != w || l1[t->offset + j] != w * 0.5f ||
            l2[t->offset + j] != w * w) {
          test_fail(__FILE__, __LINE__, "tensor %s element %zu differs", t->name, j);
          break;
        }
      }
    }
    free(st);
    free(l1);
    free(l2);
    gpt2_free(other);
    gpt2_free(ref);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) { /* remove the run directory */
    char cmd[1200];
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }
  free(m1);
  free(m2);
  gpt2_free(mine);
  int fails = test_failures, total = 0;
  MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  test_failures = total;
  int rc = test_finish("ckpt_pipeline_mpi");
  MPI_Finalize();
  return rc;
}
