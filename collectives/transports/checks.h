/* checks.h -- the check macros of the collectives' MPI and libfabric call sites, in NCCL's
 * NCCLCHECK style, and the one helper that formats a message into a caller's err buffer.
 * Private to collectives/.
 *
 * Each macro runs one call and, when it fails, writes "<what> failed: <the library's text>"
 * into the calling function's `err` / `errlen` (the names every transport function and
 * comm.c's helpers give their message buffer) and gives COLL_ERR_TRANSPORT: MPICHECK and
 * FICHECK return it, the ...GOTO forms store it in `res` and jump to `label`, the function's
 * cleanup path. `...` is a printf format and its arguments naming the operation:
 *
 *    MPICHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, MPI_STATUS_IGNORE), "MPI_Iprobe");
 *    FICHECKGOTO(fi_enable(ep), res, close_ep, "fi_enable on provider %s", name);
 *
 * MPI calls succeed with MPI_SUCCESS and fail with a code MPI_Error_string explains (the
 * communicators have MPI_ERRORS_RETURN); libfabric calls succeed with 0 and fail with a
 * negative fi_errno fi_strerror explains. */
#ifndef STRATA_COLL_CHECKS_H
#define STRATA_COLL_CHECKS_H

#include <stddef.h>

#include "strata/coll.h"

/* Formats a message into err (when err and errlen are non-zero) and returns rc, so error paths
 * read `return coll_err(err, errlen, COLL_ERR_ARG, "tag %u is not below 2^30", tag);`. */
coll_result_t coll_err(char *err, size_t errlen, coll_result_t rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "<fmt...> failed: <MPI_Error_string(mpi_rc)>" into err; returns COLL_ERR_TRANSPORT. */
coll_result_t coll_mpi_fail(int mpi_rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "<fmt...> failed: <fi_strerror(-fi_rc)>" into err; returns COLL_ERR_TRANSPORT. */
coll_result_t coll_fi_fail(long fi_rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define MPICHECK(call, ...)                                                   \
  do {                                                                        \
    int mpicheck_rc_ = (call);                                                \
    if (mpicheck_rc_ != MPI_SUCCESS)                                          \
      return coll_mpi_fail(mpicheck_rc_, err, errlen, __VA_ARGS__);           \
  } while (0)

#define MPICHECKGOTO(call, res, label, ...)                                   \
  do {                                                                        \
    int mpicheck_rc_ = (call);                                                \
    if (mpicheck_rc_ != MPI_SUCCESS) {                                        \
      (res) = coll_mpi_fail(mpicheck_rc_, err, errlen, __VA_ARGS__);          \
      goto label;                                                             \
    }                                                                         \
  } while (0)

#define FICHECK(call, ...)                                                    \
  do {                                                                        \
    long ficheck_rc_ = (long)(call);                                          \
    if (ficheck_rc_ != 0) return coll_fi_fail(ficheck_rc_, err, errlen, __VA_ARGS__); \
  } while (0)

#define FICHECKGOTO(call, res, label, ...)                                    \
  do {                                                                        \
    long ficheck_rc_ = (long)(call);                                          \
    if (ficheck_rc_ != 0) {                                                   \
      (res) = coll_fi_fail(ficheck_rc_, err, errlen, __VA_ARGS__);            \
      goto label;                                                             \
    }                                                                         \
  } while (0)

#endif /* STRATA_COLL_CHECKS_H */
