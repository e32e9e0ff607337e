/* openai_params.h -- the OpenAI request parameters beyond the prompt, read from a parsed JSON body:
 * which parameters each endpoint accepts, and n, stop, logprobs / top_logprobs, echo,
 * presence_penalty, frequency_penalty, best_of and stream_options, each type- and range-checked.
 *
 * A parameter Strata does not implement is refused with 400 naming it (never silently ignored):
 * any key outside the endpoint's list below, and a listed one whose value would change the answer
 * in a way Strata does not honour (a non-empty logit_bias, tools, a suffix, best_of != n, a
 * response_format other than text, echo with logprobs). Accepted (POST /v1/completions):
 *   model prompt max_tokens temperature top_p top_k seed stream stream_options n best_of stop
 *   logprobs echo presence_penalty frequency_penalty user suffix logit_bias session
 * and (POST /v1/chat/completions):
 *   model messages max_tokens max_completion_tokens temperature top_p top_k seed stream
 *   stream_options n stop logprobs top_logprobs presence_penalty frequency_penalty user logit_bias
 *   response_format tools tool_choice parallel_tool_calls store metadata session
 * `user` is accepted and unused (it identifies the caller for abuse monitoring; it never changes
 * the answer). `session` and `top_k` are Strata extensions. Also the small JSON field helpers the
 * request parser (http_request.c) shares. Pure functions, no I/O. */
#ifndef STRATA_OPENAI_PARAMS_H
#define STRATA_OPENAI_PARAMS_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#define OAI_STOP_MAX 4         /* stop strings a request may give (OpenAI's limit) */
#define OAI_STOP_BYTES_MAX 256 /* longest stop string, bytes */
#define OAI_N_MAX 16           /* choices per prompt */
#define OAI_TOP_LOGPROBS_MAX 20

typedef enum { OAI_COMPLETIONS = 0, OAI_CHAT = 1 } oai_api_t;

typedef struct {
  int n;                            /* choices per prompt, [1, OAI_N_MAX] */
  int n_stop;                       /* stop strings given */
  char *stop[OAI_STOP_MAX];         /* malloc'd, non-empty */
  int logprobs;                     /* -1 off; k >= 0: the token's logprob and k alternatives */
  int echo;                         /* completions: the prompt precedes the generated text */
  double presence_penalty;          /* [-2, 2] */
  double frequency_penalty;         /* [-2, 2] */
  int include_usage;                /* stream_options.include_usage */
  char model[128];                  /* "" = not given */
} oai_params_t;

/* Reads every parameter above from `root` (an object) for endpoint `api`, after refusing any key
 * the endpoint does not accept. 0, or an HTTP status (400) with err naming the parameter and, in
 * param[paramlen], its name. *out holds malloc'd stop strings on success and on failure alike:
 * free with oai_params_free. */
int oai_params_read(json_object *root, oai_api_t api, oai_params_t *out, char *err, size_t errlen, char *param,
                    size_t paramlen);
void oai_params_free(oai_params_t *p);

/* Field helpers. oai_field: 0 = absent or null (use the default), 1 = present (*v set).
 * oai_get_int: a JSON int or an integral double in [lo, hi]; -1 not an integer, -2 out of range.
 * oai_get_num: a finite number; -1 otherwise. */
int oai_field(json_object *root, const char *name, json_object **v);
int oai_get_int(json_object *v, int64_t lo, int64_t hi, int64_t *out);
int oai_get_num(json_object *v, double *out);
/* Writes the message into err and `name` into param; returns 400. */
int oai_refuse(char *err, size_t errlen, char *param, size_t paramlen, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
