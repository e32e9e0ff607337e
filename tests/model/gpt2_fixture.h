/* gpt2_fixture.h -- reads tests/fixtures/gpt2_small.bin, the PyTorch reference written by
 * tests/fixtures/make_gpt2_fixture.py (format documented at the top of that script), and
 * builds gpt2 shards loaded with its weights. Shared by the model_ tests. */
#ifndef STRATA_TEST_GPT2_FIXTURE_H
#define STRATA_TEST_GPT2_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "adamw.h"
#include "gpt2.h"

typedef struct {
  char name[96];
  int dtype;        /* 0 float32, 1 int32, 2 float64 */
  int ndim;
  int64_t dims[4];
  size_t numel;
  const void *data; /* points into the file buffer */
} fx_record_t;

typedef struct {
  void *buf;
  size_t len;
  fx_record_t *rec;
  int nrec;
  gpt2_config_t cfg;
  int B, T;
  const int32_t *tokens, *targets; /* (B, T) */
} fx_t;

/* Loads the fixture at $STRATA_SOURCE_DIR/tests/fixtures/gpt2_small.bin; 0 on success. */
int fx_load(fx_t *fx);
/* The same for the GPT-2 fixture at $STRATA_SOURCE_DIR/<rel> (a config record of 7 values,
 * tokens, targets); 0 on success. */
int fx_load_gpt2(fx_t *fx, const char *rel);
/* Loads the records of any STRATAFX fixture at $STRATA_SOURCE_DIR/<rel> (cfg, B, T, tokens and
 * targets left zero); 0 on success. */
int fx_load_file(fx_t *fx, const char *rel);
void fx_free(fx_t *fx);
/* Record by name, NULL if absent. */
const fx_record_t *fx_find(const fx_t *fx, const char *name);
/* Float data of a record (NULL if absent or not float32). */
const float *fx_floats(const fx_t *fx, const char *name, size_t *numel);
/* Float64 data of a record, copied to an aligned array (NULL if absent or not float64). */
const double *fx_doubles(const fx_t *fx, const char *name, size_t *numel);
/* Builds a shard of the fixture's model for layers [begin, end) and copies the fixture's
 * weights into every tensor it owns (shapes checked). NULL on failure (message printed). */
gpt2_model_t *fx_model(const fx_t *fx, int layer_begin, int layer_end, int has_embed, int has_head);
/* Copies the records <prefix>param/<name> of the n tensors into params at their offsets
 * (shapes checked); 0, or -1 with a message naming the missing tensor. */
int fx_copy_params(const fx_t *fx, const char *prefix, const gpt2_tensor_t *tensors, int n, float *params);
/* Checks every tensor's gradient in grads against <prefix>grad/<name>: max |diff| <= tol, or,
 * when relative, max |diff| / max |reference| <= tol (a failed check per tensor over it). Returns
 * the worst figure and names its tensor in *worst_name. */
double fx_check_grads(const fx_t *fx, const char *prefix, const gpt2_tensor_t *tensors, int n, const float *grads,
                      double tol, int relative, const char **worst_name);
/* The AdamW hyperparameters of float64 record `name` (lr, beta1, beta2, eps, weight_decay,
 * grad_clip, warmup_steps, decay_steps, min_lr_ratio), checked; 0, or -1 with a message. */
int fx_adamw_hparams(const fx_t *fx, const char *name, adamw_hparams_t *hp);
/* max |a - b| over n floats. */
double fx_max_abs_diff(const float *a, const float *b, size_t n);
double fx_max_abs(const float *a, size_t n);
/* Relative L2 error ||x - ref|| / ||ref|| over n floats (double sums). */
double fx_rel_l2(const float *x, const float *ref, size_t n);

#endif
