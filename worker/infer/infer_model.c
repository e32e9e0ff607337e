/* infer_model.c -- the engine's model of either family (see infer_model.h): a table of
 * functions per family (GPT-2, Llama) at the end of the file, and the thin entry points that
 * hand off to the table of the checkpoint's family. */
#include "infer_model.h"

#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "util.h"

/* One model family: what the engine needs of it. */
typedef struct {
  int (*check_layout)(const ckpt_model_config_t *mc, int world, int tp, char *err, size_t errlen);
  /* creates and loads st's part into *model; *kv_width and *local_vocab as infer_model.h says */
  int (*open)(const char *ckpt_dir, const ckpt_model_config_t *mc, const infer_stage_t *st, coll_comm_t *tp_comm,
              void **model, int *kv_width, int *local_vocab, char *err, size_t errlen);
  void (*free)(void *model);
  int (*forward_kv)(void *model, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens, const float *x_in,
                    float *out, int last_only, char *err, size_t errlen);
  void (*logits_assemble)(const void *model, const float *gathered, size_t rows, float *full);
} infer_family_t;

struct infer_model {
  const infer_family_t *fam;
  void *model;     /* gpt2_model_t or llama_model_t */
  int kv_width;    /* floats per cached position per layer */
  int local_vocab; /* logits columns of this rank */
};

static const infer_family_t gpt2_family, llama_family; /* at the end of the file */

static const infer_family_t *family_of(const ckpt_model_config_t *mc) {
  return mc->arch == CKPT_ARCH_LLAMA ? &llama_family : &gpt2_family;
}

int infer_model_check_layout(const ckpt_model_config_t *mc, int world, int tp, char *err, size_t errlen) {
  if (tp < 1) return strata_fail(err, errlen, "--tp %d must be >= 1", tp);
  return family_of(mc)->check_layout(mc, world, tp, err, errlen);
}

int infer_model_open(const char *ckpt_dir, const ckpt_model_config_t *mc, const infer_stage_t *st,
                     coll_comm_t *tp_comm, infer_model_t **out, char *err, size_t errlen) {
  *out = NULL;
  infer_model_t *m = calloc(1, sizeof *m);
  if (!m) return strata_fail(err, errlen, "out of memory for the engine's model");
  m->fam = family_of(mc);
  if (m->fam->open(ckpt_dir, mc, st, tp_comm, &m->model, &m->kv_width, &m->local_vocab, err, errlen)) {
    free(m);
    return -1;
  }
  *out = m;
  return 0;
}

void infer_model_free(infer_model_t *m) {
  if (!m) return;
  m->fam->free(m->model);
  free(m);
}

int infer_model_kv_width(const infer_model_t *m) { return m->kv_width; }
int infer_model_local_vocab(const infer_model_t *m) { return m->local_vocab; }

int infer_model_forward_kv(infer_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens,
                           const float *x_in, float *out, int last_only, char *err, size_t errlen) {
  return m->fam->forward_kv(m->model, seqs, nseq, tokens, x_in, out, last_only, err, errlen);
}

void infer_model_logits_assemble(const infer_model_t *m, const float *gathered, size_t rows, float *full) {
  m->fam->logits_assemble(m->model, gathered, rows, full);
}

/* ------------------------------------------------------------------ GPT-2 */

static int gpt2_check_layout(const ckpt_model_config_t *mc, int world, int tp, char *err, size_t errlen) {
  const gpt2_config_t *cfg = &mc->shape;
  if (cfg->heads % tp)
    return strata_fail(err, errlen,
                       "--tp %d does not divide the model's %d attention heads: each tensor-parallel rank "
                       "holds heads / T of them; use a --tp that divides %d",
                       tp, cfg->heads, cfg->heads);
  if (world % tp)
    return strata_fail(err, errlen,
                       "%d ranks cannot be split into --tp %d tensor-parallel ranks x P pipeline stages "
                       "(world = T x P); launch a multiple of %d ranks (mpirun -np %d x P)",
                       world, tp, tp, tp);
  if (world / tp > cfg->layers)
    return strata_fail(err, errlen,
                       "%d ranks with --tp %d make %d pipeline stages but the model has only %d layers: every "
                       "stage needs at least one layer; use mpirun -np %d or fewer",
                       world, tp, world / tp, cfg->layers, tp * cfg->layers);
  return 0;
}

/* Loads the shard m from the checkpoint. At T > 1 the checkpoint holds whole tensors: a whole
 * (tp = 1) copy of the stage is loaded and each tensor sliced into this rank's part
 * (gpt2_tensor_slice); the copy is freed at once. */
static int gpt2_load_weights(const char *ckpt_dir, gpt2_model_t *m, char *err, size_t errlen) {
  if (m->range.tp_size <= 1) return ckpt_load(ckpt_dir, m, NULL, NULL, NULL, err, errlen);
  gpt2_range_t whole = m->range;
  whole.tp_rank = 0;
  whole.tp_size = 1;
  gpt2_model_t *full = NULL;
  int rc = -1;
  if (gpt2_create(&m->cfg, whole, &full, err, errlen) || ckpt_load(ckpt_dir, full, NULL, NULL, NULL, err, errlen))
    goto out;
  if (full->num_tensors != m->num_tensors) {
    strata_fail(err, errlen, "internal: the whole stage has %d tensors, the tensor-parallel part %d",
                full->num_tensors, m->num_tensors);
    goto out;
  }
  for (int i = 0; i < m->num_tensors; i++) {
    const gpt2_tensor_t *tl = &m->tensors[i], *tf = &full->tensors[i];
    if (strcmp(tl->name, tf->name) || tf->numel != tl->full_numel ||
        gpt2_tensor_slice(tl, m->range.tp_rank, full->params + tf->offset, m->params + tl->offset)) {
      strata_fail(err, errlen, "internal: cannot slice tensor %s for tensor-parallel rank %d of %d", tl->name,
                  m->range.tp_rank, m->range.tp_size);
      goto out;
    }
  }
  rc = 0;
out:
  gpt2_free(full);
  return rc;
}

static int gpt2_open(const char *ckpt_dir, const ckpt_model_config_t *mc, const infer_stage_t *st,
                     coll_comm_t *tp_comm, void **model, int *kv_width, int *local_vocab, char *err, size_t errlen) {
  gpt2_range_t r = {st->layer_begin, st->layer_end, st->has_embed, st->has_head, .tp_rank = st->tp_rank,
                    .tp_size = st->tp_size};
  gpt2_model_t *m = NULL;
  if (gpt2_create(&mc->shape, r, &m, err, errlen) || gpt2_set_tp(m, tp_comm, 0, err, errlen) ||
      gpt2_load_weights(ckpt_dir, m, err, errlen)) {
    gpt2_free(m);
    return -1;
  }
  gpt2_set_matmul_dtype(m, st->bf16 ? GEMM_BF16 : GEMM_F32);
  *kv_width = gpt2_local_dim(m);
  *local_vocab = gpt2_local_vocab(m);
  *model = m;
  return 0;
}

static void gpt2_free_model(void *m) { gpt2_free(m); }

static int gpt2_fwd(void *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens, const float *x_in,
                    float *out, int last_only, char *err, size_t errlen) {
  return gpt2_forward_kv(m, seqs, nseq, tokens, x_in, out, last_only, err, errlen);
}

static void gpt2_assemble(const void *m, const float *gathered, size_t rows, float *full) {
  gpt2_logits_assemble(m, gathered, rows, full);
}

static const infer_family_t gpt2_family = {gpt2_check_layout, gpt2_open, gpt2_free_model, gpt2_fwd, gpt2_assemble};

/* ------------------------------------------------------------------ Llama */

/* The layout rules of Llama training (llama_create_range): T divides the query heads, the kv
 * heads and the SwiGLU width, T divides the world, every stage has a layer. */
static int llama_check_layout(const ckpt_model_config_t *mc, int world, int tp, char *err, size_t errlen) {
  const llama_config_t *c = &mc->llama;
  const struct {
    const char *what;
    int v;
  } div[] = {{"attention heads", c->heads}, {"key / value heads", c->kv_heads}, {"SwiGLU width (ffn)", c->ffn}};
  for (int i = 0; i < 3; i++)
    if (div[i].v % tp)
      return strata_fail(err, errlen,
                         "--tp %d does not divide the Llama model's %d %s: each tensor-parallel rank holds 1/T "
                         "of them; use a --tp that divides %d",
                         tp, div[i].v, div[i].what, div[i].v);
  if (world % tp)
    return strata_fail(err, errlen,
                       "%d ranks cannot be split into --tp %d tensor-parallel ranks x P pipeline stages "
                       "(world = T x P); launch a multiple of %d ranks (mpirun -np %d x P)",
                       world, tp, tp, tp);
  if (world / tp > c->layers)
    return strata_fail(err, errlen,
                       "%d ranks with --tp %d make %d pipeline stages but the model has only %d layers: every "
                       "stage needs at least one layer; use mpirun -np %d or fewer",
                       world, tp, world / tp, c->layers, tp * c->layers);
  return 0;
}

/* This rank's part: the layers and ends of st and its tensor-parallel rank
 * (llama_create_range), loaded by name from the checkpoint (ckpt_load_llama reads only the
 * tensors the stage holds and slices each whole tensor into the rank's part). */
static int llama_open(const char *ckpt_dir, const ckpt_model_config_t *mc, const infer_stage_t *st,
                      coll_comm_t *tp_comm, void **model, int *kv_width, int *local_vocab, char *err, size_t errlen) {
  llama_range_t r = {st->layer_begin, st->layer_end, st->has_embed, st->has_head, st->tp_rank, st->tp_size};
  llama_model_t *m = NULL;
  if (llama_create_range(&mc->llama, r, &m, err, errlen) || llama_set_tp(m, tp_comm, err, errlen) ||
      ckpt_load_llama(ckpt_dir, m, NULL, NULL, NULL, err, errlen)) {
    llama_free(m);
    return -1;
  }
  llama_set_matmul_dtype(m, st->bf16 ? GEMM_BF16 : GEMM_F32);
  *kv_width = llama_kv_dim(m);
  *local_vocab = llama_local_vocab(m);
  *model = m;
  return 0;
}

static void llama_free_model(void *m) { llama_free(m); }

static int llama_fwd(void *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens, const float *x_in,
                     float *out, int last_only, char *err, size_t errlen) {
  return llama_forward_kv(m, seqs, nseq, tokens, x_in, out, last_only, err, errlen);
}

static void llama_assemble(const void *m, const float *gathered, size_t rows, float *full) {
  llama_logits_assemble(m, gathered, rows, full);
}

static const infer_family_t llama_family = {llama_check_layout, llama_open, llama_free_model, llama_fwd,
                                            llama_assemble};
