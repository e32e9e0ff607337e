/* strata train -- flags of the training job (see train.h for what a run does). */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "coll.h"
#include "schedule.h"
#include "commands.h"
#include "log.h"
#include "train.h"

static const char *usage_text =
    "Train the GPT-2 model. With no flags: the tiny default model (4 layers, 4 heads, width 128,\n"
    "context 128) on the shipped corpus (data/fortunes.txt, bytes), 300 steps of 16 x 128 tokens.\n"
    "The run directory (--out) receives steps.jsonl, report.json and checkpoints ckpt-<step>/\n"
    "(Hugging Face config.json + safetensors, AdamW moments, train_state.pb).\n"
    "--resume DIR|auto continues a run bit-identically (auto: the newest valid checkpoint in --out);\n"
    "the checkpoint's model and data order are kept, and --steps may extend the run.\n"
    "\n"
    "Distributed: mpirun -np N strata train --pp P --dp D [--microbatches M] [--schedule gpipe|1f1b]\n"
    "  N must equal P x D; rank r is (stage r % P, replica r / P). Layers are split over the P\n"
    "  stages balanced by compute (or --stage-layers 3,3,2); --batch is the global batch and must\n"
    "  divide by D x M. Gradients are all-reduced in buckets of --bucket-mb MiB (default 4, env\n"
    "  STRATA_BUCKET_MB) as backward finishes them; --zero 1 shards the optimizer over replicas.\n"
    "  Rank 0 prints the layout and the progress; the run directory also receives report.pb and\n"
    "  trace.json (Chrome trace: open in Perfetto). Resume works onto any P x D layout.\n"
    "  Simulated accelerator: --device trn1|trn2|trn3|h100|cpu|FILE.json (default cpu, calibrated\n"
    "  at start-up), --device-mem BYTES. A stage that does not fit stops the job before step 1\n"
    "  (exit 2, naming a layout that fits); the progress line, report.json (sim_step_s,\n"
    "  sim_tokens_per_s, sim_mfu, per-stage sim_* and mem_model/mem_alloc_bytes) and trace.json\n"
    "  (pid 1000 + rank) carry the device's simulated time.";

int cmd_train(int argc, char **argv) {
  train_config_t c;
  train_config_default(&c);
  c.steps = -1; /* not given: 300, or the resumed checkpoint's total */
  int layers = -1, heads = -1, dim = -1, ctx = -1;
  double lr = -1, wd = -1, clip = -1, min_lr_ratio = -1;
  int warmup = -1;
  const char *schedule = NULL, *transport = NULL;
  c.microbatches = -1; /* not given: 1, or the resumed checkpoint's */
  int64_t seed = -1;
  arg_spec_t specs[] = {
      {"--data", NULL, ARG_STRING, &c.data_path, "FILE", "text file (bytes) or llm.c token shard (default: data/fortunes.txt)"},
      {"--out", NULL, ARG_STRING, &c.out_dir, "DIR", "run directory (default runs/train)"},
      {"--steps", NULL, ARG_INT64, &c.steps, "N", "optimizer steps in total (default 300)"},
      {"--batch", NULL, ARG_INT, &c.batch, "B", "global batch in sequences per step (default 16)"},
      {"--microbatches", NULL, ARG_INT, &c.microbatches, "M", "micro-batches per step; must divide --batch (default 1)"},
      {"--seq-len", NULL, ARG_INT, &c.seq_len, "T", "tokens per sequence (default: --ctx)"},
      {"--layers", NULL, ARG_INT, &layers, "L", "transformer blocks (default 4)"},
      {"--heads", NULL, ARG_INT, &heads, "H", "attention heads; must divide --dim (default 4)"},
      {"--dim", NULL, ARG_INT, &dim, "C", "embedding width (default 128)"},
      {"--ctx", NULL, ARG_INT, &ctx, "T", "maximum context length (default 128)"},
      {"--lr", NULL, ARG_DOUBLE, &lr, "LR", "peak learning rate (default 3e-3)"},
      {"--warmup", NULL, ARG_INT, &warmup, "N", "linear warm-up steps (default 20)"},
      {"--min-lr-ratio", NULL, ARG_DOUBLE, &min_lr_ratio, "R", "cosine floor as a fraction of --lr (default 0.1)"},
      {"--weight-decay", NULL, ARG_DOUBLE, &wd, "WD", "AdamW decoupled weight decay on 2-D tensors (default 0.1)"},
      {"--grad-clip", NULL, ARG_DOUBLE, &clip, "NORM", "clip gradients to this global L2 norm, 0 = off (default 1)"},
      {"--seed", NULL, ARG_INT64, &seed, "S", "seed of the initialisation and the data order (default 1337)"},
      {"--ckpt-every", NULL, ARG_INT, &c.ckpt_every, "K", "checkpoint every K steps (default 0: only at the end)"},
      {"--keep", NULL, ARG_INT, &c.keep, "K", "keep only the newest K checkpoints (default 0: all)"},
      {"--resume", NULL, ARG_STRING, &c.resume, "DIR|auto", "continue from a checkpoint directory, or the newest in --out"},
      {"--eval-every", NULL, ARG_INT, &c.eval_every, "K", "validation loss every K steps (default 0: at the end)"},
      {"--eval-batches", NULL, ARG_INT, &c.eval_batches, "N", "validation batches per evaluation (default 8)"},
      {"--log-every", NULL, ARG_INT, &c.log_every, "K", "progress line every K steps (default 10)"},
      {"--threads", NULL, ARG_INT, &c.threads, "N", "BLAS threads per rank (default 1)"},
      {"--quiet", NULL, ARG_FLAG, &c.quiet, NULL, "no progress lines"},
      {"--pp", NULL, ARG_INT, &c.pp, "P", "pipeline stages (default 1)"},
      {"--dp", NULL, ARG_INT, &c.dp, "D", "data-parallel replicas (default 1); mpirun -np P*D"},
      {"--schedule", NULL, ARG_STRING, &schedule, "gpipe|1f1b", "pipeline schedule (default gpipe)"},
      {"--stage-layers", NULL, ARG_STRING, &c.stage_layers, "L0,L1,..", "layers per stage (default: balanced by compute)"},
      {"--transport", NULL, ARG_STRING, &transport, "mpi|ofi", "collectives transport (default mpi)"},
      {"--ofi-provider", NULL, ARG_STRING, &c.ofi_provider, "NAME", "libfabric provider with --transport ofi (shm, tcp; default $FI_PROVIDER)"},
      {"--bucket-mb", NULL, ARG_DOUBLE, &c.bucket_mb, "MB", "gradient all-reduce bucket size in MiB (default 4)"},
      {"--zero", NULL, ARG_INT, &c.zero, "0|1", "ZeRO-1: shard the AdamW moments over the replicas (default 0)"},
      {"--device", NULL, ARG_STRING, &c.device, "DEV", "simulated accelerator: trn1|trn2|trn3|h100|cpu|FILE.json (default cpu, calibrated at start-up)"},
      {"--device-mem", NULL, ARG_BYTES, &c.device_mem, "BYTES", "device memory per rank (K/M/G suffixes; default: the profile's HBM)"},
  };
  int rc = args_parse("train", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]),
                      NULL, NULL);
  if (rc) return rc > 0 ? 0 : 2;

  int world = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  c.microbatches_given = c.microbatches != -1;
  if (!c.microbatches_given) c.microbatches = 1;
  if (schedule) {
    sched_kind_t k;
    if (schedule_parse_kind(schedule, &k)) {
      if (rank == 0) strata_error("train: --schedule must be gpipe or 1f1b (got '%s')", schedule);
      return 2;
    }
    c.schedule = (int)k;
  }
  if (transport) {
    coll_transport_kind_t k;
    if (coll_parse_transport(transport, &k)) {
      if (rank == 0) strata_error("train: --transport must be mpi or ofi (got '%s')", transport);
      return 2;
    }
    c.transport = (int)k;
  }
  const int distributed = world > 1 || c.pp != 1 || c.dp != 1 || schedule || transport ||
                          c.stage_layers || c.zero != 0 || c.device || c.device_mem;
  if (c.resume && (layers > 0 || heads > 0 || dim > 0 || ctx > 0 || seed >= 0)) {
    if (rank == 0) strata_error("train: --resume takes the model shape and seed from the checkpoint; drop "
                 "--layers/--heads/--dim/--ctx/--seed");
    return 2;
  }
  if (c.steps == -1 && !c.resume) c.steps = 300;
  if (layers != -1) c.model.layers = layers;
  if (heads != -1) c.model.heads = heads;
  if (dim != -1) c.model.dim = dim;
  if (ctx != -1) c.model.ctx = ctx;
  if (seed != -1) {
    if (seed < 0) {
      if (rank == 0) strata_error("train: --seed must be non-negative");
      return 2;
    }
    c.seed = (uint64_t)seed;
  }
  if (lr != -1) c.opt.lr = (float)lr;
  if (wd != -1) c.opt.weight_decay = (float)wd;
  if (clip != -1) c.opt.grad_clip = (float)clip;
  if (min_lr_ratio != -1) c.opt.min_lr_ratio = (float)min_lr_ratio;
  if (warmup != -1) c.opt.warmup_steps = warmup;
  if (c.log_every < 1 || c.eval_batches < 1 || c.ckpt_every < 0 || c.keep < 0 || c.eval_every < 0 ||
      c.threads < 1) {
    if (rank == 0) strata_error("train: --log-every, --eval-batches and --threads must be >= 1; --ckpt-every, "
                 "--keep and --eval-every >= 0");
    return 2;
  }
  if (distributed) return train_run_dist(&c);
  if (c.resume && !c.microbatches_given) c.microbatches = 1; /* train_run takes the checkpoint's */
  return train_run(&c);
}
