/* serve.c -- the serving core (see serve.h): admission into a bounded queue, hand-off of queued
 * requests to the backend from the main loop, token/done callbacks back to the waiting HTTP
 * threads, JSON and server-sent-event responses, graceful drain on stop.
 *
 * Threads: HTTP connection threads (handler, stream reader) and the serve_run thread share the
 * jobs under one mutex `s->mu`; each job has its own condition variable for its HTTP thread and
 * the loop has `s->loop_cv`. A job is referenced by its HTTP thread and by the loop/backend side
 * (refs = 2); whoever drops the last reference frees it. The backend is called only by the
 * loop, never with s->mu held. */
#include "serve.h"

#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "env.h"
#include "http_request.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "openai_response.h"
#include "util.h"

/* How long the idle loop sleeps between checks of the stop flag, seconds. */
#define SERVE_IDLE_WAIT_S 0.05
/* Backend stats are sampled into /metrics and /health this often, seconds. */
#define SERVE_STATS_PERIOD_S 0.1
/* After shutdown_grace_s and cancelling, requests still unfinished after this long are failed
 * by the server itself (a backend that never calls on_done cannot hang the shutdown). */
#define SERVE_CANCEL_WAIT_S 5.0

typedef enum { JOB_COMPLETION, JOB_SESSIONS_LIST, JOB_SESSION_DELETE } job_kind_t;
typedef enum { JOB_QUEUED, JOB_SUBMITTED, JOB_DONE } job_state_t;

struct job;
/* One choice of a completion: one backend request. */
typedef struct {
  struct job *job;
  oai_choice_t c;                /* its text, tokens, logprobs (openai_response.h) */
  int prompt_idx;                /* which prompt of the request */
  uint64_t backend_id;
  int submitted, done;
  serve_gen_result_t result;     /* valid when done */
  int stream_tok;                /* tokens already streamed */
  int stream_final;              /* finish chunk formatted */
} choice_t;

typedef struct job {
  struct job *next;              /* in s->queue (QUEUED) */
  struct job *act_prev, *act_next; /* in s->active (SUBMITTED) */
  struct serve *s;
  job_kind_t kind;
  job_state_t state;
  int refs;                      /* HTTP side + loop side */
  int loop_ref;                  /* 1 while the loop/backend side holds its reference */
  pthread_cond_t cv;             /* signalled on every change the HTTP thread waits for */
  http_completion_req_t req;     /* the parsed body (immutable once queued) */
  char *stops[OAI_STOP_MAX + CHAT_STOP_MAX]; /* the request's stop strings, then the chat template's */
  int n_stops;
  char session_id[HTTP_SESSION_ID_MAX + 1]; /* JOB_SESSION_DELETE */
  choice_t *ch;                  /* the choices: n per prompt, index = prompt * n + k */
  int nch;
  int pending;                   /* choices submitted whose on_done has not come */
  int cancel_requested;          /* the client went away */
  int cancel_sent;               /* backend->cancel was called for every submitted choice */
  double t_arrival_s, t_first_s, t_done_s; /* monotonic clock, seconds (t_first_s < 0: no token yet) */
  char id[40];                   /* "cmpl-..." */
  long long created;             /* unix time, seconds */
  int ntok;                      /* tokens received over all choices */
  serve_gen_result_t result;     /* valid when DONE and status == 0: finish of the first unusual choice, token sums */
  int status;                    /* != 0: refused before generating (HTTP status), message in errmsg */
  char errmsg[SERVE_MESSAGE_MAX];
  char *json_out;                /* JOB_SESSIONS_LIST result */
  /* streaming reader state (HTTP thread) */
  int stream_final;              /* final chunk and [DONE] formatted */
  char *pend;                    /* formatted bytes not yet handed to MHD */
  size_t pend_len, pend_off;
  int pend_oom;                  /* an event could not be formatted: the stream ends with an error */
} job_t;

struct serve {
  serve_opts_t opts;
  serve_backend_t be;
  http_request_limits_t limits;
  http_server_t *http;
  metrics_t *metrics;
  pthread_mutex_t mu;
  pthread_cond_t loop_cv;        /* wakes the loop: new job or cancel */
  job_t *queue_head, *queue_tail; /* QUEUED jobs, FIFO */
  job_t *active;                 /* SUBMITTED completion jobs */
  int admitted;                  /* completion jobs QUEUED or SUBMITTED */
  int draining;                  /* stop seen: refuse new work with 503 */
  volatile sig_atomic_t stop;    /* serve_stop() */
  volatile sig_atomic_t stop_sig; /* the signal that stopped the server (0: serve_stop) */
  volatile sig_atomic_t grace_cap_ms; /* >= 0: the drain gets at most this long (serve_stop_signal) */
  serve_backend_stats_t stats;   /* last sampled backend stats */
  chat_template_t chat;          /* renders chat messages */
  long long started;             /* unix seconds at start ("created" of the model) */
  uint64_t next_id;              /* request id counter */
};

static void cv_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
}

/* Waits on cv for at most wait_s; returns 1 when the time ran out. */
static int cv_wait_s(pthread_cond_t *cv, pthread_mutex_t *mu, double wait_s) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + wait_s;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  return pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT;
}

/* ---- options ---------------------------------------------------------------------------------- */
/* Ranges: worker/base/env.c; `strata` refuses a bad value before it starts, library users get a warning. */
static void env_int(const char *name, int *v) {
  char err[256];
  int64_t x;
  if (env_read_int(name, *v, &x, err, sizeof err)) strata_warn("serve: %s; using the default %d", err, *v);
  *v = (int)x;
}
static void env_double(const char *name, double *v) {
  char err[256];
  if (env_read_double(name, *v, v, err, sizeof err)) strata_warn("serve: %s; using the default %g", err, *v);
}

void serve_opts_default(serve_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->listen = "127.0.0.1:8080";
  o->max_request_bytes = 64 * 1024;
  o->max_tokens_limit = 1024;
  o->default_max_tokens = 16;
  o->max_queue = 64;
  o->max_connections = 128;
  o->timeout_s = 30;
  o->shutdown_grace_s = 10;
  o->keepalive_s = 1;
  o->header_timeout_s = 10;
  o->max_connections_per_client = 64;
  char err[256];
  if (env_read_bytes("STRATA_SERVE_MAX_REQUEST_BYTES", o->max_request_bytes, &o->max_request_bytes, err, sizeof err))
    strata_warn("serve: %s; using the default %zu", err, o->max_request_bytes);
  env_int("STRATA_SERVE_MAX_TOKENS_LIMIT", &o->max_tokens_limit);
  env_int("STRATA_SERVE_DEFAULT_MAX_TOKENS", &o->default_max_tokens);
  env_int("STRATA_SERVE_MAX_QUEUE", &o->max_queue);
  env_int("STRATA_SERVE_MAX_CONNECTIONS", &o->max_connections);
  env_int("STRATA_SERVE_TIMEOUT_S", &o->timeout_s);
  env_double("STRATA_SERVE_SHUTDOWN_GRACE_S", &o->shutdown_grace_s);
  env_double("STRATA_SERVE_KEEPALIVE_S", &o->keepalive_s);
  env_double("STRATA_SERVE_HEADER_TIMEOUT_S", &o->header_timeout_s);
  env_int("STRATA_SERVE_MAX_CONNECTIONS_PER_CLIENT", &o->max_connections_per_client);
}

/* ---- jobs ------------------------------------------------------------------------------------- */
static job_t *job_new(serve_t *s, job_kind_t kind) {
  job_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->s = s;
  j->kind = kind;
  j->refs = 2;
  j->loop_ref = 1;
  j->t_first_s = -1;
  cv_init_monotonic(&j->cv);
  return j;
}

/* Drops one reference; frees on the last. Called with s->mu held. */
static void job_release_locked(job_t *j) {
  if (--j->refs > 0) return;
  pthread_cond_destroy(&j->cv);
  http_request_free(&j->req);
  for (int i = 0; i < j->nch; i++) oai_choice_free(&j->ch[i].c);
  free(j->ch);
  free(j->json_out);
  free(j->pend);
  free(j);
}

static void active_remove_locked(serve_t *s, job_t *j) {
  if (j->act_prev) j->act_prev->act_next = j->act_next;
  else if (s->active == j) s->active = j->act_next;
  if (j->act_next) j->act_next->act_prev = j->act_prev;
  j->act_prev = j->act_next = NULL;
}

/* Marks a completion job finished without the backend (refused, cancelled before submit, or
 * forced at shutdown); the loop's reference is dropped unless the backend still holds it. */
static void job_fail_locked(serve_t *s, job_t *j, int status, const char *msg, int drop_loop_ref) {
  if (j->state == JOB_SUBMITTED) active_remove_locked(s, j);
  if (j->state != JOB_DONE && j->kind == JOB_COMPLETION) s->admitted--;
  j->state = JOB_DONE;
  j->status = status;
  snprintf(j->errmsg, sizeof j->errmsg, "%s", msg);
  j->t_done_s = strata_now_s();
  pthread_cond_broadcast(&j->cv);
  /* the loop's reference goes once the backend holds none of the job's choices */
  (void)drop_loop_ref;
  if (j->loop_ref && j->pending == 0) {
    j->loop_ref = 0;
    job_release_locked(j);
  }
}

/* ---- backend callbacks (loop thread) ---------------------------------------------------------- */
/* Drops the loop's reference once no choice is held by the backend and the job is done. */
static void loop_release_locked(job_t *j) {
  if (j->loop_ref && j->pending == 0 && j->state == JOB_DONE) {
    j->loop_ref = 0;
    job_release_locked(j);
  }
}

static int on_token(void *ctx, const char *text, size_t len, const serve_logprobs_t *lp) {
  choice_t *c = ctx;
  job_t *j = c->job;
  serve_t *s = j->s;
  int stop = 0;
  pthread_mutex_lock(&s->mu);
  if (j->state == JOB_DONE || c->c.stopped) { /* forced done at shutdown, or past a stop string */
    stop = 1;
    goto out;
  }
  if (j->t_first_s < 0) j->t_first_s = strata_now_s();
  int r = oai_choice_add(&c->c, text, len, j->req.oai.logprobs >= 0 ? lp : NULL, j->stops, j->n_stops);
  if (r < 0) {
    /* the request fails; the backend's later tokens and its on_done find it DONE */
    job_fail_locked(s, j, 500, "out of memory for the generated text", 0);
    stop = 1;
    goto out;
  }
  stop = r == 1;
  j->ntok++;
  pthread_cond_broadcast(&j->cv);
out:
  pthread_mutex_unlock(&s->mu);
  return stop;
}

/* The job's outcome once every choice is done: the first error or cancellation decides it. */
static void job_finish_locked(serve_t *s, job_t *j) {
  serve_gen_result_t r;
  memset(&r, 0, sizeof r);
  r.finish = SERVE_FINISH_LENGTH;
  for (int i = 0; i < j->nch; i++) {
    const serve_gen_result_t *x = &j->ch[i].result;
    if (i % j->req.oai.n == 0) r.prompt_tokens += x->prompt_tokens; /* a prompt counts once */
    r.completion_tokens += x->completion_tokens;
    r.cached_tokens += x->cached_tokens;
    r.session_kept |= x->session_kept;
    if ((x->finish == SERVE_FINISH_ERROR || x->finish == SERVE_FINISH_CANCELLED) &&
        r.finish != SERVE_FINISH_ERROR) {
      r.finish = x->finish;
      r.http_status = x->http_status;
      snprintf(r.message, sizeof r.message, "%s", x->message);
    }
  }
  active_remove_locked(s, j);
  s->admitted--;
  j->state = JOB_DONE;
  j->result = r;
  j->t_done_s = strata_now_s();
  double ttft = j->t_first_s >= 0 ? j->t_first_s - j->t_arrival_s : -1;
  if (r.finish == SERVE_FINISH_LENGTH || r.finish == SERVE_FINISH_STOP)
    metrics_observe_request(s->metrics, j->t_done_s - j->t_arrival_s, ttft);
}

static void on_done(void *ctx, const serve_gen_result_t *res) {
  choice_t *c = ctx;
  job_t *j = c->job;
  serve_t *s = j->s;
  pthread_mutex_lock(&s->mu);
  c->done = 1;
  c->result = *res;
  if (c->c.stopped && (res->finish == SERVE_FINISH_CANCELLED || res->finish == SERVE_FINISH_LENGTH))
    c->result.finish = SERVE_FINISH_STOP;
  j->pending--;
  metrics_add_tokens(s->metrics, (uint64_t)(res->completion_tokens > 0 ? res->completion_tokens : 0),
                     (uint64_t)(res->prompt_tokens > 0 ? res->prompt_tokens : 0));
  if (j->state != JOB_DONE) {
    if (res->finish == SERVE_FINISH_ERROR && !j->cancel_requested) { /* the other choices are not wanted */
      j->cancel_requested = 1;
      pthread_cond_signal(&s->loop_cv);
    }
    int all = 1;
    for (int i = 0; i < j->nch; i++) all &= j->ch[i].done;
    if (all) job_finish_locked(s, j);
    pthread_cond_broadcast(&j->cv);
  }
  loop_release_locked(j);
  pthread_mutex_unlock(&s->mu);
}

/* ---- JSON helpers ----------------------------------------------------------------------------- */
static char *json_take(json_object *o, size_t *len) {
  const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  char *r = strdup(t ? t : "{}");
  json_object_put(o);
  if (r && len) *len = strlen(r);
  return r;
}

static const char *error_type(int status) {
  switch (status) {
  case 400: return "invalid_request_error";
  case 404: return "not_found";
  case 405: return "method_not_allowed";
  case 409: return "conflict";
  case 413: case 414: case 431: return "request_too_large";
  case 422: return "unprocessable_session";
  case 507: return "insufficient_storage";
  case 429: return "overloaded";
  case 501: return "not_implemented";
  case 503: return "unavailable";
  default: return "server_error";
  }
}

static void respond_json(serve_t *s, http_response_t *r, int status, json_object *o) {
  r->status = status;
  r->content_type = "application/json";
  r->body = json_take(o, &r->body_len);
  metrics_count_response(s->metrics, status);
}

/* {"error": {"message": msg, "type": ..., "param": ..., "code": status}} */
static json_object *error_obj(int status, const char *msg) { return oai_error(status, error_type(status), msg, NULL); }

static void respond_error_param(serve_t *s, http_response_t *r, int status, const char *msg, const char *param) {
  if (status == 429 || status == 503) r->retry_after_s = 1;
  respond_json(s, r, status, oai_error(status, error_type(status), msg, param));
}

static void respond_error(serve_t *s, http_response_t *r, int status, const char *msg) {
  respond_error_param(s, r, status, msg, NULL);
}

static const char *finish_name(serve_finish_t f) {
  switch (f) {
  case SERVE_FINISH_LENGTH: return "length";
  case SERVE_FINISH_STOP: return "stop";
  case SERVE_FINISH_CANCELLED: return "cancelled";
  default: return "error";
  }
}

static const char *model_name(serve_t *s) { return s->stats.model[0] ? s->stats.model : s->be.ops->name; }

static oai_head_t head_of(serve_t *s, job_t *j) {
  oai_head_t h = {j->id, model_name(s), j->created, j->req.api, j->req.oai.logprobs};
  return h;
}

static json_object *usage_obj(job_t *j) {
  return oai_usage(j->result.prompt_tokens, j->result.completion_tokens, j->result.cached_tokens);
}

static json_object *timing_obj(job_t *j) {
  json_object *t = json_object_new_object();
  double ttft = j->t_first_s >= 0 ? j->t_first_s - j->t_arrival_s : -1;
  double total = j->t_done_s - j->t_arrival_s;
  json_object_object_add(t, "ttft_s", ttft >= 0 ? json_object_new_double(ttft) : NULL);
  json_object_object_add(t, "total_s", json_object_new_double(total));
  double decode_s = ttft >= 0 ? total - ttft : 0;
  json_object_object_add(t, "tokens_per_s", json_object_new_double(
      j->result.completion_tokens > 1 && decode_s > 0 ? (j->result.completion_tokens - 1) / decode_s : 0));
  return t;
}

/* Full (non-streaming) completion body; s->mu held. */
static json_object *completion_obj_locked(serve_t *s, job_t *j) {
  oai_head_t h = head_of(s, j);
  oai_choice_t *cs[HTTP_PROMPTS_MAX];
  const char *fin[HTTP_PROMPTS_MAX];
  for (int i = 0; i < j->nch; i++) cs[i] = &j->ch[i].c, fin[i] = finish_name(j->ch[i].result.finish);
  json_object *o = oai_response(&h, cs, fin, j->nch, usage_obj(j));
  json_object_object_add(o, "strata", timing_obj(j));
  if (j->req.session[0]) json_object_object_add(o, "session", json_object_new_string(j->req.session));
  return o;
}

/* ---- streaming -------------------------------------------------------------------------------- */
static void pend_append(job_t *j, const char *a, size_t n) {
  if (j->pend_off == j->pend_len) j->pend_off = j->pend_len = 0;
  char *np = j->pend_oom ? NULL : realloc(j->pend, j->pend_len + n);
  if (!np) {
    j->pend_oom = 1;
    return;
  }
  j->pend = np;
  memcpy(j->pend + j->pend_len, a, n);
  j->pend_len += n;
}

static void pend_event(job_t *j, json_object *o) {
  size_t n = 0;
  char *t = json_take(o, &n);
  if (!t) {
    j->pend_oom = 1;
    return;
  }
  pend_append(j, "data: ", 6);
  pend_append(j, t, n);
  pend_append(j, "\n\n", 2);
  free(t);
}

/* 1 when token i of c has no text of its own (a BPE token ending inside a character). */
static int token_empty(const oai_choice_t *c, int i) { return c->tok_end[i] == (i ? c->tok_end[i - 1] : 0); }

/* Formats what the choices have ready: their safe tokens, one chunk per token (a token without
 * text goes with the next, which completes its character), and once a choice is done its
 * finish chunk. Returns 1 if anything was formatted. s->mu held. */
static int stream_choices_locked(serve_t *s, job_t *j) {
  oai_head_t h = head_of(s, j);
  int any = 0;
  for (int i = 0; i < j->nch; i++) {
    choice_t *c = &j->ch[i];
    int done = c->done || j->state == JOB_DONE;
    int ready = oai_choice_safe_tokens(&c->c, j->stops, j->n_stops, done);
    while (c->stream_tok < ready) {
      int to = c->stream_tok + 1;
      while (to < ready && token_empty(&c->c, to - 1)) to++;
      if (!done && token_empty(&c->c, to - 1)) break; /* its character is not complete yet */
      pend_event(j, oai_chunk(&h, &c->c, c->stream_tok, to, c->stream_tok == 0, NULL));
      c->stream_tok = to;
      any = 1;
    }
    if (c->done && !c->stream_final && j->state == JOB_DONE && !j->status &&
        j->result.finish != SERVE_FINISH_ERROR) {
      c->stream_final = 1;
      any = 1;
      json_object *o = oai_chunk(&h, &c->c, c->stream_tok, c->stream_tok, c->stream_tok == 0,
                                 finish_name(c->result.finish));
      json_object_object_add(o, "strata", timing_obj(j));
      pend_event(j, o);
    }
  }
  return any;
}

/* Blocks until there is something to send; returns bytes, or 0 at the end. */
static ssize_t stream_read(void *cls, char *buf, size_t max) {
  job_t *j = cls;
  serve_t *s = j->s;
  ssize_t n = 0;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (j->pend_oom) { /* a broken event stream would be worse than a closed one */
      strata_warn("serve: out of memory for the event stream of request %s; closing it", j->id);
      n = -1;
      break;
    }
    if (j->pend_off < j->pend_len) {
      size_t k = j->pend_len - j->pend_off;
      if (k > max) k = max;
      memcpy(buf, j->pend + j->pend_off, k);
      j->pend_off += k;
      n = (ssize_t)k;
      break;
    }
    if (!j->stream_final && stream_choices_locked(s, j)) continue;
    if (j->state == JOB_DONE && !j->stream_final) {
      j->stream_final = 1;
      if (j->status || j->result.finish == SERVE_FINISH_ERROR ||
          (j->result.finish == SERVE_FINISH_CANCELLED && !j->result.session_kept)) {
        int st = j->status ? j->status : j->result.finish == SERVE_FINISH_ERROR ? j->result.http_status : 503;
        const char *msg = j->status ? j->errmsg
                          : j->result.finish == SERVE_FINISH_ERROR ? j->result.message
                                                                   : "request cancelled: the server is shutting down";
        pend_event(j, error_obj(st, msg));
      } else if (j->req.oai.include_usage) {
        oai_head_t h = head_of(s, j);
        pend_event(j, oai_usage_chunk(&h, usage_obj(j)));
      }
      pend_append(j, "data: [DONE]\n\n", 14);
      continue;
    }
    if (j->stream_final) break; /* n = 0: end of stream */
    int ntok = j->ntok;
    job_state_t st = j->state;
    int timed_out = cv_wait_s(&j->cv, &s->mu, s->opts.keepalive_s > 0 ? s->opts.keepalive_s : 1.0);
    /* Nothing new for keepalive_s: an SSE comment, so a departed client is noticed. */
    if (timed_out && j->ntok == ntok && j->state == st && s->opts.keepalive_s > 0)
      pend_append(j, ": keep-alive\n\n", 14);
  }
  pthread_mutex_unlock(&s->mu);
  return n;
}

static void stream_free(void *cls, int completed) {
  job_t *j = cls;
  serve_t *s = j->s;
  pthread_mutex_lock(&s->mu);
  if (!completed && j->state != JOB_DONE) {
    j->cancel_requested = 1; /* the client went away: the loop cancels it in the backend */
    pthread_cond_signal(&s->loop_cv);
  }
  job_release_locked(j);
  pthread_mutex_unlock(&s->mu);
}

/* ---- handlers (HTTP threads) ------------------------------------------------------------------ */
/* Queues a job; returns 0, or the HTTP status of the refusal (message in msg). s->mu held. */
static int enqueue_locked(serve_t *s, job_t *j, char *msg, size_t msglen) {
  if (s->draining) {
    snprintf(msg, msglen, "the server is shutting down; retry against another server");
    return 503;
  }
  if (j->kind == JOB_COMPLETION) {
    if (s->admitted >= s->opts.max_queue) {
      snprintf(msg, msglen, "server overloaded: %d requests are queued or running (limit --max-queue %d); retry later",
               s->admitted, s->opts.max_queue);
      return 429;
    }
    s->admitted++;
  }
  j->state = JOB_QUEUED;
  if (s->queue_tail) s->queue_tail->next = j;
  else s->queue_head = j;
  s->queue_tail = j;
  pthread_cond_signal(&s->loop_cv);
  return 0;
}

/* The job's choices (n per prompt) and stop strings from its parsed request. 0, or -1 (OOM). */
static int job_setup(serve_t *s, job_t *j) {
  int n = j->req.oai.n;
  j->nch = j->req.n_prompts * n;
  j->ch = calloc((size_t)j->nch, sizeof *j->ch);
  if (!j->ch) return -1;
  for (int i = 0; i < j->nch; i++) {
    choice_t *c = &j->ch[i];
    c->job = j;
    c->prompt_idx = i / n;
    c->c.index = i;
    if (j->req.oai.echo) c->c.echo = j->req.prompts[i / n], c->c.echo_len = j->req.prompt_lens[i / n];
  }
  for (int i = 0; i < j->req.oai.n_stop; i++) j->stops[j->n_stops++] = j->req.oai.stop[i];
  if (j->req.api == OAI_CHAT)
    for (int i = 0; i < s->chat.n_stop; i++) j->stops[j->n_stops++] = s->chat.stop[i];
  return 0;
}

static void handle_completion(serve_t *s, oai_api_t api, const char *body, size_t len, int too_large, int fd,
                              http_response_t *r) {
  char msg[SERVE_MESSAGE_MAX], param[96] = "";
  if (too_large) {
    snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes (server flag --max-request-bytes)",
             s->opts.max_request_bytes);
    respond_error(s, r, 413, msg);
    return;
  }
  job_t *j = job_new(s, JOB_COMPLETION);
  if (!j) {
    respond_error(s, r, 500, "out of memory for a request");
    return;
  }
  int st = http_request_parse(body, len, &s->limits, api, &j->req, msg, sizeof msg, param, sizeof param);
  if (!st && job_setup(s, j)) st = 500, snprintf(msg, sizeof msg, "out of memory for a request's choices");
  if (st) {
    respond_error_param(s, r, st, msg, param);
    j->refs = 1;
    job_release_locked(j); /* never shared: no lock needed */
    return;
  }
  j->t_arrival_s = strata_now_s();
  j->created = (long long)time(NULL);
  pthread_mutex_lock(&s->mu);
  snprintf(j->id, sizeof j->id, "%s-%llx%06llx", api == OAI_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)j->created,
           (unsigned long long)++s->next_id);
  st = enqueue_locked(s, j, msg, sizeof msg);
  if (st) {
    pthread_mutex_unlock(&s->mu);
    respond_error(s, r, st, msg);
    j->refs = 1;
    job_release_locked(j);
    return;
  }
  /* Wait for the loop to hand it to the backend (or refuse it), so refusals keep their status. */
  while (j->state == JOB_QUEUED) pthread_cond_wait(&j->cv, &s->mu);
  if (j->state == JOB_DONE && j->status) {
    snprintf(msg, sizeof msg, "%s", j->errmsg);
    st = j->status;
    job_release_locked(j);
    pthread_mutex_unlock(&s->mu);
    respond_error(s, r, st, msg);
    return;
  }
  if (j->req.stream) {
    /* The status line goes out with the first token: an error found before it (a context too
     * long for the session, a session that cannot be restored) gets the status the same request
     * would get unstreamed, not 200 and then an error event. */
    while (j->state != JOB_DONE && j->ntok == 0) {
      cv_wait_s(&j->cv, &s->mu, s->opts.keepalive_s > 0 ? s->opts.keepalive_s : 1.0);
      if (j->state != JOB_DONE && j->ntok == 0 && !j->cancel_requested && http_client_gone(fd)) {
        j->cancel_requested = 1;
        pthread_cond_signal(&s->loop_cv);
      }
    }
    if (j->state == JOB_DONE && j->ntok == 0 && (j->status || j->result.finish == SERVE_FINISH_ERROR)) {
      st = j->status ? j->status : j->result.http_status;
      if (st < 400 || st > 599) st = 500;
      snprintf(msg, sizeof msg, "%s", j->status ? j->errmsg : j->result.message);
      job_release_locked(j);
      pthread_mutex_unlock(&s->mu);
      respond_error(s, r, st, msg);
      return;
    }
    pthread_mutex_unlock(&s->mu);
    r->status = 200;
    r->content_type = "text/event-stream";
    r->stream_read = stream_read;
    r->stream_free = stream_free;
    r->stream_cls = j;
    metrics_count_response(s->metrics, 200);
    return;
  }
  /* Wait for the answer; a client that hangs up meanwhile gets its request cancelled. */
  while (j->state != JOB_DONE) {
    cv_wait_s(&j->cv, &s->mu, s->opts.keepalive_s > 0 ? s->opts.keepalive_s : 1.0);
    if (j->state != JOB_DONE && !j->cancel_requested && http_client_gone(fd)) {
      j->cancel_requested = 1;
      pthread_cond_signal(&s->loop_cv);
    }
  }
  /* A cancelled session turn the session kept (shutdown) is answered with what it holds. */
  if (j->status || j->result.finish == SERVE_FINISH_ERROR ||
      (j->result.finish == SERVE_FINISH_CANCELLED && (!j->result.session_kept || j->cancel_requested))) {
    st = j->status ? j->status : j->result.finish == SERVE_FINISH_ERROR ? j->result.http_status : 503;
    if (st < 400 || st > 599) st = 500;
    snprintf(msg, sizeof msg, "%s",
             j->status ? j->errmsg
             : j->result.finish == SERVE_FINISH_ERROR ? j->result.message
             : j->cancel_requested                    ? "request cancelled: the client went away"
                                                      : "request cancelled: the server is shutting down");
    job_release_locked(j);
    pthread_mutex_unlock(&s->mu);
    respond_error(s, r, st, msg);
    return;
  }
  json_object *o = completion_obj_locked(s, j);
  job_release_locked(j);
  pthread_mutex_unlock(&s->mu);
  respond_json(s, r, 200, o);
}

/* Runs a session job through the loop and answers. */
static void handle_session_job(serve_t *s, job_kind_t kind, const char *id, http_response_t *r) {
  char msg[SERVE_MESSAGE_MAX];
  job_t *j = job_new(s, kind);
  if (!j) {
    respond_error(s, r, 500, "out of memory for a request");
    return;
  }
  if (id) snprintf(j->session_id, sizeof j->session_id, "%s", id);
  pthread_mutex_lock(&s->mu);
  int st = enqueue_locked(s, j, msg, sizeof msg);
  if (st) {
    pthread_mutex_unlock(&s->mu);
    j->refs = 1;
    job_release_locked(j);
    respond_error(s, r, st, msg);
    return;
  }
  while (j->state != JOB_DONE) pthread_cond_wait(&j->cv, &s->mu);
  st = j->status;
  snprintf(msg, sizeof msg, "%s", j->errmsg);
  char *out = j->json_out;
  j->json_out = NULL;
  job_release_locked(j);
  pthread_mutex_unlock(&s->mu);
  if (st) {
    free(out);
    respond_error(s, r, st, msg);
    return;
  }
  json_object *o = json_object_new_object();
  if (kind == JOB_SESSIONS_LIST) {
    json_object *arr = json_tokener_parse(out ? out : "[]");
    json_object_object_add(o, "object", json_object_new_string("list"));
    json_object_object_add(o, "data", arr ? arr : json_object_new_array());
  } else {
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "deleted", json_object_new_boolean(1));
  }
  free(out);
  respond_json(s, r, 200, o);
}

static void handle_health(serve_t *s, http_response_t *r) {
  pthread_mutex_lock(&s->mu);
  int draining = s->draining, admitted = s->admitted;
  serve_backend_stats_t st = s->stats;
  pthread_mutex_unlock(&s->mu);
  json_object *o = json_object_new_object();
  json_object_object_add(o, "status", json_object_new_string(draining ? "shutting_down" : "ok"));
  json_object_object_add(o, "backend", json_object_new_string(s->be.ops->name));
  json_object_object_add(o, "model", json_object_new_string(st.model));
  json_object_object_add(o, "ranks", json_object_new_int(st.ranks));
  json_object_object_add(o, "stages", json_object_new_int(st.stages));
  json_object_object_add(o, "tp", json_object_new_int(st.tp > 0 ? st.tp : 1));
  json_object_object_add(o, "queue_depth", json_object_new_int(admitted));
  json_object_object_add(o, "max_queue", json_object_new_int(s->opts.max_queue));
  json_object_object_add(o, "inflight_sequences", json_object_new_int64(st.inflight_sequences));
  json_object_object_add(o, "max_inflight_sequences", json_object_new_int64(st.max_inflight_sequences));
  json_object_object_add(o, "active_sessions", json_object_new_int64(st.active_sessions));
  json_object *store = json_object_new_object();
  json_object_object_add(store, "status", json_object_new_string(st.session_store_state ? st.session_store_state : "off"));
  json_object_object_add(store, "bytes", json_object_new_int64(st.session_disk_bytes));
  json_object_object_add(store, "quota_bytes", json_object_new_int64(st.session_disk_quota_bytes));
  json_object_object_add(store, "evictions", json_object_new_int64(st.session_disk_evictions));
  json_object_object_add(store, "failed_saves", json_object_new_int64(st.session_save_failures));
  json_object_object_add(store, "last_error", st.session_store_error[0] ? json_object_new_string(st.session_store_error) : NULL);
  json_object_object_add(o, "session_store", store);
  respond_json(s, r, draining ? 503 : 200, o);
}

/* GET /v1/models, GET /v1/models/{id} (404 for another id). */
static void handle_models(serve_t *s, const char *id, http_response_t *r) {
  pthread_mutex_lock(&s->mu);
  char model[sizeof s->stats.model];
  snprintf(model, sizeof model, "%s", model_name(s));
  pthread_mutex_unlock(&s->mu);
  if (!id) return respond_json(s, r, 200, oai_model_list(model, s->started));
  if (!strcmp(id, model)) return respond_json(s, r, 200, oai_model(model, s->started));
  char msg[256];
  snprintf(msg, sizeof msg, "the model '%.100s' does not exist; this server serves '%s'", id, model);
  respond_error_param(s, r, 404, msg, "model");
}

static void handle_metrics(serve_t *s, http_response_t *r) {
  metrics_count_response(s->metrics, 200); /* counted first, so it shows in its own scrape */
  http_server_counters_t hc;
  http_server_counters(s->http, &hc);
  metrics_set_http_connections(s->metrics, &hc);
  r->status = 200;
  r->content_type = METRICS_CONTENT_TYPE;
  r->body = metrics_render(s->metrics, &r->body_len);
  if (!r->body) respond_error(s, r, 500, "out of memory for the metrics page");
}

static void handler(void *cls, const char *method, const char *path, const char *body, size_t len, int too_large,
                    int fd, http_response_t *r) {
  serve_t *s = cls;
  /* HEAD is answered as GET; libmicrohttpd sends the same status and headers without the body. */
  int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  int is_post = !strcmp(method, "POST"), is_del = !strcmp(method, "DELETE");
  char msg[256];
  if (!strcmp(path, "/v1/completions") || !strcmp(path, "/v1/chat/completions")) {
    if (is_post) return handle_completion(s, path[4] == 'c' && path[5] == 'h' ? OAI_CHAT : OAI_COMPLETIONS, body, len,
                                          too_large, fd, r);
    r->allow = "POST";
  } else if (!strcmp(path, "/v1/models") || !strncmp(path, "/v1/models/", 11)) {
    if (is_get) return handle_models(s, path[10] == '/' ? path + 11 : NULL, r);
    r->allow = "GET, HEAD";
  } else if (!strcmp(path, "/health")) {
    if (is_get) return handle_health(s, r);
    r->allow = "GET, HEAD";
  } else if (!strcmp(path, "/metrics")) {
    if (is_get) return handle_metrics(s, r);
    r->allow = "GET, HEAD";
  } else if (!strcmp(path, "/v1/sessions")) {
    if (is_get) return handle_session_job(s, JOB_SESSIONS_LIST, NULL, r);
    r->allow = "GET, HEAD";
  } else if (!strncmp(path, "/v1/sessions/", 13)) {
    const char *id = path + 13;
    if (is_del) {
      if (!http_session_id_valid(id)) {
        snprintf(msg, sizeof msg, "session id must be 1 to %d characters from A-Z a-z 0-9 _ -", HTTP_SESSION_ID_MAX);
        return respond_error(s, r, 400, msg);
      }
      return handle_session_job(s, JOB_SESSION_DELETE, id, r);
    }
    r->allow = "DELETE";
  } else {
    snprintf(msg, sizeof msg,
             "no such endpoint '%.100s'; the server has POST /v1/completions, POST /v1/chat/completions, "
             "GET /v1/models, GET /health, GET /metrics, GET /v1/sessions, DELETE /v1/sessions/{id}",
             path);
    return respond_error(s, r, 404, msg);
  }
  snprintf(msg, sizeof msg, "method %.16s is not allowed on %.100s; use %s", method, path, r->allow);
  respond_error(s, r, 405, msg);
}

/* The error bodies of the answers the HTTP layer gives itself (framing errors, refused
 * connections): the same JSON, counted in /metrics. */
static char *http_error_body(void *cls, int status, const char *msg, size_t *len) {
  http_response_t r;
  memset(&r, 0, sizeof r);
  respond_error(cls, &r, status, msg);
  *len = r.body_len;
  return r.body;
}

/* ---- lifecycle -------------------------------------------------------------------------------- */
int serve_create(const serve_opts_t *opts, const serve_backend_t *backend, serve_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (opts->max_queue < 1 || opts->max_tokens_limit < 1 || opts->default_max_tokens < 1 ||
      opts->max_request_bytes < 16 || opts->max_connections < 1)
    return strata_fail(err, errlen, "--max-queue, --max-tokens-limit and --max-connections must be >= 1 and "
                       "--max-request-bytes >= 16");
  if (opts->max_connections_per_client < 0 || !(opts->header_timeout_s >= 0))
    return strata_fail(err, errlen, "--max-connections-per-client must be >= 0 (0 = no per-client limit) and "
                       "--header-timeout-s >= 0 (0 = no deadline)");
  char host[64];
  int port, loop;
  if (http_parse_listen(opts->listen, host, sizeof host, &port, &loop, err, errlen)) return -1;
  serve_t *s = calloc(1, sizeof *s);
  if (!s) return strata_fail(err, errlen, "out of memory for the server's state");
  s->opts = *opts;
  s->be = *backend;
  s->limits.max_body_bytes = opts->max_request_bytes;
  s->limits.max_tokens_limit = opts->max_tokens_limit;
  s->limits.default_max_tokens =
      opts->default_max_tokens < opts->max_tokens_limit ? opts->default_max_tokens : opts->max_tokens_limit;
  s->started = (long long)time(NULL);
  if (opts->chat_template ? chat_template_load(opts->chat_template, &s->chat, err, errlen)
                          : chat_template_default(&s->chat, err, errlen)) {
    free(s);
    return -1;
  }
  s->limits.chat_template = &s->chat;
  s->grace_cap_ms = -1;
  pthread_mutex_init(&s->mu, NULL);
  cv_init_monotonic(&s->loop_cv);
  s->metrics = metrics_create();
  s->be.ops->stats(s->be.impl, &s->stats);
  http_server_opts_t ho = {.listen = opts->listen,
                           .max_body_bytes = opts->max_request_bytes,
                           .max_connections = (unsigned)opts->max_connections,
                           .timeout_s = (unsigned)opts->timeout_s,
                           .max_connections_per_client = (unsigned)opts->max_connections_per_client,
                           .header_timeout_s = opts->header_timeout_s,
                           .error_body = http_error_body};
  if (!s->metrics || http_server_start(&ho, handler, s, &s->http, err, errlen)) {
    if (!s->metrics) snprintf(err, errlen, "out of memory for the server's metrics");
    metrics_destroy(s->metrics);
    chat_template_free(&s->chat);
    pthread_cond_destroy(&s->loop_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return -1;
  }
  if (!loop)
    strata_warn("serve: listening on the non-loopback address %s: anyone who can reach it can use the model; "
                "there is no authentication or TLS (put a proxy in front)", host);
  *out = s;
  return 0;
}

int serve_port(const serve_t *s) { return http_server_port(s->http); }

void serve_stop(serve_t *s) { s->stop = 1; }

void serve_stop_signal(serve_t *s, int sig, int grace_cap_ms) {
  s->stop_sig = sig;
  s->grace_cap_ms = grace_cap_ms;
  s->stop = 1;
}

static const char *signal_name(int sig, char *buf, size_t cap) {
  if (sig == SIGTERM) return "SIGTERM";
  if (sig == SIGINT) return "SIGINT";
  snprintf(buf, cap, "signal %d", sig);
  return buf;
}

static void sample_stats(serve_t *s) {
  serve_backend_stats_t st;
  memset(&st, 0, sizeof st);
  s->be.ops->stats(s->be.impl, &st);
  pthread_mutex_lock(&s->mu);
  s->stats = st;
  int admitted = s->admitted;
  int64_t unfinished = 0; /* choices admitted and not finished */
  for (job_t *j = s->queue_head; j; j = j->next) unfinished += j->kind == JOB_COMPLETION ? j->nch : 0;
  for (job_t *j = s->active; j; j = j->act_next) unfinished += j->pending;
  pthread_mutex_unlock(&s->mu);
  metrics_set_gauges(s->metrics, admitted, st.active_sessions, st.kv_cache_bytes, st.inflight_sequences);
  metrics_set_requests(s->metrics, st.inflight_sequences, unfinished > st.inflight_sequences ? unfinished - st.inflight_sequences : 0);
  metrics_set_build_info(s->metrics, s->opts.version, st.model[0] ? st.model : s->be.ops->name);
  metrics_set_session_store(s->metrics, st.session_disk_bytes, st.session_disk_quota_bytes,
                            st.session_store_state && !strcmp(st.session_store_state, "degraded"),
                            (uint64_t)st.session_save_failures, (uint64_t)st.session_disk_evictions);
}

/* Runs one session job on the loop thread. */
static void run_session_job(serve_t *s, job_t *j) {
  int st = 0;
  char msg[SERVE_MESSAGE_MAX] = "";
  char *json = NULL;
  if (j->kind == JOB_SESSIONS_LIST) {
    st = s->be.ops->sessions_json(s->be.impl, &json, msg, sizeof msg);
    if (st && st != 501) st = 500;
    if (st == 500 && !msg[0]) snprintf(msg, sizeof msg, "listing sessions failed");
  } else {
    st = s->be.ops->session_delete(s->be.impl, j->session_id, msg, sizeof msg);
    if (st == 404 && !msg[0]) snprintf(msg, sizeof msg, "no session '%s'", j->session_id);
  }
  if (st == 501) snprintf(msg, sizeof msg, "this backend (%s) keeps no sessions", s->be.ops->name);
  pthread_mutex_lock(&s->mu);
  j->json_out = json;
  job_fail_locked(s, j, st, msg, 1);
  pthread_mutex_unlock(&s->mu);
}

/* The loop's state between its passes. */
typedef struct {
  double grace_end_s, cancel_end_s, next_stats_s; /* monotonic clock; 0 until draining */
  uint64_t *cancel_ids; /* backend ids to cancel in this pass */
  int ncancel, ncancel_cap;
} loop_t;

/* Under s->mu, once serve_stop() was called: starts the drain and says so. */
static void start_drain_locked(serve_t *s, loop_t *L, double t) {
  s->draining = 1;
  double grace = s->opts.shutdown_grace_s;
  int cap_ms = s->grace_cap_ms;
  if (cap_ms >= 0 && grace > cap_ms / 1000.0) grace = cap_ms / 1000.0;
  L->grace_end_s = t + grace;
  L->cancel_end_s = L->grace_end_s + SERVE_CANCEL_WAIT_S;
  char sb[32], on[64] = "";
  if (s->stop_sig) snprintf(on, sizeof on, " on %s", signal_name(s->stop_sig, sb, sizeof sb));
  strata_info("serve: shutting down%s: new requests get 503; %d request(s) in flight get up to %.2f s to "
              "finish%s, then are cancelled; sessions stay on disk",
              on, s->admitted, grace,
              cap_ms >= 0 && grace < s->opts.shutdown_grace_s ? " (shortened: the launcher kills the ranks soon)"
                                                               : "");
}

/* Under s->mu: the cancellations due (client gone, or the drain's grace over) into L. When the
 * list cannot grow, the rest wait for the next pass. */
static void collect_cancels_locked(serve_t *s, loop_t *L, double t) {
  L->ncancel = 0;
  for (job_t *j = s->active; j; j = j->act_next) {
    int want = j->cancel_requested || (s->draining && t >= L->grace_end_s);
    if (!want || j->cancel_sent) continue;
    if (L->ncancel + j->nch > L->ncancel_cap) {
      uint64_t *nc = realloc(L->cancel_ids, sizeof *nc * (size_t)(2 * L->ncancel_cap + j->nch));
      if (!nc) break;
      L->cancel_ids = nc, L->ncancel_cap = 2 * L->ncancel_cap + j->nch;
    }
    j->cancel_sent = 1;
    for (int i = 0; i < j->nch; i++)
      if (j->ch[i].submitted && !j->ch[i].done) L->cancel_ids[L->ncancel++] = j->ch[i].backend_id;
  }
}

/* Hands one queued job to the backend (session jobs run here). */
static void submit_job(serve_t *s, job_t *j) {
  if (j->kind != JOB_COMPLETION && !s->draining) {
    run_session_job(s, j);
    return;
  }
  pthread_mutex_lock(&s->mu);
  if (j->kind != JOB_COMPLETION || j->cancel_requested || s->draining) {
    job_fail_locked(s, j, 503, s->draining ? "the server is shutting down" : "client went away", 1);
    pthread_mutex_unlock(&s->mu);
    return;
  }
  j->state = JOB_SUBMITTED;
  j->act_next = s->active;
  if (s->active) s->active->act_prev = j;
  s->active = j;
  pthread_mutex_unlock(&s->mu);
  int st = 0;
  char berr[256] = "";
  for (int i = 0; i < j->nch && !st; i++) {
    choice_t *c = &j->ch[i];
    int k = i % j->req.oai.n; /* choice k of its prompt: seed + k, so n choices differ yet repeat */
    serve_gen_request_t g = {j->req.prompts[c->prompt_idx], j->req.prompt_lens[c->prompt_idx], j->req.max_tokens,
                             j->req.temperature, j->req.top_p, j->req.top_k, j->req.has_seed,
                             j->req.seed + (uint64_t)k, j->req.oai.presence_penalty,
                             j->req.oai.frequency_penalty, j->req.oai.logprobs,
                             j->req.session[0] ? j->req.session : NULL};
    uint64_t id = 0;
    pthread_mutex_lock(&s->mu);
    j->pending++; /* before submit: its on_done may come from inside a later call */
    pthread_mutex_unlock(&s->mu);
    st = s->be.ops->submit(s->be.impl, &g, on_token, on_done, c, &id, berr, sizeof berr);
    pthread_mutex_lock(&s->mu);
    if (st) j->pending--;
    else c->submitted = 1, c->backend_id = id;
    pthread_mutex_unlock(&s->mu);
  }
  pthread_mutex_lock(&s->mu);
  if (st) {
    if (st < 400 || st > 599) st = 500;
    for (int i = 0; i < j->nch; i++) /* the choices already submitted are not wanted */
      if (j->ch[i].submitted && !j->ch[i].done) {
        uint64_t id = j->ch[i].backend_id;
        pthread_mutex_unlock(&s->mu);
        s->be.ops->cancel(s->be.impl, id);
        pthread_mutex_lock(&s->mu);
      }
    job_fail_locked(s, j, st, berr[0] ? berr : "the backend refused the request", 1);
  } else {
    pthread_cond_broadcast(&j->cv); /* SUBMITTED: a streaming handler may start */
  }
  pthread_mutex_unlock(&s->mu);
}

/* Under s->mu: refuses every queued job with 503. */
static void refuse_queued_locked(serve_t *s) {
  for (job_t *j = s->queue_head; j;) {
    job_t *nx = j->next;
    job_fail_locked(s, j, 503, "the server is shutting down", 1);
    j = nx;
  }
  s->queue_head = s->queue_tail = NULL;
}

int serve_run(serve_t *s, char *err, size_t errlen) {
  int rc = 0;
  loop_t L = {0, 0, 0, malloc(sizeof(uint64_t) * 64), 0, 64};
  if (!L.cancel_ids) return strata_fail(err, errlen, "out of memory for the serve loop's cancellation list");
  for (;;) {
    double t = strata_now_s();
    pthread_mutex_lock(&s->mu);
    if (s->stop && !s->draining) start_drain_locked(s, &L, t);
    job_t *batch = s->queue_head;
    s->queue_head = s->queue_tail = NULL;
    collect_cancels_locked(s, &L, t);
    if (s->draining && t >= L.cancel_end_s && s->active) {
      /* The backend did not finish cancelled requests in time: fail them here. */
      while (s->active) job_fail_locked(s, s->active, 503, "request cancelled: the server is shutting down", 0);
    }
    int drained = s->draining && !batch && s->admitted == 0;
    pthread_mutex_unlock(&s->mu);
    if (drained) break;

    while (batch) { /* in arrival order */
      job_t *j = batch;
      batch = j->next;
      j->next = NULL;
      submit_job(s, j);
    }
    for (int i = 0; i < L.ncancel; i++) s->be.ops->cancel(s->be.impl, L.cancel_ids[i]);

    int failed = s->be.ops->tick && s->be.ops->tick(s->be.impl, err, errlen);
    if (failed || !s->be.ops->idle(s->be.impl)) {
      if (failed || s->be.ops->step(s->be.impl, err, errlen)) {
        strata_error("serve: the backend failed: %s", err);
        rc = -1;
        pthread_mutex_lock(&s->mu);
        s->draining = 1;
        while (s->active) job_fail_locked(s, s->active, 500, "the inference backend failed; see the server log", 0);
        refuse_queued_locked(s);
        pthread_mutex_unlock(&s->mu);
        break;
      }
    } else {
      pthread_mutex_lock(&s->mu);
      if (!s->queue_head && !s->stop) cv_wait_s(&s->loop_cv, &s->mu, SERVE_IDLE_WAIT_S);
      pthread_mutex_unlock(&s->mu);
    }
    if (t >= L.next_stats_s) {
      sample_stats(s);
      L.next_stats_s = t + SERVE_STATS_PERIOD_S;
    }
  }
  free(L.cancel_ids);
  sample_stats(s);
  return rc;
}

void serve_destroy(serve_t *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->draining = 1;
  refuse_queued_locked(s); /* serve_run not called or returned early */
  pthread_mutex_unlock(&s->mu);
  http_server_stop(s->http);
  /* The backend goes last: it may still call on_done for requests failed at shutdown. */
  s->be.ops->destroy(s->be.impl);
  metrics_destroy(s->metrics);
  chat_template_free(&s->chat);
  pthread_cond_destroy(&s->loop_cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}
