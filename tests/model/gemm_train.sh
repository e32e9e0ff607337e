#!/usr/bin/env bash
# `strata train` on each GEMM backend (STRATA_GEMM, worker/model/gemm.h): the same seed gives
# losses within 1e-4 relative of each other over 6 steps on openblas, onednn and auto (the
# libraries round differently, so not bit for bit), and each backend is deterministic from
# run to run (bit-identical losses twice on onednn); the backend is named once at start-up on
# stderr; a bad STRATA_GEMM stops train with exit 2 and one sentence naming the value.
# Usage: gemm_train.sh STRATA
set -euo pipefail
STRATA="$1"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
SMALL=(--layers 2 --heads 2 --dim 32 --ctx 32 --batch 4 --eval-tokens 128 --steps 6 --seed 3)
fail() { echo "FAIL: $*" >&2; exit 1; }
losses() { sed -E 's/.*"loss": ([^,]*),.*/\1/' "$1"; }

for b in openblas onednn auto; do
  STRATA_GEMM=$b "$STRATA" train "${SMALL[@]}" --out "$W/$b" > /dev/null 2> "$W/$b.err" ||
    fail "train with STRATA_GEMM=$b exited $?: $(cat "$W/$b.err")"
  n=$(grep -c "gemm: STRATA_GEMM=$b" "$W/$b.err" || true)
  [ "$n" -eq 1 ] || fail "STRATA_GEMM=$b: expected one start-up line naming the backend, got $n: $(cat "$W/$b.err")"
  [ "$(wc -l < "$W/$b/steps.jsonl")" -eq 6 ] || fail "STRATA_GEMM=$b: expected 6 lines in steps.jsonl"
done
grep -q "oneDNN" "$W/onednn.err" || fail "STRATA_GEMM=onednn: the start-up line does not name oneDNN: $(cat "$W/onednn.err")"
for b in onednn auto; do
  paste -d' ' <(losses "$W/openblas/steps.jsonl") <(losses "$W/$b/steps.jsonl") |
    awk -v b="$b" '{ d = $1 - $2; if (d < 0) d = -d; s = $1 < 0 ? -$1 : $1
                     if (!(d <= 1e-4 * s)) { printf "step %d: openblas loss %s, %s loss %s: more than 1e-4 relative apart\n", NR, $1, b, $2; bad = 1 } }
                   END { exit bad }' >&2 || fail "losses of openblas and $b differ"
done
! diff -q <(losses "$W/openblas/steps.jsonl") <(losses "$W/onednn/steps.jsonl") > /dev/null ||
  echo "note: openblas and onednn gave bit-identical losses"
STRATA_GEMM=onednn "$STRATA" train "${SMALL[@]}" --quiet --out "$W/onednn2" ||
  fail "second onednn run exited $?"
diff <(losses "$W/onednn/steps.jsonl") <(losses "$W/onednn2/steps.jsonl") || fail "onednn: same seed, different losses"

set +e
out=$(STRATA_GEMM=mkl "$STRATA" train "${SMALL[@]}" --quiet --out "$W/bad" 2>&1); code=$?
set -e
[ "$code" -eq 2 ] || fail "STRATA_GEMM=mkl: exited $code, expected 2: $out"
grep -qF "STRATA_GEMM must be one of auto, openblas, onednn, got 'mkl'" <<< "$out" ||
  fail "STRATA_GEMM=mkl: the message does not name the variable and the value: $out"
echo "PASS: losses of openblas, onednn and auto within 1e-4 relative; onednn deterministic; bad value refused"
