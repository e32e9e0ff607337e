#!/usr/bin/env bash
# cluster_test.sh -- Strata across nodes on the namespace cluster of tests/cluster/cluster.sh
# (3 nodes, each its own network namespace, hostname, /tmp and /dev/shm; TCP over veths and a
# bridge between them, shaped to 1 Gbit/s with tc tbf; one slurmd per node).
#
#   1. `strata train` on 3 nodes x 2 ranks with srun --mpi=pmix: pipeline stages inside a node
#      and data parallelism across nodes (--pp 2 --dp 3), then tensor parallelism inside a node
#      (--tp 2 --dp 3), and --pp 2 --dp 3 again while n2 drops 2% of its packets (nftables):
#      50 steps each, per-step losses within 1e-4 relative of one rank alone.
#   2. `strata bench allreduce` on 3 nodes, the library's algorithms and MPI_Allreduce
#      (--algo mpi) in the same job step: every size correct (#wrong 0).
#   3. `strata serve` on n1, queried over HTTP from n2's namespace: /health and a completion.
#   4. Teardown: no namespace, veth, bridge or process of the cluster remains.
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
  step_srun -N 3 -n 6 --ntasks-per-node=2 "$strata" train "${model[@]}" "${flags[@]}" --microbatches 2 \
    --out "$dir/$name" >"$dir/$name.log" 2>&1 || fail "$name: srun train failed: $(tail -5 "$dir/$name.log")"
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

# 3. serving on n1, a client on n2
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

# 4. teardown leaves nothing behind
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
