/* infer.c -- the sharded generation engine (see infer.h): request queue and admission on
 * rank 0, the per-round plan broadcast to every rank, the pipelined forward of sequence groups
 * through the stages, sampling on the last stage, sessions (save, load, LRU eviction).
 *
 * The plan of a round is a flat int32 message of operations, executed in order by every rank:
 *   OP_OPEN slot                 allocate / reset the slot's KV cache
 *   OP_SAMPLER slot t t k p p s s  (re)seed the slot's sampler (doubles and u64 as 2 words)
 *   OP_LOAD slot n_kv len id...  read the session's stage file into the slot (rank 0 already
 *                                did so at admission and skips it)
 *   OP_RUN G {nseq {slot n_new}*}*  forward every group through the pipeline and sample; rank 0
 *                                receives the previous RUN's tokens of group g just before
 *                                running group g (see exec_run)
 *   OP_SAVE slot len id...       write the slot's stage file of the session
 *   OP_SYNC                      barrier: every stage has executed the ops before it (after the
 *                                saves, so a request completes only once all its files are durable)
 *   OP_FREE slot                 release the slot's cache and sampler
 *   OP_SHUTDOWN                  leave infer_worker_loop
 * Rank 0 broadcasts the message (coll_broadcast; one collective for plans up to 255 words), then
 * executes it itself.
 */
#include "infer.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "env.h"
#include "kv_cache.h"
#include "layout.h"
#include "log.h"
#include "session.h"
#include "util.h"

enum { OP_END = 0, OP_OPEN, OP_SAMPLER, OP_LOAD, OP_RUN, OP_SAVE, OP_FREE, OP_SHUTDOWN, OP_SYNC };
enum { SLOT_FREE = 0, SLOT_ACTIVE, SLOT_IDLE };
#define TAG_ACT 100    /* + group: residual stream stage s -> s+1 */
#define TAG_TOK 5000   /* + group: sampled tokens last stage -> rank 0 */
#define MAX_GROUPS 512

typedef struct req_node {
  uint64_t id;
  int32_t *prompt;
  int n_prompt;
  int max_tokens;
  sampler_params_t sp;
  char session[SESSION_ID_MAX + 1];
  infer_token_fn on_token;
  infer_done_fn on_done;
  void *ctx;
  double t_submit;
  struct req_node *next;
} req_node_t;

typedef struct {
  int state;                 /* SLOT_* */
  kv_cache_t *cache;         /* this rank's stage cache */
  sampler_t sampler;         /* used on the last stage */
  int has_sampler;
  /* rank 0 only */
  req_node_t *req;           /* the request in flight (ACTIVE) */
  char session[SESSION_ID_MAX + 1]; /* "" = stateless */
  int32_t *tokens;           /* (ctx) the context: history + prompt + generated */
  int n_tokens;
  int n_gen;
  int cached_tokens;         /* positions reused at admission */
  const char *source;
  double t_first;
  uint64_t lru;              /* last use (round counter) */
  int n_kv;                  /* positions cached once the planned ops ran (rank 0's view) */
  int finished;
  int cancelled;             /* infer_cancel: finish at the start of the next round */
  int group;                 /* pipeline group the sequence stays in (rank 0) */
  int inflight;              /* tokens sampled but not yet received by rank 0 */
} slot_t;

struct infer_engine {
  coll_comm_t *comm;
  int rank, P;
  gpt2_config_t cfg;
  gpt2_model_t *model;
  layout_t lay;
  int nl;                    /* this stage's layers */
  int max_nl;                /* the largest stage's layers (for the memory budget) */
  infer_opts_t opts;
  char session_dir[4096];
  int sessions_enabled;
  session_header_t hdr;      /* this rank's session file identity */
  slot_t *slots;
  int nslots;
  /* rank 0 */
  pthread_mutex_t mu;
  req_node_t *q_head, *q_tail;
  int q_len;
  uint64_t next_id;
  uint64_t round;
  int in_flight;
  infer_stats_t st;
  /* message being built */
  int32_t *msg;
  int msg_len, msg_cap;
  char err[1024];
  /* rank 0, P > 1: the previous RUN's groups, whose tokens arrive during the next RUN */
  int32_t *prev_plan;        /* copy of that RUN's group list (G, {nseq, {slot, n_new}*}*) */
  int prev_len, prev_cap;
  int *recv_slots;           /* [nslots] slots that received a token in the last RUN, in order */
  int n_recv;
  /* last stage, P > 1: the previous RUN's token sends (complete during the next RUN) */
  coll_request_t *tok_reqs[MAX_GROUPS];
  int32_t *tok_bufs[MAX_GROUPS];
  int n_tok_reqs;
};

infer_opts_t infer_opts_default(void) {
  infer_opts_t o;
  memset(&o, 0, sizeof o);
  o.max_batch = INFER_MAX_BATCH_DEFAULT;
  o.session_mem_mb = INFER_SESSION_MEM_MB_DEFAULT;
  o.threads = 1;
  static char env_err[2][256]; /* what o.env_error points to (worker/env.c: ranges) */
  int64_t v;
  double d;
  if (env_read_int("STRATA_INFER_MAX_BATCH", o.max_batch, &v, env_err[0], sizeof env_err[0])) o.env_error = env_err[0];
  o.max_batch = (int)v;
  if (env_read_double("STRATA_INFER_SESSION_MEM_MB", o.session_mem_mb, &d, env_err[1], sizeof env_err[1])) o.env_error = env_err[1];
  o.session_mem_mb = d;
  return o;
}

const char *infer_engine_error(const infer_engine_t *e) { return e->err; }
const gpt2_config_t *infer_engine_config(const infer_engine_t *e) { return &e->cfg; }

/* ------------------------------------------------------------------ creation */

int infer_engine_create(const char *ckpt_dir, coll_comm_t *comm, const infer_opts_t *opts,
                        infer_engine_t **out, char *err, size_t errlen) {
  *out = NULL;
  infer_engine_t *e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  pthread_mutex_init(&e->mu, NULL);
  e->comm = comm;
  e->rank = coll_rank(comm);
  e->P = coll_size(comm);
  e->opts = *opts;
  if (opts->env_error) {
    snprintf(err, errlen, "%s", opts->env_error);
    goto fail;
  }
  if (opts->max_batch < 1 || opts->max_batch > MAX_GROUPS) {
    snprintf(err, errlen, "max batch %d must be in [1, %d] (--max-batch / STRATA_INFER_MAX_BATCH)",
             opts->max_batch, MAX_GROUPS);
    goto fail;
  }
  if (!(opts->session_mem_mb >= 0)) {
    snprintf(err, errlen, "session memory budget %g MiB must be >= 0 (--session-mem-mb)", opts->session_mem_mb);
    goto fail;
  }
  openblas_set_num_threads(opts->threads > 0 ? opts->threads : 1);
  if (ckpt_read_config(ckpt_dir, &e->cfg, err, errlen)) goto fail;
  layout_model_t lm = {e->cfg.vocab, e->cfg.ctx, e->cfg.layers, e->cfg.heads, e->cfg.dim};
  char lerr[512];
  if (layout_init(&e->lay, &lm, e->P, e->P, 1, 1, 1, NULL, lerr, sizeof lerr)) {
    snprintf(err, errlen, "cannot split the model over %d ranks: %s", e->P, lerr);
    goto fail;
  }
  int s = e->rank;
  gpt2_range_t r = {e->lay.layer_begin[s], e->lay.layer_begin[s + 1], s == 0, s == e->P - 1};
  e->nl = r.layer_end - r.layer_begin;
  for (int i = 0; i < e->P; i++)
    if (layout_stage_layers(&e->lay, i) > e->max_nl) e->max_nl = layout_stage_layers(&e->lay, i);
  if (gpt2_create(&e->cfg, r, &e->model, err, errlen)) goto fail;
  if (ckpt_load(ckpt_dir, e->model, NULL, NULL, NULL, err, errlen)) goto fail;
  memset(&e->hdr, 0, sizeof e->hdr);
  if (session_model_id(ckpt_dir, &e->cfg, &e->hdr.model_id, err, errlen)) goto fail;
  e->hdr.vocab = e->cfg.vocab;
  e->hdr.ctx = e->cfg.ctx;
  e->hdr.layers = e->cfg.layers;
  e->hdr.heads = e->cfg.heads;
  e->hdr.dim = e->cfg.dim;
  e->hdr.stage = s;
  e->hdr.stages = e->P;
  e->hdr.layer_begin = r.layer_begin;
  e->hdr.layer_end = r.layer_end;
  if (opts->session_dir && *opts->session_dir) {
    snprintf(e->session_dir, sizeof e->session_dir, "%s", opts->session_dir);
    e->sessions_enabled = 1;
    if (session_make_dir(e->session_dir, err, errlen)) goto fail;
  }
  e->nslots = 2 * opts->max_batch + 16;
  e->slots = calloc((size_t)e->nslots, sizeof *e->slots);
  e->recv_slots = calloc((size_t)e->nslots, sizeof *e->recv_slots);
  if (!e->slots || !e->recv_slots) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  e->next_id = 1;
  *out = e;
  return 0;
fail:
  gpt2_free(e->model);
  free(e->slots);
  free(e->recv_slots);
  pthread_mutex_destroy(&e->mu);
  free(e);
  return -1;
}

/* ------------------------------------------------------------------ messages */

static int msg_push(infer_engine_t *e, int32_t v) {
  if (e->msg_len == e->msg_cap) {
    int cap = e->msg_cap ? 2 * e->msg_cap : 256;
    int32_t *m = realloc(e->msg, sizeof(int32_t) * cap);
    if (!m) return -1;
    e->msg = m;
    e->msg_cap = cap;
  }
  e->msg[e->msg_len++] = v;
  return 0;
}
static void msg_push_u64(infer_engine_t *e, uint64_t v) {
  msg_push(e, (int32_t)(uint32_t)(v & 0xffffffffu));
  msg_push(e, (int32_t)(uint32_t)(v >> 32));
}
static uint64_t get_u64(const int32_t *p) { return (uint64_t)(uint32_t)p[0] | ((uint64_t)(uint32_t)p[1] << 32); }
static void msg_push_double(infer_engine_t *e, double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  msg_push_u64(e, u);
}
static double get_double(const int32_t *p) {
  uint64_t u = get_u64(p);
  double d;
  memcpy(&d, &u, 8);
  return d;
}
static void msg_push_str(infer_engine_t *e, const char *s) {
  int n = (int)strlen(s);
  msg_push(e, n);
  for (int i = 0; i < n; i++) msg_push(e, (unsigned char)s[i]);
}
static const int32_t *get_str(const int32_t *p, char *out, size_t cap) {
  int n = p[0];
  int i;
  for (i = 0; i < n && (size_t)i + 1 < cap; i++) out[i] = (char)p[1 + i];
  out[i] = 0;
  return p + 1 + n;
}

/* ------------------------------------------------------------------ execution (every rank) */

static int slot_open(infer_engine_t *e, slot_t *sl) {
  if (!sl->cache && kv_cache_create(e->nl, e->cfg.dim, e->cfg.ctx, &sl->cache, e->err, sizeof e->err))
    return -1;
  kv_cache_reset(sl->cache);
  sl->state = SLOT_ACTIVE;
  return 0;
}

static void slot_release(infer_engine_t *e, slot_t *sl) {
  kv_cache_free(sl->cache);
  sl->cache = NULL;
  if (sl->has_sampler) sampler_free(&sl->sampler);
  sl->has_sampler = 0;
  free(sl->tokens);
  sl->tokens = NULL;
  sl->n_tokens = 0;
  sl->state = SLOT_FREE;
  sl->session[0] = 0;
  sl->req = NULL;
}

/* Rank 0: a sampled token reaches its sequence. */
static void apply_token(infer_engine_t *e, int s, int32_t tok) {
  slot_t *sl = &e->slots[s];
  sl->tokens[sl->n_tokens++] = tok;
  sl->inflight--;
  e->recv_slots[e->n_recv++] = s;
}

/* Rank 0, P > 1: receives the tokens of group g of the previous RUN (if it had any). */
static int recv_prev_group(infer_engine_t *e, int g) {
  if (!e->prev_len) return 0;
  const int32_t *q = e->prev_plan;
  int G = *q++;
  if (g >= G) return 0;
  for (int k = 0; k < g; k++) q += 1 + 2 * q[0];
  int nseq = *q++;
  if (nseq == 0) return 0;
  int32_t t[2 * MAX_GROUPS + 32];
  coll_result_t cr = coll_recv(t, (size_t)nseq, COLL_I32, e->P - 1, TAG_TOK + g, e->comm);
  if (cr != COLL_OK) {
    snprintf(e->err, sizeof e->err, "receiving tokens of group %d from stage %d: %s: %s", g, e->P - 1,
             coll_result_string(cr), coll_last_error(e->comm));
    return -1;
  }
  for (int i = 0; i < nseq; i++) apply_token(e, q[2 * i], t[i]);
  return 0;
}

/* Last stage, P > 1: completes the token sends of the previous RUN. */
static int wait_token_sends(infer_engine_t *e) {
  int rc = 0;
  for (int i = 0; i < e->n_tok_reqs; i++) {
    coll_result_t cr = coll_wait(e->tok_reqs[i]);
    if (cr != COLL_OK && rc == 0) {
      snprintf(e->err, sizeof e->err, "sending tokens to rank 0: %s", coll_result_string(cr));
      rc = -1;
    }
    free(e->tok_bufs[i]);
  }
  e->n_tok_reqs = 0;
  return rc;
}

/* One RUN: the groups of sequences through this stage. Groups follow one another, so while
 * stage s+1 runs group g, stage s runs group g+1. With P > 1 the RUNs overlap as well: the
 * tokens of group g of one RUN return to rank 0 while the others are still in the pipeline, and
 * rank 0 receives them just before it runs group g of the next RUN (a sequence keeps its group),
 * so in steady state every stage is busy. */
static int exec_run(infer_engine_t *e, const int32_t *p, const int32_t **end) {
  const int C = e->cfg.dim, V = e->cfg.vocab;
  const int first = e->rank == 0, last = e->rank == e->P - 1;
  const int32_t *plan = p;
  int G = *p++;
  int rc = -1;
  coll_request_t *reqs[MAX_GROUPS];
  int nreq = 0;
  void *bufs[MAX_GROUPS];
  int nbufs = 0;
  float *x = NULL, *y = NULL;
  int32_t *tok = NULL;
  gpt2_kv_seq_t *seqs = NULL;
  coll_request_t *new_tok_reqs[MAX_GROUPS];
  int32_t *new_tok_bufs[MAX_GROUPS];
  int n_new_tok = 0;
  if (first) e->n_recv = 0;
  for (int g = 0; g < G; g++) {
    int nseq = *p++;
    const int32_t *items = p;
    p += 2 * nseq;
    if (first && !last && recv_prev_group(e, g)) goto out;
    if (nseq == 0) continue;
    size_t rows = 0;
    for (int i = 0; i < nseq; i++) rows += (size_t)items[2 * i + 1];
    free(seqs);
    free(x);
    free(tok);
    seqs = malloc(sizeof *seqs * nseq);
    x = malloc(sizeof(float) * rows * C);
    tok = malloc(sizeof(int32_t) * rows);
    if (!seqs || !x || !tok) {
      snprintf(e->err, sizeof e->err, "out of memory for a round of %zu rows", rows);
      goto out;
    }
    size_t r = 0;
    for (int i = 0; i < nseq; i++) {
      slot_t *sl = &e->slots[items[2 * i]];
      int n_new = items[2 * i + 1];
      seqs[i] = kv_cache_seq(sl->cache, n_new);
      if (first) memcpy(tok + r, sl->tokens + sl->cache->n_pos, sizeof(int32_t) * n_new);
      r += (size_t)n_new;
    }
    if (!first) {
      coll_result_t cr = coll_recv(x, rows * C, COLL_F32, e->rank - 1, TAG_ACT + g, e->comm);
      if (cr != COLL_OK) {
        snprintf(e->err, sizeof e->err, "receiving group %d from stage %d: %s: %s", g, e->rank - 1,
                 coll_result_string(cr), coll_last_error(e->comm));
        goto out;
      }
    }
    size_t out_floats = last ? (size_t)nseq * V : rows * C;
    y = malloc(sizeof(float) * out_floats);
    if (!y) {
      snprintf(e->err, sizeof e->err, "out of memory");
      goto out;
    }
    if (gpt2_forward_kv(e->model, seqs, nseq, tok, x, y, 1, e->err, sizeof e->err)) goto out;
    for (int i = 0; i < nseq; i++) kv_cache_advance(e->slots[items[2 * i]].cache, items[2 * i + 1]);
    if (!last) {
      bufs[nbufs++] = y;
      coll_result_t cr = coll_isend(y, rows * C, COLL_F32, e->rank + 1, TAG_ACT + g, e->comm, &reqs[nreq]);
      y = NULL;
      if (cr != COLL_OK) {
        snprintf(e->err, sizeof e->err, "sending group %d to stage %d: %s", g, e->rank + 1, coll_result_string(cr));
        goto out;
      }
      nreq++;
    } else {
      int32_t *t = malloc(sizeof(int32_t) * nseq);
      if (!t) goto out;
      for (int i = 0; i < nseq; i++) {
        slot_t *sl = &e->slots[items[2 * i]];
        t[i] = sampler_next(&sl->sampler, y + (size_t)i * V, V);
      }
      free(y);
      y = NULL;
      if (first) { /* P == 1 */
        for (int i = 0; i < nseq; i++) apply_token(e, items[2 * i], t[i]);
        free(t);
      } else {
        coll_result_t cr = coll_isend(t, (size_t)nseq, COLL_I32, 0, TAG_TOK + g, e->comm, &new_tok_reqs[n_new_tok]);
        if (cr != COLL_OK) {
          free(t);
          snprintf(e->err, sizeof e->err, "sending tokens of group %d to rank 0: %s", g, coll_result_string(cr));
          goto out;
        }
        new_tok_bufs[n_new_tok++] = t;
      }
    }
  }
  if (first && !last) {
    /* the previous RUN's groups beyond this one's */
    int prevG = e->prev_len ? e->prev_plan[0] : 0;
    for (int g = G; g < prevG; g++)
      if (recv_prev_group(e, g)) goto out;
    int len = (int)(p - plan);
    if (len > e->prev_cap) {
      int32_t *np = realloc(e->prev_plan, sizeof(int32_t) * len);
      if (!np) {
        snprintf(e->err, sizeof e->err, "out of memory");
        goto out;
      }
      e->prev_plan = np;
      e->prev_cap = len;
    }
    memcpy(e->prev_plan, plan, sizeof(int32_t) * len);
    e->prev_len = len;
  }
  rc = 0;
out:
  for (int i = 0; i < nreq; i++) {
    coll_result_t cr = coll_wait(reqs[i]);
    if (cr != COLL_OK && rc == 0) {
      snprintf(e->err, sizeof e->err, "completing a send: %s", coll_result_string(cr));
      rc = -1;
    }
  }
  for (int i = 0; i < nbufs; i++) free(bufs[i]);
  if (last && !first) {
    /* rank 0 has received the previous RUN's tokens by now (before running the groups whose
     * activations reached this stage, or at the end of its RUN) */
    if (wait_token_sends(e) && rc == 0) rc = -1;
    for (int i = 0; i < n_new_tok; i++) {
      e->tok_reqs[i] = new_tok_reqs[i];
      e->tok_bufs[i] = new_tok_bufs[i];
    }
    e->n_tok_reqs = n_new_tok;
  }
  free(x);
  free(y);
  free(tok);
  free(seqs);
  *end = p;
  return rc;
}

/* Executes one plan message. Returns 0, 1 after OP_SHUTDOWN, -1 on error (e->err). */
static int exec_msg(infer_engine_t *e, const int32_t *p, int n) {
  const int32_t *endp = p + n;
  char id[SESSION_ID_MAX + 8];
  while (p < endp) {
    int op = *p++;
    switch (op) {
    case OP_END:
      return 0;
    case OP_OPEN:
      if (slot_open(e, &e->slots[*p++])) return -1;
      break;
    case OP_SAMPLER: {
      slot_t *sl = &e->slots[*p++];
      sampler_params_t sp;
      sp.temperature = get_double(p);
      sp.top_k = p[2];
      sp.top_p = get_double(p + 3);
      sp.seed = get_u64(p + 5);
      p += 7;
      if (sl->has_sampler) sampler_free(&sl->sampler);
      sampler_init(&sl->sampler, &sp);
      sl->has_sampler = 1;
      break;
    }
    case OP_LOAD: {
      slot_t *sl = &e->slots[*p++];
      int n_kv = *p++;
      p = get_str(p, id, sizeof id);
      if (e->rank == 0) break; /* done at admission */
      if (slot_open(e, sl)) return -1;
      if (session_read(e->session_dir, id, &e->hdr, sl->cache, NULL, NULL, e->err, sizeof e->err)) return -1;
      if (sl->cache->n_pos != n_kv) {
        snprintf(e->err, sizeof e->err,
                 "session '%s': stage %d's file holds %d cached positions but stage 0's holds %d (the "
                 "files are from different saves); delete the session",
                 id, e->rank, sl->cache->n_pos, n_kv);
        return -1;
      }
      break;
    }
    case OP_RUN:
      if (exec_run(e, p, &p)) return -1;
      break;
    case OP_SAVE: {
      slot_t *sl = &e->slots[*p++];
      p = get_str(p, id, sizeof id);
      if (session_write(e->session_dir, id, &e->hdr, e->rank == 0 ? sl->tokens : NULL,
                        e->rank == 0 ? sl->n_tokens : 0, sl->cache, e->err, sizeof e->err))
        return -1;
      break;
    }
    case OP_FREE:
      slot_release(e, &e->slots[*p++]);
      break;
    case OP_SYNC:
      if (e->P > 1) {
        coll_result_t cr = coll_barrier(e->comm);
        if (cr != COLL_OK) {
          snprintf(e->err, sizeof e->err, "waiting for every stage's session files: %s: %s", coll_result_string(cr),
                   coll_last_error(e->comm));
          return -1;
        }
      }
      break;
    case OP_SHUTDOWN:
      return 1;
    default:
      snprintf(e->err, sizeof e->err, "corrupt plan message (op %d)", op);
      return -1;
    }
  }
  return 0;
}

/* The plan travels in one broadcast of PLAN_INLINE_WORDS words (word 0 = the plan's length,
 * then its first words); a longer plan sends the rest in a second broadcast. One collective per
 * plan keeps the per-token latency of decode low. */
#define PLAN_INLINE_WORDS 256

/* Rank 0: broadcasts the message built in e->msg and executes it. */
static int flush_msg(infer_engine_t *e) {
  if (e->msg_len == 0) return 0;
  int32_t n = e->msg_len;
  if (e->P > 1) {
    int32_t head[PLAN_INLINE_WORDS];
    int inl = n < PLAN_INLINE_WORDS - 1 ? n : PLAN_INLINE_WORDS - 1;
    head[0] = n;
    memcpy(head + 1, e->msg, sizeof(int32_t) * inl);
    coll_result_t cr = coll_broadcast(head, PLAN_INLINE_WORDS, COLL_I32, 0, e->comm);
    if (cr == COLL_OK && n > inl) cr = coll_broadcast(e->msg + inl, (size_t)(n - inl), COLL_I32, 0, e->comm);
    if (cr != COLL_OK) {
      snprintf(e->err, sizeof e->err, "broadcasting the round's plan: %s: %s", coll_result_string(cr),
               coll_last_error(e->comm));
      return -1;
    }
  }
  e->msg_len = 0;
  int rc = exec_msg(e, e->msg, n);
  return rc < 0 ? -1 : 0;
}

int infer_worker_loop(infer_engine_t *e) {
  int32_t *buf = NULL;
  int cap = 0;
  for (;;) {
    int32_t head[PLAN_INLINE_WORDS];
    coll_result_t cr = coll_broadcast(head, PLAN_INLINE_WORDS, COLL_I32, 0, e->comm);
    int32_t n = cr == COLL_OK ? head[0] : 0;
    if (cr == COLL_OK && (n < 0 || n > (1 << 28))) {
      strata_error("infer: corrupt plan length %d", n);
      free(buf);
      return -1;
    }
    if (cr == COLL_OK && n > cap) {
      free(buf);
      buf = malloc(sizeof(int32_t) * n);
      cap = buf ? n : 0;
      if (!buf) {
        strata_error("infer: out of memory for a plan of %d words", n);
        return -1;
      }
    }
    int inl = n < PLAN_INLINE_WORDS - 1 ? n : PLAN_INLINE_WORDS - 1;
    if (cr == COLL_OK) {
      memcpy(buf, head + 1, sizeof(int32_t) * inl);
      if (n > inl) cr = coll_broadcast(buf + inl, (size_t)(n - inl), COLL_I32, 0, e->comm);
    }
    if (cr != COLL_OK) {
      strata_error("infer: waiting for rank 0's plan: %s: %s", coll_result_string(cr), coll_last_error(e->comm));
      free(buf);
      return -1;
    }
    int rc = exec_msg(e, buf, n);
    if (rc < 0) {
      strata_error("infer: stage %d: %s", e->rank, e->err);
      free(buf);
      return -1;
    }
    if (rc == 1) break;
  }
  free(buf);
  return 0;
}

/* ------------------------------------------------------------------ rank 0: queue */

int infer_submit(infer_engine_t *e, const infer_request_t *req, infer_token_fn on_token,
                 infer_done_fn on_done, void *ctx, uint64_t *id, char *err, size_t errlen) {
  if (e->rank != 0) {
    snprintf(err, errlen, "infer_submit is for rank 0 only");
    return -1;
  }
  if (req->max_tokens < 1) {
    snprintf(err, errlen, "max_tokens %d must be >= 1", req->max_tokens);
    return -1;
  }
  if (req->n_prompt < 0 || (req->n_prompt > 0 && !req->prompt)) {
    snprintf(err, errlen, "bad prompt (%d tokens)", req->n_prompt);
    return -1;
  }
  int has_session = req->session && *req->session;
  if (req->n_prompt == 0 && !has_session) {
    snprintf(err, errlen, "empty prompt: give at least one token (or a session to continue)");
    return -1;
  }
  for (int i = 0; i < req->n_prompt; i++)
    if (req->prompt[i] < 0 || req->prompt[i] >= e->cfg.vocab) {
      snprintf(err, errlen, "prompt token %d at position %d is outside the vocabulary [0, %d)",
               req->prompt[i], i, e->cfg.vocab);
      return -1;
    }
  if (req->n_prompt + req->max_tokens > e->cfg.ctx) {
    snprintf(err, errlen,
             "prompt of %d tokens + max_tokens %d = %d exceeds the model's context of %d tokens; "
             "shorten the prompt or lower max_tokens",
             req->n_prompt, req->max_tokens, req->n_prompt + req->max_tokens, e->cfg.ctx);
    return -1;
  }
  if (sampler_validate(&req->sampling, err, errlen)) return -1;
  if (has_session) {
    if (session_id_validate(req->session, err, errlen)) return -1;
    if (!e->sessions_enabled) {
      snprintf(err, errlen, "sessions are disabled (no session directory)");
      return -1;
    }
  }
  req_node_t *n = calloc(1, sizeof *n);
  if (!n || !(n->prompt = malloc(sizeof(int32_t) * (req->n_prompt ? req->n_prompt : 1)))) {
    free(n);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  memcpy(n->prompt, req->prompt, sizeof(int32_t) * req->n_prompt);
  n->n_prompt = req->n_prompt;
  n->max_tokens = req->max_tokens;
  n->sp = req->sampling;
  if (has_session) snprintf(n->session, sizeof n->session, "%s", req->session);
  n->on_token = on_token;
  n->on_done = on_done;
  n->ctx = ctx;
  n->t_submit = strata_now_s();
  pthread_mutex_lock(&e->mu);
  if (e->q_len >= INFER_MAX_QUEUE) {
    pthread_mutex_unlock(&e->mu);
    free(n->prompt);
    free(n);
    snprintf(err, errlen, "queue full (%d requests waiting); retry later", INFER_MAX_QUEUE);
    return -1;
  }
  n->id = e->next_id++;
  if (e->q_tail)
    e->q_tail->next = n;
  else
    e->q_head = n;
  e->q_tail = n;
  e->q_len++;
  pthread_mutex_unlock(&e->mu);
  if (id) *id = n->id;
  return 0;
}

int infer_engine_idle(infer_engine_t *e) {
  pthread_mutex_lock(&e->mu);
  int idle = e->q_len == 0 && e->in_flight == 0;
  pthread_mutex_unlock(&e->mu);
  return idle;
}

static void fail_request(infer_engine_t *e, req_node_t *r, const char *msg) {
  infer_result_t res;
  memset(&res, 0, sizeof res);
  snprintf(res.error, sizeof res.error, "%s", msg);
  res.n_prompt = r->n_prompt;
  res.session_source = "none";
  res.finish_reason = "error";
  e->st.requests_failed++;
  if (r->on_done) r->on_done(r->ctx, r->id, &res);
  free(r->prompt);
  free(r);
}

static int find_session_slot(infer_engine_t *e, const char *id) {
  for (int i = 0; i < e->nslots; i++)
    if (e->slots[i].state != SLOT_FREE && !strcmp(e->slots[i].session, id)) return i;
  return -1;
}

static int count_idle(infer_engine_t *e) {
  int n = 0;
  for (int i = 0; i < e->nslots; i++) n += e->slots[i].state == SLOT_IDLE;
  return n;
}

/* Frees the least recently used idle session slot (plans OP_FREE). -1 if none. */
static int evict_lru(infer_engine_t *e) {
  int best = -1;
  for (int i = 0; i < e->nslots; i++)
    if (e->slots[i].state == SLOT_IDLE && (best < 0 || e->slots[i].lru < e->slots[best].lru)) best = i;
  if (best < 0) return -1;
  msg_push(e, OP_FREE);
  msg_push(e, best);
  e->slots[best].state = SLOT_FREE; /* released when the message executes */
  e->st.session_evictions++;
  return best;
}

static int free_slot(infer_engine_t *e) {
  for (int i = 0; i < e->nslots; i++)
    if (e->slots[i].state == SLOT_FREE && !e->slots[i].cache) return i;
  return -1;
}

static void plan_sampler(infer_engine_t *e, int s, const sampler_params_t *sp) {
  msg_push(e, OP_SAMPLER);
  msg_push(e, s);
  msg_push_double(e, sp->temperature);
  msg_push(e, sp->top_k);
  msg_push_double(e, sp->top_p);
  msg_push_u64(e, sp->seed);
}

/* Admits one request into a slot (plans OPEN/LOAD/SAMPLER). Returns 0 admitted, 1 must wait
 * (session busy or no slot), -1 failed (request consumed). */
static int admit(infer_engine_t *e, req_node_t *r) {
  char err[1024];
  int s = -1;
  int32_t *hist = NULL;
  int n_hist = 0, n_kv = 0;
  const char *source = "none";
  if (r->session[0]) {
    s = find_session_slot(e, r->session);
    if (s >= 0 && e->slots[s].state == SLOT_ACTIVE) return 1; /* busy: wait */
    if (s >= 0) {
      source = "memory";
      n_hist = e->slots[s].n_tokens;
      n_kv = e->slots[s].cache->n_pos;
    } else {
      session_header_t h;
      session_header_t want = e->hdr;
      int pk = session_peek(e->session_dir, r->session, &want, &h, err, sizeof err);
      if (pk < 0) {
        fail_request(e, r, err);
        return -1;
      }
      int other = pk == 1 ? session_saved_stages(e->session_dir, r->session) : 0;
      if (other) {
        snprintf(err, sizeof err,
                 "session '%s' was saved by a job of %d pipeline stages; this job has %d: restore it "
                 "with mpirun -np %d (or delete it)",
                 r->session, other, e->P, other);
        fail_request(e, r, err);
        return -1;
      }
      source = pk == 0 ? "disk" : "new";
      if (pk == 0) {
        n_hist = h.n_tokens;
        n_kv = h.n_kv;
      }
    }
  }
  if (n_hist + r->n_prompt + r->max_tokens > e->cfg.ctx) {
    snprintf(err, sizeof err,
             "context would pass n_ctx: session '%s' history %d + prompt %d + max_tokens %d = %d tokens "
             "> the model's context %d; start a new session or lower max_tokens",
             r->session, n_hist, r->n_prompt, r->max_tokens, n_hist + r->n_prompt + r->max_tokens,
             e->cfg.ctx);
    fail_request(e, r, err);
    return -1;
  }
  if (n_hist + r->n_prompt == 0) {
    fail_request(e, r, "empty context: the session is new and the prompt is empty");
    return -1;
  }
  if (s < 0) {
    s = free_slot(e);
    if (s < 0 && evict_lru(e) >= 0) s = free_slot(e);
    if (s < 0) {
      /* the evicted slot is released when the plan executes: take it directly */
      for (int i = 0; i < e->nslots && s < 0; i++)
        if (e->slots[i].state == SLOT_FREE) s = i;
    }
    if (s < 0) return 1;
    if (!strcmp(source, "disk")) {
      /* rank 0 loads its own stage now (a bad file fails only this request) */
      slot_t *sl = &e->slots[s];
      if (sl->cache) {
        /* slot planned for release in this message: release now on rank 0 is unsafe; wait */
        return 1;
      }
      if (kv_cache_create(e->nl, e->cfg.dim, e->cfg.ctx, &sl->cache, err, sizeof err) ||
          session_read(e->session_dir, r->session, &e->hdr, sl->cache, &hist, &n_hist, err, sizeof err)) {
        kv_cache_free(sl->cache);
        sl->cache = NULL;
        fail_request(e, r, err);
        return -1;
      }
      n_kv = sl->cache->n_pos;
      msg_push(e, OP_LOAD);
      msg_push(e, s);
      msg_push(e, n_kv);
      msg_push_str(e, r->session);
      e->st.session_loads++;
    } else {
      if (e->slots[s].cache) return 1; /* released at the end of this plan; next round */
      msg_push(e, OP_OPEN);
      msg_push(e, s);
    }
  }
  slot_t *sl = &e->slots[s];
  if (!sl->tokens) {
    sl->tokens = malloc(sizeof(int32_t) * e->cfg.ctx);
    if (!sl->tokens) {
      free(hist);
      fail_request(e, r, "out of memory");
      return -1;
    }
    sl->n_tokens = 0;
  }
  if (hist) {
    memcpy(sl->tokens, hist, sizeof(int32_t) * n_hist);
    sl->n_tokens = n_hist;
    free(hist);
  }
  memcpy(sl->tokens + sl->n_tokens, r->prompt, sizeof(int32_t) * r->n_prompt);
  sl->n_tokens += r->n_prompt;
  sl->state = SLOT_ACTIVE;
  sl->req = r;
  snprintf(sl->session, sizeof sl->session, "%s", r->session);
  sl->n_gen = 0;
  sl->cached_tokens = n_kv;
  sl->n_kv = n_kv;
  sl->inflight = 0;
  sl->cancelled = 0;
  { /* the least loaded pipeline group; the sequence stays in it (see exec_run) */
    int count[MAX_GROUPS] = {0}, G = e->P < MAX_GROUPS ? e->P : MAX_GROUPS;
    for (int i = 0; i < e->nslots; i++)
      if (i != s && e->slots[i].state == SLOT_ACTIVE && e->slots[i].req && e->slots[i].group < G)
        count[e->slots[i].group]++;
    int best = 0;
    for (int g = 1; g < G; g++)
      if (count[g] < count[best]) best = g;
    sl->group = best;
  }
  sl->source = source;
  sl->t_first = 0;
  sl->finished = 0;
  sl->lru = e->round;
  e->st.prompt_tokens_cached += (uint64_t)n_kv;
  e->st.prompt_tokens_computed += (uint64_t)(sl->n_tokens - n_kv);
  plan_sampler(e, s, &r->sp);
  return 0;
}

static void complete(infer_engine_t *e, int s) {
  slot_t *sl = &e->slots[s];
  req_node_t *r = sl->req;
  double t = strata_now_s();
  infer_result_t res;
  memset(&res, 0, sizeof res);
  res.ok = 1;
  res.tokens = sl->tokens + sl->n_tokens - sl->n_gen;
  res.n_tokens = sl->n_gen;
  res.n_prompt = r->n_prompt;
  res.cached_tokens = sl->cached_tokens;
  res.context_tokens = sl->n_tokens;
  res.session_source = sl->source;
  res.finish_reason = sl->cancelled ? "cancelled" : "length";
  res.ttft_s = sl->t_first - r->t_submit;
  res.total_s = t - r->t_submit;
  res.tokens_per_s = res.total_s > 0 ? sl->n_gen / res.total_s : 0;
  e->st.requests_done++;
  if (r->on_done) r->on_done(r->ctx, r->id, &res);
  free(r->prompt);
  free(r);
  sl->req = NULL;
}

/* Completes the slots of act[] marked finished: plans and runs the session saves, calls
 * on_done, releases stateless slots and evicts idle sessions beyond the memory budget. */
static int finish_slots(infer_engine_t *e, const int *act, int nact) {
  int nfin = 0, nsave = 0;
  for (int i = 0; i < nact; i++) {
    slot_t *sl = &e->slots[act[i]];
    if (!sl->finished) continue;
    nfin++;
    if (sl->session[0]) {
      msg_push(e, OP_SAVE);
      msg_push(e, act[i]);
      msg_push_str(e, sl->session);
      e->st.session_saves++;
      nsave++;
    }
  }
  if (nfin == 0) return 0;
  /* The request completes only when every stage's file is written: a client that has its answer
   * can rely on the whole session on disk, and its next turn does not wait behind a later
   * stage's save (fsync) of this one. */
  if (nsave && e->P > 1) msg_push(e, OP_SYNC);
  if (flush_msg(e)) return -1;
  for (int i = 0; i < nact; i++) {
    slot_t *sl = &e->slots[act[i]];
    if (!sl->finished) continue;
    complete(e, act[i]);
    pthread_mutex_lock(&e->mu);
    e->in_flight--;
    pthread_mutex_unlock(&e->mu);
    if (sl->session[0]) {
      sl->state = SLOT_IDLE;
    } else {
      msg_push(e, OP_FREE);
      msg_push(e, act[i]);
    }
    sl->finished = 0;
    sl->cancelled = 0;
  }
  size_t per_slot = 2 * sizeof(float) * (size_t)e->max_nl * e->cfg.ctx * e->cfg.dim;
  double budget = e->opts.session_mem_mb * 1024.0 * 1024.0;
  while (count_idle(e) > 0 && (double)count_idle(e) * (double)per_slot > budget) evict_lru(e);
  return flush_msg(e);
}

int infer_engine_step(infer_engine_t *e) {
  if (e->rank != 0) {
    snprintf(e->err, sizeof e->err, "infer_engine_step is for rank 0 only");
    return -1;
  }
  e->round++;
  e->msg_len = 0;
  /* 0. cancelled sequences with no token in flight finish with what they have */
  int canc[MAX_GROUPS * 2 + 32], ncanc = 0;
  for (int i = 0; i < e->nslots; i++)
    if (e->slots[i].state == SLOT_ACTIVE && e->slots[i].req && e->slots[i].cancelled &&
        e->slots[i].inflight == 0) {
      e->slots[i].finished = 1;
      canc[ncanc++] = i;
    }
  if (ncanc && finish_slots(e, canc, ncanc)) return -1;
  /* 1. admission */
  pthread_mutex_lock(&e->mu);
  req_node_t *prev = NULL, *r = e->q_head;
  while (r && e->in_flight < e->opts.max_batch) {
    req_node_t *next = r->next;
    pthread_mutex_unlock(&e->mu);
    int a = admit(e, r);
    pthread_mutex_lock(&e->mu);
    if (a == 1) {
      prev = r;
    } else {
      if (prev)
        prev->next = next;
      else
        e->q_head = next;
      if (e->q_tail == r) e->q_tail = prev;
      e->q_len--;
      if (a == 0) e->in_flight++;
    }
    r = next;
  }
  pthread_mutex_unlock(&e->mu);
  /* 2. the round: every active sequence that still needs a token, in its group */
  int act[MAX_GROUPS * 2 + 32], nact = 0, G = 0;
  for (int i = 0; i < e->nslots; i++) {
    slot_t *sl = &e->slots[i];
    if (sl->state == SLOT_ACTIVE && sl->req && !sl->cancelled && sl->n_gen + sl->inflight < sl->req->max_tokens) {
      act[nact++] = i;
      if (sl->group + 1 > G) G = sl->group + 1;
    }
  }
  if (nact > 0 && e->opts.recompute) {
    for (int i = 0; i < nact; i++) { /* baseline: forget the cache, feed the whole context */
      msg_push(e, OP_OPEN);
      msg_push(e, act[i]);
      e->slots[act[i]].n_kv = 0;
    }
  }
  if (nact > 0 || e->prev_len > 0) {
    msg_push(e, OP_RUN);
    msg_push(e, G);
    for (int g = 0; g < G; g++) {
      int nseq = 0;
      for (int i = 0; i < nact; i++) nseq += e->slots[act[i]].group == g;
      msg_push(e, nseq);
      for (int i = 0; i < nact; i++) {
        slot_t *sl = &e->slots[act[i]];
        if (sl->group != g) continue;
        msg_push(e, act[i]);
        msg_push(e, sl->n_tokens + sl->inflight - sl->n_kv);
        sl->n_kv = sl->n_tokens + sl->inflight;
        sl->inflight++;
      }
    }
  }
  if (e->msg_len == 0) return 0;
  e->n_recv = 0;
  if (flush_msg(e)) return -1;
  if (nact == 0 && G == 0) e->prev_len = 0; /* an empty RUN drained the pipeline */
  /* 3. tokens that reached rank 0 in this RUN (with P > 1, mostly the previous RUN's) */
  double t = strata_now_s();
  int fin[MAX_GROUPS * 2 + 32], nfin = 0;
  for (int i = 0; i < e->n_recv; i++) {
    slot_t *sl = &e->slots[e->recv_slots[i]];
    int32_t tok = sl->tokens[sl->n_tokens - 1];
    if (tok < 0) {
      snprintf(e->err, sizeof e->err, "sampling failed (out of memory)");
      return -1;
    }
    sl->n_gen++;
    e->st.tokens_generated++;
    if (sl->n_gen == 1) sl->t_first = t;
    if (sl->req->on_token) sl->req->on_token(sl->req->ctx, sl->req->id, tok);
    sl->lru = e->round;
    if (sl->n_gen >= sl->req->max_tokens || (sl->cancelled && sl->inflight == 0)) {
      sl->finished = 1;
      fin[nfin++] = e->recv_slots[i];
    }
  }
  /* 4. finished: save sessions, free stateless slots, enforce the idle-session budget */
  return finish_slots(e, fin, nfin);
}

int infer_cancel(infer_engine_t *e, uint64_t id) {
  if (e->rank != 0) return 0;
  pthread_mutex_lock(&e->mu);
  req_node_t *prev = NULL, *r = e->q_head;
  while (r && r->id != id) prev = r, r = r->next;
  if (r) {
    if (prev)
      prev->next = r->next;
    else
      e->q_head = r->next;
    if (e->q_tail == r) e->q_tail = prev;
    e->q_len--;
  }
  pthread_mutex_unlock(&e->mu);
  if (r) {
    fail_request(e, r, "cancelled");
    return 1;
  }
  for (int i = 0; i < e->nslots; i++)
    if (e->slots[i].state == SLOT_ACTIVE && e->slots[i].req && e->slots[i].req->id == id) {
      e->slots[i].cancelled = 1;
      return 1;
    }
  return 0;
}

int infer_session_delete(infer_engine_t *e, const char *id, char *err, size_t errlen) {
  if (session_id_validate(id, err, errlen)) return -1;
  if (!e->sessions_enabled) {
    snprintf(err, errlen, "sessions are disabled (no session directory)");
    return -1;
  }
  int s = find_session_slot(e, id);
  if (s >= 0 && e->slots[s].state == SLOT_ACTIVE) {
    snprintf(err, errlen, "session '%s' has a request in flight; retry when it is done", id);
    return 2;
  }
  pthread_mutex_lock(&e->mu);
  int queued = 0;
  for (req_node_t *r = e->q_head; r; r = r->next) queued |= !strcmp(r->session, id);
  pthread_mutex_unlock(&e->mu);
  if (queued) {
    snprintf(err, errlen, "session '%s' has a queued request; retry when it is done", id);
    return 2;
  }
  if (s >= 0) {
    e->msg_len = 0;
    msg_push(e, OP_FREE);
    msg_push(e, s);
    e->slots[s].state = SLOT_FREE;
    if (flush_msg(e)) {
      snprintf(err, errlen, "%s", e->err);
      return -1;
    }
  }
  int d = session_delete(e->session_dir, id, err, errlen);
  if (d == 1) snprintf(err, errlen, "no session '%s'", id);
  return d;
}

const char *infer_session_dir(const infer_engine_t *e) { return e->sessions_enabled ? e->session_dir : NULL; }

void infer_engine_stats(infer_engine_t *e, infer_stats_t *out) {
  pthread_mutex_lock(&e->mu);
  *out = e->st;
  out->in_flight = e->in_flight;
  out->queued = e->q_len;
  pthread_mutex_unlock(&e->mu);
  out->sessions_resident = 0;
  out->kv_cache_bytes = 0;
  for (int i = 0; i < e->nslots; i++) {
    if (e->slots[i].cache) out->kv_cache_bytes += kv_cache_bytes(e->slots[i].cache);
    out->sessions_resident += e->slots[i].state == SLOT_IDLE;
  }
}

void infer_engine_shutdown(infer_engine_t *e) {
  if (!e) return;
  if (e->rank == 0) {
    e->msg_len = 0;
    if (e->P > 1) { /* an empty RUN collects the tokens still in the pipeline */
      msg_push(e, OP_RUN);
      msg_push(e, 0);
    }
    msg_push(e, OP_SHUTDOWN);
    if (flush_msg(e)) strata_warn("infer: shutdown: %s", e->err);
    for (int i = 0; i < e->nslots; i++)
      if (e->slots[i].req) {
        fail_request(e, e->slots[i].req, "shutting down");
        e->slots[i].req = NULL;
      }
    req_node_t *r = e->q_head;
    while (r) {
      req_node_t *n = r->next;
      fail_request(e, r, "shutting down");
      r = n;
    }
    e->q_head = e->q_tail = NULL;
  }
  if (e->n_tok_reqs) wait_token_sends(e);
  for (int i = 0; i < e->nslots; i++) slot_release(e, &e->slots[i]);
  free(e->slots);
  free(e->recv_slots);
  free(e->prev_plan);
  free(e->msg);
  gpt2_free(e->model);
  pthread_mutex_destroy(&e->mu);
  free(e);
}
