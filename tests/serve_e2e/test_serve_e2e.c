/* End-to-end test of `strata serve` on a real (tiny) checkpoint under mpirun: greedy HTTP
 * completions equal `strata infer` greedy output; streaming chunks concatenate to the same text
 * and end with [DONE]; 8 concurrent clients each get their single-request answer and are batched
 * (/health max_inflight_sequences > 1); a session follow-up equals the stateless request with the
 * whole history, also after a server restart; bad requests (400/404/413); /metrics and /health;
 * SIGTERM to rank 0 drains and every process exits 0.
 * Usage: test_serve_e2e NP WORKDIR STRATA MPIRUN [MPIRUN ARGS...] */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "test_util.h"

#define MAXT 10
static const char *strata, *work;
static char **mpirun;
static int nmpi, np;
static char ckpt[1024], sdir[1024];

/* Runs a shell command, returns its stdout (malloc'd). */
static char *run(const char *cmd) {
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

/* Parses "token_ids": [..] of the i-th line of infer --json output. */
static int infer_ids(const char *out, int line, int *ids) {
  const char *p = out;
  for (int i = 0; i < line && p; i++) p = strchr(p, '\n'), p = p ? p + 1 : NULL;
  if (!p || !(p = strstr(p, "\"token_ids\": ["))) return -1;
  p += 14;
  int n = 0;
  while (*p && *p != ']') {
    char *e;
    ids[n++] = (int)strtol(p, &e, 10);
    p = e;
    while (*p == ',' || *p == ' ') p++;
  }
  return n;
}

/* Greedy reference from `strata infer` (one process, no MPI) for prompt token ids. */
static int reference(const int *tok, int n, int *ids) {
  char cmd[16384];
  int k = snprintf(cmd, sizeof cmd, "%s infer --checkpoint %s --max-tokens %d --json --prompt-tokens ", strata, ckpt, MAXT);
  for (int i = 0; i < n; i++) k += snprintf(cmd + k, sizeof cmd - k, "%s%d", i ? "," : "", tok[i]);
  snprintf(cmd + k, sizeof cmd - k, " 2>/dev/null");
  char *o = run(cmd);
  int r = infer_ids(o, 0, ids);
  free(o);
  return r;
}

/* Decodes the JSON string after `"text":"` at p into code points; returns the count. */
static int decode_text(const char *p, int *cp) {
  int n = 0;
  while (*p && *p != '"') {
    unsigned c = (unsigned char)*p++;
    if (c == '\\') {
      char e = *p++;
      if (e == 'u') c = (unsigned)strtol((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16), p += 4;
      else c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : (unsigned)e;
    } else if (c >= 0xc0) {
      c = ((c & 0x1f) << 6) | ((unsigned char)*p++ & 0x3f);
    }
    cp[n++] = (int)c;
  }
  return n;
}

/* All "text":" values of body concatenated as code points. */
static int texts(const char *body, int *cp) {
  int n = 0;
  for (const char *p = body; (p = strstr(p, "\"text\":\"")); p += 8) n += decode_text(p + 8, cp + n);
  return n;
}

static int same(const int *a, int na, const int *b, int nb) {
  return na == nb && (na == 0 || !memcmp(a, b, sizeof(int) * na));
}

static int post(int port, const char *body, http_reply_t *r) {
  return hc_request(port, "POST", "/v1/completions", body, strlen(body), 60, r);
}

typedef struct {
  pid_t pid;
  FILE *out;
  int port;
} server_t;

static void start(server_t *s) {
  int po[2];
  if (pipe(po)) exit(1);
  s->pid = fork();
  if (s->pid == 0) {
    dup2(po[1], 1);
    close(po[0]);
    char *argv[64];
    int n = 0;
    for (int i = 0; i < nmpi; i++) argv[n++] = mpirun[i];
    char npb[16];
    snprintf(npb, sizeof npb, "%d", np);
    const char *rest[] = {"-np", npb, strata, "serve", "--checkpoint", ckpt, "--listen", "127.0.0.1:0",
                          "--session-dir", sdir, "--max-request-bytes", "8192", NULL};
    for (int i = 0; rest[i]; i++) argv[n++] = (char *)rest[i];
    argv[n] = NULL;
    execvp(argv[0], argv);
    _exit(127);
  }
  close(po[1]);
  s->out = fdopen(po[0], "r");
  s->port = 0;
  char line[1024];
  while (fgets(line, sizeof line, s->out)) {
    const char *p = strstr(line, "listening on http://127.0.0.1:");
    if (p) {
      s->port = atoi(p + strlen("listening on http://127.0.0.1:"));
      break;
    }
  }
  CHECK_TRUE(s->port > 0);
  if (s->port <= 0) exit(test_finish("serve_e2e"));
}

/* SIGTERM to rank 0 (the mpirun child whose parent is mpirun, rank 0 is the first launched). */
static void stop(server_t *s) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "pgrep -P %d -f 'strata serve' | sort -n", (int)s->pid);
  char *o = run(cmd);
  int pids[16], n = 0;
  for (char *p = o; *p && n < 16;) {
    char *e;
    pids[n] = (int)strtol(p, &e, 10);
    if (e == p) break;
    n++, p = e;
    while (*p == '\n') p++;
  }
  free(o);
  CHECK_EQ_INT(n, np);
  /* rank 0 is the one that listens: it prints the port; send SIGTERM to every rank's process
   * (workers ignore it, rank 0 drains and releases them) */
  for (int i = 0; i < n; i++) kill(pids[i], SIGTERM);
  int st = -1;
  for (int i = 0; i < 3000; i++) {
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) break;
    usleep(10000);
  }
  if (waitpid(s->pid, &st, WNOHANG) == 0) kill(s->pid, SIGKILL), waitpid(s->pid, &st, 0);
  CHECK_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  for (int i = 0; i < n; i++) CHECK_TRUE(kill(pids[i], 0) != 0); /* gone */
  fclose(s->out);
}

static int str_ids(const char *s, int *ids) {
  int n = 0;
  for (; *s; s++) ids[n++] = (unsigned char)*s;
  return n;
}

typedef struct {
  int port, idx;
  int ok;
} client_t;
static const char *cprompts[8] = {"The quick", "brown fox", "jumps over", "the lazy dog", "Hello", "world!",
                                  "abc def", "0123456789"};
/* The concurrent clients wait here so their requests reach the server together and are
 * batched, however loaded the machine is. */
static pthread_barrier_t clients_ready;

static void *client(void *arg) {
  client_t *c = arg;
  char body[256];
  pthread_barrier_wait(&clients_ready);
  snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0}", cprompts[c->idx], MAXT);
  http_reply_t r;
  post(c->port, body, &r);
  int tok[64], ids[64], got[64];
  int nt = str_ids(cprompts[c->idx], tok), ni = reference(tok, nt, ids), ng = texts(r.body ? r.body : "", got);
  c->ok = r.status == 200 && ni == MAXT && same(got, ng, ids, ni);
  hc_reply_free(&r);
  return NULL;
}

static long metric(int port, const char *name) {
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

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: test_serve_e2e NP WORKDIR STRATA MPIRUN [ARGS...]\n");
    return 2;
  }
  np = atoi(argv[1]);
  work = argv[2];
  strata = argv[3];
  mpirun = argv + 4;
  nmpi = argc - 4;
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && %s train --layers 4 --dim 32 --heads 2 --ctx 64 --steps 3 "
           "--out %s/m >/dev/null 2>&1 && ls -d %s/m/ckpt-*", work, work, strata, work, work);
  char *o = run(cmd);
  o[strcspn(o, "\n")] = 0;
  snprintf(ckpt, sizeof ckpt, "%s", o);
  free(o);
  snprintf(sdir, sizeof sdir, "%s/sessions", work);
  CHECK_TRUE(ckpt[0]);
  server_t s;
  start(&s);
  int tok[256], ids[256], got[4096];

  /* greedy equals strata infer */
  http_reply_t r;
  post(s.port, "{\"prompt\":\"Hello world\",\"max_tokens\":10,\"temperature\":0}", &r);
  CHECK_EQ_INT(r.status, 200);
  int nt = str_ids("Hello world", tok), ni = reference(tok, nt, ids);
  CHECK_EQ_INT(ni, MAXT);
  int ng = texts(r.body, got);
  CHECK_TRUE(same(got, ng, ids, ni));
  hc_reply_free(&r);

  /* streaming */
  post(s.port, "{\"prompt\":\"Hello world\",\"max_tokens\":10,\"temperature\":0,\"stream\":true}", &r);
  CHECK_EQ_INT(r.status, 200);
  ng = texts(r.body, got);
  CHECK_TRUE(same(got, ng, ids, ni));
  CHECK_TRUE(r.body_len > 14 && strstr(r.body + r.body_len - 16, "data: [DONE]"));
  hc_reply_free(&r);

  /* 8 concurrent clients */
  pthread_t th[8];
  client_t cl[8];
  pthread_barrier_init(&clients_ready, NULL, 8);
  for (int i = 0; i < 8; i++) cl[i] = (client_t){s.port, i, 0}, pthread_create(&th[i], NULL, client, &cl[i]);
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    CHECK_TRUE(cl[i].ok);
  }
  pthread_barrier_destroy(&clients_ready);
  usleep(1200000); /* the server samples backend stats periodically */
  hc_request(s.port, "GET", "/health", NULL, 0, 30, &r);
  CHECK_EQ_INT(r.status, 200);
  const char *mp = strstr(r.body, "\"max_inflight_sequences\":");
  CHECK_TRUE(mp && atoi(mp + 25) > 1);
  char want[64];
  snprintf(want, sizeof want, "\"ranks\":%d,\"stages\":%d", np, np);
  CHECK_TRUE(strstr(r.body, want) != NULL);
  hc_reply_free(&r);

  /* session: two turns, then compare with the stateless whole history */
  int hist[1024], nh = 0;
  post(s.port, "{\"prompt\":\"Hi there\",\"max_tokens\":10,\"temperature\":0,\"session\":\"s1\"}", &r);
  CHECK_EQ_INT(r.status, 200);
  nh = str_ids("Hi there", hist);
  nh += texts(r.body, hist + nh);
  hc_reply_free(&r);
  post(s.port, "{\"prompt\":\" more\",\"max_tokens\":10,\"temperature\":0,\"session\":\"s1\"}", &r);
  CHECK_EQ_INT(r.status, 200);
  nt = texts(r.body, got);
  nh += str_ids(" more", hist + nh);
  ni = reference(hist, nh, ids);
  CHECK_TRUE(same(got, nt, ids, ni));
  CHECK_TRUE(strstr(r.body, "\"cached_tokens\":") && atoi(strstr(r.body, "\"cached_tokens\":") + 16) > 0);
  hc_reply_free(&r);
  memcpy(hist + nh, got, sizeof(int) * nt);
  nh += nt;

  /* bad requests */
  post(s.port, "{\"prompt\":", &r);
  CHECK_EQ_INT(r.status, 400);
  hc_reply_free(&r);
  char big[70];
  memset(big, 'a', 60), big[60] = 0;
  char body[16384];
  snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":10,\"temperature\":0}", big); /* 60 + 10 > ctx 64 */
  post(s.port, body, &r);
  CHECK_EQ_INT(r.status, 400);
  hc_reply_free(&r);
  memset(body, ' ', 10000), body[10000] = 0;
  post(s.port, body, &r);
  CHECK_EQ_INT(r.status, 413);
  hc_reply_free(&r);
  hc_request(s.port, "GET", "/nope", NULL, 0, 30, &r);
  CHECK_EQ_INT(r.status, 404);
  hc_reply_free(&r);
  hc_request(s.port, "DELETE", "/v1/sessions/nosuch", NULL, 0, 30, &r);
  CHECK_EQ_INT(r.status, 404);
  hc_reply_free(&r);

  /* metrics */
  usleep(1200000);
  CHECK_TRUE(metric(s.port, "strata_tokens_generated_total") >= 12 * MAXT);
  CHECK_TRUE(metric(s.port, "strata_active_sessions") >= 1);
  CHECK_TRUE(metric(s.port, "strata_kv_cache_bytes") > 0);
  stop(&s);

  /* restart: the session continues from disk */
  start(&s);
  post(s.port, "{\"prompt\":\" again\",\"max_tokens\":10,\"temperature\":0,\"session\":\"s1\"}", &r);
  CHECK_EQ_INT(r.status, 200);
  nt = texts(r.body, got);
  nh += str_ids(" again", hist + nh);
  ni = reference(hist, nh, ids);
  CHECK_TRUE(same(got, nt, ids, ni));
  hc_reply_free(&r);
  hc_request(s.port, "DELETE", "/v1/sessions/s1", NULL, 0, 30, &r);
  CHECK_EQ_INT(r.status, 200);
  hc_reply_free(&r);
  stop(&s);
  return test_finish("serve_e2e");
}
