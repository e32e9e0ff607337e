/* serve_fake.c -- a deterministic fake generation backend for `strata serve --backend fake`,
 * the HTTP tests and the load generator. It implements serve_backend_t (serve.h) without a
 * model: token i of a request is " w<k>", k = (fnv1a64(prompt) + 7919*seed + 104729*i) mod 10000,
 * so any client can predict the exact answer (with logprobs: the token at -0.1*(1 + k mod 10), then
 * alternatives " x1", " x2" ... one nat apart; penalties are accepted and change nothing); a configurable batch size, per-step delay and
 * pending-request capacity make batching, overload, streaming and cancellation observable.
 * Sessions remember how many tokens they hold (prompt + generated); a follow-up continues the
 * token index from there, and their "KV cache" is counted as FAKE_KV_BYTES_PER_TOKEN each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"
#include "util.h"

#define FAKE_KV_BYTES_PER_TOKEN 1024 /* pretend KV-cache bytes per stored session token */

static const serve_backend_ops_t fake_ops; /* at the end of the file */

typedef struct {
  uint64_t id;
  serve_on_token_fn on_token;
  serve_on_done_fn on_done;
  void *ctx;
  uint64_t prompt_hash;   /* fnv1a64 of the prompt */
  uint64_t seed;
  int max_tokens, generated, first_index, prompt_tokens, cached_tokens;
  int started;            /* prefill done */
  int fail_after;         /* fails after this many tokens: 0 for "__fail__", 2 for "__fail_late__"; -1 never */
  int logprobs;           /* -1 none, else alternatives per token */
  char session[65];
} fake_seq_t;

typedef struct {
  char id[65];
  int tokens;             /* tokens the session holds */
  int busy;               /* a request on it is in flight */
} fake_session_t;

typedef struct {
  fake_backend_opts_t o;
  fake_seq_t *seqs;       /* unfinished sequences, FIFO */
  int nseq, seq_cap;
  fake_session_t *sess;
  int nsess, sess_cap;
  uint64_t next_id;
} fake_t;

void fake_backend_opts_default(fake_backend_opts_t *o) {
  o->max_batch = 8;
  o->max_pending = 256;
  o->step_delay_s = 0.002;
  o->prefill_delay_s = 0;
}

static uint64_t fnv1a64(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

static fake_session_t *find_session(fake_t *f, const char *id) {
  for (int i = 0; i < f->nsess; i++)
    if (!strcmp(f->sess[i].id, id)) return &f->sess[i];
  return NULL;
}

static int count_words(const char *p) {
  int n = 0, in = 0;
  for (; *p; p++) {
    int ws = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
    if (!ws && !in) n++;
    in = !ws;
  }
  return n;
}

static int fake_submit(void *impl, const serve_gen_request_t *req, serve_on_token_fn on_token,
                       serve_on_done_fn on_done, void *ctx, uint64_t *id_out, char *err, size_t errlen) {
  fake_t *f = impl;
  if (!strncmp(req->prompt, "__toolong__", 11)) {
    snprintf(err, errlen, "prompt is longer than the model's context (fake backend test refusal)");
    return 400;
  }
  if (f->nseq >= f->o.max_pending) {
    snprintf(err, errlen, "backend busy: %d sequences pending (fake --fake-max-pending)", f->nseq);
    return 429;
  }
  fake_session_t *ss = NULL;
  if (req->session) {
    ss = find_session(f, req->session);
    if (ss && ss->busy) {
      snprintf(err, errlen, "session '%s' is busy with another request; retry when it finishes", req->session);
      return 409;
    }
    if (!ss) {
      if (f->nsess == f->sess_cap) {
        int nc = f->sess_cap ? 2 * f->sess_cap : 16;
        fake_session_t *ns = realloc(f->sess, sizeof *ns * (size_t)nc);
        if (!ns) return snprintf(err, errlen, "out of memory for %d sessions", nc), 500;
        f->sess = ns, f->sess_cap = nc;
      }
      ss = &f->sess[f->nsess++];
      memset(ss, 0, sizeof *ss);
      snprintf(ss->id, sizeof ss->id, "%s", req->session);
    }
  }
  if (f->nseq == f->seq_cap) {
    int nc = f->seq_cap ? 2 * f->seq_cap : 16;
    fake_seq_t *ns = realloc(f->seqs, sizeof *ns * (size_t)nc);
    if (!ns) return snprintf(err, errlen, "out of memory for %d sequences", nc), 500;
    f->seqs = ns, f->seq_cap = nc;
  }
  fake_seq_t *q = &f->seqs[f->nseq++];
  memset(q, 0, sizeof *q);
  q->id = ++f->next_id;
  q->on_token = on_token, q->on_done = on_done, q->ctx = ctx;
  q->prompt_hash = fnv1a64(req->prompt, req->prompt_bytes);
  q->seed = req->has_seed ? req->seed : 0;
  q->max_tokens = req->max_tokens;
  q->logprobs = req->logprobs;
  q->prompt_tokens = count_words(req->prompt);
  q->fail_after = !strcmp(req->prompt, "__fail__") ? 0 : !strcmp(req->prompt, "__fail_late__") ? 2 : -1;
  if (ss) {
    ss->busy = 1;
    q->cached_tokens = ss->tokens;
    q->first_index = ss->tokens;
    snprintf(q->session, sizeof q->session, "%s", ss->id);
  }
  *id_out = q->id;
  return 0;
}

/* Finishes sequence k (removing it) with the given result. */
static void finish(fake_t *f, int k, serve_finish_t how, int status, const char *msg) {
  fake_seq_t q = f->seqs[k];
  memmove(&f->seqs[k], &f->seqs[k + 1], sizeof q * (size_t)(f->nseq - k - 1));
  f->nseq--;
  if (q.session[0]) {
    fake_session_t *ss = find_session(f, q.session);
    if (ss) {
      ss->busy = 0;
      if (how == SERVE_FINISH_LENGTH || how == SERVE_FINISH_STOP) ss->tokens += q.prompt_tokens + q.generated;
    }
  }
  serve_gen_result_t r;
  memset(&r, 0, sizeof r);
  r.finish = how;
  r.prompt_tokens = q.prompt_tokens;
  r.completion_tokens = q.generated;
  r.cached_tokens = q.cached_tokens;
  r.http_status = status;
  if (msg) snprintf(r.message, sizeof r.message, "%s", msg);
  q.on_done(q.ctx, &r);
}

static void fake_cancel(void *impl, uint64_t id) {
  fake_t *f = impl;
  for (int k = 0; k < f->nseq; k++)
    if (f->seqs[k].id == id) {
      finish(f, k, SERVE_FINISH_CANCELLED, 0, NULL);
      return;
    }
}

static int fake_step(void *impl, char *err, size_t errlen) {
  fake_t *f = impl;
  int nb = f->nseq < f->o.max_batch ? f->nseq : f->o.max_batch;
  int prefill = 0;
  for (int k = 0; k < nb;) {
    fake_seq_t *q = &f->seqs[k];
    if (!q->started) q->started = 1, prefill = 1;
    if (q->fail_after >= 0 && q->generated >= q->fail_after) {
      finish(f, k, SERVE_FINISH_ERROR, 500, "generation failed (fake backend test failure)");
      nb--;
      continue;
    }
    char text[32];
    uint64_t i = (uint64_t)(q->first_index + q->generated);
    unsigned k10 = (unsigned)((q->prompt_hash + 7919ull * q->seed + 104729ull * i) % 10000ull);
    int n = snprintf(text, sizeof text, " w%u", k10);
    q->generated++;
    serve_logprobs_t lp, *lpp = NULL;
    if (q->logprobs >= 0) { /* the token itself, then " x1" .. one nat apart */
      lpp = &lp;
      lp.text[0] = '\0'; /* the token is its text */
      lp.logprob = -0.1 * (double)(1 + k10 % 10);
      lp.n_top = q->logprobs;
      for (int m = 0; m < lp.n_top; m++) {
        if (m == 0) snprintf(lp.top[m].text, sizeof lp.top[m].text, "%s", text);
        else snprintf(lp.top[m].text, sizeof lp.top[m].text, " x%d", m);
        lp.top[m].logprob = lp.logprob - m;
      }
    }
    if (q->on_token(q->ctx, text, (size_t)n, lpp)) {
      finish(f, k, SERVE_FINISH_STOP, 0, NULL);
      nb--;
      continue;
    }
    if (q->generated >= q->max_tokens) {
      finish(f, k, SERVE_FINISH_LENGTH, 0, NULL);
      nb--;
      continue;
    }
    k++;
  }
  if (prefill) sleep_s(f->o.prefill_delay_s);
  sleep_s(f->o.step_delay_s);
  return 0;
}

static int fake_idle(void *impl) { return ((fake_t *)impl)->nseq == 0; }

static void fake_stats(void *impl, serve_backend_stats_t *out) {
  fake_t *f = impl;
  memset(out, 0, sizeof *out);
  out->inflight_sequences = f->nseq;
  out->active_sessions = f->nsess;
  for (int i = 0; i < f->nsess; i++) out->kv_cache_bytes += (int64_t)f->sess[i].tokens * FAKE_KV_BYTES_PER_TOKEN;
  out->ranks = 1;
  out->stages = 1;
  snprintf(out->model, sizeof out->model, "fake");
}

static int fake_sessions_json(void *impl, char **json_out, char *err, size_t errlen) {
  fake_t *f = impl;
  size_t cap = 16 + (size_t)f->nsess * 112;
  char *b = malloc(cap);
  if (!b) return strata_fail(err, errlen, "out of memory for the list of %d sessions", f->nsess);
  size_t n = 0;
  n += (size_t)snprintf(b + n, cap - n, "[");
  for (int i = 0; i < f->nsess; i++)
    n += (size_t)snprintf(b + n, cap - n, "%s{\"id\":\"%s\",\"tokens\":%d}", i ? "," : "", f->sess[i].id,
                          f->sess[i].tokens);
  snprintf(b + n, cap - n, "]");
  *json_out = b;
  return 0;
}

static int fake_session_delete(void *impl, const char *id, char *err, size_t errlen) {
  fake_t *f = impl;
  fake_session_t *ss = find_session(f, id);
  if (!ss) return snprintf(err, errlen, "no session '%s'", id), 404;
  if (ss->busy) return snprintf(err, errlen, "session '%s' has a request in flight; retry when it finishes", id), 409;
  *ss = f->sess[--f->nsess];
  return 0;
}

static void fake_destroy(void *impl) {
  fake_t *f = impl;
  while (f->nseq) finish(f, 0, SERVE_FINISH_CANCELLED, 0, NULL);
  free(f->seqs);
  free(f->sess);
  free(f);
}

int fake_backend_create(const fake_backend_opts_t *o, serve_backend_t *out, char *err, size_t errlen) {
  fake_backend_opts_t d;
  if (!o) fake_backend_opts_default(&d), o = &d;
  if (o->max_batch < 1 || o->max_pending < 1 || o->step_delay_s < 0 || o->prefill_delay_s < 0)
    return strata_fail(err, errlen, "fake backend: batch and pending limits must be >= 1 and delays >= 0");
  fake_t *f = calloc(1, sizeof *f);
  if (!f) return strata_fail(err, errlen, "out of memory for the fake backend's state");
  f->o = *o;
  out->ops = &fake_ops;
  out->impl = f;
  return 0;
}

static const serve_backend_ops_t fake_ops = {
    .name = "fake",
    .submit = fake_submit,
    .cancel = fake_cancel,
    .step = fake_step,
    .tick = NULL, /* one process: nothing to keep alive */
    .idle = fake_idle,
    .stats = fake_stats,
    .sessions_json = fake_sessions_json,
    .session_delete = fake_session_delete,
    .destroy = fake_destroy,
};
