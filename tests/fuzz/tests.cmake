# Fuzz targets (tests/fuzz/README.md). Every build compiles each target with
# replay.c as main and runs it over its seed corpus and its regression inputs
# (ctest -L fuzz): with gcc here, under ASan/UBSan in the sanitizer variant.
# With -DSTRATA_FUZZ=ON and clang, the same files also become libFuzzer
# binaries fuzz_<name> (tools/fuzz.sh builds and runs them).
set(ST_FUZZ_TARGETS gguf hf_dir tokenizer_json tokenize deploy_yaml plan_yaml numerics chat serve_request)
set(_fz ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

foreach(_t ${ST_FUZZ_TARGETS})
  add_executable(fuzz_replay_${_t} ${_fz}/fuzz_${_t}.c ${_fz}/fuzz_common.c ${_fz}/replay.c)
  target_link_libraries(fuzz_replay_${_t} PRIVATE strata_core)
  target_compile_options(fuzz_replay_${_t} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  add_test(NAME fuzz_regress_${_t}
           COMMAND fuzz_replay_${_t} tests/fuzz/corpus/${_t} tests/fuzz/regress/${_t}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(fuzz_regress_${_t} PROPERTIES LABELS fuzz
    ENVIRONMENT "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1;STRATA_FAULT=")
endforeach()

option(STRATA_FUZZ "Build the libFuzzer targets fuzz_<name> (needs clang)" OFF)
if(STRATA_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "strata: STRATA_FUZZ=ON needs clang (libFuzzer)\n"
      "hint: configure with CC=clang (tools/fuzz.sh does), or install clang with tools/install-deps.sh --fuzz")
  endif()
  # The library, instrumented for coverage. The CPU backend and its kernels
  # are in it too: no target runs them, but the backend registry
  # (devices/registry.c, which the deployment parser reaches) links the CPU
  # backend's registration, and through it its ops.
  set(_fz_sources ${ST_SOURCES})
  set(_fz_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1)
  add_library(strata_fuzz_core STATIC ${_fz_sources} ${CMAKE_BINARY_DIR}/version.c ${CMAKE_BINARY_DIR}/commit.c)
  add_dependencies(strata_fuzz_core strata_commit)
  target_include_directories(strata_fuzz_core PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_definitions(strata_fuzz_core PUBLIC _GNU_SOURCE STRATA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  target_compile_options(strata_fuzz_core PUBLIC ${_fz_flags} PRIVATE -fsanitize=fuzzer-no-link)
  target_link_libraries(strata_fuzz_core PUBLIC ST::deps m Threads::Threads)
  foreach(_t ${ST_FUZZ_TARGETS})
    add_executable(fuzz_${_t} ${_fz}/fuzz_${_t}.c ${_fz}/fuzz_common.c)
    target_compile_options(fuzz_${_t} PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz_${_t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${_t} PRIVATE strata_fuzz_core)
    set_target_properties(fuzz_${_t} PROPERTIES EXCLUDE_FROM_ALL ON RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  endforeach()
  set_target_properties(strata_fuzz_core PROPERTIES EXCLUDE_FROM_ALL ON)
endif()
