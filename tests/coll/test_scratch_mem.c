/* test_scratch_mem.c -- coll_mem_alloc_scratch, the allocation behind every communicator's
 * scratch cache: exact and 64-byte aligned below COLL_SCRATCH_HUGE_MIN, whole 2 MiB-aligned huge
 * pages from there up, exact again when STRATA_COLL_HUGEPAGES=0 turns huge pages off or
 * STRATA_COLL_SCRATCH_HUGEPAGES=0 turns them off for scratch alone.
 * Single process: the allocation needs no MPI. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coll_internal.h"
#include "test_util.h"

#define MIB ((size_t)1 << 20)

/* Allocates `bytes`, checks the capacity and alignment reported, writes the whole capacity
 * (so a short allocation shows under ASan) and frees it. */
static void check_alloc(size_t bytes, size_t want_cap, size_t want_align) {
  size_t cap = 12345;
  void *p = coll_mem_alloc_scratch(bytes, &cap);
  CHECK_TRUE(p != NULL);
  if (!p) return;
  CHECK_EQ_INT(cap, want_cap);
  CHECK_EQ_INT((uintptr_t)p % want_align, 0);
  memset(p, 0x5a, cap);
  free(p);
}

int main(void) {
  unsetenv("STRATA_COLL_HUGEPAGES");
  unsetenv("STRATA_COLL_SCRATCH_HUGEPAGES");
  check_alloc(1, 1, 64);
  check_alloc(4096 + 8, 4096 + 8, 64);
  check_alloc(COLL_SCRATCH_HUGE_MIN - 64, COLL_SCRATCH_HUGE_MIN - 64, 64);
  check_alloc(COLL_SCRATCH_HUGE_MIN, 2 * MIB, 2 * MIB);
  check_alloc(1536 << 10, 2 * MIB, 2 * MIB); /* a ring's (depth + 1) x 512 KiB chunks */
  check_alloc(2 * MIB, 2 * MIB, 2 * MIB);
  check_alloc(2 * MIB + 1, 4 * MIB, 2 * MIB);
  check_alloc(9 * MIB + 4096, 10 * MIB, 2 * MIB);

  setenv("STRATA_COLL_HUGEPAGES", "0", 1); /* no huge-page advice: nothing to round up for */
  check_alloc(COLL_SCRATCH_HUGE_MIN, COLL_SCRATCH_HUGE_MIN, 64);
  check_alloc(2 * MIB + 1, 2 * MIB + 1, 64);
  setenv("STRATA_COLL_HUGEPAGES", "1", 1);
  check_alloc(2 * MIB + 1, 4 * MIB, 2 * MIB);
  setenv("STRATA_COLL_SCRATCH_HUGEPAGES", "0", 1); /* user buffers on huge pages, scratch not */
  check_alloc(2 * MIB + 1, 2 * MIB + 1, 64);
  setenv("STRATA_COLL_SCRATCH_HUGEPAGES", "1", 1);
  check_alloc(COLL_SCRATCH_HUGE_MIN, 2 * MIB, 2 * MIB);
  return test_finish("coll_scratch_mem");
}
