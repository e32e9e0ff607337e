/* infer_ttft_bench -- a benchmark (built with the tests, never run by ctest): time to first
 * token of a follow-up turn at a long context, through the engine API the server uses.
 *   session/memory: turn 1 (HISTORY tokens) then turn 2 (NEW tokens) of a session in the same
 *                   engine, so turn 2 reuses the KV cache resident in memory;
 *   session/disk:   the same after the session was evicted from memory (reload from its files);
 *   stateless:      the whole history + NEW tokens as one request.
 * TTFT is measured from infer_submit to the first token callback (the engine loop runs only
 * this request). Prints the median of REPS of each.
 * usage: mpirun -np P infer_ttft_bench CHECKPOINT SESSION_DIR [HISTORY=980] [NEW=20] [REPS=5] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strata/coll.h"
#include "infer.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double t_first;
static void on_token(void *ctx, uint64_t id, int32_t t) {
  if (t_first == 0) t_first = now_s();
}
static void on_done(void *ctx, uint64_t id, const infer_result_t *r) {
  if (!r->ok) fprintf(stderr, "request failed: %s\n", r->error);
}

static double ttft(infer_engine_t *e, const int32_t *tok, int n, const char *session) {
  infer_request_t r = {tok, n, 1, {0, 0, 1.0, 1}, session};
  char err[512];
  t_first = 0;
  double t0 = now_s();
  if (infer_submit(e, &r, on_token, on_done, NULL, NULL, err, sizeof err)) {
    fprintf(stderr, "submit: %s\n", err);
    return -1;
  }
  while (!infer_engine_idle(e))
    if (infer_engine_step(e)) return -1;
  return t_first - t0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int provided, rank;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (argc < 3) {
    if (!rank) fprintf(stderr, "usage: %s CHECKPOINT SESSION_DIR [HISTORY] [NEW] [REPS]\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  int H = argc > 3 ? atoi(argv[3]) : 980, N = argc > 4 ? atoi(argv[4]) : 20, R = argc > 5 ? atoi(argv[5]) : 5;
  coll_config_t cc = coll_config_default();
  coll_comm_t *comm;
  coll_comm_create(MPI_COMM_WORLD, &cc, &comm);
  infer_opts_t o = infer_opts_default();
  o.session_dir = argv[2];
  char err[1024];
  double *mem = calloc(R, sizeof(double)), *disk = calloc(R, sizeof(double)), *sl = calloc(R, sizeof(double));
  int32_t *tok = NULL;
  /* pass 0: turn 1 + in-memory follow-up, stateless, and turn 1 of the sessions for pass 1;
   * pass 1: a new engine (memory empty) continues those sessions from disk */
  for (int pass = 0; pass < 2; pass++) {
    infer_engine_t *e;
    if (infer_engine_create(argv[1], comm, &o, &e, err, sizeof err)) {
      fprintf(stderr, "engine: %s\n", err);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank != 0) {
      infer_worker_loop(e);
      infer_engine_shutdown(e);
      continue;
    }
    int V = infer_engine_config(e)->vocab;
    if (!tok) {
      tok = malloc(sizeof(int32_t) * (H + N + 1));
      srand(1);
      for (int i = 0; i < H + N + 1; i++) tok[i] = rand() % V;
    }
    for (int r = 0; r < R; r++) {
      char id[32], idd[32];
      snprintf(id, sizeof id, "bench%d", r);
      snprintf(idd, sizeof idd, "benchd%d", r);
      if (pass == 0) {
        infer_session_delete(e, id, err, sizeof err);
        infer_session_delete(e, idd, err, sizeof err);
        ttft(e, tok, H, id); /* turn 1: the history (generates 1 token) */
        mem[r] = ttft(e, tok + H, N, id);
        ttft(e, tok, H, idd);
        sl[r] = ttft(e, tok, H + N + 1, NULL);
      } else {
        disk[r] = ttft(e, tok + H, N, idd);
        infer_session_delete(e, id, err, sizeof err);
        infer_session_delete(e, idd, err, sizeof err);
      }
    }
    infer_engine_shutdown(e);
  }
  if (rank == 0) {
    qsort(mem, R, sizeof(double), cmp_d);
    qsort(disk, R, sizeof(double), cmp_d);
    qsort(sl, R, sizeof(double), cmp_d);
    int P;
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    printf("P=%d context %d+%d: ttft median of %d: session/memory %.6f s, session/disk %.6f s, "
           "stateless %.6f s; speedup memory %.1fx, disk %.1fx\n",
           P, H + 1, N, R, mem[R / 2], disk[R / 2], sl[R / 2], sl[R / 2] / mem[R / 2], sl[R / 2] / disk[R / 2]);
  }
  free(tok);
  free(mem);
  free(disk);
  free(sl);
  coll_comm_destroy(comm);
  MPI_Finalize();
  return 0;
}
