/* coll_tune.h -- `strata bench allreduce --tune`: measures every all-reduce algorithm and chunk
 * size at each size of the benchmark's range on the benchmark's communicator (its ranks,
 * transport and dtype) and writes the fastest as the decision table that coll_comm_create loads
 * (coll.h, "Decision table"; collectives/README.md, "Tuning").
 *
 * Candidates: rd (up to COLL_TUNE_RD_MAX_BYTES: it needs a scratch copy of the vector), mpi
 * (MPI_Allreduce), and ring and Rabenseifner with chunks of 256K, 512K, 1M and 2M (a chunk is
 * measured only when the next smaller one does not already hold the whole vector); rd, ring
 * and Rabenseifner each with their fp32 sums written through the cache and with streaming
 * stores (from 16 KiB per rank; below, no sum streams), and the rule records which. At each size
 * and placement (out of place first, then in place) every candidate runs a warm-up call, then
 * the candidates take turns call by call, in a new random order each round (the same on every
 * rank), for up to 3 x `iters` rounds (fewer when the calls take
 * long: about 30 ms of each candidate, at least 9 rounds); each call starts after a barrier and
 * counts as its slowest rank's time, and a candidate's time is its median call. Out of
 * place and in place get rules of their own: the candidate chosen at each size and placement
 * (coll_tune_pick: the fastest, or the previous size's choice when its median is within the 95%
 * confidence interval of the fastest's and 2% of it) holds from that size up to the next measured size, the
 * first from 0 B; equal neighbours are merged. Rules already in the file for other (ranks,
 * transport, dtype) keys are kept.
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

/* The choice among n candidates at one size and placement, from each one's median call med[i]
 * and the upper end med_hi[i] of the 95% confidence interval of that median: the fastest
 * median, unless `prev` (the index of the previous size's choice, or -1) has a median no slower
 * than the fastest's med_hi, so that the calls cannot tell the two apart, and no more than
 * COLL_TUNE_KEEP_SLACK above the fastest's median. Candidates within noise of one another trade
 * places from run to run and size to size; keeping the previous choice then spares the table a
 * rule that is one noisy draw. The slack bounds what keeping may cost where few calls make the
 * interval wide (nine calls of 30 ms at 256 MiB: up to the 8th of the 9), a small share of the 5%
 * that auto may lose to the best fixed choice. Ties go to the lowest index. */
#define COLL_TUNE_KEEP_SLACK 0.02
int coll_tune_pick(int n, const double *med, const double *med_hi, int prev);

/* The 1-based rank, among n >= 1 sorted samples, of the upper end of the distribution-free 95%
 * confidence interval of their median: the count of samples below the median is binomial (n,
 * 1/2), so the interval runs between the order statistics n/2 -+ 1.96 sqrt(n) / 2 (the normal
 * approximation; Conover, Practical Nonparametric Statistics, the sign test's interval). */
int coll_tune_median_upper_rank(int n);

#endif /* STRATA_COLL_TUNE_H */
