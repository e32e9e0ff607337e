/* env.h -- the worker's one reader of numeric environment variables (STRATA_*).
 *
 * Every numeric variable the worker reads is described once, in env.c's table: its name, what
 * a value must be (a strnum_range_t: integer, number or byte size, and its bounds) and one line
 * saying what it does. Sites read through env_read_*, never getenv + atoi: a value is parsed by
 * the strict parser of collectives/include/strata/strnum.h (decimal only, finite, in range), so "abc", "0x10",
 * "-1" where it makes no sense or "1e309" is an error naming the variable, the value and the
 * accepted range, never silently ignored. An unset or empty variable means "the default".
 * A variable whose value is one of a few words (STRATA_GEMM) is in a second table of env.c and
 * read with env_read_choice, checked and printed the same way.
 *
 * `strata` checks every variable of the table (and the collectives' STRATA_COLL_* ones) before
 * a command starts (env_check_all), so a bad value ends any command with exit code 2 at once;
 * `strata help env` prints the table. The readers still validate, for library users and tests.
 *
 * Usage
 *   int64_t v;
 *   char err[256];
 *   if (env_read_int("STRATA_INFER_MAX_BATCH", 16, &v, err, sizeof err)) return fail(err);
 *   // v: the variable's value, or 16 when it is unset
 */
#ifndef STRATA_ENV_H
#define STRATA_ENV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "strata/strnum.h"

/* The value of `name` (which env.c's table must describe, with the matching kind), or dflt
 * when the variable is unset or empty. 0, or -1 with
 *   "STRATA_X must be an integer in [1, 512], got 'abc' (environment variable; unset it for
 *    the default)"
 * in err (*out = dflt then). */
int env_read_int(const char *name, int64_t dflt, int64_t *out, char *err, size_t errlen);
int env_read_double(const char *name, double dflt, double *out, char *err, size_t errlen);
int env_read_bytes(const char *name, size_t dflt, size_t *out, char *err, size_t errlen);

/* A variable of env.c's table of words (STRATA_GEMM): *out = the index of its value among the
 * listed words, 0 (the first, the default) when unset or empty. 0, or -1 with
 *   "STRATA_GEMM must be one of auto, openblas, onednn, got 'x' (environment variable; unset it
 *    for the default)"
 * in err (*out = 0 then). */
int env_read_choice(const char *name, int *out, char *err, size_t errlen);

/* Checks every variable of the table that is set: 0, or -1 with the first bad one in err. */
int env_check_all(char *err, size_t errlen);

/* The table (for `strata help env` and tests). */
const strnum_env_t *env_table(int *n);
/* Prints the table: one line per variable with what its value must be and what it does. */
void env_print_help(FILE *f);

#endif /* STRATA_ENV_H */
