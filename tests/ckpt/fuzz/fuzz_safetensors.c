/* fuzz_safetensors.c -- libFuzzer target for the safetensors reader (st_parse): any byte string
 * must be either refused with a message or accepted with every tensor inside the buffer, the
 * tensors tiling it exactly. Built only with -DSTRATA_FUZZ=ON and clang (tests/ckpt.cmake). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  st_file_t *f;
  char err[512];
  if (st_parse(data, size, &f, err, sizeof err) != 0) {
    if (!err[0]) abort(); /* a refusal always says why */
    return 0;
  }
  uint64_t covered = 0;
  volatile uint8_t sink = 0;
  for (int i = 0; i < f->num_tensors; i++) {
    const st_tensor_t *t = &f->tensors[i];
    if (t->end > f->buffer_len || t->end - t->begin != t->numel * st_dtype_size(t->dtype)) abort();
    const uint8_t *p = t->data;
    for (uint64_t j = 0; j < t->end - t->begin; j++) sink ^= p[j]; /* ASan checks the bounds */
    covered += t->end - t->begin;
    if (st_find(f, t->name) == NULL) abort();
  }
  if (covered != f->buffer_len) abort();
  (void)sink;
  st_close(f);
  return 0;
}
