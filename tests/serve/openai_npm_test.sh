#!/bin/bash
# The official `openai` npm client against `strata serve --backend fake` (tests/serve/openai_npm_test.mjs):
# models.list / retrieve, completions.create and chat.completions.create, streamed and not, with
# stop, n = 2 and logprobs. Installs openai@4 with npm into STRATA_NPM_CACHE (default
# ~/.cache/strata-npm) once; exits 77 (skipped) with a message when node or npm is absent or the
# install fails (no network). usage: openai_npm_test.sh STRATA_BIN WORK_DIR
set -u
S=$1; W=$2
for t in node npm; do command -v $t >/dev/null || { echo "SKIP: $t is not installed"; exit 77; }; done
CACHE=${STRATA_NPM_CACHE:-$HOME/.cache/strata-npm}
if [ ! -f "$CACHE/node_modules/openai/package.json" ]; then
  mkdir -p "$CACHE" && timeout 300 npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error openai@4 \
    > "$CACHE/install.log" 2>&1 || { echo "SKIP: npm install openai failed: $(tail -3 "$CACHE/install.log")"; exit 77; }
fi
rm -rf "$W" && mkdir -p "$W"
"$S" serve --backend fake --listen 127.0.0.1:0 > "$W/srv.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
U=
for _ in $(seq 1 100); do
  U=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$W/srv.log" | head -1)
  [ -n "$U" ] && break
  sleep 0.1
done
[ -n "$U" ] || { echo "FAIL: server did not start: $(cat "$W/srv.log")"; exit 1; }
timeout 120 node "$(dirname "$0")/openai_npm_test.mjs" "$CACHE/node_modules" "$U/v1"
