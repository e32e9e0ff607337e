/* mpi_hello.c -- the smallest MPI program that proves a launcher wired the ranks together:
 * every rank reports its rank, the world size and its host, and the ranks agree on the world
 * size and on the sum of their ranks through MPI_Allreduce (which only works if the launcher's
 * PMI/PMIx exchange connected them). Used by the slurm_ tests to check `srun --mpi=pmix`
 * before the Strata batch scripts rely on it. Prints "mpi_hello: rank R of N on HOST, sum S ok"
 * and exits 0, or names what disagreed and exits 1. */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
  int rank = 0, size = 0, sum = 0, len = 0, rc = 0;
  char host[MPI_MAX_PROCESSOR_NAME] = {0};
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Get_processor_name(host, &len);
  MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  const int want = size * (size - 1) / 2; /* 0 + 1 + ... + (size - 1) */
  if (sum != want) {
    fprintf(stderr, "mpi_hello: rank %d of %d: rank sum %d, expected %d\n", rank, size, sum, want);
    rc = 1;
  } else {
    printf("mpi_hello: rank %d of %d on %s, sum %d ok\n", rank, size, host, sum);
  }
  fflush(stdout);
  MPI_Finalize();
  return rc;
}
