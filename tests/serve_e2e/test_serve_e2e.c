/* End-to-end tests of `strata serve` on a real (tiny) checkpoint under mpirun.
 *
 *   basic     greedy HTTP completions equal `strata infer` greedy output; streaming chunks
 *             concatenate to the same text and end with [DONE]; 8 concurrent clients each get their
 *             single-request answer and are batched (/health max_inflight_sequences > 1); a session
 *             follow-up equals the stateless request with the whole history, also after a server
 *             restart; bad requests (400/404/413); /metrics and /health; SIGTERM to the ranks
 *             drains and every process exits 0.
 *   overload  --max-queue 3 with the pipeline held (rank 1 stopped with SIGSTOP, so the admitted
 *             requests stay unfinished however fast the machine is): 5 more concurrent requests get
 *             429 with Retry-After and a JSON error; after SIGCONT the 3 admitted ones complete with
 *             the `strata infer` answer, /health is 200 and a new request is served.
 *   signal    SIGTERM, then SIGINT, to mpirun itself: every rank exits 0 (each rank runs under a
 *             small wrapper that records its exit code), the shutdown is logged, no process is
 *             left, the session's files are on disk, and a restarted server continues the session
 *             with the answer an uninterrupted server gives for the same turns (greedy).
 *   tp        --tp 2 (NP = 2 x P, a 4-head model): /health names ranks, stages and tp; 8 concurrent
 *             clients of different prompt lengths each get the one-process `strata infer` answer;
 *             a session's third turn after a server restart equals the third turn of a session
 *             that never left memory and the stateless request; one part file per (stage, t);
 *             /v1/sessions lists the layout; a server at --tp 1 answers the session with 409
 *             naming --tp 2; 3 ranks at --tp 2, and --tp 3 of 4 heads, exit 2 naming the numbers.
 *   llama     a tiny trained Llama checkpoint (NP pipeline stages): a greedy completion and its stream equal
 *             `strata infer` (whose Llama tokens tests/infer checks against a whole-sequence
 *             recompute) with exact usage counts and the model named strata-llama-L2-C64; a chat
 *             completion answers with an assistant message and consistent usage; a session's
 *             follow-up equals the stateless request with the whole history; --tp 3 (of 4
 *             heads) exits 2 naming the numbers.
 *   llama_tp2 the same with --tp 2 (NP = 2 x P): the answers of the one-process `strata infer`.
 *   bf16      --precision bf16: a greedy completion (a new session's first turn) equals `strata
 *             infer --precision bf16`, and the KV gauge of /metrics after it (the session's
 *             resident cache) is half an fp32 server's after the same request.
 * Usage: test_serve_e2e CASE NP WORKDIR STRATA MPIRUN [MPIRUN ARGS...]
 *        test_serve_e2e wrap EXIT_PREFIX PROGRAM ARGS...   (the per-rank wrapper of `signal`) */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "serve_harness.h"
#include "test_util.h"

#define MAXT 10
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

/* Greedy reference from `strata infer` (one process, no MPI, with extra flags) for prompt token ids. */
static int reference_with(const char *flags, const int *tok, int n, int *ids) {
  char cmd[16384];
  int k = snprintf(cmd, sizeof cmd, "%s infer --checkpoint %s --max-tokens %d --json %s --prompt-tokens ", strata,
                   ckpt, MAXT, flags);
  for (int i = 0; i < n; i++) k += snprintf(cmd + k, sizeof cmd - k, "%s%d", i ? "," : "", tok[i]);
  snprintf(cmd + k, sizeof cmd - k, " 2>/dev/null");
  char *o = run(cmd);
  int r = infer_ids(o, 0, ids);
  free(o);
  return r;
}

static int reference(const int *tok, int n, int *ids) { return reference_with("", tok, n, ids); }

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

static int str_ids(const char *s, int *ids) {
  int n = 0;
  for (; *s; s++) ids[n++] = (unsigned char)*s;
  return n;
}

typedef struct {
  int port, idx;
  pthread_barrier_t *ready; /* the clients of a burst start together, or NULL */
  int ok;
  int status;
  int body_ok; /* the body is a JSON error object naming the status */
} client_t;
static const char *cprompts[8] = {"The quick", "brown fox", "jumps over", "the lazy dog", "Hello", "world!",
                                  "abc def", "0123456789"};

/* One greedy completion of cprompts[idx]; ok = 200 and the `strata infer` answer. */
static void *client(void *arg) {
  client_t *c = arg;
  char body[256];
  /* The concurrent clients wait here so their requests reach the server together and are
   * batched, however loaded the machine is. */
  if (c->ready) pthread_barrier_wait(c->ready);
  snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0}", cprompts[c->idx], MAXT);
  http_reply_t r;
  hc_request(c->port, "POST", "/v1/completions", body, strlen(body), 180, &r);
  c->status = r.status;
  int tok[64], ids[64], got[64];
  int nt = str_ids(cprompts[c->idx], tok), ni = reference(tok, nt, ids), ng = texts(r.body ? r.body : "", got);
  c->ok = r.status == 200 && ni == MAXT && same(got, ng, ids, ni);
  char code[32];
  snprintf(code, sizeof code, "\"code\":%d", r.status);
  c->body_ok = r.body && strstr(r.body, "{\"error\":{") && strstr(r.body, code);
  if (!c->ok) fprintf(stderr, "client %d: status %d body %s\n", c->idx, r.status, r.body ? r.body : "");
  hc_reply_free(&r);
  return NULL;
}

/* 8 clients (cprompts, of different lengths) at once: each gets its one-process answer. */
static void concurrent_clients(int port) {
  pthread_t th[8];
  client_t cl[8];
  pthread_barrier_t ready;
  pthread_barrier_init(&ready, NULL, 8);
  for (int i = 0; i < 8; i++) cl[i] = (client_t){port, i, &ready, 0, 0, 0}, pthread_create(&th[i], NULL, client, &cl[i]);
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    CHECK_TRUE(cl[i].ok);
  }
  pthread_barrier_destroy(&ready);
}

/* CASE basic (see the top of the file). */
static void case_basic(void) {
  train_checkpoint();
  server_t s;
  start(&s, NULL, NULL);
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
  concurrent_clients(s.port);
  /* batching: whether the clients' requests overlapped depends on how the machine schedules
   * them, but one request's 3 choices enter the engine together (the serve loop submits all of
   * a job's choices before its next step), so the gauge below shows more than one in flight
   * whatever the load */
  post(s.port, "{\"prompt\":\"Hello world\",\"max_tokens\":10,\"temperature\":0,\"n\":3}", &r);
  CHECK_EQ_INT(r.status, 200);
  hc_reply_free(&r);
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
  start(&s, NULL, NULL);
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
}

/* A greedy session turn of MAXT tokens: the reply's code points into got (their count), or -1
 * when the status is not 200. */
static int session_turn(int port, const char *session, const char *prompt, int *got) {
  char body[512];
  snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"session\":\"%s\"}", prompt,
           MAXT, session);
  http_reply_t r;
  post(port, body, &r);
  int n = r.status == 200 ? texts(r.body, got) : -1;
  if (r.status != 200) fprintf(stderr, "session %s: status %d body %s\n", session, r.status, r.body ? r.body : "");
  hc_reply_free(&r);
  return n;
}

/* `mpirun -np NRANKS strata serve --checkpoint ckpt FLAGS` must exit 2 before serving, with
 * `needle` in its output. */
static void expect_bad_layout(int nranks, const char *flags, const char *needle) {
  char cmd[8192], log[2048];
  int k = 0;
  for (int i = 0; i < nmpi; i++) k += snprintf(cmd + k, sizeof cmd - k, "%s ", mpirun[i]);
  snprintf(log, sizeof log, "%s/bad_layout.txt", work);
  snprintf(cmd + k, sizeof cmd - k, "-np %d %s serve --checkpoint %s --listen 127.0.0.1:0 %s > %s 2>&1; echo $?",
           nranks, strata, ckpt, flags, log);
  char *rc = run(cmd);
  size_t len;
  char *out = slurp(log, &len);
  CHECK_EQ_INT(atoi(rc), 2);
  CHECK_TRUE(out && strstr(out, needle));
  if (!out || !strstr(out, needle)) fprintf(stderr, "np %d %s: exit %s output %s\n", nranks, flags, rc, out ? out : "");
  free(rc);
  free(out);
}

/* CASE tp (see the top of the file). */
static void case_tp(void) {
  train_model("--layers 4 --dim 32 --heads 4 --ctx 64 --steps 100 --batch 8");
  const char *tp2[] = {"--tp", "2", NULL};
  server_t s;
  start(&s, tp2, NULL);
  http_reply_t r;
  hc_request(s.port, "GET", "/health", NULL, 0, 30, &r);
  CHECK_EQ_INT(r.status, 200);
  char want[96];
  snprintf(want, sizeof want, "\"ranks\":%d,\"stages\":%d,\"tp\":2", np, np / 2);
  CHECK_TRUE(r.body && strstr(r.body, want));
  hc_reply_free(&r);
  /* concurrent clients, batched, each with the one-process answer */
  concurrent_clients(s.port);
  /* session u never leaves this server; session s1 crosses a restart */
  const char *turns[3] = {"Hi there", " more", " again"};
  int u[3][64], nu[3], hist[1024], nh = 0, got[64], ids[64];
  for (int k = 0; k < 3; k++) nu[k] = session_turn(s.port, "u", turns[k], u[k]);
  for (int k = 0; k < 2; k++) {
    int n = session_turn(s.port, "s1", turns[k], got);
    CHECK_TRUE(same(got, n, u[k], nu[k]));
    nh += str_ids(turns[k], hist + nh);
    if (n > 0) memcpy(hist + nh, got, sizeof(int) * n), nh += n;
  }
  stop(&s);
  start(&s, tp2, NULL);
  int n = session_turn(s.port, "s1", turns[2], got);
  nh += str_ids(turns[2], hist + nh);
  int ni = reference(hist, nh, ids);
  printf("turn 3 after the restart: %d tokens, equal to the uninterrupted session: %d, to the stateless request: %d\n",
         n, same(got, n, u[2], nu[2]), same(got, n, ids, ni));
  CHECK_EQ_INT(n, MAXT);
  CHECK_TRUE(same(got, n, u[2], nu[2]));
  CHECK_TRUE(same(got, n, ids, ni));
  char path[2048];
  for (int st = 0; st < np / 2; st++)
    for (int t = 0; t < 2; t++) {
      snprintf(path, sizeof path, "%s/s1.stage%d-of-%d.tp%d-of-2.kv", sdir, st, np / 2, t);
      CHECK_TRUE(access(path, F_OK) == 0);
    }
  hc_request(s.port, "GET", "/v1/sessions", NULL, 0, 30, &r);
  CHECK_EQ_INT(r.status, 200);
  snprintf(want, sizeof want, "\"stages\":%d,\"tp\":2", np / 2);
  CHECK_TRUE(r.body && strstr(r.body, want));
  hc_reply_free(&r);
  stop(&s);
  /* the same ranks without --tp: the session is refused, naming the layout that saved it */
  start(&s, NULL, NULL);
  post(s.port, "{\"prompt\":\"x\",\"max_tokens\":2,\"temperature\":0,\"session\":\"s1\"}", &r);
  CHECK_EQ_INT(r.status, 409);
  CHECK_TRUE(r.body && strstr(r.body, "--tp 2"));
  hc_reply_free(&r);
  stop(&s);
  expect_bad_layout(3, "--tp 2", "3 ranks cannot be split into --tp 2 tensor-parallel ranks x P pipeline stages");
  expect_bad_layout(3, "--tp 3", "--tp 3 does not divide the model's 4 attention heads");
}

/* One request of an overload burst: waits at the barrier, then posts. */
typedef struct {
  int port;
  pthread_barrier_t *ready;
  http_reply_t r;
} excess_t;

static void *excess_client(void *arg) {
  excess_t *x = arg;
  pthread_barrier_wait(x->ready);
  post(x->port, "{\"prompt\":\"one too many\",\"max_tokens\":4,\"temperature\":0}", &x->r);
  return NULL;
}

/* CASE overload: more concurrent requests than --max-queue admits, with the real engine. */
static void case_overload(void) {
  enum { ADMITTED = 3, EXCESS = 5 };
  train_checkpoint();
  server_t s;
  const char *extra[] = {"--max-queue", "3", NULL};
  start(&s, extra, NULL);
  client_t warm = {s.port, 4, NULL, 0, 0, 0};
  client(&warm);
  CHECK_TRUE(warm.ok);
  /* Hold the pipeline: the last stage stops, so admitted requests stay unfinished. */
  pid_t pids[16];
  CHECK_EQ_INT(serve_pids(pids, 16), np);
  pid_t held = pids[np - 1];
  CHECK_TRUE(held > 0);
  if (held <= 0) exit(test_finish("serve_e2e_overload"));
  kill(held, SIGSTOP);
  for (int i = 0; i < 500 && proc_state(held) != 'T'; i++) usleep(10000);
  CHECK_TRUE(proc_state(held) == 'T');
  pthread_t th[ADMITTED];
  client_t cl[ADMITTED];
  for (int i = 0; i < ADMITTED; i++)
    cl[i] = (client_t){s.port, i, NULL, 0, 0, 0}, pthread_create(&th[i], NULL, client, &cl[i]);
  CHECK_TRUE(wait_health(s.port, "\"queue_depth\":3,"));
  /* The excess arrives together; each is refused at once: 429, Retry-After, a JSON error. */
  pthread_t ex[EXCESS];
  excess_t xa[EXCESS];
  pthread_barrier_t ready;
  pthread_barrier_init(&ready, NULL, EXCESS);
  for (int i = 0; i < EXCESS; i++) {
    memset(&xa[i], 0, sizeof xa[i]);
    xa[i].port = s.port, xa[i].ready = &ready;
    pthread_create(&ex[i], NULL, excess_client, &xa[i]);
  }
  for (int i = 0; i < EXCESS; i++) {
    pthread_join(ex[i], NULL);
    http_reply_t *r = &xa[i].r;
    CHECK_EQ_INT(r->status, 429);
    char ra[16] = "";
    CHECK_EQ_INT(hc_header(r, "Retry-After", ra, sizeof ra), 0);
    CHECK_TRUE(atoi(ra) >= 1);
    CHECK_TRUE(r->body && strstr(r->body, "{\"error\":{") && strstr(r->body, "\"code\":429") &&
               strstr(r->body, "--max-queue 3"));
    hc_reply_free(r);
  }
  pthread_barrier_destroy(&ready);
  /* /health still answers while the queue is full */
  http_reply_t r;
  hc_request(s.port, "GET", "/health", NULL, 0, 30, &r);
  CHECK_EQ_INT(r.status, 200);
  CHECK_TRUE(r.body && strstr(r.body, "\"queue_depth\":3,"));
  hc_reply_free(&r);
  /* Release the pipeline: the admitted requests complete with the right answers. */
  kill(held, SIGCONT);
  for (int i = 0; i < ADMITTED; i++) {
    pthread_join(th[i], NULL);
    CHECK_TRUE(cl[i].ok);
  }
  CHECK_TRUE(wait_health(s.port, "\"queue_depth\":0,"));
  client_t after = {s.port, 5, NULL, 0, 0, 0};
  client(&after);
  CHECK_TRUE(after.ok);
  hc_request(s.port, "GET", "/health", NULL, 0, 30, &r);
  CHECK_EQ_INT(r.status, 200);
  CHECK_TRUE(r.body && strstr(r.body, "\"status\":\"ok\""));
  hc_reply_free(&r);
  CHECK_TRUE(metric(s.port, "strata_http_requests_total{code=\"429\"}") == EXCESS);
  stop(&s);
}

/* The exit code a wrapped rank recorded in PREFIX.<rank>, or -1. */
static int rank_exit_code(const char *prefix, int rank) {
  char path[1200];
  snprintf(path, sizeof path, "%s.%d", prefix, rank);
  size_t len;
  char *t = slurp(path, &len);
  int c = t ? atoi(t) : -1;
  free(t);
  return c;
}

/* Signals mpirun itself and checks a clean collective shutdown: every rank exits 0, the log
 * names the signal the ranks got, nothing is left running. Returns mpirun's wait status. */
static int stop_mpirun(server_t *s, int sig, const char *prefix) {
  kill(s->pid, sig);
  int st = reap(s, 60);
  CHECK_TRUE(st != -1 && WIFEXITED(st)); /* exited by itself (the status is Open MPI's: see README) */
  for (int r = 0; r < np; r++) {
    int c = rank_exit_code(prefix, r);
    if (c != 0) fprintf(stderr, "rank %d exit code %d (-1: none recorded); log:\n%s\n", r, c, s->log ? s->log : "");
    CHECK_EQ_INT(c, 0);
  }
  CHECK_TRUE(s->log && strstr(s->log, "serve: shutting down on SIG"));
  CHECK_TRUE(s->log && strstr(s->log, "serve: stopped"));
  pid_t pids[16];
  CHECK_EQ_INT(serve_pids(pids, 16), 0); /* no process left behind */
  printf("mpirun after %s: %s %d\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
         WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? WTERMSIG(st) : -1);
  free(s->log);
  s->log = NULL;
  return st;
}

/* POSTs one greedy turn of `session`; appends the generated code points to out. Returns the count. */
static int turn(int port, const char *session, const char *prompt, int *out, int *cached) {
  char body[512];
  snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"session\":\"%s\"}", prompt,
           MAXT, session);
  http_reply_t r;
  post(port, body, &r);
  CHECK_EQ_INT(r.status, 200);
  int n = texts(r.body ? r.body : "", out);
  const char *c = r.body ? strstr(r.body, "\"cached_tokens\":") : NULL;
  if (cached) *cached = c ? atoi(c + 16) : -1;
  hc_reply_free(&r);
  return n;
}

/* A session turn posted from a thread (the one in flight when mpirun is signalled). */
typedef struct {
  int port;
  const char *session, *prompt;
  http_reply_t r;
} turn_arg_t;

static void *turn_thread(void *arg) {
  turn_arg_t *t = arg;
  char body[512];
  snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"session\":\"%s\"}", t->prompt,
           MAXT, t->session);
  post(t->port, body, &t->r);
  return NULL;
}

/* CASE signal: SIGTERM / SIGINT to mpirun. */
static void case_signal(void) {
  train_checkpoint();
  char prefix[1100];
  snprintf(prefix, sizeof prefix, "%s/exit", work);
  server_t s;
  start(&s, NULL, prefix);
  int hist[1024], nh = 0, got[1024], ids[1024], t1[64], t2[64], n2 = 0;
  int n1 = turn(s.port, "k1", "Hi there", t1, NULL);
  nh = str_ids("Hi there", hist);
  memcpy(hist + nh, t1, sizeof(int) * n1);
  nh += n1;
  /* Turn 2 is in flight when mpirun is signalled (held in the pipeline by stopping the last
   * stage; mpirun's SIGCONT releases it). It either completes (200, "length"), is cut short
   * (200, "cancelled", with the text the session kept) or is refused before it started (503,
   * session unchanged) -- never left without an answer, and the answer says what the session holds. */
  pid_t pids[16];
  CHECK_EQ_INT(serve_pids(pids, 16), np);
  pid_t held = pids[np - 1];
  if (held > 0) kill(held, SIGSTOP);
  for (int i = 0; held > 0 && i < 500 && proc_state(held) != 'T'; i++) usleep(10000);
  turn_arg_t ta = {s.port, "k1", " and", {0}};
  pthread_t th;
  pthread_create(&th, NULL, turn_thread, &ta);
  CHECK_TRUE(wait_health(s.port, "\"queue_depth\":1,"));
  stop_mpirun(&s, SIGTERM, prefix);
  if (held > 0) kill(held, SIGCONT); /* in case mpirun did not (the process is gone by now) */
  pthread_join(th, NULL);
  int full = 0;
  if (ta.r.status == 200) {
    n2 = texts(ta.r.body, t2);
    nh += str_ids(" and", hist + nh);
    int ni = reference(hist, nh, ids);
    full = ta.r.body && strstr(ta.r.body, "\"finish_reason\":\"length\"");
    CHECK_TRUE(full ? same(t2, n2, ids, ni) : (n2 <= ni && same(t2, n2, ids, n2)) &&
                          strstr(ta.r.body, "\"finish_reason\":\"cancelled\""));
    memcpy(hist + nh, t2, sizeof(int) * n2);
    nh += n2;
  } else {
    CHECK_EQ_INT(ta.r.status, 503);
    CHECK_TRUE(ta.r.body && strstr(ta.r.body, "{\"error\":{") && strstr(ta.r.body, "\"code\":503"));
  }
  printf("turn in flight at SIGTERM: %d %s (%d tokens)\n", ta.r.status,
         ta.r.status != 200 ? "refused" : full ? "completed" : "cut short", n2);
  hc_reply_free(&ta.r);
  for (int st = 0; st < np; st++) {
    char f[1200];
    snprintf(f, sizeof f, "%s/k1.stage%d-of-%d.kv", sdir, st, np);
    struct stat sb;
    CHECK_TRUE(stat(f, &sb) == 0 && sb.st_size > 0);
  }
  /* Restart: the session continues from disk, as the stateless whole history does ... */
  for (int r = 0; r < np; r++) {
    char f[1200];
    snprintf(f, sizeof f, "%s.%d", prefix, r);
    unlink(f);
  }
  start(&s, NULL, prefix);
  int cached = 0;
  int n3 = turn(s.port, "k1", " more", got, &cached);
  CHECK_TRUE(cached > 0);
  nh += str_ids(" more", hist + nh);
  int ni = reference(hist, nh, ids);
  CHECK_TRUE(ni == MAXT && same(got, n3, ids, ni));
  /* ... and as a server that was never interrupted does for the same turns */
  int u[64];
  int nu = turn(s.port, "u1", "Hi there", u, NULL);
  CHECK_TRUE(same(u, nu, t1, n1));
  if (full) {
    nu = turn(s.port, "u1", " and", u, NULL);
    CHECK_TRUE(same(u, nu, t2, n2));
    nu = turn(s.port, "u1", " more", u, NULL);
    CHECK_TRUE(same(u, nu, got, n3));
  }
  /* SIGINT (Ctrl-C on an interactive mpirun) ends it the same way. */
  stop_mpirun(&s, SIGINT, prefix);
}


/* "KEY":N in body, or -1. */
static long json_int(const char *body, const char *key) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":", key);
  const char *p = body ? strstr(body, k) : NULL;
  return p ? atol(p + strlen(k)) : -1;
}

/* CASE llama and llama_tp2 (see the top of the file): the server started with `extra`. */
static void case_llama(const char *const *extra) {
  train_model("--arch llama --layers 2 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --batch 4 --steps 80 --lr 0.01 "
              "--warmup 2 --eval-tokens 128 --quiet");
  server_t s;
  start(&s, extra, NULL);
  int tok[64], ids[64], got[256];
  http_reply_t r;
  const char *greedy = "{\"prompt\":\"Hello world\",\"max_tokens\":10,\"temperature\":0";
  char body[256];
  snprintf(body, sizeof body, "%s}", greedy);
  post(s.port, body, &r);
  CHECK_EQ_INT(r.status, 200);
  int nt = str_ids("Hello world", tok), ni = reference(tok, nt, ids), ng = texts(r.body, got);
  CHECK_EQ_INT(ni, MAXT);
  CHECK_TRUE(same(got, ng, ids, ni));
  CHECK_EQ_INT(json_int(r.body, "prompt_tokens"), 11);
  CHECK_EQ_INT(json_int(r.body, "completion_tokens"), 10);
  CHECK_EQ_INT(json_int(r.body, "total_tokens"), 21);
  CHECK_TRUE(r.body && strstr(r.body, "\"model\":\"strata-llama-L2-C64\""));
  hc_reply_free(&r);
  snprintf(body, sizeof body, "%s,\"stream\":true}", greedy);
  post(s.port, body, &r);
  CHECK_EQ_INT(r.status, 200);
  ng = texts(r.body, got);
  CHECK_TRUE(same(got, ng, ids, ni));
  hc_reply_free(&r);

  const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":6,\"temperature\":0}";
  hc_request(s.port, "POST", "/v1/chat/completions", chat, strlen(chat), 60, &r);
  CHECK_EQ_INT(r.status, 200);
  CHECK_TRUE(r.body && strstr(r.body, "\"object\":\"chat.completion\"") && strstr(r.body, "\"role\":\"assistant\""));
  long pt = json_int(r.body, "prompt_tokens");
  CHECK_TRUE(pt > 2);
  CHECK_EQ_INT(json_int(r.body, "completion_tokens"), 6);
  CHECK_EQ_INT(json_int(r.body, "total_tokens"), pt + 6);
  if (r.status != 200) fprintf(stderr, "chat: %s\n", r.body ? r.body : "");
  hc_reply_free(&r);

  /* session: two turns, then the stateless request with the whole history */
  int hist[256], nh = str_ids("Hi there", hist);
  post(s.port, "{\"prompt\":\"Hi there\",\"max_tokens\":6,\"temperature\":0,\"session\":\"l1\"}", &r);
  CHECK_EQ_INT(r.status, 200);
  nh += texts(r.body, hist + nh);
  hc_reply_free(&r);
  post(s.port, "{\"prompt\":\" more\",\"max_tokens\":10,\"temperature\":0,\"session\":\"l1\"}", &r);
  CHECK_EQ_INT(r.status, 200);
  ng = texts(r.body, got);
  hc_reply_free(&r);
  nh += str_ids(" more", hist + nh);
  ni = reference(hist, nh, ids);
  CHECK_EQ_INT(ni, MAXT);
  CHECK_TRUE(same(got, ng, ids, ni));
  stop(&s);
  expect_bad_layout(2, "--tp 3", "--tp 3 does not divide the Llama model's 4 attention heads");
}

/* One greedy completion of "Hello world" in a new session (whose cache stays resident) on a
 * server started with `extra`: its text into got (returns the count) and the KV gauge of
 * /metrics after it into *kv. */
static int hello_and_kv(const char *const *extra, const char *session, int *got, long *kv) {
  server_t s;
  start(&s, extra, NULL);
  http_reply_t r;
  char body[256];
  snprintf(body, sizeof body, "{\"prompt\":\"Hello world\",\"max_tokens\":10,\"temperature\":0,\"session\":\"%s\"}",
           session);
  post(s.port, body, &r);
  CHECK_EQ_INT(r.status, 200);
  int n = texts(r.body, got);
  hc_reply_free(&r);
  /* the gauges are sampled periodically: wait (bounded) for the first sample after the request */
  for (int i = 0; i < 200 && (*kv = metric(s.port, "strata_kv_cache_bytes")) <= 0; i++) usleep(50000);
  stop(&s);
  return n;
}

static void case_bf16(void) {
  train_checkpoint();
  int tok[64], ids[64], got[256], got32[256];
  long kv16, kv32;
  const char *const bf16[] = {"--precision", "bf16", NULL};
  int ng32 = hello_and_kv(NULL, "kv32", got32, &kv32), ng = hello_and_kv(bf16, "kv16", got, &kv16);
  int nt = str_ids("Hello world", tok), ni = reference_with("--precision bf16", tok, nt, ids);
  CHECK_EQ_INT(ni, MAXT);
  CHECK_TRUE(same(got, ng, ids, ni));
  CHECK_EQ_INT(ng32, MAXT);
  printf("bf16: KV gauge %ld bytes, fp32 %ld\n", kv16, kv32);
  CHECK_TRUE(kv16 > 0);
  CHECK_EQ_INT(2 * kv16, kv32);
}

/* The per-rank wrapper of CASE signal: runs PROGRAM ARGS..., records its exit code in
 * EXIT_PREFIX.<rank> (atomically) and exits with it. It survives SIGTERM/SIGINT itself (a no-op
 * handler, reset to the default in the child by exec), so it outlives the program to record. */
static void wrap_noop(int sig) { (void)sig; }

static int wrap_main(int argc, char **argv) {
  if (argc < 4) return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = wrap_noop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  pid_t c = fork();
  if (c == 0) {
    execv(argv[3], argv + 3);
    _exit(127);
  }
  int st = 0;
  while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  const char *rank = getenv("OMPI_COMM_WORLD_RANK");
  char path[1200], tmp[1300];
  snprintf(path, sizeof path, "%s.%s", argv[2], rank ? rank : "unknown");
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f) {
    fprintf(f, "%d\n", code);
    fclose(f);
    rename(tmp, path);
  }
  /* Linger: mpirun, which is ending the job, SIGKILLs every rank's process group as soon as one
   * of its children exits; a wrapper exiting now could cut short another rank's wrapper before
   * it recorded. mpirun's own SIGKILL ends the lingering (after odls_base_sigkill_timeout). */
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    usleep(50000);
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) < 5.0);
  return code;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "wrap")) return wrap_main(argc, argv);
  if (harness_args(argc, argv)) {
    fprintf(stderr, "usage: test_serve_e2e basic|overload|signal|tp|llama|llama_tp2|bf16 NP WORKDIR STRATA MPIRUN [ARGS...]\n");
    return 2;
  }
  const char *which = argv[1];
  if (!strcmp(which, "basic")) case_basic();
  else if (!strcmp(which, "overload")) case_overload();
  else if (!strcmp(which, "signal")) case_signal();
  else if (!strcmp(which, "tp")) case_tp();
  else if (!strcmp(which, "llama")) case_llama(NULL);
  else if (!strcmp(which, "llama_tp2")) case_llama((const char *const[]){"--tp", "2", NULL});
  else if (!strcmp(which, "bf16")) case_bf16();
  else {
    fprintf(stderr, "unknown case '%s'\n", which);
    return 2;
  }
  return test_finish(which);
}
