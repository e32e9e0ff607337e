/* fuzz_token_shard.c -- libFuzzer target for the data loader's file validation: the input is
 * written to a temporary "*.bin" file and opened as an llm.c token shard; it is refused with a
 * message, or every batch cut from it holds tokens inside the vocabulary. Built only with
 * -DSTRATA_FUZZ=ON and clang (tests/data.cmake). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"

static char path[64];
static void remove_file(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/strata_fuzz_shard_%d.bin", (int)getpid());
    atexit(remove_file);
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  if (size) fwrite(data, 1, size, f);
  fclose(f);
  data_set_t *ds;
  char err[1024];
  if (data_open(path, DATA_KIND_AUTO, &ds, err, sizeof err) != 0) {
    if (!err[0]) abort();
    return 0;
  }
  int32_t in[16], tg[16];
  int V = data_vocab(ds);
  for (int split = DATA_TRAIN; split <= DATA_ALL; split++) {
    if (data_check_batch(ds, (data_split_t)split, 2, 8, err, sizeof err) != 0) continue;
    for (uint64_t step = 0; step < 3; step++) {
      if (data_fetch(ds, (data_split_t)split, 1, step, 2, 8, 0, 2, in, tg, err, sizeof err)) abort();
      for (int i = 0; i < 16; i++)
        if (in[i] < 0 || in[i] >= V || tg[i] < 0 || tg[i] >= V) abort();
    }
    if (data_fetch_sequential(ds, (data_split_t)split, 0, 2, 8, in, tg, err, sizeof err)) abort();
  }
  data_close(ds);
  return 0;
}
