# Serving: the completion-request parser as a pure function, and the HTTP server end to end
# against the deterministic fake backend (worker/serve/serve_fake.c) over loopback sockets; plus `strata serve` as a process (SIGTERM -> 0).
strata_test_exe(test_http_request ${CMAKE_CURRENT_SOURCE_DIR}/serve/test_http_request.c)
strata_add_test(http_request_parse test_http_request)
strata_test_exe(test_openai_response ${CMAKE_CURRENT_SOURCE_DIR}/serve/test_openai_response.c)
strata_add_test(serve_openai_stop_strings test_openai_response)
strata_test_exe(test_serve_metrics ${CMAKE_CURRENT_SOURCE_DIR}/serve/test_metrics.c)
strata_add_test(serve_metrics_exposition test_serve_metrics)
strata_test_exe(test_serve ${CMAKE_CURRENT_SOURCE_DIR}/serve/test_serve.c ${CMAKE_CURRENT_SOURCE_DIR}/serve/http_client.c)
foreach(case happy stream concurrent bad_requests overload health metrics disconnect sessions shutdown)
  strata_add_test(serve_${case} test_serve ${case})
  set_tests_properties(serve_${case} PROPERTIES TIMEOUT 120)
endforeach()
# The HTTP layer against hostile clients: strict framing, HEAD, slowloris, the header deadline,
# per-client and total connection limits (tests/serve/test_http_hostile.c).
strata_test_exe(test_http_hostile ${CMAKE_CURRENT_SOURCE_DIR}/serve/test_http_hostile.c ${CMAKE_CURRENT_SOURCE_DIR}/serve/http_client.c)
foreach(case strict head slowloris deadline limits)
  strata_add_test(http_${case} test_http_hostile ${case})
  set_tests_properties(http_${case} PROPERTIES TIMEOUT 120)
endforeach()
strata_test_exe(test_serve_cli ${CMAKE_CURRENT_SOURCE_DIR}/serve/test_serve_cli.c ${CMAKE_CURRENT_SOURCE_DIR}/serve/http_client.c)
strata_add_test(serve_cli test_serve_cli $<TARGET_FILE:strata>)
set_tests_properties(serve_cli PROPERTIES TIMEOUT 180)

# libFuzzer target for the request parser, only with clang and -DSTRATA_FUZZ=ON:
#   CC=clang cmake -S . -B build-fuzz -DSTRATA_FUZZ=ON && cmake --build build-fuzz --target fuzz_http_request
#   cd build-fuzz && ctest -R http_fuzz_request     (STRATA_FUZZ_SECONDS, default 60)
# Seed corpus: tests/serve/corpus; new inputs go to the build tree.
if(STRATA_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "STRATA_FUZZ needs clang: CC=clang cmake -DSTRATA_FUZZ=ON ...")
  endif()
  if(NOT DEFINED STRATA_FUZZ_SECONDS)
    set(STRATA_FUZZ_SECONDS 60)
  endif()
  set(STRATA_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g)
  add_executable(fuzz_http_request ${CMAKE_CURRENT_SOURCE_DIR}/serve/fuzz_http_request.c
                 ${PROJECT_SOURCE_DIR}/worker/serve/http_request.c ${PROJECT_SOURCE_DIR}/worker/serve/openai_params.c
                 ${PROJECT_SOURCE_DIR}/worker/serve/openai_chat.c ${PROJECT_SOURCE_DIR}/collectives/core/strnum.c)
  target_include_directories(fuzz_http_request PRIVATE ${PROJECT_SOURCE_DIR}/worker/serve ${PROJECT_SOURCE_DIR}/collectives/include)
  target_link_libraries(fuzz_http_request PRIVATE PkgConfig::JSONC m)
  target_compile_options(fuzz_http_request PRIVATE ${STRATA_FUZZ_FLAGS})
  target_link_options(fuzz_http_request PRIVATE ${STRATA_FUZZ_FLAGS})
  set_target_properties(fuzz_http_request PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz/corpus_http_request)
  add_test(NAME http_fuzz_request COMMAND fuzz_http_request -max_total_time=${STRATA_FUZZ_SECONDS}
           -rss_limit_mb=2048 ${CMAKE_BINARY_DIR}/fuzz/corpus_http_request ${CMAKE_CURRENT_SOURCE_DIR}/serve/corpus)
  set_tests_properties(http_fuzz_request PROPERTIES LABELS "fuzz" TIMEOUT 900)
endif()

# The load generator of launch/http_bench.sh (a tool, not a test).
strata_test_exe(http_load ${CMAKE_CURRENT_SOURCE_DIR}/serve/http_load.c ${CMAKE_CURRENT_SOURCE_DIR}/serve/http_client.c)

# The OpenAI wire format with curl and jq (skipped without them): the fake backend in full, and the
# engine's logprobs, stop, penalties and n on P = 1 and P = 3 (the checkpoint of infer_setup_checkpoint).
add_test(NAME serve_openai_wire COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/serve/openai_wire_test.sh fake
         $<TARGET_FILE:strata> ${CMAKE_BINARY_DIR}/openai_wire_fake)
set_tests_properties(serve_openai_wire PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
add_test(NAME serve_openai_engine COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/serve/openai_wire_test.sh engine
         $<TARGET_FILE:strata> ${CMAKE_BINARY_DIR}/openai_wire_engine ${STRATA_MPIRUN})
set_tests_properties(serve_openai_engine PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS "mpi"
  FIXTURES_REQUIRED infer_ckpt ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
# A BPE checkpoint (GPT-2's vocabulary) served on P = 1 and 2 and --tp 2: text in and out, usage in its
# tokens, streams of whole characters, logprobs, stop strings, sessions (curl and jq; skipped without).
add_test(NAME serve_bpe_text COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/serve/bpe_serve_test.sh
         $<TARGET_FILE:strata> ${CMAKE_BINARY_DIR}/serve_bpe_text ${STRATA_MPIRUN})
set_tests_properties(serve_bpe_text PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS "mpi"
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
# The official `openai` npm client (installed by the test; skipped without npm or network).
add_test(NAME serve_openai_npm COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/serve/openai_npm_test.sh
         $<TARGET_FILE:strata> ${CMAKE_BINARY_DIR}/openai_npm)
set_tests_properties(serve_openai_npm PROPERTIES TIMEOUT 400 SKIP_RETURN_CODE 77)
