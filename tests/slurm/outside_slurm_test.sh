#!/usr/bin/env bash
# outside_slurm_test.sh -- each Slurm batch script, run directly (no SLURM_JOB_ID), must stop
# at once with exit code 2 and tell how to submit it, without starting anything.
# Usage: outside_slurm_test.sh SCRIPT...   (STRATA_SOURCE_DIR names the repository)
set -uo pipefail
src="${STRATA_SOURCE_DIR:?STRATA_SOURCE_DIR must name the repository}"
[ $# -ge 1 ] || { echo "usage: $0 train|bench|serve ..." >&2; exit 2; }
status=0
for name in "$@"; do
  script="$src/launch/slurm/$name.sbatch"
  [ -f "$script" ] || { echo "FAIL: $script missing"; status=1; continue; }
  out="$(env -u SLURM_JOB_ID -u SLURM_JOBID STRATA_RUN_ROOT=/nonexistent/strata-must-not-create \
         timeout 20 bash "$script" 2>&1)"
  rc=$?
  echo "--- $name.sbatch (exit $rc) ---"; echo "$out"
  if [ $rc -ne 2 ]; then echo "FAIL: $name.sbatch exited $rc outside Slurm, expected 2"; status=1; fi
  if ! grep -q "^\[$name\] error: not running under Slurm" <<<"$out"; then
    echo "FAIL: $name.sbatch did not say it is not running under Slurm"; status=1
  fi
  if ! grep -q "sbatch launch/slurm/$name.sbatch" <<<"$out"; then
    echo "FAIL: $name.sbatch did not show how to submit it"; status=1
  fi
  # The #SBATCH header: the defaults a submission relies on.
  for key in job-name=strata-$name nodes= ntasks-per-node= time= "output=strata-$name-%j.out"; do
    grep -q "^#SBATCH --$key" "$script" || { echo "FAIL: $name.sbatch has no '#SBATCH --$key'"; status=1; }
  done
  grep -q 'srun --mpi=' "$src/launch/slurm/common.sh" || { echo "FAIL: common.sh does not use srun --mpi"; status=1; }
done
[ $status -eq 0 ] && echo "PASS"
exit $status
