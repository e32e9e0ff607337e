# shellcheck shell=bash
# common.sh -- shared part of the Strata Slurm batch scripts (train.sbatch, bench.sbatch,
# serve.sbatch), sourced by them after their "are we under Slurm?" check.
#
# It finds the strata binary, makes the run directory runs/<name>-$SLURM_JOB_ID, chooses the
# srun MPI plugin, sets the transport/provider environment, and offers strata_srun, which
# launches one strata rank per Slurm task. Variables read (all optional):
#   STRATA_ROOT      repository root (default: two levels above the submitted script, found
#                    with `scontrol show job`, else $SLURM_SUBMIT_DIR)
#   STRATA_BIN       strata binary (default $STRATA_ROOT/build/bin/strata, else `strata` on PATH)
#   STRATA_RUN_ROOT  parent of the run directories (default $SLURM_SUBMIT_DIR/runs); must be
#                    on a file system every node sees (rank 0 writes, the others may read)
#   STRATA_SRUN_MPI  srun --mpi plugin (default pmix; pmi2 when this Slurm lacks pmix)
#   STRATA_TRANSPORT mpi|ofi collective transport (default mpi) -> STRATA_COLL_TRANSPORT
#   FI_PROVIDER      libfabric provider for the ofi transport (default: shm on one node, tcp
#                    on several; efa on AWS, see below)
#   STRATA_SRUN_ARGS extra srun flags (e.g. "--cpu-bind=cores")
#   STRATA_TP        train.sbatch: tensor-parallel ranks per stage (passed as --tp). A TP group
#                    is STRATA_TP consecutive ranks and all-reduces inside every layer: keep the
#                    default block distribution (consecutive tasks on one node) and
#                    --ntasks-per-node a multiple of STRATA_TP, so no group spans two nodes
#
# AWS EFA (p4d/p5/hpc7g...): submit with STRATA_TRANSPORT=ofi FI_PROVIDER=efa and, on
# instances with GPUDirect/RDMA-capable EFA, FI_EFA_USE_DEVICE_RDMA=1; FI_EFA_FORK_SAFE=1 when
# the job forks; FI_EFA_ENABLE_SHM_TRANSFER=1 (default) keeps same-node peers on shared memory.
# Open MPI from the EFA installer needs OMPI_MCA_pml=cm OMPI_MCA_mtl=ofi for its own traffic.
# `fi_info -p efa` on a compute node must list the device.

strata_die() { echo "[$STRATA_JOB_KIND] error: $*" >&2; exit 2; }
strata_note() { echo "[$STRATA_JOB_KIND] $*"; }

# Repository root (the script that sourced us set STRATA_SLURM_DIR = launch/slurm) and binary.
STRATA_ROOT="${STRATA_ROOT:-$(cd "$STRATA_SLURM_DIR/../.." && pwd)}"
if [ -z "${STRATA_BIN:-}" ]; then
  if [ -x "$STRATA_ROOT/build/bin/strata" ]; then
    STRATA_BIN="$STRATA_ROOT/build/bin/strata"
  elif command -v strata >/dev/null 2>&1; then
    STRATA_BIN="$(command -v strata)"
  else
    strata_die "cannot find the strata binary (looked at $STRATA_ROOT/build/bin/strata and PATH);" \
               "build it (bash launch/setup.sh) or submit with STRATA_BIN=/path/to/strata"
  fi
fi
[ -x "$STRATA_BIN" ] || strata_die "STRATA_BIN='$STRATA_BIN' is not an executable file"

# One run directory per job.
STRATA_RUN_ROOT="${STRATA_RUN_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}/runs}"
STRATA_RUN_DIR="$STRATA_RUN_ROOT/${STRATA_JOB_KIND}-${SLURM_JOB_ID}"
mkdir -p "$STRATA_RUN_DIR" || strata_die "cannot create run directory $STRATA_RUN_DIR"
export STRATA_RUN_DIR

# Tasks and nodes of this allocation.
STRATA_NTASKS="${SLURM_NTASKS:-1}"
STRATA_NNODES="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"

# srun's MPI plugin: PMIx (Open MPI >= 4 speaks it; Debian's slurm-wlm ships mpi_pmix).
if [ -z "${STRATA_SRUN_MPI:-}" ]; then
  if srun --mpi=list 2>&1 | grep -qw pmix; then
    STRATA_SRUN_MPI=pmix
  else
    STRATA_SRUN_MPI=pmi2
    strata_note "warning: this Slurm has no pmix plugin (srun --mpi=list); using --mpi=pmi2"
  fi
fi

# Transport and provider.
# shellcheck disable=SC2034  # read by train.sbatch: the user chose a transport, pass --transport
STRATA_TRANSPORT_SET="${STRATA_TRANSPORT:+1}"
STRATA_TRANSPORT="${STRATA_TRANSPORT:-mpi}"
case "$STRATA_TRANSPORT" in
  mpi|ofi) ;;
  *) strata_die "STRATA_TRANSPORT='$STRATA_TRANSPORT' is not one of: mpi, ofi" ;;
esac
export STRATA_COLL_TRANSPORT="$STRATA_TRANSPORT"
if [ "$STRATA_TRANSPORT" = ofi ] && [ -z "${FI_PROVIDER:-}" ]; then
  if [ "$STRATA_NNODES" -gt 1 ]; then export FI_PROVIDER=tcp; else export FI_PROVIDER=shm; fi
fi

# strata_rank_failures (launch/rank_failures.sh): which rank failed, at which step, in which operation.
# shellcheck source=launch/rank_failures.sh
source "$STRATA_ROOT/launch/rank_failures.sh"
# strata_restart_next (launch/restart.sh): whether and how STRATA_MAX_RESTARTS relaunches.
# shellcheck source=launch/restart.sh
source "$STRATA_ROOT/launch/restart.sh"

# strata_srun ARGS... -- one strata rank per task; a failing rank ends the step.
# Since Slurm 22.05 srun no longer inherits --cpus-per-task from the batch allocation: pass it.
# srun's and the ranks' stderr is also kept in RUN_DIR/srun.err; when a `train` step fails,
# strata_rank_failures prints which rank failed, at which step and in which operation (also
# kept in STRATA_LAST_FAILURES for the restart decision).
# STRATA_SRUN_PLACE (an array, empty by default: the whole allocation) adds placement flags,
# e.g. (-N 2 -n 4 -w n1,n3) when a restart continues without a lost node.
STRATA_LAST_FAILURES=""
STRATA_SRUN_PLACE=()
strata_srun() {
  STRATA_LAST_FAILURES=""
  local cpt=() rc marker="$STRATA_RUN_DIR/.srun-start" out
  [ -n "${SLURM_CPUS_PER_TASK:-}" ] && cpt=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
  : >"$marker"
  # shellcheck disable=SC2086
  { srun --mpi="$STRATA_SRUN_MPI" --kill-on-bad-exit=1 "${cpt[@]}" "${STRATA_SRUN_PLACE[@]}" ${STRATA_SRUN_ARGS:-} "$STRATA_BIN" "$@" \
      2>&1 1>&3 3>&- | tee "$STRATA_RUN_DIR/srun.err" >&2; rc=${PIPESTATUS[0]}; } 3>&1
  if [ "$rc" -ne 0 ] && [ "${1:-}" = train ]; then
    out="$(strata_train_out "$STRATA_RUN_DIR" "$@")"
    STRATA_LAST_FAILURES=$(strata_rank_failures "$out" "$rc" "$STRATA_RUN_DIR/srun.err" "$marker" 2>&1)
    [ -z "$STRATA_LAST_FAILURES" ] || echo "$STRATA_LAST_FAILURES"
  fi
  rm -f "$marker"
  return "$rc"
}

strata_note "job $SLURM_JOB_ID: $STRATA_NNODES node(s) [${SLURM_JOB_NODELIST:-?}], $STRATA_NTASKS task(s)," \
            "srun --mpi=$STRATA_SRUN_MPI, transport $STRATA_TRANSPORT${FI_PROVIDER:+ (FI_PROVIDER=$FI_PROVIDER)}" \
            "${STRATA_TP:+STRATA_TP=$STRATA_TP}"
strata_note "binary $STRATA_BIN"
strata_note "run dir $STRATA_RUN_DIR"
