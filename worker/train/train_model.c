/* train_model.c -- the one-rank model of either family behind one set of calls (train_model.h). */
#include "train_model.h"

#include <string.h>

llama_config_t train_llama_config(const gpt2_config_t *shape, const llama_config_t *llama) {
  llama_config_t l = *llama;
  l.vocab = shape->vocab;
  l.ctx = shape->ctx;
  l.layers = shape->layers;
  l.heads = shape->heads;
  l.dim = shape->dim;
  if (l.kv_heads == 0) l.kv_heads = l.heads;
  if (l.ffn == 0) l.ffn = (8 * shape->dim / 3 + 63) / 64 * 64; /* Llama's 2/3 x 4 x dim, multiple_of 64 */
  return l;
}

int train_model_create(train_model_t *tm, ckpt_arch_t arch, const gpt2_config_t *shape,
                       const llama_config_t *llama, int B, int T, char *err, size_t errlen) {
  memset(tm, 0, sizeof *tm);
  tm->arch = arch;
  if (arch == CKPT_ARCH_LLAMA) {
    llama_model_t *m;
    if (llama_create(llama, &tm->llama, err, errlen)) return -1;
    m = tm->llama;
    *tm = (train_model_t){arch, NULL, NULL, m, NULL, m->params, m->grads, m->num_params, m->tensors,
                          m->num_tensors};
    return llama_acts_create(m, B, T, &tm->llama_acts, err, errlen) ? -2 : 0;
  }
  gpt2_range_t all = {0, shape->layers, 1, 1};
  if (gpt2_create(shape, all, &tm->gpt, err, errlen)) return -1;
  gpt2_model_t *m = tm->gpt;
  *tm = (train_model_t){arch, m, NULL, NULL, NULL, m->params, m->grads, m->num_params, m->tensors,
                        m->num_tensors};
  return gpt2_acts_create(m, B, T, &tm->gpt_acts, err, errlen) ? -2 : 0;
}

void train_model_free(train_model_t *tm) {
  gpt2_acts_free(tm->gpt_acts);
  gpt2_free(tm->gpt);
  llama_acts_free(tm->llama_acts);
  llama_free(tm->llama);
  memset(tm, 0, sizeof *tm);
}

void train_model_init(train_model_t *tm, uint64_t seed) {
  if (tm->llama) llama_init_params(tm->llama, seed);
  else gpt2_init_params(tm->gpt, seed);
}

void train_model_zero_grad(train_model_t *tm) {
  if (tm->llama) llama_zero_grad(tm->llama);
  else gpt2_zero_grad(tm->gpt);
}

double train_model_forward(train_model_t *tm, const int32_t *in, const int32_t *tg) {
  if (tm->llama) return llama_forward(tm->llama, tm->llama_acts, in, tg);
  return gpt2_forward(tm->gpt, tm->gpt_acts, in, NULL, tg);
}

const float *train_model_losses(const train_model_t *tm) {
  return tm->llama ? llama_losses(tm->llama_acts) : gpt2_losses(tm->gpt_acts);
}

int train_model_backward(train_model_t *tm, float scale) {
  if (tm->llama) return llama_backward(tm->llama, tm->llama_acts, scale);
  return gpt2_backward(tm->gpt, tm->gpt_acts, NULL, scale, NULL);
}

int train_model_save(const train_model_t *tm, const char *dir, const float *exp_avg,
                     const float *exp_avg_sq, strata_train_state_t *state, char *err, size_t errlen) {
  if (tm->llama) return ckpt_save_llama(dir, tm->llama, exp_avg, exp_avg_sq, state, err, errlen);
  return ckpt_save(dir, tm->gpt, exp_avg, exp_avg_sq, state, err, errlen);
}

int train_model_load(train_model_t *tm, const char *dir, float *exp_avg, float *exp_avg_sq,
                     strata_train_state_t *state, char *err, size_t errlen) {
  if (tm->llama) return ckpt_load_llama(dir, tm->llama, exp_avg, exp_avg_sq, state, err, errlen);
  return ckpt_load(dir, tm->gpt, exp_avg, exp_avg_sq, state, err, errlen);
}
