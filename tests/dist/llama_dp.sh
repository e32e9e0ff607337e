#!/usr/bin/env bash
# Data parallelism of `strata train --arch llama` (train.c: replicas of the whole model, the flat
# gradient buffer averaged with one all-reduce, ZeRO-1 over the AdamW moments), on a tiny Llama
# (dim 64, 2 layers, 4 heads, 2 kv heads, ctx 32, batch 12). Usage: llama_dp.sh STRATA CASE
#   equiv   --dp 2 (2 micro-batches), --dp 3 and --dp 3 --zero 1 under mpirun: every step's loss
#           within 1e-4 relative of the single-rank run over 20 steps (float summation order of
#           the all-reduce only), the validation loss within 1e-6, ZeRO-1 bit-identical to
#           --dp 3 without it (AdamW is elementwise); report.json records the layout
#   resume  a --dp 3 --zero 1 run resumed from its step-6 checkpoint on the same layout continues
#           bit-identically; the same checkpoint resumed on 2 replicas without ZeRO and on one
#           rank continues within 1e-4 of the uninterrupted run (the moments are whole in the
#           checkpoint), also without --arch on the distributed path; tensor parallelism and a
#           --dp that is not the rank count exit 2 with one sentence
set -euo pipefail
STRATA="$1"; CASE="$2"
source "$(dirname "${BASH_SOURCE[0]}")/llama_common.sh"
LLAMA=(--arch llama --layers 2 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --batch 12 --quiet
       --eval-tokens 256 --lr 0.01 --warmup 2)

case "$CASE" in
equiv)
  "$STRATA" train "${LLAMA[@]}" --steps 20 --out "$W/one"
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${LLAMA[@]}" --steps 20 --dp 2 --microbatches 2 --out "$W/d2"
  "${MPIRUN[@]}" -np 3 "$STRATA" train "${LLAMA[@]}" --steps 20 --dp 3 --out "$W/d3"
  "${MPIRUN[@]}" -np 3 "$STRATA" train "${LLAMA[@]}" --steps 20 --dp 3 --zero 1 --out "$W/z3"
  losses "$W/one/steps.jsonl" > "$W/one.txt"
  for r in d2 d3 z3; do
    losses "$W/$r/steps.jsonl" > "$W/$r.txt"
    [ "$(wc -l < "$W/$r.txt")" -eq 20 ] || fail "$r: $(wc -l < "$W/$r.txt") steps recorded, expected 20"
    close "$W/$r.txt" "$W/one.txt" 1e-4 || fail "$r: losses differ from one rank beyond 1e-4"
    awk -v a="$(vals "$W/$r/report.json")" -v b="$(vals "$W/one/report.json")" \
      'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }' || fail "$r: validation loss differs"
  done
  diff "$W/d3.txt" "$W/z3.txt" || fail "ZeRO-1 changed the losses of --dp 3"
  cmp "$W/d3/ckpt-00000020/model.safetensors" "$W/z3/ckpt-00000020/model.safetensors" || fail "ZeRO-1 changed the weights"
  cmp "$W/d3/ckpt-00000020/optimizer.safetensors" "$W/z3/ckpt-00000020/optimizer.safetensors" || fail "ZeRO-1 changed the moments"
  grep -q '"dp": 3' "$W/z3/report.json" && grep -q '"zero": 1' "$W/z3/report.json" && grep -q '"world_size": 3' "$W/z3/report.json" \
    || fail "report.json lacks the layout: $(cat "$W/z3/report.json")"
  ;;
resume)
  "${MPIRUN[@]}" -np 3 "$STRATA" train "${LLAMA[@]}" --steps 12 --ckpt-every 6 --dp 3 --zero 1 --out "$W/full"
  "${MPIRUN[@]}" -np 3 "$STRATA" train --quiet --arch llama --dp 3 --zero 1 --resume "$W/full/ckpt-00000006" --out "$W/same"
  diff <(losses "$W/full/steps.jsonl" | tail -6) <(losses "$W/same/steps.jsonl") || fail "same-layout resume differs"
  cmp "$W/full/ckpt-00000012/optimizer.safetensors" "$W/same/ckpt-00000012/optimizer.safetensors" || fail "resumed moments differ"
  "${MPIRUN[@]}" -np 2 "$STRATA" train --quiet --arch llama --dp 2 --resume "$W/full/ckpt-00000006" --out "$W/two"
  "$STRATA" train --quiet --resume "$W/full/ckpt-00000006" --out "$W/one"
  # without --arch, under mpirun: the family comes from the checkpoint (train_dist.c's Llama stages)
  "${MPIRUN[@]}" -np 2 "$STRATA" train --quiet --dp 2 --resume "$W/full/ckpt-00000006" --out "$W/dist"
  losses "$W/full/steps.jsonl" | tail -6 > "$W/ref.txt"
  for r in two one dist; do
    losses "$W/$r/steps.jsonl" > "$W/$r.txt"
    close "$W/$r.txt" "$W/ref.txt" 1e-4 || fail "resume on $r: losses differ beyond 1e-4"
  done
  expect_fail() { # expect_fail PATTERN ARGS...: exit code 2 and PATTERN in the output
    local pat="$1"; shift
    set +e; out=$("$@" 2>&1); code=$?; set -e
    [ "$code" -eq 2 ] || fail "'$*' exited $code, expected 2 (output: $out)"
    grep -q -- "$pat" <<<"$out" || fail "'$*' message lacks '$pat': $out"
  }
  expect_fail "--sequence-parallel is not supported with --arch llama" "${MPIRUN[@]}" -np 2 "$STRATA" train "${LLAMA[@]}" --tp 2 --sequence-parallel --out "$W/x"
  expect_fail "--dp 3 needs mpirun -np 3 (the job's rank count is 2)" "${MPIRUN[@]}" -np 2 "$STRATA" train "${LLAMA[@]}" --dp 3 --out "$W/x"
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "llama_dp $CASE: ok"
