/* strata -- the command-line entry point. Checks the numeric environment variables, then
 * dispatches to a subcommand (cmd_*.c), which starts MPI (cli_mpi_start) only once its flags
 * check out: `strata --help`, `strata CMD --help` and every bad flag or variable answer at once,
 * without MPI start-up, with exit code 2. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata/coll.h"
#include "commands.h"
#include "device.h"
#include "env.h"
#include "gemm.h"
#include "log.h"
#include "rank_status.h"
#include "strata/strnum.h"

#ifndef STRATA_VERSION
#error "STRATA_VERSION must be defined by the build (project VERSION in CMakeLists.txt)"
#endif

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command_t;

static const command_t commands[] = {
    {"train", cmd_train, "train the model (mpirun -np N: pipeline and data parallel)"},
    {"eval", cmd_eval, "mean cross-entropy of a checkpoint on a data file"},
    {"bench", cmd_bench, "measure collectives the way nccl-tests does (allreduce, reducescatter, ...)"},
    {"simulate", cmd_simulate, "predict a job's step time and memory on simulated accelerators"},
    {"infer", cmd_infer, "generate text from a checkpoint, layers sharded over the ranks; sessions"},
    {"serve", cmd_serve, "serve completions over HTTP (OpenAI-compatible subset; --backend fake for tests)"},
    {"tokenize", cmd_tokenize, "turn text into GPT-2 BPE token shards for train --data; --ids, --decode"},
    {"report", cmd_report, "summarise a training run directory (layout, loss, throughput, breakdown; --plot PNGs)"},
};
static const int num_commands = (int)(sizeof commands / sizeof commands[0]);

/* Seconds a rank that found bad input (exit code 2) waits for the others before aborting. */
#define STRATA_EXIT_AGREE_S 10.0

/* The job's exit code, agreed by the ranks that end normally: each brings its own, 0 or 2, and
 * the largest wins, so bad input found by one rank (rank 0 reading the results, say) ends every
 * rank with 2, cleanly and without an MPI_Abort banner. A rank that ends with 0 waits for the
 * others as MPI_Finalize would; one that ends with 2 waits at most timeout_s (another rank may
 * still be working, or be failing differently). Returns the agreed code, or -1: abort. */
static int agree_exit_code(int rc, double timeout_s) {
  int mine = rc, agreed = rc;
  MPI_Request req;
  if (MPI_Iallreduce(&mine, &agreed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &req) != MPI_SUCCESS) return -1;
  double deadline = MPI_Wtime() + timeout_s;
  int done = 0;
  while (!done && (rc == 0 || MPI_Wtime() < deadline)) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (!done) usleep(1000);
  }
  return done ? agreed : -1;
}

/* Seconds a failing rank waits before aborting the job (STRATA_ABORT_GRACE_S, default 2; its
 * value was checked at start-up). */
static double abort_grace_s(void) {
  double s;
  env_read_double("STRATA_ABORT_GRACE_S", 2.0, &s, NULL, 0);
  return s;
}

static int mpi_started; /* cli_mpi_start ran */

/* Is this process other than the first of its job? Known before MPI starts from the launcher's
 * environment (mpirun, srun, hydra); 0 outside a job. */
static int later_process_of_job(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    int64_t r;
    const char *v = getenv(vars[i]);
    if (v && strnum_parse_int64(v, &r) == STRNUM_OK) return r > 0 ? 1 : 0;
  }
  return 0;
}

int cli_mpi_start(void) {
  if (mpi_started) return 0;
  int provided = 0;
  if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
    strata_error("MPI_Init_thread failed; run under mpirun (or alone) with a working Open MPI");
    return 1;
  }
  mpi_started = 1;
  strata_log_mute(0);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  strata_log_set_rank(rank);
  return 0;
}

static void sleep_s(double s) {
  if (s > 0) usleep((useconds_t)(s * 1e6));
}

static void usage(FILE *f) {
  fprintf(f,
          "strata " STRATA_VERSION "\n"
          "usage: strata COMMAND [flags]        (multi-rank: mpirun -np N strata COMMAND ...)\n\n"
          "Strata trains and serves a GPT-2-style transformer across MPI ranks, each a simulated\n"
          "accelerator node.\n\ncommands:\n");
  for (int i = 0; i < num_commands; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n`strata COMMAND --help` describes a command's flags; `strata help env` (or `strata --env`)\n"
             "lists the numeric environment variables; `strata --version` (or `strata version`) prints\n"
             "the version. Exit codes: 0 success, 2 bad input (flags, environment variables,\n"
             "configuration, data, checkpoints, sessions), 1 any other failure.\n");
}

static int asks_for_help(int argc, char **argv) {
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

/* Every numeric variable of the worker (worker/base/env.c) and of the collectives (collectives/core/comm.c)
 * that is set must be valid: 0, or -1 after printing the first bad one. */
static int check_environment(void) {
  char err[512];
  if (env_check_all(err, sizeof err)) {
    strata_error("%s", err);
    return -1;
  }
  coll_config_t cfg = coll_config_default();
  if (cfg.env_error) {
    strata_error("%s", cfg.env_error);
    return -1;
  }
  return 0;
}

/* The cpu profile's calibration times the GEMM the model runs (device.h). */
static void model_matmul(int M, int N, int K, const float *a, const float *b, float *c) {
  gemm_f32(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
}

int main(int argc, char **argv) {
  device_set_matmul(model_matmul);
  if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) {
    printf("strata %s\n", STRATA_VERSION);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "--env")) {
    env_print_help(stdout);
    return 0;
  }
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    if (argc >= 3 && !strcmp(argv[1], "help") && !strcmp(argv[2], "env")) {
      env_print_help(stdout);
      return 0;
    }
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const command_t *cmd = NULL;
  for (int i = 0; i < num_commands; i++)
    if (!strcmp(argv[1], commands[i].name)) cmd = &commands[i];
  if (!cmd) {
    strata_error("unknown command '%s' (see strata --help)", argv[1]);
    return 2;
  }
  /* Until MPI starts, only the first process of a job reports: every rank refuses the same
   * flags and variables, and the message should appear once. */
  strata_log_mute(later_process_of_job());
  if (!asks_for_help(argc, argv) && check_environment()) return 2;
  int rc = cmd->run(argc - 1, argv + 1);
  rank_status_exit(rc); /* RUN/status/rank-R (train): done, or failed; before any abort */
  if (!mpi_started) return rc; /* refused before MPI start-up, or a command without MPI */
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int agreed = size > 1 && (rc == 0 || rc == 2) ? agree_exit_code(rc, STRATA_EXIT_AGREE_S) : rc;
  if (agreed < 0 || (rc != 0 && rc != 2 && size > 1)) {
    /* A failing rank must not leave the others waiting in a collective: abort the job with
     * the exit code (the failing rank has already printed why). First give the other ranks a
     * moment to report too: when a rank hangs, its neighbours time out at about the same time,
     * and the one that names the hung rank may not be the first to give up. */
    if (rc != 2) sleep_s(abort_grace_s());
    MPI_Abort(MPI_COMM_WORLD, rc);
  }
  rc = agreed;
  MPI_Finalize();
  return rc;
}
