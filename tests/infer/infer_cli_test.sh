#!/bin/bash
# End-to-end tests of `strata infer` under mpirun (registered in tests/infer.cmake).
# usage: infer_cli_test.sh CASE STRATA_BIN WORK_DIR MPIRUN_ARGS...
#   setup    trains the tiny test checkpoint (4 layers, width 32, 2 heads, ctx 64, 200 steps), and
#            the tensor-parallel one (the same with 4 heads, so that --tp 4 divides them)
#   layouts  greedy output of 5 prompts (batched) is identical for P = 1, 2, 3, 4 stages and
#            with --no-kv-cache (full recompute every token)
#   seeded   temperature/top-k/top-p sampling with a seed repeats exactly (also across P); another seed differs
#   errors   missing checkpoint, bad JSONL line, prompt past the context, P > layers, bad --top-p: clear error, exit != 0
#   tp       --tp T: greedy tokens of the 5 prompts (batched) and of 12 prompts of different
#            lengths through --max-batch 3 (continuous batching) are identical for T in {1, 2, 4}
#            x P in {1, 2} (np = T x P: 1, 2, 4, 2, 4, 8) and with --no-kv-cache; seeded sampling
#            repeats across layouts
#   tp_errors --tp not dividing the heads, a world that is not T x P, more stages than layers:
#            exit 2 with one sentence naming the numbers
#   llama    a tiny trained Llama checkpoint (GQA: 4 heads, 2 kv heads; ctx 32) through the engine:
#            the greedy tokens of 3 prompts batched together (one up to the context's end) equal
#            a recompute of the whole sequence per token with llama_forward (tests/train/llama_loop
#            --greedy, $STRATA_LLAMA_LOOP), and --no-kv-cache; a seeded sample equals its
#            --no-kv-cache run and --max-batch 1
#   llama_pp the same model with 4 layers: greedy tokens and a seeded sample identical for P = 1..4;
#            P > layers refused (exit 2)
#   llama_tp a 2-layer Llama (4 heads, 2 kv heads): greedy tokens and a seeded sample identical for
#            T = 1, T = 2 and T = 2 x P = 2; a --tp 2 session restored in a new process equals the
#            stateless request and is refused at --tp 1; --tp 4 (does not divide the 2 kv heads)
#            refused (exit 2)
#   bf16     --precision bf16: greedy tokens of the 5 prompts identical on P = 1 and P = 2 and at
#            --tp 2 (4-head checkpoint, T = 1 vs T = 2), the first token of each prompt equal to
#            fp32's; the path is logged once ("precision bf16: ..."); --precision fp16 is refused
set -u
CASE=$1; S=$2; W=$3; shift 3; MPI=("$@")
SRC=${STRATA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CK=$W/run/ckpt-00000200
CKT=$W/tp/ckpt-00000200
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
  "$S" train --layers 4 --dim 32 --heads 4 --ctx 64 --steps 200 --batch 8 --out "$W/tp" --quiet \
    || fail "strata train (tensor-parallel model)"
  test -f "$CKT/model.safetensors" || fail "no checkpoint at $CKT"
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
bf16)
  P5=(--prompts "$SRC/tests/infer/prompts.jsonl" --max-tokens 16 --json)
  run 1 --checkpoint "$CK" "${P5[@]}" > "$W/b_fp32.jsonl" || fail "fp32 run"
  run 1 --checkpoint "$CK" "${P5[@]}" --precision bf16 > "$W/b_p1.jsonl" 2> "$W/b_p1.err" || fail "bf16 np 1"
  run 2 --checkpoint "$CK" "${P5[@]}" --precision bf16 > "$W/b_p2.jsonl" || fail "bf16 np 2"
  run 1 --checkpoint "$CKT" "${P5[@]}" --precision bf16 > "$W/b_t1.jsonl" || fail "bf16 4-head np 1"
  run 2 --tp 2 --checkpoint "$CKT" "${P5[@]}" --precision bf16 > "$W/b_t2.jsonl" || fail "bf16 --tp 2"
  test "$(ids "$W/b_p1.jsonl" | wc -l)" = 5 || fail "bf16: expected 5 results"
  echo "fp32: $(ids "$W/b_fp32.jsonl" | head -1)"
  echo "bf16: $(ids "$W/b_p1.jsonl" | head -1)"
  cmp -s <(ids "$W/b_p1.jsonl") <(ids "$W/b_p2.jsonl") || fail "bf16 greedy tokens differ between P=1 and P=2"
  cmp -s <(ids "$W/b_t1.jsonl") <(ids "$W/b_t2.jsonl") || fail "bf16 greedy tokens differ between T=1 and T=2"
  cmp -s <(ids "$W/b_fp32.jsonl" | cut -d, -f1) <(ids "$W/b_p1.jsonl" | cut -d, -f1) \
    || fail "bf16's first token differs from fp32's for some prompt"
  test "$(grep -c 'precision bf16: .*bf16 KV cache' "$W/b_p1.err")" = 1 || { cat "$W/b_p1.err"; fail "the bf16 path is not logged once"; }
  run 1 --checkpoint "$CK" --prompt hi --precision fp16 2> "$W/b_bad.err" && fail "--precision fp16 accepted"
  grep -q "precision must be fp32 or bf16" "$W/b_bad.err" || { cat "$W/b_bad.err"; fail "no sentence for --precision fp16"; }
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
  # The cases are independent and mostly mpirun start-up: each runs in the background with its own
  # files (err-PID), and the case ends when all have passed.
  expect() { # expect NP PATTERN ARGS... : exit != 0 and stderr matches PATTERN
    local np=$1 pat=$2; shift 2
    local e="$W/err-$BASHPID"
    run "$np" "$@" > "$e.out" 2> "$e.txt"
    local rc=$?
    test $rc -ne 0 || fail "exit 0 for: $*"
    test $rc -ne 124 || fail "timed out (hang) for: $*"
    grep -q -- "$pat" "$e.txt" || { cat "$e.txt"; fail "stderr lacks '$pat' for: $*"; }
    echo "ok ($rc): $(grep -m1 -- "$pat" "$e.txt")"
    rm -f "$e.out" "$e.txt"
  }
  printf '{"prompt": "ok"}\n{"prompt": "bad" \n' > "$W/bad.jsonl"
  printf '{"prompt": "ok"}\n{"prompt": "x", "max_tokens": "many"}\n' > "$W/bad2.jsonl"
  printf '{"promt": "typo"}\n' > "$W/bad3.jsonl"
  long=$(printf 'x%.0s' $(seq 1 60))
  pids=()
  expect 1 "config.json" --checkpoint "$W/nonexistent" --prompt hi & pids+=($!)
  expect 2 "config.json" --checkpoint "$W/nonexistent" --prompt hi & pids+=($!)
  expect 1 "bad.jsonl line 2" --checkpoint "$CK" --prompts "$W/bad.jsonl" & pids+=($!)
  expect 2 "line 2: field \"max_tokens\"" --checkpoint "$CK" --prompts "$W/bad2.jsonl" & pids+=($!)
  expect 1 "unknown field \"promt\"" --checkpoint "$CK" --prompts "$W/bad3.jsonl" & pids+=($!)
  expect 1 "exceeds the model's context of 64" --checkpoint "$CK" --prompt "$long" --max-tokens 10 & pids+=($!)
  expect 5 "only 4 layers" --checkpoint "$CK" --prompt hi & pids+=($!)
  expect 1 "--top-p must be a number in (0, 1], got '1.5'" --checkpoint "$CK" --prompt hi --top-p 1.5 --temperature 1 & pids+=($!)
  expect 1 "exactly one of" --checkpoint "$CK" & pids+=($!)
  expect 1 "vocabulary" --checkpoint "$CK" --prompt-tokens 1,300 & pids+=($!)
  # every case to its end (none left writing into $W as it is removed), then the verdict
  failed=0; for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ "$failed" -eq 0 ] || exit 1
  ;;
tp)
  test -f "$CKT/model.safetensors" || fail "no checkpoint at $CKT (run infer_setup_checkpoint first)"
  for i in $(seq 1 12); do
    printf '{"prompt": "%s", "max_tokens": %d}\n' "$(head -c $((1 + 3 * i)) <<< 'Once upon a time there was a little girl who lived')" $((2 + i % 6))
  done > "$W/tp_many.jsonl"
  for tp in 1 2 4; do
    for pp in 1 2; do
      np=$((tp * pp))
      run $np --tp $tp --checkpoint "$CKT" --prompts "$SRC/tests/infer/prompts.jsonl" --max-tokens 16 --json \
        > "$W/tp_t${tp}_p$pp.jsonl" || fail "--tp $tp np $np exited $?"
      ids "$W/tp_t${tp}_p$pp.jsonl" > "$W/tp_t${tp}_p$pp.ids"
      test "$(wc -l < "$W/tp_t${tp}_p$pp.ids")" = 5 || fail "--tp $tp np $np: expected 5 results"
      run $np --tp $tp --checkpoint "$CKT" --prompts "$W/tp_many.jsonl" --max-batch 3 --json > "$W/tpm_t${tp}_p$pp.jsonl" \
        || fail "--tp $tp np $np (12 prompts, max-batch 3) exited $?"
      ids "$W/tpm_t${tp}_p$pp.jsonl" > "$W/tpm_t${tp}_p$pp.ids"
      test "$(wc -l < "$W/tpm_t${tp}_p$pp.ids")" = 12 || fail "--tp $tp np $np: expected 12 results"
      echo "T=$tp P=$pp: $(head -1 "$W/tp_t${tp}_p$pp.ids")"
    done
  done
  test "$(sed -n 's/.*"tokens": \([0-9]*\),.*/\1/p' "$W/tp_t1_p1.jsonl" | tr '\n' ' ')" = "16 12 16 20 5 " \
    || fail "token counts differ from max_tokens"
  test "$(cat "$W"/tp_t1_p1.ids "$W"/tpm_t1_p1.ids | tr -c '0-9\n' '\n' | grep -v '^$' | sort -u | wc -l)" -ge 3 \
    || fail "fewer than 3 distinct tokens: model too weak for a meaningful comparison"
  for tp in 1 2 4; do
    for pp in 1 2; do
      cmp -s "$W/tp_t1_p1.ids" "$W/tp_t${tp}_p$pp.ids" || fail "greedy tokens differ between T=1 P=1 and T=$tp P=$pp"
      cmp -s "$W/tpm_t1_p1.ids" "$W/tpm_t${tp}_p$pp.ids" || fail "12 prompts: T=1 P=1 and T=$tp P=$pp differ"
    done
  done
  # the recompute baseline (no KV cache reuse) at --tp 2 x P 2 gives the same tokens
  run 4 --tp 2 --checkpoint "$CKT" --prompts "$SRC/tests/infer/prompts.jsonl" --max-tokens 16 --json --no-kv-cache \
    > "$W/tp_nokv.jsonl" || fail "--tp 2 --no-kv-cache exited $?"
  cmp -s "$W/tp_t1_p1.ids" <(ids "$W/tp_nokv.jsonl") || fail "--tp 2: KV cache and full recompute differ"
  # seeded sampling draws from the assembled whole-vocabulary logits: the same on every layout
  common=(--checkpoint "$CKT" --prompts "$SRC/tests/infer/prompts.jsonl" --max-tokens 16 --json
          --temperature 1.0 --top-k 40 --top-p 0.95 --seed 42)
  run 1 "${common[@]}" > "$W/tps1.jsonl" || fail "seeded T=1"
  run 4 --tp 2 "${common[@]}" > "$W/tps4.jsonl" || fail "seeded T=2 P=2"
  run 4 --tp 4 "${common[@]}" > "$W/tps4b.jsonl" || fail "seeded T=4 P=1"
  cmp -s <(ids "$W/tps1.jsonl") <(ids "$W/tps4.jsonl") || fail "seeded sampling: T=1 and T=2 x P=2 differ"
  cmp -s <(ids "$W/tps1.jsonl") <(ids "$W/tps4b.jsonl") || fail "seeded sampling: T=1 and T=4 differ"
  cmp -s <(ids "$W/tps1.jsonl") <(ids "$W/tp_t1_p1.jsonl") && fail "seeded sampling gave the greedy tokens"
  ;;
llama)
  LL=${STRATA_LLAMA_LOOP:?set STRATA_LLAMA_LOOP to the llama_loop test program}
  rm -rf "$W/llama" && mkdir -p "$W/llama"
  "$S" train --arch llama --layers 2 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --batch 4 --steps 80 --lr 0.01 \
    --warmup 2 --quiet --eval-tokens 128 --out "$W/llama/run" || fail "strata train --arch llama"
  CKL=$W/llama/run/ckpt-00000080
  printf '%s\n' '{"prompt": "The "}' '{"prompt": "and so it", "max_tokens": 12}' '{"prompt": "x", "max_tokens": 31}' > "$W/llama/p.jsonl"
  run 1 --checkpoint "$CKL" --prompts "$W/llama/p.jsonl" --max-tokens 20 --json > "$W/llama/kv.jsonl" || fail "llama infer"
  ids "$W/llama/kv.jsonl" | tr -d ' ' > "$W/llama/kv.ids"
  { "$LL" --greedy "$CKL" "The " 20; "$LL" --greedy "$CKL" "and so it" 12; "$LL" --greedy "$CKL" "x" 31; } > "$W/llama/ref.ids" \
    || fail "llama_loop --greedy"
  cat "$W/llama/kv.ids"
  diff "$W/llama/ref.ids" "$W/llama/kv.ids" || fail "KV-cache greedy tokens differ from the whole-sequence recompute"
  test "$(tr -c '0-9\n' '\n' < "$W/llama/kv.ids" | grep -v '^$' | sort -u | wc -l)" -ge 3 \
    || fail "fewer than 3 distinct tokens: model too weak for a meaningful comparison"
  run 1 --checkpoint "$CKL" --prompts "$W/llama/p.jsonl" --max-tokens 20 --json --no-kv-cache > "$W/llama/nokv.jsonl" || fail "--no-kv-cache"
  cmp -s <(ids "$W/llama/nokv.jsonl" | tr -d ' ') "$W/llama/kv.ids" || fail "--no-kv-cache differs"
  sample() { run 1 --checkpoint "$CKL" --prompts "$W/llama/p.jsonl" --max-tokens 20 --temperature 1 --seed 5 --json "$@" | sed -n 's/.*"token_ids": \[\([^]]*\)\].*/\1/p'; }
  a=$(sample); b=$(sample --no-kv-cache); c=$(sample --max-batch 1)
  test -n "$a" && test "$a" = "$b" && test "$a" = "$c" || fail "seeded samples differ: $a / $b / $c"
  ;;
llama_pp)
  # A 4-layer Llama checkpoint in P = 1, 2, 3, 4 pipeline stages: the same greedy tokens and the
  # same seeded samples (every stage loads its layers by name; the stream between stages is
  # exact), and the layouts a Llama checkpoint cannot take refused.
  rm -rf "$W/llama_pp" && mkdir -p "$W/llama_pp"
  "$S" train --arch llama --layers 4 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --batch 4 --steps 80 --lr 0.01 \
    --warmup 2 --quiet --eval-tokens 128 --out "$W/llama_pp/run" || fail "strata train --arch llama"
  CKL=$W/llama_pp/run/ckpt-00000080
  printf '%s\n' '{"prompt": "The "}' '{"prompt": "and so it", "max_tokens": 12}' '{"prompt": "x", "max_tokens": 31}' \
    '{"prompt": "on the", "temperature": 1, "seed": 7}' > "$W/llama_pp/p.jsonl"
  for np in 1 2 3 4; do
    run $np --checkpoint "$CKL" --prompts "$W/llama_pp/p.jsonl" --max-tokens 20 --json > "$W/llama_pp/p$np.jsonl" \
      || fail "llama infer -np $np"
    ids "$W/llama_pp/p$np.jsonl" > "$W/llama_pp/p$np.ids"
    test "$(wc -l < "$W/llama_pp/p$np.ids")" -eq 4 || fail "-np $np: expected 4 completions"
    echo "P=$np: $(head -c 120 "$W/llama_pp/p$np.ids" | tr '\n' '|')"
    [ $np -eq 1 ] || diff "$W/llama_pp/p1.ids" "$W/llama_pp/p$np.ids" || fail "P=$np tokens differ from P=1"
  done
  test "$(tr -c '0-9\n' '\n' < "$W/llama_pp/p1.ids" | grep -v '^$' | sort -u | wc -l)" -ge 3 \
    || fail "fewer than 3 distinct tokens: model too weak for a meaningful comparison"
  out=$(run 5 --checkpoint "$CKL" --prompt "x" --max-tokens 2 2>&1); code=$?
  test $code -eq 2 && grep -q "5 ranks with --tp 1 make 5 pipeline stages but the model has only 4 layers" <<<"$out" \
    || fail "np 5: exit $code: $out"
  ;;
llama_tp)
  # A 2-layer Llama checkpoint at --tp 1, --tp 2 and --tp 2 x 2 stages: the same greedy tokens
  # and seeded samples (each rank loads its heads, SwiGLU columns and vocabulary rows; the
  # logits are gathered whole before sampling), and a --tp that does not divide the kv heads
  # refused.
  rm -rf "$W/llama_tp" && mkdir -p "$W/llama_tp"
  "$S" train --arch llama --layers 2 --heads 4 --kv-heads 2 --dim 64 --ctx 32 --batch 4 --steps 80 --lr 0.01 \
    --warmup 2 --quiet --eval-tokens 128 --out "$W/llama_tp/run" || fail "strata train --arch llama"
  CKL=$W/llama_tp/run/ckpt-00000080
  printf '%s\n' '{"prompt": "The "}' '{"prompt": "and so it", "max_tokens": 12}' '{"prompt": "x", "max_tokens": 31}' \
    '{"prompt": "on the", "temperature": 1, "seed": 7}' > "$W/llama_tp/p.jsonl"
  for layout in "1 1" "2 2" "4 2"; do
    set -- $layout; np=$1; tp=$2
    run $np --tp $tp --checkpoint "$CKL" --prompts "$W/llama_tp/p.jsonl" --max-tokens 20 --json \
      > "$W/llama_tp/n${np}t$tp.jsonl" || fail "llama infer -np $np --tp $tp"
    ids "$W/llama_tp/n${np}t$tp.jsonl" > "$W/llama_tp/n${np}t$tp.ids"
    test "$(wc -l < "$W/llama_tp/n${np}t$tp.ids")" -eq 4 || fail "-np $np --tp $tp: expected 4 completions"
    echo "np $np --tp $tp: $(head -c 120 "$W/llama_tp/n${np}t$tp.ids" | tr '\n' '|')"
    [ $np -eq 1 ] || diff "$W/llama_tp/n1t1.ids" "$W/llama_tp/n${np}t$tp.ids" \
      || fail "-np $np --tp $tp tokens differ from --tp 1"
  done
  test "$(tr -c '0-9\n' '\n' < "$W/llama_tp/n1t1.ids" | grep -v '^$' | sort -u | wc -l)" -ge 3 \
    || fail "fewer than 3 distinct tokens: model too weak for a meaningful comparison"
  # a session at --tp 2: one part file per TP rank; turn 2 (sampled), restored from disk in a new
  # process, equals the stateless --tp 1 request of the whole history; --tp 1 cannot restore it
  SD=$W/llama_tp/sessions
  sess() { run 2 --tp 2 --checkpoint "$CKL" --session s --session-dir "$SD" --json "$@"; }
  src() { sed -n 's/.*"session_source": "\([a-z]*\)".*/\1/p' "$1"; }
  sess --prompt-tokens 84,104,101,32 --max-tokens 6 > "$W/llama_tp/s1.jsonl" || fail "session turn 1"
  sess --prompt-tokens 97,110,100 --max-tokens 8 --temperature 1 --seed 3 > "$W/llama_tp/s2.jsonl" || fail "session turn 2"
  test "$(src "$W/llama_tp/s1.jsonl")$(src "$W/llama_tp/s2.jsonl")" = newdisk || fail "turn 2 not restored from disk"
  for t in 0 1; do test -f "$SD/s.stage0-of-1.tp$t-of-2.kv" || fail "no part file of tp rank $t"; done
  h="84,104,101,32,$(ids "$W/llama_tp/s1.jsonl" | tr -d ' '),97,110,100"
  ref=$(run 1 --checkpoint "$CKL" --prompt-tokens "$h" --max-tokens 8 --temperature 1 --seed 3 --json | sed -n 's/.*"token_ids": \[\([^]]*\)\].*/\1/p')
  echo "session turn 2 at --tp 2: $(ids "$W/llama_tp/s2.jsonl") | stateless --tp 1: $ref"
  test -n "$ref" && test "$(ids "$W/llama_tp/s2.jsonl")" = "$ref" || fail "restored --tp 2 turn differs from the stateless request"
  out=$(run 1 --checkpoint "$CKL" --session s --session-dir "$SD" --prompt-tokens 32 --max-tokens 2 2>&1); code=$?
  test $code -eq 2 && grep -q "restore it with --tp 2" <<<"$out" || fail "--tp 1 restoring a --tp 2 session: exit $code: $out"
  out=$(run 4 --tp 4 --checkpoint "$CKL" --prompt "x" --max-tokens 2 2>&1); code=$?
  test $code -eq 2 && grep -q -- "--tp 4 does not divide the Llama model's 2 key / value heads" <<<"$out" \
    || fail "--tp 4: exit $code: $out"
  ;;
tp_errors)
  expect() { # expect NP CODE PATTERN ARGS... : exit CODE and stderr matches PATTERN
    local np=$1 code=$2 pat=$3; shift 3
    # its own files: infer_bad_input_errors runs at the same time in the same work directory
    run "$np" "$@" > "$W/tp_err.out" 2> "$W/tp_err.txt"
    local rc=$?
    test $rc -eq "$code" || { cat "$W/tp_err.txt"; fail "exit $rc, expected $code for: $*"; }
    grep -q -- "$pat" "$W/tp_err.txt" || { cat "$W/tp_err.txt"; fail "stderr lacks '$pat' for: $*"; }
    echo "ok ($rc): $(grep -m1 -- "$pat" "$W/tp_err.txt")"
  }
  expect 3 2 "--tp 3 does not divide the model's 4 attention heads" --tp 3 --checkpoint "$CKT" --prompt hi
  expect 4 2 "--tp 4 does not divide the model's 2 attention heads" --tp 4 --checkpoint "$CK" --prompt hi
  expect 3 2 "3 ranks cannot be split into --tp 2 tensor-parallel ranks x P pipeline stages" --tp 2 --checkpoint "$CKT" --prompt hi
  expect 1 2 "1 ranks cannot be split into --tp 2" --tp 2 --checkpoint "$CKT" --prompt hi
  expect 5 2 "5 ranks with --tp 1 make 5 pipeline stages but the model has only 4 layers" --checkpoint "$CKT" --prompt hi
  expect 1 2 "--tp must be" --tp 0 --checkpoint "$CKT" --prompt hi
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "PASS $CASE"
