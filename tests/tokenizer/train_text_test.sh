#!/bin/bash
# `strata train --data FILE.txt --tokenizer gpt2` trains on exactly the tokens of the shard
# `strata tokenize --in FILE.txt` writes (registered in tests/tokenizer.cmake).
# usage: train_text_test.sh STRATA_BIN SOURCE_DIR WORK_DIR MPIRUN_ARGS...
#   - on 1 rank and on 2 (--dp 2): every step's loss, the validation loss and the held-out token
#     count are identical for the .txt and the shard (the shard has no _val.bin, so both hold
#     out the last 10% of the tokens), and the log names the tokenizer;
#   - a BPE checkpoint resumed on the .txt without --tokenizer encodes it with the checkpoint's
#     tokenizer: its steps 4-5 equal the uninterrupted run's;
#   - `strata eval` of that checkpoint on the .txt scores train's validation loss (1e-6: the
#     same set through the same forward pass, one rank);
#   - a --tokenizer directory without vocabulary files exits 2 naming it.
# Exit 77 (skipped) without jq.
set -u
S=$1; SRC=$2; W=$3; shift 3; MPI=("$@")
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$W" && mkdir -p "$W"
head -c 120000 "$SRC/data/fortunes.txt" > "$W/text.txt"
"$S" tokenize --in "$W/text.txt" --out "$W/shard" > /dev/null 2>&1 || fail "tokenize"
MODEL=(--layers 1 --heads 2 --dim 32 --ctx 32 --batch 4 --warmup 1 --eval-tokens 2048 --seed 7)
losses() { jq -c '.loss' "$1/steps.jsonl" | tr '\n' ' '; jq -c '[.val_loss, .val_tokens]' "$1/report.json"; }

for np in 1 2; do
  run=(); [ $np = 2 ] && run=("${MPI[@]}" -np 2)
  dp=(); [ $np = 2 ] && dp=(--dp 2)
  "${run[@]}" "$S" train --data "$W/text.txt" --tokenizer gpt2 "${MODEL[@]}" "${dp[@]}" --steps 5 --out "$W/txt$np" \
    > "$W/txt$np.log" 2>&1 || fail "np $np: train on the .txt: $(tail -3 "$W/txt$np.log")"
  "${run[@]}" "$S" train --data "$W/shard_train.bin" "${MODEL[@]}" "${dp[@]}" --steps 5 --out "$W/bin$np" \
    > "$W/bin$np.log" 2>&1 || fail "np $np: train on the shard: $(tail -3 "$W/bin$np.log")"
  grep -q "text.txt is text, encoded with GPT-2's shipped BPE tokenizer" "$W/txt$np.log" \
    || fail "np $np: the log does not name the tokenizer: $(head -3 "$W/txt$np.log")"
  [ "$(grep -c 'encoded with' "$W/txt$np.log")" = 1 ] || fail "np $np: the tokenizer line is not printed once"
  A=$(losses "$W/txt$np"); B=$(losses "$W/bin$np")
  [ "$A" = "$B" ] || fail "np $np: .txt losses '$A', shard losses '$B'"
  jq -e '.val_tokens > 0 and (.final_loss | type) == "number"' "$W/txt$np/report.json" > /dev/null \
    || fail "np $np: report.json: $(cat "$W/txt$np/report.json" | head -c 300)"
  echo "np $np: $A"
done

# resume a BPE checkpoint on the .txt: the checkpoint's tokenizer, the uninterrupted losses
"$S" train --data "$W/text.txt" --tokenizer gpt2 "${MODEL[@]}" --steps 5 --ckpt-every 3 --out "$W/res" > "$W/res.log" 2>&1 \
  || fail "train with a checkpoint at step 3: $(tail -3 "$W/res.log")"
"$S" train --data "$W/text.txt" --resume "$W/res/ckpt-00000003" --out "$W/res2" > "$W/res2.log" 2>&1 \
  || fail "resume: $(tail -3 "$W/res2.log")"
grep -q "encoded with the tokenizer of checkpoint .*ckpt-00000003" "$W/res2.log" \
  || fail "the resumed run does not use the checkpoint's tokenizer: $(head -5 "$W/res2.log")"
A=$(jq -c '.loss' "$W/res2/steps.jsonl" | tail -2 | tr '\n' ' '); B=$(jq -c '.loss' "$W/bin1/steps.jsonl" | tail -2 | tr '\n' ' ')
[ "$A" = "$B" ] || fail "resumed steps 4-5 '$A', uninterrupted '$B'"

# eval reads the .txt through the checkpoint's tokenizer: train's validation loss again
"$S" eval --checkpoint "$W/txt1/ckpt-00000005" --data "$W/text.txt" --tokens 2048 --json > "$W/eval.json" 2> "$W/eval.log" \
  || fail "eval: $(cat "$W/eval.log")"
grep -q "encoded with the tokenizer of checkpoint" "$W/eval.log" || fail "eval does not name the tokenizer: $(cat "$W/eval.log")"
jq -e -s '(.[0].loss - .[1].val_loss | fabs) < 1e-6 and .[0].tokens == .[1].val_tokens' "$W/eval.json" "$W/txt1/report.json" \
  > /dev/null || fail "eval $(cat "$W/eval.json") differs from train's validation $(jq -c '[.val_loss, .val_tokens]' "$W/txt1/report.json")"

mkdir -p "$W/empty"
"$S" train --data "$W/text.txt" --tokenizer "$W/empty" --steps 1 > "$W/bad.log" 2>&1
rc=$?
[ $rc = 2 ] && grep -q "empty" "$W/bad.log" || fail "--tokenizer of an empty directory: exit $rc: $(cat "$W/bad.log")"
echo "train_text_bpe: ok"
