# CPU kernels against double-precision references (the matmul: every dtype and
# SIMD level against the portable path and the documented error bound), and the CPU backend
# (thread pool, memory, links).
st_add_test(cpu_kernels SOURCES cpu/test_kernels.c LABELS cpu)
st_add_test(cpu_backend SOURCES cpu/test_backend.c LABELS cpu)
st_add_test(cpu_matmul SOURCES cpu/test_matmul.c LABELS cpu)
# threads: in a config and --threads survive the NUMA placement (-v logs it)
st_add_cli_test(cpu_threads_config RC 0 LABELS cpu
  ARGS "-v generate -c tests/cpu/threads.yaml --tokens 311,127,495 -n 2"
  EXPECT "cpu: 3 threads|||weights on NUMA node|||3 threads pinned to its cores")
st_add_cli_test(cpu_threads_option RC 0 LABELS cpu
  ARGS "-v generate -m tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf --tokens 311,127,495 -n 2 --threads 1"
  EXPECT "cpu: 1 threads|||1 threads pinned to its cores")
# the CPU engine's greedy ids on quantized GGUF files vs a numpy forward pass
st_add_test(cpu_quant_greedy SOURCES cpu/test_quant_greedy.c LABELS cpu)
# a quantized layer on a second CPU stage (tests/cpu/gpu-cpu-quant.yaml with
# the GPU replaced): the numpy reference's greedy ids, as one stage gives them
st_add_cli_test(cpu_quant_two_stages RC 0 LABELS cpu
  ARGS "generate -c tests/cpu/cpu-cpu-quant.yaml --tokens 475,25,305,257,117,264,333,134,292,65,473,10 -n 16"
  EXPECT "386,54,216,495,140,312,404,370,370,370,370,370,370,370,370,86")
# tests/cpu/gpu_cpu_quant.sh (issue 18's GPU + CPU acceptance, run by the lead
# on a GPU machine) as a dry run with the GPU stage replaced by a CPU stage:
# plan, greedy ids against the CPU engine and the reference, bench stage table
add_test(NAME cpu_gpu_cpu_quant_dryrun
         COMMAND bash tests/cpu/gpu_cpu_quant.sh $<TARGET_FILE_DIR:strata> ${CMAKE_CURRENT_BINARY_DIR}/gpu_cpu_quant
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(cpu_gpu_cpu_quant_dryrun PROPERTIES LABELS cpu
  ENVIRONMENT "GCQ_CONFIG=tests/cpu/cpu-cpu-quant.yaml;GCQ_EXPECT=cpu cpu;PYTHON=${STRATA_PYTHON}")
st_add_test(cpu_kv_q8 SOURCES cpu/test_kv_q8.c LABELS cpu)
