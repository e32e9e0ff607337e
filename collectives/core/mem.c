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

static int hugepages_wanted(void) {
  strnum_value_t v;
  return !(coll_env_number("STRATA_COLL_HUGEPAGES", &v, NULL, 0) == 1 && v.i == 0);
}

void *coll_mem_alloc(size_t bytes) {
  void *p = NULL;
  if (bytes < HUGE_BYTES) return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : NULL;
  size_t len = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
  if (posix_memalign(&p, HUGE_BYTES, len) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (hugepages_wanted()) (void)madvise(p, len, MADV_HUGEPAGE); /* advice only: ignore failure */
#endif
  return p;
}

void coll_mem_free(void *p) { free(p); }
