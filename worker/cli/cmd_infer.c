/* strata infer -- generate text with a checkpoint, the model sharded over the ranks (mpirun -np
 * T x P: P pipeline stages of T tensor-parallel ranks, --tp T), with persistent sessions. A thin front end of
 * the engine in infer.h: it reads the prompts (--prompt, --prompt-tokens or a JSONL file),
 * submits them all at once (the engine batches them), prints the results in input order, and
 * lists or deletes sessions.
 *
 * Tokens: a model with a 256-token vocabulary (what `strata train` makes from text) is
 * byte-level: token = byte, so prompts are plain text. A larger vocabulary is BPE: the
 * tokenizer files in the checkpoint directory (tokenizer.json, vocab.json + merges.txt or
 * encoder.json + vocab.bpe, tokenizer.h), or for 50257 tokens without them the shipped GPT-2
 * vocabulary, turn prompts into ids (special-token text such as <|endoftext|> becomes that
 * token) and the output back into text (bytes that are not whole UTF-8 characters become
 * U+FFFD). Without a tokenizer, give token ids (--prompt-tokens 1,2,3 or "prompt_tokens":
 * [1,2,3] in JSONL); the output text is then the ids separated by spaces.
 */
#include <json-c/json.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "checkpoint.h"
#include "strata/coll.h"
#include "commands.h"
#include "infer.h"
#include "log.h"
#include "rng.h"
#include "session.h"
#include "tokenizer.h"
#include "utf8.h"
#include "util.h"

#define INFER_MAX_PROMPTS 100000
#define INFER_MAX_LINE_BYTES (1 << 20)

static const char *usage_text =
    "Generate from a checkpoint: mpirun -np T*P strata infer --checkpoint DIR [--tp T] (--prompt TEXT\n"
    "| --prompt-tokens 1,2,3 | --prompts FILE.jsonl) [sampling flags] [--json] [--session ID].\n"
    "The layers are split over P pipeline stages (balanced as in training); with --tp T each stage\n"
    "is T ranks that split its matrices by attention heads (T divides the heads; the ranks are T x P,\n"
    "rank = stage * T + t). Any checkpoint loads on any T; greedy and seeded output is the same on\n"
    "every layout. Several prompts are generated together (continuous batching). Byte-level models (vocab\n"
    "256) take text; so do BPE models with a tokenizer (the checkpoint's tokenizer.json or vocab.json +\n"
    "merges.txt, or GPT-2's shipped vocabulary for 50257 tokens; strata tokenize --help); others take\n"
    "token ids. JSONL lines: {\"prompt\": \"...\" | \"prompt_tokens\":\n"
    "[..], \"max_tokens\": N, \"temperature\": T, \"top_k\": K, \"top_p\": P, \"seed\": S,\n"
    "\"session\": \"ID\"}; missing fields take the command-line values; numbers keep the flags'\n"
    "ranges. --json prints one object per prompt per line: index, text, tokens, token_ids,\n"
    "ttft_s, tokens_per_s, total_s,\n"
    "prompt_tokens, cached_tokens, context_tokens, session, session_source. Without --json the\n"
    "generated text goes to stdout (one line per prompt) and a statistics line per prompt\n"
    "(\"--- [i] N tokens, ttft S s, R tokens/s\") and any error to stderr.\n"
    "Sessions (--session ID, 1-64 of [A-Za-z0-9_-]) keep the context and KV cache between runs in\n"
    "--session-dir (default: <checkpoint>/../sessions): a follow-up appends its prompt to the\n"
    "history without recomputing it; a session restores only with the --tp and P that saved it.\n"
    "--list-sessions and --delete-session ID manage them.\n"
    "A Llama checkpoint (strata train --arch llama) generates the same way (KV cache, batching,\n"
    "sessions, every flag, pipeline stages, --tp T: T also divides its kv heads and SwiGLU width).\n"
    "--precision bf16 (default fp32; bf16-sr is taken as bf16) runs every matrix product (GPT-2 or\n"
    "Llama) on bf16-rounded inputs with fp32 accumulation and keeps the KV cache in\n"
    "bf16: half the memory and half the session files. The path taken is logged at start. A session\n"
    "saved in one precision resumes only in that precision.";

typedef struct {
  int32_t *tok;
  int n_tok;
  int max_tokens;
  sampler_params_t sp;
  char session[SESSION_ID_MAX + 1];
  int has_seed;  /* the JSONL line gave its own seed */
  /* result */
  int done, ok;
  infer_error_t kind; /* why it failed (ok = 0) */
  char error[512];
  int32_t *out;
  int n_out, cached, context;
  const char *source;
  double ttft_s, total_s, tps;
} prompt_t;

typedef struct {
  prompt_t *v;
  int n, cap;
} prompts_t;

static int push_prompt(prompts_t *ps, prompt_t *p) {
  if (ps->n == ps->cap) {
    int cap = ps->cap ? 2 * ps->cap : 16;
    prompt_t *nv = realloc(ps->v, sizeof *nv * cap);
    if (!nv) return -1;
    ps->v = nv;
    ps->cap = cap;
  }
  ps->v[ps->n++] = *p;
  return 0;
}

static tok_t *bpe_tok; /* the BPE tokenizer of a model of more than 256 tokens, or NULL */

/* The text of a BPE model's tokens as valid UTF-8 (U+FFFD for bytes that are not whole
 * characters): a new buffer, or NULL (no tokenizer, an id outside it, out of memory). */
static char *bpe_text(const int32_t *t, int n, size_t *len) {
  char *raw, err[256];
  size_t rlen;
  if (!bpe_tok || tok_decode(bpe_tok, t, (size_t)n, &raw, &rlen, err, sizeof err)) return NULL;
  char *out = malloc(UTF8_STREAM_OUT_BYTES(rlen) + 3);
  if (out) {
    utf8_stream_t st = {0};
    *len = utf8_stream_feed(&st, raw, rlen, out);
    *len += utf8_stream_finish(&st, out + *len);
  }
  free(raw);
  return out;
}

static int text_tokens(const char *s, size_t n, int vocab, int32_t **out, int *n_out, char *err,
                       size_t errlen) {
  if (vocab != 256 && bpe_tok) {
    tok_ids_t ids = {0};
    if (tok_encode(bpe_tok, s, n, 1, &ids, err, errlen)) return -1;
    *out = ids.v ? ids.v : malloc(sizeof(int32_t));
    *n_out = (int)ids.n;
    return *out ? 0 : -1;
  }
  if (vocab != 256) {
    snprintf(err, errlen,
             "the model's vocabulary has %d tokens, not 256 bytes, and its checkpoint carries no tokenizer "
             "(tokenizer.json, vocab.json + merges.txt): give token ids (--prompt-tokens 1,2,3 or "
             "\"prompt_tokens\": [1,2,3])",
             vocab);
    return -1;
  }
  *out = malloc(sizeof(int32_t) * (n ? n : 1));
  if (!*out) return -1;
  for (size_t i = 0; i < n; i++) (*out)[i] = (unsigned char)s[i];
  *n_out = (int)n;
  return 0;
}

static int parse_token_list(const char *s, int32_t **out, int *n_out, char *err, size_t errlen) {
  int cap = 16, n = 0;
  int32_t *v = malloc(sizeof(int32_t) * cap);
  const char *p = s;
  while (v && *p) {
    char *end;
    long x = strtol(p, &end, 10);
    if (end == p || x < 0 || x > 0x7fffffff) {
      snprintf(err, errlen, "--prompt-tokens '%s': expected comma-separated token ids like 1,2,3", s);
      free(v);
      return -1;
    }
    if (n == cap) {
      int32_t *nv = realloc(v, sizeof(int32_t) * (cap *= 2));
      if (!nv) break;
      v = nv;
    }
    v[n++] = (int32_t)x;
    p = end;
    if (*p == ',') p++;
    else if (*p) {
      snprintf(err, errlen, "--prompt-tokens '%s': expected comma-separated token ids like 1,2,3", s);
      free(v);
      return -1;
    }
  }
  *out = v;
  *n_out = n;
  return 0;
}

/* The JSONL fields that are numbers, and the flag of the same meaning whose range they keep. */
static const struct {
  const char *key, *flag;
} number_fields[] = {{"max_tokens", "--max-tokens"}, {"temperature", "--temperature"},
                     {"top_p", "--top-p"}, {"top_k", "--top-k"}, {"seed", "--seed"}};

static int number_field(const char *key) {
  for (int i = 0; i < (int)(sizeof number_fields / sizeof number_fields[0]); i++)
    if (!strcmp(number_fields[i].key, key)) return i;
  return -1;
}

static const arg_spec_t *find_spec(const arg_spec_t *specs, int nspecs, const char *flag) {
  for (int i = 0; i < nspecs; i++)
    if (!strcmp(specs[i].name, flag)) return &specs[i];
  return NULL;
}

/* A JSON number held to spec's range: an integer flag takes a JSON integer, or a number with an
 * integral value (16.0); 0, or -1 with "field "seed" must be an integer in [0, 2^63), got 1e30". */
static int json_number(json_object *val, const char *key, const arg_spec_t *spec, strnum_value_t *out,
                       char *err, size_t errlen) {
  strnum_range_t r;
  args_spec_range(spec, &r);
  strnum_value_t v = {0, 0.0};
  int ok = 0;
  if (json_object_is_type(val, json_type_int)) {
    /* json-c clamps an integer literal beyond int64 to INT64_MIN / INT64_MAX (keeping up to
     * UINT64_MAX as unsigned), so INT64_MAX is exact only if the unsigned value agrees */
    v.i = json_object_get_int64(val);
    v.d = (double)v.i;
    ok = !(v.i == INT64_MAX && json_object_get_uint64(val) != (uint64_t)INT64_MAX);
  } else if (json_object_is_type(val, json_type_double)) {
    v.d = json_object_get_double(val);
    ok = r.kind == STRNUM_DOUBLE ? isfinite(v.d) : strnum_double_to_int64(v.d, &v.i) == 0;
  }
  if (ok && strnum_in_range(&r, v)) {
    *out = v;
    return 0;
  }
  char want[160];
  strnum_describe(&r, want, sizeof want);
  snprintf(err, errlen, "field \"%s\" must be %s, got %s", key, want,
           json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
  return -1;
}

/* One field of a JSONL prompt line into *p (*have_prompt: "prompt" or "prompt_tokens" was
 * seen). 0, or -1 with a message in err. */
static int prompt_field(const char *key, json_object *val, int vocab, const arg_spec_t *specs,
                        int nspecs, prompt_t *p, int *have_prompt, char *err, size_t errlen) {
  int nf, bad = 0;
  if (!strcmp(key, "prompt")) {
    if (!json_object_is_type(val, json_type_string)) {
      bad = 1;
    } else {
      free(p->tok);
      p->tok = NULL;
      if (text_tokens(json_object_get_string(val), (size_t)json_object_get_string_len(val), vocab,
                      &p->tok, &p->n_tok, err, errlen))
        return -1;
    }
    *have_prompt = 1;
  } else if (!strcmp(key, "prompt_tokens")) {
    if (!json_object_is_type(val, json_type_array)) {
      bad = 1;
    } else {
      int n = (int)json_object_array_length(val);
      free(p->tok);
      p->tok = malloc(sizeof(int32_t) * (n ? n : 1));
      if (!p->tok) return strata_fail(err, errlen, "out of memory for %d prompt tokens", n);
      p->n_tok = n;
      for (int i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(val, i);
        if (!json_object_is_type(t, json_type_int)) bad = 1;
        p->tok[i] = (int32_t)json_object_get_int(t);
      }
      *have_prompt = 1;
    }
  } else if ((nf = number_field(key)) >= 0) {
    strnum_value_t v;
    if (json_number(val, key, find_spec(specs, nspecs, number_fields[nf].flag), &v, err, errlen))
      return -1;
    if (!strcmp(key, "max_tokens")) p->max_tokens = (int)v.i;
    else if (!strcmp(key, "temperature")) p->sp.temperature = v.d;
    else if (!strcmp(key, "top_p")) p->sp.top_p = v.d;
    else if (!strcmp(key, "top_k")) p->sp.top_k = (int)v.i;
    else p->sp.seed = (uint64_t)v.i, p->has_seed = 1;
  } else if (!strcmp(key, "session")) {
    if (!json_object_is_type(val, json_type_string))
      return strata_fail(err, errlen, "\"session\" must be a string");
    if (session_id_validate(json_object_get_string(val), err, errlen)) return -1;
    snprintf(p->session, sizeof p->session, "%s", json_object_get_string(val));
  } else {
    return strata_fail(err, errlen,
                       "unknown field \"%s\" (known: prompt, prompt_tokens, max_tokens, "
                       "temperature, top_k, top_p, seed, session)", key);
  }
  if (bad) return strata_fail(err, errlen, "field \"%s\" has the wrong type", key);
  return 0;
}

/* One JSONL line (trimmed, not empty) as a prompt inheriting *def. 0, or -1 with a message in
 * err (p->tok freed). */
static int prompt_from_line(char *line, int vocab, const prompt_t *def, const arg_spec_t *specs,
                            int nspecs, prompt_t *p, char *err, size_t errlen) {
  enum json_tokener_error jerr;
  json_object *o = json_tokener_parse_verbose(line, &jerr);
  if (!o || !json_object_is_type(o, json_type_object)) {
    snprintf(err, errlen, "not a JSON object (%s); expected {\"prompt\": \"...\", ...}",
             o ? "another JSON type" : json_tokener_error_desc(jerr));
    json_object_put(o);
    return -1;
  }
  *p = *def;
  p->tok = NULL;
  int have_prompt = 0, rc = 0;
  json_object_object_foreach(o, key, val) {
    if ((rc = prompt_field(key, val, vocab, specs, nspecs, p, &have_prompt, err, errlen))) break;
  }
  json_object_put(o);
  if (rc == 0 && !have_prompt && !p->session[0]) {
    snprintf(err, errlen, "no \"prompt\" (or \"prompt_tokens\")");
    rc = -1;
  }
  if (rc) {
    free(p->tok);
    p->tok = NULL;
    return -1;
  }
  if (!have_prompt) p->tok = malloc(sizeof(int32_t)), p->n_tok = 0;
  return 0;
}

/* Reads the JSONL prompts file; each line inherits the defaults in *def; numbers keep the ranges
 * of the flags of the same meaning (specs). */
static int read_prompts(const char *path, int vocab, const prompt_t *def, const arg_spec_t *specs,
                        int nspecs, prompts_t *ps, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open prompts file %s", path);
    return -1;
  }
  char *line = malloc(INFER_MAX_LINE_BYTES);
  int lineno = 0, rc = -1;
  char lerr[2048] = "";
  while (line && fgets(line, INFER_MAX_LINE_BYTES, f)) {
    lineno++;
    size_t len = strlen(line);
    if (len == INFER_MAX_LINE_BYTES - 1 && line[len - 1] != '\n') {
      snprintf(err, errlen, "%s line %d: longer than %d bytes", path, lineno, INFER_MAX_LINE_BYTES);
      goto out;
    }
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
    if (len == 0) continue;
    prompt_t p;
    if (prompt_from_line(line, vocab, def, specs, nspecs, &p, lerr, sizeof lerr)) {
      snprintf(err, errlen, "%s line %d: %s", path, lineno, lerr);
      goto out;
    }
    if (push_prompt(ps, &p) || ps->n > INFER_MAX_PROMPTS) {
      snprintf(err, errlen, "%s: more than %d prompts", path, INFER_MAX_PROMPTS);
      goto out;
    }
  }
  if (ps->n == 0) {
    snprintf(err, errlen, "%s holds no prompts (one JSON object per line)", path);
    goto out;
  }
  rc = 0;
out:
  free(line);
  fclose(f);
  return rc;
}

static void on_done(void *ctx, uint64_t id, const infer_result_t *res) {
  prompt_t *p = ctx;
  p->done = 1;
  p->ok = res->ok;
  p->kind = res->error_kind;
  snprintf(p->error, sizeof p->error, "%s", res->error);
  p->n_out = res->n_tokens;
  p->out = malloc(sizeof(int32_t) * (res->n_tokens ? res->n_tokens : 1));
  if (p->out && res->n_tokens) memcpy(p->out, res->tokens, sizeof(int32_t) * res->n_tokens);
  p->cached = res->cached_tokens;
  p->context = res->context_tokens;
  p->source = res->session_source;
  p->ttft_s = res->ttft_s;
  p->total_s = res->total_s;
  p->tps = res->tokens_per_s;
}

static void print_json_text(FILE *f, const int32_t *t, int n, int vocab) {
  size_t len;
  char *text = vocab != 256 ? bpe_text(t, n, &len) : NULL;
  if (text) { /* valid UTF-8: escape the JSON specials and control characters only */
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)text[i];
      if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
      else if (c == '\n') fputs("\\n", f);
      else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
      else fputc(c, f);
    }
    fputc('"', f);
    free(text);
    return;
  }
  fputc('"', f);
  for (int i = 0; i < n; i++) {
    if (vocab != 256) {
      fprintf(f, "%s%d", i ? " " : "", t[i]);
      continue;
    }
    int c = t[i];
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c == '\n') fputs("\\n", f);
    else if (c == '\t') fputs("\\t", f);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\u%04x", c); /* bytes >= 0x80 as Latin-1 */
    else fputc(c, f);
  }
  fputc('"', f);
}

static void print_result(const prompt_t *p, int idx, int vocab, int json) {
  if (json) {
    printf("{\"index\": %d, ", idx);
    if (!p->ok) {
      printf("\"error\": ");
      int32_t *e = malloc(sizeof(int32_t) * (strlen(p->error) + 1));
      int n = 0;
      for (const char *c = p->error; *c; c++) e[n++] = (unsigned char)*c;
      print_json_text(stdout, e, n, 256);
      free(e);
      printf("}\n");
      return;
    }
    printf("\"text\": ");
    print_json_text(stdout, p->out, p->n_out, vocab);
    printf(", \"tokens\": %d, \"token_ids\": [", p->n_out);
    for (int i = 0; i < p->n_out; i++) printf("%s%d", i ? ", " : "", p->out[i]);
    printf("], \"prompt_tokens\": %d, \"cached_tokens\": %d, \"context_tokens\": %d, ", p->n_tok,
           p->cached, p->context);
    printf("\"session\": \"%s\", \"session_source\": \"%s\", ", p->session, p->source ? p->source : "none");
    printf("\"ttft_s\": %.6f, \"total_s\": %.6f, \"tokens_per_s\": %.3f}\n", p->ttft_s, p->total_s, p->tps);
  } else {
    /* the text alone on stdout (pipes and redirections get the generation), statistics and
     * errors on stderr */
    if (!p->ok) {
      fprintf(stderr, "--- [%d] error: %s\n", idx, p->error);
      return;
    }
    fprintf(stderr, "--- [%d] %d tokens, ttft %.4f s, %.1f tokens/s%s%s\n", idx, p->n_out, p->ttft_s,
            p->tps, p->session[0] ? ", session " : "", p->session);
    fflush(stderr);
    size_t len;
    char *text = vocab != 256 ? bpe_text(p->out, p->n_out, &len) : NULL;
    if (text) fwrite(text, 1, len, stdout);
    for (int i = 0; !text && i < p->n_out; i++) {
      if (vocab == 256) putchar(p->out[i]);
      else printf("%s%d", i ? " " : "", p->out[i]);
    }
    free(text);
    printf("\n");
  }
  fflush(stdout);
}

/* --list-sessions / --delete-session: rank 0 works on the directory (2 for a session that does
 * not exist: bad input); main.c ends every rank with rank 0's code. */
static int manage_sessions(const char *sdir, const char *delete_id, int list, int json, int rank) {
  char err[2048];
  int rc = 0;
  if (rank == 0 && delete_id) {
    int d = session_delete(sdir, delete_id, err, sizeof err);
    if (d < 0) strata_error("infer: %s", err), rc = 2;
    else if (d == 1) strata_error("infer: --delete-session: no session '%s' in %s (see --list-sessions)", delete_id, sdir), rc = 2;
    else printf("deleted session %s from %s\n", delete_id, sdir);
  }
  if (rank == 0 && list && rc == 0) {
    session_info_t *v;
    int n;
    if (session_list(sdir, &v, &n, err, sizeof err)) {
      strata_error("infer: %s", err);
      rc = 1;
    } else {
      for (int i = 0; i < n; i++) {
        if (json)
          printf("{\"id\": \"%s\", \"stages\": %d, \"tp\": %d, \"context_tokens\": %d, \"bytes\": %llu, "
                 "\"saved_unix_s\": %lld}\n",
                 v[i].id, v[i].stages, v[i].tp, v[i].n_tokens, (unsigned long long)v[i].bytes,
                 (long long)v[i].saved_unix_s);
        else
          printf("%-24s stages %d  tp %d  context %5d tokens  %10llu bytes\n", v[i].id, v[i].stages, v[i].tp,
                 v[i].n_tokens, (unsigned long long)v[i].bytes);
      }
      if (!json && n == 0) printf("no sessions in %s\n", sdir);
      free(v);
    }
  }
  fflush(stdout);
  return rc;
}

/* The command line of `strata infer`. */
typedef struct {
  const char *ckpt, *prompt, *prompts_path, *prompt_tokens;
  const char *session, *session_dir, *delete_id, *precision;
  int max_tokens, top_k, json, list, threads, no_kv, seed_given, tp;
  double temperature, top_p;
  int64_t seed;
  infer_opts_t opts;
  double mem_mb;
  int max_batch;
} infer_flags_t;

/* Refuses bad input before MPI starts (every rank alike): "infer: MESSAGE", and the code. */
#define INFER_FAIL(code, ...)                           \
  do {                                                  \
    strata_error("infer: " __VA_ARGS__);                \
    return code;                                        \
  } while (0)

/* The prompts to generate from, each checked against the model (cfg): from --prompts, or the
 * one of --prompt / --prompt-tokens (or none, continuing --session), with the sampling flags.
 * 0, or 2 after saying what is wrong. */
static int gather_prompts(const infer_flags_t *f, const arg_spec_t *specs, int nspecs,
                          const gpt2_config_t *cfg, prompts_t *ps) {
  char err[2048];
  prompt_t def;
  memset(&def, 0, sizeof def);
  def.max_tokens = f->max_tokens;
  def.sp.temperature = f->temperature;
  def.sp.top_k = f->top_k;
  def.sp.top_p = f->top_p;
  def.sp.seed = (uint64_t)f->seed;
  if (f->session) snprintf(def.session, sizeof def.session, "%s", f->session);
  if (sampler_validate(&def.sp, err, sizeof err)) INFER_FAIL(2, "%s", err);
  if (f->prompts_path) {
    if (read_prompts(f->prompts_path, cfg->vocab, &def, specs, nspecs, ps, err, sizeof err))
      INFER_FAIL(2, "%s", err);
    for (int i = 0; i < ps->n; i++)
      if (!ps->v[i].has_seed) ps->v[i].sp.seed = def.sp.seed + (uint64_t)i;
  } else {
    prompt_t p = def;
    if (f->prompt_tokens) {
      if (parse_token_list(f->prompt_tokens, &p.tok, &p.n_tok, err, sizeof err)) INFER_FAIL(2, "%s", err);
    } else if (f->prompt) {
      if (text_tokens(f->prompt, strlen(f->prompt), cfg->vocab, &p.tok, &p.n_tok, err, sizeof err))
        INFER_FAIL(2, "%s", err);
    } else {
      p.tok = malloc(sizeof(int32_t));
      p.n_tok = 0;
    }
    push_prompt(ps, &p);
  }
  for (int i = 0; i < ps->n; i++) {
    prompt_t *p = &ps->v[i];
    if (p->n_tok == 0 && !p->session[0]) INFER_FAIL(2, "prompt %d is empty", i + 1);
    if ((int64_t)p->n_tok + p->max_tokens > cfg->ctx)
      INFER_FAIL(2, "prompt %d: %d prompt tokens + max_tokens %d = %lld exceeds the model's context of %d tokens; "
                 "shorten the prompt or lower --max-tokens", i + 1, p->n_tok, p->max_tokens,
                 (long long)p->n_tok + p->max_tokens, cfg->ctx);
    if (sampler_validate(&p->sp, err, sizeof err)) INFER_FAIL(2, "prompt %d: %s", i + 1, err);
    for (int j = 0; j < p->n_tok; j++)
      if (p->tok[j] < 0 || p->tok[j] >= cfg->vocab)
        INFER_FAIL(2, "prompt %d: token %d is outside the model's vocabulary [0, %d)", i + 1, p->tok[j], cfg->vocab);
  }
  return 0;
}

/* Every rank, after MPI started: the communicator and the engine over the ranks; rank 0 submits
 * every prompt and steps the engine until all are done (results through on_done; *done = 1,
 * the results are to be printed), the others serve their stages. 0, 1 or 2 (the engine refused
 * the checkpoint or a prompt); only rank 0 reports bad input. */
static int run_engine(infer_flags_t *f, const char *sdir, const ckpt_model_config_t *mc, prompts_t *ps,
                      int *done) {
  int rank = 0, world = 1, rc = 0;
  *done = 0;
  char err[2048];
  coll_comm_t *comm = NULL;
  infer_engine_t *eng = NULL;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
#define FAIL(code, ...)                                      \
  do {                                                       \
    if (rank == 0) strata_error("infer: " __VA_ARGS__);      \
    rc = code;                                               \
    goto out;                                                \
  } while (0)
  if (infer_check_layout(mc, world, f->tp, err, sizeof err)) FAIL(2, "%s", err);
  coll_config_t ccfg = coll_config_default();
  if (ccfg.env_error) FAIL(2, "%s", ccfg.env_error);
  coll_result_t cr = coll_comm_create(MPI_COMM_WORLD, &ccfg, &comm);
  if (cr != COLL_OK) FAIL(1, "cannot create the communicator: %s", coll_result_string(cr));
  f->opts.max_batch = f->max_batch;
  f->opts.session_mem_mb = f->mem_mb;
  f->opts.session_dir = sdir;
  f->opts.threads = f->threads;
  f->opts.recompute = f->no_kv;
  f->opts.tp = f->tp;
  if (infer_engine_create(f->ckpt, comm, &f->opts, &eng, err, sizeof err)) FAIL(2, "%s", err);
  if (rank != 0) {
    rc = infer_worker_loop(eng) ? 1 : 0;
    goto out;
  }
  for (int i = 0; i < ps->n; i++) {
    prompt_t *p = &ps->v[i];
    infer_request_t rq = {p->tok, p->n_tok, p->max_tokens, p->sp, p->session[0] ? p->session : NULL};
    if (infer_submit(eng, &rq, NULL, on_done, p, NULL, err, sizeof err)) {
      infer_engine_shutdown(eng);
      eng = NULL;
      FAIL(2, "prompt %d: %s", i + 1, err);
    }
  }
  while (!infer_engine_idle(eng)) {
    if (infer_engine_step(eng)) {
      strata_error("infer: %s", infer_engine_error(eng));
      rc = 1;
      break;
    }
  }
  *done = 1;
#undef FAIL
out:
  if (eng) infer_engine_shutdown(eng);
  coll_comm_destroy(comm);
  return rc;
}

/* Rank 0: every result in input order; the exit code from rc (the engine's) and the failed
 * prompts: a bad request or a session that cannot be restored is bad input (2), a failed save
 * or an internal error is not (1). */
static int print_results(const prompts_t *ps, int vocab, int json, int rc) {
  for (int i = 0; i < ps->n; i++) {
    print_result(&ps->v[i], i, vocab, json);
    if (!ps->v[i].ok) {
      strata_error("infer: prompt %d: %s", i + 1, ps->v[i].error);
      infer_error_t k = ps->v[i].kind;
      int bad_input = k == INFER_ERR_INVALID || k == INFER_ERR_CONFLICT || k == INFER_ERR_SESSION_DATA;
      if (!rc || (rc == 1 && bad_input)) rc = bad_input ? 2 : 1;
    }
  }
  return rc;
}

static void free_prompts(prompts_t *ps) {
  for (int i = 0; i < ps->n; i++) {
    free(ps->v[i].tok);
    free(ps->v[i].out);
  }
  free(ps->v);
}

/* Checks what it can alone, then runs the engine (see run_engine) and prints the results. */
static int infer_job(infer_flags_t *f, const arg_spec_t *specs, int nspecs) {
  char err[2048], sdir[4096];
  if (f->session_dir) snprintf(sdir, sizeof sdir, "%s", f->session_dir);
  else if (f->ckpt) session_default_dir(sdir, sizeof sdir, f->ckpt);
  else snprintf(sdir, sizeof sdir, "%s", SESSION_DIR_DEFAULT);
  if (f->delete_id && session_id_validate(f->delete_id, err, sizeof err))
    INFER_FAIL(2, "--delete-session: %s", err);
  if (f->list || f->delete_id) {
    if (cli_mpi_start()) return 1;
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return manage_sessions(sdir, f->delete_id, f->list, f->json, rank);
  }
  if (f->opts.env_error) INFER_FAIL(2, "%s", f->opts.env_error);
  if (infer_parse_precision(f->precision, &f->opts.bf16))
    INFER_FAIL(2, "--precision must be fp32 or bf16 (bf16-sr generates as bf16), got '%s'", f->precision);
  if (!f->ckpt) INFER_FAIL(2, "--checkpoint DIR is required (a directory written by strata train, e.g. runs/train/ckpt-00000300)");
  int nsrc = (f->prompt != NULL) + (f->prompts_path != NULL) + (f->prompt_tokens != NULL);
  if (nsrc != 1 && !(nsrc == 0 && f->session))
    INFER_FAIL(2, "give exactly one of --prompt TEXT, --prompt-tokens 1,2,3 or --prompts FILE.jsonl");
  if (f->session && session_id_validate(f->session, err, sizeof err)) INFER_FAIL(2, "--session: %s", err);
  ckpt_model_config_t mc; /* GPT-2 or Llama: the engine runs either */
  if (ckpt_read_model_config(f->ckpt, &mc, err, sizeof err)) INFER_FAIL(2, "%s", err);
  gpt2_config_t cfg = mc.shape;
  if (tok_load_model(f->ckpt, cfg.vocab, &bpe_tok, err, sizeof err)) INFER_FAIL(2, "%s", err);
  if (!f->seed_given) f->seed = (int64_t)(rng_mix64((uint64_t)time(NULL)) >> 1);
  prompts_t ps = {0};
  int rc = gather_prompts(f, specs, nspecs, &cfg, &ps);
  if (rc == 0 && cli_mpi_start()) rc = 1;
  if (rc == 0) {
    int done = 0;
    rc = run_engine(f, sdir, &mc, &ps, &done);
    if (done) rc = print_results(&ps, cfg.vocab, f->json, rc);
  }
  free_prompts(&ps);
  tok_free(bpe_tok);
  bpe_tok = NULL;
  return rc;
}
#undef INFER_FAIL

int cmd_infer(int argc, char **argv) {
  infer_flags_t f = {.max_tokens = 32, .threads = 1, .tp = 1, .top_p = 1.0, .precision = "fp32",
                     .opts = infer_opts_default()};
  f.mem_mb = f.opts.session_mem_mb;
  f.max_batch = f.opts.max_batch;
  arg_spec_t specs[] = {
      {"--checkpoint", NULL, ARG_STRING, &f.ckpt, "DIR", "checkpoint directory (required)"},
      {"--tp", NULL, ARG_INT, &f.tp, "T", "tensor-parallel ranks per pipeline stage (default 1); ranks = T x P",
       .min = 1, .max = 1 << 16},
      {"--precision", NULL, ARG_STRING, &f.precision, "fp32|bf16",
       "fp32 (default), or bf16: bf16 matrix products (GPT-2) and a bf16 KV cache (see above)"},
      {"--prompt", NULL, ARG_STRING, &f.prompt, "TEXT", "one prompt as text (byte-level models, BPE models with a tokenizer)"},
      {"--prompt-tokens", NULL, ARG_STRING, &f.prompt_tokens, "1,2,3", "one prompt as token ids"},
      {"--prompts", NULL, ARG_STRING, &f.prompts_path, "FILE", "JSON lines of prompts (see above)"},
      {"--max-tokens", NULL, ARG_INT, &f.max_tokens, "N", "tokens to generate per prompt (default 32)",
       .min = 1, .max = 1 << 20},
      {"--temperature", NULL, ARG_DOUBLE, &f.temperature, "T", "0 = greedy (default 0)", .min = 0, .max = 100},
      {"--top-k", NULL, ARG_INT, &f.top_k, "K", "sample among the K most likely tokens (default 0: all)",
       .min = 0, .max = 1 << 30},
      {"--top-p", NULL, ARG_DOUBLE, &f.top_p, "P", "nucleus mass (default 1: all)", .min = 0, .max = 1,
       .open = ARG_OPEN_MIN},
      {"--seed", NULL, ARG_INT64, &f.seed, "S", "sampling seed; prompt i uses S + i (default: from the clock)",
       .min = 0, .max = 0x1p63, .given = &f.seed_given},
      {"--json", NULL, ARG_FLAG, &f.json, NULL, "one JSON object per prompt per line"},
      {"--session", NULL, ARG_STRING, &f.session, "ID", "continue / create a persistent session"},
      {"--session-dir", NULL, ARG_STRING, &f.session_dir, "DIR", "session files (default <checkpoint>/../sessions)"},
      {"--session-mem-mb", NULL, ARG_DOUBLE, &f.mem_mb, "MB", "KV cache MiB per stage for idle sessions (default 1024)",
       .env = "STRATA_INFER_SESSION_MEM_MB"},
      {"--max-batch", NULL, ARG_INT, &f.max_batch, "N", "sequences in flight (default 16)", .env = "STRATA_INFER_MAX_BATCH"},
      {"--threads", NULL, ARG_INT, &f.threads, "N", "GEMM threads per rank (OpenBLAS and oneDNN) (default 1)", .min = 1, .max = 1024},
      {"--no-kv-cache", NULL, ARG_FLAG, &f.no_kv, NULL, "benchmark baseline: recompute the whole context for every token"},
      {"--list-sessions", NULL, ARG_FLAG, &f.list, NULL, "list the sessions in the session directory"},
      {"--delete-session", NULL, ARG_STRING, &f.delete_id, "ID", "delete a session's files"},
  };
  const int nspecs = (int)(sizeof specs / sizeof specs[0]);
  int rc = args_parse("infer", usage_text, argc, argv, specs, nspecs, NULL, NULL);
  if (rc) return rc > 0 ? 0 : 2;
  return infer_job(&f, specs, nspecs);
}
