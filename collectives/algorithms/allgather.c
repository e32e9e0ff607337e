/* allgather.c -- all-gather: recv (size * sendcount elements) becomes every rank's send
 * vector in rank order. A chunk-pipelined ring (the second half of the ring all-reduce,
 * coll_build_ring_ag in allreduce.c): each rank copies its own block into place, then at step
 * s forwards the block it received at step s-1, with receives posted cfg.pipeline_depth
 * chunks ahead directly into recv (no scratch). In place (NCCL convention): send == recv +
 * rank * sendcount. */
#include <stdio.h>

#include "coll_internal.h"

coll_result_t coll_allgather(const void *send, void *recv, size_t sendcount, coll_dtype_t dtype,
                             coll_comm_t *comm) {
  if (!comm) return COLL_ERR_ARG;
  if (coll_valid_args(comm, "allgather", dtype, -1, sendcount, send, recv)) return COLL_ERR_ARG;
  size_t esz = coll_dtype_size(dtype);
  coll_layout_t L;
  coll_layout_init(&L, sendcount, 0, esz, comm->cfg.chunk_bytes);
  char name[64];
  snprintf(name, sizeof name, "allgather(%zu x %s)", sendcount, coll_dtype_name(dtype));
  coll_request_t *req = coll_req_new(comm, name, 1, coll_check_scratch_bytes(comm));
  if (!req) return COLL_ERR_NOMEM;
  coll_s_check(req, req->scratch, OPK_ALLGATHER, sendcount, (int)dtype, -1, -1, -1);
  coll_build_ring_ag(req, recv, send, comm->rank, &L, esz, 0);
  return coll_req_run(req);
}
