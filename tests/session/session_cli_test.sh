#!/bin/bash
# End-to-end tests of sessions in `strata infer` (registered in tests/session.cmake). Uses the
# checkpoint that infer_setup_checkpoint trains (tests/infer/infer_cli_test.sh setup).
# usage: session_cli_test.sh CASE STRATA_BIN WORK_DIR MPIRUN_ARGS...
#   followup  in one process, a follow-up turn of a session equals the same text sent statelessly
#             with the whole history (greedy: identical tokens), for P = 1 and P = 3
#   restart   turn 1 in one process, turn 2 in a new process (P = 2): restored from disk, equal to stateless
#   evict     a tiny --session-mem-mb evicts idle sessions; the next turn reloads from disk transparently
#   manage    --list-sessions shows sessions, --delete-session removes them
#   invalid   IDs "../x", "a/b", "", 65 characters are refused before touching the file system
#   overflow  a follow-up that would pass n_ctx fails naming the lengths; a session of another model is refused
#   tp        --tp 2 x P = 2 (np 4, the 4-head checkpoint): turn 1 in one process, turns 2 and 3 each in
#             a new one equal the same turns in one uninterrupted process and the stateless request;
#             one part file per (stage, t); restoring at --tp 1 or --tp 4 is refused naming --tp 2 (exit 2)
#   bf16      --precision bf16 (P = 2): turn 1 in one process, turn 2 in a new one (restored from disk)
#             equals the stateless bf16 request with the whole history; the bf16 part files hold
#             half the KV bytes of the fp32 session's; resuming the bf16 session with --precision
#             fp32 is refused naming --precision bf16 (exit != 0)
#   llama     a tiny Llama checkpoint (trained here; GQA, a cache of the kv heads): turn 1 in one
#             process, turns 2 (greedy) and 3 (seeded sample) each in a new one, restored from disk,
#             equal the stateless request with the whole history as one prompt; the session of the
#             Llama checkpoint is refused by a GPT-2 one (another model, exit 2)
set -u
CASE=$1; S=$2; W0=$3; shift 3; MPI=("$@")
CK=$W0/run/ckpt-00000200
CKT=$W0/tp/ckpt-00000200
W=$W0/session_$CASE
fail() { echo "FAIL: $*"; exit 1; }
run() { local np=$1; shift; timeout 120 "${MPI[@]}" -np "$np" "$S" infer "$@"; }
ids() { sed -n 's/.*"token_ids": \[\([^]]*\)\].*/\1/p' "$1" | tr -d ' '; }
field() { sed -n "s/.*\"$2\": \"\\{0,1\\}\\([^\",]*\\).*/\\1/p" "$1"; }
tok() { printf '%s' "$1" | od -An -tu1 | tr -s ' \n' ',,' | sed 's/^,//; s/,$//'; }
rm -rf "$W" && mkdir -p "$W"
if [ "$CASE" = llama ]; then
  "$S" train --arch llama --layers 2 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --batch 4 --steps 80 --lr 0.01 \
    --warmup 2 --quiet --eval-tokens 128 --out "$W/llama" || fail "strata train --arch llama"
  CKG=$CK
  CK=$W/llama/ckpt-00000080
fi
test -f "$CK/model.safetensors" || fail "no checkpoint at $CK (run infer_setup_checkpoint first)"
SD=$W/sessions

# stateless reference: the tokens generated after HISTORY_IDS (comma list)
stateless() { local h=$1 n=$2; shift 2; run 1 --checkpoint "$CK" --prompt-tokens "$h" --max-tokens "$n" --json "$@" > "$W/ref.jsonl" || fail "stateless run"; ids "$W/ref.jsonl"; }

case $CASE in
followup)
  for np in 1 3; do
    printf '{"prompt": "Hello", "session": "chat1", "max_tokens": 8}\n{"prompt": " and then", "session": "chat1", "max_tokens": 10}\n' > "$W/turns.jsonl"
    run $np --checkpoint "$CK" --prompts "$W/turns.jsonl" --session-dir "$SD$np" --json > "$W/out$np.jsonl" || fail "np $np run"
    t1=$(ids "$W/out$np.jsonl" | sed -n 1p); t2=$(ids "$W/out$np.jsonl" | sed -n 2p)
    src2=$(field "$W/out$np.jsonl" session_source | sed -n 2p)
    cached2=$(sed -n 's/.*"cached_tokens": \([0-9]*\).*/\1/p' "$W/out$np.jsonl" | sed -n 2p)
    test "$src2" = memory || fail "np $np: turn 2 source '$src2', expected memory"
    test "$cached2" = 12 || fail "np $np: turn 2 reused $cached2 cached positions, expected 5 + 8 - 1 = 12"
    ref=$(stateless "$(tok Hello),$t1,$(tok ' and then')" 10)
    echo "np $np: turn2 $t2 | stateless $ref"
    test "$t2" = "$ref" || fail "np $np: follow-up differs from the stateless request with the whole history"
    # sampled (temperature 1, seeded): any logit difference would show as a different draw
    printf '{"prompt": " it was", "session": "chat1", "max_tokens": 12, "temperature": 1.0, "seed": 9}\n' > "$W/turn3.jsonl"
    run $np --checkpoint "$CK" --prompts "$W/turn3.jsonl" --session-dir "$SD$np" --json > "$W/out3_$np.jsonl" || fail "np $np turn 3"
    t3=$(ids "$W/out3_$np.jsonl")
    ref=$(stateless "$(tok Hello),$t1,$(tok ' and then'),$t2,$(tok ' it was')" 12 --temperature 1.0 --seed 9)
    echo "np $np: turn3 $t3 | stateless $ref"
    test "$t3" = "$ref" || fail "np $np: sampled follow-up differs from stateless"
    ls "$SD$np" | grep -q "chat1.stage$((np-1))-of-$np.kv" || fail "np $np: no session file per stage"
  done
  ;;
bf16)
  b=(--checkpoint "$CK" --session-dir "$SD" --json)
  run 2 "${b[@]}" --precision bf16 --session s16 --prompt "Hello" --max-tokens 8 > "$W/t1.jsonl" || fail "bf16 turn 1"
  run 2 "${b[@]}" --session s32 --prompt "Hello" --max-tokens 8 > "$W/f1.jsonl" || fail "fp32 turn 1"
  run 2 "${b[@]}" --precision bf16 --session s16 --prompt " and then" --max-tokens 10 > "$W/t2.jsonl" || fail "bf16 turn 2"
  test "$(field "$W/t2.jsonl" session_source)" = disk || fail "bf16 turn 2 was not restored from disk"
  ref=$(stateless "$(tok Hello),$(ids "$W/t1.jsonl"),$(tok ' and then')" 10 --precision bf16)
  echo "bf16 restored: $(ids "$W/t2.jsonl") | stateless bf16 $ref | fp32 turn 1 $(ids "$W/f1.jsonl") bf16 turn 1 $(ids "$W/t1.jsonl")"
  test "$(ids "$W/t2.jsonl")" = "$ref" || fail "bf16 restored follow-up differs from the stateless bf16 request"
  # stage 1's part holds no tokens: header (96) + KV + checksum (8); s16 has had two turns, s32
  # one, so compare the KV bytes per cached position (context - 1: the last token is not cached)
  n16=$(stat -c %s "$SD/s16.stage1-of-2.kv"); n32=$(stat -c %s "$SD/s32.stage1-of-2.kv")
  p16=$(sed -n 's/.*"context_tokens": \([0-9]*\).*/\1/p' "$W/t2.jsonl"); p32=$(sed -n 's/.*"context_tokens": \([0-9]*\).*/\1/p' "$W/f1.jsonl")
  echo "part files: bf16 $n16 bytes ($p16 tokens), fp32 $n32 bytes ($p32 tokens)"
  test $(( (n32 - 104) * (p16 - 1) )) = $(( 2 * (n16 - 104) * (p32 - 1) )) || fail "bf16 part file is not half the fp32 one per position"
  run 2 "${b[@]}" --session s16 --prompt " more" --max-tokens 2 > "$W/x.jsonl" 2> "$W/x.err" && fail "fp32 resumed a bf16 session"
  grep -q -- "--precision bf16" "$W/x.err" || { cat "$W/x.err"; fail "the refusal does not name --precision bf16"; }
  echo "refused: $(grep -m1 -- '--precision bf16' "$W/x.err")"
  ;;
restart)
  run 2 --checkpoint "$CK" --session s-restart --prompt "Hello" --max-tokens 8 --session-dir "$SD" --json > "$W/t1.jsonl" || fail "turn 1"
  test "$(field "$W/t1.jsonl" session_source)" = new || fail "turn 1 should create the session"
  run 2 --checkpoint "$CK" --session s-restart --prompt " and then" --max-tokens 10 --session-dir "$SD" --json > "$W/t2.jsonl" || fail "turn 2"
  test "$(field "$W/t2.jsonl" session_source)" = disk || fail "turn 2 was not restored from disk"
  ref=$(stateless "$(tok Hello),$(ids "$W/t1.jsonl"),$(tok ' and then')" 10)
  echo "restored: $(ids "$W/t2.jsonl") | stateless $ref"
  test "$(ids "$W/t2.jsonl")" = "$ref" || fail "restored follow-up differs from stateless"
  # a third turn without a prompt continues generating
  run 2 --checkpoint "$CK" --session s-restart --max-tokens 4 --session-dir "$SD" --json > "$W/t3.jsonl" || fail "turn 3"
  ref=$(stateless "$(tok Hello),$(ids "$W/t1.jsonl"),$(tok ' and then'),$(ids "$W/t2.jsonl")" 4)
  test "$(ids "$W/t3.jsonl")" = "$ref" || fail "turn 3 (no prompt) differs from stateless"
  ;;
evict)
  printf '%s\n' '{"prompt": "Hello", "session": "A", "max_tokens": 6}' '{"prompt": "Goodbye", "session": "B", "max_tokens": 6}' \
    '{"prompt": " again", "session": "A", "max_tokens": 6}' > "$W/turns.jsonl"
  run 2 --checkpoint "$CK" --prompts "$W/turns.jsonl" --session-dir "$SD" --session-mem-mb 0.0001 --max-batch 1 --json > "$W/out.jsonl" || fail "run"
  test "$(field "$W/out.jsonl" session_source | tr '\n' ' ')" = "new new disk " || fail "sources: $(field "$W/out.jsonl" session_source | tr '\n' ' ') (expected new new disk)"
  ref=$(stateless "$(tok Hello),$(ids "$W/out.jsonl" | sed -n 1p),$(tok ' again')" 6)
  test "$(ids "$W/out.jsonl" | sed -n 3p)" = "$ref" || fail "reloaded session differs from stateless"
  # with a large budget the same turns stay in memory
  rm -rf "$SD"
  run 2 --checkpoint "$CK" --prompts "$W/turns.jsonl" --session-dir "$SD" --session-mem-mb 100 --json > "$W/out2.jsonl" || fail "run 2"
  test "$(field "$W/out2.jsonl" session_source | tr '\n' ' ')" = "new new memory " || fail "large budget: $(field "$W/out2.jsonl" session_source | tr '\n' ' ')"
  test "$(ids "$W/out2.jsonl")" = "$(ids "$W/out.jsonl")" || fail "tokens depend on eviction"
  ;;
manage)
  run 1 --checkpoint "$CK" --session keep-me --prompt "Hi" --max-tokens 3 --session-dir "$SD" > /dev/null || fail "create 1"
  run 1 --checkpoint "$CK" --session drop_me --prompt "Yo" --max-tokens 3 --session-dir "$SD" > /dev/null || fail "create 2"
  run 1 --list-sessions --session-dir "$SD" > "$W/list.txt" || fail "list"
  cat "$W/list.txt"
  grep -q '^keep-me ' "$W/list.txt" && grep -q '^drop_me ' "$W/list.txt" || fail "list lacks a session"
  run 1 --delete-session drop_me --session-dir "$SD" || fail "delete"
  run 1 --list-sessions --session-dir "$SD" --json > "$W/list2.txt" || fail "list 2"
  grep -q '"keep-me"' "$W/list2.txt" || fail "keep-me gone"
  grep -q 'drop_me' "$W/list2.txt" && fail "drop_me still listed"
  ls "$SD" | grep -q drop_me && fail "drop_me files remain"
  run 1 --delete-session drop_me --session-dir "$SD" 2> "$W/err.txt" && fail "deleting a missing session succeeded"
  grep -q "no session 'drop_me'" "$W/err.txt" || fail "missing-session message"
  # default directory: <checkpoint>/../sessions
  run 1 --checkpoint "$CK" --session dflt --prompt "Hi" --max-tokens 2 > /dev/null || fail "default dir"
  test -f "$W0/run/sessions/dflt.stage0-of-1.kv" || fail "default session dir is not <checkpoint>/../sessions"
  run 1 --delete-session dflt --checkpoint "$CK" > /dev/null || fail "delete default"
  ;;
invalid)
  # invalid_id ID K: both refusals of ID (own error file K); the IDs are independent and each run
  # is mostly mpirun start-up, so they run side by side
  invalid_id() {
    local id="$1" err="$W/err-$2.txt" rc
    run 1 --checkpoint "$CK" --session "$id" --prompt "Hi" --max-tokens 2 --session-dir "$SD" > /dev/null 2> "$err"
    rc=$?
    test $rc -ne 0 || fail "session ID '$id' accepted"
    grep -q "invalid session ID" "$err" || { cat "$err"; fail "no clear message for '$id'"; }
    run 1 --delete-session "$id" --session-dir "$SD" 2> "$err" && fail "delete accepted '$id'"
    grep -q "invalid session ID" "$err" || fail "delete: no clear message for '$id'"
  }
  k=0; pids=()
  for id in "../x" "a/b" "" "$(printf 'a%.0s' $(seq 1 65))" "x y" "é"; do
    k=$((k + 1)); invalid_id "$id" "$k" & pids+=($!)
  done
  # every case to its end (none left writing into $W as it is removed), then the verdict
  failed=0; for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ "$failed" -eq 0 ] || exit 1
  printf '{"prompt": "x", "session": "../evil"}\n' > "$W/bad.jsonl"
  run 1 --checkpoint "$CK" --prompts "$W/bad.jsonl" --session-dir "$SD" 2> "$W/err.txt" && fail "JSONL ID accepted"
  grep -q "line 1: invalid session ID" "$W/err.txt" || fail "JSONL: no clear message"
  test ! -e "$W/evil.stage0-of-1.kv" -a ! -e "$W/x.stage0-of-1.kv" || fail "a file was written outside the session dir"
  test "$(ls "$SD" 2>/dev/null | wc -l)" = 0 || fail "files were written for invalid IDs"
  a64=$(printf 'a%.0s' $(seq 1 64))
  run 1 --checkpoint "$CK" --session "$a64" --prompt "Hi" --max-tokens 2 --session-dir "$SD" > /dev/null || fail "64-character ID refused"
  ;;
overflow)
  run 2 --checkpoint "$CK" --session long --prompt "0123456789012345678901234567890123456789" --max-tokens 10 --session-dir "$SD" > /dev/null || fail "turn 1"
  # history 50 + prompt 5 + max_tokens 10 = 65 > 64
  run 2 --checkpoint "$CK" --session long --prompt "abcde" --max-tokens 10 --session-dir "$SD" --json > "$W/out.jsonl" 2> "$W/err.txt"
  rc=$?
  test $rc -ne 0 -a $rc -ne 124 || fail "overflow: exit $rc"
  grep -q "history 50 + prompt 5 + max_tokens 10 = 65 tokens > the model's context 64" "$W/err.txt" || { cat "$W/err.txt"; fail "overflow message"; }
  # the session is untouched and still usable within the limit
  run 2 --checkpoint "$CK" --session long --prompt "abcde" --max-tokens 9 --session-dir "$SD" --json > "$W/ok.jsonl" || fail "within the limit"
  test "$(sed -n 's/.*"context_tokens": \([0-9]*\).*/\1/p' "$W/ok.jsonl")" = 64 || fail "context_tokens != 64"
  # a session made with another model is refused
  run 1 --checkpoint "$CK" --session m1 --prompt "Hi" --max-tokens 2 --session-dir "$SD" > /dev/null || fail "m1"
  run 1 --checkpoint "$W0/other/ckpt-00000003" --session m1 --prompt "Hi" --max-tokens 2 --session-dir "$SD" 2> "$W/err.txt" > /dev/null && fail "other model accepted"
  grep -q "made with another model" "$W/err.txt" || { cat "$W/err.txt"; fail "model mismatch message"; }
  # and one made with another number of stages
  run 2 --checkpoint "$CK" --session m1 --prompt "Hi" --max-tokens 2 --session-dir "$SD" 2> "$W/err.txt" > /dev/null && fail "other P accepted"
  grep -q "saved by a job of 1 pipeline stages" "$W/err.txt" || { cat "$W/err.txt"; fail "stage-count message"; }
  ;;
tp)
  test -f "$CKT/model.safetensors" || fail "no checkpoint at $CKT (run infer_setup_checkpoint first)"
  # the uninterrupted reference: three turns of one session in one process
  printf '%s\n' '{"prompt": "Hello", "session": "u", "max_tokens": 8}' '{"prompt": " and then", "session": "u", "max_tokens": 10}' \
    '{"prompt": " it was", "session": "u", "max_tokens": 12, "temperature": 1.0, "seed": 9}' > "$W/turns.jsonl"
  run 4 --tp 2 --checkpoint "$CKT" --prompts "$W/turns.jsonl" --session-dir "$SD/u" --json > "$W/u.jsonl" || fail "uninterrupted"
  test "$(field "$W/u.jsonl" session_source | tr '\n' ' ')" = "new memory memory " || fail "uninterrupted sources"
  # the same turns, each in a new process (restored from disk)
  r() { run 4 --tp 2 --checkpoint "$CKT" --session s-tp --session-dir "$SD/r" --json "$@"; }
  r --prompt "Hello" --max-tokens 8 > "$W/t1.jsonl" || fail "turn 1"
  r --prompt " and then" --max-tokens 10 > "$W/t2.jsonl" || fail "turn 2"
  r --prompt " it was" --max-tokens 12 --temperature 1.0 --seed 9 > "$W/t3.jsonl" || fail "turn 3"
  test "$(field "$W/t2.jsonl" session_source)$(field "$W/t3.jsonl" session_source)" = diskdisk || fail "turns 2, 3 not restored from disk"
  for k in 1 2 3; do
    echo "turn $k: restarted $(ids "$W/t$k.jsonl") | uninterrupted $(ids "$W/u.jsonl" | sed -n ${k}p)"
    test "$(ids "$W/t$k.jsonl")" = "$(ids "$W/u.jsonl" | sed -n ${k}p)" || fail "turn $k after a restart differs from the uninterrupted run"
  done
  t1=$(ids "$W/t1.jsonl"); t2=$(ids "$W/t2.jsonl")
  ref=$(run 1 --checkpoint "$CKT" --prompt-tokens "$(tok Hello),$t1,$(tok ' and then')" --max-tokens 10 --json | sed -n 's/.*"token_ids": \[\([^]]*\)\].*/\1/p' | tr -d ' ')
  test "$t2" = "$ref" || fail "turn 2 with --tp 2 x P 2 differs from the stateless T=1 request ($ref)"
  test "$(sed -n 's/.*"cached_tokens": \([0-9]*\).*/\1/p' "$W/t2.jsonl")" = 12 || fail "turn 2 did not reuse 12 cached positions"
  for st in 0 1; do
    for t in 0 1; do
      test -f "$SD/r/s-tp.stage$st-of-2.tp$t-of-2.kv" || fail "no part file for stage $st, tp rank $t"
    done
  done
  test -f "$SD/r/s-tp.session" || fail "no commit record"
  run 1 --list-sessions --session-dir "$SD/r" --json > "$W/list.txt" || fail "list"
  grep -q '"stages": 2, "tp": 2' "$W/list.txt" || { cat "$W/list.txt"; fail "--list-sessions lacks stages 2, tp 2"; }
  # another T (or P) is refused, naming the layout that saved it; nothing is changed
  for lay in "2 1" "4 4" "2 2 --no-tp"; do
    set -- $lay
    args=(--tp "$2"); test "${3:-}" = --no-tp && args=()
    run "$1" "${args[@]}" --checkpoint "$CKT" --session s-tp --prompt "x" --max-tokens 2 --session-dir "$SD/r" \
      > /dev/null 2> "$W/err.txt"
    rc=$?
    test $rc = 2 || { cat "$W/err.txt"; fail "np $1 ${args[*]}: exit $rc, expected 2"; }
    grep -q "saved by a job of --tp 2 x 2 pipeline stages.*restore it with --tp 2 and mpirun -np 4" "$W/err.txt" \
      || { cat "$W/err.txt"; fail "np $1 ${args[*]}: no message naming --tp 2"; }
  done
  grep -m1 "saved by" "$W/err.txt"
  r --max-tokens 3 > "$W/t4.jsonl" || fail "the session is still usable at --tp 2 x 2"
  ;;
llama)
  run 1 --checkpoint "$CK" --session L --prompt "Hello" --max-tokens 6 --session-dir "$SD" --json > "$W/t1.jsonl" || fail "turn 1"
  test "$(field "$W/t1.jsonl" session_source)" = new || fail "turn 1 should create the session"
  run 1 --checkpoint "$CK" --session L --prompt " and" --max-tokens 8 --session-dir "$SD" --json > "$W/t2.jsonl" || fail "turn 2"
  test "$(field "$W/t2.jsonl" session_source)" = disk || fail "turn 2 was not restored from disk"
  test "$(sed -n 's/.*"cached_tokens": \([0-9]*\).*/\1/p' "$W/t2.jsonl")" = 10 || fail "turn 2 should reuse 5 + 6 - 1 = 10 positions"
  h2="$(tok Hello),$(ids "$W/t1.jsonl"),$(tok ' and')"
  ref=$(stateless "$h2" 8)
  echo "llama turn 2: $(ids "$W/t2.jsonl") | stateless $ref"
  test "$(ids "$W/t2.jsonl")" = "$ref" || fail "restored Llama follow-up differs from the stateless request"
  run 1 --checkpoint "$CK" --session L --prompt " so" --max-tokens 6 --temperature 1 --seed 3 --session-dir "$SD" --json > "$W/t3.jsonl" || fail "turn 3"
  ref=$(stateless "$h2,$(ids "$W/t2.jsonl"),$(tok ' so')" 6 --temperature 1 --seed 3)
  echo "llama turn 3: $(ids "$W/t3.jsonl") | stateless $ref"
  test "$(ids "$W/t3.jsonl")" = "$ref" || fail "sampled Llama follow-up differs from the stateless request"
  if test -f "$CKG/model.safetensors"; then
    out=$(run 1 --checkpoint "$CKG" --session L --prompt "x" --max-tokens 2 --session-dir "$SD" 2>&1); code=$?
    test $code -eq 2 || fail "a GPT-2 checkpoint continuing the Llama session: exit $code: $out"
  fi
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "PASS $CASE"
