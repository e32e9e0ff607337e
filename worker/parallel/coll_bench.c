/* coll_bench.c -- the nccl-tests style measurement of `strata bench` (see coll_bench.h). */
#include "coll_bench.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* Alignment of the benchmark buffers, bytes (a cache line). */
#define BENCH_ALIGN_BYTES 64

static const char *const op_names[COLL_BENCH_NOPS] = {"allreduce", "reducescatter", "allgather",
                                                      "broadcast", "sendrecv"};

const char *coll_bench_op_name(coll_bench_op_t op) {
  return (unsigned)op < COLL_BENCH_NOPS ? op_names[op] : "?";
}

int coll_bench_parse_op(const char *name, coll_bench_op_t *op) {
  for (int i = 0; i < COLL_BENCH_NOPS; i++)
    if (!strcmp(name, op_names[i])) {
      *op = (coll_bench_op_t)i;
      return 0;
    }
  return -1;
}

static int reduces(const coll_bench_t *b) {
  return b->op == COLL_BENCH_ALLREDUCE || b->op == COLL_BENCH_REDUCESCATTER;
}

size_t coll_bench_unit(const coll_bench_t *b) {
  size_t gathered = b->op == COLL_BENCH_REDUCESCATTER || b->op == COLL_BENCH_ALLGATHER;
  return coll_dtype_size(b->dtype) * (gathered ? (size_t)b->nranks : 1);
}

/* ---- 16-bit float conversions (for inputs and checks) ---- */

static float bf16_to_f(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint16_t f_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}
static float half_to_f(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = ldexpf((float)man, -24);
    if (sign) f = -f;
    return f;
  }
  uint32_t u = exp == 31 ? (sign | 0x7f800000u | (man << 13)) : (sign | ((exp + 112u) << 23) | (man << 13));
  memcpy(&f, &u, 4);
  return f;
}
/* Exact for the small integers the benchmark uses; round-to-nearest-even otherwise. */
static uint16_t f_to_half(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  float a = fabsf(f);
  if (a != a) return (uint16_t)(sign | 0x7e00u);
  if (a >= 65520.0f) return (uint16_t)(sign | 0x7c00u);
  if (a < 6.103515625e-05f) { /* subnormal */
    return (uint16_t)(sign | (uint32_t)lrintf(a * 16777216.0f));
  }
  memcpy(&u, &a, 4);
  uint32_t exp = (u >> 23) - 112u, man = u & 0x7fffffu;
  uint32_t h = (exp << 10) | (man >> 13);
  uint32_t rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

/* ---- element access ---- */

static void put(coll_dtype_t d, void *buf, size_t i, double v) {
  switch (d) {
  case COLL_F32: ((float *)buf)[i] = (float)v; break;
  case COLL_F64: ((double *)buf)[i] = v; break;
  case COLL_BF16: ((uint16_t *)buf)[i] = f_to_bf16((float)v); break;
  case COLL_F16: ((uint16_t *)buf)[i] = f_to_half((float)v); break;
  case COLL_I32: ((int32_t *)buf)[i] = (int32_t)v; break;
  case COLL_I64: ((int64_t *)buf)[i] = (int64_t)v; break;
  default: break;
  }
}

static double get(coll_dtype_t d, const void *buf, size_t i) {
  switch (d) {
  case COLL_F32: return ((const float *)buf)[i];
  case COLL_F64: return ((const double *)buf)[i];
  case COLL_BF16: return bf16_to_f(((const uint16_t *)buf)[i]);
  case COLL_F16: return half_to_f(((const uint16_t *)buf)[i]);
  case COLL_I32: return ((const int32_t *)buf)[i];
  case COLL_I64: return (double)((const int64_t *)buf)[i];
  default: return 0;
  }
}

/* Input element i of rank r: small integers, so sums, products, minima and maxima over any
 * rank count up to ~80 are exact in every dtype (bf16 holds integers up to 256 exactly). */
static double input_value(const coll_bench_t *b, int r, size_t i) {
  if (b->op == COLL_BENCH_ALLREDUCE || b->op == COLL_BENCH_REDUCESCATTER) {
    switch (b->redop) {
    case COLL_PROD: return ((size_t)r + i) % 4 == 0 ? 2.0 : (((size_t)r + 2 * i) % 5 == 0 ? -1.0 : 1.0);
    case COLL_MIN:
    case COLL_MAX: return (double)(((size_t)r * 7 + i * 13) % 9) - 4.0;
    default: return (double)(((size_t)r * 3 + i * 7 + 1) % 5) - 2.0;
    }
  }
  return (double)(((size_t)r * 7 + i * 13) % 23) - 11.0;
}

/* Expected reduction over all ranks of element i, and the tolerance of the comparison. */
static double expected_reduction(const coll_bench_t *b, size_t i, double *tol) {
  double acc = input_value(b, 0, i);
  for (int r = 1; r < b->nranks; r++) {
    double v = input_value(b, r, i);
    switch (b->redop) {
    case COLL_PROD: acc *= v; break;
    case COLL_MIN: acc = v < acc ? v : acc; break;
    case COLL_MAX: acc = v > acc ? v : acc; break;
    default: acc += v; break;
    }
  }
  *tol = 0;
  if (b->redop == COLL_AVG) {
    if (b->dtype == COLL_I32 || b->dtype == COLL_I64) {
      acc = (double)((int64_t)acc / (int64_t)b->nranks); /* truncating division */
    } else {
      acc /= b->nranks;
      /* sum / n is the one inexact step: the library may divide or multiply by 1/n and rounds
       * once more to 16 bits for bf16/half; 2 units in the last place of the dtype cover both. */
      double ulp = b->dtype == COLL_F64 ? 0x1p-52 : b->dtype == COLL_F32 ? 0x1p-23
                   : b->dtype == COLL_F16 ? 0x1p-10 : 0x1p-7;
      *tol = 2 * ulp * fabs(acc);
    }
  }
  return acc;
}

static size_t count_wrong(const coll_bench_t *b, const void *buf, size_t n, size_t first, int src_rank,
                          int reduction) {
  size_t wrong = 0;
  for (size_t k = 0; k < n; k++) {
    double tol = 0, want = reduction ? expected_reduction(b, first + k, &tol)
                                     : input_value(b, src_rank, first + k);
    double got = get(b->dtype, buf, k);
    if (!(fabs(got - want) <= tol)) wrong++;
  }
  return wrong;
}

/* ---- one operation ---- */

static coll_result_t run_once(const coll_bench_t *b, const coll_bench_bufs_t *x) {
  size_t n = (size_t)b->nranks, part = x->count / n;
  size_t dsz = coll_dtype_size(b->dtype);
  if (b->algo == COLL_ALGO_MPI && b->op != COLL_BENCH_ALLREDUCE)
    return b->rt.baseline(b->rt.ctx, b, x); /* MPI's own collective (see the header) */
  switch (b->op) {
  case COLL_BENCH_ALLREDUCE:
    return coll_allreduce_algo(x->send, x->recv, x->count, b->dtype, b->redop, b->algo, b->comm);
  case COLL_BENCH_REDUCESCATTER:
    return coll_reduce_scatter(x->send, x->recv, part, b->dtype, b->redop, b->comm);
  case COLL_BENCH_ALLGATHER:
    return coll_allgather(x->send, x->recv, part, b->dtype, b->comm);
  case COLL_BENCH_BROADCAST:
    if (x->inplace) return coll_broadcast(x->recv, x->count, b->dtype, b->root, b->comm);
    return coll_broadcast2(x->send, x->recv, x->count, b->dtype, b->root, b->comm);
  case COLL_BENCH_SENDRECV: {
    int dst = (b->rank + 1) % b->nranks, src = (b->rank - 1 + b->nranks) % b->nranks;
    const void *s = x->send;
    if (x->inplace) {
      /* The library's sendrecv does not allow aliased buffers: stage the outgoing data in the
       * spare buffer, as MPI_Sendrecv_replace does internally (the copy is timed). */
      memcpy(x->base2, x->recv, x->count * dsz);
      s = x->base2;
    }
    return coll_sendrecv(s, x->count, dst, x->recv, x->count, src, b->dtype, 0, b->comm);
  }
  default: return COLL_ERR_ARG;
  }
}

/* Lays out the send/recv pointers for one placement (NCCL's in-place conventions) and fills
 * the inputs. sbuf/rbuf each hold at least count elements. */
static coll_bench_bufs_t setup(const coll_bench_t *b, char *sbuf, char *rbuf, size_t count, int inplace) {
  size_t dsz = coll_dtype_size(b->dtype), n = (size_t)b->nranks, part = count / n;
  coll_bench_bufs_t x = {sbuf, rbuf, count, inplace, rbuf, sbuf};
  memset(rbuf, 0xA5, count * dsz); /* poison: a missed write is caught by the check */
  switch (b->op) {
  case COLL_BENCH_ALLREDUCE:
  case COLL_BENCH_BROADCAST:
  case COLL_BENCH_SENDRECV: {
    char *in = inplace ? rbuf : sbuf;
    /* Broadcast: non-roots get values of their own rank, which the root's must overwrite. */
    for (size_t i = 0; i < count; i++) put(b->dtype, in, i, input_value(b, b->rank, i));
    x.send = in;
    break;
  }
  case COLL_BENCH_REDUCESCATTER: {
    char *in = inplace ? rbuf : sbuf;
    for (size_t i = 0; i < count; i++) put(b->dtype, in, i, input_value(b, b->rank, i));
    x.send = in;
    x.recv = inplace ? rbuf + (size_t)b->rank * part * dsz : rbuf;
    break;
  }
  case COLL_BENCH_ALLGATHER: {
    char *in = inplace ? rbuf + (size_t)b->rank * part * dsz : sbuf;
    for (size_t k = 0; k < part; k++) put(b->dtype, in, k, input_value(b, b->rank, k));
    x.send = in;
    break;
  }
  default: break;
  }
  if (inplace && b->op != COLL_BENCH_REDUCESCATTER && b->op != COLL_BENCH_ALLGATHER) x.send = x.recv;
  return x;
}

/* Mismatched elements of this rank's result after one run of `x`. */
static size_t check_result(const coll_bench_t *b, const coll_bench_bufs_t *x) {
  size_t n = (size_t)b->nranks, part = x->count / n, dsz = coll_dtype_size(b->dtype);
  switch (b->op) {
  case COLL_BENCH_ALLREDUCE: return count_wrong(b, x->recv, x->count, 0, 0, 1);
  case COLL_BENCH_REDUCESCATTER: {
    const void *out = x->inplace && b->algo == COLL_ALGO_MPI ? x->base : x->recv;
    return count_wrong(b, out, part, (size_t)b->rank * part, 0, 1);
  }
  case COLL_BENCH_ALLGATHER: {
    size_t wrong = 0;
    for (size_t r = 0; r < n; r++)
      wrong += count_wrong(b, (const char *)x->recv + r * part * dsz, part, 0, (int)r, 0);
    return wrong;
  }
  case COLL_BENCH_BROADCAST: return count_wrong(b, x->recv, x->count, 0, b->root, 0);
  case COLL_BENCH_SENDRECV: return count_wrong(b, x->recv, x->count, 0, (b->rank - 1 + b->nranks) % b->nranks, 0);
  default: return 0;
  }
}

static double bus_factor(const coll_bench_t *b) {
  double n = b->nranks;
  switch (b->op) {
  case COLL_BENCH_ALLREDUCE: return 2.0 * (n - 1) / n;
  case COLL_BENCH_REDUCESCATTER:
  case COLL_BENCH_ALLGATHER: return (n - 1) / n;
  default: return 1.0;
  }
}

/* 1 when any rank failed (rc != COLL_OK on it); the failing rank says what failed. */
static int any_failed(const coll_bench_t *b, coll_result_t rc, const char *what) {
  int bad = rc != COLL_OK;
  if (!b->rt.max_int(b->rt.ctx, bad)) return 0;
  if (bad) strata_error("%s: %s: %s", what, coll_result_string(rc), coll_last_error(b->comm));
  return 1;
}

/* One measurement: time_us (max over ranks of the mean per-iteration time) and #wrong (summed
 * over ranks; -1 when not checked). Returns non-zero on a collective failure. */
static int measure(const coll_bench_t *b, char *sbuf, char *rbuf, size_t count, int inplace,
                   double *time_us, long long *wrong) {
  coll_bench_bufs_t x = setup(b, sbuf, rbuf, count, inplace);
  coll_result_t rc = COLL_OK;
  for (int i = 0; i < b->warmup && rc == COLL_OK; i++) rc = run_once(b, &x);
  b->rt.barrier(b->rt.ctx);
  double t0 = strata_now_s();
  for (int i = 0; i < b->iters && rc == COLL_OK; i++) rc = run_once(b, &x);
  double mine = (strata_now_s() - t0) / b->iters;
  char what[160];
  snprintf(what, sizeof what, "bench %s %zu bytes (%s)", op_names[b->op],
           count * coll_dtype_size(b->dtype), inplace ? "in place" : "out of place");
  if (any_failed(b, rc, what)) return 1;
  *time_us = b->rt.max_f64(b->rt.ctx, mine) * 1e6;
  *wrong = -1;
  if (b->check) {
    x = setup(b, sbuf, rbuf, count, inplace);
    snprintf(what, sizeof what, "bench %s check pass", op_names[b->op]);
    if (any_failed(b, run_once(b, &x), what)) return 1;
    *wrong = b->rt.sum_ll(b->rt.ctx, (long long)check_result(b, &x));
  }
  return 0;
}

/* What auto runs for one size: the algorithm x 2, + 1 where Strata's sums are asked to use
 * streaming stores (reduce.c streams only blocks of 16 KiB and more; MPI_Allreduce has its own). */
static int auto_key(const coll_comm_t *comm, size_t bytes, coll_dtype_t dtype, int in_place) {
  coll_algo_t a = coll_allreduce_auto_choice(comm, bytes, dtype, in_place, NULL);
  return 2 * (int)a + (a != COLL_ALGO_MPI && coll_allreduce_auto_streams(comm, bytes, dtype, in_place));
}

/* "# auto: rd from 0 B, rabenseifner from 262144 B, ring/nt from 16777216 B": where auto changes
 * algorithm or stores ("/nt": streaming) on this communicator for the benchmark's dtype, out of
 * place ("# auto:") or in place ("# auto in place:"), found by doubling the size up to 1 TiB and
 * bisecting each change to the exact byte (the thresholds need not be powers of two). */
static void print_auto_switches(const coll_comm_t *comm, coll_dtype_t dtype, int in_place) {
  int prev = auto_key(comm, 0, dtype, in_place);
  printf("# auto%s: %s%s from 0 B", in_place ? " in place" : "", coll_algo_name((coll_algo_t)(prev / 2)),
         prev % 2 ? "/nt" : "");
  for (size_t lo = 0, hi = 1; hi <= ((size_t)1 << 40); lo = hi, hi *= 2) {
    int k = auto_key(comm, hi, dtype, in_place);
    if (k == prev) continue;
    while (hi - lo > 1) { /* key(lo) == prev, key(hi) == k */
      size_t mid = lo + (hi - lo) / 2;
      if (auto_key(comm, mid, dtype, in_place) == prev) lo = mid;
      else hi = mid;
    }
    k = auto_key(comm, hi, dtype, in_place); /* the bisection may have found an earlier change */
    printf(", %s%s from %zu B", coll_algo_name((coll_algo_t)(k / 2)), k % 2 ? "/nt" : "", hi);
    prev = k;
  }
  printf("\n");
}

/* nccl-tests' header, to the character (its src/common.cu of versions 2.13 to 2.16: the
 * "# nThread" line first, the devices, the table's three header lines), with Strata's own lines
 * as '#' comments between the devices and the table. One process per rank, so nThread 1 nGpus 1
 * and a device per rank; no aggregation and no CUDA graphs. */
static void print_header(const coll_bench_t *b) {
  printf("# nThread 1 nGpus 1 minBytes %zu maxBytes %zu step: %g(factor) warmup iters: %d iters: %d "
         "agg iters: 1 validation: %d graph: 0\n", b->minbytes, b->maxbytes, b->factor, b->warmup,
         b->iters, b->check);
  printf("#\n# Using devices\n%s", b->devices ? b->devices : "");
  printf("# strata bench %s: ranks %d transport %s algo %s\n", op_names[b->op], b->nranks,
         coll_transport_name(b->comm), coll_algo_name(b->algo));
  if (b->op == COLL_BENCH_ALLREDUCE && b->algo == COLL_ALGO_AUTO)
    for (int ip = 0; ip < 2; ip++) print_auto_switches(b->comm, b->dtype, ip);
  if (b->op == COLL_BENCH_ALLREDUCE) printf("# tuning: %s\n", coll_tune_describe(b->comm));
  printf("#\n");
  printf("# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          \n",
         "", "", "", "", "");
  printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s\n", "size", "count",
         "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong");
  printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s\n", "(B)", "(elements)",
         "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
  fflush(stdout);
}

/* The JSON row of one placement (keys in `strata bench --help`). */
static json_object *row_json(const coll_bench_t *b, size_t bytes, int inplace, double time_us,
                             double algbw, double busbw, long long wrong) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "op", json_object_new_string(op_names[b->op]));
  json_object_object_add(o, "bytes", json_object_new_int64((int64_t)bytes));
  json_object_object_add(o, "count", json_object_new_int64((int64_t)(bytes / coll_dtype_size(b->dtype))));
  json_object_object_add(o, "dtype", json_object_new_string(coll_dtype_name(b->dtype)));
  json_object_object_add(o, "redop", json_object_new_string(reduces(b) ? coll_op_name(b->redop) : "none"));
  json_object_object_add(o, "root", json_object_new_int(b->root));
  json_object_object_add(o, "ranks", json_object_new_int(b->nranks));
  json_object_object_add(o, "transport", json_object_new_string(coll_transport_name(b->comm)));
  json_object_object_add(o, "algo", json_object_new_string(coll_algo_name(b->algo)));
  if (b->op == COLL_BENCH_ALLREDUCE) /* what ran: auto resolved for this size */
    json_object_object_add(o, "algo_used", json_object_new_string(coll_algo_name(
        b->algo == COLL_ALGO_AUTO ? coll_allreduce_auto_choice(b->comm, bytes, b->dtype, inplace, NULL) : b->algo)));
  json_object_object_add(o, "inplace", json_object_new_boolean(inplace));
  json_object_object_add(o, "time_us", json_object_new_double(time_us));
  json_object_object_add(o, "algbw_gbs", json_object_new_double(algbw));
  json_object_object_add(o, "busbw_gbs", json_object_new_double(busbw));
  json_object_object_add(o, "wrong", wrong < 0 ? NULL : json_object_new_int64(wrong));
  return o;
}

/* Totals of the table: busbw summed over rows and placements, and #wrong. */
typedef struct {
  double bw_sum;
  int nbw;
  long long wrong;
} bench_totals_t;

/* One table row of `bytes` (both placements): measured on every rank, printed and appended to
 * rows on rank 0. 0, or 1 on a collective failure. */
static int bench_size(const coll_bench_t *b, char *sbuf, char *rbuf, size_t bytes,
                      json_object *rows, bench_totals_t *tot) {
  size_t count = bytes / coll_dtype_size(b->dtype);
  double t_us[2] = {0, 0};
  long long wrong[2] = {-1, -1};
  for (int inplace = 0; inplace < 2; inplace++)
    if (measure(b, sbuf, rbuf, count, inplace, &t_us[inplace], &wrong[inplace])) return 1;
  if (b->rank == 0) /* count as nccl-tests gives it: per rank for reduce-scatter and all-gather */
    printf("%12zu  %12zu  %8s  %6s  %6d", bytes, coll_bench_unit(b) > coll_dtype_size(b->dtype)
           ? count / (size_t)b->nranks : count, coll_dtype_name(b->dtype),
           reduces(b) ? coll_op_name(b->redop) : "none", b->root);
  for (int ip = 0; ip < 2; ip++) {
    double algbw = t_us[ip] > 0 ? (double)bytes / (t_us[ip] * 1e-6) / 1e9 : 0;
    double busbw = algbw * bus_factor(b);
    tot->bw_sum += busbw;
    tot->nbw++;
    if (wrong[ip] > 0) tot->wrong += wrong[ip];
    if (b->rank != 0) continue;
    char tbuf[32]; /* nccl-tests: 2 decimals below 100 us, 1 below 10 ms, then none */
    snprintf(tbuf, sizeof tbuf, t_us[ip] >= 10000.0 ? "%7.0f" : t_us[ip] >= 100.0 ? "%7.1f" : "%7.2f",
             t_us[ip]);
    if (wrong[ip] < 0) printf("  %7s  %6.2f  %6.2f  %5s", tbuf, algbw, busbw, "N/A");
    else printf("  %7s  %6.2f  %6.2f  %5g", tbuf, algbw, busbw, (double)wrong[ip]);
    json_object_array_add(rows, row_json(b, bytes, ip, t_us[ip], algbw, busbw, wrong[ip]));
  }
  if (b->rank == 0) {
    printf("\n");
    fflush(stdout);
  }
  return 0;
}

/* The size after `size`: times factor, at least one more byte, at most maxbytes. */
static size_t next_size(const coll_bench_t *b, size_t size) {
  double next = size == 0 ? (double)coll_bench_unit(b) : (double)size * b->factor;
  size_t nsize = next >= (double)b->maxbytes ? b->maxbytes : (size_t)next;
  if (nsize <= size) nsize = size + 1;
  return nsize > b->maxbytes ? b->maxbytes : nsize;
}

int coll_bench_run(const coll_bench_t *b, json_object *rows, long long *wrong_total) {
  const size_t unit = coll_bench_unit(b), maxr = b->maxbytes - b->maxbytes % unit;
  size_t alloc = maxr ? maxr : BENCH_ALIGN_BYTES;
  alloc = (alloc + BENCH_ALIGN_BYTES - 1) / BENCH_ALIGN_BYTES * BENCH_ALIGN_BYTES;
  char *sbuf = coll_mem_alloc(alloc); /* huge-page advised, as users' buffers should be */
  char *rbuf = coll_mem_alloc(alloc);
  int rc = -1, mem_bad = !sbuf || !rbuf;
  if (b->rt.max_int(b->rt.ctx, mem_bad)) {
    if (mem_bad)
      strata_error("bench: cannot allocate 2 x %zu bytes for -e %zu; lower --maxbytes", alloc,
                   b->maxbytes);
    goto free_bufs;
  }
  if (b->rank == 0) print_header(b);
  bench_totals_t tot = {0, 0, 0};
  size_t prev = (size_t)-1;
  for (size_t size = b->minbytes;; size = next_size(b, size)) {
    size_t s = size - size % unit;
    if (s != prev && bench_size(b, sbuf, rbuf, s, rows, &tot)) goto free_bufs;
    prev = s;
    if (size >= b->maxbytes) break;
  }
  if (b->rank == 0) {
    printf("# Out of bounds values : %lld %s\n", tot.wrong, tot.wrong ? "FAILED" : "OK");
    printf("# Avg bus bandwidth    : %g \n", tot.nbw ? tot.bw_sum / tot.nbw : 0.0);
    printf("#\n");
    fflush(stdout);
  }
  *wrong_total = tot.wrong;
  rc = 0;
free_bufs:
  coll_mem_free(sbuf);
  coll_mem_free(rbuf);
  return rc;
}
