#!/usr/bin/env bash
# node_loss_test.sh -- a training job that loses a node restarts without it (launch/slurm/
# train.sbatch with STRATA_MAX_RESTARTS), on the namespace cluster of tests/cluster/cluster.sh
# (3 nodes x 2 ranks, links shaped to 1 Gbit/s).
#
#   1. Node loss, REPS times (default 1): every rank of a random node is SIGKILLed at a random
#      step (STRATA_FAULT kill:host=nK). The job must finish all 50 steps on the 2 nodes left
#      (4 ranks, on the layout strata simulate --sweep picks, same global batch), recompute at
#      most --ckpt-every steps, name the node, end with per-step losses within 1e-4 relative of
#      one rank alone, and leave no strata process behind.
#   2. Link down (once): n3's veth is taken down in the middle of the run. The job must end within
#      STRATA_COLL_TIMEOUT_S + 10 s of it, naming n3, and the restart must finish on n1 and n2.
# Needs root and Slurm (launch/setup.sh); exit 77 (skip) without them.
# Usage: node_loss_test.sh STRATA DIST_TOOL [REPS]     env NODE_LOSS_SEED (default: random)
set -uo pipefail
strata="${1:?usage: node_loss_test.sh STRATA DIST_TOOL [REPS]}"
dist_tool="${2:?usage: node_loss_test.sh STRATA DIST_TOOL [REPS]}"
reps="${3:-1}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=cluster.sh
source "$here/cluster.sh"
ns_cluster_test_start node-loss
seed="${NODE_LOSS_SEED:-$(( $(date +%s) % 100000 ))}"
RANDOM=$seed
echo "[node-loss] seed $seed (NODE_LOSS_SEED=$seed repeats this run)"
ns_cluster_up "$dir/c" 3 || fail "the namespace cluster did not come up"
ns_cluster_shape 1gbit || fail "tc could not shape the links"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include="$NS_CLUSTER_SUBNET.0/24"
export OMPI_MCA_oob_tcp_if_include="$NS_CLUSTER_SUBNET.0/24" FI_TCP_IFACE=eth0
export STRATA_BIN="$strata" STRATA_ROOT="$root" STRATA_RUN_ROOT="$dir/runs"
# the collectives' time-out: 20 s for the link cut (the bound checked is this + 10 s), 120 s
# otherwise (start-up work of 6 ranks on 2 cores under a parallel test suite can exceed 20 s)
steps=50 every=5 timeout_s=20
model=(--layers 4 --heads 2 --dim 32 --ctx 16 --batch 12 --log-every 100)
"$strata" train "${model[@]}" --steps $steps --out "$dir/ref" >"$dir/ref.log" 2>&1 ||
  fail "the one-rank run failed: $(tail -3 "$dir/ref.log")"

# job_ranks: this test's strata ranks (train.sbatch runs `strata train --out $STRATA_RUN_ROOT/...`);
# other tests of a parallel ctest run their own strata train processes beside it
job_ranks() { pgrep -af "$strata train --out $dir/runs/"; }

# submit NAME [ENV=VALUE...]: train.sbatch on 3 nodes x 2 ranks (P = 2 inside a node, D = 3 across)
# with restarts, in the background; sets job_pid and job_out. The job's bound is its Slurm time
# limit, 10 minutes: under a parallel test suite a restarted run has taken more than 400 s.
job_limit_s=600
submit() {
  local name="$1"
  shift
  job_out="$dir/$name.out"
  env "$@" STRATA_MAX_RESTARTS=2 STRATA_CKPT_EVERY=$every STRATA_STEPS=$steps STRATA_PP=2 \
    STRATA_MICROBATCHES=2 STRATA_TRAIN_ARGS="${model[*]}" \
    timeout $job_limit_s sbatch --wait -N 3 --ntasks-per-node=2 --time=10 -J "$name" -o "$job_out" \
    "$root/launch/slurm/train.sbatch" >"$dir/$name.sbatch" 2>&1 &
  job_pid=$!
}

# story: what the job said of its failures and restarts (the ranks' errors included: a rank
# that fails before the injected fault explains why no node was lost)
story() { grep -E 'error|restart|node|lost|fault' "$job_out" | head -n 20 | paste -sd'|' -; }

# check NAME NODE: the job finished every step on the two other nodes and matches one rank.
check() {
  local name="$1" node="$2" run lost ranks
  run=$(sed -n 's/.*run dir \(.*\)$/\1/p' "$job_out" | head -n 1)
  [ -d "$run" ] || fail "$name: no run directory in $job_out"
  grep -q "node n$node is lost" "$job_out" || fail "$name: the restart did not name n$node as lost: $(story)"
  lost=$(grep -oE '[0-9]+ finished step\(s\) lost' "$job_out" | head -n 1 | grep -oE '^[0-9]+')
  [ -n "$lost" ] && [ "$lost" -le $every ] ||
    fail "$name: ${lost:-?} steps lost, more than --ckpt-every $every: $(grep -E 'restart|lost|checkpoint' "$job_out" | tail -n 12)"
  ranks=$(grep -oE '"rank": [0-9]+' "$run/report.json" | wc -l)
  [ "$ranks" -eq 4 ] || fail "$name: the restarted job ran on $ranks ranks, expected 4 (2 nodes x 2)"
  # per-step losses, the last record of each step (a restart recomputes the lost ones)
  awk -F'"loss": *' 'NF > 1 { split($2, a, /[,}]/); s = $0; sub(/.*"step": */, "", s); sub(/[,}].*/, "", s); l[s + 0] = a[1] }
                     END { for (s in l) printf "{\"step\": %d, \"loss\": %s, \"grad_norm\": 1}\n", s, l[s] }' \
    "$run/steps.jsonl" | sort -t: -k2 -n >"$dir/$name.steps"
  awk -F'"loss": *' 'NF > 1 { split($2, a, /[,}]/); s = $0; sub(/.*"step": */, "", s); sub(/[,}].*/, "", s)
                     printf "{\"step\": %d, \"loss\": %s, \"grad_norm\": 1}\n", s, a[1] }' \
    "$dir/ref/steps.jsonl" >"$dir/ref.steps"
  [ "$(wc -l <"$dir/$name.steps")" -eq $steps ] || fail "$name: $(wc -l <"$dir/$name.steps") of $steps steps recorded"
  "$dist_tool" losses "$dir/ref.steps" "$dir/$name.steps" 1e-4 >"$dir/$name.cmp" 2>&1 ||
    fail "$name: per-step losses differ from the one-rank run: $(cat "$dir/$name.cmp")"
  # the cut-off node's ranks cannot hear that the job ended: they are the teardown's to stop
  [ "$name" = linkdown ] || ! job_ranks >/dev/null || fail "$name: strata processes left behind: $(job_ranks)"
  echo "[node-loss] $name: n$node lost, $lost step(s) recomputed, $(grep -o 'continuing on.*' "$job_out" | head -n 1);" \
       "$(head -n 1 "$dir/$name.cmp")"
}

# job_ended WHAT: waits for the job; on a failure, fails naming WHAT, whether the job ran out of
# time or failed, and its last lines.
job_ended() {
  local rc=0
  wait "$job_pid" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  [ "$rc" -eq 124 ] && fail "$1: the job did not end within $job_limit_s s: $(tail -n 15 "$job_out")"
  fail "$1: the job failed (exit $rc): $(tail -n 15 "$job_out")"
}

# 1. every rank of a random node killed at a random step
for ((i = 1; i <= reps; i++)); do
  node=$((RANDOM % 3 + 1)) step=$((RANDOM % 40 + 6))
  submit "kill$i" STRATA_COLL_TIMEOUT_S=120 STRATA_FAULT="kill:host=n$node:step=$step:attempt=0"
  job_ended "kill$i (n$node at step $step)"
  check "kill$i" "$node"
done

# 2. n3's link down in the middle of a step: the survivors' time-out errors name the host of the
#    rank they waited on (world rank Q, host n3); the job's end names the node and its ranks
submit linkdown STRATA_COLL_TIMEOUT_S=$timeout_s
run=""
for _ in $(seq 1 600); do
  run=$(sed -n 's/.*run dir \(.*\)$/\1/p' "$job_out" 2>/dev/null | head -n 1)
  [ -n "$run" ] && [ "$(grep -c '"step"' "$run/steps.jsonl" 2>/dev/null)" -ge 17 ] 2>/dev/null && break
  kill -0 "$job_pid" 2>/dev/null || fail "linkdown: the job ended before step 17: $(tail -n 15 "$job_out")"
  sleep 0.2
done
ns_cluster_link 3 down || fail "could not take n3's link down"
down_at=$(date +%s.%N)
named=""
for _ in $(seq 1 600); do
  grep -qE "world rank [0-9]+, host n3\)" "$job_out" && { named=$(date +%s.%N); break; }
  kill -0 "$job_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$named" ] || fail "linkdown: the failure did not name n3: $(tail -n 20 "$job_out")"
took=$(awk -v a="$down_at" -v b="$named" 'BEGIN { printf "%.1f", b - a }')
# the bound the reliability requirement states: the collective timeout plus 10 s
awk -v t="$took" -v m=$((timeout_s + 10)) 'BEGIN { exit !(t <= m) }' ||
  fail "linkdown: n3 was named $took s after its link went down, more than $timeout_s + 10 s"
job_ended "linkdown (the restarted job)"
grep -q "node n3 is lost: it does not answer (ranks 4-5 ran on it)" "$job_out" ||
  fail "linkdown: the job's end did not name n3 and its ranks: $(grep -E 'node|restart' "$job_out" | paste -sd"|" -)"
check linkdown 3
echo "[node-loss] linkdown: the ranks' time-out errors named host n3 $took s after its link went down (STRATA_COLL_TIMEOUT_S=$timeout_s); the job's end named n3 as lost"
ns_cluster_link 3 up || true
ns_cluster_down "$dir/c"
! job_ranks >/dev/null || fail "strata processes outlived the cluster: $(job_ranks)"
echo "[node-loss] PASS"
