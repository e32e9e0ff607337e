# Reliability: fault injection under mpirun (kill / hang / exit of one rank at np 2
# and 3), kills during checkpoint writes, exact resume after a kill at a seeded random step, bad
# inputs to the real binary, serve's security properties. Prefix rel_. See RELIABILITY.md.
string(JOIN " " REL_MPIRUN_LINE ${STRATA_MPIRUN})
strata_test_exe(rel_fault_parse ${CMAKE_CURRENT_SOURCE_DIR}/reliability/test_fault_parse.c)
strata_add_test(rel_fault_parse $<TARGET_FILE:rel_fault_parse>)
strata_test_exe(rel_rank_status ${CMAKE_CURRENT_SOURCE_DIR}/reliability/test_rank_status.c)
strata_add_test(rel_rank_status $<TARGET_FILE:rel_rank_status>)

# rel_test(NAME SCRIPT ARGS...)
function(rel_test name script)
  add_test(NAME ${name} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/reliability/${script} $<TARGET_FILE:strata> ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "mpi;reliability" TIMEOUT 240
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;REL_MPIRUN=${REL_MPIRUN_LINE};STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()

#        name                          script    case     NP P D action rank step op
rel_test(rel_fault_kill_step_np2       faults.sh fault     2 2 1 kill 1 3 step)
rel_test(rel_fault_kill_allreduce_np3  faults.sh fault     3 1 3 kill 2 3 allreduce)
rel_test(rel_fault_hang_allreduce_np2  faults.sh fault     2 1 2 hang 1 2 allreduce)
rel_test(rel_fault_hang_allreduce_np3  faults.sh fault     3 1 3 hang 1 2 allreduce)
rel_test(rel_fault_hang_recv_np2       faults.sh fault     2 2 1 hang 1 2 recv)
rel_test(rel_fault_hang_recv_np3       faults.sh fault     3 3 1 hang 2 3 recv)
rel_test(rel_fault_exit_np3            faults.sh fault     3 1 3 exit 0 4 step)
# kill:host=this host where only rank 0 arrives (op=commit): rank 0 takes the host's 2 others with it
rel_test(rel_fault_kill_host_np3       faults.sh hostkill  3 1 3)
# the failure line of launch/strata-run (rank, step, operation) from the ranks' status records
rel_test(rel_report_kill_step_np2      faults.sh report    2 2 1 kill 1 3 step "step start")
rel_test(rel_report_kill_allreduce_np3 faults.sh report    3 1 3 kill 2 3 allreduce "gradient all-reduce bucket 0")
rel_test(rel_report_kill_recv_np2      faults.sh report    2 2 1 kill 1 2 recv "receive activations of micro-batch 0 from stage 0")
rel_test(rel_report_exit_np3           faults.sh report    3 1 3 exit 0 4 step "step start")
rel_test(rel_report_hang_np2           faults.sh report    2 1 2 hang 1 2 allreduce "gradient all-reduce bucket 0")
# the same through launch/slurm/train.sbatch on the throw-away Slurm cluster of tests/slurm/
# (named slurm_ so that the sanitizer stage skips it with the other Slurm tests)
add_test(NAME slurm_job_kill_report
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/reliability/slurm_kill.sh $<TARGET_FILE:strata>)
set_tests_properties(slurm_job_kill_report PROPERTIES LABELS "slurm;reliability" TIMEOUT 300
                     RESOURCE_LOCK slurm_cluster ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
# STRATA_MAX_RESTARTS: the same kill in the first launch only; train.sbatch relaunches inside
# the allocation from the newest checkpoint and the job completes with the uninterrupted loss
add_test(NAME slurm_job_restart
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/reliability/slurm_kill.sh $<TARGET_FILE:strata> restart)
set_tests_properties(slurm_job_restart PROPERTIES LABELS "slurm;reliability" TIMEOUT 300
                     RESOURCE_LOCK slurm_cluster ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
rel_test(rel_ckpt_kill_mid_shard       faults.sh ckptkill  1 checkpoint)
rel_test(rel_ckpt_kill_before_commit   faults.sh ckptkill  0 commit)
rel_test(rel_resume_exact_seed1        faults.sh resume    1)
rel_test(rel_resume_exact_seed2        faults.sh resume    2)
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/reliability/bad_inputs.sh)
  rel_test(rel_bad_inputs bad_inputs.sh)
  set_tests_properties(rel_bad_inputs PROPERTIES LABELS "reliability")
endif()
rel_test(rel_serve_security serve_security.sh)
set_tests_properties(rel_serve_security PROPERTIES LABELS "reliability" RUN_SERIAL TRUE)

# Full disk (RELIABILITY.md, "Full disk"). rel_runlog_*: worker/base/runlog.c's whole-line appends and
# atomic files with write failures injected (/dev/full, a full tmpfs), its JSON (escaping, null
# for non-finite numbers), and the coordinator's files (a 1-rank world): odd characters and NaN,
# a lost steps log, a full disk. rel_full_disk_*: whole training runs (tests/reliability/
# full_disk.sh). The tmpfs cases mount one (root) and are skipped (exit 77) where that is refused.
strata_test_exe(rel_runlog ${CMAKE_CURRENT_SOURCE_DIR}/reliability/test_runlog.c)
foreach(case append steps atomic json coord_nan coord_lost coord_full)
  add_test(NAME rel_runlog_${case} COMMAND rel_runlog ${case})
  set_tests_properties(rel_runlog_${case} PROPERTIES LABELS "unit;reliability" TIMEOUT 120
    SKIP_RETURN_CODE 77 ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
# full_disk.sh CASE NP P D: the single-rank loop (np 1) and distributed runs at np 2 (P=2) and 3 (D=3)
foreach(spec "1;1;1" "2;2;1" "3;1;3")
  list(GET spec 0 np)
  list(GET spec 1 p)
  list(GET spec 2 d)
  foreach(case out log start names)
    rel_test(rel_full_disk_${case}_np${np} full_disk.sh $<TARGET_FILE:rel_runlog> ${case} ${np} ${p} ${d})
    set_tests_properties(rel_full_disk_${case}_np${np} PROPERTIES SKIP_RETURN_CODE 77)
  endforeach()
endforeach()
