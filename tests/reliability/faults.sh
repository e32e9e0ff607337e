#!/usr/bin/env bash
# Fault-injection tests of distributed `strata train`, driven by STRATA_FAULT (see
# worker/base/fault.h). Usage: faults.sh STRATA CASE ARGS...      ($REL_MPIRUN: the mpirun line)
#   fault NP P D ACTION RANK STEP OP
#        inject ACTION (kill|hang|exit) into world rank RANK at step STEP in OP; the job must end
#        non-zero within the bound (STRATA_COLL_TIMEOUT_S=5 here; `timeout` catches a hang),
#        name the failed rank (a survivor's "rank R: step S: <op> ... rank Q" for a hang; mpirun's
#        "process rank Q ... signal 9" / "Process name: [[..,Q]" for kill/exit), and leave no
#        process behind (checked by the unique run directory in every rank's command line).
#   ckptkill RANK OP   P=2 x D=1, checkpoints every 2 steps: RANK is killed while writing the
#        step-4 checkpoint (OP checkpoint: mid-shard; commit: rank 0 before the rename). ckpt-2
#        stays intact and no ckpt-4 appears; --resume auto continues from ckpt-2 and ends
#        bit-identical (losses, weights, moments) to an uninterrupted run.
#   report NP P D ACTION RANK STEP OP OPERATION
#        the same fault through launch/strata-run: after mpirun fails, the wrapper prints from
#        the ranks' status records (RUN/status/rank-R) "strata: rank RANK (stage s, replica d)
#        died (signal 9|exit code 1) at step STEP during OPERATION" (a hang: a survivor's
#        "strata: rank Q (...) failed at step K during ...: ... rank RANK ..." and "strata: rank
#        RANK (stage s, replica d), which rank Q waited on, was at step STEP during OPERATION"); the job
#        exits non-zero, leaves no process, and `strata report RUN` (exit 1: unfinished) shows
#        the failed rank's last state. exit: with a stopped rank's final state removed (the
#        launcher can kill it before it writes one) the rank mpirun named is still the only one
#        reported dead.
#   hostkill NP P D   a host-scoped kill takes every rank of the host at once: all NP ranks run on
#        this host and STRATA_FAULT="kill:host=$(hostname):step=4:op=commit" (checkpoints every 2
#        steps) fires where only the coordinator ever arrives (before it renames ckpt-00000004), so
#        the other ranks never reach the point themselves -- the extreme of a node-local rank that
#        lags behind. The job ends non-zero, rank 0 says it killed the NP-1 others, and every
#        rank's status record has no final state (died by SIGKILL; a rank the launcher stopped
#        afterwards would say "stopped by signal 15"); no process is left behind.
#   resume SEED  P=2 x D=1: a rank chosen from SEED is SIGKILLed at a step in 4..11 chosen from SEED,
#        resumed with --resume auto (--keep 2): the losses of every step and the final weights
#        and AdamW moments equal the uninterrupted run bit for bit; --keep left 2 checkpoints.
set -euo pipefail
STRATA="$1"; CASE="$2"; shift 2
read -r -a MPIRUN <<< "${REL_MPIRUN:?REL_MPIRUN must hold the mpirun command line}"
W="$(mktemp -d /tmp/strata-rel.XXXXXX)"; trap 'rm -rf "$W"' EXIT
TINY=(--layers 4 --heads 2 --dim 32 --ctx 16 --batch 24 --lr 3e-3 --warmup 5 --seed 11 --quiet)
export STRATA_COLL_TIMEOUT_S=5
BOUND_S=90 # a generous outer bound: a survivor stops within STRATA_COLL_TIMEOUT_S of the fault
fail() { echo "FAIL: $*" >&2; exit 1; }
mpi() { # mpi NP FAULT ARGS...: runs the job bounded by `timeout`; prints its rc
  local np="$1" fault="$2"; shift 2
  local rc=0
  STRATA_FAULT="$fault" timeout -k 5 "$BOUND_S" "${MPIRUN[@]}" -np "$np" -x STRATA_FAULT \
    -x STRATA_COLL_TIMEOUT_S "$STRATA" "$@" >"$W/out.txt" 2>&1 || rc=$?
  cat "$W/out.txt" >&2
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 -o -n "$fault" ] || fail "job did not end within ${BOUND_S}s (rc $rc)"
  echo "$rc"
}
no_leftovers() {
  local i
  for i in $(seq 1 20); do pgrep -f "$W" >/dev/null || return 0; sleep 0.5; done
  pgrep -af "$W" >&2; fail "processes left behind after the job"
}
# last_losses FILE: "step loss" for each step, the last occurrence winning (a resumed run appends
# the steps it re-runs after its checkpoint)
last_losses() {
  sed -nE 's/^\{"step": ([0-9]+), "loss": ([^,]*),.*/\1 \2/p' "$1" |
    awk '{ l[$1] = $2; if ($1 > n) n = $1 } END { for (i = 1; i <= n; i++) print i, l[i] }'
}
same_ckpt() { # same_ckpt DIR_A DIR_B: every safetensors file identical
  local f n=0
  for f in "$1"/*.safetensors; do
    cmp "$f" "$2/$(basename "$f")" || fail "$(basename "$f") differs between $1 and $2"
    n=$((n + 1))
  done
  [ "$n" -ge 2 ] || fail "no safetensors files in $1"
}

case "$CASE" in
fault)
  NP="$1"; P="$2"; D="$3"; ACT="$4"; R="$5"; S="$6"; OP="$7"
  rc=$(mpi "$NP" "$ACT:rank=$R:step=$S:op=$OP" train "${TINY[@]}" --steps 12 --pp "$P" --dp "$D" --out "$W/run")
  [ "$rc" -ne 0 ] || fail "the job exited 0 after a $ACT fault"
  grep -q "fault: injecting $ACT at step $S in $OP" "$W/out.txt" || fail "fault was not injected"
  case "$ACT" in
    hang)
      grep -Eq "error: train: rank [0-9]+: step $S: .*(rank $R |rank $R\)|world rank $R,)" "$W/out.txt" ||
        fail "no survivor named rank $R and step $S"
      grep -q "STRATA_COLL_TIMEOUT_S" "$W/out.txt" || fail "timeout message does not name STRATA_COLL_TIMEOUT_S" ;;
    kill)
      grep -Eq "process rank $R with PID .* exited on signal 9" "$W/out.txt" || fail "mpirun did not name rank $R" ;;
    exit)
      grep -Eq "Process name: \[\[[0-9]+,[0-9]+\],$R\]" "$W/out.txt" || fail "mpirun did not name rank $R" ;;
  esac
  # steps.jsonl holds every step completed before the failed one, none after
  n=$(grep -c '"step"' "$W/run/steps.jsonl" || true)
  [ "$n" -le "$S" ] || fail "$n steps logged after a fault in step $S"
  no_leftovers
  ;;
ckptkill)
  R="$1"; OP="$2"
  L=(train "${TINY[@]}" --steps 8 --pp 2 --dp 1 --ckpt-every 2)
  rc=$(mpi 2 "" "${L[@]}" --out "$W/ref"); [ "$rc" -eq 0 ] || fail "reference run failed"
  rc=$(mpi 2 "kill:rank=$R:step=4:op=$OP" "${L[@]}" --out "$W/run")
  [ "$rc" -ne 0 ] || fail "killed job exited 0"
  no_leftovers
  [ ! -e "$W/run/ckpt-00000004" ] || fail "a half-written ckpt-00000004 counts as a checkpoint"
  same_ckpt "$W/ref/ckpt-00000002" "$W/run/ckpt-00000002"
  rc=$(mpi 2 "" train --quiet --steps 8 --pp 2 --dp 1 --ckpt-every 2 --resume auto --out "$W/run")
  [ "$rc" -eq 0 ] || fail "resume failed"
  diff <(last_losses "$W/ref/steps.jsonl") <(last_losses "$W/run/steps.jsonl") || fail "losses differ"
  same_ckpt "$W/ref/ckpt-00000008" "$W/run/ckpt-00000008"
  ;;
report)
  NP="$1"; P="$2"; D="$3"; ACT="$4"; R="$5"; S="$6"; OP="$7"; OPERATION="$8"
  RUN_WRAPPER="${STRATA_SOURCE_DIR:?}/launch/strata-run"
  rc=0
  STRATA_FAULT="$ACT:rank=$R:step=$S:op=$OP" timeout -k 5 "$BOUND_S" "$RUN_WRAPPER" --strata "$STRATA" \
    -n "$NP" --run-dir "$W/run" -- train "${TINY[@]}" --steps 12 --pp "$P" --dp "$D" >"$W/out.txt" 2>&1 || rc=$?
  cat "$W/out.txt" >&2
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 -o "$ACT" = kill ] || fail "job did not end within ${BOUND_S}s (rc $rc)"
  [ "$rc" -ne 0 ] || fail "the job exited 0 after a $ACT fault"
  grep -q "fault: injecting $ACT at step $S in $OP" "$W/out.txt" || fail "fault was not injected"
  no_leftovers
  who="strata: rank $R (stage $((R % P)), replica $((R / P)))"
  case "$ACT" in
    kill) line="$who died (signal 9) at step $S during $OPERATION" ;;
    exit) line="$who died (exit code 1) at step $S during $OPERATION" ;;
    hang) line="$who, which rank [0-9]+ waited on, was at step $S during $OPERATION"
          line="${line//(/\\(}"; line="${line//)/\\)}"
          # a survivor timed out and named the hung rank
          grep -Eq "^strata: rank [0-9]+ .* failed at step $S during .*: .*rank $R[^0-9]" "$W/out.txt" ||
            fail "no survivor's failure line naming rank $R" ;;
  esac
  has_line() { if [ "$ACT" = hang ]; then grep -Exq "$line" "$1"; else grep -Fxq "$line" "$1"; fi; }
  has_line "$W/out.txt" || fail "no line '$line' from strata-run"
  [ "$ACT" = hang ] || [ "$(grep -c '^strata: rank .* died' "$W/out.txt")" -eq 1 ] || fail "more than one rank reported dead"
  has_line "$W/run/console.log" || fail "the failure line is not in console.log"
  set +e; rep=$("$STRATA" report "$W/run" 2>&1); rrc=$?; set -e
  echo "$rep" >&2
  [ "$rrc" -eq 1 ] || fail "strata report of the unfinished run exited $rrc, expected 1"
  [ "$ACT" = hang ] ||
    grep -Eq "^  rank $R \(stage $((R % P)), replica $((R / P)), pid [0-9]+\): step $S, $OPERATION: no final state" <<<"$rep" ||
    fail "strata report does not show rank $R's last state"
  if [ "$ACT" = exit ]; then
    # the race the launcher can win: a rank it stops may die before writing its final state.
    # mpirun named the rank that exited first ("Process name: [[..,R]"), so that one alone is
    # reported dead and the unreported one counts as stopped
    for f in "$W/run/status"/rank-*; do
      [ "$f" = "$W/run/status/rank-$R" ] || { sed -i '3s/.*/state/' "$f"; break; }
    done
    again=$(source "$STRATA_SOURCE_DIR/launch/rank_failures.sh"; strata_rank_failures "$W/run" 1 "$W/out.txt" 2>&1)
    echo "$again" >&2
    grep -Fxq "$line" <<<"$again" || fail "no line '$line' once a stopped rank's state is missing"
    [ "$(grep -c '^strata: rank .* died' <<<"$again")" -eq 1 ] ||
      fail "a rank the launcher stopped, without a final state, was reported dead"
  fi
  ;;
hostkill)
  NP="$1"; P="$2"; D="$3"; H="$(hostname)"
  rc=$(mpi "$NP" "kill:host=$H:step=4:op=commit" train "${TINY[@]}" --steps 12 --pp "$P" --dp "$D" \
    --ckpt-every 2 --out "$W/run")
  [ "$rc" -ne 0 ] || fail "the job exited 0 after a host kill"
  grep -q "fault: injecting kill at step 4 in commit" "$W/out.txt" || fail "fault was not injected"
  no_leftovers
  set +e; rep=$("$STRATA" report "$W/run" 2>&1); set -e
  echo "$rep" >&2
  for ((q = 0; q < NP; q++)); do
    grep -Eq "^  rank $q \(stage [0-9]+, replica [0-9]+, pid [0-9]+\): .*: no final state" <<<"$rep" ||
      fail "rank $q did not die with the host (its last state: $(grep -E "^  rank $q " <<<"$rep"))"
  done
  grep -Fq "[rank 0] fault: killed $((NP - 1)) other rank(s) of this job on host $H, now this one" "$W/out.txt" ||
    fail "rank 0 did not kill the $((NP - 1)) other ranks of host $H"
  ;;
resume)
  SEED="$1"; RANDOM="$SEED"
  # step 4..11: ckpt-00000002 exists to resume from (an asynchronous checkpoint of step S is
  # complete by the end of step S + 1)
  K=$((4 + RANDOM % 8)); R=$((RANDOM % 2))
  echo "seed $SEED: killing rank $R at step $K" >&2
  L=(train "${TINY[@]}" --steps 12 --pp 2 --dp 1 --ckpt-every 2 --keep 2)
  rc=$(mpi 2 "" "${L[@]}" --out "$W/ref"); [ "$rc" -eq 0 ] || fail "reference run failed"
  rc=$(mpi 2 "kill:rank=$R:step=$K" "${L[@]}" --out "$W/run")
  [ "$rc" -ne 0 ] || fail "killed job exited 0"
  no_leftovers
  rc=$(mpi 2 "" train --quiet --steps 12 --pp 2 --dp 1 --ckpt-every 2 --keep 2 --resume auto --out "$W/run")
  [ "$rc" -eq 0 ] || fail "resume failed"
  diff <(last_losses "$W/ref/steps.jsonl") <(last_losses "$W/run/steps.jsonl") || fail "losses differ"
  [ "$(last_losses "$W/run/steps.jsonl" | wc -l)" -eq 12 ] || fail "expected 12 steps"
  same_ckpt "$W/ref/ckpt-00000012" "$W/run/ckpt-00000012"
  n=$(ls -d "$W/run"/ckpt-* | wc -l); [ "$n" -eq 2 ] || fail "--keep 2 left $n checkpoints"
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "PASS $CASE $*"
