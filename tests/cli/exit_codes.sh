#!/usr/bin/env bash
# Bad input exits 2 with one clear sentence, also inside an MPI job (every rank leaves with 2,
# mpirun reports 2, no MPI_ABORT): serve's checkpoint, --listen port, --max-queue and
# --session-dir; infer's --delete-session of a missing session and a session saved by a job of
# another P; --ctx 0; a JSONL seed of 1e30; --resume DIR with model flags equal to / different
# from the checkpoint's; --resume auto past a corrupt newest checkpoint (it names the one it
# skipped, why, and the one it resumed from).
# Usage: exit_codes.sh STRATA      ($CLI_MPIRUN: the mpirun command line)
set -euo pipefail
STRATA="$1"
read -r -a MPIRUN <<< "${CLI_MPIRUN:?CLI_MPIRUN must hold the mpirun command line}"
W="$(mktemp -d /tmp/strata-exit.XXXXXX)"; trap 'rm -rf "$W"' EXIT
T=(--layers 3 --heads 2 --dim 32 --ctx 16 --batch 4 --warmup 20 --quiet)  # pinned: not the defaults
fail() { echo "FAIL: $*" >&2; exit 1; }
n=0
# expect CODE PATTERN CMD...: exit code CODE and PATTERN (grep -E) in the output
expect() {
  local want="$1" pat="$2"; shift 2
  local out code=0
  out=$(timeout -k 5 120 "$@" 2>&1) || code=$?
  [ "$code" -eq "$want" ] || fail "'$*' exited $code, expected $want; output: $out"
  # here-strings, not `echo | grep -q`: under pipefail grep -q's early exit can fail the echo
  grep -Eq -- "$pat" <<<"$out" || fail "'$*': output lacks /$pat/: $out"
  if [ "$want" = 2 ]; then
    grep -q "MPI_ABORT" <<<"$out" && fail "'$*': a rank aborted the job instead of exiting 2: $out"
    grep -q "serve: serve:" <<<"$out" && fail "'$*': doubled prefix: $out"
  fi
  echo "ok ($code): $(echo "$out" | grep -m1 -E "error|warning|resumed" || true)"
  n=$((n + 1))
}
M2=("${MPIRUN[@]}" -np 2 "$STRATA")
M3=("${MPIRUN[@]}" -np 3 "$STRATA")

"$STRATA" train "${T[@]}" --steps 4 --ckpt-every 2 --out "$W/run" > /dev/null
G="$W/run/ckpt-00000002"

group_serve() {
  # ---- serve: bad input is 2 on one rank and under mpirun (np 2, 3); a busy port is not (1,
  # checked by serve_cli)
  expect 2 "serve: --checkpoint: checkpoint '/nonexistent': cannot open config.json" "$STRATA" serve --checkpoint /nonexistent
  expect 2 "serve: --checkpoint: checkpoint '/nonexistent'" "${M2[@]}" serve --checkpoint /nonexistent
  expect 2 "serve: --checkpoint: checkpoint '/nonexistent'" "${M3[@]}" serve --checkpoint /nonexistent
  expect 2 "serve: --listen port '99999' must be a number from 0 to 65535" "$STRATA" serve --checkpoint "$G" --listen 127.0.0.1:99999
  expect 2 "serve: --listen port '99999'" "${M2[@]}" serve --checkpoint "$G" --listen 127.0.0.1:99999
  expect 2 "serve: --max-queue must be an integer in \[1, 1000000\], got '0'" "$STRATA" serve --checkpoint "$G" --max-queue 0
  expect 2 "^\[strata\] error: STRATA_SERVE_MAX_QUEUE must be an integer in \[1, 1000000\], got '0'" \
    env STRATA_SERVE_MAX_QUEUE=0 "$STRATA" serve --checkpoint "$G"
  : > "$W/a-file"
  expect 2 "serve: --session-dir: session directory $W/a-file is not a directory" "$STRATA" serve --checkpoint "$G" --session-dir "$W/a-file"
  expect 2 "serve: --session-dir: session directory $W/a-file is not a directory" "${M3[@]}" serve --checkpoint "$G" --session-dir "$W/a-file"
  cp -r "$G" "$W/damaged"; truncate -s -8 "$W/damaged/model.safetensors"
  expect 2 "serve: --checkpoint: .*'model.safetensors' checksum mismatch" "${M2[@]}" serve --checkpoint "$W/damaged"
}
group_infer() {
  # ---- infer: a missing session is bad input, on one rank and on three
  expect 2 "infer: --delete-session: no session 'nope' in $W/sd" "$STRATA" infer --checkpoint "$G" --session-dir "$W/sd" --delete-session nope
  expect 2 "infer: --delete-session: no session 'nope'" "${M3[@]}" infer --checkpoint "$G" --session-dir "$W/sd" --delete-session nope
  expect 2 "infer: --delete-session: invalid session ID '\.\./x'" "$STRATA" infer --checkpoint "$G" --delete-session ../x
  # a session saved by a P = 1 job, continued by P = 2 and P = 3 jobs; and one saved by P = 2
  expect 0 "" "$STRATA" infer --checkpoint "$G" --session-dir "$W/sd" --session s1 --prompt hi --max-tokens 2
  expect 2 "infer: prompt 1: session 's1' was saved by a job of 1 pipeline stages; this job has 2: restore it with mpirun -np 1" \
    "${M2[@]}" infer --checkpoint "$G" --session-dir "$W/sd" --session s1 --prompt " more" --max-tokens 2
  expect 2 "session 's1' was saved by a job of 1 pipeline stages; this job has 3" \
    "${M3[@]}" infer --checkpoint "$G" --session-dir "$W/sd" --session s1 --prompt " more" --max-tokens 2
  expect 0 "" "$STRATA" infer --checkpoint "$G" --session-dir "$W/sd" --session s1 --prompt " more" --max-tokens 2
  expect 0 "" "${M2[@]}" infer --checkpoint "$G" --session-dir "$W/sd" --session s2 --prompt hi --max-tokens 2
  expect 2 "session 's2' was saved by a job of 2 pipeline stages; this job has 1" \
    "$STRATA" infer --checkpoint "$G" --session-dir "$W/sd" --session s2 --prompt " more" --max-tokens 2
  expect 0 "deleted session s2" "${M2[@]}" infer --checkpoint "$G" --session-dir "$W/sd" --delete-session s2
}
group_jsonl() {
  # JSONL numbers keep the flags' ranges
  printf '{"prompt": "a", "seed": 1e30}\n' > "$W/p.jsonl"
  expect 2 "p.jsonl line 1: field \"seed\" must be an integer in \[0, 2\^63\), got 1e30" "$STRATA" infer --checkpoint "$G" --prompts "$W/p.jsonl"
  printf '{"prompt": "a", "seed": -1}\n' > "$W/p.jsonl"
  expect 2 "field \"seed\" must be an integer in \[0, 2\^63\), got -1" "$STRATA" infer --checkpoint "$G" --prompts "$W/p.jsonl"
  printf '{"prompt": "a", "max_tokens": 2, "top_p": 0}\n' > "$W/p.jsonl"
  expect 2 "field \"top_p\" must be a number in \(0, 1\], got 0" "$STRATA" infer --checkpoint "$G" --prompts "$W/p.jsonl"
  printf '{"prompt": "a", "max_tokens": 2, "seed": 9223372036854775807}\n' > "$W/p.jsonl"
  expect 0 "" "$STRATA" infer --checkpoint "$G" --prompts "$W/p.jsonl"
}
group_train() {
  # ---- train: each flag names itself
  expect 2 "train: --ctx must be an integer in \[1, 1048576\], got '0'" "$STRATA" train --ctx 0 --out "$W/x"
  if "$STRATA" train --ctx 0 --out "$W/x" 2>&1 | grep -q -- "--seq-len"; then fail "--ctx 0 mentions --seq-len"; fi
}
group_resume() {
  # ---- --resume DIR: model and training flags equal to the checkpoint's are accepted (and change
  # nothing: the same losses as a resume without them), different ones are refused by name
  "$STRATA" train --quiet --resume "$G" --out "$W/plain" > /dev/null
  expect 0 "resumed from $G at step 2" "$STRATA" train --quiet --resume "$G" --out "$W/same" \
    --layers 3 --heads 2 --dim 32 --ctx 16 --batch 4 --seq-len 16 --seed 1337 --lr 3e-3 --warmup 20 \
    --min-lr-ratio 0.1 --weight-decay 0.1 --grad-clip 1
  cmp "$W/plain/steps.jsonl" "$W/same/steps.jsonl" > /dev/null ||
    diff <(sed -E 's/.*"loss": ([^,]*),.*/\1/' "$W/plain/steps.jsonl") <(sed -E 's/.*"loss": ([^,]*),.*/\1/' "$W/same/steps.jsonl") ||
    fail "resuming with the checkpoint's own flags changed the losses"
  expect 2 "train: --layers 4 differs from checkpoint $G's 3: .*drop --layers or pass 3" "$STRATA" train --quiet --resume "$G" --layers 4 --out "$W/y"
  expect 2 "train: --ctx 32 differs from checkpoint $G's 16" "$STRATA" train --quiet --resume "$G" --ctx 32 --out "$W/y"
  expect 2 "train: --seed 7 differs from checkpoint $G's 1337" "$STRATA" train --quiet --resume "$G" --seed 7 --out "$W/y"
  expect 2 "train: --lr 0.004 differs from checkpoint $G's 0.003" "$STRATA" train --quiet --resume "$G" --lr 0.004 --out "$W/y"
  expect 2 "train: --heads 4 differs from checkpoint $G's 2" "${M2[@]}" train --quiet --resume "$G" --heads 4 --dp 2 --out "$W/y"
}
group_auto() {
  # ---- --resume auto past a corrupt newest checkpoint: one line for it (path and reason), then
  # the checkpoint it resumed from; under mpirun (np 2) too, printed once (rank 0)
  cp -r "$W/run" "$W/auto"
  truncate -s -10 "$W/auto/ckpt-00000004/model.safetensors"
  out=$("$STRATA" train --quiet --resume auto --steps 6 --out "$W/auto" 2>&1) || fail "resume auto failed: $out"
  lines=$(echo "$out" | grep -E -e "--resume auto: skipping $W/auto/ckpt-00000004: .*'model.safetensors' checksum mismatch" \
    -e "--resume auto: resuming from $W/auto/ckpt-00000002 \(step 2\)")
  [ "$(echo "$lines" | wc -l)" -eq 2 ] && echo "$lines" | head -1 | grep -q "warning: .*skipping" ||
    fail "resume auto: expected the skipped checkpoint (path, reason), then the one resumed from: $out"
  echo "ok (0): $lines"
  n=$((n + 1))
  grep -q '"step": 3' "$W/auto/steps.jsonl" || fail "resume auto did not continue from step 2"
  out=$("$STRATA" train --quiet --resume auto --steps 8 --out "$W/auto" 2>&1)
  echo "$out" | grep -q "skipping" && fail "a valid newest checkpoint was reported as skipped: $out"
  cp -r "$W/run" "$W/auto2"
  truncate -s -10 "$W/auto2/ckpt-00000004/model.safetensors"
  out=$(timeout -k 5 120 "${MPIRUN[@]}" -np 2 "$STRATA" train --quiet --resume auto --steps 6 --dp 2 --out "$W/auto2" 2>&1) ||
    fail "resume auto at np 2 failed: $out"
  [ "$(echo "$out" | grep -c "skipping $W/auto2/ckpt-00000004: .*checksum mismatch")" -eq 1 ] || fail "np 2: expected one skip line: $out"
  [ "$(echo "$out" | grep -c "train: --resume auto: resuming from $W/auto2/ckpt-00000002 (step 2)")" -eq 1 ] ||
    fail "np 2: expected one line naming the checkpoint resumed from: $out"
  n=$((n + 1))
}

# The groups share only the checkpoint they read ($W/run): they run side by side, since each case
# mostly waits on process and mpirun start-up; each one's output is printed after, in order.
groups=(serve infer jsonl train resume auto); pids=()
# each group's count of cases to its own file, for the total
for g in "${groups[@]}"; do ( "group_$g"; echo "$n" > "$W/group_$g.n" ) > "$W/group_$g.log" 2>&1 & pids+=($!); done
failed=0
for i in "${!groups[@]}"; do wait "${pids[$i]}" || failed=1; cat "$W/group_${groups[$i]}.log"; done
[ "$failed" -eq 0 ] || fail "a case failed (above)"
n=0; for f in "$W"/group_*.n; do n=$((n + $(cat "$f"))); done
echo "PASS: $n cases"
