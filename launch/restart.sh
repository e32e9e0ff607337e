#!/usr/bin/env bash
# restart.sh -- sourced by launch/strata-run and launch/slurm/train.sbatch: whether and how to
# relaunch a failed training job from its newest checkpoint.

# strata_train_out DEFAULT ARGS...: the --out of a `strata train` command line (ARGS), else DEFAULT.
strata_train_out() { strata_flag_value out "$@"; }

# The last step a training run finished (OUT/steps.jsonl), 0 if none.
strata_last_step() {
  grep -o '"step": *[0-9]*' "$1/steps.jsonl" 2>/dev/null | tail -n 1 | grep -o '[0-9]*$' || echo 0
}

# The newest checkpoint's step in OUT (ckpt-<step>, committed by an atomic rename), 0 if none.
# `strata train --resume auto` verifies it and falls back to an older one if it is damaged.
strata_newest_ckpt_step() {
  local d n=0 s
  for d in "$1"/ckpt-[0-9]*; do
    # only committed ones: ckpt-<digits> (a write in progress or cut short has a suffix)
    [ -d "$d" ] && [[ "${d##*/ckpt-}" =~ ^[0-9]+$ ]] || continue
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
  # step 0: the launch failed before its first step (start-up)
  if [ -z "$step" ]; then
    if grep -q "before the first step" <<<"$failures"; then step=0; else step=$((done_step + 1)); fi
  fi
  if [ "$step" = "$prev" ]; then
    local at="at step $step"
    [ "$step" -ne 0 ] || at="at start-up"
    echo "[restart] error: the job failed $at again, as in the previous launch; not restarting" \
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
  local at="at step $step"
  [ "$step" -ne 0 ] || at="at start-up"
  echo "[restart] restart $((attempt + 1)) of $max: ${who:-a rank} failed $at; relaunching" \
       "$from, $((done_step - ckpt_step)) finished step(s) lost" >&2
  return 0
}

# strata_drop_layout_flags ARGS...: ARGS without the layout flags (--tp --pp --dp --microbatches
# --zero --sequence-parallel --recompute --stage-layers), one per line, for a new layout.
strata_drop_layout_flags() {
  local skip=0 a
  for a in "$@"; do
    if [ $skip -eq 1 ]; then skip=0; continue; fi
    case "$a" in
      --tp|--pp|--dp|--microbatches|--zero|--recompute|--stage-layers) skip=1 ;;
      --tp=*|--pp=*|--dp=*|--microbatches=*|--zero=*|--recompute=*|--stage-layers=*|--sequence-parallel) ;;
      *) printf '%s\n' "$a" ;;
    esac
  done
}

# strata_flag_value NAME DEFAULT ARGS...: the value of --NAME in a command line, else DEFAULT.
strata_flag_value() {
  local name="$1" v="$2" prev="" a
  shift 2
  for a in "$@"; do
    [ "$prev" = "--$name" ] && v="$a"
    [[ "$a" == "--$name="* ]] && v="${a#--"$name"=}"
    prev="$a"
  done
  echo "$v"
}

# strata_shrink_layout STRATA RANKS CKPT ARGS... -- the layout flags for `strata train` ARGS on
# RANKS ranks, one per line: the fastest layout that fits the device memory in `strata simulate
# --sweep` among those strata train runs (ZeRO 0 or 1), for the model of checkpoint CKPT (its
# config.json; "" for the flags and strata train's defaults) on the command's --device, --device-mem, --batch, --seq-len and --schedule.
# The global batch is the command's, so the loss curve continues as before (the sweep divides
# it into more micro-batches when there are fewer replicas). Returns 1, saying why, when no
# layout of RANKS ranks fits.
strata_shrink_layout() {
  local strata="$1" ranks="$2" ckpt="$3" cfg="" sim row
  shift 3
  local layers heads dim ctx vocab=256
  layers=$(strata_flag_value layers 4 "$@"); heads=$(strata_flag_value heads 4 "$@")
  dim=$(strata_flag_value dim 128 "$@"); ctx=$(strata_flag_value ctx 128 "$@")
  [ -n "$ckpt" ] && [ -f "$ckpt/config.json" ] && cfg="$ckpt/config.json"
  if [ -n "$cfg" ]; then # the checkpoint's shape wins: it is what the restart loads
    layers=$(jq -r '.n_layer' "$cfg"); heads=$(jq -r '.n_head' "$cfg"); dim=$(jq -r '.n_embd' "$cfg")
    ctx=$(jq -r '.n_positions // .n_ctx' "$cfg"); vocab=$(jq -r '.vocab_size' "$cfg")
  fi
  sim=("$strata" simulate --arch gpt --layers "$layers" --heads "$heads" --dim "$dim"
       --ctx "$(strata_flag_value seq-len "$ctx" "$@")" --vocab "$vocab" --nodes "$ranks"
       --batch "$(strata_flag_value batch 16 "$@")" --device "$(strata_flag_value device cpu "$@")"
       --schedule "$(strata_flag_value schedule gpipe "$@")" --virtual-stages 1 --sweep --json)
  local mem; mem=$(strata_flag_value device-mem "" "$@")
  [ -z "$mem" ] || sim+=(--device-mem "$mem")
  # strata train runs ZeRO 0 and 1: the sweep's ZeRO-2 and ZeRO-3 rows are not candidates
  row=$("${sim[@]}" 2>&1 | jq -ec '[.rows[] | select(.fits and .zero <= 1)][0]' 2>/dev/null) || {
    echo "[restart] error: no layout of $ranks rank(s) that strata train runs (ZeRO 0 or 1) fits this job (strata simulate --sweep: $("${sim[@]}" 2>&1 | tail -n 1))" >&2
    return 1
  }
  jq -r '"--tp", .tp, "--pp", .pp, "--dp", .dp, "--microbatches", .microbatches, "--zero", .zero,
         "--recompute", .recompute, (if .sequence_parallel then "--sequence-parallel" else empty end)' <<<"$row"
}

# strata_newest_ckpt_dir OUT: the newest checkpoint directory in OUT, "" if none.
strata_newest_ckpt_dir() {
  local s; s=$(strata_newest_ckpt_step "$1")
  [ "$s" -gt 0 ] || return 0
  ls -d "$1"/ckpt-*"$s" 2>/dev/null | tail -n 1
}

# strata_dead_nodes FAILURES PER_NODE NODE... -- the nodes (of NODE..., in rank order: ranks
# k*PER_NODE .. (k+1)*PER_NODE-1 on the k-th) on which every rank died, according to FAILURES
# (strata_rank_failures' lines): one "NODE FIRST-LAST" line each.
strata_dead_nodes() {
  local failures="$1" per="$2" k=0 node q dead
  shift 2
  for node in "$@"; do
    dead=0
    for ((q = k * per; q < (k + 1) * per; q++)); do
      grep -qE "rank $q \(stage [0-9]+, replica [0-9]+\) died" <<<"$failures" && dead=$((dead + 1))
    done
    [ "$dead" -ne "$per" ] || echo "$node $((k * per))-$(((k + 1) * per - 1))"
    k=$((k + 1))
  done
}

# strata_lost_nodes DEAD PER_NODE PROBE NODE... -- the nodes a failed job lost, one "NODE REASON"
# line each: every rank on it died at once (DEAD: strata_dead_nodes' lines), or it does not
# answer PROBE NODE (a command that fails or times out when the node is gone: a lost link, a
# dead slurmd). A collective time-out alone cannot tell which side of a broken link is cut off:
# every rank times out waiting on some other; the probe from the launching node decides.
strata_lost_nodes() {
  local dead="$1" per="$2" probe="$3" node k=0
  shift 3
  for node in "$@"; do
    if grep -q "^$node " <<<"$dead"; then
      echo "$node every rank on it (ranks $(awk -v n="$node" '$1 == n { print $2 }' <<<"$dead")) died"
    elif ! $probe "$node" >/dev/null 2>&1; then
      echo "$node it does not answer (ranks $((k * per))-$(((k + 1) * per - 1)) ran on it)"
    fi
    k=$((k + 1))
  done
}
