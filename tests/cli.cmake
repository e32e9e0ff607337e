# The `strata` command line: help, unknown commands and flags.
add_test(NAME cli_help COMMAND strata --help)
set_tests_properties(cli_help PROPERTIES LABELS "unit" PASS_REGULAR_EXPRESSION "commands:.*bench")
add_test(NAME cli_unknown_command COMMAND strata frobnicate)
set_tests_properties(cli_unknown_command PROPERTIES LABELS "unit" WILL_FAIL TRUE)
add_test(NAME cli_unknown_command_message COMMAND strata frobnicate)
set_tests_properties(cli_unknown_command_message PROPERTIES LABELS "unit"
                     PASS_REGULAR_EXPRESSION "unknown command 'frobnicate'")
