/* bpe_impl.h -- the tokenizer's tables, shared by bpe.c (building, encoding, decoding) and
 * bpe_load.c (the file readers). Private to worker/tokenizer/. */
#ifndef STRATA_BPE_IMPL_H
#define STRATA_BPE_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* GPT-2's pre-tokenisation pattern (tokenizer.h). */
#define BPE_GPT2_PATTERN \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Pieces up to this many bytes are cached (longer ones are rare and would crowd it). */
#define BPE_CACHE_PIECE_BYTES 22 /* with BPE_CACHE_IDS: an entry is one 64-byte cache line */
#define BPE_CACHE_IDS 8
#define BPE_CACHE_SLOTS (1u << 16) /* direct-mapped: a new piece replaces the one in its slot */
/* Pieces shorter than this merge by scanning all pairs per merge (quadratic, fastest for
 * words); longer ones (whitespace runs, long numbers) through a heap, O(n log n). */
#define BPE_HEAP_MIN_BYTES 128

typedef struct __attribute__((aligned(64))) {
  uint64_t hash;                      /* XXH3 of the piece; 0 = empty */
  uint8_t len;                        /* piece bytes */
  uint8_t n_ids;                      /* its tokens */
  char bytes[BPE_CACHE_PIECE_BYTES];  /* the piece */
  int32_t ids[BPE_CACHE_IDS];         /* its tokens */
} bpe_cache_entry_t;

typedef struct {
  uint64_t key;  /* (left id << 32) | right id, + 1 (0 = empty slot) */
  int32_t rank;  /* merge priority: lower merges first */
  int32_t id;    /* the merged token */
} bpe_merge_slot_t;

typedef struct {
  uint64_t hash; /* XXH3 of the token's bytes; slots with id < 0 are empty */
  int32_t id;
} bpe_vocab_slot_t;

struct tok {
  int n_vocab;          /* largest id + 1 */
  uint32_t *tok_off;    /* (n_vocab) offset of each token's bytes in `bytes`; */
  uint32_t *tok_len;    /* (n_vocab) and their length; UINT32_MAX = unused id */
  char *bytes;          /* every token's bytes, back to back */
  size_t bytes_len, bytes_cap;
  uint8_t *is_special;  /* (n_vocab) 1 for a special token */
  int32_t byte_id[256]; /* the token of each single byte */
  int32_t eot;          /* end-of-text token, or -1 */
  int ignore_merges;    /* tokenizer.json: a piece that is a whole token is that token */

  bpe_vocab_slot_t *vocab_map; /* bytes -> id of ordinary tokens, open addressing */
  size_t vocab_mask;           /* slots - 1 */
  bpe_merge_slot_t *merges;    /* (left, right) -> rank, merged id */
  size_t merges_mask;
  int n_merges;

  int32_t *special_ids; /* the special tokens, for allow_special */
  int n_special;

  pcre2_code *re;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit_stack;

  size_t heap_min_bytes;    /* pieces this long or longer merge through a heap (BPE_HEAP_MIN_BYTES) */
  bpe_cache_entry_t *cache; /* (BPE_CACHE_SLOTS), allocated on first use */
  int32_t *work;            /* scratch for merging a piece: ids and ranks */
  size_t work_cap;
};

/* Building (bpe.c): tok_new, then tok_add_token for every token, tok_add_merge for every
 * merge in rank order, tok_finish. Each returns 0 or -1 with err. */
int bpe_new(int n_vocab, tok_t **out, char *err, size_t errlen);
int bpe_add_token(tok_t *t, int32_t id, const char *bytes, size_t len, int special, char *err, size_t errlen);
/* The id of an ordinary token's bytes, or -1. */
int32_t bpe_lookup(const tok_t *t, const char *bytes, size_t len);
/* Adds merge (left, right) with the next rank; the merged token must exist. */
int bpe_add_merge(tok_t *t, int32_t left, int32_t right, char *err, size_t errlen);
/* Compiles `pattern` (NULL: GPT-2's), checks every byte has a token, sizes the tables. */
int bpe_finish(tok_t *t, const char *pattern, char *err, size_t errlen);
/* Sizes the merge table for n merges (call before the first bpe_add_merge). */
int bpe_reserve_merges(tok_t *t, size_t n, char *err, size_t errlen);

/* GPT-2's byte-to-unicode map: the code point that stands for byte b in vocabulary files. */
uint32_t bpe_byte_to_unicode(unsigned char b);
/* Decodes a vocabulary string (UTF-8 of byte-to-unicode code points) into bytes (out needs
 * room for len bytes). Returns the byte count, or -1 when a character stands for no byte. */
long bpe_unicode_to_bytes(const char *s, size_t len, char *out);

#endif /* STRATA_BPE_IMPL_H */
