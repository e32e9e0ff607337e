/* transport.h -- the internal interface between the collective algorithms and the transports.
 * Private to collectives/. Algorithms (allreduce.c, ...) only ever call through a
 * coll_transport_ops_t table; they never call MPI_* or fi_* themselves. Each transport file
 * ends with one `const coll_transport_ops_t` instance:
 *   mpi.c : coll_transport_mpi_ops (MPI_Isend / MPI_Irecv / MPI_Test)
 *   ofi.c : coll_transport_ofi_ops (libfabric RDM endpoint, fi_tsend / fi_trecv, CQ polling)
 * Their MPI and libfabric calls go through checks.h's MPICHECK / FICHECK.
 *
 * Semantics every transport provides
 *  - Tagged, point-to-point, non-blocking messages between ranks of the communicator the
 *    transport was created over (peers are ranks of that communicator).
 *  - Tags are < COLL_TAG_LIMIT (2^30) so they fit in an MPI tag on every Open MPI build.
 *  - Matching: a receive matches a send with the same (source, tag); messages with the same
 *    (source, tag) match in the order they were sent (MPI non-overtaking; for libfabric the
 *    endpoint is opened with FI_ORDER_SAS on tagged messages).
 *  - A receive posted with `bytes` accepts a message of at most that size; test() reports the
 *    received size so callers can detect a count mismatch.
 *  - test() drives progress (polls the CQ / calls MPI_Test) and, once *done is set, the request
 *    is released by the transport: the caller must not touch it again.
 *  - Errors are returned, never exit()ed on; `err` receives a message (fi_strerror /
 *    MPI_Error_string text) when a call fails.
 */
#ifndef STRATA_COLL_TRANSPORT_H
#define STRATA_COLL_TRANSPORT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "strata/coll.h"
#include "strata/strnum.h"

#define COLL_TAG_LIMIT (1u << 30)

/* Numeric STRATA_COLL_* / STRATA_OFI_* variable `name` (comm.c's table says what each must be):
 * strnum_env's codes (0 unset, 1 *out set, 2 its word, -1 bad, with a message in err when err
 * is not NULL). coll_config_default checks every one of them, so a bad value is reported before
 * a communicator exists; readers that act later (transports, mem.c, the progress thread) keep
 * their default on -1. */
int coll_env_number(const char *name, strnum_value_t *out, char *err, size_t errlen);

typedef struct coll_transport coll_transport_t; /* per-communicator transport state */
typedef struct coll_treq coll_treq_t;           /* one outstanding send or receive */

typedef struct coll_transport_ops {
  const char *name; /* "mpi", "ofi" */
  /* Collective over `comm` (the communicator's duplicated bootstrap comm). */
  coll_result_t (*create)(MPI_Comm comm, const coll_config_t *cfg, coll_transport_t **out,
                          char *err, size_t errlen);
  void (*destroy)(coll_transport_t *t);
  /* Human-readable description: "mpi", "ofi:shm", "ofi:tcp;ofi_rxm". */
  const char *(*describe)(const coll_transport_t *t);
  coll_result_t (*isend)(coll_transport_t *t, const void *buf, size_t bytes, int peer,
                         uint32_t tag, coll_treq_t **req, char *err, size_t errlen);
  coll_result_t (*irecv)(coll_transport_t *t, void *buf, size_t bytes, int peer, uint32_t tag,
                         coll_treq_t **req, char *err, size_t errlen);
  /* *done = 1 when complete; for receives *recv_bytes (if non-NULL) is the message size. */
  coll_result_t (*test)(coll_transport_t *t, coll_treq_t *req, int *done, size_t *recv_bytes,
                        char *err, size_t errlen);
  /* Cancels and releases an incomplete request (used on timeout / error paths). */
  void (*cancel)(coll_transport_t *t, coll_treq_t *req);
  /* Drives progress on everything outstanding without testing a particular request. */
  coll_result_t (*progress)(coll_transport_t *t, char *err, size_t errlen);
} coll_transport_ops_t;

extern const coll_transport_ops_t coll_transport_mpi_ops;
extern const coll_transport_ops_t coll_transport_ofi_ops;

#endif /* STRATA_COLL_TRANSPORT_H */
