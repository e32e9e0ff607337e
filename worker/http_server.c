/* http_server.c -- libmicrohttpd wrapper (see http_server.h): one thread per connection, body
 * accumulation with a bound, dispatch to one handler, blocking streaming bodies. */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <time.h>

#include "log.h"

struct http_server {
  struct MHD_Daemon *daemon;
  http_handler_fn handler;
  void *cls;
  size_t max_body_bytes;
  int port;
};

/* Per-request state kept by MHD between access-handler calls. */
typedef struct {
  char *body;          /* accumulated body */
  size_t len, cap;     /* bytes held, capacity */
  int too_large;       /* the body passed the limit; the rest is discarded */
} conn_state_t;

int http_parse_listen(const char *listen, char *host, size_t hostlen, int *port, int *is_loopback, char *err,
                      size_t errlen) {
  const char *colon = listen ? strrchr(listen, ':') : NULL;
  if (!colon || colon == listen || !colon[1]) {
    snprintf(err, errlen, "--listen '%s' must be HOST:PORT, e.g. 127.0.0.1:8080 (PORT 0 = any free port)",
             listen ? listen : "");
    return -1;
  }
  char h[64];
  size_t hl = (size_t)(colon - listen);
  if (hl >= sizeof h) {
    snprintf(err, errlen, "--listen host '%.*s' is too long", (int)hl, listen);
    return -1;
  }
  memcpy(h, listen, hl);
  h[hl] = '\0';
  if (!strcmp(h, "localhost")) strcpy(h, "127.0.0.1");
  char *end;
  errno = 0;
  long p = strtol(colon + 1, &end, 10);
  if (errno || *end || p < 0 || p > 65535) {
    snprintf(err, errlen, "--listen port '%s' must be a number from 0 to 65535", colon + 1);
    return -1;
  }
  struct in_addr a;
  if (inet_pton(AF_INET, h, &a) != 1) {
    snprintf(err, errlen, "--listen host '%s' must be a numeric IPv4 address such as 127.0.0.1 (or localhost)", h);
    return -1;
  }
  if (strlen(h) + 1 > hostlen) {
    snprintf(err, errlen, "--listen host too long");
    return -1;
  }
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

static enum MHD_Result queue(struct MHD_Connection *conn, http_response_t *r) {
  struct MHD_Response *resp = NULL;
  if (r->stream_read) {
    stream_t *st = calloc(1, sizeof *st);
    if (!st) {
      r->stream_free(r->stream_cls, 0);
      return MHD_NO;
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
  enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                      const char *version, const char *upload_data, size_t *upload_data_size,
                                      void **con_cls) {
  http_server_t *s = cls;
  (void)version;
  conn_state_t *cs = *con_cls;
  if (!cs) {
    cs = calloc(1, sizeof *cs);
    if (!cs) return MHD_NO;
    *con_cls = cs;
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
          if (!nb) return MHD_NO;
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
  http_response_t r;
  memset(&r, 0, sizeof r);
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  int fd = ci ? (int)ci->connect_fd : -1;
  s->handler(s->cls, method, url, cs->body ? cs->body : "", cs->len, cs->too_large, fd, &r);
  return queue(conn, &r);
}

int http_client_gone(int fd) {
  if (fd < 0) return 0;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return 1;                                   /* orderly close */
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 1; /* reset */
  return 0;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)conn, (void)toe;
  conn_state_t *cs = *con_cls;
  if (cs) {
    free(cs->body);
    free(cs);
    *con_cls = NULL;
  }
}

/* libmicrohttpd's messages as rank-prefixed warnings, at most one per HTTP_LOG_PERIOD_S (a client
 * storm past the connection limit would otherwise log a line per connection). */
#define HTTP_LOG_PERIOD_S 1
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
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

int http_server_start(const http_server_opts_t *opts, http_handler_fn handler, void *cls, http_server_t **out,
                      char *err, size_t errlen) {
  char host[64];
  int port = 0, loop = 0;
  *out = NULL;
  if (http_parse_listen(opts->listen ? opts->listen : "127.0.0.1:8080", host, sizeof host, &port, &loop, err, errlen))
    return -1;
  http_server_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  s->handler = handler;
  s->cls = cls;
  s->max_body_bytes = opts->max_body_bytes;
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &addr.sin_addr);
  s->daemon = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
      access_handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)(opts->max_connections ? opts->max_connections : 64), MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)opts->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s, MHD_OPTION_END);
  if (!s->daemon) {
    snprintf(err, errlen, "cannot listen on %s:%d (address in use or not available on this host?)", host, port);
    free(s);
    return -1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? (int)info->port : port;
  *out = s;
  return 0;
}

int http_server_port(const http_server_t *s) { return s->port; }

void http_server_stop(http_server_t *s) {
  if (!s) return;
  if (s->daemon) MHD_stop_daemon(s->daemon);
  free(s);
}
