/* session.h -- persistent generation sessions on disk: ID validation, the per-stage session
 * file (tokens + KV cache), atomic write, verified read, list and delete.
 *
 * A session ID is 1 to 64 characters of [A-Za-z0-9_-]; anything else (empty, "../x", "a/b",
 * 65 characters) is refused before any path is built. A session of a P-stage job is P files in
 * the session directory, one per stage, each written by that stage's rank:
 *     <dir>/<ID>.stage<s>-of-<P>.kv
 * File format (little-endian, version SESSION_FORMAT_VERSION):
 *     header  session_header_t (magic "STRATAKV", version, model identity, model shape, stage,
 *             stages, layer range, n_tokens, n_kv, C)
 *     tokens  int32[n_tokens]   the whole context so far (stage 0's file only; 0 elsewhere)
 *     kv      for each layer of the stage: K float[n_kv * C], then V float[n_kv * C]
 *     trailer uint64 XXH64 (seed 0) of every byte before it
 * n_kv <= n_tokens: the keys and values of the first n_kv context positions (the last sampled
 * token is in the context but has not been through the model yet).
 * Writing goes to a temporary file in the same directory, fsync, rename over the old file,
 * fsync of the directory: a crash leaves the old or the new file, never a torn one. Reading
 * refuses a file of another model (identity = hash of the checkpoint's config and the XXH64
 * of its weight files, from train_state.pb), of another stage layout, or with a bad checksum,
 * and names the file and the reason.
 * All functions return 0 or -1 with a message in err.
 */
#ifndef STRATA_SESSION_H
#define STRATA_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "kv_cache.h"

#define SESSION_ID_MAX 64
#define SESSION_FORMAT_VERSION 1
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
  int64_t saved_unix_s; /* wall-clock time of the save (informational) */
} session_header_t;

/* 0 if id is a valid session ID, else -1 with a message quoting it and the rule. */
int session_id_validate(const char *id, char *err, size_t errlen);

/* The default session directory of a checkpoint: <checkpoint's parent>/sessions (the run
 * directory's sessions/), or ./sessions when the checkpoint path has no parent. */
void session_default_dir(char *buf, size_t len, const char *ckpt_dir);
/* <dir>/<id>.stage<s>-of-<P>.kv */
void session_path(char *buf, size_t len, const char *dir, const char *id, int stage, int stages);
/* Identity of a checkpoint: hash of cfg and the XXH64 of its model*.safetensors files as
 * recorded in train_state.pb. */
int session_model_id(const char *ckpt_dir, const gpt2_config_t *cfg, uint64_t *out, char *err,
                     size_t errlen);
/* Creates dir (and parents) if missing. */
int session_make_dir(const char *dir, char *err, size_t errlen);

/* Writes stage `stage`'s file atomically. tokens may be NULL when n_tokens == 0. The cache's
 * first n_kv = c->n_pos positions are stored. hdr supplies model_id, shape, stage, stages and
 * the layer range (magic, version, counts and time are filled in). */
int session_write(const char *dir, const char *id, const session_header_t *hdr,
                  const int32_t *tokens, int n_tokens, const kv_cache_t *c, char *err,
                  size_t errlen);
/* Reads only the header of stage `stage`'s file and checks it against `expect` (model_id,
 * shape, stages, layer range). Returns 1 if the file does not exist, 0 if read, -1 on error. */
int session_peek(const char *dir, const char *id, const session_header_t *expect,
                 session_header_t *out, char *err, size_t errlen);
/* Reads stage `expect->stage`'s file into c (c->n_pos = n_kv; capacity must suffice) and, when
 * tokens_out is non-NULL, the tokens into a malloc'd array. Verifies the checksum. */
int session_read(const char *dir, const char *id, const session_header_t *expect, kv_cache_t *c,
                 int32_t **tokens_out, int *n_tokens_out, char *err, size_t errlen);

/* One session found by session_list. */
typedef struct {
  char id[SESSION_ID_MAX + 1];
  int stages;        /* P of the job that wrote it */
  int n_tokens;      /* context length */
  int64_t saved_unix_s;
  uint64_t bytes;    /* total bytes of its files */
} session_info_t;
/* Lists the sessions in dir (by their stage-0 files); *out is malloc'd (free it). A missing
 * directory lists nothing. */
int session_list(const char *dir, session_info_t **out, int *n_out, char *err, size_t errlen);
/* Number of sessions in dir, counted by their stage-0 file names alone (no stat, no read: cheap
 * enough for a metrics gauge; a session saved by jobs of two different P counts twice). A
 * missing or unreadable directory counts 0. */
int session_count(const char *dir);
/* Number of stages of the job that saved session id in dir (from its stage-0 file name), or 0
 * if there is none. Lets a job with another P name the problem instead of starting afresh. */
int session_saved_stages(const char *dir, const char *id);
/* Removes every file of session id in dir. Returns 1 if there was none, 0 if removed. */
int session_delete(const char *dir, const char *id, char *err, size_t errlen);

#endif /* STRATA_SESSION_H */
