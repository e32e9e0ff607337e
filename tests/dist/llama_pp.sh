#!/usr/bin/env bash
# Pipeline parallelism of `strata train --arch llama` (train_dist.c: Llama stages of
# llama_create_range driven by pipeline.c through stage.h), on a tiny Llama (4 layers, dim 64,
# 4 heads, 2 kv heads, ctx 32, batch 8 in 2 micro-batches). Usage: llama_pp.sh STRATA CASE
#   equiv   --pp 2 (GPipe), --pp 3 (1F1B, odd), --pp 2 --dp 2 --zero 1 and --pp 2 --dp 2 with
#           --bucket-mb 0.02 (each 49K-float layer its own bucket, all-reduced during backward;
#           the trace shows a bucket started before the last backward ended) under mpirun: every
#           step's loss within 1e-4 relative of the single-rank run over 20 steps (a pipeline
#           stage runs the whole model's float operations, so P x 1 is in fact bit-identical;
#           the data-parallel average adds float summation-order differences), the validation
#           losses of --eval-every 10 within 1e-6
#   resume  a P = 2 checkpoint of step 6 resumed on one rank, and a one-rank checkpoint resumed
#           at P = 3, continue exactly as the uninterrupted runs (diff of the printed losses:
#           the same operations on the same restored weights and moments, no reduction)
#   ckpt    the P = 2 checkpoint is a LlamaForCausalLM directory (config.json, per-stage
#           safetensors and their index naming each of the 39 tensors once) that `strata eval` on
#           one rank scores exactly as the one-rank run's checkpoint and, with /usr/bin/python3's
#           torch, tests/ckpt/hf_llama_eval.py (Hugging Face's sharded-index reading) within 1e-4
#           relative, as ckpt_hf_llama_eval does
set -euo pipefail
STRATA="$1"; CASE="$2"
source "$(dirname "${BASH_SOURCE[0]}")/llama_common.sh"
LLAMA=(--arch llama --layers 4 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --batch 8 --microbatches 2
       --quiet --eval-tokens 256 --lr 0.01 --warmup 2)

case "$CASE" in
equiv)
  "$STRATA" train "${LLAMA[@]}" --steps 20 --eval-every 10 --out "$W/one"
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${LLAMA[@]}" --steps 20 --eval-every 10 --pp 2 --schedule gpipe --out "$W/p2"
  "${MPIRUN[@]}" -np 3 "$STRATA" train "${LLAMA[@]}" --steps 20 --eval-every 10 --pp 3 --schedule 1f1b --out "$W/p3"
  "${MPIRUN[@]}" -np 4 "$STRATA" train "${LLAMA[@]}" --steps 20 --eval-every 10 --pp 2 --dp 2 --zero 1 --out "$W/p2d2"
  "${MPIRUN[@]}" -np 4 "$STRATA" train "${LLAMA[@]}" --steps 20 --eval-every 10 --pp 2 --dp 2 --bucket-mb 0.02 --out "$W/buckets"
  losses "$W/one/steps.jsonl" > "$W/one.txt"
  vals "$W/one/val.jsonl" > "$W/one.val"
  [ "$(wc -l < "$W/one.val")" -eq 2 ] || fail "one rank: $(wc -l < "$W/one.val") validation records, expected 2"
  for r in p2 p3 p2d2 buckets; do
    losses "$W/$r/steps.jsonl" > "$W/$r.txt"
    [ "$(wc -l < "$W/$r.txt")" -eq 20 ] || fail "$r: $(wc -l < "$W/$r.txt") steps recorded, expected 20"
    close "$W/$r.txt" "$W/one.txt" 1e-4 || fail "$r: losses differ from one rank beyond 1e-4"
    vals "$W/$r/val.jsonl" > "$W/$r.val"
    paste "$W/$r.val" "$W/one.val" | awk '{ d = $1 - $2; if (!(d < 1e-6 && d > -1e-6)) bad = 1 }
      END { exit bad || NR != 2 }' || fail "$r: validation losses differ: $(paste "$W/$r.val" "$W/one.val")"
  done
  "${DIST_TOOL:?}" trace "$W/buckets/trace.json" 4 overlap || fail "no bucket all-reduce overlapped backward"
  grep -q '"pp": 3' "$W/p3/report.json" && grep -q '"arch": "llama"' "$W/p3/report.json" \
    && grep -q '"params": 229952' "$W/p3/report.json" || fail "report.json lacks the layout: $(cat "$W/p3/report.json")"
  ;;
resume)
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${LLAMA[@]}" --steps 12 --ckpt-every 6 --pp 2 --out "$W/f2"
  "$STRATA" train --quiet --resume "$W/f2/ckpt-00000006" --out "$W/r1"
  diff <(losses "$W/f2/steps.jsonl" | tail -6) <(losses "$W/r1/steps.jsonl") || fail "P = 2 -> P = 1 resume differs"
  "$STRATA" train "${LLAMA[@]}" --steps 12 --ckpt-every 6 --out "$W/f1"
  "${MPIRUN[@]}" -np 3 "$STRATA" train --quiet --arch llama --pp 3 --resume "$W/f1/ckpt-00000006" --out "$W/r3"
  diff <(losses "$W/f1/steps.jsonl" | tail -6) <(losses "$W/r3/steps.jsonl") || fail "P = 1 -> P = 3 resume differs"
  ;;
ckpt)
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${LLAMA[@]}" --steps 4 --pp 2 --out "$W/f2"
  "$STRATA" train "${LLAMA[@]}" --steps 4 --out "$W/f1"
  C="$W/f2/ckpt-00000004"
  grep -q '"model_type": "llama"' "$C/config.json" && grep -q LlamaForCausalLM "$C/config.json" \
    || fail "the P = 2 checkpoint's config.json is not a LlamaConfig: $(cat "$C/config.json")"
  [ -f "$C/model-00001-of-00002.safetensors" ] && [ -f "$C/model-00002-of-00002.safetensors" ] \
    || fail "the P = 2 checkpoint lacks a stage's weights: $(ls "$C")"
  n=$(grep -c '"model\.\|"lm_head\.' "$C/model.safetensors.index.json")
  [ "$n" -eq 39 ] || fail "the index maps $n tensors, expected 39 (embed, 4 x 9 layer tensors, norm, lm_head)"
  for t in model.embed_tokens.weight model.layers.3.mlp.down_proj.weight model.norm.weight lm_head.weight; do
    [ "$(grep -c "\"$t\"" "$C/model.safetensors.index.json")" -eq 1 ] || fail "the index does not name $t once"
  done
  e2=$("$STRATA" eval --checkpoint "$C" --tokens 1024 --json)
  e1=$("$STRATA" eval --checkpoint "$W/f1/ckpt-00000004" --tokens 1024 --json)
  [ "$e1" = "$e2" ] || fail "strata eval of the P = 2 checkpoint ($e2) differs from the one-rank one ($e1)"
  # a Hugging Face-convention reader of the sharded directory (index -> shards) gives the same loss
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    st=$("$STRATA" eval --checkpoint "$C" --split train --tokens 512 --seq-len 32 --json | sed -E 's/.*"loss": ([0-9.e-]+).*/\1/')
    hf=$(/usr/bin/python3 "${STRATA_SOURCE_DIR:?}/tests/ckpt/hf_llama_eval.py" "$C" "$STRATA_SOURCE_DIR/data/fortunes.txt" 32 16) \
      || fail "hf_llama_eval.py cannot read the P = 2 checkpoint: $hf"
    awk -v a="$st" -v b="$hf" 'BEGIN { d = (a - b) / b; exit !(d < 1e-4 && d > -1e-4) }' \
      || fail "strata eval $st and the Hugging Face reading $hf of the P = 2 checkpoint differ beyond 1e-4"
  else
    echo "note: /usr/bin/python3 has no torch; the Hugging Face reading of the P = 2 checkpoint is not checked"
  fi
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "llama_pp $CASE: ok"
