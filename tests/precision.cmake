# Training precision (strata train/eval --precision fp32|bf16|bf16-sr; tests/train/precision.sh):
# bf16 losses close to fp32's and deterministic, bf16-sr weights exactly bf16, bit-identical
# resume in both, a resume in another precision refused, bad values refused; and layouts under
# mpirun (DP 2 and 3, ZeRO-1, PP 2, TP 2 x PP 2) against the single-rank run of the same
# precision within bf16 tolerances, and with the data-parallel gradients reduced in bf16
# (--grad-dtype bf16: the same tolerances, half the bytes sent); the same for the Llama model
# (PRECISION_ARCH=llama, below). The bf16 GEMM itself: model_gemm_bf16 (tests/model.cmake).
string(JOIN " " PRECISION_MPIRUN_LINE ${STRATA_MPIRUN})
function(precision_test name label)
  add_test(NAME ${name} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/train/precision.sh $<TARGET_FILE:strata>
           $<TARGET_FILE:dist_tool> ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "${label}" TIMEOUT 300
    ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;DIST_MPIRUN=${PRECISION_MPIRUN_LINE};PRECISION_ARCH=${PRECISION_ARCH}")
endfunction()
precision_test(train_precision_loss unit loss)
precision_test(train_precision_resume unit resume)
precision_test(train_precision_bad unit bad)
#              name                          label     prec NP layout flags
precision_test(dist_precision_bf16_d2        mpi layout bf16 2 --dp 2)
precision_test(dist_precision_bf16_d3_zero   mpi layout bf16 3 --dp 3 --zero 1)
precision_test(dist_precision_bf16_p2        mpi layout bf16 2 --pp 2 --microbatches 2 --schedule 1f1b)
precision_test(dist_precision_bf16sr_d3_zero mpi layout bf16-sr 3 --dp 3 --zero 1)
precision_test(dist_precision_bf16sr_t2p2    mpi layout bf16-sr 4 --tp 2 --pp 2)
# --grad-dtype bf16: the DP reductions in bf16 (half the bytes) within the same tolerances
precision_test(dist_grad_bf16_d2             mpi layout fp32 2 --dp 2 --grad-dtype bf16)
precision_test(dist_grad_bf16_d3_zero        mpi layout bf16 3 --dp 3 --zero 1 --grad-dtype bf16)
precision_test(dist_grad_bf16_bytes          mpi gradbytes)
# The Llama model (--arch llama): the same cases and tolerances (PRECISION_ARCH in precision.sh)
set(PRECISION_ARCH llama)
precision_test(train_llama_precision_loss         unit loss)
precision_test(train_llama_precision_resume       unit resume)
precision_test(dist_llama_precision_bf16_d3_zero  mpi layout bf16 3 --dp 3 --zero 1)
precision_test(dist_llama_precision_bf16_p2       mpi layout bf16 2 --pp 2 --microbatches 2 --schedule 1f1b)
precision_test(dist_llama_precision_bf16sr_d3_zero mpi layout bf16-sr 3 --dp 3 --zero 1)
precision_test(dist_llama_precision_bf16sr_p2     mpi layout bf16-sr 2 --pp 2)
precision_test(dist_llama_precision_bf16sr_t2p2   mpi layout bf16-sr 4 --tp 2 --pp 2)
precision_test(dist_llama_grad_bf16_d2            mpi layout fp32 2 --dp 2 --grad-dtype bf16)
set(PRECISION_ARCH "")
