/* nn.c -- the numeric kernels of the model (see nn.h): vectorised exp/tanh, GELU, LayerNorm,
 * matrix products (gemm.h) and causal attention, each a plain function over flat row-major
 * float arrays, as llm.c's train_gpt2.c writes them. The elementwise kernels (exp, tanh,
 * LayerNorm, softmax, bias sums) use AVX2 + FMA when the compiler targets it (-march=native)
 * and plain loops otherwise; both builds pass the PyTorch parity tests. Every vector loop
 * assigns elements to lanes by index from the start of the array, so results do not depend on
 * where a buffer happens to sit in memory.
 */
#include "nn.h"

#include <math.h>
#include <string.h>

#include "gemm.h"
#include "log.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define NN_AVX2 1
#endif

#define NN_LN_EPS 1e-5f /* LayerNorm epsilon (HF layer_norm_epsilon) */

/* ---------------------------------------------------------------------------------------- */
/* vectorised elementwise math */

#ifdef NN_AVX2
/* exp(x) for 8 floats, Cephes expf polynomial with range reduction by ln 2; relative error
 * about 2e-7 on [-87, 88]; inputs are clamped to that range. */
static inline __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3f);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
/* tanh(u) = 1 - 2 / (exp(2u) + 1); absolute error about 2e-7. */
static inline __m256 tanh8(__m256 u) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 e = exp8(_mm256_add_ps(u, u));
  return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
}
#endif

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

/* out = GELU_tanh(x), n elements. */
void nn_gelu_forward(float *out, const float *x, size_t n) {
  size_t i = 0;
#ifdef NN_AVX2
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  const __m256 k = _mm256_set1_ps(GELU_K), a = _mm256_set1_ps(GELU_A);
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    __m256 t = tanh8(_mm256_mul_ps(k, _mm256_fmadd_ps(a, v3, v)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, t)));
  }
#endif
  for (; i < n; i++) {
    float v = x[i];
    float t = tanhf(GELU_K * (v + GELU_A * v * v * v));
    out[i] = 0.5f * v * (1.0f + t);
  }
}

/* dx = d(GELU)/dx (x) * dout, in place over dout (n elements). */
void nn_gelu_backward(float *dout, const float *x, size_t n) {
  size_t i = 0;
#ifdef NN_AVX2
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  const __m256 k = _mm256_set1_ps(GELU_K), a = _mm256_set1_ps(GELU_A);
  const __m256 a3 = _mm256_set1_ps(3.0f * GELU_A);
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 v2 = _mm256_mul_ps(v, v);
    __m256 t = tanh8(_mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(a, v2), v, v)));
    __m256 sech2 = _mm256_fnmadd_ps(t, t, one);
    __m256 du = _mm256_mul_ps(k, _mm256_fmadd_ps(a3, v2, one));
    __m256 g = _mm256_fmadd_ps(_mm256_mul_ps(half, v), _mm256_mul_ps(sech2, du),
                               _mm256_mul_ps(half, _mm256_add_ps(one, t)));
    _mm256_storeu_ps(dout + i, _mm256_mul_ps(g, _mm256_loadu_ps(dout + i)));
  }
#endif
  for (; i < n; i++) {
    float v = x[i];
    float t = tanhf(GELU_K * (v + GELU_A * v * v * v));
    float sech2 = 1.0f - t * t;
    float g = 0.5f * (1.0f + t) + 0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * GELU_A * v * v);
    dout[i] *= g;
  }
}

/* x[i] = exp(x[i] - m) for i < n; returns the sum of the results. */
float nn_exp_shift_sum(float *x, int n, float m) {
  int i = 0;
  float sum = 0.0f;
#ifdef NN_AVX2
  __m256 acc = _mm256_setzero_ps(), mv = _mm256_set1_ps(m);
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, acc);
  for (int j = 0; j < 8; j++) sum += lanes[j];
#endif
  for (; i < n; i++) {
    x[i] = expf(x[i] - m);
    sum += x[i];
  }
  return sum;
}

float nn_max_of(const float *x, int n) {
  float m = -INFINITY;
  int i = 0;
#ifdef NN_AVX2
  if (n >= 8) {
    __m256 mv = _mm256_loadu_ps(x);
    for (i = 8; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, mv);
    for (int j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
  }
#endif
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

#ifdef NN_AVX2
static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

/* dst[i] += src[i], n elements. */
void nn_add_to(float *restrict dst, const float *restrict src, int n) {
  int i = 0;
#ifdef NN_AVX2
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_loadu_ps(src + i)));
#endif
  for (; i < n; i++) dst[i] += src[i];
}

/* sum of x[i] * y[i] (y NULL: sum of x[i]), n elements. */
static float dot_of(const float *x, const float *y, int n) {
  int i = 0;
  float s = 0.0f;
#ifdef NN_AVX2
  __m256 acc = _mm256_setzero_ps();
  if (y)
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc);
  else
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
  s = hsum8(acc);
#endif
  for (; i < n; i++) s += y ? x[i] * y[i] : x[i];
  return s;
}

/* x[i] *= a, n elements. */
void nn_scale_by(float *x, int n, float a) {
  int i = 0;
#ifdef NN_AVX2
  const __m256 av = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), av));
#endif
  for (; i < n; i++) x[i] *= a;
}

/* Softmax backward for one row of n probabilities p: dp = p * (dp - sum(p * dp)), in place. */
static void softmax_grad_row(float *restrict dp, const float *restrict p, int n) {
  const float dot = dot_of(p, dp, n);
  int i = 0;
#ifdef NN_AVX2
  const __m256 dv = _mm256_set1_ps(dot);
  for (; i + 8 <= n; i += 8) {
    __m256 pv = _mm256_loadu_ps(p + i);
    _mm256_storeu_ps(dp + i, _mm256_mul_ps(pv, _mm256_sub_ps(_mm256_loadu_ps(dp + i), dv)));
  }
#endif
  for (; i < n; i++) dp[i] = p[i] * (dp[i] - dot);
}

/* ---------------------------------------------------------------------------------------- */
/* layers */

/* out = LayerNorm(inp) * w + b over rows of C; saves mean and 1/std per row. */
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, size_t N, int C) {
  for (size_t r = 0; r < N; r++) {
    const float *x = inp + r * C;
    float *o = out + r * C;
    float m = dot_of(x, NULL, C) / C;
    int i = 0;
    float v = 0.0f;
#ifdef NN_AVX2
    __m256 mv = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    for (; i + 8 <= C; i += 8) {
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv);
      acc = _mm256_fmadd_ps(d, d, acc);
    }
    v = hsum8(acc);
#endif
    for (; i < C; i++) v += (x[i] - m) * (x[i] - m);
    float rs = 1.0f / sqrtf(v / C + NN_LN_EPS);
    i = 0;
#ifdef NN_AVX2
    __m256 rsv = _mm256_set1_ps(rs);
    for (; i + 8 <= C; i += 8) {
      __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rsv);
      _mm256_storeu_ps(o + i, _mm256_fmadd_ps(n, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
    }
#endif
    for (; i < C; i++) o[i] = (x[i] - m) * rs * w[i] + b[i];
    mean[r] = m;
    rstd[r] = rs;
  }
}

/* dinp += d(LayerNorm)/d(inp) . dout; dw, db accumulate. */
void nn_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, size_t N, int C) {
  for (size_t r = 0; r < N; r++) {
    const float *x = inp + r * C, *dy = dout + r * C;
    float *dx = dinp + r * C;
    const float m = mean[r], rs = rstd[r];
    float sum_dn = 0.0f, sum_dn_n = 0.0f;
    int i = 0;
#ifdef NN_AVX2
    const __m256 mv = _mm256_set1_ps(m), rsv = _mm256_set1_ps(rs);
    __m256 a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
    for (; i + 8 <= C; i += 8) {
      __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rsv);
      __m256 dn = _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(dy + i));
      a1 = _mm256_add_ps(a1, dn);
      a2 = _mm256_fmadd_ps(dn, n, a2);
    }
    sum_dn = hsum8(a1);
    sum_dn_n = hsum8(a2);
#endif
    for (; i < C; i++) {
      float n = (x[i] - m) * rs;
      float dn = w[i] * dy[i];
      sum_dn += dn;
      sum_dn_n += dn * n;
    }
    sum_dn /= C;
    sum_dn_n /= C;
    i = 0;
#ifdef NN_AVX2
    const __m256 s1 = _mm256_set1_ps(sum_dn), s2 = _mm256_set1_ps(sum_dn_n);
    for (; i + 8 <= C; i += 8) {
      __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rsv);
      __m256 d = _mm256_loadu_ps(dy + i);
      __m256 dn = _mm256_mul_ps(_mm256_loadu_ps(w + i), d);
      _mm256_storeu_ps(db + i, _mm256_add_ps(_mm256_loadu_ps(db + i), d));
      _mm256_storeu_ps(dw + i, _mm256_fmadd_ps(n, d, _mm256_loadu_ps(dw + i)));
      __m256 t = _mm256_sub_ps(_mm256_sub_ps(dn, s1), _mm256_mul_ps(n, s2));
      _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(rsv, t, _mm256_loadu_ps(dx + i)));
    }
#endif
    for (; i < C; i++) {
      float n = (x[i] - m) * rs;
      float dn = w[i] * dy[i];
      db[i] += dy[i];
      dw[i] += n * dy[i];
      dx[i] += rs * (dn - sum_dn - n * sum_dn_n);
    }
  }
}

/* out (N, OC) = inp (N, IC) @ w (IC, OC) + bias; if accumulate, out += instead of =. */
void nn_matmul_forward(float *out, const float *inp, const float *w, const float *bias, size_t N,
                           int IC, int OC, int accumulate, gemm_dtype_t dt) {
  if (!accumulate) {
    for (size_t r = 0; r < N; r++) memcpy(out + r * OC, bias, sizeof(float) * OC);
  } else {
    for (size_t r = 0; r < N; r++) nn_add_to(out + r * OC, bias, OC);
  }
  gemm_mm(dt, 0, 0, (int)N, OC, IC, 1.0f, inp, IC, w, OC, 1.0f,
              out, OC);
}

/* Given dout (N, OC): dw (IC, OC) += inp^T dout, db += column sums of dout, and
 * dinp (N, IC) = dout w^T (overwritten; skipped when dinp is NULL). */
void nn_matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, size_t N, int IC, int OC, gemm_dtype_t dt) {
  if (dinp)
    gemm_mm(dt, 0, 1, (int)N, IC, OC, 1.0f, dout, OC, w, OC, 0.0f,
                dinp, IC);
  gemm_mm(dt, 1, 0, IC, OC, (int)N, 1.0f, inp, IC, dout, OC, 1.0f,
              dw, OC);
  for (size_t r = 0; r < N; r++) nn_add_to(db, dout + r * OC, OC);
}

/* Softmax probabilities of query rows [i0, i1) of one head: P rows i0..i1-1 (row stride T)
 * over keys [0, i1), row i valid in columns [0, i], zero in (i, i1). q, k point at the head's
 * first query / key (row stride C3). Forward and recomputation share this code, so recomputed
 * probabilities are bit-identical to the forward's. */
static void probs_block(float *P, const float *q, const float *k, int i0, int i1, int T, int C3, int hs,
                        float scale, gemm_dtype_t dt) {
  gemm_mm(dt, 0, 1, i1 - i0, i1, hs, scale, q + (size_t)i0 * C3, C3, k,
              C3, 0.0f, P + (size_t)i0 * T, T);
  for (int i = i0; i < i1; i++) {
    float *p = P + (size_t)i * T;
    float m = nn_max_of(p, i + 1);
    float s = nn_exp_shift_sum(p, i + 1, m);
    nn_scale_by(p, i + 1, 1.0f / s);
    for (int j = i + 1; j < i1; j++) p[j] = 0.0f;
  }
}

void nn_attention_forward(float *out, float *att, float *pscratch, const float *qkv, int B, int T, int C,
                          int H, int blk, gemm_dtype_t dt) {
  int hs = C / H, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < H; h++) {
      const float *q = qkv + (size_t)b * T * C3 + h * hs;
      const float *k = q + C;
      const float *v = q + 2 * C;
      float *P = att ? att + ((size_t)b * H + h) * T * T : pscratch;
      float *y = out + (size_t)b * T * C + h * hs;
      for (int i0 = 0; i0 < T; i0 += blk) {
        int i1 = i0 + blk < T ? i0 + blk : T;
        probs_block(P, q, k, i0, i1, T, C3, hs, scale, dt);
        gemm_mm(dt, 0, 0, i1 - i0, hs, i1, 1.0f, P + (size_t)i0 * T, T,
                    v, C3, 0.0f, y + (size_t)i0 * C, C);
      }
    }
  }
}

void nn_attention_backward(float *dqkv, float *datt, float *pscratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int H, int blk, gemm_dtype_t dt) {
  int hs = C / H, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < H; h++) {
      const float *q = qkv + (size_t)b * T * C3 + h * hs;
      const float *k = q + C;
      const float *v = q + 2 * C;
      float *dq = dqkv + (size_t)b * T * C3 + h * hs;
      float *dk = dq + C;
      float *dv = dq + 2 * C;
      const float *P = att ? att + ((size_t)b * H + h) * T * T : pscratch;
      const float *dy = dout + (size_t)b * T * C + h * hs;
      if (!att)
        for (int i0 = 0; i0 < T; i0 += blk)
          probs_block(pscratch, q, k, i0, i0 + blk < T ? i0 + blk : T, T, C3, hs, scale, dt);
      for (int t = 0; t < T; t++) {
        memset(dk + (size_t)t * C3, 0, sizeof(float) * hs);
        memset(dv + (size_t)t * C3, 0, sizeof(float) * hs);
      }
      for (int i0 = 0; i0 < T; i0 += blk) {
        int i1 = i0 + blk < T ? i0 + blk : T;
        int rows = i1 - i0;
        const float *Pb = P + (size_t)i0 * T;
        float *dPb = datt + (size_t)i0 * T;
        /* dP = dY V^T over keys [0, i1) */
        gemm_mm(dt, 0, 1, rows, i1, hs, 1.0f, dy + (size_t)i0 * C, C,
                    v, C3, 0.0f, dPb, T);
        /* dV[0, i1) += P^T dY */
        gemm_mm(dt, 1, 0, i1, hs, rows, 1.0f, Pb, T,
                    dy + (size_t)i0 * C, C, 1.0f, dv, C3);
        /* softmax backward in place: dS = P * (dP - sum(P * dP)) */
        for (int i = i0; i < i1; i++) {
          const float *p = P + (size_t)i * T;
          float *dp = datt + (size_t)i * T;
          softmax_grad_row(dp, p, i + 1);
          for (int j = i + 1; j < i1; j++) dp[j] = 0.0f;
        }
        /* dQ[i0, i1) = scale dS K; dK[0, i1) += scale dS^T Q */
        gemm_mm(dt, 0, 0, rows, hs, i1, scale, dPb, T, k, C3, 0.0f,
                    dq + (size_t)i0 * C3, C3);
        gemm_mm(dt, 1, 0, i1, hs, rows, scale, dPb, T,
                    q + (size_t)i0 * C3, C3, 1.0f, dk, C3);
      }
    }
  }
}

void nn_attention_kv_grouped(float *y, float *sc, const float *q, int ldq, const float *kc, const float *vc,
                             int ldkv, int n, int pos0, int H, int KVH, int hs, gemm_dtype_t dt) {
  const int L = pos0 + n, rep = H / KVH, ldy = H * hs;
  const float scale = 1.0f / sqrtf((float)hs);
  for (int h = 0; h < H; h++) {
    const size_t kvo = (size_t)(h / rep) * hs; /* the kv head query head h reads */
    gemm_mm(dt, 0, 1, n, L, hs, scale, q + h * hs, ldq, kc + kvo, ldkv, 0.0f, sc, L);
    for (int i = 0; i < n; i++) {
      float *p = sc + (size_t)i * L;
      int valid = pos0 + i + 1; /* row i sees keys [0, pos0 + i] */
      float mx = nn_max_of(p, valid);
      float s = nn_exp_shift_sum(p, valid, mx);
      nn_scale_by(p, valid, 1.0f / s);
      for (int j = valid; j < L; j++) p[j] = 0.0f;
    }
    gemm_mm(dt, 0, 0, n, hs, L, 1.0f, sc, L, vc + kvo, ldkv, 0.0f, y + h * hs, ldy);
  }
}

void nn_attention_kv(float *y, float *sc, const float *qkv, const float *kc, const float *vc, int n, int pos0,
                     int C, int H, gemm_dtype_t dt) {
  nn_attention_kv_grouped(y, sc, qkv, 3 * C, kc, vc, C, n, pos0, H, H, C / H, dt);
}

int nn_ids_in_vocab(const char *caller, const char *what, const int32_t *ids, size_t n, int V) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= V) {
      strata_error("%s: %s %d at position %zu is outside the vocabulary [0, %d)", caller, what, ids[i], i, V);
      return 0;
    }
  return 1;
}
