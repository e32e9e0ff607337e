# The architecture: worker/ is layered (worker/CMakeLists.txt, README.md "Architecture").
#   arch_layers                 every #include of every worker file against the layer table, no
#                               MPI outside worker/cli/, no transport calls in the collectives'
#                               algorithms (tests/arch/layers.sh)
#   arch_build_<layer>_<header> a probe compiled inside a layer's library with one header: the
#                               build fails for a header of a layer above it (WILL_FAIL), and
#                               succeeds for one it may use (the probe itself works)
add_test(NAME arch_layers COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/arch/layers.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(arch_layers PROPERTIES LABELS "unit")

# arch_probe(LAYER HEADER MAY) -- a probe library (not built by default) of LAYER including HEADER,
# and a test that builds it and expects success (MAY 1) or failure (MAY 0).
function(arch_probe layer header may)
  string(MAKE_C_IDENTIFIER "${layer}_${header}" id)
  add_library(arch_probe_${id} STATIC EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/arch/probe.c)
  target_compile_definitions(arch_probe_${id} PRIVATE PROBE_HEADER="${header}")
  target_link_libraries(arch_probe_${id} PRIVATE strata_${layer})
  add_test(NAME arch_build_${id} COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target arch_probe_${id})
  set_tests_properties(arch_build_${id} PROPERTIES LABELS "unit" RUN_SERIAL TRUE)
  if(NOT may)
    set_tests_properties(arch_build_${id} PROPERTIES WILL_FAIL TRUE)
  endif()
endfunction()
arch_probe(model gpt2.h 1)
arch_probe(model train.h 0)
arch_probe(base gpt2.h 0)
arch_probe(parallel sim_clock.h 0)
arch_probe(parallel coordinator.h 0)
arch_probe(sim train.h 0)
arch_probe(infer args.h 0)
arch_probe(infer serve.h 0)
arch_probe(serve infer.h 1)
arch_probe(train serve.h 0)
