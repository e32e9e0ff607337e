/* http_load -- a bounded load generator for `strata serve` (launch/http_bench.sh drives it):
 * C client threads each send POST /v1/completions back to back to 127.0.0.1:PORT (loopback only)
 * until --requests are done or --duration-s passes, and it reports throughput and latency
 * percentiles. One line of text, or one JSON object with --json:
 *   {"connections":8,"requests":400,"ok":400,"errors":0,"seconds":1.9,"requests_per_s":210.5,
 *    "tokens_per_s":3368.4,"p50_s":0.037,"p90_s":0.041,"p99_s":0.052,"max_s":0.060}
 * Latency is request sent -> whole reply read (for --stream, -> [DONE]). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "http_client.h"

#define LOAD_MAX_CONNECTIONS 512 /* bound on client threads */
#define LOAD_MAX_DURATION_S 600  /* bound on a run */

typedef struct {
  int port, max_tokens, stream, idx;
  double deadline_s;         /* monotonic time to stop */
  int *remaining;            /* shared request budget */
  pthread_mutex_t *mu;
  double *lat;               /* latencies of this thread, seconds */
  int nlat, cap;
  long ok, errors, tokens;
} worker_t;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  char body[256];
  for (int k = 0;; k++) {
    pthread_mutex_lock(w->mu);
    int go = *w->remaining > 0;
    if (go) (*w->remaining)--;
    pthread_mutex_unlock(w->mu);
    if (!go || now_s() >= w->deadline_s) break;
    snprintf(body, sizeof body, "{\"prompt\": \"load client %d request %d\", \"max_tokens\": %d, \"seed\": %d, \"stream\": %s}",
             w->idx, k, w->max_tokens, k, w->stream ? "true" : "false");
    double t0 = now_s();
    http_reply_t r;
    hc_request(w->port, "POST", "/v1/completions", body, strlen(body), 60.0, &r);
    double dt = now_s() - t0;
    int good = r.status == 200 && r.body && (w->stream ? strstr(r.body, "data: [DONE]") != NULL : 1) &&
               !strstr(r.body, "\"error\"");
    if (good) {
      w->ok++;
      const char *c = strstr(r.body, "\"completion_tokens\":");
      if (c) w->tokens += atol(c + 20);
      if (w->nlat == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        w->lat = realloc(w->lat, sizeof *w->lat * (size_t)w->cap);
      }
      w->lat[w->nlat++] = dt;
    } else {
      w->errors++;
    }
    hc_reply_free(&r);
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p) {
  if (n == 0) return 0;
  int i = (int)(p * (n - 1) + 0.5);
  return v[i];
}

int main(int argc, char **argv) {
  int port = 0, conns = 8, requests = 200, max_tokens = 16, stream = 0, json = 0;
  double duration_s = 30;
  arg_spec_t specs[] = {
      {"--port", NULL, ARG_INT, &port, "P", "server port on 127.0.0.1 (required)"},
      {"--connections", "-c", ARG_INT, &conns, "N", "concurrent clients (default 8, at most 512)"},
      {"--requests", "-n", ARG_INT, &requests, "N", "total requests (default 200)"},
      {"--duration-s", NULL, ARG_DOUBLE, &duration_s, "S", "stop sending after S seconds (default 30, at most 600)"},
      {"--max-tokens", NULL, ARG_INT, &max_tokens, "N", "max_tokens per request (default 16)"},
      {"--stream", NULL, ARG_FLAG, &stream, NULL, "use server-sent events"},
      {"--json", NULL, ARG_FLAG, &json, NULL, "print one JSON object"},
  };
  int rc = args_parse("http_load", "Load-test a strata serve endpoint on loopback.", argc, argv, specs,
                      (int)(sizeof specs / sizeof specs[0]), NULL, NULL);
  if (rc) return rc > 0 ? 0 : 2;
  if (port < 1 || port > 65535 || conns < 1 || conns > LOAD_MAX_CONNECTIONS || requests < 1 || max_tokens < 1 ||
      !(duration_s > 0 && duration_s <= LOAD_MAX_DURATION_S)) {
    fprintf(stderr, "http_load: need --port 1..65535, --connections 1..%d, --requests >= 1, --max-tokens >= 1, "
                    "--duration-s in (0, %d]\n", LOAD_MAX_CONNECTIONS, LOAD_MAX_DURATION_S);
    return 2;
  }
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  int remaining = requests;
  worker_t *w = calloc((size_t)conns, sizeof *w);
  pthread_t *th = calloc((size_t)conns, sizeof *th);
  double t0 = now_s();
  for (int i = 0; i < conns; i++) {
    w[i] = (worker_t){port, max_tokens, stream, i, t0 + duration_s, &remaining, &mu, NULL, 0, 0, 0, 0, 0};
    pthread_create(&th[i], NULL, worker_main, &w[i]);
  }
  long ok = 0, errors = 0, tokens = 0;
  int n = 0;
  for (int i = 0; i < conns; i++) {
    pthread_join(th[i], NULL);
    ok += w[i].ok, errors += w[i].errors, tokens += w[i].tokens, n += w[i].nlat;
  }
  double secs = now_s() - t0;
  double *all = malloc(sizeof *all * (size_t)(n ? n : 1));
  int k = 0;
  for (int i = 0; i < conns; i++) {
    memcpy(all + k, w[i].lat, sizeof *all * (size_t)w[i].nlat);
    k += w[i].nlat;
    free(w[i].lat);
  }
  qsort(all, (size_t)n, sizeof *all, cmp_double);
  double p50 = pct(all, n, 0.5), p90 = pct(all, n, 0.9), p99 = pct(all, n, 0.99), mx = n ? all[n - 1] : 0;
  if (json)
    printf("{\"connections\":%d,\"requests\":%ld,\"ok\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"requests_per_s\":%.1f,"
           "\"tokens_per_s\":%.1f,\"p50_s\":%.4f,\"p90_s\":%.4f,\"p99_s\":%.4f,\"max_s\":%.4f}\n",
           conns, ok + errors, ok, errors, secs, ok / secs, tokens / secs, p50, p90, p99, mx);
  else
    printf("connections %3d  requests %5ld  errors %4ld  %8.1f req/s  %9.1f tok/s  p50 %.4f s  p99 %.4f s  max %.4f s\n",
           conns, ok + errors, errors, ok / secs, tokens / secs, p50, p99, mx);
  free(all);
  free(w);
  free(th);
  return errors ? 1 : 0;
}
