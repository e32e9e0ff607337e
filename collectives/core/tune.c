/* tune.c -- the all-reduce decision table (coll.h, "Decision table"): its path, saving it
 * (merged with the rules already there, replaced atomically), loading it into a communicator
 * and looking a call up in it. tune_file.c has the file format; collectives/README.md
 * ("Tuning") describes it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checks.h"
#include "coll_internal.h"

#define TUNE_MAX_FILE_BYTES (1 << 20) /* a table of every key measured is some 100 KiB */

int coll_tune_path(const coll_config_t *cfg, char *buf, size_t len) {
  const char *f = cfg && cfg->tune_file ? cfg->tune_file : getenv("STRATA_COLL_TUNE_FILE");
  int n;
  if (f && *f) {
    if (!strcmp(f, "off")) return -1;
    n = snprintf(buf, len, "%s", f);
  } else {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) n = snprintf(buf, len, "%s/strata/coll_tune.json", xdg);
    else if (home && *home) n = snprintf(buf, len, "%s/.cache/strata/coll_tune.json", home);
    else return -1;
  }
  return n > 0 && (size_t)n < len ? 0 : -1;
}

/* The file into a NUL-terminated buffer: 1 with *text, 0 when it does not exist, -1 with err. */
static int read_file(const char *path, char **text, size_t *len, char *err, size_t errlen) {
  *text = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) return 0;
    return coll_tune_fail(err, errlen, "cannot be opened (%s)", strerror(errno));
  }
  char *buf = malloc(TUNE_MAX_FILE_BYTES + 1);
  if (!buf) {
    fclose(f);
    return coll_tune_fail(err, errlen, "cannot be read (out of memory)");
  }
  size_t n = fread(buf, 1, TUNE_MAX_FILE_BYTES + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > TUNE_MAX_FILE_BYTES) {
    free(buf);
    return coll_tune_fail(err, errlen, bad ? "cannot be read" : "is larger than %d bytes", TUNE_MAX_FILE_BYTES);
  }
  buf[n] = 0;
  if (strlen(buf) != n) {
    free(buf);
    return coll_tune_fail(err, errlen, "is not a text file (it holds a NUL byte)");
  }
  *text = buf;
  *len = n;
  return 1;
}

static int mkdirs(char *dir) { /* mkdir -p; dir is modified and restored */
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    int rc = mkdir(dir, 0755);
    *p = '/';
    if (rc && errno != EEXIST) return -1;
  }
  return mkdir(dir, 0755) && errno != EEXIST ? -1 : 0;
}

static int rule_order(const void *a, const void *b) {
  const coll_tune_rule_t *x = a, *y = b;
  if (x->ranks != y->ranks) return x->ranks < y->ranks ? -1 : 1;
  int c = strcmp(x->transport, y->transport);
  if (c) return c;
  if (x->dtype != y->dtype) return x->dtype < y->dtype ? -1 : 1;
  if (x->in_place != y->in_place) return x->in_place < y->in_place ? -1 : 1;
  return x->from_bytes < y->from_bytes ? -1 : x->from_bytes > y->from_bytes;
}

coll_result_t coll_tune_save(const char *path, const coll_tune_rule_t *rules, int n, char *err,
                             size_t errlen) {
  coll_result_t res = COLL_OK;
  char *text = NULL, *tmp = NULL, *dir = NULL;
  coll_tune_rule_t *old = NULL, *all = NULL;
  int nold = 0, nall = 0;
  size_t len;
  char msg[256];
  FILE *f = NULL;
  if (!path || n < 0 || (n && !rules)) return coll_err(err, errlen, COLL_ERR_ARG, "coll_tune_save: no path or no rules");
  for (int i = 0; i < n; i++)
    if (rules[i].algo == COLL_ALGO_AUTO || (unsigned)rules[i].algo >= COLL_ALGO_COUNT || rules[i].ranks < 1 ||
        (unsigned)rules[i].dtype >= COLL_DTYPE_COUNT || !rules[i].transport[0] || strpbrk(rules[i].transport, " \t\"\\") ||
        (rules[i].in_place != 0 && rules[i].in_place != 1) || rules[i].stream < -1 || rules[i].stream > 1)
      return coll_err(err, errlen, COLL_ERR_ARG, "coll_tune_save: rule %d is invalid (algorithm auto, no transport, a bad rank count, placement or stream)", i);
  if (read_file(path, &text, &len, msg, sizeof msg) > 0 && coll_tune_parse(text, len, &old, &nold, msg, sizeof msg))
    nold = 0; /* a malformed table is replaced */
  all = malloc(((size_t)nold + (size_t)n + 1) * sizeof *all);
  if (!all) {
    res = coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory writing the tuning table %s", path);
    goto out;
  }
  for (int i = 0; i < nold; i++) { /* keep the rules of keys not measured now */
    int replaced = 0;
    for (int j = 0; j < n && !replaced; j++) replaced = coll_tune_same_key(&old[i], &rules[j]);
    if (!replaced) all[nall++] = old[i];
  }
  for (int j = 0; j < n; j++) all[nall++] = rules[j];
  qsort(all, (size_t)nall, sizeof *all, rule_order);
  dir = strdup(path);
  tmp = malloc(strlen(path) + 32);
  if (!dir || !tmp) {
    res = coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory writing the tuning table %s", path);
    goto out;
  }
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = 0;
    if (mkdirs(dir)) {
      res = coll_err(err, errlen, COLL_ERR_ARG, "cannot create the directory %s for the tuning table (%s); set STRATA_COLL_TUNE_FILE to a writable path",
                     dir, strerror(errno));
      goto out;
    }
  }
  sprintf(tmp, "%s.tmp.%ld", path, (long)getpid());
  f = fopen(tmp, "w");
  if (!f) {
    res = coll_err(err, errlen, COLL_ERR_ARG, "cannot write the tuning table %s (%s); set STRATA_COLL_TUNE_FILE to a writable path",
                   tmp, strerror(errno));
    goto out;
  }
  int bad = coll_tune_write(f, all, nall);
  if (fclose(f) || bad || rename(tmp, path)) {
    res = coll_err(err, errlen, COLL_ERR_ARG, "writing the tuning table %s failed (%s); set STRATA_COLL_TUNE_FILE to a writable path",
                   path, strerror(errno));
    unlink(tmp);
  }
out:
  free(text);
  free(old);
  free(all);
  free(dir);
  free(tmp);
  return res;
}

/* ---- loading into a communicator, lookup ---- */

/* Keeps the rules of comm's own size and transport in comm->tune. */
static coll_result_t tune_select(coll_comm_t *c, char *err, size_t errlen) {
  const char *tname = coll_transport_name(c);
  int n = 0;
  for (int i = 0; i < c->ntune_all; i++)
    n += c->tune_all[i].ranks == c->size && !strcmp(c->tune_all[i].transport, tname);
  if (n) {
    c->tune = malloc((size_t)n * sizeof *c->tune);
    if (!c->tune) return coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for the tuning table's rules");
    for (int i = 0; i < c->ntune_all; i++)
      if (c->tune_all[i].ranks == c->size && !strcmp(c->tune_all[i].transport, tname)) c->tune[c->ntune++] = c->tune_all[i];
  }
  if (c->ntune)
    snprintf(c->tune_desc, sizeof c->tune_desc, "table %s (%d rules for %d ranks over %s)", c->tune_path, c->ntune,
             c->size, tname);
  else if (c->ntune_all)
    snprintf(c->tune_desc, sizeof c->tune_desc, "built-in rules (table %s has no rules for %d ranks over %s)",
             c->tune_path, c->size, tname);
  return COLL_OK;
}

coll_result_t coll_tune_load(coll_comm_t *c, char *err, size_t errlen) {
  char path[sizeof c->tune_path];
  if (coll_tune_path(&c->cfg, path, sizeof path)) {
    snprintf(c->tune_desc, sizeof c->tune_desc, "built-in rules (STRATA_COLL_TUNE_FILE=off)");
    return COLL_OK;
  }
  snprintf(c->tune_path, sizeof c->tune_path, "%s", path);
  /* Rank 0 reads, everyone parses the same bytes: ranks on other hosts follow one table. */
  char *text = NULL, msg[384] = "";
  size_t len = 0;
  long long hdr[2] = {0, 0}; /* [0]: 1 file read, 0 absent, -1 unreadable; [1]: bytes */
  if (c->rank == 0) {
    hdr[0] = read_file(path, &text, &len, msg, sizeof msg);
    hdr[1] = (long long)len;
  }
  coll_result_t res = COLL_OK;
  MPICHECKGOTO(MPI_Bcast(hdr, 2, MPI_LONG_LONG, 0, c->mpi), res, out, "MPI_Bcast(tuning table size)");
  if (hdr[0] == 1) {
    int ok = c->rank == 0 || (text = malloc((size_t)hdr[1] + 1)) != NULL, all_ok = 0;
    MPICHECKGOTO(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->mpi), res, out, "MPI_Allreduce(tuning table)");
    if (!all_ok) {
      res = coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for the tuning table %s", path);
      goto out;
    }
    MPICHECKGOTO(MPI_Bcast(text, (int)hdr[1], MPI_CHAR, 0, c->mpi), res, out, "MPI_Bcast(tuning table)");
    text[hdr[1]] = 0;
    if (coll_tune_parse(text, (size_t)hdr[1], &c->tune_all, &c->ntune_all, msg, sizeof msg)) hdr[0] = -1;
  }
  if (hdr[0] == -1) {
    if (c->rank == 0)
      fprintf(stderr, "[strata r%d] warning: the collectives tuning table %s %s, so it is ignored and auto "
              "uses the built-in rules (rerun `strata bench allreduce --tune`, or set STRATA_COLL_TUNE_FILE=off)\n",
              c->world_ranks[0], path, msg);
    snprintf(c->tune_desc, sizeof c->tune_desc, "built-in rules (table %s is invalid)", path);
  } else if (hdr[0] == 0) {
    snprintf(c->tune_desc, sizeof c->tune_desc, "built-in rules (no table at %s)", path);
  } else {
    res = tune_select(c, err, errlen);
  }
out:
  free(text);
  return res;
}

coll_result_t coll_tune_inherit(coll_comm_t *c, const coll_comm_t *parent, char *err, size_t errlen) {
  snprintf(c->tune_path, sizeof c->tune_path, "%s", parent->tune_path);
  snprintf(c->tune_desc, sizeof c->tune_desc, "%s", parent->tune_desc);
  if (!parent->ntune_all) return COLL_OK;
  c->tune_all = malloc((size_t)parent->ntune_all * sizeof *c->tune_all);
  if (!c->tune_all) return coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for the tuning table's rules");
  memcpy(c->tune_all, parent->tune_all, (size_t)parent->ntune_all * sizeof *c->tune_all);
  c->ntune_all = parent->ntune_all;
  return tune_select(c, err, errlen);
}

void coll_tune_free(coll_comm_t *c) {
  free(c->tune);
  free(c->tune_all);
  c->tune = c->tune_all = NULL;
  c->ntune = c->ntune_all = 0;
}

const coll_tune_rule_t *coll_tune_lookup(const coll_comm_t *c, size_t bytes, coll_dtype_t dtype, int in_place) {
  const coll_tune_rule_t *hit = NULL;
  for (int i = 0; i < c->ntune; i++) /* rules of a key are in increasing from_bytes */
    if (c->tune[i].dtype == dtype && c->tune[i].in_place == !!in_place && c->tune[i].from_bytes <= bytes)
      hit = &c->tune[i];
  return hit;
}

const char *coll_tune_describe(const coll_comm_t *comm) { return comm ? comm->tune_desc : ""; }
