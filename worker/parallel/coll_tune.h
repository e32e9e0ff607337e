/* coll_tune.h -- `strata bench allreduce --tune`: measures every all-reduce algorithm and chunk
 * size at each size of the benchmark's range on the benchmark's communicator (its ranks,
 * transport and dtype) and writes the fastest as the decision table that coll_comm_create loads
 * (coll.h, "Decision table"; collectives/README.md, "Tuning").
 *
 * Candidates: rd (up to COLL_TUNE_RD_MAX_BYTES: it needs a scratch copy of the vector), mpi
 * (MPI_Allreduce), and ring and Rabenseifner with chunks of 256K, 512K, 1M and 2M (a chunk is
 * measured only when the next smaller one does not already hold the whole vector). At each size
 * and placement (out of place first, then in place) every candidate runs a warm-up call, then
 * the candidates take turns call by call, in a new random order each round (the same on every
 * rank), for up to 3 x `iters` rounds (fewer when the calls take
 * long: about 30 ms of each candidate, at least 9 rounds); each call starts after a barrier and
 * counts as its slowest rank's time, and a candidate's time is its median call. Out of
 * place and in place get rules of their own: the fastest candidate of each size and placement
 * holds from that size up to the next measured size, the first from 0 B; equal neighbours are
 * merged. Rules already in the file for other (ranks, transport, dtype) keys are kept.
 *
 * Usage (every rank; b as for coll_bench_run, b->comm the communicator measured)
 *    if (coll_tune_run(&b, &cfg, path) != 0) ... failed (said on the rank that failed) ...
 */
#ifndef STRATA_COLL_TUNE_H
#define STRATA_COLL_TUNE_H

#include "coll_bench.h"
#include "strata/coll.h"

#define COLL_TUNE_RD_MAX_BYTES ((size_t)64 << 20)

/* Collective. Measures as above, prints per size and placement the chosen candidate, its time,
 * and its speed over MPI_Allreduce's and over the built-in rules' choice (rank 0, stdout);
 * writes the table to `path` (rank 0). cfg is the benchmark communicator's configuration (the candidates'
 * communicators are built from it with their chunk size and without a table). 0, or -1 with the
 * reason said (every rank returns the same). */
int coll_tune_run(const coll_bench_t *b, const coll_config_t *cfg, const char *path);

#endif /* STRATA_COLL_TUNE_H */
