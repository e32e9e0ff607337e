/* The strict number parser (collectives/include/strata/strnum.h) at its boundaries, the flag parser's ranges,
 * sentinels and given bits (worker/cli/args.h) and the environment reader (worker/base/env.h).
 * Reference values are the C limits themselves (INT64_MAX, 2^63, DBL_MAX's decade). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "env.h"
#include "strata/strnum.h"
#include "test_util.h"

static void expect_int(const char *s_in, int rc, int64_t want) {
  const char *s = s_in ? s_in : "(null)"; /* printed below; the parser gets s_in */
  int64_t v = 12345;
  int got = strnum_parse_int64(s_in, &v);
  if (got != rc) test_fail(__FILE__, __LINE__, "strnum_parse_int64('%s') = %d, expected %d", s, got, rc);
  test_checks++;
  if (rc == STRNUM_OK && v != want)
    test_fail(__FILE__, __LINE__, "strnum_parse_int64('%s') gave %lld, expected %lld", s, (long long)v, (long long)want);
  if (rc != STRNUM_OK && v != 12345) test_fail(__FILE__, __LINE__, "'%s' wrote *out on failure", s);
}

static void expect_double(const char *s, int rc, double want) {
  double v = 0.25;
  int got = strnum_parse_double(s, &v);
  test_checks++;
  if (got != rc) test_fail(__FILE__, __LINE__, "strnum_parse_double('%s') = %d, expected %d", s, got, rc);
  if (rc == STRNUM_OK && memcmp(&v, &want, sizeof v) != 0) /* bit-exact: -0 is not 0 */
    test_fail(__FILE__, __LINE__, "strnum_parse_double('%s') gave %.17g, expected %.17g", s, v, want);
}

static void expect_bytes(const char *s, int rc, int64_t want) {
  int64_t v = 0;
  int got = strnum_parse_bytes(s, &v);
  test_checks++;
  if (got != rc) test_fail(__FILE__, __LINE__, "strnum_parse_bytes('%s') = %d, expected %d", s, got, rc);
  if (rc == STRNUM_OK && v != want)
    test_fail(__FILE__, __LINE__, "strnum_parse_bytes('%s') gave %lld, expected %lld", s, (long long)v, (long long)want);
}

static void test_integers(void) {
  expect_int("0", STRNUM_OK, 0);
  expect_int("-0", STRNUM_OK, 0);
  expect_int("42", STRNUM_OK, 42);
  expect_int("010", STRNUM_OK, 10); /* leading zeros are decimal, never octal */
  expect_int("9223372036854775807", STRNUM_OK, INT64_MAX);
  expect_int("-9223372036854775808", STRNUM_OK, INT64_MIN);
  expect_int("9223372036854775808", STRNUM_ERANGE, 0); /* 2^63 */
  expect_int("-9223372036854775809", STRNUM_ERANGE, 0);
  expect_int("99999999999999999999999", STRNUM_ERANGE, 0);
  const char *bad[] = {"", "-", "+1", " 1", "1 ", "0x10", "1e3", "1.0", "nan", "inf", "1_000", "--1", "1-", "\t1", NULL};
  for (int i = 0; bad[i]; i++) expect_int(bad[i], STRNUM_ESYNTAX, 0);
  expect_int(NULL, STRNUM_ESYNTAX, 0);
}

static void test_numbers(void) {
  expect_double("0", STRNUM_OK, 0.0);
  expect_double("-0", STRNUM_OK, -0.0);
  expect_double(".5", STRNUM_OK, 0.5);
  expect_double("5.", STRNUM_OK, 5.0);
  expect_double("3e-3", STRNUM_OK, 3e-3);
  expect_double("1E+2", STRNUM_OK, 100.0);
  expect_double("1e308", STRNUM_OK, 1e308);
  expect_double("1.7976931348623157e308", STRNUM_OK, DBL_MAX);
  expect_double("1e309", STRNUM_ERANGE, 0);
  expect_double("-1e309", STRNUM_ERANGE, 0);
  expect_double("1e-400", STRNUM_OK, 0.0); /* below the smallest subnormal: rounds to 0 */
  const char *bad[] = {"", ".", "-", "+1", " 1", "1 ", "1e", "1e+", "e5", "0x10", "0x1p3", "nan", "NaN",
                       "inf", "-inf", "infinity", "1,5", "1..2", "1e5.5", NULL};
  for (int i = 0; bad[i]; i++) expect_double(bad[i], STRNUM_ESYNTAX, 0);
}

static void test_bytes(void) {
  expect_bytes("0", STRNUM_OK, 0);
  expect_bytes("64", STRNUM_OK, 64);
  expect_bytes("8K", STRNUM_OK, 8192);
  expect_bytes("8k", STRNUM_OK, 8192);
  expect_bytes("16M", STRNUM_OK, 16 << 20);
  expect_bytes("1G", STRNUM_OK, 1 << 30);
  expect_bytes("9223372036854775807", STRNUM_OK, INT64_MAX);
  expect_bytes("8589934591G", STRNUM_OK, (int64_t)8589934591 << 30); /* the largest whole G */
  expect_bytes("8589934592G", STRNUM_ERANGE, 0);                      /* 2^63: overflows */
  expect_bytes("9007199254740992K", STRNUM_ERANGE, 0);                 /* 2^53 K = 2^63 */
  expect_bytes("9223372036854775808", STRNUM_ERANGE, 0);
  /* IEC and SI suffixes: KiB.. = 1024^n (as the bare letters), KB.. = 1000^n, B = bytes */
  expect_bytes("1MiB", STRNUM_OK, 1 << 20);
  expect_bytes("16GiB", STRNUM_OK, (int64_t)16 << 30);
  expect_bytes("16G", STRNUM_OK, (int64_t)16 << 30);
  expect_bytes("1M", STRNUM_OK, 1 << 20);
  expect_bytes("1MB", STRNUM_OK, 1000000);
  expect_bytes("16GB", STRNUM_OK, 16000000000);
  expect_bytes("2kB", STRNUM_OK, 2000);
  expect_bytes("3KiB", STRNUM_OK, 3072);
  expect_bytes("1T", STRNUM_OK, (int64_t)1 << 40);
  expect_bytes("1TB", STRNUM_OK, 1000000000000);
  expect_bytes("512B", STRNUM_OK, 512);
  expect_bytes("8388607TiB", STRNUM_OK, (int64_t)8388607 << 40);       /* the largest whole TiB */
  expect_bytes("8388608TiB", STRNUM_ERANGE, 0);                        /* 2^63 */
  expect_bytes("9223373TB", STRNUM_ERANGE, 0);                         /* 9.223373e18 > INT64_MAX */
  const char *bad[] = {"", "-1", "+1", " 1", "1 ", "K", "KiB", "1Kib", "1Mb", "1MIB", "1iB", "1BB",
                       "1 MiB", "1P", "1.5M", "0x10", "1e3", "12Q", "nan", NULL};
  for (int i = 0; bad[i]; i++) expect_bytes(bad[i], STRNUM_ESYNTAX, 0);
}

static void expect_check(const char *s, const strnum_range_t *r, int ok, const char *msg) {
  strnum_value_t v;
  char err[256] = "";
  int rc = strnum_check("--x", s, r, &v, err, sizeof err);
  test_checks++;
  if ((rc == 0) != ok) test_fail(__FILE__, __LINE__, "strnum_check('%s') = %d, expected %s", s, rc, ok ? "ok" : "refusal");
  if (!ok && strcmp(err, msg)) test_fail(__FILE__, __LINE__, "message '%s', expected '%s'", err, msg);
}

static void test_ranges(void) {
  const strnum_range_t steps = {STRNUM_INT, 1, 1e9, 0};
  expect_check("1", &steps, 1, NULL);
  expect_check("1000000000", &steps, 1, NULL);
  expect_check("-1", &steps, 0, "--x must be an integer in [1, 1000000000], got '-1'");
  expect_check("0", &steps, 0, "--x must be an integer in [1, 1000000000], got '0'");
  expect_check("1000000001", &steps, 0, "--x must be an integer in [1, 1000000000], got '1000000001'");
  expect_check("", &steps, 0, "--x must be an integer in [1, 1000000000], got ''");
  const strnum_range_t seed = {STRNUM_INT, 0, 0x1p63, 0};
  expect_check("9223372036854775807", &seed, 1, NULL);
  expect_check("9223372036854775808", &seed, 0, "--x must be an integer in [0, 2^63), got '9223372036854775808'");
  const strnum_range_t top_p = {STRNUM_DOUBLE, 0, 1, STRNUM_OPEN_MIN};
  expect_check("1", &top_p, 1, NULL);
  expect_check("1e-300", &top_p, 1, NULL);
  expect_check("0", &top_p, 0, "--x must be a number in (0, 1], got '0'");
  expect_check("-0", &top_p, 0, "--x must be a number in (0, 1], got '-0'");
  const strnum_range_t open_max = {STRNUM_DOUBLE, 0, 1, STRNUM_OPEN_MAX};
  expect_check("1", &open_max, 0, "--x must be a number in [0, 1), got '1'");
  const strnum_range_t nonneg = {STRNUM_DOUBLE, 0, INFINITY, 0};
  expect_check("1e308", &nonneg, 1, NULL);
  expect_check("-1", &nonneg, 0, "--x must be a number >= 0, got '-1'");
  const strnum_range_t bytes = {STRNUM_BYTES, 16, 1 << 30, 0};
  expect_check("16", &bytes, 1, NULL);
  expect_check("1G", &bytes, 1, NULL);
  expect_check("15", &bytes, 0, "--x must be a byte size in [16, 1G] (suffix K, M, G, T or KiB, MiB, GiB, TiB = 1024^n; "
               "KB, MB, GB, TB = 1000^n), got '15'");
  expect_check("1025M", &bytes, 0, "--x must be a byte size in [16, 1G] (suffix K, M, G, T or KiB, MiB, GiB, TiB = 1024^n; "
               "KB, MB, GB, TB = 1000^n), got '1025M'");
  /* an open integer bound excludes the integer itself */
  const strnum_range_t open_int = {STRNUM_INT, 0, 10, STRNUM_OPEN_MIN | STRNUM_OPEN_MAX};
  expect_check("1", &open_int, 1, NULL);
  expect_check("0", &open_int, 0, "--x must be an integer in [1, 9], got '0'");
  /* JSON numbers that must be integers */
  int64_t x = 0;
  CHECK_TRUE(strnum_double_to_int64(16.0, &x) == 0 && x == 16);
  CHECK_TRUE(strnum_double_to_int64(-0x1p63, &x) == 0 && x == INT64_MIN);
  CHECK_TRUE(strnum_double_to_int64(0x1p63, &x) == -1); /* 2^63: no int64 */
  CHECK_TRUE(strnum_double_to_int64(1e30, &x) == -1);
  CHECK_TRUE(strnum_double_to_int64(1.5, &x) == -1);
  CHECK_TRUE(strnum_double_to_int64(NAN, &x) == -1);
}

/* args_parse on a small table: ranges, a sentinel, given bits, and the one-sentence error. */
static int parse(const arg_spec_t *specs, int n, const char *a1, const char *a2) {
  char *argv[4] = {(char *)"t", (char *)a1, (char *)a2, NULL};
  int argc = a2 ? 3 : a1 ? 2 : 1;
  return args_parse("t", "test", argc, argv, specs, n, NULL, NULL);
}

static void test_args(void) {
  int steps = 7, steps_given = 0, limit = 0;
  double lr = 0.5;
  size_t bytes = 0;
  arg_spec_t specs[] = {
      {"--steps", NULL, ARG_INT, &steps, "N", "steps", .min = 1, .max = 100, .given = &steps_given},
      {"--limit", NULL, ARG_INT, &limit, "N", "limit; -1 = unlimited", .min = 0, .max = 10, .sentinel = "-1"},
      {"--lr", NULL, ARG_DOUBLE, &lr, "LR", "lr", .min = 0, .max = 1, .open = ARG_OPEN_MIN},
      {"--bytes", NULL, ARG_BYTES, &bytes, "B", "bytes", .env = "STRATA_SERVE_MAX_REQUEST_BYTES"},
  };
  const int n = (int)(sizeof specs / sizeof specs[0]);
  CHECK_EQ_INT(parse(specs, n, NULL, NULL), 0);
  CHECK_EQ_INT(steps_given, 0);
  CHECK_EQ_INT(steps, 7);
  CHECK_EQ_INT(parse(specs, n, "--steps", "100"), 0);
  CHECK_EQ_INT(steps_given, 1);
  CHECK_EQ_INT(steps, 100);
  CHECK_EQ_INT(parse(specs, n, "--steps=-1", NULL), -1);
  CHECK_EQ_INT(parse(specs, n, "--steps", "0x10"), -1);
  CHECK_EQ_INT(steps, 100); /* untouched by the refusals */
  CHECK_EQ_INT(parse(specs, n, "--limit", "-1"), 0);
  CHECK_EQ_INT(limit, -1);
  CHECK_EQ_INT(parse(specs, n, "--limit", "-2"), -1);
  CHECK_EQ_INT(parse(specs, n, "--limit", "11"), -1);
  CHECK_EQ_INT(parse(specs, n, "--lr", "0"), -1);
  CHECK_EQ_INT(parse(specs, n, "--lr", "nan"), -1);
  CHECK_EQ_INT(parse(specs, n, "--lr", "1"), 0);
  CHECK_NEAR(lr, 1.0, 0);
  /* the range of .env's variable (worker/base/env.c: [16, 1G]) */
  CHECK_EQ_INT(parse(specs, n, "--bytes", "15"), -1);
  CHECK_EQ_INT(parse(specs, n, "--bytes", "1G"), 0);
  CHECK_EQ_INT(bytes, 1 << 30);
  CHECK_EQ_INT(parse(specs, n, "--bytes", "1MiB"), 0); /* every size flag takes IEC and SI units */
  CHECK_EQ_INT(bytes, 1 << 20);
  CHECK_EQ_INT(parse(specs, n, "--bytes", "1MB"), 0);
  CHECK_EQ_INT(bytes, 1000000);
  strnum_range_t r;
  args_spec_range(&specs[3], &r);
  CHECK_TRUE(r.kind == STRNUM_BYTES && r.min == 16 && r.max == 1 << 30);
  /* ARG_INT without a range: the whole int */
  arg_spec_t plain = {"--n", NULL, ARG_INT, &steps, "N", "n"};
  CHECK_EQ_INT(parse(&plain, 1, "--n", "-2147483648"), 0);
  CHECK_EQ_INT(steps, -2147483648LL);
  CHECK_EQ_INT(parse(&plain, 1, "--n", "2147483648"), -1);
}

static void test_env(void) {
  int64_t v;
  double d;
  size_t z;
  char err[256];
  unsetenv("STRATA_INFER_MAX_BATCH");
  CHECK_EQ_INT(env_read_int("STRATA_INFER_MAX_BATCH", 16, &v, err, sizeof err), 0);
  CHECK_EQ_INT(v, 16);
  setenv("STRATA_INFER_MAX_BATCH", "", 1); /* empty: the default */
  CHECK_EQ_INT(env_read_int("STRATA_INFER_MAX_BATCH", 16, &v, err, sizeof err), 0);
  CHECK_EQ_INT(v, 16);
  setenv("STRATA_INFER_MAX_BATCH", "512", 1);
  CHECK_EQ_INT(env_read_int("STRATA_INFER_MAX_BATCH", 16, &v, err, sizeof err), 0);
  CHECK_EQ_INT(v, 512);
  setenv("STRATA_INFER_MAX_BATCH", "513", 1);
  CHECK_EQ_INT(env_read_int("STRATA_INFER_MAX_BATCH", 16, &v, err, sizeof err), -1);
  CHECK_EQ_INT(v, 16);
  CHECK_TRUE(!strcmp(err, "STRATA_INFER_MAX_BATCH must be an integer in [1, 512], got '513' "
                          "(environment variable; unset it for the default)"));
  CHECK_EQ_INT(env_check_all(err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "STRATA_INFER_MAX_BATCH") != NULL);
  unsetenv("STRATA_INFER_MAX_BATCH");
  CHECK_EQ_INT(env_check_all(err, sizeof err), 0);
  setenv("STRATA_BUCKET_MB", "0x10", 1);
  CHECK_EQ_INT(env_read_double("STRATA_BUCKET_MB", 4.0, &d, err, sizeof err), -1);
  CHECK_NEAR(d, 4.0, 0);
  unsetenv("STRATA_BUCKET_MB");
  setenv("STRATA_SERVE_MAX_REQUEST_BYTES", "64K", 1);
  CHECK_EQ_INT(env_read_bytes("STRATA_SERVE_MAX_REQUEST_BYTES", 1, &z, err, sizeof err), 0);
  CHECK_EQ_INT(z, 65536);
  setenv("STRATA_SERVE_MAX_REQUEST_BYTES", "64KiB", 1); /* variables take the same suffixes */
  CHECK_EQ_INT(env_read_bytes("STRATA_SERVE_MAX_REQUEST_BYTES", 1, &z, err, sizeof err), 0);
  CHECK_EQ_INT(z, 65536);
  setenv("STRATA_SERVE_MAX_REQUEST_BYTES", "64kB", 1);
  CHECK_EQ_INT(env_read_bytes("STRATA_SERVE_MAX_REQUEST_BYTES", 1, &z, err, sizeof err), 0);
  CHECK_EQ_INT(z, 64000);
  unsetenv("STRATA_SERVE_MAX_REQUEST_BYTES");
  /* a name the table does not describe, or with another kind, is a programming error */
  CHECK_EQ_INT(env_read_int("STRATA_NO_SUCH_VARIABLE", 1, &v, err, sizeof err), -1);
  CHECK_EQ_INT(env_read_int("STRATA_BUCKET_MB", 1, &v, err, sizeof err), -1);
  /* every variable of the table has a range that its own lower bound satisfies */
  int n;
  const strnum_env_t *t = env_table(&n);
  CHECK_TRUE(n >= 20);
  for (int i = 0; i < n; i++) {
    strnum_value_t lo = {(int64_t)t[i].range.min, t[i].range.min};
    if (t[i].range.open & STRNUM_OPEN_MIN) lo.d = nextafter(lo.d, INFINITY), lo.i++;
    if (!strnum_in_range(&t[i].range, lo)) test_fail(__FILE__, __LINE__, "%s: its minimum is outside its range", t[i].name);
    test_checks++;
  }
}

int main(void) {
  test_integers();
  test_numbers();
  test_bytes();
  test_ranges();
  test_args();
  test_env();
  return test_finish("cli_strnum");
}
