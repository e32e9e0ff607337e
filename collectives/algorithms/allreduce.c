/* allreduce.c -- all-reduce: the chunk-pipelined ring (reduce-scatter then all-gather, the
 * bandwidth-optimal algorithm for large messages), recursive doubling (latency-optimal for
 * small ones, with non-power-of-two rank counts folded into a power of two first), the MPI
 * baseline (MPI_Allreduce on the bootstrap communicator, `--algo mpi`), and the public entry
 * points coll_allreduce / coll_allreduce_algo / coll_iallreduce.
 *
 * The ring, per rank r of p, works on p blocks of the vector, each cut in chunks of
 * cfg.chunk_bytes. Reduce-scatter step s sends block r-s and receives block r-s-1, which it
 * reduces with its own contribution; the result of step s is what step s+1 sends. Chunks flow
 * independently: the receive of chunk k+W (W = cfg.pipeline_depth) is posted before chunk k is
 * waited for and reduced, and a reduced chunk is sent on at once, so transfers of later chunks
 * are in flight while earlier ones are reduced. Received chunks land in a small ring of W+1
 * scratch slots ((W+1) * chunk_bytes, sized to stay in L2 between arrival and reduction);
 * the reduction reads send + the slot and writes recv directly (no extra copy), and a partial
 * sum is sent on from recv. (Partial sums are deliberately not kept in the slots: a slot could
 * then only be reused once the next rank had taken its data, which it does a whole block of
 * chunks later -- with more chunks than slots every rank would wait on its successor.)
 *
 * 16-bit types (bf16, fp16) are converted to an fp32 work vector, reduced in fp32, and rounded
 * once (nearest even) into recv at the end; with cfg.wire16 the algorithms run on the 16-bit
 * values themselves (each reduction widens, reduces and rounds: reduce.c), so 16-bit values
 * travel. COLL_ALGO_MPI keeps the fp32 work vector (MPI has no bf16 type). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_internal.h"

void coll_layout_init(coll_layout_t *L, size_t base, size_t rem, size_t esz, size_t chunk_bytes) {
  L->base = base;
  L->rem = rem;
  L->ce = chunk_bytes / esz ? chunk_bytes / esz : 1;
  size_t maxblk = base + (rem ? 1 : 0);
  if (maxblk && L->ce > maxblk) L->ce = maxblk; /* small vectors: no oversized scratch */
  L->nchunks = maxblk ? (maxblk + L->ce - 1) / L->ce : 1;
}

size_t coll_pipeline_depth(const coll_comm_t *comm) {
  return comm->cfg.pipeline_depth > 0 ? (size_t)comm->cfg.pipeline_depth : 1;
}

/* AUTO: recursive doubling below cfg.rd_threshold_bytes; with 2 ranks the switch is 4x later,
 * because there both algorithms move n bytes per rank and rd does it in one message instead of
 * 2 x n/(2 x chunk) (measured: np=2 rd 12.4 against ring 8.1 GB/s at 256 KiB, 13.5 against
 * 11.3 at 512 KiB, 14.3 against 15.1 at 1 MiB). From there, on a power of two above 2 ranks,
 * Rabenseifner up to cfg.rabenseifner_max_bytes (2 lg p steps instead of the ring's 2(p-1)
 * won at np=4 from 256 KiB to 4 MiB and tied at 16 MiB), else the ring. collectives/README.md
 * has the runs. */
static coll_algo_t builtin_algo(const coll_comm_t *comm, size_t bytes) {
  size_t thr = comm->cfg.rd_threshold_bytes;
  int p = comm->size;
  if (p == 2 && thr <= SIZE_MAX / 4) thr *= 4;
  if (bytes < thr) return COLL_ALGO_RD;
  if (p > 2 && (p & (p - 1)) == 0 && bytes < comm->cfg.rabenseifner_max_bytes)
    return COLL_ALGO_RABENSEIFNER;
  return COLL_ALGO_RING;
}

/* The dtype an all-reduce's reductions work in: 16-bit values are summed in fp32 unless they
 * travel as 16 bits (wire16, Strata's own algorithms). */
static coll_dtype_t work_dtype(const coll_comm_t *comm, coll_dtype_t dtype, coll_algo_t algo) {
  return coll_is_16bit(dtype) && !(comm->cfg.wire16 && algo != COLL_ALGO_MPI) ? COLL_F32 : dtype;
}

/* Whether the sums of an all-reduce whose working data is `work_bytes` use streaming stores: the
 * table rule's choice (rule_streams 0/1, coll_resolve_algo), else cfg.stream_bytes: from that
 * size, and in place at any size: the result is the next call's input, which a peer reads, and
 * left dirty in this core's cache it is read at a fraction of memory speed on some hosts
 * (reduce.c). Which way is faster depends on the host, so a decision table measures it. */
static int streams_for(const coll_comm_t *comm, int rule_streams, size_t work_bytes, int in_place) {
  if (rule_streams >= 0) return rule_streams;
  return work_bytes >= comm->cfg.stream_bytes || (in_place && comm->cfg.stream_bytes != SIZE_MAX);
}

/* AUTO follows the decision table where it has a rule (tune.c); its chunk size and streaming
 * are used unless the caller set them. */
coll_algo_t coll_resolve_algo(const coll_comm_t *comm, coll_algo_t algo, size_t bytes,
                              coll_dtype_t dtype, int in_place, size_t *chunk_bytes, int *streams) {
  *chunk_bytes = comm->cfg.chunk_bytes;
  *streams = -1;
  if (algo != COLL_ALGO_AUTO) return algo;
  const coll_tune_rule_t *rule = coll_tune_lookup(comm, bytes, dtype, in_place);
  if (!rule) return builtin_algo(comm, bytes);
  if (rule->chunk_bytes && !comm->chunk_explicit) *chunk_bytes = rule->chunk_bytes;
  if (rule->stream >= 0 && !comm->stream_explicit) *streams = rule->stream;
  return rule->algo;
}

coll_algo_t coll_allreduce_auto_choice(const coll_comm_t *comm, size_t bytes, coll_dtype_t dtype,
                                       int in_place, size_t *chunk_bytes) {
  size_t chunk = 0;
  int streams;
  coll_algo_t a = comm ? coll_resolve_algo(comm, COLL_ALGO_AUTO, bytes, dtype, in_place, &chunk, &streams)
                       : COLL_ALGO_RING;
  if (chunk_bytes) *chunk_bytes = chunk;
  return a;
}

int coll_allreduce_auto_streams(const coll_comm_t *comm, size_t bytes, coll_dtype_t dtype, int in_place) {
  if (!comm) return 0;
  size_t chunk;
  int streams;
  coll_algo_t a = coll_resolve_algo(comm, COLL_ALGO_AUTO, bytes, dtype, in_place, &chunk, &streams);
  size_t work_bytes = bytes / coll_dtype_size(dtype) * coll_dtype_size(work_dtype(comm, dtype, a));
  return streams_for(comm, streams, work_bytes, in_place);
}

coll_algo_t coll_allreduce_auto_algo(const coll_comm_t *comm, size_t bytes) {
  return coll_allreduce_auto_choice(comm, bytes, COLL_F32, 0, NULL);
}

int coll_valid_args(coll_comm_t *comm, const char *opname, coll_dtype_t dtype, int op,
                    size_t count, const void *a, const void *b) {
  if ((unsigned)dtype >= COLL_DTYPE_COUNT)
    return coll_set_error(comm, COLL_ERR_ARG, "%s: invalid dtype %d", opname, (int)dtype), -1;
  if (op >= 0 && op >= COLL_OP_COUNT)
    return coll_set_error(comm, COLL_ERR_ARG, "%s: invalid reduction op %d", opname, op), -1;
  if (count && (!a || !b))
    return coll_set_error(comm, COLL_ERR_ARG, "%s: NULL buffer with count %zu", opname, count), -1;
  return 0;
}

/* ---------------------------------------------------------------- ring */

size_t coll_ring_scratch_bytes(const coll_comm_t *comm, const coll_layout_t *L, size_t esz) {
  if (comm->size == 1) return 0;
  return (coll_pipeline_depth(comm) + 1) * L->ce * esz;
}

typedef struct {
  coll_request_t *req;
  char *recv;
  const coll_layout_t *L;
  size_t esz, C, U, W;
  int p, r, f, next, prev;
  uint32_t sub0;
  int32_t *hr;          /* [U] receive handles */
  const int32_t *waitu; /* [U] sends to finish before receiving unit v (or NULL) */
} ring_ag_t;

/* All-gather step s receives block f-s-1 into recv, chunk by chunk. */
static void ag_post(ring_ag_t *g, size_t v) {
  size_t s = v / g->C, c = v % g->C;
  int b = coll_mod((long)g->f - (long)s - 1, g->p);
  if (g->waitu) coll_s_wait(g->req, g->waitu[v]);
  g->hr[v] = coll_s_crecv(g->req, g->recv + coll_chunk_off(g->L, (size_t)b, c) * g->esz,
                          coll_chunk_len(g->L, (size_t)b, c) * g->esz, g->prev,
                          g->sub0 + (uint32_t)v);
}

static void ag_prepost(ring_ag_t *g) {
  for (size_t v = 0; v < g->W && v < g->U; v++) ag_post(g, v);
}

/* Waits for each chunk and forwards it (except at the last step). */
static void ag_loop(ring_ag_t *g) {
  for (size_t v = 0; v < g->U; v++) {
    size_t s = v / g->C, c = v % g->C;
    if (v + g->W < g->U) ag_post(g, v + g->W);
    coll_s_wait(g->req, g->hr[v]);
    if (s + 2 < (size_t)g->p) {
      int b = coll_mod((long)g->f - (long)s - 1, g->p);
      coll_s_csend(g->req, g->recv + coll_chunk_off(g->L, (size_t)b, c) * g->esz,
                   coll_chunk_len(g->L, (size_t)b, c) * g->esz, g->next,
                   g->sub0 + (uint32_t)((s + 1) * g->C + c));
    }
  }
}

void coll_build_ring_ag(coll_request_t *req, void *recv, const void *first_src, int first,
                        const coll_layout_t *L, size_t esz, uint32_t sub0) {
  coll_comm_t *comm = req->comm;
  int p = comm->size, r = comm->rank;
  int f = coll_mod(first, p);
  coll_s_copy(req, (char *)recv + coll_blk_off(L, (size_t)f) * esz, first_src,
              coll_blk_len(L, (size_t)f) * esz);
  if (p == 1) return;
  ring_ag_t g = {req, recv, L, esz, L->nchunks, (size_t)(p - 1) * L->nchunks,
                 coll_pipeline_depth(comm), p, r, f, (r + 1) % p, (r - 1 + p) % p, sub0, NULL,
                 NULL};
  g.hr = malloc(g.U * sizeof *g.hr);
  if (!g.hr) {
    req->rc = COLL_ERR_NOMEM;
    return;
  }
  for (size_t c = 0; c < g.C; c++) /* step 0 sends this rank's own block */
    coll_s_csend(req, (const char *)first_src + (coll_chunk_off(L, (size_t)f, c) - coll_blk_off(L, (size_t)f)) * esz,
                 coll_chunk_len(L, (size_t)f, c) * esz, g.next, sub0 + (uint32_t)c);
  ag_prepost(&g);
  ag_loop(&g);
  free(g.hr);
}

void coll_build_ring(coll_request_t *req, const void *send, void *recv, void *final_dst,
                     const coll_layout_t *L, int shift, int ag, coll_dtype_t dtype, coll_op_t op,
                     void *scratch) {
  coll_comm_t *comm = req->comm;
  int p = comm->size, r = comm->rank;
  size_t esz = coll_dtype_size(dtype);
  const char *sb = send;
  char *rb = recv, *fd = final_dst;
  int f = coll_mod(r + 1 + shift, p);
  if (p == 1) {
    coll_s_copy(req, fd, sb + coll_blk_off(L, 0) * esz, coll_blk_len(L, 0) * esz);
    return;
  }
  size_t W = coll_pipeline_depth(comm), S = W + 1, C = L->nchunks, U = (size_t)(p - 1) * C;
  size_t slot_bytes = L->ce * esz;
  int next = (r + 1) % p, prev = (r - 1 + p) % p;
  char *slots = scratch;
  int32_t *hr = malloc(U * sizeof *hr), *hsend = malloc(U * sizeof *hsend);
  int32_t *hag = ag ? malloc(U * sizeof *hag) : NULL;
  if (!hr || !hsend || (ag && !hag)) {
    req->rc = COLL_ERR_NOMEM;
    goto free_tmp;
  }
  /* All-gather step s receives into the block whose reduce-scatter step-s send must be done. */
  ring_ag_t g = {req, recv, L, esz, C, U, W, p, r, f, next, prev, (uint32_t)U, hag, hsend};

  /* Step 0 sends this rank's own contribution to block r+shift, paced like the receives (the
   * send of chunk u goes out with the receive of unit u) so the peer is not flooded with
   * unexpected messages. */
  int b0 = coll_mod(r + shift, p);
  for (size_t u = 0; u < U + W; u++) {
    if (u < C)
      hsend[u] = coll_s_csend(req, sb + coll_chunk_off(L, (size_t)b0, u) * esz,
                              coll_chunk_len(L, (size_t)b0, u) * esz, next, (uint32_t)u);
    /* Post the receive W units ahead, into the slot the unit before the current one used. */
    if (u < U) {
      size_t s = u / C, c = u % C;
      int b = coll_mod(r - (long)s - 1 + shift, p);
      hr[u] = coll_s_crecv(req, slots + (u % S) * slot_bytes,
                           coll_chunk_len(L, (size_t)b, c) * esz, prev, (uint32_t)u);
    }
    if (u < W) continue;
    size_t v = u - W; /* the unit to reduce now */
    size_t s = v / C, c = v % C;
    char *slot = slots + (v % S) * slot_bytes;
    int b = coll_mod(r - (long)s - 1 + shift, p);
    size_t off = coll_chunk_off(L, (size_t)b, c), len = coll_chunk_len(L, (size_t)b, c);
    if (ag && s + 2 == (size_t)p && c == 0) ag_prepost(&g); /* last step: all-gather receives */
    coll_s_wait(req, hr[v]);
    if (s + 2 < (size_t)p) { /* partial sum: reduce send + incoming into recv, pass it on */
      coll_s_reduce(req, rb + off * esz, sb + off * esz, slot, len, dtype, op);
      hsend[(s + 1) * C + c] = coll_s_csend(req, rb + off * esz, len * esz, next, (uint32_t)((s + 1) * C + c));
    } else {
      char *dst = fd + (off - coll_blk_off(L, (size_t)b)) * esz;
      coll_s_reduce(req, dst, sb + off * esz, slot, len, dtype, op);
      if (op == COLL_AVG) coll_s_scale(req, dst, len, dtype);
      if (ag) coll_s_csend(req, dst, len * esz, next, (uint32_t)(U + c)); /* all-gather step 0 */
    }
  }
  if (ag) ag_loop(&g);
free_tmp:
  free(hr);
  free(hsend);
  free(hag);
}

/* ---------------------------------------------------------------- recursive doubling */

/* Messages of the latency algorithm: cut in up to 4 segments of at most cfg.eager_bytes so a
 * message just over the transport's eager limit does not pay a rendezvous round trip. */
#define RD_MAX_SEGS 4
static size_t rd_nseg(const coll_comm_t *comm, size_t bytes) {
  size_t e = comm->cfg.eager_bytes;
  if (!e || bytes <= e || bytes > RD_MAX_SEGS * e) return 1;
  return (bytes + e - 1) / e;
}

/* Posts the sends (buf != NULL) and / or receives (into != NULL) of one exchange; waits for the
 * receives, and for the sends too when wait_sends is set. */
static void rd_xfer(coll_request_t *req, const void *buf, void *into, size_t bytes, int peer,
                    uint32_t sub, int wait_sends) {
  size_t nseg = rd_nseg(req->comm, bytes), seg = (bytes + nseg - 1) / nseg;
  int32_t hs[RD_MAX_SEGS], hr[RD_MAX_SEGS];
  for (size_t k = 0; k < nseg; k++) {
    size_t off = k * seg, len = off < bytes ? (bytes - off < seg ? bytes - off : seg) : 0;
    hr[k] = into ? coll_s_crecv(req, (char *)into + off, len, peer, sub * RD_MAX_SEGS + (uint32_t)k) : -1;
    hs[k] = buf ? coll_s_csend(req, (const char *)buf + off, len, peer, sub * RD_MAX_SEGS + (uint32_t)k) : -1;
  }
  for (size_t k = 0; k < nseg; k++) coll_s_wait(req, hr[k]);
  if (wait_sends)
    for (size_t k = 0; k < nseg; k++) coll_s_wait(req, hs[k]);
}

void coll_build_rd(coll_request_t *req, const void *send, void *recv, size_t count,
                   coll_dtype_t dtype, coll_op_t op, void *scratch) {
  coll_comm_t *comm = req->comm;
  int p = comm->size, r = comm->rank;
  size_t esz = coll_dtype_size(dtype), bytes = count * esz;
  if (p == 1 || count == 0) {
    coll_s_copy(req, recv, send, bytes);
    return;
  }
  int pof2 = 1;
  while (pof2 * 2 <= p) pof2 *= 2;
  int rem = p - pof2, newrank;
  const void *cur = send;
  uint32_t sub = 0;
  /* Fold: among the first 2*rem ranks, even ones hand their data to the odd neighbour. */
  if (r < 2 * rem) {
    if (r % 2 == 0) {
      rd_xfer(req, cur, NULL, bytes, r + 1, sub, 1);
      newrank = -1;
    } else {
      rd_xfer(req, NULL, scratch, bytes, r - 1, sub, 0);
      coll_s_reduce(req, recv, cur, scratch, count, dtype, op);
      cur = recv;
      newrank = r / 2;
    }
  } else {
    newrank = r - rem;
  }
  sub++;
  if (newrank >= 0) {
    for (int mask = 1; mask < pof2; mask <<= 1, sub++) {
      int nd = newrank ^ mask;
      int dst = nd < rem ? nd * 2 + 1 : nd + rem;
      rd_xfer(req, cur, scratch, bytes, dst, sub, 1); /* cur may be recv: sends must finish */
      coll_s_reduce(req, recv, cur, scratch, count, dtype, op);
      cur = recv;
    }
    if (op == COLL_AVG) coll_s_scale(req, recv, count, dtype);
  }
  sub = 64;
  if (r < 2 * rem) { /* unfold: odd ranks return the result */
    if (r % 2) rd_xfer(req, recv, NULL, bytes, r - 1, sub, 0);
    else rd_xfer(req, NULL, recv, bytes, r + 1, sub, 0);
  }
}

/* ---------------------------------------------------------------- entry points */

#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

static coll_result_t allreduce_build(const void *send, void *recv, size_t count,
                                     coll_dtype_t dtype, coll_op_t op, coll_algo_t algo,
                                     coll_comm_t *comm, coll_request_t **out) {
  *out = NULL;
  if (!comm) return COLL_ERR_ARG;
  if (coll_valid_args(comm, "allreduce", dtype, (int)op, count, send, recv)) return COLL_ERR_ARG;
  if ((unsigned)algo >= COLL_ALGO_COUNT)
    return coll_set_error(comm, COLL_ERR_ARG, "allreduce: invalid algorithm %d", (int)algo);
  size_t chunk_bytes, p = (size_t)comm->size;
  int streams;
  algo = coll_resolve_algo(comm, algo, count * coll_dtype_size(dtype), dtype, send == recv, &chunk_bytes, &streams);
  coll_dtype_t wt = work_dtype(comm, dtype, algo);
  int is16 = wt != dtype; /* fp32 work */
  size_t esz = coll_dtype_size(wt);
  coll_layout_t L;
  coll_layout_init(&L, count / p, count % p, esz, chunk_bytes);
  size_t check_b = ALIGN64(coll_check_scratch_bytes(comm));
  size_t work_b = is16 ? ALIGN64(count * esz) : 0;
  size_t algo_b = algo == COLL_ALGO_RING ? coll_ring_scratch_bytes(comm, &L, esz)
                  : algo == COLL_ALGO_RD ? count * esz
                  : algo == COLL_ALGO_RABENSEIFNER ? coll_rh_scratch_bytes(comm, count, esz, chunk_bytes) : 0;
  char name[64];
  snprintf(name, sizeof name, "allreduce(%s, %zu x %s, %s)", coll_algo_name(algo), count,
           coll_dtype_name(dtype), coll_op_name(op));
  coll_request_t *req = coll_req_new(comm, name, 1, check_b + work_b + algo_b);
  if (!req) return COLL_ERR_NOMEM;
  req->stream_stores = streams_for(comm, streams, count * esz, send == recv);
  char *area = req->scratch, *work = area + check_b, *tmp = work + work_b;
  coll_s_check(req, area, OPK_ALLREDUCE, count, (int)dtype, (int)op, -1, (int)algo);
  const void *src = send;
  void *dst = recv;
  if (is16) {
    coll_s_to_f32(req, (float *)work, send, count, dtype);
    src = dst = work;
  }
  switch (algo) {
  case COLL_ALGO_RD: coll_build_rd(req, src, dst, count, wt, op, tmp); break;
  case COLL_ALGO_RABENSEIFNER: coll_build_rabenseifner(req, src, dst, count, wt, op, chunk_bytes, tmp); break;
  case COLL_ALGO_MPI:
    if (p == 1) coll_s_copy(req, dst, src, count * esz);
    else coll_s_mpi_allreduce(req, src, dst, count, wt, op);
    if (op == COLL_AVG) coll_s_scale(req, dst, count, wt);
    break;
  default: {
    int f = coll_mod(comm->rank + 1, comm->size);
    coll_build_ring(req, src, dst, (char *)dst + coll_blk_off(&L, (size_t)f) * esz, &L, 0, 1, wt,
                    op, tmp);
    break;
  }
  }
  if (is16) coll_s_from_f32(req, recv, (const float *)work, count, dtype);
  *out = req;
  return COLL_OK;
}

coll_result_t coll_allreduce_algo(const void *send, void *recv, size_t count, coll_dtype_t dtype,
                                  coll_op_t op, coll_algo_t algo, coll_comm_t *comm) {
  coll_request_t *req;
  coll_result_t rc = allreduce_build(send, recv, count, dtype, op, algo, comm, &req);
  if (rc != COLL_OK) return rc;
  return coll_req_run(req);
}

coll_result_t coll_allreduce(const void *send, void *recv, size_t count, coll_dtype_t dtype,
                             coll_op_t op, coll_comm_t *comm) {
  if (!comm) return COLL_ERR_ARG;
  return coll_allreduce_algo(send, recv, count, dtype, op, comm->cfg.algo, comm);
}

coll_result_t coll_iallreduce(const void *send, void *recv, size_t count, coll_dtype_t dtype,
                              coll_op_t op, coll_comm_t *comm, coll_request_t **out) {
  if (!out) return COLL_ERR_ARG;
  *out = NULL;
  coll_request_t *req;
  coll_result_t rc = allreduce_build(send, recv, count, dtype, op, comm ? comm->cfg.algo : 0, comm, &req);
  if (rc != COLL_OK) return rc;
  req->nonblocking = 1;
  rc = coll_req_start(req);
  if (rc != COLL_OK) {
    coll_req_free(req);
    return rc;
  }
  *out = req;
  return COLL_OK;
}
