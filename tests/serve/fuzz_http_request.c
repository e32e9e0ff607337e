/* fuzz_http_request.c -- libFuzzer target for the completion-request parser
 * (http_request_parse_completion) and the session-id check: any byte string must be refused
 * with a 4xx/5xx status and a message, or accepted with every field inside its documented range.
 * Built only with -DSTRATA_FUZZ=ON and clang (tests/serve.cmake). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  http_request_limits_t lim;
  http_request_limits_default(&lim);
  lim.max_tokens_limit = 512;
  http_completion_req_t r;
  char err[256];
  int st = http_request_parse_completion((const char *)data, size, &lim, &r, err, sizeof err);
  if (st) {
    if (!err[0] || (st != 400 && st != 413 && st != 500)) abort(); /* a refusal always says why */
    if (r.prompt) abort();
  } else {
    if (!r.prompt || strlen(r.prompt) != r.prompt_bytes || r.prompt_bytes == 0) abort();
    if (r.max_tokens < 1 || r.max_tokens > lim.max_tokens_limit) abort();
    if (!(r.temperature >= 0 && r.temperature <= 100) || !(r.top_p > 0 && r.top_p <= 1) || r.top_k < 0) abort();
    if (r.stream != 0 && r.stream != 1) abort();
    if (r.session[0] && !http_session_id_valid(r.session)) abort();
    http_request_free(&r);
  }
  /* The same bytes as a session id (NUL-terminated copy): valid only if all characters allowed. */
  char *id = malloc(size + 1);
  if (!id) return 0;
  memcpy(id, data, size);
  id[size] = '\0';
  int ok = http_session_id_valid(id);
  size_t n = strlen(id);
  int want = n >= 1 && n <= HTTP_SESSION_ID_MAX && strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
  if (ok != want) abort();
  free(id);
  return 0;
}
