/* grad_sync.c -- bucketed data-parallel gradient all-reduce overlapped with backward, the tied
 * wte sum, the global gradient norm and the (ZeRO-1) optimizer update (see grad_sync.h). */
#include "grad_sync.h"
#include "bf16.h"
#include "fault.h"
#include "rank_status.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct grad_sync {
  stage_model_t m;               /* the shard (copied): flat buffers, catalogue, calls */
  coll_comm_t *dp, *tied, *norm; /* see grad_sync_create; tied may be NULL */
  int D, drank;                  /* DP group size and this rank's index in it */
  int zero;                      /* ZeRO-1 on */
  coll_dtype_t wire;             /* COLL_F32, or COLL_BF16: data-parallel reductions in bf16 */
  uint16_t *g16;                 /* COLL_BF16: the shard's gradients (ZeRO: padded to D*S) as
                                    bf16, the buffer the DP collectives reduce */
  size_t n;                      /* shard elements */
  size_t bucket_elems;           /* bucket threshold in floats */
  int wte_separate;              /* 1: wte is tied across stages, reduced after backward */
  size_t wte_off, wte_n;         /* wte's flat range (wte_n = 0 when not held) */
  size_t *skip;                  /* [2 * n_skip] flat ranges [lo, hi) left out of the norm, in
                                    increasing order: the last stage's wte copy, and on TP ranks
                                    t > 0 the replicated tensors (counted on t = 0) */
  int n_skip;
  int armed;                     /* buckets start during this backward */
  size_t pend_lo, pend_hi;       /* open bucket [pend_lo, pend_hi) (empty when equal) */
  size_t covered;                /* elements handed to bucket all-reduces this step */
  coll_request_t **req;          /* in-flight bucket all-reduces */
  size_t *req_lo, *req_n;        /* each bucket's flat range (to widen it back from g16) */
  int *req_done;
  double *req_t0, *req_t1;       /* monotonic start / completion seconds of each bucket */
  int n_req, cap_req;
  int n_last;                    /* buckets of the last finished step */
  int cb_failed;                 /* a callback's collective failed */
  char cb_err[512];
  size_t slice, begin, count;    /* ZeRO: S = ceil(n / D); covered [begin, begin + count) */
  float *gpad, *ppad;            /* ZeRO: D*S padded gradient / parameter buffers */
  adamw_t *opt;
  grad_sync_stats_t stats;
  const step_hooks_t *hooks;     /* the simulated clock (and trace), or NULL */
};

/* bf16 gradient reduction: n fp32 values rounded (nearest even) to bf16 and back. */
static void to_bf16(uint16_t *dst, const float *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = bf16_bits_rne(src[i]);
}
static void from_bf16(float *dst, const uint16_t *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

/* Averages n gradients at g over the DP group, in the wire dtype (blocking). */
static coll_result_t dp_average(grad_sync_t *gs, float *g, size_t n) {
  if (gs->wire == COLL_F32) return coll_allreduce(g, g, n, COLL_F32, COLL_AVG, gs->dp);
  uint16_t *h = gs->g16 + (g - gs->m.grads);
  to_bf16(h, g, n);
  coll_result_t rc = coll_allreduce(h, h, n, COLL_BF16, COLL_AVG, gs->dp);
  if (rc == COLL_OK) from_bf16(g, h, n);
  return rc;
}

/* Starts the all-reduce of the open bucket. */
static void flush_bucket(grad_sync_t *gs) {
  if (gs->pend_hi == gs->pend_lo) return;
  size_t lo = gs->pend_lo, cnt = gs->pend_hi - gs->pend_lo;
  gs->pend_lo = gs->pend_hi = 0;
  if (gs->cb_failed) return;
  if (gs->n_req == gs->cap_req) {
    snprintf(gs->cb_err, sizeof gs->cb_err, "more than %d gradient buckets", gs->cap_req);
    gs->cb_failed = 1;
    return;
  }
  float *g = gs->m.grads + lo;
  coll_request_t *r = NULL;
  coll_result_t rc;
  if (gs->wire == COLL_BF16) { /* widened back into g when it completes (grad_sync_finish) */
    to_bf16(gs->g16 + lo, g, cnt);
    rc = coll_iallreduce(gs->g16 + lo, gs->g16 + lo, cnt, COLL_BF16, COLL_AVG, gs->dp, &r);
  } else {
    rc = coll_iallreduce(g, g, cnt, COLL_F32, COLL_AVG, gs->dp, &r);
  }
  if (rc != COLL_OK) {
    snprintf(gs->cb_err, sizeof gs->cb_err, "bucket all-reduce of %zu floats failed: %s", cnt,
             coll_last_error(gs->dp));
    gs->cb_failed = 1;
    return;
  }
  if (gs->n_req == 0) gs->stats.first_start_s = strata_now_s();
  gs->req_done[gs->n_req] = 0;
  gs->req_t0[gs->n_req] = strata_now_s();
  gs->req_t1[gs->n_req] = 0;
  gs->req_lo[gs->n_req] = lo;
  gs->req_n[gs->n_req] = cnt;
  gs->req[gs->n_req++] = r;
  gs->covered += cnt;
  gs->stats.buckets++;
  hook_clock_bucket(gs->hooks, (double)cnt * coll_dtype_size(gs->wire));
}

/* Drives in-flight bucket all-reduces (cheap when nothing is pending). */
static void progress(grad_sync_t *gs) {
  for (int i = 0; i < gs->n_req; i++) {
    if (gs->req_done[i]) continue;
    int done = 0;
    if (coll_test(gs->req[i], &done) != COLL_OK) {
      if (!gs->cb_failed)
        snprintf(gs->cb_err, sizeof gs->cb_err, "bucket all-reduce failed: %s",
                 coll_last_error(gs->dp));
      gs->cb_failed = 1;
      gs->req_done[i] = 1;
    }
    if (done) {
      gs->req_done[i] = 1;
      gs->req_t1[i] = strata_now_s();
    }
  }
}

static void on_grad_ready(void *ctx, size_t offset, size_t count) {
  grad_sync_t *gs = ctx;
  if (!gs->armed || gs->zero || gs->D == 1) return;
  hook_clock_grad_ready(gs->hooks);
  progress(gs);
  if (gs->wte_separate && gs->wte_n && offset == gs->wte_off) return; /* reduced after backward */
  if (gs->pend_hi != gs->pend_lo && offset + count != gs->pend_lo) flush_bucket(gs);
  if (gs->pend_hi == gs->pend_lo) gs->pend_hi = offset + count;
  gs->pend_lo = offset;
  if (gs->pend_hi - gs->pend_lo >= gs->bucket_elems) flush_bucket(gs);
}

int grad_sync_create(const stage_model_t *m, coll_comm_t *dp, coll_comm_t *tied, coll_comm_t *norm,
                     double bucket_mb, int zero, coll_dtype_t grad_dtype, grad_sync_t **out, char *err,
                     size_t errlen) {
  *out = NULL;
  if (!(bucket_mb > 0))
    return strata_fail(err, errlen, "--bucket-mb must be positive (got %g)", bucket_mb);
  if (grad_dtype != COLL_F32 && grad_dtype != COLL_BF16)
    return strata_fail(err, errlen, "gradient reductions are fp32 or bf16, not %s", coll_dtype_name(grad_dtype));
  grad_sync_t *gs = calloc(1, sizeof *gs);
  if (!gs) goto oom;
  gs->m = *m;
  gs->dp = dp;
  gs->tied = tied;
  gs->norm = norm;
  gs->D = coll_size(dp);
  gs->drank = coll_rank(dp);
  gs->zero = zero;
  gs->wire = gs->D > 1 ? grad_dtype : COLL_F32;
  gs->n = m->num_params;
  size_t be = (size_t)(bucket_mb * 1048576.0 / sizeof(float));
  gs->bucket_elems = be ? be : 1;
  const gpt2_tensor_t *wte = NULL; /* GPT-2's tied embedding (Llama has none) */
  for (int i = 0; i < m->num_tensors && !wte; i++)
    if (!strcmp(m->tensors[i].name, "wte.weight")) wte = &m->tensors[i];
  if (wte) {
    gs->wte_off = wte->offset;
    gs->wte_n = wte->numel;
  }
  gs->wte_separate = tied != NULL && wte != NULL;
  gs->skip = calloc(2 * (size_t)m->num_tensors + 2, sizeof *gs->skip);
  if (!gs->skip) goto oom;
  const int wte_is_copy = gs->wte_separate && !m->has_embed;
  for (int i = 0; i < m->num_tensors; i++) { /* catalogue order = flat order */
    const gpt2_tensor_t *t = &m->tensors[i];
    if (!((wte_is_copy && t == wte) || (t->replicated && m->tp_rank > 0))) continue;
    if (gs->n_skip > 0 && gs->skip[2 * gs->n_skip - 1] == t->offset) { /* merge adjacent */
      gs->skip[2 * gs->n_skip - 1] += t->numel;
      continue;
    }
    gs->skip[2 * gs->n_skip] = t->offset;
    gs->skip[2 * gs->n_skip + 1] = t->offset + t->numel;
    gs->n_skip++;
  }
  gs->cap_req = m->num_tensors + 8;
  gs->req = calloc((size_t)gs->cap_req, sizeof *gs->req);
  gs->req_done = calloc((size_t)gs->cap_req, sizeof *gs->req_done);
  gs->req_t0 = calloc((size_t)gs->cap_req, sizeof(double));
  gs->req_t1 = calloc((size_t)gs->cap_req, sizeof(double));
  gs->req_lo = calloc((size_t)gs->cap_req, sizeof(size_t));
  gs->req_n = calloc((size_t)gs->cap_req, sizeof(size_t));
  if (!gs->req || !gs->req_done || !gs->req_t0 || !gs->req_t1 || !gs->req_lo || !gs->req_n) goto oom;
  if (zero) {
    gs->slice = (gs->n + (size_t)gs->D - 1) / (size_t)gs->D;
    gs->begin = gs->slice * (size_t)gs->drank;
    gs->count = gs->begin >= gs->n ? 0 : (gs->n - gs->begin < gs->slice ? gs->n - gs->begin : gs->slice);
    if (gs->begin > gs->n) gs->begin = gs->n;
    gs->gpad = calloc(gs->slice * (size_t)gs->D + 1, sizeof(float));
    gs->ppad = calloc(gs->slice * (size_t)gs->D + 1, sizeof(float));
    if (!gs->gpad || !gs->ppad) goto oom;
  } else {
    gs->begin = 0;
    gs->count = gs->n;
  }
  if (gs->wire == COLL_BF16) {
    gs->g16 = calloc(zero ? gs->slice * (size_t)gs->D + 1 : gs->n + 1, sizeof(uint16_t));
    if (!gs->g16) goto oom;
    coll_comm_set_wire16(dp, 1); /* bf16 on the wire, not the fp32 work vector */
  }
  if (adamw_create(gs->begin, gs->count, &gs->opt, err, errlen)) {
    grad_sync_free(gs);
    return -1;
  }
  m->ops->set_grad_ready(m->model, on_grad_ready, gs);
  *out = gs;
  return 0;
oom:
  snprintf(err, errlen, "out of memory for gradient synchronisation of %zu parameters",
           m->num_params);
  grad_sync_free(gs);
  return -1;
}

void grad_sync_free(grad_sync_t *gs) {
  if (!gs) return;
  if (gs->m.ops) gs->m.ops->set_grad_ready(gs->m.model, NULL, NULL);
  for (int i = 0; i < gs->n_req; i++) coll_wait(gs->req[i]);
  free(gs->skip);
  free(gs->req);
  free(gs->req_done);
  free(gs->req_t0);
  free(gs->req_t1);
  free(gs->req_lo);
  free(gs->req_n);
  free(gs->g16);
  free(gs->gpad);
  free(gs->ppad);
  adamw_free(gs->opt);
  free(gs);
}

adamw_t *grad_sync_optimizer(grad_sync_t *gs) { return gs->opt; }
const grad_sync_stats_t *grad_sync_stats(const grad_sync_t *gs) { return &gs->stats; }

int grad_sync_bucket_times(const grad_sync_t *gs, const double **t0_s, const double **t1_s) {
  *t0_s = gs->req_t0;
  *t1_s = gs->req_t1;
  return gs->n_last;
}

void grad_sync_arm(grad_sync_t *gs) { gs->armed = 1; }

/* Sum of squares of g over [lo, hi) minus the skipped ranges (gs->skip). */
static double owned_sumsq(const grad_sync_t *gs, const float *g, size_t lo, size_t hi) {
  double s = 0;
  size_t from = lo;
  for (int i = 0; i < gs->n_skip && from < hi; i++) {
    size_t a = gs->skip[2 * i], b = gs->skip[2 * i + 1];
    if (b <= from) continue;
    if (a > from) s += adamw_sum_squares(g + from, (hi < a ? hi : a) - from);
    from = b;
  }
  if (from < hi) s += adamw_sum_squares(g + from, hi - from);
  return s;
}

int grad_sync_finish(grad_sync_t *gs, double *sumsq, char *err, size_t errlen) {
  int rc = -1;
  double t0 = strata_now_s(), wait_s = 0;
  float *g = gs->m.grads;
  flush_bucket(gs);
  rank_status_op(RS_ALLREDUCE, gs->n_req > 0 ? 0 : -1); /* RUN/status/rank-R */
  fault_point(FAULT_AT_ALLREDUCE, -1);
  for (int i = 0; i < gs->n_req; i++) {
    rank_status_op(RS_ALLREDUCE, i);
    coll_result_t r = coll_wait(gs->req[i]);
    if (!gs->req_done[i]) gs->req_t1[i] = strata_now_s();
    if (r != COLL_OK && !gs->cb_failed) {
      snprintf(gs->cb_err, sizeof gs->cb_err, "bucket all-reduce failed: %s", coll_last_error(gs->dp));
      gs->cb_failed = 1;
    }
    if (r == COLL_OK && gs->wire == COLL_BF16)
      from_bf16(g + gs->req_lo[i], gs->g16 + gs->req_lo[i], gs->req_n[i]);
  }
  gs->n_last = gs->n_req;
  gs->n_req = 0;
  if (gs->cb_failed) {
    snprintf(err, errlen, "%s", gs->cb_err);
    goto exit;
  }
  if (!gs->zero && gs->D > 1) {
    size_t expect = gs->n - (gs->wte_separate ? gs->wte_n : 0);
    if (gs->covered != expect) {
      snprintf(err, errlen, "internal: buckets covered %zu of %zu gradients (grad_sync_arm not "
               "called before the last backward?)", gs->covered, expect);
      goto exit;
    }
  }
  if (gs->wte_separate) {
    float *gw = g + gs->wte_off;
    /* Wait for the other end of the pipeline to finish its backward (a bubble, not transfer
     * time), then sum the copies. */
    double tw = strata_now_s();
    if (coll_barrier(gs->tied) != COLL_OK) {
      snprintf(err, errlen, "tied wte barrier failed: %s", coll_last_error(gs->tied));
      goto exit;
    }
    wait_s += strata_now_s() - tw;
    if (coll_allreduce(gw, gw, gs->wte_n, COLL_F32, COLL_SUM, gs->tied) != COLL_OK) {
      snprintf(err, errlen, "tied wte gradient sum failed: %s", coll_last_error(gs->tied));
      goto exit;
    }
    if (!gs->zero && gs->D > 1 && dp_average(gs, gw, gs->wte_n) != COLL_OK) {
      snprintf(err, errlen, "wte gradient all-reduce failed: %s", coll_last_error(gs->dp));
      goto exit;
    }
  }
  double ss;
  if (gs->zero) {
    size_t S = gs->slice;
    memcpy(gs->gpad, g, gs->n * sizeof(float));
    memset(gs->gpad + gs->n, 0, (S * (size_t)gs->D - gs->n) * sizeof(float));
    if (gs->D > 1) {
      float *mine = gs->gpad + S * (size_t)gs->drank;
      coll_result_t r;
      if (gs->wire == COLL_BF16) {
        uint16_t *mine16 = gs->g16 + S * (size_t)gs->drank;
        to_bf16(gs->g16, gs->gpad, S * (size_t)gs->D);
        r = coll_reduce_scatter(gs->g16, mine16, S, COLL_BF16, COLL_SUM, gs->dp);
        if (r == COLL_OK) from_bf16(mine, mine16, S);
      } else {
        r = coll_reduce_scatter(gs->gpad, mine, S, COLL_F32, COLL_SUM, gs->dp);
      }
      if (r != COLL_OK) {
        snprintf(err, errlen, "gradient reduce-scatter failed: %s", coll_last_error(gs->dp));
        goto exit;
      }
      const float inv = 1.0f / (float)gs->D;
      for (size_t i = 0; i < S; i++) mine[i] *= inv;
    }
    ss = owned_sumsq(gs, gs->gpad, gs->begin, gs->begin + gs->count);
  } else {
    ss = owned_sumsq(gs, g, 0, gs->n);
  }
  /* One double: its time is waiting for the slowest stage (or replica) to get here. */
  double tn = strata_now_s();
  if (coll_size(gs->norm) > 1 &&
      coll_allreduce(&ss, &ss, 1, COLL_F64, COLL_SUM, gs->norm) != COLL_OK) {
    snprintf(err, errlen, "gradient norm all-reduce failed: %s", coll_last_error(gs->norm));
    goto exit;
  }
  wait_s += strata_now_s() - tn;
  *sumsq = ss;
  rc = 0;
exit:
  gs->armed = 0;
  gs->covered = 0;
  gs->stats.buckets = 0;
  gs->pend_lo = gs->pend_hi = 0;
  gs->stats.wait_s = wait_s;
  gs->stats.comm_s = strata_now_s() - t0 - wait_s;
  return rc;
}

int grad_sync_update(grad_sync_t *gs, const adamw_hparams_t *hp, double lr, float scale, char *err,
                     size_t errlen) {
  stage_model_t *m = &gs->m;
  if (!gs->zero) {
    adamw_step(gs->opt, hp, m->params, m->grads, m->tensors, m->num_tensors, lr, scale);
    return 0;
  }
  adamw_step(gs->opt, hp, m->params, gs->gpad, m->tensors, m->num_tensors, lr, scale);
  if (gs->D == 1) return 0;
  double t0 = strata_now_s();
  size_t S = gs->slice;
  float *mine = gs->ppad + S * (size_t)gs->drank;
  memset(mine, 0, S * sizeof(float));
  memcpy(mine, m->params + gs->begin, gs->count * sizeof(float));
  if (coll_allgather(mine, gs->ppad, S, COLL_F32, gs->dp) != COLL_OK)
    return strata_fail(err, errlen, "parameter all-gather failed: %s", coll_last_error(gs->dp));
  memcpy(m->params, gs->ppad, gs->n * sizeof(float));
  gs->stats.comm_s += strata_now_s() - t0;
  return 0;
}

/* Gathers one moment array (ZeRO) into full[0..n). */
static int gather_one(grad_sync_t *gs, const float *slice_vals, float *full, char *err,
                      size_t errlen) {
  size_t S = gs->slice;
  float *mine = gs->ppad + S * (size_t)gs->drank;
  memset(mine, 0, S * sizeof(float));
  memcpy(mine, slice_vals, gs->count * sizeof(float));
  if (gs->D > 1 && coll_allgather(mine, gs->ppad, S, COLL_F32, gs->dp) != COLL_OK)
    return strata_fail(err, errlen, "moment all-gather failed: %s", coll_last_error(gs->dp));
  memcpy(full, gs->ppad, gs->n * sizeof(float));
  return 0;
}

int grad_sync_gather_moments(grad_sync_t *gs, float *exp_avg, float *exp_avg_sq, char *err,
                             size_t errlen) {
  if (!gs->zero) {
    memcpy(exp_avg, gs->opt->m, gs->n * sizeof(float));
    memcpy(exp_avg_sq, gs->opt->v, gs->n * sizeof(float));
    return 0;
  }
  /* ppad is scratch here: the parameters were copied out after the last all-gather. */
  if (gather_one(gs, gs->opt->m, exp_avg, err, errlen)) return -1;
  return gather_one(gs, gs->opt->v, exp_avg_sq, err, errlen);
}

void grad_sync_set_moments(grad_sync_t *gs, const float *exp_avg, const float *exp_avg_sq) {
  memcpy(gs->opt->m, exp_avg + gs->begin, gs->count * sizeof(float));
  memcpy(gs->opt->v, exp_avg_sq + gs->begin, gs->count * sizeof(float));
}

void grad_sync_set_hooks(grad_sync_t *gs, const step_hooks_t *h) { gs->hooks = h; }

size_t grad_sync_alloc_bytes(const grad_sync_t *gs) {
  size_t b = 2 * sizeof(float) * (gs->count ? gs->count : 1);
  if (gs->gpad) b += 2 * sizeof(float) * (gs->slice * (size_t)gs->D + 1);
  if (gs->g16) b += sizeof(uint16_t) * ((gs->gpad ? gs->slice * (size_t)gs->D : gs->n) + 1);
  return b;
}
