# check_format.cmake -- runs one `strata bench` job and compares its stdout with real nccl-tests
# output, character by character (tests/bench/nccl_format_check.c).
# Invoked as: cmake -DCMD="<mpirun ... strata bench ...>" -DOUT=<file> -DCHECKER=<exe> -DNP=<ranks>
#   -P check_format.cmake
cmake_minimum_required(VERSION 3.19)
separate_arguments(cmd UNIX_COMMAND "${CMD}")
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_FILE "${OUT}" ERROR_VARIABLE err)
file(READ "${OUT}" out)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "strata bench exited with ${rc}:\n${err}")
endif()
execute_process(COMMAND ${CHECKER} ${OUT} ${NP} RESULT_VARIABLE rc OUTPUT_VARIABLE cout ERROR_VARIABLE cerr)
message("${cout}${cerr}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the output's layout differs from nccl-tests' (see above)")
endif()
