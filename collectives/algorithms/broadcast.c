/* broadcast.c -- broadcast from a root: a binomial tree below cfg.rd_threshold_bytes (lg p
 * latency), a chunk-pipelined chain above it (root -> root+1 -> ... ; each rank forwards
 * chunk k while chunk k+1 is arriving, so the time approaches one transfer of the buffer
 * plus (p-2) chunk hops). Receives go straight into the destination buffer. */
#include <stdio.h>

#include "coll_internal.h"

static void build_binomial(coll_request_t *req, const void *src, void *buf, size_t bytes, int root) {
  int p = req->comm->size, vr = coll_mod(req->comm->rank - root, p);
  int mask = 1;
  while (mask < p) {
    if (vr & mask) {
      coll_s_wait(req, coll_s_crecv(req, buf, bytes, (vr - mask + root) % p, 0));
      break;
    }
    mask <<= 1;
  }
  for (mask >>= 1; mask > 0; mask >>= 1)
    if (vr + mask < p) coll_s_csend(req, vr == 0 ? src : buf, bytes, (vr + mask + root) % p, 0);
}

static void build_chain(coll_request_t *req, const void *src, void *buf, size_t count, size_t esz,
                        int root) {
  coll_comm_t *comm = req->comm;
  int p = comm->size, vr = coll_mod(comm->rank - root, p);
  int next = vr + 1 < p ? (comm->rank + 1) % p : -1, prev = (comm->rank - 1 + p) % p;
  coll_layout_t L;
  coll_layout_init(&L, count, 0, esz, comm->cfg.chunk_bytes);
  size_t C = L.nchunks, W = coll_pipeline_depth(comm);
  char *b = buf;
  const char *s = src;
  int32_t ring[64]; /* handles of the W chunks in flight */
  if (W > 64) W = 64;
  if (vr == 0) { /* the root keeps W sends in flight */
    for (size_t c = 0; c < C; c++) {
      if (c >= W) coll_s_wait(req, ring[c % W]);
      ring[c % W] = coll_s_csend(req, s + c * L.ce * esz, coll_chunk_len(&L, 0, c) * esz, next, (uint32_t)c);
    }
    return;
  }
  for (size_t c = 0; c < C && c < W; c++)
    ring[c] = coll_s_crecv(req, b + c * L.ce * esz, coll_chunk_len(&L, 0, c) * esz, prev, (uint32_t)c);
  for (size_t k = 0; k < C; k++) {
    coll_s_wait(req, ring[k % W]);
    if (k + W < C)
      ring[k % W] = coll_s_crecv(req, b + (k + W) * L.ce * esz, coll_chunk_len(&L, 0, k + W) * esz,
                                 prev, (uint32_t)(k + W));
    if (next >= 0)
      coll_s_csend(req, b + k * L.ce * esz, coll_chunk_len(&L, 0, k) * esz, next, (uint32_t)k);
  }
}

coll_result_t coll_broadcast2(const void *send, void *recv, size_t count, coll_dtype_t dtype,
                              int root, coll_comm_t *comm) {
  if (!comm) return COLL_ERR_ARG;
  int is_root = comm->rank == root;
  if (coll_valid_args(comm, "broadcast", dtype, -1, count, is_root ? send : recv, recv))
    return COLL_ERR_ARG;
  if (root < 0 || root >= comm->size)
    return coll_set_error(comm, COLL_ERR_ARG, "broadcast: root %d is not a rank of this %d-rank "
                          "communicator", root, comm->size);
  size_t esz = coll_dtype_size(dtype), bytes = count * esz;
  char name[64];
  snprintf(name, sizeof name, "broadcast(%zu x %s, root %d)", count, coll_dtype_name(dtype), root);
  coll_request_t *req = coll_req_new(comm, name, 1, coll_check_scratch_bytes(comm));
  if (!req) return COLL_ERR_NOMEM;
  coll_s_check(req, req->scratch, OPK_BROADCAST, count, (int)dtype, -1, root, -1);
  if (is_root) coll_s_copy(req, recv, send, bytes);
  if (comm->size > 1 && bytes) {
    if (bytes < comm->cfg.rd_threshold_bytes) build_binomial(req, send, recv, bytes, root);
    else build_chain(req, is_root ? send : recv, recv, count, esz, root);
  }
  return coll_req_run(req);
}

coll_result_t coll_broadcast(void *buf, size_t count, coll_dtype_t dtype, int root, coll_comm_t *comm) {
  return coll_broadcast2(buf, buf, count, dtype, root, comm);
}
