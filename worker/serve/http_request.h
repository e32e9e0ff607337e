/* http_request.h -- parsing and validation of the JSON body of POST /v1/completions and
 * POST /v1/chat/completions.
 *
 * A pure function from bytes to a plain struct, or to an HTTP 4xx status with a message that
 * names the problem and the fix. No I/O, no globals, so it is unit-tested and fuzzed directly
 * (tests/serve/test_http_request.c, tests/serve/fuzz_http_request.c).
 *
 * Accepted body (the completions API; chat differs only in "messages", see openai_chat.h):
 *   {"prompt": "text",            required, a string, or an array of 1 .. HTTP_PROMPTS_MAX strings
 *                                 (one choice per prompt); no NUL
 *    "max_tokens": 16,            integer in [1, limits.max_tokens_limit]; default limits.default_max_tokens
 *    "temperature": 1.0,          number in [0, 100]; 0 = greedy; default 1.0
 *    "top_p": 1.0,                number in (0, 1]; default 1.0
 *    "top_k": 0,                  integer >= 0; 0 = no top-k cut; default 0
 *    "seed": 1234,                integer in [0, 2^63); default: none (the backend picks one)
 *    "stream": false,             boolean; true = server-sent events
 *    "session": "chat-1",         string matching [A-Za-z0-9_-]{1,64}; optional (one prompt, n = 1)
 *    ... n, stop, logprobs, echo, penalties, stream_options: openai_params.h}
 * Any other field is refused with 400 naming it (openai_params.h lists what each endpoint takes);
 * JSON null for an optional field means "use the default". Wrong types are refused, naming the
 * field. A prompt containing a NUL byte is refused.
 */
#ifndef STRATA_HTTP_REQUEST_H
#define STRATA_HTTP_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "openai_chat.h"
#include "openai_params.h"

#define HTTP_SESSION_ID_MAX 64 /* longest accepted session id, bytes */
#define HTTP_PROMPTS_MAX 16    /* prompts in one request's array */

typedef struct {
  size_t max_body_bytes;   /* bodies longer than this -> 413 */
  int max_tokens_limit;    /* max_tokens above this -> 400 naming the limit */
  int default_max_tokens;  /* used when the body has no max_tokens */
  const chat_template_t *chat_template; /* renders chat messages; NULL = the default template */
} http_request_limits_t;

typedef struct {
  oai_api_t api;           /* the endpoint */
  char *prompts[HTTP_PROMPTS_MAX]; /* malloc'd, NUL-terminated UTF-8 prompts (chat: the rendered messages) */
  size_t prompt_lens[HTTP_PROMPTS_MAX];
  int n_prompts;           /* >= 1 */
  char *prompt;            /* prompts[0] */
  size_t prompt_bytes;     /* strlen(prompt) */
  oai_params_t oai;        /* n, stop, logprobs, echo, penalties, stream_options, model */
  int max_tokens;          /* tokens to generate at most, >= 1 */
  double temperature;      /* sampling temperature, 0 = greedy */
  double top_p;            /* nucleus mass, (0, 1] */
  int top_k;               /* 0 = off */
  int has_seed;            /* 1 if seed was given */
  uint64_t seed;           /* sampling seed (valid when has_seed) */
  int stream;              /* 1 = server-sent events */
  char session[HTTP_SESSION_ID_MAX + 1]; /* "" = stateless */
} http_completion_req_t;

/* Fills *lim with the defaults: 64 KiB body, max_tokens limit 1024, default max_tokens 16. */
void http_request_limits_default(http_request_limits_t *lim);

/* Parses `len` bytes of `body` (need not be NUL-terminated) for endpoint `api` into *out.
 * Returns 0 on success (free with http_request_free), or the HTTP status to answer with
 * (400 malformed / wrong type / out of range / unsupported, 413 too large) after writing a
 * one-line message naming the problem into err[errlen] and, when one parameter is to blame, its
 * name into param[paramlen] (else ""). *out is zeroed first and holds nothing to free on error. */
int http_request_parse(const char *body, size_t len, const http_request_limits_t *lim, oai_api_t api,
                       http_completion_req_t *out, char *err, size_t errlen, char *param, size_t paramlen);
/* http_request_parse for POST /v1/completions, without the parameter name. */
int http_request_parse_completion(const char *body, size_t len, const http_request_limits_t *lim,
                                  http_completion_req_t *out, char *err, size_t errlen);

/* Releases the prompts and stop strings of a parsed request (safe on a zeroed struct). */
void http_request_free(http_completion_req_t *req);

/* 1 if `id` is a valid session id: 1..64 characters from [A-Za-z0-9_-] (so it can never name a
 * path outside the session directory); 0 otherwise. */
int http_session_id_valid(const char *id);

#endif
