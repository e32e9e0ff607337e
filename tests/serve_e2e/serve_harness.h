/* serve_harness.h -- running `strata serve` under mpirun for the end-to-end tests.
 *
 * The globals say what to run: set strata, work (a scratch directory), mpirun/nmpi (the mpirun
 * command line) and np before start(); train_checkpoint() fills ckpt (a tiny model trained in
 * work) and sdir (work/sessions, the --session-dir start() passes). */
#ifndef STRATA_SERVE_HARNESS_H
#define STRATA_SERVE_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

extern const char *strata, *work; /* the strata binary; the test's scratch directory */
extern char **mpirun;             /* mpirun and its arguments (nmpi words) */
extern int nmpi, np;              /* ... and the ranks start() launches */
extern char ckpt[1024], sdir[1024], self_exe[1024];

/* A server under mpirun: its stdout and stderr (every rank's, forwarded by mpirun) are captured
 * in `log` so the shutdown lines can be checked. */
typedef struct {
  pid_t pid;      /* mpirun */
  int fd;         /* read end of its stdout + stderr */
  char *log;      /* everything read so far, NUL-terminated */
  size_t log_len, log_cap;
  int port;
} server_t;

/* Runs a shell command; its stdout, malloc'd. */
char *run(const char *cmd);
/* Reads a whole file (also a /proc one), NUL-terminated and malloc'd; NULL if it cannot be
 * opened. *len = bytes read. */
char *slurp(const char *path, size_t *len);
/* Reads what the server printed for up to wait_s seconds; stops early once `needle` is in the
 * log (NULL: at end of file). 1 if the needle was seen. */
int pump(server_t *s, double wait_s, const char *needle);
/* Starts `mpirun -np NP [WRAPPER] strata serve --checkpoint ckpt --listen 127.0.0.1:0
 * --session-dir sdir ...` with `extra` flags (NULL-terminated); with exit_prefix each rank runs
 * under self_exe's `wrap` mode. Returns once the server printed its port (fails the test and
 * exits otherwise). */
void start(server_t *s, const char *const *extra, const char *exit_prefix);
/* Waits (bounded) for mpirun to exit, reading its output to the end; the wait status, or -1
 * after killing a server that did not exit within wait_s. */
int reap(server_t *s, double wait_s);
/* The PIDs of this test's `strata serve` processes by MPI rank; how many were found. */
int serve_pids(pid_t *by_rank, int max_rank);
/* SIGTERM to every rank's process: checks that mpirun exits 0 and every rank is gone. */
void stop(server_t *s);
/* A /metrics sample's value (-1 if absent). */
long metric(int port, const char *name);
/* Polls /health until its body contains `want` (bounded); 1 when it did. */
int wait_health(int port, const char *want);
/* The state letter of /proc/PID/stat ('T' = stopped), or 0. */
char proc_state(pid_t pid);
/* Trains a checkpoint with `strata train MODEL_FLAGS` into work/m and sets ckpt and sdir. */
void train_model(const char *model_flags);
/* train_model of the tiny model: 4 layers, width 32, context 64, 3 steps. */
void train_checkpoint(void);
/* Reads the common command line CASE NP WORKDIR STRATA MPIRUN [ARGS...] into the globals (and
 * ignores SIGPIPE, finds self_exe); -1 if it is too short. */
int harness_args(int argc, char **argv);

#endif
