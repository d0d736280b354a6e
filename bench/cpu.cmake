# CPU benchmarks: decode of a Qwen2.5-0.5B-shaped random model next to the
# memory bandwidth measured in the same run, and the matmul kernel lab
# (bench/RESULTS.md, docs/cpu-kernels.md).
add_executable(bench_cpu_decode ${CMAKE_CURRENT_SOURCE_DIR}/cpu_decode.c)
target_link_libraries(bench_cpu_decode PRIVATE strata_core)
target_compile_options(bench_cpu_decode PRIVATE -Wall -Wextra -Wno-unused-parameter)

add_executable(bench_cpu_matmul ${CMAKE_CURRENT_SOURCE_DIR}/cpu_matmul.c)
target_link_libraries(bench_cpu_matmul PRIVATE strata_core)
target_compile_options(bench_cpu_matmul PRIVATE -Wall -Wextra -Wno-unused-parameter)
if(ST_HAVE_BLAS)
  target_link_libraries(bench_cpu_matmul PRIVATE ST::blas)
  target_compile_definitions(bench_cpu_matmul PRIVATE STRATA_BENCH_BLAS=1)
  if(ST_BLAS_NAME STREQUAL "openblas")
    target_compile_definitions(bench_cpu_matmul PRIVATE STRATA_BENCH_OPENBLAS=1)
  endif()
endif()
message(STATUS "strata: BLAS         ${ST_HAVE_BLAS}${ST_BLAS_WHY}")
