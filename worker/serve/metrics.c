/* metrics.c -- counters, gauges and histograms of `strata serve` and their Prometheus text
 * rendering (see metrics.h). Fixed series, so no registry: a struct of numbers under one mutex. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process_metrics.h"

static const double metrics_buckets_s[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define METRICS_NBUCKETS ((int)(sizeof metrics_buckets_s / sizeof metrics_buckets_s[0]))
#define METRICS_NCODES 600 /* HTTP status codes 0..599 */

typedef struct {
  uint64_t bucket[METRICS_NBUCKETS]; /* observations <= bound (non-cumulative; summed when rendered) */
  uint64_t count;                    /* all observations (the +Inf bucket) */
  double sum_s;                      /* sum of observed values, seconds */
} histogram_t;

struct metrics {
  pthread_mutex_t mu;
  uint64_t responses[METRICS_NCODES]; /* responses by HTTP status */
  uint64_t completion_tokens;         /* tokens generated */
  uint64_t prompt_tokens;             /* prompt tokens consumed */
  histogram_t latency;                /* request latency, seconds */
  histogram_t ttft;                   /* time to first token, seconds */
  int64_t queue_depth, active_sessions, kv_cache_bytes, inflight; /* gauges */
  int64_t session_disk_bytes, session_quota_bytes, session_degraded; /* session store gauges */
  uint64_t session_save_failures, session_evictions;                /* session store counters */
  http_server_counters_t http;        /* the HTTP layer's connection counters, as last set */
  int64_t running, waiting;           /* sequences generating / waiting for the backend */
  char version[64];                   /* strata_build_info's version label */
  char model[64];                     /* its model label */
};

void metrics_set_requests(metrics_t *m, int64_t running, int64_t waiting) {
  pthread_mutex_lock(&m->mu);
  m->running = running;
  m->waiting = waiting;
  pthread_mutex_unlock(&m->mu);
}

void metrics_set_build_info(metrics_t *m, const char *version, const char *model) {
  pthread_mutex_lock(&m->mu);
  snprintf(m->version, sizeof m->version, "%s", version && *version ? version : "unknown");
  snprintf(m->model, sizeof m->model, "%s", model ? model : "");
  pthread_mutex_unlock(&m->mu);
}

metrics_t *metrics_create(void) {
  metrics_t *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  pthread_mutex_init(&m->mu, NULL);
  return m;
}

void metrics_destroy(metrics_t *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->mu);
  free(m);
}

void metrics_count_response(metrics_t *m, int code) {
  if (code < 100 || code >= METRICS_NCODES) code = 0;
  pthread_mutex_lock(&m->mu);
  m->responses[code]++;
  pthread_mutex_unlock(&m->mu);
}

void metrics_add_tokens(metrics_t *m, uint64_t completion_tokens, uint64_t prompt_tokens) {
  pthread_mutex_lock(&m->mu);
  m->completion_tokens += completion_tokens;
  m->prompt_tokens += prompt_tokens;
  pthread_mutex_unlock(&m->mu);
}

static void observe(histogram_t *h, double v) {
  if (!(v >= 0)) v = 0; /* NaN or negative clock skew */
  for (int i = 0; i < METRICS_NBUCKETS; i++)
    if (v <= metrics_buckets_s[i]) {
      h->bucket[i]++;
      break;
    }
  h->count++;
  h->sum_s += v;
}

void metrics_observe_request(metrics_t *m, double latency_s, double ttft_s) {
  pthread_mutex_lock(&m->mu);
  observe(&m->latency, latency_s);
  if (ttft_s >= 0) observe(&m->ttft, ttft_s);
  pthread_mutex_unlock(&m->mu);
}

void metrics_set_gauges(metrics_t *m, int64_t queue_depth, int64_t active_sessions, int64_t kv_cache_bytes,
                        int64_t inflight_sequences) {
  pthread_mutex_lock(&m->mu);
  m->queue_depth = queue_depth;
  m->active_sessions = active_sessions;
  m->kv_cache_bytes = kv_cache_bytes;
  m->inflight = inflight_sequences;
  pthread_mutex_unlock(&m->mu);
}

void metrics_set_session_store(metrics_t *m, int64_t disk_bytes, int64_t quota_bytes, int degraded,
                               uint64_t save_failures, uint64_t evictions) {
  pthread_mutex_lock(&m->mu);
  m->session_disk_bytes = disk_bytes;
  m->session_quota_bytes = quota_bytes;
  m->session_degraded = degraded;
  m->session_save_failures = save_failures;
  m->session_evictions = evictions;
  pthread_mutex_unlock(&m->mu);
}

void metrics_set_http_connections(metrics_t *m, const http_server_counters_t *c) {
  pthread_mutex_lock(&m->mu);
  m->http = *c;
  pthread_mutex_unlock(&m->mu);
}

typedef struct {
  char *buf;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t ncap = b->cap * 2 + (size_t)n + 1;
    char *nb = realloc(b->buf, ncap);
    if (!nb) {
      b->oom = 1;
      return;
    }
    b->buf = nb;
    b->cap = ncap;
  }
}

static void render_hist(sbuf_t *b, const char *name, const char *help, const histogram_t *h) {
  sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (int i = 0; i < METRICS_NBUCKETS; i++) {
    cum += h->bucket[i];
    sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, metrics_buckets_s[i], (unsigned long long)cum);
  }
  sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
  sb_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum_s, name, (unsigned long long)h->count);
}

static void render_gauge(sbuf_t *b, const char *name, const char *help, int64_t v) {
  sb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, (long long)v);
}

static void render_counter(sbuf_t *b, const char *name, const char *help, uint64_t v) {
  sb_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

char *metrics_render(metrics_t *m, size_t *len_out) {
  sbuf_t b = {malloc(4096), 0, 4096, 0};
  if (!b.buf) return NULL;
  b.buf[0] = '\0';
  pthread_mutex_lock(&m->mu);
  metrics_t s = *m; /* snapshot; the copied mutex is never used */
  pthread_mutex_unlock(&m->mu);

  sb_printf(&b, "# HELP strata_http_requests_total HTTP responses sent, by status code.\n"
                "# TYPE strata_http_requests_total counter\n");
  int any = 0;
  for (int c = 0; c < METRICS_NCODES; c++)
    if (s.responses[c]) {
      sb_printf(&b, "strata_http_requests_total{code=\"%d\"} %llu\n", c, (unsigned long long)s.responses[c]);
      any = 1;
    }
  if (!any) sb_printf(&b, "strata_http_requests_total{code=\"200\"} 0\n");
  render_counter(&b, "strata_tokens_generated_total", "Completion tokens generated.", s.completion_tokens);
  render_counter(&b, "strata_prompt_tokens_total", "Prompt tokens consumed.", s.prompt_tokens);
  render_hist(&b, "strata_request_latency_seconds", "Completion request latency, arrival to last token.", &s.latency);
  render_hist(&b, "strata_time_to_first_token_seconds", "Time from request arrival to its first token.", &s.ttft);
  render_gauge(&b, "strata_queue_depth", "Admitted completion requests not yet finished.", s.queue_depth);
  render_gauge(&b, "strata_active_sessions", "Stateful sessions held by the backend.", s.active_sessions);
  render_gauge(&b, "strata_kv_cache_bytes", "KV-cache bytes held by the backend.", s.kv_cache_bytes);
  render_gauge(&b, "strata_inflight_sequences", "Sequences the backend is generating.", s.inflight);
  render_gauge(&b, "strata_session_disk_bytes", "Bytes of committed sessions on disk, every stage.", s.session_disk_bytes);
  render_gauge(&b, "strata_session_disk_quota_bytes", "The session disk quota (0: none).", s.session_quota_bytes);
  render_gauge(&b, "strata_session_store_degraded", "1 while the most recent session save failed.", s.session_degraded);
  render_counter(&b, "strata_session_save_failures_total", "Session saves that failed (the requests got 507).",
                 s.session_save_failures);
  render_counter(&b, "strata_session_disk_evictions_total", "Sessions deleted to keep within the disk quota.",
                 s.session_evictions);
  render_gauge(&b, "strata_http_connections", "HTTP connections open.", (int64_t)s.http.open);
  render_gauge(&b, "strata_num_requests_running", "Sequences (choices) the backend is generating.", s.running);
  render_gauge(&b, "strata_num_requests_waiting", "Sequences (choices) admitted and waiting for the backend.",
               s.waiting);
  /* label values: the version and model names hold no quotes or backslashes (checked by their makers) */
  sb_printf(&b, "# HELP strata_build_info Strata's version and the served model (value 1).\n"
                "# TYPE strata_build_info gauge\nstrata_build_info{version=\"%s\",model=\"%s\"} 1\n",
            s.version[0] ? s.version : "unknown", s.model);
  char proc[2048];
  if (process_metrics_format(proc, sizeof proc) < sizeof proc) sb_printf(&b, "%s", proc);
  sb_printf(&b, "# HELP strata_http_connections_evicted_total Connections still receiving their request, closed "
                "to admit a new one under the per-client or the total limit.\n"
                "# TYPE strata_http_connections_evicted_total counter\n"
                "strata_http_connections_evicted_total{limit=\"per_client\"} %llu\n"
                "strata_http_connections_evicted_total{limit=\"total\"} %llu\n",
            (unsigned long long)s.http.evicted_per_client, (unsigned long long)s.http.evicted_total);
  sb_printf(&b, "# HELP strata_http_connections_refused_total New connections answered 503 because every connection "
                "under the limit was being served.\n"
                "# TYPE strata_http_connections_refused_total counter\n"
                "strata_http_connections_refused_total{limit=\"per_client\"} %llu\n"
                "strata_http_connections_refused_total{limit=\"total\"} %llu\n",
            (unsigned long long)s.http.refused_per_client, (unsigned long long)s.http.refused_total);
  render_counter(&b, "strata_http_header_deadline_closed_total",
                 "Connections closed because their request had not arrived within the header deadline.",
                 s.http.deadline_closed);
  if (b.oom) {
    free(b.buf);
    return NULL;
  }
  if (len_out) *len_out = b.len;
  return b.buf;
}
