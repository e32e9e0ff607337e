/* strnum.c -- strict parsing of numbers from text, ranges and their error sentence (strnum.h). */
#include "strata/strnum.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWO_POW_63 9223372036854775808.0

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int strnum_parse_int64(const char *s, int64_t *out) {
  if (!s) return STRNUM_ESYNTAX;
  const char *p = s;
  int neg = *p == '-';
  if (neg) p++;
  if (!is_digit(*p)) return STRNUM_ESYNTAX;
  /* accumulate the magnitude in uint64: INT64_MIN's magnitude is INT64_MAX + 1 */
  uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
  int overflow = 0;
  for (; is_digit(*p); p++) {
    uint64_t d = (uint64_t)(*p - '0');
    if (mag > (limit - d) / 10) overflow = 1;
    else mag = mag * 10 + d;
  }
  if (*p) return STRNUM_ESYNTAX;
  if (overflow) return STRNUM_ERANGE;
  *out = neg ? (mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
  return STRNUM_OK;
}

/* Length of the longest prefix of s that is a decimal number in the grammar of strnum.h, or 0. */
static size_t number_syntax(const char *s) {
  const char *p = s;
  if (*p == '-') p++;
  size_t int_digits = 0, frac_digits = 0;
  while (is_digit(*p)) p++, int_digits++;
  if (*p == '.') {
    p++;
    while (is_digit(*p)) p++, frac_digits++;
  }
  if (int_digits + frac_digits == 0) return 0;
  if (*p == 'e' || *p == 'E') {
    const char *q = p + 1;
    if (*q == '-' || *q == '+') q++;
    if (!is_digit(*q)) return 0; /* "1e", "1e+" */
    while (is_digit(*q)) q++;
    p = q;
  }
  return (size_t)(p - s);
}

int strnum_parse_double(const char *s, double *out) {
  if (!s) return STRNUM_ESYNTAX;
  size_t n = number_syntax(s);
  if (n == 0 || s[n]) return STRNUM_ESYNTAX;
  /* The grammar is a subset of strtod's (the "C" locale's decimal point: Strata never calls
   * setlocale), so strtod consumes exactly the n characters. */
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end != s + n) return STRNUM_ESYNTAX;
  if (!isfinite(v)) return STRNUM_ERANGE; /* overflow: "1e309" */
  /* ERANGE with a finite result is underflow: the value rounds to 0 or a subnormal; keep it */
  *out = v;
  return STRNUM_OK;
}

/* The multiplier of a size suffix: "" or "B" 1; K, M, G, T (either case) and KiB, MiB, GiB, TiB
 * powers of 1024 (IEC; the bare letters as nccl-tests reads them); KB, MB, GB, TB powers of 1000
 * (SI). 0 for anything else. */
static uint64_t size_suffix_mult(const char *p) {
  if (!strcmp(p, "") || !strcmp(p, "B")) return 1;
  static const char prefixes[] = "KMGT";
  const char *at = *p ? strchr(prefixes, toupper((unsigned char)*p)) : NULL;
  if (!at) return 0;
  const int n = (int)(at - prefixes) + 1;
  uint64_t iec = 1, si = 1;
  for (int k = 0; k < n; k++) iec *= 1024, si *= 1000;
  const char *rest = p + 1;
  if (!strcmp(rest, "") || !strcmp(rest, "iB")) return iec;
  if (!strcmp(rest, "B")) return si;
  return 0;
}

int strnum_parse_bytes(const char *s, int64_t *out) {
  if (!s || !is_digit(*s)) return STRNUM_ESYNTAX;
  const char *p = s;
  uint64_t v = 0;
  int overflow = 0;
  for (; is_digit(*p); p++) {
    uint64_t d = (uint64_t)(*p - '0');
    if (v > ((uint64_t)INT64_MAX - d) / 10) overflow = 1;
    else v = v * 10 + d;
  }
  const uint64_t mult = size_suffix_mult(p);
  if (!mult) return STRNUM_ESYNTAX;
  if (overflow || v > (uint64_t)INT64_MAX / mult) return STRNUM_ERANGE;
  *out = (int64_t)(v * mult);
  return STRNUM_OK;
}

/* Integer bounds of an integer range. */
static void int_bounds(const strnum_range_t *r, int64_t *lo, int64_t *hi) {
  double mn = r->min, mx = r->max;
  if (mn <= -TWO_POW_63) *lo = INT64_MIN;
  else *lo = (int64_t)ceil(mn) + ((r->open & STRNUM_OPEN_MIN) && mn == floor(mn) ? 1 : 0);
  if (mx >= TWO_POW_63) *hi = INT64_MAX;
  else *hi = (int64_t)floor(mx) - ((r->open & STRNUM_OPEN_MAX) && mx == floor(mx) ? 1 : 0);
}

int strnum_in_range(const strnum_range_t *r, strnum_value_t v) {
  if (r->kind == STRNUM_DOUBLE) {
    if (!isfinite(v.d)) return 0;
    if ((r->open & STRNUM_OPEN_MIN) ? !(v.d > r->min) : !(v.d >= r->min)) return 0;
    if ((r->open & STRNUM_OPEN_MAX) ? !(v.d < r->max) : !(v.d <= r->max)) return 0;
    return 1;
  }
  int64_t lo, hi;
  int_bounds(r, &lo, &hi);
  return v.i >= lo && v.i <= hi;
}

int strnum_parse(const char *s, const strnum_range_t *r, strnum_value_t *out) {
  strnum_value_t v = {0, 0.0};
  int rc;
  switch (r->kind) {
  case STRNUM_INT:
    rc = strnum_parse_int64(s, &v.i);
    v.d = (double)v.i;
    break;
  case STRNUM_BYTES:
    rc = strnum_parse_bytes(s, &v.i);
    v.d = (double)v.i;
    break;
  case STRNUM_DOUBLE:
    rc = strnum_parse_double(s, &v.d);
    break;
  default:
    return STRNUM_ESYNTAX;
  }
  if (rc) return rc;
  if (!strnum_in_range(r, v)) return STRNUM_ERANGE;
  *out = v;
  return STRNUM_OK;
}

/* An integer bound as text: bytes with the largest exact K/M/G/T suffix. */
static void fmt_int(char *buf, size_t len, int64_t v, int bytes) {
  static const char suffix[] = "TGMK";
  if (bytes && v > 0)
    for (int k = 0; k < 4; k++) {
      int64_t unit = (int64_t)1 << (10 * (4 - k));
      if (v % unit == 0) {
        snprintf(buf, len, "%lld%c", (long long)(v / unit), suffix[k]);
        return;
      }
    }
  snprintf(buf, len, "%lld", (long long)v);
}

void strnum_describe(const strnum_range_t *r, char *buf, size_t len) {
  if (r->kind == STRNUM_DOUBLE) {
    const char *lo = (r->open & STRNUM_OPEN_MIN) ? "(" : "[", *hi = (r->open & STRNUM_OPEN_MAX) ? ")" : "]";
    if (isinf(r->max) && isinf(r->min)) snprintf(buf, len, "a finite number");
    else if (isinf(r->max)) snprintf(buf, len, "a number %s %.15g", *lo == '(' ? ">" : ">=", r->min);
    else snprintf(buf, len, "a number in %s%.15g, %.15g%s", lo, r->min, r->max, hi);
    return;
  }
  int64_t lo, hi;
  int_bounds(r, &lo, &hi);
  int bytes = r->kind == STRNUM_BYTES;
  char a[32], b[32];
  fmt_int(a, sizeof a, lo, bytes);
  fmt_int(b, sizeof b, hi, bytes);
  const char *upper = hi == INT64_MAX ? "2^63)" : b, *close = hi == INT64_MAX ? "" : "]";
  if (bytes) snprintf(buf, len, "a byte size in [%s, %s%s (suffix K, M, G, T or KiB, MiB, GiB, TiB = 1024^n; KB, MB, GB, TB = 1000^n)", a, upper, close);
  else snprintf(buf, len, "an integer in [%s, %s%s", a, upper, close);
}

int strnum_check(const char *what, const char *s, const strnum_range_t *r, strnum_value_t *out,
                 char *err, size_t errlen) {
  if (strnum_parse(s, r, out) == STRNUM_OK) return 0;
  char want[160];
  strnum_describe(r, want, sizeof want);
  if (err && errlen) snprintf(err, errlen, "%s must be %s, got '%s'", what, want, s ? s : "");
  return -1;
}

int strnum_double_to_int64(double d, int64_t *out) {
  if (!isfinite(d) || d != floor(d) || d < -TWO_POW_63 || d >= TWO_POW_63) return -1;
  *out = (int64_t)d;
  return 0;
}

static const strnum_env_t *env_find(const strnum_env_t *table, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(table[i].name, name)) return &table[i];
  return NULL;
}

static int env_read(const strnum_env_t *e, strnum_value_t *out, char *err, size_t errlen) {
  const char *s = getenv(e->name);
  if (!s || !*s) return 0;
  if (e->word && !strcmp(s, e->word)) return 2;
  if (strnum_parse(s, &e->range, out) == STRNUM_OK) return 1;
  char want[160];
  strnum_describe(&e->range, want, sizeof want);
  if (err && errlen)
    snprintf(err, errlen, "%s must be %s%s%s%s, got '%s' (environment variable; unset it for the default)",
             e->name, want, e->word ? " or '" : "", e->word ? e->word : "", e->word ? "'" : "", s);
  return -1;
}

int strnum_env(const strnum_env_t *table, int n, const char *name, strnum_value_t *out, char *err,
               size_t errlen) {
  const strnum_env_t *e = env_find(table, n, name);
  if (!e) {
    if (err && errlen) snprintf(err, errlen, "environment variable %s is not described in its table", name);
    return -1;
  }
  return env_read(e, out, err, errlen);
}

int strnum_env_check(const strnum_env_t *table, int n, char *err, size_t errlen) {
  for (int i = 0; i < n; i++) {
    strnum_value_t v;
    if (env_read(&table[i], &v, err, errlen) < 0) return -1;
  }
  return 0;
}
