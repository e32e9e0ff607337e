/* coll_bench.h -- the collectives benchmark behind `strata bench`, measured the way nccl-tests
 * measures (REFERENCE.md, "Collective performance figures").
 *
 * For each size from minbytes to maxbytes (multiplied by factor; rounded down to a multiple of
 * the dtype size, times the rank count for reduce-scatter and all-gather), every rank runs
 * `warmup` untimed and `iters` timed iterations of the operation, out of place and then in
 * place. Rank 0 prints nccl-tests' header and table, to the character (the layout of its
 * versions 2.13 to 2.16: "# nThread 1 nGpus 1 minBytes ..." first, "# Using devices" and the
 * caller's device lines, then Strata's own lines as '#' comments, then the table): size, count
 * (elements of the whole array; per rank for reduce-scatter and all-gather, as nccl-tests
 * counts), type, redop, root, then per placement
 * the time (max over ranks of the mean per-iteration time, us), algbw = S / t and busbw = algbw *
 * factor (all-reduce 2(n-1)/n, reduce-scatter and all-gather (n-1)/n with S the whole array,
 * broadcast and sendrecv 1) in decimal GB/s, and #wrong. With check = 1, after the timing every
 * placement runs once more on deterministic inputs (small integers that depend on rank and
 * index, so every dtype holds the exact result, converted by this file's own 16-bit float code,
 * independent of the library under test) and #wrong counts the mismatched elements, summed over
 * ranks; the table ends with "# Out of bounds values" and "# Avg bus bandwidth".
 *
 * In place follows NCCL: the same buffer for all-reduce and broadcast, recv = send + rank * part
 * for reduce-scatter, send = recv + rank * part for all-gather. The library's sendrecv does not
 * allow aliased buffers, so in place stages the outgoing data in the spare buffer (the copy is
 * timed, as MPI_Sendrecv_replace's internal copy is).
 *
 * What the harness must not do through the library it measures -- the barrier before timing,
 * the max of times, the sum of #wrong, agreement on a failure -- and the MPI baseline of the
 * operations the library has one algorithm for (algo COLL_ALGO_MPI) come from the caller
 * through coll_bench_rt_t (`strata bench`: MPI on the communicator's bootstrap communicator),
 * so this layer calls no MPI itself. All-reduce's baseline is the library's COLL_ALGO_MPI.
 *
 * Usage (every rank)
 *    coll_bench_t b = {.op = COLL_BENCH_ALLREDUCE, .dtype = COLL_F32, .redop = COLL_SUM,
 *                      .algo = COLL_ALGO_AUTO, .root = -1, .iters = 20, .warmup = 5, .check = 1,
 *                      .minbytes = 1024, .maxbytes = 1 << 20, .factor = 2, .rank = r,
 *                      .nranks = n, .comm = comm, .rt = rt};
 *    json_object *rows = json_object_new_array();
 *    long long wrong;
 *    if (coll_bench_run(&b, rows, &wrong)) ... a collective failed (said on its rank) ...
 */
#ifndef STRATA_COLL_BENCH_H
#define STRATA_COLL_BENCH_H

#include <json-c/json.h>
#include <stddef.h>

#include "strata/coll.h"

typedef enum {
  COLL_BENCH_ALLREDUCE = 0,
  COLL_BENCH_REDUCESCATTER,
  COLL_BENCH_ALLGATHER,
  COLL_BENCH_BROADCAST,
  COLL_BENCH_SENDRECV, /* ring shift: each rank sends to rank+1 and receives from rank-1 */
  COLL_BENCH_NOPS
} coll_bench_op_t;

/* "allreduce", "reducescatter", "allgather", "broadcast", "sendrecv". */
const char *coll_bench_op_name(coll_bench_op_t op);
/* 0 and *op, or -1 for an unknown name. */
int coll_bench_parse_op(const char *name, coll_bench_op_t *op);

/* The buffers of one run: count = elements of the whole array S. */
typedef struct {
  const void *send;
  void *recv;
  size_t count;
  int inplace;
  void *base;  /* start of the whole array (reduce-scatter in place: the MPI_IN_PLACE buffer) */
  void *base2; /* the other buffer (staging for in-place sendrecv) */
} coll_bench_bufs_t;

typedef struct coll_bench coll_bench_t;

/* The caller's side: bookkeeping over all ranks outside the library under test, and the
 * baseline. Each is collective over the benchmark's ranks. */
typedef struct {
  void *ctx;
  void (*barrier)(void *ctx);
  double (*max_f64)(void *ctx, double v);         /* max over ranks */
  int (*max_int)(void *ctx, int v);               /* max over ranks */
  long long (*sum_ll)(void *ctx, long long v);    /* sum over ranks */
  /* One run of b's operation by MPI's own collective (algo COLL_ALGO_MPI, every operation but
   * all-reduce): COLL_OK, COLL_ERR_ARG (a count beyond MPI's int), or COLL_ERR_TRANSPORT. */
  coll_result_t (*baseline)(void *ctx, const coll_bench_t *b, const coll_bench_bufs_t *x);
} coll_bench_rt_t;

struct coll_bench {
  coll_bench_op_t op;
  coll_dtype_t dtype;
  coll_op_t redop;         /* all-reduce and reduce-scatter */
  coll_algo_t algo;        /* all-reduce's algorithm; COLL_ALGO_MPI: the baseline */
  int root;                /* broadcast root; -1 for the other operations */
  int iters, warmup;       /* timed and untimed iterations per size and placement */
  int check;               /* 1: the check pass and #wrong; 0: "N/A" */
  size_t minbytes, maxbytes;
  double factor;           /* size step (> 1) */
  int rank, nranks;
  coll_comm_t *comm;       /* the communicator measured */
  coll_bench_rt_t rt;
  const char *devices;     /* rank 0: nccl-tests' "#  Rank  0 Group  0 Pid ..." lines of every
                              rank, each ending in '\n' (the caller gathers them), or NULL */
};

/* Sizes are multiples of this many bytes (the dtype, times nranks for reduce-scatter and
 * all-gather). */
size_t coll_bench_unit(const coll_bench_t *b);

/* Collective: allocates the buffers (maxbytes each), prints the header and the table (rank 0,
 * stdout), appends one JSON object per row and placement to rows (rank 0; keys in `strata bench
 * --help`), and returns 0 with *wrong_total (every rank: the #wrong of all rows, 0 when not
 * checked). -1 when the buffers cannot be allocated or a collective failed on any rank (the
 * rank that failed says which and why); every rank returns the same. */
int coll_bench_run(const coll_bench_t *b, json_object *rows, long long *wrong_total);

#endif /* STRATA_COLL_BENCH_H */
