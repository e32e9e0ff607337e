/* serve_harness.c -- running `strata serve` under mpirun for the end-to-end tests: a tiny
 * checkpoint, the server's start (its printed port), its captured output, its rank processes,
 * and a bounded stop (see serve_harness.h). */
#include "serve_harness.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "test_util.h"

const char *strata, *work;
char **mpirun;
int nmpi, np;
char ckpt[1024], sdir[1024], self_exe[1024];

/* Runs a shell command, returns its stdout (malloc'd). */
char *run(const char *cmd) {
  FILE *f = popen(cmd, "r");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  size_t k;
  while ((k = fread(b + n, 1, cap - 1 - n, f)) > 0) {
    n += k;
    if (n + 1 >= cap) b = realloc(b, cap *= 2);
  }
  b[n] = 0;
  pclose(f);
  return b;
}

/* Reads a whole file, also a /proc one (whose size reads as 0), NUL-terminated; NULL if it
 * cannot be opened. *len = bytes read. */
char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0, k;
  char *b = malloc(cap + 1);
  while (b && (k = fread(b + n, 1, cap - n, f)) > 0) {
    n += k;
    if (n == cap) b = realloc(b, (cap *= 2) + 1);
  }
  fclose(f);
  if (b) b[n] = '\0';
  if (len) *len = n;
  return b;
}


/* Reads what the server printed for up to wait_s seconds; stops early once `needle` is in the
 * log (NULL: at end of file). Returns 1 if the needle was seen, 0 otherwise. */
int pump(server_t *s, double wait_s, const char *needle) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (needle && s->log && strstr(s->log, needle)) return 1;
    if (s->fd < 0) return 0;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double left = wait_s - ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec));
    if (left <= 0) return 0;
    struct pollfd p = {s->fd, POLLIN, 0};
    if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
    if (s->log_len + 4097 > s->log_cap) {
      s->log_cap = (s->log_cap ? 2 * s->log_cap : 1 << 16) + 4097;
      s->log = realloc(s->log, s->log_cap);
    }
    ssize_t n = read(s->fd, s->log + s->log_len, 4096);
    if (n <= 0) {
      close(s->fd);
      s->fd = -1;
      if (s->log) s->log[s->log_len] = '\0';
      return 0;
    }
    s->log_len += (size_t)n;
    s->log[s->log_len] = '\0';
  }
}

/* Starts `mpirun -np NP [WRAPPER] strata serve ...` with `extra` flags; with exit_prefix, each
 * rank runs under this program's `wrap` mode, which writes the rank's exit code to
 * EXIT_PREFIX.<rank>. Returns once the server printed its port. */
void start(server_t *s, const char *const *extra, const char *exit_prefix) {
  int po[2];
  if (pipe(po)) exit(1);
  memset(s, 0, sizeof *s);
  s->pid = fork();
  if (s->pid == 0) {
    dup2(po[1], 1);
    dup2(po[1], 2);
    close(po[0]);
    close(po[1]);
    char *argv[96];
    int n = 0;
    for (int i = 0; i < nmpi; i++) argv[n++] = mpirun[i];
    char npb[16];
    snprintf(npb, sizeof npb, "%d", np);
    argv[n++] = "-np";
    argv[n++] = npb;
    if (exit_prefix) {
#if defined(__SANITIZE_ADDRESS__)
      /* Sanitized ranks start and stop several times slower: give them 3 s between mpirun's
       * SIGTERM and its SIGKILL instead of the default 1 s (the server scales its drain to it). */
      setenv("OMPI_MCA_odls_base_sigkill_timeout", "3", 1);
#endif
      argv[n++] = self_exe;
      argv[n++] = "wrap";
      argv[n++] = (char *)exit_prefix;
    }
    const char *rest[] = {strata, "serve", "--checkpoint", ckpt, "--listen", "127.0.0.1:0",
                          "--session-dir", sdir, "--max-request-bytes", "8192", NULL};
    for (int i = 0; rest[i]; i++) argv[n++] = (char *)rest[i];
    for (int i = 0; extra && extra[i] && n < 94; i++) argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    execvp(argv[0], argv);
    _exit(127);
  }
  close(po[1]);
  s->fd = po[0];
  const char *key = "listening on http://127.0.0.1:";
  if (pump(s, 180, key)) s->port = atoi(strstr(s->log, key) + strlen(key));
  if (s->port <= 0) {
    fprintf(stderr, "the server did not start; its output:\n%s\n", s->log ? s->log : "");
    CHECK_TRUE(s->port > 0);
    kill(s->pid, SIGKILL);
    exit(test_finish("serve_e2e"));
  }
}

/* Waits (bounded) for mpirun to exit, reading its output to the end; returns the wait status,
 * or -1 after killing a server that did not exit within wait_s. */
int reap(server_t *s, double wait_s) {
  int st = -1;
  for (int i = 0; i < (int)(wait_s * 100); i++) {
    if (s->fd >= 0) pump(s, 0.01, NULL);
    else usleep(10000);
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      pump(s, 10, NULL); /* to end of file */
      if (s->fd >= 0) close(s->fd), s->fd = -1;
      return st;
    }
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, &st, 0);
  if (s->fd >= 0) close(s->fd), s->fd = -1;
  test_fail(__FILE__, __LINE__, "mpirun did not exit within %.0f s", wait_s);
  return -1;
}

/* The PIDs of this test's `strata serve` processes (argv[0] is the strata binary, argv[1] is
 * "serve" and an argument names this test's work directory), by MPI rank; returns how many
 * were found. */
int serve_pids(pid_t *by_rank, int max_rank) {
  for (int r = 0; r < max_rank; r++) by_rank[r] = 0;
  DIR *d = opendir("/proc");
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    size_t len = 0;
    char *cl = slurp(path, &len);
    int match = 0;
    if (cl && len > 0 && !strcmp(cl, strata) && strlen(cl) + 1 < len && !strcmp(cl + strlen(cl) + 1, "serve")) {
      /* the arguments are NUL-separated: look for the work directory in any of them */
      for (size_t k = 0; k < len; k += strlen(cl + k) + 1)
        if (strstr(cl + k, work)) match = 1;
    }
    free(cl);
    if (!match) continue;
    n++;
    snprintf(path, sizeof path, "/proc/%ld/environ", pid);
    char *env = slurp(path, &len);
    for (size_t k = 0; env && k < len; k += strlen(env + k) + 1)
      if (!strncmp(env + k, "OMPI_COMM_WORLD_RANK=", 21)) {
        int r = atoi(env + k + 21);
        if (r >= 0 && r < max_rank) by_rank[r] = (pid_t)pid;
      }
    free(env);
  }
  if (d) closedir(d);
  return n;
}

/* SIGTERM to every rank's process (not mpirun): rank 0 drains and releases the workers, which
 * ignore the signal; mpirun then exits 0 with them. */
void stop(server_t *s) {
  pid_t pids[16];
  CHECK_EQ_INT(serve_pids(pids, 16), np);
  for (int i = 0; i < np; i++) {
    CHECK_TRUE(pids[i] > 0);
    if (pids[i] > 0) kill(pids[i], SIGTERM);
  }
  int st = reap(s, 60);
  CHECK_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  for (int i = 0; i < np; i++) CHECK_TRUE(pids[i] <= 0 || kill(pids[i], 0) != 0); /* gone */
  free(s->log);
  s->log = NULL;
}

long metric(int port, const char *name) {
  http_reply_t r;
  hc_request(port, "GET", "/metrics", NULL, 0, 30, &r);
  long v = -1;
  char key[128];
  snprintf(key, sizeof key, "\n%s ", name);
  const char *p = r.body ? strstr(r.body, key) : NULL;
  if (p) v = atol(p + strlen(key));
  hc_reply_free(&r);
  return v;
}

/* Polls /health until its body contains `want` (bounded); returns 1 when it did. */
int wait_health(int port, const char *want) {
  for (int i = 0; i < 600; i++) {
    http_reply_t r;
    hc_request(port, "GET", "/health", NULL, 0, 30, &r);
    int hit = r.status == 200 && r.body && strstr(r.body, want);
    hc_reply_free(&r);
    if (hit) return 1;
    usleep(50000);
  }
  return 0;
}

/* The state letter of /proc/PID/stat ('T' = stopped), or 0. */
char proc_state(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  size_t len;
  char *st = slurp(path, &len);
  char c = 0;
  const char *p = st ? strrchr(st, ')') : NULL;
  if (p && p[1] == ' ') c = p[2];
  free(st);
  return c;
}

void train_model(const char *model_flags) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && %s train %s --out %s/m >/dev/null 2>&1 && ls -d %s/m/ckpt-*",
           work, work, strata, model_flags, work, work);
  char *o = run(cmd);
  o[strcspn(o, "\n")] = 0;
  snprintf(ckpt, sizeof ckpt, "%s", o);
  free(o);
  snprintf(sdir, sizeof sdir, "%s/sessions", work);
  CHECK_TRUE(ckpt[0]);
  if (!ckpt[0]) exit(test_finish("serve_e2e"));
}

void train_checkpoint(void) { train_model("--layers 4 --dim 32 --heads 2 --ctx 64 --steps 3"); }

int harness_args(int argc, char **argv) {
  if (argc < 6) return -1;
  np = atoi(argv[2]);
  work = argv[3];
  strata = argv[4];
  mpirun = argv + 5;
  nmpi = argc - 5;
  signal(SIGPIPE, SIG_IGN);
  ssize_t k = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
  self_exe[k > 0 ? k : 0] = '\0';
  return 0;
}
