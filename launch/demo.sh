#!/usr/bin/env bash
# demo.sh -- installs what is missing, builds, and runs Strata's main job on 4 simulated nodes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
strata_install_packages "${STRATA_PACKAGES[@]}"
strata_build
cd "$STRATA_ROOT"
echo "[strata] all-reduce benchmark, 4 ranks, 1 KB to 64 MB, against MPI_Allreduce"
mpirun --oversubscribe -np 4 "$STRATA_BUILD/bin/strata" bench allreduce -b 1K -e 64M -f 4 --algo auto
mpirun --oversubscribe -np 4 "$STRATA_BUILD/bin/strata" bench allreduce -b 1K -e 64M -f 4 --algo mpi
