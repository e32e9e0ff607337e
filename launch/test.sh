#!/usr/bin/env bash
# test.sh -- installs what is missing, builds, and runs the whole test suite through ctest.
# Extra arguments go to ctest (for example: ./launch/test.sh -L mpi).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
strata_install_packages "${STRATA_PACKAGES[@]}"
strata_build
cd "$STRATA_BUILD"
ctest --output-on-failure "$@"
