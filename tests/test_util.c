/* Assertion helpers shared by the C tests (see test_util.h). */
#include "test_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int test_failures = 0;
int test_checks = 0;
static int test_rank = -1;

void test_set_rank(int rank) { test_rank = rank; }

void test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  test_failures++;
  if (test_failures > 50) return; /* enough to diagnose; keep logs readable */
  if (test_rank >= 0) fprintf(stderr, "[r%d] ", test_rank);
  fprintf(stderr, "FAIL %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int test_finish(const char *name) {
  if (test_rank <= 0)
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
  return test_failures ? 1 : 0;
}

void *test_read_file(const char *path, size_t *len_out) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc(n > 0 ? (size_t)n : 1);
  if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf && len_out) *len_out = (size_t)n;
  return buf;
}

const char *test_src_path(const char *rel) {
  static char buf[4096];
  const char *root = getenv("STRATA_SOURCE_DIR");
  snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
  return buf;
}
