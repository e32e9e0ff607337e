/* openai_response.h -- the OpenAI wire format of Strata's answers: completion and chat objects,
 * streamed chunks, usage, logprobs, the model list and errors; plus the per-choice text buffer
 * with stop-string handling that the streamed and whole answers are made from.
 *
 * Stop strings: a choice's text is cut at the earliest match of any stop string and the stop
 * text is never returned; the token that holds the match keeps only its part before it, later
 * tokens are dropped. While a choice is still generating, a stream may send only the text that
 * cannot be the start of a stop string (oai_choice_safe_tokens); the rest waits.
 * Completions objects: {"id","object":"text_completion","created","model","choices":[{"text",
 * "index","logprobs","finish_reason"}],"usage"}; logprobs {"tokens","token_logprobs",
 * "top_logprobs","text_offset"}. Chat: "chat.completion" with choices[].message {role, content},
 * chunks "chat.completion.chunk" with choices[].delta, logprobs {"content": [{token, logprob,
 * bytes, top_logprobs}]}. Errors {"error": {"message","type","param","code"}}. */
#ifndef STRATA_OPENAI_RESPONSE_H
#define STRATA_OPENAI_RESPONSE_H

#include <json-c/json.h>
#include <stddef.h>

#include "openai_params.h"
#include "serve.h"

typedef struct {
  int index;                 /* the choice's index in the answer */
  const char *echo;          /* completions with echo: the prompt, else NULL */
  size_t echo_len;
  char *text;                /* generated text so far, cut at a stop string (NUL-terminated) */
  size_t text_len, text_cap;
  size_t *tok_end;           /* tok_end[i] = text offset after token i */
  serve_logprobs_t *lps;     /* per token, when the request asked for logprobs */
  int ntok, tok_cap;
  int stopped;               /* a stop string matched: no more text */
} oai_choice_t;

typedef struct {
  const char *id;
  const char *model;
  long long created;         /* unix seconds */
  oai_api_t api;
  int logprobs;              /* -1: no logprobs in the answer */
} oai_head_t;

/* Adds one token's text (and logprobs when lp) to c, then looks for the stop strings. Returns 0,
 * 1 when a stop string matched (c->stopped set, text cut), -1 out of memory. */
int oai_choice_add(oai_choice_t *c, const char *text, size_t len, const serve_logprobs_t *lp, char *const *stop,
                   int n_stop);
/* Tokens of c that a stream may send now: all when done, else those that end before any
 * suffix of the text that is a prefix of a stop string. */
int oai_choice_safe_tokens(const oai_choice_t *c, char *const *stop, int n_stop, int done);
void oai_choice_free(oai_choice_t *c);

/* The whole (non-streamed) answer: choices in index order, with their finish reasons. */
json_object *oai_response(const oai_head_t *h, oai_choice_t *const *ch, const char *const *finish, int nch,
                          json_object *usage);
/* One streamed chunk of choice c: tokens [from, to), the chat role when first, finish or NULL. */
json_object *oai_chunk(const oai_head_t *h, const oai_choice_t *c, int from, int to, int first, const char *finish);
/* The final usage chunk (empty choices) of a stream with stream_options.include_usage. */
json_object *oai_usage_chunk(const oai_head_t *h, json_object *usage);
/* {"prompt_tokens","completion_tokens","total_tokens","prompt_tokens_details":{"cached_tokens"}} */
json_object *oai_usage(int prompt_tokens, int completion_tokens, int cached_tokens);
/* GET /v1/models (id NULL) or GET /v1/models/{id}. */
json_object *oai_model_list(const char *model, long long created);
json_object *oai_model(const char *model, long long created);
/* {"error": {...}}; param may be NULL or "". */
json_object *oai_error(int status, const char *type, const char *msg, const char *param);

#endif
