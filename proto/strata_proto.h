/* strata_proto.h -- the public face of proto/: plain C structs for Strata's protobuf messages
 * (TrainState in train_state.proto; StepReport and RunReport in report.proto) and their
 * encode/decode functions. Only proto/ includes the generated *.pb-c.h headers; the rest of
 * Strata uses these structs. Decoding bounds the message size, checks every field's range and
 * every string's length, and returns -1 with a message naming the field on anything invalid
 * (so a corrupt or hostile message never reaches the worker).
 *
 * Usage
 *    strata_train_state_t s; strata_train_state_init(&s);
 *    s.step = 100; ...
 *    uint8_t *buf; size_t len;
 *    strata_train_state_encode(&s, &buf, &len, err, sizeof err);   // free(buf) afterwards
 *    strata_train_state_t t;
 *    if (strata_train_state_decode(buf, len, &t, err, sizeof err) != 0) refuse(err);
 */
#ifndef STRATA_PROTO_H
#define STRATA_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define STRATA_TRAIN_STATE_VERSION 1
#define STRATA_TRAIN_STATE_MAX_BYTES (1u << 20) /* decode refuses larger messages */
#define STRATA_MAX_STAGES 256                   /* layout.stage_layers capacity */
#define STRATA_MAX_CKPT_FILES 256               /* files[] capacity */
#define STRATA_NAME_MAX 256                     /* file names, schedule (incl. NUL) */
#define STRATA_PATH_MAX 4096                    /* data path (incl. NUL) */

typedef struct {
  char name[STRATA_NAME_MAX]; /* file name inside the checkpoint directory (no '/') */
  uint64_t size_bytes;
  uint64_t xxh64;             /* XXH64, seed 0, of the whole file */
} strata_file_sum_t;

typedef struct {
  int32_t vocab, ctx, layers, heads, dim; /* V, T_max, L, H, C (all > 0, dim % heads == 0) */
} strata_model_cfg_t;

typedef struct {
  int32_t batch;        /* global sequences per step */
  int32_t seq_len;      /* T used for training */
  int32_t microbatches; /* M */
  double lr, min_lr, weight_decay, beta1, beta2, eps, grad_clip;
  int64_t warmup_steps, total_steps;
  int32_t zero;                    /* ZeRO stage, 0 or 1 */
  char schedule[STRATA_NAME_MAX];  /* "gpipe" | "1f1b" | "" */
  uint64_t seed;                   /* initialisation seed */
  char data_path[STRATA_PATH_MAX]; /* training data as given on the command line */
  char precision[16];              /* "fp32" | "bf16" | "bf16-sr" | "" (older files: fp32) */
} strata_train_cfg_t;

typedef struct {
  int32_t pp, dp;                          /* stages, replicas (>= 1) */
  int32_t tp;                              /* tensor-parallel ranks per stage (>= 1) */
  int32_t n_stage_layers;                  /* 0 or pp */
  int32_t stage_layers[STRATA_MAX_STAGES]; /* layers per stage, sums to model.layers */
} strata_layout_t;

typedef struct {
  uint32_t format_version; /* STRATA_TRAIN_STATE_VERSION */
  uint64_t step;           /* optimizer steps completed */
  uint64_t data_seed;      /* seed of the data order (data_fetch) */
  uint64_t data_step;      /* next global batch index to fetch */
  uint64_t tokens_seen;
  uint64_t rng_state[4];   /* rng_t of the run */
  double last_loss;
  strata_model_cfg_t model;
  strata_train_cfg_t train;
  strata_layout_t layout;
  int32_t n_files;
  strata_file_sum_t files[STRATA_MAX_CKPT_FILES];
} strata_train_state_t;

/* Zeroes the struct and sets format_version, tp = pp = dp = 1. */
void strata_train_state_init(strata_train_state_t *s);

/* Encodes into a malloc'd buffer (*buf, *len); the caller frees it. Validates first (the same
 * checks as decode), so an invalid state is never written. */
int strata_train_state_encode(const strata_train_state_t *s, uint8_t **buf, size_t *len,
                              char *err, size_t errlen);

/* Decodes and validates; -1 with a message naming the field for anything corrupt or out of
 * range (size over STRATA_TRAIN_STATE_MAX_BYTES, wire-format errors, unknown version, RNG
 * state not 4 words, bad model dimensions, layout that does not add up, bad file names). */
int strata_train_state_decode(const uint8_t *buf, size_t len, strata_train_state_t *out,
                              char *err, size_t errlen);

/* The validation decode applies, usable on a hand-built struct. */
int strata_train_state_validate(const strata_train_state_t *s, char *err, size_t errlen);

/* ------------------------------------------------------------------ reports (report.proto) */

#define STRATA_REPORT_VERSION 1
#define STRATA_STEP_REPORT_MAX_BYTES 4096     /* decode refuses larger StepReports */
#define STRATA_RUN_REPORT_MAX_BYTES (1u << 20) /* and RunReports */

/* One rank's account of one step, sent to the coordinator. */
typedef struct {
  uint32_t version;        /* STRATA_REPORT_VERSION */
  uint64_t step;
  int32_t rank, stage, replica; /* >= 0 */
  int32_t tp_rank;         /* tensor-parallel rank t (>= 0) */
  int32_t has_loss;        /* 1 on last-stage ranks */
  double loss;             /* valid when has_loss */
  uint64_t tokens;         /* tokens this rank processed in the step */
  double compute_s;        /* measured compute seconds (>= 0, finite) */
  double comm_s;           /* measured seconds blocked in communication */
  double idle_s;           /* pipeline bubble seconds */
  double tp_comm_s;        /* the part of comm_s inside tensor-parallel collectives */
  double simulated_s;      /* device-model seconds */
  uint64_t bytes_sent, bytes_recv;
  uint64_t peak_mem_bytes; /* simulated device memory high-water mark */
} strata_step_report_t;

typedef struct {
  int32_t stage, layer_begin, layer_end; /* layers [layer_begin, layer_end) */
  uint64_t params;
  double compute_s, comm_s, idle_s; /* summed over steps */
  uint64_t peak_mem_bytes;
} strata_stage_summary_t;

/* The coordinator's summary of a run (report.pb; report.json carries the same). */
typedef struct {
  uint32_t version;     /* STRATA_REPORT_VERSION */
  int32_t world_size;   /* = layout.tp * layout.pp * layout.dp */
  strata_model_cfg_t model;
  strata_train_cfg_t train;
  strata_layout_t layout;
  uint64_t steps;
  double final_loss, tokens_per_s, wall_s;
  int32_t n_stages;     /* 0 or layout.pp */
  strata_stage_summary_t stages[STRATA_MAX_STAGES];
  char transport[STRATA_NAME_MAX]; /* "mpi" | "ofi" | "" */
} strata_run_report_t;

/* Zero the struct and set version (and pp = dp = world_size = 1 for a RunReport). */
void strata_step_report_init(strata_step_report_t *r);
void strata_run_report_init(strata_run_report_t *r);

/* Encode into a caller buffer of `cap` bytes (a StepReport never exceeds
 * STRATA_STEP_REPORT_MAX_BYTES, so a stack buffer of that size always suffices); *len receives
 * the size. Validates first. */
int strata_step_report_encode(const strata_step_report_t *r, uint8_t *buf, size_t cap, size_t *len,
                              char *err, size_t errlen);
/* Decode and validate (times finite and >= 0, ids >= 0, size bounded). */
int strata_step_report_decode(const uint8_t *buf, size_t len, strata_step_report_t *out,
                              char *err, size_t errlen);

/* RunReport: malloc'd buffer (free it) / validated decode (world_size = pp * dp, stages
 * consistent with the layout, model config valid). */
int strata_run_report_encode(const strata_run_report_t *r, uint8_t **buf, size_t *len, char *err,
                             size_t errlen);
int strata_run_report_decode(const uint8_t *buf, size_t len, strata_run_report_t *out, char *err,
                             size_t errlen);

#endif /* STRATA_PROTO_H */
