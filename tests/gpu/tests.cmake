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
foreach(_y fx-1gpu-bf16 fx-1gpu-auto fx-replay-fp32 fx-1gpu-m40 fx-2gpu-m40 fx-2gpu-m40-3l fx-gpu-cpu fx-gpu-cpu-3l fx-4stage-2gpu
           big-2gpu big-2gpu-split big-1gpu)
  st_add_cli_test(e2e_deploy_${_y} RC 0 EXPECT "${_y}.yaml: ok" ARGS "plan -c tests/gpu/deploy/${_y}.yaml --check")
endforeach()
st_add_py_test(e2e_checker SCRIPT tests/gpu/check_e2e.py ARGS selftest --strata $<TARGET_FILE:strata>)
# bench/gpu_compare.sh's table and exit status (1 on a missed or missing target) from planted results
st_add_py_test(gpu_compare_report SCRIPT bench/gpu_compare_report.py ARGS --selftest)

# e2e.sh itself, without a GPU (E2E_FAKE_GPU=1: every cuda:N becomes the CPU),
# over the F32 files of three e2e models (2, 3 and 4 layers), peer and host: the YAML rewriting, the plan replay case
# and every compare run for real. Its selftest: strata with a planted greedy flip
# on the "GPU" runs (tests/harness/plant.sh flip-token) must fail it.
set(_e2e_env E2E_FAKE_GPU=1 E2E_QUICK=1 E2E_PARTS=fixtures PYTHON=${STRATA_PYTHON} "E2E_TRANSPORTS=peer host")
add_test(NAME e2e_fake_gpu
  COMMAND ${CMAKE_COMMAND} -E env ${_e2e_env} E2E_MODELS=qwen2-peaked,qwen3-peaked,tiny-4l E2E_STRATA=$<TARGET_FILE:strata> OUT=${CMAKE_BINARY_DIR}/e2e-fake/out
          STRATA_GPU_BUILD=${CMAKE_BINARY_DIR}/e2e-fake bash ${CMAKE_CURRENT_SOURCE_DIR}/gpu/e2e.sh
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(e2e_fake_gpu PROPERTIES LABELS e2e)
st_add_planted_test(e2e_fake_gpu_planted_flip DEFECT flip-token WANT "greedy id 4 differs: run" LABELS e2e
  COMMAND ${CMAKE_COMMAND} -E env ${_e2e_env} E2E_MODELS=qwen2-peaked E2E_STRATA=${ST_PLANTED} OUT=${CMAKE_BINARY_DIR}/e2e-planted/out
          STRATA_GPU_BUILD=${CMAKE_BINARY_DIR}/e2e-planted bash ${CMAKE_CURRENT_SOURCE_DIR}/gpu/e2e.sh)
# The e2e models are peaked: every greedy gap outside the bf16 near-tie window,
# so a flip in a bf16 run is a failure (tests/gpu/bf16_bound.py --check); the
# random fixtures, whose gaps are inside it, must fail that check.
st_add_py_test(e2e_models_peaked SCRIPT tests/gpu/bf16_bound.py ARGS --check LABELS e2e)
st_add_planted_test(e2e_models_peaked_planted DEFECT none WANT "inside the bf16 near-tie window" LABELS e2e
  COMMAND ${STRATA_PYTHON} tests/harness/py_run.py tests/gpu/bf16_bound.py --check --e2e-dir tests/fixtures/models)

# tests/gpu/smoke.sh: on a machine without a GPU it must fail ("no GPU ran"; it
# used to pass with every "GPU" run on the CPU); with SMOKE_EXPECT=cpu its
# comparisons run here and pass, and a planted greedy flip fails them.
set(_smoke_env PYTHON=${STRATA_PYTHON} SMOKE_QUICK=1)
add_test(NAME gpu_smoke_no_gpu
  COMMAND bash -c "if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then echo 'a GPU is visible: this selftest needs a machine without one'; exit 77; fi; exec \"$@\""
          _ ${CMAKE_COMMAND} -E env ${_smoke_env} bash ${CMAKE_CURRENT_SOURCE_DIR}/harness/expect_fail.sh "no GPU ran"
          bash ${CMAKE_CURRENT_SOURCE_DIR}/gpu/smoke.sh ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/smoke-no-gpu
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(gpu_smoke_no_gpu PROPERTIES LABELS "e2e;selftest" SKIP_RETURN_CODE 77)
add_test(NAME gpu_smoke_cpu
  COMMAND ${CMAKE_COMMAND} -E env ${_smoke_env} SMOKE_EXPECT=cpu bash ${CMAKE_CURRENT_SOURCE_DIR}/gpu/smoke.sh
          ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/smoke-cpu
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(gpu_smoke_cpu PROPERTIES LABELS e2e)
st_add_planted_test(gpu_smoke_cpu_planted_flip DEFECT flip-token WANT "FAIL  qwen2-peaked-f32: cpu" LABELS e2e
  COMMAND ${CMAKE_COMMAND} -E env ${_smoke_env} SMOKE_EXPECT=cpu SMOKE_STRATA=${ST_PLANTED}
          bash ${CMAKE_CURRENT_SOURCE_DIR}/gpu/smoke.sh ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/smoke-planted)

# The tolerances of test_kernels.c's tensor-core paths (bf16 GEMM 5e-3, flash
# 6e-3; f16 2e-3) against a numpy model of its cases: each at least 2 x the
# rounding worst case and at most half the smallest planted bug of its op.
st_add_py_test(gpu_kernel_tolerances SCRIPT tests/gpu/kernel_bound.py ARGS --check LABELS e2e)
