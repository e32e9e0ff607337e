# `strata report` (worker/cli/cmd_report.c; worker/train/report_read.c, report_print.c,
# report_plot.c) and launch/scaling.sh.
#  report_setup_run1 / report_setup_run4 : tiny training runs (1 rank; 4 ranks pp2 x dp2) whose
#                                          run directories the checks read (fixture report_runs)
#  report_run1 / report_run4             : report --json / text / --plot against the run's files
#  report_bad_inputs                     : bad inputs exit 2 with messages; gnuplot missing
#  scaling_quick                         : launch/scaling.sh --quick: CSV columns and rows,
#                                          wrong == 0, PNGs, summary.md
strata_test_exe(test_report ${CMAKE_CURRENT_SOURCE_DIR}/report/test_report.c)
set(STRATA_REPORT_DIR ${CMAKE_CURRENT_BINARY_DIR}/report_runs)
set(STRATA_REPORT_TRAIN train --layers 2 --dim 32 --heads 2 --ctx 32 --batch 8 --steps 6 --log-every 100)

add_test(NAME report_setup_run1 COMMAND ${CMAKE_COMMAND} -E env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
         $<TARGET_FILE:strata> ${STRATA_REPORT_TRAIN} --out ${STRATA_REPORT_DIR}/run1)
add_test(NAME report_setup_run4 COMMAND ${STRATA_MPIRUN} -np 4 $<TARGET_FILE:strata> ${STRATA_REPORT_TRAIN}
         --pp 2 --dp 2 --out ${STRATA_REPORT_DIR}/run4)
add_test(NAME report_setup_clean COMMAND ${CMAKE_COMMAND} -E rm -rf ${STRATA_REPORT_DIR})
set_tests_properties(report_setup_clean PROPERTIES FIXTURES_SETUP report_clean LABELS "unit;report")
set_tests_properties(report_setup_run1 report_setup_run4 PROPERTIES FIXTURES_SETUP report_runs
                     FIXTURES_REQUIRED report_clean LABELS "mpi;report" TIMEOUT 300
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")

set(STRATA_REPORT_ENV "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
add_test(NAME report_run1 COMMAND test_report $<TARGET_FILE:strata> ${STRATA_REPORT_DIR}/run1 1 1 1)
add_test(NAME report_run4 COMMAND test_report $<TARGET_FILE:strata> ${STRATA_REPORT_DIR}/run4 4 2 2)
add_test(NAME report_bad_inputs COMMAND test_report $<TARGET_FILE:strata> --bad ${STRATA_REPORT_DIR}/bad
         ${STRATA_REPORT_DIR}/run4)
set_tests_properties(report_run1 report_run4 report_bad_inputs PROPERTIES FIXTURES_REQUIRED report_runs
                     LABELS "unit;report" TIMEOUT 300 ENVIRONMENT "${STRATA_REPORT_ENV}")

add_test(NAME scaling_quick COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/report/check_scaling.sh $<TARGET_FILE:strata>
         ${CMAKE_CURRENT_BINARY_DIR}/scaling_quick)
set_tests_properties(scaling_quick PROPERTIES LABELS "mpi;report" TIMEOUT 300 ENVIRONMENT "${STRATA_REPORT_ENV}")
