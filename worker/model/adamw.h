/* adamw.h -- AdamW exactly as torch.optim.AdamW, the learning-rate schedule, and gradient
 * clipping by global norm, over flat float buffers (one model shard, or a ZeRO-1 slice of it).
 *
 * Update of one element at step t (t = 1, 2, ...; torch.optim.AdamW, amsgrad=False):
 *     g  = grad * grad_scale                      (grad_scale: clipping factor, 1 if none)
 *     p  = p * (1 - lr * wd)                      (wd = weight_decay if the tensor decays, else 0)
 *     m  = beta1 * m + (1 - beta1) * g
 *     v  = beta2 * v + (1 - beta2) * g^2
 *     p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * Weight decay applies only to tensors with gpt2_tensor_t.decay = 1 (the 2-D ones: matmul
 * weights and embeddings), as nanoGPT and llm.c group them.
 *
 * Schedule (adamw_lr_at, step counted from 0): linear warm-up from lr/warmup to lr over
 * `warmup_steps`, then cosine decay from lr to lr * min_lr_ratio at `decay_steps`, constant
 * after; decay_steps <= warmup_steps means constant lr after warm-up.
 *
 * Clipping, distributed: each rank computes adamw_sum_squares over the gradients it owns
 * (its shard; for the tied wte count only one copy, after the two copies were summed), the
 * job all-reduces the sums across stages (and within a replica group only once), and every
 * rank turns the global sum into the same factor with adamw_clip_scale, passed to the update
 * as grad_scale. As torch.nn.utils.clip_grad_norm_: scale = min(1, max_norm / (norm + 1e-6)).
 *
 * Usage (single rank):
 *    adamw_hparams_t hp; adamw_hparams_default(&hp);
 *    adamw_t *opt; adamw_create(0, m->num_params, &opt, err, sizeof err);
 *    double ss = adamw_sum_squares(m->grads, m->num_params);
 *    float scale = adamw_clip_scale(ss, hp.grad_clip);
 *    adamw_step(opt, &hp, m->params, m->grads, m->tensors, m->num_tensors,
 *               adamw_lr_at(&hp, step), scale);
 */
#ifndef STRATA_ADAMW_H
#define STRATA_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"

typedef struct {
  /* Scalars are double, as Python floats are in torch.optim.AdamW; the kernel rounds the
   * derived factors (1 - beta1, lr / (1 - beta1^t), ...) to float exactly where torch does. */
  double lr;           /* peak learning rate (default 1e-3, STRATA_LR) */
  double beta1;        /* first-moment decay (default 0.9) */
  double beta2;        /* second-moment decay (default 0.95) */
  double eps;          /* denominator epsilon (default 1e-8) */
  double weight_decay; /* decoupled weight decay on decay=1 tensors (default 0.1, STRATA_WEIGHT_DECAY) */
  double grad_clip;    /* max global gradient L2 norm; <= 0 disables (default 1.0, STRATA_GRAD_CLIP) */
  int warmup_steps;    /* linear warm-up steps (default 10, STRATA_WARMUP_STEPS) */
  int decay_steps;     /* step at which the cosine reaches the floor; 0: no decay (default 0) */
  double min_lr_ratio; /* floor of the cosine as a fraction of lr (default 0.1) */
} adamw_hparams_t;

/* Optimizer state for the flat elements [begin, begin + count) of a shard's buffers. */
typedef struct {
  size_t begin;  /* first flat element covered */
  size_t count;  /* elements covered */
  float *m;      /* (count) first moments */
  float *v;      /* (count) second moments */
  int64_t t;     /* steps taken (bias correction uses t after increment) */
  int sr;        /* 1: weights are bf16, stochastically rounded after each update (below) */
  uint64_t sr_seed;
  int sr_tp_rank; /* the shard's tensor-parallel rank (maps local elements to logical ones) */
} adamw_t;

/* Fills the documented defaults, then applies environment overrides STRATA_LR,
 * STRATA_WARMUP_STEPS, STRATA_WEIGHT_DECAY, STRATA_GRAD_CLIP when set. */
void adamw_hparams_default(adamw_hparams_t *hp);
/* Checks ranges (lr > 0, 0 <= beta < 1, eps > 0, wd >= 0, warmup >= 0, 0 <= min_lr_ratio <= 1);
 * returns -1 with a message naming the field on failure. */
int adamw_hparams_check(const adamw_hparams_t *hp, char *err, size_t errlen);

/* Zeroed moments for [begin, begin + count). */
int adamw_create(size_t begin, size_t count, adamw_t **out, char *err, size_t errlen);
void adamw_free(adamw_t *o);

/* bf16 weights with stochastic rounding (--precision bf16-sr): after each update, every updated
 * element is rounded to bf16 (bf16.h's bf16_round_sr), rounding up with probability equal to
 * its distance from the lower bf16 neighbour, from random bits that depend only on (seed, the
 * step o->t, the tensor's name, the element's index in the logical tp = 1 tensor). So every
 * layout -- pipeline stages, tensor-parallel slices, ZeRO-1 slices, both copies of a tied wte --
 * rounds each logical weight the same way, and a resumed run (o->t from the checkpoint) draws
 * the same bits. The weights must start as bf16 values (bf16_round_params). tp_rank: the
 * shard's tensor-parallel rank (0 without TP). */
void adamw_set_stochastic_rounding(adamw_t *o, uint64_t seed, int tp_rank);
/* Rounds n weights to bf16 (round-to-nearest-even): the starting point of bf16-sr training. */
void bf16_round_params(float *params, size_t n);

/* Learning rate of step `step` (0-based) under the schedule above. */
double adamw_lr_at(const adamw_hparams_t *hp, int64_t step);

/* Sum of squares of n gradient values (double accumulation): this rank's part of the global
 * squared norm. */
double adamw_sum_squares(const float *g, size_t n);
/* The factor gradients are multiplied by so their global norm sqrt(sum_squares) is at most
 * max_norm (1 when max_norm <= 0 or the norm is already small enough). */
float adamw_clip_scale(double global_sum_squares, double max_norm);

/* One AdamW step over the covered range: params and grads are the shard's whole flat buffers
 * (indexed by flat offset), tensors the shard's catalogue (decides weight decay per element).
 * Increments o->t first. */
void adamw_step(adamw_t *o, const adamw_hparams_t *hp, float *params, const float *grads,
                const gpt2_tensor_t *tensors, int num_tensors, double lr, float grad_scale);

/* The elementwise kernel: n elements, moments m and v, weight decay wd (0 for none), step t. */
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, double lr, double beta1,
                  double beta2, double eps, double wd, float grad_scale, int64_t t);

#endif /* STRATA_ADAMW_H */
