# `strata train` and `strata eval` end to end on one rank: determinism, bit-identical resume,
# evaluation output, Hugging Face config and tokenizer files, --config, refusal of bad flags.
foreach(case determinism resume eval hfconfig config badflags)
  strata_add_test(train_${case} ${CMAKE_CURRENT_SOURCE_DIR}/train/train_cli.sh $<TARGET_FILE:strata> ${case})
endforeach()
