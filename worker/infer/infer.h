/* infer.h -- the sharded generation engine: a transformer split into P pipeline stages of T
 * tensor-parallel ranks each (world = T x P ranks, rank = stage * T + t, layers balanced as in
 * training with D = 1), a KV cache per sequence per rank, continuous batching of concurrent
 * requests, and persistent sessions.
 *
 * Model families. The checkpoint's config.json picks the family (infer_model.h): GPT-2 and a
 * Llama checkpoint (strata train --arch llama) both run on any layout below that the model's
 * shapes allow (Llama: T also divides the kv heads and the SwiGLU width), with everything else
 * the same: the KV cache (Llama's holds only the rank's kv heads, kv_heads / T * head size wide,
 * keys after RoPE), continuous batching, sampling and sessions.
 *
 * Roles. Rank 0 is the coordinator and stage 0: it holds the request queue, decides every
 * round, embeds tokens, and receives the sampled tokens. Stage s > 0 receives the residual
 * stream (rows, C) of a group of sequences from stage s-1 (coll_recv), runs its layers, and
 * sends on (coll_isend); the last stage computes logits and samples (sampler.h) and sends the
 * tokens back to rank 0. All ranks move in lockstep: rank 0 sends each round's plan to every
 * rank and every rank executes it; ranks != 0 do this in infer_worker_loop(). Between plans a
 * worker waits without a deadline and without spinning; rank 0's heartbeat (infer_engine_tick)
 * lets each side notice the other's death within opts.liveness_s.
 *
 * Tensor parallelism (opts.tp = T > 1, Megatron-LM's split, gpt2.h). Each stage is a TP group
 * of T ranks that hold 1/T of every matrix (heads [t*H/T, (t+1)*H/T) of attention, a slice of
 * the MLP and of the vocabulary) and make the same gpt2_forward_kv calls, since the plan reaches
 * every rank. Rank 0 (stage 0, t = 0) stays the coordinator and broadcasts each group's input
 * tokens over stage 0's TP group. The residual stream between stages is whole and identical on
 * every TP rank, so rank (s, t) sends it to (s+1, t): each rank receives its own copy and no
 * broadcast follows the receive. The last stage all-gathers its logits over its TP group and
 * assembles the whole vocabulary; its TP rank 0 samples (greedy or seeded, on the same full
 * logits as T = 1) and sends the tokens to rank 0. A KV cache holds only the rank's heads (C/T
 * wide). The checkpoint holds whole tensors; each rank loads its stage and slices its part, so
 * any checkpoint serves on any T dividing the heads. The heartbeat covers every rank.
 *
 * Precision (opts.bf16, --precision bf16). Every rank's KV caches are bf16 (kv_cache.h: half
 * the bytes in infer_stats_t.kv_cache_bytes, the session memory budget and the session files,
 * which record it so that a bf16 session resumes only in bf16: SESSION_MISMATCH, a conflict,
 * otherwise) and every stage's matrix products take bf16-rounded inputs (gpt2_set_matmul_dtype,
 * llama_set_matmul_dtype). Rank 0 logs the path once (infer_precision_describe). fp32, the
 * default, computes exactly what it did before bf16 existed.
 *
 * One round (infer_engine_step) advances every in-flight sequence by one token: a sequence
 * that has just been admitted feeds its whole uncached prompt (prefill), the others their last
 * sampled token (decode). Sequences are spread over P groups (a sequence keeps its group) that
 * follow one another through the pipeline: while stage 1 runs group 0, stage 0 runs group 1.
 * Rounds overlap too: the tokens of group g come back to rank 0 while later groups are still in
 * the pipeline, and rank 0 receives them just before it runs group g of the next round, so with
 * P or more sequences in flight every stage stays busy (with P > 1 a token therefore reaches
 * on_token one round after it was sampled). New requests join between rounds (continuous
 * batching), up to opts.max_batch sequences in flight.
 *
 * Sessions. A request with a session ID continues that session: its prompt is appended to the
 * session's context and only the positions not yet in the KV cache are computed. When a
 * session request completes, every rank writes its part of the turn (its layers, its heads)
 * and rank 0 commits it (the two-phase save of session.h), so a new process with the same
 * session directory, checkpoint, T and P continues where the last left off; a session saved
 * with another T or P is refused (INFER_ERR_CONFLICT, naming both layouts): a KV cache split by
 * heads is not re-sliced. A save that fails on any stage (a full
 * or read-only disk) fails only its request (INFER_ERR_STORAGE); the session keeps its previous
 * committed turn. A session whose files are missing, corrupt or disagree fails only its
 * request (INFER_ERR_SESSION_DATA, naming the stage). Idle sessions stay in memory up to
 * opts.session_mem_mb of KV cache per stage; beyond that the least recently used are dropped
 * from memory (their files are current) and reloaded transparently on next use. With
 * opts.session_disk_mb, committed sessions on disk are kept within that quota by deleting the
 * least recently used (a log line each).
 * Requests for a session that is busy wait in the queue until it is free. A context that would
 * pass n_ctx (history + prompt + max_tokens > n_ctx) fails the request with a message naming
 * the lengths; nothing is truncated.
 *
 * Threads. infer_submit and infer_engine_idle may be called from any thread (the queue is
 * protected by a mutex). Every other call, and all callbacks, happen on the thread that calls
 * infer_engine_step (rank 0's main loop). Callbacks must not call infer_engine_step.
 *
 * Usage (a server loop; the CLI does the same with its prompts)
 *    coll_comm_t *comm;  coll_comm_create(MPI_COMM_WORLD, &ccfg, &comm);
 *    infer_opts_t o = infer_opts_default();
 *    infer_engine_t *e;
 *    if (infer_engine_create(ckpt_dir, comm, &o, &e, err, sizeof err)) ...   // every rank
 *    if (coll_rank(comm) != 0) { rc = infer_worker_loop(e); infer_engine_shutdown(e); }
 *    else {
 *      infer_submit(e, &req, on_token, on_done, ctx, &id, err, sizeof err); // any thread
 *      while (running) { if (infer_engine_idle(e)) wait_for_work(); else infer_engine_step(e); }
 *      infer_engine_shutdown(e);                                           // releases workers
 *    }
 */
#ifndef STRATA_INFER_H
#define STRATA_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "strata/coll.h"
#include "checkpoint.h"
#include "gpt2.h"
#include "sampler.h"

#define INFER_MAX_BATCH_DEFAULT 16   /* STRATA_INFER_MAX_BATCH: sequences in flight */
#define INFER_SESSION_MEM_MB_DEFAULT 1024.0 /* STRATA_INFER_SESSION_MEM_MB: idle-session KV budget per stage */
#define INFER_MAX_QUEUE 4096         /* submitted but not admitted requests */

#define INFER_HEARTBEAT_S_DEFAULT 1.0 /* STRATA_INFER_HEARTBEAT_S */
#define INFER_LIVENESS_S_DEFAULT 8.0  /* STRATA_INFER_LIVENESS_S */

typedef struct {
  int max_batch;          /* sequences in flight at once (>= 1) */
  const char *session_dir;/* where session files live; NULL = sessions disabled */
  double session_mem_mb;  /* MiB of KV cache per stage idle sessions may keep in memory */
  double session_disk_mb; /* MiB the committed sessions may take on disk, all stages; 0 = no quota
                             (STRATA_INFER_SESSION_DISK_MB) */
  double heartbeat_s;     /* rank 0 sends a heartbeat after this long without a plan (> 0) */
  double liveness_s;      /* a rank silent for this long is dead: the job ends naming it
                             (> heartbeat_s) */
  int threads;            /* GEMM threads per rank */
  int recompute;          /* benchmark baseline: no KV cache reuse, every round recomputes the
                             whole context (sessions then only keep tokens) */
  int tp;                 /* T: tensor-parallel ranks per stage (--tp; 0 or 1 = none); T divides
                             the heads and the number of ranks */
  int bf16;               /* --precision bf16: every matrix product of the forward on
                             bf16-rounded inputs with fp32 accumulation (gpt2_set_matmul_dtype,
                             llama_set_matmul_dtype), and every KV cache stored as bf16
                             (kv_cache.h: half the bytes, in kv_cache_bytes, the session memory
                             budget and the session files, which record it: a bf16 session resumes
                             only with bf16). 0 (default) = fp32 throughout */
  const char *env_error;  /* set by infer_opts_default when a STRATA_INFER_* value does not
                             parse; infer_engine_create then fails with it */
} infer_opts_t;

/* Defaults with the STRATA_INFER_* environment overrides applied. */
infer_opts_t infer_opts_default(void);

/* Parses --precision for generation: "fp32" -> 0, "bf16" -> 1, and "bf16-sr" -> 1 (stochastic
 * rounding is a training mode; its forward is bf16's). 0, or -1 for anything else. */
int infer_parse_precision(const char *s, int *bf16);
/* One line naming the path --precision takes on this machine, e.g. "precision bf16: oneDNN dnnl_gemm_bf16bf16f32 matrix products, bf16 KV
 * cache" or "precision fp32: fp32 matrix products, fp32 KV cache", for the log at start. */
void infer_precision_describe(int bf16, char *buf, size_t len);

/* One generated token's log-probabilities (sampler_logprobs, on the last stage's full logits). */
#define INFER_TOP_LOGPROBS_MAX SAMPLER_TOP_LOGPROBS_MAX
typedef struct {
  int32_t token;                          /* the token sampled */
  float logprob;                          /* its log-probability */
  int n_top;                              /* sampling.top_logprobs alternatives follow */
  int32_t top_ids[INFER_TOP_LOGPROBS_MAX];/* most likely first */
  float top_lps[INFER_TOP_LOGPROBS_MAX];
} infer_logprob_t;
typedef void (*infer_logprob_fn)(void *ctx, uint64_t id, const infer_logprob_t *lp);

typedef struct {
  const int32_t *prompt;      /* token ids; copied by infer_submit */
  int n_prompt;               /* >= 1, or 0 for a session follow-up that only continues */
  int max_tokens;             /* tokens to generate (>= 1) */
  sampler_params_t sampling;  /* temperature 0 = greedy; penalties; want_logprobs / top_logprobs */
  const char *session;        /* session ID or NULL / "" for a stateless request; copied */
  infer_logprob_fn on_logprob;/* with sampling.want_logprobs: called with each token's log-probabilities
                                 just before on_token (NULL: none) */
} infer_request_t;

/* Why a request failed (infer_submit's return value, infer_result_t.error_kind). */
typedef enum {
  INFER_OK = 0,
  INFER_ERR_INVALID,      /* the request is wrong: bad tokens, context too long, bad id (HTTP 400) */
  INFER_ERR_BUSY,         /* the queue is full (429) */
  INFER_ERR_CONFLICT,     /* the session belongs to another job shape or model, or has files
                             without a commit record (409) */
  INFER_ERR_SESSION_DATA, /* a stage's session file is missing, corrupt or from another turn (422) */
  INFER_ERR_STORAGE,      /* the turn was generated but its save failed on some stage (507) */
  INFER_ERR_INTERNAL,     /* out of memory, a read error of the disk (500) */
  INFER_ERR_CANCELLED,    /* cancelled before it started, or the engine shut down */
} infer_error_t;

/* What a finished request reports to its done callback (pointers valid during the call). */
typedef struct {
  int ok;                     /* 1 completed, 0 failed (error says why) */
  infer_error_t error_kind;   /* INFER_OK when ok */
  char error[512];
  const int32_t *tokens;      /* the generated tokens */
  int n_tokens;
  int n_prompt;               /* prompt tokens of this request */
  int cached_tokens;          /* context positions reused from the session's KV cache */
  int context_tokens;         /* session context length after the request (history + new) */
  const char *session_source; /* "none", "new", "memory" or "disk" */
  const char *finish_reason;  /* "length" (max_tokens reached), "cancelled" (infer_cancel),
                                 "error" (ok = 0) */
  double ttft_s;              /* submit to first token */
  double total_s;             /* submit to last token */
  double tokens_per_s;        /* n_tokens / total_s */
} infer_result_t;

typedef void (*infer_token_fn)(void *ctx, uint64_t id, int32_t token);
typedef void (*infer_done_fn)(void *ctx, uint64_t id, const infer_result_t *res);

typedef struct infer_engine infer_engine_t;

/* The layout check of infer_engine_create, for callers that refuse bad input early (mc from
 * ckpt_read_model_config): T >= 1 divides the model's heads (Llama: also its kv heads and SwiGLU
 * width) and the world, and world / T stages <= layers. 0, or -1 with one sentence naming the
 * numbers and the fix. */
int infer_check_layout(const ckpt_model_config_t *mc, int world, int tp, char *err, size_t errlen);

/* Collective over comm (every rank): reads DIR/config.json (GPT-2 or Llama), splits the layers over
 * coll_size(comm) / opts.tp stages of opts.tp ranks (layout balancing, D = 1), loads this
 * rank's part from the checkpoint and identifies the model for sessions. Fails (same message on
 * every rank) for a missing or bad checkpoint, a bad layout (infer_check_layout), or bad
 * options. */
int infer_engine_create(const char *ckpt_dir, coll_comm_t *comm, const infer_opts_t *opts,
                        infer_engine_t **out, char *err, size_t errlen);

/* Rank 0, any thread: queues a request. Validates it first (prompt tokens within the
 * vocabulary, max_tokens >= 1, sampling parameters, session ID syntax, prompt + max_tokens <=
 * n_ctx); returns the infer_error_t (INFER_ERR_INVALID, INFER_ERR_BUSY ...) with the reason in
 * err and calls nothing. Otherwise returns INFER_OK (0), sets *id, and later calls on_token
 * (may be NULL) once per generated token and on_done exactly once. */
int infer_submit(infer_engine_t *e, const infer_request_t *req, infer_token_fn on_token,
                 infer_done_fn on_done, void *ctx, uint64_t *id, char *err, size_t errlen);

/* Rank 0: one round (admit queued requests, advance every in-flight sequence by one token,
 * complete finished ones, save sessions). Returns 0, or -1 on a fatal error (err text in
 * infer_engine_error) after which the job must end. */
int infer_engine_step(infer_engine_t *e);

/* Rank 0, any thread: 1 when nothing is queued or in flight. */
int infer_engine_idle(infer_engine_t *e);

/* Rank 0, the stepping thread: the heartbeat. Call it often (every pass of the serving loop,
 * idle or not; it costs a clock read and a poll): it sends a heartbeat plan when no plan went
 * out for opts.heartbeat_s and checks the workers' answers. Returns 0, or -1 (message in
 * infer_engine_error) when a worker has not answered for opts.liveness_s: the job must end. */
int infer_engine_tick(infer_engine_t *e);

/* Ranks != 0: executes rank 0's rounds until rank 0 calls infer_engine_shutdown. 0 on a clean
 * shutdown, -1 on error (message logged). */
int infer_worker_loop(infer_engine_t *e);

/* Every rank, at the end: rank 0 tells the workers to stop (their infer_worker_loop returns);
 * then the engine is freed. Requests still queued or in flight are failed ("shutting down"). */
void infer_engine_shutdown(infer_engine_t *e);

/* The message of the last fatal error. */
const char *infer_engine_error(const infer_engine_t *e);

/* Rank 0, the stepping thread: cancels request id. A queued request fails at once (on_done
 * with ok = 0, error "cancelled"); one in flight finishes at the start of the next round with
 * the tokens it has (ok = 1, finish_reason "cancelled"; a session keeps them). Returns 1 if
 * the request was found, 0 if it is unknown or already done (a no-op). */
int infer_cancel(infer_engine_t *e, uint64_t id);

/* Rank 0, the stepping thread: deletes a session from memory and disk. 0 deleted, 1 no such
 * session, 2 in use (a request in flight or queued: retry later), -1 error (err). */
int infer_session_delete(infer_engine_t *e, const char *id, char *err, size_t errlen);
/* The session directory (list it with session_list, session.h), or NULL if sessions are off.
 * Every session is on disk after each of its requests, so the listing is complete. */
const char *infer_session_dir(const infer_engine_t *e);

/* Counters for metrics (rank 0). */
typedef struct {
  uint64_t requests_done, requests_failed, tokens_generated, prompt_tokens_computed,
      prompt_tokens_cached;
  int in_flight, queued, sessions_resident;
  uint64_t session_loads, session_evictions, session_saves;
  size_t kv_cache_bytes; /* this rank's allocated KV cache bytes */
  /* the session store on disk (zero when sessions are off) */
  int sessions_on_disk;           /* committed sessions */
  uint64_t session_disk_bytes;    /* their bytes, all stages */
  uint64_t session_disk_quota_bytes; /* 0 = no quota */
  uint64_t session_disk_evictions;   /* evicted to keep within the quota */
  uint64_t session_save_failures;    /* saves that failed (the requests got INFER_ERR_STORAGE) */
  int session_store_degraded;        /* 1 while the most recent save failed */
  char session_store_error[256];     /* why it failed */
} infer_stats_t;
void infer_engine_stats(infer_engine_t *e, infer_stats_t *out);

/* Model shape (vocab, ctx, layers, heads, dim; either family) (any rank). */
const gpt2_config_t *infer_engine_config(const infer_engine_t *e);
/* The model family: "gpt2" or "llama" (any rank). */
const char *infer_engine_family(const infer_engine_t *e);

#endif /* STRATA_INFER_H */
