/* names.c -- names, sizes and CLI spellings of the collectives' enums (dtypes, ops,
 * algorithms, transports, result codes). */
#include <string.h>

#include "strata/coll.h"

static const struct {
  const char *name;  /* nccl-tests name */
  const char *alias; /* short CLI spelling */
  size_t size;
} dtypes[COLL_DTYPE_COUNT] = {
    [COLL_F32] = {"float", "fp32", 4},  [COLL_F64] = {"double", "fp64", 8},
    [COLL_BF16] = {"bfloat16", "bf16", 2}, [COLL_F16] = {"half", "fp16", 2},
    [COLL_I32] = {"int32", "int", 4},   [COLL_I64] = {"int64", "long", 8},
};
static const char *const ops[COLL_OP_COUNT] = {"sum", "prod", "min", "max", "avg"};
static const char *const algos[COLL_ALGO_COUNT] = {"auto", "ring", "rd", "mpi", "rabenseifner"};

size_t coll_dtype_size(coll_dtype_t d) { return (unsigned)d < COLL_DTYPE_COUNT ? dtypes[d].size : 0; }
const char *coll_dtype_name(coll_dtype_t d) { return (unsigned)d < COLL_DTYPE_COUNT ? dtypes[d].name : "?"; }
const char *coll_op_name(coll_op_t op) { return (unsigned)op < COLL_OP_COUNT ? ops[op] : "?"; }
const char *coll_algo_name(coll_algo_t a) { return (unsigned)a < COLL_ALGO_COUNT ? algos[a] : "?"; }

const char *coll_result_string(coll_result_t r) {
  switch (r) {
  case COLL_OK: return "ok";
  case COLL_ERR_ARG: return "invalid argument";
  case COLL_ERR_NOMEM: return "out of memory";
  case COLL_ERR_TIMEOUT: return "timed out";
  case COLL_ERR_TRANSPORT: return "transport error";
  case COLL_ERR_MISMATCH: return "ranks disagree on the operation";
  case COLL_ERR_UNSUPPORTED: return "unsupported";
  }
  return "unknown error";
}

int coll_parse_dtype(const char *s, coll_dtype_t *out) {
  for (int i = 0; i < COLL_DTYPE_COUNT; i++)
    if (!strcmp(s, dtypes[i].name) || !strcmp(s, dtypes[i].alias)) {
      *out = (coll_dtype_t)i;
      return 0;
    }
  return -1;
}

int coll_parse_op(const char *s, coll_op_t *out) {
  for (int i = 0; i < COLL_OP_COUNT; i++)
    if (!strcmp(s, ops[i])) {
      *out = (coll_op_t)i;
      return 0;
    }
  return -1;
}

int coll_parse_algo(const char *s, coll_algo_t *out) {
  for (int i = 0; i < COLL_ALGO_COUNT; i++)
    if (!strcmp(s, algos[i])) {
      *out = (coll_algo_t)i;
      return 0;
    }
  return -1;
}

int coll_parse_transport(const char *s, coll_transport_kind_t *out) {
  if (!strcmp(s, "mpi")) *out = COLL_TRANSPORT_MPI;
  else if (!strcmp(s, "ofi")) *out = COLL_TRANSPORT_OFI;
  else return -1;
  return 0;
}
