/* session.h -- persistent generation sessions on disk: ID validation, the per-stage session
 * files (tokens + KV cache), the commit record that makes a turn durable across all stages,
 * verified reads, list and delete.
 *
 * A session ID is 1 to 64 characters of [A-Za-z0-9_-]; anything else (empty, "../x", "a/b",
 * 65 characters) is refused before any path is built. A session of a job of P pipeline stages
 * and T tensor-parallel ranks per stage has one part per rank, (stage s, tensor-parallel rank t),
 * each holding the KV cache of its layers and its heads. In the session directory:
 *     <ID>.session                   the commit record (written by rank 0, last)
 *     <ID>.stage<s>-of-<P>.kv        part (s, 0) of the committed turn when T = 1
 *     <ID>.stage<s>-of-<P>.tp<t>-of-<T>.kv   part (s, t) when T > 1
 *     <ID>.<part>.kv.next            a part of a turn being saved (until committed)
 * Saving turn g (a two-phase commit):
 *   1. every rank writes its part's .kv.next with generation g in its header (atomically:
 *      temporary file, fsync, rename, fsync of the directory) and reports its checksum and size;
 *   2. only when every rank succeeded, rank 0 writes the commit record naming g, T and every
 *      part's checksum and size (atomically) -- this is the moment the turn becomes durable;
 *   3. each rank renames its .kv.next over its .kv (session_promote).
 * A crash or a failed write anywhere leaves the previous commit record, whose files are intact:
 * the .kv files, or -- for a crash between steps 2 and 3 -- the .kv.next files the record names,
 * which a reader takes instead ("roll forward"). A failed turn's .kv.next is removed
 * (session_discard_next) or overwritten by the next save.
 * Stage file format (little-endian, version SESSION_FORMAT_VERSION):
 *     header  session_header_t (magic "STRATAKV", version, model identity, model shape, stage,
 *             stages, layer range, n_tokens, n_kv, tensor-parallel rank and size, generation,
 *             the KV element type: fp32 or bf16)
 *     tokens  int32[n_tokens]   the whole context so far (part (0, 0) only; 0 elsewhere)
 *     kv      for each layer of the stage: K [n_kv * Cl], then V [n_kv * Cl] (float, or uint16
 *             bf16 bit patterns in a --precision bf16 job's file: half the bytes), where
 *             Cl is the cache width: C / T of a GPT-2 part's heads (gpt2_local_dim), kv_heads / T
 *             x head size of a Llama part's kv heads (llama_kv_dim)
 *     trailer uint64 XXH64 (seed 0) of every byte before it (the file's checksum)
 * n_kv <= n_tokens: the keys and values of the first n_kv context positions (the last sampled
 * token is in the context but has not been through the model yet).
 * Commit record format: session_commit_t's fixed part, then for each part (in rank order
 * s * T + t) uint64 checksum and uint64 bytes of its file, then an XXH64 trailer.
 * Files of an older format version (2: before the KV precision was recorded) are refused by version.
 * Reading refuses a file of another model (identity = hash of the checkpoint's config and the
 * XXH64 of its weight files, from train_state.pb), of another stage or tensor-parallel layout
 * (a KV cache split over T ranks by heads is not re-sliced for another T), of another KV
 * precision (a bf16 session is resumed with --precision bf16 only: not converted), of another
 * generation or checksum than the commit record names, or whose bytes fail the checksum, and
 * says which (session_status_t) and why (err).
 */
#ifndef STRATA_SESSION_H
#define STRATA_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "kv_cache.h"

#define SESSION_ID_MAX 64
#define SESSION_FORMAT_VERSION 3
#define SESSION_MAX_PARTS 256             /* part files (T x P) a commit record can name */
#define SESSION_DIR_DEFAULT "sessions" /* used when neither --session-dir nor a checkpoint parent */

typedef struct {
  char magic[8];        /* "STRATAKV" */
  uint32_t version;     /* SESSION_FORMAT_VERSION */
  uint32_t header_bytes;/* sizeof(session_header_t) */
  uint64_t model_id;    /* session_model_id of the checkpoint that made it */
  int32_t vocab, ctx, layers, heads, dim; /* model shape */
  int32_t stage, stages;                  /* which file of how many */
  int32_t layer_begin, layer_end;         /* the stage's layers */
  int32_t n_tokens;     /* context tokens stored (stage 0 only) */
  int32_t n_kv;         /* positions of K/V stored */
  int16_t tp_rank;      /* t: this part's tensor-parallel rank (heads [t*H/T, (t+1)*H/T)) */
  int16_t tp_size;      /* T: tensor-parallel ranks per stage; 0 (older files) means 1 */
  int64_t saved_unix_s; /* wall-clock time of the save (informational) */
  uint64_t generation;  /* the turn this file belongs to (1 = the session's first save) */
  int32_t kv_bf16;      /* 1: the K/V are bf16 (uint16) of a --precision bf16 job; 0: fp32 */
  int32_t reserved;     /* 0 */
} session_header_t;

/* The commit record of a session: which generation is durable, and each part's file. */
typedef struct {
  uint64_t model_id;    /* the checkpoint's identity */
  int32_t stages;       /* P of the job that saved it */
  int32_t tp;           /* T of the job that saved it (>= 1; stages * tp <= SESSION_MAX_PARTS) */
  int32_t n_tokens;     /* context length */
  int32_t n_kv;         /* cached positions */
  uint64_t generation;  /* the committed turn */
  int64_t saved_unix_s; /* when it was committed */
  uint64_t sum[SESSION_MAX_PARTS];   /* checksum (trailer) of part s * tp + t's file */
  uint64_t bytes[SESSION_MAX_PARTS]; /* size of part s * tp + t's file */
} session_commit_t;

/* Why a stage file could not be read or written (carried between ranks as a number). */
typedef enum {
  SESSION_OK = 0,
  SESSION_MISSING,  /* the file the commit record names does not exist */
  SESSION_CORRUPT,  /* truncated, wrong size, bad magic, or fails its checksum */
  SESSION_STALE,    /* a file of another turn than the commit record names (stages disagree) */
  SESSION_MISMATCH, /* another model, format version or stage layout */
  SESSION_IO,       /* the file system refused (errno says why: ENOSPC, EROFS, EIO ...) */
} session_status_t;

/* "missing", "corrupt", "from another turn", "for another model or layout", "I/O error". */
const char *session_status_name(session_status_t st);

/* 0 if id is a valid session ID, else -1 with a message quoting it and the rule. */
int session_id_validate(const char *id, char *err, size_t errlen);

/* The default session directory of a checkpoint: <checkpoint's parent>/sessions (the run
 * directory's sessions/), or ./sessions when the checkpoint path has no parent. */
void session_default_dir(char *buf, size_t len, const char *ckpt_dir);
/* The file of part (stage, t) of a stages x tp job: <dir>/<id>.stage<s>-of-<P>.kv when tp <= 1,
 * else <dir>/<id>.stage<s>-of-<P>.tp<t>-of-<T>.kv. */
void session_path(char *buf, size_t len, const char *dir, const char *id, int stage, int stages, int t, int tp);
/* <dir>/<id>.session */
void session_commit_path(char *buf, size_t len, const char *dir, const char *id);
/* Identity of a checkpoint: hash of cfg and the XXH64 of its model*.safetensors files as
 * recorded in train_state.pb. */
int session_model_id(const char *ckpt_dir, const gpt2_config_t *cfg, uint64_t *out, char *err,
                     size_t errlen);
/* Creates dir (and parents) if missing; refuses a path that exists and is not a directory. */
int session_make_dir(const char *dir, char *err, size_t errlen);

/* Bytes of a part file holding n_tokens tokens and n_kv positions of nl layers of width C (the
 * part's KV width, C / T). */
uint64_t session_file_bytes(int n_tokens, int n_kv, int nl, int C);
/* The same for a part whose K/V are bf16 when bf16 is 1. */
uint64_t session_file_bytes_dtype(int n_tokens, int n_kv, int nl, int C, int bf16);
/* Bytes of the commit record of a session of `parts` part files (stages x T). */
uint64_t session_commit_bytes(int parts);

/* Phase 1: writes part (hdr->stage, hdr->tp_rank)'s .kv.next for turn `generation` atomically.
 * tokens may be NULL when n_tokens == 0; the cache's first c->n_pos positions are stored. hdr
 * supplies model_id, shape, stage, stages, the layer range, tp_rank and tp_size (kv_bf16 comes from c). On success returns SESSION_OK with the
 * file's checksum and size; on failure SESSION_IO with *errno_out and err. */
session_status_t session_write_stage(const char *dir, const char *id, const session_header_t *hdr,
                                     uint64_t generation, const int32_t *tokens, int n_tokens,
                                     const kv_cache_t *c, uint64_t *sum_out, uint64_t *bytes_out,
                                     int *errno_out, char *err, size_t errlen);
/* Phase 2 (stage 0's rank): writes the commit record atomically. 0, or -1 with err and
 * *errno_out. */
int session_commit_write(const char *dir, const char *id, const session_commit_t *rec, int *errno_out,
                         char *err, size_t errlen);
/* Reads and verifies the commit record: 0 read, 1 there is none, -1 unreadable or corrupt (err). */
int session_commit_read(const char *dir, const char *id, session_commit_t *out, char *err, size_t errlen);
/* Phase 3: renames part (stage, t)'s .kv.next over its .kv if the .kv.next belongs to
 * `generation`. Returns 0 (also when there is nothing to rename), -1 with err. */
int session_promote(const char *dir, const char *id, int stage, int stages, int t, int tp, uint64_t generation,
                    char *err, size_t errlen);
/* Removes part (stage, t)'s .kv.next (a turn that was not committed). Missing is not an error. */
void session_discard_next(const char *dir, const char *id, int stage, int stages, int t, int tp);

/* Reads part (expect->stage, expect->tp_rank) of the committed turn rec->generation into c (c->n_pos =
 * n_kv; its capacity must suffice; its element type must be the file's, else SESSION_MISMATCH) and, when tokens_out is non-NULL, the tokens into a malloc'd
 * array. Takes the .kv, or the .kv.next when that is the one the record names (and promotes
 * it). Verifies header, generation, size and checksum against rec. SESSION_OK, or another
 * status with err naming the file and the reason. */
session_status_t session_read_stage(const char *dir, const char *id, const session_header_t *expect,
                                    const session_commit_t *rec, kv_cache_t *c, int32_t **tokens_out,
                                    int *n_tokens_out, char *err, size_t errlen);

/* One session found by session_list. */
typedef struct {
  char id[SESSION_ID_MAX + 1];
  int stages;        /* P of the job that saved it */
  int tp;            /* T of the job that saved it */
  int n_tokens;      /* context length */
  int64_t saved_unix_s;
  uint64_t generation; /* committed turns */
  uint64_t bytes;    /* bytes of its committed part files and commit record */
} session_info_t;
/* Lists the committed sessions in dir (by their commit records; unreadable records are
 * skipped); *out is malloc'd (free it). A missing directory lists nothing. */
int session_list(const char *dir, session_info_t **out, int *n_out, char *err, size_t errlen);
/* Number of commit records in dir, by file name alone (cheap enough for a metrics gauge). A
 * missing or unreadable directory counts 0. */
int session_count(const char *dir);
/* 1 if dir holds stage files of id but no commit record (left by an older Strata, whose files
 * had none, or by hand): such a session cannot be restored safely. */
int session_uncommitted_files(const char *dir, const char *id);
/* Removes every file of session id in dir: the commit record first (so a crash part-way leaves
 * nothing that looks restorable), then every stage's files. 1 if there was none, 0 if removed,
 * -1 with err. */
int session_delete(const char *dir, const char *id, char *err, size_t errlen);
/* Removes part (stage, t)'s files of session id (.kv and .kv.next): each rank's share of a delete. */
void session_delete_stage(const char *dir, const char *id, int stage, int stages, int t, int tp);

#endif /* STRATA_SESSION_H */
