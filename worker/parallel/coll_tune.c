/* coll_tune.c -- `strata bench allreduce --tune` (see coll_tune.h). */
#include "coll_tune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rng.h"
#include "util.h"

#define TUNE_ROUNDS 3      /* calls of a candidate: up to 3 x -n ... */
#define TUNE_BUDGET_S 0.03 /* ... or about this long a candidate and placement, */
#define TUNE_MIN_CALLS 9   /* ... but at least this many */
#define TUNE_MAX_CALLS 200
#define TUNE_MAX_CANDIDATES 24
/* Sums of fewer than 4096 floats never stream (reduce.c): below this many bytes a rank's
 * pieces are that small, and the streaming variants are the same calls as the cached ones. */
#define TUNE_STREAM_MIN_BYTES(nranks) ((size_t)(nranks) * 16384u)

static const size_t tune_chunks[] = {256u << 10, 512u << 10, 1u << 20, 2u << 20};
#define TUNE_NCHUNKS ((int)(sizeof tune_chunks / sizeof tune_chunks[0]))

typedef struct {
  coll_algo_t algo;
  size_t chunk_bytes; /* 0 for rd and mpi */
  int stream;         /* 1: fp32 sums with streaming stores, 0: through the cache; -1 for mpi */
  coll_comm_t *comm;  /* a communicator with this chunk size and streaming (shared by ring,
                         rabenseifner and rd) */
} candidate_t;

/* The candidates' communicators: [streaming][chunk]. */
typedef coll_comm_t *candidate_comms_t[2][TUNE_NCHUNKS];

/* 1 when any rank failed; the failing rank says what failed. */
static int tune_failed(const coll_bench_t *b, int bad, const char *msg) {
  if (!b->rt.max_int(b->rt.ctx, bad)) return 0;
  if (bad) strata_error("bench --tune: %s", msg);
  return 1;
}

/* Seconds of one all-reduce started together after a barrier and timed as its slowest rank's
 * (-1 on a failure): how coll_bench_allreduce times, and how a training step meets one, its
 * ranks arriving together after their compute. */
static double time_call(const coll_bench_t *b, const candidate_t *c, char *sbuf, char *rbuf, size_t count,
                        int inplace) {
  b->rt.barrier(b->rt.ctx);
  double t0 = strata_now_s();
  coll_result_t rc = coll_allreduce_algo(inplace ? rbuf : sbuf, rbuf, count, b->dtype, b->redop, c->algo, c->comm);
  double mine = strata_now_s() - t0;
  if (tune_failed(b, rc != COLL_OK, coll_last_error(c->comm))) return -1;
  return b->rt.max_f64(b->rt.ctx, mine);
}

/* The candidates worth measuring at `bytes` (see coll_tune.h). */
static int candidates_at(const coll_bench_t *b, size_t bytes, candidate_t *all, int nall, candidate_t *out) {
  int n = 0;
  for (int i = 0; i < nall; i++) {
    const candidate_t *c = &all[i];
    if (c->algo == COLL_ALGO_RD && bytes > COLL_TUNE_RD_MAX_BYTES) continue;
    if (c->stream == 1 && bytes < TUNE_STREAM_MIN_BYTES(b->nranks)) continue;
    if (c->chunk_bytes > tune_chunks[0] && c->chunk_bytes / 2 >= bytes) continue; /* same as a smaller chunk */
    out[n++] = *c;
  }
  return n;
}

/* One placement's outcome at one size: the chosen candidate and its time, and the times of
 * MPI_Allreduce and of what the built-in rules pick (-1 when not measured), in us; each time
 * is the candidate's median call. kept: the choice is the previous size's, not the fastest but
 * within noise of it (coll_tune_pick). */
typedef struct {
  candidate_t best;
  double us, mpi_us, builtin_us;
  int kept;
} placement_result_t;

static int same_candidate(const candidate_t *a, const candidate_t *b) {
  return a->algo == b->algo && a->chunk_bytes == b->chunk_bytes && a->stream == b->stream;
}

int coll_tune_pick(int n, const double *med, const double *med_hi, int prev) {
  int bi = 0;
  for (int i = 1; i < n; i++)
    if (med[i] < med[bi]) bi = i;
  int keep = prev >= 0 && prev < n && med[prev] <= med_hi[bi] && med[prev] <= (1 + COLL_TUNE_KEEP_SLACK) * med[bi];
  return keep ? prev : bi;
}

int coll_tune_median_upper_rank(int n) {
  int k = (int)ceil(n / 2.0 + 0.98 * sqrt((double)n));
  return k < 1 ? 1 : k > n ? n : k;
}

/* Measures every candidate at `bytes` out of place, then in place, and fills res[0] (out of
 * place) and res[1] (in place) with coll_tune_pick's choice; builtin[ip] is the candidate the built-in
 * rules pick, prev[ip] the previous size's choice (NULL at the first size). Within a
 * placement the candidates take turns call by call (a round is one call of each, in a new random
 * order each round), so a slow spell of the shared machine falls on all of them, no candidate
 * finds the caches as its own previous call left them (which a training step's all-reduce never
 * does either), and none always follows the same one. A candidate's time is its median call.
 * The placements run apart: in-place calls between out-of-place ones would change what those
 * find in the caches. 0, or -1 on a failure. */
static int tune_size(const coll_bench_t *b, candidate_t *all, int nall, char *sbuf, char *rbuf,
                     size_t bytes, const candidate_t builtin[2], const candidate_t *prev, placement_result_t res[2]) {
  candidate_t cs[TUNE_MAX_CANDIDATES];
  int n = candidates_at(b, bytes, all, nall, cs);
  double calls[TUNE_MAX_CANDIDATES][TUNE_MAX_CALLS]; /* 25 KiB */
  double t[2][TUNE_MAX_CANDIDATES], hi[2][TUNE_MAX_CANDIDATES]; /* median call, its confidence bound */
  size_t count = bytes / coll_dtype_size(b->dtype);
  for (int ip = 0; ip < 2; ip++) {
    double warm = 0; /* one warm-up call each; their sum sets the number of rounds */
    for (int i = 0; i < n; i++) {
      double w = time_call(b, &cs[i], sbuf, rbuf, count, ip);
      if (w < 0) return -1;
      warm += w;
    }
    int most = TUNE_ROUNDS * b->iters < TUNE_MAX_CALLS ? TUNE_ROUNDS * b->iters : TUNE_MAX_CALLS;
    int rounds = warm > 0 ? (int)(TUNE_BUDGET_S * n / warm) : most;
    rounds = rounds < TUNE_MIN_CALLS ? TUNE_MIN_CALLS : rounds > most ? most : rounds;
    rng_t order_rng; /* the same stream on every rank: they call the candidates in one order */
    rng_seed(&order_rng, bytes, (uint64_t)ip);
    int order[TUNE_MAX_CANDIDATES];
    for (int i = 0; i < n; i++) order[i] = i;
    for (int k = 0; k < rounds; k++) {
      for (int i = n - 1; i > 0; i--) { /* a new order each round (Fisher-Yates) */
        int j = (int)rng_below(&order_rng, (uint64_t)i + 1), x = order[i];
        order[i] = order[j], order[j] = x;
      }
      for (int i = 0; i < n; i++)
        if ((calls[order[i]][k] = time_call(b, &cs[order[i]], sbuf, rbuf, count, ip)) < 0) return -1;
    }
    for (int i = 0; i < n; i++) {
      strata_sort_doubles(calls[i], (size_t)rounds);
      t[ip][i] = calls[i][rounds / 2];
      hi[ip][i] = calls[i][coll_tune_median_upper_rank(rounds) - 1];
    }
  }
  for (int ip = 0; ip < 2; ip++) {
    placement_result_t *r = &res[ip];
    int pi = -1; /* the previous size's choice among this size's candidates */
    for (int i = 0; prev && i < n; i++)
      if (same_candidate(&cs[i], &prev[ip])) pi = i;
    int bi = coll_tune_pick(n, t[ip], hi[ip], pi);
    r->kept = bi != coll_tune_pick(n, t[ip], hi[ip], -1); /* not the fastest: the previous choice */
    r->best = cs[bi];
    r->us = t[ip][bi] * 1e6;
    r->mpi_us = r->builtin_us = -1;
    for (int i = 0; i < n; i++) {
      if (cs[i].algo == COLL_ALGO_MPI) r->mpi_us = t[ip][i] * 1e6;
      if (same_candidate(&cs[i], &builtin[ip])) r->builtin_us = t[ip][i] * 1e6;
    }
  }
  return 0;
}

static void destroy_comms(candidate_comms_t comms) {
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < TUNE_NCHUNKS; k++) {
      coll_comm_destroy(comms[s][k]);
      comms[s][k] = NULL;
    }
}

/* The communicators of the candidates, without a decision table: one per chunk size and
 * streaming (cfg.stream_bytes 0: every sum streams; SIZE_MAX: none does). Strata's algorithms
 * run both ways: which stores are faster depends on the host (collectives/README.md, "In
 * place"). */
static int make_candidates(const coll_bench_t *b, const coll_config_t *cfg, candidate_t *all, int *nall,
                           candidate_comms_t comms) {
  int n = 0;
  coll_config_t c = *cfg;
  c.tune_file = "off";
  c.algo = COLL_ALGO_AUTO;
  MPI_Comm mpi = coll_mpi_comm(b->comm);
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < TUNE_NCHUNKS; k++) {
      c.chunk_bytes = tune_chunks[k];
      c.stream_bytes = s ? 0 : SIZE_MAX;
      int bad = coll_comm_create(mpi, &c, &comms[s][k]) != COLL_OK; /* says why on stderr */
      if (b->rt.max_int(b->rt.ctx, bad)) {
        destroy_comms(comms);
        if (b->rank == 0) strata_error("bench --tune: cannot create the candidates' communicators");
        return -1;
      }
    }
  all[n++] = (candidate_t){COLL_ALGO_MPI, 0, -1, comms[0][1]};
  for (int s = 0; s < 2; s++) {
    all[n++] = (candidate_t){COLL_ALGO_RD, 0, s, comms[s][1]};
    for (int k = 0; k < TUNE_NCHUNKS; k++) {
      all[n++] = (candidate_t){COLL_ALGO_RING, tune_chunks[k], s, comms[s][k]};
      all[n++] = (candidate_t){COLL_ALGO_RABENSEIFNER, tune_chunks[k], s, comms[s][k]};
    }
  }
  *nall = n;
  return 0;
}

static size_t tune_next_size(const coll_bench_t *b, size_t size, size_t unit) {
  double next = size == 0 ? (double)unit : (double)size * b->factor;
  size_t s = next >= (double)b->maxbytes ? b->maxbytes : (size_t)next;
  return s <= size ? size + 1 : s;
}

/* Appends the rule "from `from` on, c" for one placement unless the placement's last rule
 * already says c (equal neighbours merge). 0, or -1 out of memory. */
static int add_rule(const coll_bench_t *b, coll_tune_rule_t **rules, int *n, int *cap, int in_place,
                    size_t from, const candidate_t *c) {
  for (int i = *n - 1; i >= 0; i--)
    if ((*rules)[i].in_place == in_place) {
      if ((*rules)[i].algo == c->algo && (*rules)[i].chunk_bytes == c->chunk_bytes && (*rules)[i].stream == c->stream)
        return 0;
      break;
    }
  if (*n == *cap) {
    *cap = *cap ? 2 * *cap : 32;
    coll_tune_rule_t *g = realloc(*rules, (size_t)*cap * sizeof **rules);
    if (!g) return -1;
    *rules = g;
  }
  coll_tune_rule_t *r = &(*rules)[(*n)++];
  memset(r, 0, sizeof *r);
  r->ranks = b->nranks;
  snprintf(r->transport, sizeof r->transport, "%s", coll_transport_name(b->comm));
  r->dtype = b->dtype;
  r->in_place = in_place;
  r->from_bytes = from;
  r->algo = c->algo;
  r->chunk_bytes = c->chunk_bytes;
  r->stream = c->stream;
  return 0;
}

static void print_placement(const placement_result_t *r) {
  char name[40], chunk[24] = ""; /* ring/512K, ring/512K/nt (streaming stores), rd/nt or mpi; "=": kept */
  if (r->best.chunk_bytes) snprintf(chunk, sizeof chunk, "/%zuK", r->best.chunk_bytes >> 10);
  int len = snprintf(name, sizeof name, "%s%s%s", coll_algo_name(r->best.algo), chunk, r->best.stream == 1 ? "/nt" : "");
  if (r->kept && len > 0 && (size_t)len + 2 < sizeof name) strcat(name, " =");
  printf("  %-24s %10.2f  %6.2f  %11.2f", name, r->us, r->mpi_us > 0 ? r->mpi_us / r->us : 0.0,
         r->builtin_us > 0 ? r->builtin_us / r->us : 0.0);
}

/* What the built-in rules (no decision table, the benchmark's configuration) run for one size
 * and placement, asked of a communicator made for it: the algorithm, its chunk mapped to the
 * candidate measured for it, and its stores. */
static candidate_t builtin_choice(const coll_bench_t *b, coll_comm_t *builtin, size_t s, int in_place) {
  size_t chunk = 0;
  candidate_t c = {coll_allreduce_auto_choice(builtin, s, b->dtype, in_place, &chunk), 0, -1, NULL};
  /* a chunk over twice the vector is measured as the smaller one */
  while (chunk > tune_chunks[0] && chunk / 2 >= s) chunk /= 2;
  if (c.algo == COLL_ALGO_RING || c.algo == COLL_ALGO_RABENSEIFNER) c.chunk_bytes = chunk;
  if (c.algo != COLL_ALGO_MPI)
    c.stream = s < TUNE_STREAM_MIN_BYTES(b->nranks)
                   ? 0
                   : coll_allreduce_auto_streams(builtin, s, b->dtype, in_place);
  return c;
}

int coll_tune_run(const coll_bench_t *b, const coll_config_t *cfg, const char *path) {
  candidate_t all[1 + 2 * (1 + 2 * TUNE_NCHUNKS)];
  candidate_comms_t comms = {{NULL}};
  coll_comm_t *builtin_comm = NULL;
  int nall = 0, rc = -1, nrules = 0, cap = 0;
  coll_tune_rule_t *rules = NULL;
  size_t unit = coll_dtype_size(b->dtype), maxr = b->maxbytes - b->maxbytes % unit;
  size_t alloc = maxr > 64 ? maxr : 64;
  char *sbuf = coll_mem_alloc(alloc), *rbuf = coll_mem_alloc(alloc);
  if (tune_failed(b, !sbuf || !rbuf, "cannot allocate the two buffers of --maxbytes; lower it")) goto out;
  memset(sbuf, 0, alloc); /* zeros stay zeros through repeated in-place sums */
  memset(rbuf, 0, alloc);
  if (make_candidates(b, cfg, all, &nall, comms)) goto out;
  coll_config_t bc = *cfg; /* the built-in rules for the "vs built-in" column */
  bc.tune_file = "off";
  bc.algo = COLL_ALGO_AUTO;
  int bad = coll_comm_create(coll_mpi_comm(b->comm), &bc, &builtin_comm) != COLL_OK; /* says why on stderr */
  if (tune_failed(b, bad, "cannot create the built-in rules' communicator")) goto out;
  if (b->rank == 0) {
    printf("# strata bench allreduce --tune: ranks %d transport %s dtype %s op %s sizes %zu..%zu B, "
           "%d candidates (mpi; rd, ring and rabenseifner x chunks 256K-2M, each with cached or streaming stores)\n",
           b->nranks, coll_transport_name(b->comm), coll_dtype_name(b->dtype), coll_op_name(b->redop),
           b->minbytes, b->maxbytes, nall);
    printf("# per placement: the chosen candidate (algo/chunk, \"/nt\": streaming stores; \" =\": the previous size's, kept as its median "
           "call is within the 95%% confidence interval of the fastest's and 2%% of it), its time (median call), and its speed "
           "over MPI_Allreduce's and over the built-in rules' choice\n");
    printf("# %10s  %-24s %10s  %6s  %11s  %-24s %10s  %6s  %11s\n", "size (B)", "out of place", "time (us)",
           "vs mpi", "vs built-in", "in place", "time (us)", "vs mpi", "vs built-in");
    fflush(stdout);
  }
  int measured = 0;
  candidate_t chosen[2]; /* the previous size's choices, once measured */
  size_t prev = (size_t)-1;
  for (size_t size = b->minbytes;; size = tune_next_size(b, size, unit)) {
    size_t s = size - size % unit;
    if (s && s != prev) {
      candidate_t builtin[2] = {builtin_choice(b, builtin_comm, s, 0), builtin_choice(b, builtin_comm, s, 1)};
      placement_result_t res[2];
      if (tune_size(b, all, nall, sbuf, rbuf, s, builtin, measured ? chosen : NULL, res)) goto out;
      chosen[0] = res[0].best, chosen[1] = res[1].best;
      if (b->rank == 0) {
        printf("  %10zu", s);
        print_placement(&res[0]);
        print_placement(&res[1]);
        printf("\n");
        fflush(stdout);
      }
      for (int ip = 0; ip < 2; ip++)
        if (add_rule(b, &rules, &nrules, &cap, ip, measured ? s : 0, &res[ip].best)) {
          strata_error("bench --tune: out of memory for the rules");
          goto out; /* every rank grows the same array, so all fail alike */
        }
      measured++;
    }
    prev = s;
    if (size >= b->maxbytes) break;
  }
  char err[512] = "";
  bad = b->rank == 0 && coll_tune_save(path, rules, nrules, err, sizeof err) != COLL_OK;
  if (tune_failed(b, bad, err)) goto out;
  if (b->rank == 0) {
    printf("# wrote %d rules for %d ranks, %s, %s to %s\n", nrules, b->nranks, coll_transport_name(b->comm),
           coll_dtype_name(b->dtype), path);
    fflush(stdout);
  }
  rc = 0;
out:
  destroy_comms(comms);
  coll_comm_destroy(builtin_comm);
  free(rules);
  coll_mem_free(sbuf);
  coll_mem_free(rbuf);
  return rc;
}
