/* test_gpt2_grad_ready.c -- the grad_ready contract bucketed all-reduce relies on: during one
 * backward the reported regions cover every gradient element exactly once, come in decreasing
 * offset order except wte (reported last), and each region is final when reported (its values
 * at report time equal the values after backward returns). Checked for the single shard and
 * for each stage of a 3-way split (embedding stage, middle stage, head stage with its own wte). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_fixture.h"
#include "test_util.h"

typedef struct {
  gpt2_model_t *m;
  int *cover;          /* per element: times reported */
  float *snapshot;     /* grads copied at report time */
  size_t last_offset;  /* offset of the previous region */
  int nreports;
  int wte_seen;
  int order_ok;
} rec_t;

static void on_ready(void *ctx, size_t offset, size_t count) {
  rec_t *r = ctx;
  const gpt2_tensor_t *wte = gpt2_find_tensor(r->m, "wte.weight");
  int is_wte = wte && offset == wte->offset && count == wte->numel;
  if (r->wte_seen) r->order_ok = 0; /* nothing may follow wte */
  if (is_wte) {
    r->wte_seen = 1;
  } else {
    if (r->nreports > 0 && offset + count > r->last_offset) r->order_ok = 0;
    r->last_offset = offset;
  }
  r->nreports++;
  CHECK_TRUE(offset + count <= r->m->num_params);
  for (size_t i = offset; i < offset + count && i < r->m->num_params; i++) r->cover[i]++;
  memcpy(r->snapshot + offset, r->m->grads + offset, sizeof(float) * count);
}

static void check_stage(const fx_t *fx, gpt2_model_t *m, gpt2_acts_t *a, const float *x_in, const float *dx_out,
                        float *dx_in, const char *what) {
  rec_t r = {.m = m, .order_ok = 1};
  r.cover = calloc(m->num_params, sizeof(int));
  r.snapshot = calloc(m->num_params, sizeof(float));
  r.last_offset = m->num_params;
  m->grad_ready = on_ready;
  m->grad_ready_ctx = &r;
  gpt2_zero_grad(m);
  gpt2_forward(m, a, m->range.has_embed ? fx->tokens : NULL, x_in, m->range.has_head ? fx->targets : NULL);
  gpt2_backward(m, a, dx_out, 1.0f, dx_in);
  size_t bad_cover = 0;
  for (size_t i = 0; i < m->num_params; i++) bad_cover += r.cover[i] != 1;
  int final = memcmp(r.snapshot, m->grads, sizeof(float) * m->num_params) == 0;
  printf("%s: %d regions, %zu elements not covered exactly once, final-when-reported %s, order %s\n", what,
         r.nreports, bad_cover, final ? "yes" : "NO", r.order_ok ? "ok" : "WRONG");
  CHECK_EQ_INT(bad_cover, 0);
  CHECK_TRUE(final);
  CHECK_TRUE(r.order_ok);
  CHECK_EQ_INT(r.wte_seen, gpt2_find_tensor(m, "wte.weight") != NULL);
  /* one region per layer, plus ln_f / wpe / wte where owned */
  int expect = (m->range.layer_end - m->range.layer_begin) + (m->range.has_head ? 1 : 0) +
               (m->range.has_embed ? 1 : 0) + (gpt2_find_tensor(m, "wte.weight") ? 1 : 0);
  CHECK_EQ_INT(r.nreports, expect);
  /* a second backward (after another forward) reports everything again */
  r.nreports = 0;
  r.wte_seen = 0;
  r.last_offset = m->num_params;
  memset(r.cover, 0, sizeof(int) * m->num_params);
  gpt2_forward(m, a, m->range.has_embed ? fx->tokens : NULL, x_in, m->range.has_head ? fx->targets : NULL);
  gpt2_backward(m, a, dx_out, 1.0f, dx_in);
  bad_cover = 0;
  for (size_t i = 0; i < m->num_params; i++) bad_cover += r.cover[i] != 1;
  CHECK_EQ_INT(bad_cover, 0);
  CHECK_TRUE(memcmp(r.snapshot, m->grads, sizeof(float) * m->num_params) == 0);
  m->grad_ready = NULL;
  free(r.cover);
  free(r.snapshot);
}

int main(void) {
  fx_t fx;
  if (fx_load(&fx) != 0) return 1;
  const int L = fx.cfg.layers, B = fx.B, T = fx.T;
  const size_t NC = (size_t)B * T * fx.cfg.dim;
  char err[256];
  gpt2_model_t *m = fx_model(&fx, 0, L, 1, 1);
  gpt2_acts_t *a = NULL;
  CHECK_EQ_INT(gpt2_acts_create(m, B, T, &a, err, sizeof err), 0);
  check_stage(&fx, m, a, NULL, NULL, NULL, "single shard");
  gpt2_acts_free(a);
  gpt2_free(m);

  /* three stages; the upstream inputs and downstream gradients are arbitrary fixed buffers */
  float *x = malloc(sizeof(float) * NC), *dy = malloc(sizeof(float) * NC), *dx = malloc(sizeof(float) * NC);
  for (size_t i = 0; i < NC; i++) {
    x[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
    dy[i] = (float)((i * 104729) % 97) / 4800.0f - 0.01f;
  }
  int bounds[] = {0, 1, 2, L};
  const char *names[] = {"stage 0 (embedding)", "stage 1 (middle)", "stage 2 (head)"};
  for (int s = 0; s < 3; s++) {
    gpt2_model_t *sm = fx_model(&fx, bounds[s], bounds[s + 1], s == 0, s == 2);
    gpt2_acts_t *sa = NULL;
    CHECK_EQ_INT(gpt2_acts_create(sm, B, T, &sa, err, sizeof err), 0);
    check_stage(&fx, sm, sa, s > 0 ? x : NULL, s < 2 ? dy : NULL, s > 0 ? dx : NULL, names[s]);
    gpt2_acts_free(sa);
    gpt2_free(sm);
  }
  free(x);
  free(dy);
  free(dx);
  fx_free(&fx);
  return test_finish("model_gpt2_grad_ready");
}
