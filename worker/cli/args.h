/* args.h -- the flag parser every `strata` subcommand uses, so all of them accept the same
 * forms and refuse bad input the same way.
 *
 * Accepted: `--name value`, `--name=value`, short aliases (`-b 8K`), boolean flags (`--json`),
 * and positional arguments (collected in order). `--help` / `-h` prints the usage built from
 * the specs, with each numeric flag's range. Any unknown flag, missing value, or value that
 * does not parse is an error that names the flag and the expected form.
 *
 * Numbers go through the strict parser of collectives/include/strata/strnum.h (decimal, finite, no hex, no
 * whitespace, K/M/G only for byte sizes) and must lie in the flag's range: .min/.max (and .open
 * for exclusive bounds of a number), or, with .env, the range of that environment variable
 * (worker/base/env.c), so a flag and its variable accept the same values. The error is one sentence:
 *   [strata] error: train: --steps must be an integer in [1, 1000000000], got '-1'
 * A flag records that it was given through .given (no value of the flag's type is set aside to
 * mean "not given"); a value outside the range that the flag documents (e.g. "-1" =
 * unlimited) can be allowed with .sentinel.
 *
 * Usage
 *    int64_t steps = 300; int steps_given = 0; const char *out = NULL; int json = 0;
 *    arg_spec_t specs[] = {
 *      {"--steps", NULL, ARG_INT64, &steps, "N", "training steps", .min = 1, .max = 1e9,
 *       .given = &steps_given},
 *      {"--out", NULL, ARG_STRING, &out, "DIR", "run directory"},
 *      {"--json", NULL, ARG_FLAG, &json, NULL, "print JSON"},
 *    };
 *    int rc = args_parse("train", "Train the model.", argc, argv, specs, 3, NULL, NULL);
 *    if (rc != 0) return rc > 0 ? 0 : 2;      // 1: --help printed; -1: error printed
 */
#ifndef STRATA_ARGS_H
#define STRATA_ARGS_H

#include <stddef.h>
#include <stdint.h>

#include "strata/strnum.h"

typedef enum {
  ARG_INT,    /* int */
  ARG_INT64,  /* int64_t */
  ARG_DOUBLE, /* double */
  ARG_STRING, /* const char * (points into argv) */
  ARG_FLAG,   /* int, set to 1 */
  ARG_BYTES,  /* size_t, with K/M/G suffixes = powers of 1024 (nccl-tests' -b/-e) */
} arg_kind_t;

#define ARG_OPEN_MIN 1u /* .open: the lower bound is excluded, (min, ... (= STRNUM_OPEN_MIN) */
#define ARG_OPEN_MAX 2u /* .open: the upper bound is excluded, ..., max) (= STRNUM_OPEN_MAX) */

typedef struct {
  const char *name;    /* "--steps" */
  const char *alias;   /* "-n" or NULL */
  arg_kind_t kind;
  void *dest;
  const char *metavar; /* "N" for the usage text; NULL for flags */
  const char *help;    /* one line */
  /* Numeric flags. A range is .min/.max/.open, or .env's; with neither (all zero, NULL) a
   * flag takes any value of its type (test tools only: every `strata` flag has a range). */
  double min, max;      /* inclusive bounds (integers for ARG_INT, ARG_INT64, ARG_BYTES) */
  unsigned open;        /* ARG_OPEN_MIN | ARG_OPEN_MAX (ARG_DOUBLE) */
  const char *env;      /* environment variable of the same meaning (worker/base/env.c): its range,
                           shown in --help as "env NAME" */
  const char *sentinel; /* a value outside the range the flag's help documents, accepted as
                           written (e.g. "-1" for "unlimited"); NULL: none */
  int *given;           /* set to 1 when the flag appears on the command line; may be NULL */
} arg_spec_t;

/* Parses argv[1..argc) (argv[0] is the subcommand name). Positional arguments go to
 * positional[0..*npositional) (capacity given in *npositional on entry; NULL/0 = none
 * allowed). Returns 0 on success, 1 if --help was printed (stdout), -1 after printing an
 * error to stderr. `usage` is the text shown above the flag list. */
int args_parse(const char *cmd, const char *usage, int argc, char **argv, const arg_spec_t *specs,
               int nspecs, const char **positional, int *npositional);

/* The range a numeric spec accepts (its kind's whole range when it has none). */
void args_spec_range(const arg_spec_t *spec, strnum_range_t *out);

#endif
