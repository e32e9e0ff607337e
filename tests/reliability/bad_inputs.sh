#!/usr/bin/env bash
# Bad input to the real binary: every case must exit 2, print a message naming the
# problem (and how to fix it), and leave an existing run directory untouched: every failing
# command below points --out at a finished run, whose files are checksummed before and after.
# Usage: bad_inputs.sh STRATA           ($REL_MPIRUN: the mpirun line, for multi-rank cases)
# Parser-level safetensors / protobuf / token-shard / HTTP cases are unit-tested and fuzzed
# elsewhere (ckpt_safetensors, ckpt_proto, data_loader, http_request_parse, serve_*); here a
# damaged checkpoint file is caught first by its XXH64 recorded in train_state.pb.
set -euo pipefail
STRATA="$1"
read -r -a MPIRUN <<< "${REL_MPIRUN:?REL_MPIRUN must hold the mpirun command line}"
W="$(mktemp -d /tmp/strata-bad.XXXXXX)"; trap 'rm -rf "$W"' EXIT
T=(--layers 2 --heads 2 --dim 32 --ctx 16 --batch 4 --quiet)
fail() { echo "FAIL: $*" >&2; exit 1; }
n=0
# bad PATTERN CMD...: exit code 2 and PATTERN (grep -E) in the output
bad() {
  local pat="$1"; shift
  local out code=0
  out=$(timeout -k 5 120 "$@" 2>&1) || code=$?
  [ "$code" -eq "${WANT:-2}" ] || fail "'$*' exited $code, expected 2; output: $out"
  grep -Eq -- "$pat" <<<"$out" || fail "'$*': message lacks /$pat/: $out"
  echo "ok: $(echo "$out" | grep -m1 error)"
  n=$((n + 1))
}
MPI2=("${MPIRUN[@]}" -np 2 "$STRATA")

"$STRATA" train "${T[@]}" --steps 2 --out "$W/good"
G="$W/good/ckpt-00000002"
snap() { (cd "$W/good" && find . -type f | sort | xargs md5sum); }
snap > "$W/before.md5"

# ---- flags and layouts
bad "unknown flag '--bogus'.*--help" "$STRATA" train --out "$W/good" --bogus
bad "unknown command 'trian'" "$STRATA" trian
bad "--steps must be an integer in .*, got 'abc'" "$STRATA" train --steps=abc --out "$W/good"
bad "needs a value" "$STRATA" train --out "$W/good" --steps
bad "--steps must be an integer in \[1, 1000000000\], got '-3'" "$STRATA" train --steps -3 --out "$W/good"
bad "1 ranks but --tp 1 x --pp 2 x --dp 1 = 2; launch T x P x D ranks" "$STRATA" train "${T[@]}" --pp 2 --out "$W/good"
bad "2 ranks but --tp 1 x --pp 2 x --dp 2 = 4" "${MPI2[@]}" train "${T[@]}" --pp 2 --dp 2 --out "$W/good"
bad "more stages than the model's 1 layers.*use --pp <= 1" "${MPI2[@]}" train --layers 1 --heads 2 --dim 32 --ctx 16 --batch 4 --pp 2 --out "$W/good"
bad "not divisible by heads = 3: choose dim a multiple of heads" "$STRATA" train --layers 2 --heads 3 --dim 32 --out "$W/good"
bad "--batch 6 is not divisible by --dp 2 x --microbatches 2 = 4; choose a batch" "${MPI2[@]}" train "${T[@]}" --batch 6 --dp 2 --microbatches 2 --out "$W/good"

# ---- data files
bad "cannot open: No such file.*check the path given with --data" "$STRATA" train "${T[@]}" --data "$W/nope.txt" --out "$W/good"
: > "$W/empty.txt"
bad "file is empty.*pass a text file or a token shard" "$STRATA" train "${T[@]}" --data "$W/empty.txt" --out "$W/good"
hdr() { # hdr MAGIC VERSION COUNT: a 1024-byte llm.c shard header (little-endian int32s)
  local v; for v in "$@"; do printf "%08x" "$v" | sed -E 's/(..)(..)(..)(..)/\\x\4\\x\3\\x\2\\x\1/' | xargs -0 printf; done
  head -c $((1024 - 4 * $#)) /dev/zero
}
{ hdr 20240520 1 1000; head -c 20 /dev/zero; } > "$W/trunc.bin"
bad "token shard is 1044 bytes but its header.*counts 1000 tokens.*truncated" "$STRATA" train "${T[@]}" --data "$W/trunc.bin" --out "$W/good"
{ hdr 12345 1 1000; head -c 2000 /dev/zero; } > "$W/magic.bin"
bad "bad token-shard magic 12345.*starts with 20240520" "$STRATA" train "${T[@]}" --data "$W/magic.bin" --out "$W/good"
printf 'plain text, not tokens %.0s' $(seq 1 100) > "$W/text.bin"
bad "bad token-shard magic" "$STRATA" train "${T[@]}" --data "$W/text.bin" --out "$W/good"
{ hdr 20240520 1 1000; head -c 2000 /dev/zero | tr '\0' '\377'; } > "$W/vocab.bin"
bad "token 0 is 65535, outside the GPT-2 vocabulary" "$STRATA" train "${T[@]}" --data "$W/vocab.bin" --out "$W/good"
head -c 100 "$W/trunc.bin" > "$W/short.bin"   # shorter than the header
bad "truncated" "$STRATA" train "${T[@]}" --data "$W/short.bin" --out "$W/good"
bad "not a regular file" "$STRATA" train "${T[@]}" --data /dev/null --out "$W/good"

# ---- checkpoints (copies of the good one, damaged)
mk() { rm -rf "$W/c"; cp -r "$G" "$W/c"; }
edit() { perl -0777 -pi -e "$1" "$2"; cmp -s "$2" "$G/$(basename "$2")" && fail "edit '$1' changed nothing"; return 0; }
ck=("$STRATA" eval --checkpoint "$W/c" --tokens 32 --batch 2)
rs=("$STRATA" train --quiet --resume "$W/c" --out "$W/good")
mk; truncate -s -100 "$W/c/model.safetensors"
bad "'model.safetensors' checksum mismatch.*corrupt" "${ck[@]}"
mk; printf '\xff\xff\xff\x7f\x00\x00\x00\x00' | dd of="$W/c/model.safetensors" conv=notrunc bs=1 count=8 status=none
bad "'model.safetensors' checksum mismatch" "${rs[@]}"  # header length past the end
mk; printf '\x00\x00\x00\x00\x00\x01\x00\x00' | dd of="$W/c/model.safetensors" conv=notrunc bs=1 count=8 status=none
bad "'model.safetensors' checksum mismatch" "${ck[@]}"  # huge header (2^40 bytes)
mk; edit 's/\[32768,34816\]/[30768,32816]/' "$W/c/model.safetensors"  # overlapping offsets
bad "'model.safetensors' checksum mismatch" "${rs[@]}"
mk; edit 's/\[32768,34816\]/[32768,94816]/' "$W/c/model.safetensors"  # out-of-range offsets
bad "'model.safetensors' checksum mismatch" "${ck[@]}"
mk; edit 's/"wpe.weight":\{"dtype":"F32"/"wpe.weight":{"dtype":"I32"/' "$W/c/model.safetensors"
bad "'model.safetensors' checksum mismatch" "${rs[@]}"
mk; edit 's/"shape":\[16,32\]/"shape":[32,16]/' "$W/c/model.safetensors"
bad "'model.safetensors' checksum mismatch" "${ck[@]}"
mk; edit 's/"n_embd": *32/"n_embd": 64/' "$W/c/config.json"   # another model shape
bad "'config.json' checksum mismatch" "${rs[@]}"
mk; truncate -s 10 "$W/c/train_state.pb"
bad "train_state.pb.*not a valid TrainState protobuf message" "${rs[@]}"
mk; printf '\xff\xff\xff\xff\xff' | dd of="$W/c/train_state.pb" conv=notrunc bs=1 seek=2 count=5 status=none
bad "train_state.pb.*not a valid TrainState protobuf message" "${rs[@]}"
mk; rm "$W/c/train_state.pb"
bad "missing train_state.pb.*not a complete Strata checkpoint" "${ck[@]}"
bad "checkpoint .*already at --steps 2; pass a larger --steps" "$STRATA" train --quiet --resume auto --out "$W/good"
mkdir -p "$W/emptyrun"
bad "no .*checkpoint|ckpt" "$STRATA" train --quiet --resume auto --out "$W/emptyrun"

# ---- serve / infer flags and session ids (HTTP requests: serve_bad_requests, http_request_parse)
bad "unknown flag" "$STRATA" serve --checkpoint "$G" --bogus
bad "--listen 'not-an-address' must be HOST:PORT" "$STRATA" serve --checkpoint "$G" --listen "not-an-address"
bad "session" "$STRATA" infer --checkpoint "$G" --session "../escape" --prompt hi --max-tokens 1 --session-dir "$W/sd"
[ ! -e "$W/escape" ] && [ ! -e "$W/sd/../escape.stage0-of-1.kv" ] || fail "a hostile session id touched the file system"

snap > "$W/after.md5"
diff "$W/before.md5" "$W/after.md5" || fail "a failed command modified the existing run directory"
echo "PASS: $n bad inputs refused with exit 2 and a message; the existing run was untouched"
