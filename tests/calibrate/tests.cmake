# strata calibrate: profiles of the bundled model and of a copy with a layer
# scaled past fp16's range, the planner reading them through a config
# (test_calibrate.c); the numbers against an independent numpy pass
# (check_calibrate.py) on every fixture architecture.
st_add_test(calibrate SOURCES calibrate/test_calibrate.c LABELS calibrate)
foreach(_m qwen2-tiny qwen3-tiny llama-tiny)
  # a work directory per model: the three run in parallel and write files of the same names
  file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/calib-${_m})
  st_add_py_test(calibrate_vs_numpy_${_m} SCRIPT tests/calibrate/check_calibrate.py LABELS calibrate golden
    ARGS $<TARGET_FILE:strata> tests/fixtures/models/${_m}/hf ${CMAKE_CURRENT_BINARY_DIR}/calib-${_m})
endforeach()
st_add_cli_test(calibrate_cli_help RC 0 LABELS calibrate EXPECT "usage: strata calibrate [-m MODEL | -c deploy.yaml]|||--max-error E"
  ARGS "calibrate --help")
st_add_cli_test(calibrate_cli_nomodel RC 2 LABELS calibrate EXPECT "model 'no/such/model' does not exist|||hint:"
  ARGS "calibrate -m no/such/model")
st_add_cli_test(calibrate_cli_notok RC 2 LABELS calibrate
  EXPECT "no tokenizer to encode the calibration text|||hint: give token ids with --ids FILE"
  ARGS "calibrate -m tests/fixtures/models/qwen2-tiny/hf")
st_add_cli_test(calibrate_cli_badids RC 2 LABELS calibrate
  EXPECT "tests/calibrate/bad-ids.txt:2: '999' is not a token id in|||hint: write the ids"
  ARGS "calibrate -m tests/fixtures/models/qwen2-tiny/hf --ids tests/calibrate/bad-ids.txt")
st_add_cli_test(calibrate_cli_typo RC 2 LABELS calibrate EXPECT "unknown option '--token' (did you mean '--tokens'?)"
  ARGS "calibrate -m models/tiny-kjv --token 5")
st_add_cli_test(calibrate_cli_preset RC 2 LABELS calibrate EXPECT "has shapes but no weights to calibrate"
  ARGS "calibrate -c configs/what-if-cpu-qwen0.5b.yaml")
# the planner reads a profile named by placement.numerics (hand-written: layers 0-1 safe, 2-3 not)
st_add_cli_test(plan_cli_numerics RC 0 LABELS calibrate planner
  EXPECT "stage 0 (a) precision f16: every layer of the stage is marked fp16-safe by the numerics profile|||stage 1 (b) precision f32|||f16 not used: the numerics profile marks not all of layers 2-3 fp16-safe"
  ARGS "plan -c tests/calibrate/two-t4.yaml --explain")
st_add_cli_test(plan_cli_numerics_missing RC 2 LABELS calibrate planner
  EXPECT "tests/calibrate/missing-profile.yaml:6:13: placement.numerics: numerics profile:|||hint: write one with 'strata calibrate"
  ARGS "plan -c tests/calibrate/missing-profile.yaml")
st_add_cli_test(plan_cli_numerics_bad RC 2 LABELS calibrate planner
  EXPECT "tests/calibrate/bad-profile.yaml:14:16: layers[1]: unknown key 'fp16_sfe'|||hint: did you mean 'fp16_safe'?"
  ARGS "plan -c tests/calibrate/bad-profile-deploy.yaml")
st_add_cli_test(config_numerics_type RC 2 LABELS calibrate config
  EXPECT "bad-numerics-type.yaml:5:13: placement.numerics: expected a string, found a list|||hint: write it as, e.g., 'numerics: profile.yaml'"
  ARGS "plan -c tests/calibrate/bad-numerics-type.yaml --check")
st_add_cli_test(config_numerics_empty RC 2 LABELS calibrate config
  EXPECT "bad-numerics-empty.yaml:4:23: placement.numerics: is empty|||hint: name the file 'strata calibrate -o FILE' wrote"
  ARGS "plan -c tests/calibrate/bad-numerics-empty.yaml --check")
