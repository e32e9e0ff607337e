/* runlog.c -- whole-line appends, atomic whole files and JSON for the run directory's records
 * (see runlog.h). */
#include "runlog.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* ---- whole-line appends ---- */

int runlog_lines_open(runlog_lines_t *l, const char *path, int append, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  l->fd = -1;
  if ((size_t)snprintf(l->path, sizeof l->path, "%s", path) >= sizeof l->path)
    return strata_fail(err, errlen, "path too long: %s", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0644);
  if (fd < 0) return strata_fail(err, errlen, "cannot write %s: %s", path, strerror(errno));
  l->fd = fd;
  return 0;
}

int runlog_lines_append(runlog_lines_t *l, const char *line, size_t len, char *err, size_t errlen) {
  if (l->fd < 0) return strata_fail(err, errlen, "%s is not open", l->path);
  struct stat st; /* the line's start, to cut a partial line off again */
  if (fstat(l->fd, &st) != 0) return strata_fail(err, errlen, "%s: %s", l->path, strerror(errno));
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(l->fd, line + done, len - done);
    if (n > 0) {
      done += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int e = n < 0 ? errno : EIO; /* write returning 0 for a non-empty buffer: no progress */
    if (done == 0) return strata_fail(err, errlen, "%s: %s", l->path, strerror(e));
    if (ftruncate(l->fd, st.st_size) != 0)
      return strata_fail(err, errlen, "%s: %s after %zu of %zu bytes of a line, and removing them "
                         "failed too (%s): the file ends in a partial line", l->path, strerror(e),
                         done, len, strerror(errno));
    return strata_fail(err, errlen, "%s: %s", l->path, strerror(e));
  }
  return 0;
}

int runlog_lines_close(runlog_lines_t *l, char *err, size_t errlen) {
  if (l->fd < 0) return 0;
  int rc = 0;
  if (fsync(l->fd) != 0 && errno != EINVAL) /* EINVAL: a file (e.g. a device) without fsync */
    rc = strata_fail(err, errlen, "%s: fsync: %s", l->path, strerror(errno));
  if (close(l->fd) != 0 && rc == 0)
    rc = strata_fail(err, errlen, "%s: close: %s", l->path, strerror(errno));
  l->fd = -1;
  return rc;
}

/* ---- the steps log's policy ---- */

static void steps_lost(runlog_lines_t *l, int64_t step, const char *why) {
  l->lost = 1;
  l->lost_step = step;
  if (step >= 0)
    strata_warn("%s; step %lld and later are not logged (training continues; checkpoints are "
                "written and checked separately)", why, (long long)step);
  else
    strata_warn("%s; its last steps may not be on disk (checkpoints are written and checked "
                "separately)", why);
}

void runlog_steps_append(runlog_lines_t *l, int64_t step, json_object *rec) {
  if (l->lost || l->fd < 0) {
    json_object_put(rec);
    return;
  }
  size_t len = 0;
  char *text = rec ? runlog_json_text(rec, 0, &len) : NULL;
  json_object_put(rec);
  char err[RUNLOG_PATH_MAX + 256];
  char *line = text ? realloc(text, len + 1) : NULL;
  if (!line) {
    free(text);
    snprintf(err, sizeof err, "%s: out of memory for a record", l->path);
    steps_lost(l, step, err);
    return;
  }
  line[len] = '\n';
  if (runlog_lines_append(l, line, len + 1, err, sizeof err)) steps_lost(l, step, err);
  free(line);
}

int runlog_steps_close(runlog_lines_t *l) {
  char err[RUNLOG_PATH_MAX + 256];
  if (runlog_lines_close(l, err, sizeof err) && !l->lost) steps_lost(l, -1, err);
  return !l->lost;
}

/* ---- atomic whole files ---- */

int runlog_file_open(runlog_file_t *w, const char *path, char *err, size_t errlen) {
  memset(w, 0, sizeof *w);
  if ((size_t)snprintf(w->path, sizeof w->path, "%s", path) >= sizeof w->path)
    return strata_fail(err, errlen, "path too long: %s", path);
  snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
  int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return strata_fail(err, errlen, "cannot create %s: %s", w->tmp, strerror(errno));
  w->f = fdopen(fd, "w");
  if (!w->f) {
    int e = errno;
    close(fd);
    unlink(w->tmp);
    return strata_fail(err, errlen, "cannot create %s: %s", w->tmp, strerror(e));
  }
  return 0;
}

void runlog_file_printf(runlog_file_t *w, const char *fmt, ...) {
  if (!w->f || w->err_no) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vfprintf(w->f, fmt, ap);
  va_end(ap);
  if (n < 0) w->err_no = errno ? errno : EIO;
}

void runlog_file_write(runlog_file_t *w, const void *buf, size_t len) {
  if (!w->f || w->err_no || len == 0) return;
  if (fwrite(buf, 1, len, w->f) != len) w->err_no = errno ? errno : EIO;
}

void runlog_file_abort(runlog_file_t *w) {
  if (!w->f) return;
  fclose(w->f); /* the file is being thrown away: its close status does not matter */
  w->f = NULL;
  unlink(w->tmp);
}

/* fsync of the directory holding `path`, so the rename itself survives a crash. */
static int fsync_parent(const char *path) {
  char buf[RUNLOG_PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd) != 0 && errno != EINVAL ? -1 : 0;
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

int runlog_file_commit(runlog_file_t *w, char *err, size_t errlen) {
  if (!w->f) return strata_fail(err, errlen, "%s: not open", w->path);
  const char *step = NULL;
  int e = 0;
  if (w->err_no) {
    step = "write";
    e = w->err_no;
  } else if (fflush(w->f) != 0) {
    step = "write";
    e = errno;
  } else if (fsync(fileno(w->f)) != 0) {
    step = "fsync";
    e = errno;
  }
  int closed = fclose(w->f);
  w->f = NULL;
  if (!step && closed != 0) {
    step = "close";
    e = errno;
  }
  if (!step && rename(w->tmp, w->path) != 0) {
    step = "rename";
    e = errno;
  }
  if (step) {
    unlink(w->tmp);
    return strata_fail(err, errlen, "cannot write %s (%s: %s); its previous version, if any, is "
                       "unchanged", w->path, step, strerror(e));
  }
  if (fsync_parent(w->path) != 0)
    return strata_fail(err, errlen, "wrote %s, but syncing its directory failed (%s): it may not "
                       "survive a crash", w->path, strerror(errno));
  return 0;
}

int runlog_write_file(const char *path, const void *buf, size_t len, char *err, size_t errlen) {
  runlog_file_t w;
  if (runlog_file_open(&w, path, err, errlen)) return -1;
  runlog_file_write(&w, buf, len);
  return runlog_file_commit(&w, err, errlen);
}

/* ---- JSON ---- */

json_object *runlog_json_num(double v, const char *fmt) {
  if (!isfinite(v)) return NULL; /* json-c's null */
  char text[64];
  /* fmt is a caller's literal printf format for one double ("%.9g"); -Wformat=2 cannot see it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  snprintf(text, sizeof text, fmt, v);
#pragma GCC diagnostic pop
  return json_object_new_double_s(v, text);
}

json_object *runlog_json_str(const char *s) { return s ? json_object_new_string(s) : NULL; }

void runlog_json_add(json_object *obj, const char *key, json_object *v) {
  if (obj) json_object_object_add(obj, key, v);
  else json_object_put(v);
}

/* A growing string; `oom` is sticky. */
typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s) { sb_put(b, s, strlen(s)); }

#define RUNLOG_JSON_FLAGS JSON_C_TO_STRING_NOSLASHESCAPE

/* A scalar as json-c writes it (strings escaped); a non-finite double is null whatever made it. */
static void put_scalar(sbuf_t *b, json_object *v) {
  if (json_object_is_type(v, json_type_double) && !isfinite(json_object_get_double(v))) {
    sb_str(b, "null");
    return;
  }
  size_t n = 0;
  const char *s = json_object_to_json_string_length(v, RUNLOG_JSON_FLAGS, &n);
  if (!s) b->oom = 1;
  else sb_put(b, s, n);
}

static void put_key(sbuf_t *b, const char *key) {
  json_object *k = json_object_new_string(key);
  if (!k) {
    b->oom = 1;
    return;
  }
  put_scalar(b, k);
  json_object_put(k);
  sb_str(b, ": ");
}

/* depth 0 with multiline: one member per line, arrays one element per line; else compact. */
static void put_value(sbuf_t *b, json_object *v, int multiline) {
  if (json_object_is_type(v, json_type_object)) {
    int first = 1;
    sb_str(b, multiline ? "{\n" : "{");
    json_object_object_foreach(v, key, val) {
      if (!first) sb_str(b, multiline ? ",\n" : ", ");
      first = 0;
      if (multiline) sb_str(b, "  ");
      put_key(b, key);
      if (multiline && json_object_is_type(val, json_type_array) && json_object_array_length(val)) {
        size_t n = json_object_array_length(val);
        sb_str(b, "[\n");
        for (size_t i = 0; i < n; i++) {
          sb_str(b, "    ");
          put_value(b, json_object_array_get_idx(val, i), 0);
          sb_str(b, i + 1 < n ? ",\n" : "\n");
        }
        sb_str(b, "  ]");
      } else {
        put_value(b, val, 0);
      }
    }
    sb_str(b, multiline && !first ? "\n}" : "}");
  } else if (json_object_is_type(v, json_type_array)) {
    size_t n = json_object_array_length(v);
    sb_str(b, "[");
    for (size_t i = 0; i < n; i++) {
      if (i) sb_str(b, ", ");
      put_value(b, json_object_array_get_idx(v, i), 0);
    }
    sb_str(b, "]");
  } else {
    put_scalar(b, v);
  }
}

char *runlog_json_text(json_object *v, int multiline, size_t *len_out) {
  sbuf_t b = {0};
  put_value(&b, v, multiline);
  if (b.oom || !b.p) {
    free(b.p);
    return NULL;
  }
  if (len_out) *len_out = b.len;
  return b.p;
}

int runlog_json_write(const char *path, json_object *doc, char *err, size_t errlen) {
  size_t len = 0;
  char *text = doc ? runlog_json_text(doc, 1, &len) : NULL;
  if (!text) return strata_fail(err, errlen, "cannot write %s: out of memory for its JSON text", path);
  runlog_file_t w;
  int rc = runlog_file_open(&w, path, err, errlen);
  if (rc == 0) {
    runlog_file_write(&w, text, len);
    runlog_file_write(&w, "\n", 1);
    rc = runlog_file_commit(&w, err, errlen);
  }
  free(text);
  return rc;
}
