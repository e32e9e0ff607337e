/* openai_chat.h -- chat templates: how POST /v1/chat/completions turns `messages` into the one
 * prompt a base model continues.
 *
 * A template is a small JSON file (`strata serve --chat-template FILE`):
 *   {"prefix": "",                         text once before the first message (optional)
 *    "message": "{role}: {content}\n",     each message; {role} and {content} are replaced
 *    "system": "...", "user": "...", "assistant": "...",   a role's own pattern (optional;
 *                                          "developer" messages use "system")
 *    "generation": "assistant:",           appended after the last message: the model writes
 *                                          the assistant's reply from here
 *    "stop": ["\nuser:"]}                  up to 4 stop strings added to every chat request's own
 * Only the exact placeholders {role} and {content} are replaced; every other character is literal.
 * Without --chat-template the default template is the one shown above, with "stop":
 * ["\nuser:", "\nsystem:"], so a base model's reply ends where it starts writing the next turn.
 *
 * Messages: an array of 1 .. CHAT_MESSAGES_MAX objects {"role": "system" | "developer" | "user" |
 * "assistant", "content": a string or an array of {"type": "text", "text": ...} parts}; any other
 * key, role or part type is refused with 400 naming it. Pure functions, no I/O except the load. */
#ifndef STRATA_OPENAI_CHAT_H
#define STRATA_OPENAI_CHAT_H

#include <json-c/json.h>
#include <stddef.h>

#define CHAT_MESSAGES_MAX 256
#define CHAT_STOP_MAX 4
#define CHAT_TEMPLATE_BYTES_MAX 65536 /* a template file larger than this is refused */

typedef struct {
  char *prefix;           /* "" when absent */
  char *message;          /* the default per-message pattern */
  char *role[3];          /* system, user, assistant patterns; NULL = message */
  char *generation;
  char *stop[CHAT_STOP_MAX];
  int n_stop;
} chat_template_t;

/* The default template (above). 0, or -1 with err (out of memory). */
int chat_template_default(chat_template_t *t, char *err, size_t errlen);
/* Reads a template file. 0, or -1 with err naming the file and the problem. */
int chat_template_load(const char *path, chat_template_t *t, char *err, size_t errlen);
void chat_template_free(chat_template_t *t);

/* Renders `messages` (the JSON value of the field) through t into *out (malloc'd, NUL-terminated,
 * *out_len bytes). 0, or an HTTP status (400 with err and param naming the bad field, 500 out of
 * memory). */
int chat_render(const chat_template_t *t, json_object *messages, char **out, size_t *out_len, char *err,
                size_t errlen, char *param, size_t paramlen);

#endif
