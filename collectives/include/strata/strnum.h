/* strnum.h -- the one strict parser of numbers written as text: command-line flags (worker/cli/args.c),
 * environment variables (worker/base/env.c and the collectives' STRATA_COLL_* / STRATA_OFI_* reads in
 * comm.c) and the JSON integers of requests. Internal to Strata (compiled into strata_coll so
 * both the collectives library and the worker use it), not part of the public coll.h.
 *
 * Accepted text, and nothing else (no leading or trailing whitespace, no '+', no hex, no
 * octal: leading zeros are decimal, "010" is 10):
 *   integer    -?[0-9]+                                   within [INT64_MIN, INT64_MAX]
 *   number     -?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?   finite after rounding
 *              ("1e308" is a number, "1e309" overflows, "nan", "inf", "0x10", "1e", "." are not;
 *              a value below the smallest subnormal rounds to 0)
 *   byte size  [0-9]+ then nothing or B (bytes), K/M/G/T or KiB/MiB/GiB/TiB (1024^n: IEC, and
 *              the bare letters as nccl-tests reads them), or KB/MB/GB/TB (1000^n: SI); the
 *              prefix letter in either case ("8k" = "8K"), at most INT64_MAX bytes; "1.5M", "1Mb" and
 *              "1 MiB" are refused
 *
 * A range (strnum_range_t) bounds a value; strnum_check parses and bounds in one call and
 * writes the one error sentence every caller prints:
 *   "--steps must be an integer in [1, 1000000000], got '-1'"
 *
 * Usage
 *   static const strnum_range_t steps_range = {STRNUM_INT, 1, 1e9, 0};
 *   strnum_value_t v;
 *   char err[256];
 *   if (strnum_check("--steps", text, &steps_range, &v, err, sizeof err)) { report(err); return 2; }
 *   int64_t steps = v.i;
 */
#ifndef STRATA_STRNUM_H
#define STRATA_STRNUM_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  STRNUM_INT = 1,  /* an integer */
  STRNUM_DOUBLE,   /* a finite decimal number */
  STRNUM_BYTES,    /* a non-negative integer with an optional size suffix (above) */
} strnum_kind_t;

#define STRNUM_OPEN_MIN 1u /* the lower bound itself is excluded: (min, ... */
#define STRNUM_OPEN_MAX 2u /* the upper bound itself is excluded: ..., max) */

/* What a value must be. min and max are doubles so one table form serves every kind; for
 * integers and byte sizes they must be integers, and max >= 2^63 means "any int64" (shown as
 * "2^63)"). max may be INFINITY for numbers (shown as ">= min"). */
typedef struct {
  strnum_kind_t kind;
  double min, max; /* bounds, inclusive unless `open` says otherwise */
  unsigned open;   /* STRNUM_OPEN_MIN | STRNUM_OPEN_MAX */
} strnum_range_t;

/* A parsed value: `i` for integers and byte sizes, `d` for numbers (d also holds an integer's
 * value, rounded, for callers that store doubles). */
typedef struct {
  int64_t i;
  double d;
} strnum_value_t;

/* Return codes of the parsers. */
#define STRNUM_OK 0
#define STRNUM_ESYNTAX (-1) /* not of the accepted form */
#define STRNUM_ERANGE (-2)  /* the right form, but overflows the type (or outside a range) */

/* Syntax and overflow only; *out is written only on STRNUM_OK. */
int strnum_parse_int64(const char *s, int64_t *out);
int strnum_parse_double(const char *s, double *out);
int strnum_parse_bytes(const char *s, int64_t *out);

/* Parses s as r->kind and checks the range: STRNUM_OK, STRNUM_ESYNTAX or STRNUM_ERANGE. */
int strnum_parse(const char *s, const strnum_range_t *r, strnum_value_t *out);
/* Is v (of r->kind) inside r? */
int strnum_in_range(const strnum_range_t *r, strnum_value_t v);
/* "an integer in [1, 512]", "a number in (0, 1]", "a number >= 0", "a byte size in [16, 1G]
 * (suffix K, M, G, T or KiB, MiB, GiB, TiB = 1024^n; KB, MB, GB, TB = 1000^n)". */
void strnum_describe(const strnum_range_t *r, char *buf, size_t len);
/* strnum_parse, and on failure "<what> must be <describe>, got '<s>'" in err; 0 or -1. */
int strnum_check(const char *what, const char *s, const strnum_range_t *r, strnum_value_t *out,
                 char *err, size_t errlen);

/* A JSON number that must be an integer: 0 and *out when d is finite, integral and in
 * [INT64_MIN, 2^63) (exactly representable, so the conversion is exact), else -1. */
int strnum_double_to_int64(double d, int64_t *out);

/* A numeric environment variable: its name, range and, when the variable also accepts a word
 * ("off", "auto"), that word. Tables of these are the single description of a module's
 * variables (worker/base/env.c, collectives/core/comm.c). */
typedef struct {
  const char *name;     /* "STRATA_COLL_CHUNK_BYTES" */
  strnum_range_t range; /* what a numeric value must be */
  const char *word;     /* a non-numeric value also accepted, or NULL */
  const char *meaning;  /* one line, for help text */
} strnum_env_t;

/* Reads variable `name`, which must be in table[0..n). Returns 0 when unset or empty (*out
 * untouched), 1 with *out set for a valid number, 2 when the value is table's `word`, and -1
 * with "NAME must be <describe>, got 'V' (environment variable; unset it for the default)" in
 * err for a bad value (or "not described" for a name missing from the table: a programming
 * error). */
int strnum_env(const strnum_env_t *table, int n, const char *name, strnum_value_t *out, char *err,
               size_t errlen);
/* Checks every variable of table[0..n) that is set: 0, or -1 with the first bad one in err. */
int strnum_env_check(const strnum_env_t *table, int n, char *err, size_t errlen);

#endif /* STRATA_STRNUM_H */
