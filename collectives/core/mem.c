/* mem.c -- coll_mem_alloc: communication buffers on transparent huge pages.
 *
 * Why: over shared memory both transports move a large message with one copy done by the
 * receiving process out of the sender's pages (process_vm_readv for Open MPI's CMA, the same
 * for libfabric shm). The kernel looks up and pins the source one page at a time, so with
 * 4 KiB pages a 16 MiB message costs 4096 page walks; with 2 MiB pages, 8. Measured on the
 * development machine (BENCHMARKS.md) this roughly doubles ring busbw from 16 MiB up. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "coll_internal.h"

#define HUGE_BYTES ((size_t)2 << 20)

/* 1 unless the variable is set to 0 (an unset or bad value keeps the default, 1). */
static int env_on(const char *name) {
  strnum_value_t v;
  return !(coll_env_number(name, &v, NULL, 0) == 1 && v.i == 0);
}
static int hugepages_wanted(void) { return env_on("STRATA_COLL_HUGEPAGES"); }

static size_t whole_huge_pages(size_t bytes) { return (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES; }

/* `len` bytes (a multiple of HUGE_BYTES) aligned to a huge page, advised onto huge pages when
 * `advise` is set. */
static void *huge_alloc(size_t len, int advise) {
  void *p = NULL;
  if (posix_memalign(&p, HUGE_BYTES, len) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (advise) (void)madvise(p, len, MADV_HUGEPAGE); /* advice only: ignore failure */
#else
  (void)advise;
#endif
  return p;
}

void *coll_mem_alloc(size_t bytes) {
  void *p = NULL;
  if (bytes < HUGE_BYTES) return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : NULL;
  return huge_alloc(whole_huge_pages(bytes), hugepages_wanted());
}

/* Scratch is where a ring or Rabenseifner step receives, where recursive doubling keeps its
 * partner's half and a 16-bit reduction its fp32 copy that peers then read: the same
 * process_vm_readv page walks as the user's buffers. Rounding up to whole huge pages costs at
 * most 2 MiB a cached buffer (COLL_SCRATCH_CACHE of them a communicator). Measured in 8 pairs of
 * runs (BENCHMARKS.md, "Scratch on huge pages"): 0.79-0.96 of the time at np=2 4-16 MiB, none
 * beyond the noise on 3 ranks. */
void *coll_mem_alloc_scratch(size_t bytes, size_t *cap) {
  *cap = 0;
  if (bytes >= COLL_SCRATCH_HUGE_MIN && hugepages_wanted() && env_on("STRATA_COLL_SCRATCH_HUGEPAGES")) {
    size_t len = whole_huge_pages(bytes);
    void *p = huge_alloc(len, 1);
    if (p) *cap = len;
    return p;
  }
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 1)) return NULL;
  *cap = bytes;
  return p;
}

void coll_mem_free(void *p) { free(p); }
