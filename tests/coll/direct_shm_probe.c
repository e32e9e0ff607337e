/* direct_shm_probe.c -- an experiment, not part of the library: how fast an all-reduce can be
 * when ranks on one node read each other's buffers directly instead of through the transports'
 * kernel copy (collectives/README.md, "A direct shared-memory all-reduce").
 *
 *   mpirun -np 2 build/tests/coll_direct_shm_probe DIR [CHUNK_BYTES]
 *
 * Every rank puts its send buffer, recv buffer and a flag page in files under DIR (/dev/shm for
 * shared memory on the kernel's page size, a hugetlbfs mount for 2 MiB pages) and maps its
 * peers' files. Rank r reduces block r of the vector straight from all ranks' send buffers into
 * its recv buffer, chunk by chunk (CHUNK_BYTES, default 256 KiB), raising a per-chunk flag; then
 * it copies every other block from its owner's recv buffer as the owner's flags come up. Per
 * size (fp32 sum, 1 MiB to 64 MiB, x4) it prints the median busbw of 20 iterations against
 * MPI_Allreduce on private 2 MiB-aligned MADV_HUGEPAGE buffers (what coll_bench_allreduce
 * uses), and checks both results exactly. Exit status: 0, 1 wrong results or a file error,
 * 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_BYTES ((size_t)64 << 20)
#define MAX_RANKS 16
#define FLAGS 4096 /* flag words per rank: [0] entered, [1 + c] chunk c reduced, [FLAGS-1] done */
#define ITERS 20
#define WARMUP 3

typedef struct {
  float *send[MAX_RANKS], *recv[MAX_RANKS];
  _Atomic long *flag[MAX_RANKS];
} peers_t;

/* Creates (own rank) or opens (peers) DIR/strata_probe_<tag>_<rank>_<what> and maps it. */
static void *map_file(const char *dir, long tag, int rank, const char *what, size_t bytes,
                      int create, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/strata_probe_%ld_%d_%s", dir, tag, rank, what);
  int fd = open(path, create ? O_CREAT | O_EXCL | O_RDWR : O_RDWR, 0600);
  if (fd < 0 || (create && ftruncate(fd, (off_t)bytes) != 0)) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    snprintf(err, errlen, "mmap %s: %s (hugetlbfs needs free pages: vm.nr_hugepages)", path,
             strerror(errno));
    return NULL;
  }
  return p;
}

static void unlink_own(const char *dir, long tag, int rank) {
  const char *what[3] = {"send", "recv", "flag"};
  for (int i = 0; i < 3; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/strata_probe_%ld_%d_%s", dir, tag, rank, what[i]);
    unlink(path);
  }
}

static void wait_flag(_Atomic long *f, long v) {
  for (int spins = 0; atomic_load_explicit(f, memory_order_acquire) < v;)
    if (++spins > 64) sched_yield(), spins = 0;
}

/* One all-reduce of n floats, generation gen (flags only grow, so nothing is reset). */
static void direct_allreduce(const peers_t *pr, int p, int r, size_t n, size_t chunk, long gen) {
  size_t blk = (n + (size_t)p - 1) / (size_t)p;
  atomic_store_explicit(&pr->flag[r][0], gen, memory_order_release);
  for (int q = 0; q < p; q++) wait_flag(&pr->flag[q][0], gen); /* all inputs ready */
  size_t lo = (size_t)r * blk, hi = lo + blk < n ? lo + blk : n, c = 0;
  for (size_t b = lo; b < hi; b += chunk, c++) {
    size_t e = b + chunk < hi ? b + chunk : hi;
    float *restrict o = pr->recv[r];
    const float *restrict s0 = pr->send[0], *restrict s1 = pr->send[p > 1 ? 1 : 0];
    if (p == 1) memcpy(o + b, s0 + b, (e - b) * sizeof(float));
    else /* one pass over the first two inputs (all of it at np=2), then one per further rank */
      for (size_t i = b; i < e; i++) o[i] = s0[i] + s1[i];
    for (int q = 2; q < p; q++) {
      const float *restrict sq = pr->send[q];
      for (size_t i = b; i < e; i++) o[i] += sq[i];
    }
    atomic_store_explicit(&pr->flag[r][1 + c], gen, memory_order_release);
  }
  for (int k = 1; k < p; k++) {
    int q = (r + k) % p;
    size_t qlo = (size_t)q * blk, qhi = qlo + blk < n ? qlo + blk : n;
    c = 0;
    for (size_t b = qlo; b < qhi; b += chunk, c++) {
      size_t e = b + chunk < qhi ? b + chunk : qhi;
      wait_flag(&pr->flag[q][1 + c], gen);
      memcpy(pr->recv[r] + b, pr->recv[q] + b, (e - b) * sizeof(float));
    }
  }
  /* Nobody returns (and may overwrite its buffers) while a peer still reads them. */
  atomic_store_explicit(&pr->flag[r][FLAGS - 1], gen, memory_order_release);
  for (int q = 0; q < p; q++) wait_flag(&pr->flag[q][FLAGS - 1], gen);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int r, p;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  size_t chunk_bytes = argc > 2 ? strtoull(argv[2], NULL, 0) : 256 * 1024;
  if (argc < 2 || argc > 3 || p > MAX_RANKS || chunk_bytes < sizeof(float) ||
      MAX_BYTES / chunk_bytes > FLAGS - 2) {
    if (r == 0)
      fprintf(stderr, "usage: mpirun -np N (N <= %d) coll_direct_shm_probe DIR [CHUNK_BYTES]\n"
              "  DIR: /dev/shm, or a hugetlbfs mount for 2 MiB pages; CHUNK_BYTES >= %zu\n",
              MAX_RANKS, MAX_BYTES / (FLAGS - 2));
    MPI_Finalize();
    return 2;
  }
  const char *dir = argv[1];
  size_t chunk = chunk_bytes / sizeof(float);
  long tag = (long)getpid(); /* rank 0's pid names this job's files */
  MPI_Bcast(&tag, 1, MPI_LONG, 0, MPI_COMM_WORLD);

  peers_t pr;
  char err[4200] = "";
  int ok = (pr.send[r] = map_file(dir, tag, r, "send", MAX_BYTES, 1, err, sizeof err)) &&
           (pr.recv[r] = map_file(dir, tag, r, "recv", MAX_BYTES, 1, err, sizeof err)) &&
           (pr.flag[r] = map_file(dir, tag, r, "flag", 2 << 20, 1, err, sizeof err));
  int all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  for (int q = 0; q < p && all_ok; q++) {
    if (q == r) continue;
    ok = ok && (pr.send[q] = map_file(dir, tag, q, "send", MAX_BYTES, 0, err, sizeof err)) &&
         (pr.recv[q] = map_file(dir, tag, q, "recv", MAX_BYTES, 0, err, sizeof err)) &&
         (pr.flag[q] = map_file(dir, tag, q, "flag", 2 << 20, 0, err, sizeof err));
  }
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  unlink_own(dir, tag, r); /* mapped everywhere (or failed): the files need no name any more */
  if (!all_ok) {
    if (!ok) fprintf(stderr, "[probe r%d] cannot map %s\n", r, err);
    MPI_Finalize();
    return 1;
  }
  size_t maxn = MAX_BYTES / sizeof(float);
  float *msend = NULL, *mrecv = NULL;
  if (posix_memalign((void **)&msend, 2 << 20, MAX_BYTES) || posix_memalign((void **)&mrecv, 2 << 20, MAX_BYTES)) {
    fprintf(stderr, "[probe r%d] out of memory\n", r);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  madvise(msend, MAX_BYTES, MADV_HUGEPAGE);
  madvise(mrecv, MAX_BYTES, MADV_HUGEPAGE);
  for (size_t i = 0; i < maxn; i++) pr.send[r][i] = msend[i] = (float)(r + 1 + (int)(i % 7));
  memset(pr.recv[r], 0, MAX_BYTES);
  memset(mrecv, 0, MAX_BYTES);
  MPI_Barrier(MPI_COMM_WORLD);
  if (r == 0)
    printf("# np=%d dir=%s chunk=%zu  busbw GB/s, median of %d\n%12s %10s %10s %7s\n", p, dir,
           chunk_bytes, ITERS, "bytes", "direct", "mpi", "ratio");

  long gen = 0, wrong_total = 0;
  for (size_t n = (1u << 20) / sizeof(float); n <= maxn; n *= 4) {
    double t[2][ITERS];
    for (int it = -WARMUP; it < ITERS; it++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      direct_allreduce(&pr, p, r, n, chunk, ++gen);
      double t1 = MPI_Wtime();
      MPI_Barrier(MPI_COMM_WORLD);
      double t2 = MPI_Wtime();
      MPI_Allreduce(msend, mrecv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double t3 = MPI_Wtime();
      if (it >= 0) t[0][it] = t1 - t0, t[1][it] = t3 - t2;
    }
    long wrong = 0; /* sums of small integers: exact in fp32 */
    for (size_t i = 0; i < n; i++) {
      float want = (float)(p * (p + 1) / 2 + p * (int)(i % 7));
      wrong += (pr.recv[r][i] != want) + (mrecv[i] != want);
    }
    MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    wrong_total += wrong;
    qsort(t[0], ITERS, sizeof(double), cmp_double);
    qsort(t[1], ITERS, sizeof(double), cmp_double);
    double bus = 2.0 * (p - 1) / p * (double)(n * sizeof(float)) / 1e9;
    if (r == 0)
      printf("%12zu %10.2f %10.2f %7.2f%s\n", n * sizeof(float), bus / t[0][ITERS / 2],
             bus / t[1][ITERS / 2], t[1][ITERS / 2] / t[0][ITERS / 2], wrong ? "  WRONG" : "");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  free(msend);
  free(mrecv);
  MPI_Finalize();
  return wrong_total ? 1 : 0;
}
