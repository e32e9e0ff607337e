# Byte-level BPE (worker/tokenizer/): ids identical to tiktoken's gpt2 encoding on the committed
# fixture (tests/fixtures/bpe_gpt2.fix.gz, made by make_bpe_fixture.mjs; the test needs no node),
# the same vocabulary as vocab.json + merges.txt and tokenizer.json, a Split pattern; round trips
# of arbitrary bytes, the streaming UTF-8 decoder, broken vocabulary files.
find_package(ZLIB REQUIRED)
strata_test_exe(test_bpe_fixture ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/test_bpe_fixture.c)
target_link_libraries(test_bpe_fixture PRIVATE ZLIB::ZLIB)
strata_add_test(tokenizer_gpt2_fixture test_bpe_fixture)
strata_test_exe(test_bpe ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/test_bpe.c)
strata_add_test(tokenizer_bpe test_bpe)
# Throughput (launch/tokenizer_bench.sh runs it beside npm's js-tiktoken); not a test.
strata_test_exe(bpe_bench ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/bpe_bench.c)
# `strata tokenize`: llm.c shards (header, <|endoftext|> per document, --val-fraction,
# --split-docs), --ids and --decode, bad input, and a tiny vocabulary-50257 model training on
# the shard it wrote.
strata_add_test(tokenizer_cli ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/tokenize_cli.sh $<TARGET_FILE:strata> ${PROJECT_SOURCE_DIR})
# `strata train --tokenizer gpt2` on a .txt: the same losses as on the shard `strata tokenize`
# writes from it, on 1 and 2 ranks; a resumed BPE checkpoint encodes text with its own tokenizer.
add_test(NAME tokenizer_train_text COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/train_text_test.sh
         $<TARGET_FILE:strata> ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR}/tokenizer_train_text ${STRATA_MPIRUN})
set_tests_properties(tokenizer_train_text PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS "mpi"
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
