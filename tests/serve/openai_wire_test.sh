#!/bin/bash
# OpenAI wire format of `strata serve`, checked with curl and jq (registered in tests/serve.cmake).
# usage: openai_wire_test.sh CASE STRATA_BIN WORK_DIR [MPIRUN_ARGS...]
#   fake    --backend fake (deterministic): /v1/models and /v1/models/{id} (404), exact fields of
#           completions and chat objects and chunks, SSE framing, stop never returned (also when
#           the stop string spans tokens, streamed or not), n=2 gives 2 choices, logprobs counts
#           (completions and chat), echo, array prompts ordered by index, usage only in its own
#           chunk with stream_options.include_usage, prompt_tokens_details.cached_tokens, 400
#           naming each unimplemented parameter, --chat-template, /metrics process_* and gauges
#   engine  the real engine on the infer_setup_checkpoint model, P = 1 and P = 3: logprobs of the
#           greedy token equal its top-1 alternative and agree across P, stop cuts the greedy text
#           at the stop string, penalties change a greedy answer, n=2 seeded choices differ
# Exit 77 (skipped) without curl or jq.
set -u
CASE=$1; S=$2; W=$3; shift 3; MPI=("$@")
for t in curl jq; do command -v $t >/dev/null || { echo "SKIP: $t is not installed (apt-get install $t)"; exit 77; }; done
rm -rf "$W" && mkdir -p "$W"
. "$(dirname "$0")/http_test_lib.sh"
# expect JQ_EXPR: the last body satisfies it
expect() { jq -e "$1" "$W/body" >/dev/null || fail "body does not satisfy $1: $(head -c 600 "$W/body")"; }
# bad PATH BODY PARAM: 400 with the OpenAI error naming PARAM
bad() {
  local st; st=$(post "$1" "$2")
  [ "$st" = 400 ] || fail "$2: status $st, expected 400"
  expect ".error.param == \"$3\" and (.error.message | contains(\"$3\")) and .error.type == \"invalid_request_error\""
}
# sse: the data lines of the last body into $W/ev (one JSON per line; [DONE] last)
sse() {
  awk 'BEGIN{RS="\n\n"} NF && !/^:/{print}' "$W/body" > "$W/frames"
  grep -qv '^data: ' "$W/frames" && fail "a frame that is not 'data: ...': $(grep -v '^data: ' "$W/frames" | head -2)"
  sed 's/^data: //' "$W/frames" > "$W/ev"
  [ "$(tail -1 "$W/ev")" = "[DONE]" ] || fail "stream does not end with data: [DONE]"
  sed '$d' "$W/ev" > "$W/chunks"
}

case $CASE in
fake)
  printf '{"message": "<|{role}|>{content}\\n", "generation": "<|assistant|>", "stop": ["<|"]}\n' > "$W/tmpl.json"
  start "$S" serve --backend fake --chat-template "$W/tmpl.json"
  # models
  [ "$(curl -s -o "$W/body" -w '%{http_code}' "$U/v1/models")" = 200 ] || fail "/v1/models"
  expect '.object == "list" and (.data | length) == 1 and .data[0].id == "fake" and .data[0].object == "model" and (.data[0].created | type) == "number" and .data[0].owned_by == "strata"'
  [ "$(curl -s -o "$W/body" -w '%{http_code}' "$U/v1/models/fake")" = 200 ] || fail "/v1/models/fake"
  expect '.id == "fake" and .object == "model"'
  [ "$(curl -s -o "$W/body" -w '%{http_code}' "$U/v1/models/gpt-4")" = 404 ] || fail "/v1/models/gpt-4 not 404"
  expect '.error.param == "model" and (.error.message | contains("gpt-4")) and (.error | has("type") and has("code"))'
  # completions, exact fields
  [ "$(post /v1/completions '{"prompt":"hello big world","max_tokens":5,"seed":3}')" = 200 ] || fail "completion"
  expect '(keys == ["choices","created","id","model","object","strata","usage"]) and .object == "text_completion" and (.id | startswith("cmpl-"))'
  expect '(.choices[0] | keys) == ["finish_reason","index","logprobs","text"] and .choices[0].logprobs == null and .choices[0].finish_reason == "length"'
  expect '.usage == {"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":0}}'
  FULL=$(jq -r '.choices[0].text' "$W/body")
  # stop: the text ends before the stop string, which spans tokens (" wA wB": stop "A w")
  T2=$(echo "$FULL" | cut -d' ' -f3)   # second token's word "wNNNN"
  STOP="${T2: -1} w"; WANT="${FULL%%"$STOP"*}"
  [ "$(post /v1/completions "{\"prompt\":\"hello big world\",\"max_tokens\":5,\"seed\":3,\"stop\":[\"zzz\",\"$STOP\"]}")" = 200 ] || fail "stop"
  expect ".choices[0].text == \"$WANT\" and .choices[0].finish_reason == \"stop\""
  [ "$(post /v1/completions "{\"prompt\":\"hello big world\",\"max_tokens\":5,\"seed\":3,\"stop\":\"$STOP\",\"stream\":true}")" = 200 ] || fail "stop stream"
  sse
  GOT=$(jq -rj '.choices[0].text' "$W/chunks")
  [ "$GOT" = "$WANT" ] || fail "streamed stop text '$GOT', expected '$WANT'"
  jq -e 'select(.choices[0].finish_reason != null) | .choices[0].finish_reason == "stop"' "$W/chunks" >/dev/null || fail "streamed finish_reason"
  jq -se 'map(select(has("usage"))) | length == 0' "$W/chunks" >/dev/null || fail "usage in a stream without include_usage"
  # n=2, logprobs=3, echo
  [ "$(post /v1/completions '{"prompt":"a b","max_tokens":4,"n":2,"logprobs":3,"seed":1}')" = 200 ] || fail "n=2"
  expect '(.choices | length) == 2 and ([.choices[].index] == [0,1]) and .choices[0].text != .choices[1].text'
  expect 'all(.choices[]; (.logprobs.tokens | length) == 4 and (.logprobs.token_logprobs | length) == 4 and (.logprobs.top_logprobs | length) == 4 and all(.logprobs.top_logprobs[]; length == 3) and (.logprobs.text_offset | length) == 4 and (.logprobs.tokens | join("")) == .text and .logprobs.text_offset[0] == 0)'
  expect '.usage.completion_tokens == 8 and .usage.prompt_tokens == 2'
  [ "$(post /v1/completions '{"prompt":"a b","max_tokens":2,"echo":true}')" = 200 ] || fail "echo"
  expect '.choices[0].text | startswith("a b w")'
  # array prompt: one choice per prompt, ordered by index
  [ "$(post /v1/completions '{"prompt":["one","two","three"],"max_tokens":2,"n":1}')" = 200 ] || fail "array prompt"
  expect '[.choices[].index] == [0,1,2] and (.choices | map(.text) | unique | length) == 3 and .usage.prompt_tokens == 3'
  # streaming with include_usage: usage only in its own final chunk with empty choices
  [ "$(post /v1/completions '{"prompt":"x","max_tokens":3,"stream":true,"n":2,"stream_options":{"include_usage":true}}')" = 200 ] || fail "stream usage"
  sse
  jq -se '(.[-1].choices == [] and .[-1].usage.completion_tokens == 6 and .[-1].usage.prompt_tokens_details.cached_tokens == 0) and (.[:-1] | all(has("usage") | not)) and ([.[:-1][] | .choices[0].index] | unique == [0,1]) and ([.[] | .object] | unique == ["text_completion"])' "$W/chunks" >/dev/null || fail "stream chunks: $(head -c 800 "$W/chunks")"
  # chat, through the template: role and content, logprobs, stop from the template
  [ "$(post /v1/chat/completions '{"model":"fake","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":4,"logprobs":true,"top_logprobs":2,"n":2}')" = 200 ] || fail "chat"
  expect '.object == "chat.completion" and (.id | startswith("chatcmpl-")) and (.choices | length) == 2'
  expect 'all(.choices[]; .message.role == "assistant" and (.message.content | type) == "string" and (.logprobs.content | length) == 4 and all(.logprobs.content[]; (keys == ["bytes","logprob","token","top_logprobs"]) and (.top_logprobs | length) == 2) and ([.logprobs.content[].token] | join("")) == .message.content)'
  expect '.usage.prompt_tokens == 4' # the fake counts words: "<|system|>be" "brief" "<|user|>hi" "<|assistant|>"
  [ "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}')" = 200 ] || fail "chat stream"
  sse
  jq -se '(.[0].choices[0].delta.role == "assistant") and ([.[:-1][] | .object] | unique == ["chat.completion.chunk"]) and (.[-2].choices[0].finish_reason == "length") and (.[-1].choices == []) and (.[-1].usage.total_tokens > 0)' "$W/chunks" >/dev/null || fail "chat chunks: $(head -c 800 "$W/chunks")"
  # sessions as an extension field in both endpoints
  [ "$(post /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"session":"c1"}')" = 200 ] || fail "chat session"
  expect '.session == "c1"'
  [ "$(post /v1/completions '{"prompt":"more","max_tokens":2,"session":"c1"}')" = 200 ] || fail "session follow-up"
  expect '.usage.prompt_tokens_details.cached_tokens > 0 and (.usage | has("cached_tokens") | not)'
  # parameters Strata does not implement: 400 naming them
  bad /v1/completions '{"prompt":"x","logit_bias":{"50256":-100}}' logit_bias
  bad /v1/completions '{"prompt":"x","suffix":"end"}' suffix
  bad /v1/completions '{"prompt":"x","best_of":3}' best_of
  bad /v1/completions '{"prompt":"x","echo":true,"logprobs":1}' echo
  bad /v1/completions '{"prompt":"x","min_p":0.1}' min_p
  bad /v1/completions '{"prompt":"x","stop":["a","b","c","d","e"]}' stop
  bad /v1/completions '{"prompt":"x","logprobs":21}' logprobs
  bad /v1/completions '{"prompt":"x","presence_penalty":3}' presence_penalty
  bad /v1/completions '{"prompt":"x","n":2,"session":"s"}' session
  bad /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}' tools
  bad /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}' response_format
  bad /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}' top_logprobs
  bad /v1/chat/completions '{"messages":[{"role":"tool","content":"x"}]}' 'messages[0].role'
  bad /v1/chat/completions '{"messages":[{"role":"user","content":"x","name":"bob"}]}' 'messages[0].name'
  bad /v1/chat/completions '{"messages":[]}' messages
  bad /v1/chat/completions '{"prompt":"x"}' prompt
  # metrics as vLLM's: process_*, build info, running / waiting
  curl -s "$U/metrics" > "$W/metrics"
  for m in process_cpu_seconds_total process_resident_memory_bytes process_start_time_seconds process_open_fds \
           strata_num_requests_running strata_num_requests_waiting; do
    grep -q "^$m [0-9]" "$W/metrics" || fail "/metrics lacks $m"
  done
  grep -q '^strata_build_info{version="[0-9][^"]*",model="fake"} 1$' "$W/metrics" || fail "/metrics lacks strata_build_info"
  stop_server
  # a bad template is refused before serving (exit 2, naming the file)
  echo '{"message": 5}' > "$W/bad.json"
  "$S" serve --backend fake --chat-template "$W/bad.json" --listen 127.0.0.1:0 > "$W/bad.log" 2>&1; rc=$?
  [ $rc = 2 ] && grep -q bad.json "$W/bad.log" || fail "a bad chat template: exit $rc, $(cat "$W/bad.log")"
  ;;
engine)
  CK=$W/../infer_work/run/ckpt-00000200
  test -f "$CK/model.safetensors" || fail "no checkpoint at $CK (run infer_setup_checkpoint first)"
  for np in 1 3; do
    start timeout 300 "${MPI[@]}" -np $np "$S" serve --checkpoint "$CK" --no-sessions
    [ "$(post /v1/completions '{"prompt":"The ","max_tokens":12,"temperature":0,"logprobs":2}')" = 200 ] || fail "np $np greedy"
    # greedy: each token is its own most likely alternative, with the same log-probability
    expect 'all(.choices[0].logprobs | [.tokens, .token_logprobs, .top_logprobs] | transpose[]; .[2] | length == 2) and ([.choices[0].logprobs | .token_logprobs[] | select(. > 0)] | length == 0)'
    jq -e '.choices[0].logprobs as $l | [range(0; ($l.tokens|length))] | all(. as $i | ($l.top_logprobs[$i] | to_entries | max_by(.value)) as $b | $b.key == $l.tokens[$i] and (($b.value - $l.token_logprobs[$i]) | fabs) < 1e-5)' "$W/body" >/dev/null || fail "np $np: greedy token is not its top alternative: $(head -c 600 "$W/body")"
    jq -c '[.choices[0].text, .choices[0].logprobs.token_logprobs]' "$W/body" > "$W/greedy$np"
    TEXT=$(jq -r '.choices[0].text' "$W/body")
    # stop at a string inside the greedy text: cut before it, finish_reason stop
    STOP=${TEXT:5:2}; WANT=${TEXT%%"$STOP"*}
    jq -n --arg s "$STOP" '{"prompt":"The ","max_tokens":12,"temperature":0,"stop":$s}' > "$W/req"
    [ "$(post /v1/completions "$(cat "$W/req")")" = 200 ] || fail "np $np stop"
    jq -e --arg w "$WANT" '.choices[0].text == $w and .choices[0].finish_reason == "stop"' "$W/body" >/dev/null || fail "np $np stop '$STOP': $(cat "$W/body"), expected '$WANT'"
    # penalties change a greedy answer (a byte model repeats bytes within 12 tokens)
    [ "$(post /v1/completions '{"prompt":"The ","max_tokens":12,"temperature":0,"frequency_penalty":2,"presence_penalty":2}')" = 200 ] || fail "np $np penalties"
    jq -e --arg t "$TEXT" '.choices[0].text != $t' "$W/body" >/dev/null || fail "np $np: penalties changed nothing"
    # n=2 seeded: two different choices, the same again for the same seed
    [ "$(post /v1/completions '{"prompt":"The ","max_tokens":16,"temperature":1,"seed":5,"n":2}')" = 200 ] || fail "np $np n=2"
    expect '(.choices | length) == 2 and .choices[0].text != .choices[1].text'
    jq -c '[.choices[].text]' "$W/body" > "$W/n2_$np"
    stop_server
  done
  cmp -s "$W/n2_1" "$W/n2_3" || fail "n=2 seeded choices differ between P = 1 and P = 3"
  jq -e -s '(.[0][0] == .[1][0]) and ([.[0][1], .[1][1]] | transpose | all((.[0] - .[1]) | fabs < 1e-4))' "$W/greedy1" "$W/greedy3" >/dev/null \
    || fail "greedy text or logprobs differ between P = 1 and P = 3: $(cat "$W/greedy1" "$W/greedy3")"
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "openai_wire $CASE: ok"
