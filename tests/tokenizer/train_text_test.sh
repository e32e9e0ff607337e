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
#   - a tokenizer directory of its own travels in every checkpoint, through infer and a resume;
#     with a token shard of another vocabulary it exits 2;
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

# a tokenizer of its own (GPT-2's 256 byte tokens, its first 100 merges, <|endoftext|> = 356):
# every checkpoint carries it (byte-identical files), infer prints text through it, a resume
# without --tokenizer keeps it, and a shard of GPT-2 ids with it exits 2 (vocabularies differ)
mkdir -p "$W/tok"
head -n 101 "$SRC/data/gpt2/vocab.bpe" > "$W/tok/merges.txt"
tail -n +2 "$W/tok/merges.txt" | awk '{print $1 $2}' | jq -R . | jq -s . > "$W/merged.json"
jq -c --slurpfile m "$W/merged.json" 'with_entries(select(.value < 256)) +
  ($m[0] | to_entries | map({key: .value, value: (256 + .key)}) | from_entries) + {"<|endoftext|>": 356}' \
  "$SRC/data/gpt2/encoder.json" > "$W/tok/vocab.json" || fail "making the small tokenizer"
"$S" train --data "$W/text.txt" --tokenizer "$W/tok" "${MODEL[@]}" --steps 4 --ckpt-every 2 --out "$W/own" \
  > "$W/own.log" 2>&1 || fail "train --tokenizer DIR: $(tail -3 "$W/own.log")"
for f in vocab.json merges.txt; do
  cmp -s "$W/tok/$f" "$W/own/ckpt-00000004/$f" || fail "the checkpoint does not carry the tokenizer's $f"
done
jq -e '.vocab_size == 357' "$W/own/ckpt-00000004/config.json" > /dev/null || fail "vocab_size is not the tokenizer's 357"
jq -e '.tokenizer_class == "GPT2Tokenizer"' "$W/own/ckpt-00000004/tokenizer_config.json" > /dev/null \
  || fail "no GPT2Tokenizer tokenizer_config.json in the checkpoint"
"$S" infer --checkpoint "$W/own/ckpt-00000004" --prompt "The cat" --max-tokens 4 --json > "$W/own.json" 2> "$W/own_infer.log" \
  || fail "infer on the carried tokenizer: $(cat "$W/own_infer.log")"
jq -e '.prompt_tokens > 0 and .prompt_tokens < 7 and (.token_ids | length) == 4 and all(.token_ids[]; . < 357)
       and (.text | type) == "string" and (.text | length) > 0' "$W/own.json" > /dev/null \
  || fail "infer did not take and return text through the carried tokenizer: $(cat "$W/own.json")"
"$S" train --data "$W/text.txt" --resume "$W/own/ckpt-00000002" --out "$W/own2" > "$W/own2.log" 2>&1 \
  || fail "resume with the carried tokenizer: $(tail -3 "$W/own2.log")"
cmp -s "$W/tok/merges.txt" "$W/own2/ckpt-00000004/merges.txt" || fail "the resumed run's checkpoint lost the tokenizer"
A=$(jq -c '.loss' "$W/own2/steps.jsonl" | tr '\n' ' '); B=$(jq -c '.loss' "$W/own/steps.jsonl" | tail -2 | tr '\n' ' ')
[ "$A" = "$B" ] || fail "resumed with the carried tokenizer: steps 3-4 '$A', uninterrupted '$B'"
"$S" train --data "$W/shard_train.bin" --tokenizer "$W/tok" "${MODEL[@]}" --steps 1 --out "$W/ownbin" > "$W/ownbin.log" 2>&1
rc=$?
[ $rc = 2 ] && grep -q "tokenizer has 357 tokens but the model's vocabulary is 50257" "$W/ownbin.log" \
  || fail "a GPT-2 shard with a 357-token tokenizer: exit $rc: $(cat "$W/ownbin.log")"

mkdir -p "$W/empty"
"$S" train --data "$W/text.txt" --tokenizer "$W/empty" --steps 1 > "$W/bad.log" 2>&1
rc=$?
[ $rc = 2 ] && grep -q "empty" "$W/bad.log" || fail "--tokenizer of an empty directory: exit $rc: $(cat "$W/bad.log")"
echo "train_text_bpe: ok"
