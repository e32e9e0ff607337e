# Model area (worker/model/gpt2.c, worker/model/adamw.c): PyTorch parity, sharding, micro-batching, the
# grad_ready contract, determinism, validation, initialisation, AdamW; plus the gpt2_bench
# benchmark executable (built with the tests, never run by ctest).
set(MODEL_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/model)
foreach(t parity sharded microbatch grad_ready)
  strata_test_exe(test_gpt2_${t} ${MODEL_TEST_DIR}/test_gpt2_${t}.c ${MODEL_TEST_DIR}/gpt2_fixture.c)
  strata_add_test(model_gpt2_${t} test_gpt2_${t})
endforeach()
foreach(t determinism create init)
  strata_test_exe(test_gpt2_${t} ${MODEL_TEST_DIR}/test_gpt2_${t}.c)
  strata_add_test(model_gpt2_${t} test_gpt2_${t})
endforeach()
strata_test_exe(test_adamw ${MODEL_TEST_DIR}/test_adamw.c)
strata_add_test(model_adamw test_adamw)
# Benchmark (not a test): gpt2_bench --layers 6 --heads 6 --dim 384 --ctx 256 --batch 8
strata_test_exe(gpt2_bench ${MODEL_TEST_DIR}/gpt2_bench.c)
# The fixture's T = 16 fits in one attention block at the default block size; rerun the parity
# test with 5-row blocks so the multi-block causal path (and a partial last block) is checked.
strata_add_test(model_gpt2_parity_attn_blocks test_gpt2_parity)
set_tests_properties(model_gpt2_parity_attn_blocks PROPERTIES
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_ATTN_BLOCK_ROWS=5")
