#!/usr/bin/env bash
# `strata tokenize`: the shards it writes are llm.c's format (header 20240520, 1, count; uint16
# tokens; each document after <|endoftext|> 50256), hold exactly the ids of --ids, decode back to
# the text, split into train and validation by --val-fraction, and train with `strata train
# --data` (a tiny model of vocabulary 50257: the first loss is near ln(50257) = 10.82 and the
# loss falls); its checkpoint carries GPT-2's tokenizer files, and `infer` on it takes a text prompt
# and prints the decoding of the ids it generated. Bad input exits 2 with one sentence.
# Usage: tokenize_cli.sh STRATA SOURCE_DIR
set -uo pipefail
STRATA="$1"
SRC="$2"
W="$(mktemp -d /tmp/strata-tokenize.XXXXXX)"; trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# u16 TOKEN values of a shard, one per line
tokens() { od -A n -v -t u2 -j 1024 "$1" | tr -s ' ' '\n' | sed '/^$/d'; }
header() { od -A n -v -t d4 -N 12 "$1" | tr -s ' ' ' ' | sed 's/^ //'; }

# ---- a shard of one document, 10% held out
head -c 40000 "$SRC/data/fortunes.txt" > "$W/doc.txt"
printf 'Caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80 it'"'"'s   done.\n' >> "$W/doc.txt"
"$STRATA" tokenize --in "$W/doc.txt" --out "$W/t" --val-fraction 0.1 > "$W/out.txt" || fail "tokenize exited $?"
grep -q "MB/s" "$W/out.txt" || fail "no throughput line: $(cat "$W/out.txt")"
read -r magic version ntrain <<< "$(header "$W/t_train.bin")"
read -r vmagic vversion nval <<< "$(header "$W/t_val.bin")"
[ "$magic $version $vmagic $vversion" = "20240520 1 20240520 1" ] || fail "headers: $magic $version / $vmagic $vversion"
[ "$(stat -c %s "$W/t_train.bin")" -eq $((1024 + 2 * ntrain)) ] || fail "train shard size does not match its count $ntrain"
[ "$(stat -c %s "$W/t_val.bin")" -eq $((1024 + 2 * nval)) ] || fail "val shard size does not match its count $nval"
total=$((ntrain + nval))
[ "$nval" -eq $((total / 10)) ] || fail "val holds $nval of $total tokens, expected floor(0.1 * $total)"
{ tokens "$W/t_train.bin"; tokens "$W/t_val.bin"; } > "$W/shard_ids"
[ "$(head -1 "$W/shard_ids")" = 50256 ] || fail "the document does not start with <|endoftext|>"
[ "$(grep -c '^50256$' "$W/shard_ids")" = 1 ] || fail "one document but $(grep -c '^50256$' "$W/shard_ids") end-of-text tokens"
"$STRATA" tokenize --ids < "$W/doc.txt" | tr ' ' '\n' > "$W/ids" || fail "--ids exited $?"
tail -n +2 "$W/shard_ids" | cmp -s - "$W/ids" || fail "the shard's tokens differ from --ids of the same text"
tr '\n' ' ' < "$W/ids" | "$STRATA" tokenize --decode > "$W/back.txt" || fail "--decode exited $?"
cmp -s "$W/back.txt" "$W/doc.txt" || fail "--decode of --ids does not give the text back"

# ---- documents: files, and blocks between empty lines with --split-docs
printf 'a\n\nb\n\n\nc' > "$W/docs.txt"
printf 'd' > "$W/d.txt"
"$STRATA" tokenize --in "$W/docs.txt" --out "$W/s" --split-docs > /dev/null || fail "--split-docs exited $?"
got="$(tokens "$W/s_train.bin" | tr '\n' ' ')"
[ "$got" = "50256 64 50256 65 50256 66 " ] || fail "--split-docs gave '$got', expected 50256 64 50256 65 50256 66"
"$STRATA" tokenize --in "$W/docs.txt" "$W/d.txt" --out "$W/f" > /dev/null || fail "two files exited $?"
got="$(tokens "$W/f_train.bin" | tr '\n' ' ')"
[ "$got" = "50256 64 198 198 65 628 198 66 50256 67 " ] || fail "two files gave '$got'"
[ ! -e "$W/f_val.bin" ] || fail "a validation shard without --val-fraction"

# ---- bad input: exit 2 and one sentence
bad() { # WANT CMD... (stdin from $BAD_IN)
  local want="$1"; shift
  "$@" < "${BAD_IN:-/dev/null}" > "$W/o" 2> "$W/e"; local rc=$?
  [ "$rc" = 2 ] || fail "$* exited $rc, expected 2 ($(cat "$W/e"))"
  [ "$(wc -l < "$W/e")" = 1 ] || fail "$*: not one line: $(cat "$W/e")"
  grep -q -- "$want" "$W/e" || fail "$*: '$(cat "$W/e")' does not say '$want'"
}
mkdir -p "$W/empty" "$W/corrupt"
printf '{"a": 0,' > "$W/corrupt/encoder.json"; : > "$W/corrupt/vocab.bpe"
bad "is not a readable file" "$STRATA" tokenize --in "$W/missing.txt" --out "$W/x"
bad "holds none of tokenizer.json" "$STRATA" tokenize --in "$W/doc.txt" --out "$W/x" --tokenizer "$W/empty"
bad "is not valid JSON" "$STRATA" tokenize --ids --tokenizer "$W/corrupt"
bad "give one of" "$STRATA" tokenize --ids --decode
bad "need both" "$STRATA" tokenize --in "$W/doc.txt"
bad "val-fraction" "$STRATA" tokenize --in "$W/doc.txt" --out "$W/x" --val-fraction 0.9
echo "15496 50257" > "$W/bad_ids"; BAD_IN="$W/bad_ids" bad "not a token id" "$STRATA" tokenize --decode
echo "47249" > "$W/half"; BAD_IN="$W/half" bad "not valid UTF-8" "$STRATA" tokenize --decode
[ ! -e "$W/x_train.bin" ] || fail "a refused run left a shard"

# ---- the shard trains: vocabulary 50257, a tiny model, a few steps
"$STRATA" train --data "$W/t_train.bin" --layers 1 --heads 2 --dim 32 --ctx 32 --batch 4 --steps 12 \
  --lr 1e-2 --warmup 2 --out "$W/run" > "$W/train.txt" 2>&1 || fail "train on the shard exited $?: $(tail -3 "$W/train.txt")"
[ "$(wc -l < "$W/run/steps.jsonl")" = 12 ] || fail "steps.jsonl has $(wc -l < "$W/run/steps.jsonl") lines, expected 12"
first="$(head -1 "$W/run/steps.jsonl" | sed 's/.*"loss": *\([0-9.e+-]*\).*/\1/')"
last="$(tail -1 "$W/run/steps.jsonl" | sed 's/.*"loss": *\([0-9.e+-]*\).*/\1/')"
# initial weights give near-uniform logits: loss ln(50257) = 10.825 within 0.5
awk -v f="$first" -v l="$last" 'BEGIN { exit !(f > 10.3 && f < 11.3 && l < f - 0.5) }' ||
  fail "losses: first $first (expected 10.825 +- 0.5), last $last (expected below first - 0.5)"

# ---- the checkpoint carries GPT-2's tokenizer, and infer on it takes and prints text (the
# decoding of the generated ids)
ck="$(ls -d "$W/run"/ckpt-* | tail -1)"
[ -d "$ck" ] || fail "no checkpoint in $W/run"
cmp -s "$ck/vocab.json" "$SRC/data/gpt2/encoder.json" || fail "the checkpoint's vocab.json is not GPT-2's encoder.json"
cmp -s "$ck/merges.txt" "$SRC/data/gpt2/vocab.bpe" || fail "the checkpoint's merges.txt is not GPT-2's vocab.bpe"
grep -q '"tokenizer_class": "GPT2Tokenizer"' "$ck/tokenizer_config.json" || fail "tokenizer_config.json: $(cat "$ck/tokenizer_config.json")"
gen() { "$STRATA" infer --checkpoint "$ck" --prompt "Hello world, it's" --max-tokens 8 --temperature 0 "$@"; }
gen --json > "$W/gen.json" || fail "infer --json on the BPE checkpoint exited $?"
grep -q '"prompt_tokens": 5,' "$W/gen.json" || fail "the prompt is not 5 BPE tokens: $(cat "$W/gen.json")"
sed 's/.*"token_ids": \[\([0-9, ]*\)\].*/\1/' "$W/gen.json" | tr -d ',' > "$W/gen_ids"
gen > "$W/gen.txt" || fail "infer on the BPE checkpoint exited $?"
"$STRATA" tokenize --decode < "$W/gen_ids" > "$W/gen_decoded" || fail "generated ids do not decode: $(cat "$W/gen_ids")"
{ cat "$W/gen_decoded"; echo; } > "$W/gen_want"
cmp -s "$W/gen.txt" "$W/gen_want" || fail "infer printed '$(cat "$W/gen.txt")', the ids $(cat "$W/gen_ids") decode to '$(cat "$W/gen_decoded")'"
printf '{"a": 1}' > "$ck/vocab.json"
"$STRATA" infer --checkpoint "$ck" --prompt "Hi" --max-tokens 2 > /dev/null 2> "$W/e"; rc=$?
[ "$rc" = 2 ] && grep -q "vocab.json' is not a JSON object\|vocab.json'.*fewer than the 256" "$W/e" || fail "a broken vocab.json in the checkpoint: exit $rc, $(cat "$W/e")"
echo "tokenize: shards, ids, decode, documents, bad input, training on a shard and infer on it: ok (loss $first -> $last; generated ids $(cat "$W/gen_ids"))"
