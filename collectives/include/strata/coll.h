/* coll.h -- Strata's collectives library: the one public header.
 *
 * Everything in Strata that moves tensors between ranks goes through this API: gradient
 * all-reduce in data-parallel groups, activations between pipeline stages (send/recv),
 * parameter all-gather for ZeRO-1, broadcast of the job spec. A communicator is built over an
 * MPI communicator (used only for bootstrap: rank, size, address exchange, splitting) and a
 * transport (MPI non-blocking point-to-point, or a libfabric RDM endpoint with tagged
 * messages). The algorithms are the same code over both transports.
 *
 * Conventions
 *  - Every call returns coll_result_t; COLL_OK is 0. On error, coll_last_error(comm) returns a
 *    message naming the operation, the peer rank waited on and the bytes outstanding.
 *  - Counts are element counts (size_t); any count is valid, 0 included. Buffers follow the
 *    dtype's natural alignment.
 *  - In place: pass the same pointer as send and recv (for reduce-scatter / all-gather the
 *    NCCL convention: recv at offset rank*recvcount of send, or send at offset rank*sendcount
 *    of recv).
 *  - All ranks of a communicator must call its collectives in the same order with the same
 *    count, dtype and op; with cfg.check set the library verifies this and fails with
 *    COLL_ERR_MISMATCH on every rank rather than corrupting memory or hanging.
 *  - No call blocks forever: every wait is bounded by cfg.timeout_s.
 *
 * Usage
 *    coll_config_t cfg = coll_config_default();   // reads STRATA_COLL_* environment overrides
 *    cfg.transport = COLL_TRANSPORT_OFI;
 *    coll_comm_t *world;
 *    if (coll_comm_create(MPI_COMM_WORLD, &cfg, &world) != COLL_OK) { ... }
 *    coll_allreduce(grad, grad, n, COLL_F32, COLL_SUM, world);        // in place
 *    coll_comm_t *dp;
 *    coll_comm_split(world, stage, replica, &dp);                      // sub-communicator
 *    coll_request_t *req;
 *    coll_iallreduce(bucket, bucket, nb, COLL_F32, COLL_AVG, dp, &req);
 *    while (more_backward_work) { do_work(); int done; coll_test(req, &done); }
 *    coll_wait(req);                                                   // frees req
 */
#ifndef STRATA_COLL_H
#define STRATA_COLL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  COLL_OK = 0,
  COLL_ERR_ARG,       /* invalid argument (null buffer with count > 0, bad rank, bad enum) */
  COLL_ERR_NOMEM,     /* allocation failed */
  COLL_ERR_TIMEOUT,   /* a wait exceeded cfg.timeout_s */
  COLL_ERR_TRANSPORT, /* the transport reported an error (MPI error, fi_cq_readerr entry) */
  COLL_ERR_MISMATCH,  /* ranks called with different op / count / dtype (cfg.check) */
  COLL_ERR_UNSUPPORTED
} coll_result_t;

typedef enum { COLL_F32 = 0, COLL_F64, COLL_BF16, COLL_F16, COLL_I32, COLL_I64, COLL_DTYPE_COUNT } coll_dtype_t;
/* AVG divides the sum by the communicator size (integers: truncating division). 16-bit
 * floating types are reduced in fp32 and rounded once (round-to-nearest-even) at the end, with
 * fp32 values on the wire; with cfg.wire16 (coll_comm_set_wire16) all-reduce (except
 * COLL_ALGO_MPI) and reduce-scatter send 16-bit values instead -- half the bytes, as NCCL does:
 * each partial result is computed in fp32 from two 16-bit operands and rounded back to 16
 * bits (so a sum over p ranks is rounded up to p - 1 times, plus once for AVG's division). */
typedef enum { COLL_SUM = 0, COLL_PROD, COLL_MIN, COLL_MAX, COLL_AVG, COLL_OP_COUNT } coll_op_t;
/* AUTO: the decision table's rule for this communicator's size and transport and the call's
 * dtype and placement (in place or not) when it has one ("Decision table" below); otherwise the built-in rules: recursive
 * doubling below cfg.rd_threshold_bytes; from there Rabenseifner below
 * cfg.rabenseifner_max_bytes when the rank count is a power of two above 2; the pipelined ring
 * otherwise (coll_allreduce_auto_algo says which).
 * RABENSEIFNER: reduce-scatter by recursive halving + all-gather by recursive doubling,
 * pipelined like the ring (2 lg p steps instead of 2(p-1)).
 * MPI: hand the whole operation to MPI's own collective (the baseline `strata bench` compares
 * against); available over either transport because it only needs the bootstrap communicator. */
typedef enum {
  COLL_ALGO_AUTO = 0, COLL_ALGO_RING, COLL_ALGO_RD, COLL_ALGO_MPI, COLL_ALGO_RABENSEIFNER,
  COLL_ALGO_COUNT
} coll_algo_t;
typedef enum { COLL_TRANSPORT_MPI = 0, COLL_TRANSPORT_OFI } coll_transport_kind_t;

typedef struct {
  coll_transport_kind_t transport; /* STRATA_COLL_TRANSPORT=mpi|ofi; default mpi */
  const char *ofi_provider;        /* libfabric provider name (NULL: $FI_PROVIDER, else any RDM) */
  coll_algo_t algo;                /* STRATA_COLL_ALGO=auto|ring|rd|rabenseifner|mpi; default auto */
  double timeout_s;                /* STRATA_COLL_TIMEOUT_S; bound on every wait; default 300 */
  size_t chunk_bytes;              /* STRATA_COLL_CHUNK_BYTES; ring pipelining chunk; 0 (the
                                      default): the transport's, 512 KiB mpi, 1 MiB ofi */
  size_t rd_threshold_bytes;       /* STRATA_COLL_RD_THRESHOLD; AUTO switches to ring at this size */
  int check;                       /* STRATA_COLL_CHECK=1: verify op/count/dtype agree across ranks */
  int progress_thread;             /* STRATA_COLL_PROGRESS_THREAD=1: non-blocking ops progress
                                      in a background thread instead of in coll_test */
  int pipeline_depth;              /* STRATA_COLL_PIPELINE_DEPTH; ring receives posted ahead */
  size_t rabenseifner_max_bytes;   /* STRATA_COLL_RABENSEIFNER_MAX; AUTO uses Rabenseifner from
                                      rd_threshold_bytes up to this size on 4, 8, 16... ranks;
                                      default 16M, 0 = never */
  size_t eager_bytes;              /* STRATA_COLL_EAGER_BYTES; recursive doubling cuts messages of
                                      up to 4x this size into segments of at most this size (keeps
                                      them under the transport's eager limit); 0 = never */
  size_t stream_bytes;             /* STRATA_COLL_STREAM_BYTES; all-reduce / reduce-scatter of at
                                      least this many bytes write their reductions with streaming
                                      (non-temporal) stores (an in-place all-reduce at any
                                      size); default 8M; "off" = never */
  int yield_idle;                  /* STRATA_COLL_YIELD=0|1; sched_yield() in idle polls;
                                      default -1 = auto (yes when ranks outnumber cores) */
  int wire16;                      /* STRATA_COLL_WIRE16=0|1: 16-bit reductions send 16-bit
                                      values (see coll_op_t); default 0 */
  const char *env_error;           /* set by coll_config_default when a STRATA_COLL_* value
                                      is invalid; coll_comm_create then fails with it */
  const char *tune_file;           /* STRATA_COLL_TUNE_FILE; the decision table AUTO follows
                                      (coll_tune_path); NULL: the default path; "off": none */
} coll_config_t;

typedef struct coll_comm coll_comm_t;
typedef struct coll_request coll_request_t;

/* Defaults, with STRATA_COLL_* environment overrides applied. */
coll_config_t coll_config_default(void);

/* Builds a communicator over `mpi` (collective over `mpi`: every rank must call it). The MPI
 * communicator is duplicated; the caller keeps ownership of its own. */
coll_result_t coll_comm_create(MPI_Comm mpi, const coll_config_t *cfg, coll_comm_t **out);
/* Collective over `parent`: ranks with the same color form a new communicator, ordered by key
 * (ties by parent rank), with the parent's configuration and transport kind. */
coll_result_t coll_comm_split(coll_comm_t *parent, int color, int key, coll_comm_t **out);
void coll_comm_destroy(coll_comm_t *comm); /* NULL is a no-op; must not have requests pending */

int coll_rank(const coll_comm_t *comm);
int coll_size(const coll_comm_t *comm);
/* Rank of this communicator's member `rank` in MPI_COMM_WORLD (for error messages). */
int coll_world_rank(const coll_comm_t *comm, int rank);
/* The host that member `rank` runs on (its MPI processor name, at most 63 characters), "?" for
 * an invalid rank. Error messages about a peer name it, so a lost link names the node. */
const char *coll_peer_host(const coll_comm_t *comm, int rank);
/* Collective over comm: how many of its ranks share this rank's host (a shared-memory node, as
 * MPI_COMM_TYPE_SHARED sees it); 1 if that cannot be determined. */
int coll_node_size(coll_comm_t *comm);
MPI_Comm coll_mpi_comm(const coll_comm_t *comm); /* the bootstrap communicator */
const char *coll_transport_name(const coll_comm_t *comm); /* "mpi", "ofi:shm", "ofi:tcp;ofi_rxm" */
/* The configuration in effect, defaults resolved (e.g. chunk_bytes is the transport's). */
const coll_config_t *coll_comm_config(const coll_comm_t *comm);
/* Sets cfg.wire16 of comm (0 or 1) for its calls from now on; every rank of comm must set the
 * same value. Communicators split from comm later inherit it. */
void coll_comm_set_wire16(coll_comm_t *comm, int on);
/* The message of the last failed call on this communicator ("" if none). */
const char *coll_last_error(const coll_comm_t *comm);
/* Bytes this rank has sent / received through the transport since creation. */
void coll_traffic(const coll_comm_t *comm, uint64_t *sent_bytes, uint64_t *recv_bytes);
/* Seconds this rank has spent inside blocking calls on this communicator since creation
 * (collectives, blocking send / recv, barrier, coll_wait) and the number of such calls: how much
 * of a run one group's communication takes (e.g. tensor parallelism's versus data parallelism's).
 * Counted by the calling thread; coll_test and coll_wait_for are not counted. */
void coll_busy(const coll_comm_t *comm, double *seconds, uint64_t *calls);

size_t coll_dtype_size(coll_dtype_t dtype);
const char *coll_dtype_name(coll_dtype_t dtype);  /* "float", "double", "bfloat16", "half", "int32", "int64" (nccl-tests names) */
const char *coll_op_name(coll_op_t op);           /* "sum", "prod", "min", "max", "avg" */
const char *coll_algo_name(coll_algo_t algo);     /* "auto", "ring", "rd", "mpi" */
const char *coll_result_string(coll_result_t r);
/* Parse nccl-tests / CLI spellings; return 0 on success, -1 if unknown. */
int coll_parse_dtype(const char *s, coll_dtype_t *out);
int coll_parse_op(const char *s, coll_op_t *out);
int coll_parse_algo(const char *s, coll_algo_t *out);
int coll_parse_transport(const char *s, coll_transport_kind_t *out);

/* ---- Collectives (blocking) ---- */

/* recv[i] = op over ranks of send[i], i < count. Uses comm's configured algorithm. */
coll_result_t coll_allreduce(const void *send, void *recv, size_t count, coll_dtype_t dtype,
                             coll_op_t op, coll_comm_t *comm);
/* The algorithm AUTO runs for an out-of-place all-reduce of `bytes` of fp32 on comm (never
 * AUTO itself). */
coll_algo_t coll_allreduce_auto_algo(const coll_comm_t *comm, size_t bytes);
/* The same for any dtype, out of place (in_place 0) or in place (1), with the ring /
 * Rabenseifner chunk it would use in *chunk_bytes (may be NULL): the decision table's rule
 * when comm has one for (its size, its transport, dtype, placement), else the built-in rules. */
coll_algo_t coll_allreduce_auto_choice(const coll_comm_t *comm, size_t bytes, coll_dtype_t dtype,
                                       int in_place, size_t *chunk_bytes);
/* 1 when that AUTO all-reduce writes its fp32 sums with streaming (non-temporal) stores, 0 when
 * through the cache: the table rule's "stream" when it has one (and cfg.stream_bytes was not
 * set), else cfg.stream_bytes: from that size, and in place at any size. */
int coll_allreduce_auto_streams(const coll_comm_t *comm, size_t bytes, coll_dtype_t dtype, int in_place);
/* Same, with an explicit algorithm (the benchmark's --algo). */
coll_result_t coll_allreduce_algo(const void *send, void *recv, size_t count, coll_dtype_t dtype,
                                  coll_op_t op, coll_algo_t algo, coll_comm_t *comm);
/* send holds size*recvcount elements; rank r receives block r of the reduction. */
coll_result_t coll_reduce_scatter(const void *send, void *recv, size_t recvcount,
                                  coll_dtype_t dtype, coll_op_t op, coll_comm_t *comm);
/* recv (size*sendcount elements) = concatenation of every rank's send, in rank order. */
coll_result_t coll_allgather(const void *send, void *recv, size_t sendcount, coll_dtype_t dtype,
                             coll_comm_t *comm);
/* buf on every rank = buf on root. */
coll_result_t coll_broadcast(void *buf, size_t count, coll_dtype_t dtype, int root, coll_comm_t *comm);
/* Out-of-place broadcast (nccl-tests' form): recv on every rank = send on root. */
coll_result_t coll_broadcast2(const void *send, void *recv, size_t count, coll_dtype_t dtype,
                              int root, coll_comm_t *comm);

/* ---- Point to point (blocking, bounded by timeout) ----
 * Messages between a pair of ranks with the same tag arrive in the order sent. tag >= 0 and
 * < 2^24. A recv whose count differs from the matching send fails with COLL_ERR_MISMATCH. */
coll_result_t coll_send(const void *buf, size_t count, coll_dtype_t dtype, int peer, int tag,
                        coll_comm_t *comm);
coll_result_t coll_recv(void *buf, size_t count, coll_dtype_t dtype, int peer, int tag,
                        coll_comm_t *comm);
/* Simultaneous send to `dst` and receive from `src` (pipeline neighbours, ring shifts). */
coll_result_t coll_sendrecv(const void *sendbuf, size_t sendcount, int dst, void *recvbuf,
                            size_t recvcount, int src, coll_dtype_t dtype, int tag,
                            coll_comm_t *comm);
/* Non-blocking point to point; complete with coll_test / coll_wait. */
coll_result_t coll_isend(const void *buf, size_t count, coll_dtype_t dtype, int peer, int tag,
                         coll_comm_t *comm, coll_request_t **req);
coll_result_t coll_irecv(void *buf, size_t count, coll_dtype_t dtype, int peer, int tag,
                         coll_comm_t *comm, coll_request_t **req);

/* ---- Non-blocking all-reduce ----
 * Starts the operation and returns at once. Progress is made in coll_test / coll_wait (or by
 * the progress thread when cfg.progress_thread is set). Buffers must stay valid and untouched
 * until completion. Several may be in flight on one communicator; they complete in any order
 * but must be started in the same order on every rank. */
coll_result_t coll_iallreduce(const void *send, void *recv, size_t count, coll_dtype_t dtype,
                              coll_op_t op, coll_comm_t *comm, coll_request_t **req);
/* *done = 1 once complete (the request stays valid until coll_wait). Drives progress. */
coll_result_t coll_test(coll_request_t *req, int *done);
/* Blocks (bounded by timeout) until complete, then frees the request. */
coll_result_t coll_wait(coll_request_t *req);
/* Waits at most max_s seconds for req, for a rank that waits for work which may be long in
 * coming (a serving rank waiting for its next request): it sleeps between polls (back-off up to
 * 5 ms, about 0.2% of a core while idle) instead of spinning, and from its first call the
 * request is exempt from cfg.timeout_s -- the caller bounds the wait itself, for example with a
 * heartbeat. *done = 1: complete, the request is freed (as by coll_wait) and its result
 * returned. *done = 0: max_s passed, COLL_OK, the request is still pending (wait again, or
 * coll_cancel it). max_s = 0 polls once.
 *    coll_irecv(&msg, n, COLL_I32, 0, TAG, comm, &req);
 *    int done = 0;  double waited = 0;
 *    while (!done && waited < liveness_s) { coll_wait_for(req, 1.0, &done); waited += 1.0; }
 *    if (!done) { coll_cancel(req); ... the peer is gone ... } */
coll_result_t coll_wait_for(coll_request_t *req, double max_s, int *done);
/* Cancels a pending point-to-point request (a receive that is no longer wanted) and frees it. */
void coll_cancel(coll_request_t *req);

/* ---- Communication buffers (the counterpart of ncclMemAlloc) ----
 * Large buffers (2 MiB and up) are 2 MiB-aligned and advised for transparent huge pages
 * (madvise MADV_HUGEPAGE; takes effect when /sys/kernel/mm/transparent_hugepage/enabled is
 * `madvise` or `always`). Single-copy shared-memory transfers (Open MPI's CMA, libfabric shm)
 * pin and map the source buffer page by page, so a buffer on 2 MiB pages moves a large
 * message up to about twice as fast as one on 4 KiB pages (BENCHMARKS.md). Smaller buffers are
 * 64-byte aligned. STRATA_COLL_HUGEPAGES=0 turns the advice off (for comparison; another
 * value than 0 or 1 makes coll_comm_create fail naming it). The memory is not zeroed. NULL on
 * failure; release with coll_mem_free (or free()). */
void *coll_mem_alloc(size_t bytes);
void coll_mem_free(void *p);

/* ---- Decision table (`strata bench --tune` writes it; coll_comm_create reads it) ----
 * A JSON file of rules: for communicators of `ranks` ranks over `transport`, an all-reduce of
 * `dtype` out of place (placement "out") or in place ("in", send == recv) of at least
 * from_bytes (up to the next rule's from_bytes of the same key) runs `algo` with chunks of
 * chunk_bytes, its reductions writing with streaming stores or not (`stream`, optional: absent,
 * cfg.stream_bytes decides). The two placements have rules of their own because the input of an in-place
 * call is a buffer this rank has just written, which changes which algorithm is fastest.
 * AUTO follows it where it has a rule and the built-in thresholds elsewhere; an explicit
 * algorithm, and an explicit cfg.chunk_bytes or cfg.stream_bytes, take precedence.
 *    {"format": "strata-coll-tune", "version": 3, "rules": [
 *      {"ranks": 2, "transport": "mpi", "dtype": "float", "placement": "out",
 *       "from_bytes": 0, "algo": "rd", "chunk_bytes": 0, "stream": false},
 *      {"ranks": 2, "transport": "mpi", "dtype": "float", "placement": "out",
 *       "from_bytes": 1048576, "algo": "ring", "chunk_bytes": 524288, "stream": true}]}
 * Rules of one (ranks, transport, dtype, placement) are in increasing from_bytes. Tables of
 * format version 2 (the same without "stream") and 1 (text, earlier releases:
 * "strata-coll-tune 1", then "ranks transport dtype from_bytes algo chunk_bytes" lines, each
 * rule holding for both placements) are still read. coll_comm_create reads the file on rank 0 and broadcasts it, so every rank
 * follows the same table; a malformed table, or one of another format version, is reported by
 * rank 0 in one sentence on stderr and ignored. Every rank of one call must pass the same
 * placement (as MPI_IN_PLACE must be used by all ranks or none). */
typedef struct {
  int ranks;              /* communicator size */
  char transport[32];     /* coll_transport_name(): "mpi", "ofi:shm", "ofi:tcp;ofi_rxm" */
  coll_dtype_t dtype;
  int in_place;           /* 1: the rule is for in-place calls (send == recv), 0: out of place */
  size_t from_bytes;      /* the rule holds from this size up to the next rule's */
  coll_algo_t algo;       /* never COLL_ALGO_AUTO */
  size_t chunk_bytes;     /* ring / Rabenseifner chunk; 0 = the communicator's */
  int stream;             /* 1: fp32 sums with streaming stores, 0: through the cache, -1: as
                             cfg.stream_bytes says (tables before version 3) */
} coll_tune_rule_t;

/* The table's path into buf: cfg->tune_file, else $STRATA_COLL_TUNE_FILE, else
 * $XDG_CACHE_HOME/strata/coll_tune.json, else $HOME/.cache/strata/coll_tune.json. Returns 0, or
 * -1 when the table is turned off ("off") or no path can be formed (no HOME). */
int coll_tune_path(const coll_config_t *cfg, char *buf, size_t len);
/* Writes rules[0..n) (rules of one key in increasing from_bytes) to path, keeping the rules of
 * other (ranks, transport, dtype, placement) keys already in a valid file there (a malformed one is
 * replaced); creates the directory; replaces the file atomically. COLL_OK, or an error with
 * one sentence in err. */
coll_result_t coll_tune_save(const char *path, const coll_tune_rule_t *rules, int n, char *err,
                             size_t errlen);
/* One line saying which rules AUTO follows on comm: "table PATH (N rules for 2 ranks over
 * mpi)", or "built-in rules (...why...)". */
const char *coll_tune_describe(const coll_comm_t *comm);

/* Waits on every rank of comm (bounded by timeout). */
coll_result_t coll_barrier(coll_comm_t *comm);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_COLL_H */
