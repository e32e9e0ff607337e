# Collectives library tests (prefix coll_). One binary, coll_test_ops, runs a MODE per test
# under mpirun; the transport comes from STRATA_COLL_TRANSPORT (default mpi), so the same binary
# is registered again over ofi (see tests/ofi*.cmake if present).
add_executable(coll_test_ops ${CMAKE_CURRENT_SOURCE_DIR}/coll/test_ops.c ${CMAKE_CURRENT_SOURCE_DIR}/test_util.c)
target_include_directories(coll_test_ops PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(coll_test_ops PRIVATE strata_coll m)
set_target_properties(coll_test_ops PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

strata_add_test(coll_units $<TARGET_FILE:coll_test_ops> units)
set_tests_properties(coll_units PROPERTIES LABELS "unit;mpi")
foreach(np 1 2 3 4 5 8)
  strata_add_mpi_test(coll_ops_np${np} ${np} $<TARGET_FILE:coll_test_ops> ops)
endforeach()
foreach(np 2 3 5)
  strata_add_mpi_test(coll_p2p_np${np} ${np} $<TARGET_FILE:coll_test_ops> p2p)
endforeach()
foreach(np 4 5)
  strata_add_mpi_test(coll_split_np${np} ${np} $<TARGET_FILE:coll_test_ops> split)
endforeach()
foreach(np 2 3)
  strata_add_mpi_test(coll_nonblocking_np${np} ${np} $<TARGET_FILE:coll_test_ops> nonblocking)
endforeach()
# The same non-blocking test with progress made by the background thread.
strata_add_mpi_test(coll_nonblocking_thread_np3 3 $<TARGET_FILE:coll_test_ops> nonblocking)
set_property(TEST coll_nonblocking_thread_np3 APPEND PROPERTY ENVIRONMENT "STRATA_COLL_PROGRESS_THREAD=1")
strata_add_mpi_test(coll_timeout_np3 3 $<TARGET_FILE:coll_test_ops> timeout)
foreach(np 2 3)
  strata_add_mpi_test(coll_idle_wait_np${np} ${np} $<TARGET_FILE:coll_test_ops> idle)
endforeach()
strata_add_mpi_test(coll_mismatch_np3 3 $<TARGET_FILE:coll_test_ops> mismatch)
# 16-bit values on the wire (coll_comm_set_wire16, what --grad-dtype bf16 uses)
foreach(np 2 3 4)
  strata_add_mpi_test(coll_wire16_np${np} ${np} $<TARGET_FILE:coll_test_ops> wire16)
endforeach()
# The decision table: round trip, auto following it with exact results, bad tables ignored.
foreach(np 2 3 4)
  strata_add_mpi_test(coll_tune_np${np} ${np} $<TARGET_FILE:coll_test_ops> tune)
endforeach()

# The scratch buffers' allocation (an internal function, so the library's private headers).
add_executable(coll_test_scratch_mem ${CMAKE_CURRENT_SOURCE_DIR}/coll/test_scratch_mem.c ${CMAKE_CURRENT_SOURCE_DIR}/test_util.c)
target_include_directories(coll_test_scratch_mem PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}
  ${PROJECT_SOURCE_DIR}/collectives/core ${PROJECT_SOURCE_DIR}/collectives/transports)
target_link_libraries(coll_test_scratch_mem PRIVATE strata_coll)
set_target_properties(coll_test_scratch_mem PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
strata_add_test(coll_scratch_mem $<TARGET_FILE:coll_test_scratch_mem>)

# Tuning tool (not a test): all-reduce timings of ring / rd / mpi / a blocking sendrecv ring.
add_executable(coll_bench_allreduce ${CMAKE_CURRENT_SOURCE_DIR}/coll/bench_allreduce.c)
target_link_libraries(coll_bench_allreduce PRIVATE strata_coll)
set_target_properties(coll_bench_allreduce PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
# A -R file it cannot write is named, with exit status 2 (the pattern matches only the exit-2
# path of expect_exit2.cmake; run as a singleton, without mpirun).
set(bench_raw_bad_args "-b 1K -e 1K -n 1 -w 0 -a ring -R /nonexistent-strata-dir/calls.csv")
add_test(NAME coll_bench_allreduce_bad_raw COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:coll_bench_allreduce>
         "-DARGS=${bench_raw_bad_args}" -P ${CMAKE_CURRENT_SOURCE_DIR}/bench/expect_exit2.cmake)
set_tests_properties(coll_bench_allreduce_bad_raw PROPERTIES LABELS "unit" TIMEOUT 60
  PASS_REGULAR_EXPRESSION "exit status 2: coll_bench_allreduce: cannot write /nonexistent-strata-dir/calls.csv \\(-R\\); give a writable path"
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
# An experiment beside the tuning tool, not a test: the direct shared-memory all-reduce that
# collectives/README.md ("A direct shared-memory all-reduce") measures against MPI_Allreduce.
add_executable(coll_direct_shm_probe ${CMAKE_CURRENT_SOURCE_DIR}/coll/direct_shm_probe.c)
target_link_libraries(coll_direct_shm_probe PRIVATE MPI::MPI_C)
set_target_properties(coll_direct_shm_probe PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
# Its own checks: exact results on /dev/shm at np 2 and 3 (exit 1 on any wrong element); a chunk
# below its minimum is bad usage (exit 2, usage line); a directory that does not exist fails
# naming the file it could not create (run as singletons, without mpirun).
foreach(np 2 3)
  strata_add_mpi_test(coll_direct_shm_probe_np${np} ${np} $<TARGET_FILE:coll_direct_shm_probe> /dev/shm)
endforeach()
add_test(NAME coll_direct_shm_probe_bad_chunk COMMAND $<TARGET_FILE:coll_direct_shm_probe> /dev/shm 1)
add_test(NAME coll_direct_shm_probe_bad_chunk_status COMMAND ${CMAKE_COMMAND}
         -DEXE=$<TARGET_FILE:coll_direct_shm_probe> "-DARGS=/dev/shm 1"
         -P ${CMAKE_CURRENT_SOURCE_DIR}/bench/expect_exit2.cmake)
add_test(NAME coll_direct_shm_probe_bad_dir COMMAND $<TARGET_FILE:coll_direct_shm_probe> /nonexistent-strata-dir)
set_tests_properties(coll_direct_shm_probe_bad_chunk PROPERTIES PASS_REGULAR_EXPRESSION "usage: mpirun -np N")
set_tests_properties(coll_direct_shm_probe_bad_dir PROPERTIES
  PASS_REGULAR_EXPRESSION "cannot map /nonexistent-strata-dir/strata_probe_[0-9]+_0_send: No such file or directory")
set_tests_properties(coll_direct_shm_probe_bad_chunk coll_direct_shm_probe_bad_chunk_status
                     coll_direct_shm_probe_bad_dir PROPERTIES LABELS "unit" TIMEOUT 60
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")

# The same operations with tiny chunks and a shallow pipeline: thousands of chunks per block,
# every chunk boundary case of the ring / chain bookkeeping.
strata_add_mpi_test(coll_ops_smallchunk_np3 3 $<TARGET_FILE:coll_test_ops> ops)
set_property(TEST coll_ops_smallchunk_np3 APPEND PROPERTY ENVIRONMENT
             "STRATA_COLL_CHUNK_BYTES=4K;STRATA_COLL_PIPELINE_DEPTH=1")
strata_add_mpi_test(coll_nonblocking_smallchunk_np4 4 $<TARGET_FILE:coll_test_ops> nonblocking)
set_property(TEST coll_nonblocking_smallchunk_np4 APPEND PROPERTY ENVIRONMENT
             "STRATA_COLL_CHUNK_BYTES=1K;STRATA_COLL_PIPELINE_DEPTH=3;STRATA_COLL_EAGER_BYTES=0")
