/* session.c -- session IDs, session files (atomic write, verified read), list and delete
 * (see session.h). */
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
#include "rng.h"
#include "strata_proto.h"

static const char session_magic[8] = {'S', 'T', 'R', 'A', 'T', 'A', 'K', 'V'};

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

void session_path(char *buf, size_t len, const char *dir, const char *id, int stage, int stages) {
  snprintf(buf, len, "%s/%s.stage%d-of-%d.kv", dir, id, stage, stages);
}

int session_model_id(const char *ckpt_dir, const gpt2_config_t *cfg, uint64_t *out, char *err,
                     size_t errlen) {
  strata_train_state_t *st = malloc(sizeof *st);
  if (!st) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
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
  if (nweights == 0) {
    snprintf(err, errlen, "%s/%s lists no model*.safetensors file to identify the model", ckpt_dir,
             CKPT_STATE_FILE);
    return -1;
  }
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
  if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
    snprintf(err, errlen, "session directory %s is not a directory", dir);
    return -1;
  }
  return 0;
fail:
  snprintf(err, errlen, "cannot create session directory %s: %s (set --session-dir)", buf, strerror(errno));
  return -1;
}

static int write_all(int fd, const void *p, size_t n, XXH64_state_t *hs) {
  const char *c = p;
  if (hs) XXH64_update(hs, p, n);
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

int session_write(const char *dir, const char *id, const session_header_t *hdr_in,
                  const int32_t *tokens, int n_tokens, const kv_cache_t *c, char *err,
                  size_t errlen) {
  if (session_id_validate(id, err, errlen)) return -1;
  char path[4352], tmp[4400];
  session_path(path, sizeof path, dir, id, hdr_in->stage, hdr_in->stages);
  snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
  session_header_t h = *hdr_in;
  memcpy(h.magic, session_magic, 8);
  h.version = SESSION_FORMAT_VERSION;
  h.header_bytes = sizeof h;
  h.n_tokens = n_tokens;
  h.n_kv = c->n_pos;
  h.saved_unix_s = (int64_t)time(NULL);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    return -1;
  }
  XXH64_state_t *hs = XXH64_createState();
  XXH64_reset(hs, 0);
  int bad = write_all(fd, &h, sizeof h, hs);
  if (!bad && n_tokens) bad = write_all(fd, tokens, sizeof(int32_t) * n_tokens, hs);
  size_t row = (size_t)c->n_pos * c->C;
  for (int l = 0; l < c->nl && !bad; l++) {
    bad = write_all(fd, c->k + (size_t)l * c->cap * c->C, sizeof(float) * row, hs);
    if (!bad) bad = write_all(fd, c->v + (size_t)l * c->cap * c->C, sizeof(float) * row, hs);
  }
  uint64_t sum = XXH64_digest(hs);
  XXH64_freeState(hs);
  if (!bad) bad = write_all(fd, &sum, sizeof sum, NULL);
  if (!bad) bad = fsync(fd);
  if (close(fd)) bad = 1;
  if (!bad) bad = rename(tmp, path);
  if (bad) {
    snprintf(err, errlen, "cannot write session file %s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

static int check_header(const char *path, const session_header_t *h, const session_header_t *e,
                        char *err, size_t errlen) {
  if (memcmp(h->magic, session_magic, 8) || h->header_bytes != sizeof *h) {
    snprintf(err, errlen, "%s is not a Strata session file (bad magic or header size)", path);
    return -1;
  }
  if (h->version != SESSION_FORMAT_VERSION) {
    snprintf(err, errlen, "%s has session format version %u; this build reads version %d", path,
             h->version, SESSION_FORMAT_VERSION);
    return -1;
  }
  if (h->model_id != e->model_id || h->vocab != e->vocab || h->ctx != e->ctx ||
      h->layers != e->layers || h->heads != e->heads || h->dim != e->dim) {
    snprintf(err, errlen,
             "%s was made with another model (%dL %dH %dC ctx %d vocab %d, identity %016llx) than the "
             "loaded checkpoint (%dL %dH %dC ctx %d vocab %d, identity %016llx); delete the session or "
             "use the checkpoint that made it",
             path, h->layers, h->heads, h->dim, h->ctx, h->vocab, (unsigned long long)h->model_id,
             e->layers, e->heads, e->dim, e->ctx, e->vocab, (unsigned long long)e->model_id);
    return -1;
  }
  if (h->stages != e->stages || h->stage != e->stage || h->layer_begin != e->layer_begin ||
      h->layer_end != e->layer_end) {
    snprintf(err, errlen,
             "%s holds layers [%d, %d) of stage %d of %d but this rank is stage %d of %d with layers "
             "[%d, %d); restore the session with the same number of ranks",
             path, h->layer_begin, h->layer_end, h->stage, h->stages, e->stage, e->stages,
             e->layer_begin, e->layer_end);
    return -1;
  }
  if (h->n_kv < 0 || h->n_tokens < 0 || h->n_kv > h->ctx || h->n_tokens > h->ctx) {
    snprintf(err, errlen, "%s is corrupt: %d tokens, %d cached positions, context %d", path,
             h->n_tokens, h->n_kv, h->ctx);
    return -1;
  }
  return 0;
}

int session_peek(const char *dir, const char *id, const session_header_t *expect,
                 session_header_t *out, char *err, size_t errlen) {
  if (session_id_validate(id, err, errlen)) return -1;
  char path[4352];
  session_path(path, sizeof path, dir, id, expect->stage, expect->stages);
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) return 1;
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  size_t got = fread(out, 1, sizeof *out, f);
  fclose(f);
  if (got != sizeof *out) {
    snprintf(err, errlen, "%s is truncated (header)", path);
    return -1;
  }
  return check_header(path, out, expect, err, errlen);
}

int session_read(const char *dir, const char *id, const session_header_t *expect, kv_cache_t *c,
                 int32_t **tokens_out, int *n_tokens_out, char *err, size_t errlen) {
  if (session_id_validate(id, err, errlen)) return -1;
  char path[4352];
  session_path(path, sizeof path, dir, id, expect->stage, expect->stages);
  size_t len = 0;
  char *buf = NULL;
  int rc = -1;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open session file %s: %s", path, strerror(errno));
    return -1;
  }
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n > 0) len = (size_t)n;
    fseek(f, 0, SEEK_SET);
  }
  if (len < sizeof(session_header_t) + 8 || !(buf = malloc(len)) || fread(buf, 1, len, f) != len) {
    snprintf(err, errlen, "cannot read session file %s (%zu bytes; truncated?)", path, len);
    goto out;
  }
  session_header_t h;
  memcpy(&h, buf, sizeof h);
  if (check_header(path, &h, expect, err, errlen)) goto out;
  size_t row = (size_t)h.n_kv * c->C;
  size_t want = sizeof h + sizeof(int32_t) * h.n_tokens + 2 * sizeof(float) * row * c->nl + 8;
  if (len != want) {
    snprintf(err, errlen, "session file %s has %zu bytes, expected %zu for %d tokens and %d positions",
             path, len, want, h.n_tokens, h.n_kv);
    goto out;
  }
  uint64_t sum;
  memcpy(&sum, buf + len - 8, 8);
  if (XXH64(buf, len - 8, 0) != sum) {
    snprintf(err, errlen, "session file %s fails its checksum (corrupt); delete the session", path);
    goto out;
  }
  if (h.n_kv > c->cap) {
    snprintf(err, errlen, "session file %s holds %d positions, more than the cache's %d", path, h.n_kv, c->cap);
    goto out;
  }
  const char *p = buf + sizeof h;
  if (tokens_out) {
    *tokens_out = malloc(sizeof(int32_t) * (h.n_tokens ? h.n_tokens : 1));
    if (!*tokens_out) {
      snprintf(err, errlen, "out of memory");
      goto out;
    }
    memcpy(*tokens_out, p, sizeof(int32_t) * h.n_tokens);
    *n_tokens_out = h.n_tokens;
  }
  p += sizeof(int32_t) * h.n_tokens;
  for (int l = 0; l < c->nl; l++) {
    memcpy(c->k + (size_t)l * c->cap * c->C, p, sizeof(float) * row);
    p += sizeof(float) * row;
    memcpy(c->v + (size_t)l * c->cap * c->C, p, sizeof(float) * row);
    p += sizeof(float) * row;
  }
  c->n_pos = h.n_kv;
  rc = 0;
out:
  free(buf);
  fclose(f);
  return rc;
}

/* parses "<id>.stage<s>-of-<P>.kv"; returns 0 and fills id, s, P */
static int parse_name(const char *name, char *id, int *s, int *P) {
  const char *dot = strstr(name, ".stage");
  if (!dot || dot == name || (size_t)(dot - name) > SESSION_ID_MAX) return -1;
  int n = 0;
  if (sscanf(dot, ".stage%d-of-%d.kv%n", s, P, &n) != 2 || dot[n] != 0) return -1;
  memcpy(id, name, (size_t)(dot - name));
  id[dot - name] = 0;
  char e[8];
  return session_id_validate(id, e, sizeof e);
}

int session_count(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char id[SESSION_ID_MAX + 1];
    int s, P;
    if (!parse_name(de->d_name, id, &s, &P) && s == 0) n++;
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
  int cap = 0, n = 0;
  session_info_t *v = NULL;
  struct dirent *de;
  while ((de = readdir(d))) {
    char id[SESSION_ID_MAX + 1];
    int s, P;
    if (parse_name(de->d_name, id, &s, &P)) continue;
    char path[4352];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    struct stat sb;
    if (stat(path, &sb)) continue;
    int k;
    for (k = 0; k < n; k++)
      if (!strcmp(v[k].id, id)) break;
    if (k == n) {
      if (n == cap) {
        cap = cap ? 2 * cap : 16;
        session_info_t *nv = realloc(v, sizeof *v * cap);
        if (!nv) break;
        v = nv;
      }
      memset(&v[n], 0, sizeof v[n]);
      snprintf(v[n].id, sizeof v[n].id, "%s", id);
      n++;
    }
    v[k].bytes += (uint64_t)sb.st_size;
    if (s == 0) {
      session_header_t h;
      FILE *f = fopen(path, "rb");
      if (f && fread(&h, 1, sizeof h, f) == sizeof h && !memcmp(h.magic, session_magic, 8)) {
        v[k].stages = h.stages;
        v[k].n_tokens = h.n_tokens;
        v[k].saved_unix_s = h.saved_unix_s;
      }
      if (f) fclose(f);
    }
  }
  closedir(d);
  *out = v;
  *n_out = n;
  return 0;
}

int session_saved_stages(const char *dir, const char *id) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int found = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char fid[SESSION_ID_MAX + 1];
    int s, P;
    if (parse_name(de->d_name, fid, &s, &P) == 0 && s == 0 && !strcmp(fid, id)) found = P;
  }
  closedir(d);
  return found;
}

int session_delete(const char *dir, const char *id, char *err, size_t errlen) {
  if (session_id_validate(id, err, errlen)) return -1;
  DIR *d = opendir(dir);
  if (!d) return 1;
  int found = 0, rc = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char fid[SESSION_ID_MAX + 1];
    int s, P;
    if (parse_name(de->d_name, fid, &s, &P) || strcmp(fid, id)) continue;
    char path[4352];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    if (unlink(path)) {
      snprintf(err, errlen, "cannot delete %s: %s", path, strerror(errno));
      rc = -1;
    }
    found = 1;
  }
  closedir(d);
  if (rc) return rc;
  return found ? 0 : 1;
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
