#!/usr/bin/env bash
# slurm_kill.sh -- a rank SIGKILLed inside a Slurm job is named by launch/slurm/train.sbatch
# (common.sh's strata_srun, from the ranks' status records RUN/status/rank-R and srun's "task Q:
# Killed"): "strata: rank 1 (stage 0, replica 1) died (signal 9) at step 3 during gradient
# all-reduce bucket 0". The job ends FAILED with a non-zero exit, and no strata process remains.
# Runs on the throw-away single-node cluster of tests/slurm/cluster.sh (root, Debian's slurmd,
# slurmctld, slurm-client, munge).
# With MODE restart: STRATA_MAX_RESTARTS=2 and the kill in the first launch only (attempt=0):
# the job relaunches inside its allocation from checkpoint step 3, says so, and COMPLETES with
# the final loss of an uninterrupted run of the same layout.
# Usage: slurm_kill.sh STRATA [kill|restart]
set -uo pipefail
strata="${1:?usage: slurm_kill.sh STRATA [kill|restart]}"
mode="${2:-kill}"
src="${STRATA_SOURCE_DIR:?STRATA_SOURCE_DIR must name the repository}"
# shellcheck source=../slurm/cluster.sh
source "$src/tests/slurm/cluster.sh"
fail() { echo "[slurm-kill] FAIL: $*" >&2; exit 1; }
tmp="$(mktemp -d /tmp/strata-slurmkill.XXXXXX)" || fail "mktemp failed"
cleanup() {
  local rc=$?
  slurm_cluster_stop
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for v in $(compgen -e | grep '^SLURM_'); do unset "$v"; done
slurm_cluster_start "$tmp/cluster" || fail "could not start the Slurm cluster"
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export FI_TCP_IFACE=lo STRATA_BIN="$strata" STRATA_RUN_ROOT="$tmp/runs" STRATA_COLL_TIMEOUT_S=20
mkdir -p "$tmp/submit" && cd "$tmp/submit" || fail "cannot enter $tmp/submit"

model=(STRATA_LAYERS=2 STRATA_DIM=32 STRATA_HEADS=2 STRATA_CTX=32 STRATA_BATCH=4)
if [ "$mode" = restart ]; then
  # the uninterrupted reference: the same 2-rank job under mpirun, outside Slurm
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --allow-run-as-root -np 2 --oversubscribe \
    "$strata" train --dp 2 --steps 8 --ckpt-every 3 --layers 2 --dim 32 --heads 2 --ctx 32 --batch 4 \
    --out "$tmp/ref" >"$tmp/ref.log" 2>&1 || fail "the reference run failed: $(tail -5 "$tmp/ref.log")"
  id="$(env "${model[@]}" STRATA_FAULT=kill:rank=1:step=5:attempt=0 STRATA_STEPS=8 STRATA_CKPT_EVERY=3 \
        STRATA_MAX_RESTARTS=2 sbatch --parsable --ntasks=2 --ntasks-per-node=2 --time=5 \
        "$src/launch/slurm/train.sbatch" 2>&1)" || fail "sbatch failed: $id"
else
  id="$(env "${model[@]}" STRATA_FAULT=kill:rank=1:step=3:op=allreduce STRATA_STEPS=8 \
        sbatch --parsable --ntasks=2 --ntasks-per-node=2 --time=5 "$src/launch/slurm/train.sbatch" 2>&1)" ||
    fail "sbatch failed: $id"
fi
id="${id%%;*}"; [[ "$id" =~ ^[0-9]+$ ]] || fail "sbatch printed no job id: $id"
state="$(slurm_wait_job "$id" "${STRATA_SLURM_JOB_TIMEOUT_S:-120}")"
out="$tmp/submit/strata-train-$id.out"
echo "[slurm-kill] job $id: $state"; cat "$out" 2>/dev/null
if [ "$mode" = restart ]; then
  [ "$state" = COMPLETED ] || fail "job $id ended $state, expected COMPLETED after the restart"
  grep -q "fault: injecting kill at step 5 in step" "$out" || fail "the fault was not injected"
  [ "$(grep -c "fault: injecting" "$out")" -eq 1 ] || fail "the fault fired in more than the first launch"
  line="restart 1 of 2: rank 1 (stage 0, replica 1) failed at step 5; relaunching from checkpoint step 3 (--resume auto), 1 finished step(s) lost"
  grep -Fq "$line" "$out" || fail "no line '$line' in the job's output"
  run="$tmp/runs/train-$id"
  grep -Eq '"steps_done": *8[,}[:space:]]' "$run/report.json" 2>/dev/null || fail "steps_done is not 8"
  ref_loss=$(grep -o '"final_loss": *[0-9.eE+-]*' "$tmp/ref/report.json" 2>/dev/null)
  got_loss=$(grep -o '"final_loss": *[0-9.eE+-]*' "$run/report.json" 2>/dev/null)
  [ -n "$ref_loss" ] && [ "$ref_loss" = "$got_loss" ] || fail "final loss '$got_loss' differs from the uninterrupted '$ref_loss'"
else
  [ "$state" = FAILED ] || fail "job $id ended $state, expected FAILED"
  grep -q "fault: injecting kill at step 3 in allreduce" "$out" || fail "the fault was not injected"
  line="strata: rank 1 (stage 0, replica 1) died (signal 9) at step 3 during gradient all-reduce bucket 0"
  grep -Fxq "$line" "$out" || fail "no line '$line' in the job's output"
  [ "$(grep -c '^strata: rank .* died' "$out")" -eq 1 ] || fail "more than one rank reported dead"
  grep -Eq "finished: exit [1-9]" "$out" || fail "the script did not report a non-zero exit"
fi
for _ in $(seq 1 20); do pgrep -f "$tmp/runs" >/dev/null || break; sleep 0.5; done
! pgrep -af "$tmp/runs" >&2 || fail "strata processes left behind"
echo "[slurm-kill] PASS"
