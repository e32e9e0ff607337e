#!/usr/bin/env bash
# scaling.sh -- Strata's scaling benchmarks on this machine, as CSV, PNG plots (gnuplot,
# launch/plots/*.gp) and a Markdown summary that BENCHMARKS.md is regenerated from.
#
#   (a) collective sweeps: `strata bench` allreduce / reducescatter / allgather per transport
#       (mpi; ofi with the shm provider; ofi tcp on loopback in the full run) and algorithm
#       (ring, rd and rabenseifner [allreduce only], auto), with MPI's own collective (--algo mpi) as baseline,
#       on 2 and 4 ranks        -> coll.csv, busbw_<op>_np<N>.png
#   (b) training strong scaling (fixed global batch) and weak scaling (batch proportional to
#       ranks) over 1, 2, 4 ranks, layouts dp only, pp only, pp x dp, tp only (T = 2), tp x dp
#       and tp x pp
#                               -> train.csv, strong_scaling.png, weak_scaling.png
#   (c) time breakdown (compute / communication / pipeline idle) per layout, from the strong
#       runs' steps.jsonl comm_share / idle_share  -> breakdown.csv, breakdown.png
#   (d) measured vs simulated step time per layout, when report.json has sim_step_s (the
#       calibrated cpu profile), with the error and whether it is within 10%
#                               -> sim_vs_measured.csv, sim_vs_measured.png
#   (e) --ddp: the PyTorch DDP comparison (launch/ddp_bench.sh; slow) -> ddp.txt
#   and summary.md: Markdown tables of the key figures, the exact commands, the environment.
#
# Usage: launch/scaling.sh [--quick] [--ddp] [--out DIR] [--steps N] [--repeats N] [--publish]
#   --quick   tiny sizes, 2 ranks for the sweeps, a 4-layer toy model (well under a minute)
#   --out DIR output directory (default scaling-YYYYmmdd-HHMMSS)
#   --repeats N  runs of every training layout (default 1): its step time is the median of the
#             runs' median steps, its simulated step the median of theirs, with the range over
#             the runs beside each (one run cannot tell a layout's error from the machine's noise)
#   --publish after the run, copy summary.md, the CSVs and the PNGs to launch/results/ and
#             replace the scaling part of BENCHMARKS.md (between its `scaling.sh:begin` and
#             `scaling.sh:end` markers) with summary.md, image links pointing at launch/results/
#             (launch/benchmarks.sh --publish runs this script with --publish, among the others)
#   env STRATA_BUILD (default build) or STRATA_BIN (the strata binary); RESULTS_DIR (default
#   launch/results) and BENCHMARKS_MD (default BENCHMARKS.md) for --publish; full run only:
#   SCALING_NPS (sweep rank counts, default "2 4"), SCALING_MAXBYTES (default 64M).
#   The full run takes about 20-30 minutes on 2 cores (the 64M sweeps dominate).
# tokens/s of a run = sum(tokens) / sum(step_s) over the steps after the first WARMUP (2)
# (steps.jsonl); efficiency (strong) = tokens/s / (ranks x tokens/s of 1 rank), (weak) the same
# with each run's own batch. Exit status: 0 ok, 1 a run failed or a check reported wrong
# elements, 2 usage error.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/lib/stats.sh"
STRATA="${STRATA_BIN:-${STRATA_BUILD:-$ROOT/build}/bin/strata}"
QUICK=0; DDP=0; OUT=""; STEPS=""; PUBLISH=0; REPEATS=1
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --ddp) DDP=1 ;;
    --publish) PUBLISH=1 ;;
    --out) [ $# -ge 2 ] || { echo "scaling.sh: --out needs a directory" >&2; exit 2; }; OUT="$2"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    --steps) [ $# -ge 2 ] || { echo "scaling.sh: --steps needs a number" >&2; exit 2; }; STEPS="$2"; shift ;;
    --repeats) [ $# -ge 2 ] || { echo "scaling.sh: --repeats needs a number" >&2; exit 2; }; REPEATS="$2"; shift ;;
    --repeats=*) REPEATS="${1#--repeats=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "scaling.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$REPEATS" =~ ^[0-9]{1,3}$ ]] && [ "$REPEATS" -ge 1 ] && [ "$REPEATS" -le 100 ] ||
  { echo "scaling.sh: --repeats must be an integer in [1, 100], got '$REPEATS'" >&2; exit 2; }
[ -x "$STRATA" ] || { echo "scaling.sh: strata binary $STRATA not found: build first (cmake --build build) or set STRATA_BIN" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "scaling.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 2; }
OUT="${OUT:-scaling-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT/runs" "$OUT/data"
OUT="$(cd "$OUT" && pwd)"
PLOTS="$ROOT/launch/plots"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader,tcp
        --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
START_DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
CMDS="$OUT/commands.txt"; : > "$CMDS"
LOG="$OUT/scaling.log"; : > "$LOG"
FAIL=0
# run CMD...: logs the command, runs it with output to the log; records a failure.
run() {
  echo "$*" >> "$CMDS"
  if ! "$@" >> "$LOG" 2>&1; then echo "scaling.sh: FAILED: $* (see $LOG)" >&2; FAIL=1; return 1; fi
}

if [ "$QUICK" = 1 ]; then
  NPS="2"; MINB=1K; MAXB=64K; FACTOR=4; ITERS=(-n 2 -w 1)
  TRANSPORTS="mpi ofi:shm"
  MODEL=(--layers 4 --dim 32 --heads 2 --ctx 32); STEPS="${STEPS:-5}"; BATCH=8; WBATCH=4
else
  NPS="${SCALING_NPS:-2 4}"; MINB=1K; MAXB="${SCALING_MAXBYTES:-64M}"; FACTOR=2; ITERS=(-n 20 -w 5)
  TRANSPORTS="mpi ofi:shm ofi:tcp"
  MODEL=(--layers 4 --dim 128 --heads 4 --ctx 128); STEPS="${STEPS:-20}"; BATCH=16; WBATCH=8
fi
WARMUP=2

# ---- (a) collective sweeps ---------------------------------------------------------------
echo "== collective sweeps ($MINB..$MAXB, np $NPS, transports $TRANSPORTS)"
COLL="$OUT/coll.csv"
echo "op,ranks,transport,algo,inplace,bytes,count,dtype,time_us,algbw_gbs,busbw_gbs,wrong" > "$COLL"
# json2csv FILE TRANSPORT_LABEL: strata bench --json rows (one key per line) -> CSV rows.
json2csv() {
  awk -v tl="$2" '
    /"[a-z_]+":/ { line = $0; sub(/^[ \t]*"/, "", line); k = line; sub(/".*/, "", k)
                   v = line; sub(/^[^:]*:/, "", v); sub(/,[ \t]*$/, "", v); gsub(/"/, "", v); r[k] = v }
    /^[ \t]*}/ { if ("op" in r) printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", r["op"], r["ranks"], tl, r["algo"],
                   r["inplace"], r["bytes"], r["count"], r["dtype"], r["time_us"], r["algbw_gbs"], r["busbw_gbs"],
                   (r["wrong"] == "" ? "null" : r["wrong"]); delete r }' "$1"
}
for np in $NPS; do
  for op in allreduce reducescatter allgather; do
    for tr in $TRANSPORTS; do
      algos="ring auto"; [ "$op" = allreduce ] && algos="ring rd rabenseifner auto"
      [ "$tr" = mpi ] && algos="$algos mpi"
      for algo in $algos; do
        j="$OUT/data/bench_${op}_np${np}_${tr/:/_}_${algo}.json"
        case "$tr" in
          mpi) targs=(--transport mpi); envs=() ;;
          ofi:shm) targs=(--transport ofi --ofi-provider shm); envs=(env FI_PROVIDER=shm) ;;
          ofi:tcp) targs=(--transport ofi --ofi-provider tcp); envs=(env FI_PROVIDER=tcp FI_TCP_IFACE=lo) ;;
        esac
        run ${envs[@]+"${envs[@]}"} "${MPIRUN[@]}" -np "$np" "$STRATA" bench "$op" -b "$MINB" -e "$MAXB" \
          -f "$FACTOR" "${ITERS[@]}" --algo "$algo" "${targs[@]}" --json "$j" || continue
        json2csv "$j" "$tr" >> "$COLL"
      done
    done
  done
done
WRONG="$(awk -F, 'NR > 1 && $12 != "0" { n++ } END { print n + 0 }' "$COLL")"
[ "$WRONG" = 0 ] || { echo "scaling.sh: $WRONG collective rows have wrong elements (coll.csv)" >&2; FAIL=1; }
for np in $NPS; do
  for op in allreduce reducescatter allgather; do
    files=""; titles=""
    for key in $(awk -F, -v op="$op" -v np="$np" 'NR > 1 && $1 == op && $2 == np { print $3 "/" $4 }' "$COLL" | sort -u); do
      d="$OUT/data/busbw_${op}_np${np}_${key//[:\/]/_}.dat"
      awk -F, -v op="$op" -v np="$np" -v key="$key" 'NR > 1 && $1 == op && $2 == np && ($3 "/" $4) == key && $5 == "false" { print $6, $11 }' "$COLL" > "$d"
      files="$files $d"; titles="$titles $key"
    done
    [ -n "$files" ] && gnuplot -e "out='$OUT/busbw_${op}_np${np}.png'; files='${files# }'; titles='${titles# }'; ttl='$op busbw, $np ranks (out-of-place)'" "$PLOTS/busbw.gp"
  done
done

# ---- (b) training scaling ----------------------------------------------------------------
echo "== training scaling (${MODEL[*]}, $STEPS steps, strong batch $BATCH, weak batch $WBATCH per rank, $REPEATS run(s) each)"
TRAIN="$OUT/train.csv"
echo "mode,layout,family,ranks,pp,dp,batch,microbatches,tokens_per_s,efficiency,step_s_median,comm_share,idle_share,sim_step_s,tokens_per_s_min,tokens_per_s_max,tp,runs,step_s_run_min,step_s_run_max,sim_step_s_run_min,sim_step_s_run_max,error_pct_run_min,error_pct_run_max" > "$TRAIN"
CTX="$(printf '%s\n' "${MODEL[@]}" | awk 'p { print; exit } $0 == "--ctx" { p = 1 }')"
# launch/lib/stats.sh: a run's median step after the warm-up, its mean shares
med() { strata_step_median "$1" "$WARMUP"; }
share() { strata_share "$1" "$WARMUP" "$2"; }
simstep() { grep -o '"sim_step_s": *[0-9.eE+-]*' "$1" 2>/dev/null | head -1 | sed 's/.*: *//' || true; }
# layout_row RUNS_FILE STEPS_FILE TOKENS: from the runs' "median_step sim comm idle" lines (sim
# "-" when a run has none) and every step time of every run, "step tokens/s tokens/s_min
# tokens/s_max comm idle sim runs step_min step_max sim_min sim_max err_min err_max": the median
# of the runs' median steps and of their simulated steps ("-" without one), tokens/s from it with
# the slowest and fastest step of any run, mean shares, and the ranges over the runs (the error
# of each run against its own simulation, which calibrates anew)
layout_row() {
  awk -v tok="$3" -v sf="$2" "$STRATA_MEDIAN_AWK"'
    { n++; st[n] = $1; c += $3; id += $4
      if ($2 != "-" && $2 + 0 > 0 && $1 > 0) { k++; sim[k] = $2; e = 100 * ($2 - $1) / $1; if (k == 1 || e < elo) elo = e; if (k == 1 || e > ehi) ehi = e } }
    END { if (n == 0) exit 1
          m = median(st, n); lo = st[1]; hi = st[n]
          while ((getline x < sf) > 0) if (x > 0) { if (!fs || x < fs) fs = x; if (x > ss) ss = x }
          if (m <= 0 || ss <= 0) { printf "0 0 0 0 0 0 - %d 0 0 - - - -\n", n; exit }
          if (k) { sm = median(sim, k); printf "%s %.1f %.1f %.1f %.4f %.4f %s %d %s %s %s %s %.1f %.1f\n", m, tok / m, tok / ss, tok / fs, c / n, id / n, sm, n, lo, hi, sim[1], sim[k], elo, ehi }
          else printf "%s %.1f %.1f %.1f %.4f %.4f - %d %s %s - - - -\n", m, tok / m, tok / ss, tok / fs, c / n, id / n, n, lo, hi }' "$1"
}
# TxPxD:family (tensor-parallel x pipeline stages x replicas); names leave out tp1
LAYOUTS="1x1x1:single 1x1x2:dp 1x2x1:pp 2x1x1:tp 1x1x4:dp 1x4x1:pp 1x2x2:ppxdp 2x1x2:tpxdp 2x2x1:tpxpp"
for mode in strong weak; do
  base=""
  for lay in $LAYOUTS; do
    tpd="${lay%%:*}"; fam="${lay##*:}"
    IFS=x read -r tp pp dp <<< "$tpd"; n=$(( tp * pp * dp ))
    name="pp${pp}xdp${dp}"; [ "$tp" -gt 1 ] && name="tp${tp}x$name"
    if [ "$mode" = strong ]; then b=$BATCH; else b=$(( WBATCH * n )); fi
    m=1; if [ "$pp" -gt 1 ]; then m=$(( 2 * pp )); while [ $(( b / dp % m )) -ne 0 ] && [ "$m" -gt 1 ]; do m=$(( m - 1 )); done; fi
    runs="$OUT/data/runs_${mode}_$name.txt"; steps="$OUT/data/steps_${mode}_$name.txt"; : > "$runs"; : > "$steps"
    for r in $(seq 1 "$REPEATS"); do
      rd="$OUT/runs/${mode}_tp${tp}_pp${pp}_dp${dp}"; [ "$REPEATS" -gt 1 ] && rd="${rd}_r$r"
      rm -rf "$rd"
      args=(train "${MODEL[@]}" --batch "$b" --steps "$STEPS" --quiet --eval-tokens 128 --out "$rd")
      if [ "$n" -gt 1 ]; then
        run "${MPIRUN[@]}" -np "$n" "$STRATA" "${args[@]}" --tp "$tp" --pp "$pp" --dp "$dp" --microbatches "$m" --schedule 1f1b || continue
      else
        run "$STRATA" "${args[@]}" || continue
      fi
      sim="$(simstep "$rd/report.json")"
      echo "$(med "$rd/steps.jsonl") ${sim:--} $(share "$rd/steps.jsonl" comm_share) $(share "$rd/steps.jsonl" idle_share)" >> "$runs"
      strata_step_times "$rd/steps.jsonl" "$WARMUP" >> "$steps"
    done
    [ -s "$runs" ] || continue
    read -r st t tmin tmax cs is sim nr slo shi simlo simhi elo ehi <<< "$(layout_row "$runs" "$steps" "$(( b * CTX ))")" || continue
    [ "$sim" = - ] && sim="" simlo="" simhi="" elo="" ehi=""
    if [ "$n" = 1 ]; then base="$t"; fi
    eff="$(awk -v t="$t" -v b="$base" -v n="$n" 'BEGIN { if (b > 0) printf "%.3f", t / (n * b); else print "" }')"
    echo "$mode,$name,$fam,$n,$pp,$dp,$b,$m,$t,$eff,$st,$cs,$is,$sim,$tmin,$tmax,$tp,$nr,$slo,$shi,$simlo,$simhi,$elo,$ehi" >> "$TRAIN"
  done
  files=""; titles=""
  for fam in dp pp ppxdp tp tpxdp tpxpp; do
    d="$OUT/data/${mode}_${fam}.dat"
    awk -F, -v mo="$mode" -v f="$fam" 'NR > 1 && $1 == mo && ($3 == f || $3 == "single") { print $4, $9, $10 }' "$TRAIN" > "$d"
    files="$files $d"; titles="$titles $fam"
  done
  gnuplot -e "out='$OUT/${mode}_scaling.png'; files='${files# }'; titles='${titles# }'; ttl='$mode scaling: ${MODEL[*]}, batch $( [ "$mode" = strong ] && echo "$BATCH" || echo "$WBATCH x ranks")'" "$PLOTS/scaling.gp"
done

# ---- (c) breakdown, (d) simulated vs measured ---------------------------------------------
echo "layout,ranks,compute_share,comm_share,idle_share" > "$OUT/breakdown.csv"
awk -F, 'NR > 1 && $1 == "strong" { c = 1 - $12 - $13; printf "%s,%s,%.4f,%s,%s\n", $2, $4, c, $12, $13 }' "$TRAIN" >> "$OUT/breakdown.csv"
awk -F, 'NR > 1 { print $1, $3, $4, $5 }' "$OUT/breakdown.csv" > "$OUT/data/breakdown.dat"
gnuplot -e "out='$OUT/breakdown.png'; data='$OUT/data/breakdown.dat'" "$PLOTS/breakdown.gp"
# the error of the medians, with the range of the runs' own errors
echo "mode,layout,ranks,measured_step_s,sim_step_s,ratio,error_pct,runs,error_pct_run_min,error_pct_run_max" > "$OUT/sim_vs_measured.csv"
awk -F, 'NR > 1 && $14 != "" && $14 > 0 && $11 > 0 { printf "%s,%s,%s,%s,%s,%.3f,%.1f,%s,%s,%s\n", $1, $2, $4, $11, $14, $11 / $14, 100 * ($14 - $11) / $11, $18, $23, $24 }' "$TRAIN" >> "$OUT/sim_vs_measured.csv"
if [ "$(wc -l < "$OUT/sim_vs_measured.csv")" -gt 1 ]; then
  awk -F, 'NR > 1 && $1 == "strong" { print $2, $4, $5 }' "$OUT/sim_vs_measured.csv" > "$OUT/data/sim.dat"
  [ -s "$OUT/data/sim.dat" ] && gnuplot -e "out='$OUT/sim_vs_measured.png'; data='$OUT/data/sim.dat'" "$PLOTS/simvsmeas.gp"
fi

# ---- (e) PyTorch DDP ----------------------------------------------------------------------
if [ "$DDP" = 1 ]; then
  echo "== PyTorch DDP comparison (launch/ddp_bench.sh)"
  echo "STRATA_BUILD=$(dirname "$(dirname "$STRATA")") $ROOT/launch/ddp_bench.sh" >> "$CMDS"
  STRATA_BUILD="$(dirname "$(dirname "$STRATA")")" "$ROOT/launch/ddp_bench.sh" > "$OUT/ddp.txt" 2>&1 || { echo "scaling.sh: ddp_bench.sh failed (see $OUT/ddp.txt)" >&2; FAIL=1; }
fi

# ---- summary.md ---------------------------------------------------------------------------
S="$OUT/summary.md"
{
  echo "# Strata scaling benchmarks"
  echo
  echo "Generated by \`launch/scaling.sh$( [ "$QUICK" = 1 ] && echo " --quick")$( [ "$DDP" = 1 ] && echo " --ddp")$( [ "$REPEATS" -gt 1 ] && echo " --repeats $REPEATS")\` on $START_DATE."
  echo
  echo "## Environment"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') |"
  echo "| cores | $(nproc) |"
  echo "| load average at start | $LOAD_START |"
  echo "| load average at the end | $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| OPENBLAS_* | $(env | grep '^OPENBLAS_' | tr '\n' ' ' || true) |"
  echo "| Open MPI | $(mpirun --version 2>/dev/null | head -1) |"
  echo "| libfabric | $(fi_info --version 2>/dev/null | grep -m1 libfabric | sed 's/.*: *//' || echo unknown) |"
  echo "| kernel | $(uname -r) |"
  echo
  w_start="$(awk -v l="${LOAD_START%% *}" -v c="$(nproc)" 'BEGIN { if (l > c) printf "WARNING: the load average at the start, %s, exceeded the %d cores: other work shared them, so these figures are slower and noisier than on a quiet machine.", l, c }')"
  w_end="$(strata_load_warning)"
  [ -n "$w_start$w_end" ] && { echo; echo "**${w_start:-$w_end}**"; }
  echo
  echo "## Collectives: peak bus bandwidth (GB/s, out-of-place) and time at the smallest size"
  echo
  echo "| op | ranks | transport | algo | peak busbw GB/s | at bytes | time at $MINB (us) |"
  echo "|---|---|---|---|---|---|---|"
  awk -F, 'NR > 1 && $5 == "false" { k = $1 "|" $2 "|" $3 "|" $4; if (!(k in best) || $11 > best[k]) { best[k] = $11; at[k] = $6 }
           if (!(k in small) || $6 < sb[k]) { sb[k] = $6; small[k] = $9 } }
           END { for (k in best) { split(k, f, "|"); printf "| %s | %s | %s | %s | %.3f | %s | %.1f |\n", f[1], f[2], f[3], f[4], best[k], at[k], small[k] } }' "$COLL" | sort
  echo
  echo "### Against MPI's own collective"
  echo
  echo "busbw in GB/s (mean of the timed iterations, out of place); ratio = Strata / MPI_Allreduce; at 1 KiB"
  echo "and 4 KiB the times in microseconds (ratio = MPI time / Strata time). Each column is a separate"
  echo "mpirun, and this VM changes speed from run to run (2-4x at 256 KiB-4 MiB, see the collectives section"
  echo "of BENCHMARKS.md), so these ratios compare runs, not algorithms; the collectives table of"
  echo "BENCHMARKS.md (launch/benchmarks.sh) compares algorithms within one run."
  echo
  echo "One cell is one run: a ratio beyond 5x either way is shown as \"noisy\" (a hiccup in one of"
  echo "the two runs, not a property of the algorithm), never as a figure."
  echo
  echo "| ranks | bytes | ring (mpi) | auto (mpi) | MPI_Allreduce | auto / MPI (one run each) | ring ofi:shm | ofi:shm / mpi (ring) |"
  echo "|---|---|---|---|---|---|---|---|"
  awk -F, 'function ratio(r) { return (r > 0.2 && r < 5) ? sprintf("%.2f", r) : "noisy" }
           NR > 1 && $1 == "allreduce" && $5 == "false" { bw[$2 "|" $6 "|" $3 "|" $4] = $11; us[$2 "|" $6 "|" $3 "|" $4] = $9; nps[$2] = 1 }
           END { n = split("1024 4096 1048576 4194304 16777216 67108864", B, " ");
                 for (np in nps) for (i = 1; i <= n; i++) {
                   k = np "|" B[i]; km = k "|mpi|mpi"; kr = k "|mpi|ring"; ka = k "|mpi|auto"; ks = k "|ofi:shm|ring";
                   if (!(km in bw)) continue;
                   hs = 0; if (ks in bw) hs = 1;
                   if (B[i] <= 4096) {
                     r = 0; if (us[ka] > 0) r = us[km] / us[ka];
                     o = "-"; if (hs) o = sprintf("%.1f us", us[ks]);
                     printf "%s|%s|%.1f us|%.1f us|%.1f us|%s|%s|-\n", np, B[i], us[kr], us[ka], us[km], ratio(r), o;
                   } else {
                     r = 0; if (bw[km] > 0) r = bw[ka] / bw[km];
                     o = "-"; q = "-"; if (hs) { o = sprintf("%.2f", bw[ks]); if (bw[kr] > 0) q = sprintf("%.0f%%", 100 * bw[ks] / bw[kr]); }
                     printf "%s|%s|%.2f|%.2f|%.2f|%s|%s|%s\n", np, B[i], bw[kr], bw[ka], bw[km], ratio(r), o, q;
                   } } }' "$COLL" |
    sort -t'|' -k1,1n -k2,2n | sed 's/|/ | /g; s/^/| /; s/$/ |/'
  echo
  for f in $(cd "$OUT" && ls busbw_*.png); do echo "![${f%.png}]($f)"; done
  echo
  echo "## Training scaling (${MODEL[*]}, $STEPS steps, tokens/s after $WARMUP warm-up steps)"
  echo
  echo "| mode | layout | ranks | batch | micro-batches | tokens/s median [slowest-fastest step] | efficiency | median step (s) | comm | idle | sim step (s) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F, 'NR > 1 { printf "| %s | %s | %s | %s | %s | %.0f [%.0f-%.0f] | %s | %s | %.1f%% | %.1f%% | %s |\n", $1, $2, $4, $7, $8, $9, $15, $16, $10, $11, 100 * $12, 100 * $13, ($14 == "" ? "-" : $14) }' "$TRAIN"
  echo
  echo "tokens/s = tokens per step / median step time after the warm-up (with $REPEATS run(s) per layout, the"
  echo "median of the runs' median steps), with the range over every step of every run (launch/lib/stats.sh)."
  echo "Efficiency = tokens/s / (ranks x 1-rank tokens/s of the same mode)."
  echo "All ranks share $(nproc) cores: beyond $(nproc) ranks the runs are oversubscribed and the efficiency measures the cores, not Strata."
  echo
  for f in strong_scaling.png weak_scaling.png breakdown.png sim_vs_measured.png; do [ -f "$OUT/$f" ] && echo "![${f%.png}]($f)"; done
  if [ "$(wc -l < "$OUT/sim_vs_measured.csv")" -gt 1 ]; then
    echo
    echo "## Measured vs simulated step time"
    echo
    echo "Simulated: the run's report.json \`sim_step_s\` (the calibrated cpu profile, one chip per rank;"
    echo "where ranks share cores, the pipeline's compute shares them at the rates measured at start-up);"
    echo "error = (simulated - measured) / measured."
    echo "$REPEATS run(s) per layout: measured is the median of the runs' median steps, simulated the median"
    echo "of their simulated steps (each run calibrates its own profile), and the range is that of the"
    echo "runs' own errors."
    echo
    echo "| mode | layout | ranks | measured (s) | simulated (s) | measured / simulated | error [range over runs] | within 10% |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F, 'NR > 1 { e = $7 < 0 ? -$7 : $7; r = ($8 > 1 && $9 != "") ? sprintf(" [%+.1f..%+.1f]", $9, $10) : ""
                      printf "| %s | %s | %s | %s | %s | %s | %+.1f%%%s | %s |\n", $1, $2, $3, $4, $5, $6, $7, r, (e <= 10 ? "yes" : "no") }' "$OUT/sim_vs_measured.csv"
    awk -F, 'NR > 1 { n++; e = $7 < 0 ? -$7 : $7; if (e <= 10) k++ } END { printf "\nWithin 10%%: %d of %d layouts.\n", k, n }' "$OUT/sim_vs_measured.csv"
  fi
  if [ "$DDP" = 1 ] && [ -f "$OUT/ddp.txt" ]; then
    echo
    echo "## PyTorch DDP comparison (launch/ddp_bench.sh)"
    echo
    echo '```'
    cat "$OUT/ddp.txt" | tail -30
    echo '```'
  fi
  echo
  echo "## Commands"
  echo
  echo '```'
  while IFS= read -r l; do l="${l//$OUT\//OUT/}"; l="${l//$ROOT\//}"; printf '%s\n' "$l"; done < "$CMDS"
  echo '```'
} > "$S"
echo "wrote $OUT: $(cd "$OUT" && ls *.csv *.png summary.md | tr '\n' ' ')"

# ---- --publish: launch/results/ and the generated part of BENCHMARKS.md ---------------------
if [ "$PUBLISH" = 1 ]; then
  RES="${RESULTS_DIR:-$ROOT/launch/results}"; BM="${BENCHMARKS_MD:-$ROOT/BENCHMARKS.md}"
  grep -q '^<!-- scaling.sh:begin' "$BM" && grep -q '^<!-- scaling.sh:end' "$BM" ||
    { echo "scaling.sh: --publish: $BM has no scaling.sh:begin / scaling.sh:end markers" >&2; exit 1; }
  mkdir -p "$RES"
  # only this script's files: launch/benchmarks.sh keeps its own (bench_*.csv) beside them
  rm -f "$RES"/busbw_*.png "$RES"/{strong_scaling,weak_scaling,breakdown,sim_vs_measured}.png \
        "$RES"/{coll,train,breakdown,sim_vs_measured}.csv "$RES"/summary.md "$RES"/ddp.txt
  cp "$OUT"/*.png "$OUT"/*.csv "$OUT"/summary.md "$RES"/
  cp "$OUT/ddp.txt" "$RES"/ 2>/dev/null || true
  # Splice: keep BENCHMARKS.md up to and including the begin marker and from the end marker on;
  # in between, summary.md one heading level down, images from launch/results/.
  { sed '/^<!-- scaling.sh:begin/q' "$BM"
    sed -e 's/^#/##/' -e 's#](\([a-z_0-9]*\.png\))#](launch/results/\1)#' "$OUT/summary.md"
    sed -n '/^<!-- scaling.sh:end/,$p' "$BM"; } > "$BM.tmp" && mv "$BM.tmp" "$BM"
  echo "published to $RES and $BM"
fi
[ "$FAIL" = 0 ] || { echo "scaling.sh: some runs failed (see $LOG)" >&2; exit 1; }
