/* fuzz_proto.c -- libFuzzer target for every protobuf message the worker accepts (TrainState,
 * StepReport, RunReport): any byte string is refused by each decoder with a message, or decodes
 * to a value that passes validation and survives encode/decode unchanged. Built only with
 * -DSTRATA_FUZZ=ON and clang (tests/ckpt.cmake). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strata_proto.h"

static void train_state(const uint8_t *data, size_t size) {
  static strata_train_state_t a, b;
  char err[512] = "";
  if (strata_train_state_decode(data, size, &a, err, sizeof err) != 0) {
    if (!err[0]) abort(); /* a refusal always says why */
    return;
  }
  uint8_t *buf;
  size_t len;
  if (strata_train_state_encode(&a, &buf, &len, err, sizeof err) != 0) abort();
  if (strata_train_state_decode(buf, len, &b, err, sizeof err) != 0) abort();
  if (a.step != b.step || a.n_files != b.n_files || memcmp(&a.model, &b.model, sizeof a.model) ||
      memcmp(a.rng_state, b.rng_state, sizeof a.rng_state))
    abort();
  for (int i = 0; i < a.n_files; i++)
    if (strcmp(a.files[i].name, b.files[i].name) || a.files[i].xxh64 != b.files[i].xxh64) abort();
  free(buf);
}

static void step_report(const uint8_t *data, size_t size) {
  strata_step_report_t a, b;
  char err[512] = "";
  if (strata_step_report_decode(data, size, &a, err, sizeof err) != 0) {
    if (!err[0]) abort();
    return;
  }
  uint8_t buf[STRATA_STEP_REPORT_MAX_BYTES];
  size_t len;
  if (strata_step_report_encode(&a, buf, sizeof buf, &len, err, sizeof err) != 0) abort();
  if (strata_step_report_decode(buf, len, &b, err, sizeof err) != 0) abort();
  if (a.step != b.step || a.rank != b.rank || a.tokens != b.tokens) abort();
}

static void run_report(const uint8_t *data, size_t size) {
  static strata_run_report_t a, b;
  char err[512] = "";
  if (strata_run_report_decode(data, size, &a, err, sizeof err) != 0) {
    if (!err[0]) abort();
    return;
  }
  uint8_t *buf;
  size_t len;
  if (strata_run_report_encode(&a, &buf, &len, err, sizeof err) != 0) abort();
  if (strata_run_report_decode(buf, len, &b, err, sizeof err) != 0) abort();
  if (a.world_size != b.world_size || a.n_stages != b.n_stages || strcmp(a.transport, b.transport))
    abort();
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  train_state(data, size);
  step_report(data, size);
  run_report(data, size);
  return 0;
}
