/* The shared flag parser of the `strata` subcommands (see args.h); numbers go through
 * collectives/strnum.c. */
#include "args.h"

#include "env.h"
#include "log.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void args_spec_range(const arg_spec_t *spec, strnum_range_t *out) {
  memset(out, 0, sizeof *out);
  out->kind = spec->kind == ARG_DOUBLE ? STRNUM_DOUBLE : spec->kind == ARG_BYTES ? STRNUM_BYTES : STRNUM_INT;
  if (spec->env) {
    int n;
    const strnum_env_t *t = env_table(&n);
    for (int i = 0; i < n; i++)
      if (!strcmp(t[i].name, spec->env) && t[i].range.kind == out->kind) {
        *out = t[i].range;
        return;
      }
    /* a spec naming an undescribed variable: its kind's whole range (the flag-table test
     * catches such a flag by its missing bounds) */
  }
  if (spec->min != 0 || spec->max != 0) {
    out->min = spec->min;
    out->max = spec->max;
    out->open = spec->open;
  } else if (spec->kind == ARG_DOUBLE) {
    out->min = -INFINITY;
    out->max = INFINITY;
  } else if (spec->kind == ARG_INT) {
    out->min = INT_MIN;
    out->max = INT_MAX;
  } else {
    out->min = spec->kind == ARG_BYTES ? 0 : -9223372036854775808.0;
    out->max = 9223372036854775808.0; /* any int64 */
  }
  if (spec->kind == ARG_INT) { /* never beyond int */
    if (out->min < INT_MIN) out->min = INT_MIN;
    if (out->max > INT_MAX) out->max = INT_MAX;
  }
}

static void print_usage(const char *cmd, const char *usage, const arg_spec_t *specs, int nspecs) {
  printf("usage: strata %s [flags]\n\n%s\n\nflags:\n", cmd, usage);
  for (int i = 0; i < nspecs; i++) {
    const arg_spec_t *sp = &specs[i];
    char left[96];
    if (sp->alias)
      snprintf(left, sizeof left, "%s, %s%s%s", sp->alias, sp->name, sp->metavar ? " " : "",
               sp->metavar ? sp->metavar : "");
    else
      snprintf(left, sizeof left, "%s%s%s", sp->name, sp->metavar ? " " : "", sp->metavar ? sp->metavar : "");
    char range[256] = "";
    if (sp->kind != ARG_STRING && sp->kind != ARG_FLAG) {
      strnum_range_t r;
      char want[160];
      args_spec_range(sp, &r);
      strnum_describe(&r, want, sizeof want);
      snprintf(range, sizeof range, "; %s: %s%s%s", sp->metavar ? sp->metavar : "value", want,
               sp->env ? "; env " : "", sp->env ? sp->env : "");
    }
    printf("  %-28s %s%s\n", left, sp->help, range);
  }
  printf("  %-28s %s\n", "-h, --help", "show this help");
}

static int set_value(const char *cmd, const arg_spec_t *spec, const char *val) {
  if (spec->kind == ARG_STRING) {
    *(const char **)spec->dest = val;
    return 0;
  }
  strnum_range_t r;
  args_spec_range(spec, &r);
  strnum_value_t v;
  char err[512];
  int ok = strnum_parse(val, &r, &v) == STRNUM_OK;
  if (!ok && spec->sentinel && !strcmp(val, spec->sentinel)) { /* a documented special value */
    r.min = -INFINITY, r.max = INFINITY;
    if (spec->kind != ARG_DOUBLE) r.min = -9223372036854775808.0, r.max = 9223372036854775808.0;
    ok = strnum_parse(val, &r, &v) == STRNUM_OK;
  }
  if (!ok) {
    strnum_check(spec->name, val, &r, &v, err, sizeof err);
    strata_error("%s: %s", cmd, err);
    return -1;
  }
  switch (spec->kind) {
  case ARG_INT: *(int *)spec->dest = (int)v.i; break;
  case ARG_INT64: *(int64_t *)spec->dest = v.i; break;
  case ARG_DOUBLE: *(double *)spec->dest = v.d; break;
  case ARG_BYTES: *(size_t *)spec->dest = (size_t)v.i; break;
  default: break;
  }
  return 0;
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
        strata_error("%s: unexpected argument '%s' (see strata %s --help)", cmd, a, cmd);
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
      strata_error("%s: unknown flag '%.*s' (see strata %s --help)", cmd, (int)nlen, a, cmd);
      return -1;
    }
    if (spec->kind == ARG_FLAG) {
      if (eq) {
        strata_error("%s: %s takes no value", cmd, spec->name);
        return -1;
      }
      *(int *)spec->dest = 1;
      if (spec->given) *spec->given = 1;
      continue;
    }
    const char *val = eq ? eq + 1 : NULL;
    if (!val) {
      if (i + 1 >= argc) {
        strata_error("%s: %s needs a value (%s)", cmd, spec->name, spec->metavar ? spec->metavar : "value");
        return -1;
      }
      val = argv[++i];
    }
    if (set_value(cmd, spec, val)) return -1;
    if (spec->given) *spec->given = 1;
  }
  if (npositional) *npositional = npos;
  return 0;
}
