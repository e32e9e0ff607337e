#!/usr/bin/env bash
# check_benchmarks.sh OUT -- launch/benchmarks.sh without a real measurement: every benchmark
# script parses (bash -n); usage errors exit 2 with a message; then the cheapest section
# (`--quick --only simulate`, deterministic `strata simulate` runs) published into a copy of
# BENCHMARKS.md: its CSV has a row per command with positive figures, the copy's simulate and
# env blocks are rewritten from the run, every other line of the copy is unchanged, the markers
# survive, and the results directory receives the block's CSV and Markdown.
# env STRATA_SOURCE_DIR (the source tree), STRATA_BUILD (the build directory).
set -uo pipefail
OUT="$1"
ROOT="${STRATA_SOURCE_DIR:?STRATA_SOURCE_DIR must point at the source tree}"
B="$ROOT/launch/benchmarks.sh"
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
rm -rf "$OUT"; mkdir -p "$OUT"

for s in benchmarks.sh scaling.sh ddp_bench.sh sim_vs_measured.sh infer_bench.sh http_bench.sh tokenizer_bench.sh; do
  bash -n "$ROOT/launch/$s" || fail "launch/$s does not parse"
done

# usage errors: exit 2 and a message naming the problem
expect2() { # expect2 REGEX ARGS...
  local re="$1"; shift
  local msg; msg="$("$B" "$@" 2>&1 >/dev/null)"; local rc=$?
  [ "$rc" = 2 ] || fail "benchmarks.sh $* exited $rc, expected 2"
  grep -qE -- "$re" <<< "$msg" || fail "benchmarks.sh $*: message '$msg' does not match '$re'"
}
expect2 "unknown argument '--bogus'" --bogus
expect2 "unknown section 'nope'" --only coll,nope
expect2 "--repeats must be an integer in \[1, 100\], got '0'" --repeats 0
printf '# no markers here\n' > "$OUT/nomarkers.md"
BENCHMARKS_MD="$OUT/nomarkers.md" expect2 "has no '<!-- benchmarks.sh:begin env -->' marker" --quick --only simulate --publish

# the simulate section, published into a copy
cp "$ROOT/BENCHMARKS.md" "$OUT/BENCHMARKS.md"
mkdir -p "$OUT/results"
BENCHMARKS_MD="$OUT/BENCHMARKS.md" RESULTS_DIR="$OUT/results" "$B" --quick --only simulate --publish --out "$OUT/run" ||
  fail "benchmarks.sh --quick --only simulate --publish exited $?"
csv="$OUT/run/bench_simulate.csv"
[ "$(head -1 "$csv")" = "command,pp,dp,microbatches,zero,step_s,tokens_per_s,mfu,peak_mem_bytes,tp,virtual_stages,sequence_parallel,recompute" ] || fail "bench_simulate.csv header: '$(head -1 "$csv")'"
[ "$(($(wc -l < "$csv") - 1))" = 4 ] || fail "bench_simulate.csv should have 4 rows"
awk -F, 'NR > 1 && !($2 >= 1 && $3 >= 1 && $6 > 0 && $7 > 0 && $8 > 0 && $8 < 1 && $9 > 0 && $10 >= 1 && $11 >= 1 && ($12 == "true" || $12 == "false") && $13 != "") { bad = 1; print "bad row: " $0 } END { exit bad }' "$csv" ||
  fail "bench_simulate.csv has a row with a non-positive figure or an MFU outside (0, 1)"
grep -q "^strata simulate --model gpt2-xl --device trn2 --nodes 64 --pp 4 --batch 512,4,16,16,0," "$csv" ||
  fail "bench_simulate.csv: the gpt2-xl pp 4 run is not pp 4 x dp 16, M=16, ZeRO-0"
M="$OUT/BENCHMARKS.md"
for name in env coll tune train gemm ddp tp simulate simacc infer serve tokenizer; do
  for e in begin end; do
    [ "$(grep -cF "<!-- benchmarks.sh:$e $name -->" "$M")" = 1 ] || fail "the copy does not have exactly one '$e $name' marker"
  done
done
[ "$(grep -c '^<!-- scaling.sh:\(begin\|end\)' "$M")" = 2 ] || fail "the scaling.sh markers are not intact"
block() { awk -v n="$2" 'index($0, "<!-- benchmarks.sh:begin " n " -->") == 1 { p = 1; next } index($0, "<!-- benchmarks.sh:end " n " -->") == 1 { p = 0 } p' "$1"; }
block "$M" simulate | grep -q 'Measured by `launch/benchmarks.sh --quick`' || fail "the simulate block was not rewritten from the run"
block "$M" simulate | grep -qF '| `strata simulate --model 7b --device trn2 --nodes 1024 --batch 2048 --sweep` |' || fail "the simulate block lacks the 7b sweep row"
block "$M" simulate | grep -qF '| `strata simulate --model gpt2-xl --device trn2 --nodes 64 --pp 4 --batch 512` | tp 1 x pp 4 x dp 16, M=16, ZeRO-0 |' ||
  fail "the simulate block's gpt2-xl pp 4 row does not name tp 1 x pp 4 x dp 16, M=16, ZeRO-0"
block "$M" env | grep -q "^| OPENBLAS_CORETYPE | " || fail "the env block lacks OPENBLAS_CORETYPE"
block "$M" env | grep -q "^| git commit | " || fail "the env block lacks the git commit"
# everything outside the two published blocks is unchanged
strip() { awk 'index($0, "<!-- benchmarks.sh:begin env -->") == 1 || index($0, "<!-- benchmarks.sh:begin simulate -->") == 1 { print; p = 1; next }
               index($0, "<!-- benchmarks.sh:end ") == 1 { p = 0 } !p' "$1"; }
cmp -s <(strip "$ROOT/BENCHMARKS.md") <(strip "$M") || fail "publishing changed lines outside the env and simulate blocks"
for f in bench_simulate.csv bench_simulate.md bench_env.md; do
  [ -s "$OUT/results/$f" ] || fail "the results directory lacks $f"
done

[ "$fails" = 0 ] && echo "launch_benchmarks: all checks passed" || echo "launch_benchmarks: $fails checks failed"
[ "$fails" = 0 ]
