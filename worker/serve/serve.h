/* serve.h -- the serving core of `strata serve`: HTTP requests in, a generation backend out.
 *
 * The server owns an HTTP daemon (http_server.c, one thread per connection) and a bounded
 * request queue. The thread that calls serve_run() -- the coordinator's main thread -- is the
 * only one that ever calls the backend: each loop iteration it hands every queued request to
 * the backend (so concurrent requests reach it together and can be batched), forwards
 * cancellations, and calls backend->step() to advance all sequences in flight. The backend
 * reports tokens and completion through callbacks, which it calls on that same thread; the
 * server wakes the HTTP threads waiting on those requests.
 *
 * Endpoints: POST /v1/completions and POST /v1/chat/completions (OpenAI's wire format, see
 * http_request.h, openai_params.h, openai_chat.h, openai_response.h; "stream": true answers with
 * server-sent events "data: {chunk}\n\n" ... "data: [DONE]\n\n"), GET /v1/models,
 * GET /v1/models/{id}, GET /health,
 * GET /metrics (Prometheus text 0.0.4), GET /v1/sessions, DELETE /v1/sessions/{id}; HEAD on
 * each GET endpoint answers as GET does, without the body.
 * Errors are JSON {"error": {"message": ..., "type": ..., "code": status}}: 400 bad body or
 * session id, 404 unknown path or session, 405 wrong method (with Allow), 409 a session of
 * another job shape or model, 413 body too large, 422 a session whose files are missing,
 * corrupt or disagree (naming the stage), 429 queue full (--max-queue) or backend busy, 503
 * shutting down, 507 a turn whose session could not be saved (full or read-only disk), 500
 * backend failure. A streamed request gets the same status as an unstreamed one for every
 * error known before its first token (the response starts only then); an error after that
 * (507) arrives as a final SSE error event. A session turn cut short by the shutdown is
 * answered 200 with finish_reason "cancelled" and the text generated so far, because its
 * session keeps exactly that.
 *
 * Usage (rank 0):
 *    serve_opts_t o; serve_opts_default(&o); o.listen = "127.0.0.1:0";
 *    serve_backend_t be; fake_backend_create(&fopts, &be, err, sizeof err);   // or the engine's
 *    serve_t *s; if (serve_create(&o, &be, &s, err, sizeof err)) ...;
 *    printf("listening on http://127.0.0.1:%d\n", serve_port(s));
 *    serve_run(s);            // until serve_stop() (e.g. from a SIGTERM handler)
 *    serve_destroy(s);        // joins every HTTP thread, then destroys the backend
 */
#ifndef STRATA_SERVE_H
#define STRATA_SERVE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* ---- The backend interface ------------------------------------------------------------------
 * A generation engine as the server sees it: a const table of functions, one per backend at the
 * end of its file (serve_engine.c, serve_fake.c), and the state they are called with. Contract:
 *  - Every function is called only from the serve_run() thread (no locking needed inside).
 *  - submit() either refuses (returns an HTTP status: 429 busy, 400 e.g. a prompt longer than
 *    the context, 404 unknown session, 500 other; message in err) and never calls back, or
 *    returns 0 and later calls on_done(ctx, ...) EXACTLY ONCE -- also after cancel() -- from
 *    inside step(), cancel() or destroy(). on_token() is called zero or more times before
 *    on_done(), each with the text of one generated token and, when the request asked for
 *    logprobs, its log-probabilities (pointers valid only during the call). on_token() returns 1
 *    to end the request (a stop string matched): the backend then finishes it as soon as it can
 *    with SERVE_FINISH_STOP (tokens it still reports are ignored). After on_done() the backend
 *    never touches ctx again.
 *  - Token <-> text is the backend's business (a byte-level model maps bytes to Latin-1 code
 *    points; a BPE model decodes its pieces): the server sees UTF-8 text only, always whole
 *    characters. A token's text may be empty (a BPE token that ends inside a character: the
 *    next token's text carries the character); a stream sends such a token with the next.
 *    prompt_tokens and completion_tokens count the model's tokens.
 *  - cancel() of an id already finished is a no-op.
 *  - step() does a bounded amount of work (one decode step of the batch, say) and returns 0, or
 *    -1 after a fatal error (the server then fails all requests and stops).
 *  - idle() returns 1 when no submitted request is unfinished (the loop then sleeps).
 *  - tick() (may be NULL) is called on every pass of the loop, idle or not, at least every 50 ms:
 *    a backend spread over several ranks keeps them alive with it (a heartbeat). -1 is fatal
 *    (a rank died), as for step().
 *  - sessions_json / session_delete return 501 when this backend keeps no sessions (the
 *    endpoints then answer 501).
 *  - destroy() ends every unfinished request (on_done with SERVE_FINISH_CANCELLED) and frees.
 */
typedef struct {
  const char *prompt;   /* UTF-8 text, NUL-terminated */
  size_t prompt_bytes;  /* strlen(prompt) */
  int max_tokens;       /* >= 1 */
  double temperature;   /* 0 = greedy */
  double top_p;         /* (0, 1] */
  int top_k;            /* 0 = off */
  int has_seed;         /* 0: backend chooses a seed */
  uint64_t seed;
  double presence_penalty;  /* [-2, 2], OpenAI's definition (sampler.h) */
  double frequency_penalty; /* [-2, 2] */
  int logprobs;         /* -1: none; k >= 0: each token's log-probability and its k most likely
                           alternatives (k <= SERVE_TOP_LOGPROBS_MAX) */
  const char *session;  /* validated [A-Za-z0-9_-]{1,64}, or NULL = stateless */
} serve_gen_request_t;

#define SERVE_TOP_LOGPROBS_MAX 20 /* alternatives per token at most */
#define SERVE_TOKEN_TEXT_MAX 64   /* bytes of one token's text, with its NUL */

/* One generated token's log-probabilities, under the model's distribution (before penalties and
 * temperature). */
typedef struct {
  char text[SERVE_TOKEN_TEXT_MAX]; /* the generated token's own text when it differs from the text
                           on_token reports for it (a BPE token that ends inside a character:
                           "bytes:\\xe2\\x80"), else "" (the reported text is the token) */
  double logprob;       /* of the generated token */
  int n_top;            /* alternatives below, most likely first */
  struct {
    char text[SERVE_TOKEN_TEXT_MAX]; /* the alternative token's text, UTF-8 ("bytes:\\xNN..." for
                                        bytes that are not whole characters) */
    double logprob;
  } top[SERVE_TOP_LOGPROBS_MAX];
} serve_logprobs_t;

#define SERVE_MESSAGE_MAX 1024 /* longest error message a request carries, bytes */

typedef enum {
  SERVE_FINISH_LENGTH = 0,    /* max_tokens reached ("length") */
  SERVE_FINISH_STOP = 1,      /* end-of-text token, context full, or on_token() asked to stop ("stop") */
  SERVE_FINISH_CANCELLED = 2, /* cancel() or shutdown ("cancelled") */
  SERVE_FINISH_ERROR = 3,     /* failed; http_status and message say why */
} serve_finish_t;

typedef struct {
  serve_finish_t finish;
  int prompt_tokens;      /* tokens of the prompt processed (excluding session history) */
  int completion_tokens;  /* tokens generated */
  int cached_tokens;      /* session tokens reused from the KV cache (0 when stateless) */
  int session_kept;       /* 1: the request's session now holds its prompt and these completion tokens
                             (also when cancelled: the server then answers 200 with finish_reason
                             "cancelled" and the partial text, so the client knows the session's state) */
  int http_status;        /* for SERVE_FINISH_ERROR: 400 / 500 ... */
  char message[SERVE_MESSAGE_MAX]; /* for SERVE_FINISH_ERROR */
} serve_gen_result_t;

typedef int (*serve_on_token_fn)(void *ctx, const char *text, size_t text_bytes, const serve_logprobs_t *lp);
typedef void (*serve_on_done_fn)(void *ctx, const serve_gen_result_t *result);

typedef struct {
  int64_t inflight_sequences; /* sequences being generated */
  int64_t max_inflight_sequences; /* the most seen in flight at once since start (batching evidence) */
  int64_t active_sessions;    /* sessions held (memory or disk) */
  int64_t kv_cache_bytes;     /* KV-cache bytes held */
  int ranks;                  /* MPI ranks serving */
  int stages;                 /* pipeline stages */
  int tp;                     /* tensor-parallel ranks per stage (ranks = tp x stages); 0 = 1 */
  char model[64];             /* model name for responses, e.g. "gpt2-small" */
  /* the session store on disk (session_store_state "off" when the backend keeps no files) */
  const char *session_store_state;  /* "ok", "degraded" (the most recent save failed) or "off" */
  char session_store_error[256];    /* why the most recent failed save failed */
  int64_t session_disk_bytes;       /* committed session bytes on disk, all stages */
  int64_t session_disk_quota_bytes; /* 0 = no quota */
  int64_t session_disk_evictions;   /* sessions deleted to keep within the quota */
  int64_t session_save_failures;    /* saves that failed (those requests got 507) */
} serve_backend_stats_t;

typedef struct serve_backend_ops {
  const char *name;  /* "fake", "engine" ... (shown by /health) */
  int (*submit)(void *impl, const serve_gen_request_t *req, serve_on_token_fn on_token, serve_on_done_fn on_done,
                void *ctx, uint64_t *id_out, char *err, size_t errlen);
  void (*cancel)(void *impl, uint64_t id);
  int (*step)(void *impl, char *err, size_t errlen);
  int (*tick)(void *impl, char *err, size_t errlen); /* NULL: nothing to keep alive */
  int (*idle)(void *impl);
  void (*stats)(void *impl, serve_backend_stats_t *out);
  /* malloc'd JSON array text, e.g. [{"id":"a","tokens":12}]; returns 0, -1 with err, or 501 */
  int (*sessions_json)(void *impl, char **json_out, char *err, size_t errlen);
  /* 0 deleted, 404 no such session, 409 in use, 500 other, 501 keeps no sessions */
  int (*session_delete)(void *impl, const char *id, char *err, size_t errlen);
  void (*destroy)(void *impl);
} serve_backend_ops_t;

typedef struct {
  const serve_backend_ops_t *ops; /* the backend's functions */
  void *impl;                     /* its state, passed to every one of them */
} serve_backend_t;

/* ---- The server ------------------------------------------------------------------------------ */
typedef struct {
  const char *listen;          /* "HOST:PORT", default 127.0.0.1:8080; PORT 0 = any free port */
  size_t max_request_bytes;    /* request body limit (413 above), default 64 KiB */
  int max_tokens_limit;        /* max_tokens above this -> 400, default 1024 */
  int default_max_tokens;      /* when the body has none, default 16 */
  int max_queue;               /* admitted unfinished completions; more -> 429, default 64 */
  int max_connections;         /* simultaneous HTTP connections, default 128 */
  int timeout_s;               /* idle connection timeout, default 30 */
  double shutdown_grace_s;     /* on stop: in-flight requests get this long, then are cancelled; default 10 */
  double keepalive_s;          /* how often a waiting request checks for a departed client (streams: an SSE
                                  comment after this long without tokens), default 1 s */
  double header_timeout_s;     /* a request's headers and body must arrive within this long of the connection's
                                  start (or of the previous response), default 10 s; 0 = no deadline */
  int max_connections_per_client; /* simultaneous HTTP connections from one IPv4 address, default 64; 0 = only
                                  max_connections (see http_server.h for eviction and refusal) */
  const char *chat_template;   /* --chat-template FILE (openai_chat.h); NULL = the default template */
  const char *version;         /* Strata's version for strata_build_info; NULL = "unknown" */
} serve_opts_t;

typedef struct serve serve_t;

/* Defaults, each overridable by an environment variable of the same name in capitals prefixed
 * STRATA_SERVE_ (e.g. STRATA_SERVE_MAX_QUEUE=8); the CLI flags override both. */
void serve_opts_default(serve_opts_t *o);

/* Starts the HTTP daemon on opts->listen with `backend`. On success the server owns the backend
 * (serve_destroy destroys it); on failure the caller still does. Warns when the address is not
 * loopback. Returns 0, or -1 with err. */
int serve_create(const serve_opts_t *opts, const serve_backend_t *backend, serve_t **out, char *err, size_t errlen);

/* The bound port. */
int serve_port(const serve_t *s);

/* The main loop: hands requests to the backend and steps it until serve_stop(), then drains
 * (new requests get 503; in-flight ones finish within shutdown_grace_s, else are cancelled).
 * Returns 0, or -1 if the backend failed fatally (err says why). */
int serve_run(serve_t *s, char *err, size_t errlen);

/* Asks serve_run to finish. Async-signal-safe and callable from any thread. */
void serve_stop(serve_t *s);

/* serve_stop() from a signal handler (async-signal-safe): `sig` names the signal in the
 * shutdown log line ("serve: shutting down on SIGTERM ..."), and grace_cap_ms >= 0 shortens
 * the drain to at most that many milliseconds -- for a launcher that kills the process soon
 * after its SIGTERM (Open MPI's mpirun: see cmd_serve.c); -1 keeps shutdown_grace_s. */
void serve_stop_signal(serve_t *s, int sig, int grace_cap_ms);

/* Stops the HTTP daemon (joins every connection thread), destroys the backend and frees. Call
 * after serve_run returned. */
void serve_destroy(serve_t *s);

/* The inference-engine backend. The engine's adapter provides these hooks and cmd_serve.c points
 * serve_engine_hooks at them; while it is NULL, `strata serve --checkpoint DIR` explains that
 * serving a checkpoint needs the inference engine (`--backend fake` still works). */
typedef struct {
  const char *session_dir; /* where sessions live; NULL = sessions off */
  double session_mem_mb;   /* idle-session KV budget per stage; < 0 = engine default */
  int max_batch;           /* sequences in flight; <= 0 = engine default */
  int threads;             /* GEMM threads per rank; <= 0 = engine default */
  double session_disk_mb;  /* MiB committed sessions may take on disk, all stages; 0 = no quota */
  int tp;                  /* tensor-parallel ranks per stage (--tp); <= 0 = 1 */
  int bf16;                /* --precision bf16 (infer_opts_t.bf16); 0 = fp32 */
} serve_engine_opts_t;
typedef struct {
  /* rank 0: loads the checkpoint across all ranks (collective with `worker` on the others) and
   * fills *out. Returns 0, or -1 with err. */
  int (*open)(const char *checkpoint_dir, const serve_engine_opts_t *opts, serve_backend_t *out, char *err,
              size_t errlen);
  /* ranks > 0: load their stage and serve until rank 0's backend is destroyed (SIGINT/SIGTERM,
   * which mpirun forwards, must not stop them -- the caller catches those: rank 0 drains, then
   * releases them). 0 or -1 with err. */
  int (*worker)(const char *checkpoint_dir, const serve_engine_opts_t *opts, char *err, size_t errlen);
} serve_engine_hooks_t;
extern const serve_engine_hooks_t *serve_engine_hooks; /* defined in cmd_serve.c; NULL = no engine */
/* The real engine's hooks (serve_engine.c): open/worker over infer.h. */
extern const serve_engine_hooks_t *serve_engine_hooks_impl;

/* The built-in fake backend (serve_fake.c), deterministic, for tests and load generation.
 * Token i of a request is " w<k>" with k = (fnv1a64(prompt) + 7919 * seed + 104729 * i) mod 10000
 * (seed 0 when not given; with a session, i counts from the session's stored token count).
 * prompt_tokens = number of whitespace-separated words of the prompt. */
typedef struct {
  int max_batch;          /* sequences advanced per step; more wait in the backend (default 8) */
  int max_pending;        /* submitted but unfinished sequences; more -> submit refuses with 429 (default 256) */
  double step_delay_s;    /* sleep per step, simulating decode time (default 0.002) */
  double prefill_delay_s; /* extra sleep when a sequence is first stepped (default 0) */
} fake_backend_opts_t;
void fake_backend_opts_default(fake_backend_opts_t *o);
/* A prompt equal to "__fail__" finishes with SERVE_FINISH_ERROR / 500 before its first token, and
 * "__fail_late__" after two tokens (to test error paths, streamed and not);
 * a prompt starting with "__toolong__" is refused by submit with 400. */
int fake_backend_create(const fake_backend_opts_t *o, serve_backend_t *out, char *err, size_t errlen);

#endif
