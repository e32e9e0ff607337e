/* strata tokenize -- text in, GPT-2 BPE tokens out: llm.c token shards for `strata train
 * --data`, or ids of stdin (--ids), or text of ids (--decode). One process, no MPI.
 *
 * Shards (data.h): PREFIX_train.bin, and with --val-fraction F > 0 PREFIX_val.bin holding the
 * last floor(F * N) of the N tokens (train --data PREFIX_train.bin then finds it by name).
 * Every document starts with the end-of-text token (50256), as llm.c's data scripts write it:
 * a document is an input file, or with --split-docs each block of lines between empty lines.
 * The shards are written to temporary names and renamed when complete.
 *
 * Large files are memory-mapped and encoded in slices of about TOKENIZE_SLICE_BYTES, cut only
 * between an ASCII letter or digit and a space: no piece of GPT-2's pattern (or Llama 3's)
 * spans such a boundary, so the ids are those of the whole file at once. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "data.h"
#include "log.h"
#include "strata/strnum.h"
#include "tokenizer.h"
#include "utf8.h"
#include "util.h"

#define TOKENIZE_SLICE_BYTES (1u << 20) /* text encoded per tok_encode call */
#define TOKENIZE_MAX_INPUTS 4096
#define TOKENIZE_PROGRESS_S 0.2 /* seconds between progress lines on a terminal */

static const char *usage_text =
    "Turn text into GPT-2 BPE tokens (byte-level BPE, exactly as tiktoken's gpt2 encoding).\n"
    "  strata tokenize --in FILE [FILE...] --out PREFIX [--val-fraction F] [--split-docs]\n"
    "      writes llm.c token shards PREFIX_train.bin (and PREFIX_val.bin: the last F of the tokens)\n"
    "      for `strata train --data PREFIX_train.bin`: a header of 256 int32 (20240520, 1, count),\n"
    "      then uint16 tokens. Each document starts with <|endoftext|> (50256): an input file, or\n"
    "      with --split-docs each block of lines between empty lines. A progress line on a terminal,\n"
    "      the throughput at the end.\n"
    "  strata tokenize --ids       the ids of stdin's text, space-separated, on stdout\n"
    "  strata tokenize --decode    the text of stdin's ids (separated by spaces, commas or newlines);\n"
    "      refuses ids outside the vocabulary and output that is not valid UTF-8\n"
    "--tokenizer DIR: tokenizer.json, vocab.json + merges.txt or encoder.json + vocab.bpe (default:\n"
    "the shipped GPT-2 vocabulary, share/strata/data/gpt2). Special-token text such as\n"
    "<|endoftext|> in the input is ordinary text. Bad input (missing or broken files, bad ids)\n"
    "exits 2 with one sentence.";

typedef struct {
  tok_t *tok;
  FILE *out;            /* the training shard being written */
  const char *out_path; /* its temporary name */
  uint64_t tokens;      /* written so far */
  tok_ids_t ids;        /* scratch */
  uint16_t *u16;        /* scratch */
  size_t u16_cap;
  double t0_s, last_progress_s;
  uint64_t bytes_done, bytes_total;
  int progress; /* stderr is a terminal */
} tokenize_job_t;

static void progress_line(tokenize_job_t *j, int final) {
  double now = strata_now_s();
  if (!j->progress || (!final && now - j->last_progress_s < TOKENIZE_PROGRESS_S)) return;
  j->last_progress_s = now;
  double el = now - j->t0_s > 1e-9 ? now - j->t0_s : 1e-9;
  fprintf(stderr, "\r[strata] tokenize: %5.1f%% %.1f of %.1f MB, %.1f MB/s, %llu tokens%s",
          j->bytes_total ? 100.0 * (double)j->bytes_done / (double)j->bytes_total : 100.0, j->bytes_done / 1e6,
          j->bytes_total / 1e6, j->bytes_done / 1e6 / el, (unsigned long long)j->tokens, final ? "\n" : "");
  fflush(stderr);
}

/* Appends ids to the shard. -1 on a write failure (err). */
static int write_ids(tokenize_job_t *j, const int32_t *ids, size_t n, char *err, size_t errlen) {
  if (n > j->u16_cap) {
    uint16_t *nb = realloc(j->u16, n * sizeof *nb);
    if (!nb) return strata_fail(err, errlen, "out of memory for %zu tokens", n);
    j->u16 = nb, j->u16_cap = n;
  }
  for (size_t i = 0; i < n; i++) j->u16[i] = (uint16_t)ids[i];
  if (fwrite(j->u16, sizeof(uint16_t), n, j->out) != n)
    return strata_fail(err, errlen, "cannot write '%s': %s", j->out_path, strerror(errno));
  j->tokens += n;
  return 0;
}

/* End of the next slice of text[0..n): about TOKENIZE_SLICE_BYTES, cut between an ASCII letter
 * or digit and a space (see the top of the file), or all of it. */
static size_t slice_end(const char *text, size_t n) {
  for (size_t want = TOKENIZE_SLICE_BYTES; want < n; want *= 2) {
    size_t lo = want / 2;
    for (size_t p = want; p > lo; p--) {
      unsigned char a = (unsigned char)text[p - 1];
      int alnum = (a >= '0' && a <= '9') || (a >= 'A' && a <= 'Z') || (a >= 'a' && a <= 'z');
      if (alnum && text[p] == ' ') return p;
    }
  }
  return n;
}

/* One document: <|endoftext|>, then its tokens. */
static int encode_doc(tokenize_job_t *j, const char *text, size_t n, char *err, size_t errlen) {
  int32_t eot = tok_eot(j->tok);
  if (write_ids(j, &eot, 1, err, errlen)) return -1;
  while (n > 0) {
    size_t k = slice_end(text, n);
    j->ids.n = 0;
    if (tok_encode(j->tok, text, k, 0, &j->ids, err, errlen) || write_ids(j, j->ids.v, j->ids.n, err, errlen)) return -1;
    text += k, n -= k;
    j->bytes_done += k;
    progress_line(j, 0);
  }
  return 0;
}

/* One input file: one document, or (split) one per block of lines between empty lines. */
static int encode_file(tokenize_job_t *j, const char *path, int split, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    if (fd >= 0) close(fd);
    return strata_fail(err, errlen, "input '%s' cannot be read as a regular file: %s", path,
                       fd < 0 ? strerror(errno) : "not a regular file");
  }
  size_t n = (size_t)st.st_size;
  const char *text = "";
  void *map = NULL;
  if (n > 0 && (map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
    close(fd);
    return strata_fail(err, errlen, "input '%s' cannot be mapped: %s", path, strerror(errno));
  }
  close(fd);
  if (map) text = map, madvise(map, n, MADV_SEQUENTIAL);
  int rc = 0;
  if (!split) {
    rc = encode_doc(j, text, n, err, errlen);
  } else {
    size_t pos = 0;
    while (rc == 0 && pos < n) {
      while (pos < n && text[pos] == '\n') pos++, j->bytes_done++; /* empty lines between documents */
      if (pos >= n) break;
      const char *end = text + pos;
      for (;;) { /* the document ends at "\n\n" or the end of the file */
        end = memchr(end, '\n', (size_t)(text + n - end));
        if (!end || (end + 1 < text + n && end[1] == '\n') || end + 1 == text + n) break;
        end++;
      }
      size_t dlen = end ? (size_t)(end - (text + pos)) : n - pos;
      rc = encode_doc(j, text + pos, dlen, err, errlen);
      pos += dlen;
    }
  }
  if (map) munmap(map, n);
  return rc;
}

static int write_header(FILE *f, uint64_t count) {
  int32_t h[DATA_SHARD_HEADER_BYTES / 4] = {DATA_SHARD_MAGIC, DATA_SHARD_VERSION, (int32_t)count};
  return fseek(f, 0, SEEK_SET) || fwrite(h, sizeof h, 1, f) != 1 ? -1 : 0;
}

/* Moves the last n_val tokens of the finished training shard (N tokens) to val_tmp. */
static int split_val(tokenize_job_t *j, const char *val_tmp, uint64_t n_val, char *err, size_t errlen) {
  uint64_t n_train = j->tokens - n_val;
  FILE *v = fopen(val_tmp, "wb");
  if (!v) return strata_fail(err, errlen, "cannot create '%s': %s", val_tmp, strerror(errno));
  int rc = write_header(v, n_val);
  uint16_t buf[1 << 15];
  if (fseek(j->out, (long)(DATA_SHARD_HEADER_BYTES + 2 * n_train), SEEK_SET)) rc = -1;
  for (uint64_t left = n_val; rc == 0 && left > 0;) {
    size_t k = left < sizeof buf / 2 ? (size_t)left : sizeof buf / 2;
    if (fread(buf, 2, k, j->out) != k || fwrite(buf, 2, k, v) != k) rc = -1;
    left -= k;
  }
  if (fflush(v) || fsync(fileno(v))) rc = -1;
  if (fclose(v)) rc = -1;
  if (rc == 0 && (fflush(j->out) || ftruncate(fileno(j->out), (off_t)(DATA_SHARD_HEADER_BYTES + 2 * n_train)))) rc = -1;
  j->tokens = n_train;
  return rc ? strata_fail(err, errlen, "cannot write the validation shard '%s': %s", val_tmp, strerror(errno)) : 0;
}

static int load_tokenizer(const char *dir, tok_t **t, char *err, size_t errlen) {
  return dir ? tok_load_dir(dir, t, err, errlen) : tok_load_gpt2(t, err, errlen);
}

/* Reads all of stdin. */
static char *read_stdin(size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    if (n == cap) {
      char *nb = realloc(buf, 2 * cap + 1);
      if (!nb) break;
      buf = nb, cap *= 2;
    }
    size_t k = fread(buf + n, 1, cap - n, stdin);
    n += k;
    if (k == 0) {
      buf[n] = '\0';
      *len = n;
      return buf;
    }
  }
  free(buf);
  return NULL;
}

static int run_ids(tok_t *t) {
  size_t n;
  char *text = read_stdin(&n), err[512];
  tok_ids_t ids = {0};
  if (!text || tok_encode(t, text, n, 0, &ids, err, sizeof err)) {
    strata_error("tokenize: --ids: %s", text ? err : "out of memory reading stdin");
    free(text);
    return 1;
  }
  for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.v[i]);
  printf("\n");
  free(text);
  tok_ids_free(&ids);
  return fflush(stdout) ? 1 : 0;
}

static int run_decode(tok_t *t) {
  size_t n;
  char *in = read_stdin(&n), err[512];
  tok_ids_t ids = {0};
  if (!in) {
    strata_error("tokenize: --decode: out of memory reading stdin");
    return 1;
  }
  int rc = 2;
  strnum_range_t r = {.kind = STRNUM_INT, .min = 0, .max = tok_vocab_size(t) - 1};
  for (char *save = NULL, *w = strtok_r(in, " \t\r\n,", &save); w; w = strtok_r(NULL, " \t\r\n,", &save)) {
    strnum_value_t v;
    if (strnum_parse(w, &r, &v) != STRNUM_OK) {
      strata_error("tokenize: --decode: token %zu '%.40s' is not a token id of this vocabulary (an integer in [0, %d])",
                   ids.n, w, tok_vocab_size(t) - 1);
      goto out;
    }
    if (ids.n == ids.cap) {
      int32_t *nv = realloc(ids.v, sizeof(int32_t) * (ids.cap = ids.cap ? 2 * ids.cap : 1024));
      if (!nv) goto oom;
      ids.v = nv;
    }
    ids.v[ids.n++] = (int32_t)v.i;
  }
  char *text;
  size_t len, bad;
  if (tok_decode(t, ids.v, ids.n, &text, &len, err, sizeof err)) {
    strata_error("tokenize: --decode: %s", err);
    goto out;
  }
  if (!utf8_valid(text, len, &bad)) {
    strata_error("tokenize: --decode: the tokens' bytes are not valid UTF-8 (byte %zu of %zu is not part of a whole "
                 "character): they cut a character, or are not text",
                 bad, len);
    free(text);
    goto out;
  }
  rc = fwrite(text, 1, len, stdout) != len || fflush(stdout) ? 1 : 0;
  free(text);
  goto out;
oom:
  strata_error("tokenize: --decode: out of memory");
  rc = 1;
out:
  free(in);
  tok_ids_free(&ids);
  return rc;
}

/* --in FILE may repeat, and files may follow it: every --in value and positional argument is an
 * input, in order. */
static int collect_inputs(int argc, char **argv, const char **pos, int npos, const char **in, int *n_in) {
  int n = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    if (!strcmp(argv[i], "--in") && i + 1 < argc) v = argv[++i];
    else if (!strncmp(argv[i], "--in=", 5)) v = argv[i] + 5;
    if (v) {
      if (n >= TOKENIZE_MAX_INPUTS) return -1;
      in[n++] = v;
    }
  }
  for (int i = 0; i < npos; i++) {
    if (n >= TOKENIZE_MAX_INPUTS) return -1;
    in[n++] = pos[i];
  }
  *n_in = n;
  return 0;
}

int cmd_tokenize(int argc, char **argv) {
  const char *in1 = NULL, *prefix = NULL, *tok_dir = NULL;
  double val_fraction = 0;
  int split = 0, ids_mode = 0, decode_mode = 0;
  arg_spec_t specs[] = {
      {"--in", NULL, ARG_STRING, &in1, "FILE", "text to tokenize (repeat --in, or list more files after it)"},
      {"--out", NULL, ARG_STRING, &prefix, "PREFIX", "write PREFIX_train.bin (and PREFIX_val.bin)"},
      {"--val-fraction", NULL, ARG_DOUBLE, &val_fraction, "F",
       "the last F of the tokens go to PREFIX_val.bin (default 0: no validation shard; train then holds out the "
       "last 10% of PREFIX_train.bin)",
       .min = 0, .max = 0.5},
      {"--split-docs", NULL, ARG_FLAG, &split, NULL, "a document per block of lines between empty lines (default: per file)"},
      {"--tokenizer", NULL, ARG_STRING, &tok_dir, "DIR", "vocabulary directory (default: the shipped GPT-2 files)"},
      {"--ids", NULL, ARG_FLAG, &ids_mode, NULL, "print the ids of stdin's text"},
      {"--decode", NULL, ARG_FLAG, &decode_mode, NULL, "print the text of stdin's ids"},
  };
  static const char *pos[TOKENIZE_MAX_INPUTS], *inputs[TOKENIZE_MAX_INPUTS];
  int npos = TOKENIZE_MAX_INPUTS, n_in = 0;
  int rc = args_parse("tokenize", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), pos, &npos);
  if (rc) return rc > 0 ? 0 : 2;
  if (npos > 0 && !in1) {
    strata_error("tokenize: unexpected argument '%s': name input files with --in FILE (see strata tokenize --help)", pos[0]);
    return 2;
  }
  if (collect_inputs(argc, argv, pos, npos, inputs, &n_in)) {
    strata_error("tokenize: more than %d input files", TOKENIZE_MAX_INPUTS);
    return 2;
  }
  int modes = (ids_mode != 0) + (decode_mode != 0) + (n_in > 0 || prefix);
  if (modes != 1) {
    strata_error("tokenize: give one of --in FILE... --out PREFIX, --ids or --decode (see strata tokenize --help)");
    return 2;
  }
  if (!ids_mode && !decode_mode && (!n_in || !prefix)) {
    strata_error("tokenize: shards need both --in FILE and --out PREFIX");
    return 2;
  }
  char err[1024];
  tok_t *t = NULL;
  if (load_tokenizer(tok_dir, &t, err, sizeof err)) {
    strata_error("tokenize: %s", err);
    return 2;
  }
  if (ids_mode || decode_mode) {
    rc = ids_mode ? run_ids(t) : run_decode(t);
    tok_free(t);
    return rc;
  }

  tokenize_job_t j = {.tok = t, .progress = isatty(STDERR_FILENO)};
  char train_path[4096], val_path[4096], train_tmp[4200], val_tmp[4200];
  snprintf(train_path, sizeof train_path, "%s_train.bin", prefix);
  snprintf(val_path, sizeof val_path, "%s_val.bin", prefix);
  snprintf(train_tmp, sizeof train_tmp, "%s.tmp%d", train_path, (int)getpid());
  snprintf(val_tmp, sizeof val_tmp, "%s.tmp%d", val_path, (int)getpid());
  rc = 2;
  if (tok_vocab_size(t) > 65536 || tok_eot(t) < 0) {
    strata_error("tokenize: the tokenizer has %s, but llm.c shards hold uint16 tokens and start every document with "
                 "an end-of-text token",
                 tok_eot(t) < 0 ? "no end-of-text token" : "more than 65536 tokens");
    goto out;
  }
  for (int i = 0; i < n_in; i++) {
    struct stat st;
    if (stat(inputs[i], &st) || !S_ISREG(st.st_mode)) {
      strata_error("tokenize: input '%s' is not a readable file", inputs[i]);
      goto out;
    }
    j.bytes_total += (uint64_t)st.st_size;
  }
  if (!(j.out = fopen(train_tmp, "w+b"))) {
    strata_error("tokenize: cannot create '%s': %s (does the directory of --out exist?)", train_tmp, strerror(errno));
    goto out;
  }
  j.out_path = train_tmp;
  rc = 1;
  if (write_header(j.out, 0)) {
    strata_error("tokenize: cannot write '%s': %s", train_tmp, strerror(errno));
    goto out;
  }
  j.t0_s = strata_now_s();
  for (int i = 0; i < n_in; i++) {
    if (encode_file(&j, inputs[i], split, err, sizeof err)) {
      rc = strstr(err, "cannot write") ? 1 : 2;
      strata_error("tokenize: %s", err);
      goto out;
    }
  }
  progress_line(&j, 1);
  uint64_t total = j.tokens, n_val = (uint64_t)(val_fraction * (double)total);
  if (total > INT32_MAX) {
    strata_error("tokenize: %llu tokens exceed an llm.c shard's int32 count: tokenize fewer files at a time",
                 (unsigned long long)total);
    rc = 2;
    goto out;
  }
  if (val_fraction > 0 && (n_val < 2 || total - n_val < 2)) {
    strata_error("tokenize: --val-fraction %g of %llu tokens leaves a shard with fewer than 2 tokens: give more text",
                 val_fraction, (unsigned long long)total);
    rc = 2;
    goto out;
  }
  if (n_val && split_val(&j, val_tmp, n_val, err, sizeof err)) {
    strata_error("tokenize: %s", err);
    goto out;
  }
  if (write_header(j.out, j.tokens) || fflush(j.out) || fsync(fileno(j.out))) {
    strata_error("tokenize: cannot write '%s': %s", train_tmp, strerror(errno));
    goto out;
  }
  fclose(j.out);
  j.out = NULL;
  if (rename(train_tmp, train_path) || (n_val && rename(val_tmp, val_path))) {
    strata_error("tokenize: cannot rename the shards into place (%s): %s", train_path, strerror(errno));
    goto out;
  }
  double el = strata_now_s() - j.t0_s;
  printf("tokenize: %d file%s, %llu bytes -> %llu tokens (%s %llu", n_in, n_in == 1 ? "" : "s",
         (unsigned long long)j.bytes_total, (unsigned long long)total, train_path, (unsigned long long)j.tokens);
  if (n_val) printf(", %s %llu", val_path, (unsigned long long)n_val);
  printf(") in %.2f s, %.1f MB/s\n", el, el > 0 ? j.bytes_total / 1e6 / el : 0.0);
  rc = 0;
out:
  if (j.out) fclose(j.out);
  if (rc) unlink(train_tmp), unlink(val_tmp);
  free(j.u16);
  tok_ids_free(&j.ids);
  tok_free(t);
  return rc;
}
