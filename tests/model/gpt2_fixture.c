/* gpt2_fixture.c -- loader for the PyTorch GPT-2 fixture (see gpt2_fixture.h). */
#include "gpt2_fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "test_util.h"

static int rd_u32(const unsigned char *buf, size_t len, size_t *pos, uint32_t *out) {
  if (*pos + 4 > len) return -1;
  memcpy(out, buf + *pos, 4);
  *pos += 4;
  return 0;
}

int fx_load_file(fx_t *fx, const char *rel) {
  memset(fx, 0, sizeof *fx);
  const char *path = test_src_path(rel);
  fx->buf = test_read_file(path, &fx->len);
  if (!fx->buf) {
    fprintf(stderr, "cannot read fixture %s (set STRATA_SOURCE_DIR to the source tree)\n", path);
    return -1;
  }
  const unsigned char *b = fx->buf;
  size_t pos = 8;
  uint32_t version, n;
  if (fx->len < 16 || memcmp(b, "STRATAFX", 8) != 0 || rd_u32(b, fx->len, &pos, &version) ||
      version != 1 || rd_u32(b, fx->len, &pos, &n)) {
    fprintf(stderr, "%s: not a version-1 STRATAFX fixture\n", path);
    return -1;
  }
  fx->rec = calloc(n, sizeof *fx->rec);
  fx->nrec = (int)n;
  for (uint32_t i = 0; i < n; i++) {
    fx_record_t *r = &fx->rec[i];
    uint32_t nl, dt, nd;
    if (rd_u32(b, fx->len, &pos, &nl) || nl >= sizeof r->name || pos + nl > fx->len) goto bad;
    memcpy(r->name, b + pos, nl);
    pos += nl;
    if (rd_u32(b, fx->len, &pos, &dt) || rd_u32(b, fx->len, &pos, &nd) || nd > 4) goto bad;
    r->dtype = (int)dt;
    r->ndim = (int)nd;
    r->numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
      uint32_t v;
      if (rd_u32(b, fx->len, &pos, &v)) goto bad;
      r->dims[d] = v;
      r->numel *= v;
    }
    size_t esize = dt == 2 ? 8 : 4;
    if (dt > 2 || pos + esize * r->numel > fx->len) goto bad;
    r->data = b + pos;
    pos += esize * r->numel;
  }
  { /* records are packed unaligned in the file: copy each to an 8-byte aligned offset (UBSan) */
    size_t total = 0;
    for (int i = 0; i < fx->nrec; i++) total += (fx->rec[i].numel * (fx->rec[i].dtype == 2 ? 8 : 4) + 7) & ~(size_t)7;
    unsigned char *al = malloc(total ? total : 1);
    if (!al) goto bad;
    for (size_t i = 0, off = 0; i < (size_t)fx->nrec; i++) {
      size_t nb = fx->rec[i].numel * (fx->rec[i].dtype == 2 ? 8 : 4);
      memcpy(al + off, fx->rec[i].data, nb);
      fx->rec[i].data = al + off;
      off += (nb + 7) & ~(size_t)7;
    }
    free(fx->buf);
    fx->buf = al;
    fx->len = total;
  }
  return 0;
bad:
  fprintf(stderr, "%s: truncated or malformed fixture\n", path);
  return -1;
}

int fx_load(fx_t *fx) { return fx_load_gpt2(fx, "tests/fixtures/gpt2_small.bin"); }

int fx_load_gpt2(fx_t *fx, const char *rel) {
  if (fx_load_file(fx, rel)) return -1;
  const fx_record_t *c = fx_find(fx, "config");
  if (!c || c->numel != 7) goto bad;
  const int32_t *cv = c->data;
  fx->cfg = (gpt2_config_t){.vocab = cv[0], .ctx = cv[1], .layers = cv[2], .heads = cv[3], .dim = cv[4]};
  fx->B = cv[5];
  fx->T = cv[6];
  fx->tokens = fx_find(fx, "tokens")->data;
  fx->targets = fx_find(fx, "targets")->data;
  return 0;
bad:
  fprintf(stderr, "%s: no GPT-2 config record of 7 values\n", rel);
  return -1;
}

void fx_free(fx_t *fx) {
  free(fx->buf);
  free(fx->rec);
  memset(fx, 0, sizeof *fx);
}

const fx_record_t *fx_find(const fx_t *fx, const char *name) {
  for (int i = 0; i < fx->nrec; i++)
    if (strcmp(fx->rec[i].name, name) == 0) return &fx->rec[i];
  return NULL;
}

const float *fx_floats(const fx_t *fx, const char *name, size_t *numel) {
  const fx_record_t *r = fx_find(fx, name);
  if (!r || r->dtype != 0) return NULL;
  if (numel) *numel = r->numel;
  return r->data;
}

gpt2_model_t *fx_model(const fx_t *fx, int layer_begin, int layer_end, int has_embed, int has_head) {
  gpt2_model_t *m = NULL;
  char err[256];
  gpt2_range_t range = {layer_begin, layer_end, has_embed, has_head};
  if (gpt2_create(&fx->cfg, range, &m, err, sizeof err) != 0) {
    fprintf(stderr, "gpt2_create: %s\n", err);
    return NULL;
  }
  if (fx_copy_params(fx, "", m->tensors, m->num_tensors, m->params)) {
    gpt2_free(m);
    return NULL;
  }
  return m;
}

int fx_copy_params(const fx_t *fx, const char *prefix, const gpt2_tensor_t *tensors, int n, float *params) {
  for (int i = 0; i < n; i++) {
    const gpt2_tensor_t *t = &tensors[i];
    char nm[160];
    snprintf(nm, sizeof nm, "%sparam/%s", prefix, t->name);
    const fx_record_t *r = fx_find(fx, nm);
    if (!r || r->dtype != 0 || r->numel != t->numel || r->ndim != t->ndim || r->dims[0] != t->shape[0] ||
        (t->ndim == 2 && r->dims[1] != t->shape[1])) {
      fprintf(stderr, "fixture has no tensor %s of the model's shape\n", nm);
      return -1;
    }
    memcpy(params + t->offset, r->data, sizeof(float) * t->numel);
  }
  return 0;
}

double fx_check_grads(const fx_t *fx, const char *prefix, const gpt2_tensor_t *tensors, int n, const float *grads,
                      double tol, int relative, const char **worst_name) {
  double worst = 0;
  *worst_name = "";
  for (int i = 0; i < n; i++) {
    const gpt2_tensor_t *t = &tensors[i];
    char nm[160];
    snprintf(nm, sizeof nm, "%sgrad/%s", prefix, t->name);
    size_t numel;
    const float *ref = fx_floats(fx, nm, &numel);
    CHECK_TRUE(ref != NULL && numel == t->numel);
    if (!ref || numel != t->numel) continue;
    double d = fx_max_abs_diff(grads + t->offset, ref, numel);
    if (relative) d /= fx_max_abs(ref, numel);
    if (!(d <= tol))
      test_fail(__FILE__, __LINE__, "%sgradient %s: max |diff|%s %.3g > %.1g", prefix, t->name,
                relative ? " / max |grad|" : "", d, tol);
    test_checks++;
    if (!(d <= worst)) {
      worst = d;
      *worst_name = t->name;
    }
  }
  return worst;
}

const double *fx_doubles(const fx_t *fx, const char *name, size_t *numel) {
  static double copy[64];
  const fx_record_t *r = fx_find(fx, name);
  if (!r || r->dtype != 2 || r->numel > 64) return NULL;
  memcpy(copy, r->data, sizeof(double) * r->numel);
  if (numel) *numel = r->numel;
  return copy;
}

int fx_adamw_hparams(const fx_t *fx, const char *name, adamw_hparams_t *hp) {
  size_t n;
  const double *h = fx_doubles(fx, name, &n);
  char err[256];
  if (!h || n != 9) {
    fprintf(stderr, "fixture has no record %s of 9 AdamW hyperparameters\n", name);
    return -1;
  }
  *hp = (adamw_hparams_t){.lr = h[0], .beta1 = h[1], .beta2 = h[2], .eps = h[3], .weight_decay = h[4],
                          .grad_clip = h[5], .warmup_steps = (int)h[6], .decay_steps = (int)h[7],
                          .min_lr_ratio = h[8]};
  if (adamw_hparams_check(hp, err, sizeof err) == 0) return 0;
  fprintf(stderr, "fixture record %s: %s\n", name, err);
  return -1;
}

double fx_max_abs_diff(const float *a, const float *b, size_t n) {
  double mx = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= mx)) mx = d; /* NaN propagates as the max */
  }
  return mx;
}

double fx_max_abs(const float *a, size_t n) {
  double mx = 0.0;
  for (size_t i = 0; i < n; i++)
    if (fabs(a[i]) > mx) mx = fabs(a[i]);
  return mx;
}

double fx_rel_l2(const float *x, const float *ref, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    d += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
    s += (double)ref[i] * ref[i];
  }
  return sqrt(d / s);
}
