/* bpe_bench -- encoding throughput of the byte-level BPE tokenizer on one text file, one
 * thread: the whole file encoded R times by one tokenizer, the first run with a cold piece cache
 * and the best of all. Prints wall-clock and CPU-time MB/s (MB = 1e6 bytes); CPU time is the
 * fairer figure on a shared machine, and launch/tokenizer_bench.sh measures npm's js-tiktoken
 * the same way.
 *
 *   build/tests/bpe_bench FILE [RUNS]        prints "bpe_bench: FILE BYTES bytes TOKENS tokens
 *                                            cold cpu C MB/s best wall W MB/s cpu C MB/s" */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "test_util.h"
#include "tokenizer.h"

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bpe_bench FILE [RUNS]\n");
    return 2;
  }
  int runs = argc > 2 ? atoi(argv[2]) : 3;
  size_t n;
  char *text = test_read_file(argv[1], &n), err[512];
  if (!text || runs < 1) {
    fprintf(stderr, "bpe_bench: cannot read %s\n", argv[1]);
    return 2;
  }
  double best_wall = 1e30, best_cpu = 1e30, cold_cpu = 0;
  size_t tokens = 0;
  tok_t *t;
  if (tok_load_gpt2(&t, err, sizeof err)) {
    fprintf(stderr, "bpe_bench: %s\n", err);
    return 2;
  }
  for (int r = 0; r < runs; r++) {
    tok_ids_t ids = {0};
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (tok_encode(t, text, n, 0, &ids, err, sizeof err)) {
      fprintf(stderr, "bpe_bench: %s\n", err);
      return 1;
    }
    double w = clock_s(CLOCK_MONOTONIC) - w0, c = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (r == 0) cold_cpu = c;
    if (w < best_wall) best_wall = w;
    if (c < best_cpu) best_cpu = c;
    tokens = ids.n;
    tok_ids_free(&ids);
  }
  tok_free(t);
  printf("bpe_bench: %s %zu bytes %zu tokens cold cpu %.1f MB/s best wall %.1f MB/s cpu %.1f MB/s\n", argv[1], n,
         tokens, n / 1e6 / cold_cpu, n / 1e6 / best_wall, n / 1e6 / best_cpu);
  free(text);
  return 0;
}
