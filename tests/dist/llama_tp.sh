#!/usr/bin/env bash
# Tensor parallelism of `strata train --arch llama` (train_dist.c: Llama ranks of
# llama_create_range with tp_rank / tp_size, rank = (d*P + p)*T + t), on a tiny Llama (4 layers,
# dim 64, 4 heads, 2 kv heads, ffn 128, ctx 32, batch 8 in 2 micro-batches). Usage:
# llama_tp.sh STRATA CASE
#   equiv    --tp 2 and --tp 2 --pp 2 (1F1B) under mpirun: every step's loss within 1e-4
#            relative of the single-rank run over 20 steps (the row-parallel products and the
#            vocabulary-parallel loss sum T partial results: float summation order only), the
#            validation losses of --eval-every 10 within 1e-4 relative as well
#   dp       --tp 2 --dp 2 --zero 1 (4 ranks): the same
#   odd      --tp 2 --pp 3 (6 ranks, an odd stage count): the same
#   resume   a T = 2 checkpoint of step 6 (whole Hugging Face tensors, gathered over TP) resumed
#            on one rank, and a one-rank checkpoint resumed at T = 2 x P = 2, continue as the
#            uninterrupted runs (losses within 1e-4 relative: the restored weights and moments
#            are exact, the later steps differ only in summation order); the T = 2 checkpoint's
#            k_proj tensor has the whole (kv_heads * hs, dim) = (32, 64) shape
#   bad      --tp 4 with --kv-heads 2 exits 2 with one sentence naming both numbers and the fix
set -euo pipefail
STRATA="$1"; CASE="$2"
source "$(dirname "${BASH_SOURCE[0]}")/llama_common.sh"
LLAMA=(--arch llama --layers 4 --heads 4 --kv-heads 2 --dim 64 --ffn 128 --ctx 32 --batch 8 --microbatches 2
       --quiet --eval-tokens 256 --lr 0.01 --warmup 2)
# equal_to_one NAME NP FLAGS...: a 20-step run on NP ranks against the one-rank run
equal_to_one() {
  local name="$1" np="$2"; shift 2
  "${MPIRUN[@]}" -np "$np" "$STRATA" train "${LLAMA[@]}" --steps 20 --eval-every 10 "$@" --out "$W/$name"
  losses "$W/$name/steps.jsonl" > "$W/$name.txt"
  [ "$(wc -l < "$W/$name.txt")" -eq 20 ] || fail "$name: $(wc -l < "$W/$name.txt") steps recorded, expected 20"
  close "$W/$name.txt" "$W/one.txt" 1e-4 || fail "$name: losses differ from one rank beyond 1e-4"
  vals "$W/$name/val.jsonl" > "$W/$name.val"
  [ "$(wc -l < "$W/$name.val")" -eq 2 ] || fail "$name: $(wc -l < "$W/$name.val") validation records, expected 2"
  close "$W/$name.val" "$W/one.val" 1e-4 || fail "$name: validation losses differ from one rank beyond 1e-4"
  grep -q '"tp": 2' "$W/$name/report.json" && grep -q '"arch": "llama"' "$W/$name/report.json" \
    || fail "$name: report.json lacks the layout: $(cat "$W/$name/report.json")"
}
one() {
  "$STRATA" train "${LLAMA[@]}" --steps 20 --eval-every 10 --out "$W/one"
  losses "$W/one/steps.jsonl" > "$W/one.txt"
  vals "$W/one/val.jsonl" > "$W/one.val"
}

case "$CASE" in
equiv)
  one
  equal_to_one t2 2 --tp 2
  equal_to_one t2p2 4 --tp 2 --pp 2 --schedule 1f1b
  ;;
dp)
  one
  equal_to_one t2d2 4 --tp 2 --dp 2 --zero 1
  ;;
odd)
  one
  equal_to_one t2p3 6 --tp 2 --pp 3
  ;;
resume)
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${LLAMA[@]}" --steps 12 --ckpt-every 6 --tp 2 --out "$W/f2"
  C="$W/f2/ckpt-00000006"
  /usr/bin/python3 - "$C/model.safetensors" <<'EOF' || fail "the T = 2 checkpoint does not hold whole tensors"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
assert h["model.layers.0.self_attn.k_proj.weight"]["shape"] == [32, 64], h["model.layers.0.self_attn.k_proj.weight"]
assert h["model.layers.0.self_attn.o_proj.weight"]["shape"] == [64, 64]
assert h["lm_head.weight"]["shape"][1] == 64 and h["lm_head.weight"]["shape"][0] == h["model.embed_tokens.weight"]["shape"][0]
EOF
  "$STRATA" train --quiet --resume "$C" --out "$W/r1"
  close <(losses "$W/r1/steps.jsonl") <(losses "$W/f2/steps.jsonl" | tail -6) 1e-4 || fail "T = 2 -> T = 1 resume differs"
  "$STRATA" train "${LLAMA[@]}" --steps 12 --ckpt-every 6 --out "$W/f1"
  "${MPIRUN[@]}" -np 4 "$STRATA" train --quiet --arch llama --tp 2 --pp 2 --resume "$W/f1/ckpt-00000006" --out "$W/r4"
  close <(losses "$W/r4/steps.jsonl") <(losses "$W/f1/steps.jsonl" | tail -6) 1e-4 || fail "T = 1 -> T = 2 x P = 2 resume differs"
  [ "$(losses "$W/r4/steps.jsonl" | wc -l)" -eq 6 ] || fail "the T = 2 x P = 2 resume ran $(losses "$W/r4/steps.jsonl" | wc -l) steps, expected 6"
  ;;
bad)
  set +e; out=$("${MPIRUN[@]}" -np 4 "$STRATA" train "${LLAMA[@]}" --steps 2 --tp 4 --out "$W/x" 2>&1); code=$?; set -e
  [ "$code" -eq 2 ] || fail "--tp 4 --kv-heads 2 exited $code, expected 2 (output: $out)"
  grep -q -- "--tp 4 does not divide --kv-heads 2.*choose a --tp that divides 2" <<<"$out" \
    || fail "the refusal does not name the numbers and the fix: $out"
  [ ! -e "$W/x/steps.jsonl" ] || fail "a refused job trained"
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "llama_tp $CASE: ok"
