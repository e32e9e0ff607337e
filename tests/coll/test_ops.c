/* test_ops.c -- multi-rank specification tests of the collectives library (coll_test_ops).
 *
 * Usage: mpirun -np P coll_test_ops MODE
 *   ops          every op x dtype x count {0, 1, p-1, p+1, 4099, 1000003, 4194304} x in/out of
 *                place x every all-reduce algorithm, against exact closed-form results
 *   p2p          send / recv / sendrecv / isend / irecv, and count mismatches
 *   split        sub-communicators by colour / key, collectives inside them
 *   nonblocking  several coll_iallreduce in flight while the caller computes between coll_test
 *   timeout      one rank never joins: the others get COLL_ERR_TIMEOUT naming it (2 s timeout)
 *   idle         coll_wait_for: a receive that waits past the 1 s timeout without spinning
 *   mismatch     cfg.check on, ranks pass different counts / dtypes: COLL_ERR_MISMATCH everywhere
 *   wire16       cfg.wire16 (coll_comm_set_wire16): bf16 / fp16 all-reduce in every algorithm and
 *                reduce-scatter, every op, exact results as in ops (integer partial sums are
 *                exact in 16 bits, so rounding each hop changes nothing here), and exactly half
 *                the bytes of the same calls with the fp32 work vector (MPI's algorithm excepted)
 *   units        16-bit conversions against PyTorch's bit patterns, config parsing
 *   tune         the decision table: written by coll_tune_save, loaded by coll_comm_create, auto
 *                follows it (algorithm and chunk) with exact results in every algorithm it
 *                picks; a malformed or other-version table is ignored for the built-in rules
 * The transport comes from the environment (STRATA_COLL_TRANSPORT=mpi|ofi through
 * coll_config_default), so the same binary runs over every transport.
 *
 * Inputs are small integers so every float sum / product / min / max is exact in every dtype
 * (bf16 holds integers up to 256 exactly, fp16 up to 2048; sums here stay within +-40 and
 * products are powers of two up to 2^8): results are compared for exact equality. AVG divides
 * the exact sum by p once; the expected value is that same single correctly rounded division
 * (float for fp32 / bf16 / fp16 then rounded once to the 16-bit type, double for fp64,
 * truncating for integers). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "strata/coll.h"
#include "test_util.h"

/* From the library (reduce.c): conversions under test in `units` and used to build inputs. */
float coll_bf16_to_float(uint16_t h);
uint16_t coll_float_to_bf16(float f);
float coll_half_to_float(uint16_t h);
uint16_t coll_float_to_half(float f);

static int P, R; /* world size and rank */

/* ---------------------------------------------------------------- values */

static double gen(coll_op_t op, int r, size_t i) {
  switch (op) {
  case COLL_PROD: {
    int k = (int)((i + (size_t)r) % 4);
    return k == 0 ? 2.0 : k == 1 ? -1.0 : 1.0;
  }
  case COLL_MIN:
  case COLL_MAX: return (double)((int)((i * 5 + (size_t)r * 3) % 17) - 8);
  default: return (double)((int)((i * 7 + (size_t)r * 13) % 11) - 5);
  }
}

static void put(void *buf, coll_dtype_t t, size_t i, double v) {
  switch (t) {
  case COLL_F32: ((float *)buf)[i] = (float)v; break;
  case COLL_F64: ((double *)buf)[i] = v; break;
  case COLL_BF16: ((uint16_t *)buf)[i] = coll_float_to_bf16((float)v); break;
  case COLL_F16: ((uint16_t *)buf)[i] = coll_float_to_half((float)v); break;
  case COLL_I32: ((int32_t *)buf)[i] = (int32_t)v; break;
  case COLL_I64: ((int64_t *)buf)[i] = (int64_t)v; break;
  default: break;
  }
}

static double get(const void *buf, coll_dtype_t t, size_t i) {
  switch (t) {
  case COLL_F32: return ((const float *)buf)[i];
  case COLL_F64: return ((const double *)buf)[i];
  case COLL_BF16: return coll_bf16_to_float(((const uint16_t *)buf)[i]);
  case COLL_F16: return coll_half_to_float(((const uint16_t *)buf)[i]);
  case COLL_I32: return ((const int32_t *)buf)[i];
  case COLL_I64: return (double)((const int64_t *)buf)[i];
  default: return NAN;
  }
}

/* Exact reduction over p ranks of element i (global index). */
static double expect(coll_op_t op, coll_dtype_t t, int p, size_t i) {
  double acc = gen(op, 0, i);
  for (int r = 1; r < p; r++) {
    double x = gen(op, r, i);
    switch (op) {
    case COLL_PROD: acc *= x; break;
    case COLL_MIN: acc = x < acc ? x : acc; break;
    case COLL_MAX: acc = x > acc ? x : acc; break;
    default: acc += x; break;
    }
  }
  if (op == COLL_AVG) {
    switch (t) {
    case COLL_F64: acc = acc / (double)p; break;
    case COLL_I32:
    case COLL_I64: acc = (double)((long long)acc / p); break;
    case COLL_BF16: acc = coll_bf16_to_float(coll_float_to_bf16((float)acc / (float)p)); break;
    case COLL_F16: acc = coll_half_to_float(coll_float_to_half((float)acc / (float)p)); break;
    default: acc = (float)acc / (float)p; break;
    }
  }
  return acc;
}

static const char *tname(coll_dtype_t t) { return coll_dtype_name(t); }

/* Counts mismatched elements of buf[0..n) against expect(op, t, p, off + i). */
static size_t count_wrong(const void *buf, coll_dtype_t t, coll_op_t op, int p, size_t off,
                          size_t n, size_t *first) {
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++)
    if (get(buf, t, i) != expect(op, t, p, off + i)) {
      if (!wrong) *first = i;
      wrong++;
    }
  return wrong;
}

static void *xalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "test: out of memory (%zu bytes)\n", bytes);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return p;
}

#define CHECK_OK(call, comm)                                                                   \
  do {                                                                                         \
    coll_result_t _rc = (call);                                                                \
    test_checks++;                                                                             \
    if (_rc != COLL_OK)                                                                        \
      test_fail(__FILE__, __LINE__, "%s -> %s: %s", #call, coll_result_string(_rc),            \
                coll_last_error(comm));                                                        \
  } while (0)

/* ---------------------------------------------------------------- ops */

static void run_allreduce(coll_comm_t *c, coll_algo_t algo, coll_dtype_t t, coll_op_t op,
                          size_t n, int inplace) {
  int p = coll_size(c), r = coll_rank(c);
  size_t esz = coll_dtype_size(t);
  char *send = xalloc(n * esz), *recv = xalloc(n * esz);
  for (size_t i = 0; i < n; i++) put(send, t, i, gen(op, r, i));
  memset(recv, 0x7f, n * esz);
  if (inplace) memcpy(recv, send, n * esz);
  coll_result_t rc = coll_allreduce_algo(inplace ? recv : send, recv, n, t, op, algo, c);
  test_checks++;
  if (rc != COLL_OK) {
    test_fail(__FILE__, __LINE__, "allreduce algo=%s %s %s n=%zu inplace=%d: %s: %s",
              coll_algo_name(algo), tname(t), coll_op_name(op), n, inplace,
              coll_result_string(rc), coll_last_error(c));
  } else {
    size_t first = 0, w = count_wrong(recv, t, op, p, 0, n, &first);
    test_checks++;
    if (w)
      test_fail(__FILE__, __LINE__, "allreduce algo=%s %s %s n=%zu inplace=%d: %zu wrong, first "
                "[%zu] = %g expected %g", coll_algo_name(algo), tname(t), coll_op_name(op), n,
                inplace, w, first, get(recv, t, first), expect(op, t, p, first));
    /* out of place must not touch the send buffer */
    if (!inplace)
      for (size_t i = 0; i < n; i++)
        if (get(send, t, i) != gen(op, r, i)) {
          test_fail(__FILE__, __LINE__, "allreduce modified its send buffer at %zu", i);
          break;
        }
  }
  free(send);
  free(recv);
}

static void run_reduce_scatter(coll_comm_t *c, coll_dtype_t t, coll_op_t op, size_t rc_n, int inplace) {
  int p = coll_size(c), r = coll_rank(c);
  size_t esz = coll_dtype_size(t), total = rc_n * (size_t)p;
  char *send = xalloc(total * esz), *out = xalloc(rc_n * esz);
  for (size_t i = 0; i < total; i++) put(send, t, i, gen(op, r, i));
  void *recv = inplace ? send + (size_t)r * rc_n * esz : out;
  coll_result_t rc = coll_reduce_scatter(send, recv, rc_n, t, op, c);
  test_checks++;
  if (rc != COLL_OK) {
    test_fail(__FILE__, __LINE__, "reduce_scatter %s %s n=%zu inplace=%d: %s: %s", tname(t),
              coll_op_name(op), rc_n, inplace, coll_result_string(rc), coll_last_error(c));
  } else {
    size_t first = 0, w = count_wrong(recv, t, op, p, (size_t)r * rc_n, rc_n, &first);
    test_checks++;
    if (w)
      test_fail(__FILE__, __LINE__, "reduce_scatter %s %s n=%zu inplace=%d: %zu wrong, first [%zu] "
                "= %g expected %g", tname(t), coll_op_name(op), rc_n, inplace, w, first,
                get(recv, t, first), expect(op, t, p, (size_t)r * rc_n + first));
  }
  free(send);
  free(out);
}

static void run_allgather(coll_comm_t *c, coll_dtype_t t, size_t n, int inplace) {
  int p = coll_size(c), r = coll_rank(c);
  size_t esz = coll_dtype_size(t), total = n * (size_t)p;
  char *send = xalloc(n * esz), *recv = xalloc(total * esz);
  memset(recv, 0x7f, total * esz);
  /* element i of rank q's block: gen(SUM, q, i) */
  char *src = inplace ? recv + (size_t)r * n * esz : send;
  for (size_t i = 0; i < n; i++) put(src, t, i, gen(COLL_SUM, r, i));
  coll_result_t rc = coll_allgather(src, recv, n, t, c);
  test_checks++;
  if (rc != COLL_OK) {
    test_fail(__FILE__, __LINE__, "allgather %s n=%zu inplace=%d: %s: %s", tname(t), n, inplace,
              coll_result_string(rc), coll_last_error(c));
  } else {
    size_t wrong = 0;
    for (int q = 0; q < p; q++)
      for (size_t i = 0; i < n; i++)
        if (get(recv, t, (size_t)q * n + i) != gen(COLL_SUM, q, i)) wrong++;
    test_checks++;
    if (wrong) test_fail(__FILE__, __LINE__, "allgather %s n=%zu inplace=%d: %zu wrong", tname(t), n, inplace, wrong);
  }
  free(send);
  free(recv);
}

static void run_broadcast(coll_comm_t *c, coll_dtype_t t, size_t n, int inplace, int root) {
  int r = coll_rank(c);
  size_t esz = coll_dtype_size(t);
  char *send = xalloc(n * esz), *recv = xalloc(n * esz);
  memset(recv, 0x7f, n * esz);
  for (size_t i = 0; i < n; i++) put(inplace ? recv : send, t, i, r == root ? gen(COLL_SUM, root, i) : 0);
  coll_result_t rc = inplace ? coll_broadcast(recv, n, t, root, c) : coll_broadcast2(send, recv, n, t, root, c);
  test_checks++;
  if (rc != COLL_OK) {
    test_fail(__FILE__, __LINE__, "broadcast %s n=%zu inplace=%d root=%d: %s: %s", tname(t), n,
              inplace, root, coll_result_string(rc), coll_last_error(c));
  } else {
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++)
      if (get(recv, t, i) != gen(COLL_SUM, root, i)) wrong++;
    test_checks++;
    if (wrong) test_fail(__FILE__, __LINE__, "broadcast %s n=%zu inplace=%d root=%d: %zu wrong", tname(t), n, inplace, root, wrong);
  }
  free(send);
  free(recv);
}

static void mode_ops(coll_comm_t *c) {
  int p = coll_size(c);
  size_t small[] = {0, 1, (size_t)(p - 1), (size_t)(p + 1), 4099};
  const coll_algo_t algos[] = {COLL_ALGO_RING, COLL_ALGO_RD, COLL_ALGO_MPI, COLL_ALGO_AUTO,
                               COLL_ALGO_RABENSEIFNER};
  const int nalgos = (int)(sizeof algos / sizeof algos[0]);
  const size_t nsmall = sizeof small / sizeof small[0];
  /* Every algorithm x dtype x op x small count x in/out of place. */
  for (int a = 0; a < nalgos; a++)
    for (int t = 0; t < COLL_DTYPE_COUNT; t++)
      for (int op = 0; op < COLL_OP_COUNT; op++)
        for (size_t k = 0; k < nsmall; k++)
          for (int ip = 0; ip < 2; ip++) run_allreduce(c, algos[a], (coll_dtype_t)t, (coll_op_t)op, small[k], ip);
  /* Large counts: every dtype with SUM on the ring (out of place and in place), every op on
   * fp32 at 1000003 for every algorithm, and the 16-bit types through AVG at 4M. */
  for (int t = 0; t < COLL_DTYPE_COUNT; t++)
    for (int ip = 0; ip < 2; ip++) {
      run_allreduce(c, COLL_ALGO_RING, (coll_dtype_t)t, COLL_SUM, 1000003, ip);
      run_allreduce(c, COLL_ALGO_RING, (coll_dtype_t)t, COLL_SUM, 4194304, ip);
    }
  for (int a = 0; a < nalgos; a++)
    for (int op = 0; op < COLL_OP_COUNT; op++)
      run_allreduce(c, algos[a], COLL_F32, (coll_op_t)op, 1000003, op % 2);
  run_allreduce(c, COLL_ALGO_RD, COLL_F32, COLL_SUM, 4194304, 0);
  run_allreduce(c, COLL_ALGO_RABENSEIFNER, COLL_I64, COLL_SUM, 1000003, 1);
  /* What auto picks (defaults: rd below 256 KiB, 1 MiB with 2 ranks; Rabenseifner below 16 MiB
   * on 4, 8, ... ranks; the ring otherwise). */
  if (!getenv("STRATA_COLL_RD_THRESHOLD") && !getenv("STRATA_COLL_RABENSEIFNER_MAX")) {
    int pof2 = p > 2 && (p & (p - 1)) == 0;
    CHECK_EQ_INT(coll_allreduce_auto_algo(c, 64 << 10), COLL_ALGO_RD);
    CHECK_EQ_INT(coll_allreduce_auto_algo(c, 512 << 10), p == 2 ? COLL_ALGO_RD : pof2 ? COLL_ALGO_RABENSEIFNER : COLL_ALGO_RING);
    CHECK_EQ_INT(coll_allreduce_auto_algo(c, 4 << 20), pof2 ? COLL_ALGO_RABENSEIFNER : COLL_ALGO_RING);
    CHECK_EQ_INT(coll_allreduce_auto_algo(c, 16 << 20), COLL_ALGO_RING);
  }
  run_allreduce(c, COLL_ALGO_RABENSEIFNER, COLL_BF16, COLL_AVG, 4194304, 0);
  run_allreduce(c, COLL_ALGO_AUTO, COLL_BF16, COLL_AVG, 4194304, 0);
  run_allreduce(c, COLL_ALGO_AUTO, COLL_F16, COLL_AVG, 4194304, 1);

  /* reduce-scatter: recvcount per rank */
  for (int t = 0; t < COLL_DTYPE_COUNT; t++)
    for (int op = 0; op < COLL_OP_COUNT; op++)
      for (size_t k = 0; k < nsmall; k++)
        for (int ip = 0; ip < 2; ip++) run_reduce_scatter(c, (coll_dtype_t)t, (coll_op_t)op, small[k], ip);
  for (int ip = 0; ip < 2; ip++) {
    run_reduce_scatter(c, COLL_F32, COLL_SUM, 1000003, ip);
    run_reduce_scatter(c, COLL_BF16, COLL_AVG, 4194304 / (size_t)p, ip);
  }
  run_reduce_scatter(c, COLL_I64, COLL_MAX, 1000003, 0);

  /* all-gather: sendcount per rank */
  for (int t = 0; t < COLL_DTYPE_COUNT; t++)
    for (size_t k = 0; k < nsmall; k++)
      for (int ip = 0; ip < 2; ip++) run_allgather(c, (coll_dtype_t)t, small[k], ip);
  for (int ip = 0; ip < 2; ip++) {
    run_allgather(c, COLL_F32, 1000003, ip);
    run_allgather(c, COLL_F16, 4194304 / (size_t)p, ip);
  }

  /* broadcast: roots 0 and p-1, both forms */
  for (int t = 0; t < COLL_DTYPE_COUNT; t++)
    for (size_t k = 0; k < nsmall; k++)
      for (int ip = 0; ip < 2; ip++) {
        run_broadcast(c, (coll_dtype_t)t, small[k], ip, 0);
        run_broadcast(c, (coll_dtype_t)t, small[k], ip, p - 1);
      }
  for (int ip = 0; ip < 2; ip++) {
    run_broadcast(c, COLL_F32, 1000003, ip, p / 2);
    run_broadcast(c, COLL_I64, 4194304, ip, p - 1);
  }
  CHECK_OK(coll_barrier(c), c);
}

/* Bytes this rank sent during one all-reduce (or, with algo < 0, reduce-scatter) of n. */
static uint64_t sent_by(coll_comm_t *c, int algo, coll_dtype_t t, size_t n) {
  uint64_t s0 = 0, s1 = 0, r;
  coll_traffic(c, &s0, &r);
  if (algo < 0) run_reduce_scatter(c, t, COLL_AVG, n, 0);
  else run_allreduce(c, (coll_algo_t)algo, t, COLL_SUM, n, 0);
  coll_traffic(c, &s1, &r);
  return s1 - s0;
}

static void mode_wire16(coll_comm_t *c) {
  int p = coll_size(c);
  size_t small[] = {0, 1, (size_t)(p - 1), (size_t)(p + 1), 4099};
  const coll_algo_t algos[] = {COLL_ALGO_RING, COLL_ALGO_RD, COLL_ALGO_RABENSEIFNER, COLL_ALGO_AUTO};
  const coll_dtype_t t16[] = {COLL_BF16, COLL_F16};
  /* bytes: the same calls with the fp32 work vector, then 16-bit values */
  uint64_t off_ring = sent_by(c, COLL_ALGO_RING, COLL_BF16, 1000003), off_rd = sent_by(c, COLL_ALGO_RD, COLL_BF16, 4099);
  uint64_t off_rs = sent_by(c, -1, COLL_BF16, 100003);
  coll_comm_set_wire16(c, 1);
  CHECK_EQ_INT(coll_comm_config(c)->wire16, 1);
  uint64_t on_ring = sent_by(c, COLL_ALGO_RING, COLL_BF16, 1000003), on_rd = sent_by(c, COLL_ALGO_RD, COLL_BF16, 4099);
  uint64_t on_rs = sent_by(c, -1, COLL_BF16, 100003);
  if (R == 0)
    printf("bytes sent, fp32 work vector -> 16-bit wire: ring %llu -> %llu, rd %llu -> %llu, reduce-scatter %llu -> %llu\n",
           (unsigned long long)off_ring, (unsigned long long)on_ring, (unsigned long long)off_rd,
           (unsigned long long)on_rd, (unsigned long long)off_rs, (unsigned long long)on_rs);
  CHECK_TRUE(2 * on_ring == off_ring && 2 * on_rd == off_rd && 2 * on_rs == off_rs);
  CHECK_TRUE(p == 1 || on_ring > 0);
  for (int a = 0; a < 4; a++)
    for (int k = 0; k < 2; k++)
      for (int op = 0; op < COLL_OP_COUNT; op++)
        for (size_t s = 0; s < sizeof small / sizeof small[0]; s++)
          for (int ip = 0; ip < 2; ip++) run_allreduce(c, algos[a], t16[k], (coll_op_t)op, small[s], ip);
  for (int k = 0; k < 2; k++)
    for (int op = 0; op < COLL_OP_COUNT; op++)
      for (size_t s = 0; s < sizeof small / sizeof small[0]; s++)
        for (int ip = 0; ip < 2; ip++) run_reduce_scatter(c, t16[k], (coll_op_t)op, small[s], ip);
  run_allreduce(c, COLL_ALGO_AUTO, COLL_BF16, COLL_AVG, 4194304, 1);
  run_allreduce(c, COLL_ALGO_MPI, COLL_BF16, COLL_AVG, 4099, 0); /* MPI keeps the fp32 vector */
  run_reduce_scatter(c, COLL_BF16, COLL_AVG, 4194304 / (size_t)p, 1);
  CHECK_OK(coll_barrier(c), c);
}

/* ---------------------------------------------------------------- p2p */

static void mode_p2p(coll_comm_t *c) {
  int p = coll_size(c), r = coll_rank(c);
  size_t counts[] = {0, 1, (size_t)(p + 1), 1000003};
  for (size_t k = 0; k < 4; k++)
    for (int t = 0; t < COLL_DTYPE_COUNT; t++) {
      size_t n = counts[k], esz = coll_dtype_size((coll_dtype_t)t);
      char *a = xalloc(n * esz), *b = xalloc(n * esz);
      for (size_t i = 0; i < n; i++) put(a, (coll_dtype_t)t, i, gen(COLL_SUM, r, i));
      /* ring shift: receive from the left neighbour */
      int dst = (r + 1) % p, src = (r - 1 + p) % p;
      CHECK_OK(coll_sendrecv(a, n, dst, b, n, src, (coll_dtype_t)t, 7, c), c);
      size_t wrong = 0;
      for (size_t i = 0; i < n; i++)
        if (get(b, (coll_dtype_t)t, i) != gen(COLL_SUM, src, i)) wrong++;
      CHECK_EQ_INT(wrong, 0);
      /* blocking pairs: even ranks send to the next odd rank, which echoes back */
      if (p > 1 && !(p % 2 == 1 && r == p - 1)) {
        int peer = r % 2 == 0 ? r + 1 : r - 1;
        if (r % 2 == 0) {
          CHECK_OK(coll_send(a, n, (coll_dtype_t)t, peer, 3, c), c);
          CHECK_OK(coll_recv(b, n, (coll_dtype_t)t, peer, 4, c), c);
          wrong = 0;
          for (size_t i = 0; i < n; i++)
            if (get(b, (coll_dtype_t)t, i) != gen(COLL_SUM, r, i)) wrong++;
          CHECK_EQ_INT(wrong, 0);
        } else {
          CHECK_OK(coll_recv(b, n, (coll_dtype_t)t, peer, 3, c), c);
          CHECK_OK(coll_send(b, n, (coll_dtype_t)t, peer, 4, c), c);
        }
      }
      free(a);
      free(b);
    }
  /* Non-blocking: several messages with distinct tags, completed in reverse order. */
  if (p > 1) {
    enum { K = 4 };
    int dst = (r + 1) % p, src = (r - 1 + p) % p;
    int32_t out[K][100], in[K][100];
    coll_request_t *rs[K], *ss[K];
    for (int k = 0; k < K; k++) {
      for (int i = 0; i < 100; i++) out[k][i] = r * 1000 + k * 100 + i;
      CHECK_OK(coll_irecv(in[k], 100, COLL_I32, src, 100 + k, c, &rs[k]), c);
    }
    for (int k = K - 1; k >= 0; k--) CHECK_OK(coll_isend(out[k], 100, COLL_I32, dst, 100 + k, c, &ss[k]), c);
    for (int k = K - 1; k >= 0; k--) CHECK_OK(coll_wait(rs[k]), c);
    for (int k = 0; k < K; k++) CHECK_OK(coll_wait(ss[k]), c);
    for (int k = 0; k < K; k++) CHECK_EQ_INT(in[k][99], src * 1000 + k * 100 + 99);
  }
  /* Count mismatch: the receiver posts more (then fewer) elements than were sent. */
  if (p > 1 && r < 2) {
    int32_t buf[16] = {0};
    if (r == 0) {
      CHECK_OK(coll_send(buf, 8, COLL_I32, 1, 9, c), c);
      CHECK_OK(coll_send(buf, 16, COLL_I32, 1, 10, c), c);
    } else {
      coll_result_t rc = coll_recv(buf, 16, COLL_I32, 0, 9, c);
      CHECK_EQ_INT(rc, COLL_ERR_MISMATCH);
      CHECK_TRUE(strstr(coll_last_error(c), "rank 0") != NULL);
      rc = coll_recv(buf, 8, COLL_I32, 0, 10, c);
      CHECK_EQ_INT(rc, COLL_ERR_MISMATCH);
    }
  }
  /* Bad arguments are refused with a message. */
  int32_t x = 0;
  CHECK_EQ_INT(coll_send(&x, 1, COLL_I32, p, 0, c), COLL_ERR_ARG);
  CHECK_TRUE(strstr(coll_last_error(c), "peer") != NULL);
  CHECK_EQ_INT(coll_send(&x, 1, COLL_I32, 0, 1 << 24, c), COLL_ERR_ARG);
  CHECK_EQ_INT(coll_allreduce(NULL, NULL, 5, COLL_F32, COLL_SUM, c), COLL_ERR_ARG);
  CHECK_EQ_INT(coll_allreduce(&x, &x, 1, (coll_dtype_t)99, COLL_SUM, c), COLL_ERR_ARG);
  CHECK_TRUE(strstr(coll_last_error(c), "dtype") != NULL);
  CHECK_EQ_INT(coll_allreduce(&x, &x, 1, COLL_I32, (coll_op_t)99, c), COLL_ERR_ARG);
  CHECK_EQ_INT(coll_broadcast(&x, 1, COLL_I32, p, c), COLL_ERR_ARG);
  CHECK_TRUE(strstr(coll_last_error(c), "root") != NULL);
  CHECK_OK(coll_barrier(c), c);
}

/* ---------------------------------------------------------------- split */

static void mode_split(coll_comm_t *world) {
  int p = coll_size(world), r = coll_rank(world);
  coll_comm_t *sub = NULL;
  /* colour = parity, key = -rank: members ordered by decreasing world rank */
  CHECK_OK(coll_comm_split(world, r % 2, -r, &sub), world);
  if (!sub) return;
  int members = (p - r % 2 + 1) / 2;
  CHECK_EQ_INT(coll_size(sub), members);
  int last = r % 2 + 2 * (members - 1); /* highest world rank of my colour */
  CHECK_EQ_INT(coll_rank(sub), (last - r) / 2);
  CHECK_EQ_INT(coll_world_rank(sub, coll_rank(sub)), r);
  /* sum of world ranks of my colour */
  int64_t v = r, want = 0;
  for (int q = r % 2; q < p; q += 2) want += q;
  CHECK_OK(coll_allreduce(&v, &v, 1, COLL_I64, COLL_SUM, sub), sub);
  CHECK_EQ_INT(v, want);
  /* all-gather of world ranks: reversed order */
  int32_t *all = xalloc(sizeof(int32_t) * (size_t)members), me = r;
  CHECK_OK(coll_allgather(&me, all, 1, COLL_I32, sub), sub);
  for (int k = 0; k < members; k++) CHECK_EQ_INT(all[k], last - 2 * k);
  free(all);
  /* a large ring all-reduce and a broadcast inside the sub-communicator */
  size_t n = 300007;
  float *buf = xalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) buf[i] = (float)((i + (size_t)r) % 5);
  CHECK_OK(coll_allreduce_algo(buf, buf, n, COLL_F32, COLL_MAX, COLL_ALGO_RING, sub), sub);
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++) {
    float m = 0;
    for (int q = r % 2; q < p; q += 2) m = fmaxf(m, (float)((i + (size_t)q) % 5));
    if (buf[i] != m) wrong++;
  }
  CHECK_EQ_INT(wrong, 0);
  free(buf);
  int root_val = coll_rank(sub) == 0 ? 12345 : -1;
  CHECK_OK(coll_broadcast(&root_val, 1, COLL_I32, 0, sub), sub);
  CHECK_EQ_INT(root_val, 12345);
  /* nested split: a negative colour leaves a rank out (NULL communicator) */
  coll_comm_t *sub2 = NULL;
  CHECK_OK(coll_comm_split(sub, coll_rank(sub) == 0 ? -1 : 0, coll_rank(sub), &sub2), sub);
  if (coll_rank(sub) == 0) CHECK_TRUE(sub2 == NULL);
  else {
    CHECK_TRUE(sub2 != NULL);
    if (sub2) {
      CHECK_EQ_INT(coll_size(sub2), members - 1);
      int32_t one = 1;
      CHECK_OK(coll_allreduce(&one, &one, 1, COLL_I32, COLL_SUM, sub2), sub2);
      CHECK_EQ_INT(one, members - 1);
    }
  }
  coll_comm_destroy(sub2);
  /* the parent still works after the children were made */
  int64_t w = 1;
  CHECK_OK(coll_allreduce(&w, &w, 1, COLL_I64, COLL_SUM, world), world);
  CHECK_EQ_INT(w, p);
  coll_comm_destroy(sub);
}

/* ---------------------------------------------------------------- nonblocking */

static volatile double sink;
static void compute_a_little(void) { /* stand-in for backward-pass work between polls */
  double s = 0;
  for (int i = 0; i < 20000; i++) s += sqrt((double)i);
  sink = s;
}

static void mode_nonblocking(coll_comm_t *c) {
  int p = coll_size(c), r = coll_rank(c);
  enum { K = 5 };
  const size_t n[K] = {7, 1000, 100003, 1000003, 0};
  const coll_dtype_t t[K] = {COLL_F32, COLL_I64, COLL_BF16, COLL_F32, COLL_F64};
  const coll_op_t op[K] = {COLL_SUM, COLL_MAX, COLL_AVG, COLL_SUM, COLL_SUM};
  for (int round = 0; round < 3; round++) {
    void *buf[K];
    coll_request_t *req[K];
    for (int k = 0; k < K; k++) {
      size_t esz = coll_dtype_size(t[k]);
      buf[k] = xalloc(n[k] * esz);
      for (size_t i = 0; i < n[k]; i++) put(buf[k], t[k], i, gen(op[k], r, i));
      CHECK_OK(coll_iallreduce(buf[k], buf[k], n[k], t[k], op[k], c, &req[k]), c);
    }
    /* A blocking all-reduce while the others are in flight. */
    int64_t one = 1;
    CHECK_OK(coll_allreduce(&one, &one, 1, COLL_I64, COLL_SUM, c), c);
    CHECK_EQ_INT(one, p);
    int pending = K, polls = 0;
    int done[K] = {0};
    while (pending && polls < 10000000) {
      compute_a_little();
      for (int k = round == 1 ? K - 1 : 0; k >= 0 && k < K; k += round == 1 ? -1 : 1) {
        if (done[k] || !req[k]) continue;
        int d = 0;
        CHECK_OK(coll_test(req[k], &d), c);
        if (d) done[k] = 1, pending--;
      }
      polls++;
    }
    CHECK_EQ_INT(pending, 0);
    for (int k = 0; k < K; k++) {
      if (req[k]) CHECK_OK(coll_wait(req[k]), c);
      size_t first = 0, w = count_wrong(buf[k], t[k], op[k], p, 0, n[k], &first);
      CHECK_EQ_INT(w, 0);
      free(buf[k]);
    }
  }
  /* coll_wait alone (no coll_test) completes several in flight, waited in reverse order. */
  float a[3][5000];
  coll_request_t *rq[3];
  for (int k = 0; k < 3; k++) {
    for (int i = 0; i < 5000; i++) a[k][i] = (float)(k + 1);
    CHECK_OK(coll_iallreduce(a[k], a[k], 5000, COLL_F32, COLL_SUM, c, &rq[k]), c);
  }
  for (int k = 2; k >= 0; k--) CHECK_OK(coll_wait(rq[k]), c);
  for (int k = 0; k < 3; k++) CHECK_EQ_INT((int)a[k][4999], (k + 1) * p);
}

/* ---------------------------------------------------------------- timeout */

static void mode_timeout(void) {
  coll_config_t cfg = coll_config_default();
  cfg.timeout_s = 2.0;
  coll_comm_t *c;
  if (coll_comm_create(MPI_COMM_WORLD, &cfg, &c) != COLL_OK) {
    test_fail(__FILE__, __LINE__, "comm create failed");
    return;
  }
  int p = coll_size(c), r = coll_rank(c);
  if (p < 2) {
    coll_comm_destroy(c);
    return;
  }
  const size_t sizes[2] = {10, 100000}; /* rd and ring */
  for (int k = 0; k < 2; k++) {
    float *buf = xalloc(sizes[k] * sizeof(float));
    for (size_t i = 0; i < sizes[k]; i++) buf[i] = 1;
    if (r != p - 1) { /* rank p-1 never joins */
      double t0 = MPI_Wtime();
      coll_result_t rc = coll_allreduce_algo(buf, buf, sizes[k], COLL_F32, COLL_SUM,
                                             k ? COLL_ALGO_RING : COLL_ALGO_RD, c);
      double dt = MPI_Wtime() - t0;
      CHECK_EQ_INT(rc, COLL_ERR_TIMEOUT);
      const char *msg = coll_last_error(c);
      CHECK_TRUE(strstr(msg, "timed out") && strstr(msg, "allreduce") && strstr(msg, "world rank") &&
                 strstr(msg, "bytes outstanding"));
      CHECK_TRUE(dt >= 1.9 && dt < 60);
      if (r == 0) { /* rank 0's first peer to hear from is the absent rank (ring: left neighbour) */
        char want[64];
        snprintf(want, sizeof want, "rank %d (world rank %d, host ", p - 1, p - 1);
        if (k == 1 || p == 2) CHECK_TRUE(strstr(msg, want) != NULL);
        if (!strstr(msg, want) && (k == 1 || p == 2)) fprintf(stderr, "message: %s\n", msg);
      }
    }
    free(buf);
  }
  /* point to point: waiting for a message that never comes */
  if (r == 0) {
    int32_t x;
    coll_result_t rc = coll_recv(&x, 1, COLL_I32, 1, 5, c);
    CHECK_EQ_INT(rc, COLL_ERR_TIMEOUT);
    CHECK_TRUE(strstr(coll_last_error(c), "rank 1 (world rank 1, host ") != NULL);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  coll_comm_destroy(c);
}

/* ---------------------------------------------------------------- idle waits */

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Rank 0 sends each other rank a message after 3 s, three times the 1 s timeout. The receivers
 * wait with coll_wait_for: no COLL_ERR_TIMEOUT, the message arrives, and the wait costs little
 * CPU (a spinning wait would use one CPU-second per second; the back-off's polls about 0.3%; the
 * bound of 10% leaves room for a loaded machine). A plain coll_wait on the same kind of receive
 * still times out, a zero max_s polls once, and coll_cancel drops a receive nobody sends to. */
static void mode_idle(void) {
  coll_config_t cfg = coll_config_default();
  cfg.timeout_s = 1.0;
  coll_comm_t *c;
  if (coll_comm_create(MPI_COMM_WORLD, &cfg, &c) != COLL_OK) {
    test_fail(__FILE__, __LINE__, "comm create failed");
    return;
  }
  int p = coll_size(c), r = coll_rank(c);
  if (p < 2) {
    coll_comm_destroy(c);
    return;
  }
  const double delay_s = 3.0;
  if (r == 0) {
    struct timespec ts = {3, 0};
    nanosleep(&ts, NULL);
    for (int q = 1; q < p; q++) {
      int32_t v = 1000 + q;
      CHECK_OK(coll_send(&v, 1, COLL_I32, q, 7, c), c);
    }
  } else {
    int32_t v = -1;
    coll_request_t *req;
    CHECK_OK(coll_irecv(&v, 1, COLL_I32, 0, 7, c, &req), c);
    int done = 0;
    CHECK_OK(coll_wait_for(req, 0, &done), c); /* one poll: nothing yet */
    CHECK_EQ_INT(done, 0);
    double t0 = MPI_Wtime(), cpu0 = cpu_s();
    int polls = 0;
    while (!done && MPI_Wtime() - t0 < 30) {
      coll_result_t rc = coll_wait_for(req, 0.5, &done);
      CHECK_EQ_INT(rc, COLL_OK);
      if (rc != COLL_OK) break;
      polls++;
    }
    double wall = MPI_Wtime() - t0, cpu = cpu_s() - cpu0;
    CHECK_EQ_INT(done, 1);
    CHECK_EQ_INT(v, 1000 + r);
    CHECK_TRUE(wall > delay_s - 1.0); /* it really waited past the 1 s timeout */
    CHECK_TRUE(polls >= 2);           /* each call returned after its 0.5 s */
    CHECK_TRUE(cpu < 0.10 * wall);
    printf("rank %d: idle wait %.2f s used %.3f CPU-s (%.2f%%)\n", r, wall, cpu, 100 * cpu / wall);
    /* a receive nobody sends to: cancelled after a short wait */
    int32_t w;
    CHECK_OK(coll_irecv(&w, 1, COLL_I32, 0, 8, c, &req), c);
    CHECK_OK(coll_wait_for(req, 0.05, &done), c);
    CHECK_EQ_INT(done, 0);
    coll_cancel(req);
  }
  /* the same receive through coll_wait keeps the deadline */
  if (r == 1) {
    int32_t w;
    coll_request_t *req;
    CHECK_OK(coll_irecv(&w, 1, COLL_I32, 0, 9, c, &req), c);
    CHECK_EQ_INT(coll_wait(req), COLL_ERR_TIMEOUT);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  coll_comm_destroy(c);
}

/* ---------------------------------------------------------------- mismatch */

static void mode_mismatch(void) {
  coll_config_t cfg = coll_config_default();
  cfg.check = 1;
  cfg.timeout_s = 60;
  coll_comm_t *c;
  if (coll_comm_create(MPI_COMM_WORLD, &cfg, &c) != COLL_OK) {
    test_fail(__FILE__, __LINE__, "comm create failed");
    return;
  }
  int p = coll_size(c), r = coll_rank(c);
  float buf[64] = {0};
  if (p >= 2) {
    /* different count on the last rank */
    coll_result_t rc = coll_allreduce(buf, buf, r == p - 1 ? 33 : 32, COLL_F32, COLL_SUM, c);
    CHECK_EQ_INT(rc, COLL_ERR_MISMATCH);
    char want[64];
    snprintf(want, sizeof want, "rank %d (world rank %d)", p - 1, p - 1);
    CHECK_TRUE(strstr(coll_last_error(c), want) != NULL);
    CHECK_TRUE(strstr(coll_last_error(c), "count=33") != NULL);
    /* different dtype on rank 1, broadcast */
    rc = coll_broadcast(buf, 8, r == 1 ? COLL_I32 : COLL_F32, 0, c);
    CHECK_EQ_INT(rc, COLL_ERR_MISMATCH);
    CHECK_TRUE(strstr(coll_last_error(c), "int32") != NULL);
    /* different operations: all-gather vs all-reduce */
    rc = r == 0 ? coll_allgather(buf, buf, 1, COLL_F32, c) : coll_allreduce(buf, buf, 1, COLL_F32, COLL_SUM, c);
    CHECK_EQ_INT(rc, COLL_ERR_MISMATCH);
  }
  /* agreement passes, and the communicator is still usable after the failures */
  for (int i = 0; i < 64; i++) buf[i] = (float)i;
  CHECK_OK(coll_allreduce(buf, buf, 64, COLL_F32, COLL_SUM, c), c);
  CHECK_EQ_INT((int)buf[63], 63 * p);
  CHECK_OK(coll_reduce_scatter(buf, buf + r, 1, COLL_F32, COLL_MAX, c), c);
  CHECK_OK(coll_barrier(c), c);
  coll_comm_destroy(c);
}

/* ---------------------------------------------------------------- units */

static void mode_units(void) {
  /* Bit patterns from PyTorch 1.13: torch.tensor(v, dtype=float32).to(bfloat16 / float16). */
  const float v[] = {1.0f / 3, -2.5f, 65504.0f, 65520.0f, 1e-7f, 6.1e-5f, 3.14159265f, 1e30f,
                     -0.0f, 1.00390625f, 1.01171875f, 257.0f, 0x1.8p-24f};
  const uint16_t bf[] = {0x3eab, 0xc020, 0x4780, 0x4780, 0x33d7, 0x3880, 0x4049, 0x714a,
                         0x8000, 0x3f80, 0x3f82, 0x4380, 0x33c0};
  const uint16_t hf[] = {0x3555, 0xc100, 0x7bff, 0x7c00, 0x0002, 0x03ff, 0x4248, 0x7c00,
                         0x8000, 0x3c04, 0x3c0c, 0x5c04, 0x0002};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    CHECK_EQ_INT(coll_float_to_bf16(v[i]), bf[i]);
    CHECK_EQ_INT(coll_float_to_half(v[i]), hf[i]);
  }
  /* Every finite half converts to float and back unchanged. */
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;
    if (coll_float_to_half(coll_half_to_float((uint16_t)h)) != h) bad++;
  }
  CHECK_EQ_INT(bad, 0);
  CHECK_NEAR(coll_half_to_float(0x3555), 0.333251953125, 0);
  /* Invalid environment values are reported by comm creation. */
  setenv("STRATA_COLL_CHUNK_BYTES", "12Q", 1);
  coll_config_t cfg = coll_config_default();
  CHECK_TRUE(cfg.env_error != NULL && strstr(cfg.env_error, "STRATA_COLL_CHUNK_BYTES"));
  coll_comm_t *c = NULL;
  CHECK_EQ_INT(coll_comm_create(MPI_COMM_WORLD, &cfg, &c), COLL_ERR_ARG);
  unsetenv("STRATA_COLL_CHUNK_BYTES");
  setenv("STRATA_COLL_CHUNK_BYTES", "256K", 1);
  setenv("STRATA_COLL_ALGO", "rd", 1);
  cfg = coll_config_default();
  CHECK_EQ_INT(cfg.chunk_bytes, 256 * 1024);
  CHECK_EQ_INT(cfg.algo, COLL_ALGO_RD);
  CHECK_TRUE(cfg.env_error == NULL);
  /* An explicit chunk size is kept by the communicator. */
  CHECK_EQ_INT(coll_comm_create(MPI_COMM_WORLD, &cfg, &c), COLL_OK);
  CHECK_EQ_INT(coll_comm_config(c)->chunk_bytes, 256 * 1024);
  coll_comm_destroy(c);
  unsetenv("STRATA_COLL_CHUNK_BYTES");
  unsetenv("STRATA_COLL_ALGO");
  setenv("STRATA_COLL_ALGO", "rabenseifner", 1);
  CHECK_EQ_INT(coll_config_default().algo, COLL_ALGO_RABENSEIFNER);
  setenv("STRATA_COLL_ALGO", "rh", 1);
  cfg = coll_config_default();
  CHECK_TRUE(cfg.env_error && strstr(cfg.env_error, "rabenseifner"));
  unsetenv("STRATA_COLL_ALGO");
  setenv("STRATA_COLL_RABENSEIFNER_MAX", "4M", 1);
  CHECK_EQ_INT(coll_config_default().rabenseifner_max_bytes, 4 << 20);
  setenv("STRATA_COLL_RABENSEIFNER_MAX", "lots", 1);
  cfg = coll_config_default();
  CHECK_TRUE(cfg.env_error && strstr(cfg.env_error, "STRATA_COLL_RABENSEIFNER_MAX"));
  unsetenv("STRATA_COLL_RABENSEIFNER_MAX");
  /* Unset, the chunk size is the transport's default: 512 KiB over mpi, 1 MiB over ofi. */
  cfg = coll_config_default();
  CHECK_EQ_INT(cfg.chunk_bytes, 0);
  CHECK_EQ_INT(coll_comm_create(MPI_COMM_WORLD, &cfg, &c), COLL_OK);
  CHECK_EQ_INT(coll_comm_config(c)->chunk_bytes,
               cfg.transport == COLL_TRANSPORT_OFI ? 1024 * 1024 : 512 * 1024);
  coll_comm_destroy(c);
  /* Streaming-store threshold: bytes with a suffix, or "off"; anything else is refused. */
  setenv("STRATA_COLL_STREAM_BYTES", "2M", 1);
  CHECK_EQ_INT(coll_config_default().stream_bytes, 2 << 20);
  setenv("STRATA_COLL_STREAM_BYTES", "off", 1);
  CHECK_TRUE(coll_config_default().stream_bytes == SIZE_MAX);
  setenv("STRATA_COLL_STREAM_BYTES", "fast", 1);
  cfg = coll_config_default();
  CHECK_TRUE(cfg.env_error != NULL && strstr(cfg.env_error, "STRATA_COLL_STREAM_BYTES"));
  unsetenv("STRATA_COLL_STREAM_BYTES");
  setenv("STRATA_COLL_HUGEPAGES", "yes", 1);
  cfg = coll_config_default();
  CHECK_TRUE(cfg.env_error != NULL && strstr(cfg.env_error, "STRATA_COLL_HUGEPAGES"));
  unsetenv("STRATA_COLL_HUGEPAGES");
}

/* ---------------------------------------------------------------- tune */

static coll_comm_t *tune_comm_checked(const char *table, size_t chunk_bytes, int check) {
  coll_config_t cfg = coll_config_default();
  cfg.tune_file = table;
  cfg.check = check;
  cfg.chunk_bytes = chunk_bytes;
  cfg.algo = COLL_ALGO_AUTO;
  coll_comm_t *c = NULL;
  CHECK_EQ_INT(coll_comm_create(MPI_COMM_WORLD, &cfg, &c), COLL_OK);
  return c;
}

static coll_comm_t *tune_comm(const char *table, size_t chunk_bytes) { return tune_comm_checked(table, chunk_bytes, 0); }

/* A communicator on `table` with cfg.stream_bytes set by the caller. */
static coll_comm_t *tune_comm_stream(const char *table, size_t stream_bytes) {
  coll_config_t cfg = coll_config_default();
  cfg.tune_file = table;
  cfg.stream_bytes = stream_bytes;
  coll_comm_t *c = NULL;
  CHECK_EQ_INT(coll_comm_create(MPI_COMM_WORLD, &cfg, &c), COLL_OK);
  return c;
}

static coll_tune_rule_t tune_rule(int ranks, const char *transport, coll_dtype_t t, int in_place, size_t from,
                                  coll_algo_t algo, size_t chunk) {
  coll_tune_rule_t r;
  memset(&r, 0, sizeof r);
  r.ranks = ranks;
  snprintf(r.transport, sizeof r.transport, "%s", transport);
  r.dtype = t;
  r.in_place = in_place;
  r.from_bytes = from;
  r.algo = algo;
  r.chunk_bytes = chunk;
  r.stream = -1; /* cfg.stream_bytes decides */
  return r;
}

static coll_tune_rule_t with_stream(coll_tune_rule_t r, int stream) {
  r.stream = stream;
  return r;
}

/* Rank 0 writes `text` to path; everyone waits for it. */
static void tune_write_text(const char *path, const char *text) {
  if (R == 0) {
    FILE *f = fopen(path, "w");
    CHECK_TRUE(f != NULL);
    if (f) {
      fputs(text, f);
      fclose(f);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

static void check_choice_at(coll_comm_t *c, size_t bytes, coll_dtype_t t, int in_place, coll_algo_t algo,
                            size_t chunk) {
  size_t got_chunk = 0;
  coll_algo_t got = coll_allreduce_auto_choice(c, bytes, t, in_place, &got_chunk);
  test_checks++;
  if (got != algo || got_chunk != chunk)
    test_fail(__FILE__, __LINE__, "auto at %zu B of %s %s: %s with %zu-byte chunks, expected %s with %zu",
              bytes, coll_dtype_name(t), in_place ? "in place" : "out of place", coll_algo_name(got), got_chunk,
              coll_algo_name(algo), chunk);
}

static void check_choice(coll_comm_t *c, size_t bytes, coll_dtype_t t, coll_algo_t algo, size_t chunk) {
  check_choice_at(c, bytes, t, 0, algo, chunk);
}

/* Both placements follow the built-in rules (plain has no table) at sizes 0 and 1 B to 64 MiB. */
static void check_builtin(coll_comm_t *c, coll_comm_t *plain, coll_dtype_t t, size_t dflt_chunk) {
  for (int ip = 0; ip < 2; ip++)
    for (size_t b = 0; b <= (64u << 20); b = b ? b * 4 : 1)
      check_choice_at(c, b, t, ip, coll_allreduce_auto_choice(plain, b, t, ip, NULL), dflt_chunk);
}

/* One rule of a version 2 table for this rank count and transport tn, its other fields as given
 * (JSON text, so a test can put a wrong type there), then `extra` (", \"key\": value" or ""). */
static void json_rule(char *buf, size_t len, const char *tn, const char *from, const char *place, const char *algo,
                      const char *chunk, const char *extra) {
  snprintf(buf, len, "{\"ranks\": %d, \"transport\": \"%s\", \"dtype\": \"float\", \"placement\": \"%s\", "
           "\"from_bytes\": %s, \"algo\": \"%s\", \"chunk_bytes\": %s%s}", P, tn, place, from, algo, chunk, extra);
}

static void mode_tune(void) {
  char path[256];
  long id = (long)getpid();
  MPI_Bcast(&id, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  snprintf(path, sizeof path, "/tmp/strata_coll_tune_test_%ld/coll_tune.json", id); /* dir made by save */
  coll_comm_t *plain = tune_comm("off", 0);
  if (!plain) return;
  const char *tn = coll_transport_name(plain);
  size_t dflt_chunk = coll_comm_config(plain)->chunk_bytes;
  CHECK_TRUE(strstr(coll_tune_describe(plain), "built-in rules") != NULL);
  /* Round trip: the rules below, every algorithm at least once in each placement, written (in
   * another order than the file's) and loaded. */
  coll_tune_rule_t rules[] = {
      tune_rule(P, tn, COLL_F32, 1, 0, COLL_ALGO_RING, 2048),
      tune_rule(P, tn, COLL_F32, 1, 8192, COLL_ALGO_MPI, 0),
      with_stream(tune_rule(P, tn, COLL_F32, 1, 65536, COLL_ALGO_RD, 0), 0),
      tune_rule(P, tn, COLL_F32, 1, 1 << 20, COLL_ALGO_RABENSEIFNER, 4096),
      tune_rule(P, tn, COLL_F32, 0, 0, COLL_ALGO_RD, 0),
      with_stream(tune_rule(P, tn, COLL_F32, 0, 4096, COLL_ALGO_RING, 4096), 1),
      tune_rule(P, tn, COLL_F32, 0, 65536, COLL_ALGO_RABENSEIFNER, 8192),
      tune_rule(P, tn, COLL_F32, 0, 1 << 20, COLL_ALGO_MPI, 0),
      tune_rule(P, tn, COLL_F32, 0, 4 << 20, COLL_ALGO_RING, 0),
      tune_rule(P, tn, COLL_BF16, 0, 0, COLL_ALGO_RING, 1024),
  };
  const int nrules = (int)(sizeof rules / sizeof rules[0]);
  char err[512] = "";
  if (R == 0) {
    CHECK_EQ_INT(coll_tune_save(path, rules, nrules, err, sizeof err), COLL_OK);
    if (err[0]) printf("coll_tune_save: %s\n", err);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  coll_comm_t *c = tune_comm(path, 0);
  if (c) {
    CHECK_TRUE(strstr(coll_tune_describe(c), "table /tmp/strata_coll_tune_test_") != NULL);
    check_choice(c, 100, COLL_F32, COLL_ALGO_RD, dflt_chunk);
    check_choice(c, 5000, COLL_F32, COLL_ALGO_RING, 4096);
    check_choice(c, 70000, COLL_F32, COLL_ALGO_RABENSEIFNER, 8192);
    check_choice(c, 2 << 20, COLL_F32, COLL_ALGO_MPI, dflt_chunk);
    check_choice(c, 8 << 20, COLL_F32, COLL_ALGO_RING, dflt_chunk);
    check_choice(c, 10, COLL_BF16, COLL_ALGO_RING, 1024);
    check_choice_at(c, 100, COLL_F32, 1, COLL_ALGO_RING, 2048); /* in place: rules of its own */
    check_choice_at(c, 8192, COLL_F32, 1, COLL_ALGO_MPI, dflt_chunk);
    check_choice_at(c, 70000, COLL_F32, 1, COLL_ALGO_RD, dflt_chunk);
    check_choice_at(c, 64 << 20, COLL_F32, 1, COLL_ALGO_RABENSEIFNER, 4096);
    check_choice_at(c, 100, COLL_BF16, 1, coll_allreduce_auto_choice(plain, 100, COLL_BF16, 1, NULL), dflt_chunk);
    CHECK_EQ_INT(coll_allreduce_auto_algo(c, 70000), COLL_ALGO_RABENSEIFNER);
    check_builtin(c, plain, COLL_F64, dflt_chunk); /* fp64 has no rules: built-in */
    /* streaming stores: the rule's where it says (true out of place at 5000 B, false in place at
     * 70000 B), else cfg.stream_bytes as without a table (out of place from 8 MiB, in place
     * always) */
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 5000, COLL_F32, 0), 1);
    CHECK_EQ_INT(coll_allreduce_auto_streams(plain, 5000, COLL_F32, 0), 0);
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 70000, COLL_F32, 1), 0);
    CHECK_EQ_INT(coll_allreduce_auto_streams(plain, 70000, COLL_F32, 1), 1);
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 100, COLL_F32, 1), 1);
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 8 << 20, COLL_F32, 0), 1);
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 2 << 20, COLL_F32, 0), 0);
    /* cfg.stream_bytes counts the bytes the sums work on: bf16 is summed in fp32 */
    CHECK_EQ_INT(coll_allreduce_auto_streams(plain, 5 << 20, COLL_F32, 0), 0);
    CHECK_EQ_INT(coll_allreduce_auto_streams(plain, 5 << 20, COLL_BF16, 0), 1);
    /* Every algorithm the table picks, exact, in and out of place (sizes inside each rule). */
    const size_t counts[] = {1, (size_t)P + 1, 4099, 30001, 300007, 1100003};
    for (int k = 0; k < 6; k++)
      for (int ip = 0; ip < 2; ip++) {
        run_allreduce(c, COLL_ALGO_AUTO, COLL_F32, COLL_SUM, counts[k], ip);
        run_allreduce(c, COLL_ALGO_AUTO, COLL_F32, COLL_AVG, counts[k], ip);
      }
    run_allreduce(c, COLL_ALGO_AUTO, COLL_BF16, COLL_SUM, 5003, 1);
    run_allreduce(c, COLL_ALGO_AUTO, COLL_BF16, COLL_SUM, 5003, 0);
    coll_comm_t *sub = NULL; /* a split of the same size keeps the table */
    CHECK_EQ_INT(coll_comm_split(c, 0, R, &sub), COLL_OK);
    if (sub) check_choice(sub, 5000, COLL_F32, COLL_ALGO_RING, 4096);
    coll_comm_destroy(sub);
    coll_comm_destroy(c);
  }
  /* The placement decides the algorithm that runs: with the call check on, ranks calling at
   * 4099 floats (16396 B: out of place ring, in place mpi) with different placements disagree
   * on the algorithm, and every rank reports it. */
  if (P >= 2 && (c = tune_comm_checked(path, 0, 1))) {
    float *x = calloc(4099, sizeof *x), *y = calloc(4099, sizeof *y);
    if (x && y) {
      coll_result_t rc = coll_allreduce(x, R == P - 1 ? x : y, 4099, COLL_F32, COLL_SUM, c);
      CHECK_EQ_INT(rc, COLL_ERR_MISMATCH);
      test_checks++;
      if (!strstr(coll_last_error(c), "mpi") || !strstr(coll_last_error(c), "ring"))
        test_fail(__FILE__, __LINE__, "the mismatch does not name both algorithms: %s", coll_last_error(c));
      for (int ip = 0; ip < 2; ip++) /* alike on every rank, it passes */
        CHECK_OK(coll_allreduce(x, ip ? x : y, 4099, COLL_F32, COLL_SUM, c), c);
    }
    free(x);
    free(y);
    coll_comm_destroy(c);
  }
  /* An explicit chunk size wins over the table's, and so does an explicit cfg.stream_bytes. */
  if ((c = tune_comm(path, 2048))) {
    check_choice(c, 5000, COLL_F32, COLL_ALGO_RING, 2048);
    run_allreduce(c, COLL_ALGO_AUTO, COLL_F32, COLL_SUM, 30001, 1);
    coll_comm_destroy(c);
  }
  if ((c = tune_comm_stream(path, SIZE_MAX))) {
    check_choice(c, 5000, COLL_F32, COLL_ALGO_RING, 4096);
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 5000, COLL_F32, 0), 0);
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 100, COLL_F32, 1), 0);
    coll_comm_destroy(c);
  }
  if ((c = tune_comm_stream(path, 1000))) {
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 70000, COLL_F32, 1), 1);
    CHECK_EQ_INT(coll_allreduce_auto_streams(c, 999, COLL_F32, 0), 0);
    coll_comm_destroy(c);
  }
  /* Saving another key keeps these rules; saving this key again replaces them. */
  if (R == 0) {
    coll_tune_rule_t other = tune_rule(P + 1, tn, COLL_F32, 0, 0, COLL_ALGO_MPI, 0);
    CHECK_EQ_INT(coll_tune_save(path, &other, 1, err, sizeof err), COLL_OK);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if ((c = tune_comm(path, 0))) {
    check_choice(c, 5000, COLL_F32, COLL_ALGO_RING, 4096);
    coll_comm_destroy(c);
  }
  if (R == 0) {
    coll_tune_rule_t again = tune_rule(P, tn, COLL_F32, 0, 0, COLL_ALGO_MPI, 0);
    CHECK_EQ_INT(coll_tune_save(path, &again, 1, err, sizeof err), COLL_OK);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if ((c = tune_comm(path, 0))) {
    check_choice(c, 5000, COLL_F32, COLL_ALGO_MPI, dflt_chunk);
    check_choice(c, 10, COLL_BF16, COLL_ALGO_RING, 1024); /* bf16 rules kept */
    check_choice_at(c, 100, COLL_F32, 1, COLL_ALGO_RING, 2048); /* and in-place rules, another key */
    coll_comm_destroy(c);
  }
  /* A version 1 table (no placement) is read, and its rules hold in both placements. */
  char v1[512];
  snprintf(v1, sizeof v1, "strata-coll-tune 1\n# ranks transport dtype from_bytes algo chunk_bytes\n"
           "%d %s float 0 mpi 0\n%d %s float 4096 ring 4096\n", P, tn, P, tn);
  tune_write_text(path, v1);
  if ((c = tune_comm(path, 0))) {
    CHECK_TRUE(strstr(coll_tune_describe(c), "(4 rules for") != NULL);
    for (int ip = 0; ip < 2; ip++) {
      check_choice_at(c, 100, COLL_F32, ip, COLL_ALGO_MPI, dflt_chunk);
      check_choice_at(c, 5000, COLL_F32, ip, COLL_ALGO_RING, 4096);
    }
    coll_comm_destroy(c);
  }
  /* A hand-written version 2 table: blanks, a comment, members in another order. */
  char ok_only[256], hand[512];
  json_rule(ok_only, sizeof ok_only, tn, "10", "in", "ring", "0", "");
  snprintf(hand, sizeof hand, "\n  {\"rules\": [ %s ],\n   \"comment\": \"by hand\", \"version\": 2,\n"
           "   \"format\": \"strata-coll-tune\"}\n\n", ok_only);
  tune_write_text(path, hand);
  if ((c = tune_comm(path, 0))) {
    CHECK_TRUE(strstr(coll_tune_describe(c), "(1 rules for") != NULL);
    check_choice_at(c, 100, COLL_F32, 1, COLL_ALGO_RING, dflt_chunk);
    check_choice_at(c, 9, COLL_F32, 1, coll_allreduce_auto_choice(plain, 9, COLL_F32, 1, NULL), dflt_chunk);
    check_choice_at(c, 100, COLL_F32, 0, coll_allreduce_auto_choice(plain, 100, COLL_F32, 0, NULL), dflt_chunk);
    coll_comm_destroy(c);
  }
  /* Malformed and other-version tables: ignored, built-in rules. */
  char ok[256], bad[256];
  json_rule(ok, sizeof ok, tn, "10", "in", "ring", "0", "");
  for (int k = 0; k < 20; k++) {
    char text[1024]; /* the rules are this communicator's, so only the error keeps them out */
    const char *head = "{\"format\": \"strata-coll-tune\", \"version\": 2, \"rules\": ";
    bad[0] = 0;
    switch (k) {
    case 0: json_rule(bad, sizeof bad, tn, "\"10\"", "in", "ring", "0", ""); break;  /* a string for a number */
    case 1: json_rule(bad, sizeof bad, tn, "10", "in", "ring", "0", ", \"extra\": 1"); break;
    case 2: snprintf(text, sizeof text, "%s[%s, %s]}", head, ok, ok); break; /* from_bytes does not increase */
    case 3: json_rule(bad, sizeof bad, tn, "10", "in", "auto", "0", ""); break;
    case 4: snprintf(text, sizeof text, "{\"format\": \"strata-coll-tune\", \"version\": 4, \"rules\": [%s]}", ok); break;
    case 5: snprintf(text, sizeof text, "{\"rules\": [%s]}", ok); break; /* no format */
    case 6: snprintf(text, sizeof text, "%s[{\"ranks\": %d, \"transport\": \"%s\", \"dtype\": \"float\"}]}", head, P, tn); break;
    case 7: json_rule(bad, sizeof bad, tn, "10", "both", "ring", "0", ""); break;
    case 8: snprintf(text, sizeof text, "strata-coll-tune 1\n%d %s float out 0 ring 0\n", P, tn); break; /* 7 fields */
    case 9: snprintf(text, sizeof text, "strata-coll-tune 1\n%d %s float 10 ring 0\n%d %s float 10 rd 0\n", P, tn, P, tn); break;
    case 10: snprintf(text, sizeof text, "%s[%s", head, ok); break;         /* cut short */
    case 11: snprintf(text, sizeof text, "%s[%s]} x", head, ok); break;     /* text after the object */
    case 12: snprintf(text, sizeof text, "%s%s}", head, ok); break;         /* rules not an array */
    case 13: json_rule(bad, sizeof bad, tn, "1.5", "in", "ring", "0", ""); break;
    case 14: json_rule(bad, sizeof bad, tn, "10", "in", "ring", "32", ""); break;
    case 15: snprintf(text, sizeof text, "strata-coll-tune 2\n%d %s float in 0 ring 0\n", P, tn); break; /* text, version 2 */
    case 16: snprintf(text, sizeof text, "[%s]", ok); break;                /* not an object */
    case 18: json_rule(bad, sizeof bad, tn, "10", "in", "ring", "0", ", \"stream\": true"); break; /* stream in version 2 */
    case 19: /* version 3: stream must be a boolean */
      json_rule(bad, sizeof bad, tn, "10", "in", "ring", "0", ", \"stream\": 1");
      snprintf(text, sizeof text, "{\"format\": \"strata-coll-tune\", \"version\": 3, \"rules\": [%s]}", bad);
      bad[0] = 0;
      break;
    default: text[0] = 0; break;
    }
    if (bad[0]) snprintf(text, sizeof text, "%s[%s]}", head, bad);
    tune_write_text(path, text);
    if ((c = tune_comm(path, 0))) {
      test_checks++;
      if (!strstr(coll_tune_describe(c), "is invalid"))
        test_fail(__FILE__, __LINE__, "table %d: described as '%s'", k, coll_tune_describe(c));
      check_builtin(c, plain, COLL_F32, dflt_chunk);
      coll_comm_destroy(c);
    }
  }
  if (R == 0) {
    unlink(path);
    *strrchr(path, '/') = 0;
    rmdir(path);
  }
  coll_comm_destroy(plain);
}

int main(int argc, char **argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &R);
  test_set_rank(R);
  const char *mode = argc > 1 ? argv[1] : "ops";
  char name[64];
  snprintf(name, sizeof name, "coll_test_ops %s np=%d", mode, P);
  if (!strcmp(mode, "timeout")) mode_timeout();
  else if (!strcmp(mode, "idle")) mode_idle();
  else if (!strcmp(mode, "mismatch")) mode_mismatch();
  else if (!strcmp(mode, "units")) mode_units();
  else if (!strcmp(mode, "tune")) mode_tune();
  else {
    coll_config_t cfg = coll_config_default();
    coll_comm_t *c = NULL;
    coll_result_t rc = coll_comm_create(MPI_COMM_WORLD, &cfg, &c);
    if (rc != COLL_OK) {
      test_fail(__FILE__, __LINE__, "coll_comm_create: %s", coll_result_string(rc));
    } else {
      if (R == 0) printf("transport %s\n", coll_transport_name(c));
      if (!strcmp(mode, "ops")) mode_ops(c);
      else if (!strcmp(mode, "p2p")) mode_p2p(c);
      else if (!strcmp(mode, "split")) mode_split(c);
      else if (!strcmp(mode, "nonblocking")) mode_nonblocking(c);
      else if (!strcmp(mode, "wire16")) mode_wire16(c);
      else test_fail(__FILE__, __LINE__, "unknown mode '%s' (ops, p2p, split, nonblocking, timeout, mismatch, units)", mode);
      uint64_t s = 0, rv = 0;
      coll_traffic(c, &s, &rv);
      if (P > 1 && !strcmp(mode, "ops")) CHECK_TRUE(s > 0 && rv > 0);
      double busy_s = -1;
      uint64_t calls = 0;
      coll_busy(c, &busy_s, &calls);
      if (!strcmp(mode, "ops")) CHECK_TRUE(calls > 0 && busy_s >= 0);
      coll_comm_destroy(c);
    }
  }
  /* Every rank's failures count: the job fails if any rank failed. */
  int mine = test_failures, total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  int rc = test_finish(name);
  MPI_Finalize();
  return total ? 1 : rc;
}
