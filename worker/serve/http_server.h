/* http_server.h -- a small wrapper around libmicrohttpd for `strata serve`.
 *
 * One connection thread per client (MHD_USE_THREAD_PER_CONNECTION), so a handler may block while
 * the inference main loop works on its request, and a streaming body is produced by a blocking
 * reader callback. The wrapper bounds what a client can make the server hold:
 *   - the request body (a body over max_body_bytes is discarded as it arrives and the handler is
 *     told body_too_large, so it answers 413 -- a declared Content-Length over the limit is
 *     answered before the body is read);
 *   - the time a request may take to arrive: header_timeout_s from the connection's start (or
 *     from the previous response on a keep-alive connection) until its headers and body are
 *     complete, however the bytes trickle in; past it the connection is closed. (The idle
 *     timeout, timeout_s, only ends connections that send nothing at all for that long.)
 *   - the connections: at most max_connections open and max_connections_per_client from one
 *     IPv4 address. A connection past a limit first evicts (closes) the oldest connection that
 *     is still receiving its request -- of that client for the per-client limit, of anyone for
 *     the total -- so slow or idle clients cannot lock others out; connections whose request is
 *     being served are never evicted. Only when nothing is evictable is the new connection
 *     refused: 503 with Retry-After, then closed.
 * Requests are held to strict HTTP/1.1 framing (RFC 9112); each of these is answered 400 with
 * Connection: close before the handler sees it: more than one Content-Length (equal or not),
 * Content-Length with Transfer-Encoding, a Content-Length that is not a decimal number, a NUL
 * in the path (%00 or a raw byte), more than HTTP_MAX_QUERY_PARAMS query parameters, an HTTP/1.1
 * request without exactly one Host; a Transfer-Encoding other than chunked is answered 501.
 * Errors libmicrohttpd detects itself (header block over its per-connection memory: 431, a
 * request line too long: 414, a Content-Length too large to represent: 413) are answered with
 * the same JSON error body once the request line has been read; every answer has exactly one
 * status line.
 * The listen address is parsed here: "HOST:PORT" with a numeric IPv4 HOST or "localhost";
 * PORT 0 picks a free port (http_server_port tells which).
 */
#ifndef STRATA_HTTP_SERVER_H
#define STRATA_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct http_server http_server_t;

/* What a handler answers. Either a complete body (body/body_len, malloc'd, taken by the server),
 * or a stream: stream_read is called on the connection thread until it returns 0 (end) or -1
 * (abort the connection); it may block, and must return at least 1 byte or 0/-1 (it is called
 * again at once). stream_free is called exactly once when the response is done with, with
 * completed = 1 if stream_read reached the end and 0 if the client went away first. */
typedef struct {
  int status;                /* HTTP status code */
  const char *content_type;  /* static string */
  char *body;                /* malloc'd complete body, or NULL */
  size_t body_len;           /* bytes of body */
  const char *allow;         /* value of an Allow header (405), or NULL */
  int retry_after_s;         /* > 0: a Retry-After header (429/503) */
  ssize_t (*stream_read)(void *cls, char *buf, size_t max); /* non-NULL: streaming body */
  void (*stream_free)(void *cls, int completed);
  void *stream_cls;
  int close;                 /* 1: Connection: close (the connection ends after this response) */
} http_response_t;

/* Called once per request on its connection thread, after the whole body arrived. `path` is
 * the URL path without the query string. The handler fills *resp (zeroed on entry). `fd` is the
 * client's socket, only for http_client_gone() while the handler blocks (-1 if unknown). */
typedef void (*http_handler_fn)(void *cls, const char *method, const char *path, const char *body,
                                size_t body_len, int body_too_large, int fd, http_response_t *resp);

/* 1 if the client of socket fd has closed its side (an orderly shutdown or a reset), checked
 * without blocking and without consuming data; 0 if it is still there or fd < 0. */
int http_client_gone(int fd);

/* A malloc'd JSON error body for `status` with `message` (*len_out = its bytes), for the answers
 * the wrapper gives itself (framing errors, refusals); NULL when out of memory. Called on
 * libmicrohttpd's threads, so it must be thread-safe. */
typedef char *(*http_error_body_fn)(void *cls, int status, const char *message, size_t *len_out);

/* Query parameters accepted in one request; more -> 400. Strata's endpoints take none, and
 * libmicrohttpd keeps a record per parameter in the connection's 32 KiB memory pool, where a
 * few hundred of them no longer fit. */
#define HTTP_MAX_QUERY_PARAMS 64

typedef struct {
  const char *listen;        /* "HOST:PORT"; default "127.0.0.1:8080" */
  size_t max_body_bytes;     /* request body limit, bytes */
  unsigned max_connections;  /* simultaneous connections, all clients (>= 1) */
  unsigned timeout_s;        /* idle connection timeout, seconds (0 = none) */
  unsigned max_connections_per_client; /* simultaneous connections from one IPv4 address (0 = no own limit) */
  double header_timeout_s;   /* deadline for a request's headers and body, seconds (0 = none) */
  http_error_body_fn error_body; /* JSON error bodies (with the handler's cls); NULL = plain text */
} http_server_opts_t;

/* What the connection policy has done since the server started (for /metrics). */
typedef struct {
  uint64_t evicted_per_client;  /* receiving connections closed to admit one under the per-client limit */
  uint64_t evicted_total;       /* ... under the total limit */
  uint64_t refused_per_client;  /* new connections answered 503: all of the client's were being served */
  uint64_t refused_total;       /* ... all connections were being served */
  uint64_t deadline_closed;     /* connections closed at the header deadline */
  uint64_t open;                /* connections open now (including ones being closed) */
} http_server_counters_t;

/* Parses "HOST:PORT" into a dotted IPv4 string and port; returns 0, or -1 with a message.
 * *is_loopback is set when the address is in 127.0.0.0/8. */
int http_parse_listen(const char *listen, char *host, size_t hostlen, int *port, int *is_loopback, char *err,
                      size_t errlen);

/* Binds and starts serving. Returns 0, or -1 with a message in err (e.g. address in use). */
int http_server_start(const http_server_opts_t *opts, http_handler_fn handler, void *cls, http_server_t **out,
                      char *err, size_t errlen);
/* The bound TCP port (useful after PORT 0). */
int http_server_port(const http_server_t *s);
/* A consistent snapshot of the connection counters; thread-safe. */
void http_server_counters(http_server_t *s, http_server_counters_t *out);
/* Stops accepting, closes every connection, joins all connection threads and frees. Handlers
 * and stream readers still running must return promptly (the caller ends their work first). */
void http_server_stop(http_server_t *s);

#endif
