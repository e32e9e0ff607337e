/* checks.c -- the message formatting behind checks.h's macros: the caller's context, then the
 * MPI or libfabric library's own text for the failure. */
#include "checks.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <rdma/fi_errno.h>

/* The format attribute lets the compiler check vsnprintf's use of a caller's format. */
__attribute__((format(printf, 3, 0)))
static void vformat(char *err, size_t errlen, const char *fmt, va_list ap) {
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
}

coll_result_t coll_err(char *err, size_t errlen, coll_result_t rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vformat(err, errlen, fmt, ap);
  va_end(ap);
  return rc;
}

/* Appends ": why" to what vformat wrote. */
static void append_reason(char *err, size_t errlen, const char *why) {
  if (!err || !errlen) return;
  size_t n = strnlen(err, errlen);
  if (n < errlen) snprintf(err + n, errlen - n, " failed: %s", why);
}

coll_result_t coll_mpi_fail(int mpi_rc, char *err, size_t errlen, const char *fmt, ...) {
  char why[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  if (MPI_Error_string(mpi_rc, why, &len) != MPI_SUCCESS)
    snprintf(why, sizeof why, "MPI error code %d", mpi_rc);
  va_list ap;
  va_start(ap, fmt);
  vformat(err, errlen, fmt, ap);
  va_end(ap);
  append_reason(err, errlen, why);
  return COLL_ERR_TRANSPORT;
}

coll_result_t coll_fi_fail(long fi_rc, char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vformat(err, errlen, fmt, ap);
  va_end(ap);
  append_reason(err, errlen, fi_strerror((int)(fi_rc < 0 ? -fi_rc : fi_rc)));
  return COLL_ERR_TRANSPORT;
}
