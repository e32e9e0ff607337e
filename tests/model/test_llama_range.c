/* test_llama_range.c -- Llama pipeline stages (llama_create_range, llama_stage_forward,
 * llama_stage_backward, llama_output): a model split into stages and run as a chain -- each
 * stage's output fed to the next stage's forward, each stage's input gradient to the previous
 * stage's backward, as pipeline.c does -- gives the whole model's loss, per-position losses and
 * the gradient of every parameter. Splits: three stages of 1, 2 and 1 layers; two stages of 2;
 * and a last stage that holds only the head (no layers). Also: a stage's catalogue holds only its
 * tensors under their global Hugging Face names, its initial weights equal the whole model's
 * (init depends on seed and name only), missing inputs and bad ranges are refused, and the
 * grad_ready callback reports the stage's gradients as contiguous regions from the last down.
 *
 * Tolerances. A chain runs the same float32 operations on the same values in the same order
 * as the whole model (the residual stream is copied between stages, never re-rounded), so the
 * results are bit-identical on one GEMM library (the printed gaps are 0); the checks allow 1e-6
 * relative (of the loss, and of each tensor's max |gradient|) in case a GEMM library picks
 * kernels by buffer alignment, and print the largest gap reached.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "test_util.h"

#define TOL_REL 1e-6
#define MAX_STAGES 3

static const llama_config_t cfg = {.vocab = 11, .ctx = 8, .layers = 4, .heads = 4, .kv_heads = 2, .dim = 16,
                                   .ffn = 24, .rms_norm_eps = 1e-5, .rope_theta = 10000.0};
enum { B = 2, T = 6, N = B * T, SEED = 5 };

/* The largest |a - b| over n elements, and the largest |b|. */
static void gap(const float *a, const float *b, size_t n, double *d, double *scale) {
  *d = *scale = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - b[i]);
    if (e > *d) *d = e;
    if (fabs(b[i]) > *scale) *scale = fabs(b[i]);
  }
}

/* Runs the stages [bounds[s], bounds[s+1]) as a chain against the whole model `w` (after its
 * forward and backward on the same batch): loss, per-position losses, every gradient. */
static void check_chain(const llama_model_t *w, const llama_acts_t *wa, float wloss, const int *bounds,
                        int P, const int32_t *tok, const int32_t *tgt) {
  llama_model_t *m[MAX_STAGES] = {0};
  llama_acts_t *a[MAX_STAGES] = {0};
  float *dx[MAX_STAGES] = {0};
  char err[256];
  float loss = NAN;
  double worst = 0;
  for (int s = 0; s < P; s++) {
    llama_range_t r = {bounds[s], bounds[s + 1], s == 0, s == P - 1};
    CHECK_EQ_INT(llama_create_range(&cfg, r, &m[s], err, sizeof err), 0);
    if (!m[s]) goto exit;
    llama_init_params(m[s], SEED);
    CHECK_EQ_INT(llama_acts_create(m[s], B, T, &a[s], err, sizeof err), 0);
    CHECK_EQ_INT(llama_stream_rows(m[s], B, T), N);
    dx[s] = calloc((size_t)N * cfg.dim, sizeof(float));
    if (!a[s] || !dx[s]) goto exit;
    llama_zero_grad(m[s]);
  }
  for (int s = 0; s < P; s++) {
    float l = llama_stage_forward(m[s], a[s], s == 0 ? tok : NULL, s > 0 ? llama_output(a[s - 1]) : NULL,
                                  s == P - 1 ? tgt : NULL);
    if (s == P - 1) loss = l;
    else CHECK_TRUE(l == 0.0f);
  }
  CHECK_NEAR(loss, wloss, TOL_REL * fabs(wloss));
  double d, sc;
  gap(llama_losses(a[P - 1]), llama_losses(wa), N, &d, &sc);
  CHECK_TRUE(d <= TOL_REL * sc);
  for (int s = P - 1; s >= 0; s--)
    CHECK_EQ_INT(llama_stage_backward(m[s], a[s], s < P - 1 ? dx[s + 1] : NULL, 1.0f, s > 0 ? dx[s] : NULL), 0);
  for (int s = 0; s < P; s++)
    for (int i = 0; i < m[s]->num_tensors; i++) {
      const gpt2_tensor_t *t = &m[s]->tensors[i], *wt = llama_find_tensor(w, t->name);
      CHECK_TRUE(wt != NULL && wt->numel == t->numel);
      if (!wt || wt->numel != t->numel) continue;
      /* init depends on (seed, name) only: the stage's weights are the whole model's */
      CHECK_TRUE(memcmp(m[s]->params + t->offset, w->params + wt->offset, sizeof(float) * t->numel) == 0);
      gap(m[s]->grads + t->offset, w->grads + wt->offset, t->numel, &d, &sc);
      if (d > TOL_REL * sc) test_fail(__FILE__, __LINE__, "stage %d: gradient of %s differs by %g (max %g)", s,
                                      t->name, d, sc);
      test_checks++;
      if (sc > 0 && d / sc > worst) worst = d / sc;
    }
  printf("  split into %d stages at", P);
  for (int s = 0; s <= P; s++) printf(" %d", bounds[s]);
  printf(": loss %.9g vs %.9g, worst relative gradient gap %.3g\n", loss, wloss, worst);
exit:
  for (int s = 0; s < P; s++) {
    llama_acts_free(a[s]);
    llama_free(m[s]);
    free(dx[s]);
  }
}

static void test_stage_chains_equal_the_whole_model(void) {
  llama_model_t *w = NULL;
  llama_acts_t *wa = NULL;
  char err[256];
  int32_t tok[N], tgt[N];
  for (int i = 0; i < N; i++) {
    tok[i] = (7 * i + 3) % cfg.vocab;
    tgt[i] = (5 * i + 1) % cfg.vocab;
  }
  CHECK_EQ_INT(llama_create(&cfg, &w, err, sizeof err), 0);
  if (!w) return;
  CHECK_TRUE(w->range.layer_begin == 0 && w->range.layer_end == 4 && w->range.has_embed && w->range.has_head);
  llama_init_params(w, SEED);
  CHECK_EQ_INT(llama_acts_create(w, B, T, &wa, err, sizeof err), 0);
  if (!wa) goto exit;
  llama_zero_grad(w);
  const float wloss = llama_forward(w, wa, tok, tgt);
  CHECK_EQ_INT(llama_backward(w, wa, 1.0f), 0);
  const int three[] = {0, 1, 3, 4}, two[] = {0, 2, 4}, head_only[] = {0, 4, 4};
  check_chain(w, wa, wloss, three, 3, tok, tgt);
  check_chain(w, wa, wloss, two, 2, tok, tgt);
  check_chain(w, wa, wloss, head_only, 2, tok, tgt);
exit:
  llama_acts_free(wa);
  llama_free(w);
}

static void test_stage_catalogue_holds_its_tensors_by_global_name(void) {
  llama_model_t *m = NULL;
  char err[256];
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){1, 3, 0, 0}, &m, err, sizeof err), 0);
  if (!m) return;
  CHECK_EQ_INT(m->num_tensors, 2 * 9);
  CHECK_TRUE(strcmp(m->tensors[0].name, "model.layers.1.input_layernorm.weight") == 0);
  CHECK_TRUE(strcmp(m->tensors[m->num_tensors - 1].name, "model.layers.2.mlp.down_proj.weight") == 0);
  CHECK_TRUE(llama_find_tensor(m, "model.embed_tokens.weight") == NULL);
  CHECK_TRUE(llama_find_tensor(m, "lm_head.weight") == NULL);
  CHECK_TRUE(llama_find_tensor(m, "model.layers.0.input_layernorm.weight") == NULL);
  CHECK_TRUE(m->embed == NULL && m->norm == NULL && m->lm_head == NULL && m->g_embed == NULL);
  /* local index 1 is global layer 2 */
  CHECK_TRUE(m->layer[1].wq == m->params + llama_find_tensor(m, "model.layers.2.self_attn.q_proj.weight")->offset);
  CHECK_EQ_INT(m->num_params, (size_t)2 * (2 * 16 + 2 * 16 * 16 + 2 * 8 * 16 + 3 * 24 * 16));
  llama_free(m);
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){3, 4, 0, 1}, &m, err, sizeof err), 0);
  if (!m) return;
  CHECK_EQ_INT(m->num_tensors, 9 + 2);
  CHECK_TRUE(strcmp(m->tensors[m->num_tensors - 1].name, "lm_head.weight") == 0);
  CHECK_TRUE(m->embed == NULL && m->norm != NULL && m->lm_head != NULL);
  llama_free(m);
}

static void test_bad_ranges_and_missing_inputs_fail(void) {
  llama_model_t *m = NULL;
  llama_acts_t *a = NULL;
  char err[256] = "";
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){2, 5, 0, 1}, &m, err, sizeof err), -1);
  CHECK_TRUE(m == NULL && strstr(err, "[2, 5)") != NULL && strstr(err, "4 layers") != NULL);
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){3, 2, 0, 1}, &m, err, sizeof err), -1);
  CHECK_EQ_INT(llama_create_range(&cfg, (llama_range_t){1, 3, 0, 0}, &m, err, sizeof err), 0);
  if (!m) return;
  llama_init_params(m, SEED);
  CHECK_EQ_INT(llama_acts_create(m, B, T, &a, err, sizeof err), 0);
  if (a) {
    static float x[N * 16], dx[N * 16];
    int32_t tok[N] = {0};
    CHECK_TRUE(isnan(llama_stage_forward(m, a, tok, NULL, NULL))); /* a middle stage takes x_in */
    for (int i = 0; i < N * 16; i++) x[i] = 0.1f * (float)((i % 7) - 3);
    CHECK_TRUE(llama_stage_forward(m, a, NULL, x, NULL) == 0.0f);
    CHECK_EQ_INT(llama_stage_backward(m, a, NULL, 1.0f, dx), -1); /* no output gradient */
    CHECK_TRUE(llama_stage_forward(m, a, NULL, x, NULL) == 0.0f);
    CHECK_EQ_INT(llama_stage_backward(m, a, x, 1.0f, dx), 0);
  }
  llama_acts_free(a);
  llama_free(m);
}

/* grad_ready's regions of one backward, in call order. */
typedef struct {
  size_t off[64], cnt[64];
  int n;
} regions_t;

static void record(void *ctx, size_t offset, size_t count) {
  regions_t *r = ctx;
  if (r->n < 64) {
    r->off[r->n] = offset;
    r->cnt[r->n] = count;
  }
  r->n++;
}

/* The regions tile the stage's flat gradients exactly once, in decreasing offset order (the
 * contract grad_sync.h's buckets rely on), one per layer plus one per end the stage holds. */
static void check_grad_ready(llama_range_t range) {
  llama_model_t *m = NULL;
  llama_acts_t *a = NULL;
  char err[256];
  regions_t r = {.n = 0};
  CHECK_EQ_INT(llama_create_range(&cfg, range, &m, err, sizeof err), 0);
  if (!m) return;
  llama_init_params(m, SEED);
  CHECK_EQ_INT(llama_acts_create(m, B, T, &a, err, sizeof err), 0);
  static float x[N * 16], dx[N * 16];
  int32_t tok[N];
  for (int i = 0; i < N; i++) tok[i] = i % cfg.vocab;
  for (int i = 0; i < N * 16; i++) x[i] = 0.05f * (float)((i % 5) - 2);
  m->grad_ready = record;
  m->grad_ready_ctx = &r;
  if (a) {
    llama_stage_forward(m, a, range.has_embed ? tok : NULL, range.has_embed ? NULL : x, range.has_head ? tok : NULL);
    CHECK_EQ_INT(llama_stage_backward(m, a, range.has_head ? NULL : x, 1.0f, range.has_embed ? NULL : dx), 0);
  }
  CHECK_EQ_INT(r.n, (range.layer_end - range.layer_begin) + range.has_embed + range.has_head);
  size_t end = m->num_params;
  for (int i = 0; i < r.n && i < 64; i++) {
    CHECK_EQ_INT(r.off[i] + r.cnt[i], end);
    end = r.off[i];
  }
  CHECK_EQ_INT(end, 0);
  llama_acts_free(a);
  llama_free(m);
}

static void test_grad_ready_tiles_the_shard_backwards(void) {
  check_grad_ready((llama_range_t){0, 4, 1, 1});
  check_grad_ready((llama_range_t){1, 3, 0, 0});
  check_grad_ready((llama_range_t){3, 4, 0, 1});
  check_grad_ready((llama_range_t){0, 1, 1, 0});
}

int main(void) {
  test_stage_chains_equal_the_whole_model();
  test_stage_catalogue_holds_its_tensors_by_global_name();
  test_bad_ranges_and_missing_inputs_fail();
  test_grad_ready_tiles_the_shard_backwards();
  return test_finish("model_llama_range");
}
