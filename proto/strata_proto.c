/* strata_proto.c -- encode/decode between Strata's plain C structs (strata_proto.h) and the
 * protobuf-c messages generated from the .proto files here. Every decode is bounded in size
 * and validated field by field before anything is copied out. */
#include "strata_proto.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"
#include "train_state.pb-c.h"

/* Upper bounds on model dimensions accepted from a message (far above any CPU-trainable
 * GPT-2; they exist so that a corrupt message cannot ask for absurd allocations). */
#define STRATA_MAX_VOCAB (1 << 24)
#define STRATA_MAX_CTX (1 << 20)
#define STRATA_MAX_LAYERS 4096
#define STRATA_MAX_DIM (1 << 16)

void proto_seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}
#define seterr proto_seterr

void strata_train_state_init(strata_train_state_t *s) {
  memset(s, 0, sizeof *s);
  s->format_version = STRATA_TRAIN_STATE_VERSION;
  s->layout.pp = 1;
  s->layout.dp = 1;
  s->layout.tp = 1;
}

static int valid_file_name(const char *n) {
  size_t len = strnlen(n, STRATA_NAME_MAX);
  return len > 0 && len < STRATA_NAME_MAX && !strchr(n, '/') && strcmp(n, ".") != 0 &&
         strcmp(n, "..") != 0;
}

int proto_check_config(const strata_model_cfg_t *m, const strata_train_cfg_t *t,
                       const strata_layout_t *l, const char *what, char *err, size_t errlen) {
  if (m->vocab <= 0 || m->vocab > STRATA_MAX_VOCAB || m->ctx <= 0 || m->ctx > STRATA_MAX_CTX ||
      m->layers <= 0 || m->layers > STRATA_MAX_LAYERS || m->heads <= 0 || m->dim <= 0 ||
      m->dim > STRATA_MAX_DIM || m->dim % m->heads != 0) {
    seterr(err, errlen,
           "%s: model config vocab=%d ctx=%d layers=%d heads=%d dim=%d is out of range "
           "(all positive, dim divisible by heads)",
           what, m->vocab, m->ctx, m->layers, m->heads, m->dim);
    return -1;
  }
  const int tp = l->tp ? l->tp : 1; /* 0: not set (1) */
  if (l->pp < 1 || l->pp > STRATA_MAX_STAGES || l->pp > m->layers || l->dp < 1 || l->dp > (1 << 20) ||
      tp < 1 || tp > m->heads || m->heads % tp != 0) {
    seterr(err, errlen, "%s: layout tp=%d pp=%d dp=%d out of range (tp divides heads=%d, "
           "1 <= pp <= layers=%d, dp >= 1)", what, l->tp, l->pp, l->dp, m->heads, m->layers);
    return -1;
  }
  if (l->n_stage_layers != 0) {
    if (l->n_stage_layers != l->pp) {
      seterr(err, errlen, "%s: layout.stage_layers has %d entries, expected pp=%d", what,
             l->n_stage_layers, l->pp);
      return -1;
    }
    int64_t sum = 0;
    for (int i = 0; i < l->n_stage_layers; i++) {
      if (l->stage_layers[i] < 1) {
        seterr(err, errlen, "%s: layout.stage_layers[%d] = %d, expected >= 1", what, i,
               l->stage_layers[i]);
        return -1;
      }
      sum += l->stage_layers[i];
    }
    if (sum != m->layers) {
      seterr(err, errlen, "%s: layout.stage_layers sum to %lld, expected layers=%d", what,
             (long long)sum, m->layers);
      return -1;
    }
  }
  if (t->batch < 0 || t->seq_len < 0 || t->seq_len > m->ctx || t->microbatches < 0 ||
      (t->zero != 0 && t->zero != 1) || t->warmup_steps < 0 || t->total_steps < 0 ||
      !isfinite(t->lr) || !isfinite(t->min_lr) || !isfinite(t->weight_decay) ||
      !isfinite(t->beta1) || !isfinite(t->beta2) || !isfinite(t->eps) || !isfinite(t->grad_clip)) {
    seterr(err, errlen,
           "%s: training config out of range (batch=%d seq_len=%d (<= ctx %d) "
           "microbatches=%d zero=%d warmup=%lld total=%lld, finite hyper-parameters)",
           what, t->batch, t->seq_len, m->ctx, t->microbatches, t->zero, (long long)t->warmup_steps,
           (long long)t->total_steps);
    return -1;
  }
  if (strnlen(t->schedule, STRATA_NAME_MAX) >= STRATA_NAME_MAX ||
      strnlen(t->data_path, STRATA_PATH_MAX) >= STRATA_PATH_MAX) {
    seterr(err, errlen, "%s: schedule or data_path string too long", what);
    return -1;
  }
  return 0;
}

int strata_train_state_validate(const strata_train_state_t *s, char *err, size_t errlen) {
  if (s->format_version != STRATA_TRAIN_STATE_VERSION) {
    seterr(err, errlen, "train state: format_version %u, expected %d (written by another Strata version?)",
           s->format_version, STRATA_TRAIN_STATE_VERSION);
    return -1;
  }
  if (proto_check_config(&s->model, &s->train, &s->layout, "train state", err, errlen) != 0)
    return -1;
  if (s->n_files < 0 || s->n_files > STRATA_MAX_CKPT_FILES) {
    seterr(err, errlen, "train state: %d file checksums, expected 0..%d", s->n_files,
           STRATA_MAX_CKPT_FILES);
    return -1;
  }
  for (int i = 0; i < s->n_files; i++)
    if (!valid_file_name(s->files[i].name)) {
      seterr(err, errlen, "train state: files[%d].name is empty, too long or contains '/'", i);
      return -1;
    }
  if (!isfinite(s->last_loss) && !isnan(s->last_loss)) {
    seterr(err, errlen, "train state: last_loss is infinite");
    return -1;
  }
  return 0;
}

int strata_train_state_encode(const strata_train_state_t *s, uint8_t **buf, size_t *len,
                              char *err, size_t errlen) {
  *buf = NULL;
  *len = 0;
  if (strata_train_state_validate(s, err, errlen) != 0) return -1;
  Strata__TrainState msg = STRATA__TRAIN_STATE__INIT;
  Strata__ModelConfig model = STRATA__MODEL_CONFIG__INIT;
  Strata__TrainConfig train = STRATA__TRAIN_CONFIG__INIT;
  Strata__Layout layout = STRATA__LAYOUT__INIT;
  Strata__FileChecksum *files = calloc((size_t)(s->n_files ? s->n_files : 1), sizeof *files);
  Strata__FileChecksum **fptrs = calloc((size_t)(s->n_files ? s->n_files : 1), sizeof *fptrs);
  int rc = -1;
  if (!files || !fptrs) {
    seterr(err, errlen, "train state: out of memory");
    goto exit;
  }
  msg.format_version = s->format_version;
  msg.step = s->step;
  msg.data_seed = s->data_seed;
  msg.data_step = s->data_step;
  msg.tokens_seen = s->tokens_seen;
  msg.n_rng_state = 4;
  msg.rng_state = (uint64_t *)s->rng_state;
  msg.last_loss = s->last_loss;
  proto_model_to_msg(&s->model, &model);
  msg.model = &model;
  proto_train_to_msg(&s->train, &train);
  msg.train = &train;
  proto_layout_to_msg(&s->layout, &layout);
  msg.layout = &layout;
  for (int i = 0; i < s->n_files; i++) {
    strata__file_checksum__init(&files[i]);
    files[i].name = (char *)s->files[i].name;
    files[i].size_bytes = s->files[i].size_bytes;
    files[i].xxh64 = s->files[i].xxh64;
    fptrs[i] = &files[i];
  }
  msg.n_files = (size_t)s->n_files;
  msg.files = fptrs;
  size_t n = strata__train_state__get_packed_size(&msg);
  *buf = malloc(n ? n : 1);
  if (!*buf) {
    seterr(err, errlen, "train state: out of memory");
    goto exit;
  }
  *len = strata__train_state__pack(&msg, *buf);
  rc = 0;
exit:
  free(files);
  free(fptrs);
  return rc;
}

int proto_copy_str(char *dst, size_t cap, const char *src, const char *what, const char *field,
                   char *err, size_t errlen) {
  size_t n = src ? strlen(src) : 0;
  if (n >= cap) {
    seterr(err, errlen, "%s: %s is %zu bytes, longer than the %zu allowed", what, field, n, cap - 1);
    return -1;
  }
  memcpy(dst, src ? src : "", n + 1);
  return 0;
}

void proto_model_to_msg(const strata_model_cfg_t *c, Strata__ModelConfig *msg) {
  strata__model_config__init(msg);
  msg->vocab = c->vocab;
  msg->ctx = c->ctx;
  msg->layers = c->layers;
  msg->heads = c->heads;
  msg->dim = c->dim;
}

void proto_train_to_msg(const strata_train_cfg_t *c, Strata__TrainConfig *msg) {
  strata__train_config__init(msg);
  msg->batch = c->batch;
  msg->seq_len = c->seq_len;
  msg->microbatches = c->microbatches;
  msg->lr = c->lr;
  msg->min_lr = c->min_lr;
  msg->weight_decay = c->weight_decay;
  msg->beta1 = c->beta1;
  msg->beta2 = c->beta2;
  msg->eps = c->eps;
  msg->grad_clip = c->grad_clip;
  msg->warmup_steps = c->warmup_steps;
  msg->total_steps = c->total_steps;
  msg->zero = c->zero;
  msg->schedule = (char *)c->schedule;
  msg->seed = c->seed;
  msg->data_path = (char *)c->data_path;
  msg->precision = (char *)c->precision;
}

void proto_layout_to_msg(const strata_layout_t *c, Strata__Layout *msg) {
  strata__layout__init(msg);
  msg->pp = c->pp;
  msg->dp = c->dp;
  msg->tp = c->tp;
  msg->n_stage_layers = (size_t)c->n_stage_layers;
  msg->stage_layers = (int32_t *)c->stage_layers;
}

void proto_model_from_msg(const Strata__ModelConfig *msg, strata_model_cfg_t *c) {
  if (!msg) return;
  c->vocab = msg->vocab;
  c->ctx = msg->ctx;
  c->layers = msg->layers;
  c->heads = msg->heads;
  c->dim = msg->dim;
}

int proto_train_from_msg(const Strata__TrainConfig *t, strata_train_cfg_t *c, const char *what,
                         char *err, size_t errlen) {
  if (!t) return 0;
  c->batch = t->batch;
  c->seq_len = t->seq_len;
  c->microbatches = t->microbatches;
  c->lr = t->lr;
  c->min_lr = t->min_lr;
  c->weight_decay = t->weight_decay;
  c->beta1 = t->beta1;
  c->beta2 = t->beta2;
  c->eps = t->eps;
  c->grad_clip = t->grad_clip;
  c->warmup_steps = t->warmup_steps;
  c->total_steps = t->total_steps;
  c->zero = t->zero;
  c->seed = t->seed;
  if (proto_copy_str(c->schedule, sizeof c->schedule, t->schedule, what, "train.schedule", err, errlen) ||
      proto_copy_str(c->data_path, sizeof c->data_path, t->data_path, what, "train.data_path", err, errlen) ||
      proto_copy_str(c->precision, sizeof c->precision, t->precision, what, "train.precision", err, errlen))
    return -1;
  return 0;
}

int proto_layout_from_msg(const Strata__Layout *msg, strata_layout_t *c, const char *what,
                          char *err, size_t errlen) {
  if (!msg) return 0;
  if (msg->n_stage_layers > STRATA_MAX_STAGES) {
    seterr(err, errlen, "%s: layout.stage_layers has %zu entries, at most %d allowed", what,
           msg->n_stage_layers, STRATA_MAX_STAGES);
    return -1;
  }
  c->pp = msg->pp;
  c->dp = msg->dp;
  c->tp = msg->tp ? msg->tp : 1; /* absent before tensor parallelism */
  c->n_stage_layers = (int32_t)msg->n_stage_layers;
  for (size_t i = 0; i < msg->n_stage_layers; i++) c->stage_layers[i] = msg->stage_layers[i];
  return 0;
}

int strata_train_state_decode(const uint8_t *buf, size_t len, strata_train_state_t *out,
                              char *err, size_t errlen) {
  int rc = -1;
  if (len > STRATA_TRAIN_STATE_MAX_BYTES) {
    seterr(err, errlen, "train state: message is %zu bytes, over the %u-byte limit (corrupt file?)",
           len, STRATA_TRAIN_STATE_MAX_BYTES);
    return -1;
  }
  Strata__TrainState *msg = strata__train_state__unpack(NULL, len, buf);
  if (!msg) {
    seterr(err, errlen, "train state: not a valid TrainState protobuf message (%zu bytes; corrupt or truncated)",
           len);
    return -1;
  }
  strata_train_state_init(out);
  out->format_version = msg->format_version;
  if (msg->format_version != STRATA_TRAIN_STATE_VERSION) {
    seterr(err, errlen, "train state: format_version %u, expected %d", msg->format_version,
           STRATA_TRAIN_STATE_VERSION);
    goto exit;
  }
  if (msg->n_rng_state != 4) {
    seterr(err, errlen, "train state: rng_state has %zu words, expected 4", msg->n_rng_state);
    goto exit;
  }
  if (!msg->model) {
    seterr(err, errlen, "train state: missing model config");
    goto exit;
  }
  if (msg->n_files > STRATA_MAX_CKPT_FILES) {
    seterr(err, errlen, "train state: %zu file checksums, at most %d allowed", msg->n_files,
           STRATA_MAX_CKPT_FILES);
    goto exit;
  }
  out->step = msg->step;
  out->data_seed = msg->data_seed;
  out->data_step = msg->data_step;
  out->tokens_seen = msg->tokens_seen;
  memcpy(out->rng_state, msg->rng_state, sizeof out->rng_state);
  out->last_loss = msg->last_loss;
  proto_model_from_msg(msg->model, &out->model);
  if (proto_train_from_msg(msg->train, &out->train, "train state", err, errlen) ||
      proto_layout_from_msg(msg->layout, &out->layout, "train state", err, errlen))
    goto exit;
  out->n_files = (int32_t)msg->n_files;
  for (size_t i = 0; i < msg->n_files; i++) {
    char field[48];
    snprintf(field, sizeof field, "files[%zu].name", i);
    if (proto_copy_str(out->files[i].name, sizeof out->files[i].name, msg->files[i]->name,
                       "train state", field, err, errlen))
      goto exit;
    out->files[i].size_bytes = msg->files[i]->size_bytes;
    out->files[i].xxh64 = msg->files[i]->xxh64;
  }
  if (strata_train_state_validate(out, err, errlen) != 0) goto exit;
  rc = 0;
exit:
  strata__train_state__free_unpacked(msg, NULL);
  return rc;
}
