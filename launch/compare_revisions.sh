#!/usr/bin/env bash
# compare_revisions.sh -- does a change make any benchmark figure worse? Builds two git revisions
# the same way and runs the same benchmark commands on both, interleaved in one run, so that the
# figures are compared as ratios taken within each round on the same (possibly busy) machine.
#
# usage: launch/compare_revisions.sh OLD NEW [--rounds N] [--only LIST] [--out DIR]
#   OLD, NEW    git revisions (any commit-ish: hash, branch, tag, HEAD~3)
#   --rounds N  rounds (default 5); each round runs every command OLD, NEW, NEW, OLD (ABBA, so
#               a drift of the machine's speed within the round cancels)
#   --only LIST comma-separated sections (default all): train1 train4 allreduce infer simulate
#   --out DIR   output directory (default launch/results/run-compare-<UTC date>)
#
# Each revision is checked out with `git worktree add --detach` into DIR/src-old and DIR/src-new
# and built there (Release, -march=native): with strata_cmake_build from that revision's own
# launch/setup.sh when it has one, else with plain cmake. The worktrees are removed at exit,
# also on failure or Ctrl-C; the build logs are kept in DIR/logs.
#
# Sections and figures (one number per command and run; a command or flag missing from either
# revision's `--help` skips its section with a message):
#   train1     `strata train`, default model, 20 steps, seed 1337: tokens/s = median of
#              steps.jsonl tokens_per_s after 2 warm-up steps
#   train4     the same on 4 ranks, --pp 2 --dp 2 --microbatches 4 (mpirun --oversubscribe -np 4)
#   allreduce  `strata bench allreduce` np 2, --algo auto --transport mpi: out-of-place busbw
#              (GB/s) at 1 MiB and at 64 MiB (one mpirun gives both)
#   infer      `strata infer` decode tokens/s (16-token prompt, 256 tokens, greedy) on a
#              4-layer width-128 model with context 1024 trained for 2 steps by that revision
#   simulate   `strata simulate` step time of a fixed job: deterministic, must be identical
#
# Output: DIR/compare.md (table, environment, commands), DIR/compare.csv (one row per figure),
# DIR/raw.csv (every run), DIR/logs/ (every command's output). Per figure: median [min-max] of
# OLD's and NEW's runs, the median [min-max] of the per-round ratios NEW/OLD (each round's two
# runs of a revision averaged), and a verdict: "worse" only when the whole ratio range is below
# 0.95 (higher is better) or above 1.05 (lower is better), "better" when it is wholly on the
# other side, else "same"; for simulate "equal" or "different".
# Exit status: 0 no figure worse, 1 a figure worse or different (or a build or run failed),
# 2 usage error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ME="compare_revisions.sh"
SECTIONS="train1 train4 allreduce infer simulate"
USAGE="usage: launch/compare_revisions.sh OLD NEW [--rounds N] [--only ${SECTIONS// /,}] [--out DIR]"

usage_fail() { echo "$ME: $1" >&2; echo "$USAGE" >&2; exit 2; }
fail() { echo "$ME: error: $1" >&2; exit 1; }
say() { echo "[compare] $*"; }

# ---- arguments -------------------------------------------------------------------------------
REVS=() ROUNDS=5 ONLY="" OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --rounds|--only|--out)
      [ $# -ge 2 ] || usage_fail "$1 needs a value; give it after the flag (e.g. $1 ${1/--rounds/3})"
      case "$1" in --rounds) ROUNDS="$2" ;; --only) ONLY="$2" ;; --out) OUT="$2" ;; esac
      shift 2 ;;
    -*) usage_fail "unknown flag '$1'; the flags are --rounds, --only and --out" ;;
    *) REVS+=("$1"); shift ;;
  esac
done
[ ${#REVS[@]} -eq 2 ] || usage_fail "give exactly two revisions, OLD and NEW (got ${#REVS[@]})"
case "$ROUNDS" in
  ''|*[!0-9]*|0*) usage_fail "--rounds '$ROUNDS' is not a positive integer; give e.g. --rounds 5" ;;
esac
RUN_SECTIONS="$SECTIONS"
if [ -n "$ONLY" ]; then
  RUN_SECTIONS=""
  for s in ${ONLY//,/ }; do
    case " $SECTIONS " in
      *" $s "*) RUN_SECTIONS="$RUN_SECTIONS $s" ;;
      *) usage_fail "unknown --only section '$s'; choose from: ${SECTIONS// /, }" ;;
    esac
  done
  [ -n "$RUN_SECTIONS" ] || usage_fail "--only '$ONLY' names no section; choose from: ${SECTIONS// /, }"
fi
HASH=()
for r in "${REVS[@]}"; do
  h=$(git -C "$ROOT" rev-parse --verify --quiet "$r^{commit}") ||
    usage_fail "unknown revision '$r'; give a commit, branch or tag of $ROOT (git log --oneline)"
  HASH+=("$h")
done
OUT="${OUT:-$ROOT/launch/results/run-compare-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT/logs" || usage_fail "cannot create --out '$OUT'; give a writable directory"
OUT="$(cd "$OUT" && pwd)"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# shellcheck disable=SC2054 # commas inside MCA values
MPI=(mpirun --oversubscribe --bind-to none --mca btl self,vader,tcp
     --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)

# ---- worktrees and builds --------------------------------------------------------------------
TAGS=(old new)
WTS=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local wt
  for wt in ${WTS[@]+"${WTS[@]}"}; do
    git -C "$ROOT" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
  done
  git -C "$ROOT" worktree prune >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BUILD_HOW=()
build_rev() { # build_rev I: worktree + build of revision I into $OUT/src-<tag>/build
  local i="$1" tag="${TAGS[$1]}" wt="$OUT/src-${TAGS[$1]}" how
  rm -rf "$wt"
  git -C "$ROOT" worktree add --detach "$wt" "${HASH[$i]}" > "$OUT/logs/worktree_$tag.txt" 2>&1 ||
    fail "git worktree add of ${REVS[$i]} into $wt failed (see $OUT/logs/worktree_$tag.txt)"
  WTS+=("$wt")
  if grep -q '^strata_cmake_build()' "$wt/launch/setup.sh" 2>/dev/null; then
    how="strata_cmake_build (its launch/setup.sh), Release"
    # In a subshell: setup.sh sets STRATA_ROOT from its own path and exports the MPI settings.
    ( unset STRATA_BUILD; source "$wt/launch/setup.sh" &&
      strata_cmake_build "$wt/build" -DCMAKE_BUILD_TYPE=Release ) > "$OUT/logs/build_$tag.txt" 2>&1 ||
      { tail -n 30 "$OUT/logs/build_$tag.txt" >&2; fail "the build of ${REVS[$i]} failed (see $OUT/logs/build_$tag.txt)"; }
  else
    how="plain cmake, Release, STRATA_NATIVE=ON"
    { cmake -S "$wt" -B "$wt/build" -DCMAKE_BUILD_TYPE=Release -DSTRATA_NATIVE=ON &&
      cmake --build "$wt/build" -j "$(nproc)"; } > "$OUT/logs/build_$tag.txt" 2>&1 ||
      { tail -n 30 "$OUT/logs/build_$tag.txt" >&2; fail "the build of ${REVS[$i]} failed (see $OUT/logs/build_$tag.txt)"; }
  fi
  [ -x "$wt/build/bin/strata" ] || fail "the build of ${REVS[$i]} made no $wt/build/bin/strata"
  # The flags the compiler saw, from the strata executable's own target.
  local flags
  flags=$(sed -n 's/^C_FLAGS = //p' "$(find "$wt/build" -path '*strata.dir/flags.make' | head -n1)" 2>/dev/null || true)
  cp "$wt/build/CMakeCache.txt" "$OUT/logs/CMakeCache_$tag.txt" 2>/dev/null || true
  BUILD_HOW[i]="$how; C flags: ${flags:-unknown}"
}

ENV_BEFORE_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
say "output: $OUT"
for i in 0 1; do
  say "building ${TAGS[$i]} = ${REVS[$i]} (${HASH[$i]:0:12}) ..."
  build_rev "$i"
done
BIN=("$OUT/src-old/build/bin/strata" "$OUT/src-new/build/bin/strata")

# ---- which sections both revisions support ---------------------------------------------------
# has_flags I SUBCOMMAND FLAG...: revision I's `strata SUBCOMMAND --help` lists every FLAG.
has_flags() {
  local help f
  help=$("${BIN[$1]}" "$2" --help 2>&1) || return 1
  shift 2
  for f in "$@"; do
    grep -qE -- "(^|[ ,])$f( |,|$)" <<< "$help" || { MISSING="$f"; return 1; }
  done
}
TRAIN_FLAGS=(--steps --seed --batch --data --out --quiet --layers --heads --dim --ctx)
declare -A NEED=(
  [train1]="train ${TRAIN_FLAGS[*]}"
  [train4]="train ${TRAIN_FLAGS[*]} --pp --dp --microbatches"
  [allreduce]="bench -b -e -f -n -w --algo --transport --json"
  [infer]="infer --checkpoint --prompt --max-tokens --temperature --json"
  [simulate]="simulate --model --device --nodes --pp --batch --json"
)
ACTIVE=""
for s in $RUN_SECTIONS; do
  ok=1
  for i in 0 1; do
    # shellcheck disable=SC2086
    if ! has_flags "$i" ${NEED[$s]}; then
      say "skipping $s: \`strata ${NEED[$s]%% *} ${MISSING:-}\` is missing in ${TAGS[$i]} (${REVS[$i]})"
      ok=0; break
    fi
  done
  [ "$s" = infer ] && [ $ok = 1 ] && for i in 0 1; do has_flags "$i" train "${TRAIN_FLAGS[@]}" || ok=0; done
  [ $ok = 1 ] && ACTIVE="$ACTIVE $s"
done
[ -n "$ACTIVE" ] || fail "no section can run on both revisions (see the messages above)"

# ---- the commands ----------------------------------------------------------------------------
DATA="$ROOT/data/fortunes.txt"
[ -f "$DATA" ] || fail "the training text $DATA is missing; run from a Strata checkout"
P16="The quick brown "
SIM_ARGS=(--model gpt2-xl --device trn2 --nodes 64 --pp 4 --batch 512)
declare -A CMD=(
  [train1]="strata train --steps 20 --seed 1337 --batch 16 --data DATA --quiet (default model: 4 layers, 4 heads, width 128, context 128)"
  [train4]="mpirun --oversubscribe -np 4 strata train --pp 2 --dp 2 --microbatches 4 --steps 20 --seed 1337 --batch 16 --data DATA --quiet"
  [allreduce]="mpirun -np 2 strata bench allreduce -b 1M -e 64M -f 64 -n 20 -w 5 --algo auto --transport mpi --json FILE"
  [infer]="mpirun -np 1 strata infer --checkpoint CK --prompt '$P16' --max-tokens 256 --temperature 0 --json (CK: strata train --layers 4 --heads 4 --dim 128 --ctx 1024 --steps 2 --batch 2)"
  [simulate]="strata simulate ${SIM_ARGS[*]} --json"
)
# json_nums KEY FILE: every number that follows "KEY": in FILE, one per line.
json_nums() { sed -n "s/.*\"$1\": *\([0-9.eE+-][0-9.eE+-]*\).*/\1/p" "$2"; }
# median_after K: the median of the numbers on stdin after the first K.
median_after() { tail -n +"$(($1 + 1))" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

train_run() { # train_run I LOG NP EXTRA...: a 20-step run; prints its median tokens/s
  local i="$1" log="$2" np="$3" run; shift 3
  run="$OUT/work/train_${TAGS[$i]}"; rm -rf "$run"
  local cmd=("${BIN[$i]}" train --steps 20 --seed 1337 --batch 16 --data "$DATA" --out "$run" --quiet "$@")
  [ "$np" -gt 1 ] && cmd=("${MPI[@]}" -np "$np" "${cmd[@]}")
  "${cmd[@]}" > "$log" 2>&1 || return 1
  json_nums tokens_per_s "$run/steps.jsonl" | median_after 2
}
# measure SECTION I LOG: the section's figures for revision I, lines "figure value".
measure() {
  local s="$1" i="$2" log="$3" v
  case "$s" in
    train1) v=$(train_run "$i" "$log" 1) && echo "train1_tokens_per_s $v" ;;
    train4) v=$(train_run "$i" "$log" 4 --pp 2 --dp 2 --microbatches 4) && echo "train4_pp2_dp2_tokens_per_s $v" ;;
    allreduce)
      local j="$OUT/work/bench_${TAGS[$i]}.json"; rm -f "$j"
      "${MPI[@]}" -np 2 "${BIN[$i]}" bench allreduce -b 1M -e 64M -f 64 -n 20 -w 5 --algo auto \
        --transport mpi --json "$j" > "$log" 2>&1 || return 1
      # out-of-place rows: "bytes" comes before "inplace" and "busbw_gbs" in each object
      awk '/"bytes":/ { gsub(/[^0-9]/, ""); b = $0 } /"inplace": *false/ { oop = 1 } /"inplace": *true/ { oop = 0 }
           /"busbw_gbs":/ { if (oop) { sub(/.*: */, ""); sub(/,.*/, ""); print b, $0 } }' "$j" |
        awk '$1 == 1048576 { print "allreduce_np2_1MiB_busbw_gbs", $2 } $1 == 67108864 { print "allreduce_np2_64MiB_busbw_gbs", $2 }' ;;
    infer)
      "${MPI[@]}" -np 1 "${BIN[$i]}" infer --checkpoint "${CKPT[$i]}" --prompt "$P16" --max-tokens 256 \
        --temperature 0 --json > "$log" 2>&1 || return 1
      v=$(json_nums tokens_per_s "$log" | head -n1) && echo "infer_decode_tokens_per_s $v" ;;
    simulate)
      "${BIN[$i]}" simulate "${SIM_ARGS[@]}" --json > "$log" 2>&1 || return 1
      v=$(json_nums step_s "$log" | head -n1) && echo "simulate_step_s $v" ;;
  esac
}
# Figure metadata: direction (higher, lower, equal) and description.
declare -A DIR=([train1_tokens_per_s]=higher [train4_pp2_dp2_tokens_per_s]=higher
  [allreduce_np2_1MiB_busbw_gbs]=higher [allreduce_np2_64MiB_busbw_gbs]=higher
  [infer_decode_tokens_per_s]=higher [simulate_step_s]=equal)
declare -A DESC=([train1_tokens_per_s]="train, 1 rank, tokens/s" [train4_pp2_dp2_tokens_per_s]="train, 4 ranks pp 2 x dp 2, tokens/s"
  [allreduce_np2_1MiB_busbw_gbs]="all-reduce np 2, 1 MiB, busbw GB/s" [allreduce_np2_64MiB_busbw_gbs]="all-reduce np 2, 64 MiB, busbw GB/s"
  [infer_decode_tokens_per_s]="infer decode, 1 rank, tokens/s" [simulate_step_s]="simulate gpt2-xl trn2 64 nodes pp 4, step s")

mkdir -p "$OUT/work"
CKPT=()
if [[ " $ACTIVE " == *" infer "* ]]; then
  for i in 0 1; do
    say "infer: training the 2-step model of ${TAGS[$i]} ..."
    "${BIN[$i]}" train --layers 4 --heads 4 --dim 128 --ctx 1024 --steps 2 --batch 2 --seed 1337 \
      --data "$DATA" --out "$OUT/work/infer_model_${TAGS[$i]}" --quiet > "$OUT/logs/infer_model_${TAGS[$i]}.txt" 2>&1 ||
      fail "training the inference model of ${REVS[$i]} failed (see $OUT/logs/infer_model_${TAGS[$i]}.txt)"
    CKPT[i]=$(find "$OUT/work/infer_model_${TAGS[$i]}" -maxdepth 1 -name "ckpt-*" | sort | tail -n1)
  done
fi

# ---- the rounds ------------------------------------------------------------------------------
echo "figure,round,rev,run,value" > "$OUT/raw.csv"
FAILED=""
for r in $(seq 1 "$ROUNDS"); do
  for s in $ACTIVE; do
    n=0
    for i in 0 1 1 0; do # ABBA
      n=$((n + 1)); log="$OUT/logs/${s}_r${r}_${n}_${TAGS[$i]}.txt"
      if out=$(measure "$s" "$i" "$log") && [ -n "$out" ]; then
        while read -r fig val; do
          [ -n "$val" ] || { FAILED="$FAILED $fig(${TAGS[$i]})"; say "$fig on ${TAGS[$i]}: no number in round $r (see $log)"; continue; }
          echo "$fig,$r,${TAGS[$i]},$n,$val" >> "$OUT/raw.csv"
        done <<< "$out"
      else
        FAILED="$FAILED $s(${TAGS[$i]})"; say "$s on ${TAGS[$i]} failed in round $r (see $log)"
      fi
    done
  done
  say "round $r/$ROUNDS done"
done
ENV_AFTER_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- summary ---------------------------------------------------------------------------------
FIGMETA="$OUT/work/figures.txt"; : > "$FIGMETA"
for f in "${!DIR[@]}"; do echo "$f|${DIR[$f]}|${DESC[$f]}" >> "$FIGMETA"; done
ORDER="train1_tokens_per_s train4_pp2_dp2_tokens_per_s allreduce_np2_1MiB_busbw_gbs allreduce_np2_64MiB_busbw_gbs infer_decode_tokens_per_s simulate_step_s"
# One CSV row per figure measured: figure,direction,old_median,old_min,old_max,new_median,
# new_min,new_max,ratio_median,ratio_min,ratio_max,rounds,verdict
awk -F, -v ORDER="$ORDER" -v META="$FIGMETA" '
  function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
                                      return n == 0 ? "" : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) }
  function mn(s,   a, n, i, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 < m) m = a[i] + 0; return m }
  function mx(s,   a, n, i, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
  BEGIN { while ((getline l < META) > 0) { split(l, m, "|"); dir[m[1]] = m[2] } }
  NR > 1 { v[$1, $3] = v[$1, $3] " " $5; sum[$1, $2, $3] += $5; cnt[$1, $2, $3]++; rounds[$1, $2] = 1; seen[$1] = 1 }
  END { n = split(ORDER, O, " ")
    for (k = 1; k <= n; k++) { f = O[k]; if (!(f in seen)) continue
      R = ""; nr = 0
      for (key in rounds) { split(key, kk, SUBSEP); if (kk[1] != f) continue
        if (cnt[f, kk[2], "old"] && cnt[f, kk[2], "new"] && sum[f, kk[2], "old"] != 0) {
          R = R " " (sum[f, kk[2], "new"] / cnt[f, kk[2], "new"]) / (sum[f, kk[2], "old"] / cnt[f, kk[2], "old"]); nr++ } }
      o = v[f, "old"]; w = v[f, "new"]
      if (dir[f] == "equal") { verdict = (o != "" && w != "" && mn(o) == mx(o) && mn(w) == mx(w) && mn(o) == mn(w)) ? "equal" : "different" }
      else if (nr == 0) verdict = "not measured"
      else if (dir[f] == "higher") verdict = mx(R) < 0.95 ? "worse" : (mn(R) > 1.05 ? "better" : "same")
      else verdict = mn(R) > 1.05 ? "worse" : (mx(R) < 0.95 ? "better" : "same")
      printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%d,%s\n", f, dir[f], med(o), mn(o), mx(o), med(w), mn(w), mx(w),
        (nr ? med(R) : ""), (nr ? mn(R) : ""), (nr ? mx(R) : ""), nr, verdict } }' "$OUT/raw.csv" > "$OUT/work/summary.csv"
{
  echo "figure,direction,old_median,old_min,old_max,new_median,new_min,new_max,ratio_median,ratio_min,ratio_max,rounds,verdict"
  cat "$OUT/work/summary.csv"
} > "$OUT/compare.csv"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
{
  echo "# ${REVS[0]} (old) against ${REVS[1]} (new)"
  echo
  echo "Command: \`launch/compare_revisions.sh ${REVS[*]} --rounds $ROUNDS${ONLY:+ --only $ONLY}\`"
  echo
  echo "Each round runs every command old, new, new, old; a round's ratio is new / old of the two"
  echo "runs' means. old and new columns: median [min-max] over all $((2 * ROUNDS)) runs; ratio: median"
  echo "[min-max] over the $ROUNDS rounds. Verdict \"worse\": the whole ratio range below 0.95"
  echo "(higher is better) or above 1.05 (lower is better)."
  echo
  echo "| figure | old | new | new / old | verdict |"
  echo "|---|---|---|---|---|"
  while IFS=, read -r f d om omn omx nm nmn nmx rm rmn rmx _ verdict; do
    fmt="%.4g"; [ "$d" = equal ] && fmt="%.9g"
    if [ "$d" = equal ]; then
      printf "| %s | $fmt [$fmt-$fmt] | $fmt [$fmt-$fmt] | - | %s |\n" "${DESC[$f]}" "$om" "$omn" "$omx" "$nm" "$nmn" "$nmx" "$verdict"
    else
      printf "| %s | $fmt [$fmt-$fmt] | $fmt [$fmt-$fmt] | %.3f [%.3f-%.3f] | %s |\n" "${DESC[$f]}" "$om" "$omn" "$omx" \
        "$nm" "$nmn" "$nmx" "${rm:-0}" "${rmn:-0}" "${rmx:-0}" "$verdict"
    fi
  done < "$OUT/work/summary.csv"
  [ -z "$FAILED" ] || { echo; echo "Failed runs:$FAILED (logs in $OUT/logs)."; }
  echo
  echo "| environment | |"
  echo "|---|---|"
  echo "| date | $(date -u '+%F %T UTC') |"
  echo "| old | ${REVS[0]} = ${HASH[0]} |"
  echo "| new | ${REVS[1]} = ${HASH[1]} |"
  echo "| CPU | ${cpu:-unknown}, $(nproc) cores |"
  echo "| load average before, after | $ENV_BEFORE_LOAD; $ENV_AFTER_LOAD |"
  echo "| OPENBLAS_CORETYPE | ${OPENBLAS_CORETYPE:-unset} |"
  echo "| OPENBLAS_L2_SIZE | ${OPENBLAS_L2_SIZE:-unset} |"
  echo "| compiler | $(cc --version 2>/dev/null | head -n1) |"
  echo "| Open MPI | $(mpirun --version 2>/dev/null | head -n1) |"
  echo "| build old | ${BUILD_HOW[0]} |"
  echo "| build new | ${BUILD_HOW[1]} |"
  echo
  echo "Commands (STRATA = each revision's build/bin/strata; mpirun with --bind-to none and loopback only):"
  echo
  for s in $ACTIVE; do echo "- $s: \`${CMD[$s]}\`"; done
  for s in $RUN_SECTIONS; do [[ " $ACTIVE " == *" $s "* ]] || echo "- $s: skipped (not in both revisions)"; done
} > "$OUT/compare.md"
cat "$OUT/compare.md"

if [ -n "$FAILED" ]; then echo "$ME: some runs failed:$FAILED; see $OUT/logs" >&2; exit 1; fi
if grep -qE ',(worse|different|not measured)$' "$OUT/work/summary.csv"; then
  echo "$ME: a figure is worse or different (see $OUT/compare.md)" >&2; exit 1
fi
exit 0
