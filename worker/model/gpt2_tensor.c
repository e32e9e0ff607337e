/* gpt2_tensor.c -- the GPT-2 shard's tensor catalogue (names, shapes, flat-buffer offsets), the
 * tensor-parallel split rule of every tensor (see gpt2_split_t in gpt2.h), slicing a logical
 * tensor into a rank's part and back, and initialisation from (seed, name).
 *
 * Every split is a row map and a column map between a local tensor of LR x LW and its logical
 * tensor of FR x FW (a 1-D tensor is one row): local row r comes from full row row_of(r) (or
 * is padding), and a row's columns come in at most three contiguous segments (q, k and v for
 * QKV_COLS). Slicing, unslicing and initialisation all walk those maps, so they agree.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_impl.h"
#include "rng.h"

#define GPT2_INIT_STD 0.02f  /* GPT-2 weight init standard deviation */
#define GPT2_VOCAB_MULTIPLE 128 /* Megatron-LM's make-vocab-size-divisible-by (times tp) */

/* The tensors of one transformer layer in flat-buffer order: name after "h.<l>.", the view in
 * gpt2_layer_t, the logical shape in units of C (d1 = 0 for 1-D), whether AdamW decays it, and
 * how tensor parallelism splits it. */
static const struct {
  const char *suffix;
  size_t view; /* offsetof(gpt2_layer_t, ...) */
  int ndim, d0, d1, decay;
  gpt2_split_t split;
} layer_tensors[] = {
    {"ln_1.weight", offsetof(gpt2_layer_t, ln1_w), 1, 1, 0, 0, GPT2_SPLIT_NONE},
    {"ln_1.bias", offsetof(gpt2_layer_t, ln1_b), 1, 1, 0, 0, GPT2_SPLIT_NONE},
    {"attn.c_attn.weight", offsetof(gpt2_layer_t, attn_w), 2, 1, 3, 1, GPT2_SPLIT_QKV_COLS},
    {"attn.c_attn.bias", offsetof(gpt2_layer_t, attn_b), 1, 3, 0, 0, GPT2_SPLIT_QKV_COLS},
    {"attn.c_proj.weight", offsetof(gpt2_layer_t, attn_proj_w), 2, 1, 1, 1, GPT2_SPLIT_ROWS},
    {"attn.c_proj.bias", offsetof(gpt2_layer_t, attn_proj_b), 1, 1, 0, 0, GPT2_SPLIT_NONE},
    {"ln_2.weight", offsetof(gpt2_layer_t, ln2_w), 1, 1, 0, 0, GPT2_SPLIT_NONE},
    {"ln_2.bias", offsetof(gpt2_layer_t, ln2_b), 1, 1, 0, 0, GPT2_SPLIT_NONE},
    {"mlp.c_fc.weight", offsetof(gpt2_layer_t, fc_w), 2, 1, 4, 1, GPT2_SPLIT_COLS},
    {"mlp.c_fc.bias", offsetof(gpt2_layer_t, fc_b), 1, 4, 0, 0, GPT2_SPLIT_COLS},
    {"mlp.c_proj.weight", offsetof(gpt2_layer_t, fc_proj_w), 2, 4, 1, 1, GPT2_SPLIT_ROWS},
    {"mlp.c_proj.bias", offsetof(gpt2_layer_t, fc_proj_b), 1, 1, 0, 0, GPT2_SPLIT_NONE},
};
#define LAYER_TENSORS ((int)(sizeof layer_tensors / sizeof layer_tensors[0]))

int gpt2_padded_vocab(int vocab, int tp) {
  if (tp <= 1) return vocab;
  int64_t q = (int64_t)GPT2_VOCAB_MULTIPLE * tp;
  return (int)((vocab + q - 1) / q * q);
}

int gpt2_local_dim(const gpt2_model_t *m) { return m->cfg.dim / m->range.tp_size; }
int gpt2_local_heads(const gpt2_model_t *m) { return m->cfg.heads / m->range.tp_size; }
int gpt2_local_vocab(const gpt2_model_t *m) {
  return gpt2_padded_vocab(m->cfg.vocab, m->range.tp_size) / m->range.tp_size;
}
int gpt2_vocab_offset(const gpt2_model_t *m) { return m->range.tp_rank * gpt2_local_vocab(m); }

/* ---------------------------------------------------------------------------------------- */
/* catalogue */

void gpt2_tensor_describe(gpt2_tensor_t *t, const char *name, int ndim, int64_t d0, int64_t d1, int decay,
                          gpt2_split_t split, int tp, size_t offset) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = ndim;
  t->full_shape[0] = d0;
  t->full_shape[1] = ndim == 2 ? d1 : 0;
  t->full_numel = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
  t->split = tp > 1 ? split : GPT2_SPLIT_NONE;
  t->replicated = t->split == GPT2_SPLIT_NONE;
  t->tp_size = tp;
  int64_t l0 = d0, l1 = t->full_shape[1];
  switch (t->split) {
  case GPT2_SPLIT_COLS:
  case GPT2_SPLIT_QKV_COLS:
    if (ndim == 2)
      l1 /= tp;
    else
      l0 /= tp;
    break;
  case GPT2_SPLIT_ROWS: l0 /= tp; break;
  case GPT2_SPLIT_VOCAB_ROWS: l0 = gpt2_padded_vocab((int)d0, tp) / tp; break;
  case GPT2_SPLIT_NONE: break;
  }
  t->shape[0] = l0;
  t->shape[1] = l1;
  t->numel = (size_t)l0 * (ndim == 2 ? (size_t)l1 : 1);
  t->offset = offset;
  t->decay = decay;
}

/* Appends a tensor of logical shape (d0[, d1]) split as `split` over the model's TP group. */
static void add_tensor(gpt2_model_t *m, size_t *off, const char *name, int ndim, int64_t d0, int64_t d1,
                       int decay, gpt2_split_t split) {
  gpt2_tensor_t *t = &m->tensors[m->num_tensors++];
  gpt2_tensor_describe(t, name, ndim, d0, d1, decay, split, m->range.tp_size, *off);
  *off += t->numel;
}

size_t gpt2_catalogue(gpt2_model_t *m) {
  const gpt2_config_t *cfg = &m->cfg;
  const int64_t C = cfg->dim;
  size_t off = 0;
  char nm[64];
  if (m->range.has_embed) {
    add_tensor(m, &off, "wte.weight", 2, cfg->vocab, C, 1, GPT2_SPLIT_VOCAB_ROWS);
    add_tensor(m, &off, "wpe.weight", 2, cfg->ctx, C, 1, GPT2_SPLIT_NONE);
  }
  for (int l = m->range.layer_begin; l < m->range.layer_end; l++)
    for (int i = 0; i < LAYER_TENSORS; i++) {
      snprintf(nm, sizeof nm, "h.%d.%s", l, layer_tensors[i].suffix);
      add_tensor(m, &off, nm, layer_tensors[i].ndim, layer_tensors[i].d0 * C, layer_tensors[i].d1 * C,
                 layer_tensors[i].decay, layer_tensors[i].split);
    }
  if (m->range.has_head) {
    if (!m->range.has_embed) add_tensor(m, &off, "wte.weight", 2, cfg->vocab, C, 1, GPT2_SPLIT_VOCAB_ROWS);
    add_tensor(m, &off, "ln_f.weight", 1, C, 0, 0, GPT2_SPLIT_NONE);
    add_tensor(m, &off, "ln_f.bias", 1, C, 0, 0, GPT2_SPLIT_NONE);
  }
  return off;
}

static float *param_of(gpt2_model_t *m, float *base, const char *name) {
  const gpt2_tensor_t *t = gpt2_find_tensor(m, name);
  return t ? base + t->offset : NULL;
}

void gpt2_bind_views(gpt2_model_t *m, float *base, float **wte, float **wpe, gpt2_layer_t *layer, float **lnf_w,
                     float **lnf_b) {
  char nm[64];
  *wte = param_of(m, base, "wte.weight");
  *wpe = param_of(m, base, "wpe.weight");
  *lnf_w = param_of(m, base, "ln_f.weight");
  *lnf_b = param_of(m, base, "ln_f.bias");
  for (int l = m->range.layer_begin; l < m->range.layer_end; l++)
    for (int i = 0; i < LAYER_TENSORS; i++) {
      snprintf(nm, sizeof nm, "h.%d.%s", l, layer_tensors[i].suffix);
      *(float **)((char *)&layer[l - m->range.layer_begin] + layer_tensors[i].view) = param_of(m, base, nm);
    }
}

const gpt2_tensor_t *gpt2_find_tensor(const gpt2_model_t *m, const char *name) {
  for (int i = 0; i < m->num_tensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* split maps */

/* A tensor as rows x columns: local LR x LW, logical FR x FW (1-D: one row). */
typedef struct {
  size_t LR, LW, FR, FW;
  int nseg;              /* column segments per row */
  size_t src[3], dst[3]; /* segment starts: logical column, local column */
  size_t len;            /* columns per segment */
  int64_t row0;          /* logical row of local row 0 (ROWS, VOCAB_ROWS; else 0) */
} split_map_t;

static split_map_t split_map(const gpt2_tensor_t *t, int tp_rank) {
  split_map_t s;
  memset(&s, 0, sizeof s);
  int two = t->ndim == 2;
  s.LR = two ? (size_t)t->shape[0] : 1;
  s.LW = two ? (size_t)t->shape[1] : (size_t)t->shape[0];
  s.FR = two ? (size_t)t->full_shape[0] : 1;
  s.FW = two ? (size_t)t->full_shape[1] : (size_t)t->full_shape[0];
  s.nseg = 1;
  s.len = s.LW;
  switch (t->split) {
  case GPT2_SPLIT_COLS: s.src[0] = (size_t)tp_rank * s.LW; break;
  case GPT2_SPLIT_QKV_COLS:
    s.nseg = 3;
    s.len = s.LW / 3;
    for (int j = 0; j < 3; j++) {
      s.src[j] = (size_t)j * (s.FW / 3) + (size_t)tp_rank * s.len;
      s.dst[j] = (size_t)j * s.len;
    }
    break;
  case GPT2_SPLIT_ROWS:
  case GPT2_SPLIT_VOCAB_ROWS: s.row0 = (int64_t)tp_rank * (int64_t)s.LR; break;
  case GPT2_SPLIT_NONE: break;
  }
  return s;
}

/* The logical row of local row r, or -1 for a padding row. */
static int64_t full_row(const split_map_t *s, size_t r) {
  int64_t f = s->row0 + (int64_t)r;
  return f < (int64_t)s->FR ? f : -1;
}

int gpt2_tensor_slice(const gpt2_tensor_t *t, int tp_rank, const float *full, float *local) {
  if (tp_rank < 0 || tp_rank >= t->tp_size) return -1;
  split_map_t s = split_map(t, tp_rank);
  for (size_t r = 0; r < s.LR; r++) {
    int64_t f = full_row(&s, r);
    if (f < 0) {
      memset(local + r * s.LW, 0, sizeof(float) * s.LW);
      continue;
    }
    for (int j = 0; j < s.nseg; j++)
      memcpy(local + r * s.LW + s.dst[j], full + (size_t)f * s.FW + s.src[j], sizeof(float) * s.len);
  }
  return 0;
}

int gpt2_tensor_unslice(const gpt2_tensor_t *t, int tp_rank, const float *local, float *full) {
  if (tp_rank < 0 || tp_rank >= t->tp_size) return -1;
  split_map_t s = split_map(t, tp_rank);
  for (size_t r = 0; r < s.LR; r++) {
    int64_t f = full_row(&s, r);
    if (f < 0) continue;
    for (int j = 0; j < s.nseg; j++)
      memcpy(full + (size_t)f * s.FW + s.src[j], local + r * s.LW + s.dst[j], sizeof(float) * s.len);
  }
  return 0;
}

int64_t gpt2_tensor_full_index(const gpt2_tensor_t *t, int tp_rank, size_t i) {
  split_map_t s = split_map(t, tp_rank);
  size_t r = i / s.LW, c = i % s.LW;
  int64_t f = full_row(&s, r);
  if (f < 0) return -1;
  size_t j = c / s.len;
  return f * (int64_t)s.FW + (int64_t)(s.src[j] + (c - s.dst[j]));
}

void gpt2_logits_assemble(const gpt2_model_t *m, const float *gathered, size_t rows, float *full) {
  gpt2_vocab_logits_assemble(m->cfg.vocab, m->range.tp_size, gathered, rows, full);
}

void gpt2_vocab_logits_assemble(int V, int tp, const float *gathered, size_t rows, float *full) {
  const int Vl = gpt2_padded_vocab(V, tp) / tp;
  for (size_t r = 0; r < rows; r++)
    for (int q = 0; q < tp; q++) {
      int valid = V - q * Vl < Vl ? V - q * Vl : Vl;
      if (valid > 0)
        memcpy(full + r * V + (size_t)q * Vl, gathered + ((size_t)q * rows + r) * Vl, sizeof(float) * valid);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* initialisation */

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Draws the logical 2-D tensor's values in order, one logical row at a time, keeping the parts
 * of this rank (split maps as in gpt2_tensor_slice). row: scratch of FW floats. */
static void init_sliced(const gpt2_tensor_t *t, int tp_rank, rng_t *r, float std, float *row, float *p) {
  split_map_t s = split_map(t, tp_rank);
  memset(p, 0, sizeof(float) * t->numel); /* padding rows */
  for (size_t f = 0; f < s.FR; f++) {
    for (size_t j = 0; j < s.FW; j++) row[j] = std * rng_normal(r);
    int64_t lr = (int64_t)f - s.row0;
    if (lr < 0 || lr >= (int64_t)s.LR) continue;
    for (int j = 0; j < s.nseg; j++)
      memcpy(p + (size_t)lr * s.LW + s.dst[j], row + s.src[j], sizeof(float) * s.len);
  }
}

void gpt2_init_params(gpt2_model_t *m, uint64_t seed) {
  float resid_std = GPT2_INIT_STD / sqrtf(2.0f * (float)m->cfg.layers);
  float *row = ((gpt2_impl_t *)m->impl)->row; /* >= 4C floats: the widest logical row (c_fc) */
  for (int i = 0; i < m->num_tensors; i++) {
    const gpt2_tensor_t *t = &m->tensors[i];
    float *p = m->params + t->offset;
    if (t->ndim == 2) {
      float std = (ends_with(t->name, "attn.c_proj.weight") || ends_with(t->name, "mlp.c_proj.weight"))
                      ? resid_std
                      : GPT2_INIT_STD;
      rng_t r;
      rng_seed(&r, seed, rng_hash_str(t->name));
      if (t->split == GPT2_SPLIT_NONE)
        for (size_t j = 0; j < t->numel; j++) p[j] = std * rng_normal(&r);
      else
        init_sliced(t, m->range.tp_rank, &r, std, row, p);
    } else {
      int is_ln_weight = (strstr(t->name, "ln_") != NULL) && ends_with(t->name, ".weight");
      for (size_t j = 0; j < t->numel; j++) p[j] = is_ln_weight ? 1.0f : 0.0f;
    }
  }
}
