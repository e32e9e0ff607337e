/* `strata serve` as a process: prints the port it chose for --listen 127.0.0.1:0, serves, and
 * exits 0 after SIGTERM or SIGINT; bad input is refused with a message and exit code 2, a port
 * in use with exit code 1. Usage: test_serve_cli PATH/TO/strata */
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

#define WAIT_S 30.0 /* bound on every wait for the child */

static const char *strata;

typedef struct {
  pid_t pid;
  int out_fd, err_fd;
  char out[8192], err[8192];
  size_t out_len, err_len;
} child_t;

static void spawn(child_t *c, const char *const *args) {
  int po[2], pe[2];
  memset(c, 0, sizeof *c);
  if (pipe(po) || pipe(pe)) exit(1);
  c->pid = fork();
  if (c->pid == 0) {
    dup2(po[1], 1);
    dup2(pe[1], 2);
    close(po[0]), close(pe[0]);
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)strata;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    /* In a sanitizer build, Open MPI's MPI_Init/Finalize leaks would turn every exit code into 1;
     * the server's own leaks are checked by the in-process tests (test_serve.c, no MPI). */
    char asan[512];
    const char *prev = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%sdetect_leaks=0", prev ? prev : "", prev && *prev ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    execv(strata, argv);
    _exit(127);
  }
  close(po[1]), close(pe[1]);
  c->out_fd = po[0], c->err_fd = pe[0];
}

/* Reads available output for up to wait_s; stops early once `needle` appears in stdout. */
static void pump(child_t *c, double wait_s, const char *needle) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (needle && strstr(c->out, needle)) return;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double left = wait_s - ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec));
    if (left <= 0) return;
    struct pollfd p[2] = {{c->out_fd, POLLIN, 0}, {c->err_fd, POLLIN, 0}};
    int k = poll(p, 2, (int)(left * 1000) + 1);
    if (k <= 0) return;
    int open_fds = 0;
    for (int i = 0; i < 2; i++) {
      if (p[i].fd < 0) continue;
      char *buf = i ? c->err : c->out;
      size_t *len = i ? &c->err_len : &c->out_len;
      if (p[i].revents & (POLLIN | POLLHUP)) {
        ssize_t n = read(p[i].fd, buf + *len, sizeof c->out - 1 - *len);
        if (n > 0) *len += (size_t)n, buf[*len] = '\0', open_fds++;
      } else {
        open_fds++;
      }
    }
    if (!open_fds) return; /* both closed: the child exited */
  }
}

/* Waits (bounded) for the child to exit; returns its exit code, or -1 (killed after WAIT_S).
 * The bound is wall-clock time: once the child has closed its output, pump returns at once,
 * and the exit itself may come later (under ASan, after the leak check). */
static int reap(child_t *c) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) > WAIT_S) break;
    int st;
    pump(c, 0.01, NULL);
    usleep(1000);
    if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
      pump(c, 0.2, NULL);
      close(c->out_fd), close(c->err_fd);
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
  }
  kill(c->pid, SIGKILL);
  waitpid(c->pid, NULL, 0);
  close(c->out_fd), close(c->err_fd);
  test_fail(__FILE__, __LINE__, "strata serve did not exit within %.0f s", WAIT_S);
  return -1;
}

static void expect_refusal(const char *const *args, int code, const char *needle) {
  child_t c;
  spawn(&c, args);
  int rc = reap(&c);
  CHECK_EQ_INT(rc, code);
  if (!strstr(c.err, needle)) test_fail(__FILE__, __LINE__, "stderr '%s' lacks '%s'", c.err, needle);
}

/* Starts a fake server on a free port, checks it answers, stops it with `sig`. */
static void serve_and_stop(int sig) {
  child_t c;
  const char *args[] = {"serve", "--backend", "fake", "--listen", "127.0.0.1:0", NULL};
  spawn(&c, args);
  pump(&c, WAIT_S, "\n");
  int port = 0;
  const char *p = strstr(c.out, "listening on http://127.0.0.1:");
  CHECK_TRUE(p != NULL);
  if (p) port = atoi(p + strlen("listening on http://127.0.0.1:"));
  CHECK_TRUE(port > 0);
  if (port > 0) {
    http_reply_t r;
    hc_request(port, "GET", "/health", NULL, 0, WAIT_S, &r);
    CHECK_EQ_INT(r.status, 200);
    hc_reply_free(&r);
    const char *b = "{\"prompt\": \"over the wire\", \"max_tokens\": 4}";
    hc_request(port, "POST", "/v1/completions", b, strlen(b), WAIT_S, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_TRUE(r.body && strstr(r.body, "\"completion_tokens\":4"));
    hc_reply_free(&r);
    /* The port is taken: a second server on it is refused. */
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    const char *dup[] = {"serve", "--backend", "fake", "--listen", listen, NULL};
    expect_refusal(dup, 1, "cannot listen on 127.0.0.1");
  }
  kill(c.pid, sig);
  CHECK_EQ_INT(reap(&c), 0);
  CHECK_TRUE(strstr(c.err, "serve: stopped") != NULL);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_serve_cli PATH/TO/strata\n");
    return 2;
  }
  strata = argv[1];
  signal(SIGPIPE, SIG_IGN);
  serve_and_stop(SIGTERM);
  serve_and_stop(SIGINT);
  /* Bad input exits 2 (README), before the engine or the server starts. */
  const char *a1[] = {"serve", "--checkpoint", "/nonexistent-ckpt", NULL};
  expect_refusal(a1, 2, "serve: --checkpoint: checkpoint '/nonexistent-ckpt'");
  const char *a2[] = {"serve", NULL};
  expect_refusal(a2, 2, "--checkpoint DIR is required");
  const char *a3[] = {"serve", "--backend", "fake", "--listen", "example.com:80", NULL};
  expect_refusal(a3, 2, "numeric IPv4 address");
  const char *a4[] = {"serve", "--backend", "fake", "--listen", "127.0.0.1:99999", NULL};
  expect_refusal(a4, 2, "from 0 to 65535");
  const char *a5[] = {"serve", "--backend", "bogus", NULL};
  expect_refusal(a5, 2, "--backend must be engine or fake");
  const char *a6[] = {"serve", "--backend", "fake", "--max-queue", "0", NULL};
  expect_refusal(a6, 2, "serve: --max-queue must be an integer in [1, 1000000], got '0'");
  const char *a7[] = {"serve", "--max-tokens-limit", "lots", NULL};
  expect_refusal(a7, 2, "--max-tokens-limit must be an integer in [1, 1000000], got 'lots'");
  return test_finish("serve_cli");
}
