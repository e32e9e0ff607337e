#!/usr/bin/env bash
# demo.sh -- installs what is missing, builds, and runs Strata's main job on 4 simulated nodes:
# `strata train` with 2 pipeline stages x 2 data-parallel replicas (1F1B, 2 micro-batches) with
# strata train's defaults: the tiny model (4 layers, width 128, context 128) on the shipped
# corpus (data/fortunes.txt), 2000 steps of 16 x 128 bytes at lr 3e-3 (100 warm-up steps, cosine
# decay), about 3 minutes on 2 quiet cores, ending near 1.8 nats/byte (2.6 bits/byte) of
# validation loss. Then `strata eval` of the final checkpoint on the held-out split and a sample
# of text from it by `strata infer` on 2 pipeline stages (temperature 0.8, top-k 40).
# Usage: launch/demo.sh [RUN_DIR (default runs/demo)]   env DEMO_STEPS (default: strata train's
#   2000); STRATA_DEMO_NO_SETUP=1 skips the package check and the build and runs $STRATA_BUILD's
#   binary as it is (the ctest `launch_demo` does this, with a few steps)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ "${STRATA_DEMO_NO_SETUP:-0}" != 1 ]; then
  strata_install_packages "${STRATA_PACKAGES[@]}"
  strata_build
fi
cd "$STRATA_ROOT"
RUN="${1:-runs/demo}"
STEPS=()
[ -n "${DEMO_STEPS:-}" ] && STEPS=(--steps "$DEMO_STEPS")
STRATA="$STRATA_BUILD/bin/strata"
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl self,vader,tcp)
echo "[strata] training on 4 ranks: 2 stages x 2 replicas, 1F1B, ${DEMO_STEPS:-2000} steps -> $RUN" \
  "(load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores)"
t0=$(date +%s)
"${MPIRUN[@]}" -np 4 "$STRATA" train --pp 2 --dp 2 --microbatches 2 --schedule 1f1b \
  "${STEPS[@]}" --log-every 100 --out "$RUN"
echo "[strata] trained in $(( $(date +%s) - t0 )) s"
CKPT="$(ls -d "$RUN"/ckpt-* | sort | tail -1)"
echo "[strata] evaluating $CKPT on the held-out split"
"$STRATA" eval --checkpoint "$CKPT"
echo "[strata] a sample from $CKPT, generated on 2 pipeline stages (KV cache, temperature 0.8, top-k 40):"
echo "----"
PROMPT="The meaning of life is"
printf '%s' "$PROMPT"  # infer prints the continuation only
# infer's statistics line goes to stderr: kept aside and shown after the sample, not inside it
"${MPIRUN[@]}" -np 2 "$STRATA" infer --checkpoint "$CKPT" --prompt "$PROMPT" \
  --max-tokens 100 --temperature 0.8 --top-k 40 --seed 7 2>"$RUN/sample.err" || {  # 22 + 100 < context 128
  cat "$RUN/sample.err" >&2; exit 1; }
echo "----"
sed -n 's/^--- \[0\] /[strata] sample: /p' "$RUN/sample.err"
echo "[strata] run directory: $RUN (report.json, steps.jsonl, val.jsonl, report.pb, trace.json -> open in https://ui.perfetto.dev)"
