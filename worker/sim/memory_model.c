/* memory_model.c -- per-rank memory accounting (Strata's fp32 buffers, or Megatron-style mixed
 * precision with Korthikanti et al.'s activation formulas), the fit check and the search for a
 * layout that fits (contract and the itemised formulas in memory_model.h). */
#include "memory_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *memory_recompute_name(mem_recompute_t r) {
  return r == MEM_RECOMPUTE_NONE        ? "none"
         : r == MEM_RECOMPUTE_SELECTIVE ? "selective"
         : r == MEM_RECOMPUTE_SELECTIVE_MLP ? "selective-mlp"
         : r == MEM_RECOMPUTE_FULL      ? "full"
                                        : "?";
}

int memory_parse_recompute(const char *s, mem_recompute_t *out) {
  for (int r = 0; r < MEM_RECOMPUTE_COUNT && s; r++)
    if (!strcmp(s, memory_recompute_name((mem_recompute_t)r))) {
      *out = (mem_recompute_t)r;
      return 0;
    }
  return -1;
}

const char *memory_accounting_name(mem_accounting_t a) {
  return a == MEM_ACCOUNT_STRATA ? "strata" : a == MEM_ACCOUNT_MIXED ? "mixed" : "?";
}

int memory_parse_accounting(const char *s, mem_accounting_t *out) {
  for (int a = MEM_ACCOUNT_STRATA; a <= MEM_ACCOUNT_MIXED && s; a++)
    if (!strcmp(s, memory_accounting_name((mem_accounting_t)a))) {
      *out = (mem_accounting_t)a;
      return 0;
    }
  return -1;
}

mem_options_t memory_options(sched_kind_t kind, int zero, double bucket_bytes) {
  mem_options_t o = {kind, zero, bucket_bytes, 0, MEM_RECOMPUTE_NONE, MEM_ACCOUNT_STRATA, DEV_FP32,
                     MEM_PREC_NONE, 0, 1, 0, 0};
  return o;
}

int memory_shard_ranks(const layout_t *lay, const mem_options_t *o) {
  /* a group that does not divide D (a memory suggestion's other layout) shards over all D */
  return o->zero == MEM_ZERO_FULL_SHARD && o->shard_group > 0 && lay->dp % o->shard_group == 0
             ? o->shard_group
             : lay->dp;
}

const char *memory_precision_name(mem_precision_t p) {
  return p == MEM_PREC_NONE ? "none" : p == MEM_PREC_FP32 ? "fp32" : p == MEM_PREC_BF16 ? "bf16"
         : p == MEM_PREC_BF16_SR ? "bf16-sr" : p == MEM_PREC_FP8 ? "fp8" : "?";
}

int memory_parse_precision(const char *s, mem_precision_t *out) {
  for (int p = MEM_PREC_FP32; p <= MEM_PREC_BF16_SR && s; p++)
    if (!strcmp(s, memory_precision_name((mem_precision_t)p))) {
      *out = (mem_precision_t)p;
      return 0;
    }
  return -1;
}

int memory_parse_sim_precision(const char *s, mem_precision_t *out) {
  if (s && !strcmp(s, "fp8")) {
    *out = MEM_PREC_FP8;
    return 0;
  }
  return memory_parse_precision(s, out);
}

void memory_precision_bytes(mem_precision_t p, double *weights, double *grads, double *optimizer) {
  static const double b[5][3] = {{2, 2, 12}, {4, 4, 8}, {2, 4, 12}, {2, 2, 4}, {2, 4, 12}};
  int i = p >= MEM_PREC_NONE && p <= MEM_PREC_FP8 ? (int)p : 0;
  *weights = b[i][0], *grads = b[i][1], *optimizer = b[i][2];
}

/* Whether rc recomputes the attention scores in backward rather than keeping them. */
static int scores_recomputed(mem_recompute_t rc) {
  return rc == MEM_RECOMPUTE_SELECTIVE || rc == MEM_RECOMPUTE_SELECTIVE_MLP;
}

double memory_layer_act_elems(const layout_model_t *m, int b, int T) {
  return memory_layer_act_elems_tp(m, b, T, 1, 0, MEM_RECOMPUTE_NONE);
}

double memory_layer_act_elems_tp(const layout_model_t *m, int b, int T, int tp, int sp,
                                 mem_recompute_t rc) {
  double bT = (double)b * T, C = m->dim, H = m->heads, t = tp, r = sp ? t : 1;
  if (rc == MEM_RECOMPUTE_FULL) return bT * C / r; /* the layer input */
  /* replicated (1/t with sequence parallelism): ln1, res2, ln2, res3 and the four LayerNorm
   * statistics; split: qkv, atty, fch, fch_gelu (12 bTC; the MLP's 8 bTC recomputed with
   * selective-mlp) and att (bHT^2) */
  double e = (4 / r + (rc == MEM_RECOMPUTE_SELECTIVE_MLP ? 4 : 12) / t) * bT * C + 4 * bT / r;
  if (scores_recomputed(rc)) return e;
  return e + (double)b * H * (double)T * T / t;
}

double memory_layer_act_bytes_mixed(const layout_model_t *m, int b, int T, int tp, int sp,
                                    mem_recompute_t rc) {
  double s = T, h = m->dim, a = m->heads, t = tp, sbh = s * b * h;
  if (rc == MEM_RECOMPUTE_FULL) return sp ? 2 * sbh / t : 2 * sbh;
  const int mlp = rc == MEM_RECOMPUTE_SELECTIVE_MLP, no_scores = scores_recomputed(rc);
  if (m->arch == LAYOUT_ARCH_LLAMA) {
    /* Korthikanti et al.'s count for a Llama layer (no dropout): replicated (1/t with SP) the
     * two norms' and the two blocks' inputs, 8 sbh; split q 2, k and v 4 kv/h, the output
     * projection's input 2, gate, up and their product 6F/h (recomputed from the MLP's input
     * with selective-mlp); the softmax output 2as/h */
    double g = (double)layout_model_kv_heads(m) / m->heads, F = layout_model_ffn(m);
    double split = 2 + 4 * g + 2 + (mlp ? 0 : 6 * F / h);
    double lin = (sp ? 8 / t : 8) + split / t;
    return sbh * (lin + (no_scores ? 0 : 2 * a * s / (h * t)));
  }
  /* GPT: the MLP's split 16 sbh/t (fc output 8, GELU output 8) is recomputed with selective-mlp;
   * its input 2 sbh and the dropout mask after it stay */
  double linear = (sp ? 34 / t : 10 + 24 / t) - (mlp ? 16 / t : 0);
  double scores = no_scores ? 0 : 5 * a * s / (h * t);
  return sbh * (linear + scores);
}

/* Stage s's activation elements per micro-batch, fp32 accounting. */
static double stage_act_elems(const layout_t *lay, int s, int sp, mem_recompute_t rc) {
  const layout_model_t *m = &lay->model;
  int b = lay->micro_batch, T = m->ctx;
  double bT = (double)b * T, t = lay->tp, r = sp ? t : 1;
  double e = layout_stage_layers(lay, s) * memory_layer_act_elems_tp(m, b, T, lay->tp, sp, rc);
  e += bT * m->dim / r; /* stage input x0 (embedding output or received activation) */
  e += 2 * bT;          /* int32 copies of the tokens and targets */
  if (s == lay->pp - 1 && rc == MEM_RECOMPUTE_FULL) /* lse, losses; the rest is re-run */
    e += 2 * bT;
  else if (s == lay->pp - 1) /* lnf, mean/rstd, logits (1/t of the padded vocabulary), lse, losses */
    e += bT * m->dim / r + 2 * bT / r + bT * layout_padded_vocab(m->vocab, lay->tp) / t + 2 * bT;
  return e;
}

double memory_stage_act_elems(const layout_t *lay, int s) {
  return stage_act_elems(lay, s, 0, MEM_RECOMPUTE_NONE);
}

/* sizeof(dtype) / 2: Korthikanti et al.'s formulas count 2-byte activations. */
static double mixed_scale(device_dtype_t dt) { return device_dtype_size(dt) / 2.0; }

/* The activation elements one layer keeps as FP8 copies under --precision fp8: Transformer
 * Engine saves each FP8 GEMM's input for the weight gradient as the FP8 cast it multiplied
 * (1 byte) rather than in the dtype. Per s b h: the QKV and first MLP GEMMs' inputs (the norms'
 * outputs, 1 / r each), the output projection's input (1 / t) and the second MLP GEMM's (GPT:
 * the GELU output, 4 / t; Llama: the SwiGLU product, F / h / t) -- that one only while the MLP
 * is not recomputed. Full recomputation keeps only the layer's bf16 input. */
static double fp8_saved_elems(const layout_model_t *m, int b, int T, int tp, int sp,
                              mem_recompute_t rc) {
  if (rc == MEM_RECOMPUTE_FULL) return 0;
  double t = tp, r = sp ? t : 1, h = m->dim;
  double mlp_out = rc == MEM_RECOMPUTE_SELECTIVE_MLP   ? 0
                   : m->arch == LAYOUT_ARCH_LLAMA ? layout_model_ffn(m) / h
                                                  : 4;
  return (2 / r + (1 + mlp_out) / t) * b * T * h;
}

/* One layer's kept activations per micro-batch, bytes, under o's accounting with rc. */
static double layer_act_bytes(const layout_t *lay, const mem_options_t *o, int sp, mem_recompute_t rc) {
  const layout_model_t *m = &lay->model;
  if (o->accounting == MEM_ACCOUNT_MIXED) {
    double e = mixed_scale(o->dtype) * memory_layer_act_bytes_mixed(m, lay->micro_batch, m->ctx, lay->tp, sp, rc);
    if (o->precision == MEM_PREC_FP8) /* those elements at 1 byte instead of the dtype's */
      e -= (device_dtype_size(o->dtype) - 1) * fp8_saved_elems(m, lay->micro_batch, m->ctx, lay->tp, sp, rc);
    return e;
  }
  return MEM_ELEM_BYTES * memory_layer_act_elems_tp(m, lay->micro_batch, m->ctx, lay->tp, sp, rc);
}

double memory_stage_act_bytes(const layout_t *lay, int s, const mem_options_t *o) {
  const int sp = o->sequence_parallel && lay->tp > 1;
  if (o->accounting != MEM_ACCOUNT_MIXED)
    return MEM_ELEM_BYTES * stage_act_elems(lay, s, sp, o->recompute);
  const layout_model_t *m = &lay->model;
  int b = lay->micro_batch, T = m->ctx;
  double sbh = (double)T * b * m->dim, t = lay->tp, r = sp ? t : 1;
  /* a fused (flash) attention keeps no scores: the selective count without recomputing */
  mem_recompute_t rc = o->fused_attention && o->recompute == MEM_RECOMPUTE_NONE
                           ? MEM_RECOMPUTE_SELECTIVE : o->recompute;
  double e = layout_stage_layers(lay, s) * layer_act_bytes(lay, o, sp, rc);
  if (s == lay->pp - 1 && o->recompute == MEM_RECOMPUTE_FULL) /* fp32 lse and losses */
    e += 8.0 * T * b;
  else if (s == lay->pp - 1) /* ln_f input and output in the dtype, the fp32 logits slice */
    e += mixed_scale(o->dtype) * 4 * sbh / r +
         4.0 * T * b * layout_padded_vocab(m->vocab, lay->tp) / t;
  return e;
}

double memory_kv_cache_bytes(const layout_model_t *m, int layers, int batch, int ctx) {
  return 2.0 * layers * (double)batch * ctx * m->dim * MEM_ELEM_BYTES;
}

/* The backward's transient buffers, once per rank, in bytes: gpt2.c's scratch (dres, dln
 * replicated; datty, dbig split; datt) in the element size, plus what recomputation brings
 * back for the one layer being differentiated, and on the last stage (head) under full
 * recomputation the one micro-batch's ln_f and fp32 logits slice the backward re-runs. */
static double workspace_bytes(const layout_t *lay, const mem_options_t *o, int sp, int head) {
  const layout_model_t *m = &lay->model;
  const int mixed = o->accounting == MEM_ACCOUNT_MIXED;
  double b = lay->micro_batch, T = m->ctx, C = m->dim, t = lay->tp, r = sp ? t : 1;
  double E = mixed ? device_dtype_size(o->dtype) : MEM_ELEM_BYTES;
  double w = E * ((2 / r + 5 / t) * b * T * C + T * T); /* dres, dln, datty, dbig (4C), datt */
  if (scores_recomputed(o->recompute) && !(mixed && o->fused_attention))
    /* one layer's recomputed attention scores */
    w += mixed ? mixed_scale(o->dtype) * 5 * b * m->heads * T * T / t
               : E * b * m->heads * T * T / t;
  if (o->recompute == MEM_RECOMPUTE_SELECTIVE_MLP) /* and its recomputed MLP activations: what
                                                      selective-mlp keeps less than selective */
    w += layer_act_bytes(lay, o, sp, MEM_RECOMPUTE_SELECTIVE) -
         layer_act_bytes(lay, o, sp, MEM_RECOMPUTE_SELECTIVE_MLP);
  else if (o->recompute == MEM_RECOMPUTE_FULL) /* one layer's recomputed activations */
    w += layer_act_bytes(lay, o, sp, MEM_RECOMPUTE_NONE);
  if (head && o->recompute == MEM_RECOMPUTE_FULL)
    w += E * (b * T * C + 2 * b * T / r) + 4.0 * b * T * layout_padded_vocab(m->vocab, lay->tp) / t;
  return w;
}

/* ZeRO-3 (FSDP FULL_SHARD) on stage s with wb / gb bytes per parameter of weights and
 * gradients: each rank keeps its 1/D shard of both, plus, while it computes, two layers'
 * parameters whole (the one computing and the next, gathered ahead) and one layer's gradients
 * before their reduce-scatter; the root unit (embedding, head) stays whole from its forward to
 * its backward. With a master copy in the optimizer state (master: bf16 mixed precision) the
 * shard is that fp32 copy, FSDP's sharded parameter, and the compute dtype exists only
 * gathered (FSDP's param_dtype). D: the ranks a shard spans (memory_shard_ranks); with D = 1
 * nothing is split. Replaces the whole-model weights
 * and gradients already in out (an FP8 job's weight copies stay as counted). */
static void full_shard_bytes(const layout_t *lay, int s, double D, double wb, double gb, int master,
                             mem_stage_t *out) {
  const double params = (double)layout_rank_params(lay, s);
  if (D <= 1) return;
  const double lp = (double)layout_rank_layer_params(&lay->model, lay->tp);
  const double root = params - layout_stage_layers(lay, s) * lp, shard = ceil(params / D);
  out->params_bytes += wb * ((master ? 0 : shard) + 2 * lp + root - params);
  out->grads_bytes += gb * (shard + lp + root - params);
}

void memory_stage_opt(const layout_t *lay, int s, const mem_options_t *o, mem_stage_t *out) {
  const layout_model_t *m = &lay->model;
  const int mixed = o->accounting == MEM_ACCOUNT_MIXED, sp = o->sequence_parallel && lay->tp > 1;
  double E = MEM_ELEM_BYTES, b = lay->micro_batch, T = m->ctx, C = m->dim, t = lay->tp,
         r = sp ? t : 1, Vp = layout_padded_vocab(m->vocab, lay->tp);
  double params = (double)layout_rank_params(lay, s), Z = memory_shard_ranks(lay, o);
  memset(out, 0, sizeof *out);
  if (mixed) { /* by precision; NONE: bf16 weights and gradients, fp32 master and moments */
    double wb, gb, ob;
    memory_precision_bytes(o->precision, &wb, &gb, &ob);
    if (o->grad_bf16 && gb > 2) gb = 2;
    out->params_bytes = wb * params;
    if (o->precision == MEM_PREC_FP8) /* the layers' FP8 weight copies, row-wise and transposed */
      out->params_bytes += MEM_FP8_WEIGHT_COPY_BYTES * layout_stage_layers(lay, s) *
                           (double)layout_rank_layer_params(m, lay->tp);
    out->grads_bytes = gb * params;
    out->optimizer_bytes = ob * (o->zero ? ceil(params / Z) : params);
    /* DeepSpeed's stage 2 with 16-bit weights and an fp32 master keeps the 16-bit gradient
     * partition its reductions fill and that partition's fp32 copy the optimizer steps on:
     * 2 + 4 bytes a parameter over D (its estimate_zero2_model_states_mem_needs: 2 + 18 / D) */
    if (o->zero == MEM_ZERO_SHARD_GRADS)
      out->grads_bytes = (wb == 2 && ob >= 12 ? 2 + 4 : gb) * ceil(params / Z);
    if (o->zero == MEM_ZERO_FULL_SHARD) full_shard_bytes(lay, s, Z, wb, gb, ob >= 12, out);
  } else {
    out->params_bytes = E * params;
    out->grads_bytes = E * params;
    out->optimizer_bytes = 2 * E * (o->zero ? ceil(params / Z) : params);
    if (o->zero == MEM_ZERO_SHARD_GRADS) out->grads_bytes = E * ceil(params / Z);
    if (o->zero == MEM_ZERO_FULL_SHARD) full_shard_bytes(lay, s, Z, E, E, 0, out);
  }
  const int V = o->vstages > 1 && lay->pp > 1 ? o->vstages : 1;
  out->in_flight = V > 1 ? schedule_in_flight_interleaved(lay->pp, lay->micro, V, s)
                         : schedule_in_flight(o->kind, lay->pp, lay->micro, s);
  out->activations_bytes = memory_stage_act_bytes(lay, s, o) * out->in_flight / V;
  out->workspace_bytes = workspace_bytes(lay, o, sp, s == lay->pp - 1);
  double comm = 0, A = mixed ? device_dtype_size(o->dtype) : E, G = mixed ? 2 : E;
  if (lay->pp > 1) {
    comm += 2 * A * b * T * C / r; /* gradient send + receive buffers */
    if ((s == 0 || s == lay->pp - 1) && layout_model_tied(m))
      comm += G * Vp * C / t; /* tied wte exchange */
  }
  if (o->zero == MEM_ZERO_FULL_SHARD) /* the gathers' and reduce-scatters' buffers: counted above */
    ;
  else if (o->zero == MEM_ZERO_SHARD_GRADS && lay->dp > 1) /* the bucket being reduced (DeepSpeed's
                                                               reduce_bucket_size), whole */
    comm += fmin(o->bucket_bytes, out->grads_bytes * lay->dp);
  else if (o->zero && !mixed) /* grad_sync.c's padded gradient and parameter buffers: D x ceil(params / D) each */
    comm += 2 * E * ceil(params / lay->dp) * lay->dp;
  else if (!o->zero && lay->dp > 1)
    comm += o->bucket_bytes < out->grads_bytes ? o->bucket_bytes : out->grads_bytes;
  out->comm_bytes = comm;
  out->total_bytes = out->params_bytes + out->grads_bytes + out->optimizer_bytes +
                     out->activations_bytes + out->workspace_bytes + out->comm_bytes +
                     out->kv_cache_bytes;
}

void memory_stage(const layout_t *lay, int s, sched_kind_t kind, int zero, double bucket_bytes,
                  mem_stage_t *out) {
  mem_options_t o = memory_options(kind, zero, bucket_bytes);
  memory_stage_opt(lay, s, &o, out);
}

double memory_peak_opt(const layout_t *lay, const mem_options_t *o, int *worst_stage) {
  double peak = -1;
  int worst = 0;
  for (int s = 0; s < lay->pp; s++) {
    mem_stage_t ms;
    memory_stage_opt(lay, s, o, &ms);
    if (ms.total_bytes > peak) peak = ms.total_bytes, worst = s;
  }
  if (worst_stage) *worst_stage = worst;
  return peak;
}

double memory_peak(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                   int *worst_stage) {
  mem_options_t o = memory_options(kind, zero, bucket_bytes);
  return memory_peak_opt(lay, &o, worst_stage);
}

const char *memory_format_bytes(double bytes, char *buf, size_t len) {
  if (bytes >= 1024.0 * 1024 * 1024)
    snprintf(buf, len, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  else if (bytes >= 1024.0 * 1024)
    snprintf(buf, len, "%.2f MiB", bytes / (1024.0 * 1024));
  else if (bytes >= 1024.0)
    snprintf(buf, len, "%.1f KiB", bytes / 1024.0);
  else
    snprintf(buf, len, "%.0f B", bytes);
  return buf;
}

/* The search state of memory_suggest_opt: the best candidate so far and its rank. */
typedef struct {
  int found, changes;
  double dist, peak;
  mem_suggestion_t best;
} suggest_state_t;

/* Tries every schedule, ZeRO setting, sequence parallelism and recomputation the search allows
 * on one candidate layout. */
static void suggest_try(const layout_t *lay, const layout_t *cand, const mem_options_t *o,
                        int vary, double capacity_bytes, suggest_state_t *st) {
  const int T = cand->tp;
  const int sp_lo = vary ? 0 : (T > 1 ? o->sequence_parallel : 0);
  const int sp_hi = vary ? (T > 1) : sp_lo;
  const int rc_lo = vary ? 0 : (int)o->recompute, rc_hi = vary ? MEM_RECOMPUTE_COUNT - 1 : rc_lo;
  /* ZeRO 0 and 1 (what strata train runs); a ZeRO-2 or ZeRO-3 job keeps its ZeRO stage */
  const int z_lo = o->zero >= MEM_ZERO_SHARD_GRADS ? o->zero : 0, z_hi = z_lo ? z_lo : 1;
  for (int sp = sp_lo; sp <= sp_hi; sp++) {
    if (sp && cand->model.ctx % T) continue; /* the sequence must split evenly */
    for (int rc = rc_lo; rc <= rc_hi; rc++)
      for (int k = 0; k < 2; k++)
        for (int z = z_lo; z <= z_hi; z++) {
          mem_options_t c = *o;
          c.kind = (sched_kind_t)k;
          c.zero = z;
          c.sequence_parallel = sp;
          c.recompute = (mem_recompute_t)rc;
          double peak = memory_peak_opt(cand, &c, NULL);
          if (peak > capacity_bytes) continue;
          int sp0 = o->sequence_parallel && lay->tp > 1;
          int changes = (T != lay->tp) + (cand->pp != lay->pp) + (cand->micro != lay->micro) +
                        (k != (int)o->kind) + (z != o->zero) + (sp != sp0) +
                        (rc != (int)o->recompute);
          /* closest T, P, M; then the least recomputation */
          double dist = fabs(log((double)T / lay->tp)) + fabs(log((double)cand->pp / lay->pp)) +
                        fabs(log((double)cand->micro / lay->micro)) + 0.1 * rc;
          if (!st->found || changes < st->changes ||
              (changes == st->changes &&
               (dist < st->dist - 1e-12 || (fabs(dist - st->dist) <= 1e-12 && peak < st->peak)))) {
            st->found = 1;
            st->changes = changes;
            st->dist = dist;
            st->peak = peak;
            st->best = (mem_suggestion_t){T,  cand->pp, cand->dp,           cand->micro, z,
                                          (sched_kind_t)k, sp, (mem_recompute_t)rc, peak};
          }
        }
  }
}

/* suggest_scan's context: the job, its options and the search state. */
typedef struct {
  const layout_t *lay;
  const mem_options_t *o;
  int vary;
  double capacity_bytes;
  suggest_state_t *st;
} suggest_ctx_t;

static int suggest_each(const layout_t *cand, void *ctx) {
  suggest_ctx_t *c = ctx;
  suggest_try(c->lay, cand, c->o, c->vary, c->capacity_bytes, c->st);
  return 0;
}

/* Every layout of the job's N ranks and global batch with T in [tp_lo, tp_hi] through
 * suggest_try. -1 when out of memory. */
static int suggest_scan(const layout_t *lay, const mem_options_t *o, int tp_lo, int tp_hi, int vary,
                        double capacity_bytes, suggest_state_t *st) {
  layout_t *cand = malloc(sizeof *cand);
  if (!cand) return -1;
  suggest_ctx_t c = {lay, o, vary, capacity_bytes, st};
  layout_for_each(&lay->model, lay->world, lay->batch, tp_lo, tp_hi, cand, suggest_each, &c);
  free(cand);
  return 0;
}

int memory_suggest_opt(const layout_t *lay, const mem_options_t *o, const mem_search_t *search,
                       double capacity_bytes, mem_suggestion_t *out) {
  const int N = lay->world, max_tp = search && search->max_tp > 0 ? search->max_tp : N;
  const int vary = search && search->vary_sp_recompute;
  /* the least disruptive first: the job's own T with its sequence parallelism and
   * recomputation; then (vary) other SP / recomputation; then every T up to an instance; then
   * any T (tensor-parallel groups across instances) */
  const int tier[4][3] = {{lay->tp, lay->tp, 0}, {lay->tp, lay->tp, vary}, {1, max_tp, vary}, {1, N, vary}};
  suggest_state_t st = {0};
  for (int i = 0; i < 4 && !st.found; i++) {
    if (i == 1 && !vary) continue;
    if (i == 3 && max_tp >= N) break;
    if (suggest_scan(lay, o, tier[i][0], tier[i][1], tier[i][2], capacity_bytes, &st)) return -1;
  }
  if (st.found) *out = st.best;
  return st.found ? 0 : -1;
}

int memory_suggest(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                   double capacity_bytes, mem_suggestion_t *out) {
  mem_options_t o = memory_options(kind, zero, bucket_bytes);
  return memory_suggest_opt(lay, &o, NULL, capacity_bytes, out);
}

int memory_fit_check_opt(const layout_t *lay, const mem_options_t *o, const mem_search_t *search,
                         double capacity_bytes, char *msg, size_t msglen) {
  int worst;
  double peak = memory_peak_opt(lay, o, &worst);
  if (peak <= capacity_bytes) {
    if (msg && msglen) msg[0] = '\0';
    return 0;
  }
  mem_stage_t ms;
  memory_stage_opt(lay, worst, o, &ms);
  char need[32], have[32], pb[32], gb[32], ob[32], ab[32], wb[32], cb[32];
  int n = snprintf(msg, msglen,
                   "stage %d does not fit: it needs %s (%.0f bytes: parameters %s, gradients %s, "
                   "optimizer %s, activations %s for %d micro-batches in flight, workspace %s, "
                   "comm buffers %s) but the device has %s (%.0f bytes). ",
                   worst, memory_format_bytes(ms.total_bytes, need, sizeof need), ms.total_bytes,
                   memory_format_bytes(ms.params_bytes, pb, sizeof pb),
                   memory_format_bytes(ms.grads_bytes, gb, sizeof gb),
                   memory_format_bytes(ms.optimizer_bytes, ob, sizeof ob),
                   memory_format_bytes(ms.activations_bytes, ab, sizeof ab), ms.in_flight,
                   memory_format_bytes(ms.workspace_bytes, wb, sizeof wb),
                   memory_format_bytes(ms.comm_bytes, cb, sizeof cb),
                   memory_format_bytes(capacity_bytes, have, sizeof have), capacity_bytes);
  if (n < 0 || (size_t)n >= msglen) return -1;
  mem_suggestion_t sg;
  const int vary = search && search->vary_sp_recompute;
  if (!memory_suggest_opt(lay, o, search, capacity_bytes, &sg)) {
    char pk[32], tp[32] = "", rc[48] = "";
    if (sg.tp > 1 || lay->tp > 1) snprintf(tp, sizeof tp, " --tp %d", sg.tp);
    if (sg.recompute != MEM_RECOMPUTE_NONE || o->recompute != MEM_RECOMPUTE_NONE)
      snprintf(rc, sizeof rc, " --recompute %s", memory_recompute_name(sg.recompute));
    char span[96] = "";
    if (search && search->max_tp > 0 && sg.tp > search->max_tp)
      snprintf(span, sizeof span, "; its tensor-parallel groups span instances (the slower network)");
    snprintf(msg + n, msglen - (size_t)n,
             "A layout that fits on %d nodes: --pp %d --dp %d --microbatches %d --schedule %s "
             "--zero %d%s%s%s (peak %s per device%s).",
             lay->world, sg.pp, sg.dp, sg.micro, schedule_kind_name(sg.kind), sg.zero, tp,
             sg.sequence_parallel ? " --sequence-parallel" : "", rc,
             memory_format_bytes(sg.peak_bytes, pk, sizeof pk), span);
  } else {
    snprintf(msg + n, msglen - (size_t)n,
             "No layout of %d nodes with global batch %d fits (tried every T x P x D with T "
             "dividing the %d heads, micro-batch count, GPipe/1F1B and %s%s): use more "
             "nodes, a smaller batch or a smaller model.",
             lay->world, lay->batch, lay->model.heads,
             o->zero == MEM_ZERO_FULL_SHARD    ? "ZeRO-3"
             : o->zero == MEM_ZERO_SHARD_GRADS ? "ZeRO-2"
                                               : "ZeRO 0/1",
             vary ? ", sequence parallelism and recomputation" : "");
  }
  return -1;
}

int memory_fit_check(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                     double capacity_bytes, char *msg, size_t msglen) {
  mem_options_t o = memory_options(kind, zero, bucket_bytes);
  return memory_fit_check_opt(lay, &o, NULL, capacity_bytes, msg, msglen);
}
