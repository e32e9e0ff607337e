#!/usr/bin/env bash
# `strata train --precision fp32|bf16|bf16-sr` and `strata eval --precision`. Usage:
#   precision.sh STRATA DIST_TOOL CASE [ARGS...]    ($DIST_MPIRUN: the mpirun command line)
# $PRECISION_ARCH (default gpt): the model family every run trains (--arch), so each case below
# holds for GPT-2 and for Llama with the same tolerances.
# Cases
#   loss     30 steps of a tiny model: the bf16 loss stays within 2% of fp32's at every step from
#            the 10th and bf16-sr's within 3%; two bf16 runs and two bf16-sr runs are bit-identical
#            (losses and weights); the start-up lines name the precision and the bf16 path; a
#            bf16-sr checkpoint stores its weights as BF16 tensors (model.safetensors about half
#            the fp32 run's bytes) and its AdamW moments as F32, a bf16 one F32 master weights
#            that are not all bf16 values; report and checkpoint record the precision
#   resume   bf16 and bf16-sr runs resumed from their step-6 checkpoints continue bit-identically
#            to step 12 (losses, weights, moments), keeping the precision without the flag; a
#            resume with another --precision is refused (exit 2, one sentence); eval reads the
#            bf16-sr checkpoint (BF16 weights) in every precision, fp32's loss within 1% of
#            bf16-sr's, and infer generates from it
#   bad      --precision fp16 for train and eval, --grad-dtype fp16 for train: exit 2 with one
#            sentence naming the value
#   gradbytes --dp 2 under mpirun with --grad-dtype fp32 and bf16: the bf16 run's bytes_sent
#            (report.json's total, equal to the sum of steps.jsonl's) are half the fp32 run's
#            (within 1%: the one-double norm all-reduce is not halved); report.json records the
#            grad dtype
#   layout PREC NP FLAGS...  the layout (under mpirun) trains 20 steps in PREC; per-step losses
#            equal the single-rank PREC run's within LOSS_RTOL, gradient norms within NORM_RTOL
#            and weights within WEIGHT_TOL (below); bf16-sr's weights are bf16 on every layout;
#            with --grad-dtype bf16 among FLAGS, report.json records it
set -euo pipefail
STRATA="$1"; TOOL="$2"; CASE="$3"; shift 3
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
# The Llama model at GPT-2's lr 3e-3 has loss spikes (steps 12 and 19) where the bf16 gradient
# norm moves by 2-3% under any change of fp32 summation order, even on one rank (STRATA_GEMM=
# openblas against onednn); at 2e-3 it has none and every layout stays within NORM_RTOL.
LR=3e-3; [ "${PRECISION_ARCH:-gpt}" = llama ] && LR=2e-3
LOUD=(--arch "${PRECISION_ARCH:-gpt}" --layers 4 --heads 2 --dim 32 --ctx 16 --batch 24 --lr "$LR" --warmup 5 --seed 11 --eval-tokens 128)
TINY=("${LOUD[@]}" --quiet)
fail() { echo "FAIL: $*" >&2; exit 1; }
losses() { sed -E 's/.*"loss": ([^,]*),.*/\1/' "$1"; }
# bf16_only FILE.safetensors: 0 when every value of the file is exactly a bf16 (BF16 tensors,
# and F32 tensors whose low 16 bits are zero)
bf16_only() {
  python3 - "$1" <<'PY'
import json, struct, sys
d = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', d[:8])[0]
h = json.loads(d[8:8 + n])
bad = 0
for k, v in h.items():
    if k == '__metadata__' or v['dtype'] == 'BF16':
        continue
    a, b = v['data_offsets']
    words = struct.unpack('<%dI' % ((b - a) // 4), d[8 + n + a:8 + n + b])
    bad += sum(1 for w in words if w & 0xffff)
print('%d values not bf16' % bad)
sys.exit(1 if bad else 0)
PY
}
# dtypes FILE.safetensors: its tensors' dtypes, sorted and unique, space-separated
dtypes() {
  python3 - "$1" <<'PY'
import json, struct, sys
d = open(sys.argv[1], 'rb').read()
h = json.loads(d[8:8 + struct.unpack('<Q', d[:8])[0]])
print(' '.join(sorted({v['dtype'] for k, v in h.items() if k != '__metadata__'})))
PY
}

case "$CASE" in
loss)
  for p in fp32 bf16 bf16-sr; do
    "$STRATA" train "${LOUD[@]}" --steps 30 --precision "$p" --out "$W/$p" 2> "$W/$p.err" > /dev/null ||
      fail "--precision $p exited $?: $(cat "$W/$p.err")"
  done
  grep -q "precision bf16," "$W/bf16.err" || fail "the start-up line does not name bf16: $(cat "$W/bf16.err")"
  grep -q "bf16 products: " "$W/bf16.err" || fail "the start-up line does not name the bf16 path: $(cat "$W/bf16.err")"
  for p in bf16 bf16-sr; do
    tol=0.02; [ "$p" = bf16-sr ] && tol=0.03
    paste -d' ' <(losses "$W/fp32/steps.jsonl") <(losses "$W/$p/steps.jsonl") |
      awk -v p="$p" -v tol="$tol" 'NR >= 10 { d = $1 - $2; if (d < 0) d = -d
             if (!(d <= tol * $1)) { printf "step %d: fp32 loss %s, %s loss %s: more than %s apart\n", NR, $1, p, $2, tol; bad = 1 }
             if (d > max) max = d / $1 }
           END { printf "%s: largest relative loss difference from fp32 over steps 10..30: %.3g\n", p, max; exit bad }' ||
      fail "$p losses drift from fp32"
    ! diff -q <(losses "$W/fp32/steps.jsonl") <(losses "$W/$p/steps.jsonl") > /dev/null ||
      fail "$p losses are identical to fp32's: the bf16 products are not in use"
    "$STRATA" train "${TINY[@]}" --steps 30 --precision "$p" --out "$W/$p.2" || fail "second $p run exited $?"
    diff <(losses "$W/$p/steps.jsonl") <(losses "$W/$p.2/steps.jsonl") || fail "$p: same seed, different losses"
    cmp "$W/$p/ckpt-00000030/model.safetensors" "$W/$p.2/ckpt-00000030/model.safetensors" || fail "$p: same seed, different weights"
  done
  last=$(losses "$W/bf16/steps.jsonl" | tail -1); first=$(losses "$W/bf16/steps.jsonl" | head -1)
  awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 0.5) }' || fail "bf16 loss did not fall ($first -> $last)"
  bf16_only "$W/bf16-sr/ckpt-00000030/model.safetensors" || fail "bf16-sr weights are not bf16"
  ! bf16_only "$W/bf16/ckpt-00000030/model.safetensors" > /dev/null || fail "bf16 master weights hold bf16 values only"
  [ "$(dtypes "$W/bf16-sr/ckpt-00000030/model.safetensors")" = BF16 ] ||
    fail "bf16-sr model.safetensors holds $(dtypes "$W/bf16-sr/ckpt-00000030/model.safetensors"), expected BF16 only"
  [ "$(dtypes "$W/bf16-sr/ckpt-00000030/optimizer.safetensors")" = F32 ] || fail "bf16-sr moments are not F32"
  [ "$(dtypes "$W/bf16/ckpt-00000030/model.safetensors")" = F32 ] || fail "bf16 master weights are not F32"
  s32=$(stat -c %s "$W/fp32/ckpt-00000030/model.safetensors"); s16=$(stat -c %s "$W/bf16-sr/ckpt-00000030/model.safetensors")
  awk -v a="$s32" -v b="$s16" 'BEGIN { printf "model.safetensors: fp32 %d bytes, bf16-sr %d bytes\n", a, b; exit !(b < 0.52 * a && b > 0.48 * a) }' ||
    fail "the bf16-sr model.safetensors is not about half the fp32 one"
  grep -q 'bf16-sr' "$W/bf16-sr/ckpt-00000030/train_state.pb" || fail "the checkpoint does not record bf16-sr"
  for p in fp32 bf16 bf16-sr; do
    grep -q "\"precision\": \"$p\"" "$W/$p/report.json" || fail "report.json does not record $p"
  done
  ;;
resume)
  for p in bf16 bf16-sr; do
    "$STRATA" train "${TINY[@]}" --steps 12 --ckpt-every 6 --precision "$p" --out "$W/$p"
    "$STRATA" train --quiet --resume "$W/$p/ckpt-00000006" --out "$W/$p.r"
    [ "$(wc -l < "$W/$p.r/steps.jsonl")" -eq 6 ] || fail "$p: the resumed run should log steps 7..12"
    diff <(losses "$W/$p/steps.jsonl" | tail -6) <(losses "$W/$p.r/steps.jsonl") || fail "$p: resumed losses differ"
    for f in model optimizer; do
      cmp "$W/$p/ckpt-00000012/$f.safetensors" "$W/$p.r/ckpt-00000012/$f.safetensors" || fail "$p: resumed $f differs"
    done
    echo "ok: $p resume bit-identical"
  done
  set +e
  out=$("$STRATA" train --quiet --resume "$W/bf16/ckpt-00000006" --precision fp32 --out "$W/x" 2>&1); rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "resume with another precision: exit $rc, expected 2: $out"
  grep -qF -- "--precision fp32 differs from checkpoint $W/bf16/ckpt-00000006's bf16" <<<"$out" ||
    fail "the refusal does not name both precisions: $out"
  [ "$(grep -c 'error' <<<"$out")" -eq 1 ] || fail "expected one error line: $out"
  # the same precision given explicitly is fine
  "$STRATA" train --quiet --resume "$W/bf16-sr/ckpt-00000006" --precision bf16-sr --out "$W/y"
  cmp "$W/bf16-sr/ckpt-00000012/model.safetensors" "$W/y/ckpt-00000012/model.safetensors" || fail "explicit bf16-sr resume differs"
  for p in fp32 bf16 bf16-sr; do
    "$STRATA" eval --checkpoint "$W/bf16-sr/ckpt-00000012" --tokens 128 --precision "$p" --json > "$W/e.$p" ||
      fail "eval --precision $p of a bf16-sr checkpoint exited $?"
    grep -q "\"precision\": \"$p\"" "$W/e.$p" || fail "eval --json lacks the precision: $(cat "$W/e.$p")"
  done
  l32=$(sed -E 's/.*"loss": ([^,]*),.*/\1/' "$W/e.fp32"); l16=$(sed -E 's/.*"loss": ([^,]*),.*/\1/' "$W/e.bf16")
  lsr=$(sed -E 's/.*"loss": ([^,]*),.*/\1/' "$W/e.bf16-sr")
  awk -v a="$l32" -v b="$l16" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * a && d > 0) }' ||
    fail "eval fp32 loss $l32 and bf16 loss $l16: expected different but within 1%"
  # bf16-sr evaluates with bf16 products, as bf16 does: the same loss
  [ "$lsr" = "$l16" ] || fail "eval bf16-sr loss $lsr differs from bf16's $l16"
  "$STRATA" infer --checkpoint "$W/bf16-sr/ckpt-00000012" --prompt "The " --max-tokens 8 --temperature 0 --json > "$W/inf" ||
    fail "infer from the bf16-sr checkpoint exited $?"
  grep -q '"tokens": 8' "$W/inf" || fail "infer did not generate 8 tokens: $(cat "$W/inf")"
  ;;
bad)
  for cmd in train eval; do
    set +e
    if [ "$cmd" = train ]; then out=$("$STRATA" train "${TINY[@]}" --steps 1 --precision fp16 --out "$W/b" 2>&1); rc=$?
    else out=$("$STRATA" eval --checkpoint "$W/none" --precision fp16 2>&1); rc=$?; fi
    set -e
    [ "$rc" -eq 2 ] || fail "$cmd --precision fp16: exit $rc, expected 2: $out"
    grep -qF "$cmd: --precision must be fp32, bf16 or bf16-sr, got 'fp16'" <<<"$out" || fail "$cmd: unexpected message: $out"
    [ "$(wc -l <<<"$out")" -eq 1 ] || fail "$cmd: expected one line: $out"
    echo "ok: $cmd --precision fp16 -> $out"
  done
  set +e
  out=$("$STRATA" train "${TINY[@]}" --steps 1 --grad-dtype fp16 --out "$W/g" 2>&1); rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "--grad-dtype fp16: exit $rc, expected 2: $out"
  grep -qF "train: --grad-dtype must be fp32 or bf16, got 'fp16'" <<<"$out" || fail "--grad-dtype: unexpected message: $out"
  [ "$(wc -l <<<"$out")" -eq 1 ] || fail "--grad-dtype: expected one line: $out"
  echo "ok: --grad-dtype fp16 -> $out"
  ;;
gradbytes)
  read -r -a MPIRUN <<< "${DIST_MPIRUN:?DIST_MPIRUN must hold the mpirun command line}"
  for g in fp32 bf16; do
    "${MPIRUN[@]}" -np 2 "$STRATA" train "${TINY[@]}" --steps 5 --dp 2 --grad-dtype "$g" --out "$W/$g"
    grep -q "\"grad_dtype\": \"$g\"" "$W/$g/report.json" || fail "report.json does not record --grad-dtype $g"
  done
  sent() { sed -E 's/.*"bytes_sent": ([0-9]*),.*/\1/' "$1" | awk '{ s += $1 } END { print s }'; }
  total() { sed -nE 's/.*"bytes_sent": ([0-9]*).*/\1/p' "$1"; }
  for g in fp32 bf16; do
    [ "$(total "$W/$g/report.json")" = "$(sent "$W/$g/steps.jsonl")" ] ||
      fail "report.json bytes_sent $(total "$W/$g/report.json") is not the steps' sum $(sent "$W/$g/steps.jsonl")"
  done
  b32=$(total "$W/fp32/report.json"); b16=$(total "$W/bf16/report.json")
  awk -v a="$b32" -v b="$b16" 'BEGIN { r = b / a; printf "bytes sent over 5 steps: fp32 %d, bf16 %d (ratio %.4f)\n", a, b, r
                                       exit !(r > 0.495 && r < 0.505) }' || fail "bf16 gradients do not halve the bytes sent"
  ;;
layout)
  read -r -a MPIRUN <<< "${DIST_MPIRUN:?DIST_MPIRUN must hold the mpirun command line}"
  PREC="$1"; NP="$2"; shift 2
  # Tolerances: between layouts only the fp32 summation order of the gradients differs, but a
  # value that moves across a bf16 rounding boundary then rounds to the other neighbour (a
  # relative 2^-8), so layouts agree to bf16's precision rather than fp32's. Measured on this
  # model: losses within 6e-5 relative, gradient norms within 3e-3, weights within 6e-3 (the
  # attention's key biases, whose true gradient is ~0: AdamW turns rounding noise into steps
  # of up to lr = 3e-3). The losses (5e-4) still catch a missing or doubled gradient.
  LOSS_RTOL=5e-4
  NORM_RTOL=1e-2
  WEIGHT_TOL=2e-2
  # 4 heads so that --tp 2 divides them (the reference has the same model)
  "$STRATA" train "${TINY[@]}" --heads 4 --steps 20 --precision "$PREC" --out "$W/ref"
  "${MPIRUN[@]}" -np "$NP" "$STRATA" train "${TINY[@]}" --heads 4 --steps 20 --precision "$PREC" --out "$W/dist" "$@"
  [ "$(wc -l < "$W/dist/steps.jsonl")" -eq 20 ] || fail "expected 20 lines in steps.jsonl"
  grep -q "\"precision\": \"$PREC\"" "$W/dist/report.json" || fail "report.json does not record $PREC"
  if [[ " $* " == *" --grad-dtype bf16 "* ]]; then
    grep -q '"grad_dtype": "bf16"' "$W/dist/report.json" || fail "report.json does not record --grad-dtype bf16"
  fi
  paste -d' ' <(losses "$W/ref/steps.jsonl") <(losses "$W/dist/steps.jsonl") |
    awk -v tol="$LOSS_RTOL" '{ d = $1 - $2; if (d < 0) d = -d; if (d / $1 > max) max = d / $1
           if (!(d <= tol * $1)) { printf "step %d: single-rank loss %s, layout %s: more than %s apart\n", NR, $1, $2, tol; bad = 1 } }
         END { printf "largest relative loss difference %.3g (tolerance %s)\n", max, tol; exit bad }' || fail "losses differ"
  "$TOOL" losses "$W/ref/steps.jsonl" "$W/dist/steps.jsonl" "$NORM_RTOL" || fail "gradient norms differ"
  "$TOOL" diff "$W/ref/ckpt-00000020" "$W/dist/ckpt-00000020" "$WEIGHT_TOL" || fail "weights differ"
  if [ "$PREC" = bf16-sr ]; then
    for f in "$W/dist/ckpt-00000020"/model*.safetensors; do bf16_only "$f" || fail "$f: weights are not bf16"; done
  fi
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "PASS: $CASE"
