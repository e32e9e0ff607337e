/* ckpt_tokenizer.c -- the BPE tokenizer files a checkpoint carries (see ckpt_tokenizer.h). */
#include "ckpt_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datapath.h"
#include "log.h"
#include "util.h"

#define TOKFILES_MAX 3       /* tokenizer files of one directory, config included */
#define CKPT_GPT2_VOCAB 50257 /* GPT-2's vocabulary: its shipped tokenizer applies */

typedef struct {
  char name[32]; /* its name in the checkpoint */
  char *buf;
  size_t len;
} tokfile_t;

typedef struct {
  tokfile_t f[TOKFILES_MAX];
  int n;
  int has_config; /* tokenizer_config.json among f */
} tokfiles_t;

static struct {
  tokfiles_t files;
  int vocab; /* 0: nothing carried */
} carried;

static void tokfiles_free(tokfiles_t *t) {
  for (int i = 0; i < t->n; i++) free(t->f[i].buf);
  memset(t, 0, sizeof *t);
}

/* Reads dir/src into t as checkpoint file `name`. 1 if read, 0 if there is no such regular file,
 * -1 (err) if it exists but cannot be read. */
static int tokfile_read(tokfiles_t *t, const char *dir, const char *src, const char *name, char *err,
                        size_t errlen) {
  char path[4352];
  snprintf(path, sizeof path, "%s/%s", dir, src);
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  FILE *f = strata_fopen_regular(path);
  tokfile_t *tf = &t->f[t->n];
  int ok = f && (tf->buf = malloc((size_t)st.st_size + 1)) &&
           fread(tf->buf, 1, (size_t)st.st_size, f) == (size_t)st.st_size;
  if (f) fclose(f);
  if (!ok) {
    free(tf->buf);
    tf->buf = NULL;
    return strata_fail(err, errlen, "tokenizer file '%s' cannot be read: %s", path,
                       errno ? strerror(errno) : "short read");
  }
  tf->len = (size_t)st.st_size;
  snprintf(tf->name, sizeof tf->name, "%s", name);
  t->n++;
  return 1;
}

/* The tokenizer of dir in tok_load_dir's order of preference, and its tokenizer_config.json. */
static int tokfiles_load(tokfiles_t *t, const char *dir, char *err, size_t errlen) {
  static const char *const pairs[][2][2] = {
      {{"vocab.json", "vocab.json"}, {"merges.txt", "merges.txt"}},
      {{"encoder.json", "vocab.json"}, {"vocab.bpe", "merges.txt"}},
  };
  memset(t, 0, sizeof *t);
  int rc = tokfile_read(t, dir, "tokenizer.json", "tokenizer.json", err, errlen);
  for (size_t p = 0; rc == 0 && p < sizeof pairs / sizeof pairs[0]; p++) {
    rc = tokfile_read(t, dir, pairs[p][0][0], pairs[p][0][1], err, errlen);
    if (rc == 1 && (rc = tokfile_read(t, dir, pairs[p][1][0], pairs[p][1][1], err, errlen)) == 0)
      rc = strata_fail(err, errlen, "tokenizer directory '%s' has %s but no %s beside it", dir, pairs[p][0][0],
                       pairs[p][1][0]);
  }
  if (rc == 0)
    rc = strata_fail(err, errlen, "tokenizer directory '%s' holds none of tokenizer.json, vocab.json + merges.txt, "
                     "encoder.json + vocab.bpe: name a directory with a byte-level BPE tokenizer", dir);
  if (rc == 1 && (rc = tokfile_read(t, dir, "tokenizer_config.json", "tokenizer_config.json", err, errlen)) == 1)
    t->has_config = 1;
  if (rc < 0) tokfiles_free(t);
  return rc < 0 ? -1 : 0;
}

int ckpt_carry_tokenizer(const char *dir, int vocab, char *err, size_t errlen) {
  tokfiles_free(&carried.files);
  carried.vocab = 0;
  if (!dir) return 0;
  if (tokfiles_load(&carried.files, dir, err, errlen)) return -1;
  carried.vocab = vocab;
  return 0;
}

int ckpt_carried_tokenizer_vocab(void) { return carried.vocab; }

static int tokfiles_write(const tokfiles_t *t, const char *dir, const gpt2_config_t *cfg, char *err,
                          size_t errlen) {
  char path[4352];
  for (int i = 0; i < t->n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, t->f[i].name);
    if (strata_write_synced("checkpoint tokenizer", path, t->f[i].buf, t->f[i].len, NULL, err, errlen)) return -1;
  }
  if (t->has_config) return 0;
  /* as a Hugging Face gpt2 directory has it: GPT2Tokenizer over vocab.json + merges.txt (or the
   * fast tokenizer of tokenizer.json), <|endoftext|> for bos / eos / unk */
  const int fast = !strcmp(t->f[0].name, "tokenizer.json");
  char conf[512];
  int n = snprintf(conf, sizeof conf,
                   "{\"tokenizer_class\": \"%s\", \"model_max_length\": %d, \"bos_token\": "
                   "\"<|endoftext|>\", \"eos_token\": \"<|endoftext|>\", \"unk_token\": \"<|endoftext|>\", "
                   "\"add_prefix_space\": false}\n",
                   fast ? "PreTrainedTokenizerFast" : "GPT2Tokenizer", cfg->ctx);
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  return strata_write_synced("checkpoint tokenizer", path, conf, (size_t)n, NULL, err, errlen);
}

int ckpt_write_bpe_tokenizer(const char *dir, const gpt2_config_t *cfg, char *err, size_t errlen) {
  if (carried.vocab && carried.vocab == cfg->vocab) return tokfiles_write(&carried.files, dir, cfg, err, errlen);
  if (cfg->vocab != CKPT_GPT2_VOCAB) return 0;
  char shipped[4096];
  if (strata_data_path("data/gpt2/encoder.json", shipped, sizeof shipped) != 0) {
    strata_warn("checkpoint: the shipped GPT-2 vocabulary '%s' is missing, so the checkpoint carries no tokenizer",
                shipped);
    return 0;
  }
  char *slash = strrchr(shipped, '/');
  if (slash) *slash = '\0';
  tokfiles_t gpt2;
  if (tokfiles_load(&gpt2, shipped, err, errlen)) return -1;
  int rc = tokfiles_write(&gpt2, dir, cfg, err, errlen);
  tokfiles_free(&gpt2);
  return rc;
}
