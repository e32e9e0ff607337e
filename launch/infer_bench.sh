#!/bin/bash
# infer_bench.sh -- inference speed of `strata infer` on a model with n_ctx 1024:
#   1. decode tokens/s with the KV cache against full recompute (--no-kv-cache), P = 1 and 2
#   2. time to first token of a follow-up turn: session (restored from disk by a new process)
#      against the same request sent statelessly with the whole ~1,000-token history (CLI; the
#      TTFT of the follow-up then includes the new process's first-touch costs);
#   3. the same through the engine API in one process (tests/infer_ttft_bench): follow-up with
#      the session resident in memory, reloaded from disk, and stateless.
# usage: launch/infer_bench.sh [BUILD_DIR] [WORK_DIR]
#        env: REPS=3, DIM=128, LAYERS=4, HEADS=4, TOKENS=256 (decode length); PREPARE_ONLY=1
#        only trains the model (WORK_DIR/run/ckpt-00000002, reused when present) and exits
# Lines: "P=p kv|recompute tokens/s: v1 v2 ...", "P=p session (restored from disk) ttft_s: ...",
# "P=p stateless (1000-token history) ttft_s: ..." (REPS values each, run i of one line paired
# with run i of the other), then infer_ttft_bench's "P=p context ...: ttft median of REPS ..." line.
# The model has random-ish weights (2 training steps): speed does not depend on the weights.
set -eu
BUILD=${1:-build}; WORK=${2:-/tmp/strata_infer_bench}
S=$BUILD/bin/strata; REPS=${REPS:-3}; TOKENS=${TOKENS:-256}; DIM=${DIM:-128}; LAYERS=${LAYERS:-4}; HEADS=${HEADS:-4}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader,tcp
     --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
mkdir -p "$WORK"
CK=$WORK/run/ckpt-00000002
if [ ! -f "$CK/model.safetensors" ]; then
  "$S" train --layers "$LAYERS" --dim "$DIM" --heads "$HEADS" --ctx 1024 --steps 2 --batch 2 \
    --out "$WORK/run" --quiet
fi
[ "${PREPARE_ONLY:-0}" = 1 ] && { echo "model: $CK"; exit 0; }
num() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p"; }
text() { head -c "$1" /dev/urandom | base64 -w0 | head -c "$1"; }
echo "# model: ${LAYERS}L ${HEADS}H ${DIM}C ctx 1024 vocab 256; $(nproc) cores; $(date -u +%FT%TZ)"
echo "## decode: 16-token prompt, $TOKENS generated tokens (tokens_per_s over the whole request)"
P16=$(text 16)
for np in 1 2; do
  kv=""; re=""
  for r in $(seq "$REPS"); do # interleaved, so run i of kv and of recompute see the same machine
    v=$("${MPI[@]}" -np $np "$S" infer --checkpoint "$CK" --prompt "$P16" --max-tokens "$TOKENS" --json | num tokens_per_s)
    kv="$kv $v"
    v=$("${MPI[@]}" -np $np "$S" infer --checkpoint "$CK" --prompt "$P16" --max-tokens "$TOKENS" --json --no-kv-cache | num tokens_per_s)
    re="$re $v"
  done
  echo "P=$np kv tokens/s:$kv"
  echo "P=$np recompute tokens/s:$re"
done
echo "## TTFT of a follow-up turn at ~1,000 tokens of context (history 980 + 20 new tokens, 1 generated)"
H=$(text 979); F=$(text 20)
for np in 1 2; do
  sv=""; tv=""
  for r in $(seq "$REPS"); do
    SD=$WORK/sessions_${np}_$r; rm -rf "$SD"
    "${MPI[@]}" -np $np "$S" infer --checkpoint "$CK" --prompt "$H" --max-tokens 1 --session b --session-dir "$SD" --json > "$WORK/t1.json"
    gen=$(sed -n 's/.*"token_ids": \[\([0-9]*\)\].*/\1/p' "$WORK/t1.json")
    s=$("${MPI[@]}" -np $np "$S" infer --checkpoint "$CK" --prompt "$F" --max-tokens 1 --session b --session-dir "$SD" --json | num ttft_s)
    hist=$(printf '%s' "$H" | od -An -tu1 | tr -s ' \n' ',,' | sed 's/^,//; s/,$//'),$gen,$(printf '%s' "$F" | od -An -tu1 | tr -s ' \n' ',,' | sed 's/^,//; s/,$//')
    t=$("${MPI[@]}" -np $np "$S" infer --checkpoint "$CK" --prompt-tokens "$hist" --max-tokens 1 --json | num ttft_s)
    sv="$sv $s"; tv="$tv $t"
  done
  echo "P=$np session (restored from disk) ttft_s:$sv"
  echo "P=$np stateless (1000-token history) ttft_s:$tv"
done
echo "## TTFT through the engine API (one process; median of $REPS)"
for np in 1 2; do
  rm -rf "$WORK/api_sessions"
  "${MPI[@]}" -np $np "$BUILD/tests/infer_ttft_bench" "$CK" "$WORK/api_sessions" 980 20 "$REPS"
done
