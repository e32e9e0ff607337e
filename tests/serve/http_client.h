/* http_client.h -- a minimal blocking HTTP/1.0 client over plain sockets for the serving tests
 * and the load generator (tests/serve/http_load.c). Loopback only; every socket has a receive
 * timeout so a wedged server fails a test instead of hanging it. HTTP/1.0 keeps the framing
 * trivial: the server closes the connection after the body (no chunked encoding). */
#ifndef STRATA_HTTP_CLIENT_H
#define STRATA_HTTP_CLIENT_H

#include <stddef.h>

typedef struct {
  int status;        /* HTTP status, or -1 if the exchange failed */
  char *headers;     /* malloc'd header block (status line included), NUL-terminated */
  char *body;        /* malloc'd body, NUL-terminated */
  size_t body_len;
} http_reply_t;

/* Connects to 127.0.0.1:port; returns the socket or -1. timeout_s bounds every recv/send. */
int hc_connect(int port, double timeout_s);
/* The same from loopback source address src_ip (e.g. "127.0.0.2", to be another client; NULL =
 * the kernel's choice). */
int hc_connect_from(const char *src_ip, int port, double timeout_s);
/* Sends all n bytes; 0, or -1 when the peer closed or the send timed out. */
int hc_send_all(int fd, const char *p, size_t n);
/* Sends one request (raw body of body_len bytes, Content-Length set) on a fresh connection and
 * reads the whole reply. Returns 0 when a reply was parsed, -1 otherwise (r->status = -1). */
int hc_request(int port, const char *method, const char *path, const char *body, size_t body_len,
               double timeout_s, http_reply_t *r);
/* Sends raw bytes and reads everything until the server closes (or the timeout). Returns the
 * number of bytes read into a malloc'd *out, or -1. */
long hc_raw(int port, const char *req, size_t req_len, double timeout_s, char **out);
void hc_reply_free(http_reply_t *r);
/* Case-insensitive header lookup: copies the value into val[vlen]; 0 found, -1 not. */
int hc_header(const http_reply_t *r, const char *name, char *val, size_t vlen);

#endif
