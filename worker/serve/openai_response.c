/* openai_response.c -- OpenAI answers and the per-choice text with stop strings (see
 * openai_response.h). */
#include "openai_response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void oai_choice_free(oai_choice_t *c) {
  free(c->text);
  free(c->tok_end);
  free(c->lps);
  memset(c, 0, sizeof *c);
}

/* The earliest match of any stop string in text[from..len), or -1. */
static long earliest_stop(const char *text, size_t len, size_t from, char *const *stop, int n_stop) {
  long best = -1;
  for (int i = 0; i < n_stop; i++) {
    const char *m = memmem(text + from, len - from, stop[i], strlen(stop[i]));
    if (m && (best < 0 || m - text < best)) best = m - text;
  }
  return best;
}

int oai_choice_add(oai_choice_t *c, const char *text, size_t len, const serve_logprobs_t *lp, char *const *stop,
                   int n_stop) {
  if (c->stopped) return 1;
  if (c->text_len + len + 1 > c->text_cap) {
    size_t ncap = c->text_cap ? c->text_cap : 256;
    while (ncap < c->text_len + len + 1) ncap *= 2;
    char *nt = realloc(c->text, ncap);
    if (!nt) return -1;
    c->text = nt;
    c->text_cap = ncap;
  }
  if (c->ntok == c->tok_cap) {
    int ncap = c->tok_cap ? 2 * c->tok_cap : 64;
    size_t *nt = realloc(c->tok_end, sizeof *nt * (size_t)ncap);
    if (!nt) return -1;
    c->tok_end = nt;
    if (lp || c->lps) {
      serve_logprobs_t *nl = realloc(c->lps, sizeof *nl * (size_t)ncap);
      if (!nl) return -1;
      c->lps = nl;
    }
    c->tok_cap = ncap;
  }
  if (lp && !c->lps) return -1; /* logprobs from the first token on, or never */
  size_t old = c->text_len, maxstop = 0;
  memcpy(c->text + c->text_len, text, len);
  c->text_len += len;
  c->text[c->text_len] = '\0';
  if (lp) c->lps[c->ntok] = *lp;
  c->tok_end[c->ntok++] = c->text_len;
  for (int i = 0; i < n_stop; i++)
    if (strlen(stop[i]) > maxstop) maxstop = strlen(stop[i]);
  if (!n_stop) return 0;
  size_t from = old + 1 > maxstop ? old + 1 - maxstop : 0;
  long at = earliest_stop(c->text, c->text_len, from, stop, n_stop);
  if (at < 0) return 0;
  c->text_len = (size_t)at;
  c->text[at] = '\0';
  while (c->ntok > 0 && (c->ntok == 1 ? 0 : c->tok_end[c->ntok - 2]) >= (size_t)at) c->ntok--;
  if (c->ntok > 0) c->tok_end[c->ntok - 1] = (size_t)at;
  c->stopped = 1;
  return 1;
}

int oai_choice_safe_tokens(const oai_choice_t *c, char *const *stop, int n_stop, int done) {
  if (done || c->stopped || !n_stop) return c->ntok;
  size_t hold = 0; /* the longest suffix of the text that is a proper prefix of a stop string */
  for (int i = 0; i < n_stop; i++) {
    size_t sl = strlen(stop[i]);
    for (size_t k = sl - 1; k > hold; k--)
      if (k <= c->text_len && !memcmp(c->text + c->text_len - k, stop[i], k)) {
        hold = k;
        break;
      }
  }
  size_t safe = c->text_len - hold;
  int n = 0;
  while (n < c->ntok && c->tok_end[n] <= safe) n++;
  return n;
}

/* A log-probability as JSON with 6 significant digits (float precision; not -0.90000000000000002). */
static json_object *num(double d) {
  char b[32];
  snprintf(b, sizeof b, "%.6g", d);
  return json_object_new_double_s(d, b);
}

static json_object *str_len(const char *p, size_t n) { return json_object_new_string_len(p ? p : "", (int)n); }

static json_object *head_obj(const oai_head_t *h, const char *object) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "id", json_object_new_string(h->id));
  json_object_object_add(o, "object", json_object_new_string(object));
  json_object_object_add(o, "created", json_object_new_int64(h->created));
  json_object_object_add(o, "model", json_object_new_string(h->model));
  return o;
}

/* The bytes of a token's text: its UTF-8, or for "bytes:\\xNN..." (a token that is not whole
 * characters, serve.h) the bytes it spells. */
static json_object *bytes_arr(const char *p, size_t n) {
  json_object *a = json_object_new_array();
  unsigned v;
  if (n >= 6 && !memcmp(p, "bytes:", 6)) {
    for (size_t i = 6; i + 4 <= n && sscanf(p + i, "\\x%2x", &v) == 1; i += 4)
      json_object_array_add(a, json_object_new_int((int)v));
    return a;
  }
  for (size_t i = 0; i < n; i++) json_object_array_add(a, json_object_new_int((unsigned char)p[i]));
  return a;
}

/* Token i of c as logprobs show it: its own text when the backend gave one, else its slice of
 * the generated text. */
static const char *lp_token(const oai_choice_t *c, int i, size_t *len) {
  size_t a = i ? c->tok_end[i - 1] : 0;
  if (c->lps[i].text[0]) {
    *len = strlen(c->lps[i].text);
    return c->lps[i].text;
  }
  *len = c->tok_end[i] - a;
  return c->text + a;
}

/* Logprobs of tokens [from, to) of c in the endpoint's format. text_base: the text offset of the
 * generated text (the echoed prompt's length). */
static json_object *logprobs_obj(const oai_head_t *h, const oai_choice_t *c, int from, int to, size_t text_base) {
  if (h->logprobs < 0 || !c->lps) return NULL;
  if (h->api == OAI_CHAT) {
    json_object *content = json_object_new_array();
    for (int i = from; i < to; i++) {
      size_t tl;
      const char *tt = lp_token(c, i, &tl);
      json_object *e = json_object_new_object();
      json_object_object_add(e, "token", str_len(tt, tl));
      json_object_object_add(e, "logprob", num(c->lps[i].logprob));
      json_object_object_add(e, "bytes", bytes_arr(tt, tl));
      json_object *top = json_object_new_array();
      for (int k = 0; k < c->lps[i].n_top; k++) {
        json_object *t = json_object_new_object();
        const char *alt = c->lps[i].top[k].text;
        json_object_object_add(t, "token", json_object_new_string(alt));
        json_object_object_add(t, "logprob", num(c->lps[i].top[k].logprob));
        json_object_object_add(t, "bytes", bytes_arr(alt, strlen(alt)));
        json_object_array_add(top, t);
      }
      json_object_object_add(e, "top_logprobs", top);
      json_object_array_add(content, e);
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "content", content);
    return o;
  }
  json_object *tokens = json_object_new_array(), *lps = json_object_new_array(), *tops = json_object_new_array(),
              *offs = json_object_new_array();
  for (int i = from; i < to; i++) {
    size_t a = i ? c->tok_end[i - 1] : 0, tl;
    const char *tt = lp_token(c, i, &tl);
    json_object_array_add(tokens, str_len(tt, tl));
    json_object_array_add(lps, num(c->lps[i].logprob));
    json_object *t = json_object_new_object();
    for (int k = 0; k < c->lps[i].n_top; k++)
      json_object_object_add(t, c->lps[i].top[k].text, num(c->lps[i].top[k].logprob));
    json_object_array_add(tops, t);
    json_object_array_add(offs, json_object_new_int64((int64_t)(text_base + a)));
  }
  json_object *o = json_object_new_object();
  json_object_object_add(o, "tokens", tokens);
  json_object_object_add(o, "token_logprobs", lps);
  json_object_object_add(o, "top_logprobs", tops);
  json_object_object_add(o, "text_offset", offs);
  return o;
}

json_object *oai_response(const oai_head_t *h, oai_choice_t *const *ch, const char *const *finish, int nch,
                          json_object *usage) {
  json_object *o = head_obj(h, h->api == OAI_CHAT ? "chat.completion" : "text_completion");
  json_object *arr = json_object_new_array();
  for (int i = 0; i < nch; i++) {
    const oai_choice_t *c = ch[i];
    json_object *e = json_object_new_object();
    json_object_object_add(e, "index", json_object_new_int(c->index));
    if (h->api == OAI_CHAT) {
      json_object *m = json_object_new_object();
      json_object_object_add(m, "role", json_object_new_string("assistant"));
      json_object_object_add(m, "content", str_len(c->text, c->text_len));
      json_object_object_add(e, "message", m);
    } else {
      size_t n = c->echo_len + c->text_len;
      char *t = malloc(n + 1);
      if (t) {
        if (c->echo_len) memcpy(t, c->echo, c->echo_len);
        if (c->text_len) memcpy(t + c->echo_len, c->text, c->text_len);
      }
      json_object_object_add(e, "text", str_len(t, t ? n : 0));
      free(t);
    }
    json_object_object_add(e, "logprobs", logprobs_obj(h, c, 0, c->ntok, c->echo_len));
    json_object_object_add(e, "finish_reason", json_object_new_string(finish[i]));
    json_object_array_add(arr, e);
  }
  json_object_object_add(o, "choices", arr);
  json_object_object_add(o, "usage", usage);
  return o;
}

json_object *oai_chunk(const oai_head_t *h, const oai_choice_t *c, int from, int to, int first, const char *finish) {
  int chat = h->api == OAI_CHAT;
  json_object *o = head_obj(h, chat ? "chat.completion.chunk" : "text_completion");
  size_t a = from ? c->tok_end[from - 1] : 0, b = to ? c->tok_end[to - 1] : 0;
  if (b < a) b = a;
  json_object *e = json_object_new_object();
  json_object_object_add(e, "index", json_object_new_int(c->index));
  if (chat) {
    json_object *d = json_object_new_object();
    if (first) json_object_object_add(d, "role", json_object_new_string("assistant"));
    if (b > a || (first && !finish)) json_object_object_add(d, "content", str_len(c->text + a, b - a));
    json_object_object_add(e, "delta", d);
  } else if (first && c->echo_len) { /* the echoed prompt leads the first chunk */
    char *t = malloc(c->echo_len + (b - a) + 1);
    if (t) {
      memcpy(t, c->echo, c->echo_len);
      memcpy(t + c->echo_len, c->text + a, b - a);
    }
    json_object_object_add(e, "text", str_len(t, t ? c->echo_len + (b - a) : 0));
    free(t);
  } else {
    json_object_object_add(e, "text", str_len(c->text + a, b - a));
  }
  json_object_object_add(e, "logprobs", to > from ? logprobs_obj(h, c, from, to, c->echo_len) : NULL);
  json_object_object_add(e, "finish_reason", finish ? json_object_new_string(finish) : NULL);
  json_object *arr = json_object_new_array();
  json_object_array_add(arr, e);
  json_object_object_add(o, "choices", arr);
  return o;
}

json_object *oai_usage_chunk(const oai_head_t *h, json_object *usage) {
  json_object *o = head_obj(h, h->api == OAI_CHAT ? "chat.completion.chunk" : "text_completion");
  json_object_object_add(o, "choices", json_object_new_array());
  json_object_object_add(o, "usage", usage);
  return o;
}

json_object *oai_usage(int prompt_tokens, int completion_tokens, int cached_tokens) {
  json_object *u = json_object_new_object();
  json_object_object_add(u, "prompt_tokens", json_object_new_int(prompt_tokens));
  json_object_object_add(u, "completion_tokens", json_object_new_int(completion_tokens));
  json_object_object_add(u, "total_tokens", json_object_new_int(prompt_tokens + completion_tokens));
  json_object *d = json_object_new_object();
  json_object_object_add(d, "cached_tokens", json_object_new_int(cached_tokens));
  json_object_object_add(u, "prompt_tokens_details", d);
  return u;
}

json_object *oai_model(const char *model, long long created) {
  json_object *m = json_object_new_object();
  json_object_object_add(m, "id", json_object_new_string(model));
  json_object_object_add(m, "object", json_object_new_string("model"));
  json_object_object_add(m, "created", json_object_new_int64(created));
  json_object_object_add(m, "owned_by", json_object_new_string("strata"));
  return m;
}

json_object *oai_model_list(const char *model, long long created) {
  json_object *o = json_object_new_object(), *arr = json_object_new_array();
  json_object_object_add(o, "object", json_object_new_string("list"));
  json_object_array_add(arr, oai_model(model, created));
  json_object_object_add(o, "data", arr);
  return o;
}

json_object *oai_error(int status, const char *type, const char *msg, const char *param) {
  json_object *e = json_object_new_object();
  json_object_object_add(e, "message", json_object_new_string(msg));
  json_object_object_add(e, "type", json_object_new_string(type));
  json_object_object_add(e, "param", param && *param ? json_object_new_string(param) : NULL);
  json_object_object_add(e, "code", json_object_new_int(status));
  json_object *o = json_object_new_object();
  json_object_object_add(o, "error", e);
  return o;
}
