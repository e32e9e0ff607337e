/* Rank-prefixed logging (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static int log_rank = -1;
static int log_muted;

void strata_log_set_rank(int rank) { log_rank = rank; }
int strata_log_rank(void) { return log_rank; }
void strata_log_mute(int mute) { log_muted = mute; }

static void vlog(const char *level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void vlog(const char *level, const char *fmt, va_list ap) {
  if (log_muted) return;
  char line[4096];
  int n;
  if (log_rank >= 0)
    n = snprintf(line, sizeof line, "[strata r%d] %s", log_rank, level);
  else
    n = snprintf(line, sizeof line, "[strata] %s", level);
  if (n < 0 || (size_t)n >= sizeof line) n = 0;
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  /* One fputs per line so concurrent ranks do not interleave mid-line. */
  fprintf(stderr, "%s\n", line);
  fflush(stderr);
}

void strata_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog("error: ", fmt, ap);
  va_end(ap);
}

void strata_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog("warning: ", fmt, ap);
  va_end(ap);
}

void strata_info(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog("", fmt, ap);
  va_end(ap);
}
