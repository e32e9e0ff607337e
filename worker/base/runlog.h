/* runlog.h -- the run directory's records (steps.jsonl, report.json, report.pb, trace.json),
 * written so that a full disk or an I/O error never leaves a torn record and is never silent.
 *
 * Three pieces, shared by the single-rank loop (train.c) and the coordinator (coordinator.c):
 *
 *   runlog_lines_*   an append-only log of whole lines. Each line is formatted into a buffer by
 *                    the caller and goes to the file in one write(2) on an O_APPEND descriptor
 *                    (repeated only for a short write). A write that fails after part of the line
 *                    reached the file is undone with ftruncate to the line's start, so the file
 *                    is always a sequence of whole lines.
 *   runlog_steps_*   the steps log's policy on top of it: the first failed record prints ONE
 *                    warning naming the file, the error and the step, and that record and every
 *                    later one are dropped (the file stays a prefix of the steps); the job goes on.
 *                    runlog_steps_close says whether every record reached the disk, for
 *                    report.json's "steps_log_complete".
 *   runlog_file_*    a whole file replaced atomically: written to PATH.tmp, then fflush, fsync,
 *                    fclose, rename over PATH and fsync of the directory, each checked. Until the
 *                    rename PATH is untouched; any failure before it removes PATH.tmp.
 *   runlog_json_*    JSON through json-c: strings are escaped, a non-finite number is null (never
 *                    nan or inf), and a finite one keeps the printf format the caller chose.
 *
 * Library code: functions return -1 with one sentence in err naming the file and the error; only
 * runlog_steps_* print (the warning), because their whole point is to keep the job running.
 * What each failure means for the job is in RELIABILITY.md ("Full disk").
 *
 * Example (one step record):
 *   json_object *rec = json_object_new_object();
 *   json_object_object_add(rec, "step", json_object_new_int64(step));
 *   json_object_object_add(rec, "loss", runlog_json_num(loss, "%.9g"));   // null when NaN
 *   runlog_steps_append(&log, step, rec);                                   // takes rec
 */
#ifndef STRATA_RUNLOG_H
#define STRATA_RUNLOG_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define RUNLOG_PATH_MAX 4200

/* ---- whole-line appends ---- */

typedef struct {
  int fd;                      /* O_WRONLY | O_APPEND descriptor; -1 when not open */
  char path[RUNLOG_PATH_MAX];  /* for messages */
  int lost;                    /* runlog_steps_*: a record failed; later ones are dropped */
  int64_t lost_step;           /* the first step not logged (valid when lost) */
} runlog_lines_t;

/* Opens (creating it, mode 0644) `path` for appending; append == 0 truncates it first (a fresh
 * run), append != 0 keeps its lines (a resumed run). 0, or -1 with a message. */
int runlog_lines_open(runlog_lines_t *l, const char *path, int append, char *err, size_t errlen);

/* Appends line[0..len) (the caller includes the '\n') as one record: one write(2), repeated for
 * a short write. On failure the part written, if any, is cut off again with ftruncate, and err
 * says what failed (and whether the cut failed too: then the file ends in a partial line).
 * 0 or -1. */
int runlog_lines_append(runlog_lines_t *l, const char *line, size_t len, char *err, size_t errlen);

/* fsync and close (either may report a delayed write error). Safe on a closed log. 0 or -1. */
int runlog_lines_close(runlog_lines_t *l, char *err, size_t errlen);

/* ---- the steps log's policy ---- */

/* Serializes `rec` (a JSON object; this call takes the reference; NULL counts as out of memory)
 * on one line and appends it, unless an earlier record was lost. On the first failure prints
 *   warning: RUN/steps.jsonl: No space left on device; step 33 and later are not logged
 *   (training continues; checkpoints are written and checked separately)
 * and drops this record and every later one. Never fails the job. */
void runlog_steps_append(runlog_lines_t *l, int64_t step, json_object *rec);

/* Closes the log (fsync + close; a failure warns as above, once). Returns 1 when every record
 * given to runlog_steps_append reached the disk, else 0. */
int runlog_steps_close(runlog_lines_t *l);

/* ---- atomic whole files ---- */

typedef struct {
  FILE *f;                          /* PATH.tmp; NULL once committed or aborted */
  char path[RUNLOG_PATH_MAX];
  char tmp[RUNLOG_PATH_MAX + 8];
  int err_no;                       /* first error of a write (0: none so far) */
} runlog_file_t;

/* Creates PATH.tmp (replacing a stale one; a symbolic link there is refused, not followed).
 * 0, or -1 with a message. */
int runlog_file_open(runlog_file_t *w, const char *path, char *err, size_t errlen);

/* Append to the temporary file. A failure is remembered (the first errno) and every later call
 * does nothing; runlog_file_commit reports it. */
void runlog_file_printf(runlog_file_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void runlog_file_write(runlog_file_t *w, const void *buf, size_t len);

/* Publishes the file: checks that every write succeeded, then fflush, fsync, fclose and rename
 * PATH.tmp over PATH, then fsyncs the directory. Any failure before the rename removes PATH.tmp
 * and leaves PATH as it was; err names PATH, the step that failed and the error. A failed
 * directory fsync (after the rename: PATH is new, its durability unknown) is reported too.
 * 0 or -1. */
int runlog_file_commit(runlog_file_t *w, char *err, size_t errlen);

/* Drops the temporary file (after an error of the caller's). Safe after commit. */
void runlog_file_abort(runlog_file_t *w);

/* open + write + commit of a whole buffer. 0 or -1. */
int runlog_write_file(const char *path, const void *buf, size_t len, char *err, size_t errlen);

/* ---- JSON ---- */

/* A number written with printf format `fmt` (one double conversion, e.g. "%.9g"), or JSON null
 * (json-c's NULL object) when v is NaN or infinite. */
json_object *runlog_json_num(double v, const char *fmt);

/* A JSON string (escaped when serialized), or null for a NULL pointer. */
json_object *runlog_json_str(const char *s);

/* json_object_object_add that tolerates obj == NULL (an allocation that failed: v is dropped,
 * and the caller's NULL document is reported when written). */
void runlog_json_add(json_object *obj, const char *key, json_object *v);

/* Serializes a JSON value the way the run directory's files are laid out: compact with a space
 * after ':' and ',' ({"step": 3, "loss": 2.5}); with multiline, an object's members go one per
 * line, indented two spaces, and a member that is an array has one element per line (report.json).
 * '/' is not escaped. A malloc'd string (no final newline), or NULL when out of memory. */
char *runlog_json_text(json_object *v, int multiline, size_t *len_out);

/* Writes `doc` (multiline, with a final newline) atomically to path; doc == NULL (out of memory)
 * fails. 0 or -1. */
int runlog_json_write(const char *path, json_object *doc, char *err, size_t errlen);

#endif /* STRATA_RUNLOG_H */
