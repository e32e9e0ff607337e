/* kv_cache.h -- the keys and values one pipeline stage keeps for one sequence during generation.
 *
 * A cache covers the stage's layers [layer_begin, layer_end) and up to `cap` positions:
 * k and v are (nl, cap, C) floats (layer-major, row t of layer l at ((l * cap) + t) * C), the
 * layout gpt2_forward_kv (gpt2.h) and llama_forward_kv (llama.h) read and append to. The width
 * C is the model's cache width: C / T of GPT-2's heads on a tensor-parallel rank, kv_heads x
 * head size for Llama (grouped-query attention caches only the kv heads). n_pos counts the positions whose keys
 * and values are filled ([0, n_pos)). Storage is allocated once at create for `cap` positions
 * (the model's context), so no reallocation happens during decode.
 *
 * Usage
 *    kv_cache_t *c; kv_cache_create(nl, C, cfg.ctx, &c, err, sizeof err);
 *    gpt2_kv_seq_t s = kv_cache_seq(c, n_new);   // then gpt2_forward_kv(m, &s, 1, ...)
 *    kv_cache_advance(c, n_new);
 */
#ifndef STRATA_KV_CACHE_H
#define STRATA_KV_CACHE_H

#include <stddef.h>

#include "gpt2.h"

typedef struct {
  int nl;     /* layers of the stage */
  int C;      /* floats per position per layer (the model's cache width) */
  int cap;    /* positions of storage */
  int n_pos;  /* positions filled */
  float *k;   /* (nl, cap, C) */
  float *v;   /* (nl, cap, C) */
} kv_cache_t;

/* Allocates an empty cache (n_pos = 0). 0, or -1 with a message in err. */
int kv_cache_create(int nl, int C, int cap, kv_cache_t **out, char *err, size_t errlen);
void kv_cache_free(kv_cache_t *c); /* NULL is a no-op */
/* Bytes of storage (both k and v, all cap positions). */
size_t kv_cache_bytes(const kv_cache_t *c);
/* Bytes of the filled part only (what a session file stores). */
size_t kv_cache_used_bytes(const kv_cache_t *c);
/* The gpt2_forward_kv slice that appends n_new positions after the filled ones. */
gpt2_kv_seq_t kv_cache_seq(kv_cache_t *c, int n_new);
/* Marks n_new more positions filled (after the forward call that wrote them). */
void kv_cache_advance(kv_cache_t *c, int n_new);
/* Forgets every position (storage is kept). */
void kv_cache_reset(kv_cache_t *c);

#endif /* STRATA_KV_CACHE_H */
