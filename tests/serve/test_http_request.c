/* The request parser of POST /v1/completions (worker/serve/http_request.c) as a pure function: every
 * accepted field and default, and every refusal with its status and a message naming the field. */
#include <stdio.h>
#include <string.h>

#include "http_request.h"
#include "http_server.h"
#include "test_util.h"

static http_request_limits_t lim;

/* Parses `body`; returns the status and leaves the message in err. */
static int parse(const char *body, http_completion_req_t *r, char *err, size_t errlen) {
  return http_request_parse_completion(body, strlen(body), &lim, r, err, errlen);
}

/* Expects a refusal with `status` whose message contains `needle`. */
static void expect_refused(const char *body, int status, const char *needle) {
  http_completion_req_t r;
  char err[256];
  int st = parse(body, &r, err, sizeof err);
  CHECK_EQ_INT(st, status);
  if (!strstr(err, needle)) test_fail(__FILE__, __LINE__, "body %s: message '%s' lacks '%s'", body, err, needle);
  CHECK_TRUE(r.prompt == NULL); /* nothing to free after a refusal */
}

static void test_all_fields(void) {
  http_completion_req_t r;
  char err[256];
  const char *b = "{\"prompt\": \"Hello there\", \"max_tokens\": 7, \"temperature\": 0.5, \"top_p\": 0.9,"
                  " \"top_k\": 40, \"seed\": 1234, \"stream\": true, \"session\": \"chat_1-A\"}";
  CHECK_EQ_INT(parse(b, &r, err, sizeof err), 0);
  CHECK_TRUE(r.prompt && !strcmp(r.prompt, "Hello there"));
  CHECK_EQ_INT(r.prompt_bytes, 11);
  CHECK_EQ_INT(r.max_tokens, 7);
  CHECK_NEAR(r.temperature, 0.5, 0);
  CHECK_NEAR(r.top_p, 0.9, 0);
  CHECK_EQ_INT(r.top_k, 40);
  CHECK_EQ_INT(r.has_seed, 1);
  CHECK_EQ_INT(r.seed, 1234);
  CHECK_EQ_INT(r.stream, 1);
  CHECK_TRUE(!strcmp(r.session, "chat_1-A"));
  http_request_free(&r);
}

static void test_defaults_and_ignored_fields(void) {
  http_completion_req_t r;
  char err[256];
  /* OpenAI clients send model/n/user: accepted. null means default. */
  CHECK_EQ_INT(parse("{\"model\":\"gpt2\",\"n\":1,\"user\":\"u-1\",\"prompt\":\"x\",\"seed\":null,\"stream\":null}",
                     &r, err, sizeof err), 0);
  CHECK_EQ_INT(r.max_tokens, lim.default_max_tokens);
  CHECK_NEAR(r.temperature, 1.0, 0);
  CHECK_NEAR(r.top_p, 1.0, 0);
  CHECK_EQ_INT(r.top_k, 0);
  CHECK_EQ_INT(r.has_seed, 0);
  CHECK_EQ_INT(r.stream, 0);
  CHECK_EQ_INT(r.session[0], 0);
  http_request_free(&r);
  /* The largest seed, 2^63 - 1, is accepted exactly. */
  CHECK_EQ_INT(parse("{\"prompt\":\"x\",\"seed\":9223372036854775807}", &r, err, sizeof err), 0);
  CHECK_TRUE(r.has_seed == 1 && r.seed == (uint64_t)INT64_MAX);
  http_request_free(&r);
  /* An integral double is an integer (some clients send 16.0); temperature 0 = greedy. */
  CHECK_EQ_INT(parse("{\"prompt\":\"x\",\"max_tokens\":16.0,\"temperature\":0}", &r, err, sizeof err), 0);
  CHECK_EQ_INT(r.max_tokens, 16);
  CHECK_NEAR(r.temperature, 0, 0);
  http_request_free(&r);
  /* UTF-8 and escapes survive. */
  CHECK_EQ_INT(parse("{\"prompt\":\"caf\\u00e9 \\\"q\\\"\\n\"}", &r, err, sizeof err), 0);
  CHECK_TRUE(!strcmp(r.prompt, "caf\xc3\xa9 \"q\"\n"));
  http_request_free(&r);
}

static void test_length_is_respected(void) {
  /* The body need not be NUL-terminated: only len bytes are read. */
  const char *b = "{\"prompt\":\"ab\"}GARBAGE";
  http_completion_req_t r;
  char err[256];
  CHECK_EQ_INT(http_request_parse_completion(b, 15, &lim, &r, err, sizeof err), 0);
  CHECK_TRUE(r.prompt && !strcmp(r.prompt, "ab"));
  http_request_free(&r);
  CHECK_EQ_INT(http_request_parse_completion(b, 17, &lim, &r, err, sizeof err), 400);
}

static void test_malformed_json(void) {
  expect_refused("", 400, "empty request body");
  expect_refused("{", 400, "malformed JSON");
  expect_refused("{\"prompt\": }", 400, "malformed JSON");
  expect_refused("{\"prompt\": \"x\",}", 400, "malformed JSON");
  expect_refused("{'prompt': 'x'}", 400, "malformed JSON");
  expect_refused("{\"prompt\":\"x\"} {}", 400, "malformed JSON");
  expect_refused("{\"prompt\":\"x\"}   ,", 400, "malformed JSON");
  expect_refused("[1, 2]", 400, "must be a JSON object");
  expect_refused("\"just a string\"", 400, "must be a JSON object");
  /* json-c reads NaN/Infinity literals; they are no valid number for any field. */
  expect_refused("{\"prompt\": \"x\", \"temperature\": NaN}", 400, "'temperature' must be a number");
  expect_refused("{\"prompt\": \"x\", \"top_p\": -Infinity}", 400, "'top_p' must be a number");
  /* Deep nesting is refused by the depth limit, not by the stack. */
  char deep[2100];
  size_t n = 0;
  n += (size_t)sprintf(deep, "{\"prompt\":\"x\",\"a\":");
  for (int i = 0; i < 1000; i++) deep[n++] = '[';
  for (int i = 0; i < 1000; i++) deep[n++] = ']';
  deep[n++] = '}';
  deep[n] = '\0';
  expect_refused(deep, 400, "malformed JSON");
}

static void test_wrong_types_name_the_field(void) {
  expect_refused("{}", 400, "missing field 'prompt'");
  expect_refused("{\"prompt\": 5}", 400, "'prompt' must be a string");
  expect_refused("{\"prompt\": [1, 2]}", 400, "token-id prompts are not supported");
  expect_refused("{\"prompt\": []}", 400, "1 to 16 prompts");
  expect_refused("{\"prompt\": \"\"}", 400, "'prompt' is empty");
  expect_refused("{\"prompt\": \"a\\u0000b\"}", 400, "NUL");
  expect_refused("{\"prompt\": \"x\", \"max_tokens\": \"10\"}", 400, "'max_tokens' must be an integer");
  expect_refused("{\"prompt\": \"x\", \"max_tokens\": 1.5}", 400, "'max_tokens' must be an integer");
  expect_refused("{\"prompt\": \"x\", \"max_tokens\": 99999999999999999999}", 400, "'max_tokens'");
  expect_refused("{\"prompt\": \"x\", \"temperature\": \"hot\"}", 400, "'temperature' must be a number");
  expect_refused("{\"prompt\": \"x\", \"temperature\": -1}", 400, "'temperature'");
  expect_refused("{\"prompt\": \"x\", \"top_p\": 0}", 400, "'top_p' must be in (0, 1]");
  expect_refused("{\"prompt\": \"x\", \"top_p\": 1.5}", 400, "'top_p'");
  expect_refused("{\"prompt\": \"x\", \"top_k\": -3}", 400, "'top_k'");
  expect_refused("{\"prompt\": \"x\", \"top_k\": true}", 400, "'top_k' must be an integer");
  expect_refused("{\"prompt\": \"x\", \"seed\": -1}", 400, "'seed' must be an integer in [0, 2^63)");
  expect_refused("{\"prompt\": \"x\", \"seed\": \"7\"}", 400, "'seed' must be an integer in [0, 2^63)");
  expect_refused("{\"prompt\": \"x\", \"seed\": 1e30}", 400, "'seed' must be an integer in [0, 2^63)");
  expect_refused("{\"prompt\": \"x\", \"seed\": 9223372036854775808}", 400, "'seed' must be an integer in [0, 2^63)");
  expect_refused("{\"prompt\": \"x\", \"stream\": \"yes\"}", 400, "'stream' must be true or false");
  expect_refused("{\"prompt\": \"x\", \"stream\": 1}", 400, "'stream'");
  expect_refused("{\"prompt\": \"x\", \"session\": 5}", 400, "'session' must be a string");
}

static void test_limits(void) {
  char msg[64];
  snprintf(msg, sizeof msg, "between 1 and %d", lim.max_tokens_limit);
  char b[128];
  snprintf(b, sizeof b, "{\"prompt\": \"x\", \"max_tokens\": %d}", lim.max_tokens_limit + 1);
  expect_refused(b, 400, msg);
  expect_refused(b, 400, "--max-tokens-limit");
  expect_refused("{\"prompt\": \"x\", \"max_tokens\": 0}", 400, "'max_tokens' must be between 1");
  snprintf(b, sizeof b, "{\"prompt\": \"x\", \"max_tokens\": %d}", lim.max_tokens_limit);
  http_completion_req_t r;
  char err[256];
  CHECK_EQ_INT(parse(b, &r, err, sizeof err), 0);
  CHECK_EQ_INT(r.max_tokens, lim.max_tokens_limit);
  http_request_free(&r);
  /* Body size: exactly the limit parses; one byte more is 413. */
  http_request_limits_t small = lim;
  const char *body = "{\"prompt\":\"abc\"}  ";
  small.max_body_bytes = strlen(body);
  CHECK_EQ_INT(http_request_parse_completion(body, strlen(body), &small, &r, err, sizeof err), 0);
  http_request_free(&r);
  small.max_body_bytes = strlen(body) - 1;
  CHECK_EQ_INT(http_request_parse_completion(body, strlen(body), &small, &r, err, sizeof err), 413);
  CHECK_TRUE(strstr(err, "--max-request-bytes") != NULL);
}

static void test_session_ids(void) {
  char id64[65], id65[66];
  memset(id64, 'a', 64), id64[64] = '\0';
  memset(id65, 'b', 65), id65[65] = '\0';
  CHECK_EQ_INT(http_session_id_valid("a"), 1);
  CHECK_EQ_INT(http_session_id_valid("Chat_01-x"), 1);
  CHECK_EQ_INT(http_session_id_valid(id64), 1);
  CHECK_EQ_INT(http_session_id_valid(id65), 0);
  CHECK_EQ_INT(http_session_id_valid(""), 0);
  CHECK_EQ_INT(http_session_id_valid(NULL), 0);
  CHECK_EQ_INT(http_session_id_valid("../etc/passwd"), 0);
  CHECK_EQ_INT(http_session_id_valid("a/b"), 0);
  CHECK_EQ_INT(http_session_id_valid("a.b"), 0);
  CHECK_EQ_INT(http_session_id_valid("a b"), 0);
  CHECK_EQ_INT(http_session_id_valid("caf\xc3\xa9"), 0);
  expect_refused("{\"prompt\": \"x\", \"session\": \"../../x\"}", 400, "'session' must be 1 to 64 characters");
  expect_refused("{\"prompt\": \"x\", \"session\": \"\"}", 400, "'session'");
  char b[200];
  snprintf(b, sizeof b, "{\"prompt\": \"x\", \"session\": \"%s\"}", id65);
  expect_refused(b, 400, "'session'");
  expect_refused("{\"prompt\": \"x\", \"session\": \"ab\\u0000cd\"}", 400, "'session'");
}

/* --listen HOST:PORT parsing (http_server.c), which also decides the non-loopback warning. */
static void test_listen_parse(void) {
  char host[64], err[256];
  int port = -1, loop = -1;
  CHECK_EQ_INT(http_parse_listen("127.0.0.1:8080", host, sizeof host, &port, &loop, err, sizeof err), 0);
  CHECK_TRUE(!strcmp(host, "127.0.0.1"));
  CHECK_EQ_INT(port, 8080);
  CHECK_EQ_INT(loop, 1);
  CHECK_EQ_INT(http_parse_listen("localhost:0", host, sizeof host, &port, &loop, err, sizeof err), 0);
  CHECK_TRUE(!strcmp(host, "127.0.0.1"));
  CHECK_EQ_INT(port, 0);
  CHECK_EQ_INT(http_parse_listen("127.1.2.3:1", host, sizeof host, &port, &loop, err, sizeof err), 0);
  CHECK_EQ_INT(loop, 1);
  CHECK_EQ_INT(http_parse_listen("0.0.0.0:80", host, sizeof host, &port, &loop, err, sizeof err), 0);
  CHECK_EQ_INT(loop, 0);
  CHECK_EQ_INT(http_parse_listen("10.1.2.3:80", host, sizeof host, &port, &loop, err, sizeof err), 0);
  CHECK_EQ_INT(loop, 0);
  CHECK_EQ_INT(http_parse_listen("8080", host, sizeof host, &port, &loop, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "HOST:PORT") != NULL);
  CHECK_EQ_INT(http_parse_listen("127.0.0.1:", host, sizeof host, &port, &loop, err, sizeof err), -1);
  CHECK_EQ_INT(http_parse_listen("127.0.0.1:65536", host, sizeof host, &port, &loop, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "0 to 65535") != NULL);
  CHECK_EQ_INT(http_parse_listen("127.0.0.1:80x", host, sizeof host, &port, &loop, err, sizeof err), -1);
  CHECK_EQ_INT(http_parse_listen("example.com:80", host, sizeof host, &port, &loop, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "numeric IPv4") != NULL);
}

/* The OpenAI parameters and chat messages through the default template. */
static void test_openai_params(void) {
  http_completion_req_t r;
  char err[256], param[64];
  const char *b = "{\"prompt\": [\"a\", \"b c\"], \"n\": 2, \"stop\": [\"\\n\", \"END\"], \"logprobs\": 3, "
                  "\"echo\": true, \"presence_penalty\": -1.5, \"frequency_penalty\": 0.5, "
                  "\"stream_options\": {\"include_usage\": true}}";
  /* echo with logprobs is refused; without logprobs the rest is read */
  CHECK_EQ_INT(http_request_parse(b, strlen(b), &lim, OAI_COMPLETIONS, &r, err, sizeof err, param, sizeof param), 400);
  CHECK_TRUE(!strcmp(param, "echo"));
  b = "{\"prompt\": [\"a\", \"b c\"], \"n\": 2, \"stop\": [\"\\n\", \"END\"], \"logprobs\": 3, "
      "\"presence_penalty\": -1.5, \"frequency_penalty\": 0.5, \"stream_options\": {\"include_usage\": true}}";
  CHECK_EQ_INT(http_request_parse(b, strlen(b), &lim, OAI_COMPLETIONS, &r, err, sizeof err, param, sizeof param), 0);
  CHECK_EQ_INT(r.n_prompts, 2);
  CHECK_TRUE(!strcmp(r.prompts[1], "b c"));
  CHECK_EQ_INT(r.oai.n, 2);
  CHECK_EQ_INT(r.oai.n_stop, 2);
  CHECK_TRUE(!strcmp(r.oai.stop[0], "\n") && !strcmp(r.oai.stop[1], "END"));
  CHECK_EQ_INT(r.oai.logprobs, 3);
  CHECK_NEAR(r.oai.presence_penalty, -1.5, 0);
  CHECK_NEAR(r.oai.frequency_penalty, 0.5, 0);
  CHECK_EQ_INT(r.oai.include_usage, 1);
  http_request_free(&r);
  b = "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": "
      "[{\"type\": \"text\", \"text\": \"hi \"}, {\"type\": \"text\", \"text\": \"there\"}]}], "
      "\"logprobs\": true, \"top_logprobs\": 2, \"max_completion_tokens\": 9}";
  CHECK_EQ_INT(http_request_parse(b, strlen(b), &lim, OAI_CHAT, &r, err, sizeof err, param, sizeof param), 0);
  CHECK_TRUE(!strcmp(r.prompt, "system: S\nuser: hi there\nassistant:"));
  CHECK_EQ_INT(r.oai.logprobs, 2);
  CHECK_EQ_INT(r.max_tokens, 9);
  http_request_free(&r);
  /* chat's logprobs is a boolean; completions' an integer */
  b = "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": 2}";
  CHECK_EQ_INT(http_request_parse(b, strlen(b), &lim, OAI_CHAT, &r, err, sizeof err, param, sizeof param), 400);
  CHECK_TRUE(!strcmp(param, "logprobs"));
  b = "{\"prompt\": \"x\", \"max_tokens\": 0}";
  CHECK_EQ_INT(http_request_parse(b, strlen(b), &lim, OAI_COMPLETIONS, &r, err, sizeof err, param, sizeof param), 400);
  CHECK_TRUE(!strcmp(param, "max_tokens"));
}

int main(void) {
  http_request_limits_default(&lim);
  CHECK_EQ_INT(lim.max_body_bytes, 65536);
  test_all_fields();
  test_defaults_and_ignored_fields();
  test_openai_params();
  test_length_is_respected();
  test_malformed_json();
  test_wrong_types_name_the_field();
  test_limits();
  test_session_ids();
  test_listen_parse();
  return test_finish("http_request");
}
