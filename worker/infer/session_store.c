/* session_store.c -- rank 0's book of committed sessions: sizes, last use, quota victims,
 * health (see session_store.h). A flat array: a server holds thousands of sessions at most,
 * and every operation is a scan of it, far cheaper than the disk write it accompanies. */
#include "session_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

typedef struct {
  char id[SESSION_ID_MAX + 1];
  uint64_t bytes;    /* on disk, every stage */
  double last_use_s; /* strata_now_s() clock; records found at start get their age from mtime */
} entry_t;

struct session_store {
  entry_t *v;
  int n, cap;
  uint64_t bytes, quota;
  session_store_health_t health;
};

static entry_t *find(const session_store_t *st, const char *id) {
  for (int i = 0; i < st->n; i++)
    if (!strcmp(st->v[i].id, id)) return &st->v[i];
  return NULL;
}

static entry_t *add(session_store_t *st, const char *id) {
  if (st->n == st->cap) {
    int cap = st->cap ? 2 * st->cap : 64;
    entry_t *nv = realloc(st->v, sizeof *nv * (size_t)cap);
    if (!nv) return NULL;
    st->v = nv;
    st->cap = cap;
  }
  entry_t *e = &st->v[st->n++];
  memset(e, 0, sizeof *e);
  snprintf(e->id, sizeof e->id, "%s", id);
  return e;
}

int session_store_open(const char *dir, uint64_t quota_bytes, session_store_t **out, char *err, size_t errlen) {
  *out = NULL;
  session_store_t *st = calloc(1, sizeof *st);
  if (!st) return strata_fail(err, errlen, "out of memory for the session store of %s", dir);
  st->quota = quota_bytes;
  session_info_t *v = NULL;
  int n = 0;
  if (session_list(dir, &v, &n, err, errlen)) {
    free(st);
    return -1;
  }
  double now = strata_now_s(), wall = (double)time(NULL);
  for (int i = 0; i < n; i++) {
    entry_t *e = add(st, v[i].id);
    if (!e) {
      free(v);
      session_store_free(st);
      return strata_fail(err, errlen, "out of memory for the session store's list of %d sessions", n);
    }
    e->bytes = v[i].bytes;
    double age = wall - (double)v[i].saved_unix_s;
    e->last_use_s = now - (age > 0 ? age : 0);
    st->bytes += e->bytes;
  }
  free(v);
  *out = st;
  return 0;
}

void session_store_free(session_store_t *st) {
  if (!st) return;
  free(st->v);
  free(st);
}

int session_store_put(session_store_t *st, const char *id, uint64_t bytes) {
  entry_t *e = find(st, id);
  if (!e && !(e = add(st, id))) return -1;
  st->bytes = st->bytes - e->bytes + bytes;
  e->bytes = bytes;
  e->last_use_s = strata_now_s();
  return 0;
}

void session_store_touch(session_store_t *st, const char *id) {
  entry_t *e = find(st, id);
  if (e) e->last_use_s = strata_now_s();
}

void session_store_remove(session_store_t *st, const char *id) {
  entry_t *e = find(st, id);
  if (!e) return;
  st->bytes -= e->bytes;
  *e = st->v[--st->n];
}

uint64_t session_store_excess(const session_store_t *st, const char *id, uint64_t new_bytes) {
  if (!st->quota) return 0;
  const entry_t *e = find(st, id);
  uint64_t after = st->bytes - (e ? e->bytes : 0) + new_bytes;
  return after > st->quota ? after - st->quota : 0;
}

int session_store_victim(const session_store_t *st, const char *keep, int (*in_use)(const char *id, void *arg),
                         void *arg, char *victim, uint64_t *bytes_out, double *idle_s_out) {
  const entry_t *best = NULL;
  for (int i = 0; i < st->n; i++) {
    const entry_t *e = &st->v[i];
    if ((keep && !strcmp(e->id, keep)) || (in_use && in_use(e->id, arg))) continue;
    if (!best || e->last_use_s < best->last_use_s) best = e;
  }
  if (!best) return 0;
  snprintf(victim, SESSION_ID_MAX + 1, "%s", best->id);
  if (bytes_out) *bytes_out = best->bytes;
  if (idle_s_out) *idle_s_out = strata_now_s() - best->last_use_s;
  return 1;
}

void session_store_health(const session_store_t *st, session_store_health_t *out) {
  *out = st->health;
  out->bytes = st->bytes;
  out->quota_bytes = st->quota;
  out->sessions = st->n;
}

void session_store_note_failure(session_store_t *st, const char *why) {
  st->health.degraded = 1;
  st->health.failures++;
  snprintf(st->health.last_error, sizeof st->health.last_error, "%s", why);
}

void session_store_note_success(session_store_t *st) { st->health.degraded = 0; }

void session_store_note_eviction(session_store_t *st) { st->health.evictions++; }
