# The libfabric transport (collectives/transports/ofi.c).
#  ofi_transport_<prov>_np<N>   : the transport's own specification test (tests/ofi/), shm and tcp
#  ofi_transport_frag_*         : same with STRATA_OFI_MAX_MSG_BYTES=64K forcing fragmentation
#                                 (8 MiB = 128 fragments of one message)
#  ofi_transport_mr_*           : same with STRATA_OFI_FORCE_MR=1 forcing memory registration
#  ofi_coll_ops_<prov>_np<N>    : the collectives' operation tests (coll_test_ops, tests/coll/)
#                                 over STRATA_COLL_TRANSPORT=ofi, np 1 2 3 4 5 8 (tcp: to 5; the
#                                 8-rank schedules run over shm and over mpi, coll_ops_np8)
#  ofi_coll_<mode>_<prov>_np4   : its p2p, nonblocking, split, timeout, mismatch and idle modes
#  ofi_coll_units_shm_np1       : its units mode (config defaults resolved for ofi)
# The tcp provider must stay on loopback: FI_TCP_IFACE=lo.
set(STRATA_OFI_BASE_ENV "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
set(STRATA_OFI_ENV_shm "FI_PROVIDER=shm")
set(STRATA_OFI_ENV_tcp "FI_PROVIDER=tcp;FI_TCP_IFACE=lo")

strata_test_exe(ofi_transport_test ${CMAKE_CURRENT_SOURCE_DIR}/ofi/test_ofi_transport.c)
target_include_directories(ofi_transport_test PRIVATE ${PROJECT_SOURCE_DIR}/collectives/core
                           ${PROJECT_SOURCE_DIR}/collectives/transports)

# strata_ofi_test(NAME NP EXTRA_ENV COMMAND...)
function(strata_ofi_test name np extra_env)
  strata_add_mpi_test(${name} ${np} ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "mpi;ofi" TIMEOUT 300
                       ENVIRONMENT "${STRATA_OFI_BASE_ENV};${extra_env}")
endfunction()

foreach(prov shm tcp)
  foreach(np 1 2 3 4)
    strata_ofi_test(ofi_transport_${prov}_np${np} ${np} "${STRATA_OFI_ENV_${prov}}"
                    $<TARGET_FILE:ofi_transport_test>)
  endforeach()
  strata_ofi_test(ofi_transport_frag_${prov}_np3 3
                  "${STRATA_OFI_ENV_${prov}};STRATA_OFI_MAX_MSG_BYTES=65536"
                  $<TARGET_FILE:ofi_transport_test>)
  strata_ofi_test(ofi_transport_mr_${prov}_np2 2
                  "${STRATA_OFI_ENV_${prov}};STRATA_OFI_FORCE_MR=1"
                  $<TARGET_FILE:ofi_transport_test>)
endforeach()

# A domain (interface) that does not exist: creation fails on every rank with a message.
strata_ofi_test(ofi_transport_bad_domain_tcp_np2 2 "FI_PROVIDER=tcp;STRATA_OFI_DOMAIN=no_such_if0"
                $<TARGET_FILE:ofi_transport_test> expect-create-error STRATA_OFI_DOMAIN)

if(TARGET coll_test_ops)
  foreach(prov shm tcp)
    set(nps 1 2 3 4 5 8)
    if(prov STREQUAL "tcp")
      set(nps 1 2 3 4 5)
    endif()
    foreach(np IN LISTS nps)
      strata_ofi_test(ofi_coll_ops_${prov}_np${np} ${np}
                      "STRATA_COLL_TRANSPORT=ofi;${STRATA_OFI_ENV_${prov}}"
                      $<TARGET_FILE:coll_test_ops> ops)
    endforeach()
    foreach(mode p2p nonblocking split timeout mismatch idle)
      strata_ofi_test(ofi_coll_${mode}_${prov}_np4 4
                      "STRATA_COLL_TRANSPORT=ofi;${STRATA_OFI_ENV_${prov}}"
                      $<TARGET_FILE:coll_test_ops> ${mode})
    endforeach()
  endforeach()
  # Configuration parsing and defaults as the ofi transport resolves them (its chunk size).
  strata_ofi_test(ofi_coll_units_shm_np1 1 "STRATA_COLL_TRANSPORT=ofi;${STRATA_OFI_ENV_shm}"
                  $<TARGET_FILE:coll_test_ops> units)
  # Progress made by the library's background thread: the transport's lock serialises it with
  # the caller's posts.
  strata_ofi_test(ofi_coll_nonblocking_thread_shm_np3 3
                  "STRATA_COLL_TRANSPORT=ofi;STRATA_COLL_PROGRESS_THREAD=1;${STRATA_OFI_ENV_shm}"
                  $<TARGET_FILE:coll_test_ops> nonblocking)
endif()
