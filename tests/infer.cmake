# Inference area (worker/model/gpt2_kv.c gpt2_forward_kv, llama_kv.c llama_forward_kv, kv_cache.c, sampler.c, infer.c, cmd_infer.c).
set(INFER_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/infer)
strata_test_exe(test_infer_kv_forward ${INFER_TEST_DIR}/test_kv_forward.c)
strata_add_test(infer_kv_forward test_infer_kv_forward)
strata_test_exe(test_infer_llama_kv_forward ${INFER_TEST_DIR}/test_llama_kv_forward.c)
strata_add_test(infer_llama_kv_forward test_infer_llama_kv_forward)
# Llama generation at tp = np = 2 against tp = 1 (one stage and two chained stages per rank).
strata_test_exe(test_infer_llama_kv_tp ${INFER_TEST_DIR}/test_llama_kv_tp.c ${CMAKE_CURRENT_SOURCE_DIR}/model/llama_tp_util.c)
strata_add_mpi_test(infer_llama_kv_tp_np2 2 $<TARGET_FILE:test_infer_llama_kv_tp>)
strata_test_exe(test_infer_kv_bf16 ${INFER_TEST_DIR}/test_kv_bf16.c)
strata_add_test(infer_kv_bf16 test_infer_kv_bf16)
strata_test_exe(test_infer_sampler ${INFER_TEST_DIR}/test_sampler.c)
strata_add_test(infer_sampler test_infer_sampler)

# End-to-end: `strata infer` under mpirun with P = 1..4 stages (tests/infer/infer_cli_test.sh).
# infer_setup trains the shared tiny checkpoint (about 3 s) that the other tests require.
set(INFER_WORK ${CMAKE_BINARY_DIR}/infer_work)
function(infer_cli_test name case)
  add_test(NAME ${name} COMMAND bash ${INFER_TEST_DIR}/infer_cli_test.sh ${case} $<TARGET_FILE:strata>
           ${INFER_WORK} ${STRATA_MPIRUN})
  set_tests_properties(${name} PROPERTIES LABELS "mpi" TIMEOUT 600
    ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
    ${ARGN})
endfunction()
infer_cli_test(infer_setup_checkpoint setup FIXTURES_SETUP infer_ckpt)
infer_cli_test(infer_greedy_same_for_P_1_2_3_4 layouts FIXTURES_REQUIRED infer_ckpt)
infer_cli_test(infer_seeded_sampling_reproducible seeded FIXTURES_REQUIRED infer_ckpt)
infer_cli_test(infer_bad_input_errors errors FIXTURES_REQUIRED infer_ckpt)
# Tensor parallelism (--tp T, world = T x P) on the 4-head checkpoint of infer_setup_checkpoint.
infer_cli_test(infer_tp_greedy_same_for_T_1_2_4_x_P_1_2 tp FIXTURES_REQUIRED infer_ckpt)
infer_cli_test(infer_tp_bad_layouts tp_errors FIXTURES_REQUIRED infer_ckpt)
# --precision bf16 (bf16 products, bf16 KV cache) on P = 1, 2 and --tp 2.
infer_cli_test(infer_bf16_same_for_P_1_2_and_tp_2 bf16 FIXTURES_REQUIRED infer_ckpt)
# A Llama checkpoint through the engine against a whole-sequence llama_forward per token.
# The Llama cases train their own checkpoints but share INFER_WORK, which infer_setup_checkpoint
# empties first: they require its fixture so they run after it, never while it clears the directory.
infer_cli_test(infer_llama_greedy_equals_recompute llama FIXTURES_REQUIRED infer_ckpt)
set_property(TEST infer_llama_greedy_equals_recompute APPEND PROPERTY ENVIRONMENT "STRATA_LLAMA_LOOP=$<TARGET_FILE:llama_loop>")
# A Llama checkpoint in P = 1..4 pipeline stages: the same tokens on every P.
infer_cli_test(infer_llama_pp_greedy_same_for_P_1_2_3_4 llama_pp FIXTURES_REQUIRED infer_ckpt)
# The same at --tp 2 (and 2 x 2 stages) against --tp 1; --tp 4 with 2 kv heads refused.
infer_cli_test(infer_llama_tp_greedy_same_for_T_1_2_x_P_1_2 llama_tp FIXTURES_REQUIRED infer_ckpt)

# The engine API the HTTP server calls (infer.h), on 1 and 2 ranks.
strata_test_exe(test_infer_engine_api ${INFER_TEST_DIR}/test_engine_api.c)
foreach(np 1 2)
  strata_add_mpi_test(infer_engine_api_np${np} ${np} $<TARGET_FILE:test_infer_engine_api>
                      ${INFER_WORK}/run/ckpt-00000200 ${INFER_WORK}/api_sessions_np${np})
  set_tests_properties(infer_engine_api_np${np} PROPERTIES FIXTURES_REQUIRED infer_ckpt)
endforeach()

# Benchmark (not a test): mpirun -np P build/tests/infer_ttft_bench CKPT SESSION_DIR [HISTORY NEW REPS]
strata_test_exe(infer_ttft_bench ${INFER_TEST_DIR}/infer_ttft_bench.c)
