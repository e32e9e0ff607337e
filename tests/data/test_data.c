/* test_data.c -- the data loader as a specification: raw bytes and llm.c token shards are read
 * exactly, every malformed shard is refused with a message naming the failed check, batches
 * follow llm.c's B*T+1 layout, the training order is a pure function of (seed, step) that
 * visits every window once per epoch, and any slicing of a global batch into replica pieces
 * reproduces the single-rank batch element for element. Reference values come from the bytes
 * the test itself wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "test_util.h"

static char tmpdir[256];

static const char *tpath(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
  return buf;
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

/* llm.c shard: header (magic, version, count) then uint16 tokens; extra/missing bytes on demand. */
static void write_shard(const char *path, int magic, int version, int count_in_header,
                        const uint16_t *tok, size_t ntok, size_t extra_bytes) {
  int32_t hdr[256] = {0};
  hdr[0] = magic;
  hdr[1] = version;
  hdr[2] = count_in_header;
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fwrite(hdr, 4, 256, f);
  fwrite(tok, 2, ntok, f);
  for (size_t i = 0; i < extra_bytes; i++) fputc(0, f);
  fclose(f);
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* Opening must fail and the message must contain `want`. */
static void expect_open_fails(const char *path, data_kind_t kind, const char *want) {
  data_set_t *ds = NULL;
  char err[1024] = "";
  int rc = data_open(path, kind, &ds, err, sizeof err);
  CHECK_EQ_INT(rc, -1);
  CHECK_TRUE(ds == NULL);
  if (!contains(err, want)) test_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", err, want);
  if (rc == 0) data_close(ds);
}

static void test_bytes_file(void) {
  uint8_t text[1000];
  for (int i = 0; i < 1000; i++) text[i] = (uint8_t)(i * 7 + 3);
  write_bytes(tpath("bytes.txt"), text, sizeof text);
  data_set_t *ds;
  char err[512];
  CHECK_EQ_INT(data_open(tpath("bytes.txt"), DATA_KIND_AUTO, &ds, err, sizeof err), 0);
  CHECK_EQ_INT(data_kind(ds), DATA_KIND_BYTES);
  CHECK_EQ_INT(data_vocab(ds), 256);
  CHECK_EQ_INT(data_num_tokens(ds, DATA_ALL), 1000);
  /* the validation split is the last floor(N/10) tokens */
  CHECK_EQ_INT(data_num_tokens(ds, DATA_TRAIN), 900);
  CHECK_EQ_INT(data_num_tokens(ds, DATA_VAL), 100);
  /* llm.c layout: batch j of B x T reads tokens [j*B*T, j*B*T + B*T + 1) */
  int B = 4, T = 8;
  int32_t in[32], tg[32];
  for (uint64_t j = 0; j < 3; j++) {
    CHECK_EQ_INT(data_fetch_sequential(ds, DATA_ALL, j, B, T, in, tg, err, sizeof err), 0);
    for (int i = 0; i < B * T; i++) {
      CHECK_EQ_INT(in[i], text[j * 32 + i]);
      CHECK_EQ_INT(tg[i], text[j * 32 + i + 1]);
    }
  }
  /* validation batch 0 starts at token 900 */
  CHECK_EQ_INT(data_fetch_sequential(ds, DATA_VAL, 0, 2, 8, in, tg, err, sizeof err), 0);
  CHECK_EQ_INT(in[0], text[900]);
  CHECK_EQ_INT(tg[15], text[916]);
  /* 99 usable positions in the val split hold floor(99 / 16) = 6 batches of 2 x 8 */
  CHECK_EQ_INT(data_num_sequential_batches(ds, DATA_VAL, 2, 8), 6);
  CHECK_EQ_INT(data_fetch_sequential(ds, DATA_VAL, 6, 2, 8, in, tg, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "past the end"));
  data_close(ds);
}

static void test_shard_file(void) {
  enum { N = 5000 };
  static uint16_t tok[N];
  for (int i = 0; i < N; i++) tok[i] = (uint16_t)((i * 7919u) % DATA_GPT2_VOCAB);
  write_shard(tpath("tok.bin"), DATA_SHARD_MAGIC, 1, N, tok, N, 0);
  data_set_t *ds;
  char err[512];
  CHECK_EQ_INT(data_open(tpath("tok.bin"), DATA_KIND_AUTO, &ds, err, sizeof err), 0);
  CHECK_EQ_INT(data_kind(ds), DATA_KIND_TOKENS);
  CHECK_EQ_INT(data_vocab(ds), 50257);
  CHECK_EQ_INT(data_num_tokens(ds, DATA_ALL), N);
  int32_t in[64], tg[64];
  CHECK_EQ_INT(data_fetch_sequential(ds, DATA_ALL, 5, 4, 16, in, tg, err, sizeof err), 0);
  for (int i = 0; i < 64; i++) {
    CHECK_EQ_INT(in[i], tok[5 * 64 + i]);
    CHECK_EQ_INT(tg[i], tok[5 * 64 + i + 1]);
  }
  data_close(ds);
  /* the magic alone identifies a shard, whatever the name */
  write_shard(tpath("tok.data"), DATA_SHARD_MAGIC, 1, N, tok, N, 0);
  CHECK_EQ_INT(data_open(tpath("tok.data"), DATA_KIND_AUTO, &ds, err, sizeof err), 0);
  CHECK_EQ_INT(data_kind(ds), DATA_KIND_TOKENS);
  data_close(ds);
  /* a separate validation file (llm.c's *_val.bin) becomes the validation split */
  write_shard(tpath("val.bin"), DATA_SHARD_MAGIC, 1, 300, tok + 100, 300, 0);
  char train_path[512];
  snprintf(train_path, sizeof train_path, "%s", tpath("tok.bin")); /* tpath's buffer is static */
  CHECK_EQ_INT(data_open_pair(train_path, tpath("val.bin"), DATA_KIND_AUTO, &ds, err, sizeof err), 0);
  CHECK_EQ_INT(data_num_tokens(ds, DATA_TRAIN), N);
  CHECK_EQ_INT(data_num_tokens(ds, DATA_VAL), 300);
  CHECK_EQ_INT(data_fetch_sequential(ds, DATA_VAL, 0, 1, 10, in, tg, err, sizeof err), 0);
  CHECK_EQ_INT(in[0], tok[100]);
  data_close(ds);
  /* llm.c naming: x_train.bin finds x_val.bin beside it; without it, the last 10% validate */
  write_shard(tpath("tiny_train.bin"), DATA_SHARD_MAGIC, 1, N, tok, N, 0);
  snprintf(train_path, sizeof train_path, "%s", tpath("tiny_train.bin"));
  CHECK_EQ_INT(data_open(train_path, DATA_KIND_AUTO, &ds, err, sizeof err), 0);
  CHECK_TRUE(data_val_path(ds) == NULL);
  CHECK_EQ_INT(data_num_tokens(ds, DATA_VAL), N / 10);
  data_close(ds);
  write_shard(tpath("tiny_val.bin"), DATA_SHARD_MAGIC, 1, 300, tok + 100, 300, 0);
  CHECK_EQ_INT(data_open(train_path, DATA_KIND_AUTO, &ds, err, sizeof err), 0);
  CHECK_TRUE(data_val_path(ds) && strstr(data_val_path(ds), "tiny_val.bin"));
  CHECK_EQ_INT(data_num_tokens(ds, DATA_TRAIN), N);
  CHECK_EQ_INT(data_num_tokens(ds, DATA_VAL), 300);
  data_close(ds);
}

static void test_bad_files(void) {
  uint16_t tok[100];
  for (int i = 0; i < 100; i++) tok[i] = (uint16_t)i;
  write_shard(tpath("magic.bin"), 12345, 1, 100, tok, 100, 0);
  expect_open_fails(tpath("magic.bin"), DATA_KIND_AUTO, "magic");
  write_shard(tpath("version.bin"), DATA_SHARD_MAGIC, 2, 100, tok, 100, 0);
  expect_open_fails(tpath("version.bin"), DATA_KIND_AUTO, "version 2");
  /* header counts 100 tokens, only 60 present: 1024 + 200 expected */
  write_shard(tpath("trunc.bin"), DATA_SHARD_MAGIC, 1, 100, tok, 60, 0);
  expect_open_fails(tpath("trunc.bin"), DATA_KIND_AUTO, "should be 1224 bytes");
  expect_open_fails(tpath("trunc.bin"), DATA_KIND_AUTO, "truncated");
  write_shard(tpath("long.bin"), DATA_SHARD_MAGIC, 1, 100, tok, 100, 6);
  expect_open_fails(tpath("long.bin"), DATA_KIND_AUTO, "trailing bytes");
  write_bytes(tpath("hdr.bin"), tok, 100); /* shorter than the 1024-byte header */
  expect_open_fails(tpath("hdr.bin"), DATA_KIND_AUTO, "shorter than its 1024-byte header");
  tok[50] = 60000;
  write_shard(tpath("vocab.bin"), DATA_SHARD_MAGIC, 1, 100, tok, 100, 0);
  expect_open_fails(tpath("vocab.bin"), DATA_KIND_AUTO, "token 50 is 60000");
  write_bytes(tpath("empty.txt"), "", 0);
  expect_open_fails(tpath("empty.txt"), DATA_KIND_AUTO, "empty");
  write_bytes(tpath("empty.bin"), "", 0);
  expect_open_fails(tpath("empty.bin"), DATA_KIND_AUTO, "empty");
  write_shard(tpath("zero.bin"), DATA_SHARD_MAGIC, 1, 0, tok, 0, 0); /* a header and no tokens */
  expect_open_fails(tpath("zero.bin"), DATA_KIND_AUTO, "holds 0 tokens");
  expect_open_fails(tpath("missing.txt"), DATA_KIND_AUTO, "cannot open");
  /* an explicit kind overrides the name: a text file is not a shard */
  write_bytes(tpath("text.txt"), "plain text that is long enough to be anything", 46);
  expect_open_fails(tpath("text.txt"), DATA_KIND_TOKENS, "shorter than its 1024-byte header");
  /* too small for one batch of T+1 tokens */
  data_set_t *ds;
  char err[512];
  CHECK_EQ_INT(data_open(tpath("text.txt"), DATA_KIND_BYTES, &ds, err, sizeof err), 0);
  CHECK_EQ_INT(data_check_batch(ds, DATA_ALL, 1, 45, err, sizeof err), 0); /* 46 = 45 + 1 fits */
  CHECK_EQ_INT(data_check_batch(ds, DATA_ALL, 1, 46, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "too few for one batch"));
  int32_t in[64], tg[64];
  CHECK_EQ_INT(data_fetch(ds, DATA_TRAIN, 1, 0, 2, 32, 0, 2, in, tg, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "training split"));
  data_close(ds);
}

/* Training order: the global batch of a step is a window of batch*T+1 tokens at
 * data_batch_start; fetch returns exactly that; the order is deterministic and a permutation. */
static void test_order(void) {
  enum { N = 10007 };
  static uint8_t text[N];
  uint64_t x = 12345;
  for (int i = 0; i < N; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    text[i] = (uint8_t)(x >> 56);
  }
  write_bytes(tpath("order.txt"), text, N);
  data_set_t *ds;
  char err[512];
  CHECK_EQ_INT(data_open(tpath("order.txt"), DATA_KIND_AUTO, &ds, err, sizeof err), 0);
  int batch = 6, T = 16;
  size_t ntrain = data_num_tokens(ds, DATA_TRAIN); /* 10007 - 1000 = 9007 */
  CHECK_EQ_INT(ntrain, 9007);
  uint64_t W = data_windows_per_epoch(ds, DATA_TRAIN, batch, T);
  CHECK_EQ_INT(W, (9007 - 1) / 96);
  int32_t whole_in[96], whole_tg[96], in[96], tg[96];
  /* two epochs: every window index (start - shift) / span appears once per epoch */
  for (uint64_t epoch = 0; epoch < 2; epoch++) {
    char *seen = calloc(W, 1);
    size_t shift0 = 0;
    for (uint64_t k = 0; k < W; k++) {
      uint64_t step = epoch * W + k;
      size_t start;
      CHECK_EQ_INT(data_batch_start(ds, DATA_TRAIN, 42, step, batch, T, &start, err, sizeof err), 0);
      CHECK_TRUE(start + 96 + 1 <= ntrain);
      size_t shift = start % 96;
      if (k == 0) shift0 = shift;
      CHECK_EQ_INT(shift, shift0); /* one shift per epoch */
      size_t w = start / 96;
      CHECK_TRUE(w < W && !seen[w]);
      if (w < W) seen[w] = 1;
      /* the fetched global batch is the b*T+1 window at start */
      CHECK_EQ_INT(data_fetch(ds, DATA_TRAIN, 42, step, batch, T, 0, batch, whole_in, whole_tg, err, sizeof err), 0);
      for (int i = 0; i < 96; i++) {
        CHECK_EQ_INT(whole_in[i], text[start + i]);
        CHECK_EQ_INT(whole_tg[i], text[start + i + 1]);
      }
    }
    free(seen);
  }
  /* determinism: the same (seed, step) gives the same batch; another seed another order */
  int differ = 0;
  for (uint64_t step = 0; step < 20; step++) {
    size_t a, b, c;
    data_batch_start(ds, DATA_TRAIN, 7, step, batch, T, &a, err, sizeof err);
    data_batch_start(ds, DATA_TRAIN, 7, step, batch, T, &b, err, sizeof err);
    data_batch_start(ds, DATA_TRAIN, 8, step, batch, T, &c, err, sizeof err);
    CHECK_EQ_INT(a, b);
    differ += a != c;
  }
  CHECK_TRUE(differ >= 10);
  /* sharding equivalence: replicas' slices concatenate to the single-rank batch */
  int splits[][4] = {{1, 1, 1, 1}, {2, 2, 2, 0}, {3, 3, 0, 0}, {1, 5, 0, 0}, {4, 2, 0, 0}};
  for (uint64_t step = 0; step < 25; step += 4) {
    CHECK_EQ_INT(data_fetch(ds, DATA_TRAIN, 99, step, batch, T, 0, batch, whole_in, whole_tg, err, sizeof err), 0);
    for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
      int first = 0;
      for (int p = 0; p < 4 && splits[s][p]; p++) {
        int n = splits[s][p];
        if (first + n > batch) n = batch - first;
        CHECK_EQ_INT(data_fetch(ds, DATA_TRAIN, 99, step, batch, T, first, n, in + first * T,
                                tg + first * T, err, sizeof err), 0);
        first += n;
      }
      if (first < batch) /* the remainder as one last replica */
        data_fetch(ds, DATA_TRAIN, 99, step, batch, T, first, batch - first, in + first * T,
                   tg + first * T, err, sizeof err);
      CHECK_TRUE(memcmp(in, whole_in, sizeof in) == 0);
      CHECK_TRUE(memcmp(tg, whole_tg, sizeof tg) == 0);
    }
  }
  /* a slice outside the global batch is refused */
  CHECK_EQ_INT(data_fetch(ds, DATA_TRAIN, 1, 0, batch, T, 4, 3, in, tg, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "not inside the global batch"));
  data_close(ds);
}

/* The committed default corpus opens as bytes, is a few MB, and is plain ASCII. */
static void test_default_corpus(void) {
  data_set_t *ds;
  char err[512];
  const char *p = test_src_path(DATA_DEFAULT_CORPUS);
  CHECK_EQ_INT(data_open(p, DATA_KIND_AUTO, &ds, err, sizeof err), 0);
  if (!ds) {
    test_fail(__FILE__, __LINE__, "%s", err);
    return;
  }
  CHECK_EQ_INT(data_kind(ds), DATA_KIND_BYTES);
  CHECK_TRUE(data_num_tokens(ds, DATA_ALL) > 2000000);
  /* normalised to 7-bit ASCII: every token is below 128 */
  int32_t in[8 * 64], tg[8 * 64];
  int max_tok = 0;
  for (uint64_t j = 0; j < 200; j++) {
    data_fetch_sequential(ds, DATA_ALL, j * 97, 8, 64, in, tg, err, sizeof err);
    for (int i = 0; i < 8 * 64; i++) max_tok = in[i] > max_tok ? in[i] : max_tok;
  }
  CHECK_TRUE(max_tok < 128 && max_tok > 32);
  data_close(ds);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/strata_data_test_XXXXXX");
  if (!mkdtemp(tmpdir)) return 2;
  test_bytes_file();
  test_shard_file();
  test_bad_files();
  test_order();
  test_default_corpus();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return test_finish("data_loader");
}
