/* validation.c -- the held-out set and its loss (contract in validation.h). */
#include "validation.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int valset_size(const data_set_t *ds, data_split_t split, int64_t tokens, int T, int64_t *seqs,
                char *err, size_t errlen) {
  if (T < 1 || tokens < T) {
    snprintf(err, errlen, "the validation set of %lld tokens is less than one sequence of %d "
             "tokens; ask for at least %d (--eval-tokens, or strata eval --tokens)",
             (long long)tokens, T, T);
    return -1;
  }
  const uint64_t avail = data_num_sequential_batches(ds, split, 1, T);
  if (avail == 0) {
    snprintf(err, errlen, "the %s split has %zu tokens, fewer than one sequence of %d + 1; use a "
             "larger data file or a shorter --seq-len", split == DATA_TRAIN ? "training" : "validation",
             data_num_tokens(ds, split), T);
    return -1;
  }
  const int64_t want = tokens / T;
  *seqs = (uint64_t)want < avail ? want : (int64_t)avail;
  return 0;
}

int valset_fetch(const data_set_t *ds, data_split_t split, int64_t seqs, int T, int64_t first,
                 int width, int32_t *in, int32_t *tg, int *rows, char *err, size_t errlen) {
  int real = first >= seqs ? 0 : (int)(seqs - first < width ? seqs - first : width);
  for (int r = 0; r < width; r++) {
    if (r > 0 && r >= real) { /* padding: a copy of the first row */
      memcpy(in + (size_t)r * T, in, sizeof(int32_t) * (size_t)T);
      memcpy(tg + (size_t)r * T, tg, sizeof(int32_t) * (size_t)T);
      continue;
    }
    const uint64_t seq = real ? (uint64_t)(first + r) : 0;
    if (data_fetch_sequential(ds, split, seq, 1, T, in + (size_t)r * T, tg + (size_t)r * T, err,
                              errlen))
      return -1;
  }
  *rows = real;
  return 0;
}

static double losses_sum(const float *l, int rows, int T) {
  double sum = 0;
  for (size_t i = 0; i < (size_t)rows * (size_t)T; i++) sum += l[i];
  return sum;
}

double valset_loss_sum(const gpt2_acts_t *a, int rows, int T) {
  return losses_sum(gpt2_losses(a), rows, T);
}

int valset_loss(train_model_t *m, int width, const data_set_t *ds,
                data_split_t split, int64_t seqs, int T, int32_t *in, int32_t *tg, double *loss,
                char *err, size_t errlen) {
  double sum = 0;
  for (int64_t first = 0; first < seqs; first += width) {
    int rows = 0;
    if (valset_fetch(ds, split, seqs, T, first, width, in, tg, &rows, err, errlen)) return -1;
    (void)train_model_forward(m, in, tg);
    sum += losses_sum(train_model_losses(m), rows, T);
  }
  *loss = sum / ((double)seqs * T);
  return 0;
}

void valset_format_loss(char *buf, size_t len, double loss_nats, int vocab) {
  const char *unit = vocab == 256 ? "byte" : "token";
  snprintf(buf, len, "%.4f nats/%s (%.4f bits/%s)", loss_nats, unit, loss_nats / M_LN2, unit);
}

int valset_parse_split(const char *s, data_split_t *out) {
  if (!strcmp(s, "train")) *out = DATA_TRAIN;
  else if (!strcmp(s, "val")) *out = DATA_VAL;
  else return -1;
  return 0;
}
