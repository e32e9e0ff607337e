# `strata serve` on a real checkpoint end to end under mpirun (tests/serve_e2e/):
#   serve_e2e_np1/np2     greedy and streamed completions against `strata infer`, concurrent
#                         clients batched, sessions across a restart, bad requests, /metrics,
#                         /health, clean shutdown by signalling the ranks
#   serve_e2e_overload    P=2, --max-queue 3 with the pipeline held: the excess gets 429 +
#                         Retry-After + JSON, the admitted requests complete, /health stays 200
#   serve_e2e_signal      P=2, SIGTERM then SIGINT to mpirun: every rank exits 0, the session is
#                         on disk and a restarted server continues it as an uninterrupted one would
#   serve_e2e_tp2_np4     --tp 2 x P=2: concurrent clients get the one-process answer, a session
#                         continues across a restart as an uninterrupted one, --tp 1 gets 409
#   serve_e2e_llama_np1/np2  a Llama checkpoint on one rank and in 2 pipeline stages: completions
#                         (also streamed) equal one-process `strata infer` with exact usage
#                         counts, a chat completion, a session follow-up; --tp 3 exits 2
#   serve_e2e_llama_tp2_np2  the same Llama checkpoint at --tp 2: the one-process answers
#   serve_e2e_bf16_np1    --precision bf16: the `strata infer --precision bf16` answer, half the KV gauge
strata_test_exe(test_serve_e2e ${CMAKE_CURRENT_SOURCE_DIR}/serve_e2e/test_serve_e2e.c
                ${CMAKE_CURRENT_SOURCE_DIR}/serve_e2e/serve_harness.c ${CMAKE_CURRENT_SOURCE_DIR}/serve/http_client.c)
target_include_directories(test_serve_e2e PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/serve)
target_link_libraries(test_serve_e2e PRIVATE pthread)
function(serve_e2e_test name case np)
  strata_add_test(${name} test_serve_e2e ${case} ${np} ${CMAKE_BINARY_DIR}/${name}
                  $<TARGET_FILE:strata> ${STRATA_MPIRUN})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 LABELS "mpi"
                       ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endfunction()
serve_e2e_test(serve_e2e_np1 basic 1)
serve_e2e_test(serve_e2e_np2 basic 2)
serve_e2e_test(serve_e2e_overload overload 2)
serve_e2e_test(serve_e2e_signal signal 2)
serve_e2e_test(serve_e2e_tp2_np4 tp 4)
serve_e2e_test(serve_e2e_llama_np1 llama 1)
serve_e2e_test(serve_e2e_llama_np2 llama 2)
serve_e2e_test(serve_e2e_llama_tp2_np2 llama_tp2 2)
serve_e2e_test(serve_e2e_bf16_np1 bf16 1)

# launch/slurm/serve.sbatch on the throw-away Slurm cluster (tests/slurm/cluster.sh): start,
# /health, one completion, scancel. Label "slurm", shares the cluster lock with tests/slurm.cmake.
add_test(NAME serve_e2e_slurm COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/slurm_jobs_test.sh serve)
set_tests_properties(serve_e2e_slurm PROPERTIES LABELS "slurm" TIMEOUT 540 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK slurm_cluster
                     ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_BIN=$<TARGET_FILE:strata>")

# Resilience of `strata serve` under mpirun (tests/serve_e2e/test_serve_resilience.c): an idle
# server neither dies nor spins, a lost rank ends the job naming it, and a bad session file, a
# failed save, a crash inside a save, a full disk and the disk quota each stay inside the
# request they concern.
strata_test_exe(test_serve_resilience ${CMAKE_CURRENT_SOURCE_DIR}/serve_e2e/test_serve_resilience.c
                ${CMAKE_CURRENT_SOURCE_DIR}/serve_e2e/serve_harness.c ${CMAKE_CURRENT_SOURCE_DIR}/serve/http_client.c)
target_include_directories(test_serve_resilience PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/serve)
foreach(spec idle:2 kill:2 kill:3 stuck:3 stucktp:4 corrupt:2 corrupt:4 stagefail:2 stagefail:3 crash:2 disk:2 quota:2 stream:2)
  string(REPLACE ":" ";" parts ${spec})
  list(GET parts 0 case)
  list(GET parts 1 np)
  set(name serve_resilience_${case}_np${np})
  strata_add_test(${name} test_serve_resilience ${case} ${np} ${CMAKE_BINARY_DIR}/${name}
                  $<TARGET_FILE:strata> ${STRATA_MPIRUN})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 LABELS "mpi" SKIP_RETURN_CODE 77
                       ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
