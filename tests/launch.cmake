# launch/strata-run, the local launch wrapper: flags it adds (dry run), usage errors, and real
# one- and two-rank runs through it (tests/slurm/strata_run_test.sh). Label "launch".
foreach(case dry_run_flags bad_input train_one_rank bench_two_ranks train_two_ranks restart_after_kill
             restart_repeats shrink_layout)
  add_test(NAME launch_${case}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/strata_run_test.sh ${case})
  set_tests_properties(launch_${case} PROPERTIES LABELS "launch" TIMEOUT 300 SKIP_RETURN_CODE 77
                       ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_BIN=$<TARGET_FILE:strata>")
endforeach()

# launch/demo.sh end to end (README's first command), shortened to 10 steps: train on 4 ranks,
# eval, generate on 2 stages. Catches a demo broken by a change elsewhere (for example one that
# asks for more tokens than the default model's context).
add_test(NAME launch_demo COMMAND bash ${PROJECT_SOURCE_DIR}/launch/demo.sh ${CMAKE_BINARY_DIR}/launch_demo_run)
set_tests_properties(launch_demo PROPERTIES LABELS "launch;mpi" TIMEOUT 300
                     ENVIRONMENT "STRATA_DEMO_NO_SETUP=1;DEMO_STEPS=10;STRATA_BUILD=${CMAKE_BINARY_DIR}"
                     PASS_REGULAR_EXPRESSION "run directory: .*launch_demo_run"
                     FAIL_REGULAR_EXPRESSION "error:")

# launch/benchmarks.sh without a real measurement (tests/report/check_benchmarks.sh): every
# benchmark script parses, usage errors exit 2, and its cheapest section (`--quick --only
# simulate`: deterministic `strata simulate` runs, a few seconds) published into a copy of
# BENCHMARKS.md rewrites exactly the simulate and env blocks.
add_test(NAME launch_benchmarks COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/report/check_benchmarks.sh
         ${CMAKE_CURRENT_BINARY_DIR}/launch_benchmarks)
set_tests_properties(launch_benchmarks PROPERTIES LABELS "launch" TIMEOUT 300
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_BUILD=${CMAKE_BINARY_DIR}")

# launch/compare_revisions.sh's usage and bad-argument paths only (never a build or a benchmark):
# each usage error exits 2 with its sentence and creates no output directory.
add_test(NAME launch_compare_revisions_usage COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/report/check_compare_revisions.sh
         ${CMAKE_CURRENT_BINARY_DIR}/launch_compare_revisions_usage)
set_tests_properties(launch_compare_revisions_usage PROPERTIES LABELS "launch" TIMEOUT 60
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
