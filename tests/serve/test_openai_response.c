/* The per-choice text of openai_response.c: stop strings cut the text at the earliest match, the
 * stop text is never kept, tokens past it are dropped, the token holding it keeps only its part
 * before it, and a stream may send only tokens that cannot be the start of a stop string. Also
 * the logprobs of BPE tokens that split a character (serve.h: the first has no text of its own,
 * its logprobs text reads "bytes:\xNN..."). */
#include <stdio.h>
#include <string.h>

#include "openai_response.h"
#include "test_util.h"

/* Feeds tokens until a stop matches; returns the index of the token that matched (-1 none). */
static int feed(oai_choice_t *c, const char *const *toks, int n, char *const *stop, int n_stop) {
  for (int i = 0; i < n; i++)
    if (oai_choice_add(c, toks[i], strlen(toks[i]), NULL, stop, n_stop) == 1) return i;
  return -1;
}

static void test_stop_spanning_tokens(void) {
  oai_choice_t c = {0};
  char *stop[] = {"lo w", "zz"};
  const char *toks[] = {"he", "ll", "o ", "wo", "rld"};
  CHECK_EQ_INT(feed(&c, toks, 5, stop, 2), 3); /* "hello wo" holds "lo w" */
  CHECK_TRUE(!strcmp(c.text, "hel"));
  CHECK_EQ_INT(c.ntok, 2);                     /* "he", then "ll" cut to "l"; "o " and "wo" dropped */
  CHECK_EQ_INT((int)c.tok_end[1], 3);
  CHECK_TRUE(c.stopped);
  CHECK_EQ_INT(oai_choice_add(&c, "x", 1, NULL, stop, 2), 1); /* nothing more is kept */
  CHECK_TRUE(!strcmp(c.text, "hel"));
  oai_choice_free(&c);
}

static void test_earliest_and_first_token(void) {
  oai_choice_t c = {0};
  char *stop[] = {"cd", "b"};
  const char *toks[] = {"abcd"};
  CHECK_EQ_INT(feed(&c, toks, 1, stop, 2), 0);
  CHECK_TRUE(!strcmp(c.text, "a")); /* "b" at 1 comes before "cd" at 2 */
  oai_choice_free(&c);
  char *stop2[] = {"ab"};
  CHECK_EQ_INT(feed(&c, toks, 1, stop2, 1), 0);
  CHECK_EQ_INT((int)c.text_len, 0); /* a match at 0 leaves no text and no token */
  CHECK_EQ_INT(c.ntok, 0);
  oai_choice_free(&c);
}

static void test_stream_holds_back(void) {
  oai_choice_t c = {0};
  char *stop[] = {"\nuser:"};
  const char *toks[] = {"Hi", " there", "\n", "us"};
  CHECK_EQ_INT(feed(&c, toks, 4, stop, 1), -1);
  /* "\nus" could begin "\nuser:": only "Hi there" may be sent */
  CHECK_EQ_INT(oai_choice_safe_tokens(&c, stop, 1, 0), 2);
  CHECK_EQ_INT(oai_choice_safe_tokens(&c, stop, 1, 1), 4); /* done: everything */
  CHECK_EQ_INT(oai_choice_add(&c, "e", 1, NULL, stop, 1), 0);
  CHECK_EQ_INT(oai_choice_add(&c, "d", 1, NULL, stop, 1), 0); /* "\nused" is no stop: all safe */
  CHECK_EQ_INT(oai_choice_safe_tokens(&c, stop, 1, 0), 6);
  oai_choice_free(&c);
}

/* " 😀" as GPT-2's tokens " \xf0\x9f\x98" and "\x80": the first adds no text, the second the
 * character; logprobs show each token's own bytes. */
static void test_split_character_logprobs(void) {
  oai_choice_t c = {0};
  serve_logprobs_t lp;
  memset(&lp, 0, sizeof lp);
  snprintf(lp.text, sizeof lp.text, "bytes:\\x20\\xf0\\x9f\\x98");
  lp.logprob = -1;
  lp.n_top = 1;
  snprintf(lp.top[0].text, sizeof lp.top[0].text, "%s", lp.text);
  lp.top[0].logprob = -1;
  CHECK_EQ_INT(oai_choice_add(&c, "", 0, &lp, NULL, 0), 0);
  snprintf(lp.text, sizeof lp.text, "bytes:\\x80");
  snprintf(lp.top[0].text, sizeof lp.top[0].text, "%s", lp.text);
  CHECK_EQ_INT(oai_choice_add(&c, " \xf0\x9f\x98\x80", 5, &lp, NULL, 0), 0);
  CHECK_EQ_INT(c.ntok, 2);
  oai_choice_t *cs[1] = {&c};
  const char *fin[1] = {"length"};
  oai_head_t chat = {"chatcmpl-1", "m", 1, OAI_CHAT, 1};
  json_object *o = oai_response(&chat, cs, fin, 1, oai_usage(1, 2, 0));
  const char *j = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  CHECK_TRUE(strstr(j, "\"content\":\" \xf0\x9f\x98\x80\"") != NULL);
  CHECK_TRUE(strstr(j, "{\"token\":\"bytes:\\\\x20\\\\xf0\\\\x9f\\\\x98\",\"logprob\":-1,\"bytes\":[32,240,159,152]") != NULL);
  CHECK_TRUE(strstr(j, "{\"token\":\"bytes:\\\\x80\",\"logprob\":-1,\"bytes\":[128]") != NULL);
  json_object_put(o);
  oai_head_t cmpl = {"cmpl-1", "m", 1, OAI_COMPLETIONS, 1};
  o = oai_response(&cmpl, cs, fin, 1, oai_usage(1, 2, 0));
  j = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  CHECK_TRUE(strstr(j, "\"tokens\":[\"bytes:\\\\x20\\\\xf0\\\\x9f\\\\x98\",\"bytes:\\\\x80\"]") != NULL);
  CHECK_TRUE(strstr(j, "\"text_offset\":[0,0]") != NULL); /* both start where the character does */
  json_object_put(o);
  oai_choice_free(&c);
  /* a stop string equal to the character drops both tokens */
  char *stop[1] = {"\xf0\x9f\x98\x80"};
  CHECK_EQ_INT(oai_choice_add(&c, " ", 1, NULL, stop, 1), 0);
  CHECK_EQ_INT(oai_choice_add(&c, "", 0, NULL, stop, 1), 0);
  CHECK_EQ_INT(oai_choice_safe_tokens(&c, stop, 1, 0), 2);
  CHECK_EQ_INT(oai_choice_add(&c, "\xf0\x9f\x98\x80", 4, NULL, stop, 1), 1);
  CHECK_TRUE(!strcmp(c.text, " "));
  oai_choice_free(&c);
}

int main(void) {
  test_split_character_logprobs();
  test_stop_spanning_tokens();
  test_earliest_and_first_token();
  test_stream_holds_back();
  return test_finish("openai_response");
}
