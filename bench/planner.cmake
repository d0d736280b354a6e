# Planner benchmark: time to plan 16 devices x 128 layers (bench/RESULTS.md).
add_executable(bench_planner ${CMAKE_CURRENT_SOURCE_DIR}/planner.c)
target_link_libraries(bench_planner PRIVATE strata_core)
target_compile_options(bench_planner PRIVATE -Wall -Wextra -Wno-unused-parameter)
