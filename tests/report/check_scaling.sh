#!/usr/bin/env bash
# check_scaling.sh STRATA OUT -- runs launch/scaling.sh --quick --repeats 2 --out OUT and checks
# its outputs:
# coll.csv has the right columns, rows for every op x transport x algorithm (rd for allreduce
# only; the --algo mpi baseline on the mpi transport), numeric positive busbw and wrong == 0 in
# every row; train.csv has a row per mode x layout (tensor-parallel ones included) with
# tokens/s > 0 and efficiency 1 for one rank, and its step time, simulated step and error ranges
# follow from the two runs of each layout; sim_vs_measured.csv's ratio and error agree with
# its step times and summary.md marks each layout within 10% or not; breakdown.csv shares sum
# to 1; every PNG starts with the PNG magic bytes; summary.md has
# its sections and the exact commands.
set -uo pipefail
STRATA="$1"; OUT="$2"
ROOT="${STRATA_SOURCE_DIR:?STRATA_SOURCE_DIR must point at the source tree}"
source "$ROOT/launch/lib/stats.sh" # strata_step_median: a run's median step, as scaling.sh takes it
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
rm -rf "$OUT"
STRATA_BIN="$STRATA" "$ROOT/launch/scaling.sh" --quick --repeats 2 --out "$OUT" || fail "scaling.sh --quick exited $?"
[ -f "$OUT/scaling.log" ] && tail -5 "$OUT/scaling.log"

# coll.csv
H="op,ranks,transport,algo,inplace,bytes,count,dtype,time_us,algbw_gbs,busbw_gbs,wrong"
[ "$(head -1 "$OUT/coll.csv")" = "$H" ] || fail "coll.csv header is '$(head -1 "$OUT/coll.csv")'"
bad="$(awk -F, -v h="$H" 'BEGIN { n = split(h, x, ",") } NR > 1 && (NF != n || $12 != "0" || !($11 + 0 > 0) || !($6 + 0 > 0)) { c++ } END { print c + 0 }' "$OUT/coll.csv")"
[ "$bad" = 0 ] || fail "$bad coll.csv rows have a wrong column count, wrong != 0 or busbw <= 0"
for op in allreduce reducescatter allgather; do
  for combo in mpi/ring mpi/auto mpi/mpi ofi:shm/ring ofi:shm/auto; do
    n="$(awk -F, -v op="$op" -v c="$combo" 'NR > 1 && $1 == op && $2 == 2 && ($3 "/" $4) == c && $5 == "false" { k++ } END { print k + 0 }' "$OUT/coll.csv")"
    # 1K..64K by x4 = 4 sizes
    [ "$n" = 4 ] || fail "coll.csv: $n out-of-place rows for $op $combo on 2 ranks, expected 4"
  done
done
for combo in mpi/rd ofi:shm/rd; do
  n="$(awk -F, -v c="$combo" 'NR > 1 && $1 == "allreduce" && ($3 "/" $4) == c { k++ } END { print k + 0 }' "$OUT/coll.csv")"
  [ "$n" = 8 ] || fail "coll.csv: $n allreduce $combo rows, expected 8 (4 sizes x 2 placements)"
done

# train.csv
TH="mode,layout,family,ranks,pp,dp,batch,microbatches,tokens_per_s,efficiency,step_s_median,comm_share,idle_share,sim_step_s,tokens_per_s_min,tokens_per_s_max,tp,runs,step_s_run_min,step_s_run_max,sim_step_s_run_min,sim_step_s_run_max,error_pct_run_min,error_pct_run_max"
[ "$(head -1 "$OUT/train.csv")" = "$TH" ] || fail "train.csv header is '$(head -1 "$OUT/train.csv")'"
for mode in strong weak; do
  for lay in pp1xdp1 pp1xdp2 pp2xdp1 pp1xdp4 pp4xdp1 pp2xdp2 tp2xpp1xdp1 tp2xpp1xdp2 tp2xpp2xdp1; do
    row="$(awk -F, -v m="$mode" -v l="$lay" '$1 == m && $2 == l' "$OUT/train.csv")"
    [ -n "$row" ] || { fail "train.csv has no $mode $lay row"; continue; }
    awk -F, '{ exit !($9 + 0 > 0 && $11 + 0 > 0 && $4 == $17 * $5 * $6) }' <<< "$row" || fail "train.csv row '$row': tokens/s or step time not positive, or ranks != tp x pp x dp"
    # the median between the slowest and the fastest step's tokens/s
    awk -F, '{ exit !($15 + 0 > 0 && $15 <= $9 + 0.1 && $9 <= $16 + 0.1) }' <<< "$row" || fail "train.csv row '$row': tokens/s not within [min, max]"
  done
  # two runs per layout: the step time is their median steps' median (mean of two), within their range;
  # the simulated step likewise; the error range is the runs' own errors, recomputed from
  # data/runs_<mode>_<layout>.txt ("median_step sim comm idle" per run) and each run's steps.jsonl
  for spec in 1x1x2:pp1xdp2 1x2x2:pp2xdp2 2x1x2:tp2xpp1xdp2; do
    lay="${spec#*:}"; IFS=x read -r tpn pp dp <<< "${spec%%:*}"
    row="$(awk -F, -v m="$mode" -v l="$lay" '$1 == m && $2 == l' "$OUT/train.csv")"
    rf="$OUT/data/runs_${mode}_$lay.txt"
    [ "$(wc -l < "$rf" 2>/dev/null)" = 2 ] || { fail "$rf should have 2 runs"; continue; }
    for r in 1 2; do
      rm1="$(strata_step_median "$OUT/runs/${mode}_tp${tpn}_pp${pp}_dp${dp}_r$r/steps.jsonl" 2)"
      awk -v a="$rm1" -v b="$(sed -n "${r}p" "$rf" | cut -d' ' -f1)" 'BEGIN { exit !(a == b && a > 0) }' || fail "$rf run $r: median step is not the run's own ($rm1)"
    done
    awk -F, -v rf="$rf" 'function near(a, b) { return (a - b) ^ 2 <= (1e-5 * b) ^ 2 }
      { while ((getline l < rf) > 0) { split(l, x, " "); n++; s[n] = x[1]; q[n] = x[2]; e[n] = 100 * (x[2] - x[1]) / x[1] }
        lo = e[1] < e[2] ? e[1] : e[2]; hi = e[1] < e[2] ? e[2] : e[1]
        exit !($18 == 2 && near($11, (s[1] + s[2]) / 2) && near($14, (q[1] + q[2]) / 2) && $19 <= $11 && $11 <= $20 &&
               $21 <= $14 && $14 <= $22 && ($23 - lo) ^ 2 <= 0.0026 && ($24 - hi) ^ 2 <= 0.0026) }' <<< "$row" ||
      fail "train.csv row '$row' does not follow from its runs ($(tr '\n' ';' < "$rf"))"
  done
  e="$(awk -F, -v m="$mode" '$1 == m && $2 == "pp1xdp1" { print $10 }' "$OUT/train.csv")"
  [ "$e" = "1.000" ] || fail "$mode 1-rank efficiency is '$e', expected 1.000"
  # strong: the batch is the same everywhere; weak: batch / ranks is constant
  nb="$(awk -F, -v m="$mode" '$1 == m { print (m == "strong" ? $7 : $7 / $4) }' "$OUT/train.csv" | sort -u | wc -l)"
  [ "$nb" = 1 ] || fail "$mode scaling batch is not $( [ "$mode" = strong ] && echo fixed || echo "proportional to ranks")"
done
# efficiency = tokens/s / (ranks * 1-rank tokens/s), recomputed
awk -F, 'NR > 1 { if ($2 == "pp1xdp1") b[$1] = $9; r[NR] = $0 }
         END { for (i in r) { split(r[i], f, ","); e = f[9] / (f[4] * b[f[1]]); if (e - f[10] > 0.001 || f[10] - e > 0.001) { print "bad efficiency: " r[i]; bad = 1 } } exit bad }' "$OUT/train.csv" || fail "efficiency column does not match tokens/s"

# breakdown.csv
[ "$(head -1 "$OUT/breakdown.csv")" = "layout,ranks,compute_share,comm_share,idle_share" ] || fail "breakdown.csv header"
[ "$(($(wc -l < "$OUT/breakdown.csv") - 1))" = 9 ] || fail "breakdown.csv should have 9 layouts"

# sim_vs_measured.csv: every multi-rank run (the calibrated cpu profile), ratio and error
# recomputed from the two step times; summary.md's verdict per layout follows the error
[ "$(head -1 "$OUT/sim_vs_measured.csv")" = "mode,layout,ranks,measured_step_s,sim_step_s,ratio,error_pct,runs,error_pct_run_min,error_pct_run_max" ] || fail "sim_vs_measured.csv header"
[ "$(($(wc -l < "$OUT/sim_vs_measured.csv") - 1))" = 16 ] || fail "sim_vs_measured.csv should have 16 rows (8 multi-rank layouts x 2 modes)"
awk -F, 'NR > 1 { r = $4 / $5; e = 100 * ($5 - $4) / $4; if (r - $6 > 0.001 || $6 - r > 0.001 || e - $7 > 0.051 || $7 - e > 0.051) { print "bad row: " $0; bad = 1 } } END { exit bad }' "$OUT/sim_vs_measured.csv" || fail "sim_vs_measured.csv ratio or error does not match its step times"
while IFS=, read -r mode lay ranks meas sim ratio err nruns elo ehi; do
  [ "$mode" = mode ] && continue
  want=no; awk -v e="$err" 'BEGIN { exit !(e <= 10 && e >= -10) }' && want=yes
  grep -qE "^\| $mode \| $lay \| $ranks \| .* \[[-+][0-9.]+\.\.[-+][0-9.]+\] \| $want \|\$" "$OUT/summary.md" || fail "summary.md lacks '$mode $lay ... [range] $want' (error $err%, runs $elo..$ehi)"
done < "$OUT/sim_vs_measured.csv"
grep -qE "^Within 10%: [0-9]+ of 16 layouts\.$" "$OUT/summary.md" || fail "summary.md lacks the within-10% count"
awk -F, 'NR > 1 { s = $3 + $4 + $5; if (s < 0.999 || s > 1.001 || $3 < 0) exit 1 }' "$OUT/breakdown.csv" || fail "breakdown shares do not sum to 1"

# PNGs
for png in busbw_allreduce_np2 busbw_reducescatter_np2 busbw_allgather_np2 strong_scaling weak_scaling breakdown; do
  f="$OUT/$png.png"
  [ -s "$f" ] || { fail "$f missing or empty"; continue; }
  [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$f is not a PNG"
done

# summary.md
for s in "## Environment" "| CPU |" "| load average at start |" "| load average at the end |" \
         "tokens/s median [slowest-fastest step]" "| Open MPI |" "| libfabric |" "## Collectives" \
         "## Training scaling" "| strong | pp2xdp2 | 4 |" "| weak | tp2xpp2xdp1 | 4 |" "## Commands" "bench allreduce -b 1K -e 64K" "--tp 1 --pp 2 --dp 2" "--tp 2 --pp 1 --dp 2"; do
  grep -qF -- "$s" "$OUT/summary.md" || fail "summary.md lacks '$s'"
done
# a load average above the core count at the start is warned about
l0="$(sed -nE 's/^\| load average at start \| ([0-9.]+) .*/\1/p' "$OUT/summary.md")"
if awk -v l="$l0" -v c="$(nproc)" 'BEGIN { exit !(l > c) }'; then
  grep -q "^\*\*WARNING: the load average at the start, $l0, exceeded the $(nproc) cores" "$OUT/summary.md" || fail "summary.md lacks the load warning (load $l0)"
fi
# no headline from one noisy cell: every auto / MPI ratio is moderate, or says "noisy"
bad="$(awk -F' [|] ' '/^\| [0-9]+ \| [0-9]+ \|/ && NF == 8 { r = $6; if (r != "noisy" && !(r + 0 > 0.2 && r + 0 < 5)) print }' "$OUT/summary.md")"
[ -z "$bad" ] || fail "summary.md has an auto / MPI ratio beyond 5x: $bad"
grep -qi "issue" "$OUT/summary.md" && fail "summary.md refers to an issue"
# usage error
"$ROOT/launch/scaling.sh" --bogus >/dev/null 2>&1; [ $? = 2 ] || fail "scaling.sh --bogus should exit 2"
for bad in 0 x 101; do
  msg="$("$ROOT/launch/scaling.sh" --repeats "$bad" 2>&1 >/dev/null)"; rc=$?
  [ "$rc" = 2 ] && grep -q "repeats must be an integer in \[1, 100\], got '$bad'" <<< "$msg" || fail "scaling.sh --repeats $bad: exit $rc, '$msg'"
done
[ "$fails" = 0 ] && echo "scaling_quick: all checks passed" || echo "scaling_quick: $fails checks failed"
[ "$fails" = 0 ]
