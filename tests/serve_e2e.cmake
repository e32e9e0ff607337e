# Issue 6: `strata serve` on a real checkpoint end to end under mpirun (np 1 and 2): greedy and
# streamed completions against `strata infer`, concurrent clients batched, sessions across a
# restart, bad requests, /metrics, /health, clean shutdown by PID.
strata_test_exe(test_serve_e2e ${CMAKE_CURRENT_SOURCE_DIR}/serve_e2e/test_serve_e2e.c
                ${CMAKE_CURRENT_SOURCE_DIR}/serve/http_client.c)
target_include_directories(test_serve_e2e PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/serve)
target_link_libraries(test_serve_e2e PRIVATE pthread)
foreach(np 1 2)
  strata_add_test(serve_e2e_np${np} test_serve_e2e ${np} ${CMAKE_BINARY_DIR}/serve_e2e_np${np}
                  $<TARGET_FILE:strata> ${STRATA_MPIRUN})
  set_tests_properties(serve_e2e_np${np} PROPERTIES TIMEOUT 300
                       ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()

# launch/slurm/serve.sbatch on the throw-away Slurm cluster (tests/slurm/cluster.sh): start,
# /health, one completion, scancel. Label "slurm", shares the cluster lock with tests/slurm.cmake.
add_test(NAME serve_e2e_slurm COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/slurm_jobs_test.sh serve)
set_tests_properties(serve_e2e_slurm PROPERTIES LABELS "slurm" TIMEOUT 540 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK slurm_cluster
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_BIN=$<TARGET_FILE:strata>")
