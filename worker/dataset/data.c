/* data.c -- opens and validates data files (raw bytes or llm.c token shards), splits them
 * into train / validation, and cuts batches in llm.c's layout, deterministically from
 * (seed, step) so that any data-parallel slicing of a global batch reproduces it exactly.
 * The contract and the exact ordering rule are in data.h. */
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datapath.h"
#include "rng.h"
#include "util.h"

/* Rounds of the keyed Feistel network that permutes windows within an epoch (4 rounds of a
 * 64-bit mixing function make a well-scrambled permutation; this is not cryptography). */
#define DATA_FEISTEL_ROUNDS 4

typedef struct {
  char *path;
  uint8_t *map;        /* whole file, read-only mapping */
  size_t size_bytes;   /* file size */
  data_kind_t kind;    /* BYTES or TOKENS */
  const uint8_t *tok;  /* first token byte (map, or map + 1024 for shards, or encoded) */
  size_t ntok;         /* tokens in the file */
  uint8_t *encoded;    /* a text file's tokens from the text encoder, uint16 little-endian */
  int vocab;           /* 256, 50257, or the text encoder's */
} data_file_t;

static data_text_encoder_t text_encoder; /* encode == NULL: text is bytes */

void data_set_text_encoder(const data_text_encoder_t *enc) {
  if (enc) text_encoder = *enc;
  else memset(&text_encoder, 0, sizeof text_encoder);
}

struct data_set {
  data_file_t train;
  data_file_t val;  /* used only when has_val_file */
  int has_val_file;
  int vocab;
};

static uint32_t rd_u32le(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void file_close(data_file_t *f) {
  if (f->map) munmap(f->map, f->size_bytes);
  free(f->encoded);
  free(f->path);
  memset(f, 0, sizeof *f);
}

/* Validates an llm.c shard header against the file size; on success sets tok/ntok. */
static int check_shard(data_file_t *f, char *err, size_t errlen) {
  const char *p = f->path;
  if (f->size_bytes < DATA_SHARD_HEADER_BYTES)
    return strata_fail(err, errlen,
                  "data file '%s': token shard is %zu bytes, shorter than its 1024-byte header "
                  "(256 int32: magic %d, version %d, token count): the file is truncated or not an "
                  "llm.c token shard",
                  p, f->size_bytes, DATA_SHARD_MAGIC, DATA_SHARD_VERSION);
  uint32_t magic = rd_u32le(f->map), version = rd_u32le(f->map + 4), count = rd_u32le(f->map + 8);
  if (magic != DATA_SHARD_MAGIC)
    return strata_fail(err, errlen,
                  "data file '%s': bad token-shard magic %u (header int32 [0]); an llm.c token shard "
                  "starts with %d. Pass a raw text file or a shard written by llm.c's tokenizer scripts",
                  p, magic, DATA_SHARD_MAGIC);
  if (version != DATA_SHARD_VERSION)
    return strata_fail(err, errlen,
                  "data file '%s': unsupported token-shard version %u (header int32 [1]); expected %d "
                  "(uint16 GPT-2 tokens)",
                  p, version, DATA_SHARD_VERSION);
  uint64_t want = (uint64_t)DATA_SHARD_HEADER_BYTES + 2ull * count;
  if ((uint64_t)f->size_bytes != want)
    return strata_fail(err, errlen,
                  "data file '%s': token shard is %zu bytes but its header (int32 [2]) counts %u tokens, "
                  "so it should be %llu bytes (1024-byte header + 2 bytes per token): the file is %s or "
                  "its header is wrong",
                  p, f->size_bytes, count, (unsigned long long)want,
                  (uint64_t)f->size_bytes < want ? "truncated" : "has trailing bytes");
  if (count == 0)
    return strata_fail(err, errlen, "data file '%s': token shard holds 0 tokens; it needs at least 2", p);
  f->tok = f->map + DATA_SHARD_HEADER_BYTES;
  f->ntok = count;
  /* every token must be inside the GPT-2 vocabulary */
  for (size_t i = 0; i < f->ntok; i++) {
    unsigned t = (unsigned)f->tok[2 * i] | ((unsigned)f->tok[2 * i + 1] << 8);
    if (t >= DATA_GPT2_VOCAB)
      return strata_fail(err, errlen,
                    "data file '%s': token %zu is %u, outside the GPT-2 vocabulary [0, %d): not a GPT-2 "
                    "token shard",
                    p, i, t, DATA_GPT2_VOCAB);
  }
  return 0;
}

/* A text file through the text encoder: its ids as uint16 LE tokens (a shard's layout). */
static int encode_text(data_file_t *f, char *err, size_t errlen) {
  int32_t *ids = NULL;
  size_t n = 0;
  if (text_encoder.vocab < 1 || text_encoder.vocab > 65536)
    return strata_fail(err, errlen, "data file '%s': the text encoder's vocabulary %d is not in [1, 65536]",
                       f->path, text_encoder.vocab);
  if (text_encoder.encode(text_encoder.ctx, f->path, (const char *)f->map, f->size_bytes, &ids, &n, err, errlen))
    return -1;
  f->encoded = malloc(2 * (n ? n : 1));
  if (!f->encoded) {
    free(ids);
    return strata_fail(err, errlen, "data file '%s': out of memory for its %zu tokens", f->path, n);
  }
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= text_encoder.vocab) {
      free(ids);
      return strata_fail(err, errlen, "data file '%s': the text encoder gave token %d at %zu, outside its "
                         "vocabulary [0, %d)", f->path, ids[i], i, text_encoder.vocab);
    }
    f->encoded[2 * i] = (uint8_t)(ids[i] & 0xff);
    f->encoded[2 * i + 1] = (uint8_t)(ids[i] >> 8);
  }
  free(ids);
  f->kind = DATA_KIND_TOKENS;
  f->tok = f->encoded;
  f->ntok = n;
  f->vocab = text_encoder.vocab;
  return 0;
}

static int file_open(const char *path, data_kind_t kind, data_file_t *f, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  int rc = -1, fd = -1;
  if (!path || !*path)
    return strata_fail(err, errlen, "data file: empty path; pass --data FILE (raw text or llm.c .bin shard)");
  f->path = strdup(path);
  if (!f->path) return strata_fail(err, errlen, "data file '%s': out of memory for its path", path);
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    strata_fail(err, errlen, "data file '%s': cannot open: %s; check the path given with --data", path,
           strerror(errno));
    goto fail;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    strata_fail(err, errlen, "data file '%s': cannot stat: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    strata_fail(err, errlen, "data file '%s': not a regular file; pass a text file or a .bin token shard",
           path);
    goto fail;
  }
  if (st.st_size == 0) {
    strata_fail(err, errlen,
           "data file '%s': file is empty (0 bytes); pass a text file or a token shard with at "
           "least one batch of tokens",
           path);
    goto fail;
  }
  f->size_bytes = (size_t)st.st_size;
  f->map = mmap(NULL, f->size_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  if (f->map == MAP_FAILED) {
    f->map = NULL;
    strata_fail(err, errlen, "data file '%s': cannot map %zu bytes: %s", path, f->size_bytes,
           strerror(errno));
    goto fail;
  }
  if (kind == DATA_KIND_AUTO) {
    int magic = f->size_bytes >= 4 && rd_u32le(f->map) == DATA_SHARD_MAGIC;
    kind = (magic || ends_with(path, ".bin")) ? DATA_KIND_TOKENS : DATA_KIND_BYTES;
  }
  f->kind = kind;
  if (kind == DATA_KIND_TOKENS) {
    if (check_shard(f, err, errlen) != 0) goto fail;
    f->vocab = DATA_GPT2_VOCAB;
  } else if (text_encoder.encode) {
    if (encode_text(f, err, errlen) != 0) goto fail;
  } else {
    f->tok = f->map;
    f->ntok = f->size_bytes;
    f->vocab = DATA_BYTES_VOCAB;
  }
  rc = 0;
exit:
  if (fd >= 0) close(fd);
  return rc;
fail:
  file_close(f);
  goto exit;
}

/* llm.c's naming: NAME_train.bin has its validation file NAME_val.bin beside it. */
static int sibling_val(const char *path, char *buf, size_t len) {
  const char *p = strstr(path, "_train"), *last = NULL;
  for (; p; p = strstr(p + 1, "_train")) last = p;
  if (!last || !ends_with(path, ".bin")) return 0;
  if ((size_t)snprintf(buf, len, "%.*s_val%s", (int)(last - path), path, last + 6) >= len) return 0;
  return access(buf, R_OK) == 0;
}

int data_open(const char *path, data_kind_t kind, data_set_t **out, char *err, size_t errlen) {
  char val[4096];
  if (path && kind != DATA_KIND_BYTES && sibling_val(path, val, sizeof val))
    return data_open_pair(path, val, kind, out, err, errlen);
  return data_open_pair(path, NULL, kind, out, err, errlen);
}

int data_open_pair(const char *train_path, const char *val_path, data_kind_t kind,
                   data_set_t **out, char *err, size_t errlen) {
  *out = NULL;
  data_set_t *ds = calloc(1, sizeof *ds);
  if (!ds) return strata_fail(err, errlen, "data: out of memory for the data set's state");
  if (file_open(train_path, kind, &ds->train, err, errlen) != 0) goto fail;
  if (val_path) {
    if (file_open(val_path, ds->train.kind, &ds->val, err, errlen) != 0) goto fail;
    ds->has_val_file = 1;
  }
  ds->vocab = ds->train.vocab;
  *out = ds;
  return 0;
fail:
  data_close(ds);
  return -1;
}

void data_close(data_set_t *ds) {
  if (!ds) return;
  file_close(&ds->train);
  file_close(&ds->val);
  free(ds);
}

const char *data_default_path(void) {
  static char buf[4096];
  const char *dir = getenv("STRATA_DATA_DIR");
  if (dir && *dir)
    snprintf(buf, sizeof buf, "%s/fortunes.txt", dir);
  else /* a missing file is reported by data_open, naming this path */
    (void)strata_data_path(DATA_DEFAULT_CORPUS, buf, sizeof buf);
  return buf;
}

int data_vocab(const data_set_t *ds) { return ds->vocab; }
const char *data_val_path(const data_set_t *ds) { return ds->has_val_file ? ds->val.path : NULL; }
data_kind_t data_kind(const data_set_t *ds) { return ds->train.kind; }
const char *data_path(const data_set_t *ds) { return ds->train.path; }

/* The file and token range [*off, *off + *n) of a split. */
static const data_file_t *split_range(const data_set_t *ds, data_split_t split, size_t *off,
                                      size_t *n) {
  const data_file_t *f = &ds->train;
  size_t N = f->ntok, nval = ds->has_val_file ? 0 : N / 10;
  switch (split) {
    case DATA_TRAIN: *off = 0; *n = N - nval; break;
    case DATA_VAL:
      if (ds->has_val_file) {
        f = &ds->val;
        *off = 0;
        *n = f->ntok;
      } else {
        *off = N - nval;
        *n = nval;
      }
      break;
    default: *off = 0; *n = N; break;
  }
  return f;
}

static const char *split_name(data_split_t s) {
  return s == DATA_TRAIN ? "training split" : s == DATA_VAL ? "validation split" : "file";
}

size_t data_num_tokens(const data_set_t *ds, data_split_t split) {
  size_t off, n;
  split_range(ds, split, &off, &n);
  return n;
}

static inline int32_t token_at(const data_file_t *f, size_t i) {
  if (f->kind == DATA_KIND_BYTES) return f->tok[i];
  return (int32_t)((unsigned)f->tok[2 * i] | ((unsigned)f->tok[2 * i + 1] << 8));
}

int data_check_batch(const data_set_t *ds, data_split_t split, int batch, int T, char *err,
                     size_t errlen) {
  if (batch <= 0 || T <= 0)
    return strata_fail(err, errlen, "data: batch (%d) and sequence length (%d) must be positive", batch, T);
  size_t off, n;
  const data_file_t *f = split_range(ds, split, &off, &n);
  uint64_t need = (uint64_t)batch * (uint64_t)T + 1;
  if ((uint64_t)n < need)
    return strata_fail(err, errlen,
                  "data file '%s': the %s has %zu tokens, too few for one batch of %d x %d (+1) = %llu "
                  "tokens; use a smaller --batch or --ctx, or a larger data file",
                  f->path, split_name(split), n, batch, T, (unsigned long long)need);
  return 0;
}

uint64_t data_windows_per_epoch(const data_set_t *ds, data_split_t split, int batch, int T) {
  size_t off, n;
  split_range(ds, split, &off, &n);
  if (batch <= 0 || T <= 0 || n < 1) return 0;
  return (uint64_t)(n - 1) / ((uint64_t)batch * (uint64_t)T);
}

/* Keyed permutation of [0, w): a balanced Feistel network on the smallest even number of
 * bits covering w, with cycle walking to stay inside [0, w). */
static uint64_t permute(uint64_t k, uint64_t w, uint64_t key) {
  int half = 1;
  while (half < 32 && (1ull << (2 * half)) < w) half++;
  uint64_t mask = (1ull << half) - 1;
  uint64_t x = k;
  do {
    uint64_t l = x >> half, r = x & mask;
    for (int round = 0; round < DATA_FEISTEL_ROUNDS; round++) {
      uint64_t f = rng_mix64(key ^ (r * 0x9e3779b97f4a7c15ull) ^ (uint64_t)round) & mask;
      uint64_t nl = r, nr = l ^ f;
      l = nl;
      r = nr;
    }
    x = (l << half) | r;
  } while (x >= w);
  return x;
}

int data_batch_start(const data_set_t *ds, data_split_t split, uint64_t seed, uint64_t step,
                     int batch, int T, size_t *start_out, char *err, size_t errlen) {
  if (data_check_batch(ds, split, batch, T, err, errlen) != 0) return -1;
  size_t off, n;
  split_range(ds, split, &off, &n);
  uint64_t span = (uint64_t)batch * (uint64_t)T;
  uint64_t w = (uint64_t)(n - 1) / span; /* >= 1 after the check */
  uint64_t epoch = step / w, k = step % w;
  uint64_t slack = (uint64_t)(n - 1) - w * span;
  rng_t r;
  rng_seed(&r, seed ^ rng_mix64(epoch), rng_hash_str("data.shift"));
  uint64_t shift = rng_below(&r, slack + 1);
  uint64_t key = rng_mix64(seed ^ rng_hash_str("data.perm")) ^ rng_mix64(epoch + 0x51ed270b);
  uint64_t window = permute(k, w, key);
  *start_out = (size_t)(shift + window * span);
  return 0;
}

/* Copies n_seq sequences from split position `start` (inputs/targets as in data.h). */
static void cut(const data_file_t *f, size_t base, int T, int n_seq, int32_t *inputs,
                int32_t *targets) {
  size_t total = (size_t)n_seq * (size_t)T;
  for (size_t i = 0; i < total; i++) {
    inputs[i] = token_at(f, base + i);
    targets[i] = token_at(f, base + i + 1);
  }
}

int data_fetch(const data_set_t *ds, data_split_t split, uint64_t seed, uint64_t step, int batch,
               int T, int first_seq, int n_seq, int32_t *inputs, int32_t *targets, char *err,
               size_t errlen) {
  if (first_seq < 0 || n_seq < 1 || batch <= 0 || first_seq > batch - n_seq)
    return strata_fail(err, errlen,
                  "data: sequences [%d, %d) are not inside the global batch of %d sequences", first_seq,
                  first_seq + n_seq, batch);
  size_t start, off, n;
  if (data_batch_start(ds, split, seed, step, batch, T, &start, err, errlen) != 0) return -1;
  const data_file_t *f = split_range(ds, split, &off, &n);
  cut(f, off + start + (size_t)first_seq * (size_t)T, T, n_seq, inputs, targets);
  return 0;
}

uint64_t data_num_sequential_batches(const data_set_t *ds, data_split_t split, int B, int T) {
  return data_windows_per_epoch(ds, split, B, T);
}

int data_fetch_sequential(const data_set_t *ds, data_split_t split, uint64_t batch_index, int B,
                          int T, int32_t *inputs, int32_t *targets, char *err, size_t errlen) {
  if (data_check_batch(ds, split, B, T, err, errlen) != 0) return -1;
  size_t off, n;
  const data_file_t *f = split_range(ds, split, &off, &n);
  uint64_t nb = data_num_sequential_batches(ds, split, B, T);
  if (batch_index >= nb)
    return strata_fail(err, errlen,
                  "data file '%s': batch %llu of %d x %d tokens is past the end of the %s (%zu tokens "
                  "hold %llu such batches); ask for fewer --batches",
                  f->path, (unsigned long long)batch_index, B, T, split_name(split), n,
                  (unsigned long long)nb);
  cut(f, off + (size_t)batch_index * (size_t)B * (size_t)T, T, B, inputs, targets);
  return 0;
}
