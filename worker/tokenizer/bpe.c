/* bpe.c -- byte-level BPE: the token and merge tables, pre-tokenisation with PCRE2, merging by
 * rank with a per-piece cache, decoding (tokenizer.h). The file readers are in bpe_load.c. */
#include "bpe_impl.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util.h"

/* ---- byte-to-unicode (OpenAI's bytes_to_unicode) */

/* Bytes that stand for themselves: '!'..'~', 0xA1..0xAC, 0xAE..0xFF. The other 68 bytes map,
 * in increasing order, to U+0100, U+0101, ... */
static int byte_is_printable(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t bpe_byte_to_unicode(unsigned char b) {
  if (byte_is_printable(b)) return b;
  uint32_t k = 0;
  for (unsigned c = 0; c < b; c++) k += !byte_is_printable(c);
  return 0x100 + k;
}

long bpe_unicode_to_bytes(const char *s, size_t len, char *out) {
  static int16_t inverse[0x144]; /* code point -> byte, -1 = none; built once */
  static int built;
  if (!built) {
    for (int i = 0; i < 0x144; i++) inverse[i] = -1;
    for (int b = 0; b < 256; b++) inverse[bpe_byte_to_unicode((unsigned char)b)] = (int16_t)b;
    built = 1;
  }
  const unsigned char *p = (const unsigned char *)s;
  long n = 0;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    if (p[i] < 0x80) cp = p[i], i += 1;
    else if ((p[i] & 0xE0) == 0xC0 && i + 1 < len) cp = ((uint32_t)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F), i += 2;
    else return -1; /* every mapped code point is below U+0800 */
    if (cp >= 0x144 || inverse[cp] < 0) return -1;
    out[n++] = (char)inverse[cp];
  }
  return n;
}

/* ---- tables */

static uint64_t hash_bytes(const char *b, size_t n) {
  uint64_t h = XXH3_64bits(b, n);
  return h ? h : 1;
}

static size_t merge_slot(uint64_t key, size_t mask) {
  return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

int bpe_new(int n_vocab, tok_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (n_vocab < 256 || n_vocab > (1 << 24))
    return strata_fail(err, errlen, "a vocabulary of %d tokens (expected 256 to 16777216)", n_vocab);
  tok_t *t = calloc(1, sizeof *t);
  if (!t) return strata_fail(err, errlen, "out of memory for the tokenizer");
  t->n_vocab = n_vocab;
  t->eot = -1;
  t->heap_min_bytes = BPE_HEAP_MIN_BYTES;
  t->tok_off = malloc(sizeof(uint32_t) * (size_t)n_vocab);
  t->tok_len = malloc(sizeof(uint32_t) * (size_t)n_vocab);
  t->is_special = calloc((size_t)n_vocab, 1);
  size_t slots = 1;
  while (slots < 2 * (size_t)n_vocab) slots <<= 1;
  t->vocab_map = malloc(sizeof *t->vocab_map * slots);
  t->vocab_mask = slots - 1;
  if (!t->tok_off || !t->tok_len || !t->is_special || !t->vocab_map) {
    tok_free(t);
    return strata_fail(err, errlen, "out of memory for a vocabulary of %d tokens", n_vocab);
  }
  for (int i = 0; i < n_vocab; i++) t->tok_len[i] = UINT32_MAX;
  for (size_t i = 0; i < slots; i++) t->vocab_map[i].id = -1;
  for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
  *out = t;
  return 0;
}

static const char *token_ptr(const tok_t *t, int32_t id) { return t->bytes + t->tok_off[id]; }

int32_t bpe_lookup(const tok_t *t, const char *bytes, size_t len) {
  uint64_t h = hash_bytes(bytes, len);
  for (size_t s = (size_t)h & t->vocab_mask;; s = (s + 1) & t->vocab_mask) {
    const bpe_vocab_slot_t *v = &t->vocab_map[s];
    if (v->id < 0) return -1;
    if (v->hash == h && t->tok_len[v->id] == len && !memcmp(token_ptr(t, v->id), bytes, len)) return v->id;
  }
}

int bpe_add_token(tok_t *t, int32_t id, const char *bytes, size_t len, int special, char *err, size_t errlen) {
  if (id < 0 || id >= t->n_vocab) return strata_fail(err, errlen, "token id %d is outside [0, %d)", id, t->n_vocab);
  if (t->tok_len[id] != UINT32_MAX) return strata_fail(err, errlen, "token id %d is given twice", id);
  if (len == 0) return strata_fail(err, errlen, "token %d is empty", id);
  if (!special && bpe_lookup(t, bytes, len) >= 0)
    return strata_fail(err, errlen, "token %d repeats the bytes of token %d", id, bpe_lookup(t, bytes, len));
  if (t->bytes_len + len > t->bytes_cap) {
    size_t cap = t->bytes_cap ? t->bytes_cap * 2 : 1 << 20;
    while (cap < t->bytes_len + len) cap *= 2;
    char *nb = realloc(t->bytes, cap);
    if (!nb) return strata_fail(err, errlen, "out of memory for the vocabulary's bytes");
    t->bytes = nb, t->bytes_cap = cap;
  }
  if (t->bytes_len + len > UINT32_MAX) return strata_fail(err, errlen, "the vocabulary's tokens exceed 4 GiB");
  memcpy(t->bytes + t->bytes_len, bytes, len);
  t->tok_off[id] = (uint32_t)t->bytes_len;
  t->tok_len[id] = (uint32_t)len;
  t->bytes_len += len;
  if (special) {
    int32_t *ns = realloc(t->special_ids, sizeof(int32_t) * (size_t)(t->n_special + 1));
    if (!ns) return strata_fail(err, errlen, "out of memory for the special tokens");
    t->special_ids = ns;
    t->special_ids[t->n_special++] = id;
    t->is_special[id] = 1;
    return 0;
  }
  uint64_t h = hash_bytes(bytes, len);
  size_t s = (size_t)h & t->vocab_mask;
  while (t->vocab_map[s].id >= 0) s = (s + 1) & t->vocab_mask;
  t->vocab_map[s].hash = h;
  t->vocab_map[s].id = id;
  if (len == 1) t->byte_id[(unsigned char)bytes[0]] = id;
  return 0;
}

int bpe_reserve_merges(tok_t *t, size_t n, char *err, size_t errlen) {
  size_t slots = 16;
  while (slots < 2 * n) slots <<= 1;
  free(t->merges);
  t->merges = calloc(slots, sizeof *t->merges);
  if (!t->merges) return strata_fail(err, errlen, "out of memory for %zu merges", n);
  t->merges_mask = slots - 1;
  t->n_merges = 0;
  return 0;
}

/* The merge of (left, right), or NULL. */
static const bpe_merge_slot_t *find_merge(const tok_t *t, int32_t left, int32_t right) {
  uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
  for (size_t s = merge_slot(key, t->merges_mask);; s = (s + 1) & t->merges_mask) {
    const bpe_merge_slot_t *m = &t->merges[s];
    if (m->key == key) return m;
    if (m->key == 0) return NULL;
  }
}

int bpe_add_merge(tok_t *t, int32_t left, int32_t right, char *err, size_t errlen) {
  if ((size_t)t->n_merges * 2 + 2 > t->merges_mask + 1)
    return strata_fail(err, errlen, "more merges than reserved (%d)", t->n_merges);
  if (find_merge(t, left, right)) return 0; /* a repeated merge keeps its first (lower) rank */
  size_t ll = t->tok_len[left], rl = t->tok_len[right];
  char buf[1024];
  if (ll + rl > sizeof buf) return strata_fail(err, errlen, "a merged token longer than %zu bytes", sizeof buf);
  memcpy(buf, token_ptr(t, left), ll);
  memcpy(buf + ll, token_ptr(t, right), rl);
  int32_t id = bpe_lookup(t, buf, ll + rl);
  if (id < 0) return strata_fail(err, errlen, "the merge's result is not in the vocabulary");
  uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
  size_t s = merge_slot(key, t->merges_mask);
  while (t->merges[s].key != 0) s = (s + 1) & t->merges_mask;
  t->merges[s].key = key;
  t->merges[s].rank = t->n_merges++;
  t->merges[s].id = id;
  return 0;
}

int bpe_finish(tok_t *t, const char *pattern, char *err, size_t errlen) {
  for (int b = 0; b < 256; b++)
    if (t->byte_id[b] < 0)
      return strata_fail(err, errlen, "the vocabulary has no token for byte 0x%02x, so some text could not be encoded", b);
  if (!t->merges && bpe_reserve_merges(t, 0, err, errlen)) return -1;
  int ecode;
  PCRE2_SIZE eoff;
  const char *pat = pattern ? pattern : BPE_GPT2_PATTERN;
  t->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                        &ecode, &eoff, NULL);
  if (!t->re) {
    char msg[256];
    pcre2_get_error_message(ecode, (PCRE2_UCHAR *)msg, sizeof msg);
    return strata_fail(err, errlen, "the pre-tokenizer pattern does not compile at offset %zu: %s", (size_t)eoff, msg);
  }
  /* JIT when available (the interpreter gives the same matches, slower) */
  if (pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0) {
    t->mctx = pcre2_match_context_create(NULL);
    t->jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
    if (!t->mctx || !t->jit_stack) return strata_fail(err, errlen, "out of memory for the pattern's JIT stack");
    pcre2_jit_stack_assign(t->mctx, NULL, t->jit_stack);
  }
  t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
  if (!t->md) return strata_fail(err, errlen, "out of memory for the pattern's match data");
  for (int i = 0; i < t->n_special; i++) {
    size_t n;
    const char *b = tok_token_bytes(t, t->special_ids[i], &n);
    if (t->eot < 0 && ((n == 13 && !memcmp(b, "<|endoftext|>", 13)) || (n == 15 && !memcmp(b, "<|end_of_text|>", 15)) ||
                       (n == 4 && !memcmp(b, "</s>", 4))))
      t->eot = t->special_ids[i];
  }
  return 0;
}

void tok_free(tok_t *t) {
  if (!t) return;
  free(t->tok_off);
  free(t->tok_len);
  free(t->bytes);
  free(t->is_special);
  free(t->vocab_map);
  free(t->merges);
  free(t->special_ids);
  if (t->md) pcre2_match_data_free(t->md);
  if (t->mctx) pcre2_match_context_free(t->mctx);
  if (t->jit_stack) pcre2_jit_stack_free(t->jit_stack);
  if (t->re) pcre2_code_free(t->re);
  free(t->cache);
  free(t->work);
  free(t);
}

void tok_ids_free(tok_ids_t *ids) {
  free(ids->v);
  ids->v = NULL;
  ids->n = ids->cap = 0;
}

int tok_vocab_size(const tok_t *t) { return t->n_vocab; }
int32_t tok_eot(const tok_t *t) { return t->eot; }

const char *tok_token_bytes(const tok_t *t, int32_t id, size_t *len) {
  if (id < 0 || id >= t->n_vocab || t->tok_len[id] == UINT32_MAX) {
    *len = 0;
    return NULL;
  }
  *len = t->tok_len[id];
  return token_ptr(t, id);
}

/* ---- encoding */

static int ids_reserve(tok_ids_t *out, size_t more) {
  if (out->n + more <= out->cap) return 0;
  size_t cap = out->cap ? out->cap : 1024;
  while (cap < out->n + more) cap *= 2;
  int32_t *nv = realloc(out->v, sizeof(int32_t) * cap);
  if (!nv) return -1;
  out->v = nv, out->cap = cap;
  return 0;
}

/* Merges the bytes of one piece by rank into ids[0..*n): the adjacent pair of lowest rank,
 * leftmost first, until none has a merge. rank[i] is the rank of pair (i, i+1) (INT32_MAX:
 * none). Quadratic in the piece length, the fastest for words; pieces of BPE_HEAP_MIN_BYTES or
 * more go to merge_piece_heap, so a megabyte of spaces takes a fraction of a second. */
static void merge_piece(const tok_t *t, int32_t *ids, int32_t *rank, int32_t *merged, size_t *np) {
  size_t n = *np;
  for (size_t i = 0; i + 1 < n; i++) {
    const bpe_merge_slot_t *m = find_merge(t, ids[i], ids[i + 1]);
    rank[i] = m ? m->rank : INT32_MAX;
    merged[i] = m ? m->id : -1;
  }
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; i++)
      if (rank[i] < rank[best]) best = i;
    if (rank[best] == INT32_MAX) break;
    ids[best] = merged[best];
    /* drop element best+1 */
    memmove(ids + best + 1, ids + best + 2, sizeof(int32_t) * (n - best - 2));
    if (best + 2 < n) {
      memmove(rank + best + 1, rank + best + 2, sizeof(int32_t) * (n - best - 3));
      memmove(merged + best + 1, merged + best + 2, sizeof(int32_t) * (n - best - 3));
    }
    n--;
    for (size_t i = best ? best - 1 : 0; i <= best && i + 1 < n; i++) {
      const bpe_merge_slot_t *m = find_merge(t, ids[i], ids[i + 1]);
      rank[i] = m ? m->rank : INT32_MAX;
      merged[i] = m ? m->id : -1;
    }
  }
  *np = n;
}

/* A candidate merge: the pair starting at symbol `pos` (its original byte offset). */
typedef struct {
  int32_t rank, pos, left, right;
} bpe_cand_t;

static int cand_less(const bpe_cand_t *a, const bpe_cand_t *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_cand_t *h, size_t *n, bpe_cand_t c) {
  size_t i = (*n)++;
  while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = c;
}

static bpe_cand_t heap_pop(bpe_cand_t *h, size_t *n) {
  bpe_cand_t top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
    if (!cand_less(&h[c], &last)) break;
    h[i] = h[c];
    i = c;
  }
  if (*n > 0) h[i] = last;
  return top;
}

/* The same merges as merge_piece (lowest rank, leftmost first), for long pieces: symbols in a
 * linked list over their byte offsets, candidate pairs in a min-heap by (rank, offset); a
 * popped candidate whose symbols have changed since it was pushed is skipped. */
static int merge_piece_heap(const tok_t *t, int32_t *ids, size_t *np) {
  size_t n = *np, nh = 0;
  int32_t *next = malloc(sizeof(int32_t) * n), *prev = malloc(sizeof(int32_t) * n);
  bpe_cand_t *heap = malloc(sizeof(bpe_cand_t) * 2 * n); /* n - 1 pairs, plus 2 per merge */
  if (!next || !prev || !heap) {
    free(next), free(prev), free(heap);
    return -1;
  }
  for (size_t i = 0; i < n; i++) next[i] = i + 1 < n ? (int32_t)i + 1 : -1, prev[i] = (int32_t)i - 1;
  for (size_t i = 0; i + 1 < n; i++) {
    const bpe_merge_slot_t *m = find_merge(t, ids[i], ids[i + 1]);
    if (m) heap_push(heap, &nh, (bpe_cand_t){m->rank, (int32_t)i, ids[i], ids[i + 1]});
  }
  while (nh > 0) {
    bpe_cand_t c = heap_pop(heap, &nh);
    int32_t i = c.pos, j = next[i];
    if (ids[i] != c.left || j < 0 || ids[j] != c.right) continue; /* stale */
    ids[i] = find_merge(t, c.left, c.right)->id;
    ids[j] = -1; /* gone */
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    const bpe_merge_slot_t *m;
    if (prev[i] >= 0 && (m = find_merge(t, ids[prev[i]], ids[i])))
      heap_push(heap, &nh, (bpe_cand_t){m->rank, prev[i], ids[prev[i]], ids[i]});
    if (next[i] >= 0 && (m = find_merge(t, ids[i], ids[next[i]])))
      heap_push(heap, &nh, (bpe_cand_t){m->rank, i, ids[i], ids[next[i]]});
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) ids[w++] = ids[i];
  *np = w;
  free(next), free(prev), free(heap);
  return 0;
}

/* Encodes one piece (bytes p[0..n)), appending its ids. */
static int encode_piece(tok_t *t, const char *p, size_t n, tok_ids_t *out) {
  if (ids_reserve(out, n)) return -1;
  if (n == 1) {
    out->v[out->n++] = t->byte_id[(unsigned char)p[0]];
    return 0;
  }
  if (t->ignore_merges) {
    int32_t id = bpe_lookup(t, p, n);
    if (id >= 0) {
      out->v[out->n++] = id;
      return 0;
    }
  }
  bpe_cache_entry_t *ce = NULL;
  uint64_t h = 0;
  if (n <= BPE_CACHE_PIECE_BYTES) {
    if (!t->cache) {
      if (!(t->cache = aligned_alloc(64, BPE_CACHE_SLOTS * sizeof *t->cache))) return -1;
      memset(t->cache, 0, BPE_CACHE_SLOTS * sizeof *t->cache);
    }
    h = hash_bytes(p, n);
    ce = &t->cache[h & (BPE_CACHE_SLOTS - 1)];
    if (ce->hash == h && ce->len == n && !memcmp(ce->bytes, p, n)) {
      memcpy(out->v + out->n, ce->ids, sizeof(int32_t) * ce->n_ids);
      out->n += ce->n_ids;
      return 0;
    }
  }
  if (t->work_cap < 3 * n) {
    int32_t *nw = realloc(t->work, sizeof(int32_t) * 3 * n);
    if (!nw) return -1;
    t->work = nw, t->work_cap = 3 * n;
  }
  int32_t *ids = out->v + out->n;
  for (size_t i = 0; i < n; i++) ids[i] = t->byte_id[(unsigned char)p[i]];
  size_t m = n;
  if (n >= t->heap_min_bytes) {
    if (merge_piece_heap(t, ids, &m)) return -1;
  } else {
    merge_piece(t, ids, t->work, t->work + n, &m);
  }
  out->n += m;
  if (ce && m <= BPE_CACHE_IDS) {
    ce->hash = h;
    ce->len = (uint8_t)n;
    ce->n_ids = (uint8_t)m;
    memcpy(ce->bytes, p, n);
    memcpy(ce->ids, ids, sizeof(int32_t) * m);
  }
  return 0;
}

/* Pre-tokenises text[0..n) (no special tokens in it) and encodes every piece. Bytes the
 * pattern does not match (ill-formed UTF-8) are pieces of their own. */
static int encode_ordinary(tok_t *t, const char *text, size_t n, tok_ids_t *out, char *err, size_t errlen) {
  size_t pos = 0;
  while (pos < n) {
    int rc = t->mctx ? pcre2_jit_match(t->re, (PCRE2_SPTR)text, n, pos, 0, t->md, t->mctx)
                     : pcre2_match(t->re, (PCRE2_SPTR)text, n, pos, 0, t->md, NULL);
    size_t s = n, e = n;
    if (rc >= 0) {
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
      s = ov[0], e = ov[1];
    } else if (rc != PCRE2_ERROR_NOMATCH) {
      char msg[256];
      pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
      return strata_fail(err, errlen, "pre-tokenisation failed at byte %zu: %s", pos, msg);
    }
    if (s > pos && encode_piece(t, text + pos, s - pos, out)) goto oom;
    if (e == s && s < n) e = s + 1; /* an empty match (a custom pattern): move on one byte */
    if (e > s && encode_piece(t, text + s, e - s, out)) goto oom;
    pos = e;
  }
  return 0;
oom:
  return strata_fail(err, errlen, "out of memory for the token ids of %zu bytes of text", n);
}

/* The first special token in text[0..n): its offset (n if none) and id. */
static size_t find_special(const tok_t *t, const char *text, size_t n, int32_t *id) {
  size_t best = n;
  for (int i = 0; i < t->n_special; i++) {
    size_t len;
    const char *b = tok_token_bytes(t, t->special_ids[i], &len);
    const char *hit = memmem(text, best, b, len);
    if (hit && (size_t)(hit - text) < best) best = (size_t)(hit - text), *id = t->special_ids[i];
  }
  return best;
}

int tok_encode(tok_t *t, const char *text, size_t n, int allow_special, tok_ids_t *out, char *err, size_t errlen) {
  if (!allow_special || t->n_special == 0) return encode_ordinary(t, text, n, out, err, errlen);
  while (n > 0) {
    int32_t id = -1;
    size_t at = find_special(t, text, n, &id);
    if (encode_ordinary(t, text, at, out, err, errlen)) return -1;
    if (at == n) break;
    if (ids_reserve(out, 1)) return strata_fail(err, errlen, "out of memory for token ids");
    out->v[out->n++] = id;
    size_t len;
    tok_token_bytes(t, id, &len);
    text += at + len, n -= at + len;
  }
  return 0;
}

/* ---- decoding */

int tok_decode(const tok_t *t, const int32_t *ids, size_t n, char **text, size_t *len, char *err, size_t errlen) {
  *text = NULL, *len = 0;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    size_t l;
    if (!tok_token_bytes(t, ids[i], &l))
      return strata_fail(err, errlen, "token id %d (position %zu) is not in the vocabulary of %d tokens", ids[i], i,
                         t->n_vocab);
    total += l;
  }
  char *buf = malloc(total + 1);
  if (!buf) return strata_fail(err, errlen, "out of memory for %zu bytes of decoded text", total);
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    size_t l;
    const char *b = tok_token_bytes(t, ids[i], &l);
    memcpy(buf + w, b, l);
    w += l;
  }
  buf[w] = '\0';
  *text = buf, *len = w;
  return 0;
}
