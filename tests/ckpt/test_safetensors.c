/* test_safetensors.c -- the safetensors writer produces the documented byte layout and reads
 * back bit for bit; the reader refuses each malformed file (written byte by byte here, so the
 * reference is the format description, not our writer) with a message naming the tensor or
 * field; the sharded-checkpoint index round-trips and rejects file names that escape the
 * directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "safetensors.h"
#include "test_util.h"

static char tmpdir[256];

static const char *tpath(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
  return buf;
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* A file image: 8-byte LE header length, the header text, then `data_len` bytes 0..255. */
static void write_raw(const char *path, uint64_t declared_len, const char *header, size_t data_len) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  for (int i = 0; i < 8; i++) fputc((int)((declared_len >> (8 * i)) & 0xff), f);
  fwrite(header, 1, strlen(header), f);
  for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xff), f);
  fclose(f);
}

static void write_hdr(const char *path, const char *header, size_t data_len) {
  write_raw(path, strlen(header), header, data_len);
}

static void expect_refused(const char *name, const char *want1, const char *want2) {
  st_file_t *f = NULL;
  char err[1024] = "";
  int rc = st_open(tpath(name), &f, err, sizeof err);
  CHECK_EQ_INT(rc, -1);
  CHECK_TRUE(f == NULL);
  if (!contains(err, want1) || (want2 && !contains(err, want2)))
    test_fail(__FILE__, __LINE__, "%s: error \"%s\" lacks \"%s\"%s%s", name, err, want1,
              want2 ? " / " : "", want2 ? want2 : "");
  if (!contains(err, name)) test_fail(__FILE__, __LINE__, "error \"%s\" does not name the file", err);
  if (getenv("STRATA_TEST_VERBOSE")) printf("%s\n", err);
  if (rc == 0) st_close(f);
}

static void test_round_trip(void) {
  float a[6] = {1.5f, -2.25f, 3.0e-7f, 1e30f, -0.0f, 42.0f};
  int32_t b[4] = {1, -2, 2147483647, -2147483647 - 1};
  int64_t c[3] = {1, -1, 0x123456789abcdefll};
  uint16_t h[5] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000}; /* as BF16 and F16 bit patterns */
  st_tensor_desc_t t[] = {
      {"h.0.attn.c_attn.weight", ST_F32, 2, {2, 3}, a},
      {"ints", ST_I32, 1, {4}, b},
      {"longs", ST_I64, 1, {3}, c},
      {"half", ST_F16, 1, {5}, h},
      {"brain", ST_BF16, 2, {5, 1}, h},
      {"scalar", ST_F32, 0, {0}, a + 5},
      {"empty", ST_F32, 2, {0, 7}, NULL},
      {"path/with/slash", ST_U8, 1, {3}, "xyz"},
  };
  int n = (int)(sizeof t / sizeof t[0]);
  const char *meta[] = {"format", "pt", "note", "quote \" and \\ ok"};
  uint64_t xxh = 0, size = 0, xxh2 = 0, size2 = 0;
  char err[512];
  CHECK_EQ_INT(st_write(tpath("rt.safetensors"), t, n, meta, 2, &xxh, &size, err, sizeof err), 0);
  size_t len;
  uint8_t *bytes = test_read_file(tpath("rt.safetensors"), &len);
  CHECK_TRUE(bytes != NULL);
  CHECK_EQ_INT(len, size);
  CHECK_TRUE(XXH64(bytes, len, 0) == xxh); /* the streamed checksum is the file's */
  CHECK_EQ_INT(st_file_xxh64(tpath("rt.safetensors"), &xxh2, &size2, err, sizeof err), 0);
  CHECK_TRUE(xxh2 == xxh && size2 == size);
  /* layout: u64 LE header length; JSON padded with spaces so the buffer starts 8-aligned */
  uint64_t hl = 0;
  for (int i = 0; i < 8; i++) hl |= (uint64_t)bytes[i] << (8 * i);
  CHECK_EQ_INT((8 + hl) % 8, 0);
  CHECK_EQ_INT(bytes[8], '{');
  size_t payload = 24 + 16 + 24 + 10 + 10 + 4 + 0 + 3;
  CHECK_EQ_INT(len, 8 + hl + payload);
  /* the buffer holds the tensors in order, byte for byte */
  const uint8_t *buf = bytes + 8 + hl;
  CHECK_TRUE(memcmp(buf, a, 24) == 0);
  CHECK_TRUE(memcmp(buf + 24, b, 16) == 0);
  CHECK_TRUE(memcmp(buf + 40, c, 24) == 0);
  CHECK_TRUE(memcmp(buf + 64, h, 10) == 0);
  CHECK_TRUE(memcmp(buf + 74, h, 10) == 0);
  CHECK_TRUE(memcmp(buf + 84, a + 5, 4) == 0);
  CHECK_TRUE(memcmp(buf + 88, "xyz", 3) == 0);
  free(bytes);

  st_file_t *f;
  CHECK_EQ_INT(st_open(tpath("rt.safetensors"), &f, err, sizeof err), 0);
  if (!f) {
    test_fail(__FILE__, __LINE__, "%s", err);
    return;
  }
  CHECK_EQ_INT(f->num_tensors, n);
  for (int i = 0; i < n; i++) {
    const st_tensor_t *r = st_find(f, t[i].name);
    CHECK_TRUE(r != NULL);
    if (!r) continue;
    CHECK_EQ_INT(r->dtype, t[i].dtype);
    CHECK_EQ_INT(r->ndim, t[i].ndim);
    uint64_t numel = 1;
    for (int d = 0; d < t[i].ndim; d++) {
      CHECK_EQ_INT(r->shape[d], t[i].shape[d]);
      numel *= (uint64_t)t[i].shape[d];
    }
    CHECK_EQ_INT(r->numel, numel);
    CHECK_EQ_INT(r->end - r->begin, numel * st_dtype_size(t[i].dtype));
    if (numel) CHECK_TRUE(memcmp(r->data, t[i].data, r->end - r->begin) == 0);
  }
  CHECK_TRUE(st_meta(f, "format") && !strcmp(st_meta(f, "format"), "pt"));
  CHECK_TRUE(st_meta(f, "note") && !strcmp(st_meta(f, "note"), "quote \" and \\ ok"));
  CHECK_TRUE(st_meta(f, "absent") == NULL);
  CHECK_TRUE(st_find(f, "absent") == NULL);
  st_close(f);

  /* a hand-written minimal file (no padding, no metadata) is accepted too */
  write_hdr(tpath("min.safetensors"), "{\"x\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
  CHECK_EQ_INT(st_open(tpath("min.safetensors"), &f, err, sizeof err), 0);
  if (f) {
    CHECK_EQ_INT(((const uint8_t *)st_find(f, "x")->data)[1], 1);
    st_close(f);
  }
  /* the writer refuses duplicate and reserved names */
  st_tensor_desc_t dup[] = {{"a", ST_F32, 1, {1}, a}, {"a", ST_F32, 1, {1}, a}};
  CHECK_EQ_INT(st_write(tpath("dup.safetensors"), dup, 2, NULL, 0, NULL, NULL, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "'a' given twice"));
}

static void test_malformed(void) {
  char err[512];
  /* a valid two-tensor file, then truncated by 4 bytes */
  const char *good =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[16,28]}}";
  write_hdr(tpath("good.safetensors"), good, 28);
  st_file_t *f;
  CHECK_EQ_INT(st_open(tpath("good.safetensors"), &f, err, sizeof err), 0);
  st_close(f);
  write_hdr(tpath("truncated.safetensors"), good, 24);
  expect_refused("truncated.safetensors", "tensor 'b'", "run past the end");
  write_raw(tpath("short.safetensors"), 2, "", 0); /* 8 bytes, header length 2, no header */
  expect_refused("short.safetensors", "header length 2 runs past the end", NULL);
  FILE *fp = fopen(tpath("tiny.safetensors"), "wb");
  fwrite("abc", 1, 3, fp);
  fclose(fp);
  expect_refused("tiny.safetensors", "shorter than the 8-byte header length", NULL);
  write_raw(tpath("pastend.safetensors"), 5000, good, 28);
  expect_refused("pastend.safetensors", "header length 5000 runs past the end", NULL);
  write_raw(tpath("huge.safetensors"), 200ull * 1000 * 1000, good, 28);
  expect_refused("huge.safetensors", "exceeds the 100000000-byte limit", NULL);
  write_raw(tpath("zero.safetensors"), 0, "", 8);
  expect_refused("zero.safetensors", "header length is 0", NULL);
  write_hdr(tpath("overlap.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}", 24);
  expect_refused("overlap.safetensors", "tensor 'b'", "overlap tensor 'a'");
  write_hdr(tpath("hole.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}", 24);
  expect_refused("hole.safetensors", "tensor 'b'", "hole of 4 unused bytes");
  write_hdr(tpath("tail.safetensors"), good, 32);
  expect_refused("tail.safetensors", "4 unused bytes at the end", NULL);
  write_hdr(tpath("dtype.safetensors"),
            "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  expect_refused("dtype.safetensors", "tensor 'a'", "unknown dtype \"F33\"");
  write_hdr(tpath("shape.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16);
  expect_refused("shape.safetensors", "tensor 'a'", "needs 24 bytes but data_offsets [0, 16] span 16");
  write_hdr(tpath("range.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[100,108]}}", 8);
  expect_refused("range.safetensors", "tensor 'a'", "past the end of the data buffer");
  write_hdr(tpath("json.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],", 8);
  expect_refused("json.safetensors", "not valid JSON", NULL);
  write_hdr(tpath("array.safetensors"), "[1, 2, 3]", 0);
  expect_refused("array.safetensors", "not an object", NULL);
  write_hdr(tpath("trail.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}xx", 8);
  expect_refused("trail.safetensors", "trailing bytes", NULL);
  write_hdr(tpath("meta.safetensors"),
            "{\"__metadata__\":{\"format\":\"pt\",\"n\":3},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  expect_refused("meta.safetensors", "\"n\"", "not a string");
  write_hdr(tpath("neg.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
  expect_refused("neg.safetensors", "tensor 'a'", "shape[0]");
  write_hdr(tpath("noofs.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
  expect_refused("noofs.safetensors", "tensor 'a'", "data_offsets");
  write_hdr(tpath("rev.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8);
  expect_refused("rev.safetensors", "tensor 'a'", "end before begin");
  write_hdr(tpath("ovf.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8);
  expect_refused("ovf.safetensors", "tensor 'a'", "overflows");
}

/* Files written by an independent writer (Python json + struct, committed as the fuzzers' seed
 * corpus): our reader must see exactly the values that writer put in. */
static void test_independent_files(void) {
  st_file_t *f;
  char err[512];
  CHECK_EQ_INT(st_open(test_src_path("tests/ckpt/fuzz/corpus_safetensors/two_f32.safetensors"), &f, err, sizeof err), 0);
  if (f) {
    const st_tensor_t *a = st_find(f, "a"), *b = st_find(f, "b");
    float av[4], bv[3];
    CHECK_TRUE(a && b && a->ndim == 2 && a->shape[0] == 2 && b->shape[0] == 3);
    if (a && b) {
      memcpy(av, a->data, sizeof av);
      memcpy(bv, b->data, sizeof bv);
      CHECK_TRUE(av[0] == 1 && av[1] == 2 && av[2] == 3 && av[3] == 4);
      CHECK_TRUE(bv[0] == 5 && bv[1] == 6 && bv[2] == 7);
    }
    CHECK_TRUE(st_meta(f, "format") && !strcmp(st_meta(f, "format"), "pt"));
    st_close(f);
  }
  CHECK_EQ_INT(st_open(test_src_path("tests/ckpt/fuzz/corpus_safetensors/mixed.safetensors"), &f, err, sizeof err), 0);
  if (f) {
    const st_tensor_t *i = st_find(f, "i"), *h = st_find(f, "h"), *e = st_find(f, "e"), *sc = st_find(f, "s");
    CHECK_TRUE(i && h && e && sc);
    if (i && h && e && sc) {
      int64_t iv[2];
      int32_t sv;
      memcpy(iv, i->data, sizeof iv);
      memcpy(&sv, sc->data, sizeof sv);
      CHECK_TRUE(i->dtype == ST_I64 && iv[0] == -1 && iv[1] == 2);
      CHECK_TRUE(h->dtype == ST_BF16 && h->ndim == 2 && h->shape[1] == 3 && h->end - h->begin == 6);
      CHECK_TRUE(e->dtype == ST_F16 && e->numel == 0);
      CHECK_TRUE(sc->dtype == ST_I32 && sc->ndim == 0 && sc->numel == 1 && sv == 9);
    }
    st_close(f);
  }
}

static void test_index(void) {
  char *names[] = {"wte.weight", "h.0.ln_1.weight", "ln_f.bias"};
  char *files[] = {"model-00001-of-00002.safetensors", "model-00001-of-00002.safetensors",
                   "model-00002-of-00002.safetensors"};
  st_index_t idx = {1234, 3, names, files};
  char err[512];
  CHECK_EQ_INT(st_index_write(tpath("model.safetensors.index.json"), &idx, NULL, NULL, err, sizeof err), 0);
  st_index_t *r;
  CHECK_EQ_INT(st_index_read(tpath("model.safetensors.index.json"), &r, err, sizeof err), 0);
  if (r) {
    CHECK_EQ_INT(r->total_size, 1234);
    CHECK_EQ_INT(r->n, 3);
    CHECK_TRUE(!strcmp(st_index_file(r, "ln_f.bias"), "model-00002-of-00002.safetensors"));
    CHECK_TRUE(st_index_file(r, "nope") == NULL);
    st_index_free(r);
  }
  char sname[64];
  st_shard_name(sname, sizeof sname, "model", 3, 12);
  CHECK_TRUE(!strcmp(sname, "model-00003-of-00012.safetensors"));
  FILE *fp = fopen(tpath("bad.index.json"), "w");
  fputs("{\"metadata\": {\"total_size\": 8}, \"weight_map\": {\"a\": \"../../etc/passwd.safetensors\"}}", fp);
  fclose(fp);
  CHECK_EQ_INT(st_index_read(tpath("bad.index.json"), &r, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "weight_map entry 'a'"));
  fp = fopen(tpath("bad2.index.json"), "w");
  fputs("{\"weight_map\": {}}", fp);
  fclose(fp);
  CHECK_EQ_INT(st_index_read(tpath("bad2.index.json"), &r, err, sizeof err), -1);
  CHECK_TRUE(contains(err, "total_size"));
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/strata_st_test_XXXXXX");
  if (!mkdtemp(tmpdir)) return 2;
  test_round_trip();
  test_malformed();
  test_independent_files();
  test_index();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return test_finish("ckpt_safetensors");
}
