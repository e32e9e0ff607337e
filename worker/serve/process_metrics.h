/* process_metrics.h -- the standard Prometheus process_* series of the serving process, as the
 * Prometheus client libraries (and so vLLM) export them, read from /proc on Linux:
 *   process_cpu_seconds_total        counter, user + system CPU time of the process
 *   process_resident_memory_bytes    gauge, resident set size
 *   process_virtual_memory_bytes     gauge, virtual memory size
 *   process_start_time_seconds       gauge, start of the process, unix seconds
 *   process_open_fds                 gauge, open file descriptors
 *   process_max_fds                  gauge, the limit on them (RLIMIT_NOFILE)
 * A value /proc does not give is left out rather than reported as 0. */
#ifndef STRATA_PROCESS_METRICS_H
#define STRATA_PROCESS_METRICS_H

#include <stddef.h>

/* Writes the series as exposition text into buf[cap] (NUL-terminated, truncated if cap is too
 * small); returns the length it needed. */
size_t process_metrics_format(char *buf, size_t cap);

#endif
