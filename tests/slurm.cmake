# Slurm batch scripts (launch/slurm/): refused outside Slurm, and run for real on a throw-away
# single-node Slurm cluster (munged + slurmctld + slurmd in a temp dir, own key and ports;
# tests/slurm/cluster.sh). Needs root and the Debian packages slurmd slurmctld slurm-client
# munge, which launch/setup.sh installs. Label "slurm": `ctest -L slurm` runs them alone.
# The cluster tests share one node's CPUs, so they hold the resource lock "slurm_cluster".

add_executable(slurm_mpi_hello ${CMAKE_CURRENT_SOURCE_DIR}/slurm/mpi_hello.c)
target_link_libraries(slurm_mpi_hello PRIVATE MPI::MPI_C)
set_target_properties(slurm_mpi_hello PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

add_test(NAME slurm_scripts_stop_outside_slurm
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/outside_slurm_test.sh train bench serve)
set_tests_properties(slurm_scripts_stop_outside_slurm PROPERTIES LABELS "slurm" TIMEOUT 120
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")

# TIMEOUT 540 s is a backstop above the script's own bounds (60 s for the node to come up,
# STRATA_SLURM_JOB_TIMEOUT_S = 120 s per job, at most three jobs), so the script's trap, not
# ctest's kill, always stops the daemons. Each case takes 4-13 s on the 2-core machine.
foreach(case pmix train bench bench_ofi bad_config)
  add_test(NAME slurm_job_${case}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/slurm_jobs_test.sh ${case})
  set_tests_properties(slurm_job_${case} PROPERTIES LABELS "slurm" TIMEOUT 540
                       SKIP_RETURN_CODE 77 RESOURCE_LOCK slurm_cluster
                       ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_BIN=$<TARGET_FILE:strata>;STRATA_MPI_HELLO=$<TARGET_FILE:slurm_mpi_hello>")
endforeach()
