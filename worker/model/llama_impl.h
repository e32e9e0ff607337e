/* llama_impl.h -- llama.c's layer kernels that the cached forward (llama_kv.c) shares, so both
 * passes compute the same RMSNorm, SwiGLU, rotary embedding and tensor-parallel embedding,
 * row-parallel products and head. Private to worker/model. */
#ifndef STRATA_LLAMA_IMPL_H
#define STRATA_LLAMA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "llama.h"

/* The sizes of a model's tensor-parallel part (llama.h; at tp = 1 the whole model's). */
typedef struct {
  int tp;       /* tensor-parallel ranks */
  int has_comm; /* llama_set_tp gave the TP group (needed at tp > 1) */
  int hs;       /* head size dim / heads */
  int Hl, KVl;  /* local query and kv heads */
  int Cq, Ckv;  /* local query width Hl * hs and key / value width KVl * hs */
  int Fl;       /* local SwiGLU width ffn / tp */
  int Vl;       /* local vocabulary rows (logits columns) Vp / tp */
  int vvalid;   /* of them below the vocabulary size (the rest are padding) */
} llama_tp_part_t;
void llama_tp_part(const llama_model_t *m, llama_tp_part_t *p);

/* out (N, C) = w * x * rsqrt(mean(x^2) + eps) per row of inp (N, C); rstd (N) gets 1/rms. */
void llama_rmsnorm(float *out, float *rstd, const float *inp, const float *w, size_t N, int C, float eps);
/* out (n) = silu(gate) * up. */
void llama_swiglu(float *out, const float *gate, const float *up, size_t n);
/* Rotates `heads` consecutive heads of size hs = dim / heads of one row v by position pos
 * (0 <= pos < cfg.ctx; the model's cos / sin tables), rotate-half convention. */
void llama_rope_at(const llama_model_t *m, float *v, int heads, int pos);
/* x (N, C) = embed_tokens[tokens] (ids in [0, V)); at tp > 1 each rank looks up its rows and
 * the TP group all-reduces, so every rank ends with the whole rows. 0, or -1 (logged). */
int llama_embed(llama_model_t *m, const int32_t *tokens, size_t N, float *x);
/* out (N, C) = res + inp (N, nin) @ w^T for a row-parallel w (C, nin) [out, in]: at tp > 1 the
 * partial sum goes through part (N, C) scratch and is all-reduced before the add. out may be
 * res. 0, or -1 (logged). */
int llama_row_parallel(llama_model_t *m, float *out, const float *res, const float *inp, const float *w, size_t N,
                       int nin, float *part);
/* logits (N, Vl) = nf (N, C) @ lm_head^T of this rank's vocabulary rows; padding columns
 * -INFINITY. */
void llama_head_logits(const llama_model_t *m, float *logits, const float *nf, size_t N);

#endif /* STRATA_LLAMA_IMPL_H */
