# Installing: `cmake --install` of this build tree into a temporary prefix (nothing configured
# anew), then what an outside user does with it (tests/install/install_test.sh): the layout and
# the library's exported symbols; a program built with pkg-config (mpicc and cc) and with
# find_package(StrataColl), run on 2 and 3 ranks; the installed strata moved elsewhere and run
# with the source and build trees hidden. Label "install".
string(JOIN " " INSTALL_MPIRUN_LINE ${STRATA_MPIRUN})
set(INSTALL_TEST_CFLAGS "")
if(STRATA_SANITIZE)
  set(INSTALL_TEST_CFLAGS "-fsanitize=address,undefined") # the library needs the same runtime
endif()
foreach(case layout pkgconfig find_package relocated)
  add_test(NAME install_${case} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/install/install_test.sh ${case})
  set_tests_properties(install_${case} PROPERTIES LABELS "install" TIMEOUT 300
    ENVIRONMENT "STRATA_BUILD_DIR=${CMAKE_BINARY_DIR};STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};STRATA_VERSION=${PROJECT_VERSION};STRATA_LIBDIR=${CMAKE_INSTALL_LIBDIR};CMAKE_COMMAND=${CMAKE_COMMAND};INSTALL_TEST_CFLAGS=${INSTALL_TEST_CFLAGS};INSTALL_MPIRUN=${INSTALL_MPIRUN_LINE};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
