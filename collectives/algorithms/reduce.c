/* reduce.c -- the reduction kernels (every op for fp32, fp64, int32, int64; bf16 and fp16
 * widened to fp32, reduced and rounded back, for the cfg.wire16 path), the AVG division, and
 * the bf16 / fp16 <-> fp32 conversions (round to nearest even) used to reduce 16-bit types in
 * fp32 and round once at the end.
 *
 * The loops are kept plain (restrict pointers, one expression per element) so the compiler
 * vectorises them; GCC's -O2 uses the "very cheap" vectoriser cost model, which refuses loops
 * of unknown trip count, so this file asks for O3 locally. Integer sums and products wrap
 * (computed in unsigned arithmetic: no undefined behaviour). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#include "coll_internal.h"

#define SUMF(x, y) ((x) + (y))
#define PRODF(x, y) ((x) * (y))
#define MINF(x, y) ((y) < (x) ? (y) : (x))
#define MAXF(x, y) ((y) > (x) ? (y) : (x))
#define SUMI(U, x, y) ((U)(x) + (U)(y))
#define PRODI(U, x, y) ((U)(x) * (U)(y))

/* dst = a op b (3 operands) and dst op= b (2 operands, for dst aliasing a). */
#define KERNELS(NAME, T, EXPR)                                                              \
  static void NAME##3(T *restrict d, const T *restrict a, const T *restrict b, size_t n) { \
    for (size_t i = 0; i < n; i++) {                                                       \
      T x = a[i], y = b[i];                                                                \
      d[i] = (T)(EXPR);                                                                    \
    }                                                                                      \
  }                                                                                        \
  static void NAME##2(T *restrict d, const T *restrict b, size_t n) {                      \
    for (size_t i = 0; i < n; i++) {                                                       \
      T x = d[i], y = b[i];                                                                \
      d[i] = (T)(EXPR);                                                                    \
    }                                                                                      \
  }

KERNELS(sum_f32, float, SUMF(x, y))
KERNELS(prod_f32, float, PRODF(x, y))
KERNELS(min_f32, float, MINF(x, y))
KERNELS(max_f32, float, MAXF(x, y))
KERNELS(sum_f64, double, SUMF(x, y))
KERNELS(prod_f64, double, PRODF(x, y))
KERNELS(min_f64, double, MINF(x, y))
KERNELS(max_f64, double, MAXF(x, y))
KERNELS(sum_i32, int32_t, SUMI(uint32_t, x, y))
KERNELS(prod_i32, int32_t, PRODI(uint32_t, x, y))
KERNELS(min_i32, int32_t, MINF(x, y))
KERNELS(max_i32, int32_t, MAXF(x, y))
KERNELS(sum_i64, int64_t, SUMI(uint64_t, x, y))
KERNELS(prod_i64, int64_t, PRODI(uint64_t, x, y))
KERNELS(min_i64, int64_t, MINF(x, y))
KERNELS(max_i64, int64_t, MAXF(x, y))

#define DISPATCH(T, SFX)                                                              \
  do {                                                                                \
    T *d = dst;                                                                       \
    const T *pa = a, *pb = b;                                                         \
    if (d == pb) { pb = pa; pa = d; } /* commutative: make dst alias the first source */ \
    int two = d == pa;                                                                \
    switch (op) {                                                                     \
    case COLL_PROD: two ? prod_##SFX##2(d, pb, n) : prod_##SFX##3(d, pa, pb, n); break; \
    case COLL_MIN: two ? min_##SFX##2(d, pb, n) : min_##SFX##3(d, pa, pb, n); break;    \
    case COLL_MAX: two ? max_##SFX##2(d, pb, n) : max_##SFX##3(d, pa, pb, n); break;    \
    default: two ? sum_##SFX##2(d, pb, n) : sum_##SFX##3(d, pa, pb, n); break;          \
    }                                                                                 \
  } while (0)

/* fp32 sums with non-temporal (streaming) stores, used for reductions of 16 KiB and more
 * when the operation asked for them (requests of at least cfg.stream_bytes).
 * Why: the reduced chunk is not read again by this core -- the next rank copies it (ring
 * all-gather, partial sums) or the caller uses it later. Cached stores leave it dirty in this
 * core's cache, and a peer process reading dirty lines out of another core's cache is slow on
 * some hosts (on this project's VM, in one of its two run-to-run states, 2-4x slower than
 * reading memory: collectives/README.md). Streaming stores also skip the read-for-ownership of
 * the destination. Measured at np=2: ring 1 MiB 3.7 -> 13.5 GB/s in the slow state, 16 MiB
 * 8.5 -> 11.5, 64 MiB 8.5 -> 10.0. In the VM's other state the cached stores win below about
 * 8 MiB (the peer then reads the chunk from a shared cache), hence the size threshold. The
 * arithmetic is the same single add per element as the plain loop: results are bit-identical.
 * In place (d == a or d == b, as an in-place all-reduce reduces) takes the same path: each
 * group of 8 elements is loaded before it is stored, so exact aliasing is safe; only a partial
 * overlap would not be, and no schedule produces one. An in-place all-reduce asks for streaming
 * stores at every size: its result is the next call's input, which a peer reads
 * (collectives/README.md, "In place"). */
#define NT_MIN_ELEMS 4096

static int sum_f32_stream(float *d, const float *a, const float *b, size_t n) {
#ifdef __AVX__
  if (n < NT_MIN_ELEMS) return 0;
  size_t i = 0;
  while (i < n && ((uintptr_t)(d + i) & 31)) { /* to a 32-byte boundary (floats are 4-aligned) */
    d[i] = a[i] + b[i];
    i++;
  }
  for (; i + 8 <= n; i += 8)
    _mm256_stream_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; i++) d[i] = a[i] + b[i];
  _mm_sfence(); /* streaming stores are weakly ordered: visible before the send that follows */
  return 1;
#else
  (void)d, (void)a, (void)b, (void)n;
  return 0;
#endif
}

/* 16-bit operands (cfg.wire16): each element widened to fp32, reduced, rounded back to the
 * 16-bit type. d may alias a or b exactly (each element is read before it is written). */
static void reduce16(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n, coll_dtype_t dtype,
                     coll_op_t op) {
  int bf = dtype == COLL_BF16;
  for (size_t i = 0; i < n; i++) {
    float x = bf ? coll_bf16_to_float(a[i]) : coll_half_to_float(a[i]);
    float y = bf ? coll_bf16_to_float(b[i]) : coll_half_to_float(b[i]);
    float r = op == COLL_PROD ? x * y : op == COLL_MIN ? MINF(x, y) : op == COLL_MAX ? MAXF(x, y) : x + y;
    d[i] = bf ? coll_float_to_bf16(r) : coll_float_to_half(r);
  }
}

void coll_reduce_kernel(void *dst, const void *a, const void *b, size_t n, coll_dtype_t dtype,
                        coll_op_t op, int stream) {
  if (n == 0) return;
  if (coll_is_16bit(dtype)) {
    reduce16(dst, a, b, n, dtype, op);
    return;
  }
  if (stream && dtype == COLL_F32 && (op == COLL_SUM || op == COLL_AVG) && sum_f32_stream(dst, a, b, n))
    return;
  switch (dtype) {
  case COLL_F64: DISPATCH(double, f64); break;
  case COLL_I32: DISPATCH(int32_t, i32); break;
  case COLL_I64: DISPATCH(int64_t, i64); break;
  default: DISPATCH(float, f32); break;
  }
}

void coll_scale_kernel(void *buf, size_t n, coll_dtype_t dtype, int divisor) {
  if (divisor == 1) return;
  switch (dtype) {
  case COLL_F64: {
    double *p = buf, d = (double)divisor;
    for (size_t i = 0; i < n; i++) p[i] /= d;
    break;
  }
  case COLL_I32: {
    int32_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] /= divisor;
    break;
  }
  case COLL_I64: {
    int64_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] /= divisor;
    break;
  }
  case COLL_BF16: {
    uint16_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = coll_float_to_bf16(coll_bf16_to_float(p[i]) / (float)divisor);
    break;
  }
  case COLL_F16: {
    uint16_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = coll_float_to_half(coll_half_to_float(p[i]) / (float)divisor);
    break;
  }
  default: {
    float *p = buf, d = (float)divisor;
    for (size_t i = 0; i < n; i++) p[i] /= d;
    break;
  }
  }
}

float coll_bf16_to_float(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t coll_float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float coll_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  float f;
  if (exp == 0) {
    f = (float)man * 0x1p-24f; /* zero or subnormal: exact */
    memcpy(&u, &f, 4);
    u |= sign;
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  }
  memcpy(&f, &u, 4);
  return f;
}

uint16_t coll_float_to_half(float x) {
  uint32_t f;
  memcpy(&f, &x, 4);
  uint32_t sign = (f >> 16) & 0x8000u, a = f & 0x7fffffffu;
  if (a >= 0x7f800000u) return (uint16_t)(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to infinity */
  if (a < 0x38800000u) { /* below 2^-14: subnormal half, units of 2^-24, ties to even */
    float v;
    memcpy(&v, &a, 4);
    return (uint16_t)(sign | (uint32_t)nearbyintf(v * 0x1p24f));
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u); /* round the 23-bit mantissa to 10 bits */
  r -= 112u << 23;                           /* rebias the exponent 127 -> 15 */
  return (uint16_t)(sign | (r >> 13));
}

void coll_f32_from_16(float *restrict dst, const void *src, size_t n, coll_dtype_t dtype16) {
  const uint16_t *restrict s = src;
  if (dtype16 == COLL_BF16) {
    for (size_t i = 0; i < n; i++) {
      uint32_t u = (uint32_t)s[i] << 16;
      memcpy(&dst[i], &u, 4);
    }
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = coll_half_to_float(s[i]);
  }
}

void coll_f32_to_16(void *dst, const float *restrict src, size_t n, coll_dtype_t dtype16) {
  uint16_t *restrict d = dst;
  if (dtype16 == COLL_BF16) {
    for (size_t i = 0; i < n; i++) d[i] = coll_float_to_bf16(src[i]);
  } else {
    for (size_t i = 0; i < n; i++) d[i] = coll_float_to_half(src[i]);
  }
}
