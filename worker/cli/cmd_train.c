/* strata train -- flags of the training job (see train.h for what a run does), and the
 * tokenizer of text data: with --tokenizer (or resuming a BPE model) a text --data is encoded
 * when it is opened (data.h's text encoder), as `strata tokenize` would write its shard. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "checkpoint.h"
#include "ckpt_tokenizer.h"
#include "strata/coll.h"
#include "schedule.h"
#include "commands.h"
#include "data.h"
#include "data_tokenizer.h"
#include "log.h"
#include "memory_model.h"
#include "tokenizer.h"
#include "train.h"

static const char *usage_text =
    "Train the GPT-2 model. With no flags: the tiny default model (4 layers, 4 heads, width 128,\n"
    "context 128) on the shipped corpus (data/fortunes.txt, bytes), 2000 steps of 16 x 128 tokens\n"
    "at learning rate 3e-3 (100 warm-up steps, cosine decay to 3e-4): validation loss about 1.8\n"
    "nats/byte (2.6 bits/byte) and word-like text; launch/demo.sh runs it on 4 ranks.\n"
    "Validation scores the first --eval-tokens of the held-out split (the last 10% of the file),\n"
    "the same set on every layout; RUN/val.jsonl records each evaluation.\n"
    "The run directory (--out) receives steps.jsonl, report.json, report.pb, trace.json (Chrome\n"
    "trace: open in Perfetto) and checkpoints ckpt-<step>/\n"
    "(Hugging Face config.json + safetensors, AdamW moments, train_state.pb). A checkpoint is\n"
    "copied to host memory at the step boundary and written in the background during the next\n"
    "step, complete at its end (--no-ckpt-async: before the next step); it is atomic and verified\n"
    "either way, and the job waits for the last one before exiting.\n"
    "--resume DIR|auto continues a run bit-identically (auto: the newest valid checkpoint in --out);\n"
    "the checkpoint's model and data order are kept, and --steps may extend the run.\n"
    "Text data is bytes (vocabulary 256) unless --tokenizer gpt2|DIR names a BPE tokenizer: the\n"
    "text is then encoded at start-up (<|endoftext|> first, exactly the tokens of the shard strata\n"
    "tokenize --in FILE writes) and the model's vocabulary is the tokenizer's (50257 for gpt2, the\n"
    "shipped GPT-2 vocabulary). --resume of a BPE model encodes text with the checkpoint's tokenizer.\n"
    "Checkpoints carry the tokenizer trained with (DIR's files). With a token shard, --tokenizer\n"
    "names the tokenizer of its ids (its vocabulary must be the model's).\n"
    "--config FILE.json starts from a published GPT-2 shape (a Hugging Face config.json: n_layer,\n"
    "n_head, n_embd, n_positions; vocab_size 50257 implies --tokenizer gpt2, 256 bytes); --layers,\n"
    "--heads, --dim and --ctx given beside it win, so `--config gpt2.json --dim 128 --heads 4` is\n"
    "GPT-2 small's depth at a small width.\n"
    "--arch llama trains a Llama model (RMSNorm, RoPE, SwiGLU, grouped-query attention, untied\n"
    "lm_head) with --kv-heads, --ffn (default 8/3 x --dim rounded up to a multiple of 64),\n"
    "--rms-norm-eps and --rope-theta; --config also takes a Hugging Face LlamaConfig (model_type\n"
    "llama, tie_word_embeddings false). Llama trains on one rank, data-parallel (mpirun -np D ...\n"
    "--dp D [--zero 1]), tensor-parallel and pipelined (mpirun -np TxPxD ... [--tp T] [--pp P]\n"
    "[--dp D] [--zero 1] [--schedule] [--microbatches M]; T divides --heads, --kv-heads and --ffn:\n"
    "q/k/v and gate/up split by rows, o_proj and down_proj by columns, embed_tokens and lm_head by\n"
    "vocabulary); its checkpoints are Hugging Face LlamaForCausalLM directories of whole tensors\n"
    "(one safetensors file per stage when pipelined), written synchronously, and --resume takes\n"
    "the family from them onto any layout.\n"
    "--precision bf16 (GPT-2 and Llama) runs every matrix product (linear layers, attention, logits;\n"
    "forward and backward) on bf16-rounded inputs with fp32 accumulation, keeping fp32 master\n"
    "weights, AdamW moments, LayerNorm / RMSNorm, RoPE, softmax, GELU / SwiGLU and the loss (bf16\n"
    "autocast + fp32 optimizer); bf16-sr also keeps the weights in bf16, rounded stochastically\n"
    "after each update from (seed, step, element), the same on every layout, and its checkpoints\n"
    "store the weights as BF16 safetensors (half the bytes; moments F32; every loader widens them\n"
    "exactly). The checkpoint records the precision; a resume keeps it.\n"
    "\n"
    "Distributed: mpirun -np N strata train [--tp T] --pp P --dp D [--microbatches M]\n"
    "  [--schedule gpipe|1f1b] [--sequence-parallel] [--recompute none|selective|full]\n"
    "  N must equal T x P x D; rank r is (t r % T, stage (r / T) % P, replica r / (T x P)).\n"
    "  Tensor parallelism splits every matrix of a stage over T ranks (Megatron-LM; T divides the\n"
    "  heads); --sequence-parallel also splits the LayerNorm/residual rows (T divides --seq-len);\n"
    "  --recompute drops activations and recomputes them in backward (selective: the attention\n"
    "  probabilities; full: all but each layer's input), with the same losses. Layers are split\n"
    "  over the P stages balanced by compute (or --stage-layers 3,3,2); --batch is the global\n"
    "  batch and must divide by D x M. Gradients are all-reduced in buckets of --bucket-mb MiB\n"
    "  (default 4, env STRATA_BUCKET_MB) as backward finishes them; --zero 1 shards the optimizer\n"
    "  over replicas. --grad-dtype bf16 reduces the gradients over the replicas in bf16 (half the\n"
    "  bytes: report.json's bytes_sent; fp32 sums rounded to bf16 at each hop, widened back to fp32\n"
    "  for clipping and AdamW); not recorded in checkpoints: pass it again to resume bit-identically.\n"
    "  Rank 0 prints the layout and the progress; trace.json has a compute and a\n"
    "  communication track per rank. Checkpoints hold whole tensors: resume works onto any\n"
    "  T x P x D layout.\n"
    "  Simulated accelerator: --device trn1|trn2|trn3|h100|cpu|FILE.json (default cpu, calibrated\n"
    "  at start-up), --device-mem BYTES. A stage that does not fit stops the job before step 1\n"
    "  (exit 2, naming a layout that fits); the progress line, report.json (sim_step_s,\n"
    "  sim_tokens_per_s, sim_mfu, per-stage sim_* and mem_model/mem_alloc_bytes) and trace.json\n"
    "  (pid 1000 + rank) carry the device's simulated time.";

/* Bounds of the model and job flags: generous, so that only nonsense is refused here and the
 * real limits (memory, the layout, the data) are checked where they are known. */
#define TRAIN_MAX_COUNT 1e9 /* steps, warm-up, every-K intervals */

/* The flags --config fills when they are not given (each marked given then, so a resume
 * compares it with the checkpoint). */
typedef struct {
  int layers, heads, dim, ctx, arch, kv_heads, ffn, rms_norm_eps, rope_theta;
} model_given_t;

/* --config FILE.json: the shape of a Hugging Face GPT-2 or Llama config for every one of --layers,
 * --heads, --dim and --ctx not given (and the family, and for Llama --kv-heads, --ffn,
 * --rms-norm-eps, --rope-theta); vocab_size 50257 means GPT-2's tokenizer for text data
 * (--tokenizer gpt2 unless another is named), 256 bytes. 0, or 2 after one sentence. */
static int apply_model_config(const char *path, train_config_t *c, const char **tokenizer,
                              model_given_t *g) {
  ckpt_model_config_t mc;
  gpt2_config_t hc, *m = &c->model;
  char err[600];
  if (ckpt_read_model_config_file(path, &mc, err, sizeof err)) {
    strata_error("train: --config: %s", err);
    return 2;
  }
  hc = mc.shape;
  if (g->arch && c->arch != (int)mc.arch) {
    strata_error("train: --config %s is a %s model (model_type \"%s\") but --arch %s was given; drop one",
                 path, mc.arch == CKPT_ARCH_LLAMA ? "Llama" : "GPT-2",
                 mc.arch == CKPT_ARCH_LLAMA ? "llama" : "gpt2", ckpt_arch_name((ckpt_arch_t)c->arch));
    return 2;
  }
  if (hc.vocab == TOK_GPT2_VOCAB) {
    if (!*tokenizer) *tokenizer = "gpt2";
  } else if (hc.vocab != 256) {
    strata_error("train: --config %s: vocab_size %d is neither 256 (bytes) nor 50257 (GPT-2's tokenizer); "
                 "set one of those", path, hc.vocab);
    return 2;
  } else if (*tokenizer) {
    strata_error("train: --config %s has vocab_size 256 (bytes) but --tokenizer %s was given; drop one",
                 path, *tokenizer);
    return 2;
  }
  if (!g->layers) m->layers = hc.layers, g->layers = 1;
  if (!g->heads) m->heads = hc.heads, g->heads = 1;
  if (!g->dim) m->dim = hc.dim, g->dim = 1;
  if (!g->ctx) m->ctx = hc.ctx, g->ctx = 1;
  c->arch = (int)mc.arch;
  g->arch = 1;
  if (mc.arch == CKPT_ARCH_LLAMA) {
    llama_config_t *l = &c->llama;
    if (!g->kv_heads) l->kv_heads = mc.llama.kv_heads, g->kv_heads = 1;
    if (!g->ffn) l->ffn = mc.llama.ffn, g->ffn = 1;
    if (!g->rms_norm_eps) l->rms_norm_eps = mc.llama.rms_norm_eps, g->rms_norm_eps = 1;
    if (!g->rope_theta) l->rope_theta = mc.llama.rope_theta, g->rope_theta = 1;
  }
  return 0;
}

/* Long for its flag table; the rest records which flags were given (resume compares them with
 * the checkpoint) and picks the loop. */
/* The tokenizer every checkpoint of this run carries (ckpt_tokenizer.h): --tokenizer DIR's, or
 * the resumed checkpoint's own; GPT-2's shipped one needs nothing here. 0, or 2 after saying why. */
static int carry_tokenizer(const char *flag, const char *ckpt) {
  char err[1024];
  const int vocab = data_tokenizer_vocab();
  const char *dir = flag && strcmp(flag, "gpt2") ? flag : !flag && ckpt[0] && vocab ? ckpt : NULL;
  if (!dir || ckpt_carry_tokenizer(dir, vocab, err, sizeof err) == 0) return 0;
  if (dir == ckpt && vocab == DATA_GPT2_VOCAB) return 0; /* an older GPT-2 checkpoint without its files */
  strata_error("train: %s%s", flag ? "--tokenizer: " : "", err);
  return 2;
}

int cmd_train(int argc, char **argv) {
  train_config_t c;
  train_config_default(&c);
  double lr = c.opt.lr, wd = c.opt.weight_decay, clip = c.opt.grad_clip, min_lr_ratio = c.opt.min_lr_ratio;
  int warmup = c.opt.warmup_steps;
  int64_t seed = (int64_t)c.seed;
  const char *schedule = NULL, *transport = NULL, *recompute = NULL, *tokenizer = NULL, *config = NULL,
             *precision = NULL, *grad_dtype = NULL;
  int ckpt_async = 0, no_ckpt_async = 0;
  /* flags whose presence matters: resume compares them with the checkpoint */
  model_given_t g = {0};
  const char *arch = NULL;
  int g_steps = 0, g_batch = 0, g_seq_len = 0, g_seed = 0, g_lr = 0, g_warmup = 0, g_min_lr = 0, g_wd = 0, g_clip = 0;
  arg_spec_t specs[] = {
      {"--data", NULL, ARG_STRING, &c.data_path, "FILE", "text file (bytes; BPE tokens with --tokenizer) or llm.c token shard (default: data/fortunes.txt)"},
      {"--tokenizer", NULL, ARG_STRING, &tokenizer, "gpt2|DIR",
       "encode text --data with a BPE tokenizer: gpt2 (the shipped vocabulary) or a directory as strata tokenize takes"},
      {"--config", NULL, ARG_STRING, &config, "FILE.json",
       "model from a Hugging Face GPT-2 config.json (n_layer, n_head, n_embd, n_positions, vocab_size) or "
       "LlamaConfig (model_type llama: sets --arch llama); --layers/--heads/--dim/--ctx and the Llama flags override it"},
      {"--out", NULL, ARG_STRING, &c.out_dir, "DIR", "run directory (default runs/train)"},
      {"--steps", NULL, ARG_INT64, &c.steps, "N", "optimizer steps in total (default 2000; resume: the checkpoint's)",
       .min = 1, .max = TRAIN_MAX_COUNT, .given = &g_steps},
      {"--batch", NULL, ARG_INT, &c.batch, "B", "global batch in sequences per step (default 16)",
       .min = 1, .max = 1 << 20, .given = &g_batch},
      {"--microbatches", NULL, ARG_INT, &c.microbatches, "M", "micro-batches per step; must divide --batch (default 1)",
       .min = 1, .max = 1 << 20, .given = &c.microbatches_given},
      {"--seq-len", NULL, ARG_INT, &c.seq_len, "T", "tokens per sequence (default: --ctx)",
       .min = 1, .max = 1 << 20, .given = &g_seq_len},
      {"--arch", NULL, ARG_STRING, &arch, "gpt|llama",
       "model family: GPT-2 (default) or Llama (RMSNorm, RoPE, SwiGLU, grouped-query attention, untied "
       "lm_head; one rank; resume: the checkpoint's)", .given = &g.arch},
      {"--kv-heads", NULL, ARG_INT, &c.llama.kv_heads, "N",
       "Llama key/value heads; must divide --heads (default: --heads)", .min = 1, .max = 4096, .given = &g.kv_heads},
      {"--ffn", NULL, ARG_INT, &c.llama.ffn, "F",
       "Llama MLP width (intermediate_size; default 8/3 x --dim rounded up to a multiple of 64)",
       .min = 1, .max = 1 << 22, .given = &g.ffn},
      {"--rms-norm-eps", NULL, ARG_DOUBLE, &c.llama.rms_norm_eps, "EPS", "Llama RMSNorm epsilon (default 1e-5)",
       .min = 0, .max = 1, .open = ARG_OPEN_MIN, .given = &g.rms_norm_eps},
      {"--rope-theta", NULL, ARG_DOUBLE, &c.llama.rope_theta, "THETA", "Llama RoPE base (default 10000)",
       .min = 0, .max = 1e12, .open = ARG_OPEN_MIN, .given = &g.rope_theta},
      {"--layers", NULL, ARG_INT, &c.model.layers, "L", "transformer blocks (default 4)",
       .min = 1, .max = 4096, .given = &g.layers},
      {"--heads", NULL, ARG_INT, &c.model.heads, "H", "attention heads; must divide --dim (default 4)",
       .min = 1, .max = 4096, .given = &g.heads},
      {"--dim", NULL, ARG_INT, &c.model.dim, "C", "embedding width (default 128)",
       .min = 1, .max = 1 << 20, .given = &g.dim},
      {"--ctx", NULL, ARG_INT, &c.model.ctx, "T", "maximum context length (default 128)",
       .min = 1, .max = 1 << 20, .given = &g.ctx},
      {"--lr", NULL, ARG_DOUBLE, &lr, "LR", "peak learning rate (default 3e-3)",
       .min = 0, .max = 100, .open = ARG_OPEN_MIN, .given = &g_lr},
      {"--warmup", NULL, ARG_INT, &warmup, "N", "linear warm-up steps (default 100)",
       .min = 0, .max = TRAIN_MAX_COUNT, .given = &g_warmup},
      {"--min-lr-ratio", NULL, ARG_DOUBLE, &min_lr_ratio, "R", "cosine floor as a fraction of --lr (default 0.1)",
       .min = 0, .max = 1, .given = &g_min_lr},
      {"--weight-decay", NULL, ARG_DOUBLE, &wd, "WD", "AdamW decoupled weight decay on 2-D tensors (default 0.1)",
       .env = "STRATA_WEIGHT_DECAY", .given = &g_wd},
      {"--grad-clip", NULL, ARG_DOUBLE, &clip, "NORM", "clip gradients to this global L2 norm, 0 = off (default 1)",
       .env = "STRATA_GRAD_CLIP", .given = &g_clip},
      {"--precision", NULL, ARG_STRING, &precision, "fp32|bf16|bf16-sr",
       "fp32 (default); bf16: matrix products in bf16 with fp32 accumulation, fp32 master weights and "
       "AdamW moments; bf16-sr: bf16 products and bf16 weights updated with stochastic rounding (no master copy)"},
      {"--grad-dtype", NULL, ARG_STRING, &grad_dtype, "fp32|bf16",
       "dtype of the data-parallel gradient all-reduce / reduce-scatter (default fp32); bf16 halves its "
       "bytes, reduced with fp32 sums rounded to bf16 and widened back to fp32 for AdamW"},
      {"--seed", NULL, ARG_INT64, &seed, "S", "seed of the initialisation and the data order (default 1337)",
       .min = 0, .max = 0x1p63, .given = &g_seed},
      {"--ckpt-every", NULL, ARG_INT, &c.ckpt_every, "K", "checkpoint every K steps (default 0: only at the end)",
       .min = 0, .max = TRAIN_MAX_COUNT},
      {"--ckpt-async", NULL, ARG_FLAG, &ckpt_async, NULL,
       "write checkpoints in the background from a host snapshot; training goes on (the default)"},
      {"--no-ckpt-async", NULL, ARG_FLAG, &no_ckpt_async, NULL,
       "write each checkpoint before the next step (synchronous)"},
      {"--keep", NULL, ARG_INT, &c.keep, "K", "keep only the newest K checkpoints (default 0: all)",
       .min = 0, .max = 1 << 20},
      {"--resume", NULL, ARG_STRING, &c.resume, "DIR|auto", "continue from a checkpoint directory, or the newest in --out"},
      {"--eval-only", NULL, ARG_FLAG, &c.eval_only, NULL,
       "with --resume: print the checkpoint's validation loss on this layout and exit, no training"},
      {"--eval-every", NULL, ARG_INT, &c.eval_every, "K", "validation loss every K steps (default 0: at the end)",
       .min = 0, .max = TRAIN_MAX_COUNT},
      {"--eval-tokens", NULL, ARG_INT64, &c.eval_tokens, "N",
       "held-out tokens per validation: the first N / --seq-len sequences of the validation split, "
       "the same set on every layout and micro-batch count (default 65536; fewer if the split is short)",
       .min = 1, .max = 0x1p40},
      {"--log-every", NULL, ARG_INT, &c.log_every, "K", "progress line every K steps (default 10)",
       .min = 1, .max = TRAIN_MAX_COUNT},
      {"--threads", NULL, ARG_INT, &c.threads, "N", "GEMM threads per rank (OpenBLAS and oneDNN) (default 1)", .min = 1, .max = 1024},
      {"--quiet", NULL, ARG_FLAG, &c.quiet, NULL, "no progress lines"},
      {"--verbose", NULL, ARG_FLAG, &c.verbose, NULL, "details in the banner (every figure of the simulated device)"},
      {"--tp", NULL, ARG_INT, &c.tp, "T", "tensor-parallel ranks per stage; must divide --heads; GPT-2 only (default 1)",
       .min = 1, .max = 4096},
      {"--sequence-parallel", NULL, ARG_FLAG, &c.sequence_parallel, NULL,
       "split the LayerNorm/residual rows over the --tp ranks too (needs --tp >= 2)"},
      {"--recompute", NULL, ARG_STRING, &recompute, "none|selective|full",
       "activation recomputation in backward (default none)"},
      {"--pp", NULL, ARG_INT, &c.pp, "P", "pipeline stages (default 1)", .min = 1, .max = 4096},
      {"--dp", NULL, ARG_INT, &c.dp, "D", "data-parallel replicas (default 1); mpirun -np T*P*D", .min = 1, .max = 1 << 20},
      {"--schedule", NULL, ARG_STRING, &schedule, "gpipe|1f1b", "pipeline schedule (default gpipe)"},
      {"--stage-layers", NULL, ARG_STRING, &c.stage_layers, "L0,L1,..", "layers per stage (default: balanced by compute)"},
      {"--transport", NULL, ARG_STRING, &transport, "mpi|ofi", "collectives transport (default mpi)"},
      {"--ofi-provider", NULL, ARG_STRING, &c.ofi_provider, "NAME", "libfabric provider with --transport ofi (shm, tcp; default $FI_PROVIDER)"},
      {"--bucket-mb", NULL, ARG_DOUBLE, &c.bucket_mb, "MB", "gradient all-reduce bucket size in MiB (default 4)",
       .env = "STRATA_BUCKET_MB"},
      {"--zero", NULL, ARG_INT, &c.zero, "0|1", "ZeRO-1: shard the AdamW moments over the replicas (default 0)",
       .min = 0, .max = 1},
      {"--device", NULL, ARG_STRING, &c.device, "DEV", "simulated accelerator: trn1|trn2|trn3|h100|cpu|FILE.json (default cpu, calibrated at start-up)"},
      {"--device-mem", NULL, ARG_BYTES, &c.device_mem, "BYTES", "device memory per rank (default: the profile's HBM)",
       .min = 1, .max = 0x1p50},
  };
  int rc = args_parse("train", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]),
                      NULL, NULL);
  if (rc) return rc > 0 ? 0 : 2;
  sched_kind_t sched_kind = SCHED_GPIPE;
  if (schedule && schedule_parse_kind(schedule, &sched_kind)) {
    strata_error("train: --schedule must be gpipe or 1f1b, got '%s'", schedule);
    return 2;
  }
  coll_transport_kind_t transport_kind = COLL_TRANSPORT_MPI;
  if (transport && coll_parse_transport(transport, &transport_kind)) {
    strata_error("train: --transport must be mpi or ofi, got '%s'", transport);
    return 2;
  }
  gpt2_recompute_t recompute_mode = GPT2_RECOMPUTE_NONE;
  if (recompute && gpt2_parse_recompute(recompute, &recompute_mode)) {
    strata_error("train: --recompute must be none, selective or full, got '%s'", recompute);
    return 2;
  }
  if (precision) {
    mem_precision_t p;
    if (memory_parse_precision(precision, &p)) {
      strata_error("train: --precision must be " MEM_PRECISION_CHOICES ", got '%s'", precision);
      return 2;
    }
    c.precision = (int)p;
    c.given |= TRAIN_GIVEN_PRECISION;
  }
  if (grad_dtype) {
    if (strcmp(grad_dtype, "fp32") != 0 && strcmp(grad_dtype, "bf16") != 0) {
      strata_error("train: --grad-dtype must be fp32 or bf16, got '%s'", grad_dtype);
      return 2;
    }
    c.grad_bf16 = strcmp(grad_dtype, "bf16") == 0;
  }
  if (c.eval_only && !c.resume) {
    strata_error("train: --eval-only scores a checkpoint: add --resume DIR (or --resume auto)");
    return 2;
  }
  if (ckpt_async && no_ckpt_async) {
    strata_error("train: --ckpt-async and --no-ckpt-async contradict each other; pass one");
    return 2;
  }
  c.ckpt_async = !no_ckpt_async;
  if (arch) {
    if (strcmp(arch, "gpt") && strcmp(arch, "llama")) {
      strata_error("train: --arch must be gpt or llama, got '%s'", arch);
      return 2;
    }
    c.arch = strcmp(arch, "llama") ? CKPT_ARCH_GPT2 : CKPT_ARCH_LLAMA;
  }
  if (config && (rc = apply_model_config(config, &c, &tokenizer, &g))) return rc;
  const char *llama_flag = g.kv_heads ? "--kv-heads" : g.ffn ? "--ffn" : g.rms_norm_eps ? "--rms-norm-eps"
                           : g.rope_theta ? "--rope-theta" : NULL;
  if (llama_flag && c.arch != CKPT_ARCH_LLAMA) {
    strata_error("train: %s applies to Llama models only; add --arch llama", llama_flag);
    return 2;
  }
  c.recompute = (int)recompute_mode;
  if (schedule) c.schedule = (int)sched_kind;
  if (transport) c.transport = (int)transport_kind;
  const unsigned given_bits[][2] = {
      {(unsigned)g_steps, TRAIN_GIVEN_STEPS},   {(unsigned)g.layers, TRAIN_GIVEN_LAYERS},
      {(unsigned)g.heads, TRAIN_GIVEN_HEADS},   {(unsigned)g.dim, TRAIN_GIVEN_DIM},
      {(unsigned)g.ctx, TRAIN_GIVEN_CTX},       {(unsigned)g_batch, TRAIN_GIVEN_BATCH},
      {(unsigned)g_seq_len, TRAIN_GIVEN_SEQ_LEN}, {(unsigned)g_seed, TRAIN_GIVEN_SEED},
      {(unsigned)g_lr, TRAIN_GIVEN_LR},         {(unsigned)g_warmup, TRAIN_GIVEN_WARMUP},
      {(unsigned)g_min_lr, TRAIN_GIVEN_MIN_LR_RATIO}, {(unsigned)g_wd, TRAIN_GIVEN_WEIGHT_DECAY},
      {(unsigned)g_clip, TRAIN_GIVEN_GRAD_CLIP},  {(unsigned)g.arch, TRAIN_GIVEN_ARCH},
      {(unsigned)g.kv_heads, TRAIN_GIVEN_KV_HEADS}, {(unsigned)g.ffn, TRAIN_GIVEN_FFN},
      {(unsigned)g.rms_norm_eps, TRAIN_GIVEN_RMS_NORM_EPS}, {(unsigned)g.rope_theta, TRAIN_GIVEN_ROPE_THETA},
  };
  for (size_t i = 0; i < sizeof given_bits / sizeof given_bits[0]; i++)
    if (given_bits[i][0]) c.given |= given_bits[i][1];
  c.seed = (uint64_t)seed;
  if (g_lr) c.opt.lr = (float)lr;
  if (g_wd) c.opt.weight_decay = (float)wd;
  if (g_clip) c.opt.grad_clip = (float)clip;
  if (g_min_lr) c.opt.min_lr_ratio = (float)min_lr_ratio;
  c.opt.warmup_steps = warmup;

  /* text data through --tokenizer, or a resumed BPE model's own (--resume auto: the newest
   * checkpoint in --out; train itself reports one that is missing) */
  char ckpt[4096] = "", cerr[256];
  if (c.resume && strcmp(c.resume, "auto")) snprintf(ckpt, sizeof ckpt, "%s", c.resume);
  else if (c.resume && ckpt_find_latest(c.out_dir, ckpt, sizeof ckpt, cerr, sizeof cerr)) ckpt[0] = '\0';
  if ((rc = data_tokenizer_install("train", tokenizer, ckpt[0] ? ckpt : NULL))) return rc;
  if ((rc = carry_tokenizer(tokenizer, ckpt))) {
    data_tokenizer_remove();
    return rc;
  }
  if (cli_mpi_start()) return 1;
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const int distributed = world > 1 || c.tp != 1 || c.pp != 1 || c.dp != 1 || schedule ||
                          transport || c.stage_layers || c.zero != 0 || c.device || c.device_mem ||
                          c.sequence_parallel || recompute || c.grad_bf16;
  if (c.resume && !c.microbatches_given && !distributed) c.microbatches = 1; /* train_run takes the checkpoint's */
  /* a Llama model runs the one-rank loop (train.c; --dp D replicas of the whole model), or the
   * distributed job (train_dist.c) with --tp, --pp, --schedule, --stage-layers, a simulated
   * --device or --grad-dtype bf16 (grad_sync.h's bf16 reductions) */
  const int llama_pipe = c.tp != 1 || c.pp != 1 || schedule || c.stage_layers || c.device || c.device_mem ||
                         c.grad_bf16;
  const char *no_llama = c.sequence_parallel ? "--sequence-parallel" : recompute ? "--recompute" : NULL;
  if (c.arch == CKPT_ARCH_LLAMA && no_llama) {
    strata_error("train: %s is not supported with --arch llama, which trains with --tp T, --pp P "
                 "and --dp D [--zero 1] only; drop %s or use --arch gpt", no_llama, no_llama);
    rc = 2;
  } else if (c.arch == CKPT_ARCH_LLAMA && world != c.tp * c.pp * c.dp) {
    char tp[32] = "", pp[32] = "";
    if (c.tp != 1) snprintf(tp, sizeof tp, "--tp %d ", c.tp);
    if (c.pp != 1) snprintf(pp, sizeof pp, "--pp %d ", c.pp);
    strata_error("train: --arch llama with %s%s--dp %d needs mpirun -np %d (the job's rank count is %d)", tp, pp,
                 c.dp, c.tp * c.pp * c.dp, world);
    rc = 2;
  } else {
    rc = distributed && (c.arch != CKPT_ARCH_LLAMA || llama_pipe) ? train_run_dist(&c) : train_run(&c);
  }
  data_tokenizer_remove();
  return rc;
}
