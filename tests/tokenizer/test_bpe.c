/* test_bpe -- the byte-level BPE tokenizer's contract beyond the reference ids
 * (test_bpe_fixture.c): decode(encode(x)) == x for arbitrary bytes (ill-formed UTF-8
 * included), long pieces, the streaming UTF-8 decoder (never half a character, U+FFFD for
 * ill-formed input), and one clear sentence for every broken vocabulary file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"
#include "test_util.h"
#include "tokenizer.h"
#include "utf8.h"

static void roundtrip(tok_t *t, const char *x, size_t n, const char *what) {
  tok_ids_t ids = {0};
  char err[256], *back = NULL;
  size_t blen = 0;
  test_checks++;
  if (tok_encode(t, x, n, 0, &ids, err, sizeof err) || tok_decode(t, ids.v, ids.n, &back, &blen, err, sizeof err)) {
    test_fail(__FILE__, __LINE__, "%s: %s", what, err);
  } else if (blen != n || memcmp(back, x, n)) {
    test_fail(__FILE__, __LINE__, "%s: %zu bytes decode back to %zu different bytes", what, n, blen);
  }
  for (size_t i = 0; i < ids.n; i++) CHECK_TRUE(ids.v[i] >= 0 && ids.v[i] < TOK_GPT2_EOT);
  free(back);
  tok_ids_free(&ids);
}

static void test_random_bytes(tok_t *t) {
  rng_t r;
  rng_seed(&r, 2024, rng_hash_str("bpe.roundtrip"));
  char buf[4096];
  static const char *const alphabet[] = {" ", "  ", "\n", "a", "Z", "9", "'s", "\xc3\xa9", "\xe4\xb8\xad",
                                         "\xf0\x9f\x98\x80", "\xe2\x80", "\xf0\x9f", "\xff", "\x80", "\xed\xa0\x80", "!"};
  for (int c = 0; c < 400; c++) {
    size_t n = rng_below(&r, sizeof buf - 8);
    if (c % 2 == 0) { /* uniform bytes */
      for (size_t i = 0; i < n; i++) buf[i] = (char)rng_below(&r, 256);
    } else { /* pieces of characters, whole and cut */
      size_t i = 0;
      while (i + 4 < n) {
        const char *s = alphabet[rng_below(&r, sizeof alphabet / sizeof alphabet[0])];
        memcpy(buf + i, s, strlen(s));
        i += strlen(s);
      }
      n = i;
    }
    char what[64];
    snprintf(what, sizeof what, "random case %d", c);
    roundtrip(t, buf, n, what);
  }
  /* long pieces: a whitespace run, a letter run, a digit run of 20000 bytes each */
  static char big[20000];
  memset(big, ' ', sizeof big);
  roundtrip(t, big, sizeof big, "20000 spaces");
  memset(big, 'a', sizeof big);
  roundtrip(t, big, sizeof big, "20000 letters");
  memset(big, '7', sizeof big);
  roundtrip(t, big, sizeof big, "20000 digits");
  roundtrip(t, "", 0, "empty text");
  roundtrip(t, "\0a\0", 3, "NUL bytes");
}

/* Feeds `in` to a fresh stream in pieces of `step` bytes; the output must equal `want`. */
static void stream_case(const char *in, size_t n, size_t step, const char *want) {
  utf8_stream_t s = {0};
  char out[256];
  size_t w = 0;
  for (size_t i = 0; i < n; i += step) {
    size_t k = n - i < step ? n - i : step;
    size_t before = w;
    w += utf8_stream_feed(&s, in + i, k, out + w);
    CHECK_TRUE(utf8_valid(out + before, w - before, NULL)); /* every emission is whole characters */
  }
  w += utf8_stream_finish(&s, out + w);
  test_checks++;
  if (w != strlen(want) || memcmp(out, want, w))
    test_fail(__FILE__, __LINE__, "stream of %zu bytes in steps of %zu: got '%.*s', expected '%s'", n, step, (int)w, out, want);
}

static void test_utf8_stream(void) {
  const char *emoji = "a\xf0\x9f\x98\x80" "b\xe4\xb8\xad"; /* a 😀 b 中 */
  for (size_t step = 1; step <= 8; step++) stream_case(emoji, strlen(emoji), step, emoji);
  /* one U+FFFD per maximal ill-formed subpart */
  stream_case("a\xff" "b", 3, 1, "a\xef\xbf\xbd" "b");
  stream_case("\xe2\x82" "A", 3, 1, "\xef\xbf\xbd" "A");               /* cut 3-byte char */
  stream_case("\xed\xa0\x80", 3, 1, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* a surrogate: 3 parts */
  stream_case("\xc0\xaf", 2, 2, "\xef\xbf\xbd\xef\xbf\xbd");           /* overlong '/' */
  stream_case("x\xf0\x9f\x98", 4, 2, "x\xef\xbf\xbd");                 /* dangling at the end */
  size_t bad = 99;
  CHECK_TRUE(utf8_valid("caf\xc3\xa9", 5, NULL));
  CHECK_TRUE(!utf8_valid("caf\xc3", 4, &bad));
  CHECK_EQ_INT(bad, 3);
  CHECK_TRUE(!utf8_valid("ab\xf4\x90\x80\x80", 6, &bad)); /* above U+10FFFF */
  CHECK_EQ_INT(bad, 2);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f) fputs(text, f), fclose(f);
}

/* A broken vocabulary is refused with a message that contains `want`. */
static void expect_load_error(const char *dir, const char *want) {
  tok_t *t = NULL;
  char err[1024] = "";
  test_checks++;
  if (tok_load_dir(dir, &t, err, sizeof err) == 0) {
    test_fail(__FILE__, __LINE__, "%s loaded; expected an error containing '%s'", dir, want);
    tok_free(t);
  } else if (!strstr(err, want) || strchr(err, '\n')) {
    test_fail(__FILE__, __LINE__, "error '%s' does not contain '%s' (or is not one line)", err, want);
  }
}

static void test_bad_files(void) {
  char dir[] = "/tmp/strata-bpebad-XXXXXX", v[600], m[600];
  CHECK_TRUE(mkdtemp(dir) != NULL);
  snprintf(v, sizeof v, "%s/vocab.json", dir);
  snprintf(m, sizeof m, "%s/merges.txt", dir);
  expect_load_error("/nonexistent/strata-tok", "does not exist");
  expect_load_error(dir, "holds none of tokenizer.json");
  write_text(v, "{\"a\": 0, ");
  write_text(m, "#version: 0.2\n");
  expect_load_error(dir, "is not valid JSON");
  write_text(v, "{\"a\": 0, \"b\": 1}");
  expect_load_error(dir, "fewer than the 256 bytes");
  /* a vocabulary of the 256 bytes only, then a merge of tokens it lacks */
  FILE *f = fopen(v, "w");
  fputc('{', f);
  for (int b = 0; b < 256; b++) {
    /* byte-to-unicode: printable bytes as themselves, the rest from U+0100 in order */
    static int next = 0x100;
    int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    int cp = printable ? b : next++;
    fprintf(f, "%s\"", b ? ", " : "");
    if (cp == '"' || cp == '\\') fputc('\\', f);
    if (cp < 0x80) fputc(cp, f);
    else fputc(0xc0 | (cp >> 6), f), fputc(0x80 | (cp & 0x3f), f);
    fprintf(f, "\": %d", b);
  }
  fputs("}", f);
  fclose(f);
  write_text(m, "#version: 0.2\nh e\n");
  expect_load_error(dir, "line 2: merge \"h e\": the merge's result is not in the vocabulary");
  write_text(m, "#version: 0.2\nhe\n");
  expect_load_error(dir, "line 2: expected a merge \"left right\"");
  write_text(m, "#version: 0.2\nq \xe4\xb8\xad\n");
  expect_load_error(dir, "names a token that is not in the vocabulary");
  write_text(m, "");
  tok_t *t = NULL;
  char err[512];
  test_checks++;
  if (tok_load_dir(dir, &t, err, sizeof err)) test_fail(__FILE__, __LINE__, "a bytes-only vocabulary: %s", err);
  else roundtrip(t, "bytes only", 10, "a vocabulary without merges");
  tok_free(t);
  unlink(m);
  unlink(v);
  snprintf(v, sizeof v, "%s/tokenizer.json", dir);
  write_text(v, "{\"model\": {\"type\": \"WordPiece\"}}");
  expect_load_error(dir, "does not hold a BPE model");
  write_text(v, "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}");
  expect_load_error(dir, "is not byte-level BPE");
  unlink(v);
  rmdir(dir);
}

int main(void) {
  char err[1024];
  tok_t *t = NULL;
  test_utf8_stream();
  test_bad_files();
  if (tok_load_gpt2(&t, err, sizeof err)) {
    test_fail(__FILE__, __LINE__, "loading the shipped GPT-2 vocabulary: %s", err);
    return test_finish("bpe");
  }
  test_random_bytes(t);
  tok_free(t);
  return test_finish("bpe");
}
