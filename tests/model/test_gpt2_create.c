/* test_gpt2_create.c -- gpt2_create and gpt2_acts_create refuse bad configurations with a
 * message that names the offending field, and build the documented layout for good ones
 * (tensor catalogue in Hugging Face names and shapes, layer-major, wte first on the embedding
 * shard and just before ln_f on a head-only shard, parameter count 12LC^2+13LC+VC+TC+2C). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "test_util.h"

static void expect_error(const gpt2_config_t *cfg, gpt2_range_t r, const char *needle) {
  gpt2_model_t *m = (gpt2_model_t *)1;
  char err[256] = "";
  int rc = gpt2_create(cfg, r, &m, err, sizeof err);
  CHECK_EQ_INT(rc, -1);
  CHECK_TRUE(m == NULL);
  if (!strstr(err, needle)) test_fail(__FILE__, __LINE__, "error \"%s\" does not name \"%s\"", err, needle);
  test_checks++;
  printf("refused (%s): %s\n", needle, err);
}

int main(void) {
  const gpt2_config_t good = {.vocab = 256, .ctx = 64, .layers = 4, .heads = 4, .dim = 64};
  const gpt2_range_t all = {0, 4, 1, 1};
  gpt2_config_t c;
  c = good; c.dim = 66;    expect_error(&c, all, "heads");
  c = good; c.heads = 0;   expect_error(&c, all, "heads");
  c = good; c.dim = 0;     expect_error(&c, all, "dim");
  c = good; c.vocab = 0;   expect_error(&c, all, "vocab");
  c = good; c.ctx = -1;    expect_error(&c, all, "ctx");
  c = good; c.layers = 0;  expect_error(&c, (gpt2_range_t){0, 0, 1, 1}, "layers");
  expect_error(&good, (gpt2_range_t){0, 5, 1, 1}, "layer range");
  expect_error(&good, (gpt2_range_t){3, 2, 0, 0}, "layer range");
  expect_error(&good, (gpt2_range_t){1, 4, 1, 1}, "has_embed");
  expect_error(&good, (gpt2_range_t){0, 3, 1, 1}, "has_head");
  expect_error(&good, (gpt2_range_t){2, 2, 0, 0}, "empty");

  /* a good single shard: layout and counts */
  gpt2_model_t *m = NULL;
  char err[256];
  CHECK_EQ_INT(gpt2_create(&good, all, &m, err, sizeof err), 0);
  const size_t C = 64, V = 256, T = 64, L = 4;
  CHECK_EQ_INT(m->num_params, 12 * L * C * C + 13 * L * C + V * C + T * C + 2 * C);
  CHECK_EQ_INT(m->num_tensors, 2 + 12 * 4 + 2);
  CHECK_TRUE(strcmp(m->tensors[0].name, "wte.weight") == 0);
  CHECK_TRUE(strcmp(m->tensors[m->num_tensors - 1].name, "ln_f.bias") == 0);
  size_t off = 0;
  for (int i = 0; i < m->num_tensors; i++) { /* contiguous, in order */
    CHECK_EQ_INT(m->tensors[i].offset, off);
    off += m->tensors[i].numel;
    CHECK_EQ_INT(m->tensors[i].decay, m->tensors[i].ndim == 2);
  }
  const gpt2_tensor_t *t = gpt2_find_tensor(m, "h.2.attn.c_attn.weight");
  CHECK_TRUE(t && t->ndim == 2 && t->shape[0] == 64 && t->shape[1] == 192);
  CHECK_TRUE(m->layer[2].attn_w == m->params + t->offset);
  CHECK_TRUE(m->g_layer[2].attn_w == m->grads + t->offset);
  t = gpt2_find_tensor(m, "h.3.mlp.c_proj.weight");
  CHECK_TRUE(t && t->shape[0] == 256 && t->shape[1] == 64);
  CHECK_TRUE(gpt2_find_tensor(m, "h.4.ln_1.weight") == NULL);
  /* FLOPs: 6 * matmul params * tokens + 12 * L * C * T per token (attention) */
  double expect = 6.0 * (12.0 * L * C * C + (double)V * C) * 8 * 64 + 12.0 * L * C * 64 * 8 * 64;
  CHECK_NEAR(gpt2_train_flops(m, 8, 64), expect, 1.0);

  gpt2_acts_t *a = (gpt2_acts_t *)1;
  CHECK_EQ_INT(gpt2_acts_create(m, 2, 65, &a, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "ctx") != NULL);
  CHECK_EQ_INT(gpt2_acts_create(m, 0, 8, &a, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "B") != NULL);
  CHECK_EQ_INT(gpt2_acts_create(m, 2, 64, &a, err, sizeof err), 0);
  CHECK_TRUE(gpt2_acts_bytes(a) > 0);
  /* out-of-vocabulary tokens are refused (NaN loss) rather than read out of bounds */
  int32_t tok[128], tgt[128];
  for (int i = 0; i < 128; i++) tok[i] = tgt[i] = i % 256;
  tok[5] = 256;
  float loss = gpt2_forward(m, a, tok, NULL, tgt);
  CHECK_TRUE(loss != loss);
  /* reshaped storage gives bit-identical results to fresh storage of that shape */
  for (int i = 0; i < 128; i++) tok[i] = (i * 37) % 256, tgt[i] = (i * 11 + 3) % 256;
  gpt2_init_params(m, 5);
  CHECK_EQ_INT(gpt2_acts_reshape(a, 1, 65, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "does not fit") != NULL);
  CHECK_EQ_INT(gpt2_acts_reshape(a, 3, 8, err, sizeof err), -1);
  CHECK_EQ_INT(gpt2_acts_reshape(a, 1, 40, err, sizeof err), 0);
  float l_re = gpt2_forward(m, a, tok, NULL, tgt);
  gpt2_zero_grad(m);
  gpt2_backward(m, a, NULL, 1.0f, NULL);
  float g_re = m->grads[123] + m->grads[m->num_params - 7];
  gpt2_acts_t *fresh = NULL;
  CHECK_EQ_INT(gpt2_acts_create(m, 1, 40, &fresh, err, sizeof err), 0);
  float l_fresh = gpt2_forward(m, fresh, tok, NULL, tgt);
  gpt2_zero_grad(m);
  gpt2_backward(m, fresh, NULL, 1.0f, NULL);
  float g_fresh = m->grads[123] + m->grads[m->num_params - 7];
  CHECK_TRUE(memcmp(&l_re, &l_fresh, sizeof l_re) == 0);
  CHECK_TRUE(memcmp(&g_re, &g_fresh, sizeof g_re) == 0);
  CHECK_TRUE(l_re > 0.0f && g_re != 0.0f);
  gpt2_acts_free(fresh);
  gpt2_acts_free(a);
  gpt2_free(m);

  /* head-only shard: wte sits just before ln_f */
  CHECK_EQ_INT(gpt2_create(&good, (gpt2_range_t){2, 4, 0, 1}, &m, err, sizeof err), 0);
  CHECK_TRUE(strcmp(m->tensors[m->num_tensors - 3].name, "wte.weight") == 0);
  CHECK_TRUE(strcmp(m->tensors[0].name, "h.2.ln_1.weight") == 0);
  CHECK_TRUE(m->wpe == NULL && m->wte != NULL);
  gpt2_free(m);

  /* a malformed tunable is refused by name rather than ignored */
  setenv("STRATA_ATTN_BLOCK_ROWS", "12x", 1);
  expect_error(&good, all, "STRATA_ATTN_BLOCK_ROWS");
  setenv("STRATA_ATTN_BLOCK_ROWS", "0", 1);
  expect_error(&good, all, "STRATA_ATTN_BLOCK_ROWS");
  unsetenv("STRATA_ATTN_BLOCK_ROWS");
  return test_finish("model_gpt2_create");
}
