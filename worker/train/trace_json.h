/* trace_json.h -- trace.json, the Chrome trace-event file of a training run (both loops: the
 * coordinator's on every layout, train.c's on one rank), laid out so that Perfetto
 * (ui.perfetto.dev) and chrome://tracing draw every slice where it was written.
 *
 * Layout: one process per rank (pid = rank) and, with a simulated device, one per simulated rank
 * (pid 1000 + rank). Each process has a "compute" track (tid 0: fwd, bwd, optim, checkpoint) and
 * a "communication" track (tid 1: send, recv, allreduce, as PyTorch's profiler puts collectives
 * on their own stream), named with thread_name metadata, ordered with process_sort_index /
 * thread_sort_index. Slices on one track strictly nest: a slice that would partly overlap an
 * open one on its track (two bucket all-reduces in flight at once, a send still on the wire when
 * the next starts) goes to the first further track of the same kind where it nests, named
 * "compute 2", "communication 2", ... (tid 2k + kind). Times are integer nanoseconds on the
 * writer's side and are printed as microseconds with exactly three decimals ("ts": 1234.567),
 * so a slice's end (ts + dur) is exact and never a float artefact.
 *
 * Usage
 *    trace_json_t t;
 *    if (trace_json_open(&t, "RUN/trace.json", err, sizeof err) == 0) {
 *      trace_json_process(&t, 0, "rank 0 (t 0, stage 0, replica 0)", NULL, slices, n);  // per process
 *      trace_json_commit(&t, err, sizeof err);   // atomic: trace.json appears whole or not at all
 *    }
 *
 * The test suite sets STRATA_TRACE_COPY_DIR: every committed trace.json is then also linked (or
 * copied) there under a unique name, so that one test checks every trace the suite wrote
 * (tests/trace.cmake), including those of runs whose directories were removed afterwards.
 */
#ifndef STRATA_TRACE_JSON_H
#define STRATA_TRACE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "runlog.h"

/* One slice [t0_ns, t1_ns) of a process's timeline. */
typedef struct {
  const char *name;     /* "fwd", "allreduce", ... (a static string) */
  int comm;             /* 1: a communication track; 0: a compute track */
  int micro;            /* args.micro: micro-batch or bucket index, -1 for none */
  int64_t step;         /* args.step */
  int64_t t0_ns, t1_ns; /* t1_ns >= t0_ns (a shorter one is written with dur 0) */
  int tid;              /* set by trace_json_process */
} trace_slice_t;

/* A growable list of slices, at most `max` (later ones are dropped). */
typedef struct {
  trace_slice_t *s;
  size_t n, cap, max;
} trace_buf_t;

/* Appends a slice of seconds [t0_s, t1_s) (rounded to ns); nothing when full or out of memory. */
void trace_buf_add(trace_buf_t *b, const char *name, int comm, int micro, int64_t step,
                   double t0_s, double t1_s);
void trace_buf_free(trace_buf_t *b);

/* Seconds to the writer's nanoseconds (rounded to nearest). */
int64_t trace_ns(double s);

typedef struct {
  runlog_file_t f;
  int first; /* no event written yet */
} trace_json_t;

/* Creates PATH.tmp and writes the document's start. 0, or -1 with a message. */
int trace_json_open(trace_json_t *t, const char *path, char *err, size_t errlen);

/* Writes one process: its name (process_name, escaped), sort index = pid, its tracks' names
 * and sort indices, and its slices s[0..n) (sorted in place and given their tid), of category
 * `cat` (NULL: "compute" or "comm" by track kind). Out of memory is remembered and reported by
 * trace_json_commit. */
void trace_json_process(trace_json_t *t, int pid, const char *name, const char *cat,
                        trace_slice_t *s, size_t n);

/* Ends the document and publishes it atomically (runlog_file_commit); with STRATA_TRACE_COPY_DIR
 * set, also links or copies it there (a failure to do so warns). 0, or -1 with a message. */
int trace_json_commit(trace_json_t *t, char *err, size_t errlen);

/* Drops the temporary file. */
void trace_json_abort(trace_json_t *t);

#endif /* STRATA_TRACE_JSON_H */
