/* memory_model.c -- per-rank memory accounting, the fit check and the search for a layout
 * that fits (contract and the itemised formulas in memory_model.h). */
#include "memory_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double memory_layer_act_elems(const layout_model_t *m, int b, int T) {
  double bT = (double)b * T, C = m->dim, H = m->heads;
  return 16 * bT * C + 4 * bT + (double)b * H * (double)T * T;
}

double memory_stage_act_elems(const layout_t *lay, int s) {
  const layout_model_t *m = &lay->model;
  int b = lay->micro_batch, T = m->ctx;
  double bT = (double)b * T;
  double e = layout_stage_layers(lay, s) * memory_layer_act_elems(m, b, T);
  e += bT * m->dim; /* stage input x0 (embedding output or received activation) */
  e += 2 * bT;      /* int32 copies of the tokens and targets */
  if (s == lay->pp - 1)
    e += bT * m->dim + 2 * bT + bT * m->vocab + 2 * bT; /* lnf, mean/rstd, logits, lse, losses */
  return e;
}

double memory_kv_cache_bytes(const layout_model_t *m, int layers, int batch, int ctx) {
  return 2.0 * layers * (double)batch * ctx * m->dim * MEM_ELEM_BYTES;
}

void memory_stage(const layout_t *lay, int s, sched_kind_t kind, int zero, double bucket_bytes,
                  mem_stage_t *out) {
  const layout_model_t *m = &lay->model;
  double E = MEM_ELEM_BYTES, b = lay->micro_batch, T = m->ctx, C = m->dim;
  double params = (double)layout_stage_params(lay, s);
  memset(out, 0, sizeof *out);
  out->params_bytes = E * params;
  out->grads_bytes = E * params;
  out->optimizer_bytes = 2 * E * (zero ? ceil(params / lay->dp) : params);
  out->in_flight = schedule_in_flight(kind, lay->pp, lay->micro, s);
  out->activations_bytes = E * memory_stage_act_elems(lay, s) * out->in_flight;
  out->workspace_bytes = E * (7 * b * T * C + T * T); /* dres, dln, datty, dbig (4C), datt */
  double comm = 0;
  if (lay->pp > 1) {
    comm += 2 * E * b * T * C;
    if (s == 0 || s == lay->pp - 1) comm += E * (double)m->vocab * C;
  }
  if (zero) /* grad_sync.c's padded gradient and parameter buffers: D x ceil(params / D) each */
    comm += 2 * E * ceil(params / lay->dp) * lay->dp;
  else if (lay->dp > 1)
    comm += bucket_bytes < out->grads_bytes ? bucket_bytes : out->grads_bytes;
  out->comm_bytes = comm;
  out->total_bytes = out->params_bytes + out->grads_bytes + out->optimizer_bytes +
                     out->activations_bytes + out->workspace_bytes + out->comm_bytes +
                     out->kv_cache_bytes;
}

double memory_peak(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                   int *worst_stage) {
  double peak = -1;
  int worst = 0;
  for (int s = 0; s < lay->pp; s++) {
    mem_stage_t ms;
    memory_stage(lay, s, kind, zero, bucket_bytes, &ms);
    if (ms.total_bytes > peak) peak = ms.total_bytes, worst = s;
  }
  if (worst_stage) *worst_stage = worst;
  return peak;
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

int memory_suggest(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                   double capacity_bytes, mem_suggestion_t *out) {
  int N = lay->world, found = 0;
  int best_changes = 1 << 30;
  double best_dist = 0, best_peak = 0;
  layout_t *cand = malloc(sizeof *cand);
  if (!cand) return -1;
  for (int P = 1; P <= N && P <= lay->model.layers && P <= LAYOUT_MAX_STAGES; P++) {
    if (N % P) continue;
    int D = N / P;
    if (lay->batch % D) continue;
    int per_replica = lay->batch / D;
    for (int M = 1; M <= per_replica; M++) {
      if (per_replica % M) continue;
      char err[256];
      if (layout_init(cand, &lay->model, N, 1, P, D, M, lay->batch, NULL, err, sizeof err)) continue;
      for (int k = 0; k < 2; k++)
        for (int z = 0; z < 2; z++) {
          double peak = memory_peak(cand, (sched_kind_t)k, z, bucket_bytes, NULL);
          if (peak > capacity_bytes) continue;
          int changes = (P != lay->pp) + (M != lay->micro) + (k != (int)kind) + (z != zero);
          double dist = fabs(log((double)P / lay->pp)) + fabs(log((double)M / lay->micro));
          if (!found || changes < best_changes ||
              (changes == best_changes &&
               (dist < best_dist - 1e-12 ||
                (fabs(dist - best_dist) <= 1e-12 && peak < best_peak)))) {
            found = 1;
            best_changes = changes;
            best_dist = dist;
            best_peak = peak;
            out->pp = P;
            out->dp = D;
            out->micro = M;
            out->zero = z;
            out->kind = (sched_kind_t)k;
            out->peak_bytes = peak;
          }
        }
    }
  }
  free(cand);
  return found ? 0 : -1;
}

int memory_fit_check(const layout_t *lay, sched_kind_t kind, int zero, double bucket_bytes,
                     double capacity_bytes, char *msg, size_t msglen) {
  int worst;
  double peak = memory_peak(lay, kind, zero, bucket_bytes, &worst);
  if (peak <= capacity_bytes) {
    if (msg && msglen) msg[0] = '\0';
    return 0;
  }
  mem_stage_t ms;
  memory_stage(lay, worst, kind, zero, bucket_bytes, &ms);
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
  if (!memory_suggest(lay, kind, zero, bucket_bytes, capacity_bytes, &sg)) {
    char pk[32];
    snprintf(
        msg + n, msglen - (size_t)n,
        "A layout that fits on %d nodes: --pp %d --dp %d --microbatches %d --schedule %s --zero %d "
        "(peak %s per device).",
        lay->world, sg.pp, sg.dp, sg.micro, schedule_kind_name(sg.kind), sg.zero,
        memory_format_bytes(sg.peak_bytes, pk, sizeof pk));
  } else {
    snprintf(
        msg + n, msglen - (size_t)n,
        "No layout of %d nodes with global batch %d fits (tried every P x D, micro-batch count, "
        "GPipe/1F1B and ZeRO 0/1): use more nodes, a smaller batch or a smaller model.",
        lay->world, lay->batch);
  }
  return -1;
}
