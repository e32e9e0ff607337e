/* buffer.h -- the worker's large numeric buffers (parameters, gradients, activations): 64-byte
 * aligned (a cache line, an AVX-512 vector), and from 2 MiB up on 2 MiB boundaries advised for
 * transparent huge pages (madvise MADV_HUGEPAGE). Gradients are all-reduced straight from this
 * memory: single-copy shared-memory transfers pin the source page by page, so huge pages move a
 * large message about twice as fast (collectives/README.md); activations and weights gain fewer
 * TLB misses. STRATA_COLL_HUGEPAGES=0 turns the advice off here as in coll_mem_alloc.
 * Release with free(). */
#ifndef STRATA_BUFFER_H
#define STRATA_BUFFER_H

#include <stddef.h>

/* bytes (0 is allowed), zero-filled when zero != 0; NULL when out of memory. */
void *buffer_alloc(size_t bytes, int zero);

#endif /* STRATA_BUFFER_H */
