# Checkpoints: safetensors format and refusal of malformed files, the TrainState protobuf,
# and checkpoint directories (round trip, resharding, checksums, atomic replace, resume auto).
strata_test_exe(test_safetensors ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/test_safetensors.c)
strata_add_test(ckpt_safetensors test_safetensors)
strata_test_exe(test_proto ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/test_proto.c)
strata_add_test(ckpt_proto test_proto)
strata_test_exe(test_checkpoint ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/test_checkpoint.c)
strata_add_test(ckpt_checkpoint test_checkpoint)
# The pipeline protocol across processes: every rank writes its stage, rank 0 commits, all reload
# into another layout.
strata_test_exe(test_ckpt_mpi ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/test_ckpt_mpi.c)
foreach(np 2 3)
  strata_add_mpi_test(ckpt_pipeline_mpi_np${np} ${np} $<TARGET_FILE:test_ckpt_mpi>)
endforeach()

# libFuzzer targets, only in a clang build configured with -DSTRATA_FUZZ=ON:
#   CC=clang cmake -S . -B build-fuzz -DSTRATA_FUZZ=ON && cmake --build build-fuzz --target fuzz_safetensors
#   cd build-fuzz && ctest -L fuzz      (each target runs STRATA_FUZZ_SECONDS, default 60)
# The code under test is compiled into each fuzzer with coverage instrumentation, ASan and UBSan;
# the committed seed corpora live in tests/ckpt/fuzz/corpus_*; new inputs go to the build tree.
if(STRATA_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "STRATA_FUZZ needs clang: CC=clang cmake -DSTRATA_FUZZ=ON ...")
  endif()
  if(NOT DEFINED STRATA_FUZZ_SECONDS)
    set(STRATA_FUZZ_SECONDS 60)
  endif()
  set(STRATA_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g)
  add_executable(fuzz_safetensors ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/fuzz/fuzz_safetensors.c
                 ${PROJECT_SOURCE_DIR}/worker/checkpoint/safetensors.c ${PROJECT_SOURCE_DIR}/worker/base/util.c)
  target_include_directories(fuzz_safetensors PRIVATE ${PROJECT_SOURCE_DIR}/worker/checkpoint ${PROJECT_SOURCE_DIR}/worker/base)
  target_link_libraries(fuzz_safetensors PRIVATE PkgConfig::JSONC PkgConfig::XXHASH)
  add_executable(fuzz_proto ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/fuzz/fuzz_proto.c
                 ${PROJECT_SOURCE_DIR}/proto/strata_proto.c ${PROJECT_SOURCE_DIR}/proto/report_proto.c)
  target_include_directories(fuzz_proto PRIVATE ${PROJECT_SOURCE_DIR}/proto ${CMAKE_BINARY_DIR}/proto/gen)
  target_link_libraries(fuzz_proto PRIVATE strata_proto m) # generated message code
  foreach(fz fuzz_safetensors fuzz_proto)
    string(REPLACE "fuzz_" "" corpus ${fz})
    target_compile_options(${fz} PRIVATE ${STRATA_FUZZ_FLAGS})
    target_link_options(${fz} PRIVATE ${STRATA_FUZZ_FLAGS})
    set_target_properties(${fz} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
    file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz/corpus_${corpus})
    add_test(NAME ckpt_${fz} COMMAND ${fz} -max_total_time=${STRATA_FUZZ_SECONDS} -rss_limit_mb=2048
             ${CMAKE_BINARY_DIR}/fuzz/corpus_${corpus} ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/fuzz/corpus_${corpus})
    set_tests_properties(ckpt_${fz} PROPERTIES LABELS "fuzz" TIMEOUT 900)
  endforeach()
endif()

# Asynchronous checkpoints of whole runs (tests/ckpt/ckpt_async.sh): async and synchronous files
# byte-identical, exact resume from an async checkpoint, a kill inside the background writer or
# while it runs, a failed background write -- on one rank and under mpirun (np 2: --pp 2, np 3:
# --dp 3 --zero 1, np 4: --tp 2 --pp 2).
string(JOIN " " CKPT_MPIRUN_LINE ${STRATA_MPIRUN})
function(ckpt_async_test name)
  add_test(NAME ckpt_async_${name} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/ckpt_async.sh
           $<TARGET_FILE:strata> ${ARGN})
  set_tests_properties(ckpt_async_${name} PROPERTIES LABELS "mpi;reliability" TIMEOUT 240
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;CKPT_MPIRUN=${CKPT_MPIRUN_LINE}")
endfunction()
foreach(np 1 2 3 4)
  ckpt_async_test(same_np${np} same ${np})
endforeach()
ckpt_async_test(resume_np1 resume 1)
ckpt_async_test(resume_np3 resume 3)
#               name                       case     NP rank op
ckpt_async_test(kill_checkpoint_np1        kill     1  0 checkpoint)
ckpt_async_test(kill_checkpoint_np2        kill     2  1 checkpoint)
ckpt_async_test(kill_checkpoint_np4        kill     4  2 checkpoint)
ckpt_async_test(kill_commit_np3            kill     3  0 commit)
ckpt_async_test(killstep_np3               killstep 3  2)
ckpt_async_test(error_np1                  error    1)
ckpt_async_test(error_np2                  error    2)
ckpt_async_test(error_np3                  error    3)

# A Llama checkpoint read by a Hugging Face-convention PyTorch program gives strata eval's loss
# (tests/ckpt/hf_llama_eval.py; skipped without Debian's python3-torch).
add_test(NAME ckpt_hf_llama_eval COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/hf_llama_check.sh
         $<TARGET_FILE:strata> ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR}/ckpt_hf_llama_eval)
set_tests_properties(ckpt_hf_llama_eval PROPERTIES LABELS "unit" TIMEOUT 300 SKIP_RETURN_CODE 77)
