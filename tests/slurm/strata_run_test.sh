#!/usr/bin/env bash
# strata_run_test.sh -- specification of launch/strata-run, the local launch wrapper.
#
# Usage: strata_run_test.sh CASE     (run by ctest; see tests/launch.cmake)
#   dry_run_flags  --dry-run shows: no mpirun for one rank; root flags only as root;
#                  --oversubscribe only when ranks > nproc; loopback MCA flags on one host and
#                  none with --hosts; transport/provider env (FI_TCP_IFACE=lo for local tcp);
#                  --out / --json pointed into the run directory unless the user gave them;
#                  the binary found at <repo>/build/bin/strata beside the script.
#   bad_input      every usage error exits 2 and names the problem.
#   train_one_rank a real 3-step run: run dir with report.json (steps_done 3), console.log,
#                  command.txt.
#   bench_two_ranks a real 2-rank allreduce under mpirun: bench.json rows wrong 0, ranks 2
#                  (77 = SKIP while `strata bench` is not implemented).
#   train_two_ranks a real 2-rank `train --dp 2` (77 = SKIP until train has --dp).
#   restart_after_kill --max-restarts: a rank of 3 killed mid-run in the first launch; the job
#                  resumes from its newest checkpoint and ends with the uninterrupted final loss.
#   restart_repeats --max-restarts: a failure at the same step twice stops the restarts.
#   shrink_layout  the layout a shrinking restart picks (restart.sh strata_shrink_layout) is one
#                  strata train runs: ZeRO 0 or 1 where the sweep's fastest is ZeRO-3.
# Environment (set by ctest): STRATA_SOURCE_DIR, STRATA_BIN.
set -uo pipefail

case_name="${1:-}"
src="${STRATA_SOURCE_DIR:?STRATA_SOURCE_DIR must name the repository}"
strata="${STRATA_BIN:?STRATA_BIN must name the built strata binary}"
run="$src/launch/strata-run"
tmp="$(mktemp -d /tmp/strata-launch.XXXXXX)" || exit 1
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# contains TEXT NEEDLE WHAT / lacks TEXT NEEDLE WHAT: fixed-string checks on dry-run output.
contains() { grep -qF -- "$2" <<<"$1" || fail "$3: expected '$2' in: $1"; }
lacks() { ! grep -qF -- "$2" <<<"$1" || fail "$3: did not expect '$2' in: $1"; }
is_root=0; [ "$(id -u)" -eq 0 ] && is_root=1
cores="$(nproc)"

case "$case_name" in
  dry_run_flags)
    out="$("$run" --strata "$strata" --dry-run -- train --steps 5)" || fail "dry run 1 rank exited $?"
    lacks "$out" "mpirun" "one rank runs strata directly"
    contains "$out" "command: $strata train --steps 5 --out runs/train-" "one rank: command and default run dir"
    contains "$out" "STRATA_COLL_TRANSPORT=mpi" "default transport"
    lacks "$out" "--transport" "no --transport flag unless asked"
    contains "$out" "STRATA_RUN_DIR=runs/train-" "run dir exported"
    lacks "$out" "--tp" "no --tp unless STRATA_TP is set"
    out="$(STRATA_TP=2 "$run" --strata "$strata" -n 4 --dry-run -- train --steps 5)" || fail "dry run STRATA_TP exited $?"
    contains "$out" "train --steps 5 --out runs/train-" "STRATA_TP: the command"
    contains "$out" " --tp 2" "STRATA_TP=2 adds --tp 2"
    out="$(STRATA_TP=2 "$run" --strata "$strata" -n 4 --dry-run -- train --tp 4)" || fail "dry run STRATA_TP + --tp exited $?"
    lacks "$out" "--tp 2" "an explicit --tp wins over STRATA_TP"
    out="$(STRATA_TP=2 "$run" --strata "$strata" -n 4 --dry-run -- serve --checkpoint c)" || fail "dry run STRATA_TP serve exited $?"
    contains "$out" "serve --checkpoint c --tp 2" "STRATA_TP=2 adds --tp 2 to serve"
    out="$(STRATA_TP=2 "$run" --strata "$strata" -n 2 --dry-run -- infer --checkpoint c)" || fail "dry run STRATA_TP infer exited $?"
    contains "$out" "infer --checkpoint c --tp 2" "STRATA_TP=2 adds --tp 2 to infer"
    out="$(STRATA_TP=2 "$run" --strata "$strata" -n 1 --dry-run -- bench allreduce)" || fail "dry run STRATA_TP bench exited $?"
    lacks "$out" "--tp" "STRATA_TP does not touch bench"

    out="$("$run" --strata "$strata" -n $((cores + 1)) --dry-run -- train)" || fail "dry run nproc+1 exited $?"
    contains "$out" "mpirun -np $((cores + 1))" "mpirun with ranks"
    contains "$out" "--oversubscribe" "ranks > cores oversubscribe"
    contains "$out" "--mca btl self\\,vader\\,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo" "loopback MCA flags"
    if [ $is_root -eq 1 ]; then
      contains "$out" "--allow-run-as-root" "root flag as root"
      contains "$out" "OMPI_ALLOW_RUN_AS_ROOT=1" "root env as root"
    else
      lacks "$out" "--allow-run-as-root" "no root flag when not root"
      lacks "$out" "OMPI_ALLOW_RUN_AS_ROOT" "no root env when not root"
    fi

    out="$("$run" --strata "$strata" -n "$cores" --dry-run -- train)" || fail "dry run nproc exited $?"
    if [ "$cores" -gt 1 ]; then
      contains "$out" "mpirun -np $cores" "ranks = cores uses mpirun"
    fi
    lacks "$out" "--oversubscribe" "ranks <= cores: no oversubscribe"

    out="$("$run" --strata "$strata" -n 2 --transport ofi --provider tcp --run-dir "$tmp/r" --dry-run \
           -- bench allreduce -b 1K)" || fail "dry run ofi exited $?"
    contains "$out" "STRATA_COLL_TRANSPORT=ofi" "ofi transport env"
    contains "$out" "FI_PROVIDER=tcp" "provider env"
    if [ -z "${FI_TCP_IFACE:-}" ]; then contains "$out" "FI_TCP_IFACE=lo" "local tcp on loopback"; fi
    contains "$out" "-x FI_PROVIDER" "provider forwarded by mpirun"
    contains "$out" "bench allreduce -b 1K --json $tmp/r/bench.json --transport ofi" "bench JSON into the run dir, transport flag"
    [ ! -e "$tmp/r" ] || fail "--dry-run created the run directory"

    out="$(env -u FI_PROVIDER "$run" --strata "$strata" -n 2 --transport ofi --dry-run -- bench allreduce --json my.json)" || fail "dry run shm exited $?"
    contains "$out" "FI_PROVIDER=shm" "ofi default provider on one host is shm"
    lacks "$out" "bench.json" "the user's --json is kept"
    out="$(FI_PROVIDER=efa "$run" --strata "$strata" -n 2 --transport ofi --dry-run -- bench allreduce)" || fail "dry run efa exited $?"
    contains "$out" "FI_PROVIDER=efa" "an exported FI_PROVIDER is the default provider"
    lacks "$out" "FI_TCP_IFACE" "no tcp interface for efa"
    out="$("$run" --strata "$strata" --dry-run -- train --out=mine)" || fail "dry run --out= exited $?"
    lacks "$out" "--out runs/" "the user's --out= is kept"

    out="$(env -u FI_PROVIDER "$run" --strata "$strata" -n 4 --hosts nodeA:2,nodeB:2 --transport ofi --dry-run -- train)" || fail "dry run hosts exited $?"
    contains "$out" "--host nodeA:2\\,nodeB:2" "hosts passed to mpirun"
    lacks "$out" "btl_tcp_if_include lo" "no loopback restriction across hosts"
    lacks "$out" "--oversubscribe" "no oversubscribe across hosts"
    contains "$out" "FI_PROVIDER=tcp" "ofi default provider across hosts is tcp"
    lacks "$out" "FI_TCP_IFACE=lo" "no loopback interface across hosts"
    contains "$out" "train --out runs/train-" "train gets the run dir"
    contains "$out" "--transport ofi" "train gets the transport flag"
    out="$("$run" --strata "$strata" --transport ofi --dry-run -- train --transport mpi)" || fail "dry run own --transport exited $?"
    lacks "$out" "--transport ofi" "the user's --transport is kept"

    # Binary discovery: <repo>/build/bin/strata beside launch/.
    mkdir -p "$tmp/repo/launch" "$tmp/repo/build/bin"
    cp "$run" "$tmp/repo/launch/strata-run"
    cp "$(dirname "$run")/rank_failures.sh" "$(dirname "$run")/restart.sh" "$tmp/repo/launch/"
    printf '#!/bin/sh\nexit 0\n' >"$tmp/repo/build/bin/strata"; chmod +x "$tmp/repo/build/bin/strata"
    out="$(env -u STRATA_BIN "$tmp/repo/launch/strata-run" --dry-run -- train)" || fail "dry run discovery exited $?"
    contains "$out" "command: $tmp/repo/build/bin/strata train" "finds build/bin/strata"
    ;;

  bad_input)
    expect_usage_error() { # expect_usage_error MESSAGE ARGS...
      local msg="$1" out rc; shift
      out="$("$@" 2>&1)"; rc=$?
      [ $rc -eq 2 ] || fail "'$*' exited $rc, expected 2 ($out)"
      grep -qF -- "$msg" <<<"$out" || fail "'$*' did not say '$msg': $out"
    }
    expect_usage_error "no strata COMMAND given" "$run" --strata "$strata"
    expect_usage_error "--np 'zero' is not a positive integer" "$run" --strata "$strata" -n zero -- train
    expect_usage_error "--np '0' is not a positive integer" "$run" --strata "$strata" -n 0 -- train
    expect_usage_error "--transport 'nccl' is not one of: mpi, ofi" "$run" --strata "$strata" --transport nccl -- train
    expect_usage_error "--provider tcp only applies to --transport ofi" "$run" --strata "$strata" --provider tcp -- train
    expect_usage_error "unknown option '--frob'" "$run" --strata "$strata" --frob -- train
    expect_usage_error "--run-dir needs a value" "$run" --strata "$strata" --run-dir
    expect_usage_error "is not an executable file" "$run" --strata "$tmp/no-such-strata" -- train
    expect_usage_error "--max-restarts 'x' is not an integer in [0, 1000]" "$run" --strata "$strata" --max-restarts x -- train
    expect_usage_error "--max-restarts applies to train only (got bench)" "$run" --strata "$strata" --max-restarts 1 -- bench allreduce
    # strata's own errors come back as strata's exit status.
    out="$("$run" --strata "$strata" --run-dir "$tmp/bad" -- train --no-such-flag 2>&1)"; rc=$?
    [ $rc -ne 0 ] || fail "a strata error must not exit 0"
    grep -qF "no-such-flag" <<<"$out" || fail "strata's message not shown: $out"
    ;;

  train_one_rank)
    out="$(cd "$tmp" && "$run" --strata "$strata" --run-dir "$tmp/run" -- train --steps 3 --layers 1 \
           --heads 2 --dim 32 --ctx 32 --batch 2 --log-every 1 2>&1)"; rc=$?
    echo "$out"
    [ $rc -eq 0 ] || fail "train exited $rc"
    [ -s "$tmp/run/report.json" ] || fail "report.json missing"
    grep -Eq '"steps_done": *3[,}[:space:]]' "$tmp/run/report.json" || fail "steps_done is not 3"
    grep -q "done: 3 steps" "$tmp/run/console.log" || fail "console.log lacks strata's done line"
    grep -qF -- "--out $tmp/run" "$tmp/run/command.txt" || fail "command.txt lacks the --out flag"
    ;;

  bench_two_ranks)
    out="$("$run" --strata "$strata" -n 2 --run-dir "$tmp/run" -- bench allreduce -b 1K -e 16K -f 4 2>&1)"; rc=$?
    echo "$out"
    [ $rc -eq 0 ] || fail "bench exited $rc"
    json="$tmp/run/bench.json"
    [ -s "$json" ] || fail "bench.json missing"
    rows="$(grep -o '"wrong": *[0-9]*' "$json" | wc -l)"
    [ "$rows" -ge 3 ] || fail "bench.json has $rows rows, expected >= 3 (1K, 4K, 16K)"
    [ "$(grep -o '"wrong": *[0-9]*' "$json" | grep -vc '"wrong": *0$')" -eq 0 ] || fail "a row has wrong != 0"
    [ "$(grep -o '"ranks": *[0-9]*' "$json" | grep -vc '"ranks": *2$')" -eq 0 ] || fail "a row has ranks != 2"
    ;;

  train_two_ranks)
    out="$("$run" --strata "$strata" -n 2 --run-dir "$tmp/run" -- train --dp 2 --steps 3 --layers 1 \
           --heads 2 --dim 32 --ctx 32 --batch 4 2>&1)"; rc=$?
    echo "$out"
    [ $rc -eq 0 ] || fail "train exited $rc"
    grep -Eq '"world_size": *2[,}[:space:]]' "$tmp/run/report.json" 2>/dev/null || fail "report.json: world_size is not 2"
    grep -Eq '"steps_done": *3[,}[:space:]]' "$tmp/run/report.json" 2>/dev/null || fail "report.json: steps_done is not 3"
    ;;

  restart_after_kill)
    # rank 2 of 3 (odd D) is killed at step 7 in the first launch only (attempt=0); checkpoints
    # every 4 steps: the restart resumes from step 4, losing steps 5 and 6, and ends where an
    # uninterrupted run ends, bit for bit (exact resume)
    model=(--dp 3 --steps 12 --ckpt-every 4 --layers 1 --heads 2 --dim 32 --ctx 16 --batch 6)
    "$run" --strata "$strata" -n 3 --run-dir "$tmp/ref" -- train "${model[@]}" >"$tmp/ref.log" 2>&1 ||
      fail "the uninterrupted run exited $?"
    out="$(STRATA_FAULT="kill:rank=2:step=7:attempt=0" "$run" --strata "$strata" -n 3 --max-restarts 2 \
           --run-dir "$tmp/run" -- train "${model[@]}" 2>&1)"; rc=$?
    echo "$out" | grep -E "strata-run|strata: rank|done:"
    [ $rc -eq 0 ] || fail "the restarted job exited $rc"
    contains "$out" "strata: rank 2 (stage 0, replica 2) died (signal 9) at step 7" "the failure is named"
    contains "$out" "restart 1 of 2: rank 2 (stage 0, replica 2) failed at step 7; relaunching from checkpoint step 4 (--resume auto), 2 finished step(s) lost" "the restart line"
    lacks "$out" "restart 2 of 2" "one restart only"
    grep -Eq '"steps_done": *12[,}[:space:]]' "$tmp/run/report.json" 2>/dev/null || fail "steps_done is not 12"
    ref_loss=$(grep -o '"final_loss": *[0-9.eE+-]*' "$tmp/ref/report.json" 2>/dev/null)
    got_loss=$(grep -o '"final_loss": *[0-9.eE+-]*' "$tmp/run/report.json" 2>/dev/null)
    [ -n "$ref_loss" ] && [ "$ref_loss" = "$got_loss" ] || fail "final loss '$got_loss' differs from the uninterrupted '$ref_loss'"
    ;;

  shrink_layout)
    job=(--device h100 --batch 48 --layers 24 --dim 2048 --heads 16 --seq-len 2048)
    sweep=$("$strata" simulate --arch gpt --layers 24 --heads 16 --dim 2048 --ctx 2048 --vocab 256 \
            --nodes 8 --batch 48 --device h100 --schedule gpipe --virtual-stages 1 --sweep --json |
            jq -c '[.rows[] | select(.fits)][0].zero')
    [ "$sweep" = 3 ] || fail "the sweep's fastest fitting row should be ZeRO-3 here (got '$sweep')"
    out=$(source "$src/launch/restart.sh"; strata_shrink_layout "$strata" 8 "" "${job[@]}" | tr '\n' ' ') ||
      fail "strata_shrink_layout exited $?"
    contains "$out" "--tp 1 --pp 1 --dp 8 " "the shrunk layout"
    grep -qE -- "--zero [01] " <<<"$out" || fail "the shrunk layout's ZeRO is one strata train runs: $out"
    ;;
  restart_repeats)
    # the fault fires in every launch at step 4 (no attempt=): the first restart fails at the
    # same step, and the loop stops there instead of using up --max-restarts (step 4: the
    # asynchronous checkpoint of step 2 is complete by the end of step 3)
    out="$(STRATA_FAULT="exit:rank=1:step=4:code=3" "$run" --strata "$strata" -n 2 --max-restarts 5 \
           --run-dir "$tmp/run" -- train --dp 2 --steps 6 --ckpt-every 2 --layers 1 --heads 2 --dim 32 \
           --ctx 16 --batch 4 2>&1)"; rc=$?
    echo "$out" | grep -E "strata-run|strata: rank"
    [ $rc -ne 0 ] || fail "a failure that repeats must end the job non-zero"
    contains "$out" "restart 1 of 5: rank 1 (stage 0, replica 1) failed at step 4; relaunching from checkpoint step 2" "the first restart"
    contains "$out" "the job failed at step 4 again, as in the previous launch; not restarting" "the repeat is named"
    lacks "$out" "restart 2 of 5" "no second restart"
    ;;

  *) echo "usage: $0 dry_run_flags|bad_input|train_one_rank|bench_two_ranks|train_two_ranks|restart_after_kill|restart_repeats" >&2; exit 2 ;;
esac

if [ $failures -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "PASS: $case_name"
