# trace.json as Perfetto draws it (worker/train/trace_json.h), checked by tests/trace/trace_check.c:
# metadata (process and track names), fixed-precision timestamps, and slices that strictly nest
# on every track.
#  trace_check_accepts / trace_check_rejects_* : the checker itself on small fixtures
#  trace_single_rank_artifacts                 : a single-rank run writes every file README lists
#  trace_copy_reset                            : empties build/tests/traces before the tests run
#  trace_check_all                             : after every other test, checks each trace.json
#                                                the run wrote: tests/CMakeLists.txt gives every
#                                                test STRATA_TRACE_COPY_DIR, so strata links each
#                                                trace.json it commits into build/tests/traces
set(STRATA_TRACE_COPY_DIR ${CMAKE_BINARY_DIR}/tests/traces)
strata_test_exe(trace_check trace/trace_check.c)

set(trace_fx ${CMAKE_CURRENT_SOURCE_DIR}/trace)
strata_add_test(trace_check_accepts $<TARGET_FILE:trace_check> ${trace_fx}/good_nested.json)
strata_add_test(trace_check_rejects_overlap $<TARGET_FILE:trace_check> ${trace_fx}/bad_overlap.json)
set_tests_properties(trace_check_rejects_overlap PROPERTIES PASS_REGULAR_EXPRESSION
  "pid 0 tid 1: slice [0-9]+ \\(allreduce, \\[15000, 20000\\) ns\\) partly overlaps slice [0-9]+ \\(allreduce, \\[12000, 17000\\) ns\\)")
strata_add_test(trace_check_rejects_float $<TARGET_FILE:trace_check> ${trace_fx}/bad_float.json)
set_tests_properties(trace_check_rejects_float PROPERTIES PASS_REGULAR_EXPRESSION
  "10.300000000000001 is neither integral microseconds nor a decimal with 1-3 digits")
strata_add_test(trace_check_rejects_names $<TARGET_FILE:trace_check> ${trace_fx}/bad_names.json)
set_tests_properties(trace_check_rejects_names PROPERTIES PASS_REGULAR_EXPRESSION
  "pid 0 does not name tid 0 \"compute\".*track pid 0 tid 0 has slices but no thread_name.*pid 1 has slices but no process_name")

add_test(NAME trace_copy_reset COMMAND ${CMAKE_COMMAND} -E rm -rf ${STRATA_TRACE_COPY_DIR})
add_test(NAME trace_copy_mkdir COMMAND ${CMAKE_COMMAND} -E make_directory ${STRATA_TRACE_COPY_DIR})
add_test(NAME trace_check_all COMMAND $<TARGET_FILE:trace_check> --dir ${STRATA_TRACE_COPY_DIR})
set_tests_properties(trace_copy_reset PROPERTIES LABELS "unit" FIXTURES_SETUP strata_traces_reset)
set_tests_properties(trace_copy_mkdir PROPERTIES LABELS "unit" FIXTURES_SETUP strata_traces
                     FIXTURES_REQUIRED strata_traces_reset)
set_tests_properties(trace_check_all PROPERTIES LABELS "unit" FIXTURES_CLEANUP strata_traces TIMEOUT 600)
add_test(NAME trace_single_rank_artifacts COMMAND bash ${trace_fx}/single_rank.sh $<TARGET_FILE:strata>
         $<TARGET_FILE:trace_check> $<TARGET_FILE:dist_tool>)
set_tests_properties(trace_single_rank_artifacts PROPERTIES LABELS "unit" TIMEOUT 300
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
