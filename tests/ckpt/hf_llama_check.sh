#!/bin/bash
# A Llama checkpoint means the same thing to a Hugging Face program: hf_llama_eval.py reads it by
# LlamaForCausalLM tensor names with Hugging Face's conventions (PyTorch, float64) and scores the
# same sequences as `strata eval --split train`; the two losses agree within 1e-4 relative (the
# bound the model's users need; measured about 1e-9). A reader that rotates adjacent pairs
# (GPT-J's RoPE convention) must disagree by more than that, so the check can fail.
# usage: hf_llama_check.sh STRATA_BIN SOURCE_DIR WORK_DIR. Exit 77 (skipped) without Debian's
# python3-torch.
set -u
S=$1; SRC=$2; W=$3
PY=/usr/bin/python3
"$PY" -c 'import torch' 2>/dev/null || { echo "SKIP: $PY has no torch (Debian python3-torch)"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$W" && mkdir -p "$W"
"$S" train --arch llama --layers 2 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --steps 40 --lr 1e-2 --ckpt-every 40 \
  --out "$W/run" > "$W/train.log" 2>&1 || fail "train: $(tail -3 "$W/train.log")"
ck="$W/run/ckpt-00000040"
strata=$("$S" eval --checkpoint "$ck" --split train --tokens 512 --seq-len 32 --json | sed -E 's/.*"loss": ([0-9.e-]+).*/\1/')
hf=$("$PY" "$SRC/tests/ckpt/hf_llama_eval.py" "$ck" "$SRC/data/fortunes.txt" 32 16) || fail "hf_llama_eval.py: $hf"
gptj=$("$PY" "$SRC/tests/ckpt/hf_llama_eval.py" "$ck" "$SRC/data/fortunes.txt" 32 16 --interleaved-rope) || fail "$gptj"
echo "strata eval $strata, Hugging Face reading $hf, GPT-J RoPE reading $gptj"
awk -v a="$strata" -v b="$hf" 'BEGIN { d = (a - b) / b; exit !(d < 1e-4 && d > -1e-4) }' \
  || fail "strata eval $strata and the Hugging Face reading $hf differ by more than 1e-4 relative"
awk -v a="$strata" -v b="$gptj" 'BEGIN { d = (a - b) / b; exit !(d > 1e-4 || d < -1e-4) }' \
  || fail "the GPT-J RoPE reading $gptj agrees with $strata: the check cannot tell the conventions apart"
echo "hf_llama_check: ok"
