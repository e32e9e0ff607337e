/* util.h -- the small helpers every worker module needs: a monotonic clock, error messages
 * into a caller's buffer, `mkdir -p`, and opening only regular files. */
#ifndef STRATA_UTIL_H
#define STRATA_UTIL_H

#include <stddef.h>
#include <stdio.h>

/* Seconds on the monotonic clock (for durations, never for dates). */
double strata_now_s(void);
/* The calling thread's CPU time in seconds (the work it got done, whoever else ran). */
double strata_thread_cpu_s(void);

/* Formats a message into err (when err and errlen are non-zero) and returns -1, so error
 * paths read `return strata_fail(err, errlen, "what went wrong: %s", why);`. */
int strata_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Creates `path` and its missing parents (mode 0755); fails, naming the component, when one
 * cannot be created or `path` exists and is not a directory. Returns 0 or -1. */
int strata_mkdirs(const char *path, char *err, size_t errlen);

/* Creates (or truncates) `path` with buf[0..len) followed by `tail` (NULL: nothing), then
 * fflush, fsync and fclose, each checked: the file is on disk when this returns 0. -1 with
 * err "<what> '<path>': cannot create / write failed: <errno text>". */
int strata_write_synced(const char *what, const char *path, const void *buf, size_t len, const char *tail,
                        char *err, size_t errlen);

/* fopen(path, "rb") of a regular file only: a FIFO or a device would block or never end.
 * NULL with errno set (EINVAL for a non-regular file). */
FILE *strata_fopen_regular(const char *path);

/* Sorts v[0..n) in increasing order (for medians of timings). */
void strata_sort_doubles(double *v, size_t n);

#endif
