/* session_store.h -- rank 0's book of the committed sessions in a session directory: the bytes
 * each takes on disk (every stage's file, from its commit record), when each was last used, the
 * disk quota (--session-disk-mb) and the store's health.
 *
 * It decides and the inference engine carries out: session_store_victim names the least
 * recently used session to evict so that a save fits the quota, and the engine deletes that
 * session's files on every stage. Health: a failed save marks the store "degraded" (with the
 * reason, for /health) until a later save succeeds.
 *
 * Only the thread that steps the engine uses a store (no locking).
 *
 * Usage
 *    session_store_t *st;
 *    if (session_store_open(dir, 64ull << 20, &st, err, sizeof err)) ...   // scans the records
 *    char victim[SESSION_ID_MAX + 1];
 *    while (session_store_excess(st, "chat-1", new_bytes) > 0 &&
 *           session_store_victim(st, "chat-1", in_use, eng, victim, NULL, NULL))
 *      evict(victim);                                     // then session_store_remove(st, victim)
 *    ... save ...; session_store_put(st, "chat-1", new_bytes);
 */
#ifndef STRATA_SESSION_STORE_H
#define STRATA_SESSION_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "session.h"

typedef struct session_store session_store_t;

/* Scans dir's commit records. quota_bytes 0 = no quota. 0, or -1 with err. */
int session_store_open(const char *dir, uint64_t quota_bytes, session_store_t **out, char *err, size_t errlen);
void session_store_free(session_store_t *st); /* NULL is a no-op */

/* A committed save of id taking `bytes` on disk (all stages), used now. 0, or -1 out of memory. */
int session_store_put(session_store_t *st, const char *id, uint64_t bytes);
/* id was used now (loaded or continued). */
void session_store_touch(session_store_t *st, const char *id);
/* id is gone (deleted or evicted). */
void session_store_remove(session_store_t *st, const char *id);

/* Bytes beyond the quota once id takes new_bytes (its current files replaced); 0 if it fits or
 * there is no quota. */
uint64_t session_store_excess(const session_store_t *st, const char *id, uint64_t new_bytes);
/* The least recently used session other than `keep` for which in_use(id, arg) is 0 (in_use
 * may be NULL): copies its id into victim (SESSION_ID_MAX + 1 bytes), its bytes and idle
 * seconds, and returns 1; 0 if there is none. */
int session_store_victim(const session_store_t *st, const char *keep, int (*in_use)(const char *id, void *arg),
                         void *arg, char *victim, uint64_t *bytes_out, double *idle_s_out);

/* The store's state for /health and /metrics. */
typedef struct {
  int degraded;          /* 1 while the most recent save failed */
  uint64_t failures;     /* saves that failed since start */
  uint64_t evictions;    /* sessions evicted to keep within the quota since start */
  uint64_t bytes;        /* committed session bytes on disk */
  uint64_t quota_bytes;  /* 0 = none */
  int sessions;          /* committed sessions */
  char last_error[256];  /* why the last failed save failed ("" if none) */
} session_store_health_t;
void session_store_health(const session_store_t *st, session_store_health_t *out);
void session_store_note_failure(session_store_t *st, const char *why);
void session_store_note_success(session_store_t *st);
void session_store_note_eviction(session_store_t *st);

#endif /* STRATA_SESSION_STORE_H */
