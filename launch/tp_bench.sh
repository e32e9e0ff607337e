#!/usr/bin/env bash
# tp_bench.sh -- tensor parallelism against data parallelism on two ranks, same model, same
# global batch, in one go on this machine. ROUNDS times, in ABBA order (D=2, T=2, T=2, D=2, ...)
# so a drift in the machine's load falls on both alike:
#   D=2: mpirun -np 2 strata train --dp 2 --batch B MODEL
#   T=2: mpirun -np 2 strata train --tp 2 --batch B MODEL
# Model (default) the 10.8M-parameter L=6 H=6 C=384, context 256, byte vocabulary 256.
# Per run: tokens/s over the steps after the first WARMUP (2) from steps.jsonl, and from
# report.json the communication shares of the whole run: tp_comm_share (time inside the
# tensor-parallel collectives of forward and backward) and dp_comm_share (the gradient
# all-reduce), each as a share of all ranks' summed time.
# Output, machine-readable (launch/benchmarks.sh reads it):
#   RUN r layout=d2|t2 tokens_per_s=X tp_comm=P% dp_comm=Q%
#   ROUND r d2=X t2=Y ratio=Y/X
# then the medians over the rounds with their range (RESULT lines). The goal the ratio is held
# to (T=2 at >= 0.85x of D=2) is printed with it, not asserted.
# Usage: launch/tp_bench.sh [STEPS (default 12)] [GLOBAL_BATCH (default 16)]
#   env STRATA_BUILD (default build), ROUNDS (default 2), MODEL (default
#   "--layers 6 --heads 6 --dim 384 --ctx 256"), EXTRA (flags for both layouts, e.g.
#   "--transport ofi --ofi-provider shm"), TP_EXTRA (flags for the T=2 runs only, e.g.
#   "--sequence-parallel")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/lib/stats.sh"
BUILD="${STRATA_BUILD:-$ROOT/build}"
STRATA="$BUILD/bin/strata"
STEPS="${1:-12}"; BATCH="${2:-16}"; WARMUP=2
ROUNDS="${ROUNDS:-2}"
read -r -a MODEL <<< "${MODEL:---layers 6 --heads 6 --dim 384 --ctx 256}"
read -r -a EXTRA <<< "${EXTRA:-}"
read -r -a TP_EXTRA <<< "${TP_EXTRA:-}"
CTX="$(printf '%s\n' "${MODEL[@]}" | awk 'p { print; exit } $0 == "--ctx" { p = 1 }')"
[ -n "$CTX" ] || { echo "tp_bench: MODEL must contain --ctx N" >&2; exit 2; }
case "$STEPS$BATCH$ROUNDS" in *[!0-9]*) echo "tp_bench: STEPS, GLOBAL_BATCH and ROUNDS must be positive integers" >&2; exit 2 ;; esac
[ "$STEPS" -gt "$WARMUP" ] || { echo "tp_bench: STEPS must exceed the $WARMUP warm-up steps" >&2; exit 2; }
[ $((BATCH % 2)) -eq 0 ] && [ "$BATCH" -gt 0 ] || { echo "tp_bench: GLOBAL_BATCH must be even (D=2 splits it)" >&2; exit 2; }
[ "$ROUNDS" -gt 0 ] || { echo "tp_bench: ROUNDS must be at least 1" >&2; exit 2; }
[ -x "$STRATA" ] || { echo "tp_bench: build first ($STRATA missing)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --allow-run-as-root --bind-to none --mca btl self,vader,tcp
        --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
# tokens/s: tokens per step over the median step time after the warm-up (launch/lib/stats.sh)
tps() { strata_tps "$1" "$WARMUP" "$2" | awk '{ printf "%.0f", $1 }'; }
strata_load_warning
# a number from report.json's top level (one "key": value per line), as a percentage
share() { awk -v k="\"$2\":" '$1 == k { x = $2; sub(/,$/, "", x); printf "%.1f", 100 * x; f = 1; exit }
          END { if (!f) printf "none" }' "$1"; }
COMMON=("${MODEL[@]}" --steps "$STEPS" --quiet --eval-tokens 128 --warmup 5 --batch "$BATCH"
        ${EXTRA[@]+"${EXTRA[@]}"})

RUN_LINES=(); declare -A TPS
run() { # run ROUND LAYOUT
  local r="$1" lay="$2" flags=(--dp 2)
  [ "$lay" = t2 ] && flags=(--tp 2 ${TP_EXTRA[@]+"${TP_EXTRA[@]}"})
  echo "== [$r] $lay: mpirun -np 2 strata train ${flags[*]} ${COMMON[*]}"
  rm -rf "$W/$lay"
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${COMMON[@]}" "${flags[@]}" --out "$W/$lay"
  TPS[$r,$lay]=$(tps "$W/$lay/steps.jsonl" $((BATCH * CTX)))
  RUN_LINES+=("RUN $r layout=$lay tokens_per_s=${TPS[$r,$lay]} tp_comm=$(share "$W/$lay/report.json" tp_comm_share)% dp_comm=$(share "$W/$lay/report.json" dp_comm_share)%")
  echo "${RUN_LINES[-1]}"
}
ROUND_LINES=()
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then run "$r" d2; run "$r" t2; else run "$r" t2; run "$r" d2; fi
  ROUND_LINES+=("$(awk -v r="$r" -v a="${TPS[$r,d2]}" -v b="${TPS[$r,t2]}" 'BEGIN {
    printf "ROUND %d d2=%d t2=%d ratio=%.3f", r, a, b, (a > 0 ? b / a : 0) }')")
done

echo
printf '%s\n' "${RUN_LINES[@]}" "${ROUND_LINES[@]}"
strata_load_warning
printf '%s\n' "${RUN_LINES[@]}" "${ROUND_LINES[@]}" | awk "$STRATA_MED_AWK"'
  $1 == "RUN" { split($3, l, "="); for (i = 4; i <= NF; i++) { split($i, kv, "="); x = kv[2]; sub(/%$/, "", x)
      if (x != "none") v[l[2] "_" kv[1], ++cnt[l[2] "_" kv[1]]] = x + 0 } }
  $1 == "ROUND" { split($5, kv, "="); v["ratio", ++cnt["ratio"]] = kv[2] + 0 }
  END { printf "RESULT d2_tokens_per_s=%s t2_tokens_per_s=%s t2_over_d2=%s (goal >= 0.85)\n",
          med("d2_tokens_per_s"), med("t2_tokens_per_s"), med("ratio")
        printf "RESULT t2_tp_comm=%s%% t2_dp_comm=%s%% d2_dp_comm=%s%%\n", med("t2_tp_comm"), med("t2_dp_comm"), med("d2_dp_comm") }'
