/* env.c -- the table of the worker's numeric environment variables and their validated reader
 * (env.h). The collectives' STRATA_COLL_* / STRATA_OFI_* variables have their own table in
 * collectives/core/comm.c; both go through collectives/core/strnum.c. */
#include "env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MIB_D (1024.0 * 1024.0)
#define GIB_D (1024.0 * 1024.0 * 1024.0)
#define INT_RANGE(lo, hi) {STRNUM_INT, (lo), (hi), 0}
#define NUM_RANGE(lo, hi) {STRNUM_DOUBLE, (lo), (hi), 0}
#define POS_RANGE(hi) {STRNUM_DOUBLE, 0, (hi), STRNUM_OPEN_MIN} /* (0, hi] */
#define BYTES_RANGE(lo, hi) {STRNUM_BYTES, (lo), (hi), 0}

/* Flags that share a variable's meaning (--bucket-mb, --max-queue, ...) take their range from
 * here (arg_spec_t.env), so a flag and its variable accept the same values. */
static const strnum_env_t env_vars[] = {
    {"STRATA_ABORT_GRACE_S", NUM_RANGE(0, 600), NULL,
     "seconds a failing rank waits for its neighbours to report before it aborts the job (default 2)"},
    {"STRATA_BUCKET_MB", POS_RANGE(1024), NULL,
     "gradient all-reduce bucket in MiB: train and simulate --bucket-mb (default 4 for train, 25 for simulate)"},
    {"STRATA_LR", POS_RANGE(100), NULL, "AdamW peak learning rate of adamw_hparams_default (train sets its own, --lr)"},
    {"STRATA_WARMUP_STEPS", INT_RANGE(0, 1e9), NULL, "AdamW warm-up steps of adamw_hparams_default (train: --warmup)"},
    {"STRATA_WEIGHT_DECAY", NUM_RANGE(0, 10), NULL, "AdamW weight decay (train: --weight-decay; default 0.1)"},
    {"STRATA_GRAD_CLIP", NUM_RANGE(0, 1e6), NULL, "global gradient-norm clip, 0 = off (train: --grad-clip; default 1)"},
    {"STRATA_ATTN_BLOCK_ROWS", INT_RANGE(1, 1 << 20), NULL, "query rows per attention block (default 64)"},
    {"STRATA_ATTEMPT", INT_RANGE(0, 1000), NULL, "launch of the job, 0 first (launch/strata-run --max-restarts sets it; STRATA_FAULT's attempt=N)"},
    {"STRATA_TRACE_MAX_EVENTS", INT_RANGE(0, 1e8), NULL, "trace.json events kept per run, 0 = none (default 200000)"},
    {"STRATA_REPORT_CHART_COLS", INT_RANGE(10, 400), NULL, "columns of strata report's loss chart (default 60)"},
    {"STRATA_INFER_MAX_BATCH", INT_RANGE(1, 512), NULL, "infer / serve --max-batch: sequences in flight (default 16)"},
    {"STRATA_INFER_SESSION_MEM_MB", NUM_RANGE(0, MIB_D), NULL,
     "infer / serve --session-mem-mb: MiB of idle sessions' KV cache kept per stage (default 1024)"},
    {"STRATA_INFER_SESSION_DISK_MB", NUM_RANGE(0, MIB_D * 1024), NULL,
     "infer / serve --session-disk-mb: MiB the saved sessions may take on disk, 0 = no quota (default 0)"},
    {"STRATA_INFER_HEARTBEAT_S", POS_RANGE(3600), NULL, "seconds between rank 0's heartbeats to idle workers (default 1)"},
    {"STRATA_INFER_LIVENESS_S", POS_RANGE(86400), NULL,
     "seconds of silence after which a rank counts as dead and the job ends naming it (default 8)"},
    {"STRATA_SERVE_MAX_REQUEST_BYTES", BYTES_RANGE(16, GIB_D), NULL, "serve --max-request-bytes (default 64K)"},
    {"STRATA_SERVE_MAX_TOKENS_LIMIT", INT_RANGE(1, 1e6), NULL, "serve --max-tokens-limit (default 1024)"},
    {"STRATA_SERVE_DEFAULT_MAX_TOKENS", INT_RANGE(1, 1e6), NULL, "serve --default-max-tokens (default 16)"},
    {"STRATA_SERVE_MAX_QUEUE", INT_RANGE(1, 1e6), NULL, "serve --max-queue (default 64)"},
    {"STRATA_SERVE_MAX_CONNECTIONS", INT_RANGE(1, 65536), NULL, "serve --max-connections (default 128)"},
    {"STRATA_SERVE_MAX_CONNECTIONS_PER_CLIENT", INT_RANGE(0, 65536), NULL,
     "serve --max-connections-per-client, 0 = only --max-connections (default 64)"},
    {"STRATA_SERVE_HEADER_TIMEOUT_S", NUM_RANGE(0, 3600), NULL, "serve --header-timeout-s, 0 = off (default 10)"},
    {"STRATA_SERVE_TIMEOUT_S", INT_RANGE(0, 86400), NULL, "serve --timeout-s, 0 = none (default 30)"},
    {"STRATA_SERVE_SHUTDOWN_GRACE_S", NUM_RANGE(0, 3600), NULL, "serve --shutdown-grace-s (default 10)"},
    {"STRATA_SERVE_KEEPALIVE_S", NUM_RANGE(0, 3600), NULL,
     "seconds between keep-alive comments of a quiet stream, 0 = none (default 1)"},
    {"STRATA_SIM_SQUARE_PEAK", INT_RANGE(0, 1), NULL, "1: calibrate the cpu device on square matrices only"},
    {"STRATA_SIM_OP_OVERHEAD", INT_RANGE(0, 1), NULL, "0: no per-op overhead in the cpu device (roofline only)"},
    {"STRATA_SIM_STAGE_LAYERS", INT_RANGE(0, 1), NULL,
     "0: time one layer for the per-op overhead, not the rank's stage of layers"},
    {"STRATA_SIM_COLL_LAT", INT_RANGE(0, 1), NULL, "0: collective step latency = the link's (ideal ring)"},
    {"STRATA_SIM_TIMESHARE", INT_RANGE(0, 1), NULL, "0: assume dedicated cores when ranks outnumber them"},
    {"STRATA_SIM_SHARE", INT_RANGE(0, 1), NULL, "0: time-shared ranks slowed by ranks / cores throughout"},
    {"STRATA_SIM_HOST_RANKS", INT_RANGE(0, 1 << 20), NULL,
     "ranks of the job sharing this host's cores (0: those MPI places on the node)"},
    {"STRATA_SIM_CARRY", INT_RANGE(0, 1), NULL, "0: replay the simulated step only (measures the overhead)"},
};
#define ENV_COUNT ((int)(sizeof env_vars / sizeof env_vars[0]))

/* Variables whose value is one of a few words; env_read_choice returns the word's index. */
#define ENV_MAX_WORDS 4
static const struct {
  const char *name;
  const char *words[ENV_MAX_WORDS]; /* the first is the default */
  const char *meaning;
} env_choices[] = {
    {"STRATA_GEMM", {"auto", "openblas", "onednn"}, "matrix-product library of the model (worker/model/gemm.h): auto picks per shape from measurements (default auto)"},
    {"STRATA_GEMM_BF16", {"auto", "kernel", "rounded"},
     "how oneDNN computes bf16 products: kernel (its bf16 instructions), rounded (inputs rounded to bf16, fp32 product); auto: kernel except on Intel CPUs without AMX, where it is slower (default auto)"},
};
#define ENV_CHOICE_COUNT ((int)(sizeof env_choices / sizeof env_choices[0]))

const strnum_env_t *env_table(int *n) {
  *n = ENV_COUNT;
  return env_vars;
}

/* Reads `name`, which must be described with `kind`: 0 (unset: *v untouched; set: *v), or -1. */
static int read_kind(const char *name, strnum_kind_t kind, strnum_value_t *v, char *err, size_t errlen) {
  for (int i = 0; i < ENV_COUNT; i++) {
    if (strcmp(env_vars[i].name, name)) continue;
    if (env_vars[i].range.kind != kind) break;
    return strnum_env(env_vars, ENV_COUNT, name, v, err, errlen) < 0 ? -1 : 0;
  }
  return strata_fail(err, errlen, "environment variable %s is not described with this kind in worker/base/env.c",
                     name);
}

int env_read_int(const char *name, int64_t dflt, int64_t *out, char *err, size_t errlen) {
  strnum_value_t v = {dflt, (double)dflt};
  int rc = read_kind(name, STRNUM_INT, &v, err, errlen);
  *out = rc ? dflt : v.i;
  return rc;
}

int env_read_double(const char *name, double dflt, double *out, char *err, size_t errlen) {
  strnum_value_t v = {0, dflt};
  int rc = read_kind(name, STRNUM_DOUBLE, &v, err, errlen);
  *out = rc ? dflt : v.d;
  return rc;
}

int env_read_bytes(const char *name, size_t dflt, size_t *out, char *err, size_t errlen) {
  strnum_value_t v = {(int64_t)dflt, (double)dflt};
  int rc = read_kind(name, STRNUM_BYTES, &v, err, errlen);
  *out = rc ? dflt : (size_t)v.i;
  return rc;
}

int env_read_choice(const char *name, int *out, char *err, size_t errlen) {
  *out = 0;
  for (int i = 0; i < ENV_CHOICE_COUNT; i++) {
    if (strcmp(env_choices[i].name, name)) continue;
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char list[128] = "";
    for (int w = 0; w < ENV_MAX_WORDS && env_choices[i].words[w]; w++) {
      if (!strcmp(s, env_choices[i].words[w])) {
        *out = w;
        return 0;
      }
      size_t used = strlen(list);
      snprintf(list + used, sizeof list - used, "%s%s", w ? ", " : "", env_choices[i].words[w]);
    }
    return strata_fail(err, errlen, "%s must be one of %s, got '%s' (environment variable; unset it for the default)",
                       name, list, s);
  }
  return strata_fail(err, errlen, "environment variable %s is not described as a choice in worker/base/env.c", name);
}

int env_check_all(char *err, size_t errlen) {
  for (int i = 0; i < ENV_CHOICE_COUNT; i++) {
    int w;
    if (env_read_choice(env_choices[i].name, &w, err, errlen)) return -1;
  }
  return strnum_env_check(env_vars, ENV_COUNT, err, errlen);
}

void env_print_help(FILE *f) {
  fprintf(f, "Environment variables of the worker: numbers, and words where listed (unset or empty:\n"
             "the default). A bad value stops every command with exit code 2 before it starts.\n\n");
  for (int i = 0; i < ENV_COUNT; i++) {
    char want[160];
    strnum_describe(&env_vars[i].range, want, sizeof want);
    fprintf(f, "  %-32s %s\n  %-32s   %s\n", env_vars[i].name, env_vars[i].meaning, "", want);
  }
  for (int i = 0; i < ENV_CHOICE_COUNT; i++) {
    fprintf(f, "  %-32s %s\n  %-32s   one of:", env_choices[i].name, env_choices[i].meaning, "");
    for (int w = 0; w < ENV_MAX_WORDS && env_choices[i].words[w]; w++) fprintf(f, " %s", env_choices[i].words[w]);
    fprintf(f, "\n");
  }
  fprintf(f, "\nThe collectives' STRATA_COLL_* and STRATA_OFI_* variables: collectives/README.md.\n");
}
