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

# tests/gpu/e2e.sh (the end-to-end GPU acceptance): the parts that run anywhere.
# Every deployment it uses passes `strata plan --check` (manual stages included);
# check_e2e.py selftest runs the CPU engine on tests/gpu/models/tiny-4l against
# its transformers reference.json and checks the checker's verdicts on planted errors.
foreach(_y fx-1gpu-bf16 fx-1gpu-m40 fx-2gpu-m40 fx-2gpu-m40-3l fx-gpu-cpu fx-gpu-cpu-3l fx-4stage-2gpu
           big-2gpu big-2gpu-split big-1gpu)
  st_add_cli_test(e2e_deploy_${_y} RC 0 EXPECT "${_y}.yaml: ok" ARGS "plan -c tests/gpu/deploy/${_y}.yaml --check")
endforeach()
st_add_py_test(e2e_checker SCRIPT tests/gpu/check_e2e.py ARGS selftest --strata $<TARGET_FILE:strata>)
