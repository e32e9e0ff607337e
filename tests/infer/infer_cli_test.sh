#!/bin/bash
# End-to-end tests of `strata infer` under mpirun (registered in tests/infer.cmake).
# usage: infer_cli_test.sh CASE STRATA_BIN WORK_DIR MPIRUN_ARGS...
#   setup    trains the tiny test checkpoint (4 layers, width 32, 2 heads, ctx 64, 200 steps)
#   layouts  greedy output of 5 prompts (batched) is identical for P = 1, 2, 3, 4 stages and
#            with --no-kv-cache (full recompute every token)
#   seeded   temperature/top-k/top-p sampling with a seed repeats exactly (also across P); another seed differs
#   errors   missing checkpoint, bad JSONL line, prompt past the context, P > layers, bad --top-p: clear error, exit != 0
set -u
CASE=$1; S=$2; W=$3; shift 3; MPI=("$@")
SRC=${STRATA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CK=$W/run/ckpt-00000200
fail() { echo "FAIL: $*"; exit 1; }
run() { local np=$1; shift; timeout 120 "${MPI[@]}" -np "$np" "$S" infer "$@"; }
ids() { sed -n 's/.*"token_ids": \[\([^]]*\)\].*/\1/p' "$1"; }

case $CASE in
setup)
  rm -rf "$W" && mkdir -p "$W" || fail "cannot create $W"
  "$S" train --layers 4 --dim 32 --heads 2 --ctx 64 --steps 200 --batch 8 --out "$W/run" --quiet \
    || fail "strata train"
  "$S" train --layers 4 --dim 32 --heads 2 --ctx 64 --steps 3 --seed 7 --out "$W/other" --quiet \
    || fail "strata train (second model)"
  test -f "$CK/model.safetensors" || fail "no checkpoint at $CK"
  ;;
layouts)
  for np in 1 2 3 4; do
    run $np --checkpoint "$CK" --prompts "$SRC/tests/infer/prompts.jsonl" --max-tokens 16 --json \
      > "$W/greedy_np$np.jsonl" || fail "np $np exited $?"
    test "$(wc -l < "$W/greedy_np$np.jsonl")" = 5 || fail "np $np: expected 5 result lines"
    ids "$W/greedy_np$np.jsonl" > "$W/greedy_np$np.ids"
    echo "np $np: $(head -c 200 "$W/greedy_np$np.ids" | head -1)"
  done
  # token counts: 16, 12, 16, 20, 5 (max_tokens per line, default 16)
  test "$(sed -n 's/.*"tokens": \([0-9]*\),.*/\1/p' "$W/greedy_np1.jsonl" | tr '\n' ' ')" = "16 12 16 20 5 " \
    || fail "token counts differ from max_tokens"
  # the generation is not degenerate (the model was trained): at least 3 distinct tokens overall
  test "$(tr -c '0-9\n' '\n' < "$W/greedy_np1.ids" | grep -v '^$' | sort -u | wc -l)" -ge 3 \
    || fail "fewer than 3 distinct tokens: model too weak for a meaningful comparison"
  for np in 2 3 4; do
    cmp -s "$W/greedy_np1.ids" "$W/greedy_np$np.ids" || fail "greedy tokens differ between P=1 and P=$np"
  done
  # 40 prompts at once (max-batch 40): plans longer than one inline broadcast, groups of 20
  for i in $(seq 1 40); do printf '{"prompt": "Prompt number %d is", "max_tokens": %d}\n' $i $((3 + i % 5)); done > "$W/many.jsonl"
  run 1 --checkpoint "$CK" --prompts "$W/many.jsonl" --max-batch 40 --json > "$W/many1.jsonl" || fail "many np 1"
  run 2 --checkpoint "$CK" --prompts "$W/many.jsonl" --max-batch 40 --json > "$W/many2.jsonl" || fail "many np 2"
  run 2 --checkpoint "$CK" --prompts "$W/many.jsonl" --max-batch 3 --json > "$W/many3.jsonl" || fail "many np 2 batch 3"
  test "$(ids "$W/many1.jsonl" | wc -l)" = 40 || fail "expected 40 results"
  cmp -s <(ids "$W/many1.jsonl") <(ids "$W/many2.jsonl") || fail "40 prompts: P=1 and P=2 differ"
  cmp -s <(ids "$W/many1.jsonl") <(ids "$W/many3.jsonl") || fail "40 prompts: max-batch 40 and 3 differ"
  # the recompute baseline (no KV cache reuse) gives the same tokens
  run 2 --checkpoint "$CK" --prompts "$SRC/tests/infer/prompts.jsonl" --max-tokens 16 --json --no-kv-cache \
    > "$W/greedy_nokv.jsonl" || fail "--no-kv-cache exited $?"
  cmp -s "$W/greedy_np1.ids" <(ids "$W/greedy_nokv.jsonl") || fail "KV cache and full recompute differ"
  ;;
seeded)
  common=(--checkpoint "$CK" --prompts "$SRC/tests/infer/prompts.jsonl" --max-tokens 16 --json
          --temperature 1.0 --top-k 40 --top-p 0.95)
  run 1 "${common[@]}" --seed 42 > "$W/s42a.jsonl" || fail "run a"
  run 1 "${common[@]}" --seed 42 > "$W/s42b.jsonl" || fail "run b"
  run 2 "${common[@]}" --seed 42 > "$W/s42c.jsonl" || fail "run c (np 2)"
  run 1 "${common[@]}" --seed 43 > "$W/s43.jsonl" || fail "run d"
  cmp -s <(ids "$W/s42a.jsonl") <(ids "$W/s42b.jsonl") || fail "same seed, different tokens"
  cmp -s <(ids "$W/s42a.jsonl") <(ids "$W/s42c.jsonl") || fail "same seed, P=1 vs P=2 differ"
  cmp -s <(ids "$W/s42a.jsonl") <(ids "$W/s43.jsonl") && fail "seeds 42 and 43 gave the same tokens"
  test "$(ids "$W/s42a.jsonl" | wc -l)" = 5 || fail "expected 5 results"
  ;;
errors)
  expect() { # expect NP PATTERN ARGS... : exit != 0 and stderr matches PATTERN
    local np=$1 pat=$2; shift 2
    run "$np" "$@" > "$W/err.out" 2> "$W/err.txt"
    local rc=$?
    test $rc -ne 0 || fail "exit 0 for: $*"
    test $rc -ne 124 || fail "timed out (hang) for: $*"
    grep -q -- "$pat" "$W/err.txt" || { cat "$W/err.txt"; fail "stderr lacks '$pat' for: $*"; }
    echo "ok ($rc): $(grep -m1 -- "$pat" "$W/err.txt")"
  }
  expect 1 "config.json" --checkpoint "$W/nonexistent" --prompt hi
  expect 2 "config.json" --checkpoint "$W/nonexistent" --prompt hi
  printf '{"prompt": "ok"}\n{"prompt": "bad" \n' > "$W/bad.jsonl"
  expect 1 "bad.jsonl line 2" --checkpoint "$CK" --prompts "$W/bad.jsonl"
  printf '{"prompt": "ok"}\n{"prompt": "x", "max_tokens": "many"}\n' > "$W/bad2.jsonl"
  expect 2 "line 2: field \"max_tokens\"" --checkpoint "$CK" --prompts "$W/bad2.jsonl"
  printf '{"promt": "typo"}\n' > "$W/bad3.jsonl"
  expect 1 "unknown field \"promt\"" --checkpoint "$CK" --prompts "$W/bad3.jsonl"
  long=$(printf 'x%.0s' $(seq 1 60))
  expect 1 "exceeds the model's context of 64" --checkpoint "$CK" --prompt "$long" --max-tokens 10
  expect 5 "only 4 layers" --checkpoint "$CK" --prompt hi
  expect 1 "--top-p must be a number in (0, 1], got '1.5'" --checkpoint "$CK" --prompt hi --top-p 1.5 --temperature 1
  expect 1 "exactly one of" --checkpoint "$CK"
  expect 1 "vocabulary" --checkpoint "$CK" --prompt-tokens 1,300
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "PASS $CASE"
