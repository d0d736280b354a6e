# CPU decode benchmark: tok/s of a Qwen2.5-0.5B-shaped random model next to the
# memory bandwidth measured in the same run (bench/RESULTS.md).
add_executable(bench_cpu_decode ${CMAKE_CURRENT_SOURCE_DIR}/cpu_decode.c)
target_link_libraries(bench_cpu_decode PRIVATE strata_core)
target_compile_options(bench_cpu_decode PRIVATE -Wall -Wextra -Wno-unused-parameter)
