/* gpt2.c -- GPT-2 forward and backward on CBLAS for one contiguous range of layers (see gpt2.h).
 *
 * The structure follows llm.c's train_gpt2.c: every operation is a plain function pair
 * *_forward / *_backward over flat (B, T, C) float arrays; all matrix products go through
 * cblas_sgemm on Hugging Face Conv1D [in, out] weights; attention runs one sgemm per
 * (batch, head) for Q K^T and P V (and their gradients), restricted to the causal lower
 * triangle block by block, with the softmax done in place; GELU and the softmax
 * exponentials use a vectorised exp because a libm call per element would cost more than the
 * matrix products at these sizes. The elementwise kernels (exp, tanh, LayerNorm, softmax,
 * bias sums) use AVX2 + FMA when the compiler targets it (-march=native) and plain loops
 * otherwise; both builds pass the PyTorch parity tests. Time goes ~87% to sgemm.
 *
 * Activations of one micro-batch live in one allocation owned by a gpt2_acts_t; the
 * gradients of activations (needed only during one backward call) live in scratch owned by
 * the model and sized by the largest gpt2_acts_create so far.
 */
#include "gpt2.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "env.h"
#include "log.h"
#include "rng.h"
#include "util.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GPT2_AVX2 1
#endif

#define GPT2_LN_EPS 1e-5f        /* LayerNorm epsilon (HF layer_norm_epsilon) */
#define GPT2_INIT_STD 0.02f      /* GPT-2 weight init standard deviation */
/* Query rows per causal attention block: each block of a head is one sgemm over keys
 * [0, block end), so smaller blocks skip more of the masked upper triangle but make smaller
 * sgemm calls. Override with STRATA_ATTN_BLOCK_ROWS. */
#define GPT2_ATTN_BLOCK_ROWS_DEFAULT 64
#define GPT2_ALIGN_FLOATS 16     /* activation sub-buffers aligned to 64 bytes */

/* ---------------------------------------------------------------------------------------- */
/* private state */

typedef struct {
  size_t cap_tokens; /* B*T the scratch below is sized for */
  int cap_T;         /* T the attention scratch is sized for */
  float *dres;       /* (N, C) gradient of the residual stream */
  float *dln;        /* (N, C) gradient of a LayerNorm output */
  float *datty;      /* (N, C) gradient of the attention output (before c_proj) */
  float *dbig;       /* (N, 4C) gradient of the MLP hidden layer, or of qkv (N, 3C) */
  float *datt;       /* (T, T) gradient of one head's attention probabilities */
  float *vrow;       /* (V) one row of exponentials for the log-sum-exp */
  int attn_block;    /* query rows per attention block (GPT2_ATTN_BLOCK_ROWS_DEFAULT) */
} gpt2_impl_t;

typedef struct {
  float *ln1, *ln1_mean, *ln1_rstd; /* (N, C), (N), (N) */
  float *qkv;                       /* (N, 3C) */
  float *att;                       /* (B, H, T, T) softmax probabilities (lower triangle) */
  float *atty;                      /* (N, C) attention output before c_proj */
  float *res2;                      /* (N, C) residual after attention */
  float *ln2, *ln2_mean, *ln2_rstd; /* (N, C), (N), (N) */
  float *fch;                       /* (N, 4C) c_fc output (pre-GELU) */
  float *fch_gelu;                  /* (N, 4C) GELU output */
  float *res3;                      /* (N, C) residual leaving the block */
} gpt2_layer_acts_t;

struct gpt2_acts {
  int B, T;               /* micro-batch shape */
  int cap_B, cap_T;       /* shape the storage was created for */
  int nl;                 /* layers of the shard */
  int has_head;
  float *mem;             /* the one allocation all float buffers view into */
  size_t mem_floats;
  int32_t *tokens;        /* (N) copy of the input tokens (has_embed) */
  int32_t *targets;       /* (N) copy of the targets (has_head) */
  int have_targets;       /* forward was given targets */
  int forward_done;       /* forward ran since creation / last backward */
  float *x0;              /* (N, C) residual entering the first layer of the shard */
  gpt2_layer_acts_t *layer; /* [nl] */
  float *lnf, *lnf_mean, *lnf_rstd; /* (N, C), (N), (N) */
  float *logits;          /* (N, V); overwritten by d(loss)/d(logits) during backward */
  float *lse;             /* (N) log-sum-exp of each logits row */
  float *losses;          /* (N) per-position cross-entropy */
};

/* Every float buffer the model computes on is 64-byte aligned (a cache line, an AVX-512
 * vector). Besides speed this makes results independent of where the allocator happened to
 * place a buffer: BLAS kernels and vector loops may take different paths (and so round
 * differently) for differently aligned data, which would break bit-identical resume. */
static void *alloc_floats(size_t n, int zero) { return buffer_alloc(n * sizeof(float), zero); }

/* ---------------------------------------------------------------------------------------- */
/* vectorised elementwise math */

#ifdef GPT2_AVX2
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
static void gelu_forward(float *out, const float *x, size_t n) {
  size_t i = 0;
#ifdef GPT2_AVX2
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
static void gelu_backward(float *dout, const float *x, size_t n) {
  size_t i = 0;
#ifdef GPT2_AVX2
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
static float exp_shift_sum(float *x, int n, float m) {
  int i = 0;
  float sum = 0.0f;
#ifdef GPT2_AVX2
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

static float max_of(const float *x, int n) {
  float m = -INFINITY;
  int i = 0;
#ifdef GPT2_AVX2
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

#ifdef GPT2_AVX2
static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

/* dst[i] += src[i], n elements. */
static void add_to(float *restrict dst, const float *restrict src, int n) {
  int i = 0;
#ifdef GPT2_AVX2
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_loadu_ps(src + i)));
#endif
  for (; i < n; i++) dst[i] += src[i];
}

/* sum of x[i] * y[i] (y NULL: sum of x[i]), n elements. */
static float dot_of(const float *x, const float *y, int n) {
  int i = 0;
  float s = 0.0f;
#ifdef GPT2_AVX2
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
static void scale_by(float *x, int n, float a) {
  int i = 0;
#ifdef GPT2_AVX2
  const __m256 av = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), av));
#endif
  for (; i < n; i++) x[i] *= a;
}

/* Softmax backward for one row of n probabilities p: dp = p * (dp - sum(p * dp)), in place. */
static void softmax_grad_row(float *restrict dp, const float *restrict p, int n) {
  const float dot = dot_of(p, dp, n);
  int i = 0;
#ifdef GPT2_AVX2
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
static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, size_t N, int C) {
  for (size_t r = 0; r < N; r++) {
    const float *x = inp + r * C;
    float *o = out + r * C;
    float m = dot_of(x, NULL, C) / C;
    int i = 0;
    float v = 0.0f;
#ifdef GPT2_AVX2
    __m256 mv = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    for (; i + 8 <= C; i += 8) {
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv);
      acc = _mm256_fmadd_ps(d, d, acc);
    }
    v = hsum8(acc);
#endif
    for (; i < C; i++) v += (x[i] - m) * (x[i] - m);
    float rs = 1.0f / sqrtf(v / C + GPT2_LN_EPS);
    i = 0;
#ifdef GPT2_AVX2
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
static void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, size_t N, int C) {
  for (size_t r = 0; r < N; r++) {
    const float *x = inp + r * C, *dy = dout + r * C;
    float *dx = dinp + r * C;
    const float m = mean[r], rs = rstd[r];
    float sum_dn = 0.0f, sum_dn_n = 0.0f;
    int i = 0;
#ifdef GPT2_AVX2
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
#ifdef GPT2_AVX2
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
static void matmul_forward(float *out, const float *inp, const float *w, const float *bias, size_t N,
                           int IC, int OC, int accumulate) {
  if (!accumulate) {
    for (size_t r = 0; r < N; r++) memcpy(out + r * OC, bias, sizeof(float) * OC);
  } else {
    for (size_t r = 0; r < N; r++) add_to(out + r * OC, bias, OC);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, OC, IC, 1.0f, inp, IC, w, OC, 1.0f,
              out, OC);
}

/* Given dout (N, OC): dw (IC, OC) += inp^T dout, db += column sums of dout, and
 * dinp (N, IC) = dout w^T (overwritten; skipped when dinp is NULL). */
static void matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, size_t N, int IC, int OC) {
  if (dinp)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, IC, OC, 1.0f, dout, OC, w, OC, 0.0f,
                dinp, IC);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IC, OC, (int)N, 1.0f, inp, IC, dout, OC, 1.0f,
              dw, OC);
  for (size_t r = 0; r < N; r++) add_to(db, dout + r * OC, OC);
}

/* Causal multi-head attention. qkv (B, T, 3C) -> out (B, T, C); att (B, H, T, T) keeps the
 * softmax probabilities (row i valid in columns [0, i], zero beyond within computed blocks).
 * Row block [i0, i1) of a head only needs keys [0, i1): one sgemm per block. */
static void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int H, int blk) {
  int hs = C / H, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < H; h++) {
      const float *q = qkv + (size_t)b * T * C3 + h * hs;
      const float *k = q + C;
      const float *v = q + 2 * C;
      float *P = att + ((size_t)b * H + h) * T * T;
      float *y = out + (size_t)b * T * C + h * hs;
      for (int i0 = 0; i0 < T; i0 += blk) {
        int i1 = i0 + blk < T ? i0 + blk : T;
        int rows = i1 - i0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, i1, hs, scale, q + (size_t)i0 * C3,
                    C3, k, C3, 0.0f, P + (size_t)i0 * T, T);
        for (int i = i0; i < i1; i++) {
          float *p = P + (size_t)i * T;
          float m = max_of(p, i + 1);
          float s = exp_shift_sum(p, i + 1, m);
          scale_by(p, i + 1, 1.0f / s);
          for (int j = i + 1; j < i1; j++) p[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hs, i1, 1.0f, P + (size_t)i0 * T, T,
                    v, C3, 0.0f, y + (size_t)i0 * C, C);
      }
    }
  }
}

/* Backward of attention_forward: dqkv (B, T, 3C) is overwritten from dout (B, T, C).
 * datt is (T, T) scratch. */
static void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int H, int blk) {
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
      const float *P = att + ((size_t)b * H + h) * T * T;
      const float *dy = dout + (size_t)b * T * C + h * hs;
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, i1, hs, 1.0f, dy + (size_t)i0 * C, C,
                    v, C3, 0.0f, dPb, T);
        /* dV[0, i1) += P^T dY */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1, hs, rows, 1.0f, Pb, T,
                    dy + (size_t)i0 * C, C, 1.0f, dv, C3);
        /* softmax backward in place: dS = P * (dP - sum(P * dP)) */
        for (int i = i0; i < i1; i++) {
          const float *p = P + (size_t)i * T;
          float *dp = datt + (size_t)i * T;
          softmax_grad_row(dp, p, i + 1);
          for (int j = i + 1; j < i1; j++) dp[j] = 0.0f;
        }
        /* dQ[i0, i1) = scale dS K; dK[0, i1) += scale dS^T Q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hs, i1, scale, dPb, T, k, C3, 0.0f,
                    dq + (size_t)i0 * C3, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1, hs, rows, scale, dPb, T,
                    q + (size_t)i0 * C3, C3, 1.0f, dk, C3);
      }
    }
  }
}

/* ---------------------------------------------------------------------------------------- */
/* model construction */

/* The tensors of one transformer layer in flat-buffer order: name after "h.<l>.", the view in
 * gpt2_layer_t, the shape in units of C (d1 = 0 for 1-D) and whether AdamW decays it. */
static const struct {
  const char *suffix;
  size_t view; /* offsetof(gpt2_layer_t, ...) */
  int ndim, d0, d1, decay;
} layer_tensors[] = {
    {"ln_1.weight", offsetof(gpt2_layer_t, ln1_w), 1, 1, 0, 0},
    {"ln_1.bias", offsetof(gpt2_layer_t, ln1_b), 1, 1, 0, 0},
    {"attn.c_attn.weight", offsetof(gpt2_layer_t, attn_w), 2, 1, 3, 1},
    {"attn.c_attn.bias", offsetof(gpt2_layer_t, attn_b), 1, 3, 0, 0},
    {"attn.c_proj.weight", offsetof(gpt2_layer_t, attn_proj_w), 2, 1, 1, 1},
    {"attn.c_proj.bias", offsetof(gpt2_layer_t, attn_proj_b), 1, 1, 0, 0},
    {"ln_2.weight", offsetof(gpt2_layer_t, ln2_w), 1, 1, 0, 0},
    {"ln_2.bias", offsetof(gpt2_layer_t, ln2_b), 1, 1, 0, 0},
    {"mlp.c_fc.weight", offsetof(gpt2_layer_t, fc_w), 2, 1, 4, 1},
    {"mlp.c_fc.bias", offsetof(gpt2_layer_t, fc_b), 1, 4, 0, 0},
    {"mlp.c_proj.weight", offsetof(gpt2_layer_t, fc_proj_w), 2, 4, 1, 1},
    {"mlp.c_proj.bias", offsetof(gpt2_layer_t, fc_proj_b), 1, 1, 0, 0},
};
#define LAYER_TENSORS ((int)(sizeof layer_tensors / sizeof layer_tensors[0]))

static void add_tensor(gpt2_model_t *m, size_t *off, const char *name, int ndim, int64_t d0, int64_t d1,
                       int decay) {
  gpt2_tensor_t *t = &m->tensors[m->num_tensors++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = ndim;
  t->shape[0] = d0;
  t->shape[1] = ndim == 2 ? d1 : 0;
  t->numel = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
  t->offset = *off;
  t->decay = decay;
  *off += t->numel;
}

/* The shard's tensor catalogue (m->tensors has room for 6 + LAYER_TENSORS per layer) in
 * flat-buffer order; returns the number of parameters. */
static size_t add_tensors(gpt2_model_t *m) {
  const gpt2_config_t *cfg = &m->cfg;
  const int64_t C = cfg->dim;
  size_t off = 0;
  char nm[64];
  if (m->range.has_embed) {
    add_tensor(m, &off, "wte.weight", 2, cfg->vocab, C, 1);
    add_tensor(m, &off, "wpe.weight", 2, cfg->ctx, C, 1);
  }
  for (int l = m->range.layer_begin; l < m->range.layer_end; l++)
    for (int i = 0; i < LAYER_TENSORS; i++) {
      snprintf(nm, sizeof nm, "h.%d.%s", l, layer_tensors[i].suffix);
      add_tensor(m, &off, nm, layer_tensors[i].ndim, layer_tensors[i].d0 * C, layer_tensors[i].d1 * C,
                 layer_tensors[i].decay);
    }
  if (m->range.has_head) {
    if (!m->range.has_embed) add_tensor(m, &off, "wte.weight", 2, cfg->vocab, C, 1);
    add_tensor(m, &off, "ln_f.weight", 1, C, 0, 0);
    add_tensor(m, &off, "ln_f.bias", 1, C, 0, 0);
  }
  return off;
}

static float *param_of(gpt2_model_t *m, float *base, const char *name) {
  const gpt2_tensor_t *t = gpt2_find_tensor(m, name);
  return t ? base + t->offset : NULL;
}

static void bind_views(gpt2_model_t *m, float *base, float **wte, float **wpe, gpt2_layer_t *layer,
                       float **lnf_w, float **lnf_b) {
  char nm[64];
  *wte = param_of(m, base, "wte.weight");
  *wpe = param_of(m, base, "wpe.weight");
  *lnf_w = param_of(m, base, "ln_f.weight");
  *lnf_b = param_of(m, base, "ln_f.bias");
  for (int l = m->range.layer_begin; l < m->range.layer_end; l++)
    for (int i = 0; i < LAYER_TENSORS; i++) {
      snprintf(nm, sizeof nm, "h.%d.%s", l, layer_tensors[i].suffix);
      *(float **)((char *)&layer[l - m->range.layer_begin] + layer_tensors[i].view) = param_of(m, base, nm);
    }
}

/* The configuration and the shard's range make a model: every size positive, heads dividing
 * dim, the range inside the model, and the embedding and head on the shards at its ends. */
static int check_config(const gpt2_config_t *cfg, gpt2_range_t range, char *err, size_t errlen) {
  if (cfg->vocab <= 0)
    return strata_fail(err, errlen, "vocab = %d: the vocabulary size must be positive", cfg->vocab);
  if (cfg->ctx <= 0) return strata_fail(err, errlen, "ctx = %d: the context length must be positive", cfg->ctx);
  if (cfg->layers <= 0)
    return strata_fail(err, errlen, "layers = %d: the model needs at least one layer", cfg->layers);
  if (cfg->heads <= 0)
    return strata_fail(err, errlen, "heads = %d: the number of attention heads must be positive", cfg->heads);
  if (cfg->dim <= 0) return strata_fail(err, errlen, "dim = %d: the embedding width must be positive", cfg->dim);
  if (cfg->dim % cfg->heads != 0)
    return strata_fail(err, errlen, "dim = %d is not divisible by heads = %d: choose dim a multiple of heads",
                       cfg->dim, cfg->heads);
  if (range.layer_begin < 0 || range.layer_end > cfg->layers || range.layer_begin > range.layer_end)
    return strata_fail(err, errlen,
                       "layer range [%d, %d) is not within the model's %d layers: need 0 <= layer_begin <= "
                       "layer_end <= layers",
                       range.layer_begin, range.layer_end, cfg->layers);
  if (range.has_embed && range.layer_begin != 0)
    return strata_fail(err, errlen, "has_embed with layer_begin = %d: the embedding belongs to the shard "
                       "that starts at layer 0", range.layer_begin);
  if (range.has_head && range.layer_end != cfg->layers)
    return strata_fail(err, errlen, "has_head with layer_end = %d: the head belongs to the shard that ends "
                       "at layer %d", range.layer_end, cfg->layers);
  if (range.layer_begin == range.layer_end && !range.has_embed && !range.has_head)
    return strata_fail(err, errlen, "layer range [%d, %d) is empty and owns neither embedding nor head",
                       range.layer_begin, range.layer_end);
  const int64_t C = cfg->dim;
  if ((int64_t)cfg->vocab * C > INT32_MAX || 4 * C * C > INT32_MAX)
    return strata_fail(err, errlen, "dim = %d with vocab = %d is too large for 32-bit BLAS indices", cfg->dim,
                       cfg->vocab);
  return 0;
}

int gpt2_create(const gpt2_config_t *cfg, gpt2_range_t range, gpt2_model_t **out, char *err,
                size_t errlen) {
  *out = NULL;
  if (check_config(cfg, range, err, errlen)) return -1;
  int nl = range.layer_end - range.layer_begin;
  gpt2_model_t *m = calloc(1, sizeof *m);
  gpt2_impl_t *impl = calloc(1, sizeof *impl);
  if (!m || !impl) {
    free(m);
    free(impl);
    return strata_fail(err, errlen, "out of memory for a model shard's state");
  }
  m->cfg = *cfg;
  m->range = range;
  m->impl = impl;
  int64_t blk;
  if (env_read_int("STRATA_ATTN_BLOCK_ROWS", GPT2_ATTN_BLOCK_ROWS_DEFAULT, &blk, err, errlen)) goto free_model;
  impl->attn_block = (int)blk;
  impl->vrow = alloc_floats((size_t)cfg->vocab, 0);
  m->tensors = calloc(6 + (size_t)LAYER_TENSORS * nl, sizeof *m->tensors);
  m->layer = calloc(nl > 0 ? nl : 1, sizeof *m->layer);
  m->g_layer = calloc(nl > 0 ? nl : 1, sizeof *m->g_layer);
  if (!impl->vrow || !m->tensors || !m->layer || !m->g_layer) goto oom;
  m->num_params = add_tensors(m);
  m->params = alloc_floats(m->num_params, 1);
  m->grads = alloc_floats(m->num_params, 1);
  if (!m->params || !m->grads) goto oom;
  bind_views(m, m->params, &m->wte, &m->wpe, m->layer, &m->lnf_w, &m->lnf_b);
  bind_views(m, m->grads, &m->g_wte, &m->g_wpe, m->g_layer, &m->g_lnf_w, &m->g_lnf_b);
  *out = m;
  return 0;
oom:
  strata_fail(err, errlen, "out of memory building the model shard (%d layers, dim %d)", nl, cfg->dim);
free_model:
  gpt2_free(m);
  return -1;
}

static void impl_free_scratch(gpt2_impl_t *impl) {
  free(impl->dres);
  free(impl->dln);
  free(impl->datty);
  free(impl->dbig);
  free(impl->datt);
  impl->dres = impl->dln = impl->datty = impl->dbig = impl->datt = NULL;
  impl->cap_tokens = 0;
  impl->cap_T = 0;
}

void gpt2_free(gpt2_model_t *m) {
  if (!m) return;
  if (m->impl) {
    impl_free_scratch(m->impl);
    free(((gpt2_impl_t *)m->impl)->vrow);
    free(m->impl);
  }
  free(m->params);
  free(m->grads);
  free(m->tensors);
  free(m->layer);
  free(m->g_layer);
  free(m);
}

const gpt2_tensor_t *gpt2_find_tensor(const gpt2_model_t *m, const char *name) {
  for (int i = 0; i < m->num_tensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

void gpt2_init_params(gpt2_model_t *m, uint64_t seed) {
  float resid_std = GPT2_INIT_STD / sqrtf(2.0f * (float)m->cfg.layers);
  for (int i = 0; i < m->num_tensors; i++) {
    const gpt2_tensor_t *t = &m->tensors[i];
    float *p = m->params + t->offset;
    if (t->ndim == 2) {
      float std = (ends_with(t->name, "attn.c_proj.weight") || ends_with(t->name, "mlp.c_proj.weight"))
                      ? resid_std
                      : GPT2_INIT_STD;
      rng_t r;
      rng_seed(&r, seed, rng_hash_str(t->name));
      for (size_t j = 0; j < t->numel; j++) p[j] = std * rng_normal(&r);
    } else {
      int is_ln_weight = (strstr(t->name, "ln_") != NULL) && ends_with(t->name, ".weight");
      for (size_t j = 0; j < t->numel; j++) p[j] = is_ln_weight ? 1.0f : 0.0f;
    }
  }
}

void gpt2_zero_grad(gpt2_model_t *m) { memset(m->grads, 0, sizeof(float) * m->num_params); }

/* ---------------------------------------------------------------------------------------- */
/* activations */

static size_t round_up(size_t n) { return (n + GPT2_ALIGN_FLOATS - 1) / GPT2_ALIGN_FLOATS * GPT2_ALIGN_FLOATS; }

/* Carves the activation allocation; with base == NULL only counts floats. */
static size_t acts_layout(const gpt2_model_t *m, gpt2_acts_t *a, float *base) {
  size_t N = (size_t)a->B * a->T, C = m->cfg.dim, V = m->cfg.vocab, H = m->cfg.heads;
  size_t off = 0;
#define TAKE(ptr, count)                      \
  do {                                        \
    if (base) (ptr) = base + off;             \
    off += round_up(count);                   \
  } while (0)
  TAKE(a->x0, N * C);
  for (int l = 0; l < a->nl; l++) {
    gpt2_layer_acts_t *L = base ? &a->layer[l] : NULL;
    gpt2_layer_acts_t tmp;
    if (!L) L = &tmp;
    TAKE(L->ln1, N * C);
    TAKE(L->ln1_mean, N);
    TAKE(L->ln1_rstd, N);
    TAKE(L->qkv, N * 3 * C);
    TAKE(L->att, (size_t)a->B * H * a->T * a->T);
    TAKE(L->atty, N * C);
    TAKE(L->res2, N * C);
    TAKE(L->ln2, N * C);
    TAKE(L->ln2_mean, N);
    TAKE(L->ln2_rstd, N);
    TAKE(L->fch, N * 4 * C);
    TAKE(L->fch_gelu, N * 4 * C);
    TAKE(L->res3, N * C);
  }
  if (a->has_head) {
    TAKE(a->lnf, N * C);
    TAKE(a->lnf_mean, N);
    TAKE(a->lnf_rstd, N);
    TAKE(a->logits, N * V);
    TAKE(a->lse, N);
    TAKE(a->losses, N);
  }
#undef TAKE
  return off;
}

/* Grows the model's backward scratch to N tokens of length T. */
static int impl_reserve(gpt2_impl_t *impl, size_t N, int T, int C) {
  if (N <= impl->cap_tokens && T <= impl->cap_T) return 0;
  size_t n = N > impl->cap_tokens ? N : impl->cap_tokens;
  int t = T > impl->cap_T ? T : impl->cap_T;
  impl_free_scratch(impl);
  impl->dres = alloc_floats(n * C, 0);
  impl->dln = alloc_floats(n * C, 0);
  impl->datty = alloc_floats(n * C, 0);
  impl->dbig = alloc_floats(n * 4 * C, 0);
  impl->datt = alloc_floats((size_t)t * t, 0);
  if (!impl->dres || !impl->dln || !impl->datty || !impl->dbig || !impl->datt) {
    impl_free_scratch(impl);
    return -1;
  }
  impl->cap_tokens = n;
  impl->cap_T = t;
  return 0;
}

int gpt2_acts_create(const gpt2_model_t *m, int B, int T, gpt2_acts_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (B <= 0)
    return strata_fail(err, errlen, "batch B = %d: the micro-batch must hold at least one sequence", B);
  if (T <= 0 || T > m->cfg.ctx)
    return strata_fail(err, errlen, "sequence length T = %d: must be in [1, ctx = %d]", T, m->cfg.ctx);
  if ((int64_t)B * T > INT32_MAX / (4 * (int64_t)m->cfg.dim))
    return strata_fail(err, errlen, "micro-batch B*T = %lld tokens is too large for 32-bit BLAS indices",
                       (long long)B * T);
  gpt2_acts_t *a = calloc(1, sizeof *a);
  if (!a) goto oom;
  a->B = a->cap_B = B;
  a->T = a->cap_T = T;
  a->nl = m->range.layer_end - m->range.layer_begin;
  a->has_head = m->range.has_head;
  a->layer = calloc(a->nl > 0 ? a->nl : 1, sizeof *a->layer);
  a->tokens = calloc((size_t)B * T, sizeof(int32_t));
  a->targets = calloc((size_t)B * T, sizeof(int32_t));
  if (!a->layer || !a->tokens || !a->targets) goto oom;
  a->mem_floats = acts_layout(m, a, NULL);
  a->mem = aligned_alloc(64, sizeof(float) * a->mem_floats);
  if (!a->mem) goto oom;
  memset(a->mem, 0, sizeof(float) * a->mem_floats);
  acts_layout(m, a, a->mem);
  if (impl_reserve(m->impl, (size_t)B * T, T, m->cfg.dim) != 0) goto oom;
  *out = a;
  return 0;
oom:
  strata_fail(err, errlen, "out of memory for activations of B = %d, T = %d", B, T);
  gpt2_acts_free(a);
  return -1;
}

void gpt2_acts_free(gpt2_acts_t *a) {
  if (!a) return;
  free(a->mem);
  free(a->layer);
  free(a->tokens);
  free(a->targets);
  free(a);
}

int gpt2_acts_reshape(gpt2_acts_t *a, int B, int T, char *err, size_t errlen) {
  if (B <= 0 || T <= 0 || B > a->cap_B || T > a->cap_T)
    return strata_fail(err, errlen, "micro-batch B = %d, T = %d does not fit activations created for B = %d, T = %d",
                       B, T, a->cap_B, a->cap_T);
  /* every buffer was sized for (cap_B, cap_T) and is indexed with the current (B, T) */
  a->B = B;
  a->T = T;
  a->forward_done = 0;
  return 0;
}

size_t gpt2_acts_bytes(const gpt2_acts_t *a) {
  return sizeof(float) * a->mem_floats + 2 * sizeof(int32_t) * (size_t)a->cap_B * a->cap_T;
}

const float *gpt2_output(const gpt2_acts_t *a) { return a->nl > 0 ? a->layer[a->nl - 1].res3 : a->x0; }
const float *gpt2_logits(const gpt2_acts_t *a) { return a->logits; }
const float *gpt2_losses(const gpt2_acts_t *a) { return a->losses; }

/* ---------------------------------------------------------------------------------------- */
/* forward */

/* Are the n ids (tokens or targets, named by `what`) all in [0, V)? Says which is not. */
static int in_vocab(const char *what, const int32_t *ids, size_t n, int V) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= V) {
      strata_error("gpt2_forward: %s %d at position %zu is outside the vocabulary [0, %d)", what, ids[i], i, V);
      return 0;
    }
  return 1;
}

float gpt2_forward(gpt2_model_t *m, gpt2_acts_t *a, const int32_t *tokens, const float *x_in,
                   const int32_t *targets) {
  const int B = a->B, T = a->T, C = m->cfg.dim, V = m->cfg.vocab, H = m->cfg.heads;
  const size_t N = (size_t)B * T;
  a->forward_done = 0;
  if (m->range.has_embed ? tokens == NULL : x_in == NULL) {
    strata_error("gpt2_forward: %s is NULL (a shard %s the embedding takes %s)",
                 m->range.has_embed ? "tokens" : "x_in", m->range.has_embed ? "with" : "without",
                 m->range.has_embed ? "tokens (B, T)" : "the residual stream x_in (B, T, C)");
    return NAN;
  }
  if (m->range.has_embed) {
    if (!in_vocab("token", tokens, N, V)) return NAN;
    memcpy(a->tokens, tokens, sizeof(int32_t) * N);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) {
        float *x = a->x0 + ((size_t)b * T + t) * C;
        const float *we = m->wte + (size_t)tokens[b * T + t] * C, *pe = m->wpe + (size_t)t * C;
        for (int i = 0; i < C; i++) x[i] = we[i] + pe[i];
      }
  } else {
    memcpy(a->x0, x_in, sizeof(float) * N * C);
  }

  const float *x = a->x0;
  for (int l = 0; l < a->nl; l++) {
    const gpt2_layer_t *P = &m->layer[l];
    gpt2_layer_acts_t *L = &a->layer[l];
    layernorm_forward(L->ln1, L->ln1_mean, L->ln1_rstd, x, P->ln1_w, P->ln1_b, N, C);
    matmul_forward(L->qkv, L->ln1, P->attn_w, P->attn_b, N, C, 3 * C, 0);
    attention_forward(L->atty, L->att, L->qkv, B, T, C, H, ((gpt2_impl_t *)m->impl)->attn_block);
    memcpy(L->res2, x, sizeof(float) * N * C);
    matmul_forward(L->res2, L->atty, P->attn_proj_w, P->attn_proj_b, N, C, C, 1);
    layernorm_forward(L->ln2, L->ln2_mean, L->ln2_rstd, L->res2, P->ln2_w, P->ln2_b, N, C);
    matmul_forward(L->fch, L->ln2, P->fc_w, P->fc_b, N, C, 4 * C, 0);
    gelu_forward(L->fch_gelu, L->fch, N * 4 * C);
    memcpy(L->res3, L->res2, sizeof(float) * N * C);
    matmul_forward(L->res3, L->fch_gelu, P->fc_proj_w, P->fc_proj_b, N, 4 * C, C, 1);
    x = L->res3;
  }

  float loss = 0.0f;
  if (m->range.has_head) {
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, x, m->lnf_w, m->lnf_b, N, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, V, C, 1.0f, a->lnf, C, m->wte, C, 0.0f,
                a->logits, V);
    a->have_targets = targets != NULL;
    if (targets) {
      if (!in_vocab("target", targets, N, V)) return NAN;
      memcpy(a->targets, targets, sizeof(int32_t) * N);
    }
    double total = 0.0;
    for (size_t i = 0; i < N; i++) {
      const float *lg = a->logits + i * V;
      float mx = max_of(lg, V);
      float *row = ((gpt2_impl_t *)m->impl)->vrow;
      memcpy(row, lg, sizeof(float) * V);
      float s = exp_shift_sum(row, V, mx);
      a->lse[i] = mx + logf(s);
      if (targets) {
        a->losses[i] = a->lse[i] - lg[targets[i]];
        total += a->losses[i];
      }
    }
    if (targets) loss = (float)(total / (double)N);
  }
  a->forward_done = 1;
  return loss;
}

/* ---------------------------------------------------------------------------------------- */
/* backward */

static void report(gpt2_model_t *m, size_t offset, size_t count) {
  if (m->grad_ready && count) m->grad_ready(m->grad_ready_ctx, offset, count);
}

static size_t layer_offset(const gpt2_model_t *m, int local) {
  char nm[64];
  snprintf(nm, sizeof nm, "h.%d.ln_1.weight", m->range.layer_begin + local);
  return gpt2_find_tensor(m, nm)->offset;
}

void gpt2_backward(gpt2_model_t *m, gpt2_acts_t *a, const float *dx_out, float loss_scale, float *dx_in) {
  const int B = a->B, T = a->T, C = m->cfg.dim, V = m->cfg.vocab, H = m->cfg.heads;
  const size_t N = (size_t)B * T;
  gpt2_impl_t *s = m->impl;
  if (!a->forward_done) {
    strata_error("gpt2_backward: no forward pass to differentiate (call gpt2_forward first; "
                 "each forward allows one backward)");
    return;
  }
  if (m->range.has_head && !a->have_targets) {
    strata_error("gpt2_backward: the forward pass of the head shard had no targets");
    return;
  }
  if (!m->range.has_head && !dx_out) {
    strata_error("gpt2_backward: dx_out is NULL (a shard without the head needs the gradient of "
                 "its output, (B, T, C))");
    return;
  }
  a->forward_done = 0;
  float *dres = s->dres;
  const float *x_last = gpt2_output(a);
  const size_t layer_numel = 12 * (size_t)C * C + 13 * (size_t)C;

  if (m->range.has_head) {
    /* dlogits = (softmax - onehot) * loss_scale / N, in place over the logits */
    const float dscale = loss_scale / (float)N;
    for (size_t i = 0; i < N; i++) {
      float *lg = a->logits + i * V;
      exp_shift_sum(lg, V, a->lse[i]);
      scale_by(lg, V, dscale);
      lg[a->targets[i]] -= dscale;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, C, V, 1.0f, a->logits, V, m->wte, C,
                0.0f, s->dln, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, (int)N, 1.0f, a->logits, V, a->lnf, C,
                1.0f, m->g_wte, C);
    memset(dres, 0, sizeof(float) * N * C);
    layernorm_backward(dres, m->g_lnf_w, m->g_lnf_b, s->dln, x_last, m->lnf_w, a->lnf_mean, a->lnf_rstd,
                       N, C);
    report(m, gpt2_find_tensor(m, "ln_f.weight")->offset, 2 * (size_t)C);
  } else {
    memcpy(dres, dx_out, sizeof(float) * N * C);
  }

  for (int l = a->nl - 1; l >= 0; l--) {
    const gpt2_layer_t *P = &m->layer[l];
    gpt2_layer_t *G = &m->g_layer[l];
    gpt2_layer_acts_t *L = &a->layer[l];
    const float *x = l > 0 ? a->layer[l - 1].res3 : a->x0;
    /* MLP */
    matmul_backward(s->dbig, G->fc_proj_w, G->fc_proj_b, dres, L->fch_gelu, P->fc_proj_w, N, 4 * C, C);
    gelu_backward(s->dbig, L->fch, N * 4 * C);
    matmul_backward(s->dln, G->fc_w, G->fc_b, s->dbig, L->ln2, P->fc_w, N, C, 4 * C);
    layernorm_backward(dres, G->ln2_w, G->ln2_b, s->dln, L->res2, P->ln2_w, L->ln2_mean, L->ln2_rstd, N, C);
    /* attention */
    matmul_backward(s->datty, G->attn_proj_w, G->attn_proj_b, dres, L->atty, P->attn_proj_w, N, C, C);
    attention_backward(s->dbig, s->datt, s->datty, L->qkv, L->att, B, T, C, H, s->attn_block);
    matmul_backward(s->dln, G->attn_w, G->attn_b, s->dbig, L->ln1, P->attn_w, N, C, 3 * C);
    layernorm_backward(dres, G->ln1_w, G->ln1_b, s->dln, x, P->ln1_w, L->ln1_mean, L->ln1_rstd, N, C);
    report(m, layer_offset(m, l), layer_numel);
  }

  if (m->range.has_embed) {
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) {
        const float *d = dres + ((size_t)b * T + t) * C;
        float *gp = m->g_wpe + (size_t)t * C;
        float *gt = m->g_wte + (size_t)a->tokens[b * T + t] * C;
        add_to(gp, d, C);
        add_to(gt, d, C);
      }
    const gpt2_tensor_t *wpe = gpt2_find_tensor(m, "wpe.weight");
    report(m, wpe->offset, wpe->numel);
  } else if (dx_in) {
    memcpy(dx_in, dres, sizeof(float) * N * C);
  }
  const gpt2_tensor_t *wte = gpt2_find_tensor(m, "wte.weight");
  if (wte) report(m, wte->offset, wte->numel);
}

/* ---------------------------------------------------------------------------------------- */

double gpt2_train_flops(const gpt2_model_t *m, int B, int T) {
  double C = m->cfg.dim, tokens = (double)B * T;
  int nl = m->range.layer_end - m->range.layer_begin;
  double matmul_params = nl * 12.0 * C * C + (m->range.has_head ? (double)m->cfg.vocab * C : 0.0);
  /* attention: Q K^T and P V, 2 * 2 * T * C FLOPs per token per layer forward, x3 with backward */
  double attn = nl * 12.0 * C * (double)T * tokens;
  return 6.0 * matmul_params * tokens + attn;
}

/* ---------------------------------------------------------------------------------------- */
/* forward with a KV cache (generation) */

/* Causal attention of one sequence's new rows against its cache, one head at a time.
 * qkv (n, 3C) of the new rows (their K and V already copied to the cache at [pos0, pos0+n));
 * kc, vc (cap, C) of this layer; y (n, C) out; sc (n, pos0+n) scratch. */
static void attention_kv(float *y, float *sc, const float *qkv, const float *kc, const float *vc,
                         int n, int pos0, int C, int H) {
  const int hs = C / H, C3 = 3 * C, L = pos0 + n;
  const float scale = 1.0f / sqrtf((float)hs);
  for (int h = 0; h < H; h++) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, L, hs, scale, qkv + h * hs, C3,
                kc + h * hs, C, 0.0f, sc, L);
    for (int i = 0; i < n; i++) {
      float *p = sc + (size_t)i * L;
      int valid = pos0 + i + 1; /* row i sees keys [0, pos0 + i] */
      float mx = max_of(p, valid);
      float s = exp_shift_sum(p, valid, mx);
      scale_by(p, valid, 1.0f / s);
      for (int j = valid; j < L; j++) p[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, L, 1.0f, sc, L, vc + h * hs, C,
                0.0f, y + h * hs, C);
  }
}

int gpt2_forward_kv(gpt2_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens,
                    const float *x_in, float *out, int last_only, char *err, size_t errlen) {
  const int C = m->cfg.dim, V = m->cfg.vocab, H = m->cfg.heads;
  const int nl = m->range.layer_end - m->range.layer_begin;
  size_t N = 0, max_scores = 0;
  int rc = -1;
  float *mem = NULL;
  if (nseq < 1 || !out || (m->range.has_embed ? !tokens : !x_in))
    return strata_fail(err, errlen, "gpt2_forward_kv: no sequences, or a NULL %s / out",
                       m->range.has_embed ? "tokens" : "x_in");
  for (int s = 0; s < nseq; s++) {
    const gpt2_kv_seq_t *q = &seqs[s];
    if (q->n_new < 1 || q->pos0 < 0 || q->pos0 + q->n_new > q->cap || q->pos0 + q->n_new > m->cfg.ctx ||
        (nl > 0 && (!q->k || !q->v)))
      return strata_fail(err, errlen,
                     "gpt2_forward_kv: sequence %d: positions [%d, %d) do not fit the cache (%d positions) "
                     "or the model's context (%d)",
                     s, q->pos0, q->pos0 + q->n_new, q->cap, m->cfg.ctx);
    N += (size_t)q->n_new;
    size_t sc = (size_t)q->n_new * (size_t)(q->pos0 + q->n_new);
    if (sc > max_scores) max_scores = sc;
  }
  /* scratch: x (N,C), ln (N,C), qkv (N,3C), atty (N,C), fch (N,4C), scores */
  size_t floats = N * (size_t)C * 10 + max_scores;
  mem = alloc_floats(floats, 0);
  if (!mem)
    return strata_fail(err, errlen, "gpt2_forward_kv: out of memory (%zu rows)", N);
  float *x = mem, *ln = x + N * C, *qkv = ln + N * C, *atty = qkv + N * 3 * C, *fch = atty + N * C;
  float *sc = fch + N * 4 * C;
  float *mean = qkv, *rstd = qkv + N; /* LayerNorm statistics are not needed: reuse qkv space */
  float *mean2 = fch, *rstd2 = fch + N;

  if (m->range.has_embed) {
    size_t r = 0;
    for (int s = 0; s < nseq; s++)
      for (int t = 0; t < seqs[s].n_new; t++, r++) {
        if (tokens[r] < 0 || tokens[r] >= V) {
          strata_fail(err, errlen, "gpt2_forward_kv: token %d is outside the vocabulary [0, %d)", tokens[r], V);
          goto out;
        }
        const float *we = m->wte + (size_t)tokens[r] * C, *pe = m->wpe + (size_t)(seqs[s].pos0 + t) * C;
        for (int i = 0; i < C; i++) x[r * C + i] = we[i] + pe[i];
      }
  } else {
    memcpy(x, x_in, sizeof(float) * N * C);
  }

  for (int l = 0; l < nl; l++) {
    const gpt2_layer_t *P = &m->layer[l];
    layernorm_forward(ln, mean, rstd, x, P->ln1_w, P->ln1_b, N, C);
    matmul_forward(qkv, ln, P->attn_w, P->attn_b, N, C, 3 * C, 0);
    size_t r = 0;
    for (int s = 0; s < nseq; s++) {
      const gpt2_kv_seq_t *q = &seqs[s];
      float *kc = q->k + (size_t)l * q->cap * C, *vc = q->v + (size_t)l * q->cap * C;
      for (int t = 0; t < q->n_new; t++) {
        memcpy(kc + (size_t)(q->pos0 + t) * C, qkv + (r + t) * 3 * C + C, sizeof(float) * C);
        memcpy(vc + (size_t)(q->pos0 + t) * C, qkv + (r + t) * 3 * C + 2 * C, sizeof(float) * C);
      }
      attention_kv(atty + r * C, sc, qkv + r * 3 * C, kc, vc, q->n_new, q->pos0, C, H);
      r += (size_t)q->n_new;
    }
    matmul_forward(x, atty, P->attn_proj_w, P->attn_proj_b, N, C, C, 1); /* x += proj(atty) */
    layernorm_forward(ln, mean2, rstd2, x, P->ln2_w, P->ln2_b, N, C);
    matmul_forward(fch, ln, P->fc_w, P->fc_b, N, C, 4 * C, 0);
    gelu_forward(fch, fch, N * 4 * C);
    matmul_forward(x, fch, P->fc_proj_w, P->fc_proj_b, N, 4 * C, C, 1);
  }

  if (m->range.has_head) {
    /* the rows whose logits are wanted, gathered into atty */
    size_t rows = 0, r = 0;
    for (int s = 0; s < nseq; s++) {
      if (last_only) {
        memcpy(atty + rows * C, x + (r + seqs[s].n_new - 1) * C, sizeof(float) * C);
        rows++;
      } else {
        memcpy(atty + rows * C, x + r * C, sizeof(float) * C * seqs[s].n_new);
        rows += (size_t)seqs[s].n_new;
      }
      r += (size_t)seqs[s].n_new;
    }
    layernorm_forward(ln, mean, rstd, atty, m->lnf_w, m->lnf_b, rows, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, V, C, 1.0f, ln, C, m->wte, C, 0.0f,
                out, V);
  } else {
    memcpy(out, x, sizeof(float) * N * C);
  }
  rc = 0;
out:
  free(mem);
  return rc;
}

double gpt2_forward_kv_flops(const gpt2_model_t *m, int n_new, int pos0) {
  double C = m->cfg.dim;
  int nl = m->range.layer_end - m->range.layer_begin;
  double mm = nl * 12.0 * C * C * 2.0 * n_new;
  double attn = nl * 4.0 * C * (double)n_new * (pos0 + n_new);
  double head = m->range.has_head ? 2.0 * C * m->cfg.vocab : 0.0;
  return mm + attn + head;
}
