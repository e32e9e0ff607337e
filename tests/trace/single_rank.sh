#!/usr/bin/env bash
# A single-rank run (no mpirun, no layout flags: train.c's loop) writes every file README lists:
# steps.jsonl with every key of a distributed run's records (communication 0, sim_step_s null),
# report.json with trace_written true, report.pb decoding as a RunReport of 1 x 1 x 1, and a
# trace.json that trace_check accepts, with one fwd and one bwd per micro-batch and an optim per
# step, and a checkpoint slice.
# Usage: single_rank.sh STRATA TRACE_CHECK DIST_TOOL
set -euo pipefail
STRATA="$1" CHECK="$2" TOOL="$3"
fail() { echo "FAIL: $*" >&2; exit 1; }
W="$(mktemp -d /tmp/strata-solo.XXXXXX)"; trap 'rm -rf "$W"' EXIT
"$STRATA" train --layers 2 --dim 32 --heads 2 --ctx 32 --batch 4 --microbatches 2 --steps 3 \
  --ckpt-every 2 --quiet --out "$W/run" || fail "strata train exited $?"
for f in steps.jsonl report.json report.pb trace.json; do
  [ -s "$W/run/$f" ] || fail "the run directory lacks $f"
done
last=$(tail -1 "$W/run/steps.jsonl")
for k in step loss lr grad_norm tokens_per_s step_s comm_share tp_comm_share idle_share \
         bytes_sent bytes_recv sim_step_s; do
  grep -q "\"$k\": " <<< "$last" || fail "steps.jsonl record lacks $k: $last"
done
grep -q '"comm_share": 0.0000, "tp_comm_share": 0.0000, "idle_share": 0.0000, "bytes_sent": 0, "bytes_recv": 0, "sim_step_s": null' <<< "$last" ||
  fail "one rank's communication keys are not 0 / null: $last"
grep -q '"trace_written": true' "$W/run/report.json" || fail "report.json lacks \"trace_written\": true"
"$TOOL" pb "$W/run/report.pb" 1 1 1 || fail "report.pb is not a RunReport of one rank"
"$CHECK" "$W/run/trace.json" || fail "trace_check rejects the single-rank trace"
n_fwd=$(grep -c '"name": "fwd"' "$W/run/trace.json"); n_bwd=$(grep -c '"name": "bwd"' "$W/run/trace.json")
n_opt=$(grep -c '"name": "optim"' "$W/run/trace.json"); n_ck=$(grep -c '"name": "checkpoint"' "$W/run/trace.json")
[ "$n_fwd" = 6 ] && [ "$n_bwd" = 6 ] && [ "$n_opt" = 3 ] && [ "$n_ck" = 2 ] ||
  fail "trace.json has $n_fwd fwd, $n_bwd bwd, $n_opt optim, $n_ck checkpoint slices; expected 6, 6, 3, 2"
grep -q '"name": "rank 0 (t 0, stage 0, replica 0)"' "$W/run/trace.json" || fail "trace.json does not name rank 0"
echo "single-rank run: steps.jsonl, report.json, report.pb and trace.json complete"
