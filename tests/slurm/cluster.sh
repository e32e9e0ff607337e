# shellcheck shell=bash
# cluster.sh -- a throw-away single-node Slurm cluster for the tests, sourced by the slurm_ tests.
#
# slurm_cluster_start DIR  creates, under DIR, a munge key and a munged with its own socket, a
#                          generated slurm.conf (non-default random free ports, state, spool,
#                          pid files and logs all under DIR, one node = this host, partition
#                          "debug"), starts slurmctld and slurmd in the foreground in the
#                          background, remembers their PIDs, exports SLURM_CONF for the client
#                          commands and waits (bounded) until the node is idle.
# slurm_cluster_stop       cancels the cluster's jobs (waits up to 10 s for them), then stops
#                          exactly the daemons this file started, by PID (TERM, then
#                          KILL after a bounded wait). Safe to call twice; call it from a trap.
# slurm_wait_job ID SECS   waits until job ID has ended (bounded; scancels it on timeout) and
#                          prints its final state (COMPLETED, FAILED, ..., or TIMEOUT).
#
# Nothing outside DIR is written: no /etc/slurm, no /etc/munge, no system munged. The daemons
# address each other and the jobs as 127.0.0.1 (SlurmctldHost and NodeAddr), so all traffic
# stays on loopback (slurmctld/slurmd still bind their ports on all interfaces: Slurm 22.05
# has no bind-address setting; munge authenticates every message). Needs root (slurmd
# launches jobs as their user). Client commands reach this cluster through SLURM_CONF.
# Tunables: STRATA_SLURM_START_TIMEOUT_S (default 60) bounds the wait for an idle node.

SLURM_CLUSTER_PIDS=()

slurm_log() { echo "[slurm-test] $*"; }

# A TCP port no socket on this machine uses (random in 20000..39999; /proc/net/tcp{,6}).
slurm_free_port() {
  local port hex i
  for i in $(seq 1 50); do
    port=$(( 20000 + RANDOM % 20000 ))
    hex="$(printf '%04X' "$port")"
    if ! awk 'NR > 1 {print $2}' /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ":${hex}\$"; then
      echo "$port"; return 0
    fi
  done
  return 1
}

# slurm_conf_policy MPI_DEFAULT MUNGE_SOCKET: the slurm.conf lines every test cluster shares
# (root daemons, munge on that socket, plugins, scheduling, timeouts; no accounting, no
# cgroups), for the generated configurations here and in tests/cluster/cluster.sh.
slurm_conf_policy() {
  cat <<EOF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$2
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=$1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
MailProg=/bin/true
EOF
}

# slurm_munge_start DIR: a munge key DIR/munge/munge.key and a munged on the socket
# DIR/munge/munge.socket (logs in DIR/log), in the background; SLURM_MUNGED_PID is its PID (empty
# if it did not start; the caller stops it). Waits (bounded) for the socket: 0, or 1 with the log.
slurm_munge_start() {
  local dir="$1" sock="$1/munge/munge.socket"
  SLURM_MUNGED_PID=""
  mkdir -p "$dir/munge" "$dir/log" && chmod 700 "$dir/munge" || return 1
  # own key, own socket; --force because we are root and the dir may live in /tmp
  mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none || return 1
  chmod 400 "$dir/munge/munge.key"
  munged --foreground --force --socket="$sock" --key-file="$dir/munge/munge.key" \
         --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
         --seed-file="$dir/munge/munged.seed" >"$dir/log/munged.out" 2>&1 &
  SLURM_MUNGED_PID=$!
  local i
  for i in $(seq 1 100); do [ -S "$sock" ] && return 0; sleep 0.1; done
  echo "[slurm-test] error: munged did not create $sock; log:" >&2
  cat "$dir/log/munged.out" "$dir/log/munged.log" >&2 2>/dev/null
  return 1
}

slurm_cluster_require() {
  local missing=() c
  for c in munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if [ ${#missing[@]} -ne 0 ]; then
    echo "[slurm-test] error: missing commands: ${missing[*]}. Install the Debian packages" \
         "slurmd slurmctld slurm-client munge (launch/setup.sh does: bash launch/setup.sh)." >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "[slurm-test] error: the test cluster runs slurmd, which must be root; run as root." >&2
    return 1
  fi
}

slurm_cluster_start() {
  local dir="$1"
  slurm_cluster_require || return 1
  mkdir -p "$dir"/{state,spool,log,run} || return 1

  slurm_munge_start "$dir"; local rc=$?
  [ -n "$SLURM_MUNGED_PID" ] && SLURM_CLUSTER_PIDS+=("$SLURM_MUNGED_PID")
  [ $rc -eq 0 ] || return 1
  local sock="$dir/munge/munge.socket" i

  local host ctld_port slurmd_port cpus mem mpi_default
  host="$(hostname -s)"
  ctld_port="$(slurm_free_port)" || return 1
  slurmd_port="$(slurm_free_port)" || return 1
  [ "$slurmd_port" = "$ctld_port" ] && slurmd_port=$(( ctld_port + 1 ))
  # The node's hardware as slurmd sees it (CPUs, sockets, cores, threads), so slurmd does not
  # complain that the configuration disagrees with the machine; plain CPUs=nproc otherwise.
  cpus="$(slurmd -C 2>/dev/null | head -1 | grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' | tr '\n' ' ')"
  [ -n "$cpus" ] || cpus="CPUs=$(nproc)"
  # Configure less memory than the node has so slurmd never drains the node for it.
  mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) / 2 ))
  mpi_default=none
  [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] && mpi_default=pmix

  cat >"$dir/slurm.conf" <<EOF
# Generated by tests/slurm/cluster.sh for one test run; everything lives in $dir.
ClusterName=stratatest
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${dir}/run/slurmctld.pid
SlurmdPidFile=${dir}/run/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
$(slurm_conf_policy "$mpi_default" "$sock")
NodeName=${host} NodeAddr=127.0.0.1 ${cpus}RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  # The pmix plugin's per-step client directories: under DIR too (mpi.conf sits beside
  # slurm.conf), so two clusters never share /tmp/spmix_appdir_*.
  mkdir -p "$dir/pmix"
  echo "PMIxCliTmpDirBase=$dir/pmix" >"$dir/mpi.conf"
  export SLURM_CONF="$dir/slurm.conf"

  slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
  SLURM_CLUSTER_PIDS+=($!)
  slurmd -D -f "$SLURM_CONF" -N "$host" >"$dir/log/slurmd.out" 2>&1 &
  SLURM_CLUSTER_PIDS+=($!)

  local timeout_s="${STRATA_SLURM_START_TIMEOUT_S:-60}" state=""
  for i in $(seq 1 $(( timeout_s * 2 ))); do
    state="$(sinfo -h -n "$host" -o %t 2>/dev/null | head -1)"
    case "$state" in idle|idle~|mix) break ;; esac
    sleep 0.5
  done
  case "$state" in
    idle|idle~|mix) slurm_log "cluster up: node $host $state, ports $ctld_port/$slurmd_port, pmix=$mpi_default" ;;
    *)
      echo "[slurm-test] error: node $host not idle after ${timeout_s}s (state '${state}'); logs:" >&2
      tail -n 30 "$dir"/log/*.log "$dir"/log/*.out >&2 2>/dev/null
      return 1 ;;
  esac
}

slurm_cluster_stop() {
  local pid i alive
  # Jobs first (bounded): a job still running would keep its strata processes alive.
  if [ ${#SLURM_CLUSTER_PIDS[@]} -gt 0 ] && [ -n "${SLURM_CONF:-}" ]; then
    scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 20); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  # Reverse order: slurmd, slurmctld, munged.
  for (( i=${#SLURM_CLUSTER_PIDS[@]}-1; i>=0; i-- )); do
    pid="${SLURM_CLUSTER_PIDS[$i]}"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for i in $(seq 1 50); do
    alive=0
    for pid in "${SLURM_CLUSTER_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.2
  done
  for pid in "${SLURM_CLUSTER_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
  SLURM_CLUSTER_PIDS=()
}

# slurm_wait_job ID SECS: poll until the job is no longer pending/running; echo its state.
slurm_wait_job() {
  local id="$1" secs="$2" i state
  for i in $(seq 1 $(( secs * 2 ))); do
    state="$(scontrol show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1)"
    case "$state" in
      PENDING|RUNNING|CONFIGURING|COMPLETING|"") sleep 0.5 ;;
      *) echo "$state"; return 0 ;;
    esac
  done
  echo "TIMEOUT"
  scancel "$id" 2>/dev/null || true
  return 1
}
