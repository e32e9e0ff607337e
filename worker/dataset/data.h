/* data.h -- training and evaluation data: raw text read as bytes, or llm.c token shards.
 *
 * Two kinds of file are accepted:
 *  - raw text (any file), read as bytes: token = byte value, vocabulary 256;
 *  - llm.c token shards: a header of 256 little-endian int32 ([0] = 20240520 magic,
 *    [1] = 1 version, [2] = token count), then `count` uint16 tokens; the file size must be
 *    exactly 1024 + 2 * count. Vocabulary 50257 (GPT-2); every token must be below it.
 * With DATA_KIND_AUTO a file is a token shard when its first int32 is the magic or its name
 * ends in ".bin" (so a damaged shard is refused rather than silently read as text).
 *
 * Text through a tokenizer. With a text encoder installed (data_set_text_encoder; the CLI
 * installs a BPE tokenizer's), a text file is encoded when it is opened instead of read as
 * bytes: its tokens are what the encoder returns for the whole file (the CLI's: the
 * end-of-text token, then the file's ids, exactly what `strata tokenize --in FILE` writes into
 * the shard), held in memory, and the data set's vocabulary is the encoder's. Splits and batches
 * then work on those tokens as on a shard's (the last 10% held out, as for bytes).
 *
 * Splits. DATA_ALL is every token of the file. When only one file is given, DATA_VAL is its
 * last 10% of tokens (floor(N / 10)) and DATA_TRAIN the first N - floor(N / 10); when a
 * separate validation file is given, DATA_TRAIN is the whole training file and DATA_VAL the
 * whole validation file. The validation file is given explicitly (data_open_pair) or found by
 * llm.c's naming: data_open("dir/NAME_train.bin") uses "dir/NAME_val.bin" when it exists
 * (the last "_train" in the path becomes "_val").
 *
 * Batch layout (llm.c): a batch of `b` sequences of length T reads b*T + 1 consecutive tokens;
 * sequence i has inputs tokens[i*T .. i*T+T) and targets tokens[i*T+1 .. i*T+T+1).
 *
 * Training order (data_fetch). The GLOBAL batch of step `step` (batch sequences of T tokens)
 * is one window of batch*T + 1 consecutive tokens, a function of (seed, step) only:
 *    W      = floor((N_split - 1) / (batch*T))          windows per epoch
 *    epoch  = step / W,  k = step % W
 *    shift  = uniform in [0, (N_split - 1) - W*batch*T] from rng(seed, "data.shift", epoch)
 *    window = perm_{seed,epoch}(k)                       a keyed Feistel permutation of [0, W)
 *    start  = shift + window * batch*T
 * So every epoch visits each window once in a seeded random order. Any caller can fetch any
 * contiguous range of sequences [first_seq, first_seq + n_seq) of that global batch: a
 * data-parallel replica d with micro-batch size m fetches first_seq = d*m, and the union over
 * replicas is exactly the single-rank batch, element for element.
 *
 * Evaluation order (data_fetch_sequential): batch j of B x T reads the window starting at
 * token j*B*T of the split, as llm.c's evaluation loader does ("the first N batches in order").
 *
 * Errors are returned (-1) with a message in err naming the file, the check that failed and
 * what was expected; nothing here exits or prints.
 */
#ifndef STRATA_DATA_H
#define STRATA_DATA_H

#include <stddef.h>
#include <stdint.h>

#define DATA_SHARD_MAGIC 20240520
#define DATA_SHARD_VERSION 1
#define DATA_SHARD_HEADER_BYTES 1024 /* 256 x int32 */
#define DATA_GPT2_VOCAB 50257
#define DATA_BYTES_VOCAB 256
/* Default corpus, relative to the source tree (see data/README.md). */
#define DATA_DEFAULT_CORPUS "data/fortunes.txt"

typedef enum {
  DATA_KIND_AUTO = 0, /* shard if the magic matches or the name ends in .bin, else bytes */
  DATA_KIND_BYTES,    /* raw bytes, vocabulary 256 */
  DATA_KIND_TOKENS,   /* llm.c uint16 token shard, vocabulary 50257 */
} data_kind_t;

typedef enum {
  DATA_TRAIN = 0, /* first 90% (or the whole training file when a val file is given) */
  DATA_VAL = 1,   /* last 10% (or the whole validation file) */
  DATA_ALL = 2,   /* every token of the (training) file */
} data_split_t;

typedef struct data_set data_set_t;

/* Encodes text[0..n) of file `path` into a new array *ids of *n_ids ids, each below the
 * encoder's vocab (free it). 0, or -1 with err. */
typedef int (*data_encode_fn)(void *ctx, const char *path, const char *text, size_t n, int32_t **ids,
                              size_t *n_ids, char *err, size_t errlen);
typedef struct {
  data_encode_fn encode;
  void *ctx;   /* passed to encode */
  int vocab;   /* ids are below it; at most 65536 (stored as uint16, as in a shard) */
} data_text_encoder_t;

/* Installs (enc) or removes (NULL) the encoder of text files for every later data_open in this
 * process (copied; enc->ctx must outlive those calls). Not thread-safe: call it at start-up. */
void data_set_text_encoder(const data_text_encoder_t *enc);

/* Opens `path` (memory-mapped, read-only) and validates it as `kind` (and its NAME_val.bin
 * sibling when `path` is an llm.c NAME_train.bin shard, see Splits). On failure returns -1
 * with e.g. "data file 'x.bin': token shard is 2000 bytes but its header counts 600 tokens,
 * so it should be 2224 bytes (1024-byte header + 2 bytes per token): the file is truncated or
 * its header is wrong". Empty files are refused. */
int data_open(const char *path, data_kind_t kind, data_set_t **out, char *err, size_t errlen);

/* Opens a training file and a separate validation file (both of the same kind/vocabulary). */
int data_open_pair(const char *train_path, const char *val_path, data_kind_t kind,
                   data_set_t **out, char *err, size_t errlen);

void data_close(data_set_t *ds);

/* Path to the default corpus: $STRATA_DATA_DIR/fortunes.txt if that env var is set, else the
 * shipped data/fortunes.txt in share/strata/ beside the executable's directory (datapath.h).
 * Static buffer. */
const char *data_default_path(void);

int data_vocab(const data_set_t *ds);           /* 256, 50257, or the text encoder's */
data_kind_t data_kind(const data_set_t *ds);    /* DATA_KIND_BYTES or DATA_KIND_TOKENS (also encoded text) */
const char *data_path(const data_set_t *ds);    /* training file path */
const char *data_val_path(const data_set_t *ds); /* separate validation file, or NULL */
size_t data_num_tokens(const data_set_t *ds, data_split_t split);

/* Returns 0 if one batch of `batch` sequences of T tokens (batch*T + 1 tokens) fits in the
 * split; else -1 with a message naming the split, the tokens it has and the tokens needed, and
 * the fix (a smaller --batch / --ctx or a larger file). */
int data_check_batch(const data_set_t *ds, data_split_t split, int batch, int T, char *err,
                     size_t errlen);

/* Windows of batch*T+1 tokens per epoch of the split (0 if one does not fit). */
uint64_t data_windows_per_epoch(const data_set_t *ds, data_split_t split, int batch, int T);

/* First token position (in the split) of the global batch of `step` (see the order above). */
int data_batch_start(const data_set_t *ds, data_split_t split, uint64_t seed, uint64_t step,
                     int batch, int T, size_t *start_out, char *err, size_t errlen);

/* Fetches sequences [first_seq, first_seq + n_seq) of the global batch of `step` into
 * inputs (n_seq, T) and targets (n_seq, T). Requires 0 <= first_seq, n_seq >= 1,
 * first_seq + n_seq <= batch. Pure function of (file, split, seed, step, batch, T). */
int data_fetch(const data_set_t *ds, data_split_t split, uint64_t seed, uint64_t step, int batch,
               int T, int first_seq, int n_seq, int32_t *inputs, int32_t *targets, char *err,
               size_t errlen);

/* Number of whole sequential batches of B x T in the split: floor((N - 1) / (B*T)). */
uint64_t data_num_sequential_batches(const data_set_t *ds, data_split_t split, int B, int T);

/* Batch `batch_index` of the split in file order: tokens [j*B*T, j*B*T + B*T + 1) into
 * inputs (B, T) and targets (B, T). Fails if that batch runs past the end of the split. */
int data_fetch_sequential(const data_set_t *ds, data_split_t split, uint64_t batch_index, int B,
                          int T, int32_t *inputs, int32_t *targets, char *err, size_t errlen);

#endif /* STRATA_DATA_H */
