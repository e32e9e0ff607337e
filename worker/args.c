/* The shared flag parser of the `strata` subcommands (see args.h). */
#include "args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int args_parse_int64(const char *s, int64_t *out) {
  char *end;
  if (!s || !*s) return -1;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return -1;
  *out = (int64_t)v;
  return 0;
}

int args_parse_double(const char *s, double *out) {
  char *end;
  if (!s || !*s) return -1;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

int args_parse_bytes(const char *s, size_t *out) {
  char *end;
  if (!s || !*s || *s == '-') return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s) return -1;
  unsigned long long mult = 1;
  if (*end == 'K' || *end == 'k') mult = 1ull << 10, end++;
  else if (*end == 'M' || *end == 'm') mult = 1ull << 20, end++;
  else if (*end == 'G' || *end == 'g') mult = 1ull << 30, end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end) return -1;
  if (v > (unsigned long long)SIZE_MAX / mult) return -1;
  *out = (size_t)(v * mult);
  return 0;
}

static void print_usage(const char *cmd, const char *usage, const arg_spec_t *specs, int nspecs) {
  printf("usage: strata %s [flags]\n\n%s\n\nflags:\n", cmd, usage);
  for (int i = 0; i < nspecs; i++) {
    char left[96];
    if (specs[i].alias)
      snprintf(left, sizeof left, "%s, %s%s%s", specs[i].alias, specs[i].name,
               specs[i].metavar ? " " : "", specs[i].metavar ? specs[i].metavar : "");
    else
      snprintf(left, sizeof left, "%s%s%s", specs[i].name, specs[i].metavar ? " " : "",
               specs[i].metavar ? specs[i].metavar : "");
    printf("  %-28s %s\n", left, specs[i].help);
  }
  printf("  %-28s %s\n", "-h, --help", "show this help");
}

static int set_value(const char *cmd, const arg_spec_t *spec, const char *val) {
  int64_t i64;
  double d;
  size_t z;
  switch (spec->kind) {
  case ARG_INT:
    if (args_parse_int64(val, &i64) || i64 < INT_MIN || i64 > INT_MAX) goto bad;
    *(int *)spec->dest = (int)i64;
    return 0;
  case ARG_INT64:
    if (args_parse_int64(val, &i64)) goto bad;
    *(int64_t *)spec->dest = i64;
    return 0;
  case ARG_DOUBLE:
    if (args_parse_double(val, &d)) goto bad;
    *(double *)spec->dest = d;
    return 0;
  case ARG_STRING:
    *(const char **)spec->dest = val;
    return 0;
  case ARG_BYTES:
    if (args_parse_bytes(val, &z)) goto bad;
    *(size_t *)spec->dest = z;
    return 0;
  case ARG_FLAG:
    break;
  }
bad:
  fprintf(stderr, "[strata] error: %s: %s expects %s, got '%s'\n", cmd, spec->name,
          spec->kind == ARG_INT || spec->kind == ARG_INT64 ? "an integer"
          : spec->kind == ARG_DOUBLE                      ? "a number"
                                                           : "a byte size like 8, 64K, 16M or 1G",
          val);
  return -1;
}

int args_parse(const char *cmd, const char *usage, int argc, char **argv, const arg_spec_t *specs,
               int nspecs, const char **positional, int *npositional) {
  int cap = npositional ? *npositional : 0, npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      print_usage(cmd, usage, specs, nspecs);
      return 1;
    }
    if (a[0] != '-' || a[1] == '\0' || (a[1] >= '0' && a[1] <= '9')) {
      if (npos >= cap) {
        fprintf(stderr, "[strata] error: %s: unexpected argument '%s' (see strata %s --help)\n", cmd,
                a, cmd);
        return -1;
      }
      positional[npos++] = a;
      continue;
    }
    const char *eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
    const arg_spec_t *spec = NULL;
    for (int s = 0; s < nspecs && !spec; s++) {
      if ((strlen(specs[s].name) == nlen && !strncmp(specs[s].name, a, nlen)) ||
          (specs[s].alias && strlen(specs[s].alias) == nlen && !strncmp(specs[s].alias, a, nlen)))
        spec = &specs[s];
    }
    if (!spec) {
      fprintf(stderr, "[strata] error: %s: unknown flag '%.*s' (see strata %s --help)\n", cmd,
              (int)nlen, a, cmd);
      return -1;
    }
    if (spec->kind == ARG_FLAG) {
      if (eq) {
        fprintf(stderr, "[strata] error: %s: %s takes no value\n", cmd, spec->name);
        return -1;
      }
      *(int *)spec->dest = 1;
      continue;
    }
    const char *val = eq ? eq + 1 : NULL;
    if (!val) {
      if (i + 1 >= argc) {
        fprintf(stderr, "[strata] error: %s: %s needs a value (%s)\n", cmd, spec->name,
                spec->metavar ? spec->metavar : "value");
        return -1;
      }
      val = argv[++i];
    }
    if (set_value(cmd, spec, val)) return -1;
  }
  if (npositional) *npositional = npos;
  return 0;
}
