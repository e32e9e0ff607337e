/* mpi.c -- the `mpi` transport: tagged non-blocking point-to-point messages over
 * MPI_Isend / MPI_Irecv / MPI_Test on the communicator's duplicated bootstrap communicator
 * (which has MPI_ERRORS_RETURN set, so MPI failures come back as codes with their
 * MPI_Error_string text). A receive truncated by a larger message is reported as
 * COLL_ERR_MISMATCH (the ranks passed different counts). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "transport.h"

struct coll_transport {
  MPI_Comm comm; /* not owned: the communicator's bootstrap comm */
};

struct coll_treq {
  MPI_Request r;
  int is_recv;
  int peer;
};

static coll_result_t mpi_create(MPI_Comm comm, const coll_config_t *cfg, coll_transport_t **out,
                                char *err, size_t errlen) {
  void *attr = NULL;
  int flag = 0;
  MPICHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &attr, &flag), /* defined on WORLD only */
           "MPI_Comm_get_attr(MPI_TAG_UB)");
  if (!flag || *(int *)attr < (int)(COLL_TAG_LIMIT - 1))
    return coll_err(err, errlen, COLL_ERR_UNSUPPORTED, "this MPI's MPI_TAG_UB (%d) is below the 2^30 "
                    "tags the mpi transport needs; use --transport ofi", flag ? *(int *)attr : -1);
  coll_transport_t *t = calloc(1, sizeof *t);
  if (!t) return coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for the mpi transport's state");
  t->comm = comm;
  *out = t;
  return COLL_OK;
}

static void mpi_destroy(coll_transport_t *t) { free(t); }

static const char *mpi_describe(const coll_transport_t *t) { return "mpi"; }

static coll_result_t post(coll_transport_t *t, void *buf, size_t bytes, int peer, uint32_t tag,
                          int is_recv, coll_treq_t **req, char *err, size_t errlen) {
  if (bytes > INT_MAX)
    return coll_err(err, errlen, COLL_ERR_UNSUPPORTED, "message of %zu bytes to/from rank %d exceeds "
                    "the mpi transport's 2 GiB limit per message; split the transfer", bytes, peer);
  coll_treq_t *q = malloc(sizeof *q);
  if (!q)
    return coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for an mpi transport request "
                    "to/from rank %d", peer);
  q->is_recv = is_recv;
  q->peer = peer;
  coll_result_t res = COLL_OK;
  if (is_recv)
    MPICHECKGOTO(MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, (int)tag, t->comm, &q->r), res, free_req,
                 "MPI_Irecv of %zu bytes from rank %d", bytes, peer);
  else
    MPICHECKGOTO(MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, (int)tag, t->comm, &q->r), res, free_req,
                 "MPI_Isend of %zu bytes to rank %d", bytes, peer);
  *req = q;
  return COLL_OK;
free_req:
  free(q);
  return res;
}

static coll_result_t mpi_isend(coll_transport_t *t, const void *buf, size_t bytes, int peer,
                               uint32_t tag, coll_treq_t **req, char *err, size_t errlen) {
  return post(t, (void *)buf, bytes, peer, tag, 0, req, err, errlen);
}

static coll_result_t mpi_irecv(coll_transport_t *t, void *buf, size_t bytes, int peer,
                               uint32_t tag, coll_treq_t **req, char *err, size_t errlen) {
  return post(t, buf, bytes, peer, tag, 1, req, err, errlen);
}

/* Did MPI_Test fail (code rc) because the message was larger than the receive posted? */
static int truncated(int rc, const MPI_Status *st) {
  int cls = 0;
  MPI_Error_class(rc == MPI_ERR_IN_STATUS ? st->MPI_ERROR : rc, &cls); /* cls stays 0 on failure */
  return cls == MPI_ERR_TRUNCATE;
}

static coll_result_t mpi_test(coll_transport_t *t, coll_treq_t *q, int *done, size_t *recv_bytes,
                              char *err, size_t errlen) {
  MPI_Status st;
  int flag = 0;
  *done = 0;
  coll_result_t res = COLL_OK;
  int rc = MPI_Test(&q->r, &flag, &st); /* not MPICHECK: a truncation is the ranks' mismatch */
  if (rc != MPI_SUCCESS) {
    res = truncated(rc, &st)
              ? coll_err(err, errlen, COLL_ERR_MISMATCH, "message from rank %d is larger than the "
                         "receive posted for it: the ranks passed different counts", q->peer)
              : coll_mpi_fail(rc, err, errlen, "%s (peer %d)", q->is_recv ? "receive" : "send", q->peer);
    goto release;
  }
  if (!flag) return COLL_OK;
  if (q->is_recv && recv_bytes) {
    int n = 0;
    MPICHECKGOTO(MPI_Get_count(&st, MPI_BYTE, &n), res, release, "MPI_Get_count of a receive from rank %d",
                 q->peer);
    *recv_bytes = (size_t)n;
  }
release:
  free(q);
  *done = 1;
  return res;
}

/* Best effort, with no one to report to: the caller gave the request up (timeout, error). */
static void mpi_cancel(coll_transport_t *t, coll_treq_t *q) {
  if (!q) return;
  MPI_Cancel(&q->r);
  /* A cancelled request completes promptly; give it a moment, then let MPI free it. */
  for (int i = 0; i < 1000; i++) {
    int flag = 0;
    MPI_Test(&q->r, &flag, MPI_STATUS_IGNORE);
    if (flag) {
      free(q);
      return;
    }
  }
  if (q->r != MPI_REQUEST_NULL) MPI_Request_free(&q->r);
  free(q);
}

static coll_result_t mpi_progress(coll_transport_t *t, char *err, size_t errlen) {
  int flag = 0;
  MPICHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, t->comm, &flag, MPI_STATUS_IGNORE), "MPI_Iprobe");
  return COLL_OK;
}

const coll_transport_ops_t coll_transport_mpi_ops = {
    .name = "mpi",
    .create = mpi_create,
    .destroy = mpi_destroy,
    .describe = mpi_describe,
    .isend = mpi_isend,
    .irecv = mpi_irecv,
    .test = mpi_test,
    .cancel = mpi_cancel,
    .progress = mpi_progress,
};
