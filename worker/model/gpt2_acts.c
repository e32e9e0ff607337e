/* gpt2_acts.c -- activation storage of a micro-batch (gpt2_acts_t: one allocation carved into
 * the buffers its recompute mode keeps) and the model's scratch shared by all micro-batches
 * (gradients of activations, TP partial sums and gathers, the layer and head FULL recomputation
 * re-runs), grown by gpt2_acts_create to the largest micro-batch so far. See gpt2_impl.h.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_impl.h"
#include "log.h"
#include "util.h"

#define TAKE(ptr, count)                                                                                     \
  do {                                                                                                       \
    if (base) (ptr) = base + *off;                                                                           \
    *off += gpt2_round_up(count);                                                                            \
  } while (0)

/* Carves one layer's activations for N positions, `rows` region rows, local width Cl and
 * att_floats of attention probabilities (0: none kept) from base at *off (base NULL: counts). */
static void carve_layer(gpt2_layer_acts_t *L, float *base, size_t *off, size_t N, size_t rows, size_t C,
                        size_t Cl, size_t att_floats) {
  TAKE(L->ln1, rows * C);
  TAKE(L->ln1_mean, rows);
  TAKE(L->ln1_rstd, rows);
  TAKE(L->qkv, N * 3 * Cl);
  if (att_floats) TAKE(L->att, att_floats);
  TAKE(L->atty, N * Cl);
  TAKE(L->res2, rows * C);
  TAKE(L->ln2, rows * C);
  TAKE(L->ln2_mean, rows);
  TAKE(L->ln2_rstd, rows);
  TAKE(L->fch, N * 4 * Cl);
  TAKE(L->fch_gelu, N * 4 * Cl);
  TAKE(L->res3, rows * C);
}

/* Carves the activation allocation; with base == NULL only counts floats. */
static size_t acts_layout(const gpt2_model_t *m, gpt2_acts_t *a, float *base) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  size_t N = (size_t)a->B * a->T, rows = gpt2_region_rows(N, a->tp, a->sp), C = m->cfg.dim, Cl = s->Cl;
  size_t att = a->recompute == GPT2_RECOMPUTE_NONE ? (size_t)a->B * s->Hl * a->T * a->T : 0;
  size_t o = 0, *off = &o;
  TAKE(a->x0, rows * C);
  for (int l = 0; l < a->nl; l++) {
    gpt2_layer_acts_t tmp, *L = base ? &a->layer[l] : &tmp;
    memset(L, 0, sizeof *L);
    if (a->recompute == GPT2_RECOMPUTE_FULL)
      TAKE(L->res3, rows * C);
    else
      carve_layer(L, base, off, N, rows, C, Cl, att);
  }
  if (a->has_head) {
    if (a->recompute != GPT2_RECOMPUTE_FULL) { /* FULL: in the model's scratch (gpt2_acts_bind_head) */
      TAKE(a->lnf, N * C);
      TAKE(a->lnf_mean, rows);
      TAKE(a->lnf_rstd, rows);
      TAKE(a->logits, N * s->Vl);
    }
    TAKE(a->lse, N);
    TAKE(a->losses, N);
  }
  return o;
}

/* Carves the scratch allocation into s's pointers; with base == NULL only counts floats. */
static size_t scratch_layout(const gpt2_model_t *m, gpt2_impl_t *s, float *base, const gpt2_scratch_need_t *n) {
  size_t C = m->cfg.dim, Cl = s->Cl, o = 0, *off = &o, TT = (size_t)n->T * n->T;
  gpt2_impl_t tmp, *p = base ? s : &tmp;
  TAKE(p->dres, n->rows * C);
  TAKE(p->dln, n->N * C);
  TAKE(p->datty, n->N * Cl);
  TAKE(p->dbig, n->N * 4 * Cl);
  TAKE(p->datt, TT);
  if (n->patt) TAKE(p->patt, TT);
  TAKE(p->ce, 2 * n->N);
  if (s->tp > 1) TAKE(p->part, n->N * C);
  if (n->sp) {
    TAKE(p->lnfull, n->N * C);
    TAKE(p->lngrad, 4 * C);
  }
  if (n->layer) carve_layer(&p->rl, base, off, n->N, n->rows, C, Cl, 0);
  if (n->head) {
    TAKE(p->lnf, n->N * C);
    TAKE(p->lnf_mean, n->rows);
    TAKE(p->lnf_rstd, n->rows);
    TAKE(p->logits, n->N * s->Vl);
  }
  return o;
}
#undef TAKE

/* Grows the model's scratch to cover `want` as well as what it covers now. */
static int impl_reserve(gpt2_model_t *m, gpt2_scratch_need_t want) {
  gpt2_impl_t *s = gpt2_impl_of(m);
  const gpt2_scratch_need_t *c = &s->cap;
  if (s->mem && want.N <= c->N && want.rows <= c->rows && want.T <= c->T && want.patt <= c->patt &&
      want.layer <= c->layer && want.head <= c->head && want.sp <= c->sp)
    return 0;
  gpt2_scratch_need_t n = want;
  if (s->mem) {
    n.N = c->N > n.N ? c->N : n.N;
    n.rows = c->rows > n.rows ? c->rows : n.rows;
    n.T = c->T > n.T ? c->T : n.T;
    n.patt |= c->patt;
    n.layer |= c->layer;
    n.head |= c->head;
    n.sp |= c->sp;
  }
  size_t floats = scratch_layout(m, s, NULL, &n);
  float *mem = gpt2_alloc_floats(floats, 0);
  if (!mem) return -1;
  free(s->mem);
  s->mem = mem;
  s->mem_floats = floats;
  memset(&s->rl, 0, sizeof s->rl);
  scratch_layout(m, s, mem, &n);
  s->cap = n;
  return 0;
}

/* A fresh activation set's header (no storage) for the model's current settings. */
static void acts_header(const gpt2_model_t *m, gpt2_acts_t *a, int B, int T) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  memset(a, 0, sizeof *a);
  a->B = a->cap_B = B;
  a->T = a->cap_T = T;
  a->nl = m->range.layer_end - m->range.layer_begin;
  a->has_head = m->range.has_head;
  a->tp = s->tp;
  a->sp = s->sp;
  a->recompute = s->recompute;
}

int gpt2_acts_create(const gpt2_model_t *m, int B, int T, gpt2_acts_t **out, char *err, size_t errlen) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  *out = NULL;
  if (B <= 0)
    return strata_fail(err, errlen, "batch B = %d: the micro-batch must hold at least one sequence", B);
  if (T <= 0 || T > m->cfg.ctx)
    return strata_fail(err, errlen, "sequence length T = %d: must be in [1, ctx = %d]", T, m->cfg.ctx);
  if ((int64_t)B * T > INT32_MAX / (4 * (int64_t)m->cfg.dim))
    return strata_fail(err, errlen, "micro-batch B*T = %lld tokens is too large for 32-bit BLAS indices",
                       (long long)B * T);
  if (s->sp && T % s->tp != 0)
    return strata_fail(err, errlen, "sequence length T = %d is not divisible by the tensor-parallel size %d: "
                       "sequence parallelism splits every sequence's positions evenly; choose T a multiple "
                       "of %d or turn sequence parallelism off", T, s->tp, s->tp);
  gpt2_acts_t *a = calloc(1, sizeof *a);
  if (!a) goto oom;
  acts_header(m, a, B, T);
  a->layer = calloc(a->nl > 0 ? a->nl : 1, sizeof *a->layer);
  a->tokens = calloc((size_t)B * T, sizeof(int32_t));
  a->targets = calloc((size_t)B * T, sizeof(int32_t));
  if (!a->layer || !a->tokens || !a->targets) goto oom;
  a->mem_floats = acts_layout(m, a, NULL);
  a->mem = aligned_alloc(64, sizeof(float) * a->mem_floats);
  if (!a->mem) goto oom;
  memset(a->mem, 0, sizeof(float) * a->mem_floats);
  acts_layout(m, a, a->mem);
  size_t N = (size_t)B * T;
  int full = a->recompute == GPT2_RECOMPUTE_FULL;
  gpt2_scratch_need_t need = {N, gpt2_region_rows(N, a->tp, a->sp), T, a->recompute != GPT2_RECOMPUTE_NONE, full,
                         full && a->has_head, a->sp};
  /* the model's scratch is not part of its logical state: growing it through a const model is
   * the documented side effect of this call */
  if (impl_reserve((gpt2_model_t *)m, need) != 0) goto oom;
  *out = a;
  return 0;
oom:
  strata_fail(err, errlen, "out of memory for activations of B = %d, T = %d", B, T);
  gpt2_acts_free(a);
  return -1;
}

void gpt2_acts_free(gpt2_acts_t *a) {
  if (!a) return;
  free(a->mem);
  free(a->layer);
  free(a->tokens);
  free(a->targets);
  free(a);
}

int gpt2_acts_reshape(gpt2_acts_t *a, int B, int T, char *err, size_t errlen) {
  if (B <= 0 || T <= 0 || B > a->cap_B || T > a->cap_T)
    return strata_fail(err, errlen, "micro-batch B = %d, T = %d does not fit activations created for B = %d, T = %d",
                       B, T, a->cap_B, a->cap_T);
  if (a->sp && T % a->tp != 0)
    return strata_fail(err, errlen, "sequence length T = %d is not divisible by the tensor-parallel size %d "
                       "(sequence parallelism)", T, a->tp);
  /* every buffer was sized for (cap_B, cap_T) and is indexed with the current (B, T) */
  a->B = B;
  a->T = T;
  a->forward_done = 0;
  return 0;
}

size_t gpt2_acts_bytes(const gpt2_acts_t *a) {
  return sizeof(float) * a->mem_floats + 2 * sizeof(int32_t) * (size_t)a->cap_B * a->cap_T;
}

size_t gpt2_acts_bytes_for(const gpt2_model_t *m, int B, int T) {
  gpt2_acts_t a;
  acts_header(m, &a, B, T);
  return sizeof(float) * acts_layout(m, &a, NULL) + 2 * sizeof(int32_t) * (size_t)B * T;
}

size_t gpt2_scratch_bytes(const gpt2_model_t *m) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  size_t row = (size_t)(s->Vl > 4 * m->cfg.dim ? s->Vl : 4 * m->cfg.dim);
  return sizeof(float) * (s->mem_floats + row);
}

const float *gpt2_output(const gpt2_acts_t *a) { return a->nl > 0 ? a->layer[a->nl - 1].res3 : a->x0; }
const float *gpt2_logits(const gpt2_acts_t *a) { return a->logits; }

/* FULL recomputation keeps ln_f's output and the logits in the model's scratch, not in the
 * micro-batch: points a at them (the scratch may have moved since a's last call). */
void gpt2_acts_bind_head(const gpt2_model_t *m, gpt2_acts_t *a) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  if (!a->has_head || a->recompute != GPT2_RECOMPUTE_FULL) return;
  a->lnf = s->lnf;
  a->lnf_mean = s->lnf_mean;
  a->lnf_rstd = s->lnf_rstd;
  a->logits = s->logits;
}
const float *gpt2_losses(const gpt2_acts_t *a) { return a->losses; }

/* Can `a` run on m now? A TP shard needs its communicator, and the activations' layout must
 * match the model's sequence-parallel setting. Logs and returns -1 if not. */
int gpt2_acts_usable(const gpt2_model_t *m, const gpt2_acts_t *a, const char *fn) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  if (s->tp > 1 && !s->comm) {
    strata_error("%s: a shard of tensor-parallel size %d has no communicator: call gpt2_set_tp first", fn, s->tp);
    return -1;
  }
  if (a->sp != s->sp || a->tp != s->tp) {
    strata_error("%s: the activations were laid out with sequence parallelism %s but the model now has it %s: "
                 "create activations after gpt2_set_tp", fn, a->sp ? "on" : "off", s->sp ? "on" : "off");
    return -1;
  }
  return 0;
}

