# launch/strata-run, the local launch wrapper: flags it adds (dry run), usage errors, and real
# one- and two-rank runs through it (tests/slurm/strata_run_test.sh). Label "launch".
foreach(case dry_run_flags bad_input train_one_rank bench_two_ranks train_two_ranks)
  add_test(NAME launch_${case}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/strata_run_test.sh ${case})
  set_tests_properties(launch_${case} PROPERTIES LABELS "launch" TIMEOUT 300 SKIP_RETURN_CODE 77
                       ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_BIN=$<TARGET_FILE:strata>")
endforeach()
