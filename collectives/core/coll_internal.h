/* coll_internal.h -- private to collectives/: the communicator object, the request engine
 * (schedules of actions), the reduction kernels and the algorithm builders.
 *
 * Every operation (collective or point to point) is compiled into a *schedule*: a straight
 * list of actions (post a send, post a receive, wait for a handle, reduce, copy, scale,
 * convert) executed in order by request.c. Posting is non-blocking; only WAIT can stall, and
 * then the engine returns so the same schedule serves blocking calls (start + wait loop),
 * non-blocking ones (progressed by coll_test / coll_wait or by the progress thread), and
 * several operations in flight on one communicator. Pipelining is expressed by order: e.g.
 * the ring posts the receive of chunk k+W before it waits for and reduces chunk k.
 */
#ifndef STRATA_COLL_INTERNAL_H
#define STRATA_COLL_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "strata/coll.h"
#include "transport.h"

/* Tag layout (< COLL_TAG_LIMIT = 2^30): user point-to-point tags are < 2^24; collectives set
 * bit 29 and carry a 13-bit operation sequence number and a 16-bit message index. */
#define COLL_TAG_COLL_BIT (1u << 29)
#define COLL_TAG_SEQ_BITS 13
#define COLL_TAG_SUB_BITS 16
#define COLL_USER_TAG_LIMIT (1 << 24)
/* Message index reserved for the cfg.check descriptor exchange. */
#define COLL_SUB_CHECK 0xFFF0u

#define COLL_ERRLEN 512
#define COLL_SCRATCH_CACHE 4 /* scratch buffers a communicator keeps for reuse */

typedef enum {
  ACT_SEND = 0,  /* post send of `count` bytes from a to peer (tag) -> handle */
  ACT_RECV,      /* post receive of `count` bytes into dst from peer (tag) -> handle */
  ACT_WAIT,      /* wait until `handle` completes (receives: size must equal posted size) */
  ACT_REDUCE,    /* dst[i] = a[i] op b[i], count elements of dtype (dst may alias a or b) */
  ACT_COPY,      /* memcpy(dst, a, count bytes) (skipped when dst == a) */
  ACT_SCALE,     /* dst[i] /= divisor (AVG), count elements of dtype */
  ACT_TO_F32,    /* float dst[i] = 16-bit a[i] (dtype = source type) */
  ACT_FROM_F32,  /* 16-bit dst[i] = round_nearest_even(float a[i]) (dtype = dest type) */
  ACT_CHECK,     /* compare the exchanged cfg.check descriptors (a: size * desc) */
  ACT_MPI_ALLREDUCE /* MPI_Allreduce(a -> dst) on the bootstrap comm (algo mpi baseline) */
} coll_act_kind_t;

typedef struct {
  uint8_t kind;     /* coll_act_kind_t */
  uint8_t dtype;    /* element type for REDUCE / SCALE / conversions */
  uint8_t op;       /* coll_op_t for REDUCE */
  int32_t handle;   /* SEND/RECV: handle it creates; WAIT: handle it waits for (-1: no-op) */
  int32_t peer;     /* SEND/RECV: peer rank in the communicator */
  uint32_t tag;     /* SEND/RECV: full transport tag */
  void *dst;        /* destination buffer */
  const void *a;    /* first source */
  const void *b;    /* second source */
  size_t count;     /* bytes (SEND/RECV/COPY) or elements (REDUCE/SCALE/convert) */
} coll_action_t;

typedef struct {
  coll_treq_t *treq; /* transport request while posted */
  uint8_t state;     /* 0 = not posted, 1 = posted, 2 = complete */
  uint8_t is_recv;   /* 1 for receives */
  int32_t peer;      /* peer rank */
  size_t bytes;      /* posted size */
} coll_handle_t;

/* Descriptor exchanged by cfg.check before a collective. */
typedef struct {
  uint32_t magic;   /* COLL_CHECK_MAGIC */
  uint32_t opkind;  /* coll_opkind_t */
  uint64_t count;   /* element count argument */
  int32_t dtype;    /* coll_dtype_t */
  int32_t op;       /* coll_op_t or -1 */
  int32_t root;     /* root or -1 */
  int32_t algo;     /* resolved algorithm or -1 */
} coll_desc_t;
#define COLL_CHECK_MAGIC 0x5354434bu /* "STCK" */

typedef enum {
  OPK_ALLREDUCE = 1, OPK_REDUCE_SCATTER, OPK_ALLGATHER, OPK_BROADCAST, OPK_BARRIER,
  OPK_SEND, OPK_RECV, OPK_SENDRECV
} coll_opkind_t;

struct coll_request {
  coll_comm_t *comm;
  char opname[64];          /* "allreduce(ring)", for error messages */
  coll_action_t *acts;      /* the schedule */
  size_t nacts, acts_cap;
  coll_handle_t *hs;        /* handles created by SEND / RECV actions */
  int32_t nh, hs_cap;
  size_t pc;                /* next action to execute */
  int32_t final_scan;       /* after the last action: handles below this index are complete */
  int done;                 /* 1 once finished (successfully or not) */
  coll_result_t rc;         /* result once done; build errors before start */
  uint32_t seq;             /* operation sequence number (collectives) */
  void *scratch;            /* scratch memory owned by this request (from the comm cache) */
  size_t scratch_bytes;
  double idle_s;            /* polled time without progress (timeout clock) */
  double last_poll_s;       /* time of the previous poll */
  int nonblocking;          /* 1: user owns it (coll_test / coll_wait) */
  int stream_stores;        /* 1: reductions use streaming stores (cfg.stream_bytes) */
  int active;               /* 1 while on comm's active list */
  int untimed;              /* 1: exempt from cfg.timeout_s (coll_wait_for) */
  double idle_wait_start_s; /* when coll_wait_for first waited on it (poll back-off) */
  coll_desc_t desc;         /* this rank's descriptor (cfg.check) */
  struct coll_request *prev, *next; /* comm's active list */
};

#define COLL_HOST_LEN 64

struct coll_comm {
  MPI_Comm mpi;             /* duplicated bootstrap communicator (MPI_ERRORS_RETURN) */
  int rank, size;
  int *world_ranks;         /* [size] rank in MPI_COMM_WORLD of each member */
  char (*hosts)[COLL_HOST_LEN]; /* [size] each member's host (MPI_Get_processor_name, cut), for
                                   messages naming an unreachable peer's node */
  coll_config_t cfg;
  const coll_transport_ops_t *tops;
  coll_transport_t *t;
  uint32_t seq;             /* next collective sequence number */
  uint64_t sent_bytes, recv_bytes; /* traffic through the transport */
  double busy_s;            /* seconds inside blocking calls (coll_busy) */
  uint64_t busy_calls;
  char last_error[COLL_ERRLEN];
  pthread_mutex_t lock;     /* serialises the engine and the transport */
  coll_request_t *active_head, *active_tail; /* requests in progress, start order */
  void *cache_buf[COLL_SCRATCH_CACHE];       /* reusable scratch buffers */
  size_t cache_bytes[COLL_SCRATCH_CACHE];
  int yield_idle;           /* 1: sched_yield() when a poll makes no progress */
  pthread_t thread;         /* progress thread (cfg.progress_thread) */
  pthread_cond_t cv;        /* wakes the progress thread when work arrives */
  int thread_running, thread_stop;
  int progress_sleep_us;    /* progress thread's sleep between idle polls (microseconds) */
  int chunk_explicit;       /* 1: the caller set cfg.chunk_bytes (the table's chunk is not used) */
  int stream_explicit;      /* 1: the caller set cfg.stream_bytes (the table's stream is not used) */
  coll_tune_rule_t *tune_all; /* every rule of the decision table (tune.c), for splits */
  coll_tune_rule_t *tune;   /* the rules for this communicator's size and transport */
  int ntune_all, ntune;
  char tune_path[512];      /* the table's path ("" when turned off) */
  char tune_desc[COLL_ERRLEN]; /* coll_tune_describe */
};

/* ---- comm.c ---- */
/* Formats the communicator's last error (also returned for convenience). */
coll_result_t coll_set_error(coll_comm_t *comm, coll_result_t rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 64-byte aligned buffer of at least `bytes` (its real size in *cap), from the cache or from
 * coll_mem_alloc_scratch; NULL on failure. */
void *coll_scratch_get(coll_comm_t *comm, size_t bytes, size_t *cap);
void coll_scratch_put(coll_comm_t *comm, void *buf, size_t bytes);
double coll_now_s(void);

/* ---- mem.c ---- */
/* A scratch buffer of at least `bytes`, its real size in *cap: from COLL_SCRATCH_HUGE_MIN up
 * whole 2 MiB-aligned huge pages, as coll_mem_alloc gives, else 64-byte aligned and exact (also
 * when STRATA_COLL_HUGEPAGES or STRATA_COLL_SCRATCH_HUGEPAGES is 0). NULL on failure; release
 * with free(). */
#define COLL_SCRATCH_HUGE_MIN ((size_t)256 << 10)
void *coll_mem_alloc_scratch(size_t bytes, size_t *cap);

/* ---- tune_file.c: the decision table's file format ---- */
/* Parses a table of len bytes (text, NUL-terminated, is modified): JSON of format version 2,
 * or the text of version 1 (each of its rules added for both placements). 0 with *rules
 * (malloc'd, or NULL) and *n, every key's rules in increasing from_bytes; -1 with a predicate
 * about the file in err ("is malformed: rules[3] has no \"algo\""). */
int coll_tune_parse(char *text, size_t len, coll_tune_rule_t **rules, int *n, char *err, size_t errlen);
/* Writes rules[0..n) to f as a version 2 table: 0, or -1 on a write error. */
int coll_tune_write(FILE *f, const coll_tune_rule_t *rules, int n);
/* 1 when a and b have the same key (ranks, transport, dtype, placement). */
int coll_tune_same_key(const coll_tune_rule_t *a, const coll_tune_rule_t *b);
/* Formats a message into err and returns -1. */
int coll_tune_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- tune.c: the decision table ---- */
/* Collective over c: rank 0 reads the table at coll_tune_path and broadcasts it; every rank
 * keeps the rules for c's size and transport. A missing, malformed or mismatched table leaves
 * the built-in rules (rank 0 reports the last two in one sentence); errors only for MPI
 * failures and memory. */
coll_result_t coll_tune_load(coll_comm_t *c, char *err, size_t errlen);
/* A split communicator takes its parent's table (not collective). */
coll_result_t coll_tune_inherit(coll_comm_t *c, const coll_comm_t *parent, char *err, size_t errlen);
void coll_tune_free(coll_comm_t *c);
/* The rule for an all-reduce of `bytes` of dtype on c, out of place (in_place 0) or in place,
 * or NULL (the built-in rules apply). */
const coll_tune_rule_t *coll_tune_lookup(const coll_comm_t *c, size_t bytes, coll_dtype_t dtype, int in_place);

/* ---- request.c: building schedules ---- */
/* New request for `comm` with a name for messages; collectives get the next sequence number.
 * scratch_bytes of scratch memory are reserved (req->scratch). NULL on allocation failure
 * (the comm's last error is set). */
coll_request_t *coll_req_new(coll_comm_t *comm, const char *opname, int collective,
                             size_t scratch_bytes);
void coll_req_free(coll_request_t *req);
uint32_t coll_coll_tag(const coll_request_t *req, uint32_t sub);
/* Schedule builders. Failed allocations are recorded in req->rc and reported at start. */
int32_t coll_s_send(coll_request_t *req, const void *buf, size_t bytes, int peer, uint32_t tag);
int32_t coll_s_recv(coll_request_t *req, void *buf, size_t bytes, int peer, uint32_t tag);
/* Collective variants: tag from the sub-index; zero-byte messages are skipped (-1). */
int32_t coll_s_csend(coll_request_t *req, const void *buf, size_t bytes, int peer, uint32_t sub);
int32_t coll_s_crecv(coll_request_t *req, void *buf, size_t bytes, int peer, uint32_t sub);
void coll_s_wait(coll_request_t *req, int32_t handle);
void coll_s_reduce(coll_request_t *req, void *dst, const void *a, const void *b, size_t count,
                   coll_dtype_t dtype, coll_op_t op);
void coll_s_copy(coll_request_t *req, void *dst, const void *src, size_t bytes);
void coll_s_scale(coll_request_t *req, void *buf, size_t count, coll_dtype_t dtype);
void coll_s_to_f32(coll_request_t *req, float *dst, const void *src, size_t count,
                   coll_dtype_t dtype16);
void coll_s_from_f32(coll_request_t *req, void *dst, const float *src, size_t count,
                     coll_dtype_t dtype16);
void coll_s_mpi_allreduce(coll_request_t *req, const void *send, void *recv, size_t count,
                          coll_dtype_t dtype, coll_op_t op);
/* cfg.check: schedules the descriptor exchange (a ring all-gather of coll_desc_t through the
 * transport) and the comparison. Needs coll_check_scratch_bytes() of scratch at `area`. */
size_t coll_check_scratch_bytes(const coll_comm_t *comm);
void coll_s_check(coll_request_t *req, void *area, coll_opkind_t kind, size_t count,
                  int dtype, int op, int root, int algo);

/* ---- request.c: running schedules ---- */
/* Registers req on the comm's active list and makes a first progress pass. On error the
 * request is finished with req->rc set. Caller holds no lock. */
coll_result_t coll_req_start(coll_request_t *req);
/* Blocking completion: progress until done or timeout; frees req; returns its result. */
coll_result_t coll_req_run(coll_request_t *req);
/* Progress every active request of comm once (caller holds comm->lock). */
void coll_progress_all_locked(coll_comm_t *comm);
int coll_progress_thread_start(coll_comm_t *comm);
void coll_progress_thread_stop(coll_comm_t *comm);

/* ---- reduce.c ---- */
/* dst = a op b elementwise for dtype in {F32, F64, I32, I64}; AVG reduces as SUM. dst may
 * alias a or b (every op is commutative). */
void coll_reduce_kernel(void *dst, const void *a, const void *b, size_t n, coll_dtype_t dtype,
                        coll_op_t op, int stream);
/* buf[i] /= divisor (integers: truncating division); dtype in {F32, F64, I32, I64}. */
void coll_scale_kernel(void *buf, size_t n, coll_dtype_t dtype, int divisor);
void coll_f32_from_16(float *dst, const void *src, size_t n, coll_dtype_t dtype16);
void coll_f32_to_16(void *dst, const float *src, size_t n, coll_dtype_t dtype16);
float coll_bf16_to_float(uint16_t h);
uint16_t coll_float_to_bf16(float f);
float coll_half_to_float(uint16_t h);
uint16_t coll_float_to_half(float f);
static inline int coll_is_16bit(coll_dtype_t d) { return d == COLL_BF16 || d == COLL_F16; }

/* ---- block / chunk layout shared by the ring algorithms ---- */
typedef struct {
  size_t base, rem; /* block b has base + (b < rem) elements, at b*base + min(b, rem) */
  size_t ce;        /* elements per chunk */
  size_t nchunks;   /* chunks per block (same for every block; trailing ones may be empty) */
} coll_layout_t;
static inline size_t coll_blk_off(const coll_layout_t *L, size_t b) {
  return b * L->base + (b < L->rem ? b : L->rem);
}
static inline size_t coll_blk_len(const coll_layout_t *L, size_t b) {
  return L->base + (b < L->rem ? 1 : 0);
}
static inline size_t coll_chunk_off(const coll_layout_t *L, size_t b, size_t c) {
  return coll_blk_off(L, b) + c * L->ce;
}
static inline size_t coll_chunk_len(const coll_layout_t *L, size_t b, size_t c) {
  size_t len = coll_blk_len(L, b), start = c * L->ce;
  if (start >= len) return 0;
  return len - start < L->ce ? len - start : L->ce;
}
void coll_layout_init(coll_layout_t *L, size_t base, size_t rem, size_t esz, size_t chunk_bytes);
static inline int coll_mod(long a, int p) { long m = a % p; return (int)(m < 0 ? m + p : m); }
size_t coll_pipeline_depth(const coll_comm_t *comm);

/* ---- algorithm builders (allreduce.c, reduce_scatter.c, allgather.c, broadcast.c) ---- */
/* Ring reduce-scatter over blocks of layout L on work type dtype. Rank r ends owning block
 * coll_mod(r + 1 + shift, p) written at final_dst; AVG is applied to that block. Partial sums
 * are written to `recv` (a full-length vector) and sent from there. If `ag` is set the ring
 * all-gather of the reduced blocks into `recv` follows (all-reduce).
 * Scratch: coll_ring_scratch_bytes(). `send` and `recv` index the full vector. */
size_t coll_ring_scratch_bytes(const coll_comm_t *comm, const coll_layout_t *L, size_t esz);
void coll_build_ring(coll_request_t *req, const void *send, void *recv, void *final_dst,
                     const coll_layout_t *L, int shift, int ag, coll_dtype_t dtype,
                     coll_op_t op, void *scratch);
/* Ring all-gather of blocks of layout L into recv; rank r contributes block coll_mod(first,
 * p) from `first_src` (copied into place unless it already is). */
void coll_build_ring_ag(coll_request_t *req, void *recv, const void *first_src, int first,
                        const coll_layout_t *L, size_t esz, uint32_t sub0);
/* Recursive doubling all-reduce (non-power-of-two ranks folded in first). Scratch: count*esz. */
void coll_build_rd(coll_request_t *req, const void *send, void *recv, size_t count,
                   coll_dtype_t dtype, coll_op_t op, void *scratch);

/* Rabenseifner all-reduce (allreduce_rabenseifner.c): recursive-halving reduce-scatter +
 * recursive-doubling all-gather, chunk-pipelined; non-powers of two folded in first.
 * Scratch: coll_rh_scratch_bytes() ((depth+1) chunk slots). */
size_t coll_rh_scratch_bytes(const coll_comm_t *comm, size_t count, size_t esz, size_t chunk_bytes);
void coll_build_rabenseifner(coll_request_t *req, const void *send, void *recv, size_t count,
                             coll_dtype_t dtype, coll_op_t op, size_t chunk_bytes, void *scratch);

/* Resolves AUTO for an all-reduce of `bytes` of dtype, out of place or in place: the
 * algorithm, the chunk size it runs with in *chunk_bytes (the decision table's or the
 * communicator's), and in *streams the table rule's streaming (1 or 0), or -1 where
 * cfg.stream_bytes decides (allreduce.c, streams_for). */
coll_algo_t coll_resolve_algo(const coll_comm_t *comm, coll_algo_t algo, size_t bytes,
                              coll_dtype_t dtype, int in_place, size_t *chunk_bytes, int *streams);
int coll_valid_args(coll_comm_t *comm, const char *opname, coll_dtype_t dtype, int op_or_neg,
                    size_t count, const void *a, const void *b);

#endif /* STRATA_COLL_INTERNAL_H */
