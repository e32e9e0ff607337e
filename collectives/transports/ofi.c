/* transport_ofi.c -- the libfabric transport of the collectives library.
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

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
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

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

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
      if (rc < 0) {
        if (rc == -FI_EAGAIN) continue;
        set_err(err, errlen, "ofi: fi_cq_readerr failed: %s", fi_strerror((int)-rc));
        return COLL_ERR_TRANSPORT;
      }
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
    if (n < 0) {
      set_err(err, errlen, "ofi: fi_cq_read failed: %s", fi_strerror((int)-n));
      return COLL_ERR_TRANSPORT;
    }
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
  int rc = fi_mr_reg(t->domain, buf, f->cap_bytes, access, 0, t->next_mr_key++, 0, &f->mr, NULL);
  if (rc) {
    set_err(err, errlen, "ofi: fi_mr_reg of %zu bytes failed: %s", f->cap_bytes, fi_strerror(-rc));
    f->mr = NULL;
    return COLL_ERR_TRANSPORT;
  }
  if (t->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
    rc = fi_mr_bind(f->mr, &t->ep->fid, 0);
    if (!rc) rc = fi_mr_enable(f->mr);
    if (rc) {
      set_err(err, errlen, "ofi: binding a memory registration to the endpoint failed: %s",
              fi_strerror(-rc));
      fi_close(&f->mr->fid);
      f->mr = NULL;
      return COLL_ERR_TRANSPORT;
    }
  }
  return COLL_OK;
}

/* Hands fragment i of r to the provider once. Returns 0 posted (or injected and finished),
 * 1 on -FI_EAGAIN (try again after progress), -1 on an error (recorded in r). */
static int frag_post_once(coll_transport_t *t, coll_treq_t *r, int i) {
  ofi_frag_t *f = &r->frags[i];
  char *p = r->buf ? r->buf + (size_t)i * t->max_msg_bytes : NULL;
  if (t->need_mr && !f->mr && f->cap_bytes > 0) {
    char e[200];
    if (frag_register(t, f, p, r->is_send ? FI_SEND : FI_RECV, e, sizeof e) != COLL_OK) {
      r->error = COLL_ERR_TRANSPORT;
      snprintf(r->errmsg, sizeof r->errmsg, "%s", e);
      return -1;
    }
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
    r->error = COLL_ERR_TRANSPORT;
    snprintf(r->errmsg, sizeof r->errmsg, "ofi: %s of %zu bytes %s rank %d (tag %u) failed: %s",
             r->is_send ? "fi_tsend" : "fi_trecv", f->cap_bytes, r->is_send ? "to" : "from",
             r->peer, r->tag, fi_strerror((int)-rc));
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
  if (peer < 0 || peer >= t->size) {
    set_err(err, errlen, "ofi: %s peer rank %d is outside the communicator (size %d)",
            is_send ? "send" : "receive", peer, t->size);
    return COLL_ERR_ARG;
  }
  if (tag >= COLL_TAG_LIMIT) {
    set_err(err, errlen, "ofi: tag %u is not below the limit 2^30", tag);
    return COLL_ERR_ARG;
  }
  if (!buf && bytes > 0) {
    set_err(err, errlen, "ofi: NULL buffer for a %zu-byte %s", bytes, is_send ? "send" : "receive");
    return COLL_ERR_ARG;
  }
  coll_treq_t *r = req_new(t, is_send, peer, tag, bytes);
  if (!r) {
    set_err(err, errlen, "ofi: out of memory for a request");
    return COLL_ERR_NOMEM;
  }
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
      set_err(err, errlen, "%s", r->errmsg);
      coll_result_t rc = r->error;
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
      rc = r->error;
      set_err(err, errlen, "%s", r->errmsg);
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

/* Opens fabric, domain, CQ, AV and endpoint for this rank (no communication). */
static coll_result_t open_local(coll_transport_t *t, const coll_config_t *cfg, char *err, size_t errlen) {
  coll_result_t cr = COLL_ERR_TRANSPORT;
  int rc;
  struct fi_info *hints = fi_allocinfo();
  if (!hints) {
    set_err(err, errlen, "ofi: fi_allocinfo failed (out of memory)");
    return COLL_ERR_NOMEM;
  }
  const char *prov = cfg && cfg->ofi_provider && *cfg->ofi_provider ? cfg->ofi_provider : NULL;
  const char *env_prov = getenv("FI_PROVIDER");
  const char *shown = prov ? prov : (env_prov && *env_prov ? env_prov : "any");
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
  if (prov) hints->fabric_attr->prov_name = strdup(prov);
  const char *dom = getenv(OFI_ENV_DOMAIN);
  const char *tcp_iface = getenv("FI_TCP_IFACE");
  if (dom && *dom) {
    hints->domain_attr->name = strdup(dom);
  } else if (strstr(shown, "tcp") && !(tcp_iface && *tcp_iface)) {
    hints->domain_attr->name = strdup("lo");
  }
  rc = fi_getinfo(OFI_API_VERSION, NULL, NULL, 0, hints, &t->info);
  if (rc || !t->info) {
    set_err(err, errlen,
            "ofi: no libfabric provider offers a reliable tagged endpoint (FI_EP_RDM, "
            "FI_TAGGED|FI_MSG, FI_ORDER_SAS) for provider '%s'%s%s: %s. `fi_info -t FI_EP_RDM` "
            "lists the providers here; pick one with FI_PROVIDER=shm (one host) or "
            "FI_PROVIDER=tcp, or use --transport mpi",
            shown, hints->domain_attr->name ? " domain " : "",
            hints->domain_attr->name ? hints->domain_attr->name : "", fi_strerror(-rc));
    t->info = NULL;
    cr = COLL_ERR_UNSUPPORTED;
    goto free_hints;
  }
  /* Providers layered over tcp (ofi_rxm) ignore the domain hint and list one entry per
   * interface: pick the wanted domain from the list. With no provider named and tcp as
   * libfabric's first choice, prefer its loopback entry too (see the top of the file). */
  const char *want_dom = hints->domain_attr->name;
  int strict = want_dom != NULL;
  if (!want_dom && !strcmp(shown, "any") && !(tcp_iface && *tcp_iface) &&
      strstr(t->info->fabric_attr->prov_name, "tcp"))
    want_dom = "lo";
  if (want_dom) {
    struct fi_info *e = t->info;
    for (; e; e = e->next)
      if (e->domain_attr->name && !strcmp(e->domain_attr->name, want_dom) &&
          !strcmp(e->fabric_attr->prov_name, t->info->fabric_attr->prov_name))
        break;
    if (!e && strict) {
      set_err(err, errlen,
              "ofi: provider '%s' offers no endpoint on domain (interface) '%s'; set "
              "STRATA_OFI_DOMAIN or FI_TCP_IFACE to one `fi_info -t FI_EP_RDM` lists",
              t->info->fabric_attr->prov_name, want_dom);
      cr = COLL_ERR_UNSUPPORTED;
      goto free_hints;
    }
    if (e && e != t->info) {
      struct fi_info *d = fi_dupinfo(e);
      if (!d) {
        set_err(err, errlen, "ofi: fi_dupinfo failed (out of memory)");
        cr = COLL_ERR_NOMEM;
        goto free_hints;
      }
      fi_freeinfo(t->info);
      t->info = d;
    }
  }
  struct fi_info *info = t->info;
  snprintf(t->desc, sizeof t->desc, "ofi:%s", info->fabric_attr->prov_name);
  t->need_mr = (info->domain_attr->mr_mode & FI_MR_LOCAL) || (info->mode & FI_LOCAL_MR);
  strnum_value_t force;
  if (coll_env_number(OFI_ENV_FORCE_MR, &force, NULL, 0) == 1 && force.i == 1) t->need_mr = 1;
  t->max_msg_bytes = info->ep_attr->max_msg_size ? info->ep_attr->max_msg_size : SIZE_MAX;
  t->max_msg_bytes = env_size(OFI_ENV_MAX_MSG, t->max_msg_bytes);
  if (t->max_msg_bytes > info->ep_attr->max_msg_size && info->ep_attr->max_msg_size)
    t->max_msg_bytes = info->ep_attr->max_msg_size;
  t->inject_bytes = info->tx_attr->inject_size;
  if (t->inject_bytes > t->max_msg_bytes) t->inject_bytes = t->max_msg_bytes;
  t->next_mr_key = 1;

  rc = fi_fabric(info->fabric_attr, &t->fabric, NULL);
  if (rc) {
    set_err(err, errlen, "ofi: fi_fabric(%s) failed: %s", info->fabric_attr->prov_name, fi_strerror(-rc));
    goto free_hints;
  }
  rc = fi_domain(t->fabric, info, &t->domain, NULL);
  if (rc) {
    set_err(err, errlen, "ofi: fi_domain(%s) failed: %s", info->domain_attr->name, fi_strerror(-rc));
    goto free_hints;
  }
  struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_TAGGED, .wait_obj = FI_WAIT_NONE};
  rc = fi_cq_open(t->domain, &cq_attr, &t->cq, NULL);
  if (rc) {
    set_err(err, errlen, "ofi: fi_cq_open failed: %s", fi_strerror(-rc));
    goto free_hints;
  }
  struct fi_av_attr av_attr = {.type = FI_AV_TABLE, .count = (size_t)t->size};
  rc = fi_av_open(t->domain, &av_attr, &t->av, NULL);
  if (rc) {
    set_err(err, errlen, "ofi: fi_av_open(FI_AV_TABLE, %d entries) failed: %s", t->size, fi_strerror(-rc));
    goto free_hints;
  }
  rc = fi_endpoint(t->domain, info, &t->ep, NULL);
  if (rc) {
    set_err(err, errlen, "ofi: fi_endpoint failed: %s", fi_strerror(-rc));
    goto free_hints;
  }
  rc = fi_ep_bind(t->ep, &t->cq->fid, FI_TRANSMIT | FI_RECV);
  if (!rc) rc = fi_ep_bind(t->ep, &t->av->fid, 0);
  if (rc) {
    set_err(err, errlen, "ofi: fi_ep_bind failed: %s", fi_strerror(-rc));
    goto free_hints;
  }
  rc = fi_enable(t->ep);
  if (rc) {
    set_err(err, errlen, "ofi: fi_enable failed: %s", fi_strerror(-rc));
    goto free_hints;
  }
  cr = COLL_OK;
free_hints:
  fi_freeinfo(hints);
  return cr;
}

static coll_result_t ofi_create(MPI_Comm comm, const coll_config_t *cfg, coll_transport_t **out,
                                char *err, size_t errlen) {
  *out = NULL;
  coll_transport_t *t = calloc(1, sizeof *t);
  if (!t) {
    set_err(err, errlen, "ofi: out of memory");
    return COLL_ERR_NOMEM;
  }
  pthread_mutex_init(&t->lock, NULL);
  MPI_Comm_rank(comm, &t->rank);
  MPI_Comm_size(comm, &t->size);
  t->q_head = calloc((size_t)(2 * t->size), sizeof *t->q_head);
  t->q_tail = calloc((size_t)(2 * t->size), sizeof *t->q_tail);
  if (!t->q_head || !t->q_tail) {
    free(t->q_head);
    free(t->q_tail);
    pthread_mutex_destroy(&t->lock);
    free(t);
    set_err(err, errlen, "ofi: out of memory");
    return COLL_ERR_NOMEM; /* before any collective call: every rank returns here or not */
  }
  snprintf(t->desc, sizeof t->desc, "ofi");

  char local_err[512] = "";
  coll_result_t cr = open_local(t, cfg, local_err, sizeof local_err);

  /* Name of this rank's endpoint. */
  char name[OFI_MAX_NAME_BYTES];
  size_t namelen = sizeof name;
  if (cr == COLL_OK) {
    int rc = fi_getname(&t->ep->fid, name, &namelen);
    if (rc) {
      snprintf(local_err, sizeof local_err, "ofi: fi_getname failed: %s (name needs %zu bytes)",
               fi_strerror(-rc), namelen);
      cr = COLL_ERR_TRANSPORT;
    }
  }
  /* Agree that every rank got this far before exchanging addresses: a rank whose provider
   * failed must not leave the others blocked in the allgather. */
  int mine[2] = {cr == COLL_OK ? 1 : 0, cr == COLL_OK ? (int)namelen : 0}, all[2] = {0, 0};
  int minok = 0, maxlen = 0;
  MPI_Allreduce(&mine[0], &all[0], 1, MPI_INT, MPI_MIN, comm);
  MPI_Allreduce(&mine[1], &all[1], 1, MPI_INT, MPI_MAX, comm);
  minok = all[0];
  maxlen = all[1];
  if (!minok) {
    if (cr != COLL_OK) set_err(err, errlen, "%s", local_err);
    else {
      set_err(err, errlen, "ofi: another rank of the communicator failed to open its libfabric "
                           "endpoint (see that rank's error)");
      cr = COLL_ERR_TRANSPORT;
    }
    ofi_destroy(t);
    return cr;
  }
  char *names = calloc((size_t)t->size, (size_t)maxlen);
  t->addrs = calloc((size_t)t->size, sizeof *t->addrs);
  char *padded = calloc(1, (size_t)maxlen);
  int ok = names && t->addrs && padded;
  int allok = 0;
  MPI_Allreduce(&ok, &allok, 1, MPI_INT, MPI_MIN, comm);
  if (!allok) {
    set_err(err, errlen, "ofi: out of memory for the address exchange (on this or another rank)");
    free(names);
    free(padded);
    ofi_destroy(t);
    return COLL_ERR_NOMEM;
  }
  memcpy(padded, name, namelen);
  MPI_Allgather(padded, maxlen, MPI_BYTE, names, maxlen, MPI_BYTE, comm);
  free(padded);
  int n = fi_av_insert(t->av, names, (size_t)t->size, t->addrs, 0, NULL);
  free(names);
  ok = n == t->size;
  if (!ok)
    snprintf(local_err, sizeof local_err, "ofi: fi_av_insert accepted %d of %d addresses: %s", n,
             t->size, n < 0 ? fi_strerror(-n) : "a peer's address was rejected");
  MPI_Allreduce(&ok, &allok, 1, MPI_INT, MPI_MIN, comm);
  if (!allok) {
    if (!ok) set_err(err, errlen, "%s", local_err);
    else set_err(err, errlen, "ofi: another rank failed to insert the peers' addresses");
    ofi_destroy(t);
    return COLL_ERR_TRANSPORT;
  }
  *out = t;
  return COLL_OK;
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
