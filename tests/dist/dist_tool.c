/* dist_tool.c -- checks for the distributed-training tests (tests/dist/dist_cli.sh), in C so
 * the test suite needs no Python.
 *
 *   dist_tool diff DIR_A DIR_B TOL     loads both checkpoints (GPT-2 or Llama, any layout: the
 *                                      loader reshards by tensor name) into a one-stage model and prints the
 *                                      largest absolute weight difference and the tensor holding
 *                                      it; exit 0 if it is <= TOL, 1 otherwise.
 *   dist_tool losses A.jsonl B.jsonl RELTOL [SKIP_A]
 *                                      compares the "loss" and "grad_norm" of every line of B with
 *                                      line SKIP_A + i of A; exit 0 if every relative difference
 *                                      is <= RELTOL and B has at least one line.
 *   dist_tool json FILE KEY...         FILE parses as JSON (json-c) and has every top-level KEY.
 *   dist_tool same A.json B.json KEY RELTOL
 *                                      the numbers A[KEY] and B[KEY] agree within RELTOL.
 *   dist_tool trace FILE NRANKS [overlap]
 *                                      trace.json parses, has traceEvents with "X" events named
 *                                      fwd/bwd for every pid 0..NRANKS-1; with `overlap`, every
 *                                      rank also has a bucket all-reduce (allreduce, micro >= 0)
 *                                      that started before the end of its step's last backward:
 *                                      reduction overlapped backward.
 *   dist_tool pb FILE WORLD PP DP      report.pb decodes as a RunReport with these sizes.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "gpt2.h"
#include "llama.h"
#include "stage.h"
#include "strata_proto.h"
#include "test_util.h"

/* A whole checkpoint of either family (config.json's model_type) as one model, viewed through
 * stage.h's family-neutral fields (flat params, tensor catalogue). */
static int load_full(const char *dir, stage_model_t *out) {
  char err[1024];
  ckpt_model_config_t mc;
  if (ckpt_read_model_config(dir, &mc, err, sizeof err)) goto fail;
  if (mc.arch == CKPT_ARCH_LLAMA) {
    llama_model_t *m = NULL;
    if (llama_create(&mc.llama, &m, err, sizeof err)) goto fail;
    *out = stage_of_llama(m);
    if (ckpt_load_llama(dir, m, NULL, NULL, NULL, err, sizeof err)) goto fail;
  } else {
    gpt2_model_t *m = NULL;
    if (gpt2_create(&mc.shape, (gpt2_range_t){0, mc.shape.layers, 1, 1}, &m, err, sizeof err)) goto fail;
    *out = stage_of_gpt2(m);
    if (ckpt_load(dir, m, NULL, NULL, NULL, err, sizeof err)) goto fail;
  }
  return 0;
fail:
  fprintf(stderr, "dist_tool: %s\n", err);
  return -1;
}

static void free_full(stage_model_t *m) {
  if (!m->model) return;
  if (m->ops == &stage_llama_ops) llama_free(m->model);
  else gpt2_free(m->model);
}

static const gpt2_tensor_t *find_tensor(const stage_model_t *m, const char *name) {
  for (int t = 0; t < m->num_tensors; t++)
    if (!strcmp(m->tensors[t].name, name)) return &m->tensors[t];
  return NULL;
}

static int cmd_diff(const char *a, const char *b, double tol) {
  stage_model_t ma = {0}, mb = {0};
  int rc = 2;
  if (load_full(a, &ma) || load_full(b, &mb)) goto exit;
  rc = 1;
  if (ma.ops != mb.ops || ma.num_params != mb.num_params) {
    fprintf(stderr, "dist_tool: different models (%s, %zu parameters; %s, %zu)\n", ma.ops->family,
            ma.num_params, mb.ops->family, mb.num_params);
    goto exit;
  }
  double worst = 0;
  int worst_t = 0;
  for (int t = 0; t < ma.num_tensors; t++) {
    const gpt2_tensor_t *ta = &ma.tensors[t];
    const gpt2_tensor_t *tb = find_tensor(&mb, ta->name);
    for (size_t i = 0; i < ta->numel; i++) {
      double d = fabs((double)ma.params[ta->offset + i] - (double)mb.params[tb->offset + i]);
      if (!(d <= worst)) {
        worst = d;
        worst_t = t;
      }
    }
  }
  printf("max abs weight diff %.3g (tensor %s), tolerance %.3g\n", worst, ma.tensors[worst_t].name, tol);
  rc = worst <= tol ? 0 : 1;
exit:
  free_full(&ma);
  free_full(&mb);
  return rc;
}

/* Reads the `key` values of a steps.jsonl into vals (capacity cap); returns the count or -1. */
static int read_key(const char *path, const char *key, double *vals, int cap) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "dist_tool: cannot open %s\n", path);
    return -1;
  }
  char line[4096];
  int n = 0;
  while (n < cap && fgets(line, sizeof line, f)) {
    json_object *o = json_tokener_parse(line), *l = NULL;
    if (!o || !json_object_object_get_ex(o, key, &l)) {
      fprintf(stderr, "dist_tool: %s line %d is not a JSON object with \"%s\"\n", path, n + 1, key);
      if (o) json_object_put(o);
      fclose(f);
      return -1;
    }
    vals[n++] = json_object_get_double(l);
    json_object_put(o);
  }
  fclose(f);
  return n;
}

static int compare_key(const char *a, const char *b, const char *key, double rel, int skip) {
  static double va[100000], vb[100000];
  int na = read_key(a, key, va, 100000), nb = read_key(b, key, vb, 100000);
  if (na < 0 || nb < 0) return 2;
  if (nb < 1 || skip + nb > na) {
    fprintf(stderr, "dist_tool: %s has %d lines, %s has %d (skip %d): nothing to compare\n", a, na,
            b, nb, skip);
    return 1;
  }
  double worst = 0;
  int bad = 0;
  for (int i = 0; i < nb; i++) {
    double x = va[skip + i], y = vb[i];
    double r = fabs(x - y) / fmax(fabs(x), 1e-12);
    if (!(r <= worst)) worst = r;
    if (!(r <= rel)) {
      fprintf(stderr, "step %d: %s %.9g vs %.9g (relative %.3g > %.3g)\n", skip + i + 1, key, x, y, r, rel);
      bad = 1;
    }
  }
  printf("%d steps compared, max relative %s diff %.3g, tolerance %.3g\n", nb, key, worst, rel);
  return bad;
}

/* The losses, and the global gradient norms before clipping (AdamW and clipping are invariant
 * to a uniform gradient scale, so a wrong DP average would not show in the losses). */
static int cmd_losses(const char *a, const char *b, double rel, int skip) {
  int bad = compare_key(a, b, "loss", rel, skip);
  return compare_key(a, b, "grad_norm", rel, skip) || bad;
}

static int cmd_json(const char *path, int nkeys, char **keys) {
  json_object *o = json_object_from_file(path);
  if (!o || !json_object_is_type(o, json_type_object)) {
    fprintf(stderr, "dist_tool: %s is not a JSON object: %s\n", path, json_util_get_last_err());
    return 1;
  }
  int bad = 0;
  for (int i = 0; i < nkeys; i++)
    if (!json_object_object_get_ex(o, keys[i], NULL)) {
      fprintf(stderr, "dist_tool: %s lacks key \"%s\"\n", path, keys[i]);
      bad = 1;
    }
  json_object_put(o);
  return bad;
}

#define MAX_STEPS 4096
static int cmd_same(const char *a, const char *b, const char *key, double rel) {
  json_object *oa = json_object_from_file(a), *ob = json_object_from_file(b), *va, *vb;
  if (!oa || !ob || !json_object_object_get_ex(oa, key, &va) ||
      !json_object_object_get_ex(ob, key, &vb)) {
    fprintf(stderr, "dist_tool: %s and %s must both be JSON objects with \"%s\"\n", a, b, key);
    return 1;
  }
  double x = json_object_get_double(va), y = json_object_get_double(vb);
  double r = fabs(x - y) / fmax(fabs(x), 1e-12);
  printf("%s: %.9g vs %.9g, relative diff %.3g, tolerance %.3g\n", key, x, y, r, rel);
  json_object_put(oa);
  json_object_put(ob);
  return r <= rel ? 0 : 1;
}

static int cmd_trace(const char *path, int nranks, int overlap) {
  json_object *o = json_object_from_file(path), *ev = NULL;
  if (!o || !json_object_object_get_ex(o, "traceEvents", &ev) ||
      !json_object_is_type(ev, json_type_array)) {
    fprintf(stderr, "dist_tool: %s has no traceEvents array\n", path);
    return 1;
  }
  int *fwd = calloc((size_t)nranks, sizeof(int)), *bwd = calloc((size_t)nranks, sizeof(int));
  int *early = calloc((size_t)nranks, sizeof(int));
  /* last backward end per (rank, step), then a second pass over the bucket all-reduces */
  double *bwd_end = calloc((size_t)nranks * MAX_STEPS, sizeof(double));
  size_t n = json_object_array_length(ev);
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(ev, i), *ph, *name, *pid, *dur;
    if (!json_object_object_get_ex(e, "ph", &ph) || !json_object_object_get_ex(e, "name", &name) ||
        !json_object_object_get_ex(e, "pid", &pid)) {
      fprintf(stderr, "dist_tool: event %zu lacks ph/name/pid\n", i);
      return 1;
    }
    if (strcmp(json_object_get_string(ph), "X")) continue;
    if (!json_object_object_get_ex(e, "dur", &dur) || json_object_get_double(dur) < 0) {
      fprintf(stderr, "dist_tool: event %zu has no non-negative dur\n", i);
      return 1;
    }
    int p = json_object_get_int(pid);
    if (p >= 1000) continue; /* the simulated-device timeline (pid 1000 + rank) */
    if (p < 0 || p >= nranks) {
      fprintf(stderr, "dist_tool: event %zu has pid %d outside 0..%d\n", i, p, nranks - 1);
      return 1;
    }
    json_object *args, *jstep, *jmicro, *ts;
    int step = 0, micro = -1;
    if (json_object_object_get_ex(e, "args", &args)) {
      if (json_object_object_get_ex(args, "step", &jstep)) step = json_object_get_int(jstep);
      if (json_object_object_get_ex(args, "micro", &jmicro)) micro = json_object_get_int(jmicro);
    }
    double t = json_object_object_get_ex(e, "ts", &ts) ? json_object_get_double(ts) : 0;
    double end = t + json_object_get_double(dur);
    if (step < 0 || step >= MAX_STEPS) step = 0;
    if (!strcmp(json_object_get_string(name), "fwd")) fwd[p]++;
    if (!strcmp(json_object_get_string(name), "bwd")) {
      bwd[p]++;
      if (end > bwd_end[(size_t)p * MAX_STEPS + step]) bwd_end[(size_t)p * MAX_STEPS + step] = end;
    }
    (void)micro;
  }
  for (size_t i = 0; overlap && i < n; i++) {
    json_object *e = json_object_array_get_idx(ev, i), *name, *pid, *args, *jstep, *jmicro, *ts;
    json_object_object_get_ex(e, "name", &name);
    if (strcmp(json_object_get_string(name), "allreduce")) continue;
    json_object_object_get_ex(e, "pid", &pid);
    if (!json_object_object_get_ex(e, "args", &args) ||
        !json_object_object_get_ex(args, "step", &jstep) ||
        !json_object_object_get_ex(args, "micro", &jmicro) || !json_object_object_get_ex(e, "ts", &ts))
      continue;
    int p = json_object_get_int(pid), step = json_object_get_int(jstep);
    if (p < 0 || p >= nranks) continue; /* the simulated timeline */
    if (json_object_get_int(jmicro) < 0 || step < 0 || step >= MAX_STEPS) continue;
    if (json_object_get_double(ts) < bwd_end[(size_t)p * MAX_STEPS + step]) early[p]++;
  }
  int bad = 0;
  for (int r = 0; r < nranks; r++)
    if (!fwd[r] || !bwd[r]) {
      fprintf(stderr, "dist_tool: rank %d has %d fwd and %d bwd events\n", r, fwd[r], bwd[r]);
      bad = 1;
    } else if (overlap && !early[r]) {
      fprintf(stderr, "dist_tool: rank %d has no bucket all-reduce started during backward\n", r);
      bad = 1;
    } else if (overlap) {
      printf("rank %d: %d bucket all-reduces started before its step's backward ended\n", r, early[r]);
    }
  printf("%zu trace events\n", n);
  free(fwd);
  free(bwd);
  free(early);
  free(bwd_end);
  json_object_put(o);
  return bad;
}

static int cmd_pb(const char *path, int world, int pp, int dp) {
  size_t len = 0;
  void *buf = test_read_file(path, &len);
  if (!buf) {
    fprintf(stderr, "dist_tool: cannot read %s\n", path);
    return 1;
  }
  strata_run_report_t *r = calloc(1, sizeof *r);
  char err[512];
  if (strata_run_report_decode(buf, len, r, err, sizeof err)) {
    fprintf(stderr, "dist_tool: %s: %s\n", path, err);
    return 1;
  }
  int ok = r->world_size == world && r->layout.pp == pp && r->layout.dp == dp &&
           r->n_stages == pp && r->steps > 0 && isfinite(r->final_loss) && r->tokens_per_s > 0;
  printf("RunReport: world %d pp %d dp %d steps %llu final_loss %.6g tokens/s %.6g transport %s\n",
         r->world_size, r->layout.pp, r->layout.dp, (unsigned long long)r->steps, r->final_loss,
         r->tokens_per_s, r->transport);
  free(r);
  free(buf);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 5 && !strcmp(argv[1], "diff")) return cmd_diff(argv[2], argv[3], atof(argv[4]));
  if (argc >= 5 && !strcmp(argv[1], "losses"))
    return cmd_losses(argv[2], argv[3], atof(argv[4]), argc > 5 ? atoi(argv[5]) : 0);
  if (argc >= 3 && !strcmp(argv[1], "json")) return cmd_json(argv[2], argc - 3, argv + 3);
  if (argc >= 6 && !strcmp(argv[1], "same")) return cmd_same(argv[2], argv[3], argv[4], atof(argv[5]));
  if (argc >= 4 && !strcmp(argv[1], "trace"))
    return cmd_trace(argv[2], atoi(argv[3]), argc > 4 && !strcmp(argv[4], "overlap"));
  if (argc >= 6 && !strcmp(argv[1], "pb"))
    return cmd_pb(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  fprintf(stderr, "usage: dist_tool diff A B TOL | losses A.jsonl B.jsonl RELTOL [SKIP] | json FILE KEY... "
          "| same A.json B.json KEY RELTOL | trace FILE NRANKS [overlap] | pb FILE WORLD PP DP\n");
  return 2;
}
