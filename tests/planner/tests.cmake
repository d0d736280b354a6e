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
# the CPU's probed rates: fp32 and each quantized dtype's GEMM for prefill, each dtype's GEMV for decode
st_add_test(planner_cpu_rates SOURCES planner/test_cpu_rates.c LABELS planner)
# `plan` says how much longer a context q8_0 buys, in text and JSON
st_add_cli_test(planner_cli_kv_reach RC 0 LABELS planner
  ARGS "plan -c configs/what-if-m40-3050ti-14b-q4km.yaml"
  EXPECT "kv cache reach: longest context at batch 1 with an f16 cache |||, with a q8_0 cache |||x); the model was trained for 32768|||  kv   ")
st_add_cli_test(planner_cli_kv_reach_json RC 0 LABELS planner
  ARGS "plan -c configs/what-if-m40-3050ti-14b-q4km.yaml --json"
  EXPECT "\"kv_reach\": {|||\"f16_context\": |||\"q8_0_context\": |||\"kv_dtype\": \"f32\"")
# the backends' weight types: no tensor on a device that cannot run its dtype, the plan-time error
st_add_test(planner_weight_types SOURCES planner/test_weight_types.c LABELS planner)
# ... through `strata plan`: the plan-time error with its hint, and --explain saying what each device runs
st_add_cli_test(planner_cli_weights_none RC 2 LABELS planner
  ARGS "plan -c tests/planner/weights-none.yaml"
  EXPECT "error: plan: no device can run token_embd.weight, stored as q4_k (and 197 more tensors of q4_k, q6_k)|||devices considered: m40 runs f32 f16 q8_0|||laptop runs f32 f16 bf16 q8_0|||hint: use a Q8_0 or F16 file of the model (weight types these devices run), or add a device whose backend runs q4_k, q6_k")
st_add_cli_test(planner_cli_weights_explain RC 0 LABELS planner
  ARGS "plan -c tests/planner/weights-partial.yaml --explain"
  EXPECT "weight types: what each device's backend runs (the model holds q4_k q6_k)|||  m40                  f32 f16 q8_0  (holds no q4_k q6_k)|||  r3090                f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q4_k q5_k q6_k|||device m40 unused: every layer holds a weight type it cannot run")
