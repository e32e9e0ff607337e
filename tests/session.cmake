# Session area (worker/infer/session.c and the session paths of worker/infer/infer.c): unit test of IDs and
# session files, and end-to-end tests under mpirun (tests/session/session_cli_test.sh), which use
# the checkpoint trained by infer_setup_checkpoint (tests/infer.cmake).
set(SESSION_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/session)
strata_test_exe(test_session_file ${SESSION_TEST_DIR}/test_session_file.c)
strata_add_test(session_file test_session_file)
foreach(case followup restart evict manage invalid overflow tp llama bf16)
  add_test(NAME session_${case} COMMAND bash ${SESSION_TEST_DIR}/session_cli_test.sh ${case}
           $<TARGET_FILE:strata> ${CMAKE_BINARY_DIR}/infer_work ${STRATA_MPIRUN})
  set_tests_properties(session_${case} PROPERTIES LABELS "mpi" TIMEOUT 600 FIXTURES_REQUIRED infer_ckpt
    ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
