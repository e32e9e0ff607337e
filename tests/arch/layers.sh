#!/usr/bin/env bash
# layers.sh -- every #include "..." in worker/ names a header of the file's own layer or of a
# layer below it that the layer may call (the table below, README.md "Architecture", and the
# target_link_libraries of worker/CMakeLists.txt), and no .c file sits directly in worker/.
# The build already fails on most wrong includes (a layer's include path holds only what it links);
# this also catches what transitive linking lets through (sim may not reach model through
# parallel, base may reach collectives only for the number parser).
# Usage: layers.sh SOURCE_DIR        exit 0 clean, 1 with one line per violation
set -u
src="${1:?usage: layers.sh SOURCE_DIR}"
declare -A allowed=(
  [base]="base"
  [model]="base model coll"
  [dataset]="base dataset"
  [tokenizer]="base tokenizer"
  [checkpoint]="base model checkpoint proto"
  [parallel]="base model parallel coll"
  [sim]="base parallel sim coll proto"
  [infer]="base model checkpoint parallel infer coll proto"
  [serve]="base infer tokenizer serve coll"
  [train]="base model dataset checkpoint parallel sim train coll proto"
  [cli]="base model dataset tokenizer checkpoint parallel sim infer serve train cli coll proto"
)
# which layer owns a header: the worker folders, the collectives' public headers, proto
declare -A owner
for d in "$src"/worker/*/; do
  layer="$(basename "$d")"
  for h in "$d"*.h; do [ -e "$h" ] && owner["$(basename "$h")"]="$layer"; done
done
owner["strata/coll.h"]=coll
owner["strata/strnum.h"]=base   # the number parser: part of base, compiled into the collectives
owner["strata_proto.h"]=proto
bad=0
loose="$(find "$src/worker" -maxdepth 1 -name '*.c' -o -maxdepth 1 -name '*.h' | head -5)"
if [ -n "$loose" ]; then echo "files directly in worker/ (put them in a layer's folder): $loose"; bad=1; fi
for d in "$src"/worker/*/; do
  layer="$(basename "$d")"
  [ -n "${allowed[$layer]+x}" ] || { echo "worker/$layer/ is not a layer of the table in $0"; bad=1; continue; }
  for f in "$d"*.c "$d"*.h; do
    [ -e "$f" ] || continue
    while IFS= read -r inc; do
      o="${owner[$inc]:-}"
      if [ -z "$o" ]; then
        echo "${f#$src/}: includes \"$inc\", which no layer owns"; bad=1; continue
      fi
      case " ${allowed[$layer]} " in
        *" $o "*) ;;
        *) echo "${f#$src/}: includes \"$inc\" of layer '$o'; $layer may use: ${allowed[$layer]}"; bad=1 ;;
      esac
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
  done
done
# the collectives library: algorithms and core never call MPI point to point or libfabric
if grep -nE '\bMPI_(I?send|I?recv|Isend|Irecv|Test|Wait)\b|\bfi_[a-z_]+\(' "$src"/collectives/core/*.c "$src"/collectives/algorithms/*.c \
     | grep -v 'MPI_Comm\|MPI_Allgather\|MPI_Allreduce\|MPI_Bcast\|MPI_Barrier' ; then
  echo "collectives/core or algorithms call a transport directly (only transports/ may)"; bad=1
fi
# the worker talks to other ranks only through the collectives: no MPI call outside cli/ but
# asking its own rank and the world's size
if grep -nE '\bMPI_[A-Z][a-z_]*\(' "$src"/worker/*/*.c | grep -v '^[^:]*/worker/cli/' |
     grep -vE 'MPI_Comm_(rank|size)\(MPI_COMM_WORLD'; then
  echo "the lines above call MPI outside worker/cli/ (use the collectives library)"; bad=1
fi
[ $bad -eq 0 ] && echo "layers: every include follows the layer table"
exit $bad
