# Injected faults (docs/faults.md): every host allocation, file read, device
# allocation and link transfer that loading and running the bundled model
# reaches is made to fail once, in turn; each run must end with a clean error
# (or recover with the same output), the right exit code, no leak and no
# sanitizer report. Runs in every variant; tools/test.sh's ASan variant makes
# "no leak" mean LeakSanitizer found none.
set(_walk ${CMAKE_CURRENT_SOURCE_DIR}/faults/walk.sh)
set(_gen generate -p "In the beginning" -n 8 --seed 1)
function(st_fault_walk name kind)
  add_test(NAME faults_${name}_${kind}
           COMMAND bash ${_walk} $<TARGET_FILE:strata> ${kind} -- ${ARGN}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(faults_${name}_${kind} PROPERTIES LABELS faults TIMEOUT 1500)
endfunction()
foreach(_k alloc read dev_alloc)
  st_fault_walk(hf ${_k} ${_gen} -m models/tiny-kjv)
  st_fault_walk(gguf ${_k} ${_gen} -m models/tiny-kjv.gguf)
endforeach()
foreach(_k alloc read dev_alloc link)
  st_fault_walk(two_stages ${_k} ${_gen} -c tests/bench/two-cpu-stages.yaml)
endforeach()
st_add_test(fault_switch SOURCES faults/test_fault.c LABELS faults)
set_tests_properties(fault_switch PROPERTIES ENVIRONMENT "STRATA_FAULT=")
st_add_cli_test(fault_env_typo RC 0 LABELS faults
  ARGS "detokenize -m models/tiny-kjv 1192,258"
  EXPECT "strata: warning: STRATA_FAULT='alloc:x' is not 'count' or KIND:N|||In the")
set_tests_properties(fault_env_typo PROPERTIES ENVIRONMENT "STRATA_FAULT=alloc:x")
