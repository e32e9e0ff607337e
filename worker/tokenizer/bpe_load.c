/* bpe_load.c -- reading byte-level BPE vocabularies: OpenAI's encoder.json + vocab.bpe,
 * Hugging Face's vocab.json + merges.txt, and Hugging Face tokenizer.json (tokenizer.h). Every
 * refusal names the file and what is wrong with it. */
#include "bpe_impl.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datapath.h"
#include "util.h"

#define BPE_MAX_FILE_BYTES (1ull << 30) /* a vocabulary file larger than 1 GiB is not one */

/* Reads a whole regular file into a NUL-terminated buffer. */
static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen) {
  FILE *f = strata_fopen_regular(path);
  if (!f) return strata_fail(err, errlen, "tokenizer file '%s' cannot be opened: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) || (unsigned long long)st.st_size > BPE_MAX_FILE_BYTES) {
    fclose(f);
    return strata_fail(err, errlen, "tokenizer file '%s' is larger than 1 GiB or unreadable", path);
  }
  char *b = malloc((size_t)st.st_size + 1);
  if (!b) {
    fclose(f);
    return strata_fail(err, errlen, "out of memory reading '%s'", path);
  }
  size_t got = fread(b, 1, (size_t)st.st_size, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || got != (size_t)st.st_size) {
    free(b);
    return strata_fail(err, errlen, "tokenizer file '%s' could not be read whole", path);
  }
  b[got] = '\0';
  *buf = b, *len = got;
  return 0;
}

static json_object *parse_json(const char *path, char *err, size_t errlen) {
  char *text;
  size_t len;
  if (read_file(path, &text, &len, err, errlen)) return NULL;
  json_tokener *tk = json_tokener_new_ex(64);
  json_object *o = tk ? json_tokener_parse_ex(tk, text, (int)len) : NULL;
  enum json_tokener_error je = tk ? json_tokener_get_error(tk) : json_tokener_error_size;
  size_t at = tk ? json_tokener_get_parse_end(tk) : 0;
  if (tk) json_tokener_free(tk);
  free(text);
  if (!o || je != json_tokener_success) {
    json_object_put(o);
    strata_fail(err, errlen, "tokenizer file '%s' is not valid JSON (%s, near byte %zu)", path,
                json_tokener_error_desc(je), at);
    return NULL;
  }
  return o;
}

/* Largest id in a {"token": id} object + 1, checking every value is an id. */
static int vocab_size(const char *path, json_object *vocab, int *n, char *err, size_t errlen) {
  int64_t max = -1;
  json_object_object_foreach(vocab, key, val) {
    if (!json_object_is_type(val, json_type_int))
      return strata_fail(err, errlen, "tokenizer file '%s': the id of token \"%.40s\" is not an integer", path, key);
    int64_t id = json_object_get_int64(val);
    if (id < 0 || id >= (1 << 24))
      return strata_fail(err, errlen, "tokenizer file '%s': token \"%.40s\" has id %lld, outside [0, 16777216)", path,
                         key, (long long)id);
    if (id > max) max = id;
  }
  if (max < 255) return strata_fail(err, errlen, "tokenizer file '%s' holds %lld tokens, fewer than the 256 bytes", path, (long long)max + 1);
  *n = (int)max + 1;
  return 0;
}

/* Adds every token of a {"token": id} object (strings in byte-to-unicode form). A token whose
 * text is in `special` (a NULL-terminated list) is added as special, by its text. */
static int add_vocab(tok_t *t, const char *path, json_object *vocab, const char *const *special, char *err,
                     size_t errlen) {
  char *bytes = NULL;
  size_t cap = 0;
  int rc = 0;
  char sub[512];
  json_object_object_foreach(vocab, key, val) {
    size_t klen = strlen(key);
    int is_special = 0;
    for (int i = 0; special && special[i]; i++) is_special |= !strcmp(special[i], key);
    if (klen > cap && !(bytes = realloc(bytes, cap = klen * 2 + 16))) {
      rc = strata_fail(err, errlen, "out of memory reading '%s'", path);
      break;
    }
    long n;
    if (is_special) {
      memcpy(bytes, key, klen), n = (long)klen;
    } else if ((n = bpe_unicode_to_bytes(key, klen, bytes)) < 0) {
      rc = strata_fail(err, errlen,
                       "tokenizer file '%s': token \"%.40s\" is not written in GPT-2's byte-to-unicode alphabet, so this "
                       "is not a byte-level BPE vocabulary",
                       path, key);
      break;
    }
    if (bpe_add_token(t, (int32_t)json_object_get_int(val), bytes, (size_t)n, is_special, sub, sizeof sub)) {
      rc = strata_fail(err, errlen, "tokenizer file '%s': %s", path, sub);
      break;
    }
  }
  free(bytes);
  return rc;
}

/* One merge "left right" (left and right in byte-to-unicode form). */
static int add_merge_text(tok_t *t, const char *l, size_t ll, const char *r, size_t rl, const char *path,
                          const char *where, char *err, size_t errlen) {
  char lb[512], rb[512], sub[256];
  long ln = ll < sizeof lb ? bpe_unicode_to_bytes(l, ll, lb) : -1;
  long rn = rl < sizeof rb ? bpe_unicode_to_bytes(r, rl, rb) : -1;
  int32_t li = ln > 0 ? bpe_lookup(t, lb, (size_t)ln) : -1;
  int32_t ri = rn > 0 ? bpe_lookup(t, rb, (size_t)rn) : -1;
  if (li < 0 || ri < 0)
    return strata_fail(err, errlen, "tokenizer file '%s' %s: merge \"%.*s %.*s\" names a token that is not in the vocabulary",
                       path, where, (int)(ll > 40 ? 40 : ll), l, (int)(rl > 40 ? 40 : rl), r);
  if (bpe_add_merge(t, li, ri, sub, sizeof sub))
    return strata_fail(err, errlen, "tokenizer file '%s' %s: merge \"%.*s %.*s\": %s", path, where,
                       (int)(ll > 40 ? 40 : ll), l, (int)(rl > 40 ? 40 : rl), r, sub);
  return 0;
}

/* vocab.bpe / merges.txt: one "left right" per line, a "#version" first line skipped. */
static int add_merges_file(tok_t *t, const char *path, char *err, size_t errlen) {
  char *text;
  size_t len;
  if (read_file(path, &text, &len, err, errlen)) return -1;
  size_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  int rc = bpe_reserve_merges(t, lines, err, errlen);
  size_t lineno = 0;
  for (char *p = text; rc == 0 && p < text + len;) {
    char *eol = memchr(p, '\n', (size_t)(text + len - p));
    if (!eol) eol = text + len;
    lineno++;
    size_t ll = (size_t)(eol - p);
    if (ll && p[ll - 1] == '\r') ll--;
    if (ll > 0 && !(lineno == 1 && !strncmp(p, "#version", 8))) {
      char *sp = memchr(p, ' ', ll);
      char where[64];
      snprintf(where, sizeof where, "line %zu", lineno);
      if (!sp || sp == p || sp + 1 == p + ll || memchr(sp + 1, ' ', (size_t)(p + ll - sp - 1)))
        rc = strata_fail(err, errlen, "tokenizer file '%s' line %zu: expected a merge \"left right\", got \"%.*s\"",
                         path, lineno, (int)(ll > 60 ? 60 : ll), p);
      else
        rc = add_merge_text(t, p, (size_t)(sp - p), sp + 1, (size_t)(p + ll - sp - 1), path, where, err, errlen);
    }
    p = eol + 1;
  }
  free(text);
  return rc;
}

int tok_load_files(const char *vocab_json, const char *merges_txt, tok_t **out, char *err, size_t errlen) {
  *out = NULL;
  tok_t *t = NULL;
  json_object *vocab = parse_json(vocab_json, err, errlen);
  if (!vocab) return -1;
  static const char *const special[] = {"<|endoftext|>", NULL};
  int n, rc = -1;
  if (!json_object_is_type(vocab, json_type_object)) {
    strata_fail(err, errlen, "tokenizer file '%s' is not a JSON object {\"token\": id, ...}", vocab_json);
    goto out;
  }
  if (vocab_size(vocab_json, vocab, &n, err, errlen) || bpe_new(n, &t, err, errlen) ||
      add_vocab(t, vocab_json, vocab, special, err, errlen) || add_merges_file(t, merges_txt, err, errlen))
    goto out;
  char sub[512];
  if (bpe_finish(t, NULL, sub, sizeof sub)) {
    strata_fail(err, errlen, "tokenizer files '%s' and '%s': %s", vocab_json, merges_txt, sub);
    goto out;
  }
  *out = t, t = NULL, rc = 0;
out:
  json_object_put(vocab);
  tok_free(t);
  return rc;
}

/* ---- tokenizer.json */

/* The pre-tokenizer's regex and its ByteLevel step: `pattern` is the Split pattern (NULL:
 * GPT-2's, from ByteLevel's use_regex). Refuses what is not byte-level BPE. */
static int hf_pretokenizer(const char *path, json_object *pre, const char **pattern, char *err, size_t errlen) {
  json_object *type, *items, *v;
  if (!pre || !json_object_object_get_ex(pre, "type", &type))
    return strata_fail(err, errlen, "tokenizer file '%s' has no pre_tokenizer, so it is not byte-level BPE", path);
  const char *ty = json_object_get_string(type);
  if (!strcmp(ty, "ByteLevel")) {
    if (json_object_object_get_ex(pre, "add_prefix_space", &v) && json_object_get_boolean(v))
      return strata_fail(err, errlen, "tokenizer file '%s': a ByteLevel pre-tokenizer with add_prefix_space is not supported", path);
    if (json_object_object_get_ex(pre, "use_regex", &v) && !json_object_get_boolean(v))
      return strata_fail(err, errlen, "tokenizer file '%s': a ByteLevel pre-tokenizer without its regex needs a Split before it", path);
    *pattern = NULL;
    return 0;
  }
  if (strcmp(ty, "Sequence") || !json_object_object_get_ex(pre, "pretokenizers", &items) ||
      !json_object_is_type(items, json_type_array))
    return strata_fail(err, errlen, "tokenizer file '%s': pre_tokenizer of type %s is not byte-level BPE's (ByteLevel, or a "
                       "Sequence of Split and ByteLevel)", path, ty);
  int have_split = 0, have_bytelevel = 0;
  for (size_t i = 0; i < json_object_array_length(items); i++) {
    json_object *it = json_object_array_get_idx(items, i), *ity, *pat, *re;
    const char *s = json_object_object_get_ex(it, "type", &ity) ? json_object_get_string(ity) : "";
    if (!strcmp(s, "Split") && !have_split && json_object_object_get_ex(it, "pattern", &pat) &&
        json_object_object_get_ex(pat, "Regex", &re)) {
      *pattern = json_object_get_string(re);
      have_split = 1;
    } else if (!strcmp(s, "ByteLevel")) {
      if (json_object_object_get_ex(it, "use_regex", &v) && json_object_get_boolean(v) && !have_split) *pattern = NULL, have_split = 1;
      have_bytelevel = 1;
    } else {
      return strata_fail(err, errlen, "tokenizer file '%s': pre-tokenizer step %zu (%s) is not supported (only Split with "
                         "a Regex, then ByteLevel)", path, i, s);
    }
  }
  if (!have_bytelevel || !have_split)
    return strata_fail(err, errlen, "tokenizer file '%s': the pre-tokenizer needs a Split regex and a ByteLevel step", path);
  return 0;
}

int tok_load_hf_json(const char *path, tok_t **out, char *err, size_t errlen) {
  *out = NULL;
  tok_t *t = NULL;
  const char **special = NULL;
  int rc = -1, n;
  json_object *root = parse_json(path, err, errlen), *model, *v, *vocab, *merges, *added = NULL;
  if (!root) return -1;
  if (!json_object_object_get_ex(root, "model", &model) || !json_object_object_get_ex(model, "type", &v) ||
      strcmp(json_object_get_string(v), "BPE")) {
    strata_fail(err, errlen, "tokenizer file '%s' does not hold a BPE model (\"model\": {\"type\": \"BPE\"})", path);
    goto out;
  }
  if (json_object_object_get_ex(root, "normalizer", &v) && v) {
    strata_fail(err, errlen, "tokenizer file '%s' has a normalizer, which byte-level BPE does not use (not supported)", path);
    goto out;
  }
  json_object *pre = NULL;
  json_object_object_get_ex(root, "pre_tokenizer", &pre);
  const char *pattern = NULL;
  if (hf_pretokenizer(path, pre, &pattern, err, errlen)) goto out;
  if (!json_object_object_get_ex(model, "vocab", &vocab) || !json_object_is_type(vocab, json_type_object) ||
      !json_object_object_get_ex(model, "merges", &merges) || !json_object_is_type(merges, json_type_array)) {
    strata_fail(err, errlen, "tokenizer file '%s': model.vocab (an object) or model.merges (an array) is missing", path);
    goto out;
  }
  /* added tokens: the special ones are special tokens (by their text, not byte-to-unicode) */
  json_object_object_get_ex(root, "added_tokens", &added);
  size_t n_added = added && json_object_is_type(added, json_type_array) ? json_object_array_length(added) : 0;
  special = calloc(n_added + 1, sizeof *special);
  if (!special) {
    strata_fail(err, errlen, "out of memory reading '%s'", path);
    goto out;
  }
  size_t ns = 0;
  for (size_t i = 0; i < n_added; i++) {
    json_object *a = json_object_array_get_idx(added, i), *content, *sp;
    if (json_object_object_get_ex(a, "content", &content) && json_object_object_get_ex(a, "special", &sp) &&
        json_object_get_boolean(sp))
      special[ns++] = json_object_get_string(content);
  }
  if (vocab_size(path, vocab, &n, err, errlen)) goto out;
  for (size_t i = 0; i < n_added; i++) { /* added tokens outside model.vocab widen it */
    json_object *a = json_object_array_get_idx(added, i), *id;
    if (json_object_object_get_ex(a, "id", &id) && json_object_get_int(id) >= n && json_object_get_int(id) < (1 << 24))
      n = json_object_get_int(id) + 1;
  }
  if (bpe_new(n, &t, err, errlen) || add_vocab(t, path, vocab, special, err, errlen)) goto out;
  for (size_t i = 0; i < n_added; i++) {
    json_object *a = json_object_array_get_idx(added, i), *id, *content, *sp;
    if (!json_object_object_get_ex(a, "id", &id) || !json_object_object_get_ex(a, "content", &content)) continue;
    int sp_flag = json_object_object_get_ex(a, "special", &sp) && json_object_get_boolean(sp);
    size_t have;
    if (!sp_flag || tok_token_bytes(t, json_object_get_int(id), &have)) continue; /* already in the vocab */
    char sub[256];
    const char *c = json_object_get_string(content);
    if (bpe_add_token(t, json_object_get_int(id), c, strlen(c), 1, sub, sizeof sub)) {
      strata_fail(err, errlen, "tokenizer file '%s': added token \"%.40s\": %s", path, c, sub);
      goto out;
    }
  }
  if (json_object_object_get_ex(model, "ignore_merges", &v)) t->ignore_merges = json_object_get_boolean(v);
  size_t nm = json_object_array_length(merges);
  if (bpe_reserve_merges(t, nm, err, errlen)) goto out;
  for (size_t i = 0; i < nm; i++) {
    json_object *m = json_object_array_get_idx(merges, i);
    char where[64];
    snprintf(where, sizeof where, "model.merges[%zu]", i);
    const char *l = NULL, *r = NULL;
    size_t ll = 0, rl = 0;
    if (json_object_is_type(m, json_type_string)) { /* "left right" */
      const char *s = json_object_get_string(m), *sp = strchr(s, ' ');
      if (sp) l = s, ll = (size_t)(sp - s), r = sp + 1, rl = strlen(sp + 1);
    } else if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2) { /* ["left", "right"] */
      l = json_object_get_string(json_object_array_get_idx(m, 0));
      r = json_object_get_string(json_object_array_get_idx(m, 1));
      if (l && r) ll = strlen(l), rl = strlen(r);
    }
    if (!l || !r || !ll || !rl) {
      strata_fail(err, errlen, "tokenizer file '%s' %s: expected \"left right\" or [\"left\", \"right\"]", path, where);
      goto out;
    }
    if (add_merge_text(t, l, ll, r, rl, path, where, err, errlen)) goto out;
  }
  char sub[512];
  if (bpe_finish(t, pattern, sub, sizeof sub)) {
    strata_fail(err, errlen, "tokenizer file '%s': %s", path, sub);
    goto out;
  }
  *out = t, t = NULL, rc = 0;
out:
  free(special);
  json_object_put(root);
  tok_free(t);
  return rc;
}

static int file_exists(const char *dir, const char *name, char *path, size_t len) {
  struct stat st;
  int n = snprintf(path, len, "%s/%s", dir, name);
  return n > 0 && (size_t)n < len && stat(path, &st) == 0;
}

int tok_dir_has_files(const char *dir) {
  char a[4096], b[4096];
  return file_exists(dir, "tokenizer.json", a, sizeof a) ||
         (file_exists(dir, "vocab.json", a, sizeof a) && file_exists(dir, "merges.txt", b, sizeof b)) ||
         (file_exists(dir, "encoder.json", a, sizeof a) && file_exists(dir, "vocab.bpe", b, sizeof b));
}

int tok_load_dir(const char *dir, tok_t **out, char *err, size_t errlen) {
  char a[4096], b[4096];
  *out = NULL;
  struct stat st;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode))
    return strata_fail(err, errlen, "tokenizer directory '%s' does not exist or is not a directory", dir);
  if (file_exists(dir, "tokenizer.json", a, sizeof a)) return tok_load_hf_json(a, out, err, errlen);
  if (file_exists(dir, "vocab.json", a, sizeof a) && file_exists(dir, "merges.txt", b, sizeof b))
    return tok_load_files(a, b, out, err, errlen);
  if (file_exists(dir, "encoder.json", a, sizeof a) && file_exists(dir, "vocab.bpe", b, sizeof b))
    return tok_load_files(a, b, out, err, errlen);
  return strata_fail(err, errlen,
                     "tokenizer directory '%s' holds none of tokenizer.json, vocab.json + merges.txt, encoder.json + "
                     "vocab.bpe: give a directory with GPT-2's vocabulary files",
                     dir);
}

int tok_load_gpt2(tok_t **out, char *err, size_t errlen) {
  char path[4096];
  *out = NULL;
  if (strata_data_path(TOK_GPT2_DIR "/encoder.json", path, sizeof path))
    return strata_fail(err, errlen, "the shipped GPT-2 vocabulary '%s' is missing (reinstall, or give --tokenizer DIR)", path);
  char *slash = strrchr(path, '/');
  if (slash) *slash = '\0';
  return tok_load_dir(path, out, err, errlen);
}

int tok_load_model(const char *dir, int vocab, tok_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (vocab == 256) return 0;
  int rc = tok_dir_has_files(dir) ? tok_load_dir(dir, out, err, errlen)
           : vocab == TOK_GPT2_VOCAB ? tok_load_gpt2(out, err, errlen) : 0;
  if (rc == 0 && *out && tok_vocab_size(*out) > vocab) {
    snprintf(err, errlen, "the tokenizer of %s has %d tokens but the model's vocabulary %d", dir,
             tok_vocab_size(*out), vocab);
    tok_free(*out);
    *out = NULL;
    rc = -1;
  }
  return rc;
}
