/* ofi.c -- the libfabric transport of the collectives library.
 *
 * One reliable-datagram endpoint (FI_EP_RDM) per communicator, with tagged messages
 * (FI_TAGGED | FI_MSG) and send-after-send ordering (FI_ORDER_SAS), so two messages with the
 * same (source, tag) match in the order they were sent -- the MPI non-overtaking rule the
 * algorithms rely on. Addresses: every rank calls fi_getname, the names are exchanged with
 * MPI_Allgather over the bootstrap communicator and inserted into an FI_AV_TABLE address
 * vector, so rank r of the communicator is fi_addr r.
 *
 * Matching. The 64-bit libfabric tag carries both the transport tag (low 30 bits, < 2^30 =
 * COLL_TAG_LIMIT) and the sender's rank (bits 30..61), and receives match it with ignore = 0:
 * a receive from peer p with tag t accepts exactly the messages p sent with tag t, whatever
 * the provider's FI_DIRECTED_RECV support.
 *
 * Progress is manual: every test / progress call drains the completion queue (fi_cq_read,
 * FI_CQ_FORMAT_TAGGED); a completion's op_context is the fragment it finishes. -FI_EAGAIN on a
 * post means the provider's queues are full: the operation goes to a backlog (one FIFO per
 * peer and direction, so per-(peer, tag) order is kept) and is posted by later progress calls;
 * isend / irecv never block. The caller's wait (bounded by cfg->timeout_s in the request
 * engine) is what bounds a backlog that never drains, e.g. sends to a rank that is gone.
 * Error completions (FI_EAVAIL) are read with fi_cq_readerr and reported with fi_cq_strerror's
 * text; a truncated receive (sender sent more than the posted size) is COLL_ERR_MISMATCH.
 *
 * Large messages. Messages above the provider's max_msg_size (or STRATA_OFI_MAX_MSG_BYTES,
 * a tunable that lets tests force it) are split into fragments of that size, sent with the
 * same tag; FI_ORDER_SAS keeps them in order, and the receiver posts one receive per
 * fragment of its posted size. A message shorter than the posted receive completes at its
 * first short fragment; the remaining posted fragments are cancelled.
 *
 * Memory registration. When the provider asks for it (FI_MR_LOCAL in domain_attr->mr_mode,
 * or the legacy FI_LOCAL_MR mode bit), or STRATA_OFI_FORCE_MR=1 is set, each fragment's
 * buffer is registered with fi_mr_reg for the duration of the operation (bound to the
 * endpoint when FI_MR_ENDPOINT is set). Small sends (<= the provider's inject_size, and no
 * registration needed) use fi_tinject and complete at once.
 *
 * The tcp provider ("tcp;ofi_rxm") binds to the first interface it finds; unless FI_TCP_IFACE
 * or STRATA_OFI_DOMAIN names one, this transport asks for the "lo" domain (also when no
 * provider is named and libfabric's first choice is tcp), so a single-host job stays on
 * loopback. On a real multi-host cluster set FI_TCP_IFACE (or STRATA_OFI_DOMAIN).
 *
 * Thread safety: one mutex per transport serialises every call, so a progress thread and
 * the caller's thread may both drive the same transport.
 */
#include "transport.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include "checks.h"

/* libfabric API version this file is written against (mr_mode bits need >= 1.5). */
#define OFI_API_VERSION FI_VERSION(1, 10)
/* Bits of the 64-bit libfabric tag holding the transport tag; the sender's rank sits above. */
#define OFI_TAG_BITS 30
/* Completions read per fi_cq_read call. */
#define OFI_CQ_BATCH 16
/* Tunable: cap on one fragment's size (default: the provider's max_msg_size). */
#define OFI_ENV_MAX_MSG "STRATA_OFI_MAX_MSG_BYTES"
/* Tunable: register every buffer even if the provider does not ask for it (tests the path). */
#define OFI_ENV_FORCE_MR "STRATA_OFI_FORCE_MR"
/* Tunable: libfabric domain (interface) name; the tcp provider defaults to "lo" (see above). */
#define OFI_ENV_DOMAIN "STRATA_OFI_DOMAIN"
/* Largest endpoint name accepted in the address exchange, bytes. */
#define OFI_MAX_NAME_BYTES 1024

typedef struct ofi_frag {
  struct fi_context2 ctx; /* must be first: the completion's op_context points here */
  struct coll_treq *req;  /* the operation this fragment belongs to */
  struct fid_mr *mr;      /* registration of this fragment's buffer, or NULL */
  size_t cap_bytes;       /* bytes posted (send: sent) */
  size_t got_bytes;       /* receive: bytes the completion reported */
  int posted;             /* handed to the provider, completion still owed */
  int done;               /* completion (or error completion) seen */
} ofi_frag_t;

struct coll_treq {
  struct coll_treq *prev, *next; /* transport's list of requests not yet released */
  int is_send;
  int peer;
  uint32_t tag;
  size_t bytes;        /* bytes of the operation (receive: capacity) */
  int nfrag;           /* fragments */
  int nfrag_done;      /* fragments whose completion has been seen */
  int complete;        /* operation finished (all fragments, or a short receive ended it) */
  coll_result_t error; /* COLL_OK, or the first fragment error */
  char errmsg[256];    /* message for `error` */
  int released;        /* the caller gave the request back (cancel); free once no frag is owed */
  char *buf;           /* the caller's buffer */
  int next_post;       /* first fragment not yet handed to the provider */
  int queued;          /* waiting in the backlog of (peer, direction) */
  struct coll_treq *qnext; /* next in that backlog */
  ofi_frag_t *frags;   /* nfrag fragments (points to `one` when nfrag == 1) */
  ofi_frag_t one;
};

struct coll_transport {
  pthread_mutex_t lock;
  int rank, size;
  struct fi_info *info;
  struct fid_fabric *fabric;
  struct fid_domain *domain;
  struct fid_av *av;
  struct fid_cq *cq;
  struct fid_ep *ep;
  fi_addr_t *addrs;       /* fi_addr of each rank */
  size_t max_msg_bytes;   /* fragment size */
  size_t inject_bytes;    /* fi_tinject limit (0: never inject) */
  int need_mr;            /* register buffers */
  uint64_t next_mr_key;   /* requested keys when the provider does not pick them */
  coll_treq_t *live;      /* requests not yet released, or released with completions owed */
  coll_treq_t **q_head;   /* backlog per (peer, direction): index 2 * peer + is_send */
  coll_treq_t **q_tail;
  int nqueued;            /* requests in all backlogs */
  char desc[96];          /* "ofi:<provider>" */
};

static size_t env_size(const char *name, size_t dflt) {
  strnum_value_t v;
  return coll_env_number(name, &v, NULL, 0) == 1 ? (size_t)v.i : dflt;
}

static uint64_t make_tag(int src_rank, uint32_t tag) {
  return ((uint64_t)(uint32_t)src_rank << OFI_TAG_BITS) | (uint64_t)tag;
}

/* ---- request list ---- */

static void live_push(coll_transport_t *t, coll_treq_t *r) {
  r->prev = NULL;
  r->next = t->live;
  if (t->live) t->live->prev = r;
  t->live = r;
}

static void live_remove(coll_transport_t *t, coll_treq_t *r) {
  if (r->prev) r->prev->next = r->next;
  else t->live = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static int frags_owed(const coll_treq_t *r) {
  int n = 0;
  for (int i = 0; i < r->nfrag; i++) n += r->frags[i].posted && !r->frags[i].done;
  return n;
}

static void req_free(coll_treq_t *r) {
  for (int i = 0; i < r->nfrag; i++)
    if (r->frags[i].mr) fi_close(&r->frags[i].mr->fid);
  if (r->frags != &r->one) free(r->frags);
  free(r);
}

static void queue_remove(coll_transport_t *t, coll_treq_t *r);
static void flush_backlog(coll_transport_t *t);

/* Frees `r` if the caller released it and the provider owes it nothing more. */
static void maybe_reap(coll_transport_t *t, coll_treq_t *r) {
  if (r->released && frags_owed(r) == 0) {
    if (r->queued) queue_remove(t, r);
    live_remove(t, r);
    req_free(r);
  }
}

static coll_treq_t *req_new(coll_transport_t *t, int is_send, int peer, uint32_t tag, size_t bytes) {
  int nfrag = bytes == 0 ? 1 : (int)(1 + (bytes - 1) / t->max_msg_bytes); /* no overflow at SIZE_MAX */
  coll_treq_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->frags = &r->one;
  if (nfrag > 1) {
    r->frags = calloc((size_t)nfrag, sizeof *r->frags);
    if (!r->frags) {
      free(r);
      return NULL;
    }
  }
  r->is_send = is_send;
  r->peer = peer;
  r->tag = tag;
  r->bytes = bytes;
  r->nfrag = nfrag;
  for (int i = 0; i < nfrag; i++) {
    size_t off = (size_t)i * t->max_msg_bytes;
    r->frags[i].req = r;
    r->frags[i].cap_bytes = bytes - off < t->max_msg_bytes ? bytes - off : t->max_msg_bytes;
  }
  return r;
}

/* Cancels the posted-but-unfinished fragments of `r` (their completions arrive as
 * FI_ECANCELED errors, or never if the provider matched them meanwhile -- either way the
 * fragment is accounted for in handle_completion). */
static void cancel_frags(coll_transport_t *t, coll_treq_t *r) {
  for (int i = 0; i < r->nfrag; i++)
    if (r->frags[i].posted && !r->frags[i].done) fi_cancel(&t->ep->fid, &r->frags[i].ctx);
}

/* ---- completion queue ---- */

static void frag_finished(coll_transport_t *t, ofi_frag_t *f) {
  coll_treq_t *r = f->req;
  f->done = 1;
  r->nfrag_done++;
  if (!r->complete) {
    if (r->error != COLL_OK) {
      r->complete = 1;
      cancel_frags(t, r);
    } else if (!r->is_send && f->got_bytes < f->cap_bytes) {
      /* The message ended inside this fragment: the rest of the receive is not coming. */
      r->complete = 1;
      cancel_frags(t, r);
    } else if (r->nfrag_done == r->nfrag) {
      r->complete = 1;
    }
  }
  maybe_reap(t, r);
}

/* Reads completions until the CQ is empty. Errors of individual operations are recorded in
 * their requests; only a failure of the CQ itself is returned. */
static coll_result_t drain_cq(coll_transport_t *t, char *err, size_t errlen) {
  struct fi_cq_tagged_entry ent[OFI_CQ_BATCH];
  for (;;) {
    ssize_t n = fi_cq_read(t->cq, ent, OFI_CQ_BATCH);
    if (n == -FI_EAGAIN) {
      flush_backlog(t); /* completions freed provider slots */
      return COLL_OK;
    }
    if (n == -FI_EAVAIL) {
      struct fi_cq_err_entry e;
      memset(&e, 0, sizeof e);
      ssize_t rc = fi_cq_readerr(t->cq, &e, 0);
      if (rc == -FI_EAGAIN) continue;
      if (rc < 0) return coll_fi_fail(rc, err, errlen, "ofi: fi_cq_readerr");
      ofi_frag_t *f = e.op_context;
      if (!f) continue;
      coll_treq_t *r = f->req;
      int eno = e.err < 0 ? -e.err : e.err; /* providers differ in the sign */
      f->got_bytes = e.len;
      if (eno == FI_ECANCELED) {
        /* A fragment we cancelled ourselves: not an error of the operation. */
      } else if (r->error == COLL_OK && !r->complete) {
        if (eno == FI_ETRUNC) {
          r->error = COLL_ERR_MISMATCH;
          snprintf(r->errmsg, sizeof r->errmsg,
                   "ofi: receive from rank %d tag %u truncated: the sender sent more than the "
                   "%zu bytes posted (%zu bytes over)",
                   r->peer, r->tag, f->cap_bytes, (size_t)e.olen);
        } else {
          r->error = COLL_ERR_TRANSPORT;
          snprintf(r->errmsg, sizeof r->errmsg, "ofi: %s to/from rank %d tag %u failed: %s (%s)",
                   r->is_send ? "send" : "receive", r->peer, r->tag, fi_strerror(eno),
                   fi_cq_strerror(t->cq, e.prov_errno, e.err_data, NULL, 0));
        }
      }
      frag_finished(t, f);
      continue;
    }
    if (n < 0) return coll_fi_fail(n, err, errlen, "ofi: fi_cq_read");
    for (ssize_t i = 0; i < n; i++) {
      ofi_frag_t *f = ent[i].op_context;
      if (!f) continue;
      f->got_bytes = ent[i].len;
      frag_finished(t, f);
    }
  }
}

/* ---- posting ---- */

static coll_result_t frag_register(coll_transport_t *t, ofi_frag_t *f, void *buf, uint64_t access,
                                   char *err, size_t errlen) {
  if (!t->need_mr || f->cap_bytes == 0) return COLL_OK;
  coll_result_t res = COLL_OK;
  FICHECKGOTO(fi_mr_reg(t->domain, buf, f->cap_bytes, access, 0, t->next_mr_key++, 0, &f->mr, NULL), res,
              forget_mr, "ofi: fi_mr_reg of %zu bytes", f->cap_bytes);
  if (t->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
    FICHECKGOTO(fi_mr_bind(f->mr, &t->ep->fid, 0), res, close_mr,
                "ofi: binding a memory registration to the endpoint");
    FICHECKGOTO(fi_mr_enable(f->mr), res, close_mr, "ofi: enabling a memory registration");
  }
  return COLL_OK;
close_mr:
  fi_close(&f->mr->fid);
forget_mr:
  f->mr = NULL;
  return res;
}

/* Hands fragment i of r to the provider once. Returns 0 posted (or injected and finished),
 * 1 on -FI_EAGAIN (try again after progress), -1 on an error (recorded in r). */
static int frag_post_once(coll_transport_t *t, coll_treq_t *r, int i) {
  ofi_frag_t *f = &r->frags[i];
  char *p = r->buf ? r->buf + (size_t)i * t->max_msg_bytes : NULL;
  if (t->need_mr && !f->mr && f->cap_bytes > 0) {
    r->error = frag_register(t, f, p, r->is_send ? FI_SEND : FI_RECV, r->errmsg, sizeof r->errmsg);
    if (r->error != COLL_OK) return -1;
  }
  void *desc = f->mr ? fi_mr_desc(f->mr) : NULL;
  ssize_t rc;
  int injected = 0;
  if (r->is_send) {
    uint64_t tag = make_tag(t->rank, r->tag);
    if (f->cap_bytes <= t->inject_bytes && !f->mr) {
      rc = fi_tinject(t->ep, p, f->cap_bytes, t->addrs[r->peer], tag);
      injected = 1;
    } else {
      rc = fi_tsend(t->ep, p, f->cap_bytes, desc, t->addrs[r->peer], tag, &f->ctx);
    }
  } else {
    rc = fi_trecv(t->ep, p, f->cap_bytes, desc, FI_ADDR_UNSPEC, make_tag(r->peer, r->tag), 0,
                  &f->ctx);
  }
  /* Queue full: -FI_EAGAIN, or -FI_ENOMEM from providers whose fixed request pools ran dry
   * (shm's receive queue). Either way: retry after progress. */
  if (rc == -FI_EAGAIN || rc == -FI_ENOMEM) return 1;
  if (rc != 0) {
    r->error = coll_fi_fail(rc, r->errmsg, sizeof r->errmsg, "ofi: %s of %zu bytes %s rank %d (tag %u)",
                            r->is_send ? "fi_tsend" : "fi_trecv", f->cap_bytes, r->is_send ? "to" : "from",
                            r->peer, r->tag);
    return -1;
  }
  if (injected) {
    /* fi_tinject owes no completion: the fragment is finished now. */
    f->got_bytes = f->cap_bytes;
    frag_finished(t, f);
  } else {
    f->posted = 1;
  }
  return 0;
}

/* Posts r's remaining fragments in order. Returns 0 when none is left (or r ended), 1 if the
 * provider pushed back (-FI_EAGAIN), -1 on an error (recorded in r, which is then complete). */
static int req_post(coll_transport_t *t, coll_treq_t *r) {
  while (r->next_post < r->nfrag && !r->complete) {
    int s = frag_post_once(t, r, r->next_post);
    if (s == 1) return 1;
    if (s < 0) {
      r->complete = 1;
      cancel_frags(t, r);
      return -1;
    }
    r->next_post++;
  }
  return 0;
}

static void queue_push(coll_transport_t *t, coll_treq_t *r) {
  int q = 2 * r->peer + r->is_send;
  r->qnext = NULL;
  r->queued = 1;
  if (t->q_tail[q]) t->q_tail[q]->qnext = r;
  else t->q_head[q] = r;
  t->q_tail[q] = r;
  t->nqueued++;
}

static void queue_remove(coll_transport_t *t, coll_treq_t *r) {
  int q = 2 * r->peer + r->is_send;
  coll_treq_t *prev = NULL;
  for (coll_treq_t *x = t->q_head[q]; x; prev = x, x = x->qnext) {
    if (x != r) continue;
    if (prev) prev->qnext = r->qnext;
    else t->q_head[q] = r->qnext;
    if (t->q_tail[q] == r) t->q_tail[q] = prev;
    r->queued = 0;
    r->qnext = NULL;
    t->nqueued--;
    return;
  }
}

/* Retries the backlogs, oldest first per (peer, direction), until the provider pushes back. */
static void flush_backlog(coll_transport_t *t) {
  if (!t->nqueued) return;
  for (int q = 0; q < 2 * t->size; q++) {
    while (t->q_head[q]) {
      coll_treq_t *r = t->q_head[q];
      if (req_post(t, r) == 1) break;
      queue_remove(t, r);
      maybe_reap(t, r);
    }
  }
}

static coll_result_t post_op(coll_transport_t *t, int is_send, void *buf, size_t bytes, int peer,
                             uint32_t tag, coll_treq_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (peer < 0 || peer >= t->size)
    return coll_err(err, errlen, COLL_ERR_ARG, "ofi: %s peer rank %d is outside the communicator (size %d)",
                    is_send ? "send" : "receive", peer, t->size);
  if (tag >= COLL_TAG_LIMIT)
    return coll_err(err, errlen, COLL_ERR_ARG, "ofi: tag %u is not below the limit 2^30", tag);
  if (!buf && bytes > 0)
    return coll_err(err, errlen, COLL_ERR_ARG, "ofi: NULL buffer for a %zu-byte %s", bytes,
                    is_send ? "send" : "receive");
  coll_treq_t *r = req_new(t, is_send, peer, tag, bytes);
  if (!r)
    return coll_err(err, errlen, COLL_ERR_NOMEM, "ofi: out of memory for a %zu-byte %s request",
                    bytes, is_send ? "send" : "receive");
  r->buf = buf;
  live_push(t, r);
  int q = 2 * peer + is_send;
  if (t->q_head[q]) {
    queue_push(t, r); /* behind older operations to the same peer: keeps the order */
  } else {
    int s = req_post(t, r);
    if (s == 1) {
      queue_push(t, r);
    } else if (s < 0 && r->next_post == 0) {
      /* Nothing reached the provider: fail the call itself. */
      coll_result_t rc = coll_err(err, errlen, r->error, "%s", r->errmsg);
      r->released = 1;
      maybe_reap(t, r);
      return rc;
    }
    /* s < 0 after some fragments: test() reports the recorded error. */
  }
  *out = r;
  return COLL_OK;
}

/* ---- ops table ---- */

static coll_result_t ofi_isend(coll_transport_t *t, const void *buf, size_t bytes, int peer,
                               uint32_t tag, coll_treq_t **req, char *err, size_t errlen) {
  pthread_mutex_lock(&t->lock);
  coll_result_t rc = post_op(t, 1, (void *)buf, bytes, peer, tag, req, err, errlen);
  pthread_mutex_unlock(&t->lock);
  return rc;
}

static coll_result_t ofi_irecv(coll_transport_t *t, void *buf, size_t bytes, int peer, uint32_t tag,
                               coll_treq_t **req, char *err, size_t errlen) {
  pthread_mutex_lock(&t->lock);
  coll_result_t rc = post_op(t, 0, buf, bytes, peer, tag, req, err, errlen);
  pthread_mutex_unlock(&t->lock);
  return rc;
}

/* On success with *done = 1 the request is released. On an error return the request is
 * released as well; a later cancel() of it is not allowed (it would touch freed memory). */
static coll_result_t ofi_test(coll_transport_t *t, coll_treq_t *r, int *done, size_t *recv_bytes,
                              char *err, size_t errlen) {
  *done = 0;
  pthread_mutex_lock(&t->lock);
  coll_result_t rc = drain_cq(t, err, errlen);
  if (rc == COLL_OK && r->complete) {
    if (r->error != COLL_OK) {
      rc = coll_err(err, errlen, r->error, "%s", r->errmsg);
    } else {
      *done = 1;
      if (recv_bytes) {
        size_t got = 0;
        for (int i = 0; i < r->nfrag; i++) got += r->frags[i].done ? r->frags[i].got_bytes : 0;
        *recv_bytes = r->is_send ? r->bytes : got;
      }
    }
    r->released = 1;
    maybe_reap(t, r);
  }
  pthread_mutex_unlock(&t->lock);
  return rc;
}

static void ofi_cancel(coll_transport_t *t, coll_treq_t *r) {
  if (!r) return;
  pthread_mutex_lock(&t->lock);
  if (r->queued) queue_remove(t, r);
  r->complete = 1; /* no further fragment is posted */
  cancel_frags(t, r);
  r->released = 1;
  maybe_reap(t, r);
  pthread_mutex_unlock(&t->lock);
}

static coll_result_t ofi_progress(coll_transport_t *t, char *err, size_t errlen) {
  pthread_mutex_lock(&t->lock);
  coll_result_t rc = drain_cq(t, err, errlen);
  pthread_mutex_unlock(&t->lock);
  return rc;
}

static const char *ofi_describe(const coll_transport_t *t) { return t ? t->desc : "ofi"; }

static void ofi_destroy(coll_transport_t *t) {
  if (!t) return;
  /* Give cancelled operations a short chance to report, then close the endpoint (which
   * discards whatever is still queued) and free every request left. */
  if (t->ep) {
    for (coll_treq_t *r = t->live; r; r = r->next) cancel_frags(t, r);
    drain_cq(t, NULL, 0);
    fi_close(&t->ep->fid);
  }
  while (t->live) {
    coll_treq_t *r = t->live;
    live_remove(t, r);
    req_free(r);
  }
  if (t->cq) fi_close(&t->cq->fid);
  if (t->av) fi_close(&t->av->fid);
  if (t->domain) fi_close(&t->domain->fid);
  if (t->fabric) fi_close(&t->fabric->fid);
  if (t->info) fi_freeinfo(t->info);
  free(t->addrs);
  free(t->q_head);
  free(t->q_tail);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

static int tcp_iface_set(void) {
  const char *v = getenv("FI_TCP_IFACE");
  return v && *v;
}

/* The fi_getinfo hints: a reliable tagged endpoint with send-after-send order on provider
 * `prov` (NULL: FI_PROVIDER or libfabric's choice; `shown` names it), on the domain
 * STRATA_OFI_DOMAIN names, else "lo" for tcp unless FI_TCP_IFACE is set. NULL when out of
 * memory. */
static struct fi_info *make_hints(const char *prov, const char *shown) {
  struct fi_info *hints = fi_allocinfo();
  if (!hints) return NULL;
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = FI_TAGGED | FI_MSG;
  hints->mode = FI_CONTEXT | FI_CONTEXT2; /* every operation carries a struct fi_context2 */
  hints->tx_attr->msg_order = FI_ORDER_SAS;
  hints->rx_attr->msg_order = FI_ORDER_SAS;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_ENDPOINT | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
                                FI_MR_PROV_KEY;
  hints->domain_attr->threading = FI_THREAD_DOMAIN; /* we serialise calls with t->lock */
  hints->domain_attr->data_progress = FI_PROGRESS_MANUAL;
  hints->addr_format = FI_FORMAT_UNSPEC;
  if (prov && !(hints->fabric_attr->prov_name = strdup(prov))) goto free_hints;
  const char *dom = getenv(OFI_ENV_DOMAIN);
  const char *want = dom && *dom ? dom : strstr(shown, "tcp") && !tcp_iface_set() ? "lo" : NULL;
  if (want && !(hints->domain_attr->name = strdup(want))) goto free_hints;
  return hints;
free_hints:
  fi_freeinfo(hints); /* frees the strings too */
  return NULL;
}

/* fi_getinfo for `hints` into t->info, narrowed to the entry of the wanted domain: providers
 * layered over tcp (ofi_rxm) ignore the domain hint and list one entry per interface. With no
 * provider named and tcp as libfabric's first choice, its loopback entry is preferred too (see
 * the top of the file). */
static coll_result_t pick_info(coll_transport_t *t, const struct fi_info *hints, const char *shown,
                               char *err, size_t errlen) {
  const char *hint_dom = hints->domain_attr->name;
  int rc = fi_getinfo(OFI_API_VERSION, NULL, NULL, 0, hints, &t->info);
  if (rc || !t->info) {
    t->info = NULL;
    return coll_err(err, errlen, COLL_ERR_UNSUPPORTED,
                    "ofi: no libfabric provider offers a reliable tagged endpoint (FI_EP_RDM, "
                    "FI_TAGGED|FI_MSG, FI_ORDER_SAS) for provider '%s'%s%s: %s. `fi_info -t FI_EP_RDM` "
                    "lists the providers here; pick one with FI_PROVIDER=shm (one host) or "
                    "FI_PROVIDER=tcp, or use --transport mpi",
                    shown, hint_dom ? " domain " : "", hint_dom ? hint_dom : "", fi_strerror(-rc));
  }
  const char *prov_name = t->info->fabric_attr->prov_name;
  const char *want_dom = hint_dom;
  if (!want_dom && !strcmp(shown, "any") && !tcp_iface_set() && strstr(prov_name, "tcp")) want_dom = "lo";
  if (!want_dom) return COLL_OK;
  struct fi_info *e = t->info;
  while (e && !(e->domain_attr->name && !strcmp(e->domain_attr->name, want_dom) &&
                !strcmp(e->fabric_attr->prov_name, prov_name)))
    e = e->next;
  if (!e && hint_dom)
    return coll_err(err, errlen, COLL_ERR_UNSUPPORTED,
                    "ofi: provider '%s' offers no endpoint on domain (interface) '%s'; set "
                    "STRATA_OFI_DOMAIN or FI_TCP_IFACE to one `fi_info -t FI_EP_RDM` lists",
                    prov_name, want_dom);
  if (!e || e == t->info) return COLL_OK;
  struct fi_info *d = fi_dupinfo(e);
  if (!d)
    return coll_err(err, errlen, COLL_ERR_NOMEM, "ofi: out of memory copying the fi_info of domain '%s'", want_dom);
  fi_freeinfo(t->info);
  t->info = d;
  return COLL_OK;
}

/* Fragment size, inject limit and registration need of t->info's provider, with the
 * STRATA_OFI_MAX_MSG_BYTES and STRATA_OFI_FORCE_MR overrides. */
static void set_limits(coll_transport_t *t) {
  const struct fi_info *info = t->info;
  snprintf(t->desc, sizeof t->desc, "ofi:%s", info->fabric_attr->prov_name);
  t->need_mr = (info->domain_attr->mr_mode & FI_MR_LOCAL) || (info->mode & FI_LOCAL_MR);
  strnum_value_t force;
  if (coll_env_number(OFI_ENV_FORCE_MR, &force, NULL, 0) == 1 && force.i == 1) t->need_mr = 1;
  size_t prov_max = info->ep_attr->max_msg_size;
  t->max_msg_bytes = env_size(OFI_ENV_MAX_MSG, prov_max ? prov_max : SIZE_MAX);
  if (prov_max && t->max_msg_bytes > prov_max) t->max_msg_bytes = prov_max;
  t->inject_bytes = info->tx_attr->inject_size;
  if (t->inject_bytes > t->max_msg_bytes) t->inject_bytes = t->max_msg_bytes;
  t->next_mr_key = 1;
}

/* Opens fabric, domain, CQ, AV and endpoint of t->info and enables the endpoint; on failure
 * ofi_destroy closes whatever was opened. */
static coll_result_t open_endpoint(coll_transport_t *t, char *err, size_t errlen) {
  struct fi_info *info = t->info;
  FICHECK(fi_fabric(info->fabric_attr, &t->fabric, NULL), "ofi: fi_fabric(%s)", info->fabric_attr->prov_name);
  FICHECK(fi_domain(t->fabric, info, &t->domain, NULL), "ofi: fi_domain(%s)", info->domain_attr->name);
  struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_TAGGED, .wait_obj = FI_WAIT_NONE};
  FICHECK(fi_cq_open(t->domain, &cq_attr, &t->cq, NULL), "ofi: fi_cq_open");
  struct fi_av_attr av_attr = {.type = FI_AV_TABLE, .count = (size_t)t->size};
  FICHECK(fi_av_open(t->domain, &av_attr, &t->av, NULL), "ofi: fi_av_open(FI_AV_TABLE, %d entries)", t->size);
  FICHECK(fi_endpoint(t->domain, info, &t->ep, NULL), "ofi: fi_endpoint");
  FICHECK(fi_ep_bind(t->ep, &t->cq->fid, FI_TRANSMIT | FI_RECV), "ofi: fi_ep_bind of the completion queue");
  FICHECK(fi_ep_bind(t->ep, &t->av->fid, 0), "ofi: fi_ep_bind of the address vector");
  FICHECK(fi_enable(t->ep), "ofi: fi_enable");
  return COLL_OK;
}

/* Opens this rank's endpoint (no communication) and writes its name, *namelen bytes (on entry:
 * the room at `name`), for the address exchange. */
static coll_result_t open_local(coll_transport_t *t, const coll_config_t *cfg, char *name,
                                size_t *namelen, char *err, size_t errlen) {
  const char *prov = cfg && cfg->ofi_provider && *cfg->ofi_provider ? cfg->ofi_provider : NULL;
  const char *env_prov = getenv("FI_PROVIDER");
  const char *shown = prov ? prov : (env_prov && *env_prov ? env_prov : "any");
  struct fi_info *hints = make_hints(prov, shown);
  if (!hints) return coll_err(err, errlen, COLL_ERR_NOMEM, "ofi: out of memory for the fi_getinfo hints");
  coll_result_t res = pick_info(t, hints, shown, err, errlen);
  fi_freeinfo(hints);
  if (res != COLL_OK) return res;
  set_limits(t);
  res = open_endpoint(t, err, errlen);
  if (res != COLL_OK) return res;
  size_t room = *namelen;
  FICHECK(fi_getname(&t->ep->fid, name, namelen), "ofi: fi_getname (the name needs %zu bytes, %zu fit)",
          *namelen, room);
  return COLL_OK;
}

/* Lets every rank know whether all of them succeeded at a step, so a rank that failed does not
 * leave the others blocked in the next collective. COLL_OK when all did; else this rank's own
 * result `mine` with its message `mine_msg`, or `others_rc` with `others_msg` on the ranks that
 * succeeded. */
static coll_result_t agree(MPI_Comm comm, coll_result_t mine, const char *mine_msg, coll_result_t others_rc,
                           const char *others_msg, char *err, size_t errlen) {
  int ok = mine == COLL_OK, all_ok = 0;
  MPICHECK(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm), "ofi: MPI_Allreduce of the set-up's outcome");
  if (all_ok) return COLL_OK;
  if (!ok) return coll_err(err, errlen, mine, "%s", mine_msg);
  return coll_err(err, errlen, others_rc, "%s", others_msg);
}

/* Every rank's endpoint name to every rank (MPI_Allgather of names padded to the longest),
 * inserted into the address vector in rank order. */
static coll_result_t exchange_addresses(coll_transport_t *t, MPI_Comm comm, const char *name, size_t namelen,
                                        char *err, size_t errlen) {
  int len = (int)namelen, maxlen = 0;
  MPICHECK(MPI_Allreduce(&len, &maxlen, 1, MPI_INT, MPI_MAX, comm), "ofi: MPI_Allreduce of the name lengths");
  char *names = calloc((size_t)t->size, (size_t)maxlen);
  char *padded = calloc(1, (size_t)maxlen);
  t->addrs = calloc((size_t)t->size, sizeof *t->addrs);
  const char *oom = "ofi: out of memory for the address exchange (on this or another rank)";
  coll_result_t res = agree(comm, names && padded && t->addrs ? COLL_OK : COLL_ERR_NOMEM, oom,
                            COLL_ERR_NOMEM, oom, err, errlen);
  if (res != COLL_OK) goto free_names;
  memcpy(padded, name, namelen);
  MPICHECKGOTO(MPI_Allgather(padded, maxlen, MPI_BYTE, names, maxlen, MPI_BYTE, comm), res, free_names,
               "ofi: MPI_Allgather of the endpoint names");
  int n = fi_av_insert(t->av, names, (size_t)t->size, t->addrs, 0, NULL);
  char local_err[256] = "";
  if (n != t->size)
    snprintf(local_err, sizeof local_err, "ofi: fi_av_insert accepted %d of %d addresses: %s", n,
             t->size, n < 0 ? fi_strerror(-n) : "a peer's address was rejected");
  res = agree(comm, n == t->size ? COLL_OK : COLL_ERR_TRANSPORT, local_err, COLL_ERR_TRANSPORT,
              "ofi: another rank failed to insert the peers' addresses", err, errlen);
free_names:
  free(names);
  free(padded);
  return res;
}

static coll_result_t ofi_create(MPI_Comm comm, const coll_config_t *cfg, coll_transport_t **out,
                                char *err, size_t errlen) {
  *out = NULL;
  coll_transport_t *t = calloc(1, sizeof *t);
  if (!t) return coll_err(err, errlen, COLL_ERR_NOMEM, "ofi: out of memory for the transport's state");
  pthread_mutex_init(&t->lock, NULL);
  snprintf(t->desc, sizeof t->desc, "ofi");
  coll_result_t res = COLL_OK;
  MPICHECKGOTO(MPI_Comm_rank(comm, &t->rank), res, destroy, "ofi: MPI_Comm_rank");
  MPICHECKGOTO(MPI_Comm_size(comm, &t->size), res, destroy, "ofi: MPI_Comm_size");
  t->q_head = calloc((size_t)(2 * t->size), sizeof *t->q_head);
  t->q_tail = calloc((size_t)(2 * t->size), sizeof *t->q_tail);
  if (!t->q_head || !t->q_tail) { /* before any collective call: every rank returns here or not */
    res = coll_err(err, errlen, COLL_ERR_NOMEM, "ofi: out of memory for the send and receive backlogs "
                   "of %d peers", t->size);
    goto destroy;
  }
  char name[OFI_MAX_NAME_BYTES], local_err[512] = "";
  size_t namelen = sizeof name;
  res = agree(comm, open_local(t, cfg, name, &namelen, local_err, sizeof local_err), local_err,
              COLL_ERR_TRANSPORT, "ofi: another rank of the communicator failed to open its libfabric "
              "endpoint (see that rank's error)", err, errlen);
  if (res == COLL_OK) res = exchange_addresses(t, comm, name, namelen, err, errlen);
  if (res == COLL_OK) {
    *out = t;
    return COLL_OK;
  }
destroy:
  ofi_destroy(t);
  return res;
}

const coll_transport_ops_t coll_transport_ofi_ops = {
    .name = "ofi",
    .create = ofi_create,
    .destroy = ofi_destroy,
    .describe = ofi_describe,
    .isend = ofi_isend,
    .irecv = ofi_irecv,
    .test = ofi_test,
    .cancel = ofi_cancel,
    .progress = ofi_progress,
};
