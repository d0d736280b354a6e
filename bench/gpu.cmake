# GPU benchmarks (CUDA builds only): programs, not tests.
if(ST_HAVE_CUDA)
  add_executable(gpu_gemv ${CMAKE_CURRENT_SOURCE_DIR}/gpu_gemv.cu)
  target_link_libraries(gpu_gemv PRIVATE strata_core)
endif()
