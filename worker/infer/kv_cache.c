/* kv_cache.c -- per-sequence, per-stage key/value storage for generation (see kv_cache.h). */
#include "kv_cache.h"

#include <stdio.h>
#include <stdlib.h>

#include "util.h"

int kv_cache_create(int nl, int C, int cap, kv_cache_t **out, char *err, size_t errlen) {
  return kv_cache_create_dtype(nl, C, cap, 0, out, err, errlen);
}

int kv_cache_create_dtype(int nl, int C, int cap, int bf16, kv_cache_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (nl < 1 || C < 1 || cap < 1)
    return strata_fail(err, errlen, "kv cache: layers %d, width %d and positions %d must all be >= 1", nl, C, cap);
  kv_cache_t *c = calloc(1, sizeof *c);
  size_t n = (size_t)nl * (size_t)cap * (size_t)C;
  int ok = 0;
  if (c && bf16) {
    c->bf16 = 1;
    c->k16 = malloc(sizeof(uint16_t) * n);
    c->v16 = malloc(sizeof(uint16_t) * n);
    ok = c->k16 && c->v16;
  } else if (c) {
    c->k = malloc(sizeof(float) * n);
    c->v = malloc(sizeof(float) * n);
    ok = c->k && c->v;
  }
  if (!ok) {
    snprintf(err, errlen, "kv cache: out of memory for %d layers x %d positions x %d %s (x2)", nl, cap, C,
             bf16 ? "bf16 values" : "floats");
    kv_cache_free(c);
    return -1;
  }
  c->nl = nl;
  c->C = C;
  c->cap = cap;
  *out = c;
  return 0;
}

void kv_cache_free(kv_cache_t *c) {
  if (!c) return;
  free(c->k);
  free(c->v);
  free(c->k16);
  free(c->v16);
  free(c);
}

size_t kv_cache_elem_bytes(const kv_cache_t *c) { return c->bf16 ? sizeof(uint16_t) : sizeof(float); }

size_t kv_cache_bytes(const kv_cache_t *c) { return 2 * kv_cache_elem_bytes(c) * (size_t)c->nl * c->cap * c->C; }

size_t kv_cache_used_bytes(const kv_cache_t *c) {
  return 2 * kv_cache_elem_bytes(c) * (size_t)c->nl * c->n_pos * c->C;
}

gpt2_kv_seq_t kv_cache_seq(kv_cache_t *c, int n_new) {
  gpt2_kv_seq_t s = {n_new, c->n_pos, c->k, c->v, c->cap, c->k16, c->v16};
  return s;
}

void kv_cache_advance(kv_cache_t *c, int n_new) { c->n_pos += n_new; }

void kv_cache_reset(kv_cache_t *c) { c->n_pos = 0; }
