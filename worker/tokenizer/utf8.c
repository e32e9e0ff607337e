/* UTF-8 validation and the streaming decoder of utf8.h. */
#include "utf8.h"

#include <string.h>

/* How many bytes s[0..n) of the character starting at s[0] are well formed so far: returns
 * the full length (1..4) when s holds the whole character, 0 when s[0..n) is a valid but
 * incomplete prefix (n < length), or -k when the first k bytes (k >= 1) form a maximal
 * ill-formed subpart. */
static int char_status(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) len = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC) len = 3;
  else if (c == 0xED) len = 3, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF) len = 3;
  else if (c == 0xF0) len = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  else if (c == 0xF4) len = 4, hi = 0x8F;
  else return -1; /* 0x80..0xC1, 0xF5..0xFF never start a character */
  for (int i = 1; i < len; i++) {
    if ((size_t)i >= n) return 0;
    unsigned char b = s[i];
    unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) return -i;
  }
  return len;
}

static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

/* Emits the complete characters of buf[0..n) to out; returns the bytes written and sets
 * *consumed to the bytes used (the rest is an incomplete tail). */
static size_t emit(const unsigned char *buf, size_t n, char *out, size_t *consumed) {
  size_t i = 0, w = 0;
  while (i < n) {
    if (buf[i] < 0x80) { /* ASCII run */
      out[w++] = (char)buf[i++];
      continue;
    }
    int st = char_status(buf + i, n - i);
    if (st == 0) break;
    if (st < 0) {
      memcpy(out + w, replacement, 3);
      w += 3;
      i += (size_t)(-st);
    } else {
      memcpy(out + w, buf + i, (size_t)st);
      w += (size_t)st;
      i += (size_t)st;
    }
  }
  *consumed = i;
  return w;
}

size_t utf8_stream_feed(utf8_stream_t *s, const void *in, size_t n, char *out) {
  const unsigned char *p = in;
  size_t w = 0;
  /* complete the held character first, byte by byte (at most 3 held + 3 more) */
  while (s->n_held > 0 && n > 0) {
    s->held[s->n_held++] = *p++;
    n--;
    size_t used;
    size_t k = emit(s->held, (size_t)s->n_held, out + w, &used);
    w += k;
    memmove(s->held, s->held + used, (size_t)s->n_held - used);
    s->n_held -= (int)used;
  }
  if (n == 0) return w;
  size_t used;
  w += emit(p, n, out + w, &used);
  memcpy(s->held, p + used, n - used); /* an incomplete tail is at most 3 bytes */
  s->n_held = (int)(n - used);
  return w;
}

size_t utf8_stream_finish(utf8_stream_t *s, char *out) {
  if (s->n_held == 0) return 0;
  s->n_held = 0;
  memcpy(out, replacement, 3);
  return 3;
}

int utf8_valid(const void *sv, size_t n, size_t *bad_offset) {
  const unsigned char *s = sv;
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    int st = char_status(s + i, n - i);
    if (st <= 0) {
      if (bad_offset) *bad_offset = i;
      return 0;
    }
    i += (size_t)st;
  }
  return 1;
}
