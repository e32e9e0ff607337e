#!/usr/bin/env bash
# restart.sh -- sourced by launch/strata-run and launch/slurm/train.sbatch: whether and how to
# relaunch a failed training job from its newest checkpoint.

# strata_train_out DEFAULT ARGS...: the --out of a `strata train` command line (ARGS), else DEFAULT.
strata_train_out() {
  local out="$1" prev="" a
  shift
  for a in "$@"; do
    [ "$prev" = --out ] && out="$a"
    [[ "$a" == --out=* ]] && out="${a#--out=}"
    prev="$a"
  done
  echo "$out"
}

# The last step a training run finished (OUT/steps.jsonl), 0 if none.
strata_last_step() {
  grep -o '"step": *[0-9]*' "$1/steps.jsonl" 2>/dev/null | tail -n 1 | grep -o '[0-9]*$' || echo 0
}

# The newest checkpoint's step in OUT (ckpt-<step>, committed by an atomic rename), 0 if none.
# `strata train --resume auto` verifies it and falls back to an older one if it is damaged.
strata_newest_ckpt_step() {
  local d n=0 s
  for d in "$1"/ckpt-[0-9]*; do
    [ -d "$d" ] || continue
    s=$((10#${d##*/ckpt-}))
    [ "$s" -gt "$n" ] && n=$s
  done
  echo "$n"
}

# strata_restart_next OUT FAILURES ATTEMPT MAX PREV_STEP -- after launch ATTEMPT (0 = the
# first) of a training job writing OUT failed, with FAILURES the lines of strata_rank_failures
# (launch/rank_failures.sh): returns 0 when it is to be launched again, after printing on stderr
#   restart A of MAX: rank Q (stage s, replica d) failed at step S; relaunching from checkpoint
#   step C (--resume auto), N finished step(s) lost
# and setting STRATA_RESTART_STEP=S and STRATA_RESTART_ARGS (the flags to add: --resume auto
# when OUT has a checkpoint; they come last on the command line, so they win over an earlier
# --resume). Returns 1 when not: MAX restarts done, or the job failed at the same step as in
# the previous launch (PREV_STEP; a failure that repeats is not a lost node), saying so.
strata_restart_next() {
  local out="$1" failures="$2" attempt="$3" max="$4" prev="$5" done_step ckpt_step step who from
  [ "$attempt" -lt "$max" ] || return 1
  done_step=$(strata_last_step "$out")
  ckpt_step=$(strata_newest_ckpt_step "$out")
  step=$(echo "$failures" | grep -oE "at step [0-9]+" | head -n 1 | grep -oE "[0-9]+" || true)
  [ -n "$step" ] || step=$((done_step + 1))
  if [ "$step" = "$prev" ]; then
    echo "[restart] error: the job failed at step $step again, as in the previous launch; not restarting" \
         "(a failure that repeats is not a lost node: fix its cause, then continue with --resume auto)" >&2
    return 1
  fi
  who=$(echo "$failures" | grep -oE "rank [0-9]+ \(stage [0-9]+, replica [0-9]+\)" | sort -u | paste -sd';' - |
        sed 's/;/; /g')
  STRATA_RESTART_STEP=$step
  STRATA_RESTART_ARGS=()
  if [ "$ckpt_step" -gt 0 ]; then
    from="from checkpoint step $ckpt_step (--resume auto)"
    STRATA_RESTART_ARGS=(--resume auto)
  else
    from="from step 0 (no checkpoint yet)"
  fi
  echo "[restart] restart $((attempt + 1)) of $max: ${who:-a rank} failed at step $step; relaunching" \
       "$from, $((done_step - ckpt_step)) finished step(s) lost" >&2
  return 0
}
