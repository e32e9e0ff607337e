#!/usr/bin/env bash
# `strata train` on each GEMM backend (STRATA_GEMM, worker/model/gemm.h): the same seed gives
# losses within 1e-4 relative of each other over 6 steps on openblas, onednn and auto (the
# libraries round differently, so not bit for bit), and each backend is deterministic from
# run to run (bit-identical losses twice on onednn); the backend is named once at start-up on
# stderr; bf16 products through oneDNN's kernel and through the rounded path (STRATA_GEMM_BF16)
# agree within 1e-4 and the start-up line names the path; a bad STRATA_GEMM or STRATA_GEMM_BF16
# stops train with exit 2 and one sentence naming the value.
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

# expect_bad VAR=VALUE MESSAGE: train exits 2 with the one sentence MESSAGE
expect_bad() {
  local out code
  set +e
  out=$(env "$1" "$STRATA" train "${SMALL[@]}" --quiet --out "$W/bad" 2>&1); code=$?
  set -e
  [ "$code" -eq 2 ] || fail "$1: exited $code, expected 2: $out"
  grep -qF "$2" <<< "$out" || fail "$1: the message does not name the variable and the value: $out"
}
expect_bad STRATA_GEMM=mkl "STRATA_GEMM must be one of auto, openblas, onednn, got 'mkl'"

# bf16 products on oneDNN: its kernel and the rounded path (STRATA_GEMM_BF16) multiply the same
# exact bf16 x bf16 products, so the losses differ by summation order only; the start-up line
# names the path (the kernel only where this CPU and libdnnl have it)
for p in kernel rounded; do
  STRATA_GEMM=onednn STRATA_GEMM_BF16=$p "$STRATA" train "${SMALL[@]}" --precision bf16 --out "$W/bf16_$p" \
    > /dev/null 2> "$W/bf16_$p.err" || fail "bf16 train with STRATA_GEMM_BF16=$p exited $?: $(cat "$W/bf16_$p.err")"
done
grep -q "bf16 products: inputs rounded to bf16, dnnl_sgemm (STRATA_GEMM_BF16=rounded)" "$W/bf16_rounded.err" ||
  fail "STRATA_GEMM_BF16=rounded: the start-up line does not name the rounded path: $(cat "$W/bf16_rounded.err")"
grep -Eq "bf16 products: (oneDNN dnnl_gemm_bf16bf16f32|inputs rounded to bf16, dnnl_sgemm \(no oneDNN bf16 kernel here\))" "$W/bf16_kernel.err" ||
  fail "STRATA_GEMM_BF16=kernel: the start-up line names neither the kernel nor its absence: $(cat "$W/bf16_kernel.err")"
paste -d' ' <(losses "$W/bf16_kernel/steps.jsonl") <(losses "$W/bf16_rounded/steps.jsonl") |
  awk '{ d = $1 - $2; if (d < 0) d = -d; s = $1 < 0 ? -$1 : $1
         if (!(d <= 1e-4 * s)) { printf "step %d: bf16 kernel loss %s, rounded %s: more than 1e-4 relative apart\n", NR, $1, $2; bad = 1 } }
       END { exit bad }' >&2 || fail "bf16 losses of the kernel and the rounded path differ"
expect_bad STRATA_GEMM_BF16=amx "STRATA_GEMM_BF16 must be one of auto, kernel, rounded, got 'amx'"
echo "PASS: losses of openblas, onednn and auto within 1e-4 relative; onednn deterministic; bf16 kernel and rounded path within 1e-4; bad values refused"
