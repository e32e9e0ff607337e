/* `strata serve` end to end, in process: the HTTP server (worker/serve/serve.c, http_server.c) with
 * the deterministic fake backend (worker/serve/serve_fake.c), driven over loopback sockets by a plain
 * HTTP/1.0 client. Each case starts its own server on a free port; run one with
 *   test_serve CASE        (CASE = happy, stream, concurrent, bad_requests, overload, health,
 *                           metrics, disconnect, sessions, shutdown)
 * Expected texts come from the fake backend's documented formula (serve.h), recomputed here. */
#include <dirent.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "serve.h"
#include "test_util.h"

#define TIMEOUT_S 20.0 /* every client socket operation; a wedged server fails instead of hanging */

static serve_t *srv;
static pthread_t loop_thread;
static int port;
static int loop_rc;

static void *loop_main(void *arg) {
  (void)arg;
  char err[256];
  loop_rc = serve_run(srv, err, sizeof err);
  return NULL;
}

static int count_threads(void) {
  DIR *d = opendir("/proc/self/task");
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n;
}

static void start(const serve_opts_t *o_in, const fake_backend_opts_t *fo_in) {
  serve_opts_t o;
  fake_backend_opts_t fo;
  if (o_in) o = *o_in;
  else serve_opts_default(&o);
  if (fo_in) fo = *fo_in;
  else fake_backend_opts_default(&fo);
  o.listen = "127.0.0.1:0";
  serve_backend_t be;
  char err[256];
  if (fake_backend_create(&fo, &be, err, sizeof err) || serve_create(&o, &be, &srv, err, sizeof err)) {
    fprintf(stderr, "cannot start the server: %s\n", err);
    exit(1);
  }
  port = serve_port(srv);
  CHECK_TRUE(port > 0);
  pthread_create(&loop_thread, NULL, loop_main, NULL);
}

static void stop(void) {
  serve_stop(srv);
  pthread_join(loop_thread, NULL);
  serve_destroy(srv);
  CHECK_EQ_INT(loop_rc, 0);
}

/* The fake backend's token i text (serve.h). */
static void expected_text(const char *prompt, uint64_t seed, int first, int n, char *out, size_t cap) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = prompt; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  size_t len = 0;
  out[0] = '\0';
  for (int i = first; i < first + n; i++)
    len += (size_t)snprintf(out + len, cap - len, " w%u",
                            (unsigned)((h + 7919ull * seed + 104729ull * (uint64_t)i) % 10000ull));
}

static json_object *post_json(const char *body, int *status) {
  http_reply_t r;
  hc_request(port, "POST", "/v1/completions", body, strlen(body), TIMEOUT_S, &r);
  *status = r.status;
  json_object *o = r.body ? json_tokener_parse(r.body) : NULL;
  hc_reply_free(&r);
  return o;
}

static const char *jstr(json_object *o, const char *path) {
  /* path like "choices.0.text". strtok_r, not strtok: the concurrent case calls this from 16
   * client threads at once, and strtok's shared position once made one thread walk another's
   * path (it returned a whole choice object as the text, failing serve_concurrent about 1 run
   * in 40 under load). */
  char buf[128], *save = NULL;
  snprintf(buf, sizeof buf, "%s", path);
  json_object *cur = o;
  for (char *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save)) {
    if (json_object_is_type(cur, json_type_array)) cur = json_object_array_get_idx(cur, (size_t)atoi(tok));
    else if (!json_object_object_get_ex(cur, tok, &cur)) cur = NULL;
  }
  return cur ? json_object_get_string(cur) : NULL;
}

static double jnum(json_object *o, const char *path) {
  const char *s = jstr(o, path);
  return s ? atof(s) : -1e300;
}

/* A non-streaming completion's body fields and usage counts. */
static void case_happy(void) {
  start(NULL, NULL);
  int st;
  json_object *o = post_json("{\"prompt\": \"hello big world\", \"max_tokens\": 5, \"seed\": 3, \"model\": \"x\"}", &st);
  CHECK_EQ_INT(st, 200);
  CHECK_TRUE(o != NULL);
  char want[256];
  expected_text("hello big world", 3, 0, 5, want, sizeof want);
  const char *text = jstr(o, "choices.0.text");
  if (!text || strcmp(text, want)) test_fail(__FILE__, __LINE__, "text '%s', expected '%s'", text ? text : "(null)", want);
  CHECK_TRUE(!strcmp(jstr(o, "object"), "text_completion"));
  CHECK_TRUE(!strncmp(jstr(o, "id"), "cmpl-", 5));
  CHECK_TRUE(!strcmp(jstr(o, "model"), "fake"));
  CHECK_TRUE(jnum(o, "created") > 1.6e9);
  CHECK_TRUE(!strcmp(jstr(o, "choices.0.finish_reason"), "length"));
  CHECK_EQ_INT(jnum(o, "choices.0.index"), 0);
  CHECK_EQ_INT(jnum(o, "usage.prompt_tokens"), 3);
  CHECK_EQ_INT(jnum(o, "usage.completion_tokens"), 5);
  CHECK_EQ_INT(jnum(o, "usage.total_tokens"), 8);
  double ttft = jnum(o, "strata.ttft_s"), total = jnum(o, "strata.total_s");
  CHECK_TRUE(ttft >= 0 && ttft <= total);
  json_object_put(o);
  /* Without a seed the fake uses seed 0; default max_tokens is 16. */
  o = post_json("{\"prompt\": \"x\"}", &st);
  CHECK_EQ_INT(st, 200);
  expected_text("x", 0, 0, 16, want, sizeof want);
  CHECK_TRUE(jstr(o, "choices.0.text") && !strcmp(jstr(o, "choices.0.text"), want));
  json_object_put(o);
  stop();
}

/* Splits an SSE body into its data payloads (comments skipped); returns the count. */
static int sse_events(char *body, char **ev, int cap, int *framing_ok) {
  int n = 0;
  *framing_ok = 1;
  char *p = body;
  while (*p) {
    char *e = strstr(p, "\n\n");
    if (!e) {
      *framing_ok = 0; /* an event without its blank-line terminator */
      break;
    }
    *e = '\0';
    if (p[0] == ':') { /* keep-alive comment */
    } else if (!strncmp(p, "data: ", 6)) {
      if (n < cap) ev[n++] = p + 6;
    } else {
      *framing_ok = 0;
    }
    p = e + 2;
  }
  return n;
}

static void check_stream(const char *prompt, uint64_t seed, int max_tokens) {
  char body[256];
  snprintf(body, sizeof body, "{\"prompt\": \"%s\", \"max_tokens\": %d, \"seed\": %llu, \"stream\": true, "
           "\"stream_options\": {\"include_usage\": true}}", prompt, max_tokens, (unsigned long long)seed);
  http_reply_t r;
  hc_request(port, "POST", "/v1/completions", body, strlen(body), TIMEOUT_S, &r);
  CHECK_EQ_INT(r.status, 200);
  char ct[64] = "";
  hc_header(&r, "Content-Type", ct, sizeof ct);
  CHECK_TRUE(!strcmp(ct, "text/event-stream"));
  char *ev[2048];
  int ok = 0, n = r.body ? sse_events(r.body, ev, 2048, &ok) : 0;
  CHECK_TRUE(ok);
  CHECK_EQ_INT(n, max_tokens + 3); /* one chunk per token, the finish chunk, the usage chunk, [DONE] */
  if (n == max_tokens + 3) {
    CHECK_TRUE(!strcmp(ev[n - 1], "[DONE]"));
    char got[8192] = "", want[8192];
    for (int i = 0; i < max_tokens; i++) {
      json_object *c = json_tokener_parse(ev[i]);
      CHECK_TRUE(c != NULL);
      const char *t = c ? jstr(c, "choices.0.text") : NULL;
      if (t) strcat(got, t);
      json_object *fr = NULL;
      CHECK_TRUE(c && json_object_object_get_ex(json_object_array_get_idx(json_object_object_get(c, "choices"), 0),
                                                "finish_reason", &fr) && fr == NULL);
      CHECK_TRUE(c && !strcmp(jstr(c, "object"), "text_completion"));
      json_object_put(c);
    }
    expected_text(prompt, seed, 0, max_tokens, want, sizeof want);
    if (strcmp(got, want)) test_fail(__FILE__, __LINE__, "streamed '%s', expected '%s'", got, want);
    json_object *fin = json_tokener_parse(ev[n - 3]);
    CHECK_TRUE(fin && !strcmp(jstr(fin, "choices.0.finish_reason"), "length"));
    CHECK_TRUE(fin && !strcmp(jstr(fin, "choices.0.text"), ""));
    CHECK_TRUE(fin && !json_object_object_get_ex(fin, "usage", NULL)); /* usage only in its own chunk */
    if (fin) json_object_put(fin);
    json_object *use = json_tokener_parse(ev[n - 2]);
    CHECK_TRUE(use && json_object_array_length(json_object_object_get(use, "choices")) == 0);
    CHECK_EQ_INT(jnum(use, "usage.completion_tokens"), max_tokens);
    if (use) json_object_put(use);
  }
  hc_reply_free(&r);
}

/* Server-sent events: one chunk per token in OpenAI's shape, a final chunk, then [DONE]. */
static void case_stream(void) {
  start(NULL, NULL);
  check_stream("stream me", 11, 6);
  check_stream("one", 0, 1);
  stop();
}

typedef struct {
  int idx;
  int ok;
  char why[768]; /* what went wrong when !ok: status, what the check saw, the start of the body */
} conc_arg_t;

static void *conc_client(void *arg) {
  conc_arg_t *a = arg;
  char prompt[64], body[256], want[1024];
  snprintf(prompt, sizeof prompt, "client %d says hi", a->idx);
  int n = 10 + a->idx;
  snprintf(body, sizeof body, "{\"prompt\": \"%s\", \"max_tokens\": %d, \"seed\": %d, \"stream\": %s}", prompt, n,
           a->idx * 7, a->idx % 2 ? "true" : "false");
  expected_text(prompt, (uint64_t)(a->idx * 7), 0, n, want, sizeof want);
  http_reply_t r;
  hc_request(port, "POST", "/v1/completions", body, strlen(body), TIMEOUT_S, &r);
  a->ok = 0;
  if (r.status == 200 && r.body) {
    if (a->idx % 2) { /* streamed: concatenate the chunk texts */
      char *ev[256], got[1024] = "";
      int fr = 0, ne = sse_events(r.body, ev, 256, &fr);
      for (int i = 0; i + 2 < ne; i++) {
        json_object *c = json_tokener_parse(ev[i]);
        const char *t = c ? jstr(c, "choices.0.text") : NULL;
        if (t && strlen(got) + strlen(t) < sizeof got) strcat(got, t);
        if (c) json_object_put(c);
      }
      a->ok = fr && ne == n + 2 && !strcmp(got, want);
      if (!a->ok) /* the body is cut into events by now: say what the check saw */
        snprintf(a->why, sizeof a->why, "framing %s, %d events (want %d), text '%.150s' (want '%.150s')",
                 fr ? "ok" : "broken", ne, n + 2, got, want);
    } else {
      json_object *o = json_tokener_parse(r.body);
      const char *t = o ? jstr(o, "choices.0.text") : NULL;
      a->ok = t && !strcmp(t, want) && jnum(o, "usage.completion_tokens") == n;
      if (o) json_object_put(o);
    }
  }
  if (!a->ok && !a->why[0])
    snprintf(a->why, sizeof a->why, "status %d, body %.100s", r.status, r.body ? r.body : "(none)");
  hc_reply_free(&r);
  return NULL;
}

/* 16 clients at once (half streaming), batched 4 per step: every answer is its own. */
static void case_concurrent(void) {
  fake_backend_opts_t fo;
  fake_backend_opts_default(&fo);
  fo.max_batch = 4;
  fo.step_delay_s = 0.001;
  start(NULL, &fo);
  enum { N = 16 };
  pthread_t th[N];
  conc_arg_t a[N];
  for (int i = 0; i < N; i++) {
    a[i].idx = i;
    a[i].why[0] = '\0';
    pthread_create(&th[i], NULL, conc_client, &a[i]);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    if (!a[i].ok) /* client i must get exactly its own text */
      test_fail(__FILE__, __LINE__, "concurrent client %d (%s): %s", i, i % 2 ? "streamed" : "plain",
                a[i].why);
    test_checks++;
  }
  stop();
}

/* Expects `status` and an error JSON whose message contains `needle`. */
static void expect_error(const char *method, const char *path, const char *body, int status, const char *needle) {
  http_reply_t r;
  hc_request(port, method, path, body, body ? strlen(body) : 0, TIMEOUT_S, &r);
  if (r.status != status)
    test_fail(__FILE__, __LINE__, "%s %s %s: status %d, expected %d (%s)", method, path, body ? body : "", r.status,
              status, r.body ? r.body : "");
  json_object *o = r.body ? json_tokener_parse(r.body) : NULL;
  const char *m = o ? jstr(o, "error.message") : NULL;
  if (!m || !strstr(m, needle))
    test_fail(__FILE__, __LINE__, "%s %s: message '%s' lacks '%s'", method, path, m ? m : "(none)", needle);
  CHECK_EQ_INT(o ? jnum(o, "error.code") : 0, status);
  if (o) json_object_put(o);
  hc_reply_free(&r);
}

static void expect_health_ok(void) {
  http_reply_t r;
  hc_request(port, "GET", "/health", NULL, 0, TIMEOUT_S, &r);
  CHECK_EQ_INT(r.status, 200);
  hc_reply_free(&r);
}

/* Every bad request gets its 4xx with a message naming the problem; the server stays up. */
static void case_bad_requests(void) {
  serve_opts_t o;
  serve_opts_default(&o);
  o.max_request_bytes = 1024;
  o.max_tokens_limit = 100;
  o.timeout_s = 2;
  start(&o, NULL);
  /* A client that connects and sends half a request must not block anyone (and times out). */
  int slow = hc_connect(port, TIMEOUT_S);
  CHECK_TRUE(slow >= 0);
  const char *half = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro";
  CHECK_TRUE(write(slow, half, strlen(half)) > 0);

  expect_error("POST", "/v1/completions", "{\"prompt\": ", 400, "malformed JSON");
  expect_error("POST", "/v1/completions", "not json", 400, "malformed JSON");
  expect_error("POST", "/v1/completions", "", 400, "empty request body");
  expect_error("POST", "/v1/completions", "[]", 400, "JSON object");
  expect_error("POST", "/v1/completions", "{\"max_tokens\": 5}", 400, "missing field 'prompt'");
  expect_error("POST", "/v1/completions", "{\"prompt\": 3}", 400, "'prompt' must be a string");
  expect_error("POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"5\"}", 400, "'max_tokens'");
  expect_error("POST", "/v1/completions", "{\"prompt\": \"x\", \"temperature\": []}", 400, "'temperature'");
  expect_error("POST", "/v1/completions", "{\"prompt\": \"x\", \"stream\": \"no\"}", 400, "'stream'");
  expect_error("POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 101}", 400, "between 1 and 100");
  expect_error("POST", "/v1/completions", "{\"prompt\": \"x\", \"session\": \"../../etc\"}", 400, "'session'");
  char big[4096];
  memset(big, ' ', sizeof big);
  memcpy(big, "{\"prompt\": \"x\"}", 15);
  big[sizeof big - 1] = '\0';
  expect_error("POST", "/v1/completions", big, 413, "1024 bytes");
  expect_error("GET", "/v1/completions", NULL, 405, "use POST");
  expect_error("POST", "/health", "{}", 405, "use GET");
  expect_error("DELETE", "/metrics", NULL, 405, "use GET");
  expect_error("GET", "/nope", NULL, 404, "no such endpoint");
  expect_error("GET", "/v1/completions/x", NULL, 404, "no such endpoint");
  expect_error("DELETE", "/v1/sessions/bad.id", NULL, 400, "session id");
  expect_error("DELETE", "/v1/sessions/nobody", NULL, 404, "no session 'nobody'");
  /* Backend refusals and failures keep their status. */
  expect_error("POST", "/v1/completions", "{\"prompt\": \"__toolong__ x\"}", 400, "longer than the model's context");
  expect_error("POST", "/v1/completions", "{\"prompt\": \"__fail__\"}", 500, "generation failed");
  /* A failure before the first token gets the same status streamed as unstreamed ... */
  expect_error("POST", "/v1/completions", "{\"prompt\": \"__fail__\", \"stream\": true}", 500, "generation failed");
  expect_error("POST", "/v1/completions", "{\"prompt\": \"__toolong__ x\", \"stream\": true}", 400,
               "longer than the model's context");
  /* ... and one after tokens went out: the tokens, an error event, then [DONE]. */
  http_reply_t r;
  const char *fs = "{\"prompt\": \"__fail_late__\", \"stream\": true, \"max_tokens\": 5}";
  hc_request(port, "POST", "/v1/completions", fs, strlen(fs), TIMEOUT_S, &r);
  CHECK_EQ_INT(r.status, 200);
  CHECK_TRUE(r.body && strstr(r.body, "\"text\":\" w") != NULL);
  CHECK_TRUE(r.body && strstr(r.body, "data: {\"error\"") && strstr(r.body, "generation failed"));
  CHECK_TRUE(r.body && strstr(r.body, "data: [DONE]\n\n"));
  hc_reply_free(&r);
  /* Raw garbage and a body longer than its declared length: an HTTP error, not a crash. */
  char *raw = NULL;
  long n = hc_raw(port, "GARBAGE\r\n\r\n", 11, TIMEOUT_S, &raw);
  CHECK_TRUE(n <= 0 || strncmp(raw, "HTTP/1.1 2", 10) != 0);
  free(raw);
  const char *lying = "POST /v1/completions HTTP/1.0\r\nContent-Length: 99999999999999999999\r\n\r\n{}";
  n = hc_raw(port, lying, strlen(lying), TIMEOUT_S, &raw);
  CHECK_TRUE(n > 0 && strncmp(raw, "HTTP/1.1 4", 10) == 0);
  free(raw);
  expect_health_ok();
  close(slow);
  stop();
}

typedef struct {
  const char *body;
  int status;
  char tail[256]; /* the last bytes of the reply body */
} bg_arg_t;

static void *bg_post(void *arg) {
  bg_arg_t *a = arg;
  http_reply_t r;
  hc_request(port, "POST", "/v1/completions", a->body, strlen(a->body), TIMEOUT_S, &r);
  a->status = r.status;
  a->tail[0] = '\0';
  if (r.body) snprintf(a->tail, sizeof a->tail, "%s", r.body + (r.body_len > 255 ? r.body_len - 255 : 0));
  hc_reply_free(&r);
  return NULL;
}

static json_object *get_health(int *status) {
  http_reply_t r;
  hc_request(port, "GET", "/health", NULL, 0, TIMEOUT_S, &r);
  *status = r.status;
  json_object *o = r.body ? json_tokener_parse(r.body) : NULL;
  hc_reply_free(&r);
  return o;
}

/* Polls /health until `field` reaches `value` (bounded: 10 s). */
static int wait_health(const char *field, double value) {
  for (int i = 0; i < 1000; i++) {
    int st;
    json_object *o = get_health(&st);
    double v = o ? jnum(o, field) : -1;
    if (o) json_object_put(o);
    if (v == value) return 1;
    usleep(10000);
  }
  return 0;
}

/* A full queue answers 429 with Retry-After, naming --max-queue; admitted requests complete. */
static void case_overload(void) {
  serve_opts_t o;
  serve_opts_default(&o);
  o.max_queue = 2;
  fake_backend_opts_t fo;
  fake_backend_opts_default(&fo);
  fo.step_delay_s = 0.02; /* 40 tokens = 0.8 s per request */
  start(&o, &fo);
  bg_arg_t a[2] = {{"{\"prompt\": \"slow one\", \"max_tokens\": 40}", 0, ""},
                   {"{\"prompt\": \"slow two\", \"max_tokens\": 40}", 0, ""}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, bg_post, &a[i]);
  CHECK_TRUE(wait_health("queue_depth", 2));
  http_reply_t r;
  const char *b = "{\"prompt\": \"one too many\"}";
  hc_request(port, "POST", "/v1/completions", b, strlen(b), TIMEOUT_S, &r);
  CHECK_EQ_INT(r.status, 429);
  char ra[16] = "";
  CHECK_EQ_INT(hc_header(&r, "Retry-After", ra, sizeof ra), 0);
  CHECK_TRUE(atoi(ra) >= 1);
  CHECK_TRUE(r.body && strstr(r.body, "--max-queue 2"));
  hc_reply_free(&r);
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    CHECK_EQ_INT(a[i].status, 200);
  }
  stop();
  /* The backend's own capacity: its refusal is a 429 as well. */
  serve_opts_default(&o);
  fake_backend_opts_default(&fo);
  fo.max_pending = 1;
  fo.step_delay_s = 0.02;
  start(&o, &fo);
  bg_arg_t c = {"{\"prompt\": \"slow\", \"max_tokens\": 40}", 0, ""};
  pthread_create(&th[0], NULL, bg_post, &c);
  CHECK_TRUE(wait_health("inflight_sequences", 1));
  expect_error("POST", "/v1/completions", "{\"prompt\": \"x\"}", 429, "backend busy");
  pthread_join(th[0], NULL);
  CHECK_EQ_INT(c.status, 200);
  stop();
}

static void case_health(void) {
  start(NULL, NULL);
  int st;
  json_object *o = get_health(&st);
  CHECK_EQ_INT(st, 200);
  CHECK_TRUE(o && !strcmp(jstr(o, "status"), "ok"));
  CHECK_TRUE(o && !strcmp(jstr(o, "backend"), "fake"));
  CHECK_EQ_INT(jnum(o, "ranks"), 1);
  CHECK_EQ_INT(jnum(o, "stages"), 1);
  CHECK_EQ_INT(jnum(o, "queue_depth"), 0);
  CHECK_EQ_INT(jnum(o, "max_queue"), 64);
  if (o) json_object_put(o);
  stop();
}

/* ---- Prometheus exposition checks ---- */
typedef struct {
  char name[96];
  char labels[96];
  double value;
} sample_t;

/* Parses the text format strictly enough to catch mistakes: every sample's family has a TYPE
 * line first; names are [a-zA-Z_:][a-zA-Z0-9_:]*; values parse. Returns samples or -1. */
static int parse_prom(char *text, sample_t *s, int cap) {
  char types[64][96];
  int ntypes = 0, n = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (!strncmp(line, "# TYPE ", 7)) {
      char name[96], kind[32];
      if (sscanf(line + 7, "%95s %31s", name, kind) != 2) return -1;
      if (strcmp(kind, "counter") && strcmp(kind, "gauge") && strcmp(kind, "histogram")) return -1;
      if (ntypes < 64) snprintf(types[ntypes++], 96, "%s", name);
      continue;
    }
    if (line[0] == '#') continue;
    if (n >= cap) return -1;
    sample_t *x = &s[n];
    size_t k = strcspn(line, "{ ");
    if (k == 0 || k >= sizeof x->name) return -1;
    memcpy(x->name, line, k);
    x->name[k] = '\0';
    for (size_t i = 0; i < k; i++) {
      char c = x->name[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i && c >= '0' && c <= '9')))
        return -1;
    }
    const char *rest = line + k;
    x->labels[0] = '\0';
    if (*rest == '{') {
      const char *e = strchr(rest, '}');
      if (!e || (size_t)(e - rest) >= sizeof x->labels) return -1;
      memcpy(x->labels, rest + 1, (size_t)(e - rest - 1));
      x->labels[e - rest - 1] = '\0';
      rest = e + 1;
    }
    char *end;
    if (*rest != ' ') return -1;
    x->value = strtod(rest + 1, &end);
    if (*end) return -1;
    /* Its family (name minus _bucket/_sum/_count) must have been TYPEd. */
    int typed = 0;
    for (int t = 0; t < ntypes; t++) {
      size_t tl = strlen(types[t]);
      if (!strncmp(x->name, types[t], tl) &&
          (!x->name[tl] || !strcmp(x->name + tl, "_bucket") || !strcmp(x->name + tl, "_sum") || !strcmp(x->name + tl, "_count")))
        typed = 1;
    }
    if (!typed) return -1;
    n++;
  }
  return n;
}

static double find(const sample_t *s, int n, const char *name, const char *labels) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s[i].name, name) && !strcmp(s[i].labels, labels ? labels : "")) return s[i].value;
  return -1;
}

static int scrape(sample_t *s, int cap) {
  http_reply_t r;
  hc_request(port, "GET", "/metrics", NULL, 0, TIMEOUT_S, &r);
  CHECK_EQ_INT(r.status, 200);
  char ct[96] = "";
  hc_header(&r, "Content-Type", ct, sizeof ct);
  CHECK_TRUE(strstr(ct, "text/plain") && strstr(ct, "version=0.0.4"));
  int n = r.body ? parse_prom(r.body, s, cap) : -1;
  hc_reply_free(&r);
  CHECK_TRUE(n > 0);
  return n;
}

/* Buckets of histogram `name`: le increasing, counts non-decreasing, +Inf == _count. */
static void check_histogram(const sample_t *s, int n, const char *name) {
  char bname[128], cname[128];
  snprintf(bname, sizeof bname, "%s_bucket", name);
  snprintf(cname, sizeof cname, "%s_count", name);
  double prev_le = -1, prev_v = 0, inf_v = -1;
  int nb = 0;
  for (int i = 0; i < n; i++) {
    if (strcmp(s[i].name, bname)) continue;
    nb++;
    const char *le = strstr(s[i].labels, "le=\"");
    CHECK_TRUE(le != NULL);
    if (!le) continue;
    if (!strncmp(le + 4, "+Inf", 4)) {
      inf_v = s[i].value;
      CHECK_TRUE(s[i].value >= prev_v);
      continue;
    }
    double b = atof(le + 4);
    CHECK_TRUE(b > prev_le);
    CHECK_TRUE(s[i].value >= prev_v);
    prev_le = b, prev_v = s[i].value;
  }
  CHECK_TRUE(nb >= 2);
  CHECK_EQ_INT(inf_v, find(s, n, cname, NULL));
}

static void case_metrics(void) {
  start(NULL, NULL);
  static sample_t a[256], b[256];
  int na = scrape(a, 256);
  check_histogram(a, na, "strata_request_latency_seconds");
  check_histogram(a, na, "strata_time_to_first_token_seconds");
  double tok0 = find(a, na, "strata_tokens_generated_total", NULL);
  double ok0 = find(a, na, "strata_http_requests_total", "code=\"200\"");
  double lat0 = find(a, na, "strata_request_latency_seconds_count", NULL);
  CHECK_EQ_INT(tok0, 0);
  CHECK_TRUE(find(a, na, "strata_queue_depth", NULL) == 0);
  CHECK_TRUE(find(a, na, "strata_active_sessions", NULL) >= 0);
  CHECK_TRUE(find(a, na, "strata_kv_cache_bytes", NULL) >= 0);
  int st;
  json_object *o = post_json("{\"prompt\": \"count me\", \"max_tokens\": 5}", &st);
  CHECK_EQ_INT(st, 200);
  if (o) json_object_put(o);
  o = post_json("{\"prompt\": \"count me too\", \"max_tokens\": 7, \"session\": \"m1\"}", &st);
  CHECK_EQ_INT(st, 200);
  if (o) json_object_put(o);
  o = post_json("{\"prompt\": 1}", &st);
  CHECK_EQ_INT(st, 400);
  if (o) json_object_put(o);
  usleep(300000); /* gauges are sampled every 0.1 s */
  int nb = scrape(b, 256);
  check_histogram(b, nb, "strata_request_latency_seconds");
  check_histogram(b, nb, "strata_time_to_first_token_seconds");
  CHECK_EQ_INT(find(b, nb, "strata_tokens_generated_total", NULL), tok0 + 12);
  CHECK_EQ_INT(find(b, nb, "strata_prompt_tokens_total", NULL), 2 + 3);
  CHECK_TRUE(find(b, nb, "strata_http_requests_total", "code=\"200\"") >= ok0 + 2);
  CHECK_EQ_INT(find(b, nb, "strata_http_requests_total", "code=\"400\""), 1);
  CHECK_EQ_INT(find(b, nb, "strata_request_latency_seconds_count", NULL), lat0 + 2);
  CHECK_EQ_INT(find(b, nb, "strata_time_to_first_token_seconds_count", NULL), 2);
  CHECK_EQ_INT(find(b, nb, "strata_active_sessions", NULL), 1);
  CHECK_EQ_INT(find(b, nb, "strata_kv_cache_bytes", NULL), (3 + 7) * 1024); /* fake: 1 KiB per session token */
  stop();
}

/* A client that disconnects (streaming or waiting) gets its request cancelled; the server keeps serving. */
static void case_disconnect(void) {
  fake_backend_opts_t fo;
  fake_backend_opts_default(&fo);
  fo.step_delay_s = 0.05; /* 1000 tokens would take 50 s: only a cancel ends them within wait_health's 10 s */
  serve_opts_t o;
  serve_opts_default(&o);
  o.keepalive_s = 0.2;
  start(&o, &fo);
  for (int round = 0; round < 3; round++) {
    int fd = hc_connect(port, TIMEOUT_S);
    CHECK_TRUE(fd >= 0);
    const char *b = "{\"prompt\": \"long\", \"max_tokens\": 1000, \"stream\": true}";
    char req[256];
    int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(b), b);
    CHECK_TRUE(write(fd, req, (size_t)n) == n);
    char buf[512];
    ssize_t k = read(fd, buf, sizeof buf - 1); /* headers and the first chunk(s) */
    CHECK_TRUE(k > 0);
    buf[k > 0 ? k : 0] = '\0';
    CHECK_TRUE(strstr(buf, "200") != NULL);
    close(fd);
    CHECK_TRUE(wait_health("inflight_sequences", 0)); /* cancelled well before its 10 s */
    CHECK_TRUE(wait_health("queue_depth", 0));
  }
  /* The same for a non-streaming request whose client hangs up while it waits. */
  for (int round = 0; round < 2; round++) {
    int fd = hc_connect(port, TIMEOUT_S);
    CHECK_TRUE(fd >= 0);
    const char *b = "{\"prompt\": \"long\", \"max_tokens\": 1000}";
    char req[256];
    int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(b), b);
    CHECK_TRUE(write(fd, req, (size_t)n) == n);
    CHECK_TRUE(wait_health("inflight_sequences", 1));
    close(fd);
    CHECK_TRUE(wait_health("inflight_sequences", 0));
    CHECK_TRUE(wait_health("queue_depth", 0));
  }
  int st;
  json_object *j = post_json("{\"prompt\": \"still alive\", \"max_tokens\": 2}", &st);
  CHECK_EQ_INT(st, 200);
  if (j) json_object_put(j);
  stop();
}

/* Sessions: a follow-up continues the session's token index; list; delete. */
static void case_sessions(void) {
  start(NULL, NULL);
  int st;
  json_object *o = post_json("{\"prompt\": \"a b\", \"max_tokens\": 3, \"session\": \"s-1\"}", &st);
  CHECK_EQ_INT(st, 200);
  CHECK_TRUE(o && !strcmp(jstr(o, "session"), "s-1"));
  CHECK_EQ_INT(o ? jnum(o, "usage.prompt_tokens_details.cached_tokens") : -1, 0);
  if (o) json_object_put(o);
  http_reply_t r;
  hc_request(port, "GET", "/v1/sessions", NULL, 0, TIMEOUT_S, &r);
  CHECK_EQ_INT(r.status, 200);
  o = r.body ? json_tokener_parse(r.body) : NULL;
  CHECK_TRUE(o && !strcmp(jstr(o, "data.0.id"), "s-1"));
  CHECK_EQ_INT(o ? jnum(o, "data.0.tokens") : -1, 5);
  if (o) json_object_put(o);
  hc_reply_free(&r);
  o = post_json("{\"prompt\": \"c\", \"max_tokens\": 2, \"session\": \"s-1\"}", &st);
  CHECK_EQ_INT(st, 200);
  char want[128];
  expected_text("c", 0, 5, 2, want, sizeof want);
  CHECK_TRUE(o && !strcmp(jstr(o, "choices.0.text"), want));
  CHECK_EQ_INT(o ? jnum(o, "usage.prompt_tokens_details.cached_tokens") : -1, 5);
  if (o) json_object_put(o);
  hc_request(port, "DELETE", "/v1/sessions/s-1", NULL, 0, TIMEOUT_S, &r);
  CHECK_EQ_INT(r.status, 200);
  hc_reply_free(&r);
  expect_error("DELETE", "/v1/sessions/s-1", NULL, 404, "no session 's-1'");
  stop();
}

/* Stop while a stream is in flight: new requests get 503 during the drain, the stream ends with
 * an error event after the grace period, and no server thread survives serve_destroy. */
static void case_shutdown(void) {
  int threads0 = count_threads();
  serve_opts_t o;
  serve_opts_default(&o);
  o.shutdown_grace_s = 1.0;
  fake_backend_opts_t fo;
  fake_backend_opts_default(&fo);
  fo.step_delay_s = 0.01;
  start(&o, &fo);
  bg_arg_t a = {"{\"prompt\": \"never done\", \"max_tokens\": 1000, \"stream\": true}", 0, ""};
  pthread_t th;
  pthread_create(&th, NULL, bg_post, &a);
  CHECK_TRUE(wait_health("inflight_sequences", 1));
  serve_stop(srv);
  int st = 0;
  for (int i = 0; i < 500 && st != 503; i++) {
    json_object *h = get_health(&st);
    if (h) json_object_put(h);
    if (st != 503) usleep(10000);
  }
  CHECK_EQ_INT(st, 503);
  expect_error("POST", "/v1/completions", "{\"prompt\": \"late\"}", 503, "shutting down");
  pthread_join(loop_thread, NULL);
  CHECK_EQ_INT(loop_rc, 0);
  pthread_join(th, NULL);
  CHECK_EQ_INT(a.status, 200); /* the stream started before the stop */
  /* ... and was cancelled after the grace period (1000 tokens need 10 s): error event, [DONE]. */
  CHECK_TRUE(strstr(a.tail, "\"code\":503") && strstr(a.tail, "shutting down"));
  CHECK_TRUE(strstr(a.tail, "data: [DONE]\n\n") != NULL);
  serve_destroy(srv);
  CHECK_EQ_INT(count_threads(), threads0);
}

int main(int argc, char **argv) {
  const char *c = argc > 1 ? argv[1] : "all";
  struct {
    const char *name;
    void (*fn)(void);
  } cases[] = {{"happy", case_happy},       {"stream", case_stream},   {"concurrent", case_concurrent},
               {"bad_requests", case_bad_requests}, {"overload", case_overload}, {"health", case_health},
               {"metrics", case_metrics},   {"disconnect", case_disconnect}, {"sessions", case_sessions},
               {"shutdown", case_shutdown}};
  int ran = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (!strcmp(c, "all") || !strcmp(c, cases[i].name)) cases[i].fn(), ran++;
  if (!ran) {
    fprintf(stderr, "unknown case '%s'\n", c);
    return 2;
  }
  return test_finish(c);
}
