#!/usr/bin/env bash
# rank_failures.sh -- sourced by launch/strata-run and launch/slurm/common.sh: after a failed
# job, say which rank failed, at which step and in which operation, from the ranks' status
# records (worker/base/rank_status.h) and the launcher's own messages.

# strata_rank_failures RUN_DIR RC [LOG] [NEWER_THAN] -- after a failed job: one line per failed
# rank from the status records RUN_DIR/status/rank-R (worker/base/rank_status.h) that are newer than
# NEWER_THAN, the cause from the launcher's messages in LOG (mpirun / srun) or from RC:
#   strata: rank Q (stage s, replica d) died (signal 9) at step S during <operation>
#   strata: rank Q (stage s, replica d) failed at step S during <operation>: <its error>
#   strata: rank Q (stage s, replica d), which rank R waited on, was at step S during <operation>
# (the last for a stuck rank a survivor timed out on). Other ranks the launcher stopped
# (SIGTERM) after the failure are counted, not listed.
strata_rank_failures() {
  local dir="$1" rc="$2" log="${3:-}" since="${4:-}" f rec q s d step op state how stopped=0 n=0 w
  local -A who=() where=() st=()
  local failed=()
  [ -d "$dir/status" ] || return 0
  local named=""
  if [ -n "$log" ] && [ -f "$log" ]; then
    # mpirun's "process rank Q ... exited on signal" and its "Process name: [[J,K],Q]" of the
    # first process that exited non-zero, srun's "task Q: Killed" or "tasks A-B: Killed" before
    # srun starts terminating the step (after that, its kills are its own)
    named=$(awk '/_step_signal: Terminating/ { exit } { print }' "$log" |
            grep -oE "process rank [0-9]+ with PID [0-9]+ on node [^ ]+ exited on signal [0-9]+|Process name: +\[\[[0-9]+,[0-9]+\],[0-9]+\]|tasks? [0-9]+(-[0-9]+)?: (Killed|Terminated|Segmentation fault|Aborted)" |
            sed -E 's/^Process name: +\[\[[0-9]+,[0-9]+\],([0-9]+)\]$/rank \1/' |
            grep -oE "(rank|tasks?) [0-9]+(-[0-9]+)?" | grep -oE "[0-9]+(-[0-9]+)?$" |
            awk -F- '{ for (q = $1; q <= ($2 == "" ? $1 : $2); q++) print q }' | sort -u || true)
  fi
  for f in "$dir"/status/rank-*; do
    [ -f "$f" ] || continue
    [ -z "$since" ] || [ "$f" -nt "$since" ] || continue
    # the current slot (both sequence numbers equal, the larger one) and the state line
    rec=$(awk 'FNR <= 2 { l = $0; sub(/ +$/, "", l); n = split(l, a, "|")
                          if (n == 8 && a[1] == a[8] && a[1] ~ /^[0-9]+$/ && a[1] + 0 >= best) {
                            best = a[1] + 0; r = a[2] "|" a[3] "|" a[4] "|" a[6] "|" a[7] } }
               FNR == 3 { s = $0; sub(/ +$/, "", s); sub(/^state /, "", s) }
               END { if (r != "") print r "|" s }' "$f" 2>/dev/null) || continue
    [ -n "$rec" ] || continue
    IFS='|' read -r q s d step op state <<<"$rec"
    q=${q#rank }; s=${s#stage }; d=${d#replica }; step=${step#step }
    who[$q]="rank $q (stage $s, replica $d)"; st[$q]="$state"
    if [ "$step" = 0 ]; then where[$q]="before the first step during $op"; else where[$q]="at step $step during $op"; fi
    case "$state" in
      done) ;;
      "stopped by signal"*) stopped=$((stopped + 1)) ;;
      *) failed+=("$q") ;;
    esac
  done
  for q in "${failed[@]}"; do
    state="${st[$q]}"
    case "$state" in
      "failed: "*)
        echo "strata: ${who[$q]} failed ${where[$q]}: ${state#failed: }" >&2
        # a survivor that timed out names the rank it waited on: say where that one was
        w=$(echo "$state" | grep -oE "world rank [0-9]+" | head -1 | grep -oE "[0-9]+" || true)
        [ -n "$w" ] || w=$(echo "$state" | grep -oE "waiting on rank [0-9]+" | head -1 | grep -oE "[0-9]+" || true)
        if [ -n "$w" ] && [ -n "${who[$w]:-}" ] && [[ "${st[$w]}" == "stopped by signal"* ]]; then
          echo "strata: ${who[$w]}, which rank $q waited on, was ${where[$w]}" >&2
          stopped=$((stopped - 1))
        fi ;;
      failed*)
        echo "strata: ${who[$q]} $state ${where[$q]}" >&2 ;;
      *) # never reported: killed by a signal it could not catch, or exited without a word
        # When the launcher named the ranks that died, an unreported rank it did not name was
        # taken down with the job (e.g. its transfer from the dead rank failed): not a cause.
        if [ -n "$named" ] && ! grep -qx "$q" <<<"$named"; then stopped=$((stopped + 1)); continue; fi
        how=""
        if [ -n "$log" ] && [ -f "$log" ]; then
          how=$(grep -oE "process rank $q with PID [0-9]+ on node [^ ]+ exited on signal [0-9]+" "$log" |
                  head -1 | sed -E 's/.*exited on (signal [0-9]+).*/\1/' || true)
          [ -n "$how" ] || how=$(grep -A1 -E "Process name: +\[\[[0-9]+,[0-9]+\],$q\]" "$log" |
                  sed -nE 's/.*Exit code: +([0-9]+).*/exit code \1/p' | head -1 || true)
          [ -n "$how" ] || how=$(grep -oE "task $q: (Killed|Exited with exit code [0-9]+|Terminated|Segmentation fault|Aborted)" "$log" |
                  head -1 | sed -E 's/^task [0-9]+: //; s/Exited with exit code/exit code/; s/Killed/signal 9/;
                               s/Terminated/signal 15/; s/Segmentation fault/signal 11/; s/Aborted/signal 6/' || true)
        fi
        if [ -z "$how" ] && [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then how="signal $((rc - 128))"; fi
        echo "strata: ${who[$q]} died (${how:-no report: killed or exited}) ${where[$q]}" >&2 ;;
    esac
  done
  [ "$stopped" -le 0 ] || [ "${#failed[@]}" -eq 0 ] ||
    echo "strata: $stopped other rank(s) were stopped by the launcher; strata report $dir shows each rank's last state" >&2
  return 0
}
