# GPU benchmarks (CUDA builds only): programs, not tests.
if(ST_HAVE_CUDA)
  add_executable(gpu_gemv ${CMAKE_CURRENT_SOURCE_DIR}/gpu_gemv.cu)
  target_link_libraries(gpu_gemv PRIVATE strata_core)
  add_executable(gpu_gemm_peak ${CMAKE_CURRENT_SOURCE_DIR}/gpu_gemm_peak.cu)
  target_link_libraries(gpu_gemm_peak PRIVATE CUDA::cublas CUDA::cudart)
endif()
