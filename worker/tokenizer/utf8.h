/* utf8.h -- UTF-8 validation and a streaming decoder that never emits half a character.
 *
 * A byte-level BPE token can end in the middle of a character (an emoji is often two or three
 * tokens), so text generated token by token must hold back the start of a character until its
 * last byte arrives. utf8_stream_feed does that: it emits every complete, valid character,
 * keeps an incomplete but so far valid tail (at most 3 bytes) for the next call, and replaces
 * each ill-formed sequence by U+FFFD, one per maximal ill-formed subpart (Unicode's recommended
 * practice, as Python's errors="replace" and WHATWG's decoder do). Its output is always valid
 * UTF-8, so it can go into JSON or an SSE event as it is.
 *
 *   utf8_stream_t s = {0};
 *   char out[UTF8_STREAM_OUT_BYTES(len)];
 *   size_t n = utf8_stream_feed(&s, token_bytes, len, out);  // emit out[0..n)
 *   ...
 *   n = utf8_stream_finish(&s, out);                          // a dangling tail -> U+FFFD
 *
 * Valid UTF-8 (RFC 3629): no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF.
 */
#ifndef STRATA_UTF8_H
#define STRATA_UTF8_H

#include <stddef.h>

typedef struct {
  unsigned char held[4]; /* bytes of an incomplete character */
  int n_held;            /* how many (0..3) */
} utf8_stream_t;

/* Output bytes utf8_stream_feed may write for n input bytes: every held and new byte may
 * become a 3-byte U+FFFD. */
#define UTF8_STREAM_OUT_BYTES(n) (3 * ((size_t)(n) + 4))

/* Feeds in[0..n), writes the complete characters to out (room: UTF8_STREAM_OUT_BYTES(n)),
 * returns how many bytes it wrote. */
size_t utf8_stream_feed(utf8_stream_t *s, const void *in, size_t n, char *out);
/* Ends the stream: a held incomplete character becomes one U+FFFD (room: 3 bytes). */
size_t utf8_stream_finish(utf8_stream_t *s, char *out);

/* 1 when s[0..n) is valid UTF-8; else 0 and *bad_offset (when not NULL) = the offset of the
 * first byte of the first ill-formed or incomplete sequence. */
int utf8_valid(const void *s, size_t n, size_t *bad_offset);

#endif /* STRATA_UTF8_H */
