#!/usr/bin/env bash
# Asynchronous checkpoints (--ckpt-async, worker/checkpoint/ckpt_async.h) of whole training runs.
# Usage: ckpt_async.sh STRATA CASE NP ARGS...   ($CKPT_MPIRUN: the mpirun line; NP 1 runs the
# single-rank loop without mpirun; NP 2 is --pp 2, NP 3 is --dp 3 --zero 1, NP 4 is --tp 2 --pp 2)
#   same     async and synchronous (--no-ckpt-async) runs write byte-identical checkpoint
#            directories (every file), at every checkpoint step
#   resume   a run resumed from an async checkpoint (ckpt-4 of 8 steps) ends bit-identical to the
#            uninterrupted one: the losses of steps 5-8 and the weights and moments of ckpt-6, ckpt-8
#   kill R OP  rank R is SIGKILLed inside its background writer (STRATA_FAULT op=checkpoint: between
#            its weights and optimizer files; op=commit: rank 0 before the rename) while writing
#            ckpt-4, training going on: no ckpt-4 appears, ckpt-2 equals the reference's, and
#            --resume auto continues from ckpt-2 to the same losses and final checkpoint
#   killstep R  rank R is SIGKILLed at the start of step 5, while the background write of ckpt-4
#            may still be running: whatever it left, --resume auto ends as the reference does
#   error    RUN/ckpt-00000004 exists and is not a checkpoint, so the background write of step 4
#            fails: the job exits 1 after training past step 4, with one error sentence naming
#            the background write and the cause, no temporary directory is left, ckpt-2 is intact
set -euo pipefail
STRATA="$1"; CASE="$2"; NP="$3"; shift 3
read -r -a MPIRUN <<< "${CKPT_MPIRUN:?CKPT_MPIRUN must hold the mpirun command line}"
W="$(mktemp -d /tmp/strata-ckasync.XXXXXX)"; trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
TINY=(--layers 4 --heads 2 --dim 32 --ctx 16 --batch 12 --lr 3e-3 --warmup 2 --seed 7
      --eval-tokens 64 --log-every 1000)
case "$NP" in
  1) LAYOUT=() ;;
  2) LAYOUT=(--pp 2) ;;
  3) LAYOUT=(--dp 3 --zero 1) ;;
  4) LAYOUT=(--tp 2 --pp 2) ;;
  *) fail "NP must be 1, 2, 3 or 4" ;;
esac
export STRATA_ABORT_GRACE_S=0 STRATA_COLL_TIMEOUT_S=10
# train OUT FAULT ARGS...: one job (NP ranks) into run directory OUT; output in OUT.txt; prints rc
train() {
  local out="$1" fault="$2" rc=0; shift 2
  if [ "$NP" -eq 1 ]; then
    STRATA_FAULT="$fault" timeout -k 5 120 "$STRATA" train "${TINY[@]}" "$@" --out "$out" \
      >"$out.txt" 2>&1 || rc=$?
  else
    STRATA_FAULT="$fault" timeout -k 5 120 "${MPIRUN[@]}" -np "$NP" -x STRATA_FAULT \
      -x STRATA_ABORT_GRACE_S -x STRATA_COLL_TIMEOUT_S "$STRATA" train "${TINY[@]}" \
      "${LAYOUT[@]}" "$@" --out "$out" >"$out.txt" 2>&1 || rc=$?
  fi
  cat "$out.txt" >&2
  [ "$rc" -ne 124 ] || fail "the job did not end within 120 s"
  echo "$rc"
}
same_dir() { # same_dir A B: the same files, byte for byte
  local f n=0
  diff <(ls "$1") <(ls "$2") >&2 || fail "$1 and $2 hold different files"
  for f in "$1"/*; do
    cmp "$f" "$2/$(basename "$f")" >&2 || fail "$(basename "$f") differs between $1 and $2"
    n=$((n + 1))
  done
  [ "$n" -ge 4 ] || fail "$1 holds only $n files"
}
# same_weights A B: every safetensors file and config.json identical (a resumed run's train_state.pb
# records its own invocation's settings, so it is not compared)
same_weights() {
  local f n=0
  for f in "$1"/*.safetensors "$1"/config.json; do
    cmp "$f" "$2/$(basename "$f")" >&2 || fail "$(basename "$f") differs between $1 and $2"
    n=$((n + 1))
  done
  [ "$n" -ge 3 ] || fail "$1 holds only $n weight files"
}
# losses FILE: "step loss" per step, the last occurrence winning (a resumed run re-runs steps)
losses() {
  sed -nE 's/^\{"step": ([0-9]+), "loss": ([^,]*),.*/\1 \2/p' "$1" |
    awk '{ l[$1] = $2; if ($1 > n) n = $1 } END { for (i = 1; i <= n; i++) print i, l[i] }'
}
reference() { # the uninterrupted async run of 8 steps, a checkpoint every 2
  [ "$(train "$W/ref" "" --steps 8 --ckpt-every 2)" -eq 0 ] || fail "reference run failed"
}
resumed_like_reference() { # RUN: --resume auto finishes RUN as the reference did
  [ "$(train "$1" "" --steps 8 --ckpt-every 2 --resume auto)" -eq 0 ] || fail "resume failed"
  grep -q "resumed from $1/ckpt-0000000$2" "$1.txt" || fail "did not resume from ckpt-$2"
  diff <(losses "$W/ref/steps.jsonl") <(losses "$1/steps.jsonl") >&2 || fail "losses differ"
  same_weights "$W/ref/ckpt-00000008" "$1/ckpt-00000008"
}

case "$CASE" in
same)
  [ "$(train "$W/a" "" --steps 6 --ckpt-every 2)" -eq 0 ] || fail "async run failed"
  [ "$(train "$W/s" "" --steps 6 --ckpt-every 2 --no-ckpt-async)" -eq 0 ] || fail "sync run failed"
  for s in 2 4 6; do same_dir "$W/s/ckpt-0000000$s" "$W/a/ckpt-0000000$s"; done
  diff <(losses "$W/s/steps.jsonl") <(losses "$W/a/steps.jsonl") >&2 || fail "losses differ"
  ! ls -d "$W"/a/*.tmp-* 2>/dev/null || fail "a temporary directory was left"
  ;;
resume)
  reference
  mkdir -p "$W/r" && cp -r "$W/ref/ckpt-00000004" "$W/r/"
  [ "$(train "$W/r" "" --steps 8 --ckpt-every 2 --resume "$W/r/ckpt-00000004")" -eq 0 ] ||
    fail "the resumed run failed"
  diff <(losses "$W/ref/steps.jsonl" | tail -n 4) <(losses "$W/r/steps.jsonl" | tail -n 4) >&2 ||
    fail "losses of steps 5-8 differ"
  for s in 6 8; do same_weights "$W/ref/ckpt-0000000$s" "$W/r/ckpt-0000000$s"; done
  ;;
kill)
  R="$1"; OP="$2"
  reference
  rc=$(train "$W/k" "kill:rank=$R:step=4:op=$OP" --steps 8 --ckpt-every 2)
  [ "$rc" -ne 0 ] || fail "the killed job exited 0"
  grep -q "fault: injecting kill at step 4 in $OP" "$W/k.txt" || fail "the fault was not injected"
  [ ! -e "$W/k/ckpt-00000004" ] || fail "a half-written ckpt-00000004 counts as a checkpoint"
  same_dir "$W/ref/ckpt-00000002" "$W/k/ckpt-00000002"
  resumed_like_reference "$W/k" 2
  ;;
killstep)
  R="$1"
  reference
  rc=$(train "$W/k" "kill:rank=$R:step=5" --steps 8 --ckpt-every 2)
  [ "$rc" -ne 0 ] || fail "the killed job exited 0"
  grep -q "fault: injecting kill at step 5 in step" "$W/k.txt" || fail "the fault was not injected"
  # ckpt-4 is either complete (the write ended before the kill) or absent; never torn
  from=2
  if [ -e "$W/k/ckpt-00000004" ]; then same_dir "$W/ref/ckpt-00000004" "$W/k/ckpt-00000004"; from=4; fi
  resumed_like_reference "$W/k" "$from"
  ;;
error)
  mkdir -p "$W/e/ckpt-00000004" && echo "not a checkpoint" > "$W/e/ckpt-00000004/notes.txt"
  rc=$(train "$W/e" "" --steps 8 --ckpt-every 2)
  [ "$rc" -eq 1 ] || fail "a failed background write exited $rc, expected 1"
  line="the background write of checkpoint $W/e/ckpt-00000004 failed: checkpoint: '$W/e/ckpt-00000004' exists and is not a Strata checkpoint"
  [ "$(grep -cF "$line" "$W/e.txt")" -eq 1 ] || fail "no single error sentence '$line'"
  # the error surfaced at a later step boundary: training went on past step 4
  [ "$(grep -c '"step"' "$W/e/steps.jsonl")" -ge 5 ] || fail "training did not go on past step 4"
  ! grep -q "^\[strata r0\] checkpoint $W/e/ckpt-00000004$" "$W/e.txt" || fail "ckpt-4 reported written"
  ! ls -d "$W"/e/*.tmp-* 2>/dev/null || fail "a temporary directory was left"
  [ -f "$W/e/ckpt-00000004/notes.txt" ] || fail "the foreign directory was touched"
  "$STRATA" train "${TINY[@]}" --eval-only --resume "$W/e/ckpt-00000002" \
    --out "$W/e" >/dev/null 2>&1 || fail "ckpt-2 does not load after the failure"
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "PASS: $CASE np $NP"
