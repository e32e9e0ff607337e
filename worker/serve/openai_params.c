/* openai_params.c -- the OpenAI parameters of a request body (see openai_params.h). */
#include "openai_params.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/strnum.h"

static const char *const completions_keys[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stream", "stream_options", "n",
    "best_of", "stop", "logprobs", "echo", "presence_penalty", "frequency_penalty", "user", "suffix", "logit_bias",
    "session", NULL};
static const char *const chat_keys[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stream",
    "stream_options", "n", "stop", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "user",
    "logit_bias", "response_format", "tools", "tool_choice", "parallel_tool_calls", "store", "metadata", "session",
    NULL};

int oai_refuse(char *err, size_t errlen, char *param, size_t paramlen, const char *name, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  if (param && paramlen) snprintf(param, paramlen, "%s", name);
  return 400;
}

int oai_field(json_object *root, const char *name, json_object **v) {
  *v = NULL;
  if (!json_object_object_get_ex(root, name, v)) return 0;
  return *v != NULL;
}

int oai_get_int(json_object *v, int64_t lo, int64_t hi, int64_t *out) {
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

int oai_get_num(json_object *v, double *out) {
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) return -1;
  double d = json_object_get_double(v);
  if (!isfinite(d)) return -1;
  *out = d;
  return 0;
}

void oai_params_free(oai_params_t *p) {
  if (!p) return;
  for (int i = 0; i < p->n_stop; i++) free(p->stop[i]);
  p->n_stop = 0;
}

/* Every key of root must be one the endpoint accepts. */
static int check_keys(json_object *root, oai_api_t api, char *err, size_t errlen, char *param, size_t paramlen) {
  const char *const *keys = api == OAI_CHAT ? chat_keys : completions_keys;
  json_object_object_foreach(root, k, val) {
    (void)val;
    int ok = 0;
    for (int i = 0; keys[i] && !ok; i++) ok = !strcmp(keys[i], k);
    if (!ok)
      return oai_refuse(err, errlen, param, paramlen, k,
                    "parameter '%.64s' is not supported by strata serve's %s endpoint; remove it (README lists the "
                    "accepted parameters)",
                    k, api == OAI_CHAT ? "/v1/chat/completions" : "/v1/completions");
  }
  return 0;
}

/* A parameter that is accepted only when it asks for nothing: null, false, "", {} or []. */
static int empty_value(json_object *v) {
  if (!v) return 1;
  switch (json_object_get_type(v)) {
  case json_type_null: return 1;
  case json_type_boolean: return !json_object_get_boolean(v);
  case json_type_string: return json_object_get_string_len(v) == 0;
  case json_type_object: return json_object_object_length(v) == 0;
  case json_type_array: return json_object_array_length(v) == 0;
  default: return 0;
  }
}

static int read_unimplemented(json_object *root, oai_api_t api, char *err, size_t errlen, char *param,
                              size_t paramlen) {
  static const char *const empty_only[] = {"logit_bias", "suffix", "tools", "tool_choice", "metadata", "store", NULL};
  for (int i = 0; empty_only[i]; i++) {
    json_object *v;
    if (!json_object_object_get_ex(root, empty_only[i], &v) || empty_value(v)) continue;
    if (!strcmp(empty_only[i], "tool_choice") && json_object_is_type(v, json_type_string) &&
        !strcmp(json_object_get_string(v), "none"))
      continue;
    return oai_refuse(err, errlen, param, paramlen, empty_only[i],
                  "parameter '%s' is not implemented by strata serve; remove it or leave it empty", empty_only[i]);
  }
  json_object *v;
  if (api == OAI_CHAT && oai_field(root, "response_format", &v)) {
    json_object *t;
    if (!json_object_is_type(v, json_type_object) || !json_object_object_get_ex(v, "type", &t) ||
        !json_object_is_type(t, json_type_string) || strcmp(json_object_get_string(t), "text"))
      return oai_refuse(err, errlen, param, paramlen, "response_format",
                    "parameter 'response_format' supports only {\"type\": \"text\"} (no JSON mode or schemas)");
  }
  if (api == OAI_CHAT && oai_field(root, "parallel_tool_calls", &v) && !json_object_is_type(v, json_type_boolean))
    return oai_refuse(err, errlen, param, paramlen, "parallel_tool_calls", "parameter 'parallel_tool_calls' must be a boolean");
  if (oai_field(root, "user", &v) && !json_object_is_type(v, json_type_string))
    return oai_refuse(err, errlen, param, paramlen, "user", "parameter 'user' must be a string");
  return 0;
}

/* "stop": a string or an array of 1..OAI_STOP_MAX non-empty strings. */
static int read_stop(json_object *root, oai_params_t *out, char *err, size_t errlen, char *param, size_t paramlen) {
  json_object *v;
  if (!oai_field(root, "stop", &v)) return 0;
  int n = 1;
  if (json_object_is_type(v, json_type_array)) {
    n = (int)json_object_array_length(v);
    if (n > OAI_STOP_MAX)
      return oai_refuse(err, errlen, param, paramlen, "stop", "parameter 'stop' has %d strings; give at most %d", n,
                    OAI_STOP_MAX);
  } else if (!json_object_is_type(v, json_type_string)) {
    return oai_refuse(err, errlen, param, paramlen, "stop", "parameter 'stop' must be a string or an array of strings");
  }
  for (int i = 0; i < n; i++) {
    json_object *s = json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, (size_t)i) : v;
    if (!s || !json_object_is_type(s, json_type_string))
      return oai_refuse(err, errlen, param, paramlen, "stop", "parameter 'stop' must be a string or an array of strings");
    size_t len = (size_t)json_object_get_string_len(s);
    const char *t = json_object_get_string(s);
    if (len == 0 || len > OAI_STOP_BYTES_MAX || memchr(t, '\0', len))
      return oai_refuse(err, errlen, param, paramlen, "stop",
                    "each string of parameter 'stop' must be 1 to %d bytes without NUL", OAI_STOP_BYTES_MAX);
    if (!(out->stop[out->n_stop] = strdup(t)))
      return oai_refuse(err, errlen, param, paramlen, "stop", "out of memory for the stop strings");
    out->n_stop++;
  }
  return 0;
}

/* An integer parameter in [lo, hi] (absent: *x unchanged). */
static int read_int(json_object *root, const char *name, int lo, int hi, int *x, char *err, size_t errlen,
                    char *param, size_t paramlen) {
  json_object *v;
  int64_t y;
  if (!oai_field(root, name, &v)) return 0;
  int r = oai_get_int(v, lo, hi, &y);
  if (r == -1) return oai_refuse(err, errlen, param, paramlen, name, "parameter '%s' must be an integer", name);
  if (r == -2)
    return oai_refuse(err, errlen, param, paramlen, name, "parameter '%s' must be between %d and %d", name, lo, hi);
  *x = (int)y;
  return 0;
}

static int read_penalty(json_object *root, const char *name, double *x, char *err, size_t errlen, char *param,
                        size_t paramlen) {
  json_object *v;
  if (!oai_field(root, name, &v)) return 0;
  if (oai_get_num(v, x) || *x < -2 || *x > 2)
    return oai_refuse(err, errlen, param, paramlen, name, "parameter '%s' must be a number between -2 and 2", name);
  return 0;
}

static int read_bool(json_object *root, const char *name, int *x, char *err, size_t errlen, char *param,
                     size_t paramlen) {
  json_object *v;
  if (!oai_field(root, name, &v)) return 0;
  if (!json_object_is_type(v, json_type_boolean))
    return oai_refuse(err, errlen, param, paramlen, name, "parameter '%s' must be true or false", name);
  *x = json_object_get_boolean(v) ? 1 : 0;
  return 0;
}

/* Completions: "logprobs" an integer k (alternatives). Chat: "logprobs" a boolean and
 * "top_logprobs" an integer that needs it. */
static int read_logprobs(json_object *root, oai_api_t api, oai_params_t *out, char *err, size_t errlen, char *param,
                         size_t paramlen) {
  out->logprobs = -1;
  if (api == OAI_COMPLETIONS)
    return read_int(root, "logprobs", 0, OAI_TOP_LOGPROBS_MAX, &out->logprobs, err, errlen, param, paramlen);
  int want = 0, top = -1, st;
  if ((st = read_bool(root, "logprobs", &want, err, errlen, param, paramlen))) return st;
  if ((st = read_int(root, "top_logprobs", 0, OAI_TOP_LOGPROBS_MAX, &top, err, errlen, param, paramlen))) return st;
  if (top >= 0 && !want)
    return oai_refuse(err, errlen, param, paramlen, "top_logprobs",
                  "parameter 'top_logprobs' needs \"logprobs\": true");
  if (want) out->logprobs = top >= 0 ? top : 0;
  return 0;
}

int oai_params_read(json_object *root, oai_api_t api, oai_params_t *out, char *err, size_t errlen, char *param,
                    size_t paramlen) {
  memset(out, 0, sizeof *out);
  out->n = 1;
  out->logprobs = -1;
  int st;
  if ((st = check_keys(root, api, err, errlen, param, paramlen))) return st;
  if ((st = read_unimplemented(root, api, err, errlen, param, paramlen))) return st;
  json_object *v;
  if (oai_field(root, "model", &v)) {
    if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) >= (int)sizeof out->model)
      return oai_refuse(err, errlen, param, paramlen, "model", "parameter 'model' must be a string of under %zu bytes",
                    sizeof out->model);
    snprintf(out->model, sizeof out->model, "%s", json_object_get_string(v));
  }
  if ((st = read_int(root, "n", 1, OAI_N_MAX, &out->n, err, errlen, param, paramlen))) return st;
  if (api == OAI_COMPLETIONS) {
    int best_of = out->n;
    if ((st = read_int(root, "best_of", 1, OAI_N_MAX, &best_of, err, errlen, param, paramlen))) return st;
    if (best_of != out->n)
      return oai_refuse(err, errlen, param, paramlen, "best_of",
                    "parameter 'best_of' (%d) must equal n (%d): strata serve does not rank candidates", best_of,
                    out->n);
    if ((st = read_bool(root, "echo", &out->echo, err, errlen, param, paramlen))) return st;
  }
  if ((st = read_stop(root, out, err, errlen, param, paramlen))) return st;
  if ((st = read_logprobs(root, api, out, err, errlen, param, paramlen))) return st;
  if (out->echo && out->logprobs >= 0)
    return oai_refuse(err, errlen, param, paramlen, "echo",
                  "parameter 'echo' cannot be combined with 'logprobs': strata serve does not compute the prompt's "
                  "log-probabilities");
  if ((st = read_penalty(root, "presence_penalty", &out->presence_penalty, err, errlen, param, paramlen))) return st;
  if ((st = read_penalty(root, "frequency_penalty", &out->frequency_penalty, err, errlen, param, paramlen))) return st;
  if (oai_field(root, "stream_options", &v)) {
    if (!json_object_is_type(v, json_type_object))
      return oai_refuse(err, errlen, param, paramlen, "stream_options", "parameter 'stream_options' must be an object");
    json_object_object_foreach(v, k, val) {
      (void)val;
      if (strcmp(k, "include_usage"))
        return oai_refuse(err, errlen, param, paramlen, "stream_options",
                      "parameter 'stream_options' accepts only include_usage, not '%.64s'", k);
    }
    if ((st = read_bool(v, "include_usage", &out->include_usage, err, errlen, param, paramlen))) return st;
  }
  return 0;
}
