/* buffer.c -- aligned, huge-page-advised numeric buffers (see buffer.h). */
#include "buffer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>


#define BUFFER_ALIGN_BYTES 64
#define BUFFER_HUGE_BYTES ((size_t)2 << 20)

void *buffer_alloc(size_t bytes, int zero) {
  size_t align = bytes >= BUFFER_HUGE_BYTES ? BUFFER_HUGE_BYTES : BUFFER_ALIGN_BYTES;
  size_t len = ((bytes ? bytes : 1) + align - 1) / align * align;
  void *p = NULL;
  if (posix_memalign(&p, align, len) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  /* a 0/1 switch of the collectives, which check its value at start-up */
  const char *h = getenv("STRATA_COLL_HUGEPAGES");
  if (align == BUFFER_HUGE_BYTES && !(h && !strcmp(h, "0"))) (void)madvise(p, len, MADV_HUGEPAGE);
#endif
  if (zero) memset(p, 0, len);
  return p;
}
