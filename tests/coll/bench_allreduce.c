/* bench_allreduce.c -- coll_bench_allreduce: a quick all-reduce timing tool for tuning the
 * collectives library (chunk size, pipeline depth, rd threshold). Not a test: `strata bench`
 * is the user-facing benchmark. fp32 sum, out of place, sizes from -b to -e bytes (x2), and
 * for each size the median over -n timed iterations (after -w warm-ups) of:
 *   ring, rd, rh (Rabenseifner), mpi (MPI_Allreduce), sendrecv (a plain ring of blocking MPI_Sendrecv,
 *   reduce-scatter + all-gather, the "what users already have" baseline), and auto (what
 *   --algo auto runs: a communicator of its own without an explicit chunk, so a decision table
 *   from STRATA_COLL_TUNE_FILE applies as it does in training).
 * Prints time (us) and busbw = bytes / time * 2(p-1)/p in GB/s.
 *   mpirun -np 2 build/tests/coll_bench_allreduce -b 1K -e 64M -f 2 -n 20 -w 5 [-a ring,mpi]
 *   [-m min|median] [-c 256K,ofi:1M (one column per
 *   transport and chunk size for ring / rh)] [-i 1: every column in place too (send = recv, which
 *   holds the previous result: no refill between iterations, as in `strata bench`), as an "ip"
 *   column beside it] [-r 1: before each iteration, untimed, this rank writes new values into the
 *   call's input (send, or recv in place), as backward writes a gradient before it is reduced; by
 *   default the out-of-place input never changes, so a peer may read it from its own cache] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/coll.h"

static size_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (*end == 'K' || *end == 'k') v *= 1024;
  if (*end == 'M' || *end == 'm') v *= 1024 * 1024;
  if (*end == 'G' || *end == 'g') v *= 1024.0 * 1024 * 1024;
  return (size_t)v;
}

/* Blocking MPI_Sendrecv ring all-reduce (reduce-scatter then all-gather), fp32 sum. */
static void sendrecv_ring(const float *send, float *recv, size_t n, float *tmp, MPI_Comm comm) {
  int p, r;
  MPI_Comm_size(comm, &p);
  MPI_Comm_rank(comm, &r);
  memcpy(recv, send, n * sizeof(float));
  if (p == 1) return;
  size_t base = n / (size_t)p, rem = n % (size_t)p;
#define OFF(b) ((size_t)(b) * base + ((size_t)(b) < rem ? (size_t)(b) : rem))
#define LEN(b) (base + ((size_t)(b) < rem ? 1 : 0))
  int next = (r + 1) % p, prev = (r - 1 + p) % p;
  for (int s = 0; s < p - 1; s++) {
    int sb = ((r - s) % p + p) % p, rb = ((r - s - 1) % p + p) % p;
    MPI_Sendrecv(recv + OFF(sb), (int)LEN(sb), MPI_FLOAT, next, 0, tmp, (int)LEN(rb), MPI_FLOAT,
                 prev, 0, comm, MPI_STATUS_IGNORE);
    float *d = recv + OFF(rb);
    for (size_t i = 0; i < LEN(rb); i++) d[i] += tmp[i];
  }
  for (int s = 0; s < p - 1; s++) {
    int sb = ((r + 1 - s) % p + p) % p, rb = ((r - s) % p + p) % p;
    MPI_Sendrecv(recv + OFF(sb), (int)LEN(sb), MPI_FLOAT, next, 1, recv + OFF(rb), (int)LEN(rb),
                 MPI_FLOAT, prev, 1, comm, MPI_STATUS_IGNORE);
  }
}

/* Input values that change with the iteration and stay small (no overflow in place). */
static void fill(float *x, size_t n, int rank, int it) {
  for (size_t i = 0; i < n; i++) x[i] = (float)((i + (size_t)rank + (size_t)(it + 8)) % 7);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  size_t minb = 1024, maxb = 64u << 20;
  int iters = 20, warm = 5, factor = 2;
  const char *algos = "ring,rd,rh,mpi,sendrecv"; /* auto on request */
  const char *chunks = NULL; /* -c 256K,1M: one communicator per chunk size, compared in one run */
  int use_min = 0; /* -m min: best of the iterations (robust on a shared machine) */
  int inplace_too = 0; /* -i 1: an in-place column beside each */
  int refresh = 0;     /* -r 1: new input values before each iteration */
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-b")) minb = parse_size(argv[i + 1]);
    else if (!strcmp(argv[i], "-e")) maxb = parse_size(argv[i + 1]);
    else if (!strcmp(argv[i], "-n")) iters = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-w")) warm = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-f")) factor = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-a")) algos = argv[i + 1];
    else if (!strcmp(argv[i], "-c")) chunks = argv[i + 1];
    else if (!strcmp(argv[i], "-m")) use_min = !strcmp(argv[i + 1], "min");
    else if (!strcmp(argv[i], "-i")) inplace_too = atoi(argv[i + 1]) != 0;
    else if (!strcmp(argv[i], "-r")) refresh = atoi(argv[i + 1]) != 0;
  }
  enum { MAXC = 8, NALG = 6 };
  coll_config_t cfg = coll_config_default();
  coll_comm_t *cs[MAXC];
  size_t cbytes[MAXC];
  coll_transport_kind_t ctrans[MAXC];
  int nc = 0;
  if (chunks) { /* entries: [mpi:|ofi:]SIZE */
    for (const char *q = chunks; *q && nc < MAXC; q = strchr(q, ',') ? strchr(q, ',') + 1 : "") {
      ctrans[nc] = cfg.transport;
      if (!strncmp(q, "mpi:", 4)) ctrans[nc] = COLL_TRANSPORT_MPI, q += 4;
      else if (!strncmp(q, "ofi:", 4)) ctrans[nc] = COLL_TRANSPORT_OFI, q += 4;
      cbytes[nc++] = parse_size(q);
    }
  } else {
    ctrans[nc] = cfg.transport;
    cbytes[nc++] = cfg.chunk_bytes;
  }
  for (int k = 0; k < nc; k++) {
    coll_config_t ck = cfg;
    ck.chunk_bytes = cbytes[k];
    ck.transport = ctrans[k];
    if (coll_comm_create(MPI_COMM_WORLD, &ck, &cs[k]) != COLL_OK) MPI_Abort(MPI_COMM_WORLD, 1);
  }
  coll_comm_t *autoc; /* chunk_bytes 0: auto takes a tuning table's chunk, or the default */
  if (coll_comm_create(MPI_COMM_WORLD, &cfg, &autoc) != COLL_OK) MPI_Abort(MPI_COMM_WORLD, 1);
  int p = coll_size(cs[0]), r = coll_rank(cs[0]);
  size_t maxn = maxb / 4;
  float *send = coll_mem_alloc(maxn * 4 + 64), *recv = coll_mem_alloc(maxn * 4 + 64),
        *tmp = coll_mem_alloc(maxn * 4 + 64);
  for (size_t i = 0; i < maxn; i++) send[i] = (float)((i + (size_t)r) % 7);
  memset(recv, 0, maxn * 4);
  memset(tmp, 0, maxn * 4);
  const char *names[NALG] = {"ring", "rd", "mpi", "sendrecv", "rh", "auto"};
  const coll_algo_t ids[NALG] = {COLL_ALGO_RING, COLL_ALGO_RD, COLL_ALGO_MPI, COLL_ALGO_AUTO,
                                 COLL_ALGO_RABENSEIFNER, COLL_ALGO_AUTO};
  /* Chunk size only matters to our own algorithms; the baselines and auto get one column. */
  const int chunked[NALG] = {1, 0, 0, 0, 1, 0};
  int use[NALG];
  for (int a = 0; a < NALG; a++) use[a] = strstr(algos, names[a]) != NULL;
  if (r == 0) {
    printf("# np=%d transport=%s depth=%d  busbw GB/s (time us), %s of %d%s\n", p,
           coll_transport_name(cs[0]), cfg.pipeline_depth, use_min ? "min" : "median", iters,
           refresh ? ", input rewritten before each call" : "");
    if (use[5]) printf("# auto: %s\n", coll_tune_describe(autoc));
    printf("%12s", "bytes");
    for (int a = 0; a < NALG; a++)
      for (int k = 0; use[a] && k < (chunked[a] ? nc : 1); k++)
        for (int ip = 0; ip <= inplace_too; ip++) {
        char col[48];
        if (chunked[a])
          snprintf(col, sizeof col, "%s/%s%zuK", names[a],
                   ctrans[k] != cfg.transport ? coll_transport_name(cs[k]) : "",
                   coll_comm_config(cs[k])->chunk_bytes >> 10);
        else snprintf(col, sizeof col, "%s", names[a]);
        if (ip) strcat(col, " ip");
        printf(" %22s", col);
      }
    printf("\n");
  }
  double *t = malloc(sizeof(double) * (size_t)(iters > 0 ? iters : 1));
  if (factor < 2) factor = 2;
  for (size_t bytes = minb; bytes <= maxb; bytes *= (size_t)factor) {
    size_t n = bytes / 4;
    if (r == 0) printf("%12zu", bytes);
    for (int a = 0; a < NALG; a++)
      for (int k = 0; use[a] && k < (chunked[a] ? nc : 1); k++)
        for (int ip = 0; ip <= inplace_too; ip++) {
        coll_comm_t *c = a == 5 ? autoc : cs[k];
        for (int it = -warm; it < iters; it++) {
          if (refresh) fill(ip ? recv : send, n, r, it); /* untimed, as backward writes a gradient */
          MPI_Barrier(MPI_COMM_WORLD);
          double t0 = MPI_Wtime();
          coll_result_t rc = COLL_OK;
          if (a == 3) sendrecv_ring(send, recv, n, tmp, MPI_COMM_WORLD);
          else rc = coll_allreduce_algo(ip ? recv : send, recv, n, COLL_F32, COLL_SUM, ids[a], c);
          double dt = MPI_Wtime() - t0;
          if (rc != COLL_OK) {
            fprintf(stderr, "[r%d] %s\n", r, coll_last_error(c));
            MPI_Abort(MPI_COMM_WORLD, 1);
          }
          MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
          if (it >= 0) t[it] = dt;
        }
        qsort(t, (size_t)iters, sizeof *t, cmp_d);
        double med = use_min ? t[0] : t[iters / 2];
        double busbw = (double)bytes / med / 1e9 * 2.0 * (p - 1) / p;
        if (r == 0) printf(" %10.2f (%9.1f)", busbw, med * 1e6);
      }
    if (r == 0) {
      printf("\n");
      fflush(stdout);
    }
  }
  free(t);
  coll_mem_free(send);
  coll_mem_free(recv);
  coll_mem_free(tmp);
  for (int k = 0; k < nc; k++) coll_comm_destroy(cs[k]);
  coll_comm_destroy(autoc);
  MPI_Finalize();
  return 0;
}
