/* p2p.c -- point-to-point messages (send, recv, sendrecv, isend, irecv) and the barrier.
 * Each is a tiny schedule run by the request engine, so it shares the timeout and error
 * reporting of the collectives. A receive is posted with exactly count * dtype-size bytes and
 * the delivered size is compared: a sender with a different count makes the receive fail with
 * COLL_ERR_MISMATCH (a larger message is reported by the transport as truncation, a smaller
 * one by the size check) instead of leaving stale data in the buffer. */
#include <stdio.h>

#include "coll_internal.h"

static coll_result_t check_p2p(coll_comm_t *comm, const char *what, const void *buf, size_t count,
                               coll_dtype_t dtype, int peer, int tag) {
  if (coll_valid_args(comm, what, dtype, -1, count, buf, buf)) return COLL_ERR_ARG;
  if (peer < 0 || peer >= comm->size)
    return coll_set_error(comm, COLL_ERR_ARG, "%s: peer %d is not a rank of this %d-rank "
                          "communicator", what, peer, comm->size);
  if (tag < 0 || tag >= COLL_USER_TAG_LIMIT)
    return coll_set_error(comm, COLL_ERR_ARG, "%s: tag %d is outside 0..2^24-1", what, tag);
  return COLL_OK;
}

static coll_result_t p2p_build(int is_recv, void *buf, size_t count, coll_dtype_t dtype, int peer,
                               int tag, coll_comm_t *comm, coll_request_t **out) {
  const char *what = is_recv ? "recv" : "send";
  if (!comm) return COLL_ERR_ARG;
  coll_result_t rc = check_p2p(comm, what, buf, count, dtype, peer, tag);
  if (rc != COLL_OK) return rc;
  char name[64];
  snprintf(name, sizeof name, "%s(%zu x %s, %s rank %d, tag %d)", what, count,
           coll_dtype_name(dtype), is_recv ? "from" : "to", peer, tag);
  coll_request_t *req = coll_req_new(comm, name, 0, 0);
  if (!req) return COLL_ERR_NOMEM;
  size_t bytes = count * coll_dtype_size(dtype);
  int32_t h = is_recv ? coll_s_recv(req, buf, bytes, peer, (uint32_t)tag)
                      : coll_s_send(req, buf, bytes, peer, (uint32_t)tag);
  coll_s_wait(req, h);
  *out = req;
  return COLL_OK;
}

coll_result_t coll_send(const void *buf, size_t count, coll_dtype_t dtype, int peer, int tag,
                        coll_comm_t *comm) {
  coll_request_t *req;
  coll_result_t rc = p2p_build(0, (void *)buf, count, dtype, peer, tag, comm, &req);
  return rc != COLL_OK ? rc : coll_req_run(req);
}

coll_result_t coll_recv(void *buf, size_t count, coll_dtype_t dtype, int peer, int tag,
                        coll_comm_t *comm) {
  coll_request_t *req;
  coll_result_t rc = p2p_build(1, buf, count, dtype, peer, tag, comm, &req);
  return rc != COLL_OK ? rc : coll_req_run(req);
}

static coll_result_t start_nb(coll_request_t *req, coll_request_t **out) {
  req->nonblocking = 1;
  coll_result_t rc = coll_req_start(req);
  if (rc != COLL_OK) {
    coll_req_free(req);
    return rc;
  }
  *out = req;
  return COLL_OK;
}

coll_result_t coll_isend(const void *buf, size_t count, coll_dtype_t dtype, int peer, int tag,
                         coll_comm_t *comm, coll_request_t **out) {
  if (!out) return COLL_ERR_ARG;
  *out = NULL;
  coll_request_t *req;
  coll_result_t rc = p2p_build(0, (void *)buf, count, dtype, peer, tag, comm, &req);
  return rc != COLL_OK ? rc : start_nb(req, out);
}

coll_result_t coll_irecv(void *buf, size_t count, coll_dtype_t dtype, int peer, int tag,
                         coll_comm_t *comm, coll_request_t **out) {
  if (!out) return COLL_ERR_ARG;
  *out = NULL;
  coll_request_t *req;
  coll_result_t rc = p2p_build(1, buf, count, dtype, peer, tag, comm, &req);
  return rc != COLL_OK ? rc : start_nb(req, out);
}

coll_result_t coll_sendrecv(const void *sendbuf, size_t sendcount, int dst, void *recvbuf,
                            size_t recvcount, int src, coll_dtype_t dtype, int tag,
                            coll_comm_t *comm) {
  if (!comm) return COLL_ERR_ARG;
  coll_result_t rc = check_p2p(comm, "sendrecv", sendbuf, sendcount, dtype, dst, tag);
  if (rc == COLL_OK) rc = check_p2p(comm, "sendrecv", recvbuf, recvcount, dtype, src, tag);
  if (rc != COLL_OK) return rc;
  char name[80];
  snprintf(name, sizeof name, "sendrecv(%zu x %s to rank %d, %zu from rank %d, tag %d)", sendcount,
           coll_dtype_name(dtype), dst, recvcount, src, tag);
  coll_request_t *req = coll_req_new(comm, name, 0, 0);
  if (!req) return COLL_ERR_NOMEM;
  size_t esz = coll_dtype_size(dtype);
  int32_t hr = coll_s_recv(req, recvbuf, recvcount * esz, src, (uint32_t)tag);
  int32_t hs = coll_s_send(req, sendbuf, sendcount * esz, dst, (uint32_t)tag);
  coll_s_wait(req, hr);
  coll_s_wait(req, hs);
  return coll_req_run(req);
}

/* Dissemination barrier: in round k every rank signals rank + 2^k and hears from rank - 2^k;
 * after ceil(lg p) rounds each rank has (transitively) heard from all. */
coll_result_t coll_barrier(coll_comm_t *comm) {
  if (!comm) return COLL_ERR_ARG;
  static const char token = 1;
  int p = comm->size, r = comm->rank, rounds = 0;
  while ((1 << rounds) < p) rounds++;
  coll_request_t *req = coll_req_new(comm, "barrier", 1, coll_check_scratch_bytes(comm) + 64);
  if (!req) return COLL_ERR_NOMEM;
  char *inbox = (char *)req->scratch + coll_check_scratch_bytes(comm);
  coll_s_check(req, req->scratch, OPK_BARRIER, 0, -1, -1, -1, -1);
  for (int k = 0; k < rounds; k++) {
    int d = 1 << k;
    int32_t hs = coll_s_csend(req, &token, 1, (r + d) % p, (uint32_t)k);
    coll_s_wait(req, coll_s_crecv(req, inbox + k, 1, coll_mod(r - d, p), (uint32_t)k));
    coll_s_wait(req, hs);
  }
  return coll_req_run(req);
}
