/* Minimal assertion helpers for Strata's C tests. Each failed check prints file:line and the
 * values compared, and marks the test failed; main() returns test_finish(). Multi-rank tests
 * prefix messages with the MPI rank (set with test_set_rank). */
#ifndef STRATA_TEST_UTIL_H
#define STRATA_TEST_UTIL_H
#include <stddef.h>
#include <stdint.h>

extern int test_failures; /* number of failed checks so far in this process */
extern int test_checks;   /* number of checks run so far */
void test_set_rank(int rank);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int test_finish(const char *name); /* prints a summary line, returns process exit code */
/* Reads a whole file into a malloc'd buffer; NULL on failure. */
void *test_read_file(const char *path, size_t *len_out);
/* Path of a file in the source tree: $STRATA_SOURCE_DIR/rel (static buffer). */
const char *test_src_path(const char *rel);

#define CHECK_TRUE(c)                                                                 \
  do {                                                                                \
    test_checks++;                                                                    \
    if (!(c)) test_fail(__FILE__, __LINE__, "expected %s", #c);                       \
  } while (0)
#define CHECK_EQ_INT(a, b)                                                            \
  do {                                                                                \
    long long _a = (long long)(a), _b = (long long)(b);                               \
    test_checks++;                                                                    \
    if (_a != _b) test_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, _a, #b, _b); \
  } while (0)
#define CHECK_NEAR(a, b, tol)                                                         \
  do {                                                                                \
    double _a = (double)(a), _b = (double)(b), _t = (double)(tol);                    \
    test_checks++;                                                                    \
    if (!(_a - _b <= _t && _b - _a <= _t))                                            \
      test_fail(__FILE__, __LINE__, "%s = %.9g, expected %.9g within %.3g", #a, _a, _b, _t); \
  } while (0)
#endif
