/* checkpoint.c -- writes and reads Strata checkpoint directories (layout and contract in
 * checkpoint.h): per-stage safetensors shards written through the model's tensor catalogue,
 * the coordinator's index / config.json / train_state.pb with per-file XXH64 checksums, the
 * atomic temp-directory-and-rename commit, and the verifying, resharding loader. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "ckpt_tokenizer.h"
#include "fault.h"
#include "log.h"
#include "safetensors.h"
#include "util.h"

#define CKPT_DIR_PREFIX "ckpt-"
#define CKPT_PATH_MAX 4096

static void join(char *buf, size_t len, const char *dir, const char *name) {
  snprintf(buf, len, "%s/%s", dir, name);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int fsync_path(const char *path, int directory) {
  int fd = open(path, (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
  size_t o = (size_t)snprintf(buf, len, "[");
  for (int d = 0; d < ndim && o < len; d++)
    o += (size_t)snprintf(buf + o, len - o, d ? ", %lld" : "%lld", (long long)shape[d]);
  if (o < len) snprintf(buf + o, len - o, "]");
}

/* mkdir -p for the parent of a checkpoint directory. */
static int mkdirs(const char *path) {
  char tmp[CKPT_PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
  return 0;
}

/* Removes a flat directory: its files, then itself. */
static int rm_flat_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  int fd = dirfd(d), rc = 0;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (unlinkat(fd, e->d_name, 0) != 0) rc = -1;
  }
  closedir(d);
  if (rmdir(dir) != 0) rc = -1;
  return rc;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

/* Sorted list of regular file names in dir (excluding `skip`); caller frees. -1 with errno
 * (ENOMEM when out of memory for the list). */
static int list_files(const char *dir, const char *skip, char ***names_out, int *n_out) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  char **names = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || (skip && !strcmp(e->d_name, skip))) continue;
    char path[CKPT_PATH_MAX];
    struct stat st;
    join(path, sizeof path, dir, e->d_name);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nn = realloc(names, sizeof(char *) * (size_t)cap);
      if (!nn) goto oom;
      names = nn;
    }
    if (!(names[n] = strdup(e->d_name))) goto oom;
    n++;
  }
  closedir(d);
  for (int i = 1; i < n; i++) /* insertion sort: a handful of names */
    for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
      char *t = names[j];
      names[j] = names[j - 1];
      names[j - 1] = t;
    }
  *names_out = names;
  *n_out = n;
  return 0;
oom:
  closedir(d);
  free_names(names, n);
  errno = ENOMEM;
  return -1;
}

/* ------------------------------------------------------------------ config.json */

/* A config.json object with its architecture and model_type, for config_write to complete. */
static json_object *config_begin(const char *architecture, const char *model_type) {
  json_object *o = json_object_new_object();
  json_object *arch = json_object_new_array();
  json_object_array_add(arch, json_object_new_string(architecture));
  json_object_object_add(o, "architectures", arch);
  json_object_object_add(o, "model_type", json_object_new_string(model_type));
  return o;
}

/* Adds torch_dtype and the bos / eos ids of the vocabulary, writes o to path (fsync'd) and
 * frees it. 0 or -1. */
static int config_write(json_object *o, int vocab, const char *path, char *err, size_t errlen) {
  int rc = -1;
  json_object_object_add(o, "torch_dtype", json_object_new_string("float32"));
  const int special = ckpt_special_token(vocab);
  json_object_object_add(o, "bos_token_id", json_object_new_int(special));
  json_object_object_add(o, "eos_token_id", json_object_new_int(special));
  size_t len;
  const char *js = json_object_to_json_string_length(
      o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
  if (!js) strata_fail(err, errlen, "config '%s': out of memory for its text", path);
  else rc = strata_write_synced("config", path, js, len, "\n", err, errlen);
  json_object_put(o);
  return rc;
}

int ckpt_write_config(const char *path, const gpt2_config_t *cfg, char *err, size_t errlen) {
  json_object *o = config_begin("GPT2LMHeadModel", "gpt2");
  json_object_object_add(o, "vocab_size", json_object_new_int(cfg->vocab));
  json_object_object_add(o, "n_positions", json_object_new_int(cfg->ctx));
  json_object_object_add(o, "n_ctx", json_object_new_int(cfg->ctx));
  json_object_object_add(o, "n_embd", json_object_new_int(cfg->dim));
  json_object_object_add(o, "n_layer", json_object_new_int(cfg->layers));
  json_object_object_add(o, "n_head", json_object_new_int(cfg->heads));
  json_object_object_add(o, "layer_norm_epsilon", json_object_new_double_s(CKPT_LAYER_NORM_EPS, "1e-05"));
  json_object_object_add(o, "activation_function", json_object_new_string("gelu_new"));
  json_object_object_add(o, "tie_word_embeddings", json_object_new_boolean(1));
  return config_write(o, cfg->vocab, path, err, errlen);
}

int ckpt_special_token(int vocab) { return vocab > CKPT_GPT2_EOT ? CKPT_GPT2_EOT : 0; }

/* GPT-2's byte-to-character map (Radford et al.'s bytes_to_unicode): the printable bytes
 * 33-126, 161-172 and 174-255 stand for themselves, the other 68 for U+0100 upwards in byte
 * order, so every byte is one visible character. Writes its UTF-8 (1 or 2 bytes) to out. */
static int byte_char_utf8(int b, char *out) {
  int cp = b;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
    int n = 0; /* the rank of b among the bytes that are remapped */
    for (int k = 0; k < b; k++)
      if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255))) n++;
    cp = 256 + n;
  }
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  out[0] = (char)(0xC0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

int ckpt_write_tokenizer(const char *dir, const gpt2_config_t *cfg, char *err, size_t errlen) {
  if (cfg->vocab != 256) return 0; /* token shards: GPT-2's own tokenizer files apply */
  /* tokenizer.json: a byte-level BPE with the 256 byte characters as its vocabulary and no
   * merges, so token id = byte value both ways (the ByteLevel pre-tokenizer maps bytes to the
   * characters above, the decoder maps them back) */
  char *js = malloc(16384);
  if (!js) return strata_fail(err, errlen, "checkpoint: out of memory for tokenizer.json");
  size_t n = (size_t)snprintf(js, 16384,
      "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
      "  \"added_tokens\": [],\n  \"normalizer\": null,\n"
      "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false},\n"
      "  \"post_processor\": null,\n"
      "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false},\n"
      "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null,"
      " \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n"
      "    \"vocab\": {");
  for (int b = 0; b < 256; b++) {
    char ch[2];
    int k = byte_char_utf8(b, ch);
    const int esc = ch[0] == '"' || ch[0] == '\\';
    n += (size_t)snprintf(js + n, 16384 - n, "%s\"%s%.*s\": %d", b ? ", " : "", esc ? "\\" : "", k, ch, b);
  }
  n += (size_t)snprintf(js + n, 16384 - n, "},\n    \"merges\": []\n  }\n}");
  char path[CKPT_PATH_MAX];
  join(path, sizeof path, dir, CKPT_TOKENIZER_FILE);
  int rc = strata_write_synced("tokenizer", path, js, n, "\n", err, errlen);
  /* tokenizer_config.json: the class AutoTokenizer builds from tokenizer.json, and bos / eos as
   * config.json has them (byte 0, drawn U+0100) */
  char eot[2];
  int k = byte_char_utf8(ckpt_special_token(cfg->vocab), eot);
  n = (size_t)snprintf(js, 16384,
      "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"model_max_length\": %d,\n"
      "  \"bos_token\": \"%.*s\",\n  \"eos_token\": \"%.*s\",\n  \"clean_up_tokenization_spaces\": false\n}",
      cfg->ctx, k, eot, k, eot);
  join(path, sizeof path, dir, CKPT_TOKENIZER_CONFIG_FILE);
  if (rc == 0) rc = strata_write_synced("tokenizer config", path, js, n, "\n", err, errlen);
  free(js);
  return rc;
}

static int cfg_int(json_object *o, const char *key, int *out, const char *path, char *err,
                   size_t errlen) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
    return strata_fail(err, errlen, "config '%s': missing or non-integer \"%s\"", path, key);
  int64_t x = json_object_get_int64(v);
  if (x <= 0 || x > (1 << 24))
    return strata_fail(err, errlen, "config '%s': \"%s\" = %lld out of range (1 .. %d)", path, key,
                       (long long)x, 1 << 24);
  *out = (int)x;
  return 0;
}

/* A number of a config.json (integer or floating point) into *out; absent: `dflt` (NAN: required). */
static int cfg_double(json_object *o, const char *key, double dflt, double *out, const char *path,
                      char *err, size_t errlen) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v) || !v) {
    if (isnan(dflt)) return strata_fail(err, errlen, "config '%s': missing \"%s\"", path, key);
    *out = dflt;
    return 0;
  }
  if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
    return strata_fail(err, errlen, "config '%s': \"%s\" is not a number", path, key);
  *out = json_object_get_double(v);
  return 0;
}

/* The GPT-2 keys of a config.json (model_type "gpt2") into cfg. 0 or -1. */
static int parse_gpt2_config(json_object *o, const char *path, gpt2_config_t *cfg, char *err,
                             size_t errlen) {
  json_object *v;
  if (cfg_int(o, "vocab_size", &cfg->vocab, path, err, errlen) ||
      cfg_int(o, "n_positions", &cfg->ctx, path, err, errlen) ||
      cfg_int(o, "n_embd", &cfg->dim, path, err, errlen) ||
      cfg_int(o, "n_layer", &cfg->layers, path, err, errlen) ||
      cfg_int(o, "n_head", &cfg->heads, path, err, errlen))
    return -1;
  if (cfg->dim % cfg->heads != 0)
    return strata_fail(err, errlen, "config '%s': n_embd %d is not divisible by n_head %d", path,
                       cfg->dim, cfg->heads);
  if (json_object_object_get_ex(o, "layer_norm_epsilon", &v)) {
    double eps = json_object_get_double(v);
    if (!(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)) ||
        fabs(eps - CKPT_LAYER_NORM_EPS) > 1e-12)
      return strata_fail(err, errlen, "config '%s': layer_norm_epsilon %g is not supported; Strata's GPT-2 uses 1e-05",
                         path, eps);
  }
  if (json_object_object_get_ex(o, "activation_function", &v)) {
    const char *a = json_object_get_string(v);
    if (!a || (strcmp(a, "gelu_new") && strcmp(a, "gelu_pytorch_tanh")))
      return strata_fail(err, errlen, "config '%s': activation_function \"%s\" is not supported; expected \"gelu_new\"",
                         path, a ? a : "?");
  }
  if (json_object_object_get_ex(o, "n_inner", &v) && v && json_object_get_int64(v) != 4LL * cfg->dim)
    return strata_fail(err, errlen, "config '%s': n_inner %lld is not supported; Strata's GPT-2 MLP is 4 x n_embd = %d "
                       "(null or absent)", path, (long long)json_object_get_int64(v), 4 * cfg->dim);
  if (json_object_object_get_ex(o, "tie_word_embeddings", &v) && !json_object_get_boolean(v))
    return strata_fail(err, errlen, "config '%s': tie_word_embeddings false is not supported (Strata ties lm_head to wte)",
                       path);
  return 0;
}

/* The LlamaConfig keys of a config.json (model_type "llama") into cfg, with Hugging Face's
 * defaults for the optional ones (num_key_value_heads = num_attention_heads, rms_norm_eps 1e-6,
 * rope_theta 10000, tie_word_embeddings false); refuses what llama.h does not compute. 0 or -1. */
static int parse_llama_config(json_object *o, const char *path, llama_config_t *cfg, char *err,
                              size_t errlen) {
  json_object *v;
  memset(cfg, 0, sizeof *cfg);
  if (cfg_int(o, "vocab_size", &cfg->vocab, path, err, errlen) ||
      cfg_int(o, "max_position_embeddings", &cfg->ctx, path, err, errlen) ||
      cfg_int(o, "hidden_size", &cfg->dim, path, err, errlen) ||
      cfg_int(o, "intermediate_size", &cfg->ffn, path, err, errlen) ||
      cfg_int(o, "num_hidden_layers", &cfg->layers, path, err, errlen) ||
      cfg_int(o, "num_attention_heads", &cfg->heads, path, err, errlen))
    return -1;
  cfg->kv_heads = cfg->heads;
  if (json_object_object_get_ex(o, "num_key_value_heads", &v) && v &&
      cfg_int(o, "num_key_value_heads", &cfg->kv_heads, path, err, errlen))
    return -1;
  if (cfg_double(o, "rms_norm_eps", 1e-6, &cfg->rms_norm_eps, path, err, errlen) ||
      cfg_double(o, "rope_theta", 1e4, &cfg->rope_theta, path, err, errlen))
    return -1;
  if (json_object_object_get_ex(o, "tie_word_embeddings", &v) && json_object_get_boolean(v))
    return strata_fail(err, errlen, "config '%s': tie_word_embeddings true is not supported: Strata's Llama "
                       "has its own lm_head.weight; set \"tie_word_embeddings\": false", path);
  if (json_object_object_get_ex(o, "rope_scaling", &v) && v)
    return strata_fail(err, errlen, "config '%s': rope_scaling is not supported (Strata's Llama uses plain "
                       "RoPE); set \"rope_scaling\": null", path);
  if (json_object_object_get_ex(o, "hidden_act", &v) && v &&
      strcmp(json_object_get_string(v), "silu") != 0)
    return strata_fail(err, errlen, "config '%s': hidden_act \"%s\" is not supported; Strata's Llama MLP "
                       "is SwiGLU (\"silu\")", path, json_object_get_string(v));
  const char *biases[] = {"attention_bias", "mlp_bias"};
  for (int i = 0; i < 2; i++)
    if (json_object_object_get_ex(o, biases[i], &v) && json_object_get_boolean(v))
      return strata_fail(err, errlen, "config '%s': %s true is not supported (Strata's Llama has no "
                         "biases); set it false", path, biases[i]);
  if (json_object_object_get_ex(o, "head_dim", &v) && v &&
      json_object_get_int64(v) * cfg->heads != cfg->dim)
    return strata_fail(err, errlen, "config '%s': head_dim %lld is not hidden_size / num_attention_heads = "
                       "%d / %d; Strata's Llama needs that", path, (long long)json_object_get_int64(v),
                       cfg->dim, cfg->heads);
  char msg[400];
  if (llama_config_check(cfg, msg, sizeof msg))
    return strata_fail(err, errlen, "config '%s': %s", path, msg);
  return 0;
}

int ckpt_read_model_config_file(const char *path, ckpt_model_config_t *cfg, char *err,
                                size_t errlen) {
  int rc = -1;
  char *text = NULL;
  json_object *o = NULL;
  json_tokener *tok = NULL;
  memset(cfg, 0, sizeof *cfg);
  FILE *fp = strata_fopen_regular(path);
  if (!fp) return strata_fail(err, errlen, "config '%s': cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || st.st_size <= 0 || (uint64_t)st.st_size > CKPT_MAX_CONFIG_BYTES) {
    strata_fail(err, errlen, "config '%s': empty or larger than %u bytes", path, CKPT_MAX_CONFIG_BYTES);
    goto exit;
  }
  text = malloc((size_t)st.st_size);
  tok = json_tokener_new();
  if (!text || !tok) {
    strata_fail(err, errlen, "config '%s': out of memory for reading %lld bytes", path, (long long)st.st_size);
    goto exit;
  }
  if (fread(text, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
    strata_fail(err, errlen, "config '%s': read failed", path);
    goto exit;
  }
  o = json_tokener_parse_ex(tok, text, (int)st.st_size);
  if (!o || !json_object_is_type(o, json_type_object)) {
    strata_fail(err, errlen, "config '%s': not a JSON object", path);
    goto exit;
  }
  json_object *v;
  const char *type = json_object_object_get_ex(o, "model_type", &v) && json_object_is_type(v, json_type_string)
                         ? json_object_get_string(v) : NULL;
  if (type && !strcmp(type, "gpt2")) {
    cfg->arch = CKPT_ARCH_GPT2;
    if (parse_gpt2_config(o, path, &cfg->shape, err, errlen)) goto exit;
  } else if (type && !strcmp(type, "llama")) {
    cfg->arch = CKPT_ARCH_LLAMA;
    if (parse_llama_config(o, path, &cfg->llama, err, errlen)) goto exit;
    cfg->shape = (gpt2_config_t){cfg->llama.vocab, cfg->llama.ctx, cfg->llama.layers,
                                 cfg->llama.heads, cfg->llama.dim};
  } else {
    strata_fail(err, errlen, "config '%s': \"model_type\" is %s%s%s; Strata's models are GPT-2 (\"gpt2\") "
                "and Llama (\"llama\")", path, type ? "\"" : "", type ? type : "missing", type ? "\"" : "");
    goto exit;
  }
  rc = 0;
exit:
  if (tok) json_tokener_free(tok);
  json_object_put(o);
  free(text);
  fclose(fp);
  return rc;
}

/* The GPT-2 shape of a config read by ckpt_read_model_config(_file), or -1 for a Llama one. */
static int gpt2_only(const char *where, const ckpt_model_config_t *mc, gpt2_config_t *cfg, char *err,
                     size_t errlen) {
  if (mc->arch != CKPT_ARCH_GPT2)
    return strata_fail(err, errlen, "'%s' is a Llama model (config.json model_type \"llama\"); this "
                       "command reads GPT-2 models only (strata train --arch llama, eval, infer and serve "
                       "take Llama models)", where);
  *cfg = mc->shape;
  return 0;
}

int ckpt_read_config_file(const char *path, gpt2_config_t *cfg, char *err, size_t errlen) {
  ckpt_model_config_t mc;
  if (ckpt_read_model_config_file(path, &mc, err, errlen)) return -1;
  return gpt2_only(path, &mc, cfg, err, errlen);
}

int ckpt_read_model_config(const char *dir, ckpt_model_config_t *cfg, char *err, size_t errlen) {
  char path[CKPT_PATH_MAX];
  join(path, sizeof path, dir, CKPT_CONFIG_FILE);
  FILE *fp = strata_fopen_regular(path);
  if (!fp)
    return strata_fail(err, errlen, "checkpoint '%s': cannot open %s: %s (is this a checkpoint directory?)",
                       dir, CKPT_CONFIG_FILE, strerror(errno));
  fclose(fp);
  return ckpt_read_model_config_file(path, cfg, err, errlen);
}

int ckpt_read_config(const char *dir, gpt2_config_t *cfg, char *err, size_t errlen) {
  ckpt_model_config_t mc;
  if (ckpt_read_model_config(dir, &mc, err, errlen)) return -1;
  return gpt2_only(dir, &mc, cfg, err, errlen);
}

/* A double as the shortest decimal text that reads back as the same double. */
static json_object *json_exact_double(double x) {
  char num[40];
  if (x == floor(x) && fabs(x) < 1e15) { /* 10000.0, as Python writes it */
    snprintf(num, sizeof num, "%.1f", x);
    return json_object_new_double_s(x, num);
  }
  for (int digits = 1; digits <= 17; digits++) {
    snprintf(num, sizeof num, "%.*g", digits, x);
    if (strtod(num, NULL) == x) break;
  }
  return json_object_new_double_s(x, num);
}

const char *ckpt_arch_name(ckpt_arch_t arch) { return arch == CKPT_ARCH_LLAMA ? "llama" : "gpt"; }

int ckpt_write_llama_config(const char *path, const llama_config_t *cfg, char *err, size_t errlen) {
  json_object *o = config_begin("LlamaForCausalLM", "llama");
  json_object_object_add(o, "vocab_size", json_object_new_int(cfg->vocab));
  json_object_object_add(o, "max_position_embeddings", json_object_new_int(cfg->ctx));
  json_object_object_add(o, "hidden_size", json_object_new_int(cfg->dim));
  json_object_object_add(o, "intermediate_size", json_object_new_int(cfg->ffn));
  json_object_object_add(o, "num_hidden_layers", json_object_new_int(cfg->layers));
  json_object_object_add(o, "num_attention_heads", json_object_new_int(cfg->heads));
  json_object_object_add(o, "num_key_value_heads", json_object_new_int(cfg->kv_heads));
  json_object_object_add(o, "head_dim", json_object_new_int(cfg->dim / cfg->heads));
  json_object_object_add(o, "rms_norm_eps", json_exact_double(cfg->rms_norm_eps));
  json_object_object_add(o, "rope_theta", json_exact_double(cfg->rope_theta));
  json_object_object_add(o, "rope_scaling", NULL);
  json_object_object_add(o, "hidden_act", json_object_new_string("silu"));
  json_object_object_add(o, "attention_bias", json_object_new_boolean(0));
  json_object_object_add(o, "mlp_bias", json_object_new_boolean(0));
  json_object_object_add(o, "tie_word_embeddings", json_object_new_boolean(0));
  return config_write(o, cfg->vocab, path, err, errlen);
}

/* ------------------------------------------------------------------ writing */

void ckpt_step_dir(char *buf, size_t len, const char *run_dir, uint64_t step) {
  snprintf(buf, len, "%s/" CKPT_DIR_PREFIX "%08llu", run_dir, (unsigned long long)step);
}

int ckpt_begin(const char *dir, char *tmp_out, size_t tmp_len, char *err, size_t errlen) {
  char parent[CKPT_PATH_MAX];
  snprintf(parent, sizeof parent, "%s", dir);
  size_t n = strlen(parent);
  while (n > 1 && parent[n - 1] == '/') parent[--n] = 0; /* "run/ckpt/" -> "run/ckpt" */
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = 0;
    if (mkdirs(parent) != 0)
      return strata_fail(err, errlen, "checkpoint '%s': cannot create parent directory '%s': %s", dir, parent,
                         strerror(errno));
  }
  if ((size_t)snprintf(tmp_out, tmp_len, "%.*s.tmp-XXXXXX", (int)n, dir) >= tmp_len)
    return strata_fail(err, errlen, "checkpoint '%s': path too long", dir);
  if (!mkdtemp(tmp_out))
    return strata_fail(err, errlen, "checkpoint '%s': cannot create temporary directory '%s': %s", dir,
                       tmp_out, strerror(errno));
  chmod(tmp_out, 0755); /* mkdtemp makes it 0700; a published checkpoint is world-readable */
  return 0;
}

void ckpt_abort(const char *tmp_dir) {
  if (tmp_dir && *tmp_dir) rm_flat_dir(tmp_dir);
}

size_t ckpt_tensors_full_numel(const gpt2_tensor_t *tensors, int num_tensors) {
  size_t n = 0;
  for (int i = 0; i < num_tensors; i++) n += tensors[i].full_numel;
  return n;
}

size_t ckpt_full_numel(const gpt2_model_t *m) { return ckpt_tensors_full_numel(m->tensors, m->num_tensors); }

int ckpt_assemble_tensors(const gpt2_tensor_t *tensors, int num_tensors, size_t num_params, const float *parts,
                          float *full, char *err, size_t errlen) {
  size_t off = 0;
  for (int i = 0; i < num_tensors; i++) {
    const gpt2_tensor_t *t = &tensors[i];
    for (int r = 0; r < t->tp_size; r++)
      if (gpt2_tensor_unslice(t, r, parts + (size_t)r * num_params + t->offset, full + off))
        return strata_fail(err, errlen, "checkpoint: cannot assemble tensor '%s' from tensor-parallel "
                           "rank %d of %d", t->name, r, t->tp_size);
    off += t->full_numel;
  }
  return 0;
}

int ckpt_assemble_full(const gpt2_model_t *m, const float *parts, float *full, char *err,
                       size_t errlen) {
  return ckpt_assemble_tensors(m->tensors, m->num_tensors, m->num_params, parts, full, err, errlen);
}

/* The tensors a checkpoint writes or reads: a model's catalogue and flat parameters, of either
 * family (a GPT-2 shard, a whole Llama model). */
typedef struct {
  const gpt2_tensor_t *tensors;
  int num_tensors;
  float *params;
  int has_embed; /* 0: a later GPT-2 stage, whose tied wte.weight stage 0 writes */
  int tp_rank;
  int bf16;      /* 1: the weights are bf16 values (the model's bf16_params): written as BF16 */
} tensor_set_t;

static tensor_set_t gpt2_set(const gpt2_model_t *m) {
  return (tensor_set_t){m->tensors, m->num_tensors, m->params, m->range.has_embed, m->range.tp_rank,
                        m->bf16_params};
}

static tensor_set_t llama_set(const llama_model_t *m) {
  return (tensor_set_t){m->tensors, m->num_tensors, m->params, 1, m->range.tp_rank, m->bf16_params};
}

/* The n values at src as bf16 bits into dst when every one is exactly a bf16 (its low 16 bits
 * zero, so the narrowing loses nothing); 0 then, -1 (dst partly written) otherwise. */
static int narrow_exact(uint16_t *dst, const float *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u = bf16_f32_bits(src[i]);
    if (u & 0xffffu) return -1;
    dst[i] = (uint16_t)(u >> 16);
  }
  return 0;
}

/* Writes the shard's tensors from flat buffers: whole tensors (`full`: tensor i at the sum of the
 * full_numel before it, full_shape) or this rank's parts (m's layout and shapes). */
static int write_shard(const char *tmp_dir, const tensor_set_t *m, const float *params,
                       const float *exp_avg, const float *exp_avg_sq, int full, int stage,
                       int num_stages, char *err, size_t errlen) {
  int rc = -1, n = 0;
  if (num_stages < 1 || stage < 0 || stage >= num_stages)
    return strata_fail(err, errlen, "checkpoint: stage %d of %d is out of range", stage, num_stages);
  if ((exp_avg == NULL) != (exp_avg_sq == NULL))
    return strata_fail(err, errlen, "checkpoint: pass both AdamW moments (exp_avg, exp_avg_sq) or neither");
  st_tensor_desc_t *w = calloc((size_t)m->num_tensors + 1, sizeof *w);
  st_tensor_desc_t *o = calloc(2 * (size_t)m->num_tensors + 1, sizeof *o);
  char (*names)[2][96] = calloc((size_t)m->num_tensors + 1, sizeof *names);
  uint16_t *b16 = NULL; /* bf16 weights: their narrowed copy, tensor by tensor */
  size_t b16_used = 0;
  if (m->bf16) {
    size_t total = 0;
    for (int i = 0; i < m->num_tensors; i++) total += full ? m->tensors[i].full_numel : m->tensors[i].numel;
    b16 = malloc(sizeof(uint16_t) * (total + 1));
  }
  if (!w || !o || !names || (m->bf16 && !b16)) {
    strata_fail(err, errlen, "checkpoint: out of memory for the descriptors of %d tensors", m->num_tensors);
    goto exit;
  }
  size_t foff = 0;
  for (int i = 0; i < m->num_tensors; i++) {
    const gpt2_tensor_t *t = &m->tensors[i];
    const size_t off = full ? foff : t->offset;
    foff += t->full_numel;
    if (strcmp(t->name, "wte.weight") == 0 && !m->has_embed) continue; /* stage 0 writes it */
    w[n] = (st_tensor_desc_t){.name = t->name, .dtype = ST_F32, .ndim = t->ndim,
                              .data = params + off};
    for (int d = 0; d < t->ndim; d++) w[n].shape[d] = full ? t->full_shape[d] : t->shape[d];
    if (exp_avg) {
      snprintf(names[n][0], sizeof names[n][0], "exp_avg.%s", t->name);
      snprintf(names[n][1], sizeof names[n][1], "exp_avg_sq.%s", t->name);
      o[2 * n] = w[n]; /* the moments stay F32 */
      o[2 * n].name = names[n][0];
      o[2 * n].data = exp_avg + off;
      o[2 * n + 1] = w[n];
      o[2 * n + 1].name = names[n][1];
      o[2 * n + 1].data = exp_avg_sq + off;
    }
    /* bf16 weights as BF16: half the bytes, widened back exactly by the loader. A tensor that
     * is not all bf16 values (never expected) stays F32, so nothing is ever lost. */
    const size_t numel = full ? t->full_numel : t->numel;
    if (b16 && narrow_exact(b16 + b16_used, params + off, numel) == 0) {
      w[n].dtype = ST_BF16;
      w[n].data = b16 + b16_used;
      b16_used += numel;
    }
    n++;
  }
  char fname[128], path[CKPT_PATH_MAX];
  const char *meta_w[] = {"format", "pt", "producer", "strata"};
  const char *meta_o[] = {"format", "pt", "producer", "strata", "content", "AdamW exp_avg and exp_avg_sq"};
  if (num_stages == 1)
    snprintf(fname, sizeof fname, "%s", CKPT_MODEL_FILE);
  else
    st_shard_name(fname, sizeof fname, CKPT_MODEL_PREFIX, stage + 1, num_stages);
  join(path, sizeof path, tmp_dir, fname);
  if (st_write(path, w, n, meta_w, 2, NULL, NULL, err, errlen) != 0) goto exit;
  fault_point(FAULT_AT_CHECKPOINT, -1);
  if (exp_avg) {
    if (num_stages == 1)
      snprintf(fname, sizeof fname, "%s", CKPT_OPTIM_FILE);
    else
      st_shard_name(fname, sizeof fname, CKPT_OPTIM_PREFIX, stage + 1, num_stages);
    join(path, sizeof path, tmp_dir, fname);
    if (st_write(path, o, 2 * n, meta_o, 3, NULL, NULL, err, errlen) != 0) goto exit;
  }
  rc = 0;
exit:
  free(w);
  free(o);
  free(names);
  free(b16);
  return rc;
}

int ckpt_write_shard(const char *tmp_dir, const gpt2_model_t *m, const float *exp_avg,
                     const float *exp_avg_sq, int stage, int num_stages, char *err, size_t errlen) {
  if (m->range.tp_size > 1)
    return strata_fail(err, errlen, "checkpoint: stage %d is 1/%d of a tensor-parallel group; gather "
                       "its whole tensors (ckpt_assemble_full) and use ckpt_write_shard_full",
                       stage, m->range.tp_size);
  const tensor_set_t ts = gpt2_set(m);
  return write_shard(tmp_dir, &ts, m->params, exp_avg, exp_avg_sq, 0, stage, num_stages, err, errlen);
}

int ckpt_write_shard_full(const char *tmp_dir, const gpt2_model_t *m, const float *params,
                          const float *exp_avg, const float *exp_avg_sq, int stage,
                          int num_stages, char *err, size_t errlen) {
  const tensor_set_t ts = gpt2_set(m);
  return write_shard(tmp_dir, &ts, params, exp_avg, exp_avg_sq, 1, stage, num_stages, err, errlen);
}

/* Builds and writes model.safetensors.index.json from the stage files in tmp_dir. */
static int write_index(const char *tmp_dir, int num_stages, char *err, size_t errlen) {
  int rc = -1, cap = 0;
  st_index_t idx = {0};
  char fname[128], path[CKPT_PATH_MAX];
  for (int s = 0; s < num_stages; s++) {
    st_shard_name(fname, sizeof fname, CKPT_MODEL_PREFIX, s + 1, num_stages);
    join(path, sizeof path, tmp_dir, fname);
    st_file_t *f;
    if (st_open(path, &f, err, errlen) != 0) goto exit;
    for (int i = 0; i < f->num_tensors; i++) {
      const char *name = f->tensors[i].name;
      for (int j = 0; j < idx.n; j++)
        if (!strcmp(idx.names[j], name)) {
          strata_fail(err, errlen, "checkpoint: tensor '%s' written by two stages (%s and %s)", name,
                 idx.files[j], fname);
          st_close(f);
          goto exit;
        }
      if (idx.n == cap) {
        cap = cap ? 2 * cap : 64;
        char **a = realloc(idx.names, sizeof(char *) * (size_t)cap);
        if (a) idx.names = a;
        char **b = realloc(idx.files, sizeof(char *) * (size_t)cap);
        if (b) idx.files = b;
        if (!a || !b) {
          st_close(f);
          strata_fail(err, errlen, "checkpoint: out of memory for an index of %d tensors", cap);
          goto exit;
        }
      }
      int k = idx.n++; /* freed below, also when one copy failed */
      idx.names[k] = strdup(name);
      idx.files[k] = strdup(fname);
      if (!idx.names[k] || !idx.files[k]) {
        st_close(f);
        strata_fail(err, errlen, "checkpoint: out of memory for the index entry of tensor '%s'", name);
        goto exit;
      }
      idx.total_size += f->tensors[i].end - f->tensors[i].begin;
    }
    st_close(f);
  }
  join(path, sizeof path, tmp_dir, CKPT_INDEX_FILE);
  rc = st_index_write(path, &idx, NULL, NULL, err, errlen);
exit:
  for (int i = 0; i < idx.n; i++) {
    free(idx.names[i]);
    free(idx.files[i]);
  }
  free(idx.names);
  free(idx.files);
  return rc;
}

static int write_state(const char *path, const strata_train_state_t *state, char *err,
                       size_t errlen) {
  uint8_t *buf;
  size_t len;
  if (strata_train_state_encode(state, &buf, &len, err, errlen) != 0) return -1;
  int rc = strata_write_synced("checkpoint state", path, buf, len, NULL, err, errlen);
  free(buf);
  return rc;
}

/* Moves tmp_dir to dir; an existing dir is swapped out atomically and then removed. */
static int publish(const char *tmp_dir, const char *dir, char *err, size_t errlen) {
  if (rename(tmp_dir, dir) == 0) return 0;
  if (errno != ENOTEMPTY && errno != EEXIST)
    return strata_fail(err, errlen, "checkpoint: cannot rename '%s' to '%s': %s", tmp_dir, dir, strerror(errno));
  char probe[CKPT_PATH_MAX];
  join(probe, sizeof probe, dir, CKPT_STATE_FILE);
  if (access(probe, F_OK) != 0) { /* never swap out (and delete) a directory we did not write */
    strata_fail(err, errlen, "checkpoint: '%s' exists and is not a Strata checkpoint (no %s); "
                        "refusing to replace it: choose another --out directory",
           dir, CKPT_STATE_FILE);
    return -1;
  }
  if (renameat2(AT_FDCWD, tmp_dir, AT_FDCWD, dir, RENAME_EXCHANGE) != 0)
    return strata_fail(err, errlen, "checkpoint: cannot replace existing '%s' with '%s': %s", dir, tmp_dir,
                       strerror(errno));
  rm_flat_dir(tmp_dir); /* now holds the previous checkpoint */
  return 0;
}

/* ckpt_commit of either family: cfg is the shape (vocab, ctx, layers, heads, dim) the training
 * state and the tokenizer take; llama, when given, the Llama configuration config.json holds. */
static int commit(const char *tmp_dir, const char *dir, const gpt2_config_t *cfg,
                  const llama_config_t *llama, strata_train_state_t *state, int num_stages,
                  char *err, size_t errlen) {
  char path[CKPT_PATH_MAX], fname[128];
  char **names = NULL;
  int n = 0, rc = -1;
  for (int s = 0; s < num_stages; s++) { /* every stage's weights must be there */
    if (num_stages == 1)
      snprintf(fname, sizeof fname, "%s", CKPT_MODEL_FILE);
    else
      st_shard_name(fname, sizeof fname, CKPT_MODEL_PREFIX, s + 1, num_stages);
    join(path, sizeof path, tmp_dir, fname);
    if (access(path, R_OK) != 0)
      return strata_fail(err, errlen, "checkpoint: stage %d did not write '%s' into '%s'", s, fname, tmp_dir);
  }
  if (num_stages > 1 && write_index(tmp_dir, num_stages, err, errlen) != 0) return -1;
  fault_point(FAULT_AT_COMMIT, -1);
  join(path, sizeof path, tmp_dir, CKPT_CONFIG_FILE);
  if ((llama ? ckpt_write_llama_config(path, llama, err, errlen) : ckpt_write_config(path, cfg, err, errlen)) != 0)
    return -1;
  if (ckpt_write_bpe_tokenizer(tmp_dir, cfg, err, errlen) != 0) return -1;
  if (ckpt_write_tokenizer(tmp_dir, cfg, err, errlen) != 0) return -1;
  if (list_files(tmp_dir, CKPT_STATE_FILE, &names, &n) != 0)
    return strata_fail(err, errlen, "checkpoint: cannot list '%s': %s", tmp_dir, strerror(errno));
  if (n > STRATA_MAX_CKPT_FILES) {
    strata_fail(err, errlen, "checkpoint: %d files, more than the %d a train state records", n,
           STRATA_MAX_CKPT_FILES);
    goto exit;
  }
  state->n_files = 0;
  for (int i = 0; i < n; i++) {
    strata_file_sum_t *fs = &state->files[state->n_files];
    join(path, sizeof path, tmp_dir, names[i]);
    if (st_file_xxh64(path, &fs->xxh64, &fs->size_bytes, err, errlen) != 0) goto exit;
    snprintf(fs->name, sizeof fs->name, "%s", names[i]);
    state->n_files++;
  }
  state->model = (strata_model_cfg_t){cfg->vocab, cfg->ctx, cfg->layers, cfg->heads, cfg->dim};
  if (state->layout.pp != num_stages) {
    strata_fail(err, errlen, "checkpoint: state layout.pp = %d but %d stages wrote", state->layout.pp,
           num_stages);
    goto exit;
  }
  join(path, sizeof path, tmp_dir, CKPT_STATE_FILE);
  if (write_state(path, state, err, errlen) != 0) goto exit;
  if (fsync_path(tmp_dir, 1) != 0) {
    strata_fail(err, errlen, "checkpoint: fsync of '%s' failed: %s", tmp_dir, strerror(errno));
    goto exit;
  }
  if (publish(tmp_dir, dir, err, errlen) != 0) goto exit;
  char parent[CKPT_PATH_MAX];
  snprintf(parent, sizeof parent, "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash) *slash = 0; else snprintf(parent, sizeof parent, ".");
  fsync_path(*parent ? parent : "/", 1);
  rc = 0;
exit:
  free_names(names, n);
  return rc;
}

int ckpt_commit(const char *tmp_dir, const char *dir, const gpt2_config_t *cfg,
                strata_train_state_t *state, int num_stages, char *err, size_t errlen) {
  return commit(tmp_dir, dir, cfg, NULL, state, num_stages, err, errlen);
}

int ckpt_write_shard_llama(const char *tmp_dir, const llama_model_t *m, const float *exp_avg,
                           const float *exp_avg_sq, int stage, int num_stages, char *err, size_t errlen) {
  const tensor_set_t ts = llama_set(m);
  if (m->range.tp_size > 1)
    return strata_fail(err, errlen, "checkpoint: stage %d is split over %d tensor-parallel ranks; gather "
                       "its tensors (ckpt_assemble_tensors) and write them with ckpt_write_shard_full_llama",
                       stage, m->range.tp_size);
  return write_shard(tmp_dir, &ts, m->params, exp_avg, exp_avg_sq, 0, stage, num_stages, err, errlen);
}

int ckpt_write_shard_full_llama(const char *tmp_dir, const llama_model_t *m, const float *params,
                                const float *exp_avg, const float *exp_avg_sq, int stage, int num_stages,
                                char *err, size_t errlen) {
  const tensor_set_t ts = llama_set(m);
  return write_shard(tmp_dir, &ts, params, exp_avg, exp_avg_sq, 1, stage, num_stages, err, errlen);
}

int ckpt_commit_llama(const char *tmp_dir, const char *dir, const llama_config_t *cfg,
                      strata_train_state_t *state, int num_stages, char *err, size_t errlen) {
  const gpt2_config_t shape = {cfg->vocab, cfg->ctx, cfg->layers, cfg->heads, cfg->dim};
  return commit(tmp_dir, dir, &shape, cfg, state, num_stages, err, errlen);
}

int ckpt_save_llama(const char *dir, const llama_model_t *m, const float *exp_avg,
                    const float *exp_avg_sq, strata_train_state_t *state, char *err, size_t errlen) {
  char tmp[CKPT_PATH_MAX];
  const llama_config_t *lc = &m->cfg;
  const gpt2_config_t shape = {lc->vocab, lc->ctx, lc->layers, lc->heads, lc->dim};
  const tensor_set_t ts = llama_set(m);
  if (!m->range.has_embed || !m->range.has_head || m->range.layer_begin != 0 ||
      m->range.layer_end != lc->layers || m->range.tp_size > 1)
    return strata_fail(err, errlen, "checkpoint: ckpt_save_llama needs a whole model (every layer, tp = 1); "
                       "pipeline stages and tensor-parallel ranks use ckpt_write_shard_llama + ckpt_commit_llama");
  if (ckpt_begin(dir, tmp, sizeof tmp, err, errlen) != 0) return -1;
  state->layout.pp = 1;
  if (write_shard(tmp, &ts, m->params, exp_avg, exp_avg_sq, 0, 0, 1, err, errlen) != 0 ||
      commit(tmp, dir, &shape, lc, state, 1, err, errlen) != 0) {
    ckpt_abort(tmp);
    return -1;
  }
  return 0;
}

int ckpt_save(const char *dir, const gpt2_model_t *m, const float *exp_avg,
              const float *exp_avg_sq, strata_train_state_t *state, char *err, size_t errlen) {
  char tmp[CKPT_PATH_MAX];
  if (!m->range.has_embed || !m->range.has_head || m->range.layer_begin != 0 ||
      m->range.layer_end != m->cfg.layers)
    return strata_fail(err, errlen, "checkpoint: ckpt_save needs a model that owns every layer; pipeline "
                       "stages use ckpt_write_shard + ckpt_commit");
  if (ckpt_begin(dir, tmp, sizeof tmp, err, errlen) != 0) return -1;
  if (state->layout.pp == 0) state->layout.pp = 1;
  if (ckpt_write_shard(tmp, m, exp_avg, exp_avg_sq, 0, 1, err, errlen) != 0 ||
      ckpt_commit(tmp, dir, &m->cfg, state, 1, err, errlen) != 0) {
    ckpt_abort(tmp);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ reading */

int ckpt_read_state(const char *dir, strata_train_state_t *state, int verify, char *err,
                    size_t errlen) {
  char path[CKPT_PATH_MAX], msg[512];
  int rc = -1;
  uint8_t *buf = NULL;
  join(path, sizeof path, dir, CKPT_STATE_FILE);
  FILE *fp = strata_fopen_regular(path);
  if (!fp)
    return strata_fail(err, errlen, "checkpoint '%s': missing %s (%s): not a complete Strata checkpoint", dir,
                       CKPT_STATE_FILE, strerror(errno));
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || (uint64_t)st.st_size > STRATA_TRAIN_STATE_MAX_BYTES) {
    strata_fail(err, errlen, "checkpoint '%s': %s is larger than %u bytes (corrupt)", dir,
           CKPT_STATE_FILE, STRATA_TRAIN_STATE_MAX_BYTES);
    goto exit;
  }
  buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    strata_fail(err, errlen, "checkpoint '%s': out of memory for reading %s", dir, CKPT_STATE_FILE);
    goto exit;
  }
  if (fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
    strata_fail(err, errlen, "checkpoint '%s': cannot read %s", dir, CKPT_STATE_FILE);
    goto exit;
  }
  if (strata_train_state_decode(buf, (size_t)st.st_size, state, msg, sizeof msg) != 0) {
    strata_fail(err, errlen, "checkpoint '%s': %s: %s", dir, CKPT_STATE_FILE, msg);
    goto exit;
  }
  if (verify) {
    int has_config = 0, has_weights = 0;
    for (int i = 0; i < state->n_files; i++) {
      const strata_file_sum_t *fs = &state->files[i];
      uint64_t h, size;
      join(path, sizeof path, dir, fs->name);
      if (access(path, F_OK) != 0) {
        strata_fail(err, errlen, "checkpoint '%s': file '%s' is missing (recorded in %s): the "
                            "checkpoint is incomplete; resume from another one",
               dir, fs->name, CKPT_STATE_FILE);
        goto exit;
      }
      if (st_file_xxh64(path, &h, &size, msg, sizeof msg) != 0) {
        strata_fail(err, errlen, "checkpoint '%s': %s", dir, msg);
        goto exit;
      }
      if (size != fs->size_bytes || h != fs->xxh64) {
        strata_fail(err, errlen,
               "checkpoint '%s': file '%s' checksum mismatch (recorded %llu bytes, xxh64 "
               "%016llx; found %llu bytes, xxh64 %016llx): the file is corrupt or was modified",
               dir, fs->name, (unsigned long long)fs->size_bytes, (unsigned long long)fs->xxh64,
               (unsigned long long)size, (unsigned long long)h);
        goto exit;
      }
      if (!strcmp(fs->name, CKPT_CONFIG_FILE)) has_config = 1;
      if (!strcmp(fs->name, CKPT_MODEL_FILE) || !strcmp(fs->name, CKPT_INDEX_FILE)) has_weights = 1;
    }
    if (!has_config || !has_weights) {
      strata_fail(err, errlen, "checkpoint '%s': %s does not record %s", dir, CKPT_STATE_FILE,
             !has_config ? CKPT_CONFIG_FILE : "model.safetensors or its index");
      goto exit;
    }
  }
  rc = 0;
exit:
  free(buf);
  fclose(fp);
  return rc;
}

typedef struct {
  int n;
  st_file_t **files;
  char **names;
} open_set_t;

static void open_set_free(open_set_t *s) {
  for (int i = 0; i < s->n; i++) {
    st_close(s->files[i]);
    free(s->names[i]);
  }
  free(s->files);
  free(s->names);
  memset(s, 0, sizeof *s);
}

/* Finds `name` (or "transformer." + name) in the files whose names start with `prefix`. */
static const st_tensor_t *find_in(const open_set_t *s, const char *prefix, const char *name,
                                  const char **file_out) {
  char alt[160];
  snprintf(alt, sizeof alt, "transformer.%s", name);
  for (int i = 0; i < s->n; i++) {
    if (strncmp(s->names[i], prefix, strlen(prefix)) != 0) continue;
    const st_tensor_t *t = st_find(s->files[i], name);
    if (!t) t = st_find(s->files[i], alt);
    if (t) {
      if (file_out) *file_out = s->names[i];
      return t;
    }
  }
  return NULL;
}

/* Checks one checkpoint tensor (whole) against the model's logical tensor, and copies this TP
 * rank's part of it (gpt2_tensor_slice; the whole tensor at tp = 1) when dst is given. */
static int take(const char *dir, const open_set_t *s, const char *prefix, const char *ck_name,
                const gpt2_tensor_t *t, int tp_rank, float *dst, char *err, size_t errlen) {
  const char *file = NULL;
  const st_tensor_t *c = find_in(s, prefix, ck_name, &file);
  char ms[96], cs[96];
  shape_str(ms, sizeof ms, t->ndim, t->full_shape); /* a checkpoint holds whole tensors */
  if (!c) {
    if (!strcmp(prefix, CKPT_OPTIM_PREFIX))
      strata_fail(err, errlen, "checkpoint '%s': no optimizer moment '%s' (shape %s): the checkpoint "
                          "was saved without AdamW moments; load the weights only",
             dir, ck_name, ms);
    else
      strata_fail(err, errlen, "checkpoint '%s': tensor '%s' (shape %s in the model) is not in the "
                          "checkpoint: it holds a different model",
             dir, ck_name, ms);
    return -1;
  }
  shape_str(cs, sizeof cs, c->ndim, c->shape);
  int same = c->ndim == t->ndim;
  for (int d = 0; same && d < t->ndim; d++) same = c->shape[d] == t->full_shape[d];
  if (!same)
    return strata_fail(err, errlen, "checkpoint '%s': tensor '%s' has shape %s in %s but %s in the model: "
                       "the checkpoint is of another model shape",
                       dir, ck_name, cs, file, ms);
  if (c->dtype != ST_F32 && c->dtype != ST_BF16)
    return strata_fail(err, errlen, "checkpoint '%s': tensor '%s' in %s is %s; Strata loads F32 and BF16 only",
                       dir, ck_name, file, st_dtype_name(c->dtype));
  if (!dst) return 0;
  float *wide = NULL; /* BF16: the tensor widened to fp32 (exact) */
  const float *src = (const float *)c->data;
  if (c->dtype == ST_BF16) {
    wide = malloc(sizeof(float) * (c->numel + 1));
    if (!wide)
      return strata_fail(err, errlen, "checkpoint '%s': out of memory widening '%s' (%llu values)", dir, ck_name,
                         (unsigned long long)c->numel);
    const unsigned char *b = c->data; /* not necessarily 2-byte aligned */
    for (uint64_t i = 0; i < c->numel; i++) {
      uint16_t h;
      memcpy(&h, b + 2 * i, 2);
      wide[i] = bf16_to_f32(h);
    }
    src = wide;
  }
  int rc = gpt2_tensor_slice(t, t->tp_size > 1 ? tp_rank : 0, src, dst);
  free(wide);
  if (rc)
    return strata_fail(err, errlen, "checkpoint '%s': tensor-parallel rank %d is outside the "
                       "model's %d", dir, tp_rank, t->tp_size);
  return 0;
}

/* Same shapes can still hide another configuration (heads, ctx, and for Llama kv_heads, eps,
 * theta): compares the checkpoint's config.json with the model. 0, or -1 with a message. */
typedef int (*config_check_fn)(const char *dir, const ckpt_model_config_t *cc, const void *model,
                               char *err, size_t errlen);

static int gpt2_config_same(const char *dir, const ckpt_model_config_t *c, const void *model,
                            char *err, size_t errlen) {
  const gpt2_config_t *mc = &((const gpt2_model_t *)model)->cfg, *cc = &c->shape;
  if (cc->vocab != mc->vocab || cc->ctx != mc->ctx || cc->layers != mc->layers ||
      cc->heads != mc->heads || cc->dim != mc->dim)
    return strata_fail(err, errlen,
                       "checkpoint '%s' is a model with vocab=%d ctx=%d layers=%d heads=%d dim=%d, but "
                       "the model has vocab=%d ctx=%d layers=%d heads=%d dim=%d: use matching --layers "
                       "--heads --dim --ctx (and data of the same vocabulary)",
                       dir, cc->vocab, cc->ctx, cc->layers, cc->heads, cc->dim, mc->vocab, mc->ctx,
                       mc->layers, mc->heads, mc->dim);
  return 0;
}

static int llama_config_same(const char *dir, const ckpt_model_config_t *c, const void *model,
                             char *err, size_t errlen) {
  const llama_config_t *mc = &((const llama_model_t *)model)->cfg, *cc = &c->llama;
  if (cc->vocab != mc->vocab || cc->ctx != mc->ctx || cc->layers != mc->layers ||
      cc->heads != mc->heads || cc->kv_heads != mc->kv_heads || cc->dim != mc->dim ||
      cc->ffn != mc->ffn || cc->rms_norm_eps != mc->rms_norm_eps || cc->rope_theta != mc->rope_theta)
    return strata_fail(err, errlen,
                       "checkpoint '%s' is a Llama model with vocab=%d ctx=%d layers=%d heads=%d "
                       "kv_heads=%d dim=%d ffn=%d rms_norm_eps=%g rope_theta=%g, but the model has "
                       "vocab=%d ctx=%d layers=%d heads=%d kv_heads=%d dim=%d ffn=%d rms_norm_eps=%g "
                       "rope_theta=%g: use the checkpoint's shape", dir, cc->vocab, cc->ctx,
                       cc->layers, cc->heads, cc->kv_heads, cc->dim, cc->ffn, cc->rms_norm_eps,
                       cc->rope_theta, mc->vocab, mc->ctx, mc->layers, mc->heads, mc->kv_heads,
                       mc->dim, mc->ffn, mc->rms_norm_eps, mc->rope_theta);
  return 0;
}

/* ckpt_load of either family: the tensors of ts (and moments), after config.json names the
 * family `arch` and check accepts its configuration. */
static int load(const char *dir, const tensor_set_t *m, ckpt_arch_t arch, config_check_fn check,
                const void *model, float *exp_avg, float *exp_avg_sq,
                strata_train_state_t *state_out, char *err, size_t errlen) {
  int rc = -1;
  open_set_t set = {0};
  st_index_t *idx = NULL;
  ckpt_model_config_t cc;
  char path[CKPT_PATH_MAX];
  strata_train_state_t *state = malloc(sizeof *state);
  if (!state) return strata_fail(err, errlen, "checkpoint: out of memory for the train state");
  if ((exp_avg == NULL) != (exp_avg_sq == NULL)) {
    strata_fail(err, errlen, "checkpoint: pass both AdamW moments (exp_avg, exp_avg_sq) or neither");
    goto exit;
  }
  if (ckpt_read_state(dir, state, 1, err, errlen) != 0) goto exit;
  if (ckpt_read_model_config(dir, &cc, err, errlen) != 0) goto exit;
  if (cc.arch != arch) {
    strata_fail(err, errlen, "checkpoint '%s' holds a %s model but a %s model was asked to load it: "
                "pass --arch %s (or use a %s checkpoint)", dir,
                cc.arch == CKPT_ARCH_LLAMA ? "Llama" : "GPT-2", arch == CKPT_ARCH_LLAMA ? "Llama" : "GPT-2",
                ckpt_arch_name(cc.arch), arch == CKPT_ARCH_LLAMA ? "Llama" : "GPT-2");
    goto exit;
  }
  set.files = calloc((size_t)state->n_files + 1, sizeof *set.files);
  set.names = calloc((size_t)state->n_files + 1, sizeof *set.names);
  if (!set.files || !set.names) {
    strata_fail(err, errlen, "checkpoint '%s': out of memory for a list of %d files", dir, state->n_files);
    goto exit;
  }
  for (int i = 0; i < state->n_files; i++) {
    const char *name = state->files[i].name;
    if (!ends_with(name, ".safetensors")) continue;
    join(path, sizeof path, dir, name);
    if (st_open(path, &set.files[set.n], err, errlen) != 0) goto exit;
    if (!(set.names[set.n++] = strdup(name))) {
      strata_fail(err, errlen, "checkpoint '%s': out of memory for the name of %s", dir, name);
      goto exit;
    }
  }
  join(path, sizeof path, dir, CKPT_INDEX_FILE);
  if (access(path, F_OK) == 0) { /* the index must agree with the shards */
    if (st_index_read(path, &idx, err, errlen) != 0) goto exit;
    for (int i = 0; i < idx->n; i++) {
      int found = 0;
      for (int j = 0; j < set.n && !found; j++)
        found = !strcmp(set.names[j], idx->files[i]) && st_find(set.files[j], idx->names[i]);
      if (!found) {
        strata_fail(err, errlen, "checkpoint '%s': index maps '%s' to '%s', which does not hold it "
                            "(or is not recorded in %s)",
               dir, idx->names[i], idx->files[i], CKPT_STATE_FILE);
        goto exit;
      }
    }
  }
  /* two passes: validate everything, then copy, so a refused load changes nothing */
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < m->num_tensors; i++) {
      const gpt2_tensor_t *t = &m->tensors[i];
      char mname[160];
      const int tr = m->tp_rank;
      if (take(dir, &set, CKPT_MODEL_PREFIX, t->name, t, tr, pass ? m->params + t->offset : NULL,
               err, errlen) != 0)
        goto exit;
      if (!exp_avg) continue;
      snprintf(mname, sizeof mname, "exp_avg.%s", t->name);
      if (take(dir, &set, CKPT_OPTIM_PREFIX, mname, t, tr, pass ? exp_avg + t->offset : NULL, err,
               errlen) != 0)
        goto exit;
      snprintf(mname, sizeof mname, "exp_avg_sq.%s", t->name);
      if (take(dir, &set, CKPT_OPTIM_PREFIX, mname, t, tr, pass ? exp_avg_sq + t->offset : NULL,
               err, errlen) != 0)
        goto exit;
    }
    if (pass == 0 && check(dir, &cc, model, err, errlen)) goto exit;
  }
  if (state_out) *state_out = *state;
  rc = 0;
exit:
  st_index_free(idx);
  open_set_free(&set);
  free(state);
  return rc;
}

int ckpt_load(const char *dir, gpt2_model_t *m, float *exp_avg, float *exp_avg_sq,
              strata_train_state_t *state_out, char *err, size_t errlen) {
  const tensor_set_t ts = gpt2_set(m);
  return load(dir, &ts, CKPT_ARCH_GPT2, gpt2_config_same, m, exp_avg, exp_avg_sq, state_out, err,
              errlen);
}

int ckpt_load_llama(const char *dir, llama_model_t *m, float *exp_avg, float *exp_avg_sq,
                    strata_train_state_t *state_out, char *err, size_t errlen) {
  const tensor_set_t ts = llama_set(m);
  return load(dir, &ts, CKPT_ARCH_LLAMA, llama_config_same, m, exp_avg, exp_avg_sq, state_out, err,
              errlen);
}

/* ------------------------------------------------------------------ run directories */

/* Parses "ckpt-<digits>" exactly; -1 otherwise (temporaries "ckpt-N.tmp-X" do not match). */
static int parse_ckpt_name(const char *name, uint64_t *step) {
  size_t p = strlen(CKPT_DIR_PREFIX);
  if (strncmp(name, CKPT_DIR_PREFIX, p) != 0 || !name[p]) return -1;
  uint64_t v = 0;
  for (const char *c = name + p; *c; c++) {
    if (*c < '0' || *c > '9' || v > UINT64_MAX / 10) return -1;
    v = v * 10 + (uint64_t)(*c - '0');
  }
  *step = v;
  return 0;
}

typedef struct {
  uint64_t step;
  char name[256];
} ckpt_entry_t;

static int cmp_desc(const void *a, const void *b) {
  const ckpt_entry_t *x = a, *y = b;
  return x->step < y->step ? 1 : x->step > y->step ? -1 : 0;
}

static int scan_run(const char *run_dir, ckpt_entry_t **out, int *n_out, char *err, size_t errlen) {
  DIR *d = opendir(run_dir);
  if (!d)
    return strata_fail(err, errlen, "run directory '%s': cannot open: %s", run_dir, strerror(errno));
  ckpt_entry_t *v = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    uint64_t step;
    if (parse_ckpt_name(e->d_name, &step) != 0 || strlen(e->d_name) >= sizeof v->name) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      ckpt_entry_t *nv = realloc(v, sizeof *v * (size_t)cap);
      if (!nv) {
        closedir(d);
        free(v);
        return strata_fail(err, errlen, "run directory '%s': out of memory for a list of %d checkpoints", run_dir,
                           cap);
      }
      v = nv;
    }
    v[n].step = step;
    snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
    n++;
  }
  closedir(d);
  if (n) qsort(v, (size_t)n, sizeof *v, cmp_desc);
  *out = v;
  *n_out = n;
  return 0;
}

int ckpt_find_latest_logged(const char *run_dir, char *out, size_t outlen,
                            void (*on_skip)(void *ctx, const char *dir, const char *why), void *ctx,
                            char *err, size_t errlen) {
  ckpt_entry_t *v;
  int n;
  if (scan_run(run_dir, &v, &n, err, errlen) != 0) return -1;
  strata_train_state_t *st = malloc(sizeof *st);
  if (!st) {
    free(v);
    return strata_fail(err, errlen, "run directory '%s': out of memory for a train state", run_dir);
  }
  int rc = -1;
  char msg[512] = "";
  for (int i = 0; i < n; i++) {
    snprintf(out, outlen, "%s/%s", run_dir, v[i].name);
    if (ckpt_read_state(out, st, 1, msg, sizeof msg) == 0) {
      rc = 0;
      break;
    }
    if (on_skip) on_skip(ctx, out, msg);
  }
  if (rc != 0)
    strata_fail(err, errlen, "run directory '%s': no valid checkpoint (ckpt-<step>/) found%s%s",
           run_dir, *msg ? "; newest problem: " : "", msg);
  free(st);
  free(v);
  return rc;
}

int ckpt_find_latest(const char *run_dir, char *out, size_t outlen, char *err, size_t errlen) {
  return ckpt_find_latest_logged(run_dir, out, outlen, NULL, NULL, err, errlen);
}

int ckpt_prune(const char *run_dir, int keep, char *err, size_t errlen) {
  ckpt_entry_t *v;
  int n, removed = 0;
  if (keep < 1)
    return strata_fail(err, errlen, "--keep must be at least 1 (got %d)", keep);
  if (scan_run(run_dir, &v, &n, err, errlen) != 0) return -1;
  char path[CKPT_PATH_MAX];
  for (int i = keep; i < n; i++) {
    snprintf(path, sizeof path, "%s/%s", run_dir, v[i].name);
    if (rm_flat_dir(path) == 0) removed++;
  }
  free(v);
  /* stale temporaries of interrupted writes */
  DIR *d = opendir(run_dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
      if (!strncmp(e->d_name, CKPT_DIR_PREFIX, strlen(CKPT_DIR_PREFIX)) && strstr(e->d_name, ".tmp-")) {
        snprintf(path, sizeof path, "%s/%s", run_dir, e->d_name);
        if (rm_flat_dir(path) == 0) removed++;
      }
    closedir(d);
  }
  return removed;
}
