# The simulated accelerator inside training runs: memory fit refusal, the in-run
# simulated clock against `strata simulate`, memory accounting against the real allocations, the
# calibrated cpu default. Under mpirun (oversubscribed), label "mpi".
string(JOIN " " SIMINT_MPIRUN_LINE ${STRATA_MPIRUN})
foreach(case fit agree mem cpu)
  add_test(NAME simint_${case} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/simint/simint_cli.sh
           $<TARGET_FILE:strata> ${case})
  set_tests_properties(simint_${case} PROPERTIES LABELS "mpi" TIMEOUT 300
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;SIMINT_MPIRUN=${SIMINT_MPIRUN_LINE}")
endforeach()
