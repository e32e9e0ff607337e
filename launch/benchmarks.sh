#!/usr/bin/env bash
# benchmarks.sh -- every benchmark BENCHMARKS.md reports, with the peers it compares against, in
# one run on this machine: CSV and Markdown under launch/results/, and with --publish the
# generated blocks of BENCHMARKS.md rewritten from that run. It drives the existing tools and
# scripts (it does not copy them):
#   coll      all-reduce (what auto picks per size, and ring, rd, Rabenseifner) against
#             MPI_Allreduce and a blocking MPI_Sendrecv ring in the same mpirun, np 2 and 4;
#             the ofi transport (shm provider) against the mpi transport, np 2
#             (build/tests/coll_bench_allreduce; `strata bench --algo auto` names auto's choice)
#   tune      `strata bench allreduce --tune` for np 2, 3 and 4, then auto with that table against
#             every fixed algorithm and chunk and MPI_Allreduce, 1 KiB to 256 MiB (also against
#             the best column chosen on half the calls, timed on the other half), and in place
#             against out of place (the same input every call, and rewritten before each call)
#   train     single-rank training against PyTorch on one thread, runs alternating, GPT-2 and
#             Llama (build/tests/gpt2_bench, launch/torch_train_bench.py); the GEMM peak
#   gemm      the GEMM backends (worker/model/gemm.h: OpenBLAS, oneDNN) on one thread at the
#             10.8M model's products, which wins where and what auto picks; training tokens/s
#             of that model on each backend, runs alternating (build/tests/gpt2_bench
#             --gemm-shapes, STRATA_GEMM)
#   ddp       Strata D=2 against PyTorch DDP (gloo), communication efficiency, 1F1B bubble
#             (launch/ddp_bench.sh)
#   tp        tensor parallelism T=2 against data parallelism D=2, same model and global batch,
#             with the tensor-parallel communication share apart from the data-parallel one
#             (launch/tp_bench.sh)
#   scaling   launch/scaling.sh: `strata bench` sweeps of every op, transport and algorithm
#             with --algo mpi as baseline, strong and weak training scaling, time breakdown,
#             measured against simulated step time, each training layout run --repeats times
#             (its own block of BENCHMARKS.md)
#   simulate  `strata simulate` predictions (deterministic, under a second each)
#   simacc    simulated against measured step time per layout (launch/sim_vs_measured.sh)
#   infer     decode with and without the KV cache, session time to first token
#             (launch/infer_bench.sh)
#   serve     `strata serve` over HTTP on 2 ranks: throughput and latency against concurrent
#             clients, session time to first token (launch/http_bench.sh)
#   tokenizer GPT-2 BPE encoding MB/s on English prose against npm's js-tiktoken in the same
#             run (launch/tokenizer_bench.sh; without node and npm its row says so)
#   ckpt      `strata train` of the 10.8M model without periodic checkpoints, with synchronous
#             (--no-ckpt-async) and with asynchronous checkpoints every 10 steps, interleaved
#   precision the demo's training for 500 steps in fp32, bf16 and bf16-sr: validation loss and
#             tokens/s against fp32 in the same repeat
# PyTorch figures need Debian's python3-torch for /usr/bin/python3; without it the run says
# so in its output and in the tables, and measures everything else.
#
# Statistics: every measured figure is the median over the repeats with its range
# [min-max]. A ratio is taken within one run -- the same mpirun, or runs interleaved in the same
# round -- and the per-run ratios are summarised the same way, so a ratio never compares two
# states of the machine. The environment (date, machine, cores, CPU, OPENBLAS_CORETYPE,
# OPENBLAS_L2_SIZE, Open MPI, libfabric, PyTorch, compiler, git commit, load) is recorded.
#
# Usage: launch/benchmarks.sh [--quick] [--publish] [--only LIST] [--repeats N] [--out DIR]
#   --quick      small sizes and models, 2 repeats: every table in a few minutes (5.5-6.5
#                minutes measured with other builds keeping the load at 22-25 on 2 cores); its
#                figures show that the pipeline works and are not comparable with a full run
#   --publish    copy the run's CSV and Markdown to launch/results/ and replace each generated
#                block of BENCHMARKS.md (`<!-- benchmarks.sh:begin NAME -->` to
#                `<!-- benchmarks.sh:end NAME -->`; the sweeps through scaling.sh's own
#                markers) with this run's; only the blocks of the sections that ran
#   --only LIST  comma-separated sections (default: all, in the order above)
#   --repeats N  repeats per figure (default 5; --quick 2)
#   --out DIR    the run's directory (default launch/results/run-YYYYmmdd-HHMMSS, git-ignored)
#   env STRATA_BUILD (default build), PYTHON (default /usr/bin/python3), RESULTS_DIR (default
#   launch/results) and BENCHMARKS_MD (default BENCHMARKS.md): where --publish writes.
# A full run takes about an hour on 2 cores and should have the machine to itself.
# Exit status: 0 ok, 1 a benchmark failed (the others still run; OUT/logs/ has its output),
# 2 usage error.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${STRATA_BUILD:-$ROOT/build}"
BUILD="$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")"
STRATA="$BUILD/bin/strata"
PY="${PYTHON:-/usr/bin/python3}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/launch/results}"
BENCHMARKS_MD="${BENCHMARKS_MD:-$ROOT/BENCHMARKS.md}"
ALL_SECTIONS="coll tune train gemm ddp tp scaling simulate simacc infer serve tokenizer ckpt precision"
QUICK=0; PUBLISH=0; ONLY=""; REPEATS=""; OUT=""
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
die2() { echo "benchmarks.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --publish) PUBLISH=1 ;;
    --only) [ $# -ge 2 ] || die2 "--only needs a list of sections ($ALL_SECTIONS)"; ONLY="$2"; shift ;;
    --only=*) ONLY="${1#--only=}" ;;
    --repeats) [ $# -ge 2 ] || die2 "--repeats needs a number"; REPEATS="$2"; shift ;;
    --repeats=*) REPEATS="${1#--repeats=}" ;;
    --out) [ $# -ge 2 ] || die2 "--out needs a directory"; OUT="$2"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    -h|--help) usage; exit 0 ;;
    *) die2 "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
SECTIONS="$ALL_SECTIONS"
if [ -n "$ONLY" ]; then
  SECTIONS=""
  for s in ${ONLY//,/ }; do
    case " $ALL_SECTIONS " in *" $s "*) SECTIONS="$SECTIONS $s" ;; *) die2 "--only: unknown section '$s' (sections: $ALL_SECTIONS)" ;; esac
  done
fi
if [ -z "$REPEATS" ]; then REPEATS=5; [ "$QUICK" = 1 ] && REPEATS=2; fi
case "$REPEATS" in ''|*[!0-9]*) die2 "--repeats must be an integer in [1, 100], got '$REPEATS'" ;; esac
[ "$REPEATS" -ge 1 ] && [ "$REPEATS" -le 100 ] || die2 "--repeats must be an integer in [1, 100], got '$REPEATS'"
[ -x "$STRATA" ] || die2 "$STRATA not found: build first (launch/setup.sh) or set STRATA_BUILD"
if [ "$PUBLISH" = 1 ]; then
  [ -f "$BENCHMARKS_MD" ] || die2 "--publish: $BENCHMARKS_MD does not exist"
  for s in env $SECTIONS; do
    [ "$s" = scaling ] && m="scaling.sh:begin " || m="benchmarks.sh:begin $s "
    grep -qF "<!-- $m" "$BENCHMARKS_MD" || die2 "--publish: $BENCHMARKS_MD has no '<!-- $m-->' marker for section $s"
  done
fi
OUT="${OUT:-$ROOT/launch/results/run-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader,tcp
        --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
START_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ "$COMMIT" = unknown ] || git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || COMMIT="$COMMIT-dirty"
TORCH="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)"
MODE="full, $REPEATS repeats"; [ "$QUICK" = 1 ] && MODE="--quick (small sizes and models, not comparable with a full run), $REPEATS repeats"
# The environment in one line, at the head of every block (blocks of different runs may sit
# side by side in BENCHMARKS.md); the env block has the full table.
ENV_LINE="$(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
ENV_LINE="$ENV_LINE OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}, Open MPI $(mpirun --version 2>/dev/null | head -1 | sed 's/.*) //')"
ENV_LINE="$ENV_LINE, libfabric $(fi_info --version 2>/dev/null | sed -n 's/^libfabric: *//p' | head -1), PyTorch ${TORCH:-not installed}"
ENV_LINE="$ENV_LINE, load $(cut -d' ' -f1 /proc/loadavg) at the start"
# A run started with a raised scheduling priority (echo -20 > /proc/self/autogroup: its
# processes run ahead of the machine's other load) says so: the load average then counts
# processes that mostly waited.
AUTOGROUP_NICE=$(sed -n 's/.* nice //p' /proc/self/autogroup 2>/dev/null || true)
PRIORITY="default"
[ -n "$AUTOGROUP_NICE" ] && [ "$AUTOGROUP_NICE" != 0 ] && PRIORITY="autogroup nice $AUTOGROUP_NICE (ahead of the other load)"
[ "$PRIORITY" != default ] && ENV_LINE="$ENV_LINE, scheduling $PRIORITY"
FAIL=0
SECTION=""

# ---- helpers ---------------------------------------------------------------------------------
# show CMD...: the command as a reader would type it (paths relative to the source tree).
show() {
  local a out=""
  for a in "$@"; do
    case "$a" in *[[:space:]]*|'') a="'$a'" ;; esac
    out="$out $a"
  done
  out="${out# }"
  out="${out//${MPIRUN[*]}/\$MPIRUN}"
  out="${out//$BUILD\//build/}"; out="${out//$ROOT\//}"; out="${out//$OUT\//OUT/}"
  printf '%s\n' "$out"
}
# run_to FILE CMD...: records the command for the section's block and runs it, its output
# (stdout and stderr) to FILE and the section's log. A failure is reported and remembered.
run_to() {
  local f="$1"; shift
  show "$@" >> "$OUT/commands_$SECTION.txt"
  echo "+ $(show "$@")" >> "$OUT/logs/$SECTION.log"
  if "$@" > "$f" 2>&1; then cat "$f" >> "$OUT/logs/$SECTION.log"; return 0; fi
  cat "$f" >> "$OUT/logs/$SECTION.log"
  echo "benchmarks.sh: FAILED: $(show "$@") (output: $f)" >&2
  FAIL=1; return 1
}
# The awk functions every table uses: mr(list, fmt) formats a space-separated list of numbers as
# "median [min-max]" (just the value for one); med(list); lo(list); hi(list); cnt(list, op, x)
# counts the values satisfying op ("ge" or "le") x.
AWKLIB='
function _sort(list, a,   n, i, j, t) { n = split(list, a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t } return n }
function med(list,   a, n) { n = _sort(list, a); if (n == 0) return ""; return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function lo(list,   a, n) { n = _sort(list, a); return n ? a[1] : "" }
function hi(list,   a, n) { n = _sort(list, a); return n ? a[n] : "" }
function mr(list, fmt,   a, n) { n = _sort(list, a); if (n == 0) return "-"; if (n == 1 || a[1] == a[n]) return sprintf(fmt, med(list))
  return sprintf(fmt " [" fmt "-" fmt "]", med(list), a[1], a[n]) }
function cnt(list, op, x,   a, n, i, k) { n = _sort(list, a); for (i = 1; i <= n; i++) if ((op == "ge" && a[i] >= x) || (op == "le" && a[i] <= x)) k++; return k + 0 }
function nval(list,   a) { return _sort(list, a) }
function human(b) { if (b >= 1048576) return sprintf("%d MiB", b / 1048576); if (b >= 1024) return sprintf("%d KiB", b / 1024); return b " B" }
'
# block_head NAME TITLE: starts OUT/bench_NAME.md with its provenance line.
block_head() {
  { if [ "$QUICK" = 1 ]; then
      echo "Measured by \`launch/benchmarks.sh --quick\` on $START_DATE (commit $COMMIT, $REPEATS repeats) on $ENV_LINE:"
      echo "small sizes and models that show the pipeline works, not figures to compare with a full run."
    else
      echo "Measured by \`launch/benchmarks.sh\` on $START_DATE (commit $COMMIT, $REPEATS repeats) on $ENV_LINE."
    fi
    echo; } > "$OUT/bench_$1.md"
}
# block_commands NAME: appends the section's commands (each once) to its block.
block_commands() {
  [ -s "$OUT/commands_$1.txt" ] || return 0
  { echo; echo "Commands (each run once per repeat):"; echo
    grep -q 'MPIRUN' "$OUT/commands_$1.txt" && echo "    MPIRUN='${MPIRUN[*]}'"
    awk '!seen[$0]++ { print "    " $0 }' "$OUT/commands_$1.txt"; } >> "$OUT/bench_$1.md"
}
torch_note() { echo "PyTorch: not installed (\`$PY\` cannot import torch; \`apt-get install python3-torch\`): its columns are empty."; }

# ---- env -------------------------------------------------------------------------------------
section_env() {
  local blas cc
  blas="$(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || dpkg-query -W -f='${Version}' libopenblas0 2>/dev/null || echo unknown)"
  cc="$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null | head -1)"
  cc="$("${cc:-cc}" --version 2>/dev/null | head -1), $(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null | head -1)"
  {
    echo "| | |"
    echo "|---|---|"
    echo "| date | $START_DATE |"
    echo "| machine | $(uname -n), $(uname -sr) |"
    echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) |"
    echo "| OPENBLAS_CORETYPE | ${OPENBLAS_CORETYPE:-unset} |"
    echo "| OPENBLAS_L2_SIZE | ${OPENBLAS_L2_SIZE:-unset} |"
    echo "| OpenBLAS | $blas |"
    echo "| compiler, build | $cc |"
    echo "| Open MPI | $(mpirun --version 2>/dev/null | head -1 | sed 's/.*) //') |"
    echo "| libfabric | $(fi_info --version 2>/dev/null | sed -n 's/^libfabric: *//p' | head -1) |"
    echo "| PyTorch | ${TORCH:-not installed (python3-torch)} |"
    echo "| git commit | $COMMIT |"
    echo "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
    echo "| scheduling | $PRIORITY |"
    echo "| mode | $MODE |"
    echo "| sections | ${SECTIONS# } |"
  } > "$OUT/bench_env.md"
  [ -n "$TORCH" ] || torch_note >> "$OUT/bench_env.md"
}

# ---- coll ------------------------------------------------------------------------------------
# coll_csv RUN NP TEST FILE: coll_bench_allreduce's table -> CSV rows (column names without the
# chunk size; a column of another transport than the default gets _ofi / _mpi).
coll_csv() {
  awk -v run="$1" -v np="$2" -v test="$3" '
    /^ *bytes/ { for (i = 2; i <= NF; i++) { c = $i; if (c ~ /\//) { b = c; sub(/\/.*/, "", b); t = c; sub(/^[^\/]*\//, "", t)
                   c = b; if (t ~ /^ofi/) c = b "_ofi"; else if (t ~ /^mpi/) c = b "_mpi" } col[i - 1] = c } nc = NF - 1; next }
    /^ *[0-9]/ { gsub(/[()]/, " "); for (i = 1; i <= nc; i++) printf "%s,%s,%s,%s,%s,%s,%s\n", run, np, test, col[i], $1, $(2 * i), $(2 * i + 1) }' "$4"
}
section_coll() {
  local minb=1K maxb=64M it=(-n 20 -w 3) np rep f
  [ "$QUICK" = 1 ] && { maxb=1M; it=(-n 5 -w 1); }
  local CB="$BUILD/tests/coll_bench_allreduce" D="$OUT/coll"
  [ -x "$CB" ] || { echo "benchmarks.sh: $CB missing (cmake --build build --target coll_bench_allreduce)" >&2; FAIL=1; return 1; }
  mkdir -p "$D"
  echo "run,np,test,column,bytes,busbw_gbs,time_us" > "$OUT/bench_coll.csv"
  : > "$D/auto.txt"
  for np in 2 4; do # what auto picks on this job, from strata bench's own "# auto:" line
    run_to "$D/auto_np$np.txt" "${MPIRUN[@]}" -np "$np" "$STRATA" bench allreduce -b 1K -e 1K -n 1 -w 0 --algo auto || return 1
    echo "$np $(sed -n 's/^# auto: //p' "$D/auto_np$np.txt")" >> "$D/auto.txt"
  done
  for rep in $(seq 1 "$REPEATS"); do
    for np in 2 4; do
      f="$D/np${np}_r$rep.txt"
      run_to "$f" "${MPIRUN[@]}" -np "$np" "$CB" -b "$minb" -e "$maxb" -f 4 "${it[@]}" -a ring,rd,rh,mpi,sendrecv &&
        coll_csv "$rep" "$np" mpi "$f" >> "$OUT/bench_coll.csv"
    done
    f="$D/ofi_r$rep.txt"
    run_to "$f" env FI_PROVIDER=shm "${MPIRUN[@]}" -np 2 -x FI_PROVIDER "$CB" -b "$minb" -e "$maxb" -f 4 "${it[@]}" \
      -a ring -c mpi:0,ofi:0 && coll_csv "$rep" 2 ofi "$f" >> "$OUT/bench_coll.csv"
  done
  block_head coll
  {
    echo "All-reduce, fp32 sum, out of place, buffers from \`coll_mem_alloc\`; each time is the median"
    echo "of the timed iterations of one run, then the median [range] over the $REPEATS runs; bus bandwidth ="
    echo "bytes / time x 2(p-1)/p. \"auto runs\" is"
    echo "the algorithm \`--algo auto\` picks at that size on this job (\`strata bench\`'s \`# auto:\` line:"
    sed 's/^\([0-9]*\) /np=\1: /; s/$/;/' "$D/auto.txt" | tr '\n' ' ' | sed 's/; $/)./'
    echo " Up to 4 KiB the figures are times (lower is better), from 1 MiB bus bandwidth in GB/s"
    echo "(higher is better). The ratios are taken within each run from the times (auto's time over"
    echo "MPI's up to 4 KiB, MPI's over auto's from 1 MiB, so above 1 is better there), against"
    echo "\`MPI_Allreduce\` and against a ring of blocking \`MPI_Sendrecv\` (\"sendrecv ring\", its time over"
    echo "auto's: the lowest over the runs)."
    echo
    echo "| np | size | auto runs | auto | MPI_Allreduce | auto / MPI, same run | goal | auto / sendrecv ring, lowest |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F, -v AUTO="$D/auto.txt" "$AWKLIB"'
      BEGIN { while ((getline l < AUTO) > 0) { split(l, w, " "); np = w[1]; sub(/^[0-9]+ /, "", l); na[np] = split(l, parts, ", ")
                for (i = 1; i <= na[np]; i++) { split(parts[i], q, " "); sub(/\/nt$/, "", q[1]); an[np, i] = q[1]; at[np, i] = q[3] } } }
      function algo(np, b,   i, a) { a = "ring"; for (i = 1; i <= na[np]; i++) if (b >= at[np, i]) a = an[np, i]; return a }
      NR > 1 && $3 == "mpi" { bw[$1, $2, $5, $4] = ($7 > 0 ? $5 / ($7 * 1e3) * 2 * ($2 - 1) / $2 : 0); us[$1, $2, $5, $4] = $7
                              runs[$1] = 1; nps[$2] = 1; sz[$5] = 1 }
      END {
        split("1024 4096 1048576 4194304 16777216 67108864", S, " ")
        for (np = 2; np <= 4; np += 2) for (k = 1; k <= 6; k++) { b = S[k]; if (!(b in sz) || !(np in nps)) continue
          a = algo(np, b); col = (a == "rabenseifner" ? "rh" : a); A = M = R = X = ""
          for (r in runs) { if (!((r, np, b, "mpi") in bw)) continue
            ta = us[r, np, b, col]; tm = us[r, np, b, "mpi"]; ts = us[r, np, b, "sendrecv"]
            if (b <= 4096) { A = A " " ta; M = M " " tm; if (tm > 0) R = R " " ta / tm }
            else { A = A " " bw[r, np, b, col]; M = M " " bw[r, np, b, "mpi"]; if (ta > 0) R = R " " tm / ta }
            if (ta > 0 && ts > 0) X = X " " ts / ta }
          n = nval(R)
          if (b <= 4096) { g = "<= 1.2x time"; ok = cnt(R, "le", 1.2); met = (med(R) <= 1.2); fa = mr(A, "%.1f") " us"; fm = mr(M, "%.1f") " us" }
          else { x = (b >= 16777216 ? 2 : 1.2); g = ">= " x "x"; ok = cnt(R, "ge", x); met = (med(R) >= x); fa = mr(A, "%.1f") " GB/s"; fm = mr(M, "%.1f") " GB/s" }
          printf "| %d | %s | %s | %s | %s | %s | %s: %s (%d of %d runs) | %s |\n", np, human(b), a, fa, fm, mr(R, "%.2f"), g,
            (met ? "met" : "**not met**"), ok, n, (X == "" ? "-" : sprintf("%.2f", lo(X))) } }' "$OUT/bench_coll.csv"
    echo
    echo "The ofi transport (libfabric, \`shm\` provider) against the mpi transport, ring, np=2, each at"
    echo "its default chunk size, in the same run:"
    echo
    echo "| size | mpi transport | ofi:shm | ofi / mpi, same run | goal |"
    echo "|---|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 && $3 == "ofi" { bw[$1, $5, $4] = ($7 > 0 ? $5 / ($7 * 1e3) : 0); us[$1, $5, $4] = $7; runs[$1] = 1; sz[$5] = 1 }
      END { split("1024 1048576 4194304 16777216 67108864", S, " ")
        for (k = 1; k <= 5; k++) { b = S[k]; if (!(b in sz)) continue; A = O = R = ""
          for (r in runs) { if (!((r, b, "ring") in bw)) continue
            if (b <= 4096) { A = A " " us[r, b, "ring"]; O = O " " us[r, b, "ring_ofi"] }
            else { A = A " " bw[r, b, "ring"]; O = O " " bw[r, b, "ring_ofi"]; if (us[r, b, "ring_ofi"] > 0) R = R " " us[r, b, "ring"] / us[r, b, "ring_ofi"] } }
          if (b <= 4096) printf "| %s latency | %s us | %s us | | |\n", human(b), mr(A, "%.1f"), mr(O, "%.1f")
          else printf "| %s | %s GB/s | %s GB/s | %s | >= 0.8: %s (%d of %d runs) |\n", human(b), mr(A, "%.1f"), mr(O, "%.1f"),
                 mr(R, "%.2f"), (med(R) >= 0.8 ? "met" : "**not met**"), cnt(R, "ge", 0.8), nval(R) } }' "$OUT/bench_coll.csv"
  } >> "$OUT/bench_coll.md"
  block_commands coll
}

# ---- tune: the decision table of `strata bench allreduce --tune`, and in place -------------
# tune_csv RUN NP MODE FILE: coll_bench_allreduce's table as run,np,mode,column,bytes,time_us
# (an in-place column is named after its out-of-place one with _ip).
tune_csv() {
  awk -v run="$1" -v np="$2" -v mode="$3" '
    /^ *bytes/ { n = 0; for (i = 2; i <= NF; i++) { if ($i == "ip") name[n] = name[n] "_ip"; else name[++n] = $i } nc = n; next }
    /^ *[0-9]/ { gsub(/[()]/, " "); for (k = 1; k <= nc; k++) printf "%s,%s,%s,%s,%s,%s\n", run, np, mode, name[k], $1, $(2 * k + 1) }' "$4"
}
# tune_table PLACE TABLE CSV: the markdown rows of auto against the best fixed column and MPI,
# out of place (PLACE out) or in place (in: the CSV's _ip columns), with the table's rule (the
# JSON table as coll_tune_save writes it: one rule object per line).
tune_table() {
  echo "| np | size | auto runs | auto time | best fixed (its name in the first repeat) | auto / best fixed | goal <= 1.05 | MPI / auto | goal >= 1 |"
  echo "|---|---|---|---|---|---|---|---|---|"
  awk -F, -v PL="$1" -v TB="$2" "$AWKLIB"'
    function jv(l, key,   m) { if (!match(l, "\"" key "\": *(\"[^\"]*\"|[0-9]+|true|false)")) return ""; m = substr(l, RSTART, RLENGTH)
                                 sub(/^"[^"]*": */, "", m); gsub(/"/, "", m); return m }
    BEGIN { S = PL == "in" ? "_ip" : ""
            while ((getline l < TB) > 0) { if (l !~ /"ranks"/ || jv(l, "placement") != PL) continue; k = jv(l, "ranks"); nr[k]++; c = jv(l, "chunk_bytes")
                                           rf[k, nr[k]] = jv(l, "from_bytes") + 0
                                           ra[k, nr[k]] = jv(l, "algo") (c > 0 ? "/" c / 1024 "K" : "") (jv(l, "stream") == "true" ? "/nt" : "") } }
    function rule(np, b,   i, a) { a = "built-in"; for (i = 1; i <= nr[np]; i++) if (b + 0 >= rf[np, i]) a = ra[np, i]; return a }
    NR > 1 && $3 == "same" { t[$1, $2, $5, $4] = $6; runs[$1] = 1; if (!(($2, $5) in seen)) { seen[$2, $5] = 1; key[++nk] = $2 SUBSEP $5 } }
    END { for (i = 1; i <= nk; i++) { split(key[i], kk, SUBSEP); np = kk[1]; b = kk[2]; A = R = M = ""; bn = ""
            for (r in runs) { if (!((r, np, b, "auto" S) in t)) continue; best = -1
              for (q in t) { split(q, z, SUBSEP); if (z[1] != r || z[2] != np || z[3] != b || z[4] ~ /^(auto|mpi)/) continue
                if ((S == "") == (z[4] ~ /_ip$/)) continue
                if (best < 0 || t[q] < best) { best = t[q]; nm = z[4] } }
              if (r == 1) { bn = nm; sub(/_ip$/, "", bn) }
              A = A " " t[r, np, b, "auto" S]; if (best > 0) R = R " " t[r, np, b, "auto" S] / best
              if (t[r, np, b, "auto" S] > 0) M = M " " t[r, np, b, "mpi" S] / t[r, np, b, "auto" S] }
            printf "| %d | %s | %s | %s us | %s | %s | %s (%d of %d) | %s | %s (%d of %d) |\n", np, human(b), rule(np, b), mr(A, "%.1f"), bn,
              mr(R, "%.2f"), (med(R) <= 1.05 ? "met" : "**not met**"), cnt(R, "le", 1.05), nval(R),
              mr(M, "%.2f"), (med(M) >= 1 ? "met" : "**not met**"), cnt(M, "ge", 1), nval(M) } }' "$3"
}
# tune_split CALLS: the markdown rows of auto against the best fixed column chosen on half the
# calls and timed on the other half, out of place and in place (CALLS: run,np,bytes,column,call,
# time_us, every timed call of the "same" runs). The fastest of nine medians is biased low: with
# candidates within noise of one another, the one that drew its fastest calls wins. Choosing on
# the even calls and timing on the odd ones (and the other way round; the geometric mean of the
# two ratios) removes that bias, as cross-validation does.
tune_split() {
  echo "| np | size | out of place: auto / best fixed, chosen on half | goal <= 1.05 | in place: auto / best fixed, chosen on half | goal <= 1.05 |"
  echo "|---|---|---|---|---|---|"
  awk -F, "$AWKLIB"'
    NR > 1 { h = $5 % 2; v[$1, $2, $3, $4, h] = v[$1, $2, $3, $4, h] " " $6; runs[$1] = 1
             if (!(($1, $2, $3, $4) in hasc)) { hasc[$1, $2, $3, $4] = 1; cols[$1, $2, $3] = cols[$1, $2, $3] " " $4 }
             if (!(($2, $3) in seen)) { seen[$2, $3] = 1; key[++nk] = $2 SUBSEP $3 } }
    # ratio(r, np, b, S): auto over the fixed column fastest on the other half, both timed on one
    # half, as the geometric mean over the two ways of splitting ("" when a column is missing).
    function ratio(r, np, b, S,   nc, c, i, h, best, bm, m, p, q) {
      nc = split(cols[r, np, b], c, " "); p = 1
      for (h = 0; h < 2; h++) { best = ""; bm = -1
        for (i = 1; i <= nc; i++) { if (c[i] ~ /^(auto|mpi)/ || (S == "") == (c[i] ~ /_ip$/)) continue
          m = med(v[r, np, b, c[i], h]) + 0; if (bm < 0 || m < bm) { bm = m; best = c[i] } }
        if (best == "" || !((r, np, b, "auto" S, 1 - h) in v)) return ""
        q = med(v[r, np, b, best, 1 - h]) + 0; if (q <= 0) return ""
        p *= (med(v[r, np, b, "auto" S, 1 - h]) + 0) / q }
      return sqrt(p) }
    function cell(np, b, S,   r, x, L) { L = ""; for (r in runs) { x = ratio(r, np, b, S); if (x != "") L = L " " x }
      return sprintf("%s | %s (%d of %d)", mr(L, "%.2f"), (nval(L) && med(L) <= 1.05 ? "met" : "**not met**"), cnt(L, "le", 1.05), nval(L)) }
    END { for (i = 1; i <= nk; i++) { split(key[i], kk, SUBSEP)
            printf "| %d | %s | %s | %s |\n", kk[1], human(kk[2]), cell(kk[1], kk[2], ""), cell(kk[1], kk[2], "_ip") } }' "$1"
}
section_tune() {
  # The comparisons' size ranges and timed calls per column: 40 up to 16 MiB, where a call is
  # short and its time often two-valued (a scheduler wake-up apart), 10 above (a call takes
  # 10-100 ms there).
  local minb=1K maxb=256M ranges=("1K 16M 40" "64M 256M 10") nps=(2 3 4) np rep f rg b e n
  [ "$QUICK" = 1 ] && { maxb=1M; ranges=("1K 1M 3"); nps=(2 3); }
  local CB="$BUILD/tests/coll_bench_allreduce" D="$OUT/tune"
  [ -x "$CB" ] || { echo "benchmarks.sh: $CB missing (cmake --build build --target coll_bench_allreduce)" >&2; FAIL=1; return 1; }
  mkdir -p "$D"
  local T="$OUT/coll_tune.json"
  rm -f "$T"
  echo "run,np,mode,column,bytes,time_us" > "$OUT/bench_tune.csv"
  echo "run,np,bytes,column,call,time_us" > "$OUT/bench_tune_calls.csv"
  for np in "${nps[@]}"; do # one table, rules for each rank count, measured before the comparisons
    run_to "$D/tune_np$np.txt" env STRATA_COLL_TUNE_FILE="$T" "${MPIRUN[@]}" -np "$np" -x STRATA_COLL_TUNE_FILE \
      "$STRATA" bench allreduce -b "$minb" -e "$maxb" --tune || return 1
  done
  for rep in $(seq 1 "$REPEATS"); do
    for np in "${nps[@]}"; do
      for rg in "${ranges[@]}"; do
        read -r b e n <<< "$rg"
        f="$D/np${np}_${b}_r$rep.txt"
        run_to "$f" env STRATA_COLL_TUNE_FILE="$T" "${MPIRUN[@]}" -np "$np" -x STRATA_COLL_TUNE_FILE "$CB" -b "$b" -e "$e" -f 4 \
          -n "$n" -w 2 -a auto,ring,rd,rh,mpi -c 256K,512K,1M,2M -i 1 -I 1 -R "$D/calls.csv" &&
          tune_csv "$rep" "$np" same "$f" >> "$OUT/bench_tune.csv" && sed "1d; s/^/$rep,$np,/" "$D/calls.csv" >> "$OUT/bench_tune_calls.csv"
        [ "$b" = 1K ] && b=1M # in place against out of place from 1 MiB
        f="$D/np${np}_${b}_fresh_r$rep.txt"
        run_to "$f" env STRATA_COLL_TUNE_FILE="$T" "${MPIRUN[@]}" -np "$np" -x STRATA_COLL_TUNE_FILE "$CB" -b "$b" -e "$e" -f 4 \
          -n "$n" -w 2 -a auto -i 1 -r 1 && tune_csv "$rep" "$np" fresh "$f" >> "$OUT/bench_tune.csv"
      done
    done
  done
  block_head tune
  {
    echo "\`strata bench allreduce --tune\` wrote one decision table (rules for 2, 3 and 4 ranks, mpi"
    echo "transport, fp32) at the start; then each repeat ran \`coll_bench_allreduce\` with that table"
    echo "(\`STRATA_COLL_TUNE_FILE\`): \`auto\` beside every fixed algorithm and chunk (ring and"
    echo "Rabenseifner at 256 KiB, 512 KiB, 1 MiB and 2 MiB chunks, recursive doubling) and"
    echo "\`MPI_Allreduce\`, out of place and in place, fp32 sum; each time is the median of the timed"
    echo "calls of one run (40 a column up to 16 MiB, 10 above; with 10, a column's median at 256 KiB"
    echo "on 2 ranks jumps between two values about 10 us apart as 5 of its calls fall on one or the"
    echo "other), the columns of a placement taking turns call by call in a new random"
    echo "order each round (\`-I 1\`), so a slow spell of the shared machine falls on every column compared,"
    echo "not on one (in place, the columns start from zeros). \"auto / best fixed\" is auto's time over"
    echo "the fastest fixed column's at that size and placement, within a run (goal <= 1.05); \"MPI /"
    echo "auto\" is MPI_Allreduce's time over auto's (goal >= 1.0); both as the median [range] over the"
    echo "repeats. \"auto runs\" is the table's rule for that size and placement (\"/nt\": its sums written"
    echo "with streaming stores; the fixed columns stream as the built-in rules do: in place always,"
    echo "out of place from 8 MiB)."
    echo
    echo "Out of place:"
    echo
    tune_table out "$T" "$OUT/bench_tune.csv"
    echo
    echo "In place (the in-place columns of the same runs, against the fastest fixed column in place):"
    echo
    tune_table in "$T" "$OUT/bench_tune.csv"
    echo
    echo "The same runs, the best fixed column chosen on half the calls: the fastest of nine medians is"
    echo "biased low (among columns within noise of one another, the one that drew the quickest calls"
    echo "wins), so here the fixed column fastest over the even rounds is timed on the odd rounds, auto"
    echo "on the odd rounds too, and the other way round; the figure is the geometric mean of the two"
    echo "ratios, median [range] over the repeats (every call: bench_tune_calls.csv.gz):"
    echo
    tune_split "$OUT/bench_tune_calls.csv"
    echo
    echo "In place against out of place, auto, from 1 MiB: \"same input\" is the convention above (and"
    echo "nccl-tests'): out of place reduces the same unchanged buffer every iteration, so a peer may"
    echo "read it from its own cache, while in place reduces the previous result; \"fresh input\""
    echo "(\`-r 1\`) rewrites the input before every call, untimed, as backward writes a gradient"
    echo "before data parallelism reduces it in place. Time in place over time out of place, median"
    echo "[range] over the repeats (goal <= 1.05):"
    echo
    echo "| np | size | same input | fresh input |"
    echo "|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 && $5 >= 1048576 && ($4 == "auto" || $4 == "auto_ip") { t[$1, $2, $3, $5, $4] = $6; runs[$1] = 1
        if (!(($2, $5) in seen)) { seen[$2, $5] = 1; key[++nk] = $2 SUBSEP $5 } }
      END { for (i = 1; i <= nk; i++) { split(key[i], kk, SUBSEP); np = kk[1]; b = kk[2]; S = F = ""
              for (r in runs) { if (t[r, np, "same", b, "auto"] > 0) S = S " " t[r, np, "same", b, "auto_ip"] / t[r, np, "same", b, "auto"]
                                if (t[r, np, "fresh", b, "auto"] > 0) F = F " " t[r, np, "fresh", b, "auto_ip"] / t[r, np, "fresh", b, "auto"] }
              printf "| %d | %s | %s | %s |\n", np, human(b), mr(S, "%.2f"), mr(F, "%.2f") } }' "$OUT/bench_tune.csv"
    echo
    echo "The decision table this run wrote:"
    echo
    sed 's/^/    /' "$T"
  } >> "$OUT/bench_tune.md"
  block_commands tune
}

# ---- train -----------------------------------------------------------------------------------
section_train() {
  local GB="$BUILD/tests/gpt2_bench" rep name flags steps f gemm
  [ -x "$GB" ] || { echo "benchmarks.sh: $GB missing (cmake --build build --target gpt2_bench)" >&2; FAIL=1; return 1; }
  local models=("10.8M model|--layers 6 --heads 6 --dim 384 --ctx 256 --batch 8|5 2"
                "tiny default|--layers 4 --heads 4 --dim 128 --ctx 128 --batch 8|20 2"
                "Llama at the 10.8M shape|--arch llama --layers 6 --heads 6 --kv-heads 2 --dim 384 --ffn 1024 --ctx 256 --batch 8|5 2")
  gemm=2048
  if [ "$QUICK" = 1 ]; then
    models=("small|--layers 2 --heads 2 --dim 64 --ctx 64 --batch 4|3 1" "tiny default|--layers 4 --heads 4 --dim 128 --ctx 128 --batch 8|3 1"
            "Llama small|--arch llama --layers 2 --heads 2 --kv-heads 1 --dim 64 --ffn 160 --ctx 64 --batch 4|3 1")
    gemm=384
  fi
  local D="$OUT/train"; mkdir -p "$D"
  echo "run,model,impl,params,tokens_per_s,gflops,peak_rss_mib,cpu_tokens_per_s" > "$OUT/bench_train.csv"
  echo "run,gemm_n,gflops" > "$D/gemm.csv"
  [ -n "$TORCH" ] || echo "benchmarks.sh: train: $(torch_note)"
  for rep in $(seq 1 "$REPEATS"); do
    for m in "${models[@]}"; do
      name="${m%%|*}"; flags="${m#*|}"; flags="${flags%|*}"; steps="${m##*|}"
      f="$D/strata_${name// /_}_r$rep.txt"
      # shellcheck disable=SC2086
      run_to "$f" env OPENBLAS_NUM_THREADS=1 "$GB" $flags --steps "${steps% *}" --warmup "${steps#* }" &&
        sed -n 's/.*params=\([0-9]*\).*/\1/p; s/.*tokens\/s=\([0-9.]*\) GFLOP\/s=\([0-9.]*\) cpu_tokens\/s=\([0-9.]*\).*peak_rss=\([0-9.]*\).*/\1 \2 \4 \3/p' "$f" |
        paste -sd' ' | awk -v r="$rep" -v n="$name" '{ printf "%s,%s,strata,%s,%s,%s,%s,%s\n", r, n, $1, $2, $3, $4, $5 }' >> "$OUT/bench_train.csv"
      if [ -n "$TORCH" ]; then
        f="$D/torch_${name// /_}_r$rep.txt"
        # shellcheck disable=SC2086
        run_to "$f" env OPENBLAS_NUM_THREADS=1 "$PY" "$ROOT/launch/torch_train_bench.py" $flags --vocab 256 \
          --steps "${steps% *}" --warmup "${steps#* }" &&
          sed -n 's/.*params=\([0-9]*\) .* tokens\/s=\([0-9.]*\) cpu_tokens\/s=\([0-9.]*\) .*peak_rss=\([0-9.]*\).*/\1 \2 \4 \3/p' "$f" |
          awk -v r="$rep" -v n="$name" '{ printf "%s,%s,torch,%s,%s,,%s,%s\n", r, n, $1, $2, $3, $4 }' >> "$OUT/bench_train.csv"
      fi
    done
    f="$D/gemm_r$rep.txt"
    run_to "$f" env OPENBLAS_NUM_THREADS=1 "$GB" --gemm-peak "$gemm" &&
      sed -n 's/.*, \([0-9.]*\) GFLOP\/s.*/\1/p' "$f" | awk -v r="$rep" -v n="$gemm" '{ print r "," n "," $1 }' >> "$D/gemm.csv"
  done
  block_head train
  {
    echo "One thread each (\`OPENBLAS_NUM_THREADS=1\`; PyTorch \`torch.set_num_threads(1)\`), random tokens,"
    echo "vocabulary 256, whole steps (forward, backward, AdamW); tokens/s over the timed steps after the"
    echo "warm-up. Strata and PyTorch alternate within each repeat; the ratio is taken per repeat, of"
    echo "wall-clock tokens/s and of tokens per second of the process's CPU time (which other work on a"
    echo "shared machine disturbs less; on a quiet one the two agree). The"
    echo "Llama row is worker/model/llama.c against the same Llama in plain PyTorch (RMSNorm, rotary"
    echo "positions, SwiGLU of --ffn, grouped-query attention with --kv-heads, untied head)."
    [ -n "$TORCH" ] || { echo; torch_note; }
    echo
    echo "| model | Strata tokens/s | PyTorch tokens/s | Strata / PyTorch, same repeat | same, per CPU second | Strata GFLOP/s (share of GEMM peak) | peak RSS Strata / PyTorch |"
    echo "|---|---|---|---|---|---|---|"
    awk -F, -v GEMM="$D/gemm.csv" "$AWKLIB"'
      BEGIN { while ((getline l < GEMM) > 0) { split(l, g, ","); if (g[3] + 0 > 0) P = P " " g[3] } }
      NR > 1 { k = $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
               if ($3 == "strata") { s[k] = s[k] " " $5; gf[k] = gf[k] " " $6; rs[k] = rs[k] " " $7; sv[k, $1] = $5; sc[k, $1] = $8; pa[k] = $4 }
               else { t[k] = t[k] " " $5; rt[k] = rt[k] " " $7; tv[k, $1] = $5; tc[k, $1] = $8 } }
      END { for (i = 1; i <= n; i++) { k = order[i]; R = RC = ""
              for (key in sv) { split(key, kk, SUBSEP); if (kk[1] != k || !((k, kk[2]) in tv)) continue
                if (tv[k, kk[2]] > 0) R = R " " sv[key] / tv[k, kk[2]]
                if (tc[k, kk[2]] > 0) RC = RC " " sc[key] / tc[k, kk[2]] }
              printf "| %s (%.1fM parameters) | %s | %s | %s | %s | %s (%.0f%%) | %.0f / %s MiB |\n", k, pa[k] / 1e6, mr(s[k], "%.0f"),
                (t[k] == "" ? "not measured" : mr(t[k], "%.0f")), (R == "" ? "-" : mr(R, "%.2f")), (RC == "" ? "-" : mr(RC, "%.2f")), mr(gf[k], "%.1f"),
                (P == "" ? 0 : 100 * med(gf[k]) / med(P)), med(rs[k]), (rt[k] == "" ? "-" : sprintf("%.0f", med(rt[k]))) }
            if (P != "") printf "\nSingle-thread GEMM peak (`gemm_f32`, the library `STRATA_GEMM` picks) on %s^3: %s GFLOP/s.\n", G, mr(P, "%.1f") }' G="$gemm" "$OUT/bench_train.csv"
  } >> "$OUT/bench_train.md"
  block_commands train
}

# ---- gemm ------------------------------------------------------------------------------------
section_gemm() {
  local GB="$BUILD/tests/gpt2_bench" D="$OUT/gemm" rep f b k order
  [ -x "$GB" ] || { echo "benchmarks.sh: $GB missing (cmake --build build --target gpt2_bench)" >&2; FAIL=1; return 1; }
  local model="--layers 6 --heads 6 --dim 384 --ctx 256 --batch 8" steps=5 warmup=2
  [ "$QUICK" = 1 ] && { model="--layers 2 --heads 2 --dim 64 --ctx 64 --batch 4"; steps=3; warmup=1; }
  # bf16: STRATA_GEMM=auto with --precision bf16 (bf16 products, fp32 accumulation);
  # torch-bf16: PyTorch's bf16 autocast on the same model (launch/torch_train_bench.py)
  local backends=(openblas onednn auto bf16) pflag
  [ -n "$TORCH" ] && backends+=(torch-bf16)
  mkdir -p "$D"
  echo "run,name,op,M,N,K,openblas,onednn,auto,bf16,bf16_kernel" > "$OUT/bench_gemm.csv"
  echo "run,backend,tokens_per_s,gflops,cpu_tokens_per_s,load1" > "$D/train.csv"
  for rep in $(seq 1 "$REPEATS"); do
    f="$D/shapes_r$rep.txt"
    # shellcheck disable=SC2086
    run_to "$f" "$GB" $model --gemm-shapes &&
      awk '/^gemm name=/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
             print v["name"] "," v["op"] "," v["M"] "," v["N"] "," v["K"] "," v["openblas"] "," v["onednn"] "," v["auto"] "," v["bf16"] "," v["bf16_kernel"] }' "$f" |
      sed "s/^/$rep,/" >> "$OUT/bench_gemm.csv"
    # the backends' training runs in a different order each repeat
    order=()
    for k in "${!backends[@]}"; do order+=("${backends[$(((k + rep) % ${#backends[@]}))]}"); done
    for b in "${order[@]}"; do
      f="$D/train_${b}_r$rep.txt"
      if [ "$b" = torch-bf16 ]; then
        # shellcheck disable=SC2086
        run_to "$f" env OPENBLAS_NUM_THREADS=1 "$PY" "$ROOT/launch/torch_train_bench.py" $model --vocab 256 \
          --steps "$steps" --warmup "$warmup" --precision bf16 &&
          sed -n 's/.* tokens\/s=\([0-9.]*\) cpu_tokens\/s=\([0-9.]*\) .*/\1 \2/p' "$f" |
          awk -v r="$rep" -v l="$(cut -d' ' -f1 /proc/loadavg)" '{ print r ",torch-bf16," $1 ",," $2 "," l }' >> "$D/train.csv"
        continue
      fi
      pflag="fp32"; [ "$b" = bf16 ] && pflag="bf16"
      # shellcheck disable=SC2086
      run_to "$f" env STRATA_GEMM="${b/bf16/auto}" "$GB" $model --steps "$steps" --warmup "$warmup" --precision "$pflag" &&
        sed -n 's/.* tokens\/s=\([0-9.]*\) GFLOP\/s=\([0-9.]*\) cpu_tokens\/s=\([0-9.]*\).*/\1 \2 \3/p' "$f" |
        awk -v r="$rep" -v b="$b" -v l="$(cut -d' ' -f1 /proc/loadavg)" '{ print r "," b "," $1 "," $2 "," $3 "," l }' >> "$D/train.csv"
    done
  done
  block_head gemm
  {
    echo "One thread (\`gemm_set_threads(1)\`, as every rank), \`OPENBLAS_CORETYPE\` as the machine sets it."
    echo "Products: \`gpt2_bench $model --gemm-shapes\`, GFLOP per second of the thread's CPU time"
    echo "(a loaded machine lowers it less than wall-clock time), median of 5 calls per repeat, the two"
    echo "libraries back to back for each product; \"oneDNN / OpenBLAS\" is taken within a repeat. \"auto\""
    echo "is what \`STRATA_GEMM=auto\` (the default) picks for that shape."
    echo
    echo "| product | op | M x N x K | OpenBLAS GFLOP/s | oneDNN GFLOP/s | oneDNN / OpenBLAS, same repeat | faster | auto | bf16 (gemm_bf16) | bf16 kernel alone |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 { k = $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k; op[k] = $3; dims[k] = $4 " x " $5 " x " $6; au[k] = $9 }
               o[k] = o[k] " " $7; d[k] = d[k] " " $8; if ($7 > 0) r[k] = r[k] " " $8 / $7; h[k] = h[k] " " $10; hk[k] = hk[k] " " $11 }
      END { for (i = 1; i <= n; i++) { k = order[i]
              printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k, op[k], dims[k], mr(o[k], "%.1f"), mr(d[k], "%.1f"),
                mr(r[k], "%.2f"), (med(r[k]) >= 1 ? "oneDNN" : "OpenBLAS"), au[k], mr(h[k], "%.1f"), mr(hk[k], "%.1f") } }' "$OUT/bench_gemm.csv"
    echo
    echo "Training, \`STRATA_GEMM=B gpt2_bench $model --steps $steps --warmup $warmup\` (forward, backward,"
    echo "AdamW; tokens/s after the warm-up), the three backends and bf16 (\`STRATA_GEMM=auto\` with"
    echo "\`--precision bf16\`: bf16 products, fp32 accumulation) alternating within each repeat. CPU"
    echo "tokens/s (per second of the process's CPU time) is less sensitive to a loaded machine than"
    echo "wall-clock tokens/s. Model GFLOP/s is gpt2_train_flops per second of CPU time; its share is of"
    echo "the fastest library's rate on the weight products of the same repeat (the median over the"
    echo "twelve forward and backward products of the faster library on each), CPU time both; for the"
    echo "bf16 row, of oneDNN's bf16 kernel alone on those products (inputs already in bf16)."
    echo
    echo "| STRATA_GEMM | tokens/s | / openblas, same repeat | CPU tokens/s | / openblas, same repeat | model GFLOP/s (CPU time) | share of the fastest GEMM rate (bf16: of the bf16 kernel) | load average (1 min) |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F, -v SH="$OUT/bench_gemm.csv" "$AWKLIB"'
      BEGIN { while ((getline l < SH) > 0) { split(l, g, ","); if (g[1] == "run" || g[2] !~ /^(d_)?(qkv|attn_proj|fc|fc_proj)(_in|_w)?$/) continue
                best = g[7] > g[8] ? g[7] : g[8]; rl[g[1]] = rl[g[1]] " " best; bl[g[1]] = bl[g[1]] " " g[11] }
              for (r in rl) { peak[r] = med(rl[r]); bpeak[r] = med(bl[r]) } }
      NR > 1 { k = $2; if (!(k in seen)) { seen[k] = 1 }; tv[k, $1] = $3; t[k] = t[k] " " $3; ld[k] = ld[k] " " $6
               cv[k, $1] = $5; c[k] = c[k] " " $5; cg = $3 > 0 ? $4 * $5 / $3 : 0; gf[k] = gf[k] " " cg
               pk = k == "bf16" ? bpeak[$1] : peak[$1]; if (pk > 0) sh[k] = sh[k] " " 100 * cg / pk }
      END { split("openblas onednn auto bf16", names, " ")
            for (i = 1; i <= 4; i++) { k = names[i]; if (!(k in seen)) continue; R = ""; RC = ""
              for (key in tv) { split(key, kk, SUBSEP); if (kk[1] == k && ("openblas", kk[2]) in tv && tv["openblas", kk[2]] > 0) {
                R = R " " tv[key] / tv["openblas", kk[2]]; RC = RC " " cv[key] / cv["openblas", kk[2]] } }
              printf "| %s | %s | %s | %s | %s | %s | %s%% | %s |\n", k, mr(t[k], "%.0f"), mr(R, "%.2f"), mr(c[k], "%.0f"), mr(RC, "%.2f"),
                mr(gf[k], "%.1f"), mr(sh[k], "%.0f"), mr(ld[k], "%.1f") } }' "$D/train.csv"
    awk -F, "$AWKLIB"'
      NR > 1 { tv[$2, $1] = $3; cv[$2, $1] = $5 }
      END { for (key in tv) { split(key, kk, SUBSEP); if (kk[1] == "bf16" && ("auto", kk[2]) in tv && tv["auto", kk[2]] > 0) {
              R = R " " tv[key] / tv["auto", kk[2]]; RC = RC " " cv[key] / cv["auto", kk[2]] } }
            if (R != "") printf "\nbf16 / fp32 (auto), same repeat: tokens/s %s, CPU tokens/s %s.\n", mr(R, "%.2f"), mr(RC, "%.2f")
            for (key in tv) { split(key, kk, SUBSEP); if (kk[1] == "torch-bf16") { T = T " " tv[key]; TC = TC " " cv[key]
              if (("bf16", kk[2]) in tv && tv[key] > 0) { P = P " " tv["bf16", kk[2]] / tv[key]; PC = PC " " cv["bf16", kk[2]] / cv[key] } } }
            if (P != "") printf "\nPyTorch %s, the same model under bf16 autocast (fp32 weights and AdamW, `launch/torch_train_bench.py --precision bf16`, one thread): %s tokens/s, %s per CPU second; Strata bf16 / PyTorch bf16 autocast, same repeat: tokens/s %s, CPU tokens/s %s (goal >= 1.35: %s, %d of %d repeats).\n", TV, mr(T, "%.0f"), mr(TC, "%.0f"), mr(P, "%.2f"), mr(PC, "%.2f"), (med(P) >= 1.35 ? "met" : "**not met**"), cnt(P, "ge", 1.35), nval(P)
            else if (TV == "") printf "\nPyTorch not installed: Strata bf16 was not compared with PyTorch bf16 autocast.\n" }' TV="$TORCH" "$D/train.csv"
  } >> "$OUT/bench_gemm.md"
  block_commands gemm
}

# ---- ddp -------------------------------------------------------------------------------------
section_ddp() {
  local D="$OUT/ddp" steps=12 batch=16 envs=()
  mkdir -p "$D"
  [ "$QUICK" = 1 ] && { steps=4; batch=16; envs=(MODEL="--layers 2 --heads 2 --dim 64 --ctx 64" BUBBLE_MODEL="--layers 2 --dim 64 --heads 2 --ctx 32 --batch 16"); }
  run_to "$D/ddp_bench.txt" env STRATA_BUILD="$BUILD" PYTHON="$PY" ROUNDS="$REPEATS" ${envs[@]+"${envs[@]}"} \
    "$ROOT/launch/ddp_bench.sh" "$steps" "$batch" || return 1
  echo "round,strata_d2,torch_ddp,single_a,single_b,speedup,efficiency_pct" > "$OUT/bench_ddp.csv"
  awk '/^ROUND / { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } split(v["single"], ab, "+"); sub(/%/, "", v["efficiency"])
         printf "%s,%s,%s,%s,%s,%s,%s\n", $2, v["strata_d2"], v["torch_ddp"], ab[1], ab[2], v["speedup"], v["efficiency"] }' \
    "$D/ddp_bench.txt" >> "$OUT/bench_ddp.csv"
  echo "microbatches,idle_pct,theory_pct" > "$OUT/bench_bubble.csv"
  awk '/^BUBBLE / { for (i = 2; i <= NF; i++) { split($i, kv, "="); sub(/%/, "", kv[2]); v[kv[1]] = kv[2] } print v["M"] "," v["idle"] "," v["theory"] }' \
    "$D/ddp_bench.txt" >> "$OUT/bench_bubble.csv"
  local model="${envs[0]:-}"; model="${model#MODEL=}"; [ -n "$model" ] || model="--layers 6 --heads 6 --dim 384 --ctx 256 (10.8M parameters)"
  block_head ddp
  {
    echo "Model $model, global batch $batch, $steps steps (tokens/s after 2 warm-up steps), $REPEATS rounds;"
    echo "in each round Strata D=2, PyTorch DDP and two independent single-rank Strata runs side by side"
    echo "run one after the other, and the ratios are taken within the round."
    grep -q "PyTorch not installed" "$D/ddp_bench.txt" && { echo; torch_note; }
    echo
    echo "| measurement | median [range] over the rounds | goal |"
    echo "|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 { d2 = d2 " " $2; if ($3 != "none") { t = t " " $3; sp = sp " " $6 } s = s " " ($4 + $5); e = e " " $7 }
      END { printf "| Strata D=2, tokens/s | %s | |\n", mr(d2, "%.0f")
            printf "| PyTorch DDP (gloo, 1 thread per rank), tokens/s | %s | |\n", (t == "" ? "not measured" : mr(t, "%.0f"))
            printf "| Strata D=2 / PyTorch DDP | %s | >= 1.2x: %s |\n", (sp == "" ? "-" : mr(sp, "%.2f")), (sp == "" ? "-" : (med(sp) >= 1.2 ? "met" : "**not met**"))
            printf "| two single-rank Strata runs side by side, tokens/s summed | %s | |\n", mr(s, "%.0f")
            printf "| communication efficiency: D=2 / that sum | %s%% | >= 97%%: %s (%d of %d rounds) |\n", mr(e, "%.1f"),
              (med(e) >= 97 ? "met" : "**not met**"), cnt(e, "ge", 97), nval(e) }' "$OUT/bench_ddp.csv"
    echo
    echo "Pipeline bubble, 1F1B on P=2 uniform stages, measured idle share (time blocked receiving from"
    echo "a neighbour over step time, over all ranks) against (P-1)/(M+P-1):"
    echo
    echo "| micro-batches M | idle share | theory | goal: within 5 points |"
    echo "|---|---|---|---|"
    awk -F, 'NR > 1 { d = $2 - $3; printf "| %s | %.1f%% | %.1f%% | %s |\n", $1, $2, $3, (d <= 5 && d >= -5 ? "met" : "**not met**") }' "$OUT/bench_bubble.csv"
  } >> "$OUT/bench_ddp.md"
  block_commands ddp
}

# ---- tp --------------------------------------------------------------------------------------
section_tp() {
  local D="$OUT/tp" steps=12 batch=16 envs=()
  mkdir -p "$D"
  [ "$QUICK" = 1 ] && { steps=4; envs=(MODEL="--layers 2 --heads 2 --dim 64 --ctx 64"); }
  run_to "$D/tp_bench.txt" env STRATA_BUILD="$BUILD" ROUNDS="$REPEATS" ${envs[@]+"${envs[@]}"} \
    "$ROOT/launch/tp_bench.sh" "$steps" "$batch" || return 1
  echo "round,layout,tokens_per_s,tp_comm_pct,dp_comm_pct" > "$OUT/bench_tp.csv"
  awk '/^RUN / { for (i = 3; i <= NF; i++) { split($i, kv, "="); sub(/%/, "", kv[2]); v[kv[1]] = kv[2] }
         printf "%s,%s,%s,%s,%s\n", $2, v["layout"], v["tokens_per_s"], v["tp_comm"], v["dp_comm"] }' \
    "$D/tp_bench.txt" >> "$OUT/bench_tp.csv"
  local model="${envs[0]:-}"; model="${model#MODEL=}"; [ -n "$model" ] || model="--layers 6 --heads 6 --dim 384 --ctx 256 (10.8M parameters)"
  block_head tp
  {
    echo "Model $model, global batch $batch, $steps steps (tokens/s after 2 warm-up steps), $REPEATS rounds;"
    echo "in each round D=2 and T=2 run one after the other (ABBA order over the rounds), and the ratio"
    echo "is taken within the round. Communication shares are of all ranks' summed time: tensor-parallel"
    echo "(the all-reduces inside forward and backward) apart from data-parallel (the gradient all-reduce)."
    echo
    echo "| measurement | median [range] over the rounds | goal |"
    echo "|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 { k = $1; if ($2 == "d2") { d[k] = $3; dd = dd " " $5 } else { t[k] = $3; tt = tt " " $4; td = td " " $5 } }
      END { for (k in d) { a = a " " d[k]; if (k in t) { b = b " " t[k]; if (d[k] > 0) r = r " " t[k] / d[k] } }
            printf "| D=2, tokens/s | %s | |\n", mr(a, "%.0f")
            printf "| T=2, tokens/s | %s | |\n", mr(b, "%.0f")
            printf "| T=2 / D=2 | %s | >= 0.85x: %s |\n", mr(r, "%.2f"), (r == "" ? "-" : (med(r) >= 0.85 ? "met" : "**not met**"))
            printf "| T=2: tensor-parallel communication share | %s%% | |\n", mr(tt, "%.1f")
            printf "| T=2: data-parallel communication share | %s%% | |\n", mr(td, "%.1f")
            printf "| D=2: data-parallel communication share | %s%% | |\n", mr(dd, "%.1f") }' "$OUT/bench_tp.csv"
  } >> "$OUT/bench_tp.md"
  block_commands tp
}

# ---- scaling ---------------------------------------------------------------------------------
section_scaling() {
  local args=(--out "$OUT/scaling" --repeats "$REPEATS")
  [ "$QUICK" = 1 ] && args+=(--quick)
  [ "$PUBLISH" = 1 ] && args+=(--publish)
  run_to "$OUT/logs/scaling_sh.txt" env STRATA_BIN="$STRATA" RESULTS_DIR="$RESULTS_DIR" BENCHMARKS_MD="$BENCHMARKS_MD" \
    "$ROOT/launch/scaling.sh" "${args[@]}" || return 1
  cp "$OUT/scaling/summary.md" "$OUT/bench_scaling.md"
}

# ---- simulate --------------------------------------------------------------------------------
# sim_fields FILE: "pp dp microbatches zero step_s tokens_per_s mfu peak_mem_bytes tp
# virtual_stages sequence_parallel recompute" of `strata simulate --json` (one key per line), from
# the "best" layout of a sweep.
sim_fields() {
  awk 'BEGIN { n = split("pp dp microbatches zero step_s tokens_per_s mfu peak_mem_bytes tp virtual_stages sequence_parallel recompute", K, " ") }
       /"best":/ { best = 1; delete v }
       { line = $0; gsub(/[ ",]/, "", line); split(line, kv, ":"); if (!(kv[1] in v)) v[kv[1]] = kv[2] }
       END { for (i = 1; i <= n; i++) printf "%s%s", v[K[i]], (i < n ? " " : "\n") }' "$1"
}
section_simulate() {
  local D="$OUT/simulate" i=0 c f
  mkdir -p "$D"
  local cmds=("--model gpt2-xl --device trn2 --nodes 64 --pp 4 --batch 512"
              "--model gpt2-xl --device trn2 --nodes 64 --sweep"
              "--model 7b --device trn2 --nodes 256 --batch 1024 --sweep"
              "--model 7b --device trn2 --nodes 1024 --batch 2048 --sweep")
  echo "command,pp,dp,microbatches,zero,step_s,tokens_per_s,mfu,peak_mem_bytes,tp,virtual_stages,sequence_parallel,recompute" > "$OUT/bench_simulate.csv"
  for c in "${cmds[@]}"; do
    i=$((i + 1)); f="$D/sim$i.json"
    # shellcheck disable=SC2086
    run_to "$f" "$STRATA" simulate $c --json || continue
    echo "strata simulate $c,$(sim_fields "$f" | tr ' ' ',')" >> "$OUT/bench_simulate.csv"
  done
  block_head simulate
  {
    echo "\`strata simulate\` is deterministic: one run each. A sweep's row is its best layout."
    echo
    echo "| command | layout | step | tokens/s | MFU | memory per device |"
    echo "|---|---|---|---|---|---|"
    awk -F, 'NR > 1 { printf "| `%s` | tp %s x pp %s x dp %s, M=%s%s, ZeRO-%s%s%s | %.4f s | %.2fM | %.1f%% | %.2f GiB |\n", $1, $10, $2, $3, $4, ($11 > 1 ? ", V=" $11 : ""), $5, ($12 == "true" ? ", SP" : ""), ($13 != "none" && $13 != "" ? ", recompute " $13 : ""), $6, $7 / 1e6, 100 * $8, $9 / 1073741824 }' \
      "$OUT/bench_simulate.csv"
  } >> "$OUT/bench_simulate.md"
}

# ---- simacc ----------------------------------------------------------------------------------
section_simacc() {
  local D="$OUT/simacc" envs=(REPS="$REPEATS" STEPS=40)
  mkdir -p "$D"
  [ "$QUICK" = 1 ] && envs=(REPS="$REPEATS" STEPS=6 MAXRANKS=4)
  run_to "$D/sim_vs_measured.txt" env "${envs[@]}" "$ROOT/launch/sim_vs_measured.sh" "$STRATA" || return 1
  echo "layout,ranks,measured_step_s,sim_step_s,err_pct,err_range_pct,timeshared" > "$OUT/bench_simacc.csv"
  awk '$1 ~ /^(T[0-9]+)?P[0-9]/ && $2 ~ /^[0-9]+$/ { e = $5; sub(/%/, "", e); printf "%s,%s,%s,%s,%s,%s,%s\n", $1, $2, $3, $4, e, $6, ($NF == "oversub" ? 1 : 0) }' \
    "$D/sim_vs_measured.txt" >> "$OUT/bench_simacc.csv"
  block_head simacc
  {
    echo "Tiny distributed-test model (\`--layers 4 --heads 2 --dim 32 --ctx 16 --batch 24\`: steps of a few"
    echo "milliseconds, where per-op overhead dominates), calibrated \`cpu\` profile. Measured step: median"
    echo "of steps.jsonl \`step_s\` after the first 2 steps; simulated: report.json \`sim_step_s\`; each the"
    echo "median of $REPEATS runs (the profile is re-calibrated at every start); the error range is over the"
    echo "runs. \"time-shared\": more ranks than the $(nproc) cores. Layouts named T2... are tensor-parallel"
    echo "(T = 2; \"-x\" marks extra flags: sequence parallelism, full recomputation, small buckets)."
    echo
    echo "| layout | ranks | measured step | simulated | error (medians) | error range | within 10% |"
    echo "|---|---|---|---|---|---|---|"
    awk -F, 'NR > 1 { e = $5 + 0; printf "| %s | %s%s | %.2f ms | %.2f ms | %+.1f%% | %s%% | %s |\n", $1, $2, ($7 ? " (time-shared)" : ""),
                 1e3 * $3, 1e3 * $4, e, $6, (e <= 10 && e >= -10 ? "yes" : "no") }' "$OUT/bench_simacc.csv"
  } >> "$OUT/bench_simacc.md"
  block_commands simacc
}

# ---- infer -----------------------------------------------------------------------------------
infer_env() { # the model and lengths of the infer and serve sections
  if [ "$QUICK" = 1 ]; then echo "LAYERS=2 HEADS=2 DIM=64 TOKENS=32"; else echo "LAYERS=4 HEADS=4 DIM=128 TOKENS=256"; fi
}
section_infer() {
  local D="$OUT/infer"; mkdir -p "$D"
  # shellcheck disable=SC2046
  run_to "$D/infer_bench.txt" env REPS="$REPEATS" $(infer_env) "$ROOT/launch/infer_bench.sh" "$BUILD" "$OUT/infer_work" || return 1
  local I="$D/infer_bench.txt"
  echo "p,kind,run,value" > "$OUT/bench_infer.csv"
  awk '/^P=[0-9]+ (kv|recompute) tokens\/s:/ { p = substr($1, 3); for (i = 4; i <= NF; i++) print p "," $2 "_tokens_per_s," i - 3 "," $i }
       /^P=[0-9]+ session \(restored/ { p = substr($1, 3); for (i = 7; i <= NF; i++) print p ",cli_session_ttft_s," i - 6 "," $i }
       /^P=[0-9]+ stateless \(/ { p = substr($1, 3); for (i = 6; i <= NF; i++) print p ",cli_stateless_ttft_s," i - 5 "," $i }
       /^P=[0-9]+ context / { p = substr($1, 3); l = $0; gsub(/,/, "", l); nw = split(l, w, " ")
         for (i = 1; i <= nw; i++) { if (w[i] == "session/memory") print p ",api_memory_ttft_s,median," w[i + 1]
           if (w[i] == "session/disk") print p ",api_disk_ttft_s,median," w[i + 1]; if (w[i] == "stateless") print p ",api_stateless_ttft_s,median," w[i + 1] } }' \
    "$I" >> "$OUT/bench_infer.csv"
  block_head infer
  {
    echo "Model $(sed -n 's/^# model: \([^;]*\);.*/\1/p' "$I") (trained 2 steps: speed does not depend on"
    echo "the weights), \`strata infer\` under mpirun, P pipeline stages. Decode: 16-token prompt, $(infer_env | sed 's/.*TOKENS=//')"
    echo "generated tokens, tokens/s over the whole request; the runs with and without the KV cache"
    echo "alternate and the speed-up is taken per pair."
    echo
    echo "| P | KV cache | full recompute | speed-up |"
    echo "|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 { v[$1, $2, $3] = $4; ps[$1] = 1; if ($3 + 0 > n) n = $3 + 0 }
      END { for (p = 1; p <= 2; p++) { if (!(p in ps)) continue; K = R = S = ""
              for (r = 1; r <= n; r++) { k = v[p, "kv_tokens_per_s", r]; q = v[p, "recompute_tokens_per_s", r]
                if (k != "") K = K " " k; if (q != "") R = R " " q; if (k > 0 && q > 0) S = S " " k / q }
              printf "| %d | %s tokens/s | %s tokens/s | %s |\n", p, mr(K, "%.0f"), mr(R, "%.0f"), mr(S, "%.1fx") } }' "$OUT/bench_infer.csv"
    echo
    echo "Time to first token of a follow-up turn at 1,000 tokens of context (980 of history + 20 new"
    echo "tokens, one generated) against the same request sent statelessly with the whole history:"
    echo
    echo "| path | P | with the session | stateless | speed-up | goal >= 10x |"
    echo "|---|---|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 { v[$1, $2, $3] = $4; ps[$1] = 1; if ($3 + 0 > n) n = $3 + 0 }
      function row(label, p, a, b,   A, B, S, r, x, y) { A = B = S = ""
        for (r = 1; r <= n; r++) { x = v[p, a, r]; y = v[p, b, r]; if (x != "") A = A " " 1e3 * x; if (y != "") B = B " " 1e3 * y; if (x > 0 && y > 0) S = S " " y / x }
        if ((p, a, "median") in v) { A = 1e3 * v[p, a, "median"]; B = 1e3 * v[p, b, "median"]; S = (A > 0 ? B / A : "") }
        if (A == "") return
        printf "| %s | %d | %s ms | %s ms | %s | %s |\n", label, p, mr(A, "%.2f"), mr(B, "%.1f"), mr(S, "%.1fx"), (med(S) >= 10 ? "met" : "not met") }
      END { for (p = 1; p <= 2; p++) if (p in ps) {
              row("engine API, session in memory", p, "api_memory_ttft_s", "api_stateless_ttft_s")
              row("engine API, session reloaded from disk", p, "api_disk_ttft_s", "api_stateless_ttft_s")
              row("CLI, a new `strata infer` process restoring the session from disk", p, "cli_session_ttft_s", "cli_stateless_ttft_s") } }' \
      "$OUT/bench_infer.csv"
    echo
    echo "(The engine API rows are the medians that \`build/tests/infer_ttft_bench\` computes over its"
    echo "$REPEATS repeats; the CLI row pays a new process's first touch of the model and the session files"
    echo "inside the measured time.)"
  } >> "$OUT/bench_infer.md"
  block_commands infer
}

# ---- serve -----------------------------------------------------------------------------------
section_serve() {
  local D="$OUT/serve" levels=(1 2 4 8 16) requests=200 lv=() rep
  mkdir -p "$D"
  [ "$QUICK" = 1 ] && { levels=(1 2 4); requests=20; }
  for rep in $(seq 1 "$REPEATS"); do lv+=("${levels[@]}"); done
  # shellcheck disable=SC2046
  run_to "$D/prepare.txt" env PREPARE_ONLY=1 $(infer_env) "$ROOT/launch/infer_bench.sh" "$BUILD" "$OUT/infer_work" || return 1
  rm -f "$D/load.jsonl"
  run_to "$D/http_bench.txt" env STRATA_BUILD="$BUILD" CHECKPOINT="$OUT/infer_work/run/ckpt-00000002" NP=2 SESSION_BENCH=1 \
    SESSION_REPS="$REPEATS" REQUESTS="$requests" MAX_TOKENS=16 OUT="$D/load.jsonl" "$ROOT/launch/http_bench.sh" "${lv[@]}" || return 1
  echo "connections,requests,errors,requests_per_s,tokens_per_s,p50_s,p99_s" > "$OUT/bench_serve.csv"
  awk '{ l = $0; gsub(/[{}"]/, "", l); n = split(l, kv, ","); for (i = 1; i <= n; i++) { split(kv[i], x, ":"); v[x[1]] = x[2] }
         print v["connections"] "," v["requests"] "," v["errors"] "," v["requests_per_s"] "," v["tokens_per_s"] "," v["p50_s"] "," v["p99_s"] }' \
    "$D/load.jsonl" >> "$OUT/bench_serve.csv"
  block_head serve
  {
    echo "\`mpirun -np 2 strata serve\` (2 pipeline stages) on the model of the inference section,"
    echo "\`build/tests/http_load\` as the client on loopback: $requests requests per level, 16 tokens each, the"
    echo "levels cycled $REPEATS times on the same server (median [range] over the cycles)."
    echo
    echo "| clients | requests/s | tokens/s | p50 | p99 | errors |"
    echo "|---|---|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 { c = $1; if (!(c in seen)) { seen[c] = 1; order[++n] = c } rq[c] = rq[c] " " $4; tk[c] = tk[c] " " $5
               p5[c] = p5[c] " " 1e3 * $6; p9[c] = p9[c] " " 1e3 * $7; er[c] += $3 }
      END { for (i = 1; i <= n; i++) { c = order[i]; printf "| %s | %s | %s | %s ms | %s ms | %d |\n", c, mr(rq[c], "%.0f"), mr(tk[c], "%.0f"),
              mr(p5[c], "%.1f"), mr(p9[c], "%.1f"), er[c] } }' "$OUT/bench_serve.csv"
    echo
    awk "$AWKLIB"'
      /^session follow-up/ { s = s " " 1e3 * $9; t = t " " 1e3 * $14; x = $NF; gsub(/[()x]/, "", x); r = r " " x; ctx = $4 }
      END { if (s != "") printf "Session follow-up over HTTP at %s tokens of context: time to first token %s ms with the session, %s ms stateless, speed-up %s (goal >= 10x: %s).\n",
              ctx, mr(s, "%.2f"), mr(t, "%.1f"), mr(r, "%.1fx"), (med(r) >= 10 ? "met" : "not met") }' "$D/http_bench.txt"
  } >> "$OUT/bench_serve.md"
  block_commands serve
}

title() {
  case "$1" in
    coll) echo "Collectives: all-reduce against MPI" ;; train) echo "Single-rank training against PyTorch" ;;
    ddp) echo "Data parallelism against PyTorch DDP, pipeline bubble" ;; simulate) echo "Simulated devices" ;;
    tp) echo "Tensor parallelism against data parallelism" ;;
    simacc) echo "Simulated against measured step time" ;; infer) echo "Inference" ;; serve) echo "Serving over HTTP" ;;
    tokenizer) echo "Tokenizer" ;; gemm) echo "GEMM backends" ;; ckpt) echo "Asynchronous checkpoints" ;;
    precision) echo "Mixed precision: validation loss and speed" ;;
  esac
}

# ---- tokenizer -------------------------------------------------------------------------------
section_tokenizer() {
  local D="$OUT/tokenizer" runs=5 r
  mkdir -p "$D"
  [ "$QUICK" = 1 ] && runs=2
  echo "repeat,impl,bytes,tokens,cold_cpu_mb_s,best_wall_mb_s,best_cpu_mb_s" > "$OUT/bench_tokenizer.csv"
  for r in $(seq 1 "$REPEATS"); do
    run_to "$D/run$r.csv" "$ROOT/launch/tokenizer_bench.sh" "$BUILD" "$ROOT/data/fortunes.txt" "$runs" || continue
    grep -v '^impl,' "$D/run$r.csv" | grep ',' | sed "s/^/$r,/" >> "$OUT/bench_tokenizer.csv"
  done
  block_head tokenizer
  {
    echo "GPT-2 BPE encoding of data/fortunes.txt (2.56 MB of English prose), one thread, the same ids"
    echo "(token counts below); each repeat runs both, Strata first. MB/s of CPU time (the process's own:"
    echo "the fair figure on a shared machine), the first encoding (cold caches) and the best of $runs;"
    echo "wall-clock beside it. Ratio: Strata over js-tiktoken within each repeat."
    echo
    echo "| implementation | tokens | cold MB/s (cpu) | best MB/s (cpu) | best MB/s (wall) | ratio (best cpu) |"
    echo "|---|---|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 { tok[$2] = $4; c[$2] = c[$2] " " $5; w[$2] = w[$2] " " $6; b[$2] = b[$2] " " $7; best[$1, $2] = $7; rep[$1] = 1 }
      END {
        for (r in rep) if ((r, "js-tiktoken") in best && best[r, "js-tiktoken"] > 0) ratio = ratio " " best[r, "strata"] / best[r, "js-tiktoken"]
        n = split("strata js-tiktoken", impls, " ")
        for (i = 1; i <= n; i++) { k = impls[i]; if (!(k in tok)) { printf "| %s | not measured (node or npm missing) | | | | |\n", k; continue }
          printf "| %s | %s | %s | %s | %s | %s |\n", k, tok[k], mr(c[k], "%.1f"), mr(b[k], "%.1f"), mr(w[k], "%.1f"), (k == "strata" && ratio != "") ? mr(ratio, "%.1fx") : "" } }' \
      "$OUT/bench_tokenizer.csv"
  } >> "$OUT/bench_tokenizer.md"
  block_commands tokenizer
}

# ---- ckpt ------------------------------------------------------------------------------------
# Three modes per repeat, one after the other (their order rotates over the repeats): no periodic
# checkpoint, --no-ckpt-async and --ckpt-async every 10 steps. tokens/s = steps x batch x seq_len
# over the wall time of the whole `strata train` process, so start-up, the end-of-run validation and
# the final checkpoint (written in every mode) count alike in all three.
section_ckpt() {
  local D="$OUT/ckpt" steps=20 model="--layers 6 --heads 6 --dim 384 --ctx 256 --batch 8" tokens what="the 10.8M model"
  local modes=("none|--ckpt-every 0" "sync|--ckpt-every 10 --no-ckpt-async" "async|--ckpt-every 10 --ckpt-async")
  [ "$QUICK" = 1 ] && { steps=20; model="--layers 2 --heads 2 --dim 64 --ctx 64 --batch 4"; what="a small model"; }
  mkdir -p "$D"
  tokens=$(awk -v m="$model" -v s="$steps" 'BEGIN { n = split(m, a, " "); for (i = 1; i < n; i++) { if (a[i] == "--ctx") t = a[i + 1]; if (a[i] == "--batch") b = a[i + 1] } print s * b * t }')
  echo "repeat,mode,wall_s,tokens_per_s,load1,train_s,ckpt_main_s" > "$OUT/bench_ckpt.csv"
  local rep k i name flags f t0 t1
  for rep in $(seq 1 "$REPEATS"); do
    for k in 0 1 2; do
      i=$(((k + rep - 1) % 3)); name="${modes[$i]%%|*}"; flags="${modes[$i]#*|}"
      f="$D/${name}_r$rep.txt"; rm -rf "$D/run_$name"
      t0=$(date +%s.%N)
      # shellcheck disable=SC2086
      run_to "$f" env OPENBLAS_NUM_THREADS=1 "$STRATA" train $model --steps "$steps" --eval-tokens 2048 \
        --log-every 10 $flags --out "$D/run_$name" || continue
      t1=$(date +%s.%N)
      # the main thread's time in the periodic checkpoints (not the final one): the trace's
      # "checkpoint" slices (sync: the whole write; async: the snapshot) plus the waits at the end
      # of the step after one (async); and the summed step time of report.json
      main=$("$PY" -c 'import json, re, sys
t = json.load(open(sys.argv[1])); ev = t["traceEvents"] if isinstance(t, dict) else t
s = sum(e["dur"] for e in ev if e.get("name") == "checkpoint" and e["args"]["step"] < int(sys.argv[3])) / 1e6
s += sum(float(x) for k, x in re.findall(r"step (\d+): waited ([0-9.]+) s", open(sys.argv[2]).read()))
print("%.4f" % s)' "$D/run_$name/trace.json" "$f" "$steps" 2>/dev/null || echo "")
      awk -v r="$rep" -v n="$name" -v a="$t0" -v b="$t1" -v tk="$tokens" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
        -v ts="$(sed -n 's/.*"train_s": *\([0-9.e+-]*\).*/\1/p' "$D/run_$name/report.json")" -v m="$main" \
        'BEGIN { printf "%s,%s,%.3f,%.1f,%s,%s,%s\n", r, n, b - a, tk / (b - a), l, ts, m }' >> "$OUT/bench_ckpt.csv"
    done
  done
  block_head ckpt
  {
    echo "\`strata train $model\` ($what), $steps steps on the shipped corpus, one"
    echo "BLAS thread; per repeat three runs one after the other (order rotating): no periodic checkpoint,"
    echo "a synchronous checkpoint every 10 steps (\`--no-ckpt-async\`) and an asynchronous one"
    echo "(\`--ckpt-async\`). Every run also writes its final checkpoint (at step $steps). tokens/s over the"
    echo "whole process's wall time; ratios against the no-checkpoint run of the same repeat. Load: the"
    echo "1-minute load average after each run (2 cores). The last column is measured inside each run, so"
    echo "load swings between runs cancel: the main thread's seconds in the periodic checkpoints (trace.json's"
    echo "\"checkpoint\" slices -- sync: the whole write, async: the host snapshot -- plus, async, the logged"
    echo "wait at the end of the step after one) over report.json's summed step time (train_s). It does"
    echo "not see the background writer competing with the steps for a core (that shows in the steps)."
    echo
    echo "| mode | tokens/s | / no checkpoint, same repeat | goal | load average | main thread in the periodic checkpoints / step time, same run |"
    echo "|---|---|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 { v[$1, $2] = $4; all[$2] = all[$2] " " $4; ld[$2] = ld[$2] " " $5; rep[$1] = 1
               if ($6 > 0 && $7 != "") mt[$2] = mt[$2] " " 100 * $7 / $6 }
      END { n = split("none sync async", m, " ")
            for (i = 1; i <= n; i++) { k = m[i]; R = ""
              for (r in rep) if ((r, "none") in v && (r, k) in v && v[r, "none"] > 0) R = R " " v[r, k] / v[r, "none"]
              goal = (k == "async" && R != "") ? (med(R) >= 0.95 ? "cost <= 5%: met" : "cost <= 5%: **not met**") : ""
              printf "| %s | %s | %s | %s | %s | %s |\n", (k == "none" ? "no periodic checkpoint" : k == "sync" ? "sync every 10" : "async every 10"),
                mr(all[k], "%.0f"), (k == "none" ? "1" : mr(R, "%.3f")), goal, mr(ld[k], "%.1f"), (k == "none" ? "-" : mr(mt[k], "%.2f%%")) } }' "$OUT/bench_ckpt.csv"
  } >> "$OUT/bench_ckpt.md"
  block_commands ckpt
}

# ---- precision -------------------------------------------------------------------------------
# The demo's model and layout (strata train's defaults on 4 ranks: 2 stages x 2 replicas, 1F1B, 2
# micro-batches) for 500 steps in each --precision, one after the other (the order rotating over
# the repeats): the validation loss at the end (the same every repeat: the runs are deterministic)
# and tokens/s, both against fp32's of the same repeat.
section_precision() {
  local D="$OUT/precision" steps=500 rep k i p f
  local precs=(fp32 bf16 bf16-sr)
  [ "$QUICK" = 1 ] && steps=20
  mkdir -p "$D"
  echo "repeat,precision,val_loss,tokens_per_s,load1" > "$OUT/bench_precision.csv"
  for rep in $(seq 1 "$REPEATS"); do
    for k in 0 1 2; do
      i=$(((k + rep - 1) % 3)); p="${precs[$i]}"; f="$D/${p}_r$rep.txt"; rm -rf "$D/run_$p"
      run_to "$f" "${MPIRUN[@]}" -np 4 "$STRATA" train --pp 2 --dp 2 --microbatches 2 --schedule 1f1b \
        --precision "$p" --steps "$steps" --log-every 100 --out "$D/run_$p" || continue
      awk -v r="$rep" -v p="$p" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
        -v vl="$(sed -n 's/.*"val_loss": *\([0-9.e+-]*\).*/\1/p' "$D/run_$p/report.json")" \
        -v ts="$(sed -n 's/.*"tokens_per_s": *\([0-9.e+-]*\).*/\1/p' "$D/run_$p/report.json")" \
        'BEGIN { printf "%s,%s,%s,%s,%s\n", r, p, vl, ts, l }' >> "$OUT/bench_precision.csv"
    done
  done
  block_head precision
  {
    echo "\`strata train\` of the demo (its default model on 4 ranks, P=2 x D=2, 1F1B, M=2) on the shipped"
    echo "corpus for $steps steps in each precision, the three one after the other in each repeat (order"
    echo "rotating). Validation loss: report.json's \`val_loss\` at the end (65,536 held-out tokens);"
    echo "relative difference and tokens/s ratio against the fp32 run of the same repeat. Goals: bf16"
    echo "within 2% of fp32's validation loss, bf16-sr within 4%."
    echo
    echo "| precision | validation loss (nats/byte) | vs fp32, relative | goal | tokens/s | / fp32, same repeat | load average |"
    echo "|---|---|---|---|---|---|---|"
    awk -F, "$AWKLIB"'
      NR > 1 && $3 != "" { v[$1, $2] = $3; t[$1, $2] = $4; vl[$2] = vl[$2] " " $3; ts[$2] = ts[$2] " " $4; ld[$2] = ld[$2] " " $5; rep[$1] = 1 }
      END { n = split("fp32 bf16 bf16-sr", m, " ")
            for (i = 1; i <= n; i++) { k = m[i]; D = R = ""
              for (r in rep) if ((r, "fp32") in v && (r, k) in v && v[r, "fp32"] > 0) {
                D = D " " (v[r, k] - v[r, "fp32"]) / v[r, "fp32"]; if (t[r, "fp32"] > 0) R = R " " t[r, k] / t[r, "fp32"] }
              lim = (k == "bf16" ? 0.02 : 0.04); d = med(D); ad = d < 0 ? -d : d
              goal = (k == "fp32" || D == "") ? "" : sprintf("within %d%%: %s", 100 * lim, ad <= lim ? "met" : "**not met**")
              printf "| %s | %s | %s | %s | %s | %s | %s |\n", k, (vl[k] == "" ? "not measured" : mr(vl[k], "%.4f")),
                (k == "fp32" ? "-" : mr(D, "%+.4f")), goal, mr(ts[k], "%.0f"), (k == "fp32" ? "1" : mr(R, "%.2f")), mr(ld[k], "%.1f") } }' \
      "$OUT/bench_precision.csv"
  } >> "$OUT/bench_precision.md"
  block_commands precision
}

# ---- run -------------------------------------------------------------------------------------
echo "benchmarks.sh: $MODE; sections:$SECTIONS; writing $OUT"
SECTION=env; section_env
for SECTION in $SECTIONS; do
  echo "== $SECTION ($(date -u +%H:%M:%S))"
  : > "$OUT/commands_$SECTION.txt"
  "section_$SECTION" || { echo "benchmarks.sh: section $SECTION failed (see $OUT/logs/$SECTION.log)" >&2; FAIL=1; }
done
echo "| load average at end | $(cut -d' ' -f1-3 /proc/loadavg) |" > "$OUT/load_end.txt"
sed -i "/^| load average at start/r $OUT/load_end.txt" "$OUT/bench_env.md"

# benchmarks.md: every block of this run, in order.
{
  echo "# Strata benchmarks: run of $START_DATE"
  echo
  echo "## Environment"
  echo
  cat "$OUT/bench_env.md"
  for s in $SECTIONS; do
    [ -f "$OUT/bench_$s.md" ] || continue
    echo
    if [ "$s" = scaling ]; then sed 's/^#/##/' "$OUT/bench_$s.md"; else echo "## $(title "$s")"; echo; cat "$OUT/bench_$s.md"; fi
  done
} > "$OUT/benchmarks.md"
echo "wrote $OUT/benchmarks.md and $(cd "$OUT" && ls bench_*.csv 2>/dev/null | tr '\n' ' ')"

# --publish: the run's files to launch/results/, its blocks into BENCHMARKS.md.
if [ "$PUBLISH" = 1 ]; then
  mkdir -p "$RESULTS_DIR"
  for s in env $SECTIONS; do
    [ "$s" = scaling ] && continue # scaling.sh --publish has written its own part
    [ -f "$OUT/bench_$s.md" ] || { echo "benchmarks.sh: --publish: no figures for section $s: its block is left as it was" >&2; continue; }
    cp "$OUT/bench_$s.md" "$RESULTS_DIR/"
    for c in "$OUT"/bench_"$s".csv "$OUT"/bench_bubble.csv; do
      case "$c" in *bench_bubble.csv) [ "$s" = ddp ] || continue ;; esac
      [ -f "$c" ] && cp "$c" "$RESULTS_DIR/"
    done
    c="$OUT/bench_${s}_calls.csv" # every timed call, where a section keeps them: compressed
    [ -f "$c" ] && gzip -9 -n -c "$c" > "$RESULTS_DIR/bench_${s}_calls.csv.gz"
    awk -v name="$s" -v f="$OUT/bench_$s.md" '
      index($0, "<!-- benchmarks.sh:begin " name " -->") == 1 { print; while ((getline l < f) > 0) print l; skip = 1; next }
      index($0, "<!-- benchmarks.sh:end " name " -->") == 1 { skip = 0 }
      !skip' "$BENCHMARKS_MD" > "$BENCHMARKS_MD.tmp" && mv "$BENCHMARKS_MD.tmp" "$BENCHMARKS_MD"
  done
  echo "published to $RESULTS_DIR and $BENCHMARKS_MD"
fi
[ "$FAIL" = 0 ] || { echo "benchmarks.sh: some benchmarks failed (see $OUT/logs/)" >&2; exit 1; }
