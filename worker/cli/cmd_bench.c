/* cmd_bench.c -- `strata bench`: the collectives benchmark, a clone of nccl-tests.
 *
 *    mpirun -np N strata bench allreduce|reducescatter|allgather|broadcast|sendrecv [flags]
 *
 * The measurement (sizes, warm-up, timing, check pass, busbw, the table and the JSON rows) is
 * worker/parallel/coll_bench.h; this file is the flags, the communicator, the --json file and
 * the MPI side of the harness (coll_bench_rt_t).
 *
 * --algo picks the all-reduce algorithm (ring | rd | rabenseifner | auto | mpi). `mpi` is the baseline: MPI's
 * own collective. For all-reduce the library provides it (coll_allreduce_algo(COLL_ALGO_MPI)).
 * The other operations have one algorithm in the library, so for them `--algo mpi` makes this
 * benchmark call MPI_Reduce_scatter_block / MPI_Allgather / MPI_Bcast / MPI_Sendrecv on the
 * communicator's bootstrap MPI communicator directly -- the only place outside collectives/
 * that moves data with MPI, and only to measure the baseline. Rank bookkeeping (the barrier
 * before timing, max of times, sum of #wrong) also uses MPI on the bootstrap communicator so it
 * cannot be skewed by the library under test.
 *
 * --json FILE writes a JSON array with one object per table row and placement. --tune (all-reduce)
 * measures every algorithm and chunk size and writes the decision table instead (coll_tune.h).
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "args.h"
#include "coll_bench.h"
#include "coll_tune.h"
#include "strata/coll.h"
#include "commands.h"
#include "log.h"

/* ---- the MPI side of the harness (coll_bench_rt_t; ctx is the bootstrap MPI_Comm *) ---- */

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

static void rt_barrier(void *ctx) { MPI_Barrier(*(MPI_Comm *)ctx); }

static double rt_max_f64(void *ctx, double v) {
  double out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, *(MPI_Comm *)ctx);
  return out;
}

static int rt_max_int(void *ctx, int v) {
  int out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, *(MPI_Comm *)ctx);
  return out;
}

static long long rt_sum_ll(void *ctx, long long v) {
  long long out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_LONG_LONG, MPI_SUM, *(MPI_Comm *)ctx);
  return out;
}

/* The baseline: MPI's own collective for every operation but all-reduce (see the header). */
static coll_result_t rt_baseline(void *ctx, const coll_bench_t *b, const coll_bench_bufs_t *x) {
  MPI_Comm mpi = *(MPI_Comm *)ctx;
  size_t part = x->count / (size_t)b->nranks, dsz = coll_dtype_size(b->dtype);
  int rc = MPI_SUCCESS;
  if (x->count > (size_t)INT32_MAX) return COLL_ERR_ARG; /* MPI counts are int */
  MPI_Datatype t = mpi_type(b->dtype);
  switch (b->op) {
  case COLL_BENCH_REDUCESCATTER:
    /* MPI_IN_PLACE takes the whole array from recvbuf and leaves the result at its start. */
    if (x->inplace)
      rc = MPI_Reduce_scatter_block(MPI_IN_PLACE, x->base, (int)part, t, mpi_op(b->redop), mpi);
    else
      rc = MPI_Reduce_scatter_block(x->send, x->recv, (int)part, t, mpi_op(b->redop), mpi);
    break;
  case COLL_BENCH_ALLGATHER:
    /* MPI_IN_PLACE takes this rank's block from recvbuf at rank*part, as NCCL does. */
    rc = MPI_Allgather(x->inplace ? MPI_IN_PLACE : x->send, (int)part, t, x->recv, (int)part, t,
                       mpi);
    break;
  case COLL_BENCH_BROADCAST:
    if (x->send != x->recv && b->rank == b->root) memcpy(x->recv, x->send, x->count * dsz);
    rc = MPI_Bcast(x->recv, (int)x->count, t, b->root, mpi);
    break;
  case COLL_BENCH_SENDRECV: {
    int dst = (b->rank + 1) % b->nranks, src = (b->rank - 1 + b->nranks) % b->nranks;
    if (x->inplace)
      rc = MPI_Sendrecv_replace(x->recv, (int)x->count, t, dst, 0, src, 0, mpi, MPI_STATUS_IGNORE);
    else
      rc = MPI_Sendrecv(x->send, (int)x->count, t, dst, 0, x->recv, (int)x->count, t, src, 0, mpi,
                        MPI_STATUS_IGNORE);
    break;
  }
  default: break;
  }
  return rc == MPI_SUCCESS ? COLL_OK : COLL_ERR_TRANSPORT;
}

static const char usage_text[] =
    "Measure a collective the way nccl-tests does.\n\n"
    "  mpirun -np N strata bench OP [flags]\n\n"
    "OP: allreduce | reducescatter | allgather | broadcast | sendrecv (ring shift: each rank\n"
    "sends to rank+1 and receives from rank-1). Sizes are bytes of the whole array S; they are\n"
    "rounded down to a multiple of the dtype size (times the rank count for reducescatter and\n"
    "allgather). Rank 0 prints nccl-tests' output to the character (the '# nThread 1 nGpus 1 ...'\n"
    "line, '# Using devices' with a line per rank and its simulated device, Strata's own lines as\n"
    "'#' comments, the table, the footer) with one row per size: time = max over ranks of the\n"
    "mean time of one iteration, algbw = S/time, busbw = algbw * factor (allreduce 2(n-1)/n,\n"
    "reducescatter and allgather (n-1)/n, broadcast and sendrecv 1), GB/s = 1e9 bytes/s;\n"
    "#wrong = mismatched elements summed over ranks in a check pass with exact inputs (N/A with\n"
    "-c 0); count is per rank for reducescatter and allgather, as in nccl-tests.\n"
    "--algo mpi is the baseline: MPI's own collective (MPI_Allreduce via the library; for the\n"
    "other ops MPI_Reduce_scatter_block / MPI_Allgather / MPI_Bcast / MPI_Sendrecv). ring, rd,\n"
    "rabenseifner and auto choose the library's all-reduce algorithm; the other ops have one\n"
    "algorithm\n"
    "(ring / auto). --json FILE writes a JSON array, one object per row and placement, with\n"
    "op, bytes, count, dtype, redop, root, ranks, transport, algo, inplace, time_us, algbw_gbs,\n"
    "busbw_gbs, wrong (null when not checked), and for allreduce algo_used (what auto ran at\n"
    "that size and placement; the table's header has '# auto:' and '# auto in place:' lines with\n"
    "the switch points, '/nt' where the sums use streaming stores).\n"
    "--tune (allreduce only; sizes default to -b 1K -e 256M) measures every algorithm and chunk\n"
    "size, Strata's own with cached and with streaming stores, at each size for this rank count,\n"
    "transport and -d dtype, out of place and in place, and writes the fastest of each placement\n"
    "(or the previous size's choice where the calls cannot tell it from the fastest and it is\n"
    "within 2% of it) to the decision table that auto follows ($STRATA_COLL_TUNE_FILE, default\n"
    "~/.cache/strata/coll_tune.json; rules for other rank counts, transports and dtypes are\n"
    "kept; collectives/README.md, \"Tuning\"). Put --tune last (Open MPI's mpirun reads a --tune\n"
    "FILE of its own anywhere in its arguments). The header's '# tuning:' line says which table\n"
    "auto used.\n"
    "Exit status: 0 ok, 1 a collective failed or #wrong > 0, 2 bad flags.\n"
    "Example: mpirun -np 4 strata bench allreduce -b 1K -e 64M -f 2 --algo ring";

/* The command line of `strata bench`. */
typedef struct {
  size_t minbytes, maxbytes;
  double factor;
  int iters, warmup, check, root, tune;
  const char *op_s, *dtype_s, *algo_s, *transport_s, *provider, *json_path;
} bench_flags_t;

/* The operation and the flags into *b and *cfg, checked before MPI starts (every rank refuses
 * alike). 0, or 2 after saying what is wrong. */
static int bench_from_flags(const char *op_name, const bench_flags_t *f, coll_bench_t *b,
                            coll_config_t *cfg) {
#define USAGE_FAIL(...)                                   \
  do {                                                    \
    strata_error(__VA_ARGS__);                            \
    return 2;                                             \
  } while (0)
  if (coll_bench_parse_op(op_name, &b->op))
    USAGE_FAIL("bench: unknown operation '%s': expected allreduce, reducescatter, allgather, "
               "broadcast or sendrecv", op_name);
  if (coll_parse_op(f->op_s, &b->redop))
    USAGE_FAIL("bench: unknown --op '%s': expected sum, prod, min, max or avg", f->op_s);
  if (coll_parse_dtype(f->dtype_s, &b->dtype))
    USAGE_FAIL("bench: unknown --datatype '%s': expected float, double, half, bfloat16, int32 or "
               "int64 (aliases fp32, fp64, fp16, bf16, int, long)", f->dtype_s);
  *cfg = coll_config_default();
  if (cfg->env_error) USAGE_FAIL("bench: %s", cfg->env_error);
  b->algo = cfg->algo;
  if (f->algo_s && coll_parse_algo(f->algo_s, &b->algo))
    USAGE_FAIL("bench: unknown --algo '%s': expected ring, rd, rabenseifner, auto or mpi", f->algo_s);
  if (f->transport_s && coll_parse_transport(f->transport_s, &cfg->transport))
    USAGE_FAIL("bench: unknown --transport '%s': expected mpi or ofi", f->transport_s);
  if (f->provider) {
    cfg->ofi_provider = f->provider;
    if (!f->transport_s) cfg->transport = COLL_TRANSPORT_OFI; /* naming a provider implies ofi */
  }
  if (f->minbytes > f->maxbytes)
    USAGE_FAIL("bench: --minbytes (%zu) is larger than --maxbytes (%zu); give -b <= -e",
               f->minbytes, f->maxbytes);
  if (b->op != COLL_BENCH_ALLREDUCE && (b->algo == COLL_ALGO_RD || b->algo == COLL_ALGO_RABENSEIFNER))
    USAGE_FAIL("bench: --algo %s applies to allreduce only; %s has one algorithm (use ring, "
               "auto or mpi)", coll_algo_name(b->algo), op_name);
  if (f->tune && (b->op != COLL_BENCH_ALLREDUCE || f->algo_s))
    USAGE_FAIL("bench: --tune measures every all-reduce algorithm: give it with allreduce and "
               "without --algo");
  if (b->algo == COLL_ALGO_MPI && b->op == COLL_BENCH_REDUCESCATTER &&
      (b->redop == COLL_AVG || b->dtype == COLL_BF16 || b->dtype == COLL_F16))
    USAGE_FAIL("bench: the MPI baseline of reducescatter has no %s %s (MPI has no avg and no "
               "16-bit float reductions); use another -o/-d or --algo ring",
               coll_dtype_name(b->dtype), coll_op_name(b->redop));
#undef USAGE_FAIL
  b->iters = f->iters;
  b->warmup = f->warmup;
  b->check = f->check;
  b->minbytes = f->minbytes;
  b->maxbytes = f->maxbytes;
  b->factor = f->factor;
  return 0;
}

#define BENCH_DEVICE_LINE 512

/* nccl-tests' device list: every rank's "#  Rank %2d Group %2d Pid %6d on %10s device %2d [...]
 * NAME" line, gathered in rank order to rank 0 (collective over mpi). The device is the simulated
 * device the rank stands for: its index on the host (node-local rank), in brackets the transport
 * that carries its data. Rank 0 gets a malloc'd string (NULL when out of memory); the others NULL. */
static char *device_lines(const coll_bench_t *b, MPI_Comm mpi) {
  char host[256] = "unknown", line[BENCH_DEVICE_LINE];
  if (gethostname(host, sizeof host) == 0) {
    host[sizeof host - 1] = '\0';
    char *dot = strchr(host, '.'); /* nccl-tests prints the name up to the first dot */
    if (dot) *dot = '\0';
  }
  int local = 0;
  MPI_Comm node;
  if (MPI_Comm_split_type(mpi, MPI_COMM_TYPE_SHARED, b->rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
  }
  memset(line, 0, sizeof line);
  snprintf(line, sizeof line, "#  Rank %2d Group %2d Pid %6d on %10s device %2d [%s] Strata simulated "
           "device (host CPU)\n", b->rank, 0, (int)getpid(), host, local, coll_transport_name(b->comm));
  char *all = b->rank == 0 ? malloc((size_t)b->nranks * BENCH_DEVICE_LINE) : NULL;
  int ok = b->rank != 0 || all != NULL; /* rank 0's verdict: out of memory lists no devices */
  MPI_Bcast(&ok, 1, MPI_INT, 0, mpi);
  if (!ok) return NULL;
  MPI_Gather(line, BENCH_DEVICE_LINE, MPI_CHAR, all, BENCH_DEVICE_LINE, MPI_CHAR, 0, mpi);
  if (!all) return NULL;
  size_t len = 0;
  for (int r = 0; r < b->nranks; r++) { /* pack the fixed-size records into one string */
    const char *l = all + (size_t)r * BENCH_DEVICE_LINE;
    size_t n = strnlen(l, BENCH_DEVICE_LINE - 1);
    memmove(all + len, l, n);
    len += n;
  }
  all[len] = '\0';
  return all;
}

/* The measurement on the communicator, with the --json file (rank 0) written at the end. The
 * file is opened up front so a bad path fails before the measurement. 0, 1 (a collective failed
 * or #wrong > 0) or 2. */
static int bench_run(coll_bench_t *b, coll_config_t *cfg, const char *json_path, int tune) {
  FILE *jf = NULL;
  int jok = 1;
  if (json_path && b->rank == 0) {
    jf = fopen(json_path, "w");
    jok = jf != NULL;
  }
  MPI_Bcast(&jok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!jok) {
    if (b->rank == 0) strata_error("bench: cannot write --json file '%s'; give a writable path", json_path);
    return 2;
  }
  int rc = 1;
  json_object *rows = json_object_new_array();
  coll_result_t cr = coll_comm_create(MPI_COMM_WORLD, cfg, &b->comm);
  if (cr != COLL_OK) {
    strata_error("bench: cannot create the %s communicator: %s: %s",
                 cfg->transport == COLL_TRANSPORT_OFI ? "ofi" : "mpi", coll_result_string(cr),
                 b->comm ? coll_last_error(b->comm) : "(no detail)");
  } else {
    MPI_Comm mpi = coll_mpi_comm(b->comm);
    b->rt = (coll_bench_rt_t){&mpi, rt_barrier, rt_max_f64, rt_max_int, rt_sum_ll, rt_baseline};
    char *devices = device_lines(b, mpi);
    b->devices = devices;
    long long wrong = 0;
    char path[512];
    if (tune) {
      if (coll_tune_path(cfg, path, sizeof path)) {
        if (b->rank == 0) strata_error("bench --tune: no table path (STRATA_COLL_TUNE_FILE is off, or HOME is unset); set STRATA_COLL_TUNE_FILE to a file");
      } else {
        rc = coll_tune_run(b, cfg, path) ? 1 : 0;
      }
    } else if (coll_bench_run(b, rows, &wrong) == 0) {
      if (wrong && b->rank == 0) strata_error("bench: %lld wrong values (see the #wrong columns)", wrong);
      rc = wrong ? 1 : 0;
    }
    coll_comm_destroy(b->comm);
    b->comm = NULL;
    b->devices = NULL;
    free(devices);
  }
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
}

int cmd_bench(int argc, char **argv) {
  bench_flags_t f = {.minbytes = SIZE_MAX, .maxbytes = SIZE_MAX, .factor = 2.0, .iters = 20,
                     .warmup = 5, .check = 1, .root = 0, .op_s = "sum", .dtype_s = "float"};
  arg_spec_t specs[] = {
      {"--minbytes", "-b", ARG_BYTES, &f.minbytes, "BYTES", "smallest size (default 32M; 1K with --tune)", .min = 0, .max = 0x1p40},
      {"--maxbytes", "-e", ARG_BYTES, &f.maxbytes, "BYTES", "largest size (default 32M; 256M with --tune)", .min = 0, .max = 0x1p40},
      {"--stepfactor", "-f", ARG_DOUBLE, &f.factor, "F", "multiply the size by F each step (default 2)",
       .min = 1, .max = 1024, .open = ARG_OPEN_MIN},
      {"--iters", "-n", ARG_INT, &f.iters, "N", "timed iterations per size (default 20)", .min = 1, .max = 1e9},
      {"--warmup_iters", "-w", ARG_INT, &f.warmup, "N", "untimed warm-up iterations per size (default 5)", .min = 0, .max = 1e9},
      {"--check", "-c", ARG_INT, &f.check, "0|1", "check results (default 1)", .min = 0, .max = 1},
      {"--op", "-o", ARG_STRING, &f.op_s, "OP", "reduction: sum|prod|min|max|avg (default sum)"},
      {"--datatype", "-d", ARG_STRING, &f.dtype_s, "T",
       "float|double|half|bfloat16|int32|int64 (or fp32, fp64, fp16, bf16, int, long)"},
      {"--root", "-r", ARG_INT, &f.root, "R", "broadcast root rank (default 0)", .min = 0, .max = 1 << 24},
      {"--transport", NULL, ARG_STRING, &f.transport_s, "mpi|ofi", "transport (default: $STRATA_COLL_TRANSPORT or mpi)"},
      {"--ofi-provider", NULL, ARG_STRING, &f.provider, "NAME", "libfabric provider, e.g. shm, tcp (default $FI_PROVIDER)"},
      {"--algo", NULL, ARG_STRING, &f.algo_s, "A", "ring|rd|rabenseifner|auto|mpi (default: $STRATA_COLL_ALGO or auto)"},
      {"--json", NULL, ARG_STRING, &f.json_path, "FILE", "also write the rows as a JSON array to FILE"},
      {"--tune", NULL, ARG_FLAG, &f.tune, NULL, "measure every all-reduce algorithm and chunk; write the decision table"},
  };
  const char *pos[2] = {NULL, NULL};
  int npos = 2;
  int prc = args_parse("bench", usage_text, argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), pos, &npos);
  if (prc != 0) return prc > 0 ? 0 : 2;
  if (npos != 1) {
    strata_error("bench: name one operation: allreduce, reducescatter, allgather, broadcast or "
                 "sendrecv (see strata bench --help)");
    return 2;
  }
  if (f.minbytes == SIZE_MAX) f.minbytes = f.tune ? 1u << 10 : 32u << 20; /* not given */
  if (f.maxbytes == SIZE_MAX) f.maxbytes = f.tune ? 256u << 20 : 32u << 20;
  coll_bench_t b;
  memset(&b, 0, sizeof b);
  coll_config_t cfg;
  if (bench_from_flags(pos[0], &f, &b, &cfg)) return 2;
  if (cli_mpi_start()) return 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &b.nranks);
  if (b.op == COLL_BENCH_BROADCAST && f.root >= b.nranks) {
    /* after MPI starts only rank 0 reports */
    if (b.rank == 0) strata_error("bench: --root %d is not a rank of this job (0..%d)", f.root, b.nranks - 1);
    return 2;
  }
  b.root = b.op == COLL_BENCH_BROADCAST ? f.root : -1;
  return bench_run(&b, &cfg, f.json_path, f.tune);
}
