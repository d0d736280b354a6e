# Tokenizer benchmark: tokenizer.json load time and single-core encoding MB/s on
# the mixed-script parity corpus (bench/RESULTS.md). Run from the source root.
add_executable(bench_tokenizer ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer.c)
target_link_libraries(bench_tokenizer PRIVATE strata_core)
target_compile_options(bench_tokenizer PRIVATE -Wall -Wextra -Wno-unused-parameter)
