# `strata train` and `strata eval` end to end on one rank: determinism, bit-identical resume,
# evaluation output, Hugging Face config and tokenizer files, --config, refusal of bad flags.
foreach(case determinism resume eval hfconfig config badflags)
  strata_add_test(train_${case} ${CMAKE_CURRENT_SOURCE_DIR}/train/train_cli.sh $<TARGET_FILE:strata> ${case})
endforeach()
# --arch llama: the same on a tiny Llama, against a plain llama.h loop (llama_loop.c).
strata_test_exe(llama_loop ${CMAKE_CURRENT_SOURCE_DIR}/train/llama_loop.c)
foreach(case llama_loop llama_ckpt llama_resume llama_eval llama_config llama_infer llama_badflags)
  strata_add_test(train_${case} ${CMAKE_CURRENT_SOURCE_DIR}/train/train_cli.sh $<TARGET_FILE:strata> ${case}
                  $<TARGET_FILE:llama_loop>)
endforeach()
