/* http_request.c -- JSON body of POST /v1/completions to a validated struct (see http_request.h).
 * json-c's tokener parses with a depth limit; every field is type- and range-checked here. */
#include "http_request.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/strnum.h"

/* JSON nesting deeper than this is refused (the accepted body is flat). */
#define HTTP_REQUEST_MAX_DEPTH 16

void http_request_limits_default(http_request_limits_t *lim) {
  lim->max_body_bytes = 64 * 1024;
  lim->max_tokens_limit = 1024;
  lim->default_max_tokens = 16;
}

void http_request_free(http_completion_req_t *req) {
  if (!req) return;
  for (int i = 0; i < req->n_prompts; i++) free(req->prompts[i]);
  req->n_prompts = 0;
  req->prompt = NULL;
  req->prompt_bytes = 0;
  oai_params_free(&req->oai);
}

int http_session_id_valid(const char *id) {
  if (!id) return 0;
  size_t n = 0;
  for (; id[n]; n++) {
    char c = id[n];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok || n >= HTTP_SESSION_ID_MAX) return 0;
  }
  return n >= 1;
}

static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return status;
}

#define field oai_field
#define get_int oai_get_int
#define get_num oai_get_num

/* The body as one JSON object, parsed strictly with a depth limit; only whitespace may follow
 * it. 0 with *root_out (the caller puts it), or an HTTP status with err. */
static int parse_object(const char *body, size_t len, json_object **root_out, char *err, size_t errlen) {
  *root_out = NULL;
  json_tokener *tok = json_tokener_new_ex(HTTP_REQUEST_MAX_DEPTH);
  if (!tok) return fail(err, errlen, 500, "out of memory for the JSON parser");
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
  json_object *root = json_tokener_parse_ex(tok, body, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t used = tok->char_offset;
  json_tokener_free(tok);
  int status = 0;
  if (!root || jerr != json_tokener_success) {
    if (jerr == json_tokener_continue)
      status = fail(err, errlen, 400, "malformed JSON: the body ends before the JSON value is complete");
    else
      status = fail(err, errlen, 400, "malformed JSON at byte %zu: %s", used,
                    json_tokener_error_desc(jerr == json_tokener_success ? json_tokener_error_parse_unexpected : jerr));
    goto put_root;
  }
  for (size_t i = used; i < len && !status; i++)
    if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' && body[i] != '\n')
      status = fail(err, errlen, 400, "malformed JSON: unexpected data after the JSON object at byte %zu", i);
  if (!status && !json_object_is_type(root, json_type_object))
    status = fail(err, errlen, 400, "the body must be a JSON object like {\"prompt\": \"Hello\"}, got a JSON %s",
                  json_type_to_name(json_object_get_type(root)));
  if (!status) {
    *root_out = root;
    return 0;
  }
put_root:
  if (root) json_object_put(root);
  return status;
}

/* One prompt string (non-empty, no NUL) into out->prompts[out->n_prompts++]. */
static int add_prompt(http_completion_req_t *out, const char *p, size_t plen, const char *what, char *err,
                      size_t errlen) {
  if (plen == 0) return fail(err, errlen, 400, "%s is empty: give at least one character", what);
  if (memchr(p, '\0', plen)) return fail(err, errlen, 400, "%s contains a NUL character (\\u0000), which is not allowed", what);
  char *c = malloc(plen + 1);
  if (!c) return fail(err, errlen, 500, "out of memory for a prompt of %zu bytes", plen);
  memcpy(c, p, plen);
  c[plen] = '\0';
  out->prompts[out->n_prompts] = c;
  out->prompt_lens[out->n_prompts++] = plen;
  out->prompt = out->prompts[0];
  out->prompt_bytes = out->prompt_lens[0];
  return 0;
}

/* "prompt": a string or an array of 1 .. HTTP_PROMPTS_MAX strings. */
static int read_prompt(json_object *root, http_completion_req_t *out, char *err, size_t errlen) {
  json_object *v;
  if (!field(root, "prompt", &v)) return fail(err, errlen, 400, "missing field 'prompt' (a string)");
  if (json_object_is_type(v, json_type_string))
    return add_prompt(out, json_object_get_string(v), (size_t)json_object_get_string_len(v), "field 'prompt'", err,
                      errlen);
  if (!json_object_is_type(v, json_type_array))
    return fail(err, errlen, 400, "field 'prompt' must be a string or an array of strings, got %s",
                json_type_to_name(json_object_get_type(v)));
  size_t n = json_object_array_length(v);
  if (n == 0 || n > HTTP_PROMPTS_MAX)
    return fail(err, errlen, 400, "field 'prompt' must hold 1 to %d prompts, not %zu", HTTP_PROMPTS_MAX, n);
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(v, i);
    if (!e || !json_object_is_type(e, json_type_string))
      return fail(err, errlen, 400, "field 'prompt' must be an array of strings (token-id prompts are not "
                  "supported): element %zu is %s", i, json_type_to_name(json_object_get_type(e)));
    char what[48];
    snprintf(what, sizeof what, "field 'prompt' element %zu", i);
    int st = add_prompt(out, json_object_get_string(e), (size_t)json_object_get_string_len(e), what, err, errlen);
    if (st) return st;
  }
  return 0;
}

/* "messages" rendered through the chat template into the one prompt. */
static int read_messages(json_object *root, const http_request_limits_t *lim, http_completion_req_t *out,
                         char *err, size_t errlen, char *param, size_t paramlen) {
  json_object *v = NULL;
  chat_template_t dflt;
  const chat_template_t *t = lim->chat_template;
  if (!t) {
    if (chat_template_default(&dflt, err, errlen)) return 500;
    t = &dflt;
  }
  char *text = NULL;
  size_t len = 0;
  field(root, "messages", &v);
  int st = chat_render(t, v, &text, &len, err, errlen, param, paramlen);
  if (t == &dflt) chat_template_free(&dflt);
  if (st) return st;
  st = add_prompt(out, text, len, "the rendered 'messages'", err, errlen);
  free(text);
  return st;
}

/* "max_tokens", "temperature", "top_p", "top_k", "seed", each with its default when absent. */
static int read_sampling(json_object *root, const http_request_limits_t *lim, http_completion_req_t *out,
                         char *err, size_t errlen) {
  json_object *v;
  int64_t x;
  int r;
  out->max_tokens = lim->default_max_tokens;
  for (int k = 0; k < 2; k++) { /* chat's max_completion_tokens is the same limit */
    const char *name = k ? "max_completion_tokens" : "max_tokens";
    if (!field(root, name, &v)) continue;
    if ((r = get_int(v, 1, lim->max_tokens_limit, &x)) == -1)
      return fail(err, errlen, 400, "field '%s' must be an integer", name);
    if (r == -2)
      return fail(err, errlen, 400, "field '%s' must be between 1 and %d (the server's --max-tokens-limit)", name,
                  lim->max_tokens_limit);
    out->max_tokens = (int)x;
  }
  out->temperature = 1.0;
  if (field(root, "temperature", &v)) {
    if (get_num(v, &out->temperature)) return fail(err, errlen, 400, "field 'temperature' must be a number");
    if (out->temperature < 0 || out->temperature > 100)
      return fail(err, errlen, 400, "field 'temperature' must be between 0 (greedy) and 100");
  }
  out->top_p = 1.0;
  if (field(root, "top_p", &v)) {
    if (get_num(v, &out->top_p)) return fail(err, errlen, 400, "field 'top_p' must be a number");
    if (!(out->top_p > 0 && out->top_p <= 1)) return fail(err, errlen, 400, "field 'top_p' must be in (0, 1]");
  }
  if (field(root, "top_k", &v)) {
    if ((r = get_int(v, 0, 1 << 30, &x)))
      return fail(err, errlen, 400,
                  r == -1 ? "field 'top_k' must be an integer" : "field 'top_k' must be >= 0 (0 = off)");
    out->top_k = (int)x;
  }
  if (field(root, "seed", &v)) {
    if (get_int(v, 0, INT64_MAX, &x)) return fail(err, errlen, 400, "field 'seed' must be an integer in [0, 2^63)");
    out->has_seed = 1;
    out->seed = (uint64_t)x;
  }
  return 0;
}

/* "stream" (a boolean) and "session" (a valid session ID). */
static int read_options(json_object *root, http_completion_req_t *out, char *err, size_t errlen) {
  json_object *v;
  if (field(root, "stream", &v)) {
    if (!json_object_is_type(v, json_type_boolean))
      return fail(err, errlen, 400, "field 'stream' must be true or false");
    out->stream = json_object_get_boolean(v) ? 1 : 0;
  }
  if (field(root, "session", &v)) {
    if (!json_object_is_type(v, json_type_string)) return fail(err, errlen, 400, "field 'session' must be a string");
    const char *s = json_object_get_string(v);
    size_t slen = (size_t)json_object_get_string_len(v);
    if (slen != strlen(s) || !http_session_id_valid(s))
      return fail(err, errlen, 400, "field 'session' must be 1 to %d characters from A-Z a-z 0-9 _ -",
                  HTTP_SESSION_ID_MAX);
    memcpy(out->session, s, slen + 1);
  }
  return 0;
}

int http_request_parse(const char *body, size_t len, const http_request_limits_t *lim, oai_api_t api,
                       http_completion_req_t *out, char *err, size_t errlen, char *param, size_t paramlen) {
  http_request_limits_t dflt;
  if (!lim) {
    http_request_limits_default(&dflt);
    lim = &dflt;
  }
  memset(out, 0, sizeof *out);
  out->api = api;
  if (err && errlen) err[0] = '\0';
  if (param && paramlen) param[0] = '\0';
  if (len > lim->max_body_bytes)
    return fail(err, errlen, 413, "request body of %zu bytes exceeds the limit of %zu bytes (server flag "
                "--max-request-bytes)", len, lim->max_body_bytes);
  if (len == 0 || !body)
    return fail(err, errlen, 400, "empty request body: send a JSON object like {\"prompt\": \"Hello\", "
                "\"max_tokens\": 16}");
  if (len > (size_t)INT32_MAX) return fail(err, errlen, 413, "request body too large");
  json_object *root;
  int status = parse_object(body, len, &root, err, errlen);
  if (status) return status;
  status = oai_params_read(root, api, &out->oai, err, errlen, param, paramlen);
  if (!status) status = api == OAI_CHAT ? read_messages(root, lim, out, err, errlen, param, paramlen)
                                        : read_prompt(root, out, err, errlen);
  if (!status) status = read_sampling(root, lim, out, err, errlen);
  if (!status) status = read_options(root, out, err, errlen);
  if (!status && out->session[0] && (out->n_prompts > 1 || out->oai.n > 1))
    status = fail(err, errlen, 400, "field 'session' needs one prompt and n = 1 (a session continues one "
                  "conversation)");
  if (!status && out->oai.n * out->n_prompts > HTTP_PROMPTS_MAX)
    status = fail(err, errlen, 400, "field 'n' (%d) times %d prompts is %d choices; at most %d per request",
                  out->oai.n, out->n_prompts, out->oai.n * out->n_prompts, HTTP_PROMPTS_MAX);
  json_object_put(root);
  if (status) {
    if (param && paramlen && !param[0]) { /* the parser's own messages name the field in quotes */
      const char *q = strstr(err ? err : "", "field '");
      if (q) {
        q += 7;
        size_t k = 0;
        while (q[k] && q[k] != '\'' && k + 1 < paramlen) param[k] = q[k], k++;
        param[k] = '\0';
      }
    }
    http_request_free(out);
  }
  return status;
}

int http_request_parse_completion(const char *body, size_t len, const http_request_limits_t *lim,
                                  http_completion_req_t *out, char *err, size_t errlen) {
  return http_request_parse(body, len, lim, OAI_COMPLETIONS, out, err, errlen, NULL, 0);
}
