# Planner tests: no GPU needed (catalog devices and presets only).
st_add_test(planner_caps_catalog SOURCES planner/test_catalog.c LABELS planner)
st_add_test(planner_memory SOURCES planner/test_memory.c LABELS planner)
st_add_test(planner_partition_brute SOURCES planner/test_partition.c LABELS planner)
st_add_test(planner_m40_3050ti SOURCES planner/test_m40.c LABELS planner)
st_add_test(planner_io SOURCES planner/test_io.c LABELS planner)
st_add_test(planner_whatif SOURCES planner/test_whatif.c LABELS planner)
st_add_test(planner_measured SOURCES planner/test_measured.c LABELS planner)
# docs/planner.md's table of predictions beside llama.cpp's published figures
# is what the cost model gives now (PyYAML comes with gguf in the test venv).
add_test(NAME planner_llamacpp_table
  COMMAND ${STRATA_PYTHON} tools/planner_vs_llamacpp.py $<TARGET_FILE:strata> --check docs/planner.md
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(planner_llamacpp_table PROPERTIES LABELS planner)
st_add_test(planner_kv_q8 SOURCES planner/test_kv_q8.c LABELS planner)
# `plan` says how much longer a context q8_0 buys, in text and JSON
st_add_cli_test(planner_cli_kv_reach RC 0 LABELS planner
  ARGS "plan -c configs/what-if-m40-3050ti-14b-q4km.yaml"
  EXPECT "kv cache reach: longest context at batch 1 with an f16 cache |||, with a q8_0 cache |||x); the model was trained for 32768|||  kv   ")
st_add_cli_test(planner_cli_kv_reach_json RC 0 LABELS planner
  ARGS "plan -c configs/what-if-m40-3050ti-14b-q4km.yaml --json"
  EXPECT "\"kv_reach\": {|||\"f16_context\": |||\"q8_0_context\": |||\"kv_dtype\": \"f32\"")
# the backends' weight types: no tensor on a device that cannot run its dtype, the plan-time error
st_add_test(planner_weight_types SOURCES planner/test_weight_types.c LABELS planner)
