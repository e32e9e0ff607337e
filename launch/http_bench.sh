#!/usr/bin/env bash
# http_bench.sh -- throughput and p50/p99 latency of `strata serve` against the number of
# concurrent clients. Starts `strata serve --backend fake` on a free loopback
# port (or uses a server you started, with PORT=...), then runs tests/serve/http_load (C client,
# plain sockets, loopback only, bounded in requests and seconds) at each concurrency and prints
# one line per level (a JSON line, also appended to $OUT, when OUT is set).
# Usage: launch/http_bench.sh [CONCURRENCY... (default 1 2 4 8 16 32)]
#   env STRATA_BUILD (default build), REQUESTS per level (default 400), MAX_TOKENS (default 16),
#       STREAM=1 (server-sent events), FAKE_STEP_S (fake decode step, default 0.002),
#       FAKE_BATCH (fake batch size, default 8), PORT (benchmark an already running server),
#       DURATION_S per level (default 60), OUT (file for the JSON lines)
#   CHECKPOINT=DIR serves a real model instead (`mpirun -np $NP strata serve --checkpoint DIR`,
#       NP default 1; MPIRUN overrides the launcher command); SESSION_BENCH=1 then also measures
#       the time to first token of a session follow-up against the same context sent statelessly
#       (CONTEXT tokens of history, default 1000; needs a model with n_ctx > CONTEXT; uses curl;
#       SESSION_REPS times, default 3).
# With the fake backend the numbers measure the HTTP layer and the batching hand-off, not a model.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${STRATA_BUILD:-$ROOT/build}"
STRATA="$BUILD/bin/strata"
LOAD="$BUILD/tests/http_load"
LEVELS=("$@"); [ ${#LEVELS[@]} -gt 0 ] || LEVELS=(1 2 4 8 16 32)
REQUESTS="${REQUESTS:-400}"; MAX_TOKENS="${MAX_TOKENS:-16}"; DURATION_S="${DURATION_S:-60}"
[ -x "$LOAD" ] || { echo "http_bench: build first ($LOAD missing: cmake --build $BUILD --target http_load strata)" >&2; exit 2; }
SERVER_PID=""
W="$(mktemp -d)"
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
if [ -z "${PORT:-}" ] && [ -n "${CHECKPOINT:-}" ]; then
  [ -x "$STRATA" ] || { echo "http_bench: build first ($STRATA missing)" >&2; exit 2; }
  NP="${NP:-1}"
  # mpirun refuses root without these (the machines these scripts target run as root)
  if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  read -r -a MPI <<< "${MPIRUN:-mpirun --oversubscribe --bind-to none --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo}"
  "${MPI[@]}" -np "$NP" "$STRATA" serve --checkpoint "$CHECKPOINT" --listen 127.0.0.1:0 --max-queue 1024 \
    --max-connections 1024 --max-connections-per-client 0 --max-tokens-limit 4096 --session-dir "$W/sessions" > "$W/server.out" 2> "$W/server.err" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    PORT="$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$W/server.out" | head -1)"
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break # the launcher exited: say why at once
    sleep 0.1
  done
  [ -n "$PORT" ] || { echo "http_bench: the server did not start:" >&2; cat "$W/server.err" >&2; exit 1; }
  echo "# mpirun -np $NP strata serve --checkpoint $CHECKPOINT on 127.0.0.1:$PORT"
  if [ "${SESSION_BENCH:-0}" = 1 ]; then
    CONTEXT="${CONTEXT:-1000}"
    ttft() { curl -s "http://127.0.0.1:$PORT/v1/completions" -d "$1" | sed -n 's/.*"ttft_s":\([0-9.e-]*\).*/\1/p'; }
    text() { head -c "$1" /dev/zero | tr '\0' 'a'; }
    for rep in $(seq 1 "${SESSION_REPS:-3}"); do
      sid="bench$rep"
      ttft "{\"prompt\":\"$(text $((CONTEXT - 8)))\",\"max_tokens\":1,\"temperature\":0,\"session\":\"$sid\"}" >/dev/null
      s_ttft="$(ttft "{\"prompt\":\"$(text 7)\",\"max_tokens\":1,\"temperature\":0,\"session\":\"$sid\"}")"
      l_ttft="$(ttft "{\"prompt\":\"$(text "$CONTEXT")\",\"max_tokens\":1,\"temperature\":0}")"
      echo "session follow-up at $CONTEXT tokens of context: ttft ${s_ttft} s with the session, ${l_ttft} s stateless" \
        "($(awk -v a="$l_ttft" -v b="$s_ttft" 'BEGIN{printf "%.1f", a/b}')x)"
    done
  fi
elif [ -z "${PORT:-}" ]; then
  [ -x "$STRATA" ] || { echo "http_bench: build first ($STRATA missing)" >&2; exit 2; }
  "$STRATA" serve --backend fake --listen 127.0.0.1:0 --max-queue 1024 --max-connections 1024 --max-connections-per-client 0 \
    --max-tokens-limit 4096 --fake-step-s "${FAKE_STEP_S:-0.002}" --fake-batch "${FAKE_BATCH:-8}" \
    > "$W/server.out" 2> "$W/server.err" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    PORT="$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$W/server.out" | head -1)"
    [ -n "$PORT" ] && break; sleep 0.1
  done
  [ -n "$PORT" ] || { echo "http_bench: the server did not start:" >&2; cat "$W/server.err" >&2; exit 1; }
  echo "# strata serve --backend fake (step ${FAKE_STEP_S:-0.002} s, batch ${FAKE_BATCH:-8}) on 127.0.0.1:$PORT"
fi
echo "# $REQUESTS requests per level, max_tokens $MAX_TOKENS, stream ${STREAM:-0}; $(nproc) cores"
STREAM_FLAG=(); [ "${STREAM:-0}" = 1 ] && STREAM_FLAG=(--stream)
# One measurement per level: printed, and with OUT set also appended there as a JSON line
# (a level may be listed several times, e.g. "1 2 4 1 2 4", for repeats on the same server).
for c in "${LEVELS[@]}"; do
  if [ -n "${OUT:-}" ]; then
    "$LOAD" --port "$PORT" --connections "$c" --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" \
      --duration-s "$DURATION_S" ${STREAM_FLAG[@]+"${STREAM_FLAG[@]}"} --json | tee -a "$OUT"
  else
    "$LOAD" --port "$PORT" --connections "$c" --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" \
      --duration-s "$DURATION_S" ${STREAM_FLAG[@]+"${STREAM_FLAG[@]}"}
  fi
done
