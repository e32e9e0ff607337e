/* trace_json.c -- trace.json's tracks, metadata and slices (see trace_json.h). */
#include "trace_json.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define TRACE_KINDS_PER_LANE 2 /* tid = 2 * lane + comm */

int64_t trace_ns(double s) { return isfinite(s) ? llround(s * 1e9) : 0; }

void trace_buf_add(trace_buf_t *b, const char *name, int comm, int micro, int64_t step,
                   double t0_s, double t1_s) {
  if (b->n >= b->max) return;
  if (b->n == b->cap) {
    size_t want = b->cap ? 2 * b->cap : 1024;
    if (want > b->max) want = b->max;
    trace_slice_t *ns = realloc(b->s, want * sizeof *ns);
    if (!ns) return;
    b->s = ns;
    b->cap = want;
  }
  b->s[b->n++] = (trace_slice_t){name, comm, micro, step, trace_ns(t0_s), trace_ns(t1_s), 0};
}

void trace_buf_free(trace_buf_t *b) {
  free(b->s);
  *b = (trace_buf_t){0};
}

/* ns as microseconds with three decimals: "-12.345", "0.007". */
static void fmt_us(char *buf, size_t len, int64_t ns) {
  uint64_t a = ns < 0 ? (uint64_t)(-(ns + 1)) + 1 : (uint64_t)ns;
  snprintf(buf, len, "%s%llu.%03llu", ns < 0 ? "-" : "", (unsigned long long)(a / 1000),
           (unsigned long long)(a % 1000));
}

int trace_json_open(trace_json_t *t, const char *path, char *err, size_t errlen) {
  t->first = 1;
  if (runlog_file_open(&t->f, path, err, errlen)) return -1;
  runlog_file_printf(&t->f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [");
  return 0;
}

/* A metadata event {"name": what, "ph": "M", "pid": pid[, "tid": tid], "args": {key: value}}
 * with a string (str != NULL, escaped by json-c) or an integer value. */
static void write_meta(trace_json_t *t, const char *what, int pid, int tid, const char *key,
                       const char *str, int num) {
  json_object *ev = json_object_new_object(), *args = json_object_new_object();
  runlog_json_add(args, key, str ? runlog_json_str(str) : json_object_new_int(num));
  runlog_json_add(ev, "name", json_object_new_string(what));
  runlog_json_add(ev, "ph", json_object_new_string("M"));
  runlog_json_add(ev, "pid", json_object_new_int(pid));
  if (tid >= 0) runlog_json_add(ev, "tid", json_object_new_int(tid));
  runlog_json_add(ev, "args", args);
  char *text = ev ? runlog_json_text(ev, 0, NULL) : NULL;
  json_object_put(ev);
  if (!text) {
    if (!t->f.err_no) t->f.err_no = ENOMEM;
    return;
  }
  runlog_file_printf(&t->f, "%s\n%s", t->first ? "" : ",", text);
  free(text);
  t->first = 0;
}

static void write_track(trace_json_t *t, int pid, int tid) {
  const int comm = tid % TRACE_KINDS_PER_LANE, lane = tid / TRACE_KINDS_PER_LANE;
  char name[48];
  if (lane == 0) snprintf(name, sizeof name, "%s", comm ? "communication" : "compute");
  else snprintf(name, sizeof name, "%s %d", comm ? "communication" : "compute", lane + 1);
  write_meta(t, "thread_name", pid, tid, "name", name, 0);
  write_meta(t, "thread_sort_index", pid, tid, "sort_index", NULL, tid);
}

/* Kind (compute first), then start, then the longer first: a parent precedes what it holds. */
static int cmp_slice(const void *pa, const void *pb) {
  const trace_slice_t *a = pa, *b = pb;
  if (a->comm != b->comm) return a->comm - b->comm;
  if (a->t0_ns != b->t0_ns) return a->t0_ns < b->t0_ns ? -1 : 1;
  if (a->t1_ns != b->t1_ns) return a->t1_ns > b->t1_ns ? -1 : 1;
  return 0;
}

/* A track's open slices: their ends, innermost last. */
typedef struct {
  int64_t *end;
  size_t depth, cap;
} lane_t;

/* Gives every slice the tid of the first track of its kind where it nests (after the sort).
 * Returns the number of lanes used, or -1 when out of memory. */
static int assign_lanes(trace_slice_t *s, size_t n) {
  lane_t *lanes = NULL;
  int nl = 0, cap = 0, kind = -1, rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (s[i].t1_ns < s[i].t0_ns) s[i].t1_ns = s[i].t0_ns;
    if (s[i].comm != kind) { /* the other kind's tracks start empty */
      for (int l = 0; l < nl; l++) lanes[l].depth = 0;
      kind = s[i].comm;
    }
    int l = 0;
    for (;; l++) {
      if (l == nl) {
        if (nl == cap) {
          int nc = cap ? 2 * cap : 4;
          lane_t *nv = realloc(lanes, (size_t)nc * sizeof *nv);
          if (!nv) {
            rc = -1;
            break;
          }
          memset(nv + cap, 0, (size_t)(nc - cap) * sizeof *nv);
          lanes = nv;
          cap = nc;
        }
        nl++;
      }
      lane_t *ln = &lanes[l];
      while (ln->depth > 0 && ln->end[ln->depth - 1] <= s[i].t0_ns) ln->depth--;
      if (ln->depth > 0 && ln->end[ln->depth - 1] < s[i].t1_ns) continue; /* would cross */
      if (ln->depth == ln->cap) {
        size_t nc = ln->cap ? 2 * ln->cap : 8;
        int64_t *ne = realloc(ln->end, nc * sizeof *ne);
        if (!ne) {
          rc = -1;
          break;
        }
        ln->end = ne;
        ln->cap = nc;
      }
      ln->end[ln->depth++] = s[i].t1_ns;
      s[i].tid = TRACE_KINDS_PER_LANE * l + s[i].comm;
      break;
    }
  }
  for (int l = 0; l < cap; l++) free(lanes[l].end);
  free(lanes);
  return rc ? -1 : nl;
}

void trace_json_process(trace_json_t *t, int pid, const char *name, const char *cat,
                        trace_slice_t *s, size_t n) {
  write_meta(t, "process_name", pid, -1, "name", name, 0);
  write_meta(t, "process_sort_index", pid, -1, "sort_index", NULL, pid);
  qsort(s, n, sizeof *s, cmp_slice);
  if (assign_lanes(s, n) < 0) {
    if (!t->f.err_no) t->f.err_no = ENOMEM;
    return;
  }
  int max_tid = 1; /* compute and communication are always named, further tracks when used */
  for (size_t i = 0; i < n; i++)
    if (s[i].tid > max_tid) max_tid = s[i].tid;
  for (int tid = 0; tid <= max_tid; tid++) {
    int used = tid < TRACE_KINDS_PER_LANE;
    for (size_t i = 0; !used && i < n; i++) used = s[i].tid == tid;
    if (used) write_track(t, pid, tid);
  }
  for (size_t i = 0; i < n; i++) {
    char ts[32], dur[32];
    fmt_us(ts, sizeof ts, s[i].t0_ns);
    fmt_us(dur, sizeof dur, s[i].t1_ns - s[i].t0_ns);
    runlog_file_printf(&t->f, "%s\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, "
                       "\"tid\": %d, \"ts\": %s, \"dur\": %s, \"args\": {\"step\": %lld, "
                       "\"micro\": %d}}",
                       t->first ? "" : ",", s[i].name, cat ? cat : s[i].comm ? "comm" : "compute",
                       pid, s[i].tid, ts, dur, (long long)s[i].step, s[i].micro);
    t->first = 0;
  }
}

/* Copies the file at `from` to `to` (a new file). 0 or -1 with errno set. */
static int copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) return -1;
  int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    int e = errno;
    close(in);
    errno = e;
    return -1;
  }
  char buf[65536];
  ssize_t r;
  int rc = 0;
  while (rc == 0 && (r = read(in, buf, sizeof buf)) != 0) {
    if (r < 0) {
      if (errno != EINTR) rc = -1;
      continue;
    }
    for (ssize_t off = 0; rc == 0 && off < r;) {
      ssize_t w = write(out, buf + off, (size_t)(r - off));
      if (w < 0 && errno != EINTR) rc = -1;
      else if (w > 0) off += w;
    }
  }
  int e = errno;
  close(in);
  if (close(out) != 0 && rc == 0) rc = -1, e = errno;
  errno = e;
  return rc;
}

/* The test suite's copy (trace_json.h). */
static void keep_copy(const char *path) {
  const char *dir = getenv("STRATA_TRACE_COPY_DIR");
  if (!dir || !*dir) return;
  static unsigned counter;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char to[RUNLOG_PATH_MAX + 64];
  snprintf(to, sizeof to, "%s/trace-%ld-%u-%lld%09ld.json", dir, (long)getpid(), counter++,
           (long long)ts.tv_sec, ts.tv_nsec);
  if (link(path, to) != 0 && copy_file(path, to) != 0)
    strata_warn("cannot keep a copy of %s in STRATA_TRACE_COPY_DIR as %s: %s", path, to,
                strerror(errno));
}

int trace_json_commit(trace_json_t *t, char *err, size_t errlen) {
  runlog_file_printf(&t->f, "\n]}\n");
  if (runlog_file_commit(&t->f, err, errlen)) return -1;
  keep_copy(t->f.path);
  return 0;
}

void trace_json_abort(trace_json_t *t) { runlog_file_abort(&t->f); }
