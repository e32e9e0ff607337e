/* process_metrics.c -- process_* series from /proc (see process_metrics.h). */
#include "process_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Fields of /proc/self/stat after the command name: utime 14, stime 15, starttime 22, vsize 23,
 * rss 24 (pages). 0, or -1 when unreadable. */
static int read_stat(unsigned long long *utime, unsigned long long *stime, unsigned long long *start,
                     unsigned long long *vsize, long long *rss) {
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  if (!p) return -1;
  /* after ") " comes field 3 (state) */
  int got = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
                   utime, stime, start, vsize, rss);
  return got == 5 ? 0 : -1;
}

/* The boot time, unix seconds, from /proc/stat's btime; -1 unknown. */
static long long boot_time_s(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return -1;
  char line[256];
  long long bt = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "btime %lld", &bt) == 1) break;
  fclose(f);
  return bt;
}

static long count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory stream's own descriptor */
}

size_t process_metrics_format(char *buf, size_t cap) {
  size_t len = 0;
#define PUT(...)                                                                                                      \
  do {                                                                                                               \
    int k_ = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, __VA_ARGS__);                         \
    if (k_ > 0) len += (size_t)k_;                                                                                   \
  } while (0)
  if (cap) buf[0] = '\0';
  unsigned long long ut, st, start, vsize;
  long long rss;
  long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  if (hz > 0 && page > 0 && !read_stat(&ut, &st, &start, &vsize, &rss)) {
    PUT("# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n",
        (double)(ut + st) / (double)hz);
    PUT("# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
        "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n", vsize);
    PUT("# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n", rss * (long long)page);
    long long bt = boot_time_s();
    if (bt >= 0)
      PUT("# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
          "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
          (double)bt + (double)start / (double)hz);
  }
  long fds = count_fds();
  if (fds >= 0)
    PUT("# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds %ld\n",
        fds);
  struct rlimit rl;
  if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY)
    PUT("# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\n"
        "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
#undef PUT
  return len;
}
