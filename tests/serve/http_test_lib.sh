# http_test_lib.sh -- shell helpers of the HTTP tests of `strata serve` (openai_wire_test.sh,
# bpe_serve_test.sh), sourced after W (the work directory) is set:
#   fail MSG          prints FAIL and the server log's tail, exits 1
#   start CMD...      starts a server on a free port (--listen 127.0.0.1:0); URL in $U, pid in $PID
#   stop_server       SIGTERM and wait (also on exit)
#   post PATH BODY    POST JSON, body in $W/body; prints the status code
fail() { echo "FAIL: $*"; [ -f "$W/srv.log" ] && tail -5 "$W/srv.log"; exit 1; }
PID=
start() {
  "$@" --listen 127.0.0.1:0 > "$W/srv.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    U=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$W/srv.log" | head -1)
    [ -n "$U" ] && return 0
    kill -0 $PID 2>/dev/null || fail "server exited: $(cat "$W/srv.log")"
    sleep 0.1
  done
  fail "server did not start"
}
stop_server() { [ -n "$PID" ] && kill -TERM $PID 2>/dev/null && wait $PID 2>/dev/null; PID=; }
trap stop_server EXIT
post() { curl -s -o "$W/body" -w '%{http_code}' "$U$1" -H 'Content-Type: application/json' -d "$2"; }
