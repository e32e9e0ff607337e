#!/usr/bin/env bash
# demo.sh -- installs what is missing, builds, and runs Strata's main job on 4 simulated nodes:
# `strata train` with 2 pipeline stages x 2 data-parallel replicas (1F1B, 2 micro-batches) on the
# default model (4 layers, width 128, context 128) and corpus (data/fortunes.txt), 300 steps
# (a couple of minutes on 2 cores), then `strata eval` of the final checkpoint and text
# generated from it by `strata infer` on 2 pipeline stages.
# Usage: launch/demo.sh [RUN_DIR (default runs/demo)]   env DEMO_STEPS (default 300);
#   STRATA_DEMO_NO_SETUP=1 skips the package check and the build and runs $STRATA_BUILD's
#   binary as it is (the ctest `launch_demo` does this, with a few steps)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ "${STRATA_DEMO_NO_SETUP:-0}" != 1 ]; then
  strata_install_packages "${STRATA_PACKAGES[@]}"
  strata_build
fi
cd "$STRATA_ROOT"
RUN="${1:-runs/demo}"
STEPS="${DEMO_STEPS:-300}"
STRATA="$STRATA_BUILD/bin/strata"
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl self,vader,tcp)
echo "[strata] training on 4 ranks: 2 stages x 2 replicas, 1F1B, $STEPS steps -> $RUN"
"${MPIRUN[@]}" -np 4 "$STRATA" train --pp 2 --dp 2 --microbatches 2 --schedule 1f1b \
  --steps "$STEPS" --log-every 25 --out "$RUN"
CKPT="$(ls -d "$RUN"/ckpt-* | sort | tail -1)"
echo "[strata] evaluating $CKPT on the first 8 batches of the corpus"
"$STRATA" eval --checkpoint "$CKPT" --batches 8 --batch 8
echo "[strata] generating text from $CKPT on 2 pipeline stages (KV cache, temperature 0.8)"
"${MPIRUN[@]}" -np 2 "$STRATA" infer --checkpoint "$CKPT" --prompt "The meaning of life is" \
  --max-tokens 100 --temperature 0.8 --top-k 40 --seed 7   # 22 prompt bytes + 100 < context 128
echo "[strata] run directory: $RUN (report.json, steps.jsonl, report.pb, trace.json -> open in https://ui.perfetto.dev)"
