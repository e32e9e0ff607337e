/* transport_mpi.c -- the `mpi` transport: tagged non-blocking point-to-point messages over
 * MPI_Isend / MPI_Irecv / MPI_Test on the communicator's duplicated bootstrap communicator
 * (which has MPI_ERRORS_RETURN set, so MPI failures come back as codes with their
 * MPI_Error_string text). A receive truncated by a larger message is reported as
 * COLL_ERR_MISMATCH (the ranks passed different counts). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

struct coll_transport {
  MPI_Comm comm; /* not owned: the communicator's bootstrap comm */
};

struct coll_treq {
  MPI_Request r;
  int is_recv;
  int peer;
};

static void mpi_errstr(int rc, char *err, size_t errlen, const char *what, int peer) {
  char msg[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  snprintf(err, errlen, "%s (peer %d) failed: %s", what, peer, msg);
}

static coll_result_t mpi_create(MPI_Comm comm, const coll_config_t *cfg, coll_transport_t **out,
                                char *err, size_t errlen) {
  void *attr = NULL;
  int flag = 0;
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &attr, &flag); /* defined on WORLD only */
  if (!flag || *(int *)attr < (int)(COLL_TAG_LIMIT - 1)) {
    snprintf(err, errlen, "this MPI's MPI_TAG_UB (%d) is below the 2^30 tags the mpi transport "
             "needs; use --transport ofi", flag ? *(int *)attr : -1);
    return COLL_ERR_UNSUPPORTED;
  }
  coll_transport_t *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory creating the mpi transport");
    return COLL_ERR_NOMEM;
  }
  t->comm = comm;
  *out = t;
  return COLL_OK;
}

static void mpi_destroy(coll_transport_t *t) { free(t); }

static const char *mpi_describe(const coll_transport_t *t) { return "mpi"; }

static coll_result_t post(coll_transport_t *t, void *buf, size_t bytes, int peer, uint32_t tag,
                          int is_recv, coll_treq_t **req, char *err, size_t errlen) {
  if (bytes > INT_MAX) {
    snprintf(err, errlen, "message of %zu bytes to/from rank %d exceeds the mpi transport's "
             "2 GiB limit per message; split the transfer", bytes, peer);
    return COLL_ERR_UNSUPPORTED;
  }
  coll_treq_t *q = malloc(sizeof *q);
  if (!q) {
    snprintf(err, errlen, "out of memory posting a message");
    return COLL_ERR_NOMEM;
  }
  q->is_recv = is_recv;
  q->peer = peer;
  int rc = is_recv ? MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, (int)tag, t->comm, &q->r)
                   : MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, (int)tag, t->comm, &q->r);
  if (rc != MPI_SUCCESS) {
    mpi_errstr(rc, err, errlen, is_recv ? "MPI_Irecv" : "MPI_Isend", peer);
    free(q);
    return COLL_ERR_TRANSPORT;
  }
  *req = q;
  return COLL_OK;
}

static coll_result_t mpi_isend(coll_transport_t *t, const void *buf, size_t bytes, int peer,
                               uint32_t tag, coll_treq_t **req, char *err, size_t errlen) {
  return post(t, (void *)buf, bytes, peer, tag, 0, req, err, errlen);
}

static coll_result_t mpi_irecv(coll_transport_t *t, void *buf, size_t bytes, int peer,
                               uint32_t tag, coll_treq_t **req, char *err, size_t errlen) {
  return post(t, buf, bytes, peer, tag, 1, req, err, errlen);
}

static coll_result_t mpi_test(coll_transport_t *t, coll_treq_t *q, int *done, size_t *recv_bytes,
                              char *err, size_t errlen) {
  MPI_Status st;
  int flag = 0;
  *done = 0;
  int rc = MPI_Test(&q->r, &flag, &st);
  if (rc != MPI_SUCCESS) {
    int cls = 0;
    MPI_Error_class(rc, &cls);
    if (rc == MPI_ERR_IN_STATUS) MPI_Error_class(st.MPI_ERROR, &cls);
    if (cls == MPI_ERR_TRUNCATE) {
      snprintf(err, errlen, "message from rank %d is larger than the receive posted for it: the "
               "ranks passed different counts", q->peer);
      free(q);
      *done = 1;
      return COLL_ERR_MISMATCH;
    }
    mpi_errstr(rc, err, errlen, q->is_recv ? "receive" : "send", q->peer);
    free(q);
    *done = 1;
    return COLL_ERR_TRANSPORT;
  }
  if (!flag) return COLL_OK;
  if (q->is_recv && recv_bytes) {
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    *recv_bytes = (size_t)n;
  }
  free(q);
  *done = 1;
  return COLL_OK;
}

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
  int rc = MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, t->comm, &flag, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS) {
    mpi_errstr(rc, err, errlen, "MPI_Iprobe", -1);
    return COLL_ERR_TRANSPORT;
  }
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
