# GPU tests: built when the CUDA backend is, run only where a GPU is visible
# (exit 77 = skipped otherwise). tests/gpu/run.sh builds and runs them all on
# a GPU machine with --require-gpu and writes a summary.
if(ST_HAVE_CUDA)
  st_add_test(gpu_kernels SOURCES gpu/test_kernels.c LABELS gpu)
  st_add_test(gpu_links SOURCES gpu/test_links.c LABELS gpu)
  set_tests_properties(gpu_kernels gpu_links PROPERTIES SKIP_RETURN_CODE 77)
  foreach(_t gpu_kernels gpu_links)
    target_link_libraries(${_t} PRIVATE CUDA::cudart)
  endforeach()
endif()
if(ST_HAVE_CUDA)
  # the probe functions behind `strata inventory --probe`, run by tests/gpu/run.sh
  add_executable(gpu_probe gpu/probe_gpu.c)
  target_link_libraries(gpu_probe PRIVATE strata_core CUDA::cudart)
endif()
