#!/usr/bin/env bash
# cluster_test.sh -- Strata across nodes on the namespace cluster of tests/cluster/cluster.sh
# (3 nodes, each its own network namespace, hostname, /tmp and /dev/shm; TCP over veths and a
# bridge between them, shaped to 1 Gbit/s with tc tbf; one slurmd per node).
#
#   1. `strata train` on 3 nodes x 2 ranks with srun --mpi=pmix: pipeline stages inside a node
#      and data parallelism across nodes (--pp 2 --dp 3), then tensor parallelism inside a node
#      (--tp 2 --dp 3), and --pp 2 --dp 3 again while n2 drops 2% of its packets (nftables):
#      50 steps each, per-step losses within 1e-4 relative of one rank alone. A job that Open
#      MPI's TCP wire-up ends before Strata could fail ("Open MPI failed to TCP connect to a
#      peer MPI process") is started once more, which the output says.
#   2. `strata bench allreduce` on 3 nodes, the library's algorithms and MPI_Allreduce
#      (--algo mpi) in the same job step: every size correct (#wrong 0).
#   3. `strata simulate` against the measured step of --dp 3 on 3 nodes x 1 rank: the device
#      file is built here from `strata bench allreduce` on the nodes and the run's own cpu
#      calibration; the prediction is within 15% of the median step, and a 10x slower link in
#      the same file misses by more than 50%.
#   4. `strata serve` on n1, queried over HTTP from n2's namespace: /health and a completion.
#   5. Teardown: no namespace, veth, bridge or process of the cluster remains.
# Needs root and Slurm (launch/setup.sh); exit 77 (skip) without them.
# Usage: cluster_test.sh STRATA DIST_TOOL
set -uo pipefail
strata="${1:?usage: cluster_test.sh STRATA DIST_TOOL}"
dist_tool="${2:?usage: cluster_test.sh STRATA DIST_TOOL}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cluster.sh
source "$here/cluster.sh"
ns_cluster_test_start cluster-test
ns_cluster_up "$dir/c" 3 || fail "the namespace cluster did not come up"
ns_cluster_shape 1gbit || fail "tc could not shape the links"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include="$NS_CLUSTER_SUBNET.0/24"
export OMPI_MCA_oob_tcp_if_include="$NS_CLUSTER_SUBNET.0/24" FI_TCP_IFACE=eth0 STRATA_COLL_TIMEOUT_S=60
# Each node claims the machine's 2 cores, so Open MPI sees no oversubscription and its waiting
# ranks spin; the 3 nodes' ranks share 2 cores, so they yield instead (a 6-rank training: 17-40 s
# spinning, 4-5 s yielding). Step 3 keeps the spinning it was calibrated with (sim_yield0).
export OMPI_MCA_mpi_yield_when_idle=1
# bounded: a stuck step fails the test and the trap tears the cluster down (6 steps x 240 s
# stay below ctest's TIMEOUT, whose kill would skip the trap)
step_srun() { timeout 240 srun --mpi=pmix --time=5 "$@"; }

# 1. training across nodes against one rank
model=(--layers 4 --heads 2 --dim 32 --ctx 16 --batch 12 --steps 50 --log-every 100)
"$strata" train "${model[@]}" --out "$dir/ref" >"$dir/ref.log" 2>&1 || fail "the one-rank run failed: $(tail -3 "$dir/ref.log")"
for layout in "pp2:--pp 2 --dp 3" "tp2:--tp 2 --dp 3" "loss:--pp 2 --dp 3"; do
  name="${layout%%:*}"
  # loss: n2 drops 2% of the packets it sends; TCP retransmits them, slower but no less exact
  if [ "$name" = loss ]; then ns_cluster_loss 2 2 || fail "nft could not add the packet-loss rule"; fi
  # shellcheck disable=SC2206
  flags=(${layout#*:})
  run_layout() {
    step_srun -N 3 -n 6 --ntasks-per-node=2 "$strata" train "${model[@]}" "${flags[@]}" --microbatches 2 \
      --out "$dir/$name" >"$dir/$name.log" 2>&1
  }
  # Open MPI 4.1's TCP BTL connects a pair of ranks at their first message; under this machine's
  # load that connect can fail ("Open MPI failed to TCP connect to a peer MPI process", with a
  # stale errno, EINPROGRESS), which srun then ends. That is the MPI library's wire-up, not
  # Strata: such a run is started once more, saying so; any other failure fails the test.
  if ! run_layout; then
    grep -q "Open MPI failed to TCP connect to a peer MPI process" "$dir/$name.log" ||
      fail "$name: srun train failed: $(grep -vE '^(srun|slurmstepd)' "$dir/$name.log" | tail -8; grep -E '^(srun|slurmstepd)' "$dir/$name.log" | tail -4)"
    echo "[cluster-test] $name: Open MPI's TCP connect between two ranks failed ($(grep -m1 -oE 'connect\(\) to [0-9.:]+ failed' "$dir/$name.log")); running the job once more"
    mv "$dir/$name.log" "$dir/$name.wireup.log"
    rm -rf "${dir:?}/$name"
    run_layout ||
      fail "$name: srun train failed again: $(grep -vE '^(srun|slurmstepd)' "$dir/$name.log" | tail -8; grep -E '^(srun|slurmstepd)' "$dir/$name.log" | tail -4)"
  fi
  hosts=$(grep -oE '"rank": [0-9]+' "$dir/$name/report.json" | wc -l)
  [ "$hosts" -eq 6 ] || fail "$name: report.json lists $hosts ranks, expected 6"
  "$dist_tool" losses "$dir/ref/steps.jsonl" "$dir/$name/steps.jsonl" 1e-4 ||
    fail "$name: per-step losses differ from the one-rank run by more than 1e-4"
  echo "[cluster-test] train $name on 3 nodes x 2 ranks: losses match one rank; $(grep -o 'done: .*tokens/s' "$dir/$name.log")"
done
dropped=$(ns_cluster_exec 2 nft list table inet strata_loss 2>/dev/null | grep -oE 'packets [0-9]+' | grep -oE '[0-9]+')
ns_cluster_loss 2 0
[ "${dropped:-0}" -gt 0 ] || fail "loss: no packet of n2 was dropped (nft counter ${dropped:-missing})"
echo "[cluster-test] loss: n2 dropped $dropped packets during that run"
# the ranks really were on three hosts: MPI saw three node names
step_srun -N 3 -n 6 --ntasks-per-node=2 hostname 2>/dev/null | sort -u | paste -sd' ' - | grep -qx "n1 n2 n3" ||
  fail "tasks did not run on n1, n2 and n3"

# 2. all-reduce across nodes, the library's algorithms beside MPI's
for algo in auto ring mpi; do
  step_srun -N 3 -n 3 "$strata" bench allreduce -b 1K -e 1M -f 8 -n 5 -w 1 --algo "$algo" \
    >"$dir/bench-$algo.txt" 2>&1 || fail "bench --algo $algo failed: $(tail -5 "$dir/bench-$algo.txt")"
  rows=$(awk '!/^#/ && NF >= 12' "$dir/bench-$algo.txt" | wc -l)
  [ "$rows" -ge 4 ] || fail "bench --algo $algo printed $rows rows: $(cat "$dir/bench-$algo.txt")"
  awk '!/^#/ && NF >= 12 && ($9 != 0 || $13 != 0) { bad = 1 } END { exit bad }' "$dir/bench-$algo.txt" ||
    fail "bench --algo $algo: wrong elements: $(cat "$dir/bench-$algo.txt")"
  echo "[cluster-test] allreduce --algo $algo across 3 nodes, 1 MiB busbw: $(awk '!/^#/ && NF >= 12 { b = $8 } END { print b }' "$dir/bench-$algo.txt") GB/s"
done

# 3. `strata simulate` against the step measured on the shaped network: D = 3 across the nodes
# (one rank each), a model whose gradient all-reduce (6.6 MB a step, two buckets) over the
# 1 Gbit/s links is most of the step. The device file (sim_device below) takes every figure
# from a measurement made here, before the training it is checked against: the inter-node link
# from `strata bench allreduce` on these 3 nodes (alpha = t(4 B) / 2(p-1), beta from t(4 MiB),
# the bucket size), the compute from the cpu profile the training run calibrates at start-up
# (its --verbose line; STRATA_SIM_HOST_RANKS=3: the 3 "hosts" share this machine's cores).
# The measured step is the median of steps 6-25 (the first 5 are warm-up). Tolerance 15 %
# (the target); a device file with a 10x slower link must miss by far more (the check can fail).
sim_model=(--layers 2 --heads 4 --dim 256 --ctx 16 --batch 12 --dp 3 --microbatches 1)
# sim_device LOG P LINKSCALE BENCH...: the device JSON (LINKSCALE multiplies the link bandwidth).
# The link from the benches' times (us; out-of-place and in-place, each the mean of 20
# iterations): alpha = the median time of the small sizes / 2(p-1), beta from the mean time of
# the largest, t(n) = 2(p-1) alpha + 2(p-1)/p n / B.
sim_device() {
  local log="$1" p="$2" scale="$3" line ts nb tb
  shift 3
  line=$(grep -o 'simulated device, every figure: .*' "$log") || return 1
  nb=$(awk '!/^#/ && NF >= 12 && $1 > b { b = $1 } END { print b + 0 }' "$@")
  tb=$(awk -v nb="$nb" '!/^#/ && NF >= 12 && $1 == nb { t += $6 + $10; k += 2 } END { if (k) print t / k }' "$@")
  ts=$(awk -v nb="$nb" '!/^#/ && NF >= 12 && $1 < nb { print $6; print $10 }' "$@" | sort -g |
       awk '{ a[NR] = $1 } END { if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }')
  awk -v p="$p" -v scale="$scale" -v ts="$ts" -v nb="$nb" -v tb="$tb" '
    function after(k,  i) { for (i = 1; i < NF; i++) if ($i == k) return $(i + 1); return "" }
    {
      gsub(/,/, "")
      peak = after("fp32"); hbm = after("@"); op = 0; cs = 0
      for (i = 3; i < NF; i++) {
        if ($i == "GiB") gib = $(i - 1)
        if ($i == "per" && $(i + 1) == "op") op = $(i - 2)
        if ($i == "collective" && $(i + 1) == "step") cs = $(i + 2)
      }
      if (peak <= 0 || hbm <= 0 || !(tb > ts && ts > 0)) exit 1
      a_us = ts / (2 * (p - 1)); B = 2 * (p - 1) / p * nb / ((tb - ts) * 1e-6) / 1e9 * scale
      printf "{ \"name\": \"cpu-ns-cluster\", \"peak_tflops_fp32\": %s, \"peak_tflops_bf16\": %s,\n", peak, peak
      printf "  \"peak_tflops_fp8\": %s, \"hbm_gib\": %s, \"hbm_gbps\": %s, \"chips_per_instance\": 1,\n", peak, gib, hbm
      printf "  \"intra_gbps\": %.6g, \"intra_latency_us\": 1, \"inter_gbps\": %.6g, \"inter_latency_us\": %.6g,\n", hbm / 2, B, a_us
      printf "  \"reduce_gbps\": %.6g, \"op_overhead_us\": %s, \"coll_latency_us\": %s }\n", hbm / 3, op, cs
    }' <<<"$line"
}
sim_yield0() { OMPI_MCA_mpi_yield_when_idle=0 "$@"; }
sim_bench() {
  sim_yield0 step_srun -N 3 -n 3 "$strata" bench allreduce -b 4 -e 4M -f 1024 -n 20 -w 2 >"$dir/sim-bench-$1.txt" 2>&1 ||
    fail "simulate: bench for the link failed: $(tail -5 "$dir/sim-bench-$1.txt")"
}
# sim_attempt K: bench, train, bench, then the prediction with the measured link (x1) and with a
# 10x slower one (x0.1). Returns 1 when the first misses by more than 15% (the load of this
# shared machine drifts between the benches and the training: one new attempt is allowed); a
# slow link that does not miss fails at once.
sim_attempt() {
  local k="$1" measured meas meas_min meas_max meas_n scale pred err
  # the link measured just before and just after the training
  sim_bench "before$k"
  STRATA_SIM_HOST_RANKS=3 sim_yield0 step_srun -N 3 -n 3 --ntasks-per-node=1 "$strata" train "${sim_model[@]}" --steps 25 \
    --log-every 100 --verbose --out "$dir/simnet$k" >"$dir/simnet$k.log" 2>&1 ||
    fail "simulate: srun train failed: $(grep -vE '^(srun|slurmstepd)' "$dir/simnet$k.log" | grep -m 4 -E 'error|rank [0-9]+:|fail'; grep -vE '^(srun|slurmstepd)' "$dir/simnet$k.log" | tail -4; grep -E '^(srun|slurmstepd)' "$dir/simnet$k.log" | tail -2)"
  sim_bench "after$k"
  measured=$(grep -o '"step_s": [0-9.eE+-]*' "$dir/simnet$k/steps.jsonl" | awk 'NR > 5 { print $2 }' | sort -g |
             awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)], a[1], a[NR], NR }')
  read -r meas meas_min meas_max meas_n <<<"$measured"
  [ "${meas_n:-0}" -eq 20 ] || fail "simulate: steps.jsonl has ${meas_n:-0} steps after warm-up, expected 20"
  echo "[cluster-test] simulate, attempt $k: link $(grep -o 'links [0-9.]* GB/s [0-9.]* us' "$dir/simnet$k.log")" \
    "in the run's ping-pong (x1.5 time sharing; veth latency only: no netem, no delay added)"
  for scale in 0.1 1; do
    sim_device "$dir/simnet$k.log" 3 "$scale" "$dir/sim-bench-before$k.txt" "$dir/sim-bench-after$k.txt" \
      >"$dir/net$k-$scale.json" || fail "simulate: could not build the device file from the run's profile line and the benches"
    "$strata" simulate "${sim_model[@]}" --vocab 256 --device "$dir/net$k-$scale.json" --dtype fp32 --bucket-mb 4 \
      --json >"$dir/sim$k-$scale.json" 2>&1 || fail "simulate --device net$k-$scale.json failed: $(tail -3 "$dir/sim$k-$scale.json")"
    pred=$(grep -o '"step_s": *[0-9.eE+-]*' "$dir/sim$k-$scale.json" | head -1 | sed 's/.*: *//')
    err=$(awk -v p="$pred" -v m="$meas" 'BEGIN { printf "%+.1f%%", 100 * (p - m) / m }')
    echo "[cluster-test] simulate, attempt $k, link x$scale ($(grep -o '"inter_gbps": [0-9.e+-]*, "inter_latency_us": [0-9.e+-]*' \
      "$dir/net$k-$scale.json")): predicted $pred s, measured $meas s (median of steps 6-25; $meas_min-$meas_max), error $err"
    if [ "$scale" = 1 ]; then
      awk -v e="${err%\%}" 'BEGIN { exit !(e <= 15 && e >= -15) }' || return 1
    else
      awk -v e="${err%\%}" 'BEGIN { exit !(e > 50) }' || fail "simulate: a 10x slower link still predicts $pred s (measured $meas s)"
    fi
  done
  return 0
}
sim_attempt 1 || sim_attempt 2 ||
  fail "simulate: predicted step more than 15% from the measured one twice (device file: $(cat "$dir/net2-1.json"))"

# 4. serving on n1, a client on n2
addr="${NS_CLUSTER_ADDR[0]}:18081"
ckpt=$(ls -d "$dir/pp2"/ckpt-* | tail -n 1)
srun --mpi=pmix -w n1 -N 1 -n 1 "$strata" serve --checkpoint "$ckpt" --listen "$addr" >"$dir/serve.log" 2>&1 &
serve_pid=$!
up=0
for _ in $(seq 1 120); do
  ns_cluster_exec 2 curl -sf "http://$addr/health" >/dev/null 2>&1 && { up=1; break; }
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.5
done
[ $up -eq 1 ] || fail "strata serve on n1 did not answer n2: $(tail -5 "$dir/serve.log")"
reply=$(ns_cluster_exec 2 curl -sf "http://$addr/v1/completions" -H 'Content-Type: application/json' \
        -d '{"prompt": "The ", "max_tokens": 8, "temperature": 0}') || fail "completion from n2 failed"
grep -q '"completion_tokens": *8' <<<"$reply" || fail "the completion did not return 8 tokens: $reply"
echo "[cluster-test] serve on n1 answered n2: $(echo "$reply" | grep -o '"text": *"[^"]*"' | head -1)"
kill -TERM "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null

# 5. teardown leaves nothing behind
created="$dir/c/created"
names=$(awk '$1 == "netns" || $1 == "veth" || $1 == "bridge" { print $2 }' "$created")
pids=$(awk '$1 == "pid" { print $2 }' "$created")
ns_cluster_down "$dir/c"
for n in $names; do
  ! ip netns list | grep -qw "$n" || fail "namespace $n left behind"
  ! ip link show "$n" >/dev/null 2>&1 || fail "link $n left behind"
done
for p in $pids; do ! kill -0 "$p" 2>/dev/null || fail "process $p left behind"; done
! pgrep -f "$dir" >/dev/null || fail "processes of the cluster left behind: $(pgrep -af "$dir")"
echo "[cluster-test] PASS"
