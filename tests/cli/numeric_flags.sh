#!/usr/bin/env bash
# Every numeric flag of every command refuses bad numbers: -1 (unless in the flag's range),
# 0x10, 1e309, nan, the empty string and a value just outside its range each end the command
# with exit code 2 and one sentence naming the flag, printed before MPI starts (the "[strata]"
# prefix, without a rank: no MPI start-up, so every case fails in milliseconds).
#
# The flags come from each command's --help (every ARG_INT/INT64/DOUBLE/BYTES flag prints
# "METAVAR: an integer in [a, b]" / "a number ..." / "a byte size ..."), checked against two
# independent counts: the numeric specs in worker/cli/cmd_*.c, and MIN_FLAGS below (raise it when
# a flag is added), so a new flag cannot escape the table. A flag without a real range (its
# type's whole range) fails the test.
#
# Usage: numeric_flags.sh STRATA SOURCE_DIR
set -uo pipefail
STRATA="$1"
SRC="$2"
MIN_FLAGS=85
COMMANDS=(train eval infer serve bench simulate report tokenize)
# Values a flag's help documents as meaningful although outside its range: "FLAG VALUE" -> reason.
declare -A SKIP=()
fail() { echo "FAIL: $*" >&2; exit 1; }
W="$(mktemp -d /tmp/strata-numflags.XXXXXX)"; trap 'rm -rf "$W"' EXIT

# ---- the flag list, from --help
: > "$W/flags"
for cmd in "${COMMANDS[@]}"; do
  "$STRATA" "$cmd" --help > "$W/help" || fail "strata $cmd --help exited $?"
  # "  -b, --minbytes BYTES   help; BYTES: a byte size in [0, 1024G] (suffix ...)"
  sed -nE 's/^  (-[A-Za-z], )?(--[a-z0-9_-]+) ([^ ]+) +.*; \3: (an integer|a number|a byte size)(.*)$/\2\t\4\t\5/p' \
    "$W/help" | while IFS=$'\t' read -r flag kind range; do
      printf '%s\t%s\t%s\t%s\n' "$cmd" "$flag" "$kind" "${range%%; env *}"
    done >> "$W/flags"
done
nflags=$(wc -l < "$W/flags")
nsrc=$(cat "$SRC"/worker/cli/cmd_*.c | grep -cE '\{"--[^"]*", [^,]*, ARG_(INT|INT64|DOUBLE|BYTES),')
[ "$nflags" -ge "$MIN_FLAGS" ] || fail "--help shows $nflags numeric flags, fewer than the $MIN_FLAGS checked in"
[ "$nflags" -eq "$nsrc" ] || fail "--help shows $nflags numeric flags but worker/cli/cmd_*.c declares $nsrc"

# ---- the cases: "cmd<TAB>flag<TAB>value" for each bad value
bytes_value() { # 1024G -> 1099511627776
  local v="$1" n="${1%[KMG]}"
  case "$v" in *K) echo $((n << 10)) ;; *M) echo $((n << 20)) ;; *G) echo $((n << 30)) ;; *) echo "$n" ;; esac
}
: > "$W/cases"
while IFS=$'\t' read -r cmd flag kind range; do
  lo="" hi="" lo_open=0
  case "$range" in
  " in "[\[\(]*)
    [ "${range:4:1}" = "(" ] && lo_open=1
    body="${range#* in ?}"; lo="${body%%, *}"; rest="${body#*, }"; hi="${rest%%[\]\)]*}"
    [ "$hi" = "2^63" ] && hi="2^63" ;;
  " >= "*) lo="${range# >= }" ;;
  " > "*) lo="${range# > }"; lo_open=1 ;;
  *) fail "$cmd $flag: unreadable range '$range'" ;;
  esac
  case "$kind" in
  "an integer")
    { [ "$lo" = "-9223372036854775808" ] || [ "$lo" = "-2147483648" ]; } && fail "$cmd $flag has no range (any integer)"
    if [ "$hi" = "2^63" ]; then out=9223372036854775808; else out=$((hi + 1)); fi
    minus_one_ok=$(( lo <= -1 )) ;;
  "a byte size")
    lo=$(bytes_value "$lo"); hi=$(bytes_value "$hi")
    [ "$hi" -ge 9223372036854775807 ] 2>/dev/null && fail "$cmd $flag has no range (any byte size)"
    out=$((hi + 1)); minus_one_ok=0 ;;
  "a number")
    [ -z "$hi" ] && [ -z "$lo" ] && fail "$cmd $flag has no range (any number)"
    if [ "$lo_open" = 1 ]; then out="$lo"
    elif [ -n "$hi" ]; then out=$(awk -v h="$hi" 'BEGIN { printf "%.17g", h < 0 ? h / 2 : 2 * h + 1 }')
    else out=$(awk -v l="$lo" 'BEGIN { printf "%.17g", l - 1 }'); fi
    minus_one_ok=$(awk -v l="$lo" -v o="$lo_open" 'BEGIN { print (o ? l < -1 : l <= -1) ? 1 : 0 }') ;;
  esac
  for value in -1 0x10 1e309 nan "" "$out"; do
    if [ "$value" = -1 ] && [ "$minus_one_ok" = 1 ]; then
      echo "skip: $cmd $flag -1 (inside its range $range)"; continue
    fi
    if [ -n "${SKIP["$flag $value"]+x}" ]; then
      echo "skip: $cmd $flag $value (${SKIP["$flag $value"]})"; continue
    fi
    printf '%s\t%s\t%s\n' "$cmd" "$flag" "$value" >> "$W/cases"
  done
done < "$W/flags"

# ---- run them (each exits before MPI starts, so several at a time cost little)
run_case() {
  local cmd flag value out code
  IFS=$'\t' read -r cmd flag value <<< "$1"
  out=$(timeout -k 5 60 "$STRATA" "$cmd" "$flag" "$value" 2>&1 >/dev/null); code=$?
  local want="^\[strata\] error: $cmd: $flag must be (an integer|a number|a byte size) "
  if [ "$code" -ne 2 ]; then echo "FAIL: strata $cmd $flag '$value' exited $code, expected 2: $out"
  elif ! grep -Eq -- "$want.*, got '$value'\$" <<< "$out"; then
    echo "FAIL: strata $cmd $flag '$value': stderr is not one sentence naming the flag and the value before MPI start-up: $out"
  else echo "ok"; fi
}
export -f run_case
export STRATA
tr '\n' '\0' < "$W/cases" | xargs -0 -P 6 -I{} bash -c 'run_case "$1"' _ {} > "$W/results"
ncases=$(wc -l < "$W/cases")
nok=$(grep -c '^ok$' "$W/results")
grep '^FAIL' "$W/results" >&2
[ "$nok" -eq "$ncases" ] || fail "$((ncases - nok)) of $ncases cases failed"
echo "PASS: $nflags numeric flags of ${#COMMANDS[@]} commands, $ncases bad values refused with exit 2 naming the flag"
