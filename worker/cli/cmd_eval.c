/* strata eval -- mean cross-entropy of a checkpoint on the first N batches of a data file. */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "args.h"
#include "checkpoint.h"
#include "commands.h"
#include "data.h"
#include "gpt2.h"
#include "log.h"

static const char *usage_text =
    "Evaluate a checkpoint: mean cross-entropy (nats per token) over the first N batches of B\n"
    "sequences of T tokens of FILE, read in file order (batch j = tokens [j*B*T, j*B*T + B*T + 1)).\n"
    "With --json it prints {\"loss\": ..., \"tokens\": ..., \"batches\": ...}.";

int cmd_eval(int argc, char **argv) {
  const char *ckpt = NULL, *data_path = NULL;
  int batches = 8, B = 8, T = 0, json = 0, threads = 1;
  arg_spec_t specs[] = {
      {"--checkpoint", NULL, ARG_STRING, &ckpt, "DIR", "checkpoint directory (required)"},
      {"--data", NULL, ARG_STRING, &data_path, "FILE", "text file or token shard (default: data/fortunes.txt)"},
      {"--batches", NULL, ARG_INT, &batches, "N", "batches to evaluate (default 8; fewer if the file is short)",
       .min = 1, .max = 1 << 20},
      {"--batch", NULL, ARG_INT, &B, "B", "sequences per batch (default 8)", .min = 1, .max = 1 << 20},
      {"--seq-len", NULL, ARG_INT, &T, "T", "tokens per sequence (default: the model's context)", .min = 1, .max = 1 << 20},
      {"--threads", NULL, ARG_INT, &threads, "N", "BLAS threads (default 1)", .min = 1, .max = 1024},
      {"--json", NULL, ARG_FLAG, &json, NULL, "print the result as JSON"},
  };
  int rc = args_parse("eval", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]),
                      NULL, NULL);
  if (rc) return rc > 0 ? 0 : 2;
  if (!ckpt) {
    strata_error("eval: --checkpoint DIR is required (a directory written by strata train)");
    return 2;
  }
  if (cli_mpi_start()) return 1;
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != 1) {
    strata_error("eval: runs on one rank; launch it without mpirun or with -np 1");
    return 2;
  }
  openblas_set_num_threads(threads);

  char err[1024];
  gpt2_config_t cfg;
  gpt2_model_t *m = NULL;
  gpt2_acts_t *a = NULL;
  data_set_t *ds = NULL;
  int32_t *in = NULL, *tg = NULL;
  rc = 1;
  if (ckpt_read_config(ckpt, &cfg, err, sizeof err)) goto fail;
  if (T == 0) T = cfg.ctx; /* --seq-len not given */
  if (T > cfg.ctx) {
    snprintf(err, sizeof err, "--seq-len %d exceeds the model's context %d", T, cfg.ctx);
    goto fail;
  }
  if (!data_path) data_path = data_default_path();
  if (data_open(data_path, DATA_KIND_AUTO, &ds, err, sizeof err)) goto fail;
  if (data_vocab(ds) > cfg.vocab) {
    snprintf(err, sizeof err, "data '%s' has vocabulary %d but the checkpoint's model has %d",
             data_path, data_vocab(ds), cfg.vocab);
    goto fail;
  }
  if (data_check_batch(ds, DATA_ALL, B, T, err, sizeof err)) goto fail;
  gpt2_range_t all = {0, cfg.layers, 1, 1};
  if (gpt2_create(&cfg, all, &m, err, sizeof err)) goto fail;
  if (ckpt_load(ckpt, m, NULL, NULL, NULL, err, sizeof err)) goto fail;
  if (gpt2_acts_create(m, B, T, &a, err, sizeof err)) goto fail;
  in = malloc(sizeof(int32_t) * (size_t)B * T);
  tg = malloc(sizeof(int32_t) * (size_t)B * T);
  if (!in || !tg) {
    snprintf(err, sizeof err, "out of memory");
    goto fail;
  }
  uint64_t avail = data_num_sequential_batches(ds, DATA_ALL, B, T);
  if ((uint64_t)batches > avail) batches = (int)avail;
  double sum = 0;
  for (int j = 0; j < batches; j++) {
    if (data_fetch_sequential(ds, DATA_ALL, (uint64_t)j, B, T, in, tg, err, sizeof err)) goto fail;
    sum += gpt2_forward(m, a, in, NULL, tg);
  }
  double loss = sum / batches;
  long long tokens = (long long)batches * B * T;
  if (json)
    printf("{\"loss\": %.9g, \"tokens\": %lld, \"batches\": %d}\n", loss, tokens, batches);
  else
    printf("loss %.6f over %lld tokens (%d batches of %d x %d) of %s\n", loss, tokens, batches, B,
           T, data_path);
  rc = 0;
  goto out;
fail:
  /* Every failure here is bad input: a checkpoint or data file that cannot be used. */
  strata_error("eval: %s", err);
  rc = 2;
out:
  free(in);
  free(tg);
  gpt2_acts_free(a);
  gpt2_free(m);
  data_close(ds);
  return rc;
}
