/* coll_tune.c -- `strata bench allreduce --tune` (see coll_tune.h). */
#include "coll_tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define TUNE_ROUNDS 3
#define TUNE_ROUND_S 0.02 /* a round of one candidate lasts about this long at most */
#define TUNE_MIN_ITERS 2
#define TUNE_MAX_CANDIDATES 16

static const size_t tune_chunks[] = {256u << 10, 512u << 10, 1u << 20, 2u << 20};
#define TUNE_NCHUNKS ((int)(sizeof tune_chunks / sizeof tune_chunks[0]))

typedef struct {
  coll_algo_t algo;
  size_t chunk_bytes; /* 0 for rd and mpi */
  coll_comm_t *comm;  /* a communicator with this chunk size (shared by ring and rabenseifner) */
} candidate_t;

/* 1 when any rank failed; the failing rank says what failed. */
static int tune_failed(const coll_bench_t *b, int bad, const char *msg) {
  if (!b->rt.max_int(b->rt.ctx, bad)) return 0;
  if (bad) strata_error("bench --tune: %s", msg);
  return 1;
}

/* Mean seconds of one all-reduce over `iters` runs, max over ranks (-1 on a failure). */
static double time_runs(const coll_bench_t *b, const candidate_t *c, char *sbuf, char *rbuf,
                        size_t count, int inplace, int iters) {
  coll_result_t rc = COLL_OK;
  b->rt.barrier(b->rt.ctx);
  double t0 = strata_now_s();
  for (int i = 0; i < iters && rc == COLL_OK; i++)
    rc = coll_allreduce_algo(inplace ? rbuf : sbuf, rbuf, count, b->dtype, b->redop, c->algo, c->comm);
  double mine = (strata_now_s() - t0) / iters;
  if (tune_failed(b, rc != COLL_OK, coll_last_error(c->comm))) return -1;
  return b->rt.max_f64(b->rt.ctx, mine);
}

/* The candidates worth measuring at `bytes` (see coll_tune.h). */
static int candidates_at(size_t bytes, candidate_t *all, int nall, candidate_t *out) {
  int n = 0;
  for (int i = 0; i < nall; i++) {
    const candidate_t *c = &all[i];
    if (c->algo == COLL_ALGO_RD && bytes > COLL_TUNE_RD_MAX_BYTES) continue;
    if (c->chunk_bytes > tune_chunks[0] && c->chunk_bytes / 2 >= bytes) continue; /* same as a smaller chunk */
    out[n++] = *c;
  }
  return n;
}

/* The fastest candidate at `bytes` (out-of-place plus in-place time) into *best with its time;
 * also the times of MPI_Allreduce and of what the built-in rules pick (the candidate like
 * `builtin`), for the printed ratios, and the fastest out of place and in place alone (by_place,
 * which a single rule per size has to trade off). 0, or -1 on a failure. */
static int tune_size(const coll_bench_t *b, candidate_t *all, int nall, char *sbuf, char *rbuf,
                     size_t bytes, const candidate_t *builtin, candidate_t *best, double us[3],
                     candidate_t by_place[2]) {
  candidate_t cs[TUNE_MAX_CANDIDATES];
  int n = candidates_at(bytes, all, nall, cs), iters[TUNE_MAX_CANDIDATES];
  double t[TUNE_MAX_CANDIDATES], tp[TUNE_MAX_CANDIDATES][2];
  size_t count = bytes / coll_dtype_size(b->dtype);
  for (int i = 0; i < n; i++) { /* warm-up; its time sets the iterations of a round */
    double w = 0;
    for (int ip = 0; ip < 2; ip++) {
      double s = time_runs(b, &cs[i], sbuf, rbuf, count, ip, 1);
      if (s < 0) return -1;
      w += s;
    }
    int k = w > 0 ? (int)(TUNE_ROUND_S / w) : b->iters;
    iters[i] = k < TUNE_MIN_ITERS ? TUNE_MIN_ITERS : k > b->iters ? b->iters : k;
    t[i] = tp[i][0] = tp[i][1] = -1;
  }
  for (int round = 0; round < TUNE_ROUNDS; round++)
    for (int i = 0; i < n; i++) {
      double sum = 0;
      for (int ip = 0; ip < 2; ip++) {
        double s = time_runs(b, &cs[i], sbuf, rbuf, count, ip, iters[i]);
        if (s < 0) return -1;
        sum += s;
        if (tp[i][ip] < 0 || s < tp[i][ip]) tp[i][ip] = s;
      }
      if (t[i] < 0 || sum < t[i]) t[i] = sum;
    }
  int bi = 0, bp[2] = {0, 0};
  for (int i = 1; i < n; i++) {
    if (t[i] < t[bi]) bi = i;
    for (int ip = 0; ip < 2; ip++)
      if (tp[i][ip] < tp[bp[ip]][ip]) bp[ip] = i;
  }
  *best = cs[bi];
  by_place[0] = cs[bp[0]];
  by_place[1] = cs[bp[1]];
  us[0] = t[bi] * 1e6;
  us[1] = us[2] = -1;
  for (int i = 0; i < n; i++) {
    if (cs[i].algo == COLL_ALGO_MPI) us[1] = t[i] * 1e6;
    if (cs[i].algo == builtin->algo && cs[i].chunk_bytes == builtin->chunk_bytes) us[2] = t[i] * 1e6;
  }
  return 0;
}

/* The communicators of the candidates: one per chunk size, without a decision table. */
static int make_candidates(const coll_bench_t *b, const coll_config_t *cfg, candidate_t *all, int *nall) {
  int n = 0;
  coll_config_t c = *cfg;
  c.tune_file = "off";
  c.algo = COLL_ALGO_AUTO;
  MPI_Comm mpi = coll_mpi_comm(b->comm);
  coll_comm_t *comms[TUNE_NCHUNKS] = {NULL};
  int bad = 0;
  for (int k = 0; k < TUNE_NCHUNKS && !bad; k++) {
    c.chunk_bytes = tune_chunks[k];
    bad = coll_comm_create(mpi, &c, &comms[k]) != COLL_OK; /* says why on stderr */
    if (b->rt.max_int(b->rt.ctx, bad)) {
      for (int j = 0; j <= k; j++) coll_comm_destroy(comms[j]);
      if (b->rank == 0) strata_error("bench --tune: cannot create the candidates' communicators");
      return -1;
    }
  }
  all[n++] = (candidate_t){COLL_ALGO_RD, 0, comms[1]};
  all[n++] = (candidate_t){COLL_ALGO_MPI, 0, comms[1]};
  for (int k = 0; k < TUNE_NCHUNKS; k++) {
    all[n++] = (candidate_t){COLL_ALGO_RING, tune_chunks[k], comms[k]};
    all[n++] = (candidate_t){COLL_ALGO_RABENSEIFNER, tune_chunks[k], comms[k]};
  }
  *nall = n;
  return 0;
}

static size_t tune_next_size(const coll_bench_t *b, size_t size, size_t unit) {
  double next = size == 0 ? (double)unit : (double)size * b->factor;
  size_t s = next >= (double)b->maxbytes ? b->maxbytes : (size_t)next;
  return s <= size ? size + 1 : s;
}

int coll_tune_run(const coll_bench_t *b, const coll_config_t *cfg, const char *path) {
  candidate_t all[2 + 2 * TUNE_NCHUNKS];
  int nall = 0, rc = -1, nrules = 0, cap = 0;
  coll_tune_rule_t *rules = NULL;
  size_t unit = coll_dtype_size(b->dtype), maxr = b->maxbytes - b->maxbytes % unit;
  size_t alloc = maxr > 64 ? maxr : 64;
  char *sbuf = coll_mem_alloc(alloc), *rbuf = coll_mem_alloc(alloc);
  if (tune_failed(b, !sbuf || !rbuf, "cannot allocate the two buffers of --maxbytes; lower it")) goto out;
  memset(sbuf, 0, alloc); /* zeros stay zeros through repeated in-place sums */
  memset(rbuf, 0, alloc);
  if (make_candidates(b, cfg, all, &nall)) goto out;
  if (b->rank == 0) {
    printf("# strata bench allreduce --tune: ranks %d transport %s dtype %s op %s sizes %zu..%zu B, "
           "%d candidates (rd, mpi, ring and rabenseifner x chunks 256K-2M)\n",
           b->nranks, coll_transport_name(b->comm), coll_dtype_name(b->dtype), coll_op_name(b->redop),
           b->minbytes, b->maxbytes, nall);
    printf("# time: out of place + in place; ratios: the fastest's speed over MPI_Allreduce's and over "
           "the built-in rules' choice; then the fastest out of place alone and in place alone (algo/chunk)\n");
    printf("# %10s  %-13s %10s  %10s  %8s  %11s  %-18s  %s\n", "size (B)", "algo", "chunk (B)", "time (us)",
           "vs mpi", "vs built-in", "out of place", "in place");
    fflush(stdout);
  }
  size_t prev = (size_t)-1, dflt_chunk = coll_comm_config(b->comm)->chunk_bytes;
  for (size_t size = b->minbytes;; size = tune_next_size(b, size, unit)) {
    size_t s = size - size % unit;
    if (s && s != prev) {
      candidate_t best, builtin = {COLL_ALGO_RING, 0, NULL};
      size_t bchunk = 0;
      for (int i = 0; i < nall; i++) /* the communicator with the transport's default chunk */
        if (all[i].algo == COLL_ALGO_RING && all[i].chunk_bytes == dflt_chunk) {
          builtin.algo = coll_allreduce_auto_choice(all[i].comm, s, b->dtype, &bchunk);
          builtin.chunk_bytes = builtin.algo == COLL_ALGO_RING || builtin.algo == COLL_ALGO_RABENSEIFNER ? bchunk : 0;
        }
      double us[3];
      candidate_t by_place[2];
      if (tune_size(b, all, nall, sbuf, rbuf, s, &builtin, &best, us, by_place)) goto out;
      if (b->rank == 0) {
        char place[2][32];
        for (int ip = 0; ip < 2; ip++) /* ring/512K, or rd */
          snprintf(place[ip], sizeof place[ip], by_place[ip].chunk_bytes ? "%s/%zuK" : "%s",
                   coll_algo_name(by_place[ip].algo), by_place[ip].chunk_bytes >> 10);
        printf("  %10zu  %-13s %10zu  %10.2f  %8.2f  %11.2f  %-18s  %s\n", s, coll_algo_name(best.algo),
               best.chunk_bytes, us[0], us[1] > 0 ? us[1] / us[0] : 0.0, us[2] > 0 ? us[2] / us[0] : 0.0,
               place[0], place[1]);
        fflush(stdout);
      }
      int same = nrules && rules[nrules - 1].algo == best.algo && rules[nrules - 1].chunk_bytes == best.chunk_bytes;
      if (!same) {
        if (nrules == cap) {
          cap = cap ? 2 * cap : 32;
          coll_tune_rule_t *g = realloc(rules, (size_t)cap * sizeof *rules);
          if (!g) {
            strata_error("bench --tune: out of memory for the rules");
            goto out; /* every rank grows the same array, so all fail alike */
          }
          rules = g;
        }
        coll_tune_rule_t *r = &rules[nrules++];
        memset(r, 0, sizeof *r);
        r->ranks = b->nranks;
        snprintf(r->transport, sizeof r->transport, "%s", coll_transport_name(b->comm));
        r->dtype = b->dtype;
        r->from_bytes = nrules == 1 ? 0 : s;
        r->algo = best.algo;
        r->chunk_bytes = best.chunk_bytes;
      }
    }
    prev = s;
    if (size >= b->maxbytes) break;
  }
  char err[512] = "";
  int bad = b->rank == 0 && coll_tune_save(path, rules, nrules, err, sizeof err) != COLL_OK;
  if (tune_failed(b, bad, err)) goto out;
  if (b->rank == 0) {
    printf("# wrote %d rules for %d ranks, %s, %s to %s\n", nrules, b->nranks, coll_transport_name(b->comm),
           coll_dtype_name(b->dtype), path);
    fflush(stdout);
  }
  rc = 0;
out:
  for (int k = 0; k < TUNE_NCHUNKS && nall; k++) coll_comm_destroy(all[2 + 2 * k].comm);
  free(rules);
  coll_mem_free(sbuf);
  coll_mem_free(rbuf);
  return rc;
}
