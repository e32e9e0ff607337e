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
 *   default the out-of-place input never changes, so a peer may read it from its own cache]
 *   [-I 1: interleaved: each iteration is one call of every column of a placement, in a new
 *   random order each time (out of place, then in place, as separate rounds) rather than each
 *   column's iterations back to back, so a slow spell of a shared machine falls on all the
 *   columns it is compared across and no column always follows the same one] [-R FILE: rank 0 also
 *   writes every timed call there, one CSV line "bytes,column,call,time_us" (the column named as
 *   in the header, "_ip" for in place; call counts rounds from 0), for estimates the medians
 *   alone cannot give, such as choosing the best column on half the calls and timing it on the
 *   other half] */
#include <stdio.h>
#include <stdint.h>
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

/* One timed call of column algorithm `a` (3: the MPI_Sendrecv ring) after a barrier: the slowest
 * rank's seconds. With `refresh` the call's input is rewritten first, untimed. */
static double time_call(int a, coll_comm_t *c, coll_algo_t id, float *send, float *recv, float *tmp, size_t n,
                        int ip, int refresh, int r, int it) {
  if (refresh) fill(ip ? recv : send, n, r, it); /* as backward writes a gradient */
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  coll_result_t rc = COLL_OK;
  if (a == 3) sendrecv_ring(send, recv, n, tmp, MPI_COMM_WORLD);
  else rc = coll_allreduce_algo(ip ? recv : send, recv, n, COLL_F32, COLL_SUM, id, c);
  double dt = MPI_Wtime() - t0;
  if (rc != COLL_OK) {
    fprintf(stderr, "[r%d] %s\n", r, coll_last_error(c));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return dt;
}

/* A new random order of a[0..n) (Fisher-Yates over splitmix64): the interleaved columns take
 * turns in a new order each round, so none always follows the same one. */
static void shuffle(int *a, int n, uint64_t *state) {
  for (int i = n - 1; i > 0; i--) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    int j = (int)(z % (uint64_t)(i + 1)), x = a[i];
    a[i] = a[j], a[j] = x;
  }
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
  int interleave = 0;  /* -I 1: the columns of a placement take turns, one call each */
  const char *raw_path = NULL; /* -R FILE: every timed call */
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
    else if (!strcmp(argv[i], "-I")) interleave = atoi(argv[i + 1]) != 0;
    else if (!strcmp(argv[i], "-R")) raw_path = argv[i + 1];
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
  /* The columns in header order: algorithm index, communicator index, placement, and the name
   * without its placement (ring/512K, ring/ofi1024K, rd, mpi; in place adds " ip" in the header
   * and "_ip" in the -R file). */
  int ncol = 0, col_a[NALG * MAXC * 2], col_k[NALG * MAXC * 2], col_ip[NALG * MAXC * 2];
  char col_name[NALG * MAXC * 2][48];
  for (int a = 0; a < NALG; a++)
    for (int k = 0; use[a] && k < (chunked[a] ? nc : 1); k++)
      for (int ip = 0; ip <= inplace_too; ip++) {
        if (chunked[a])
          snprintf(col_name[ncol], sizeof col_name[ncol], "%s/%s%zuK", names[a],
                   ctrans[k] != cfg.transport ? coll_transport_name(cs[k]) : "",
                   coll_comm_config(cs[k])->chunk_bytes >> 10);
        else snprintf(col_name[ncol], sizeof col_name[ncol], "%s", names[a]);
        col_a[ncol] = a, col_k[ncol] = k, col_ip[ncol++] = ip;
      }
  if (r == 0) {
    printf("# np=%d transport=%s depth=%d  busbw GB/s (time us), %s of %d%s\n", p,
           coll_transport_name(cs[0]), cfg.pipeline_depth, use_min ? "min" : "median", iters,
           refresh ? ", input rewritten before each call" : "");
    if (use[5]) printf("# auto: %s\n", coll_tune_describe(autoc));
    printf("%12s", "bytes");
    for (int c = 0; c < ncol; c++) {
      char col[48];
      snprintf(col, sizeof col, "%s%s", col_name[c], col_ip[c] ? " ip" : "");
      printf(" %22s", col);
    }
    printf("\n");
  }
  FILE *raw = NULL;
  if (raw_path && r == 0 && !(raw = fopen(raw_path, "w"))) {
    fprintf(stderr, "coll_bench_allreduce: cannot write %s (-R); give a writable path\n", raw_path);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  if (raw) fprintf(raw, "bytes,column,call,time_us\n");
  if (iters < 1) iters = 1;
  double *t = malloc(sizeof(double) * (size_t)iters * (size_t)(ncol ? ncol : 1));
  double *med = malloc(sizeof(double) * (size_t)(ncol ? ncol : 1));
  int order[NALG * MAXC * 2];
  for (int c = 0; c < ncol; c++) order[c] = c;
  if (!t || !med) MPI_Abort(MPI_COMM_WORLD, 1);
  if (factor < 2) factor = 2;
  for (size_t bytes = minb; bytes <= maxb; bytes *= (size_t)factor) {
    size_t n = bytes / 4;
    /* Column by column in header order, or (-I 1) per placement a round of each of its columns
     * per iteration, in a new order each round; in place those start from zeros (sums of zeros
     * stay zeros, where a few hundred in-place sums of the previous result would reach inf). */
    for (int b0 = 0; b0 < (interleave ? inplace_too + 1 : ncol); b0++) {
      int ip = interleave ? b0 : col_ip[b0], c0 = interleave ? 0 : b0, c1 = interleave ? ncol : b0 + 1;
      if (interleave && ip) memset(recv, 0, n * 4);
      uint64_t seed = bytes * 2 + (uint64_t)ip; /* the same on every rank */
      for (int it = -warm; it < iters; it++) {
        if (interleave) shuffle(order, ncol, &seed);
        for (int o = c0; o < c1; o++) {
          int c = interleave ? order[o] : o;
          if (col_ip[c] != ip) continue;
          double dt = time_call(col_a[c], col_a[c] == 5 ? autoc : cs[col_k[c]], ids[col_a[c]], send, recv, tmp, n, ip,
                                refresh, r, it);
          if (it >= 0) t[(size_t)c * (size_t)iters + (size_t)it] = dt;
          if (it >= 0 && raw) fprintf(raw, "%zu,%s%s,%d,%.3f\n", bytes, col_name[c], ip ? "_ip" : "", it, dt * 1e6);
        }
      }
    }
    for (int c = 0; c < ncol; c++) {
      double *tc = t + (size_t)c * (size_t)iters;
      qsort(tc, (size_t)iters, sizeof *tc, cmp_d);
      med[c] = use_min ? tc[0] : tc[iters / 2];
    }
    if (r == 0) {
      printf("%12zu", bytes);
      for (int c = 0; c < ncol; c++)
        printf(" %10.2f (%9.1f)", (double)bytes / med[c] / 1e9 * 2.0 * (p - 1) / p, med[c] * 1e6);
      printf("\n");
      fflush(stdout);
    }
  }
  if (raw && fclose(raw)) {
    fprintf(stderr, "coll_bench_allreduce: writing %s (-R) failed; check the disk\n", raw_path);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  free(med);
  free(t);
  coll_mem_free(send);
  coll_mem_free(recv);
  coll_mem_free(tmp);
  for (int k = 0; k < nc; k++) coll_comm_destroy(cs[k]);
  coll_comm_destroy(autoc);
  MPI_Finalize();
  return 0;
}
