/* data_tokenizer.c -- a BPE tokenizer as data.h's text encoder (see data_tokenizer.h). */
#include "data_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "data.h"
#include "log.h"
#include "tokenizer.h"
#include "util.h"

static struct {
  tok_t *tok;
  char name[4200]; /* for the log line */
} dt;

/* data_encode_fn: <|endoftext|>, then the ids of the whole file (special-token spellings are
 * ordinary text), as cmd_tokenize.c writes a document. */
static int encode_text(void *ctx, const char *path, const char *text, size_t n, int32_t **ids, size_t *n_ids,
                       char *err, size_t errlen) {
  (void)ctx;
  double t0 = strata_now_s();
  tok_ids_t v = {0};
  if (!(v.v = malloc(sizeof(int32_t) * 64))) return strata_fail(err, errlen, "out of memory encoding '%s'", path);
  v.cap = 64;
  v.v[v.n++] = tok_eot(dt.tok);
  if (tok_encode(dt.tok, text, n, 0, &v, err, errlen)) {
    tok_ids_free(&v);
    return -1;
  }
  if (strata_log_rank() <= 0)
    strata_info("%s is text, encoded with %s: %zu bytes -> %zu tokens (<|endoftext|> first) in %.2f s", path,
                dt.name, n, v.n, strata_now_s() - t0);
  *ids = v.v;
  *n_ids = v.n;
  return 0;
}

int data_tokenizer_install(const char *cmd, const char *flag, const char *ckpt) {
  char err[2048];
  int rc = 0;
  data_tokenizer_remove();
  if (flag && !strcmp(flag, "gpt2")) {
    rc = tok_load_gpt2(&dt.tok, err, sizeof err);
    snprintf(dt.name, sizeof dt.name, "GPT-2's shipped BPE tokenizer (%s)", TOK_GPT2_DIR);
  } else if (flag) {
    rc = tok_load_dir(flag, &dt.tok, err, sizeof err);
    snprintf(dt.name, sizeof dt.name, "the BPE tokenizer of %s", flag);
  } else if (ckpt) {
    gpt2_config_t cfg;
    if (ckpt_read_config(ckpt, &cfg, err, sizeof err)) return 0;
    rc = tok_load_model(ckpt, cfg.vocab, &dt.tok, err, sizeof err);
    snprintf(dt.name, sizeof dt.name, "the tokenizer of checkpoint %s", ckpt);
  }
  if (rc) {
    strata_error("%s: %s%s", cmd, flag ? "--tokenizer: " : "", err);
    return 2;
  }
  if (!dt.tok) return 0;
  if (tok_vocab_size(dt.tok) > 65536 || tok_eot(dt.tok) < 0) {
    strata_error("%s: %s has %s; text data is held as uint16 tokens and starts with the end-of-text token", cmd,
                 dt.name, tok_eot(dt.tok) < 0 ? "no end-of-text token" : "more than 65536 tokens");
    data_tokenizer_remove();
    return 2;
  }
  data_text_encoder_t enc = {encode_text, NULL, tok_vocab_size(dt.tok)};
  data_set_text_encoder(&enc);
  return 0;
}

int data_tokenizer_vocab(void) { return dt.tok ? tok_vocab_size(dt.tok) : 0; }

void data_tokenizer_remove(void) {
  data_set_text_encoder(NULL);
  tok_free(dt.tok);
  dt.tok = NULL;
}
