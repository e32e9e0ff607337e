/* metrics.h -- the serving metrics of `strata serve`, rendered as Prometheus text exposition
 * (format version 0.0.4, served by GET /metrics).
 *
 * One metrics_t per server; every function is thread-safe (one mutex), so HTTP threads and the
 * main loop record concurrently. Exposed series (all names prefixed strata_):
 *   strata_http_requests_total{code="200"}   counter, responses sent by HTTP status
 *   strata_tokens_generated_total            counter, completion tokens produced
 *   strata_prompt_tokens_total               counter, prompt tokens consumed
 *   strata_request_latency_seconds           histogram, request arrival -> last token
 *   strata_time_to_first_token_seconds       histogram, request arrival -> first token
 *   strata_queue_depth                       gauge, admitted requests not yet finished
 *   strata_active_sessions                   gauge, sessions the backend holds
 *   strata_kv_cache_bytes                    gauge, KV-cache bytes the backend holds
 *   strata_inflight_sequences                gauge, sequences the backend is generating
 *   strata_http_connections                  gauge, HTTP connections open
 *   strata_http_connections_evicted_total{limit="per_client"|"total"}
 *                                            counter, connections still receiving their request
 *                                            closed to admit a new one under that limit
 *   strata_http_connections_refused_total{limit="per_client"|"total"}
 *                                            counter, new connections answered 503 at that limit
 *   strata_http_header_deadline_closed_total counter, connections closed at the header deadline
 *   strata_num_requests_running              gauge, sequences (choices) the backend is generating
 *   strata_num_requests_waiting              gauge, sequences admitted, not yet generating
 *                                            (vLLM's vllm:num_requests_running / _waiting)
 *   strata_build_info{version,model}         gauge, always 1
 * and the standard process_* series (process_metrics.h).
 * Histogram buckets (seconds) are fixed: 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 +Inf.
 */
#ifndef STRATA_METRICS_H
#define STRATA_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "http_server.h"

typedef struct metrics metrics_t;

/* Content-Type of the exposition, for the HTTP response. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Allocates a zeroed metrics set; NULL when out of memory. */
metrics_t *metrics_create(void);
void metrics_destroy(metrics_t *m);

/* Counts one HTTP response with status `code` (100..599; others are counted as 0). */
void metrics_count_response(metrics_t *m, int code);
/* Adds generated (completion) and prompt tokens. */
void metrics_add_tokens(metrics_t *m, uint64_t completion_tokens, uint64_t prompt_tokens);
/* Observes one finished request: total latency and time to first token (ttft_s < 0 = no token). */
void metrics_observe_request(metrics_t *m, double latency_s, double ttft_s);
/* Sets the gauges (values sampled by the server's main loop). */
void metrics_set_gauges(metrics_t *m, int64_t queue_depth, int64_t active_sessions, int64_t kv_cache_bytes,
                        int64_t inflight_sequences);

/* The session store's state (sampled with the gauges): committed bytes on disk, the quota (0 =
 * none), 1 while degraded (the most recent save failed), and the totals of failed saves and of
 * sessions evicted to keep within the quota. */
void metrics_set_session_store(metrics_t *m, int64_t disk_bytes, int64_t quota_bytes, int degraded,
                               uint64_t save_failures, uint64_t evictions);

/* Sets the HTTP layer's connection counters (http_server_counters(), sampled before a render). */
void metrics_set_http_connections(metrics_t *m, const http_server_counters_t *c);

/* Sets the running / waiting gauges (sampled by the server's main loop). */
void metrics_set_requests(metrics_t *m, int64_t running, int64_t waiting);
/* Sets strata_build_info's labels (no quotes or backslashes). */
void metrics_set_build_info(metrics_t *m, const char *version, const char *model);

/* Renders the exposition into a malloc'd NUL-terminated string (*len_out = strlen). NULL when
 * out of memory. */
char *metrics_render(metrics_t *m, size_t *len_out);

#endif
