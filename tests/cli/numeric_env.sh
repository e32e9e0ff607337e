#!/usr/bin/env bash
# Every numeric STRATA_* environment variable refuses bad values: -1, 0x10, 1e309, nan, a word
# and a value just outside its range each stop `strata` with exit code 2 and one sentence
# naming the variable and the value, before the command starts; a value inside the range (its
# lower bound) is accepted. Empty means unset (the default): not an error.
#
# The variables come from the sources (every "STRATA_..." string literal in worker/*/*.c and
# collectives/*/*.c); the non-numeric ones are listed below. A worker variable's range is read from
# `strata help env`; the collectives' variables (collectives/core/comm.c) have their values here. A
# variable found in the sources that is in neither list fails the test, so a new variable
# cannot escape it.
#
# Usage: numeric_env.sh STRATA SOURCE_DIR
set -uo pipefail
STRATA="$1"
SRC="$2"
fail() { echo "FAIL: $*" >&2; exit 1; }
# not numbers: a fault spec, paths, names
NON_NUMERIC=" STRATA_FAULT STRATA_DATA_DIR STRATA_GNUPLOT STRATA_TRACE_COPY_DIR STRATA_COLL_TRANSPORT STRATA_COLL_ALGO STRATA_COLL_TUNE_FILE STRATA_OFI_DOMAIN "
# collectives/core/comm.c's variables: "an accepted value|a value just outside the range"
declare -A COLL=(
  [STRATA_COLL_TIMEOUT_S]="0.5|1000001"
  [STRATA_COLL_CHUNK_BYTES]="64|63"
  [STRATA_COLL_RD_THRESHOLD]="0|1025G"
  [STRATA_COLL_RABENSEIFNER_MAX]="4M|1025G"
  [STRATA_COLL_EAGER_BYTES]="0|1025M"
  [STRATA_COLL_STREAM_BYTES]="off|1025G"
  [STRATA_COLL_PIPELINE_DEPTH]="64|65"
  [STRATA_COLL_CHECK]="0|2"
  [STRATA_COLL_PROGRESS_THREAD]="0|2"
  [STRATA_COLL_PROGRESS_SLEEP_US]="0|1000000"
  [STRATA_COLL_HUGEPAGES]="1|2"
  [STRATA_COLL_SCRATCH_HUGEPAGES]="0|2"
  [STRATA_COLL_YIELD]="auto|2"
  [STRATA_COLL_WIRE16]="0|2"
  [STRATA_OFI_MAX_MSG_BYTES]="64K|0"
  [STRATA_OFI_FORCE_MR]="0|2"
)
W="$(mktemp -d /tmp/strata-numenv.XXXXXX)"; trap 'rm -rf "$W"' EXIT
"$STRATA" help env > "$W/help" || fail "strata help env exited $?"

# a worker variable's accepted value (its lower bound, or just above an open one) and a value
# just outside its range, from "  NAME  meaning\n      an integer in [a, b]"
worker_values() {
  local want
  want=$(grep -A1 -E "^  $1 " "$W/help" | tail -1 | sed -E 's/^ +//')
  case "$want" in
  "an integer in ["*)
    local lo hi; lo=$(sed -E 's/.*\[(-?[0-9]+), .*/\1/' <<< "$want"); hi=$(sed -E 's/.*, (-?[0-9]+)\]$/\1/' <<< "$want")
    echo "$lo|$((hi + 1))" ;;
  "a byte size in ["*)
    local lo hi; lo=$(sed -E 's/.*\[([0-9]+[KMG]?), .*/\1/' <<< "$want"); hi=$(sed -E 's/.*, ([0-9]+)([KMG]?)\].*/\1 \2/' <<< "$want")
    read -r n u <<< "$hi"; case "$u" in K) n=$((n << 10)) ;; M) n=$((n << 20)) ;; G) n=$((n << 30)) ;; esac
    echo "$lo|$((n + 1))" ;;
  "a number in "*)
    awk -v w="$want" 'BEGIN { open = substr(w, 13, 1) == "("; split(substr(w, 14), a, /, |[\])]/);
      lo = a[1] + 0; hi = a[2] + 0; printf "%.17g|%.17g\n", open ? (lo + hi) / 2 : lo, 2 * hi + 1 }' ;;
  "one of:"*) echo "$(awk '{ print $3 }' <<< "$want")|none-of-these" ;; # words: the first is accepted
  *) echo "" ;;
  esac
}

names=$(cat "$SRC"/worker/*/*.c "$SRC"/collectives/*/*.c | grep -ohE '"STRATA_[A-Z0-9_]+"' | tr -d '"' | sort -u)
nvars=0
: > "$W/cases"
for name in $names; do
  case "$NON_NUMERIC" in *" $name "*) continue ;; esac
  if [ -n "${COLL[$name]+x}" ]; then values="${COLL[$name]}"
  elif grep -qE "^  $name " "$W/help"; then values=$(worker_values "$name")
  else fail "$name is read in the sources but is neither described by strata help env (worker/base/env.c), nor in this test's collectives table, nor listed as non-numeric"; fi
  [ -n "$values" ] || fail "$name: cannot read its range from strata help env"
  good="${values%%|*}" outside="${values#*|}"
  for bad in -1 0x10 1e309 nan lots "$outside"; do printf '2\t%s\t%s\n' "$name" "$bad" >> "$W/cases"; done
  printf '0\t%s\t%s\n0\t%s\t\n' "$name" "$good" "$name" >> "$W/cases"
  nvars=$((nvars + 1))
done

run_case() { # "EXPECT_CODE<TAB>NAME<TAB>VALUE": strata simulate with NAME=VALUE
  local want name value out code
  IFS=$'\t' read -r want name value <<< "$1"
  out=$(env "$name=$value" timeout -k 5 60 "$STRATA" simulate --model gpt2 --nodes 8 2>&1 >/dev/null); code=$?
  if [ "$want" = 2 ]; then
    if [ "$code" -ne 2 ]; then echo "FAIL: $name='$value': exited $code, expected 2: $out"; return; fi
    grep -Eq "^\[strata\] error: $name must be .*, got '$value' \(environment variable; unset it for the default\)\$" <<< "$out" ||
      { echo "FAIL: $name='$value': the message does not name the variable and the value: $out"; return; }
  elif [ "$code" -ne 0 ]; then
    echo "FAIL: $name='$value' (in its range, or empty) was refused: exit $code: $out"; return
  fi
  echo ok
}
export -f run_case
export STRATA
tr '\n' '\0' < "$W/cases" | xargs -0 -P 6 -I{} bash -c 'run_case "$1"' _ {} > "$W/results"
n=$(wc -l < "$W/cases")
grep '^FAIL' "$W/results" >&2
[ "$(grep -c '^ok$' "$W/results")" -eq "$n" ] || fail "$((n - $(grep -c '^ok$' "$W/results"))) of $n cases failed"
[ "$nvars" -ge 44 ] || fail "only $nvars numeric variables found in the sources, fewer than the 44 checked in"
echo "PASS: $nvars numeric environment variables, $n cases"
