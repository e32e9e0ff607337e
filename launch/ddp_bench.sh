#!/usr/bin/env bash
# ddp_bench.sh -- Strata data parallelism against PyTorch DDP, and its communication efficiency
# (issue 4). In one go on this machine, for the 10.8M-parameter model (L=6 H=6 C=384, context
# 256, byte vocabulary 256) and the same global batch:
#   1. Strata D=2:   mpirun -np 2 strata train --dp 2
#   2. PyTorch DDP:  gloo backend, 2 processes, 1 thread each (torch_ddp_bench.py)
#   3. two independent single-rank Strata runs side by side, each with half the batch
# and prints tokens/s of each, Strata / DDP, and the efficiency
#   D2 tokens/s / (sum of the two concurrent single-rank runs' tokens/s).
# Then (4.) the pipeline bubble: 1F1B on P=2 uniform stages (L=4 C=256, 2 layers each) with
# M = 2, 4, 8 micro-batches: measured idle share (time blocked receiving from a neighbour over
# step time, summed over ranks; steps.jsonl idle_share) against (P-1)/(M+P-1).
# Strata's tokens/s is taken from steps.jsonl over the steps after the first WARMUP. The three
# measurements are repeated REPEAT times, interleaved, and the best of each is reported (a
# shared machine's load only ever slows a run down).
# Usage: launch/ddp_bench.sh [STEPS (default 12)] [GLOBAL_BATCH (default 16)]
#   env STRATA_BUILD (default build), PYTHON (default /usr/bin/python3), BUCKET_MB (Strata's,
#   default 4), REPEAT (default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${STRATA_BUILD:-$ROOT/build}"
STRATA="$BUILD/bin/strata"
PY="${PYTHON:-/usr/bin/python3}"
STEPS="${1:-12}"; BATCH="${2:-16}"; WARMUP=2
MODEL=(--layers 6 --heads 6 --dim 384 --ctx 256)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --allow-run-as-root --bind-to none --mca btl self,vader,tcp
        --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
[ -x "$STRATA" ] || { echo "ddp_bench: build first ($STRATA missing)" >&2; exit 2; }
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
# tokens/s over the steps after the warm-up: sum(tokens) / sum(step_s) from steps.jsonl
tps() { awk -v w="$WARMUP" -v tok="$2" -F'"step_s": ' 'NR > w { split($2, a, /[,}]/); s += a[1]; n++ }
       END { if (s > 0) printf "%.0f", n * tok / s; else print 0 }' "$1"; }
COMMON=("${MODEL[@]}" --steps "$STEPS" --quiet --eval-batches 1 --warmup 5)

max() { [ "$1" -gt "$2" ] && echo "$1" || echo "$2"; }
D2=0; DDP=0; S1=0; S2=0
for rep in $(seq 1 "${REPEAT:-2}"); do
  echo "== [$rep] Strata D=2 (mpirun -np 2 strata train --dp 2 --batch $BATCH ${MODEL[*]})"
  rm -rf "$W/d2"
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${COMMON[@]}" --batch "$BATCH" --dp 2 \
    --bucket-mb "${BUCKET_MB:-4}" --out "$W/d2"
  x=$(tps "$W/d2/steps.jsonl" $((BATCH * 256)))
  echo "strata D=2: $x tokens/s"
  D2=$(max "$x" "$D2")

  echo "== [$rep] PyTorch DDP (gloo, 2 ranks x 1 thread, global batch $BATCH)"
  DDP_LINE=$("$PY" "$ROOT/launch/torch_ddp_bench.py" --world 2 --layers 6 --heads 6 --dim 384 --ctx 256 \
    --batch "$BATCH" --vocab 256 --steps "$STEPS" --warmup "$WARMUP")
  echo "$DDP_LINE"
  DDP=$(max "$(echo "$DDP_LINE" | sed -E 's/.* tokens\/s=([0-9]+).*/\1/')" "$DDP")

  echo "== [$rep] two independent single-rank Strata runs side by side (batch $((BATCH / 2)) each)"
  rm -rf "$W/s1" "$W/s2"
  "$STRATA" train "${COMMON[@]}" --batch $((BATCH / 2)) --out "$W/s1" --seed 1 &
  P1=$!
  "$STRATA" train "${COMMON[@]}" --batch $((BATCH / 2)) --out "$W/s2" --seed 2 &
  P2=$!
  wait $P1; wait $P2
  a=$(tps "$W/s1/steps.jsonl" $((BATCH / 2 * 256)))
  b=$(tps "$W/s2/steps.jsonl" $((BATCH / 2 * 256)))
  echo "strata single-rank x2 concurrent: $a + $b tokens/s"
  if [ $((a + b)) -gt $((S1 + S2)) ]; then S1=$a; S2=$b; fi
done

echo "== 1F1B pipeline bubble, P=2 (mpirun -np 2 strata train --pp 2 --schedule 1f1b --microbatches M)"
BUB=()
for M in 2 4 8; do
  rm -rf "$W/bubble$M"
  "${MPIRUN[@]}" -np 2 "$STRATA" train --pp 2 --microbatches "$M" --schedule 1f1b --layers 4 --dim 256 \
    --heads 4 --ctx 128 --batch 32 --steps "$STEPS" --quiet --eval-batches 1 --out "$W/bubble$M"
  BUB+=("$(awk -v w="$WARMUP" -v M="$M" -F'"idle_share": ' 'NR > w { split($2, a, /[,}]/); s += a[1]; n++ }
    END { printf "RESULT 1f1b P=2 M=%d idle=%.1f%% theory=%.1f%%", M, 100 * s / n, 100 / (M + 1) }' "$W/bubble$M/steps.jsonl")")
done

awk -v d2="$D2" -v ddp="$DDP" -v s1="$S1" -v s2="$S2" 'BEGIN {
  printf "\nRESULT strata_d2=%d torch_ddp=%d speedup_vs_ddp=%.2fx (target >= 1.2x)\n", d2, ddp, d2 / ddp;
  printf "RESULT single_concurrent=%d+%d efficiency=%.1f%% (target >= 97%%)\n", s1, s2, 100 * d2 / (s1 + s2) }'
printf '%s\n' "${BUB[@]}"
