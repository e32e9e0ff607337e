/* openai_chat.c -- chat templates and the rendering of `messages` (see openai_chat.h). */
#include "openai_chat.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai_params.h"


static const char *const role_names[3] = {"system", "user", "assistant"};

/* err = the message; returns -1. */
static int tfail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int tfail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

void chat_template_free(chat_template_t *t) {
  if (!t) return;
  free(t->prefix);
  free(t->message);
  for (int i = 0; i < 3; i++) free(t->role[i]);
  free(t->generation);
  for (int i = 0; i < t->n_stop; i++) free(t->stop[i]);
  memset(t, 0, sizeof *t);
}

int chat_template_default(chat_template_t *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  t->prefix = strdup("");
  t->message = strdup("{role}: {content}\n");
  t->generation = strdup("assistant:");
  t->stop[0] = strdup("\nuser:");
  t->stop[1] = strdup("\nsystem:");
  t->n_stop = 2;
  if (!t->prefix || !t->message || !t->generation || !t->stop[0] || !t->stop[1]) {
    chat_template_free(t);
    return tfail(err, errlen, "out of memory for the default chat template");
  }
  return 0;
}

/* A string member of the template object: 0 absent (*out stays), 1 copied, -1 wrong type or OOM. */
static int tmpl_string(json_object *o, const char *key, char **out) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v) || !v) return 0;
  if (!json_object_is_type(v, json_type_string)) return -1;
  char *c = strdup(json_object_get_string(v));
  if (!c) return -1;
  free(*out);
  *out = c;
  return 1;
}

static int tmpl_from_json(json_object *o, chat_template_t *t, const char *path, char *err, size_t errlen) {
  static const char *const keys[] = {"prefix", "message", "system", "user", "assistant", "generation", "stop", NULL};
  json_object_object_foreach(o, k, val) {
    (void)val;
    int ok = 0;
    for (int i = 0; keys[i] && !ok; i++) ok = !strcmp(keys[i], k);
    if (!ok)
      return tfail(err, errlen, "chat template %s: unknown key '%.64s' (keys: prefix, message, system, user, "
                         "assistant, generation, stop)", path, k);
  }
  if (tmpl_string(o, "prefix", &t->prefix) < 0 || tmpl_string(o, "message", &t->message) < 0 ||
      tmpl_string(o, "generation", &t->generation) < 0)
    return tfail(err, errlen, "chat template %s: prefix, message and generation must be strings", path);
  for (int i = 0; i < 3; i++)
    if (tmpl_string(o, role_names[i], &t->role[i]) < 0)
      return tfail(err, errlen, "chat template %s: '%s' must be a string", path, role_names[i]);
  json_object *v;
  if (json_object_object_get_ex(o, "stop", &v) && v) {
    for (int i = 0; i < t->n_stop; i++) free(t->stop[i]);
    t->n_stop = 0;
    int n = json_object_is_type(v, json_type_array) ? (int)json_object_array_length(v) : -1;
    if (n < 0 || n > CHAT_STOP_MAX)
      return tfail(err, errlen, "chat template %s: 'stop' must be an array of at most %d strings", path,
                         CHAT_STOP_MAX);
    for (int i = 0; i < n; i++) {
      json_object *s = json_object_array_get_idx(v, (size_t)i);
      if (!s || !json_object_is_type(s, json_type_string) || json_object_get_string_len(s) == 0)
        return tfail(err, errlen, "chat template %s: each 'stop' entry must be a non-empty string", path);
      if (!(t->stop[t->n_stop] = strdup(json_object_get_string(s))))
        return tfail(err, errlen, "out of memory reading chat template %s", path);
      t->n_stop++;
    }
  }
  return 0;
}

int chat_template_load(const char *path, chat_template_t *t, char *err, size_t errlen) {
  if (chat_template_default(t, err, errlen)) return -1;
  /* a file replaces the default's stop strings only when it has its own "stop" */
  FILE *f = fopen(path, "rb");
  if (!f) {
    chat_template_free(t);
    return tfail(err, errlen, "cannot open chat template %s: %s", path, strerror(errno));
  }
  char *buf = malloc(CHAT_TEMPLATE_BYTES_MAX + 1);
  size_t n = buf ? fread(buf, 1, CHAT_TEMPLATE_BYTES_MAX + 1, f) : 0;
  int rerr = ferror(f);
  fclose(f);
  if (!buf || rerr || n > CHAT_TEMPLATE_BYTES_MAX) {
    free(buf);
    chat_template_free(t);
    return tfail(err, errlen, "cannot read chat template %s: %s", path,
                       !buf ? "out of memory" : rerr ? "read error" : "larger than 64 KiB");
  }
  buf[n] = '\0';
  json_tokener *tok = json_tokener_new();
  json_object *o = tok ? json_tokener_parse_ex(tok, buf, (int)n) : NULL;
  int bad = !o || json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(o, json_type_object);
  if (tok) json_tokener_free(tok);
  free(buf);
  int rc = 0;
  if (bad) rc = tfail(err, errlen, "chat template %s is not a JSON object (see README, Serving)", path);
  else rc = tmpl_from_json(o, t, path, err, errlen);
  if (o) json_object_put(o);
  if (rc) chat_template_free(t);
  return rc;
}

/* A growing output buffer. */
typedef struct {
  char *b;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_put(sbuf_t *s, const char *p, size_t n) {
  if (s->oom) return;
  if (s->len + n + 1 > s->cap) {
    size_t nc = s->cap ? s->cap : 256;
    while (nc < s->len + n + 1) nc *= 2;
    char *nb = realloc(s->b, nc);
    if (!nb) {
      s->oom = 1;
      return;
    }
    s->b = nb, s->cap = nc;
  }
  memcpy(s->b + s->len, p, n);
  s->len += n;
  s->b[s->len] = '\0';
}

/* Appends pattern with {role} and {content} replaced. */
static void sb_pattern(sbuf_t *s, const char *pat, const char *role, const char *content, size_t content_len) {
  while (*pat) {
    if (!strncmp(pat, "{role}", 6)) {
      sb_put(s, role, strlen(role));
      pat += 6;
    } else if (!strncmp(pat, "{content}", 9)) {
      sb_put(s, content, content_len);
      pat += 9;
    } else {
      sb_put(s, pat++, 1);
    }
  }
}

/* The text of message i's content (a string, or text parts joined) appended to *c. 0 or 400. */
static int content_text(json_object *content, int i, sbuf_t *c, char *err, size_t errlen, char *param,
                        size_t paramlen) {
  char pname[64];
  snprintf(pname, sizeof pname, "messages[%d].content", i);
  if (json_object_is_type(content, json_type_string)) {
    sb_put(c, json_object_get_string(content), (size_t)json_object_get_string_len(content));
    return 0;
  }
  if (!json_object_is_type(content, json_type_array))
    return oai_refuse(err, errlen, param, paramlen, pname, "%s must be a string or an array of text parts", pname);
  size_t n = json_object_array_length(content);
  for (size_t k = 0; k < n; k++) {
    json_object *part = json_object_array_get_idx(content, k), *type, *text;
    if (!part || !json_object_is_type(part, json_type_object) || !json_object_object_get_ex(part, "type", &type) ||
        !json_object_is_type(type, json_type_string) || strcmp(json_object_get_string(type), "text") ||
        !json_object_object_get_ex(part, "text", &text) || !json_object_is_type(text, json_type_string))
      return oai_refuse(err, errlen, param, paramlen, pname,
                    "%s[%zu] must be {\"type\": \"text\", \"text\": \"...\"}: strata serve takes text only", pname, k);
    sb_put(c, json_object_get_string(text), (size_t)json_object_get_string_len(text));
  }
  return 0;
}

int chat_render(const chat_template_t *t, json_object *messages, char **out, size_t *out_len, char *err,
                size_t errlen, char *param, size_t paramlen) {
  *out = NULL;
  *out_len = 0;
  if (!messages || !json_object_is_type(messages, json_type_array) || json_object_array_length(messages) == 0 ||
      json_object_array_length(messages) > CHAT_MESSAGES_MAX)
    return oai_refuse(err, errlen, param, paramlen, "messages",
                  "parameter 'messages' must be an array of 1 to %d messages {\"role\", \"content\"}",
                  CHAT_MESSAGES_MAX);
  sbuf_t s = {0}, c = {0};
  int st = 0;
  sb_put(&s, t->prefix ? t->prefix : "", t->prefix ? strlen(t->prefix) : 0);
  int n = (int)json_object_array_length(messages);
  for (int i = 0; i < n && !st; i++) {
    json_object *m = json_object_array_get_idx(messages, (size_t)i), *role = NULL, *content = NULL;
    char pname[64];
    snprintf(pname, sizeof pname, "messages[%d]", i);
    if (!m || !json_object_is_type(m, json_type_object)) {
      st = oai_refuse(err, errlen, param, paramlen, pname, "%s must be an object {\"role\", \"content\"}", pname);
      break;
    }
    json_object_object_foreach(m, k, val) {
      (void)val;
      if (strcmp(k, "role") && strcmp(k, "content")) {
        snprintf(pname, sizeof pname, "messages[%d].%.32s", i, k);
        st = oai_refuse(err, errlen, param, paramlen, pname, "%s is not supported by strata serve (messages take role "
                    "and content only)", pname);
        break;
      }
    }
    if (st) break;
    json_object_object_get_ex(m, "role", &role);
    json_object_object_get_ex(m, "content", &content);
    const char *r = role && json_object_is_type(role, json_type_string) ? json_object_get_string(role) : "";
    int ri = !strcmp(r, "system") || !strcmp(r, "developer") ? 0 : !strcmp(r, "user") ? 1 : !strcmp(r, "assistant") ? 2 : -1;
    if (ri < 0) {
      snprintf(pname, sizeof pname, "messages[%d].role", i);
      st = oai_refuse(err, errlen, param, paramlen, pname, "%s must be \"system\", \"developer\", \"user\" or "
                  "\"assistant\" (tools are not supported)", pname);
      break;
    }
    if (!content) {
      snprintf(pname, sizeof pname, "messages[%d].content", i);
      st = oai_refuse(err, errlen, param, paramlen, pname, "%s is missing", pname);
      break;
    }
    c.len = 0;
    if (c.b) c.b[0] = '\0';
    if ((st = content_text(content, i, &c, err, errlen, param, paramlen))) break;
    sb_pattern(&s, t->role[ri] ? t->role[ri] : t->message, role_names[ri], c.b ? c.b : "", c.len);
  }
  if (!st) sb_put(&s, t->generation ? t->generation : "", t->generation ? strlen(t->generation) : 0);
  if (!st && (s.oom || c.oom)) st = oai_refuse(err, errlen, param, paramlen, "messages", "out of memory rendering the messages"), st = 500;
  free(c.b);
  if (st) {
    free(s.b);
    return st;
  }
  if (!s.b) sb_put(&s, "", 0);
  if (s.oom) return 500;
  *out = s.b;
  *out_len = s.len;
  return 0;
}
