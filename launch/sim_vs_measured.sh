#!/usr/bin/env bash
# sim_vs_measured.sh -- simulated (calibrated `cpu` profile) against measured step time of
# `strata train` for the distributed-training test layouts (tests/dist.cmake) and tensor-parallel
# ones (T=2 with sequence parallelism or full recomputation; the name starts with T2). Prints a table:
#   layout | ranks | measured step s | simulated step s | error % | measured compute/rank s |
#   simulated compute/rank s | error %
# measured step = median of steps.jsonl step_s (slowest rank, wall) over steps 3..N;
# simulated step = report.json sim_step_s. Per-rank compute: report.json stages[].compute_s
# (step time minus communication and idle, i.e. forward + backward + optimizer, per step) against
# sim_compute_s + sim_optimizer_s, averaged over stages. The simulation models dedicated chips:
# with more ranks than cores (nproc) the wall step is inflated by time sharing, so the wall
# comparison is marked "oversub" there and only the per-rank compute comparison is meaningful
# (and even that is inflated by preemption inside a compute interval).
# Each layout runs REPS times (default 3); the table shows the medians over the runs of the
# measured and simulated figures (the cpu profile is re-calibrated at every start), the range
# of the step-time error over the runs (err_range%), and the calibrated per-op overhead and
# collective step latency of the last run.
# Usage: launch/sim_vs_measured.sh [STRATA]   env: STEPS (default 20), REPS (default 3), MODEL
#        (model flags), MPIRUN (the mpirun command line), MAXRANKS (skip layouts with more
#        ranks, e.g. MAXRANKS=$(nproc) for only the dedicated-core comparisons)
set -euo pipefail
source "$(dirname "$0")/lib/stats.sh"
STRATA="${1:-$(dirname "$0")/../build/bin/strata}"
STEPS="${STEPS:-20}"
REPS="${REPS:-3}"
read -r -a MODEL <<< "${MODEL:---layers 4 --heads 2 --dim 32 --ctx 16 --batch 24}"
read -r -a MPI <<< "${MPIRUN:-mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
CORES=$(nproc)
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
echo "# $(nproc) cores, load average: $(cut -d" " -f1-3 /proc/loadavg); $STEPS steps x $REPS runs; model: ${MODEL[*]}"
printf "%-26s %5s %12s %12s %8s %15s %12s %12s %8s %s\n" layout ranks meas_step_s sim_step_s err% err_range% \
  meas_comp_s sim_comp_s err% "op_us/coll_us"
while read -r np p d mm sched zero extra; do
  tp=$(echo "$extra" | sed -n 's/.*--tp \([0-9]*\).*/\1/p')
  rest=$(echo "$extra" | sed 's/--tp [0-9]*//; s/^ *//; s/ *$//')
  name="${tp:+T${tp}}P${p}D${d}M${mm}-${sched}-z${zero}${rest:+-x}"
  [ -n "${MAXRANKS:-}" ] && [ "$np" -gt "$MAXRANKS" ] && continue
  : >"$W/runs"
  for rep in $(seq "$REPS"); do
  out="$W/$name-$rep"
  # shellcheck disable=SC2086
  "${MPI[@]}" -np "$np" "$STRATA" train "${MODEL[@]}" --steps "$STEPS" --pp "$p" --dp "$d" \
    --microbatches "$mm" --schedule "$sched" --zero "$zero" $extra --device cpu --log-every 100000 \
    --out "$out" </dev/null >"$out.log" 2>&1 || { echo "$name: run failed"; cat "$out.log"; continue; }
  meas=$(grep -o '"step_s": [0-9.eE+-]*' "$out/steps.jsonl" | sed 's/.*: //' | tail -n +3 | strata_median)
  sim=$(grep -o '"sim_step_s": [0-9.eE+-]*' "$out/report.json" | head -1 | sed 's/.*: //')
  steps=$(grep -o '"steps_done": [0-9]*' "$out/report.json" | sed 's/.*: //')
  mc=$(grep -o '"compute_s": [0-9.eE+-]*' "$out/report.json" | sed 's/.*: //' |
       awk -v n="$steps" '{ s += $1; k++ } END { print s / k / n }')
  sc=$(grep '"sim_compute_s"' "$out/report.json" | sed 's/.*"sim_compute_s": \([0-9.eE+-]*\).*"sim_optimizer_s": \([0-9.eE+-]*\).*/\1 \2/' |
       awk '{ s += $1 + $2; k++ } END { print s / k }')
  echo "$meas $sim $mc $sc" >>"$W/runs"
  cal=$(grep -o '[0-9.e+-]* us per op\|collective step [0-9.e+-]* us' "$out.log" | head -2 |
        sed 's/ us per op//; s/collective step //; s/ us//' | paste -sd/ -) || cal=0
  done
  [ -s "$W/runs" ] || continue
  meas=$(awk '{ print $1 }' "$W/runs" | strata_median); sim=$(awk '{ print $2 }' "$W/runs" | strata_median)
  mc=$(awk '{ print $3 }' "$W/runs" | strata_median); sc=$(awk '{ print $4 }' "$W/runs" | strata_median)
  tag=""; [ "$np" -gt "$CORES" ] && tag=" oversub"
  range=$(awk '{ e = 100 * ($2 - $1) / $1; if (NR == 1 || e < lo) lo = e; if (NR == 1 || e > hi) hi = e }
               END { printf "%.1f..%.1f", lo, hi }' "$W/runs")
  awk -v n="$name" -v r="$np" -v m="$meas" -v s="$sim" -v mc="$mc" -v sc="$sc" -v t="$tag" -v c="${cal:-0}" -v g="$range" 'BEGIN {
    printf "%-26s %5d %12.6f %12.6f %7.1f%% %15s %12.6f %12.6f %7.1f%% %s%s\n", n, r, m, s, 100 * (s - m) / m, g,
      mc, sc, 100 * (sc - mc) / mc, c, t }'
done <<'LAYOUTS'
1 1 1 1 gpipe 0
2 1 2 2 1f1b 0 --bucket-mb 0.02
3 1 3 1 gpipe 1
2 2 1 4 1f1b 0
4 2 2 2 gpipe 1
4 2 2 1 1f1b 0
3 3 1 2 gpipe 0 --stage-layers 1,2,1
6 3 2 4 1f1b 0 --bucket-mb 0.02
4 4 1 4 1f1b 1
12 4 3 2 gpipe 0
2 1 1 2 1f1b 0 --tp 2
2 1 1 2 gpipe 0 --tp 2 --sequence-parallel
4 2 1 2 1f1b 0 --tp 2
4 1 2 2 1f1b 1 --tp 2 --recompute full
LAYOUTS
