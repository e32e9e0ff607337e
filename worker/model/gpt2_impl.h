/* gpt2_impl.h -- state shared by the files of the GPT-2 model (private to worker/model):
 * gpt2.c (construction, settings, FLOPs), gpt2_acts.c (activation storage and the model's
 * scratch), gpt2_pass.c (the training forward and backward), gpt2_tensor.c (the tensor
 * catalogue, its tensor-parallel split rules, slicing, initialisation) and gpt2_kv.c (the
 * KV-cache forward for generation). */
#ifndef STRATA_GPT2_IMPL_H
#define STRATA_GPT2_IMPL_H

#include <stddef.h>

#include "buffer.h"
#include "gpt2.h"

#define GPT2_ALIGN_FLOATS 16 /* sub-buffers aligned to 64 bytes */

/* One layer's activations of a micro-batch. rows = B*T, or B*T/tp with sequence parallelism
 * (the LayerNorm / residual region); N = B*T always for the tensor-parallel region, whose
 * width is this rank's share (Cl = C/tp, Hl = H/tp). */
typedef struct {
  float *ln1, *ln1_mean, *ln1_rstd; /* (rows, C), (rows), (rows) */
  float *qkv;                       /* (N, 3Cl) [q | k | v] of the local heads */
  float *att;                       /* (B, Hl, T, T) softmax probabilities; NULL unless NONE */
  float *atty;                      /* (N, Cl) attention output before c_proj */
  float *res2;                      /* (rows, C) residual after attention */
  float *ln2, *ln2_mean, *ln2_rstd; /* (rows, C), (rows), (rows) */
  float *fch;                       /* (N, 4Cl) c_fc output (pre-GELU) */
  float *fch_gelu;                  /* (N, 4Cl) GELU output */
  float *res3;                      /* (rows, C) residual leaving the block */
} gpt2_layer_acts_t;

/* What the model's scratch must hold (gpt2_impl_t below): N positions, `rows` region rows,
 * sequence length T, and which optional parts (patt: one head's probabilities; layer: one
 * layer's activations; head: ln_f and the logits; sp: the sequence-parallel gathers). */
typedef struct {
  size_t N, rows;
  int T, patt, layer, head, sp;
} gpt2_scratch_need_t;

typedef struct {
  /* shape of this rank's part */
  int tp, t;             /* tensor-parallel size and rank (range.tp_size, range.tp_rank) */
  int Cl, Hl;            /* C/tp, H/tp */
  int Vl, voff, vvalid;  /* local vocabulary rows, the id of row 0, rows below V (the rest pad) */
  size_t layer_numel;    /* parameters of one layer on this rank */
  int attn_block;        /* query rows per attention block (STRATA_ATTN_BLOCK_ROWS) */
  /* settings */
  coll_comm_t *comm;     /* TP communicator (gpt2_set_tp; NULL at tp = 1) */
  int sp;                /* sequence parallelism on (tp > 1 only) */
  gpt2_recompute_t recompute; /* mode for activations created from now on */
  gemm_dtype_t mm;       /* precision of every matrix product (gpt2_set_matmul_dtype) */
  /* scratch shared by all micro-batches: one allocation, sized for what cap covers (the largest
   * activation sets created so far; the optional parts once one needing them was created) */
  float *mem;
  size_t mem_floats;
  gpt2_scratch_need_t cap;
  float *row;            /* (max(Vl, 4C)) one row: exponentials for the log-sum-exp, or a
                            logical weight row being drawn by gpt2_init_params */
  float *dres;           /* (rows, C) gradient of the residual stream */
  float *dln;            /* (N, C) gradient of a LayerNorm output (partial sums before f's reduction) */
  float *datty;          /* (N, Cl) gradient of the attention output (before c_proj) */
  float *dbig;           /* (N, 4Cl) gradient of the MLP hidden layer, or of qkv (N, 3Cl) */
  float *datt;           /* (T, T) gradient of one head's attention probabilities */
  float *patt;           /* (T, T) one head's probabilities when they are not kept */
  float *part;           /* (N, C) tp > 1: partial sums of a row-parallel product / embedding
                            before g's reduction; the all-gathered gradient of the stream */
  float *lnfull;         /* (N, C) sequence parallel: an all-gathered LayerNorm output */
  float *lngrad;         /* (4C) sequence parallel: this backward's LayerNorm gradients
                            [ln_1.w, ln_1.b, ln_2.w, ln_2.b] (or ln_f's) before their all-reduce */
  float *ce;             /* (2N) exp-sums and target logits (before their all-reduce at tp > 1) */
  gpt2_layer_acts_t rl;  /* FULL recomputation: one layer's activations (att NULL) */
  float *lnf, *lnf_mean, *lnf_rstd, *logits; /* FULL recomputation on the head shard: ln_f's output
                          (N, C), its statistics (rows) and the logits (N, Vl) of the micro-batch
                          being run (gpt2_acts_t points at them during its forward / backward) */
} gpt2_impl_t;

static inline size_t gpt2_round_up(size_t n) {
  return (n + GPT2_ALIGN_FLOATS - 1) / GPT2_ALIGN_FLOATS * GPT2_ALIGN_FLOATS;
}

/* One micro-batch's activations (gpt2_acts.c carves them; gpt2_pass.c computes them). */
struct gpt2_acts {
  int B, T;               /* micro-batch shape */
  int cap_B, cap_T;       /* shape the storage was created for */
  int nl;                 /* layers of the shard */
  int has_head;
  int tp, sp;             /* TP size and sequence parallelism the storage is laid out for */
  gpt2_recompute_t recompute; /* what the storage keeps */
  float *mem;             /* the one allocation all float buffers view into */
  size_t mem_floats;
  int32_t *tokens;        /* (N) copy of the input tokens (has_embed) */
  int32_t *targets;       /* (N) copy of the targets (has_head) */
  int have_targets;       /* forward was given targets */
  int forward_done;       /* forward ran since creation / last backward */
  float *x0;              /* (rows, C) residual entering the first layer of the shard */
  gpt2_layer_acts_t *layer; /* [nl]; FULL keeps only res3 (each next layer's input) */
  float *lnf;             /* (N, C) ln_f output, every row (all-gathered with SP) */
  float *lnf_mean, *lnf_rstd; /* (rows) */
  float *logits;          /* (N, Vl); overwritten by d(loss)/d(logits) during backward;
                             FULL: these four point into the model's scratch (bind_head) */
  float *lse;             /* (N) log-sum-exp of each logits row (all vocabulary columns) */
  float *losses;          /* (N) per-position cross-entropy */
};

/* Every float buffer the model computes on is 64-byte aligned (a cache line, an AVX-512
 * vector): faster, and it keeps vector loops on the same path whatever the allocator did. */
static inline void *gpt2_alloc_floats(size_t n, int zero) { return buffer_alloc(n * sizeof(float), zero); }

static inline gpt2_impl_t *gpt2_impl_of(const gpt2_model_t *m) { return (gpt2_impl_t *)m->impl; }

/* Rows of the LayerNorm / residual region for N positions. */
static inline size_t gpt2_region_rows(size_t N, int tp, int sp) { return sp ? N / (size_t)tp : N; }

/* gpt2_acts.c: can `a` run on m now? A TP shard needs its communicator, and the activations'
 * layout must match the model's tensor-parallel setting. Logs (naming fn) and returns -1 if not. */
int gpt2_acts_usable(const gpt2_model_t *m, const gpt2_acts_t *a, const char *fn);
/* gpt2_acts.c: with FULL recomputation on the head shard, points a's ln_f output and logits at the
 * model's scratch (which may have moved since a's last call); otherwise nothing. */
void gpt2_acts_bind_head(const gpt2_model_t *m, gpt2_acts_t *a);

/* gpt2_pass.c: out (N, C) = this rank's wte rows of the N tokens, zeros for tokens of other
 * ranks' vocabulary slices (the vocabulary-parallel embedding before its TP sum). */
void gpt2_vocab_lookup(const gpt2_model_t *m, const int32_t *tokens, size_t N, float *out);

/* gpt2_tensor.c: fills m->tensors (room for 6 + 12 per layer) in flat-buffer order with this
 * rank's local shapes; returns the number of parameters. */
size_t gpt2_catalogue(gpt2_model_t *m);
/* gpt2_tensor.c: points wte, wpe, layer[], lnf_w/b at their tensors inside base. */
void gpt2_bind_views(gpt2_model_t *m, float *base, float **wte, float **wpe, gpt2_layer_t *layer, float **lnf_w,
                     float **lnf_b);

/* gpt2.c: logs "gpt2: tensor-parallel <what> failed: <coll_last_error>" when rc != COLL_OK and
 * returns -1 (0 on COLL_OK). */
int gpt2_coll_check(gpt2_model_t *m, coll_result_t rc, const char *what);

#endif /* STRATA_GPT2_IMPL_H */
