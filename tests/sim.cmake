# Simulator, layout, schedule, device and memory model (worker/parallel/layout.c, schedule.c, device.c,
# memory_model.c, simulate.c, cmd_simulate.c); tp: tensor/sequence parallelism and recomputation.
# Unit tests; none needs mpirun.
foreach(t layout schedule device memory simulate tp)
  strata_test_exe(test_sim_${t} ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_sim_${t}.c)
  strata_add_test(sim_${t} ${CMAKE_BINARY_DIR}/tests/test_sim_${t})
endforeach()

# Presets, Llama, precision, the efficiency model, the shipped device files.
strata_test_exe(test_sim_models ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_sim_models.c)
strata_add_test(sim_models ${CMAKE_BINARY_DIR}/tests/test_sim_models
                ${PROJECT_SOURCE_DIR}/worker/sim/devices)

# `strata simulate` end to end (text, JSON parsed with json-c, sweep order, exit codes).
strata_test_exe(test_sim_cli ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_sim_cli.c)
strata_add_test(sim_cli ${CMAKE_BINARY_DIR}/tests/test_sim_cli $<TARGET_FILE:strata>
                ${PROJECT_SOURCE_DIR}/worker/sim/validation.csv)

# The issue's headline runs, as a user would type them.
strata_add_test(sim_cli_xl_64_trn2 $<TARGET_FILE:strata> simulate --model gpt2-xl --device trn2
                --nodes 64 --pp 4 --batch 512)
set_tests_properties(sim_cli_xl_64_trn2 PROPERTIES
                     PASS_REGULAR_EXPRESSION "step time [0-9.]+ s, [0-9]+ tokens/s, MFU [0-9.]+%.*memory: peak .* fits")
strata_add_test(sim_cli_7b_sweep_256_trn2 $<TARGET_FILE:strata> simulate --model 7b --device trn2
                --nodes 256 --batch 1024 --sweep)
set_tests_properties(sim_cli_7b_sweep_256_trn2 PROPERTIES
                     PASS_REGULAR_EXPRESSION "<- best.*best: --pp [0-9]+ --dp [0-9]+")
strata_add_test(sim_cli_7b_tp8_256_trn1 $<TARGET_FILE:strata> simulate --model 7b --device trn1
                --nodes 256 --tp 8 --pp 4 --dp 8)
set_tests_properties(sim_cli_7b_tp8_256_trn1 PROPERTIES
                     PASS_REGULAR_EXPRESSION "8 tensor-parallel x 4 stages x 8 replicas.*step time [0-9.]+ s.*tensor-parallel communication [1-9][0-9.]*%")
strata_add_test(sim_cli_bad_layout $<TARGET_FILE:strata> simulate --nodes 64 --pp 5)
set_tests_properties(sim_cli_bad_layout PROPERTIES
                     PASS_REGULAR_EXPRESSION "error: simulate: --nodes 64 is not divisible by --pp 5")

# The cpu profile's timed layers of either family (train/calibrate.c), one process.
strata_test_exe(test_sim_calibrate_layer ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_sim_calibrate_layer.c)
strata_add_test(sim_calibrate_layer ${CMAKE_BINARY_DIR}/tests/test_sim_calibrate_layer)

# The cpu profile's link calibration over the collectives library (2 ranks).
strata_test_exe(test_sim_calibrate_mpi ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_sim_calibrate_mpi.c)
strata_add_mpi_test(sim_calibrate_mpi 2 ${CMAKE_BINARY_DIR}/tests/test_sim_calibrate_mpi)

# The clock carried on a tensor-parallel run equals the event simulation (T = 2 and 3, P = 2).
strata_test_exe(test_sim_clock_tp_mpi ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_sim_clock_tp_mpi.c)
strata_add_mpi_test(sim_clock_tp_mpi_4 4 ${CMAKE_BINARY_DIR}/tests/test_sim_clock_tp_mpi)
strata_add_mpi_test(sim_clock_tp_mpi_6 6 ${CMAKE_BINARY_DIR}/tests/test_sim_clock_tp_mpi)

# The memory model against the bytes gpt2.c really allocates (parameters and activations).
strata_test_exe(test_sim_vs_gpt2 ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_sim_vs_gpt2.c)
strata_add_test(sim_memory_vs_gpt2 ${CMAKE_BINARY_DIR}/tests/test_sim_vs_gpt2)
