#!/usr/bin/env bash
# Whole training runs whose disk fills up (RELIABILITY.md, "Full disk").
# Usage: full_disk.sh STRATA RUNLOG_TOOL CASE NP P D
#   ($REL_MPIRUN: the mpirun line; NP 1 runs the single-rank loop without mpirun; RUNLOG_TOOL is
#   tests/reliability/test_runlog.c's binary, whose check-steps and get parse with json-c)
#   out    --out on a 32 KiB tmpfs (nothing else writes there) that steps.jsonl fills during
#          training. Every line of steps.jsonl is a whole step record (consecutive steps from 1,
#          fewer than trained); the warning naming steps.jsonl is printed exactly once; training
#          goes on to the last step (its progress line); then the final checkpoint cannot be
#          written on the full disk: exit 1 with an error naming the disk-full error, and no
#          checkpoint directory (nor its temporary) is left.
#   log    only steps.jsonl is on a full file system (a link into an 8 KiB tmpfs; the rest of the
#          run directory is on the normal disk): one warning, whole lines only, and the run
#          finishes with exit 0, its final checkpoint, report.json "steps_log_complete": false
#          (and "trace_written": true, distributed), and `strata report` reads the shortened log.
#   start  --out on a tmpfs that is already full when the job starts: each rank warns that it
#          has no status record (the record is allocated up front, so no store into it can fault:
#          no SIGBUS), steps.jsonl warns once at step 1, training runs to the last step and the
#          final checkpoint fails: exit 1 with an error naming the disk-full error.
#   names  the run directory and the data file have '"', '\' and a newline in their names:
#          report.json (and trace.json, distributed) parse with json-c and give the data path
#          back intact; exit 0.
# The tmpfs cases need root to mount; without it they exit 77 (ctest: skipped) saying so.
set -euo pipefail
STRATA="$1"; TOOL="$2"; CASE="$3"; NP="$4"; P="$5"; D="$6"
read -r -a MPIRUN <<< "${REL_MPIRUN:?REL_MPIRUN must hold the mpirun command line}"
W="$(mktemp -d /tmp/strata-fulldisk.XXXXXX)"
FS="$W/fs"
cleanup() { mountpoint -q "$FS" && umount "$FS"; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
MODEL=(--layers 2 --heads 2 --dim 16 --ctx 16 --batch 6 --seed 5 --log-every 100000)
[ "$P" -gt 1 ] && MODEL+=(--pp "$P")
[ "$D" -gt 1 ] && MODEL+=(--dp "$D")
export STRATA_ABORT_GRACE_S=0 # a failing rank aborts the job at once (no hang is under test)

mount_tmpfs() { # mount_tmpfs SIZE: a tmpfs on $FS
  mkdir -p "$FS"
  if ! mount -t tmpfs -o "size=$1" tmpfs "$FS" 2>"$W/mount.err"; then
    echo "SKIP: cannot mount a tmpfs ($(cat "$W/mount.err")): this test needs root (CAP_SYS_ADMIN)"
    exit 77
  fi
}
train() { # train ARGS...: runs the job (NP ranks), output in $W/out.txt; prints its exit code
  local rc=0
  if [ "$NP" -eq 1 ]; then
    timeout -k 5 120 "$STRATA" train "$@" >"$W/out.txt" 2>&1 || rc=$?
  else
    timeout -k 5 120 "${MPIRUN[@]}" -np "$NP" -x STRATA_ABORT_GRACE_S "$STRATA" train "$@" \
      >"$W/out.txt" 2>&1 || rc=$?
  fi
  cat "$W/out.txt" >&2
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "the job did not end within 120 s"
  echo "$rc"
}
# whole_lines FILE STEPS: every line a step record, consecutive from 1, fewer than STEPS; prints n
whole_lines() {
  local n
  n="$("$TOOL" check-steps "$1")" || fail "$1 has a line that is not a whole step record"
  [ "$n" -lt "$2" ] || fail "$1 has all $n steps: the disk did not fill up"
  echo "$n"
}
one_warning() {
  local n
  n="$(grep -c "warning: .*steps.jsonl: No space left on device; step [0-9]* and later are not logged" "$W/out.txt" || true)"
  [ "$n" -eq 1 ] || fail "expected exactly one warning naming steps.jsonl, got $n"
  [ "$(grep -c "warning: .*steps.jsonl" "$W/out.txt")" -eq 1 ] || fail "steps.jsonl was warned about more than once"
}

case "$CASE" in
out)
  # 32 KiB: a page per rank's status record, the rest for steps.jsonl (single rank ~125 bytes a
  # line, distributed ~265): it fills after roughly 60-230 steps, well before STEPS
  STEPS=$([ "$NP" -eq 1 ] && echo 600 || echo 250)
  mount_tmpfs 32k
  rc=$(train "${MODEL[@]}" --steps "$STEPS" --out "$FS/run")
  [ "$rc" -eq 1 ] || fail "exit $rc, expected 1 (the final checkpoint cannot be written on a full disk)"
  n=$(whole_lines "$FS/run/steps.jsonl" "$STEPS")
  echo "steps.jsonl kept $n whole lines of $STEPS steps"
  one_warning
  first_lost=$(sed -n 's/.*steps.jsonl: No space left on device; step \([0-9]*\) and later.*/\1/p' "$W/out.txt")
  [ "$first_lost" -eq $((n + 1)) ] || fail "the warning names step $first_lost, the log ends at step $n"
  grep -q "step $STEPS/$STEPS |" "$W/out.txt" || fail "training did not go on to step $STEPS after the log failed"
  grep -q "error: .*No space left on device" "$W/out.txt" || fail "no error naming the full disk"
  if ls "$FS/run" | grep -q ckpt; then ls -la "$FS/run" >&2; fail "a checkpoint directory was left"; fi
  [ ! -e "$FS/run/report.json" ] || fail "report.json written after a failed checkpoint"
  ;;
start)
  STEPS=20
  mount_tmpfs 16k
  mkdir -p "$FS/run"
  head -c 1M /dev/zero >"$FS/ballast" 2>/dev/null || true # fills it: head fails with ENOSPC
  rc=$(train "${MODEL[@]}" --steps "$STEPS" --out "$FS/run")
  [ "$rc" -eq 1 ] || fail "exit $rc, expected 1 (the final checkpoint cannot be written on a full disk)"
  ! grep -q "terminated with signal" "$W/out.txt" || fail "a rank died of a signal"
  n=$(grep -c "warning: cannot size .*/status/rank-[0-9]*: No space left on device; no status record" "$W/out.txt" || true)
  [ "$n" -eq "$NP" ] || fail "expected $NP warnings about the status records, got $n"
  one_warning
  grep -q "steps.jsonl: No space left on device; step 1 and later" "$W/out.txt" || fail "the warning does not name step 1"
  [ "$("$TOOL" check-steps "$FS/run/steps.jsonl")" = 0 ] || fail "steps.jsonl is not empty"
  grep -q "step $STEPS/$STEPS |" "$W/out.txt" || fail "training did not run to step $STEPS"
  grep -q "error: .*No space left on device" "$W/out.txt" || fail "no error naming the full disk"
  ;;
log)
  STEPS=$([ "$NP" -eq 1 ] && echo 150 || echo 80)
  mount_tmpfs 8k
  mkdir -p "$W/run"
  ln -s "$FS/steps.jsonl" "$W/run/steps.jsonl"
  rc=$(train "${MODEL[@]}" --steps "$STEPS" --out "$W/run")
  [ "$rc" -eq 0 ] || fail "exit $rc, expected 0 (only the log failed)"
  n=$(whole_lines "$W/run/steps.jsonl" "$STEPS")
  echo "steps.jsonl kept $n whole lines of $STEPS steps"
  one_warning
  [ "$("$TOOL" get "$W/run/report.json" steps_log_complete)" = false ] || fail "report.json does not say steps_log_complete: false"
  [ "$("$TOOL" get "$W/run/report.json" steps_done)" = "$STEPS" ] || fail "report.json steps_done is not $STEPS"
  if [ "$NP" -gt 1 ]; then
    [ "$("$TOOL" get "$W/run/report.json" trace_written)" = true ] || fail "report.json does not say trace_written: true"
  fi
  [ -d "$W/run/ckpt-$(printf %08d "$STEPS")" ] || fail "the final checkpoint is missing"
  "$STRATA" report "$W/run" >"$W/report.txt" 2>&1 || { cat "$W/report.txt" >&2; fail "strata report failed on the shortened log"; }
  ;;
names)
  D_ODD="$W/we\"ir\\d
ir"
  mkdir -p "$D_ODD"
  cp "${STRATA_SOURCE_DIR:?}/data/fortunes.txt" "$D_ODD/co\"rp\\us.txt"
  rc=$(train "${MODEL[@]}" --steps 3 --out "$D_ODD/run" --data "$D_ODD/co\"rp\\us.txt")
  [ "$rc" -eq 0 ] || fail "exit $rc"
  [ "$("$TOOL" get "$D_ODD/run/report.json" config.data)" = "$D_ODD/co\"rp\\us.txt" ] ||
    fail "report.json does not give the data path back"
  [ "$("$TOOL" get "$D_ODD/run/report.json" steps_log_complete)" = true ] || fail "steps_log_complete is not true"
  [ "$("$TOOL" check-steps "$D_ODD/run/steps.jsonl")" = 3 ] || fail "steps.jsonl does not hold 3 whole records"
  if [ "$NP" -gt 1 ]; then
    "$TOOL" get "$D_ODD/run/trace.json" displayTimeUnit >/dev/null || fail "trace.json is not valid JSON"
  fi
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "PASS: $CASE np $NP"
