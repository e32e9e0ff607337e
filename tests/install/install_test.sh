#!/usr/bin/env bash
# install_test.sh CASE -- `cmake --install` of the current build tree into a temporary prefix
# (nothing is configured anew), then one of:
#   layout        what goes where: bin/strata, the libraries (SONAME), include/strata/coll.h
#                 alone, the pkg-config file and CMake package, share/strata/; the shared
#                 library exports exactly the functions coll.h declares (no strnum_*)
#   pkgconfig     allreduce_demo.c built with `mpicc $(pkg-config --cflags --libs strata-coll)`
#                 and with plain `cc`, run under mpirun on 2 and 3 ranks: exact sums
#   find_package  the same program built by a small CMake project (find_package(StrataColl),
#                 Strata::coll and Strata::coll_static), run on 2 and 3 ranks
#   relocated     the installed tree moved elsewhere, run from outside the source tree with the
#                 source and build trees hidden (an empty tmpfs over each, in a private mount
#                 namespace, when unshare allows it): --version, simulate on a built-in and on a
#                 shipped device profile, train on the shipped corpus; with a shipped file
#                 removed, the error names the path in the moved prefix
# Environment (set by tests/install.cmake): STRATA_BUILD_DIR, STRATA_SOURCE_DIR, STRATA_VERSION,
# STRATA_LIBDIR (CMAKE_INSTALL_LIBDIR), INSTALL_MPIRUN (mpirun and its flags), CMAKE_COMMAND,
# INSTALL_TEST_CFLAGS (the build's sanitizer flags, for programs that link its library).
set -euo pipefail

case_name="${1:?usage: install_test.sh layout|pkgconfig|find_package|relocated}"
build="${STRATA_BUILD_DIR:?STRATA_BUILD_DIR must name the build tree}"
src="${STRATA_SOURCE_DIR:?STRATA_SOURCE_DIR must name the source tree}"
version="${STRATA_VERSION:?STRATA_VERSION must be the project version}"
libdir="${STRATA_LIBDIR:-lib}"
cmake_cmd="${CMAKE_COMMAND:-cmake}"
read -r -a test_cflags <<< "${INSTALL_TEST_CFLAGS:-}"
read -r -a mpirun <<< "${INSTALL_MPIRUN:?INSTALL_MPIRUN must hold the mpirun command line}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/strata-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
fail() { echo "FAIL ($case_name): $*" >&2; exit 1; }

"$cmake_cmd" --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1 ||
  { cat "$work/install.log"; fail "cmake --install $build --prefix $prefix failed"; }

# run_demo EXE: runs EXE on 2 and 3 ranks; each must print its exact sum (1+2 = 3, 1+2+3 = 6).
run_demo() {
  local exe="$1" np out
  for np in 2 3; do
    out="$("${mpirun[@]}" -np "$np" "$exe" 2>&1)" || { echo "$out"; fail "$exe on $np ranks exited $?"; }
    grep -q "allreduce_demo: $np ranks, sum of 1..$np = $((np * (np + 1) / 2)), 1048583 elements exact" <<< "$out" ||
      { echo "$out"; fail "$exe on $np ranks: no exact sum in its output"; }
    echo "ok: $(basename "$exe") on $np ranks: $(grep allreduce_demo: <<< "$out")"
  done
}

case "$case_name" in
layout)
  lib="$prefix/$libdir"
  for f in bin/strata include/strata/coll.h "$libdir/libstrata_coll.a" "$libdir/libstrata_coll.so" \
           "$libdir/pkgconfig/strata-coll.pc" "$libdir/cmake/StrataColl/StrataCollConfig.cmake" \
           "$libdir/cmake/StrataColl/StrataCollConfigVersion.cmake" \
           "$libdir/cmake/StrataColl/StrataCollTargets.cmake" share/strata/data/fortunes.txt; do
    [ -e "$prefix/$f" ] || fail "$f is not installed"
  done
  [ -x "$prefix/bin/strata" ] || fail "bin/strata is not executable"
  cmp -s "$src/data/fortunes.txt" "$prefix/share/strata/data/fortunes.txt" || fail "share/strata/data/fortunes.txt differs from data/fortunes.txt"
  for dev in "$src"/worker/sim/devices/*.json; do
    cmp -s "$dev" "$prefix/share/strata/devices/$(basename "$dev")" || fail "device profile $(basename "$dev") is not in share/strata/devices"
  done
  headers="$(cd "$prefix/include" && find . -type f -o -type l | sort | tr '\n' ' ')"
  [ "$headers" = "./strata/coll.h " ] || fail "include/ must hold strata/coll.h only, holds: $headers"
  # coll.h may include only system headers (nothing else of Strata's is installed).
  bad="$(grep -E '^#include' "$prefix/include/strata/coll.h" | grep -vE '^#include <(mpi|stddef|stdint)\.h>' || true)"
  [ -z "$bad" ] || fail "coll.h includes something that is not installed: $bad"

  soname="$(objdump -p "$lib/libstrata_coll.so" | awk '$1 == "SONAME" {print $2}')"
  want_soname="libstrata_coll.so.${version%.*}"
  [ "$soname" = "$want_soname" ] || fail "SONAME is '$soname', expected $want_soname"
  [ -e "$lib/$soname" ] && [ -e "$lib/libstrata_coll.so.$version" ] || fail "$soname or libstrata_coll.so.$version missing"
  echo "ok: SONAME $soname"

  # Exported functions == the functions coll.h declares (declarations start a line with a type;
  # comments do not). A new public function must be added to collectives/cmake/strata_coll.map.
  grep -oE '^[A-Za-z_][A-Za-z0-9_ ]*[ *]+coll_[a-z0-9_]+\(' "$prefix/include/strata/coll.h" |
    sed -E 's/.*[ *](coll_[a-z0-9_]+)\($/\1/' | sort -u > "$work/declared"
  nm -D --defined-only "$lib/libstrata_coll.so" | awk '{print $3}' | grep -vE '^(_init|_fini)$' |
    sort -u > "$work/exported"
  [ "$(wc -l < "$work/declared")" -ge 40 ] || fail "found only $(wc -l < "$work/declared") declarations in coll.h"
  diff "$work/declared" "$work/exported" > "$work/symdiff" ||
    { cat "$work/symdiff"; fail "libstrata_coll.so must export exactly coll.h's functions ('<' declared, not exported: add to collectives/cmake/strata_coll.map; '>' exported, not declared)"; }
  echo "ok: libstrata_coll.so exports the $(wc -l < "$work/exported") functions of coll.h and nothing else"

  got="$(PKG_CONFIG_PATH="$lib/pkgconfig" pkg-config --modversion strata-coll)" || fail "pkg-config cannot read strata-coll.pc"
  [ "$got" = "$version" ] || fail "pkg-config --modversion strata-coll is '$got', expected $version"
  got="$("$prefix/bin/strata" --version)"
  [ "$got" = "strata $version" ] || fail "strata --version printed '$got', expected 'strata $version'"
  echo "ok: strata-coll.pc and strata --version say $version"
  ;;

pkgconfig)
  export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
  read -r -a pc_flags <<< "$(pkg-config --cflags --libs strata-coll)"
  echo "pkg-config --cflags --libs strata-coll: ${pc_flags[*]}"
  for compiler in mpicc cc; do
    exe="$work/allreduce_demo_$compiler"
    # -rpath: the prefix's lib/ is not on the loader's path.
    "$compiler" "${test_cflags[@]}" "$here/allreduce_demo.c" "${pc_flags[@]}" -Wl,-rpath,"$prefix/$libdir" -o "$exe" ||
      fail "$compiler allreduce_demo.c \$(pkg-config --cflags --libs strata-coll) failed"
    libs="$(ldd "$exe")" # (not piped into grep -q: its early exit would fail ldd under pipefail)
    grep -q "libstrata_coll.so.* => $prefix/$libdir/" <<< "$libs" || { echo "$libs"; fail "$exe does not load the installed libstrata_coll.so"; }
    run_demo "$exe"
  done
  ;;

find_package)
  "$cmake_cmd" -S "$here/find_package" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="${test_cflags[*]}" > "$work/consumer.log" 2>&1 ||
    { cat "$work/consumer.log"; fail "configuring the find_package(StrataColl) project failed"; }
  "$cmake_cmd" --build "$work/consumer" >> "$work/consumer.log" 2>&1 ||
    { cat "$work/consumer.log"; fail "building the find_package(StrataColl) project failed"; }
  libs="$(ldd "$work/consumer/allreduce_demo")"
  grep -q "libstrata_coll.so.* => $prefix/$libdir/" <<< "$libs" ||
    { echo "$libs"; fail "allreduce_demo (Strata::coll) does not load the installed libstrata_coll.so"; }
  libs="$(ldd "$work/consumer/allreduce_demo_static")"
  ! grep -q libstrata_coll <<< "$libs" || fail "allreduce_demo_static (Strata::coll_static) loads libstrata_coll.so"
  run_demo "$work/consumer/allreduce_demo"
  run_demo "$work/consumer/allreduce_demo_static"
  ;;

relocated)
  moved="$work/moved"
  mv "$prefix" "$moved"
  strata="$moved/bin/strata"
  cd "$work"
  # hidden CMD...: CMD with the source and build trees hidden under empty tmpfs mounts, when
  # this machine lets us make a private mount namespace; else CMD as it is.
  hide=0
  case "$work/" in "$src/"*|"$build/"*) ;; *) unshare -m --propagation private true 2>/dev/null && hide=1 ;; esac
  hidden() {
    if [ "$hide" = 1 ]; then
      # the build tree first: it may lie inside the source tree
      unshare -m --propagation private sh -c 'mount -t tmpfs strata-hidden "$2" && mount -t tmpfs strata-hidden "$1" &&
        if [ -e "$1/CMakeLists.txt" ] || [ -e "$2/CMakeCache.txt" ]; then echo "hiding the trees failed" >&2; exit 99; fi &&
        shift 2 && exec "$@"' sh "$src" "$build" "$@"
    else
      "$@"
    fi
  }
  [ "$hide" = 1 ] && echo "source and build trees hidden (private mount namespace)" ||
    echo "note: cannot make a private mount namespace here; the removal checks below still show the files come from the moved prefix"
  # A sanitizer suppression file in a hidden tree (test.sh's LSAN_OPTIONS names
  # tests/lsan.supp) would be unreadable: use a copy.
  for v in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
    if [[ "${!v:-}" =~ suppressions=([^:]+) ]]; then
      cp "${BASH_REMATCH[1]}" "$work/$v.supp"
      export "$v=${!v/suppressions=${BASH_REMATCH[1]}/suppressions=$work/$v.supp}"
    fi
  done
  # run WANT_RC CMD...: CMD (hidden), its output in $out; fails unless it exits WANT_RC.
  run() {
    local want="$1" rc
    shift
    set +e
    out="$(hidden "$@" 2>&1)"
    rc=$?
    set -e
    [ "$rc" = "$want" ] || { echo "$out"; fail "$* exited $rc, expected $want"; }
  }

  run 0 "$strata" --version
  [ "$out" = "strata $version" ] || fail "strata --version printed '$out'"
  run 0 "$strata" simulate --model gpt2 --device trn2 --nodes 2 --pp 2 --batch 8
  grep -q "device: trn2" <<< "$out" || { echo "$out"; fail "simulate --device trn2 does not name its device"; }
  run 0 "$strata" simulate --model gpt2 --device trn1-measured --nodes 2 --pp 2 --batch 8
  grep -q "device: trn1-measured" <<< "$out" || { echo "$out"; fail "simulate --device trn1-measured does not name its device"; }
  echo "ok: simulate with the built-in trn2 and the shipped trn1-measured profile"
  run 0 "$strata" train --steps 2 --device trn2 --out "$work/run"
  grep -q "\"data\": *\"$moved/share/strata/data/fortunes.txt\"" "$work/run/report.json" ||
    { grep '"data"' "$work/run/report.json"; fail "train did not read share/strata/data/fortunes.txt of the moved prefix"; }
  echo "ok: train read $moved/share/strata/data/fortunes.txt"

  # Without the shipped files, the errors name where they were looked for.
  rm "$moved/share/strata/devices/trn1-measured.json"
  run 2 "$strata" simulate --model gpt2 --device trn1-measured --nodes 2 --pp 2 --batch 8
  grep -q "$moved/share/strata/devices" <<< "$out" || { echo "$out"; fail "the unknown-profile error does not name $moved/share/strata/devices"; }
  rm "$moved/share/strata/data/fortunes.txt"
  run 2 "$strata" train --steps 2 --device trn2 --out "$work/run2"
  grep -q "$moved/share/strata/data/fortunes.txt" <<< "$out" || { echo "$out"; fail "the missing-corpus error does not name $moved/share/strata/data/fortunes.txt"; }
  echo "ok: missing shipped files are reported by their paths in the moved prefix"
  ;;

*)
  fail "unknown case (use layout, pkgconfig, find_package or relocated)"
  ;;
esac
echo "PASS: install $case_name"
