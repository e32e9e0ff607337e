/* simulate.c -- the discrete-event simulation of one training step (contract in simulate.h,
 * the model in SIMULATION.md). Ranks advance through their schedules on private clocks; a
 * rank blocked on a receive sleeps until the matching send is posted (worklist), so the cost
 * is linear in the number of actions. Ranks time-sharing a host's cores advance on one clock
 * from event to event instead (processor sharing, sim_pipeline_shared). The data-parallel phase is then computed per stage from
 * the recorded backward times. */
#include "simulate.h"
#include "env.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sim_options_t sim_options_default(void) {
  sim_options_t o = {0}; /* every field not set below is off (grad_bf16, tp_overlap) */
  o.kind = SCHED_1F1B;
  o.vstages = 1;
  o.zero = 0;
  o.zero_overlap = 0;
  o.overlap = 1;
  double mb; /* a bad STRATA_BUCKET_MB is refused by strata at start-up (worker/base/env.c) */
  env_read_double("STRATA_BUCKET_MB", NAN, &mb, NULL, 0); /* NAN: unset or empty */
  o.bucket_given = !isnan(mb);
  o.bucket_bytes = (o.bucket_given ? mb : SIM_DEFAULT_BUCKET_MB) * 1024 * 1024;
  o.dtype = DEV_BF16;
  o.record_events = 0;
  o.sequence_parallel = 0;
  o.recompute = MEM_RECOMPUTE_NONE;
  o.memory = MEM_ACCOUNT_STRATA;
  o.precision = MEM_PREC_NONE;
  o.fused_attention = 0;
  o.interference = 1;
  return o;
}

mem_options_t sim_mem_options(const sim_options_t *opt) {
  mem_options_t m = memory_options(opt->kind, opt->zero, opt->bucket_bytes);
  m.sequence_parallel = opt->sequence_parallel;
  m.recompute = opt->recompute;
  m.accounting = opt->memory;
  m.dtype = opt->dtype;
  m.precision = opt->precision;
  m.fused_attention = opt->fused_attention;
  m.vstages = opt->vstages;
  m.grad_bf16 = opt->grad_bf16;
  m.shard_group = opt->shard_group;
  return m;
}

int sim_check_tp(const layout_model_t *m, int tp, int sequence_parallel, char *err, size_t errlen) {
  if (tp < 1 || m->heads % tp)
    return strata_fail(err, errlen,
                       "--tp %d does not divide the model's %d attention heads (each "
                       "tensor-parallel rank holds whole heads); use a --tp that divides %d",
                       tp, m->heads, m->heads);
  const int kvh = layout_model_kv_heads(m);
  if (m->heads % tp == 0 && kvh % tp && tp % kvh)
    return strata_fail(err, errlen,
                       "--tp %d neither divides the model's %d key/value heads nor is a multiple "
                       "of them (each tensor-parallel rank holds whole key/value groups, or one "
                       "replicated head); use a --tp that divides %d or a multiple of it",
                       tp, kvh, kvh);
  if (sequence_parallel && tp < 2)
    return strata_fail(err, errlen,
                       "--sequence-parallel needs --tp 2 or more (it splits the LayerNorm and "
                       "residual regions over the tensor-parallel ranks; with --tp %d there is "
                       "nothing to split); drop it or give --tp",
                       tp);
  if (sequence_parallel && m->ctx % tp)
    return strata_fail(err, errlen,
                       "--sequence-parallel splits each sequence of %d tokens over --tp %d ranks, "
                       "which does not divide it; use a --tp that divides %d or a --ctx that is a "
                       "multiple of %d",
                       m->ctx, tp, m->ctx, tp);
  return 0;
}

/* The interleaved schedule's conditions (Megatron-LM's): 1F1B, P > 1, M a multiple of P, and
 * a layer or more per chunk. */
static int sim_check_vstages(const layout_t *lay, const sim_options_t *opt, char *err, size_t errlen) {
  const int V = opt->vstages, P = lay->pp;
  if (V < 1)
    return strata_fail(err, errlen, "--virtual-stages must be at least 1 (1: no interleaving)");
  if (V == 1) return 0;
  if (opt->kind != SCHED_1F1B)
    return strata_fail(err, errlen, "--virtual-stages %d needs --schedule 1f1b (the interleaved "
                       "schedule is 1F1B's); drop --schedule gpipe or set --virtual-stages 1", V);
  if (P < 2)
    return strata_fail(err, errlen, "--virtual-stages %d needs a pipeline (--pp 2 or more); set "
                       "--virtual-stages 1 without one", V);
  if (lay->micro % P)
    return strata_fail(err, errlen, "--virtual-stages %d needs the micro-batches (%d) to be a "
                       "multiple of --pp %d; choose --microbatches %d or %d", V, lay->micro, P,
                       lay->micro / P * P > 0 ? lay->micro / P * P : P, (lay->micro / P + 1) * P);
  for (int s = 0; s < P; s++)
    if (layout_stage_layers(lay, s) < V)
      return strata_fail(err, errlen, "--virtual-stages %d splits each stage into %d chunks of "
                         "layers, but stage %d has %d layer(s); use --virtual-stages %d or fewer",
                         V, V, s, layout_stage_layers(lay, s), layout_stage_layers(lay, s));
  return 0;
}

int sim_check_options(const layout_t *lay, const sim_options_t *opt, char *err, size_t errlen) {
  if (sim_check_tp(&lay->model, lay->tp, opt->sequence_parallel, err, errlen)) return -1;
  if ((unsigned)opt->recompute >= MEM_RECOMPUTE_COUNT)
    return strata_fail(err, errlen, "recompute must be " MEM_RECOMPUTE_CHOICES);
  if (opt->shard_group && (opt->zero != MEM_ZERO_FULL_SHARD || opt->shard_group < 1 ||
                           lay->dp % opt->shard_group))
    return strata_fail(err, errlen,
                       "--shard-group %d needs --zero 3 and must divide --dp %d (the replicas a "
                       "shard spans; the D / S groups hold copies)",
                       opt->shard_group, lay->dp);
  return sim_check_vstages(lay, opt, err, errlen);
}

void sim_pipe_link(const layout_t *lay, const device_t *dev, int rank, int peer, double *lat_s,
                   double *Bps) {
  int T = lay->tp, base = rank - layout_tp_of(lay, rank), pbase = peer - layout_tp_of(lay, peer);
  device_link(dev, rank, peer, lat_s, Bps);
  for (int t = 0; t < T && T > 1; t++) { /* the slowest pair of the two tensor-parallel groups */
    double lat, bw;
    device_link(dev, base + t, pbase + t, &lat, &bw);
    if (lat > *lat_s) *lat_s = lat;
    if (bw < *Bps) *Bps = bw;
  }
}

int sim_tp_link_note(const layout_t *lay, const device_t *dev, char *msg, size_t len) {
  const int T = lay->tp, K = dev->chips_per_instance;
  if (T <= 1) return 0;
  int crossing = 0, groups = lay->pp * lay->dp;
  for (int g = 0; g < groups; g++)
    if ((g * T) / K != (g * T + T - 1) / K) crossing++;
  if (!crossing) return 0;
  double GB = 1e9, us = 1e-6;
  if (T > K)
    snprintf(msg, len,
             "--tp %d is larger than a %s instance (%d chips): every tensor-parallel group spans "
             "instances, so its per-layer all-reduces run on the inter-instance network (%.3g "
             "GB/s per chip, %.3g us) instead of the intra-instance link (%.3g GB/s, %.3g us); "
             "use --tp %d or less to keep them on the fast link",
             T, dev->name, K, dev->inter_Bps / K / GB, dev->inter_lat_s / us, dev->intra_Bps / GB,
             dev->intra_lat_s / us, K);
  else
    snprintf(msg, len,
             "--tp %d does not divide a %s instance's %d chips: %d of the %d tensor-parallel "
             "groups straddle two instances, so their per-layer all-reduces run on the "
             "inter-instance network (%.3g GB/s per chip, %.3g us) instead of the intra-instance "
             "link (%.3g GB/s, %.3g us); use a --tp that divides %d",
             T, dev->name, K, crossing, groups, dev->inter_Bps / K / GB, dev->inter_lat_s / us,
             dev->intra_Bps / GB, dev->intra_lat_s / us, K);
  return 1;
}

double sim_narayanan_flops(const layout_t *lay, mem_recompute_t rc) {
  const layout_model_t *m = &lay->model;
  double B = lay->batch, s = m->ctx, l = m->layers, h = m->dim, V = m->vocab;
  double model = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
  if (rc == MEM_RECOMPUTE_FULL) /* one more forward of every layer: 96 B s l h^2 (1 + s/6h + V/16lh) */
    return 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
  if (rc == MEM_RECOMPUTE_SELECTIVE) /* one more forward of the attention matmuls: 4 B s^2 h per layer */
    return model + 4 * B * s * s * l * h;
  if (rc == MEM_RECOMPUTE_SELECTIVE_MLP) /* and of the MLP's two matmuls: 16 B s h^2 per layer */
    return model + 4 * B * s * s * l * h + 16 * B * s * l * h * h;
  return model;
}

/* Whether backward re-runs the forward op `name` of a layer under recomputation rc: every op
 * (full), the attention (selective), the attention and the MLP's ops (selective-mlp: the MLP
 * module from its input, without the norm before it). */
static int recomputed(mem_recompute_t rc, const char *name) {
  static const char *const mlp[] = {"fc", "gelu", "fcproj", "gate_up", "swiglu", "down"};
  if (rc == MEM_RECOMPUTE_FULL) return 1;
  if (rc == MEM_RECOMPUTE_NONE) return 0;
  if (!strcmp(name, "attention")) return 1;
  for (size_t i = 0; rc == MEM_RECOMPUTE_SELECTIVE_MLP && i < sizeof mlp / sizeof mlp[0]; i++)
    if (!strcmp(name, mlp[i])) return 1;
  return 0;
}

double sim_step_flops(const layout_t *lay, mem_recompute_t rc) {
  const layout_model_t *m = &lay->model;
  layout_op_t ops[LAYOUT_MAX_OPS];
  int n = layout_layer_ops(m, lay->micro_batch, m->ctx, ops);
  double extra = 0; /* per layer and micro-batch */
  for (int i = 0; i < n; i++)
    if (recomputed(rc, ops[i].name)) extra += ops[i].flops;
  double f = 0;
  for (int s = 0; s < lay->pp; s++)
    f += layout_stage_train_flops(lay, s, lay->micro_batch) + layout_stage_layers(lay, s) * extra;
  return f * lay->micro * lay->dp;
}

/* How the ops run: the attention fused (flash-style) or not, and the GEMMs in FP8. */
enum { OP_FUSED_ATTENTION = 1, OP_FP8_GEMMS = 2 };

/* An FP8 GEMM's cast kernel (--precision fp8, Transformer Engine's cast-transpose): forward,
 * its bf16 input read once and written as FP8 and as FP8 transposed (for the weight gradient);
 * backward, the same for its bf16 output gradient: 2 + 1 + 1 bytes per element, memory-bound. */
static double fp8_cast_time(const device_t *dev, device_dtype_t dt, const layout_op_t *o, double mult) {
  double elems = mult > 1 ? o->mm_m * o->mm_n * o->mm_count : o->mm_m * o->mm_k * o->mm_count;
  return device_has_eff(dev) ? device_op_time_eff(dev, dt, 0, 4 * elems, 1)
                             : device_op_time(dev, dt, 0, 4 * elems);
}

/* A fused (flash-style) attention's FLOPs: its backward keeps no scores, so it computes them
 * again from Q and K before the four products of the gradients: five score-sized GEMMs against
 * the forward's two, 2.5x the forward's FLOPs (Dao 2023, FlashAttention-2; its repository's
 * benchmarks/benchmark_flash_attention.py counts a backward as 2.5 forwards, and the device
 * profiles' attn_fused_eff is measured in that count). */
static double fused_attention_flops(double fwd_flops, double mult) {
  return mult > 1 ? 1.25 * mult * fwd_flops : mult * fwd_flops;
}

/* Time of one op (mult = 1 forward, 2 backward: twice the flops and bytes). Without an
 * efficiency model the roofline. With one: a GEMM at device_matmul_eff of its shape; the
 * attention fused (flash-style: at attn_fused_eff, without the score traffic) or unfused (its
 * score GEMMs at their shape's efficiency, then the softmax's traffic: separate kernels, the
 * times add); memory-bound ops at hbm_eff; each op pays the per-kernel overhead. With
 * OP_FP8_GEMMS the GEMMs (not the attention's) run at the FP8 rate and efficiency, each with
 * its cast kernel; everything else stays in dt. */
static double op_time(const device_t *dev, device_dtype_t dt, const layout_op_t *o, double mult,
                      int kind) {
  const double E = device_dtype_size(dt), f = mult * o->flops, bytes = mult * o->elems * E;
  const int gemm = o->mm_count > 0 && o->scores_elems == 0, fp8 = gemm && (kind & OP_FP8_GEMMS);
  const device_dtype_t mt = fp8 ? DEV_FP8 : dt; /* the rate of the op's math */
  const double cast = fp8 ? fp8_cast_time(dev, dt, o, mult) : 0;
  if (!device_has_eff(dev)) return device_op_time(dev, mt, f, bytes) + cast;
  if (o->scores_elems > 0 && (kind & OP_FUSED_ATTENTION))
    return device_op_time_eff(dev, dt, fused_attention_flops(o->flops, mult),
                              mult * (o->elems - o->scores_elems) * E,
                              dev->attn_fused_eff > 0
                                  ? dev->attn_fused_eff
                                  : device_matmul_eff(dev, o->mm_m, o->mm_n, o->mm_k, o->mm_count));
  if (o->scores_elems > 0)
    return device_op_time_eff(dev, dt, f, 0,
                              device_matmul_eff_dt(dev, dt, o->mm_m, o->mm_n, o->mm_k, o->mm_count)) +
           device_op_time_eff(dev, dt, 0, bytes, 1);
  double eff =
      o->mm_count > 0 ? device_matmul_eff_dt(dev, mt, o->mm_m, o->mm_n, o->mm_k, o->mm_count) : 1;
  return device_op_time_eff(dev, mt, f, bytes, eff) + cast;
}

/* Time of an op list; backward = 2x forward flops and bytes. */
static double ops_time(const device_t *dev, device_dtype_t dt, const layout_op_t *ops, int n,
                       double mult, int kind) {
  double t = 0;
  for (int i = 0; i < n; i++) t += op_time(dev, dt, &ops[i], mult, kind);
  return t;
}

/* AdamW per parameter: ~12 flops; reads p, g, m, v and writes p, m, v in fp32 (28 bytes). */
#define SIM_ADAMW_FLOPS 12.0
#define SIM_ADAMW_BYTES 28.0

void sim_precision_costs(mem_precision_t p, double *opt_bytes, double *opt_flops,
                         double *grad_bytes) {
  *opt_flops = SIM_ADAMW_FLOPS;
  *opt_bytes = SIM_ADAMW_BYTES; /* NONE and FP32: fp32 p, g, m, v read, p, m, v written */
  *grad_bytes = 4;
  if (p == MEM_PREC_BF16) /* + the bf16 copy of the updated fp32 master weights (the cast) */
    *opt_bytes = SIM_ADAMW_BYTES + 2;
  else if (p == MEM_PREC_FP8) /* and the FP8 copies of each weight (row-wise and transposed:
                                  an upper bound, the embedding and head have none) */
    *opt_bytes = SIM_ADAMW_BYTES + 2 + MEM_FP8_WEIGHT_COPY_BYTES;
  else if (p == MEM_PREC_BF16_SR) { /* everything bf16: 8 bytes read, 6 written; rounding
                                       adds a random draw and an add per written value */
    *opt_bytes = 14;
    *opt_flops = SIM_ADAMW_FLOPS + 6;
    *grad_bytes = 2;
  }
}

int sim_megatron_buckets(const sim_options_t *o) {
  return o->zero == 1 && o->zero_overlap && !o->bucket_given;
}

double sim_megatron_bucket(int stage, int chunk, int D) {
  return stage > 0 || chunk > 0 ? INFINITY : (D > 40 ? 1e6 * D : 4e7);
}

double sim_precision_weight_bytes(mem_precision_t p) {
  return p == MEM_PREC_BF16 || p == MEM_PREC_BF16_SR || p == MEM_PREC_FP8 ? 2 : 4;
}

/* Tensor-parallel communication of one micro-batch, seconds: per layer forward / backward (the
 * backward without recomputation), the embedding and the head. */
typedef struct {
  double layer_f, layer_b, embed_f, embed_b, head_f, head_b;
  double ar, rs, ag; /* one collective of the activation array, seconds */
} tp_comm_t;

/* Stage s's TP communication: the slowest of its D groups (one per replica) for each
 * collective; n = one micro-batch's activation b T C in the compute dtype; the cross-entropy's
 * all-reduces carry b T fp32 values. Megatron-LM's operators: per layer g (forward all-reduce)
 * after the attention and MLP row-parallel matmuls and f (backward all-reduce) before the
 * column-parallel ones; sequence parallelism turns every all-reduce into a reduce-scatter
 * and an all-gather of the same array. Embedding: all-reduce (SP: reduce-scatter) forward,
 * SP: all-gather backward. Head: SP: all-gather before the logits; vocabulary-parallel
 * cross-entropy: 3 all-reduces (max, sum of exp, target logit) forward; backward f's
 * all-reduce (SP: reduce-scatter) of the logits' input gradient. */
static int tp_comm(const layout_t *lay, const device_t *dev, int s, int sp, double n, double n_ce,
                   tp_comm_t *out) {
  const int T = lay->tp;
  memset(out, 0, sizeof *out);
  if (T <= 1) return 0;
  int *ranks = malloc(sizeof(int) * (size_t)T);
  if (!ranks) return -1;
  double ar = 0, rs = 0, ag = 0, ce = 0;
  for (int d = 0; d < lay->dp; d++) {
    for (int t = 0; t < T; t++) ranks[t] = layout_rank(lay, t, s, d);
    double v[4] = {device_allreduce_time(dev, ranks, T, n), device_reduce_scatter_time(dev, ranks, T, n),
                   device_allgather_time(dev, ranks, T, n), device_allreduce_time(dev, ranks, T, n_ce)};
    if (v[0] > ar) ar = v[0];
    if (v[1] > rs) rs = v[1];
    if (v[2] > ag) ag = v[2];
    if (v[3] > ce) ce = v[3];
  }
  free(ranks);
  out->ar = ar, out->rs = rs, out->ag = ag;
  out->layer_f = out->layer_b = sp ? 2 * (rs + ag) : 2 * ar;
  out->embed_f = sp ? rs : ar;
  out->embed_b = sp ? ag : 0;
  out->head_f = (sp ? ag : 0) + 3 * ce;
  out->head_b = sp ? rs : ar;
  return 0;
}

/* The backward TP communication of column-parallel products whose forward GEMMs take gemm[i]
 * seconds, as Megatron-LM (since 2021) and NeuronX Distributed run it (--tp-overlap): the
 * input-gradient GEMM and the weight-gradient GEMM each take about the forward's time; with
 * sequence parallelism the product's input (kept as this rank's rows) is all-gathered again
 * beside the input-gradient GEMM, and the input gradient reduce-scattered beside the
 * weight-gradient GEMM; without it the input gradient's all-reduce runs beside the
 * weight-gradient GEMM. Returns the exposed seconds; *hidden += the overlapped ones. */
static double col_backward_tp(const tp_comm_t *tc, int sp, const double *gemm, int n, double *hidden) {
  double exposed = 0;
  for (int i = 0; i < n; i++) {
    double c[2] = {sp ? tc->ag : 0, sp ? tc->rs : tc->ar}; /* beside the dX, the dW GEMM */
    for (int k = 0; k < 2; k++) {
      exposed += fmax(0, c[k] - gemm[i]);
      *hidden += fmin(c[k], gemm[i]);
    }
  }
  return exposed;
}

/* A collective of c seconds pipelined with a GEMM of g seconds in k chunks, as Transformer
 * Engine's userbuffers run them (--tp-comm-overlap; TE's initialize_ub defaults: ring exchange
 * in T chunks for the all-gathers before the QKV and first MLP GEMMs and after the output
 * gradients of the row-parallel ones, a pipeline of 4 for the reduce-scatters after the
 * row-parallel forward GEMMs): each chunk's transfer runs beside another chunk's GEMM, so the
 * longer stream sets the pace and one chunk of the shorter is exposed. Returns the seconds
 * beyond the GEMM's; *hidden += the overlapped ones. */
static double pipelined(double c, double g, int k, double *hidden) {
  double lo = fmin(c, g);
  *hidden += lo * (1 - 1.0 / k);
  return fmax(c, g) + lo / k - g;
}

/* Megatron-LM's dropout traffic in a GPT layer's ops (p = 0.1 by default; the masks are in
 * Korthikanti et al.'s activation count, which the mixed memory accounting uses): on the
 * attention probabilities a kernel of its own reads and writes them and writes a 1-byte mask,
 * 2.5 more passes over the scores (inside a fused attention kernel: none); the two hidden
 * dropouts are fused into the bias-dropout-add kernels (the residual ops), whose only extra
 * traffic is the mask, half an element each. Llama models train without dropout. */
static void add_dropout(layout_op_t *ops, int n, double b, double H, double T, double C, double tp,
                        double rows) {
  for (int i = 0; i < n; i++) {
    if (ops[i].scores_elems > 0) {
      double d = 2.5 * b * H * T * T / tp;
      ops[i].elems += d, ops[i].scores_elems += d;
    }
    if (!strcmp(ops[i].name, "residual1") || !strcmp(ops[i].name, "residual2"))
      ops[i].elems += 0.5 * rows * C;
  }
}

/* Megatron-LM's vocabulary-parallel cross-entropy (Megatron-Core's tensor_parallel/
 * cross_entropy.py, which NeMo and NeuronX Distributed port) on the rank's N x Vr logits: each
 * step a kernel of its own, in fp32: forward the max (read 4 bytes a logit), the subtraction
 * and the exponential (read and write 4 each), the sum (read 4) and the division (read and
 * write 4), 32 bytes; backward the product with the loss gradient, 8; logits of E < 4 bytes
 * are cast to fp32 first and their gradient back (E + 4 each way). The op list charges
 * backward twice forward's bytes, so the total is spread as a third forward. */
static void fp32_loss(layout_op_t *ops, int n, double N, double Vr, double E) {
  double per_logit = 40 + (E < 4 ? 2 * (E + 4) : 0);
  for (int i = 0; i < n; i++)
    if (!strcmp(ops[i].name, "softmax_ce")) ops[i].elems = per_logit / 3 / E * N * Vr + 2 * N;
}

/* One rank's ops of one micro-batch as the costs time them: a layer's (lops), the embedding's
 * (eops) and the head's (hops), with the mixed accounting's dropout and fp32 loss; *fz and *fze
 * how the layer's and the embedding's / head's ops run (op_time's kind). */
typedef struct {
  layout_op_t lops[LAYOUT_MAX_OPS], eops[LAYOUT_MAX_OPS], hops[LAYOUT_MAX_OPS];
  int nl, ne, nh, fz, fze;
} stage_ops_t;

static void stage_ops(const layout_t *lay, const sim_options_t *opt, stage_ops_t *o) {
  const layout_model_t *m = &lay->model;
  int b = lay->micro_batch, T = m->ctx, tp = lay->tp, sp = opt->sequence_parallel && tp > 1;
  o->nl = layout_layer_ops_tp(m, b, T, tp, sp, o->lops);
  o->ne = layout_embed_ops_tp(m, b, T, tp, sp, o->eops);
  o->nh = layout_head_ops_tp(m, b, T, tp, sp, o->hops);
  if (opt->memory == MEM_ACCOUNT_MIXED && m->arch == LAYOUT_ARCH_GPT)
    add_dropout(o->lops, o->nl, b, m->heads, T, m->dim, tp, sp ? (double)b * T / tp : (double)b * T);
  if (opt->memory == MEM_ACCOUNT_MIXED)
    fp32_loss(o->hops, o->nh, (double)b * T, layout_padded_vocab(m->vocab, tp) / tp,
              device_dtype_size(opt->dtype));
  /* FP8 GEMMs in the transformer layers only (Megatron-LM's output layer is not a Transformer
   * Engine module: the logits stay in the compute dtype) */
  o->fz = (opt->fused_attention ? OP_FUSED_ATTENTION : 0) |
          (opt->precision == MEM_PREC_FP8 ? OP_FP8_GEMMS : 0);
  o->fze = o->fz & ~OP_FP8_GEMMS;
}

/* ZeRO-3 as PyTorch FSDP's FULL_SHARD runs it (MEM_ZERO_FULL_SHARD) on stage s, one micro-batch
 * of k layers of f / b seconds each (forward / backward, TP included). Each layer is a unit: its
 * parameters (w bytes on a rank, in the weights' dtype) are all-gathered over the stage's DP group
 * before its forward and again before its backward (the forward freed them), its gradients
 * (g bytes) reduce-scattered after its backward. The root unit (embedding, final norm, head: xw
 * and xg bytes) is gathered with the first layer and stays whole through backward; its
 * gradients are reduce-scattered with the first layer's, last. FSDP issues the next unit's
 * gather when a unit starts (forward and backward prefetch), so a layer's gather -- in backward
 * with the reduce-scatter of the layer after it, on the same link -- runs beside the previous
 * layer's compute; the first gather of each pass and the last reduce-scatter are exposed.
 * With a shard group of S < D replicas (FSDP's HYBRID_SHARD) the gathers and reduce-scatters run
 * in it and each layer's gradient shard is then all-reduced over the D / S groups, on the same
 * chain. out: exposed forward and backward seconds, then the forward's and the backward's overlapped
 * seconds (their interference). 0 ok, -1 OOM. */
static int full_shard_comm(const layout_t *lay, const device_t *dev, int s, int S, int k, double f,
                           double b, double w, double g, double xw, double xg, double out[4]) {
  const int D = lay->dp, R = D / S;
  int *ranks = malloc(sizeof(int) * (size_t)(S + R)); /* the shard group, then the copies */
  if (!ranks) return -1;
  int *reps = ranks + S;
  /* the slowest of the stage's T groups: gathers and reduce-scatters in the first shard group,
   * the shards' all-reduce over the replicas' (d = 0, S, 2S, ...) */
  double ag = 0, ag_first = 0, rs = 0, rs_last = 0, ar = 0, ar_last = 0;
  for (int t = 0; t < lay->tp; t++) {
    for (int d = 0; d < S; d++) ranks[d] = layout_rank(lay, t, s, d);
    for (int r = 0; r < R; r++) reps[r] = layout_rank(lay, t, s, r * S);
    double v[6] = {device_allgather_time(dev, ranks, S, w), device_allgather_time(dev, ranks, S, w + xw),
                   device_reduce_scatter_time(dev, ranks, S, g),
                   device_reduce_scatter_time(dev, ranks, S, g + xg),
                   R > 1 ? device_allreduce_time(dev, reps, R, g / S) : 0,
                   R > 1 ? device_allreduce_time(dev, reps, R, (g + xg) / S) : 0};
    ag = fmax(ag, v[0]), ag_first = fmax(ag_first, v[1]), rs = fmax(rs, v[2]), rs_last = fmax(rs_last, v[3]);
    ar = fmax(ar, v[4]), ar_last = fmax(ar_last, v[5]);
  }
  free(ranks);
  const double between = k > 1 ? k - 1 : 0; /* the gathers that run beside a layer's compute */
  out[0] = ag_first + between * fmax(0, ag - f);
  out[1] = ag + between * fmax(0, ag + rs + ar - b) + rs_last + ar_last;
  out[2] = between * fmin(ag, f);
  out[3] = between * fmin(ag + rs + ar, b);
  return 0;
}

/* ZeRO-2 as DeepSpeed runs it (MEM_ZERO_SHARD_GRADS) on stage s, one micro-batch's backward of k
 * layers of b seconds each: every micro-batch, not only the last, the gradients go in buckets of
 * `bucket` bytes (whole layers of g bytes, at least one) that are reduce-scattered over the stage's
 * DP group as they fill, each beside the backward of the layers filling the next; the last bucket,
 * which takes the root's gradients (embedding, final norm, head: xg bytes), is exposed. Without
 * overlap (DeepSpeed's overlap_comm off) every bucket's reduction holds up the backward.
 * out: exposed and overlapped seconds. 0 ok, -1 OOM. */
static int grad_shard_comm(const layout_t *lay, const device_t *dev, int s, int k, double b,
                           double g, double xg, double bucket, int overlap, double out[2]) {
  const int D = lay->dp;
  const int j = g > 0 && bucket > g ? (int)fmin(k, floor(bucket / g)) : 1; /* layers a bucket */
  const int n = (k + j - 1) / j, tail = k - (n - 1) * j;                 /* buckets, last's layers */
  int *ranks = malloc(sizeof(int) * (size_t)D);
  if (!ranks) return -1;
  double rs = 0, rs_last = 0; /* the slowest of the stage's T groups */
  for (int t = 0; t < lay->tp; t++) {
    for (int d = 0; d < D; d++) ranks[d] = layout_rank(lay, t, s, d);
    rs = fmax(rs, device_reduce_scatter_time(dev, ranks, D, j * g));
    rs_last = fmax(rs_last, device_reduce_scatter_time(dev, ranks, D, tail * g + xg));
  }
  free(ranks);
  out[0] = (n - 1) * (overlap ? fmax(0, rs - j * b) : rs) + rs_last;
  out[1] = overlap ? (n - 1) * fmin(rs, j * b) : 0;
  return 0;
}

int sim_op_times(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                 sim_op_time_t *out, int max) {
  stage_ops_t so;
  stage_ops(lay, opt, &so);
  const struct {
    const char *part;
    const layout_op_t *ops;
    int n, kind;
  } parts[] = {{"layer", so.lops, so.nl, so.fz},
               {"embedding", so.eops, so.ne, so.fze},
               {"head", so.hops, so.nh, so.fze}};
  int n = 0;
  for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++)
    for (int i = 0; i < parts[p].n && n < max; i++, n++) {
      const layout_op_t *o = &parts[p].ops[i];
      /* a fused attention kernel keeps its score matrices on chip */
      double elems = o->elems - ((parts[p].kind & OP_FUSED_ATTENTION) ? o->scores_elems : 0);
      out[n] = (sim_op_time_t){o->name,
                               parts[p].part,
                               op_time(dev, opt->dtype, o, 1, parts[p].kind),
                               op_time(dev, opt->dtype, o, 2, parts[p].kind),
                               o->flops,
                               elems * device_dtype_size(opt->dtype),
                               p == 0 && recomputed(opt->recompute, o->name)};
    }
  return n;
}

int sim_build_costs(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                    sim_stage_cost_t **costs_out) {
  const layout_model_t *m = &lay->model;
  int P = lay->pp, b = lay->micro_batch, T = m->ctx, tp = lay->tp;
  int sp = opt->sequence_parallel && tp > 1;
  device_dtype_t dt = opt->dtype;
  sim_stage_cost_t *costs = calloc((size_t)P, sizeof *costs);
  if (!costs) return -1;
  stage_ops_t so;
  stage_ops(lay, opt, &so);
  const layout_op_t *lops = so.lops, *eops = so.eops, *hops = so.hops;
  const int nl = so.nl, ne = so.ne, nh = so.nh, fz = so.fz, fze = so.fze;
  /* the math of one micro-batch on one rank (roofline); each forward op timed once, as the
   * recomputation and the TP overlaps below pick single ops from the same times */
  double lt[LAYOUT_MAX_OPS], ht[LAYOUT_MAX_OPS], lf0 = 0, hf0 = 0;
  for (int i = 0; i < nl; i++) lf0 += lt[i] = op_time(dev, dt, &lops[i], 1, fz);
  for (int i = 0; i < nh; i++) hf0 += ht[i] = op_time(dev, dt, &hops[i], 1, fze);
  double lb0 = ops_time(dev, dt, lops, nl, 2, fz), hb0 = ops_time(dev, dt, hops, nh, 2, fze);
  double ef0 = ops_time(dev, dt, eops, ne, 1, fze), eb0 = ops_time(dev, dt, eops, ne, 2, fze);
  double lfl = layout_ops_flops(lops, nl), efl = layout_ops_flops(eops, ne),
         hfl = layout_ops_flops(hops, nh);
  /* recomputation in backward: the forward of the ops it re-runs */
  double rc_s = 0, rc_flops = 0;
  for (int i = 0; i < nl; i++)
    if (recomputed(opt->recompute, lops[i].name)) rc_s += lt[i], rc_flops += lops[i].flops;
  /* the column- and row-parallel products' forward GEMMs (--tp-overlap, --tp-comm-overlap) */
  double col_f[2] = {0, 0}, row_f[2] = {0, 0}, head_f = 0;
  int ncol = 0, nrow = 0;
  for (int i = 0; i < nl; i++) {
    const char *on = lops[i].name;
    if (ncol < 2 && (!strcmp(on, "qkv") || !strcmp(on, "fc") || !strcmp(on, "gate_up")))
      col_f[ncol++] = lt[i];
    if (nrow < 2 && (!strcmp(on, "attproj") || !strcmp(on, "fcproj") || !strcmp(on, "down")))
      row_f[nrow++] = lt[i];
  }
  for (int i = 0; i < nh; i++)
    if (!strcmp(hops[i].name, "logits")) head_f = ht[i];
  double opt_bytes, opt_flops, E;
  sim_precision_costs(opt->precision, &opt_bytes, &opt_flops, &E); /* E: gradient bytes */
  const double E_param = sim_precision_weight_bytes(opt->precision); /* ZeRO's all-gather */
  if (opt->grad_bf16) E = 2;
  double C = m->dim, t = tp, Vp = layout_padded_vocab(m->vocab, tp);
  const int tied = layout_model_tied(m);
  const mem_options_t mo = sim_mem_options(opt);
  const int Z = memory_shard_ranks(lay, &mo); /* the replicas a ZeRO shard spans */
  double n_act = (double)b * T * C * device_dtype_size(dt); /* a TP collective's array */
  for (int s = 0; s < P; s++) {
    sim_stage_cost_t *c = &costs[s];
    int k = layout_stage_layers(lay, s), first = (s == 0), last = (s == P - 1);
    tp_comm_t tc;
    if (tp_comm(lay, dev, s, sp, n_act, 4.0 * b * T, &tc)) {
      sim_costs_free(costs, P);
      return -1;
    }
    double hidden_f = 0, hidden_l = 0, hidden_h = 0; /* overlapped TP seconds */
    if (opt->tp_overlap && tp > 1) {
      /* the row-parallel products' backward: the gathered output gradient (SP), else nothing;
       * with userbuffers (SP) it is pipelined with their input-gradient GEMMs (about the
       * forward's time), and the forward's all-gathers and reduce-scatters with theirs */
      double row_b = sp ? 2 * tc.ag : 0;
      if (opt->tp_overlap == SIM_TP_OVERLAP_UB && sp) {
        double f = 0;
        row_b = 0;
        for (int i = 0; i < ncol; i++) f += pipelined(tc.ag, col_f[i], tp, &hidden_f);
        for (int i = 0; i < nrow; i++) {
          f += pipelined(tc.rs, row_f[i], 4, &hidden_f);
          row_b += pipelined(tc.ag, row_f[i], tp, &hidden_l);
        }
        tc.layer_f = f;
      }
      tc.layer_b = row_b + col_backward_tp(&tc, sp, col_f, ncol, &hidden_l);
      tc.head_b = col_backward_tp(&tc, sp, &head_f, 1, &hidden_h);
    }
    /* full recomputation runs the layer's forward again, communication included; selective-mlp
     * the MLP's half of it (SP: its all-gather and reduce-scatter; else its all-reduce) */
    double rc_tp = opt->recompute == MEM_RECOMPUTE_FULL            ? tc.layer_f
                   : opt->recompute == MEM_RECOMPUTE_SELECTIVE_MLP ? tc.layer_f / 2
                                                                    : 0;
    const double slow = opt->interference ? dev->overlap_slowdown : 0;
    double lf = lf0 + tc.layer_f + slow * hidden_f,
           lb = lb0 + tc.layer_b + rc_s + rc_tp + slow * hidden_l;
    double ef = ef0 + tc.embed_f, eb = eb0 + tc.embed_b, hf = hf0 + tc.head_f,
           hb = hb0 + tc.head_b + slow * hidden_h;
    c->fwd_s = k * lf + (first ? ef : 0) + (last ? hf : 0);
    c->bwd_s = k * lb + (first ? eb : 0) + (last ? hb : 0);
    c->fwd_tp_s = k * tc.layer_f + (first ? tc.embed_f : 0) + (last ? tc.head_f : 0);
    c->bwd_tp_s = k * (tc.layer_b + rc_tp) + (first ? tc.embed_b : 0) + (last ? tc.head_b : 0);
    c->fwd_flops = k * lfl + (first ? efl : 0) + (last ? hfl : 0);
    c->bwd_flops = 2 * c->fwd_flops + k * rc_flops;
    c->act_bytes = (double)b * T * C * device_dtype_size(dt) / (sp ? t : 1);
    double params = (double)layout_rank_params(lay, s);
    c->fwd_dp_s = c->bwd_dp_s = 0;
    if (opt->zero == MEM_ZERO_FULL_SHARD && lay->dp > 1) {
      double lp = (double)layout_rank_layer_params(m, tp), x = params - k * lp, z[4];
      if (full_shard_comm(lay, dev, s, Z, k, lf, lb, E_param * lp, E * lp, E_param * x, E * x, z)) {
        sim_costs_free(costs, P);
        return -1;
      }
      c->fwd_dp_s = z[0], c->bwd_dp_s = z[1];
      c->fwd_s += z[0] + slow * z[2];
      c->bwd_s += z[1] + slow * z[3];
    } else if (opt->zero == MEM_ZERO_SHARD_GRADS && lay->dp > 1) {
      double lp = (double)layout_rank_layer_params(m, tp), z[2];
      if (grad_shard_comm(lay, dev, s, k, lb, E * lp, E * (params - k * lp), opt->bucket_bytes,
                          opt->overlap, z)) {
        sim_costs_free(costs, P);
        return -1;
      }
      c->bwd_dp_s = z[0];
      c->bwd_s += z[0] + slow * z[1];
    }
    double opt_params = opt->zero ? ceil(params / Z) : params;
    c->opt_s = device_has_eff(dev)
                   ? device_op_time_eff(dev, DEV_FP32, opt_flops * opt_params, opt_bytes * opt_params, 1)
                   : device_op_time(dev, DEV_FP32, opt_flops * opt_params, opt_bytes * opt_params);
    /* ZeRO-1 reduce-scatters and all-gathers the padded shard: D x ceil(params / D) floats */
    c->param_bytes = opt->zero ? E * opt_params * Z : E * params;
    c->gather_bytes = opt->zero ? E_param * opt_params * Z : E_param * params;
    c->tied_bytes = (P > 1 && tied && (first || last)) ? E * Vp * C / t : 0;
    c->regions = calloc((size_t)k + 4, sizeof(sim_region_t));
    if (!c->regions) {
      sim_costs_free(costs, P);
      return -1;
    }
    /* gpt2.c's grad_ready order: ln_f, layers last to first, wpe, wte (the last stage's wte copy
     * at the very end); the copy lies between the layers and ln_f in memory. One rank's
     * gradients: 1/T of the split matrices. */
    double t_off = 0;
    int n = 0;
    if (last) { /* the final norm (GPT's ln_f 2C, LLAMA's C) and an untied lm_head; a tied wte's
                   copy comes last */
      const double norm = m->arch == LAYOUT_ARCH_LLAMA ? C : 2 * C;
      t_off += hb;
      c->regions[n] = (sim_region_t){E * (norm + (tied ? 0 : Vp * C / t)), t_off, 0, tied && P > 1};
      n++;
    }
    for (int l = 0; l < k; l++) {
      t_off += lb;
      c->regions[n] = (sim_region_t){E * (double)layout_rank_layer_params(m, tp), t_off, 0, 0};
      n++;
    }
    if (first) {
      t_off += eb;
      if (m->arch == LAYOUT_ARCH_GPT) { /* wpe */
        c->regions[n] = (sim_region_t){E * (double)m->ctx * C, t_off, 0, 0};
        n++;
      }
      c->regions[n] = (sim_region_t){E * Vp * C / t, t_off, tied && P > 1, 0};
      n++;
    } else if (last && P > 1 && tied) {
      c->regions[n] = (sim_region_t){E * Vp * C / t, t_off, 1, 0};
      n++;
    }
    c->nregions = n;
  }
  *costs_out = costs;
  return 0;
}

void sim_costs_free(sim_stage_cost_t *costs, int pp) {
  if (!costs) return;
  for (int s = 0; s < pp; s++) free(costs[s].regions);
  free(costs);
}

void sim_result_shares(const sim_result_t *r, double shares[SIM_NSHARES]) {
  const double sh[SIM_NSHARES] = {r->compute_share, r->tp_comm_share, r->pipeline_idle_share,
                                  r->exposed_comm_share, r->optimizer_share};
  for (int i = 0; i < SIM_NSHARES; i++) shares[i] = sh[i] < 0 && sh[i] > -1e-9 ? 0 : sh[i];
}

void sim_result_free(sim_result_t *res) {
  if (!res) return;
  free(res->stages);
  res->stages = NULL;
  free(res->events);
  res->events = NULL;
  res->nevents = 0;
}

int sim_write_chrome_trace(const sim_result_t *res, FILE *f, int pid, const char *label) {
  int maxrank = -1;
  for (int i = 0; i < res->nevents; i++)
    if (res->events[i].rank > maxrank) maxrank = res->events[i].rank;
  fprintf(
      f,
      "[\n{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"%s\"}}",
      pid, label ? label : "simulated");
  /* track ids: 2r for the compute of rank r, 2r + 1 for its communication; with tensor
   * parallelism the names carry the rank's (t, stage, replica) */
  int T = res->tp > 1 ? res->tp : 1, P = res->pp > 0 ? res->pp : 1;
  for (int r = 0; r <= maxrank; r++) {
    char who[64];
    if (T > 1)
      snprintf(who, sizeof who, "r%d (t%d p%d d%d)", r, r % T, (r / T) % P, r / (T * P));
    else
      snprintf(who, sizeof who, "r%d", r);
    fprintf(
        f,
        ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": "
        "{\"name\": \"%s compute\"}},\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, "
        "\"tid\": %d, \"args\": {\"name\": \"%s comm\"}}",
        pid, 2 * r, who, pid, 2 * r + 1, who);
  }
  for (int i = 0; i < res->nevents; i++) {
    const sim_event_t *e = &res->events[i];
    int compute = e->kind == SIM_EV_FWD || e->kind == SIM_EV_BWD || e->kind == SIM_EV_OPTIMIZER;
    char name[64];
    if (e->chunk >= 0)
      snprintf(name, sizeof name, "%s m%d c%d", sim_event_name(e->kind), e->micro, e->chunk);
    else if (e->micro >= 0)
      snprintf(name, sizeof name, "%s %s%d", sim_event_name(e->kind),
               e->kind == SIM_EV_DP_REDUCE ? "bucket " : "m", e->micro);
    else
      snprintf(name, sizeof name, "%s", sim_event_name(e->kind));
    fprintf(f,
            ",\n{\"name\": \"%s\", \"cat\": \"sim\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, "
            "\"ts\": %.3f, \"dur\": %.3f}",
            name, pid, 2 * e->rank + !compute, e->start_s * 1e6, (e->end_s - e->start_s) * 1e6);
  }
  fprintf(f, "\n]\n");
  return ferror(f) ? -1 : 0;
}

const char *sim_event_name(sim_event_kind_t k) {
  static const char *names[] = {"fwd",       "bwd",  "send_act",  "send_grad",
                                "dp_reduce", "tied", "optimizer", "allgather"};
  return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* Per-rank state of the pipeline phase. */
typedef struct {
  int pc;                /* next action */
  int blocked;           /* waiting on a receive */
  double t;              /* clock */
  double link_next_free; /* when its link towards stage + 1 is free */
  double link_prev_free; /* towards stage - 1 */
  double busy;           /* compute seconds */
  double end_bwd;        /* end of its final backward */
} rank_state_t;

/* One simulation, phase to phase: set-up, the pipeline's event loop, the data-parallel
 * reductions, the steps after them (tied exchange, ZeRO reduce-scatter, norm, optimizer,
 * all-gather) and the result. */
typedef struct {
  const layout_t *lay;
  const device_t *dev;
  const sim_stage_cost_t *costs;
  const sim_options_t *opt;
  sim_result_t *res;
  int T, P, D, M, N;     /* tensor-parallel ranks, stages, replicas, micro-batches, ranks */
  int V;                 /* model chunks per stage (interleaved schedule), else 1 */
  int ecap, rec_fail;    /* res->events capacity; 1 once recording ran out of memory */
  sched_action_t **acts; /* [P] the stage's schedule */
  int *nacts, *last_bwd; /* [P] its length, the index of its final backward */
  int *chunk_last_bwd;   /* [P x V] the index of each chunk's final backward */
  double *chunk_bwd_start; /* [N x V] when rank r's final backward pass of chunk c started (the
                              gradients of the chunk's layers are final during it) */
  double *chunk_fwd_first; /* [N x V] when rank r's first forward pass of chunk c started (its
                              parameters are needed from then on), -1 before */
  rank_state_t *st;      /* [N] */
  double *act_arr, *grad_arr; /* [N x V x M] arrival of activations / gradients, -1: not yet
                                 sent (msg_slot) */
  int *work, nwork;      /* runnable ranks (a stack) */
  double *interf; /* [P x T] compute lost to the overlapped buckets (overlap_slowdown) */
  double *comm_done, *comm_busy; /* [P x T] end of the bucket reductions of the DP group of
                                    (stage, t), index stage * T + t; their busy time */
  double *opt_start, *final_t;   /* [N] when the rank is ready for the next phase; its clock */
  int *group, *norm_grp; /* scratch: a DP group [D], a norm group [N] */
  double *norm_wait;     /* [N] waiting for the norm group's slowest rank (pipeline idle) */
} sim_t;

/* Appends an event when recording (an allocation failure sets s->rec_fail). */
static void record(sim_t *s, int rank, sim_event_kind_t kind, int micro, double start,
                   double end) {
  sim_result_t *res = s->res;
  if (!s->opt->record_events) return;
  if (res->nevents == s->ecap) {
    int ncap = s->ecap ? 2 * s->ecap : 1024;
    sim_event_t *e = realloc(res->events, sizeof *e * (size_t)ncap);
    if (!e) {
      s->rec_fail = 1;
      return;
    }
    res->events = e;
    s->ecap = ncap;
  }
  res->events[res->nevents++] = (sim_event_t){rank, kind, micro, start, end, -1};
}

/* record() for a schedule action's interval, naming its chunk when the schedule interleaves. */
static void record_action(sim_t *s, int rank, sim_event_kind_t kind, const sched_action_t *a,
                          double start, double end) {
  int n = s->res->nevents;
  record(s, rank, kind, a->micro, start, end);
  if (s->V > 1 && s->res->nevents > n) s->res->events[n].chunk = a->chunk;
}

static void sim_free(sim_t *s) {
  if (s->acts)
    for (int i = 0; i < s->P; i++) free(s->acts[i]);
  free(s->acts);
  free(s->nacts);
  free(s->last_bwd);
  free(s->chunk_last_bwd);
  free(s->chunk_bwd_start);
  free(s->chunk_fwd_first);
  free(s->st);
  free(s->act_arr);
  free(s->grad_arr);
  free(s->work);
  free(s->comm_done);
  free(s->comm_busy);
  free(s->interf);
  free(s->opt_start);
  free(s->final_t);
  free(s->group);
  free(s->norm_grp);
  free(s->norm_wait);
}

/* Set-up: the arrays and every stage's schedule. 0, or -1 with a message. */
static int sim_setup(sim_t *s, char *err, size_t errlen) {
  const int P = s->P, D = s->D, M = s->M, N = s->N, T = s->T;
  s->acts = calloc((size_t)P, sizeof *s->acts);
  s->nacts = calloc((size_t)P, sizeof(int));
  s->last_bwd = calloc((size_t)P, sizeof(int));
  s->chunk_last_bwd = calloc((size_t)P * s->V, sizeof(int));
  s->chunk_bwd_start = calloc((size_t)N * s->V, sizeof(double));
  s->chunk_fwd_first = malloc(sizeof(double) * (size_t)N * s->V);
  s->st = calloc((size_t)N, sizeof *s->st);
  s->act_arr = malloc(sizeof(double) * (size_t)N * s->V * M);
  s->grad_arr = malloc(sizeof(double) * (size_t)N * s->V * M);
  s->work = malloc(sizeof(int) * (size_t)N * 2 + sizeof(int));
  s->comm_done = calloc((size_t)P * T, sizeof(double));
  s->comm_busy = calloc((size_t)P * T, sizeof(double));
  s->interf = calloc((size_t)P * T, sizeof(double));
  s->opt_start = calloc((size_t)N, sizeof(double));
  s->final_t = calloc((size_t)N, sizeof(double));
  s->group = malloc(sizeof(int) * (size_t)D);
  s->norm_grp = malloc(sizeof(int) * (size_t)N);
  s->norm_wait = calloc((size_t)N, sizeof(double));
  s->res->stages = calloc((size_t)P, sizeof *s->res->stages);
  s->res->pp = P;
  if (!s->acts || !s->nacts || !s->last_bwd || !s->chunk_last_bwd || !s->chunk_bwd_start || !s->chunk_fwd_first || !s->st || !s->act_arr || !s->grad_arr ||
      !s->work || !s->comm_done || !s->comm_busy || !s->interf || !s->opt_start || !s->final_t || !s->group ||
      !s->norm_grp || !s->norm_wait || !s->res->stages)
    return strata_fail(err, errlen, "simulate: out of memory (%d ranks x %d micro-batches)", N, M);
  for (int st = 0; st < P; st++) {
    s->acts[st] = malloc(sizeof(sched_action_t) * (size_t)SCHED_MAX_ACTIONS(M * s->V));
    if (!s->acts[st] || schedule_build_v(s->opt->kind, P, M, s->V, st, s->acts[st], &s->nacts[st]))
      return strata_fail(err, errlen, "simulate: cannot build the %s schedule for stage %d",
                         schedule_kind_name(s->opt->kind), st);
    s->last_bwd[st] = -1;
    for (int i = 0; i < s->nacts[st]; i++)
      if (s->acts[st][i].op == SCHED_BWD) s->last_bwd[st] = s->chunk_last_bwd[st * s->V + s->acts[st][i].chunk] = i;
  }
  for (size_t i = 0; i < (size_t)N * s->V * M; i++) s->act_arr[i] = s->grad_arr[i] = -1;
  for (size_t i = 0; i < (size_t)N * s->V; i++) s->chunk_fwd_first[i] = -1;
  return 0;
}

/* Notes when rank r (of `stage`) starts the first forward or the final backward pass of a
 * chunk (action a at pc). */
static void note_pass(sim_t *s, int r, int stage, const sched_action_t *a, double now) {
  size_t i = (size_t)r * s->V + a->chunk;
  if (a->op == SCHED_BWD && s->st[r].pc == s->chunk_last_bwd[stage * s->V + a->chunk])
    s->chunk_bwd_start[i] = now;
  if (a->op == SCHED_FWD && s->chunk_fwd_first[i] < 0) s->chunk_fwd_first[i] = now;
}

/* The chunk holding a gradient region final `off` into a stage's backward, counted in backward
 * order (0: the last model chunk; the stage's layers split evenly over its V chunks). */
static int region_chunk_back(const sim_t *s, const sim_stage_cost_t *c, double off) {
  const double pass = c->bwd_s / s->V;
  if (s->V == 1 || pass <= 0) return 0;
  int j = (int)ceil(off / pass) - 1;
  return j < 0 ? 0 : j > s->V - 1 ? s->V - 1 : j;
}

/* When a gradient region final `off` into a stage's backward (sim_region_t.ready_s) is ready on
 * rank r: the final backward pass of the chunk holding it (the stage's layers split evenly over
 * its V chunks, backward running the last chunk first) plus the offset into that pass. */
static double region_ready(const sim_t *s, int r, const sim_stage_cost_t *c, double off) {
  const int j = region_chunk_back(s, c, off);
  return s->chunk_bwd_start[(size_t)r * s->V + (s->V - 1 - j)] + off - j * (c->bwd_s / s->V);
}

/* The arrival slot of (rank r, chunk, micro-batch) in act_arr / grad_arr. */
static size_t msg_slot(const sim_t *s, int r, int chunk, int micro) {
  return ((size_t)r * (size_t)s->V + (size_t)chunk) * (size_t)s->M + (size_t)micro;
}

/* A chunk pass's compute time: a stage's forward or backward split evenly over its V chunks. */
static double pass_s(const sim_t *s, const sim_stage_cost_t *c, sched_op_t op) {
  return (op == SCHED_FWD ? c->fwd_s : c->bwd_s) / s->V;
}

/* A send of rank r to the same tensor-parallel rank of the next (previous) stage, T ranks on
 * (interleaved: the last stage's chunk v sends on to the first stage's chunk v + 1, and back):
 * the message leaves when the link in its direction is free and arrives latency + bytes /
 * bandwidth later (the slowest link between the two TP groups: sim_pipe_link); a rank blocked
 * on it becomes runnable. */
static void sim_send(sim_t *s, int r, const sched_action_t *a, const sim_stage_cost_t *c) {
  rank_state_t *q = &s->st[r];
  const int fwd = a->op == SCHED_SEND_ACT, stage = layout_stage_of(s->lay, r), wrap = s->P * s->T;
  int dst = fwd ? r + s->T : r - s->T, chunk = a->chunk;
  if (fwd && stage == s->P - 1) dst -= wrap, chunk++;
  if (!fwd && stage == 0) dst += wrap, chunk--;
  double lat, bw;
  sim_pipe_link(s->lay, s->dev, r, dst, &lat, &bw);
  double *free_t = fwd ? &q->link_next_free : &q->link_prev_free;
  double start = q->t > *free_t ? q->t : *free_t;
  double wire = c->act_bytes / bw;
  *free_t = start + wire;
  double *arr = fwd ? s->act_arr : s->grad_arr;
  arr[msg_slot(s, dst, chunk, a->micro)] = start + lat + wire;
  record_action(s, r, fwd ? SIM_EV_SEND_ACT : SIM_EV_SEND_GRAD, a, start, start + lat + wire);
  if (s->st[dst].blocked) {
    s->st[dst].blocked = 0;
    s->work[s->nwork++] = dst;
  }
}

/* Runs rank r's actions until it ends its schedule or blocks on a receive not yet sent. */
static void sim_run_rank(sim_t *s, int r) {
  rank_state_t *q = &s->st[r];
  int stage = layout_stage_of(s->lay, r);
  const sim_stage_cost_t *c = &s->costs[stage];
  q->blocked = 0;
  while (q->pc < s->nacts[stage]) {
    const sched_action_t *a = &s->acts[stage][q->pc];
    int last = q->pc == s->last_bwd[stage];
    if (a->op == SCHED_FWD) {
      double d = pass_s(s, c, a->op);
      note_pass(s, r, stage, a, q->t);
      record_action(s, r, SIM_EV_FWD, a, q->t, q->t + d);
      q->t += d;
      q->busy += d;
    } else if (a->op == SCHED_BWD) {
      double d = pass_s(s, c, a->op);
      note_pass(s, r, stage, a, q->t);
      record_action(s, r, SIM_EV_BWD, a, q->t, q->t + d);
      q->t += d;
      q->busy += d;
      if (last) q->end_bwd = q->t;
    } else if (a->op == SCHED_SEND_ACT || a->op == SCHED_SEND_GRAD) {
      sim_send(s, r, a, c);
    } else { /* receive */
      double *arr = a->op == SCHED_RECV_ACT ? s->act_arr : s->grad_arr;
      double at = arr[msg_slot(s, r, a->chunk, a->micro)];
      if (at < 0) {
        q->blocked = 1;
        return;
      }
      if (at > q->t) q->t = at;
    }
    q->pc++;
  }
}

/* ---- the pipeline phase on time-shared cores ----
 * The cpu profile of a job whose ranks outnumber the host's cores (device share_ranks > 0):
 * every cost is the dedicated work times f = R / C (sim_clock.c scales the profile), but a
 * rank only needs a core while it computes. The ranks of a host (share_ranks consecutive
 * ranks) therefore advance on one global clock, and while k of them compute each progresses
 * at share_rate[k] of a core (measured at start-up: about min(1, C / k), less the cost of
 * sharing), so the other stages' work runs faster in a rank's bubble. Messages keep their
 * scaled link times. */
enum { SH_RUN, SH_COMPUTE, SH_BLOCKED, SH_WAIT, SH_DONE };

typedef struct {
  int *state;  /* [N] SH_* */
  double *work; /* [N] computing: dedicated seconds left */
  double *wake; /* [N] waiting: the awaited message's arrival */
  double *start; /* [N] computing: when it started */
  double *rate;  /* [N] computing: fraction of a core it gets now */
  int *k;        /* [hosts] its computing ranks */
} shared_t;

/* The rate of a computing rank while k of its host's ranks compute; beyond the measured k,
 * the largest measured k's delivered cores spread over k; unmeasured: the R / C slowing. */
static double share_rate(const device_t *d, int k) {
  int m = d->share_ranks < DEV_SHARE_MAX ? d->share_ranks : DEV_SHARE_MAX;
  double r = k <= m ? d->share_rate[k] : d->share_rate[m] * m / k;
  return r > 0 ? r : 1 / d->timeshare;
}

/* The arrival of the message rank r's next action receives (-1: not sent yet). */
static double shared_arrival(const sim_t *s, int r) {
  const sched_action_t *a = &s->acts[layout_stage_of(s->lay, r)][s->st[r].pc];
  return (a->op == SCHED_RECV_ACT ? s->act_arr : s->grad_arr)[msg_slot(s, r, a->chunk, a->micro)];
}

/* Runs rank r's actions at time now until it starts a compute, waits for a message (not yet
 * sent, or arriving later) or ends its schedule. */
static void shared_run_rank(sim_t *s, shared_t *h, int r, double now) {
  rank_state_t *q = &s->st[r];
  int stage = layout_stage_of(s->lay, r);
  const sim_stage_cost_t *c = &s->costs[stage];
  q->t = now;
  for (; q->pc < s->nacts[stage]; q->pc++) {
    const sched_action_t *a = &s->acts[stage][q->pc];
    if (a->op == SCHED_FWD || a->op == SCHED_BWD) {
      note_pass(s, r, stage, a, now);
      h->work[r] = pass_s(s, c, a->op) / s->dev->timeshare;
      h->start[r] = now;
      h->state[r] = SH_COMPUTE;
      return;
    }
    if (a->op == SCHED_SEND_ACT || a->op == SCHED_SEND_GRAD) {
      sim_send(s, r, a, c);
      continue;
    }
    double at = shared_arrival(s, r);
    if (at < 0 || at > now) {
      h->state[r] = at < 0 ? SH_BLOCKED : SH_WAIT;
      h->wake[r] = at;
      return;
    }
  }
  h->state[r] = SH_DONE;
}

/* Runs every rank that can act at `now` until none can (a send may let a blocked one on). */
static void shared_settle(sim_t *s, shared_t *h, double now) {
  for (int changed = 1; changed;) {
    changed = 0;
    for (int r = 0; r < s->N; r++) {
      if (h->state[r] == SH_BLOCKED) {
        h->wake[r] = shared_arrival(s, r);
        if (h->wake[r] >= 0) h->state[r] = SH_WAIT;
      }
      if (h->state[r] == SH_RUN || (h->state[r] == SH_WAIT && h->wake[r] <= now)) {
        shared_run_rank(s, h, r, now);
        changed = 1;
      }
    }
  }
}

/* The pipeline phase with processor sharing: from event to event (a compute ending, a message
 * arriving) every computing rank progresses at its host's current rate. 0, or -1 out of
 * memory (a deadlock is reported by the caller). */
static int sim_pipeline_shared(sim_t *s, char *err, size_t errlen) {
  const int N = s->N, H = s->dev->share_ranks, hosts = (N + H - 1) / H;
  shared_t h = {calloc((size_t)N, sizeof(int)), calloc((size_t)N, sizeof(double)),
                calloc((size_t)N, sizeof(double)), calloc((size_t)N, sizeof(double)),
                calloc((size_t)N, sizeof(double)), calloc((size_t)hosts, sizeof(int))};
  int rc = 0;
  if (!h.state || !h.work || !h.wake || !h.start || !h.rate || !h.k) {
    rc = strata_fail(err, errlen, "simulate: out of memory (%d ranks)", N);
    goto out;
  }
  for (double now = 0;;) {
    shared_settle(s, &h, now);
    memset(h.k, 0, sizeof(int) * (size_t)hosts);
    for (int r = 0; r < N; r++)
      if (h.state[r] == SH_COMPUTE) h.k[r / H]++;
    double dt = INFINITY;
    int first = -1; /* the rank whose compute ends first */
    for (int r = 0; r < N; r++) {
      if (h.state[r] == SH_COMPUTE) {
        h.rate[r] = share_rate(s->dev, h.k[r / H]);
        if (h.work[r] / h.rate[r] < dt) dt = h.work[r] / h.rate[r], first = r;
      } else if (h.state[r] == SH_WAIT && h.wake[r] - now < dt) {
        dt = h.wake[r] - now, first = -1;
      }
    }
    if (!isfinite(dt)) break; /* every rank done, or a deadlock */
    now += dt;
    for (int r = 0; r < N; r++) {
      if (h.state[r] != SH_COMPUTE) continue;
      h.work[r] -= h.rate[r] * dt;
      if (r != first && h.work[r] > 1e-12 * dt) continue;
      rank_state_t *q = &s->st[r];
      int stage = layout_stage_of(s->lay, r);
      const sched_action_t *a = &s->acts[stage][q->pc];
      record_action(s, r, a->op == SCHED_FWD ? SIM_EV_FWD : SIM_EV_BWD, a, h.start[r], now);
      q->busy += now - h.start[r];
      if (q->pc == s->last_bwd[stage]) q->end_bwd = now;
      q->t = now;
      q->pc++;
      h.state[r] = SH_RUN;
    }
  }
out:
  free(h.state);
  free(h.work);
  free(h.wake);
  free(h.start);
  free(h.rate);
  free(h.k);
  return rc;
}

/* The pipeline phase: a worklist of runnable ranks; a rank blocked on a receive sleeps until
 * the matching send is posted. 0, or -1 when a schedule deadlocks. */
static int sim_pipeline(sim_t *s, char *err, size_t errlen) {
  if (device_time_shared(s->dev)) {
    if (sim_pipeline_shared(s, err, errlen)) return -1;
  } else {
    for (int r = s->N - 1; r >= 0; r--) s->work[s->nwork++] = r;
    while (s->nwork > 0) sim_run_rank(s, s->work[--s->nwork]);
  }
  for (int r = 0; r < s->N; r++)
    if (s->st[r].pc < s->nacts[layout_stage_of(s->lay, r)])
      return strata_fail(err, errlen,
                         "simulate: the %s schedule deadlocked at rank %d (stage %d, action %d)",
                         schedule_kind_name(s->opt->kind), r, layout_stage_of(s->lay, r),
                         s->st[r].pc);
  return 0;
}

/* The gradient bucket of stage st's model chunk `chunk` in bytes (weights: 0 for the gradients,
 * 1 for the parameters' all-gather): bucket_bytes, or with zero_overlap and no size asked for,
 * Megatron-Core's buckets of the stage's elements (its padded shard's bytes per element). */
static double dp_bucket_bytes(const sim_t *s, int st, int chunk, int weights) {
  if (!sim_megatron_buckets(s->opt)) return s->opt->bucket_bytes;
  const sim_stage_cost_t *c = &s->costs[st];
  double elems = s->D * ceil((double)layout_rank_params(s->lay, st) / s->D);
  return sim_megatron_bucket(st, chunk, s->D) * (weights ? c->gather_bytes : c->param_bytes) / elems;
}

/* One bucket of `bytes` in stage st's DP group (all-reduced; ZeRO-1: reduce-scattered): it
 * starts when every replica has finished its part (offset `off` into the final backward with
 * overlap, region_ready, else the end of backward) and the group's timeline is free. Returns the timeline's new free time. */
static double sim_bucket(sim_t *s, int st, int bucket, double bytes, double off, int at_end,
                         double free_t, double *busy, double *interf) {
  double ready = 0, end_bwd = 0;
  for (int d = 0; d < s->D; d++) {
    const rank_state_t *q = &s->st[s->group[d]];
    double t = (s->opt->overlap && !at_end) ? region_ready(s, s->group[d], &s->costs[st], off) : q->end_bwd;
    if (t > q->end_bwd) t = q->end_bwd;
    if (t > ready) ready = t;
    if (q->end_bwd > end_bwd) end_bwd = q->end_bwd;
  }
  double start = ready > free_t ? ready : free_t;
  double dur = s->opt->zero ? device_reduce_scatter_time(s->dev, s->group, s->D, bytes)
                            : device_allreduce_time(s->dev, s->group, s->D, bytes);
  *busy += dur;
  /* the part of the reduction that runs beside backward slows it (0 without the model) */
  double ov = (start + dur < end_bwd ? start + dur : end_bwd) - start;
  if (ov > 0 && s->opt->interference) *interf += s->dev->overlap_slowdown * ov;
  for (int d = 0; d < s->D; d++)
    record(s, s->group[d], SIM_EV_DP_REDUCE, bucket, start, start + dur);
  return start + dur;
}

/* Data-parallel reduction per DP group (stage, t) (one timeline each). The buckets of
 * grad_sync.c: regions in report order, the tied wte skipped; the open bucket starts when it
 * reaches bucket_bytes, or when the next region is not contiguous (brk), and the rest at the
 * end of backward. Strata's ZeRO-1 has no buckets (reduce-scatter after backward); with
 * zero_overlap its buckets are reduce-scattered. */
static void sim_dp_buckets(sim_t *s) {
  const int D = s->D;
  for (int g = 0; g < s->P * s->T; g++) {
    const int st = g / s->T, tr = g % s->T;
    const sim_stage_cost_t *c = &s->costs[st];
    for (int d = 0; d < D; d++) s->group[d] = layout_rank(s->lay, tr, st, d);
    double free_t = 0, busy = 0, pend = 0, last_off = 0;
    int bucket = 0, prev_brk = 0, megatron = sim_megatron_buckets(s->opt), open_chunk = 0;
    const int buckets = D > 1 && (!s->opt->zero || s->opt->zero_overlap) &&
                        s->opt->zero < MEM_ZERO_SHARD_GRADS; /* ZeRO-2 and 3: in the costs */
    for (int i = 0; buckets && i <= c->nregions; i++) {
      int at_end = i == c->nregions;
      if (!at_end && c->regions[i].skip) continue;
      double off = at_end ? 0 : c->regions[i].ready_s;
      /* Megatron-Core: each model chunk has buckets of its own; a chunk's last one starts when
       * its own last region is ready */
      int chunk = at_end ? open_chunk : s->V - 1 - region_chunk_back(s, c, off);
      int chunk_ends = megatron && !at_end && chunk != open_chunk;
      /* before region i: it is not contiguous with the open bucket, or the end */
      if (pend > 0 && (prev_brk || at_end || chunk_ends)) {
        free_t = sim_bucket(s, st, bucket++, pend, chunk_ends ? last_off : off, at_end, free_t, &busy,
                            &s->interf[g]);
        pend = 0;
      }
      if (at_end) break;
      pend += c->regions[i].bytes;
      open_chunk = chunk, last_off = off;
      prev_brk = c->regions[i].brk && !megatron; /* Megatron-Core: one contiguous buffer */
      if (pend >= dp_bucket_bytes(s, st, chunk, 0)) {
        free_t = sim_bucket(s, st, bucket++, pend, off, at_end, free_t, &busy, &s->interf[g]);
        pend = 0;
      }
    }
    s->comm_done[g] = free_t;
    s->comm_busy[g] = busy;
  }
}

/* The tied wte's gradient sum between the first and last stage of each replica, once both
 * have finished backward and their buckets (final_t, from opt_start). */
static void sim_tied(sim_t *s) {
  for (int r = 0; r < s->N; r++) {
    int g = layout_stage_of(s->lay, r) * s->T + layout_tp_of(s->lay, r);
    double end = s->st[r].end_bwd + s->interf[g]; /* + compute lost to overlapped buckets */
    s->opt_start[r] = end > s->comm_done[g] ? end : s->comm_done[g];
  }
  for (int r = 0; r < s->N; r++) {
    int st = layout_stage_of(s->lay, r);
    s->final_t[r] = s->opt_start[r];
    if (s->costs[st].tied_bytes > 0 && s->P > 1) {
      int d = layout_replica_of(s->lay, r), tr = layout_tp_of(s->lay, r);
      int r0 = layout_rank(s->lay, tr, 0, d), rl = layout_rank(s->lay, tr, s->P - 1, d);
      double both = s->opt_start[r0] > s->opt_start[rl] ? s->opt_start[r0] : s->opt_start[rl];
      double tied = both + device_p2p_time(s->dev, r0, rl, s->costs[st].tied_bytes);
      record(s, r, SIM_EV_TIED, -1, both, tied);
      s->final_t[r] = tied;
    }
  }
}

/* The latest final_t of the DP group of (stage st, tensor-parallel rank tr), filled into
 * s->group. */
static double sim_group_ready(sim_t *s, int st, int tr) {
  double all = 0;
  for (int d = 0; d < s->D; d++) {
    s->group[d] = layout_rank(s->lay, tr, st, d);
    if (s->final_t[s->group[d]] > all) all = s->final_t[s->group[d]];
  }
  return all;
}

/* After the tied sum, per DP group: the tied sum's all-reduce (no ZeRO) or reduce-scatter
 * (ZeRO-1 with zero_overlap: the rest went in buckets), or Strata's ZeRO-1 reduce-scatter of
 * everything. */
static void sim_dp_after(sim_t *s) {
  const int D = s->D, whole = s->opt->zero && !s->opt->zero_overlap;
  if (s->opt->zero >= MEM_ZERO_SHARD_GRADS) return; /* ZeRO-2 and 3: every gradient reduce-scattered
                                                      in its micro-batch's backward (the costs) */
  for (int g = 0; g < s->P * s->T && D > 1; g++) {
    const int st = g / s->T;
    const sim_stage_cost_t *c = &s->costs[st];
    if (!whole && !(c->tied_bytes > 0)) continue;
    double all = sim_group_ready(s, st, g % s->T);
    double dur = whole        ? device_reduce_scatter_time(s->dev, s->group, D, c->param_bytes)
                 : s->opt->zero ? device_reduce_scatter_time(s->dev, s->group, D, c->tied_bytes)
                                : device_allreduce_time(s->dev, s->group, D, c->tied_bytes);
    for (int d = 0; d < D; d++) {
      s->final_t[s->group[d]] = all + dur;
      record(s, s->group[d], SIM_EV_DP_REDUCE, -1, all, all + dur);
    }
    s->comm_busy[g] += dur;
  }
}

/* The gradient-norm all-reduce that synchronises each norm group (the replica's T x P ranks,
 * its model-parallel group: consecutive ranks; ZeRO-1: all ranks). */
static void sim_norm(sim_t *s) {
  int gn = s->opt->zero ? s->N : s->T * s->P, ng = s->opt->zero ? 1 : s->D;
  for (int gi = 0; gi < ng && gn > 1; gi++) {
    double all = 0;
    for (int i = 0; i < gn; i++) {
      s->norm_grp[i] = s->opt->zero ? i : gi * gn + i;
      if (s->final_t[s->norm_grp[i]] > all) all = s->final_t[s->norm_grp[i]];
    }
    double end = all + device_allreduce_time(s->dev, s->norm_grp, gn, SIM_NORM_BYTES);
    for (int i = 0; i < gn; i++) {
      /* waiting for the slowest rank of the group here is pipeline idle, not communication */
      s->norm_wait[s->norm_grp[i]] = all - s->final_t[s->norm_grp[i]];
      s->final_t[s->norm_grp[i]] = end;
    }
  }
}

/* How much later rank r's forward would end beside a parameter all-gather of `dur` seconds
 * (zero_overlap; Megatron-LM's --overlap-param-gather): in the steady state the gather of the
 * stage's parameters starts when the step does (the previous step's optimizer has just ended)
 * and brings them chunk by chunk in forward order, each a 1/V share. A layer waits for its own
 * parameters: the first bucket must be there when the rank's first forward starts, and each
 * chunk by the end of the rank's first forward pass of it. The rest of the gather runs beside
 * the rank's compute and slows it as an overlapped bucket does (overlap_slowdown). */
static double gather_delay(const sim_t *s, int r, const sim_stage_cost_t *c, double dur) {
  const int V = s->V;
  const double bucket = dp_bucket_bytes(s, layout_stage_of(s->lay, r), 0, 1);
  double chunk = c->gather_bytes / V, first = chunk < bucket ? chunk : bucket;
  double wait = device_allgather_time(s->dev, s->group, s->D, first) - s->chunk_fwd_first[(size_t)r * V];
  for (int v = 0; v < V; v++) {
    double late = dur * (v + 1) / V - (s->chunk_fwd_first[(size_t)r * V + v] + pass_s(s, c, SCHED_FWD));
    if (late > wait) wait = late;
  }
  if (wait < 0) wait = 0;
  double beside = dur - s->chunk_fwd_first[(size_t)r * V] - wait;
  return wait + (s->opt->interference && beside > 0 ? s->dev->overlap_slowdown * beside : 0);
}

/* AdamW on every rank, then the ZeRO-1 parameter all-gather per DP group: after AdamW, or with
 * zero_overlap beside the next step's forward, where the step grows by the longest any rank
 * would wait for it (a stage that starts late holds up its pipeline). */
static void sim_optimizer(sim_t *s) {
  for (int r = 0; r < s->N; r++) {
    int st = layout_stage_of(s->lay, r);
    s->opt_start[r] = s->final_t[r];
    s->final_t[r] = s->opt_start[r] + s->costs[st].opt_s;
    record(s, r, SIM_EV_OPTIMIZER, -1, s->opt_start[r], s->final_t[r]);
  }
  if (!(s->opt->zero && s->D > 1) || s->opt->zero == MEM_ZERO_FULL_SHARD) return; /* ZeRO-3 gathers
                                                                                   per layer */
  double late = 0;
  for (int g = 0; g < s->P * s->T; g++) {
    const int st = g / s->T;
    double all = sim_group_ready(s, st, g % s->T);
    double dur = device_allgather_time(s->dev, s->group, s->D, s->costs[st].gather_bytes);
    for (int d = 0; d < s->D; d++) {
      int r = s->group[d];
      if (s->opt->zero_overlap) {
        double w = gather_delay(s, r, &s->costs[st], dur);
        if (w > late) late = w;
        record(s, r, SIM_EV_ALLGATHER, -1, 0, dur); /* the next step's, drawn on this one */
      } else {
        s->final_t[r] = all + dur;
        record(s, r, SIM_EV_ALLGATHER, -1, all, all + dur);
      }
    }
  }
  for (int r = 0; r < s->N && late > 0; r++) s->final_t[r] += late;
}

/* The result: the step time (the last rank done), throughput, MFU and HFU, and per stage the
 * mean over its T x D ranks of compute, tensor-parallel communication, exposed (DP)
 * communication and idle time; the shares. */
static void sim_results(sim_t *s) {
  sim_result_t *res = s->res;
  const int P = s->P, D = s->D, N = s->N, T = s->T;
  double step = 0;
  for (int r = 0; r < N; r++)
    if (s->final_t[r] > step) step = s->final_t[r];
  res->step_s = step;
  double flops = 0;
  for (int st = 0; st < P; st++)
    flops += (double)s->M * (s->costs[st].fwd_flops + s->costs[st].bwd_flops);
  res->op_flops = flops * D * T;
  res->model_flops = sim_step_flops(s->lay, MEM_RECOMPUTE_NONE);
  res->hw_flops = sim_step_flops(s->lay, s->opt->recompute);
  res->narayanan_flops = sim_narayanan_flops(s->lay, MEM_RECOMPUTE_NONE);
  res->tokens_per_s = step > 0 ? (double)s->lay->batch * s->lay->model.ctx / step : 0;
  double peak = step * N * s->dev->peak_flops[s->opt->dtype];
  res->mfu = step > 0 ? res->model_flops / peak : 0;
  res->hfu = step > 0 ? res->hw_flops / peak : 0;
  res->tp = T;
  for (int r = 0; r < N; r++) {
    int st = layout_stage_of(s->lay, r);
    const sim_stage_cost_t *c = &s->costs[st];
    sim_stage_result_t *sr = &res->stages[st];
    double opt_s = c->opt_s;
    double exposed = (s->opt_start[r] - s->st[r].end_bwd - s->norm_wait[r]) +
                     (s->final_t[r] - s->opt_start[r] - opt_s);
    double idle = step - s->st[r].busy - exposed - opt_s;
    double tp_s = s->M * (c->fwd_tp_s + c->bwd_tp_s); /* inside busy: the math waits for it */
    double dp_s = s->M * (c->fwd_dp_s + c->bwd_dp_s);  /* ZeRO-3's exposed gathers, likewise */
    sr->compute_s += (s->st[r].busy - tp_s - dp_s) / (D * T);
    sr->tp_comm_s += tp_s / (D * T);
    sr->exposed_comm_s += (exposed + dp_s) / (D * T);
    sr->idle_s += idle / (D * T);
    sr->optimizer_s = opt_s;
    sr->fwd_s = c->fwd_s;
    sr->bwd_s = c->bwd_s;
    sr->fwd_tp_s = c->fwd_tp_s;
    sr->bwd_tp_s = c->bwd_tp_s;
  }
  for (int g = 0; g < P * T; g++) res->stages[g / T].comm_busy_s += s->comm_busy[g] / T;
  if (step > 0)
    for (int st = 0; st < P; st++) {
      res->compute_share += res->stages[st].compute_s / step / P;
      res->tp_comm_share += res->stages[st].tp_comm_s / step / P;
      res->pipeline_idle_share += res->stages[st].idle_s / step / P;
      res->exposed_comm_share += res->stages[st].exposed_comm_s / step / P;
      res->optimizer_share += res->stages[st].optimizer_s / step / P;
    }
}

int sim_run(const layout_t *lay, const device_t *dev, const sim_stage_cost_t *costs,
            const sim_options_t *opt, sim_result_t *res, char *err, size_t errlen) {
  memset(res, 0, sizeof *res);
  sim_t s = {.lay = lay, .dev = dev, .costs = costs, .opt = opt, .res = res,
             .T = lay->tp, .P = lay->pp, .D = lay->dp, .M = lay->micro, .N = lay->world,
             .V = opt->vstages > 1 && lay->pp > 1 ? opt->vstages : 1};
  int rc = sim_setup(&s, err, errlen);
  if (rc == 0) rc = sim_pipeline(&s, err, errlen);
  if (rc == 0) {
    sim_dp_buckets(&s);
    /* after the buckets, per rank (grad_sync_finish's order): the tied wte sum between the first
     * and last stage, its DP all-reduce (no ZeRO), or the ZeRO-1 reduce-scatter, then the
     * gradient-norm all-reduce that synchronises the norm group */
    sim_tied(&s);
    sim_dp_after(&s);
    sim_norm(&s);
    sim_optimizer(&s);
    if (s.rec_fail) rc = strata_fail(err, errlen, "simulate: out of memory recording the timeline");
  }
  if (rc == 0) sim_results(&s);
  sim_free(&s);
  if (rc) sim_result_free(res);
  return rc;
}

int sim_simulate(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                 double capacity_bytes, sim_result_t *res, char *err, size_t errlen) {
  sim_stage_cost_t *costs = NULL;
  memset(res, 0, sizeof *res);
  if (sim_check_options(lay, opt, err, errlen)) return -1;
  if (sim_build_costs(lay, dev, opt, &costs)) return strata_fail(err, errlen, "simulate: out of memory");
  int rc = sim_run(lay, dev, costs, opt, res, err, errlen);
  sim_costs_free(costs, lay->pp);
  if (rc) return rc;
  res->peak_mem_bytes = 0;
  mem_options_t mo = sim_mem_options(opt);
  for (int s = 0; s < lay->pp; s++) {
    memory_stage_opt(lay, s, &mo, &res->stages[s].mem);
    if (res->stages[s].mem.total_bytes > res->peak_mem_bytes)
      res->peak_mem_bytes = res->stages[s].mem.total_bytes, res->worst_stage = s;
  }
  res->fits = res->peak_mem_bytes <= capacity_bytes;
  return 0;
}
