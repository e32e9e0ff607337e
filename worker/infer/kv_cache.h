/* kv_cache.h -- the keys and values one pipeline stage keeps for one sequence during generation.
 *
 * A cache covers the stage's layers [layer_begin, layer_end) and up to `cap` positions:
 * k and v are (nl, cap, C) floats (layer-major, row t of layer l at ((l * cap) + t) * C), the
 * layout gpt2_forward_kv (gpt2.h) and llama_forward_kv (llama.h) read and append to. The width
 * C is the model's cache width: C / T of GPT-2's heads on a tensor-parallel rank, kv_heads x
 * head size for Llama (grouped-query attention caches only the kv heads). n_pos counts the positions whose keys
 * and values are filled ([0, n_pos)). Storage is allocated once at create for `cap` positions
 * (the model's context), so no reallocation happens during decode.
 * A bf16 cache (kv_cache_create_dtype with bf16 = 1, for --precision bf16) stores the same
 * layout as uint16 bf16 bit patterns in k16 / v16 (k and v are NULL): half the bytes, which
 * kv_cache_bytes, kv_cache_used_bytes and the session memory budget see. The forward rounds
 * keys and values to bf16 when it appends them (gpt2_kv_seq_t).
 *
 * Usage
 *    kv_cache_t *c; kv_cache_create(nl, C, cfg.ctx, &c, err, sizeof err);
 *    gpt2_kv_seq_t s = kv_cache_seq(c, n_new);   // then gpt2_forward_kv(m, &s, 1, ...)
 *    kv_cache_advance(c, n_new);
 */
#ifndef STRATA_KV_CACHE_H
#define STRATA_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"

typedef struct {
  int nl;     /* layers of the stage */
  int C;      /* floats per position per layer (the model's cache width) */
  int cap;    /* positions of storage */
  int n_pos;  /* positions filled */
  float *k;   /* (nl, cap, C) */
  float *v;   /* (nl, cap, C) */
  int bf16;   /* 1: the cache is k16 / v16 (bf16), not k / v */
  uint16_t *k16; /* (nl, cap, C) bf16 keys of a bf16 cache */
  uint16_t *v16; /* (nl, cap, C) */
} kv_cache_t;

/* Allocates an empty cache (n_pos = 0). 0, or -1 with a message in err. */
int kv_cache_create(int nl, int C, int cap, kv_cache_t **out, char *err, size_t errlen);
/* The same, of bf16 storage when bf16 is 1 (fp32 when 0). */
int kv_cache_create_dtype(int nl, int C, int cap, int bf16, kv_cache_t **out, char *err, size_t errlen);
/* Bytes of one stored element: 4 (fp32) or 2 (bf16). */
size_t kv_cache_elem_bytes(const kv_cache_t *c);
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
