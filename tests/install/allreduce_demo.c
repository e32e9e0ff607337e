/* allreduce_demo.c -- a program outside Strata that uses the installed collectives library,
 * built the two ways collectives/README.md shows:
 *   mpicc allreduce_demo.c $(pkg-config --cflags --libs strata-coll) -o allreduce_demo
 *   find_package(StrataColl) + target_link_libraries(allreduce_demo PRIVATE Strata::coll)
 * Every rank r contributes x[i] = (r + 1) * (i + 1) to an all-reduce (sum, int64), so the
 * exact result is x[i] = (i + 1) * p (p + 1) / 2 on every rank. Two sizes: 7 elements (the
 * recursive-doubling path) and 2^20 elements (8 MiB, the pipelined ring). Rank 0 prints
 *   allreduce_demo: 3 ranks, sum of 1..3 = 6, 1048583 elements exact
 * and every rank exits 0 only when every element of both sizes is exact.
 * Run: mpirun -np 3 ./allreduce_demo */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <strata/coll.h>

/* Fills x with (rank + 1) * (i + 1), all-reduces it and counts the elements that differ from
 * (i + 1) * p (p + 1) / 2; *first = the reduced x[0]. Returns that count, or -1 when the library
 * fails (message printed). */
static long check_allreduce(coll_comm_t *comm, size_t n, int64_t *first) {
  int64_t *x = coll_mem_alloc(n * sizeof *x);
  if (!x) {
    fprintf(stderr, "allreduce_demo: cannot allocate %zu elements\n", n);
    return -1;
  }
  int64_t r = coll_rank(comm), p = coll_size(comm);
  for (size_t i = 0; i < n; i++) x[i] = (r + 1) * (int64_t)(i + 1);
  coll_result_t rc = coll_allreduce(x, x, n, COLL_I64, COLL_SUM, comm);
  if (rc != COLL_OK) {
    fprintf(stderr, "allreduce_demo: rank %d: coll_allreduce of %zu elements failed: %s (%s)\n",
            (int)r, n, coll_result_string(rc), coll_last_error(comm));
    coll_mem_free(x);
    return -1;
  }
  long wrong = 0;
  *first = x[0];
  for (size_t i = 0; i < n; i++)
    if (x[i] != (int64_t)(i + 1) * p * (p + 1) / 2) wrong++;
  coll_mem_free(x);
  return wrong;
}

int main(int argc, char **argv) {
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    fprintf(stderr, "allreduce_demo: MPI_Init failed\n");
    return 1;
  }
  coll_config_t cfg = coll_config_default();
  coll_comm_t *world = NULL;
  if (coll_comm_create(MPI_COMM_WORLD, &cfg, &world) != COLL_OK) {
    fprintf(stderr, "allreduce_demo: coll_comm_create failed%s%s\n", cfg.env_error ? ": " : "",
            cfg.env_error ? cfg.env_error : "");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const size_t sizes[2] = {7, (size_t)1 << 20};
  long wrong = 0;
  size_t checked = 0;
  int64_t sum = 0; /* x[0] after the reduction: 1 + 2 + ... + p */
  for (int k = 0; k < 2; k++) {
    long w = check_allreduce(world, sizes[k], &sum);
    if (w < 0) MPI_Abort(MPI_COMM_WORLD, 1);
    wrong += w;
    checked += sizes[k];
  }
  long wrong_all = 0;
  MPI_Allreduce(&wrong, &wrong_all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  int p = coll_size(world);
  if (coll_rank(world) == 0) {
    if (wrong_all == 0)
      printf("allreduce_demo: %d ranks, sum of 1..%d = %lld, %zu elements exact\n", p, p,
             (long long)sum, checked);
    else
      printf("allreduce_demo: %d ranks, %ld elements wrong\n", p, wrong_all);
  }
  coll_comm_destroy(world);
  MPI_Finalize();
  return wrong_all == 0 ? 0 : 1;
}
