/* http_client.c -- the minimal HTTP/1.0 test client (see http_client.h). */
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int hc_connect(int port, double timeout_s) { return hc_connect_from(NULL, port, timeout_s); }

int hc_connect_from(const char *src_ip, int port, double timeout_s) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  if (src_ip && (inet_pton(AF_INET, src_ip, &a.sin_addr) != 1 || bind(fd, (struct sockaddr *)&a, sizeof a))) {
    close(fd);
    return -1;
  }
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
    close(fd);
    return -1;
  }
  return fd;
}

int hc_send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k, n -= (size_t)k;
  }
  return 0;
}

static long read_all(int fd, char **out) {
  size_t cap = 4096, len = 0;
  char *b = malloc(cap);
  if (!b) return -1;
  for (;;) {
    if (len + 1 == cap) {
      char *nb = realloc(b, cap * 2);
      if (!nb) break;
      b = nb, cap *= 2;
    }
    ssize_t k = recv(fd, b + len, cap - len - 1, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break; /* closed, reset, or timed out */
    len += (size_t)k;
  }
  b[len] = '\0';
  *out = b;
  return (long)len;
}

long hc_raw(int port, const char *req, size_t req_len, double timeout_s, char **out) {
  *out = NULL;
  int fd = hc_connect(port, timeout_s);
  if (fd < 0) return -1;
  hc_send_all(fd, req, req_len); /* the server may answer (413) before taking everything */
  long n = read_all(fd, out);
  close(fd);
  return n;
}

int hc_request(int port, const char *method, const char *path, const char *body, size_t body_len,
               double timeout_s, http_reply_t *r) {
  memset(r, 0, sizeof *r);
  r->status = -1;
  char head[512];
  int hn = snprintf(head, sizeof head,
                    "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                    method, path, body ? body_len : 0);
  size_t tot = (size_t)hn + (body ? body_len : 0);
  char *req = malloc(tot);
  if (!req) return -1;
  memcpy(req, head, (size_t)hn);
  if (body) memcpy(req + hn, body, body_len);
  char *raw = NULL;
  long n = hc_raw(port, req, tot, timeout_s, &raw);
  free(req);
  if (n <= 0) {
    free(raw);
    return -1;
  }
  char *sep = strstr(raw, "\r\n\r\n");
  int st = 0;
  if (!sep || sscanf(raw, "HTTP/1.%*d %d", &st) != 1) {
    free(raw);
    return -1;
  }
  size_t hl = (size_t)(sep - raw);
  r->headers = malloc(hl + 1);
  memcpy(r->headers, raw, hl);
  r->headers[hl] = '\0';
  r->body_len = (size_t)n - hl - 4;
  r->body = malloc(r->body_len + 1);
  memcpy(r->body, sep + 4, r->body_len);
  r->body[r->body_len] = '\0';
  r->status = st;
  free(raw);
  return 0;
}

void hc_reply_free(http_reply_t *r) {
  free(r->headers);
  free(r->body);
  memset(r, 0, sizeof *r);
}

int hc_header(const http_reply_t *r, const char *name, char *val, size_t vlen) {
  if (!r->headers) return -1;
  size_t nl = strlen(name);
  for (const char *p = r->headers; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
    if (!strncasecmp(p, name, nl) && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ') v++;
      const char *e = strstr(v, "\r\n");
      size_t n = e ? (size_t)(e - v) : strlen(v);
      if (n >= vlen) n = vlen - 1;
      memcpy(val, v, n);
      val[n] = '\0';
      return 0;
    }
  }
  return -1;
}
