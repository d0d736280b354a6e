# Deployment config (orchestrator/config.c) and `strata plan -c FILE --check`.
st_add_test(config_parse SOURCES config/test_config.c LABELS config)

# One CLI test per acceptance bullet: exit code 2 and the exact message parts
# (FILE:LINE:COL, key path, hint).
st_add_cli_test(config_cli_typo RC 2 LABELS config
  ARGS "plan -c tests/config/bad-typo.yaml --check"
  EXPECT "error: tests/config/bad-typo.yaml:4:1: unknown key 'devcies'|||hint: did you mean 'devices'?")
st_add_cli_test(config_cli_wrong_type RC 2 LABELS config
  ARGS "plan -c tests/config/bad-type.yaml --check"
  EXPECT "error: tests/config/bad-type.yaml:5:10: context: expected a whole number, found a list|||hint: write it as, e.g., 'context: 4096'")
st_add_cli_test(config_cli_negative_size RC 2 LABELS config
  ARGS "plan -c tests/config/bad-negative-size.yaml --check"
  EXPECT "error: tests/config/bad-negative-size.yaml:6:17: devices[0].max_memory: size '-22GiB' is negative|||hint: write a size such as 512MiB, 22GiB or 22GB (0 for all)")
st_add_cli_test(config_cli_duplicate_key RC 2 LABELS config
  ARGS "plan -c tests/config/bad-duplicate.yaml --check"
  EXPECT "error: tests/config/bad-duplicate.yaml:7:1: context: duplicate key 'context' (first at line 5, column 1)|||hint: keep one of the two")
st_add_cli_test(config_cli_yaml_syntax RC 2 LABELS config
  ARGS "plan -c tests/config/bad-syntax.yaml --check"
  EXPECT "error: tests/config/bad-syntax.yaml:4:13: YAML syntax error: mapping values are not allowed in this context|||hint: check the indentation and quoting at line 4")
st_add_cli_test(config_cli_unknown_selector RC 2 LABELS config
  ARGS "plan -c tests/config/bad-selector.yaml --check"
  EXPECT "error: tests/config/bad-selector.yaml:6:5: devices[1]: unknown device selector 'gpu:1'|||hint: write cpu, cuda:N (e.g. cuda:0), cuda:GPU-<uuid>")
st_add_cli_test(config_cli_missing_file RC 2 LABELS config
  ARGS "plan -c tests/config/no-such-deploy.yaml --check"
  EXPECT "error: tests/config/no-such-deploy.yaml: cannot open the deployment config: No such file or directory|||hint: check the path")

# More errors through the CLI
st_add_cli_test(config_cli_reversed_range RC 2 LABELS config
  ARGS "plan -c tests/config/bad-range.yaml --check"
  EXPECT "error: tests/config/bad-range.yaml:9:29: placement.manual[1].layers: the layer range 27-14 is reversed|||hint: write first-last with first <= last, e.g. '14-27'")
st_add_cli_test(config_cli_model_missing RC 2 LABELS config
  ARGS "plan -c tests/config/bad-model-path.yaml --check"
  EXPECT "error: tests/config/bad-model-path.yaml:3:9: model.path: 'tests/config/missing/model.gguf' does not exist|||hint: a relative path is taken from the config file's directory")

# Valid configs
st_add_cli_test(config_cli_ok_whatif RC 0 LABELS config
  ARGS "plan -c tests/config/good-whatif.yaml --check"
  EXPECT "tests/config/good-whatif.yaml: ok|||2 devices (m40=catalog:tesla-m40, laptop=catalog:rtx-3050-ti-laptop), model preset qwen2.5-7b q4_k_m (28 layers), placement auto, objective throughput, context 8192, batch 1")
st_add_cli_test(config_cli_ok_manual RC 0 LABELS config
  ARGS "plan --check -c tests/config/good-manual.yaml"
  EXPECT "2 devices (new=cuda:0, old=cuda:1 as tesla-m40), model preset qwen2.5-0.5b (24 layers), placement manual (2 stages), objective latency, context 4096")
st_add_cli_test(config_cli_ok_relative RC 0 LABELS config
  ARGS "plan -c tests/config/sub/relative.yaml --check"
  EXPECT "1 device (cpu), model tests/config/sub/../../fixtures/models/qwen2-tiny/hf (2 layers),")
st_add_cli_test(config_cli_ok_example_whatif RC 0 LABELS config
  ARGS "plan -c configs/examples/whatif-m40-3050ti.yaml --check"
  EXPECT "configs/examples/whatif-m40-3050ti.yaml: ok")

# The command line of `strata plan`
st_add_cli_test(config_cli_plan_help RC 0 LABELS config
  ARGS "plan --help"
  EXPECT "usage: strata plan -c FILE|||--check|||--explain|||-o, --output FILE|||--format table|json|||--svg FILE")
st_add_cli_test(config_cli_plan_no_config RC 2 LABELS config
  ARGS "plan --check"
  EXPECT "error: plan: --check needs -c FILE|||hint: see 'strata plan --help'")
st_add_cli_test(config_cli_plan_bad_option RC 2 LABELS config
  ARGS "plan -c tests/config/good-whatif.yaml --chek"
  EXPECT "error: plan: unknown option '--chek'")
st_add_cli_test(config_cli_plan_runs RC 0 LABELS config
  ARGS "plan -c tests/config/good-whatif.yaml"
  EXPECT "plan: qwen2.5-7b|||stage device|||predicted: decode")
st_add_cli_test(config_cli_unknown_catalog RC 2 LABELS config
  ARGS "plan -c tests/config/bad-catalog.yaml --check"
  EXPECT "error: tests/config/bad-catalog.yaml:6:15: devices[1].catalog: unknown catalog card 'rtx-3050ti-laptop'|||hint: did you mean 'rtx-3050-ti-laptop'?")

# --check runs every check that needs no device, each error at its config position
st_add_cli_test(config_cli_check_not_model RC 1 LABELS config
  ARGS "plan -c tests/config/bad-not-model.yaml --check"
  EXPECT "error: tests/config/bad-not-model.yaml:3:15: model.path: tests/config/sub: no config.json in this directory|||hint: a Hugging Face model directory holds config.json")
st_add_cli_test(config_cli_check_numerics_missing RC 2 LABELS config
  ARGS "plan -c tests/config/bad-numerics-missing.yaml --check"
  EXPECT "error: tests/config/bad-numerics-missing.yaml:5:13: placement.numerics: numerics profile: tests/config/no-such-numerics.yaml: cannot open: No such file or directory|||hint: write one with 'strata calibrate")
st_add_cli_test(config_cli_check_numerics_layers RC 2 LABELS config
  ARGS "plan -c tests/config/bad-numerics-layers.yaml --check"
  EXPECT "error: tests/config/bad-numerics-layers.yaml:5:23: placement.numerics: tests/config/../calibrate/tiny-kjv-numerics.yaml: the numerics profile is for 4 layers (model 'tiny-kjv'), the model has 24")
st_add_cli_test(config_cli_check_manual_short RC 2 LABELS config
  ARGS "plan -c tests/config/bad-manual-short.yaml --check"
  EXPECT "error: tests/config/bad-manual-short.yaml:8:7: placement.manual[1]: layers 12-20 end before its last layer; the model has 24 layers (0-23)|||hint: the stages cover every layer once")
st_add_cli_test(config_cli_check_manual_long RC 2 LABELS config
  ARGS "plan -c tests/config/bad-manual-long.yaml --check"
  EXPECT "error: tests/config/bad-manual-long.yaml:8:7: placement.manual[1]: layers 12-30 go past its last layer; the model has 24 layers (0-23)")
st_add_cli_test(config_cli_check_bad_profile RC 1 LABELS config
  ARGS "plan -c tests/config/good-whatif.yaml --check --profile tests/config/no-such-profile.yaml"
  EXPECT "error: tests/config/no-such-profile.yaml: cannot open: No such file or directory")
# limits: size, depth, counts and lengths (docs/limits.md)
st_add_test(config_limits SOURCES config/test_config_limits.c LABELS config)
st_add_test(config_kv SOURCES config/test_config_kv.c LABELS config)
st_add_test(config_weight_dtypes SOURCES config/test_config_weights.c LABELS config)
st_add_cli_test(config_cli_weight_dtypes RC 2 LABELS config
  ARGS "plan -c tests/config/bad-weight-dtypes.yaml --check"
  EXPECT "error: tests/config/bad-weight-dtypes.yaml:6:39: devices[0].caps.weight_dtypes[2]: unknown weight type 'q4_km'|||hint: did you mean 'q4_k'? weight types: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q4_k, q5_k, q6_k")
