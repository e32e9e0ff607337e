# The `strata` command line: help, unknown commands and flags.
add_test(NAME cli_help COMMAND strata --help)
set_tests_properties(cli_help PROPERTIES LABELS "unit" PASS_REGULAR_EXPRESSION "commands:.*bench")
# --version and `version` print the project version; --help's first line names it too; --env is
# `help env` (the STRATA_* table).
foreach(spelling --version version)
  add_test(NAME cli_version_${spelling} COMMAND strata ${spelling})
  set_tests_properties(cli_version_${spelling} PROPERTIES LABELS "unit"
                       PASS_REGULAR_EXPRESSION "^strata ${PROJECT_VERSION}\n$")
endforeach()
add_test(NAME cli_help_version COMMAND strata --help)
set_tests_properties(cli_help_version PROPERTIES LABELS "unit" PASS_REGULAR_EXPRESSION "^strata ${PROJECT_VERSION}\n")
add_test(NAME cli_env COMMAND strata --env)
set_tests_properties(cli_env PROPERTIES LABELS "unit" PASS_REGULAR_EXPRESSION "STRATA_BUCKET_MB")
add_test(NAME cli_unknown_command COMMAND strata frobnicate)
set_tests_properties(cli_unknown_command PROPERTIES LABELS "unit" WILL_FAIL TRUE)
add_test(NAME cli_unknown_command_message COMMAND strata frobnicate)
set_tests_properties(cli_unknown_command_message PROPERTIES LABELS "unit"
                     PASS_REGULAR_EXPRESSION "unknown command 'frobnicate'")

# The strict number parser (collectives/include/strata/strnum.h) at its boundaries, flag ranges, sentinels and
# given bits (worker/cli/args.h), the environment reader (worker/base/env.h).
strata_test_exe(cli_strnum ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_strnum.c)
strata_add_test(cli_strnum $<TARGET_FILE:cli_strnum>)

# Every numeric flag of every command (from --help, counted against worker/cmd_*.c) and every
# numeric STRATA_* variable (from the sources) refuses -1, 0x10, 1e309, nan, '' / a word and a
# value outside its range with exit 2 and a sentence naming it, before MPI starts.
foreach(table numeric_flags numeric_env)
  strata_add_test(cli_${table} ${CMAKE_CURRENT_SOURCE_DIR}/cli/${table}.sh $<TARGET_FILE:strata> ${PROJECT_SOURCE_DIR})
  set_tests_properties(cli_${table} PROPERTIES TIMEOUT 300)
endforeach()

# Bad input inside and outside MPI jobs exits 2 with one sentence (serve, infer at np 1, 2, 3;
# --ctx 0; JSONL seeds); --resume DIR with equal / different model flags; --resume auto past a
# corrupt newest checkpoint (np 1 and 2).
string(JOIN " " CLI_MPIRUN_LINE ${STRATA_MPIRUN})
add_test(NAME cli_exit_codes COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/exit_codes.sh $<TARGET_FILE:strata>)
set_tests_properties(cli_exit_codes PROPERTIES LABELS "mpi" TIMEOUT 300
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;CLI_MPIRUN=${CLI_MPIRUN_LINE};STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
