/* tune_file.c -- the decision table's file format (coll.h, "Decision table";
 * collectives/README.md, "Tuning"): reading a table, JSON of format version 3 or 2 or the text
 * of version 1, into checked rules, and writing rules as version 3.
 *
 * Version 3 is a JSON object parsed with json-c:
 *    {"format": "strata-coll-tune", "version": 3, "comment": "...",
 *     "rules": [{"ranks": 2, "transport": "mpi", "dtype": "float", "placement": "out",
 *                "from_bytes": 0, "algo": "rd", "chunk_bytes": 0, "stream": false}, ...]}
 * "stream" is optional (absent: cfg.stream_bytes decides, stream -1); version 2 is the same
 * without it. Version 1 (earlier releases) is text: a "strata-coll-tune 1" line, then one rule
 * per line, "ranks transport dtype from_bytes algo chunk_bytes", '#' comments; it has no
 * placement, so each of its rules holds for both.
 */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_internal.h"
#include "strata/strnum.h"

#define TUNE_MAGIC "strata-coll-tune"
#define TUNE_MAX_RULES 4096
#define TUNE_MAX_RANKS (1 << 20)
#define TUNE_MAX_FROM ((long long)1 << 40)
#define TUNE_MAX_CHUNK ((long long)1 << 30)

int coll_tune_fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

int coll_tune_same_key(const coll_tune_rule_t *a, const coll_tune_rule_t *b) {
  return a->ranks == b->ranks && a->dtype == b->dtype && a->in_place == b->in_place &&
         !strcmp(a->transport, b->transport);
}

/* A growing array of rules; every rule added is checked against its key's previous one. */
typedef struct {
  coll_tune_rule_t *r;
  int n, cap;
} rules_t;

/* Appends *r: 0, or -1 with what is wrong in msg (too many, out of memory, not increasing). */
static int rules_add(rules_t *rs, const coll_tune_rule_t *r, char *msg, size_t len) {
  for (int i = rs->n - 1; i >= 0; i--) /* the previous rule of the same key */
    if (coll_tune_same_key(&rs->r[i], r)) {
      if (rs->r[i].from_bytes >= r->from_bytes)
        return coll_tune_fail(msg, len, "from_bytes %zu does not increase over the previous rule for %d ranks, %s, %s, %s",
                    r->from_bytes, r->ranks, r->transport, coll_dtype_name(r->dtype),
                    r->in_place ? "in place" : "out of place");
      break;
    }
  if (rs->n == TUNE_MAX_RULES) return coll_tune_fail(msg, len, "more than %d rules", TUNE_MAX_RULES);
  if (rs->n == rs->cap) {
    int cap = rs->cap ? 2 * rs->cap : 64;
    coll_tune_rule_t *g = realloc(rs->r, (size_t)cap * sizeof *g);
    if (!g) return coll_tune_fail(msg, len, "out of memory");
    rs->r = g;
    rs->cap = cap;
  }
  rs->r[rs->n++] = *r;
  return 0;
}

/* Field checks shared by both versions, on r with its strings already in place. */
static int check_names(coll_tune_rule_t *r, const char *transport, const char *dtype, const char *algo,
                       char *msg, size_t len) {
  if (!transport[0] || strlen(transport) >= sizeof r->transport || strpbrk(transport, " \t\"\\"))
    return coll_tune_fail(msg, len, "transport '%s' is not a transport name (1 to %zu characters, no blanks or quotes)", transport,
                sizeof r->transport - 1);
  snprintf(r->transport, sizeof r->transport, "%s", transport);
  if (coll_parse_dtype(dtype, &r->dtype)) return coll_tune_fail(msg, len, "unknown dtype '%s'", dtype);
  if (coll_parse_algo(algo, &r->algo) || r->algo == COLL_ALGO_AUTO)
    return coll_tune_fail(msg, len, "algorithm '%s' is not one of ring, rd, rabenseifner, mpi", algo);
  return 0;
}

static int check_chunk(long long chunk, char *msg, size_t len) {
  if (chunk && (chunk < 64 || chunk > TUNE_MAX_CHUNK))
    return coll_tune_fail(msg, len, "chunk_bytes must be 0 or from 64 to %lld, got %lld", TUNE_MAX_CHUNK, chunk);
  return 0;
}

/* ---- version 1: text ---- */

/* One version 1 line into *r (out of place): 0, or -1 with what is wrong in msg. */
static int parse_v1_line(char *line, coll_tune_rule_t *r, char *msg, size_t len) {
  char *f[6];
  int nf = 0;
  for (char *save = NULL, *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save))
    if (nf++ < 6) f[nf - 1] = t;
  if (nf != 6) return coll_tune_fail(msg, len, "expected 6 fields (ranks transport dtype from_bytes algo chunk_bytes), got %d", nf);
  const strnum_range_t ranks_r = {STRNUM_INT, 1, TUNE_MAX_RANKS, 0};
  const strnum_range_t from_r = {STRNUM_BYTES, 0, (double)TUNE_MAX_FROM, 0};
  const strnum_range_t chunk_r = {STRNUM_BYTES, 0, (double)TUNE_MAX_CHUNK, 0};
  strnum_value_t ranks, from, chunk;
  memset(r, 0, sizeof *r);
  if (strnum_check("ranks", f[0], &ranks_r, &ranks, msg, len) || strnum_check("from_bytes", f[3], &from_r, &from, msg, len) ||
      strnum_check("chunk_bytes", f[5], &chunk_r, &chunk, msg, len) || check_names(r, f[1], f[2], f[4], msg, len) ||
      check_chunk(chunk.i, msg, len))
    return -1;
  r->ranks = (int)ranks.i;
  r->from_bytes = (size_t)from.i;
  r->chunk_bytes = (size_t)chunk.i;
  r->stream = -1;
  return 0;
}

static int parse_v1(char *text, rules_t *rs, char *err, size_t errlen) {
  int lineno = 0, seen_magic = 0;
  char msg[256];
  for (char *line = text, *next; line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    lineno++;
    char *s = line + strspn(line, " \t\r");
    if (!*s || *s == '#') continue;
    if (!seen_magic) {
      int ver = 0;
      char tail = 0;
      if (sscanf(s, TUNE_MAGIC " %d %c", &ver, &tail) != 1)
        return coll_tune_fail(err, errlen, "is malformed: line %d is neither JSON nor '" TUNE_MAGIC " 1'", lineno);
      if (ver != 1)
        return coll_tune_fail(err, errlen, "is text of format version %d; this library reads JSON of versions 2 and 3 and text of version 1", ver);
      seen_magic = 1;
      continue;
    }
    coll_tune_rule_t r;
    if (parse_v1_line(s, &r, msg, sizeof msg) || rules_add(rs, &r, msg, sizeof msg)) /* out of place */
      return coll_tune_fail(err, errlen, "is malformed: line %d: %s", lineno, msg);
    r.in_place = 1; /* and in place */
    if (rules_add(rs, &r, msg, sizeof msg)) return coll_tune_fail(err, errlen, "is malformed: line %d: %s", lineno, msg);
  }
  return seen_magic ? 0 : coll_tune_fail(err, errlen, "is empty");
}

/* ---- versions 2 and 3: JSON ---- */

/* A rule's keys: every one required but the last, "stream", which version 3 adds (optional). */
static const char *const rule_keys[] = {"ranks", "transport", "dtype", "placement", "from_bytes", "algo", "chunk_bytes",
                                        "stream"};
#define NKEYS ((int)(sizeof rule_keys / sizeof rule_keys[0]))
#define NREQUIRED (NKEYS - 1)

/* The integer member `key` of o into *v, from lo to hi. */
static int json_int(json_object *o, const char *key, long long lo, long long hi, long long *v, char *msg, size_t len) {
  json_object *x = json_object_object_get(o, key);
  if (!json_object_is_type(x, json_type_int) || (*v = json_object_get_int64(x)) < lo || *v > hi)
    return coll_tune_fail(msg, len, "\"%s\" must be an integer from %lld to %lld, got %s", key, lo, hi, json_object_to_json_string(x));
  return 0;
}

static int json_str(json_object *o, const char *key, const char **v, char *msg, size_t len) {
  json_object *x = json_object_object_get(o, key);
  if (!json_object_is_type(x, json_type_string))
    return coll_tune_fail(msg, len, "\"%s\" must be a string, got %s", key, json_object_to_json_string(x));
  *v = json_object_get_string(x);
  return 0;
}

/* One rule object of a table of `version` into *r: 0, or -1 with what is wrong in msg. */
static int parse_json_rule(json_object *o, int version, coll_tune_rule_t *r, char *msg, size_t len) {
  if (!json_object_is_type(o, json_type_object)) return coll_tune_fail(msg, len, "is not an object");
  int nkeys = version >= 3 ? NKEYS : NREQUIRED;
  json_object_object_foreach(o, key, val) {
    (void)val;
    int known = 0;
    for (int k = 0; k < nkeys && !known; k++) known = !strcmp(key, rule_keys[k]);
    if (!known)
      return coll_tune_fail(msg, len, "unknown key \"%s\" (a rule has ranks, transport, dtype, placement, from_bytes, algo, chunk_bytes%s)",
                            key, version >= 3 ? " and may have stream" : "");
  }
  for (int k = 0; k < NREQUIRED; k++)
    if (!json_object_object_get_ex(o, rule_keys[k], NULL)) return coll_tune_fail(msg, len, "has no \"%s\"", rule_keys[k]);
  long long ranks, from, chunk;
  const char *transport, *dtype, *placement, *algo;
  memset(r, 0, sizeof *r);
  if (json_int(o, "ranks", 1, TUNE_MAX_RANKS, &ranks, msg, len) || json_int(o, "from_bytes", 0, TUNE_MAX_FROM, &from, msg, len) ||
      json_int(o, "chunk_bytes", 0, TUNE_MAX_CHUNK, &chunk, msg, len) || check_chunk(chunk, msg, len) ||
      json_str(o, "transport", &transport, msg, len) || json_str(o, "dtype", &dtype, msg, len) ||
      json_str(o, "placement", &placement, msg, len) || json_str(o, "algo", &algo, msg, len) ||
      check_names(r, transport, dtype, algo, msg, len))
    return -1;
  if (strcmp(placement, "out") && strcmp(placement, "in"))
    return coll_tune_fail(msg, len, "\"placement\" must be \"out\" or \"in\", got \"%s\"", placement);
  r->stream = -1;
  json_object *st;
  if (json_object_object_get_ex(o, "stream", &st)) {
    if (!json_object_is_type(st, json_type_boolean))
      return coll_tune_fail(msg, len, "\"stream\" must be true or false, got %s", json_object_to_json_string(st));
    r->stream = json_object_get_boolean(st) ? 1 : 0;
  }
  r->ranks = (int)ranks;
  r->from_bytes = (size_t)from;
  r->chunk_bytes = (size_t)chunk;
  r->in_place = !strcmp(placement, "in");
  return 0;
}

static int parse_json(const char *text, size_t textlen, rules_t *rs, char *err, size_t errlen) {
  json_tokener *tok = json_tokener_new();
  if (!tok) return coll_tune_fail(err, errlen, "cannot be read (out of memory)");
  json_object *doc = json_tokener_parse_ex(tok, text, (int)textlen);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  int rc = -1;
  char msg[256];
  json_object *x = NULL;
  if (jerr == json_tokener_continue) {
    coll_tune_fail(err, errlen, "is not valid JSON (it ends inside the object)");
    goto out;
  }
  if (!doc || jerr != json_tokener_success) {
    coll_tune_fail(err, errlen, "is not valid JSON (%s at byte %zu)", json_tokener_error_desc(jerr), end);
    goto out;
  }
  if (end < textlen && text[end + strspn(text + end, " \t\r\n")]) {
    coll_tune_fail(err, errlen, "is not valid JSON (text after the object at byte %zu)", end);
    goto out;
  }
  if (!json_object_is_type(doc, json_type_object) || !json_object_object_get_ex(doc, "format", &x) ||
      !json_object_is_type(x, json_type_string) || strcmp(json_object_get_string(x), TUNE_MAGIC)) {
    coll_tune_fail(err, errlen, "is not a decision table (no \"format\": \"" TUNE_MAGIC "\")");
    goto out;
  }
  json_object_object_foreach(doc, key, val) {
    (void)val;
    if (strcmp(key, "format") && strcmp(key, "version") && strcmp(key, "comment") && strcmp(key, "rules")) {
      coll_tune_fail(err, errlen, "is malformed: unknown key \"%s\" (a table has format, version, comment, rules)", key);
      goto out;
    }
  }
  int version = 0;
  if (!json_object_object_get_ex(doc, "version", &x) || !json_object_is_type(x, json_type_int) ||
      (version = (int)json_object_get_int64(x)) < 2 || version > 3) {
    coll_tune_fail(err, errlen, "is format version %s; this library reads JSON of versions 2 and 3 and text of version 1",
         x ? json_object_to_json_string(x) : "(none)");
    goto out;
  }
  if (!json_object_object_get_ex(doc, "rules", &x) || !json_object_is_type(x, json_type_array)) {
    coll_tune_fail(err, errlen, "is malformed: \"rules\" is not an array");
    goto out;
  }
  for (size_t i = 0, n = json_object_array_length(x); i < n; i++) {
    coll_tune_rule_t r;
    if (parse_json_rule(json_object_array_get_idx(x, i), version, &r, msg, sizeof msg) || rules_add(rs, &r, msg, sizeof msg)) {
      coll_tune_fail(err, errlen, "is malformed: rules[%zu] %s", i, msg);
      goto out;
    }
  }
  rc = 0;
out:
  json_object_put(doc);
  return rc;
}

int coll_tune_parse(char *text, size_t len, coll_tune_rule_t **rules, int *n, char *err, size_t errlen) {
  rules_t rs = {NULL, 0, 0};
  *rules = NULL;
  *n = 0;
  const char *s = text; /* JSON starts with '{' (or '[', not a table); a version 1 table with its magic or '#' */
  while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
  int rc = *s == '{' || *s == '[' ? parse_json(text, len, &rs, err, errlen) : parse_v1(text, &rs, err, errlen);
  if (rc) {
    free(rs.r);
    return -1;
  }
  *rules = rs.r;
  *n = rs.n;
  return 0;
}

int coll_tune_write(FILE *f, const coll_tune_rule_t *rules, int n) {
  fprintf(f, "{\n  \"format\": \"" TUNE_MAGIC "\",\n  \"version\": 3,\n"
             "  \"comment\": \"written by strata bench --tune; collectives/README.md (Tuning) describes it\",\n"
             "  \"rules\": [");
  for (int i = 0; i < n; i++) {
    json_object *o = json_object_new_object();
    if (!o) return -1;
    json_object_object_add(o, "ranks", json_object_new_int(rules[i].ranks));
    json_object_object_add(o, "transport", json_object_new_string(rules[i].transport));
    json_object_object_add(o, "dtype", json_object_new_string(coll_dtype_name(rules[i].dtype)));
    json_object_object_add(o, "placement", json_object_new_string(rules[i].in_place ? "in" : "out"));
    json_object_object_add(o, "from_bytes", json_object_new_int64((int64_t)rules[i].from_bytes));
    json_object_object_add(o, "algo", json_object_new_string(coll_algo_name(rules[i].algo)));
    json_object_object_add(o, "chunk_bytes", json_object_new_int64((int64_t)rules[i].chunk_bytes));
    if (rules[i].stream >= 0) json_object_object_add(o, "stream", json_object_new_boolean(rules[i].stream));
    fprintf(f, "%s\n    %s", i ? "," : "", json_object_to_json_string_ext(o, JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
  }
  fprintf(f, "\n  ]\n}\n");
  return ferror(f) ? -1 : 0;
}
