/* reduce_scatter.c -- reduce-scatter: rank r receives block r of the element-wise reduction
 * of every rank's send vector (size * recvcount elements). It is the first half of the ring
 * all-reduce (allreduce.c, coll_build_ring without the all-gather): chunk-pipelined, partial
 * sums kept in a scratch vector, the final block written straight into recv. In place
 * (NCCL convention): recv == send + rank * recvcount. */
#include <stdio.h>

#include "coll_internal.h"

#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

coll_result_t coll_reduce_scatter(const void *send, void *recv, size_t recvcount,
                                  coll_dtype_t dtype, coll_op_t op, coll_comm_t *comm) {
  if (!comm) return COLL_ERR_ARG;
  if (coll_valid_args(comm, "reduce_scatter", dtype, (int)op, recvcount, send, recv))
    return COLL_ERR_ARG;
  int is16 = coll_is_16bit(dtype) && !comm->cfg.wire16; /* fp32 work vector (allreduce.c) */
  coll_dtype_t wt = is16 ? COLL_F32 : dtype;
  size_t esz = coll_dtype_size(wt), p = (size_t)comm->size, total = recvcount * p;
  coll_layout_t L;
  coll_layout_init(&L, recvcount, 0, esz, comm->cfg.chunk_bytes);
  size_t check_b = ALIGN64(coll_check_scratch_bytes(comm));
  size_t work_b = ALIGN64(total * esz); /* partial sums (16-bit: the fp32 copy of send) */
  char name[64];
  snprintf(name, sizeof name, "reduce_scatter(%zu x %s, %s)", recvcount, coll_dtype_name(dtype),
           coll_op_name(op));
  coll_request_t *req = coll_req_new(comm, name, 1, check_b + work_b + coll_ring_scratch_bytes(comm, &L, esz));
  if (!req) return COLL_ERR_NOMEM;
  req->stream_stores = total * esz >= comm->cfg.stream_bytes;
  char *area = req->scratch, *work = area + check_b, *tmp = work + work_b;
  coll_s_check(req, area, OPK_REDUCE_SCATTER, recvcount, (int)dtype, (int)op, -1, -1);
  if (is16) {
    float *mine = (float *)work + (size_t)comm->rank * recvcount;
    coll_s_to_f32(req, (float *)work, send, total, dtype);
    coll_build_ring(req, work, work, mine, &L, -1, 0, wt, op, tmp);
    coll_s_from_f32(req, recv, mine, recvcount, dtype);
  } else {
    coll_build_ring(req, send, work, recv, &L, -1, 0, wt, op, tmp);
  }
  return coll_req_run(req);
}
