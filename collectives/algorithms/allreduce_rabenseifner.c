/* allreduce_rabenseifner.c -- Rabenseifner's all-reduce: a reduce-scatter by recursive halving
 * followed by an all-gather by recursive doubling. It moves the same 2(p-1)/p * n bytes per
 * rank as the ring but in 2 lg p pairwise steps instead of 2(p-1) ring steps, so a rank waits on
 * fewer peers in sequence -- what matters when ranks outnumber cores and a waited-on peer may be
 * descheduled (np=4 on this 2-core machine; collectives/README.md has the measurements).
 *
 * Reduce-scatter, step i (i = 0 .. lg p - 1, partner = newrank ^ (pof2 >> (i+1))): both
 * partners hold the same region [lo, hi); the one whose partner bit is clear keeps the lower
 * half, the other the upper half. Each sends the half it gives away and reduces the half it
 * keeps with what arrives. As in the ring, transfers are pipelined in chunks of cfg.chunk_bytes (or the decision table's)
 * with the receive of chunk k+W (W = cfg.pipeline_depth) posted before chunk k is reduced, and
 * received chunks land in W+1 cache-resident scratch slots; the reduction reads send (step 0) or
 * recv (later steps) plus the slot and writes recv. The all-gather walks the steps backwards,
 * each rank sending the region it owns and receiving its partner's straight into recv.
 *
 * Rank counts that are not a power of two are folded first, like recursive doubling: of the
 * first 2*rem ranks (rem = p - pof2) each even one hands its whole vector to its odd neighbour,
 * which reduces it and stands in for both; the even one gets the result back at the end. That
 * costs the folded pairs an extra n each way, so `auto` uses this algorithm only for powers of
 * two; it is correct for any rank count. */
#include <stdlib.h>

#include "coll_internal.h"

#define RH_MAX_STEPS 32 /* lg of the largest power of two an int rank count can hold */

typedef struct {
  coll_request_t *req;
  coll_dtype_t dtype;
  coll_op_t op;
  size_t esz, ce, W, S; /* element size, elements per chunk, receives ahead, slots */
  char *slots;          /* S slots of ce elements */
  size_t span;          /* message indices reserved per step (>= chunks of any message) */
  int32_t *hr, *hs;     /* [span] receive / send handles of the current step */
} rh_t;

static size_t rh_chunks(const rh_t *h, size_t n) { return (n + h->ce - 1) / h->ce; }
static size_t rh_len(const rh_t *h, size_t n, size_t k) {
  size_t start = k * h->ce;
  return n - start < h->ce ? n - start : h->ce;
}

/* One pipelined step with `peer`: sends n_send elements at sbuf (if sbuf) in chunks and, if
 * dst, receives n_recv elements chunk by chunk into the slots and reduces dst = a op slot.
 * Sends are posted with the receives so the peer is not flooded with unexpected messages. The
 * send handles are left in h->hs (n_send chunks) for the caller to wait on when needed. */
static void rh_reduce_step(rh_t *h, int peer, const char *sbuf, size_t n_send, char *dst,
                           const char *a, size_t n_recv, uint32_t sub0) {
  coll_request_t *req = h->req;
  size_t ns = sbuf ? rh_chunks(h, n_send) : 0, nr = dst ? rh_chunks(h, n_recv) : 0;
  size_t nmax = ns > nr ? ns : nr, slot_bytes = h->ce * h->esz;
  for (size_t k = 0; k < nmax + h->W; k++) {
    if (k < ns)
      h->hs[k] = coll_s_csend(req, sbuf + k * h->ce * h->esz, rh_len(h, n_send, k) * h->esz, peer,
                              sub0 + (uint32_t)k);
    if (k < nr)
      h->hr[k] = coll_s_crecv(req, h->slots + (k % h->S) * slot_bytes,
                              rh_len(h, n_recv, k) * h->esz, peer, sub0 + (uint32_t)k);
    if (k < h->W || k - h->W >= nr) continue;
    size_t v = k - h->W, off = v * h->ce * h->esz;
    coll_s_wait(req, h->hr[v]);
    coll_s_reduce(req, dst + off, a + off, h->slots + (v % h->S) * slot_bytes,
                  rh_len(h, n_recv, v), h->dtype, h->op);
  }
}

static void rh_wait_sends(rh_t *h, size_t n_send) {
  for (size_t k = 0, ns = rh_chunks(h, n_send); k < ns; k++) coll_s_wait(h->req, h->hs[k]);
}

/* Plain exchange without reduction: send n_send elements at sbuf, receive n_recv elements
 * straight into rbuf (either may be NULL), all chunks posted at once; waits for the receives
 * (and for the sends when wait_sends). */
static void rh_exchange(rh_t *h, int peer, const char *sbuf, size_t n_send, char *rbuf,
                        size_t n_recv, uint32_t sub0, int wait_sends) {
  coll_request_t *req = h->req;
  size_t ns = sbuf ? rh_chunks(h, n_send) : 0, nr = rbuf ? rh_chunks(h, n_recv) : 0;
  for (size_t k = 0; k < nr; k++)
    h->hr[k] = coll_s_crecv(req, rbuf + k * h->ce * h->esz, rh_len(h, n_recv, k) * h->esz, peer,
                            sub0 + (uint32_t)k);
  for (size_t k = 0; k < ns; k++)
    h->hs[k] = coll_s_csend(req, sbuf + k * h->ce * h->esz, rh_len(h, n_send, k) * h->esz, peer,
                            sub0 + (uint32_t)k);
  for (size_t k = 0; k < nr; k++) coll_s_wait(req, h->hr[k]);
  if (wait_sends)
    for (size_t k = 0; k < ns; k++) coll_s_wait(req, h->hs[k]);
}

/* Elements per chunk: the ring's rule (chunk_bytes, at most the whole vector), from the
 * layout of the vector as one block. */
static size_t rh_chunk_elems(size_t count, size_t esz, size_t chunk_bytes) {
  coll_layout_t L;
  coll_layout_init(&L, count, 0, esz, chunk_bytes);
  return L.ce;
}

size_t coll_rh_scratch_bytes(const coll_comm_t *comm, size_t count, size_t esz, size_t chunk_bytes) {
  if (comm->size == 1 || !count) return 0;
  return (coll_pipeline_depth(comm) + 1) * rh_chunk_elems(count, esz, chunk_bytes) * esz;
}

void coll_build_rabenseifner(coll_request_t *req, const void *send, void *recv, size_t count,
                             coll_dtype_t dtype, coll_op_t op, size_t chunk_bytes, void *scratch) {
  coll_comm_t *comm = req->comm;
  int p = comm->size, r = comm->rank;
  size_t esz = coll_dtype_size(dtype);
  if (p == 1 || count == 0) {
    coll_s_copy(req, recv, send, count * esz);
    return;
  }
  rh_t h = {req, dtype, op, esz, rh_chunk_elems(count, esz, chunk_bytes), coll_pipeline_depth(comm),
            0, scratch, 0, NULL, NULL};
  h.S = h.W + 1;
  h.span = rh_chunks(&h, count) + 1;
  h.hr = malloc(h.span * sizeof *h.hr);
  h.hs = malloc(h.span * sizeof *h.hs);
  if (!h.hr || !h.hs) {
    req->rc = COLL_ERR_NOMEM;
    goto free_handles;
  }
  const char *sb = send;
  char *rb = recv;
  int pof2 = 1, steps = 0;
  while (pof2 * 2 <= p) pof2 *= 2, steps++;
  int rem = p - pof2, newrank;
  uint32_t sub = 0; /* message index base of the next step */
  const char *cur = sb;

  /* Fold: even ranks among the first 2*rem give their vector to the odd neighbour. */
  if (r < 2 * rem) {
    if (r % 2 == 0) {
      rh_exchange(&h, r + 1, sb, count, NULL, 0, sub, 1);
      newrank = -1;
    } else {
      rh_reduce_step(&h, r - 1, NULL, 0, rb, sb, count, sub);
      cur = rb;
      newrank = r / 2;
    }
  } else {
    newrank = r - rem;
  }
  sub += (uint32_t)h.span;

  if (newrank >= 0) {
    size_t lo[RH_MAX_STEPS], hi[RH_MAX_STEPS], mid[RH_MAX_STEPS];
    int keep_low[RH_MAX_STEPS], peer[RH_MAX_STEPS];
    size_t a = 0, b = count;
    for (int i = 0; i < steps; i++) { /* reduce-scatter by recursive halving */
      int m = pof2 >> (i + 1), nd = newrank ^ m;
      peer[i] = nd < rem ? nd * 2 + 1 : nd + rem;
      lo[i] = a, hi[i] = b, mid[i] = a + (b - a) / 2;
      keep_low[i] = !(newrank & m);
      size_t ka = keep_low[i] ? lo[i] : mid[i], kb = keep_low[i] ? mid[i] : hi[i];
      size_t ga = keep_low[i] ? mid[i] : lo[i], gb = keep_low[i] ? hi[i] : mid[i];
      rh_reduce_step(&h, peer[i], cur + ga * esz, gb - ga, rb + ka * esz, cur + ka * esz, kb - ka,
                     sub + (uint32_t)i * (uint32_t)h.span);
      /* The given half is received into by the all-gather; its sends must be done by then. Only
       * the last step's can still be in flight at that point, but waiting for each step's
       * before the next keeps the handle array per step. */
      rh_wait_sends(&h, gb - ga);
      cur = rb;
      a = ka, b = kb;
    }
    if (op == COLL_AVG) coll_s_scale(req, rb + a * esz, b - a, dtype);
    sub += (uint32_t)steps * (uint32_t)h.span;
    for (int i = steps - 1; i >= 0; i--) { /* all-gather by recursive doubling */
      size_t ka = keep_low[i] ? lo[i] : mid[i], kb = keep_low[i] ? mid[i] : hi[i];
      size_t ga = keep_low[i] ? mid[i] : lo[i], gb = keep_low[i] ? hi[i] : mid[i];
      rh_exchange(&h, peer[i], rb + ka * esz, kb - ka, rb + ga * esz, gb - ga,
                  sub + (uint32_t)(steps - 1 - i) * (uint32_t)h.span, 0);
    }
  }
  sub = (uint32_t)(2 * steps + 1) * (uint32_t)h.span;
  if (r < 2 * rem) { /* unfold: odd ranks return the result */
    if (r % 2) rh_exchange(&h, r - 1, rb, count, NULL, 0, sub, 0);
    else rh_exchange(&h, r + 1, NULL, 0, rb, count, sub, 0);
  }
free_handles:
  free(h.hr);
  free(h.hs);
}
