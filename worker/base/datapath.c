/* Shipped files relative to the running executable (see datapath.h). */
#include "datapath.h"

#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* share/strata/ lies beside the executable's directory (bin/, or tests/ in the build tree). */
#define DATAPATH_SHARE "share/strata"

int strata_data_path(const char *rel, char *out, size_t outlen) {
  if (!out || outlen == 0) return -1;
  /* /proc/self/exe is the executable's canonical path (symbolic links resolved), so its
   * grandparent is PREFIX (or the build directory) without any "..". */
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  char *slash = NULL;
  if (n > 0) {
    exe[n] = '\0';
    slash = strrchr(exe, '/'); /* PREFIX/bin/strata -> PREFIX/bin */
    if (slash) *slash = '\0';
    slash = strrchr(exe, '/'); /* PREFIX/bin -> PREFIX ("" for /bin) */
  }
  if (!slash) {
    snprintf(out, outlen, "%s", rel);
    return -1;
  }
  *slash = '\0';
  int len = snprintf(out, outlen, "%s/" DATAPATH_SHARE "/%s", exe, rel);
  if (len < 0 || (size_t)len >= outlen) {
    snprintf(out, outlen, "%s", rel);
    return -1;
  }
  return access(out, R_OK) == 0 ? 0 : -1;
}
