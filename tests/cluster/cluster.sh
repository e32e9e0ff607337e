#!/usr/bin/env bash
# cluster.sh -- a multi-node Slurm cluster on one machine, built from Linux network namespaces,
# for the multi-node tests. Sourced (functions below) or run:
#
#   tests/cluster/cluster.sh up DIR N     N nodes n1..nN; prints the environment to use it
#   tests/cluster/cluster.sh down DIR     tears down what `up DIR` created
#
# ns_cluster_up DIR N   Creates, and records in DIR/created (so that a later ns_cluster_down
#                       finds it even after a failed test):
#   - a bridge `stb<id>` with address 10.A.B.1/24 (random A, B: a subnet no interface uses) and
#     no route anywhere else: nothing it carries leaves the machine;
#   - per node K: a network namespace `st<id>nK` (loopback up), a veth pair whose host end
#     `st<id>vK` joins the bridge and whose node end is `eth0` at 10.A.B.(10+K)/24;
#   - munged (own key and socket) and slurmctld on the host, listening on the bridge address;
#   - per node one `slurmd -N nK`, in its namespace with its own hostname (UTS), /tmp (bind
#     mount of DIR/nodes/nK/tmp) and /dev/shm (tmpfs), so Open MPI and libfabric see separate
#     hosts: TCP over the veths between nodes, shared memory within a node.
#   DIR must not lie under /tmp (each node's /tmp is its own). Exports SLURM_CONF and
#   NS_CLUSTER_{SUBNET,BRIDGE,NODES,NETNS,VETH} (arrays indexed 0..N-1 for nodes 1..N).
# ns_cluster_shape RATE [LATENCY]  shapes both directions of every node's link with tc tbf
#                       (RATE as tc takes it, e.g. 1gbit; the kernel here has no netem, so no
#                       added delay: the bucket's latency bound only).
# ns_cluster_link NODE up|down  cuts or restores node NODE's (1-based) link.
# ns_cluster_exec NODE CMD...   runs CMD inside node NODE's network namespace.
# ns_cluster_down DIR   cancels the jobs, stops the daemons it started (by PID, TERM then KILL),
#                       deletes the namespaces, veths and bridge named in DIR/created. Safe to
#                       call twice and after a partial `up`.
# Needs root, iproute2, nsenter/unshare (util-linux), and Debian's slurmd slurmctld
# slurm-client munge (launch/setup.sh installs them).

# shellcheck source=../slurm/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/../slurm/cluster.sh"

ns_log() { echo "[ns-cluster] $*" >&2; }
ns_record() { echo "$*" >>"$NS_CLUSTER_DIR/created"; }

ns_cluster_require() {
  local c missing=()
  for c in ip tc nft nsenter unshare munged slurmctld slurmd srun sinfo; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if [ ${#missing[@]} -ne 0 ]; then
    ns_log "error: missing commands: ${missing[*]} (bash launch/setup.sh installs iproute2, util-linux and Slurm)"
    return 1
  fi
  [ "$(id -u)" -eq 0 ] || { ns_log "error: network namespaces and slurmd need root"; return 1; }
  return 0
}

# A /24 in 10.0.0.0/8 that no interface of this machine has an address in.
ns_free_subnet() {
  local i a b
  for i in $(seq 1 50); do
    a=$(( 100 + RANDOM % 150 )) b=$(( RANDOM % 250 ))
    ip -4 addr show | grep -q "inet 10\.$a\.$b\." || { echo "10.$a.$b"; return 0; }
  done
  return 1
}

ns_cluster_up() {
  local dir="$1" n="$2" k id subnet host pids_before
  ns_cluster_require || return 1
  case "$dir" in /tmp/*) ns_log "error: DIR $dir is under /tmp, which every node replaces by its own"; return 1 ;; esac
  [[ "$n" =~ ^[1-9][0-9]?$ ]] || { ns_log "error: N='$n' is not a node count in [1, 99]"; return 1; }
  mkdir -p "$dir"/{state,log,run,nodes} || return 1
  dir="$(cd "$dir" && pwd)"
  NS_CLUSTER_DIR="$dir"
  : >"$dir/created"
  id=$(printf '%04x' $(( RANDOM % 65536 )))
  subnet="$(ns_free_subnet)" || { ns_log "error: no free 10.x.y.0/24 subnet"; return 1; }
  NS_CLUSTER_SUBNET="$subnet" NS_CLUSTER_BRIDGE="stb$id"
  NS_CLUSTER_NODES=() NS_CLUSTER_NETNS=() NS_CLUSTER_VETH=() NS_CLUSTER_ADDR=()
  echo "subnet $subnet" >>"$dir/created"

  ip link add "stb$id" type bridge || return 1
  ns_record "bridge stb$id"
  ip addr add "$subnet.1/24" dev "stb$id" && ip link set "stb$id" up || return 1
  for k in $(seq 1 "$n"); do
    local ns="st${id}n$k" veth="st${id}v$k" peer="st${id}p$k" addr="$subnet.$(( 10 + k ))"
    ip netns add "$ns" || return 1
    ns_record "netns $ns"
    ip link add "$veth" type veth peer name "$peer" || return 1
    ns_record "veth $veth"
    ip link set "$peer" netns "$ns" && ip link set "$veth" master "stb$id" && ip link set "$veth" up || return 1
    ip -n "$ns" link set lo up && ip -n "$ns" link set "$peer" name eth0 &&
      ip -n "$ns" addr add "$addr/24" dev eth0 && ip -n "$ns" link set eth0 up || return 1
    mkdir -p "$dir/nodes/n$k/tmp"
    NS_CLUSTER_NODES+=("n$k") NS_CLUSTER_NETNS+=("$ns") NS_CLUSTER_VETH+=("$veth") NS_CLUSTER_ADDR+=("$addr")
  done

  # munge (slurm/cluster.sh's) and slurmctld on the host, then our own slurm.conf
  slurm_munge_start "$dir"; local rc=$?
  [ -n "$SLURM_MUNGED_PID" ] && ns_record "pid $SLURM_MUNGED_PID"
  [ $rc -eq 0 ] || return 1
  local sock="$dir/munge/munge.socket"

  host="$(hostname -s)"
  local ctld_port slurmd_port cpus mem nodes_line="" names
  ctld_port="$(slurm_free_port)" && slurmd_port="$(slurm_free_port)" || return 1
  [ "$slurmd_port" = "$ctld_port" ] && slurmd_port=$(( ctld_port + 1 ))
  cpus="$(slurmd -C 2>/dev/null | head -1 | grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' | tr '\n' ' ')"
  [ -n "$cpus" ] || cpus="CPUs=$(nproc)"
  mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) / (2 * n) ))
  for k in $(seq 1 "$n"); do
    nodes_line+="NodeName=n$k NodeAddr=${NS_CLUSTER_ADDR[$((k - 1))]} ${cpus}RealMemory=$mem State=UNKNOWN"$'\n'
  done
  names="n[1-$n]"; [ "$n" -eq 1 ] && names=n1
  cat >"$dir/slurm.conf" <<EOF
# Generated by tests/cluster/cluster.sh: $n nodes in network namespaces; everything lives in $dir.
ClusterName=stratans
SlurmctldHost=${host}(${subnet}.1)
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/nodes/%n/spool
SlurmctldPidFile=${dir}/run/slurmctld.pid
SlurmdPidFile=${dir}/run/slurmd-%n.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd-%n.log
$(slurm_conf_policy pmix "$sock")
${nodes_line}PartitionName=debug Nodes=${names} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  # no PMIxCliTmpDirBase: the pmix plugin's per-step directories go to each node's own /tmp
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
  ns_record "pid $!"
  for k in $(seq 1 "$n"); do
    mkdir -p "$dir/nodes/n$k/spool"
    nsenter --net="/var/run/netns/${NS_CLUSTER_NETNS[$((k - 1))]}" unshare --mount --uts --propagation private \
      sh -c "hostname n$k && mount --bind '$dir/nodes/n$k/tmp' /tmp && mount -t tmpfs tmpfs /dev/shm &&
             exec slurmd -D -f '$SLURM_CONF' -N n$k" >"$dir/log/slurmd-n$k.out" 2>&1 &
    ns_record "pid $!"
  done
  local state="" timeout_s="${STRATA_SLURM_START_TIMEOUT_S:-60}" idle
  for _ in $(seq 1 $(( timeout_s * 2 ))); do
    idle=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 ~ /^(idle|mix)/' | wc -l)
    [ "$idle" -eq "$n" ] && break
    sleep 0.5
  done
  if [ "${idle:-0}" -ne "$n" ]; then
    ns_log "error: $idle of $n nodes idle after ${timeout_s}s: $(sinfo -h -N -o '%N %t' 2>&1 | paste -sd' ' -)"
    tail -n 20 "$dir"/log/*.log "$dir"/log/*.out >&2 2>/dev/null
    return 1
  fi
  ns_log "up: $n nodes on $subnet.0/24 (bridge stb$id), slurmctld $subnet.1:$ctld_port"
}

ns_cluster_shape() {
  local rate="$1" lat="${2:-50ms}" k
  for k in "${!NS_CLUSTER_VETH[@]}"; do
    tc qdisc replace dev "${NS_CLUSTER_VETH[$k]}" root tbf rate "$rate" burst 256kb latency "$lat" || return 1
    ip netns exec "${NS_CLUSTER_NETNS[$k]}" tc qdisc replace dev eth0 root tbf rate "$rate" burst 256kb latency "$lat" || return 1
  done
}

ns_cluster_link() {
  ip link set "${NS_CLUSTER_VETH[$(( $1 - 1 ))]}" "$2"
}

# ns_cluster_loss K PERCENT: node K drops PERCENT % of the packets it sends, at random (an
# nftables rule in its own namespace: `numgen random mod 100 < PERCENT drop`; this kernel has
# no netem), counted (nft list table inet strata_loss); 0 removes the rule. Goes away with the
# namespace.
ns_cluster_loss() {
  local k="$1" p="$2"
  ns_cluster_exec "$k" nft delete table inet strata_loss 2>/dev/null || true
  [ "$p" -gt 0 ] || return 0
  ns_cluster_exec "$k" nft -f - <<EOF
table inet strata_loss {
  chain out {
    type filter hook output priority 0; policy accept;
    numgen random mod 100 < $p counter drop
  }
}
EOF
}

ns_cluster_exec() {
  local k="$1"; shift
  nsenter --net="/var/run/netns/${NS_CLUSTER_NETNS[$(( k - 1 ))]}" "$@"
}

ns_cluster_down() {
  local dir="${1:-${NS_CLUSTER_DIR:-}}" kind name pids=() p
  [ -n "$dir" ] && [ -f "$dir/created" ] || return 0
  if [ -f "$dir/slurm.conf" ]; then
    SLURM_CONF="$dir/slurm.conf" scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 20); do [ -z "$(SLURM_CONF="$dir/slurm.conf" squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  while read -r kind name; do [ "$kind" = pid ] && pids=("$name" "${pids[@]}"); done <"$dir/created"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.2
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  # the jobs' processes that outlived their slurmd (inside the namespaces): by namespace
  while read -r kind name; do
    if [ "$kind" = netns ]; then
      for p in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    fi
  done <"$dir/created"
  while read -r kind name; do
    case "$kind" in
      netns) ip netns delete "$name" 2>/dev/null || true ;;
      veth) ip link delete "$name" 2>/dev/null || true ;;
      bridge) ip link delete "$name" 2>/dev/null || true ;;
    esac
  done <"$dir/created"
  mv "$dir/created" "$dir/removed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    up)
      [ $# -eq 3 ] || { echo "usage: $0 up DIR N | down DIR" >&2; exit 2; }
      ns_cluster_up "$2" "$3" || { ns_cluster_down "$2"; exit 1; }
      echo "export SLURM_CONF=$SLURM_CONF"
      # the daemons run in the background of this shell: keep it until they stop
      echo "[ns-cluster] running; stop with: $0 down $2" >&2
      wait ;;
    down) [ $# -eq 2 ] || { echo "usage: $0 up DIR N | down DIR" >&2; exit 2; }; ns_cluster_down "$2" ;;
    *) echo "usage: $0 up DIR N | down DIR" >&2; exit 2 ;;
  esac
fi

# ns_cluster_test_start NAME: what every cluster test starts with: exit 77 (skip) without root or
# Slurm, no SLURM_* from the caller, a work directory $dir under /var/tmp (shared by the nodes,
# whose /tmp is their own), and a trap that tears the cluster ($dir/c) down and removes $dir
# however the test ends. Defines fail MESSAGE (prints "[NAME] FAIL: MESSAGE", exit 1).
ns_cluster_test_start() {
  NS_CLUSTER_TEST_NAME="$1"
  fail() { echo "[$NS_CLUSTER_TEST_NAME] FAIL: $*" >&2; exit 1; }
  ns_cluster_require || exit 77
  for v in $(compgen -e | grep '^SLURM_'); do unset "$v"; done
  dir="$(mktemp -d "/var/tmp/strata-$1.XXXXXX")" || fail "mktemp failed"
  ns_cluster_test_cleanup() {
    local rc=$?
    ns_cluster_down "$dir/c"
    rm -rf "$dir"
    exit $rc
  }
  trap ns_cluster_test_cleanup EXIT
  trap 'exit 130' INT TERM
}
