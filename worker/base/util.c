/* Small helpers shared by the worker modules (see util.h). */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double strata_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double strata_thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int strata_fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int strata_mkdirs(const char *path, char *err, size_t errlen) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return strata_fail(err, errlen, "directory path is too long: %s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return strata_fail(err, errlen, "cannot create directory '%s': %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST)
    return strata_fail(err, errlen, "cannot create directory '%s': %s", buf, strerror(errno));
  struct stat st;
  if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
    return strata_fail(err, errlen, "'%s' exists and is not a directory", path);
  return 0;
}

int strata_write_synced(const char *what, const char *path, const void *buf, size_t len, const char *tail,
                        char *err, size_t errlen) {
  FILE *fp = fopen(path, "wb");
  if (!fp) return strata_fail(err, errlen, "%s '%s': cannot create: %s", what, path, strerror(errno));
  int ok = fwrite(buf, 1, len, fp) == len && (!tail || fputs(tail, fp) != EOF) && fflush(fp) == 0 &&
           fsync(fileno(fp)) == 0;
  if (fclose(fp) != 0) ok = 0;
  if (!ok) return strata_fail(err, errlen, "%s '%s': write failed: %s", what, path, strerror(errno));
  return 0;
}

FILE *strata_fopen_regular(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return NULL;
  if (!S_ISREG(st.st_mode)) {
    errno = EINVAL;
    return NULL;
  }
  return fopen(path, "rb");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void strata_sort_doubles(double *v, size_t n) { qsort(v, n, sizeof *v, cmp_double); }
