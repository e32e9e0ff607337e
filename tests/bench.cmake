# `strata bench` (worker/cli/cmd_bench.c; the measurement in worker/parallel/coll_bench.c), the
# nccl-tests clone. Each run is checked by tests/bench/check_bench.cmake: exit 0, "# Out of
# bounds values : 0 OK", and a JSON row per size and placement with #wrong 0 and consistent
# sizes / bandwidths.
#  bench_<op>_np<N>            : every op on 2 and 3 ranks, mpi transport, library algorithms
#  bench_<op>_mpi_np3          : the --algo mpi baseline of every op
#  bench_<op>_ofi_shm_np3      : every op over the ofi transport (shm provider)
#  bench_allreduce_<dtype>_<op>: data types and reductions (exact expected values)
#  bench_bad_*                 : bad flags exit 2 with a message naming the problem
#  bench_tune_np<N>            : --tune writes a decision table the next run follows
#  test_tune_pick              : the tuner's choice among candidates within noise of one another
#  bench_nccl_sample           : nccl-tests' printf formats reproduce real nccl-tests output
#  bench_nccl_format_*         : strata bench's header, device lines, table and footer match that
#                                output character by character (tests/bench/nccl_format_check.c)
set(STRATA_BENCH_ENV "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")

# strata_bench_test(NAME NP OP DSIZE MINB MAXB FACTOR EXTRA_ENV [CHECK_ARGS...] -- [BENCH_ARGS...])
function(strata_bench_test name np op dsize minb maxb factor extra_env)
  set(check_args "")
  set(bench_args "")
  set(in_bench 0)
  foreach(a ${ARGN})
    if(a STREQUAL "--")
      set(in_bench 1)
    elseif(in_bench)
      list(APPEND bench_args ${a})
    else()
      list(APPEND check_args ${a})
    endif()
  endforeach()
  set(json ${CMAKE_CURRENT_BINARY_DIR}/${name}.json)
  set(cmd ${STRATA_MPIRUN} -np ${np} $<TARGET_FILE:strata> bench ${op} -b ${minb} -e ${maxb}
      -f ${factor} -n 2 -w 1 -c 1 --json ${json} ${bench_args})
  string(REPLACE ";" " " cmd_string "${cmd}")
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} "-DCMD=${cmd_string}" -DJSON=${json} -DOP=${op}
           -DNP=${np} -DDSIZE=${dsize} -DMINB=${minb} -DMAXB=${maxb} -DFACTOR=${factor}
           ${check_args} -P ${CMAKE_CURRENT_SOURCE_DIR}/bench/check_bench.cmake)
  set_tests_properties(${name} PROPERTIES LABELS "mpi;bench" TIMEOUT 300
                       ENVIRONMENT "${STRATA_BENCH_ENV};${extra_env}")
endfunction()

set(STRATA_BENCH_OPS allreduce reducescatter allgather broadcast sendrecv)
foreach(op ${STRATA_BENCH_OPS})
  foreach(np 2 3)
    # 0 B (empty), tiny sizes below the rank count, up to 256 KiB.
    strata_bench_test(bench_${op}_np${np} ${np} ${op} 4 0 262144 8 "" -DTRANSPORT=^mpi$ -- --transport mpi -r 1)
  endforeach()
  strata_bench_test(bench_${op}_mpi_np3 3 ${op} 4 4 65536 16 "" -DALGO=mpi -- --algo mpi --transport mpi -r 2)
  strata_bench_test(bench_${op}_ofi_shm_np3 3 ${op} 4 4 262144 16 "FI_PROVIDER=shm"
                    -DTRANSPORT=^ofi:shm$ -- --transport ofi)
endforeach()
strata_bench_test(bench_allreduce_ring_np3 3 allreduce 4 1000 300000 7 "" -DALGO=ring -- --algo ring)
strata_bench_test(bench_allreduce_rd_np3 3 allreduce 4 1000 300000 7 "" -DALGO=rd -- --algo rd)
strata_bench_test(bench_allreduce_rabenseifner_np4 4 allreduce 4 1000 4000000 10 ""
                  -DALGO=rabenseifner -- --algo rabenseifner)
# What auto runs per size with the default thresholds (rd below 256 KiB; Rabenseifner below
# 16 MiB on 4 ranks; ring on 3; streaming stores ("/nt") from 8 MiB out of place), as the JSON's
# algo_used reports it.
strata_bench_test(bench_allreduce_auto_np4 4 allreduce 4 65536 16777216 4 ""
                  -DALGO=auto "-DAUTO_EXPECT=65536:rd,262144:rabenseifner,4194304:rabenseifner,16777216:ring"
                  "-DAUTO_LINE=rd from 0 B, rabenseifner from 262144 B, rabenseifner/nt from 8388608 B, ring/nt from 16777216 B"
                  -- --algo auto)
strata_bench_test(bench_allreduce_auto_np3 3 allreduce 4 65536 1048576 4 ""
                  -DALGO=auto "-DAUTO_EXPECT=65536:rd,262144:ring,1048576:ring" -- --algo auto)
# A threshold that is not a power of two is reported to the byte.
strata_bench_test(bench_allreduce_auto_threshold_np3 3 allreduce 4 1024 4096 4
                  "STRATA_COLL_RD_THRESHOLD=300K" "-DAUTO_LINE=rd from 0 B, ring from 307200 B, ring/nt from 8388608 B"
                  -- --algo auto)

# The tuner's choice between candidates within noise of one another (coll_tune_pick).
strata_test_exe(test_tune_pick bench/test_tune_pick.c)
strata_add_test(test_tune_pick $<TARGET_FILE:test_tune_pick>)

# --tune writes the decision table, the next run follows it, a malformed one is ignored with a
# one-sentence warning (tests/bench/check_tune.cmake); the table lives in the build tree.
string(REPLACE ";" " " mpirun_string "${STRATA_MPIRUN}")
foreach(np 2 3)
  set(table ${CMAKE_CURRENT_BINARY_DIR}/bench_tune_np${np}/coll_tune.json)
  add_test(NAME bench_tune_np${np} COMMAND ${CMAKE_COMMAND} "-DMPIRUN=${mpirun_string}"
           -DSTRATA=$<TARGET_FILE:strata> -DNP=${np} -DTABLE=${table}
           -DJSON=${CMAKE_CURRENT_BINARY_DIR}/bench_tune_np${np}.json
           -P ${CMAKE_CURRENT_SOURCE_DIR}/bench/check_tune.cmake)
  set_tests_properties(bench_tune_np${np} PROPERTIES LABELS "mpi;bench" TIMEOUT 300
                       ENVIRONMENT "${STRATA_BENCH_ENV};STRATA_COLL_TUNE_FILE=${table}")
endforeach()

# Data types and reductions: inputs are small integers, so every expected value is exact
# (avg: within 2 ulp of the dtype, see worker/parallel/coll_bench.c).
foreach(combo "double;prod;8" "half;avg;2" "bfloat16;sum;2" "int32;min;4" "int64;max;8" "float;avg;4" "int32;avg;4")
  list(GET combo 0 dt)
  list(GET combo 1 rop)
  list(GET combo 2 dsz)
  strata_bench_test(bench_allreduce_${dt}_${rop}_np3 3 allreduce ${dsz} 8 100000 10 "" -- -d ${dt} -o ${rop})
endforeach()
strata_bench_test(bench_reducescatter_bfloat16_avg_np3 3 reducescatter 2 6 60000 10 "" -- -d bf16 -o avg)

# Bad flags: exit status 2 and a message naming the problem (run without mpirun: singleton).
function(strata_bench_bad name regex)
  add_test(NAME ${name} COMMAND $<TARGET_FILE:strata> bench ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "unit;bench" TIMEOUT 60 PASS_REGULAR_EXPRESSION "${regex}"
                       ENVIRONMENT "${STRATA_BENCH_ENV}")
  # The same command must exit with status 2.
  string(REPLACE ";" " " args "${ARGN}")
  add_test(NAME ${name}_status COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:strata> "-DARGS=bench ${args}"
           -P ${CMAKE_CURRENT_SOURCE_DIR}/bench/expect_exit2.cmake)
  set_tests_properties(${name}_status PROPERTIES LABELS "unit;bench" TIMEOUT 60 ENVIRONMENT "${STRATA_BENCH_ENV}")
endfunction()
strata_bench_bad(bench_bad_min_gt_max "--minbytes .* is larger than --maxbytes" allreduce -b 2M -e 1M)
strata_bench_bad(bench_bad_factor "--stepfactor must be a number in \\(1, 1024\\], got '1'" allreduce -f 1)
strata_bench_bad(bench_bad_op "unknown operation 'alltoall'" alltoall)
strata_bench_bad(bench_bad_no_op "name one operation" -b 1K)
strata_bench_bad(bench_bad_redop "unknown --op 'mean'" allreduce -o mean)
strata_bench_bad(bench_bad_dtype "unknown --datatype 'float8'" allreduce -d float8)
strata_bench_bad(bench_bad_algo "unknown --algo 'tree'" allreduce --algo tree)
strata_bench_bad(bench_bad_transport "unknown --transport 'ib'" allreduce --transport ib)
strata_bench_bad(bench_bad_root "--root 5 is not a rank" broadcast -r 5)
strata_bench_bad(bench_bad_rd_op "--algo rd applies to allreduce only" allgather --algo rd)
strata_bench_bad(bench_bad_rabenseifner_op "--algo rabenseifner applies to allreduce only"
                 reducescatter --algo rabenseifner)
strata_bench_bad(bench_bad_bytes "minbytes" allreduce -b 12Q)
strata_bench_bad(bench_bad_iters "--iters must be an integer in \\[1, 1000000000\\], got '0'" allreduce -n 0)
strata_bench_bad(bench_bad_check "--check must be an integer in \\[0, 1\\], got '2'" allreduce -c 2)
strata_bench_bad(bench_bad_json "cannot write --json file" allreduce -b 1K -e 1K --json /nonexistent/dir/x.json)
add_test(NAME bench_help COMMAND $<TARGET_FILE:strata> bench --help)
set_tests_properties(bench_help PROPERTIES LABELS "unit;bench"
                     PASS_REGULAR_EXPRESSION "allreduce \\| reducescatter.*--minbytes.*--stepfactor.*--algo.*--json")

# nccl-tests' output format, to the character: the checker holds real nccl-tests output.
strata_test_exe(nccl_format_check bench/nccl_format_check.c)
strata_add_test(bench_nccl_sample $<TARGET_FILE:nccl_format_check> --sample)
function(strata_bench_format name np)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${name}.txt)
  set(cmd ${STRATA_MPIRUN} -np ${np} $<TARGET_FILE:strata> bench ${ARGN})
  string(REPLACE ";" " " cmd_string "${cmd}")
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} "-DCMD=${cmd_string}" -DOUT=${out}
           -DCHECKER=$<TARGET_FILE:nccl_format_check> -DNP=${np}
           -P ${CMAKE_CURRENT_SOURCE_DIR}/bench/check_format.cmake)
  set_tests_properties(${name} PROPERTIES LABELS "mpi;bench" TIMEOUT 300 ENVIRONMENT "${STRATA_BENCH_ENV}")
endfunction()
# auto (with its "# auto:" line) over sizes 8 B to 4 MiB, per-rank counts with -c 0 (N/A), one rank
strata_bench_format(bench_nccl_format_allreduce_np3 3 allreduce -b 8 -e 4M -f 32 -n 2 -w 1 --algo auto)
strata_bench_format(bench_nccl_format_allgather_np2 2 allgather -b 0 -e 64K -f 8 -n 2 -w 1 -c 0)
strata_bench_format(bench_nccl_format_broadcast_np1 1 broadcast -b 1K -e 1K -n 1 -w 0)
