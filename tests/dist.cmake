# Distributed training: equivalence of every layout with the single-rank run, resume
# onto another layout, the coordinator's output, refusal of bad layouts. All under mpirun
# (oversubscribed), label "mpi". The checker tool is C (json-c, the checkpoint loader).
strata_test_exe(dist_tool ${CMAKE_CURRENT_SOURCE_DIR}/dist/dist_tool.c)
string(JOIN " " DIST_MPIRUN_LINE ${STRATA_MPIRUN})

# dist_test(NAME CASE ARGS...)
function(dist_test name)
  add_test(NAME ${name} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/dist/dist_cli.sh $<TARGET_FILE:strata>
           $<TARGET_FILE:dist_tool> ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "mpi" TIMEOUT 300
    ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;DIST_MPIRUN=${DIST_MPIRUN_LINE}")
endfunction()

# The layout matrix, covered pairwise rather than as a full product: every P in 1..4, every D in
# 1..3, every M in {1,2,4}, both schedules, ZeRO on and off, transports mpi, ofi:shm, ofi:tcp.
# Bucket sizes: the default 4 MiB is one bucket for this tiny model; --bucket-mb 0.02 (5243
# floats, under one 12.7K-float layer) makes every layer its own bucket, all-reduced while the
# backward of the layers below runs.
#              name                         NP P D M schedule zero transport [extra flags]
dist_test(dist_equiv_p1d1m1_gpipe     equiv  1 1 1 1 gpipe 0 mpi)
dist_test(dist_equiv_p1d2m2_buckets   equiv  2 1 2 2 1f1b  0 mpi --bucket-mb 0.02)
dist_test(dist_equiv_p1d3m1_zero      equiv  3 1 3 1 gpipe 1 mpi)
dist_test(dist_equiv_p2d1m4_1f1b      equiv  2 2 1 4 1f1b  0 mpi)
dist_test(dist_equiv_p2d2m2_gpipe_shm equiv  4 2 2 2 gpipe 1 shm)
dist_test(dist_equiv_p2d2m1_tcp       equiv  4 2 2 1 1f1b  0 tcp)
dist_test(dist_equiv_p3d1m2_layers    equiv  3 3 1 2 gpipe 0 mpi --stage-layers 1,2,1)
dist_test(dist_equiv_p3d2m4_1f1b_shm  equiv  6 3 2 4 1f1b  0 shm --bucket-mb 0.02)
dist_test(dist_equiv_p4d1m4_zero      equiv  4 4 1 4 1f1b  1 mpi)
dist_test(dist_equiv_p4d3m2_gpipe     equiv 12 4 3 2 gpipe 0 mpi)
dist_test(dist_resume_relayout resume)
dist_test(dist_progress_rank0_only progress)
dist_test(dist_eval_layouts evallayouts)
dist_test(dist_bad_layouts badlayout)

# Tensor parallelism (--tp T) with the pipeline, data parallelism, ZeRO, both schedules,
# sequence parallelism, recomputation and the transports, pairwise: T in {2, 4}; P in {1, 2};
# D in {1, 2, 3}; ZeRO on and off; GPipe and 1F1B; --sequence-parallel on and off; --recompute
# none, selective and full (those two also against none, bit for bit); mpi, ofi:shm, ofi:tcp.
#              name                               NP T P D M schedule zero transport [extra flags]
dist_test(dist_tp_t2_seq                tp   2 2 1 1 1 gpipe 0 mpi)
dist_test(dist_tp_t2_sp_full            tp   2 2 1 1 2 1f1b  0 mpi --sequence-parallel --recompute full)
dist_test(dist_tp_t4_sp_selective       tp   4 4 1 1 1 gpipe 0 mpi --sequence-parallel --recompute selective)
dist_test(dist_tp_t2p2_1f1b_shm         tp   4 2 2 1 4 1f1b  0 shm --sequence-parallel)
dist_test(dist_tp_t2p2_gpipe_full       tp   4 2 2 1 2 gpipe 0 mpi --recompute full)
dist_test(dist_tp_t2d2_zero_tcp         tp   4 2 1 2 2 1f1b  1 tcp --sequence-parallel)
dist_test(dist_tp_t2d2_buckets_selective tp  4 2 1 2 1 gpipe 0 mpi --bucket-mb 0.02 --recompute selective)
dist_test(dist_tp_t2d3_odd              tp   6 2 1 3 2 gpipe 1 mpi --sequence-parallel)
dist_test(dist_tp_t2p2d2_shm            tp   8 2 2 2 2 1f1b  0 shm --bucket-mb 0.02 --recompute selective)
dist_test(dist_tp_t2p2d2_zero_sp        tp   8 2 2 2 4 gpipe 1 mpi --sequence-parallel)
dist_test(dist_tp_resume_relayout tpresume)
dist_test(dist_tp_bad_layouts tpbad)

# --arch llama: data parallelism and ZeRO-1 of a whole Llama model per rank (train.c), pipeline
# stages (train_dist.c; llama_pp.sh: equivalence, resume across P, the checkpoint directory) and
# tensor parallelism (llama_tp.sh: T = 2, 2 x 2 pipelined, 2 x 2 data-parallel with ZeRO-1 and
# 2 x 3 against one rank, resume across T, a --tp that does not divide --kv-heads refused).
foreach(script_case dp:equiv dp:resume pp:equiv pp:resume pp:ckpt tp:equiv tp:dp tp:odd tp:resume tp:bad)
  string(REPLACE ":" ";" parts ${script_case})
  list(GET parts 0 script)
  list(GET parts 1 case)
  set(name dist_llama_${case})
  if(NOT script STREQUAL "dp")
    set(name dist_llama_${script}_${case})
  endif()
  add_test(NAME ${name} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/dist/llama_${script}.sh $<TARGET_FILE:strata> ${case})
  set_tests_properties(${name} PROPERTIES LABELS "mpi" TIMEOUT 300
    ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;DIST_MPIRUN=${DIST_MPIRUN_LINE};DIST_TOOL=$<TARGET_FILE:dist_tool>")
endforeach()
