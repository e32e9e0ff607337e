/* strata simulate -- predicts one training step of a GPT-2-style model on T x P x D simulated
 * accelerators (step time, tokens/s, MFU and HFU, memory per device, tensor-parallel,
 * pipeline-idle and exposed-communication shares, per-stage breakdown) with the layout,
 * schedule, device and memory models of the real trainer, in one process and without numerics.
 * `--sweep` tries every T x P x D = nodes, micro-batch count, ZeRO setting, sequence
 * parallelism and recomputation and ranks them; `--json` is for scripts. See
 * worker/sim/SIMULATION.md for the model. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cmd_simulate_validate.h"
#include "commands.h"
#include "device.h"
#include "layout.h"
#include "log.h"
#include "memory_model.h"
#include "schedule.h"
#include "simulate.h"

typedef struct {
  const char *model_name;
  layout_model_t model;
  device_t dev;
  double capacity_bytes;
  sim_options_t opt;
  int nodes, tp, pp, dp, micro, batch;
  int sweep_tp, sweep_sp, sweep_rc, sweep_vs, sweep_zero; /* --sweep: the given --tp /
                                                 --sequence-parallel / --recompute /
                                                 --virtual-stages / --zero hold those fixed
                                                 (else every value is tried) */
  const char *stage_layers;
  const char *trace_path; /* --trace: write the simulated timeline here */
  int explain;            /* --explain: print the time breakdown and the op table */
} sim_job_t;

#define PRESET_LIST                                                                               \
  "gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt3-1.3b, gpt3-6.7b, gpt3-13b, gpt3-175b, "          \
  "llama2-7b, llama2-13b, llama2-70b, llama3-8b, llama3-70b or 7b"


static const char *USAGE =
    "Predict a training step on simulated accelerators (no numerics, one process).\n\n"
    "  strata simulate --model gpt2-xl --device trn2 --nodes 64 --pp 4 --batch 512\n"
    "  strata simulate --model 7b --device trn1 --nodes 256 --tp 8 --pp 4 --dp 8\n"
    "  strata simulate --model 7b --device trn2 --nodes 256 --sweep\n\n"
    "Model: --model PRESET (GPT-2, GPT-3, Llama 2 and 3 shapes; default gpt2), --arch gpt|llama,\n"
    "and --layers/--dim/--heads/--kv-heads/--ffn/--vocab/--ctx/--tie-embeddings override it. --precision\n"
    "fp32|bf16|bf16-sr|fp8, --attention fused|unfused, --tp-overlap, --tp-comm-overlap. --explain shows where the time goes;\n"
    "--validate FILE.csv predicts measured jobs (worker/sim/validation.csv). Layout: --nodes N = --tp T x --pp P x --dp D (T\n"
    "default 1; give two of nodes, pp, dp); rank = (d*P + p)*T + t, so a tensor-parallel group\n"
    "is T consecutive ranks (one instance's fast link when T fits an instance; a larger T is\n"
    "warned about). --sequence-parallel (T > 1, ctx divisible by T) and --recompute\n"
    "none|selective|selective-mlp|full (Korthikanti et al. 2022; selective-mlp also re-runs the\n"
    "MLP, as NeuronX Distributed does). --virtual-stages V: Megatron-LM's\n"
    "interleaved 1F1B. --microbatches M (default: the largest divisor of batch/D up to 4P, with\n"
    "V > 1 a multiple of P); --batch is the global batch in sequences (default 512).\n"
    "Memory: --memory strata (default) counts Strata's own fp32 buffers, --memory mixed\n"
    "Megatron-style mixed precision in --dtype (worker/sim/SIMULATION.md). --sweep tries every\n"
    "T dividing the heads up to an instance's chips (beyond it, with a warning, only when none\n"
    "of those fits), P, D, M, interleaving (--virtual-stages 1, 2, 4), ZeRO 0 to 3, sequence parallelism\n"
    "and the least recomputation that fits; a given --tp, --sequence-parallel, --recompute,\n"
    "--virtual-stages or --zero is held fixed. Bucket size default 25 MiB (env STRATA_BUCKET_MB; with\n"
    "--zero-overlap Megatron-Core's buckets). Exit status 2 on invalid input.";

static void model_json(json_object *o, const sim_job_t *j) {
  json_object *m = json_object_new_object();
  json_object_object_add(m, "name", json_object_new_string(j->model_name));
  json_object_object_add(m, "layers", json_object_new_int(j->model.layers));
  json_object_object_add(m, "heads", json_object_new_int(j->model.heads));
  json_object_object_add(m, "dim", json_object_new_int(j->model.dim));
  json_object_object_add(m, "ctx", json_object_new_int(j->model.ctx));
  json_object_object_add(m, "vocab", json_object_new_int(j->model.vocab));
  json_object_object_add(m, "arch", json_object_new_string(layout_arch_name((layout_arch_t)j->model.arch)));
  json_object_object_add(m, "kv_heads", json_object_new_int(layout_model_kv_heads(&j->model)));
  json_object_object_add(m, "ffn", json_object_new_int(layout_model_ffn(&j->model)));
  json_object_object_add(m, "tie_embeddings", json_object_new_boolean(layout_model_tied(&j->model)));
  json_object_object_add(m, "params", json_object_new_int64(layout_params_total(&j->model)));
  json_object_object_add(o, "model", m);
  json_object_object_add(o, "device", json_object_new_string(j->dev.name));
  json_object_object_add(o, "dtype", json_object_new_string(device_dtype_name(j->opt.dtype)));
  json_object_object_add(o, "precision", json_object_new_string(memory_precision_name(j->opt.precision)));
  json_object_object_add(o, "grad_dtype", json_object_new_string(j->opt.grad_bf16 || j->opt.precision == MEM_PREC_BF16_SR ? "bf16" : "fp32"));
  json_object_object_add(o, "attention", json_object_new_string(j->opt.fused_attention ? "fused" : "unfused"));
  json_object_object_add(o, "projection", json_object_new_boolean(j->dev.projection));
  json_object_object_add(o, "capacity_bytes", json_object_new_double(j->capacity_bytes));
  json_object_object_add(o, "nodes", json_object_new_int(j->nodes));
  json_object_object_add(o, "batch", json_object_new_int(j->batch));
  json_object_object_add(o, "schedule", json_object_new_string(schedule_kind_name(j->opt.kind)));
  json_object_object_add(o, "virtual_stages", json_object_new_int(j->opt.vstages));
  json_object_object_add(o, "memory_accounting",
                         json_object_new_string(memory_accounting_name(j->opt.memory)));
}

static void result_fields(json_object *o, const layout_t *lay, const sim_options_t *opt,
                          const sim_result_t *r) {
  json_object_object_add(o, "tp", json_object_new_int(lay->tp));
  json_object_object_add(o, "pp", json_object_new_int(lay->pp));
  json_object_object_add(o, "dp", json_object_new_int(lay->dp));
  json_object_object_add(o, "microbatches", json_object_new_int(lay->micro));
  json_object_object_add(o, "micro_batch", json_object_new_int(lay->micro_batch));
  json_object_object_add(o, "zero", json_object_new_int(opt->zero));
  json_object_object_add(o, "zero_overlap", json_object_new_boolean(opt->zero == 1 && opt->zero_overlap));
  json_object_object_add(o, "shard_group", json_object_new_int(opt->shard_group));
  json_object_object_add(o, "tp_overlap", json_object_new_boolean(opt->tp_overlap));
  json_object_object_add(o, "tp_comm_overlap",
                         json_object_new_boolean(opt->tp_overlap == SIM_TP_OVERLAP_UB && opt->sequence_parallel));
  json_object_object_add(o, "sequence_parallel", json_object_new_boolean(opt->sequence_parallel));
  json_object_object_add(o, "recompute", json_object_new_string(memory_recompute_name(opt->recompute)));
  json_object_object_add(o, "step_s", json_object_new_double(r->step_s));
  json_object_object_add(o, "tokens_per_s", json_object_new_double(r->tokens_per_s));
  json_object_object_add(o, "mfu", json_object_new_double(r->mfu));
  json_object_object_add(o, "hfu", json_object_new_double(r->hfu));
  /* tensor-parallel communication per rank and step, the slowest stage */
  double tp_s = 0;
  for (int s = 0; s < lay->pp; s++)
    if (r->stages[s].tp_comm_s > tp_s) tp_s = r->stages[s].tp_comm_s;
  json_object_object_add(o, "tp_comm_s", json_object_new_double(tp_s));
  json_object_object_add(o, "compute_share", json_object_new_double(r->compute_share));
  json_object_object_add(o, "tp_comm_share", json_object_new_double(r->tp_comm_share));
  json_object_object_add(o, "pipeline_idle_share", json_object_new_double(r->pipeline_idle_share));
  json_object_object_add(o, "exposed_comm_share", json_object_new_double(r->exposed_comm_share));
  json_object_object_add(o, "optimizer_share", json_object_new_double(r->optimizer_share));
  json_object_object_add(o, "peak_mem_bytes", json_object_new_double(r->peak_mem_bytes));
  json_object_object_add(o, "fits", json_object_new_boolean(r->fits));
}

/* Writes the simulated timeline of r to j->trace_path. 0, or -1 after saying why. */
static int write_trace(const sim_job_t *j, const sim_result_t *r) {
  FILE *tf = fopen(j->trace_path, "w");
  int bad = !tf || sim_write_chrome_trace(r, tf, 0, "strata simulate");
  if (tf && fclose(tf)) bad = 1;
  if (bad) {
    strata_error("simulate: cannot write the trace to %s (check the directory exists and is "
                 "writable)",
                 j->trace_path);
    return -1;
  }
  return 0;
}

/* A stage of the --json result: its layers, times and memory per device. */
static json_object *stage_json(const layout_t *lay, int s, const sim_stage_result_t *sr) {
  json_object *e = json_object_new_object();
  json_object_object_add(e, "stage", json_object_new_int(s));
  json_object_object_add(e, "layer_begin", json_object_new_int(lay->layer_begin[s]));
  json_object_object_add(e, "layer_end", json_object_new_int(lay->layer_begin[s + 1]));
  json_object_object_add(e, "params", json_object_new_int64(layout_stage_params(lay, s)));
  json_object_object_add(e, "fwd_s", json_object_new_double(sr->fwd_s));
  json_object_object_add(e, "bwd_s", json_object_new_double(sr->bwd_s));
  json_object_object_add(e, "rank_params", json_object_new_int64(layout_rank_params(lay, s)));
  json_object_object_add(e, "fwd_tp_s", json_object_new_double(sr->fwd_tp_s));
  json_object_object_add(e, "bwd_tp_s", json_object_new_double(sr->bwd_tp_s));
  json_object_object_add(e, "compute_s", json_object_new_double(sr->compute_s));
  json_object_object_add(e, "tp_comm_s", json_object_new_double(sr->tp_comm_s));
  json_object_object_add(e, "idle_s", json_object_new_double(sr->idle_s));
  json_object_object_add(e, "exposed_comm_s", json_object_new_double(sr->exposed_comm_s));
  json_object_object_add(e, "comm_busy_s", json_object_new_double(sr->comm_busy_s));
  json_object_object_add(e, "optimizer_s", json_object_new_double(sr->optimizer_s));
  json_object_object_add(e, "in_flight", json_object_new_int(sr->mem.in_flight));
  json_object *mem = json_object_new_object();
  json_object_object_add(mem, "params_bytes", json_object_new_double(sr->mem.params_bytes));
  json_object_object_add(mem, "grads_bytes", json_object_new_double(sr->mem.grads_bytes));
  json_object_object_add(mem, "optimizer_bytes", json_object_new_double(sr->mem.optimizer_bytes));
  json_object_object_add(mem, "activations_bytes",
                         json_object_new_double(sr->mem.activations_bytes));
  json_object_object_add(mem, "workspace_bytes", json_object_new_double(sr->mem.workspace_bytes));
  json_object_object_add(mem, "comm_bytes", json_object_new_double(sr->mem.comm_bytes));
  json_object_object_add(mem, "total_bytes", json_object_new_double(sr->mem.total_bytes));
  json_object_object_add(e, "memory", mem);
  return e;
}

/* The rank map: the order's formula, and [t, p, d] of every rank up to RANK_MAP_MAX ranks. */
#define RANK_MAP_MAX 4096
static json_object *rank_map_json(const layout_t *lay) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "order", json_object_new_string("rank = (d * pp + p) * tp + t"));
  if (lay->world <= RANK_MAP_MAX) {
    json_object *a = json_object_new_array();
    for (int r = 0; r < lay->world; r++) {
      json_object *e = json_object_new_array();
      json_object_array_add(e, json_object_new_int(layout_tp_of(lay, r)));
      json_object_array_add(e, json_object_new_int(layout_stage_of(lay, r)));
      json_object_array_add(e, json_object_new_int(layout_replica_of(lay, r)));
      json_object_array_add(a, e);
    }
    json_object_object_add(o, "ranks", a);
  }
  return o;
}

/* The op table of --explain (sim_op_times): seconds, FLOPs and bytes of one micro-batch. */
static json_object *ops_json(const layout_t *lay, const sim_job_t *j) {
  sim_op_time_t ops[3 * LAYOUT_MAX_OPS];
  int n = sim_op_times(lay, &j->dev, &j->opt, ops, (int)(sizeof ops / sizeof ops[0]));
  json_object *a = json_object_new_array();
  for (int i = 0; i < n; i++) {
    json_object *x = json_object_new_object();
    json_object_object_add(x, "part", json_object_new_string(ops[i].part));
    json_object_object_add(x, "name", json_object_new_string(ops[i].name));
    json_object_object_add(x, "fwd_s", json_object_new_double(ops[i].fwd_s));
    json_object_object_add(x, "bwd_s", json_object_new_double(ops[i].bwd_s));
    json_object_object_add(x, "flops", json_object_new_double(ops[i].flops));
    json_object_object_add(x, "bytes", json_object_new_double(ops[i].bytes));
    json_object_object_add(x, "recomputed", json_object_new_boolean(ops[i].recomputed));
    json_object_array_add(a, x);
  }
  return a;
}

static void print_one_json(const sim_job_t *j, const layout_t *lay, const sim_result_t *r,
                           const char *fitmsg) {
  json_object *o = json_object_new_object();
  model_json(o, j);
  result_fields(o, lay, &j->opt, r);
  json_object_object_add(o, "model_flops", json_object_new_double(r->model_flops));
  json_object_object_add(o, "hw_flops", json_object_new_double(r->hw_flops));
  json_object_object_add(o, "op_flops", json_object_new_double(r->op_flops));
  json_object_object_add(o, "narayanan_flops", json_object_new_double(r->narayanan_flops));
  json_object_object_add(o, "rank_map", rank_map_json(lay));
  json_object_object_add(o, "overlap", json_object_new_boolean(j->opt.overlap));
  if (sim_megatron_buckets(&j->opt))
    json_object_object_add(o, "bucket_params",
                           json_object_new_double(sim_megatron_bucket(0, 0, lay->dp)));
  else
    json_object_object_add(o, "bucket_bytes", json_object_new_double(j->opt.bucket_bytes));
  if (!r->fits) json_object_object_add(o, "fit_message", json_object_new_string(fitmsg));
  json_object *st = json_object_new_array();
  for (int s = 0; s < lay->pp; s++) json_object_array_add(st, stage_json(lay, s, &r->stages[s]));
  json_object_object_add(o, "stages", st);
  json_object_object_add(o, "ops", ops_json(lay, j));
  sim_print_json(o);
  json_object_put(o);
}

static void print_one_text(const sim_job_t *j, const layout_t *lay, const sim_result_t *r,
                           const char *fitmsg) {
  char dbuf[512], b1[32], b2[32];
  device_describe(&j->dev, dbuf, sizeof dbuf);
  printf("model: %s (%s), %.3fB parameters (L=%d, H=%d, KV=%d, C=%d, F=%d, T=%d, V=%d, %s head)\n",
         j->model_name, layout_arch_name((layout_arch_t)j->model.arch),
         layout_params_total(&j->model) / 1e9, j->model.layers, j->model.heads,
         layout_model_kv_heads(&j->model), j->model.dim, layout_model_ffn(&j->model), j->model.ctx,
         j->model.vocab, layout_model_tied(&j->model) ? "tied" : "untied");
  printf("device: %s; compute dtype %s; memory %s; attention %s\n", dbuf,
         device_dtype_name(j->opt.dtype),
         j->opt.precision != MEM_PREC_NONE  ? memory_precision_name(j->opt.precision)
         : j->opt.memory == MEM_ACCOUNT_MIXED ? "in mixed precision (Megatron-style)"
                                              : "as Strata allocates it (fp32)",
         j->opt.fused_attention ? "fused" : "unfused");
  if (j->dev.projection) printf("NOTE: %s is a projection, not a shipped chip\n", j->dev.name);
  if (lay->tp > 1)
    printf("tensor parallel: %d ranks per stage, sequence parallelism %s, recomputation %s; %s\n",
           lay->tp, j->opt.sequence_parallel ? "on" : "off", memory_recompute_name(j->opt.recompute),
           !j->opt.tp_overlap ? "per-layer collectives exposed (not overlapped)"
           : j->opt.tp_overlap == SIM_TP_OVERLAP_UB && j->opt.sequence_parallel
               ? "every layer collective pipelined with its GEMM (userbuffers), the column-parallel "
                 "backward's beside its GEMMs"
           : j->opt.sequence_parallel
               ? "column-parallel backward overlapped (input re-gathered beside the input-gradient "
                 "GEMM, its gradient reduce-scattered beside the weight-gradient GEMM)"
               : "column-parallel backward overlapped (input-gradient all-reduce beside the "
                 "weight-gradient GEMM)");
  else if (j->opt.recompute != MEM_RECOMPUTE_NONE)
    printf("recomputation %s\n", memory_recompute_name(j->opt.recompute));
  char vs[64] = "";
  if (j->opt.vstages > 1 && lay->pp > 1)
    snprintf(vs, sizeof vs, " interleaved, %d chunks per stage", j->opt.vstages);
  char bucket[128];
  if (sim_megatron_buckets(&j->opt))
    snprintf(bucket, sizeof bucket, "Megatron-Core buckets (%.0fM parameters%s)",
             sim_megatron_bucket(0, 0, lay->dp) / 1e6,
             j->opt.vstages > 1 && lay->pp > 1 ? " on stage 0's first chunk, one on every other chunk"
             : lay->pp > 1                     ? " on stage 0, one on later stages"
                                               : "");
  else
    snprintf(bucket, sizeof bucket, "bucket %.1f MiB", j->opt.bucket_bytes / 1048576.0);
  if (j->opt.zero == MEM_ZERO_FULL_SHARD && j->opt.shard_group && j->opt.shard_group < lay->dp)
    printf("schedule: %s%s, ZeRO-3 hybrid (FSDP HYBRID_SHARD): shards over %d replicas, %d copies; "
           "each layer's parameters gathered before its forward and its backward, its gradients "
           "reduce-scattered in the shard group and all-reduced over the copies, every "
           "micro-batch, the next layer's gather beside the compute\n",
           schedule_kind_name(j->opt.kind), vs, j->opt.shard_group, lay->dp / j->opt.shard_group);
  else if (j->opt.zero == MEM_ZERO_FULL_SHARD)
    printf("schedule: %s%s, ZeRO-3 (FSDP FULL_SHARD): each layer's parameters gathered before its "
           "forward and its backward, its gradients reduce-scattered after its backward, every "
           "micro-batch, the next layer's gather beside the compute\n",
           schedule_kind_name(j->opt.kind), vs);
  else if (j->opt.zero == MEM_ZERO_SHARD_GRADS)
    printf("schedule: %s%s, ZeRO-2 (DeepSpeed stage 2): every micro-batch's gradients "
           "reduce-scattered in %.1f MiB buckets beside its backward, parameter all-gather after AdamW\n",
           schedule_kind_name(j->opt.kind), vs, j->opt.bucket_bytes / 1048576.0);
  else if (j->opt.zero && j->opt.zero_overlap)
    printf("schedule: %s%s, ZeRO-1 overlapped: %s reduce-scatters %s backward, "
           "parameter all-gather beside the next forward\n",
           schedule_kind_name(j->opt.kind), vs, bucket, j->opt.overlap ? "overlapped with" : "after");
  else if (j->opt.zero)
    printf("schedule: %s%s, ZeRO-%d: gradient reduce-scatter after backward\n",
           schedule_kind_name(j->opt.kind), vs, j->opt.zero);
  else
    printf("schedule: %s%s, ZeRO-%d, bucket %.1f MiB, all-reduce %s backward\n",
           schedule_kind_name(j->opt.kind), vs, j->opt.zero, j->opt.bucket_bytes / 1048576.0,
           j->opt.overlap ? "overlapped with" : "after");
  layout_print(lay, stdout);
  /* per stage and rank: fwd/bwd of one micro-batch (TP communication included), then over the
   * step the math, the tensor-parallel communication, the pipeline's idle time, the exposed
   * and the busy data-parallel communication, the optimizer */
  printf("\n%-6s %-9s %9s %9s %10s %10s %10s %10s %10s %9s %7s %11s\n", "stage", "layers",
         "fwd_ms", "bwd_ms", "compute_ms", "tpcomm_ms", "idle_ms", "exposed_ms", "dpcomm_ms",
         "optim_ms", "inflight", "memory");
  for (int s = 0; s < lay->pp; s++) {
    const sim_stage_result_t *sr = &r->stages[s];
    char lr[32];
    snprintf(lr, sizeof lr, "%d-%d", lay->layer_begin[s], lay->layer_begin[s + 1] - 1);
    printf("%-6d %-9s %9.3f %9.3f %10.3f %10.3f %10.3f %10.3f %10.3f %9.3f %7d %11s\n", s, lr,
           sr->fwd_s * 1e3, sr->bwd_s * 1e3, sr->compute_s * 1e3, sr->tp_comm_s * 1e3,
           sr->idle_s * 1e3, sr->exposed_comm_s * 1e3, sr->comm_busy_s * 1e3,
           sr->optimizer_s * 1e3, sr->mem.in_flight,
           memory_format_bytes(sr->mem.total_bytes, b1, sizeof b1));
  }
  printf("\nstep time %.4f s, %.0f tokens/s, MFU %.1f%%, HFU %.1f%%\n", r->step_s,
         r->tokens_per_s, 100 * r->mfu, 100 * r->hfu);
  double sh[SIM_NSHARES];
  sim_result_shares(r, sh);
  printf("time shares: compute %.1f%%, tensor-parallel communication %.1f%%, pipeline idle "
         "%.1f%%, exposed communication %.1f%%, optimizer %.1f%%\n",
         100 * sh[SIM_SHARE_COMPUTE], 100 * sh[SIM_SHARE_TP], 100 * sh[SIM_SHARE_BUBBLE],
         100 * sh[SIM_SHARE_DP], 100 * sh[SIM_SHARE_OPTIMIZER]);
  printf("memory: peak %s per device (stage %d) of %s: %s\n",
         memory_format_bytes(r->peak_mem_bytes, b1, sizeof b1), r->worst_stage,
         memory_format_bytes(j->capacity_bytes, b2, sizeof b2), r->fits ? "fits" : "DOES NOT FIT");
  if (!r->fits) printf("%s\n", fitmsg);
  if (j->explain) {
    sim_print_explain(lay, r, stdout);
    sim_print_op_table(lay, &j->dev, &j->opt, stdout);
  }
}

/* One layout: simulate, optionally write its timeline, print the result. 0, 1 or 2 (a layout
 * that does not divide). */
static int run_one(const sim_job_t *j, int as_json) {
  int rc = 1;
  char err[1024];
  layout_t *lay = malloc(sizeof *lay);
  sim_result_t r = {0};
  if (!lay) return 1;
  if (layout_init(lay, &j->model, j->nodes, j->tp, j->pp, j->dp, j->micro, j->batch, j->stage_layers,
                  err, sizeof err) ||
      sim_check_options(lay, &j->opt, err, sizeof err)) {
    strata_error("simulate: %s", err);
    rc = 2;
    goto free_lay;
  }
  if (sim_tp_link_note(lay, &j->dev, err, sizeof err)) strata_warn("simulate: %s", err);
  sim_options_t opt = j->opt;
  opt.record_events = j->trace_path != NULL;
  if (sim_simulate(lay, &j->dev, &opt, j->capacity_bytes, &r, err, sizeof err)) {
    strata_error("%s", err);
    goto free_lay;
  }
  if (j->trace_path && write_trace(j, &r)) goto free_lay;
  char fitmsg[2048] = "";
  mem_options_t mo = sim_mem_options(&j->opt);
  mem_search_t search = {j->dev.chips_per_instance, 1};
  memory_fit_check_opt(lay, &mo, &search, j->capacity_bytes, fitmsg, sizeof fitmsg);
  if (as_json) print_one_json(j, lay, &r, fitmsg);
  else print_one_text(j, lay, &r, fitmsg);
  rc = 0;
  fflush(stdout); /* before MPI_Finalize and any exit-time tooling */
free_lay:
  sim_result_free(&r);
  free(lay);
  return rc;
}

typedef struct {
  int tp, pp, dp, micro, vs, zero, sp;
  mem_recompute_t rc;
  double step_s, tokens_per_s, mfu, hfu, tp_share, idle, exposed, peak;
  int fits;
} sweep_row_t;

static int cmp_rows(const void *a, const void *b) {
  const sweep_row_t *x = a, *y = b;
  if (x->tokens_per_s != y->tokens_per_s) return x->tokens_per_s < y->tokens_per_s ? 1 : -1;
  if (x->pp != y->pp) return x->pp - y->pp;
  return x->tp - y->tp;
}

/* The sweep's rows, growing. */
typedef struct {
  sweep_row_t *v;
  int n, cap;
} sweep_rows_t;

/* Simulates one sweep layout with options o into a new row (*fits: whether it fits). 0, or 1
 * after saying why. */
static int sweep_add(const sim_job_t *j, const layout_t *lay, const sim_options_t *o,
                     sweep_rows_t *rows, int *fits) {
  char err[1024];
  sim_result_t r;
  if (sim_simulate(lay, &j->dev, o, j->capacity_bytes, &r, err, sizeof err)) {
    strata_error("%s", err);
    return 1;
  }
  if (rows->n == rows->cap) {
    int cap = rows->cap ? 2 * rows->cap : 64;
    sweep_row_t *nr = realloc(rows->v, sizeof *nr * (size_t)cap);
    if (!nr) {
      sim_result_free(&r);
      strata_error("simulate --sweep: out of memory for %d rows", cap);
      return 1;
    }
    rows->v = nr;
    rows->cap = cap;
  }
  double sh[SIM_NSHARES];
  sim_result_shares(&r, sh);
  rows->v[rows->n++] = (sweep_row_t){lay->tp,
                                     lay->pp,
                                     lay->dp,
                                     lay->micro,
                                     o->vstages,
                                     o->zero,
                                     o->sequence_parallel,
                                     o->recompute,
                                     r.step_s,
                                     r.tokens_per_s,
                                     r.mfu,
                                     r.hfu,
                                     sh[SIM_SHARE_TP],
                                     sh[SIM_SHARE_BUBBLE],
                                     sh[SIM_SHARE_DP],
                                     r.peak_mem_bytes,
                                     r.fits};
  *fits = r.fits;
  sim_result_free(&r);
  return 0;
}

/* sweep_collect's context. */
typedef struct {
  const sim_job_t *j;
  sweep_rows_t *rows;
  int any_fits;
} sweep_ctx_t;

/* One sweep layout: with D > 1 ZeRO 0, 1, 2 and 3 (--zero-overlap on ZeRO-1's), with T > 1
 * sequence parallelism off and on, and recomputation none, then selective, then full until one
 * fits (more recomputation is only slower); a given --sequence-parallel / --recompute / --zero
 * is held fixed. 0, or 1 after saying why. */
static int sweep_layout(const layout_t *lay, void *ctx) {
  sweep_ctx_t *c = ctx;
  const sim_job_t *j = c->j;
  const int T = lay->tp;
  /* interleaving: a given --virtual-stages alone, else 1, 2 and 4 chunks where they apply */
  const int tried[] = {1, 2, 4}, nv = j->sweep_vs ? 1 : 3;
  for (int vi = 0; vi < nv; vi++) {
    sim_options_t o = j->opt;
    o.vstages = j->sweep_vs ? j->opt.vstages : tried[vi];
    if (lay->pp == 1 && o.vstages > 1) { /* no pipeline to interleave: once, plain */
      if (vi > 0) continue;
      o.vstages = 1;
    }
    if (o.vstages > 1 && sim_check_options(lay, &o, NULL, 0)) continue; /* not this P, M, L */
    for (int sp = j->sweep_sp ? 1 : 0; sp <= (T > 1); sp++) {
      if (sp && j->model.ctx % T) continue;
      const int z_lo = j->sweep_zero && lay->dp > 1 ? j->opt.zero : 0;
      const int z_hi = lay->dp == 1 ? 0 : j->sweep_zero ? z_lo : MEM_ZERO_FULL_SHARD;
      for (int z = z_lo; z <= z_hi; z++) {
        int rc_lo = j->sweep_rc ? (int)j->opt.recompute : 0;
        int rc_hi = j->sweep_rc ? rc_lo : MEM_RECOMPUTE_COUNT - 1;
        for (int rc = rc_lo; rc <= rc_hi; rc++) {
          o.zero = z;
          o.zero_overlap = z == 1 && j->opt.zero_overlap;
          o.sequence_parallel = sp;
          o.recompute = (mem_recompute_t)rc;
          int fits = 0;
          if (sweep_add(j, lay, &o, c->rows, &fits)) return 1;
          c->any_fits |= fits;
          if (fits) break;
        }
      }
    }
  }
  return 0;
}

/* Simulates every T x P x D = nodes with T in [tp_lo, tp_hi] (layout_for_each) through
 * sweep_layout into rows. *any_fits: whether some row fits. 0, or 1 after saying why. */
static int sweep_collect(const sim_job_t *j, layout_t *lay, int tp_lo, int tp_hi,
                         sweep_rows_t *rows, int *any_fits) {
  sweep_ctx_t c = {j, rows, *any_fits};
  int rc = layout_for_each(&j->model, j->nodes, j->batch, tp_lo, tp_hi, lay, sweep_layout, &c);
  *any_fits = c.any_fits;
  return rc;
}

static void print_sweep_json(const sim_job_t *j, const sweep_row_t *rows, int nrows, int best) {
  json_object *o = json_object_new_object();
  model_json(o, j);
  json_object *arr = json_object_new_array();
  for (int i = 0; i < nrows; i++) {
    json_object *e = json_object_new_object();
    json_object_object_add(e, "tp", json_object_new_int(rows[i].tp));
    json_object_object_add(e, "pp", json_object_new_int(rows[i].pp));
    json_object_object_add(e, "dp", json_object_new_int(rows[i].dp));
    json_object_object_add(e, "microbatches", json_object_new_int(rows[i].micro));
    json_object_object_add(e, "virtual_stages", json_object_new_int(rows[i].vs));
    json_object_object_add(e, "zero", json_object_new_int(rows[i].zero));
    json_object_object_add(e, "sequence_parallel", json_object_new_boolean(rows[i].sp));
    json_object_object_add(e, "recompute", json_object_new_string(memory_recompute_name(rows[i].rc)));
    json_object_object_add(e, "step_s", json_object_new_double(rows[i].step_s));
    json_object_object_add(e, "tokens_per_s", json_object_new_double(rows[i].tokens_per_s));
    json_object_object_add(e, "mfu", json_object_new_double(rows[i].mfu));
    json_object_object_add(e, "hfu", json_object_new_double(rows[i].hfu));
    json_object_object_add(e, "tp_comm_share", json_object_new_double(rows[i].tp_share));
    json_object_object_add(e, "pipeline_idle_share", json_object_new_double(rows[i].idle));
    json_object_object_add(e, "exposed_comm_share", json_object_new_double(rows[i].exposed));
    json_object_object_add(e, "peak_mem_bytes", json_object_new_double(rows[i].peak));
    json_object_object_add(e, "fits", json_object_new_boolean(rows[i].fits));
    json_object_array_add(arr, e);
  }
  json_object_object_add(o, "rows", arr);
  json_object_object_add(o, "best",
                         best >= 0 ? json_object_get(json_object_array_get_idx(arr, (size_t)best))
                                   : NULL);
  sim_print_json(o);
  json_object_put(o);
}

static void print_sweep_text(const sim_job_t *j, const sweep_row_t *rows, int nrows, int best) {
  char b1[32], b2[32];
  char vs[80] = ", interleaving 1, 2 or 4 chunks per stage (V) where P > 1";
  if (j->sweep_vs) snprintf(vs, sizeof vs, ", %d chunks per stage (V) where P > 1", j->opt.vstages);
  printf("sweep: %s on %d x %s (%s), global batch %d sequences of %d tokens, schedule %s%s, "
         "capacity %s per device\n",
         j->model_name, j->nodes, j->dev.name, device_dtype_name(j->opt.dtype), j->batch,
         j->model.ctx, schedule_kind_name(j->opt.kind), vs,
         memory_format_bytes(j->capacity_bytes, b2, sizeof b2));
  printf("%4s %5s %5s %5s %2s %4s %3s %13s %10s %13s %7s %7s %6s %8s %9s %11s %5s\n", "tp", "pp",
         "dp", "M", "V", "zero", "sp", "recompute", "step_s", "tokens/s", "MFU%", "HFU%", "tp%", "idle%",
         "exposed%", "peak_mem", "fits");
  for (int i = 0; i < nrows; i++)
    printf("%4d %5d %5d %5d %2d %4d %3s %13s %10.4f %13.0f %7.1f %7.1f %6.1f %8.1f %9.1f %11s %5s%s\n",
           rows[i].tp, rows[i].pp, rows[i].dp, rows[i].micro, rows[i].vs, rows[i].zero,
           rows[i].sp ? "on" : "-", memory_recompute_name(rows[i].rc), rows[i].step_s,
           rows[i].tokens_per_s, 100 * rows[i].mfu, 100 * rows[i].hfu, 100 * rows[i].tp_share,
           100 * rows[i].idle, 100 * rows[i].exposed,
           memory_format_bytes(rows[i].peak, b1, sizeof b1), rows[i].fits ? "yes" : "NO",
           i == best ? "  <- best" : "");
  if (best >= 0) {
    const sweep_row_t *w = &rows[best];
    char vflag[48] = "";
    if (w->vs > 1) snprintf(vflag, sizeof vflag, " --virtual-stages %d", w->vs);
    printf("best: --pp %d --dp %d --microbatches %d --zero %d%s --schedule %s%s --tp %d%s%s%s%s: %.0f "
           "tokens/s, MFU %.1f%%, peak %s per device\n",
           w->pp, w->dp, w->micro, w->zero, w->zero == 1 && j->opt.zero_overlap ? " --zero-overlap" : "",
           schedule_kind_name(j->opt.kind), vflag, w->tp,
           w->tp < 2 || !j->opt.tp_overlap                          ? ""
           : j->opt.tp_overlap == SIM_TP_OVERLAP_UB && w->sp ? " --tp-comm-overlap"
                                                             : " --tp-overlap",
           w->sp ? " --sequence-parallel" : "", w->rc != MEM_RECOMPUTE_NONE ? " --recompute " : "",
           w->rc != MEM_RECOMPUTE_NONE ? memory_recompute_name(w->rc) : "", w->tokens_per_s,
           100 * w->mfu, memory_format_bytes(w->peak, b1, sizeof b1));
  } else {
    printf("best: none fits in %s per device; use more nodes, a smaller batch or a smaller model\n",
           memory_format_bytes(j->capacity_bytes, b1, sizeof b1));
  }
}

/* --sweep: every layout ranked by tokens/s, the fastest that fits marked best. 0, 1 or 2 (no
 * layout divides). */
static int run_sweep(const sim_job_t *j, int as_json) {
  int rc = 1;
  sweep_rows_t rows = {0};
  layout_t *lay = malloc(sizeof *lay);
  const int K = j->dev.chips_per_instance;
  int any_fits = 0;
  if (!lay) goto free_all;
  /* a given --tp alone; else T up to an instance, and beyond it only when none of those fits */
  if (sweep_collect(j, lay, j->sweep_tp ? j->tp : 1, j->sweep_tp ? j->tp : K, &rows, &any_fits))
    goto free_all;
  if (!j->sweep_tp && !any_fits && K < j->model.heads && K < j->nodes) {
    strata_warn("simulate --sweep: no layout with --tp up to %d (one %s instance) fits; trying "
                "larger --tp, whose tensor-parallel groups span instances and all-reduce over the "
                "slower inter-instance network",
                K, j->dev.name);
    if (sweep_collect(j, lay, K + 1, j->model.heads, &rows, &any_fits)) goto free_all;
  }
  if (rows.n == 0) {
    strata_error(
        "simulate --sweep: no layout of %d nodes divides the global batch %d (T must divide the "
        "nodes and the %d heads%s, P must divide N / T and be <= %d layers, D must divide the "
        "batch); change --batch or --nodes",
        j->nodes, j->batch, j->model.heads, j->sweep_sp ? " and the sequence length" : "",
        j->model.layers);
    rc = 2;
    goto free_all;
  }
  qsort(rows.v, (size_t)rows.n, sizeof *rows.v, cmp_rows);
  int best = -1;
  for (int i = 0; i < rows.n && best < 0; i++)
    if (rows.v[i].fits) best = i;
  char note[1024];
  if (best >= 0 && rows.v[best].tp > 1 &&
      !layout_init(lay, &j->model, j->nodes, rows.v[best].tp, rows.v[best].pp, rows.v[best].dp,
                   rows.v[best].micro, j->batch, NULL, note, sizeof note) &&
      sim_tp_link_note(lay, &j->dev, note, sizeof note))
    strata_warn("simulate --sweep: the best layout: %s", note);
  if (as_json) print_sweep_json(j, rows.v, rows.n, best);
  else print_sweep_text(j, rows.v, rows.n, best);
  rc = 0;
  fflush(stdout);
free_all:
  free(rows.v);
  free(lay);
  return rc;
}

/* Largest simulated job, devices. */
#define SIM_MAX_NODES (1 << 24)

/* The command line of `strata simulate`. */
typedef struct {
  const char *trace, *model, *device, *schedule, *dtype, *stage_layers, *recompute;
  const char *arch, *precision, *attention, *validate, *grad_dtype, *tie;
  int layers, heads, dim, ctx, vocab, kv_heads, ffn, explain;
  int nodes, tp, pp, dp, micro, zero, batch, sweep, as_json, no_overlap, seq_par, vstages;
  int zero_overlap, tp_overlap, tp_comm_overlap, shard_group;
  const char *memory;
  /* which of them the command line set (the model preset and the layout fill in the rest) */
  int g_layers, g_heads, g_dim, g_ctx, g_vocab, g_micro, g_bucket, g_tp, g_recompute, g_kv, g_ffn;
  int g_vstages, g_zero;
  double bucket_mb;
  size_t device_mem;
} sim_flags_t;

/* The model (a preset, then the shape flags), the device, dtype, schedule and options. 0, or 2
 * after saying what is wrong. */
static int job_from_flags(const sim_flags_t *f, sim_job_t *j) {
  char err[512];
  j->model_name = f->model ? f->model : "gpt2";
  if (layout_model_preset(j->model_name, &j->model)) {
    strata_error("simulate: unknown --model '%s' (use %s)", f->model, PRESET_LIST);
    return 2;
  }
  layout_arch_t arch = (layout_arch_t)j->model.arch;
  if (f->arch && layout_parse_arch(f->arch, &arch)) {
    strata_error("simulate: --arch '%s' unknown (use gpt or llama)", f->arch);
    return 2;
  }
  layout_tie_t tie = LAYOUT_TIE_ARCH;
  if (f->tie && layout_parse_tie(f->tie, &tie)) {
    strata_error("simulate: --tie-embeddings '%s' unknown (use yes or no)", f->tie);
    return 2;
  }
  if (f->g_layers || f->g_heads || f->g_dim || f->g_ctx || f->g_vocab || f->g_kv || f->g_ffn ||
      (int)arch != j->model.arch || f->tie) {
    if (!f->model) j->model_name = "custom";
    if ((int)arch != j->model.arch) j->model.kv_heads = j->model.ffn = 0; /* the family's defaults */
    j->model.arch = arch;
    if (f->tie) j->model.tie = tie;
    if (f->g_layers) j->model.layers = f->layers;
    if (f->g_heads) j->model.heads = f->heads;
    if (f->g_dim) j->model.dim = f->dim;
    if (f->g_ctx) j->model.ctx = f->ctx;
    if (f->g_vocab) j->model.vocab = f->vocab;
    if (f->g_kv) j->model.kv_heads = f->kv_heads;
    else if (f->g_heads && j->model.kv_heads && f->heads % j->model.kv_heads)
      j->model.kv_heads = 0; /* the preset's grouping no longer divides: plain attention */
    if (f->g_ffn) j->model.ffn = f->ffn;
    else if (f->g_dim && j->model.arch == LAYOUT_ARCH_GPT) j->model.ffn = 0; /* 4 C */
  }
  if (layout_model_validate(&j->model, err, sizeof err)) {
    strata_error("simulate: %s", err);
    return 2;
  }
  if (device_resolve(f->device, &j->dev, err, sizeof err)) {
    strata_error("simulate: %s", err);
    return 2;
  }
  j->opt = sim_options_default();
  if (j->dev.projection)
    strata_warn("simulate: the %s profile is a projection: %s is announced but not shipped, and "
                "every figure beyond the announcement is an assumption (worker/sim/SIMULATION.md)",
                j->dev.name, j->dev.name);
  /* Strata computes in fp32 */
  const char *dtype = f->dtype ? f->dtype : strcmp(j->dev.name, "cpu") ? "bf16" : "fp32";
  if (f->precision) {
    if (memory_parse_sim_precision(f->precision, &j->opt.precision)) {
      strata_error("simulate: --precision '%s' unknown (use " MEM_SIM_PRECISION_CHOICES ")", f->precision);
      return 2;
    }
    if (!f->dtype) dtype = j->opt.precision == MEM_PREC_FP32 ? "fp32" : "bf16";
    j->opt.memory = MEM_ACCOUNT_MIXED; /* the precision's bytes per parameter */
  }
  if (f->grad_dtype) {
    if (strcmp(f->grad_dtype, "fp32") && strcmp(f->grad_dtype, "bf16")) {
      strata_error("simulate: --grad-dtype must be fp32 or bf16, got '%s'", f->grad_dtype);
      return 2;
    }
    j->opt.grad_bf16 = !strcmp(f->grad_dtype, "bf16");
  }
  if (device_parse_dtype(dtype, &j->opt.dtype)) {
    strata_error("simulate: --dtype '%s' unknown (use bf16, fp32 or fp8)", dtype);
    return 2;
  }
  if (f->attention && strcmp(f->attention, "fused") && strcmp(f->attention, "unfused")) {
    strata_error("simulate: --attention '%s' unknown (use fused or unfused)", f->attention);
    return 2;
  }
  if (schedule_parse_kind(f->schedule, &j->opt.kind)) {
    strata_error("simulate: --schedule '%s' unknown (use gpipe or 1f1b)", f->schedule);
    return 2;
  }
  if (f->recompute && memory_parse_recompute(f->recompute, &j->opt.recompute)) {
    strata_error("simulate: --recompute '%s' unknown (use " MEM_RECOMPUTE_CHOICES ")", f->recompute);
    return 2;
  }
  if (f->memory && f->precision && strcmp(f->memory, "mixed")) {
    strata_error("simulate: --precision counts memory per precision (the mixed accounting); drop "
                 "--memory %s or --precision",
                 f->memory);
    return 2;
  }
  if (f->memory && memory_parse_accounting(f->memory, &j->opt.memory)) {
    strata_error("simulate: --memory '%s' unknown (use strata or mixed)", f->memory);
    return 2;
  }
  /* A production job (--precision or --memory mixed) runs the device's fused attention;
   * Strata's own run (--memory strata, what strata train's carried clock models) has unfused
   * kernels. Both have overlapped reductions slow the compute (sim_options_default). */
  const int production = j->opt.memory == MEM_ACCOUNT_MIXED;
  j->opt.fused_attention = production && j->dev.attn_fused_eff > 0;
  if (f->attention) j->opt.fused_attention = !strcmp(f->attention, "fused");
  if (f->zero >= MEM_ZERO_SHARD_GRADS && f->zero_overlap) {
    strata_error("simulate: --zero %d reduce-scatters every micro-batch's gradients beside its "
                 "backward; drop --zero-overlap (it applies to ZeRO-1)",
                 f->zero);
    return 2;
  }
  if (f->zero_overlap && !f->zero && !f->sweep) {
    strata_error("simulate: --zero-overlap overlaps ZeRO-1's reduce-scatter and all-gather; add "
                 "--zero 1 (or --sweep, whose ZeRO-1 layouts it then applies to)");
    return 2;
  }
  if (f->shard_group && f->sweep) {
    strata_error("simulate: --shard-group fixes a ZeRO-3 layout's shard; drop it with --sweep "
                 "(whose ZeRO-3 rows shard over every replica)");
    return 2;
  }
  j->opt.zero = f->zero;
  j->opt.zero_overlap = f->zero_overlap;
  j->opt.shard_group = f->shard_group;
  j->opt.tp_overlap = f->tp_comm_overlap ? SIM_TP_OVERLAP_UB
                      : f->tp_overlap    ? SIM_TP_OVERLAP_BACKWARD
                                         : SIM_TP_OVERLAP_NONE;
  j->opt.vstages = f->vstages;
  j->opt.overlap = !f->no_overlap;
  j->opt.sequence_parallel = f->seq_par;
  if (f->g_bucket) {
    j->opt.bucket_bytes = f->bucket_mb * 1048576.0;
    j->opt.bucket_given = 1;
  }
  j->capacity_bytes = f->device_mem ? (double)f->device_mem : j->dev.hbm_bytes;
  return 0;
}

/* N = T x P x D from T (default 1) and any two of --nodes, --pp, --dp (0: not given; the flags
 * are >= 1) into *nodes, *pp, *dp. 0, or 2 after saying why they disagree. */
static int resolve_nodes(int tp, int *nodes, int *pp, int *dp) {
  if (!*nodes) {
    if (!*pp) *pp = 1;
    if (!*dp) *dp = 1;
    if ((long long)tp * *pp * *dp > SIM_MAX_NODES) {
      strata_error("simulate: --tp %d x --pp %d x --dp %d is more than %d devices", tp, *pp, *dp,
                   SIM_MAX_NODES);
      return 2;
    }
    *nodes = tp * *pp * *dp;
    return 0;
  }
  if (*pp && *dp && (long long)tp * *pp * *dp != *nodes) {
    strata_error("simulate: --nodes %d but --tp %d x --pp %d x --dp %d = %lld; give two of nodes, "
                 "pp and dp or make them agree",
                 *nodes, tp, *pp, *dp, (long long)tp * *pp * *dp);
    return 2;
  }
  if (*nodes % tp) {
    strata_error("simulate: --nodes %d is not divisible by --tp %d (P x D = N / T must be whole); "
                 "use a multiple of %d nodes",
                 *nodes, tp, tp);
    return 2;
  }
  int np = *nodes / tp; /* P x D */
  if (*pp && !*dp) {
    if (np % *pp) {
      strata_error("simulate: --nodes %d is not divisible by --pp %d%s (D = N / (T x P) must be "
                   "whole)",
                   *nodes, *pp, tp > 1 ? " x --tp" : "");
      return 2;
    }
    *dp = np / *pp;
  } else if (*dp && !*pp) {
    if (np % *dp) {
      strata_error("simulate: --nodes %d is not divisible by --dp %d%s (P = N / (T x D) must be "
                   "whole)",
                   *nodes, *dp, tp > 1 ? " x --tp" : "");
      return 2;
    }
    *pp = np / *dp;
  } else if (!*pp && !*dp) {
    *pp = 1;
    *dp = np;
  }
  return 0;
}

/* The default micro-batch count: the largest divisor of batch / D up to 4P (interleaved: a
 * multiple of P when one divides batch / D). */
static int default_micro(int batch, int pp, int dp, int vstages) {
  int per = dp > 0 && batch % dp == 0 ? batch / dp : 1, micro = 1, interleavable = 0;
  for (int m = 1; m <= per && m <= 4 * pp; m++) {
    if (per % m) continue;
    micro = m;
    if (vstages > 1 && m % pp == 0) interleavable = m;
  }
  return interleavable ? interleavable : micro;
}

/* The first flag of the command line that --validate does not take (it reads every job from
 * its file: only --explain and --json apply), or NULL. */
static const char *validate_other_flag(int argc, char **argv) {
  static char name[64];
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--", 2)) continue;
    size_t len = strcspn(argv[i], "=");
    snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), argv[i]);
    if (!strcmp(name, "--validate")) {
      i += argv[i][len] != '='; /* its value */
      continue;
    }
    if (strcmp(name, "--explain") && strcmp(name, "--json")) return name;
  }
  return NULL;
}

int cmd_simulate(int argc, char **argv) {
  sim_flags_t f = {.device = "trn2", .schedule = "1f1b", .batch = 512, .tp = 1, .vstages = 1};
  arg_spec_t specs[] = {
      {"--model", NULL, ARG_STRING, &f.model, "NAME", "a preset: " PRESET_LIST " (default gpt2)"},
      {"--arch", NULL, ARG_STRING, &f.arch, "A",
       "model family gpt (LayerNorm, GELU, tied head) | llama (RMSNorm, rotary, SwiGLU, GQA, "
       "untied head); default: the preset's"},
      {"--tie-embeddings", NULL, ARG_STRING, &f.tie, "yes|no",
       "whether the output head shares the token embedding (no: its own vocab x dim matrix, as "
       "Megatron-LM's --untie-embeddings-and-output-weights); default: the family's"},
      {"--kv-heads", NULL, ARG_INT, &f.kv_heads, "K", "key/value heads (grouped-query attention)",
       .min = 1, .max = 1 << 16, .given = &f.g_kv},
      {"--ffn", NULL, ARG_INT, &f.ffn, "F", "MLP intermediate width (gpt default 4 x dim)",
       .min = 1, .max = 1 << 24, .given = &f.g_ffn},
      {"--layers", NULL, ARG_INT, &f.layers, "L", "transformer blocks (overrides the preset)",
       .min = 1, .max = 1 << 16, .given = &f.g_layers},
      {"--heads", NULL, ARG_INT, &f.heads, "H", "attention heads", .min = 1, .max = 1 << 16, .given = &f.g_heads},
      {"--dim", NULL, ARG_INT, &f.dim, "C", "embedding width", .min = 1, .max = 1 << 20, .given = &f.g_dim},
      {"--ctx", NULL, ARG_INT, &f.ctx, "T", "sequence length", .min = 1, .max = 1 << 24, .given = &f.g_ctx},
      {"--vocab", NULL, ARG_INT, &f.vocab, "V", "vocabulary size", .min = 1, .max = 1 << 24, .given = &f.g_vocab},
      {"--device", NULL, ARG_STRING, &f.device, "DEV",
       "a100|h100|trn1|trn1-core|trn2|trn3|trn4|cpu|FILE.json (default trn2)"},
      {"--precision", NULL, ARG_STRING, &f.precision, "P",
       "fp32 | bf16 (fp32 master weights and Adam moments) | bf16-sr (bf16 weights with "
       "stochastic rounding, no master copy) | fp8 (bf16 with the layers' GEMMs in FP8, as "
       "Transformer Engine runs them): optimizer time, gradient bytes and memory"},
      {"--grad-dtype", NULL, ARG_STRING, &f.grad_dtype, "fp32|bf16",
       "bytes of the data-parallel gradient reductions: bf16 = 2 per gradient, as strata train "
       "--grad-dtype bf16, and with --precision or --memory mixed of the gradient buffer "
       "(default: the precision's: 4, bf16-sr 2)"},
      {"--attention", NULL, ARG_STRING, &f.attention, "K",
       "fused (flash-style) | unfused (default: fused with --precision or --memory mixed where "
       "the device has a fused-kernel figure; unfused for Strata's own fp32 run)"},
      {"--dtype", NULL, ARG_STRING, &f.dtype, "T",
       "compute dtype bf16|fp32|fp8 (default bf16; fp32 for cpu)"},
      {"--memory", NULL, ARG_STRING, &f.memory, "ACCT",
       "memory accounting strata (Strata's fp32 buffers, default) | mixed (Megatron-style "
       "mixed precision, Korthikanti et al.'s activations)"},
      {"--nodes", NULL, ARG_INT, &f.nodes, "N", "simulated devices (= tp x pp x dp)", .min = 1, .max = SIM_MAX_NODES},
      {"--tp", NULL, ARG_INT, &f.tp, "T", "tensor-parallel ranks per stage, dividing the heads (default 1)",
       .min = 1, .max = 1 << 16, .given = &f.g_tp},
      {"--pp", NULL, ARG_INT, &f.pp, "P", "pipeline stages", .min = 1, .max = 1 << 16},
      {"--dp", NULL, ARG_INT, &f.dp, "D", "data-parallel replicas", .min = 1, .max = SIM_MAX_NODES},
      {"--sequence-parallel", NULL, ARG_FLAG, &f.seq_par, NULL,
       "split LayerNorm/residual regions over the T ranks (needs --tp > 1)"},
      {"--recompute", NULL, ARG_STRING, &f.recompute, "R",
       "activation recomputation none|selective|selective-mlp|full (default none)", .given = &f.g_recompute},
      {"--microbatches", NULL, ARG_INT, &f.micro, "M", "micro-batches per step (default: the largest divisor of "
       "batch / D up to 4 P)", .min = 1, .max = 1 << 24, .given = &f.g_micro},
      {"--schedule", NULL, ARG_STRING, &f.schedule, "S", "gpipe|1f1b (default 1f1b)"},
      {"--virtual-stages", NULL, ARG_INT, &f.vstages, "V",
       "interleaved 1F1B (Megatron-LM's virtual pipeline): V chunks of layers per stage, the "
       "bubble V times smaller; needs --pp > 1, 1f1b and M a multiple of P (default 1)",
       .min = 1, .max = 1 << 10, .given = &f.g_vstages},
      {"--zero", NULL, ARG_INT, &f.zero, "0|1|2|3",
       "1: ZeRO-1, the optimizer state sharded over the replicas; 2: ZeRO-2 as DeepSpeed runs it, "
       "the gradients too, reduce-scattered in --bucket-mb buckets during every micro-batch's "
       "backward; 3: ZeRO-3 as PyTorch FSDP's FULL_SHARD, the parameters too, gathered and "
       "reduce-scattered layer by layer every micro-batch (default 0)",
       .min = 0, .max = 3, .given = &f.g_zero},
      {"--shard-group", NULL, ARG_INT, &f.shard_group, "S",
       "with --zero 3: shard over S replicas and keep D / S copies (FSDP's HYBRID_SHARD: gathers "
       "and reduce-scatters among S, usually one instance, each shard then all-reduced over the "
       "copies); S divides --dp (default: all D, FULL_SHARD)",
       .min = 1, .max = 1 << 24},
      {"--zero-overlap", NULL, ARG_FLAG, &f.zero_overlap, NULL,
       "ZeRO-1 as Megatron-LM's distributed optimizer with --overlap-grad-reduce and "
       "--overlap-param-gather: bucketed reduce-scatters overlapping backward (Megatron-Core's "
       "buckets unless --bucket-mb is given), the parameter all-gather overlapping the next "
       "forward (default: Strata's, both after)"},
      {"--tp-overlap", NULL, ARG_FLAG, &f.tp_overlap, NULL,
       "the tensor-parallel backward as Megatron-LM and NeuronX Distributed run it: each "
       "column-parallel product's input-gradient reduce-scatter (all-reduce without SP) beside "
       "its weight-gradient GEMM and, with SP, its input gathered again beside the "
       "input-gradient GEMM; needs --tp > 1 (default: Strata's, every TP collective exposed)"},
      {"--tp-comm-overlap", NULL, ARG_FLAG, &f.tp_comm_overlap, NULL,
       "--tp-overlap and Transformer Engine's userbuffers (Megatron-LM --tp-comm-overlap): each "
       "layer's all-gathers and reduce-scatters pipelined with their GEMMs in chunks, forward and "
       "backward; needs --sequence-parallel (with --sweep: its sequence-parallel layouts)"},
      {"--batch", NULL, ARG_INT, &f.batch, "B", "global batch, sequences per step (default 512)", .min = 1, .max = 1 << 24},
      {"--stage-layers", NULL, ARG_STRING, &f.stage_layers, "LIST",
       "explicit layers per stage, e.g. 3,3,2"},
      {"--bucket-mb", NULL, ARG_DOUBLE, &f.bucket_mb, "X",
       "gradient bucket size in MiB (default 25; with --zero-overlap Megatron-Core's: "
       "max(40M, 1M x D) parameters on the first stage, one bucket on later ones)",
       .env = "STRATA_BUCKET_MB", .given = &f.g_bucket},
      {"--no-overlap", NULL, ARG_FLAG, &f.no_overlap, NULL,
       "all-reduce after backward instead of overlapped (--zero 2: each bucket's reduce-scatter "
       "holds up the backward, DeepSpeed's overlap_comm off)"},
      {"--device-mem", NULL, ARG_BYTES, &f.device_mem, "BYTES",
       "override the device memory capacity (e.g. 16G)", .min = 1, .max = 0x1p50},
      {"--sweep", NULL, ARG_FLAG, &f.sweep, NULL,
       "try every T x P x D, M, ZeRO, SP and recomputation; rank by tokens/s"},
      {"--trace", NULL, ARG_STRING, &f.trace, "FILE",
       "write the simulated timeline (Chrome trace JSON)"},
      {"--json", NULL, ARG_FLAG, &f.as_json, NULL, "print JSON (with --validate: every job and the summaries)"},
      {"--explain", NULL, ARG_FLAG, &f.explain, NULL,
       "show where the step's time goes (compute, TP, pipeline bubble, DP, optimizer) and each op's "
       "time, achieved TFLOP/s and GB/s"},
      {"--validate", NULL, ARG_STRING, &f.validate, "FILE.csv",
       "predict every job of a CSV of measured runs and print the errors (worker/sim/validation.csv); "
       "takes only --explain and --json beside it"},
  };
  int prc = args_parse("simulate", USAGE, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]),
                       NULL, NULL);
  if (prc) return prc > 0 ? 0 : 2;

  if (f.validate) {
    const char *other = validate_other_flag(argc, argv);
    if (other) {
      strata_error("simulate: --validate takes every job's model, device and layout from %s; %s does "
                   "not apply to it (drop it, or run the job without --validate)",
                   f.validate, other);
      return 2;
    }
    return sim_validate_csv(f.validate, f.explain, f.as_json);
  }
  sim_job_t j;
  memset(&j, 0, sizeof j);
  if (job_from_flags(&f, &j)) return 2;
  j.explain = f.explain;
  char err[512];
  /* a --sweep without --tp tries every T (a --sequence-parallel one every T > 1) */
  if ((!f.sweep || f.g_tp) && sim_check_tp(&j.model, f.tp, f.seq_par, err, sizeof err)) {
    strata_error("simulate: %s", err);
    return 2;
  }
  if ((f.tp_overlap || f.tp_comm_overlap) && f.tp < 2 && !f.sweep) {
    strata_error("simulate: %s overlaps tensor-parallel collectives, and --tp 1 has none; "
                 "give --tp 2 or more (or --sweep, whose tensor-parallel layouts it then applies to)",
                 f.tp_comm_overlap ? "--tp-comm-overlap" : "--tp-overlap");
    return 2;
  }
  if (f.tp_comm_overlap && !f.seq_par && !f.sweep) {
    strata_error("simulate: --tp-comm-overlap pipelines the sequence-parallel all-gathers and "
                 "reduce-scatters (Megatron-LM requires sequence parallelism with it); add "
                 "--sequence-parallel");
    return 2;
  }
  if (resolve_nodes(f.tp, &f.nodes, &f.pp, &f.dp)) return 2;
  j.nodes = f.nodes;
  j.tp = f.tp;
  j.pp = f.pp;
  j.dp = f.dp;
  j.batch = f.batch;
  j.stage_layers = f.stage_layers;
  j.trace_path = f.trace;
  if (f.sweep) {
    if (f.stage_layers)
      strata_warn("simulate --sweep: --stage-layers ignored (every sweep layout is balanced)");
    if (f.trace) strata_warn("simulate --sweep: --trace ignored (it records a single layout)");
    j.sweep_tp = f.g_tp;
    j.sweep_sp = f.seq_par;
    j.sweep_rc = f.g_recompute;
    j.sweep_vs = f.g_vstages;
    j.sweep_zero = f.g_zero;
    return run_sweep(&j, f.as_json);
  }
  j.micro = f.g_micro ? f.micro : default_micro(f.batch, f.pp, f.dp, f.vstages);
  return run_one(&j, f.as_json);
}
