/* rank_status.c -- the per-rank status record RUN/status/rank-<R> (format and contract in
 * rank_status.h): a memory-mapped text file whose last complete slot survives a SIGKILL. */
#include "rank_status.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define RS_LINE 256                /* bytes per line, '\n' included */
#define RS_FILE_BYTES (3 * RS_LINE) /* two slots and the state line */

int rank_status_on_ = 0;

static struct {
  char *map;            /* RS_FILE_BYTES, MAP_SHARED */
  uint64_t seq;         /* sequence number of the last slot written */
  int rank, stage, replica, pid;
  int64_t step;         /* current 1-based step, 0 before the first */
  int term_installed;   /* our SIGTERM handler is installed */
  int failed;           /* rank_status_end recorded a failure */
  volatile sig_atomic_t ended; /* line 3 holds the final state: the handler leaves it */
  struct sigaction old_term;
} rs;

/* The state line the SIGTERM handler stores (preformatted: no formatting in the handler). */
static char term_line[RS_LINE];

static void fill_line(char *dst, const char *text) {
  size_t n = strlen(text);
  if (n > RS_LINE - 1) n = RS_LINE - 1;
  memcpy(dst, text, n);
  memset(dst + n, ' ', RS_LINE - 1 - n);
  dst[RS_LINE - 1] = '\n';
}

static void on_sigterm(int sig, siginfo_t *info, void *uctx) {
  char *map = rs.map;
  if (map && !rs.ended) /* a plain byte copy: async-signal-safe */
    for (int i = 0; i < RS_LINE; i++) ((volatile char *)map)[2 * RS_LINE + i] = term_line[i];
  if (rs.old_term.sa_flags & SA_SIGINFO) {
    if (rs.old_term.sa_sigaction) {
      rs.old_term.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (rs.old_term.sa_handler != SIG_DFL && rs.old_term.sa_handler != SIG_IGN) {
    rs.old_term.sa_handler(sig);
    return;
  } else if (rs.old_term.sa_handler == SIG_IGN) {
    return;
  }
  signal(sig, SIG_DFL); /* end as SIGTERM would have */
  raise(sig);
}

static const char *op_text(rank_status_op_t op, int j, char *buf, size_t n) {
  switch (op) {
  case RS_STARTUP: return "start-up";
  case RS_STEP: return "step start";
  case RS_PIPE_RECV_ACT:
    snprintf(buf, n, "receive activations of micro-batch %d from stage %d", j, rs.stage - 1);
    return buf;
  case RS_PIPE_FWD: snprintf(buf, n, "forward micro-batch %d", j); return buf;
  case RS_PIPE_SEND_ACT:
    snprintf(buf, n, "send activations of micro-batch %d to stage %d", j, rs.stage + 1);
    return buf;
  case RS_PIPE_RECV_GRAD:
    snprintf(buf, n, "receive gradients of micro-batch %d from stage %d", j, rs.stage + 1);
    return buf;
  case RS_PIPE_BWD: snprintf(buf, n, "backward micro-batch %d", j); return buf;
  case RS_PIPE_SEND_GRAD:
    snprintf(buf, n, "send gradients of micro-batch %d to stage %d", j, rs.stage - 1);
    return buf;
  case RS_ALLREDUCE:
    if (j < 0) return "gradient all-reduce";
    snprintf(buf, n, "gradient all-reduce bucket %d", j);
    return buf;
  case RS_OPTIMIZER: return "optimizer update";
  case RS_REPORT: return "step report gather";
  case RS_EVAL: return "validation";
  case RS_CHECKPOINT: return "checkpoint write";
  case RS_FINISH: return "run report and trace gather";
  default: return "?";
  }
}

void rank_status_set_slow(int64_t step, rank_status_op_t op, int index) {
  if (!rs.map) return;
  if (step >= 0) rs.step = step;
  char opbuf[160], line[RS_LINE + 64];
  unsigned long long seq = ++rs.seq;
  snprintf(line, sizeof line, "%llu|rank %d|stage %d|replica %d|pid %d|step %lld|%s|%llu", seq,
           rs.rank, rs.stage, rs.replica, rs.pid, (long long)rs.step,
           op_text(op, index, opbuf, sizeof opbuf), seq);
  char full[RS_LINE];
  fill_line(full, line);
  /* The older slot: invalidate its first byte, write the rest, then the first byte. A rank
   * killed in between leaves a slot whose two sequence numbers differ (or start with '#'). */
  volatile char *slot = (volatile char *)rs.map + (seq & 1) * RS_LINE;
  slot[0] = '#';
  __asm__ __volatile__("" ::: "memory");
  memcpy((char *)slot + 1, full + 1, RS_LINE - 1);
  __asm__ __volatile__("" ::: "memory");
  slot[0] = full[0];
}

int rank_status_open(const char *run_dir, int rank, int world, int stage, int replica, char *err,
                     size_t errlen) {
  rank_status_close();
  char dir[4200], path[4300];
  snprintf(dir, sizeof dir, "%s/status", run_dir);
  if (strata_mkdirs(dir, err, errlen)) return -1;
  if (rank == 0) /* records of ranks this job does not have, from an earlier wider run */
    for (int r = world; r < 1 << 20; r++) {
      snprintf(path, sizeof path, "%s/rank-%d", dir, r);
      if (unlink(path) != 0) break;
    }
  snprintf(path, sizeof path, "%s/rank-%d", dir, rank);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return strata_fail(err, errlen, "cannot create %s: %s", path, strerror(errno));
  /* allocated, not just sized (ftruncate): a store into a hole of a full disk raises SIGBUS */
  int alloc_err = posix_fallocate(fd, 0, RS_FILE_BYTES);
  if (alloc_err != 0) {
    strata_fail(err, errlen, "cannot size %s: %s", path, strerror(alloc_err));
    unlink(path);
    close(fd);
    return -1;
  }
  void *p = mmap(NULL, RS_FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return strata_fail(err, errlen, "cannot map %s: %s", path, strerror(errno));
  rs.map = p;
  rs.seq = 0;
  rs.rank = rank;
  rs.stage = stage;
  rs.replica = replica;
  rs.pid = (int)getpid();
  rs.step = 0;
  rs.failed = 0;
  rs.ended = 0;
  memset(rs.map, ' ', RS_FILE_BYTES);
  for (int i = 1; i <= 3; i++) rs.map[i * RS_LINE - 1] = '\n';
  rank_status_end("running");
  rank_status_set_slow(0, RS_STARTUP, -1);
  rank_status_set_slow(0, RS_STARTUP, -1); /* both slots valid from the start */
  fill_line(term_line, "state stopped by signal 15");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigterm;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGTERM, &sa, &rs.old_term) == 0) rs.term_installed = 1;
  rank_status_on_ = 1;
  return 0;
}

void rank_status_end(const char *text) {
  if (!rs.map) return;
  char line[RS_LINE + 16];
  snprintf(line, sizeof line, "state %.248s", text);
  for (char *c = line; *c; c++)
    if (*c == '|' || *c == '\n' || *c == '\r') *c = ' ';
  char full[RS_LINE];
  fill_line(full, line);
  if (strcmp(text, "running")) rs.ended = 1;
  if (!strncmp(text, "failed", 6)) rs.failed = 1;
  memcpy(rs.map + 2 * RS_LINE, full, RS_LINE);
}

void rank_status_exit(int rc) {
  if (!rs.map) return;
  if (rc == 0) {
    rank_status_end("done");
  } else if (!rs.failed) {
    char t[64];
    snprintf(t, sizeof t, "failed (exit code %d)", rc);
    rank_status_end(t);
  }
  rank_status_close();
}

void rank_status_close(void) {
  rank_status_on_ = 0;
  if (rs.term_installed) {
    sigaction(SIGTERM, &rs.old_term, NULL);
    rs.term_installed = 0;
  }
  if (rs.map) {
    char *m = rs.map;
    rs.map = NULL;
    munmap(m, RS_FILE_BYTES);
  }
}

/* Copies field `k` (0-based, '|'-separated) of line into out. */
static int field(const char *line, int k, char *out, size_t n) {
  const char *s = line;
  for (int i = 0; i < k; i++) {
    s = strchr(s, '|');
    if (!s) return -1;
    s++;
  }
  const char *e = strchr(s, '|');
  size_t len = e ? (size_t)(e - s) : strlen(s);
  if (len >= n) len = n - 1;
  memcpy(out, s, len);
  out[len] = '\0';
  return 0;
}

int rank_status_read(const char *path, rank_status_record_t *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  FILE *f = strata_fopen_regular(path);
  if (!f) return strata_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
  char buf[RS_FILE_BYTES + 1];
  size_t got = fread(buf, 1, RS_FILE_BYTES, f);
  fclose(f);
  if (got != RS_FILE_BYTES)
    return strata_fail(err, errlen, "%s is %zu bytes, not a %d-byte status record", path, got,
                       RS_FILE_BYTES);
  buf[RS_FILE_BYTES] = '\0';
  unsigned long long best = 0;
  int found = 0;
  for (int s = 0; s < 2; s++) {
    char line[RS_LINE];
    memcpy(line, buf + s * RS_LINE, RS_LINE - 1);
    line[RS_LINE - 1] = '\0';
    for (int i = RS_LINE - 2; i >= 0 && line[i] == ' '; i--) line[i] = '\0';
    char a[32], b[32], f1[32], f2[32], f3[32], f4[32], f5[32], op[160];
    if (field(line, 0, a, sizeof a) || field(line, 7, b, sizeof b) || strcmp(a, b) ||
        a[0] < '0' || a[0] > '9')
      continue;
    unsigned long long seq = strtoull(a, NULL, 10);
    if (found && seq <= best) continue;
    if (field(line, 1, f1, sizeof f1) || field(line, 2, f2, sizeof f2) ||
        field(line, 3, f3, sizeof f3) || field(line, 4, f4, sizeof f4) ||
        field(line, 5, f5, sizeof f5) || field(line, 6, op, sizeof op))
      continue;
    long long step = 0;
    if (sscanf(f1, "rank %d", &o->rank) != 1 || sscanf(f2, "stage %d", &o->stage) != 1 ||
        sscanf(f3, "replica %d", &o->replica) != 1 || sscanf(f4, "pid %d", &o->pid) != 1 ||
        sscanf(f5, "step %lld", &step) != 1)
      continue;
    o->step = step;
    snprintf(o->op, sizeof o->op, "%s", op);
    best = seq;
    found = 1;
  }
  if (!found) return strata_fail(err, errlen, "%s holds no complete status slot", path);
  char st[RS_LINE];
  memcpy(st, buf + 2 * RS_LINE, RS_LINE - 1);
  st[RS_LINE - 1] = '\0';
  for (int i = RS_LINE - 2; i >= 0 && st[i] == ' '; i--) st[i] = '\0';
  if (strncmp(st, "state ", 6))
    return strata_fail(err, errlen, "%s: line 3 is not a 'state ...' line", path);
  snprintf(o->state, sizeof o->state, "%s", st + 6);
  return 0;
}
