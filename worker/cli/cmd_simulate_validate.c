/* strata simulate --validate FILE.csv -- predicts every measured job of a CSV and prints the
 * predicted against the measured throughput, the relative error per job and the geometric-mean
 * error, the held-out rows apart (format in worker/sim/SIMULATION.md "Validation"); and the
 * --explain breakdown shared with a single simulation. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "device.h"
#include "layout.h"
#include "log.h"
#include "memory_model.h"
#include "simulate.h"
#include "cmd_simulate_validate.h"

void sim_print_explain(const layout_t *lay, const sim_result_t *r, FILE *out) {
  static const char *const what[SIM_NSHARES] = {
      "compute (the math of forward, backward, recomputation)",
      "tensor-parallel communication (exposed)",
      "pipeline bubble (waiting for neighbours / the slowest rank)",
      "data-parallel communication (exposed)", "optimizer"};
  double sh[SIM_NSHARES];
  sim_result_shares(r, sh);
  fprintf(out, "where the time goes (mean over ranks, step %.4f s, T=%d P=%d D=%d, M=%d):\n",
          r->step_s, lay->tp, lay->pp, lay->dp, lay->micro);
  for (int i = 0; i < SIM_NSHARES; i++)
    fprintf(out, "  %-62s %10.4f s %6.1f%%\n", what[i], sh[i] * r->step_s, 100 * sh[i]);
}

void sim_print_op_table(const layout_t *lay, const device_t *dev, const sim_options_t *opt,
                        FILE *out) {
  sim_op_time_t ops[3 * LAYOUT_MAX_OPS];
  int n = sim_op_times(lay, dev, opt, ops, (int)(sizeof ops / sizeof ops[0])), rc = 0;
  const double peak = dev->peak_flops[opt->dtype];
  fprintf(out, "each op on one rank, one micro-batch (every layer of a stage; the embedding on "
               "the first stage, the head on the last; before TP communication):\n");
  fprintf(out, "  %-10s %-12s %10s %11s %10s %9s %8s %9s\n", "part", "op", "fwd ms", "bwd ms",
          "fwd GFLOP", "TFLOP/s", "of peak", "GB/s");
  for (int i = 0; i < n; i++) {
    const sim_op_time_t *o = &ops[i];
    const double tf = o->fwd_s > 0 ? o->flops / o->fwd_s / 1e12 : 0,
                 gbs = o->fwd_s > 0 ? o->bytes / o->fwd_s / 1e9 : 0;
    rc |= o->recomputed;
    fprintf(out, "  %-10s %-12s %10.3f %11.3f %10.2f %9.1f %7.1f%% %9.0f%s\n", o->part, o->name,
            o->fwd_s * 1e3, o->bwd_s * 1e3, o->flops / 1e9, tf, peak > 0 ? 100 * tf * 1e12 / peak : 0,
            gbs, o->recomputed ? " *" : "");
  }
  if (rc) fprintf(out, "  * run again in backward (recomputation)\n");
}

void sim_print_json(json_object *o) {
  printf("%s\n",
         json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

#define VAL_MAX_FIELDS 40
#define VAL_MAX_ROWS 1024

/* Splits a CSV line in place on commas (no quoting); the last column takes the rest of the
 * line (a source citation may contain commas). Returns the field count. */
static int split_csv(char *line, char **f, int ncols) {
  int n = 0;
  char *p = line;
  while (n < ncols) {
    while (*p == ' ') p++;
    f[n++] = p;
    if (n == ncols) break;
    char *c = strchr(p, ',');
    if (!c) break;
    *c = '\0';
    p = c + 1;
  }
  for (int i = 0; i < n; i++) { /* trim trailing blanks and the newline */
    size_t l = strlen(f[i]);
    while (l && isspace((unsigned char)f[i][l - 1])) f[i][--l] = '\0';
  }
  return n;
}

static const char *const COLS[] = {
    "name", "preset", "arch", "layers", "dim", "heads", "kv_heads", "ffn", "vocab", "ctx",
    "device", "nodes", "tp", "pp", "dp", "global_batch", "micro_batch", "precision", "recompute",
    "sequence_parallel", "attention", "zero", "measured", "unit", "flop_convention", "role",
    "source"};
enum {
  C_NAME, C_PRESET, C_ARCH, C_LAYERS, C_DIM, C_HEADS, C_KV, C_FFN, C_VOCAB, C_CTX, C_DEVICE,
  C_NODES, C_TP, C_PP, C_DP, C_BATCH, C_MB, C_PREC, C_RC, C_SP, C_ATTN, C_ZERO, C_MEAS, C_UNIT,
  C_CONV, C_ROLE, C_SOURCE, C_COUNT
};

/* An integer field: empty keeps *out; 0 ok, -1 not a positive integer. */
static int int_field(const char *s, int *out) {
  if (!*s) return 0;
  char *e;
  long v = strtol(s, &e, 10);
  if (*e || v < 0 || v > (1L << 30)) return -1;
  *out = (int)v;
  return 0;
}

/* FLOPs per token under a named convention (the measured TFLOP/s figures' counting). */
static int flops_per_token(const char *conv, const layout_model_t *m, double *out) {
  double l = m->layers, h = m->dim, s = m->ctx, V = m->vocab, N = (double)layout_params_total(m);
  if (!strcmp(conv, "megatron")) /* Korthikanti et al.: model FLOPs, 72 B s l h^2 (...) */
    *out = 72 * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
  else if (!strcmp(conv, "megatron-hw")) /* Narayanan et al.: with full recomputation */
    *out = 96 * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
  else if (!strcmp(conv, "6n"))
    *out = 6 * N;
  else if (!strcmp(conv, "palm")) /* Chowdhery et al. 2022, App. B: 6N + 12 L H Q T */
    *out = 6 * N + 12 * l * h * s;
  else
    return -1;
  return 0;
}

typedef struct {
  char name[64], device[32];
  int role; /* 0 held out, 1 informed a constant */
  double measured_tps, predicted_tps;
  int fits;
  int nodes, tp, pp, dp, micro;
  double step_s, shares[SIM_NSHARES]; /* sim_result_shares */
} val_row_t;

/* The optional columns, between role and source, each at most once and in any order. */
enum { O_VSTAGES, O_TP_OVERLAP, O_GRAD_DTYPE, O_TIE, O_DP_OVERLAP, O_BUCKET_MB, O_COUNT };
static const char *const OPT_COLS[O_COUNT] = {"virtual_stages", "tp_overlap", "grad_dtype",
                                              "tie_embeddings", "dp_overlap", "bucket_mb"};

/* One row: the job, simulated (optv[o]: the optional column o's field, "" when absent). 0, or
 * -1 with a message naming the row and field. */
static int val_row(char **f, const char *const *optv, int line, const char *path, val_row_t *out,
                   int explain, char *err, size_t errlen) { /* explain: print the breakdown */
  const char *vstages = optv[O_VSTAGES], *tp_overlap = optv[O_TP_OVERLAP],
             *grad_dtype = optv[O_GRAD_DTYPE], *tie = optv[O_TIE], *dp_overlap = optv[O_DP_OVERLAP],
             *bucket_mb = optv[O_BUCKET_MB];
  layout_model_t m;
  const char *preset = *f[C_PRESET] ? f[C_PRESET] : "gpt2";
  snprintf(out->name, sizeof out->name, "%s", f[C_NAME]);
  if (layout_model_preset(preset, &m))
    return snprintf(err, errlen, "%s:%d: unknown preset '%s'", path, line, preset), -1;
  if (*f[C_ARCH]) {
    layout_arch_t a;
    if (layout_parse_arch(f[C_ARCH], &a))
      return snprintf(err, errlen, "%s:%d: arch '%s' (use gpt or llama)", path, line, f[C_ARCH]), -1;
    if ((int)a != m.arch) m.kv_heads = m.ffn = 0;
    m.arch = a;
  }
  int *ints[] = {&m.layers, &m.dim, &m.heads, &m.kv_heads, &m.ffn, &m.vocab, &m.ctx};
  for (int c = C_LAYERS; c <= C_CTX; c++)
    if (int_field(f[c], ints[c - C_LAYERS]))
      return snprintf(err, errlen, "%s:%d: column %s: '%s' is not a whole number", path, line,
                      COLS[c], f[c]),
             -1;
  if (*f[C_DIM] && !*f[C_FFN] && m.arch == LAYOUT_ARCH_GPT) m.ffn = 0;
  if (*tie) {
    layout_tie_t t;
    if (layout_parse_tie(tie, &t))
      return snprintf(err, errlen, "%s:%d: tie_embeddings '%s' (use yes, no or leave it empty)",
                      path, line, tie),
             -1;
    m.tie = t;
  }
  if (layout_model_validate(&m, err, errlen)) return -1;
  device_t dev;
  char derr[512];
  if (device_resolve(f[C_DEVICE], &dev, derr, sizeof derr))
    return snprintf(err, errlen, "%s:%d: %s", path, line, derr), -1;
  int nodes = 0, tp = 1, pp = 1, dp = 0, batch = 0, mb = 1, zero = 0;
  int *li[] = {&nodes, &tp, &pp, &dp, &batch, &mb};
  for (int c = C_NODES; c <= C_MB; c++)
    if (int_field(f[c], li[c - C_NODES]))
      return snprintf(err, errlen, "%s:%d: column %s: '%s' is not a whole number", path, line,
                      COLS[c], f[c]),
             -1;
  int zero_overlap = !strcmp(f[C_ZERO], "1-overlap");
  if (zero_overlap)
    zero = 1;
  else if (int_field(f[C_ZERO], &zero) || zero < 0 || zero > MEM_ZERO_FULL_SHARD)
    return snprintf(err, errlen, "%s:%d: zero '%s' (use 0, 1, 1-overlap, 2 or 3)", path, line, f[C_ZERO]), -1;
  if (!dp && nodes && tp && pp) dp = nodes / (tp * pp);
  if (!nodes) nodes = tp * pp * dp;
  if (!batch || !mb || !dp || batch % (dp * mb))
    return snprintf(err, errlen,
                    "%s:%d: global_batch %d is not a multiple of dp %d x micro_batch %d", path,
                    line, batch, dp, mb),
           -1;
  sim_options_t opt = sim_options_default();
  opt.memory = MEM_ACCOUNT_MIXED;
  opt.precision = MEM_PREC_BF16;
  if (*f[C_PREC] && memory_parse_sim_precision(f[C_PREC], &opt.precision))
    return snprintf(err, errlen, "%s:%d: precision '%s' (use " MEM_SIM_PRECISION_CHOICES ")", path, line,
                    f[C_PREC]),
           -1;
  opt.dtype = opt.precision == MEM_PREC_FP32 ? DEV_FP32 : DEV_BF16;
  if (*f[C_RC] && memory_parse_recompute(f[C_RC], &opt.recompute))
    return snprintf(err, errlen, "%s:%d: recompute '%s' (use " MEM_RECOMPUTE_CHOICES ")", path,
                    line, f[C_RC]),
           -1;
  opt.sequence_parallel = !strcmp(f[C_SP], "yes") || !strcmp(f[C_SP], "1");
  opt.fused_attention = *f[C_ATTN] ? !strcmp(f[C_ATTN], "fused") : dev.attn_fused_eff > 0;
  opt.zero = zero;
  opt.zero_overlap = zero_overlap;
  if (*dp_overlap && strcmp(dp_overlap, "0") && strcmp(dp_overlap, "1"))
    return snprintf(err, errlen, "%s:%d: dp_overlap '%s' (use 0, 1 or leave it empty)", path, line,
                    dp_overlap),
           -1;
  opt.overlap = strcmp(dp_overlap, "0") != 0; /* 0: the gradient buckets after backward */
  if (*bucket_mb) { /* the job's gradient bucket, MiB (--bucket-mb) */
    char *e;
    double mib = strtod(bucket_mb, &e);
    if (*e || !(mib > 0 && mib <= 1024))
      return snprintf(err, errlen,
                      "%s:%d: bucket_mb '%s' (use a size in MiB in (0, 1024] or leave it empty)",
                      path, line, bucket_mb),
             -1;
    opt.bucket_bytes = mib * 1048576.0;
    opt.bucket_given = 1;
  }
  if (int_field(vstages, &opt.vstages) || opt.vstages < 1)
    return snprintf(err, errlen, "%s:%d: virtual_stages '%s' is not a whole number >= 1", path,
                    line, vstages),
           -1;
  if (*tp_overlap && strcmp(tp_overlap, "0") && strcmp(tp_overlap, "1") && strcmp(tp_overlap, "ub"))
    return snprintf(err, errlen, "%s:%d: tp_overlap '%s' (use 0, 1, ub or leave it empty)", path,
                    line, tp_overlap),
           -1;
  opt.tp_overlap = !strcmp(tp_overlap, "ub") ? SIM_TP_OVERLAP_UB
                   : !strcmp(tp_overlap, "1") ? SIM_TP_OVERLAP_BACKWARD
                                              : SIM_TP_OVERLAP_NONE;
  if (*grad_dtype && strcmp(grad_dtype, "fp32") && strcmp(grad_dtype, "bf16"))
    return snprintf(err, errlen, "%s:%d: grad_dtype '%s' (use fp32, bf16 or leave it empty)", path,
                    line, grad_dtype),
           -1;
  opt.grad_bf16 = !strcmp(grad_dtype, "bf16");
  char *e;
  double meas = strtod(f[C_MEAS], &e);
  if (e == f[C_MEAS] || *e || !(meas > 0))
    return snprintf(err, errlen, "%s:%d: measured '%s' is not a positive number", path, line,
                    f[C_MEAS]),
           -1;
  if (!strcmp(f[C_UNIT], "tokens/s"))
    out->measured_tps = meas;
  else if (!strcmp(f[C_UNIT], "sequences/s"))
    out->measured_tps = meas * m.ctx;
  else if (!strcmp(f[C_UNIT], "tflops/device")) {
    double fpt;
    if (flops_per_token(f[C_CONV], &m, &fpt))
      return snprintf(err, errlen,
                      "%s:%d: flop_convention '%s' (use megatron, megatron-hw, 6n or palm) is "
                      "needed with tflops/device",
                      path, line, f[C_CONV]),
             -1;
    out->measured_tps = meas * 1e12 * nodes / fpt;
  } else {
    return snprintf(err, errlen, "%s:%d: unit '%s' (use tokens/s, sequences/s or tflops/device)",
                    path, line, f[C_UNIT]),
           -1;
  }
  if (strcmp(f[C_ROLE], "held-out") && strcmp(f[C_ROLE], "informs"))
    return snprintf(err, errlen, "%s:%d: role '%s' (use held-out or informs)", path, line,
                    f[C_ROLE]),
           -1;
  out->role = !strcmp(f[C_ROLE], "informs");
  layout_t *lay = malloc(sizeof *lay);
  if (!lay) return snprintf(err, errlen, "out of memory"), -1;
  sim_result_t r = {0};
  int rc = -1;
  char lerr[512];
  if (layout_init(lay, &m, nodes, tp, pp, dp, batch / (dp * mb), batch, NULL, lerr, sizeof lerr) ||
      sim_simulate(lay, &dev, &opt, dev.hbm_bytes, &r, lerr, sizeof lerr)) {
    snprintf(err, errlen, "%s:%d (%s): %s", path, line, out->name, lerr);
  } else {
    out->predicted_tps = r.tokens_per_s;
    out->fits = r.fits;
    snprintf(out->device, sizeof out->device, "%s", dev.name);
    out->nodes = nodes, out->tp = lay->tp, out->pp = lay->pp, out->dp = lay->dp;
    out->micro = lay->micro, out->step_s = r.step_s;
    sim_result_shares(&r, out->shares);
    if (explain) {
      printf("\n%s (%s on %d x %s):\n", out->name, preset, nodes, dev.name);
      sim_print_explain(lay, &r, stdout);
    }
    rc = 0;
  }
  sim_result_free(&r);
  free(lay);
  return rc;
}

/* Geometric-mean error of rows with the given role (-1: all): exp(mean |ln(pred/meas)|) - 1,
 * and the largest |relative error|. Returns the count. */
static int summary(const val_row_t *v, int n, int role, double *geo, double *worst) {
  double s = 0;
  int k = 0;
  *worst = 0;
  for (int i = 0; i < n; i++) {
    if (role >= 0 && v[i].role != role) continue;
    double q = v[i].predicted_tps / v[i].measured_tps;
    s += fabs(log(q));
    if (fabs(q - 1) > *worst) *worst = fabs(q - 1);
    k++;
  }
  *geo = k ? exp(s / k) - 1 : 0;
  return k;
}

/* The header's names for its error message, from COLS and OPT_COLS: every column in order
 * with the optional ones bracketed ("name, ..., role, [virtual_stages,] ... source"), and the
 * names allowed after role ("virtual_stages, ..., tie_embeddings or source"). */
static void header_names(char *cols, size_t ncols, char *opts, size_t nopts) {
  size_t a = 0, b = 0;
  cols[0] = opts[0] = '\0';
  for (int c = 0; c < C_SOURCE && a < ncols; c++)
    a += (size_t)snprintf(cols + a, ncols - a, "%s, ", COLS[c]);
  for (int o = 0; o < O_COUNT; o++) {
    if (a < ncols) a += (size_t)snprintf(cols + a, ncols - a, "[%s,] ", OPT_COLS[o]);
    if (b < nopts) b += (size_t)snprintf(opts + b, nopts - b, "%s, ", OPT_COLS[o]);
  }
  if (a < ncols) snprintf(cols + a, ncols - a, "%s", COLS[C_SOURCE]);
  if (b >= 2 && b < nopts) snprintf(opts + b - 2, nopts - b + 2, " or %s", COLS[C_SOURCE]);
}

/* A summary object: jobs, geometric-mean error and largest error (fractions) of the role's rows. */
static json_object *summary_json(const val_row_t *v, int n, int role) {
  double g, w;
  int k = summary(v, n, role, &g, &w);
  json_object *o = json_object_new_object();
  json_object_object_add(o, "jobs", json_object_new_int(k));
  json_object_object_add(o, "geomean_error", json_object_new_double(g));
  json_object_object_add(o, "largest_error", json_object_new_double(w));
  return o;
}

/* The whole result as one JSON document (--validate --json). */
static void print_validate_json(const char *path, const val_row_t *v, int n) {
  static const char *const part[SIM_NSHARES] = {"compute_s", "tp_comm_s", "pipeline_bubble_s",
                                                "dp_comm_s", "optimizer_s"};
  json_object *o = json_object_new_object(), *jobs = json_object_new_array();
  json_object_object_add(o, "file", json_object_new_string(path));
  for (int i = 0; i < n; i++) {
    json_object *j = json_object_new_object(), *b = json_object_new_object();
    json_object_object_add(j, "name", json_object_new_string(v[i].name));
    json_object_object_add(j, "role", json_object_new_string(v[i].role ? "informs" : "held-out"));
    json_object_object_add(j, "device", json_object_new_string(v[i].device));
    json_object_object_add(j, "nodes", json_object_new_int(v[i].nodes));
    json_object_object_add(j, "tp", json_object_new_int(v[i].tp));
    json_object_object_add(j, "pp", json_object_new_int(v[i].pp));
    json_object_object_add(j, "dp", json_object_new_int(v[i].dp));
    json_object_object_add(j, "microbatches", json_object_new_int(v[i].micro));
    json_object_object_add(j, "measured_tokens_per_s", json_object_new_double(v[i].measured_tps));
    json_object_object_add(j, "predicted_tokens_per_s", json_object_new_double(v[i].predicted_tps));
    json_object_object_add(j, "error", json_object_new_double(v[i].predicted_tps / v[i].measured_tps - 1));
    json_object_object_add(j, "fits", json_object_new_boolean(v[i].fits));
    json_object_object_add(j, "step_s", json_object_new_double(v[i].step_s));
    for (int k = 0; k < SIM_NSHARES; k++)
      json_object_object_add(b, part[k], json_object_new_double(v[i].shares[k] * v[i].step_s));
    json_object_object_add(j, "breakdown", b);
    json_object_array_add(jobs, j);
  }
  json_object_object_add(o, "jobs", jobs);
  json_object_object_add(o, "held_out", summary_json(v, n, 0));
  json_object_object_add(o, "informs", summary_json(v, n, 1));
  json_object_object_add(o, "all", summary_json(v, n, -1));
  sim_print_json(o);
  json_object_put(o);
}

int sim_validate_csv(const char *path, int explain, int as_json) {
  FILE *fp = fopen(path, "r");
  if (!fp) {
    strata_error("simulate --validate: cannot open %s (check the path)", path);
    return 2;
  }
  val_row_t *v = calloc(VAL_MAX_ROWS, sizeof *v);
  char line[4096], err[1024];
  int n = 0, lineno = 0, header = 0, rc = 0, nopt = 0;
  int opt_at[O_COUNT]; /* the optional columns' places, from the header */
  for (int o = 0; o < O_COUNT; o++) opt_at[o] = -1;
  while (v && fgets(line, sizeof line, fp)) {
    lineno++;
    char *p = line;
    while (*p == ' ') p++;
    if (*p == '#' || *p == '\n' || *p == '\0') continue;
    char *f[VAL_MAX_FIELDS];
    int nf = split_csv(p, f, header ? C_COUNT + nopt : VAL_MAX_FIELDS);
    if (!header) {
      /* optional columns between role and source, each named once: virtual_stages
       * (interleaved pipeline schedules), tp_overlap (--tp-overlap), grad_dtype (--grad-dtype),
       * tie_embeddings (--tie-embeddings) */
      int c = 0;
      while (c < C_SOURCE && c < nf && !strcmp(f[c], COLS[c])) c++;
      int bad = c < C_SOURCE || nf < C_COUNT;
      while (!bad && c < nf - 1) {
        int *at = NULL;
        for (int o = 0; o < O_COUNT && !at; o++)
          if (!strcmp(f[c], OPT_COLS[o])) at = &opt_at[o];
        if (at && *at >= 0) {
          strata_error("simulate --validate: %s:%d: the header names column '%s' twice", path,
                       lineno, f[c]);
          rc = 2;
          goto done;
        }
        if (!at) {
          bad = 1;
          break;
        }
        *at = c++;
      }
      if (!bad && c == nf - 1 && strcmp(f[c], COLS[C_SOURCE])) bad = 1;
      if (bad) {
        char cols[512], opts[256];
        header_names(cols, sizeof cols, opts, sizeof opts);
        strata_error("simulate --validate: %s:%d: the header's column %d must be '%s' (columns: "
                     "%s)",
                     path, lineno, c + 1,
                     c < C_SOURCE ? COLS[c] : c < nf - 1 ? opts : "source", cols);
        rc = 2;
        goto done;
      }
      nopt = nf - C_COUNT;
      header = 1;
      continue;
    }
    if (nf < C_COUNT + nopt) {
      strata_error("simulate --validate: %s:%d: %d columns, expected %d", path, lineno, nf,
                   C_COUNT + nopt);
      rc = 2;
      goto done;
    }
    const char *optv[O_COUNT];
    for (int o = 0; o < O_COUNT; o++) optv[o] = opt_at[o] >= 0 ? f[opt_at[o]] : "";
    f[C_SOURCE] = f[C_COUNT + nopt - 1];
    if (n >= VAL_MAX_ROWS) {
      strata_error("simulate --validate: %s: more than %d jobs; split the file", path, VAL_MAX_ROWS);
      rc = 2;
      goto done;
    }
    if (val_row(f, optv, lineno, path, &v[n], explain && !as_json, err, sizeof err)) {
      strata_error("simulate --validate: %s", err);
      rc = 2;
      goto done;
    }
    n++;
  }
  if (!v || !header || n == 0) {
    strata_error("simulate --validate: %s has no jobs (a header line and one row per measured job)",
                 path);
    rc = 2;
    goto done;
  }
  if (as_json) {
    print_validate_json(path, v, n);
    goto done;
  }
  printf("\n%-34s %-9s %14s %14s %8s %5s\n", "job", "role", "measured tok/s", "predicted",
         "error", "fits");
  for (int i = 0; i < n; i++)
    printf("%-34s %-9s %14.0f %14.0f %+7.1f%% %5s\n", v[i].name,
           v[i].role ? "informs" : "held-out", v[i].measured_tps, v[i].predicted_tps,
           100 * (v[i].predicted_tps / v[i].measured_tps - 1), v[i].fits ? "yes" : "NO");
  double g, w;
  int k = summary(v, n, 0, &g, &w);
  printf("held-out: %d jobs, geometric-mean error %.1f%%, largest %.1f%%\n", k, 100 * g, 100 * w);
  k = summary(v, n, 1, &g, &w);
  if (k) printf("informing constants: %d jobs, geometric-mean error %.1f%%, largest %.1f%%\n", k, 100 * g, 100 * w);
  k = summary(v, n, -1, &g, &w);
  printf("all: %d jobs, geometric-mean error %.1f%%, largest %.1f%%\n", k, 100 * g, 100 * w);
done:
  fclose(fp);
  free(v);
  return rc;
}
