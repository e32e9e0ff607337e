#!/usr/bin/env bash
# setup.sh -- shared set-up for demo.sh and test.sh: installs the Debian packages Strata needs
# (only those missing; quiet when all are present; sudo when not root), then configures and
# builds with CMake into build/ (tuned for this machine, warnings as errors). Source it or run
# it; it is idempotent.
set -euo pipefail

STRATA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRATA_BUILD="${STRATA_BUILD:-$STRATA_ROOT/build}"

STRATA_PACKAGES=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev
  libfabric-dev libfabric-bin
  libprotobuf-c-dev protobuf-c-compiler
  libopenblas-dev libdnnl-dev
  libjson-c-dev libmicrohttpd-dev libxxhash-dev zlib1g-dev libpcre2-dev
  gnuplot-nox
  # Slurm batch-script tests (tests/slurm.cmake): a throw-away single-node cluster. Slurm's
  # mpi/pmix plugin dlopens libpmix.so, which only libpmix-dev provides.
  slurmd slurmctld slurm-client munge libpmix-dev
  # the namespace cluster of the multi-node tests (tests/cluster/: ip, tc, nsenter, unshare, and
  # nft for packet loss) and the HTTP wire-format tests (curl, jq); jq also reads strata simulate
  # --json in launch/restart.sh
  iproute2 util-linux nftables curl jq
)

strata_install_packages() {
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "[strata] error: need root or sudo to install: ${missing[*]}" >&2; return 1; }
    sudo="sudo"
  fi
  echo "[strata] installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# strata_cmake_build DIR [CMAKE_ARGS...] -- configures and builds DIR for this machine
# (-DSTRATA_NATIVE=ON) with warnings as errors (-DSTRATA_WERROR=ON): the tree builds clean, so
# any warning fails the build. Quiet on success; on failure prints the end of DIR/build.log.
strata_cmake_build() {
  local dir="$1"; shift
  mkdir -p "$dir"
  if ! { cmake -S "$STRATA_ROOT" -B "$dir" -DSTRATA_NATIVE=ON -DSTRATA_WERROR=ON "$@" &&
         cmake --build "$dir" -j "$(nproc)"; } > "$dir/build.log" 2>&1; then
    tail -n 60 "$dir/build.log" >&2
    echo "[strata] error: the build in $dir failed (whole log: $dir/build.log)" >&2
    return 1
  fi
}

strata_build() {
  strata_cmake_build "$STRATA_BUILD" -DCMAKE_BUILD_TYPE=Release "$@"
}

# Open MPI refuses to run as root without these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Keep every test and demo on loopback.
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export FI_TCP_IFACE="${FI_TCP_IFACE:-lo}"

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  strata_install_packages "${STRATA_PACKAGES[@]}"
  strata_build
fi
