# Data loading (worker/dataset/data.c): raw bytes and llm.c token shards, malformed-file refusal, the
# B*T+1 batch layout, deterministic order and the equivalence of sharded fetches.
strata_test_exe(test_data ${CMAKE_CURRENT_SOURCE_DIR}/data/test_data.c)
strata_add_test(data_loader test_data)

# libFuzzer target for token-shard / data-file validation; see tests/ckpt.cmake for how to build
# and run the fuzzers (clang, -DSTRATA_FUZZ=ON, ctest -L fuzz).
if(STRATA_FUZZ)
  if(NOT DEFINED STRATA_FUZZ_SECONDS)
    set(STRATA_FUZZ_SECONDS 60)
  endif()
  set(STRATA_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g)
  add_executable(fuzz_token_shard ${CMAKE_CURRENT_SOURCE_DIR}/data/fuzz/fuzz_token_shard.c
                 ${PROJECT_SOURCE_DIR}/worker/dataset/data.c ${PROJECT_SOURCE_DIR}/worker/base/rng.c
                 ${PROJECT_SOURCE_DIR}/worker/base/util.c ${PROJECT_SOURCE_DIR}/worker/base/datapath.c)
  target_include_directories(fuzz_token_shard PRIVATE ${PROJECT_SOURCE_DIR}/worker/dataset ${PROJECT_SOURCE_DIR}/worker/base)
  target_link_libraries(fuzz_token_shard PRIVATE m)
  target_compile_options(fuzz_token_shard PRIVATE ${STRATA_FUZZ_FLAGS})
  target_link_options(fuzz_token_shard PRIVATE ${STRATA_FUZZ_FLAGS})
  set_target_properties(fuzz_token_shard PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz/corpus_token_shard)
  add_test(NAME data_fuzz_token_shard COMMAND fuzz_token_shard -max_total_time=${STRATA_FUZZ_SECONDS}
           -rss_limit_mb=2048 ${CMAKE_BINARY_DIR}/fuzz/corpus_token_shard
           ${CMAKE_CURRENT_SOURCE_DIR}/data/fuzz/corpus_token_shard)
  set_tests_properties(data_fuzz_token_shard PROPERTIES LABELS "fuzz" TIMEOUT 900)
endif()
