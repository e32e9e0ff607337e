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
  free(req->prompt);
  req->prompt = NULL;
  req->prompt_bytes = 0;
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

/* Field lookup: 0 = absent or null (use the default), 1 = present. */
static int field(json_object *root, const char *name, json_object **v) {
  *v = NULL;
  if (!json_object_object_get_ex(root, name, v)) return 0;
  return *v != NULL;
}

/* An integer field: a JSON int, or a double with an integral value (some clients send 16.0).
 * -1: not an integer; -2: an integer outside [lo, hi]. */
static int get_int(json_object *v, int64_t lo, int64_t hi, int64_t *out) {
  int64_t x;
  if (json_object_is_type(v, json_type_int)) {
    x = json_object_get_int64(v);
    /* json-c clamps a literal beyond int64 to INT64_MIN / INT64_MAX (keeping up to UINT64_MAX
     * as unsigned): INT64_MAX is exact only if the unsigned value agrees */
    if (x == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX) return -2;
  } else if (json_object_is_type(v, json_type_double)) {
    double d = json_object_get_double(v);
    if (!isfinite(d) || d != floor(d)) return -1;
    if (strnum_double_to_int64(d, &x)) return -2; /* beyond int64: 1e30 */
  } else {
    return -1;
  }
  if (x < lo || x > hi) return -2;
  *out = x;
  return 0;
}

static int get_num(json_object *v, double *out) {
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) return -1;
  double d = json_object_get_double(v);
  if (!isfinite(d)) return -1;
  *out = d;
  return 0;
}

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

/* "prompt": a non-empty string without NUL, copied into out->prompt. */
static int read_prompt(json_object *root, http_completion_req_t *out, char *err, size_t errlen) {
  json_object *v;
  if (!field(root, "prompt", &v)) return fail(err, errlen, 400, "missing field 'prompt' (a string)");
  if (!json_object_is_type(v, json_type_string))
    return fail(err, errlen, 400, "field 'prompt' must be a string, got %s",
                json_type_to_name(json_object_get_type(v)));
  const char *p = json_object_get_string(v);
  size_t plen = (size_t)json_object_get_string_len(v);
  if (plen == 0) return fail(err, errlen, 400, "field 'prompt' is empty: give at least one character");
  if (memchr(p, '\0', plen))
    return fail(err, errlen, 400, "field 'prompt' contains a NUL character (\\u0000), which is not allowed");
  out->prompt = malloc(plen + 1);
  if (!out->prompt) return fail(err, errlen, 500, "out of memory for a prompt of %zu bytes", plen);
  memcpy(out->prompt, p, plen + 1);
  out->prompt_bytes = plen;
  return 0;
}

/* "max_tokens", "temperature", "top_p", "top_k", "seed", each with its default when absent. */
static int read_sampling(json_object *root, const http_request_limits_t *lim, http_completion_req_t *out,
                         char *err, size_t errlen) {
  json_object *v;
  int64_t x;
  int r;
  out->max_tokens = lim->default_max_tokens;
  if (field(root, "max_tokens", &v)) {
    if ((r = get_int(v, 1, lim->max_tokens_limit, &x)) == -1)
      return fail(err, errlen, 400, "field 'max_tokens' must be an integer");
    if (r == -2)
      return fail(err, errlen, 400, "field 'max_tokens' must be between 1 and %d (the server's --max-tokens-limit)",
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

int http_request_parse_completion(const char *body, size_t len, const http_request_limits_t *lim,
                                  http_completion_req_t *out, char *err, size_t errlen) {
  http_request_limits_t dflt;
  if (!lim) {
    http_request_limits_default(&dflt);
    lim = &dflt;
  }
  memset(out, 0, sizeof *out);
  if (err && errlen) err[0] = '\0';
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
  status = read_prompt(root, out, err, errlen);
  if (!status) status = read_sampling(root, lim, out, err, errlen);
  if (!status) status = read_options(root, out, err, errlen);
  json_object_put(root);
  if (status) http_request_free(out);
  return status;
}
