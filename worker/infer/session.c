/* session.c -- session IDs, stage files and commit records (atomic writes, verified reads
 * with roll-forward), list and delete (see session.h for the two-phase commit). */
#include "session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "checkpoint.h"
#include "log.h"
#include "rng.h"
#include "strata_proto.h"
#include "util.h"

static const char session_magic[8] = {'S', 'T', 'R', 'A', 'T', 'A', 'K', 'V'};
/* tp_rank and tp_size took what was padding before saved_unix_s; version 3 added kv_bf16 (and
 * a reserved word) at the end: version 2 files (88 bytes of header) are refused by version */
_Static_assert(sizeof(session_header_t) == 96, "the session header's size is part of the file format");

int session_id_validate(const char *id, char *err, size_t errlen) {
  size_t n = id ? strlen(id) : 0;
  int ok = n >= 1 && n <= SESSION_ID_MAX;
  for (size_t i = 0; ok && i < n; i++) {
    char c = id[i];
    ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  }
  if (!ok) {
    snprintf(err, errlen,
             "invalid session ID '%.80s%s' (%zu characters): use 1 to %d characters of A-Z a-z 0-9 _ -",
             id ? id : "", n > 80 ? "..." : "", n, SESSION_ID_MAX);
    return -1;
  }
  return 0;
}

static const char commit_magic[8] = {'S', 'T', 'R', 'A', 'T', 'A', 'S', 'C'};

const char *session_status_name(session_status_t st) {
  switch (st) {
  case SESSION_OK: return "ok";
  case SESSION_MISSING: return "missing";
  case SESSION_CORRUPT: return "corrupt";
  case SESSION_STALE: return "from another turn than the commit record names";
  case SESSION_MISMATCH: return "for another model, format or stage layout";
  default: return "unreadable or unwritable (I/O error)";
  }
}

void session_path(char *buf, size_t len, const char *dir, const char *id, int stage, int stages, int t, int tp) {
  if (tp <= 1) snprintf(buf, len, "%s/%s.stage%d-of-%d.kv", dir, id, stage, stages);
  else snprintf(buf, len, "%s/%s.stage%d-of-%d.tp%d-of-%d.kv", dir, id, stage, stages, t, tp);
}

void session_commit_path(char *buf, size_t len, const char *dir, const char *id) {
  snprintf(buf, len, "%s/%s.session", dir, id);
}

static void next_path(char *buf, size_t len, const char *dir, const char *id, int stage, int stages, int t, int tp) {
  session_path(buf, len, dir, id, stage, stages, t, tp);
  size_t n = strlen(buf);
  if (n + 5 < len) memcpy(buf + n, ".next", 6);
}

/* T of a header or commit record: 0 (written before tensor parallelism) means 1. */
static int tp_of(int tp) { return tp < 1 ? 1 : tp; }

int session_model_id(const char *ckpt_dir, const gpt2_config_t *cfg, uint64_t *out, char *err,
                     size_t errlen) {
  strata_train_state_t *st = malloc(sizeof *st);
  if (!st) return strata_fail(err, errlen, "out of memory for the train state of %s", ckpt_dir);
  if (ckpt_read_state(ckpt_dir, st, 0, err, errlen)) {
    free(st);
    return -1;
  }
  uint64_t h = rng_mix64(0x5e55104ULL);
  const int32_t shape[5] = {cfg->vocab, cfg->ctx, cfg->layers, cfg->heads, cfg->dim};
  for (int i = 0; i < 5; i++) h = rng_mix64(h ^ (uint64_t)(uint32_t)shape[i]);
  int nweights = 0;
  for (int i = 0; i < st->n_files; i++) {
    if (strncmp(st->files[i].name, CKPT_MODEL_PREFIX, strlen(CKPT_MODEL_PREFIX)) != 0) continue;
    if (strstr(st->files[i].name, ".safetensors") == NULL || strstr(st->files[i].name, "index")) continue;
    h = rng_mix64(h ^ rng_hash_str(st->files[i].name));
    h = rng_mix64(h ^ st->files[i].xxh64);
    nweights++;
  }
  free(st);
  if (nweights == 0)
    return strata_fail(err, errlen, "%s/%s lists no model*.safetensors file to identify the model", ckpt_dir,
                       CKPT_STATE_FILE);
  *out = h;
  return 0;
}

int session_make_dir(const char *dir, char *err, size_t errlen) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0755) && errno != EEXIST) goto fail;
    *p = '/';
  }
  if (mkdir(buf, 0755) && errno != EEXIST) goto fail;
  struct stat sb;
  if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
    return strata_fail(err, errlen, "session directory %s is not a directory", dir);
  return 0;
fail:
  snprintf(err, errlen, "cannot create session directory %s: %s (set --session-dir)", buf, strerror(errno));
  return -1;
}

uint64_t session_file_bytes(int n_tokens, int n_kv, int nl, int C) {
  return session_file_bytes_dtype(n_tokens, n_kv, nl, C, 0);
}

uint64_t session_file_bytes_dtype(int n_tokens, int n_kv, int nl, int C, int bf16) {
  return sizeof(session_header_t) + sizeof(int32_t) * (uint64_t)n_tokens +
         2 * (bf16 ? sizeof(uint16_t) : sizeof(float)) * (uint64_t)n_kv * (uint64_t)C * (uint64_t)nl +
         sizeof(uint64_t);
}

static void fsync_dir(const char *dir) {
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

/* ---- atomic writes: a temporary file in the same directory, fsync, rename, fsync of the
 * directory; the checksum of everything written so far is kept as the pieces go out ---- */
typedef struct {
  int fd;
  char tmp[4400];
  XXH64_state_t *hs;
  uint64_t bytes;
  int failed_errno; /* 0 while every write succeeded */
} atomic_file_t;

static int af_open(atomic_file_t *a, const char *path) {
  memset(a, 0, sizeof *a);
  snprintf(a->tmp, sizeof a->tmp, "%s.tmp-XXXXXX", path);
  a->fd = mkstemp(a->tmp);
  if (a->fd < 0) return -1;
  a->hs = XXH64_createState();
  if (!a->hs) {
    close(a->fd);
    unlink(a->tmp);
    errno = ENOMEM;
    return -1;
  }
  XXH64_reset(a->hs, 0);
  return 0;
}

static void af_write(atomic_file_t *a, const void *p, size_t n) {
  if (a->failed_errno || n == 0) return;
  if (a->hs) XXH64_update(a->hs, p, n); /* NULL after the digest: the trailer is not hashed */
  const char *c = p;
  while (n) {
    ssize_t w = write(a->fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      a->failed_errno = errno;
      return;
    }
    c += w;
    n -= (size_t)w;
    a->bytes += (uint64_t)w;
  }
}

/* Appends the checksum trailer, syncs and renames onto path. 0, or -1 with errno set (the
 * temporary is removed). */
static int af_commit(atomic_file_t *a, const char *dir, const char *path, uint64_t *sum_out) {
  uint64_t sum = XXH64_digest(a->hs);
  XXH64_freeState(a->hs);
  a->hs = NULL;
  af_write(a, &sum, sizeof sum); /* the trailer */
  if (!a->failed_errno && fsync(a->fd)) a->failed_errno = errno;
  if (close(a->fd) && !a->failed_errno) a->failed_errno = errno;
  if (!a->failed_errno && rename(a->tmp, path)) a->failed_errno = errno;
  if (a->failed_errno) {
    unlink(a->tmp);
    errno = a->failed_errno;
    return -1;
  }
  fsync_dir(dir);
  if (sum_out) *sum_out = sum;
  return 0;
}

session_status_t session_write_stage(const char *dir, const char *id, const session_header_t *hdr_in,
                                     uint64_t generation, const int32_t *tokens, int n_tokens,
                                     const kv_cache_t *c, uint64_t *sum_out, uint64_t *bytes_out,
                                     int *errno_out, char *err, size_t errlen) {
  *errno_out = 0;
  if (session_id_validate(id, err, errlen)) {
    *errno_out = EINVAL;
    return SESSION_IO;
  }
  char path[4352];
  next_path(path, sizeof path, dir, id, hdr_in->stage, hdr_in->stages, hdr_in->tp_rank, tp_of(hdr_in->tp_size));
  session_header_t h = *hdr_in;
  h.tp_size = (int16_t)tp_of(h.tp_size);
  memcpy(h.magic, session_magic, 8);
  h.version = SESSION_FORMAT_VERSION;
  h.header_bytes = sizeof h;
  h.n_tokens = n_tokens;
  h.n_kv = c->n_pos;
  h.saved_unix_s = (int64_t)time(NULL);
  h.generation = generation;
  h.kv_bf16 = c->bf16;
  h.reserved = 0;
  atomic_file_t a;
  if (af_open(&a, path)) {
    *errno_out = errno;
    snprintf(err, errlen, "cannot create a temporary file beside %s: %s", path, strerror(errno));
    return SESSION_IO;
  }
  af_write(&a, &h, sizeof h);
  if (n_tokens) af_write(&a, tokens, sizeof(int32_t) * (size_t)n_tokens);
  size_t row = (size_t)c->n_pos * c->C, eb = kv_cache_elem_bytes(c);
  for (int l = 0; l < c->nl; l++) {
    size_t at = (size_t)l * c->cap * c->C;
    af_write(&a, c->bf16 ? (const void *)(c->k16 + at) : (const void *)(c->k + at), eb * row);
    af_write(&a, c->bf16 ? (const void *)(c->v16 + at) : (const void *)(c->v + at), eb * row);
  }
  if (af_commit(&a, dir, path, sum_out)) {
    *errno_out = errno;
    snprintf(err, errlen, "cannot write session file %s: %s", path, strerror(errno));
    return SESSION_IO;
  }
  *bytes_out = a.bytes;
  return SESSION_OK;
}

/* The commit record's fixed part on disk. */
typedef struct {
  char magic[8];        /* "STRATASC" */
  uint32_t version;     /* SESSION_FORMAT_VERSION */
  uint32_t header_bytes;
  uint64_t model_id;
  int32_t stages, n_tokens, n_kv, tp; /* tp: 0 in records written before tensor parallelism (= 1) */
  uint64_t generation;
  int64_t saved_unix_s;
} commit_head_t;

uint64_t session_commit_bytes(int parts) { return sizeof(commit_head_t) + 16 * (uint64_t)parts + 8; }

int session_commit_write(const char *dir, const char *id, const session_commit_t *rec, int *errno_out,
                         char *err, size_t errlen) {
  *errno_out = 0;
  if (session_id_validate(id, err, errlen)) return -1;
  int parts = rec->stages * tp_of(rec->tp);
  if (rec->stages < 1 || parts > SESSION_MAX_PARTS)
    return strata_fail(err, errlen, "a commit record names 1 to %d part files, not %d stages x %d", SESSION_MAX_PARTS,
                       rec->stages, tp_of(rec->tp));
  char path[4352];
  session_commit_path(path, sizeof path, dir, id);
  commit_head_t h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, commit_magic, 8);
  h.version = SESSION_FORMAT_VERSION;
  h.header_bytes = sizeof h;
  h.model_id = rec->model_id;
  h.stages = rec->stages;
  h.tp = tp_of(rec->tp);
  h.n_tokens = rec->n_tokens;
  h.n_kv = rec->n_kv;
  h.generation = rec->generation;
  h.saved_unix_s = rec->saved_unix_s ? rec->saved_unix_s : (int64_t)time(NULL);
  atomic_file_t a;
  if (af_open(&a, path)) {
    *errno_out = errno;
    snprintf(err, errlen, "cannot create a temporary file beside %s: %s", path, strerror(errno));
    return -1;
  }
  af_write(&a, &h, sizeof h);
  for (int s = 0; s < parts; s++) {
    af_write(&a, &rec->sum[s], sizeof rec->sum[s]);
    af_write(&a, &rec->bytes[s], sizeof rec->bytes[s]);
  }
  if (af_commit(&a, dir, path, NULL)) {
    *errno_out = errno;
    snprintf(err, errlen, "cannot write the commit record %s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* Reads a whole file into a malloc'd buffer. 0, 1 if it does not exist, -1 with errno. */
static int read_whole(const char *path, char **buf_out, size_t *len_out) {
  *buf_out = NULL;
  *len_out = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return errno == ENOENT ? 1 : -1;
  struct stat sb;
  if (fstat(fd, &sb)) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  size_t len = (size_t)sb.st_size;
  char *buf = malloc(len ? len : 1);
  if (!buf) {
    close(fd);
    errno = ENOMEM;
    return -1;
  }
  size_t got = 0;
  while (got < len) {
    ssize_t r = read(fd, buf + got, len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  *buf_out = buf;
  *len_out = got;
  return 0;
}

/* Does the XXH64 of buf[0, len - 8) match the trailer in its last 8 bytes (into *sum)? */
static int checksum_ok(const char *buf, size_t len, uint64_t *sum) {
  memcpy(sum, buf + len - 8, 8);
  return XXH64(buf, len - 8, 0) == *sum;
}

int session_commit_read(const char *dir, const char *id, session_commit_t *out, char *err, size_t errlen) {
  if (session_id_validate(id, err, errlen)) return -1;
  char path[4352];
  session_commit_path(path, sizeof path, dir, id);
  char *buf;
  size_t len;
  int r = read_whole(path, &buf, &len);
  if (r == 1) return 1;
  if (r < 0)
    return strata_fail(err, errlen, "cannot read the commit record %s: %s", path, strerror(errno));
  int rc = -1;
  commit_head_t h;
  if (len < sizeof h + 8) {
    snprintf(err, errlen, "the commit record %s is truncated (%zu bytes)", path, len);
    goto out;
  }
  memcpy(&h, buf, sizeof h);
  if (memcmp(h.magic, commit_magic, 8) || h.header_bytes != sizeof h) {
    snprintf(err, errlen, "%s is not a Strata session commit record", path);
    goto out;
  }
  if (h.version != SESSION_FORMAT_VERSION) {
    snprintf(err, errlen, "%s has session format version %u; this build reads version %d", path, h.version,
             SESSION_FORMAT_VERSION);
    goto out;
  }
  int parts = h.stages * tp_of(h.tp);
  if (h.stages < 1 || h.tp < 0 || parts > SESSION_MAX_PARTS || len != sizeof h + 16 * (size_t)parts + 8) {
    snprintf(err, errlen, "the commit record %s is corrupt (%d stages x %d in %zu bytes)", path, h.stages, h.tp, len);
    goto out;
  }
  uint64_t sum;
  if (!checksum_ok(buf, len, &sum)) {
    snprintf(err, errlen, "the commit record %s fails its checksum (corrupt)", path);
    goto out;
  }
  memset(out, 0, sizeof *out);
  out->model_id = h.model_id;
  out->stages = h.stages;
  out->tp = tp_of(h.tp);
  out->n_tokens = h.n_tokens;
  out->n_kv = h.n_kv;
  out->generation = h.generation;
  out->saved_unix_s = h.saved_unix_s;
  for (int s = 0; s < parts; s++) {
    memcpy(&out->sum[s], buf + sizeof h + 16 * (size_t)s, 8);
    memcpy(&out->bytes[s], buf + sizeof h + 16 * (size_t)s + 8, 8);
  }
  rc = 0;
out:
  free(buf);
  return rc;
}

int session_promote(const char *dir, const char *id, int stage, int stages, int t, int tp, uint64_t generation,
                    char *err, size_t errlen) {
  char from[4352], to[4352];
  next_path(from, sizeof from, dir, id, stage, stages, t, tp);
  session_path(to, sizeof to, dir, id, stage, stages, t, tp);
  session_header_t h;
  int fd = open(from, O_RDONLY);
  if (fd < 0) return 0; /* already promoted (or discarded) */
  ssize_t got = read(fd, &h, sizeof h);
  close(fd);
  if (got != (ssize_t)sizeof h || h.generation != generation) return 0; /* not the committed turn's */
  if (rename(from, to))
    return strata_fail(err, errlen, "cannot rename %s to %s: %s", from, to, strerror(errno));
  fsync_dir(dir);
  return 0;
}

void session_discard_next(const char *dir, const char *id, int stage, int stages, int t, int tp) {
  char path[4352];
  next_path(path, sizeof path, dir, id, stage, stages, t, tp);
  unlink(path);
}

static int check_header(const char *path, const session_header_t *h, const session_header_t *e,
                        char *err, size_t errlen) {
  if (memcmp(h->magic, session_magic, 8)) {
    snprintf(err, errlen, "%s is not a Strata session file (bad magic)", path);
    return SESSION_CORRUPT;
  }
  if (h->version != SESSION_FORMAT_VERSION || h->header_bytes != sizeof *h) {
    snprintf(err, errlen, "%s has session format version %u; this build reads version %d", path,
             h->version, SESSION_FORMAT_VERSION);
    return SESSION_MISMATCH;
  }
  if (h->model_id != e->model_id || h->vocab != e->vocab || h->ctx != e->ctx ||
      h->layers != e->layers || h->heads != e->heads || h->dim != e->dim) {
    snprintf(err, errlen,
             "%s was made with another model (%dL %dH %dC ctx %d vocab %d, identity %016llx) than the "
             "loaded checkpoint (%dL %dH %dC ctx %d vocab %d, identity %016llx); delete the session or "
             "use the checkpoint that made it",
             path, h->layers, h->heads, h->dim, h->ctx, h->vocab, (unsigned long long)h->model_id,
             e->layers, e->heads, e->dim, e->ctx, e->vocab, (unsigned long long)e->model_id);
    return SESSION_MISMATCH;
  }
  if (h->stages != e->stages || h->stage != e->stage || h->layer_begin != e->layer_begin ||
      h->layer_end != e->layer_end || tp_of(h->tp_size) != tp_of(e->tp_size) || h->tp_rank != e->tp_rank) {
    snprintf(err, errlen,
             "%s holds layers [%d, %d) of stage %d of %d, tensor-parallel rank %d of %d, but this rank is stage %d "
             "of %d with layers [%d, %d), tensor-parallel rank %d of %d; restore the session with the same --tp "
             "and number of ranks",
             path, h->layer_begin, h->layer_end, h->stage, h->stages, h->tp_rank, tp_of(h->tp_size), e->stage,
             e->stages, e->layer_begin, e->layer_end, e->tp_rank, tp_of(e->tp_size));
    return SESSION_MISMATCH;
  }
  if (h->kv_bf16 != e->kv_bf16) {
    snprintf(err, errlen,
             "%s holds a %s KV cache but this job runs in %s (resume the session with --precision %s)",
             path, h->kv_bf16 ? "bf16" : "fp32", e->kv_bf16 ? "bf16" : "fp32", h->kv_bf16 ? "bf16" : "fp32");
    return SESSION_MISMATCH;
  }
  if (h->n_kv < 0 || h->n_tokens < 0 || h->n_kv > h->ctx || h->n_tokens > h->ctx) {
    snprintf(err, errlen, "%s is corrupt: %d tokens, %d cached positions, context %d", path,
             h->n_tokens, h->n_kv, h->ctx);
    return SESSION_CORRUPT;
  }
  return SESSION_OK;
}

/* Reads and verifies one stage file against the commit record; fills c and the tokens. */
static session_status_t read_stage_file(const char *path, const session_header_t *expect,
                                        const session_commit_t *rec, kv_cache_t *c, int32_t **tokens_out,
                                        int *n_tokens_out, char *err, size_t errlen) {
  char *buf;
  size_t len;
  int r = read_whole(path, &buf, &len);
  if (r == 1) {
    snprintf(err, errlen, "session file %s is missing", path);
    return SESSION_MISSING;
  }
  if (r < 0) {
    snprintf(err, errlen, "cannot read session file %s: %s", path, strerror(errno));
    return SESSION_IO;
  }
  session_status_t st = SESSION_CORRUPT;
  session_header_t h;
  if (len < sizeof h + 8) {
    snprintf(err, errlen, "session file %s is truncated (%zu bytes)", path, len);
    goto out;
  }
  memcpy(&h, buf, sizeof h);
  st = (session_status_t)check_header(path, &h, expect, err, errlen);
  if (st != SESSION_OK) goto out;
  st = SESSION_CORRUPT;
  if (h.kv_bf16 != c->bf16) {
    snprintf(err, errlen, "session file %s holds a %s KV cache, the cache to fill is %s", path,
             h.kv_bf16 ? "bf16" : "fp32", c->bf16 ? "bf16" : "fp32");
    st = SESSION_MISMATCH;
    goto out;
  }
  size_t row = (size_t)h.n_kv * c->C, eb = kv_cache_elem_bytes(c);
  size_t want = (size_t)session_file_bytes_dtype(h.n_tokens, h.n_kv, c->nl, c->C, c->bf16);
  if (len != want) {
    snprintf(err, errlen, "session file %s has %zu bytes, expected %zu for %d tokens and %d positions (truncated?)",
             path, len, want, h.n_tokens, h.n_kv);
    goto out;
  }
  uint64_t sum;
  if (!checksum_ok(buf, len, &sum)) {
    snprintf(err, errlen, "session file %s fails its checksum (corrupt)", path);
    goto out;
  }
  int part = expect->stage * tp_of(expect->tp_size) + expect->tp_rank;
  if (h.generation != rec->generation || sum != rec->sum[part] || h.n_kv != rec->n_kv ||
      (part == 0 && h.n_tokens != rec->n_tokens)) {
    snprintf(err, errlen,
             "session file %s holds turn %llu (%d positions), but the session's commit record names turn %llu "
             "(%d positions): the stages hold different saves",
             path, (unsigned long long)h.generation, h.n_kv, (unsigned long long)rec->generation, rec->n_kv);
    st = SESSION_STALE;
    goto out;
  }
  if (h.n_kv > c->cap) {
    snprintf(err, errlen, "session file %s holds %d positions, more than the cache's %d", path, h.n_kv, c->cap);
    goto out;
  }
  const char *p = buf + sizeof h;
  if (tokens_out) {
    *tokens_out = malloc(sizeof(int32_t) * (h.n_tokens ? (size_t)h.n_tokens : 1));
    if (!*tokens_out) {
      snprintf(err, errlen, "out of memory reading %s", path);
      st = SESSION_IO;
      goto out;
    }
    memcpy(*tokens_out, p, sizeof(int32_t) * (size_t)h.n_tokens);
    *n_tokens_out = h.n_tokens;
  }
  p += sizeof(int32_t) * (size_t)h.n_tokens;
  for (int l = 0; l < c->nl; l++) {
    size_t at = (size_t)l * c->cap * c->C;
    memcpy(c->bf16 ? (void *)(c->k16 + at) : (void *)(c->k + at), p, eb * row);
    p += eb * row;
    memcpy(c->bf16 ? (void *)(c->v16 + at) : (void *)(c->v + at), p, eb * row);
    p += eb * row;
  }
  c->n_pos = h.n_kv;
  st = SESSION_OK;
out:
  free(buf);
  return st;
}

session_status_t session_read_stage(const char *dir, const char *id, const session_header_t *expect,
                                    const session_commit_t *rec, kv_cache_t *c, int32_t **tokens_out,
                                    int *n_tokens_out, char *err, size_t errlen) {
  if (session_id_validate(id, err, errlen)) return SESSION_MISMATCH;
  char path[4352], npath[4352], nerr[1024];
  int t = expect->tp_rank, T = tp_of(expect->tp_size);
  session_path(path, sizeof path, dir, id, expect->stage, expect->stages, t, T);
  session_status_t st = read_stage_file(path, expect, rec, c, tokens_out, n_tokens_out, err, errlen);
  if (st != SESSION_MISSING && st != SESSION_STALE) return st;
  /* a crash between the commit record and the rename: the record's turn is in .kv.next */
  next_path(npath, sizeof npath, dir, id, expect->stage, expect->stages, t, T);
  if (read_stage_file(npath, expect, rec, c, tokens_out, n_tokens_out, nerr, sizeof nerr) != SESSION_OK)
    return st;
  if (session_promote(dir, id, expect->stage, expect->stages, t, T, rec->generation, nerr, sizeof nerr))
    strata_warn("session '%s': %s (the turn was read from the .kv.next file)", id, nerr);
  return SESSION_OK;
}

/* Parses "<id>.stage<s>-of-<P>[.tp<t>-of-<T>].kv[.next]" (*kind 1) or "<id>.session" (*kind 2);
 * 0 on a match. */
static int parse_name(const char *name, char *id, int *s, int *P, int *kind) {
  const char *dot = strchr(name, '.');
  if (!dot || dot == name || (size_t)(dot - name) > SESSION_ID_MAX) return -1;
  memcpy(id, name, (size_t)(dot - name));
  id[dot - name] = 0;
  char e[8];
  if (session_id_validate(id, e, sizeof e)) return -1;
  if (!strcmp(dot, ".session")) {
    *kind = 2;
    *s = *P = 0;
    return 0;
  }
  int n = 0, m = 0, t, T;
  if (sscanf(dot, ".stage%d-of-%d%n", s, P, &n) != 2) return -1;
  if (sscanf(dot + n, ".tp%d-of-%d%n", &t, &T, &m) == 2) n += m;
  if (strncmp(dot + n, ".kv", 3)) return -1;
  n += 3;
  if (dot[n] != 0 && strcmp(dot + n, ".next") != 0) return -1;
  *kind = 1;
  return 0;
}

int session_count(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char id[SESSION_ID_MAX + 1];
    int s, P, kind;
    if (!parse_name(de->d_name, id, &s, &P, &kind) && kind == 2) n++;
  }
  closedir(d);
  return n;
}

int session_list(const char *dir, session_info_t **out, int *n_out, char *err, size_t errlen) {
  *out = NULL;
  *n_out = 0;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "cannot list session directory %s: %s", dir, strerror(errno));
    return -1;
  }
  int cap = 0, n = 0, rc = 0;
  session_info_t *v = NULL;
  session_commit_t *rec = malloc(sizeof *rec);
  if (!rec) {
    closedir(d);
    return strata_fail(err, errlen, "out of memory for listing the sessions in %s", dir);
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    char id[SESSION_ID_MAX + 1], e[512];
    int s, P, kind;
    if (parse_name(de->d_name, id, &s, &P, &kind) || kind != 2) continue;
    if (session_commit_read(dir, id, rec, e, sizeof e)) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      session_info_t *nv = realloc(v, sizeof *nv * (size_t)cap);
      if (!nv) {
        strata_fail(err, errlen, "out of memory for a list of %d sessions in %s", cap, dir);
        rc = -1;
        break;
      }
      v = nv;
    }
    session_info_t *x = &v[n++];
    memset(x, 0, sizeof *x);
    snprintf(x->id, sizeof x->id, "%s", id);
    x->stages = rec->stages;
    x->tp = rec->tp;
    x->n_tokens = rec->n_tokens;
    x->saved_unix_s = rec->saved_unix_s;
    x->generation = rec->generation;
    x->bytes = session_commit_bytes(rec->stages * rec->tp);
    for (int k = 0; k < rec->stages * rec->tp; k++) x->bytes += rec->bytes[k];
  }
  closedir(d);
  free(rec);
  if (rc) {
    free(v);
    return -1;
  }
  *out = v;
  *n_out = n;
  return 0;
}

/* Calls fn(dir, file name) for every file of session id (stage files, .next files, the commit
 * record and temporaries beside them); returns how many there were. */
static int for_each_file(const char *dir, const char *id, void (*fn)(const char *dir, const char *name, void *arg),
                         void *arg, int stage_files_only) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  size_t idn = strlen(id);
  int found = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *nm = de->d_name;
    if (strncmp(nm, id, idn) || nm[idn] != '.') continue;
    char fid[SESSION_ID_MAX + 1];
    int s, P, kind;
    int ours = !parse_name(nm, fid, &s, &P, &kind) && !strcmp(fid, id);
    /* temporaries: "<id>.stage...kv.next.tmp-XXXXXX", "<id>.session.tmp-XXXXXX" */
    int tmp = strstr(nm, ".tmp-") != NULL && (!strncmp(nm + idn, ".stage", 6) || !strncmp(nm + idn, ".session", 8));
    if (!ours && !tmp) continue;
    if (stage_files_only && (kind != 1 || !ours || strstr(nm, ".next"))) continue;
    found++;
    if (fn) fn(dir, nm, arg);
  }
  closedir(d);
  return found;
}

int session_uncommitted_files(const char *dir, const char *id) {
  char path[4352];
  session_commit_path(path, sizeof path, dir, id);
  struct stat sb;
  if (stat(path, &sb) == 0) return 0;
  return for_each_file(dir, id, NULL, NULL, 1) > 0;
}

static void unlink_in(const char *dir, const char *name, void *arg) {
  int *failed = arg;
  char path[4352];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (unlink(path) && errno != ENOENT && failed && !*failed) *failed = errno;
}

int session_delete(const char *dir, const char *id, char *err, size_t errlen) {
  if (session_id_validate(id, err, errlen)) return -1;
  char path[4352];
  session_commit_path(path, sizeof path, dir, id);
  int had_record = unlink(path) == 0;
  if (!had_record && errno != ENOENT)
    return strata_fail(err, errlen, "cannot delete %s: %s", path, strerror(errno));
  int failed = 0;
  int n = for_each_file(dir, id, unlink_in, &failed, 0);
  if (failed)
    return strata_fail(err, errlen, "cannot delete a file of session '%s' in %s: %s", id, dir, strerror(failed));
  return had_record || n ? 0 : 1;
}

void session_delete_stage(const char *dir, const char *id, int stage, int stages, int t, int tp) {
  char path[4352];
  session_path(path, sizeof path, dir, id, stage, stages, t, tp);
  unlink(path);
  session_discard_next(dir, id, stage, stages, t, tp);
}

void session_default_dir(char *buf, size_t len, const char *ckpt) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", ckpt);
  size_t n = strlen(tmp);
  while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
  char *slash = strrchr(tmp, '/');
  if (!slash) snprintf(buf, len, "%s", SESSION_DIR_DEFAULT);
  else if (slash == tmp) snprintf(buf, len, "/%s", SESSION_DIR_DEFAULT);
  else {
    *slash = 0;
    snprintf(buf, len, "%s/%s", tmp, SESSION_DIR_DEFAULT);
  }
}
