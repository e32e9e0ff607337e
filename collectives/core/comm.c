/* comm.c -- communicators: configuration defaults and their STRATA_COLL_* environment
 * overrides, creation over an MPI communicator (duplicated, MPI_ERRORS_RETURN), splitting by
 * colour/key, accessors, the last-error buffer, traffic counters and the scratch-buffer cache
 * the algorithms draw their temporary memory from. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checks.h"
#include "coll_internal.h"
#include "strata/strnum.h"

/* Tunables (documented in collectives/README.md). */
#define COLL_DEFAULT_TIMEOUT_S 300.0
/* Ring / chain chunk when STRATA_COLL_CHUNK_BYTES is not set (cfg.chunk_bytes == 0), per
 * transport: libfabric's shm provider pays more per message than Open MPI's vader, and 1 MiB
 * chunks take ofi:shm from 78% to 87% of the mpi transport's busbw at 4 MiB (np=2, median of 5
 * runs; collectives/README.md). */
#define COLL_DEFAULT_CHUNK_BYTES_MPI (512u << 10)
#define COLL_DEFAULT_CHUNK_BYTES_OFI (1024u << 10)
#define COLL_DEFAULT_RD_THRESHOLD_BYTES (256u << 10)
#define COLL_DEFAULT_PIPELINE_DEPTH 2
#define COLL_DEFAULT_STREAM_BYTES (8u << 20)
/* np=4, 4 ranks on 2 cores, busbw / MPI_Allreduce's, median of 6 runs: Rabenseifner 1.17 /
 * 1.15 / 1.34 / 1.74 at 256K / 1M / 4M / 16M against the ring's 1.03 / 1.05 / 1.20 / 1.72, and
 * a second set of 6 runs 1.08 / 1.29 / 1.52 against 1.07 / 1.23 / 1.65 at 1M / 4M / 16M
 * (collectives/README.md): Rabenseifner below 16 MiB. */
#define COLL_DEFAULT_RABENSEIFNER_MAX_BYTES (16u << 20)
#define COLL_DEFAULT_EAGER_BYTES 4000 /* Open MPI vader: 4 KiB eager limit including its header */

/* coll_transport_ofi_ops is defined in transports/ofi.c (a weak stub here would shadow it:
 * the linker never pulls ofi.o out of the static library once comm.o satisfies it). */

static char env_error_buf[256];

double coll_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Every numeric STRATA_COLL_* / STRATA_OFI_* variable and what it must be (parsed by strnum.c);
 * collectives/README.md says what each does and how its default was measured. */
#define KIB 1024.0
#define GIB (1024.0 * 1024.0 * 1024.0)
static const strnum_env_t coll_env_vars[] = {
    {"STRATA_COLL_TIMEOUT_S", {STRNUM_DOUBLE, 0, 1e6, STRNUM_OPEN_MIN}, NULL, "bound on every wait, seconds"},
    {"STRATA_COLL_CHUNK_BYTES", {STRNUM_BYTES, 64, GIB, 0}, NULL, "ring / chain pipelining chunk"},
    {"STRATA_COLL_RD_THRESHOLD", {STRNUM_BYTES, 0, 1024 * GIB, 0}, NULL, "auto: recursive doubling below"},
    {"STRATA_COLL_RABENSEIFNER_MAX", {STRNUM_BYTES, 0, 1024 * GIB, 0}, NULL, "auto: Rabenseifner up to; 0 = never"},
    {"STRATA_COLL_EAGER_BYTES", {STRNUM_BYTES, 0, 1024 * KIB * KIB, 0}, NULL, "rd segment size; 0 = off"},
    {"STRATA_COLL_STREAM_BYTES", {STRNUM_BYTES, 0, 1024 * GIB, 0}, "off", "streaming stores from"},
    {"STRATA_COLL_PIPELINE_DEPTH", {STRNUM_INT, 1, 64, 0}, NULL, "ring receives posted ahead"},
    {"STRATA_COLL_CHECK", {STRNUM_INT, 0, 1, 0}, NULL, "1: check that ranks agree on each call"},
    {"STRATA_COLL_PROGRESS_THREAD", {STRNUM_INT, 0, 1, 0}, NULL, "1: background progress thread"},
    {"STRATA_COLL_PROGRESS_SLEEP_US", {STRNUM_INT, 0, 999999, 0}, NULL, "progress thread's idle sleep"},
    {"STRATA_COLL_HUGEPAGES", {STRNUM_INT, 0, 1, 0}, NULL, "0: coll_mem_alloc gives no huge-page advice"},
    {"STRATA_COLL_SCRATCH_HUGEPAGES", {STRNUM_INT, 0, 1, 0}, NULL, "0: scratch buffers exact, not whole huge pages"},
    {"STRATA_COLL_YIELD", {STRNUM_INT, 0, 1, 0}, "auto", "sched_yield() in idle polls"},
    {"STRATA_COLL_WIRE16", {STRNUM_INT, 0, 1, 0}, NULL, "1: 16-bit reductions send 16-bit values"},
    {"STRATA_OFI_MAX_MSG_BYTES", {STRNUM_BYTES, 1, 1024 * GIB, 0}, NULL, "ofi: cap on one fragment"},
    {"STRATA_OFI_FORCE_MR", {STRNUM_INT, 0, 1, 0}, NULL, "ofi: 1 registers every buffer"},
};
#define COLL_ENV_COUNT ((int)(sizeof coll_env_vars / sizeof coll_env_vars[0]))

int coll_env_number(const char *name, strnum_value_t *out, char *err, size_t errlen) {
  return strnum_env(coll_env_vars, COLL_ENV_COUNT, name, out, err, errlen);
}

/* Reads one numeric variable into the configuration: returns strnum_env's code, and records
 * the first bad value as the configuration's env_error. */
static int env_number(coll_config_t *cfg, const char *name, strnum_value_t *v) {
  char msg[sizeof env_error_buf];
  int rc = coll_env_number(name, v, msg, sizeof msg);
  if (rc < 0 && !cfg->env_error) {
    snprintf(env_error_buf, sizeof env_error_buf, "%s", msg);
    cfg->env_error = env_error_buf;
  }
  return rc;
}

static void env_fail(coll_config_t *cfg, const char *var, const char *val, const char *want) {
  if (cfg->env_error) return;
  snprintf(env_error_buf, sizeof env_error_buf, "%s must be %s, got '%s' (environment variable; unset it for the default)",
           var, want, val);
  cfg->env_error = env_error_buf;
}

coll_config_t coll_config_default(void) {
  coll_config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.transport = COLL_TRANSPORT_MPI;
  cfg.ofi_provider = NULL;
  cfg.algo = COLL_ALGO_AUTO;
  cfg.timeout_s = COLL_DEFAULT_TIMEOUT_S;
  cfg.chunk_bytes = 0; /* the transport's default, resolved by coll_comm_create */
  cfg.rd_threshold_bytes = COLL_DEFAULT_RD_THRESHOLD_BYTES;
  cfg.check = 0;
  cfg.progress_thread = 0;
  cfg.pipeline_depth = COLL_DEFAULT_PIPELINE_DEPTH;
  cfg.yield_idle = -1;
  cfg.wire16 = 0;
  cfg.stream_bytes = COLL_DEFAULT_STREAM_BYTES;
  cfg.eager_bytes = COLL_DEFAULT_EAGER_BYTES;
  cfg.rabenseifner_max_bytes = COLL_DEFAULT_RABENSEIFNER_MAX_BYTES;
  cfg.env_error = NULL;
  cfg.tune_file = NULL; /* coll_tune_path reads STRATA_COLL_TUNE_FILE */

  const char *v;
  if ((v = getenv("STRATA_COLL_TRANSPORT")) && *v)
    if (coll_parse_transport(v, &cfg.transport)) env_fail(&cfg, "STRATA_COLL_TRANSPORT", v, "mpi or ofi");
  if ((v = getenv("STRATA_COLL_ALGO")) && *v)
    if (coll_parse_algo(v, &cfg.algo))
      env_fail(&cfg, "STRATA_COLL_ALGO", v, "auto, ring, rd, rabenseifner or mpi");
  strnum_value_t x;
  if (env_number(&cfg, "STRATA_COLL_TIMEOUT_S", &x) == 1) cfg.timeout_s = x.d;
  if (env_number(&cfg, "STRATA_COLL_CHUNK_BYTES", &x) == 1) cfg.chunk_bytes = (size_t)x.i;
  if (env_number(&cfg, "STRATA_COLL_RD_THRESHOLD", &x) == 1) cfg.rd_threshold_bytes = (size_t)x.i;
  if (env_number(&cfg, "STRATA_COLL_CHECK", &x) == 1) cfg.check = (int)x.i;
  if (env_number(&cfg, "STRATA_COLL_PROGRESS_THREAD", &x) == 1) cfg.progress_thread = (int)x.i;
  if (env_number(&cfg, "STRATA_COLL_RABENSEIFNER_MAX", &x) == 1) cfg.rabenseifner_max_bytes = (size_t)x.i;
  if (env_number(&cfg, "STRATA_COLL_EAGER_BYTES", &x) == 1) cfg.eager_bytes = (size_t)x.i;
  if (env_number(&cfg, "STRATA_COLL_PIPELINE_DEPTH", &x) == 1) cfg.pipeline_depth = (int)x.i;
  if (env_number(&cfg, "STRATA_COLL_WIRE16", &x) == 1) cfg.wire16 = (int)x.i;
  int rc = env_number(&cfg, "STRATA_COLL_STREAM_BYTES", &x);
  if (rc == 1) cfg.stream_bytes = (size_t)x.i;
  else if (rc == 2) cfg.stream_bytes = SIZE_MAX; /* off */
  rc = env_number(&cfg, "STRATA_COLL_YIELD", &x);
  if (rc == 1) cfg.yield_idle = (int)x.i;
  else if (rc == 2) cfg.yield_idle = -1; /* auto */
  /* read where they act (coll_mem_alloc, the scratch cache, the progress thread, the ofi
   * transport), which have no way to report; checked here so a bad value is reported before
   * anything starts */
  env_number(&cfg, "STRATA_COLL_HUGEPAGES", &x);
  env_number(&cfg, "STRATA_COLL_SCRATCH_HUGEPAGES", &x);
  env_number(&cfg, "STRATA_COLL_PROGRESS_SLEEP_US", &x);
  env_number(&cfg, "STRATA_OFI_MAX_MSG_BYTES", &x);
  env_number(&cfg, "STRATA_OFI_FORCE_MR", &x);
  return cfg;
}

coll_result_t coll_set_error(coll_comm_t *comm, coll_result_t rc, const char *fmt, ...) {
  if (!comm) return rc;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(comm->last_error, sizeof comm->last_error, fmt, ap);
  va_end(ap);
  return rc;
}

/* Ranks of `comm` on this node (collective over comm). Best effort, for a heuristic and a
 * time-sharing factor: 1 when MPI cannot split the communicator by node. */
static int node_ranks(MPI_Comm comm) {
  MPI_Comm node;
  int n = 1;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &n);
    MPI_Comm_free(&node);
  }
  return n;
}

/* Are there more ranks on this node than cores? Then idle polls yield the core. */
static int node_oversubscribed(MPI_Comm comm) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return cores > 0 && node_ranks(comm) > cores;
}

/* Every member's rank in MPI_COMM_WORLD, into c->world_ranks (c->size entries). */
static coll_result_t map_world_ranks(coll_comm_t *c, char *err, size_t errlen) {
  coll_result_t res = COLL_OK;
  MPI_Group g = MPI_GROUP_NULL, wg = MPI_GROUP_NULL;
  int *idx = malloc(sizeof(int) * (size_t)c->size);
  if (!idx)
    return coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for the rank map of a %d-rank communicator",
                    c->size);
  for (int i = 0; i < c->size; i++) idx[i] = i;
  MPICHECKGOTO(MPI_Comm_group(c->mpi, &g), res, free_groups, "MPI_Comm_group");
  MPICHECKGOTO(MPI_Comm_group(MPI_COMM_WORLD, &wg), res, free_groups, "MPI_Comm_group(MPI_COMM_WORLD)");
  MPICHECKGOTO(MPI_Group_translate_ranks(g, c->size, idx, wg, c->world_ranks), res, free_groups,
               "MPI_Group_translate_ranks");
free_groups:
  if (g != MPI_GROUP_NULL) MPI_Group_free(&g);
  if (wg != MPI_GROUP_NULL) MPI_Group_free(&wg);
  free(idx);
  return res;
}

/* Every member's host name, into c->hosts (c->size entries). */
static coll_result_t gather_hosts(coll_comm_t *c, char *err, size_t errlen) {
  char name[MPI_MAX_PROCESSOR_NAME] = "";
  char mine[COLL_HOST_LEN] = "";
  int len = 0;
  c->hosts = calloc((size_t)c->size, COLL_HOST_LEN);
  if (!c->hosts)
    return coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for the host names of a %d-rank communicator",
                    c->size);
  if (MPI_Get_processor_name(name, &len) != MPI_SUCCESS) strcpy(name, "?");
  snprintf(mine, sizeof mine, "%s", name);
  coll_result_t res = COLL_OK;
  MPICHECKGOTO(MPI_Allgather(mine, COLL_HOST_LEN, MPI_CHAR, c->hosts, COLL_HOST_LEN, MPI_CHAR, c->mpi), res,
               out, "MPI_Allgather(host names)");
out:
  return res;
}

/* Common tail of create and split: `dup` (a new communicator) is owned by the new
 * communicator, and gets MPI_ERRORS_RETURN so MPI failures come back as codes. */
static coll_result_t comm_init(MPI_Comm dup, const coll_config_t *cfg, const coll_comm_t *parent,
                               coll_comm_t **out, char *err, size_t errlen) {
  coll_comm_t *c = calloc(1, sizeof *c);
  if (!c) {
    MPI_Comm_free(&dup);
    return coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for a communicator's state");
  }
  coll_result_t res = COLL_OK;
  c->mpi = dup;
  c->cfg = *cfg;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cv, NULL);
  MPICHECKGOTO(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN), res, free_comm, "MPI_Comm_set_errhandler");
  MPICHECKGOTO(MPI_Comm_rank(dup, &c->rank), res, free_comm, "MPI_Comm_rank");
  MPICHECKGOTO(MPI_Comm_size(dup, &c->size), res, free_comm, "MPI_Comm_size");
  c->world_ranks = malloc(sizeof(int) * (size_t)c->size);
  if (!c->world_ranks) {
    res = coll_err(err, errlen, COLL_ERR_NOMEM, "out of memory for the rank map of a %d-rank communicator",
                   c->size);
    goto free_comm;
  }
  res = map_world_ranks(c, err, errlen);
  if (res != COLL_OK) goto free_comm;
  res = gather_hosts(c, err, errlen);
  if (res != COLL_OK) goto free_comm;
  c->yield_idle = cfg->yield_idle >= 0 ? cfg->yield_idle : node_oversubscribed(dup);
  c->tops = cfg->transport == COLL_TRANSPORT_OFI ? &coll_transport_ofi_ops : &coll_transport_mpi_ops;
  c->chunk_explicit = parent ? parent->chunk_explicit : cfg->chunk_bytes != 0;
  c->stream_explicit = parent ? parent->stream_explicit : cfg->stream_bytes != COLL_DEFAULT_STREAM_BYTES;
  if (!c->cfg.chunk_bytes)
    c->cfg.chunk_bytes = cfg->transport == COLL_TRANSPORT_OFI ? COLL_DEFAULT_CHUNK_BYTES_OFI
                                                               : COLL_DEFAULT_CHUNK_BYTES_MPI;
  res = c->tops->create(dup, &c->cfg, &c->t, err, errlen);
  if (res != COLL_OK) goto free_comm;
  res = parent ? coll_tune_inherit(c, parent, err, errlen) : coll_tune_load(c, err, errlen);
  if (res != COLL_OK) goto destroy_transport;
  if (cfg->progress_thread) {
    int level = 0;
    MPICHECKGOTO(MPI_Query_thread(&level), res, destroy_transport, "MPI_Query_thread");
    if (level < MPI_THREAD_MULTIPLE) {
      res = coll_err(err, errlen, COLL_ERR_UNSUPPORTED, "STRATA_COLL_PROGRESS_THREAD=1 needs MPI initialised "
                     "with MPI_THREAD_MULTIPLE (use MPI_Init_thread) or progress_thread=0");
      goto destroy_transport;
    }
    if (coll_progress_thread_start(c)) {
      res = coll_err(err, errlen, COLL_ERR_NOMEM, "could not start the collectives progress thread");
      goto destroy_transport;
    }
  }
  *out = c;
  return COLL_OK;

destroy_transport:
  c->tops->destroy(c->t);
free_comm:
  coll_tune_free(c);
  free(c->world_ranks);
  free(c->hosts);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cv);
  MPI_Comm_free(&c->mpi);
  free(c);
  return res;
}

static coll_result_t validate_cfg(const coll_config_t *cfg, char *err, size_t errlen) {
  if (cfg->env_error) return coll_err(err, errlen, COLL_ERR_ARG, "%s", cfg->env_error);
  if (!(cfg->timeout_s > 0))
    return coll_err(err, errlen, COLL_ERR_ARG, "timeout_s must be > 0 (got %g); set STRATA_COLL_TIMEOUT_S",
                    cfg->timeout_s);
  if (cfg->chunk_bytes && cfg->chunk_bytes < 64)
    return coll_err(err, errlen, COLL_ERR_ARG, "chunk_bytes must be 0 (the transport's default) or >= 64 "
                    "(got %zu); set STRATA_COLL_CHUNK_BYTES", cfg->chunk_bytes);
  if ((unsigned)cfg->algo >= COLL_ALGO_COUNT || (unsigned)cfg->transport > COLL_TRANSPORT_OFI)
    return coll_err(err, errlen, COLL_ERR_ARG, "invalid algorithm or transport in the configuration");
  return COLL_OK;
}

coll_result_t coll_comm_create(MPI_Comm mpi, const coll_config_t *cfg_in, coll_comm_t **out) {
  char err[COLL_ERRLEN] = "";
  size_t errlen = sizeof err;
  coll_config_t cfg = cfg_in ? *cfg_in : coll_config_default();
  if (!out) return COLL_ERR_ARG;
  *out = NULL;
  MPI_Comm dup;
  coll_result_t res = validate_cfg(&cfg, err, errlen);
  if (res != COLL_OK) goto report;
  MPICHECKGOTO(MPI_Comm_dup(mpi, &dup), res, report, "MPI_Comm_dup");
  res = comm_init(dup, &cfg, NULL, out, err, errlen);
  if (res == COLL_OK) return COLL_OK;
report:;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank); /* for the message only */
  fprintf(stderr, "[strata r%d] error: coll_comm_create: %s\n", rank, err);
  return res;
}

int coll_node_size(coll_comm_t *comm) { return node_ranks(comm->mpi); }

coll_result_t coll_comm_split(coll_comm_t *parent, int color, int key, coll_comm_t **out) {
  char err[COLL_ERRLEN] = "";
  size_t errlen = sizeof err;
  if (!parent || !out) return COLL_ERR_ARG;
  *out = NULL;
  MPI_Comm sub;
  coll_result_t res = COLL_OK;
  MPICHECKGOTO(MPI_Comm_split(parent->mpi, color < 0 ? MPI_UNDEFINED : color, key, &sub), res, report,
               "MPI_Comm_split");
  if (sub == MPI_COMM_NULL) return COLL_OK; /* negative colour: not a member of any group */
  res = comm_init(sub, &parent->cfg, parent, out, err, errlen);
  if (res == COLL_OK) return COLL_OK;
report:
  return coll_set_error(parent, res, "coll_comm_split: %s", err);
}

void coll_comm_destroy(coll_comm_t *comm) {
  if (!comm) return;
  coll_progress_thread_stop(comm);
  if (comm->tops && comm->tops->destroy) comm->tops->destroy(comm->t);
  for (int i = 0; i < COLL_SCRATCH_CACHE; i++) free(comm->cache_buf[i]);
  coll_tune_free(comm);
  free(comm->world_ranks);
  free(comm->hosts);
  pthread_mutex_destroy(&comm->lock);
  pthread_cond_destroy(&comm->cv);
  MPI_Comm_free(&comm->mpi);
  free(comm);
}

int coll_rank(const coll_comm_t *comm) { return comm ? comm->rank : -1; }
int coll_size(const coll_comm_t *comm) { return comm ? comm->size : 0; }
const coll_config_t *coll_comm_config(const coll_comm_t *comm) { return comm ? &comm->cfg : NULL; }

void coll_comm_set_wire16(coll_comm_t *comm, int on) {
  if (comm) comm->cfg.wire16 = on != 0;
}
int coll_world_rank(const coll_comm_t *comm, int rank) {
  if (!comm || rank < 0 || rank >= comm->size) return -1;
  return comm->world_ranks[rank];
}
const char *coll_peer_host(const coll_comm_t *comm, int rank) {
  if (!comm || !comm->hosts || rank < 0 || rank >= comm->size) return "?";
  return comm->hosts[rank];
}
MPI_Comm coll_mpi_comm(const coll_comm_t *comm) { return comm ? comm->mpi : MPI_COMM_NULL; }
const char *coll_transport_name(const coll_comm_t *comm) {
  if (!comm || !comm->tops) return "?";
  return comm->tops->describe ? comm->tops->describe(comm->t) : comm->tops->name;
}
const char *coll_last_error(const coll_comm_t *comm) { return comm ? comm->last_error : ""; }
void coll_traffic(const coll_comm_t *comm, uint64_t *sent_bytes, uint64_t *recv_bytes) {
  if (sent_bytes) *sent_bytes = comm ? comm->sent_bytes : 0;
  if (recv_bytes) *recv_bytes = comm ? comm->recv_bytes : 0;
}
void coll_busy(const coll_comm_t *comm, double *seconds, uint64_t *calls) {
  if (seconds) *seconds = comm ? comm->busy_s : 0;
  if (calls) *calls = comm ? comm->busy_calls : 0;
}

/* Scratch cache: a few buffers kept per communicator so steady-state calls neither allocate
 * nor page-fault. Callers hold comm->lock. */
void *coll_scratch_get(coll_comm_t *comm, size_t bytes, size_t *cap) {
  *cap = 0;
  if (bytes == 0) return NULL;
  int best = -1;
  for (int i = 0; i < COLL_SCRATCH_CACHE; i++)
    if (comm->cache_buf[i] && comm->cache_bytes[i] >= bytes &&
        (best < 0 || comm->cache_bytes[i] < comm->cache_bytes[best]))
      best = i;
  if (best >= 0) {
    void *p = comm->cache_buf[best];
    comm->cache_buf[best] = NULL;
    *cap = comm->cache_bytes[best];
    return p;
  }
  return coll_mem_alloc_scratch(bytes, cap);
}

void coll_scratch_put(coll_comm_t *comm, void *buf, size_t bytes) {
  if (!buf) return;
  int slot = -1;
  for (int i = 0; i < COLL_SCRATCH_CACHE; i++)
    if (!comm->cache_buf[i]) { slot = i; break; }
  if (slot < 0) { /* evict the smallest if this one is bigger */
    slot = 0;
    for (int i = 1; i < COLL_SCRATCH_CACHE; i++)
      if (comm->cache_bytes[i] < comm->cache_bytes[slot]) slot = i;
    if (comm->cache_bytes[slot] >= bytes) {
      free(buf);
      return;
    }
    free(comm->cache_buf[slot]);
  }
  comm->cache_buf[slot] = buf;
  comm->cache_bytes[slot] = bytes;
}
