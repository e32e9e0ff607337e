/* test_bpe_fixture -- GPT-2's byte-level BPE (worker/tokenizer/) gives exactly the token ids of
 * tiktoken's `gpt2` encoding (its JavaScript port js-tiktoken, through
 * tests/fixtures/make_bpe_fixture.mjs) on about 1 MB of prose, code, whitespace runs, digits,
 * contractions, accented, CJK and emoji text; every case decodes back to its text; the same
 * vocabulary read as vocab.json + merges.txt and as a Hugging Face tokenizer.json gives the same
 * ids; the heap merge of long pieces gives the same ids as the scan. Exact equality: token ids are integers, there is no tolerance to allow. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "bpe_impl.h" /* heap_min_bytes and the piece cache, to test the heap merge */
#include "test_util.h"
#include "tokenizer.h"

typedef struct {
  unsigned char *p;
  size_t n, off;
} reader_t;

static int rd_u32(reader_t *r, uint32_t *v) {
  if (r->off + 4 > r->n) return -1;
  *v = (uint32_t)r->p[r->off] | (uint32_t)r->p[r->off + 1] << 8 | (uint32_t)r->p[r->off + 2] << 16 |
       (uint32_t)r->p[r->off + 3] << 24;
  r->off += 4;
  return 0;
}

/* The whole gunzipped fixture. */
static unsigned char *read_gz(const char *path, size_t *len) {
  gzFile f = gzopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 22, n = 0;
  unsigned char *buf = malloc(cap);
  for (;;) {
    if (n == cap) buf = realloc(buf, cap *= 2);
    int k = gzread(f, buf + n, (unsigned)(cap - n));
    if (k <= 0) break;
    n += (size_t)k;
  }
  gzclose(f);
  *len = n;
  return buf;
}

/* Checks every case of the fixture with tokenizer t; returns the text bytes checked. */
static size_t check_fixture(tok_t *t, const char *label, int every) {
  size_t len;
  unsigned char *buf = read_gz(test_src_path("tests/fixtures/bpe_gpt2.fix.gz"), &len);
  CHECK_TRUE(buf != NULL);
  if (!buf) return 0;
  reader_t r = {buf, len, 8};
  CHECK_TRUE(len > 12 && !memcmp(buf, "SBPEFIX1", 8));
  uint32_t ncases = 0;
  CHECK_TRUE(rd_u32(&r, &ncases) == 0);
  size_t bytes = 0, tokens = 0, failed = 0;
  char err[512];
  for (uint32_t c = 0; c < ncases; c++) {
    uint32_t klen, tlen, nids;
    if (rd_u32(&r, &klen) || r.off + klen > len) break;
    const char *kind = (const char *)buf + r.off;
    r.off += klen;
    if (rd_u32(&r, &tlen) || r.off + tlen > len) break;
    const char *text = (const char *)buf + r.off;
    r.off += tlen;
    if (rd_u32(&r, &nids) || r.off + 2ull * nids > len) break;
    const unsigned char *ids = buf + r.off;
    r.off += 2ull * nids;
    if (c % (uint32_t)every) continue;
    tok_ids_t got = {0};
    test_checks++;
    if (tok_encode(t, text, tlen, 0, &got, err, sizeof err)) {
      test_fail(__FILE__, __LINE__, "%s: case %u (%.*s): %s", label, c, (int)klen, kind, err);
      continue;
    }
    size_t first_diff = got.n == nids ? (size_t)-1 : (got.n < nids ? got.n : nids);
    for (size_t i = 0; i < nids && i < got.n; i++)
      if (got.v[i] != (int32_t)(ids[2 * i] | ids[2 * i + 1] << 8)) {
        first_diff = i;
        break;
      }
    if (first_diff != (size_t)-1 && failed++ < 5) {
      size_t i = first_diff;
      test_fail(__FILE__, __LINE__, "%s: case %u (%.*s, %u bytes): %zu ids, expected %u; first difference at id %zu: %d, expected %d",
                label, c, (int)klen, kind, tlen, got.n, nids, i, i < got.n ? got.v[i] : -1,
                i < nids ? ids[2 * i] | ids[2 * i + 1] << 8 : -1);
    }
    char *back;
    size_t blen;
    test_checks++;
    if (tok_decode(t, got.v, got.n, &back, &blen, err, sizeof err) || blen != tlen || memcmp(back, text, tlen))
      test_fail(__FILE__, __LINE__, "%s: case %u (%.*s) does not decode back to its text", label, c, (int)klen, kind);
    if (back) free(back);
    bytes += tlen, tokens += nids;
    tok_ids_free(&got);
  }
  CHECK_TRUE(r.off == len || every > 1);
  if (every == 1) {
    CHECK_TRUE(bytes >= 1000000); /* the fixture's promise: at least 1 MB of text */
    printf("%s: %u cases, %zu bytes, %zu tokens identical to js-tiktoken's gpt2\n", label, ncases, bytes, tokens);
  }
  free(buf);
  return bytes;
}

/* Writes a Hugging Face tokenizer.json holding the shipped GPT-2 vocabulary and merges, with
 * `pre` as its pre_tokenizer (JSON text). */
static void write_hf_json(const char *path, const char *pre) {
  size_t vlen, mlen;
  char *vocab = test_read_file(test_src_path("data/gpt2/encoder.json"), &vlen);
  char *merges = test_read_file(test_src_path("data/gpt2/vocab.bpe"), &mlen);
  FILE *f = fopen(path, "w");
  if (!vocab || !merges || !f) {
    test_fail(__FILE__, __LINE__, "cannot write %s", path);
    return;
  }
  fprintf(f, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 50256, \"content\": \"<|endoftext|>\", \"special\": true}],\n"
             "\"normalizer\": null, \"pre_tokenizer\": %s,\n"
             "\"model\": {\"type\": \"BPE\", \"vocab\": %.*s, \"merges\": [",
          pre, (int)vlen, vocab);
  int first = 1;
  for (char *line = strtok(merges, "\n"); line; line = strtok(NULL, "\n")) {
    if (!strncmp(line, "#version", 8)) continue;
    fputs(first ? "\"" : ",\"", f);
    for (char *c = line; *c; c++) {
      if (*c == '"' || *c == '\\') fputc('\\', f);
      fputc(*c, f);
    }
    fputc('"', f);
    first = 0;
  }
  fputs("]}}\n", f);
  fclose(f);
  free(vocab);
  free(merges);
}

static void expect_ids(tok_t *t, const char *text, int allow_special, const int32_t *want, size_t n) {
  tok_ids_t ids = {0};
  char err[256];
  test_checks++;
  if (tok_encode(t, text, strlen(text), allow_special, &ids, err, sizeof err)) {
    test_fail(__FILE__, __LINE__, "encode '%s': %s", text, err);
    return;
  }
  int same = ids.n == n;
  for (size_t i = 0; same && i < n; i++) same = ids.v[i] == want[i];
  if (!same) {
    char got[512] = "";
    for (size_t i = 0; i < ids.n && strlen(got) < 400; i++) snprintf(got + strlen(got), sizeof got - strlen(got), " %d", ids.v[i]);
    test_fail(__FILE__, __LINE__, "encode '%s' (allow_special %d) gave%s", text, allow_special, got);
  }
  tok_ids_free(&ids);
}

int main(void) {
  char err[1024];
  tok_t *t = NULL;
  if (tok_load_gpt2(&t, err, sizeof err)) {
    test_fail(__FILE__, __LINE__, "loading the shipped GPT-2 vocabulary: %s", err);
    return test_finish("bpe_fixture");
  }
  CHECK_EQ_INT(tok_vocab_size(t), TOK_GPT2_VOCAB);
  CHECK_EQ_INT(tok_eot(t), TOK_GPT2_EOT);
  check_fixture(t, "encoder.json + vocab.bpe", 1);
  /* every piece of two bytes or more through the heap merge (long pieces' path), the cache
   * emptied first: the same ids */
  t->heap_min_bytes = 2;
  if (t->cache) memset(t->cache, 0, BPE_CACHE_SLOTS * sizeof *t->cache);
  check_fixture(t, "heap merge", 3);
  t->heap_min_bytes = BPE_HEAP_MIN_BYTES;

  /* special tokens: text only when allowed (tiktoken's encode with allowed_special) */
  expect_ids(t, "Hello world", 0, (const int32_t[]){15496, 995}, 2);
  expect_ids(t, "a<|endoftext|>b", 1, (const int32_t[]){64, 50256, 65}, 3);
  expect_ids(t, "<|endoftext|>", 0, (const int32_t[]){27, 91, 437, 1659, 5239, 91, 29}, 7);

  /* the same files under Hugging Face's names, and as a tokenizer.json */
  char dir[] = "/tmp/strata-bpe-XXXXXX";
  CHECK_TRUE(mkdtemp(dir) != NULL);
  char a[512], b[512];
  snprintf(a, sizeof a, "%s/vocab.json", dir);
  snprintf(b, sizeof b, "%s/merges.txt", dir);
  CHECK_TRUE(symlink(test_src_path("data/gpt2/encoder.json"), a) == 0);
  CHECK_TRUE(symlink(test_src_path("data/gpt2/vocab.bpe"), b) == 0);
  tok_t *hf = NULL;
  test_checks++;
  if (tok_load_dir(dir, &hf, err, sizeof err)) test_fail(__FILE__, __LINE__, "vocab.json + merges.txt: %s", err);
  else check_fixture(hf, "vocab.json + merges.txt", 7);
  tok_free(hf);
  unlink(a), unlink(b);

  snprintf(a, sizeof a, "%s/tokenizer.json", dir);
  write_hf_json(a, "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}");
  test_checks++;
  if (tok_load_dir(dir, &hf, err, sizeof err)) test_fail(__FILE__, __LINE__, "tokenizer.json: %s", err);
  else {
    check_fixture(hf, "tokenizer.json", 5);
    expect_ids(hf, "a<|endoftext|>b", 1, (const int32_t[]){64, 50256, 65}, 3);
    CHECK_EQ_INT(tok_eot(hf), TOK_GPT2_EOT);
  }
  tok_free(hf);

  /* a Split pre-tokenizer brings its own pattern: Llama 3's cuts numbers into 3 digits and
   * gives a space before a digit a piece of its own ("123" 10163, "45" 2231, " " 220) */
  write_hf_json(a, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                   "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
                   "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": "
                   "\"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                   "\"trim_offsets\": true, \"use_regex\": false}]}");
  test_checks++;
  if (tok_load_dir(dir, &hf, err, sizeof err)) test_fail(__FILE__, __LINE__, "tokenizer.json with Split: %s", err);
  else {
    expect_ids(hf, " 12345", 0, (const int32_t[]){220, 10163, 2231}, 3);
    expect_ids(t, " 12345", 0, (const int32_t[]){17031, 2231}, 2);
  }
  tok_free(hf);
  unlink(a);
  rmdir(dir);
  tok_free(t);
  return test_finish("bpe_fixture");
}
