/* probe.c -- compiled inside one layer's library with PROBE_HEADER set to some header: the
 * tests in tests/arch.cmake expect this to build only when the layer may use that header. */
#include PROBE_HEADER
int arch_probe_compiles;
