#!/bin/bash
# `strata serve` with a BPE checkpoint, over HTTP with curl and jq (registered in tests/serve.cmake).
# usage: bpe_serve_test.sh STRATA_BIN WORK_DIR MPIRUN_ARGS...
# The model: 2 layers of width 32 with GPT-2's vocabulary, trained for a few seconds (train
# --tokenizer gpt2) on lines of emoji and accented words, so its greedy text holds characters
# that its tokens split (" 😀" is 30325 222). On P = 1 and P = 2:
#   - a greedy completion is `strata infer`'s text, usage counts the prompt's tokens as `strata
#     tokenize --ids` does and the generated tokens as infer does;
#   - streamed, the chunks concatenate to the same text, the event stream is valid UTF-8 and no
#     chunk's text is empty or holds U+FFFD: a token ending inside a character goes out with
#     the token that completes it (fewer text chunks than tokens);
#   - logprobs: one entry per token; a token that is not whole characters reads "bytes:\xNN..";
#   - chat (a template that passes the message through) gives infer's text, prompt_tokens
#     counts the rendered prompt, the "bytes" of all tokens concatenate to the text's UTF-8;
#   - a stop string (an emoji) cuts the text before it, streamed or not;
#   - a session's second turn counts only its own prompt and reuses the first turn's tokens;
#   - --tp 2 gives the same greedy text;
#   - a model trained on documents stops at <|endoftext|> (finish_reason stop, not in the text).
# Exit 77 (skipped) without curl, jq or iconv.
set -u
S=$1; W=$2; shift 2; MPI=("$@")
for t in curl jq iconv; do command -v $t >/dev/null || { echo "SKIP: $t is not installed"; exit 77; }; done
rm -rf "$W" && mkdir -p "$W"
. "$(dirname "$0")/http_test_lib.sh"
expect() { jq -e "$@" "$W/body" >/dev/null || fail "body does not satisfy $*: $(head -c 800 "$W/body")"; }
# the chunks of the last (streamed) body, one JSON per line, after checking the stream is UTF-8
chunks() {
  iconv -f UTF-8 -t UTF-8 "$W/body" > /dev/null 2>&1 || fail "the event stream is not valid UTF-8"
  awk 'BEGIN{RS="\n\n"} NF && !/^:/{print}' "$W/body" | sed 's/^data: //' > "$W/ev"
  [ "$(tail -1 "$W/ev")" = "[DONE]" ] || fail "stream does not end with data: [DONE]"
  sed '$d' "$W/ev" > "$W/chunks"
}
ntok() { printf '%s' "$1" | "$S" tokenize --ids | wc -w; }
# str VAR JQ_FILTER FILE: VAR = the filter's raw string output, trailing newlines kept
str() { local v; v=$(jq -j "$2" "$3"; printf x); printf -v "$1" '%s' "${v%x}"; }

for i in $(seq 1500); do echo 'I like 😀🎉 and ü 😀😀 über 🎉🎉'; done > "$W/emoji.txt"
"$S" train --data "$W/emoji.txt" --tokenizer gpt2 --layers 2 --heads 2 --dim 32 --ctx 32 --batch 8 --steps 50 \
  --lr 1e-2 --warmup 5 --quiet --out "$W/run" > "$W/train.log" 2>&1 || fail "train: $(tail -3 "$W/train.log")"
CK=$W/run/ckpt-00000050
"$S" infer --checkpoint "$CK" --prompt "I like" --max-tokens 12 --temperature 0 --json > "$W/infer.json" \
  || fail "infer on the BPE checkpoint"
str REF .text "$W/infer.json"
[ "$(jq .tokens "$W/infer.json")" = 12 ] || fail "infer generated $(jq .tokens "$W/infer.json") tokens, not 12"
case $REF in *😀*|*🎉*) ;; *) fail "the model's greedy text '$REF' holds no emoji: the test needs split characters" ;; esac
N_PROMPT=$(ntok "I like")
printf '{"message": "{content}", "generation": "", "stop": []}\n' > "$W/tmpl.json"

for np in 1 2; do
  start timeout 300 "${MPI[@]}" -np $np "$S" serve --checkpoint "$CK" --session-dir "$W/sessions$np" \
    --chat-template "$W/tmpl.json"
  grep -q "through the checkpoint's tokenizer" "$W/srv.log" || fail "np $np: no tokenizer line in the log"
  # greedy: infer's text and token counts
  [ "$(post /v1/completions '{"prompt":"I like","max_tokens":12,"temperature":0}')" = 200 ] || fail "np $np greedy"
  expect --arg t "$REF" --argjson p "$N_PROMPT" \
    '.choices[0].text == $t and .usage.prompt_tokens == $p and .usage.completion_tokens == 12 and .choices[0].finish_reason == "length"'
  # streamed: the same text in whole characters
  [ "$(post /v1/completions '{"prompt":"I like","max_tokens":12,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}')" = 200 ] \
    || fail "np $np stream"
  chunks
  str GOT '.choices[0].text // empty' "$W/chunks"
  [ "$GOT" = "$REF" ] || fail "np $np: streamed text '$GOT', unstreamed '$REF'"
  jq -se '[.[] | select((.choices | length) > 0 and .choices[0].finish_reason == null) | .choices[0].text] | all(length > 0 and (contains("\ufffd") | not)) and length < 12' \
    "$W/chunks" > /dev/null || fail "np $np: a chunk is empty or holds U+FFFD, or every token had a chunk: $(cat "$W/chunks")"
  jq -se --argjson p "$N_PROMPT" 'last | .usage.prompt_tokens == $p and .usage.completion_tokens == 12' "$W/chunks" > /dev/null \
    || fail "np $np: streamed usage: $(tail -1 "$W/chunks")"
  # logprobs: one entry per token, partial tokens as bytes:\xNN
  [ "$(post /v1/completions '{"prompt":"I like","max_tokens":12,"temperature":0,"logprobs":1}')" = 200 ] || fail "np $np logprobs"
  expect --arg t "$REF" '.choices[0].text == $t and (.choices[0].logprobs.tokens | length) == 12 and
    any(.choices[0].logprobs.tokens[]; test("^bytes:(\\\\x[0-9a-f]{2})+$"))'
  # chat through a template that leaves the prompt as it is: infer's text again, and the
  # logprobs' bytes of all tokens are the text's UTF-8
  [ "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"I like"}],"max_tokens":12,"temperature":0,"logprobs":true,"top_logprobs":1}')" = 200 ] \
    || fail "np $np chat"
  expect --arg t "$REF" --argjson p "$N_PROMPT" '.choices[0].message.content == $t and .usage.prompt_tokens == $p and
    (.choices[0].logprobs.content | length) == 12'
  [ "$(jq -r '[.choices[0].logprobs.content[].bytes[]] | map(tostring) | join(" ")' "$W/body")" = \
    "$(printf '%s' "$REF" | od -An -tu1 -v | xargs)" ] || fail "np $np: chat logprobs bytes are not the text's: $(cat "$W/body")"
  # a stop string in text: the first emoji of the greedy text
  A=${REF%%😀*}; B=${REF%%🎉*}; EMO=😀; [ ${#B} -lt ${#A} ] && EMO=🎉
  WANT=${REF%%"$EMO"*}
  for st in false true; do
    [ "$(post /v1/completions "$(jq -n --arg s "$EMO" --argjson st $st '{"prompt":"I like","max_tokens":12,"temperature":0,"stop":$s,"stream":$st}')")" = 200 ] \
      || fail "np $np stop (stream $st)"
    if [ $st = false ]; then
      expect --arg w "$WANT" '.choices[0].text == $w and .choices[0].finish_reason == "stop"'
    else
      chunks
      str GOT '.choices[0].text // empty' "$W/chunks"
      [ "$GOT" = "$WANT" ] || fail "np $np: streamed stop text '$GOT', expected '$WANT'"
    fi
  done
  # a session: the second turn counts its own prompt and reuses the first turn's context
  [ "$(post /v1/completions '{"prompt":"I like","max_tokens":6,"temperature":0,"session":"bpe"}')" = 200 ] || fail "np $np turn 1"
  [ "$(post /v1/completions '{"prompt":" über","max_tokens":6,"temperature":0,"session":"bpe"}')" = 200 ] || fail "np $np turn 2"
  # the cache holds turn 1's prompt and tokens but its last, which was never fed to the model
  expect --argjson p "$(ntok " über")" --argjson c $((N_PROMPT + 5)) \
    '.usage.prompt_tokens == $p and .usage.prompt_tokens_details.cached_tokens == $c and (.choices[0].text | length) > 0'
  jq -r '.choices[0].text' "$W/body" > "$W/turn2_$np"
  stop_server
done
cmp -s "$W/turn2_1" "$W/turn2_2" || fail "the session's second turn differs between P = 1 and P = 2"
# tensor parallelism: the tokenizer lives on rank 0 only, the text is the same
start timeout 300 "${MPI[@]}" -np 2 "$S" serve --tp 2 --checkpoint "$CK" --no-sessions
[ "$(post /v1/completions '{"prompt":"I like","max_tokens":12,"temperature":0}')" = 200 ] || fail "tp 2 greedy"
expect --arg t "$REF" --argjson p "$N_PROMPT" '.choices[0].text == $t and .usage.prompt_tokens == $p'
stop_server

# end of text: a model trained on documents (strata tokenize --split-docs: <|endoftext|> before
# each) ends its reply there: finish_reason stop, infer's text up to the token, streamed alike
for i in $(seq 1500); do printf 'I like 😀🎉 and ü 😀😀 über 🎉🎉\n\n'; done > "$W/docs.txt"
"$S" tokenize --in "$W/docs.txt" --out "$W/docs" --split-docs > /dev/null 2>&1 || fail "tokenize --split-docs"
"$S" train --data "$W/docs_train.bin" --layers 2 --heads 2 --dim 32 --ctx 32 --batch 8 --steps 50 --lr 1e-2 \
  --warmup 5 --quiet --out "$W/docrun" > "$W/train2.log" 2>&1 || fail "train on documents: $(tail -3 "$W/train2.log")"
P2="I like 😀🎉 and ü 😀😀 über 🎉"
"$S" infer --checkpoint "$W/docrun/ckpt-00000050" --prompt "$P2" --max-tokens 8 --temperature 0 --json > "$W/infer2.json" \
  || fail "infer on the document model"
str REF2 .text "$W/infer2.json"
case $REF2 in *"<|endoftext|>"*) ;; *) fail "the document model's greedy text '$REF2' has no end of text: the test needs one" ;; esac
REF2=${REF2%%"<|endoftext|>"*}
start timeout 300 "${MPI[@]}" -np 1 "$S" serve --checkpoint "$W/docrun/ckpt-00000050" --no-sessions
for st in false true; do
  [ "$(post /v1/completions "$(jq -n --arg p "$P2" --argjson st $st '{"prompt":$p,"max_tokens":8,"temperature":0,"stream":$st}')")" = 200 ] \
    || fail "end of text (stream $st)"
  if [ $st = false ]; then
    # completion_tokens counts the end-of-text token (P = 1: the engine ends the request there)
    expect --arg t "$REF2" --argjson n "$(jq '.token_ids | index(50256) + 1' "$W/infer2.json")" \
      '.choices[0].text == $t and .choices[0].finish_reason == "stop" and .usage.completion_tokens == $n'
  else
    chunks
    str GOT '.choices[0].text // empty' "$W/chunks"
    [ "$GOT" = "$REF2" ] || fail "streamed text before the end of text '$GOT', expected '$REF2'"
    jq -se 'map(select((.choices | length) > 0 and .choices[0].finish_reason != null)) | .[0].choices[0].finish_reason == "stop"' \
      "$W/chunks" > /dev/null || fail "streamed finish_reason at the end of text: $(cat "$W/chunks")"
  fi
done
stop_server
echo "bpe_serve: ok"
