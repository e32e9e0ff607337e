/* fault.c -- fault injection driven by STRATA_FAULT (see fault.h for the syntax).
 *
 * Hooks (fault_point) sit at step boundaries in train_dist.c, inside the gradient all-reduce
 * wait (grad_sync.c), inside pipeline receives (pipeline.c) and in checkpoint writing
 * (checkpoint.c, run by the background writer of ckpt_async.c with asynchronous checkpoints:
 * fault_set_thread_step gives that thread the checkpoint's step). The environment is read
 * lazily on the first hook: until then fault_armed_
 * is 1 so that the first call parses; afterwards it is 1 only if a valid fault targets this
 * process's rank or host. A host-scoped kill also kills the host's other ranks of the job
 * (kill_host_peers below).
 */
#define _POSIX_C_SOURCE 200809L
#include "fault.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "log.h"
#include "rank_status.h"
#include "util.h"

int fault_armed_ = 1; /* first call parses STRATA_FAULT */

static int parsed;
static fault_spec_t spec;
static _Thread_local int64_t cur_step = -1; /* per thread: a background checkpoint writer has its own */
int64_t fault_step_ = -1;

static const char *site_names[] = {"step", "allreduce", "recv", "checkpoint", "commit", "session_save"};
#define N_SITES ((int)(sizeof site_names / sizeof site_names[0]))
static const char *action_names[] = {"kill", "hang", "exit"};

int fault_parse(const char *s, fault_spec_t *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->step = -1;
  o->code = 1;
  o->attempt = -1;
  char buf[256];
  if (!s || strlen(s) >= sizeof buf)
    return strata_fail(err, errlen, "STRATA_FAULT is empty or too long");
  strcpy(buf, s);
  char *save = NULL;
  char *tok = strtok_r(buf, ":", &save);
  if (!tok)
    return strata_fail(err, errlen, "STRATA_FAULT is empty; expected ACTION:rank=R:step=S[:op=OP]");
  o->action = -1;
  for (int i = 0; i < 3; i++)
    if (!strcmp(tok, action_names[i])) o->action = i;
  if (o->action < 0)
    return strata_fail(err, errlen, "STRATA_FAULT action '%s' unknown; use kill, hang or exit", tok);
  while ((tok = strtok_r(NULL, ":", &save))) {
    char *eq = strchr(tok, '=');
    if (!eq)
      return strata_fail(err, errlen, "STRATA_FAULT field '%s' is not key=value", tok);
    *eq = '\0';
    const char *k = tok, *v = eq + 1;
    char *end = NULL;
    if (!strcmp(k, "rank") || !strcmp(k, "step") || !strcmp(k, "code") || !strcmp(k, "attempt")) {
      long long x = strtoll(v, &end, 10);
      if (!*v || *end || x < 0 || x > 1000000000LL)
        return strata_fail(err, errlen, "STRATA_FAULT %s='%s' is not a non-negative integer", k, v);
      if (k[0] == 'r') o->rank = (int)x;
      else if (k[0] == 's') o->step = x;
      else if (k[0] == 'a') o->attempt = (int)x;
      else o->code = (int)x;
    } else if (!strcmp(k, "host")) {
      if (!*v || strlen(v) >= sizeof o->host)
        return strata_fail(err, errlen, "STRATA_FAULT host='%s' is not a host name (1-%zu characters)", v,
                           sizeof o->host - 1);
      strcpy(o->host, v);
    } else if (!strcmp(k, "op") || !strcmp(k, "during")) {
      int f = -1;
      for (int i = 0; i < N_SITES; i++)
        if (!strcmp(v, site_names[i])) f = i;
      if (f < 0)
        return strata_fail(err, errlen, "STRATA_FAULT %s='%s' unknown; use step, allreduce, recv, checkpoint, "
                           "commit or session_save", k, v);
      o->site = (fault_site_t)f;
    } else {
      return strata_fail(err, errlen, "STRATA_FAULT key '%s' unknown; use rank, host, step, op, during, code, attempt", k);
    }
  }
  return 0;
}

static void parse_env(void) {
  parsed = 1;
  fault_armed_ = 0;
  const char *s = getenv("STRATA_FAULT");
  if (!s || !*s) return;
  char err[256];
  if (fault_parse(s, &spec, err, sizeof err)) {
    strata_warn("%s; no fault injected", err);
    return;
  }
  if (spec.host[0]) {
    char me[256] = "";
    if (gethostname(me, sizeof me - 1) || strcmp(me, spec.host)) return;
  } else if (spec.rank != strata_log_rank()) {
    return;
  }
  if (spec.attempt >= 0) { /* only in that launch of the job (launch/strata-run's restarts) */
    int64_t a;
    char aerr[256];
    if (env_read_int("STRATA_ATTEMPT", 0, &a, aerr, sizeof aerr)) {
      strata_warn("%s; no fault injected", aerr);
      return;
    }
    if (a != spec.attempt) return;
  }
  fault_armed_ = 1;
}

void fault_set_thread_step(int64_t step) { cur_step = step; }

/* Host-scoped kill: the first rank of the host to reach the fault point SIGKILLs the other ranks
 * of this job on this host, then itself, so the host's ranks die together as in a real node loss
 * (killing only itself lets the launcher stop its node-local peers, by SIGTERM, before they reach
 * the point, and the job looks like one dead rank). The peers are found in /proc when the kill
 * fires, not registered beforehand: nothing to clean up after SIGKILL, no file in /tmp, and no
 * window in which a peer that has not yet reached its first fault point is missed. worker/base
 * uses libc only, so MPI cannot name the node-local ranks. A process is a peer when it runs the
 * same executable, in the same UTS namespace (the same host name: the namespace cluster's nodes
 * share one PID namespace, each with its own UTS namespace), with the same STRATA_FAULT and the
 * same values of the launcher's per-launch variables below (one mpirun, or one srun step: a
 * relaunch is another job). Without any of those variables there is no job to find peers in. */
static const char *job_vars[] = {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "SLURM_JOB_ID", "SLURM_STEP_ID"};
#define N_JOB_VARS ((int)(sizeof job_vars / sizeof job_vars[0]))
#define ENVIRON_MAX_BYTES (1 << 20) /* a process with a larger environment is not taken for a peer */

/* Reads /proc/PID/environ ("self" for this process) into a malloc'd buffer of NUL-terminated
 * "NAME=value" strings; 0 and *len, or -1 (gone, another user's, unreadable). */
static int read_environ(const char *pid, char **buf, size_t *len) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%s/environ", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t cap = 16384, n = 0;
  char *b = malloc(cap + 1);
  int rc = -1;
  if (!b) goto close_fd;
  for (;;) {
    if (n == cap) {
      char *nb = cap >= ENVIRON_MAX_BYTES ? NULL : realloc(b, 2 * cap + 1);
      if (!nb) goto free_buf;
      b = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, b + n, cap - n);
    if (r < 0) goto free_buf;
    if (r == 0) break;
    n += (size_t)r;
  }
  b[n] = '\0'; /* the last string is terminated even if the file's was not */
  *buf = b;
  *len = n;
  rc = 0;
  goto close_fd;
free_buf:
  free(b);
close_fd:
  close(fd);
  return rc;
}

/* The value of NAME in an environ buffer, or NULL. */
static const char *environ_get(const char *buf, size_t len, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
    if (!strncmp(buf + i, name, nl) && buf[i + nl] == '=') return buf + i + nl + 1;
  return NULL;
}

/* The same file (st_dev, st_ino) as `mine`: for /proc/PID/exe and /proc/PID/ns/uts. */
static int same_file(const char *pid, const char *what, const struct stat *mine) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%s/%s", pid, what);
  return !stat(path, &st) && st.st_dev == mine->st_dev && st.st_ino == mine->st_ino;
}

/* SIGKILLs the other ranks of this job on this host; returns how many. */
static int kill_host_peers(void) {
  char *mine = NULL, *theirs = NULL;
  size_t mine_len = 0, theirs_len = 0;
  struct stat exe, uts;
  int killed = 0, keyed = 0;
  DIR *proc = NULL;
  struct dirent *e;
  pid_t self = getpid();
  if (read_environ("self", &mine, &mine_len)) return 0;
  for (int v = 0; v < N_JOB_VARS; v++) keyed |= environ_get(mine, mine_len, job_vars[v]) != NULL;
  if (!keyed || stat("/proc/self/exe", &exe) || stat("/proc/self/ns/uts", &uts)) goto free_mine;
  proc = opendir("/proc");
  if (!proc) goto free_mine;
  while ((e = readdir(proc))) {
    char *end = NULL;
    long pid = strtol(e->d_name, &end, 10);
    if (!e->d_name[0] || *end || pid <= 0 || pid == (long)self) continue;
    if (!same_file(e->d_name, "exe", &exe) || !same_file(e->d_name, "ns/uts", &uts)) continue;
    if (read_environ(e->d_name, &theirs, &theirs_len)) continue;
    int same = 1;
    for (int v = 0; v <= N_JOB_VARS && same; v++) { /* the job's variables, then STRATA_FAULT */
      const char *name = v < N_JOB_VARS ? job_vars[v] : "STRATA_FAULT";
      const char *a = environ_get(mine, mine_len, name);
      const char *b = environ_get(theirs, theirs_len, name);
      same = (!a && !b) || (a && b && !strcmp(a, b));
    }
    free(theirs);
    if (same && !kill((pid_t)pid, SIGKILL)) killed++;
  }
  closedir(proc);
free_mine:
  free(mine);
  return killed;
}

void fault_report_failure(const char *what, const char *msg) {
  char text[1200];
  if (fault_step_ < 0)
    snprintf(text, sizeof text, "%s: rank %d: before the first step: %s", what, strata_log_rank(), msg);
  else
    snprintf(text, sizeof text, "%s: rank %d: step %lld: %s", what, strata_log_rank(),
             (long long)fault_step_, msg);
  strata_error("%s", text);
  char state[1300];
  snprintf(state, sizeof state, "failed: %s", msg);
  rank_status_end(state); /* RUN/status/rank-R: the operation is already in the record */
}

void fault_point_slow(fault_site_t site, int64_t step) {
  if (!parsed) {
    parse_env();
    if (!fault_armed_) return;
  }
  if (site == FAULT_AT_STEP && step >= 0) cur_step = step;
  if (step < 0) step = cur_step;
  if (site != spec.site) return;
  if (spec.step >= 0 && step != spec.step) return;
  fault_armed_ = 0; /* fire once */
  fprintf(stderr, "[rank %d] fault: injecting %s at step %lld in %s (STRATA_FAULT)\n",
          strata_log_rank(), action_names[spec.action], (long long)step, site_names[site]);
  fflush(stderr);
  if (spec.action == 0) {
    if (spec.host[0]) {
      int n = kill_host_peers();
      fprintf(stderr, "[rank %d] fault: killed %d other rank(s) of this job on host %s, now this one\n",
              strata_log_rank(), n, spec.host);
      fflush(stderr);
    }
    raise(SIGKILL);
  } else if (spec.action == 2) {
    _exit(spec.code);
  }
  for (;;) { /* hang: no progress, until killed */
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
  }
}
