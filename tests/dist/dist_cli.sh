#!/usr/bin/env bash
# End-to-end tests of distributed `strata train`. Usage:
#   dist_cli.sh STRATA DIST_TOOL CASE [ARGS...]      ($DIST_MPIRUN: the mpirun command line)
# Cases
#   equiv NP P D M SCHED ZERO TRANSPORT [EXTRA FLAGS...]
#        the layout trains 20 steps of the tiny model; its per-step losses equal the single-rank
#        run's within 1e-4 relative and its final weights within WEIGHT_TOL (below).
#   resume   a P=2 x D=2 run checkpointed at step 5 resumes onto P=1 x D=3 (and a single-rank
#            checkpoint onto P=4 x D=1): steps 6..10 match the uninterrupted single-rank run.
#   progress only rank 0 prints; one progress line per step with --log-every 1; report.json,
#            steps.jsonl, report.pb and trace.json are complete and consistent, and the trace
#            shows bucket all-reduces starting before the backward pass ended (overlap); the
#            final validation loss equals the single-rank run's.
#   evallayouts  one checkpoint's validation loss (--eval-only) on 1 rank with M = 1 and 3, and
#            on T x P x D = 1x1x3, 1x3x1, 1x2x1 (M 4), 2x2x1, 2x1x3 (odd counts, a set of 25
#            sequences that no micro-batch divides): equal within 1e-6, and equal to strata eval's
#   badlayout  N != P*D, batch not divisible by D*M, P > L, bad --stage-layers, bad --schedule:
#            exit 2 with a message naming the problem, printed once (by rank 0).
#   tp NP T P D M SCHED ZERO TRANSPORT [EXTRA FLAGS...]
#        tensor parallelism: the tiny model with 4 heads (T = 2 or 4 divides them) trains 20
#        steps with --tp T --pp P --dp D; losses and weights equal the single-rank run's as in
#        equiv; the checkpoint holds whole tensors (it loads into a one-rank model); report.json
#        has tp, the t of every rank, a positive TP communication share and each stage's
#        measured activation memory; trace.json and `strata report` name (t, stage, replica). With --recompute in EXTRA the same layout also runs
#        without it: losses, weights and moments bit-identical, activation memory smaller.
#   tpresume  a T=2 x P=2 checkpoint (whole tensors: equal to the single-rank run's at the same
#            step) resumes onto T=1 x D=2, and a T=1 x D=2 one onto T=2 x P=2 with sequence
#            parallelism, both continuing the single-rank run; resuming T=2 x P=2 on itself is
#            bit-identical to not stopping; strata eval reads the T=2 checkpoint.
#   tpbad    --tp not dividing the heads, T x P x D != ranks, --sequence-parallel with T = 1, a
#            sequence length not divisible by T under sequence parallelism, a bad --recompute:
#            exit 2 with one sentence naming the numbers, printed once.
set -euo pipefail
STRATA="$1"; TOOL="$2"; CASE="$3"; shift 3
read -r -a MPIRUN <<< "${DIST_MPIRUN:?DIST_MPIRUN must hold the mpirun command line}"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
# The tiny model: L=4 so P can be 1..4; batch 24 divides by D*M for D in 1..3, M in 1,2,4 (but
# D=3 with M=4 needs 12 | 24: fine). lr 3e-3 with warm-up keeps 20 steps well-conditioned.
LOUD=(--layers 4 --heads 2 --dim 32 --ctx 16 --batch 24 --lr 3e-3 --warmup 5 --seed 11)
TINY=("${LOUD[@]}" --quiet)
# Loss tolerance: 1e-4 relative (the issue's bound). Measured differences are ~1e-7: only the
# float summation order of the gradient differs (micro-batch accumulation, ring all-reduce).
LOSS_RTOL=1e-4
# Weight tolerance after 20 AdamW steps at lr 3e-3: measured maxima over the matrix are
# 0.9e-6 .. 3.7e-6 (float summation order only). AdamW normalises each element's step to about
# lr, so an element whose gradient is ~0 could flip a step's sign under another summation
# order (up to 2 * lr = 6e-3 per step); 1e-4 leaves 25x margin over what we measure and still
# catches a missing or doubled gradient (a skipped tied-wte sum moves weights by ~1e-3 within
# a few steps).
WEIGHT_TOL=1e-4
fail() { echo "FAIL: $*" >&2; exit 1; }
mpi() { local np="$1"; shift; "${MPIRUN[@]}" -np "$np" -x FI_PROVIDER -x FI_TCP_IFACE "$@"; }
ref() { # ref STEPS OUT [extra flags]: the single-rank reference run
  local steps="$1" out="$2"; shift 2
  "$STRATA" train "${TINY[@]}" --steps "$steps" --out "$out" "$@"
}
# Tensor parallelism needs heads divisible by T: 4 heads of width 8 (T = 1, 2, 4).
TPM=(--heads 4)
transport_flags() { # transport_flags mpi|shm|tcp: sets TRF (and the libfabric environment)
  TRF=(--transport mpi)
  case "$1" in
    mpi) ;;
    shm) export FI_PROVIDER=shm; TRF=(--transport ofi --ofi-provider shm) ;;
    tcp) export FI_PROVIDER="tcp;ofi_rxm" FI_TCP_IFACE=lo; TRF=(--transport ofi --ofi-provider "tcp;ofi_rxm") ;;
    *) fail "unknown transport $1" ;;
  esac
  export FI_PROVIDER="${FI_PROVIDER:-}" FI_TCP_IFACE="${FI_TCP_IFACE:-}"
}
expect2() { # expect2 NP PATTERN ARGS...: exit 2, PATTERN in the output, printed once
  local np="$1" pat="$2"; shift 2
  set +e; out=$(mpi "$np" "$STRATA" train "${TINY[@]}" --steps 2 --out "$W/bad" "$@" 2>&1); rc=$?; set -e
  [ "$rc" -eq 2 ] || fail "expected exit 2, got $rc for: $* :: $out"
  grep -q -- "$pat" <<<"$out" || fail "expected '$pat' for: $* :: $out"
  [ "$(echo "$out" | grep -c 'error: train:')" -eq 1 ] || fail "the error should be printed once: $out"
  echo "ok: $* -> $(echo "$out" | grep 'error: train:')"
}
# json_num FILE KEY: the first number after "KEY": in FILE (pretty-printed report.json)
json_num() { grep -o "\"$2\": [-0-9.e+]*" "$1" | head -1 | sed 's/.*: //'; }
# stage_mem FILE: the stages' mem_activations_bytes, comma-separated
stage_mem() { grep -o '"mem_activations_bytes": [0-9]*' "$1" | sed 's/.*: //' | paste -sd, -; }

case "$CASE" in
equiv)
  NP="$1"; P="$2"; D="$3"; M="$4"; SCHED="$5"; ZERO="$6"; TR="$7"; shift 7
  transport_flags "$TR"
  extra=("${TRF[@]}" "$@")
  ref 20 "$W/ref"
  mpi "$NP" "$STRATA" train "${TINY[@]}" --steps 20 --out "$W/dist" --pp "$P" --dp "$D" \
      --microbatches "$M" --schedule "$SCHED" --zero "$ZERO" "${extra[@]}"
  [ "$(wc -l < "$W/dist/steps.jsonl")" -eq 20 ] || fail "expected 20 lines in steps.jsonl"
  "$TOOL" losses "$W/ref/steps.jsonl" "$W/dist/steps.jsonl" "$LOSS_RTOL" || fail "losses differ"
  "$TOOL" diff "$W/ref/ckpt-00000020" "$W/dist/ckpt-00000020" "$WEIGHT_TOL" || fail "weights differ"
  # P=1 x D=1 through the distributed loop is the single-rank computation, bit for bit
  if [ "$NP" -eq 1 ]; then
    cmp "$W/ref/ckpt-00000020/model.safetensors" "$W/dist/ckpt-00000020/model.safetensors" || fail "P=1 x D=1 weights are not bit-identical"
    cmp "$W/ref/ckpt-00000020/optimizer.safetensors" "$W/dist/ckpt-00000020/optimizer.safetensors" || fail "P=1 x D=1 moments are not bit-identical"
  fi
  # the checkpoint of P stages has P shards and an index
  if [ "$P" -gt 1 ]; then
    [ -f "$W/dist/ckpt-00000020/model.safetensors.index.json" ] || fail "no index for $P shards"
    [ "$(ls "$W/dist/ckpt-00000020"/model-*-of-*.safetensors | wc -l)" -eq "$P" ] || fail "expected $P shards"
  fi
  ;;
resume)
  ref 10 "$W/ref"
  # P=2 x D=2 with 1F1B and ZeRO, checkpoint at step 5 ...
  mpi 4 "$STRATA" train "${TINY[@]}" --steps 10 --ckpt-every 5 --out "$W/a" --pp 2 --dp 2 \
      --microbatches 2 --schedule 1f1b --zero 1
  [ -d "$W/a/ckpt-00000005" ] || fail "no step-5 checkpoint"
  # ... resumed onto P=1 x D=3 (a different layout; the loader reshards by name)
  mpi 3 "$STRATA" train --quiet --resume "$W/a/ckpt-00000005" --out "$W/b" --pp 1 --dp 3
  [ "$(wc -l < "$W/b/steps.jsonl")" -eq 5 ] || fail "the resumed run should log steps 6..10"
  "$TOOL" losses "$W/ref/steps.jsonl" "$W/b/steps.jsonl" "$LOSS_RTOL" 5 || fail "resumed losses differ"
  "$TOOL" diff "$W/ref/ckpt-00000010" "$W/b/ckpt-00000010" "$WEIGHT_TOL" || fail "resumed weights differ"
  # A single-rank checkpoint resumes onto P=4 x D=1 (moments included: losses still match).
  ref 10 "$W/s" --ckpt-every 5
  mpi 4 "$STRATA" train --quiet --resume "$W/s/ckpt-00000005" --out "$W/c" --pp 4 --dp 1 --microbatches 4 --schedule 1f1b
  "$TOOL" losses "$W/ref/steps.jsonl" "$W/c/steps.jsonl" "$LOSS_RTOL" 5 || fail "P=4 resumed losses differ"
  "$TOOL" diff "$W/ref/ckpt-00000010" "$W/c/ckpt-00000010" "$WEIGHT_TOL" || fail "P=4 resumed weights differ"
  # and the distributed checkpoint also resumes on one rank (single-rank loop)
  "$STRATA" train --quiet --resume "$W/a/ckpt-00000005" --out "$W/d"
  "$TOOL" losses "$W/ref/steps.jsonl" "$W/d/steps.jsonl" "$LOSS_RTOL" 5 || fail "single-rank resume of a P=2 checkpoint differs"
  ;;
progress)
  out=$(mpi 4 "$STRATA" train "${LOUD[@]}" --steps 6 --log-every 1 --out "$W/p" --pp 2 --dp 2 --schedule 1f1b --microbatches 2 --bucket-mb 0.02 2>&1)
  echo "$out"
  if echo "$out" | grep -E '^\[strata r[1-9]' ; then fail "a rank other than 0 printed"; fi
  [ "$(echo "$out" | grep -c '^\[strata r0\] step [0-9]*/6 | loss')" -eq 6 ] || fail "expected 6 progress lines"
  grep -Eq '^\[strata r0\] step 6/6 \| loss [0-9.]+ \| [0-9]+ tok/s \| comm [0-9]+% \| idle [0-9]+% \| ETA ' <<<"$out" || fail "progress line format"
  grep -q 'r3=(0,1,1)' <<<"$out" || fail "the rank map was not printed"
  grep -Eq '^stage 1: layers 2-3 \(2\)' <<<"$out" || fail "the stage layers were not printed"
  "$TOOL" json "$W/p/report.json" world_size pp dp final_loss tokens_per_s stages layout config model || fail "report.json"
  grep -q '"world_size": 4' "$W/p/report.json" && grep -q '"pp": 2' "$W/p/report.json" && grep -q '"dp": 2' "$W/p/report.json" || fail "report.json sizes"
  [ "$(wc -l < "$W/p/steps.jsonl")" -eq 6 ] || fail "steps.jsonl lines"
  for i in 1 2 3 4 5 6; do sed -n "${i}p" "$W/p/steps.jsonl" > "$W/line.json"; "$TOOL" json "$W/line.json" step loss tokens_per_s comm_share idle_share || fail "steps.jsonl line $i"; done
  "$TOOL" pb "$W/p/report.pb" 4 2 2 || fail "report.pb"
  # the validation loss at the end (the held-out set in micro-batches split over the replicas)
  # equals the single-rank run's
  ref 6 "$W/pref" --microbatches 2
  "$TOOL" same "$W/pref/report.json" "$W/p/report.json" val_loss "$LOSS_RTOL" || fail "validation loss differs"
  # small buckets: every rank's first bucket all-reduce starts while its backward still runs
  "$TOOL" trace "$W/p/trace.json" 4 overlap || fail "trace.json"
  ;;
evallayouts)
  ref 6 "$W/e" "${TPM[@]}"
  CK="$W/e/ckpt-00000006"
  val_of() { sed -nE 's/.*validation loss ([0-9.]+) over 400 held-out tokens.*/\1/p' "$1"; }
  evalonly() { # evalonly NAME NP [flags]: the checkpoint's validation loss on that layout
    local name="$1" np="$2"; shift 2
    if [ "$np" = 1 ]; then "$STRATA" train --resume "$CK" --eval-only --eval-tokens 400 --out "$W/x" "$@" > "$W/$name.txt" 2>&1
    else mpi "$np" "$STRATA" train --resume "$CK" --eval-only --eval-tokens 400 --out "$W/x" "$@" > "$W/$name.txt" 2>&1; fi \
      || { cat "$W/$name.txt"; fail "--eval-only on $name failed"; }
    [ -n "$(val_of "$W/$name.txt")" ] || { cat "$W/$name.txt"; fail "$name printed no validation loss"; }
  }
  evalonly solo_m1 1 --microbatches 1
  evalonly solo_m3 1 --microbatches 3
  evalonly d3 3 --dp 3 --microbatches 2
  evalonly p3 3 --pp 3 --microbatches 2
  evalonly p2_m4 2 --pp 2 --microbatches 4
  evalonly t2p2 4 --tp 2 --pp 2
  evalonly t2d3 6 --tp 2 --dp 3 --microbatches 2 --sequence-parallel
  ls "$W/x"/steps.jsonl "$W/x"/report.json 2>/dev/null && fail "--eval-only wrote run files"
  base=$(val_of "$W/solo_m1.txt")
  # The same 25 sequences in passes of 8, 4, 3 and 6 rows (padded): the positions' losses are
  # summed in double, so only float rounding inside a forward pass differs (BLAS blocking by
  # row count, tensor-parallel all-reduces); measured below 1e-7 on 400 positions.
  for name in solo_m3 d3 p3 p2_m4 t2p2 t2d3; do
    v=$(val_of "$W/$name.txt")
    awk -v a="$v" -v b="$base" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }' \
      || fail "$name: validation loss $v differs from one rank's $base by more than 1e-6"
    echo "$name: $v (one rank, M=1: $base)"
  done
  ev=$("$STRATA" eval --checkpoint "$CK" --tokens 400 --batch 7 --json | sed -E 's/.*"loss": ([0-9.e-]+).*/\1/')
  awk -v a="$ev" -v b="$base" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }' \
    || fail "strata eval's loss $ev differs from train's validation loss $base"
  ;;
badlayout)
  expect2 3 "but --tp 1 x --pp 2 x --dp 2 = 4" --pp 2 --dp 2
  expect2 2 "not divisible by --dp 2 x --microbatches 5" --pp 1 --dp 2 --microbatches 5
  expect2 5 "5" --pp 5 --dp 1
  expect2 2 "stage-layers" --pp 2 --dp 1 --stage-layers 3,3
  expect2 2 "--schedule must be gpipe or 1f1b" --pp 2 --dp 1 --schedule zigzag
  expect2 2 "--zero must be an integer in \[0, 1\], got '2'" --pp 1 --dp 2 --zero 2
  ;;
tp)
  NP="$1"; T="$2"; P="$3"; D="$4"; M="$5"; SCHED="$6"; ZERO="$7"; TR="$8"; shift 8
  transport_flags "$TR"
  extra=("${TRF[@]}" "$@")
  layout=(--tp "$T" --pp "$P" --dp "$D" --microbatches "$M" --schedule "$SCHED" --zero "$ZERO")
  ref 20 "$W/ref" "${TPM[@]}"
  mpi "$NP" "$STRATA" train "${TINY[@]}" "${TPM[@]}" --steps 20 --out "$W/dist" "${layout[@]}" "${extra[@]}"
  [ "$(wc -l < "$W/dist/steps.jsonl")" -eq 20 ] || fail "expected 20 lines in steps.jsonl"
  "$TOOL" losses "$W/ref/steps.jsonl" "$W/dist/steps.jsonl" "$LOSS_RTOL" || fail "losses differ"
  # loads into a one-rank model by name and shape: the checkpoint holds whole tensors
  "$TOOL" diff "$W/ref/ckpt-00000020" "$W/dist/ckpt-00000020" "$WEIGHT_TOL" || fail "weights differ"
  r="$W/dist/report.json"
  "$TOOL" json "$r" tp tp_comm_share dp_comm_share sequence_parallel recompute || fail "report.json keys"
  [ "$(json_num "$r" tp)" = "$T" ] || fail "report.json tp is not $T"
  [ "$(grep -o '"t": ' "$r" | wc -l)" -eq "$NP" ] || fail "report.json: expected a t for each of the $NP ranks"
  grep -q "\"t\": $((T - 1))," "$r" || fail "report.json: no rank with t = $((T - 1))"
  awk -v x="$(json_num "$r" tp_comm_share)" 'BEGIN { exit !(x > 0) }' || fail "no TP communication time"
  mem=$(stage_mem "$r")
  [ "$(echo "$mem" | tr ',' '\n' | grep -c '^[1-9]')" -eq "$P" ] || fail "mem_activations_bytes for $P stages: '$mem'"
  grep -q "\"rank $((NP - 1)) (t $((T - 1)), stage $((P - 1)), replica $((D - 1)))\"" "$W/dist/trace.json" ||
    fail "trace.json does not name the last rank's (t, stage, replica)"
  rpt=$("$STRATA" report "$W/dist")
  grep -q "layout: world $NP = tp $T x pp $P x dp $D" <<<"$rpt" || fail "strata report: no T x P x D layout line"
  grep -q "rank $((NP - 1)): t $((T - 1)), stage $((P - 1)), replica $((D - 1))" <<<"$rpt" || fail "strata report: rank map without t"
  if printf '%s\n' "$@" | grep -qx -- --recompute; then
    # the same layout without recomputation: the same numbers bit for bit, more activation memory
    args=(); skip=0
    for a in "$@"; do
      if [ "$skip" -eq 1 ]; then skip=0; continue; fi
      if [ "$a" = --recompute ]; then skip=1; continue; fi
      args+=("$a")
    done
    mpi "$NP" "$STRATA" train "${TINY[@]}" "${TPM[@]}" --steps 20 --out "$W/none" "${layout[@]}" "${TRF[@]}" "${args[@]}"
    cmp <(grep -o '"loss": [^,]*' "$W/none/steps.jsonl") <(grep -o '"loss": [^,]*' "$W/dist/steps.jsonl") ||
      fail "losses with recomputation are not bit-identical to --recompute none"
    for f in "$W/none/ckpt-00000020"/*.safetensors; do
      cmp "$f" "$W/dist/ckpt-00000020/$(basename "$f")" || fail "$(basename "$f") with recomputation is not bit-identical"
    done
    none_mem=$(stage_mem "$W/none/report.json")
    paste -d' ' <(echo "$mem" | tr ',' '\n') <(echo "$none_mem" | tr ',' '\n') |
      awk '{ if (!($1 < $2)) bad = 1 } END { exit bad }' ||
      fail "recomputation did not lower the activation memory: $mem vs $none_mem without"
    echo "activation memory per stage: $mem with recomputation, $none_mem without"
  fi
  ;;
tpresume)
  ref 10 "$W/ref" "${TPM[@]}" --ckpt-every 5
  # T=2 x P=2 with 1F1B, checkpoint at step 5: the same weights as the single-rank step 5
  mpi 4 "$STRATA" train "${TINY[@]}" "${TPM[@]}" --steps 10 --ckpt-every 5 --out "$W/a" --tp 2 --pp 2 \
      --microbatches 2 --schedule 1f1b
  "$TOOL" diff "$W/ref/ckpt-00000005" "$W/a/ckpt-00000005" "$WEIGHT_TOL" || fail "T=2 x P=2 step-5 weights differ"
  # ... resumes onto T=1 x D=2
  mpi 2 "$STRATA" train --quiet --resume "$W/a/ckpt-00000005" --out "$W/b" --dp 2
  [ "$(wc -l < "$W/b/steps.jsonl")" -eq 5 ] || fail "the resumed run should log steps 6..10"
  "$TOOL" losses "$W/ref/steps.jsonl" "$W/b/steps.jsonl" "$LOSS_RTOL" 5 || fail "T=1 x D=2 resumed losses differ"
  "$TOOL" diff "$W/ref/ckpt-00000010" "$W/b/ckpt-00000010" "$WEIGHT_TOL" || fail "T=1 x D=2 resumed weights differ"
  # the reverse: T=1 x D=2 (ZeRO) onto T=2 x P=2 with sequence parallelism
  mpi 2 "$STRATA" train "${TINY[@]}" "${TPM[@]}" --steps 10 --ckpt-every 5 --out "$W/c" --dp 2 --zero 1
  mpi 4 "$STRATA" train --quiet --resume "$W/c/ckpt-00000005" --out "$W/d" --tp 2 --pp 2 --sequence-parallel
  "$TOOL" losses "$W/ref/steps.jsonl" "$W/d/steps.jsonl" "$LOSS_RTOL" 5 || fail "T=2 x P=2 resumed losses differ"
  "$TOOL" diff "$W/ref/ckpt-00000010" "$W/d/ckpt-00000010" "$WEIGHT_TOL" || fail "T=2 x P=2 resumed weights differ"
  # exact resume on the same layout: bit-identical to the uninterrupted run
  mpi 4 "$STRATA" train --quiet --resume "$W/a/ckpt-00000005" --out "$W/e" --tp 2 --pp 2 --microbatches 2 --schedule 1f1b
  for f in "$W/a/ckpt-00000010"/*.safetensors; do
    cmp "$f" "$W/e/ckpt-00000010/$(basename "$f")" || fail "resume on T=2 x P=2: $(basename "$f") is not bit-identical"
  done
  cmp <(sed -n '6,10p' "$W/a/steps.jsonl" | grep -o '"loss": [^,]*') <(grep -o '"loss": [^,]*' "$W/e/steps.jsonl") ||
    fail "resume on T=2 x P=2: losses are not bit-identical"
  # eval reads the tensor-parallel checkpoint like any other: the same loss as the single-rank one
  "$STRATA" eval --checkpoint "$W/a/ckpt-00000010" --json > "$W/ea.json"
  "$STRATA" eval --checkpoint "$W/ref/ckpt-00000010" --json > "$W/er.json"
  "$TOOL" same "$W/er.json" "$W/ea.json" loss "$LOSS_RTOL" || fail "eval of the T=2 checkpoint differs"
  ;;
tpbad)
  # the tiny model has 2 heads
  expect2 4 "--tp 4 does not divide the model's 2 attention heads.*use a --tp that divides 2" --tp 4
  expect2 3 "the job has 3 ranks but --tp 2 x --pp 1 x --dp 1 = 2" "${TPM[@]}" --tp 2
  expect2 1 "--sequence-parallel .* but --tp is 1; add --tp 2 or more" --sequence-parallel
  expect2 2 "sequence of 15 tokens over --tp 2 ranks, but 15 is not divisible by 2" "${TPM[@]}" --tp 2 --sequence-parallel --seq-len 15
  expect2 1 "--recompute must be none, selective or full, got 'some'" --recompute some
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "PASS: $CASE"
