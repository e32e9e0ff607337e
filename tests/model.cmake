# Model area (worker/model/: gpt2*.c, llama.c, nn.c, gemm*.c, adamw.c): PyTorch parity, sharding, micro-batching, the
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
# GEMM backends (worker/model/gemm.h) against a double-precision reference, and the model's
# tests again on each backend alone (STRATA_GEMM), so neither library is only covered by auto.
strata_test_exe(test_gemm ${MODEL_TEST_DIR}/test_gemm.c)
strata_add_test(model_gemm test_gemm)
# bf16 products (gemm_bf16: oneDNN's bf16 kernel, the rounded-input fallback) and bf16 rounding
strata_test_exe(test_gemm_bf16 ${MODEL_TEST_DIR}/test_gemm_bf16.c)
strata_add_test(model_gemm_bf16 test_gemm_bf16)
foreach(backend openblas onednn)
  foreach(t parity sharded microbatch grad_ready determinism tp_units)
    strata_add_test(model_gemm_${backend}_${t} test_gpt2_${t})
    set_tests_properties(model_gemm_${backend}_${t} PROPERTIES
                         ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_GEMM=${backend}")
  endforeach()
  strata_add_mpi_test(model_gemm_${backend}_tp_np3 3 $<TARGET_FILE:test_gpt2_tp>)
  set_tests_properties(model_gemm_${backend}_tp_np3 PROPERTIES ENVIRONMENT
      "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;STRATA_GEMM=${backend}")
endforeach()
# strata train on each backend: losses within 1e-4 relative, the start-up line, a bad value
strata_add_test(model_gemm_train ${MODEL_TEST_DIR}/gemm_train.sh $<TARGET_FILE:strata>)
# Benchmark (not a test): gpt2_bench --layers 6 --heads 6 --dim 384 --ctx 256 --batch 8
strata_test_exe(gpt2_bench ${MODEL_TEST_DIR}/gpt2_bench.c)
target_link_libraries(gpt2_bench PRIVATE strata_dnnl) # --gemm-shapes times oneDNN's bf16 kernel alone
# The fixture's T = 16 fits in one attention block at the default block size; rerun the parity
# test with 5-row blocks so the multi-block causal path (and a partial last block) is checked.
strata_add_test(model_gpt2_parity_attn_blocks test_gpt2_parity)
set_tests_properties(model_gpt2_parity_attn_blocks PROPERTIES
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_ATTN_BLOCK_ROWS=5")
# Tensor parallelism and activation recomputation (tests/model/tp_harness.c: a small random
# model V 300, L 2, one step): the single-process parts (slicing, vocabulary padding, logits
# assembly, bad configurations, recompute at tp = 1, activation bytes) and, under mpirun, tp = np
# against tp = 1 with and without sequence parallelism, one shard and a pipeline split,
# recompute at tp = np, forward_kv.
strata_test_exe(test_gpt2_tp_units ${MODEL_TEST_DIR}/test_gpt2_tp_units.c ${MODEL_TEST_DIR}/tp_harness.c)
strata_add_test(model_gpt2_tp_units test_gpt2_tp_units)
strata_test_exe(test_gpt2_tp ${MODEL_TEST_DIR}/test_gpt2_tp.c ${MODEL_TEST_DIR}/tp_harness.c)
foreach(np 2 3 4)
  strata_add_mpi_test(model_gpt2_tp_np${np} ${np} $<TARGET_FILE:test_gpt2_tp>)
endforeach()
# Llama (worker/model/llama.c) against the plain-PyTorch Llama of make_llama_fixture.py:
# grouped-query, multi-head and multi-query cases; rerun with 5-row attention blocks so the
# multi-block causal path is checked (the fixtures' T <= 16 fit one default block).
strata_test_exe(test_llama ${MODEL_TEST_DIR}/test_llama.c ${MODEL_TEST_DIR}/gpt2_fixture.c)
strata_add_test(model_llama test_llama)
foreach(backend openblas onednn) # on each GEMM library alone, as the GPT-2 tests above
  strata_add_test(model_gemm_${backend}_llama test_llama)
  set_tests_properties(model_gemm_${backend}_llama PROPERTIES
                       ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_GEMM=${backend}")
endforeach()
strata_add_test(model_llama_attn_blocks test_llama)
set_tests_properties(model_llama_attn_blocks PROPERTIES
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_ATTN_BLOCK_ROWS=5")
# bf16 products against PyTorch (tests/fixtures/gpt2_bf16.bin: Strata's bf16 policy written out
# in PyTorch, and PyTorch's CPU bf16 autocast), on each backend's bf16 path
strata_test_exe(test_gpt2_bf16_parity ${MODEL_TEST_DIR}/test_gpt2_bf16_parity.c ${MODEL_TEST_DIR}/gpt2_fixture.c)
strata_add_test(model_gpt2_bf16_parity test_gpt2_bf16_parity)
foreach(backend openblas onednn)
  strata_add_test(model_gemm_${backend}_bf16_parity test_gpt2_bf16_parity)
  set_tests_properties(model_gemm_${backend}_bf16_parity PROPERTIES
                       ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_GEMM=${backend}")
endforeach()
# Llama pipeline stages (llama_create_range): chains of stages against the whole model.
strata_test_exe(test_llama_range ${MODEL_TEST_DIR}/test_llama_range.c)
strata_add_test(model_llama_range test_llama_range)
# Llama tensor parallelism (llama_create_range with tp_rank / tp_size): tp = np = 2 against the
# whole model, one stage and two chained stages; split kinds; bad input.
strata_test_exe(test_llama_tp ${MODEL_TEST_DIR}/test_llama_tp.c ${MODEL_TEST_DIR}/llama_tp_util.c)
strata_add_mpi_test(model_llama_tp_np2 2 $<TARGET_FILE:test_llama_tp>)
