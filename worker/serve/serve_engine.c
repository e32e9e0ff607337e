/* serve_engine.c -- the adapter between the HTTP server (serve.h) and the sharded generation
 * engine (infer.h): a serve_backend_t over infer_engine_t on rank 0, and the loop of the other
 * ranks, which hold the later pipeline stages and follow rank 0's rounds until it shuts down.
 *
 * Tokens: models with a 256-token vocabulary are byte-level; the prompt's bytes are the tokens.
 * A generated token (a byte) is sent as the Unicode code point of the same value, UTF-8 encoded
 * (bytes >= 0x80 read as Latin-1), so every response is valid UTF-8 JSON and equals what
 * `strata infer --json` prints. A BPE model (a larger vocabulary with a tokenizer: the
 * checkpoint's files, or GPT-2's shipped vocabulary for 50257 tokens, tok_load_model) has its
 * prompt encoded (special-token text such as <|endoftext|> becomes that token, as in `strata
 * infer`) and its tokens decoded through a UTF-8 stream per request (utf8.h): a token's text is
 * the whole characters it completes, so a token that ends inside a character has the empty
 * text and the next one carries the character; the last token (max_tokens) flushes an
 * unfinished character as U+FFFD. Its end-of-text token ends the request like a stop string
 * (finish "stop", not part of the text). token_text() is the one place ids become text for
 * log-probabilities: a BPE token that is not whole UTF-8 by itself is written "bytes:\xNN..."
 * (OpenAI's form). Vocabularies without a tokenizer are refused. A stop string found by the
 * server ends the request through infer_cancel, from the token callback.
 * Sessions live in the engine's session directory (serve_engine_opts_t.session_dir). */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strata/coll.h"
#include "infer.h"
#include "log.h"
#include "rng.h"
#include "serve.h"
#include "session.h"
#include "tokenizer.h"
#include "utf8.h"
#include "util.h"

typedef struct {
  coll_comm_t *comm;
  infer_engine_t *eng;
  gpt2_config_t cfg;
  int ranks;
  int tp; /* tensor-parallel ranks per stage: stages = ranks / tp */
  int64_t max_inflight;
  tok_t *tok;     /* a BPE model's tokenizer (rank 0), NULL for a byte-level model */
  int32_t eot;    /* its end-of-text token, or -1 */
} se_t;

static const serve_backend_ops_t engine_ops; /* at the end of the file */

typedef struct {
  se_t *s;
  uint64_t id;              /* the engine's request id */
  serve_on_token_fn on_token;
  serve_on_done_fn on_done;
  void *ctx;
  int n_prompt;
  int has_lp;               /* lp holds the next token's log-probabilities */
  int stopped;              /* on_token asked to stop: the engine was told to end the request */
  serve_logprobs_t lp;
  utf8_stream_t u8;         /* BPE: the bytes of an unfinished character */
  int n_gen, max_tokens;    /* tokens generated so far, and at most */
} se_req_t;

static int engine_make(const char *ckpt, const serve_engine_opts_t *so, coll_comm_t **comm,
                       infer_engine_t **eng, char *err, size_t errlen) {
  coll_config_t ccfg = coll_config_default();
  if (ccfg.env_error)
    return strata_fail(err, errlen, "%s", ccfg.env_error);
  coll_result_t cr = coll_comm_create(MPI_COMM_WORLD, &ccfg, comm);
  if (cr != COLL_OK)
    return strata_fail(err, errlen, "cannot create the communicator: %s", coll_result_string(cr));
  infer_opts_t o = infer_opts_default();
  if (so) {
    if (so->max_batch > 0) o.max_batch = so->max_batch;
    if (so->session_mem_mb >= 0) o.session_mem_mb = so->session_mem_mb;
    if (so->threads > 0) o.threads = so->threads;
    o.session_dir = so->session_dir;
    o.session_disk_mb = so->session_disk_mb;
    o.tp = so->tp > 0 ? so->tp : 1;
    o.bf16 = so->bf16;
  }
  if (infer_engine_create(ckpt, *comm, &o, eng, err, errlen)) {
    coll_comm_destroy(*comm);
    *comm = NULL;
    return -1;
  }
  return 0;
}

/* The text of one token, NUL-terminated, into buf[SERVE_TOKEN_TEXT_MAX]; its length. This is
 * the one place token ids become text for log-probabilities: a byte-level model's byte is the
 * Unicode code point of the same value (Latin-1), UTF-8 encoded; a BPE token is its bytes when
 * they are whole UTF-8, else "bytes:" and \xNN per byte (OpenAI's form), cut to the buffer on a
 * character boundary. */
static size_t token_text(const se_t *s, int32_t token, char *buf) {
  size_t n;
  if (s->tok) {
    size_t len = 0;
    const char *b = tok_token_bytes(s->tok, token, &len);
    if (!b) len = 0;
    if (utf8_valid(b, len, NULL)) {
      n = len < SERVE_TOKEN_TEXT_MAX ? len : SERVE_TOKEN_TEXT_MAX - 1;
      while (n < len && n > 0 && ((unsigned char)b[n] & 0xC0) == 0x80) n--; /* not inside a character */
      memcpy(buf, b, n);
    } else {
      n = (size_t)snprintf(buf, SERVE_TOKEN_TEXT_MAX, "bytes:");
      for (size_t i = 0; i < len && n + 4 < SERVE_TOKEN_TEXT_MAX; i++)
        n += (size_t)snprintf(buf + n, SERVE_TOKEN_TEXT_MAX - n, "\\x%02x", (unsigned char)b[i]);
    }
    buf[n] = '\0';
    return n;
  }
  unsigned c = (unsigned)token & 0xff;
  if (c < 0x80) buf[0] = (char)c, n = 1;
  else buf[0] = (char)(0xc0 | (c >> 6)), buf[1] = (char)(0x80 | (c & 0x3f)), n = 2;
  buf[n] = '\0';
  return n;
}

static void se_on_logprob(void *ctx, uint64_t id, const infer_logprob_t *lp) {
  (void)id;
  se_req_t *q = ctx;
  q->has_lp = 1;
  q->lp.logprob = lp->logprob;
  q->lp.n_top = lp->n_top < SERVE_TOP_LOGPROBS_MAX ? lp->n_top : SERVE_TOP_LOGPROBS_MAX;
  for (int k = 0; k < q->lp.n_top; k++) {
    token_text(q->s, lp->top_ids[k], q->lp.top[k].text);
    q->lp.top[k].logprob = lp->top_lps[k];
  }
}

/* A BPE token's text: the whole characters it completes (utf8.h), a new buffer of *n bytes,
 * with the U+FFFD of an unfinished character when it is the request's last token. NULL when
 * out of memory. */
static char *bpe_piece(se_req_t *q, int32_t token, size_t *n) {
  size_t len = 0;
  const char *b = tok_token_bytes(q->s->tok, token, &len);
  if (!b) len = 0;
  char *out = malloc(UTF8_STREAM_OUT_BYTES(len) + 3);
  if (!out) return NULL;
  *n = utf8_stream_feed(&q->u8, b, len, out);
  if (++q->n_gen >= q->max_tokens) *n += utf8_stream_finish(&q->u8, out + *n);
  return out;
}

static void se_on_token(void *ctx, uint64_t id, int32_t token) {
  (void)id;
  se_req_t *q = ctx;
  if (!q->on_token || q->stopped) return;
  const serve_logprobs_t *lp = q->has_lp ? &q->lp : NULL;
  q->has_lp = 0;
  char buf[SERVE_TOKEN_TEXT_MAX], *text = buf;
  size_t n;
  int stop;
  if (q->s->tok && token == q->s->eot) {
    stop = 1; /* end of text: the reply is complete */
  } else if (q->s->tok) {
    text = bpe_piece(q, token, &n);
    if (lp) token_text(q->s, token, q->lp.text);
    stop = text ? q->on_token(q->ctx, text, n, lp) : 1;
    free(text);
  } else {
    n = token_text(q->s, token, buf);
    stop = q->on_token(q->ctx, buf, n, lp);
  }
  if (stop) { /* a stop string: end it now (on this thread, allowed) */
    q->stopped = 1;
    infer_cancel(q->s->eng, q->id);
  }
}

/* The HTTP status of a request's failure. Engine failures end the job through step() instead. */
static int http_status_of(infer_error_t kind) {
  switch (kind) {
  case INFER_ERR_INVALID: return 400;
  case INFER_ERR_BUSY: return 429;
  case INFER_ERR_CONFLICT: return 409;
  case INFER_ERR_SESSION_DATA: return 422;
  case INFER_ERR_STORAGE: return 507;
  case INFER_ERR_CANCELLED: return 503;
  default: return 500;
  }
}

static void se_on_done(void *ctx, uint64_t id, const infer_result_t *res) {
  (void)id;
  se_req_t *q = ctx;
  serve_gen_result_t r;
  memset(&r, 0, sizeof r);
  r.prompt_tokens = res->n_prompt;
  r.completion_tokens = res->n_tokens;
  r.cached_tokens = res->cached_tokens;
  r.session_kept = res->ok && res->session_source && strcmp(res->session_source, "none") != 0;
  if (res->ok) {
    r.finish = q->stopped ? SERVE_FINISH_STOP
               : !strcmp(res->finish_reason ? res->finish_reason : "", "cancelled") ? SERVE_FINISH_CANCELLED
                                                                                    : SERVE_FINISH_LENGTH;
  } else if (res->error_kind == INFER_ERR_CANCELLED) {
    r.finish = SERVE_FINISH_CANCELLED;
  } else {
    r.finish = SERVE_FINISH_ERROR;
    r.http_status = http_status_of(res->error_kind);
    snprintf(r.message, sizeof r.message, "%s", res->error);
  }
  q->on_done(q->ctx, &r);
  free(q);
}

static int se_submit(void *impl, const serve_gen_request_t *req, serve_on_token_fn on_token,
                     serve_on_done_fn on_done, void *ctx, uint64_t *id_out, char *err, size_t errlen) {
  se_t *s = impl;
  if (s->cfg.vocab != 256 && !s->tok) {
    snprintf(err, errlen,
             "the model's vocabulary has %d tokens, not 256 bytes, and its checkpoint carries no tokenizer "
             "(tokenizer.json, vocab.json + merges.txt): put the tokenizer's files in the checkpoint directory",
             s->cfg.vocab);
    return 400;
  }
  int n = (int)req->prompt_bytes;
  int32_t *tok = NULL;
  if (s->tok) {
    tok_ids_t ids = {0};
    if (tok_encode(s->tok, req->prompt, req->prompt_bytes, 1, &ids, err, errlen)) {
      tok_ids_free(&ids);
      return 500;
    }
    tok = ids.v;
    n = (int)ids.n;
  } else {
    tok = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    for (int i = 0; tok && i < n; i++) tok[i] = (unsigned char)req->prompt[i];
  }
  se_req_t *q = calloc(1, sizeof *q);
  if ((!tok && n) || !q) {
    free(tok);
    free(q);
    snprintf(err, errlen, "out of memory for a request with a prompt of %zu bytes", req->prompt_bytes);
    return 500;
  }
  q->s = s;
  q->max_tokens = req->max_tokens;
  q->on_token = on_token;
  q->on_done = on_done;
  q->ctx = ctx;
  q->n_prompt = n;
  infer_request_t r;
  memset(&r, 0, sizeof r);
  r.prompt = tok;
  r.n_prompt = n;
  r.max_tokens = req->max_tokens;
  r.sampling.temperature = req->temperature;
  r.sampling.top_p = req->top_p;
  r.sampling.top_k = req->top_k;
  r.sampling.seed = req->has_seed ? req->seed : rng_mix64((uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)q);
  r.sampling.presence_penalty = req->presence_penalty;
  r.sampling.frequency_penalty = req->frequency_penalty;
  r.sampling.want_logprobs = req->logprobs >= 0;
  r.sampling.top_logprobs = req->logprobs >= 0 ? req->logprobs : 0;
  r.on_logprob = se_on_logprob;
  r.session = req->session;
  uint64_t id = 0;
  int rc = infer_submit(s->eng, &r, se_on_token, se_on_done, q, &id, err, errlen);
  free(tok);
  if (rc) {
    free(q);
    return http_status_of((infer_error_t)rc);
  }
  q->id = id;
  *id_out = id;
  return 0;
}

static void se_cancel(void *impl, uint64_t id) {
  se_t *s = impl;
  infer_cancel(s->eng, id);
}

static int se_step(void *impl, char *err, size_t errlen) {
  se_t *s = impl;
  if (infer_engine_step(s->eng))
    return strata_fail(err, errlen, "%s", infer_engine_error(s->eng));
  infer_stats_t st;
  infer_engine_stats(s->eng, &st);
  if (st.in_flight > s->max_inflight) s->max_inflight = st.in_flight;
  return 0;
}

static int se_tick(void *impl, char *err, size_t errlen) {
  se_t *s = impl;
  if (infer_engine_tick(s->eng))
    return strata_fail(err, errlen, "%s", infer_engine_error(s->eng));
  return 0;
}

static int se_idle(void *impl) {
  se_t *s = impl;
  return infer_engine_idle(s->eng);
}

static void se_stats(void *impl, serve_backend_stats_t *out) {
  se_t *s = impl;
  infer_stats_t st;
  infer_engine_stats(s->eng, &st);
  memset(out, 0, sizeof *out);
  out->inflight_sequences = st.in_flight;
  out->max_inflight_sequences = s->max_inflight;
  out->kv_cache_bytes = (int64_t)st.kv_cache_bytes;
  out->ranks = s->ranks;
  out->tp = s->tp;
  out->stages = s->ranks / s->tp;
  const char *dir = infer_session_dir(s->eng);
  out->active_sessions = st.sessions_on_disk > st.sessions_resident ? st.sessions_on_disk : st.sessions_resident;
  out->session_store_state = !dir ? "off" : st.session_store_degraded ? "degraded" : "ok";
  snprintf(out->session_store_error, sizeof out->session_store_error, "%s", st.session_store_error);
  out->session_disk_bytes = (int64_t)st.session_disk_bytes;
  out->session_disk_quota_bytes = (int64_t)st.session_disk_quota_bytes;
  out->session_disk_evictions = (int64_t)st.session_disk_evictions;
  out->session_save_failures = (int64_t)st.session_save_failures;
  snprintf(out->model, sizeof out->model, "strata-%s-L%d-C%d", infer_engine_family(s->eng), s->cfg.layers,
           s->cfg.dim);
}

static int se_sessions_json(void *impl, char **json_out, char *err, size_t errlen) {
  se_t *s = impl;
  const char *dir = infer_session_dir(s->eng);
  session_info_t *v = NULL;
  int n = 0;
  if (!dir) return 501;
  if (session_list(dir, &v, &n, err, errlen)) return -1;
  size_t cap = 16 + (size_t)n * (SESSION_ID_MAX + 160), len = 0; /* an entry is under 200 bytes */
  char *out = malloc(cap);
  if (!out) {
    free(v);
    return strata_fail(err, errlen, "out of memory for the list of %d sessions", n);
  }
  len += (size_t)snprintf(out + len, cap - len, "[");
  for (int i = 0; i < n; i++)
    len += (size_t)snprintf(out + len, cap - len,
                            "%s{\"id\":\"%s\",\"tokens\":%d,\"bytes\":%llu,\"turns\":%llu,\"stages\":%d,\"tp\":%d}",
                            i ? "," : "", v[i].id, v[i].n_tokens, (unsigned long long)v[i].bytes,
                            (unsigned long long)v[i].generation, v[i].stages, v[i].tp);
  snprintf(out + len, cap - len, "]");
  free(v);
  *json_out = out;
  return 0;
}

static int se_session_delete(void *impl, const char *id, char *err, size_t errlen) {
  se_t *s = impl;
  if (!infer_session_dir(s->eng)) return 501;
  int d = infer_session_delete(s->eng, id, err, errlen);
  return d == 0 ? 0 : d == 1 ? 404 : d == 2 ? 409 : 500;
}

static void se_destroy(void *impl) {
  se_t *s = impl;
  if (!s) return;
  infer_engine_shutdown(s->eng); /* ends unfinished requests and releases the other ranks */
  coll_comm_destroy(s->comm);
  tok_free(s->tok);
  free(s);
}

static int se_open(const char *ckpt, const serve_engine_opts_t *so, serve_backend_t *out, char *err,
                   size_t errlen) {
  se_t *s = calloc(1, sizeof *s);
  if (!s) return strata_fail(err, errlen, "out of memory for the engine backend's state");
  if (engine_make(ckpt, so, &s->comm, &s->eng, err, errlen)) {
    free(s);
    return -1;
  }
  s->ranks = coll_size(s->comm);
  s->tp = so && so->tp > 0 ? so->tp : 1;
  s->cfg = *infer_engine_config(s->eng);
  if (tok_load_model(ckpt, s->cfg.vocab, &s->tok, err, errlen)) {
    se_destroy(s);
    return -1;
  }
  s->eot = s->tok ? tok_eot(s->tok) : -1;
  if (s->tok)
    strata_info("serve: the model's %d-token vocabulary takes and returns text through %s", s->cfg.vocab,
                tok_dir_has_files(ckpt) ? "the checkpoint's tokenizer" : "GPT-2's shipped tokenizer");
  out->ops = &engine_ops;
  out->impl = s;
  return 0;
}

static int se_worker(const char *ckpt, const serve_engine_opts_t *so, char *err, size_t errlen) {
  /* mpirun forwards SIGINT/SIGTERM to every rank: the workers do not stop on them (the caller,
   * cmd_serve.c, catches them) and end when rank 0, which drains its requests first, shuts the
   * engine down */
  coll_comm_t *comm = NULL;
  infer_engine_t *eng = NULL;
  if (engine_make(ckpt, so, &comm, &eng, err, errlen)) return -1;
  int rc = infer_worker_loop(eng);
  if (rc) snprintf(err, errlen, "%s", infer_engine_error(eng));
  infer_engine_shutdown(eng);
  coll_comm_destroy(comm);
  return rc ? -1 : 0;
}

static const serve_engine_hooks_t hooks = {se_open, se_worker};
const serve_engine_hooks_t *serve_engine_hooks_impl = &hooks;

static const serve_backend_ops_t engine_ops = {
    .name = "engine",
    .submit = se_submit,
    .cancel = se_cancel,
    .step = se_step,
    .tick = se_tick,
    .idle = se_idle,
    .stats = se_stats,
    .sessions_json = se_sessions_json,
    .session_delete = se_session_delete,
    .destroy = se_destroy,
};
