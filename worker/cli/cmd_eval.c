/* strata eval -- mean cross-entropy of a checkpoint on the held-out set (validation.h) of a data
 * file's validation or training split. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "args.h"
#include "checkpoint.h"
#include "commands.h"
#include "data.h"
#include "data_tokenizer.h"
#include "gemm.h"
#include "stage.h"
#include "train.h"
#include "train_model.h"
#include "log.h"
#include "memory_model.h"
#include "validation.h"

static const char *usage_text =
    "Evaluate a checkpoint: mean cross-entropy over the first N tokens of a split of FILE, read in\n"
    "file order as sequences of T tokens (sequence i predicts tokens [i*T + 1, i*T + T + 1)), the\n"
    "same set strata train's validation loss scores. --split val (default) is the held-out split:\n"
    "the last 10% of a single file, or NAME_val.bin beside NAME_train.bin; --split train the rest.\n"
    "A BPE model (vocabulary not 256) reads a text FILE through its checkpoint's tokenizer, as\n"
    "strata train --tokenizer does. A GPT-2 or Llama checkpoint (the family is config.json's\n"
    "model_type). Prints nats and bits per byte (per token for token shards); with --json\n"
    "{\"loss\": ..., \"bits\": ..., \"tokens\": ..., \"split\": ..., \"precision\": ...}.\n"
    "--precision bf16 (or bf16-sr: the same forward) runs the model's (GPT-2 or Llama) matrix products on\n"
    "bf16-rounded inputs with fp32 accumulation, as strata train --precision bf16 does; any\n"
    "checkpoint loads in any precision (its tensors are F32, or BF16 for a bf16-sr run's weights,\n"
    "widened to fp32 exactly).";

int cmd_eval(int argc, char **argv) {
  const char *ckpt = NULL, *data_path = NULL, *split_name = "val", *precision = "fp32";
  int B = 8, T = 0, json = 0, threads = 1;
  int64_t tokens = VALSET_TOKENS_DEFAULT;
  arg_spec_t specs[] = {
      {"--checkpoint", NULL, ARG_STRING, &ckpt, "DIR", "checkpoint directory (required)"},
      {"--data", NULL, ARG_STRING, &data_path, "FILE", "text file or token shard (default: data/fortunes.txt)"},
      {"--split", NULL, ARG_STRING, &split_name, "val|train", "held-out split (default) or training split"},
      {"--tokens", NULL, ARG_INT64, &tokens, "N", "tokens to score (default 65536; fewer if the split is short)",
       .min = 1, .max = 0x1p40},
      {"--batch", NULL, ARG_INT, &B, "B", "sequences per forward pass: memory only, the loss does not depend on it (default 8)",
       .min = 1, .max = 1 << 20},
      {"--seq-len", NULL, ARG_INT, &T, "T", "tokens per sequence (default: the model's context)", .min = 1, .max = 1 << 20},
      {"--threads", NULL, ARG_INT, &threads, "N", "GEMM threads (OpenBLAS and oneDNN; default 1)", .min = 1, .max = 1024},
      {"--precision", NULL, ARG_STRING, &precision, "fp32|bf16|bf16-sr",
       "matrix products in fp32 (default) or on bf16-rounded inputs with fp32 accumulation"},
      {"--json", NULL, ARG_FLAG, &json, NULL, "print the result as JSON"},
  };
  int rc = args_parse("eval", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]),
                      NULL, NULL);
  if (rc) return rc > 0 ? 0 : 2;
  data_split_t split = DATA_VAL;
  if (valset_parse_split(split_name, &split)) {
    strata_error("eval: --split must be val or train, got '%s'", split_name);
    return 2;
  }
  mem_precision_t prec;
  if (memory_parse_precision(precision, &prec)) {
    strata_error("eval: --precision must be " MEM_PRECISION_CHOICES ", got '%s'", precision);
    return 2;
  }
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
  gemm_set_threads(threads);

  char err[1024];
  ckpt_model_config_t mc;
  gpt2_config_t cfg;
  train_model_t tm = {0};
  data_set_t *ds = NULL;
  int32_t *in = NULL, *tg = NULL;
  rc = 1;
  if (ckpt_read_model_config(ckpt, &mc, err, sizeof err)) goto fail; /* GPT-2 or Llama */
  cfg = mc.shape;
  if (T == 0) T = cfg.ctx; /* --seq-len not given */
  if (T > cfg.ctx) {
    snprintf(err, sizeof err, "--seq-len %d exceeds the model's context %d", T, cfg.ctx);
    goto fail;
  }
  if (!data_path) data_path = data_default_path();
  /* a BPE model reads text through its checkpoint's tokenizer, as train --tokenizer did */
  if ((rc = data_tokenizer_install("eval", NULL, ckpt))) goto out;
  rc = 1;
  if (data_open(data_path, DATA_KIND_AUTO, &ds, err, sizeof err)) goto fail;
  if (data_vocab(ds) > cfg.vocab) {
    snprintf(err, sizeof err, "data '%s' has vocabulary %d but the checkpoint's model has %d",
             data_path, data_vocab(ds), cfg.vocab);
    goto fail;
  }
  int64_t seqs = 0;
  if (valset_size(ds, split, tokens, T, &seqs, err, sizeof err)) goto fail;
  if (B > seqs) B = (int)seqs; /* no forward pass larger than the set */
  if (train_model_create(&tm, mc.arch, &cfg, &mc.llama, B, T, err, sizeof err) ||
      train_model_load(&tm, ckpt, NULL, NULL, NULL, err, sizeof err))
    goto fail;
  const stage_model_t sm = tm.gpt ? stage_of_gpt2(tm.gpt) : stage_of_llama(tm.llama);
  train_apply_precision(&sm, NULL, (int)prec, 0, 0); /* the products only: no optimizer, weights as loaded */
  in = malloc(sizeof(int32_t) * (size_t)B * T);
  tg = malloc(sizeof(int32_t) * (size_t)B * T);
  if (!in || !tg) {
    snprintf(err, sizeof err, "out of memory");
    goto fail;
  }
  double loss = 0;
  if (valset_loss(&tm, B, ds, split, seqs, T, in, tg, &loss, err, sizeof err)) goto fail;
  long long scored = (long long)(seqs * T);
  if (json) {
    printf("{\"loss\": %.9g, \"bits\": %.9g, \"tokens\": %lld, \"sequences\": %lld, "
           "\"seq_len\": %d, \"split\": \"%s\", \"precision\": \"%s\"}\n", loss, loss / M_LN2, scored,
           (long long)seqs, T, split_name, precision);
  } else {
    char vl[96];
    valset_format_loss(vl, sizeof vl, loss, cfg.vocab);
    printf("loss %s over %lld tokens (%lld sequences of %d) of the %s split of %s\n", vl, scored,
           (long long)seqs, T, split == DATA_VAL ? "validation" : "training", data_path);
  }
  rc = 0;
  goto out;
fail:
  /* Every failure here is bad input: a checkpoint or data file that cannot be used. */
  strata_error("eval: %s", err);
  rc = 2;
out:
  free(in);
  free(tg);
  train_model_free(&tm);
  data_close(ds);
  data_tokenizer_remove();
  return rc;
}
