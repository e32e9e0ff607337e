/* infer_model.h -- the model behind the generation engine (infer.c): this rank's stage of a
 * GPT-2 or a Llama checkpoint, created and loaded from the checkpoint, and the few calls the
 * engine makes on it (the cached forward, its cache width, its logits width and their
 * assembly). Each family is one const table of functions at the end of infer_model.c; the
 * engine never names a family. Private to worker/infer.
 *
 *   GPT-2  pipeline stages and tensor parallelism (gpt2.h): a stage loads its layers, and at
 *          T > 1 slices each whole tensor of the checkpoint into its part; the cache holds the
 *          rank's heads (C / T wide).
 *   Llama  pipeline stages and tensor parallelism (llama.h: llama_create_range): a stage loads
 *          its layers by name, at T > 1 each whole tensor sliced into the rank's part
 *          (ckpt_load_llama); the cache holds the rank's kv heads (kv_heads / T * head size
 *          wide).
 *
 * Usage (every rank of the job, with its stage):
 *    if (infer_model_check_layout(&mc, world, tp, err, sizeof err)) ...  // before anything else
 *    infer_stage_t st = {layer_begin, layer_end, stage == 0, stage == P - 1, t, T, bf16};
 *    infer_model_t *m; infer_model_open(ckpt_dir, &mc, &st, tp_comm, &m, err, sizeof err);
 *    kv_cache_create(nl, infer_model_kv_width(m), mc.shape.ctx, &cache, ...);
 *    infer_model_forward_kv(m, seqs, nseq, tokens, x_in, out, 1, err, sizeof err);
 */
#ifndef STRATA_INFER_MODEL_H
#define STRATA_INFER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "gpt2.h"
#include "strata/coll.h"

/* This rank's part of the model. */
typedef struct {
  int layer_begin, layer_end; /* the stage's layers (global indices) */
  int has_embed, has_head;    /* the first stage (takes tokens) / the last (makes logits) */
  int tp_rank, tp_size;       /* this rank in the stage's tensor-parallel group */
  int bf16;                   /* matrix products on bf16-rounded inputs */
} infer_stage_t;

typedef struct infer_model infer_model_t;

/* Whether the family of mc runs on `world` ranks of `tp` tensor-parallel ranks per stage
 * (T divides the heads -- Llama: also the kv heads and the SwiGLU width -- and the world, at
 * least a layer per stage).
 * 0, or -1 with one sentence naming the numbers and the fix. */
int infer_model_check_layout(const ckpt_model_config_t *mc, int world, int tp, char *err, size_t errlen);

/* Creates this rank's stage st of the model of mc and loads its weights from ckpt_dir; tp_comm
 * is the stage's tensor-parallel group (NULL at T = 1). 0, or -1 with a message in err. */
int infer_model_open(const char *ckpt_dir, const ckpt_model_config_t *mc, const infer_stage_t *st,
                     coll_comm_t *tp_comm, infer_model_t **out, char *err, size_t errlen);
void infer_model_free(infer_model_t *m); /* NULL is a no-op */

/* Floats per position per layer of this rank's KV cache (kv_cache_create's width). */
int infer_model_kv_width(const infer_model_t *m);
/* Logits columns this rank's forward_kv writes per row (the last stage): its slice of the
 * padded vocabulary, gpt2_padded_vocab(V, T) / T (V at T = 1). */
int infer_model_local_vocab(const infer_model_t *m);

/* The family's cached forward (gpt2_forward_kv / llama_forward_kv: the same contract). */
int infer_model_forward_kv(infer_model_t *m, const gpt2_kv_seq_t *seqs, int nseq, const int32_t *tokens,
                           const float *x_in, float *out, int last_only, char *err, size_t errlen);

/* Logits of `rows` positions as coll_allgather of every TP rank's (rows, local_vocab) leaves
 * them, into full (rows, V) in the vocabulary's order (at T = 1 a plain copy). */
void infer_model_logits_assemble(const infer_model_t *m, const float *gathered, size_t rows, float *full);

#endif /* STRATA_INFER_MODEL_H */
