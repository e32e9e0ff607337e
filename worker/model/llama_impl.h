/* llama_impl.h -- llama.c's layer kernels that the cached forward (llama_kv.c) shares, so both
 * passes compute the same RMSNorm, SwiGLU and rotary embedding. Private to worker/model. */
#ifndef STRATA_LLAMA_IMPL_H
#define STRATA_LLAMA_IMPL_H

#include <stddef.h>

#include "llama.h"

/* out (N, C) = w * x * rsqrt(mean(x^2) + eps) per row of inp (N, C); rstd (N) gets 1/rms. */
void llama_rmsnorm(float *out, float *rstd, const float *inp, const float *w, size_t N, int C, float eps);
/* out (n) = silu(gate) * up. */
void llama_swiglu(float *out, const float *gate, const float *up, size_t n);
/* Rotates `heads` consecutive heads of size hs = dim / heads of one row v by position pos
 * (0 <= pos < cfg.ctx; the model's cos / sin tables), rotate-half convention. */
void llama_rope_at(const llama_model_t *m, float *v, int heads, int pos);

#endif /* STRATA_LLAMA_IMPL_H */
