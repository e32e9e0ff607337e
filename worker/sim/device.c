/* device.c -- device profiles, the roofline / alpha-beta / ring-collective time model, JSON
 * profiles and the `cpu` calibration (contract in device.h, figures in SIMULATION.md). */
#include "device.h"

#include "datapath.h"
#include "strata/coll.h"
#include "util.h"

#include <cblas.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *device_dtype_name(device_dtype_t d) {
  return d == DEV_FP32 ? "fp32" : d == DEV_BF16 ? "bf16" : d == DEV_FP8 ? "fp8" : "?";
}
int device_dtype_size(device_dtype_t d) { return d == DEV_FP32 ? 4 : d == DEV_BF16 ? 2 : 1; }
int device_parse_dtype(const char *s, device_dtype_t *out) {
  if (!s) return -1;
  if (!strcmp(s, "fp32"))
    *out = DEV_FP32;
  else if (!strcmp(s, "bf16"))
    *out = DEV_BF16;
  else if (!strcmp(s, "fp8"))
    *out = DEV_FP8;
  else
    return -1;
  return 0;
}

#define GIB 1073741824.0
#define T12 1e12
#define G9 1e9
#define US 1e-6

/* The efficiency figures of a GPU (NVIDIA) and of a Trainium profile; sources and which are
 * assumptions: SIMULATION.md and devices/NAME.json. Trainium's intra-instance bus efficiency is
 * nccom-test's measured busbw per rank (52.8 GB/s; a rank is one NeuronCore) over one
 * NeuronCore's share of its chip's NeuronLink-v2 (384 / 2 GB/s): per chip, two cores move
 * twice a core's busbw over the whole link, the same fraction. */
#define GPU_EFF(mm, units, attn, hbm, intra_bus, inter_bus)                                       \
  .op_overhead_s = 3 * US, .mm_eff = (mm), .mm_tile_m = 256, .mm_tile_n = 128, .mm_units = (units), \
  .attn_fused_eff = (attn), .hbm_eff = (hbm), .intra_bus_eff = (intra_bus),                        \
  .inter_bus_eff = (inter_bus), .coll_base_s = 8 * US, .coll_auto = 1, .overlap_slowdown = 16.0 / (units)
#define TRN_EFF(units)                                                                            \
  .op_overhead_s = 2 * US, .mm_eff = 0.8, .mm_tile_m = 128, .mm_tile_n = 512, .mm_units = (units), \
  .attn_fused_eff = 0.5, .hbm_eff = 0.8, .intra_bus_eff = 52.8 / 192, .inter_bus_eff = 0.75,       \
  .coll_base_s = 55 * US, .coll_auto = 1, .overlap_slowdown = 0.1

int device_builtin(const char *name, device_t *out) {
  /* peak FLOP/s (fp32, bf16, fp8), HBM bytes and B/s, chips per instance, intra-instance link
   * B/s and latency, the instance's network B/s and latency, then the efficiency model. */
  static const device_t builtin[] = {
      {.name = "trn1", .peak_flops = {47.5 * T12, 190 * T12, 190 * T12}, .hbm_bytes = 32 * GIB,
       .hbm_Bps = 820 * G9, .chips_per_instance = 16, .intra_Bps = 384 * G9, .intra_lat_s = 1.5 * US,
       .inter_Bps = 100 * G9, .inter_lat_s = 15 * US, TRN_EFF(2)},
      {.name = "trn1-core", .peak_flops = {23.75 * T12, 95 * T12, 95 * T12}, .hbm_bytes = 16 * GIB,
       .hbm_Bps = 410 * G9, .chips_per_instance = 32, .intra_Bps = 192 * G9,
       .intra_lat_s = 1.5 * US, .inter_Bps = 100 * G9, .inter_lat_s = 15 * US, TRN_EFF(1)},
      {.name = "trn2", .peak_flops = {166.75 * T12, 667 * T12, 1299 * T12}, .hbm_bytes = 96 * GIB,
       .hbm_Bps = 2900 * G9, .chips_per_instance = 16, .intra_Bps = 1000 * G9,
       .intra_lat_s = 1.5 * US, .inter_Bps = 400 * G9, .inter_lat_s = 15 * US, TRN_EFF(8)},
      {.name = "trn3", .peak_flops = {167.75 * T12, 671 * T12, 2517 * T12}, .hbm_bytes = 144 * GIB,
       .hbm_Bps = 4900 * G9, .chips_per_instance = 16, .intra_Bps = 2000 * G9,
       .intra_lat_s = 1.5 * US, .inter_Bps = 400 * G9, .inter_lat_s = 15 * US, TRN_EFF(8)},
      {.name = "trn4", .peak_flops = {503.25 * T12, 2013 * T12, 7551 * T12}, .hbm_bytes = 144 * GIB,
       .hbm_Bps = 19600 * G9, .chips_per_instance = 16, .intra_Bps = 4000 * G9,
       .intra_lat_s = 1.5 * US, .inter_Bps = 400 * G9, .inter_lat_s = 15 * US, TRN_EFF(8),
       .projection = 1},
      {.name = "h100", .peak_flops = {67 * T12, 989 * T12, 1979 * T12}, .hbm_bytes = 80e9,
       .hbm_Bps = 3350 * G9, .chips_per_instance = 8, .intra_Bps = 450 * G9, .intra_lat_s = 2 * US,
       .inter_Bps = 400 * G9, .inter_lat_s = 15 * US, GPU_EFF(0.75, 132, 0.35, 0.9, 0.8, 0.9),
       .mm_fp8_eff = 0.67},
      {.name = "a100", .peak_flops = {19.5 * T12, 312 * T12, 312 * T12}, .hbm_bytes = 80 * GIB,
       .hbm_Bps = 2039 * G9, .chips_per_instance = 8, .intra_Bps = 300 * G9, .intra_lat_s = 2 * US,
       .inter_Bps = 200 * G9, .inter_lat_s = 15 * US, GPU_EFF(0.8, 108, 0.6, 0.85, 0.78, 0.9)},
  };
  for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
    if (name && !strcmp(name, builtin[i].name)) {
      *out = builtin[i];
      return 0;
    }
  return -1;
}

int device_has_eff(const device_t *d) { return d->mm_eff > 0; }

int device_time_shared(const device_t *d) { return d->share_ranks > 0 && d->timeshare > 1; }

double device_matmul_eff(const device_t *d, double m, double n, double k, double count) {
  (void)k;
  if (!device_has_eff(d) || !(m >= 1) || !(n >= 1)) return 1;
  double e = d->mm_eff;
  double tiles_m = d->mm_tile_m > 0 ? ceil(m / d->mm_tile_m) : 1,
         tiles_n = d->mm_tile_n > 0 ? ceil(n / d->mm_tile_n) : 1;
  if (d->mm_tile_m > 0 && d->mm_tile_n > 0)
    e *= m * n / (tiles_m * d->mm_tile_m * tiles_n * d->mm_tile_n);
  if (d->mm_units > 0) {
    double tiles = tiles_m * tiles_n * (count >= 1 ? count : 1);
    e *= tiles / (ceil(tiles / d->mm_units) * d->mm_units);
  }
  return e;
}

double device_matmul_eff_dt(const device_t *d, device_dtype_t dt, double m, double n, double k,
                            double count) {
  double e = device_matmul_eff(d, m, n, k, count);
  return dt == DEV_FP8 && d->mm_fp8_eff > 0 && device_has_eff(d) ? e * d->mm_fp8_eff / d->mm_eff : e;
}

int device_validate(const device_t *d, char *err, size_t errlen) {
  const struct {
    const char *field;
    double v;
  } f[] = {{"peak_tflops_fp32", d->peak_flops[DEV_FP32]},
           {"peak_tflops_bf16", d->peak_flops[DEV_BF16]},
           {"peak_tflops_fp8", d->peak_flops[DEV_FP8]},
           {"hbm_gib", d->hbm_bytes},
           {"hbm_gbps", d->hbm_Bps},
           {"chips_per_instance", d->chips_per_instance},
           {"intra_gbps", d->intra_Bps},
           {"inter_gbps", d->inter_Bps}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (!(f[i].v > 0) || !isfinite(f[i].v))
      return strata_fail(err, errlen, "device '%s': %s must be a positive number (got %g)", d->name,
                  f[i].field, f[i].v);
  if (!(d->intra_lat_s >= 0) || !(d->inter_lat_s >= 0))
    return strata_fail(err, errlen, "device '%s': intra_latency_us and inter_latency_us must be >= 0",
                d->name);
  if (!(d->reduce_Bps >= 0))
    return strata_fail(err, errlen, "device '%s': reduce_gbps must be >= 0 (0 = ignore)", d->name);
  if (!(d->op_overhead_s >= 0) || !isfinite(d->op_overhead_s))
    return strata_fail(err, errlen, "device '%s': op_overhead_us must be >= 0 (0 = none)", d->name);
  if (!(d->coll_lat_s >= 0) || !isfinite(d->coll_lat_s))
    return strata_fail(err, errlen, "device '%s': coll_latency_us must be >= 0 (0 = the link's)",
                       d->name);
  const double fr[] = {d->mm_eff, d->mm_fp8_eff, d->attn_fused_eff, d->hbm_eff, d->intra_bus_eff,
                       d->inter_bus_eff, d->overlap_slowdown};
  for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++)
    if (!(fr[i] >= 0 && fr[i] <= 1))
      return strata_fail(err, errlen,
                         "device '%s': the efficiency fractions (mm_efficiency, mm_fp8_efficiency, "
                         "attention_fused_efficiency, hbm_efficiency, intra/inter_bus_efficiency, "
                         "overlap_slowdown) must lie in [0, 1]; 0 means none",
                         d->name);
  if (!(d->coll_base_s >= 0) || !isfinite(d->coll_base_s))
    return strata_fail(err, errlen, "device '%s': coll_base_us must be >= 0", d->name);
  return 0;
}

static int json_number(json_object *o, const char *path, const char *field, double *out, char *err,
                       size_t errlen) {
  json_object *v;
  if (!json_object_object_get_ex(o, field, &v))
    return strata_fail(err, errlen,
                "device file %s: missing field \"%s\" (every field is required; see "
                "worker/sim/SIMULATION.md)",
                path, field);
  json_type t = json_object_get_type(v);
  if (t != json_type_double && t != json_type_int)
    return strata_fail(err, errlen, "device file %s: field \"%s\" must be a number", path, field);
  *out = json_object_get_double(v);
  return 0;
}

int device_load_json(const char *path, device_t *out, char *err, size_t errlen) {
  int rc = -1;
  json_object *root = json_object_from_file(path);
  if (!root)
    return strata_fail(err, errlen, "device file %s: cannot read or parse JSON (%s)", path,
                json_util_get_last_err() ? json_util_get_last_err() : "unknown error");
  memset(out, 0, sizeof *out);
  json_object *name;
  if (!json_object_is_type(root, json_type_object)) {
    strata_fail(err, errlen, "device file %s: top level must be a JSON object", path);
    goto put_root;
  }
  if (!json_object_object_get_ex(root, "name", &name) ||
      !json_object_is_type(name, json_type_string)) {
    strata_fail(err, errlen, "device file %s: missing string field \"name\"", path);
    goto put_root;
  }
  snprintf(out->name, sizeof out->name, "%s", json_object_get_string(name));
  double fp32 = 0, bf16 = 0, fp8 = 0, hbm_gib = 0, hbm_gbps = 0, chips = 0, intra = 0, intra_us = 0,
         inter = 0, inter_us = 0, reduce = 0; /* set by json_number (zeros: gcc -O3 cannot see it) */
  if (json_number(root, path, "peak_tflops_fp32", &fp32, err, errlen) ||
      json_number(root, path, "peak_tflops_bf16", &bf16, err, errlen) ||
      json_number(root, path, "peak_tflops_fp8", &fp8, err, errlen) ||
      json_number(root, path, "hbm_gib", &hbm_gib, err, errlen) ||
      json_number(root, path, "hbm_gbps", &hbm_gbps, err, errlen) ||
      json_number(root, path, "chips_per_instance", &chips, err, errlen) ||
      json_number(root, path, "intra_gbps", &intra, err, errlen) ||
      json_number(root, path, "intra_latency_us", &intra_us, err, errlen) ||
      json_number(root, path, "inter_gbps", &inter, err, errlen) ||
      json_number(root, path, "inter_latency_us", &inter_us, err, errlen) ||
      json_number(root, path, "reduce_gbps", &reduce, err, errlen))
    goto put_root;
  if (chips < 1 || chips != floor(chips) || chips > 1e6) {
    strata_fail(err, errlen, "device file %s: chips_per_instance must be a positive integer (got %g)",
         path, chips);
    goto put_root;
  }
  out->peak_flops[DEV_FP32] = fp32 * T12;
  out->peak_flops[DEV_BF16] = bf16 * T12;
  out->peak_flops[DEV_FP8] = fp8 * T12;
  out->hbm_bytes = hbm_gib * GIB;
  out->hbm_Bps = hbm_gbps * G9;
  out->chips_per_instance = (int)chips;
  out->intra_Bps = intra * G9;
  out->intra_lat_s = intra_us * US;
  out->inter_Bps = inter * G9;
  out->inter_lat_s = inter_us * US;
  out->reduce_Bps = reduce * G9;
  json_object *ov; /* optional: fixed cost per op, microseconds (default 0) */
  if (json_object_object_get_ex(root, "op_overhead_us", &ov)) {
    double us = 0;
    if (json_number(root, path, "op_overhead_us", &us, err, errlen)) goto put_root;
    out->op_overhead_s = us * US;
  }
  if (json_object_object_get_ex(root, "coll_latency_us", &ov)) {
    double us = 0;
    if (json_number(root, path, "coll_latency_us", &us, err, errlen)) goto put_root;
    out->coll_lat_s = us * US;
  }
  /* the efficiency model, all optional (absent: factors of 1) */
  const struct {
    const char *field;
    double scale;
    double *dst;
  } eff[] = {{"mm_efficiency", 1, &out->mm_eff},
             {"mm_fp8_efficiency", 1, &out->mm_fp8_eff},
             {"attention_fused_efficiency", 1, &out->attn_fused_eff},
             {"hbm_efficiency", 1, &out->hbm_eff},
             {"intra_bus_efficiency", 1, &out->intra_bus_eff},
             {"inter_bus_efficiency", 1, &out->inter_bus_eff},
             {"coll_base_us", US, &out->coll_base_s},
             {"overlap_slowdown", 1, &out->overlap_slowdown}};
  for (size_t i = 0; i < sizeof eff / sizeof eff[0]; i++)
    if (json_object_object_get_ex(root, eff[i].field, &ov)) {
      double v = 0;
      if (json_number(root, path, eff[i].field, &v, err, errlen)) goto put_root;
      *eff[i].dst = v * eff[i].scale;
    }
  const struct {
    const char *field;
    int *dst;
  } ints[] = {{"mm_tile_m", &out->mm_tile_m}, {"mm_tile_n", &out->mm_tile_n},
              {"mm_units", &out->mm_units}, {"collective_auto", &out->coll_auto},
              {"projection", &out->projection}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if (json_object_object_get_ex(root, ints[i].field, &ov)) {
      double v = 0;
      if (json_number(root, path, ints[i].field, &v, err, errlen)) goto put_root;
      if (v < 0 || v != floor(v) || v > 1e6) {
        strata_fail(err, errlen, "device file %s: %s must be a non-negative integer (got %g)", path,
                    ints[i].field, v);
        goto put_root;
      }
      *ints[i].dst = (int)v;
    }
  if (device_validate(out, err, errlen)) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, "device file %s: %s", path, err);
    snprintf(err, errlen, "%s", tmp);
    goto put_root;
  }
  rc = 0;
put_root:
  json_object_put(root);
  return rc;
}

int device_resolve(const char *spec, device_t *out, char *err, size_t errlen) {
  if (!spec || !*spec)
    return strata_fail(err, errlen, "--device: empty (use a100, h100, trn1, trn1-core, trn2, trn3, trn4, cpu or FILE.json)");
  if (!device_builtin(spec, out)) return 0;
  if (!strcmp(spec, "cpu")) {
    if (device_calibrate_cpu(out)) return strata_fail(err, errlen, "--device cpu: calibration failed");
    return 0;
  }
  size_t n = strlen(spec);
  if (n > 5 && !strcmp(spec + n - 5, ".json")) return device_load_json(spec, out, err, errlen);
  /* A shipped profile by name: devices/NAME.json in share/strata (datapath.h). */
  char rel[128], path[4096];
  if (!strchr(spec, '/') && snprintf(rel, sizeof rel, "devices/%s.json", spec) < (int)sizeof rel &&
      strata_data_path(rel, path, sizeof path) == 0)
    return device_load_json(path, out, err, errlen);
  (void)strata_data_path("devices", path, sizeof path); /* only named in the message */
  return strata_fail(err, errlen,
              "--device '%s': unknown profile (use a100, h100, trn1, trn1-core, trn2, trn3, trn4, cpu, the name of a "
              "profile in %s, or a FILE.json)", spec, path);
}

/* ---- time model ---- */

double device_op_time(const device_t *d, device_dtype_t dt, double flops, double bytes) {
  double tc = flops / d->peak_flops[dt], tm = bytes / d->hbm_Bps;
  return (tc > tm ? tc : tm) + d->op_overhead_s;
}

double device_op_time_eff(const device_t *d, device_dtype_t dt, double flops, double bytes,
                          double flop_eff) {
  double fe = flop_eff > 0 ? flop_eff : 1, he = d->hbm_eff > 0 ? d->hbm_eff : 1;
  double tc = flops / (d->peak_flops[dt] * fe), tm = bytes / (d->hbm_Bps * he);
  return (tc > tm ? tc : tm) + d->op_overhead_s;
}

void device_link(const device_t *d, int a, int b, double *lat_s, double *Bps) {
  if (a == b) {
    *lat_s = 0;
    *Bps = INFINITY;
  } else if (a / d->chips_per_instance == b / d->chips_per_instance) {
    *lat_s = d->intra_lat_s;
    *Bps = d->intra_Bps;
  } else {
    *lat_s = d->inter_lat_s;
    *Bps = d->inter_Bps / d->chips_per_instance;
  }
}

double device_p2p_time(const device_t *d, int a, int b, double bytes) {
  double lat, bw;
  if (a == b) return 0;
  device_link(d, a, b, &lat, &bw);
  return lat + bytes / bw;
}

void device_ring_bottleneck(const device_t *d, const int *ranks, int p, double *lat_s,
                            double *Bps) {
  *lat_s = 0;
  *Bps = INFINITY;
  for (int i = 0; i < p && p > 1; i++) {
    double lat, bw;
    device_link(d, ranks[i], ranks[(i + 1) % p], &lat, &bw);
    if (lat > *lat_s) *lat_s = lat;
    if (bw < *Bps) *Bps = bw;
  }
  if (p > 1 && d->coll_lat_s > *lat_s) *lat_s = d->coll_lat_s; /* measured collective step */
}

static double gamma_time(const device_t *d, double bytes) {
  return d->reduce_Bps > 0 ? bytes / d->reduce_Bps : 0;
}

/* The efficiency model's bus bandwidth of the ring's slowest link: line rate x the bus
 * efficiency of that link's kind (intra- or inter-instance). */
static double bus_Bps(const device_t *d, const int *ranks, int p, double line_Bps) {
  int cross = 0;
  for (int i = 0; i < p; i++)
    if (ranks[i] / d->chips_per_instance != ranks[(i + 1) % p] / d->chips_per_instance) cross = 1;
  double e = cross ? d->inter_bus_eff : d->intra_bus_eff;
  return line_Bps * (e > 0 ? e : 1);
}

/* Ring (kind 0 all-reduce, 1 reduce-scatter, 2 all-gather) over ranks: the classic formula. */
static double ring_time(const device_t *d, const int *ranks, int p, double bytes, int kind) {
  double a, B;
  device_ring_bottleneck(d, ranks, p, &a, &B);
  if (d->coll_auto) B = bus_Bps(d, ranks, p, B);
  double f = (double)(p - 1) / p, steps = kind == 0 ? 2.0 * (p - 1) : p - 1.0;
  double t = steps * a + (kind == 0 ? 2 : 1) * f * bytes / B;
  if (kind != 2) t += f * gamma_time(d, bytes);
  return t;
}

/* The efficiency model's choice: the cheapest of ring, tree (all-reduce only; NCCL's double
 * binary tree: 2 ceil(log2 p) hops, the whole array down and up) and hierarchical (when the
 * ranks span instances with m > 1 on each: the collective inside each instance on the fast
 * link, the inter-instance part on n / m bytes by the m chips in parallel), plus the fixed
 * cost of a call. */
static double coll_time(const device_t *d, const int *ranks, int p, double bytes, int kind) {
  if (p <= 1) return 0;
  double best = ring_time(d, ranks, p, bytes, kind);
  if (!d->coll_auto) return best;
  double a, B;
  device_ring_bottleneck(d, ranks, p, &a, &B);
  B = bus_Bps(d, ranks, p, B);
  if (kind == 0) {
    double tree = 2 * ceil(log2((double)p)) * a + 2 * bytes / B;
    if (tree < best) best = tree;
  }
  /* hierarchical: ranks grouped by instance, every instance holding the same m > 1 */
  const int K = d->chips_per_instance;
  int m = 0, ok = 1;
  for (int i = 0; i < p && ok; i++) {
    int c = 0;
    for (int j = 0; j < p; j++) c += ranks[j] / K == ranks[i] / K;
    if (m == 0) m = c;
    ok = c == m;
  }
  if (ok && m > 1 && m < p) {
    const int inst = p / m;
    int *loc = malloc(sizeof(int) * (size_t)(m > inst ? m : inst));
    if (loc) {
      int n = 0; /* one instance: the first rank's chips */
      for (int j = 0; j < p; j++)
        if (ranks[j] / K == ranks[0] / K) loc[n++] = ranks[j];
      double in_rs = ring_time(d, loc, m, bytes, kind == 2 ? 2 : 1);
      double in_ag = kind == 0 ? ring_time(d, loc, m, bytes, 2) : 0;
      n = 0; /* across instances: one chip of each */
      for (int j = 0; j < p && n < inst; j++) {
        int first = 1;
        for (int q = 0; q < j; q++) first &= ranks[q] / K != ranks[j] / K;
        if (first) loc[n++] = ranks[j];
      }
      double cross = ring_time(d, loc, inst, bytes / m, kind);
      if (kind == 0) {
        double ia, iB;
        device_ring_bottleneck(d, loc, inst, &ia, &iB);
        iB = bus_Bps(d, loc, inst, iB);
        double tree = 2 * ceil(log2((double)inst)) * ia + 2 * bytes / m / iB;
        if (tree < cross) cross = tree;
      }
      double h = (kind == 2 ? 0 : in_rs) + cross + (kind == 1 ? 0 : (kind == 0 ? in_ag : in_rs));
      if (h < best) best = h;
      free(loc);
    }
  }
  return best + d->coll_base_s;
}

double device_allreduce_time(const device_t *d, const int *ranks, int p, double bytes) {
  return coll_time(d, ranks, p, bytes, 0);
}

double device_reduce_scatter_time(const device_t *d, const int *ranks, int p, double bytes) {
  return coll_time(d, ranks, p, bytes, 1);
}

double device_allgather_time(const device_t *d, const int *ranks, int p, double bytes) {
  return coll_time(d, ranks, p, bytes, 2);
}

/* ---- calibration ---- */

/* Tunables of the calibration (small so start-up stays well under a second). */
#define CAL_GEMM_N 384  /* square sgemm size */
#define CAL_GEMM_REPS 5 /* best of */
#define CAL_COPY_BYTES (32u << 20)
#define CAL_COPY_REPS 6

static device_matmul_fn cal_matmul; /* NULL: cblas_sgemm on one thread */
void device_set_matmul(device_matmul_fn fn) { cal_matmul = fn; }
static void cal_mm(int M, int N, int K, const float *a, const float *b, float *c) {
  if (cal_matmul) {
    cal_matmul(M, N, K, a, b, c);
    return;
  }
  int threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
  openblas_set_num_threads(threads);
}

int device_calibrate_cpu(device_t *out) {
  int rc = -1;
  const int n = CAL_GEMM_N;
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
        *c = malloc(sizeof(float) * n * n);
  char *src = malloc(CAL_COPY_BYTES), *dst = malloc(CAL_COPY_BYTES);
  if (!a || !b || !c || !src || !dst) goto free_bufs;
  for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.25f, c[i] = 0;
  memset(src, 1, CAL_COPY_BYTES);
  memset(dst, 0, CAL_COPY_BYTES);
  double best = INFINITY;
  cal_mm(n, n, n, a, b, c); /* a first call may set the library up (oneDNN builds kernels) */
  for (int r = 0; r < CAL_GEMM_REPS; r++) {
    double t0 = strata_now_s();
    cal_mm(n, n, n, a, b, c);
    double t = strata_now_s() - t0;
    if (t < best) best = t;
  }
  double gflops = 2.0 * n * n * n / best;
  double best_copy = INFINITY;
  for (int r = 0; r < CAL_COPY_REPS; r++) {
    double t0 = strata_now_s();
    memcpy(dst, src, CAL_COPY_BYTES);
    double t = strata_now_s() - t0;
    src[r] = dst[CAL_COPY_BYTES - 1 - r]; /* keep the copies observable */
    if (t < best_copy) best_copy = t;
  }
  double copy_Bps = CAL_COPY_BYTES / best_copy;
  memset(out, 0, sizeof *out);
  snprintf(out->name, sizeof out->name, "cpu");
  out->peak_flops[DEV_FP32] = out->peak_flops[DEV_BF16] = out->peak_flops[DEV_FP8] = gflops;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  out->hbm_bytes = pages > 0 && page > 0 ? (double)pages * (double)page : 8 * GIB;
  out->hbm_Bps = 2 * copy_Bps;       /* memcpy reads and writes every byte */
  out->chips_per_instance = DEVICE_ONE_MACHINE; /* every rank on one "instance" */
  out->intra_Bps = out->inter_Bps = copy_Bps;
  out->intra_lat_s = out->inter_lat_s = 1 * US;
  out->reduce_Bps = copy_Bps / 1.5; /* reduce reads two operands and writes one */
  /* no copy engine: the core that computes backward also moves and sums the overlapped
   * buckets (grad_sync.c drives them from backward's callbacks), so their time adds to it */
  out->overlap_slowdown = 1;
  rc = 0;
free_bufs:
  free(a);
  free(b);
  free(c);
  free(src);
  free(dst);
  return rc;
}

#define CAL_PING_SMALL 8
#define CAL_PING_LARGE (4u << 20)

int device_calibrate_link(device_t *d, device_pingpong_fn fn, void *ctx) {
  double t_small, t_large;
  /* many small round trips: under load most wait for a time slice; the fastest is the link */
  if (!fn || fn(ctx, CAL_PING_SMALL, 200, &t_small) || fn(ctx, CAL_PING_LARGE, 8, &t_large))
    return -1;
  /* one-way time = rt / 2 = alpha + bytes * beta */
  double one_small = t_small / 2, one_large = t_large / 2;
  double beta = (one_large - one_small) / (double)(CAL_PING_LARGE - CAL_PING_SMALL);
  if (!(beta > 0)) beta = one_large / CAL_PING_LARGE;
  double alpha = one_small - CAL_PING_SMALL * beta;
  if (alpha < 0) alpha = 0;
  d->intra_lat_s = d->inter_lat_s = alpha;
  d->intra_Bps = 1.0 / beta;
  d->inter_Bps = d->intra_Bps * d->chips_per_instance; /* per-chip share = measured */
  return 0;
}

#define CAL_PING_TAG 0x5a5a /* message tag of the calibration ping-pong */
#define CAL_PING_MIN 5          /* round trips before the time budget may stop the ping-pong */
#define CAL_PING_BUDGET_S 0.15  /* seconds per ping-pong size (then the fastest so far) */

int device_pingpong_coll(void *ctx, size_t bytes, int iters, double *seconds_per_rt) {
  coll_comm_t *comm = ctx;
  if (!comm || coll_size(comm) < 2 || iters < 1) return -1;
  int rank = coll_rank(comm), rc = 0;
  size_t count =
      bytes / 4 ? bytes / 4 : 1; /* int32 elements; the transport moves 4 * count bytes */
  char *buf = calloc(count, 4);
  double result = 0;
  if (!buf) rc = -1;
  if (!rc && rank < 2) {
    int peer = 1 - rank;
    result = INFINITY; /* best round trip: the least disturbed by other processes */
    /* rank 0 stops early once CAL_PING_MIN round trips are done and CAL_PING_BUDGET_S has
     * passed (a loaded machine makes each round trip wait for a time slice); the first int of
     * every message tells rank 1 whether another follows */
    int32_t *flag = (int32_t *)buf;
    double start = strata_now_s();
    for (int i = 0; i < iters && !rc; i++) {
      double t0 = strata_now_s();
      if (rank == 0) {
        *flag = i + 1 < iters && !(i + 1 >= CAL_PING_MIN && t0 - start > CAL_PING_BUDGET_S);
        int more = *flag;
        rc = coll_send(buf, count, COLL_I32, peer, CAL_PING_TAG, comm) ||
             coll_recv(buf, count, COLL_I32, peer, CAL_PING_TAG, comm);
        if (!more) iters = 0;
      } else {
        rc = coll_recv(buf, count, COLL_I32, peer, CAL_PING_TAG, comm) ||
             coll_send(buf, count, COLL_I32, peer, CAL_PING_TAG, comm);
        if (!*flag) iters = 0;
      }
      double t = strata_now_s() - t0;
      if (t < result) result = t;
    }
  }
  free(buf);
  /* agree on failure and share rank 0's timing */
  double msg[2] = {result, rc ? 1.0 : 0.0};
  if (coll_allreduce(msg + 1, msg + 1, 1, COLL_F64, COLL_MAX, comm) != COLL_OK) return -1;
  if (msg[1] != 0) return -1;
  if (coll_broadcast(msg, 1, COLL_F64, 0, comm) != COLL_OK) return -1;
  *seconds_per_rt = msg[0];
  return 0;
}

void device_describe(const device_t *d, char *buf, size_t len) {
  if (d->chips_per_instance >= DEVICE_ONE_MACHINE) /* the cpu profile: every rank on this machine */
    snprintf(buf, len,
             "%s: fp32 %.4g / bf16 %.4g / fp8 %.4g TFLOP/s, RAM %.1f GiB @ %.4g GB/s, every rank on "
             "this machine, links %.4g GB/s %.1f us",
             d->name, d->peak_flops[DEV_FP32] / T12, d->peak_flops[DEV_BF16] / T12,
             d->peak_flops[DEV_FP8] / T12, d->hbm_bytes / GIB, d->hbm_Bps / G9, d->intra_Bps / G9,
             d->intra_lat_s / US);
  else
    snprintf(buf, len,
             "%s: fp32 %.4g / bf16 %.4g / fp8 %.4g TFLOP/s, HBM %.1f GiB @ %.0f GB/s, %d chips/instance, "
             "intra %.0f GB/s %.1f us, inter %.0f GB/s/instance %.1f us",
             d->name, d->peak_flops[DEV_FP32] / T12, d->peak_flops[DEV_BF16] / T12,
             d->peak_flops[DEV_FP8] / T12, d->hbm_bytes / GIB, d->hbm_Bps / G9, d->chips_per_instance,
             d->intra_Bps / G9, d->intra_lat_s / US, d->inter_Bps / G9, d->inter_lat_s / US);
  size_t n = strlen(buf);
  if (d->op_overhead_s > 0 && n < len)
    snprintf(buf + n, len - n, ", %.3g us per op", d->op_overhead_s / US);
  n = strlen(buf);
  if (d->coll_lat_s > 0 && n < len)
    snprintf(buf + n, len - n, ", collective step %.3g us", d->coll_lat_s / US);
  n = strlen(buf);
  if (d->timeshare > 1 && n < len)
    snprintf(buf + n, len - n, ", time-shared %.3gx (ranks per core)", d->timeshare);
  int m = d->share_ranks < DEV_SHARE_MAX ? d->share_ranks : DEV_SHARE_MAX;
  for (int k = 1; k <= m && d->timeshare > 1; k++) {
    n = strlen(buf);
    if (n < len)
      snprintf(buf + n, len - n, "%s%.3g", k == 1 ? "; a computing rank gets a core x " : " / ",
               d->share_rate[k]);
  }
  n = strlen(buf);
  if (m > 0 && d->timeshare > 1 && n < len)
    snprintf(buf + n, len - n, " with 1..%d of the host's %d ranks computing", m, d->share_ranks);
}

/* A rate with a readable unit: "38.2 GFLOP/s", "667 TFLOP/s". */
static void fmt_flops(char *buf, size_t len, double flops) {
  if (flops >= T12) snprintf(buf, len, "%.4g TFLOP/s", flops / T12);
  else snprintf(buf, len, "%.3g GFLOP/s", flops / G9);
}

void device_summary(const device_t *d, char *buf, size_t len) {
  char f[32];
  if (d->chips_per_instance >= DEVICE_ONE_MACHINE) { /* the calibrated host: no instances */
    fmt_flops(f, sizeof f, d->peak_flops[DEV_FP32]);
    snprintf(buf, len, "%s (this machine, measured): %s per rank, %.1f GiB memory, ranks exchange "
             "%.3g GB/s%s", d->name, f, d->hbm_bytes / GIB, d->intra_Bps / G9,
             d->timeshare > 1 ? ", ranks share cores" : "");
    return;
  }
  fmt_flops(f, sizeof f, d->peak_flops[DEV_BF16]);
  snprintf(buf, len, "%s: %s bf16, %.0f GiB HBM per chip, %d chips per instance", d->name, f,
           d->hbm_bytes / GIB, d->chips_per_instance);
}

int device_gpt2_shapes(int vocab, int layers, int heads, int dim, int b, int T, int tp, int *shapes,
                       double *weight) {
  int n = 0;
  const int t = tp > 1 ? tp : 1;
  const int bT = b * T, C = dim, hs = heads > 0 ? dim / heads : dim;
  /* linear (in -> out) with `count` uses per step: forward (bT x out, K = in), input gradient
   * (bT x in, K = out), weight gradient (out x in, K = bT). One tensor-parallel rank's share:
   * c_attn and c_fc keep 1/t of their columns, the two projections 1/t of their rows, the
   * logits 1/t of the vocabulary (vocab is the padded one when t > 1) */
  const int lin[5][2] = {{C, 3 * C / t}, {C / t, C}, {C, 4 * C / t}, {4 * C / t, C}, {C, vocab / t}};
  const double cnt[5] = {layers, layers, layers, layers, 1};
  for (int i = 0; i < 5; i++) {
    const int in = lin[i][0], out = lin[i][1];
    const int s3[3][3] = {{bT, out, in}, {bT, in, out}, {out, in, bT}};
    for (int k = 0; k < 3; k++) {
      for (int j = 0; j < 3; j++) shapes[3 * n + j] = s3[k][j];
      weight[n++] = cnt[i];
    }
  }
  /* attention per (sequence, head): QK^T (T x T, K = hs), att V (T x hs, K = T); backward
   * about twice the forward */
  const int sa[2][3] = {{T, T, hs}, {T, hs, T}};
  for (int k = 0; k < 2; k++) {
    for (int j = 0; j < 3; j++) shapes[3 * n + j] = sa[k][j];
    weight[n++] = 3.0 * layers * b * heads / t;
  }
  return n;
}

int device_calibrate_cpu_shapes(device_t *d, const int *shapes, const double *weight, int n) {
  size_t amax = 1, bmax = 1, cmax = 1;
  for (int i = 0; i < n; i++) {
    size_t M = (size_t)shapes[3 * i], N = (size_t)shapes[3 * i + 1], K = (size_t)shapes[3 * i + 2];
    if (M * K > amax) amax = M * K;
    if (K * N > bmax) bmax = K * N;
    if (M * N > cmax) cmax = M * N;
  }
  float *a = malloc(sizeof(float) * amax), *b = malloc(sizeof(float) * bmax),
        *c = malloc(sizeof(float) * cmax);
  int rc = -1;
  if (!a || !b || !c) goto out;
  for (size_t i = 0; i < amax; i++) a[i] = (float)(i % 7) * 0.25f;
  for (size_t i = 0; i < bmax; i++) b[i] = (float)(i % 5) * 0.5f;
  memset(c, 0, sizeof(float) * cmax);
  double flops = 0, secs = 0;
  for (int i = 0; i < n; i++) {
    const int M = shapes[3 * i], N = shapes[3 * i + 1], K = shapes[3 * i + 2];
    if (M < 1 || N < 1 || K < 1 || !(weight[i] > 0)) continue;
    double best = INFINITY;
    cal_mm(M, N, K, a, b, c); /* a first call may build the shape's kernel (oneDNN) */
    for (int r = 0; r < 3; r++) {
      double t0 = strata_now_s();
      cal_mm(M, N, K, a, b, c);
      double t = strata_now_s() - t0;
      if (t < best) best = t;
    }
    flops += weight[i] * 2.0 * M * N * K;
    secs += weight[i] * best;
  }
  if (secs > 0 && flops > 0) {
    d->peak_flops[DEV_FP32] = d->peak_flops[DEV_BF16] = d->peak_flops[DEV_FP8] = flops / secs;
    rc = 0;
  }
out:
  free(a);
  free(b);
  free(c);
  return rc;
}
