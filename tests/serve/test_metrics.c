/* The Prometheus exposition of worker/serve/metrics.c against hand-computed values: cumulative
 * histogram buckets, _sum and _count, counters by status code, gauges, TYPE/HELP lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "test_util.h"

static void expect_line(const char *text, const char *line) {
  char want[256];
  snprintf(want, sizeof want, "\n%s\n", line);
  if (!strstr(text, want)) test_fail(__FILE__, __LINE__, "exposition lacks the line '%s'", line);
}

int main(void) {
  metrics_t *m = metrics_create();
  CHECK_TRUE(m != NULL);
  size_t len = 0;
  char *t = metrics_render(m, &len);
  CHECK_TRUE(t && strlen(t) == len);
  expect_line(t, "strata_http_requests_total{code=\"200\"} 0"); /* the family exists before any request */
  expect_line(t, "strata_request_latency_seconds_bucket{le=\"+Inf\"} 0");
  free(t);

  metrics_count_response(m, 200);
  metrics_count_response(m, 200);
  metrics_count_response(m, 429);
  metrics_count_response(m, 1000); /* out of range: counted as code 0 */
  metrics_add_tokens(m, 16, 3);
  metrics_add_tokens(m, 4, 2);
  /* latencies 0.003, 0.007, 0.5, 100 s; ttft 0.004, 0.2 and one request without a token */
  metrics_observe_request(m, 0.003, 0.004);
  metrics_observe_request(m, 0.007, -1);
  metrics_observe_request(m, 0.5, 0.2);
  metrics_observe_request(m, 100, -1);
  metrics_set_gauges(m, 3, 2, 4096, 1);
  http_server_counters_t hc = {.evicted_per_client = 7, .evicted_total = 2, .refused_per_client = 1,
                               .refused_total = 4, .deadline_closed = 9, .open = 12};
  metrics_set_http_connections(m, &hc);
  t = metrics_render(m, &len);
  CHECK_TRUE(t != NULL);
  if (!t) return test_finish("metrics");
  CHECK_TRUE(!strncmp(t, "# HELP strata_http_requests_total ", 34));
  expect_line(t, "# TYPE strata_http_requests_total counter");
  expect_line(t, "strata_http_requests_total{code=\"200\"} 2");
  expect_line(t, "strata_http_requests_total{code=\"429\"} 1");
  expect_line(t, "strata_http_requests_total{code=\"0\"} 1");
  expect_line(t, "# TYPE strata_tokens_generated_total counter");
  expect_line(t, "strata_tokens_generated_total 20");
  expect_line(t, "strata_prompt_tokens_total 5");
  expect_line(t, "# TYPE strata_request_latency_seconds histogram");
  /* cumulative: <=0.005: 1; <=0.01: 2; <=0.25: 2; <=0.5: 3; <=60: 3; +Inf: 4 */
  expect_line(t, "strata_request_latency_seconds_bucket{le=\"0.005\"} 1");
  expect_line(t, "strata_request_latency_seconds_bucket{le=\"0.01\"} 2");
  expect_line(t, "strata_request_latency_seconds_bucket{le=\"0.25\"} 2");
  expect_line(t, "strata_request_latency_seconds_bucket{le=\"0.5\"} 3");
  expect_line(t, "strata_request_latency_seconds_bucket{le=\"60\"} 3");
  expect_line(t, "strata_request_latency_seconds_bucket{le=\"+Inf\"} 4");
  expect_line(t, "strata_request_latency_seconds_sum 100.51");
  expect_line(t, "strata_request_latency_seconds_count 4");
  expect_line(t, "strata_time_to_first_token_seconds_bucket{le=\"0.005\"} 1");
  expect_line(t, "strata_time_to_first_token_seconds_bucket{le=\"0.1\"} 1");
  expect_line(t, "strata_time_to_first_token_seconds_bucket{le=\"0.25\"} 2");
  expect_line(t, "strata_time_to_first_token_seconds_count 2");
  expect_line(t, "strata_time_to_first_token_seconds_sum 0.204");
  expect_line(t, "# TYPE strata_queue_depth gauge");
  expect_line(t, "strata_queue_depth 3");
  expect_line(t, "strata_active_sessions 2");
  expect_line(t, "strata_kv_cache_bytes 4096");
  expect_line(t, "strata_inflight_sequences 1");
  expect_line(t, "# TYPE strata_http_connections gauge");
  expect_line(t, "strata_http_connections 12");
  expect_line(t, "# TYPE strata_http_connections_evicted_total counter");
  expect_line(t, "strata_http_connections_evicted_total{limit=\"per_client\"} 7");
  expect_line(t, "strata_http_connections_evicted_total{limit=\"total\"} 2");
  expect_line(t, "# TYPE strata_http_connections_refused_total counter");
  expect_line(t, "strata_http_connections_refused_total{limit=\"per_client\"} 1");
  expect_line(t, "strata_http_connections_refused_total{limit=\"total\"} 4");
  expect_line(t, "# TYPE strata_http_header_deadline_closed_total counter");
  expect_line(t, "strata_http_header_deadline_closed_total 9");
  CHECK_TRUE(t[len - 1] == '\n'); /* the format requires a final line feed */
  free(t);
  metrics_destroy(m);
  return test_finish("metrics");
}
