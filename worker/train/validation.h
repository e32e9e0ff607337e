/* validation.h -- the held-out set every evaluation scores (strata train's validation loss, both
 * loops, and strata eval), and scoring it on one whole model.
 *
 * The validation set of a split is its first S sequences of T tokens in file order: sequence i
 * reads tokens [i*T, i*T + T + 1) of the split (inputs the first T, targets the last T), and
 * for a request of `tokens` tokens on a split of N tokens
 *    S = min(floor(tokens / T), floor((N - 1) / T)).
 * S depends on the data, T and the request only -- not on the batch, the micro-batches or the
 * layout -- and its loss is the mean over its S x T positions, summed in double position by
 * position. So however the sequences are grouped into forward passes (a micro-batch of one
 * replica, a batch of strata eval, padded at the end), the value is the same up to the float
 * rounding inside one forward pass (tests/dist: below 1e-6 across layouts).
 *
 * Usage (one rank, a whole model whose activations hold `width` sequences):
 *    int64_t seqs;
 *    if (valset_size(ds, DATA_VAL, 65536, T, &seqs, err, sizeof err)) fail(err);
 *    double loss;
 *    if (valset_loss(tm, width, ds, DATA_VAL, seqs, T, in, tg, &loss, err, sizeof err)) ...
 *    valset_format_loss(buf, sizeof buf, loss, data_vocab(ds));  // "1.8712 nats/byte (2.6996 bits/byte)"
 * Distributed (train_dist.c): valset_fetch the rows of each micro-batch, forward them through the
 * pipeline, sum the first `rows` sequences' losses, all-reduce the sum and divide by S x T. */
#ifndef STRATA_VALIDATION_H
#define STRATA_VALIDATION_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "gpt2.h"
#include "train_model.h"

/* Held-out tokens an evaluation scores unless told otherwise (--eval-tokens, strata eval's
 * --tokens): 512 sequences of 128, a quarter of the shipped corpus's held-out tenth. */
#define VALSET_TOKENS_DEFAULT 65536

/* S for a request of `tokens` tokens (above) into *seqs. 0, or -1 with a message when the
 * request is below one sequence or the split holds less than one sequence of T + 1 tokens. */
int valset_size(const data_set_t *ds, data_split_t split, int64_t tokens, int T, int64_t *seqs,
                char *err, size_t errlen);

/* Sequences [first, first + width) of a set of `seqs` into in / tg (width, T). Rows from `seqs`
 * on are padding (copies of the first row, so the forward pass sees real tokens); *rows is the
 * number of real ones (0 when first >= seqs: every row padding, from sequence 0). 0 or -1. */
int valset_fetch(const data_set_t *ds, data_split_t split, int64_t seqs, int T, int64_t first,
                 int width, int32_t *in, int32_t *tg, int *rows, char *err, size_t errlen);

/* Sum of the per-position losses of the first `rows` sequences of the last forward pass on a,
 * in double (a must have been forwarded with targets, on a model with the head). */
double valset_loss_sum(const gpt2_acts_t *a, int rows, int T);

/* The set's mean loss on a whole model of either family (one rank, train_model.h) whose
 * activations hold `width` sequences of T; in / tg are (width, T) scratch. 0, or -1 with a
 * message. */
int valset_loss(train_model_t *m, int width, const data_set_t *ds,
                data_split_t split, int64_t seqs, int T, int32_t *in, int32_t *tg, double *loss,
                char *err, size_t errlen);

/* "1.8712 nats/byte (2.6996 bits/byte)" for a byte-level vocabulary (256), "... nats/token
 * (... bits/token)" otherwise. */
void valset_format_loss(char *buf, size_t len, double loss_nats, int vocab);

/* --split names: "train" -> DATA_TRAIN, "val" -> DATA_VAL. 0, or -1 for anything else. */
int valset_parse_split(const char *s, data_split_t *out);

#endif /* STRATA_VALIDATION_H */
