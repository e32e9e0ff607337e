#!/usr/bin/env bash
# ddp_bench.sh -- Strata data parallelism against PyTorch DDP, and its communication efficiency.
# In one go on this machine, for the same model (default the 10.8M-parameter L=6 H=6 C=384,
# context 256, byte vocabulary 256) and the same global batch, ROUNDS times, interleaved:
#   1. Strata D=2:   mpirun -np 2 strata train --dp 2
#   2. PyTorch DDP:  gloo backend, 2 processes, 1 thread each (torch_ddp_bench.py); skipped,
#                    with a line saying so, when /usr/bin/python3 cannot import torch
#                    (Debian package python3-torch)
#   3. two independent single-rank Strata runs side by side, each with half the batch
# and prints per round the tokens/s of each, Strata / DDP, and the communication efficiency
#   D2 tokens/s / (sum of the two concurrent single-rank runs' tokens/s),
# all three from the same round, so a ratio never mixes two states of the machine.
# Then the pipeline bubble: 1F1B on P=2 uniform stages (BUBBLE_MODEL, 2 layers each) with
# M = 2, 4, 8 micro-batches: measured idle share (time blocked receiving from a neighbour over
# step time, summed over ranks; steps.jsonl idle_share) against (P-1)/(M+P-1).
# Strata's tokens/s is the tokens per step over the median step time of steps.jsonl after the
# first WARMUP (2) steps (launch/lib/stats.sh). A load average above the core count is warned
# about at the start and before the results.
# Output: one line per measurement, machine-readable (launch/benchmarks.sh reads them):
#   ROUND r strata_d2=X torch_ddp=Y|none single=A+B speedup=S|none efficiency=E%
#   BUBBLE P=2 M=m idle=I% theory=T%
# then the medians over the rounds with their range (RESULT lines).
# Usage: launch/ddp_bench.sh [STEPS (default 12)] [GLOBAL_BATCH (default 16)]
#   env STRATA_BUILD (default build), PYTHON (default /usr/bin/python3), BUCKET_MB (Strata's,
#   default 4), ROUNDS (default 2; REPEAT is the older name), MODEL (model flags, shared by
#   Strata and PyTorch, default "--layers 6 --heads 6 --dim 384 --ctx 256"), BUBBLE_MODEL
#   (default "--layers 4 --dim 256 --heads 4 --ctx 128 --batch 32")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/lib/stats.sh"
BUILD="${STRATA_BUILD:-$ROOT/build}"
STRATA="$BUILD/bin/strata"
PY="${PYTHON:-/usr/bin/python3}"
STEPS="${1:-12}"; BATCH="${2:-16}"; WARMUP=2
ROUNDS="${ROUNDS:-${REPEAT:-2}}"
read -r -a MODEL <<< "${MODEL:---layers 6 --heads 6 --dim 384 --ctx 256}"
read -r -a BUBBLE_MODEL <<< "${BUBBLE_MODEL:---layers 4 --dim 256 --heads 4 --ctx 128 --batch 32}"
CTX="$(printf '%s\n' "${MODEL[@]}" | awk 'p { print; exit } $0 == "--ctx" { p = 1 }')"
[ -n "$CTX" ] || { echo "ddp_bench: MODEL must contain --ctx N" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --allow-run-as-root --bind-to none --mca btl self,vader,tcp
        --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
[ -x "$STRATA" ] || { echo "ddp_bench: build first ($STRATA missing)" >&2; exit 2; }
HAVE_TORCH=1
if ! "$PY" -c 'import torch' 2>/dev/null; then
  HAVE_TORCH=0
  echo "ddp_bench: PyTorch not installed ($PY cannot import torch; apt-get install python3-torch): the DDP comparison is skipped"
fi
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
tps() { strata_tps "$1" "$WARMUP" "$2" | awk '{ printf "%.0f", $1 }'; }
strata_load_warning
COMMON=("${MODEL[@]}" --steps "$STEPS" --quiet --eval-tokens 128 --warmup 5)

ROUND_LINES=()
for rep in $(seq 1 "$ROUNDS"); do
  echo "== [$rep] Strata D=2 (mpirun -np 2 strata train --dp 2 --batch $BATCH ${MODEL[*]})"
  rm -rf "$W/d2"
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${COMMON[@]}" --batch "$BATCH" --dp 2 \
    --bucket-mb "${BUCKET_MB:-4}" --out "$W/d2"
  d2=$(tps "$W/d2/steps.jsonl" $((BATCH * CTX)))
  echo "strata D=2: $d2 tokens/s"

  ddp=none
  if [ "$HAVE_TORCH" = 1 ]; then
    echo "== [$rep] PyTorch DDP (gloo, 2 ranks x 1 thread, global batch $BATCH)"
    line=$("$PY" "$ROOT/launch/torch_ddp_bench.py" --world 2 "${MODEL[@]}" \
      --batch "$BATCH" --vocab 256 --steps "$STEPS" --warmup "$WARMUP")
    echo "$line"
    ddp=$(echo "$line" | sed -E 's/.* tokens\/s=([0-9]+).*/\1/')
  fi

  echo "== [$rep] two independent single-rank Strata runs side by side (batch $((BATCH / 2)) each)"
  rm -rf "$W/s1" "$W/s2"
  "$STRATA" train "${COMMON[@]}" --batch $((BATCH / 2)) --out "$W/s1" --seed 1 &
  P1=$!
  "$STRATA" train "${COMMON[@]}" --batch $((BATCH / 2)) --out "$W/s2" --seed 2 &
  P2=$!
  wait $P1; wait $P2
  a=$(tps "$W/s1/steps.jsonl" $((BATCH / 2 * CTX)))
  b=$(tps "$W/s2/steps.jsonl" $((BATCH / 2 * CTX)))
  echo "strata single-rank x2 concurrent: $a + $b tokens/s"
  ROUND_LINES+=("$(awk -v r="$rep" -v d2="$d2" -v ddp="$ddp" -v a="$a" -v b="$b" 'BEGIN {
    sp = "none"; if (ddp != "none" && ddp > 0) sp = sprintf("%.2f", d2 / ddp);
    printf "ROUND %d strata_d2=%d torch_ddp=%s single=%d+%d speedup=%s efficiency=%.1f%%", r, d2, ddp, a, b, sp,
      (a + b > 0 ? 100 * d2 / (a + b) : 0) }')")
done

echo "== 1F1B pipeline bubble, P=2 (mpirun -np 2 strata train --pp 2 --schedule 1f1b --microbatches M ${BUBBLE_MODEL[*]})"
BUB=()
for M in 2 4 8; do
  rm -rf "$W/bubble$M"
  "${MPIRUN[@]}" -np 2 "$STRATA" train --pp 2 --microbatches "$M" --schedule 1f1b "${BUBBLE_MODEL[@]}" \
    --steps "$STEPS" --quiet --eval-tokens 128 --out "$W/bubble$M"
  BUB+=("$(awk -v w="$WARMUP" -v M="$M" -F'"idle_share": ' 'NR > w { split($2, a, /[,}]/); s += a[1]; n++ }
    END { printf "BUBBLE P=2 M=%d idle=%.1f%% theory=%.1f%%", M, (n ? 100 * s / n : 0), 100 / (M + 1) }' "$W/bubble$M/steps.jsonl")")
done

echo
printf '%s\n' "${ROUND_LINES[@]}" "${BUB[@]}"
# Medians over the rounds, with the range.
strata_load_warning
printf '%s\n' "${ROUND_LINES[@]}" | awk "$STRATA_MED_AWK"'
  { for (i = 3; i <= NF; i++) { split($i, kv, "="); x = kv[2]; sub(/%$/, "", x)
      if (kv[1] == "single") { split(x, ab, "+"); x = ab[1] + ab[2] }
      if (x != "none") v[kv[1], ++cnt[kv[1]]] = x + 0 } }
  END { printf "RESULT strata_d2=%s torch_ddp=%s speedup_vs_ddp=%s (goal >= 1.2)\n", med("strata_d2"), med("torch_ddp"), med("speedup")
        printf "RESULT single_concurrent_sum=%s efficiency=%s%% (goal >= 97%%)\n", med("single"), med("efficiency") }'
