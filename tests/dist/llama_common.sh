# llama_common.sh -- sourced by tests/dist/llama_{pp,tp,dp}.sh: the arguments every case takes,
# a scratch directory, and the checks they share on steps.jsonl / val.jsonl / report.json.
# The sourcing script has set STRATA and CASE from its arguments.
set -euo pipefail
read -r -a MPIRUN <<< "${DIST_MPIRUN:?DIST_MPIRUN must hold the mpirun command line}"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
losses() { sed -E 's/.*"loss": ([^,]*),.*/\1/' "$1"; }
vals() { sed -nE 's/.*"val_loss": ([0-9.e-]+).*/\1/p' "$1"; }
close() { # close A B TOL: |A - B| <= TOL * |B| for every line pair
  paste "$1" "$2" | awk -v tol="$3" '{ d = $1 - $2; if (d < 0) d = -d; b = $2 < 0 ? -$2 : $2;
    if (!(d <= tol * b)) { print "line " NR ": " $1 " vs " $2; bad = 1 } } END { exit bad || NR == 0 }'
}
