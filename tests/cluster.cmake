# Strata across nodes on a multi-node Slurm cluster built from network namespaces on this machine
# (tests/cluster/cluster.sh): training (P inside a node, D across; TP inside a node) against one
# rank, all-reduce across nodes beside MPI's, serving queried from another node, and a teardown
# that leaves nothing behind. Root and Slurm; named slurm_ so that the sanitizer stage skips it
# with the other cluster tests, and holding their lock (they share the two cores). It runs alone
# (RUN_SERIAL): its last step compares `strata simulate` with the step time it measures, which
# another test on the same two cores distorts (a -j2 run measured the same step at 0.12 and 0.58 s).
add_test(NAME slurm_cluster_nodes_3x2
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cluster/cluster_test.sh $<TARGET_FILE:strata> $<TARGET_FILE:dist_tool>)
set_tests_properties(slurm_cluster_nodes_3x2 PROPERTIES LABELS "slurm;cluster" TIMEOUT 1500
                     SKIP_RETURN_CODE 77 RESOURCE_LOCK slurm_cluster RUN_SERIAL TRUE)
# Node loss on the same kind of cluster: every rank of a random node killed at a random step,
# and a link taken down mid-step; launch/slurm/train.sbatch restarts without the node (shrink to
# fit). tests/cluster/node_loss_test.sh STRATA DIST_TOOL 10 runs the node loss ten times.
add_test(NAME slurm_cluster_node_loss
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cluster/node_loss_test.sh $<TARGET_FILE:strata> $<TARGET_FILE:dist_tool>)
set_tests_properties(slurm_cluster_node_loss PROPERTIES LABELS "slurm;cluster" TIMEOUT 1500
                     SKIP_RETURN_CODE 77 RESOURCE_LOCK slurm_cluster)
