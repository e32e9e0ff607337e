# expect_exit2.cmake -- runs EXE with ARGS (a space-separated string) and fails unless it exits
# with status 2 (bad usage).
separate_arguments(argv UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${EXE} ${argv} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2)
  message(FATAL_ERROR "expected exit status 2, got '${rc}'\nstdout: ${out}\nstderr: ${err}")
endif()
message(STATUS "exit status 2: ${err}")
