# launch/lib/stats.sh -- the figures every benchmark script derives the same way; sourced by
# launch/ddp_bench.sh, launch/tp_bench.sh, launch/scaling.sh and launch/sim_vs_measured.sh (bash).
#
# Training figures come from a run's steps.jsonl, skipping the first WARMUP steps, and are
# medians: one slow step (a page fault storm, another job's burst) moves a mean but not them.
#   strata_step_median FILE WARMUP       median step_s
#   strata_tps FILE WARMUP TOKENS        tokens/s = TOKENS (per step) / median step_s
#   strata_tps_spread FILE WARMUP TOKENS "MEDIAN MIN MAX" tokens/s (MIN from the slowest step,
#                                        MAX from the fastest)
#   strata_share FILE WARMUP KEY         mean of a per-step share (comm_share, idle_share)
# Medians:
#   strata_median                        the median of the numbers on stdin, one per line (0 when
#                                        there are none)
#   STRATA_MEDIAN_AWK                    awk source of median(a, n): sorts a[1..n] in place and
#                                        returns its median; put it first in an awk program
# Over rounds of a benchmark:
#   STRATA_MED_AWK                       awk source of med(k): the values v[k, 1..cnt[k]] as
#                                        "median [min-max]" ("none" when there are none); put it
#                                        first in an awk program
# The machine:
#   strata_load_warning                  prints "WARNING: load average L exceeds the N cores ..."
#                                        (to stdout, for summaries) when the 1-minute load
#                                        average is above the core count; nothing otherwise

# step_s of the steps after the warm-up, one per line
strata_step_times() {
  awk -v w="$2" 'NR > w { s = $0; if (sub(/.*"step_s": */, "", s)) { sub(/[,}].*/, "", s); print s } }' "$1"
}

strata_median() {
  sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

strata_step_median() { strata_step_times "$1" "$2" | strata_median; }

strata_tps_spread() {
  strata_step_times "$1" "$2" | sort -g |
    awk -v tok="$3" '{ a[NR] = $1 }
      END { if (NR == 0 || a[1] <= 0) { print "0 0 0"; exit }
            m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
            printf "%.1f %.1f %.1f\n", tok / m, tok / a[NR], tok / a[1] }'
}

strata_tps() { strata_tps_spread "$1" "$2" "$3" | cut -d' ' -f1; }

strata_share() {
  awk -v w="$2" -v k="\"$3\": *" 'NR > w && $0 ~ k { s = $0; sub(".*" k, "", s); sub(/[,}].*/, "", s); t += s; n++ }
    END { printf "%.4f", n ? t / n : 0 }' "$1"
}

# shellcheck disable=SC2016
STRATA_MEDIAN_AWK='
function median(a, n,   i, j, t) {
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'

# shellcheck disable=SC2016
STRATA_MED_AWK="$STRATA_MEDIAN_AWK"'
function med(k,   n, i, a, m) {
  n = cnt[k]
  if (n == 0) return "none"
  for (i = 1; i <= n; i++) a[i] = v[k, i]
  m = median(a, n)
  return sprintf("%g [%g-%g]", m, a[1], a[n])
}'

strata_load_warning() {
  local load cores
  load="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)"
  cores="$(nproc 2>/dev/null || echo 1)"
  awk -v l="$load" -v c="$cores" 'BEGIN { if (l > c) printf "WARNING: load average %s exceeds the %d cores: other work shares them, so the figures below are slower and noisier than on a quiet machine\n", l, c }'
}
