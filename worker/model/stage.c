/* stage.c -- the two families' tables of stage calls (stage.h): thin adapters over gpt2.h and
 * llama.h. */
#include "stage.h"

/* ---- GPT-2 ---- */

static int g_acts_create(void *m, int B, int T, void **out, char *err, size_t errlen) {
  gpt2_acts_t *a = NULL;
  int rc = gpt2_acts_create(m, B, T, &a, err, errlen);
  *out = a;
  return rc;
}
static void g_acts_free(void *a) { gpt2_acts_free(a); }
static size_t g_acts_bytes(const void *a) { return gpt2_acts_bytes(a); }
static size_t g_scratch_bytes(const void *m) { return gpt2_scratch_bytes(m); }
static int g_stream_rows(const void *m, int B, int T) { return gpt2_stream_rows(m, B, T); }
static float g_forward(void *m, void *a, const int32_t *tokens, const float *x_in, const int32_t *targets) {
  return gpt2_forward(m, a, tokens, x_in, targets);
}
static const float *g_output(const void *a) { return gpt2_output(a); }
static const float *g_losses(const void *a) { return gpt2_losses(a); }
static int g_backward(void *m, void *a, const float *dx_out, float loss_scale, float *dx_in) {
  return gpt2_backward(m, a, dx_out, loss_scale, dx_in);
}
static void g_zero_grad(void *m) { gpt2_zero_grad(m); }
static void g_set_grad_ready(void *model, stage_grad_ready_fn fn, void *ctx) {
  gpt2_model_t *m = model;
  m->grad_ready = fn;
  m->grad_ready_ctx = ctx;
}

static void g_set_precision(void *model, gemm_dtype_t dt, int bf16_params) {
  gpt2_model_t *m = model;
  gpt2_set_matmul_dtype(m, dt);
  m->bf16_params = bf16_params;
}

const stage_ops_t stage_gpt2_ops = {"gpt2", g_acts_create, g_acts_free, g_acts_bytes, g_scratch_bytes,
                                    g_stream_rows, g_forward, g_output, g_losses, g_backward,
                                    g_zero_grad, g_set_grad_ready, g_set_precision};

stage_model_t stage_of_gpt2(gpt2_model_t *m) {
  return (stage_model_t){&stage_gpt2_ops, m, m->params, m->grads, m->num_params, m->tensors,
                         m->num_tensors, m->cfg.dim, m->range.has_embed, m->range.has_head,
                         m->range.tp_rank};
}

/* ---- Llama ---- */

static int l_acts_create(void *m, int B, int T, void **out, char *err, size_t errlen) {
  llama_acts_t *a = NULL;
  int rc = llama_acts_create(m, B, T, &a, err, errlen);
  *out = a;
  return rc;
}
static void l_acts_free(void *a) { llama_acts_free(a); }
static size_t l_acts_bytes(const void *a) { return llama_acts_bytes(a); }
static size_t l_scratch_bytes(const void *m) { return llama_scratch_bytes(m); }
static int l_stream_rows(const void *m, int B, int T) { return llama_stream_rows(m, B, T); }
static float l_forward(void *m, void *a, const int32_t *tokens, const float *x_in, const int32_t *targets) {
  return llama_stage_forward(m, a, tokens, x_in, targets);
}
static const float *l_output(const void *a) { return llama_output(a); }
static const float *l_losses(const void *a) { return llama_losses(a); }
static int l_backward(void *m, void *a, const float *dx_out, float loss_scale, float *dx_in) {
  return llama_stage_backward(m, a, dx_out, loss_scale, dx_in);
}
static void l_zero_grad(void *m) { llama_zero_grad(m); }
static void l_set_grad_ready(void *model, stage_grad_ready_fn fn, void *ctx) {
  llama_model_t *m = model;
  m->grad_ready = fn;
  m->grad_ready_ctx = ctx;
}

static void l_set_precision(void *model, gemm_dtype_t dt, int bf16_params) {
  llama_model_t *m = model;
  llama_set_matmul_dtype(m, dt);
  m->bf16_params = bf16_params;
}

const stage_ops_t stage_llama_ops = {"llama", l_acts_create, l_acts_free, l_acts_bytes, l_scratch_bytes,
                                     l_stream_rows, l_forward, l_output, l_losses, l_backward,
                                     l_zero_grad, l_set_grad_ready, l_set_precision};

stage_model_t stage_of_llama(llama_model_t *m) {
  return (stage_model_t){&stage_llama_ops, m, m->params, m->grads, m->num_params, m->tensors,
                         m->num_tensors, m->cfg.dim, m->range.has_embed, m->range.has_head,
                         m->range.tp_rank};
}
