/* nn.h -- the model's numeric kernels (private to worker/model): plain functions over flat
 * row-major float arrays, as llm.c writes them. gpt2.c builds the transformer from them; a
 * tensor-parallel rank calls the same kernels on its slice (C/tp columns, H/tp heads).
 *
 * Conventions: N rows of width C; weights in Hugging Face Conv1D layout [in, out]; outputs
 * overwrite unless a comment says they accumulate (+=). Results depend only on the inputs and
 * the shapes (never on buffer addresses), which keeps recomputation bit-identical.
 * The kernels with matrix products take their precision dt (gemm.h): GEMM_BF16 rounds the
 * products' inputs to bf16 and accumulates in fp32; everything else stays fp32.
 */
#ifndef STRATA_NN_H
#define STRATA_NN_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h"

/* out = GELU_tanh(x), n elements (out may equal x). */
/* Are the n ids (tokens or targets, named by `what`) all in [0, V)? Logs the first that is not,
 * as "CALLER: WHAT ID at position I is outside the vocabulary [0, V)". */
int nn_ids_in_vocab(const char *caller, const char *what, const int32_t *ids, size_t n, int V);
void nn_gelu_forward(float *out, const float *x, size_t n);
/* dout *= d(GELU)/dx (x), in place, n elements. */
void nn_gelu_backward(float *dout, const float *x, size_t n);
/* x[i] = exp(x[i] - m) for i < n; returns the sum of the results. */
float nn_exp_shift_sum(float *x, int n, float m);
/* max of x[0..n); -INFINITY when n == 0. */
float nn_max_of(const float *x, int n);
/* dst[i] += src[i], n elements. */
void nn_add_to(float *restrict dst, const float *restrict src, int n);
/* x[i] *= a, n elements. */
void nn_scale_by(float *x, int n, float a);

/* out (N, C) = LayerNorm(inp) * w + b (eps 1e-5); saves mean (N) and 1/std (N) per row. */
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, size_t N, int C);
/* dinp (N, C) += d(LayerNorm)/d(inp) . dout; dw, db (C) accumulate. */
void nn_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, size_t N, int C);

/* out (N, OC) = inp (N, IC) @ w (IC, OC) + bias; if accumulate, out += instead of =. */
void nn_matmul_forward(float *out, const float *inp, const float *w, const float *bias, size_t N, int IC,
                       int OC, int accumulate, gemm_dtype_t dt);
/* Given dout (N, OC): dw (IC, OC) += inp^T dout, db += column sums of dout, and
 * dinp (N, IC) = dout w^T (overwritten; skipped when dinp is NULL). */
void nn_matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, size_t N, int IC, int OC, gemm_dtype_t dt);

/* Causal multi-head attention of H heads of width C/H: qkv (B, T, 3C) laid out [q | k | v]
 * (each C wide, head h at columns h*C/H) -> out (B, T, C), scaled by 1/sqrt(C/H). Row block
 * [i0, i1) of a head (blk rows) only needs keys [0, i1): one sgemm per block.
 * att (B, H, T, T), when not NULL, keeps the softmax probabilities for the backward (row i
 * valid in columns [0, i]); with att NULL each head's probabilities go through pscratch (T, T)
 * and are not kept (selective recomputation). */
void nn_attention_forward(float *out, float *att, float *pscratch, const float *qkv, int B, int T, int C,
                          int H, int blk, gemm_dtype_t dt);
/* Backward of nn_attention_forward: dqkv (B, T, 3C) is overwritten from dout (B, T, C).
 * datt is (T, T) scratch. att as the forward kept it, or NULL: then each head's probabilities
 * are recomputed into pscratch (T, T) from qkv with the forward's code, bit for bit. */
void nn_attention_backward(float *dqkv, float *datt, float *pscratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int H, int blk, gemm_dtype_t dt);
/* Causal attention of one sequence's n new rows against its KV cache, one head at a time:
 * qkv (n, 3C) of the new rows (their keys and values already in the cache at [pos0, pos0+n));
 * kc, vc (cap, C) this layer's cache; y (n, C) out; sc (n, pos0+n) scratch. */
void nn_attention_kv(float *y, float *sc, const float *qkv, const float *kc, const float *vc, int n, int pos0,
                     int C, int H, gemm_dtype_t dt);
/* The same with grouped-query attention and any row strides: H query heads of width hs in q
 * (n rows, stride ldq), KVH key / value heads (KVH divides H; query head h reads kv head
 * h / (H / KVH)) in kc, vc (rows of stride ldkv); y (n, H * hs) out. */
void nn_attention_kv_grouped(float *y, float *sc, const float *q, int ldq, const float *kc, const float *vc,
                             int ldkv, int n, int pos0, int H, int KVH, int hs, gemm_dtype_t dt);

#endif /* STRATA_NN_H */
