/* infer.c -- the sharded generation engine (see infer.h): request queue and admission on
 * rank 0, the per-round plan sent to every rank, the pipelined forward of sequence groups
 * through the stages, sampling on the last stage, sessions (two-phase save, verified load,
 * LRU eviction from memory and, with a quota, from disk), and the heartbeat that lets an idle
 * job wait without a deadline.
 *
 * The plan of a round is a flat int32 message of operations, executed in order by every rank:
 *   OP_OPEN slot                 allocate / reset the slot's KV cache
 *   OP_SAMPLER slot t t k p p s s pp pp fp fp lp top  (re)seed the slot's sampler (doubles and u64
 *                                as 2 words; penalties; log-probabilities wanted and how many)
 *   OP_LOAD slot n_kv n_tok gen gen sum*P id...  read the slot's stage file of the session's
 *                                committed turn `gen` (sum: every stage's checksum, 2 words
 *                                each); rank 0 already did so at admission and skips it
 *   OP_RUN G {nseq {slot n_new}*}*  forward every group through the pipeline and sample; rank 0
 *                                receives the previous RUN's tokens of group g just before
 *                                running group g (see exec_run)
 *   OP_SAVE slot gen gen id...   write the slot's stage file of turn gen (phase 1, session.h)
 *   OP_VOTE n                    every rank hands rank 0 the outcome of its last n LOADs and
 *                                SAVEs (an all-gather): rank 0 learns which stage failed, and
 *                                nobody aborts for a bad file or a full disk
 *   OP_COMMIT gen gen id...      the commit record is written: promote the .kv.next (phase 3)
 *   OP_DISCARD id...             the turn was not committed: remove the .kv.next
 *   OP_DELETE id...              remove this stage's files of a session (delete, disk quota)
 *   OP_FREE slot                 release the slot's cache and sampler
 *   OP_HEARTBEAT seq             rank 0 is alive and idle; each worker answers with seq
 *   OP_SHUTDOWN                  leave infer_worker_loop
 * Rank 0 sends the message to every other rank (point to point: one send of up to
 * PLAN_INLINE_WORDS words, plus one for the rest of a longer plan), then executes it itself.
 *
 * Idle waits. A worker waits for its next plan with coll_wait_for: without cfg.timeout_s and
 * without spinning, because a server may get no request for hours. Instead, rank 0 sends a
 * heartbeat whenever it has sent nothing for opts.heartbeat_s, a worker that hears nothing from
 * rank 0 for opts.liveness_s ends the job naming rank 0, and rank 0 ends the job naming a worker
 * that has not answered a heartbeat for opts.liveness_s. Everything else (activations, tokens,
 * votes) is a collective that has started and keeps the collective timeout.
 */
#include "infer.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "env.h"
#include "fault.h"
#include "gemm.h"
#include "infer_model.h"
#include "kv_cache.h"
#include "layout.h"
#include "log.h"
#include "session.h"
#include "session_store.h"
#include "util.h"

enum {
  OP_END = 0, OP_OPEN, OP_SAMPLER, OP_LOAD, OP_RUN, OP_SAVE, OP_FREE, OP_SHUTDOWN, OP_VOTE, OP_COMMIT,
  OP_DISCARD, OP_DELETE, OP_HEARTBEAT
};
enum { SLOT_FREE = 0, SLOT_ACTIVE, SLOT_IDLE };
#define TAG_ACT 100        /* + group: residual stream stage s -> s+1 */
#define TAG_TOK 5000       /* + group: sampled tokens last stage -> rank 0 (TOK_WORDS each) */
/* One sampled token as the last stage sends it: token, logprob (float bits), n_top, then n_top
 * (id, logprob bits) pairs; the rest is zero. */
#define TOK_WORDS (3 + 2 * INFER_TOP_LOGPROBS_MAX)
#define TAG_PLAN 9000      /* rank 0 -> workers: a plan's first PLAN_INLINE_WORDS words */
#define TAG_PLAN_TAIL 9001 /* rank 0 -> workers: the rest of a longer plan */
#define TAG_ACK 9002       /* workers -> rank 0: heartbeat answers */
#define MAX_GROUPS 512
#define VOTE_WORDS 6       /* one LOAD/SAVE outcome: status, errno, checksum (2), bytes (2) */
#define HB_RING 64         /* heartbeat send times remembered (by sequence number) */
#define PLAN_INLINE_WORDS 256 /* a plan's first message: its length and up to 255 words */

typedef struct req_node {
  uint64_t id;
  int32_t *prompt;
  int n_prompt;
  int max_tokens;
  sampler_params_t sp;
  infer_logprob_fn on_logprob;
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
  infer_logprob_t lp;        /* the last received token's log-probabilities (rank 0) */
  uint64_t gen;              /* the session's committed turn this slot holds (0: none yet) */
  int save_failed;           /* the turn's save failed: finish with an error, drop the slot */
  char save_error[512];      /* why */
} slot_t;

struct infer_engine {
  coll_comm_t *comm;
  int rank, world;           /* world = T * P ranks, rank = stage * T + t */
  int P, T;                  /* pipeline stages, tensor-parallel ranks per stage */
  int stage, t;              /* this rank's stage and tensor-parallel rank */
  coll_comm_t *tp_comm;      /* T > 1: the stage's T ranks, ordered by t */
  ckpt_model_config_t mc;    /* the checkpoint's family and configuration */
  gpt2_config_t cfg;         /* its shape (mc.shape): vocab, ctx, layers, heads, dim */
  infer_model_t *model;      /* this rank's part (infer_model.h) */
  layout_t lay;
  int Cl;                    /* KV width of this rank: C / T of GPT-2's heads, Llama's kv heads */
  int Vl;                    /* logits columns of this rank (last stage): infer_model_local_vocab */
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
  int msg_oom;               /* a word could not be added: the message is incomplete */
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
  /* session votes: this rank's LOAD/SAVE outcomes since the last VOTE (VOTE_WORDS each), and on
   * rank 0 every rank's outcomes of the last VOTE ([world][n * VOTE_WORDS]) and what each was */
  int32_t *pend;
  int n_pend, pend_cap;
  int32_t *votes;
  int n_votes, votes_cap;
  int *vote_slots;           /* rank 0: [nslots * 2] the slot of each planned LOAD/SAVE */
  int n_vote_slots;
  session_commit_t *rec;     /* scratch commit record */
  session_store_t *store;    /* rank 0: committed sessions on disk, the quota, the store's health */
  /* heartbeat (world > 1) */
  double last_plan_s;        /* rank 0: when it last sent a plan */
  uint32_t hb_seq;           /* rank 0: heartbeats sent */
  double hb_sent_s[HB_RING]; /* rank 0: send time of heartbeat seq (by seq % HB_RING) */
  int32_t *ack_buf;          /* rank 0: [world] one posted receive per worker */
  coll_request_t **ack_req;  /* rank 0: [world] */
  uint32_t *acked;           /* rank 0: [world] the last heartbeat each worker answered */
  coll_request_t **plan_reqs;/* rank 0: [2 world] the sends of one plan */
  coll_request_t **hb_req;   /* rank 0: [world] each worker's heartbeat send, while not complete */
  int32_t *hb_head;          /* rank 0: [world][PLAN_INLINE_WORDS] their messages */
  uint64_t saves_done;       /* session stage files this rank has written (fault injection) */
  int failed;                /* a fatal error: the job ends, so shutdown sends nothing more */
  char name[96];             /* this rank in log lines: "stage 1" or "stage 1, tensor-parallel rank 0" */
};

/* Which part of the job rank r is: "stage s" at T = 1, else "stage s, tensor-parallel rank t". */
static void rank_name(const infer_engine_t *e, int r, char *buf, size_t len) {
  if (e->T == 1) snprintf(buf, len, "stage %d", r);
  else snprintf(buf, len, "stage %d, tensor-parallel rank %d", r / e->T, r % e->T);
}

infer_opts_t infer_opts_default(void) {
  infer_opts_t o;
  memset(&o, 0, sizeof o);
  o.max_batch = INFER_MAX_BATCH_DEFAULT;
  o.session_mem_mb = INFER_SESSION_MEM_MB_DEFAULT;
  o.heartbeat_s = INFER_HEARTBEAT_S_DEFAULT;
  o.liveness_s = INFER_LIVENESS_S_DEFAULT;
  o.threads = 1;
  static char env_err[2][256]; /* what o.env_error points to (worker/base/env.c: ranges) */
  int64_t v;
  double d;
  if (env_read_int("STRATA_INFER_MAX_BATCH", o.max_batch, &v, env_err[0], sizeof env_err[0])) o.env_error = env_err[0];
  o.max_batch = (int)v;
  const struct {
    const char *name;
    double *dst;
  } nums[] = {{"STRATA_INFER_SESSION_MEM_MB", &o.session_mem_mb}, {"STRATA_INFER_SESSION_DISK_MB", &o.session_disk_mb},
              {"STRATA_INFER_HEARTBEAT_S", &o.heartbeat_s}, {"STRATA_INFER_LIVENESS_S", &o.liveness_s}};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    if (env_read_double(nums[i].name, *nums[i].dst, &d, env_err[1], sizeof env_err[1])) o.env_error = env_err[1];
    *nums[i].dst = d;
  }
  return o;
}

const char *infer_engine_error(const infer_engine_t *e) { return e->err; }
const gpt2_config_t *infer_engine_config(const infer_engine_t *e) { return &e->cfg; }
const char *infer_engine_family(const infer_engine_t *e) { return e->mc.arch == CKPT_ARCH_LLAMA ? "llama" : "gpt2"; }

/* ------------------------------------------------------------------ heartbeat (rank 0) */

/* Posts one receive per worker for its heartbeat answers. */
static int start_heartbeat(infer_engine_t *e, char *err, size_t errlen) {
  e->ack_buf = calloc((size_t)e->world, sizeof *e->ack_buf);
  e->ack_req = calloc((size_t)e->world, sizeof *e->ack_req);
  e->acked = calloc((size_t)e->world, sizeof *e->acked);
  e->plan_reqs = calloc(2 * (size_t)e->world, sizeof *e->plan_reqs);
  e->hb_req = calloc((size_t)e->world, sizeof *e->hb_req);
  e->hb_head = calloc((size_t)e->world * PLAN_INLINE_WORDS, sizeof *e->hb_head);
  if (!e->ack_buf || !e->ack_req || !e->acked || !e->plan_reqs || !e->hb_req || !e->hb_head)
    return strata_fail(err, errlen, "out of memory for the heartbeat state of %d ranks", e->world);
  for (int w = 1; w < e->world; w++) {
    coll_result_t cr = coll_irecv(&e->ack_buf[w], 1, COLL_I32, w, TAG_ACK, e->comm, &e->ack_req[w]);
    if (cr != COLL_OK)
      return strata_fail(err, errlen, "posting the heartbeat receive from rank %d: %s", w, coll_last_error(e->comm));
  }
  return 0;
}

static void stop_heartbeat(infer_engine_t *e) {
  if (e->ack_req)
    for (int w = 1; w < e->world; w++)
      if (e->ack_req[w]) coll_cancel(e->ack_req[w]);
  for (int w = 1; e->hb_req && w < e->world; w++) {
    if (!e->hb_req[w]) continue;
    if (e->failed) coll_cancel(e->hb_req[w]);
    else coll_wait(e->hb_req[w]); /* delivered before OP_SHUTDOWN (same tag, in order) */
  }
  free(e->hb_req);
  free(e->hb_head);
  e->hb_req = NULL;
  e->hb_head = NULL;
  free(e->ack_req);
  free(e->ack_buf);
  free(e->acked);
  free(e->plan_reqs);
  e->ack_req = NULL;
  e->ack_buf = NULL;
  e->acked = NULL;
  e->plan_reqs = NULL;
}

/* ------------------------------------------------------------------ creation */

static void slot_release(infer_engine_t *e, slot_t *sl);

/* Stops the heartbeat and frees everything the engine holds (also a half-created one). */
static void engine_free(infer_engine_t *e) {
  stop_heartbeat(e);
  for (int i = 0; e->slots && i < e->nslots; i++) slot_release(e, &e->slots[i]);
  free(e->slots);
  free(e->recv_slots);
  free(e->vote_slots);
  free(e->rec);
  free(e->prev_plan);
  free(e->msg);
  free(e->pend);
  free(e->votes);
  session_store_free(e->store);
  infer_model_free(e->model);
  coll_comm_destroy(e->tp_comm);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

int infer_parse_precision(const char *s, int *bf16) {
  if (!strcmp(s, "fp32")) *bf16 = 0;
  else if (!strcmp(s, "bf16") || !strcmp(s, "bf16-sr")) *bf16 = 1;
  else return -1;
  return 0;
}

void infer_precision_describe(int bf16, char *buf, size_t len) {
  if (!bf16) {
    snprintf(buf, len, "precision fp32: fp32 matrix products, fp32 KV cache");
    return;
  }
  char how[224]; /* the backend of a large product: what the model's big matrices take */
  gemm_bf16_path(gemm_choose(GEMM_BF16, 0, 0, 4096, 4096, 4096), how, sizeof how);
  snprintf(buf, len, "precision bf16: bf16 matrix products by %s, bf16 KV cache", how);
}

int infer_check_layout(const ckpt_model_config_t *mc, int world, int tp, char *err, size_t errlen) {
  return infer_model_check_layout(mc, world, tp, err, errlen);
}

int infer_engine_create(const char *ckpt_dir, coll_comm_t *comm, const infer_opts_t *opts,
                        infer_engine_t **out, char *err, size_t errlen) {
  *out = NULL;
  infer_engine_t *e = calloc(1, sizeof *e);
  if (!e) return strata_fail(err, errlen, "out of memory for the inference engine's state");
  pthread_mutex_init(&e->mu, NULL);
  e->comm = comm;
  e->rank = coll_rank(comm);
  e->world = coll_size(comm);
  e->T = opts->tp > 0 ? opts->tp : 1;
  e->P = e->world / e->T;
  e->stage = e->rank / e->T;
  e->t = e->rank % e->T;
  e->opts = *opts;
  rank_name(e, e->rank, e->name, sizeof e->name);
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
  if (!(opts->session_disk_mb >= 0)) {
    snprintf(err, errlen, "session disk quota %g MiB must be >= 0 (--session-disk-mb; 0 = none)",
             opts->session_disk_mb);
    goto fail;
  }
  if (!(opts->heartbeat_s > 0) || !(opts->liveness_s > opts->heartbeat_s)) {
    snprintf(err, errlen,
             "the liveness bound %g s must exceed the heartbeat period %g s, and both be > 0 "
             "(STRATA_INFER_LIVENESS_S, STRATA_INFER_HEARTBEAT_S)",
             opts->liveness_s, opts->heartbeat_s);
    goto fail;
  }
  gemm_set_threads(opts->threads > 0 ? opts->threads : 1);
  if (ckpt_read_model_config(ckpt_dir, &e->mc, err, errlen)) goto fail;
  e->cfg = e->mc.shape;
  if (infer_check_layout(&e->mc, e->world, e->T, err, errlen)) goto fail;
  layout_model_t lm = {e->cfg.vocab, e->cfg.ctx, e->cfg.layers, e->cfg.heads, e->cfg.dim};
  if (e->mc.arch == CKPT_ARCH_LLAMA) { /* stages balanced by Llama's shapes, as training splits them */
    lm.arch = LAYOUT_ARCH_LLAMA;
    lm.kv_heads = e->mc.llama.kv_heads;
    lm.ffn = e->mc.llama.ffn;
  }
  char lerr[512];
  if (layout_init(&e->lay, &lm, e->world, e->T, e->P, 1, 1, 1, NULL, lerr, sizeof lerr)) {
    snprintf(err, errlen, "cannot split the model over %d ranks: %s", e->world, lerr);
    goto fail;
  }
  int s = e->stage;
  infer_stage_t r = {e->lay.layer_begin[s], e->lay.layer_begin[s + 1], s == 0, s == e->P - 1, e->t, e->T,
                     opts->bf16};
  e->nl = r.layer_end - r.layer_begin;
  for (int i = 0; i < e->P; i++)
    if (layout_stage_layers(&e->lay, i) > e->max_nl) e->max_nl = layout_stage_layers(&e->lay, i);
  if (e->T > 1) { /* collective over comm: every rank makes the split */
    coll_result_t cr = coll_comm_split(comm, e->stage, e->t, &e->tp_comm);
    if (cr != COLL_OK) {
      snprintf(err, errlen, "cannot make the tensor-parallel group of stage %d: %s", s, coll_result_string(cr));
      goto fail;
    }
  }
  if (infer_model_open(ckpt_dir, &e->mc, &r, e->tp_comm, &e->model, err, errlen)) goto fail;
  e->Cl = infer_model_kv_width(e->model);
  e->Vl = infer_model_local_vocab(e->model);
  memset(&e->hdr, 0, sizeof e->hdr);
  if (session_model_id(ckpt_dir, &e->cfg, &e->hdr.model_id, err, errlen)) goto fail;
  e->hdr.vocab = e->cfg.vocab;
  e->hdr.ctx = e->cfg.ctx;
  e->hdr.layers = e->cfg.layers;
  e->hdr.heads = e->cfg.heads;
  e->hdr.dim = e->cfg.dim;
  e->hdr.stage = s;
  e->hdr.stages = e->P;
  e->hdr.tp_rank = (int16_t)e->t;
  e->hdr.tp_size = (int16_t)e->T;
  e->hdr.layer_begin = r.layer_begin;
  e->hdr.layer_end = r.layer_end;
  e->hdr.kv_bf16 = opts->bf16 ? 1 : 0;
  if (opts->session_dir && *opts->session_dir) {
    snprintf(e->session_dir, sizeof e->session_dir, "%s", opts->session_dir);
    e->sessions_enabled = 1;
    if (session_make_dir(e->session_dir, err, errlen)) goto fail;
  }
  e->nslots = 2 * opts->max_batch + 16;
  e->slots = calloc((size_t)e->nslots, sizeof *e->slots);
  e->recv_slots = calloc((size_t)e->nslots, sizeof *e->recv_slots);
  e->vote_slots = calloc((size_t)e->nslots * 2, sizeof *e->vote_slots);
  e->rec = calloc(1, sizeof *e->rec);
  if (!e->slots || !e->recv_slots || !e->vote_slots || !e->rec) {
    strata_fail(err, errlen, "out of memory for %d sequence slots", e->nslots);
    goto fail;
  }
  if (e->world > SESSION_MAX_PARTS && e->sessions_enabled) {
    snprintf(err, errlen, "sessions support at most %d ranks (T x P), not %d (or turn sessions off)",
             SESSION_MAX_PARTS, e->world);
    goto fail;
  }
  if (e->rank == 0 && e->sessions_enabled &&
      session_store_open(e->session_dir, (uint64_t)(opts->session_disk_mb * 1024.0 * 1024.0), &e->store, err,
                         errlen))
    goto fail;
  if (e->rank == 0 && opts->bf16) { /* fp32 runs log nothing new: their output stays as it was */
    char how[320];
    infer_precision_describe(1, how, sizeof how);
    strata_info("%s", how);
  }
  if (e->rank == 0 && e->world > 1 && start_heartbeat(e, err, errlen)) goto fail;
  e->last_plan_s = strata_now_s();
  e->next_id = 1;
  *out = e;
  return 0;
fail:
  engine_free(e);
  return -1;
}

/* ------------------------------------------------------------------ messages */

/* Appends a word to the message being built; out of memory, the message is marked incomplete
 * and flush_msg fails it. */
static void msg_push(infer_engine_t *e, int32_t v) {
  if (e->msg_len == e->msg_cap) {
    int cap = e->msg_cap ? 2 * e->msg_cap : 256;
    int32_t *m = e->msg_oom ? NULL : realloc(e->msg, sizeof(int32_t) * cap);
    if (!m) {
      e->msg_oom = 1;
      return;
    }
    e->msg = m;
    e->msg_cap = cap;
  }
  e->msg[e->msg_len++] = v;
}
static void msg_reset(infer_engine_t *e) {
  e->msg_len = 0;
  e->msg_oom = 0;
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
  if (!sl->cache && kv_cache_create_dtype(e->nl, e->Cl, e->cfg.ctx, e->opts.bf16, &sl->cache, e->err, sizeof e->err))
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

/* Rank 0: a sampled token (its TOK_WORDS record) reaches its sequence. */
static void apply_token(infer_engine_t *e, int s, const int32_t *rec) {
  slot_t *sl = &e->slots[s];
  int32_t tok = rec[0];
  sl->lp.token = tok;
  memcpy(&sl->lp.logprob, &rec[1], sizeof(float));
  sl->lp.n_top = rec[2] >= 0 && rec[2] <= INFER_TOP_LOGPROBS_MAX ? rec[2] : 0;
  for (int k = 0; k < sl->lp.n_top; k++) {
    sl->lp.top_ids[k] = rec[3 + 2 * k];
    memcpy(&sl->lp.top_lps[k], &rec[4 + 2 * k], sizeof(float));
  }
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
  int32_t *t = malloc(sizeof(int32_t) * TOK_WORDS * (size_t)nseq);
  if (!t) return strata_fail(e->err, sizeof e->err, "out of memory for the tokens of %d sequences", nseq);
  int src = (e->P - 1) * e->T; /* tensor-parallel rank 0 of the last stage samples */
  coll_result_t cr = coll_recv(t, (size_t)nseq * TOK_WORDS, COLL_I32, src, TAG_TOK + g, e->comm);
  if (cr != COLL_OK) {
    free(t);
    return strata_fail(e->err, sizeof e->err, "receiving tokens of group %d from stage %d (rank %d): %s: %s", g,
                       e->P - 1, src, coll_result_string(cr), coll_last_error(e->comm));
  }
  for (int i = 0; i < nseq; i++) apply_token(e, q[2 * i], t + (size_t)i * TOK_WORDS);
  free(t);
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

/* What one RUN has in flight, and its scratch buffers. */
typedef struct {
  coll_request_t *reqs[MAX_GROUPS];     /* activation sends to the next stage */
  float *bufs[MAX_GROUPS];              /* their buffers */
  int nreq, nbufs;
  coll_request_t *tok_reqs[MAX_GROUPS]; /* last stage, P > 1: token sends to rank 0 */
  int32_t *tok_bufs[MAX_GROUPS];        /* their buffers */
  int n_tok;
  float *x;                             /* (rows, C) input activations */
  int32_t *tok;                         /* (rows) first stage: input tokens */
  gpt2_kv_seq_t *seqs;                  /* (nseq) the sequences' caches */
} run_t;

/* The last stage: this rank's logits (nseq, Vl) of a group, all-gathered over the TP group and
 * assembled into the whole vocabulary (nseq, V) in *full (malloc'd; y itself at T = 1). 0, or
 * -1 with e->err. */
static int whole_logits(infer_engine_t *e, float *y, int nseq, float **full) {
  *full = y;
  if (e->T == 1) return 0;
  size_t local = (size_t)nseq * e->Vl;
  float *all = malloc(sizeof(float) * local * e->T);
  float *f = malloc(sizeof(float) * (size_t)nseq * e->cfg.vocab);
  if (!all || !f) {
    free(all);
    free(f);
    return strata_fail(e->err, sizeof e->err, "out of memory for the logits of %d sequences", nseq);
  }
  coll_result_t cr = coll_allgather(y, all, local, COLL_F32, e->tp_comm);
  if (cr != COLL_OK) {
    free(all);
    free(f);
    return strata_fail(e->err, sizeof e->err, "gathering the logits over the %d tensor-parallel ranks: %s: %s",
                       e->T, coll_result_string(cr), coll_last_error(e->tp_comm));
  }
  infer_model_logits_assemble(e->model, all, (size_t)nseq, f);
  free(all);
  *full = f;
  return 0;
}

/* Group g of a RUN (nseq sequences, items = their (slot, new tokens) pairs) through this stage:
 * its input from the slots' tokens (first stage; rank 0 holds them and broadcasts them over the
 * TP group) or the previous stage, forward, then its output to the next stage or, on the last,
 * the sampled tokens to rank 0 (applied at once when P == 1). Between stages, rank (s, t) sends
 * to (s+1, t): the residual stream is whole and identical on every TP rank, so each rank of the
 * next stage gets its copy straight from its peer, with no broadcast after the receive. On the
 * last stage every TP rank all-gathers the logits (a collective); TP rank 0 samples from the
 * whole vocabulary and sends the tokens. Returns 0 or -1 with e->err. */
static int run_group(infer_engine_t *e, run_t *R, int g, int nseq, const int32_t *items) {
  const int C = e->cfg.dim, V = e->cfg.vocab, T = e->T;
  const int first = e->stage == 0, last = e->stage == e->P - 1;
  size_t rows = 0;
  for (int i = 0; i < nseq; i++) rows += (size_t)items[2 * i + 1];
  free(R->seqs);
  free(R->x);
  free(R->tok);
  R->seqs = malloc(sizeof *R->seqs * nseq);
  R->x = malloc(sizeof(float) * rows * C);
  R->tok = malloc(sizeof(int32_t) * rows);
  if (!R->seqs || !R->x || !R->tok)
    return strata_fail(e->err, sizeof e->err, "out of memory for a round of %zu rows", rows);
  size_t r = 0;
  for (int i = 0; i < nseq; i++) {
    slot_t *sl = &e->slots[items[2 * i]];
    int n_new = items[2 * i + 1];
    R->seqs[i] = kv_cache_seq(sl->cache, n_new);
    if (e->rank == 0) memcpy(R->tok + r, sl->tokens + sl->cache->n_pos, sizeof(int32_t) * n_new);
    r += (size_t)n_new;
  }
  coll_result_t cr;
  if (first && T > 1 && (cr = coll_broadcast(R->tok, rows, COLL_I32, 0, e->tp_comm)) != COLL_OK)
    return strata_fail(e->err, sizeof e->err, "broadcasting the tokens of group %d over stage 0's %d tensor-parallel "
                       "ranks: %s: %s", g, T, coll_result_string(cr), coll_last_error(e->tp_comm));
  if (!first && (cr = coll_recv(R->x, rows * C, COLL_F32, e->rank - T, TAG_ACT + g, e->comm)) != COLL_OK)
    return strata_fail(e->err, sizeof e->err, "receiving group %d from stage %d (rank %d): %s: %s", g, e->stage - 1,
                       e->rank - T, coll_result_string(cr), coll_last_error(e->comm));
  size_t out_floats = last ? (size_t)nseq * e->Vl : rows * C;
  float *y = malloc(sizeof(float) * out_floats);
  if (!y)
    return strata_fail(e->err, sizeof e->err, "out of memory for the output of a round (%zu floats)", out_floats);
  if (infer_model_forward_kv(e->model, R->seqs, nseq, R->tok, R->x, y, 1, e->err, sizeof e->err)) {
    free(y);
    return -1;
  }
  for (int i = 0; i < nseq; i++) kv_cache_advance(e->slots[items[2 * i]].cache, items[2 * i + 1]);
  if (!last) {
    R->bufs[R->nbufs++] = y;
    if ((cr = coll_isend(y, rows * C, COLL_F32, e->rank + T, TAG_ACT + g, e->comm, &R->reqs[R->nreq])) != COLL_OK)
      return strata_fail(e->err, sizeof e->err, "sending group %d to stage %d (rank %d): %s", g, e->stage + 1,
                         e->rank + T, coll_result_string(cr));
    R->nreq++;
    return 0;
  }
  float *full;
  if (whole_logits(e, y, nseq, &full)) {
    free(y);
    return -1;
  }
  if (full != y) free(y);
  if (e->t != 0) { /* TP rank 0 samples */
    free(full);
    return 0;
  }
  int32_t *t = calloc((size_t)nseq * TOK_WORDS, sizeof(int32_t));
  if (!t) {
    free(full);
    return strata_fail(e->err, sizeof e->err, "out of memory for the sampled tokens of %d sequences", nseq);
  }
  for (int i = 0; i < nseq; i++) {
    sampler_t *sm = &e->slots[items[2 * i]].sampler;
    int32_t *rec = t + (size_t)i * TOK_WORDS;
    const float *row = full + (size_t)i * V;
    if ((rec[0] = sampler_next(sm, row, V)) < 0) {
      free(t);
      free(full);
      return strata_fail(e->err, sizeof e->err, "out of memory for sampling from %d logits", V);
    }
    if (sm->p.want_logprobs) {
      float lp, top_lps[INFER_TOP_LOGPROBS_MAX];
      int32_t top_ids[INFER_TOP_LOGPROBS_MAX];
      int k = sm->p.top_logprobs < V ? sm->p.top_logprobs : V;
      sampler_logprobs(row, V, rec[0], k, &lp, top_ids, top_lps);
      memcpy(&rec[1], &lp, sizeof(float));
      rec[2] = k;
      for (int m = 0; m < k; m++) {
        rec[3 + 2 * m] = top_ids[m];
        memcpy(&rec[4 + 2 * m], &top_lps[m], sizeof(float));
      }
    }
  }
  free(full);
  if (e->rank == 0) { /* P == 1 */
    for (int i = 0; i < nseq; i++) apply_token(e, items[2 * i], t + (size_t)i * TOK_WORDS);
    free(t);
    return 0;
  }
  if ((cr = coll_isend(t, (size_t)nseq * TOK_WORDS, COLL_I32, 0, TAG_TOK + g, e->comm, &R->tok_reqs[R->n_tok])) !=
      COLL_OK) {
    free(t);
    return strata_fail(e->err, sizeof e->err, "sending tokens of group %d to rank 0: %s", g, coll_result_string(cr));
  }
  R->tok_bufs[R->n_tok++] = t;
  return 0;
}

/* Rank 0, P > 1, after its RUN of G groups: receives the previous RUN's groups beyond G, then
 * keeps this RUN's plan (len words) to know which tokens the next RUN receives. */
static int keep_plan(infer_engine_t *e, const int32_t *plan, int G, int len) {
  int prevG = e->prev_len ? e->prev_plan[0] : 0;
  for (int g = G; g < prevG; g++)
    if (recv_prev_group(e, g)) return -1;
  if (len > e->prev_cap) {
    int32_t *np = realloc(e->prev_plan, sizeof(int32_t) * len);
    if (!np) return strata_fail(e->err, sizeof e->err, "out of memory for a plan of %d words", len);
    e->prev_plan = np;
    e->prev_cap = len;
  }
  memcpy(e->prev_plan, plan, sizeof(int32_t) * len);
  e->prev_len = len;
  return 0;
}

/* Completes the RUN's activation sends and, on the last stage, the previous RUN's token sends
 * (this RUN's stay in flight for the next); frees the scratch. Returns rc, or -1 when a send
 * failed. */
static int end_run(infer_engine_t *e, run_t *R, int rc) {
  for (int i = 0; i < R->nreq; i++) {
    coll_result_t cr = coll_wait(R->reqs[i]);
    if (cr != COLL_OK && rc == 0)
      rc = strata_fail(e->err, sizeof e->err, "completing a send: %s", coll_result_string(cr));
  }
  for (int i = 0; i < R->nbufs; i++) free(R->bufs[i]);
  if (e->stage == e->P - 1 && e->t == 0 && e->rank != 0) {
    /* rank 0 has received the previous RUN's tokens by now (before running the groups whose
     * activations reached this stage, or at the end of its RUN) */
    if (wait_token_sends(e) && rc == 0) rc = -1;
    for (int i = 0; i < R->n_tok; i++) {
      e->tok_reqs[i] = R->tok_reqs[i];
      e->tok_bufs[i] = R->tok_bufs[i];
    }
    e->n_tok_reqs = R->n_tok;
  }
  free(R->x);
  free(R->tok);
  free(R->seqs);
  return rc;
}

/* One RUN: the groups of sequences through this stage. Groups follow one another, so while
 * stage s+1 runs group g, stage s runs group g+1. With P > 1 the RUNs overlap as well: the
 * tokens of group g of one RUN return to rank 0 while the others are still in the pipeline, and
 * rank 0 receives them just before it runs group g of the next RUN (a sequence keeps its group),
 * so in steady state every stage is busy. */
static int exec_run(infer_engine_t *e, const int32_t *p, const int32_t **end) {
  const int coord_pipelined = e->rank == 0 && e->P > 1; /* tokens come back from the last stage */
  const int32_t *plan = p;
  int G = *p++, rc = 0;
  run_t R;
  memset(&R, 0, sizeof R);
  if (e->rank == 0) e->n_recv = 0;
  for (int g = 0; g < G && rc == 0; g++) {
    int nseq = *p++;
    const int32_t *items = p;
    p += 2 * nseq;
    if (coord_pipelined && recv_prev_group(e, g)) rc = -1;
    else if (nseq > 0) rc = run_group(e, &R, g, nseq, items);
  }
  if (rc == 0 && coord_pipelined) rc = keep_plan(e, plan, G, (int)(p - plan));
  *end = p;
  return end_run(e, &R, rc);
}

/* Records this rank's outcome of a LOAD or SAVE for the next VOTE. */
static int pend_push(infer_engine_t *e, session_status_t st, int eno, uint64_t sum, uint64_t bytes) {
  if (e->n_pend == e->pend_cap) {
    int cap = e->pend_cap ? 2 * e->pend_cap : 16;
    int32_t *np = realloc(e->pend, sizeof(int32_t) * VOTE_WORDS * (size_t)cap);
    if (!np)
      return strata_fail(e->err, sizeof e->err, "out of memory recording a session outcome");
    e->pend = np;
    e->pend_cap = cap;
  }
  int32_t *w = e->pend + (size_t)VOTE_WORDS * e->n_pend++;
  w[0] = (int32_t)st;
  w[1] = eno;
  w[2] = (int32_t)(uint32_t)sum, w[3] = (int32_t)(uint32_t)(sum >> 32);
  w[4] = (int32_t)(uint32_t)bytes, w[5] = (int32_t)(uint32_t)(bytes >> 32);
  return 0;
}

/* OP_VOTE n: every rank's last n outcomes reach rank 0 (e->votes, [world][n * VOTE_WORDS]). */
static int exec_vote(infer_engine_t *e, int n) {
  if (n != e->n_pend)
    return strata_fail(e->err, sizeof e->err, "corrupt plan: a vote over %d outcomes, but this rank has %d", n,
                       e->n_pend);
  size_t words = (size_t)VOTE_WORDS * n;
  if (e->rank == 0 && (size_t)e->votes_cap < words * e->world) {
    int32_t *nv = realloc(e->votes, sizeof(int32_t) * words * e->world);
    if (!nv)
      return strata_fail(e->err, sizeof e->err, "out of memory for a vote over %d outcomes", n);
    e->votes = nv;
    e->votes_cap = (int)(words * e->world);
  }
  if (e->world == 1) {
    if (words) memcpy(e->votes, e->pend, sizeof(int32_t) * words);
  } else if (words) {
    /* an all-gather (every rank learns every outcome; only rank 0 uses them) */
    int32_t *all = e->rank == 0 ? e->votes : malloc(sizeof(int32_t) * words * e->world);
    if (!all)
      return strata_fail(e->err, sizeof e->err, "out of memory for a vote over %d outcomes", n);
    coll_result_t cr = coll_allgather(e->pend, all, words, COLL_I32, e->comm);
    if (all != e->votes) free(all);
    if (cr != COLL_OK)
      return strata_fail(e->err, sizeof e->err, "gathering every stage's session outcome: %s: %s",
                         coll_result_string(cr), coll_last_error(e->comm));
  }
  e->n_votes = n;
  e->n_pend = 0;
  return 0;
}

/* Executes one plan message. Returns 0, 1 after OP_SHUTDOWN, -1 on a fatal error (e->err).
 * A session file that cannot be read or written is not fatal: its outcome goes to the vote. */
static int exec_msg(infer_engine_t *e, const int32_t *p, int n) {
  const int32_t *endp = p + n;
  char id[SESSION_ID_MAX + 8], serr[1024];
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
      sp.presence_penalty = get_double(p + 7);
      sp.frequency_penalty = get_double(p + 9);
      sp.want_logprobs = p[11];
      sp.top_logprobs = p[12];
      p += 13;
      if (sl->has_sampler) sampler_free(&sl->sampler);
      sampler_init(&sl->sampler, &sp);
      sl->has_sampler = 1;
      break;
    }
    case OP_LOAD: {
      slot_t *sl = &e->slots[*p++];
      e->rec->n_kv = *p++;
      e->rec->n_tokens = *p++;
      e->rec->generation = get_u64(p);
      p += 2;
      for (int k = 0; k < e->world; k++, p += 2) e->rec->sum[k] = get_u64(p);
      p = get_str(p, id, sizeof id);
      if (e->rank == 0) { /* done at admission */
        if (pend_push(e, SESSION_OK, 0, 0, 0)) return -1;
        break;
      }
      if (slot_open(e, sl)) return -1;
      session_status_t st = session_read_stage(e->session_dir, id, &e->hdr, e->rec, sl->cache, NULL, NULL, serr,
                                               sizeof serr);
      if (st != SESSION_OK) strata_warn("session '%s': %s: %s", id, e->name, serr);
      if (pend_push(e, st, 0, 0, 0)) return -1;
      break;
    }
    case OP_RUN:
      if (exec_run(e, p, &p)) return -1;
      break;
    case OP_SAVE: {
      slot_t *sl = &e->slots[*p++];
      uint64_t gen = get_u64(p);
      p = get_str(p + 2, id, sizeof id);
      uint64_t sum = 0, bytes = 0;
      int eno = 0;
      fault_point(FAULT_AT_SESSION_SAVE, (int64_t)++e->saves_done);
      session_status_t st = session_write_stage(e->session_dir, id, &e->hdr, gen, e->rank == 0 ? sl->tokens : NULL,
                                                e->rank == 0 ? sl->n_tokens : 0, sl->cache, &sum, &bytes, &eno,
                                                serr, sizeof serr);
      if (st != SESSION_OK) strata_warn("session '%s': %s: %s", id, e->name, serr);
      if (pend_push(e, st, eno, sum, bytes)) return -1;
      break;
    }
    case OP_VOTE:
      if (exec_vote(e, *p++)) return -1;
      break;
    case OP_COMMIT: {
      uint64_t gen = get_u64(p);
      p = get_str(p + 2, id, sizeof id);
      if (session_promote(e->session_dir, id, e->stage, e->P, e->t, e->T, gen, serr, sizeof serr))
        strata_warn("session '%s': %s (its next load reads the .kv.next file)", id, serr);
      break;
    }
    case OP_DISCARD:
      p = get_str(p, id, sizeof id);
      session_discard_next(e->session_dir, id, e->stage, e->P, e->t, e->T);
      break;
    case OP_DELETE:
      p = get_str(p, id, sizeof id);
      session_delete_stage(e->session_dir, id, e->stage, e->P, e->t, e->T);
      break;
    case OP_FREE:
      slot_release(e, &e->slots[*p++]);
      break;
    case OP_HEARTBEAT: {
      int32_t seq = *p++;
      if (e->rank != 0) {
        coll_result_t cr = coll_send(&seq, 1, COLL_I32, 0, TAG_ACK, e->comm);
        if (cr != COLL_OK)
          return strata_fail(e->err, sizeof e->err, "answering rank 0's heartbeat: %s: %s", coll_result_string(cr),
                             coll_last_error(e->comm));
      }
      break;
    }
    case OP_SHUTDOWN:
      return 1;
    default:
      snprintf(e->err, sizeof e->err, "corrupt plan message (op %d)", op);
      return -1;
    }
  }
  return 0;
}

/* A plan travels in one message of PLAN_INLINE_WORDS words (word 0 = the plan's length, then
 * its first words); a longer plan sends the rest in a second one. One message per plan keeps
 * the per-token latency of decode low. */
/* Rank 0: sends the message built in e->msg to every worker and executes it. */
static int flush_msg(infer_engine_t *e) {
  if (e->msg_oom) {
    msg_reset(e);
    return strata_fail(e->err, sizeof e->err, "out of memory for a plan of more than %d words", e->msg_cap);
  }
  if (e->msg_len == 0) return 0;
  int32_t n = e->msg_len;
  if (e->world > 1) {
    int32_t head[PLAN_INLINE_WORDS];
    int inl = n < PLAN_INLINE_WORDS - 1 ? n : PLAN_INLINE_WORDS - 1;
    head[0] = n;
    memcpy(head + 1, e->msg, sizeof(int32_t) * inl);
    coll_request_t **reqs = e->plan_reqs;
    int nreq = 0;
    coll_result_t cr = COLL_OK;
    for (int w = 1; w < e->world && cr == COLL_OK; w++) {
      cr = coll_isend(head, PLAN_INLINE_WORDS, COLL_I32, w, TAG_PLAN, e->comm, &reqs[nreq]);
      if (cr == COLL_OK) nreq++;
      if (cr == COLL_OK && n > inl) {
        cr = coll_isend(e->msg + inl, (size_t)(n - inl), COLL_I32, w, TAG_PLAN_TAIL, e->comm, &reqs[nreq]);
        if (cr == COLL_OK) nreq++;
      }
    }
    while (nreq > 0) {
      coll_result_t wr = coll_wait(reqs[--nreq]);
      if (cr == COLL_OK) cr = wr;
    }
    if (cr != COLL_OK)
      return strata_fail(e->err, sizeof e->err, "sending the round's plan: %s: %s", coll_result_string(cr),
                         coll_last_error(e->comm));
    e->last_plan_s = strata_now_s();
  }
  msg_reset(e);
  int rc = exec_msg(e, e->msg, n);
  return rc < 0 ? -1 : 0;
}

/* Worker: waits for rank 0's next plan without a deadline but the liveness bound; the plan's
 * length in *n, its words in *buf (grown as needed). 0, or -1 with e->err. */
static int recv_plan(infer_engine_t *e, int32_t **buf, int *cap, int32_t *n_out) {
  int32_t head[PLAN_INLINE_WORDS];
  coll_request_t *req;
  coll_result_t cr = coll_irecv(head, PLAN_INLINE_WORDS, COLL_I32, 0, TAG_PLAN, e->comm, &req);
  double t0 = strata_now_s();
  int done = 0;
  while (cr == COLL_OK && !done) {
    cr = coll_wait_for(req, e->opts.heartbeat_s, &done);
    if (cr == COLL_OK && !done && strata_now_s() - t0 > e->opts.liveness_s) {
      coll_cancel(req);
      snprintf(e->err, sizeof e->err,
               "rank 0 (the coordinator) has sent neither a plan nor a heartbeat for %.1f s "
               "(STRATA_INFER_LIVENESS_S): it is dead or stuck; ending the job",
               strata_now_s() - t0);
      return -1;
    }
  }
  if (cr != COLL_OK)
    return strata_fail(e->err, sizeof e->err, "waiting for rank 0's plan: %s: %s", coll_result_string(cr),
                       coll_last_error(e->comm));
  int32_t n = head[0];
  if (n < 0 || n > (1 << 28))
    return strata_fail(e->err, sizeof e->err, "corrupt plan length %d", n);
  if (n > *cap) {
    int32_t *nb = realloc(*buf, sizeof(int32_t) * (size_t)n);
    if (!nb)
      return strata_fail(e->err, sizeof e->err, "out of memory for a plan of %d words", n);
    *buf = nb;
    *cap = n;
  }
  int inl = n < PLAN_INLINE_WORDS - 1 ? n : PLAN_INLINE_WORDS - 1;
  memcpy(*buf, head + 1, sizeof(int32_t) * inl);
  if (n > inl) { /* the rest was sent with the head: a started transfer, bounded by the timeout */
    cr = coll_recv(*buf + inl, (size_t)(n - inl), COLL_I32, 0, TAG_PLAN_TAIL, e->comm);
    if (cr != COLL_OK)
      return strata_fail(e->err, sizeof e->err, "receiving the rest of rank 0's plan: %s: %s", coll_result_string(cr),
                         coll_last_error(e->comm));
  }
  *n_out = n;
  return 0;
}

int infer_worker_loop(infer_engine_t *e) {
  int32_t *buf = NULL;
  int cap = 0, rc = 0;
  for (;;) {
    int32_t n = 0;
    if (recv_plan(e, &buf, &cap, &n)) {
      strata_error("infer: %s: %s", e->name, e->err);
      rc = -1;
      break;
    }
    int x = exec_msg(e, buf, n);
    if (x < 0) {
      strata_error("infer: %s: %s", e->name, e->err);
      rc = -1;
      break;
    }
    if (x == 1) break;
  }
  free(buf);
  if (rc) e->failed = 1;
  return rc;
}

static int tick(infer_engine_t *e);
int infer_engine_tick(infer_engine_t *e) {
  if (e->rank != 0 || e->world == 1) return 0;
  if (tick(e)) {
    e->failed = 1;
    return -1;
  }
  return 0;
}

static int tick(infer_engine_t *e) {
  double now = strata_now_s();
  for (int w = 1; w < e->world; w++) { /* answers that arrived */
    int done = 0;
    coll_result_t cr = coll_wait_for(e->ack_req[w], 0, &done);
    if (cr == COLL_OK && done) {
      e->ack_req[w] = NULL;
      e->acked[w] = (uint32_t)e->ack_buf[w];
      cr = coll_irecv(&e->ack_buf[w], 1, COLL_I32, w, TAG_ACK, e->comm, &e->ack_req[w]);
    }
    if (cr != COLL_OK) {
      if (done) e->ack_req[w] = NULL;
      snprintf(e->err, sizeof e->err, "heartbeat answers from rank %d: %s: %s", w, coll_result_string(cr),
               coll_last_error(e->comm));
      return -1;
    }
  }
  for (int w = 1; w < e->world; w++) { /* the oldest heartbeat a worker has not answered */
    if (e->acked[w] == e->hb_seq) continue;
    uint32_t first = e->acked[w] + 1;
    if (e->hb_seq - first >= HB_RING) first = e->hb_seq - HB_RING + 1;
    double silent = now - e->hb_sent_s[first % HB_RING];
    if (silent > e->opts.liveness_s) {
      char who[96];
      rank_name(e, w, who, sizeof who);
      return strata_fail(e->err, sizeof e->err,
                         "rank %d (%s) has not answered rank 0's heartbeat for %.1f s "
                         "(STRATA_INFER_LIVENESS_S): it is dead or stuck; ending the job",
                         w, who, silent);
    }
  }
  if (now - e->last_plan_s < e->opts.heartbeat_s || e->msg_len) return 0;
  /* Unlike a plan, a heartbeat is never waited for: a stopped worker may never take it, and rank
   * 0 must stay free to notice that. A worker still holding the previous one is skipped. */
  e->hb_seq++;
  e->hb_sent_s[e->hb_seq % HB_RING] = now;
  e->last_plan_s = now;
  for (int w = 1; w < e->world; w++) {
    int done = 1;
    if (e->hb_req[w] && coll_wait_for(e->hb_req[w], 0, &done) == COLL_OK && done) e->hb_req[w] = NULL;
    if (!done) continue;
    if (done && e->hb_req[w]) { /* completed with an error */
      e->hb_req[w] = NULL;
      snprintf(e->err, sizeof e->err, "sending rank %d its heartbeat: %s", w, coll_last_error(e->comm));
      return -1;
    }
    int32_t *h = e->hb_head + (size_t)w * PLAN_INLINE_WORDS;
    h[0] = 2, h[1] = OP_HEARTBEAT, h[2] = (int32_t)e->hb_seq;
    coll_result_t cr = coll_isend(h, PLAN_INLINE_WORDS, COLL_I32, w, TAG_PLAN, e->comm, &e->hb_req[w]);
    if (cr != COLL_OK) {
      e->hb_req[w] = NULL;
      snprintf(e->err, sizeof e->err, "sending rank %d its heartbeat: %s: %s", w, coll_result_string(cr),
               coll_last_error(e->comm));
      return -1;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ rank 0: queue */

int infer_submit(infer_engine_t *e, const infer_request_t *req, infer_token_fn on_token,
                 infer_done_fn on_done, void *ctx, uint64_t *id, char *err, size_t errlen) {
  if (e->rank != 0) {
    snprintf(err, errlen, "infer_submit is for rank 0 only");
    return INFER_ERR_INVALID;
  }
  if (req->max_tokens < 1) {
    snprintf(err, errlen, "max_tokens %d must be >= 1", req->max_tokens);
    return INFER_ERR_INVALID;
  }
  if (req->n_prompt < 0 || (req->n_prompt > 0 && !req->prompt)) {
    snprintf(err, errlen, "bad prompt (%d tokens)", req->n_prompt);
    return INFER_ERR_INVALID;
  }
  int has_session = req->session && *req->session;
  if (req->n_prompt == 0 && !has_session) {
    snprintf(err, errlen, "empty prompt: give at least one token (or a session to continue)");
    return INFER_ERR_INVALID;
  }
  for (int i = 0; i < req->n_prompt; i++)
    if (req->prompt[i] < 0 || req->prompt[i] >= e->cfg.vocab) {
      snprintf(err, errlen, "prompt token %d at position %d is outside the vocabulary [0, %d)",
               req->prompt[i], i, e->cfg.vocab);
      return INFER_ERR_INVALID;
    }
  if (req->n_prompt + req->max_tokens > e->cfg.ctx) {
    snprintf(err, errlen,
             "prompt of %d tokens + max_tokens %d = %d exceeds the model's context of %d tokens; "
             "shorten the prompt or lower max_tokens",
             req->n_prompt, req->max_tokens, req->n_prompt + req->max_tokens, e->cfg.ctx);
    return INFER_ERR_INVALID;
  }
  if (sampler_validate(&req->sampling, err, errlen)) return INFER_ERR_INVALID;
  if (has_session) {
    if (session_id_validate(req->session, err, errlen)) return INFER_ERR_INVALID;
    if (!e->sessions_enabled) {
      snprintf(err, errlen, "sessions are disabled (no session directory)");
      return INFER_ERR_INVALID;
    }
  }
  req_node_t *n = calloc(1, sizeof *n);
  if (!n || !(n->prompt = malloc(sizeof(int32_t) * (req->n_prompt ? req->n_prompt : 1)))) {
    free(n);
    snprintf(err, errlen, "out of memory for a request with a prompt of %d tokens", req->n_prompt);
    return INFER_ERR_INTERNAL;
  }
  memcpy(n->prompt, req->prompt, sizeof(int32_t) * req->n_prompt);
  n->n_prompt = req->n_prompt;
  n->max_tokens = req->max_tokens;
  n->sp = req->sampling;
  n->on_logprob = req->on_logprob;
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
    return INFER_ERR_BUSY;
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
  return INFER_OK;
}

int infer_engine_idle(infer_engine_t *e) {
  pthread_mutex_lock(&e->mu);
  int idle = e->q_len == 0 && e->in_flight == 0;
  pthread_mutex_unlock(&e->mu);
  return idle;
}

static void fail_request(infer_engine_t *e, req_node_t *r, infer_error_t kind, const char *msg) {
  infer_result_t res;
  memset(&res, 0, sizeof res);
  res.error_kind = kind;
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
  msg_push_double(e, sp->presence_penalty);
  msg_push_double(e, sp->frequency_penalty);
  msg_push(e, sp->want_logprobs);
  msg_push(e, sp->top_logprobs);
}

/* The request class of a stage file's read status. */
static infer_error_t load_error_kind(session_status_t st) {
  return st == SESSION_MISMATCH ? INFER_ERR_CONFLICT : st == SESSION_IO ? INFER_ERR_INTERNAL : INFER_ERR_SESSION_DATA;
}

/* Where a session that is not in memory stands on disk: 0 committed (e->rec read), 1 new, or -1
 * after failing the request (request consumed). */
static int session_on_disk(infer_engine_t *e, req_node_t *r) {
  char err[1024], msg[1400];
  int rc = session_commit_read(e->session_dir, r->session, e->rec, err, sizeof err);
  if (rc < 0) {
    snprintf(msg, sizeof msg, "session '%s' cannot be restored: %s; delete the session to start it afresh",
             r->session, err);
    fail_request(e, r, INFER_ERR_SESSION_DATA, msg);
    return -1;
  }
  if (rc == 1) {
    if (!session_uncommitted_files(e->session_dir, r->session)) return 1;
    snprintf(msg, sizeof msg,
             "session '%s' has stage files in %s but no commit record (written by an older Strata, or by "
             "hand), so it cannot be restored safely; delete the session",
             r->session, e->session_dir);
    fail_request(e, r, INFER_ERR_CONFLICT, msg);
    return -1;
  }
  if (e->rec->stages != e->P || e->rec->tp != e->T) {
    /* a KV cache split by heads over T ranks is not re-sliced for another T */
    if (e->rec->tp == 1 && e->T == 1)
      snprintf(msg, sizeof msg,
               "session '%s' was saved by a job of %d pipeline stages; this job has %d: restore it with "
               "mpirun -np %d (or delete it)",
               r->session, e->rec->stages, e->P, e->rec->stages);
    else
      snprintf(msg, sizeof msg,
               "session '%s' was saved by a job of --tp %d x %d pipeline stages; this job is --tp %d x %d: "
               "restore it with --tp %d and mpirun -np %d (or delete it)",
               r->session, e->rec->tp, e->rec->stages, e->T, e->P, e->rec->tp, e->rec->tp * e->rec->stages);
    fail_request(e, r, INFER_ERR_CONFLICT, msg);
    return -1;
  }
  if (e->rec->model_id != e->hdr.model_id) {
    snprintf(msg, sizeof msg,
             "session '%s' was made with another model or checkpoint (identity %016llx, this one %016llx); "
             "serve the checkpoint that made it, or delete the session",
             r->session, (unsigned long long)e->rec->model_id, (unsigned long long)e->hdr.model_id);
    fail_request(e, r, INFER_ERR_CONFLICT, msg);
    return -1;
  }
  return 0;
}

/* Where request r's session lives: *s its resident slot (-1: none), *source "memory", "disk"
 * or "new" ("none" without a session), and what it holds. Returns 0, 1 when the session is busy
 * (wait), -1 failed (request consumed). */
static int locate_session(infer_engine_t *e, req_node_t *r, int *s, const char **source, int *n_hist, int *n_kv,
                          uint64_t *gen) {
  *s = -1;
  *source = "none";
  *n_hist = *n_kv = 0;
  *gen = 0;
  if (!r->session[0]) return 0;
  *s = find_session_slot(e, r->session);
  if (*s >= 0) {
    const slot_t *sl = &e->slots[*s];
    if (sl->state == SLOT_ACTIVE) return 1;
    *source = "memory";
    *n_hist = sl->n_tokens;
    *n_kv = sl->cache->n_pos;
    *gen = sl->gen;
    return 0;
  }
  int d = session_on_disk(e, r);
  if (d < 0) return -1;
  *source = d == 0 ? "disk" : "new";
  if (d == 0) {
    *n_hist = e->rec->n_tokens;
    *n_kv = e->rec->n_kv;
    *gen = e->rec->generation;
  }
  return 0;
}

/* Rank 0 loads its own stage of session r->session into slot s now (a bad file fails only this
 * request) and plans the LOAD of the other stages; their outcome comes with the next VOTE.
 * Returns 0 with the history in *hist (malloc'd, *n_hist tokens) and *n_kv, -1 failed. */
static int load_session(infer_engine_t *e, req_node_t *r, int s, int32_t **hist, int *n_hist, int *n_kv) {
  char err[1024];
  slot_t *sl = &e->slots[s];
  session_status_t st = SESSION_IO;
  if (kv_cache_create_dtype(e->nl, e->Cl, e->cfg.ctx, e->opts.bf16, &sl->cache, err, sizeof err) == 0)
    st = session_read_stage(e->session_dir, r->session, &e->hdr, e->rec, sl->cache, hist, n_hist, err, sizeof err);
  if (st != SESSION_OK) {
    kv_cache_free(sl->cache);
    sl->cache = NULL;
    char msg[1400];
    snprintf(msg, sizeof msg,
             "session '%s' cannot be restored: stage 0 (rank 0): its file is %s: %s; delete the session to "
             "start it afresh",
             r->session, session_status_name(st), err);
    fail_request(e, r, load_error_kind(st), msg);
    return -1;
  }
  *n_kv = sl->cache->n_pos;
  msg_push(e, OP_LOAD);
  msg_push(e, s);
  msg_push(e, *n_kv);
  msg_push(e, e->rec->n_tokens);
  msg_push_u64(e, e->rec->generation);
  for (int k = 0; k < e->world; k++) msg_push_u64(e, e->rec->sum[k]);
  msg_push_str(e, r->session);
  e->vote_slots[e->n_vote_slots++] = s;
  e->st.session_loads++;
  session_store_touch(e->store, r->session);
  return 0;
}

/* A slot for a request whose session is not resident (evicting the least recently used idle
 * one if needed), opened empty or loaded from disk. Returns 0 with *s, 1 when none is free
 * this round (wait), -1 failed (request consumed). */
static int take_slot(infer_engine_t *e, req_node_t *r, int from_disk, int *s, int32_t **hist, int *n_hist,
                     int *n_kv) {
  *s = free_slot(e);
  if (*s < 0 && evict_lru(e) >= 0) *s = free_slot(e);
  /* the evicted slot is released when the plan executes: take it directly */
  for (int i = 0; i < e->nslots && *s < 0; i++)
    if (e->slots[i].state == SLOT_FREE) *s = i;
  if (*s < 0) return 1;
  /* a slot planned for release in this message still holds its cache until the plan executes:
   * releasing it now on rank 0 is unsafe, so the request waits for the next round */
  if (e->slots[*s].cache) return 1;
  if (from_disk) return load_session(e, r, *s, hist, n_hist, n_kv);
  msg_push(e, OP_OPEN);
  msg_push(e, *s);
  return 0;
}

/* The least loaded pipeline group, for a sequence starting in slot s; it stays there (see
 * exec_run). */
static int least_loaded_group(const infer_engine_t *e, int s) {
  int count[MAX_GROUPS] = {0}, G = e->P < MAX_GROUPS ? e->P : MAX_GROUPS;
  for (int i = 0; i < e->nslots; i++)
    if (i != s && e->slots[i].state == SLOT_ACTIVE && e->slots[i].req && e->slots[i].group < G)
      count[e->slots[i].group]++;
  int best = 0;
  for (int g = 1; g < G; g++)
    if (count[g] < count[best]) best = g;
  return best;
}

/* Admits one request into a slot (plans OPEN/LOAD/SAMPLER). Returns 0 admitted, 1 must wait
 * (session busy or no slot), -1 failed (request consumed). A LOAD's outcome on the other
 * stages is known only after the VOTE that infer_engine_step plans after admission. */
static int admit(infer_engine_t *e, req_node_t *r) {
  int s, n_hist, n_kv;
  uint64_t gen;
  const char *source;
  int rc = locate_session(e, r, &s, &source, &n_hist, &n_kv, &gen);
  if (rc) return rc;
  if (n_hist + r->n_prompt + r->max_tokens > e->cfg.ctx) {
    char err[1024];
    snprintf(err, sizeof err,
             "context would pass n_ctx: session '%s' history %d + prompt %d + max_tokens %d = %d tokens "
             "> the model's context %d; start a new session or lower max_tokens",
             r->session, n_hist, r->n_prompt, r->max_tokens, n_hist + r->n_prompt + r->max_tokens,
             e->cfg.ctx);
    fail_request(e, r, INFER_ERR_INVALID, err);
    return -1;
  }
  if (n_hist + r->n_prompt == 0) {
    fail_request(e, r, INFER_ERR_INVALID, "empty context: the session is new and the prompt is empty");
    return -1;
  }
  int32_t *hist = NULL;
  if (s < 0 && (rc = take_slot(e, r, !strcmp(source, "disk"), &s, &hist, &n_hist, &n_kv))) return rc;
  slot_t *sl = &e->slots[s];
  if (!sl->tokens) {
    sl->tokens = malloc(sizeof(int32_t) * e->cfg.ctx);
    if (!sl->tokens) {
      free(hist);
      fail_request(e, r, INFER_ERR_INTERNAL, "out of memory for a sequence's tokens");
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
  sl->gen = gen;
  sl->save_failed = 0;
  sl->n_gen = 0;
  sl->cached_tokens = n_kv;
  sl->n_kv = n_kv;
  sl->inflight = 0;
  sl->cancelled = 0;
  sl->group = least_loaded_group(e, s);
  sl->source = source;
  sl->t_first = 0;
  sl->finished = 0;
  sl->lru = e->round;
  e->st.prompt_tokens_cached += (uint64_t)n_kv;
  e->st.prompt_tokens_computed += (uint64_t)(sl->n_tokens - n_kv);
  plan_sampler(e, s, &r->sp);
  return 0;
}

/* The first rank whose outcome k of the last VOTE failed, with its status and errno; -1 if
 * every rank succeeded. */
static int vote_failed_rank(const infer_engine_t *e, int k, session_status_t *st, int *eno) {
  for (int r = 0; r < e->world; r++) {
    const int32_t *w = e->votes + ((size_t)r * e->n_votes + k) * VOTE_WORDS;
    if (w[0] != SESSION_OK) {
      *st = (session_status_t)w[0];
      *eno = w[1];
      return r;
    }
  }
  return -1;
}
static uint64_t vote_u64(const infer_engine_t *e, int r, int k, int word) {
  return get_u64(e->votes + ((size_t)r * e->n_votes + k) * VOTE_WORDS + word);
}

/* After admission: the VOTE over the LOADs just planned. A request whose session failed to
 * load on some stage fails (naming the stage) and its slot is released; the others run. */
static int check_loads(infer_engine_t *e) {
  int n = e->n_vote_slots;
  e->n_vote_slots = 0;
  if (n == 0) return 0;
  msg_push(e, OP_VOTE);
  msg_push(e, n);
  if (flush_msg(e)) return -1;
  for (int k = 0; k < n; k++) {
    session_status_t st;
    int eno, bad = vote_failed_rank(e, k, &st, &eno);
    if (bad < 0) continue;
    int s = e->vote_slots[k];
    slot_t *sl = &e->slots[s];
    char path[4352], msg[1400], who[96];
    session_path(path, sizeof path, e->session_dir, sl->session, bad / e->T, e->P, bad % e->T, e->T);
    rank_name(e, bad, who, sizeof who);
    snprintf(msg, sizeof msg,
             "session '%s' cannot be restored: %s (rank %d): its file %s is %s (that rank's log says more); "
             "delete the session to start it afresh",
             sl->session, who, bad, path, session_status_name(st));
    req_node_t *r = sl->req;
    sl->req = NULL;
    fail_request(e, r, load_error_kind(st), msg);
    pthread_mutex_lock(&e->mu);
    e->in_flight--;
    pthread_mutex_unlock(&e->mu);
    msg_push(e, OP_FREE);
    msg_push(e, s);
  }
  return 0;
}

static void complete(infer_engine_t *e, int s) {
  slot_t *sl = &e->slots[s];
  req_node_t *r = sl->req;
  double t = strata_now_s();
  infer_result_t res;
  memset(&res, 0, sizeof res);
  res.ok = !sl->save_failed;
  if (sl->save_failed) {
    res.error_kind = INFER_ERR_STORAGE;
    snprintf(res.error, sizeof res.error,
             "the turn was generated, but session '%s' could not be saved: %s; the session keeps its previous "
             "turn",
             sl->session, sl->save_error);
    e->st.requests_failed++;
  } else {
    e->st.requests_done++;
  }
  res.tokens = sl->tokens + sl->n_tokens - sl->n_gen;
  res.n_tokens = sl->n_gen;
  res.n_prompt = r->n_prompt;
  res.cached_tokens = sl->cached_tokens;
  res.context_tokens = sl->n_tokens;
  res.session_source = sl->source;
  res.finish_reason = sl->save_failed ? "error" : sl->cancelled ? "cancelled" : "length";
  res.ttft_s = sl->t_first - r->t_submit;
  res.total_s = t - r->t_submit;
  res.tokens_per_s = res.total_s > 0 ? sl->n_gen / res.total_s : 0;
  if (r->on_done) r->on_done(r->ctx, r->id, &res);
  free(r->prompt);
  free(r);
  sl->req = NULL;
}

/* 1 if a session has a request in flight or queued (never evicted from disk then). */
static int session_in_use(const char *id, void *arg) {
  infer_engine_t *e = arg;
  int s = find_session_slot(e, id);
  if (s >= 0 && e->slots[s].state == SLOT_ACTIVE) return 1;
  int queued = 0;
  pthread_mutex_lock(&e->mu);
  for (req_node_t *r = e->q_head; r && !queued; r = r->next) queued = !strcmp(r->session, id);
  pthread_mutex_unlock(&e->mu);
  return queued;
}

/* Plans the removal of a session from every stage (and from memory); rank 0 removes the
 * commit record at once, so a crash part-way leaves nothing restorable. */
static void plan_session_delete(infer_engine_t *e, const char *id) {
  char path[4352];
  session_commit_path(path, sizeof path, e->session_dir, id);
  unlink(path);
  msg_push(e, OP_DELETE);
  msg_push_str(e, id);
  int s = find_session_slot(e, id);
  if (s >= 0 && e->slots[s].state == SLOT_IDLE) {
    msg_push(e, OP_FREE);
    msg_push(e, s);
    e->slots[s].state = SLOT_FREE; /* released when the message executes */
  }
  session_store_remove(e->store, id);
}

/* The bytes slot s's session will take on disk after this save (every rank's part file and the
 * commit record). */
static uint64_t save_bytes(const infer_engine_t *e, const slot_t *sl) {
  uint64_t b = 0;
  for (int k = 0; k < e->world; k++)
    b += session_file_bytes_dtype(k == 0 ? sl->n_tokens : 0, sl->cache->n_pos,
                                  layout_stage_layers(&e->lay, k / e->T), e->Cl, sl->cache->bf16);
  return b + session_commit_bytes(e->world);
}

/* With a disk quota: evicts the least recently used sessions until slot s's save fits. 0, or
 * -1 when it cannot fit (the reason in sl->save_error). */
static int make_room(infer_engine_t *e, slot_t *sl) {
  if (!e->store) return 0;
  uint64_t need = save_bytes(e, sl);
  char victim[SESSION_ID_MAX + 1];
  uint64_t vbytes;
  double idle;
  while (session_store_excess(e->store, sl->session, need) > 0) {
    if (!session_store_victim(e->store, sl->session, session_in_use, e, victim, &vbytes, &idle)) {
      snprintf(sl->save_error, sizeof sl->save_error,
               "it needs %.2f MiB and the other sessions in use leave too little of the quota of %.2f MiB "
               "(--session-disk-mb)",
               need / 1048576.0, e->opts.session_disk_mb);
      return -1;
    }
    strata_info("session store: evicted session '%s' (%.2f MiB, unused for %.0f s) to stay within "
                "--session-disk-mb %g",
                victim, vbytes / 1048576.0, idle, e->opts.session_disk_mb);
    plan_session_delete(e, victim);
    session_store_note_eviction(e->store);
  }
  return 0;
}

/* After the VOTE over the saves: commits each save every stage wrote (rank 0 writes the commit
 * record, then plans the promotion) or marks it failed and plans the discard. */
static void commit_saves(infer_engine_t *e, int n) {
  char err[1024];
  for (int k = 0; k < n; k++) {
    slot_t *sl = &e->slots[e->vote_slots[k]];
    session_status_t st;
    int eno, bad = vote_failed_rank(e, k, &st, &eno);
    if (bad >= 0) {
      char who[96];
      rank_name(e, bad, who, sizeof who);
      snprintf(sl->save_error, sizeof sl->save_error, "%s (rank %d): %s", who, bad,
               eno ? strerror(eno) : session_status_name(st));
    } else {
      session_commit_t *rec = e->rec;
      memset(rec, 0, sizeof *rec);
      rec->model_id = e->hdr.model_id;
      rec->stages = e->P;
      rec->tp = e->T;
      rec->n_tokens = sl->n_tokens;
      rec->n_kv = sl->cache->n_pos;
      rec->generation = sl->gen + 1;
      uint64_t total = session_commit_bytes(e->world);
      for (int r = 0; r < e->world; r++) {
        rec->sum[r] = vote_u64(e, r, k, 2);
        rec->bytes[r] = vote_u64(e, r, k, 4);
        total += rec->bytes[r];
      }
      if (session_commit_write(e->session_dir, sl->session, rec, &eno, err, sizeof err)) {
        snprintf(sl->save_error, sizeof sl->save_error, "stage 0 (rank 0): %s", err);
        bad = 0;
      } else {
        sl->gen++;
        if (e->store && session_store_put(e->store, sl->session, total))
          strata_warn("session store: out of memory recording session '%s'", sl->session);
        if (e->store) session_store_note_success(e->store);
        msg_push(e, OP_COMMIT);
        msg_push_u64(e, sl->gen);
        msg_push_str(e, sl->session);
      }
    }
    if (bad >= 0) {
      sl->save_failed = 1;
      msg_push(e, OP_DISCARD);
      msg_push_str(e, sl->session);
    }
  }
}

/* Completes the slots of act[] marked finished: plans the session saves (phase 1) and their
 * VOTE, commits what every stage wrote, calls on_done, releases stateless slots and slots whose
 * save failed (the session's next turn reloads its last committed turn), and evicts idle
 * sessions beyond the memory budget. A request completes only once its turn is committed: a
 * client that has its answer can rely on the whole session on disk. */
static int finish_slots(infer_engine_t *e, const int *act, int nact) {
  int nfin = 0;
  e->n_vote_slots = 0;
  for (int i = 0; i < nact; i++) {
    slot_t *sl = &e->slots[act[i]];
    if (!sl->finished) continue;
    nfin++;
    if (!sl->session[0]) continue;
    if (make_room(e, sl)) {
      sl->save_failed = 1;
      continue;
    }
    msg_push(e, OP_SAVE);
    msg_push(e, act[i]);
    msg_push_u64(e, sl->gen + 1);
    msg_push_str(e, sl->session);
    e->vote_slots[e->n_vote_slots++] = act[i];
    e->st.session_saves++;
  }
  if (nfin == 0) return 0;
  int nsave = e->n_vote_slots;
  e->n_vote_slots = 0;
  if (nsave) {
    msg_push(e, OP_VOTE);
    msg_push(e, nsave);
  }
  if (flush_msg(e)) return -1;
  commit_saves(e, nsave);
  for (int i = 0; i < nact; i++) {
    slot_t *sl = &e->slots[act[i]];
    if (!sl->finished) continue;
    if (sl->save_failed) {
      e->st.session_save_failures++;
      if (e->store) {
        char why[600];
        snprintf(why, sizeof why, "session '%s': %s", sl->session, sl->save_error);
        session_store_note_failure(e->store, why);
      }
      strata_warn("session '%s' was not saved: %s; the request fails and the session keeps its previous turn",
                  sl->session, sl->save_error);
    }
    complete(e, act[i]);
    pthread_mutex_lock(&e->mu);
    e->in_flight--;
    pthread_mutex_unlock(&e->mu);
    if (sl->session[0] && !sl->save_failed) {
      sl->state = SLOT_IDLE;
    } else {
      msg_push(e, OP_FREE);
      msg_push(e, act[i]);
    }
    sl->finished = 0;
    sl->cancelled = 0;
    sl->save_failed = 0;
  }
  size_t per_slot = 2 * (e->opts.bf16 ? sizeof(uint16_t) : sizeof(float)) * (size_t)e->max_nl * e->cfg.ctx * e->Cl;
  double budget = e->opts.session_mem_mb * 1024.0 * 1024.0;
  while (count_idle(e) > 0 && (double)count_idle(e) * (double)per_slot > budget) evict_lru(e);
  return flush_msg(e);
}

static int step(infer_engine_t *e);
int infer_engine_step(infer_engine_t *e) {
  if (step(e)) {
    e->failed = 1;
    return -1;
  }
  return 0;
}

static int step(infer_engine_t *e) {
  if (e->rank != 0)
    return strata_fail(e->err, sizeof e->err, "infer_engine_step is for rank 0 only");
  e->round++;
  msg_reset(e);
  e->n_vote_slots = 0;
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
  /* 1b. the other stages' outcome of the session loads just planned */
  if (check_loads(e)) return -1;
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
  if (e->msg_len == 0 && !e->msg_oom) return 0;
  e->n_recv = 0;
  if (flush_msg(e)) return -1;
  if (nact == 0 && G == 0) e->prev_len = 0; /* an empty RUN drained the pipeline */
  /* 3. tokens that reached rank 0 in this RUN (with P > 1, mostly the previous RUN's) */
  double t = strata_now_s();
  int fin[MAX_GROUPS * 2 + 32], nfin = 0;
  for (int i = 0; i < e->n_recv; i++) {
    slot_t *sl = &e->slots[e->recv_slots[i]];
    int32_t tok = sl->tokens[sl->n_tokens - 1];
    if (tok < 0)
      return strata_fail(e->err, sizeof e->err, "sampling failed (out of memory)");
    sl->n_gen++;
    e->st.tokens_generated++;
    if (sl->n_gen == 1) sl->t_first = t;
    if (sl->req->sp.want_logprobs && sl->req->on_logprob) sl->req->on_logprob(sl->req->ctx, sl->req->id, &sl->lp);
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
    fail_request(e, r, INFER_ERR_CANCELLED, "cancelled");
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
  if (!e->sessions_enabled)
    return strata_fail(err, errlen, "sessions are disabled (no session directory)");
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
  /* rank 0 removes the record and every file it sees; each stage removes its own (on a
   * directory that is not shared) */
  int d = session_delete(e->session_dir, id, err, errlen);
  if (d < 0) return -1;
  msg_reset(e);
  plan_session_delete(e, id);
  if (flush_msg(e))
    return strata_fail(err, errlen, "%s", e->err);
  if (d == 1 && s < 0) {
    snprintf(err, errlen, "no session '%s'", id);
    return 1;
  }
  return 0;
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
  if (e->store) {
    session_store_health_t h;
    session_store_health(e->store, &h);
    out->sessions_on_disk = h.sessions;
    out->session_disk_bytes = h.bytes;
    out->session_disk_quota_bytes = h.quota_bytes;
    out->session_disk_evictions = h.evictions;
    out->session_store_degraded = h.degraded;
    snprintf(out->session_store_error, sizeof out->session_store_error, "%s", h.last_error);
  }
}

void infer_engine_shutdown(infer_engine_t *e) {
  if (!e) return;
  if (e->rank == 0) {
    msg_reset(e);
    if (e->P > 1) { /* an empty RUN collects the tokens still in the pipeline */
      msg_push(e, OP_RUN);
      msg_push(e, 0);
    }
    msg_push(e, OP_SHUTDOWN);
    /* after a fatal error the job is ending: a dead or stuck rank would not take the message */
    if (!e->failed && flush_msg(e)) strata_warn("infer: shutdown: %s", e->err);
    for (int i = 0; i < e->nslots; i++)
      if (e->slots[i].req) {
        fail_request(e, e->slots[i].req, INFER_ERR_CANCELLED, "shutting down");
        e->slots[i].req = NULL;
      }
    req_node_t *r = e->q_head;
    while (r) {
      req_node_t *n = r->next;
      fail_request(e, r, INFER_ERR_CANCELLED, "shutting down");
      r = n;
    }
    e->q_head = e->q_tail = NULL;
  }
  if (e->n_tok_reqs && !e->failed) wait_token_sends(e);
  engine_free(e);
}
