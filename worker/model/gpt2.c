/* gpt2.c -- GPT-2 on CBLAS for one contiguous range of layers and one tensor-parallel rank's
 * share of them (see gpt2.h): construction and validation, the tensor-parallel and
 * recomputation settings, FLOP counts. The other files of the model (gpt2_impl.h): gpt2_acts.c
 * (activation storage, the model's scratch), gpt2_pass.c (training forward and backward),
 * gpt2_tensor.c (catalogue, split rules, initialisation), gpt2_kv.c (KV-cache forward), nn.c
 * (the numeric kernels).
 */
#include "gpt2.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "gpt2_impl.h"
#include "log.h"
#include "util.h"

/* Query rows per causal attention block: each block of a head is one sgemm over keys
 * [0, block end), so smaller blocks skip more of the masked upper triangle but make smaller
 * sgemm calls. Override with STRATA_ATTN_BLOCK_ROWS. */
#define GPT2_ATTN_BLOCK_ROWS_DEFAULT 64
#define GPT2_LAYER_TENSORS 12 /* parameter tensors per transformer layer */

/* ---------------------------------------------------------------------------------------- */
/* model construction */

/* The configuration and the shard's range make a model: every size positive, heads dividing
 * dim, the range inside the model, the embedding and head on the shards at its ends, and a
 * tensor-parallel split that divides the heads. */
static int check_config(const gpt2_config_t *cfg, gpt2_range_t range, char *err, size_t errlen) {
  if (cfg->vocab <= 0)
    return strata_fail(err, errlen, "vocab = %d: the vocabulary size must be positive", cfg->vocab);
  if (cfg->ctx <= 0) return strata_fail(err, errlen, "ctx = %d: the context length must be positive", cfg->ctx);
  if (cfg->layers <= 0)
    return strata_fail(err, errlen, "layers = %d: the model needs at least one layer", cfg->layers);
  if (cfg->heads <= 0)
    return strata_fail(err, errlen, "heads = %d: the number of attention heads must be positive", cfg->heads);
  if (cfg->dim <= 0) return strata_fail(err, errlen, "dim = %d: the embedding width must be positive", cfg->dim);
  if (cfg->dim % cfg->heads != 0)
    return strata_fail(err, errlen, "dim = %d is not divisible by heads = %d: choose dim a multiple of heads",
                       cfg->dim, cfg->heads);
  if (range.layer_begin < 0 || range.layer_end > cfg->layers || range.layer_begin > range.layer_end)
    return strata_fail(err, errlen,
                       "layer range [%d, %d) is not within the model's %d layers: need 0 <= layer_begin <= "
                       "layer_end <= layers",
                       range.layer_begin, range.layer_end, cfg->layers);
  if (range.has_embed && range.layer_begin != 0)
    return strata_fail(err, errlen, "has_embed with layer_begin = %d: the embedding belongs to the shard "
                       "that starts at layer 0", range.layer_begin);
  if (range.has_head && range.layer_end != cfg->layers)
    return strata_fail(err, errlen, "has_head with layer_end = %d: the head belongs to the shard that ends "
                       "at layer %d", range.layer_end, cfg->layers);
  if (range.layer_begin == range.layer_end && !range.has_embed && !range.has_head)
    return strata_fail(err, errlen, "layer range [%d, %d) is empty and owns neither embedding nor head",
                       range.layer_begin, range.layer_end);
  if (range.tp_size < 1)
    return strata_fail(err, errlen, "tp_size = %d: the tensor-parallel size must be at least 1", range.tp_size);
  if (range.tp_rank < 0 || range.tp_rank >= range.tp_size)
    return strata_fail(err, errlen, "tp_rank = %d is outside [0, tp_size = %d): give this shard's rank in its "
                       "tensor-parallel group", range.tp_rank, range.tp_size);
  if (cfg->heads % range.tp_size != 0)
    return strata_fail(err, errlen, "heads = %d is not divisible by the tensor-parallel size %d: choose a "
                       "tensor-parallel size that divides the heads", cfg->heads, range.tp_size);
  const int64_t C = cfg->dim;
  if ((int64_t)gpt2_padded_vocab(cfg->vocab, range.tp_size) * C > INT32_MAX || 4 * C * C > INT32_MAX)
    return strata_fail(err, errlen, "dim = %d with vocab = %d is too large for 32-bit BLAS indices", cfg->dim,
                       cfg->vocab);
  return 0;
}

/* The shape of this rank's part, in the private state. */
static void impl_shape(gpt2_impl_t *s, const gpt2_model_t *m) {
  s->tp = m->range.tp_size;
  s->t = m->range.tp_rank;
  s->Cl = gpt2_local_dim(m);
  s->Hl = gpt2_local_heads(m);
  s->Vl = gpt2_local_vocab(m);
  s->voff = gpt2_vocab_offset(m);
  int valid = m->cfg.vocab - s->voff;
  s->vvalid = valid < 0 ? 0 : valid > s->Vl ? s->Vl : valid;
}

int gpt2_create(const gpt2_config_t *cfg, gpt2_range_t range, gpt2_model_t **out, char *err,
                size_t errlen) {
  *out = NULL;
  if (range.tp_size == 0) range.tp_size = 1;
  if (check_config(cfg, range, err, errlen)) return -1;
  int nl = range.layer_end - range.layer_begin;
  gpt2_model_t *m = calloc(1, sizeof *m);
  gpt2_impl_t *impl = calloc(1, sizeof *impl);
  if (!m || !impl) {
    free(m);
    free(impl);
    return strata_fail(err, errlen, "out of memory for a model shard's state");
  }
  m->cfg = *cfg;
  m->range = range;
  m->impl = impl;
  impl_shape(impl, m);
  int64_t blk;
  if (env_read_int("STRATA_ATTN_BLOCK_ROWS", GPT2_ATTN_BLOCK_ROWS_DEFAULT, &blk, err, errlen)) goto free_model;
  impl->attn_block = (int)blk;
  size_t row = (size_t)(impl->Vl > 4 * cfg->dim ? impl->Vl : 4 * cfg->dim);
  impl->row = gpt2_alloc_floats(row, 0);
  m->tensors = calloc(6 + (size_t)GPT2_LAYER_TENSORS * nl, sizeof *m->tensors);
  m->layer = calloc(nl > 0 ? nl : 1, sizeof *m->layer);
  m->g_layer = calloc(nl > 0 ? nl : 1, sizeof *m->g_layer);
  if (!impl->row || !m->tensors || !m->layer || !m->g_layer) goto oom;
  m->num_params = gpt2_catalogue(m);
  m->params = gpt2_alloc_floats(m->num_params, 1);
  m->grads = gpt2_alloc_floats(m->num_params, 1);
  if (!m->params || !m->grads) goto oom;
  gpt2_bind_views(m, m->params, &m->wte, &m->wpe, m->layer, &m->lnf_w, &m->lnf_b);
  gpt2_bind_views(m, m->grads, &m->g_wte, &m->g_wpe, m->g_layer, &m->g_lnf_w, &m->g_lnf_b);
  /* a layer's 12 tensors are contiguous; the first layer's follow wte and wpe when has_embed */
  for (int i = 0; nl > 0 && i < GPT2_LAYER_TENSORS; i++)
    impl->layer_numel += m->tensors[(range.has_embed ? 2 : 0) + i].numel;
  *out = m;
  return 0;
oom:
  strata_fail(err, errlen, "out of memory building the model shard (%d layers, dim %d)", nl, cfg->dim);
free_model:
  gpt2_free(m);
  return -1;
}

void gpt2_free(gpt2_model_t *m) {
  if (!m) return;
  if (m->impl) {
    free(gpt2_impl_of(m)->mem);
    free(gpt2_impl_of(m)->row);
    free(m->impl);
  }
  free(m->params);
  free(m->grads);
  free(m->tensors);
  free(m->layer);
  free(m->g_layer);
  free(m);
}

void gpt2_zero_grad(gpt2_model_t *m) { memset(m->grads, 0, sizeof(float) * m->num_params); }

/* ---------------------------------------------------------------------------------------- */
/* settings: tensor-parallel group, recomputation */

int gpt2_set_tp(gpt2_model_t *m, coll_comm_t *tp, int sequence_parallel, char *err, size_t errlen) {
  gpt2_impl_t *s = gpt2_impl_of(m);
  if (!tp && s->tp > 1)
    return strata_fail(err, errlen, "gpt2_set_tp: a shard of tensor-parallel size %d needs the communicator of "
                       "its %d tensor-parallel ranks, got NULL", s->tp, s->tp);
  if (tp && (coll_size(tp) != s->tp || coll_rank(tp) != s->t))
    return strata_fail(err, errlen, "gpt2_set_tp: the communicator has rank %d of %d but the shard was created "
                       "as tensor-parallel rank %d of %d: build the TP communicator over the shard's TP group, "
                       "ordered by tp_rank", coll_rank(tp), coll_size(tp), s->t, s->tp);
  s->comm = tp;
  s->sp = sequence_parallel && s->tp > 1;
  return 0;
}

int gpt2_sequence_parallel(const gpt2_model_t *m) { return gpt2_impl_of(m)->sp; }

int gpt2_stream_rows(const gpt2_model_t *m, int B, int T) {
  return (int)gpt2_region_rows((size_t)B * T, gpt2_impl_of(m)->tp, gpt2_impl_of(m)->sp);
}

void gpt2_set_matmul_dtype(gpt2_model_t *m, gemm_dtype_t dt) { gpt2_impl_of(m)->mm = dt; }

gemm_dtype_t gpt2_get_matmul_dtype(const gpt2_model_t *m) { return gpt2_impl_of(m)->mm; }

int gpt2_set_recompute(gpt2_model_t *m, gpt2_recompute_t mode) {
  if (mode != GPT2_RECOMPUTE_NONE && mode != GPT2_RECOMPUTE_SELECTIVE && mode != GPT2_RECOMPUTE_FULL) return -1;
  gpt2_impl_of(m)->recompute = mode;
  return 0;
}

gpt2_recompute_t gpt2_get_recompute(const gpt2_model_t *m) { return gpt2_impl_of(m)->recompute; }

static const char *const recompute_names[] = {"none", "selective", "full"};

const char *gpt2_recompute_name(gpt2_recompute_t mode) {
  return (int)mode >= 0 && (int)mode < 3 ? recompute_names[mode] : "?";
}

int gpt2_parse_recompute(const char *s, gpt2_recompute_t *out) {
  for (int i = 0; i < 3; i++)
    if (s && strcmp(s, recompute_names[i]) == 0) {
      *out = (gpt2_recompute_t)i;
      return 0;
    }
  return -1;
}

int gpt2_coll_check(gpt2_model_t *m, coll_result_t rc, const char *what) {
  if (rc == COLL_OK) return 0;
  strata_error("gpt2: tensor-parallel %s failed (%s): %s", what, coll_result_string(rc),
               coll_last_error(gpt2_impl_of(m)->comm));
  return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* FLOPs */

double gpt2_train_flops(const gpt2_model_t *m, int B, int T) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  double C = m->cfg.dim, tokens = (double)B * T, tp = s->tp;
  int nl = m->range.layer_end - m->range.layer_begin;
  double matmul_params = nl * 12.0 * C * C / tp + (m->range.has_head ? (double)s->vvalid * C : 0.0);
  /* attention: Q K^T and P V, 2 * 2 * T * C FLOPs per token per layer forward, x3 with backward */
  double attn = nl * 12.0 * C * (double)T * tokens / tp;
  return 6.0 * matmul_params * tokens + attn;
}

double gpt2_recompute_flops(const gpt2_model_t *m, int B, int T) {
  const gpt2_impl_t *s = gpt2_impl_of(m);
  double C = m->cfg.dim, tokens = (double)B * T, tp = s->tp;
  int nl = m->range.layer_end - m->range.layer_begin;
  double qk = nl * 2.0 * C * (double)T * tokens / tp; /* Q K^T of every layer, once */
  switch (s->recompute) {
  case GPT2_RECOMPUTE_SELECTIVE: return qk;
  case GPT2_RECOMPUTE_FULL: /* the layers' forward (matmuls + attention) and the logits, plus Q K^T */
    return nl * (24.0 * C * C + 4.0 * C * (double)T) * tokens / tp + qk +
           (m->range.has_head ? 2.0 * C * s->vvalid * tokens : 0.0);
  case GPT2_RECOMPUTE_NONE: break;
  }
  return 0.0;
}
