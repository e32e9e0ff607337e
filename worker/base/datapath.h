/* datapath.h -- where the files Strata ships are found at run time: the default corpus
 * (data/fortunes.txt) and the device profiles (devices/NAME.json).
 *
 * They live in share/strata/ beside the directory of the running executable (readlink
 * /proc/self/exe), so no path is compiled in and an installed tree can be moved:
 *   PREFIX/bin/strata    -> PREFIX/share/strata/        (cmake --install)
 *   build/bin/strata     -> build/share/strata/         (the build tree: CMake fills it with
 *   build/tests/test_x   -> build/share/strata/          links to the source tree's data/ and
 *                                                        worker/sim/devices/)
 *
 *   char path[4096];
 *   if (strata_data_path("devices/trn1-measured.json", path, sizeof path) == 0) load(path);
 */
#ifndef STRATA_DATAPATH_H
#define STRATA_DATAPATH_H

#include <stddef.h>

/* Writes the path of the shipped file `rel` (relative to share/strata/, e.g.
 * "data/fortunes.txt") to out. Returns 0 when that file exists; -1 when it does not or the
 * executable's directory cannot be read, out then still holding the path looked at (or `rel`
 * itself when even that is unknown), for the caller's error message. */
int strata_data_path(const char *rel, char *out, size_t outlen);

#endif
