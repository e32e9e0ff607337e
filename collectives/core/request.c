/* request.c -- the request engine: building schedules of actions, executing them
 * incrementally (posting sends and receives, waiting, reducing), the timeout clock, the
 * cfg.check descriptor exchange, the public completion calls (coll_test / coll_wait) and the
 * optional progress thread.
 *
 * A request's schedule is executed in order from its program counter; only a WAIT on an
 * incomplete transfer stops it, and the next poll resumes there. Every poll of a
 * communicator progresses all of its active requests in start order, so several operations
 * in flight complete no matter which one the caller waits on. A request whose polls have
 * made no progress for cfg.timeout_s (idle gaps between polls count at most 1 s each) fails
 * with COLL_ERR_TIMEOUT; its outstanding transfers are cancelled. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coll_internal.h"

#define COLL_MAX_IDLE_GAP_S 1.0 /* longest gap between two polls counted toward the timeout */

/* ---------------------------------------------------------------- building */

coll_request_t *coll_req_new(coll_comm_t *comm, const char *opname, int collective,
                             size_t scratch_bytes) {
  coll_request_t *req = calloc(1, sizeof *req);
  if (!req) {
    coll_set_error(comm, COLL_ERR_NOMEM, "%s: out of memory for a request", opname);
    return NULL;
  }
  req->comm = comm;
  snprintf(req->opname, sizeof req->opname, "%s", opname);
  pthread_mutex_lock(&comm->lock);
  if (collective) req->seq = comm->seq++;
  if (scratch_bytes) {
    req->scratch = coll_scratch_get(comm, scratch_bytes, &req->scratch_bytes);
    if (!req->scratch) {
      pthread_mutex_unlock(&comm->lock);
      coll_set_error(comm, COLL_ERR_NOMEM, "%s: out of memory allocating %zu bytes of scratch",
                     opname, scratch_bytes);
      free(req);
      return NULL;
    }
  }
  pthread_mutex_unlock(&comm->lock);
  return req;
}

static void cancel_open(coll_request_t *req) {
  coll_comm_t *c = req->comm;
  for (int32_t i = 0; i < req->nh; i++)
    if (req->hs[i].state == 1) {
      c->tops->cancel(c->t, req->hs[i].treq);
      req->hs[i].treq = NULL;
      req->hs[i].state = 2;
    }
}

static void unlink_active(coll_request_t *req) {
  coll_comm_t *c = req->comm;
  if (!req->active) return;
  if (req->prev) req->prev->next = req->next;
  else c->active_head = req->next;
  if (req->next) req->next->prev = req->prev;
  else c->active_tail = req->prev;
  req->prev = req->next = NULL;
  req->active = 0;
}

void coll_req_free(coll_request_t *req) {
  if (!req) return;
  coll_comm_t *c = req->comm;
  pthread_mutex_lock(&c->lock);
  unlink_active(req);
  cancel_open(req);
  if (req->scratch) coll_scratch_put(c, req->scratch, req->scratch_bytes);
  pthread_mutex_unlock(&c->lock);
  free(req->acts);
  free(req->hs);
  free(req);
}

uint32_t coll_coll_tag(const coll_request_t *req, uint32_t sub) {
  return COLL_TAG_COLL_BIT | ((req->seq & ((1u << COLL_TAG_SEQ_BITS) - 1)) << COLL_TAG_SUB_BITS) |
         (sub & ((1u << COLL_TAG_SUB_BITS) - 1));
}

static coll_action_t *add(coll_request_t *req, coll_act_kind_t kind) {
  if (req->rc != COLL_OK) return NULL;
  if (req->nacts == req->acts_cap) {
    size_t cap = req->acts_cap ? 2 * req->acts_cap : 16;
    coll_action_t *p = realloc(req->acts, cap * sizeof *p);
    if (!p) {
      req->rc = COLL_ERR_NOMEM;
      return NULL;
    }
    req->acts = p;
    req->acts_cap = cap;
  }
  coll_action_t *a = &req->acts[req->nacts++];
  memset(a, 0, sizeof *a);
  a->kind = (uint8_t)kind;
  a->handle = -1;
  return a;
}

static int32_t new_handle(coll_request_t *req, int peer, size_t bytes, int is_recv) {
  if (req->nh == req->hs_cap) {
    int32_t cap = req->hs_cap ? 2 * req->hs_cap : 16;
    coll_handle_t *p = realloc(req->hs, (size_t)cap * sizeof *p);
    if (!p) {
      req->rc = COLL_ERR_NOMEM;
      return -1;
    }
    req->hs = p;
    req->hs_cap = cap;
  }
  coll_handle_t *h = &req->hs[req->nh];
  memset(h, 0, sizeof *h);
  h->peer = peer;
  h->bytes = bytes;
  h->is_recv = (uint8_t)is_recv;
  return req->nh++;
}

static int32_t add_xfer(coll_request_t *req, coll_act_kind_t kind, const void *buf, size_t bytes,
                        int peer, uint32_t tag) {
  coll_action_t *a = add(req, kind);
  if (!a) return -1;
  int32_t h = new_handle(req, peer, bytes, kind == ACT_RECV);
  if (h < 0) {
    req->nacts--;
    return -1;
  }
  a->handle = h;
  a->peer = peer;
  a->tag = tag;
  a->count = bytes;
  if (kind == ACT_RECV) a->dst = (void *)buf;
  else a->a = buf;
  return h;
}

int32_t coll_s_send(coll_request_t *req, const void *buf, size_t bytes, int peer, uint32_t tag) {
  return add_xfer(req, ACT_SEND, buf, bytes, peer, tag);
}
int32_t coll_s_recv(coll_request_t *req, void *buf, size_t bytes, int peer, uint32_t tag) {
  return add_xfer(req, ACT_RECV, buf, bytes, peer, tag);
}
int32_t coll_s_csend(coll_request_t *req, const void *buf, size_t bytes, int peer, uint32_t sub) {
  return bytes ? add_xfer(req, ACT_SEND, buf, bytes, peer, coll_coll_tag(req, sub)) : -1;
}
int32_t coll_s_crecv(coll_request_t *req, void *buf, size_t bytes, int peer, uint32_t sub) {
  return bytes ? add_xfer(req, ACT_RECV, buf, bytes, peer, coll_coll_tag(req, sub)) : -1;
}

void coll_s_wait(coll_request_t *req, int32_t handle) {
  if (handle < 0) return;
  coll_action_t *a = add(req, ACT_WAIT);
  if (a) a->handle = handle;
}

void coll_s_reduce(coll_request_t *req, void *dst, const void *a_, const void *b, size_t count,
                   coll_dtype_t dtype, coll_op_t op) {
  if (!count) return;
  coll_action_t *a = add(req, ACT_REDUCE);
  if (!a) return;
  a->dst = dst, a->a = a_, a->b = b, a->count = count, a->dtype = (uint8_t)dtype, a->op = (uint8_t)op;
}

void coll_s_copy(coll_request_t *req, void *dst, const void *src, size_t bytes) {
  if (!bytes || dst == src) return;
  coll_action_t *a = add(req, ACT_COPY);
  if (a) a->dst = dst, a->a = src, a->count = bytes;
}

void coll_s_scale(coll_request_t *req, void *buf, size_t count, coll_dtype_t dtype) {
  if (!count || req->comm->size == 1) return;
  coll_action_t *a = add(req, ACT_SCALE);
  if (a) a->dst = buf, a->count = count, a->dtype = (uint8_t)dtype;
}

void coll_s_to_f32(coll_request_t *req, float *dst, const void *src, size_t count,
                   coll_dtype_t dtype16) {
  if (!count) return;
  coll_action_t *a = add(req, ACT_TO_F32);
  if (a) a->dst = dst, a->a = src, a->count = count, a->dtype = (uint8_t)dtype16;
}

void coll_s_from_f32(coll_request_t *req, void *dst, const float *src, size_t count,
                     coll_dtype_t dtype16) {
  if (!count) return;
  coll_action_t *a = add(req, ACT_FROM_F32);
  if (a) a->dst = dst, a->a = src, a->count = count, a->dtype = (uint8_t)dtype16;
}

void coll_s_mpi_allreduce(coll_request_t *req, const void *send, void *recv, size_t count,
                          coll_dtype_t dtype, coll_op_t op) {
  if (!count) return;
  coll_action_t *a = add(req, ACT_MPI_ALLREDUCE);
  if (a) a->dst = recv, a->a = send, a->count = count, a->dtype = (uint8_t)dtype, a->op = (uint8_t)op;
}

size_t coll_check_scratch_bytes(const coll_comm_t *comm) {
  return comm->cfg.check ? (size_t)comm->size * sizeof(coll_desc_t) : 0;
}

void coll_s_check(coll_request_t *req, void *area, coll_opkind_t kind, size_t count, int dtype,
                  int op, int root, int algo) {
  coll_comm_t *c = req->comm;
  if (!c->cfg.check) return;
  coll_desc_t *all = area;
  coll_desc_t d = {COLL_CHECK_MAGIC, (uint32_t)kind, count, dtype, op, root, algo};
  req->desc = d;
  int p = c->size, r = c->rank;
  all[r] = d;
  if (p == 1) return;
  int next = (r + 1) % p, prev = (r - 1 + p) % p;
  /* Ring all-gather of the descriptors. Each step also waits for its forward: a mismatch fails
   * the request, which cancels what is still open, and a cancelled forward (libfabric can really
   * cancel a queued send) would leave the next rank waiting for it until its timeout. */
  for (int s = 0; s < p - 1; s++) {
    int32_t hs = coll_s_send(req, &all[coll_mod(r - s, p)], sizeof d, next,
                             coll_coll_tag(req, COLL_SUB_CHECK));
    int32_t hr = coll_s_recv(req, &all[coll_mod(r - s - 1, p)], sizeof d, prev,
                             coll_coll_tag(req, COLL_SUB_CHECK));
    coll_s_wait(req, hr);
    coll_s_wait(req, hs);
  }
  coll_action_t *a = add(req, ACT_CHECK);
  if (a) a->a = area;
}

/* ---------------------------------------------------------------- executing */

static const char *kind_name(int k) {
  static const char *const n[] = {"?", "allreduce", "reduce_scatter", "allgather", "broadcast",
                                  "barrier", "send", "recv", "sendrecv"};
  return k > 0 && k <= OPK_SENDRECV ? n[k] : "?";
}

static void fail(coll_request_t *req, coll_result_t rc) {
  cancel_open(req);
  req->rc = rc;
  req->done = 1;
}

/* Returns 1 when handle i is complete, 0 when not yet, -1 on error (request failed). */
static int test_handle(coll_request_t *req, int32_t i) {
  coll_comm_t *c = req->comm;
  coll_handle_t *h = &req->hs[i];
  if (h->state == 2) return 1;
  if (h->state == 0) {
    coll_set_error(c, COLL_ERR_ARG, "%s: internal error: waiting on an unposted transfer", req->opname);
    fail(req, COLL_ERR_ARG);
    return -1;
  }
  char err[COLL_ERRLEN] = "";
  int done = 0;
  size_t rb = 0;
  coll_result_t rc = c->tops->test(c->t, h->treq, &done, &rb, err, sizeof err);
  if (rc != COLL_OK) {
    h->state = 2; /* the transport released it */
    h->treq = NULL;
    coll_set_error(c, rc, "%s: %s %zu bytes %s rank %d (world rank %d, host %s) failed: %s", req->opname,
                   h->is_recv ? "receiving" : "sending", h->bytes, h->is_recv ? "from" : "to",
                   h->peer, coll_world_rank(c, h->peer), coll_peer_host(c, h->peer), err);
    fail(req, rc);
    return -1;
  }
  if (!done) return 0;
  h->state = 2;
  h->treq = NULL;
  if (h->is_recv) {
    c->recv_bytes += rb;
    if (rb != h->bytes) {
      coll_set_error(c, COLL_ERR_MISMATCH,
                     "%s: received %zu bytes from rank %d (world rank %d) where %zu were expected: "
                     "the ranks passed different counts or types (STRATA_COLL_CHECK=1 names them)",
                     req->opname, rb, h->peer, coll_world_rank(c, h->peer), h->bytes);
      fail(req, COLL_ERR_MISMATCH);
      return -1;
    }
  } else {
    c->sent_bytes += h->bytes;
  }
  return 1;
}

static int check_descs(coll_request_t *req, const coll_desc_t *all) {
  coll_comm_t *c = req->comm;
  for (int i = 1; i < c->size; i++) {
    const coll_desc_t *x = &all[i], *y = &all[0];
    if (memcmp(x, y, sizeof *x) == 0) continue;
    char a[160], b[160];
#define DESC_FMT "%s(count=%llu, dtype=%s, op=%s, root=%d, algo=%s)"
#define DESC_ARGS(d)                                                                     \
  (d)->magic == COLL_CHECK_MAGIC ? kind_name((int)(d)->opkind) : "garbage",              \
      (unsigned long long)(d)->count, (d)->dtype >= 0 ? coll_dtype_name((d)->dtype) : "-", \
      (d)->op >= 0 ? coll_op_name((d)->op) : "-", (d)->root,                             \
      (d)->algo >= 0 ? coll_algo_name((d)->algo) : "-"
    snprintf(a, sizeof a, DESC_FMT, DESC_ARGS(x));
    snprintf(b, sizeof b, DESC_FMT, DESC_ARGS(y));
    coll_set_error(c, COLL_ERR_MISMATCH,
                   "%s: ranks disagree on the operation: rank %d (world rank %d) called %s but "
                   "rank 0 (world rank %d) called %s; every rank must make the same call",
                   req->opname, i, coll_world_rank(c, i), a, coll_world_rank(c, 0), b);
    return -1;
  }
  return 0;
}

/* Runs the MPI baseline; returns COLL_OK or the error (message set). */
static coll_result_t mpi_allreduce(coll_request_t *req, const coll_action_t *a) {
  coll_comm_t *c = req->comm;
  MPI_Datatype t = a->dtype == COLL_F64 ? MPI_DOUBLE : a->dtype == COLL_I32 ? MPI_INT32_T
                   : a->dtype == COLL_I64 ? MPI_INT64_T : MPI_FLOAT;
  MPI_Op op = a->op == COLL_PROD ? MPI_PROD : a->op == COLL_MIN ? MPI_MIN
              : a->op == COLL_MAX ? MPI_MAX : MPI_SUM;
  if (a->count > (size_t)0x7fffffff) {
    return coll_set_error(c, COLL_ERR_UNSUPPORTED, "%s: count %zu exceeds MPI's int count; use "
                          "--algo ring", req->opname, a->count);
  }
  int rc = MPI_Allreduce(a->a == a->dst ? MPI_IN_PLACE : a->a, a->dst, (int)a->count, t, op, c->mpi);
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return coll_set_error(c, COLL_ERR_TRANSPORT, "%s: MPI_Allreduce failed: %s", req->opname, msg);
  }
  return COLL_OK;
}

/* Executes as much of the schedule as possible. Returns 1 if anything advanced. */
static int step(coll_request_t *req) {
  coll_comm_t *c = req->comm;
  char err[COLL_ERRLEN] = "";
  int progressed = 0;
  if (req->done) return 0;
  while (req->pc < req->nacts) {
    coll_action_t *a = &req->acts[req->pc];
    switch (a->kind) {
    case ACT_SEND:
    case ACT_RECV: {
      coll_handle_t *h = &req->hs[a->handle];
      coll_result_t rc =
          a->kind == ACT_SEND
              ? c->tops->isend(c->t, a->a, a->count, a->peer, a->tag, &h->treq, err, sizeof err)
              : c->tops->irecv(c->t, a->dst, a->count, a->peer, a->tag, &h->treq, err, sizeof err);
      if (rc != COLL_OK) {
        coll_set_error(c, rc, "%s: posting a %s of %zu bytes %s rank %d (world rank %d, host %s) failed: %s",
                       req->opname, a->kind == ACT_SEND ? "send" : "receive", a->count,
                       a->kind == ACT_SEND ? "to" : "from", a->peer, coll_world_rank(c, a->peer),
                       coll_peer_host(c, a->peer), err);
        fail(req, rc);
        return 1;
      }
      h->state = 1;
      break;
    }
    case ACT_WAIT: {
      int r = test_handle(req, a->handle);
      if (r < 0) return 1;
      if (r == 0) return progressed;
      break;
    }
    case ACT_REDUCE:
      coll_reduce_kernel(a->dst, a->a, a->b, a->count, (coll_dtype_t)a->dtype, (coll_op_t)a->op,
                         req->stream_stores);
      break;
    case ACT_COPY: memcpy(a->dst, a->a, a->count); break;
    case ACT_SCALE: coll_scale_kernel(a->dst, a->count, (coll_dtype_t)a->dtype, c->size); break;
    case ACT_TO_F32: coll_f32_from_16(a->dst, a->a, a->count, (coll_dtype_t)a->dtype); break;
    case ACT_FROM_F32: coll_f32_to_16(a->dst, a->a, a->count, (coll_dtype_t)a->dtype); break;
    case ACT_CHECK:
      if (check_descs(req, a->a)) {
        fail(req, COLL_ERR_MISMATCH);
        return 1;
      }
      break;
    case ACT_MPI_ALLREDUCE: {
      coll_result_t rc = mpi_allreduce(req, a);
      if (rc != COLL_OK) {
        fail(req, rc);
        return 1;
      }
      break;
    }
    }
    req->pc++;
    progressed = 1;
  }
  /* Schedule finished: complete every transfer not explicitly waited for. */
  for (; req->final_scan < req->nh; req->final_scan++) { /* handles before it are complete */
    if (req->hs[req->final_scan].state == 2) continue;
    int r = test_handle(req, req->final_scan);
    if (r < 0) return 1;
    if (r == 0) return progressed;
  }
  req->done = 1;
  req->rc = COLL_OK;
  return 1;
}

static void timeout_fail(coll_request_t *req) {
  coll_comm_t *c = req->comm;
  int32_t blocked = -1;
  if (req->pc < req->nacts && req->acts[req->pc].kind == ACT_WAIT) blocked = req->acts[req->pc].handle;
  size_t outstanding = 0;
  int nopen = 0;
  for (int32_t i = 0; i < req->nh; i++)
    if (req->hs[i].state == 1) {
      outstanding += req->hs[i].bytes;
      nopen++;
      if (blocked < 0) blocked = i;
    }
  if (blocked >= 0) {
    coll_handle_t *h = &req->hs[blocked];
    coll_set_error(c, COLL_ERR_TIMEOUT,
                   "%s timed out after %.1f s (STRATA_COLL_TIMEOUT_S) waiting on rank %d (world "
                   "rank %d, host %s) to %s %zu bytes; %zu bytes outstanding in %d transfers; is that rank "
                   "alive and making the same call?",
                   req->opname, c->cfg.timeout_s, h->peer, coll_world_rank(c, h->peer), coll_peer_host(c, h->peer),
                   h->is_recv ? "send it" : "receive", h->bytes, outstanding, nopen);
  } else {
    coll_set_error(c, COLL_ERR_TIMEOUT, "%s timed out after %.1f s (STRATA_COLL_TIMEOUT_S)",
                   req->opname, c->cfg.timeout_s);
  }
  fail(req, COLL_ERR_TIMEOUT);
}

/* One poll of one request, with the timeout clock. Returns 1 if it advanced. */
static int poll_one(coll_request_t *req) {
  int progressed = step(req);
  double now = coll_now_s();
  if (progressed || req->done || req->untimed) {
    req->idle_s = 0;
  } else {
    double gap = now - req->last_poll_s;
    req->idle_s += gap < COLL_MAX_IDLE_GAP_S ? gap : COLL_MAX_IDLE_GAP_S;
    if (req->idle_s > req->comm->cfg.timeout_s) {
      timeout_fail(req);
      progressed = 1;
    }
  }
  req->last_poll_s = now;
  return progressed;
}

/* Polls every active request once; finished ones leave the list. Returns 1 if any advanced. */
static int progress_all(coll_comm_t *c) {
  int any = 0;
  coll_request_t *r = c->active_head;
  while (r) {
    coll_request_t *next = r->next;
    any |= poll_one(r);
    if (r->done) unlink_active(r);
    r = next;
  }
  return any;
}

void coll_progress_all_locked(coll_comm_t *comm) { progress_all(comm); }

coll_result_t coll_req_start(coll_request_t *req) {
  coll_comm_t *c = req->comm;
  if (req->rc != COLL_OK) { /* a build step failed */
    coll_set_error(c, req->rc, "%s: out of memory building the schedule", req->opname);
    req->done = 1;
    return req->rc;
  }
  pthread_mutex_lock(&c->lock);
  req->last_poll_s = coll_now_s();
  req->active = 1;
  req->prev = c->active_tail;
  req->next = NULL;
  if (c->active_tail) c->active_tail->next = req;
  else c->active_head = req;
  c->active_tail = req;
  if (c->thread_running) pthread_cond_signal(&c->cv);
  progress_all(c);
  coll_result_t rc = req->done ? req->rc : COLL_OK;
  pthread_mutex_unlock(&c->lock);
  return rc;
}

/* Polls until req is done. */
static coll_result_t wait_done(coll_request_t *req) {
  coll_comm_t *c = req->comm;
  for (;;) {
    pthread_mutex_lock(&c->lock);
    int any = progress_all(c);
    int done = req->done;
    pthread_mutex_unlock(&c->lock);
    if (done) return req->rc;
    if (!any && c->yield_idle) sched_yield();
  }
}

/* Adds one blocking call that started at t0 to the communicator's busy time (coll_busy). */
static void count_busy(coll_comm_t *c, double t0) {
  c->busy_s += coll_now_s() - t0;
  c->busy_calls++;
}

coll_result_t coll_req_run(coll_request_t *req) {
  coll_comm_t *c = req->comm;
  double t0 = coll_now_s();
  coll_result_t rc = coll_req_start(req);
  if (rc == COLL_OK && !req->done) rc = wait_done(req);
  else if (rc == COLL_OK) rc = req->rc;
  coll_req_free(req);
  count_busy(c, t0);
  return rc;
}

/* ---------------------------------------------------------------- public completion */

coll_result_t coll_test(coll_request_t *req, int *done) {
  if (!req || !done) return COLL_ERR_ARG;
  coll_comm_t *c = req->comm;
  pthread_mutex_lock(&c->lock);
  if (!req->done) progress_all(c);
  *done = req->done;
  coll_result_t rc = req->done ? req->rc : COLL_OK;
  pthread_mutex_unlock(&c->lock);
  return rc;
}

coll_result_t coll_wait(coll_request_t *req) {
  if (!req) return COLL_ERR_ARG;
  coll_comm_t *c = req->comm;
  double t0 = coll_now_s();
  coll_result_t rc = req->done ? req->rc : wait_done(req);
  coll_req_free(req);
  count_busy(c, t0);
  return rc;
}

/* Sleeps between the polls of coll_wait_for: none for the first COLL_IDLE_SPIN_S of a wait (a
 * message that is about to arrive is caught at once), then an eighth of the time waited so far
 * (so the wake-up comes at most about 12% late), at most COLL_IDLE_SLEEP_MAX_S: an idle wait then
 * polls 200 times a second, about 0.2% of a core. */
#define COLL_IDLE_SPIN_S 50e-6
#define COLL_IDLE_SLEEP_MAX_S 5e-3

coll_result_t coll_wait_for(coll_request_t *req, double max_s, int *done) {
  if (!req || !done || !(max_s >= 0)) return COLL_ERR_ARG;
  coll_comm_t *c = req->comm;
  double t0 = coll_now_s();
  pthread_mutex_lock(&c->lock);
  if (!req->untimed) {
    req->untimed = 1;
    req->idle_wait_start_s = t0;
  }
  pthread_mutex_unlock(&c->lock);
  for (;;) {
    pthread_mutex_lock(&c->lock);
    if (!req->done) progress_all(c);
    int fin = req->done;
    double start = req->idle_wait_start_s;
    pthread_mutex_unlock(&c->lock);
    if (fin) {
      *done = 1;
      coll_result_t rc = req->rc;
      coll_req_free(req);
      return rc;
    }
    double now = coll_now_s();
    if (now - t0 >= max_s) {
      *done = 0;
      return COLL_OK;
    }
    double waited = now - start, sleep_s = waited / 8;
    if (waited < COLL_IDLE_SPIN_S) {
      if (c->yield_idle) sched_yield();
      continue;
    }
    if (sleep_s > COLL_IDLE_SLEEP_MAX_S) sleep_s = COLL_IDLE_SLEEP_MAX_S;
    if (sleep_s > t0 + max_s - now) sleep_s = t0 + max_s - now;
    struct timespec ts = {(time_t)sleep_s, (long)((sleep_s - (double)(time_t)sleep_s) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

void coll_cancel(coll_request_t *req) { coll_req_free(req); }

/* ---------------------------------------------------------------- progress thread */

/* The progress thread polls while requests are active; after COLL_PROGRESS_IDLE_POLLS polls
 * without progress it sleeps progress_sleep_us between polls, so it does not take the core from
 * the compute it is meant to overlap with (STRATA_COLL_PROGRESS_SLEEP_US, default 20). */
#define COLL_PROGRESS_IDLE_POLLS 16
#define COLL_DEFAULT_PROGRESS_SLEEP_US 20

static void *progress_main(void *arg) {
  coll_comm_t *c = arg;
  int idle = 0;
  pthread_mutex_lock(&c->lock);
  while (!c->thread_stop) {
    if (!c->active_head) {
      pthread_cond_wait(&c->cv, &c->lock);
      idle = 0;
      continue;
    }
    int any = progress_all(c);
    pthread_mutex_unlock(&c->lock);
    idle = any ? 0 : idle + 1;
    if (idle > COLL_PROGRESS_IDLE_POLLS && c->progress_sleep_us > 0) {
      struct timespec ts = {0, (long)c->progress_sleep_us * 1000L};
      nanosleep(&ts, NULL);
    } else if (!any) {
      sched_yield();
    }
    pthread_mutex_lock(&c->lock);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

int coll_progress_thread_start(coll_comm_t *comm) {
  strnum_value_t v;
  comm->progress_sleep_us = COLL_DEFAULT_PROGRESS_SLEEP_US;
  if (coll_env_number("STRATA_COLL_PROGRESS_SLEEP_US", &v, NULL, 0) == 1) comm->progress_sleep_us = (int)v.i;
  comm->thread_stop = 0;
  if (pthread_create(&comm->thread, NULL, progress_main, comm)) return -1;
  comm->thread_running = 1;
  return 0;
}

void coll_progress_thread_stop(coll_comm_t *comm) {
  if (!comm->thread_running) return;
  pthread_mutex_lock(&comm->lock);
  comm->thread_stop = 1;
  pthread_cond_signal(&comm->cv);
  pthread_mutex_unlock(&comm->lock);
  pthread_join(comm->thread, NULL);
  comm->thread_running = 0;
}
