/* args.h -- the flag parser every `strata` subcommand uses, so all of them accept the same
 * forms and refuse bad input the same way.
 *
 * Accepted: `--name value`, `--name=value`, short aliases (`-b 8K`), boolean flags (`--json`),
 * and positional arguments (collected in order). `--help` / `-h` prints the usage built from
 * the specs. Any unknown flag, missing value, or value that does not parse (trailing garbage,
 * out of range) is an error that names the flag and the expected form.
 *
 * Usage
 *    int steps = 20; const char *out = NULL; int json = 0;
 *    arg_spec_t specs[] = {
 *      {"--steps", NULL, ARG_INT, &steps, "N", "training steps"},
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

typedef enum {
  ARG_INT,    /* int */
  ARG_INT64,  /* int64_t */
  ARG_DOUBLE, /* double */
  ARG_STRING, /* const char * (points into argv) */
  ARG_FLAG,   /* int, set to 1 */
  ARG_BYTES,  /* size_t, with K/M/G suffixes = powers of 1024 (nccl-tests' -b/-e) */
} arg_kind_t;

typedef struct {
  const char *name;    /* "--steps" */
  const char *alias;   /* "-n" or NULL */
  arg_kind_t kind;
  void *dest;
  const char *metavar; /* "N" for the usage text; NULL for flags */
  const char *help;    /* one line */
} arg_spec_t;

/* Parses argv[1..argc) (argv[0] is the subcommand name). Positional arguments go to
 * positional[0..*npositional) (capacity given in *npositional on entry; NULL/0 = none
 * allowed). Returns 0 on success, 1 if --help was printed (stdout), -1 after printing an
 * error to stderr. `usage` is the text shown above the flag list. */
int args_parse(const char *cmd, const char *usage, int argc, char **argv, const arg_spec_t *specs,
               int nspecs, const char **positional, int *npositional);

/* Parsers the CLI uses; return 0 on success, -1 if `s` is not entirely a valid value. */
int args_parse_int64(const char *s, int64_t *out);
int args_parse_double(const char *s, double *out);
int args_parse_bytes(const char *s, size_t *out);

#endif
