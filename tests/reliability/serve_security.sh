#!/usr/bin/env bash
# Security properties of `strata serve` on the real binary with the fake backend:
#  - with no --listen it binds loopback only (127.0.0.1:8080): the listening socket (ss) is on
#    127.0.0.1 and not on a wildcard address; a non-loopback --listen prints a warning;
#  - an oversized request body and an oversized header block are refused with 4xx, not read;
#  - hostile session IDs (path traversal) are refused with 400 before touching the file system.
# Usage: serve_security.sh STRATA
set -euo pipefail
STRATA="$1"
W="$(mktemp -d /tmp/strata-sec.XXXXXX)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
start() { # start ARGS...: runs serve in the background, waits for its "listening on" line
  "$STRATA" serve --backend fake --session-dir "$W/sessions" "$@" > "$W/out.txt" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    grep -q "listening on http://" "$W/out.txt" && return 0
    kill -0 "$PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }
status() { # status PORT RAW_REQUEST_FILE: the HTTP status code of the reply
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  cat "$2" >&3 2>/dev/null || true
  timeout 10 head -c 12 <&3 | sed -E 's/^HTTP\/1\.[01] ([0-9]{3}).*/\1/'
  exec 3<&- 3>&-
}

# 1. default address: loopback. Port 8080 may be taken on a shared machine: then the refusal
#    must still name 127.0.0.1:8080.
if start; then
  grep -q "listening on http://127.0.0.1:8080" "$W/out.txt" || fail "default is not 127.0.0.1:8080: $(cat "$W/out.txt")"
  socks=$(ss -ltnpH 2>/dev/null | grep "pid=$PID," || true)
  grep -q "127.0.0.1:8080" <<<"$socks" || fail "no socket on 127.0.0.1:8080: $socks"
  grep -Eq "(0\.0\.0\.0|\*|\[::\]):8080" <<<"$socks" && fail "serve listens on a wildcard address: $socks"
  stop
else
  grep -q "127.0.0.1:8080" "$W/out.txt" || fail "default listen address is not loopback: $(cat "$W/out.txt")"
  echo "port 8080 busy here; the default address was still 127.0.0.1:8080"
fi

# 2. a non-loopback address is allowed only with a warning
start --listen 0.0.0.0:0 || fail "serve --listen 0.0.0.0:0 did not start: $(cat "$W/out.txt")"
grep -q "non-loopback" "$W/out.txt" || fail "no warning for a non-loopback address"
stop

# 3. bounded requests, hostile session IDs
start --listen 127.0.0.1:0 || fail "serve did not start: $(cat "$W/out.txt")"
PORT=$(sed -nE 's/.*listening on http:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$W/out.txt" | head -1)
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"prompt":' > "$W/big.txt"
s=$(status "$PORT" "$W/big.txt"); [[ "$s" =~ ^4[0-9][0-9]$ ]] || fail "a 1 GB Content-Length got '$s', expected 4xx"
{ printf 'GET /health HTTP/1.1\r\nHost: x\r\n'; for i in $(seq 1 3000); do printf 'X-Pad-%d: %0100d\r\n' "$i" 0; done; printf '\r\n'; } > "$W/hdr.txt"
s=$(status "$PORT" "$W/hdr.txt"); [[ "$s" =~ ^4[0-9][0-9]$ ]] || fail "a 300 KB header block got '$s', expected 4xx"
for id in '..%2f..%2fescape' '..' 'a.b' "$(printf 'a%.0s' $(seq 1 65))"; do
  printf 'DELETE /v1/sessions/%s HTTP/1.1\r\nHost: x\r\n\r\n' "$id" > "$W/del.txt"
  s=$(status "$PORT" "$W/del.txt"); [ "$s" = 400 ] || fail "session id '$id' got '$s', expected 400"
done
body='{"prompt": "hi", "max_tokens": 1, "session": "../../escape"}'
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "${#body}" "$body" > "$W/sess.txt"
s=$(status "$PORT" "$W/sess.txt"); [ "$s" = 400 ] || fail "session '../../escape' got '$s', expected 400"
[ ! -e "$W/escape" ] && [ ! -e /tmp/escape ] || fail "a hostile session id created a file"
kill -0 "$PID" || fail "serve died under hostile requests"
stop
echo "PASS serve_security"
