/* trace_check.c -- checks that a trace.json (Chrome trace-event JSON) is one Perfetto draws as
 * written, independently of the writer (worker/train/trace_json.c):
 *   - the document is {"traceEvents": [...]} and every event has a string "ph"; only complete
 *     slices ("X") and metadata ("M") occur;
 *   - metadata: process_name and thread_name carry a non-empty args.name, process_sort_index and
 *     thread_sort_index an integer args.sort_index, thread_* a tid;
 *   - every slice has a name, integer pid and tid, and "ts" / "dur" written as integral
 *     microseconds or decimals with at most three digits (nanoseconds), every number in the file
 *     with the same number of decimals (no float artefacts such as 12.300000000001 or 1e-05),
 *     dur >= 0;
 *   - every process with slices has a process_name, every track (pid, tid) with slices a
 *     thread_name, and each process names a "compute" and a "communication" track; a simulated
 *     timeline's name ("sim r0 (...)") says which steps it shows;
 *   - slices on one track strictly nest: sorted by start (longer first), no slice starts inside
 *     another and ends after it (times compared exactly, in integer nanoseconds).
 *
 * Usage: trace_check FILE... | trace_check --dir DIR (every *.json in DIR; none is fine).
 * Prints one line per file ("FILE: N slices on T tracks of P processes, nested") or every
 * problem found (at most 20 per file); exits 1 when any file fails, 2 on bad usage.
 */
#include <dirent.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROBLEMS 20

typedef struct {
  int pid, tid;
  int64_t t0, t1; /* ns */
  const char *name;
  size_t index;   /* in traceEvents */
} slice_t;

typedef struct {
  int pid, tid; /* tid -1: a process */
  const char *name;
} named_t;

typedef struct {
  const char *path;
  int problems;
  int decimals; /* of the first number seen; -1 before */
} check_t;

static void problem(check_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(check_t *c, const char *fmt, ...) {
  if (c->problems++ >= MAX_PROBLEMS) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", c->path);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* The number's text as written in the file (json-c keeps it) in ns: "12", "12.5", "-0.003".
 * 0, or -1 when it is not an integral or short fixed decimal. */
static int parse_us(check_t *c, json_object *v, size_t i, const char *key, int64_t *ns) {
  if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))) {
    problem(c, "event %zu: \"%s\" is not a number", i, key);
    return -1;
  }
  const char *s = json_object_to_json_string(v), *p = s;
  int neg = *p == '-';
  if (neg) p++;
  int64_t whole = 0, frac = 0;
  int nd = 0, nf = -1;
  for (; *p >= '0' && *p <= '9'; p++, nd++) whole = whole * 10 + (*p - '0');
  if (*p == '.')
    for (p++, nf = 0; *p >= '0' && *p <= '9'; p++, nf++) frac = frac * 10 + (*p - '0');
  if (nd == 0 || nd > 15 || *p || nf == 0 || nf > 3) {
    problem(c, "event %zu: \"%s\": %s is neither integral microseconds nor a decimal with 1-3 digits", i, key, s);
    return -1;
  }
  int decimals = nf < 0 ? 0 : nf;
  if (c->decimals < 0) c->decimals = decimals;
  else if (decimals != c->decimals) {
    problem(c, "event %zu: \"%s\": %s has %d decimals, the file's first number %d (not fixed precision)",
            i, key, s, decimals, c->decimals);
    return -1;
  }
  for (int k = decimals; k < 3; k++) frac *= 10;
  *ns = (neg ? -1 : 1) * (whole * 1000 + frac);
  return 0;
}

static int get_int(json_object *o, const char *key, int *out) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) return -1;
  *out = json_object_get_int(v);
  return 0;
}

static const char *get_str(json_object *o, const char *key) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) return NULL;
  return json_object_get_string(v);
}

static int cmp_slice(const void *pa, const void *pb) {
  const slice_t *a = pa, *b = pb;
  if (a->pid != b->pid) return a->pid < b->pid ? -1 : 1;
  if (a->tid != b->tid) return a->tid < b->tid ? -1 : 1;
  if (a->t0 != b->t0) return a->t0 < b->t0 ? -1 : 1;
  if (a->t1 != b->t1) return a->t1 > b->t1 ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index;
}

static const named_t *find_name(const named_t *names, size_t n, int pid, int tid) {
  for (size_t i = 0; i < n; i++)
    if (names[i].pid == pid && names[i].tid == tid) return &names[i];
  return NULL;
}

static int check_file(const char *path) {
  check_t c = {path, 0, -1};
  json_object *doc = json_object_from_file(path), *events;
  if (!doc || !json_object_object_get_ex(doc, "traceEvents", &events) ||
      !json_object_is_type(events, json_type_array)) {
    problem(&c, "not a JSON object with a \"traceEvents\" array");
    json_object_put(doc);
    return 1;
  }
  size_t n = json_object_array_length(events), ns = 0, nn = 0;
  slice_t *sl = calloc(n + 1, sizeof *sl);
  named_t *names = calloc(n + 1, sizeof *names);
  if (!sl || !names) {
    fprintf(stderr, "%s: out of memory\n", path);
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(events, i), *args = NULL;
    const char *ph = e ? get_str(e, "ph") : NULL, *name = e ? get_str(e, "name") : NULL;
    int pid = 0, tid = -1;
    if (!ph || !name) {
      problem(&c, "event %zu has no string \"ph\" or \"name\"", i);
      continue;
    }
    if (get_int(e, "pid", &pid)) {
      problem(&c, "event %zu (%s) has no integer pid", i, name);
      continue;
    }
    json_object_object_get_ex(e, "args", &args);
    if (!strcmp(ph, "M")) {
      int is_thread = !strncmp(name, "thread_", 7);
      if (is_thread && get_int(e, "tid", &tid)) {
        problem(&c, "event %zu (%s of pid %d) has no integer tid", i, name, pid);
        continue;
      }
      if (!strcmp(name, "process_name") || !strcmp(name, "thread_name")) {
        const char *v = args ? get_str(args, "name") : NULL;
        if (!v || !*v) problem(&c, "event %zu (%s of pid %d) has no args.name", i, name, pid);
        else names[nn++] = (named_t){pid, is_thread ? tid : -1, v};
        if (v && !is_thread && !strncmp(v, "sim ", 4) && !strstr(v, "steps"))
          problem(&c, "pid %d: the simulated timeline \"%s\" does not say which steps it shows", pid, v);
      } else if (!strcmp(name, "process_sort_index") || !strcmp(name, "thread_sort_index")) {
        int k;
        if (!args || get_int(args, "sort_index", &k))
          problem(&c, "event %zu (%s of pid %d) has no integer args.sort_index", i, name, pid);
      } else {
        problem(&c, "event %zu: unknown metadata \"%s\"", i, name);
      }
      continue;
    }
    if (strcmp(ph, "X")) {
      problem(&c, "event %zu (%s) has phase \"%s\"; only complete slices (X) and metadata (M) are expected", i, name, ph);
      continue;
    }
    json_object *ts = NULL, *dur = NULL;
    json_object_object_get_ex(e, "ts", &ts);
    json_object_object_get_ex(e, "dur", &dur);
    int64_t t0, d;
    if (get_int(e, "tid", &tid)) {
      problem(&c, "slice %zu (%s of pid %d) has no integer tid", i, name, pid);
      continue;
    }
    if (parse_us(&c, ts, i, "ts", &t0) || parse_us(&c, dur, i, "dur", &d)) continue;
    if (d < 0) {
      problem(&c, "slice %zu (%s of pid %d tid %d) has a negative dur", i, name, pid, tid);
      continue;
    }
    sl[ns++] = (slice_t){pid, tid, t0, t0 + d, name, i};
  }
  qsort(sl, ns, sizeof *sl, cmp_slice);
  /* names of processes and tracks, then nesting per track (a stack of open slices) */
  size_t tracks = 0, procs = 0;
  slice_t **stack = calloc(ns + 1, sizeof *stack);
  size_t depth = 0;
  for (size_t i = 0; i < ns; i++) {
    const slice_t *s = &sl[i];
    int new_proc = i == 0 || s->pid != sl[i - 1].pid;
    int new_track = new_proc || s->tid != sl[i - 1].tid;
    if (new_proc) {
      procs++;
      if (!find_name(names, nn, s->pid, -1)) problem(&c, "pid %d has slices but no process_name", s->pid);
      const named_t *a = find_name(names, nn, s->pid, 0), *b = find_name(names, nn, s->pid, 1);
      if (!a || strcmp(a->name, "compute") || !b || strcmp(b->name, "communication"))
        problem(&c, "pid %d does not name tid 0 \"compute\" and tid 1 \"communication\"", s->pid);
    }
    if (new_track) {
      tracks++;
      depth = 0;
      if (!find_name(names, nn, s->pid, s->tid))
        problem(&c, "track pid %d tid %d has slices but no thread_name", s->pid, s->tid);
    }
    while (depth > 0 && stack[depth - 1]->t1 <= s->t0) depth--;
    if (depth > 0 && stack[depth - 1]->t1 < s->t1) {
      const slice_t *o = stack[depth - 1];
      problem(&c, "pid %d tid %d: slice %zu (%s, [%lld, %lld) ns) partly overlaps slice %zu (%s, "
              "[%lld, %lld) ns): it starts inside and ends after it",
              s->pid, s->tid, s->index, s->name, (long long)s->t0, (long long)s->t1, o->index,
              o->name, (long long)o->t0, (long long)o->t1);
      continue;
    }
    stack[depth++] = &sl[i];
  }
  if (c.problems > MAX_PROBLEMS)
    fprintf(stderr, "%s: %d more problems not shown\n", path, c.problems - MAX_PROBLEMS);
  if (!c.problems)
    printf("%s: %zu slices on %zu tracks of %zu processes, nested\n", path, ns, tracks, procs);
  free(stack);
  free(sl);
  free(names);
  json_object_put(doc);
  return c.problems ? 1 : 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

int main(int argc, char **argv) {
  if (argc < 2 || (!strcmp(argv[1], "--dir") && argc != 3)) {
    fprintf(stderr, "usage: trace_check FILE... | trace_check --dir DIR\n");
    return 2;
  }
  int bad = 0, files = 0;
  if (!strcmp(argv[1], "--dir")) {
    DIR *d = opendir(argv[2]);
    if (!d) {
      fprintf(stderr, "trace_check: cannot open directory %s\n", argv[2]);
      return 2;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
      if (!ends_with(de->d_name, ".json")) continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[2], de->d_name);
      bad += check_file(path);
      files++;
    }
    closedir(d);
  } else {
    for (int i = 1; i < argc; i++, files++) bad += check_file(argv[i]);
  }
  printf("trace_check: %d file(s), %d failed\n", files, bad);
  return bad ? 1 : 0;
}
