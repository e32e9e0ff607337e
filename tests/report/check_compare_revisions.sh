#!/usr/bin/env bash
# check_compare_revisions.sh OUT -- launch/compare_revisions.sh's argument handling only (it never
# builds or measures here): the script parses, --help prints the usage and exits 0, and every
# usage error (missing or extra revision, unknown revision, bad --rounds, unknown --only section,
# unknown flag, flag without a value) exits 2 with the sentence naming it and creates nothing.
# env STRATA_SOURCE_DIR (the source tree).
set -uo pipefail
OUT="$1"
ROOT="${STRATA_SOURCE_DIR:?STRATA_SOURCE_DIR must point at the source tree}"
C="$ROOT/launch/compare_revisions.sh"
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
rm -rf "$OUT"; mkdir -p "$OUT"

bash -n "$C" || fail "launch/compare_revisions.sh does not parse"
help="$("$C" --help 2>&1)"; rc=$?
[ "$rc" = 0 ] || fail "--help exited $rc, expected 0"
grep -q 'usage: launch/compare_revisions.sh OLD NEW \[--rounds N\] \[--only LIST\] \[--out DIR\]' <<< "$help" ||
  fail "--help does not print the usage line: $help"

# expect2 REGEX ARGS...: exit 2, a message matching REGEX, the usage line, and no --out directory.
expect2() {
  local re="$1"; shift
  local msg rc; msg="$("$C" "$@" --out "$OUT/run" 2>&1 >/dev/null)"; rc=$?
  [ "$rc" = 2 ] || fail "compare_revisions.sh $* exited $rc, expected 2"
  grep -qE -- "$re" <<< "$msg" || fail "compare_revisions.sh $*: message '$msg' does not match '$re'"
  grep -q '^usage: launch/compare_revisions.sh OLD NEW' <<< "$msg" || fail "compare_revisions.sh $*: no usage line in '$msg'"
  [ ! -e "$OUT/run" ] || { fail "compare_revisions.sh $* created its output directory"; rm -rf "$OUT/run"; }
}
expect2 "give exactly two revisions, OLD and NEW \(got 0\)"
expect2 "give exactly two revisions, OLD and NEW \(got 1\)" HEAD
expect2 "give exactly two revisions, OLD and NEW \(got 3\)" HEAD HEAD HEAD
expect2 "unknown revision 'no-such-revision-x'; give a commit, branch or tag" no-such-revision-x HEAD
expect2 "unknown revision 'no-such-revision-y'" HEAD no-such-revision-y
expect2 "--rounds '0' is not a positive integer; give e.g. --rounds 5" HEAD HEAD --rounds 0
expect2 "--rounds 'three' is not a positive integer" HEAD HEAD --rounds three
expect2 "--rounds '-1' is not a positive integer" HEAD HEAD --rounds -1
expect2 "unknown --only section 'coll'; choose from: train1, train4, allreduce, infer, simulate" HEAD HEAD --only train1,coll
expect2 "--only ',' names no section" HEAD HEAD --only ,
expect2 "unknown flag '--repeats'; the flags are --rounds, --only and --out" HEAD HEAD --repeats 3
msg="$("$C" HEAD HEAD --rounds 2>&1 >/dev/null)"; rc=$?
[ "$rc" = 2 ] && grep -q -- "--rounds needs a value" <<< "$msg" || fail "--rounds without a value: exit $rc, '$msg'"

[ "$fails" = 0 ] || { echo "$fails check(s) failed" >&2; exit 1; }
echo "compare_revisions.sh argument handling: all checks passed"
