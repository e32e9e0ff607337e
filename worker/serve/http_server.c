/* http_server.c -- libmicrohttpd wrapper (see http_server.h): one thread per connection, the
 * connection policy (limits, eviction, header deadline), strict request framing, body
 * accumulation with a bound, dispatch to one handler, blocking streaming bodies.
 *
 * Connection bookkeeping. libmicrohttpd reports each connection's start and end through
 * MHD_OPTION_NOTIFY_CONNECTION, both on its listening thread; each connection gets a conn_t (its
 * socket context) in the list s->conns_head under s->mu. A connection is RECEIVING from its start
 * (and again after each response) until its request has fully arrived, SERVING while the handler
 * and the response run, and CLOSING once the policy has shut its socket down. The policy acts
 * with shutdown(2), never close(2): the connection's own thread then sees the end of the stream
 * and libmicrohttpd closes the socket as usual. That is safe because libmicrohttpd 0.9.75
 * notifies MHD_CONNECTION_NOTIFY_CLOSED before it closes the socket (daemon.c:
 * MHD_cleanup_connections, and the failure path of internal_add_connection), and that
 * notification unlinks the conn_t under s->mu: while an entry is in the list, its fd is still
 * that connection's and cannot have been reused for another.
 *
 * libmicrohttpd's own error pages. For a few malformed requests libmicrohttpd 0.9.75 answers by
 * itself before the handler runs, with an HTML body, and for two of them its state machine then
 * goes wrong: a Content-Length that is not a number gets the status line and headers twice (the
 * state set by transmit_error_response_len is overwritten in the HEADERS_RECEIVED step), and a
 * query string whose parameters overflow the connection's memory pool gets no answer at all
 * (the same overwrite in the URL_RECEIVED step). It logs "Error processing request (HTTP
 * response code is N ...)" right before queueing that page, on the connection's own thread, so
 * the logger answers in its place: it writes the JSON error straight to the socket and shuts it
 * down, and libmicrohttpd's page then fails to send. tls_conn tells the logger which connection
 * its thread is reading. The query string is also cut short when it has more than
 * HTTP_MAX_QUERY_PARAMS parameters, before libmicrohttpd parses it (see uri_cb), so that request
 * reaches the handler's 400 instead.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "log.h"
#include "strata/strnum.h"
#include "util.h"

/* Stack of each connection thread. The deepest path (handler -> JSON parsing and formatting ->
 * logging) needs a few tens of KiB; 512 KiB leaves room for sanitizer builds, and a few hundred
 * connections then reserve ~100 MiB of address space instead of 8 MiB each (glibc's default). */
#define HTTP_THREAD_STACK_BYTES ((size_t)512 * 1024)
/* libmicrohttpd's memory pool per connection (its default): the request line and the headers
 * must fit in it, else 414 / 431. */
#define HTTP_CONN_MEMORY_BYTES ((size_t)32 * 1024)
/* How often the reaper checks the header deadline, seconds: a connection outlives its deadline
 * by at most this much. */
#define HTTP_REAPER_TICK_S 0.1
/* Evictions, refusals and deadline closes are summed and logged at most once per this, seconds. */
#define HTTP_POLICY_LOG_PERIOD_S 1.0
/* libmicrohttpd's own connection limit is 2 x max_connections + this: room for connections that
 * are still being closed (evicted, refused, past the deadline), so they never block admission. */
#define HTTP_CLOSING_SLACK 16
/* File descriptors wanted beyond libmicrohttpd's limit (listening socket, logs, session files, MPI). */
#define HTTP_FD_RESERVE 64
/* The message libmicrohttpd logs right before it queues its own error page (connection.c,
 * transmit_error_response_len); the first argument is the status. */
#define MHD_ERROR_PAGE_LOG_PREFIX "Error processing request (HTTP response code is %u"

typedef enum { CONN_RECEIVING, CONN_SERVING, CONN_CLOSING } conn_phase_t;

typedef struct conn {
  struct conn *prev, *next;  /* in s->conns_head, in order of arrival */
  int fd;                    /* the client socket (libmicrohttpd's) */
  uint32_t ip;               /* client IPv4 address, host byte order (0: not IPv4) */
  conn_phase_t phase;        /* under s->mu */
  double phase_start_s;      /* monotonic time the current RECEIVING phase began (under s->mu) */
  /* The current request, as the URI callback saw it (its connection thread only): */
  struct MHD_Connection *mc;
  const char *raw_target;    /* the request target in libmicrohttpd's read buffer, NULL before one */
  size_t raw_target_len;     /* its bytes before the first NUL, when the callback saw it */
  int nul_in_path;           /* "%00" in the path */
  unsigned nparams;          /* query parameters */
  int responded;             /* a response was queued or written for the current request */
} conn_t;

struct http_server {
  struct MHD_Daemon *daemon;
  http_handler_fn handler;
  void *cls;
  http_error_body_fn error_body;
  size_t max_body_bytes;
  unsigned max_conns;            /* --max-connections */
  unsigned max_per_client;       /* --max-connections-per-client (0 = none) */
  double header_timeout_s;       /* 0 = no deadline */
  int port;
  pthread_mutex_t mu;            /* guards the list, the phases and the counters */
  conn_t *conns_head, *conns_tail;
  http_server_counters_t cnt;
  pthread_cond_t reaper_cv;      /* CLOCK_MONOTONIC; signalled at stop */
  pthread_t reaper;
  int reaper_started;
  int stopping;
};

/* Per-request state kept by MHD between access-handler calls. */
typedef struct {
  char *body;          /* accumulated body */
  size_t len, cap;     /* bytes held, capacity */
  int too_large;       /* the body passed the limit; the rest is discarded */
} conn_state_t;

/* The connection whose request this thread is reading (set by uri_cb). A conn_t outlives its
 * thread: libmicrohttpd joins the thread before notifying CLOSED. */
static __thread conn_t *tls_conn;

int http_parse_listen(const char *listen, char *host, size_t hostlen, int *port, int *is_loopback, char *err,
                      size_t errlen) {
  const char *colon = listen ? strrchr(listen, ':') : NULL;
  if (!colon || colon == listen || !colon[1])
    return strata_fail(err, errlen, "--listen '%s' must be HOST:PORT, e.g. 127.0.0.1:8080 (PORT 0 = any free port)",
                       listen ? listen : "");
  char h[64];
  size_t hl = (size_t)(colon - listen);
  if (hl >= sizeof h)
    return strata_fail(err, errlen, "--listen host '%.*s' is too long", (int)hl, listen);
  memcpy(h, listen, hl);
  h[hl] = '\0';
  if (!strcmp(h, "localhost")) strcpy(h, "127.0.0.1");
  int64_t p;
  if (strnum_parse_int64(colon + 1, &p) != STRNUM_OK || p < 0 || p > 65535)
    return strata_fail(err, errlen, "--listen port '%s' must be a number from 0 to 65535", colon + 1);
  struct in_addr a;
  if (inet_pton(AF_INET, h, &a) != 1)
    return strata_fail(err, errlen, "--listen host '%s' must be a numeric IPv4 address such as 127.0.0.1 "
                       "(or localhost)", h);
  if (strlen(h) + 1 > hostlen)
    return strata_fail(err, errlen, "--listen host too long");
  strcpy(host, h);
  *port = (int)p;
  *is_loopback = (ntohl(a.s_addr) >> 24) == 127;
  return 0;
}

typedef struct {
  ssize_t (*read)(void *cls, char *buf, size_t max);
  void (*free)(void *cls, int completed);
  void *cls;
  int completed; /* read returned end of stream */
} stream_t;

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  stream_t *st = cls;
  (void)pos;
  ssize_t n = st->read(st->cls, buf, max);
  if (n == 0) {
    st->completed = 1;
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
  return n;
}

static void stream_free_cb(void *cls) {
  stream_t *st = cls;
  st->free(st->cls, st->completed);
  free(st);
}

/* ---- answers written straight to the socket -------------------------------------------------- */
static char *error_body(http_server_t *s, int status, const char *msg, size_t *len, const char **ctype) {
  char *b = s->error_body ? s->error_body(s->cls, status, msg, len) : NULL;
  *ctype = "application/json";
  if (b) return b;
  *ctype = "text/plain; charset=utf-8";
  size_t n = strlen(msg) + 32;
  b = malloc(n);
  if (b) *len = (size_t)snprintf(b, n, "%d %s\n", status, msg);
  return b;
}

/* Writes a complete response with an error body to a socket nothing else is writing to, then
 * shuts the socket down; for answers where libmicrohttpd cannot queue one (at connection start,
 * in place of its own error page). Best effort: the socket is non-blocking and the response
 * small, so it fits the send buffer of any client that is still there. */
static void answer_and_close(http_server_t *s, int fd, int status, const char *msg, int retry_after_s) {
  size_t blen = 0;
  const char *ctype;
  char *body = error_body(s, status, msg, &blen, &ctype);
  char head[320], retry[32] = "";
  if (retry_after_s > 0) snprintf(retry, sizeof retry, "Retry-After: %d\r\n", retry_after_s);
  const char *reason = MHD_get_reason_phrase_for((unsigned)status);
  int hn = snprintf(head, sizeof head,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
                    reason && *reason ? reason : "Error", ctype, body ? blen : 0, retry);
  struct iovec iov[2] = {{head, (size_t)hn}, {body, body ? blen : 0}};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = iov;
  mh.msg_iovlen = 2;
  (void)sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT); /* a client that went away needs nothing */
  shutdown(fd, SHUT_RDWR);
  free(body);
}

/* ---- the connection policy -------------------------------------------------------------------- */
static void conn_shutdown_locked(conn_t *c) {
  shutdown(c->fd, SHUT_RDWR); /* the fd is still c's: see the top of this file */
  c->phase = CONN_CLOSING;
}

/* The connection that has been receiving its request the longest (from address ip when
 * same_ip), or NULL. */
static conn_t *oldest_receiving_locked(http_server_t *s, uint32_t ip, int same_ip) {
  conn_t *best = NULL;
  for (conn_t *c = s->conns_head; c; c = c->next)
    if (c->phase == CONN_RECEIVING && (!same_ip || c->ip == ip) && (!best || c->phase_start_s < best->phase_start_s))
      best = c;
  return best;
}

typedef enum { ADMIT_OK, ADMIT_REFUSED_PER_CLIENT, ADMIT_REFUSED_TOTAL } admit_t;

/* Admits the new connection c (not yet listed): evicts what the limits require, or refuses c
 * when nothing can be evicted (c is then CLOSING). */
static admit_t admit_locked(http_server_t *s, conn_t *c) {
  unsigned mine = 0, all = 0;
  for (conn_t *o = s->conns_head; o; o = o->next)
    if (o->phase != CONN_CLOSING) all++, mine += o->ip == c->ip;
  if (s->max_per_client && mine >= s->max_per_client) {
    conn_t *v = oldest_receiving_locked(s, c->ip, 1);
    if (!v) {
      s->cnt.refused_per_client++;
      c->phase = CONN_CLOSING;
      return ADMIT_REFUSED_PER_CLIENT;
    }
    conn_shutdown_locked(v);
    s->cnt.evicted_per_client++;
    all--;
  }
  if (all >= s->max_conns) {
    conn_t *v = oldest_receiving_locked(s, 0, 0);
    if (!v) {
      s->cnt.refused_total++;
      c->phase = CONN_CLOSING;
      return ADMIT_REFUSED_TOTAL;
    }
    conn_shutdown_locked(v);
    s->cnt.evicted_total++;
  }
  return ADMIT_OK;
}

/* MHD_OPTION_NOTIFY_CONNECTION, on libmicrohttpd's listening thread. */
static void notify_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                              enum MHD_ConnectionNotificationCode code) {
  http_server_t *s = cls;
  if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    conn_t *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&s->mu);
    if (c->prev) c->prev->next = c->next;
    else s->conns_head = c->next;
    if (c->next) c->next->prev = c->prev;
    else s->conns_tail = c->prev;
    s->cnt.open--;
    pthread_mutex_unlock(&s->mu);
    free(c);
    *socket_context = NULL;
    return;
  }
  const union MHD_ConnectionInfo *fi = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
  const union MHD_ConnectionInfo *ai = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  conn_t *c = fi ? calloc(1, sizeof *c) : NULL;
  if (!c) { /* the access handler refuses a connection without its conn_t */
    if (fi) {
      strata_warn("http: out of memory for a connection's state (%zu bytes); closing it", sizeof *c);
      shutdown(fi->connect_fd, SHUT_RDWR);
    }
    return;
  }
  c->fd = fi->connect_fd;
  if (ai && ai->client_addr && ai->client_addr->sa_family == AF_INET)
    c->ip = ntohl(((const struct sockaddr_in *)(const void *)ai->client_addr)->sin_addr.s_addr);
  c->phase = CONN_RECEIVING;
  c->phase_start_s = strata_now_s();
  pthread_mutex_lock(&s->mu);
  admit_t a = admit_locked(s, c);
  c->prev = s->conns_tail;
  if (s->conns_tail) s->conns_tail->next = c;
  else s->conns_head = c;
  s->conns_tail = c;
  s->cnt.open++;
  pthread_mutex_unlock(&s->mu);
  *socket_context = c;
  if (a != ADMIT_OK) { /* c stays listed until CLOSED, so its fd stays valid here */
    char msg[256];
    if (a == ADMIT_REFUSED_PER_CLIENT)
      snprintf(msg, sizeof msg, "too many connections from your address: all %u it may hold "
               "(--max-connections-per-client) are being served; retry later", s->max_per_client);
    else
      snprintf(msg, sizeof msg, "the server is at its connection limit: all %u connections (--max-connections) "
               "are being served; retry later", s->max_conns);
    answer_and_close(s, c->fd, 503, msg, 1);
  }
}

/* Marks c SERVING once its request has fully arrived; 0 if the policy closed it meanwhile. */
static int conn_begin_serving(http_server_t *s, conn_t *c) {
  pthread_mutex_lock(&s->mu);
  int ok = c->phase != CONN_CLOSING;
  if (ok) c->phase = CONN_SERVING;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

static void cv_wait_monotonic_s(pthread_cond_t *cv, pthread_mutex_t *mu, double wait_s) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  long long ns = (long long)ts.tv_nsec + (long long)(wait_s * 1e9);
  ts.tv_sec += (time_t)(ns / 1000000000LL);
  ts.tv_nsec = (long)(ns % 1000000000LL);
  pthread_cond_timedwait(cv, mu, &ts);
}

/* One warning per class of policy action with its count since the last report. */
static void log_policy(const http_server_t *s, const http_server_counters_t *now, const http_server_counters_t *was) {
  unsigned long long d;
  if ((d = now->deadline_closed - was->deadline_closed))
    strata_warn("http: closed %llu connection(s) that had not sent a complete request within --header-timeout-s %g",
                d, s->header_timeout_s);
  if ((d = now->evicted_per_client - was->evicted_per_client))
    strata_warn("http: evicted %llu connection(s) still receiving their request to admit new ones from the same "
                "address (--max-connections-per-client %u)", d, s->max_per_client);
  if ((d = now->evicted_total - was->evicted_total))
    strata_warn("http: evicted %llu connection(s) still receiving their request to admit new ones "
                "(--max-connections %u)", d, s->max_conns);
  if ((d = now->refused_per_client - was->refused_per_client))
    strata_warn("http: refused %llu connection(s) with 503: their address had all %u of its connections being "
                "served (--max-connections-per-client)", d, s->max_per_client);
  if ((d = now->refused_total - was->refused_total))
    strata_warn("http: refused %llu connection(s) with 503: all %u connections were being served "
                "(--max-connections)", d, s->max_conns);
}

/* The reaper: closes connections past the header deadline and reports the policy's actions. */
static void *reaper_main(void *arg) {
  http_server_t *s = arg;
  http_server_counters_t logged;
  double next_log = strata_now_s() + HTTP_POLICY_LOG_PERIOD_S;
  pthread_mutex_lock(&s->mu);
  logged = s->cnt;
  while (!s->stopping) {
    cv_wait_monotonic_s(&s->reaper_cv, &s->mu, HTTP_REAPER_TICK_S);
    double now = strata_now_s();
    if (s->header_timeout_s > 0)
      for (conn_t *c = s->conns_head; c; c = c->next)
        if (c->phase == CONN_RECEIVING && now - c->phase_start_s >= s->header_timeout_s) {
          conn_shutdown_locked(c);
          s->cnt.deadline_closed++;
        }
    if (now >= next_log) {
      http_server_counters_t cur = s->cnt;
      pthread_mutex_unlock(&s->mu);
      log_policy(s, &cur, &logged);
      pthread_mutex_lock(&s->mu);
      logged = cur;
      next_log = now + HTTP_POLICY_LOG_PERIOD_S;
    }
  }
  http_server_counters_t cur = s->cnt;
  pthread_mutex_unlock(&s->mu);
  log_policy(s, &cur, &logged); /* what happened since the last report */
  return NULL;
}

void http_server_counters(http_server_t *s, http_server_counters_t *out) {
  pthread_mutex_lock(&s->mu);
  *out = s->cnt;
  pthread_mutex_unlock(&s->mu);
}

/* ---- strict request framing ------------------------------------------------------------------- */
/* MHD_OPTION_URI_LOG_CALLBACK: called on the connection thread with the request target as
 * received, before libmicrohttpd unescapes it or parses its query string. */
static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *mc) {
  (void)cls;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_t *c = ci ? ci->socket_context : NULL;
  tls_conn = c;
  if (!c) return NULL;
  c->mc = mc;
  c->responded = 0;
  c->raw_target = NULL;
  c->nul_in_path = 0;
  c->nparams = 0;
  if (!uri) return NULL; /* a request line without a target */
  c->raw_target = uri;
  c->raw_target_len = strlen(uri);
  const char *q = memchr(uri, '?', c->raw_target_len);
  c->nul_in_path = memmem(uri, q ? (size_t)(q - uri) : c->raw_target_len, "%00", 3) != NULL;
  if (q && q[1]) {
    c->nparams = 1;
    for (const char *p = q + 1; *p; p++) c->nparams += *p == '&';
    /* The handler answers 400; libmicrohttpd must not parse these parameters first, as it keeps
     * a record of each in the connection's memory pool and answers nothing when they overflow
     * it. The string is libmicrohttpd's writable read buffer, which it cuts at '?' itself right
     * after this callback; an empty query string makes it parse none. */
    if (c->nparams > HTTP_MAX_QUERY_PARAMS) ((char *)q)[1] = '\0';
  }
  return NULL;
}

/* A raw NUL byte in the request target. libmicrohttpd 0.9.75 splits the request line at its
 * spaces, overwriting the space before the version with a terminator, and passes the target on
 * as a C string: a NUL inside it silently shortens it ("/health\0x" is served as /health). So
 * the version string starts right after the target's end, and a first NUL that comes earlier
 * was in the target. Only checked when `version` lies just after the target in that buffer. */
static int raw_nul_in_target(const conn_t *c, const char *version) {
  if (!c->raw_target || !version) return 0;
  uintptr_t t = (uintptr_t)c->raw_target, v = (uintptr_t)version;
  if (v <= t + c->raw_target_len + 1 || v - t > HTTP_CONN_MEMORY_BYTES) return 0;
  return version[-1] == '\0';
}

typedef struct {
  unsigned ncl, nte, nhost;   /* Content-Length, Transfer-Encoding, Host headers */
  const char *cl[2], *te;     /* the first values */
} header_scan_t;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  header_scan_t *h = cls;
  (void)kind;
  if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
    if (h->ncl < 2) h->cl[h->ncl] = value;
    h->ncl++;
  } else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
    if (!h->nte) h->te = value;
    h->nte++;
  } else if (!strcasecmp(key, MHD_HTTP_HEADER_HOST)) {
    h->nhost++;
  }
  return MHD_YES;
}

static int is_decimal(const char *v) {
  if (!v || !*v) return 0;
  for (; *v; v++)
    if (*v < '0' || *v > '9') return 0;
  return 1;
}

/* The framing rules of http_server.h for a request whose headers have arrived: 0, or the status
 * to answer (400, 501) with msg. */
static int check_framing(conn_t *c, struct MHD_Connection *mc, const char *version, char *msg, size_t cap) {
  if (c->nul_in_path || raw_nul_in_target(c, version)) {
    snprintf(msg, cap, "the request path contains a NUL byte (%%00 or a raw 0x00); remove it");
    return 400;
  }
  if (c->nparams > HTTP_MAX_QUERY_PARAMS) {
    snprintf(msg, cap, "the query string has %u parameters; at most %d are accepted (the endpoints take none)",
             c->nparams, HTTP_MAX_QUERY_PARAMS);
    return 400;
  }
  header_scan_t h;
  memset(&h, 0, sizeof h);
  MHD_get_connection_values(mc, MHD_HEADER_KIND, scan_header, &h);
  if (h.ncl > 1) {
    snprintf(msg, cap, "the request has %u Content-Length headers ('%.32s', '%.32s'); send exactly one", h.ncl,
             h.cl[0], h.cl[1]);
    return 400;
  }
  if (h.ncl && h.nte) {
    snprintf(msg, cap, "the request has both Content-Length and Transfer-Encoding; send one of them");
    return 400;
  }
  if (h.ncl && !is_decimal(h.cl[0])) {
    snprintf(msg, cap, "Content-Length '%.32s' must be a non-negative decimal number", h.cl[0]);
    return 400;
  }
  if (h.nte > 1) {
    snprintf(msg, cap, "the request has %u Transfer-Encoding headers; send at most one (chunked)", h.nte);
    return 400;
  }
  if (h.nte && strcasecmp(h.te, "chunked")) {
    snprintf(msg, cap, "Transfer-Encoding '%.32s' is not supported; send the body with Content-Length or "
             "Transfer-Encoding: chunked", h.te);
    return 501;
  }
  if (h.nhost > 1 || (!h.nhost && version && !strcmp(version, MHD_HTTP_VERSION_1_1))) {
    snprintf(msg, cap, "an HTTP/1.1 request needs exactly one Host header; it has %u", h.nhost);
    return 400;
  }
  return 0;
}

/* What to tell the client in place of libmicrohttpd's own page for `status`. */
static void mhd_error_message(const conn_t *c, unsigned status, char *msg, size_t cap) {
  const char *cl = c->mc && c->raw_target
                       ? MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH)
                       : NULL;
  switch (status) {
  case 400:
    if (cl && !is_decimal(cl)) snprintf(msg, cap, "Content-Length '%.32s' must be a non-negative decimal number", cl);
    else snprintf(msg, cap, "malformed HTTP request: a header line or the chunked body does not follow HTTP/1.1");
    break;
  case 413: snprintf(msg, cap, "Content-Length '%.32s' is too large", cl ? cl : "?"); break;
  case 414:
    snprintf(msg, cap, "the request line is longer than the server's %zu KiB per connection", HTTP_CONN_MEMORY_BYTES / 1024);
    break;
  case 431:
    snprintf(msg, cap, "the request line and headers are larger than the server's %zu KiB per connection; send fewer "
             "or shorter headers (and query parameters)", HTTP_CONN_MEMORY_BYTES / 1024);
    break;
  default: snprintf(msg, cap, "the HTTP request could not be processed"); break;
  }
}

/* Answers in place of the error page libmicrohttpd is about to queue (see the top of this file). */
static void answer_mhd_error(http_server_t *s, unsigned status) {
  conn_t *c = tls_conn;
  if (!c || c->responded) return;
  pthread_mutex_lock(&s->mu);
  int ok = c->phase != CONN_CLOSING;
  if (ok) c->phase = CONN_CLOSING;
  pthread_mutex_unlock(&s->mu);
  if (!ok) return;
  c->responded = 1;
  char msg[256];
  mhd_error_message(c, status, msg, sizeof msg);
  answer_and_close(s, c->fd, (int)status, msg, 0);
}

/* ---- requests --------------------------------------------------------------------------------- */
/* Refuses what libmicrohttpd asked for, out of memory for `what`: it then closes the connection. */
static enum MHD_Result out_of_memory(const char *what, size_t bytes) {
  strata_warn("http: out of memory for %s (%zu bytes); closing the connection", what, bytes);
  return MHD_NO;
}

static enum MHD_Result queue(conn_t *c, struct MHD_Connection *conn, http_response_t *r) {
  struct MHD_Response *resp = NULL;
  c->responded = 1;
  if (r->stream_read) {
    stream_t *st = calloc(1, sizeof *st);
    if (!st) {
      r->stream_free(r->stream_cls, 0);
      return out_of_memory("a response stream", sizeof *st);
    }
    st->read = r->stream_read;
    st->free = r->stream_free;
    st->cls = r->stream_cls;
    /* 1 KiB blocks: SSE events are small and should leave promptly. */
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, stream_reader, st, stream_free_cb);
    if (!resp) {
      stream_free_cb(st);
      return MHD_NO;
    }
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
  } else {
    resp = MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (void *)"",
                                           r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
      free(r->body);
      return MHD_NO;
    }
    r->body = NULL;
  }
  if (r->content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
  if (r->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
  if (r->retry_after_s > 0) {
    char ra[16];
    snprintf(ra, sizeof ra, "%d", r->retry_after_s);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
  }
  if (r->close) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* A framing error: the JSON error body, and the connection closes after it. */
static enum MHD_Result queue_error(http_server_t *s, conn_t *c, struct MHD_Connection *conn, int status,
                                   const char *msg) {
  if (!conn_begin_serving(s, c)) return MHD_NO;
  http_response_t r;
  memset(&r, 0, sizeof r);
  r.status = status;
  r.body = error_body(s, status, msg, &r.body_len, &r.content_type);
  r.close = 1;
  return queue(c, conn, &r);
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                      const char *version, const char *upload_data, size_t *upload_data_size,
                                      void **con_cls) {
  http_server_t *s = cls;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_t *c = ci ? ci->socket_context : NULL;
  if (!c) return MHD_NO; /* its bookkeeping failed (out of memory): it was shut down at the start */
  conn_state_t *cs = *con_cls;
  if (!cs) {
    cs = calloc(1, sizeof *cs);
    if (!cs) return out_of_memory("a request's state", sizeof *cs);
    *con_cls = cs;
    char msg[256];
    int st = check_framing(c, conn, version, msg, sizeof msg);
    if (st) return queue_error(s, c, conn, st, msg);
    /* A declared body over the limit is refused before it is read. */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
      char *end;
      errno = 0;
      unsigned long long v = strtoull(cl, &end, 10);
      if (errno || *end || v > s->max_body_bytes) cs->too_large = 1;
    }
    if (!cs->too_large) return MHD_YES;
  } else if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (!cs->too_large) {
      if (cs->len + n > s->max_body_bytes) {
        cs->too_large = 1;
        free(cs->body);
        cs->body = NULL;
        cs->len = cs->cap = 0;
      } else {
        if (cs->len + n + 1 > cs->cap) {
          size_t ncap = cs->cap ? cs->cap : 1024;
          while (ncap < cs->len + n + 1) ncap *= 2;
          char *nb = realloc(cs->body, ncap);
          if (!nb) return out_of_memory("a request body", ncap);
          cs->body = nb;
          cs->cap = ncap;
        }
        memcpy(cs->body + cs->len, upload_data, n);
        cs->len += n;
        cs->body[cs->len] = '\0';
      }
    }
    return MHD_YES;
  }
  /* The whole request is here (or its body is refused): from now on it is being served. */
  if (!conn_begin_serving(s, c)) return MHD_NO; /* past its deadline or evicted meanwhile */
  http_response_t r;
  memset(&r, 0, sizeof r);
  s->handler(s->cls, method, url, cs->body ? cs->body : "", cs->len, cs->too_large, c->fd, &r);
  return queue(c, conn, &r);
}

int http_client_gone(int fd) {
  if (fd < 0) return 0;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return 1;                                   /* orderly close */
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 1; /* reset */
  return 0;
}

/* MHD_OPTION_NOTIFY_COMPLETED: the request is done (answered, or abandoned). On a keep-alive
 * connection the next request's deadline counts from here. */
static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
  http_server_t *s = cls;
  (void)toe;
  conn_state_t *cs = *con_cls;
  if (cs) {
    free(cs->body);
    free(cs);
    *con_cls = NULL;
  }
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_t *c = ci ? ci->socket_context : NULL;
  if (!c) return;
  pthread_mutex_lock(&s->mu);
  if (c->phase != CONN_CLOSING) {
    c->phase = CONN_RECEIVING;
    c->phase_start_s = strata_now_s();
  }
  c->responded = 0;
  c->raw_target = NULL;
  pthread_mutex_unlock(&s->mu);
}

/* libmicrohttpd's messages as rank-prefixed warnings, at most one per HTTP_LOG_PERIOD_S (a client
 * storm past the connection limit would otherwise log a line per connection). Its error-page
 * message is answered first (answer_mhd_error). */
#define HTTP_LOG_PERIOD_S 1
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  http_server_t *s = cls;
  if (!strncmp(fmt, MHD_ERROR_PAGE_LOG_PREFIX, strlen(MHD_ERROR_PAGE_LOG_PREFIX))) {
    va_list cp;
    va_copy(cp, ap);
    unsigned status = va_arg(cp, unsigned);
    va_end(cp);
    answer_mhd_error(s, status);
  }
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  static time_t last;
  static unsigned long suppressed;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  time_t now = time(NULL);
  pthread_mutex_lock(&mu);
  if (now - last < HTTP_LOG_PERIOD_S) {
    suppressed++;
    pthread_mutex_unlock(&mu);
    return;
  }
  unsigned long sup = suppressed;
  suppressed = 0;
  last = now;
  pthread_mutex_unlock(&mu);
  if (sup) strata_warn("http: %s (and %lu more messages in the last second)", msg, sup);
  else strata_warn("http: %s", msg);
}

/* Raises the process's soft open-file limit to `need` (at most to the hard limit) when it is
 * lower; warns when even the hard limit is lower. */
static void ensure_fd_limit(unsigned max_connections, rlim_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need) return;
  if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > rl.rlim_cur) {
    struct rlimit up = {rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max, rl.rlim_max};
    if (!setrlimit(RLIMIT_NOFILE, &up)) rl.rlim_cur = up.rlim_cur;
  }
  if (rl.rlim_cur < need)
    strata_warn("serve: the open-file limit is %llu, but --max-connections %u needs about %llu descriptors; raise "
                "it (ulimit -n) or lower --max-connections", (unsigned long long)rl.rlim_cur, max_connections,
                (unsigned long long)need);
}

int http_server_start(const http_server_opts_t *opts, http_handler_fn handler, void *cls, http_server_t **out,
                      char *err, size_t errlen) {
  char host[64];
  int port = 0, loop = 0;
  *out = NULL;
  if (http_parse_listen(opts->listen ? opts->listen : "127.0.0.1:8080", host, sizeof host, &port, &loop, err, errlen))
    return -1;
  http_server_t *s = calloc(1, sizeof *s);
  if (!s) return strata_fail(err, errlen, "out of memory for the HTTP server's state");
  s->handler = handler;
  s->cls = cls;
  s->error_body = opts->error_body;
  s->max_body_bytes = opts->max_body_bytes;
  s->max_conns = opts->max_connections ? opts->max_connections : 64;
  s->max_per_client = opts->max_connections_per_client;
  s->header_timeout_s = opts->header_timeout_s > 0 ? opts->header_timeout_s : 0;
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->reaper_cv, &ca);
  pthread_condattr_destroy(&ca);
  unsigned mhd_limit = 2 * s->max_conns + HTTP_CLOSING_SLACK;
  ensure_fd_limit(s->max_conns, (rlim_t)mhd_limit + HTTP_FD_RESERVE);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &addr.sin_addr);
  s->daemon = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
      access_handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
      MHD_OPTION_CONNECTION_LIMIT, mhd_limit, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->timeout_s,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_CONN_MEMORY_BYTES, MHD_OPTION_THREAD_STACK_SIZE,
      HTTP_THREAD_STACK_BYTES, MHD_OPTION_NOTIFY_CONNECTION, notify_connection, s, MHD_OPTION_URI_LOG_CALLBACK, uri_cb,
      s, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s, MHD_OPTION_END);
  if (!s->daemon) {
    snprintf(err, errlen, "cannot listen on %s:%d (address in use or not available on this host?)", host, port);
    goto fail;
  }
  if (pthread_create(&s->reaper, NULL, reaper_main, s)) {
    snprintf(err, errlen, "cannot start the HTTP connection reaper thread");
    MHD_stop_daemon(s->daemon);
    goto fail;
  }
  s->reaper_started = 1;
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? (int)info->port : port;
  *out = s;
  return 0;
fail:
  pthread_cond_destroy(&s->reaper_cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
  return -1;
}

int http_server_port(const http_server_t *s) { return s->port; }

void http_server_stop(http_server_t *s) {
  if (!s) return;
  if (s->daemon) MHD_stop_daemon(s->daemon); /* every connection is CLOSED (unlisted) by now */
  if (s->reaper_started) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->reaper_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->reaper, NULL);
  }
  pthread_cond_destroy(&s->reaper_cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}
