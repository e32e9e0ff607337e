/* cmd_bench.c -- `strata bench`: the collectives benchmark, a clone of nccl-tests.
 *
 *    mpirun -np N strata bench allreduce|reducescatter|allgather|broadcast|sendrecv [flags]
 *
 * For each size from -b to -e (multiplied by -f), every rank runs -w warm-up iterations and
 * -n timed iterations of the operation, out of place and then in place, and rank 0 prints
 * nccl-tests' table: size, count, type, redop, root, then per placement the time (max over
 * ranks of the mean per-iteration time), algbw = S / t and busbw = algbw * factor (all-reduce
 * 2(n-1)/n, reduce-scatter and all-gather (n-1)/n with S the whole array, broadcast and
 * sendrecv 1) in decimal GB/s, and #wrong. With -c 1 (default), after the timing every
 * placement runs once more on deterministic inputs (small integers that depend on rank and
 * index, so every dtype holds the exact result) and #wrong counts the mismatched elements,
 * summed over ranks.
 *
 * --algo picks the all-reduce algorithm (ring | rd | rabenseifner | auto | mpi). `mpi` is the baseline: MPI's
 * own collective. For all-reduce the library provides it (coll_allreduce_algo(COLL_ALGO_MPI)).
 * The other operations have one algorithm in the library, so for them `--algo mpi` makes this
 * benchmark call MPI_Reduce_scatter_block / MPI_Allgather / MPI_Bcast / MPI_Sendrecv on the
 * communicator's bootstrap MPI communicator directly -- the only place outside collectives/
 * that moves data with MPI, and only to measure the baseline. Rank bookkeeping (max of times,
 * sum of #wrong) also uses MPI on the bootstrap communicator so it cannot be skewed by the
 * library under test.
 *
 * In place follows NCCL: the same buffer for all-reduce and broadcast, recv = send + rank * part
 * for reduce-scatter, send = recv + rank * part for all-gather. For sendrecv the library does
 * not allow aliased buffers, so in place stages the outgoing data in a spare buffer (the copy is
 * timed, as MPI_Sendrecv_replace's internal copy is).
 *
 * --json FILE writes a JSON array with one object per table row and placement.
 */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "args.h"
#include "strata/coll.h"
#include "commands.h"
#include "log.h"

typedef enum { B_ALLREDUCE = 0, B_REDUCESCATTER, B_ALLGATHER, B_BROADCAST, B_SENDRECV, B_NOPS } bench_op_t;
static const char *const bench_op_names[B_NOPS] = {"allreduce", "reducescatter", "allgather",
                                                   "broadcast", "sendrecv"};
/* Alignment of the benchmark buffers, bytes (a cache line). */
#define BENCH_ALIGN_BYTES 64

typedef struct {
  bench_op_t op;
  coll_dtype_t dtype;
  coll_op_t redop;
  coll_algo_t algo;
  int root;
  int iters, warmup, check;
  int rank, nranks;
  coll_comm_t *comm;
  MPI_Comm mpi; /* bootstrap communicator (baseline and bookkeeping) */
} bench_t;

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
static double input_value(const bench_t *b, int r, size_t i) {
  if (b->op == B_ALLREDUCE || b->op == B_REDUCESCATTER) {
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
static double expected_reduction(const bench_t *b, size_t i, double *tol) {
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

static size_t count_wrong(const bench_t *b, const void *buf, size_t n, size_t first, int src_rank,
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

static MPI_Datatype mpi_type(coll_dtype_t d) {
  switch (d) {
  case COLL_F32: return MPI_FLOAT;
  case COLL_F64: return MPI_DOUBLE;
  case COLL_I32: return MPI_INT32_T;
  case COLL_I64: return MPI_INT64_T;
  default: return MPI_UINT16_T; /* 16-bit floats: data movement only */
  }
}

static MPI_Op mpi_op(coll_op_t op) {
  switch (op) {
  case COLL_PROD: return MPI_PROD;
  case COLL_MIN: return MPI_MIN;
  case COLL_MAX: return MPI_MAX;
  default: return MPI_SUM;
  }
}

/* Buffers of one run: count = elements of the whole array S (see the header). */
typedef struct {
  const void *send;
  void *recv;
  size_t count;
  int inplace;
  void *base;  /* start of the whole array (reduce-scatter in place: the MPI_IN_PLACE buffer) */
  void *base2; /* the other buffer (staging for in-place sendrecv) */
} bench_bufs_t;

static coll_result_t run_once(const bench_t *b, const bench_bufs_t *x) {
  size_t n = (size_t)b->nranks, part = x->count / n;
  size_t dsz = coll_dtype_size(b->dtype);
  if (b->algo == COLL_ALGO_MPI && b->op != B_ALLREDUCE) {
    /* Baseline: MPI's own collective (see the header). */
    int rc = MPI_SUCCESS;
    if (x->count > (size_t)INT32_MAX) return COLL_ERR_ARG; /* MPI counts are int */
    switch (b->op) {
    case B_REDUCESCATTER:
      /* MPI_IN_PLACE takes the whole array from recvbuf and leaves the result at its start. */
      if (x->inplace)
        rc = MPI_Reduce_scatter_block(MPI_IN_PLACE, x->base, (int)part, mpi_type(b->dtype),
                                      mpi_op(b->redop), b->mpi);
      else
        rc = MPI_Reduce_scatter_block(x->send, x->recv, (int)part, mpi_type(b->dtype),
                                      mpi_op(b->redop), b->mpi);
      break;
    case B_ALLGATHER:
      /* MPI_IN_PLACE takes this rank's block from recvbuf at rank*part, as NCCL does. */
      rc = MPI_Allgather(x->inplace ? MPI_IN_PLACE : x->send, (int)part, mpi_type(b->dtype),
                         x->recv, (int)part, mpi_type(b->dtype), b->mpi);
      break;
    case B_BROADCAST:
      if (x->send != x->recv && b->rank == b->root) memcpy(x->recv, x->send, x->count * dsz);
      rc = MPI_Bcast(x->recv, (int)x->count, mpi_type(b->dtype), b->root, b->mpi);
      break;
    case B_SENDRECV: {
      int dst = (b->rank + 1) % b->nranks, src = (b->rank - 1 + b->nranks) % b->nranks;
      if (x->inplace)
        rc = MPI_Sendrecv_replace(x->recv, (int)x->count, mpi_type(b->dtype), dst, 0, src, 0,
                                  b->mpi, MPI_STATUS_IGNORE);
      else
        rc = MPI_Sendrecv(x->send, (int)x->count, mpi_type(b->dtype), dst, 0, x->recv,
                          (int)x->count, mpi_type(b->dtype), src, 0, b->mpi, MPI_STATUS_IGNORE);
      break;
    }
    default: break;
    }
    return rc == MPI_SUCCESS ? COLL_OK : COLL_ERR_TRANSPORT;
  }
  switch (b->op) {
  case B_ALLREDUCE:
    return coll_allreduce_algo(x->send, x->recv, x->count, b->dtype, b->redop, b->algo, b->comm);
  case B_REDUCESCATTER:
    return coll_reduce_scatter(x->send, x->recv, part, b->dtype, b->redop, b->comm);
  case B_ALLGATHER:
    return coll_allgather(x->send, x->recv, part, b->dtype, b->comm);
  case B_BROADCAST:
    if (x->inplace) return coll_broadcast(x->recv, x->count, b->dtype, b->root, b->comm);
    return coll_broadcast2(x->send, x->recv, x->count, b->dtype, b->root, b->comm);
  case B_SENDRECV: {
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
static bench_bufs_t setup(const bench_t *b, char *sbuf, char *rbuf, size_t count, int inplace) {
  size_t dsz = coll_dtype_size(b->dtype), n = (size_t)b->nranks, part = count / n;
  bench_bufs_t x = {sbuf, rbuf, count, inplace, rbuf, sbuf};
  memset(rbuf, 0xA5, count * dsz); /* poison: a missed write is caught by the check */
  switch (b->op) {
  case B_ALLREDUCE:
  case B_BROADCAST:
  case B_SENDRECV: {
    char *in = inplace ? rbuf : sbuf;
    /* Broadcast: non-roots get values of their own rank, which the root's must overwrite. */
    for (size_t i = 0; i < count; i++) put(b->dtype, in, i, input_value(b, b->rank, i));
    x.send = in;
    break;
  }
  case B_REDUCESCATTER: {
    char *in = inplace ? rbuf : sbuf;
    for (size_t i = 0; i < count; i++) put(b->dtype, in, i, input_value(b, b->rank, i));
    x.send = in;
    x.recv = inplace ? rbuf + (size_t)b->rank * part * dsz : rbuf;
    break;
  }
  case B_ALLGATHER: {
    char *in = inplace ? rbuf + (size_t)b->rank * part * dsz : sbuf;
    for (size_t k = 0; k < part; k++) put(b->dtype, in, k, input_value(b, b->rank, k));
    x.send = in;
    break;
  }
  default: break;
  }
  if (inplace && b->op != B_REDUCESCATTER && b->op != B_ALLGATHER) x.send = x.recv;
  return x;
}

/* Mismatched elements of this rank's result after one run of `x`. */
static size_t check_result(const bench_t *b, const bench_bufs_t *x) {
  size_t n = (size_t)b->nranks, part = x->count / n, dsz = coll_dtype_size(b->dtype);
  switch (b->op) {
  case B_ALLREDUCE: return count_wrong(b, x->recv, x->count, 0, 0, 1);
  case B_REDUCESCATTER: {
    const void *out = x->inplace && b->algo == COLL_ALGO_MPI ? x->base : x->recv;
    return count_wrong(b, out, part, (size_t)b->rank * part, 0, 1);
  }
  case B_ALLGATHER: {
    size_t wrong = 0;
    for (size_t r = 0; r < n; r++)
      wrong += count_wrong(b, (const char *)x->recv + r * part * dsz, part, 0, (int)r, 0);
    return wrong;
  }
  case B_BROADCAST: return count_wrong(b, x->recv, x->count, 0, b->root, 0);
  case B_SENDRECV: return count_wrong(b, x->recv, x->count, 0, (b->rank - 1 + b->nranks) % b->nranks, 0);
  default: return 0;
  }
}

static double bus_factor(const bench_t *b) {
  double n = b->nranks;
  switch (b->op) {
  case B_ALLREDUCE: return 2.0 * (n - 1) / n;
  case B_REDUCESCATTER:
  case B_ALLGATHER: return (n - 1) / n;
  default: return 1.0;
  }
}

/* One measurement: time_us (max over ranks of the mean per-iteration time) and #wrong (summed
 * over ranks; -1 when not checked). Returns non-zero on a collective failure. */
static int measure(const bench_t *b, char *sbuf, char *rbuf, size_t count, int inplace,
                   double *time_us, long long *wrong) {
  bench_bufs_t x = setup(b, sbuf, rbuf, count, inplace);
  coll_result_t rc = COLL_OK;
  for (int i = 0; i < b->warmup && rc == COLL_OK; i++) rc = run_once(b, &x);
  MPI_Barrier(b->mpi);
  double t0 = MPI_Wtime();
  for (int i = 0; i < b->iters && rc == COLL_OK; i++) rc = run_once(b, &x);
  double mine = (MPI_Wtime() - t0) / b->iters, maxt = 0;
  int bad = rc != COLL_OK, anybad = 0;
  MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, b->mpi);
  if (anybad) {
    if (bad)
      strata_error("bench %s %zu bytes (%s): %s: %s", bench_op_names[b->op],
                   count * coll_dtype_size(b->dtype), inplace ? "in place" : "out of place",
                   coll_result_string(rc), coll_last_error(b->comm));
    return 1;
  }
  MPI_Allreduce(&mine, &maxt, 1, MPI_DOUBLE, MPI_MAX, b->mpi);
  *time_us = maxt * 1e6;
  *wrong = -1;
  if (b->check) {
    x = setup(b, sbuf, rbuf, count, inplace);
    rc = run_once(b, &x);
    bad = rc != COLL_OK;
    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, b->mpi);
    if (anybad) {
      if (bad)
        strata_error("bench %s check pass: %s: %s", bench_op_names[b->op], coll_result_string(rc),
                     coll_last_error(b->comm));
      return 1;
    }
    long long w = (long long)check_result(b, &x), total = 0;
    MPI_Allreduce(&w, &total, 1, MPI_LONG_LONG, MPI_SUM, b->mpi);
    *wrong = total;
  }
  return 0;
}

static const char usage_text[] =
    "Measure a collective the way nccl-tests does.\n\n"
    "  mpirun -np N strata bench OP [flags]\n\n"
    "OP: allreduce | reducescatter | allgather | broadcast | sendrecv (ring shift: each rank\n"
    "sends to rank+1 and receives from rank-1). Sizes are bytes of the whole array S; they are\n"
    "rounded down to a multiple of the dtype size (times the rank count for reducescatter and\n"
    "allgather). Rank 0 prints one row per size: time = max over ranks of the mean time of one\n"
    "iteration, algbw = S/time, busbw = algbw * factor (allreduce 2(n-1)/n, reducescatter and\n"
    "allgather (n-1)/n, broadcast and sendrecv 1), GB/s = 1e9 bytes/s; #wrong = mismatched\n"
    "elements summed over ranks in a check pass with exact inputs (N/A with -c 0).\n"
    "--algo mpi is the baseline: MPI's own collective (MPI_Allreduce via the library; for the\n"
    "other ops MPI_Reduce_scatter_block / MPI_Allgather / MPI_Bcast / MPI_Sendrecv). ring, rd,\n"
    "rabenseifner and auto choose the library's all-reduce algorithm; the other ops have one\n"
    "algorithm\n"
    "(ring / auto). --json FILE writes a JSON array, one object per row and placement, with\n"
    "op, bytes, count, dtype, redop, root, ranks, transport, algo, inplace, time_us, algbw_gbs,\n"
    "busbw_gbs, wrong (null when not checked), and for allreduce algo_used (what auto ran at\n"
    "that size; the table's header has an '# auto:' line with the switch points).\n"
    "Exit status: 0 ok, 1 a collective failed or #wrong > 0, 2 bad flags.\n"
    "Example: mpirun -np 4 strata bench allreduce -b 1K -e 64M -f 2 --algo ring";

/* "# auto: rd from 0 B, rabenseifner from 262144 B, ring from 16777216 B": where auto changes
 * algorithm on this communicator, found by doubling the size up to 1 TiB and bisecting each
 * change to the exact byte (the thresholds need not be powers of two). */
static void print_auto_switches(const coll_comm_t *comm) {
  coll_algo_t prev = coll_allreduce_auto_algo(comm, 0);
  printf("# auto: %s from 0 B", coll_algo_name(prev));
  for (size_t lo = 0, hi = 1; hi <= ((size_t)1 << 40); lo = hi, hi *= 2) {
    coll_algo_t a = coll_allreduce_auto_algo(comm, hi);
    if (a == prev) continue;
    while (hi - lo > 1) { /* auto(lo) == prev, auto(hi) == a */
      size_t mid = lo + (hi - lo) / 2;
      if (coll_allreduce_auto_algo(comm, mid) == prev) lo = mid;
      else hi = mid;
    }
    printf(", %s from %zu B", coll_algo_name(a), hi);
    prev = a;
  }
  printf("\n");
}

int cmd_bench(int argc, char **argv) {
  size_t minbytes = 32u << 20, maxbytes = 32u << 20;
  double factor = 2.0;
  int iters = 20, warmup = 5, check = 1, root = 0;
  const char *op_s = "sum", *dtype_s = "float", *algo_s = NULL, *transport_s = NULL;
  const char *provider = NULL, *json_path = NULL;
  arg_spec_t specs[] = {
      {"--minbytes", "-b", ARG_BYTES, &minbytes, "BYTES", "smallest size (default 32M)", .min = 0, .max = 0x1p40},
      {"--maxbytes", "-e", ARG_BYTES, &maxbytes, "BYTES", "largest size (default 32M)", .min = 0, .max = 0x1p40},
      {"--stepfactor", "-f", ARG_DOUBLE, &factor, "F", "multiply the size by F each step (default 2)",
       .min = 1, .max = 1024, .open = ARG_OPEN_MIN},
      {"--iters", "-n", ARG_INT, &iters, "N", "timed iterations per size (default 20)", .min = 1, .max = 1e9},
      {"--warmup_iters", "-w", ARG_INT, &warmup, "N", "untimed warm-up iterations per size (default 5)", .min = 0, .max = 1e9},
      {"--check", "-c", ARG_INT, &check, "0|1", "check results (default 1)", .min = 0, .max = 1},
      {"--op", "-o", ARG_STRING, &op_s, "OP", "reduction: sum|prod|min|max|avg (default sum)"},
      {"--datatype", "-d", ARG_STRING, &dtype_s, "T",
       "float|double|half|bfloat16|int32|int64 (or fp32, fp64, fp16, bf16, int, long)"},
      {"--root", "-r", ARG_INT, &root, "R", "broadcast root rank (default 0)", .min = 0, .max = 1 << 24},
      {"--transport", NULL, ARG_STRING, &transport_s, "mpi|ofi", "transport (default: $STRATA_COLL_TRANSPORT or mpi)"},
      {"--ofi-provider", NULL, ARG_STRING, &provider, "NAME", "libfabric provider, e.g. shm, tcp (default $FI_PROVIDER)"},
      {"--algo", NULL, ARG_STRING, &algo_s, "A", "ring|rd|rabenseifner|auto|mpi (default: $STRATA_COLL_ALGO or auto)"},
      {"--json", NULL, ARG_STRING, &json_path, "FILE", "also write the rows as a JSON array to FILE"},
  };
  const char *pos[2] = {NULL, NULL};
  int npos = 2;
  int prc = args_parse("bench", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), pos, &npos);
  if (prc != 0) return prc > 0 ? 0 : 2;

  bench_t b;
  memset(&b, 0, sizeof b);
  int say = 1; /* before MPI starts every rank refuses alike; after, only rank 0 reports */
#define USAGE_FAIL(...)                                   \
  do {                                                    \
    if (say) strata_error(__VA_ARGS__);                   \
    return 2;                                             \
  } while (0)
  if (npos != 1)
    USAGE_FAIL("bench: name one operation: allreduce, reducescatter, allgather, broadcast or "
               "sendrecv (see strata bench --help)");
  b.op = B_NOPS;
  for (int i = 0; i < B_NOPS; i++)
    if (!strcmp(pos[0], bench_op_names[i])) b.op = (bench_op_t)i;
  if (b.op == B_NOPS)
    USAGE_FAIL("bench: unknown operation '%s': expected allreduce, reducescatter, allgather, "
               "broadcast or sendrecv", pos[0]);
  if (coll_parse_op(op_s, &b.redop))
    USAGE_FAIL("bench: unknown --op '%s': expected sum, prod, min, max or avg", op_s);
  if (coll_parse_dtype(dtype_s, &b.dtype))
    USAGE_FAIL("bench: unknown --datatype '%s': expected float, double, half, bfloat16, int32 or "
               "int64 (aliases fp32, fp64, fp16, bf16, int, long)", dtype_s);
  coll_config_t cfg = coll_config_default();
  if (cfg.env_error) USAGE_FAIL("bench: %s", cfg.env_error);
  b.algo = cfg.algo;
  if (algo_s && coll_parse_algo(algo_s, &b.algo))
    USAGE_FAIL("bench: unknown --algo '%s': expected ring, rd, rabenseifner, auto or mpi", algo_s);
  if (transport_s && coll_parse_transport(transport_s, &cfg.transport))
    USAGE_FAIL("bench: unknown --transport '%s': expected mpi or ofi", transport_s);
  if (provider) {
    cfg.ofi_provider = provider;
    if (!transport_s) cfg.transport = COLL_TRANSPORT_OFI; /* naming a provider implies ofi */
  }
  if (minbytes > maxbytes)
    USAGE_FAIL("bench: --minbytes (%zu) is larger than --maxbytes (%zu); give -b <= -e", minbytes, maxbytes);
  if (b.op != B_ALLREDUCE && (b.algo == COLL_ALGO_RD || b.algo == COLL_ALGO_RABENSEIFNER))
    USAGE_FAIL("bench: --algo %s applies to allreduce only; %s has one algorithm (use ring, "
               "auto or mpi)", coll_algo_name(b.algo), pos[0]);
  int reduces = b.op == B_ALLREDUCE || b.op == B_REDUCESCATTER;
  if (b.algo == COLL_ALGO_MPI && b.op == B_REDUCESCATTER &&
      (b.redop == COLL_AVG || b.dtype == COLL_BF16 || b.dtype == COLL_F16))
    USAGE_FAIL("bench: the MPI baseline of reducescatter has no %s %s (MPI has no avg and no "
               "16-bit float reductions); use another -o/-d or --algo ring",
               coll_dtype_name(b.dtype), coll_op_name(b.redop));
  if (cli_mpi_start()) return 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &b.nranks);
  say = b.rank == 0;
  if (b.op == B_BROADCAST && root >= b.nranks)
    USAGE_FAIL("bench: --root %d is not a rank of this job (0..%d)", root, b.nranks - 1);
  b.iters = iters;
  b.warmup = warmup;
  b.check = check;
  b.root = b.op == B_BROADCAST ? root : -1;

  /* The JSON file is opened up front so a bad path fails before the measurement. */
  FILE *jf = NULL;
  int jok = 1;
  if (json_path && b.rank == 0) {
    jf = fopen(json_path, "w");
    jok = jf != NULL;
  }
  MPI_Bcast(&jok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!jok) USAGE_FAIL("bench: cannot write --json file '%s'; give a writable path", json_path);

  size_t dsz = coll_dtype_size(b.dtype);
  size_t unit = dsz * ((b.op == B_REDUCESCATTER || b.op == B_ALLGATHER) ? (size_t)b.nranks : 1);
  size_t maxr = maxbytes - maxbytes % unit;
  int rc = 1;
  char *sbuf = NULL, *rbuf = NULL;
  json_object *rows = json_object_new_array();
  coll_result_t cr = coll_comm_create(MPI_COMM_WORLD, &cfg, &b.comm);
  if (cr != COLL_OK) {
    strata_error("bench: cannot create the %s communicator: %s: %s",
                 cfg.transport == COLL_TRANSPORT_OFI ? "ofi" : "mpi", coll_result_string(cr),
                 b.comm ? coll_last_error(b.comm) : "(no detail)");
    goto close_json;
  }
  b.mpi = coll_mpi_comm(b.comm);
  size_t alloc = maxr ? maxr : BENCH_ALIGN_BYTES;
  alloc = (alloc + BENCH_ALIGN_BYTES - 1) / BENCH_ALIGN_BYTES * BENCH_ALIGN_BYTES;
  sbuf = coll_mem_alloc(alloc); /* huge-page advised, as users' buffers should be */
  rbuf = coll_mem_alloc(alloc);
  int mem_ok = sbuf && rbuf;
  int all_ok = 0;
  MPI_Allreduce(&mem_ok, &all_ok, 1, MPI_INT, MPI_MIN, b.mpi);
  if (!all_ok) {
    if (!mem_ok) strata_error("bench: cannot allocate 2 x %zu bytes for -e %zu; lower --maxbytes", alloc, maxbytes);
    goto free_bufs;
  }

  const char *tname = coll_transport_name(b.comm);
  const char *aname = coll_algo_name(b.algo);
  if (b.rank == 0) {
    printf("# strata bench %s: ranks %d transport %s algo %s minBytes %zu maxBytes %zu step: %g(factor) "
           "warmup iters: %d iters: %d validation: %d\n",
           bench_op_names[b.op], b.nranks, tname, aname, minbytes, maxbytes, factor, warmup, iters, check);
    if (b.op == B_ALLREDUCE && b.algo == COLL_ALGO_AUTO) print_auto_switches(b.comm);
    printf("#\n");
    printf("# %10s  %12s  %8s  %6s  %6s  %28s   %28s\n", "", "", "", "", "", "out-of-place", "in-place");
    printf("# %10s  %12s  %8s  %6s  %6s  %8s %7s %7s %6s  %8s %7s %7s %6s\n", "size", "count", "type",
           "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong");
    printf("# %10s  %12s  %8s  %6s  %6s  %8s %7s %7s %6s  %8s %7s %7s %6s\n", "(B)", "(elements)", "", "",
           "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
    fflush(stdout);
  }
  double bw_sum = 0;
  long long wrong_total = 0;
  int nbw = 0;
  size_t prev = (size_t)-1;
  for (size_t size = minbytes;;) {
    size_t s = size - size % unit;
    if (s != prev) {
      prev = s;
      size_t count = s / dsz;
      double t_us[2] = {0, 0};
      long long wrong[2] = {-1, -1};
      for (int inplace = 0; inplace < 2; inplace++)
        if (measure(&b, sbuf, rbuf, count, inplace, &t_us[inplace], &wrong[inplace])) goto free_bufs;
      if (b.rank == 0) {
        printf("  %10zu  %12zu  %8s  %6s  %6d", s, count, coll_dtype_name(b.dtype),
               reduces ? coll_op_name(b.redop) : "none", b.root);
        for (int ip = 0; ip < 2; ip++) {
          double algbw = t_us[ip] > 0 ? (double)s / (t_us[ip] * 1e-6) / 1e9 : 0;
          double busbw = algbw * bus_factor(&b);
          char wbuf[24];
          if (wrong[ip] < 0) snprintf(wbuf, sizeof wbuf, "N/A");
          else snprintf(wbuf, sizeof wbuf, "%lld", wrong[ip]);
          printf("  %8.2f %7.2f %7.2f %6s", t_us[ip], algbw, busbw, wbuf);
          bw_sum += busbw;
          nbw++;
          if (wrong[ip] > 0) wrong_total += wrong[ip];
          json_object *o = json_object_new_object();
          json_object_object_add(o, "op", json_object_new_string(bench_op_names[b.op]));
          json_object_object_add(o, "bytes", json_object_new_int64((int64_t)s));
          json_object_object_add(o, "count", json_object_new_int64((int64_t)count));
          json_object_object_add(o, "dtype", json_object_new_string(coll_dtype_name(b.dtype)));
          json_object_object_add(o, "redop", json_object_new_string(reduces ? coll_op_name(b.redop) : "none"));
          json_object_object_add(o, "root", json_object_new_int(b.root));
          json_object_object_add(o, "ranks", json_object_new_int(b.nranks));
          json_object_object_add(o, "transport", json_object_new_string(tname));
          json_object_object_add(o, "algo", json_object_new_string(aname));
          if (b.op == B_ALLREDUCE) /* what ran: auto resolved for this size */
            json_object_object_add(o, "algo_used", json_object_new_string(coll_algo_name(
                b.algo == COLL_ALGO_AUTO ? coll_allreduce_auto_algo(b.comm, s) : b.algo)));
          json_object_object_add(o, "inplace", json_object_new_boolean(ip));
          json_object_object_add(o, "time_us", json_object_new_double(t_us[ip]));
          json_object_object_add(o, "algbw_gbs", json_object_new_double(algbw));
          json_object_object_add(o, "busbw_gbs", json_object_new_double(busbw));
          json_object_object_add(o, "wrong", wrong[ip] < 0 ? NULL : json_object_new_int64(wrong[ip]));
          json_object_array_add(rows, o);
        }
        printf("\n");
        fflush(stdout);
      }
    }
    if (size >= maxbytes) break;
    double next = size == 0 ? (double)unit : (double)size * factor;
    size_t nsize = next >= (double)maxbytes ? maxbytes : (size_t)next;
    if (nsize <= size) nsize = size + 1;
    size = nsize > maxbytes ? maxbytes : nsize;
  }
  if (b.rank == 0) {
    printf("# Out of bounds values : %lld %s\n", wrong_total, wrong_total ? "FAILED" : "OK");
    printf("# Avg bus bandwidth    : %g \n", nbw ? bw_sum / nbw : 0.0);
    printf("#\n");
    fflush(stdout);
    if (wrong_total) strata_error("bench: %lld wrong values (see the #wrong columns)", wrong_total);
  }
  MPI_Bcast(&wrong_total, 1, MPI_LONG_LONG, 0, b.mpi);
  rc = wrong_total ? 1 : 0;
free_bufs:
  coll_mem_free(sbuf);
  coll_mem_free(rbuf);
  coll_comm_destroy(b.comm);
close_json:
  if (jf) {
    const char *text = json_object_to_json_string_ext(rows, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    fprintf(jf, "%s\n", text);
    if (fclose(jf) != 0) {
      strata_error("bench: writing --json file '%s' failed", json_path);
      if (!rc) rc = 1;
    }
  }
  json_object_put(rows);
  return rc;
#undef USAGE_FAIL
}
